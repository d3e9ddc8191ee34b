//! A province's worth of stations on the real on-air controller: one tick switches them all, two
//! events each. `play_bulletin` (what `radio-server run --programme --repeat` and the demo wait
//! on) must see every one of them, or it never learns that the programme ended: at 3,000
//! stations the event channel once overflowed and `--repeat` stopped after the first play.

use std::sync::Arc;
use std::time::Duration;

use radio_config::{District, Station, StationKind};
use radio_server::broadcast::on_air::{file_bulletin, play_bulletin, OnAir, OnAirConfig};
use radio_server::broadcast::station_output::StationOutput;
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::Schedule;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulletin_to_thousands_of_stations_ends_and_plays_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let recording = dir.path().join("tin.wav");
    radio_tests::write_chirp(&recording, 440.0, 880.0, 0.3);
    let mut district = District::binh_son();
    district.stations = (0..3_000)
        .map(|i| Station {
            id: format!("xa-{i:05}"),
            name: format!("Xã {i}"),
            kind: StationKind::Wireless,
            villages: 1,
            clusters: 1,
            speakers: 2,
        })
        .collect();
    let scheduler = Scheduler::new(Schedule::default(), &district).expect("scheduler");
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
    for n in 1..=2 {
        let bulletin = file_bulletin(&format!("programme-{n}"), "Tin", &recording);
        let summary =
            tokio::time::timeout(Duration::from_secs(60), play_bulletin(&on_air, bulletin))
                .await
                .unwrap_or_else(|_| panic!("play {n} of the bulletin never ended"))
                .expect("played");
        assert_eq!(summary.error, None);
        assert_eq!(summary.frames, 15, "0.3 s of 20 ms frames");
    }
}
