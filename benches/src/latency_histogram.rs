//! A latency histogram that thousands of simulated agents fill at once: fixed 100 µs buckets of
//! atomic counters, so recording a frame costs one atomic add and no lock, and the percentiles
//! come out exact to the bucket however many millions of frames are recorded.

use std::sync::atomic::{AtomicU64, Ordering};

/// Width of a bucket, µs.
const BUCKET_US: i64 = 100;
/// Lowest latency with a bucket of its own: the clock estimate of a simulated agent can be a
/// little off, so a frame may seem to arrive slightly before it was sent.
const FLOOR_US: i64 = -50_000;
/// Highest latency with a bucket of its own; anything later lands in the last bucket.
const CEILING_US: i64 = 10_000_000;
const BUCKETS: usize = ((CEILING_US - FLOOR_US) / BUCKET_US) as usize + 1;

/// Counts of latencies, µs, in 100 µs buckets from −50 ms to 10 s.
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&self, latency_us: i64) {
        let i = ((latency_us.clamp(FLOOR_US, CEILING_US) - FLOOR_US) / BUCKET_US) as usize;
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The latency below which a fraction `q` (0–1) of the recorded ones lie, in ms: the upper
    /// edge of the bucket holding it. `None` when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        // The rank of the q-quantile, 1-based: at least one frame, at most all of them.
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b.load(Ordering::Relaxed);
            if seen >= rank {
                let upper_us = FLOOR_US + (i as i64 + 1) * BUCKET_US;
                return Some(upper_us as f64 / 1000.0);
            }
        }
        None
    }

    /// Latencies above `threshold_us`, counted to the bucket (the bucket holding the threshold
    /// counts as not above it).
    pub fn above(&self, threshold_us: i64) -> u64 {
        let first =
            ((threshold_us.clamp(FLOOR_US, CEILING_US) - FLOOR_US) / BUCKET_US) as usize + 1;
        self.buckets
            .iter()
            .skip(first)
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_exact_to_the_bucket() {
        let h = LatencyHistogram::default();
        for ms in 1..=100 {
            h.record(ms * 1000 - 50);
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.quantile_ms(0.5), Some(50.0));
        assert_eq!(h.quantile_ms(0.99), Some(99.0));
        assert_eq!(h.quantile_ms(1.0), Some(100.0));
        assert_eq!(h.above(90_000), 10);
    }

    #[test]
    fn out_of_range_latencies_land_in_the_edge_buckets() {
        let h = LatencyHistogram::default();
        h.record(-1_000_000);
        h.record(60_000_000);
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile_ms(0.0), Some(-49.9));
        assert_eq!(h.quantile_ms(1.0), Some(10_000.1));
        assert_eq!(h.above(300_000), 1);
        assert_eq!(LatencyHistogram::default().quantile_ms(0.5), None);
    }
}
