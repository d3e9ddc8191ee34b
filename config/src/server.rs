//! Settings of `radio-server`, the district broadcast server.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::check_host_port;
use crate::admin_token::{check_admin_tokens, AdminTokenSettings};
use crate::district::District;
use crate::error::{in_range, not_blank, ConfigError, Invalid};
use crate::health::HealthSettings;
use crate::ingest::{check_upstreams, LiveSettings, RelaySettings, Upstreams};

/// Default of [`ServerConfig::listen`].
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4433);

/// Default of [`ServerConfig::server_name`].
pub const DEFAULT_SERVER_NAME: &str = "localhost";

/// Default of [`ServerConfig::data_dir`].
pub const DEFAULT_DATA_DIR: &str = "/var/lib/radio-server";

/// Default of [`ServerConfig::bitrate`], in bits/s.
pub const DEFAULT_BITRATE: u32 = 32_000;

/// The Opus bitrates the server accepts, in bits/s.
pub const BITRATE_RANGE: (u32, u32) = (6_000, 510_000);

/// Default of [`ServerConfig::admin_listen`].
pub const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 4480);

/// Default of [`ServerConfig::console_listen`]: every address, since phones and office PCs reach
/// the console over the district's network; 8443 because 443 needs privileges a service
/// should not hold.
pub const DEFAULT_CONSOLE_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 8443);

/// Default of [`ServerConfig::library_max_upload_mb`]: an hour of speech at 96 kbit/s, or a
/// few minutes of a phone's uncompressed recording.
pub const DEFAULT_LIBRARY_MAX_UPLOAD_MB: u64 = 50;

/// The library upload limits the server accepts, in MB: every upload is decoded whole to check
/// it, so the top bounds the work and the disk one request can take.
pub const LIBRARY_MAX_UPLOAD_MB_RANGE: (u64, u64) = (1, 2_048);

/// Default of [`ServerConfig::tts_timeout_secs`]: espeak-ng speaks a 2000-character
/// announcement in well under a second; a neural engine on a small server takes some seconds.
pub const DEFAULT_TTS_TIMEOUT_SECS: u64 = 30;

/// The speech engine time-outs the server accepts, in seconds.
pub const TTS_TIMEOUT_SECS_RANGE: (u64, u64) = (1, 600);

/// Default of [`ServerConfig::tts_max_chars`]: a long announcement (two to three minutes read
/// aloud), short enough that staff preview it before it airs.
pub const DEFAULT_TTS_MAX_CHARS: usize = 2_000;

/// The text lengths the server accepts as `tts_max_chars`, in characters.
pub const TTS_MAX_CHARS_RANGE: (usize, usize) = (1, 100_000);

/// Placeholder of `provincial_stream`: where a trial Icecast server on the machine itself
/// would serve the provincial programme.
pub const DEFAULT_PROVINCIAL_STREAM: &str = "http://127.0.0.1:8000/qng.mp3";

/// The settings `radio-server` runs with, after merging file, environment and flags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// QUIC listen address. Port 0 (an ephemeral port) is allowed for tests; the server then
    /// has to publish the port it actually bound.
    pub listen: SocketAddr,
    /// `host:port` written into enrolment bundles; `None` derives it from `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_address: Option<String>,
    /// DNS name in the server certificate; agents verify it.
    pub server_name: String,
    pub data_dir: PathBuf,
    /// Opus bits per second.
    pub bitrate: u32,
    /// District file; `None` uses the embedded Bình Sơn district.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district_file: Option<PathBuf>,
    pub heartbeat_interval_ms: u64,
    pub idle_timeout_ms: u64,
    pub max_agents: u32,
    /// Per-agent outgoing audio queue, in 20 ms frames.
    pub send_queue_frames: u32,
    /// Audio packets a second the server sends before it packs several 20 ms frames into each
    /// packet (up to 100 ms): past it, thousands of agents cost more in packets than the
    /// machine can send. Measured on two cores (BENCHMARKS.md, "Load").
    pub audio_packet_budget: u32,
    /// UDP sockets sharing the QUIC port (`SO_REUSEPORT`), each with its own endpoint: one is
    /// enough for a district; a province's thousands of agents need several (see
    /// docs/ARCHITECTURE.md, "Thousands of agents").
    pub quic_sockets: u32,
    /// Hours ahead that scheduled recordings (file and playlist entries) are sent to the
    /// agents, which keep them and air them at their slots even if the link is down; 0 sends
    /// none.
    pub prefetch_horizon_hours: u32,
    /// `tracing` filter directive.
    pub log: String,
    /// TCP address of the admin endpoint (HTTP, bearer token). Loopback unless
    /// `admin_allow_remote`: it can put anything on air, and it has no TLS of its own.
    pub admin_listen: SocketAddr,
    /// Lets `admin_listen` be a non-loopback address. Plain HTTP still answers only callers
    /// on the machine itself (a TLS proxy there); other machines use the console's HTTPS.
    pub admin_allow_remote: bool,
    /// TCP address of the console and the admin API over HTTPS: what browsers, phones and
    /// remote scripts use.
    pub console_listen: SocketAddr,
    /// Names and addresses the console's certificate (issued by the district CA) holds
    /// besides `server_name`, `localhost` and `console_listen`'s address: the ones people
    /// type into a browser, e.g. `["radio.binhson.gov.vn", "10.0.0.2"]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub console_names: Vec<String>,
    /// The console's own certificate chain (PEM) instead of one from the district CA, e.g.
    /// from a public CA; needs `console_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_cert: Option<PathBuf>,
    /// The private key (PEM) of `console_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_key: Option<PathBuf>,
    /// Largest recording the console's audio library takes in one upload, in MB (2^20
    /// bytes); a larger one is refused (413) before it is stored.
    pub library_max_upload_mb: u64,
    /// The console's text-to-speech engine: a program and its arguments (an argv, run without
    /// a shell) that reads the text on stdin and writes audio the library decodes (WAV, MP3,
    /// Ogg...) to stdout, with the speed in words per minute in `RADIO_TTS_SPEED`. Empty:
    /// espeak-ng's Vietnamese voice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tts_command: Vec<String>,
    /// Seconds the speech engine may take for one text before it is killed.
    pub tts_timeout_secs: u64,
    /// Longest text the console speaks, in characters (not bytes).
    pub tts_max_chars: usize,
    /// The provincial station's stream (HTTP/Icecast), which the embedded schedule relays
    /// 05:00–07:00 and 17:00–19:00. The default is a placeholder nothing serves: the server
    /// warns at start that it cannot be reached.
    pub provincial_stream: String,
    /// The studio's live input (`[live]`); none by default.
    pub live: LiveSettings,
    /// How HTTP/Icecast streams are relayed (`[relay]`).
    pub relay: RelaySettings,
    /// Upstream radio servers this one relays (`[[upstream]]`).
    #[serde(rename = "upstream", skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Upstreams,
    /// Admin API tokens with roles (`[[admin_token]]`), besides the district's own.
    #[serde(rename = "admin_token", skip_serializing_if = "Vec::is_empty")]
    pub admin_tokens: Vec<AdminTokenSettings>,
    /// When the stations' box health raises warnings (`[health]`).
    pub health: HealthSettings,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: DEFAULT_LISTEN,
            public_address: None,
            server_name: DEFAULT_SERVER_NAME.to_owned(),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            bitrate: DEFAULT_BITRATE,
            district_file: None,
            heartbeat_interval_ms: 5_000,
            idle_timeout_ms: 15_000,
            max_agents: 10_000,
            // 5 s of 20 ms frames: rides out a short stall without unbounded memory per agent.
            send_queue_frames: 250,
            audio_packet_budget: 25_000,
            quic_sockets: 1,
            prefetch_horizon_hours: 24,
            log: crate::agent::DEFAULT_LOG.to_owned(),
            admin_listen: DEFAULT_ADMIN_LISTEN,
            admin_allow_remote: false,
            console_listen: DEFAULT_CONSOLE_LISTEN,
            console_names: Vec::new(),
            console_cert: None,
            console_key: None,
            library_max_upload_mb: DEFAULT_LIBRARY_MAX_UPLOAD_MB,
            tts_command: Vec::new(),
            tts_timeout_secs: DEFAULT_TTS_TIMEOUT_SECS,
            tts_max_chars: DEFAULT_TTS_MAX_CHARS,
            provincial_stream: DEFAULT_PROVINCIAL_STREAM.to_owned(),
            live: LiveSettings::default(),
            relay: RelaySettings::default(),
            upstreams: Upstreams::new(),
            admin_tokens: Vec::new(),
            health: HealthSettings::default(),
        }
    }
}

impl ServerConfig {
    /// Checks every rule; errors name the field (use the merge functions for file lines).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|i| i.unlocated("radio-server config"))
    }

    /// The `host:port` agents should dial. An unspecified listen address cannot be dialled,
    /// so it becomes loopback: right for a single-machine trial, and `public_address` exists
    /// for everything else.
    pub fn public_address(&self) -> String {
        if let Some(address) = &self.public_address {
            return address.clone();
        }
        let ip = match self.listen.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        SocketAddr::new(ip, self.listen.port()).to_string()
    }

    /// The district to serve: `district_file` if set, else the embedded Bình Sơn.
    pub fn district(&self) -> Result<District, ConfigError> {
        match &self.district_file {
            Some(path) => District::load(path),
            None => Ok(District::binh_son()),
        }
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if let Some(address) = &self.public_address {
            check_host_port(address).map_err(|m| Invalid::new("public_address", m))?;
        }
        not_blank("server_name", &self.server_name)?;
        if self.server_name.chars().any(char::is_whitespace) {
            return Err(Invalid::new(
                "server_name",
                format!(
                    "`{}` is not a DNS name: it contains whitespace",
                    self.server_name
                ),
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(Invalid::new("data_dir", "must not be empty"));
        }
        // libopus refuses anything outside this range.
        let (min, max) = BITRATE_RANGE;
        in_range("bitrate", self.bitrate, min, max)?;
        if let Some(path) = &self.district_file {
            if path.as_os_str().is_empty() {
                return Err(Invalid::new(
                    "district_file",
                    "must not be empty (leave it unset for the embedded Bình Sơn district)",
                ));
            }
        }
        in_range(
            "heartbeat_interval_ms",
            self.heartbeat_interval_ms,
            100,
            600_000,
        )?;
        if self.idle_timeout_ms <= self.heartbeat_interval_ms {
            return Err(Invalid::between(
                &["idle_timeout_ms", "heartbeat_interval_ms"],
                format!(
                    "idle_timeout_ms ({}) must exceed heartbeat_interval_ms ({}), or every \
                     agent would time out between heartbeats",
                    self.idle_timeout_ms, self.heartbeat_interval_ms
                ),
            ));
        }
        if self.max_agents == 0 {
            return Err(Invalid::new("max_agents", "must be at least 1 (got 0)"));
        }
        in_range("send_queue_frames", self.send_queue_frames, 10, 3_000)?;
        in_range("quic_sockets", self.quic_sockets, 1, 64)?;
        in_range(
            "audio_packet_budget",
            self.audio_packet_budget,
            1_000,
            10_000_000,
        )?;
        // A week: the longest recurrence; beyond it the plan repeats itself.
        in_range(
            "prefetch_horizon_hours",
            self.prefetch_horizon_hours,
            0,
            168,
        )?;
        let (min, max) = LIBRARY_MAX_UPLOAD_MB_RANGE;
        in_range(
            "library_max_upload_mb",
            self.library_max_upload_mb,
            min,
            max,
        )?;
        if let Some(i) = self.tts_command.iter().position(|a| a.is_empty()) {
            return Err(Invalid::new(
                "tts_command",
                format!(
                    "argument {} is empty: give the program and its arguments, e.g. \
                     [\"piper\", \"--model\", \"/opt/vi.onnx\", \"--output_file\", \"-\"], or \
                     leave it unset for espeak-ng",
                    i + 1
                ),
            ));
        }
        if self
            .tts_command
            .first()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(Invalid::new("tts_command", "the program must not be blank"));
        }
        let (min, max) = TTS_TIMEOUT_SECS_RANGE;
        in_range("tts_timeout_secs", self.tts_timeout_secs, min, max)?;
        let (min, max) = TTS_MAX_CHARS_RANGE;
        in_range("tts_max_chars", self.tts_max_chars, min, max)?;
        not_blank("log", &self.log)?;
        if !self.admin_allow_remote && !self.admin_listen.ip().is_loopback() {
            // The token travels in clear text over plain HTTP; off loopback that needs a
            // deliberate decision (a TLS proxy, a VPN), not a typo in an address.
            return Err(Invalid::between(
                &["admin_listen", "admin_allow_remote"],
                format!(
                    "`{}` is not a loopback address; the admin endpoint speaks plain HTTP, so \
                     listen on 127.0.0.1 or ::1, or set admin_allow_remote = true behind a TLS \
                     proxy or VPN",
                    self.admin_listen
                ),
            ));
        }
        for (i, name) in self.console_names.iter().enumerate() {
            if name.trim().is_empty() || name.chars().any(char::is_whitespace) {
                return Err(Invalid::new(
                    "console_names",
                    format!(
                        "entry {} (`{name}`) must be a DNS name or an IP address, without spaces",
                        i + 1
                    ),
                ));
            }
        }
        if self.console_cert.is_some() != self.console_key.is_some() {
            return Err(Invalid::between(
                &["console_cert", "console_key"],
                "give both the console's certificate and its key, or neither (the district CA \
                 then issues the certificate)",
            ));
        }
        check_stream_url(&self.provincial_stream)
            .map_err(|m| Invalid::new("provincial_stream", m))?;
        self.live.check()?;
        self.relay.check()?;
        self.health.check()?;
        check_upstreams(&self.upstreams)?;
        check_admin_tokens(&self.admin_tokens)?;
        Ok(())
    }
}

/// The shape of a stream URL: `http://` or `https://`, a host, no whitespace. The server
/// checks it fully when it starts (as it checks every stream URL), but a typo is found here
/// with the config line that holds it.
fn check_stream_url(url: &str) -> Result<(), String> {
    if let Some(at) = url.find(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "`{}` contains a space or control character at byte {at}",
            url.escape_debug()
        ));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{url}` is not a stream URL: expected http://HOST[:PORT]/PATH or https://…"
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("`{url}`: scheme `{scheme}` is not http or https"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_documented() {
        let cfg = ServerConfig::default();
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:4433");
        assert_eq!(cfg.server_name, "localhost");
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/radio-server"));
        assert_eq!(cfg.bitrate, 32_000);
        assert_eq!(cfg.heartbeat_interval_ms, 5_000);
        assert_eq!(cfg.idle_timeout_ms, 15_000);
        assert_eq!(cfg.max_agents, 10_000);
        assert_eq!(cfg.send_queue_frames, 250);
        assert_eq!(cfg.audio_packet_budget, 25_000);
        assert_eq!(cfg.quic_sockets, 1);
        assert_eq!(cfg.log, "info");
        assert_eq!(cfg.admin_listen.to_string(), "127.0.0.1:4480");
        assert!(!cfg.admin_allow_remote);
        assert_eq!(cfg.provincial_stream, "http://127.0.0.1:8000/qng.mp3");
    }

    #[test]
    fn provincial_stream_must_be_an_http_url() {
        for good in [
            "http://radio.quangngai.example:8000/qng.mp3",
            "https://stream.example/live",
            "http://source:pass@10.0.0.5:8000/mount",
        ] {
            let cfg = ServerConfig {
                provincial_stream: good.to_owned(),
                ..ServerConfig::default()
            };
            assert_eq!(cfg.validate(), Ok(()), "{good}");
        }
        for bad in [
            "",
            "radio.quangngai.example/qng.mp3",
            "ftp://radio.example/qng.mp3",
            "http:///qng.mp3",
            "http://radio.example/qng.mp3 ",
        ] {
            let cfg = ServerConfig {
                provincial_stream: bad.to_owned(),
                ..ServerConfig::default()
            };
            let err = cfg.validate().expect_err(bad);
            assert_eq!(
                err.key.as_deref(),
                Some("provincial_stream"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn public_address_falls_back_to_a_dialable_listen_address() {
        let mut cfg = ServerConfig::default();
        assert_eq!(cfg.public_address(), "127.0.0.1:4433");
        cfg.listen = "[::]:5000".parse().expect("addr");
        assert_eq!(cfg.public_address(), "[::1]:5000");
        cfg.listen = "10.1.2.3:4433".parse().expect("addr");
        assert_eq!(cfg.public_address(), "10.1.2.3:4433");
        cfg.public_address = Some("radio.binhson.gov.vn:443".into());
        assert_eq!(cfg.public_address(), "radio.binhson.gov.vn:443");
    }

    #[test]
    fn district_defaults_to_binh_son() {
        let cfg = ServerConfig::default();
        assert_eq!(cfg.district().map(|d| d.stations.len()), Ok(22));
        let cfg = ServerConfig {
            district_file: Some("/nonexistent/district.toml".into()),
            ..ServerConfig::default()
        };
        let err = cfg.district().expect_err("missing file");
        assert_eq!(err.source_name, "/nonexistent/district.toml");
    }

    #[test]
    fn validation_rules() {
        let d = ServerConfig::default;
        let cases: Vec<(ServerConfig, &str)> = vec![
            (
                ServerConfig {
                    bitrate: 5_999,
                    ..d()
                },
                "bitrate",
            ),
            (
                ServerConfig {
                    bitrate: 510_001,
                    ..d()
                },
                "bitrate",
            ),
            (
                ServerConfig {
                    heartbeat_interval_ms: 99,
                    ..d()
                },
                "heartbeat_interval_ms",
            ),
            (
                ServerConfig {
                    heartbeat_interval_ms: 600_001,
                    idle_timeout_ms: 700_000,
                    ..d()
                },
                "heartbeat_interval_ms",
            ),
            (
                ServerConfig {
                    idle_timeout_ms: 5_000,
                    ..d()
                },
                "idle_timeout_ms",
            ),
            (
                ServerConfig {
                    max_agents: 0,
                    ..d()
                },
                "max_agents",
            ),
            (
                ServerConfig {
                    send_queue_frames: 9,
                    ..d()
                },
                "send_queue_frames",
            ),
            (
                ServerConfig {
                    send_queue_frames: 3_001,
                    ..d()
                },
                "send_queue_frames",
            ),
            (
                ServerConfig {
                    audio_packet_budget: 999,
                    ..d()
                },
                "audio_packet_budget",
            ),
            (
                ServerConfig {
                    quic_sockets: 0,
                    ..d()
                },
                "quic_sockets",
            ),
            (
                ServerConfig {
                    public_address: Some("example.org".into()),
                    ..d()
                },
                "public_address",
            ),
            (
                ServerConfig {
                    server_name: "".into(),
                    ..d()
                },
                "server_name",
            ),
            (
                ServerConfig {
                    server_name: "a b".into(),
                    ..d()
                },
                "server_name",
            ),
            (
                ServerConfig {
                    data_dir: PathBuf::new(),
                    ..d()
                },
                "data_dir",
            ),
            (
                ServerConfig {
                    district_file: Some(PathBuf::new()),
                    ..d()
                },
                "district_file",
            ),
            (
                ServerConfig {
                    log: "".into(),
                    ..d()
                },
                "log",
            ),
            (
                ServerConfig {
                    admin_listen: "0.0.0.0:4480".parse().expect("addr"),
                    ..d()
                },
                "admin_listen",
            ),
            (
                ServerConfig {
                    admin_listen: "10.1.2.3:4480".parse().expect("addr"),
                    ..d()
                },
                "admin_listen",
            ),
        ];
        for (cfg, key) in cases {
            let err = cfg.validate().expect_err(key);
            assert_eq!(err.key.as_deref(), Some(key), "{err}");
            assert_eq!(err.source_name, "radio-server config");
        }
        let err = ServerConfig {
            bitrate: 900,
            ..d()
        }
        .validate()
        .expect_err("900");
        assert_eq!(
            err.to_string(),
            "radio-server config: key `bitrate`: must be between 6000 and 510000 (got 900)"
        );
    }

    #[test]
    fn admin_endpoint_stays_on_loopback_unless_allowed() {
        let d = ServerConfig::default;
        for addr in ["127.0.0.1:4480", "[::1]:4480", "127.0.0.2:0"] {
            let cfg = ServerConfig {
                admin_listen: addr.parse().expect("addr"),
                ..d()
            };
            assert_eq!(cfg.validate(), Ok(()), "{addr}");
        }
        let remote = ServerConfig {
            admin_listen: "[::]:4480".parse().expect("addr"),
            ..d()
        };
        let err = remote
            .validate()
            .expect_err("unspecified v6 is not loopback");
        assert_eq!(err.key.as_deref(), Some("admin_listen"));
        assert!(err.message.contains("admin_allow_remote = true"), "{err}");
        let allowed = ServerConfig {
            admin_allow_remote: true,
            ..remote
        };
        assert_eq!(allowed.validate(), Ok(()));
    }

    #[test]
    fn serialises_to_toml_that_parses_back() {
        let cfg = ServerConfig {
            public_address: Some("radio.example:4433".into()),
            district_file: Some("/etc/radio-server/district.toml".into()),
            ..ServerConfig::default()
        };
        let text = toml::to_string(&cfg).expect("serialises");
        let back: ServerConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, cfg);
        let text = toml::to_string(&ServerConfig::default()).expect("serialises");
        let back: ServerConfig = toml::from_str(&text).expect("parses");
        assert_eq!(back, ServerConfig::default());
    }
}
