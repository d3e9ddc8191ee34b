//! Prefetch: a scheduled recording reaches the agent ahead of its slot and airs from the agent's
//! cache, by the agent's own clock, while the link is down for the whole slot; the proof of play
//! reaches the server's plays report once the link is back. A link that comes back while the
//! cache airs leaves the programme to the cache, heard once. And a schedule change that removes
//! the recording takes it out of the agent's cache: it does not air with the link down.
//!
//! The real `radio-server` (with a one-off schedule entry a little ahead) and one real
//! `relay-agent` with a WAV sink, talking through the impairment proxy, which blackholes the
//! link from before the slot until after it.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use radio_tests::schedule_file::{slot_start_after, write_one_off_schedule, OneOffSlot};
use radio_tests::{
    binary, compare, enroll, read_wav, start_agent, start_server_with, test_signal, write_wav,
    Impairment, ImpairmentProxy, Process, PATIENCE,
};

const COMMUNE: &str = "binh-trung";
const NAME: &str = "Bản tin dự phòng";
/// From starting the server to the slot: the server and the agent come up, the recording is
/// encoded and prefetched, and the link is down well before the slot.
const LEAD: SignedDuration = SignedDuration::from_secs(30);
/// The blackhole starts this long before the slot: more than the 3 s it takes the agent to
/// notice that the link is dead, so the slot begins with the link known down.
const DOWN_BEFORE: SignedDuration = SignedDuration::from_secs(8);
const PROGRAMME_SECONDS: f32 = 4.0;

/// The timestamp `tracing` puts first on each line (RFC 3339, UTC).
/// The number a log line gives for `key` (`key=N`).
fn logged_number(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn logged_at(line: &str) -> Timestamp {
    line.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no timestamp at the start of {line:?}"))
}

/// Waits for a wall-clock instant of the schedule: pacing by the clock the slots are set in.
fn sleep_until(t: Timestamp) {
    if let Ok(d) = Duration::try_from(t - Timestamp::now()) {
        std::thread::sleep(d);
    }
}

/// A test set-up: server (behind the proxy) and agent, with one one-off slot for `recording`.
struct Station {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    wav: std::path::PathBuf,
    server: Process,
    admin: String,
    agent: Process,
    proxy: ImpairmentProxy,
    slot_start: Timestamp,
}

fn start(entry_id: &str, signal: &[f32]) -> Station {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("ban-tin.wav");
    write_wav(&recording, signal, 48_000);
    // Enrolling builds the binaries, so the clock below is not eaten by a build.
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, COMMUNE, &bundle);

    // A one-off slot LEAD from now, on a whole second, in UTC.
    let slot_start = slot_start_after(LEAD);
    let schedule = dir.path().join("schedule.toml");
    write_one_off_schedule(
        &schedule,
        &OneOffSlot {
            id: entry_id,
            name: NAME,
            start: slot_start,
            duration: "1m",
            source: format!("{{ kind = \"file\", path = \"{}\" }}", recording.display()),
            targets: format!("{{ stations = [\"{COMMUNE}\"] }}"),
        },
    );
    let (mut server, addr) = start_server_with(
        &data,
        "127.0.0.1:0",
        &["--schedule", schedule.to_str().expect("utf8")],
    );
    let admin = server.admin_address();
    let upstream: SocketAddr = addr.parse().expect("server address");
    let proxy = ImpairmentProxy::start(upstream, Impairment::none());
    let wav = dir.path().join(format!("{COMMUNE}.wav"));
    let mut agent = start_agent(
        COMMUNE,
        &bundle,
        &proxy.local_addr().to_string(),
        &dir.path().join("state"),
        &[format!("wav:{}", wav.display())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    println!("slot starts at {slot_start}");
    Station {
        _dir: dir,
        data,
        wav,
        server,
        admin,
        agent,
        proxy,
        slot_start,
    }
}

/// The plays report for today (the district's day, and the day before, as the slot is in UTC)
/// as JSON.
fn plays_report(data: &Path, admin: &str) -> serde_json::Value {
    let tz = TimeZone::get("Asia/Ho_Chi_Minh").expect("zone");
    let today = tz.to_datetime(Timestamp::now()).date();
    let yesterday = today.yesterday().expect("a day before");
    let out = Command::new(binary("radio-server"))
        .args(["report", "plays", "--data-dir"])
        .arg(data)
        .args(["--admin-listen", admin])
        .args(["--from", &yesterday.to_string(), "--to", &today.to_string()])
        .args(["--by", "day", "--format", "json"])
        .output()
        .expect("radio-server report");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("json")
}

/// Polls the plays report until it shows `NAME` aired at least once; returns its figures.
fn reported_plays(data: &Path, admin: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let row = programme_row(&plays_report(data, admin));
        if row.as_ref().is_some_and(|r| r["plays"].as_u64() >= Some(1))
            || std::time::Instant::now() > deadline
        {
            return row.unwrap_or_else(|| panic!("`{NAME}` is not in the plays report"));
        }
        // A poll: the report is asked for, nothing announces it.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The station's figures for the programme `NAME`, if the report has it.
fn programme_row(report: &serde_json::Value) -> Option<serde_json::Value> {
    report["stations"]
        .as_array()?
        .iter()
        .find(|s| s["id"] == COMMUNE)?["programmes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == NAME)
        .map(|p| p["all"].clone())
}

#[test]
fn a_prefetched_programme_airs_complete_and_on_time_with_the_link_down_and_is_reported() {
    let signal = test_signal(PROGRAMME_SECONDS);
    let mut st = start("ban-tin-du-phong", &signal);

    // The recording reaches the agent's cache well before the slot.
    st.agent
        .wait_for("prefetched blob=", Duration::from_secs(20));
    st.agent.wait_for(
        "prefetched recording checked and ready to air",
        Duration::from_secs(10),
    );
    let now = Timestamp::now();
    assert!(
        now < st.slot_start - DOWN_BEFORE,
        "prefetch took too long: {now}, the link must go down at {}",
        st.slot_start - DOWN_BEFORE
    );

    // The link goes dead before the slot and stays dead until well after the programme.
    sleep_until(st.slot_start - DOWN_BEFORE);
    st.proxy.set_blackhole(true);
    st.agent
        .wait_for("connection lost", Duration::from_secs(10));
    let programme_end = st.slot_start
        + SignedDuration::from_secs_f32(PROGRAMME_SECONDS)
        + SignedDuration::from_secs(3);
    let airing = st
        .agent
        .wait_for("airing from the prefetch cache", Duration::from_secs(20));
    let aired = st
        .agent
        .wait_for("aired from the prefetch cache", Duration::from_secs(20));
    sleep_until(programme_end);
    assert!(
        Timestamp::now() > programme_end - SignedDuration::from_secs(1),
        "the programme aired before the link came back"
    );
    st.proxy.set_blackhole(false);
    let stats = st.proxy.stats();
    assert!(stats.server_to_client.dropped_blackhole > 0, "{stats:?}");

    // Aired by the agent's clock, at the slot, from its first frame.
    let airing_at = logged_at(&airing);
    println!("{airing}\n{aired}");
    assert!(
        airing_at >= st.slot_start - SignedDuration::from_millis(50)
            && airing_at <= st.slot_start + SignedDuration::from_millis(500),
        "the cache aired at {airing_at}, the slot starts at {}",
        st.slot_start
    );
    assert!(airing.contains("position_frames=0"), "{airing}");
    assert!(airing.contains("link_up=false"), "{airing}");
    let frames = signal.len().div_ceil(960);
    assert!(aired.contains(&format!("frames={frames}")), "{aired}");

    // Back online, the journal goes up and the plays report shows the programme aired once.
    st.agent.wait_for_nth("link up", 2, Duration::from_secs(30));
    let row = reported_plays(&st.data, &st.admin);
    println!("plays report: {row}");
    assert_eq!(row["plays"], 1, "{row}");
    let aired_s = row["aired_s"].as_f64().expect("aired_s");
    assert!(
        (aired_s - frames as f64 * 0.02).abs() < 0.01,
        "aired {aired_s} s of {frames} frames: {row}"
    );

    let (status, agent_log) = st.agent.terminate();
    assert!(status.success(), "agent exit status {status}");
    let (status, _) = st.server.terminate();
    assert!(status.success(), "server exit status {status}");
    assert_eq!(
        agent_log
            .iter()
            .filter(|l| l.contains("prefetched blob="))
            .count(),
        1,
        "the reconnected agent was sent the recording it holds again:\n{}",
        agent_log.join("\n")
    );

    // The loudspeakers heard the whole programme, faithfully.
    let (played, rate) = read_wav(&st.wav);
    assert_eq!(rate, 48_000);
    let s = compare(&signal, &played, 48_000);
    println!("{s:?}");
    assert!(
        s.correlation >= 0.95 || s.snr_db >= 20.0,
        "output does not match the recording: {s:?}"
    );
    assert!(
        s.blocks_ok >= 0.99,
        "some 20 ms blocks do not match (missing or repeated frames): {s:?}"
    );
    // At the right time: the recording starts with the agent's playout, just after its
    // `starting` line, so the programme was heard about `lag` after that.
    let started = agent_log
        .iter()
        .find(|l| l.contains("starting"))
        .map(|l| logged_at(l))
        .expect("a `starting` line");
    if agent_log.iter().any(|l| l.contains("re-basing")) {
        println!("the agent's playout clock re-based; its recording is not timed");
    } else {
        let heard_at = started + SignedDuration::from_secs_f64(s.lag as f64 / 48_000.0);
        println!("heard at {heard_at}, the slot starts at {}", st.slot_start);
        assert!(
            heard_at >= st.slot_start - SignedDuration::from_millis(500)
                && heard_at <= st.slot_start + SignedDuration::from_millis(100),
            "the programme is heard at {heard_at} by the recording, the slot starts at {}",
            st.slot_start
        );
    }
}

#[test]
fn a_recording_the_schedule_no_longer_airs_is_dropped_and_not_aired_with_the_link_down() {
    let signal = test_signal(PROGRAMME_SECONDS);
    let entry = "ban-tin-huy";
    let mut st = start(entry, &signal);
    st.agent
        .wait_for("prefetched blob=", Duration::from_secs(20));

    // The operator takes the entry off the schedule: the agent's cache lets it go at once.
    let out = Command::new(binary("radio-server"))
        .args(["schedule", "remove", entry, "--data-dir"])
        .arg(&st.data)
        .args(["--admin-listen", &st.admin])
        .output()
        .expect("radio-server schedule remove");
    assert!(out.status.success(), "{out:?}");
    st.agent.wait_for(
        "deleted a recording the schedule no longer airs here",
        Duration::from_secs(10),
    );

    // The link is down across what was the slot.
    sleep_until(st.slot_start - DOWN_BEFORE);
    st.proxy.set_blackhole(true);
    st.agent
        .wait_for("connection lost", Duration::from_secs(10));
    sleep_until(
        st.slot_start
            + SignedDuration::from_secs_f32(PROGRAMME_SECONDS)
            + SignedDuration::from_secs(3),
    );
    st.proxy.set_blackhole(false);
    let (status, agent_log) = st.agent.terminate();
    assert!(status.success(), "agent exit status {status}");
    let _ = st.server.terminate();

    let text = agent_log.join("\n");
    assert!(
        !text.contains("airing from the prefetch cache"),
        "the removed recording aired:\n{text}"
    );
    let (played, _) = read_wav(&st.wav);
    let loudest = played.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        loudest < 0.01,
        "the station was not silent (peak {loudest}):\n{text}"
    );
    assert!(
        std::fs::read_dir(st.data.parent().expect("dir").join("state/prefetch/blobs"))
            .expect("the cache's blobs")
            .next()
            .is_none(),
        "the removed recording is still in the cache"
    );
}

#[test]
fn a_link_back_mid_programme_finishes_it_from_the_cache_and_nothing_is_heard_twice() {
    // Long enough that the agent reconnects while it airs.
    let seconds = 15.0;
    let signal = test_signal(seconds);
    let mut st = start("ban-tin-noi-lai", &signal);
    st.agent
        .wait_for("prefetched blob=", Duration::from_secs(20));
    st.agent.wait_for(
        "prefetched recording checked and ready to air",
        Duration::from_secs(10),
    );

    // Down before the slot, back one second into it: the server is streaming the programme.
    sleep_until(st.slot_start - DOWN_BEFORE);
    st.proxy.set_blackhole(true);
    st.agent
        .wait_for("connection lost", Duration::from_secs(10));
    sleep_until(st.slot_start + SignedDuration::from_secs(1));
    st.proxy.set_blackhole(false);
    let airing = st
        .agent
        .wait_for("airing from the prefetch cache", Duration::from_secs(5));
    assert!(airing.contains("link_up=false"), "{airing}");
    let back = st.agent.wait_for_nth("link up", 2, Duration::from_secs(20));
    let aired = st
        .agent
        .wait_for("aired from the prefetch cache", Duration::from_secs(30));
    assert!(
        logged_at(&back) < logged_at(&aired),
        "the link came back only after the programme ({back}), so this tests nothing"
    );
    // The stream did carry the programme meanwhile: the cache went on regardless, to the end.
    // It starts where the clock is (a frame or two in when a loaded machine wakes it late),
    // which is what keeps it in step with the other stations.
    let frames = signal.len().div_ceil(960);
    let position = logged_number(&airing, "position_frames");
    assert!(
        position < 25,
        "the cache started half a second late: {airing}"
    );
    assert!(
        aired.contains(&format!("frames={}", frames as u64 - position)),
        "{airing}\n{aired}"
    );
    let row = reported_plays(&st.data, &st.admin);
    println!("plays report: {row}");
    assert_eq!(row["plays"], 1, "{row}");
    // The stream's copy must not be heard after the cache's: two seconds past the end are the
    // deliberate window in which nothing may happen.
    std::thread::sleep(Duration::from_secs(2));

    let (status, agent_log) = st.agent.terminate();
    assert!(status.success(), "agent exit status {status}");
    let _ = st.server.terminate();
    let text = agent_log.join("\n");
    assert!(!text.contains("gives way"), "the stream took over:\n{text}");
    // The stream's copy, dropped while the cache aired it, does not count as played.
    for line in agent_log.iter().filter(|l| l.contains(": played ")) {
        assert!(line.contains("played 0/"), "{line}");
    }

    // Heard once, whole and in order; silence after it, not the stream's tail.
    let (played, _) = read_wav(&st.wav);
    let s = compare(&signal, &played, 48_000);
    println!("{s:?}");
    assert!(
        s.correlation >= 0.95 || s.snr_db >= 20.0,
        "output does not match the recording: {s:?}"
    );
    assert!(s.blocks_ok >= 0.99, "missing or repeated frames: {s:?}");
    let after = &played[(s.lag + signal.len()).min(played.len())..];
    let loudest = after.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        loudest < 0.01,
        "sound after the programme (peak {loudest}): heard twice?\n{text}"
    );
    let before = &played[..s.lag.saturating_sub(960)];
    let loudest = before.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(
        loudest < 0.01,
        "sound before the programme (peak {loudest})"
    );
}
