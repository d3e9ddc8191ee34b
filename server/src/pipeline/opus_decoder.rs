//! Opus for symphonia: symphonia 0.5 demuxes Ogg Opus and WebM/Matroska Opus (what browsers'
//! MediaRecorder and phone voice recorders make) but has no Opus decoder, so libopus decodes
//! the packets here, behind symphonia's [`Decoder`] trait, and [`codecs`] offers it next to
//! symphonia's own decoders.

use std::sync::{Mutex, OnceLock};

use symphonia::core::audio::SignalSpec;
use symphonia::core::audio::{AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, CodecRegistry, Decoder, DecoderOptions, FinalizeResult,
    CODEC_TYPE_OPUS,
};
use symphonia::core::errors::{decode_error, unsupported_error, Result};
use symphonia::core::formats::Packet;
use symphonia::core::support_codec;

/// Opus always decodes at 48 kHz: the rate of the pipeline, so nothing is resampled.
const RATE: u32 = 48_000;

/// The longest Opus packet: 120 ms at 48 kHz (RFC 6716, 3.2.5).
const MAX_PACKET_FRAMES: usize = 5_760;

/// Symphonia's decoders and this crate's Opus decoder, built once.
pub(crate) fn codecs() -> &'static CodecRegistry {
    static REGISTRY: OnceLock<CodecRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<OpusDecoder>();
        registry
    })
}

/// libopus behind symphonia's [`Decoder`].
pub(crate) struct OpusDecoder {
    params: CodecParameters,
    /// Symphonia wants decoders `Sync`; libopus's state is only `Send`. `decode` takes
    /// `&mut self`, so the lock is never contended (`get_mut` does not even lock).
    opus: Mutex<opus::Decoder>,
    channels: usize,
    buf: AudioBuffer<f32>,
    /// Interleaved output of libopus, before it is split into `buf`'s planes.
    interleaved: Vec<f32>,
    /// Samples (per channel) still to drop from the start: the encoder's pre-skip, when the
    /// demuxer does not trim it itself (Matroska/WebM; the Ogg reader trims it under gapless).
    pending_skip: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("channels", &self.channels)
            .field("pending_skip", &self.pending_skip)
            .finish_non_exhaustive()
    }
}

/// The fields of an `OpusHead` (RFC 7845, 5.1) the decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OpusHead {
    channels: u8,
    pre_skip: u16,
}

/// Reads an `OpusHead`, as Ogg gives it (the first packet) and Matroska too (CodecPrivate).
fn opus_head(extra: &[u8]) -> Option<OpusHead> {
    if extra.len() < 19 || !extra.starts_with(b"OpusHead") {
        return None;
    }
    Some(OpusHead {
        channels: extra[9],
        pre_skip: u16::from_le_bytes([extra[10], extra[11]]),
    })
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        if params.codec != CODEC_TYPE_OPUS {
            return unsupported_error("opus: not an Opus track");
        }
        let head = params.extra_data.as_deref().and_then(opus_head);
        let channels = params
            .channels
            .map(|c| c.count())
            .filter(|&c| c > 0)
            .or_else(|| head.map(|h| usize::from(h.channels)))
            .unwrap_or(0);
        let (opus_channels, layout) = match channels {
            1 => (opus::Channels::Mono, Channels::FRONT_LEFT),
            2 => (
                opus::Channels::Stereo,
                Channels::FRONT_LEFT | Channels::FRONT_RIGHT,
            ),
            // Surround Opus needs libopus's multistream decoder; recordings of speech and
            // music for loudspeakers are mono or stereo.
            _ => return unsupported_error("opus: only mono and stereo Opus is supported"),
        };
        let opus = opus::Decoder::new(RATE, opus_channels)
            .or_else(|_| unsupported_error("opus: libopus refused the decoder settings"))?;
        // The Ogg reader states the pre-skip as the track's delay and trims it from the packets
        // itself; Matroska leaves it to the decoder.
        let pending_skip = match (params.delay, head) {
            (None, Some(head)) => usize::from(head.pre_skip),
            _ => 0,
        };
        Ok(OpusDecoder {
            params: params.clone(),
            opus: Mutex::new(opus),
            channels,
            buf: AudioBuffer::new(MAX_PACKET_FRAMES as u64, SignalSpec::new(RATE, layout)),
            interleaved: vec![0.0; MAX_PACKET_FRAMES * channels],
            pending_skip,
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[support_codec!(CODEC_TYPE_OPUS, "opus", "Opus (libopus)")]
    }

    fn reset(&mut self) {
        let opus = self
            .opus
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A failed reset leaves the old state, which only costs a few milliseconds of
        // transition after a seek; nothing to report.
        let _ = opus.reset_state();
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        self.buf.clear();
        let opus = self
            .opus
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let frames = match opus.decode_float(packet.buf(), &mut self.interleaved, false) {
            Ok(n) => n.min(MAX_PACKET_FRAMES),
            Err(_) => return decode_error("opus: invalid packet"),
        };
        self.buf.render_reserved(Some(frames));
        for ch in 0..self.channels {
            let plane = self.buf.chan_mut(ch);
            for (i, sample) in plane.iter_mut().enumerate() {
                *sample = self.interleaved[i * self.channels + ch];
            }
        }
        let skip = self.pending_skip.min(frames);
        self.pending_skip -= skip;
        let start = (packet.trim_start() as usize).saturating_add(skip);
        let end = packet.trim_end() as usize;
        if start > 0 || end > 0 {
            self.buf
                .trim(start.min(frames), end.min(frames - start.min(frames)));
        }
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}

#[cfg(test)]
mod tests;
