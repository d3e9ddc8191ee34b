//! `GET /api/v1/live/console`: going live from the console ([`ConsoleLive`]).
//!
//! Without a WebSocket upgrade it answers who is live from the console now
//! (`{"speaker": null}` or `{"speaker": {"user", "targets", "since"}, "uplink": {...}}`).
//! With one, the conversation is:
//!
//! 1. the browser sends a text message `{"csrf": TOKEN, "targets": TARGETS}` (the session's
//!    CSRF token: a WebSocket handshake carries the cookie but no header the page chose, so
//!    the token comes as the first message instead; a bearer token needs none);
//! 2. the server answers `{"ok": true, "name": …, "targets": …}`, or
//!    `{"ok": false, "error": …, "message_vi": …, "speaker": …}` and closes;
//! 3. the browser sends one Opus packet per binary message (the console sends 40 ms at
//!    24 kb/s) — or, having said `"format": "webm"` in its first message, the pieces of a live
//!    WebM recording (`MediaRecorder`, where the browser has no WebCodecs) — and may send the
//!    text `stop`;
//! 4. the server ends the broadcast when the browser says `stop`, closes the socket, goes
//!    quiet for the live input's `no_packet_timeout`, or when an admin stops it
//!    (`radio-server live stop --id console`); its last message is
//!    `{"ended": REASON, "seconds": …, "kbps": …}`.
//!
//! A commune operator may go live to their own communes only. Starting and ending are audited
//! as `live-start` and `live-stop` of the id `console`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::broadcast;
use tracing::Instrument;

use crate::broadcast::console_live::{
    BeginError, ConsoleLive, ConsoleSession, SendError, Speaker, MAX_PACKET_BYTES,
};
use crate::broadcast::on_air::{OnAirEvent, CONSOLE_LIVE_ID};
use crate::ingest::webm_opus::WebmOpusStream;
use crate::operator::admin::{Actor, AdminState, ApiError};
use crate::operator::audit_log::AuditAction;
use crate::schedule::ladder::StopReason;
use crate::schedule::{ItemRef, Targets};

/// How long the browser has to send its first message.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a WebSocket frame from a browser adds to its payload (2 header bytes, 4 of mask; a
/// payload of 126 bytes or more adds 2), and an estimate of what TLS (5-byte record header,
/// 16-byte AEAD tag, 1 content type byte) and TCP/IPv4 with timestamps (52 bytes, one segment
/// per message at this rate) add: the uplink a 4G link really carries.
const WS_OVERHEAD: u64 = 6;
const TLS_TCP_IP_OVERHEAD: u64 = 22 + 52;

/// The first message of a console broadcast.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Hello {
    #[serde(default)]
    csrf: Option<String>,
    targets: Targets,
    #[serde(default)]
    format: UplinkFormat,
}

/// What the browser's binary messages carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum UplinkFormat {
    /// One Opus packet per message (WebCodecs).
    #[default]
    Opus,
    /// Pieces of a live WebM recording (`MediaRecorder`), for browsers without WebCodecs.
    Webm,
}

/// Who is live from the console, with the uplink so far.
#[derive(Debug, Serialize)]
pub struct ConsoleLiveStatus {
    /// `None` when nobody is.
    pub speaker: Option<Speaker>,
    /// Whether this server can broadcast from the console at all (not with a PCM pipe as
    /// its studio input).
    pub available: bool,
}

/// The uplink of a session: what the browser sent.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Uplink {
    /// Seconds since the broadcast started.
    pub seconds: f64,
    /// Opus packets.
    pub packets: u64,
    /// Their bytes (Opus only).
    pub opus_bytes: u64,
    /// kb/s of WebSocket messages (Opus and framing).
    pub websocket_kbps: f64,
    /// kb/s with TLS, TCP and IP added (an estimate: one segment per message).
    pub network_kbps: f64,
}

/// The route; see the module docs.
pub(crate) async fn console(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let live = state.console_live().cloned();
    let Ok(upgrade) = upgrade else {
        let status = ConsoleLiveStatus {
            speaker: live.as_ref().and_then(|l| l.speaker()),
            available: live.is_some(),
        };
        return Ok(Json(status).into_response());
    };
    let Some(live) = live else {
        return Err(ApiError::vietnamese(
            StatusCode::SERVICE_UNAVAILABLE,
            "Máy chủ này không nhận phát trực tiếp từ trình duyệt: đầu vào trực tiếp của nó là \
             ống PCM của bàn trộn. Hãy phát từ phòng thu.",
            "this server's live input is a PCM pipe, which cannot take the console's audio",
        ));
    };
    check_origin(&headers)?;
    let from: SocketAddr = actor
        .source
        .parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let span = tracing::info_span!("console_live", user = %actor.caller.name, peer = %from);
    Ok(upgrade
        .max_message_size(MAX_PACKET_BYTES.max(64 * 1024))
        .on_upgrade(move |socket| {
            broadcast_from(socket, state, actor, live, from).instrument(span)
        }))
}

/// A page of another site cannot make a browser open this socket with the console's cookie:
/// the cookie is `SameSite=Strict`, and the Origin must be the console's own.
fn check_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        // Not a browser (a script with a bearer token): nothing to check.
        return Ok(());
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'))
        .unwrap_or_default();
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    tracing::warn!(
        ?origin,
        host,
        "console live: refused a WebSocket from another origin"
    );
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "this WebSocket may only be opened by the console's own page",
    ))
}

/// Why a broadcast ended, as the last message says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// The browser said `stop`.
    Stopped,
    /// The browser closed the socket (a closed tab, a dropped connection).
    Closed,
    /// Nothing came for the live input's `no_packet_timeout`.
    Silent,
    /// An admin took it off air.
    StoppedByAdmin,
    /// The browser sent something that is not a broadcast.
    BadMessage,
    /// The server is shutting down.
    ServerStopped,
}

impl Ended {
    fn as_str(self) -> &'static str {
        match self {
            Ended::Stopped => "stopped",
            Ended::Closed => "closed",
            Ended::Silent => "no-audio",
            Ended::StoppedByAdmin => "stopped-by-admin",
            Ended::BadMessage => "bad-message",
            Ended::ServerStopped => "server-stopped",
        }
    }
}

async fn broadcast_from(
    mut socket: WebSocket,
    state: Arc<AdminState>,
    actor: Actor,
    live: Arc<ConsoleLive>,
    from: SocketAddr,
) {
    let (targets, format) = match hello(&mut socket, &actor, &state).await {
        Ok(hello) => hello,
        Err(refusal) => {
            let _ = state
                .audit(
                    &actor,
                    AuditAction::LiveStart,
                    CONSOLE_LIVE_ID,
                    None,
                    Err::<(), _>(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        refusal.error.clone(),
                    )),
                )
                .await;
            refuse(&mut socket, refusal).await;
            return;
        }
    };
    // Subscribed before the start, so that a stop right after it is not missed.
    let mut events = state.on_air().events();
    let begun = live.begin(&actor.caller.name, from, targets.clone()).await;
    let audited = state
        .audit(
            &actor,
            AuditAction::LiveStart,
            CONSOLE_LIVE_ID,
            Some(targets.clone()),
            begun.as_ref().map(|_| ()).map_err(begin_refusal_api),
        )
        .await;
    let mut session = match (begun, audited) {
        (Ok(session), Ok(())) => session,
        (Ok(session), Err(e)) => {
            // Not recorded, so not aired: the audit log must name everyone who went live.
            let _ = session.end().await;
            refuse(&mut socket, Refusal::from_api(&e)).await;
            return;
        }
        (Err(e), _) => {
            refuse(&mut socket, begin_refusal(&e)).await;
            return;
        }
    };
    tracing::info!(?targets, "live from the console");
    let welcome = serde_json::json!({
        "ok": true,
        "id": CONSOLE_LIVE_ID,
        "name": format!("Trực tiếp từ bảng điều khiển: {}", actor.caller.name),
        "targets": targets,
    });
    let started = Instant::now();
    let ended = if socket
        .send(Message::Text(welcome.to_string().into()))
        .await
        .is_err()
    {
        Ended::Closed
    } else {
        relay_packets(
            &mut socket,
            &mut session,
            Inbound::new(format),
            &mut events,
            live.no_packet_timeout(),
        )
        .await
    };
    let uplink = uplink(&session, started.elapsed());
    let result = session.end().await.map_err(ApiError::from);
    let _ = state
        .audit_with(
            &actor,
            AuditAction::LiveStop,
            CONSOLE_LIVE_ID,
            None,
            Some(format!(
                "{}: {:.0} s, {} packets, {:.1} kb/s on the network",
                ended.as_str(),
                uplink.seconds,
                uplink.packets,
                uplink.network_kbps
            )),
            result,
        )
        .await;
    tracing::info!(
        reason = ended.as_str(),
        seconds = uplink.seconds,
        packets = uplink.packets,
        websocket_kbps = uplink.websocket_kbps,
        network_kbps = uplink.network_kbps,
        "live from the console ended"
    );
    let last = serde_json::json!({
        "ended": ended.as_str(),
        "seconds": uplink.seconds,
        "packets": uplink.packets,
        "websocket_kbps": uplink.websocket_kbps,
        "network_kbps": uplink.network_kbps,
    });
    if ended != Ended::Closed {
        let _ = socket.send(Message::Text(last.to_string().into())).await;
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: ended.as_str().into(),
            })))
            .await;
    }
}

fn uplink(session: &ConsoleSession, elapsed: Duration) -> Uplink {
    let (packets, opus_bytes) = session.sent();
    let seconds = elapsed.as_secs_f64().max(0.001);
    let websocket = opus_bytes + packets * WS_OVERHEAD;
    let network = websocket + packets * TLS_TCP_IP_OVERHEAD;
    Uplink {
        seconds,
        packets,
        opus_bytes,
        websocket_kbps: websocket as f64 * 8.0 / seconds / 1000.0,
        network_kbps: network as f64 * 8.0 / seconds / 1000.0,
    }
}

/// How the browser's messages become Opus packets.
enum Inbound {
    Opus,
    Webm(WebmOpusStream, Vec<Vec<u8>>),
}

impl Inbound {
    fn new(format: UplinkFormat) -> Self {
        match format {
            UplinkFormat::Opus => Inbound::Opus,
            UplinkFormat::Webm => Inbound::Webm(WebmOpusStream::new(), Vec::new()),
        }
    }

    /// Hands what one message carries to the session.
    fn forward(&mut self, message: &[u8], session: &mut ConsoleSession) -> Result<(), Ended> {
        let sent = match self {
            Inbound::Opus => session.send(message),
            Inbound::Webm(stream, packets) => {
                if let Err(e) = stream.push(message, packets) {
                    tracing::warn!("console live: {e}");
                    return Err(Ended::BadMessage);
                }
                packets.drain(..).try_for_each(|p| session.send(&p))
            }
        };
        match sent {
            Ok(()) => Ok(()),
            Err(SendError::Closed) => Err(Ended::ServerStopped),
            Err(e) => {
                tracing::warn!("console live: {e}");
                Err(Ended::BadMessage)
            }
        }
    }
}

/// Packets from the browser into the live input until the broadcast ends.
async fn relay_packets(
    socket: &mut WebSocket,
    session: &mut ConsoleSession,
    mut inbound: Inbound,
    events: &mut broadcast::Receiver<OnAirEvent>,
    quiet_limit: Duration,
) -> Ended {
    let console_item = ItemRef::Live {
        id: CONSOLE_LIVE_ID.to_owned(),
    };
    loop {
        tokio::select! {
            message = tokio::time::timeout(quiet_limit, socket.recv()) => match message {
                Err(_) => return Ended::Silent,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return Ended::Closed,
                Ok(Some(Ok(Message::Binary(message)))) => {
                    if let Err(ended) = inbound.forward(&message, session) {
                        return ended;
                    }
                }
                Ok(Some(Ok(Message::Text(text)))) if text.as_str().trim() == "stop" => {
                    return Ended::Stopped
                }
                Ok(Some(Ok(Message::Text(_)))) => return Ended::BadMessage,
                // Pings are answered by the socket itself.
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            },
            event = events.recv() => match event {
                // Only someone else's stop ends it here: this loop is the session's own.
                Ok(OnAirEvent::Stopped { item, reason: StopReason::Ended, .. })
                    if item == console_item => return Ended::StoppedByAdmin,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ended::ServerStopped,
            },
        }
    }
}

/// A refusal sent on the socket before it closes.
#[derive(Debug, Clone, Serialize)]
struct Refusal {
    ok: bool,
    error: String,
    message_vi: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    speaker: Option<Speaker>,
}

impl Refusal {
    fn new(vietnamese: impl Into<String>, english: impl Into<String>) -> Self {
        Refusal {
            ok: false,
            error: english.into(),
            message_vi: vietnamese.into(),
            speaker: None,
        }
    }

    fn from_api(e: &ApiError) -> Self {
        Refusal::new(
            "Máy chủ không ghi được nhật ký, nên không phát. Hãy thử lại sau ít phút.",
            e.message(),
        )
    }
}

async fn refuse(socket: &mut WebSocket, refusal: Refusal) {
    let text = serde_json::to_string(&refusal).unwrap_or_default();
    let _ = socket.send(Message::Text(text.into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: "refused".into(),
        })))
        .await;
}

/// Reads and checks the first message: the CSRF token and the targets.
async fn hello(
    socket: &mut WebSocket,
    actor: &Actor,
    state: &AdminState,
) -> Result<(Targets, UplinkFormat), Refusal> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, socket.recv()).await;
    let text = match first {
        Ok(Some(Ok(Message::Text(text)))) => text,
        Err(_) => {
            return Err(Refusal::new(
                "Trình duyệt không gửi lời chào trong 10 giây. Hãy tải lại trang và thử lại.",
                "no first message within 10 s",
            ))
        }
        _ => {
            return Err(Refusal::new(
                "Tin nhắn đầu tiên phải là {\"csrf\", \"targets\"}. Hãy tải lại trang.",
                "the first message must be the JSON {\"csrf\", \"targets\"}",
            ))
        }
    };
    let hello: Hello = serde_json::from_str(text.as_str()).map_err(|e| {
        Refusal::new(
            "Yêu cầu phát trực tiếp không hợp lệ. Hãy tải lại trang và thử lại.",
            format!("the first message: {e}"),
        )
    })?;
    if let Some(expected) = &actor.csrf {
        let given = hello.csrf.as_deref().unwrap_or_default();
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(Refusal::new(
                "Phiên làm việc không khớp. Hãy tải lại trang bảng điều khiển và thử lại.",
                "missing or wrong CSRF token",
            ));
        }
    }
    let groups = state.schedule_lock().lock().await.groups.clone();
    let stations = hello
        .targets
        .resolve(state.district(), &groups)
        .map_err(|e| {
            Refusal::new(
                "Chưa chọn đúng nơi phát. Hãy chọn lại các xã.",
                e.to_string(),
            )
        })?;
    if stations.is_empty() {
        return Err(Refusal::new(
            "Chưa chọn xã nào. Hãy chọn ít nhất một xã.",
            "no station is targeted",
        ));
    }
    if let Some(station) = stations
        .iter()
        .find(|s| actor.caller.refuses_station(s).is_some())
    {
        return Err(Refusal::new(
            format!(
                "Bạn chỉ được phát tới xã mình phụ trách, không được phát tới {station}. \
                 Hãy bỏ chọn xã đó."
            ),
            actor.caller.refuses_station(station).unwrap_or_default(),
        ));
    }
    Ok((hello.targets, hello.format))
}

fn begin_refusal(e: &BeginError) -> Refusal {
    match e {
        BeginError::Busy(speaker) => Refusal {
            speaker: Some(speaker.clone()),
            ..Refusal::new(
                format!(
                    "{} đang phát trực tiếp từ bảng điều khiển (từ {}). Mỗi lúc chỉ một người \
                     được phát; hãy đợi hoặc gọi cho người đó.",
                    speaker.user,
                    local_time(&speaker.since)
                ),
                e.to_string(),
            )
        },
        BeginError::LiveOnAir { item, station } => Refusal::new(
            format!("Phòng thu đang phát trực tiếp ({item}, ở {station}). Hãy đợi phòng thu dừng."),
            e.to_string(),
        ),
        BeginError::Refused(inner) => Refusal::new(
            "Máy chủ không bắt đầu phát được. Hãy thử lại; nếu vẫn lỗi, báo quản trị viên.",
            inner.to_string(),
        ),
    }
}

fn begin_refusal_api(e: &BeginError) -> ApiError {
    let status = match e {
        BeginError::Busy(_) | BeginError::LiveOnAir { .. } => StatusCode::CONFLICT,
        BeginError::Refused(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string())
}

/// `HH:MM` of an RFC 3339 instant in Vietnam's time, for a person reading the refusal.
fn local_time(rfc3339: &str) -> String {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| t.in_tz("Asia/Ho_Chi_Minh").ok())
        .map(|z| z.strftime("%H:%M").to_string())
        .unwrap_or_else(|| rfc3339.to_owned())
}
