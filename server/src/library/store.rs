//! The library's items: the files in `data_dir/library/` and their records in the store's
//! `library` tree (id → JSON).
//!
//! A file is only ever renamed into place complete and checked, and its record is written
//! after it, so a power cut leaves at worst a file without a record (which only takes space),
//! never a record without its file. Deleting removes the record first for the same reason.
//! Unfinished uploads are swept at the next start.
//!
//! Everything here is blocking (a flush waits for the disk): call it off the async runtime's
//! threads.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The tree of items: id → JSON.
const LIBRARY_TREE: &str = "library";
/// The folder of the files, in the data directory.
pub const LIBRARY_DIR: &str = "library";
/// What an upload is called while it arrives and is checked.
const PART_PREFIX: &str = ".upload-";
const PART_SUFFIX: &str = ".part";
/// Characters of an id: lowercase letters and digits, unambiguous in a URL and when read out.
const ID_CHARS: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
/// Length of an id: 32^8 = 10^12 ids, no collision in a district's lifetime of uploads.
const ID_LEN: usize = 8;
/// Longest display name, in characters.
pub const NAME_MAX: usize = 120;

/// One recording in the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryItem {
    /// Short and URL-safe, e.g. `k3x9abme`.
    pub id: String,
    /// What staff call it (any language), 1–120 characters.
    pub name: String,
    /// The file's name on the uploader's device.
    pub original_name: String,
    /// The container, as the file's extension: `mp3`, `m4a`, `ogg`, `opus`, `webm`, `wav`,
    /// `flac`, `aac`.
    pub format: String,
    /// The codec symphonia (or libopus) decoded: `mp3`, `aac`, `opus`, `vorbis`, `flac`,
    /// `pcm_s16le`...
    pub codec: String,
    /// Seconds of audio that decoded.
    pub duration_secs: f64,
    /// Largest sample of the mono mix, in dBFS (0 is full scale; -120 is digital silence).
    pub peak_dbfs: f64,
    /// RMS of the mono mix over the whole recording, in dBFS (-120 for silence).
    pub rms_dbfs: f64,
    pub size_bytes: u64,
    pub uploaded_at: Timestamp,
    /// The account or token name that uploaded it.
    pub uploaded_by: String,
    /// Where the file is on the server: what schedule entries, bulletins and emergencies name
    /// (`{"kind": "file", "path": ...}`) to air it. Filled in on every read, from the library
    /// folder the server runs with.
    #[serde(default)]
    pub path: PathBuf,
}

impl LibraryItem {
    /// The file's name in the library folder.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.id, self.format)
    }
}

/// What can go wrong with the library's store and folder. Messages name the path to look at.
#[derive(Debug, thiserror::Error)]
pub enum LibraryError {
    #[error("{}: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: the stored library item `{id}` cannot be read ({reason})", path.display())]
    Corrupt {
        path: PathBuf,
        id: String,
        reason: String,
    },
    /// No item has that id.
    #[error("no library item `{id}`")]
    NotFound { id: String },
}

/// The library of one server's data directory.
#[derive(Debug)]
pub struct Library {
    tree: sled::Tree,
    /// The store's path, for errors.
    store_path: PathBuf,
    dir: PathBuf,
    /// Held across a read-modify-write of a record (rename), so two renames cannot lose one.
    write: Mutex<()>,
    /// The store's write gate (`records/write_gate.rs`).
    gate: crate::records::write_gate::WriteGate,
}

impl Library {
    /// Opens the `library` tree of `db` (the store at `store_path`) for the files in
    /// `data_dir/library/`, and sweeps uploads that a stopped server left unfinished.
    pub fn open(db: &sled::Db, store_path: PathBuf, data_dir: &Path) -> Result<Self, LibraryError> {
        let tree = db.open_tree(LIBRARY_TREE).map_err(|e| LibraryError::Db {
            path: store_path.clone(),
            reason: e.to_string(),
        })?;
        let dir = data_dir.join(LIBRARY_DIR);
        // Items are aired by their path, and the admin API takes absolute paths only: a data
        // directory given as a relative path must not make every item unairable.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        let library = Library {
            tree,
            store_path,
            dir,
            write: Mutex::new(()),
            gate: Default::default(),
        };
        library.sweep_parts();
        Ok(library)
    }

    /// Writes pass `gate` (the store's).
    pub(crate) fn gated(mut self, gate: crate::records::write_gate::WriteGate) -> Self {
        self.gate = gate;
        self
    }

    /// The folder of the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn db_err(&self, e: impl std::fmt::Display) -> LibraryError {
        LibraryError::Db {
            path: self.store_path.clone(),
            reason: e.to_string(),
        }
    }

    /// Removes unfinished uploads: nothing can finish them after a restart.
    fn sweep_parts(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX) {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!("library: cannot remove {}: {e}", entry.path().display());
                }
            }
        }
    }

    /// A new file to receive an upload into, in the library folder (so that the rename into
    /// place stays on one file system), created now so no two uploads share one.
    pub fn new_part(&self) -> Result<(PathBuf, std::fs::File), LibraryError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| LibraryError::Io {
            path: self.dir.clone(),
            source,
        })?;
        loop {
            let path = self
                .dir
                .join(format!("{PART_PREFIX}{}{PART_SUFFIX}", random_id(16)));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(LibraryError::Io { path, source }),
            }
        }
    }

    /// Every item, oldest upload first.
    pub fn list(&self) -> Result<Vec<LibraryItem>, LibraryError> {
        let mut items = Vec::new();
        for entry in self.tree.iter() {
            let (key, value) = entry.map_err(|e| self.db_err(e))?;
            items.push(self.decode(&key, &value)?);
        }
        items.sort_by(|a, b| (a.uploaded_at, &a.id).cmp(&(b.uploaded_at, &b.id)));
        Ok(items)
    }

    /// The item `id`.
    pub fn get(&self, id: &str) -> Result<LibraryItem, LibraryError> {
        match self.tree.get(id.as_bytes()).map_err(|e| self.db_err(e))? {
            Some(value) => self.decode(id.as_bytes(), &value),
            None => Err(LibraryError::NotFound { id: id.to_owned() }),
        }
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<LibraryItem, LibraryError> {
        let mut item: LibraryItem =
            serde_json::from_slice(value).map_err(|e| LibraryError::Corrupt {
                path: self.store_path.clone(),
                id: String::from_utf8_lossy(key).into_owned(),
                reason: e.to_string(),
            })?;
        item.path = self.dir.join(item.file_name());
        Ok(item)
    }

    /// Moves the checked upload at `part` into place as a new item (its `id` and `path` are
    /// chosen here) and records it. On failure nothing of it stays: not the file, not the
    /// record.
    pub fn add(&self, part: &Path, mut item: LibraryItem) -> Result<LibraryItem, LibraryError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        item.id = loop {
            let id = random_id(ID_LEN);
            let taken = self
                .tree
                .contains_key(id.as_bytes())
                .map_err(|e| self.db_err(e))?;
            if !taken {
                break id;
            }
        };
        let path = self.dir.join(item.file_name());
        std::fs::rename(part, &path).map_err(|source| LibraryError::Io {
            path: path.clone(),
            source,
        })?;
        item.path = path.clone();
        let stored = self.put(&item).and_then(|()| self.flush());
        if let Err(e) = stored {
            let _ = {
                let _gate = self.gate.enter();
                self.tree.remove(item.id.as_bytes())
            };
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(item)
    }

    /// Gives item `id` another display name.
    pub fn rename(&self, id: &str, name: &str) -> Result<LibraryItem, LibraryError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut item = self.get(id)?;
        item.name = name.to_owned();
        self.put(&item)?;
        self.flush()?;
        Ok(item)
    }

    /// Removes item `id`: its record, then its file.
    pub fn remove(&self, id: &str) -> Result<LibraryItem, LibraryError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let item = self.get(id)?;
        {
            let _gate = self.gate.enter();
            self.tree
                .remove(id.as_bytes())
                .map_err(|e| self.db_err(e))?;
        }
        self.flush()?;
        match std::fs::remove_file(&item.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // The record is gone, so the item is; a file left behind only takes space.
            Err(e) => tracing::warn!("library: cannot remove {}: {e}", item.path.display()),
        }
        Ok(item)
    }

    fn put(&self, item: &LibraryItem) -> Result<(), LibraryError> {
        let mut stored = item.clone();
        // Derived from the folder at every read: a data directory moved elsewhere still works.
        stored.path = PathBuf::new();
        let json = serde_json::to_vec(&stored).map_err(|e| self.db_err(e))?;
        let _gate = self.gate.enter();
        self.tree
            .insert(item.id.as_bytes(), json)
            .map_err(|e| self.db_err(e))?;
        Ok(())
    }

    fn flush(&self) -> Result<(), LibraryError> {
        self.tree.flush().map(drop).map_err(|e| self.db_err(e))
    }
}

/// `len` random characters of [`ID_CHARS`].
fn random_id(len: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| char::from(ID_CHARS[rng.gen_range(0..ID_CHARS.len())]))
        .collect()
}

/// Whether `name` is a display name the library takes: 1–[`NAME_MAX`] characters after
/// trimming, no control characters. The trimmed name if so.
pub fn valid_name(name: &str) -> Option<String> {
    let trimmed = name.trim();
    let chars = trimmed.chars().count();
    ((1..=NAME_MAX).contains(&chars) && !trimmed.chars().any(char::is_control))
        .then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str) -> LibraryItem {
        LibraryItem {
            id: String::new(),
            name: name.to_owned(),
            original_name: "ghi-am.mp3".to_owned(),
            format: "mp3".to_owned(),
            codec: "mp3".to_owned(),
            duration_secs: 3.0,
            peak_dbfs: -18.0,
            rms_dbfs: -21.0,
            size_bytes: 5,
            uploaded_at: Timestamp::now(),
            uploaded_by: "district".to_owned(),
            path: PathBuf::new(),
        }
    }

    #[test]
    fn items_are_added_renamed_and_removed_with_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let library = Library::open(&db, dir.path().join("store"), dir.path()).unwrap();
        let (part, _) = library.new_part().unwrap();
        std::fs::write(&part, b"audio").unwrap();
        let added = library.add(&part, item("Bản tin")).unwrap();
        assert!(!part.exists());
        assert_eq!(added.id.len(), ID_LEN);
        assert!(added.id.bytes().all(|b| ID_CHARS.contains(&b)));
        assert_eq!(
            added.path,
            dir.path().join("library").join(added.file_name())
        );
        assert_eq!(std::fs::read(&added.path).unwrap(), b"audio");
        assert_eq!(library.list().unwrap(), vec![added.clone()]);

        let renamed = library.rename(&added.id, "Bản tin chiều").unwrap();
        assert_eq!(library.get(&added.id).unwrap().name, "Bản tin chiều");
        assert_eq!(renamed.path, added.path);

        library.remove(&added.id).unwrap();
        assert!(!added.path.exists());
        assert!(library.list().unwrap().is_empty());
        assert!(matches!(
            library.remove(&added.id),
            Err(LibraryError::NotFound { .. })
        ));
    }

    #[test]
    fn unfinished_uploads_are_swept_at_open_and_items_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let library = Library::open(&db, dir.path().join("store"), dir.path()).unwrap();
        let (part, _) = library.new_part().unwrap();
        std::fs::write(&part, b"audio").unwrap();
        let kept = library.add(&part, item("Giữ lại")).unwrap();
        let (left, _) = library.new_part().unwrap();
        drop(library);
        let library = Library::open(&db, dir.path().join("store"), dir.path()).unwrap();
        assert!(!left.exists(), "an unfinished upload survived a restart");
        assert!(kept.path.exists());
        assert_eq!(library.list().unwrap(), vec![kept]);
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name("  Thông báo  ").as_deref(), Some("Thông báo"));
        assert_eq!(valid_name("   "), None);
        assert_eq!(valid_name("a\nb"), None);
        assert!(valid_name(&"ệ".repeat(NAME_MAX)).is_some());
        assert_eq!(valid_name(&"ệ".repeat(NAME_MAX + 1)), None);
    }
}
