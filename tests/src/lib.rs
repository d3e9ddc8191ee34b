//! The end-to-end test kit: builds and starts the real `radio-server` and `relay-agent` binaries
//! on loopback, generates test signals, and compares what an agent played with what was sent.
//!
//! # Layout
//! - `lib.rs` — process handling ([`Process`], [`binary`], [`AgentProgram`]: the native agent or
//!   a cross-built one under qemu-user), signals ([`test_signal`]), WAV I/O and the
//!   alignment/similarity measures ([`compare`]).
//! - `icecast.rs` — a real Icecast 2 server fed by ffmpeg, the upstream station of relay tests.
//! - `impairment_proxy.rs` — a UDP proxy that loses, delays, reorders, duplicates or blackholes
//!   the datagrams between agents and the server ([`ImpairmentProxy`]).
//! - `rtp_capture.rs` — receives agents' RTP packets with their arrival instants, tells programme
//!   audio from silence ([`programme_audio`]) and measures how far apart agents played the same
//!   frame ([`rtp_capture::playout_spread`]).
//! - `journal_dump.rs` — the uptime journal as the server stored it and as the agent holds it,
//!   and the check that together they are the whole journal, each record once.
//! - `schedule_file.rs` — a one-off slot written as the server's schedule file.
//! - `outage.rs` — the 30 s blackhole scenario of issue 5, shared by its test and its benchmark.
//! - `flapping.rs` — a seeded thunderstorm day of outages applied through the proxy in
//!   accelerated time, with the reconnects, the stored journal and the agent's resources checked
//!   (`tests/flapping_link.rs`, and the `flapping` benchmark).
//! - `browser.rs` — the console in headless Chromium over WebDriver ([`browser::Driver`]), and
//!   the console's address and first admin password as the server printed them.
//! - `console.rs` — an HTTPS client that trusts only the district CA, and the first admin's
//!   password as the server printed it.
//! - `container.rs` — a throwaway system booted with systemd (nspawn over an overlay of this
//!   machine's root), where the install test installs, runs and purges the .deb packages.
//! - `tests/*.rs` — one file per end-to-end scenario.
//!
//! # Waiting
//! A test waits for evidence, never for time to pass: a line a process printed
//! ([`Process::wait_for`]), an agent's proof of play or the server's acknowledgement of its
//! journal ([`Process::wait_played_out`], [`Process::wait_acknowledged`]), programme audio at a
//! capture ([`RtpCapture::wait_for_programme_audio`]), ffmpeg's own progress
//! ([`FfmpegReceiver`]); each bounded by [`PATIENCE`]. A sleep is left only where it paces a
//! signal or times a deliberate window, and says so. A test that needs an outside tool asks
//! [`require_tool`].

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub mod browser;
pub mod console;
pub mod container;
pub mod flapping;
pub mod icecast;
pub mod impairment_proxy;
pub mod journal_dump;
pub mod outage;
pub mod rtp_capture;
pub mod schedule_file;

pub use rtp_capture::{programme_audio, RtpCapture};

pub use impairment_proxy::{
    DirectionStats, GilbertElliott, Impairment, ImpairmentProxy, Jitter, LinkImpairment, ProxyStats,
};

/// The one skip helper (`test-tools/`): a test that needs an outside tool asks
/// [`require_tool`] (or calls [`skip`]), which panics under `make test` ([`REQUIRE_TOOLS_ENV`]).
pub use radio_test_tools::{require_tool, skip, tool_runs, FfmpegReceiver, REQUIRE_TOOLS_ENV};

/// How long a test waits for evidence from a peer (a line, a packet, a record stored) before
/// it gives up: minutes, for a loaded machine whose page cache is cold. Only a failing test
/// waits this long.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The variables Cargo sets for one package's build or test run, as opposed to those that
/// configure Cargo itself (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_PROFILE_…`).
fn is_package_variable(name: &str) -> bool {
    ["CARGO_PKG_", "CARGO_BIN_", "CARGO_CRATE_"]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
        )
}

/// Path of a workspace binary (`radio-server` or `relay-agent`), built on first use: the debug
/// build, as `make test` runs it.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_binaries(false));
    target_dir().join("debug").join(name)
}

/// Path of a workspace binary's release build, built on first use: what a station runs, and
/// what the performance benchmarks measure.
pub fn release_binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| build_binaries(true));
    target_dir().join("release").join(name)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn build_binaries(release: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.current_dir(workspace_root()).args([
        "build",
        "--bins",
        "-p",
        "radio-server",
        "-p",
        "relay-agent",
    ]);
    if release {
        build.arg("--release");
    }
    // Cargo gives a test the variables of its own package (CARGO_MANIFEST_DIR, …). Passed
    // on, they differ between the crates whose tests build the binaries, and ring's build
    // script reruns when CARGO_MANIFEST_DIR changes: ring, rustls and quinn were rebuilt
    // (about 35 s) each time another crate's tests came first.
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if is_package_variable(name) {
            build.env_remove(name);
        }
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build of the binaries failed");
}

/// A child process whose output lines are collected; killed when dropped.
#[derive(Debug)]
pub struct Process {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    quiet: bool,
}

impl Process {
    /// Starts `program` with `args`, capturing stdout and stderr line by line.
    pub fn start(name: &str, program: &Path, args: &[&str]) -> Process {
        Process::start_with_env(name, program, args, &[])
    }

    /// [`Process::start`] with extra environment variables, e.g. a debug build's test hook.
    pub fn start_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The agent's journal writes and the server's acknowledgements (debug lines): what
            // a test waits for before it reads the server's copy of the journal.
            .env("RUST_LOG", "info,relay_agent::journal=debug")
            .envs(env.iter().copied())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Process {
            name: name.to_string(),
            child,
            lines: rx,
            seen: Vec::new(),
            quiet: false,
        }
    }

    /// The operating system's id of the process, e.g. for [`proc_sample`].
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Output lines containing `needle` seen so far (by the `wait_for` calls), without waiting.
    pub fn count_seen(&self, needle: &str) -> usize {
        self.seen.iter().filter(|l| l.contains(needle)).count()
    }

    /// Waits for an output line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if !self.quiet {
                        eprintln!("[{}] {line}", self.name);
                    }
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "{}: no line containing {needle:?} within {timeout:?}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// The admin endpoint a `radio-server run` announced (`admin endpoint on ADDR`).
    pub fn admin_address(&mut self) -> String {
        self.wait_for("admin endpoint on", Duration::from_secs(10))
            .rsplit(' ')
            .next()
            .map(|a| a.trim().to_owned())
            .expect("address after `admin endpoint on`")
    }

    /// The console a `radio-server run` announced (`console on https://ADDR/`): its `ADDR`.
    pub fn console_address(&mut self) -> String {
        self.wait_for("console on https://", Duration::from_secs(10))
            .rsplit("https://")
            .next()
            .map(|a| a.trim().trim_end_matches('/').to_owned())
            .expect("address after `console on https://`")
    }

    /// Waits until `n` output lines in all (those already seen included) contain `needle`;
    /// returns the `n`-th.
    pub fn wait_for_nth(&mut self, needle: &str, n: usize, timeout: Duration) -> String {
        self.try_wait_for_nth(needle, n, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "{}: not {n} lines containing {needle:?} within {timeout:?}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                )
            })
    }

    /// [`Process::wait_for_nth`] that returns `None` on timeout instead of panicking, for a
    /// caller that counts failures rather than stopping at the first.
    pub fn try_wait_for_nth(
        &mut self,
        needle: &str,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        self.try_wait_for_nth_matching(|l| l.contains(needle), n, timeout)
    }

    /// [`Process::try_wait_for_nth`] for lines that `matches` accepts (one of several wordings).
    pub fn try_wait_for_nth_matching(
        &mut self,
        matches: impl Fn(&str) -> bool,
        n: usize,
        timeout: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.seen.iter().filter(|l| matches(l)).nth(n - 1) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if !self.quiet {
                        eprintln!("[{}] {line}", self.name);
                    }
                    self.seen.push(line);
                }
                Err(_) => return None,
            }
        }
    }

    /// For a relay agent: waits until it has journaled its `n`-th record of `kind` (the
    /// event's name: `LinkUp`, `ProgrammeEnd`, `Cluster`, …; its `journaled #SEQ: KIND` debug
    /// line); returns the record's number.
    pub fn wait_journaled(&mut self, kind: &str, n: usize, timeout: Duration) -> u64 {
        let line = self
            .try_wait_for_nth_matching(|l| journaled(l, kind).is_some(), n, timeout)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {n}th `{kind}` journaled within {timeout:?}; output so far:\n{}",
                    self.name,
                    self.seen.join("\n")
                )
            });
        journaled(&line, kind).unwrap_or_default()
    }

    /// For a relay agent: waits until it has played its `n`-th programme to the end, i.e. its
    /// proof of play (`ProgrammeEnd`) is journaled: the programme's last frame has gone to the
    /// sinks.
    pub fn wait_played_out(&mut self, n: usize, timeout: Duration) {
        self.wait_journaled("ProgrammeEnd", n, timeout);
    }

    /// For a relay agent: waits until, after `since` (by the lines' timestamps), the server
    /// acknowledged its journal with nothing left waiting: the server's copy has caught up.
    /// `since` must be after every server but the agent's current one died: only a live server
    /// acknowledges.
    pub fn wait_caught_up(&mut self, since: jiff::Timestamp, timeout: Duration) {
        let caught_up = |l: &str| {
            acknowledged_up_to(l).is_some()
                && l.contains(" 0 waiting)")
                && logged_at(l).is_some_and(|t| t >= since)
        };
        if self
            .try_wait_for_nth_matching(caught_up, 1, timeout)
            .is_none()
        {
            panic!(
                "{}: the server did not catch up with the journal within {timeout:?}; output \
                 so far:\n{}",
                self.name,
                self.seen.join("\n")
            );
        }
    }

    /// For a relay agent: waits until the server has acknowledged its journal up to record
    /// `seq`, i.e. stored and flushed it (the server's copy is then complete up to there:
    /// records go up oldest first).
    pub fn wait_acknowledged(&mut self, seq: u64, timeout: Duration) {
        if self
            .try_wait_for_nth_matching(|l| acknowledged_up_to(l) >= Some(seq), 1, timeout)
            .is_none()
        {
            panic!(
                "{}: journal record {seq} not acknowledged by the server within {timeout:?}; \
                 output so far:\n{}",
                self.name,
                self.seen.join("\n")
            );
        }
    }

    /// Stops echoing the output to stderr (a run of hundreds of reconnects would drown the
    /// report); it is still collected.
    pub fn quiet(&mut self) {
        self.quiet = true;
    }

    /// Sends SIGTERM and waits (up to 10 s) for the exit; returns the exit status and all output.
    pub fn terminate(self) -> (std::process::ExitStatus, Vec<String>) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait_exit(Duration::from_secs(10))
    }

    /// Waits (up to `timeout`) for a process that ends by itself, such as the demo: a SIGTERM
    /// sent as it prints its last line could kill it between that line and its exit.
    pub fn finish(self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        self.wait_exit(timeout)
    }

    /// Keeps a line of output (and echoes it unless quiet).
    fn note(&mut self, line: String) {
        if !self.quiet {
            eprintln!("[{}] {line}", self.name);
        }
        self.seen.push(line);
    }

    fn wait_exit(mut self, timeout: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + timeout;
        let mut closed = false;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("{} did not stop within {timeout:?}", self.name);
            }
            // A poll of the exit, paced by the wait for the next line while there can be one.
            if closed {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            match self.lines.recv_timeout(Duration::from_millis(20)) {
                Ok(line) => self.note(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => closed = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        };
        // The rest of its output: the readers end when the last holder of its stdout and
        // stderr closes them, the process or a child it left behind (not waited for long).
        let drained = Instant::now() + Duration::from_secs(5);
        while let Ok(line) = self
            .lines
            .recv_timeout(drained.saturating_duration_since(Instant::now()))
        {
            self.note(line);
        }
        (status, std::mem::take(&mut self.seen))
    }
}

/// The record number in an agent's `journaled #SEQ: KIND` line, if it is one for `kind`.
fn journaled(line: &str, kind: &str) -> Option<u64> {
    let rest = line.split("journaled #").nth(1)?;
    let (seq, name) = rest.split_once(": ")?;
    (name.trim_end() == kind).then(|| seq.parse().ok())?
}

/// The timestamp `tracing` puts first on each line (RFC 3339, UTC).
fn logged_at(line: &str) -> Option<jiff::Timestamp> {
    line.split_whitespace().next()?.parse().ok()
}

/// The record number in an agent's `journal acknowledged up to #SEQ` line.
fn acknowledged_up_to(line: &str) -> Option<u64> {
    let rest = line.split("journal acknowledged up to #").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Enrols `commune` with the real `radio-server enroll`, writing its bundle to `out`.
pub fn enroll(data_dir: &Path, commune: &str, out: &Path) {
    enroll_with(data_dir, commune, out, &[]);
}

/// [`enroll`] with `extra` arguments, e.g. `--district-file FILE`.
pub fn enroll_with(data_dir: &Path, commune: &str, out: &Path, extra: &[&str]) {
    let status = Command::new(binary("radio-server"))
        .arg("enroll")
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .args(["--commune", commune, "--out"])
        .arg(out)
        .status()
        .expect("run radio-server enroll");
    assert!(status.success(), "enroll {commune} failed");
}

/// Starts `radio-server run` listening on `listen` (e.g. `127.0.0.1:0`); if given, it plays
/// `programme` once `wait_agents` agents are connected. Returns the process and the address it
/// listens on.
pub fn start_server(
    data_dir: &Path,
    listen: &str,
    programme: Option<&Path>,
    wait_agents: usize,
) -> (Process, String) {
    let wait = wait_agents.to_string();
    let mut args = vec![
        "--wait-agents",
        &wait,
        // Tests must not depend on the time of day (the default schedule relays the province
        // twice a day).
        "--no-schedule",
    ];
    if let Some(p) = programme {
        args.extend(["--programme", p.to_str().expect("utf8 path")]);
    }
    start_server_with(data_dir, listen, &args)
}

/// Starts `radio-server run` listening on `listen` with a fresh admin port and `extra` arguments
/// (e.g. `--config FILE`, `--schedule FILE`); unlike [`start_server`] it adds no
/// `--no-schedule`. Returns the process and the address it listens on.
pub fn start_server_with(data_dir: &Path, listen: &str, extra: &[&str]) -> (Process, String) {
    let mut args = vec![
        "run",
        "--data-dir",
        data_dir.to_str().expect("utf8 path"),
        "--listen",
        listen,
        // Several servers may run at once (tests, a real one): no fixed admin or console port.
        "--admin-listen",
        "127.0.0.1:0",
        "--console-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut server = Process::start("server", &binary("radio-server"), &args);
    let line = server.wait_for("listening on", Duration::from_secs(30));
    let addr = line
        .rsplit(' ')
        .next()
        .map(|a| a.trim().to_string())
        .expect("address after `listening on`");
    (server, addr)
}

/// Starts `relay-agent` with `bundle`, connecting to `server`, with extra `sinks`.
pub fn start_agent(
    name: &str,
    bundle: &Path,
    server: &str,
    state_dir: &Path,
    sinks: &[String],
) -> Process {
    start_agent_with_env(name, bundle, server, state_dir, sinks, &[])
}

/// [`start_agent`] with extra environment variables.
pub fn start_agent_with_env(
    name: &str,
    bundle: &Path,
    server: &str,
    state_dir: &Path,
    sinks: &[String],
    env: &[(&str, &str)],
) -> Process {
    start_agent_program(
        &AgentProgram::native(),
        name,
        bundle,
        server,
        state_dir,
        sinks,
        env,
    )
}

/// [`start_agent_with_env`] with another agent binary, e.g. the aarch64 build under qemu.
pub fn start_agent_program(
    program: &AgentProgram,
    name: &str,
    bundle: &Path,
    server: &str,
    state_dir: &Path,
    sinks: &[String],
    env: &[(&str, &str)],
) -> Process {
    let mut args = vec![
        "--bundle".to_string(),
        bundle.display().to_string(),
        "--server".into(),
        server.to_string(),
        "--state-dir".into(),
        state_dir.display().to_string(),
    ];
    for sink in sinks {
        args.push("--sink".into());
        args.push(sink.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    program.start(name, &args, env)
}

/// Which `relay-agent` a test starts: the workspace's own debug build, or another build (a
/// cross-built ARM binary) run through a wrapper such as qemu-user.
#[derive(Debug, Clone)]
pub struct AgentProgram {
    /// The command and arguments put before the binary, e.g. `qemu-aarch64 -L /usr/…`.
    wrapper: Vec<String>,
    path: PathBuf,
}

impl AgentProgram {
    /// The workspace's debug build, built on first use.
    pub fn native() -> AgentProgram {
        AgentProgram {
            wrapper: Vec::new(),
            path: binary("relay-agent"),
        }
    }

    /// The binary at `path`, run as `wrapper… path args…`.
    pub fn wrapped(wrapper: &[&str], path: &Path) -> AgentProgram {
        AgentProgram {
            wrapper: wrapper.iter().map(|w| w.to_string()).collect(),
            path: path.to_path_buf(),
        }
    }

    fn start(&self, name: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let Some((command, wrapper_args)) = self.wrapper.split_first() else {
            return Process::start_with_env(name, &self.path, args, env);
        };
        let path = self.path.to_str().expect("utf8 path");
        let all: Vec<&str> = wrapper_args
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(path))
            .chain(args.iter().copied())
            .collect();
        Process::start_with_env(name, Path::new(command), &all, env)
    }
}

/// qemu-user for an aarch64 binary, with the cross toolchain's loader and libc (Debian's
/// `qemu-user` and `libc6-dev-arm64-cross`; binfmt is not assumed to be registered).
pub const QEMU_AARCH64: [&str; 3] = ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"];

/// Starts the cross-built aarch64 `relay-agent` at `agent` under qemu-user (named `aarch64`),
/// with its state in `dir/state` and its air in a WAV file; returns the process and the WAV's
/// path.
pub fn start_aarch64_agent(
    agent: &Path,
    bundle: &Path,
    addr: &str,
    dir: &Path,
) -> (Process, PathBuf) {
    let wav = dir.join("arm.wav");
    let process = start_agent_program(
        &AgentProgram::wrapped(&QEMU_AARCH64, agent),
        "aarch64",
        bundle,
        addr,
        &dir.join("state"),
        &[format!("wav:{}", wav.display())],
        &[],
    );
    (process, wav)
}

/// A test signal at 48 kHz: tones whose pitch and loudness change every 100 ms, so that any
/// misalignment, gap or repeated frame lowers the similarity.
pub fn test_signal(seconds: f32) -> Vec<f32> {
    let n = (seconds * 48_000.0) as usize;
    let mut state = 0x2545_f491_u32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut out = Vec::with_capacity(n);
    let (mut f1, mut f2, mut amp) = (300.0f32, 700.0f32, 0.4f32);
    let (mut p1, mut p2) = (0.0f32, 0.0f32);
    for i in 0..n {
        if i % 4800 == 0 {
            f1 = 200.0 + (next() % 600) as f32;
            f2 = 800.0 + (next() % 1600) as f32;
            amp = 0.2 + (next() % 50) as f32 / 100.0;
        }
        p1 += std::f32::consts::TAU * f1 / 48_000.0;
        p2 += std::f32::consts::TAU * f2 / 48_000.0;
        out.push(amp * (0.7 * p1.sin() + 0.3 * p2.sin()));
    }
    out
}

/// Writes mono 16-bit PCM.
pub fn write_wav(path: &Path, samples: &[f32], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Reads a WAV (any integer width or float) as mono f32, with its sample rate.
pub fn read_wav(path: &Path) -> (Vec<f32>, u32) {
    let mut r =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let spec = r.spec();
    let channels = spec.channels as usize;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map_while(Result::ok).collect(),
        hound::SampleFormat::Int => {
            let scale = (1i64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>()
                .map_while(Result::ok)
                .map(|s| s as f32 / scale)
                .collect()
        }
    };
    let mono = interleaved
        .chunks(channels.max(1))
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect();
    (mono, spec.sample_rate)
}

/// Reads raw s16le mono samples.
pub fn read_s16le(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect()
}

/// How well an output matches a reference once aligned.
#[derive(Debug, Clone, Copy)]
pub struct Similarity {
    /// Where the reference starts in the output, in samples.
    pub lag: usize,
    /// Normalised correlation at that lag (1 = identical shape).
    pub correlation: f64,
    /// Signal-to-noise ratio of the output against the best-scaled reference, in dB.
    pub snr_db: f64,
    /// Fraction of 20 ms blocks of the reference whose own correlation is ≥ 0.5; a missing or
    /// repeated frame shows up here even when the overall figure is high.
    pub blocks_ok: f64,
}

fn onset(x: &[f32]) -> usize {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let threshold = peak * 0.1;
    x.iter().position(|v| v.abs() >= threshold).unwrap_or(0)
}

/// Normalised correlation of `reference` with `output` from `lag` on, over their overlap.
pub fn correlation_at(reference: &[f32], output: &[f32], lag: usize) -> f64 {
    let n = reference.len().min(output.len().saturating_sub(lag));
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let x = reference[i] as f64;
        let y = output[lag + i] as f64;
        xy += x * y;
        xx += x * x;
        yy += y * y;
    }
    if xx == 0.0 || yy == 0.0 {
        return 0.0;
    }
    xy / (xx.sqrt() * yy.sqrt())
}

/// Finds the reference inside the output (searching ±`search` samples around the onsets) and
/// measures the match.
pub fn compare(reference: &[f32], output: &[f32], search: usize) -> Similarity {
    let guess = onset(output) as i64 - onset(reference) as i64;
    let lo = (guess - search as i64).max(0) as usize;
    let hi = (guess + search as i64).max(0) as usize;
    // Coarse pass every 8 samples on a decimated window, then a fine pass around the best.
    let window = &reference[..reference.len().min(48_000)];
    let mut best = (lo, f64::MIN);
    for lag in (lo..=hi).step_by(8) {
        let c = correlation_at(window, output, lag);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let (coarse, _) = best;
    let mut best = (coarse, f64::MIN);
    for lag in coarse.saturating_sub(8)..=coarse + 8 {
        let c = correlation_at(reference, output, lag);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let (lag, correlation) = best;
    let n = reference.len().min(output.len().saturating_sub(lag));
    let (mut xy, mut xx) = (0.0f64, 0.0f64);
    for i in 0..n {
        xy += reference[i] as f64 * output[lag + i] as f64;
        xx += (reference[i] as f64).powi(2);
    }
    let gain = if xx > 0.0 { xy / xx } else { 0.0 };
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for i in 0..n {
        let s = gain * reference[i] as f64;
        signal += s * s;
        noise += (output[lag + i] as f64 - s).powi(2);
    }
    let snr_db = if noise > 0.0 {
        10.0 * (signal / noise).log10()
    } else {
        f64::INFINITY
    };
    let blocks: Vec<f64> = (0..n / 960)
        .map(|b| {
            correlation_at(
                &reference[b * 960..(b + 1) * 960],
                &output[lag + b * 960..],
                0,
            )
        })
        .collect();
    let blocks_ok = if blocks.is_empty() {
        0.0
    } else {
        blocks.iter().filter(|c| **c >= 0.5).count() as f64 / blocks.len() as f64
    };
    Similarity {
        lag,
        correlation,
        snr_db,
        blocks_ok,
    }
}

/// 100 ms windows of a WAV: (RMS level, frequency from zero crossings). Enough to tell a tone
/// from a chirp from silence, and where a chirp had got to.
pub fn pitch_track(path: &Path) -> Vec<(f32, f32)> {
    let (samples, rate) = read_wav(path);
    let window = (rate / 10) as usize;
    samples
        .chunks(window)
        .map(|w| {
            let rms = (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt();
            let crossings = w
                .windows(2)
                .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
                .count();
            (rms, crossings as f32 / 2.0 / (w.len() as f32 / rate as f32))
        })
        .collect()
}

/// Writes a tone, or a chirp from `from` to `to` Hz, at half scale, 48 kHz mono.
pub fn write_chirp(path: &Path, from: f32, to: f32, seconds: f32) {
    let n = (seconds * 48_000.0) as usize;
    let mut phase = 0.0f32;
    let samples: Vec<f32> = (0..n)
        .map(|i| {
            let f = from + (to - from) * i as f32 / n as f32;
            phase += std::f32::consts::TAU * f / 48_000.0;
            0.5 * phase.sin()
        })
        .collect();
    write_wav(path, &samples, 48_000);
}

/// What a running process holds, from `/proc/PID`: to tell a leak from a steady state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// Resident memory (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident memory since the process started (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// CPU time used so far, user plus system (`/proc/PID/stat`), in seconds.
    pub cpu_seconds: f64,
    /// Threads (`Threads`).
    pub threads: u64,
    /// Open file descriptors (entries of `/proc/PID/fd`): sockets, files, pipes.
    pub fds: u64,
}

/// Samples `/proc/PID/status` and `/proc/PID/fd` (Linux only).
pub fn proc_sample(pid: u32) -> std::io::Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let value = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| std::io::Error::other(format!("no {key} in /proc/{pid}/status")))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    Ok(ProcSample {
        rss_kib: value("VmRSS:")?,
        peak_rss_kib: value("VmHWM:")?,
        cpu_seconds: cpu_seconds(pid)?,
        threads: value("Threads:")?,
        fds,
    })
}

/// User plus system CPU time of a process, from fields 14 and 15 of `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/stat: no command name")))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0: utime (14) is index 11, stime (15) index 12.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| std::io::Error::other(format!("/proc/{pid}/stat: field {}", i + 3)))
    };
    // Linux reports these in USER_HZ, which is 100 on every architecture it supports.
    Ok((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// A UDP port free right now on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind a UDP port")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_of_the_agent_are_read() {
        let line = "2026-12-07T12:00:00.1Z DEBUG relay_agent::journal: journaled #12: ProgrammeEnd";
        assert_eq!(journaled(line, "ProgrammeEnd"), Some(12));
        assert_eq!(journaled(line, "Programme"), None);
        assert_eq!(journaled("journaled #x: LinkUp", "LinkUp"), None);
        let ack =
            "DEBUG relay_agent::journal: journal acknowledged up to #31 (4 deleted, 0 waiting)";
        assert_eq!(acknowledged_up_to(ack), Some(31));
        assert_eq!(acknowledged_up_to(line), None);
    }

    #[test]
    fn compare_finds_the_lag_and_sees_a_missing_block() {
        let reference = test_signal(1.0);
        let mut output = vec![0.0f32; 3000];
        output.extend_from_slice(&reference);
        output.extend(vec![0.0f32; 1000]);
        let s = compare(&reference, &output, 2000);
        assert_eq!(s.lag, 3000);
        assert!(s.correlation > 0.999 && s.snr_db > 60.0, "{s:?}");
        assert_eq!(s.blocks_ok, 1.0);
        // Zero one 20 ms frame: the per-block check must notice.
        for v in &mut output[3000 + 960 * 10..3000 + 960 * 11] {
            *v = 0.0;
        }
        let s = compare(&reference, &output, 2000);
        assert!(s.blocks_ok < 1.0, "{s:?}");
    }
}
