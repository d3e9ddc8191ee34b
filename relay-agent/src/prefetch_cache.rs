//! The prefetch cache: the recordings this station is scheduled to air, held on disk before
//! their slots so that they air even if the link is down for the whole slot.
//!
//! Under `state_dir/prefetch`:
//! - `manifest` — the server's latest [`PrefetchManifest`], so an agent restarted while the link
//!   is down still knows what to air and when;
//! - `blobs/<sha256 in hex>` — each complete blob, named by its content;
//! - `blobs/<sha256>.part` — a blob being received, renamed only once all of it hashes right.
//!
//! The cache holds at most `max_bytes` of blobs, and only blobs that a listed airing whose slot
//! has not ended still needs: a new manifest, or the end of a slot, deletes the rest. A blob is
//! hashed when it is complete and again when it is read for airing; a blob that does not hash
//! to its name is deleted and logged, never played.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use radio_proto::{blob_packets, BlobDigest, Decode, Message, PrefetchItem, PrefetchManifest};
use sha2::{Digest, Sha256};

/// Why the cache could not do something.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The disk refused.
    #[error("prefetch cache {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The server sent a blob no airing of the current manifest needs.
    #[error("blob {digest} is not needed by the current manifest")]
    NotWanted { digest: String },
    /// The blob does not fit beside the ones already held.
    #[error(
        "blob {digest} ({size} bytes) does not fit the prefetch cache: {used} of {max} bytes \
         in use (prefetch_max_mb)"
    )]
    Full {
        digest: String,
        size: u64,
        used: u64,
        max: u64,
    },
    /// The blob is already being received on another stream.
    #[error("blob {digest} is already being received")]
    Busy { digest: String },
    /// The blob's bytes are not what its name promises.
    #[error("blob {digest} is corrupt: {reason}")]
    Corrupt { digest: String, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |error| CacheError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The lowercase hex form of a digest: the blob's file name.
pub fn hex(digest: &BlobDigest) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(name: &str) -> Option<BlobDigest> {
    if name.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(name.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// The on-disk cache. Not thread-safe by itself: the agent shares it behind a mutex and keeps
/// slow work (receiving, hashing a whole blob for airing) outside the lock.
#[derive(Debug)]
pub struct PrefetchCache {
    dir: PathBuf,
    max_bytes: u64,
    manifest: PrefetchManifest,
    /// Complete blobs on disk, with their sizes.
    blobs: BTreeMap<BlobDigest, u64>,
    /// Blobs being received, with the space reserved for them. A reservation lasts as long as
    /// its [`Download`] does: one dropped on any path (a link that failed mid-blob aborts its
    /// task) frees it, with no call needed.
    receiving: BTreeMap<BlobDigest, (u64, Weak<()>)>,
}

impl PrefetchCache {
    /// Opens (creating) the cache in `dir`, reads the manifest back, forgets unfinished
    /// downloads and deletes blobs that no airing still needs at `now_ms`.
    pub fn open(dir: &Path, max_bytes: u64, now_ms: u64) -> Result<Self, CacheError> {
        let blobs_dir = dir.join("blobs");
        fs::create_dir_all(&blobs_dir).map_err(io(&blobs_dir))?;
        let manifest_path = dir.join("manifest");
        let manifest = match fs::read(&manifest_path) {
            Ok(bytes) => match Message::decode(&mut &bytes[..]) {
                Ok(Message::PrefetchManifest(m)) => m,
                other => {
                    tracing::warn!(
                        "prefetch manifest {} is unreadable ({other:?}); starting without one",
                        manifest_path.display()
                    );
                    let _ = fs::remove_file(&manifest_path);
                    PrefetchManifest::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => PrefetchManifest::default(),
            Err(e) => return Err(io(&manifest_path)(e)),
        };
        let mut blobs = BTreeMap::new();
        for entry in fs::read_dir(&blobs_dir).map_err(io(&blobs_dir))? {
            let entry = entry.map_err(io(&blobs_dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let digest = name.to_str().and_then(from_hex);
            match (digest, entry.metadata()) {
                (Some(digest), Ok(meta)) if meta.is_file() => {
                    blobs.insert(digest, meta.len());
                }
                // A download cut short by a stop or a power cut, or a stray file: it is received
                // again from the start.
                _ => {
                    if let Err(e) = fs::remove_file(&path) {
                        tracing::warn!("cannot delete {}: {e}", path.display());
                    }
                }
            }
        }
        let mut cache = PrefetchCache {
            dir: dir.to_owned(),
            max_bytes,
            manifest,
            blobs,
            receiving: BTreeMap::new(),
        };
        cache.evict(now_ms);
        Ok(cache)
    }

    /// The latest manifest (empty before the first).
    pub fn manifest(&self) -> &PrefetchManifest {
        &self.manifest
    }

    /// Bytes of complete blobs held.
    pub fn used_bytes(&self) -> u64 {
        self.blobs.values().sum()
    }

    /// Whether the complete blob is held.
    pub fn contains(&self, digest: &BlobDigest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Where a complete blob lives.
    pub fn blob_path(&self, digest: &BlobDigest) -> PathBuf {
        self.dir.join("blobs").join(hex(digest))
    }

    /// Replaces the manifest (durably: written aside, synced, renamed) and deletes the blobs
    /// the new one does not need. Returns the digests deleted.
    pub fn set_manifest(
        &mut self,
        manifest: PrefetchManifest,
        now_ms: u64,
    ) -> Result<Vec<BlobDigest>, CacheError> {
        let path = self.dir.join("manifest");
        let temp = self.dir.join("manifest.tmp");
        let bytes = Message::PrefetchManifest(manifest.clone()).to_bytes();
        let mut file = File::create(&temp).map_err(io(&temp))?;
        file.write_all(&bytes).map_err(io(&temp))?;
        file.sync_all().map_err(io(&temp))?;
        fs::rename(&temp, &path).map_err(io(&path))?;
        self.manifest = manifest;
        Ok(self.evict(now_ms))
    }

    /// The airings of the manifest whose slot has not ended at `now_ms`.
    pub fn live_items(&self, now_ms: u64) -> impl Iterator<Item = &PrefetchItem> {
        self.manifest
            .items
            .iter()
            .filter(move |i| i.end_unix_ms > now_ms)
    }

    /// Deletes every blob no airing still needs at `now_ms`: not listed, or its slot is over.
    pub fn evict(&mut self, now_ms: u64) -> Vec<BlobDigest> {
        let needed: std::collections::BTreeSet<BlobDigest> =
            self.live_items(now_ms).map(|i| i.blob_sha256).collect();
        let gone: Vec<BlobDigest> = self
            .blobs
            .keys()
            .filter(|d| !needed.contains(*d))
            .copied()
            .collect();
        for digest in &gone {
            self.forget(digest);
        }
        gone
    }

    /// Deletes a blob (corrupt, or no longer needed).
    pub fn forget(&mut self, digest: &BlobDigest) {
        self.blobs.remove(digest);
        let path = self.blob_path(digest);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("cannot delete {}: {e}", path.display());
            }
        }
    }

    /// Starts receiving a blob of `size` bytes. `Ok(None)` when it is already held. The space
    /// is reserved until [`PrefetchCache::finish`] or [`PrefetchCache::abandon`].
    pub fn begin(
        &mut self,
        digest: BlobDigest,
        size: u64,
        now_ms: u64,
    ) -> Result<Option<Download>, CacheError> {
        if self.contains(&digest) {
            return Ok(None);
        }
        let name = hex(&digest);
        let Some(item) = self.live_items(now_ms).find(|i| i.blob_sha256 == digest) else {
            return Err(CacheError::NotWanted { digest: name });
        };
        if item.blob_size != size {
            return Err(CacheError::Corrupt {
                digest: name,
                reason: format!("sent as {size} bytes, listed as {} bytes", item.blob_size),
            });
        }
        self.receiving
            .retain(|_, (_, download)| download.strong_count() > 0);
        if self.receiving.contains_key(&digest) {
            return Err(CacheError::Busy { digest: name });
        }
        let used = self.used_bytes() + self.receiving.values().map(|(size, _)| size).sum::<u64>();
        if used.saturating_add(size) > self.max_bytes {
            return Err(CacheError::Full {
                digest: name,
                size,
                used,
                max: self.max_bytes,
            });
        }
        let path = self.dir.join("blobs").join(format!("{name}.part"));
        let file = File::create(&path).map_err(io(&path))?;
        let alive = Arc::new(());
        self.receiving
            .insert(digest, (size, Arc::downgrade(&alive)));
        Ok(Some(Download {
            digest,
            size,
            written: 0,
            hasher: Sha256::new(),
            file,
            path,
            kept: false,
            _alive: alive,
        }))
    }

    /// Puts a complete, verified download in place under its name.
    pub fn finish(&mut self, mut download: Download) -> Result<(), CacheError> {
        self.receiving.remove(&download.digest);
        let path = self.blob_path(&download.digest);
        fs::rename(&download.path, &path).map_err(io(&path))?;
        download.kept = true;
        self.blobs.insert(download.digest, download.size);
        Ok(())
    }

    /// Drops an unfinished or failed download, its `.part` file and its reservation (as
    /// dropping it does; this frees the reservation at once).
    pub fn abandon(&mut self, download: Download) {
        self.receiving.remove(&download.digest);
    }
}

/// A blob being received: written in order to its `.part` file and hashed as it goes.
#[derive(Debug)]
pub struct Download {
    digest: BlobDigest,
    size: u64,
    written: u64,
    hasher: Sha256,
    file: File,
    path: PathBuf,
    /// Renamed into place: nothing to delete.
    kept: bool,
    /// Keeps the cache's reservation for this download.
    _alive: Arc<()>,
}

impl Drop for Download {
    fn drop(&mut self) {
        if !self.kept {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!("cannot delete {}: {e}", self.path.display());
            }
        }
    }
}

impl Download {
    /// The blob's digest.
    pub fn digest(&self) -> &BlobDigest {
        &self.digest
    }

    /// The whole blob's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends the bytes at `offset`, which must follow what was written. Returns true once
    /// the blob is complete and hashes to its name (synced to disk: ready for
    /// [`PrefetchCache::finish`]).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<bool, CacheError> {
        if offset != self.written {
            return Err(CacheError::Corrupt {
                digest: hex(&self.digest),
                reason: format!("chunk at offset {offset}, expected {}", self.written),
            });
        }
        let end = self.written + data.len() as u64;
        if end > self.size {
            return Err(CacheError::Corrupt {
                digest: hex(&self.digest),
                reason: format!("{end} bytes sent, the blob has {}", self.size),
            });
        }
        self.file.write_all(data).map_err(io(&self.path))?;
        self.hasher.update(data);
        self.written = end;
        if self.written < self.size {
            return Ok(false);
        }
        let actual: BlobDigest = self.hasher.clone().finalize().into();
        if actual != self.digest {
            return Err(CacheError::Corrupt {
                digest: hex(&self.digest),
                reason: format!("received bytes hash to {}", hex(&actual)),
            });
        }
        self.file.sync_all().map_err(io(&self.path))?;
        Ok(true)
    }
}

/// Reads the blob of `item` from `path` for airing, checking its size, its hash and its
/// packets. The caller deletes it ([`PrefetchCache::forget`]) on [`CacheError::Corrupt`].
pub fn read_blob(path: &Path, item: &PrefetchItem) -> Result<Vec<Bytes>, CacheError> {
    let digest = hex(&item.blob_sha256);
    let corrupt = |reason: String| CacheError::Corrupt {
        digest: digest.clone(),
        reason,
    };
    let file = File::open(path).map_err(io(path))?;
    let mut bytes = Vec::new();
    // At most one byte past the listed size: enough to tell it is too long.
    file.take(item.blob_size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 != item.blob_size {
        return Err(corrupt(format!(
            "{} bytes on disk, {} listed",
            bytes.len(),
            item.blob_size
        )));
    }
    let actual: BlobDigest = Sha256::digest(&bytes).into();
    if actual != item.blob_sha256 {
        return Err(corrupt(format!(
            "the bytes on disk hash to {}",
            hex(&actual)
        )));
    }
    let packets = blob_packets(&Bytes::from(bytes)).map_err(|e| corrupt(e.to_string()))?;
    if packets.len() as u64 != item.frame_count {
        return Err(corrupt(format!(
            "{} packets, {} listed",
            packets.len(),
            item.frame_count
        )));
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::{put_blob_packet, ProgrammeLevel};

    fn blob(frames: usize, seed: u8) -> Vec<u8> {
        let mut b = Vec::new();
        for i in 0..frames {
            put_blob_packet(&mut b, &[seed, i as u8, 1, 2, 3]);
        }
        b
    }

    fn item(entry: &str, start: u64, blob: &[u8], frames: u64) -> PrefetchItem {
        PrefetchItem {
            entry_id: entry.into(),
            programme_id: 1,
            name: "Bản tin".into(),
            level: ProgrammeLevel::Normal,
            start_unix_ms: start,
            end_unix_ms: start + 60_000,
            frame_count: frames,
            blob_size: blob.len() as u64,
            blob_sha256: Sha256::digest(blob).into(),
        }
    }

    fn manifest(items: Vec<PrefetchItem>) -> PrefetchManifest {
        PrefetchManifest {
            issued_unix_ms: 0,
            items,
        }
    }

    /// A cache in `dir` whose manifest lists `item` alone.
    fn cache_listing(dir: &Path, item: &PrefetchItem) -> PrefetchCache {
        let mut cache = PrefetchCache::open(dir, 1 << 20, 0).expect("open");
        cache
            .set_manifest(manifest(vec![item.clone()]), 0)
            .expect("manifest");
        cache
    }

    /// A download of `item`'s blob, which the cache must not hold yet.
    fn download(cache: &mut PrefetchCache, item: &PrefetchItem) -> Download {
        cache
            .begin(item.blob_sha256, item.blob_size, 0)
            .expect("begin")
            .expect("not held yet")
    }

    /// Receives `bytes` in chunks of 7 and puts the blob in place.
    fn receive(cache: &mut PrefetchCache, item: &PrefetchItem, bytes: &[u8]) {
        let mut d = download(cache, item);
        let mut done = false;
        for (i, chunk) in bytes.chunks(7).enumerate() {
            done = d.write(i as u64 * 7, chunk).expect("write");
        }
        assert!(done);
        cache.finish(d).expect("finish");
    }

    #[test]
    fn a_blob_is_received_kept_across_a_restart_and_read_for_airing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = blob(10, 1);
        let it = item("tin", 1_000, &b, 10);
        let mut cache = cache_listing(dir.path(), &it);
        receive(&mut cache, &it, &b);
        assert!(cache.contains(&it.blob_sha256));
        assert_eq!(
            cache
                .begin(it.blob_sha256, it.blob_size, 0)
                .ok()
                .flatten()
                .map(|_| ()),
            None
        );
        drop(cache);

        let cache = PrefetchCache::open(dir.path(), 1 << 20, 0).expect("reopen");
        assert_eq!(cache.manifest().items, vec![it.clone()]);
        let packets = read_blob(&cache.blob_path(&it.blob_sha256), &it).expect("read");
        assert_eq!(packets.len(), 10);
        assert_eq!(&packets[3][..], &[1, 3, 1, 2, 3]);
    }

    #[test]
    fn a_corrupt_download_is_refused_and_a_corrupt_file_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = blob(10, 1);
        let it = item("tin", 1_000, &b, 10);
        let mut cache = cache_listing(dir.path(), &it);

        // One byte flipped on the way: the last chunk fails the hash and nothing is kept.
        let mut d = download(&mut cache, &it);
        let mut bad = b.clone();
        bad[5] ^= 1;
        let half = bad.len() / 2;
        assert!(!d.write(0, &bad[..half]).expect("first half"));
        assert!(matches!(
            d.write(half as u64, &bad[half..]),
            Err(CacheError::Corrupt { .. })
        ));
        cache.abandon(d);
        assert!(!cache.contains(&it.blob_sha256));
        assert_eq!(
            fs::read_dir(dir.path().join("blobs")).expect("dir").count(),
            0
        );

        // Out of order is refused too.
        let mut d = download(&mut cache, &it);
        assert!(matches!(
            d.write(3, &b[3..]),
            Err(CacheError::Corrupt { .. })
        ));
        cache.abandon(d);

        // Complete and right, then damaged on disk: reading it for airing finds out.
        receive(&mut cache, &it, &b);
        let path = cache.blob_path(&it.blob_sha256);
        let mut on_disk = fs::read(&path).expect("read");
        on_disk[9] ^= 0x40;
        fs::write(&path, &on_disk).expect("damage");
        assert!(matches!(
            read_blob(&path, &it),
            Err(CacheError::Corrupt { .. })
        ));
        on_disk.push(0);
        fs::write(&path, &on_disk).expect("lengthen");
        assert!(matches!(
            read_blob(&path, &it),
            Err(CacheError::Corrupt { .. })
        ));
        cache.forget(&it.blob_sha256);
        assert!(!path.exists());
    }

    #[test]
    fn a_download_dropped_midway_frees_its_space_and_its_part_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let b = blob(10, 1);
        let it = item("tin", 1_000, &b, 10);
        let mut cache = cache_listing(dir.path(), &it);
        let mut d = download(&mut cache, &it);
        assert!(!d.write(0, &b[..4]).expect("write"));
        assert!(matches!(
            cache.begin(it.blob_sha256, it.blob_size, 0),
            Err(CacheError::Busy { .. })
        ));
        // The link failed: the receiving task is gone, with its download.
        drop(d);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs")).expect("dir").count(),
            0
        );
        receive(&mut cache, &it, &b);
        assert!(cache.contains(&it.blob_sha256));
    }

    #[test]
    fn the_size_limit_holds_and_past_or_unlisted_blobs_are_evicted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (blob(20, 1), blob(20, 2));
        let (ia, ib) = (item("a", 1_000, &a, 20), item("b", 100_000, &b, 20));
        // Room for one blob only.
        let mut cache = PrefetchCache::open(dir.path(), a.len() as u64 + 10, 0).expect("open");
        cache
            .set_manifest(manifest(vec![ia.clone(), ib.clone()]), 0)
            .expect("manifest");
        receive(&mut cache, &ia, &a);
        assert!(matches!(
            cache.begin(ib.blob_sha256, ib.blob_size, 0),
            Err(CacheError::Full { .. })
        ));
        // A blob nobody listed is refused.
        let stray = blob(3, 9);
        assert!(matches!(
            cache.begin(Sha256::digest(&stray).into(), stray.len() as u64, 0),
            Err(CacheError::NotWanted { .. })
        ));
        // Once a's slot is over, it goes, and b fits.
        assert_eq!(cache.evict(ia.end_unix_ms), vec![ia.blob_sha256]);
        assert!(!cache.blob_path(&ia.blob_sha256).exists());
        receive_at(&mut cache, &ib, &b, ia.end_unix_ms);
        // A manifest without b (the schedule changed) deletes it.
        let gone = cache
            .set_manifest(manifest(vec![]), ia.end_unix_ms)
            .expect("manifest");
        assert_eq!(gone, vec![ib.blob_sha256]);
        assert_eq!(cache.used_bytes(), 0);
        assert!(!cache.blob_path(&ib.blob_sha256).exists());
    }

    fn receive_at(cache: &mut PrefetchCache, item: &PrefetchItem, bytes: &[u8], now: u64) {
        let mut d = cache
            .begin(item.blob_sha256, item.blob_size, now)
            .expect("begin")
            .expect("new");
        assert!(d.write(0, bytes).expect("write"));
        cache.finish(d).expect("finish");
    }

    #[test]
    fn leftovers_of_a_cut_download_and_an_unreadable_manifest_are_cleared_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("blobs")).expect("mkdir");
        fs::write(
            dir.path()
                .join("blobs")
                .join(format!("{}.part", "ab".repeat(32))),
            b"x",
        )
        .expect("part");
        fs::write(dir.path().join("manifest"), b"\x50\x05junk!").expect("manifest");
        let cache = PrefetchCache::open(dir.path(), 1 << 20, 0).expect("open");
        assert!(cache.manifest().items.is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("blobs")).expect("dir").count(),
            0
        );
        assert!(!dir.path().join("manifest").exists());
    }
}
