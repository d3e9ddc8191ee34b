//! The provincial station relayed at its slot: a real Icecast 2 server fed by ffmpeg (a 440 Hz
//! tone) is the `relay` source of a schedule entry that starts a few seconds after the real
//! `radio-server` does; one real `relay-agent` records what its station airs. Mid-slot the
//! Icecast source is killed (SIGKILL) and restarted five seconds after the relay noticed. The
//! server must log each step (the failure, the retries with a growing backoff, the recovery), and
//! the station must air the source, then the fallback file (a 1000 Hz tone) during the outage,
//! then the source again; nothing before the slot starts.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use radio_tests::icecast::Icecast;
use radio_tests::schedule_file::{slot_start_after, write_one_off_schedule, OneOffSlot};
use radio_tests::{enroll, pitch_track, start_agent, start_server_with, write_chirp};

const SOURCE_HZ: f32 = 440.0;
const FALLBACK_HZ: f32 = 1000.0;
const COMMUNE: &str = "binh-trung";
/// From starting the server to the slot: time for the server and the agent to come up, and for
/// the agent to record silence that proves nothing aired early.
const LEAD: SignedDuration = SignedDuration::from_secs(10);
const BACKOFF_MIN_MS: u64 = 500;
const BACKOFF_MAX_MS: u64 = 2000;
/// How long the source stays away after the relay noticed.
const OUTAGE: Duration = Duration::from_secs(5);
const FAILED: &str = "playing fallback, retrying in";
const RECOVERED: &str = "relay recovered after";
/// A 100 ms window of [`pitch_track`] quieter than this is silence.
const SILENT_RMS: f32 = 0.01;

/// The timestamp `tracing` puts first on each line (RFC 3339, UTC).
fn logged_at(line: &str) -> Timestamp {
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp at the start of {line:?}"))
}

/// The number of seconds after `marker` in `line` (`retrying in 0.5 s`, `after 5.8 s`).
fn seconds_after(line: &str, marker: &str) -> f64 {
    line.split(marker)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds after {marker:?} in {line:?}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Heard {
    Silence,
    Source,
    Fallback,
    /// Loud but neither tone: a switch between two sounds, or garbage.
    Other,
}

fn classify((rms, hz): (f32, f32)) -> Heard {
    if rms < SILENT_RMS {
        Heard::Silence
    } else if rms > 0.1 && (hz - SOURCE_HZ).abs() < 40.0 {
        Heard::Source
    } else if rms > 0.1 && (hz - FALLBACK_HZ).abs() < 60.0 {
        Heard::Fallback
    } else {
        Heard::Other
    }
}

/// Runs of one tone, in order, as (tone, first window, windows); runs shorter than 0.5 s are
/// left out, and runs of the same tone separated only by such short runs are merged.
fn tone_runs(heard: &[Heard]) -> Vec<(Heard, usize, usize)> {
    let mut runs: Vec<(Heard, usize, usize)> = Vec::new();
    let mut i = 0;
    while i < heard.len() {
        let len = heard[i..].iter().take_while(|h| **h == heard[i]).count();
        if matches!(heard[i], Heard::Source | Heard::Fallback) && len >= 5 {
            match runs.last_mut() {
                Some((tone, start, n)) if *tone == heard[i] => *n = i + len - *start,
                _ => runs.push((heard[i], i, len)),
            }
        }
        i += len;
    }
    runs
}

#[test]
fn an_icecast_stream_is_relayed_at_its_slot_and_survives_losing_its_source() {
    let Some(mut ice) = Icecast::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source.wav");
    let fallback = dir.path().join("fallback.wav");
    write_chirp(&source, SOURCE_HZ, SOURCE_HZ, 2.0);
    write_chirp(&fallback, FALLBACK_HZ, FALLBACK_HZ, 3.0);
    ice.start_source(&source);
    let url = ice.url();

    // Enrolling builds the binaries, so the clock below is not eaten by a build.
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, COMMUNE, &bundle);

    // A one-off slot a whole second LEAD from now, in UTC.
    let slot_start = slot_start_after(LEAD) + SignedDuration::from_secs(1);
    let schedule = dir.path().join("schedule.toml");
    write_one_off_schedule(
        &schedule,
        &OneOffSlot {
            id: "tiep-song-icecast",
            name: "Tiếp sóng Icecast",
            start: slot_start,
            duration: "3m",
            source: format!("{{ kind = \"relay\", url = \"{url}\" }}"),
            targets: "\"all\"".into(),
        },
    );
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[relay]\n\
             fallback = \"{}\"\n\
             connect_timeout_ms = 2000\n\
             stall_timeout_ms = 2000\n\
             backoff_min_ms = {}\n\
             backoff_max_ms = {}\n",
            fallback.display(),
            BACKOFF_MIN_MS,
            BACKOFF_MAX_MS,
        ),
    )
    .expect("write the server config");

    let (mut server, addr) = start_server_with(
        &data,
        "127.0.0.1:0",
        &[
            "--config",
            config.to_str().expect("utf8"),
            "--schedule",
            schedule.to_str().expect("utf8"),
        ],
    );
    let wav = dir.path().join(format!("{COMMUNE}.wav"));
    let mut agent = start_agent(
        COMMUNE,
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!("wav:{}", wav.display())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    println!("slot starts at {slot_start}");

    // The slot starts; the source plays for a while (a deliberate 4 s, checked below as at
    // least 2.5 s of it heard).
    server.wait_for("relaying upstream", Duration::from_secs(45));
    std::thread::sleep(Duration::from_secs(4));

    // The studio link drops. Icecast ends the mount and its listeners, but the relay hears of
    // it only once it has played what Icecast had already sent (its burst on connect, about 8 s
    // at 64 kb/s): then the first failure.
    let killed = Timestamp::now();
    ice.kill_source();
    let first_failure = server.wait_for(FAILED, Duration::from_secs(30));
    // The source stays away for OUTAGE after that, long enough for the retries to back off.
    let lost = logged_at(&first_failure);
    server.wait_for_nth(FAILED, 3, Duration::from_secs(20));
    let waited = Duration::try_from(Timestamp::now() - lost).unwrap_or_default();
    // The outage's deliberate length.
    std::thread::sleep(OUTAGE.saturating_sub(waited));

    // The studio comes back.
    let restarted = Timestamp::now();
    ice.start_source(&source);
    server.wait_for(RECOVERED, Duration::from_secs(20));
    // The source plays again for a deliberate 4 s (at least 2.5 s of it heard, checked below).
    std::thread::sleep(Duration::from_secs(4));

    let (status, agent_log) = agent.terminate();
    assert!(status.success(), "agent exit status {status}");
    let (status, server_log) = server.terminate();
    assert!(status.success(), "server exit status {status}");
    let server_text = server_log.join("\n");

    // ---- The server's log: the slot, and every step of the outage. ----
    let after_slot = |what: &str, line: &str| {
        // 100 ms of slack for the two clocks (wall and monotonic) the timers are set with.
        let at = logged_at(line);
        assert!(
            at >= slot_start - SignedDuration::from_millis(100),
            "{what} at {at}, before the slot starts at {slot_start}: {line}"
        );
        at
    };
    let on_air = server_log
        .iter()
        .find(|l| l.contains(" on air") && l.contains(&format!("station={COMMUNE}")))
        .unwrap_or_else(|| panic!("no `on air` line for {COMMUNE}:\n{server_text}"));
    after_slot("the station went on air", on_air);
    let relaying = server_log
        .iter()
        .find(|l| l.contains("relaying upstream") && l.contains(&url))
        .unwrap_or_else(|| panic!("no `relaying upstream` line for {url}:\n{server_text}"));
    let relaying_at = after_slot("the relay started", relaying);
    assert!(
        relaying_at <= slot_start + SignedDuration::from_secs(15),
        "the relay started at {relaying_at}, long after the slot started at {slot_start}"
    );

    let failures: Vec<&String> = server_log.iter().filter(|l| l.contains(FAILED)).collect();
    let recovered = server_log
        .iter()
        .find(|l| l.contains(RECOVERED))
        .unwrap_or_else(|| panic!("no `{RECOVERED}` line:\n{server_text}"));
    let recovered_at = logged_at(recovered);
    for line in &failures {
        assert!(
            line.contains(" WARN ") && line.contains(&url),
            "a failure is logged as a warning naming the URL: {line}"
        );
        let at = logged_at(line);
        assert!(
            at >= killed && at <= recovered_at,
            "a failure at {at}, outside the outage ({killed} to {recovered_at}): {line}"
        );
    }
    assert!(
        failures.len() >= 3,
        "the loss and at least two retries are logged:\n{server_text}"
    );
    assert!(
        failures.iter().skip(1).any(|l| l.contains("HTTP 404")),
        "the retries while the mount is gone fail with HTTP 404:\n{server_text}"
    );
    let delays: Vec<f64> = failures.iter().map(|l| seconds_after(l, FAILED)).collect();
    let (min, max) = (BACKOFF_MIN_MS as f64 / 1e3, BACKOFF_MAX_MS as f64 / 1e3);
    // ±20 % jitter around 0.5, 1, 2, 2… s, always within the configured bounds (printed to
    // 0.1 s).
    assert!(
        delays.iter().all(|d| (min..=max).contains(d)),
        "retry delays {delays:?} outside {min}..={max} s"
    );
    assert!(
        delays[0] <= min * 1.2 + 0.05 && delays[1] >= min * 2.0 * 0.8 - 0.05,
        "the backoff does not start at {min} s and grow: {delays:?}"
    );
    // The outage counts from the last upstream audio, just before the first failure.
    let away = seconds_after(recovered, RECOVERED);
    let kept_away = (restarted - lost).as_secs_f64();
    assert!(
        recovered.contains(" INFO ") && recovered.contains(&url),
        "{recovered}"
    );
    assert!(
        recovered_at >= restarted && away >= kept_away - 0.5 && away <= kept_away + 15.0,
        "recovered at {recovered_at} after {away} s; the first failure was at {lost} and the \
         source came back at {restarted} ({kept_away:.1} s later)"
    );

    // ---- The agent's log: its programme started with the slot. ----
    let agent_text = agent_log.join("\n");
    let programme_start = agent_log
        .iter()
        .find(|l| l.contains("programme start"))
        .unwrap_or_else(|| panic!("the agent never started a programme:\n{agent_text}"));
    after_slot("the agent's programme started", programme_start);

    // ---- What the station aired: source, fallback, source; nothing before the slot. ----
    let track = pitch_track(&wav);
    let heard: Vec<Heard> = track.iter().copied().map(classify).collect();
    let shown = format!(
        "{:?}",
        track
            .iter()
            .enumerate()
            .map(|(i, (rms, hz))| format!("{:.1}s {rms:.2} {hz:.0}Hz", i as f32 / 10.0))
            .collect::<Vec<_>>()
    );
    let runs = tone_runs(&heard);
    let odd = heard.iter().filter(|h| **h == Heard::Other).count();
    println!("aired (tone, first 100 ms window, windows): {runs:?}; {odd} windows of neither");
    let order: Vec<Heard> = runs.iter().map(|r| r.0).collect();
    assert_eq!(
        order,
        [Heard::Source, Heard::Fallback, Heard::Source],
        "the station did not air source, fallback, source (runs {runs:?}):\n{shown}"
    );
    let (_, source_first, before) = runs[0];
    let (_, _, during) = runs[1];
    let (_, _, after) = runs[2];
    // Heard 4 s before the kill and 4 s after the recovery; the fallback from the first failure
    // until the recovery, which came at least OUTAGE later.
    assert!(
        before >= 25,
        "the source aired for only {before} windows before the outage\n{shown}"
    );
    assert!(
        during as u128 >= OUTAGE.as_millis() / 100 - 5,
        "the fallback aired for only {during} windows\n{shown}"
    );
    assert!(
        after >= 25,
        "the source aired for only {after} windows after its return\n{shown}"
    );
    assert!(
        odd <= 12,
        "{odd} windows of neither tone (only the switches should mix sounds)\n{shown}"
    );
    // The recording starts when the agent's playout does, after its `starting` line; so a
    // sound at window i was played no earlier than that line plus i tenths of a second. Nothing
    // may be heard before the slot: the first loud window must come after it.
    let first_loud = heard
        .iter()
        .position(|h| *h != Heard::Silence)
        .expect("something was heard");
    assert!(
        first_loud + 10 >= source_first,
        "sound before the source started\n{shown}"
    );
    let started = agent_log
        .iter()
        .find(|l| l.contains("starting"))
        .map(|l| logged_at(l))
        .unwrap_or_else(|| panic!("no `starting` line:\n{agent_text}"));
    if agent_text.contains("re-basing") {
        // A re-based playout clock skipped slots: the recording is shorter than the wall-clock
        // time, so it cannot time the start; the log checks above did.
        println!("the agent's playout clock re-based; its recording is not timed");
    } else {
        let heard_at = started + SignedDuration::from_millis(first_loud as i64 * 100);
        println!("first sound {first_loud} windows into the recording: no earlier than {heard_at}");
        assert!(
            heard_at >= slot_start - SignedDuration::from_millis(200),
            "sound at {first_loud} tenths of a second into the recording (no earlier than \
             {heard_at}), before the slot started at {slot_start}\n{shown}"
        );
    }
}
