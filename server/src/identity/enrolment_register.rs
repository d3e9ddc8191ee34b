//! Every certificate the district CA issued to a station: `data_dir/ca/enrolled/<commune>.toml`.
//!
//! Revocation works on certificates, not on names, so that re-enrolling a station after a
//! revocation gives it a certificate that gets in while the stolen one stays out. The register
//! is what turns `radio-server revoke binh-trung` into the serial numbers to refuse, and what
//! the expiry warnings read. One small TOML file per station, rewritten whole (atomically) at
//! each enrolment, readable by an operator with `cat`.

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Errors reading or writing the register.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// A file is not a register entry.
    #[error("{path}: {error}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong, with its line.
        error: String,
    },
}

/// One certificate issued to a station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCertificate {
    /// The certificate's serial number, 16 hex digits.
    #[serde(with = "serial_hex")]
    pub serial: u64,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Its last valid moment (`None` in entries written before expiry was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A station's file: its certificates, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StationFile {
    commune: String,
    /// The first format kept only the latest certificate, at the top level.
    #[serde(
        default,
        skip_serializing,
        deserialize_with = "serial_hex::optional::deserialize"
    )]
    serial: Option<u64>,
    #[serde(default, skip_serializing)]
    issued_at: Option<Timestamp>,
    #[serde(default, rename = "certificate")]
    certificates: Vec<IssuedCertificate>,
}

/// The register in `data_dir/ca/enrolled/`.
#[derive(Debug, Clone)]
pub struct EnrolmentRegister {
    dir: PathBuf,
}

impl EnrolmentRegister {
    /// The register of the CA in `ca_dir` (`data_dir/ca`).
    pub fn new(ca_dir: &Path) -> Self {
        Self {
            dir: ca_dir.join("enrolled"),
        }
    }

    fn path(&self, commune: &str) -> PathBuf {
        self.dir.join(format!("{commune}.toml"))
    }

    /// Adds a certificate to the station's entry.
    pub fn record(&self, commune: &str, issued: IssuedCertificate) -> Result<(), RegisterError> {
        let path = self.path(commune);
        let mut file = self.read(&path)?.unwrap_or_else(|| StationFile {
            commune: commune.to_owned(),
            ..StationFile::default()
        });
        file.certificates.push(issued);
        let text = format!(
            "# Certificates the district CA issued to this station (radio-server enroll).\n{}",
            toml::to_string(&file).map_err(|e| RegisterError::Malformed {
                path: path.display().to_string(),
                error: e.to_string(),
            })?
        );
        relay_agent::bundle::write_private(&path, text.as_bytes()).map_err(|error| {
            RegisterError::Io {
                path: path.display().to_string(),
                error,
            }
        })
    }

    /// Every certificate issued to `commune`, oldest first; empty if it was never enrolled.
    pub fn certificates(&self, commune: &str) -> Result<Vec<IssuedCertificate>, RegisterError> {
        Ok(self
            .read(&self.path(commune))?
            .map(|f| f.certificates)
            .unwrap_or_default())
    }

    /// Every enrolled station with its certificates, by commune id.
    pub fn all(&self) -> Result<Vec<(String, Vec<IssuedCertificate>)>, RegisterError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(error) => {
                return Err(RegisterError::Io {
                    path: self.dir.display().to_string(),
                    error,
                })
            }
        };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            if let Some(file) = self.read(&path)? {
                all.push((file.commune, file.certificates));
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    fn read(&self, path: &Path) -> Result<Option<StationFile>, RegisterError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(RegisterError::Io {
                    path: path.display().to_string(),
                    error,
                })
            }
        };
        let mut file: StationFile =
            toml::from_str(&text).map_err(|e| RegisterError::Malformed {
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
        if let (Some(serial), Some(issued_at)) = (file.serial.take(), file.issued_at.take()) {
            file.certificates.insert(
                0,
                IssuedCertificate {
                    serial,
                    issued_at,
                    expires_at: None,
                },
            );
        }
        Ok(Some(file))
    }
}

/// Serial numbers as the 16 hex digits operators see in `openssl x509 -serial` (less leading
/// zeros) and in `radio-server certificates`.
pub(crate) mod serial_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(serial: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{serial:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        u64::from_str_radix(&text, 16)
            .map_err(|_| serde::de::Error::custom(format!("serial `{text}` is not 16 hex digits")))
    }

    pub mod optional {
        use serde::{Deserialize, Deserializer};

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
            #[derive(Deserialize)]
            struct Hex(#[serde(deserialize_with = "super::deserialize")] u64);
            Ok(Option::<Hex>::deserialize(d)?.map(|Hex(s)| s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(serial: u64) -> IssuedCertificate {
        IssuedCertificate {
            serial,
            issued_at: "2026-11-27T08:00:00Z".parse().unwrap(),
            expires_at: Some("2031-11-29T08:00:00Z".parse().unwrap()),
        }
    }

    #[test]
    fn enrolments_accumulate_per_station() {
        let dir = tempfile::tempdir().unwrap();
        let register = EnrolmentRegister::new(dir.path());
        assert!(register.certificates("binh-trung").unwrap().is_empty());
        register.record("binh-trung", issued(0x1234)).unwrap();
        register.record("binh-trung", issued(0xabcd)).unwrap();
        register.record("binh-chau", issued(7)).unwrap();
        assert_eq!(
            register.certificates("binh-trung").unwrap(),
            vec![issued(0x1234), issued(0xabcd)]
        );
        let all = register.all().unwrap();
        assert_eq!(
            all.iter()
                .map(|(c, v)| (c.as_str(), v.len()))
                .collect::<Vec<_>>(),
            vec![("binh-chau", 1), ("binh-trung", 2)]
        );
    }

    #[test]
    fn the_first_format_with_one_serial_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("enrolled")).unwrap();
        std::fs::write(
            dir.path().join("enrolled/binh-trung.toml"),
            "commune = \"binh-trung\"\nserial = \"00000000000004d2\"\n\
             issued_at = \"2026-01-02T03:04:05Z\"\n",
        )
        .unwrap();
        let register = EnrolmentRegister::new(dir.path());
        let certs = register.certificates("binh-trung").unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].serial, 1234);
        assert_eq!(certs[0].expires_at, None);
        register.record("binh-trung", issued(99)).unwrap();
        let serials: Vec<u64> = register
            .certificates("binh-trung")
            .unwrap()
            .iter()
            .map(|c| c.serial)
            .collect();
        assert_eq!(
            serials,
            vec![1234, 99],
            "the old serial survives the rewrite"
        );
    }

    #[test]
    fn a_damaged_entry_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("enrolled")).unwrap();
        std::fs::write(
            dir.path().join("enrolled/binh-trung.toml"),
            "commune = \"binh-trung\"\n[[certificate]]\nserial = \"xyz\"\n",
        )
        .unwrap();
        let err = EnrolmentRegister::new(dir.path())
            .certificates("binh-trung")
            .unwrap_err();
        assert!(err.to_string().contains("binh-trung.toml"), "{err}");
    }
}
