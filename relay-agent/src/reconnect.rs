//! Reconnect policy: when to try again after a connection attempt or a session ended.
//!
//! Two regimes, because two very different things look alike from the agent:
//! - **Probing** after a stable session was lost to silence (a wireless link in a storm, a
//!   server restart). An attempt that gets no answer at all cost the server nothing — nothing
//!   reached it — so the agent tries again at once, every [`PROBE_ANSWER_MIN`] or so, and the
//!   audio is back within about a second of the link's return instead of after a backoff step of
//!   up to 10 s. Probing lasts [`PROBE_WINDOW`] after the loss: long enough for the outages a
//!   thunderstorm causes, short enough that 10,000 agents of a province do not keep sending three
//!   Initials a second each to a server that is gone for good.
//! - **Backoff** for everything else: exponential with jitter, capped, never giving up. A server
//!   that answered and refused, a handshake that failed after the server answered, a session
//!   that ended before it was stable, or probing that ran out of its window. Jitter keeps 22 (or
//!   10,000) agents that lost the server at the same moment from all coming back at the same
//!   moment, and a session must have lasted [`STABLE_AFTER`] before the backoff resets, so a
//!   link that flaps, or a server that accepts and then drops every session, cannot make the
//!   agent busy-loop.
//!
//! A server overloaded by a province's agents coming back at once refuses the handshakes beyond
//! its limit (an answer), which moves those agents to the backoff.

use std::time::{Duration, Instant};

use rand::Rng;

/// How long a session must last to count as stable.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// How long after losing a stable session the agent keeps probing.
pub const PROBE_WINDOW: Duration = Duration::from_secs(60);

/// A probe that has had no answer this long is abandoned for a fresh one (never less): one
/// Initial packet about every 0.3 s. quinn would itself resend the Initial, but on its
/// exponential schedule (about 1 s, then 2 s, …), which is what makes recovery slow.
pub const PROBE_ANSWER_MIN: Duration = Duration::from_millis(300);

/// …and never more, however slow the last link was.
pub const PROBE_ANSWER_MAX: Duration = Duration::from_secs(5);

/// Up to this much random wait between probes, so agents that lost the server together drift
/// apart instead of probing in lockstep.
pub const PROBE_JITTER: Duration = Duration::from_millis(50);

/// Exponential backoff with "equal jitter": each wait is between half and all of the current step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// Backoff from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Self {
            min,
            max,
            step: min,
        }
    }

    /// The next wait, using `rng` for the jitter.
    pub fn next_wait<R: Rng>(&mut self, rng: &mut R) -> Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let jitter_ms = rng.gen_range(0..=half.as_millis().max(1) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the shortest wait, after a stable connection.
    pub fn reset(&mut self) {
        self.step = self.min;
    }
}

/// How one connection attempt, or the session it led to, ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Nothing came back from the server within the attempt's answer time.
    NoAnswer,
    /// The server answered, then refused or the handshake failed; or it closed the session.
    Refused,
    /// A session that had been welcomed went silent (idle timeout) or broke.
    Lost {
        /// How long the session had been up.
        lasted: Duration,
    },
}

/// The next attempt: when, and how long it may wait for the server's first answer before it is
/// abandoned (`None`: the whole handshake timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextAttempt {
    pub wait: Duration,
    pub answer_within: Option<Duration>,
}

/// The reconnect policy: sans-IO (times and randomness come in), so its whole behaviour over a
/// day of outages is tested on a virtual clock.
#[derive(Debug, Clone)]
pub struct Reconnect {
    backoff: Backoff,
    /// Probing until then, after a stable session was lost.
    probe_until: Option<Instant>,
    /// The last session's round-trip time: a probe waits a few of them for an answer, so that a
    /// slow (satellite, congested 3G) link is not abandoned before its answer can come back.
    rtt: Option<Duration>,
}

impl Reconnect {
    /// The policy with backoff from `min` doubling up to `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            backoff: Backoff::new(min, max),
            probe_until: None,
            rtt: None,
        }
    }

    /// Remembers the round-trip time of the session that is up.
    pub fn observe_rtt(&mut self, rtt: Duration) {
        self.rtt = Some(rtt);
    }

    /// Whether the agent is probing at `now`.
    pub fn probing(&self, now: Instant) -> bool {
        self.probe_until.is_some_and(|until| now < until)
    }

    fn answer_time(&self) -> Duration {
        self.rtt
            .map(|rtt| rtt * 4)
            .unwrap_or(PROBE_ANSWER_MIN)
            .clamp(PROBE_ANSWER_MIN, PROBE_ANSWER_MAX)
    }

    /// What to do after `ending`, at `now`.
    pub fn after<R: Rng>(&mut self, ending: Ending, now: Instant, rng: &mut R) -> NextAttempt {
        match ending {
            Ending::Lost { lasted } if lasted >= STABLE_AFTER => {
                self.backoff.reset();
                self.probe_until = Some(now + PROBE_WINDOW);
            }
            Ending::NoAnswer if self.probing(now) => {}
            Ending::NoAnswer | Ending::Lost { .. } | Ending::Refused => {
                self.probe_until = None;
                return NextAttempt {
                    wait: self.backoff.next_wait(rng),
                    answer_within: None,
                };
            }
        }
        let jitter = rng.gen_range(0..=PROBE_JITTER.as_millis() as u64);
        NextAttempt {
            wait: Duration::from_millis(jitter),
            answer_within: Some(self.answer_time()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn grows_caps_and_resets() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let waits: Vec<_> = (0..10).map(|_| b.next_wait(&mut rng)).collect();
        assert!(waits[0] >= Duration::from_millis(250) && waits[0] <= Duration::from_millis(501));
        for w in &waits {
            assert!(*w <= Duration::from_millis(10_001), "{w:?} over the cap");
        }
        assert!(
            waits[9] >= Duration::from_secs(5),
            "reached the cap: {waits:?}"
        );
        b.reset();
        assert!(b.next_wait(&mut rng) <= Duration::from_millis(501));
    }

    #[test]
    fn jitter_spreads_agents() {
        let mut rng = StdRng::seed_from_u64(1);
        let waits: std::collections::BTreeSet<_> = (0..22)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_secs(4), Duration::from_secs(10));
                b.next_wait(&mut rng)
            })
            .collect();
        assert!(
            waits.len() > 15,
            "22 agents should not retry in lockstep: {waits:?}"
        );
    }

    /// Runs attempts on a virtual clock against a link that is dead until `back`: every attempt
    /// before it gets no answer. Returns when the first attempt after `back` starts.
    fn first_attempt_after(policy: &mut Reconnect, lost: Instant, back: Instant) -> Instant {
        let mut rng = StdRng::seed_from_u64(5);
        let mut now = lost;
        let mut next = policy.after(
            Ending::Lost {
                lasted: Duration::from_secs(600),
            },
            now,
            &mut rng,
        );
        loop {
            now += next.wait;
            if now >= back {
                return now;
            }
            // The attempt is sent; without an answer it ends after its answer time, or after
            // the whole handshake timeout (10 s) when it may wait for ever.
            now += next.answer_within.unwrap_or(Duration::from_secs(10));
            if now >= back {
                // The link came back while this attempt waited: quinn's next Initial (about 1 s
                // in, then 2 s later) is what gets through — the slow path probing avoids.
                return now;
            }
            next = policy.after(Ending::NoAnswer, now, &mut rng);
        }
    }

    #[test]
    fn after_a_stable_session_a_30_s_outage_is_over_within_a_probe() {
        let policy = Reconnect::new(Duration::from_millis(500), Duration::from_secs(10));
        let lost = Instant::now();
        for secs in [3u64, 10, 30, 45] {
            let back = lost + Duration::from_secs(secs);
            let attempt = first_attempt_after(&mut policy.clone(), lost, back);
            let late = attempt - back;
            assert!(
                late <= PROBE_ANSWER_MIN + PROBE_JITTER,
                "outage of {secs} s: first attempt {late:?} after the link came back"
            );
        }
        // With the backoff alone (the behaviour before probing) the same 30 s outage could
        // leave the agent waiting out a step of several seconds: the check above can fail.
        let mut rng = StdRng::seed_from_u64(5);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let mut now = lost;
        let back = lost + Duration::from_secs(30);
        while now < back {
            now += backoff.next_wait(&mut rng) + Duration::from_secs(3);
        }
        assert!(now - back > PROBE_ANSWER_MIN + PROBE_JITTER);
    }

    #[test]
    fn probing_ends_after_its_window_and_backs_off_to_the_cap() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut policy = Reconnect::new(Duration::from_millis(500), Duration::from_secs(10));
        let lost = Instant::now();
        let mut now = lost;
        let mut next = policy.after(
            Ending::Lost {
                lasted: Duration::from_secs(60),
            },
            now,
            &mut rng,
        );
        let mut probes = 0;
        let mut waits_after = Vec::new();
        while now < lost + Duration::from_secs(600) {
            now += next.wait + next.answer_within.unwrap_or(Duration::from_secs(10));
            if next.answer_within.is_some() {
                probes += 1;
                assert!(now - lost <= PROBE_WINDOW + Duration::from_secs(1));
            } else {
                waits_after.push(next.wait);
            }
            next = policy.after(Ending::NoAnswer, now, &mut rng);
        }
        // About three probes a second for the window, then a handful of attempts, capped at 10 s.
        assert!((150..=200).contains(&probes), "{probes} probes");
        assert!(waits_after
            .iter()
            .all(|w| *w <= Duration::from_millis(10_001)));
        assert!(waits_after
            .iter()
            .rev()
            .take(5)
            .all(|w| *w >= Duration::from_secs(5)));
        assert!(!policy.probing(now));
    }

    #[test]
    fn a_refusal_or_a_short_session_backs_off_instead_of_probing() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut policy = Reconnect::new(Duration::from_millis(500), Duration::from_secs(10));
        let now = Instant::now();
        // A server that answers and refuses is not probed three times a second.
        let next = policy.after(Ending::Refused, now, &mut rng);
        assert_eq!(next.answer_within, None);
        // A flapping link: sessions of 2 s never earn probing, and the waits grow.
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = policy.after(
                Ending::Lost {
                    lasted: Duration::from_secs(2),
                },
                now,
                &mut rng,
            );
            assert_eq!(next.answer_within, None);
            waits.push(next.wait);
        }
        assert!(
            waits.last().copied().unwrap_or_default() >= Duration::from_secs(5),
            "{waits:?}"
        );
        // A refusal while probing ends the probing: the server is there and said no.
        policy.after(
            Ending::Lost {
                lasted: Duration::from_secs(20),
            },
            now,
            &mut rng,
        );
        assert!(policy.probing(now));
        assert_eq!(
            policy.after(Ending::Refused, now, &mut rng).answer_within,
            None
        );
        assert!(!policy.probing(now));
    }

    #[test]
    fn a_probe_waits_a_few_round_trips_of_a_slow_link() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut policy = Reconnect::new(Duration::from_millis(500), Duration::from_secs(10));
        policy.observe_rtt(Duration::from_millis(700));
        let lost = Instant::now();
        let next = policy.after(
            Ending::Lost {
                lasted: Duration::from_secs(60),
            },
            lost,
            &mut rng,
        );
        assert_eq!(next.answer_within, Some(Duration::from_millis(2800)));
        policy.observe_rtt(Duration::from_secs(30));
        let next = policy.after(Ending::NoAnswer, lost, &mut rng);
        assert_eq!(next.answer_within, Some(PROBE_ANSWER_MAX));
    }
}
