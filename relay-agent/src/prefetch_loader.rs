//! Reads prefetched recordings back from the cache shortly before their slots, checks them
//! again, and hands them to the playout clock; deletes what no slot needs any more.
//!
//! Reading and hashing a blob takes a while for a long programme, so it happens here, on a
//! blocking thread, up to [`LOAD_AHEAD_MS`] before the slot: the playout clock only ever takes
//! packets that are already in memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use radio_proto::PrefetchItem;
use tracing::{error, info, warn};

use crate::cached_airing::{CachedAiring, ReadyAiring};
use crate::journal::unix_ms;
use crate::prefetch_cache::{hex, read_blob, CacheError, PrefetchCache};

/// How long before its slot a recording is read into memory.
pub const LOAD_AHEAD_MS: u64 = 60_000;

/// Loads and evicts once a second, for ever (the agent aborts it at shutdown).
pub async fn run(cache: Arc<Mutex<PrefetchCache>>, airing: Arc<Mutex<CachedAiring>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        load_due(&cache, &airing).await;
    }
}

/// One pass: evict, drop loaded airings the manifest no longer lists, load the ones due soon.
pub async fn load_due(cache: &Mutex<PrefetchCache>, airing: &Mutex<CachedAiring>) {
    let now = unix_ms();
    let (listed, due, evicted) = {
        let Ok(mut c) = cache.lock() else { return };
        let evicted = c.evict(now);
        let due: Vec<(PrefetchItem, std::path::PathBuf)> = c
            .live_items(now)
            .filter(|i| i.start_unix_ms <= now + LOAD_AHEAD_MS && c.contains(&i.blob_sha256))
            .map(|i| (i.clone(), c.blob_path(&i.blob_sha256)))
            .collect();
        (c.manifest().items.clone(), due, evicted)
    };
    for digest in evicted {
        info!(
            blob = %hex(&digest),
            "prefetch cache: deleted a recording no slot needs any more"
        );
    }
    let due: Vec<_> = match airing.lock() {
        Ok(mut a) => {
            // Listed exactly as loaded: a changed name, level, time or recording is loaded anew.
            a.retain(|item| listed.contains(item));
            due.into_iter()
                .filter(|(i, _)| !a.is_ready(&i.entry_id, i.start_unix_ms))
                .collect()
        }
        Err(_) => return,
    };
    for (item, path) in due {
        let read_item = item.clone();
        let read = tokio::task::spawn_blocking(move || read_blob(&path, &read_item)).await;
        match read {
            Ok(Ok(packets)) => {
                info!(
                    programme = %item.name,
                    start_unix_ms = item.start_unix_ms,
                    frames = packets.len(),
                    "prefetched recording checked and ready to air"
                );
                if let Ok(mut a) = airing.lock() {
                    a.add(ReadyAiring { item, packets });
                }
            }
            Ok(Err(e @ CacheError::Corrupt { .. })) => {
                error!(
                    programme = %item.name,
                    "{e}; deleted, it will not air from the cache"
                );
                if let Ok(mut c) = cache.lock() {
                    c.forget(&item.blob_sha256);
                }
            }
            Ok(Err(e)) => warn!(programme = %item.name, "{e}"),
            Err(e) => warn!(programme = %item.name, "reading a prefetched recording: {e}"),
        }
    }
}
