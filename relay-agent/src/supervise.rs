//! Supervision of the threads and tasks the agent cannot run without.
//!
//! The agent is a daemon that a service manager restarts when it exits. A thread that dies
//! while the process lives on is worse than a crash: a panic in the playout thread poisons the
//! playout state, the link keeps sending heartbeats, and the station looks alive while it airs
//! nothing. So every thread and task of a running [`crate::Agent`] runs until the agent is
//! asked to stop, and one that ends before that ends the agent ([`Died`]); the binary then
//! exits non-zero, and the journal, never closed, records the run as not ended cleanly.

use std::any::Any;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

/// A thread or task of the agent ended before the agent was asked to stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {how}")]
pub struct Died {
    /// Which one, e.g. `playout thread`.
    pub what: &'static str,
    /// How: `panicked: MESSAGE`, or why it ended.
    pub how: String,
}

impl Died {
    /// `what` panicked with `payload`.
    pub fn panicked(what: &'static str, payload: &(dyn Any + Send)) -> Self {
        Died {
            what,
            how: format!("panicked: {}", panic_message(payload)),
        }
    }

    /// `what` ended by itself, for the reason `why`.
    pub fn ended(what: &'static str, why: impl std::fmt::Display) -> Self {
        Died {
            what,
            how: format!("ended: {why}"),
        }
    }

    /// How a task that ended early ended, from what its `JoinHandle` gave.
    pub fn task(what: &'static str, result: Result<(), tokio::task::JoinError>) -> Self {
        match result {
            Ok(()) => Died::ended(what, "it returned while the agent was running"),
            Err(e) if e.is_panic() => Died::panicked(what, e.into_panic().as_ref()),
            Err(e) => Died::ended(what, e),
        }
    }
}

/// The message a panic was raised with (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// A thread whose end, however it comes (return or panic), can be awaited from async code.
#[derive(Debug)]
pub struct SupervisedThread<T> {
    what: &'static str,
    handle: JoinHandle<T>,
    ended: oneshot::Receiver<()>,
}

/// Spawns `body` on a thread named `name` whose end [`SupervisedThread::ended`] reports;
/// `what` names it in messages (`playout thread`).
pub fn spawn_thread<T, F>(
    name: &str,
    what: &'static str,
    body: F,
) -> std::io::Result<SupervisedThread<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (alive, ended) = oneshot::channel::<()>();
    let handle = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            // Dropped when the body returns or unwinds: that drop is the notice. Declared
            // first, so it goes last, after everything else the body held.
            let _alive = alive;
            body()
        })?;
    Ok(SupervisedThread {
        what,
        handle,
        ended,
    })
}

impl<T> SupervisedThread<T> {
    /// What the thread is, for messages (`playout thread`).
    pub fn what(&self) -> &'static str {
        self.what
    }

    /// Completes once the thread has ended, by returning or by panicking. Cancel-safe.
    pub async fn ended(&mut self) {
        let _ = (&mut self.ended).await;
    }

    /// Whether the thread has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the thread and returns what it returned; `Err` says how it panicked. Blocks
    /// until the thread ends: call it once [`SupervisedThread::ended`] has completed, or from a
    /// blocking context.
    pub fn join(self) -> Result<T, Died> {
        let what = self.what;
        self.handle
            .join()
            .map_err(|payload| Died::panicked(what, payload.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_thread_is_noticed_with_its_message() {
        let mut thread = spawn_thread("playout", "playout thread", || -> u32 {
            panic!("the decoder broke");
        })
        .expect("spawn");
        tokio::time::timeout(std::time::Duration::from_secs(10), thread.ended())
            .await
            .expect("the end of a panicking thread is noticed");
        assert_eq!(
            thread.join(),
            Err(Died {
                what: "playout thread",
                how: "panicked: the decoder broke".into()
            })
        );
    }

    #[tokio::test]
    async fn a_thread_that_returns_is_noticed_too() {
        let mut thread = spawn_thread("journal", "journal writer thread", || 7).expect("spawn");
        tokio::time::timeout(std::time::Duration::from_secs(10), thread.ended())
            .await
            .expect("the end of a returning thread is noticed");
        assert_eq!(thread.join(), Ok(7));
    }

    #[tokio::test]
    async fn a_running_thread_is_not_reported() {
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let mut thread = spawn_thread("playout", "playout thread", move || {
            let _ = wait.recv();
        })
        .expect("spawn");
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(50), thread.ended()).await;
        assert!(early.is_err(), "a running thread was reported as ended");
        drop(release);
        thread.ended().await;
        assert_eq!(thread.join(), Ok(()));
    }

    #[tokio::test]
    async fn how_a_task_ended_is_told() {
        let task = tokio::spawn(async { panic!("link broke") });
        let died = Died::task("link task", task.await);
        assert_eq!(died.to_string(), "link task panicked: link broke");
        let task = tokio::spawn(async {});
        let died = Died::task("link task", task.await);
        assert_eq!(
            died.to_string(),
            "link task ended: it returned while the agent was running"
        );
    }
}
