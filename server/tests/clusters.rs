//! Loudspeaker clusters on the admin API, through the real code path: the real QUIC server with
//! a real store, an agent session on loopback uploading its journal (`Cluster` records) as
//! `JournalBatch`es, and `GET /api/v1/stations` and `/metrics` from the real admin endpoint.
//! Then the server restarts on the same store and still knows the states, and the agent's
//! restart (`ProcessStart`) makes the previous run's states stale.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_config::{District, ServerConfig};
use radio_proto::{ClusterState, JournalBatch, JournalEvent, JournalRecord};
use radio_server::broadcast::on_air::{OnAir, OnAirConfig};
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::link::server::{self, Server};
use radio_server::operator::admin::{serve, AdminState, StationView};
use radio_server::operator::admin_client::AdminClient;
use radio_server::records::clusters::ClusterHealth;
use radio_server::records::store::Store;
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::Schedule;
use support::raw_agent::RawAgent;
use tokio::sync::oneshot;

mod support;

const JOURNAL: u64 = 5;
const T0: u64 = 1_764_000_000_000;

/// The QUIC server and its admin endpoint, on one store.
struct Running {
    quic: SocketAddr,
    admin: AdminClient,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

async fn start(config: &ServerConfig, ca: &CertificateAuthority, store: &Arc<Store>) -> Running {
    let district = District::binh_son();
    let endpoint = server::bind(config, ca).expect("bind");
    let quic = endpoint.local_addr().expect("addr");
    let server = Server::with_uptime(config.clone(), district.clone(), store.uptime().clone());
    let schedule = Schedule::default();
    let scheduler = Scheduler::new(schedule.clone(), &district).expect("scheduler");
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let on_air = OnAir::spawn(
        server.outputs(),
        ladder,
        OnAirConfig {
            bitrate: 32_000,
            ..OnAirConfig::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let admin_addr = listener.local_addr().expect("addr");
    let state =
        AdminState::new(on_air, store.clone(), district, schedule).with_server(server.clone());
    let (stop_quic, quic_stopped) = oneshot::channel::<()>();
    let (stop_admin, admin_stopped) = oneshot::channel::<()>();
    let tasks = vec![
        tokio::spawn(server::run(endpoint, server, async move {
            let _ = quic_stopped.await;
        })),
        tokio::spawn(async move {
            let _ = serve(listener, state, async move {
                let _ = admin_stopped.await;
            })
            .await;
        }),
    ];
    let token = store.admin_token().expect("token");
    Running {
        quic,
        admin: AdminClient::new(admin_addr, &token),
        stops: vec![stop_quic, stop_admin],
        tasks,
    }
}

impl Running {
    async fn get(&self, path: &'static str) -> String {
        let client = self.admin.clone();
        let (status, body) = tokio::task::spawn_blocking(move || client.raw("GET", path, None))
            .await
            .expect("client thread")
            .expect("answer");
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    async fn station(&self, id: &str) -> StationView {
        let stations: Vec<StationView> =
            serde_json::from_str(&self.get("/api/v1/stations").await).expect("JSON");
        assert_eq!(stations.len(), 22);
        stations
            .into_iter()
            .find(|s| s.id == id)
            .expect("the station is listed")
    }

    /// Polls the station until `check` holds; the last view either way.
    async fn station_until(&self, id: &str, check: impl Fn(&StationView) -> bool) -> StationView {
        // Far longer than it takes, so that only a state that never shows fails.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let view = self.station(id).await;
            if check(&view) || Instant::now() > deadline {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `radio_cluster_up` samples: (station, cluster, value).
    async fn cluster_gauges(&self) -> Vec<(String, String, f64)> {
        let body = self.get("/metrics").await;
        let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
            .expect("valid Prometheus text");
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "radio_cluster_up")
            .map(|s| {
                let prometheus_parse::Value::Gauge(v) = s.value else {
                    panic!("a gauge: {s:?}");
                };
                let label = |name| s.labels.get(name).unwrap_or_default().to_owned();
                (label("station"), label("cluster"), v)
            })
            .collect()
    }

    async fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for task in self.tasks.drain(..) {
            tokio::time::timeout(Duration::from_secs(60), task)
                .await
                .expect("stops")
                .expect("task");
        }
    }
}

/// An agent session as `binh-trung`, welcomed.
async fn connect(addr: SocketAddr, ca: &CertificateAuthority) -> RawAgent {
    let bundle = ca
        .enroll("binh-trung", "Bình Trung", &addr.to_string(), "localhost")
        .expect("enroll");
    let client = relay_agent::tls::client_config(&bundle).expect("tls");
    RawAgent::welcomed(addr, client, "binh-trung")
        .await
        .expect("welcomed")
}

/// Uploads records as the agent's journal does, and waits for the server's acknowledgement
/// (sent once they are stored).
async fn upload(agent: &mut RawAgent, records: Vec<JournalRecord>) {
    agent
        .upload(JournalBatch {
            journal_id: JOURNAL,
            records,
        })
        .await
        .expect("stored and acknowledged");
}

fn record(seq: u64, event: JournalEvent) -> JournalRecord {
    JournalRecord {
        seq,
        unix_ms: T0 + seq * 1_000,
        event,
    }
}

fn cluster(seq: u64, id: &str, state: ClusterState, reason: &str) -> JournalRecord {
    record(
        seq,
        JournalEvent::Cluster {
            cluster: id.into(),
            state,
            reason: reason.into(),
        },
    )
}

fn started(seq: u64) -> JournalRecord {
    record(
        seq,
        JournalEvent::ProcessStart {
            clean_previous: true,
            software: "relay-agent/test".into(),
        },
    )
}

/// (cluster within the station, state, since) of every cluster not following the station.
fn watched(view: &StationView) -> Vec<(String, ClusterHealth, Option<u64>, bool)> {
    view.clusters
        .iter()
        .filter(|c| c.state != ClusterHealth::FollowsStation)
        .map(|c| {
            let local = c.id.strip_prefix("binh-trung/").unwrap_or(&c.id).to_owned();
            (local, c.state, c.since, c.configured)
        })
        .collect()
}

fn gauges(list: &[(&str, f64)]) -> Vec<(String, String, f64)> {
    list.iter()
        .map(|(c, v)| ("binh-trung".to_owned(), (*c).to_owned(), *v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watched_clusters_are_up_or_down_and_the_others_follow_their_station() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let district = District::binh_son();
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name).expect("ca");
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let configured = district
        .station("binh-trung")
        .expect("station")
        .cluster_ids();
    assert_eq!(configured.len(), 24);

    let run = start(&config, &ca, &store).await;
    let mut agent = connect(run.quic, &ca).await;
    // Connected, nothing recorded yet: every cluster follows the station.
    let view = run.station_until("binh-trung", |v| v.connected).await;
    assert!(view.connected);
    let ids: Vec<&str> = view.clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, configured);
    assert!(view
        .clusters
        .iter()
        .all(|c| c.state == ClusterHealth::FollowsStation && c.since.is_none()));
    assert!(run.cluster_gauges().await.is_empty());

    // The agent watches c01 and c02, and c99 — not a cluster of Bình Trung (a typo in its
    // configuration) — and journals what it sees.
    upload(
        &mut agent,
        vec![
            started(1),
            record(2, JournalEvent::LinkUp { server_run: 0 }),
            cluster(3, "c01", ClusterState::Up, "RTCP receiver reports arrive"),
            cluster(
                4,
                "c02",
                ClusterState::Down,
                "receiver unreachable: Connection refused (os error 111)",
            ),
            cluster(5, "c99", ClusterState::Up, "no error from the receiver"),
        ],
    )
    .await;
    let view = run.station("binh-trung").await;
    assert_eq!(view.clusters.len(), 25, "{:?}", view.clusters);
    assert_eq!(
        watched(&view),
        [
            ("c01".into(), ClusterHealth::Up, Some(T0 + 3_000), true),
            ("c02".into(), ClusterHealth::Down, Some(T0 + 4_000), true),
            ("c99".into(), ClusterHealth::Up, Some(T0 + 5_000), false),
        ]
    );
    assert_eq!(
        view.clusters[1].reason,
        "receiver unreachable: Connection refused (os error 111)"
    );
    // The configured clusters first, in order; the unknown one after them.
    assert_eq!(view.clusters[2].id, "binh-trung/c03");
    assert_eq!(view.clusters[2].state, ClusterHealth::FollowsStation);
    assert_eq!(view.clusters[24].id, "binh-trung/c99");
    // The JSON as the dashboard reads it.
    let raw: serde_json::Value =
        serde_json::from_str(&run.get("/api/v1/stations").await).expect("JSON");
    let trung = raw
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == "binh-trung"))
        .expect("binh-trung");
    assert_eq!(trung["clusters"][0]["id"], "binh-trung/c01");
    assert_eq!(trung["clusters"][0]["state"], "up");
    assert_eq!(trung["clusters"][1]["state"], "down");
    assert_eq!(trung["clusters"][2]["state"], "follows_station");
    assert_eq!(trung["clusters"][2]["since"], serde_json::Value::Null);
    // Another station: nothing watched.
    let duong = run.station("binh-duong").await;
    assert!(duong
        .clusters
        .iter()
        .all(|c| c.state == ClusterHealth::FollowsStation));
    assert_eq!(
        run.cluster_gauges().await,
        gauges(&[("c01", 1.0), ("c02", 0.0), ("c99", 1.0)])
    );
    // The station's session uptime is a gauge too, only for the connected station.
    let body = run.get("/metrics").await;
    let sessions: Vec<&str> = body
        .lines()
        .filter(|l| l.starts_with("radio_agent_session_seconds{"))
        .collect();
    assert_eq!(sessions.len(), 1, "{body}");
    assert!(sessions[0].contains("station=\"binh-trung\""), "{body}");

    // c01 goes down: the newest record wins.
    upload(
        &mut agent,
        vec![cluster(
            6,
            "c01",
            ClusterState::Down,
            "no RTCP receiver report for 30 s",
        )],
    )
    .await;
    let view = run.station("binh-trung").await;
    assert_eq!(view.clusters[0].state, ClusterHealth::Down);
    assert_eq!(view.clusters[0].reason, "no RTCP receiver report for 30 s");
    assert_eq!(view.clusters[0].since, Some(T0 + 6_000));
    assert_eq!(
        run.cluster_gauges().await,
        gauges(&[("c01", 0.0), ("c02", 0.0), ("c99", 1.0)])
    );

    // The server restarts. The agent deleted the acknowledged records and sends only changes,
    // so the states come back from the store, before the agent is even connected.
    drop(agent);
    run.stop().await;
    let run = start(&config, &ca, &store).await;
    let view = run
        .station_until("binh-trung", |v| v.clusters[0].state == ClusterHealth::Down)
        .await;
    assert!(!view.connected);
    assert_eq!(
        watched(&view),
        [
            ("c01".into(), ClusterHealth::Down, Some(T0 + 6_000), true),
            ("c02".into(), ClusterHealth::Down, Some(T0 + 4_000), true),
            ("c99".into(), ClusterHealth::Up, Some(T0 + 5_000), false),
        ]
    );
    assert_eq!(
        run.cluster_gauges().await,
        gauges(&[("c01", 0.0), ("c02", 0.0), ("c99", 1.0)])
    );

    // The agent restarts with a corrected configuration: what its previous run watched is
    // stale, and only what the new run records counts.
    let mut agent = connect(run.quic, &ca).await;
    upload(
        &mut agent,
        vec![
            started(7),
            cluster(8, "c03", ClusterState::Up, "RTCP receiver reports arrive"),
        ],
    )
    .await;
    let view = run.station("binh-trung").await;
    assert!(view.connected);
    assert_eq!(view.clusters.len(), 24);
    assert_eq!(
        watched(&view),
        [("c03".into(), ClusterHealth::Up, Some(T0 + 8_000), true)]
    );
    assert_eq!(run.cluster_gauges().await, gauges(&[("c03", 1.0)]));
    drop(agent);
    run.stop().await;
}
