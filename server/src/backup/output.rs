//! Where `radio-server backup` puts an archive: never a half-written or unchecked file under
//! the final name.

use std::fs;
use std::io::{self, BufReader, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::manifest::Manifest;
use super::restore::{verify, RestoreError};
use super::rotation::to_prune;

/// What can go wrong saving an archive.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{}: {error}", path.display())]
    Io { path: PathBuf, error: io::Error },
    #[error("{}: the archive written does not check out ({0}); it was not kept", path.display())]
    Check { path: PathBuf, error: RestoreError },
    #[error("{0}")]
    Write(String),
}

/// Writes an archive to `target` with `write`: into `.NAME.part` beside it (mode 0600: it
/// holds the CA's key), synced, read back and checked against its manifest, then renamed.
pub fn save<E: std::fmt::Display>(
    target: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<(), E>,
) -> Result<Manifest, SaveError> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup.tar".into());
    fs::create_dir_all(&dir).map_err(|error| SaveError::Io {
        path: dir.clone(),
        error,
    })?;
    let part = dir.join(format!(".{name}.part"));
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |error| SaveError::Io { path, error }
    };
    let result = (|| -> Result<Manifest, SaveError> {
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(io_err(&part))?;
        let mut out = BufWriter::new(file);
        write(&mut out).map_err(|e| SaveError::Write(e.to_string()))?;
        let file = out
            .into_inner()
            .map_err(|e| io_err(&part)(e.into_error()))?;
        file.sync_all().map_err(io_err(&part))?;
        let reader = BufReader::new(fs::File::open(&part).map_err(io_err(&part))?);
        let manifest = verify(reader).map_err(|error| SaveError::Check {
            path: target.to_owned(),
            error,
        })?;
        fs::rename(&part, target).map_err(io_err(target))?;
        if let Ok(d) = fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
    }
    result
}

/// Deletes the backups in `dir` beyond the newest `keep`; their names.
pub fn prune(dir: &Path, keep: usize) -> io::Result<Vec<String>> {
    let names: Vec<String> = fs::read_dir(dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let doomed = to_prune(&names, keep);
    for name in &doomed {
        fs::remove_file(dir.join(name))?;
    }
    Ok(doomed)
}
