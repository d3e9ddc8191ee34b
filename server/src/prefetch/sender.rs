//! Sending one agent its station's prefetch plan: the manifest on a stream of its own (again at
//! every change), then each blob the agent may lack on a stream per blob.
//!
//! Prefetch must never cost live audio. Its streams have a lower QUIC priority than the audio
//! stream, so queued audio always goes out first; blobs go in small chunks, paced at
//! [`PACE_FACTOR`] times the audio bitrate, and not at all while the station's audio queue is
//! backed up (the link is full). The agent refuses a blob it already holds by stopping its
//! stream, so a reconnect costs a few kilobytes per blob, not the blobs again.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use radio_proto::{BlobDigest, Message, PrefetchChunk};
use tokio::sync::watch;
use tracing::{debug, info, Instrument};

use super::planner::{Blob, StationPlan};
use crate::broadcast::station_output::StationOutput;

/// Below the audio stream's priority (0): quinn sends higher priorities first.
const PREFETCH_PRIORITY: i32 = -1;

/// Bytes of blob per chunk: small, so a chunk ahead of audio on a slow link delays it little.
pub const CHUNK_BYTES: usize = 4096;

/// Blobs are sent at most this many times faster than the audio plays: a day's recordings
/// arrive within hours, and the link keeps most of its room for the audio.
const PACE_FACTOR: u64 = 8;

/// Queued audio frames (100 ms) beyond which the link counts as full and blobs wait.
const AUDIO_BACKLOG_FRAMES: usize = 5;

/// The agent's prefetch streams; dropping it stops them.
#[derive(Debug)]
pub struct PrefetchStreams {
    task: tokio::task::JoinHandle<()>,
}

impl PrefetchStreams {
    /// Starts sending `plans` (the station's) to the agent on `conn`.
    pub fn start(
        conn: quinn::Connection,
        plans: watch::Receiver<Option<Arc<StationPlan>>>,
        output: Arc<StationOutput>,
        bitrate: u32,
    ) -> Self {
        let bytes_per_second = (u64::from(bitrate) / 8 * PACE_FACTOR).max(1);
        let task = tokio::spawn(
            async move {
                if let Err(e) = send(conn, plans, output, bytes_per_second).await {
                    debug!("prefetch streams ended: {e}");
                }
            }
            .in_current_span(),
        );
        Self { task }
    }
}

impl Drop for PrefetchStreams {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn send(
    conn: quinn::Connection,
    mut plans: watch::Receiver<Option<Arc<StationPlan>>>,
    output: Arc<StationOutput>,
    bytes_per_second: u64,
) -> Result<(), String> {
    // Nothing before the first plan: an empty manifest would empty the agent's cache.
    if plans.wait_for(Option::is_some).await.is_err() {
        return Ok(());
    }
    let mut manifests = conn.open_uni().await.map_err(|e| e.to_string())?;
    manifests
        .set_priority(PREFETCH_PRIORITY)
        .map_err(|e| e.to_string())?;
    loop {
        let Some(plan) = plans.borrow_and_update().clone() else {
            return Ok(());
        };
        // Blobs this agent holds under this plan: sent whole, or refused as held already.
        // Offered again with every new plan (a few kilobytes each), so that one the agent lost
        // meanwhile (found corrupt on its disk, say) comes back without a reconnect.
        let mut held: BTreeSet<BlobDigest> = BTreeSet::new();
        manifests
            .write_all(&Message::PrefetchManifest(plan.manifest.clone()).to_bytes())
            .await
            .map_err(|e| e.to_string())?;
        info!(
            airings = plan.manifest.items.len(),
            "prefetch manifest sent"
        );
        for item in &plan.manifest.items {
            if held.contains(&item.blob_sha256) {
                continue;
            }
            // A new plan goes first: this blob may no longer be wanted.
            if plans.has_changed().unwrap_or(true) {
                break;
            }
            let Some(blob) = plan.blobs.get(&item.blob_sha256) else {
                continue;
            };
            match send_blob(&conn, blob, &output, bytes_per_second, &plans).await? {
                Sent::Whole => {
                    info!(programme = %item.name, bytes = blob.bytes.len(), "prefetch blob sent");
                    held.insert(item.blob_sha256);
                }
                Sent::Held => {
                    held.insert(item.blob_sha256);
                }
                // Sent again with the next plan or connection.
                Sent::Again => {}
            }
        }
        if plans.changed().await.is_err() {
            return Ok(());
        }
    }
}

/// How a blob stream ended.
enum Sent {
    /// All of it went.
    Whole,
    /// The agent stopped it: it holds the blob, or cannot take it.
    Held,
    /// The agent stopped it because the bytes went wrong, or a new plan cut it short: worth
    /// sending again.
    Again,
}

/// Sends one blob on its own stream.
async fn send_blob(
    conn: &quinn::Connection,
    blob: &Blob,
    output: &StationOutput,
    bytes_per_second: u64,
    plans: &watch::Receiver<Option<Arc<StationPlan>>>,
) -> Result<Sent, String> {
    let stopped = |code: quinn::VarInt| {
        if code == quinn::VarInt::from_u32(radio_proto::PREFETCH_STOP_RETRY) {
            Sent::Again
        } else {
            Sent::Held
        }
    };
    let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
    stream
        .set_priority(PREFETCH_PRIORITY)
        .map_err(|e| e.to_string())?;
    let size = blob.bytes.len() as u64;
    for (i, data) in blob.bytes.chunks(CHUNK_BYTES).enumerate() {
        while output.queued_frames() > AUDIO_BACKLOG_FRAMES {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A new plan first: it may not want this blob any more (a long one takes minutes).
        if plans.has_changed().unwrap_or(true) {
            let _ = stream.reset(quinn::VarInt::from_u32(0));
            return Ok(Sent::Again);
        }
        let chunk = Message::PrefetchChunk(PrefetchChunk {
            blob_sha256: blob.digest,
            blob_size: size,
            offset: (i * CHUNK_BYTES) as u64,
            data: blob.bytes.slice_ref(data),
        })
        .to_bytes();
        match stream.write_all(&chunk).await {
            Ok(()) => {}
            Err(quinn::WriteError::Stopped(code)) => return Ok(stopped(code)),
            Err(e) => return Err(e.to_string()),
        }
        let pause = Duration::from_micros(chunk.len() as u64 * 1_000_000 / bytes_per_second);
        tokio::time::sleep(pause).await;
    }
    let _ = stream.finish();
    // Whether the agent took it all: it stops the stream if the bytes were wrong.
    match stream.stopped().await {
        Ok(Some(code)) => Ok(stopped(code)),
        _ => Ok(Sent::Whole),
    }
}
