//! A server killed with a station connected writes no end of that session. Its run marker and
//! alive time, and the next run's start marker, let the report end the session anyway: the
//! real server in process on loopback, a real store, a session that is never closed.

use std::time::{Duration, Instant};

use radio_config::{District, ServerConfig};
use radio_proto::{JournalBatch, JournalEvent, JournalRecord};
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::link::server::{self, Server};
use radio_server::records::store::Store;
use radio_server::report::load::timelines;
use radio_server::report::timeline::{session_ends, Condition, REPORTING_GRACE_MS};
use relay_agent::journal::unix_ms;
use support::raw_agent::RawAgent;

mod support;

/// How long the test waits for what the server records: far longer than it takes, so that only
/// a record that never comes fails, not a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

/// Runs the agent side of a session as `binh-trung` until welcomed; the server run's id.
async fn welcomed(addr: std::net::SocketAddr, ca: &CertificateAuthority) -> (RawAgent, u64) {
    let bundle = ca
        .enroll("binh-trung", "Bình Trung", &addr.to_string(), "localhost")
        .expect("enroll");
    let client = relay_agent::tls::client_config(&bundle).expect("tls");
    let agent = RawAgent::welcomed(addr, client, "binh-trung")
        .await
        .expect("welcomed");
    let run = agent
        .welcome
        .as_ref()
        .map(|w| w.session_id)
        .expect("welcome");
    (agent, run)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_s_sessions_end_at_its_last_sign_of_life() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    let district = District::binh_son();
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name).expect("ca");
    let store = Store::open(dir.path()).expect("store");
    let uptime = store.uptime().clone();

    // Run 1: a station connects, then the server is killed (its task dropped mid-way: no
    // session end is written, as after SIGKILL).
    let endpoint = server::bind(&config, &ca).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let first = Server::with_uptime(config.clone(), district.clone(), uptime.clone());
    let task = tokio::spawn(server::run(endpoint, first.clone(), std::future::pending()));
    let (_client, run_1) = welcomed(addr, &ca).await;
    let deadline = Instant::now() + WAIT;
    let up_ms = loop {
        if let Some(up) = uptime.links("binh-trung").expect("links").first() {
            break up.unix_ms;
        }
        assert!(
            Instant::now() < deadline,
            "the session start was not recorded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The station's own records, as its agent would upload them: started, then linked.
    uptime
        .store_batch(
            "binh-trung",
            &JournalBatch {
                journal_id: 1,
                records: vec![
                    JournalRecord {
                        seq: 1,
                        unix_ms: up_ms - 2_000,
                        event: JournalEvent::ProcessStart {
                            clean_previous: true,
                            software: "relay-agent/test".into(),
                        },
                    },
                    JournalRecord {
                        seq: 2,
                        unix_ms: up_ms - 1_000,
                        event: JournalEvent::LinkUp { server_run: run_1 },
                    },
                ],
            },
        )
        .expect("store");
    task.abort();
    let _ = task.await;
    drop(first);
    // A moment for anything the killed run might still write (nothing may): a wrong session
    // end written later than this would go unnoticed here, never fail the test wrongly.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let links = uptime.links("binh-trung").expect("links");
    assert_eq!(links.len(), 1, "{links:?}");
    assert!(links[0].up);
    assert_eq!(
        links[0].server_run,
        Some(run_1),
        "the run the agent was welcomed by"
    );
    let runs = uptime.runs().expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].run_id, run_1);
    // While run 1 is the newest run, its session may be open: the tail holds.
    assert!(session_ends(&links, &runs).is_empty());

    // Run 2 starts: run 1 is over.
    let endpoint = server::bind(&config, &ca).expect("bind");
    let second = Server::with_uptime(config, district.clone(), uptime.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::run(endpoint, second, async move {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + WAIT;
    let runs = loop {
        let runs = uptime.runs().expect("runs");
        if runs.len() == 2 {
            break runs;
        }
        assert!(Instant::now() < deadline, "run 2 did not record its start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(runs[1].run_id, run_1);
    let ends = session_ends(&links, &runs);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(ends[0].earliest_ms >= up_ms as i64);
    assert_eq!(ends[0].latest_ms, runs[1].started_ms as i64);

    // An hour later, the station has sent nothing more: available until run 1's last sign of
    // life, not for the 5 minutes of the reporting grace.
    let now_ms = unix_ms() as i64 + 3_600_000;
    let all = timelines(&uptime, &district, now_ms).expect("timelines");
    let spans = &all["binh-trung"].spans;
    let available: Vec<_> = spans
        .iter()
        .filter(|s| s.condition == Condition::Available)
        .collect();
    assert_eq!(available.len(), 1, "{spans:?}");
    assert_eq!(available[0].end_ms, ends[0].earliest_ms, "{spans:?}");
    assert!(
        available[0].end_ms < up_ms as i64 + REPORTING_GRACE_MS,
        "{spans:?}"
    );
    assert_eq!(
        spans.last().map(|s| s.condition),
        Some(Condition::Unreported)
    );

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
