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

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use opus::{Application, Bitrate, Channels, Decoder, Encoder};
use radio_benches::summary::{median, percentile};
use radio_tests::{free_udp_port, release_binary, Process};

const RATE: u32 = 48_000;
const FRAME: usize = 960;
const COMMUNE: &str = "binh-trung";
/// Onset threshold (bursts are at 0.5 of full scale).
const THRESHOLD: f32 = 0.1;
/// Below the threshold for this long before an onset.
const QUIET: usize = RATE as usize / 50;
/// Bursts sent before this far into the stream are left out: live is going on air.
const WARM_UP: Duration = Duration::from_secs(2);
/// How far a burst's latency may be from the run's most common one and still be paired.
const PAIRING: f64 = 0.060;

/// The studio's signal: silence with 30 ms bursts of 1 kHz at seeded, irregular intervals.
fn studio_signal(seconds: f64, seed: u32) -> Vec<f32> {
    let n = (seconds * f64::from(RATE)) as usize;
    let mut x = vec![0.0f32; n];
    let mut state = seed.max(1);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let burst = RATE as usize * 30 / 1000;
    let mut at = RATE as usize / 2;
    while at + burst < n {
        for (i, s) in x[at..at + burst].iter_mut().enumerate() {
            *s = 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / RATE as f32).sin();
            // Start at a peak-free phase, but not at zero: the first sample is already loud.
            if i == 0 {
                *s = 0.5;
            }
        }
        let gap_ms = 150 + (next() % 101) as usize;
        at += gap_ms * RATE as usize / 1000;
    }
    x
}

fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&[0x80, 97]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Onsets in `x`: sample indices where the level rises past the threshold after a quiet stretch.
fn onsets(x: &[f32]) -> Vec<usize> {
    let mut last_loud: Option<usize> = None;
    let mut found = Vec::new();
    for (i, s) in x.iter().enumerate() {
        if s.abs() >= THRESHOLD {
            if last_loud.is_none_or(|l| i - l > QUIET) && i >= QUIET {
                found.push(i);
            }
            last_loud = Some(i);
        }
    }
    found
}

/// A decoded packet stream: the samples, and where each packet starts in them with its instant.
struct Decoded {
    samples: Vec<f32>,
    packets: Vec<(usize, Instant)>,
}

impl Decoded {
    /// The instant of sample `index`: its packet's instant plus its offset in the packet.
    fn instant(&self, index: usize) -> Option<Instant> {
        let p = self.packets.partition_point(|(start, _)| *start <= index);
        let (start, at) = self.packets.get(p.checked_sub(1)?)?;
        let offset = index - start;
        (offset < FRAME).then(|| *at + Duration::from_secs_f64(offset as f64 / f64::from(RATE)))
    }

    fn onset_instants(&self) -> Vec<Instant> {
        onsets(&self.samples)
            .into_iter()
            .filter_map(|i| self.instant(i))
            .collect()
    }
}

/// Decodes `(instant, rtp timestamp, payload)` in order; a timestamp gap of up to a second is
/// filled with silence, a larger one (a new stream) is not.
fn decode(packets: &[Packet]) -> anyhow::Result<Decoded> {
    let mut dec = Decoder::new(RATE, Channels::Mono)?;
    let mut samples = Vec::new();
    let mut starts = Vec::new();
    let mut expected: Option<u32> = None;
    let mut frame = vec![0.0f32; 5_760];
    for (at, ts, payload) in packets {
        if let Some(e) = expected {
            let gap = ts.wrapping_sub(e) as usize;
            if gap > 0 && gap <= RATE as usize {
                samples.resize(samples.len() + gap, 0.0);
            }
        }
        let n = dec.decode_float(payload, &mut frame, false)?;
        starts.push((samples.len(), *at));
        samples.extend_from_slice(&frame[..n]);
        expected = Some(ts.wrapping_add(n as u32));
    }
    Ok(Decoded {
        samples,
        packets: starts,
    })
}

/// One RTP packet: when it arrived (or was sent), its RTP timestamp and its payload.
type Packet = (Instant, u32, Vec<u8>);

/// Records RTP packets arriving on a local port.
struct Capture {
    port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    fn start() -> anyhow::Result<Capture> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (packets, stop) = (packets.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    let Some(payload) = radio_tests::rtp_capture::rtp_payload(&buf[..n]) else {
                        continue;
                    };
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    if let Ok(mut p) = packets.lock() {
                        p.push((at, ts, payload.to_vec()));
                    }
                }
            })
        };
        Ok(Capture {
            port,
            packets,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> Vec<Packet> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.packets
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

/// Sends `packets` to `to` one per 20 ms from `start`, and returns the instant each was sent.
fn send_paced(to: SocketAddr, packets: &[Vec<u8>], start: Instant) -> anyhow::Result<Vec<Instant>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut sent = Vec::with_capacity(packets.len());
    for (k, p) in packets.iter().enumerate() {
        let due = start + Duration::from_millis(20 * k as u64);
        // Sleep to within 1 ms, then spin: the send instants are what latency is measured from.
        if let Some(wait) = due
            .checked_duration_since(Instant::now())
            .and_then(|d| d.checked_sub(Duration::from_millis(1)))
        {
            std::thread::sleep(wait);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let at = Instant::now();
        socket.send_to(p, to)?;
        sent.push(at);
    }
    Ok(sent)
}

struct Settings {
    seconds: f64,
    jitter_delay_ms: Option<u64>,
    playout_delay_ms: Option<u32>,
}

struct RunResult {
    bursts: usize,
    paired: usize,
    latency_ms: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    min_ms: f64,
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
    let signal = studio_signal(s.seconds, 0x9e37_79b9 ^ (run as u32 + 1));
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
    anyhow::ensure!(
        !outs.is_empty(),
        "run {run}: no burst reached the agent's output"
    );

    // The most common difference (1 ms bins, within 2 s) is the run's latency.
    let mut bins = std::collections::HashMap::<i64, usize>::new();
    for i in &ins {
        for o in outs.iter().filter(|o| *o > i) {
            let d = o.duration_since(*i).as_secs_f64();
            if d < 2.0 {
                *bins.entry((d * 1000.0) as i64).or_default() += 1;
            }
        }
    }
    // Neighbouring bins together: the latency spreads over a millisecond or two.
    let mode_ms = bins
        .keys()
        .max_by_key(|b| {
            (-1..=1)
                .map(|k| bins.get(&(*b + k)).copied().unwrap_or(0))
                .sum::<usize>()
        })
        .copied()
        .context("no pairs")?;
    let mode = (mode_ms as f64 + 0.5) / 1000.0;
    let mut latencies = Vec::new();
    for i in &ins {
        let best = outs
            .iter()
            .filter(|o| *o > i)
            .map(|o| o.duration_since(*i).as_secs_f64())
            .min_by(|a, b| (a - mode).abs().total_cmp(&(b - mode).abs()));
        if debug {
            println!(
                "  run {run}: burst at {:.3} s: nearest output {:.1} ms later",
                i.duration_since(start).as_secs_f64(),
                best.unwrap_or(f64::NAN) * 1000.0
            );
        }
        if let Some(d) = best.filter(|d| (d - mode).abs() <= PAIRING) {
            latencies.push(d * 1000.0);
        }
    }
    anyhow::ensure!(!latencies.is_empty(), "run {run}: no burst could be paired");
    Ok(RunResult {
        bursts: ins.len(),
        paired: latencies.len(),
        latency_ms: mode * 1000.0,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: percentile(&latencies, 1.0),
        min_ms: percentile(&latencies, 0.0),
    })
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
