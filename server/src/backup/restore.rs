//! Restoring an archive into an empty data directory.
//!
//! Everything is written into a temporary sibling of the target (`.NAME.restore-XXXX`,
//! same file system), each file hashed as it is written; only when the manifest, the last
//! entry, matches every file is the folder renamed to the target. A damaged, truncated or
//! foreign archive leaves the target as it was and nothing beside it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::manifest::{FileEntry, Manifest, FORMAT, FORMAT_VERSION, MANIFEST_PATH};
use super::snapshot::{Hashing, STORE_DUMP};
use super::store_dump::{self, StoreDumpError};

/// Largest manifest read: a million library files fit.
const MANIFEST_MAX: u64 = 256 * 1024 * 1024;

/// Why a restore did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(
        "{} is not empty: restore only into an empty or new data directory (stop the server, \
         move the old directory aside, e.g. `mv {} {}.old`, then restore again)",
        path.display(), path.display(), path.display()
    )]
    NotEmpty { path: PathBuf },
    #[error("{} exists and is not a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("{}: {error}; nothing was restored", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("the archive is damaged or not a radio-server backup: {0}; nothing was restored")]
    Damaged(String),
    #[error("the archive ends before its manifest (cut short?); nothing was restored")]
    Truncated,
    #[error("the store could not be restored: {0}; nothing was restored")]
    Store(#[from] StoreDumpError),
}

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    pub store_entries: u64,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RestoreError + '_ {
    move |error| RestoreError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Restores the archive read from `archive` into `target`, which must be missing or an
/// empty directory.
pub fn restore(archive: impl Read, target: &Path) -> Result<Restored, RestoreError> {
    let target = std::path::absolute(target).map_err(io_err(target))?;
    let existing_mode = match fs::metadata(&target) {
        Ok(meta) if !meta.is_dir() => {
            return Err(RestoreError::NotADirectory { path: target });
        }
        Ok(meta) => {
            let mut entries = fs::read_dir(&target).map_err(io_err(&target))?;
            if entries.next().is_some() {
                return Err(RestoreError::NotEmpty { path: target });
            }
            Some(meta.permissions().mode() & 0o7777)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&target)(e)),
    };
    let parent = target.parent().unwrap_or(Path::new("/")).to_owned();
    fs::create_dir_all(&parent).map_err(io_err(&parent))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let work = tempfile::Builder::new()
        .prefix(&format!(".{name}.restore-"))
        .tempdir_in(&parent)
        .map_err(io_err(&parent))?;
    let (manifest, store_entries) = extract(archive, work.path())?;
    let mode = existing_mode.unwrap_or(0o700);
    fs::set_permissions(work.path(), fs::Permissions::from_mode(mode))
        .map_err(io_err(work.path()))?;
    let staged = work.keep();
    if let Err(e) = fs::rename(&staged, &target) {
        let _ = fs::remove_dir_all(&staged);
        return Err(RestoreError::Io {
            path: target,
            error: e,
        });
    }
    if let Ok(dir) = fs::File::open(&parent) {
        let _ = dir.sync_all();
    }
    Ok(Restored {
        manifest,
        store_entries,
    })
}

/// Writes every entry into `dir` and checks them against the manifest.
fn extract(archive: impl Read, dir: &Path) -> Result<(Manifest, u64), RestoreError> {
    let mut archive = tar::Archive::new(archive);
    let mut written: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut store_entries = 0;
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let path = entry.path().map_err(damaged)?;
        let path = checked_path(&path)?;
        if manifest.is_some() {
            return Err(RestoreError::Damaged(format!(
                "`{path}` after the manifest"
            )));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(RestoreError::Damaged(format!(
                "`{path}` is not a plain file"
            )));
        }
        if path == MANIFEST_PATH {
            manifest = Some(read_manifest(&mut entry)?);
            continue;
        }
        if written.contains_key(&path) {
            return Err(RestoreError::Damaged(format!("`{path}` twice")));
        }
        let mode = entry.header().mode().map_err(damaged)? & 0o7777;
        let mut reader = Hashing::new(&mut entry);
        if path == STORE_DUMP {
            store_entries =
                store_dump::load(&dir.join("store"), &mut reader).map_err(|e| match e {
                    StoreDumpError::Io(io) => damaged(io),
                    StoreDumpError::Malformed(m) => {
                        RestoreError::Damaged(format!("{STORE_DUMP}: {m}"))
                    }
                    other => RestoreError::Store(other),
                })?;
            // What follows the end mark still counts in the hash.
            io::copy(&mut reader, &mut io::sink()).map_err(damaged)?;
        } else {
            let out_path = dir.join(&path);
            if let Some(parent) = out_path.parent() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(io_err(parent))?;
            }
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out_path)
                .map_err(io_err(&out_path))?;
            io::copy(&mut reader, &mut out).map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    RestoreError::Truncated
                } else {
                    io_err(&out_path)(e)
                }
            })?;
            out.flush().map_err(io_err(&out_path))?;
            out.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(io_err(&out_path))?;
            out.sync_all().map_err(io_err(&out_path))?;
        }
        let size = reader.len;
        let sha256 = reader.finish();
        written.insert(
            path.clone(),
            FileEntry {
                path,
                size,
                mode,
                sha256,
            },
        );
    }
    let manifest = check_against(manifest, written)?;
    if !manifest.files.iter().any(|f| f.path == STORE_DUMP) {
        return Err(RestoreError::Damaged(format!("it has no {STORE_DUMP}")));
    }
    Ok((manifest, store_entries))
}

/// The manifest, if there is one and it lists exactly the files `written`.
fn check_against(
    manifest: Option<Manifest>,
    mut written: BTreeMap<String, FileEntry>,
) -> Result<Manifest, RestoreError> {
    let Some(manifest) = manifest else {
        return Err(RestoreError::Truncated);
    };
    if manifest.format != FORMAT {
        return Err(RestoreError::Damaged(format!(
            "its manifest says `{}`, not `{FORMAT}`",
            manifest.format
        )));
    }
    if manifest.format_version > FORMAT_VERSION {
        return Err(RestoreError::Damaged(format!(
            "format version {} is newer than this server's ({FORMAT_VERSION}): restore with \
             radio-server {} or later",
            manifest.format_version, manifest.server_version
        )));
    }
    for listed in &manifest.files {
        match written.remove(&listed.path) {
            None => {
                return Err(RestoreError::Damaged(format!(
                    "`{}` is listed but missing",
                    listed.path
                )))
            }
            Some(got) if got != *listed => {
                return Err(RestoreError::Damaged(format!(
                    "`{}` differs from the manifest ({} bytes, sha256 {}; listed {} bytes, \
                     sha256 {})",
                    listed.path, got.size, got.sha256, listed.size, listed.sha256
                )))
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = written.keys().next() {
        return Err(RestoreError::Damaged(format!(
            "`{extra}` is not in the manifest"
        )));
    }
    Ok(manifest)
}

/// Reads a whole archive and checks every file against its manifest, writing nothing: what
/// `radio-server backup` does before it keeps a file.
pub fn verify(archive: impl Read) -> Result<Manifest, RestoreError> {
    let mut archive = tar::Archive::new(archive);
    let mut written: BTreeMap<String, FileEntry> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(damaged)? {
        let mut entry = entry.map_err(damaged)?;
        let path = checked_path(&entry.path().map_err(damaged)?)?;
        if manifest.is_some() {
            return Err(RestoreError::Damaged(format!(
                "`{path}` after the manifest"
            )));
        }
        if path == MANIFEST_PATH {
            manifest = Some(read_manifest(&mut entry)?);
            continue;
        }
        let mode = entry.header().mode().map_err(damaged)? & 0o7777;
        let mut reader = Hashing::new(&mut entry);
        io::copy(&mut reader, &mut io::sink()).map_err(damaged)?;
        let size = reader.len;
        let sha256 = reader.finish();
        let file = FileEntry {
            path: path.clone(),
            size,
            mode,
            sha256,
        };
        if written.insert(path.clone(), file).is_some() {
            return Err(RestoreError::Damaged(format!("`{path}` twice")));
        }
    }
    check_against(manifest, written)
}

fn read_manifest(entry: &mut impl Read) -> Result<Manifest, RestoreError> {
    let mut text = String::new();
    entry
        .take(MANIFEST_MAX)
        .read_to_string(&mut text)
        .map_err(damaged)?;
    serde_json::from_str(&text).map_err(|e| RestoreError::Damaged(format!("the manifest: {e}")))
}

fn damaged(e: io::Error) -> RestoreError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        RestoreError::Truncated
    } else {
        RestoreError::Damaged(e.to_string())
    }
}

/// The entry's path as the manifest writes it, if it is a plain relative path inside the
/// data directory.
fn checked_path(path: &Path) -> Result<String, RestoreError> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_str().ok_or_else(|| {
                RestoreError::Damaged(format!("`{}` is not UTF-8", path.display()))
            })?),
            Component::CurDir => {}
            _ => {
                return Err(RestoreError::Damaged(format!(
                    "`{}` leaves the data directory",
                    path.display()
                )))
            }
        }
    }
    if parts.is_empty() {
        return Err(RestoreError::Damaged("an entry without a name".into()));
    }
    Ok(parts.join("/"))
}
