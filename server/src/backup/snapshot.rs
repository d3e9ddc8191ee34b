//! The consistent copy a backup is made of, then written out as a tar.
//!
//! [`Snapshot::take`] makes, in a temporary folder inside the data directory
//! (`.backup-XXXX`, removed when the snapshot is dropped):
//! 1. with the store's write gate closed: `store.dump`, and a hard link to the file of every
//!    library item the store lists at that moment. A file is renamed into place complete
//!    before its record is written, and its record removed before the file, so every record
//!    in the dump has its whole file, and an upload still arriving is not in the backup.
//!    A hard link keeps the file as it was even if the item is deleted a moment later.
//! 2. after it, hard links to the CA, the register, the token and the reset key, and the
//!    revocation list last. These files are only ever replaced whole (written beside and
//!    renamed), so a link is one whole version of each; the list comes after the register so
//!    that a station revoked while the backup runs is never in the register without being
//!    in the list of the same backup.
//!
//! Nothing is held in memory but one buffer: the archive is written from the links.

use std::fs;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::manifest::{hex, FileEntry, Manifest, FORMAT, FORMAT_VERSION, MANIFEST_PATH};
use super::store_dump::{self, StoreDumpError};
use crate::records::store::{Store, TOKEN_FILE};

/// Name of the store's dump in the archive.
pub(crate) const STORE_DUMP: &str = "store.dump";
/// Prefix of the snapshot folders in the data directory.
const WORK_PREFIX: &str = ".backup-";

/// What can go wrong taking or writing a backup.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error(transparent)]
    Store(#[from] StoreDumpError),
    #[error("the library's records cannot be read: {0}")]
    Library(String),
    #[error("the archive cannot be written: {0}")]
    Write(io::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SnapshotError + '_ {
    move |error| SnapshotError::Io {
        path: path.to_owned(),
        error,
    }
}

/// One file of the snapshot.
#[derive(Debug)]
struct Part {
    archive_path: String,
    source: PathBuf,
    size: u64,
    mode: u32,
}

/// A consistent copy of a data directory, ready to be written as an archive.
#[derive(Debug)]
pub struct Snapshot {
    /// Removed, with the links in it, when the snapshot is dropped.
    _work: tempfile::TempDir,
    parts: Vec<Part>,
    taken_at: Timestamp,
    store_entries: u64,
}

impl Snapshot {
    /// Takes the snapshot of `store`'s data directory. One at a time per data directory:
    /// folders that an earlier, interrupted one left are removed first. Blocking: run it
    /// off the async runtime's threads.
    pub fn take(store: &Store, now: Timestamp) -> Result<Snapshot, SnapshotError> {
        let data_dir = store.data_dir().to_owned();
        sweep_leftovers(&data_dir);
        let work = tempfile::Builder::new()
            .prefix(WORK_PREFIX)
            .tempdir_in(&data_dir)
            .map_err(io_err(&data_dir))?;
        let mut parts = Vec::new();
        let dump_path = work.path().join(STORE_DUMP);
        let store_entries;
        {
            let _closed = store.write_gate().close();
            let file = fs::File::create(&dump_path).map_err(io_err(&dump_path))?;
            let mut out = BufWriter::new(file);
            store_entries = store_dump::dump(store.db(), &data_dir.join("store"), &mut out)?;
            out.flush().map_err(io_err(&dump_path))?;
            let items = store
                .library()
                .list()
                .map_err(|e| SnapshotError::Library(e.to_string()))?;
            let library = work.path().join(crate::library::LIBRARY_DIR);
            fs::create_dir(&library).map_err(io_err(&library))?;
            for item in items {
                let name = item.file_name();
                let archive_path = format!("{}/{name}", crate::library::LIBRARY_DIR);
                if let Some(part) = link(&item.path, &library.join(&name), archive_path)? {
                    parts.push(part);
                } else {
                    tracing::warn!(
                        "backup: library item {} has no file {}; its record is kept",
                        item.id,
                        item.path.display()
                    );
                }
            }
        }
        let dump = part_of(&dump_path, STORE_DUMP.to_owned())?;
        parts.insert(0, dump);
        let ca = data_dir.join("ca");
        let mut identity = vec![
            "ca/ca.crt".to_owned(),
            "ca/ca.key".to_owned(),
            TOKEN_FILE.to_owned(),
            crate::identity::reset_key::FILE_NAME.to_owned(),
        ];
        if let Ok(entries) = fs::read_dir(ca.join("enrolled")) {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect();
            names.sort();
            identity.extend(names.into_iter().map(|n| format!("ca/enrolled/{n}")));
        }
        // Last: see the module's doc.
        identity.push("ca/revoked.toml".to_owned());
        for archive_path in identity {
            let target = work.path().join(&archive_path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_err(parent))?;
            }
            if let Some(part) = link(&data_dir.join(&archive_path), &target, archive_path)? {
                parts.push(part);
            }
        }
        Ok(Snapshot {
            _work: work,
            parts,
            taken_at: now,
            store_entries,
        })
    }

    /// How many files, and their bytes.
    pub fn size(&self) -> (usize, u64) {
        (self.parts.len(), self.parts.iter().map(|p| p.size).sum())
    }

    /// Entries of the store's trees in the dump.
    pub fn store_entries(&self) -> u64 {
        self.store_entries
    }

    /// Writes the archive to `out`, the manifest last; the manifest.
    pub fn write_archive(&self, out: impl Write) -> Result<Manifest, SnapshotError> {
        let mut builder = tar::Builder::new(out);
        let mut files = Vec::with_capacity(self.parts.len());
        let mtime = u64::try_from(self.taken_at.as_second()).unwrap_or(0);
        for part in &self.parts {
            let file = fs::File::open(&part.source).map_err(io_err(&part.source))?;
            let mut header = tar::Header::new_gnu();
            header.set_size(part.size);
            header.set_mode(part.mode);
            header.set_mtime(mtime);
            header.set_entry_type(tar::EntryType::Regular);
            let mut reader = Hashing::new(file.take(part.size));
            builder
                .append_data(&mut header, &part.archive_path, &mut reader)
                .map_err(SnapshotError::Write)?;
            if reader.len != part.size {
                return Err(SnapshotError::Io {
                    path: part.source.clone(),
                    error: io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than it was"),
                });
            }
            files.push(FileEntry {
                path: part.archive_path.clone(),
                size: part.size,
                mode: part.mode,
                sha256: reader.finish(),
            });
        }
        let manifest = Manifest {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            server_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: self.taken_at,
            files,
        };
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| SnapshotError::Write(io::Error::other(e)))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o600);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, MANIFEST_PATH, &json[..])
            .map_err(SnapshotError::Write)?;
        let mut out = builder.into_inner().map_err(SnapshotError::Write)?;
        out.flush().map_err(SnapshotError::Write)?;
        Ok(manifest)
    }

    /// The snapshot's folder (for tests).
    #[cfg(test)]
    pub(crate) fn work_dir(&self) -> &Path {
        self._work.path()
    }
}

/// Hard-links `source` to `target` (copies it where links are not possible); `None` if there
/// is no `source`.
fn link(source: &Path, target: &Path, archive_path: String) -> Result<Option<Part>, SnapshotError> {
    match fs::hard_link(source, target) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(_) => match fs::copy(source, target) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(SnapshotError::Io {
                    path: target.to_owned(),
                    error,
                })
            }
        },
    }
    part_of(target, archive_path).map(Some)
}

fn part_of(path: &Path, archive_path: String) -> Result<Part, SnapshotError> {
    let meta = fs::metadata(path).map_err(io_err(path))?;
    Ok(Part {
        archive_path,
        source: path.to_owned(),
        size: meta.len(),
        mode: meta.permissions().mode() & 0o7777,
    })
}

/// Removes snapshot folders a stopped server or an interrupted command left behind.
fn sweep_leftovers(data_dir: &Path) {
    let Ok(entries) = fs::read_dir(data_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(WORK_PREFIX) {
            if let Err(e) = fs::remove_dir_all(entry.path()) {
                tracing::warn!("backup: cannot remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// A reader that hashes and counts what passes.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    pub(crate) len: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    pub(crate) fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}
