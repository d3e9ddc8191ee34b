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
//! A receiver that never sends RTCP is judged by ICMP alone: up once no error has come back
//! for [`QUIET_FOR_UP`].
//! That cannot see a receiver that vanished silently, which is why RTCP-capable receivers are
//! preferred (docs/REPORTS.md, "Loudspeaker clusters").

use std::time::{Duration, Instant};

use radio_proto::ClusterState;

/// How long without an ICMP error before a receiver that sends no RTCP counts as up (at start,
/// and after errors). ICMP errors are rate-limited — about one a second per destination, and a
/// host-wide budget that other traffic shares — so a dead port can stay quiet for seconds:
/// the quiet must be long enough that silence means an open port, not a spent budget.
pub const QUIET_FOR_UP: Duration = Duration::from_secs(10);

/// An ICMP error this soon after a report is stale (it answers a packet sent before the
/// receiver opened its port) and does not count.
pub const STALE_AFTER_REPORT: Duration = Duration::from_secs(3);

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
            .is_some_and(|r| now.saturating_duration_since(r) < STALE_AFTER_REPORT)
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
        // A report after the last counted error proves the receiver is back at once.
        let reported_since_error = match (&self.last_report, &self.last_error) {
            (Some(report), Some((error, _))) => report > error,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if let (Some(report), true) = (self.last_report, reported_since_error) {
            return Some(if now.saturating_duration_since(report) <= self.timeout {
                (
                    ClusterState::Up,
                    "the receiver reports receiving the stream (RTCP)".to_owned(),
                )
            } else {
                (
                    ClusterState::Down,
                    format!("no RTCP receiver report for {} s", self.timeout.as_secs()),
                )
            });
        }
        let quiet_since = match &self.last_error {
            Some((at, error)) if now.saturating_duration_since(*at) < QUIET_FOR_UP => {
                return Some((ClusterState::Down, format!("receiver unreachable: {error}")));
            }
            Some((at, _)) => *at,
            None => self.started,
        };
        // Give an error the time to come back before calling a silent receiver up.
        (now.saturating_duration_since(quiet_since) >= QUIET_FOR_UP).then(|| {
            (
                ClusterState::Up,
                "no error from the receiver (it sends no RTCP reports)".to_owned(),
            )
        })
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
    fn an_icmp_error_is_down_at_once_and_clears_after_a_long_quiet() {
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
        // The errors pause for seconds (the host's ICMP budget is spent, as under load): the
        // port is still closed, the cluster still down.
        h.on_unreachable(t0 + secs(6.0), "Connection refused (os error 111)");
        assert_eq!(h.poll(t0 + secs(15.0)), None);
        // The receiver came back at 6 s: no more errors, and it sends no RTCP.
        let up = h.poll(t0 + secs(16.0)).expect("up");
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
        // The old report no longer vouches for it; a new one does, at once.
        assert_eq!(h.poll(t0 + secs(6.0)), None);
        h.on_report(t0 + secs(6.5));
        let up = h.poll(t0 + secs(6.5)).expect("up");
        assert!(up.reason.contains("RTCP"), "{}", up.reason);
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
    fn a_silent_receiver_without_errors_is_up_only_after_the_quiet() {
        let t0 = Instant::now();
        let mut h = ClusterHealth::new(t0, TIMEOUT);
        assert_eq!(h.poll(t0 + secs(9.9)), None);
        assert_eq!(state_of(h.poll(t0 + QUIET_FOR_UP)), Some(Up));
        assert_eq!(h.state(), Some(Up));
    }
}
