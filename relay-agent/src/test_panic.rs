//! Debug builds only: a panic injected into one of the agent's threads on demand, so the
//! end-to-end tests can show that the agent's death is noticed (`supervise.rs`). Release builds
//! do not contain this module.
//!
//! `RADIO_TEST_PANIC=playout` panics the playout thread, while it holds the playout state,
//! once it has played `RADIO_TEST_PANIC_AFTER_FRAMES` frames (default 0); `pipe-sink` panics a
//! pipe sink's writer thread once it has written that many slots.

/// Which thread panics.
pub const THREAD_ENV: &str = "RADIO_TEST_PANIC";

/// After how many frames (or slots).
pub const AFTER_ENV: &str = "RADIO_TEST_PANIC_AFTER_FRAMES";

/// After how many frames `thread` is to panic; `None` when it is not to.
pub fn armed(thread: &str) -> Option<u64> {
    if std::env::var(THREAD_ENV).ok()? != thread {
        return None;
    }
    let after = match std::env::var(AFTER_ENV) {
        Ok(n) => n.trim().parse().unwrap_or_else(|_| {
            tracing::warn!("{AFTER_ENV}={n:?} is not a number; panicking at once");
            0
        }),
        Err(_) => 0,
    };
    tracing::warn!("{THREAD_ENV}={thread}: the {thread} thread will panic after {after} frames");
    Some(after)
}

/// Panics when `done` has reached `after`.
#[track_caller]
pub fn check(thread: &str, after: Option<u64>, done: u64) {
    if after.is_some_and(|after| done >= after) {
        panic!("{THREAD_ENV}={thread}: injected panic after {done} frames");
    }
}

/// `RADIO_TEST_PANIC=playout-hang`: the playout thread stops for good, holding the playout
/// state, once it has played that many frames: a hang, not a crash, for the watchdog's test
/// (`service_manager.rs`).
pub const PLAYOUT_HANG: &str = "playout-hang";

/// Never returns once `done` has reached `after`.
pub fn hang_if(after: Option<u64>, done: u64) {
    if after.is_some_and(|after| done >= after) {
        tracing::warn!(
            "{THREAD_ENV}={PLAYOUT_HANG}: the playout thread hangs now, after {done} frames"
        );
        loop {
            std::thread::park();
        }
    }
}
