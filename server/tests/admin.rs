//! The admin endpoint in process: a real on-air controller over the 22 Bình Sơn stations, the
//! store in a temporary data directory, HTTP on loopback, and the operator commands' client.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_config::District;
use radio_server::broadcast::on_air::{OnAir, OnAirConfig};
use radio_server::broadcast::on_air::{OnAirStatus, StationStatus};
use radio_server::broadcast::station_output::StationOutput;
use radio_server::ingest::PcmFrame;
use radio_server::operator::admin::{
    serve, AdminState, BulletinRequest, EmergencyRequest, ErrorBody, LiveStart,
};
use radio_server::operator::admin_client::{AdminClient, ClientError};
use radio_server::operator::audit_log::{AuditAction, Outcome};
use radio_server::operator::auth_limiter::AuthLimits;
use radio_server::records::store::Store;
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::{Level, Schedule, ScheduleEntry, SourceSpec, Targets};
use tokio::sync::{mpsc, oneshot};

/// How long a test waits for what the server is expected to do: far longer than it takes, so
/// that only a server that never does it fails, not a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

struct Harness {
    client: AdminClient,
    dir: tempfile::TempDir,
    store: Option<Arc<Store>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    /// Keeps the live input open (a closed one would end the live broadcast).
    _live: Option<mpsc::Sender<Box<PcmFrame>>>,
}

async fn start(with_live_input: bool) -> Harness {
    start_with(with_live_input, &[]).await
}

/// Other tests send wrong tokens on purpose, more than the limiter allows one address;
/// [`failed_authentications_lock_the_address_out_until_the_lockout_ends`] tests the limits.
fn lenient() -> AuthLimits {
    AuthLimits {
        max_failures: 1_000,
        ..AuthLimits::default()
    }
}

async fn start_with(with_live_input: bool, tokens: &[radio_config::AdminTokenSettings]) -> Harness {
    start_limited(with_live_input, tokens, lenient()).await
}

async fn start_limited(
    with_live_input: bool,
    tokens: &[radio_config::AdminTokenSettings],
    limits: AuthLimits,
) -> Harness {
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
    let (live_tx, live_rx) = mpsc::channel(8);
    let on_air = OnAir::spawn(
        outputs,
        ladder,
        OnAirConfig {
            bitrate: 32_000,
            live: with_live_input.then_some(live_rx),
            ..OnAirConfig::default()
        },
    );
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let token = store.admin_token().expect("token");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let state = AdminState::new(on_air, store.clone(), district, schedule)
        .with_tokens(tokens)
        .with_auth_limits(limits);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Harness {
        client: AdminClient::new(addr, &token),
        dir,
        store: Some(store),
        stop: Some(stop),
        task: Some(task),
        _live: with_live_input.then_some(live_tx),
    }
}

impl Harness {
    /// Runs a blocking client call off the runtime's threads.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AdminClient) -> T + Send + 'static,
    ) -> T {
        let client = self.client.clone();
        tokio::task::spawn_blocking(move || f(&client))
            .await
            .expect("client thread")
    }

    async fn status(&self) -> Vec<StationStatus> {
        self.full_status().await.stations
    }

    async fn full_status(&self) -> OnAirStatus {
        // The shape before links and relay streams were added: it still decodes.
        self.call(|c| c.get::<OnAirStatus>("/api/v1/status"))
            .await
            .expect("status")
    }

    /// The ids of the emergencies the status lists, polled until `check` holds.
    async fn emergencies_until(&self, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let ids: Vec<String> = self
                .full_status()
                .await
                .emergencies
                .into_iter()
                .map(|e| e.id)
                .collect();
            if check(&ids) || Instant::now() > deadline {
                return ids;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls the status until `check` holds; the last status either way.
    async fn status_until(&self, check: impl Fn(&[StationStatus]) -> bool) -> Vec<StationStatus> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.status().await;
            if check(&rows) || Instant::now() > deadline {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the endpoint and lets go of the store, so that it can be opened again.
    async fn stop(&mut self) {
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
        self.store = None;
    }

    /// Opens the store again after [`Harness::stop`]. axum's graceful shutdown returns when the
    /// connections have closed, but a connection task may drop its copy of the state (and with
    /// it the store's lock) a moment later on a loaded machine.
    async fn reopen_store(&self) -> Store {
        let deadline = Instant::now() + WAIT;
        loop {
            match Store::open(self.dir.path()) {
                Ok(store) => return store,
                Err(e) if Instant::now() > deadline => panic!("reopen the store: {e:?}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Status and `{ "error" }` of a failed call.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, message }) => (status, message),
        other => panic!("expected an error answer, got {other:?}"),
    }
}

fn level_at<'a>(rows: &'a [StationStatus], station: &str) -> Option<&'a str> {
    rows.iter()
        .find(|r| r.station == station)
        .and_then(|r| r.level.as_deref())
}

fn stations_at(rows: &[StationStatus], level: &str) -> Vec<String> {
    rows.iter()
        .filter(|r| r.level.as_deref() == Some(level))
        .map(|r| r.station.clone())
        .collect()
}

/// A sine tone, 8 kHz mono 16-bit.
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

fn entry(id: &str, toml_body: &str) -> ScheduleEntry {
    toml::from_str(&format!("id = \"{id}\"\nname = \"Mục {id}\"\n{toml_body}")).expect("entry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_token_are_refused() {
    let mut h = start(false).await;
    for (token, expected) in [
        (None, "missing `Authorization: Bearer <token>` header"),
        (Some("0123456789abcdef"), "invalid admin token"),
        (
            Some(""),
            "the Authorization header must be `Bearer <token>`",
        ),
    ] {
        for (method, path) in [
            ("GET", "/api/v1/status"),
            ("POST", "/api/v1/emergency/stop"),
            ("DELETE", "/api/v1/schedule/entries/x"),
            ("GET", "/no/such/route"),
        ] {
            let sent = token.map(str::to_owned);
            let (status, body) = h
                .call(move |c| c.exchange(method, path, None, sent.as_deref()))
                .await
                .expect("answer");
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            let error: ErrorBody = serde_json::from_str(&body).expect("JSON error");
            assert!(error.error.starts_with(expected), "{}", error.error);
            // Anyone who reaches the port gets this: what to do, not where the files are.
            for part in h.dir.path().iter().filter_map(|p| p.to_str()) {
                assert!(
                    part == "/" || !error.error.contains(part),
                    "discloses `{part}` of the data directory: {}",
                    error.error
                );
            }
            assert!(!error.error.contains("admin.token"), "{}", error.error);
            assert!(
                !error.error.contains('/'),
                "no path at all: {}",
                error.error
            );
            assert!(
                error.error.contains("radio-server token"),
                "says how to get a token: {}",
                error.error
            );
        }
    }
    // The right token gets through; an unknown route is then a JSON 404.
    let (status, _) = h
        .call(|c| c.raw("GET", "/api/v1/status", None))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let (status, body) = h
        .call(|c| c.raw("GET", "/api/v1/nothing", None))
        .await
        .expect("answer");
    assert_eq!(status, 404);
    assert!(body.contains("no such endpoint"), "{body}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_every_station() {
    let mut h = start(false).await;
    let rows = h.status().await;
    assert_eq!(rows.len(), 22);
    assert!(rows.iter().any(|r| r.station == "binh-trung"));
    assert!(rows.iter().all(|r| r.item.is_none() && r.level.is_none()));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_airs_at_its_targets_only_until_stopped() {
    let mut h = start(false).await;
    let wav = h.path("bao-so-5.wav");
    write_wav(&wav, 10);
    let request = EmergencyRequest {
        file: Some(wav.clone()),
        targets: Some(Targets::Stations(vec![
            "binh-trung".into(),
            "binh-duong".into(),
        ])),
        repeat: Some(3),
        ..EmergencyRequest::default()
    };
    let id = h
        .call(move |c| c.emergency(&request))
        .await
        .expect("emergency accepted");
    assert!(id.starts_with("khan-cap-"), "{id}");
    let rows = h.status().await;
    let mut airing = stations_at(&rows, "khẩn cấp");
    airing.sort();
    assert_eq!(airing, ["binh-duong", "binh-trung"]);
    let trung = rows
        .iter()
        .find(|r| r.station == "binh-trung")
        .expect("row");
    assert_eq!(trung.name.as_deref(), Some("bao-so-5"));
    assert_eq!(
        trung.item.as_deref(),
        Some(format!("emergency:{id}").as_str())
    );
    assert_eq!(
        rows.iter().filter(|r| r.level.is_none()).count(),
        20,
        "the other stations are untouched"
    );

    // The same id again is a conflict; its own id is needed to stop it.
    let again = EmergencyRequest {
        id: Some(id.clone()),
        file: Some(wav),
        ..EmergencyRequest::default()
    };
    let (status, message) = refused(h.call(move |c| c.emergency(&again)).await);
    assert_eq!(status, 409, "{message}");
    assert!(message.contains(&id), "{message}");
    let (status, message) = refused(h.call(|c| c.stop_emergency("khong-co")).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("khong-co"), "{message}");

    // The status lists it, with what stops it and where it airs.
    let listed = h.full_status().await.emergencies;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].name, "bao-so-5");
    assert_eq!(
        listed[0].targets,
        Targets::Stations(vec!["binh-trung".into(), "binh-duong".into()])
    );
    let mut stations = listed[0].stations.clone();
    stations.sort();
    assert_eq!(stations, ["binh-duong", "binh-trung"]);
    let started: jiff::Timestamp = listed[0].started.parse().expect("RFC 3339");
    let age = jiff::Timestamp::now().duration_since(started);
    assert!(
        age >= jiff::SignedDuration::ZERO && age < jiff::SignedDuration::from_secs(60),
        "started {started}"
    );
    // A second one, elsewhere: both listed, oldest first.
    let fire = h.path("chay-rung.wav");
    write_wav(&fire, 10);
    let second = EmergencyRequest {
        id: Some("chay-rung".into()),
        name: Some("Cháy rừng".into()),
        file: Some(fire),
        targets: Some(Targets::Stations(vec!["binh-hai".into()])),
        ..EmergencyRequest::default()
    };
    h.call(move |c| c.emergency(&second))
        .await
        .expect("second emergency");
    let listed = h.full_status().await.emergencies;
    let names: Vec<(&str, &str)> = listed
        .iter()
        .map(|e| (e.id.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [(id.as_str(), "bao-so-5"), ("chay-rung", "Cháy rừng")]
    );
    assert_eq!(listed[1].stations, ["binh-hai"]);

    let stop_id = id.clone();
    let stopped = h
        .call(move |c| c.stop_emergency(&stop_id))
        .await
        .expect("stopped");
    assert_eq!(stopped, id);
    // Gone from the list once stopped; the other one runs on.
    let ids = h.emergencies_until(|ids| ids.len() == 1).await;
    assert_eq!(ids, ["chay-rung"]);
    h.call(|c| c.stop_emergency("chay-rung"))
        .await
        .expect("stopped");
    let ids = h.emergencies_until(<[String]>::is_empty).await;
    assert!(ids.is_empty(), "{ids:?}");
    let rows = h
        .status_until(|rows| stations_at(rows, "khẩn cấp").is_empty())
        .await;
    assert!(stations_at(&rows, "khẩn cấp").is_empty(), "{rows:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_with_a_missing_or_bad_file_is_refused() {
    let mut h = start(false).await;
    let missing = h.path("khong-co.wav");
    let bad = h.path("hong.wav");
    std::fs::write(
        &bad,
        b"this is not audio, only text pretending to be a WAV file",
    )
    .expect("write");
    for (file, expected) in [
        (missing.clone(), "does not exist"),
        (bad.clone(), "hong.wav"),
        (PathBuf::from("relative.wav"), "absolute path"),
    ] {
        let request = EmergencyRequest {
            file: Some(file.clone()),
            ..EmergencyRequest::default()
        };
        let (status, message) = refused(h.call(move |c| c.emergency(&request)).await);
        assert_eq!(status, 400, "{message}");
        assert!(
            message.contains(&file.display().to_string()),
            "names the file: {message}"
        );
        assert!(message.contains(expected), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
    }
    let (status, message) = refused(h.call(|c| c.emergency(&EmergencyRequest::default())).await);
    assert_eq!(status, 400);
    assert!(message.contains("`file`"), "{message}");
    // A body that is not JSON gets a JSON error too.
    let (status, body) = h
        .call(|c| c.raw("POST", "/api/v1/emergency", Some("{ file: ".into())))
        .await
        .expect("answer");
    assert_eq!(status, 400);
    let error: ErrorBody = serde_json::from_str(&body).expect("JSON error");
    assert!(
        error.error.starts_with("invalid request body"),
        "{}",
        error.error
    );
    let rows = h.status().await;
    assert!(
        stations_at(&rows, "khẩn cấp").is_empty(),
        "nothing went on air"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_changes_are_validated_stored_and_put_on_air() {
    let mut h = start(false).await;
    let schedule = h.call(|c| c.schedule()).await.expect("schedule");
    assert!(schedule.entries.is_empty());

    let le = entry(
        "le-quoc-khanh",
        r#"
        recurrence = { once = { date = "2099-09-02" } }
        start = "07:00"
        end = { at = "08:00" }
        source = { kind = "relay", url = "http://127.0.0.1:9/le.mp3" }
        targets = { stations = ["binh-trung"] }
        "#,
    );
    let added = h
        .call(move |c| c.add_entry(&le))
        .await
        .expect("valid entry");
    assert_eq!(added.id, "le-quoc-khanh");
    assert!(added.overlaps.is_empty(), "{:?}", added.overlaps);

    // A same-level overlap on a shared station names both entries.
    let clash = entry(
        "mit-tinh",
        r#"
        recurrence = { once = { date = "2099-09-02" } }
        start = "07:30"
        end = { duration = "1h" }
        source = { kind = "relay", url = "http://127.0.0.1:9/mt.mp3" }
        targets = "all"
        "#,
    );
    let (status, message) = refused(h.call(move |c| c.add_entry(&clash)).await);
    assert_eq!(status, 400, "{message}");
    assert!(
        message.contains("le-quoc-khanh") && message.contains("mit-tinh"),
        "{message}"
    );
    assert!(message.contains("binh-trung"), "{message}");

    // At another level it is allowed, and reported.
    let priority = entry(
        "mit-tinh",
        r#"
        recurrence = { once = { date = "2099-09-02" } }
        start = "07:30"
        end = { duration = "1h" }
        source = { kind = "relay", url = "http://127.0.0.1:9/mt.mp3" }
        targets = "all"
        level = "priority"
        "#,
    );
    let added = h
        .call(move |c| c.add_entry(&priority))
        .await
        .expect("different levels may overlap");
    assert_eq!(added.overlaps.len(), 1, "{:?}", added.overlaps);
    assert!(
        added.overlaps[0].contains("`mit-tinh`") && added.overlaps[0].contains("`le-quoc-khanh`"),
        "{:?}",
        added.overlaps
    );

    // Duplicate id, missing recording.
    let duplicate = entry(
        "mit-tinh",
        r#"
        recurrence = "daily"
        start = "03:00"
        end = { at = "03:10" }
        source = { kind = "live" }
        targets = "all"
        "#,
    );
    let (status, message) = refused(h.call(move |c| c.add_entry(&duplicate)).await);
    assert_eq!(status, 409, "{message}");
    let missing = h.path("khong-co.mp3");
    let no_file = entry(
        "nhac",
        &format!(
            r#"
            recurrence = "daily"
            start = "03:00"
            end = {{ at = "03:10" }}
            source = {{ kind = "file", path = "{}" }}
            targets = "all"
            "#,
            missing.display()
        ),
    );
    let (status, message) = refused(h.call(move |c| c.add_entry(&no_file)).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("entry `nhac`"), "{message}");
    assert!(message.contains("source.path"), "{message}");
    assert!(message.contains("khong-co.mp3"), "{message}");

    // An entry whose slot is running now goes on air at once (the controller got the schedule).
    let wav = h.path("ca-ngay.wav");
    write_wav(&wav, 20);
    let all_day = entry(
        "ca-ngay",
        &format!(
            r#"
            recurrence = "daily"
            start = "00:00"
            end = {{ duration = "24h" }}
            source = {{ kind = "file", path = "{}" }}
            targets = {{ stations = ["binh-hai"] }}
            "#,
            wav.display()
        ),
    );
    h.call(move |c| c.add_entry(&all_day))
        .await
        .expect("all-day entry");
    let rows = h
        .status_until(|rows| level_at(rows, "binh-hai").is_some())
        .await;
    assert_eq!(level_at(&rows, "binh-hai"), Some("thường"), "{rows:?}");
    let listed = h.call(|c| c.schedule()).await.expect("schedule");
    let ids: Vec<&str> = listed.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["le-quoc-khanh", "mit-tinh", "ca-ngay"]);

    let (status, message) = refused(h.call(|c| c.remove_entry("khong-co")).await);
    assert_eq!(status, 404, "{message}");
    assert!(message.contains("khong-co"), "{message}");
    let removed = h
        .call(|c| c.remove_entry("ca-ngay"))
        .await
        .expect("removed");
    assert_eq!(removed.id, "ca-ngay");
    let rows = h
        .status_until(|rows| level_at(rows, "binh-hai").is_none())
        .await;
    assert_eq!(level_at(&rows, "binh-hai"), None, "{rows:?}");

    // Stored: a new server on this data directory starts with it.
    h.stop().await;
    let store = h.reopen_store().await;
    let stored = store.schedule().expect("readable").expect("stored");
    let ids: Vec<&str> = stored.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["le-quoc-khanh", "mit-tinh"]);
    assert_eq!(stored.entries[1].level, Level::Priority);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_bulletins_air_where_they_are_accepted() {
    let mut h = start(false).await;
    let wav = h.path("tiem-chung.wav");
    write_wav(&wav, 20);
    let bulletin = BulletinRequest {
        id: "tiem-chung".into(),
        name: "Thông báo tiêm chủng".into(),
        source: SourceSpec::File { path: wav.clone() },
        level: Level::Normal,
        targets: Targets::Stations(vec!["binh-trung".into(), "binh-duong".into()]),
        duration: None,
    };
    let submit = bulletin.clone();
    let id = h
        .call(move |c| c.submit_bulletin(&submit))
        .await
        .expect("submitted");
    assert_eq!(id, "tiem-chung");
    let rows = h.status().await;
    assert_eq!(level_at(&rows, "binh-trung"), None, "not accepted yet");
    assert_eq!(level_at(&rows, "binh-duong"), None, "not accepted yet");

    h.call(|c| c.accept_bulletin("tiem-chung", "binh-trung"))
        .await
        .expect("accepted");
    let rows = h
        .status_until(|rows| level_at(rows, "binh-trung").is_some())
        .await;
    assert_eq!(level_at(&rows, "binh-trung"), Some("thường"), "{rows:?}");
    let trung = rows
        .iter()
        .find(|r| r.station == "binh-trung")
        .expect("row");
    assert_eq!(trung.item.as_deref(), Some("bulletin:tiem-chung"));
    assert_eq!(trung.name.as_deref(), Some("Thông báo tiêm chủng"));
    assert_eq!(
        level_at(&rows, "binh-duong"),
        None,
        "binh-duong has not accepted"
    );

    // A station it does not target, a second bulletin with its id, a missing recording, a
    // stream without a duration, an emergency level: all refused with the reason.
    let (status, message) = refused(
        h.call(|c| c.accept_bulletin("tiem-chung", "binh-hai"))
            .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("binh-hai"), "{message}");
    let duplicate = bulletin.clone();
    let (status, message) = refused(h.call(move |c| c.submit_bulletin(&duplicate)).await);
    assert_eq!(status, 409, "{message}");
    let missing = BulletinRequest {
        id: "mat-file".into(),
        source: SourceSpec::File {
            path: h.path("khong-co.wav"),
        },
        ..bulletin.clone()
    };
    let (status, message) = refused(h.call(move |c| c.submit_bulletin(&missing)).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("khong-co.wav"), "{message}");
    let endless = BulletinRequest {
        id: "tiep-song".into(),
        source: SourceSpec::Relay {
            url: "http://127.0.0.1:9/live.mp3".into(),
        },
        ..bulletin.clone()
    };
    let (status, message) = refused(h.call(move |c| c.submit_bulletin(&endless)).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("duration"), "{message}");
    let emergency = BulletinRequest {
        id: "khan".into(),
        level: Level::Emergency,
        ..bulletin
    };
    let (status, message) = refused(h.call(move |c| c.submit_bulletin(&emergency)).await);
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("emergency"), "{message}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_goes_on_air_at_its_targets_and_off_again() {
    let mut h = start(true).await;
    let request = LiveStart {
        id: None,
        targets: Some(Targets::Stations(vec!["binh-chau".into()])),
    };
    let id = h
        .call(move |c| c.live_start(&request))
        .await
        .expect("live started");
    assert_eq!(id, "studio");
    let rows = h.status().await;
    assert_eq!(stations_at(&rows, "trực tiếp"), ["binh-chau"]);
    let (status, message) = refused(h.call(|c| c.live_start(&LiveStart::default())).await);
    assert_eq!(status, 409, "{message}");
    h.call(|c| c.live_stop(None)).await.expect("stopped");
    let rows = h
        .status_until(|rows| stations_at(rows, "trực tiếp").is_empty())
        .await;
    assert!(stations_at(&rows, "trực tiếp").is_empty(), "{rows:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_without_a_live_input_is_reported() {
    let mut h = start(false).await;
    let (status, message) = refused(h.call(|c| c.live_start(&LiveStart::default())).await);
    assert_eq!(status, 503, "{message}");
    assert!(message.contains("no live input"), "{message}");
    let rows = h.status().await;
    assert!(stations_at(&rows, "trực tiếp").is_empty(), "{rows:?}");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_check_their_parameters_the_token_and_answer_in_each_format() {
    use radio_proto::{JournalBatch, JournalEvent, JournalRecord};
    use radio_server::report::{Format, Granularity, ReportQuery, ReportRequest};
    let mut h = start(false).await;
    // Bình Trung's agent ran, linked, from 2025-01-01 00:00 to 12:00 local; nothing since.
    let store = h.store.clone().expect("store");
    let start_ms = 1_735_664_400_000; // 2025-01-01T00:00:00+07:00
    let batch = JournalBatch {
        journal_id: 1,
        records: vec![
            JournalRecord {
                seq: 1,
                unix_ms: start_ms,
                event: JournalEvent::ProcessStart {
                    clean_previous: true,
                    software: "relay-agent/0.1.0".into(),
                },
            },
            JournalRecord {
                seq: 2,
                unix_ms: start_ms,
                event: JournalEvent::LinkUp { server_run: 1 },
            },
            JournalRecord {
                seq: 3,
                unix_ms: start_ms + 12 * 3_600_000,
                event: JournalEvent::ProcessStop,
            },
        ],
    };
    tokio::task::spawn_blocking(move || store.uptime().store_batch("binh-trung", &batch))
        .await
        .expect("thread")
        .expect("stored");

    for (query, parameter) in [
        ("from=2025-01-01", "`to`: missing"),
        (
            "from=2025-02-30&to=2025-03-01",
            "`from`: `2025-02-30` is not a date",
        ),
        (
            "from=2025-03-01&to=2025-02-01",
            "`from`: 2025-03-01 is after `to`",
        ),
        (
            "from=2025-01-01&to=2025-12-31&by=week",
            "`by`: `week` is not one of",
        ),
        (
            "from=2025-01-01&to=2025-12-31&format=xlsx",
            "`format`: `xlsx` is not one of",
        ),
        (
            "from=2025-01-01&to=2025-12-31&form=csv",
            "`form`: unknown parameter",
        ),
        (
            "from=2000-01-01&to=2025-12-31&by=day",
            "`by`: 2000-01-01 to 2025-12-31 by day",
        ),
    ] {
        for kind in ["uptime", "plays"] {
            let path = format!("/api/v1/reports/{kind}?{query}");
            let (status, body) = h
                .call(move |c| c.raw("GET", &path, None))
                .await
                .expect("answer");
            assert_eq!(status, 400, "{kind}?{query}: {body}");
            let error: ErrorBody = serde_json::from_str(&body).expect("JSON error");
            assert!(
                error.error.starts_with(&format!("parameter {parameter}")),
                "{kind}?{query}: {}",
                error.error
            );
            assert!(!error.error.contains('\n'), "{}", error.error);
        }
    }
    for token in [None, Some("0123456789abcdef")] {
        for path in [
            "/api/v1/reports/uptime?from=2025-01-01&to=2025-12-31",
            "/api/v1/reports/plays?from=2025-01-01&to=2025-12-31&format=csv",
            "/api/v1/reports/uptime?by=nonsense",
        ] {
            let (status, body) = h
                .call(move |c| c.exchange("GET", path, None, token))
                .await
                .expect("answer");
            assert_eq!(status, 401, "{path} with {token:?}: {body}");
        }
    }

    // Each format with its content type; the CSV as an attachment with a BOM.
    let token = std::fs::read_to_string(h.path("admin.token")).expect("token");
    let addr = h.client.addr();
    let fetch = move |query: &'static str| {
        let token = token.clone();
        move |_: &AdminClient| {
            let mut response = ureq::get(format!("http://{addr}/api/v1/reports/uptime?{query}"))
                .header("Authorization", &format!("Bearer {}", token.trim()))
                .config()
                .proxy(None)
                .build()
                .call()
                .expect("answer");
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (status, content_type, disposition) = (
                response.status().as_u16(),
                header("content-type"),
                header("content-disposition"),
            );
            let body = response.body_mut().read_to_string().expect("body");
            (status, content_type, disposition, body)
        }
    };
    let (status, content_type, disposition, body) = h
        .call(fetch("from=2024-01-01&to=2025-12-31&format=csv"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/csv; charset=utf-8");
    assert_eq!(
        disposition,
        "attachment; filename=\"uptime-2024-01-01-2025-12-31-year.csv\""
    );
    assert!(body.starts_with('\u{FEFF}'), "{body}");
    assert!(
        // 12 h available out of 2025 (known to its end: off, then unreported).
        body.contains("\r\nBình Trung,binh-trung,—,0.14,0.14\r\n"),
        "{body}"
    );
    let (status, content_type, _, body) =
        h.call(fetch("from=2024-12-31&to=2025-01-01&by=day")).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let value: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(value["stations"][1]["id"], "binh-trung");
    assert_eq!(value["stations"][1]["periods"][0], serde_json::Value::Null);
    let day = &value["stations"][1]["periods"][1];
    assert_eq!(day["availability_pct"].as_f64(), Some(50.0), "{day}");
    assert_eq!(day["outages"].as_u64(), Some(1), "{day}");
    assert_eq!(day["outage_total_s"].as_f64(), Some(43_200.0), "{day}");
    assert_eq!(value["stations"][0]["all"], serde_json::Value::Null);
    let (status, content_type, _, body) = h
        .call(fetch("from=2025-01-01&to=2025-01-31&by=day&format=table"))
        .await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "text/plain; charset=utf-8")
    );
    assert!(body.contains("2025-01-31"), "{body}");

    // The client's methods return the body as the server wrote it.
    let query = ReportQuery {
        request: ReportRequest::new(
            "2025-01-01".parse().expect("date"),
            "2025-12-31".parse().expect("date"),
            Granularity::Month,
        )
        .expect("request"),
        format: Format::Csv,
    };
    let text = h
        .call(move |c| c.report_plays(&query))
        .await
        .expect("plays");
    assert!(text.starts_with('\u{FEFF}'), "{text}");
    assert!(
        text.contains("Bình Trung,binh-trung,Cộng / total,,0,"),
        "{text}"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_stations_and_the_dashboard() {
    let mut h = start(false).await;
    // Data needs the token; the health check and the dashboard's files do not.
    for path in ["/metrics", "/api/v1/stations"] {
        let (status, _) = h
            .call(move |c| c.exchange("GET", path, None, None))
            .await
            .expect("answer");
        assert_eq!(status, 401, "{path} without a token");
    }
    for (path, needle) in [
        ("/health", "\"ok\""),
        ("/", "Truyền thanh thông minh"),
        ("/dashboard.js", "api/v1/stations"),
    ] {
        let (status, body) = h
            .call(move |c| c.exchange("GET", path, None, None))
            .await
            .expect("answer");
        assert_eq!(status, 200, "{path}");
        assert!(body.contains(needle), "{path}: {body:.200}");
    }
    // /metrics is Prometheus text, by a parser: one series per station, none connected here.
    let (status, body) = h
        .call(|c| c.raw("GET", "/metrics", None))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text");
    let connected: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "radio_agent_connected")
        .collect();
    assert_eq!(connected.len(), 22, "{body}");
    assert!(connected
        .iter()
        .all(|s| matches!(s.value, prometheus_parse::Value::Gauge(v) if v == 0.0)));
    let (status, body) = h
        .call(|c| c.raw("GET", "/api/v1/stations", None))
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let stations: Vec<radio_server::operator::admin::StationView> =
        serde_json::from_str(&body).expect("JSON");
    assert_eq!(stations.len(), 22);
    assert_eq!(stations[0].name, "Thị trấn Châu Ổ");
    h.stop().await;
}

/// A token of `role` for the config, and the token itself.
fn role_token(
    name: &str,
    role: radio_config::Role,
    station: Option<&str>,
) -> (radio_config::AdminTokenSettings, String) {
    use sha2::Digest;
    let token = format!("{name}-0123456789abcdef0123456789abcdef");
    let sha256 = sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (
        radio_config::AdminTokenSettings {
            name: name.to_owned(),
            role,
            station: station.map(str::to_owned),
            sha256,
        },
        token,
    )
}

/// An endpoint with two role tokens besides the district's: the operator of binh-trung
/// (`can-bo-binh-trung`) and a viewer (`xem`); their tokens, in that order.
async fn start_with_roles(with_live_input: bool) -> (Harness, String, String) {
    let (operator, operator_token) = role_token(
        "can-bo-binh-trung",
        radio_config::Role::Operator,
        Some("binh-trung"),
    );
    let (viewer, viewer_token) = role_token("xem", radio_config::Role::Viewer, None);
    let h = start_with(with_live_input, &[operator, viewer]).await;
    (h, operator_token, viewer_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_limit_what_a_token_may_do() {
    let (mut h, operator_token, viewer_token) = start_with_roles(false).await;
    let wav = h.path("tin.wav");
    write_wav(&wav, 20);
    let bulletin = BulletinRequest {
        id: "tin-xa".into(),
        name: "Tin xã".into(),
        source: SourceSpec::File { path: wav },
        level: Level::Normal,
        targets: Targets::Stations(vec!["binh-trung".into(), "binh-duong".into()]),
        duration: None,
    };
    h.call(move |c| c.submit_bulletin(&bulletin))
        .await
        .expect("the district submits");
    let call = |token: String, method: &'static str, path: &'static str, body: Option<&str>| {
        let body = body.map(str::to_owned);
        h.call(move |c| c.exchange(method, path, body, Some(&token)))
    };
    // Reading is allowed to both.
    for token in [&operator_token, &viewer_token] {
        let (status, body) = call(token.clone(), "GET", "/api/v1/status", None)
            .await
            .expect("answer");
        assert_eq!(status, 200, "{body}");
    }
    // The operator accepts for its own station, not for another one (403), and cannot start an
    // emergency; the viewer cannot change anything.
    let accept_own = r#"{"station":"binh-trung"}"#;
    let accept_other = r#"{"station":"binh-duong"}"#;
    let (status, body) = call(
        operator_token.clone(),
        "POST",
        "/api/v1/bulletins/tin-xa/accept",
        Some(accept_other),
    )
    .await
    .expect("answer");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("binh-duong"), "{body}");
    let (status, body) = call(
        operator_token.clone(),
        "POST",
        "/api/v1/bulletins/tin-xa/accept",
        Some(accept_own),
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");
    for (token, method, path, body) in [
        (
            &operator_token,
            "POST",
            "/api/v1/emergency",
            Some(r#"{"file":"/x.wav"}"#),
        ),
        (&operator_token, "POST", "/api/v1/live/start", Some("{}")),
        (
            &operator_token,
            "DELETE",
            "/api/v1/schedule/entries/x",
            None,
        ),
        (&viewer_token, "POST", "/api/v1/live/start", Some("{}")),
        (
            &viewer_token,
            "POST",
            "/api/v1/bulletins/tin-xa/accept",
            Some(accept_own),
        ),
    ] {
        let (status, answer) = call(token.clone(), method, path, body)
            .await
            .expect("answer");
        assert_eq!(status, 403, "{method} {path}: {answer}");
    }
    // The operator's acceptance took effect; the refused ones did not.
    let rows = h
        .status_until(|rows| level_at(rows, "binh-trung").is_some())
        .await;
    assert_eq!(level_at(&rows, "binh-duong"), None, "{rows:?}");
    // A wrong token is still 401.
    let (status, _) = call("sai".into(), "GET", "/api/v1/status", None)
        .await
        .expect("answer");
    assert_eq!(status, 401);
    h.stop().await;
}

/// `GET path` with `token` by hand, for the headers: status, `Retry-After` and body.
fn get_with_headers(addr: SocketAddr, path: &str, token: &str) -> (u16, Option<String>, String) {
    let mut response = ureq::get(format!("http://{addr}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .config()
        .proxy(None)
        .http_status_as_error(false)
        .build()
        .call()
        .expect("answer");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().expect("body");
    (status, retry_after, body)
}

fn district_token(h: &Harness) -> String {
    std::fs::read_to_string(h.path("admin.token"))
        .expect("token")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_lock_the_address_out_until_the_lockout_ends() {
    // Long enough that the calls made while locked out all come before its end, however
    // loaded the machine (they take milliseconds).
    let lockout = Duration::from_secs(10);
    let limits = AuthLimits {
        lockout,
        ..AuthLimits::default()
    };
    let mut h = start_limited(false, &[], limits).await;
    let token = district_token(&h);
    let addr = h.client.addr();
    let get = move |token: String| {
        move |_: &AdminClient| get_with_headers(addr, "/api/v1/status", &token)
    };
    let (status, _, body) = h.call(get(token.clone())).await;
    assert_eq!(status, 200, "{body}");
    for n in 1..=limits.max_failures {
        let (status, _, body) = h.call(get(format!("sai-{n}"))).await;
        assert_eq!(status, 401, "wrong token {n}: {body}");
    }
    // Now even the right token is refused, so a brute force cannot tell it hit; the answer
    // says when to come back.
    let (status, retry_after, body) = h.call(get(token.clone())).await;
    assert_eq!(status, 429, "{body}");
    let seconds: u64 = retry_after
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=lockout.as_secs()).contains(&seconds), "{seconds}");
    let error: ErrorBody = serde_json::from_str(&body).expect("JSON error");
    assert!(error.error.contains("127.0.0.1"), "{}", error.error);
    // A change is refused the same way, and nothing is recorded of it.
    let (status, body) = h
        .call(move |c| {
            c.raw(
                "POST",
                "/api/v1/emergency/stop",
                Some(r#"{"id":"x"}"#.into()),
            )
        })
        .await
        .expect("answer");
    assert_eq!(status, 429, "{body}");
    let store = h.store.clone().expect("store");
    assert!(store.audit().is_empty(), "{} records", store.audit().len());
    // Once the lock-out is over, the right token works again.
    // Waits the lock-out out: the condition the next calls are about.
    tokio::time::sleep(lockout).await;
    let deadline = Instant::now() + WAIT;
    let status = loop {
        let (status, _, _) = h.call(get(token.clone())).await;
        if status == 200 || Instant::now() > deadline {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 200);
    h.stop().await;
}

/// Who calls, in the walk over every route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    NoToken,
    WrongToken,
    Viewer,
    /// The operator of binh-trung, acting for binh-trung.
    OperatorOwn,
    /// The same operator, naming binh-duong.
    OperatorOther,
    Admin,
}

/// What the refused calls must leave alone: the audit log, the stored schedule, and what airs.
async fn snapshot(
    h: &Harness,
) -> (
    usize,
    Option<Schedule>,
    Vec<(String, Option<String>)>,
    Vec<String>,
) {
    let store = h.store.clone().expect("store");
    let status = h.full_status().await;
    (
        store.audit().len(),
        store.schedule().expect("schedule"),
        status
            .stations
            .into_iter()
            .map(|s| (s.station, s.item))
            .collect(),
        status.emergencies.into_iter().map(|e| e.id).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_the_role_of_every_caller() {
    use radio_server::operator::admin::{route_table, Access, Verb};
    let (mut h, operator_token, viewer_token) = start_with_roles(true).await;
    let admin_token = district_token(&h);
    let wav = h.path("kiem-tra.wav");
    // Longer than the walk: nothing ends by itself while a refused call is checked.
    write_wav(&wav, 60);
    let wav = wav.display().to_string();
    let stations = |s: &str| serde_json::json!({ "stations": [s] });
    let mut audited = 0;
    for route in route_table() {
        let path = route
            .path
            .replace("{id}", "kiem-tra")
            .replace("{name}", "kiem-tra");
        // A body that would change the air if the caller were allowed (so that a refusal that
        // let it through would show), naming `station` wherever the request names stations.
        let body = |station: &str| -> Option<String> {
            let json = match (route.verb, route.path) {
                (Verb::Get | Verb::Delete, _) => return None,
                (Verb::Post, "/api/v1/live/start") => {
                    serde_json::json!({ "targets": stations(station) })
                }
                (Verb::Post, "/api/v1/live/stop") => serde_json::json!({}),
                (Verb::Post, "/api/v1/emergency") => serde_json::json!({
                    "id": "kiem-tra", "file": wav, "targets": stations(station)
                }),
                (Verb::Post, "/api/v1/emergency/stop") => serde_json::json!({ "id": "kiem-tra" }),
                (Verb::Post, "/api/v1/schedule/entries") => serde_json::json!({
                    "id": "kiem-tra", "name": "Kiểm tra",
                    "recurrence": { "once": { "date": "2099-09-02" } },
                    "start": "07:00", "end": { "at": "08:00" },
                    "source": { "kind": "relay", "url": "http://127.0.0.1:9/kt.mp3" },
                    "targets": stations(station)
                }),
                (Verb::Post, "/api/v1/bulletins") => serde_json::json!({
                    "id": "kiem-tra", "name": "Kiểm tra",
                    "source": { "kind": "file", "path": wav },
                    // Both, so that only the role check keeps the operator from accepting for
                    // binh-duong.
                    "targets": { "stations": ["binh-trung", "binh-duong"] }
                }),
                (
                    Verb::Post,
                    "/api/v1/bulletins/{id}/accept" | "/api/v1/bulletins/{id}/decline",
                ) => {
                    serde_json::json!({ "station": station })
                }
                // Without a session cookie it ends nothing: it is not a change.
                (Verb::Post, "/api/v1/sign-out") => serde_json::json!({}),
                // A token has no password: refused (400) for every caller, nothing changes.
                (Verb::Post, "/api/v1/session/password") => {
                    serde_json::json!({ "current": "mật khẩu kiểm tra", "new": "mật khẩu mới kiểm tra" })
                }
                (Verb::Post, "/api/v1/users") => serde_json::json!({
                    "name": "kiem-tra", "role": "viewer", "password": "mật khẩu kiểm tra"
                }),
                (Verb::Post, "/api/v1/users/{name}/disable" | "/api/v1/users/{name}/enable") => {
                    serde_json::json!({})
                }
                (Verb::Post, "/api/v1/users/{name}/password") => {
                    serde_json::json!({ "password": "mật khẩu mới kiểm tra" })
                }
                (Verb::Post, "/api/v1/users/{name}/role") => serde_json::json!({
                    "role": "operator", "communes": ["binh-trung"]
                }),
                // Not audio: refused (400) after it is audited under the name it was given.
                (Verb::Post, "/api/v1/library") => serde_json::json!({}),
                (Verb::Post, "/api/v1/library/{id}/rename") => {
                    serde_json::json!({ "name": "Kiểm tra" })
                }
                // Empty text: refused (400) after it is audited under the name it was given.
                (Verb::Post, "/api/v1/library/tts") => {
                    serde_json::json!({ "name": "kiem-tra", "text": "" })
                }
                // A preview stores nothing: refused (400), and no change to audit.
                (Verb::Post, "/api/v1/tts/preview") => serde_json::json!({ "text": "" }),
                // Takes no body; the admin's call streams the archive back.
                (Verb::Post, "/api/v1/backup") => serde_json::json!({}),
                (verb, path) => panic!("no test case for {verb:?} {path}: add one"),
            };
            Some(json.to_string())
        };
        let query = match route.path {
            "/api/v1/reports/uptime" | "/api/v1/reports/plays" => "?from=2025-01-01&to=2025-01-31",
            "/api/v1/library" => "?name=kiem-tra",
            _ => "",
        };
        let url = format!("{path}{query}");
        let names_station = body("binh-duong") != body("binh-trung");
        for who in [
            Who::NoToken,
            Who::WrongToken,
            Who::Viewer,
            Who::OperatorOwn,
            Who::OperatorOther,
            Who::Admin,
        ] {
            if who == Who::OperatorOther && !names_station {
                continue;
            }
            let (token, station) = match who {
                Who::NoToken => (None, "binh-trung"),
                Who::WrongToken => (Some("sai-0123456789abcdef".to_owned()), "binh-trung"),
                Who::Viewer => (Some(viewer_token.clone()), "binh-trung"),
                Who::OperatorOwn => (Some(operator_token.clone()), "binh-trung"),
                Who::OperatorOther => (Some(operator_token.clone()), "binh-duong"),
                Who::Admin => (Some(admin_token.clone()), "binh-trung"),
            };
            let expected = match who {
                Who::NoToken | Who::WrongToken => Some(401),
                Who::Viewer => (!route.access.allows(radio_config::Role::Viewer)).then_some(403),
                Who::OperatorOwn => {
                    (!route.access.allows(radio_config::Role::Operator)).then_some(403)
                }
                Who::OperatorOther => Some(403),
                Who::Admin => None,
            };
            let before = snapshot(&h).await;
            let (method, url_sent, body_sent) = (route.verb.as_str(), url.clone(), body(station));
            let (status, answer) = h
                .call(move |c| c.exchange(method, &url_sent, body_sent, token.as_deref()))
                .await
                .expect("answer");
            let call = format!("{method} {url} as {who:?}: {status} {answer:.300}");
            match expected {
                Some(refused) => {
                    assert_eq!(status, refused, "{call}");
                    assert_eq!(
                        snapshot(&h).await,
                        before,
                        "a refused call changed something: {call}"
                    );
                }
                None => {
                    assert!(![401, 403, 429].contains(&status), "{call}");
                    let store = h.store.clone().expect("store");
                    if route.path == "/api/v1/sign-out" {
                        assert_eq!(status, 204, "{call}");
                        assert_eq!(store.audit().len(), audited, "{call}");
                    } else if route.path == "/api/v1/tts/preview" {
                        // Speaking a text to listen to it changes nothing.
                        assert_eq!(status, 400, "{call}");
                        assert_eq!(store.audit().len(), audited, "{call}");
                    } else if route.path == "/api/v1/session/password" {
                        assert_eq!(status, 400, "{call}");
                        assert_eq!(store.audit().len(), audited, "{call}");
                    } else if route.verb != Verb::Get {
                        // Every change that reaches its handler is audited, whatever its outcome.
                        audited += 1;
                        let (records, _) = store.audit().range(0, i64::MAX, 10_000).expect("audit");
                        let last = records.last().expect("an audit record");
                        assert_eq!(records.len(), audited, "{call}");
                        let name = if who == Who::Admin {
                            "district"
                        } else {
                            "can-bo-binh-trung"
                        };
                        assert_eq!(last.caller, name, "{call}");
                        let id = if route.path.starts_with("/api/v1/live/") {
                            "studio"
                        } else if route.path == "/api/v1/backup" {
                            assert_eq!(status, 200, "{call}");
                            "backup"
                        } else {
                            "kiem-tra"
                        };
                        assert_eq!(last.id, id, "{call}");
                    } else {
                        assert_eq!(store.audit().len(), audited, "a read was audited: {call}");
                    }
                }
            }
        }
        // The operator passes the role check only where the table says so.
        assert_eq!(
            route.access.allows(radio_config::Role::Operator),
            matches!(route.access, Access::Everyone | Access::OwnStation),
            "{}",
            route.path
        );
    }
    // The admin's calls did what they say: live, emergency, entry and bulletin came and went.
    assert!(audited >= 9, "{audited}");
    let store = h.store.clone().expect("store");
    let (records, _) = store.audit().range(0, i64::MAX, 10_000).expect("audit");
    let done: Vec<(AuditAction, &str)> = records
        .iter()
        .filter(|r| r.outcome == Outcome::Done)
        .map(|r| (r.action, r.caller.as_str()))
        .collect();
    assert_eq!(
        done,
        [
            (AuditAction::LiveStart, "district"),
            (AuditAction::LiveStop, "district"),
            (AuditAction::EmergencyStart, "district"),
            (AuditAction::EmergencyStop, "district"),
            (AuditAction::ScheduleAdd, "district"),
            (AuditAction::ScheduleRemove, "district"),
            (AuditAction::BulletinSubmit, "district"),
            (AuditAction::BulletinAccept, "can-bo-binh-trung"),
            // Accepting again where it was accepted changes nothing, and is no error.
            (AuditAction::BulletinAccept, "district"),
            // Declining after accepting changes the answer; declining twice is no error.
            (AuditAction::BulletinDecline, "can-bo-binh-trung"),
            (AuditAction::BulletinDecline, "district"),
            (AuditAction::BulletinCancel, "district"),
            (AuditAction::AccountCreate, "district"),
            (AuditAction::AccountDisable, "district"),
            (AuditAction::AccountEnable, "district"),
            (AuditAction::AccountPassword, "district"),
            (AuditAction::AccountRole, "district"),
            (AuditAction::Backup, "district"),
        ],
        "{records:#?}"
    );
    // A removal records the targets the entry had.
    let removed = records
        .iter()
        .find(|r| r.action == AuditAction::ScheduleRemove && r.outcome == Outcome::Done)
        .expect("removal");
    assert_eq!(
        removed.targets,
        Some(Targets::Stations(vec!["binh-trung".into()]))
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_records_who_changed_what_and_how_it_ended() {
    let (mut h, operator_token, viewer_token) = start_with_roles(false).await;
    let wav = h.path("bao.wav");
    write_wav(&wav, 20);
    let emergency = EmergencyRequest {
        id: Some("bao".into()),
        file: Some(wav.clone()),
        targets: Some(Targets::Stations(vec![
            "binh-trung".into(),
            "binh-hai".into(),
        ])),
        ..EmergencyRequest::default()
    };
    let again = emergency.clone();
    h.call(move |c| c.emergency(&emergency))
        .await
        .expect("emergency");
    let (status, _) = refused(h.call(move |c| c.emergency(&again)).await);
    assert_eq!(status, 409);
    h.call(|c| c.stop_emergency("bao")).await.expect("stopped");
    let (status, _) = refused(h.call(|c| c.live_start(&LiveStart::default())).await);
    assert_eq!(status, 503);
    let bulletin = BulletinRequest {
        id: "tin".into(),
        name: "Tin".into(),
        source: SourceSpec::File { path: wav },
        level: Level::Normal,
        targets: Targets::Stations(vec!["binh-trung".into()]),
        duration: None,
    };
    h.call(move |c| c.submit_bulletin(&bulletin))
        .await
        .expect("submitted");
    let as_operator = |method: &'static str, path: &'static str, body: Option<&str>| {
        let (body, token) = (body.map(str::to_owned), operator_token.clone());
        h.call(move |c| c.exchange(method, path, body, Some(&token)))
    };
    let (status, body) = as_operator(
        "POST",
        "/api/v1/bulletins/tin/accept",
        Some(r#"{"station":"binh-trung"}"#),
    )
    .await
    .expect("answer");
    assert_eq!(status, 200, "{body}");

    let listing = h.call(|c| c.audit(None, None)).await.expect("audit");
    assert_eq!(listing.timezone, "Asia/Ho_Chi_Minh");
    let rows: Vec<(&str, AuditAction, &str, Option<u16>)> = listing
        .records
        .iter()
        .map(|v| {
            let r = &v.record;
            let status = match &r.outcome {
                Outcome::Done => None,
                Outcome::Refused { status, .. } => Some(*status),
            };
            (r.caller.as_str(), r.action, r.id.as_str(), status)
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("district", AuditAction::EmergencyStart, "bao", None),
            ("district", AuditAction::EmergencyStart, "bao", Some(409)),
            ("district", AuditAction::EmergencyStop, "bao", None),
            ("district", AuditAction::LiveStart, "studio", Some(503)),
            ("district", AuditAction::BulletinSubmit, "tin", None),
            (
                "can-bo-binh-trung",
                AuditAction::BulletinAccept,
                "tin",
                None
            ),
        ]
    );
    let first = &listing.records[0];
    assert_eq!(
        first.record.targets,
        Some(Targets::Stations(vec![
            "binh-trung".into(),
            "binh-hai".into()
        ]))
    );
    assert!(first.record.source.starts_with("127.0.0.1:"), "{first:?}");
    assert!(first.utc.ends_with('Z'), "{first:?}");
    let utc: jiff::Timestamp = first.utc.parse().expect("RFC 3339");
    assert_eq!(utc.as_millisecond(), first.record.unix_ms);
    let Outcome::Refused { error, .. } = &listing.records[3].record.outcome else {
        panic!("{listing:?}");
    };
    assert!(error.contains("no live input"), "{error}");
    let accept = &listing.records[5].record;
    assert_eq!(accept.role, radio_config::Role::Operator);
    assert_eq!(
        accept.targets,
        Some(Targets::Stations(vec!["binh-trung".into()]))
    );
    assert!(listing
        .records
        .windows(2)
        .all(|w| w[0].record.unix_ms <= w[1].record.unix_ms));

    // Admin and viewer read it; a commune operator does not.
    let viewer_reads = viewer_token.clone();
    let (status, body) = h
        .call(move |c| c.exchange("GET", "/api/v1/audit", None, Some(&viewer_reads)))
        .await
        .expect("answer");
    assert_eq!(status, 200, "{body}");
    let (status, body) = as_operator("GET", "/api/v1/audit", None)
        .await
        .expect("answer");
    assert_eq!(status, 403, "{body}");

    // Days in the district's time, both included.
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(radio_server::schedule::load_timezone("Asia/Ho_Chi_Minh").expect("tz"))
        .date();
    let (yesterday, tomorrow) = (
        today.yesterday().expect("date"),
        today.tomorrow().expect("date"),
    );
    let around = h
        .call(move |c| c.audit(Some(yesterday), Some(tomorrow)))
        .await
        .expect("audit");
    assert_eq!(around.records.len(), 6);
    let past = h
        .call(|c| {
            c.audit(
                Some("2000-01-01".parse().expect("date")),
                Some("2000-12-31".parse().expect("date")),
            )
        })
        .await
        .expect("audit");
    assert!(past.records.is_empty(), "{past:?}");
    for query in ["from=2025-02-30", "form=2025-01-01"] {
        let path = format!("/api/v1/audit?{query}");
        let (status, body) = h
            .call(move |c| c.raw("GET", &path, None))
            .await
            .expect("answer");
        assert_eq!(status, 400, "{query}: {body}");
    }

    // Durable: the records are there after a restart.
    h.stop().await;
    let store = h.reopen_store().await;
    let (stored, truncated) = store.audit().range(0, i64::MAX, 100).expect("audit");
    assert!(!truncated);
    let listed: Vec<_> = listing.records.into_iter().map(|v| v.record).collect();
    assert_eq!(stored, listed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_password_in_the_schedule_is_for_admins_only() {
    let (mut h, operator_token, viewer_token) = start_with_roles(false).await;
    let relay = entry(
        "tinh",
        r#"
        recurrence = { once = { date = "2099-09-02" } }
        start = "05:00"
        end = { at = "07:00" }
        source = { kind = "relay", url = "http://source:hackme@127.0.0.1:9/tinh.mp3" }
        targets = "all"
        "#,
    );
    h.call(move |c| c.add_entry(&relay))
        .await
        .expect("the district adds it");
    let full = h.call(|c| c.schedule()).await.expect("schedule");
    assert!(
        matches!(&full.entries[0].source, SourceSpec::Relay { url } if url.contains("hackme")),
        "the admin reads what it stored: {:?}",
        full.entries[0].source
    );
    for token in [operator_token, viewer_token] {
        let (status, body) = h
            .call(move |c| c.exchange("GET", "/api/v1/schedule", None, Some(&token)))
            .await
            .expect("answer");
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains("hackme"),
            "a reader saw the password: {body}"
        );
        assert!(body.contains("source:***@127.0.0.1:9"), "{body}");
    }
    h.stop().await;
}

/// Plain HTTP from another machine is refused before anything else, whatever it carries (a
/// right token, a password): only the console's TLS listener, which marks its requests, may
/// answer other machines. Driven through the router itself, with the peer address a real
/// listener would give: the tests keep to 127.0.0.1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_answers_only_the_machine_itself() {
    use axum::body::Body;
    use axum::extract::ConnectInfo;
    use radio_server::operator::admin::router;
    use radio_server::operator::https::Transport;
    use tower::ServiceExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let district = District::binh_son();
    let outputs: Vec<Arc<StationOutput>> = district
        .stations
        .iter()
        .map(|s| Arc::new(StationOutput::new(&s.id, 250)))
        .collect();
    let schedule = Schedule::default();
    let scheduler = Scheduler::new(schedule.clone(), &district).expect("scheduler");
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let on_air = OnAir::spawn(outputs, ladder, OnAirConfig::default());
    let store = Arc::new(Store::open(dir.path()).expect("store"));
    let token = store.admin_token().expect("token");
    let app = router(Arc::new(
        AdminState::new(on_air, store.clone(), district, schedule).with_console_port(8443),
    ));
    let ask = |peer: &str, path: &str, method: &str, tls: bool| {
        let mut request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("Authorization", format!("Bearer {token}"))
            .header("Content-Type", "application/json")
            .body(Body::from(if method == "POST" {
                r#"{"name":"admin","password":"a guess of ten"}"#
            } else {
                ""
            }))
            .expect("request");
        let peer: SocketAddr = peer.parse().expect("peer");
        request.extensions_mut().insert(ConnectInfo(peer));
        if tls {
            request.extensions_mut().insert(Transport::Tls);
        }
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await.expect("answer");
            let status = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .expect("body");
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    for peer in [
        "10.0.0.2:50000",
        "192.168.1.9:50000",
        "[::ffff:10.0.0.2]:50000",
    ] {
        for (method, path) in [
            ("GET", "/api/v1/status"),
            ("POST", "/api/v1/sign-in"),
            ("GET", "/"),
            ("GET", "/health"),
        ] {
            let (status, body) = ask(peer, path, method, false).await;
            assert_eq!(status, 403, "{method} {path} from {peer}: {body}");
            assert!(body.contains("https://<this server>:8443/"), "{body}");
        }
        // The same caller over the console's TLS is answered.
        let (status, body) = ask(peer, "/api/v1/status", "GET", true).await;
        assert_eq!(status, 200, "over TLS from {peer}: {body}");
    }
    for peer in ["127.0.0.1:50000", "[::1]:50000"] {
        let (status, body) = ask(peer, "/api/v1/status", "GET", false).await;
        assert_eq!(status, 200, "plain HTTP from {peer}: {body}");
    }
    assert_eq!(
        store.audit().len(),
        0,
        "nothing refused was recorded as a change"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timeline_lays_the_week_out_per_station_for_whoever_may_see_it() {
    let (mut h, operator_token, _) = start_with_roles(false).await;
    let admin_token = district_token(&h);
    // Twice a day for two weeks, at one station; a one-off beyond the week asked for.
    let campaign = entry(
        "tiem-chung",
        r#"
        recurrence = { period = { from = "2099-03-02", until = "2099-03-15" } }
        start = "05:00"
        end = { at = "05:30" }
        source = { kind = "relay", url = "http://127.0.0.1:9/tc.mp3" }
        targets = { stations = ["binh-trung"] }
        "#,
    );
    h.call(move |c| c.add_entry(&campaign))
        .await
        .expect("period entry");
    let evening = entry(
        "toi",
        r#"
        recurrence = { weekly = { days = ["monday"] } }
        start = "17:00"
        end = { at = "18:00" }
        source = { kind = "relay", url = "http://127.0.0.1:9/toi.mp3" }
        targets = "all"
        "#,
    );
    h.call(move |c| c.add_entry(&evening))
        .await
        .expect("weekly entry");

    let addr = h.client.addr();
    let get = |path: &str, token: &str| {
        let (status, _, body) = tokio::task::block_in_place(|| get_with_headers(addr, path, token));
        (status, body)
    };
    // 2099-03-09 is a Monday.
    let (status, body) = get("/api/v1/timeline?from=2099-03-09&days=7", &admin_token);
    assert_eq!(status, 200, "{body}");
    let view: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(view["from"], "2099-03-09");
    assert_eq!(view["until"], "2099-03-16");
    let stations = view["stations"].as_array().expect("stations");
    assert_eq!(stations.len(), District::binh_son().stations.len());
    let planned = |id: &str| -> Vec<(String, String)> {
        stations.iter().find(|s| s["id"] == id).expect("station")["planned"]
            .as_array()
            .expect("planned")
            .iter()
            .map(|p| {
                (
                    p["entry_id"].as_str().expect("entry id").to_owned(),
                    p["start"].as_str().expect("start").to_owned(),
                )
            })
            .collect()
    };
    let trung = planned("binh-trung");
    // Seven mornings of the campaign (Monday 9th to Sunday 15th) and one Monday evening, in
    // UTC (Vietnam is UTC+7).
    assert_eq!(
        trung.iter().filter(|(id, _)| id == "tiem-chung").count(),
        7,
        "{trung:?}"
    );
    assert!(
        trung.contains(&("tiem-chung".into(), "2099-03-08T22:00:00Z".into())),
        "{trung:?}"
    );
    assert!(
        trung.contains(&("toi".into(), "2099-03-09T10:00:00Z".into())),
        "{trung:?}"
    );
    assert_eq!(
        planned("binh-duong"),
        vec![("toi".into(), "2099-03-09T10:00:00Z".into())]
    );
    // The week after the campaign has only the evening.
    let (_, body) = get("/api/v1/timeline?from=2099-03-16&days=7", &admin_token);
    let later: serde_json::Value = serde_json::from_str(&body).expect("json");
    let first = &later["stations"].as_array().expect("stations")[0]["planned"];
    assert!(
        first
            .as_array()
            .expect("planned")
            .iter()
            .all(|p| p["entry_id"] == "toi"),
        "{first}"
    );

    // A commune operator sees its own station only.
    let (status, body) = get("/api/v1/timeline?from=2099-03-09&days=7", &operator_token);
    assert_eq!(status, 200, "{body}");
    let own: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids: Vec<&str> = own["stations"]
        .as_array()
        .expect("stations")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, ["binh-trung"]);

    for bad in [
        "?days=0",
        "?days=32",
        "?from=9-3-2099",
        "?station=binh-trung",
    ] {
        let (status, body) = get(&format!("/api/v1/timeline{bad}"), &admin_token);
        assert_eq!(status, 400, "{bad}: {body}");
    }
    h.stop().await;
}
