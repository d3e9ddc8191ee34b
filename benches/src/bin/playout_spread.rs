//! Playout spread: how far apart the agents of a district play the same frame.
//!
//! Starts a real `radio-server` and N real `relay-agent` processes on 127.0.0.1, each agent with
//! an RTP sink to its own UDP port, most of them behind the test kit's impairment proxy with
//! different delays and jitter (both ways, as a real link has); a thread per port records when
//! each packet arrives. The same frame is recognised at every agent by its Opus payload. For
//! each frame the spread is the latest minus the earliest arrival; each run reports its p50 and
//! p99, and the summary the medians over the runs.
//!
//! `cargo run -p radio-benches --bin playout_spread -- [RUNS] [AGENTS] [SECONDS] [LINKS]`
//! (defaults 5, 4, 20, `mixed`; `direct` connects every agent without the proxy, which
//! separates the timing noise of the machine from the clock estimate's error on impaired links).
//! The binaries are the test kit's (a dev build, `radio_tests::binary`). With `SPREAD_DEBUG` set
//! in the environment, every frame spread over 1 ms is printed.
//!
//! Goal: p99 ≤ 0.5 ms.

use radio_benches::summary::median;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use radio_tests::rtp_capture::{playout_offsets, playout_spread, quantile, RtpCapture};
use radio_tests::{
    enroll, start_agent, start_server, test_signal, write_wav, Impairment, ImpairmentProxy, Jitter,
    LinkImpairment,
};

const COMMUNES: [&str; 8] = [
    "binh-trung",
    "binh-duong",
    "binh-tri",
    "binh-nguyen",
    "binh-minh",
    "binh-my",
    "binh-phu",
    "binh-long",
];

/// The link of agent `i`: direct, or through the proxy with the same delay each way (a
/// constant asymmetry would shift that agent by half of it, for any clock exchange).
fn link(i: usize, direct: bool) -> Option<(&'static str, LinkImpairment)> {
    let ms = Duration::from_millis;
    if direct {
        return None;
    }
    match i % 4 {
        0 => None,
        1 => Some(("40 ms", LinkImpairment::default().with_delay(ms(40)))),
        2 => Some((
            "80 ms + |normal| jitter σ 5 ms, order kept",
            LinkImpairment::default()
                .with_delay(ms(80))
                .with_jitter(Jitter::Normal(ms(5)), false),
        )),
        _ => Some((
            "20 ms + uniform jitter 0-10 ms, reordering",
            LinkImpairment::default()
                .with_delay(ms(20))
                .with_jitter(Jitter::Uniform(ms(10)), true),
        )),
    }
}

struct RunResult {
    frames: usize,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn run_once(run: usize, agents: usize, seconds: f32, direct: bool) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server-data");
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(seconds), 48_000);
    let communes = &COMMUNES[..agents];
    for commune in communes {
        enroll(&data, commune, &dir.path().join(format!("{commune}.toml")));
    }
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), agents);
    let upstream: SocketAddr = addr.parse().context("server address")?;
    let mut proxies = Vec::new();
    let mut captures = Vec::new();
    let mut processes = Vec::new();
    for (i, commune) in communes.iter().enumerate() {
        let target = match link(i, direct) {
            None => addr.clone(),
            Some((_, impairment)) => {
                let proxy = ImpairmentProxy::start(
                    upstream,
                    Impairment::both(impairment).with_seed(run as u64 * 100 + i as u64),
                );
                let target = proxy.local_addr().to_string();
                proxies.push(proxy);
                target
            }
        };
        let capture = RtpCapture::start()?;
        let sink = format!("rtp:127.0.0.1:{}", capture.port());
        captures.push(capture);
        processes.push(start_agent(
            commune,
            &dir.path().join(format!("{commune}.toml")),
            &target,
            &dir.path().join("state").join(commune),
            &[sink],
        ));
    }
    for p in &mut processes {
        p.wait_for("link up", Duration::from_secs(30));
    }
    server.wait_for("off air", Duration::from_secs(60 + seconds as u64 * 2));
    // The last frames are still in the agents' buffers (the playout delay).
    std::thread::sleep(Duration::from_millis(1_500));
    let mut synced = 0;
    for (i, p) in processes.into_iter().enumerate() {
        let (_, output) = p.terminate();
        if output.iter().any(|l| l.contains("server clock known")) {
            synced += 1;
        }
        for line in output.iter().filter(|l| l.contains(" WARN ")) {
            println!("  run {run} agent {i}: {line}");
        }
    }
    let _ = server.terminate();
    let packets: Vec<_> = captures.into_iter().map(RtpCapture::stop).collect();
    let spreads = playout_spread(&packets);
    if std::env::var_os("SPREAD_DEBUG").is_some() {
        for (k, v) in spreads.iter().enumerate().filter(|(_, v)| **v > 1000.0) {
            println!("  frame {k}: {v:.0} µs");
        }
    }
    for (i, offsets) in playout_offsets(&packets).iter().enumerate().skip(1) {
        println!(
            "  run {run} agent {i} vs agent 0: p1 {:.0} µs, p50 {:.0} µs, p99 {:.0} µs",
            quantile(offsets, 0.01).unwrap_or(f64::NAN),
            quantile(offsets, 0.5).unwrap_or(f64::NAN),
            quantile(offsets, 0.99).unwrap_or(f64::NAN)
        );
    }
    let expected = (seconds * 50.0) as usize;
    anyhow::ensure!(
        spreads.len() * 10 >= expected * 9,
        "only {} of about {expected} frames were seen once at every agent",
        spreads.len()
    );
    anyhow::ensure!(synced == agents, "only {synced} of {agents} agents synced");
    Ok(RunResult {
        frames: spreads.len(),
        p50_us: quantile(&spreads, 0.5).unwrap_or(f64::NAN),
        p99_us: quantile(&spreads, 0.99).unwrap_or(f64::NAN),
        max_us: quantile(&spreads, 1.0).unwrap_or(f64::NAN),
    })
}

/// Playout spread: how far apart real relay-agents play the same frame, most of them behind
/// impairment proxies.
#[derive(Debug, clap::Parser)]
struct Cli {
    /// Runs.
    #[arg(default_value_t = 5)]
    runs: usize,
    /// Agents, 2 to the communes there are.
    #[arg(default_value_t = 4)]
    agents: usize,
    /// Seconds of programme per run.
    #[arg(default_value_t = 20.0)]
    seconds: f32,
    /// `mixed`: most agents behind the proxy with different delays and jitter; `direct`: none,
    /// which separates the machine's timing noise from the clock estimate's error.
    #[arg(value_enum, default_value_t = Links::Mixed)]
    links: Links,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Links {
    Mixed,
    Direct,
}

fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let runs = cli.runs;
    let agents = cli.agents.clamp(2, COMMUNES.len());
    let seconds = cli.seconds;
    let direct = cli.links == Links::Direct;
    for (i, commune) in COMMUNES.iter().enumerate().take(agents) {
        match link(i, direct) {
            None => println!("agent {i} ({commune}): direct"),
            Some((desc, _)) => println!("agent {i} ({commune}): {desc}, each way"),
        }
    }
    let mut results = Vec::new();
    for run in 0..runs {
        let r = run_once(run, agents, seconds, direct)?;
        println!(
            "{{\"run\": {run}, \"frames\": {}, \"p50_us\": {:.0}, \"p99_us\": {:.0}, \"max_us\": {:.0}}}",
            r.frames, r.p50_us, r.p99_us, r.max_us
        );
        results.push(r);
    }
    let p50 = median(&results.iter().map(|r| r.p50_us).collect::<Vec<_>>());
    let p99 = median(&results.iter().map(|r| r.p99_us).collect::<Vec<_>>());
    let max = median(&results.iter().map(|r| r.max_us).collect::<Vec<_>>());
    println!(
        "{{\"agents\": {agents}, \"runs\": {runs}, \"seconds\": {seconds}, \"median_p50_us\": {p50:.0}, \"median_p99_us\": {p99:.0}, \"median_max_us\": {max:.0}, \"goal_p99_us\": 500, \"reached\": {}}}",
        p99 <= 500.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Playout spread".
        let cli = Cli::try_parse_from(["playout_spread", "5", "4", "60"]).expect("parses");
        assert_eq!((cli.runs, cli.agents, cli.seconds), (5, 4, 60.0));
        assert_eq!(cli.links, Links::Mixed);
        let cli =
            Cli::try_parse_from(["playout_spread", "5", "4", "20", "direct"]).expect("parses");
        assert_eq!(cli.links, Links::Direct);
    }
}
