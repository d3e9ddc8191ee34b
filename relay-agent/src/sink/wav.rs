//! WAV sink: records every slot (silence included) so the file is a true timeline of the air.

use std::fs::{self, File};
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use hound::{SampleFormat, WavSpec, WavWriter};

use super::{
    frame_samples, LogLimiter, Sink, SinkError, SinkStats, Slot, FRAME_SAMPLES, SAMPLE_RATE,
    SLOTS_PER_SECOND,
};

/// WAV sizes are 32-bit: past ~4 GiB of samples (about 12 h at 48 kHz mono 16-bit) hound's
/// counters would overflow, so the recording continues in a numbered follow-up file. The
/// margin leaves room for the header inside the RIFF size.
const MAX_SAMPLES_PER_FILE: u64 = (u32::MAX as u64 - 4096) / 2;

const SPEC: WavSpec = WavSpec {
    channels: 1,
    sample_rate: SAMPLE_RATE,
    bits_per_sample: 16,
    sample_format: SampleFormat::Int,
};

/// Writes 48 kHz mono 16-bit PCM to a WAV file.
pub struct WavSink {
    path: PathBuf,
    current: PathBuf,
    writer: Option<WavWriter<BufWriter<File>>>,
    part: u32,
    max_samples: u64,
    slots_since_flush: u64,
    /// Set after an I/O error: the file's state is unknown, so later slots are only counted.
    broken: bool,
    finished: bool,
    stats: SinkStats,
    failures: LogLimiter,
}

impl std::fmt::Debug for WavSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSink")
            .field("path", &self.path)
            .field("current", &self.current)
            .field("part", &self.part)
            .field("broken", &self.broken)
            .field("finished", &self.finished)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl WavSink {
    /// Creates (or truncates) `path`, creating its parent directories.
    pub fn create(path: &Path) -> Result<Self, SinkError> {
        Self::with_limit(path, MAX_SAMPLES_PER_FILE)
    }

    pub(crate) fn with_limit(path: &Path, max_samples: u64) -> Result<Self, SinkError> {
        let writer = open_writer(path).map_err(|e| SinkError::io(describe(path), e))?;
        Ok(Self {
            path: path.to_path_buf(),
            current: path.to_path_buf(),
            writer: Some(writer),
            part: 0,
            max_samples: max_samples.max(FRAME_SAMPLES as u64),
            slots_since_flush: 0,
            broken: false,
            finished: false,
            stats: SinkStats::default(),
            failures: LogLimiter::per_minute(),
        })
    }

    /// The file currently being written (differs from the configured path after a rollover).
    pub fn current_path(&self) -> &Path {
        &self.current
    }

    fn fail(&mut self, what: String) -> SinkError {
        self.broken = true;
        self.stats.errors += 1;
        self.writer = None;
        SinkError::io(self.describe(), what)
    }

    /// Finalises the full file and continues in `<stem>.<n>.<ext>` next to it.
    fn roll_over(&mut self) -> Result<(), String> {
        if let Some(w) = self.writer.take() {
            w.finalize()
                .map_err(|e| format!("finalising {}: {e}", self.current.display()))?;
        }
        self.part += 1;
        let next = numbered(&self.path, self.part);
        let writer = open_writer(&next).map_err(|e| format!("{}: {e}", next.display()))?;
        tracing::info!(
            "{}: file full, continuing in {}",
            self.describe(),
            next.display()
        );
        self.current = next;
        self.writer = Some(writer);
        self.slots_since_flush = 0;
        Ok(())
    }

    fn write_slot(&mut self, slot: &Slot<'_>) -> Result<(), String> {
        let full = self
            .writer
            .as_ref()
            .is_some_and(|w| u64::from(w.len()) + FRAME_SAMPLES as u64 > self.max_samples);
        if full {
            self.roll_over()?;
        }
        let Some(writer) = self.writer.as_mut() else {
            return Err("no open file".into());
        };
        for sample in frame_samples(slot.pcm) {
            writer
                .write_sample(sample)
                .map_err(|e| format!("write: {e}"))?;
        }
        self.slots_since_flush += 1;
        // Flushing rewrites the header, so a killed process leaves a file that is valid up
        // to the last second.
        if self.slots_since_flush >= SLOTS_PER_SECOND {
            writer.flush().map_err(|e| format!("flush: {e}"))?;
            self.slots_since_flush = 0;
        }
        Ok(())
    }
}

impl Sink for WavSink {
    fn describe(&self) -> String {
        describe(&self.path)
    }

    fn play(&mut self, slot: &Slot<'_>) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Closed {
                sink: self.describe(),
            });
        }
        self.stats.slots += 1;
        if !super::valid_slot_len(slot.pcm.len()) {
            self.stats.errors += 1;
            if let Some(n) = self.failures.allow() {
                tracing::warn!(
                    "{}: slot with {} samples, padded/truncated to {FRAME_SAMPLES} ({n} more since last report)",
                    self.describe(),
                    slot.pcm.len()
                );
            }
        }
        if self.broken {
            // The failure was returned once already; repeating it every 20 ms would only
            // flood the log.
            self.stats.dropped += 1;
            if let Some(n) = self.failures.allow() {
                tracing::warn!(
                    "{}: recording stopped after an I/O error; {} slots dropped ({n} reports suppressed)",
                    self.describe(),
                    self.stats.dropped
                );
            }
            return Ok(());
        }
        match self.write_slot(slot) {
            Ok(()) => {
                self.stats.packets_sent += 1;
                Ok(())
            }
            Err(what) => {
                self.stats.dropped += 1;
                Err(self.fail(what))
            }
        }
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        match self.writer.take() {
            Some(w) => w
                .finalize()
                .map_err(|e| self.fail(format!("finalise: {e}"))),
            None => Ok(()),
        }
    }

    fn stats(&self) -> SinkStats {
        self.stats.clone()
    }
}

fn describe(path: &Path) -> String {
    format!("wav:{}", path.display())
}

fn open_writer(path: &Path) -> Result<WavWriter<BufWriter<File>>, String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    WavWriter::create(path, SPEC).map_err(|e| format!("creating {}: {e}", path.display()))
}

/// `dir/rec.wav` → `dir/rec.<n>.wav`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    let mut name = stem;
    name.push(format!(".{n}"));
    if let Some(ext) = path.extension() {
        name.push(".");
        name.push(ext);
    }
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcm_for(slot: usize) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .map(|i| ((slot * FRAME_SAMPLES + i) % 65_536) as u16 as i16)
            .collect()
    }

    fn play_slots(sink: &mut WavSink, range: std::ops::Range<usize>) {
        for i in range {
            let pcm = pcm_for(i);
            let silent = i % 10 == 9;
            let pcm = if silent { vec![0; FRAME_SAMPLES] } else { pcm };
            sink.play(&Slot {
                opus: None,
                pcm: &pcm,
                silent,
            })
            .expect("play");
        }
    }

    fn expected(range: std::ops::Range<usize>) -> Vec<i16> {
        range
            .flat_map(|i| {
                if i % 10 == 9 {
                    vec![0; FRAME_SAMPLES]
                } else {
                    pcm_for(i)
                }
            })
            .collect()
    }

    fn read_all(path: &Path) -> (WavSpec, Vec<i16>) {
        let mut r = hound::WavReader::open(path).expect("valid WAV header");
        let spec = r.spec();
        let samples = r
            .samples::<i16>()
            .collect::<Result<Vec<_>, _>>()
            .expect("samples");
        (spec, samples)
    }

    #[test]
    fn finish_writes_every_sample() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/dir/rec.wav");
        let mut sink = WavSink::create(&path).expect("create");
        play_slots(&mut sink, 0..100);
        sink.finish().expect("finish");
        sink.finish().expect("finish twice is harmless");
        let (spec, samples) = read_all(&path);
        assert_eq!(spec, SPEC);
        assert_eq!(samples.len(), 100 * FRAME_SAMPLES);
        assert_eq!(samples, expected(0..100));
        assert_eq!(
            sink.stats(),
            SinkStats {
                slots: 100,
                packets_sent: 100,
                dropped: 0,
                errors: 0
            }
        );
    }

    #[test]
    fn killed_process_leaves_valid_file_up_to_last_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.wav");
        let mut sink = WavSink::create(&path).expect("create");
        // 2 s + 0.4 s: flushed at slots 50 and 100, the last 20 slots only buffered.
        play_slots(&mut sink, 0..120);
        // Dropping would finalise the header (hound does it in Drop); forgetting skips every
        // destructor, as a SIGKILL would.
        std::mem::forget(sink);
        let (spec, samples) = read_all(&path);
        assert_eq!(spec, SPEC);
        assert!(
            samples.len() >= 100 * FRAME_SAMPLES,
            "only {} samples survived",
            samples.len()
        );
        assert!(samples.len() <= 120 * FRAME_SAMPLES);
        assert_eq!(samples, expected(0..samples.len() / FRAME_SAMPLES));
    }

    #[test]
    fn rolls_over_instead_of_overflowing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.wav");
        let mut sink = WavSink::with_limit(&path, 10 * FRAME_SAMPLES as u64).expect("create");
        play_slots(&mut sink, 0..25);
        assert_eq!(sink.current_path(), dir.path().join("rec.2.wav"));
        sink.finish().expect("finish");
        let (_, a) = read_all(&path);
        let (_, b) = read_all(&dir.path().join("rec.1.wav"));
        let (_, c) = read_all(&dir.path().join("rec.2.wav"));
        assert_eq!(a, expected(0..10));
        assert_eq!(b, expected(10..20));
        assert_eq!(c, expected(20..25));
    }

    #[test]
    fn malformed_slot_keeps_timeline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rec.wav");
        let mut sink = WavSink::create(&path).expect("create");
        sink.play(&Slot {
            opus: None,
            pcm: &[5; 10],
            silent: false,
        })
        .expect("play");
        sink.finish().expect("finish");
        let (_, s) = read_all(&path);
        assert_eq!(s.len(), FRAME_SAMPLES);
        assert_eq!(sink.stats().errors, 1);
        assert!(matches!(
            sink.play(&Slot {
                opus: None,
                pcm: &[0; FRAME_SAMPLES],
                silent: true
            }),
            Err(SinkError::Closed { .. })
        ));
    }

    #[test]
    fn unwritable_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").expect("write");
        let err = WavSink::create(&blocker.join("rec.wav")).expect_err("cannot create");
        assert!(matches!(err, SinkError::Io { .. }));
    }

    #[test]
    fn numbered_names() {
        assert_eq!(
            numbered(Path::new("/a/rec.wav"), 3),
            PathBuf::from("/a/rec.3.wav")
        );
        assert_eq!(numbered(Path::new("rec"), 1), PathBuf::from("rec.1"));
    }
}
