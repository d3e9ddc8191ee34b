//! The process's media clock: audio frames are stamped on it at the router's tick and clock
//! probes are answered on it, so agents that estimate it play the same frame at the same instant.

use std::sync::OnceLock;
use std::time::Instant;

use radio_proto::MediaClock;

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The media clock of this process. Its epoch is fixed at first use and never changes while the
/// process lives (a restarted server is a new run: agents drop their estimate with its id).
pub fn media_clock() -> MediaClock {
    MediaClock::new(*EPOCH.get_or_init(Instant::now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_epoch_for_the_whole_process() {
        let a = media_clock();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = std::thread::spawn(media_clock).join().unwrap();
        assert_eq!(a, b);
        assert!(a.micros(Instant::now()) >= 2_000);
    }
}
