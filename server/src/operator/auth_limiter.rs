//! Failed-authentication rate limiting for the admin endpoint, per source address (sans-IO: the
//! caller passes the time in, so tests run on a virtual clock).
//!
//! After [`AuthLimits::max_failures`] failed authentications (401s) from one source within
//! [`AuthLimits::window`], that source is locked out for [`AuthLimits::lockout`]: every request
//! from it is answered 429 with `Retry-After`, **even one with a right token**. Were a right
//! token let through, a brute force would learn from the first 200 that it had hit; this way it
//! learns nothing until the lock-out ends, which holds a guesser to about
//! `max_failures` guesses per `window + lockout` (10 per two minutes by default: a 256-bit token
//! is out of reach, and so is a short `[[admin_token]]` someone typed by hand).
//!
//! A success resets nothing, neither another source's count nor the source's own: a caller
//! holding a viewer's token could otherwise mix in a success every nine guesses and brute-force
//! the admin token unhindered. Failures expire with their window.
//!
//! A source is an IPv4 address, or the /64 an IPv6 address lies in (one host usually owns a
//! whole /64, so counting single IPv6 addresses would count nothing).
//!
//! **Loopback.** The operator commands (`radio-server live start`, `status`, …) call from
//! 127.0.0.1, like anything else running on the server. A brute force from the machine itself
//! therefore locks the commands out too for the lock-out period. That is accepted: whoever
//! runs programs on the server can read `admin.token` only if they are the server's user, and an
//! operator locked out for a minute waits a minute (the 429 says how long); exempting loopback
//! would instead leave unlimited guessing to every local account and to anything that proxies
//! requests from the machine.
//!
//! Memory is bounded whatever arrives: at most [`AuthLimits::max_sources`] sources are tracked;
//! expired ones are pruned at most once per window, and when the table is still full the source
//! seen longest ago makes room for the new one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Failures from one source that start a lock-out.
pub const MAX_FAILURES: u32 = 10;
/// The window those failures must fall in.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How long a locked-out source is refused.
pub const LOCKOUT: Duration = Duration::from_secs(60);
/// Sources tracked at most: a few hundred kilobytes, whatever the number of addresses used.
pub const MAX_SOURCES: usize = 4096;

/// The limiter's constants; [`AuthLimits::default`] is the one the server runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    pub max_failures: u32,
    pub window: Duration,
    pub lockout: Duration,
    pub max_sources: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            max_failures: MAX_FAILURES,
            window: WINDOW,
            lockout: LOCKOUT,
            max_sources: MAX_SOURCES,
        }
    }
}

/// Whether a request from a source may be authenticated at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Locked out: answer 429 and say when to retry.
    LockedOut {
        retry_after: Duration,
    },
}

/// Where the limiter counts a request from: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SourceKey(u128);

impl From<IpAddr> for SourceKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            // An IPv4-mapped IPv6 address is the IPv4 host it maps.
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey(u128::from(u32::from(v4))),
                None => SourceKey(((u128::from(v6) >> 64) << 64) | 1),
            },
            IpAddr::V4(v4) => SourceKey(u128::from(u32::from(v4))),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Source {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
    last_seen: Instant,
}

impl Source {
    /// Nothing left to remember: not locked, and its window is over.
    fn expired(&self, now: Instant, limits: &AuthLimits) -> bool {
        self.locked_until.is_none_or(|until| until <= now)
            && now.saturating_duration_since(self.window_start) >= limits.window
    }
}

/// The table of sources and their recent failures.
#[derive(Debug)]
pub struct AuthLimiter {
    limits: AuthLimits,
    sources: HashMap<SourceKey, Source>,
    next_prune: Option<Instant>,
}

impl AuthLimiter {
    pub fn new(limits: AuthLimits) -> Self {
        AuthLimiter {
            limits,
            sources: HashMap::new(),
            next_prune: None,
        }
    }

    pub fn limits(&self) -> AuthLimits {
        self.limits
    }

    /// Asked before the token is looked at.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Verdict {
        self.prune(now);
        let Some(source) = self.sources.get_mut(&SourceKey::from(ip)) else {
            return Verdict::Allow;
        };
        match source.locked_until {
            Some(until) if until > now => Verdict::LockedOut {
                retry_after: until - now,
            },
            Some(_) => {
                // The lock-out is over: a fresh start, not one failure away from the next.
                source.locked_until = None;
                source.failures = 0;
                source.window_start = now;
                Verdict::Allow
            }
            None => Verdict::Allow,
        }
    }

    /// Records a failed authentication. `Some(lock-out)` when this failure starts one (the
    /// moment to log it, once).
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Option<Duration> {
        self.prune(now);
        let key = SourceKey::from(ip);
        if !self.sources.contains_key(&key) {
            self.make_room(now);
        }
        let limits = self.limits;
        let source = self.sources.entry(key).or_insert(Source {
            failures: 0,
            window_start: now,
            locked_until: None,
            last_seen: now,
        });
        source.last_seen = now;
        if source.locked_until.is_some_and(|until| until > now) {
            return None;
        }
        if now.saturating_duration_since(source.window_start) >= limits.window {
            source.failures = 0;
            source.window_start = now;
        }
        source.failures = source.failures.saturating_add(1);
        if source.failures >= limits.max_failures {
            source.locked_until = Some(now + limits.lockout);
            return Some(limits.lockout);
        }
        None
    }

    /// Sources tracked now.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// Drops expired sources, at most once per window: a full scan on every request would
    /// cost a flood of requests more than it costs the attacker.
    fn prune(&mut self, now: Instant) {
        if self.next_prune.is_some_and(|at| now < at) {
            return;
        }
        let limits = self.limits;
        self.sources.retain(|_, s| !s.expired(now, &limits));
        self.next_prune = Some(now + limits.window);
    }

    /// Makes room for one more source when the table is full.
    fn make_room(&mut self, now: Instant) {
        if self.sources.len() < self.limits.max_sources {
            return;
        }
        let limits = self.limits;
        self.sources.retain(|_, s| !s.expired(now, &limits));
        while self.sources.len() >= limits.max_sources.max(1) {
            let Some(oldest) = self
                .sources
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(key, _)| *key)
            else {
                return;
            };
            self.sources.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 9));

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn the_tenth_failure_locks_the_source_out_for_the_lockout() {
        let mut limiter = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        for n in 1..MAX_FAILURES {
            assert_eq!(limiter.check(A, t0), Verdict::Allow, "before failure {n}");
            assert_eq!(limiter.failed(A, t0 + secs(u64::from(n))), None);
        }
        let at = t0 + secs(10);
        assert_eq!(limiter.failed(A, at), Some(LOCKOUT), "the tenth starts it");
        assert_eq!(
            limiter.check(A, at + secs(1)),
            Verdict::LockedOut {
                retry_after: LOCKOUT - secs(1)
            }
        );
        // Failures during the lock-out neither extend it nor announce it again.
        assert_eq!(limiter.failed(A, at + secs(30)), None);
        assert_eq!(
            limiter.check(A, at + secs(59)),
            Verdict::LockedOut {
                retry_after: secs(1)
            }
        );
        assert_eq!(limiter.check(A, at + LOCKOUT), Verdict::Allow);
        // After the lock-out the count starts again from zero.
        assert_eq!(limiter.failed(A, at + LOCKOUT), None);
        assert_eq!(limiter.check(A, at + LOCKOUT), Verdict::Allow);
    }

    #[test]
    fn another_source_is_not_affected() {
        let mut limiter = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            limiter.failed(A, t0);
        }
        assert!(matches!(limiter.check(A, t0), Verdict::LockedOut { .. }));
        assert_eq!(limiter.check(B, t0), Verdict::Allow);
        // B's own failures count from zero.
        for _ in 1..MAX_FAILURES {
            assert_eq!(limiter.failed(B, t0), None);
        }
        assert_eq!(limiter.check(B, t0), Verdict::Allow);
    }

    #[test]
    fn failures_spread_beyond_the_window_do_not_lock_out() {
        let mut limiter = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        // Nine in one window, nine in the next: never ten within one.
        let per_window = MAX_FAILURES - 1;
        for n in 0..2 * per_window {
            let at = t0 + WINDOW * (n / per_window) + secs(u64::from(n % per_window));
            assert_eq!(limiter.failed(A, at), None, "failure {n}");
            assert_eq!(limiter.check(A, at), Verdict::Allow);
        }
    }

    #[test]
    fn ipv6_sources_are_counted_per_64() {
        let mut limiter = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        let host =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, last));
        for n in 0..MAX_FAILURES {
            limiter.failed(host(u16::try_from(n).unwrap()), t0);
        }
        assert!(matches!(
            limiter.check(host(999), t0),
            Verdict::LockedOut { .. }
        ));
        let other_net = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 2, 0, 0, 0, 1));
        assert_eq!(limiter.check(other_net, t0), Verdict::Allow);
        // An IPv4-mapped address is its IPv4 host, not a /64.
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(203, 0, 113, 7).to_ipv6_mapped());
        for _ in 0..MAX_FAILURES {
            limiter.failed(mapped, t0);
        }
        assert!(matches!(limiter.check(A, t0), Verdict::LockedOut { .. }));
    }

    #[test]
    fn the_table_stays_bounded_and_prunes_expired_sources() {
        let limits = AuthLimits {
            max_sources: 64,
            ..AuthLimits::default()
        };
        let mut limiter = AuthLimiter::new(limits);
        let t0 = Instant::now();
        let ip = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        for n in 0..10_000 {
            limiter.failed(ip(n), t0 + Duration::from_millis(u64::from(n)));
            assert!(limiter.len() <= 64, "{} after {n}", limiter.len());
        }
        // The newest sources are the ones kept.
        for _ in 1..MAX_FAILURES {
            limiter.failed(ip(9_999), t0 + secs(10));
        }
        assert!(matches!(
            limiter.check(ip(9_999), t0 + secs(10)),
            Verdict::LockedOut { .. }
        ));
        // Once windows and lock-outs are over, a request prunes them all.
        let later = t0 + secs(10) + WINDOW + LOCKOUT;
        assert_eq!(limiter.check(B, later), Verdict::Allow);
        assert!(limiter.is_empty(), "{} left", limiter.len());
    }
}
