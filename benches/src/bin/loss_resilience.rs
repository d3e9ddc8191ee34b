//! Loss resilience of live audio: the real `radio-server` airs the studio's live input (raw PCM
//! on a FIFO, as a mixer would send it) to real `relay-agent` processes, each behind its own
//! impairment proxy (loss both ways, 30 ms jitter), and counts what each agent played.
//!
//! `cargo run -p radio-benches --bin loss_resilience -- [--seconds S] [--runs N] [--seed X]
//!  [--playout-delay-ms MS] [--case TEXT] [--copies N]`
//!
//! `--playout-delay-ms` sets the agents' delay (default: theirs); `--case` keeps the cases whose
//! name contains TEXT; `--copies` runs N agents per case, each with its own proxy seed.
//!
//! All the cases of one run share one server and one live session, each agent with its own
//! proxy: the agents hear the same frames at the same time, so the cases differ only by their
//! link. The counters come from each agent's own log when it stops (SIGTERM): the proof-of-play
//! line of the live programme (`played P/F frames`, F = frames the server sent to that station,
//! from the programme's end marker) and the playout counters (`stopped cleanly … late=…`).
//! The heartbeats would carry only received/played/lost, and only once a minute.
//!
//! Goal (issue 5): at 10 % random loss plus 30 ms jitter, at least 99.5 % of live frames are
//! played, not concealed.

use clap::Parser;
use radio_benches::summary::median;
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use radio_config::District;
use radio_tests::{
    binary, enroll, start_agent, start_server_with, test_signal, GilbertElliott, Impairment,
    ImpairmentProxy, Jitter, LinkImpairment, Process, ProxyStats,
};

/// One-way base delay of every case: a wireless link to a commune is never 0 ms.
const BASE_DELAY: Duration = Duration::from_millis(20);
/// Standard deviation of the extra delay per datagram (|normal|, capped at 4σ = 120 ms); it
/// reorders datagrams, as jitter on a real link does.
const JITTER: Duration = Duration::from_millis(30);

#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    loss: f64,
    burst: Option<GilbertElliott>,
}

const CASES: [Case; 5] = [
    Case {
        name: "0 % loss",
        loss: 0.0,
        burst: None,
    },
    Case {
        name: "5 % random",
        loss: 0.05,
        burst: None,
    },
    Case {
        name: "10 % random",
        loss: 0.10,
        burst: None,
    },
    Case {
        name: "20 % random",
        loss: 0.20,
        burst: None,
    },
    // Bad spells of 5 datagrams on average (1 / 0.2), entered with probability 0.02: about
    // 9 % of the datagrams lost, in bursts of about 100 ms of audio.
    Case {
        name: "burst (G-E 0.02/0.2)",
        loss: 0.0,
        burst: Some(GilbertElliott {
            p_good_to_bad: 0.02,
            p_bad_to_good: 0.2,
            loss_good: 0.0,
            loss_bad: 1.0,
        }),
    },
];

impl Case {
    fn impairment(&self, seed: u64) -> Impairment {
        let mut link = LinkImpairment::default()
            .with_loss(self.loss)
            .with_delay(BASE_DELAY)
            .with_jitter(Jitter::Normal(JITTER), true);
        if let Some(model) = self.burst {
            link = link.with_burst(model);
        }
        Impairment::both(link).with_seed(seed)
    }
}

/// What one agent reported.
#[derive(Debug, Clone, Default)]
struct Outcome {
    /// Live frames the server sent to this station.
    sent: u64,
    /// Live frames played in their slot.
    played: u64,
    /// Playout counters over the agent's life (only the live session aired).
    lost: u64,
    late: u64,
    underrun: u64,
    duplicate: u64,
    overflow: u64,
    received: u64,
    proxy: ProxyStats,
    /// The programme's end marker had not reached the agent a minute after the studio stopped:
    /// its stream was that far behind.
    end_missing: bool,
}

impl Outcome {
    fn played_fraction(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            self.played as f64 / self.sent as f64
        }
    }
}

fn field(line: &str, key: &str) -> Option<u64> {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

fn parse_agent_log(lines: &[String]) -> anyhow::Result<Outcome> {
    let programme = lines
        .iter()
        .find(|l| l.contains("programme ") && l.contains(": played "))
        .context("no proof-of-play line: the live programme never reached the agent")?;
    let counts = programme
        .split(": played ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .context("no count after `played`")?;
    let (played, sent) = counts.split_once('/').context("no `/` in the count")?;
    let stats = lines
        .iter()
        .find(|l| l.contains("stopped cleanly"))
        .context("the agent did not stop cleanly")?;
    let get = |k| field(stats, k).with_context(|| format!("no {k}= in {stats}"));
    Ok(Outcome {
        sent: sent.parse()?,
        played: played.parse()?,
        lost: get("lost")?,
        late: get("late")?,
        underrun: get("underrun_slots")?,
        duplicate: get("duplicate")?,
        overflow: get("overflow")?,
        received: get("received")?,
        proxy: ProxyStats::default(),
        end_missing: false,
    })
}

/// 48 kHz mono s16le: the studio's format as the server's config declares it.
fn pcm(seconds: f32) -> Vec<u8> {
    test_signal(seconds)
        .iter()
        .flat_map(|s| ((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes())
        .collect()
}

fn one_run(
    seconds: f32,
    seed: u64,
    cases: &[Case],
    playout_delay_ms: Option<u32>,
) -> anyhow::Result<Vec<Outcome>> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server");
    let fifo = dir.path().join("studio.pcm");
    if !Command::new("mkfifo").arg(&fifo).status()?.success() {
        bail!("mkfifo failed");
    }
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[live]\npipe = \"{}\"\npipe_sample_rate = 48000\npipe_channels = 1\n",
            fifo.display()
        ),
    )?;
    let district = District::binh_son();
    let mut bundles = Vec::new();
    for (case, station) in cases.iter().zip(&district.stations) {
        let bundle = dir.path().join(format!("{}.toml", station.id));
        enroll(&data, &station.id, &bundle);
        bundles.push((case, bundle));
    }
    let (mut server, addr) = start_server_with(
        &data,
        "127.0.0.1:0",
        &[
            "--config",
            config.to_str().context("utf8 path")?,
            "--no-schedule",
        ],
    );
    server.wait_for("live studio PCM from", Duration::from_secs(10));
    let upstream: SocketAddr = addr.parse()?;
    let mut agents: Vec<(Process, ImpairmentProxy)> = Vec::new();
    for (i, (case, bundle)) in bundles.iter().enumerate() {
        let proxy = ImpairmentProxy::try_start(upstream, case.impairment(seed * 100 + i as u64))?;
        let state = dir.path().join(format!("agent-{i}"));
        let sink = format!("wav:{}", dir.path().join(format!("{i}.wav")).display());
        let agent = match playout_delay_ms {
            None => start_agent(
                case.name,
                bundle,
                &proxy.local_addr().to_string(),
                &state,
                &[sink],
            ),
            Some(ms) => Process::start(
                case.name,
                &binary("relay-agent"),
                &[
                    "--bundle",
                    bundle.to_str().context("utf8 path")?,
                    "--server",
                    &proxy.local_addr().to_string(),
                    "--state-dir",
                    state.to_str().context("utf8 path")?,
                    "--sink",
                    &sink,
                    "--playout-delay-ms",
                    &ms.to_string(),
                ],
            ),
        };
        agents.push((agent, proxy));
    }
    for (agent, _) in &mut agents {
        agent.wait_for("link up", Duration::from_secs(60));
    }
    // The server reads the FIFO at the pace of its 20 ms clock, so this write takes `seconds`.
    let audio = pcm(seconds);
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || -> std::io::Result<()> {
            let mut mixer = std::fs::OpenOptions::new().write(true).open(&fifo)?;
            mixer.write_all(&audio)
        }
    });
    server.wait_for("studio is sending: live on air", Duration::from_secs(20));
    server.wait_for(
        "studio stopped: live off air",
        Duration::from_secs_f32(seconds + 60.0),
    );
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the mixer thread panicked"))??;
    // The last frames and the end marker still cross the impaired link, retransmissions
    // included; a link in a bad spell may have fallen seconds behind.
    let mut ended = Vec::new();
    for (agent, _) in &mut agents {
        ended.push(
            agent
                .try_wait_for_nth("programme end", 1, Duration::from_secs(60))
                .is_some(),
        );
    }
    // Then the last frames wait out the playout delay.
    std::thread::sleep(Duration::from_secs(2));
    let mut outcomes = Vec::new();
    for ((agent, proxy), ended) in agents.into_iter().zip(ended) {
        let stats = proxy.stats();
        let (status, lines) = agent.terminate();
        if !status.success() {
            bail!("agent exited with {status}");
        }
        let mut outcome = parse_agent_log(&lines)?;
        outcome.proxy = stats;
        outcome.end_missing = !ended;
        outcomes.push(outcome);
    }
    // Every station was switched to the same live session from its first frame, so a station
    // whose end marker never came was sent as many frames as the others.
    let sent = outcomes.iter().map(|o| o.sent).max().unwrap_or(0);
    for o in &mut outcomes {
        if o.end_missing {
            o.sent = sent;
        }
    }
    let _ = server.terminate();
    Ok(outcomes)
}

/// Loss resilience of live audio: real relay-agents, each behind its own impairment proxy (loss
/// both ways, 30 ms jitter), count what they played of the server's live input.
#[derive(Debug, Parser)]
struct Cli {
    /// Seconds of live audio per run.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    seconds: f32,
    /// Runs.
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: u64,
    /// Seed of the first run's proxies (run N uses SEED + N).
    #[arg(long, value_name = "X", default_value_t = 1)]
    seed: u64,
    /// The agents' playout delay [default: theirs].
    #[arg(long, value_name = "MS")]
    playout_delay_ms: Option<u32>,
    /// Only the cases whose name contains TEXT (a quicker look at one link) [default: all].
    #[arg(
        long = "case",
        value_name = "TEXT",
        default_value = "",
        hide_default_value = true
    )]
    only: String,
    /// N agents per case, each behind its own proxy with its own seed: more samples of a rare
    /// event (a stall) per minute of audio.
    #[arg(long, value_name = "N", default_value_t = 1)]
    copies: usize,
}

fn main() -> anyhow::Result<()> {
    let Cli {
        seconds,
        runs,
        seed,
        playout_delay_ms,
        only,
        copies,
    } = Cli::parse();
    if !radio_tests::tool_runs("mkfifo") {
        bail!("mkfifo is needed for the studio FIFO");
    }
    let chosen: Vec<Case> = CASES
        .iter()
        .filter(|c| c.name.contains(&only))
        .copied()
        .collect();
    let cases: Vec<Case> = (0..copies).flat_map(|_| chosen.clone()).collect();
    if cases.len() > District::binh_son().stations.len() {
        bail!("more agents than stations");
    }
    let mut all: Vec<Vec<Outcome>> = vec![Vec::new(); chosen.len()];
    for run in 0..runs {
        let outcomes = one_run(seconds, seed + run, &cases, playout_delay_ms)?;
        for (i, o) in outcomes.into_iter().enumerate() {
            let down = o.proxy.server_to_client;
            let up = o.proxy.client_to_server;
            println!(
                "run {run} {:<22} sent {:>5} played {:>5} ({:.3} %) lost(concealed) {:>3} late {:>3} underrun {:>3} dup {:>3} overflow {} received {}{} | proxy down {}/{} dropped, up {}/{} dropped",
                cases[i].name,
                o.sent,
                o.played,
                100.0 * o.played_fraction(),
                o.lost,
                o.late,
                o.underrun,
                o.duplicate,
                o.overflow,
                o.received,
                if o.end_missing {
                    " (END MARKER NOT RECEIVED within 60 s)"
                } else {
                    ""
                },
                down.dropped(),
                down.received,
                up.dropped(),
                up.received,
            );
            all[i % chosen.len()].push(o);
        }
    }
    println!();
    println!(
        "| case | runs | sent | played | concealed (lost) | late | underrun slots | played fraction | datagrams dropped (down / up) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (case, outcomes) in chosen.iter().zip(&all) {
        let m = |f: &dyn Fn(&Outcome) -> f64| median(&outcomes.iter().map(f).collect::<Vec<_>>());
        let drop_rate = |d: radio_tests::DirectionStats| {
            if d.received == 0 {
                0.0
            } else {
                100.0 * d.dropped() as f64 / d.received as f64
            }
        };
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} % (min {:.3} %) | {:.1} % / {:.1} % |",
            case.name,
            outcomes.len(),
            m(&|o| o.sent as f64),
            m(&|o| o.played as f64),
            m(&|o| o.lost as f64),
            m(&|o| o.late as f64),
            m(&|o| o.underrun as f64),
            100.0 * m(&|o| o.played_fraction()),
            100.0
                * outcomes
                    .iter()
                    .map(Outcome::played_fraction)
                    .fold(f64::INFINITY, f64::min),
            m(&|o| drop_rate(o.proxy.server_to_client)),
            m(&|o| drop_rate(o.proxy.client_to_server)),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Loss resilience".
        let cli = Cli::try_parse_from(["loss_resilience", "--runs", "5", "--seconds", "60"])
            .expect("parses");
        assert_eq!(
            (cli.runs, cli.seconds, cli.playout_delay_ms),
            (5, 60.0, None)
        );
        assert_eq!((cli.seed, cli.copies, cli.only.as_str()), (1, 1, ""));
        let cli = Cli::try_parse_from([
            "loss_resilience",
            "--runs",
            "5",
            "--seconds",
            "60",
            "--playout-delay-ms",
            "200",
        ])
        .expect("parses");
        assert_eq!(cli.playout_delay_ms, Some(200));
    }
}
