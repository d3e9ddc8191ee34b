//! The console's HTTPS listener: the same router as the loopback admin endpoint, behind TLS, for
//! browsers, phones and scripts on other machines.
//!
//! The certificate is the operator's own PEM pair (`console_cert`, `console_key`) or, by
//! default, one the district CA issues at every start for `server_name`, `localhost`,
//! 127.0.0.1, the listen address and `console_names`: a browser that trusts the district CA (README, "The
//! console") trusts the console without a warning, and nothing has to be renewed by hand.
//!
//! Requests that came over TLS carry [`Transport::Tls`] in their extensions; the admin router
//! refuses plain-HTTP requests from other machines ([`crate::operator::admin`]), so a password
//! or session cookie never crosses a network in clear text.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::identity::certificate_authority::{CaError, CertificateAuthority};

/// How long a client may take to finish its TLS handshake. A phone on a weak link needs a few
/// seconds; a connection that never finishes must not hold a task for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// How a request reached the admin router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Over the console's TLS listener.
    Tls,
}

/// Errors building the console's TLS configuration. Each names the file or setting to fix.
#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The district CA could not issue the console certificate.
    #[error("console certificate: {0}")]
    Ca(#[from] CaError),
    /// A configured PEM file cannot be read.
    #[error("config key `{key}`: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: std::path::PathBuf,
        source: io::Error,
    },
    /// A configured PEM file holds no usable certificate or key.
    #[error("config key `{key}`: {}: {message}", path.display())]
    Pem {
        key: &'static str,
        path: std::path::PathBuf,
        message: String,
    },
    /// rustls refused the pair (a key that does not match the certificate, say).
    #[error("console TLS: {0}")]
    Config(String),
}

/// Where the console's certificate comes from.
#[derive(Debug, Clone)]
pub enum CertificateSource<'a> {
    /// Issued by the district CA for these names (DNS names or IP addresses).
    District {
        ca: &'a CertificateAuthority,
        names: Vec<String>,
    },
    /// The operator's own chain and key, PEM files.
    Files { cert: &'a Path, key: &'a Path },
}

/// The names the district CA's console certificate holds: the server's name, `localhost`, the
/// listen address when it is a specific one, and the configured extras, each once.
pub fn console_names(server_name: &str, listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    add(server_name.to_owned());
    add("localhost".to_owned());
    add("127.0.0.1".to_owned());
    if !listen.ip().is_unspecified() {
        add(listen.ip().to_string());
    }
    for name in extra {
        add(name.clone());
    }
    names
}

/// The rustls configuration of the console: TLS 1.2 and 1.3 (phones a few years old still
/// speak only 1.2), HTTP/2 and HTTP/1.1 by ALPN.
pub fn server_config(source: CertificateSource<'_>) -> Result<rustls::ServerConfig, HttpsError> {
    let (chain, key) = match source {
        CertificateSource::District { ca, names } => {
            let issued = ca.issue_console_cert(&names)?;
            let chain = vec![
                CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
                    .map_err(|e| HttpsError::Config(format!("issued certificate: {e}")))?,
                CertificateDer::from_pem_slice(ca.cert_pem().as_bytes())
                    .map_err(|e| HttpsError::Config(format!("CA certificate: {e}")))?,
            ];
            let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes())
                .map_err(|e| HttpsError::Config(format!("issued key: {e}")))?;
            (chain, key)
        }
        CertificateSource::Files { cert, key } => {
            let read = |key_name: &'static str, path: &Path| {
                std::fs::read(path).map_err(|source| HttpsError::Read {
                    key: key_name,
                    path: path.to_owned(),
                    source,
                })
            };
            let cert_pem = read("console_cert", cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<_, _>>()
                .map_err(|e| HttpsError::Pem {
                    key: "console_cert",
                    path: cert.to_owned(),
                    message: e.to_string(),
                })?;
            if chain.is_empty() {
                return Err(HttpsError::Pem {
                    key: "console_cert",
                    path: cert.to_owned(),
                    message: "no CERTIFICATE block in the file".to_owned(),
                });
            }
            let key_pem = read("console_key", key)?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| HttpsError::Pem {
                key: "console_key",
                path: key.to_owned(),
                message: format!("no usable private key ({e})"),
            })?;
            (chain, private)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| HttpsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| HttpsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serves `app` over TLS on `listener` until `shutdown` completes; then lets the requests in
/// flight finish (the caller bounds how long it waits for this to return).
pub async fn serve(
    listener: TcpListener,
    tls: rustls::ServerConfig,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: the listener itself is fine, so wait a
                    // moment rather than spin or stop serving.
                    tracing::warn!("console: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        // A browser that does not trust the district CA yet ends up here, once per
                        // attempt: worth a line, not a warning.
                        tracing::debug!(%peer, "console: TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "console: TLS handshake timed out");
                        return;
                    }
                };
            let service = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(Transport::Tls);
                req
            });
            let service = hyper_util::service::TowerToHyperService::new(service);
            let builder = auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, "console: connection ended: {e}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Whether a plain-HTTP request from `peer` may be answered: only from the machine itself.
pub fn plain_http_allowed(peer: IpAddr) -> bool {
    match peer {
        IpAddr::V4(v4) => v4.is_loopback(),
        // An IPv4 client of a dual-stack socket arrives as ::ffff:a.b.c.d.
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_callers_may_use_plain_http() {
        for allowed in ["127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1"] {
            assert!(
                plain_http_allowed(allowed.parse().expect("ip")),
                "{allowed}"
            );
        }
        for refused in [
            "10.0.0.2",
            "192.168.1.9",
            "::ffff:10.0.0.2",
            "fe80::1",
            "0.0.0.0",
        ] {
            assert!(
                !plain_http_allowed(refused.parse().expect("ip")),
                "{refused}"
            );
        }
    }

    #[test]
    fn console_names_hold_each_name_once() {
        let names = console_names(
            "radio.binhson.gov.vn",
            "10.0.0.2:8443".parse().expect("addr"),
            &["10.0.0.2".to_owned(), "console.local".to_owned()],
        );
        assert_eq!(
            names,
            [
                "radio.binhson.gov.vn",
                "localhost",
                "127.0.0.1",
                "10.0.0.2",
                "console.local"
            ]
        );
        let unspecified = console_names("localhost", "0.0.0.0:8443".parse().expect("addr"), &[]);
        assert_eq!(unspecified, ["localhost", "127.0.0.1"]);
    }
}
