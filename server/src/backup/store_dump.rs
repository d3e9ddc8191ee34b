//! The store's trees as one stream, `store.dump`, and back into a fresh sled directory.
//!
//! A format of our own rather than sled's files: it holds what the trees hold and nothing of
//! sled's on-disk layout (which a later sled may change, and which carries several times the
//! data's size), and reading it back never panics on a damaged file (sled's `import` does).
//!
//! ```text
//! "radio-server store dump\n" version:u8 next_id:u64
//! ( 'T' len:u32 name | 'E' len:u32 key len:u32 value )*
//! 'Z' entries:u64
//! ```
//! Integers are big-endian. `next_id` is above every id sled's `generate_id` gave out: link
//! events and server runs are keyed by them, so a restored store must go on above it, or new
//! events would sort before (or overwrite) old ones.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8] = b"radio-server store dump\n";
const VERSION: u8 = 1;
const TREE: u8 = b'T';
const ENTRY: u8 = b'E';
const END: u8 = b'Z';
/// Longest key or value read back: far above anything the server stores, and a bound on
/// what a damaged length can make the reader allocate.
const MAX_LEN: u32 = 256 * 1024 * 1024;

/// What can go wrong dumping or loading the trees.
#[derive(Debug, thiserror::Error)]
pub enum StoreDumpError {
    #[error("{}: {reason}", path.display())]
    Db { path: PathBuf, reason: String },
    #[error("the store dump cannot be written or read: {0}")]
    Io(#[from] io::Error),
    #[error("the store dump is damaged: {0}")]
    Malformed(String),
}

/// Writes every tree of `db` to `out`; the number of entries. The caller holds the store's
/// write gate closed, so that the trees are those of one moment.
pub(crate) fn dump(
    db: &sled::Db,
    path: &Path,
    out: &mut impl Write,
) -> Result<u64, StoreDumpError> {
    let db_err = |e: sled::Error| StoreDumpError::Db {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let next_id = db.generate_id().map_err(db_err)?;
    out.write_all(MAGIC)?;
    out.write_all(&[VERSION])?;
    out.write_all(&next_id.to_be_bytes())?;
    let mut names = db.tree_names();
    names.sort();
    let mut entries = 0u64;
    for name in names {
        let tree = db.open_tree(&name).map_err(db_err)?;
        out.write_all(&[TREE])?;
        write_bytes(out, &name)?;
        for item in tree.iter() {
            let (key, value) = item.map_err(db_err)?;
            out.write_all(&[ENTRY])?;
            write_bytes(out, &key)?;
            write_bytes(out, &value)?;
            entries += 1;
        }
    }
    out.write_all(&[END])?;
    out.write_all(&entries.to_be_bytes())?;
    Ok(entries)
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> Result<(), StoreDumpError> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| StoreDumpError::Malformed(format!("an entry of {} bytes", bytes.len())))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)?;
    Ok(())
}

/// Creates the store at `dir` (which must not exist) from a dump; the number of entries.
pub(crate) fn load(dir: &Path, input: &mut impl Read) -> Result<u64, StoreDumpError> {
    let db_err = |e: sled::Error| StoreDumpError::Db {
        path: dir.to_owned(),
        reason: e.to_string(),
    };
    let mut magic = vec![0u8; MAGIC.len()];
    input.read_exact(&mut magic).map_err(eof)?;
    if magic != MAGIC {
        return Err(StoreDumpError::Malformed("not a store dump".into()));
    }
    let version = read_u8(input)?;
    if version != VERSION {
        return Err(StoreDumpError::Malformed(format!(
            "version {version}; this server reads version {VERSION}"
        )));
    }
    let next_id = read_u64(input)?;
    // sled persists its id counter at multiples of its interval, and a reopened store starts
    // `2 * interval` above the last persisted value; it also requires (it asserts) that the
    // persisted value is a multiple of the interval the store is opened with. With `interval`
    // a multiple of the server's and above `next_id`, one reopen and one generated id persist
    // `2 * interval`: above `next_id`, and a multiple of the server's interval.
    let server = crate::records::store::IDGEN_PERSIST_INTERVAL;
    let interval = server.saturating_mul(next_id / server + 1);
    let entries = {
        let db = sled::Config::new()
            .path(dir)
            .idgen_persist_interval(interval)
            .open()
            .map_err(db_err)?;
        let mut tree: Option<sled::Tree> = None;
        let mut entries = 0u64;
        loop {
            match read_u8(input)? {
                TREE => {
                    let name = read_bytes(input)?;
                    tree = Some(db.open_tree(name).map_err(db_err)?);
                }
                ENTRY => {
                    let key = read_bytes(input)?;
                    let value = read_bytes(input)?;
                    let Some(tree) = &tree else {
                        return Err(StoreDumpError::Malformed("an entry before any tree".into()));
                    };
                    tree.insert(key, value).map_err(db_err)?;
                    entries += 1;
                }
                END => {
                    let count = read_u64(input)?;
                    if count != entries {
                        return Err(StoreDumpError::Malformed(format!(
                            "{entries} entries where the dump says {count}"
                        )));
                    }
                    break;
                }
                other => {
                    return Err(StoreDumpError::Malformed(format!(
                        "unknown record tag {other:#04x}"
                    )))
                }
            }
        }
        db.flush().map_err(db_err)?;
        entries
    };
    let db = sled::Config::new()
        .path(dir)
        .idgen_persist_interval(interval)
        .open()
        .map_err(db_err)?;
    let first = db.generate_id().map_err(db_err)?;
    if first <= next_id {
        return Err(StoreDumpError::Db {
            path: dir.to_owned(),
            reason: format!("sled's id generator restarted at {first}, not above {next_id}"),
        });
    }
    db.flush().map_err(db_err)?;
    Ok(entries)
}

fn eof(e: io::Error) -> StoreDumpError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        StoreDumpError::Malformed("it ends early".into())
    } else {
        StoreDumpError::Io(e)
    }
}

fn read_u8(input: &mut impl Read) -> Result<u8, StoreDumpError> {
    let mut b = [0u8; 1];
    input.read_exact(&mut b).map_err(eof)?;
    Ok(b[0])
}

fn read_u64(input: &mut impl Read) -> Result<u64, StoreDumpError> {
    let mut b = [0u8; 8];
    input.read_exact(&mut b).map_err(eof)?;
    Ok(u64::from_be_bytes(b))
}

fn read_bytes(input: &mut impl Read) -> Result<Vec<u8>, StoreDumpError> {
    let mut b = [0u8; 4];
    input.read_exact(&mut b).map_err(eof)?;
    let len = u32::from_be_bytes(b);
    if len > MAX_LEN {
        return Err(StoreDumpError::Malformed(format!(
            "an entry of {len} bytes"
        )));
    }
    let mut bytes = vec![0u8; len as usize];
    input.read_exact(&mut bytes).map_err(eof)?;
    Ok(bytes)
}
