//! The commune inbox over the admin endpoint: the bulletins a commune operator is offered,
//! accepted (at once or from a time) or declined, and the audit log's filters. A real on-air
//! controller over the 22 Bình Sơn stations, the store in a temporary data directory, HTTP on
//! loopback, and the operator commands' client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use radio_config::{AdminTokenSettings, District, Role};
use radio_server::broadcast::on_air::{OnAir, OnAirConfig};
use radio_server::broadcast::station_output::StationOutput;
use radio_server::operator::admin::{
    serve, AdminState, BulletinListing, BulletinRequest, BulletinStateName, BulletinView,
};
use radio_server::operator::admin_client::{AdminClient, AuditQuery, ClientError};
use radio_server::operator::audit_log::{AuditAction, AuditListing, Outcome};
use radio_server::operator::auth_limiter::AuthLimits;
use radio_server::records::store::Store;
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::{Level, Schedule, SourceSpec, Targets};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(60);

/// The operators of binh-trung and of binh-duong.
const OPERATOR_A: &str = "can-bo-binh-trung";
const OPERATOR_B: &str = "can-bo-binh-duong";

struct Harness {
    client: AdminClient,
    dir: tempfile::TempDir,
    store: Arc<Store>,
    operator_a: String,
    operator_b: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

fn role_token(name: &str, role: Role, station: Option<&str>) -> (AdminTokenSettings, String) {
    use sha2::Digest;
    let token = format!("{name}-0123456789abcdef0123456789abcdef");
    let sha256 = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        AdminTokenSettings {
            name: name.to_owned(),
            role,
            station: station.map(str::to_owned),
            sha256,
        },
        token,
    )
}

async fn start() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let district = District::binh_son();
    let outputs: Vec<Arc<StationOutput>> = district
        .stations
        .iter()
        .map(|s| Arc::new(StationOutput::new(&s.id, 250)))
        .collect();
    // No timed entries: what airs must not depend on the time of day the test runs at.
    let schedule = Schedule::default();
    let scheduler = Scheduler::new(schedule.clone(), &district).expect("scheduler");
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let on_air = OnAir::spawn(
        outputs,
        ladder,
        OnAirConfig {
            bitrate: 32_000,
            ..OnAirConfig::default()
        },
    );
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let token = store.admin_token().expect("token");
    let (a, operator_a) = role_token(OPERATOR_A, Role::Operator, Some("binh-trung"));
    let (b, operator_b) = role_token(OPERATOR_B, Role::Operator, Some("binh-duong"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let state = AdminState::new(on_air, store.clone(), district, schedule)
        .with_tokens(&[a, b])
        .with_auth_limits(AuthLimits {
            max_failures: 1_000,
            ..AuthLimits::default()
        });
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Harness {
        client: AdminClient::new(addr, &token),
        dir,
        store,
        operator_a,
        operator_b,
        stop: Some(stop),
        task: Some(task),
    }
}

impl Harness {
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AdminClient) -> T + Send + 'static,
    ) -> T {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(&client))
            .await
            .expect("client thread")
    }

    /// `method path` with `body` as the caller `token` is: status and body.
    async fn exchange(
        &self,
        token: &str,
        method: &'static str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, String) {
        let (token, path) = (token.to_owned(), path.to_owned());
        self.call(move |c| c.exchange(method, &path, body.map(|b| b.to_string()), Some(&token)))
            .await
            .expect("answer")
    }

    /// The listing as the caller `token` reads it.
    async fn listing(&self, token: &str) -> BulletinListing {
        let (status, body) = self.exchange(token, "GET", "/api/v1/bulletins", None).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("a listing")
    }

    async fn submit(&self, id: &str, level: Level, stations: &[&str], seconds: u32) {
        let wav = self.dir.path().join(format!("{id}.wav"));
        // A steady tone (a chirp from 440 Hz to 440 Hz).
        radio_tests::write_chirp(&wav, 440.0, 440.0, seconds as f32);
        let request = BulletinRequest {
            id: id.into(),
            name: format!("Tin {id}"),
            source: SourceSpec::File { path: wav },
            level,
            targets: Targets::Stations(stations.iter().map(|s| (*s).to_owned()).collect()),
            duration: None,
        };
        self.call(move |c| c.submit_bulletin(&request))
            .await
            .expect("submitted");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("endpoint stops")
                .expect("task")
                .expect("serve");
        }
    }
}

fn bulletin<'a>(listing: &'a BulletinListing, id: &str) -> Option<&'a BulletinView> {
    listing.bulletins.iter().find(|b| b.id == id)
}

/// `(station, state)` of bulletin `id` in `listing`.
fn states(listing: &BulletinListing, id: &str) -> Vec<(String, BulletinStateName)> {
    bulletin(listing, id)
        .map(|b| {
            b.stations
                .iter()
                .map(|s| (s.station.clone(), s.state))
                .collect()
        })
        .unwrap_or_default()
}

fn ids(listing: &BulletinListing) -> Vec<&str> {
    listing.bulletins.iter().map(|b| b.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_and_answers_only_its_own_communes_offers() {
    let h = start().await;
    // Long recordings: nothing ends by itself while the test looks.
    h.submit("hop-a", Level::Normal, &["binh-trung", "binh-hai"], 300)
        .await;
    h.submit("hop-b", Level::Normal, &["binh-duong"], 300).await;

    let a = h.listing(&h.operator_a).await;
    assert_eq!(ids(&a), ["hop-a"], "{a:?}");
    assert_eq!(
        states(&a, "hop-a"),
        [("binh-trung".to_owned(), BulletinStateName::Awaiting)],
        "only its own station's state"
    );
    let view = bulletin(&a, "hop-a").expect("hop-a");
    assert_eq!(view.stations[0].name, "Bình Trung");
    assert_eq!(view.level_name, "thường");
    assert_eq!(a.timezone, "Asia/Ho_Chi_Minh");
    let b = h.listing(&h.operator_b).await;
    assert_eq!(ids(&b), ["hop-b"], "{b:?}");
    let all = h.call(|c| c.bulletins(None)).await.expect("listing");
    assert_eq!(ids(&all), ["hop-a", "hop-b"]);
    assert_eq!(
        states(&all, "hop-a"),
        [
            ("binh-trung".to_owned(), BulletinStateName::Awaiting),
            ("binh-hai".to_owned(), BulletinStateName::Awaiting),
        ]
    );
    let only = h
        .call(|c| c.bulletins(Some("binh-duong")))
        .await
        .expect("listing");
    assert_eq!(ids(&only), ["hop-b"]);

    // Another commune's answer is not theirs to give: 403, and nothing changes.
    let trung = serde_json::json!({ "station": "binh-trung" });
    let duong = serde_json::json!({ "station": "binh-duong" });
    for (token, path, body) in [
        (&h.operator_a, "/api/v1/bulletins/hop-b/accept", &duong),
        (&h.operator_a, "/api/v1/bulletins/hop-b/decline", &duong),
        (&h.operator_b, "/api/v1/bulletins/hop-a/accept", &trung),
        (&h.operator_b, "/api/v1/bulletins/hop-a/decline", &trung),
    ] {
        let (status, answer) = h.exchange(token, "POST", path, Some(body.clone())).await;
        assert_eq!(status, 403, "{path}: {answer}");
    }
    assert_eq!(h.call(|c| c.bulletins(None)).await.expect("listing"), all);
    assert_eq!(h.store.audit().len(), 2, "the two submissions only");

    // Accepted at once: it airs at binh-trung, still awaits at binh-hai.
    let (status, answer) = h
        .exchange(
            &h.operator_a,
            "POST",
            "/api/v1/bulletins/hop-a/accept",
            Some(trung.clone()),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let all = h.call(|c| c.bulletins(None)).await.expect("listing");
    assert_eq!(
        states(&all, "hop-a"),
        [
            ("binh-trung".to_owned(), BulletinStateName::Airing),
            ("binh-hai".to_owned(), BulletinStateName::Awaiting),
        ]
    );
    let airing = &bulletin(&all, "hop-a").expect("hop-a").stations[0];
    assert!(
        airing.since.is_some() && airing.since_local.is_some(),
        "{airing:?}"
    );

    // A priority bulletin is shown, not offered: queued behind the recording at binh-trung,
    // airing at once at binh-hai, and no one may decline it.
    h.submit("bao", Level::Priority, &["binh-trung", "binh-hai"], 300)
        .await;
    let a = h.listing(&h.operator_a).await;
    assert_eq!(ids(&a), ["hop-a", "bao"]);
    assert_eq!(
        states(&a, "bao"),
        [("binh-trung".to_owned(), BulletinStateName::Queued)]
    );
    let all = h.call(|c| c.bulletins(None)).await.expect("listing");
    assert_eq!(
        states(&all, "bao"),
        [
            ("binh-trung".to_owned(), BulletinStateName::Queued),
            ("binh-hai".to_owned(), BulletinStateName::Airing),
        ]
    );
    let (status, answer) = h
        .exchange(
            &h.operator_a,
            "POST",
            "/api/v1/bulletins/bao/decline",
            Some(trung.clone()),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer.contains("bản tin ưu tiên/khẩn cấp không thể từ chối"),
        "{answer}"
    );
    assert!(answer.contains("cannot be declined"), "{answer}");
    assert_eq!(
        states(&h.listing(&h.operator_a).await, "bao"),
        [("binh-trung".to_owned(), BulletinStateName::Queued)]
    );

    // Declining what airs stops it there; twice is no error; the reason is listed.
    let reason = serde_json::json!({ "station": "binh-trung", "reason": "trùng lịch họp xã" });
    for _ in 0..2 {
        let (status, answer) = h
            .exchange(
                &h.operator_a,
                "POST",
                "/api/v1/bulletins/hop-a/decline",
                Some(reason.clone()),
            )
            .await;
        assert_eq!(status, 200, "{answer}");
    }
    let a = h.listing(&h.operator_a).await;
    let declined = &bulletin(&a, "hop-a").expect("hop-a").stations[0];
    assert_eq!(declined.state, BulletinStateName::Declined);
    assert_eq!(declined.reason.as_deref(), Some("trùng lịch họp xã"));
    // What it held back now airs.
    assert_eq!(
        states(&a, "bao"),
        [("binh-trung".to_owned(), BulletinStateName::Airing)]
    );
    let (records, _) = h.store.audit().range(0, i64::MAX, 100).expect("audit");
    let declines: Vec<(&str, Option<&str>, bool)> = records
        .iter()
        .filter(|r| r.action == AuditAction::BulletinDecline)
        .map(|r| {
            (
                r.caller.as_str(),
                r.detail.as_deref(),
                r.outcome == Outcome::Done,
            )
        })
        .collect();
    assert_eq!(
        declines,
        [
            (OPERATOR_A, None, false),
            (OPERATOR_A, Some("trùng lịch họp xã"), true),
            (OPERATOR_A, Some("trùng lịch họp xã"), true),
        ]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_air_time_in_the_past_or_malformed_is_refused_and_a_future_one_kept() {
    let h = start().await;
    h.submit("hop", Level::Normal, &["binh-trung"], 60).await;
    let before = h.call(|c| c.bulletins(None)).await.expect("listing");
    for (at, expected) in [
        (
            "2000-01-01T07:00:00+07:00",
            "Giờ phát đã qua — hãy chọn giờ sau",
        ),
        ("25:99", "không hợp lệ"),
        ("tomorrow", "is not an air time"),
    ] {
        let (status, answer) = h
            .exchange(
                &h.operator_a,
                "POST",
                "/api/v1/bulletins/hop/accept",
                Some(serde_json::json!({ "station": "binh-trung", "at": at })),
            )
            .await;
        assert_eq!(status, 400, "{at}: {answer}");
        assert!(answer.contains(expected), "{at}: {answer}");
    }
    assert_eq!(
        h.call(|c| c.bulletins(None)).await.expect("listing"),
        before,
        "nothing changed"
    );

    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    let shown = at.to_string();
    let id = h
        .call(move |c| c.accept_bulletin_at("hop", "binh-trung", Some(&shown)))
        .await
        .expect("accepted");
    assert_eq!(id, "hop");
    let listing = h.call(|c| c.bulletins(None)).await.expect("listing");
    let station = &bulletin(&listing, "hop").expect("hop").stations[0];
    assert_eq!(station.state, BulletinStateName::Accepted);
    assert_eq!(station.at, Some(at));
    assert!(station.at_local.is_some(), "{station:?}");
    let (records, _) = h.store.audit().range(0, i64::MAX, 100).expect("audit");
    let last = records.last().expect("a record");
    assert_eq!(
        (last.action, &last.outcome),
        (AuditAction::BulletinAccept, &Outcome::Done)
    );
    assert_eq!(last.detail, Some(format!("at {at}")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_filters_by_actor_action_station_and_outcome() {
    let h = start().await;
    h.submit("tin", Level::Normal, &["binh-trung", "binh-duong"], 60)
        .await;
    let again = BulletinRequest {
        id: "tin".into(),
        name: "Tin".into(),
        source: SourceSpec::File {
            path: h.dir.path().join("tin.wav"),
        },
        level: Level::Normal,
        targets: Targets::Stations(vec!["binh-hai".into()]),
        duration: None,
    };
    let refused = h.call(move |c| c.submit_bulletin(&again)).await;
    assert!(
        matches!(refused, Err(ClientError::Refused { status: 409, .. })),
        "{refused:?}"
    );
    let (status, answer) = h
        .exchange(
            &h.operator_a,
            "POST",
            "/api/v1/bulletins/tin/accept",
            Some(serde_json::json!({ "station": "binh-trung" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = h
        .exchange(
            &h.operator_b,
            "POST",
            "/api/v1/bulletins/tin/decline",
            Some(serde_json::json!({ "station": "binh-duong" })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");

    let rows = |listing: &AuditListing| -> Vec<(String, AuditAction, bool)> {
        listing
            .records
            .iter()
            .map(|v| {
                let r = &v.record;
                (r.caller.clone(), r.action, r.outcome == Outcome::Done)
            })
            .collect()
    };
    let query = |q: AuditQuery| {
        let client = h.client.clone();
        async move {
            tokio::task::spawn_blocking(move || client.audit_matching(&q))
                .await
                .expect("client thread")
                .expect("audit")
        }
    };
    let district = |action| ("district".to_owned(), action, true);
    let all = query(AuditQuery::default()).await;
    assert_eq!(all.records.len(), 4, "{all:?}");
    assert_eq!(
        rows(
            &query(AuditQuery {
                actor: Some(OPERATOR_A.into()),
                ..AuditQuery::default()
            })
            .await
        ),
        [(OPERATOR_A.to_owned(), AuditAction::BulletinAccept, true)]
    );
    assert_eq!(
        rows(
            &query(AuditQuery {
                action: Some("bulletin-decline".into()),
                ..AuditQuery::default()
            })
            .await
        ),
        [(OPERATOR_B.to_owned(), AuditAction::BulletinDecline, true)]
    );
    // The submission names binh-duong among its targets, the decline names it alone; the
    // refused resubmission was for binh-hai, the acceptance for binh-trung.
    assert_eq!(
        rows(
            &query(AuditQuery {
                station: Some("binh-duong".into()),
                ..AuditQuery::default()
            })
            .await
        ),
        [
            district(AuditAction::BulletinSubmit),
            (OPERATOR_B.to_owned(), AuditAction::BulletinDecline, true)
        ]
    );
    assert_eq!(
        rows(
            &query(AuditQuery {
                outcome: Some("refused".into()),
                ..AuditQuery::default()
            })
            .await
        ),
        [("district".to_owned(), AuditAction::BulletinSubmit, false)]
    );
    assert_eq!(
        rows(
            &query(AuditQuery {
                actor: Some("district".into()),
                outcome: Some("done".into()),
                station: Some("binh-trung".into()),
                ..AuditQuery::default()
            })
            .await
        ),
        [district(AuditAction::BulletinSubmit)]
    );
    assert!(query(AuditQuery {
        actor: Some("can-bo".into()),
        ..AuditQuery::default()
    })
    .await
    .records
    .is_empty());
    for bad in [
        "action=bulletin-eat",
        "outcome=maybe",
        "station=atlantis",
        "who=district",
    ] {
        let path = format!("/api/v1/audit?{bad}");
        let (status, answer) = h
            .call(move |c| c.raw("GET", &path, None))
            .await
            .expect("answer");
        assert_eq!(status, 400, "{bad}: {answer}");
        let name = bad.split('=').next().unwrap_or_default();
        assert!(answer.contains(&format!("`{name}`")), "{bad}: {answer}");
    }
    h.stop().await;
}
