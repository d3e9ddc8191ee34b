//! Backups of the data directory, and restoring one into an empty directory.
//!
//! A backup is one tar file: the store's trees dumped at one moment (`store.dump`), the
//! district CA (`ca/ca.crt`, `ca/ca.key`), the enrolment register (`ca/enrolled/`), the
//! revocation list (`ca/revoked.toml`), the admin token, the QUIC reset key and the audio
//! library's files (`library/`), then `MANIFEST.json` last: format version, server version,
//! creation time and each file's size, mode and SHA-256. Not compressed: the bulk is audio,
//! already compressed, and a plain tar can be looked into with `tar tvf`.
//!
//! # Layout
//! - `store_dump.rs` — the sled trees to and from `store.dump`, with sled's id generator
//!   carried across (link and run keys are generated ids).
//! - `manifest.rs` — [`Manifest`]: what the archive holds, checked at restore.
//! - `snapshot.rs` — [`Snapshot::take`]: the consistent copy (write gate closed while the
//!   trees are dumped and the library's files hard-linked), and [`Snapshot::write_archive`].
//! - `restore.rs` — [`restore`]: into a temporary sibling, checked against the manifest, then
//!   renamed into place.
//! - `rotation.rs` — nightly file names and which old ones to delete.
//! - `output.rs` — [`save`]: an archive written beside its final name, read back and checked,
//!   then renamed (mode 0600); [`prune`]: the nightly folder's old backups deleted.
//!
//! The HTTP side is `operator/backup_routes.rs`; the CLI's `radio-server backup` and
//! `restore` are in `main.rs`.

mod manifest;
mod output;
mod restore;
mod rotation;
mod snapshot;
mod store_dump;
#[cfg(test)]
mod tests;

pub use manifest::{FileEntry, Manifest, FORMAT, FORMAT_VERSION, MANIFEST_PATH};
pub use output::{prune, save, SaveError};
pub use restore::{restore, verify, RestoreError, Restored};
pub use rotation::{file_name, to_prune};
pub use snapshot::{Snapshot, SnapshotError};
pub use store_dump::StoreDumpError;
