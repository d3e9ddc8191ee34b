//! Retiming decoded PCM when the playout clock slews: a slot lengthened by 50 µs should carry
//! 2.4 more samples, or a WAV file or a sound card fed from the pipe drifts away from the
//! synchronised instants by that much every slot.
//!
//! Whole samples are owed and paid as they add up, at most [`MAX_RETIME`] per slot, and a slot is
//! stretched or squeezed by linear interpolation over its whole length, so the waveform stays
//! continuous (no click) and the pitch moves by at most 0.3 %, for as long as the correction lasts.

use std::time::Duration;

use crate::sink::{FRAME_SAMPLES, SAMPLE_RATE};

/// Most samples one slot gains or loses.
pub const MAX_RETIME: usize = 3;

/// Samples owed to or by the timeline, carried from slot to slot.
#[derive(Debug, Default)]
pub struct Retimer {
    owed: f64,
}

impl Retimer {
    /// The slot about to be played lasts `length`: writes its `pcm` (one slot's worth) into
    /// `out`, with the samples that brings into or out of the timeline. Lengths off by more than
    /// [`MAX_RETIME`] samples are jumps (a gap, a re-anchoring), not slewing: nothing is owed
    /// for them, as the audio around them is not continuous anyway.
    pub fn retime(&mut self, length: Duration, pcm: &[i16], out: &mut Vec<i16>) {
        let slot = Duration::from_micros(1_000_000 * FRAME_SAMPLES as u64 / u64::from(SAMPLE_RATE));
        let delta = if length >= slot {
            (length - slot).as_secs_f64()
        } else {
            -(slot - length).as_secs_f64()
        } * f64::from(SAMPLE_RATE);
        if delta.abs() <= MAX_RETIME as f64 {
            self.owed += delta;
        }
        let whole = self
            .owed
            .trunc()
            .clamp(-(MAX_RETIME as f64), MAX_RETIME as f64);
        self.owed -= whole;
        let target = (pcm.len() as i64 + whole as i64).max(1) as usize;
        stretch(pcm, target, out);
    }
}

/// `pcm` resampled to `len` samples by linear interpolation, first and last samples kept, so
/// consecutive slots join without a step.
fn stretch(pcm: &[i16], len: usize, out: &mut Vec<i16>) {
    out.clear();
    if pcm.len() == len || pcm.len() < 2 || len < 2 {
        out.extend(pcm.iter().copied().chain(std::iter::repeat(0)).take(len));
        return;
    }
    let step = (pcm.len() - 1) as f64 / (len - 1) as f64;
    for j in 0..len {
        let x = j as f64 * step;
        let i = (x.floor() as usize).min(pcm.len() - 2);
        let frac = x - i as f64;
        let v = f64::from(pcm[i]) * (1.0 - frac) + f64::from(pcm[i + 1]) * frac;
        out.push(v.round() as i16);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(len: usize, phase: usize) -> Vec<i16> {
        (0..len)
            .map(|i| {
                let t = (i + phase) as f64 / 48_000.0;
                (10_000.0 * (std::f64::consts::TAU * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn nominal_slots_pass_unchanged() {
        let mut r = Retimer::default();
        let pcm = sine(960, 0);
        let mut out = Vec::new();
        r.retime(Duration::from_millis(20), &pcm, &mut out);
        assert_eq!(out, pcm);
    }

    #[test]
    fn slewed_slots_gain_samples_as_they_add_up_and_stay_continuous() {
        let mut r = Retimer::default();
        let mut out = Vec::new();
        let mut total = 0;
        let mut previous_last: Option<i16> = None;
        // 100 slots each 25 µs long: 1.2 samples each, 120 in all.
        for k in 0..100 {
            let pcm = sine(960, k * 960);
            r.retime(
                Duration::from_millis(20) + Duration::from_micros(25),
                &pcm,
                &mut out,
            );
            assert!((960..=962).contains(&out.len()), "{}", out.len());
            assert_eq!(out[0], pcm[0]);
            assert_eq!(out[out.len() - 1], pcm[959]);
            // No step between samples larger than the sine's own (about 580 per sample).
            for w in out.windows(2) {
                assert!((i32::from(w[1]) - i32::from(w[0])).abs() < 600);
            }
            if let Some(last) = previous_last {
                assert!((i32::from(out[0]) - i32::from(last)).abs() < 600);
            }
            previous_last = out.last().copied();
            total += out.len();
        }
        // Fractions may leave the last sample owed.
        assert!((96_119..=96_120).contains(&total), "{total}");
        // And shortened slots lose them again.
        for _ in 0..100 {
            r.retime(
                Duration::from_millis(20) - Duration::from_micros(25),
                &sine(960, 0),
                &mut out,
            );
            total += out.len();
        }
        assert!((2 * 96_000 - 1..=2 * 96_000).contains(&total), "{total}");
    }

    #[test]
    fn jumps_are_not_owed() {
        let mut r = Retimer::default();
        let mut out = Vec::new();
        r.retime(Duration::from_millis(27), &sine(960, 0), &mut out);
        assert_eq!(out.len(), 960);
        r.retime(Duration::from_millis(13), &sine(960, 0), &mut out);
        assert_eq!(out.len(), 960);
    }
}
