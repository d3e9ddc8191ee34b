//! A flapping link in accelerated time: a seeded model of a thunderstorm day's outages, applied
//! one after the other through the [`ImpairmentProxy`] between a real `relay-agent` and a real
//! `radio-server`, with the agent's reconnects, its uploaded journal and its resources checked.
//!
//! Used by `tests/tests/flapping_link.rs` (a dozen outages) and by the `flapping` benchmark
//! (the whole day).
//!
//! Time is accelerated two ways, both stated in every report: an outage longer than `cap` is
//! applied for `cap` only (long enough to take the link down: the idle timeout is 3 s), and the
//! up period between outages is cut to the seconds the agent needs to reconnect and upload its
//! journal. The agent's reconnect backoff is scaled down with them: its backoff only resets after
//! a session lasted 10 s, which cut up periods never reach, so at the default 0.5–10 s it would
//! sit at 10 s, a wait that real up periods of minutes would never see.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{
    binary, enroll, proc_sample, start_server_with, Impairment, ImpairmentProxy, ProcSample,
    Process,
};

/// One outage of the modelled day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it starts, from midnight.
    pub start: Duration,
    /// How long the link is gone.
    pub length: Duration,
}

/// Shortest modelled outage: twice the 3 s idle timeout, so every outage of the model takes the
/// link down. Shorter blips are ridden out by design (`tests/tests/impaired_link.rs`).
pub const MIN_OUTAGE: Duration = Duration::from_secs(6);
/// Longest modelled outage.
pub const MAX_OUTAGE: Duration = Duration::from_secs(180);

fn log_uniform(rng: &mut StdRng, lo: Duration, hi: Duration) -> Duration {
    let (lo, hi) = (lo.as_secs_f64().ln(), hi.as_secs_f64().ln());
    Duration::from_secs_f64(rng.gen_range(lo..hi).exp())
}

fn exponential(rng: &mut StdRng, mean: Duration) -> Duration {
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    Duration::from_secs_f64(-u.ln() * mean.as_secs_f64())
}

/// A thunderstorm day, seeded: an outage now and then all day (about one an hour), and three to
/// five afternoon storm cells (starting 12:00–18:00, 60–120 min each) during which the link
/// keeps dropping (up for 15 s on average between outages). Outages last 6 s to 3 min,
/// log-uniformly (median about 33 s). Sorted, none overlapping.
pub fn thunderstorm_day(seed: u64) -> Vec<Outage> {
    let mut rng = StdRng::seed_from_u64(seed);
    let day = Duration::from_secs(24 * 3600);
    let mut outages = Vec::new();
    let mut t = Duration::ZERO;
    loop {
        t += exponential(&mut rng, Duration::from_secs(3600));
        if t >= day {
            break;
        }
        outages.push(Outage {
            start: t,
            length: log_uniform(&mut rng, MIN_OUTAGE, MAX_OUTAGE),
        });
    }
    for _ in 0..rng.gen_range(3..=5) {
        let mut t = Duration::from_secs(rng.gen_range(12 * 3600..18 * 3600));
        let end = t + Duration::from_secs(rng.gen_range(60 * 60..120 * 60));
        while t < end {
            let length = log_uniform(&mut rng, MIN_OUTAGE, MAX_OUTAGE);
            outages.push(Outage { start: t, length });
            t +=
                length + exponential(&mut rng, Duration::from_secs(15)).max(Duration::from_secs(2));
        }
    }
    outages.sort_by_key(|o| o.start);
    // Overlapping outages (a storm over a background one) are one outage.
    let mut merged: Vec<Outage> = Vec::with_capacity(outages.len());
    for o in outages {
        match merged.last_mut() {
            Some(last) if o.start <= last.start + last.length => {
                let end = (o.start + o.length).max(last.start + last.length);
                last.length = end - last.start;
            }
            _ => merged.push(o),
        }
    }
    merged
}

/// How to run the day.
#[derive(Debug, Clone)]
pub struct FlapOptions {
    /// The outages, in order.
    pub outages: Vec<Outage>,
    /// Longest outage actually applied.
    pub cap: Duration,
    /// Time the link stays up after the agent's link came back, for the journal upload.
    pub up: Duration,
    /// The agent's `reconnect_min_ms` and `reconnect_max_ms`.
    pub backoff_ms: (u64, u64),
    /// Prints one line per outage to stderr.
    pub verbose: bool,
}

/// What one outage did.
#[derive(Debug, Clone, Copy)]
pub struct Cycle {
    /// The modelled outage.
    pub outage: Outage,
    /// How long it was applied.
    pub applied: Duration,
    /// From the start of the blackhole to the agent's "connection lost"; `None`: never noticed.
    pub down_after: Option<Duration>,
    /// From the end of the blackhole to the agent's "link up"; `None`: no reconnect within a
    /// minute.
    pub up_after: Option<Duration>,
    /// The agent after the cycle's upload time.
    pub sample: Option<ProcSample>,
}

/// What the server holds of the agent's journal, with what the agent still had at its stop.
#[derive(Debug, Clone, Default)]
pub struct JournalCheck {
    /// Records stored on the server.
    pub stored: usize,
    /// Records still with the agent when it stopped (written after its last upload).
    pub pending: usize,
    /// Journal ids seen (one installation: one).
    pub journal_ids: usize,
    /// Sequence numbers missing between the first and the last record, both sides together.
    pub missing: Vec<u64>,
    /// Sequence numbers the server holds twice (cannot happen with its keying, checked anyway).
    pub duplicates: usize,
    /// `LinkUp` records (server and agent together).
    pub link_ups: usize,
    /// `LinkDown` records other than the one of the agent's own shutdown.
    pub link_downs: usize,
    /// `LinkDown`s each followed by a `LinkUp` before any other link record.
    pub down_up_pairs: usize,
    /// Link records out of order (two downs or two ups in a row).
    pub out_of_order: usize,
    /// The server's own view: link up and down events it recorded for the agent.
    pub server_link_ups: usize,
    /// See `server_link_ups`.
    pub server_link_downs: usize,
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct FlapReport {
    pub cycles: Vec<Cycle>,
    /// The agent once linked, before the first outage.
    pub first_sample: ProcSample,
    pub journal: JournalCheck,
    pub wall_time: Duration,
}

impl FlapReport {
    /// Outages after which the agent came back.
    pub fn reconnected(&self) -> usize {
        self.cycles.iter().filter(|c| c.up_after.is_some()).count()
    }

    /// Medians of the first and the last quarter of the samples: (first, last).
    pub fn quarters(&self) -> Option<(ProcSample, ProcSample)> {
        let samples: Vec<ProcSample> = self.cycles.iter().filter_map(|c| c.sample).collect();
        let q = samples.len() / 4;
        if q == 0 {
            return None;
        }
        Some((
            median_sample(&samples[..q]),
            median_sample(&samples[samples.len() - q..]),
        ))
    }
}

fn median_sample(s: &[ProcSample]) -> ProcSample {
    let med = |f: fn(&ProcSample) -> u64| {
        let mut v: Vec<u64> = s.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    ProcSample {
        rss_kib: med(|s| s.rss_kib),
        peak_rss_kib: med(|s| s.peak_rss_kib),
        cpu_seconds: {
            let mut v: Vec<f64> = s.iter().map(|s| s.cpu_seconds).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        },
        threads: med(|s| s.threads),
        fds: med(|s| s.fds),
    }
}

fn run_tool(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(binary(program))
        .args(args)
        .output()
        .map_err(|e| format!("run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

fn check_journal(server_dump: &str, agent_dump: &str) -> JournalCheck {
    let stored = crate::journal_dump::parse(server_dump);
    let pending = crate::journal_dump::parse(agent_dump);
    let mut check = JournalCheck {
        stored: stored.len(),
        pending: pending.len(),
        ..JournalCheck::default()
    };
    let ids: std::collections::BTreeSet<u64> = stored
        .iter()
        .chain(&pending)
        .map(|r| r.journal_id)
        .collect();
    check.journal_ids = ids.len();
    let mut journal: BTreeMap<u64, String> = BTreeMap::new();
    for r in &stored {
        if journal.insert(r.seq, r.event.clone()).is_some() {
            check.duplicates += 1;
        }
    }
    for r in &pending {
        journal.entry(r.seq).or_insert_with(|| r.event.clone());
    }
    if let (Some(first), Some(last)) = (journal.keys().next(), journal.keys().next_back()) {
        check.missing = (*first..=*last)
            .filter(|s| !journal.contains_key(s))
            .collect();
    }
    let mut last_link: Option<bool> = None;
    for event in journal.values() {
        let up = if event.starts_with("LinkUp") {
            check.link_ups += 1;
            true
        } else if event.starts_with("LinkDown") {
            if event.contains("agent shutting down") {
                continue;
            }
            check.link_downs += 1;
            false
        } else {
            continue;
        };
        match (last_link, up) {
            (Some(false), true) => check.down_up_pairs += 1,
            (Some(a), b) if a == b => check.out_of_order += 1,
            _ => {}
        }
        last_link = Some(up);
    }
    for line in server_dump.lines().filter(|l| l.starts_with("link\t")) {
        match line.split('\t').nth(2) {
            Some("up") => check.server_link_ups += 1,
            Some("down") => check.server_link_downs += 1,
            _ => {}
        }
    }
    check
}

/// Whether an agent's log line says that its session ended (`LinkError` in
/// `relay-agent/src/connection.rs`): QUIC's idle timeout, or the control session's own; a
/// failed connection attempt (`connect: …`) is not a session.
fn session_ended(line: &str) -> bool {
    [
        "connection lost: ",
        "session closed: ",
        "server closed the session: ",
    ]
    .iter()
    .any(|w| line.contains(w))
}

/// Runs the outages against a fresh server and agent in `dir`; panics only when a process
/// cannot be started at all (a failed reconnect is counted, not a panic).
pub fn run_flapping(dir: &Path, options: &FlapOptions) -> Result<FlapReport, String> {
    let started = Instant::now();
    let data = dir.join("server");
    let bundle = dir.join("binh-hai.toml");
    enroll(&data, "binh-hai", &bundle);
    let (mut server, addr) = start_server_with(&data, "127.0.0.1:0", &["--no-schedule"]);
    server.quiet();
    let upstream: SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let proxy = ImpairmentProxy::try_start(upstream, Impairment::none())
        .map_err(|e| format!("proxy: {e}"))?;
    let config = dir.join("agent.toml");
    let (min, max) = options.backoff_ms;
    std::fs::write(
        &config,
        format!(
            "reconnect_min_ms = {min}\nreconnect_max_ms = {max}\nsinks = [\"wav:{}\"]\n",
            dir.join("out.wav").display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let state = dir.join("agent");
    let proxy_addr = proxy.local_addr().to_string();
    let args = [
        "--config",
        config.to_str().ok_or("utf8")?,
        "--bundle",
        bundle.to_str().ok_or("utf8")?,
        "--server",
        &proxy_addr,
        "--state-dir",
        state.to_str().ok_or("utf8")?,
    ];
    let mut agent = Process::start("agent", &binary("relay-agent"), &args);
    agent.quiet();
    agent
        .try_wait_for_nth("link up", 1, Duration::from_secs(60))
        .ok_or("the agent never linked up")?;
    // The link's up time between storms, from the modelled day: pacing.
    std::thread::sleep(options.up);
    let pid = agent.id();
    let first_sample = proc_sample(pid).map_err(|e| e.to_string())?;
    let mut cycles = Vec::with_capacity(options.outages.len());
    let mut ups = 1;
    let mut downs = 0;
    for (i, outage) in options.outages.iter().enumerate() {
        let applied = outage.length.min(options.cap);
        let hole = Instant::now();
        proxy.blackhole(applied);
        let down_line = agent.try_wait_for_nth_matching(
            session_ended,
            downs + 1,
            applied + Duration::from_secs(5),
        );
        let down_after = down_line.map(|_| hole.elapsed());
        if down_after.is_some() {
            downs += 1;
        }
        let restore = hole + applied;
        // The outage's modelled length: pacing.
        std::thread::sleep(restore.saturating_duration_since(Instant::now()));
        let up_after = if down_after.is_some() {
            agent
                .try_wait_for_nth("link up", ups + 1, Duration::from_secs(60))
                .map(|_| restore.elapsed())
        } else {
            None
        };
        if up_after.is_some() {
            ups += 1;
        }
        // The up time before the next outage: pacing.
        std::thread::sleep(options.up);
        let sample = proc_sample(pid).ok();
        if options.verbose {
            eprintln!(
                "outage {:>3}/{} at {:>5.0} s of the day: {:>5.1} s modelled, {:>4.1} s applied; down after {}, up {} after the restore; {}",
                i + 1,
                options.outages.len(),
                outage.start.as_secs_f64(),
                outage.length.as_secs_f64(),
                applied.as_secs_f64(),
                down_after.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                up_after.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                sample.map_or("no sample".into(), |s| format!(
                    "RSS {} KiB, {} threads, {} fds",
                    s.rss_kib, s.threads, s.fds
                )),
            );
        }
        cycles.push(Cycle {
            outage: *outage,
            applied,
            down_after,
            up_after,
            sample,
        });
    }
    let (status, _) = agent.terminate();
    if !status.success() {
        return Err(format!("agent exit {status}"));
    }
    let (status, _) = server.terminate();
    if !status.success() {
        return Err(format!("server exit {status}"));
    }
    let server_dump = run_tool(
        "radio-server",
        &[
            "journal",
            "--data-dir",
            data.to_str().ok_or("utf8")?,
            "--agent",
            "binh-hai",
        ],
    )?;
    let agent_dump = run_tool(
        "relay-agent",
        &[
            "--print-journal",
            state.join("journal").to_str().ok_or("utf8")?,
        ],
    )?;
    Ok(FlapReport {
        cycles,
        first_sample,
        journal: check_journal(&server_dump, &agent_dump),
        wall_time: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_seeded_sorted_and_stormy_in_the_afternoon() {
        let day = thunderstorm_day(7);
        assert_eq!(day, thunderstorm_day(7));
        assert_ne!(day, thunderstorm_day(8));
        assert!(day
            .windows(2)
            .all(|w| w[0].start + w[0].length < w[1].start));
        assert!(day.iter().all(|o| o.length >= MIN_OUTAGE));
        let afternoon = day
            .iter()
            .filter(|o| (12 * 3600..20 * 3600).contains(&o.start.as_secs()))
            .count();
        assert!(day.len() >= 100, "{} outages", day.len());
        assert!(afternoon * 2 > day.len(), "{afternoon} of {}", day.len());
    }

    #[test]
    fn the_journal_check_finds_gaps_and_unpaired_links() {
        let server = "1\t1\t0\tProcessStart { clean_previous: true }\n\
                      1\t2\t0\tLinkUp { server_run: 1 }\n\
                      1\t3\t0\tLinkDown { reason: \"x\" }\n\
                      1\t5\t0\tLinkUp { server_run: 1 }\n\
                      link\t0\tup\trun 01\tx\n";
        let agent = "1\t6\t0\tLinkDown { reason: \"y\" }\n\
                     1\t7\t0\tLinkDown { reason: \"agent shutting down\" }\n";
        let c = check_journal(server, agent);
        assert_eq!((c.stored, c.pending, c.journal_ids), (4, 2, 1));
        assert_eq!(c.missing, vec![4]);
        assert_eq!((c.link_ups, c.link_downs, c.down_up_pairs), (2, 2, 1));
        assert_eq!(c.out_of_order, 0);
        assert_eq!(c.server_link_ups, 1);
    }
}
