//! A station's bundle is stolen: `radio-server revoke` on the running server's data directory.
//! The real server closes the station's session at once — its loudspeakers stop getting the
//! programme within a second (plus the audio already in its playout buffer) while another
//! station plays on — and refuses every retry of the agent with TLS's certificate_revoked
//! alert, which the agent's log explains. Enrolled again, the station is back.

use std::process::Command;
use std::time::{Duration, Instant};

use radio_tests::rtp_capture::{programme_audio, RtpCapture};
use radio_tests::{binary, enroll, start_agent, start_server, test_signal, write_wav, PATIENCE};

/// The agent's playout delay (its default): audio it already holds still plays after the cut.
const PLAYOUT_DELAY: Duration = Duration::from_millis(300);

#[test]
fn a_revoked_station_goes_silent_at_once_and_is_back_only_when_enrolled_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let stolen = dir.path().join("binh-trung.toml");
    let good = dir.path().join("binh-duong.toml");
    enroll(&data, "binh-trung", &stolen);
    enroll(&data, "binh-duong", &good);
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(40.0), 48_000);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 2);

    let revoked_out = RtpCapture::start().expect("capture");
    let good_out = RtpCapture::start().expect("capture");
    let mut revoked_agent = start_agent(
        "revoked",
        &stolen,
        &addr,
        &dir.path().join("state-trung"),
        &[format!("rtp:{}", revoked_out.addr())],
    );
    let mut good_agent = start_agent(
        "good",
        &good,
        &addr,
        &dir.path().join("state-duong"),
        &[format!("rtp:{}", good_out.addr())],
    );
    revoked_agent.wait_for("link up", Duration::from_secs(30));
    good_agent.wait_for("link up", Duration::from_secs(30));
    // Both play the programme: a second of it at each.
    let linked = Instant::now();
    for capture in [&revoked_out, &good_out] {
        let heard = capture.wait_for_programme_audio(linked, 50, PATIENCE);
        assert!(
            heard >= 50,
            "a station did not play the programme: {heard} frames"
        );
    }

    let output = Command::new(binary("radio-server"))
        .args([
            "revoke",
            "binh-trung",
            "--reason",
            "bundle stolen",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .expect("run radio-server revoke");
    let revoked_at = Instant::now();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.wait_for(
        "certificate revoked: closing its connection",
        Duration::from_secs(5),
    );
    revoked_agent.wait_for("Revoked", Duration::from_secs(5));
    // Its retries fail in the handshake, and its log says what to do.
    revoked_agent.wait_for(
        "revoked this station's certificate",
        Duration::from_secs(30),
    );
    server.wait_for("refused a revoked certificate", Duration::from_secs(5));
    // The other station plays on: two seconds of programme since the revocation, long enough
    // to hear the revoked one had it kept playing.
    let heard = good_out.wait_for_programme_audio(revoked_at, 100, PATIENCE);
    assert!(
        heard >= 100,
        "the other station stopped too: {heard} frames"
    );

    let stopped = Instant::now();
    let revoked_heard = programme_audio(&revoked_out.stop());
    let good_heard = programme_audio(&good_out.stop());
    let last = revoked_heard
        .last()
        .map(|t| t.saturating_duration_since(revoked_at))
        .unwrap_or_default();
    assert!(
        last <= Duration::from_secs(1) + PLAYOUT_DELAY,
        "the revoked station still got the programme {last:?} after the revocation"
    );
    let quiet = good_heard
        .last()
        .map(|t| stopped.saturating_duration_since(*t));
    assert!(
        quiet.is_some_and(|q| q < Duration::from_millis(500)),
        "the other station stopped too: nothing for {quiet:?} at the end"
    );

    // Enrolled again (a new certificate, installed at the station): back on air.
    let renewed = dir.path().join("binh-trung-new.toml");
    enroll(&data, "binh-trung", &renewed);
    let _ = revoked_agent.terminate();
    let mut renewed_agent = start_agent(
        "renewed",
        &renewed,
        &addr,
        &dir.path().join("state-trung"),
        &[format!("wav:{}", dir.path().join("renewed.wav").display())],
    );
    renewed_agent.wait_for("link up", Duration::from_secs(30));
    let _ = renewed_agent.terminate();
    let _ = good_agent.terminate();
    let _ = server.terminate();
}
