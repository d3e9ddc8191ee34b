//! The server's media clock: the one time base that audio frames are stamped with and that
//! agents estimate, so that every agent plays frame N at the same instant.

use std::time::Instant;

/// Microseconds since an epoch on the server's monotonic clock (its process start).
///
/// Monotonic, not wall-clock: a wall clock stepped by NTP or an operator would move every
/// agent's playout with it. The epoch itself is never sent; agents only learn the offset of
/// this clock from theirs (`ClockProbe`/`ClockReply`), which is all they need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaClock {
    epoch: Instant,
}

impl MediaClock {
    /// A clock counting from `epoch`.
    pub fn new(epoch: Instant) -> Self {
        MediaClock { epoch }
    }

    /// Its epoch.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The clock's reading at `at`; 0 before the epoch, saturating after 584 000 years.
    pub fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_microseconds_from_the_epoch_and_never_goes_negative() {
        let epoch = Instant::now() + Duration::from_secs(1);
        let clock = MediaClock::new(epoch);
        assert_eq!(clock.micros(epoch), 0);
        assert_eq!(
            clock.micros(epoch + Duration::from_nanos(20_999_999)),
            20_999
        );
        assert_eq!(clock.micros(epoch - Duration::from_millis(5)), 0);
    }
}
