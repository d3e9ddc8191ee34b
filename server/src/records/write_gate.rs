//! The store's write gate: every change to the store's trees passes it shared, and a backup
//! closes it while it copies the trees, so the copy is the store at one moment.
//!
//! sled 0.34 has no public snapshot: `Db::export` and tree iterators see writes made while
//! they run, tree by tree, and the global lock its own `checksum` takes is private. Held by a
//! writer only around the sled call itself (never across a flush, another gated call or an
//! await), the gate costs an uncontended read lock per write; a backup holds it for as long
//! as the trees take to dump, during which writers wait (journal uploads are acknowledged
//! that much later; nothing on air waits for the store).

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Shared by a store and all of its trees' owners.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<RwLock<()>>);

impl WriteGate {
    /// Held by a writer around one change. A panic while it was held poisons nothing that
    /// matters here: the lock guards no data.
    pub fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Held by a backup while it copies the trees: no change is under way or starts.
    pub fn close(&self) -> RwLockWriteGuard<'_, ()> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
