//! Estimating the server's media clock from NTP-style exchanges, so that every agent plays frame
//! N at the same instant: its server time plus one fixed delay.
//!
//! Sans-IO: [`ClockSync`] says when to send a [`ClockProbe`], takes each [`ClockReply`] with the
//! instant it arrived, and yields a [`ClockMap`] from server media time to the agent's own
//! monotonic clock. The agent's clock is a monotonic `Instant`, never the wall clock, so an NTP
//! step or an operator setting the date cannot move the loudspeakers.
//!
//! One exchange gives the offset `((t2 - t1) + (t3 - t4)) / 2` to within half the asymmetry of
//! *that* exchange's delays. Queueing (a burst of audio ahead of the probe, a QUIC
//! retransmission, a radio link's jitter) makes every exchange asymmetric by a random amount,
//! and on a jittery link hardly any exchange is unqueued both ways: picking the exchanges with
//! the shortest round trips and taking their median was measured 1.8 ms off behind 5 ms of
//! jitter. So each direction is taken on its own: the shortest apparent delay out (`t2 - t1`)
//! over the recent exchanges and the shortest back (`t4 - t3`), each the least queued of its
//! direction; half their difference is the offset. The two clocks also run at slightly
//! different rates (crystals differ by tens of ppm: 50 ppm is 3 ms a minute); the rate is
//! estimated over a longer history, and the exchanges are carried to a common instant with it.
//!
//! No exchange can measure a constant asymmetry (a path slower one way than the other): it
//! shifts the estimate by half of it, for every method of this kind.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use radio_proto::{ClockProbe, ClockReply};

/// Probes sent quickly after a connection starts, so that the first frames already play in
/// step: the first frame is due a playout delay (300 ms by default) after the audio starts, which may be
/// as soon as the session is; by then, over a link of 80 ms each way, ten replies are back.
/// Forty quick probes (about 3 kB) make the estimate nearly as good as half a minute of the
/// slower ones.
pub const QUICK_PROBES: u32 = 40;
/// Interval of the quick probes.
pub const QUICK_INTERVAL: Duration = Duration::from_millis(10);
/// Interval of the probes after the quick ones. The more exchanges a window holds, the less
/// queued the least queued of them: over a jittery link that is what the estimate's error comes
/// down to (behind 5 ms of jitter, about 6 ms divided by the number of exchanges, each way).
/// Two exchanges a second cost about 2.5 kb/s with QUIC's headers, under a tenth of the audio.
/// A window short in time also leaves a drift less time to move the offset while the estimate
/// of the drift is still rough.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// Samples the offset is estimated from, newest first: half a minute.
const OFFSET_WINDOW: usize = 64;
/// Samples kept for the rate estimate: about two minutes.
const HISTORY: usize = 256;
/// Samples needed before an estimate is published: one exchange can be unlucky.
const MIN_SAMPLES: usize = 3;
/// The rate is only estimated over at least this span: over less, the least delays' noise
/// (hundreds of µs on a jittery link) would pass for a drift of tens of ppm.
const MIN_RATE_SPAN_US: f64 = 60e6;
/// Rates beyond this are not a crystal's drift but a broken measurement; clamped.
const MAX_RATE: f64 = 500e-6;
/// Probes awaiting their reply; older ones are forgotten. Enough for the quick probes over a
/// round trip of 400 ms, or the slower ones over half a minute.
const OUTSTANDING: usize = 64;

/// The server's media clock as seen from this agent: `server = server_ref + (local -
/// local_ref) × (1 + rate)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockMap {
    /// A local instant…
    pub local_ref: Instant,
    /// …and the server media time (µs) at that instant.
    pub server_ref_us: f64,
    /// How much faster the server's clock runs than ours (e.g. 20e-6 for 20 ppm).
    pub rate: f64,
}

impl ClockMap {
    /// The local instant at which the server's media clock reads `server_us`; `None` only when
    /// that lies beyond what `Instant` can represent.
    pub fn local_instant(&self, server_us: u64) -> Option<Instant> {
        let local_us = (server_us as f64 - self.server_ref_us) / (1.0 + self.rate);
        let offset = Duration::from_nanos((local_us.abs() * 1000.0) as u64);
        if local_us >= 0.0 {
            self.local_ref.checked_add(offset)
        } else {
            self.local_ref.checked_sub(offset)
        }
    }

    /// The server's media clock at local instant `at`, in µs (fractional).
    pub fn server_us(&self, at: Instant) -> f64 {
        let local_us = if at >= self.local_ref {
            (at - self.local_ref).as_secs_f64() * 1e6
        } else {
            -((self.local_ref - at).as_secs_f64() * 1e6)
        };
        self.server_ref_us + local_us * (1.0 + self.rate)
    }
}

/// One exchange.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    /// Midpoint of the exchange on the local clock (µs since the epoch).
    local_us: f64,
    /// Apparent one-way delay out, `t2 - t1`: the true delay plus the offset (µs).
    up_us: f64,
    /// Apparent one-way delay back, `t4 - t3`: the true delay minus the offset (µs).
    down_us: f64,
}

/// The clock estimator of one agent (sans-IO).
#[derive(Debug)]
pub struct ClockSync {
    /// Origin of the local microsecond clock sent as t1.
    epoch: Instant,
    next_id: u32,
    outstanding: VecDeque<(u32, u64)>,
    samples: VecDeque<Sample>,
    /// Probes sent since probing (re)started; the first [`QUICK_PROBES`] are quick.
    probes: u32,
    next_probe: Instant,
    /// The server run the samples belong to.
    server_run: Option<u64>,
    estimate: Option<ClockMap>,
}

impl ClockSync {
    /// An estimator whose local clock counts from `epoch`; the first probe is due at once.
    pub fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            next_id: 0,
            outstanding: VecDeque::new(),
            samples: VecDeque::new(),
            probes: 0,
            next_probe: epoch,
            server_run: None,
            estimate: None,
        }
    }

    /// A session with server run `server_run` began at `now`: probe quickly again (the path may
    /// have changed). Samples of another run are dropped, as its media clock is another.
    pub fn on_session(&mut self, server_run: u64, now: Instant) {
        if self.server_run != Some(server_run) {
            self.samples.clear();
            self.estimate = None;
        }
        self.server_run = Some(server_run);
        self.outstanding.clear();
        self.probes = 0;
        self.next_probe = now;
    }

    /// When the next probe is due.
    pub fn poll_timeout(&self) -> Instant {
        self.next_probe
    }

    /// The probe to send now, if one is due.
    pub fn poll_probe(&mut self, now: Instant) -> Option<ClockProbe> {
        if now < self.next_probe {
            return None;
        }
        let probe = ClockProbe {
            id: self.next_id,
            agent_send_us: self.micros(now),
        };
        self.next_id = self.next_id.wrapping_add(1);
        if self.outstanding.len() == OUTSTANDING {
            self.outstanding.pop_front();
        }
        self.outstanding.push_back((probe.id, probe.agent_send_us));
        self.probes = self.probes.saturating_add(1);
        let interval = if self.probes < QUICK_PROBES {
            QUICK_INTERVAL
        } else {
            PROBE_INTERVAL
        };
        // Paced from now, not from the due time: after a stall, one probe, not a burst.
        self.next_probe = now + interval;
        Some(probe)
    }

    /// A reply arrived at `received_at`. Returns whether the estimate changed. Replies that
    /// answer no probe of ours, or whose times contradict each other, are ignored: they come
    /// from the network, and a bad one must not move the loudspeakers.
    pub fn on_reply(&mut self, reply: ClockReply, received_at: Instant) -> bool {
        let Some(i) = self
            .outstanding
            .iter()
            .position(|&(id, t1)| id == reply.id && t1 == reply.agent_send_us)
        else {
            return false;
        };
        self.outstanding.remove(i);
        let t1 = i128::from(reply.agent_send_us);
        let t2 = i128::from(reply.server_receive_us);
        let t3 = i128::from(reply.server_send_us);
        let t4 = i128::from(self.micros(received_at));
        let rtt = (t4 - t1) - (t3 - t2);
        if t4 < t1 || rtt < 0 {
            return false;
        }
        let sample = Sample {
            local_us: (t1 + t4) as f64 / 2.0,
            up_us: (t2 - t1) as f64,
            down_us: (t4 - t3) as f64,
        };
        if self.samples.len() == HISTORY {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
        let before = self.estimate;
        self.estimate = self.compute();
        self.estimate != before
    }

    /// The current estimate, once enough exchanges have been made.
    pub fn estimate(&self) -> Option<ClockMap> {
        self.estimate
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    fn compute(&self) -> Option<ClockMap> {
        if self.samples.len() < MIN_SAMPLES {
            return None;
        }
        let rate = self.rate();
        let newest = self.samples.back()?.local_us;
        let window: Vec<Sample> = self
            .samples
            .iter()
            .rev()
            .take(OFFSET_WINDOW)
            .copied()
            .collect();
        let offset = offset_at(&window, rate, newest)?;
        let local_ref = self
            .epoch
            .checked_add(Duration::from_nanos((newest * 1000.0) as u64))?;
        Some(ClockMap {
            local_ref,
            server_ref_us: newest + offset,
            rate,
        })
    }

    /// The drift of the server's clock relative to ours, from the least queued exchanges of the
    /// older and the newer half of the history; 0 until the history spans
    /// [`MIN_RATE_SPAN_US`].
    fn rate(&self) -> f64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        if last.local_us - first.local_us < MIN_RATE_SPAN_US {
            return 0.0;
        }
        let all: Vec<Sample> = self.samples.iter().copied().collect();
        let (older, newer) = all.split_at(all.len() / 2);
        // The least queued exchange of a half is found on delays corrected for the drift
        // estimated so far: uncorrected, drift alone would pick the first exchange of the half
        // one way and the last the other. Twice is enough: the second pass moves it by much
        // less than a ppm.
        let mut rate = 0.0;
        for _ in 0..2 {
            let Some(correction) = residual_rate(older, newer, rate, first.local_us) else {
                return 0.0;
            };
            rate += correction;
        }
        rate.clamp(-MAX_RATE, MAX_RATE)
    }
}

/// The drift left after correcting by `rate`: the slopes of the least apparent delays out and
/// back between the halves (offset goes into one with a plus, into the other with a minus).
fn residual_rate(older: &[Sample], newer: &[Sample], rate: f64, origin: f64) -> Option<f64> {
    let up = |s: &Sample| s.up_us - rate * (s.local_us - origin);
    let down = |s: &Sample| s.down_us + rate * (s.local_us - origin);
    let least = |half: &[Sample], delay: &dyn Fn(&Sample) -> f64| -> Option<(f64, f64)> {
        half.iter()
            .map(|s| (s.local_us, delay(s)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let slope = |a: (f64, f64), b: (f64, f64)| -> Option<f64> {
        (b.0 - a.0 >= MIN_RATE_SPAN_US / 2.0).then(|| (b.1 - a.1) / (b.0 - a.0))
    };
    let up_slope = slope(least(older, &up)?, least(newer, &up)?)?;
    let down_slope = slope(least(older, &down)?, least(newer, &down)?)?;
    Some((up_slope - down_slope) / 2.0)
}

/// The server's clock minus ours at local time `at_us`, from `samples` carried there at `rate`.
///
/// Queueing only ever adds delay, and it adds it to each direction independently: so the
/// shortest apparent delay out (`t2 - t1`, the path's delay plus the offset) and the shortest
/// back (`t4 - t3`, the path's delay minus the offset), each taken over all the samples, are the
/// least queued each way, even when no single exchange was unqueued both ways. Half their
/// difference is the offset, give or take half the asymmetry of the path itself.
fn offset_at(samples: &[Sample], rate: f64, at_us: f64) -> Option<f64> {
    let drift = |s: &Sample| rate * (s.local_us - at_us);
    let up = samples
        .iter()
        .map(|s| s.up_us - drift(s))
        .min_by(f64::total_cmp)?;
    let down = samples
        .iter()
        .map(|s| s.down_us + drift(s))
        .min_by(f64::total_cmp)?;
    Some((up - down) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A simulated server whose media clock started `offset` before the agent's epoch and runs
    /// `rate` faster, reached over a path with the given one-way delays.
    struct World {
        agent_epoch: Instant,
        server_offset_us: f64,
        rate: f64,
        rng: rand::rngs::StdRng,
    }

    impl World {
        fn new(server_offset_us: f64, rate: f64) -> Self {
            Self {
                agent_epoch: Instant::now(),
                server_offset_us,
                rate,
                rng: rand::rngs::StdRng::seed_from_u64(7),
            }
        }

        /// The true server media time at local instant `at`.
        fn server_us(&self, at: Instant) -> f64 {
            let local = (at - self.agent_epoch).as_secs_f64() * 1e6;
            self.server_offset_us + local * (1.0 + self.rate)
        }

        /// Runs the exchange of `probe` sent at `sent`, with the given one-way delays; returns
        /// the reply and its arrival instant.
        fn exchange(
            &self,
            probe: ClockProbe,
            sent: Instant,
            up: Duration,
            down: Duration,
        ) -> (ClockReply, Instant) {
            let t2 = self.server_us(sent + up) as u64;
            // The server takes 30 µs to answer.
            let t3 = t2 + 30;
            let received = sent + up + Duration::from_micros(30) + down;
            (
                ClockReply {
                    id: probe.id,
                    agent_send_us: probe.agent_send_us,
                    server_receive_us: t2,
                    server_send_us: t3,
                },
                received,
            )
        }

        /// Exponential queueing delay with the given mean, in either direction.
        fn queue(&mut self, mean_us: f64) -> Duration {
            let u: f64 = self.rng.gen_range(1e-9..1.0);
            Duration::from_micros((-u.ln() * mean_us) as u64)
        }
    }

    /// Drives probing for `secs` seconds of virtual time with the given delay model; returns the
    /// estimator and the instant it ended.
    fn run(
        world: &mut World,
        secs: u64,
        mut delays: impl FnMut(&mut World) -> (Duration, Duration),
    ) -> (ClockSync, Instant) {
        let mut sync = ClockSync::new(world.agent_epoch);
        sync.on_session(1, world.agent_epoch);
        let end = world.agent_epoch + Duration::from_secs(secs);
        let mut now = world.agent_epoch;
        while now < end {
            now = sync.poll_timeout();
            let probe = sync.poll_probe(now).expect("due");
            let (up, down) = delays(world);
            let (reply, at) = world.exchange(probe, now, up, down);
            sync.on_reply(reply, at);
        }
        (sync, now)
    }

    /// Error of the estimate at `at`, in µs.
    fn error_us(world: &World, map: &ClockMap, at: Instant) -> f64 {
        map.server_us(at) - world.server_us(at)
    }

    #[test]
    fn probes_quickly_at_start_then_twice_a_second() {
        let t0 = Instant::now();
        let mut sync = ClockSync::new(t0);
        sync.on_session(9, t0);
        let mut sent = Vec::new();
        let mut now = t0;
        while now < t0 + Duration::from_millis(2_500) {
            if let Some(p) = sync.poll_probe(now) {
                sent.push((now - t0, p.id));
            }
            assert_eq!(sync.poll_probe(now), None, "one probe per due time");
            now = sync.poll_timeout();
        }
        let times: Vec<Duration> = sent.iter().map(|(t, _)| *t).collect();
        let ms = Duration::from_millis;
        let mut expected: Vec<Duration> = (0..40).map(|i| ms(10 * i)).collect();
        expected.extend([ms(890), ms(1_390), ms(1_890), ms(2_390)]);
        assert_eq!(times, expected);
        let ids: Vec<u32> = sent.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids, (0..44).collect::<Vec<_>>());
        // A new session probes quickly again.
        sync.on_session(9, now);
        assert!(sync.poll_probe(now).is_some());
        assert_eq!(sync.poll_timeout(), now + QUICK_INTERVAL);
    }

    #[test]
    fn symmetric_path_gives_the_offset_within_microseconds() {
        let mut world = World::new(123_456_789.0, 0.0);
        let (sync, now) = run(&mut world, 1, |_| {
            (Duration::from_millis(20), Duration::from_millis(20))
        });
        let map = sync.estimate().expect("estimate after the quick probes");
        assert!(error_us(&world, &map, now).abs() < 2.0, "{map:?}");
    }

    #[test]
    fn no_estimate_from_too_few_samples() {
        let mut world = World::new(5e6, 0.0);
        let mut sync = ClockSync::new(world.agent_epoch);
        sync.on_session(1, world.agent_epoch);
        for _ in 0..MIN_SAMPLES - 1 {
            let now = sync.poll_timeout();
            let probe = sync.poll_probe(now).expect("due");
            let d = world.queue(100.0);
            let (reply, at) = world.exchange(probe, now, d, d);
            assert!(!sync.on_reply(reply, at));
        }
        assert_eq!(sync.estimate(), None);
    }

    #[test]
    fn queueing_delays_are_filtered_out_direction_by_direction() {
        // 40 ms each way plus heavy, independent queueing each way (mean 15 ms): an exchange's
        // own offset is off by 7.5 ms on average, and hardly one is unqueued both ways.
        let mut world = World::new(1e9, 0.0);
        let mut worst: f64 = 0.0;
        let mut sync = ClockSync::new(world.agent_epoch);
        sync.on_session(1, world.agent_epoch);
        let mut now = world.agent_epoch;
        while now < world.agent_epoch + Duration::from_secs(300) {
            now = sync.poll_timeout();
            let probe = sync.poll_probe(now).expect("due");
            let up = Duration::from_millis(40) + world.queue(15_000.0);
            let down = Duration::from_millis(40) + world.queue(15_000.0);
            let (reply, at) = world.exchange(probe, now, up, down);
            sync.on_reply(reply, at);
            // Judged once the window is full, at every exchange after.
            if now > world.agent_epoch + Duration::from_secs(70) {
                let map = sync.estimate().expect("estimate");
                worst = worst.max(error_us(&world, &map, at).abs());
            }
        }
        // An exchange is off by 7.5 ms on average; the estimate, in the worst of 460 windows,
        // by well under 1 ms (344 µs with this seed).
        assert!(worst < 1_000.0, "worst error {worst} µs");
    }

    #[test]
    fn jitter_both_ways_costs_little() {
        // The benchmark's worst link: 80 ms each way and |normal| jitter of σ 5 ms.
        let mut world = World::new(3e8, 0.0);
        let normal = |w: &mut World| -> Duration {
            // Box–Muller.
            let u1: f64 = w.rng.gen_range(1e-9..1.0);
            let u2: f64 = w.rng.gen_range(0.0..1.0);
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            Duration::from_millis(80) + Duration::from_micros((z.abs() * 5_000.0) as u64)
        };
        let (sync, now) = run(&mut world, 120, |w| (normal(w), normal(w)));
        let map = sync.estimate().expect("estimate");
        let err = error_us(&world, &map, now);
        assert!(err.abs() < 150.0, "error {err} µs");
    }

    #[test]
    fn drift_is_estimated_and_followed() {
        // The server's crystal is 80 ppm fast: 4.8 ms a minute.
        let mut world = World::new(2e6, 80e-6);
        let (sync, now) = run(&mut world, 300, |w| {
            let d = Duration::from_millis(5) + w.queue(200.0);
            (d, Duration::from_millis(5) + w.queue(200.0))
        });
        let map = sync.estimate().expect("estimate");
        assert!((map.rate - 80e-6).abs() < 5e-6, "rate {}", map.rate);
        // Good now, and still good 2 s ahead (four probes later).
        for ahead in [0, 2] {
            let at = now + Duration::from_secs(ahead);
            let err = error_us(&world, &map, at);
            assert!(err.abs() < 100.0, "{ahead} s ahead: error {err} µs");
        }
    }

    #[test]
    fn without_the_rate_drift_would_skew_the_estimate() {
        // The same drifting server, but only 15 s of history: no rate estimate yet, so the
        // estimate lags. Checks the drift test above measures something real.
        let mut world = World::new(0.0, 300e-6);
        let (sync, now) = run(&mut world, 15, |_| {
            (Duration::from_millis(5), Duration::from_millis(5))
        });
        let map = sync.estimate().expect("estimate");
        assert_eq!(map.rate, 0.0);
        assert!(error_us(&world, &map, now).abs() > 500.0);
    }

    #[test]
    fn a_constant_asymmetry_shifts_the_estimate_by_half_of_it() {
        let mut world = World::new(0.0, 0.0);
        let (sync, now) = run(&mut world, 10, |_| {
            (Duration::from_millis(10), Duration::from_millis(50))
        });
        let map = sync.estimate().expect("estimate");
        let err = error_us(&world, &map, now);
        // The server seems 20 ms behind: the reply's long way home is taken for offset.
        assert!((err + 20_000.0).abs() < 5.0, "error {err} µs");
    }

    #[test]
    fn unknown_stale_or_contradictory_replies_are_ignored() {
        let t0 = Instant::now();
        let mut sync = ClockSync::new(t0);
        sync.on_session(1, t0);
        let probe = sync.poll_probe(t0).expect("due");
        let good = ClockReply {
            id: probe.id,
            agent_send_us: probe.agent_send_us,
            server_receive_us: 1_000,
            server_send_us: 1_010,
        };
        let later = t0 + Duration::from_millis(1);
        // Another id, another t1.
        for bad in [
            ClockReply { id: 99, ..good },
            ClockReply {
                agent_send_us: 77,
                ..good
            },
        ] {
            assert!(!sync.on_reply(bad, later));
        }
        assert_eq!(sync.samples.len(), 0);
        sync.on_reply(good, later);
        assert_eq!(sync.samples.len(), 1);
        // A server turnaround (100 ms) longer than the whole round trip (50 ms).
        let second = sync.poll_probe(later + QUICK_INTERVAL).expect("due");
        let contradictory = ClockReply {
            id: second.id,
            agent_send_us: second.agent_send_us,
            server_receive_us: 1_000,
            server_send_us: 101_000,
        };
        assert!(!sync.on_reply(contradictory, later + QUICK_INTERVAL * 2));
        assert_eq!(sync.samples.len(), 1);
        // Its reply came already: a duplicate is ignored.
        sync.on_reply(good, later);
        assert_eq!(sync.samples.len(), 1);
        // A new server run forgets the old run's samples.
        sync.on_session(2, later);
        assert_eq!(sync.samples.len(), 0);
    }

    #[test]
    fn map_converts_both_ways() {
        let t0 = Instant::now();
        let map = ClockMap {
            local_ref: t0 + Duration::from_secs(100),
            server_ref_us: 5e9,
            rate: 100e-6,
        };
        for server_us in [5_000_000_000u64, 4_990_000_000, 5_020_000_000] {
            let at = map.local_instant(server_us).expect("representable");
            assert!((map.server_us(at) - server_us as f64).abs() < 0.01);
        }
        // 20 ms of server time is 20 ms / 1.0001 of ours.
        let a = map.local_instant(5_000_000_000).expect("a");
        let b = map.local_instant(5_000_020_000).expect("b");
        let d = (b - a).as_nanos() as f64;
        assert!((d - 20e6 / 1.0001).abs() < 2.0, "{d}");
    }
}
