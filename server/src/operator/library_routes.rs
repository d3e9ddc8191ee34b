//! The audio library's routes (`library/`), for the console and `radio-server library`:
//!
//! - `GET /api/v1/library` — every item ([`LibraryItem`]), oldest upload first;
//! - `POST /api/v1/library?name=NAME` — an upload: the body is the file's bytes as they are
//!   (any `Content-Type`: `audio/*`, `application/octet-stream`; not multipart, so that a
//!   browser's `fetch(url, {method: "POST", body: file})` and `curl --data-binary @file` both
//!   work), the file's own name in the header `x-file-name`, percent-encoded UTF-8
//!   (`encodeURIComponent(file.name)`). `name` defaults to that file name without its
//!   extension. 201 with the item;
//! - `GET /api/v1/library/{id}/audio` — the file as uploaded, with the `Content-Type` a
//!   browser's `<audio>` plays and single `Range` requests answered (phones' players ask for
//!   ranges);
//! - `POST /api/v1/library/{id}/rename` `{"name": ...}`, `DELETE /api/v1/library/{id}`.
//!
//! An upload is counted as it arrives: past `library_max_upload_mb` it is refused with 413 and
//! nothing of it stays. A client that waits for `100 Continue` with a `Content-Length` over the
//! limit is refused before it sends; any other is read to its end (up to a bound) before the
//! 413, since a client still sending when the connection closes may never read the answer.
//!
//! Refusals carry `message_vi` ([`ErrorBody`](super::admin::ErrorBody)). Uploads, renames and
//! deletions are audited: a refused upload under the name it was given, a stored one under its
//! new id.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use hyper::body::{Body as _, Frame, SizeHint};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncSeekExt, AsyncWriteExt, ReadBuf};

use crate::library::{
    check_file, content_type, valid_name, LibraryError, LibraryItem, Refusal, NAME_MAX,
};
use crate::operator::admin::{Actor, AdminState, ApiError, Body};
use crate::operator::audit_log::AuditAction;
use crate::schedule::SourceSpec;

/// Bytes in a megabyte, as `library_max_upload_mb` counts them.
const MB: u64 = 1024 * 1024;

/// How much of an upload over the limit is still read (and thrown away) so that the client
/// reads the 413; past it the connection is closed on a client that keeps sending.
const DRAIN_MAX: u64 = 64 * MB;

/// The header with the uploaded file's own name (percent-encoded UTF-8).
pub const FILE_NAME_HEADER: &str = "x-file-name";

/// Longest original file name kept, in characters.
const ORIGINAL_NAME_MAX: usize = 255;

/// `POST /api/v1/library`'s query.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct UploadQuery {
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /api/v1/library/{id}/rename`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenameRequest {
    pub name: String,
}

fn not_found(id: &str) -> ApiError {
    ApiError::vietnamese(
        StatusCode::NOT_FOUND,
        format!(
            "Không có bản ghi `{id}` trong thư viện — có thể đã bị xoá; hãy tải lại danh sách."
        ),
        format!("no library item `{id}`"),
    )
}

fn bad_name() -> ApiError {
    ApiError::vietnamese(
        StatusCode::BAD_REQUEST,
        format!("Tên bản ghi phải có từ 1 đến {NAME_MAX} ký tự — hãy đặt lại tên."),
        format!("the name must have 1 to {NAME_MAX} characters, without control characters"),
    )
}

fn library_failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::vietnamese(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Máy chủ không lưu được thư viện — hãy thử lại, và báo quản trị viên nếu vẫn lỗi.",
        format!("the library: {e}"),
    )
}

fn from_library(e: LibraryError) -> ApiError {
    match e {
        LibraryError::NotFound { id } => not_found(&id),
        other => library_failed(other),
    }
}

fn refused(refusal: &Refusal) -> ApiError {
    let status = match refusal {
        Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::vietnamese(status, refusal.vietnamese(), refusal)
}

/// Runs blocking library work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| library_failed(format!("the task failed: {e}")))?
}

/// The listing's header with the upload limit in MB, so the console can refuse a file that is
/// too large before a phone spends its data sending it.
pub const MAX_UPLOAD_HEADER: &str = "x-library-max-upload-mb";

/// `GET /api/v1/library`.
pub(crate) async fn list(
    State(state): State<Arc<AdminState>>,
) -> Result<([(&'static str, String); 1], Json<Vec<LibraryItem>>), ApiError> {
    let limit_mb = (state.library_max_upload() / (1024 * 1024)).to_string();
    let items = blocking(move || state.store().library().list().map_err(from_library)).await?;
    Ok(([(MAX_UPLOAD_HEADER, limit_mb)], Json(items)))
}

/// `POST /api/v1/library?name=`.
pub(crate) async fn upload(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    query: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<LibraryItem>), ApiError> {
    let original = headers
        .get(FILE_NAME_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|v| clean_file_name(&percent_decode(v)))
        .unwrap_or_default();
    let (name, shown) = match query {
        Ok(Query(query)) => {
            let given = query.name.filter(|n| !n.trim().is_empty());
            let name = given.clone().or_else(|| {
                Path::new(&original)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
            });
            let shown = given.unwrap_or_else(|| original.clone());
            (Ok(name), shown)
        }
        Err(e) => (
            Err(ApiError::vietnamese(
                StatusCode::BAD_REQUEST,
                "Địa chỉ tải lên không hợp lệ — hãy tải lại trang rồi gửi lại tệp.",
                format!("the query string: {}", e.body_text()),
            )),
            original.clone(),
        ),
    };
    let result = match name {
        Ok(name) => receive(&state, &actor, name, original, &headers, body).await,
        Err(e) => Err(e),
    };
    let id = match &result {
        Ok(item) => item.id.clone(),
        Err(_) => shown,
    };
    let item = state
        .audit(&actor, AuditAction::LibraryUpload, &id, None, result)
        .await?;
    Ok((StatusCode::CREATED, Json(item)))
}

/// Receives, checks and stores one upload.
async fn receive(
    state: &Arc<AdminState>,
    actor: &Actor,
    name: Option<String>,
    original: String,
    headers: &HeaderMap,
    body: axum::body::Body,
) -> Result<LibraryItem, ApiError> {
    let name = name.as_deref().and_then(valid_name).ok_or_else(bad_name)?;
    let max = state.library_max_upload();
    let too_large = || refused(&Refusal::TooLarge { max_mb: max / MB });
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let waits_to_send = headers
        .get(header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    if waits_to_send && declared.is_some_and(|n| n > max) {
        return Err(too_large());
    }

    let worker = state.clone();
    let (path, file) =
        blocking(move || worker.store().library().new_part().map_err(library_failed)).await?;
    // Removed on every way out but the rename into place, also when the client goes away and
    // this future is dropped.
    let part = Part(Some(path));
    let mut file = tokio::fs::File::from_std(file);
    let size = match receive_body(body, &mut file, max).await {
        Received::All(size) => size,
        Received::TooLarge => return Err(too_large()),
        Received::Broken(reason) => {
            return Err(ApiError::vietnamese(
                StatusCode::BAD_REQUEST,
                "Tệp gửi lên bị ngắt giữa chừng — hãy kiểm tra mạng rồi tải lên lại.",
                format!("the upload broke off: {reason}"),
            ))
        }
        Received::Unwritable(reason) => return Err(library_failed(reason)),
    };
    // On disk before the rename, so that a power cut cannot leave a listed item with a
    // half-written file.
    file.sync_all()
        .await
        .map_err(|e| library_failed(format!("{}: {e}", part.path().display())))?;
    drop(file);

    keep(state, actor, name, original, part, size).await
}

/// Stores audio made on the server (text-to-speech) as an item, through the same check as an
/// upload: decoded whole and measured, refused with the same Vietnamese messages.
pub(crate) async fn store_bytes(
    state: &Arc<AdminState>,
    actor: &Actor,
    name: String,
    original: String,
    bytes: Vec<u8>,
) -> Result<LibraryItem, ApiError> {
    let max = state.library_max_upload();
    if bytes.len() as u64 > max {
        return Err(refused(&Refusal::TooLarge { max_mb: max / MB }));
    }
    let worker = state.clone();
    let (path, file) =
        blocking(move || worker.store().library().new_part().map_err(library_failed)).await?;
    let part = Part(Some(path));
    let size = bytes.len() as u64;
    let shown = part.path().display().to_string();
    blocking(move || {
        use std::io::Write as _;
        let mut file = file;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| library_failed(format!("{shown}: {e}")))
    })
    .await?;
    keep(state, actor, name, original, part, size).await
}

/// Checks the complete file at `part` and, when it passes, renames it into the library.
async fn keep(
    state: &Arc<AdminState>,
    actor: &Actor,
    name: String,
    original: String,
    part: Part,
    size: u64,
) -> Result<LibraryItem, ApiError> {
    let checked_path = part.path().to_path_buf();
    let check = blocking(move || Ok(check_file(&checked_path))).await?;
    let check = match check {
        Ok(check) => check,
        Err(Ok(refusal)) => return Err(refused(&refusal)),
        Err(Err(reason)) => return Err(library_failed(reason)),
    };
    let item = LibraryItem {
        id: String::new(),
        name,
        original_name: original,
        format: check.format,
        codec: check.codec,
        duration_secs: check.duration_secs,
        peak_dbfs: check.peak_dbfs,
        rms_dbfs: check.rms_dbfs,
        size_bytes: size,
        uploaded_at: Timestamp::now(),
        uploaded_by: actor.caller.name.clone(),
        path: PathBuf::new(),
    };
    let worker = state.clone();
    let part_path = part.path().to_path_buf();
    let item = blocking(move || {
        worker
            .store()
            .library()
            .add(&part_path, item)
            .map_err(library_failed)
    })
    .await?;
    part.keep();
    Ok(item)
}

/// An upload's file while it is not an item yet: removed when dropped.
#[derive(Debug)]
struct Part(Option<PathBuf>);

impl Part {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// It became an item (renamed into place): nothing to remove.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("library: cannot remove {}: {e}", path.display());
                }
            }
        }
    }
}

enum Received {
    All(u64),
    TooLarge,
    /// The client's side failed (disconnected, bad chunking).
    Broken(String),
    /// The server could not write it.
    Unwritable(String),
}

/// Copies `body` into `file`, counting: past `max` bytes it stops writing and drains the rest
/// (up to [`DRAIN_MAX`]).
async fn receive_body(
    mut body: axum::body::Body,
    file: &mut tokio::fs::File,
    max: u64,
) -> Received {
    let mut size = 0u64;
    let mut over = false;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        let data = match frame {
            None => break,
            Some(Err(e)) => return Received::Broken(e.to_string()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: nothing of the file.
                Err(_) => continue,
            },
        };
        size = size.saturating_add(data.len() as u64);
        if size > max {
            over = true;
            if size > max.saturating_add(DRAIN_MAX) {
                break;
            }
            continue;
        }
        if let Err(e) = file.write_all(&data).await {
            return Received::Unwritable(e.to_string());
        }
    }
    if over {
        return Received::TooLarge;
    }
    if let Err(e) = file.flush().await {
        return Received::Unwritable(e.to_string());
    }
    Received::All(size)
}

/// `GET /api/v1/library/{id}/audio`.
pub(crate) async fn audio(
    State(state): State<Arc<AdminState>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lookup = id.clone();
    let item = blocking(move || state.store().library().get(&lookup).map_err(from_library)).await?;
    let mut file = tokio::fs::File::open(&item.path)
        .await
        .map_err(|e| library_failed(format!("{}: {e}", item.path.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| library_failed(format!("{}: {e}", item.path.display())))?
        .len();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, len));
    let (status, start, end) = match range {
        None | Some(Range::Ignored) => (StatusCode::OK, 0, len),
        Some(Range::Bytes { start, end }) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(Range::Unsatisfiable) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{len}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return Ok(response);
        }
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| library_failed(format!("{}: {e}", item.path.display())))?;
    }
    let body = axum::body::Body::new(FileBody {
        file,
        remaining: end - start,
        buf: Vec::new(),
    });
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&item.format)),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    if status == StatusCode::PARTIAL_CONTENT {
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1)) {
            headers.insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Range {
    /// Bytes `start..end`.
    Bytes { start: u64, end: u64 },
    /// Nothing of the file: 416.
    Unsatisfiable,
    /// Not a single byte range (several ranges, another unit): the whole file, as RFC 9110
    /// allows.
    Ignored,
}

fn byte_range(header: &str, len: u64) -> Range {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Range::Ignored;
    };
    if spec.contains(',') {
        return Range::Ignored;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // The last `n` bytes.
        (true, false) => match parse(last) {
            Some(0) => Range::Unsatisfiable,
            Some(n) if len > 0 => Range::Bytes {
                start: len.saturating_sub(n),
                end: len,
            },
            Some(_) => Range::Unsatisfiable,
            None => Range::Ignored,
        },
        (false, _) => {
            let Some(start) = parse(first) else {
                return Range::Ignored;
            };
            let end = if last.is_empty() {
                len
            } else {
                match parse(last) {
                    Some(last) if last >= start => last.saturating_add(1).min(len),
                    _ => return Range::Ignored,
                }
            };
            if start >= len {
                Range::Unsatisfiable
            } else {
                Range::Bytes { start, end }
            }
        }
        (true, true) => Range::Ignored,
    }
}

/// A file's bytes as a response body, read as the client takes them.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

/// Bytes read from the file at a time.
const READ_CHUNK: usize = 64 * 1024;

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(READ_CHUNK);
        let this = &mut *self;
        this.buf.resize(want, 0);
        let mut read = ReadBuf::new(&mut this.buf);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = read.filled().len();
                if n == 0 {
                    // The file shrank under us: end here rather than promise bytes that
                    // will never come.
                    this.remaining = 0;
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the library file ended early",
                    ))));
                }
                this.remaining -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
                    &this.buf[..n],
                )))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// `POST /api/v1/library/{id}/rename`.
pub(crate) async fn rename(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<RenameRequest>,
) -> Result<Json<LibraryItem>, ApiError> {
    let worker = state.clone();
    let target = id.clone();
    let result = match valid_name(&request.name) {
        None => Err(bad_name()),
        Some(name) => {
            blocking(move || {
                worker
                    .store()
                    .library()
                    .rename(&target, &name)
                    .map_err(from_library)
            })
            .await
        }
    };
    let item = state
        .audit(&actor, AuditAction::LibraryRename, &id, None, result)
        .await?;
    Ok(Json(item))
}

/// `DELETE /api/v1/library/{id}`.
pub(crate) async fn delete(
    State(state): State<Arc<AdminState>>,
    Extension(actor): Extension<Actor>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<LibraryItem>, ApiError> {
    let result = remove(&state, &id).await;
    let item = state
        .audit(&actor, AuditAction::LibraryDelete, &id, None, result)
        .await?;
    Ok(Json(item))
}

/// Removes item `id` unless something scheduled or on air plays its file.
async fn remove(state: &Arc<AdminState>, id: &str) -> Result<LibraryItem, ApiError> {
    // Held until the file is gone: a schedule change checks that its files exist under this
    // lock, so none can start naming this one in between.
    let schedule = state.schedule_lock().lock().await;
    let worker = state.clone();
    let lookup = id.to_owned();
    let item =
        blocking(move || worker.store().library().get(&lookup).map_err(from_library)).await?;
    let mut uses: Vec<String> = schedule
        .entries
        .iter()
        .filter(|e| plays(&e.source, &item.path))
        .map(|e| format!("đang có trong lịch: {} ({})", e.name, e.id))
        .collect();
    let on_air = state
        .on_air()
        .sources_in_use()
        .await
        .map_err(ApiError::from)?;
    uses.extend(
        on_air
            .iter()
            .filter(|u| plays(&u.source, &item.path))
            .map(|u| match u.kind {
                "emergency" => format!("đang phát khẩn cấp: {} ({})", u.name, u.id),
                _ => format!("đang có bản tin: {} ({})", u.name, u.id),
            }),
    );
    if !uses.is_empty() {
        let list = uses.join("; ");
        return Err(ApiError::vietnamese(
            StatusCode::CONFLICT,
            format!("Không xoá được bản ghi — {list} — hãy gỡ khỏi đó trước rồi xoá lại."),
            format!("`{id}` is in use, remove it there first: {list}"),
        ));
    }
    let worker = state.clone();
    let target = id.to_owned();
    let item = blocking(move || {
        worker
            .store()
            .library()
            .remove(&target)
            .map_err(from_library)
    })
    .await?;
    drop(schedule);
    Ok(item)
}

/// Whether `source` plays the file at `path` (the same file, however the path is written).
fn plays(source: &SourceSpec, path: &Path) -> bool {
    let same = |p: &PathBuf| {
        p == path
            || match (p.canonicalize(), path.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
    };
    match source {
        SourceSpec::File { path } => same(path),
        SourceSpec::Playlist { paths } => paths.iter().any(same),
        SourceSpec::Relay { .. } | SourceSpec::Upstream { .. } | SourceSpec::Live => false,
    }
}

/// Decodes `%XX` escapes (what `encodeURIComponent` makes); anything else is kept, and bytes
/// that are not UTF-8 become U+FFFD.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes `text` for [`FILE_NAME_HEADER`] (what `encodeURIComponent` leaves alone
/// stays).
pub fn percent_encode(text: &str) -> String {
    use std::fmt::Write as _;
    text.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// The last component of a file name a client sent, without control characters, at most
/// [`ORIGINAL_NAME_MAX`] characters.
fn clean_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    last.chars()
        .filter(|c| !c.is_control())
        .take(ORIGINAL_NAME_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_read_as_browsers_send_them() {
        assert_eq!(
            byte_range("bytes=0-", 100),
            Range::Bytes { start: 0, end: 100 }
        );
        assert_eq!(
            byte_range("bytes=10-19", 100),
            Range::Bytes { start: 10, end: 20 }
        );
        assert_eq!(
            byte_range("bytes=90-500", 100),
            Range::Bytes {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            byte_range("bytes=-30", 100),
            Range::Bytes {
                start: 70,
                end: 100
            }
        );
        assert_eq!(
            byte_range("bytes=-300", 100),
            Range::Bytes { start: 0, end: 100 }
        );
        assert_eq!(byte_range("bytes=100-", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 100), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-1,5-9", 100), Range::Ignored);
        assert_eq!(byte_range("items=0-1", 100), Range::Ignored);
        assert_eq!(byte_range("bytes=9-1", 100), Range::Ignored);
        assert_eq!(byte_range("bytes=x-1", 100), Range::Ignored);
    }

    #[test]
    fn file_names_come_through_percent_encoding() {
        let name = "Thông báo tiêm phòng (xã Bình Trung).m4a";
        assert_eq!(percent_decode(&percent_encode(name)), name);
        assert_eq!(percent_decode("50%"), "50%");
        assert_eq!(percent_decode("a%zzb"), "a%zzb");
        assert_eq!(percent_decode("%E1%BB%"), "\u{fffd}%");
        assert_eq!(clean_file_name("C:\\Users\\A\\ghi âm.mp3"), "ghi âm.mp3");
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(clean_file_name("a\u{0}b\nc.wav"), "abc.wav");
    }
}
