//! A running server that is handed a file that is not audio says so in one line naming the file,
//! and keeps serving its agents.

use std::time::Duration;

use radio_tests::{enroll, start_agent, start_server};

#[test]
fn a_bad_programme_does_not_stop_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-minh", &bundle);
    let bad = dir.path().join("lich-phat-thanh.mp3");
    std::fs::write(&bad, "Lịch phát thanh: 05:00 tiếp sóng đài tỉnh.\n").expect("write");

    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&bad), 0);
    let line = server.wait_for("lich-phat-thanh.mp3", Duration::from_secs(30));
    assert!(line.contains("ERROR"), "{line}");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!("wav:{}", dir.path().join("out.wav").display())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    server.wait_for("session established", Duration::from_secs(10));
    let (status, _) = agent.terminate();
    assert!(status.success());
    let (status, output) = server.terminate();
    assert!(status.success(), "server exit {status}");
    assert!(!output.iter().any(|l| l.contains("panicked")));
}
