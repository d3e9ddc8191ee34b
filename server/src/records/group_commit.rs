//! Group commit: many writers waiting for the disk share one flush.
//!
//! Every journal batch and link event is flushed before it is acknowledged (the agent deletes
//! its copy on the acknowledgement). One flush each is one disk sync each, and they run one
//! after the other: when a district's thousands of agents reconnect together (a server restart,
//! a province-wide power cut) the last one waited for thousands of syncs before its session was
//! recorded. Here a writer that finds a flush already running waits for the next one, which
//! covers every write registered before it started: the disk syncs once per round, however
//! many writers there are.

use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct Rounds {
    /// Writes registered so far (each numbered by its count).
    registered: u64,
    /// Every write up to this number is on disk.
    durable: u64,
    /// A flush is running.
    flushing: bool,
}

/// Shares flushes between the writers of one store. Blocking: call it off the async threads.
#[derive(Debug, Default)]
pub struct GroupCommit {
    rounds: Mutex<Rounds>,
    flushed: Condvar,
}

impl GroupCommit {
    /// Makes a write already applied durable: returns once a flush that started after the write
    /// was applied has succeeded, running `flush` itself when no other writer is. A failed flush
    /// is returned to the writer that ran it; the others try again with a flush of their own.
    pub fn commit<E>(&self, flush: impl Fn() -> Result<(), E>) -> Result<(), E> {
        let mut rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
        rounds.registered += 1;
        let mine = rounds.registered;
        loop {
            if rounds.durable >= mine {
                return Ok(());
            }
            if !rounds.flushing {
                rounds.flushing = true;
                let covers = rounds.registered;
                drop(rounds);
                let result = flush();
                let mut rounds = self.rounds.lock().unwrap_or_else(PoisonError::into_inner);
                rounds.flushing = false;
                if result.is_ok() {
                    rounds.durable = rounds.durable.max(covers);
                }
                self.flushed.notify_all();
                return result;
            }
            rounds = self
                .flushed
                .wait(rounds)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    /// A store whose writes count up and whose flush makes durable what was written when it
    /// started, slowly, as a disk sync does.
    #[derive(Default)]
    struct SlowStore {
        written: AtomicU64,
        durable: AtomicU64,
        flushes: AtomicU64,
    }

    impl SlowStore {
        fn flush(&self) -> Result<(), String> {
            let covers = self.written.load(Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            self.durable.fetch_max(covers, Ordering::SeqCst);
            self.flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn every_writer_returns_after_a_flush_that_covers_its_write_and_flushes_are_shared() {
        let store = Arc::new(SlowStore::default());
        let group = Arc::new(GroupCommit::default());
        let writers: Vec<_> = (0..16)
            .map(|_| {
                let (store, group) = (store.clone(), group.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let mine = store.written.fetch_add(1, Ordering::SeqCst) + 1;
                        group.commit(|| store.flush()).expect("flush");
                        assert!(
                            store.durable.load(Ordering::SeqCst) >= mine,
                            "write {mine} acknowledged before it was flushed"
                        );
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().expect("writer");
        }
        let flushes = store.flushes.load(Ordering::SeqCst);
        assert!(
            flushes < 320,
            "{flushes} flushes for 320 writes: none shared"
        );
    }

    #[test]
    fn a_failed_flush_is_reported_and_the_next_writer_flushes_again() {
        let group = GroupCommit::default();
        let calls = AtomicU64::new(0);
        let failing = || {
            calls.fetch_add(1, Ordering::SeqCst);
            Err("disk full")
        };
        assert_eq!(group.commit(failing), Err("disk full"));
        assert_eq!(group.commit(|| Ok::<(), &str>(())), Ok(()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
