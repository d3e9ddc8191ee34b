//! `MANIFEST.json`, the archive's last entry: what a restore must find, byte for byte.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The manifest's name in the archive.
pub const MANIFEST_PATH: &str = "MANIFEST.json";
/// What the manifest's `format` says.
pub const FORMAT: &str = "radio-server backup";
/// Raised when a restore of an older server could not read a newer archive right.
pub const FORMAT_VERSION: u32 = 1;

/// The archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The `radio-server` version that wrote it.
    pub server_version: String,
    /// When the snapshot was taken.
    pub created_at: Timestamp,
    /// Every other entry, in archive order.
    pub files: Vec<FileEntry>,
}

/// One file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    pub size: u64,
    /// Permission bits, e.g. 0o600 for keys.
    pub mode: u32,
    /// Lowercase hex.
    pub sha256: String,
}

impl Manifest {
    /// Total bytes of the files.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
