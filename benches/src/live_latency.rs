//! What the live latency benches share (`bin/live_latency.rs`, `bin/browser_live_latency.rs`):
//! the burst signal, its onset rule, decoding of RTP packet streams with their instants, the
//! recorder of an agent's RTP sink, the paced studio sender, and the pairing of input onsets
//! with output onsets into per-run statistics.
//!
//! A burst's onset is the first sample above [`THRESHOLD`] after [`QUIET`] samples below it.
//! Onsets are paired by the most common difference between them (1 ms bins): the bursts'
//! irregular spacing makes that difference the latency without ambiguity, and each input onset
//! is then paired with the output onset nearest to it within [`PAIRING`].

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opus::{Channels, Decoder};

use crate::summary::percentile;

/// Samples per second on both sides.
pub const RATE: u32 = 48_000;
/// Samples of a 20 ms packet (and of a console worklet block).
pub const FRAME: usize = 960;
/// Onset threshold (bursts are at 0.5 of full scale).
pub const THRESHOLD: f32 = 0.1;
/// Below the threshold for this long (20 ms) before an onset.
pub const QUIET: usize = RATE as usize / 50;
/// Bursts sent before this far into the stream are left out: live is going on air.
pub const WARM_UP: Duration = Duration::from_secs(2);
/// How far a burst's latency may be from the run's most common one and still be paired, s.
pub const PAIRING: f64 = 0.060;

/// Silence with 30 ms bursts of 1 kHz at seeded, irregular intervals (150–250 ms apart).
pub fn burst_signal(seconds: f64, seed: u32) -> Vec<f32> {
    let n = (seconds * f64::from(RATE)) as usize;
    let mut x = vec![0.0f32; n];
    let mut state = seed.max(1);
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let burst = RATE as usize * 30 / 1000;
    let mut at = RATE as usize / 2;
    while at + burst < n {
        for (i, s) in x[at..at + burst].iter_mut().enumerate() {
            *s = 0.5 * (std::f32::consts::TAU * 1000.0 * i as f32 / RATE as f32).sin();
            // Start at a peak-free phase, but not at zero: the first sample is already loud.
            if i == 0 {
                *s = 0.5;
            }
        }
        let gap_ms = 150 + (next() % 101) as usize;
        at += gap_ms * RATE as usize / 1000;
    }
    x
}

/// An RTP packet of the studio: Opus, PT 97.
pub fn rtp(seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + payload.len());
    p.extend_from_slice(&[0x80, 97]);
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// Onsets in `x`: sample indices where the level rises past the threshold after a quiet stretch.
pub fn onsets(x: &[f32]) -> Vec<usize> {
    let mut last_loud: Option<usize> = None;
    let mut found = Vec::new();
    for (i, s) in x.iter().enumerate() {
        if s.abs() >= THRESHOLD {
            if last_loud.is_none_or(|l| i - l > QUIET) && i >= QUIET {
                found.push(i);
            }
            last_loud = Some(i);
        }
    }
    found
}

/// A decoded packet stream: the samples, and where each packet starts in them with its instant.
#[derive(Debug)]
pub struct Decoded {
    pub samples: Vec<f32>,
    pub packets: Vec<(usize, Instant)>,
}

impl Decoded {
    /// The instant of sample `index`: its packet's instant plus its offset in the packet.
    pub fn instant(&self, index: usize) -> Option<Instant> {
        let p = self.packets.partition_point(|(start, _)| *start <= index);
        let (start, at) = self.packets.get(p.checked_sub(1)?)?;
        let offset = index - start;
        (offset < FRAME).then(|| *at + Duration::from_secs_f64(offset as f64 / f64::from(RATE)))
    }

    pub fn onset_instants(&self) -> Vec<Instant> {
        onsets(&self.samples)
            .into_iter()
            .filter_map(|i| self.instant(i))
            .collect()
    }
}

/// One RTP packet: when it arrived (or was sent), its RTP timestamp and its payload.
pub type Packet = (Instant, u32, Vec<u8>);

/// Decodes `(instant, rtp timestamp, payload)` in order; a timestamp gap of up to a second is
/// filled with silence, a larger one (a new stream) is not.
pub fn decode(packets: &[Packet]) -> anyhow::Result<Decoded> {
    let mut dec = Decoder::new(RATE, Channels::Mono)?;
    let mut samples = Vec::new();
    let mut starts = Vec::new();
    let mut expected: Option<u32> = None;
    let mut frame = vec![0.0f32; 5_760];
    for (at, ts, payload) in packets {
        if let Some(e) = expected {
            let gap = ts.wrapping_sub(e) as usize;
            if gap > 0 && gap <= RATE as usize {
                samples.resize(samples.len() + gap, 0.0);
            }
        }
        let n = dec.decode_float(payload, &mut frame, false)?;
        starts.push((samples.len(), *at));
        samples.extend_from_slice(&frame[..n]);
        expected = Some(ts.wrapping_add(n as u32));
    }
    Ok(Decoded {
        samples,
        packets: starts,
    })
}

/// Records RTP packets arriving on a local port (an agent's RTP sink points at it).
#[derive(Debug)]
pub struct Capture {
    pub port: u16,
    packets: Arc<Mutex<Vec<Packet>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Capture {
    pub fn start() -> anyhow::Result<Capture> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let packets = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (packets, stop) = (packets.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = socket.recv(&mut buf) else {
                        continue;
                    };
                    let at = Instant::now();
                    let Some(payload) = radio_tests::rtp_capture::rtp_payload(&buf[..n]) else {
                        continue;
                    };
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    if let Ok(mut p) = packets.lock() {
                        p.push((at, ts, payload.to_vec()));
                    }
                }
            })
        };
        Ok(Capture {
            port,
            packets,
            stop,
            thread: Some(thread),
        })
    }

    /// The packets so far, taken out: the capture goes on recording from empty.
    pub fn take(&self) -> Vec<Packet> {
        self.packets
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }

    pub fn stop(mut self) -> Vec<Packet> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.take()
    }
}

/// Sends `packets` to `to` one per 20 ms from `start`, and returns the instant each was sent.
pub fn send_paced(
    to: SocketAddr,
    packets: &[Vec<u8>],
    start: Instant,
) -> anyhow::Result<Vec<Instant>> {
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    let mut sent = Vec::with_capacity(packets.len());
    for (k, p) in packets.iter().enumerate() {
        let due = start + Duration::from_millis(20 * k as u64);
        // Sleep to within 1 ms, then spin: the send instants are what latency is measured from.
        if let Some(wait) = due
            .checked_duration_since(Instant::now())
            .and_then(|d| d.checked_sub(Duration::from_millis(1)))
        {
            std::thread::sleep(wait);
        }
        while Instant::now() < due {
            std::hint::spin_loop();
        }
        let at = Instant::now();
        socket.send_to(p, to)?;
        sent.push(at);
    }
    Ok(sent)
}

/// One run's latencies, in ms.
#[derive(Debug, Clone, Copy)]
pub struct RunResult {
    /// Input onsets after the warm-up.
    pub bursts: usize,
    /// Those paired with an output onset.
    pub paired: usize,
    /// The most common difference.
    pub latency_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub min_ms: f64,
}

/// Pairs input onsets with output onsets, both in seconds on one time axis; `label` names the
/// run in errors and in the per-burst lines printed when `debug`.
pub fn pair(label: &str, ins: &[f64], outs: &[f64], debug: bool) -> anyhow::Result<RunResult> {
    anyhow::ensure!(!ins.is_empty(), "{label}: no burst at the input");
    anyhow::ensure!(
        !outs.is_empty(),
        "{label}: no burst reached the agent's output"
    );
    // The most common difference (1 ms bins, within 2 s) is the run's latency.
    let mut bins = HashMap::<i64, usize>::new();
    for i in ins {
        for o in outs.iter().filter(|o| *o > i) {
            let d = o - i;
            if d < 2.0 {
                *bins.entry((d * 1000.0) as i64).or_default() += 1;
            }
        }
    }
    // Neighbouring bins together: the latency spreads over a millisecond or two. Ties go to
    // the shortest, so that a run gives the same figure whatever the map's order.
    let score = |b: i64| {
        (-1..=1)
            .map(|k| bins.get(&(b + k)).copied().unwrap_or(0))
            .sum::<usize>()
    };
    let mode_ms = bins
        .keys()
        .copied()
        .max_by(|a, b| score(*a).cmp(&score(*b)).then(b.cmp(a)))
        .ok_or_else(|| anyhow::anyhow!("{label}: no output burst within 2 s of an input one"))?;
    let mode = (mode_ms as f64 + 0.5) / 1000.0;
    let mut latencies = Vec::new();
    for i in ins {
        let best = outs
            .iter()
            .filter(|o| *o > i)
            .map(|o| o - i)
            .min_by(|a, b| (a - mode).abs().total_cmp(&(b - mode).abs()));
        if debug {
            println!(
                "  {label}: burst at {i:.3} s: nearest output {:.1} ms later",
                best.unwrap_or(f64::NAN) * 1000.0
            );
        }
        if let Some(d) = best.filter(|d| (d - mode).abs() <= PAIRING) {
            latencies.push(d * 1000.0);
        }
    }
    anyhow::ensure!(!latencies.is_empty(), "{label}: no burst could be paired");
    Ok(RunResult {
        bursts: ins.len(),
        paired: latencies.len(),
        latency_ms: mode * 1000.0,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: percentile(&latencies, 1.0),
        min_ms: percentile(&latencies, 0.0),
    })
}

/// Seconds from `base` to each instant (all after it).
pub fn seconds_since(base: Instant, instants: &[Instant]) -> Vec<f64> {
    instants
        .iter()
        .map(|t| t.saturating_duration_since(base).as_secs_f64())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_burst_has_one_onset_and_pairs_with_itself_delayed() {
        let x = burst_signal(10.0, 7);
        let found = onsets(&x);
        assert!(found.len() > 35, "{} bursts", found.len());
        let ins: Vec<f64> = found.iter().map(|i| *i as f64 / f64::from(RATE)).collect();
        let outs: Vec<f64> = ins.iter().map(|t| t + 0.123).collect();
        let r = pair("test", &ins, &outs, false).expect("pairs");
        assert_eq!(r.paired, ins.len());
        assert!((r.p50_ms - 123.0).abs() < 0.01, "{r:?}");
    }
}
