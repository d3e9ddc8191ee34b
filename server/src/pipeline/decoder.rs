//! Symphonia wrapper: container probing, packet decoding and mono downmix.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, Packet};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::resampler::SUPPORTED_RATES;
use super::{PipelineError, SourceInfo};

/// Bad packets tolerated before the first good one. Random bytes often contain
/// something that looks like an MP3/ADTS sync word, so a file is only accepted
/// once real audio has come out of it; a handful of leading errors is still
/// allowed because cut-from-a-stream files can start mid-frame.
const MAX_LEADING_ERRORS: u64 = 16;

/// Consecutive demuxer errors after which the rest of the file is given up on.
/// Demuxers normally resync on their own; this only bounds a reader that keeps
/// failing without advancing, which would otherwise spin forever.
const MAX_CONSECUTIVE_ERRORS: u32 = 256;

/// Good packets required before a file is accepted. One lucky packet of random
/// bytes can pass as MP3; several in a row with little else in between cannot.
const MIN_LEADING_GOOD_PACKETS: u32 = 3;

/// The error symphonia-bundle-mp3 0.5 gives when the signal spec changes.
const MP3_SPEC_CHANGE: &str = "mpa: invalid audio buffer signal spec for packet";

/// One decoded packet, downmixed to mono, at the rate the codec reported for it.
#[derive(Debug)]
pub(crate) struct MonoChunk {
    pub rate: u32,
    /// Channel count of the source before the downmix.
    pub channels: usize,
    pub samples: Vec<f32>,
}

pub(crate) struct SourceDecoder {
    path: String,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    codec_params: CodecParameters,
    sample_buf: Option<SampleBuffer<f32>>,
    /// Chunks decoded by `open` while validating the file, handed out first.
    primed: std::collections::VecDeque<MonoChunk>,
    skipped: u64,
    /// Demuxer errors since the last packet it delivered.
    demux_errors_in_row: u32,
    ended: bool,
}

impl std::fmt::Debug for SourceDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceDecoder")
            .field("path", &self.path)
            .field("track_id", &self.track_id)
            .field("skipped", &self.skipped)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Collapses a possibly multi-line library message so every error stays one line.
fn one_line(s: impl std::fmt::Display) -> String {
    s.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where the bytes come from, only so that errors describe it correctly.
#[derive(Clone, Copy)]
enum Origin {
    File,
    Stream,
}

enum Step {
    Chunk(MonoChunk),
    /// The packet decoded to nothing (e.g. Vorbis header packets, gapless trim).
    Nothing,
    Skipped(String),
    End,
}

impl SourceDecoder {
    pub(crate) fn open(path: &Path) -> Result<(Self, SourceInfo), PipelineError> {
        let shown = path.display().to_string();
        let open_err = |reason: String| PipelineError::Open {
            path: shown.clone(),
            reason,
        };
        let file = File::open(path).map_err(|e| open_err(one_line(e)))?;
        let meta = file.metadata().map_err(|e| open_err(one_line(e)))?;
        if meta.is_dir() {
            return Err(open_err("is a directory".into()));
        }
        if meta.len() == 0 {
            return Err(PipelineError::Empty { path: shown });
        }
        // Before the probe: symphonia reads a file that ends inside a frame as one that ends
        // there, and what came before would air as if it were the whole announcement.
        if let Some(reason) = super::cut_short::cut_short(path) {
            return Err(PipelineError::Corrupt {
                path: shown,
                reason,
            });
        }
        let ext = path.extension().and_then(|e| e.to_str());
        Self::probe(Box::new(file), ext, shown, Origin::File)
    }

    /// Opens a non-seekable stream (e.g. an HTTP body) with the same checks as
    /// [`SourceDecoder::open`]: it returns only once real audio has been
    /// decoded from it. `name` stands in for the path in errors and logs.
    /// Blocks on `source` until enough of it has arrived.
    pub(crate) fn from_stream(
        source: Box<dyn MediaSource>,
        hint_extension: Option<&str>,
        name: &str,
    ) -> Result<(Self, SourceInfo), PipelineError> {
        Self::probe(source, hint_extension, name.to_string(), Origin::Stream)
    }

    fn probe(
        source: Box<dyn MediaSource>,
        hint_extension: Option<&str>,
        shown: String,
        origin: Origin,
    ) -> Result<(Self, SourceInfo), PipelineError> {
        let open_err = |reason: String| PipelineError::Open {
            path: shown.clone(),
            reason,
        };
        // Symphonia 0.5's probe picks the reader by content markers alone and
        // ignores this hint, which is why a mislabelled but valid file still
        // plays and a renamed text file still fails.
        let mut hint = Hint::new();
        if let Some(ext) = hint_extension {
            hint.with_extension(ext);
        }
        // Gapless trims MP3/Vorbis encoder delay and padding, otherwise every
        // programme would gain tens of milliseconds at both ends.
        let format_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let mss = MediaSourceStream::new(source, Default::default());
        let probed = unpanicked(|| {
            symphonia::default::get_probe().format(
                &hint,
                mss,
                &format_opts,
                &MetadataOptions::default(),
            )
        })
        .map_err(|e| match e {
            SymError::Unsupported(msg) => PipelineError::Unsupported {
                path: shown.clone(),
                reason: if msg.starts_with("core (probe)") {
                    "no known audio format found".into()
                } else {
                    one_line(e)
                },
            },
            SymError::IoError(ref io) if io.kind() == ErrorKind::UnexpectedEof => {
                PipelineError::Corrupt {
                    path: shown.clone(),
                    reason: match origin {
                        Origin::File => {
                            "file ends before a complete audio header (truncated, or not audio)"
                        }
                        Origin::Stream => {
                            "stream ends before a complete audio header (cut off, or not audio)"
                        }
                    }
                    .into(),
                }
            }
            SymError::IoError(io) => open_err(one_line(io)),
            other => PipelineError::Corrupt {
                path: shown.clone(),
                reason: one_line(other),
            },
        })?;
        let format = probed.format;

        let codecs = super::opus_decoder::codecs();
        let track = format
            .tracks()
            .iter()
            .find(|t| {
                t.codec_params.codec != CODEC_TYPE_NULL
                    && codecs.get_codec(t.codec_params.codec).is_some()
            })
            .ok_or_else(|| PipelineError::Unsupported {
                path: shown.clone(),
                reason: if format.tracks().is_empty() {
                    "no audio track".into()
                } else {
                    "no track with a supported audio codec".into()
                },
            })?;
        let track_id = track.id;
        let codec_params = track.codec_params.clone();
        let codec_name = codecs
            .get_codec(codec_params.codec)
            .map(|d| d.short_name.to_string())
            .unwrap_or_else(|| "unknown".into());
        let decoder = codecs
            .make(&codec_params, &DecoderOptions::default())
            .map_err(|e| PipelineError::Unsupported {
                path: shown.clone(),
                reason: one_line(e),
            })?;

        let mut dec = SourceDecoder {
            path: shown,
            format,
            decoder,
            track_id,
            codec_params: codec_params.clone(),
            sample_buf: None,
            primed: Default::default(),
            skipped: 0,
            demux_errors_in_row: 0,
            ended: false,
        };

        let (first_rate, first_channels) = dec.prime()?;
        // Checked here, not only when the resampler is built, so that a header
        // with a nonsense rate fails in `open` like any other broken file.
        if !SUPPORTED_RATES.contains(&first_rate) {
            return Err(PipelineError::Unsupported {
                path: dec.path,
                reason: format!(
                    "sample rate {first_rate} Hz outside {}..={} Hz",
                    SUPPORTED_RATES.start(),
                    SUPPORTED_RATES.end()
                ),
            });
        }

        let sample_rate = codec_params
            .sample_rate
            .filter(|&r| r > 0)
            .unwrap_or(first_rate);
        let channels = codec_params
            .channels
            .map(|c| c.count())
            .filter(|&c| c > 0)
            .unwrap_or(first_channels);
        let duration_secs = codec_params.n_frames.and_then(|n| {
            if let Some(tb) = codec_params.time_base {
                let t = tb.calc_time(n);
                Some(t.seconds as f64 + t.frac)
            } else if sample_rate > 0 {
                Some(n as f64 / f64::from(sample_rate))
            } else {
                None
            }
        });
        let info = SourceInfo {
            codec: codec_name,
            sample_rate,
            channels: u16::try_from(channels).unwrap_or(u16::MAX),
            duration_secs,
        };
        Ok((dec, info))
    }

    /// Decodes until the file has proven it holds audio, so that garbage fails in
    /// `open` rather than halfway into a broadcast.
    fn prime(&mut self) -> Result<(u32, usize), PipelineError> {
        let mut first_spec = None;
        let mut good = 0u32;
        let mut last_err = String::new();
        let mut errors = 0u64;
        while good < MIN_LEADING_GOOD_PACKETS {
            match self.step()? {
                Step::Chunk(chunk) => {
                    first_spec.get_or_insert((chunk.rate, chunk.channels));
                    good += 1;
                    self.primed.push_back(chunk);
                }
                Step::Nothing => {}
                Step::Skipped(reason) => {
                    errors += 1;
                    last_err = reason;
                    if errors > MAX_LEADING_ERRORS {
                        return Err(PipelineError::Corrupt {
                            path: self.path.clone(),
                            reason: format!("no decodable audio at the start ({last_err})"),
                        });
                    }
                }
                Step::End => break,
            }
        }
        // A short but clean file (e.g. a single jingle packet) is fine, but if
        // errors outnumber the packets that worked it is noise that happened
        // to contain a sync word.
        if good == 0 || (good < MIN_LEADING_GOOD_PACKETS && errors >= u64::from(good)) {
            if errors > 0 {
                return Err(PipelineError::Corrupt {
                    path: self.path.clone(),
                    reason: format!("no decodable audio ({last_err})"),
                });
            }
            return Err(PipelineError::Empty {
                path: self.path.clone(),
            });
        }
        // Errors during priming were only tolerated, not hidden.
        self.skipped = errors;
        Ok(first_spec.unwrap_or_default())
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn skipped_packets(&self) -> u64 {
        self.skipped
    }

    /// Next decoded mono chunk, or `None` at the end of the stream.
    pub(crate) fn next_chunk(&mut self) -> Result<Option<MonoChunk>, PipelineError> {
        if let Some(chunk) = self.primed.pop_front() {
            return Ok(Some(chunk));
        }
        loop {
            match self.step()? {
                Step::Chunk(c) => return Ok(Some(c)),
                Step::Nothing => {}
                Step::Skipped(reason) => {
                    self.skipped += 1;
                    // A badly damaged file can have thousands of bad packets;
                    // the first few say what is wrong, the rest only the count.
                    if self.skipped <= 10 || self.skipped.is_multiple_of(1000) {
                        tracing::warn!(
                            path = %self.path,
                            skipped = self.skipped,
                            "skipping corrupt audio packet: {reason}"
                        );
                    }
                }
                Step::End => return Ok(None),
            }
        }
    }

    fn step(&mut self) -> Result<Step, PipelineError> {
        if self.ended {
            return Ok(Step::End);
        }
        let packet = loop {
            match unpanicked(|| self.format.next_packet()) {
                Err(SymError::DecodeError(PANICKED)) => {
                    // Its state is unknown after a panic: nothing more is read from it.
                    self.ended = true;
                    return Err(PipelineError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("the demuxer {PANICKED}"),
                    });
                }
                Ok(p) => {
                    self.demux_errors_in_row = 0;
                    if p.track_id() == self.track_id {
                        break p;
                    }
                }
                Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => {
                    self.ended = true;
                    return Ok(Step::End);
                }
                Err(SymError::ResetRequired) => {
                    // The track layout changed (e.g. chained Ogg streams); a fresh
                    // decoder picks up the new parameters.
                    self.recreate_decoder()?;
                }
                Err(SymError::IoError(e)) => {
                    return Err(PipelineError::Corrupt {
                        path: self.path.clone(),
                        reason: format!("read failed: {}", one_line(e)),
                    });
                }
                Err(e) => {
                    self.demux_errors_in_row += 1;
                    if self.demux_errors_in_row >= MAX_CONSECUTIVE_ERRORS {
                        tracing::warn!(
                            path = %self.path,
                            "demuxer keeps failing, ending programme early: {e}"
                        );
                        self.ended = true;
                        return Ok(Step::End);
                    }
                    return Ok(Step::Skipped(one_line(e)));
                }
            }
        };

        let mut result = self.decode_packet(&packet);
        // Symphonia's MP3 decoder refuses a packet whose rate or channel count
        // differs from the first one, yet concatenated MP3s (jingle + show) do
        // change mid-file; a fresh decoder accepts the new layout.
        if matches!(result, Err(SymError::DecodeError(MP3_SPEC_CHANGE))) {
            self.recreate_decoder()?;
            result = self.decode_packet(&packet);
        }
        match result {
            Ok(step) => Ok(step),
            Err(SymError::ResetRequired) => {
                self.recreate_decoder()?;
                Ok(Step::Nothing)
            }
            // Besides DecodeError, an IoError from a decoder means the packet
            // was shorter than its own headers claimed, and Unsupported or
            // LimitError concern only this packet: all are skipped, as one bad
            // packet must not take a programme off air.
            Err(e) => Ok(Step::Skipped(one_line(e))),
        }
    }

    fn decode_packet(&mut self, packet: &Packet) -> Result<Step, SymError> {
        let decoded = unpanicked(|| self.decoder.decode(packet))?;
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if decoded.frames() == 0 || channels == 0 {
            return Ok(Step::Nothing);
        }
        let buf = match &mut self.sample_buf {
            Some(b) if b.capacity() >= decoded.capacity() * channels => b,
            slot => slot.insert(SampleBuffer::new(decoded.capacity() as u64, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        Ok(Step::Chunk(MonoChunk {
            rate: spec.rate,
            channels,
            samples: downmix(buf.samples(), channels),
        }))
    }

    fn recreate_decoder(&mut self) -> Result<(), PipelineError> {
        let params = self
            .format
            .tracks()
            .iter()
            .find(|t| t.id == self.track_id)
            .map(|t| t.codec_params.clone())
            .unwrap_or_else(|| self.codec_params.clone());
        self.decoder = super::opus_decoder::codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(|e| PipelineError::Unsupported {
                path: self.path.clone(),
                reason: format!("decoder reset failed: {}", one_line(e)),
            })?;
        self.codec_params = params;
        self.sample_buf = None;
        Ok(())
    }
}

/// Runs a symphonia call with its panics turned into errors. Its readers assert things of
/// their input (symphonia-format-mkv 0.5 panics on some WebM files cut short), and a damaged
/// file must be refused, or end its programme, not take its thread down. The error is a
/// `DecodeError` of [`PANICKED`]: a decoder skips that packet, a demuxer is not read again.
fn unpanicked<T>(call: impl FnOnce() -> Result<T, SymError>) -> Result<T, SymError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or(Err(SymError::DecodeError(PANICKED)))
}

/// What [`unpanicked`] says of a symphonia call that panicked.
const PANICKED: &str = "failed on damaged data";

/// Averages interleaved channels into one. Averaging (rather than summing)
/// keeps full-scale stereo at full scale and never clips; non-finite samples
/// are zeroed because a single NaN would poison the resampler's filter state.
pub(crate) fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    let clean = |s: f32| if s.is_finite() { s } else { 0.0 };
    if channels <= 1 {
        return interleaved.iter().map(|&s| clean(s)).collect();
    }
    let scale = 1.0 / channels as f32;
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().map(|&s| clean(s)).sum::<f32>() * scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let stereo = [1.0, 0.0, 0.5, 0.5, -1.0, 1.0];
        assert_eq!(downmix(&stereo, 2), vec![0.5, 0.5, 0.0]);
        let six = [0.6f32; 12];
        let mono = downmix(&six, 6);
        assert_eq!(mono.len(), 2);
        assert!(mono.iter().all(|&s| (s - 0.6).abs() < 1e-6));
    }

    #[test]
    fn downmix_mono_is_identity_and_scrubs_nan() {
        assert_eq!(downmix(&[0.25, f32::NAN, -0.5], 1), vec![0.25, 0.0, -0.5]);
        assert_eq!(downmix(&[f32::INFINITY, 1.0], 2), vec![0.5]);
    }
}
