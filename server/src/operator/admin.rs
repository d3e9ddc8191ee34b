//! The admin API: HTTP with JSON bodies, for the operator commands
//! (`radio-server live|emergency|schedule|status|user`, see `admin_client.rs`) and the console.
//!
//! A caller is a bearer token (`Authorization: Bearer <token>`: the district's own in
//! `data_dir/admin.token`, mode 0600, or a `[[admin_token]]` of the config) or a person's
//! console session (the `__Host-radio_session` cookie from `POST /api/v1/sign-in`, with its CSRF
//! token in `X-CSRF-Token` on every change; `account_routes.rs`). The same router is served
//! over plain HTTP on `admin_listen`, which answers only the machine itself, and over HTTPS on
//! `console_listen` (`https.rs`), so that no password, cookie or token crosses a network in
//! clear text.
//!
//! Routes (v1), each with the roles that may call it (`who`: **all** = admin, commune operator
//! and viewer; **oversight** = admin and viewer; **station** = admin, and a commune operator
//! for its own station only; **admin** = the district's token and `admin` tokens). The table is
//! [`route_table`]: a route is added to the router together with its roles, and a route
//! reached without one is refused to everyone but admins.
//!
//! | route | body | who | does |
//! |---|---|---|---|
//! | `GET /api/v1/status` | – | all | what every station airs, its agent's link, the emergencies running and the relay streams' last probes ([`StatusView`]) |
//! | `GET /api/v1/stations` | – | all | every station, its agent's link and its clusters ([`StationView`]) |
//! | `POST /api/v1/live/start` | [`LiveStart`] | admin | the live input on air |
//! | `POST /api/v1/live/stop` | [`StopRequest`] | admin | takes it off |
//! | `POST /api/v1/emergency` | [`EmergencyRequest`] | admin | khẩn cấp, at once |
//! | `POST /api/v1/emergency/stop` | [`StopRequest`] | admin | ends it |
//! | `GET /api/v1/schedule` | – | all | the schedule ([`Schedule`]) |
//! | `POST /api/v1/schedule/entries` | [`ScheduleEntry`] | admin | adds a timed entry |
//! | `DELETE /api/v1/schedule/entries/{id}` | – | admin | removes one |
//! | `GET /api/v1/bulletins?station=` | – | all | the queued bulletins and their state at each station ([`BulletinListing`]); an operator sees its own stations only |
//! | `POST /api/v1/bulletins` | [`BulletinRequest`] | admin | queues a bulletin |
//! | `POST /api/v1/bulletins/{id}/accept` | [`AcceptRequest`] | station | a station accepts it, at once or from a time |
//! | `POST /api/v1/bulletins/{id}/decline` | [`DeclineRequest`] | station | a station declines it |
//! | `DELETE /api/v1/bulletins/{id}` | – | admin | withdraws it everywhere |
//! | `GET /api/v1/reports/uptime?from=&to=&by=&format=` | – | all | the uptime report (`report/`) |
//! | `GET /api/v1/reports/plays?from=&to=&by=&format=` | – | all | the programmes played |
//! | `GET /api/v1/audit?from=&to=&actor=&action=&station=&outcome=` | – | oversight | the audit log ([`AuditListing`]) |
//! | `GET /api/v1/session` | – | all | who the caller is (`account_routes.rs`) |
//! | `POST /api/v1/sign-out` | – | all | ends the cookie's session |
//! | `POST /api/v1/session/password` | `{current, new}` | all, with a session | changes the caller's own password |
//! | `GET /api/v1/users`, `POST /api/v1/users`, `POST /api/v1/users/{name}/disable`, `…/enable`, `…/password`, `…/role` | see `account_routes.rs` | admin | the console's accounts |
//! | `GET /api/v1/library` | – | all | the audio library ([`LibraryItem`](crate::library::LibraryItem)s, `library_routes.rs`) |
//! | `POST /api/v1/library?name=` | the file's bytes; header `x-file-name` | admin | uploads a recording (checked, 201 with the item) |
//! | `GET /api/v1/library/{id}/audio` | – | all | the recording as uploaded (`Range` honoured) |
//! | `POST /api/v1/library/{id}/rename` | `{name}` | admin | another display name |
//! | `DELETE /api/v1/library/{id}` | – | admin | removes it (409 while anything on air or scheduled plays it) |
//! | `GET /api/v1/tts` | – | all | the text-to-speech engine and its limits (`tts_routes.rs`) |
//! | `POST /api/v1/tts/preview` | `{text, speed?}` | admin | the text spoken, as audio (`audio/wav`), not stored |
//! | `POST /api/v1/library/tts` | `{name, text, speed?}` | admin | the text spoken and kept as a library item (checked, 201 with the item) |
//! | `POST /api/v1/backup` | – | admin | the data directory's archive, streamed (`backup_routes.rs`) |
//! | `GET /metrics` | – | all | Prometheus text (`metrics.rs`) |
//!
//! `/health` and the console's files (`/`, `/dashboard.js`, …) answer without a token: they
//! hold no data. `POST /api/v1/sign-in` takes a name and password instead.
//!
//! Reports take `from` and `to` (local dates, both included), `by` (`day`, `month`, `year`;
//! default `year`) and `format` (`json` by default, `csv` — UTF-8 with a BOM — or `table`);
//! they answer in that format rather than in JSON, and a bad parameter gets a 400 naming it.
//! The audit log takes `from` and `to` the same way, both optional (default: all of it), and
//! filters, each repeatable (a record matches one of the values given): `actor` (the caller's
//! name, exact), `action` (as the log writes it, e.g. `bulletin-accept`), `station` (records
//! whose targets include the station) and `outcome` (`done` or `refused`).
//!
//! Commune operators read what every role reads, district-wide: what airs at the neighbouring
//! communes (an emergency there, say) is theirs to know, and the reports' district rows only
//! mean something over the whole district. They may not read the audit log, which names every
//! caller and address in the district.
//!
//! Every on-air change asked by a caller its role allows (live, emergency, schedule entries,
//! bulletins) is recorded in the audit log (`audit_log.rs`) with its outcome — done, or the
//! handler's refusal — before the answer is sent, and logged at info level with the target
//! `audit`. A body that is not valid JSON of the request is no change asked. Requests refused
//! for who asks (401, 403, 429) change nothing and go to the tracing log only, with the
//! source address.
//!
//! Failed authentications are limited per source address (`auth_limiter.rs`): after 10 within
//! 60 s, every request from that address gets 429 for 60 s, even with a right token.
//!
//! Errors are `{ "error": "one line" }` with 400 (bad request, refused by the ladder), 401 (no
//! or wrong token), 403 (the token's role does not allow it; the message says why), 404
//! (unknown entry or route), 405 (the route does not take that method), 409 (id already in
//! use), 429 (too many failed authentications from this address; `Retry-After` says in how
//! many seconds to try again), 503 (the on-air controller has stopped, or no live input) or 500.
//! Refusals meant for the console's staff (the library's and text-to-speech's) also carry
//! `"message_vi"`: the same in Vietnamese, saying what to do; `error` then starts with it too, so
//! clients that show only `error` show it (413: an upload over `library_max_upload_mb`; 504: the
//! speech engine past `tts_timeout_secs`).

use std::collections::BTreeSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{
    ConnectInfo, Extension, FromRequest, MatchedPath, Path as UrlPath, Query, Request, State,
};
use axum::handler::Handler;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, on, MethodFilter};
use axum::{Json, Router};
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use radio_config::{AdminTokenSettings, District, Role};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, Mutex};

use crate::broadcast::on_air::{
    CommandError, EmergencyStatus, OnAir, OnAirEvent, OnAirStatus, StationStatus,
};
use crate::ingest::relay_probe::{RelayProbes, RelayStreamStatus};
use crate::operator::audit_log::{AuditAction, AuditListing, AuditRecord, Outcome};
use crate::operator::auth_limiter::{AuthLimiter, AuthLimits, Verdict};
use crate::operator::https::{plain_http_allowed, Transport};
use crate::operator::{
    account_routes, backup_routes, library_routes, live_routes, openapi, timeline_routes,
    tts_routes,
};
use crate::pipeline::ProgrammeEncoder;
use crate::records::store::Store;
use crate::report::{self, Format, ReportError, ReportKind, ReportQuery};
use crate::schedule::ladder::{BulletinState, ItemRef};
use crate::schedule::scheduler::Scheduler;
use crate::schedule::validate::{
    check_not_past, check_upstreams, validate, validate_bulletin, Overlap,
};
use crate::schedule::{
    load_timezone, Bulletin, Groups, Level, Schedule, ScheduleEntry, ScheduleError, SourceSpec,
    Targets, DEFAULT_TIMEZONE,
};

/// Live broadcasts without an id use this one, so `live start` / `live stop` pair up without
/// the operator ever naming it.
pub const DEFAULT_LIVE_ID: &str = "studio";

/// How many times an emergency plays its recording when the request does not say.
pub const DEFAULT_EMERGENCY_REPEAT: u32 = 1;

/// Only decoding is checked before an emergency goes on air; the bitrate is irrelevant to that.
const CHECK_BITRATE: u32 = 32_000;

/// How long `live/start` waits to learn whether the live input opened. Opening it is
/// synchronous in the controller, so the answer normally comes within milliseconds; a station
/// that is under an emergency simply does not start it, and then nothing comes at all.
const LIVE_OPEN_WAIT: Duration = Duration::from_millis(500);

/// Most audit records in one answer: years of a district's changes, a few megabytes of JSON
/// (under the 10 MB an answer may have for the operator commands).
const MAX_AUDIT_RECORDS: usize = 10_000;

/// How to get a token, after every 401. The `radio-server` operator commands read the district
/// token from the data directory themselves; anyone else needs one made for them.
pub const TOKEN_HELP: &str = "ask the server's administrator for a token (`radio-server token` \
     makes one with a role); on the server machine the operator commands (`radio-server status`, \
     `emergency`, `live`, `schedule`, `report`...) read it themselves";

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
    server: Option<Arc<crate::link::server::Server>>,
    /// The schedule's relay streams, as last probed.
    relay_probes: Option<RelayProbes>,
    /// Tokens with roles from the config, with their SHA-256 decoded.
    tokens: Vec<(AdminTokenSettings, [u8; 32])>,
    /// Failed authentications per source address. A plain mutex: held for a table lookup,
    /// never across an await.
    limiter: std::sync::Mutex<AuthLimiter>,
    /// The console's HTTPS port, if it listens.
    console_port: Option<u16>,
    /// Largest library upload, in bytes (`library_max_upload_mb`).
    library_max_upload: u64,
    /// Broadcasting from the console, where the live input allows it.
    console_live: Option<Arc<crate::broadcast::console_live::ConsoleLive>>,
    /// The text-to-speech engine (`tts_command`, `tts_timeout_secs`, `tts_max_chars`).
    tts: crate::library::TtsSettings,
}

/// Who made a request, as its token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `district` for the district's own token, else the config's name.
    pub name: String,
    pub role: Role,
    /// A commune operator's stations.
    pub stations: Vec<String>,
}

impl Caller {
    /// Whether the role may call a route with `access` (`None`: a route without a role
    /// decision, which only admins may call): `None` if allowed, else why not.
    fn refuses(&self, access: Option<Access>) -> Option<String> {
        let allowed = match access {
            Some(access) => access.allows(self.role),
            None => self.role == Role::Admin,
        };
        (!allowed).then(|| self.limits())
    }

    /// Whether the caller may act for `station` (on a route of [`Access::OwnStation`]): `None`
    /// if so, else why not.
    pub(crate) fn refuses_station(&self, station: &str) -> Option<String> {
        match self.role {
            Role::Admin => None,
            Role::Operator if self.stations.iter().any(|s| s == station) => None,
            Role::Operator => Some(format!(
                "`{}` is the operator of {}, not of {station}",
                self.name,
                self.operated(),
            )),
            Role::Viewer => Some(self.limits()),
        }
    }

    /// What the role may do, as a refusal says it.
    fn limits(&self) -> String {
        match self.role {
            Role::Admin => format!("`{}` may not call this route", self.name),
            Role::Viewer => format!("`{}` has a viewer's token: read only", self.name),
            Role::Operator => format!(
                "`{}` is the operator of {}: it may read the status, schedule and reports and \
                 list, accept and decline bulletins for its station, nothing else",
                self.name,
                self.operated()
            ),
        }
    }

    /// An operator's stations, as a refusal names them.
    fn operated(&self) -> String {
        if self.stations.is_empty() {
            "no station".to_owned()
        } else {
            self.stations.join(", ")
        }
    }
}

/// Who may call a route. Each route is added to the router with one ([`route_table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Every role: what the district airs, its schedule and reports.
    Everyone,
    /// Admins and viewers: the audit log names every caller and address in the district.
    Oversight,
    /// Admins, and a commune operator for its own station: the handler checks the station the
    /// request names ([`Caller::refuses_station`]).
    OwnStation,
    /// The district's admins.
    Admin,
}

impl Access {
    /// Whether `role` passes the role check (an operator's station is checked afterwards).
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Everyone => true,
            Access::Oversight => role != Role::Operator,
            Access::OwnStation => role != Role::Viewer,
            Access::Admin => role == Role::Admin,
        }
    }
}

/// The HTTP methods the API uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "GET",
            Verb::Post => "POST",
            Verb::Delete => "DELETE",
        }
    }

    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// One route and who may call it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutePolicy {
    pub verb: Verb,
    /// axum's pattern, e.g. `/api/v1/bulletins/{id}/accept`.
    pub path: &'static str,
    pub access: Access,
}

/// The routes behind the token check, built together with their roles: [`Routes::add`] is the
/// only way a route gets in, and it takes the roles.
struct Routes {
    router: Router<Arc<AdminState>>,
    table: Vec<RoutePolicy>,
}

impl Routes {
    fn add<H, T>(mut self, verb: Verb, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Arc<AdminState>>,
        T: 'static,
    {
        self.router = self.router.route(path, on(verb.filter(), handler));
        self.table.push(RoutePolicy { verb, path, access });
        self
    }
}

/// Every route with a token, and the roles that may call it.
fn routes() -> Routes {
    use Access::{Admin, Everyone, Oversight, OwnStation};
    use Verb::{Delete, Get, Post};
    Routes {
        router: Router::new(),
        table: Vec::new(),
    }
    .add(Get, "/api/v1/status", Everyone, status)
    .add(Get, "/api/v1/stations", Everyone, stations)
    .add(Post, "/api/v1/live/start", Admin, live_start)
    .add(Post, "/api/v1/live/stop", Admin, live_stop)
    .add(
        Get,
        "/api/v1/live/console",
        OwnStation,
        live_routes::console,
    )
    .add(Post, "/api/v1/emergency", Admin, emergency)
    .add(Post, "/api/v1/emergency/stop", Admin, emergency_stop)
    .add(Get, "/api/v1/schedule", Everyone, schedule)
    .add(Get, "/api/v1/timeline", Everyone, timeline_routes::timeline)
    .add(Post, "/api/v1/schedule/entries", Admin, add_entry)
    .add(Delete, "/api/v1/schedule/entries/{id}", Admin, remove_entry)
    .add(Get, "/api/v1/bulletins", Everyone, list_bulletins)
    .add(Post, "/api/v1/bulletins", Admin, submit_bulletin)
    .add(
        Post,
        "/api/v1/bulletins/{id}/accept",
        OwnStation,
        accept_bulletin,
    )
    .add(
        Post,
        "/api/v1/bulletins/{id}/decline",
        OwnStation,
        decline_bulletin,
    )
    .add(Delete, "/api/v1/bulletins/{id}", Admin, cancel_bulletin)
    .add(Get, "/api/v1/reports/uptime", Everyone, uptime_report)
    .add(Get, "/api/v1/reports/plays", Everyone, plays_report)
    .add(Get, "/api/v1/audit", Oversight, audit_log)
    .add(Get, "/api/v1/session", Everyone, account_routes::session)
    .add(Post, "/api/v1/sign-out", Everyone, account_routes::sign_out)
    .add(
        Post,
        "/api/v1/session/password",
        Everyone,
        account_routes::own_password,
    )
    .add(Get, "/api/v1/users", Admin, account_routes::list)
    .add(Post, "/api/v1/users", Admin, account_routes::create)
    .add(
        Post,
        "/api/v1/users/{name}/disable",
        Admin,
        account_routes::disable,
    )
    .add(
        Post,
        "/api/v1/users/{name}/enable",
        Admin,
        account_routes::enable,
    )
    .add(
        Post,
        "/api/v1/users/{name}/password",
        Admin,
        account_routes::password,
    )
    .add(
        Post,
        "/api/v1/users/{name}/role",
        Admin,
        account_routes::role,
    )
    .add(Get, "/api/v1/openapi.json", Everyone, openapi::openapi)
    .add(Get, "/api/v1/library", Everyone, library_routes::list)
    .add(Post, "/api/v1/library", Admin, library_routes::upload)
    .add(
        Get,
        "/api/v1/library/{id}/audio",
        Everyone,
        library_routes::audio,
    )
    .add(
        Post,
        "/api/v1/library/{id}/rename",
        Admin,
        library_routes::rename,
    )
    .add(
        Delete,
        "/api/v1/library/{id}",
        Admin,
        library_routes::delete,
    )
    .add(Post, "/api/v1/library/tts", Admin, tts_routes::save)
    .add(Get, "/api/v1/tts", Everyone, tts_routes::info)
    .add(Post, "/api/v1/tts/preview", Admin, tts_routes::preview)
    .add(Post, "/api/v1/backup", Admin, backup_routes::backup)
    .add(Get, "/metrics", Everyone, metrics)
}

/// Every route behind the token check with the roles that may call it, in the router's
/// order (for tests that walk them all, and for documentation).
pub fn route_table() -> Vec<RoutePolicy> {
    routes().table
}

/// Who made a request and from where: what the audit log records of it.
#[derive(Debug, Clone)]
pub(crate) struct Actor {
    pub(crate) caller: Caller,
    /// The peer's address and port.
    pub(crate) source: String,
    /// The CSRF token of the console session the request came with, if it came with one.
    pub(crate) csrf: Option<String>,
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
            relay_probes: None,
            tokens: Vec::new(),
            limiter: std::sync::Mutex::new(AuthLimiter::new(AuthLimits::default())),
            console_port: None,
            library_max_upload: radio_config::DEFAULT_LIBRARY_MAX_UPLOAD_MB * 1024 * 1024,
            console_live: None,
            tts: crate::library::TtsSettings::default(),
        }
    }

    /// Lets people go live from the console ([`crate::broadcast::live_input::Studio::console`]).
    #[must_use]
    pub fn with_console_live(
        mut self,
        console_live: Option<Arc<crate::broadcast::console_live::ConsoleLive>>,
    ) -> Self {
        self.console_live = console_live;
        self
    }

    /// Broadcasting from the console, if this server allows it.
    pub(crate) fn console_live(&self) -> Option<&Arc<crate::broadcast::console_live::ConsoleLive>> {
        self.console_live.as_ref()
    }

    /// The on-air controller.
    pub(crate) fn on_air(&self) -> &OnAir {
        &self.on_air
    }

    /// The schedule on air, locked across a change (see the field).
    pub(crate) fn schedule_lock(&self) -> &Mutex<Schedule> {
        &self.schedule
    }

    /// Largest library upload, in bytes.
    pub(crate) fn library_max_upload(&self) -> u64 {
        self.library_max_upload
    }

    /// The config's `library_max_upload_mb`.
    #[must_use]
    pub fn with_library_max_upload_mb(mut self, mb: u64) -> Self {
        self.library_max_upload = mb.saturating_mul(1024 * 1024);
        self
    }

    /// The config's text-to-speech settings (`tts_command`, `tts_timeout_secs`,
    /// `tts_max_chars`); the engine's output limit is the library's upload limit whatever
    /// `settings` says.
    #[must_use]
    pub fn with_tts(mut self, settings: crate::library::TtsSettings) -> Self {
        self.tts = settings;
        self
    }

    /// How text is spoken, its output bounded by the upload limit.
    pub(crate) fn tts_settings(&self) -> crate::library::TtsSettings {
        crate::library::TtsSettings {
            max_output_bytes: self.library_max_upload,
            ..self.tts.clone()
        }
    }

    /// The server's store.
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The district the server serves.
    pub(crate) fn district(&self) -> &District {
        &self.district
    }

    /// The store, for work moved off the async threads.
    pub(crate) fn store_handle(&self) -> Arc<Store> {
        self.store.clone()
    }

    /// The schedule as it is now.
    pub(crate) async fn schedule_snapshot(&self) -> Schedule {
        self.schedule.lock().await.clone()
    }

    /// Shows the relay streams' probes in the status.
    #[must_use]
    pub fn with_relay_probes(mut self, probes: RelayProbes) -> Self {
        self.relay_probes = Some(probes);
        self
    }

    /// The status as the API answers it: what airs, with each station's link.
    fn status_view(&self, on_air: OnAirStatus) -> StatusView {
        let agents: std::collections::BTreeMap<String, crate::link::server::AgentSnapshot> = self
            .server
            .as_ref()
            .map(|s| {
                s.agents()
                    .into_iter()
                    .map(|a| (a.commune.clone(), a))
                    .collect()
            })
            .unwrap_or_default();
        let stations: Vec<StationRow> = on_air
            .stations
            .into_iter()
            .map(|station| {
                let agent = agents.get(&station.station);
                let link = match agent {
                    Some(a) if a.connected => Link::Up,
                    Some(a) if a.sessions > 0 => Link::Down,
                    _ => Link::Never,
                };
                StationRow {
                    link_since: agent.and_then(|a| a.link_since),
                    link,
                    station,
                }
            })
            .collect();
        StatusView {
            heard: stations
                .iter()
                .filter(|r| r.station.item.is_some() && r.link == Link::Up)
                .count(),
            without_agent: stations.iter().filter(|r| r.link != Link::Up).count(),
            stations,
            emergencies: on_air.emergencies,
            relay_streams: self
                .relay_probes
                .as_ref()
                .map(RelayProbes::snapshot)
                .unwrap_or_default(),
            upstreams: self.upstreams.clone(),
        }
    }

    /// Other limits on failed authentications than [`AuthLimits::default`] (tests use short
    /// lock-outs).
    #[must_use]
    pub fn with_auth_limits(mut self, limits: AuthLimits) -> Self {
        self.limiter = std::sync::Mutex::new(AuthLimiter::new(limits));
        self
    }

    /// The limiter, also after a thread panicked holding it: its table stays consistent
    /// (every update is a few field writes), and refusing every caller would be worse.
    fn limiter(&self) -> std::sync::MutexGuard<'_, AuthLimiter> {
        self.limiter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records an on-air change with the outcome its handler came to, durably, before the
    /// answer goes out (and logs it, see [`AuditLog::append`](crate::operator::audit_log::AuditLog::append));
    /// `result` is passed through. A record that cannot be stored is logged
    /// as an error, and the answer still tells the truth about the air.
    pub(crate) async fn audit<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        id: &str,
        targets: Option<Targets>,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        self.audit_with(actor, action, id, targets, None, result)
            .await
    }

    /// [`AdminState::audit`] with the record's `detail`.
    pub(crate) async fn audit_with<T>(
        &self,
        actor: &Actor,
        action: AuditAction,
        id: &str,
        targets: Option<Targets>,
        detail: Option<String>,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let outcome = match &result {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Refused {
                status: e.status.as_u16(),
                error: e.message.replace(['\n', '\r'], " "),
            },
        };
        let record = AuditRecord {
            unix_ms: Timestamp::now().as_millisecond(),
            caller: actor.caller.name.clone(),
            role: actor.caller.role,
            source: actor.source.clone(),
            action,
            id: id.to_owned(),
            targets,
            outcome,
            detail,
        };
        let log = self.store.audit().clone();
        match tokio::task::spawn_blocking(move || log.append(&record)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!("admin: {} not audited: {e}", action.as_str()),
            Err(e) => tracing::error!("admin: {} not audited: {e}", action.as_str()),
        }
        result
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
                stations: Vec::new(),
            });
        }
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (settings, hash) in &self.tokens {
            if bool::from(given[..].ct_eq(&hash[..])) && found.is_none() {
                found = Some(Caller {
                    name: settings.name.clone(),
                    role: settings.role,
                    stations: settings.station.iter().cloned().collect(),
                });
            }
        }
        found
    }

    /// The QUIC server whose agents `/api/v1/stations` and `/metrics` report on.
    #[must_use]
    pub fn with_server(mut self, server: Arc<crate::link::server::Server>) -> Self {
        self.server = Some(server);
        self
    }

    /// The console's HTTPS port, which a refusal of plain HTTP points to.
    #[must_use]
    pub fn with_console_port(mut self, port: u16) -> Self {
        self.console_port = Some(port);
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
    /// Not before this time: `"HH:MM"` (today, in the schedule's time zone) or an RFC 3339
    /// timestamp. It airs at the first opportunity from then on. Default: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// `POST /api/v1/bulletins/{id}/decline`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeclineRequest {
    pub station: String,
    /// Why, for the district (at most [`MAX_REASON_CHARS`] characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Longest reason a refusal may give: a sentence or two for the district, not a document.
pub const MAX_REASON_CHARS: usize = 500;

/// `GET /api/v1/bulletins`: the queued bulletins, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinListing {
    /// The zone of the `*_local` times (the schedule's).
    pub timezone: String,
    pub bulletins: Vec<BulletinView>,
}

/// One queued bulletin in [`BulletinListing`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinView {
    pub id: String,
    pub name: String,
    /// `normal` or `priority`.
    pub level: Level,
    /// The level's TT39 name: `thường`, `ưu tiên`.
    pub level_name: String,
    /// A stream's credentials are masked for all but admins.
    pub source: SourceSpec,
    /// As submitted.
    pub targets: Targets,
    /// RFC 3339.
    pub submitted: Timestamp,
    /// `YYYY-MM-DD HH:MM:SS` in `timezone`.
    pub submitted_local: String,
    /// Its known length, as submitted (`PT1M`), and in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<SignedDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// The stations it targets in the district's order (an operator's own only).
    pub stations: Vec<BulletinStationView>,
}

/// Where a bulletin stands at one station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinStationView {
    pub station: String,
    /// The station's Vietnamese name from the district.
    pub name: String,
    pub state: BulletinStateName,
    /// `accepted` with a time: it airs at the first opportunity from then on (RFC 3339, and
    /// local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_local: Option<String>,
    /// `declined`: the reason given, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `airing`: since when (RFC 3339, and local).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_local: Option<String>,
}

/// The states of [`BulletinState`], as the listing names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BulletinStateName {
    /// Normal, not answered yet: the commune operator may accept or decline it.
    Awaiting,
    /// Normal, accepted: it airs at the first opportunity (from `at`, if given).
    Accepted,
    /// Normal, declined: it never airs there.
    Declined,
    Airing,
    /// Aired to its end there.
    Done,
    /// Priority: it airs at the next item boundary, without acceptance.
    Queued,
}

impl BulletinStateName {
    pub fn as_str(self) -> &'static str {
        match self {
            BulletinStateName::Awaiting => "awaiting",
            BulletinStateName::Accepted => "accepted",
            BulletinStateName::Declined => "declined",
            BulletinStateName::Airing => "airing",
            BulletinStateName::Done => "done",
            BulletinStateName::Queued => "queued",
        }
    }
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
    /// The refusal in Vietnamese, saying what to do, where it is meant for the console's
    /// staff (the library's refusals); absent elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_vi: Option<String>,
}

/// Serves the admin API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_router(listener, router(Arc::new(state)), shutdown).await
}

/// Serves `app` (the [`router`], shared with the console's HTTPS listener) over plain HTTP on
/// `listener` until `shutdown` completes.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The routes, all behind the token check (unknown routes too, so that they reveal nothing).
pub fn router(state: Arc<AdminState>) -> Router {
    let Routes { router, table } = routes();
    let gate = Gate {
        state: state.clone(),
        table: table.into(),
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(gate, require_token))
        // Added after the token layer: these hold no data.
        .merge(crate::operator::dashboard::routes())
        .route("/health", get(health))
        // How a person gets a session: it checks the lock-out and counts failures itself.
        .route(
            "/api/v1/sign-in",
            axum::routing::post(account_routes::sign_in),
        )
        // Outermost: a password, cookie or token sent in clear text from another machine has
        // already crossed the network, but it is not answered, so the client learns to use
        // HTTPS before anything else goes wrong.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            refuse_remote_plain_http,
        ))
        .layer(middleware::from_fn(close_after_refusal))
        .with_state(state)
}

/// A refusal (401, 403, 429) is answered before the request's body is read, and hyper then
/// closes the connection; without `Connection: close` a client that keeps connections would
/// send its next request down the closed one and fail.
async fn close_after_refusal(req: Request, next: Next) -> Response {
    let http1 = req.version() <= axum::http::Version::HTTP_11;
    let mut response = next.run(req).await;
    let refused = matches!(response.status().as_u16(), 401 | 403 | 429);
    if http1 && refused {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Plain HTTP is for the operator commands on the machine itself; everyone else comes over
/// the console's HTTPS listener, which marks its requests [`Transport::Tls`].
async fn refuse_remote_plain_http(
    State(state): State<Arc<AdminState>>,
    req: Request,
    next: Next,
) -> Response {
    let over_tls = req.extensions().get::<Transport>() == Some(&Transport::Tls);
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    match peer {
        Some(peer) if !over_tls && !plain_http_allowed(peer.ip()) => {
            tracing::warn!(
                %peer,
                method = %req.method(),
                path = %req.uri().path(),
                "admin: plain HTTP from another machine refused"
            );
            let console = state.console_port.map_or_else(
                || "the console's HTTPS address".to_owned(),
                |port| format!("https://<this server>:{port}/"),
            );
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "plain HTTP is only for the server's own machine; use {console} \
                     (HTTPS dùng cho mọi máy khác)"
                ),
            )
            .into_response()
        }
        _ => next.run(req).await,
    }
}

/// What the token check works with: the state, and who may call each route.
#[derive(Debug, Clone)]
struct Gate {
    state: Arc<AdminState>,
    table: Arc<[RoutePolicy]>,
}

impl Gate {
    /// The roles of the route `path` (axum's pattern) matched, if it has any.
    fn access(&self, method: &Method, path: Option<&str>) -> Option<Access> {
        let path = path?;
        self.table
            .iter()
            .find(|r| r.path == path && r.verb.as_str() == method.as_str())
            .map(|r| r.access)
    }
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
        Some(server) => crate::operator::metrics::station_metrics(server),
        None => state
            .district
            .stations
            .iter()
            .map(|s| crate::operator::metrics::StationMetrics {
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
        crate::operator::metrics::render(&stations),
    )
        .into_response()
}

/// `GET /api/v1/status`: what every station airs ([`OnAirStatus`], whose fields it keeps, so
/// older clients still read it), each station's link, the counts an operator reads first, and
/// the schedule's relay streams as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    pub stations: Vec<StationRow>,
    pub emergencies: Vec<EmergencyStatus>,
    /// Stations heard: something on air and their agent connected. A station on air without
    /// an agent airs to nobody.
    pub heard: usize,
    /// Stations whose agent is not connected.
    pub without_agent: usize,
    /// The streams the schedule relays; empty when there is none (or no prober runs).
    #[serde(default)]
    pub relay_streams: Vec<RelayStreamStatus>,
    /// The names of the server's `[[upstream]]`s, which the schedule and bulletins may air.
    #[serde(default)]
    pub upstreams: Vec<String>,
}

/// One station in [`StatusView`]: its [`StationStatus`] fields, and its agent's link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationRow {
    #[serde(flatten)]
    pub station: StationStatus,
    pub link: Link,
    /// Since when the link is up, or down (this server run); `None` if never up.
    #[serde(default)]
    pub link_since: Option<Timestamp>,
}

/// A station's agent link as this server run saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// A session is established.
    Up,
    /// There was one; it ended.
    Down,
    /// No session since the server started.
    Never,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Up => "up",
            Link::Down => "down",
            Link::Never => "never",
        }
    }
}

/// One station for the dashboard: who it is and how its agent is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StationView {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Every loudspeaker cluster of the station in the district's order, with its live state
    /// (`clusters.rs`), then any cluster the agent watches that the district does not have.
    pub clusters: Vec<crate::records::clusters::ClusterView>,
    pub connected: bool,
    /// Seconds since the agent's last heartbeat; `None` if none this server run.
    pub heartbeat_age_s: Option<f64>,
    /// The agent's last report: it feeds the transmitter.
    pub on_air: Option<bool>,
    /// The station's amplifiers as their last journaled switch left them; empty where the
    /// agent switches none.
    #[serde(default)]
    pub amplifiers: Vec<AmplifierView>,
    /// Its box health and warnings (none before its agent's first report this run).
    #[serde(default)]
    pub health: Option<crate::health::station::HealthView>,
}

/// One amplifier of a station, in `GET /api/v1/stations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmplifierView {
    /// `box` for the whole box's, else the output's name (`c01`).
    pub output: String,
    pub on: bool,
    /// The rule that switched it (`lead`, `late`, `emergency`, `idle`, `start`).
    pub reason: String,
    /// When (the agent's clock), Unix milliseconds.
    pub since: u64,
}

/// The amplifiers of an agent's snapshot, for [`StationView`].
fn amplifier_views(agent: Option<&crate::link::server::AgentSnapshot>) -> Vec<AmplifierView> {
    agent
        .map(|a| {
            a.amplifiers
                .iter()
                .map(|(output, seen)| AmplifierView {
                    output: output.clone(),
                    on: seen.on,
                    reason: seen.reason.clone(),
                    since: seen.unix_ms,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /api/v1/stations`.
async fn stations(State(state): State<Arc<AdminState>>) -> Json<Vec<StationView>> {
    let agents: std::collections::BTreeMap<String, crate::link::server::AgentSnapshot> = state
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
                    clusters: crate::records::clusters::station_clusters(
                        s,
                        agent.map(|a| &a.clusters),
                    ),
                    connected: agent.is_some_and(|a| a.connected),
                    heartbeat_age_s: agent
                        .and_then(|a| a.last_heartbeat_age)
                        .map(|d| d.as_secs_f64()),
                    on_air: agent
                        .and_then(|a| a.last_heartbeat.as_ref())
                        .map(|h| h.on_air),
                    amplifiers: amplifier_views(agent),
                    health: agent.and_then(|a| a.health.as_ref()).map(|h| h.view()),
                }
            })
            .collect(),
    )
}

/// An error answer: status and one line.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    message_vi: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            message_vi: None,
        }
    }

    /// A refusal for the console's staff: `error` is the Vietnamese, then the English.
    pub(crate) fn vietnamese(
        status: StatusCode,
        vietnamese: impl Into<String>,
        english: impl std::fmt::Display,
    ) -> Self {
        let vietnamese = vietnamese.into();
        ApiError {
            status,
            message: format!("{vietnamese} ({english})"),
            message_vi: Some(vietnamese),
        }
    }

    /// What it says, in English.
    pub(crate) fn message(&self) -> String {
        self.message.clone()
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
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
        let message_vi = self.message_vi.map(|m| m.replace(['\n', '\r'], " "));
        (self.status, Json(ErrorBody { error, message_vi })).into_response()
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Stopped => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the on-air controller has stopped (the server is shutting down)",
            ),
            CommandError::Schedule(
                e @ (ScheduleError::AlreadyActive { .. }
                | ScheduleError::NotOffered { .. }
                | ScheduleError::AlreadyAired { .. }
                | ScheduleError::AlreadyStarted { .. }),
            ) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            CommandError::Schedule(e) => ApiError::bad_request(e.to_string()),
        }
    }
}

/// A JSON body; an empty one reads as `{}` so that commands whose fields are all optional can
/// be sent bare (`curl -X POST …/live/start`). Errors are JSON like every other answer, where
/// axum's own `Json` would answer in plain text.
pub(crate) struct Body<T>(pub(crate) T);

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

/// The session cookie's name. `__Host-` makes browsers refuse it unless it is Secure, has
/// `Path=/` and no `Domain`: no other host or plain-HTTP page can set or overwrite it.
pub const SESSION_COOKIE: &str = "__Host-radio_session";

/// The header a console page sends its session's CSRF token in, with every change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The session id in the request's `Cookie` header, if any.
pub(crate) fn session_cookie(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// How a request proved who it is.
enum Credentials {
    Caller(Caller, Option<String>),
    /// A bearer token or an `Authorization` header that is wrong: counts as a failed
    /// authentication.
    Refused(&'static str),
    /// A session cookie the store does not know (expired, signed out, the account changed):
    /// not counted, since every page of a browser left open overnight would add to its
    /// office's lock-out, and session ids are far beyond guessing.
    SessionEnded,
}

impl AdminState {
    fn credentials(&self, req: &Request) -> Credentials {
        let header = req.headers().get(header::AUTHORIZATION);
        let token = header
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        match (token, header) {
            (Some(token), _) => match self.caller(token) {
                Some(caller) => Credentials::Caller(caller, None),
                None => Credentials::Refused("invalid admin token"),
            },
            (None, Some(_)) => {
                Credentials::Refused("the Authorization header must be `Bearer <token>`")
            }
            (None, None) => match session_cookie(req.headers()) {
                None => Credentials::Refused(
                    "missing `Authorization: Bearer <token>` header or session cookie",
                ),
                Some(id) => match self.store.accounts().session(&id, Timestamp::now()) {
                    Ok(Some((session, account))) => Credentials::Caller(
                        Caller {
                            name: account.name,
                            role: account.role,
                            stations: account.communes,
                        },
                        Some(session.csrf),
                    ),
                    Ok(None) => Credentials::SessionEnded,
                    Err(e) => {
                        tracing::error!("admin: sessions cannot be read: {e}");
                        Credentials::SessionEnded
                    }
                },
            },
        }
    }
}

/// Authenticates (a bearer token, or a console session with its CSRF token for changes), then
/// checks the role against the route's; counts failures per source and answers 429 to a
/// source locked out, before looking at its credentials.
async fn require_token(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let state = &gate.state;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let shown_peer = peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string());
    if let Some(peer) = peer {
        let verdict = state.limiter().check(peer.ip(), Instant::now());
        if let Verdict::LockedOut { retry_after } = verdict {
            // Logged once when the lock-out started; one line per refused request would let a
            // flood fill the disk.
            tracing::debug!(%peer, path = %req.uri().path(), "admin: locked out");
            return locked_out(peer, retry_after);
        }
    }
    let problem = match state.credentials(&req) {
        Credentials::Caller(caller, csrf) => {
            // A browser sends the cookie with any request a hostile page makes it send; only
            // the console's own script knows the session's CSRF token. Reads change nothing.
            let changes = !matches!(*req.method(), Method::GET | Method::HEAD);
            if let (Some(csrf), true) = (&csrf, changes) {
                let given = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if !bool::from(given.as_bytes().ct_eq(csrf.as_bytes())) {
                    tracing::warn!(
                        caller = %caller.name,
                        peer = %shown_peer,
                        method = %req.method(),
                        path = %req.uri().path(),
                        "admin: forbidden: missing or wrong CSRF token"
                    );
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        format!(
                            "missing or wrong CSRF token (header {CSRF_HEADER}): reload the \
                             console page and try again"
                        ),
                    )
                    .into_response();
                }
            }
            let path = req
                .extensions()
                .get::<MatchedPath>()
                .map(MatchedPath::as_str);
            if let Some(why) = caller.refuses(gate.access(req.method(), path)) {
                tracing::warn!(
                    caller = %caller.name,
                    peer = %shown_peer,
                    method = %req.method(),
                    path = %req.uri().path(),
                    "admin: forbidden: {why}"
                );
                return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
            }
            req.extensions_mut().insert(Actor {
                caller,
                source: shown_peer,
                csrf,
            });
            return next.run(req).await;
        }
        Credentials::SessionEnded => {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "your session has ended (signed out, expired or the account changed): sign in \
                 again",
            )
            .into_response();
        }
        Credentials::Refused(problem) => problem,
    };
    tracing::warn!(
        peer = %shown_peer,
        method = %req.method(),
        path = %req.uri().path(),
        "admin: refused: {problem}"
    );
    if let Some(peer) = peer {
        state.count_failure(peer);
    }
    // Whoever asks without a token may be anyone who reaches the port: tell them what to do,
    // not where the server keeps its files.
    let message = format!("{problem}; {TOKEN_HELP}");
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

impl AdminState {
    /// Counts a failed authentication from `peer`; logs when it starts a lock-out.
    pub(crate) fn count_failure(&self, peer: SocketAddr) {
        let started = {
            let mut limiter = self.limiter();
            let limits = limiter.limits();
            limiter
                .failed(peer.ip(), Instant::now())
                .map(|lockout| (lockout, limits))
        };
        if let Some((lockout, limits)) = started {
            tracing::warn!(
                %peer,
                "admin: {} failed authentications within {} s: every request from this address \
                 is refused for {} s",
                limits.max_failures,
                limits.window.as_secs(),
                lockout.as_secs()
            );
        }
    }

    /// The lock-out answer for `peer`, if it is locked out.
    pub(crate) fn refuse_locked_out(&self, peer: SocketAddr) -> Option<Response> {
        match self.limiter().check(peer.ip(), Instant::now()) {
            Verdict::LockedOut { retry_after } => Some(locked_out(peer, retry_after)),
            _ => None,
        }
    }
}

/// 429 with the whole seconds until the lock-out ends (rounded up: a client that waits that
/// long is let in).
fn locked_out(peer: SocketAddr, retry_after: Duration) -> Response {
    let seconds = (retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)).max(1);
    let message = format!(
        "too many failed authentications from {}; try again in {seconds} s",
        peer.ip()
    );
    let mut response = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
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

async fn status(State(state): State<Arc<AdminState>>) -> Result<Json<StatusView>, ApiError> {
    let on_air = state.on_air.status().await?;
    Ok(Json(state.status_view(on_air)))
}

async fn live_start(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(request): Body<LiveStart>,
) -> Result<Json<Done>, ApiError> {
    let id = request.id.unwrap_or_else(|| DEFAULT_LIVE_ID.to_owned());
    let targets = request.targets.unwrap_or(Targets::All);
    let result = start_live(&state, &id, targets.clone()).await;
    state
        .audit(&actor, AuditAction::LiveStart, &id, Some(targets), result)
        .await?;
    Ok(Json(Done { id }))
}

async fn start_live(state: &AdminState, id: &str, targets: Targets) -> Result<(), ApiError> {
    let mut events = state.on_air.events();
    state.on_air.live(id, targets).await?;
    // The ladder accepts a live broadcast even when the server has no live input; the
    // controller then ends it at once. Report that, rather than a success nobody hears.
    let item = ItemRef::Live { id: id.to_owned() };
    match open_failure(&mut events, &item).await {
        Some(error) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error)),
        None => Ok(()),
    }
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
    Extension(actor): Extension<Actor>,
    Body(request): Body<StopRequest>,
) -> Result<Json<Done>, ApiError> {
    let id = request.id.unwrap_or_else(|| DEFAULT_LIVE_ID.to_owned());
    let result = state.on_air.stop_live(&id).await.map_err(ApiError::from);
    state
        .audit(&actor, AuditAction::LiveStop, &id, None, result)
        .await?;
    Ok(Json(Done { id }))
}

async fn emergency(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(request): Body<EmergencyRequest>,
) -> Result<Json<Done>, ApiError> {
    // Decided before the checks, so that a refused emergency is audited under the id it had.
    let id = request.id.clone().unwrap_or_else(emergency_id);
    let targets = request.targets.clone().unwrap_or(Targets::All);
    let result = start_emergency(&state, &id, targets.clone(), request).await;
    state
        .audit(
            &actor,
            AuditAction::EmergencyStart,
            &id,
            Some(targets),
            result,
        )
        .await?;
    Ok(Json(Done { id }))
}

async fn start_emergency(
    state: &AdminState,
    id: &str,
    targets: Targets,
    request: EmergencyRequest,
) -> Result<(), ApiError> {
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
    let repeat = request.repeat.unwrap_or(DEFAULT_EMERGENCY_REPEAT);
    if repeat == 0 {
        return Err(ApiError::bad_request(
            "field `repeat` must be at least 1 (the number of times the recording is played)",
        ));
    }
    let name = request
        .name
        .or(default_name)
        .unwrap_or_else(|| "Khẩn cấp".to_owned());
    state
        .on_air
        .emergency(id, &name, source, targets, repeat)
        .await?;
    Ok(())
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
    Extension(actor): Extension<Actor>,
    Body(request): Body<StopRequest>,
) -> Result<Json<Done>, ApiError> {
    let id = request.id.unwrap_or_default();
    let result = if id.is_empty() {
        Err(ApiError::bad_request(
            "field `id`: name the emergency to stop (its id was printed when it started)",
        ))
    } else {
        state
            .on_air
            .stop_emergency(&id)
            .await
            .map_err(ApiError::from)
    };
    state
        .audit(&actor, AuditAction::EmergencyStop, &id, None, result)
        .await?;
    Ok(Json(Done { id }))
}

async fn schedule(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
) -> Json<Schedule> {
    let mut schedule = state.schedule.lock().await.clone();
    // A stream's credentials (an Icecast source password) are for the admins who set them:
    // viewers and operators read the schedule with them masked.
    if actor.caller.role != Role::Admin {
        for entry in &mut schedule.entries {
            if let SourceSpec::Relay { url } = &mut entry.source {
                *url = crate::ingest::stream_url::mask(url).into_owned();
            }
        }
    }
    Json(schedule)
}

async fn add_entry(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(entry): Body<ScheduleEntry>,
) -> Result<(StatusCode, Json<ScheduleChanged>), ApiError> {
    let id = entry.id.clone();
    let targets = entry.targets.clone();
    let result = add(&state, entry).await;
    let overlaps = state
        .audit(&actor, AuditAction::ScheduleAdd, &id, Some(targets), result)
        .await?;
    Ok((StatusCode::CREATED, Json(ScheduleChanged { id, overlaps })))
}

/// Adds `entry` to the schedule; the overlaps it makes.
async fn add(state: &AdminState, entry: ScheduleEntry) -> Result<Vec<String>, ApiError> {
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
    let tz = load_timezone(&current.timezone).map_err(|e| ApiError::internal(e.to_string()))?;
    check_not_past(current.entries.len(), &entry, &tz, Timestamp::now())
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Only the new entry's files are checked: a file of an older entry that has gone missing
    // must not block every other change (including removing that entry).
    let fresh: BTreeSet<PathBuf> = source_paths(&entry.source).into_iter().collect();
    let mut next = current.clone();
    next.entries.push(entry);
    apply(state, &mut current, next, &fresh).await
}

async fn remove_entry(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<ScheduleChanged>, ApiError> {
    let result = remove(&state, &id).await;
    let targets = result.as_ref().ok().map(|(_, targets)| targets.clone());
    let (overlaps, _) = state
        .audit(&actor, AuditAction::ScheduleRemove, &id, targets, result)
        .await?;
    Ok(Json(ScheduleChanged { id, overlaps }))
}

/// Removes entry `id` from the schedule; the overlaps left, and the targets it had (for the
/// audit log).
async fn remove(state: &AdminState, id: &str) -> Result<(Vec<String>, Targets), ApiError> {
    let mut current = state.schedule.lock().await;
    let Some(targets) = current.entry(id).map(|e| e.targets.clone()) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no schedule entry `{id}`"),
        ));
    };
    let mut next = current.clone();
    next.entries.retain(|e| e.id != id);
    let overlaps = apply(state, &mut current, next, &BTreeSet::new()).await?;
    Ok((overlaps, targets))
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
    Extension(actor): Extension<Actor>,
    Body(request): Body<BulletinRequest>,
) -> Result<(StatusCode, Json<Done>), ApiError> {
    let id = request.id.clone();
    let targets = request.targets.clone();
    let result = submit(&state, request).await;
    state
        .audit(
            &actor,
            AuditAction::BulletinSubmit,
            &id,
            Some(targets),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(Done { id })))
}

async fn submit(state: &AdminState, request: BulletinRequest) -> Result<(), ApiError> {
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
    Ok(state.on_air.bulletin(bulletin).await?)
}

async fn cancel_bulletin(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Done>, ApiError> {
    let result = state
        .on_air
        .cancel_bulletin(&id)
        .await
        .map_err(ApiError::from);
    state
        .audit(&actor, AuditAction::BulletinCancel, &id, None, result)
        .await?;
    Ok(Json(Done { id }))
}

async fn accept_bulletin(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<AcceptRequest>,
) -> Result<Json<Done>, ApiError> {
    let station = request.station;
    refuse_other_station(&actor, &station)?;
    let detail = request.at.as_ref().map(|at| format!("at {at}"));
    let result = accept(&state, &station, &id, request.at.as_deref()).await;
    let targets = Targets::Stations(vec![station]);
    state
        .audit_with(
            &actor,
            AuditAction::BulletinAccept,
            &id,
            Some(targets),
            detail,
            result,
        )
        .await?;
    Ok(Json(Done { id }))
}

async fn accept(
    state: &AdminState,
    station: &str,
    id: &str,
    at: Option<&str>,
) -> Result<(), ApiError> {
    let from = match at {
        Some(at) => {
            let tz = state.timezone().await?;
            Some(air_time(at, &tz, Timestamp::now())?)
        }
        None => None,
    };
    Ok(state.on_air.accept_from(station, id, from).await?)
}

/// Beyond the caller's role, like the token check's 403s: refused before anything is done,
/// so not an on-air change to audit.
fn refuse_other_station(actor: &Actor, station: &str) -> Result<(), ApiError> {
    match actor.caller.refuses_station(station) {
        Some(why) => {
            tracing::warn!(
                caller = %actor.caller.name,
                peer = %actor.source,
                "admin: forbidden: {why}"
            );
            Err(ApiError::new(StatusCode::FORBIDDEN, why))
        }
        None => Ok(()),
    }
}

async fn decline_bulletin(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<DeclineRequest>,
) -> Result<Json<Done>, ApiError> {
    let station = request.station;
    refuse_other_station(&actor, &station)?;
    let reason = request
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    let result = match &reason {
        Some(r) if r.chars().count() > MAX_REASON_CHARS => Err(ApiError::bad_request(format!(
            "field `reason`: lý do quá dài — at most {MAX_REASON_CHARS} characters"
        ))),
        _ => state
            .on_air
            .decline(&station, &id, reason.clone())
            .await
            .map_err(ApiError::from),
    };
    let targets = Targets::Stations(vec![station]);
    state
        .audit_with(
            &actor,
            AuditAction::BulletinDecline,
            &id,
            Some(targets),
            reason,
            result,
        )
        .await?;
    Ok(Json(Done { id }))
}

/// When an accepted bulletin may air from: `HH:MM` (or `HH:MM:SS`) today in `tz`, or an RFC
/// 3339 timestamp. A time before the current minute is refused, in Vietnamese and English,
/// naming the current local time; the current minute itself means at once.
pub(crate) fn air_time(
    text: &str,
    tz: &jiff::tz::TimeZone,
    now: Timestamp,
) -> Result<Timestamp, ApiError> {
    let text = text.trim();
    let malformed = || {
        ApiError::bad_request(format!(
            "field `at`: giờ phát `{text}` không hợp lệ — hãy ghi HH:MM (giờ hôm nay) hoặc \
             RFC 3339 (`{text}` is not an air time: write HH:MM, today in local time, or an \
             RFC 3339 timestamp such as 2025-09-23T14:30:00+07:00)"
        ))
    };
    let at = if let Ok(at) = text.parse::<Timestamp>() {
        at
    } else {
        // Only a bare time of day: a civil datetime without an offset would be ambiguous.
        let time: jiff::civil::Time = match text.len() {
            5 | 8 => text.parse().map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        now.to_zoned_datetime(tz.clone())
            .date()
            .to_datetime(time)
            .to_zoned_datetime(tz.clone())
            .map_err(|_| malformed())?
            .timestamp()
    };
    let local_now = now.to_zoned_datetime(tz.clone());
    let minute_start = local_now
        .datetime()
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .ok()
        .and_then(|dt| dt.to_zoned_datetime(tz.clone()).ok())
        .map_or(now, |z| z.timestamp());
    if at < minute_start {
        let shown = local_now.strftime("%H:%M");
        return Err(ApiError::bad_request(format!(
            "field `at`: Giờ phát đã qua — hãy chọn giờ sau {shown} (the air time {} has \
             passed; choose a time after {shown})",
            at.to_zoned_datetime(tz.clone()).strftime("%Y-%m-%d %H:%M")
        )));
    }
    Ok(at)
}

/// `GET /api/v1/bulletins?station=`: the queued bulletins and where each stands at the
/// stations it targets. A commune operator sees only those for its stations, and only its
/// stations' states: the inbox of its commune.
async fn list_bulletins(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    params: ReportParams,
) -> Result<Json<BulletinListing>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let mut only: Option<String> = None;
    for (name, value) in params {
        if name != "station" {
            return Err(ApiError::bad_request(format!(
                "parameter `{name}`: unknown parameter (the bulletins take `station`)"
            )));
        }
        if state.district.station(&value).is_none() {
            return Err(ApiError::bad_request(format!(
                "parameter `station`: no station `{value}` in the district"
            )));
        }
        only = Some(value);
    }
    let timezone = state.schedule.lock().await.timezone.clone();
    let tz = load_timezone(&timezone).map_err(|e| ApiError::internal(e.to_string()))?;
    let local = |t: Timestamp| tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string();
    let caller = &actor.caller;
    let shown = |station: &str| {
        only.as_deref().is_none_or(|o| o == station)
            && (caller.role != Role::Operator || caller.stations.iter().any(|s| s == station))
    };
    let mut bulletins = Vec::new();
    for snapshot in state.on_air.bulletins().await? {
        let stations: Vec<BulletinStationView> = snapshot
            .stations
            .into_iter()
            .filter(|(station, _)| shown(station))
            .map(|(station, ladder_state)| {
                let mut view = BulletinStationView {
                    name: state
                        .district
                        .station(&station)
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                    station,
                    state: BulletinStateName::Awaiting,
                    at: None,
                    at_local: None,
                    reason: None,
                    since: None,
                    since_local: None,
                };
                view.state = match ladder_state {
                    BulletinState::Awaiting => BulletinStateName::Awaiting,
                    BulletinState::Accepted { from } => {
                        view.at = from;
                        view.at_local = from.map(local);
                        BulletinStateName::Accepted
                    }
                    BulletinState::Declined { reason } => {
                        view.reason = reason;
                        BulletinStateName::Declined
                    }
                    BulletinState::Airing { since } => {
                        view.since = Some(since);
                        view.since_local = Some(local(since));
                        BulletinStateName::Airing
                    }
                    BulletinState::Done => BulletinStateName::Done,
                    BulletinState::Queued => BulletinStateName::Queued,
                };
                view
            })
            .collect();
        if stations.is_empty() {
            continue;
        }
        let b = snapshot.bulletin;
        let mut source = b.source;
        // A stream's credentials are the admins', as in the schedule.
        if caller.role != Role::Admin {
            if let SourceSpec::Relay { url } = &mut source {
                *url = crate::ingest::stream_url::mask(url).into_owned();
            }
        }
        bulletins.push(BulletinView {
            id: b.id,
            name: b.name,
            level: b.level,
            level_name: b.level.vietnamese().to_owned(),
            source,
            targets: b.targets,
            submitted_local: local(b.submitted),
            submitted: b.submitted,
            duration: b.duration,
            duration_seconds: b.duration.map(|d| d.as_secs()),
            stations,
        });
    }
    Ok(Json(BulletinListing {
        timezone,
        bulletins,
    }))
}

impl AdminState {
    /// The schedule's time zone, which local times are read and shown in.
    async fn timezone(&self) -> Result<jiff::tz::TimeZone, ApiError> {
        let timezone = self.schedule.lock().await.timezone.clone();
        load_timezone(&timezone).map_err(|e| ApiError::internal(e.to_string()))
    }
}

/// What `GET /api/v1/audit` keeps besides the days: each filter given matches one of its
/// values.
#[derive(Debug, Default)]
struct AuditFilter {
    actors: Vec<String>,
    actions: Vec<AuditAction>,
    stations: Vec<String>,
    /// `true` for done, `false` for refused.
    outcomes: Vec<bool>,
}

impl AuditFilter {
    fn keeps(&self, record: &AuditRecord, district: &District, groups: &Groups) -> bool {
        (self.actors.is_empty() || self.actors.contains(&record.caller))
            && (self.actions.is_empty() || self.actions.contains(&record.action))
            && (self.outcomes.is_empty()
                || self
                    .outcomes
                    .contains(&matches!(record.outcome, Outcome::Done)))
            && (self.stations.is_empty()
                || record.targets.as_ref().is_some_and(|targets| {
                    // Groups as they are now: a group changed since is read with its members
                    // of today, the best the log can do without a copy of every schedule.
                    let named = match targets {
                        Targets::Stations(ids) => ids.iter().cloned().collect(),
                        _ => targets.resolve(district, groups).unwrap_or_default(),
                    };
                    self.stations.iter().any(|s| named.contains(s))
                }))
    }
}

/// `GET /api/v1/audit?from=&to=&actor=&action=&station=&outcome=`: the records of those local
/// days (both included; default all) that match the filters, times shown in the schedule's
/// zone.
async fn audit_log(
    State(state): State<Arc<AdminState>>,
    params: ReportParams,
) -> Result<Json<AuditListing>, ApiError> {
    let Query(params) = params
        .map_err(|e| ApiError::bad_request(format!("the query string: {}", e.body_text())))?;
    let (timezone, groups) = {
        let schedule = state.schedule.lock().await;
        (schedule.timezone.clone(), schedule.groups.clone())
    };
    let tz = load_timezone(&timezone).map_err(|e| ApiError::internal(e.to_string()))?;
    let (mut from_ms, mut to_ms) = (i64::MIN, i64::MAX);
    let mut filter = AuditFilter::default();
    for (name, value) in &params {
        match name.as_str() {
            "from" | "to" => {}
            "actor" => {
                filter.actors.push(value.clone());
                continue;
            }
            "action" => {
                let action = serde_json::from_value(serde_json::Value::String(value.clone()))
                    .map_err(|_| {
                        ApiError::bad_request(format!(
                            "parameter `action`: `{value}` is not an action of the audit log \
                             (as its `action` column shows them, e.g. bulletin-accept)"
                        ))
                    })?;
                filter.actions.push(action);
                continue;
            }
            "station" => {
                if state.district.station(value).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "parameter `station`: no station `{value}` in the district"
                    )));
                }
                filter.stations.push(value.clone());
                continue;
            }
            "outcome" => {
                let done = match value.as_str() {
                    "done" => true,
                    "refused" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "parameter `outcome`: `{value}` is neither `done` nor `refused`"
                        )))
                    }
                };
                filter.outcomes.push(done);
                continue;
            }
            _ => {
                return Err(ApiError::bad_request(format!(
                    "parameter `{name}`: unknown parameter (the audit log takes `from`, `to`, \
                     `actor`, `action`, `station` and `outcome`)"
                )))
            }
        }
        let date: jiff::civil::Date = value.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "parameter `{name}`: `{value}` is not a date (YYYY-MM-DD)"
            ))
        })?;
        let day_start = |date: jiff::civil::Date| {
            date.to_zoned_datetime(tz.clone())
                .map(|z| z.timestamp().as_millisecond())
                .ok()
        };
        if name == "from" {
            from_ms = day_start(date).unwrap_or(i64::MIN);
        } else {
            to_ms = date
                .tomorrow()
                .ok()
                .and_then(day_start)
                .map_or(i64::MAX, |ms| ms - 1);
        }
    }
    let log = state.store.audit().clone();
    let district = state.district.clone();
    let (records, truncated) = tokio::task::spawn_blocking(move || {
        log.range_matching(from_ms, to_ms, MAX_AUDIT_RECORDS, |r| {
            filter.keeps(r, &district, &groups)
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the audit log failed: {e}")))?
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(AuditListing {
        timezone,
        records: records.into_iter().map(|r| r.view(&tz)).collect(),
        truncated,
    }))
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
/// The schedule's time zone, or a 500: a stored schedule's zone was checked when it was stored.
pub(crate) fn load_timezone_for(name: &str) -> Result<jiff::tz::TimeZone, ApiError> {
    load_timezone(name).map_err(|e| ApiError::internal(e.to_string()))
}

pub(crate) type ReportParams = Result<Query<Vec<(String, String)>>, QueryRejection>;

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
            ReportKind::Uptime => {
                let mut uptime = report::uptime_report(&district, &timelines, request, now)?;
                let months = store
                    .box_health()
                    .range(
                        &report::box_health::month_of(request.from),
                        &report::box_health::month_of(request.to),
                    )
                    .map_err(|e| ApiError::internal(format!("reading the box health: {e}")))?;
                uptime.box_health =
                    report::box_health::box_health(&district, &months, request.from, request.to);
                report::render::uptime(&uptime, query.format)?
            }
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
    fn air_times_are_read_in_the_schedules_zone_and_past_ones_refused() {
        let tz = load_timezone("Asia/Ho_Chi_Minh").expect("tz");
        let ts = |s: &str| s.parse::<Timestamp>().expect("timestamp");
        // 14:00:30 in Vietnam.
        let now = ts("2025-09-23T07:00:30Z");
        let read = |text: &str| air_time(text, &tz, now);
        assert_eq!(
            read("15:30").expect("later today"),
            ts("2025-09-23T08:30:00Z")
        );
        assert_eq!(
            read("23:59:30").expect("seconds"),
            ts("2025-09-23T16:59:30Z")
        );
        // The current minute means at once, not "already past".
        assert_eq!(
            read(" 14:00 ").expect("this minute"),
            ts("2025-09-23T07:00:00Z")
        );
        assert_eq!(
            read("2025-09-24T06:00:00+07:00").expect("RFC 3339"),
            ts("2025-09-23T23:00:00Z")
        );
        for past in ["13:59", "00:00", "2025-09-23T06:59:00Z"] {
            let err = read(past).expect_err(past);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{past}");
            assert!(
                err.message
                    .contains("Giờ phát đã qua — hãy chọn giờ sau 14:00"),
                "{past}: {}",
                err.message
            );
            assert!(
                err.message.contains("has passed"),
                "{past}: {}",
                err.message
            );
        }
        for bad in ["25:00", "1430", "14h30", "", "2025-09-23 15:00", "14:60"] {
            let err = read(bad).expect_err(bad);
            assert_eq!(err.status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(
                err.message.contains("không hợp lệ"),
                "{bad}: {}",
                err.message
            );
        }
    }

    #[test]
    fn listed_states_and_the_inbox_requests_read_as_documented() {
        let accept: AcceptRequest =
            serde_json::from_str(r#"{"station": "binh-trung", "at": "15:30"}"#).expect("accept");
        assert_eq!(accept.at.as_deref(), Some("15:30"));
        let decline: DeclineRequest =
            serde_json::from_str(r#"{"station": "binh-trung"}"#).expect("decline");
        assert_eq!(decline.reason, None);
        assert!(serde_json::from_str::<DeclineRequest>(r#"{"station": "x", "why": "y"}"#).is_err());
        for state in [
            BulletinStateName::Awaiting,
            BulletinStateName::Accepted,
            BulletinStateName::Declined,
            BulletinStateName::Airing,
            BulletinStateName::Done,
            BulletinStateName::Queued,
        ] {
            assert_eq!(
                serde_json::to_value(state).expect("json"),
                serde_json::Value::String(state.as_str().to_owned())
            );
        }
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
