//! Live latency: from an RTP packet of the studio arriving at the server's live input to the
//! same audio leaving a relay agent as RTP, on loopback.
//!
//! `cargo run --release -p radio-benches --bin live_latency -- [RUNS] [--seconds S]
//!  [--jitter-delay-ms D] [--playout-delay-ms P]`
//!
//! Starts the **release** `radio-server` (live RTP input on a free port, `[live]` in a config
//! file, `jitter_delay_ms = D` when given) and one release `relay-agent` (`--playout-delay-ms P`
//! when given) whose RTP sink points at a UDP port this process records. A thread of this
//! process is the studio: it sends real Opus RTP packets (20 ms, 48 kHz, PT 97), paced in real
//! time, and notes the instant it hands each one to the socket. The audio is silence with short
//! 1 kHz tone bursts at seeded, irregular intervals (150–250 ms apart).
//!
//! Both ends are decoded as a receiver would: the packets sent (with a fresh decoder, as the
//! server decodes them) and the agent's RTP output (Opus, PT 111, gaps filled by RTP timestamp).
//! A burst's onset is the first sample above a threshold after 20 ms below it. Its instant is
//! the send (or arrival) instant of the packet that carries it plus its offset in that packet,
//! on both sides, so the studio encoder's own delay (before its packet is sent) is not counted
//! and the server's encoder delay is. The irregular spacing pairs each input burst with its
//! output burst without ambiguity: the most common difference is the latency, and each burst is
//! paired with the output onset nearest to it within ±60 ms. Bursts of the first 2 s (live going
//! on air) are left out. Each run gives p50/p99/max; the summary gives their medians over runs.
//!
//! Goal (issue 7): p99 ≤ 50 ms.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use opus::{Application, Bitrate, Channels, Encoder};
use radio_benches::live_latency::{
    burst_signal, decode, pair, rtp, seconds_since, send_paced, Capture, RunResult, FRAME, RATE,
    WARM_UP,
};
use radio_benches::summary::median;
use radio_tests::{free_udp_port, release_binary, Process};

const COMMUNE: &str = "binh-trung";

struct Settings {
    seconds: f64,
    jitter_delay_ms: Option<u64>,
    playout_delay_ms: Option<u32>,
}

fn enroll(data: &Path, out: &Path) -> anyhow::Result<()> {
    let status = Command::new(release_binary("radio-server"))
        .arg("enroll")
        .arg("--data-dir")
        .arg(data)
        .args(["--commune", COMMUNE, "--out"])
        .arg(out)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "enroll failed");
    Ok(())
}

fn run_once(run: usize, s: &Settings) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("agent.toml");
    enroll(&data, &bundle)?;
    let live: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse()?;
    let mut config = format!("[live]\nrtp = \"{live}\"\nallow = [\"127.0.0.1\"]\n");
    if let Some(d) = s.jitter_delay_ms {
        config.push_str(&format!("jitter_delay_ms = {d}\n"));
    }
    let config_path = dir.path().join("server.toml");
    std::fs::write(&config_path, config)?;
    let mut server = Process::start(
        "server",
        &release_binary("radio-server"),
        &[
            "run",
            "--config",
            config_path.to_str().context("utf8")?,
            "--data-dir",
            data.to_str().context("utf8")?,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--no-schedule",
        ],
    );
    server.quiet();
    let line = server.wait_for("listening on", Duration::from_secs(30));
    let addr = line
        .rsplit(' ')
        .next()
        .context("address")?
        .trim()
        .to_owned();
    let capture = Capture::start()?;
    let sink = format!("rtp:127.0.0.1:{}", capture.port);
    let state = dir.path().join("state");
    let delay = s.playout_delay_ms.map(|p| p.to_string());
    let mut args = vec![
        "--bundle",
        bundle.to_str().context("utf8")?,
        "--server",
        &addr,
        "--state-dir",
        state.to_str().context("utf8")?,
        "--sink",
        &sink,
    ];
    if let Some(d) = &delay {
        args.extend(["--playout-delay-ms", d]);
    }
    let mut agent = Process::start("agent", &release_binary("relay-agent"), &args);
    agent.quiet();
    agent.wait_for("link up", Duration::from_secs(30));
    agent.wait_for("server clock known", Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));

    // The studio: encode everything first, so that pacing is not disturbed by the encoder.
    let signal = burst_signal(s.seconds, 0x9e37_79b9 ^ (run as u32 + 1));
    let mut enc = Encoder::new(RATE, Channels::Mono, Application::Audio)?;
    enc.set_bitrate(Bitrate::Bits(64_000))?;
    let ssrc = 0x5354_0000 | run as u32;
    let mut buf = vec![0u8; 4000];
    let mut packets = Vec::new();
    let mut payloads = Vec::new();
    for (k, frame) in signal.chunks_exact(FRAME).enumerate() {
        let n = enc.encode_float(frame, &mut buf)?;
        packets.push(rtp(k as u16, (k * FRAME) as u32, ssrc, &buf[..n]));
        payloads.push(buf[..n].to_vec());
    }
    let start = Instant::now() + Duration::from_millis(50);
    let sent = send_paced(live, &packets, start)?;
    // The last bursts are still in the agent's playout delay.
    std::thread::sleep(Duration::from_millis(800));
    let output = capture.stop();
    let (_, agent_log) = agent.terminate();
    let (_, server_log) = server.terminate();
    let debug = std::env::var_os("LIVE_DEBUG").is_some();
    for line in agent_log.iter().chain(&server_log).filter(|l| {
        l.contains(" WARN ")
            || l.contains("ERROR")
            || l.contains("stopped cleanly")
            || (debug && l.contains("live"))
    }) {
        println!("  run {run}: {line}");
    }

    let input = decode(
        &sent
            .iter()
            .zip(&payloads)
            .enumerate()
            .map(|(k, (at, p))| (*at, (k * FRAME) as u32, p.clone()))
            .collect::<Vec<_>>(),
    )?;
    let warm = start + WARM_UP;
    let ins: Vec<Instant> = input
        .onset_instants()
        .into_iter()
        .filter(|t| *t >= warm)
        .collect();
    let outs = decode(&output)?.onset_instants();
    pair(
        &format!("run {run}"),
        &seconds_since(start, &ins),
        &seconds_since(start, &outs),
        debug,
    )
}

/// Live latency: from a studio RTP packet arriving at the server's live input to the same audio
/// leaving a relay agent as RTP, on loopback (release builds).
#[derive(Debug, Parser)]
struct Cli {
    /// Runs.
    #[arg(default_value_t = 5)]
    runs: usize,
    /// Seconds of live audio per run.
    #[arg(long, value_name = "S", default_value_t = 30.0)]
    seconds: f64,
    /// The server's `[live] jitter_delay_ms` [default: the server's].
    #[arg(long, value_name = "D")]
    jitter_delay_ms: Option<u64>,
    /// The agent's `--playout-delay-ms` [default: the agent's].
    #[arg(long, value_name = "P")]
    playout_delay_ms: Option<u32>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runs = cli.runs;
    let settings = Settings {
        seconds: cli.seconds,
        jitter_delay_ms: cli.jitter_delay_ms,
        playout_delay_ms: cli.playout_delay_ms,
    };
    let shown = |v: Option<String>| v.unwrap_or_else(|| "default".into());
    println!(
        "live jitter_delay_ms: {}, agent playout_delay_ms: {}, {} s per run",
        shown(settings.jitter_delay_ms.map(|v| v.to_string())),
        shown(settings.playout_delay_ms.map(|v| v.to_string())),
        settings.seconds
    );
    let mut results = Vec::new();
    for run in 0..runs {
        let r = run_once(run, &settings)?;
        println!(
            "{{\"run\": {run}, \"bursts\": {}, \"paired\": {}, \"mode_ms\": {:.1}, \"min_ms\": {:.1}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
            r.bursts, r.paired, r.latency_ms, r.min_ms, r.p50_ms, r.p99_ms, r.max_ms
        );
        results.push(r);
    }
    let med = |f: fn(&RunResult) -> f64| median(&results.iter().map(f).collect::<Vec<_>>());
    let p99 = med(|r| r.p99_ms);
    println!(
        "{{\"runs\": {runs}, \"seconds\": {}, \"jitter_delay_ms\": \"{}\", \"playout_delay_ms\": \"{}\", \"median_p50_ms\": {:.1}, \"median_p99_ms\": {p99:.1}, \"median_max_ms\": {:.1}, \"paired\": {}, \"bursts\": {}, \"goal_p99_ms\": 50, \"reached\": {}}}",
        settings.seconds,
        shown(settings.jitter_delay_ms.map(|v| v.to_string())),
        shown(settings.playout_delay_ms.map(|v| v.to_string())),
        med(|r| r.p50_ms),
        med(|r| r.max_ms),
        results.iter().map(|r| r.paired).sum::<usize>(),
        results.iter().map(|r| r.bursts).sum::<usize>(),
        p99 <= 50.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Live latency".
        let cli = Cli::try_parse_from(["live_latency", "5"]).expect("parses");
        assert_eq!(
            (cli.runs, cli.jitter_delay_ms, cli.playout_delay_ms),
            (5, None, None)
        );
        let cli = Cli::try_parse_from([
            "live_latency",
            "5",
            "--jitter-delay-ms",
            "10",
            "--playout-delay-ms",
            "20",
        ])
        .expect("parses");
        assert_eq!(
            (cli.jitter_delay_ms, cli.playout_delay_ms),
            (Some(10), Some(20))
        );
    }
}
