//! Streaming mono resampler to 48 kHz on top of rubato's synchronous FFT resampler.

use rubato::{FftFixedIn, Resampler as _};

pub(crate) const OUTPUT_RATE: u32 = 48_000;

/// Source rates accepted. A corrupt header can claim any rate: 16 MHz would
/// make a multi-million-point FFT per chunk, 1 Hz would turn a few seconds of
/// samples into days of output. Real audio lives well inside these bounds
/// (telephony 8 kHz up to DXD 384 kHz, doubled for headroom).
pub(crate) const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 4_000..=768_000;

/// Minimum input frames per rubato call. Large enough that the FFT (and with
/// it the anti-alias filter) is long and steep, small enough that the first
/// Opus frame is ready after a few milliseconds of decoding.
const MIN_CHUNK_IN: usize = 1024;

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Input chunk that makes rubato use exactly one FFT per call with an even
/// number of input and output points. Rubato centres its sinc filter on
/// `len / 2` (integer division), so for an odd FFT length the real delay is
/// half an input sample less than `output_delay()` reports — 2.2 output
/// samples at 11025 Hz. With even lengths the reported delay is exact.
fn chunk_for(input_rate: u32) -> usize {
    let g = gcd(u64::from(input_rate), u64::from(OUTPUT_RATE));
    let min_in = (u64::from(input_rate) / g) as usize;
    let mut units = MIN_CHUNK_IN.div_ceil(min_in);
    if units % 2 == 1 {
        units += 1;
    }
    units * min_in
}

pub(crate) struct Resampler {
    input_rate: u32,
    kind: Kind,
    /// Input frames received so far; fixes the exact output length at the end.
    total_in: u64,
    /// Output frames handed to the caller so far (after the delay was dropped).
    total_out: u64,
}

enum Kind {
    Passthrough,
    Fft {
        inner: Box<FftFixedIn<f32>>,
        chunk: usize,
        pending: Vec<f32>,
        out_buf: Vec<f32>,
        /// Leading output frames that are pure filter delay and must be
        /// dropped so output sample n lines up with input time n / rate.
        delay_left: usize,
    },
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("input_rate", &self.input_rate)
            .field("passthrough", &matches!(self.kind, Kind::Passthrough))
            .field("total_in", &self.total_in)
            .field("total_out", &self.total_out)
            .finish()
    }
}

impl Resampler {
    pub(crate) fn new(input_rate: u32) -> Result<Self, String> {
        if !SUPPORTED_RATES.contains(&input_rate) {
            return Err(format!(
                "sample rate {input_rate} Hz outside {}..={} Hz",
                SUPPORTED_RATES.start(),
                SUPPORTED_RATES.end()
            ));
        }
        let kind = if input_rate == OUTPUT_RATE {
            Kind::Passthrough
        } else {
            let chunk = chunk_for(input_rate);
            let inner =
                FftFixedIn::<f32>::new(input_rate as usize, OUTPUT_RATE as usize, chunk, 1, 1)
                    .map_err(|e| {
                        format!("cannot resample {input_rate} Hz to {OUTPUT_RATE} Hz: {e}")
                    })?;
            let out_buf = vec![0.0; inner.output_frames_max()];
            let delay_left = inner.output_delay();
            Kind::Fft {
                inner: Box::new(inner),
                chunk,
                pending: Vec::with_capacity(chunk * 2),
                out_buf,
                delay_left,
            }
        };
        Ok(Resampler {
            input_rate,
            kind,
            total_in: 0,
            total_out: 0,
        })
    }

    pub(crate) fn input_rate(&self) -> u32 {
        self.input_rate
    }

    /// Resamples `input`, appending whatever output is ready to `out`.
    pub(crate) fn process(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        self.total_in += input.len() as u64;
        match &mut self.kind {
            Kind::Passthrough => {
                out.extend_from_slice(input);
                self.total_out += input.len() as u64;
            }
            Kind::Fft { pending, .. } => {
                pending.extend_from_slice(input);
                self.drain_full_chunks(out, u64::MAX)?;
            }
        }
        Ok(())
    }

    /// Pushes the filter tail out so the last input samples are not lost, and
    /// trims the result to exactly `total_in * 48000 / rate` frames.
    pub(crate) fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), String> {
        let expected = (u128::from(self.total_in) * u128::from(OUTPUT_RATE)
            + u128::from(self.input_rate) / 2)
            / u128::from(self.input_rate);
        let expected = u64::try_from(expected).unwrap_or(u64::MAX);
        let mut rounds = 0u32;
        while self.total_out < expected {
            let Kind::Fft { pending, chunk, .. } = &mut self.kind else {
                break;
            };
            // Zero-padding to whole chunks (rather than a partial call) keeps
            // the chunk size fixed, which FftFixedIn requires, and the zeros
            // push the filter's tail out.
            let padded = pending.len().div_ceil(*chunk).max(1) * *chunk;
            pending.resize(padded, 0.0);
            self.drain_full_chunks(out, expected)?;
            rounds += 1;
            // Every chunk yields a whole FFT block of output, twice the delay,
            // so two rounds always suffice; this only guards against a rubato
            // change that would otherwise loop forever.
            if rounds > 16 {
                return Err("resampler produced no output while flushing".into());
            }
        }
        Ok(())
    }

    /// Runs every complete chunk through rubato, emitting at most up to `limit`
    /// total output frames.
    fn drain_full_chunks(&mut self, out: &mut Vec<f32>, limit: u64) -> Result<(), String> {
        let Kind::Fft {
            inner,
            chunk,
            pending,
            out_buf,
            delay_left,
        } = &mut self.kind
        else {
            return Ok(());
        };
        let mut consumed = 0;
        let chunk = *chunk;
        while pending.len() - consumed >= chunk {
            let (used, produced) = inner
                .process_into_buffer(
                    &[&pending[consumed..consumed + chunk]],
                    &mut [&mut out_buf[..]],
                    None,
                )
                .map_err(|e| format!("resampler failed: {e}"))?;
            consumed += used;
            let skip = (*delay_left).min(produced);
            *delay_left -= skip;
            let ready = &out_buf[skip..produced];
            let room = usize::try_from(limit.saturating_sub(self.total_out)).unwrap_or(usize::MAX);
            let take = ready.len().min(room);
            out.extend_from_slice(&ready[..take]);
            self.total_out += take as u64;
        }
        pending.drain(..consumed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    fn run(rate: u32, input: &[f32], piece: usize) -> Vec<f32> {
        let mut r = Resampler::new(rate).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            r.process(chunk, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    fn expected_len(rate: u32, n: usize) -> usize {
        ((n as u64 * 48_000 + u64::from(rate) / 2) / u64::from(rate)) as usize
    }

    fn argmax_abs(x: &[f32]) -> usize {
        x.iter()
            .enumerate()
            .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
            .map(|(i, _)| i)
            .unwrap()
    }

    #[test]
    fn output_length_is_exact_for_all_rates() {
        for rate in [
            8_000, 11_025, 16_000, 22_050, 32_000, 44_100, 48_000, 88_200, 96_000,
        ] {
            for n in [0usize, 1, 100, 1023, 1024, 1025, 12_345, rate as usize * 2] {
                let input = vec![0.1f32; n];
                let out = run(rate, &input, 777);
                assert_eq!(out.len(), expected_len(rate, n), "rate {rate} n {n}");
            }
        }
    }

    #[test]
    fn impulse_lands_on_the_right_sample() {
        for rate in [8_000u32, 22_050, 44_100, 96_000] {
            // Impulses near the start, middle and very end check both the
            // delay compensation and the tail flush.
            let n = rate as usize; // 1 s
            for pos in [rate as usize / 100, n / 2 + 7, n - rate as usize / 200] {
                let mut input = vec![0.0f32; n];
                input[pos] = 1.0;
                let out = run(rate, &input, 500);
                let want = (pos as f64 * 48_000.0 / f64::from(rate)).round() as i64;
                let got = argmax_abs(&out) as i64;
                assert!(
                    (got - want).abs() <= 2,
                    "rate {rate} impulse at {pos}: expected output peak at {want}, got {got}"
                );
                assert!(out[got as usize] > 0.2, "impulse lost at rate {rate}");
            }
        }
    }

    #[test]
    fn sine_phase_is_preserved() {
        for rate in [
            8_000u32, 11_025, 16_000, 22_050, 32_000, 44_100, 88_200, 96_000, 44_101,
        ] {
            let f = 440.0;
            let n = rate as usize;
            let input: Vec<f32> = (0..n)
                .map(|i| (2.0 * PI * f * i as f64 / f64::from(rate)).sin() as f32 * 0.5)
                .collect();
            let out = run(rate, &input, 4096);
            // Compare against the ideal 48 kHz sine away from the edges, where
            // a time shift of k samples would show up as a phase error of
            // 2*pi*f*k/48000 (about 0.058 rad per sample at 440 Hz).
            let mut err: f64 = 0.0;
            for (i, &y) in out.iter().enumerate().skip(4_800).take(38_400) {
                let ideal = (2.0 * PI * f * i as f64 / 48_000.0).sin() * 0.5;
                err = err.max((f64::from(y) - ideal).abs());
            }
            // One sample of misalignment gives an error of ~0.029 here.
            assert!(err < 0.01, "rate {rate}: max deviation {err}");
        }
    }

    #[test]
    fn tail_is_flushed() {
        // A sine that runs to the very last input sample must still be there
        // in the last few output milliseconds, not cut off by filter delay.
        let rate = 44_100u32;
        let input: Vec<f32> = (0..rate as usize)
            .map(|i| (2.0 * PI * 1000.0 * i as f64 / f64::from(rate)).sin() as f32)
            .collect();
        let out = run(rate, &input, 1024);
        let tail = &out[out.len() - 240..out.len() - 24];
        let peak = tail.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.9, "tail peak {peak}");
    }

    #[test]
    fn passthrough_at_48k_is_bit_exact() {
        let input: Vec<f32> = (0..5000).map(|i| (i as f32 * 0.01).sin()).collect();
        assert_eq!(run(48_000, &input, 333), input);
    }

    #[test]
    fn absurd_rates_are_rejected() {
        for rate in [0, 1, 3_999, 768_001, 16_231_492] {
            assert!(Resampler::new(rate).is_err(), "{rate}");
        }
        for rate in [4_000, 44_101, 768_000] {
            assert!(Resampler::new(rate).is_ok(), "{rate}");
        }
    }
}
