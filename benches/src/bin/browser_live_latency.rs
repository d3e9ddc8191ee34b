//! Live from the browser (issue 17): mouth to loudspeaker, next to the studio's RTP input
//! measured in the same run.
//!
//! `cargo run --release -p radio-benches --bin browser_live_latency -- [RUNS] [--seconds S]
//!  [--jitter-delay-ms D] [--playout-delay-ms P]`
//!
//! Each run starts the **release** `radio-server` (a live RTP input and its console, `[live]`
//! in a config file, `jitter_delay_ms = D` when given) and one release `relay-agent`
//! (`--playout-delay-ms P` when given) whose RTP sink points at a UDP port this process
//! records, then measures two phases of S seconds one after the other:
//!
//! 1. **The studio**: as `live_latency` does: a thread sends Opus RTP (20 ms, 64 kb/s) of
//!    silence with 30 ms 1 kHz bursts at seeded irregular intervals, paced in real time; a
//!    burst's instant is its packet's send instant plus its offset in the packet.
//! 2. **The browser**: the studio has stopped and its live item has ended (the no-packet
//!    time-out, set to 1 s here); headless Chromium, signed in to the console as the admin,
//!    goes live from the «Nói trực tiếp» page with a fake microphone that plays a WAV of the
//!    same kind of signal (another seed; Chromium loops it). The bench adds a second listener
//!    to the page's worklet port (`live.node.port`), beside the page's own: for each 960-sample
//!    block it finds the onsets (the same rule, state carried across blocks) and notes
//!    `performance.timeOrigin + performance.now()` at the block's arrival minus the time from
//!    the onset sample to the block's end: the block arrives when its last sample has been
//!    captured. The instants are UNIX milliseconds of this machine's clock.
//!
//! The agent's output is decoded and its onsets found as `live_latency` does; the arrival
//! instants are converted to UNIX time with one (`Instant`, `SystemTime`) pair, so both ends
//! of the browser phase are on the same wall clock. Pairing is `live_latency`'s (the most
//! common difference, ± 60 ms); bursts of each phase's first 2 s are left out. Each phase of
//! each run gives p50/p99/max; the summary gives their medians over runs.
//!
//! What the browser figure counts: from the page receiving the block (the AudioWorklet has
//! posted it from the audio thread) through WebCodecs' Opus encoder (40 ms packets, 24 kb/s),
//! the WebSocket over TLS, the server's live input and jitter buffer, its encoder, QUIC to the
//! agent and the agent's playout delay, to the agent's RTP output. Not counted: the fake
//! device's own buffering and the audio thread's render quanta before the worklet, and the
//! hop from the audio thread to the page (it makes the figure shorter, not longer).

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Parser;
use opus::{Application, Bitrate, Channels, Encoder};
use radio_benches::live_latency::{
    burst_signal, decode, pair, rtp, seconds_since, send_paced, Capture, RunResult, FRAME, QUIET,
    RATE, THRESHOLD, WARM_UP,
};
use radio_benches::summary::median;
use radio_tests::browser::{console_of, Driver};
use radio_tests::{free_udp_port, release_binary, Process};
use serde_json::Value;

const COMMUNE: &str = "binh-trung";
/// The studio's live item ends this long after its last packet: short, so that the browser
/// can go live soon after the studio stops (the console may not break in over the studio).
const NO_PACKET_TIMEOUT_MS: u64 = 1_000;
/// Seconds of the fake microphone's file; Chromium loops it.
const MIC_SECONDS: f64 = 47.0;
/// The last bursts of a phase are still in the agent's playout delay when it ends.
const TAIL: Duration = Duration::from_millis(800);

struct Settings {
    seconds: f64,
    jitter_delay_ms: Option<u64>,
    playout_delay_ms: Option<u32>,
}

struct Run {
    studio: RunResult,
    browser: RunResult,
    /// The page's clock (`timeOrigin + now()`) minus this process's `SystemTime`, ms: both
    /// should be the machine's wall clock.
    clock_offset_ms: f64,
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

/// UNIX seconds of an `Instant`, by one reading of both clocks.
struct WallClock {
    instant: Instant,
    unix: f64,
}

impl WallClock {
    fn now() -> anyhow::Result<WallClock> {
        let instant = Instant::now();
        let unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
        Ok(WallClock { instant, unix })
    }

    fn unix(&self, t: Instant) -> f64 {
        match t.checked_duration_since(self.instant) {
            Some(d) => self.unix + d.as_secs_f64(),
            None => self.unix - self.instant.duration_since(t).as_secs_f64(),
        }
    }
}

fn unix_ms_now() -> anyhow::Result<f64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64() * 1000.0)
}

/// The bench's listener on the worklet's port: onsets by `live_latency`'s rule, in UNIX ms,
/// into `window.__onsets`. Returns the page's clock when it was added.
fn listener_script() -> String {
    format!(
        "const port = live.node.port; \
         const state = {{ quiet: 0 }}; \
         window.__onsets = []; \
         port.addEventListener('message', (event) => {{ \
           const now = performance.timeOrigin + performance.now(); \
           const block = event.data; \
           if (!(block instanceof Float32Array)) return; \
           const n = block.length; \
           for (let i = 0; i < n; i++) {{ \
             if (Math.abs(block[i]) >= {THRESHOLD}) {{ \
               if (state.quiet >= {QUIET}) window.__onsets.push(now - (n - i) * 1000 / {RATE}); \
               state.quiet = 0; \
             }} else {{ state.quiet++; }} \
           }} \
         }}); \
         return performance.timeOrigin + performance.now();"
    )
}

/// The page's clock against this process's: the page's reading minus the middle of the call.
fn clock_offset_ms(driver: &Driver) -> anyhow::Result<f64> {
    let before = unix_ms_now()?;
    let page = driver
        .script("return performance.timeOrigin + performance.now();")
        .as_f64()
        .context("the page's clock")?;
    let after = unix_ms_now()?;
    Ok(page - (before + after) / 2.0)
}

fn start_server(dir: &Path, s: &Settings) -> anyhow::Result<(Process, String, SocketAddr)> {
    let data = dir.join("server-data");
    let live: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse()?;
    let mut config = format!(
        "[live]\nrtp = \"{live}\"\nallow = [\"127.0.0.1\"]\nno_packet_timeout_ms = {NO_PACKET_TIMEOUT_MS}\n"
    );
    if let Some(d) = s.jitter_delay_ms {
        config.push_str(&format!("jitter_delay_ms = {d}\n"));
    }
    let config_path = dir.join("server.toml");
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
    Ok((server, addr, live))
}

/// The studio's phase: `live_latency`'s run, on the server and agent already up.
fn studio_phase(
    run: usize,
    s: &Settings,
    live: SocketAddr,
    capture: &Capture,
    debug: bool,
) -> anyhow::Result<RunResult> {
    // Encoded first, so that pacing is not disturbed by the encoder.
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
    capture.take();
    let start = Instant::now() + Duration::from_millis(50);
    let sent = send_paced(live, &packets, start)?;
    std::thread::sleep(TAIL);
    let output = capture.take();
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
        &format!("run {run} studio"),
        &seconds_since(start, &ins),
        &seconds_since(start, &outs),
        debug,
    )
}

/// Waits until the element `css` is shown and enabled.
fn wait_clickable(driver: &Driver, css: &str) {
    let css = serde_json::to_string(css).expect("a string");
    driver.wait_for(
        &format!(
            "const e = document.querySelector({css}); \
             return !!e && !e.disabled && e.getClientRects().length > 0;"
        ),
        |v| v == true,
    );
}

/// The browser's phase: live from the console page for `s.seconds`, then «Dừng phát».
fn browser_phase(
    run: usize,
    s: &Settings,
    driver: &Driver,
    capture: &Capture,
    debug: bool,
) -> anyhow::Result<(RunResult, f64)> {
    // Once in seven runs a click came before its button could take it ("element not
    // interactable"): the console shows its tabs and buttons as the session and status load.
    wait_clickable(driver, "#nav button[data-page=\"live\"]");
    driver.go("live");
    driver.wait_for(
        "return document.querySelectorAll('#live-stations input').length;",
        |v| v.as_u64().is_some_and(|n| n > 0),
    );
    driver.script(
        "document.querySelector('input[name=\"live-where\"][value=\"all\"]').checked = true; \
         return null;",
    );
    capture.take();
    let clock = WallClock::now()?;
    wait_clickable(driver, "#live-go");
    driver.click("#live-go");
    driver.accept_confirmation();
    let state = driver.wait_for(
        "return live.node !== null ? 'live' : document.querySelector('#live-message').textContent;",
        |v| {
            v.as_str()
                .is_some_and(|t| t == "live" || (!t.starts_with("Đang kết nối") && !t.is_empty()))
        },
    );
    anyhow::ensure!(
        state == "live",
        "run {run}: the browser did not go live: {state}"
    );
    let added_ms = driver
        .script(&listener_script())
        .as_f64()
        .context("the page's clock")?;
    let offset = clock_offset_ms(driver)?;
    std::thread::sleep(Duration::from_secs_f64(s.seconds));
    let onsets: Vec<f64> = match driver.script("return window.__onsets;") {
        Value::Array(v) => v.iter().filter_map(Value::as_f64).collect(),
        other => anyhow::bail!("run {run}: no onsets from the page: {other}"),
    };
    driver.click("#live-end");
    driver.wait_for(
        "return document.querySelector('#live-banner').hidden;",
        |v| v == true,
    );
    std::thread::sleep(TAIL);
    let output = capture.take();
    // Seconds from the listener's start, on the wall clock.
    let base = added_ms / 1000.0;
    let ins: Vec<f64> = onsets
        .iter()
        .map(|ms| ms / 1000.0 - base)
        .filter(|t| *t >= WARM_UP.as_secs_f64())
        .collect();
    let outs: Vec<f64> = decode(&output)?
        .onset_instants()
        .into_iter()
        .map(|t| clock.unix(t) - base)
        .collect();
    let result = pair(&format!("run {run} browser"), &ins, &outs, debug)?;
    Ok((result, offset))
}

fn run_once(run: usize, s: &Settings, driver: &Driver) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let bundle = dir.path().join("agent.toml");
    enroll(&dir.path().join("server-data"), &bundle)?;
    let (mut server, addr, live) = start_server(dir.path(), s)?;
    let (console, password) = console_of(&mut server);
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
    driver.sign_in(&console, "admin", &password);
    std::thread::sleep(Duration::from_millis(500));
    let debug = std::env::var_os("LIVE_DEBUG").is_some();

    let studio = studio_phase(run, s, live, &capture, debug);
    // The studio's item ends by the no-packet time-out; then the console may go live.
    driver.wait_on_air(&[(COMMUNE, None)]);
    let browser = browser_phase(run, s, driver, &capture, debug);

    capture.stop();
    let (_, agent_log) = agent.terminate();
    let (_, server_log) = server.terminate();
    for line in agent_log.iter().chain(&server_log).filter(|l| {
        l.contains(" WARN ")
            || l.contains("ERROR")
            || l.contains("stopped cleanly")
            || (debug && l.contains("live"))
    }) {
        println!("  run {run}: {line}");
    }
    let (browser, clock_offset_ms) = browser?;
    Ok(Run {
        studio: studio?,
        browser,
        clock_offset_ms,
    })
}

/// The fake microphone's file: 48 kHz mono 16-bit.
fn write_mic(path: &Path) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec)?;
    for s in burst_signal(MIC_SECONDS, 0x6272_6f77) {
        wav.write_sample((s * f32::from(i16::MAX)) as i16)?;
    }
    wav.finalize()?;
    Ok(())
}

fn json_line(label: &str, r: &RunResult) -> String {
    format!(
        "\"{label}\": {{\"bursts\": {}, \"paired\": {}, \"mode_ms\": {:.1}, \"min_ms\": {:.1}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
        r.bursts, r.paired, r.latency_ms, r.min_ms, r.p50_ms, r.p99_ms, r.max_ms
    )
}

/// Live from the browser: mouth (the console page's microphone) to loudspeaker (a relay
/// agent's RTP output), next to the studio's RTP input measured in the same run; release
/// builds, headless Chromium with a fake microphone.
#[derive(Debug, Parser)]
struct Cli {
    /// Runs.
    #[arg(default_value_t = 3)]
    runs: usize,
    /// Seconds of each phase (studio, then browser) per run.
    #[arg(long, value_name = "S", default_value_t = 25.0)]
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
    let settings = Settings {
        seconds: cli.seconds,
        jitter_delay_ms: cli.jitter_delay_ms,
        playout_delay_ms: cli.playout_delay_ms,
    };
    let shown = |v: Option<String>| v.unwrap_or_else(|| "default".into());
    let jitter = shown(settings.jitter_delay_ms.map(|v| v.to_string()));
    let playout = shown(settings.playout_delay_ms.map(|v| v.to_string()));
    println!(
        "live jitter_delay_ms: {jitter}, agent playout_delay_ms: {playout}, {} s per phase",
        settings.seconds
    );
    let dir = tempfile::tempdir()?;
    let mic = dir.path().join("microphone.wav");
    write_mic(&mic)?;
    let fake_mic = format!("--use-file-for-fake-audio-capture={}", mic.display());
    let driver = Driver::start_with(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        &fake_mic,
        "--autoplay-policy=no-user-gesture-required",
    ])
    .context("chromium and chromedriver are needed (see the Makefile)")?;
    let mut runs = Vec::new();
    for run in 0..cli.runs {
        let r = run_once(run, &settings, &driver)?;
        println!(
            "{{\"run\": {run}, {}, {}, \"page_clock_offset_ms\": {:.1}}}",
            json_line("browser", &r.browser),
            json_line("studio", &r.studio),
            r.clock_offset_ms
        );
        runs.push(r);
    }
    let med = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(f).collect::<Vec<_>>());
    let total = |f: &dyn Fn(&Run) -> usize| runs.iter().map(f).sum::<usize>();
    println!(
        "{{\"runs\": {}, \"seconds\": {}, \"jitter_delay_ms\": \"{jitter}\", \"playout_delay_ms\": \"{playout}\", \
         \"browser\": {{\"median_p50_ms\": {:.1}, \"median_p99_ms\": {:.1}, \"median_max_ms\": {:.1}, \"paired\": {}, \"bursts\": {}}}, \
         \"studio\": {{\"median_p50_ms\": {:.1}, \"median_p99_ms\": {:.1}, \"median_max_ms\": {:.1}, \"paired\": {}, \"bursts\": {}}}}}",
        runs.len(),
        settings.seconds,
        med(&|r| r.browser.p50_ms),
        med(&|r| r.browser.p99_ms),
        med(&|r| r.browser.max_ms),
        total(&|r| r.browser.paired),
        total(&|r| r.browser.bursts),
        med(&|r| r.studio.p50_ms),
        med(&|r| r.studio.p99_ms),
        med(&|r| r.studio.max_ms),
        total(&|r| r.studio.paired),
        total(&|r| r.studio.bursts),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Live from the browser".
        let cli = Cli::try_parse_from(["browser_live_latency", "3"]).expect("parses");
        assert_eq!(
            (cli.runs, cli.jitter_delay_ms, cli.playout_delay_ms),
            (3, None, None)
        );
        let cli = Cli::try_parse_from([
            "browser_live_latency",
            "3",
            "--seconds",
            "20",
            "--jitter-delay-ms",
            "10",
            "--playout-delay-ms",
            "20",
        ])
        .expect("parses");
        assert_eq!(
            (cli.seconds, cli.jitter_delay_ms, cli.playout_delay_ms),
            (20.0, Some(10), Some(20))
        );
    }
}
