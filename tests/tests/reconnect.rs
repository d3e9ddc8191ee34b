//! The server dies without a word (SIGKILL) and a new one starts on the same address: the agent
//! notices the dead link, reconnects by itself, and plays the new server's programme completely.

use std::time::Duration;

use radio_tests::{
    enroll, free_udp_port, start_agent, start_server, test_signal, write_wav, PATIENCE,
};

#[test]
fn agent_reconnects_after_the_server_is_killed_and_plays_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-hai", &bundle);
    let signal = test_signal(2.0);
    let signal_path = dir.path().join("signal.wav");
    write_wav(&signal_path, &signal, 48_000);
    // The QUIC port is UDP; a free UDP port now is free for the server in a moment.
    let listen = format!("127.0.0.1:{}", free_udp_port());

    let (first, addr) = start_server(&data, &listen, None, 0);
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!("wav:{}", dir.path().join("out.wav").display())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    drop(first); // SIGKILL: no goodbye, the agent must find out from the silence.

    let (mut second, _) = start_server(&data, &listen, Some(&signal_path), 1);
    second.wait_for("session established", Duration::from_secs(30));
    second.wait_for("off air", Duration::from_secs(30));
    // The programme's last frame reaches the WAV 300 ms (the playout delay) after the server
    // sent it.
    agent.wait_played_out(1, PATIENCE);
    let (status, output) = agent.terminate();
    assert!(status.success());
    let links = output.iter().filter(|l| l.contains("link up")).count();
    assert_eq!(links, 2, "expected two sessions:\n{}", output.join("\n"));
    assert!(
        output.iter().any(|l| l.contains("reconnecting in")),
        "no reconnect logged:\n{}",
        output.join("\n")
    );
    let frames = signal.len().div_ceil(960);
    let proof = format!("played {frames}/{frames} frames");
    assert!(
        output.iter().any(|l| l.contains(&proof)),
        "the new server's programme was not played completely (`{proof}`):\n{}",
        output.join("\n")
    );
    let _ = second.terminate();
}
