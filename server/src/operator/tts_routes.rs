//! Text-to-speech routes (`library/tts.rs`), for the console's «Soạn thông báo bằng chữ» panel
//! and `radio-server library say`:
//!
//! - `GET /api/v1/tts` — the engine's limits ([`TtsInfo`]): what the console's character count
//!   and speed slider show;
//! - `POST /api/v1/tts/preview` [`PreviewRequest`] — the spoken text as audio (`audio/wav` from
//!   espeak-ng), not stored;
//! - `POST /api/v1/library/tts` [`SayRequest`] — the spoken text kept as a library item: the
//!   audio passes the upload's check (decoded whole, length and levels measured) and the answer
//!   is the item, 201, as for an upload.
//!
//! Refusals carry `message_vi` like the library's. A save is audited as a `library-upload`
//! whose detail says it was spoken from text; a preview changes nothing and is only logged.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::library::tts::{self, TtsError, DEFAULT_SPEED, SPEED_RANGE};
use crate::library::{valid_name, LibraryItem, NAME_MAX};
use crate::operator::admin::{Actor, AdminState, ApiError, Body};
use crate::operator::audit_log::AuditAction;
use crate::operator::library_routes;

/// The original name of an item spoken from text, with the format the engine wrote.
pub const ORIGINAL_NAME_STEM: &str = "tts";

/// Engines running at once: each takes a core for a moment (a neural one for seconds); more
/// requests wait their turn rather than slowing the broadcast's encoder.
const AT_ONCE: usize = 2;

static RUNNING: Semaphore = Semaphore::const_new(AT_ONCE);

/// `POST /api/v1/tts/preview`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// What to say; empty is refused with a message (not a JSON error).
    #[serde(default)]
    pub text: String,
    /// Words per minute, [`SPEED_RANGE`]; default [`DEFAULT_SPEED`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
}

/// `POST /api/v1/library/tts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SayRequest {
    /// The item's name in the library.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<u32>,
}

/// `GET /api/v1/tts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TtsInfo {
    /// `espeak-ng`, or the program of `tts_command`.
    pub engine: String,
    /// `tts_max_chars`: characters, as `[...text].length` counts them.
    pub max_chars: usize,
    pub speed_min: u32,
    pub speed_max: u32,
    pub speed_default: u32,
}

/// A speech error as the API answers it.
fn tts_failed(e: &TtsError) -> ApiError {
    let status = match e {
        TtsError::Empty | TtsError::TooLong { .. } | TtsError::Speed { .. } => {
            StatusCode::BAD_REQUEST
        }
        TtsError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        TtsError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        TtsError::NotStarted { .. }
        | TtsError::Failed { .. }
        | TtsError::NoAudio { .. }
        | TtsError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError::vietnamese(status, e.vietnamese(), e)
}

/// Speaks `text`, one of [`AT_ONCE`] engines at a time.
async fn speak(state: &AdminState, text: &str, speed: Option<u32>) -> Result<Vec<u8>, ApiError> {
    let settings = state.tts_settings();
    // Refused at once, without waiting for a turn.
    tts::check_request(&settings, text, speed).map_err(|e| tts_failed(&e))?;
    let _turn = RUNNING
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("text-to-speech: {e}")))?;
    tts::synthesize(&settings, text, speed)
        .await
        .map_err(|e| tts_failed(&e))
}

/// `GET /api/v1/tts`.
pub(crate) async fn info(State(state): State<Arc<AdminState>>) -> Json<TtsInfo> {
    let settings = state.tts_settings();
    Json(TtsInfo {
        engine: settings.engine().to_owned(),
        max_chars: settings.max_chars,
        speed_min: SPEED_RANGE.0,
        speed_max: SPEED_RANGE.1,
        speed_default: DEFAULT_SPEED,
    })
}

/// `POST /api/v1/tts/preview`.
pub(crate) async fn preview(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(request): Body<PreviewRequest>,
) -> Result<Response, ApiError> {
    let audio = speak(&state, &request.text, request.speed).await?;
    tracing::info!(
        "tts: preview of {} characters for {} ({})",
        request.text.chars().count(),
        actor.caller.name,
        actor.source
    );
    let content_type = tts::audio_content_type(&audio);
    let mut response = (StatusCode::OK, audio).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A preview of one text must not be replayed from a cache for another.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `POST /api/v1/library/tts`.
pub(crate) async fn save(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    Body(request): Body<SayRequest>,
) -> Result<(StatusCode, Json<LibraryItem>), ApiError> {
    let chars = request.text.chars().count();
    let speed = request.speed.unwrap_or(DEFAULT_SPEED);
    let result = say(&state, &actor, &request).await;
    let id = match &result {
        Ok(item) => item.id.clone(),
        Err(_) => request.name.clone(),
    };
    let detail = format!("text-to-speech: {chars} characters at {speed} words per minute");
    let item = state
        .audit_with(
            &actor,
            AuditAction::LibraryUpload,
            &id,
            None,
            Some(detail),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(item)))
}

async fn say(
    state: &Arc<AdminState>,
    actor: &Actor,
    request: &SayRequest,
) -> Result<LibraryItem, ApiError> {
    let name = valid_name(&request.name).ok_or_else(|| {
        ApiError::vietnamese(
            StatusCode::BAD_REQUEST,
            format!("Hãy đặt tên cho thông báo (từ 1 đến {NAME_MAX} ký tự) rồi lưu lại."),
            format!("the name must have 1 to {NAME_MAX} characters, without control characters"),
        )
    })?;
    let audio = speak(state, &request.text, request.speed).await?;
    let extension = match tts::audio_content_type(&audio) {
        "audio/wav" => "wav",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/flac" => "flac",
        _ => "bin",
    };
    let original = format!("{ORIGINAL_NAME_STEM}.{extension}");
    library_routes::store_bytes(state, actor, name, original, audio).await
}
