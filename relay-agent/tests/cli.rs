//! The `relay-agent` command line as an operator meets it: help texts that state the defaults
//! the agent really has, and output into a pipe whose reader goes away (`| head -1`).

use radio_test_tools::stated_defaults;
use std::process::{Command, Stdio};

use radio_proto::JournalEvent;
use relay_agent::journal::Journal;

const AGENT: &str = env!("CARGO_BIN_EXE_relay-agent");

#[test]
fn help_states_the_defaults_the_agent_has() {
    let defaults = radio_config::AgentConfig::default();
    let expected: Vec<(String, String)> = [
        ("--bundle", defaults.bundle.display().to_string()),
        ("--state-dir", defaults.state_dir.display().to_string()),
        ("--playout-delay-ms", defaults.playout_delay_ms.to_string()),
        ("--log", defaults.log.clone()),
    ]
    .into_iter()
    .map(|(flag, default)| (flag.to_owned(), default))
    .collect();
    assert_eq!(
        defaults.playout_delay_ms,
        radio_config::DEFAULT_PLAYOUT_DELAY_MS
    );
    for help_flag in ["--help", "-h"] {
        let out = Command::new(AGENT)
            .arg(help_flag)
            .output()
            .expect("run relay-agent");
        assert!(
            out.status.success(),
            "relay-agent {help_flag}: {}",
            out.status
        );
        let help = String::from_utf8(out.stdout).expect("utf8");
        assert_eq!(
            stated_defaults(&help),
            expected,
            "every option that states a default states the agent's own:\n{help}"
        );
    }
}

/// Starts `relay-agent args` with its stdout going into a pipe whose read end is closed at
/// once, and checks it ends quietly: exit 0, no panic.
fn quiet_when_the_reader_goes(args: &[&str]) {
    let mut child = Command::new(AGENT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start relay-agent");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait for relay-agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "relay-agent {args:?} panicked on the closed pipe:\n{stderr}"
    );
    assert!(
        out.status.success(),
        "relay-agent {args:?}: {}\n{stderr}",
        out.status
    );
}

#[test]
fn print_journal_ends_quietly_when_the_reader_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal_dir = dir.path().join("journal");
    {
        let (journal, _) = Journal::open(&journal_dir, 100_000).expect("open journal");
        // Far more than a pipe holds (64 KiB), so the agent is still writing when the reader
        // has gone, whatever the timing.
        for i in 0..5_000 {
            journal
                .append(
                    1_800_000_000_000 + i,
                    JournalEvent::LinkDown {
                        reason: "the storm took the mast's power".into(),
                    },
                )
                .expect("append");
        }
        journal.close(1_800_000_010_000).expect("close");
    }
    let journal_arg = journal_dir.to_str().expect("utf8");
    quiet_when_the_reader_goes(&["--print-journal", journal_arg]);
    // Whoever reads does get the records.
    let out = Command::new(AGENT)
        .args(["--print-journal", journal_arg])
        .output()
        .expect("run relay-agent");
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5_001);
}

#[test]
fn help_and_version_end_quietly_when_the_reader_goes_away() {
    quiet_when_the_reader_goes(&["--help"]);
    quiet_when_the_reader_goes(&["--version"]);
}
