//! Whether a loudspeaker cluster fed over RTP can hear the station (sans-IO: observations and
//! `now` in, state changes out).
//!
//! Two signals, both from the stream itself, so nothing extra has to be installed at the
//! cluster:
//! - **RTCP receiver reports** (RFC 3550): a receiver that sends them says, every few seconds,
//!   that it receives our stream. Once a receiver has reported, silence longer than the timeout
//!   means it is down (power cut at the cluster, a broken cable, a crashed receiver).
//! - **ICMP errors** on the RTP socket: "port unreachable" (the receiver program is not
//!   running) or "host unreachable" (nothing answers at that address) mark it down at once.
//!
//! A receiver that never sends RTCP is judged by ICMP alone: up while no error comes back.
//! That cannot see a receiver that vanished silently, which is why RTCP-capable receivers are
//! preferred (docs/REPORTS.md, "Loudspeaker clusters").

use std::time::{Duration, Instant};

use radio_proto::ClusterState;

/// After an ICMP error, how long the cluster stays down without another one. Linux rate-limits
/// ICMP errors to about one a second per destination, so a dead port keeps refreshing this.
/// Also how old a receiver's last report must be before an error counts against it.
pub const ERROR_HOLD: Duration = Duration::from_secs(3);

/// A state change to journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterChange {
    pub state: ClusterState,
    /// What showed it, for the operator.
    pub reason: String,
}

/// The tracker for one cluster.
#[derive(Debug, Clone)]
pub struct ClusterHealth {
    timeout: Duration,
    started: Instant,
    state: Option<ClusterState>,
    last_report: Option<Instant>,
    last_error: Option<(Instant, String)>,
}

impl ClusterHealth {
    /// A tracker started at `now`; `timeout` is how long a reporting receiver may stay silent.
    pub fn new(now: Instant, timeout: Duration) -> Self {
        ClusterHealth {
            timeout,
            started: now,
            state: None,
            last_report: None,
            last_error: None,
        }
    }

    /// The state decided so far (`None` in the first seconds, before any evidence).
    pub fn state(&self) -> Option<ClusterState> {
        self.state
    }

    /// The receiver reported on our stream.
    pub fn on_report(&mut self, now: Instant) {
        self.last_report = Some(now);
    }

    /// Sending to the receiver failed with an ICMP-reported error.
    pub fn on_unreachable(&mut self, now: Instant, error: &str) {
        // An error close after a report is stale: it answers a packet sent before the receiver
        // opened its port (seen with GStreamer and ffmpeg starting up). A receiver that really
        // went away keeps drawing errors, and they count once its last report is old.
        if self
            .last_report
            .is_some_and(|r| now.saturating_duration_since(r) < ERROR_HOLD)
        {
            return;
        }
        self.last_error = Some((now, error.to_owned()));
        // What comes back may be another receiver: it must show itself afresh, by reports or
        // by the absence of errors.
        self.last_report = None;
    }

    /// The state at `now`, returned only when it changed.
    pub fn poll(&mut self, now: Instant) -> Option<ClusterChange> {
        let (state, reason) = self.decide(now)?;
        if self.state == Some(state) {
            return None;
        }
        self.state = Some(state);
        Some(ClusterChange { state, reason })
    }

    fn decide(&self, now: Instant) -> Option<(ClusterState, String)> {
        let quiet_since = match &self.last_error {
            Some((at, error)) if now.saturating_duration_since(*at) < ERROR_HOLD => {
                return Some((ClusterState::Down, format!("receiver unreachable: {error}")));
            }
            Some((at, _)) => *at,
            None => self.started,
        };
        match self.last_report {
            Some(at) if now.saturating_duration_since(at) <= self.timeout => Some((
                ClusterState::Up,
                "the receiver reports receiving the stream (RTCP)".to_owned(),
            )),
            Some(_) => Some((
                ClusterState::Down,
                format!("no RTCP receiver report for {} s", self.timeout.as_secs()),
            )),
            // Give an error the time to come back before calling a silent receiver up.
            None if now.saturating_duration_since(quiet_since) >= ERROR_HOLD => Some((
                ClusterState::Up,
                "no error from the receiver (it sends no RTCP reports)".to_owned(),
            )),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ClusterState::{Down, Up};

    const TIMEOUT: Duration = Duration::from_secs(30);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn state_of(change: Option<ClusterChange>) -> Option<ClusterState> {
        change.map(|c| c.state)
    }

    #[test]
    fn a_reporting_receiver_is_up_then_down_when_its_reports_stop() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        assert_eq!(h.poll(t0 + secs(0.5)), None, "no evidence yet");
        h.on_report(t0 + secs(1.0));
        let up = h.poll(t0 + secs(1.0)).expect("up");
        assert_eq!(up.state, Up);
        assert!(up.reason.contains("RTCP"), "{}", up.reason);
        for s in [5.0, 10.0, 31.0] {
            assert_eq!(h.poll(t0 + secs(s)), None, "still up at {s}");
        }
        let down = h.poll(t0 + secs(31.5)).expect("down");
        assert_eq!(down.state, Down);
        assert_eq!(down.reason, "no RTCP receiver report for 30 s");
        h.on_report(t0 + secs(40.0));
        assert_eq!(state_of(h.poll(t0 + secs(40.0))), Some(Up));
    }

    #[test]
    fn an_icmp_error_is_down_at_once_and_clears_after_the_hold() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        h.on_unreachable(t0 + secs(0.1), "Connection refused (os error 111)");
        let down = h.poll(t0 + secs(0.1)).expect("down");
        assert_eq!(down.state, Down);
        assert!(
            down.reason.contains("Connection refused"),
            "{}",
            down.reason
        );
        // Errors keep coming while the port stays closed.
        h.on_unreachable(t0 + secs(2.0), "Connection refused (os error 111)");
        assert_eq!(h.poll(t0 + secs(4.0)), None);
        // The receiver came back: no more errors, and it sends no RTCP.
        let up = h.poll(t0 + secs(5.1)).expect("up");
        assert_eq!(up.state, Up);
        assert!(up.reason.contains("no error"), "{}", up.reason);
    }

    #[test]
    fn a_reporting_receiver_that_goes_away_is_down_once_its_errors_outlast_its_report() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        h.on_report(t0 + secs(1.0));
        assert_eq!(state_of(h.poll(t0 + secs(1.0))), Some(Up));
        // Killed just after reporting: the first errors are too close to the report...
        for s in [1.5, 2.5, 3.5] {
            h.on_unreachable(t0 + secs(s), "refused");
            assert_eq!(h.poll(t0 + secs(s)), None, "at {s}");
        }
        // ...the next one is not.
        h.on_unreachable(t0 + secs(4.5), "refused");
        assert_eq!(state_of(h.poll(t0 + secs(4.5))), Some(Down));
        // The old report no longer vouches for it: quiet alone brings it back, not RTCP.
        let up = h.poll(t0 + secs(7.5)).expect("up");
        assert_eq!(up.state, Up);
        assert!(up.reason.contains("no error"), "{}", up.reason);
        h.on_report(t0 + secs(8.0));
        assert_eq!(h.poll(t0 + secs(8.0)), None);
    }

    #[test]
    fn a_stale_error_right_after_a_report_does_not_flap() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        h.on_unreachable(t0, "refused");
        assert_eq!(state_of(h.poll(t0)), Some(Down));
        h.on_report(t0 + secs(5.0));
        assert_eq!(state_of(h.poll(t0 + secs(5.0))), Some(Up));
        h.on_unreachable(t0 + secs(5.04), "refused");
        assert_eq!(h.poll(t0 + secs(5.04)), None);
        assert_eq!(h.poll(t0 + secs(9.0)), None);
    }

    #[test]
    fn a_silent_receiver_without_errors_is_up_only_after_the_hold() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        assert_eq!(h.poll(t0 + secs(2.9)), None);
        assert_eq!(state_of(h.poll(t0 + ERROR_HOLD)), Some(Up));
        assert_eq!(h.state(), Some(Up));
    }
}
