//! The district's own certificate authority, and enrolment of agents.
//!
//! The server creates the CA at first start and keeps its key in the data directory (mode 0600).
//! Every agent gets a certificate naming its commune (the common name) with the client-auth usage;
//! the server's own certificate has the server-auth usage only, so neither can stand in for the
//! other. The server issues itself a fresh certificate at every start, so a changed `server_name`
//! never leaves a stale one behind.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use relay_agent::bundle::write_private;

use crate::identity::enrolment_register::{EnrolmentRegister, IssuedCertificate};
use relay_agent::Bundle;
use time::{Duration, OffsetDateTime};

/// Lifetime of a station's certificate: five years, the district's review period, and two
/// days more so that one issued at a review outlasts the next.
pub const AGENT_CERT_DAYS: i64 = 365 * 5 + 2;

/// Errors of the certificate authority.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// Reading or writing CA files failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What the OS said.
        error: std::io::Error,
    },
    /// Generating or parsing keys and certificates failed.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Only one of the CA's two files is there: creating a new CA would lock every enrolled
    /// station out, so the operator must restore the missing file.
    #[error("found {found} but not {missing} in {dir}: restore it from a backup; a new CA would lock out every enrolled station")]
    Incomplete {
        /// The file that is there.
        found: String,
        /// The file that is missing.
        missing: String,
        /// The CA directory.
        dir: String,
    },
    /// The enrolment register could not be written.
    #[error(transparent)]
    Register(#[from] crate::identity::enrolment_register::RegisterError),
    /// The commune is not a station of the district.
    #[error(
        "unknown commune `{0}`: it is not a station of this district (see `radio-server stations`)"
    )]
    UnknownCommune(String),
}

/// A certificate and its key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// The district CA.
#[derive(Debug)]
pub struct CertificateAuthority {
    cert_pem: String,
    key: KeyPair,
    params: CertificateParams,
    dir: PathBuf,
}

impl CertificateAuthority {
    /// Loads the CA from `data_dir/ca/`, creating it on first use.
    pub fn load_or_create(data_dir: &Path, district_name: &str) -> Result<Self, CaError> {
        let dir = data_dir.join("ca");
        let cert_path = dir.join("ca.crt");
        let key_path = dir.join("ca.key");
        match (cert_path.exists(), key_path.exists()) {
            (true, false) | (false, true) => {
                let (found, missing) = if cert_path.exists() {
                    ("ca.crt", "ca.key")
                } else {
                    ("ca.key", "ca.crt")
                };
                return Err(CaError::Incomplete {
                    found: found.into(),
                    missing: missing.into(),
                    dir: dir.display().to_string(),
                });
            }
            _ => {}
        }
        if cert_path.exists() && key_path.exists() {
            let cert_pem = read(&cert_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            let params = CertificateParams::from_ca_cert_pem(&cert_pem)?;
            return Ok(Self {
                cert_pem,
                key,
                params,
                dir,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{district_name} radio CA"));
        dn.push(DnType::OrganizationName, district_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365 * 20);
        let cert = params.clone().self_signed(&key)?;
        let cert_pem = cert.pem();
        write_private(&key_path, key.serialize_pem().as_bytes()).map_err(|error| CaError::Io {
            path: key_path.display().to_string(),
            error,
        })?;
        std::fs::write(&cert_path, &cert_pem).map_err(|error| CaError::Io {
            path: cert_path.display().to_string(),
            error,
        })?;
        tracing::info!("created the district CA in {}", dir.display());
        Ok(Self {
            cert_pem,
            key,
            params,
            dir,
        })
    }

    /// `data_dir/ca`: the CA's files, the enrolment register and the revocation list.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues the server's own certificate for `server_name` (a DNS name, or an IP address,
    /// which rcgen turns into an IP subject alternative name).
    pub fn issue_server_cert(&self, server_name: &str) -> Result<IssuedCert, CaError> {
        let mut params = CertificateParams::new(vec![server_name.to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, server_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(365);
        self.sign(params)
    }

    /// Issues the console's HTTPS certificate for `names` (DNS names and IP addresses; the
    /// first is the common name). Browsers require every name people type in the subject
    /// alternative names, which rcgen fills from the list.
    pub fn issue_console_cert(&self, names: &[String]) -> Result<IssuedCert, CaError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        // Browsers refuse server certificates valid for more than 398 days; the server issues
        // a fresh one at every start.
        params.not_after = now + Duration::days(365);
        self.sign(params)
    }

    /// Issues an agent certificate whose common name is the commune id.
    pub fn issue_agent_cert(&self, commune: &str) -> Result<(IssuedCert, u64), CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, commune);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial: u64 = rand::random::<u64>() >> 1;
        params.serial_number = Some(SerialNumber::from(serial));
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(AGENT_CERT_DAYS);
        Ok((self.sign(params)?, serial))
    }

    fn sign(&self, params: CertificateParams) -> Result<IssuedCert, CaError> {
        let key = KeyPair::generate()?;
        let issuer = self.params.clone().self_signed(&self.key)?;
        let cert = params.signed_by(&key, &issuer, &self.key)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Enrols an agent: issues its certificate and returns its bundle. The caller checks that the
    /// commune exists. The certificate is added to the [`EnrolmentRegister`] under
    /// `data_dir/ca/enrolled/`, which revocation and the expiry warnings read.
    pub fn enroll(
        &self,
        commune: &str,
        station_name: &str,
        server: &str,
        server_name: &str,
    ) -> Result<Bundle, CaError> {
        let (issued, serial) = self.issue_agent_cert(commune)?;
        let now = jiff::Timestamp::now();
        let expires_at = now
            .checked_add(jiff::SignedDuration::from_hours(24 * AGENT_CERT_DAYS))
            .ok();
        EnrolmentRegister::new(&self.dir).record(
            commune,
            IssuedCertificate {
                serial,
                issued_at: now,
                expires_at,
            },
        )?;
        Ok(Bundle {
            commune: commune.to_string(),
            station_name: station_name.to_string(),
            server: server.to_string(),
            server_name: server_name.to_string(),
            ca_cert: self.cert_pem.clone(),
            cert: issued.cert_pem,
            key: issued.key_pem,
        })
    }
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|error| CaError::Io {
        path: path.display().to_string(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_persists_with_private_key_mode_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = CertificateAuthority::load_or_create(dir.path(), "Huyện Bình Sơn").expect("ca");
        let mode = std::fs::metadata(dir.path().join("ca/ca.key"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = CertificateAuthority::load_or_create(dir.path(), "x").expect("reload");
        assert_eq!(ca.cert_pem(), again.cert_pem());
        let bundle = again
            .enroll("binh-trung", "Bình Trung", "127.0.0.1:4433", "localhost")
            .expect("enroll");
        assert_eq!(bundle.ca_cert, ca.cert_pem());
        let der = rustls::pki_types::CertificateDer::from(pem_to_der(&bundle.cert).expect("pem"));
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).expect("x509");
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .expect("cn");
        assert_eq!(cn, "binh-trung");
        assert!(dir.path().join("ca/enrolled/binh-trung.toml").exists());
    }

    #[test]
    fn a_half_missing_ca_is_an_error_not_a_new_ca() {
        let dir = tempfile::tempdir().expect("tempdir");
        CertificateAuthority::load_or_create(dir.path(), "Huyện Bình Sơn").expect("ca");
        let key = std::fs::read(dir.path().join("ca/ca.key")).expect("key");
        std::fs::remove_file(dir.path().join("ca/ca.crt")).expect("rm");
        let err = CertificateAuthority::load_or_create(dir.path(), "x").expect_err("must refuse");
        assert!(err.to_string().contains("restore"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("ca/ca.key")).expect("key"),
            key,
            "key kept"
        );
    }

    fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .ok()
            .map(|c| c.to_vec())
    }
}
