//! The enrolment bundle: everything an agent needs to prove who it is and to find and trust its
//! server, in one file written by `radio-server enroll`.
//!
//! It holds a private key, so it is written with mode 0600 and the agent warns when it can be read
//! by others.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors reading or writing a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle could not be read: usually the agent was not enrolled yet.
    #[error("cannot read the enrolment bundle {path}: {error}; enrol this station on the server with `radio-server enroll --commune ID --out FILE` and copy the file here")]
    Read {
        /// The bundle file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file could not be written.
    #[error("{path}: {error}")]
    Io {
        /// The bundle file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file is not a valid bundle.
    #[error("{path}: not a valid enrolment bundle: {reason}")]
    Invalid {
        /// The bundle file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// An agent's enrolment bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// The commune (station) id this agent speaks for; also the common name of its certificate.
    pub commune: String,
    /// The station's Vietnamese name, for logs and SDP session names.
    pub station_name: String,
    /// Where the server listens, `host:port`.
    pub server: String,
    /// The DNS name in the server's certificate.
    pub server_name: String,
    /// The district CA certificate (PEM) that signed both the server's and this agent's certificate.
    pub ca_cert: String,
    /// This agent's certificate (PEM).
    pub cert: String,
    /// This agent's private key (PEM).
    pub key: String,
}

impl Bundle {
    /// When the station's certificate expires (Unix seconds), if the certificate can be read.
    pub fn certificate_expiry(&self) -> Option<i64> {
        use rustls::pki_types::pem::PemObject;
        let der = rustls::pki_types::CertificateDer::from_pem_slice(self.cert.as_bytes()).ok()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        Some(cert.validity().not_after.timestamp())
    }

    /// A warning for the station's operator when its certificate expires within `days`, or
    /// has expired: the server refuses an expired certificate and the loudspeakers go silent.
    pub fn expiry_warning(&self, now_unix: i64, days: i64) -> Option<String> {
        let expiry = self.certificate_expiry()?;
        let days_left = (expiry - now_unix).div_euclid(86_400);
        if expiry <= now_unix {
            Some(format!(
                "this station's certificate has expired: the server refuses it. Ask the \
                 district for a new bundle (radio-server enroll --commune {})",
                self.commune
            ))
        } else if days_left < days {
            Some(format!(
                "this station's certificate expires in {days_left} days: ask the district \
                 for a new bundle (radio-server enroll --commune {}) and install it before then",
                self.commune
            ))
        } else {
            None
        }
    }

    /// Reads a bundle file.
    pub fn load(path: &Path) -> Result<Self, BundleError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| BundleError::Read {
            path: shown.clone(),
            error,
        })?;
        warn_if_readable_by_others(path);
        Self::from_toml(&text, &shown)
    }

    /// Parses bundle text; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Self, BundleError> {
        let bundle: Bundle = toml::from_str(text).map_err(|e| BundleError::Invalid {
            path: source.to_string(),
            reason: e.message().to_string(),
        })?;
        for (field, pem, tag) in [
            ("ca_cert", &bundle.ca_cert, "CERTIFICATE"),
            ("cert", &bundle.cert, "CERTIFICATE"),
            ("key", &bundle.key, "PRIVATE KEY"),
        ] {
            if !pem.contains(&format!("-----BEGIN {tag}-----")) {
                return Err(BundleError::Invalid {
                    path: source.to_string(),
                    reason: format!("`{field}` is not a PEM {tag}"),
                });
            }
        }
        Ok(bundle)
    }

    /// Writes the bundle with owner-only permissions.
    pub fn save(&self, path: &Path) -> Result<(), BundleError> {
        let shown = path.display().to_string();
        let text = toml::to_string(self).map_err(|e| BundleError::Invalid {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        write_private(path, text.as_bytes()).map_err(|error| BundleError::Io { path: shown, error })
    }
}

/// Writes a file readable by its owner only, creating parent directories. The content goes to a
/// fresh temporary file (mode 0600, created exclusively) that then replaces `path`, so a reader
/// never sees half a key and no pre-existing file can receive it.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let parent = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(p) => p,
        None => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    let mut file = tempfile::NamedTempFile::new_in(parent)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = std::fs::File::open(parent) {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} holds a private key but is readable by group or others; run chmod 600 on it",
                path.display()
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn expiring_in(days: i64, now: i64) -> Bundle {
        let mut params = rcgen::CertificateParams::new(vec!["binh-trung".into()]).expect("params");
        let not_after = now + days * 86_400 + 3600;
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).expect("time");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        Bundle {
            cert: cert.pem(),
            ..sample()
        }
    }

    #[test]
    fn the_operator_is_warned_ahead_of_expiry() {
        let now = 1_900_000_000;
        assert_eq!(expiring_in(200, now).expiry_warning(now, 90), None);
        let soon = expiring_in(30, now)
            .expiry_warning(now, 90)
            .expect("warned");
        assert!(soon.contains("expires in 30 days"), "{soon}");
        let gone = expiring_in(-3, now)
            .expiry_warning(now, 90)
            .expect("warned");
        assert!(gone.contains("has expired"), "{gone}");
        assert_eq!(
            sample().expiry_warning(now, 90),
            None,
            "an unreadable certificate"
        );
    }

    /// A bundle whose PEM blocks have the right tags and nothing else (shared with enroll's tests).
    pub(crate) fn sample() -> Bundle {
        Bundle {
            commune: "binh-trung".into(),
            station_name: "Bình Trung".into(),
            server: "127.0.0.1:4433".into(),
            server_name: "localhost".into(),
            ca_cert: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            cert: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            key: "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n".into(),
        }
    }

    #[test]
    fn round_trips_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/bundle.toml");
        sample().save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Bundle::load(&path).expect("load"), sample());
    }

    #[test]
    fn rejects_a_bundle_without_a_key() {
        let mut b = sample();
        b.key = "nonsense".into();
        let text = toml::to_string(&b).expect("ser");
        let err = Bundle::from_toml(&text, "x.toml").expect_err("must fail");
        assert!(err.to_string().contains("`key`"), "{err}");
    }
}
