//! Fan-out: one encoded frame, serialised once, queued for every connected agent.
//!
//! The publisher never blocks on a slow agent. Each agent has a bounded queue; when it is full the
//! oldest audio frame is dropped (live audio loses its worth with age) and counted. Programme
//! start/end markers are never dropped: they carry proof-of-play boundaries. Frames are shared
//! `Bytes`, so fan-out to N agents copies no audio.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Notify;

/// One queued message.
#[derive(Debug, Clone)]
struct Entry {
    bytes: Bytes,
    droppable: bool,
}

/// Per-agent send counters; they outlive a connection so reports cover reconnects.
#[derive(Debug, Default)]
pub struct SendCounters {
    /// Audio frames written to the agent's stream.
    pub frames_sent: AtomicU64,
    /// Audio frames dropped because the agent could not keep up.
    pub frames_dropped: AtomicU64,
    /// Bytes written.
    pub bytes_sent: AtomicU64,
}

/// One agent's queue.
#[derive(Debug)]
pub struct Subscriber {
    queue: Mutex<VecDeque<Entry>>,
    capacity: usize,
    notify: Notify,
    counters: Arc<SendCounters>,
}

impl Subscriber {
    fn push(&self, entry: Entry) {
        let Ok(mut q) = self.queue.lock() else { return };
        q.push_back(entry);
        if q.len() > self.capacity {
            if let Some(i) = q.iter().position(|e| e.droppable) {
                q.remove(i);
                self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(q);
        self.notify.notify_one();
    }

    /// Waits for queued messages and takes them all, oldest first.
    pub async fn next_batch(&self) -> Vec<(Bytes, bool)> {
        loop {
            let notified = self.notify.notified();
            if let Ok(mut q) = self.queue.lock() {
                if !q.is_empty() {
                    return q.drain(..).map(|e| (e.bytes, e.droppable)).collect();
                }
            }
            notified.await;
        }
    }

    /// Records that an audio frame of `len` bytes was written.
    pub fn sent(&self, len: usize, is_frame: bool) {
        if is_frame {
            self.counters.frames_sent.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .bytes_sent
            .fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// The set of subscribers of one channel.
#[derive(Debug, Default)]
pub struct Fanout {
    subscribers: Mutex<HashMap<u64, Arc<Subscriber>>>,
    /// The start marker of the programme on air, replayed to agents that join mid-programme.
    current_programme: Mutex<Option<Bytes>>,
    next_id: AtomicU64,
}

impl Fanout {
    /// A fan-out with no subscribers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a subscriber with a queue of `capacity` frames. Returns its id and queue.
    pub fn subscribe(
        &self,
        capacity: usize,
        counters: Arc<SendCounters>,
    ) -> (u64, Arc<Subscriber>) {
        let sub = Arc::new(Subscriber {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            notify: Notify::new(),
            counters,
        });
        if let Ok(current) = self.current_programme.lock() {
            if let Some(start) = current.as_ref() {
                sub.push(Entry {
                    bytes: start.clone(),
                    droppable: false,
                });
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.insert(id, sub.clone());
        }
        (id, sub)
    }

    /// Removes a subscriber.
    pub fn unsubscribe(&self, id: u64) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.remove(&id);
        }
    }

    /// Number of subscribers.
    pub fn len(&self) -> usize {
        self.subscribers.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Whether nobody is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues an audio frame for every subscriber.
    pub fn publish_frame(&self, frame: Bytes) {
        self.publish(Entry {
            bytes: frame,
            droppable: true,
        });
    }

    /// Queues a programme start marker and remembers it for late joiners.
    pub fn publish_programme_start(&self, start: Bytes) {
        if let Ok(mut current) = self.current_programme.lock() {
            *current = Some(start.clone());
        }
        self.publish(Entry {
            bytes: start,
            droppable: false,
        });
    }

    /// Queues a programme end marker.
    pub fn publish_programme_end(&self, end: Bytes) {
        if let Ok(mut current) = self.current_programme.lock() {
            *current = None;
        }
        self.publish(Entry {
            bytes: end,
            droppable: false,
        });
    }

    fn publish(&self, entry: Entry) {
        let subs: Vec<Arc<Subscriber>> = match self.subscribers.lock() {
            Ok(s) => s.values().cloned().collect(),
            Err(_) => return,
        };
        for sub in subs {
            sub.push(entry.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_subscriber_loses_oldest_frames_but_keeps_markers() {
        let fanout = Fanout::new();
        let counters = Arc::new(SendCounters::default());
        let (_, sub) = fanout.subscribe(3, counters.clone());
        fanout.publish_programme_start(Bytes::from_static(b"start"));
        for i in 0..5u8 {
            fanout.publish_frame(Bytes::from(vec![i]));
        }
        let batch = sub.next_batch().await;
        let got: Vec<_> = batch.iter().map(|(b, _)| b.to_vec()).collect();
        assert_eq!(got, vec![b"start".to_vec(), vec![3], vec![4]]);
        assert_eq!(counters.frames_dropped.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn late_joiner_gets_the_current_programme_start() {
        let fanout = Fanout::new();
        fanout.publish_programme_start(Bytes::from_static(b"start"));
        fanout.publish_frame(Bytes::from_static(b"f0"));
        let (id, sub) = fanout.subscribe(10, Arc::default());
        fanout.publish_frame(Bytes::from_static(b"f1"));
        let got: Vec<_> = sub.next_batch().await.into_iter().map(|(b, _)| b).collect();
        assert_eq!(
            got,
            vec![Bytes::from_static(b"start"), Bytes::from_static(b"f1")]
        );
        fanout.unsubscribe(id);
        assert!(fanout.is_empty());
    }

    #[tokio::test]
    async fn every_subscriber_gets_the_same_shared_bytes() {
        let fanout = Fanout::new();
        let subs: Vec<_> = (0..50)
            .map(|_| fanout.subscribe(10, Arc::default()).1)
            .collect();
        let frame = Bytes::from(vec![7u8; 100]);
        fanout.publish_frame(frame.clone());
        for sub in subs {
            let batch = sub.next_batch().await;
            assert_eq!(batch[0].0.as_ptr(), frame.as_ptr(), "no copy per agent");
        }
    }
}
