//! `radio-server status` counts the stations heard, not the stations the ladder puts on air: a
//! station with no agent connected airs to nobody. The real QUIC server in process with a real
//! store, the on-air controller over its outputs, the admin endpoint on loopback, two stations'
//! agents connected, a third connected then gone, and nineteen never connected.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use radio_config::District;
use radio_server::broadcast::on_air::{OnAir, OnAirConfig, OnAirStatus};
use radio_server::operator::admin::{serve, AdminState, EmergencyRequest, Link, StatusView};
use radio_server::operator::admin_client::{render_status, AdminClient};
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::Schedule;
use support::raw_agent::RawAgent;
use tokio::sync::oneshot;

mod support;

/// A sine tone, 8 kHz mono 16-bit: the emergency that puts every station on air.
fn write_wav(path: &Path, seconds: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..8_000 * seconds {
        let t = i as f32 / 8_000.0;
        let s = (t * 440.0 * std::f32::consts::TAU).sin() * 0.3;
        w.write_sample((s * 32767.0) as i16).expect("sample");
    }
    w.finalize().expect("finalize");
}

/// Polls the status (off the runtime's threads: the client blocks) until `check` holds; the
/// last status either way.
async fn status_until(client: &AdminClient, check: impl Fn(&StatusView) -> bool) -> StatusView {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let c = client.clone();
        let status = tokio::task::spawn_blocking(move || c.status())
            .await
            .expect("client thread")
            .expect("status");
        if check(&status) || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn link_of(status: &StatusView, station: &str) -> Link {
    status
        .stations
        .iter()
        .find(|r| r.station.station == station)
        .map(|r| r.link)
        .unwrap_or_else(|| panic!("no row for {station}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_the_stations_heard_and_shows_each_link() {
    // The raw agents answer no heartbeat: a long idle timeout keeps their sessions up on a
    // loaded machine for as long as the test needs.
    let running = support::start(|c| c.idle_timeout_ms = 300_000).await;
    let district = District::binh_son();
    let schedule = Schedule::default();
    let scheduler = Scheduler::new(schedule.clone(), &district).expect("scheduler");
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let on_air = OnAir::spawn(
        running.server.outputs().collect::<Vec<_>>(),
        ladder,
        OnAirConfig {
            bitrate: 32_000,
            ..OnAirConfig::default()
        },
    );
    let token = running.store.admin_token().expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin: SocketAddr = listener.local_addr().expect("addr");
    let state = AdminState::new(on_air, running.store.clone(), district.clone(), schedule)
        .with_server(running.server.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let endpoint = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let client = AdminClient::new(admin, &token);

    // Two stations' agents stay; a third comes and goes.
    let mut agents = Vec::new();
    for station in ["binh-trung", "binh-duong", "binh-hai"] {
        let agent = RawAgent::welcomed(running.addr, running.client(station), station)
            .await
            .expect("welcomed");
        agents.push(agent);
    }
    let gone = agents.pop().expect("binh-hai");
    gone.conn.close(0u32.into(), b"bye");
    drop(gone);

    // Every station on air: an emergency everywhere.
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("bao.wav");
    write_wav(&wav, 30);
    let request = EmergencyRequest {
        file: Some(wav),
        ..EmergencyRequest::default()
    };
    let c = client.clone();
    tokio::task::spawn_blocking(move || c.emergency(&request))
        .await
        .expect("client thread")
        .expect("emergency accepted");

    let status = status_until(&client, |s| {
        s.stations.iter().all(|r| r.station.item.is_some())
            && link_of(s, "binh-hai") == Link::Down
            && link_of(s, "binh-trung") == Link::Up
            && link_of(s, "binh-duong") == Link::Up
    })
    .await;
    assert!(
        status.stations.iter().all(|r| r.station.item.is_some()),
        "the ladder puts every station on air: {status:?}"
    );
    assert_eq!(link_of(&status, "binh-trung"), Link::Up);
    assert_eq!(link_of(&status, "binh-duong"), Link::Up);
    assert_eq!(link_of(&status, "binh-hai"), Link::Down);
    let hai = status
        .stations
        .iter()
        .find(|r| r.station.station == "binh-hai")
        .expect("row");
    assert!(hai.link_since.is_some(), "down since when: {hai:?}");
    let never: Vec<&str> = status
        .stations
        .iter()
        .filter(|r| r.link == Link::Never)
        .map(|r| r.station.station.as_str())
        .collect();
    assert_eq!(never.len(), 19, "{never:?}");
    assert_eq!(status.heard, 2, "on air and an agent connected");
    assert_eq!(status.without_agent, 20);

    let tz = radio_server::schedule::load_timezone(radio_server::schedule::DEFAULT_TIMEZONE)
        .expect("tz");
    let text = render_status(&status, &tz);
    assert!(
        text.contains("2 of 22 stations heard (on air, agent connected); 20 without an agent"),
        "{text}"
    );
    assert!(!text.contains("22 of 22"), "{text}");
    let row = |station: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{station} ")))
            .unwrap_or_else(|| panic!("no row for {station}: {text}"))
            .to_owned()
    };
    assert!(row("binh-trung").contains(" up "), "{text}");
    assert!(row("binh-hai").contains(" down since "), "{text}");
    assert!(row("binh-chau").contains(" never "), "{text}");

    // Older clients read the same answer: the fields they know are all still there.
    let c = client.clone();
    let old: OnAirStatus = tokio::task::spawn_blocking(move || c.get("/api/v1/status"))
        .await
        .expect("client thread")
        .expect("the old shape still decodes");
    assert_eq!(old.stations.len(), 22);
    assert_eq!(old.emergencies.len(), 1);
    assert_eq!(
        old.stations
            .iter()
            .zip(&status.stations)
            .filter(|(o, n)| **o == n.station)
            .count(),
        22
    );

    drop(agents);
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), endpoint).await;
    running.stop().await;
}
