//! The service manager (systemd) told when the daemon is ready, and a watchdog fed from the
//! work itself, shared by the agent and the server.
//!
//! A crash is noticed by any service manager; a hang is not. A playout thread stuck on a lock
//! or a device leaves the process alive, its link sending heartbeats, and the station silent.
//! So the watchdog is not fed by a timer of its own but by [`Progress`], which the work
//! advances (the agent's playout thread each 20 ms slot, the server's on-air tick): when the
//! work stops advancing, the feeding stops, and systemd (`WatchdogSec=`) kills and restarts
//! the service. Without a systemd watchdog the same check ends the process itself after
//! [`DEFAULT_STALL_LIMIT`], so that any supervisor restarts it.
//!
//! Every notification is a no-op when the process was not started by systemd (no
//! `NOTIFY_SOCKET`): tests and hand-started daemons need nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::supervise::Died;

/// How long the work may make no progress before the process ends itself, when systemd has
/// not set a watchdog (`WATCHDOG_USEC`). The playout writes a slot every 20 ms; a second
/// without one is already a fault, ten is surely a hang and not a slow machine.
pub const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(10);

/// Exit status of a process whose work hung (EX_SOFTWARE, as for a thread that died): the
/// service manager restarts it.
pub const EXIT_HUNG: i32 = 70;

/// Environment variable overriding [`DEFAULT_STALL_LIMIT`] in milliseconds (tests; a machine
/// known to be very slow).
pub const STALL_LIMIT_ENV: &str = "RADIO_STALL_LIMIT_MS";

/// A count the work advances each time it does a unit of work; cheap enough for every slot.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more unit of work done.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// What the watchdog does after a look at the work's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The work advanced since the last look: tell the service manager all is well.
    Feed,
    /// No progress yet, but not for long enough to call it a hang.
    Wait,
    /// No progress for this long: the work hangs.
    Stalled(Duration),
}

/// The watchdog's decision, without I/O: counts and instants in, a [`Verdict`] out.
#[derive(Debug, Clone)]
pub struct StallCheck {
    limit: Duration,
    last_count: Option<u64>,
    since: Instant,
}

impl StallCheck {
    /// Calls the work hung once it has made no progress for `limit`, counted from `now`.
    pub fn new(limit: Duration, now: Instant) -> Self {
        StallCheck {
            limit,
            last_count: None,
            since: now,
        }
    }

    /// A look at the work's progress `count` at `now`.
    pub fn check(&mut self, count: u64, now: Instant) -> Verdict {
        if self.last_count != Some(count) {
            self.last_count = Some(count);
            self.since = now;
            return Verdict::Feed;
        }
        let idle = now.saturating_duration_since(self.since);
        if idle >= self.limit {
            Verdict::Stalled(idle)
        } else {
            Verdict::Wait
        }
    }
}

/// Tells systemd the daemon is ready (`Type=notify`), with a one-line status for
/// `systemctl status`.
pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the daemon is stopping on request, so a slow drain is not taken for a hang.
pub fn notify_stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

/// Tells systemd a new status line.
pub fn notify_status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!("cannot notify the service manager: {e}");
    }
}

/// The systemd watchdog's interval, when the unit has `WatchdogSec=` and it is meant for this
/// process.
fn systemd_watchdog() -> Option<Duration> {
    let mut usec = 0u64;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec))
}

/// How long the work may stall before this process calls it a hang: the systemd watchdog's
/// interval when there is one (systemd acts at the same moment; whichever is first restarts
/// it), else [`STALL_LIMIT_ENV`] or [`DEFAULT_STALL_LIMIT`].
pub fn stall_limit() -> Duration {
    if let Some(interval) = systemd_watchdog() {
        return interval;
    }
    match std::env::var(STALL_LIMIT_ENV) {
        Ok(ms) => {
            match ms.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    tracing::warn!("{STALL_LIMIT_ENV}={ms:?} is not a positive number of ms; using the default");
                    DEFAULT_STALL_LIMIT
                }
            }
        }
        Err(_) => DEFAULT_STALL_LIMIT,
    }
}

/// A running watchdog; dropping it stops it (before a clean shutdown drains the work, which
/// then rightly stops advancing).
#[derive(Debug)]
pub struct Watchdog {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Watches `progress` on a thread of its own, feeding systemd's watchdog (when set) while the
/// work advances; when it stalls past `limit` (normally [`stall_limit`]), calls `on_stall` with why (which ends the
/// process: a hung thread cannot be unwound). `what` names the work (`playout thread`).
///
/// A thread, not a task: the work that hangs may hold a lock the async tasks wait on, and a
/// runtime whose workers all wait is the very hang to catch.
pub fn spawn_watchdog(
    progress: Progress,
    what: &'static str,
    limit: Duration,
    on_stall: impl FnOnce(Died) + Send + 'static,
) -> std::io::Result<Watchdog> {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let systemd = systemd_watchdog();
    if let Some(interval) = systemd {
        tracing::info!("systemd watchdog every {interval:?}, fed by the {what}");
    }
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            // Four looks per limit: systemd is fed at least twice per interval, as
            // sd_watchdog_enabled(3) advises, and a hang is seen within a quarter of the limit.
            let look = (limit / 4).max(Duration::from_millis(50));
            let mut check = StallCheck::new(limit, Instant::now());
            while !stopped.load(Ordering::Relaxed) {
                match check.check(progress.count(), Instant::now()) {
                    Verdict::Feed if systemd.is_some() => {
                        notify(&[sd_notify::NotifyState::Watchdog]);
                    }
                    Verdict::Feed | Verdict::Wait => {}
                    Verdict::Stalled(idle) => {
                        on_stall(stalled(what, idle));
                        return;
                    }
                }
                // The watchdog's own clock: it looks at the work at this pace.
                std::thread::sleep(look);
            }
        })?;
    Ok(Watchdog { stop })
}

fn stalled(what: &'static str, idle: Duration) -> Died {
    Died::ended(
        what,
        format!(
            "it made no progress for {:.1} s (hung); the watchdog gave up on it",
            idle.as_secs_f64()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feeds_while_the_work_advances_and_calls_a_stall_only_after_the_limit() {
        let t0 = Instant::now();
        let limit = Duration::from_secs(10);
        let mut check = StallCheck::new(limit, t0);
        assert_eq!(check.check(0, t0), Verdict::Feed);
        assert_eq!(check.check(5, t0 + Duration::from_secs(1)), Verdict::Feed);
        // The work stops at count 5 (t = 1 s).
        assert_eq!(check.check(5, t0 + Duration::from_secs(2)), Verdict::Wait);
        assert_eq!(
            check.check(5, t0 + Duration::from_millis(10_999)),
            Verdict::Wait
        );
        assert_eq!(
            check.check(5, t0 + Duration::from_secs(11)),
            Verdict::Stalled(limit)
        );
        // It comes back: fed again, and the clock restarts from there.
        assert_eq!(check.check(6, t0 + Duration::from_secs(12)), Verdict::Feed);
        assert_eq!(check.check(6, t0 + Duration::from_secs(21)), Verdict::Wait);
    }

    #[test]
    fn a_work_that_never_starts_is_a_stall_too() {
        let t0 = Instant::now();
        let mut check = StallCheck::new(Duration::from_secs(3), t0);
        assert_eq!(check.check(0, t0), Verdict::Feed);
        assert!(matches!(
            check.check(0, t0 + Duration::from_secs(3)),
            Verdict::Stalled(_)
        ));
    }

    #[test]
    fn the_watchdog_thread_gives_up_on_work_that_stops_and_not_before() {
        let progress = Progress::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let limit = Duration::from_secs(3);
        let watchdog = spawn_watchdog(progress.clone(), "test work", limit, move |died| {
            let _ = tx.send(died);
        })
        .expect("thread");
        // Working: 200 steps of 20 ms, past the limit, and no verdict.
        for _ in 0..200 {
            progress.advance();
            std::thread::sleep(Duration::from_millis(20));
            assert!(rx.try_recv().is_err(), "gave up on work that advances");
        }
        // Hung.
        let died = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the watchdog gives up on a stalled work");
        assert_eq!(died.what, "test work");
        assert!(died.how.contains("no progress"), "{died}");
        drop(watchdog);
    }
}
