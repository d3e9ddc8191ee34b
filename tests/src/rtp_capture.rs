//! Where and when agents' RTP packets land: one receiving thread per UDP port records the
//! instant each packet arrived and its payload, and [`playout_spread`] lines up the same frame
//! across agents to measure how far apart they played it.
//!
//! Frames are recognised by their Opus payload, which the server encodes once for every station
//! and the agents forward unchanged: RTP sequence numbers and timestamps cannot serve, as each
//! agent starts them at random (RFC 3550 §5.1).

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One packet: when it arrived and its payload.
pub type Arrival = (Instant, Vec<u8>);

/// A UDP port whose RTP packets are recorded until [`RtpCapture::stop`].
#[derive(Debug)]
pub struct RtpCapture {
    port: u16,
    /// The packets so far, and a signal each time one arrives.
    packets: Arc<(Mutex<Vec<Arrival>>, Condvar)>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpCapture {
    /// Binds a fresh port on 127.0.0.1 and starts recording.
    pub fn start() -> std::io::Result<RtpCapture> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let port = socket.local_addr()?.port();
        // Short, so that the thread notices `stop` soon; arrivals are timed when `recv` returns,
        // which the timeout does not affect.
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let packets = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let packets = packets.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("rtp-capture-{port}"))
                .spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok(n) = socket.recv(&mut buf) else {
                            continue;
                        };
                        let at = Instant::now();
                        if let Some(payload) = rtp_payload(&buf[..n]) {
                            let (list, arrived) = &*packets;
                            if let Ok(mut p) = list.lock() {
                                p.push((at, payload.to_vec()));
                            }
                            arrived.notify_all();
                        }
                    }
                })?
        };
        Ok(RtpCapture {
            port,
            packets,
            stop,
            thread: Some(thread),
        })
    }

    /// The port to point an agent's RTP sink at.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address to point an agent's RTP sink at (`rtp:ADDR`).
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Packets so far.
    pub fn len(&self) -> usize {
        self.packets.0.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// Whether nothing arrived yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until `frames` packets of programme audio (as [`programme_audio`] tells them from
    /// silence) arrived after `after`; returns how many there are, fewer only if `timeout`
    /// passed first. The evidence that an agent plays, rather than a guess at how long it takes.
    pub fn wait_for_programme_audio(
        &self,
        after: Instant,
        frames: usize,
        timeout: Duration,
    ) -> usize {
        let deadline = Instant::now() + timeout;
        let (list, arrived) = &*self.packets;
        let Ok(mut packets) = list.lock() else {
            return 0;
        };
        // Kept up to date packet by packet: per payload, how often it came and when first.
        let mut seen: HashMap<Vec<u8>, (usize, Instant)> = HashMap::new();
        let (mut counted, mut heard) = (0, 0usize);
        loop {
            for (at, payload) in &packets[counted..] {
                let entry = seen.entry(payload.clone()).or_insert((0, *at));
                entry.0 += 1;
                match entry.0 {
                    1 if entry.1 > after => heard += 1,
                    // Seen twice: silence after all.
                    2 if entry.1 > after => heard -= 1,
                    _ => {}
                }
            }
            counted = packets.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if heard >= frames || left.is_zero() {
                return heard;
            }
            packets = match arrived.wait_timeout(packets, left) {
                Ok((p, _)) => p,
                Err(_) => return heard,
            };
        }
    }

    /// Stops recording and returns every packet, in arrival order.
    pub fn stop(mut self) -> Vec<Arrival> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.packets
            .0
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default()
    }
}

impl Drop for RtpCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The payload of an RTP packet (RFC 3550 §5.1: CSRCs and a header extension skipped, padding
/// removed); `None` for anything that is not RTP version 2.
pub fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    let first = *packet.first()?;
    if first >> 6 != 2 || packet.len() < 12 {
        return None;
    }
    let mut start = 12 + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    let mut end = packet.len();
    if first & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(start..end)
}

/// For every frame that each agent played exactly once (a payload seen once in every capture),
/// the spread of its playout instants: latest minus earliest, in microseconds, in the order the
/// first agent played them. Payloads an agent sent twice (silence packets) are left out, as they
/// cannot be told apart.
pub fn playout_spread(captures: &[Vec<Arrival>]) -> Vec<f64> {
    common_frames(captures)
        .iter()
        .filter_map(|instants| {
            let earliest = instants.iter().min()?;
            let latest = instants.iter().max()?;
            Some((*latest - *earliest).as_secs_f64() * 1e6)
        })
        .collect()
}

/// For every frame of [`playout_spread`], how much later than the first capture's agent each
/// agent played it, in microseconds (negative: earlier): one series per capture. A constant
/// lead or lag is a clock estimate off by that much; scatter around it is timing noise.
pub fn playout_offsets(captures: &[Vec<Arrival>]) -> Vec<Vec<f64>> {
    let mut series = vec![Vec::new(); captures.len()];
    for instants in common_frames(captures) {
        let reference = instants[0];
        for (s, at) in series.iter_mut().zip(&instants) {
            let us = if *at >= reference {
                (*at - reference).as_secs_f64() * 1e6
            } else {
                -((reference - *at).as_secs_f64() * 1e6)
            };
            s.push(us);
        }
    }
    series
}

/// The playout instants of every frame each capture saw exactly once, one per capture, in the
/// order the first capture saw them.
fn common_frames(captures: &[Vec<Arrival>]) -> Vec<Vec<Instant>> {
    let unique: Vec<HashMap<&[u8], Instant>> = captures
        .iter()
        .map(|packets| {
            let mut seen: HashMap<&[u8], Option<Instant>> = HashMap::new();
            for (at, payload) in packets {
                seen.entry(payload.as_slice())
                    .and_modify(|e| *e = None)
                    .or_insert(Some(*at));
            }
            seen.into_iter()
                .filter_map(|(p, at)| at.map(|at| (p, at)))
                .collect()
        })
        .collect();
    let Some(first) = captures.first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter_map(|(_, payload)| {
            unique
                .iter()
                .map(|u| u.get(payload.as_slice()).copied())
                .collect::<Option<Vec<Instant>>>()
        })
        .collect()
}

/// The `p` quantile (0 to 1) of `values`, nearest rank; `None` when empty.
pub fn quantile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let last = sorted.len().checked_sub(1)?;
    let i = ((last as f64) * p.clamp(0.0, 1.0)).round() as usize;
    sorted.get(i.min(last)).copied()
}

/// When each packet of programme audio arrived. The agent sends one and the same packet for
/// every silent slot, while every 20 ms of a programme encodes differently: a payload seen more
/// than once is silence (or a programme played twice, which the tests using this must notice).
pub fn programme_audio(arrivals: &[Arrival]) -> Vec<Instant> {
    let mut seen = HashMap::<&[u8], usize>::new();
    for (_, payload) in arrivals {
        *seen.entry(payload).or_default() += 1;
    }
    arrivals
        .iter()
        .filter(|(_, payload)| seen[payload.as_slice()] == 1)
        .map(|(at, _)| *at)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_skips_csrcs_and_extension_and_padding() {
        let mut p = vec![0x80, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(b"opus");
        assert_eq!(rtp_payload(&p), Some(&b"opus"[..]));
        // One CSRC, an extension of one word, two bytes of padding.
        let mut q = vec![0xb1, 111, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        q.extend_from_slice(&[9, 9, 9, 9]);
        q.extend_from_slice(&[0xbe, 0xde, 0, 1, 7, 7, 7, 7]);
        q.extend_from_slice(b"opus");
        q.extend_from_slice(&[0, 2]);
        assert_eq!(rtp_payload(&q), Some(&b"opus"[..]));
        assert_eq!(rtp_payload(&[0x40; 20]), None, "version 1");
        assert_eq!(rtp_payload(&[0x80; 5]), None, "short");
    }

    #[test]
    fn spread_lines_frames_up_by_payload_and_leaves_repeats_out() {
        let t = Instant::now();
        let ms = |n: u64| t + Duration::from_millis(n);
        let a = vec![
            (ms(0), b"s".to_vec()),
            (ms(20), b"f1".to_vec()),
            (ms(40), b"f2".to_vec()),
            (ms(60), b"s".to_vec()),
        ];
        let b = vec![
            (ms(21), b"f1".to_vec()),
            (ms(5), b"s".to_vec()),
            (ms(43), b"f2".to_vec()),
        ];
        assert_eq!(
            playout_spread(&[a.clone(), b.clone()]),
            vec![1000.0, 3000.0]
        );
        assert_eq!(
            playout_offsets(&[b, a]),
            vec![vec![0.0, 0.0], vec![-1000.0, -3000.0]]
        );
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), Some(2.0));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
