//! The operator commands' side of the admin endpoint: a blocking HTTP client (ureq) and the
//! text the commands print.
//!
//! The commands never open the store (sled lets one process at a time hold it, and that is the
//! running server); they read the token from `data_dir/admin.token` and ask the server at
//! `admin_listen`. Every failure becomes one line an operator can act on.

use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use radio_config::ServerConfig;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::library::LibraryItem;
use crate::operator::admin::{
    AcceptRequest, BulletinListing, BulletinRequest, BulletinStateName, DeclineRequest, Done,
    EmergencyRequest, ErrorBody, Link, LiveStart, ScheduleChanged, StatusView, StopRequest,
};
use crate::operator::audit_log::AuditListing;
use crate::operator::library_routes::{percent_encode, RenameRequest, FILE_NAME_HEADER};
use crate::operator::tts_routes::SayRequest;
use crate::records::store::TOKEN_FILE;
use crate::report::{Format, ReportKind, ReportQuery};
use crate::schedule::{EntryEnd, Recurrence, Schedule, ScheduleEntry, SourceSpec, Targets};

/// The server is local; a slow connect means it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Checking an emergency recording decodes its start; generous, still bounded.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// A report reads every record of the years it covers (minute heartbeats: half a million a
/// year per station).
const REPORT_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest report read: a five-year report by day in JSON is tens of megabytes.
const REPORT_MAX_BYTES: u64 = 512 * 1024 * 1024;
/// An upload to the library travels on loopback, then is decoded to its end to check it: an
/// hour-long recording takes a while on a small server.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a command failed, as the one line the command prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The token file cannot be read.
    #[error("cannot read the admin token {}: {reason}", path.display())]
    Token { path: PathBuf, reason: String },
    /// Nothing listens at the admin address.
    #[error("the server is not running (no answer at {addr})")]
    NotRunning { addr: SocketAddr },
    /// The server answered with an error; its message.
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// The request failed on the way.
    #[error("the admin endpoint at {addr}: {reason}")]
    Transport { addr: SocketAddr, reason: String },
    /// The answer is not what this version expects.
    #[error("unexpected answer from the admin endpoint at {addr}: {reason}")]
    BadAnswer { addr: SocketAddr, reason: String },
}

/// A client of one server's admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminClient {
    addr: SocketAddr,
    token: String,
    agent: ureq::Agent,
}

impl AdminClient {
    /// A client for `addr` with `token`.
    pub fn new(addr: SocketAddr, token: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            // Error bodies carry the server's message; judge statuses here.
            .http_status_as_error(false)
            // A proxy from the environment must not see the token, nor break loopback calls.
            .proxy(None)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(CALL_TIMEOUT))
            .build()
            .into();
        AdminClient {
            addr,
            token: token.trim().to_owned(),
            agent,
        }
    }

    /// The client for the server `config` describes: its token file and admin address.
    pub fn from_config(config: &ServerConfig) -> Result<Self, ClientError> {
        let path = config.data_dir.join(TOKEN_FILE);
        let token = std::fs::read_to_string(&path).map_err(|e| ClientError::Token {
            reason: match e.kind() {
                io::ErrorKind::NotFound => "it does not exist; start the server once with \
                    `radio-server run` and the same --data-dir (or --config)"
                    .to_owned(),
                io::ErrorKind::PermissionDenied => "permission denied; run this as the user \
                    the server runs as"
                    .to_owned(),
                _ => e.to_string(),
            },
            path: path.clone(),
        })?;
        if token.trim().is_empty() {
            return Err(ClientError::Token {
                path,
                reason: "the file is empty; restart the server to write a new token".to_owned(),
            });
        }
        Ok(Self::new(dialable(config.admin_listen), &token))
    }

    /// The address this client calls.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What every station airs and its link, the emergencies running and the relay streams.
    pub fn status(&self) -> Result<StatusView, ClientError> {
        self.get("/api/v1/status")
    }

    /// Starts a live broadcast; its id.
    pub fn live_start(&self, request: &LiveStart) -> Result<String, ClientError> {
        self.post::<_, Done>("/api/v1/live/start", request)
            .map(|d| d.id)
    }

    pub fn live_stop(&self, id: Option<&str>) -> Result<String, ClientError> {
        let request = StopRequest {
            id: id.map(str::to_owned),
        };
        self.post::<_, Done>("/api/v1/live/stop", &request)
            .map(|d| d.id)
    }

    /// Starts an emergency; its id.
    pub fn emergency(&self, request: &EmergencyRequest) -> Result<String, ClientError> {
        self.post::<_, Done>("/api/v1/emergency", request)
            .map(|d| d.id)
    }

    pub fn stop_emergency(&self, id: &str) -> Result<String, ClientError> {
        let request = StopRequest {
            id: Some(id.to_owned()),
        };
        self.post::<_, Done>("/api/v1/emergency/stop", &request)
            .map(|d| d.id)
    }

    pub fn schedule(&self) -> Result<Schedule, ClientError> {
        self.get("/api/v1/schedule")
    }

    pub fn add_entry(&self, entry: &ScheduleEntry) -> Result<ScheduleChanged, ClientError> {
        self.post("/api/v1/schedule/entries", entry)
    }

    pub fn remove_entry(&self, id: &str) -> Result<ScheduleChanged, ClientError> {
        self.delete(&format!("/api/v1/schedule/entries/{}", encode_segment(id)))
    }

    pub fn submit_bulletin(&self, request: &BulletinRequest) -> Result<String, ClientError> {
        self.post::<_, Done>("/api/v1/bulletins", request)
            .map(|d| d.id)
    }

    pub fn cancel_bulletin(&self, id: &str) -> Result<String, ClientError> {
        self.delete::<Done>(&format!("/api/v1/bulletins/{}", encode_segment(id)))
            .map(|d| d.id)
    }

    pub fn accept_bulletin(&self, id: &str, station: &str) -> Result<String, ClientError> {
        self.accept_bulletin_at(id, station, None)
    }

    /// Accepts a bulletin at `station`, to air from `at` (`HH:MM` today, or RFC 3339) or at
    /// once.
    pub fn accept_bulletin_at(
        &self,
        id: &str,
        station: &str,
        at: Option<&str>,
    ) -> Result<String, ClientError> {
        let request = AcceptRequest {
            station: station.to_owned(),
            at: at.map(str::to_owned),
        };
        self.post::<_, Done>(
            &format!("/api/v1/bulletins/{}/accept", encode_segment(id)),
            &request,
        )
        .map(|d| d.id)
    }

    pub fn decline_bulletin(
        &self,
        id: &str,
        station: &str,
        reason: Option<&str>,
    ) -> Result<String, ClientError> {
        let request = DeclineRequest {
            station: station.to_owned(),
            reason: reason.map(str::to_owned),
        };
        self.post::<_, Done>(
            &format!("/api/v1/bulletins/{}/decline", encode_segment(id)),
            &request,
        )
        .map(|d| d.id)
    }

    /// The queued bulletins and their state at each station (at `station` only, if given).
    pub fn bulletins(&self, station: Option<&str>) -> Result<BulletinListing, ClientError> {
        match station {
            Some(station) => self.get(&format!(
                "/api/v1/bulletins?station={}",
                encode_segment(station)
            )),
            None => self.get("/api/v1/bulletins"),
        }
    }

    /// `radio-server library list`.
    pub fn library(&self) -> Result<Vec<LibraryItem>, ClientError> {
        self.get("/api/v1/library")
    }

    /// `radio-server library add`: uploads `bytes` as `file_name` (the name on this machine)
    /// under the display name `name` (the server's default: the file name without extension).
    pub fn library_upload(
        &self,
        bytes: Vec<u8>,
        file_name: &str,
        name: Option<&str>,
    ) -> Result<LibraryItem, ClientError> {
        let query = name
            .map(|n| format!("?name={}", percent_encode(n)))
            .unwrap_or_default();
        let url = format!("http://{}/api/v1/library{query}", self.addr);
        let too_slow = |e: ureq::Error| match e {
            ureq::Error::Timeout(t) if t != ureq::Timeout::Connect => ClientError::Transport {
                addr: self.addr,
                reason: format!(
                    "the upload was not answered within {} s",
                    UPLOAD_TIMEOUT.as_secs()
                ),
            },
            other => self.transport_error(other),
        };
        let mut response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/octet-stream")
            .header(FILE_NAME_HEADER, &percent_encode(file_name))
            .config()
            .timeout_global(Some(UPLOAD_TIMEOUT))
            .build()
            .send(&bytes[..])
            .map_err(too_slow)?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(too_slow)?;
        self.decode(status, &text)
    }

    /// `radio-server library say`: `text` spoken by the server's engine and kept as `name`.
    pub fn library_say(
        &self,
        name: &str,
        text: &str,
        speed: Option<u32>,
    ) -> Result<LibraryItem, ClientError> {
        let body = SayRequest {
            name: name.to_owned(),
            text: text.to_owned(),
            speed,
        };
        let json = serde_json::to_string(&body).map_err(|e| ClientError::BadAnswer {
            addr: self.addr,
            reason: format!("cannot encode the request: {e}"),
        })?;
        let url = format!("http://{}/api/v1/library/tts", self.addr);
        let mut response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("Content-Type", "application/json")
            .config()
            // The engine's own time-out (tts_timeout_secs, at most 600 s) comes first.
            .timeout_global(Some(UPLOAD_TIMEOUT))
            .build()
            .send(json.as_bytes())
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| self.transport_error(e))?;
        self.decode(status, &text)
    }

    /// `radio-server library rename`.
    pub fn library_rename(&self, id: &str, name: &str) -> Result<LibraryItem, ClientError> {
        self.post(
            &format!("/api/v1/library/{}/rename", encode_segment(id)),
            &RenameRequest {
                name: name.to_owned(),
            },
        )
    }

    /// `radio-server library delete`.
    pub fn library_delete(&self, id: &str) -> Result<LibraryItem, ClientError> {
        self.delete(&format!("/api/v1/library/{}", encode_segment(id)))
    }

    /// `radio-server report uptime`: the report as the server wrote it (table, CSV or JSON).
    pub fn report_uptime(&self, query: &ReportQuery) -> Result<String, ClientError> {
        self.report(ReportKind::Uptime, query)
    }

    /// `radio-server report plays`: the report as the server wrote it.
    pub fn report_plays(&self, query: &ReportQuery) -> Result<String, ClientError> {
        self.report(ReportKind::Plays, query)
    }

    /// `GET /api/v1/reports/KIND?…`: the body text, with a longer timeout and size limit than
    /// other calls.
    pub fn report(&self, kind: ReportKind, query: &ReportQuery) -> Result<String, ClientError> {
        let url = format!(
            "http://{}/api/v1/reports/{}?{}",
            self.addr,
            kind.as_str(),
            query.to_query_string()
        );
        let too_slow = |e: ureq::Error| match e {
            ureq::Error::Timeout(t) if t != ureq::Timeout::Connect => ClientError::Transport {
                addr: self.addr,
                reason: format!(
                    "no complete report within {} s; ask for a shorter range",
                    REPORT_TIMEOUT.as_secs()
                ),
            },
            other => self.transport_error(other),
        };
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .config()
            .timeout_global(Some(REPORT_TIMEOUT))
            .build()
            .call()
            .map_err(too_slow)?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(REPORT_MAX_BYTES)
            .read_to_string()
            .map_err(too_slow)?;
        if !(200..300).contains(&status) {
            return Err(self.refusal(status, &text));
        }
        Ok(text)
    }

    /// `radio-server audit`: the on-air changes of those local days (both included; without
    /// them, all of the log).
    pub fn audit(
        &self,
        from: Option<jiff::civil::Date>,
        to: Option<jiff::civil::Date>,
    ) -> Result<AuditListing, ClientError> {
        self.audit_matching(&AuditQuery {
            from,
            to,
            ..AuditQuery::default()
        })
    }

    /// `radio-server audit` with filters: the changes of those days that match them all.
    pub fn audit_matching(&self, query: &AuditQuery) -> Result<AuditListing, ClientError> {
        let query = query.to_query_string();
        if query.is_empty() {
            self.get("/api/v1/audit")
        } else {
            self.get(&format!("/api/v1/audit?{query}"))
        }
    }

    /// `radio-server backup`: asks the server for a backup (`POST /api/v1/backup`) and copies
    /// the archive it streams into `out`; the bytes copied. No overall time-out: a large
    /// library takes as long as the disk takes.
    pub fn backup(&self, out: &mut dyn io::Write) -> Result<u64, ClientError> {
        let url = format!("http://{}/api/v1/backup", self.addr);
        let mut response = self
            .agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", self.token))
            .config()
            .timeout_global(None)
            .build()
            .send_empty()
            .map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| self.transport_error(e))?;
            return Err(self.refusal(status, &text));
        }
        let mut body = response.body_mut().with_config().reader();
        io::copy(&mut body, out).map_err(|e| ClientError::Transport {
            addr: self.addr,
            reason: format!("the backup stopped arriving: {e}"),
        })
    }

    /// `GET path`, decoding the answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.raw("GET", path, None)?;
        self.decode(status, &body)
    }

    /// `POST path` with `body` as JSON, decoding the answer.
    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let json = serde_json::to_string(body).map_err(|e| ClientError::BadAnswer {
            addr: self.addr,
            reason: format!("cannot encode the request: {e}"),
        })?;
        let (status, body) = self.raw("POST", path, Some(json))?;
        self.decode(status, &body)
    }

    /// `DELETE path`, decoding the answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.raw("DELETE", path, None)?;
        self.decode(status, &body)
    }

    /// One request with the token; the status and body whatever the status (transport
    /// failures are errors). For tests and tools that want to see the HTTP exchange.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, String), ClientError> {
        self.exchange(method, path, body, Some(&self.token))
    }

    /// Like [`AdminClient::raw`] with another `Authorization` token, or none.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> Result<(u16, String), ClientError> {
        let url = format!("http://{}{path}", self.addr);
        let auth = token.map(|t| format!("Bearer {t}"));
        let result = match method {
            "GET" | "DELETE" => {
                let mut request = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            _ => {
                let mut request = self
                    .agent
                    .post(&url)
                    .header("Content-Type", "application/json");
                if let Some(auth) = &auth {
                    request = request.header("Authorization", auth);
                }
                request.send(body.unwrap_or_default())
            }
        };
        let mut response = result.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        // As text whatever it is: an archive (`POST /api/v1/backup`) is not UTF-8.
        let bytes = response
            .body_mut()
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    }

    fn decode<T: DeserializeOwned>(&self, status: u16, body: &str) -> Result<T, ClientError> {
        if !(200..300).contains(&status) {
            return Err(self.refusal(status, body));
        }
        serde_json::from_str(body).map_err(|e| ClientError::BadAnswer {
            addr: self.addr,
            reason: e.to_string(),
        })
    }

    /// An error answer: the server's one line, or what came instead.
    fn refusal(&self, status: u16, body: &str) -> ClientError {
        let message = match serde_json::from_str::<ErrorBody>(body) {
            Ok(ErrorBody { error, .. }) => error,
            // Not our server (another program on the port), or a proxy in between.
            Err(_) => format!(
                "the admin endpoint at {} answered HTTP {status}{}",
                self.addr,
                first_line(body)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ),
        };
        ClientError::Refused { status, message }
    }

    fn transport_error(&self, e: ureq::Error) -> ClientError {
        let addr = self.addr;
        match e {
            ureq::Error::ConnectionFailed => ClientError::NotRunning { addr },
            ureq::Error::Io(io) if io.kind() == io::ErrorKind::ConnectionRefused => {
                ClientError::NotRunning { addr }
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => ClientError::NotRunning { addr },
            ureq::Error::Timeout(_) => ClientError::Transport {
                addr,
                reason: format!(
                    "no complete answer within {} s (is the server overloaded?)",
                    CALL_TIMEOUT.as_secs()
                ),
            },
            other => ClientError::Transport {
                addr,
                reason: other.to_string().replace(['\n', '\r'], " "),
            },
        }
    }
}

/// What `GET /api/v1/audit` is asked for: local days (both included) and filters, each
/// left out when `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub from: Option<jiff::civil::Date>,
    pub to: Option<jiff::civil::Date>,
    /// The caller's name, exact.
    pub actor: Option<String>,
    /// As the log writes it, e.g. `bulletin-accept`.
    pub action: Option<String>,
    /// Records whose targets include this station.
    pub station: Option<String>,
    /// `done` or `refused`.
    pub outcome: Option<String>,
}

impl AuditQuery {
    /// `from=…&actor=…`, values percent-encoded; empty without any.
    pub fn to_query_string(&self) -> String {
        let dates = [("from", self.from), ("to", self.to)]
            .into_iter()
            .filter_map(|(name, date)| date.map(|d| format!("{name}={d}")));
        let texts = [
            ("actor", &self.actor),
            ("action", &self.action),
            ("station", &self.station),
            ("outcome", &self.outcome),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .as_ref()
                .map(|v| format!("{name}={}", encode_segment(v)))
        });
        dates.chain(texts).collect::<Vec<_>>().join("&")
    }
}

/// An unspecified listen address (`0.0.0.0`, `[::]`) is dialled on loopback.
fn dialable(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|l| !l.is_empty())
}

/// Percent-encodes a path segment: ids are slugs, but an operator may type anything.
fn encode_segment(text: &str) -> String {
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// `radio-server library list`: one row per item, oldest upload first.
pub fn render_library(items: &[LibraryItem]) -> String {
    if items.is_empty() {
        return "the library is empty (add a recording: radio-server library add FILE)\n"
            .to_owned();
    }
    let rows: Vec<[String; 6]> = items
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                i.name.clone(),
                format!("{:.1} s", i.duration_secs),
                format!("{:.1} / {:.1}", i.peak_dbfs, i.rms_dbfs),
                format!("{} {}", i.format, i.codec),
                i.path.display().to_string(),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "LENGTH", "PEAK/RMS dBFS", "FORMAT", "PATH"],
        &rows,
    )
}

/// `radio-server schedule list`: one row per entry, times in the schedule's own zone (the
/// wall-clock times the operator wrote).
pub fn render_schedule(schedule: &Schedule) -> String {
    let header = ["id", "name", "days", "time", "level", "source", "targets"];
    let rows: Vec<[String; 7]> = schedule
        .entries
        .iter()
        .map(|e| {
            [
                e.id.clone(),
                e.name.clone(),
                days(&e.recurrence),
                slot(e),
                e.level.to_string(),
                source(&e.source),
                targets(&e.targets),
            ]
        })
        .collect();
    let mut out = format!("schedule ({} local time)\n", schedule.timezone);
    if rows.is_empty() {
        out.push_str("no timed entries\n");
        return out;
    }
    out.push_str(&table(&header, &rows));
    for (name, members) in &schedule.groups {
        let _ = writeln!(out, "group {name}: {}", members.join(", "));
    }
    out
}

/// An RFC 3339 time from the server in `tz`, as operators read clocks (as given if it does not
/// parse).
fn local_time(at: &str, tz: &TimeZone) -> String {
    match at.parse::<Timestamp>() {
        Ok(t) => tz.to_datetime(t).strftime("%Y-%m-%d %H:%M:%S").to_string(),
        Err(_) => at.to_owned(),
    }
}

/// `radio-server status`: what each station airs and its agent's link, how many are heard,
/// the emergencies running with the id that stops each, and the relay streams of the schedule
/// as last probed; times in `tz`.
pub fn render_status(status: &StatusView, tz: &TimeZone) -> String {
    let rows = &status.stations;
    let header = ["station", "link", "level", "on air", "since"];
    let body: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let r = &row.station;
            let since = r
                .since
                .as_deref()
                .map(|s| local_time(s, tz))
                .unwrap_or_default();
            let on_air = match (&r.name, &r.item) {
                (Some(name), Some(item)) => format!("{name} [{}]", short_item(item)),
                (None, Some(item)) => short_item(item).to_owned(),
                _ => "–".to_owned(),
            };
            let link = match (row.link, row.link_since) {
                (Link::Down, Some(at)) => format!("down since {}", local_timestamp(at, tz)),
                (link, _) => link.as_str().to_owned(),
            };
            [
                r.station.clone(),
                link,
                r.level.clone().unwrap_or_else(|| "–".to_owned()),
                on_air,
                since,
            ]
        })
        .collect();
    let mut out = table(&header, &body);
    let _ = write!(
        out,
        "{} of {} heard (on air, agent connected); ",
        status.heard,
        count(rows.len(), "station")
    );
    if status.without_agent == 0 {
        out.push_str(
            "every agent connected
",
        );
    } else {
        let _ = writeln!(out, "{} without an agent", status.without_agent);
    }
    if status.emergencies.is_empty() {
        out.push_str(
            "no emergency running
",
        );
    } else {
        let header = ["emergency", "name", "started", "targets"];
        let body: Vec<[String; 4]> = status
            .emergencies
            .iter()
            .map(|e| {
                [
                    e.id.clone(),
                    e.name.clone(),
                    local_time(&e.started, tz),
                    format!(
                        "{} ({})",
                        targets(&e.targets),
                        count(e.stations.len(), "station")
                    ),
                ]
            })
            .collect();
        let _ = write!(
            out,
            "\n{}{} running; stop one with `radio-server emergency --stop ID`\n",
            table(&header, &body),
            count(status.emergencies.len(), "emergency")
        );
    }
    if !status.relay_streams.is_empty() {
        let header = ["relay stream", "reachable", "checked", "used by", "error"];
        let body: Vec<[String; 5]> = status
            .relay_streams
            .iter()
            .map(|r| {
                [
                    r.url.clone(),
                    match r.reachable {
                        Some(true) => "yes",
                        Some(false) => "NO",
                        None => "not yet checked",
                    }
                    .to_owned(),
                    r.checked
                        .map(|t| local_timestamp(t, tz))
                        .unwrap_or_default(),
                    r.slots.join(", "),
                    r.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let _ = write!(out, "\nrelay streams\n{}", table(&header, &body));
        if status
            .relay_streams
            .iter()
            .any(|r| r.reachable == Some(false))
        {
            out.push_str(
                "a stream that cannot be reached airs the fallback in its slots; the server's \
                 log says how to set the real one\n",
            );
        }
    }
    out
}

/// A timestamp in `tz`, as operators read clocks.
fn local_timestamp(at: Timestamp, tz: &TimeZone) -> String {
    tz.to_datetime(at).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

/// `radio-server bulletin list`: one row per bulletin and station, oldest bulletin first,
/// times in the listing's zone.
pub fn render_bulletins(listing: &BulletinListing) -> String {
    let header = ["id", "name", "level", "submitted", "station", "state"];
    let rows: Vec<[String; 6]> = listing
        .bulletins
        .iter()
        .flat_map(|b| {
            b.stations.iter().map(move |s| {
                let state = match (s.state, &s.at_local, &s.reason, &s.since_local) {
                    (BulletinStateName::Accepted, Some(at), _, _) => format!("accepted, from {at}"),
                    (BulletinStateName::Declined, _, Some(reason), _) => {
                        format!("declined: {reason}")
                    }
                    (BulletinStateName::Airing, _, _, Some(since)) => {
                        format!("airing since {since}")
                    }
                    (state, ..) => state.as_str().to_owned(),
                };
                [
                    b.id.clone(),
                    b.name.clone(),
                    b.level.to_string(),
                    b.submitted_local.clone(),
                    format!("{} ({})", s.station, s.name),
                    state,
                ]
            })
        })
        .collect();
    let mut out = format!("bulletins (local time: {})\n", listing.timezone);
    if rows.is_empty() {
        out.push_str("no bulletin queued\n");
        return out;
    }
    out.push_str(&table(&header, &rows));
    if listing
        .bulletins
        .iter()
        .flat_map(|b| &b.stations)
        .any(|s| s.state == BulletinStateName::Awaiting)
    {
        out.push_str(
            "answer an awaiting one with `radio-server bulletin accept ID --station S [--at HH:MM]` \
             or `radio-server bulletin decline ID --station S [--reason R]`\n",
        );
    }
    out
}

/// `radio-server audit`: one row per change, oldest first, in local time and UTC; or the
/// listing as JSON, or CSV (UTF-8 with a BOM, like the reports).
pub fn render_audit(listing: &AuditListing, format: Format) -> String {
    let header = [
        "local time",
        "UTC",
        "caller",
        "role",
        "source",
        "action",
        "id",
        "targets",
        "outcome",
    ];
    let rows: Vec<[String; 9]> = listing
        .records
        .iter()
        .map(|v| {
            let r = &v.record;
            [
                v.local.clone(),
                v.utc.clone(),
                r.caller.clone(),
                role_name(r.role).to_owned(),
                r.source.clone(),
                r.action.as_str().to_owned(),
                r.id.clone(),
                r.targets.as_ref().map(targets).unwrap_or_default(),
                match &r.detail {
                    Some(detail) => format!("{} ({detail})", r.outcome.describe()),
                    None => r.outcome.describe(),
                },
            ]
        })
        .collect();
    let more = "more changes lie in the range than one answer holds: ask for fewer days";
    match format {
        Format::Json => serde_json::to_string_pretty(listing)
            .map(|json| json + "\n")
            .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}\n")),
        Format::Csv => {
            let mut out = String::from(crate::report::render::BOM);
            crate::report::render::csv_line(&mut out, &header.map(str::to_owned));
            for row in &rows {
                crate::report::render::csv_line(&mut out, row);
            }
            out
        }
        Format::Table => {
            let mut out = format!("audit log (local time: {})\n", listing.timezone);
            if rows.is_empty() {
                out.push_str("no on-air changes recorded\n");
            } else {
                out.push_str(&table(&header, &rows));
                let _ = writeln!(out, "{}", count(rows.len(), "change"));
            }
            if listing.truncated {
                let _ = writeln!(out, "note: {more}");
            }
            out
        }
    }
}

fn role_name(role: radio_config::Role) -> &'static str {
    match role {
        radio_config::Role::Admin => "admin",
        radio_config::Role::Operator => "operator",
        radio_config::Role::Viewer => "viewer",
    }
}

/// "1 station", "22 stations"; `noun` an English noun whose plural takes -s or -ies.
fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// `entry:ID@TIMESTAMP` without the occurrence time, which `since` already shows.
fn short_item(item: &str) -> &str {
    item.split_once('@').map_or(item, |(head, _)| head)
}

/// When an entry recurs: `daily`, `Mon,Wed` or a date.
pub(crate) fn days(recurrence: &Recurrence) -> String {
    match recurrence {
        Recurrence::Daily => "daily".to_owned(),
        Recurrence::Weekly { days } => days
            .iter()
            .map(|d| &crate::schedule::weekday_english(*d)[..3])
            .collect::<Vec<_>>()
            .join(","),
        Recurrence::Once { date } => date.to_string(),
        Recurrence::Period { from, until, days } if days.is_empty() => {
            format!("{from}..{until}")
        }
        Recurrence::Period { from, until, days } => format!(
            "{from}..{until} {}",
            days.iter()
                .map(|d| &crate::schedule::weekday_english(*d)[..3])
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

fn hm(t: jiff::civil::Time) -> String {
    if t.second() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// An entry's time of day, e.g. `05:00–07:00`.
pub(crate) fn slot(entry: &ScheduleEntry) -> String {
    let start = entry.start;
    match entry.end {
        EntryEnd::At(end) => {
            let next_day = if end <= start { " (+1 day)" } else { "" };
            format!("{}–{}{next_day}", hm(start), hm(end))
        }
        EntryEnd::Duration(d) => {
            // Wall-clock end; on a daylight-saving transition day the real end may differ.
            let end = start.wrapping_add(d);
            let next_day = if d.as_secs() >= 24 * 3600 || end <= start {
                " (+1 day)"
            } else {
                ""
            };
            format!("{}–{}{next_day} ({d:#})", hm(start), hm(end))
        }
    }
}

fn source(source: &SourceSpec) -> String {
    match source {
        SourceSpec::File { path } => format!("file {}", path.display()),
        SourceSpec::Playlist { paths } => match paths.as_slice() {
            [one] => format!("playlist {}", one.display()),
            _ => format!("playlist of {} files", paths.len()),
        },
        SourceSpec::Relay { url } => {
            format!("relay {}", crate::ingest::stream_url::mask(url))
        }
        SourceSpec::Upstream { name } => format!("upstream {name}"),
        SourceSpec::Live => "live".to_owned(),
    }
}

fn targets(targets: &Targets) -> String {
    match targets {
        Targets::All => "all".to_owned(),
        Targets::Stations(ids) => format!("stations {}", ids.join(",")),
        Targets::Groups(names) => format!("groups {}", names.join(",")),
    }
}

/// Left-aligned columns, padded by characters (Vietnamese names are multi-byte).
fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<w$}  ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::on_air::{EmergencyStatus, StationStatus};
    use crate::ingest::relay_probe::RelayStreamStatus;
    use crate::operator::admin::StationRow;
    use crate::schedule::Level;
    use jiff::civil;

    #[test]
    fn schedule_table_shows_local_times_and_the_next_day() {
        let mut schedule = Schedule::binh_son_default();
        schedule.entries.push(ScheduleEntry {
            id: "ban-tin-dem".into(),
            name: "Bản tin đêm".into(),
            recurrence: Recurrence::Weekly {
                days: vec![civil::Weekday::Monday, civil::Weekday::Sunday],
            },
            start: civil::time(23, 0, 0, 0),
            end: EntryEnd::Duration(jiff::SignedDuration::from_mins(90)),
            source: SourceSpec::Playlist {
                paths: vec!["/a.mp3".into(), "/b.mp3".into()],
            },
            targets: Targets::Groups(vec!["ven-bien".into()]),
            level: Level::Priority,
        });
        let text = render_schedule(&schedule);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "schedule (Asia/Ho_Chi_Minh local time)");
        assert!(lines[1].starts_with("id "), "{text}");
        assert!(lines[2].contains("05:00–07:00"), "{text}");
        assert!(lines[2].contains("daily"), "{text}");
        assert!(lines[2].contains("normal (thường)"), "{text}");
        assert!(
            lines[2].contains("relay http://127.0.0.1:8000/qng.mp3"),
            "{text}"
        );
        assert!(lines[2].ends_with("all"), "{text}");
        assert!(lines[4].contains("mon,sun"), "{text}");
        assert!(lines[4].contains("23:00–00:30 (+1 day) (1h 30m)"), "{text}");
        assert!(lines[4].contains("playlist of 2 files"), "{text}");
        // Columns line up although names have multi-byte letters.
        let level_col = |l: &str| {
            l.find("normal")
                .or(l.find("priority"))
                .map(|b| l[..b].chars().count())
        };
        assert_eq!(level_col(lines[2]), level_col(lines[4]), "{text}");
    }

    #[test]
    fn empty_schedule_says_so() {
        let text = render_schedule(&Schedule::default());
        assert!(text.contains("no timed entries"), "{text}");
    }

    #[test]
    fn status_table_converts_since_to_local_time() {
        let stations = vec![
            StationRow {
                station: StationStatus {
                    station: "binh-trung".into(),
                    item: Some("emergency:bao".into()),
                    name: Some("Bão số 5".into()),
                    level: Some("khẩn cấp".into()),
                    since: Some("2025-09-23T07:00:00Z".into()),
                },
                link: Link::Up,
                link_since: Some("2025-09-23T06:00:00Z".parse().unwrap()),
            },
            StationRow {
                station: StationStatus {
                    station: "binh-hai".into(),
                    item: None,
                    name: None,
                    level: None,
                    since: None,
                },
                link: Link::Down,
                link_since: Some("2025-09-23T06:30:00Z".parse().unwrap()),
            },
        ];
        let tz = crate::schedule::load_timezone("Asia/Ho_Chi_Minh").unwrap();
        let mut status = StatusView {
            stations,
            emergencies: Vec::new(),
            heard: 1,
            without_agent: 1,
            relay_streams: Vec::new(),
            upstreams: Vec::new(),
        };
        let text = render_status(&status, &tz);
        assert!(text.contains("2025-09-23 14:00:00"), "{text}");
        assert!(text.contains("Bão số 5 [emergency:bao]"), "{text}");
        assert!(text.contains("down since 2025-09-23 13:30:00"), "{text}");
        assert!(
            text.ends_with(
                "1 of 2 stations heard (on air, agent connected); 1 without an agent\n\
                 no emergency running\n"
            ),
            "{text}"
        );
        status.emergencies = vec![EmergencyStatus {
            id: "bao".into(),
            name: "Bão số 5".into(),
            started: "2025-09-23T07:00:00Z".into(),
            targets: Targets::Stations(vec!["binh-trung".into()]),
            stations: vec!["binh-trung".into()],
        }];
        let text = render_status(&status, &tz);
        let row = text
            .lines()
            .find(|l| l.starts_with("bao "))
            .unwrap_or_else(|| panic!("no emergency row: {text}"));
        assert!(row.contains("Bão số 5"), "{row}");
        assert!(row.contains("2025-09-23 14:00:00"), "{row}");
        assert!(row.contains("stations binh-trung (1 station)"), "{row}");
        assert!(
            text.ends_with(
                "1 emergency running; stop one with `radio-server emergency --stop ID`\n"
            ),
            "{text}"
        );
        status.relay_streams = vec![RelayStreamStatus {
            url: "http://127.0.0.1:8000/qng.mp3".into(),
            slots: vec!["tiep-song-sang (daily 05:00–07:00)".into()],
            reachable: Some(false),
            checked: Some("2025-09-23T07:00:05Z".parse().unwrap()),
            error: Some("cannot connect: Connection refused".into()),
        }];
        let text = render_status(&status, &tz);
        let row = text
            .lines()
            .find(|l| l.starts_with("http://127.0.0.1:8000/qng.mp3"))
            .unwrap_or_else(|| panic!("no relay stream row: {text}"));
        for needle in [
            "NO",
            "2025-09-23 14:00:05",
            "tiep-song-sang (daily 05:00–07:00)",
            "Connection refused",
        ] {
            assert!(row.contains(needle), "{needle}: {row}");
        }
    }

    #[test]
    fn audit_listing_renders_as_table_and_csv() {
        use crate::operator::audit_log::{AuditAction, AuditRecord, Outcome};
        let tz = crate::schedule::load_timezone("Asia/Ho_Chi_Minh").unwrap();
        let record = AuditRecord {
            unix_ms: 1_758_610_800_000, // 2025-09-23T07:00:00Z
            caller: "district".into(),
            role: radio_config::Role::Admin,
            source: "127.0.0.1:50000".into(),
            action: AuditAction::EmergencyStart,
            id: "bao".into(),
            targets: Some(Targets::Stations(vec![
                "binh-trung".into(),
                "binh-hai".into(),
            ])),
            outcome: Outcome::Refused {
                status: 409,
                error: "=already, on air".into(),
            },
            detail: None,
        };
        let mut listing = AuditListing {
            timezone: "Asia/Ho_Chi_Minh".into(),
            records: vec![record.view(&tz)],
            truncated: false,
        };
        let text = render_audit(&listing, Format::Table);
        let row = text.lines().nth(2).unwrap_or_default();
        assert!(
            row.starts_with("2025-09-23 14:00:00  2025-09-23T07:00:00.000Z  district"),
            "{text}"
        );
        assert!(row.contains("emergency-start  bao"), "{text}");
        assert!(row.contains("stations binh-trung,binh-hai"), "{text}");
        assert!(row.ends_with("refused (409): =already, on air"), "{text}");
        assert!(text.ends_with("1 change\n"), "{text}");
        let csv = render_audit(&listing, Format::Csv);
        assert!(csv.starts_with("\u{FEFF}local time,UTC,caller,"), "{csv}");
        // Quoted for the comma.
        assert!(
            csv.contains(",\"refused (409): =already, on air\"\r\n"),
            "{csv}"
        );
        let json: AuditListing =
            serde_json::from_str(&render_audit(&listing, Format::Json)).unwrap();
        assert_eq!(json, listing);
        listing.records.clear();
        listing.truncated = true;
        let text = render_audit(&listing, Format::Table);
        assert!(text.contains("no on-air changes recorded"), "{text}");
        assert!(text.contains("note: more changes"), "{text}");
    }

    #[test]
    fn audit_queries_name_each_filter_given_once_encoded() {
        assert_eq!(AuditQuery::default().to_query_string(), "");
        let query = AuditQuery {
            from: Some("2026-11-01".parse().unwrap()),
            to: None,
            actor: Some("cán bộ&x".into()),
            action: Some("bulletin-decline".into()),
            station: Some("binh-trung".into()),
            outcome: Some("refused".into()),
        };
        assert_eq!(
            query.to_query_string(),
            "from=2026-11-01&actor=c%C3%A1n%20b%E1%BB%99%26x&action=bulletin-decline\
             &station=binh-trung&outcome=refused"
        );
    }

    #[test]
    fn bulletin_listing_renders_one_row_per_station_with_its_state() {
        use crate::operator::admin::{BulletinStationView, BulletinView};
        let station = |id: &str, name: &str, state| BulletinStationView {
            station: id.into(),
            name: name.into(),
            state,
            at: None,
            at_local: None,
            reason: None,
            since: None,
            since_local: None,
        };
        let mut accepted = station("binh-duong", "Bình Dương", BulletinStateName::Accepted);
        accepted.at_local = Some("2026-12-08 15:30:00".into());
        let mut declined = station("binh-hai", "Bình Hải", BulletinStateName::Declined);
        declined.reason = Some("trùng lịch".into());
        let listing = BulletinListing {
            timezone: "Asia/Ho_Chi_Minh".into(),
            bulletins: vec![BulletinView {
                id: "tin".into(),
                name: "Tin sáng".into(),
                level: crate::schedule::Level::Normal,
                level_name: "thường".into(),
                source: SourceSpec::File {
                    path: "/srv/tin.mp3".into(),
                },
                targets: Targets::All,
                submitted: "2026-12-08T01:00:00Z".parse().unwrap(),
                submitted_local: "2026-12-08 08:00:00".into(),
                duration: None,
                duration_seconds: None,
                stations: vec![
                    station("binh-trung", "Bình Trung", BulletinStateName::Awaiting),
                    accepted,
                    declined,
                ],
            }],
        };
        let text = render_bulletins(&listing);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[2].ends_with("binh-trung (Bình Trung)  awaiting"),
            "{text}"
        );
        assert!(
            lines[3].ends_with("accepted, from 2026-12-08 15:30:00"),
            "{text}"
        );
        assert!(lines[4].ends_with("declined: trùng lịch"), "{text}");
        assert!(lines[5].contains("bulletin decline ID"), "{text}");
        let empty = BulletinListing {
            timezone: "Asia/Ho_Chi_Minh".into(),
            bulletins: Vec::new(),
        };
        assert!(render_bulletins(&empty).contains("no bulletin queued"));
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_segment("tiep-song-sang"), "tiep-song-sang");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn unspecified_addresses_are_dialled_on_loopback() {
        assert_eq!(
            dialable("0.0.0.0:4480".parse().unwrap()).to_string(),
            "127.0.0.1:4480"
        );
        assert_eq!(dialable("[::]:1".parse().unwrap()).to_string(), "[::1]:1");
        assert_eq!(
            dialable("10.0.0.2:1".parse().unwrap()).to_string(),
            "10.0.0.2:1"
        );
    }

    #[test]
    fn no_server_is_reported_in_one_line() {
        // A port that was free a moment ago: nothing answers there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = AdminClient::new(SocketAddr::from(([127, 0, 0, 1], port)), "x");
        let err = client.status().expect_err("nobody listens");
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("the server is not running (no answer at 127.0.0.1:{port})")
        );
    }

    #[test]
    fn missing_token_file_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServerConfig::default()
        };
        let err = AdminClient::from_config(&config).expect_err("no token");
        let text = err.to_string();
        assert!(text.contains("admin.token"), "{text}");
        assert!(text.contains("radio-server run"), "{text}");
        assert!(!text.contains('\n'));
    }
}
