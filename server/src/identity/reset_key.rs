//! The keys of QUIC stateless resets, kept across restarts.
//!
//! A server killed mid-broadcast and started again does not know its agents' connections. An
//! agent's next packet (a keep-alive comes every 500 ms) reaches the new server, which answers
//! with a stateless reset if it recognises the connection id as one of its own (ids carry a
//! keyed hash) — and the agent believes the reset only if it carries the token the *old* server
//! promised for that connection, derived from the reset key. With both keys kept in the data
//! directory the agent learns at once that its connection is gone and reconnects, instead of
//! waiting out its idle timeout (3 s); a stranger who never saw the key cannot forge a reset.

use std::path::{Path, PathBuf};

use rand::RngCore;
use relay_agent::bundle::write_private;

/// Where the key lives in the data directory.
pub const FILE_NAME: &str = "quic-reset.key";

/// The key's length: what HMAC-SHA-256 is keyed with.
const KEY_LEN: usize = 32;

/// The reset key could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum ResetKeyError {
    #[error("cannot read the QUIC reset key {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot write the QUIC reset key {}: {error}", path.display())]
    Write {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "the QUIC reset key {} is {len} bytes, not {KEY_LEN}: delete it and a new one is made \
         (agents connected now will then wait out their idle timeout once)",
        path.display()
    )]
    Corrupt { path: PathBuf, len: usize },
}

/// The endpoint configuration with both keys from `data_dir` (made and stored on first use).
pub fn endpoint_config(data_dir: &Path) -> Result<quinn::EndpointConfig, ResetKeyError> {
    let reset = load_or_create(data_dir)?;
    // The connection-id key is derived, so one secret file holds both.
    let tag = ring::hmac::sign(&reset, b"radio-server connection ids");
    let mut cid_key = [0u8; 8];
    cid_key.copy_from_slice(&tag.as_ref()[..8]);
    let cid_key = u64::from_le_bytes(cid_key);
    let mut config = quinn::EndpointConfig::new(std::sync::Arc::new(reset));
    config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    Ok(config)
}

/// Loads the reset key from `data_dir`, or makes and stores a new one.
pub fn load_or_create(data_dir: &Path) -> Result<ring::hmac::Key, ResetKeyError> {
    let path = data_dir.join(FILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = vec![0u8; KEY_LEN];
            rand::thread_rng().fill_bytes(&mut bytes);
            std::fs::create_dir_all(data_dir).map_err(|error| ResetKeyError::Write {
                path: path.clone(),
                error,
            })?;
            write_private(&path, &bytes).map_err(|error| ResetKeyError::Write {
                path: path.clone(),
                error,
            })?;
            bytes
        }
        Err(error) => return Err(ResetKeyError::Read { path, error }),
    };
    if bytes.len() != KEY_LEN {
        return Err(ResetKeyError::Corrupt {
            path,
            len: bytes.len(),
        });
    }
    Ok(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &ring::hmac::Key) -> Vec<u8> {
        ring::hmac::sign(key, b"connection id").as_ref().to_vec()
    }

    #[test]
    fn the_key_survives_a_restart_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create(dir.path()).expect("create");
        let again = load_or_create(dir.path()).expect("load");
        assert_eq!(tag(&first), tag(&again), "a restart must keep the key");
        let other = tempfile::tempdir().expect("tempdir");
        assert_ne!(
            tag(&first),
            tag(&load_or_create(other.path()).expect("new"))
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(FILE_NAME))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_truncated_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE_NAME), b"short").expect("write");
        let error = load_or_create(dir.path()).expect_err("corrupt");
        assert!(error.to_string().contains(FILE_NAME), "{error}");
    }
}
