//! Prefetch planning: which recordings each station is scheduled to air within the horizon, each
//! encoded once into a blob that its agents can keep and air by themselves if the link fails.
//!
//! The planner follows the schedule the on-air controller runs (a `watch` of the
//! [`Scheduler`]), and re-plans when it changes and once a minute as the horizon moves on. Each
//! station's plan — its [`PrefetchManifest`] and the blobs it names — is published on a `watch`
//! that every connected agent of the station follows (`prefetch_sender.rs`), so a schedule change
//! reaches the agents at once, and an agent that connects gets the current plan.
//!
//! A blob is the recording encoded exactly as a playback would (same pipeline, same bitrate),
//! as length-prefixed Opus packets, named by its SHA-256. Encoding happens on a blocking thread,
//! once per recording and file version (path, size, modification time), kept in memory while
//! some plan names it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use radio_config::District;
use radio_proto::{put_blob_packet, BlobDigest, PrefetchItem, PrefetchManifest, ProgrammeLevel};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::pipeline::{PipelineError, ProgrammeEncoder};
use crate::schedule::{Level, Scheduler, SourceSpec};

/// How often the plan is made again without a schedule change: the horizon moves on, airings
/// that ended leave it, and recordings changed on disk are encoded again.
const REPLAN_EVERY: Duration = Duration::from_secs(60);

/// A recording encoded for prefetch.
#[derive(Debug)]
pub struct Blob {
    pub bytes: Bytes,
    pub digest: BlobDigest,
    pub frames: u64,
}

/// Encodes `paths` in order (a playlist is one recording) into a blob; at most
/// [`PrefetchItem::MAX_FRAMES`] frames, as no slot is longer.
pub fn encode_blob(paths: &[PathBuf], bitrate: u32) -> Result<Blob, PipelineError> {
    let mut bytes = Vec::new();
    let mut frames = 0u64;
    'files: for path in paths {
        let mut encoder = ProgrammeEncoder::open(path, bitrate)?;
        while let Some(frame) = encoder.next_frame()? {
            put_blob_packet(&mut bytes, &frame.payload);
            frames += 1;
            if frames == PrefetchItem::MAX_FRAMES {
                break 'files;
            }
        }
    }
    if frames == 0 {
        return Err(PipelineError::Empty {
            path: paths
                .first()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        });
    }
    Ok(Blob {
        digest: Sha256::digest(&bytes).into(),
        bytes: Bytes::from(bytes),
        frames,
    })
}

/// One station's plan: its manifest and the blobs that the manifest names.
#[derive(Debug, Default)]
pub struct StationPlan {
    pub manifest: PrefetchManifest,
    pub blobs: BTreeMap<BlobDigest, Arc<Blob>>,
}

/// The recordings of a source, or none for a stream (nothing to prefetch).
fn recordings(source: &SourceSpec) -> Option<Vec<PathBuf>> {
    match source {
        SourceSpec::File { path } => Some(vec![path.clone()]),
        SourceSpec::Playlist { paths } => Some(paths.clone()),
        SourceSpec::Relay { .. } | SourceSpec::Upstream { .. } | SourceSpec::Live => None,
    }
}

/// The id an airing is journaled under when it airs from the cache: the same entry at the same
/// start gets the same id in every server run.
fn programme_id(entry_id: &str, start_unix_ms: u64) -> u64 {
    let digest = Sha256::new()
        .chain_update(entry_id.as_bytes())
        .chain_update(start_unix_ms.to_be_bytes())
        .finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

fn unix_ms(t: Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// Every station's manifest for the airings of recordings in `[now, now + horizon)`, given the
/// blob of each recording (`None`: it could not be encoded, and is left out). Sans-IO.
pub fn plan(
    scheduler: &Scheduler,
    now: Timestamp,
    horizon: SignedDuration,
    blob_of: &dyn Fn(&[PathBuf]) -> Option<Arc<Blob>>,
) -> BTreeMap<String, StationPlan> {
    let mut plans: BTreeMap<String, StationPlan> = BTreeMap::new();
    let until = now.saturating_add(horizon).unwrap_or(now);
    for occurrence in scheduler.occurrences(now, until) {
        let Some(entry) = scheduler.entry(&occurrence.entry_id) else {
            continue;
        };
        let Some(paths) = recordings(&entry.source) else {
            continue;
        };
        let Some(blob) = blob_of(&paths) else {
            continue;
        };
        let start_unix_ms = unix_ms(occurrence.start);
        let item = PrefetchItem {
            entry_id: entry.id.clone(),
            programme_id: programme_id(&entry.id, start_unix_ms),
            // The name and level the stream would announce: the reports count plays by them.
            name: truncate(&entry.name, PrefetchItem::MAX_NAME),
            level: match entry.level {
                Level::Normal => ProgrammeLevel::Normal,
                Level::Priority => ProgrammeLevel::Priority,
                Level::Emergency => ProgrammeLevel::Emergency,
            },
            start_unix_ms,
            end_unix_ms: unix_ms(occurrence.end),
            frame_count: blob.frames,
            blob_size: blob.bytes.len() as u64,
            blob_sha256: blob.digest,
        };
        for station in &occurrence.stations {
            let plan = plans.entry(station.clone()).or_default();
            plan.manifest.items.push(item.clone());
            plan.blobs.insert(blob.digest, blob.clone());
        }
    }
    for (station, plan) in &mut plans {
        // Occurrences come sorted by start.
        if plan.manifest.items.len() > PrefetchManifest::MAX_ITEMS {
            warn!(
                %station,
                airings = plan.manifest.items.len(),
                "more recordings in the prefetch horizon than a manifest holds; the first {} \
                 are prefetched, the rest as their time comes",
                PrefetchManifest::MAX_ITEMS
            );
            plan.manifest.items.truncate(PrefetchManifest::MAX_ITEMS);
            let named: BTreeSet<BlobDigest> =
                plan.manifest.items.iter().map(|i| i.blob_sha256).collect();
            plan.blobs.retain(|d, _| named.contains(d));
        }
        plan.manifest.issued_unix_ms = unix_ms(now);
    }
    plans
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// A recording as it is on disk now: encoded again when any of its files changes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version {
    paths: Vec<PathBuf>,
    files: Vec<(u64, Option<SystemTime>)>,
}

impl Version {
    fn of(paths: &[PathBuf]) -> std::io::Result<Self> {
        let files = paths
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| (m.len(), m.modified().ok())))
            .collect::<std::io::Result<_>>()?;
        Ok(Version {
            paths: paths.to_vec(),
            files,
        })
    }
}

/// Every station's prefetch plan, kept up to date with the schedule.
#[derive(Debug)]
pub struct PrefetchPlanner {
    /// `None` until the first plan is made: an empty manifest would make the agents drop
    /// what they hold.
    plans: BTreeMap<String, watch::Sender<Option<Arc<StationPlan>>>>,
    bitrate: u32,
}

impl PrefetchPlanner {
    /// Starts planning `horizon` ahead for the stations of `district`, following `schedule`.
    pub fn spawn(
        schedule: watch::Receiver<Arc<Scheduler>>,
        district: &District,
        horizon: SignedDuration,
        bitrate: u32,
    ) -> Arc<Self> {
        let planner = Arc::new(PrefetchPlanner {
            plans: district
                .stations
                .iter()
                .map(|s| (s.id.clone(), watch::channel(None).0))
                .collect(),
            bitrate,
        });
        tokio::spawn(planner.clone().run(schedule, horizon));
        planner
    }

    /// The plan of `station`, kept current (`None` until the first is made).
    pub fn subscribe(&self, station: &str) -> Option<watch::Receiver<Option<Arc<StationPlan>>>> {
        self.plans.get(station).map(watch::Sender::subscribe)
    }

    /// The Opus bitrate blobs are encoded at (the sender paces by it).
    pub fn bitrate(&self) -> u32 {
        self.bitrate
    }

    async fn run(
        self: Arc<Self>,
        mut schedule: watch::Receiver<Arc<Scheduler>>,
        horizon: SignedDuration,
    ) {
        let mut encoded: BTreeMap<Version, Arc<Blob>> = BTreeMap::new();
        // Recordings that failed to encode, not tried again until they change on disk.
        let mut failed: BTreeSet<Version> = BTreeSet::new();
        loop {
            let scheduler = schedule.borrow_and_update().clone();
            let now = Timestamp::now();
            let until = now.saturating_add(horizon).unwrap_or(now);
            let mut versions: BTreeMap<Vec<PathBuf>, Version> = BTreeMap::new();
            for occurrence in scheduler.occurrences(now, until) {
                let Some(paths) = scheduler
                    .entry(&occurrence.entry_id)
                    .and_then(|e| recordings(&e.source))
                else {
                    continue;
                };
                if versions.contains_key(&paths) {
                    continue;
                }
                let version = match Version::of(&paths) {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(entry = %occurrence.entry_id, "not prefetched: {e}");
                        continue;
                    }
                };
                if !encoded.contains_key(&version) && !failed.contains(&version) {
                    let (to_encode, bitrate) = (paths.clone(), self.bitrate);
                    let result =
                        tokio::task::spawn_blocking(move || encode_blob(&to_encode, bitrate)).await;
                    match result {
                        Ok(Ok(blob)) => {
                            info!(
                                entry = %occurrence.entry_id,
                                frames = blob.frames,
                                bytes = blob.bytes.len(),
                                "encoded for prefetch"
                            );
                            encoded.insert(version.clone(), Arc::new(blob));
                        }
                        Ok(Err(e)) => {
                            warn!(entry = %occurrence.entry_id, "not prefetched: {e}");
                            failed.insert(version.clone());
                        }
                        Err(e) => warn!(entry = %occurrence.entry_id, "not prefetched: {e}"),
                    }
                }
                versions.insert(paths, version);
            }
            let mut plans = plan(&scheduler, now, horizon, &|paths| {
                versions.get(paths).and_then(|v| encoded.get(v)).cloned()
            });
            encoded.retain(|v, _| versions.values().any(|u| u == v));
            failed.retain(|v| versions.values().any(|u| u == v));
            for (station, sender) in &self.plans {
                let next = plans.remove(station).unwrap_or_default();
                sender.send_if_modified(|current| {
                    // Only a different list is news; the issue time alone is not.
                    if current
                        .as_ref()
                        .is_some_and(|c| c.manifest.items == next.manifest.items)
                    {
                        return false;
                    }
                    *current = Some(Arc::new(next));
                    true
                });
            }
            tokio::select! {
                changed = schedule.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(REPLAN_EVERY) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Schedule;

    fn schedule(entries: &str) -> Scheduler {
        let text = format!("timezone = \"UTC\"\n{entries}");
        let schedule: Schedule = toml::from_str(&text).expect("schedule");
        Scheduler::new(schedule, &District::binh_son()).expect("valid")
    }

    fn entry(id: &str, start: &str, source: &str, targets: &str) -> String {
        format!(
            "[[entries]]\nid = \"{id}\"\nname = \"Bản tin {id}\"\nrecurrence = \"daily\"\n\
             start = \"{start}\"\nend = {{ duration = \"30m\" }}\nsource = {source}\n\
             targets = {targets}\nlevel = \"priority\"\n"
        )
    }

    fn blob() -> Arc<Blob> {
        let mut bytes = Vec::new();
        put_blob_packet(&mut bytes, &[1, 2, 3]);
        Arc::new(Blob {
            digest: Sha256::digest(&bytes).into(),
            bytes: Bytes::from(bytes),
            frames: 1,
        })
    }

    #[test]
    fn recordings_in_the_horizon_are_planned_for_their_stations_only() {
        let s = schedule(&format!(
            "{}{}{}",
            entry(
                "sang",
                "06:00",
                "{ kind = \"file\", path = \"/srv/a.mp3\" }",
                "{ stations = [\"binh-trung\"] }"
            ),
            entry(
                "chieu",
                "18:00",
                "{ kind = \"playlist\", paths = [\"/srv/b.mp3\", \"/srv/c.mp3\"] }",
                "{ stations = [\"binh-trung\", \"binh-duong\"] }"
            ),
            entry(
                "tiep-song",
                "10:00",
                "{ kind = \"relay\", url = \"http://x.example/a.mp3\" }",
                "\"all\""
            ),
        ));
        let now: Timestamp = "2026-01-01T05:00:00Z".parse().expect("time");
        let b = blob();
        let plans = plan(&s, now, SignedDuration::from_hours(24), &|_| {
            Some(b.clone())
        });
        assert_eq!(
            plans.keys().collect::<Vec<_>>(),
            ["binh-duong", "binh-trung"],
            "streams are not prefetched"
        );
        let trung = &plans["binh-trung"].manifest;
        let starts: Vec<(&str, u64)> = trung
            .items
            .iter()
            .map(|i| (i.entry_id.as_str(), i.start_unix_ms))
            .collect();
        let at = |t: &str| unix_ms(t.parse::<Timestamp>().expect("time"));
        assert_eq!(
            starts,
            [
                ("sang", at("2026-01-01T06:00:00Z")),
                ("chieu", at("2026-01-01T18:00:00Z"))
            ]
        );
        let first = &trung.items[0];
        assert_eq!(first.name, "Bản tin sang");
        assert_eq!(first.level, ProgrammeLevel::Priority);
        assert_eq!(first.end_unix_ms - first.start_unix_ms, 30 * 60 * 1000);
        assert_eq!(first.blob_sha256, b.digest);
        assert_eq!(
            first.programme_id,
            programme_id("sang", first.start_unix_ms)
        );
        assert_ne!(first.programme_id, trung.items[1].programme_id);

        // Six hours ahead only: the evening is not yet planned; an airing under way still is.
        let plans = plan(
            &s,
            "2026-01-01T06:10:00Z".parse().expect("time"),
            SignedDuration::from_hours(6),
            &|_| Some(b.clone()),
        );
        assert_eq!(plans["binh-trung"].manifest.items.len(), 1);
        assert!(!plans.contains_key("binh-duong"));
    }

    #[test]
    fn an_entry_removed_or_unencodable_leaves_the_plan() {
        let now: Timestamp = "2026-01-01T05:00:00Z".parse().expect("time");
        let with = schedule(&entry(
            "sang",
            "06:00",
            "{ kind = \"file\", path = \"/srv/a.mp3\" }",
            "{ stations = [\"binh-trung\"] }",
        ));
        let b = blob();
        assert_eq!(
            plan(&with, now, SignedDuration::from_hours(24), &|_| Some(
                b.clone()
            ))["binh-trung"]
                .manifest
                .items
                .len(),
            1
        );
        assert!(plan(&with, now, SignedDuration::from_hours(24), &|_| None).is_empty());
        let without = schedule("");
        assert!(
            plan(&without, now, SignedDuration::from_hours(24), &|_| Some(
                b.clone()
            ))
            .is_empty()
        );
    }

    #[test]
    fn a_recording_is_encoded_as_its_playback_would_be() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("wav");
        for i in 0..48_000 {
            let s = (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin();
            w.write_sample((s * 10_000.0) as i16).expect("sample");
        }
        w.finalize().expect("finalize");
        let blob = encode_blob(&[path.clone(), path], 32_000).expect("encode");
        assert_eq!(blob.frames, 100, "two seconds of 20 ms frames");
        let packets = radio_proto::blob_packets(&blob.bytes).expect("packets");
        assert_eq!(packets.len(), 100);
        assert_eq!(blob.digest, <[u8; 32]>::from(Sha256::digest(&blob.bytes)));
        assert!(encode_blob(&[PathBuf::from("/nonexistent.mp3")], 32_000).is_err());
    }

    /// A scheduled phone or browser recording (Ogg or WebM Opus) is sent ahead whole, and a
    /// copy cut short is refused here rather than sent ahead as half an announcement.
    #[test]
    fn opus_recordings_are_encoded_whole_and_cut_ones_refused() {
        if !radio_test_tools::require_tool("ffmpeg") {
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        for name in ["ghi-am.ogg", "ghi-am.webm"] {
            let path = dir.path().join(name);
            let made = std::process::Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
                .args(["-i", "sine=frequency=440:sample_rate=48000:duration=3"])
                .args(["-c:a", "libopus", "-b:a", "32k"])
                .arg(&path)
                .status()
                .expect("run ffmpeg");
            assert!(made.success(), "ffmpeg could not make {name}");
            let blob = encode_blob(std::slice::from_ref(&path), 32_000).expect("encode");
            // 3 s of 20 ms frames, and at most one more for the codec's padding.
            assert!(
                (150..=151).contains(&blob.frames),
                "{name}: {}",
                blob.frames
            );
            let bytes = std::fs::read(&path).expect("read");
            std::fs::write(&path, &bytes[..bytes.len() * 6 / 10]).expect("cut");
            let err = encode_blob(&[path], 32_000).expect_err("a cut recording is refused");
            assert!(err.to_string().contains("incomplete"), "{name}: {err}");
        }
    }
}
