//! Every command's output ends quietly when its reader goes away (`radio-server stations |
//! head`): the real binary, its standard output a pipe whose read end is closed before the
//! command writes, must exit 0 with nothing on standard error (no panic, no error line).

use std::path::Path;
use std::process::{Command, Output, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_radio-server");

/// Runs `radio-server ARGS` with its standard output a pipe nobody reads any more.
fn with_reader_gone(args: &[&str], data_dir: &Path) -> Output {
    let (reader, writer) = std::io::pipe().expect("pipe");
    // The reader is gone before the command starts: its first write gets EPIPE.
    drop(reader);
    Command::new(BINARY)
        .args(args)
        // No configuration of the machine running the tests may leak in.
        .env_remove("RADIO_SERVER_CONFIG")
        .env("RADIO_SERVER_DATA_DIR", data_dir)
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run radio-server")
}

fn assert_quiet(args: &[&str], data_dir: &Path) {
    let output = with_reader_gone(args, data_dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked"),
        "`radio-server {}` panicked:\n{stderr}",
        args.join(" ")
    );
    assert!(
        output.status.success(),
        "`radio-server {}` failed ({}):\n{stderr}",
        args.join(" "),
        output.status
    );
    assert!(
        stderr.trim().is_empty(),
        "`radio-server {}` said something:\n{stderr}",
        args.join(" ")
    );
}

#[test]
fn commands_end_quietly_when_their_reader_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    // The district's stations: the `| head` of the report.
    assert_quiet(&["stations"], &data_dir);
    // Enrolment writes the bundle, then says so; the bundle is written either way.
    let bundle = dir.path().join("binh-trung.toml");
    assert_quiet(
        &[
            "enroll",
            "--commune",
            "binh-trung",
            "--out",
            bundle.to_str().expect("utf-8 path"),
        ],
        &data_dir,
    );
    assert!(bundle.exists(), "the bundle is written before the output");
    // The certificates it issued, as a table and as JSON.
    assert_quiet(&["certificates"], &data_dir);
    assert_quiet(&["certificates", "--json"], &data_dir);
}

/// `token` prints the token on standard output and the rest on standard error; with standard
/// output gone it stops there, before anything else.
#[test]
fn token_ends_quietly_when_its_reader_goes_away() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = with_reader_gone(
        &["token", "--name", "kiem-tra", "--role", "viewer"],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(
        !stderr.contains("error") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
