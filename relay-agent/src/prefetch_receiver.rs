//! The agent's side of the prefetch streams: the server's manifests on one stream, each blob on
//! a stream of its own, into the [`PrefetchCache`].
//!
//! A blob the cache already holds (or cannot take) is refused by stopping its stream, so the
//! server moves on to the next one after a few kilobytes instead of sending it all again after
//! every reconnect.

use std::sync::{Arc, Mutex};

use quinn::{Connection, RecvStream};
use radio_proto::{
    ErrorCode, FrameReader, Message, PrefetchChunk, PrefetchManifest, PREFETCH_STOP_HELD,
    PREFETCH_STOP_RETRY,
};
use tracing::{debug, info, warn};

use crate::journal::unix_ms;
use crate::prefetch_cache::{hex, CacheError, Download, PrefetchCache};

/// Serves a prefetch stream whose first message is `first`.
pub(crate) async fn serve(
    stream: RecvStream,
    reader: FrameReader,
    first: Message,
    cache: Option<Arc<Mutex<PrefetchCache>>>,
    conn: Connection,
) {
    let Some(cache) = cache else {
        // A server sending prefetch to an agent that did not offer it: refuse quietly.
        let mut stream = stream;
        let _ = stream.stop(quinn::VarInt::from_u32(PREFETCH_STOP_HELD));
        return;
    };
    let result = match first {
        Message::PrefetchManifest(m) => manifests(stream, reader, m, &cache).await,
        Message::PrefetchChunk(c) => blob(stream, reader, c, &cache).await,
        other => Err((
            ErrorCode::ProtocolViolation,
            format!("{:?} opens no prefetch stream", other.message_type()),
        )),
    };
    if let Err((code, reason)) = result {
        warn!("prefetch stream: {reason}");
        conn.close(
            quinn::VarInt::from_u32(code.as_u16().into()),
            reason.as_bytes(),
        );
    }
}

type StreamError = (ErrorCode, String);

/// How many times (200 ms apart) a blob the cache does not want yet is asked again.
const NOT_WANTED_RETRIES: u32 = 25;

/// The next message of the stream; `None` at its end (or when the connection went: the link
/// loop reports that).
async fn next(
    stream: &mut RecvStream,
    reader: &mut FrameReader,
) -> Result<Option<Message>, StreamError> {
    loop {
        match reader.next_message() {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(e) => return Err((e.code(), format!("malformed prefetch stream: {e}"))),
        }
        match stream.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            Ok(None) => return Ok(None),
            Err(e) => {
                debug!("prefetch stream ended: {e}");
                return Ok(None);
            }
        }
    }
}

async fn manifests(
    mut stream: RecvStream,
    mut reader: FrameReader,
    first: PrefetchManifest,
    cache: &Arc<Mutex<PrefetchCache>>,
) -> Result<(), StreamError> {
    let mut manifest = first;
    loop {
        apply_manifest(manifest, cache).await;
        manifest = match next(&mut stream, &mut reader).await? {
            None => return Ok(()),
            Some(Message::PrefetchManifest(m)) => m,
            Some(other) => {
                return Err((
                    ErrorCode::ProtocolViolation,
                    format!("{:?} on the manifest stream", other.message_type()),
                ))
            }
        };
    }
}

async fn apply_manifest(manifest: PrefetchManifest, cache: &Arc<Mutex<PrefetchCache>>) {
    let cache = cache.clone();
    let items = manifest.items.len();
    // Syncing the manifest to disk: off the async threads.
    let applied = tokio::task::spawn_blocking(move || {
        let mut c = cache
            .lock()
            .map_err(|_| "prefetch cache poisoned".to_string())?;
        let removed = c
            .set_manifest(manifest, unix_ms())
            .map_err(|e| e.to_string())?;
        let held = c
            .manifest()
            .items
            .iter()
            .filter(|i| c.contains(&i.blob_sha256))
            .count();
        Ok::<_, String>((removed, held))
    })
    .await;
    match applied {
        Ok(Ok((removed, held))) => {
            for digest in &removed {
                info!(
                    blob = %hex(digest),
                    "prefetch cache: deleted a recording the schedule no longer airs here"
                );
            }
            info!(
                airings = items,
                held,
                removed = removed.len(),
                "prefetch manifest received"
            );
        }
        Ok(Err(e)) => warn!("cannot keep the prefetch manifest: {e}"),
        Err(e) => warn!("cannot keep the prefetch manifest: {e}"),
    }
}

async fn blob(
    mut stream: RecvStream,
    mut reader: FrameReader,
    first: PrefetchChunk,
    cache: &Arc<Mutex<PrefetchCache>>,
) -> Result<(), StreamError> {
    let digest = first.blob_sha256;
    // The manifest travels on another stream, and may be applied a moment after a blob it
    // lists starts arriving: a blob not (yet) wanted is asked again for a few seconds.
    let mut attempts = 0;
    let begun = loop {
        let begun = match cache.lock() {
            Ok(mut c) => c.begin(digest, first.blob_size, unix_ms()),
            Err(_) => return Ok(()),
        };
        match begun {
            Err(CacheError::NotWanted { .. }) if attempts < NOT_WANTED_RETRIES => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => break other,
        }
    };
    let mut download = match begun {
        Ok(Some(d)) => d,
        Ok(None) => {
            debug!(blob = %hex(&digest), "prefetched blob already held");
            let _ = stream.stop(quinn::VarInt::from_u32(PREFETCH_STOP_HELD));
            return Ok(());
        }
        Err(e) => {
            warn!("prefetch: {e}");
            let _ = stream.stop(quinn::VarInt::from_u32(PREFETCH_STOP_HELD));
            return Ok(());
        }
    };
    let mut chunk = first;
    loop {
        if chunk.blob_sha256 != digest || chunk.blob_size != download.size() {
            abandon(cache, download);
            return Err((
                ErrorCode::ProtocolViolation,
                "a blob stream switched blobs".into(),
            ));
        }
        let (d, written) = tokio::task::spawn_blocking(move || {
            let written = download.write(chunk.offset, &chunk.data);
            (download, written)
        })
        .await
        .map_err(|e| (ErrorCode::Internal, format!("prefetch write: {e}")))?;
        download = d;
        match written {
            Ok(false) => {}
            Ok(true) => {
                let size = chunk.blob_size;
                let finished = match cache.lock() {
                    Ok(mut c) => c.finish(download),
                    Err(_) => return Ok(()),
                };
                match finished {
                    Ok(()) => info!(blob = %hex(&digest), bytes = size, "prefetched"),
                    Err(e) => warn!("prefetch: {e}"),
                }
                // Read the stream's end, so that the server sees it taken whole rather than
                // stopped.
                while let Ok(Some(_)) = stream.read_chunk(1024, true).await {}
                return Ok(());
            }
            Err(e) => {
                // A corrupt or out-of-order blob: dropped and refused; it comes again with the
                // next manifest or connection.
                warn!("prefetch: {e}");
                let _ = stream.stop(quinn::VarInt::from_u32(PREFETCH_STOP_RETRY));
                abandon(cache, download);
                return Ok(());
            }
        }
        chunk = match next(&mut stream, &mut reader).await {
            Ok(Some(Message::PrefetchChunk(c))) => c,
            Ok(None) => {
                debug!(blob = %hex(&digest), "blob stream ended before the blob did");
                abandon(cache, download);
                return Ok(());
            }
            Ok(Some(other)) => {
                abandon(cache, download);
                return Err((
                    ErrorCode::ProtocolViolation,
                    format!("{:?} on a blob stream", other.message_type()),
                ));
            }
            Err(e) => {
                abandon(cache, download);
                return Err(e);
            }
        };
    }
}

fn abandon(cache: &Mutex<PrefetchCache>, download: Download) {
    if let Ok(mut c) = cache.lock() {
        c.abandon(download);
    }
}
