//! The console's side of a running `radio-server`: an HTTPS client that trusts only the
//! district CA the server made (so a certificate from anywhere else fails the test), and the
//! first admin's password as the server printed it once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::Process;

/// An HTTPS client that trusts the district CA in `data_dir` (`ca/ca.crt`) and nothing else,
/// and never follows redirects nor keeps cookies by itself (a test passes the cookie as a
/// browser would).
pub fn https_client(data_dir: &Path) -> ureq::Agent {
    let ca = std::fs::read(data_dir.join("ca").join("ca.crt")).expect("district CA certificate");
    let root = ureq::tls::Certificate::from_pem(&ca).expect("CA PEM");
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![
            root.to_owned()
        ])))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The password in the server's `console admin account "admin", password … (shown once …)`.
pub fn first_admin_password(line: &str) -> String {
    line.split("password ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the first admin's password")
        .to_owned()
}

/// The console's address and the first admin's password, as `radio-server run` printed them.
pub fn console_of(server: &mut Process) -> (String, String) {
    let console = server.console_address();
    let line = server.wait_for("console admin account", Duration::from_secs(30));
    (console, first_admin_password(&line))
}

/// Bytes of an agent's WAV output per second of air: 48 kHz mono 16-bit.
pub const WAV_BYTES_PER_SECOND: u64 = 96_000;

/// The size of a file, 0 while it does not exist.
pub fn wav_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Waits until the agent's WAV holds `seconds` more of air than it did at `from` bytes (the
/// sink flushes each second of slots it has played).
pub fn wait_wav_grown(path: &Path, from: u64, seconds: f32) {
    let want = from + (seconds * WAV_BYTES_PER_SECOND as f32) as u64;
    let deadline = std::time::Instant::now() + crate::PATIENCE;
    while wav_len(path) < want {
        assert!(
            std::time::Instant::now() < deadline,
            "{} stopped growing at {} bytes (want {want})",
            path.display(),
            wav_len(path)
        );
        // A poll of the file the agent writes.
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A district on loopback for the console tests: a real `radio-server run` and a real agent per
/// station recording what it airs to `DIR/STATION.wav`, every link up.
#[derive(Debug)]
pub struct District {
    pub server: Process,
    /// The server's QUIC address.
    pub addr: String,
    pub agents: Vec<Process>,
    /// The server's data directory (`DIR/data`).
    pub data: std::path::PathBuf,
}

impl District {
    /// Enrols `stations` in `dir/data`, starts the server with `server_args` and the agents.
    pub fn start(dir: &Path, stations: &[&str], server_args: &[&str]) -> District {
        let data = dir.join("data");
        for station in stations {
            crate::enroll(&data, station, &dir.join(format!("{station}.toml")));
        }
        let (server, addr) = crate::start_server_with(&data, "127.0.0.1:0", server_args);
        let mut agents: Vec<Process> = stations
            .iter()
            .map(|station| {
                crate::start_agent(
                    station,
                    &dir.join(format!("{station}.toml")),
                    &addr,
                    &dir.join("agents").join(station),
                    &[format!(
                        "wav:{}",
                        dir.join(format!("{station}.wav")).display()
                    )],
                )
            })
            .collect();
        for agent in &mut agents {
            agent.wait_for("link up", crate::PATIENCE);
        }
        District {
            server,
            addr,
            agents,
            data,
        }
    }
}
