//! A server whose on-air controller died must not look alive: it answers the admin API and keeps
//! its agents' links up, but no station airs anything. The real `radio-server run`, with a panic
//! injected into the controller through the debug builds' test hook, must end with a non-zero
//! status and one clear line, so that its service manager restarts it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Generous: the process is expected to end within milliseconds of the panic, but a loaded CI
/// machine may take a while to schedule it. A process that stays alive fails the test here.
const EXIT_DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_panicking_on_air_controller_ends_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_radio-server"))
        .args([
            "run",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--no-schedule",
            "--data-dir",
            data_dir,
        ])
        .env("RADIO_TEST_PANIC", "on_air")
        .env("RADIO_TEST_PANIC_AFTER_TICKS", "25")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start radio-server");
    let (tx, lines) = mpsc::channel::<(Instant, String)>();
    let mut readers = Vec::new();
    let stdout: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().expect("stdout"));
    let stderr: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().expect("stderr"));
    for stream in [stdout, stderr] {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send((Instant::now(), line));
            }
        }));
    }
    drop(tx);

    // Evidence that the hook fired, then that the process ended.
    let started = Instant::now();
    let mut seen = Vec::new();
    let mut panicked_at = None;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > EXIT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "radio-server still running {} s after start with a dead on-air controller; it \
                 printed:\n{}",
                EXIT_DEADLINE.as_secs(),
                seen.join("\n")
            );
        }
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok((at, line)) => {
                if line.contains("RADIO_TEST_PANIC=on_air: panicking") {
                    panicked_at = Some(at);
                }
                seen.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break child.wait().expect("wait");
            }
        }
    };
    let exited_at = Instant::now();
    for reader in readers {
        let _ = reader.join();
    }
    seen.extend(lines.try_iter().map(|(_, line)| line));
    let output = seen.join("\n");
    let panicked_at = panicked_at.unwrap_or_else(|| panic!("the hook never fired:\n{output}"));
    let took = exited_at.duration_since(panicked_at);
    eprintln!("radio-server exited {took:?} after the injected panic ({status})");
    // The exit follows the panic at once (milliseconds); the bound only leaves room for a loaded
    // machine, and still fails a process that lingers, e.g. one that drains before exiting.
    assert!(
        took < Duration::from_secs(10),
        "exited {took:?} after the panic"
    );
    assert_eq!(status.code(), Some(70), "exit status: {status}\n{output}");
    let clear: Vec<&String> = seen
        .iter()
        .filter(|l| l.contains("on-air controller panicked") && l.contains("restarts"))
        .collect();
    assert_eq!(clear.len(), 1, "one clear line expected:\n{output}");
    assert!(
        clear[0].contains("injected panic"),
        "the line names the cause: {}",
        clear[0]
    );
}
