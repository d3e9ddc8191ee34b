//! The on-air controller on the real clock: a timed entry goes on air at its slot's start and
//! off at its end while the server runs, with no command to wake it. (The ladder's own tests run
//! on a virtual clock; this one checks that the controller wakes up for the boundaries.)

use std::sync::Arc;
use std::time::Duration;

use radio_config::District;
use radio_server::broadcast::on_air::{OnAir, OnAirConfig, OnAirEvent};
use radio_server::broadcast::station_output::StationOutput;
use radio_server::schedule::ladder::{ItemRef, Ladder, LadderConfig, StopReason};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::Schedule;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_entry_starts_and_ends_at_its_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("tin.wav");
    // Far longer than the slot: a controller that did not wake for the slot's end would stop
    // the entry only when the recording runs out, 88 s after it.
    radio_tests::write_chirp(&recording, 440.0, 440.0, 90.0);
    let district = District::binh_son();
    // Whole seconds in UTC: the slot starts 2 s from now (at least 1 s after the controller's
    // first look at the schedule) and lasts 2 s.
    let now = jiff::Timestamp::now();
    let start = jiff::Timestamp::from_second(now.as_second() + 2).expect("start");
    let local = start.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let schedule: Schedule = toml::from_str(&format!(
        "timezone = \"UTC\"\n[[entries]]\nid = \"tin-trua\"\nname = \"Tin trưa\"\n\
         recurrence = {{ once = {{ date = \"{}\" }} }}\nstart = \"{:02}:{:02}:{:02}\"\n\
         end = {{ duration = \"2s\" }}\nsource = {{ kind = \"file\", path = \"{}\" }}\n\
         targets = {{ stations = [\"binh-trung\"] }}\n",
        local.date(),
        local.hour(),
        local.minute(),
        local.second(),
        recording.display()
    ))
    .expect("schedule");
    let scheduler = Scheduler::new(schedule, &district).expect("scheduler");
    let outputs: Vec<Arc<StationOutput>> = district
        .stations
        .iter()
        .map(|s| Arc::new(StationOutput::new(&s.id, 250)))
        .collect();
    let on_air = OnAir::spawn(
        outputs,
        Ladder::new(scheduler, &district, LadderConfig::default()),
        OnAirConfig::default(),
    );
    let mut events = on_air.events();
    let entry = ItemRef::Entry {
        entry_id: "tin-trua".into(),
        occurrence_start: start,
    };
    let mut started = None;
    let stopped = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match events.recv().await.expect("events") {
                OnAirEvent::Started { station, item, .. } if station == "binh-trung" => {
                    assert_eq!(item, entry);
                    started = Some(jiff::Timestamp::now());
                }
                OnAirEvent::Stopped {
                    station,
                    item,
                    reason,
                } if station == "binh-trung" => {
                    assert_eq!((item, reason), (entry.clone(), StopReason::Ended));
                    return jiff::Timestamp::now();
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the slot started and ended by itself within 60 s");
    let started = started.expect("started before it stopped");
    // Not before its boundaries; how late depends on the machine, so it is only bounded loosely:
    // well short of the recording's end, however loaded the machine.
    assert!(
        started >= start,
        "started at {started}, before the slot ({start})"
    );
    let end = start + jiff::SignedDuration::from_secs(2);
    assert!(
        stopped >= end,
        "stopped at {stopped}, before the slot's end ({end})"
    );
    assert!(
        stopped.duration_since(end) < jiff::SignedDuration::from_secs(30),
        "stopped at {stopped}, long after the slot's end ({end})"
    );
}
