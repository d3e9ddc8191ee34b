//! Amplifier power: a real `radio-server` with a one-off slot a little ahead, and a real
//! `relay-agent` whose `[amplifier]` is a command pair (argv, no shell in the agent: the test's
//! own argv is `sh -c` appending `on`/`off` and the time to a file). The instants in that file
//! are checked against the programme's first and last frames, as the agent's journal records
//! them (`ProgrammeStart`, `ProgrammeEnd`): on at least the lead before the first frame, never
//! off while it plays, off no sooner than the idle time after the last one. Once with the link
//! up (the programme streams), once with the link cut before the slot (it airs from the
//! prefetch cache, the manifest alone giving the lead).
//!
//! The GPIO form: this kernel has no gpio-sim (no configfs), so the GPIO switch's timing is
//! tested on a recording double of the same `AmplifierSwitch` interface in the agent's unit
//! tests (`relay-agent/src/amplifier/tests.rs`); here the real GPIO switch, on a chip that does
//! not exist, shows that a failing switch is logged and retried and never stops the station
//! from playing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use radio_tests::journal_dump::{self, DumpedRecord};
use radio_tests::schedule_file::{slot_start_after, write_one_off_schedule, OneOffSlot};
use radio_tests::{
    enroll, start_agent_with_env, start_server_with, test_signal, write_wav, Impairment,
    ImpairmentProxy, Process, PATIENCE,
};

const COMMUNE: &str = "binh-trung";
const NAME: &str = "Bản tin khuếch đại";
/// Small lead and idle times, so the test is short; the rules are the same as with 5 s / 60 s.
const LEAD_SECS: u64 = 3;
const IDLE_SECS: u64 = 4;
/// From starting the server to the slot: the server and agent come up and the recording is
/// prefetched well before the lead.
const SLOT_AHEAD: SignedDuration = SignedDuration::from_secs(30);
/// The link is cut this long before the slot (more than the 3 s the agent takes to notice).
const DOWN_BEFORE: SignedDuration = SignedDuration::from_secs(8);
const PROGRAMME_SECONDS: f32 = 4.0;

struct Station {
    dir: tempfile::TempDir,
    data: PathBuf,
    state: PathBuf,
    server: Process,
    agent: Process,
    proxy: ImpairmentProxy,
    slot_start: Timestamp,
}

/// The `[amplifier]` table appending `on`/`off` lines with the time to `log`.
fn command_pair(log: &Path) -> String {
    let line = |word: &str| {
        format!(
            "[\"sh\", \"-c\", \"echo {word} $(date +%s.%N) >> '{}'\"]",
            log.display()
        )
    };
    format!(
        "[amplifier]\nlead_secs = {LEAD_SECS}\nidle_secs = {IDLE_SECS}\n\
         on_command = {}\noff_command = {}\n",
        line("on"),
        line("off")
    )
}

fn gpio(chip: &Path) -> String {
    format!(
        "[amplifier]\nlead_secs = {LEAD_SECS}\nidle_secs = {IDLE_SECS}\nchip = \"{}\"\nline = 17\n",
        chip.display()
    )
}

/// Server with one one-off slot [`SLOT_AHEAD`] from now, and an agent (behind the impairment
/// proxy) whose config file is `amplifier(dir)`.
fn start(entry_id: &str, amplifier: impl Fn(&Path) -> String) -> Station {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("ban-tin.wav");
    write_wav(&recording, &test_signal(PROGRAMME_SECONDS), 48_000);
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    // Enrolling builds the binaries, so the clock below is not eaten by a build.
    enroll(&data, COMMUNE, &bundle);
    let slot_start = slot_start_after(SLOT_AHEAD);
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
    let (server, addr) = start_server_with(
        &data,
        "127.0.0.1:0",
        &["--schedule", schedule.to_str().expect("utf8")],
    );
    let upstream: SocketAddr = addr.parse().expect("server address");
    let proxy = ImpairmentProxy::start(upstream, Impairment::none());
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, amplifier(dir.path())).expect("write the agent's config");
    let state = dir.path().join("state");
    let mut agent = start_agent_with_env(
        COMMUNE,
        &bundle,
        &proxy.local_addr().to_string(),
        &state,
        &[format!("wav:{}", dir.path().join("out.wav").display())],
        &[("RELAY_AGENT_CONFIG", config.to_str().expect("utf8"))],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    println!("slot starts at {slot_start}");
    Station {
        dir,
        data,
        state,
        server,
        agent,
        proxy,
        slot_start,
    }
}

/// Stops both processes; the agent's whole journal (the server's copy and what the agent
/// still holds), by sequence number.
fn stop(st: Station) -> (tempfile::TempDir, BTreeMap<u64, DumpedRecord>) {
    let (status, _) = st.agent.terminate();
    assert!(status.success(), "agent exit status {status}");
    let (status, _) = st.server.terminate();
    assert!(status.success(), "server exit status {status}");
    let mut journal = BTreeMap::new();
    for record in journal_dump::stored(&st.data, COMMUNE)
        .into_iter()
        .chain(journal_dump::pending(&st.state))
    {
        journal.insert(record.seq, record);
    }
    drop(st.proxy);
    (st.dir, journal)
}

/// The time of the only record whose event starts with `kind` and names the programme.
fn programme_record(journal: &BTreeMap<u64, DumpedRecord>, kind: &str) -> i64 {
    let found: Vec<i64> = journal
        .values()
        .filter(|r| r.event.starts_with(kind) && r.event.contains(NAME))
        .map(|r| r.unix_ms)
        .collect();
    assert_eq!(found.len(), 1, "{kind} records: {found:?}\n{journal:#?}");
    found[0]
}

/// The `on`/`off` lines of the command log, as (on, Unix ms).
fn switches(log: &Path) -> Vec<(bool, f64)> {
    std::fs::read_to_string(log)
        .expect("the amplifier's command log")
        .lines()
        .map(|line| {
            let (word, time) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("odd line {line:?}"));
            let secs: f64 = time
                .parse()
                .unwrap_or_else(|_| panic!("odd time in {line:?}"));
            (word == "on", secs * 1000.0)
        })
        .collect()
}

/// Checks the switches against the programme's first and last frames.
fn check_switches(log: &Path, journal: &BTreeMap<u64, DumpedRecord>) {
    let first_frame = programme_record(journal, "ProgrammeStart") as f64;
    let last_frame = programme_record(journal, "ProgrammeEnd") as f64;
    let switches = switches(log);
    println!("first frame {first_frame}, after the last {last_frame}, switches {switches:?}");
    // Off at start (nothing due yet), then on for the programme, then off after it.
    assert!(matches!(switches.first(), Some((false, _))), "{switches:?}");
    let on: Vec<f64> = switches.iter().filter(|s| s.0).map(|s| s.1).collect();
    assert_eq!(on.len(), 1, "switched on once: {switches:?}");
    let lead_ms = (LEAD_SECS * 1000) as f64;
    assert!(
        on[0] <= first_frame - lead_ms,
        "on {} ms before the first frame, the lead is {lead_ms} ms",
        first_frame - on[0]
    );
    // Not needlessly early either: the lead, the policy's second ahead, and a slow machine.
    assert!(
        on[0] >= first_frame - lead_ms - 3_000.0,
        "on {} ms before the first frame",
        first_frame - on[0]
    );
    let offs_after: Vec<f64> = switches
        .iter()
        .filter(|s| !s.0 && s.1 > on[0])
        .map(|s| s.1)
        .collect();
    assert_eq!(offs_after.len(), 1, "switched off once after: {switches:?}");
    let idle_ms = (IDLE_SECS * 1000) as f64;
    assert!(
        offs_after[0] >= last_frame + idle_ms,
        "off {} ms after the last frame, the idle time is {idle_ms} ms",
        offs_after[0] - last_frame
    );
    // The journal has the same switches, with their rules.
    let journaled: Vec<&str> = journal
        .values()
        .filter(|r| r.event.starts_with("Amplifier"))
        .map(|r| r.event.as_str())
        .collect();
    assert_eq!(journaled.len(), 3, "{journaled:?}");
    assert!(journaled[0].contains("on: false") && journaled[0].contains("\"start\""));
    assert!(journaled[1].contains("on: true") && journaled[1].contains("\"lead\""));
    assert!(journaled[2].contains("on: false") && journaled[2].contains("\"idle\""));
}

/// Waits for a wall-clock instant of the schedule: pacing by the clock the slot is set in.
fn sleep_until(t: Timestamp) {
    if let Ok(d) = Duration::try_from(t - Timestamp::now()) {
        std::thread::sleep(d);
    }
}

#[test]
fn the_command_pair_switches_on_a_lead_before_the_programme_and_off_an_idle_time_after() {
    let mut st = start("khuech-dai", |dir| command_pair(&dir.join("amplifier.log")));
    st.agent
        .wait_for("amplifier box switched on (lead)", PATIENCE);
    st.agent
        .wait_for("amplifier box switched off (idle)", PATIENCE);
    let (dir, journal) = stop(st);
    check_switches(&dir.path().join("amplifier.log"), &journal);
}

#[test]
fn with_the_link_down_the_prefetched_programme_still_gets_its_lead_and_idle_time() {
    let mut st = start("khuech-dai-mat-ket-noi", |dir| {
        command_pair(&dir.join("amplifier.log"))
    });
    st.agent.wait_for(
        "prefetched recording checked and ready to air",
        Duration::from_secs(20),
    );
    let now = Timestamp::now();
    assert!(
        now < st.slot_start - DOWN_BEFORE,
        "prefetch took too long: {now}, the link must go down at {}",
        st.slot_start - DOWN_BEFORE
    );
    sleep_until(st.slot_start - DOWN_BEFORE);
    st.proxy.set_blackhole(true);
    st.agent
        .wait_for("connection lost", Duration::from_secs(10));
    st.agent
        .wait_for("amplifier box switched on (lead)", PATIENCE);
    st.agent.wait_for("aired from the prefetch cache", PATIENCE);
    st.agent
        .wait_for("amplifier box switched off (idle)", PATIENCE);
    // It all happened with the link down.
    assert_eq!(st.agent.count_seen("link up"), 1);
    let (dir, journal) = stop(st);
    check_switches(&dir.path().join("amplifier.log"), &journal);
}

#[test]
fn a_gpio_switch_that_fails_is_logged_and_retried_and_the_station_still_plays() {
    let mut st = start("khuech-dai-gpio", |dir| gpio(&dir.join("gpiochip9")));
    st.agent
        .wait_for("amplifier box: GPIO", Duration::from_secs(10));
    st.agent
        .wait_for("amplifier box not switched off", Duration::from_secs(10));
    // Retried: the lead's switch on fails too, and the programme plays regardless.
    st.agent.wait_for("amplifier box not switched on", PATIENCE);
    let (_dir, journal) = stop_after_programme(st);
    assert!(
        !journal.values().any(|r| r.event.starts_with("Amplifier")),
        "a switch that failed was journaled"
    );
}

/// Waits for the programme to end at the agent, then [`stop`].
fn stop_after_programme(mut st: Station) -> (tempfile::TempDir, BTreeMap<u64, DumpedRecord>) {
    sleep_until(st.slot_start + SignedDuration::from_secs_f32(PROGRAMME_SECONDS));
    // The journal's writer logs each record it writes (debug): the end of the programme.
    st.agent.wait_for("ProgrammeEnd", PATIENCE);
    let (dir, journal) = stop(st);
    programme_record(&journal, "ProgrammeStart");
    programme_record(&journal, "ProgrammeEnd");
    (dir, journal)
}
