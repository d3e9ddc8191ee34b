//! Every bench binary answers `--help` with its usage and refuses an unknown flag, instead of
//! starting a run of many minutes. A binary that starts a run anyway is killed after a time-out
//! and fails the test rather than hanging it.

use std::io::Read as _;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const BINARIES: [(&str, &str); 11] = [
    ("radio-bench", env!("CARGO_BIN_EXE_radio-bench")),
    ("live_latency", env!("CARGO_BIN_EXE_live_latency")),
    (
        "browser_live_latency",
        env!("CARGO_BIN_EXE_browser_live_latency"),
    ),
    ("transcode_compare", env!("CARGO_BIN_EXE_transcode_compare")),
    ("loss_resilience", env!("CARGO_BIN_EXE_loss_resilience")),
    ("playout_spread", env!("CARGO_BIN_EXE_playout_spread")),
    ("emergency_latency", env!("CARGO_BIN_EXE_emergency_latency")),
    ("outage_recovery", env!("CARGO_BIN_EXE_outage_recovery")),
    ("flapping", env!("CARGO_BIN_EXE_flapping")),
    ("opus_fec", env!("CARGO_BIN_EXE_opus_fec")),
    ("arm_agent", env!("CARGO_BIN_EXE_arm_agent")),
];

/// Far more than printing a usage takes, even on a loaded machine; far less than any run.
const LIMIT: Duration = Duration::from_secs(30);

/// Runs `program` with `args`; its exit status, stdout and stderr. Kills it and panics if it is
/// still running after [`LIMIT`].
fn run(name: &str, program: &str, args: &[&str]) -> (ExitStatus, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name} {args:?} was still running after {LIMIT:?}: it started a run");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    (status, stdout, stderr)
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    for (name, program) in BINARIES {
        let (status, stdout, stderr) = run(name, program, &["--help"]);
        assert_eq!(status.code(), Some(0), "{name} --help: {status}\n{stderr}");
        assert!(
            stdout.contains("Usage"),
            "{name} --help printed no usage:\n{stdout}"
        );
    }
}

#[test]
fn an_unknown_flag_is_an_error() {
    for (name, program) in BINARIES {
        let (status, _, stderr) = run(name, program, &["--no-such-flag"]);
        assert_eq!(status.code(), Some(2), "{name} --no-such-flag: {status}");
        assert!(
            stderr.contains("--no-such-flag"),
            "{name}: the error names the flag:\n{stderr}"
        );
    }
}

#[test]
fn a_bad_value_is_an_error() {
    for (name, args) in [
        ("radio-bench", &["--agents", "many"][..]),
        ("live_latency", &["five"][..]),
        ("browser_live_latency", &["--seconds", "long"][..]),
        ("loss_resilience", &["--runs"][..]),
        ("playout_spread", &["5", "4", "20", "sideways"][..]),
        ("outage_recovery", &["5", "thirty"][..]),
        ("flapping", &["--backoff-ms", "100"][..]),
        ("arm_agent", &["--runs", "many"][..]),
    ] {
        let program = BINARIES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| *p)
            .expect("a bench binary");
        let (status, _, stderr) = run(name, program, args);
        assert_eq!(
            status.code(),
            Some(2),
            "{name} {args:?}: {status}\n{stderr}"
        );
    }
}
