//! Programme audio pipeline: decode once, downmix to mono, resample to 48 kHz and
//! encode to 20 ms Opus packets that are fanned out unchanged to every agent.

pub(crate) mod cut_short;
pub(crate) mod decoder;
pub(crate) mod encoder;
pub(crate) mod opus_decoder;
pub(crate) mod resampler;

use std::path::Path;

use decoder::SourceDecoder;
use encoder::FrameEncoder;
use resampler::Resampler;

/// Samples per Opus packet: 20 ms at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;

/// One 20 ms Opus packet.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub payload: bytes::Bytes,
    /// Largest |sample| of the PCM that went into this packet, clamped to 0..=1,
    /// so silence detection needs no Opus decode.
    pub pcm_peak: f32,
}

#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration_secs: Option<f64>,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{path}: cannot open: {reason}")]
    Open { path: String, reason: String },
    #[error("{path}: not a supported audio file: {reason}")]
    Unsupported { path: String, reason: String },
    #[error("{path}: corrupt audio: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path}: contains no audio")]
    Empty { path: String },
    #[error("opus encoder: {0}")]
    Encoder(String),
}

/// Decoder + resampler: a file as a stream of 48 kHz mono samples.
struct Source48k {
    decoder: SourceDecoder,
    /// Created lazily from the first chunk's rate, because some containers
    /// (ADTS, some MP3s) only reveal the true rate once a packet is decoded.
    resampler: Option<Resampler>,
    done: bool,
}

impl Source48k {
    fn open(path: &Path) -> Result<(Self, SourceInfo), PipelineError> {
        let (decoder, info) = SourceDecoder::open(path)?;
        Ok((
            Source48k {
                decoder,
                resampler: None,
                done: false,
            },
            info,
        ))
    }

    /// Appends the next batch of 48 kHz samples to `out`; `false` once the
    /// source is exhausted and every resampled sample has been delivered.
    fn pull(&mut self, out: &mut Vec<f32>) -> Result<bool, PipelineError> {
        if self.done {
            return Ok(false);
        }
        let next = self.decoder.next_chunk()?;
        let path = self.decoder.path();
        let resample_err = |reason: String| PipelineError::Unsupported {
            path: path.to_string(),
            reason,
        };
        let Some(chunk) = next else {
            self.done = true;
            if let Some(r) = &mut self.resampler {
                r.finish(out).map_err(resample_err)?;
            }
            return Ok(false);
        };
        // A mid-stream rate change (spliced MP3s, chained Ogg) gets a fresh
        // resampler; the old one is flushed first so nothing is dropped.
        let resampler = match &mut self.resampler {
            Some(r) if r.input_rate() == chunk.rate => r,
            slot => {
                if let Some(old) = slot {
                    old.finish(out).map_err(resample_err)?;
                }
                slot.insert(Resampler::new(chunk.rate).map_err(resample_err)?)
            }
        };
        resampler
            .process(&chunk.samples, out)
            .map_err(resample_err)?;
        Ok(true)
    }
}

/// Streams one programme file as Opus packets, decoding only as far ahead as
/// the next packet needs.
pub struct ProgrammeEncoder {
    info: SourceInfo,
    source: Source48k,
    encoder: FrameEncoder,
    pcm: Vec<f32>,
    /// Read position in `pcm`; consumed samples are dropped lazily so that
    /// each frame does not shift the whole buffer.
    pos: usize,
}

impl std::fmt::Debug for ProgrammeEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProgrammeEncoder")
            .field("path", &self.source.decoder.path())
            .field("info", &self.info)
            .field("encoder", &self.encoder)
            .field("skipped_packets", &self.skipped_packets())
            .field("buffered", &(self.pcm.len() - self.pos))
            .finish()
    }
}

impl ProgrammeEncoder {
    /// Opens and validates `path`. Everything that makes a file unusable
    /// (missing, empty, truncated header, not audio) fails here, so a
    /// scheduler can reject a programme before it goes on air.
    pub fn open(path: &Path, bitrate: u32) -> Result<Self, PipelineError> {
        // The encoder first: a bad bitrate is a config error, not the file's.
        let encoder = FrameEncoder::new(bitrate)?;
        let (source, info) = Source48k::open(path)?;
        Ok(ProgrammeEncoder {
            info,
            source,
            encoder,
            pcm: Vec::with_capacity(FRAME_SAMPLES * 8),
            pos: 0,
        })
    }

    pub fn info(&self) -> &SourceInfo {
        &self.info
    }

    /// Packets that were corrupt and skipped so far (including any tolerated
    /// while `open` validated the start of the file).
    pub fn skipped_packets(&self) -> u64 {
        self.source.decoder.skipped_packets()
    }

    /// The next 20 ms packet, or `None` once the programme has ended. The final
    /// partial frame is zero-padded.
    /// Skips up to `frames` 20 ms frames without encoding them (to resume a programme where it
    /// was interrupted); returns how many were skipped, fewer only at the end of the file.
    pub fn skip_frames(&mut self, frames: u64) -> Result<u64, PipelineError> {
        let mut skipped = 0;
        while skipped < frames {
            if self.pcm.len() - self.pos >= FRAME_SAMPLES {
                self.pos += FRAME_SAMPLES;
                skipped += 1;
                continue;
            }
            self.pcm.drain(..self.pos);
            self.pos = 0;
            if !self.source.pull(&mut self.pcm)? && self.pcm.len() < FRAME_SAMPLES {
                break;
            }
        }
        Ok(skipped)
    }

    pub fn next_frame(&mut self) -> Result<Option<EncodedFrame>, PipelineError> {
        loop {
            if self.pcm.len() - self.pos >= FRAME_SAMPLES {
                let frame = &self.pcm[self.pos..self.pos + FRAME_SAMPLES];
                let encoded = self.encoder.encode(frame)?;
                self.pos += FRAME_SAMPLES;
                return Ok(Some(encoded));
            }
            self.pcm.drain(..self.pos);
            self.pos = 0;
            if !self.source.pull(&mut self.pcm)? && self.pcm.len() < FRAME_SAMPLES {
                if self.pcm.is_empty() {
                    return Ok(None);
                }
                let encoded = self.encoder.encode(&self.pcm)?;
                self.pcm.clear();
                return Ok(Some(encoded));
            }
        }
    }
}

/// Encodes already-prepared 48 kHz mono PCM through the same encoder path as
/// files; the last partial frame is zero-padded.
pub fn encode_pcm(pcm_48k_mono: &[f32], bitrate: u32) -> Result<Vec<EncodedFrame>, PipelineError> {
    let mut encoder = FrameEncoder::new(bitrate)?;
    pcm_48k_mono
        .chunks(FRAME_SAMPLES)
        .map(|frame| encoder.encode(frame))
        .collect()
}

/// Decodes a whole file to 48 kHz mono without encoding: the reference signal
/// that the Opus output is judged against.
pub fn decode_file_to_48k_mono(path: &Path) -> Result<Vec<f32>, PipelineError> {
    let (mut source, info) = Source48k::open(path)?;
    let estimate = info
        .duration_secs
        .map(|d| (d.clamp(0.0, 3600.0) * 48_000.0) as usize)
        .unwrap_or(0);
    let mut out = Vec::with_capacity(estimate);
    while source.pull(&mut out)? {}
    Ok(out)
}

#[cfg(test)]
mod tests;
