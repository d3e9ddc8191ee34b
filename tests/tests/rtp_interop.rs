//! An agent's RTP output is real RFC 7587 Opus: ffmpeg, started from the SDP file the agent wrote,
//! receives and decodes it, and the audio matches the source.
//!
//! The programme goes on air only once ffmpeg is demonstrably receiving: the agent sends
//! silence from its start, and the bulletin is submitted when ffmpeg reports decoded audio. A
//! slow ffmpeg (a cold page cache) then delays the programme instead of missing its start.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use radio_tests::{
    binary, compare, enroll, free_udp_port, read_s16le, require_tool, start_agent, start_server,
    test_signal, write_wav, FfmpegReceiver,
};

/// Generous: on a loaded machine with a cold page cache ffmpeg takes seconds to start.
const PEER: Duration = Duration::from_secs(120);

#[test]
fn ffmpeg_receives_the_agents_rtp_from_its_sdp() {
    if !require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let signal = test_signal(3.0);
    let signal_path = dir.path().join("signal.wav");
    write_wav(&signal_path, &signal, 48_000);
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-chau", &bundle);
    // No programme yet: it is sent once ffmpeg is receiving.
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", None, 0);
    let admin = server.admin_address();

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
    // The agent writes its SDP when it opens its sinks, and logs it after.
    agent.wait_for("SDP at", PEER);
    let sdp_text = std::fs::read_to_string(&sdp).expect("sdp");
    assert!(sdp_text.contains("a=rtpmap:111 opus/48000/2"), "{sdp_text}");
    let mut ffmpeg = FfmpegReceiver::start(&sdp, &raw).expect("start ffmpeg");
    agent.wait_for("link up", PEER);
    // The agent's silence flows and ffmpeg decodes it: whatever comes next, it receives.
    let receiving = ffmpeg
        .wait_decoded_past(Duration::ZERO, PEER)
        .unwrap_or_else(|e| panic!("{e}"));
    println!("ffmpeg receiving ({receiving:?} decoded): the programme goes on air");

    submit_priority_bulletin(&data, &admin, &signal_path);
    agent.wait_played_out(1, PEER);
    server.wait_for("off air", PEER);
    // The last frame has left the agent; ffmpeg has it once its output has moved on by more
    // than its own buffering (the agent keeps sending silence meanwhile).
    let played_out = ffmpeg.decoded();
    ffmpeg
        .wait_decoded_past(played_out + Duration::from_secs(1), PEER)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = ffmpeg.finish(PEER).unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "ffmpeg failed: {status}");
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

/// `radio-server bulletin submit --level priority`: it airs at once, without an operator.
fn submit_priority_bulletin(data: &Path, admin: &str, file: &Path) {
    let out = Command::new(binary("radio-server"))
        .args([
            "bulletin", "submit", "--id", "tin-thu", "--level", "priority",
        ])
        .args(["--targets", "binh-chau", "--file"])
        .arg(file)
        .arg("--data-dir")
        .arg(data)
        .args(["--admin-listen", admin])
        .output()
        .expect("run radio-server bulletin submit");
    assert!(
        out.status.success(),
        "bulletin submit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
