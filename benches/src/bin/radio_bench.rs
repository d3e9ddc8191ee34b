//! `radio-bench`: the load harness. Starts the real server (release build) on a generated
//! district of N stations, N lightweight simulated agents (real QUIC, mutual TLS, the real
//! protocol, no audio decode; `simulated_agent.rs`) and one real `relay-agent`, plays a programme
//! to every station, and reports as JSON what arrived and what it cost.
//!
//! ```sh
//! cargo run --release -p radio-benches --bin radio-bench -- [--agents N] [--runs R]
//!     [--warmup SECS] [--window SECS] [--late-ms MS] [--handshakes K] [--quic-sockets K]
//!     [--programme-secs S] [--server-log FILE] [--wrap "PROFILER ARGS"]
//! ```
//!
//! Latency runs from the frame's stamp on the server's media clock (its router tick) to the
//! frame's arrival at a simulated agent, on that agent's estimate of the server clock (the clock
//! probes a real agent uses; on loopback its error is well under a millisecond when unloaded).
//! A frame is late when it arrives more than `--late-ms` (default: the agents' default playout
//! delay, 300 ms) after its stamp: a real agent would have had to play it by then. A frame that
//! never arrives (a gap in its station's sequence numbers) counts as late too.
//!
//! The server, the simulated agents and the real agent share the machine's cores: the report
//! gives each one's CPU time, so the server's own cost can be read apart from the harness's.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use radio_benches::load_district::{self, LoadDistrict};
use radio_benches::simulated_agent::{run_until_stopped, LoadStats};
use radio_benches::summary::median;
use radio_tests::{proc_sample, release_binary, ProcSample, Process};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

const SERVER_NAME: &str = "localhost";

struct Options {
    agents: usize,
    runs: usize,
    warmup: Duration,
    window: Duration,
    late_ms: f64,
    handshakes: usize,
    /// The server's `quic_sockets`.
    quic_sockets: u32,
    /// Where to write the server's log (it is otherwise only summarised).
    server_log: Option<String>,
    /// A profiler to start the server under (`--wrap "heaptrack"`, `--wrap "perf record -g --"`).
    wrap: Option<String>,
}

/// The load harness: the real server (release build) on a generated district of N stations, N
/// simulated agents (real QUIC, mutual TLS, the real protocol) and one real relay-agent; reports
/// as JSON what arrived and what it cost.
#[derive(Debug, Parser)]
#[command(name = "radio-bench")]
struct Cli {
    /// Simulated agents (stations).
    #[arg(long, value_name = "N", default_value_t = 10_599)]
    agents: usize,
    /// Runs.
    #[arg(long, value_name = "R", default_value_t = 1)]
    runs: usize,
    /// Seconds of programme before the measurement window.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    warmup: u64,
    /// Seconds measured.
    #[arg(long, value_name = "SECS", default_value_t = 30)]
    window: u64,
    /// A frame arriving more than this after its stamp is late (default: the agents' default
    /// playout delay).
    #[arg(long, value_name = "MS", default_value_t = f64::from(radio_config::DEFAULT_PLAYOUT_DELAY_MS))]
    late_ms: f64,
    /// Handshakes in flight at once while the agents connect.
    #[arg(long, value_name = "K", default_value_t = 64)]
    handshakes: usize,
    /// The server's `quic_sockets`.
    #[arg(long, value_name = "K", default_value_t = 1)]
    quic_sockets: u32,
    /// Seconds of the programme played.
    #[arg(long, value_name = "S", default_value_t = 60.0)]
    programme_secs: f32,
    /// Where to write the server's log (it is otherwise only summarised).
    #[arg(long, value_name = "FILE")]
    server_log: Option<String>,
    /// A profiler to start the server under (`--wrap "heaptrack"`, `--wrap "perf record -g --"`).
    #[arg(long, value_name = "PROFILER ARGS")]
    wrap: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let opts = Options {
        agents: cli.agents,
        runs: cli.runs,
        warmup: Duration::from_secs(cli.warmup),
        window: Duration::from_secs(cli.window),
        late_ms: cli.late_ms,
        handshakes: cli.handshakes,
        quic_sockets: cli.quic_sockets,
        server_log: cli.server_log.filter(|w| !w.is_empty()),
        wrap: cli.wrap.filter(|w| !w.is_empty()),
    };
    let server_bin = release_binary("radio-server");
    let agent_bin = release_binary("relay-agent");
    let dir = tempfile::tempdir()?;
    let port = radio_tests::free_udp_port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let started = Instant::now();
    let district =
        load_district::prepare(dir.path(), opts.agents, &listen.to_string(), SERVER_NAME)
            .context("generate the district")?;
    eprintln!(
        "{} stations enrolled in {:.1} s",
        opts.agents + 1,
        started.elapsed().as_secs_f64()
    );
    let programme = dir.path().join("programme.wav");
    let programme_secs = cli.programme_secs;
    radio_tests::write_wav(
        &programme,
        &radio_tests::test_signal(programme_secs),
        48_000,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut reports = Vec::new();
    for run in 1..=opts.runs {
        let run_dir = dir.path().join(format!("run-{run}"));
        let report = runtime.block_on(one_run(
            &opts,
            &district,
            &run_dir,
            listen,
            &programme,
            &server_bin,
            &agent_bin,
        ))?;
        eprintln!("run {run}: {report}");
        reports.push(report);
    }
    let summary = if reports.len() == 1 {
        reports.remove(0)
    } else {
        json!({ "runs": reports.len(), "medians": medians(&reports), "each": reports })
    };
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    opts: &Options,
    district: &LoadDistrict,
    run_dir: &Path,
    listen: SocketAddr,
    programme: &Path,
    server_bin: &Path,
    agent_bin: &Path,
) -> anyhow::Result<Value> {
    std::fs::create_dir_all(run_dir)?;
    copy_dir(&district.ca_dir, &run_dir.join("ca"))?;
    let config = run_dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "district_file = {:?}\nmax_agents = {}\nquic_sockets = {}\n",
            district.district_file.display().to_string(),
            opts.agents + 1,
            opts.quic_sockets
        ),
    )?;
    let server_args = [
        "run",
        "--config",
        path_str(&config)?,
        "--data-dir",
        path_str(run_dir)?,
        "--listen",
        &listen.to_string(),
        "--admin-listen",
        "127.0.0.1:0",
        "--console-listen",
        "127.0.0.1:0",
        "--no-schedule",
        "--programme",
        path_str(programme)?,
        "--repeat",
    ];
    let mut server = match &opts.wrap {
        None => Process::start("server", server_bin, &server_args),
        Some(wrap) => {
            let mut words: Vec<&str> = wrap.split_whitespace().collect();
            let program = words.remove(0);
            words.push(path_str(server_bin)?);
            words.extend(server_args);
            Process::start("server", Path::new(program), &words)
        }
    };
    server.quiet();
    server.wait_for("listening on", Duration::from_secs(60));
    let admin = server.admin_address();
    let token = std::fs::read_to_string(run_dir.join("admin.token"))
        .context("read the admin token")?
        .trim()
        .to_owned();

    // The real agent, its RTP sent to a socket nobody reads (the kernel drops what overflows).
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let state_dir = run_dir.join("real-agent");
    std::fs::create_dir_all(&state_dir)?;
    let mut real_agent = Process::start(
        "relay-agent",
        agent_bin,
        &[
            "--bundle",
            path_str(&district.real_bundle)?,
            "--server",
            &listen.to_string(),
            "--state-dir",
            path_str(&state_dir)?,
            "--sink",
            &format!("rtp:{}", sink.local_addr()?),
        ],
    );
    real_agent.quiet();

    let stats = Arc::new(LoadStats::default());
    let (stop_tx, stop) = watch::channel(false);
    let handshakes = Arc::new(Semaphore::new(opts.handshakes));
    // One client socket per 256 agents: one quinn endpoint's driver serves all its connections,
    // and a single one would be the harness's bottleneck long before the server's.
    let endpoints: Vec<quinn::Endpoint> = (0..opts.agents.div_ceil(256).max(1))
        .map(|_| client_endpoint())
        .collect::<anyhow::Result<_>>()?;
    let ramp_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, agent) in district.agents.iter().enumerate() {
        tasks.spawn(run_until_stopped(
            agent.clone(),
            endpoints[i % endpoints.len()].clone(),
            listen,
            SERVER_NAME.to_owned(),
            stats.clone(),
            stop.clone(),
            handshakes.clone(),
        ));
    }
    // Every agent up, or no progress for 30 s.
    let mut last = (0, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let up = stats.up.load(Ordering::Relaxed) as usize;
        if up >= opts.agents {
            break;
        }
        if up > last.0 {
            last = (up, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            eprintln!("ramp stalled at {up} of {} agents", opts.agents);
            break;
        }
    }
    let ramp = ramp_started.elapsed();
    let connected_after_ramp = stats.up.load(Ordering::Relaxed);
    eprintln!(
        "{connected_after_ramp} agents up after {:.1} s",
        ramp.as_secs_f64()
    );
    tokio::time::sleep(opts.warmup).await;

    // Under a profiler, the server is the profiler's descendant.
    let server_pid = match &opts.wrap {
        None => server.id(),
        Some(_) => descendant_named(server.id(), "radio-server")
            .context("the server under the profiler")?,
    };
    let bench_pid = std::process::id();
    let before = (
        sample(server_pid)?,
        sample(bench_pid)?,
        sample(real_agent.id())?,
        server_counters(&admin, &token).await?,
    );
    stats.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(opts.window).await;
    stats.measuring.store(false, Ordering::Relaxed);
    let after = (
        sample(server_pid)?,
        sample(bench_pid)?,
        sample(real_agent.id())?,
        server_counters(&admin, &token).await?,
    );
    let up_at_end = stats.up.load(Ordering::Relaxed);

    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.abort_all();
    }
    for e in &endpoints {
        e.close(0u32.into(), b"bench over");
    }
    let _ = real_agent.terminate();
    if opts.wrap.is_some() {
        // The profiler waits for the server: stop the server itself, and the profiler writes
        // its data and exits.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &server_pid.to_string()])
            .status();
    }
    let (status, lines) = server.terminate();
    if let Some(path) = &opts.server_log {
        std::fs::write(path, lines.join("\n"))?;
    }
    // What went wrong on the server's side, if anything, for the operator of the bench.
    let problems: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("ERROR") || l.contains("WARN"))
        .collect();
    if !problems.is_empty() {
        eprintln!("server: {} warnings and errors; the first:", problems.len());
        for l in problems.iter().take(5) {
            eprintln!("  {l}");
        }
    }

    let received = stats.received.load(Ordering::Relaxed);
    let missing = stats.missing.load(Ordering::Relaxed);
    let late = stats.latency.above((opts.late_ms * 1000.0) as i64);
    let window = opts.window.as_secs_f64();
    let q = |p| stats.latency.quantile_ms(p);
    Ok(json!({
        "agents": {
            "requested": opts.agents,
            "connected_after_ramp": connected_after_ramp,
            "ramp_seconds": round(ramp.as_secs_f64(), 1),
            "connected_at_end": up_at_end,
            "session_failures": stats.failed.load(Ordering::Relaxed),
        },
        "window_seconds": window,
        "frames": {
            "server_sent": after.3.sent - before.3.sent,
            "server_dropped": after.3.dropped - before.3.dropped,
            "received": received,
            "missing": missing,
            "late": late,
            "unclocked": stats.unclocked.load(Ordering::Relaxed),
            "late_threshold_ms": opts.late_ms,
            "late_or_missing_percent": round(100.0 * (late + missing) as f64 / ((received + missing) as f64).max(1.0), 4),
        },
        "latency_ms": {
            "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": q(1.0),
        },
        "server": {
            "quic_sockets": opts.quic_sockets,
            "cpu_seconds": round(after.0.cpu_seconds - before.0.cpu_seconds, 2),
            "cpu_cores": round((after.0.cpu_seconds - before.0.cpu_seconds) / window, 3),
            "rss_mib": round(after.0.rss_kib as f64 / 1024.0, 1),
            "peak_rss_mib": round(after.0.peak_rss_kib as f64 / 1024.0, 1),
            "threads": after.0.threads,
            "exit": status.code(),
        },
        "harness": {
            "cpu_cores": round((after.1.cpu_seconds - before.1.cpu_seconds) / window, 3),
            "client_endpoints": endpoints.len(),
        },
        "real_agent": {
            "rss_mib": round(after.2.rss_kib as f64 / 1024.0, 1),
            "peak_rss_mib": round(after.2.peak_rss_kib as f64 / 1024.0, 1),
            "cpu_cores": round((after.2.cpu_seconds - before.2.cpu_seconds) / window, 4),
        },
    }))
}

/// A client endpoint whose socket buffers hold a tick's burst for its agents, as the server's
/// do (`udp_socket.rs`): the harness must not be the one dropping datagrams.
fn client_endpoint() -> anyhow::Result<quinn::Endpoint> {
    let (socket, _) = radio_server::link::udp_socket::bind(
        "127.0.0.1:0".parse()?,
        radio_server::link::udp_socket::SOCKET_BUFFER_BYTES,
        false,
    )?;
    let runtime = quinn::default_runtime().context("no async runtime")?;
    Ok(quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        runtime,
    )?)
}

/// The first descendant of `pid` whose command name is `name`.
fn descendant_named(pid: u32, name: &str) -> Option<u32> {
    let mut parents = vec![pid];
    while let Some(parent) = parents.pop() {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(child) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
                continue;
            };
            let Some((head, rest)) = stat.rsplit_once(')') else {
                continue;
            };
            let ppid = rest
                .split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                if head.ends_with(&format!("({name}")) {
                    return Some(child);
                }
                parents.push(child);
            }
        }
    }
    None
}

fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    proc_sample(pid).with_context(|| format!("sample /proc/{pid}"))
}

/// The server's own send counters, summed over its stations.
struct Counters {
    sent: u64,
    dropped: u64,
}

/// Reads `GET /metrics` with a bare HTTP/1.0 request.
async fn server_counters(admin: &str, token: &str) -> anyhow::Result<Counters> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await?;
    stream
        .write_all(
            format!(
                "GET /metrics HTTP/1.0\r\nHost: {admin}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    anyhow::ensure!(
        text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"),
        "GET /metrics: {}",
        text.lines().next().unwrap_or("no answer")
    );
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    Ok(Counters {
        sent: sum("radio_frames_sent_total{"),
        dropped: sum("radio_frames_dropped_total{"),
    })
}

/// The median of every numeric leaf over the runs, keyed as in one run's report.
fn medians(reports: &[Value]) -> Value {
    fn walk(values: &[&Value]) -> Value {
        match values.first() {
            Some(Value::Object(first)) => Value::Object(
                first
                    .keys()
                    .map(|k| {
                        let children: Vec<&Value> =
                            values.iter().filter_map(|v| v.get(k)).collect();
                        (k.clone(), walk(&children))
                    })
                    .collect(),
            ),
            Some(Value::Number(_)) => {
                let mut v: Vec<f64> = values.iter().filter_map(|v| v.as_f64()).collect();
                v.sort_by(f64::total_cmp);
                json!(median(&v))
            }
            Some(other) => (*other).clone(),
            None => Value::Null,
        }
    }
    walk(&reports.iter().collect::<Vec<_>>())
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Load".
        let cli = Cli::try_parse_from(
            "radio-bench --agents 10599 --runs 5 --warmup 10 --window 20 --programme-secs 1500 \
             --quic-sockets 4"
                .split_whitespace(),
        )
        .expect("parses");
        assert_eq!(
            (cli.agents, cli.runs, cli.warmup, cli.window),
            (10_599, 5, 10, 20)
        );
        assert_eq!((cli.programme_secs, cli.quic_sockets), (1500.0, 4));
        let cli = Cli::try_parse_from(["radio-bench", "--agents", "1000", "--wrap", "heaptrack"])
            .expect("parses");
        assert_eq!(cli.wrap.as_deref(), Some("heaptrack"));
        assert_eq!(
            cli.late_ms,
            f64::from(radio_config::DEFAULT_PLAYOUT_DELAY_MS)
        );
    }
}
