//! Reconnect policy: exponential backoff with jitter, capped, never giving up.
//!
//! Jitter keeps 22 (or 10,000) agents that lost the server at the same moment from all coming back
//! at the same moment. A connection must have stayed up for [`STABLE_AFTER`] before the backoff
//! resets, so a link that flaps cannot make the agent busy-loop.

use std::time::Duration;

use rand::Rng;

/// How long a connection must last to count as stable.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_caps_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
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
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
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
}
