//! The local admin endpoint: HTTP with JSON bodies, for the operator commands
//! (`radio-server live|emergency|schedule|status`, see `admin_client.rs`) and later a dashboard.
//!
//! Every route needs `Authorization: Bearer <token>`, the token `radio-server run` writes to
//! `data_dir/admin.token` (mode 0600): whoever can read that file is the district operator.
//! The endpoint speaks plain HTTP and listens on loopback unless the configuration says
//! otherwise (`admin_allow_remote`), so the token never crosses a network in clear text by
//! accident.
//!
//! Routes (v1):
//!
//! | route | body | does |
//! |---|---|---|
//! | `GET /api/v1/status` | – | what every station airs and the emergencies running ([`OnAirStatus`]) |
//! | `GET /api/v1/stations` | – | every station, its agent's link and its clusters ([`StationView`]) |
//! | `POST /api/v1/live/start` | [`LiveStart`] | the live input on air |
//! | `POST /api/v1/live/stop` | [`StopRequest`] | takes it off |
//! | `POST /api/v1/emergency` | [`EmergencyRequest`] | khẩn cấp, at once |
//! | `POST /api/v1/emergency/stop` | [`StopRequest`] | ends it |
//! | `GET /api/v1/schedule` | – | the schedule ([`Schedule`]) |
//! | `POST /api/v1/schedule/entries` | [`ScheduleEntry`] | adds a timed entry |
//! | `DELETE /api/v1/schedule/entries/{id}` | – | removes one |
//! | `POST /api/v1/bulletins` | [`BulletinRequest`] | queues a bulletin |
//! | `POST /api/v1/bulletins/{id}/accept` | [`AcceptRequest`] | a station accepts it |
//! | `GET /api/v1/reports/uptime?from=&to=&by=&format=` | – | the uptime report (`report/`) |
//! | `GET /api/v1/reports/plays?from=&to=&by=&format=` | – | the programmes played |
//!
//! Reports take `from` and `to` (local dates, both included), `by` (`day`, `month`, `year`;
//! default `year`) and `format` (`json` by default, `csv` — UTF-8 with a BOM — or `table`);
//! they answer in that format rather than in JSON, and a bad parameter gets a 400 naming it.
//!
//! Errors are `{ "error": "one line" }` with 400 (bad request, refused by the ladder), 401 (no
//! or wrong token), 404 (unknown entry or route), 409 (id already in use), 503 (the on-air
//! controller has stopped) or 500.

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, FromRequest, Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use radio_config::{AdminTokenSettings, District, Role};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, Mutex};

use crate::on_air::{CommandError, OnAir, OnAirEvent, OnAirStatus};
use crate::pipeline::ProgrammeEncoder;
use crate::report::{self, Format, ReportError, ReportKind, ReportQuery};
use crate::schedule::ladder::ItemRef;
use crate::schedule::scheduler::Scheduler;
use crate::schedule::validate::{check_upstreams, validate, validate_bulletin, Overlap};
use crate::schedule::{
    load_timezone, Bulletin, Level, Schedule, ScheduleEntry, ScheduleError, SourceSpec, Targets,
    DEFAULT_TIMEZONE,
};
use crate::store::Store;

/// Live broadcasts without an id use this one, so `live start` / `live stop` pair up without
/// the operator ever naming it.
pub const DEFAULT_LIVE_ID: &str = "studio";

/// Only decoding is checked before an emergency goes on air; the bitrate is irrelevant to that.
const CHECK_BITRATE: u32 = 32_000;

/// How long `live/start` waits to learn whether the live input opened. Opening it is
/// synchronous in the controller, so the answer normally comes within milliseconds; a station
/// that is under an emergency simply does not start it, and then nothing comes at all.
const LIVE_OPEN_WAIT: Duration = Duration::from_millis(500);

/// What the admin endpoint works on.
#[derive(Debug)]
pub struct AdminState {
    on_air: OnAir,
    store: Arc<Store>,
    district: District,
    /// The schedule on air. Held across a whole change (validate, save, hand to the
    /// controller) so two changes cannot interleave and leave store and air disagreeing.
    schedule: Arc<Mutex<Schedule>>,
    /// Names of the configured upstream servers.
    upstreams: Vec<String>,
    /// The QUIC server, for what its agents report (stations, metrics).
    server: Option<Arc<crate::server::Server>>,
    /// Tokens with roles from the config, with their SHA-256 decoded.
    tokens: Vec<(AdminTokenSettings, [u8; 32])>,
}

/// Who made a request, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `district` for the district's own token, else the config's name.
    pub name: String,
    pub role: Role,
    /// A commune operator's station.
    pub station: Option<String>,
}

impl Caller {
    /// What the role allows, before the handler looks at the request's content: `None` if
    /// allowed, else why not.
    fn refuses(&self, method: &Method, path: &str) -> Option<String> {
        let reads = [
            "/api/v1/status",
            "/api/v1/stations",
            "/api/v1/schedule",
            "/metrics",
        ];
        let is_read = *method == Method::GET
            && (reads.contains(&path) || path.starts_with("/api/v1/reports/"));
        match self.role {
            Role::Admin => None,
            Role::Viewer if *method == Method::GET => None,
            Role::Viewer => Some(format!("`{}` has a viewer's token: read only", self.name)),
            Role::Operator if is_read => None,
            Role::Operator
                if *method == Method::POST
                    && path.starts_with("/api/v1/bulletins/")
                    && path.ends_with("/accept") =>
            {
                None
            }
            Role::Operator => Some(format!(
                "`{}` is the operator of {}: it may read and accept bulletins for its station, \
                 nothing else",
                self.name,
                self.station.as_deref().unwrap_or("a station")
            )),
        }
    }
}

impl AdminState {
    /// `schedule` is the one the controller started with (stored, from a file, or the default).
    pub fn new(on_air: OnAir, store: Arc<Store>, district: District, schedule: Schedule) -> Self {
        AdminState {
            on_air,
            store,
            district,
            schedule: Arc::new(Mutex::new(schedule)),
            upstreams: Vec::new(),
            server: None,
            tokens: Vec::new(),
        }
    }

    /// Accepts the config's role tokens besides the district's own. Entries whose hash is not
    /// 64 hex digits are skipped (the config check refuses them first).
    #[must_use]
    pub fn with_tokens(mut self, tokens: &[AdminTokenSettings]) -> Self {
        self.tokens = tokens
            .iter()
            .filter_map(|t| decode_sha256(&t.sha256).map(|hash| (t.clone(), hash)))
            .collect();
        self
    }

    /// The caller a bearer token identifies, if any. Every configured hash is compared (in
    /// constant time), so the time taken does not tell how close a guess was.
    fn caller(&self, token: &str) -> Option<Caller> {
        if self.store.verify_token(token) {
            return Some(Caller {
                name: "district".to_owned(),
                role: Role::Admin,
                station: None,
            });
        }
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (settings, hash) in &self.tokens {
            if bool::from(given[..].ct_eq(&hash[..])) && found.is_none() {
                found = Some(Caller {
                    name: settings.name.clone(),
                    role: settings.role,
                    station: settings.station.clone(),
                });
            }
        }
        found
    }

    /// The QUIC server whose agents `/api/v1/stations` and `/metrics` report on.
    #[must_use]
    pub fn with_server(mut self, server: Arc<crate::server::Server>) -> Self {
        self.server = Some(server);
        self
    }

    /// The names of the server's `[[upstream]]`s, which schedule entries may air.
    #[must_use]
    pub fn with_upstreams(mut self, names: Vec<String>) -> Self {
        self.upstreams = names;
        self
    }
}

/// `POST /api/v1/live/start`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveStart {
    /// Default [`DEFAULT_LIVE_ID`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Default all stations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
}

/// `POST /api/v1/live/stop` (id defaults to [`DEFAULT_LIVE_ID`]) and
/// `POST /api/v1/emergency/stop` (id required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// `POST /api/v1/emergency`: exactly one of `file` and `url`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyRequest {
    /// Default: generated from the local time (`khan-cap-20250923-140501-3fa2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Default: the file's name, or "Khẩn cấp".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A recording on the server (absolute path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    /// An `http(s)://` stream to relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Default all stations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Targets>,
    /// Times a recording is played before the emergency ends by itself; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat: Option<u32>,
}

/// `POST /api/v1/bulletins`: a [`Bulletin`] without `submitted`, which the server sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulletinRequest {
    pub id: String,
    pub name: String,
    pub source: SourceSpec,
    #[serde(default)]
    pub level: Level,
    pub targets: Targets,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<SignedDuration>,
}

/// `POST /api/v1/bulletins/{id}/accept`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcceptRequest {
    pub station: String,
}

/// The answer to a command: the id it acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    pub id: String,
}

/// The answer to a schedule change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleChanged {
    /// The entry added or removed.
    pub id: String,
    /// Different-level overlaps in the new schedule, one readable line each (allowed: the
    /// higher entry interrupts the lower one).
    pub overlaps: Vec<String>,
}

/// Every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(Arc::new(state));
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The routes, all behind the token check (unknown routes too, so that they reveal nothing).
pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/live/start", post(live_start))
        .route("/api/v1/live/stop", post(live_stop))
        .route("/api/v1/emergency", post(emergency))
        .route("/api/v1/emergency/stop", post(emergency_stop))
        .route("/api/v1/schedule", get(schedule))
        .route("/api/v1/schedule/entries", post(add_entry))
        .route("/api/v1/schedule/entries/{id}", delete(remove_entry))
        .route("/api/v1/bulletins", post(submit_bulletin))
        .route("/api/v1/bulletins/{id}/accept", post(accept_bulletin))
        .route("/api/v1/bulletins/{id}", delete(cancel_bulletin))
        .route("/api/v1/reports/uptime", get(uptime_report))
        .route("/api/v1/reports/plays", get(plays_report))
        .route("/api/v1/stations", get(stations))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        // Added after the token layer: these hold no data.
        .merge(crate::dashboard::routes())
        .route("/health", get(health))
        .with_state(state)
}

/// The 32 bytes of a hex SHA-256.
fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// `GET /health`: the admin endpoint answers (for a supervisor or a load balancer).
async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `GET /metrics`: Prometheus text format (see `metrics.rs`).
async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    let stations = match &state.server {
        Some(server) => crate::metrics::station_metrics(server),
        None => state
            .district
            .stations
            .iter()
            .map(|s| crate::metrics::StationMetrics {
                id: s.id.clone(),
                name: s.name.clone(),
                agent: None,
            })
            .collect(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&stations),
    )
        .into_response()
}

/// One station for the dashboard: who it is and how its agent is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationView {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Every loudspeaker cluster of the station in the district's order, with its live state
    /// (`clusters.rs`), then any cluster the agent watches that the district does not have.
    pub clusters: Vec<crate::clusters::ClusterView>,
    pub connected: bool,
    /// Seconds since the agent's last heartbeat; `None` if none this server run.
    pub heartbeat_age_s: Option<f64>,
    /// The agent's last report: it feeds the transmitter.
    pub on_air: Option<bool>,
}

/// `GET /api/v1/stations`.
async fn stations(State(state): State<Arc<AdminState>>) -> Json<Vec<StationView>> {
    let agents: std::collections::BTreeMap<String, crate::server::AgentSnapshot> = state
        .server
        .as_ref()
        .map(|s| {
            s.agents()
                .into_iter()
                .map(|a| (a.commune.clone(), a))
                .collect()
        })
        .unwrap_or_default();
    Json(
        state
            .district
            .stations
            .iter()
            .map(|s| {
                let agent = agents.get(&s.id);
                StationView {
                    id: s.id.clone(),
                    name: s.name.clone(),
                    kind: format!("{:?}", s.kind).to_lowercase(),
                    clusters: crate::clusters::station_clusters(s, agent.map(|a| &a.clusters)),
                    connected: agent.is_some_and(|a| a.connected),
                    heartbeat_age_s: agent
                        .and_then(|a| a.last_heartbeat_age)
                        .map(|d| d.as_secs_f64()),
                    on_air: agent
                        .and_then(|a| a.last_heartbeat.as_ref())
                        .map(|h| h.on_air),
                }
            })
            .collect(),
    )
}

/// An error answer: status and one line.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("admin: {}", self.message);
        }
        // Clients print the message as their one line of output.
        let error = self.message.replace(['\n', '\r'], " ");
        (self.status, Json(ErrorBody { error })).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the on-air controller has stopped (the server is shutting down)",
            ),
            CommandError::Schedule(e @ ScheduleError::AlreadyActive { .. }) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            CommandError::Schedule(e) => ApiError::bad_request(e.to_string()),
        }
    }
}

/// A JSON body; an empty one reads as `{}` so that commands whose fields are all optional can
/// be sent bare (`curl -X POST …/live/start`). Errors are JSON like every other answer, where
/// axum's own `Json` would answer in plain text.
struct Body<T>(T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        let json: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(json)
            .map(Body)
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
    }
}

async fn require_token(State(state): State<Arc<AdminState>>, req: Request, next: Next) -> Response {
    let header = req.headers().get(header::AUTHORIZATION);
    let token = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let problem = match (header, token) {
        (_, Some(token)) if state.caller(token).is_some() => {
            let Some(caller) = state.caller(token) else {
                return ApiError::internal("token check").into_response();
            };
            if let Some(why) = caller.refuses(req.method(), req.uri().path()) {
                tracing::warn!(
                    caller = %caller.name,
                    method = %req.method(),
                    path = %req.uri().path(),
                    "admin: forbidden: {why}"
                );
                return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
            }
            let mut req = req;
            req.extensions_mut().insert(caller);
            return next.run(req).await;
        }
        (_, Some(_)) => "invalid admin token",
        (Some(_), None) => "the Authorization header must be `Bearer <token>`",
        (None, None) => "missing `Authorization: Bearer <token>` header",
    };
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string())
        .unwrap_or_else(|| "unknown".to_owned());
    tracing::warn!(
        %peer,
        method = %req.method(),
        path = %req.uri().path(),
        "admin: refused: {problem}"
    );
    let message = format!(
        "{problem}; the token is in {} on the server",
        state.store.token_path().display()
    );
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} does not take {method}", uri.path()),
    )
}

async fn status(State(state): State<Arc<AdminState>>) -> Result<Json<OnAirStatus>, ApiError> {
    Ok(Json(state.on_air.status().await?))
}

async fn live_start(
    State(state): State<Arc<AdminState>>,
    Body(request): Body<LiveStart>,
) -> Result<Json<Done>, ApiError> {
    let id = request.id.unwrap_or_else(|| DEFAULT_LIVE_ID.to_owned());
    let targets = request.targets.unwrap_or(Targets::All);
    let mut events = state.on_air.events();
    state.on_air.live(&id, targets).await?;
    // The ladder accepts a live broadcast even when the server has no live input; the
    // controller then ends it at once. Report that, rather than a success nobody hears.
    let item = ItemRef::Live { id: id.clone() };
    if let Some(error) = open_failure(&mut events, &item).await {
        return Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error));
    }
    tracing::info!("admin: live `{id}` started");
    Ok(Json(Done { id }))
}

/// Waits briefly for `item` to start somewhere or fail to open; the failure, if it failed.
async fn open_failure(
    events: &mut broadcast::Receiver<OnAirEvent>,
    item: &ItemRef,
) -> Option<String> {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(OnAirEvent::Started { item: started, .. }) if &started == item => return None,
                Ok(OnAirEvent::PlaybackEnded {
                    item: ended,
                    error: Some(error),
                    ..
                }) if &ended == item => return Some(error),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    };
    tokio::time::timeout(LIVE_OPEN_WAIT, wait)
        .await
        .ok()
        .flatten()
}

async fn live_stop(
    State(state): State<Arc<AdminState>>,
    Body(request): Body<StopRequest>,
) -> Result<Json<Done>, ApiError> {
    let id = request.id.unwrap_or_else(|| DEFAULT_LIVE_ID.to_owned());
    state.on_air.stop_live(&id).await?;
    tracing::info!("admin: live `{id}` stopped");
    Ok(Json(Done { id }))
}

async fn emergency(
    State(state): State<Arc<AdminState>>,
    Body(request): Body<EmergencyRequest>,
) -> Result<Json<Done>, ApiError> {
    let (source, default_name) = match (request.file, request.url) {
        (Some(path), None) => {
            check_recording(&path).await?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .filter(|s| !s.is_empty());
            (SourceSpec::File { path }, stem)
        }
        (None, Some(url)) => (SourceSpec::Relay { url }, None),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give either `file` or `url` for an emergency, not both",
            ))
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "an emergency needs `file` (a recording on the server) or `url` (a stream)",
            ))
        }
    };
    let repeat = request.repeat.unwrap_or(1);
    if repeat == 0 {
        return Err(ApiError::bad_request(
            "field `repeat` must be at least 1 (the number of times the recording is played)",
        ));
    }
    let id = request.id.unwrap_or_else(emergency_id);
    let name = request
        .name
        .or(default_name)
        .unwrap_or_else(|| "Khẩn cấp".to_owned());
    let targets = request.targets.unwrap_or(Targets::All);
    state
        .on_air
        .emergency(&id, &name, source, targets, repeat)
        .await?;
    tracing::warn!("admin: emergency `{id}` ({name}) started");
    Ok(Json(Done { id }))
}

/// Refuses a recording that would fail on air: relative (the server does not share the
/// caller's working directory), missing, or not decodable.
async fn check_recording(path: &Path) -> Result<(), ApiError> {
    if !path.is_absolute() {
        return Err(ApiError::bad_request(format!(
            "file `{}`: give an absolute path (the server does not share your working directory)",
            path.display()
        )));
    }
    if !path.exists() {
        return Err(ApiError::bad_request(format!(
            "file `{}` does not exist on the server",
            path.display()
        )));
    }
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || ProgrammeEncoder::open(&owned, CHECK_BITRATE).map(drop))
        .await
        .map_err(|e| ApiError::internal(format!("checking the recording failed: {e}")))?
        .map_err(|e| ApiError::bad_request(e.to_string()))
}

/// `khan-cap-YYYYMMDD-HHMMSS-xxxx` in district time: readable in logs, sorted by time, and the
/// random tail keeps two emergencies started in the same second apart.
fn emergency_id() -> String {
    let now = Timestamp::now();
    let local = load_timezone(DEFAULT_TIMEZONE)
        .unwrap_or(jiff::tz::TimeZone::UTC)
        .to_datetime(now);
    let tail: u16 = rand::random();
    format!("khan-cap-{}-{tail:04x}", local.strftime("%Y%m%d-%H%M%S"))
}

async fn emergency_stop(
    State(state): State<Arc<AdminState>>,
    Body(request): Body<StopRequest>,
) -> Result<Json<Done>, ApiError> {
    let Some(id) = request.id else {
        return Err(ApiError::bad_request(
            "field `id`: name the emergency to stop (its id was printed when it started)",
        ));
    };
    state.on_air.stop_emergency(&id).await?;
    tracing::warn!("admin: emergency `{id}` stopped");
    Ok(Json(Done { id }))
}

async fn schedule(State(state): State<Arc<AdminState>>) -> Json<Schedule> {
    Json(state.schedule.lock().await.clone())
}

async fn add_entry(
    State(state): State<Arc<AdminState>>,
    Body(entry): Body<ScheduleEntry>,
) -> Result<(StatusCode, Json<ScheduleChanged>), ApiError> {
    let mut current = state.schedule.lock().await;
    if current.entry(&entry.id).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "entry `{}` already exists; remove it first or choose another id",
                entry.id
            ),
        ));
    }
    let id = entry.id.clone();
    // Only the new entry's files are checked: a file of an older entry that has gone missing
    // must not block every other change (including removing that entry).
    let fresh: BTreeSet<PathBuf> = source_paths(&entry.source).into_iter().collect();
    let mut next = current.clone();
    next.entries.push(entry);
    let overlaps = apply(&state, &mut current, next, &fresh).await?;
    tracing::info!("admin: schedule entry `{id}` added");
    Ok((StatusCode::CREATED, Json(ScheduleChanged { id, overlaps })))
}

async fn remove_entry(
    State(state): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<ScheduleChanged>, ApiError> {
    let mut current = state.schedule.lock().await;
    if current.entry(&id).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no schedule entry `{id}`"),
        ));
    }
    let mut next = current.clone();
    next.entries.retain(|e| e.id != id);
    let overlaps = apply(&state, &mut current, next, &BTreeSet::new()).await?;
    tracing::info!("admin: schedule entry `{id}` removed");
    Ok(Json(ScheduleChanged { id, overlaps }))
}

/// Validates `next`, stores it durably, then puts it on air. Stored before it airs: if the
/// server stops in between, it starts with the change the operator was told about.
async fn apply(
    state: &AdminState,
    current: &mut Schedule,
    next: Schedule,
    check_files: &BTreeSet<PathBuf>,
) -> Result<Vec<String>, ApiError> {
    let overlaps = validate(&next, &state.district, &|p| {
        !check_files.contains(p) || p.exists()
    })
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_upstreams(&next, &state.upstreams).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let scheduler = Scheduler::new(next.clone(), &state.district)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let store = state.store.clone();
    let to_save = next.clone();
    tokio::task::spawn_blocking(move || store.save_schedule(&to_save))
        .await
        .map_err(|e| ApiError::internal(format!("saving the schedule failed: {e}")))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    *current = next;
    state.on_air.replace_schedule(scheduler).await?;
    Ok(overlaps.iter().map(describe_overlap).collect())
}

fn source_paths(source: &SourceSpec) -> Vec<PathBuf> {
    match source {
        SourceSpec::File { path } => vec![path.clone()],
        SourceSpec::Playlist { paths } => paths.clone(),
        SourceSpec::Relay { .. } | SourceSpec::Upstream { .. } | SourceSpec::Live => Vec::new(),
    }
}

/// One line an operator can read: who interrupts whom, where and when.
pub fn describe_overlap(overlap: &Overlap) -> String {
    let stations: Vec<&str> = overlap.stations.iter().map(String::as_str).collect();
    let where_ = if stations.len() <= 4 {
        format!("on {}", stations.join(", "))
    } else {
        format!("on {} stations", stations.len())
    };
    let when: Vec<String> = overlap.spans.iter().map(ToString::to_string).collect();
    format!(
        "`{}` ({}) interrupts `{}` ({}) {where_} at {}",
        overlap.higher,
        overlap.higher_level,
        overlap.lower,
        overlap.lower_level,
        when.join("; ")
    )
}

async fn submit_bulletin(
    State(state): State<Arc<AdminState>>,
    Body(request): Body<BulletinRequest>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let bulletin = Bulletin {
        id: request.id,
        name: request.name,
        source: request.source,
        level: request.level,
        targets: request.targets,
        duration: request.duration,
        submitted: Timestamp::now(),
    };
    if !bulletin.source.is_file() && bulletin.duration.is_none() {
        // A stream never ends by itself: without a duration it would hold its stations until
        // the server restarts.
        return Err(ApiError::bad_request(
            ScheduleError::StreamWithoutDuration {
                owner: crate::schedule::Owner::Bulletin(bulletin.id.clone()),
            }
            .to_string(),
        ));
    }
    if let SourceSpec::Upstream { name } = &bulletin.source {
        if !state.upstreams.contains(name) {
            return Err(ApiError::bad_request(format!(
                "bulletin `{}`: field `source.name`: no upstream server is called `{name}` in \
                 the server's config",
                bulletin.id
            )));
        }
    }
    // The ladder checks everything but the files (it never touches the disk); check them here
    // so a missing recording is refused now, not discovered when the bulletin airs.
    {
        let schedule = state.schedule.lock().await;
        validate_bulletin(&bulletin, &state.district, &schedule.groups, &|p| {
            p.exists()
        })
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let id = bulletin.id.clone();
    state.on_air.bulletin(bulletin).await?;
    tracing::info!("admin: bulletin `{id}` submitted");
    Ok((StatusCode::CREATED, Json(Done { id })))
}

async fn cancel_bulletin(
    State(state): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Done>, ApiError> {
    state.on_air.cancel_bulletin(&id).await?;
    tracing::info!("admin: bulletin `{id}` cancelled");
    Ok(Json(Done { id }))
}

async fn accept_bulletin(
    State(state): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
    caller: Option<axum::Extension<Caller>>,
    Body(request): Body<AcceptRequest>,
) -> Result<Json<Done>, ApiError> {
    if let Some(axum::Extension(caller)) = &caller {
        if caller.role == Role::Operator && caller.station.as_deref() != Some(&request.station) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "`{}` is the operator of {}, not of {}",
                    caller.name,
                    caller.station.as_deref().unwrap_or("another station"),
                    request.station
                ),
            ));
        }
    }
    state.on_air.accept(&request.station, &id).await?;
    tracing::info!("admin: bulletin `{id}` accepted at {}", request.station);
    Ok(Json(Done { id }))
}

impl From<ReportError> for ApiError {
    fn from(e: ReportError) -> Self {
        match e {
            ReportError::Parameter { .. } => ApiError::bad_request(e.to_string()),
            ReportError::Timezone { .. } | ReportError::Json(_) => {
                ApiError::internal(e.to_string())
            }
        }
    }
}

/// The query string of a report, as name–value pairs.
type ReportParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

async fn uptime_report(
    State(state): State<Arc<AdminState>>,
    params: ReportParams,
) -> Result<Response, ApiError> {
    make_report(&state, ReportKind::Uptime, params).await
}

async fn plays_report(
    State(state): State<Arc<AdminState>>,
    params: ReportParams,
) -> Result<Response, ApiError> {
    make_report(&state, ReportKind::Plays, params).await
}

/// Reads every station's records and computes the report off the async threads (five years
/// of heartbeats take a while), answering in the format asked for.
async fn make_report(
    state: &AdminState,
    kind: ReportKind,
    params: ReportParams,
) -> Result<Response, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let query = ReportQuery::from_params(&params, Format::Json)?;
    let store = state.store.clone();
    let district = state.district.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<String, ApiError> {
        let now = Timestamp::now();
        let timelines = report::load::timelines(store.uptime(), &district, now.as_millisecond())
            .map_err(|e| ApiError::internal(format!("reading the uptime records: {e}")))?;
        let request = &query.request;
        Ok(match kind {
            ReportKind::Uptime => report::render::uptime(
                &report::uptime_report(&district, &timelines, request, now)?,
                query.format,
            )?,
            ReportKind::Plays => report::render::plays(
                &report::plays_report(&district, &timelines, request, now)?,
                query.format,
            )?,
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("the report failed: {e}")))??;
    let mut response =
        ([(header::CONTENT_TYPE, query.format.content_type())], body).into_response();
    if query.format == Format::Csv {
        let name = format!(
            "attachment; filename=\"{}-{}-{}-{}.{}\"",
            kind.as_str(),
            query.request.from,
            query.request.to,
            query.request.by,
            query.format.extension()
        );
        if let Ok(value) = HeaderValue::from_str(&name) {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    tracing::info!(
        "admin: {} report {} to {} by {} ({})",
        kind.as_str(),
        query.request.from,
        query.request.to,
        query.request.by,
        query.format
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_emergency_ids_are_valid_and_distinct() {
        let a = emergency_id();
        let b = emergency_id();
        assert!(a.starts_with("khan-cap-"), "{a}");
        assert!(
            a.split('-').all(|part| !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
            "{a}"
        );
        assert!(a.len() <= 64);
        // Equal only when the clock second and 16 random bits both coincide.
        assert!(a != b || emergency_id() != a);
    }

    #[test]
    fn ladder_errors_map_to_statuses() {
        let conflict = ApiError::from(CommandError::Schedule(ScheduleError::AlreadyActive {
            owner: crate::schedule::Owner::Emergency("bao".into()),
        }));
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        assert!(conflict.message.contains("bao"));
        let bad = ApiError::from(CommandError::Schedule(
            ScheduleError::UnknownStationCommand {
                station: "atlantis".into(),
            },
        ));
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let stopped = ApiError::from(CommandError::Stopped);
        assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        let err =
            serde_json::from_str::<EmergencyRequest>(r#"{"fiel": "/a.wav"}"#).expect_err("typo");
        assert!(err.to_string().contains("fiel"), "{err}");
        let live: LiveStart =
            serde_json::from_str(r#"{"targets": {"stations": ["binh-trung"]}}"#).unwrap();
        assert_eq!(
            live.targets,
            Some(Targets::Stations(vec!["binh-trung".into()]))
        );
        let live: LiveStart = serde_json::from_str(r#"{"targets": "all"}"#).unwrap();
        assert_eq!(live.targets, Some(Targets::All));
    }
}
