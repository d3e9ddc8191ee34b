//! Opus encoder fed with exact 20 ms mono frames.

use bytes::Bytes;
use opus::{Application, Bitrate, Channels};

use super::{EncodedFrame, PipelineError, FRAME_SAMPLES};

/// Opus' own recommended output buffer size; a single 20 ms packet is at most
/// 1275 bytes, so this can never be too small.
const MAX_PACKET: usize = 4000;

/// Bitrates libopus accepts without clamping (bit/s).
const BITRATE_RANGE: std::ops::RangeInclusive<i32> = 500..=512_000;

pub(crate) struct FrameEncoder {
    inner: opus::Encoder,
    out: Vec<u8>,
    bitrate: u32,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder")
            .field("bitrate", &self.bitrate)
            .finish_non_exhaustive()
    }
}

impl FrameEncoder {
    pub(crate) fn new(bitrate: u32) -> Result<Self, PipelineError> {
        let enc_err = |what: &str, e: opus::Error| PipelineError::Encoder(format!("{what}: {e}"));
        // libopus silently clamps tiny values to 500, which would turn a
        // config written in kbit/s ("32") into unlistenable audio; refuse instead.
        let bits = i32::try_from(bitrate)
            .ok()
            .filter(|b| BITRATE_RANGE.contains(b))
            .ok_or_else(|| {
                PipelineError::Encoder(format!(
                    "bitrate {bitrate} bit/s outside {}..={} bit/s",
                    BITRATE_RANGE.start(),
                    BITRATE_RANGE.end()
                ))
            })?;
        let mut inner = opus::Encoder::new(48_000, Channels::Mono, Application::Voip)
            .map_err(|e| enc_err("create", e))?;
        inner
            .set_bitrate(Bitrate::Bits(bits))
            .map_err(|e| enc_err(&format!("bitrate {bitrate}"), e))?;
        // FEC only pays off once receivers report loss and we raise the
        // expected-loss percentage; until then it would just eat bitrate.
        inner
            .set_inband_fec(false)
            .map_err(|e| enc_err("disable FEC", e))?;
        Ok(FrameEncoder {
            inner,
            out: vec![0; MAX_PACKET],
            bitrate,
        })
    }

    /// Encodes one frame of at most `FRAME_SAMPLES`; a shorter frame (the end
    /// of a programme) is zero-padded, since Opus only accepts fixed sizes.
    pub(crate) fn encode(&mut self, pcm: &[f32]) -> Result<EncodedFrame, PipelineError> {
        let mut padded;
        let frame = if pcm.len() == FRAME_SAMPLES {
            pcm
        } else if pcm.len() < FRAME_SAMPLES {
            padded = [0.0f32; FRAME_SAMPLES];
            padded[..pcm.len()].copy_from_slice(pcm);
            &padded[..]
        } else {
            return Err(PipelineError::Encoder(format!(
                "frame of {} samples exceeds {FRAME_SAMPLES}",
                pcm.len()
            )));
        };
        let pcm_peak = frame
            .iter()
            .fold(
                0.0f32,
                |m, s| if s.is_finite() { m.max(s.abs()) } else { m },
            )
            .min(1.0);
        let n = self
            .inner
            .encode_float(frame, &mut self.out)
            .map_err(|e| PipelineError::Encoder(format!("encode: {e}")))?;
        Ok(EncodedFrame {
            payload: Bytes::copy_from_slice(&self.out[..n]),
            pcm_peak,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_has_zero_peak_and_short_packets() {
        let mut enc = FrameEncoder::new(32_000).unwrap();
        let f = enc.encode(&[0.0; FRAME_SAMPLES]).unwrap();
        assert_eq!(f.pcm_peak, 0.0);
        assert!(!f.payload.is_empty());
    }

    #[test]
    fn peak_tracks_input_and_is_clamped() {
        let mut enc = FrameEncoder::new(32_000).unwrap();
        let mut pcm = [0.0f32; FRAME_SAMPLES];
        pcm[10] = -0.75;
        assert_eq!(enc.encode(&pcm).unwrap().pcm_peak, 0.75);
        pcm[20] = 3.0;
        assert_eq!(enc.encode(&pcm).unwrap().pcm_peak, 1.0);
    }

    #[test]
    fn short_frame_is_padded_and_long_frame_rejected() {
        let mut enc = FrameEncoder::new(32_000).unwrap();
        assert!(enc.encode(&[0.5; 100]).is_ok());
        let err = enc.encode(&[0.0; FRAME_SAMPLES + 1]).unwrap_err();
        assert!(matches!(err, PipelineError::Encoder(_)), "{err}");
    }

    #[test]
    fn invalid_bitrates_are_errors_not_panics() {
        for bad in [0u32, 1, 32, 499, 512_001, u32::MAX] {
            match FrameEncoder::new(bad) {
                Err(PipelineError::Encoder(msg)) => assert!(!msg.contains('\n')),
                other => panic!("bitrate {bad}: expected Encoder error, got {other:?}"),
            }
        }
    }

    #[test]
    fn packets_decode_to_full_frames() {
        let mut enc = FrameEncoder::new(24_000).unwrap();
        let mut dec = opus::Decoder::new(48_000, Channels::Mono).unwrap();
        let pcm: Vec<f32> = (0..FRAME_SAMPLES)
            .map(|i| (i as f32 * 0.0576).sin() * 0.5)
            .collect();
        let f = enc.encode(&pcm).unwrap();
        let mut out = vec![0.0f32; 5760];
        let n = dec.decode_float(&f.payload, &mut out, false).unwrap();
        assert_eq!(n, FRAME_SAMPLES);
    }
}
