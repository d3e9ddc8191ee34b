//! `POST /api/v1/backup` (admin): a consistent archive of the data directory, streamed back as
//! the answer's body (`application/x-tar`; `backup/`).
//!
//! Streamed rather than written to a path on the server: the caller (`radio-server backup`,
//! run by the nightly timer) writes it where it likes, and the server, confined by systemd
//! to its own state directory, needs no write access anywhere else. The snapshot is taken
//! before the answer starts, so a failure to take it is a 500 with its reason; then the tar
//! is written by a blocking task into a bounded pipe, so a large library passes through a
//! fixed buffer and a slow reader slows the writer rather than filling memory. An archive
//! cut short by a failure mid-stream has no manifest, which the client notices.
//!
//! One backup at a time (409 for a second). Audited as `backup` with the files and bytes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use crate::backup::Snapshot;
use crate::operator::admin::{Actor, AdminState, ApiError};
use crate::operator::audit_log::AuditAction;

/// Bytes between the tar writer and the HTTP body.
const PIPE: usize = 256 * 1024;

/// Set while a backup is taken or streamed.
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when the backup ends, however it ends.
struct Running;

impl Running {
    fn start() -> Option<Running> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Running)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// `POST /api/v1/backup`.
pub(crate) async fn backup(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
) -> Result<Response, ApiError> {
    let now = Timestamp::now();
    let taken = take(&state, now).await;
    let detail = taken.as_ref().ok().map(|(snapshot, _)| {
        let (files, bytes) = snapshot.size();
        format!("{files} files, {bytes} bytes")
    });
    let (snapshot, running) = state
        .audit_with(&actor, AuditAction::Backup, "backup", None, detail, taken)
        .await?;
    let (reader, writer) = tokio::io::duplex(PIPE);
    tokio::task::spawn_blocking(move || {
        let _running = running;
        let out = tokio_util::io::SyncIoBridge::new(writer);
        match snapshot.write_archive(out) {
            Ok(manifest) => tracing::info!(
                "backup: sent {} files, {} bytes",
                manifest.files.len(),
                manifest.total_bytes()
            ),
            Err(e) => tracing::error!("backup: the archive was cut short: {e}"),
        }
    });
    let name = crate::backup::file_name(now);
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response())
}

async fn take(state: &Arc<AdminState>, now: Timestamp) -> Result<(Snapshot, Running), ApiError> {
    let running = Running::start().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "a backup is already running; try again when it has finished",
        )
    })?;
    let store = state.store_handle();
    tokio::task::spawn_blocking(move || Snapshot::take(&store, now))
        .await
        .map_err(|e| ApiError::internal(format!("the backup task failed: {e}")))?
        .map(|snapshot| (snapshot, running))
        .map_err(|e| ApiError::internal(format!("backup: {e}")))
}
