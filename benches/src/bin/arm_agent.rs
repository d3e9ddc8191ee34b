//! The agent on ARM: the cross-built binaries' sizes (as built and stripped), and the aarch64
//! agent's memory and CPU while it plays a programme under qemu-user on this machine.
//!
//! ```sh
//! make cross
//! cargo run --release -p radio-benches --bin arm_agent -- [--runs R] [--seconds S]
//!     [--aarch64 PATH] [--armv7 PATH]
//! ```
//!
//! The paths default to `make cross`'s output in the target directory. Each run starts the test
//! kit's `radio-server` on 127.0.0.1 with an S-second programme file, and the aarch64 agent as
//! `qemu-aarch64 -L /usr/aarch64-linux-gnu relay-agent …` with a WAV sink; `/proc/PID` of that
//! process is sampled every 500 ms from `link up` to the server's `off air`. qemu-user runs the
//! guest in the same process, so the figures include the emulator's own code and translation
//! cache: the RSS is an upper bound of the board's, and the CPU is the emulated cost on this
//! x86 machine, not a board's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use radio_benches::summary::median;
use radio_tests::{
    enroll, proc_sample, start_aarch64_agent, start_server, test_signal, write_wav, ProcSample,
    PATIENCE,
};

const SAMPLE_EVERY: Duration = Duration::from_millis(500);

/// The agent on ARM: binary sizes, and the aarch64 agent's RSS and CPU under qemu-user.
#[derive(Debug, clap::Parser)]
#[command(name = "arm_agent")]
struct Cli {
    /// Runs.
    #[arg(long, value_name = "R", default_value_t = 3)]
    runs: usize,
    /// Seconds of programme per run.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    seconds: f32,
    /// The aarch64 relay-agent (default: `make cross`'s).
    #[arg(long, value_name = "PATH")]
    aarch64: Option<PathBuf>,
    /// The armv7 relay-agent, for its size (default: `make cross`'s).
    #[arg(long, value_name = "PATH")]
    armv7: Option<PathBuf>,
}

fn cross_binary(target: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| radio_tests::workspace_root().join("target"));
    dir.join(target).join("release").join(name)
}

/// The size of `path` as built and after `strip` (run on a copy).
fn sizes(path: &Path, strip: &str) -> anyhow::Result<(u64, u64)> {
    let built = std::fs::metadata(path)
        .with_context(|| format!("{} (run `make cross`)", path.display()))?
        .len();
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("stripped");
    std::fs::copy(path, &copy)?;
    let status = Command::new(strip)
        .arg(&copy)
        .status()
        .with_context(|| format!("run {strip}"))?;
    anyhow::ensure!(status.success(), "{strip} {}: {status}", path.display());
    Ok((built, std::fs::metadata(&copy)?.len()))
}

struct RunResult {
    peak_rss_kib: u64,
    steady_rss_kib: f64,
    cpu_percent: f64,
}

fn run_once(agent: &Path, seconds: f32) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("server-data");
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(seconds), 48_000);
    let bundle = dir.path().join("arm.toml");
    enroll(&data, "binh-trung", &bundle);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 1);
    let (mut process, _air) = start_aarch64_agent(agent, &bundle, &addr, dir.path());
    process.wait_for("link up", PATIENCE);
    let pid = process.id();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut samples: Vec<(Instant, ProcSample)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(s) = proc_sample(pid) {
                    samples.push((Instant::now(), s));
                }
                // Paces the sampling; nothing waits on it.
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        })
    };
    server.wait_for("off air", PATIENCE + Duration::from_secs_f32(seconds));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler
        .join()
        .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
    process.wait_played_out(1, PATIENCE);
    let (status, output) = process.terminate();
    anyhow::ensure!(status.success(), "agent exit status {status}");
    if let Some(line) = output.iter().find(|l| l.contains("stopped cleanly")) {
        println!("  {line}");
    }
    let _ = server.terminate();
    let ((t0, first), (t1, last)) = samples
        .first()
        .zip(samples.last())
        .context("no sample of the agent")?;
    let wall = t1.duration_since(*t0).as_secs_f64();
    anyhow::ensure!(wall > 0.0, "fewer than two samples");
    // Steady: the second half of the programme, once buffers and caches have grown.
    let steady: Vec<f64> = samples[samples.len() / 2..]
        .iter()
        .map(|(_, s)| s.rss_kib as f64)
        .collect();
    Ok(RunResult {
        peak_rss_kib: last.peak_rss_kib,
        steady_rss_kib: median(&steady),
        cpu_percent: 100.0 * (last.cpu_seconds - first.cpu_seconds) / wall,
    })
}

fn main() -> anyhow::Result<()> {
    let cli = <Cli as clap::Parser>::parse();
    let aarch64 = cli
        .aarch64
        .unwrap_or_else(|| cross_binary("aarch64-unknown-linux-gnu", "relay-agent"));
    let armv7 = cli
        .armv7
        .unwrap_or_else(|| cross_binary("armv7-unknown-linux-gnueabihf", "relay-agent"));
    for (target, path, strip) in [
        ("aarch64", &aarch64, "aarch64-linux-gnu-strip"),
        ("armv7", &armv7, "arm-linux-gnueabihf-strip"),
    ] {
        let (built, stripped) = sizes(path, strip)?;
        println!(
            "{{\"target\": \"{target}\", \"binary\": \"relay-agent\", \"bytes\": {built}, \"stripped_bytes\": {stripped}}}"
        );
    }
    let mut results = Vec::new();
    for run in 0..cli.runs {
        let r = run_once(&aarch64, cli.seconds)?;
        println!(
            "{{\"run\": {run}, \"peak_rss_kib\": {}, \"steady_rss_kib\": {:.0}, \"cpu_percent\": {:.1}}}",
            r.peak_rss_kib, r.steady_rss_kib, r.cpu_percent
        );
        results.push(r);
    }
    let peak = median(
        &results
            .iter()
            .map(|r| r.peak_rss_kib as f64)
            .collect::<Vec<_>>(),
    );
    let steady = median(&results.iter().map(|r| r.steady_rss_kib).collect::<Vec<_>>());
    let cpu = median(&results.iter().map(|r| r.cpu_percent).collect::<Vec<_>>());
    println!(
        "{{\"runs\": {}, \"seconds\": {}, \"median_peak_rss_kib\": {peak:.0}, \"median_steady_rss_kib\": {steady:.0}, \"median_cpu_percent_under_qemu\": {cpu:.1}}}",
        cli.runs, cli.seconds
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn the_documented_command_parses() {
        // BENCHMARKS.md, "The agent on ARM".
        let cli =
            Cli::try_parse_from(["arm_agent", "--runs", "3", "--seconds", "60"]).expect("parses");
        assert_eq!((cli.runs, cli.seconds), (3, 60.0));
        assert!(cli.aarch64.is_none() && cli.armv7.is_none());
    }
}
