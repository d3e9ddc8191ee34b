//! Acceptance (issue 5): the server is killed (SIGKILL: no goodbye) in the middle of a scheduled
//! programme and started again on the same address and data. The new server resets the agent's
//! old connection, and the agent is back on it at once; the new server picks the
//! programme up at its live point; and every journal record the agent wrote is stored exactly
//! once, across both server runs.

use std::time::{Duration, Instant};

use jiff::SignedDuration;
use radio_tests::schedule_file::{slot_start_after, write_one_off_schedule, OneOffSlot};
use radio_tests::{
    enroll, free_udp_port, journal_dump, programme_audio, start_agent, start_server_with,
    test_signal, write_wav, RtpCapture, PATIENCE,
};

const COMMUNE: &str = "binh-hai";

#[test]
fn agents_resume_after_the_server_is_killed_mid_programme_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    // Enrolling builds the binaries, so the slot below is not eaten by a build.
    enroll(&data, COMMUNE, &bundle);
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(60.0), 48_000);

    // A one-off slot that starts a few seconds from now and outlasts the test's restart.
    let schedule = dir.path().join("schedule.toml");
    write_one_off_schedule(
        &schedule,
        &OneOffSlot {
            id: "ban-tin",
            name: "Bản tin",
            start: slot_start_after(SignedDuration::from_secs(6)),
            duration: "2m",
            source: format!("{{ kind = \"file\", path = \"{}\" }}", programme.display()),
            targets: "\"all\"".into(),
        },
    );
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let args = ["--schedule", schedule.to_str().expect("utf8")];
    let (server, addr) = start_server_with(&data, &listen, &args);

    let capture = RtpCapture::start().expect("start the RTP receiver");
    let state = dir.path().join("state");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &state,
        &[format!("rtp:{}", capture.addr())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    agent.wait_for("programme start", Duration::from_secs(20));
    // Well into the programme, and the session is a stable one (10 s,
    // `relay_agent::reconnect::STABLE_AFTER`): a deliberate duration, not a wait for anything.
    std::thread::sleep(Duration::from_secs(11));

    let killed = Instant::now();
    drop(server); // SIGKILL
    let (server, _) = start_server_with(&data, &listen, &args);
    let listening_again = Instant::now();
    // The new server keeps the old one's reset keys (`server/src/identity/reset_key.rs`): it answers the
    // agent's next keep-alive with a stateless reset the agent trusts, so the agent does not
    // wait out its 3 s idle timer.
    let lost = agent.wait_for("connection lost", Duration::from_secs(15));
    assert!(
        lost.contains("reset"),
        "not reset by the new server: {lost}"
    );
    agent.wait_for_nth("link up", 2, Duration::from_secs(15));
    agent.wait_for_nth("programme start", 2, Duration::from_secs(10));
    // Three seconds of the programme from the new server.
    capture.wait_for_programme_audio(killed + Duration::from_secs(1), 150, PATIENCE);
    // Programme packets seen twice are not counted: a server that replayed the programme from
    // its beginning instead of joining it at its live point would show no new audio here.
    let audio = programme_audio(&capture.stop());
    let before = audio.iter().filter(|t| **t < killed).count();
    let resumed = audio
        .iter()
        .copied()
        .find(|t| *t > killed + Duration::from_secs(1))
        .expect("programme audio after the restart");
    let after = audio.iter().filter(|t| **t > resumed).count();
    eprintln!(
        "{before} frames before the kill; audio back {:?} after the kill, {:?} after the new \
         server listened; {after} frames since",
        resumed - killed,
        resumed.saturating_duration_since(listening_again)
    );
    assert!(before > 400, "the programme did not play before the kill");
    assert!(after > 100, "the programme did not go on after the restart");
    // About 1 s here (the new server's start, the reset, a probe, the playout delay); generous
    // against a loaded machine.
    assert!(
        resumed - killed < Duration::from_secs(6),
        "audio back only {:?} after the kill",
        resumed - killed
    );

    // The outage uploaded to the new server, then the journals on both sides.
    let outage = agent.wait_journaled("LinkDown", 1, PATIENCE);
    agent.wait_acknowledged(outage, PATIENCE);
    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");
    let stored = journal_dump::stored(&data, COMMUNE);
    let journal = journal_dump::whole_journal(&stored, &journal_dump::pending(&state));
    // Both server runs welcomed the agent, and the programme was journaled on both.
    let runs: std::collections::BTreeSet<&str> = journal
        .values()
        .filter_map(|e| e.strip_prefix("LinkUp { server_run: "))
        .collect();
    assert_eq!(runs.len(), 2, "{journal:#?}");
    let starts = journal
        .values()
        .filter(|e| e.starts_with("ProgrammeStart") && e.contains("Bản tin"))
        .count();
    assert_eq!(starts, 2, "{journal:#?}");
    assert!(
        stored.iter().any(|r| r.event.starts_with("LinkDown")),
        "the outage was not uploaded to the new server"
    );
}
