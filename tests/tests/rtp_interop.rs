//! An agent's RTP output is real RFC 7587 Opus: ffmpeg, started from the SDP file the agent wrote,
//! receives and decodes it, and the audio matches the source.

use std::time::Duration;

use radio_tests::{
    compare, enroll, free_udp_port, have, read_s16le, start_agent, start_server, test_signal,
    write_wav,
};

#[test]
fn ffmpeg_receives_the_agents_rtp_from_its_sdp() {
    if !have("ffmpeg") {
        panic!("ffmpeg is required for this test: run `make test`, which installs it");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let signal = test_signal(3.0);
    let signal_path = dir.path().join("signal.wav");
    write_wav(&signal_path, &signal, 48_000);
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-chau", &bundle);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&signal_path), 1);

    let port = free_udp_port();
    let sdp = dir.path().join("binh-chau.sdp");
    let raw = dir.path().join("received.raw");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!("rtp:127.0.0.1:{port},sdp={}", sdp.display())],
    );
    // The agent writes its SDP when it opens its sinks, before it connects; ffmpeg starts from
    // that file while the agent is still idle (sending silence), so nothing of the programme is
    // missed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&sdp)
        .map(|s| !s.starts_with("v=0"))
        .unwrap_or(true)
    {
        assert!(std::time::Instant::now() < deadline, "agent wrote no SDP");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sdp_text = std::fs::read_to_string(&sdp).expect("sdp");
    assert!(sdp_text.contains("a=rtpmap:111 opus/48000/2"), "{sdp_text}");
    let ffmpeg = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-protocol_whitelist",
            "file,udp,rtp",
        ])
        .arg("-i")
        .arg(&sdp)
        .args(["-t", "8", "-ac", "1", "-ar", "48000", "-f", "s16le"])
        .arg(&raw)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("start ffmpeg");
    agent.wait_for("link up", Duration::from_secs(30));
    server.wait_for("off air", Duration::from_secs(60));
    let output = ffmpeg.wait_with_output().expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg failed: {:?}",
        output.status
    );
    let (status, _) = agent.terminate();
    assert!(status.success());
    let _ = server.terminate();

    let received = read_s16le(&raw);
    assert!(
        received.len() > signal.len(),
        "ffmpeg decoded only {} samples",
        received.len()
    );
    let s = compare(&signal, &received, 96_000);
    println!("rtp via ffmpeg: {s:?}");
    assert!(
        s.correlation >= 0.95 || s.snr_db >= 20.0,
        "RTP audio does not match the source: {s:?}"
    );
    assert!(s.blocks_ok >= 0.99, "missing or repeated frames: {s:?}");
}
