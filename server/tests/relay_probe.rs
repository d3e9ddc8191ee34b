//! A relay stream that cannot be reached is noticed when the server starts, not at 05:00 when
//! every station airs the fallback instead: the real `radio-server run` probes each stream its
//! schedule relays, warns once naming the URL, the slots, the error and how to set the real
//! stream, and `radio-server status` shows each stream's last probe.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use radio_tests::schedule_file::{slot_start_after, write_one_off_schedule, OneOffSlot};
use radio_tests::Process;

const BINARY: &str = env!("CARGO_BIN_EXE_radio-server");

/// What the probe's warning says, and nothing else logs.
const WARNING: &str = "cannot be reached";

/// Starts `radio-server run` on ephemeral ports; the process and its admin address.
fn run_server(name: &str, data_dir: &Path, extra: &[&str]) -> (Process, String) {
    let data = data_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "run",
        "--data-dir",
        data,
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--console-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut server = Process::start(name, Path::new(BINARY), &args);
    let admin = server.admin_address();
    (server, admin)
}

/// `radio-server status` of the server at `admin`.
fn status(data_dir: &Path, admin: &str) -> String {
    let output = Command::new(BINARY)
        .args(["status", "--admin-listen", admin, "--data-dir"])
        .arg(data_dir)
        .env_remove("RADIO_SERVER_CONFIG")
        .output()
        .expect("run radio-server status");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "status failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Polls `radio-server status` until the row of `url` under "relay streams" is no longer
/// waiting for its first probe; that row.
fn probed_row(data_dir: &Path, admin: &str, url: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = status(data_dir, admin);
        let row = text
            .split_once("relay streams\n")
            .and_then(|(_, streams)| streams.lines().find(|l| l.starts_with(url)))
            .map(str::to_owned);
        match row {
            Some(row) if !row.contains("not yet checked") => return row,
            _ if Instant::now() > deadline => panic!("{url} not probed within 30 s:\n{text}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// A port on loopback that nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn an_unreachable_provincial_stream_is_warned_about_at_start_and_shown_in_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("http://127.0.0.1:{}/qng.mp3", closed_port());
    // The one line that sets the real stream, here pointing at nothing.
    let config = dir.path().join("server.toml");
    std::fs::write(&config, format!("provincial_stream = \"{url}\"\n")).expect("config");
    let data_dir = dir.path().join("data");
    let (mut server, admin) = run_server(
        "server",
        &data_dir,
        &["--config", config.to_str().expect("utf-8 path")],
    );
    let warning = server.wait_for(WARNING, Duration::from_secs(30));
    for needle in [
        url.as_str(),
        "WARN",
        "tiep-song-sang (daily 05:00–07:00)",
        "tiep-song-chieu (daily 17:00–19:00)",
        "fallback",
        "Connection refused",
        "provincial_stream = \"http://…\"",
        "RADIO_SERVER_PROVINCIAL_STREAM",
    ] {
        assert!(warning.contains(needle), "{needle:?} not in: {warning}");
    }
    let row = probed_row(&data_dir, &admin, &url);
    assert!(row.contains("NO"), "{row}");
    assert!(row.contains("Connection refused"), "{row}");
    assert!(row.contains("tiep-song-sang"), "{row}");
    let text = status(&data_dir, &admin);
    assert!(
        text.contains("the server's log says how to set the real one"),
        "{text}"
    );
    server.terminate();
}

/// Serves `audio` as an Ogg stream to every GET on a loopback port: a stand-in for the
/// provincial station's Icecast server. Its URL.
fn serve_stream(audio: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/tinh.ogg", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                // The request's head, up to its empty line.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: audio/ogg\r\nConnection: close\r\n\r\n",
                );
                let _ = stream.write_all(audio);
            });
        }
    });
    url
}

#[test]
fn a_reachable_stream_is_shown_reachable_without_a_warning() {
    let url = serve_stream(include_bytes!("../assets/ban-tin-mau.ogg"));
    let dir = tempfile::tempdir().expect("tempdir");
    // Its slot is hours away: only the probe asks for the stream.
    let schedule = dir.path().join("schedule.toml");
    write_one_off_schedule(
        &schedule,
        &OneOffSlot {
            id: "tiep-song-thu",
            name: "Tiếp sóng thử",
            start: slot_start_after(jiff::SignedDuration::from_hours(6)),
            duration: "1h",
            source: format!("{{ kind = \"relay\", url = \"{url}\" }}"),
            targets: "\"all\"".to_owned(),
        },
    );
    let data_dir = dir.path().join("data");
    let (mut server, admin) = run_server(
        "server",
        &data_dir,
        &["--schedule", schedule.to_str().expect("utf-8 path")],
    );
    let row = probed_row(&data_dir, &admin, &url);
    assert!(row.contains("yes"), "{row}");
    assert!(row.contains("tiep-song-thu"), "{row}");
    assert!(!row.contains("NO"), "{row}");
    // The probe logs before its result shows in the status: a warning would be in the
    // output already.
    assert_eq!(
        server.try_wait_for_nth(WARNING, 1, Duration::from_secs(1)),
        None,
        "a reachable stream was warned about"
    );
    server.terminate();
}
