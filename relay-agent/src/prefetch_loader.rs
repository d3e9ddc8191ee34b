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
    load_due_at(cache, airing, unix_ms()).await;
}

/// [`load_due`] as of `now` (Unix ms): tests pass the instants they mean.
async fn load_due_at(cache: &Mutex<PrefetchCache>, airing: &Mutex<CachedAiring>, now: u64) {
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
            // Listed exactly as loaded (a changed name, level, time or recording is loaded
            // anew), and not over: a long outage keeps old manifests, not their audio in memory.
            a.retain(|item| item.end_unix_ms > now && listed.contains(item));
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

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::{put_blob_packet, PrefetchManifest, ProgrammeLevel};
    use sha2::{Digest, Sha256};

    fn blob() -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..50u8 {
            put_blob_packet(&mut b, &[i, 1, 2]);
        }
        b
    }

    /// A cache holding `blob` for an airing that starts `in_ms` from now.
    fn cache_with(dir: &std::path::Path, blob: &[u8], in_ms: i64) -> (PrefetchCache, PrefetchItem) {
        let now = unix_ms();
        let start = now.saturating_add_signed(in_ms);
        let item = PrefetchItem {
            entry_id: "tin".into(),
            programme_id: 5,
            name: "Bản tin".into(),
            level: ProgrammeLevel::Normal,
            start_unix_ms: start,
            end_unix_ms: start + 30_000,
            frame_count: 50,
            blob_size: blob.len() as u64,
            blob_sha256: Sha256::digest(blob).into(),
        };
        let mut cache = PrefetchCache::open(dir, 1 << 20, now).expect("open");
        cache
            .set_manifest(
                PrefetchManifest {
                    issued_unix_ms: now,
                    items: vec![item.clone()],
                },
                now,
            )
            .expect("manifest");
        let mut d = cache
            .begin(item.blob_sha256, item.blob_size, now)
            .expect("begin")
            .expect("new");
        assert!(d.write(0, blob).expect("write"));
        cache.finish(d).expect("finish");
        (cache, item)
    }

    #[tokio::test]
    async fn a_recording_due_soon_is_loaded_and_one_due_later_is_not_yet() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, item) = cache_with(dir.path(), &blob(), 10_000);
        let cache = Mutex::new(cache);
        let airing = Mutex::new(CachedAiring::new());
        load_due(&cache, &airing).await;
        assert!(airing
            .lock()
            .expect("lock")
            .is_ready("tin", item.start_unix_ms));

        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, item) = cache_with(dir.path(), &blob(), LOAD_AHEAD_MS as i64 + 60_000);
        let cache = Mutex::new(cache);
        let airing = Mutex::new(CachedAiring::new());
        load_due(&cache, &airing).await;
        assert!(!airing
            .lock()
            .expect("lock")
            .is_ready("tin", item.start_unix_ms));
    }

    #[tokio::test]
    async fn a_corrupt_recording_is_deleted_and_never_loaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cache, item) = cache_with(dir.path(), &blob(), 5_000);
        let path = cache.blob_path(&item.blob_sha256);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[10] ^= 0xff;
        std::fs::write(&path, bytes).expect("damage");
        let cache = Mutex::new(cache);
        let airing = Mutex::new(CachedAiring::new());
        load_due(&cache, &airing).await;
        assert!(!airing
            .lock()
            .expect("lock")
            .is_ready("tin", item.start_unix_ms));
        assert!(!path.exists(), "the corrupt blob is deleted");
        assert!(!cache.lock().expect("lock").contains(&item.blob_sha256));
    }

    #[tokio::test]
    async fn a_recording_whose_slot_is_over_leaves_memory_and_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Started 28 s ago in a 30 s slot: loaded now, over in a moment.
        let (cache, item) = cache_with(dir.path(), &blob(), -28_000);
        let path = cache.blob_path(&item.blob_sha256);
        let cache = Mutex::new(cache);
        let airing = Mutex::new(CachedAiring::new());
        // On the slot's own clock, not the machine's: the first pass 28 s into the slot, the
        // second just after its end.
        load_due_at(&cache, &airing, item.start_unix_ms + 28_000).await;
        assert!(airing
            .lock()
            .expect("lock")
            .is_ready("tin", item.start_unix_ms));
        load_due_at(&cache, &airing, item.end_unix_ms + 1).await;
        assert!(!airing
            .lock()
            .expect("lock")
            .is_ready("tin", item.start_unix_ms));
        assert!(!path.exists());
    }
}
