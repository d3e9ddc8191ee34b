//! Settings of `relay-agent`, the daemon at each commune station, and where it plays audio.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::address::check_host_port;
use crate::amplifier::AmplifierConfig;
use crate::error::{in_range, not_blank, ConfigError, Invalid};

/// Opus frames are 20 ms throughout the system.
const FRAME_MS: u32 = 20;

/// Headroom beyond the playout delay so a burst after a stall is absorbed, not dropped.
const JITTER_SPARE_FRAMES: u32 = 10;

/// Default of [`AgentConfig::bundle`].
pub const DEFAULT_AGENT_BUNDLE: &str = "/etc/relay-agent/bundle.toml";

/// Default of [`AgentConfig::state_dir`].
pub const DEFAULT_AGENT_STATE_DIR: &str = "/var/lib/relay-agent";

/// Default of [`AgentConfig::playout_delay_ms`].
// 300, not 200: on a link losing 10 % of its datagrams with 30 ms of jitter, a frame lost twice
// in a row needs two QUIC retransmissions, which 200 ms did not always cover (99.45 % of live
// frames played, median; 300 ms: 100 %; BENCHMARKS.md, "Loss resilience").
pub const DEFAULT_PLAYOUT_DELAY_MS: u32 = 300;

/// The playout delays an agent accepts, in ms.
pub const PLAYOUT_DELAY_MS_RANGE: (u32, u32) = (20, 10_000);

/// Default `tracing` filter of both daemons ([`AgentConfig::log`], `ServerConfig::log`).
pub const DEFAULT_LOG: &str = "info";

/// The settings `relay-agent` runs with, after merging file, environment and flags.
///
/// [`Default`] leaves `sinks` empty, which does not validate: an agent must be told where to
/// play, there is no output every station has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    /// Enrolment bundle written by `radio-server enroll`.
    pub bundle: PathBuf,
    /// `host:port` overriding the server address in the bundle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub state_dir: PathBuf,
    /// Where decoded audio goes; at least one.
    pub sinks: Vec<SinkSpec>,
    /// How long after its server time each frame is heard (before the server's clock is known:
    /// after it arrived). Every agent of a district must use the same value, or their clusters
    /// play out of step; 300 ms covers the delay, jitter and retransmissions of rural 3G/4G and
    /// radio links (BENCHMARKS.md, "Loss resilience").
    pub playout_delay_ms: u32,
    /// Capacity of the jitter buffer in 20 ms frames.
    pub jitter_capacity_frames: u32,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Seconds between heartbeat records in the uptime journal.
    pub journal_heartbeat_secs: u64,
    /// Records the journal keeps waiting for upload before it stops writing heartbeats
    /// (transitions are always written; see the agent's journal policy).
    pub journal_max_records: u64,
    /// Seconds without an RTCP receiver report after which a cluster whose receiver sends
    /// them counts as down (see `cluster=` on RTP sinks).
    pub cluster_timeout_secs: u64,
    /// Megabytes of disk the prefetch cache (`state_dir/prefetch`) may hold: recordings the
    /// server schedules here are kept ahead of their slots, to air even with the link down.
    pub prefetch_max_mb: u64,
    /// `tracing` filter directive.
    pub log: String,
    /// Amplifier power switching (`[amplifier]`); none: nothing is switched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amplifier: Option<AmplifierConfig>,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            bundle: PathBuf::from(DEFAULT_AGENT_BUNDLE),
            server: None,
            state_dir: PathBuf::from(DEFAULT_AGENT_STATE_DIR),
            sinks: Vec::new(),
            playout_delay_ms: DEFAULT_PLAYOUT_DELAY_MS,
            jitter_capacity_frames: 500,
            reconnect_min_ms: 500,
            reconnect_max_ms: 10_000,
            journal_heartbeat_secs: 60,
            journal_max_records: 100_000,
            cluster_timeout_secs: 30,
            // About 36 hours of speech at 32 kb/s: a day's recordings and the next ones.
            prefetch_max_mb: 512,
            log: DEFAULT_LOG.to_owned(),
            amplifier: None,
        }
    }
}

impl AgentConfig {
    /// Checks every rule; errors name the field (use the merge functions for file lines).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(|i| i.unlocated("relay-agent config"))
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.bundle.as_os_str().is_empty() {
            return Err(Invalid::new("bundle", "must not be empty"));
        }
        if let Some(server) = &self.server {
            check_host_port(server).map_err(|m| Invalid::new("server", m))?;
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(Invalid::new("state_dir", "must not be empty"));
        }
        if self.sinks.is_empty() {
            return Err(Invalid::new(
                "sinks",
                format!("at least one sink is required; {SINK_FORMS}"),
            ));
        }
        let (min, max) = PLAYOUT_DELAY_MS_RANGE;
        in_range("playout_delay_ms", self.playout_delay_ms, min, max)?;
        let needed = self.playout_delay_ms / FRAME_MS + JITTER_SPARE_FRAMES;
        if self.jitter_capacity_frames < needed {
            return Err(Invalid::between(
                &["jitter_capacity_frames", "playout_delay_ms"],
                format!(
                    "jitter_capacity_frames ({}) must hold the playout delay plus \
                     {JITTER_SPARE_FRAMES} spare frames: at least {needed} for \
                     playout_delay_ms = {}",
                    self.jitter_capacity_frames, self.playout_delay_ms
                ),
            ));
        }
        // Zero would make a flapping link reconnect in a busy loop.
        in_range("reconnect_min_ms", self.reconnect_min_ms, 10, 3_600_000)?;
        if self.reconnect_max_ms < self.reconnect_min_ms {
            return Err(Invalid::between(
                &["reconnect_max_ms", "reconnect_min_ms"],
                format!(
                    "reconnect_max_ms ({}) must be at least reconnect_min_ms ({})",
                    self.reconnect_max_ms, self.reconnect_min_ms
                ),
            ));
        }
        in_range(
            "journal_heartbeat_secs",
            self.journal_heartbeat_secs,
            1,
            3_600,
        )?;
        in_range(
            "journal_max_records",
            self.journal_max_records,
            100,
            100_000_000,
        )?;
        // RFC 3550 receivers report every 5 s at least; less than that would flap.
        in_range("cluster_timeout_secs", self.cluster_timeout_secs, 6, 3_600)?;
        // A terabyte is beyond any station's disk; the bound keeps the byte count in range.
        in_range("prefetch_max_mb", self.prefetch_max_mb, 1, 1_000_000)?;
        let mut clusters = std::collections::BTreeSet::new();
        for sink in &self.sinks {
            if let SinkSpec::Rtp {
                cluster: Some(cluster),
                ..
            } = sink
            {
                if !clusters.insert(cluster.as_str()) {
                    return Err(Invalid::new(
                        "sinks",
                        format!("cluster `{cluster}` is watched by two RTP sinks; one each"),
                    ));
                }
            }
        }
        not_blank("log", &self.log)?;
        if let Some(amplifier) = &self.amplifier {
            amplifier.check()?;
        }
        Ok(())
    }
}

/// Longest cluster id an RTP sink may name (the journal carries at most this).
pub const MAX_CLUSTER_ID: usize = 32;

/// The accepted sink forms, quoted in every sink error.
pub(crate) const SINK_FORMS: &str = "a sink is one of `rtp:HOST:PORT` (options, in this \
     order: `,cluster=ID` to watch that loudspeaker cluster's receiver, `,port=LOCAL` for the \
     local RTP port, `,sdp=PATH` last), `wav:PATH` or `pipe:COMMAND`, e.g. \
     `rtp:127.0.0.1:5004`, `rtp:10.0.1.11:5004,cluster=c01`, \
     `wav:/var/lib/relay-agent/out.wav`, `pipe:aplay -q -t raw -f S16_LE -r 48000 -c 1`";

/// Where an agent sends decoded audio.
///
/// Written as a one-line string in TOML, environment and flags; see [`FromStr`] for the forms.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkSpec {
    /// Opus over RTP (RFC 7587) to a hardware decoder or IP speaker; with `sdp`, an SDP file
    /// describing the stream is written for players such as ffplay.
    ///
    /// With `cluster`, the receiver is that loudspeaker cluster (`c01`) and its health is
    /// journaled: RTCP receiver reports arrive on the local RTP port + 1, ICMP errors show an
    /// unreachable receiver. `port` fixes the local RTP port (default: an ephemeral pair).
    Rtp {
        dest: SocketAddr,
        sdp: Option<PathBuf>,
        cluster: Option<String>,
        port: Option<u16>,
    },
    /// A WAV file (48 kHz mono 16-bit), for recording and tests.
    Wav { path: PathBuf },
    /// A shell command fed raw 48 kHz mono S16_LE on stdin, e.g. `aplay`.
    Pipe { command: String },
}

impl SinkSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            SinkSpec::Rtp { .. } => "rtp",
            SinkSpec::Wav { .. } => "wav",
            SinkSpec::Pipe { .. } => "pipe",
        }
    }
}

/// Why a sink string was refused; every message lists the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkSpecError {
    #[error("`{0}` has no sink kind; {SINK_FORMS}")]
    MissingKind(String),
    #[error("unknown sink kind `{0}`; {SINK_FORMS}")]
    UnknownKind(String),
    #[error("`{dest}` is not an RTP destination IP:PORT ({reason}); {SINK_FORMS}")]
    RtpDestination { dest: String, reason: String },
    #[error("RTP destination `{0}` has port 0; {SINK_FORMS}")]
    RtpPortZero(SocketAddr),
    #[error("unknown RTP option `{0}`; {SINK_FORMS}")]
    RtpOption(String),
    #[error(
        "`cluster={0}`: a cluster id is 1 to {MAX_CLUSTER_ID} lowercase letters, digits or \
         `-` (e.g. `c01`), given once; {SINK_FORMS}"
    )]
    RtpCluster(String),
    #[error("`port={0}`: the local RTP port is 1 to 65534 (RTCP uses the next one), given once; {SINK_FORMS}")]
    RtpLocalPort(String),
    /// Holds the prefix that lacks its value, e.g. `wav:`.
    #[error("`{0}` needs a non-empty value after it; {SINK_FORMS}")]
    Empty(&'static str),
}

/// Parses `rtp:IP:PORT[,sdp=PATH]`, `wav:PATH` or `pipe:COMMAND`.
///
/// Only the kind prefix is interpreted: paths and commands are taken verbatim so that any
/// [`Display`](fmt::Display) output parses back to the same value.
impl FromStr for SinkSpec {
    type Err = SinkSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((kind, rest)) = s.split_once(':') else {
            return Err(SinkSpecError::MissingKind(s.to_owned()));
        };
        match kind {
            "rtp" => parse_rtp(rest),
            "wav" if rest.is_empty() => Err(SinkSpecError::Empty("wav:")),
            "wav" => Ok(SinkSpec::Wav {
                path: PathBuf::from(rest),
            }),
            "pipe" if rest.trim().is_empty() => Err(SinkSpecError::Empty("pipe:")),
            "pipe" => Ok(SinkSpec::Pipe {
                command: rest.to_owned(),
            }),
            other => Err(SinkSpecError::UnknownKind(other.to_owned())),
        }
    }
}

/// `HOST:PORT[,cluster=ID][,port=LOCAL][,sdp=PATH]`.
fn parse_rtp(rest: &str) -> Result<SinkSpec, SinkSpecError> {
    // Socket addresses never contain ',', so the first ',' ends the destination.
    let (dest, mut options) = match rest.split_once(',') {
        Some((dest, options)) => (dest, Some(options)),
        None => (rest, None),
    };
    let dest: SocketAddr =
        dest.parse().map_err(
            |e: std::net::AddrParseError| SinkSpecError::RtpDestination {
                dest: dest.to_owned(),
                reason: e.to_string(),
            },
        )?;
    if dest.port() == 0 {
        return Err(SinkSpecError::RtpPortZero(dest));
    }
    let (mut sdp, mut cluster, mut port) = (None, None, None);
    while let Some(text) = options {
        // The SDP path is the whole remainder, so it may itself contain ','.
        if let Some(path) = text.strip_prefix("sdp=") {
            if path.is_empty() {
                return Err(SinkSpecError::Empty("rtp:…,sdp="));
            }
            sdp = Some(PathBuf::from(path));
            break;
        }
        let (option, next) = match text.split_once(',') {
            Some((option, next)) => (option, Some(next)),
            None => (text, None),
        };
        options = next;
        if let Some(id) = option.strip_prefix("cluster=") {
            let valid = !id.is_empty()
                && id.len() <= MAX_CLUSTER_ID
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid || cluster.is_some() {
                return Err(SinkSpecError::RtpCluster(id.to_owned()));
            }
            cluster = Some(id.to_owned());
        } else if let Some(number) = option.strip_prefix("port=") {
            // RTCP goes to the next port up, so the RTP port leaves room for it.
            match number.parse::<u16>() {
                Ok(p @ 1..=65534) if port.is_none() => port = Some(p),
                _ => return Err(SinkSpecError::RtpLocalPort(number.to_owned())),
            }
        } else {
            return Err(SinkSpecError::RtpOption(option.to_owned()));
        }
    }
    Ok(SinkSpec::Rtp {
        dest,
        sdp,
        cluster,
        port,
    })
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkSpec::Rtp {
                dest,
                sdp,
                cluster,
                port,
            } => {
                write!(f, "rtp:{dest}")?;
                if let Some(cluster) = cluster {
                    write!(f, ",cluster={cluster}")?;
                }
                if let Some(port) = port {
                    write!(f, ",port={port}")?;
                }
                if let Some(sdp) = sdp {
                    write!(f, ",sdp={}", sdp.display())?;
                }
                Ok(())
            }
            SinkSpec::Wav { path } => write!(f, "wav:{}", path.display()),
            SinkSpec::Pipe { command } => write!(f, "pipe:{command}"),
        }
    }
}

impl Serialize for SinkSpec {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SinkSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsing inside the visitor, not after, lets toml attach the element's own span to
        // the error instead of the whole array's.
        struct SinkVisitor;
        impl serde::de::Visitor<'_> for SinkVisitor {
            type Value = SinkSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sink string such as \"rtp:127.0.0.1:5004\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SinkSpec, E> {
                text.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(SinkVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn valid() -> AgentConfig {
        AgentConfig {
            sinks: vec![SinkSpec::Wav {
                path: "/tmp/out.wav".into(),
            }],
            ..AgentConfig::default()
        }
    }

    #[test]
    fn parses_each_documented_form() {
        assert_eq!(
            "rtp:127.0.0.1:5004".parse(),
            Ok(SinkSpec::Rtp {
                dest: "127.0.0.1:5004".parse().expect("addr"),
                sdp: None,
                cluster: None,
                port: None,
            })
        );
        assert_eq!(
            "rtp:10.0.1.11:5004,cluster=c01,port=6000,sdp=/tmp/a,b.sdp".parse(),
            Ok(SinkSpec::Rtp {
                dest: "10.0.1.11:5004".parse().expect("addr"),
                sdp: Some("/tmp/a,b.sdp".into()),
                cluster: Some("c01".into()),
                port: Some(6000),
            })
        );
        assert_eq!(
            "rtp:127.0.0.1:5004,sdp=/tmp/x.sdp".parse(),
            Ok(SinkSpec::Rtp {
                dest: "127.0.0.1:5004".parse().expect("addr"),
                sdp: Some("/tmp/x.sdp".into()),
                cluster: None,
                port: None,
            })
        );
        assert_eq!(
            "rtp:[ff02::1]:5004".parse::<SinkSpec>().map(|s| s.kind()),
            Ok("rtp")
        );
        assert_eq!(
            "wav:/tmp/out.wav".parse(),
            Ok(SinkSpec::Wav {
                path: "/tmp/out.wav".into()
            })
        );
        assert_eq!(
            "pipe:aplay -q -t raw -f S16_LE -r 48000 -c 1".parse(),
            Ok(SinkSpec::Pipe {
                command: "aplay -q -t raw -f S16_LE -r 48000 -c 1".into()
            })
        );
    }

    #[test]
    fn rejects_bad_forms_and_explains_the_good_ones() {
        let cases = [
            ("", "no sink kind"),
            ("/tmp/out.wav", "no sink kind"),
            ("mp3:/tmp/x", "unknown sink kind `mp3`"),
            ("RTP:127.0.0.1:5004", "unknown sink kind `RTP`"),
            ("rtp:", "not an RTP destination"),
            ("rtp:localhost:5004", "not an RTP destination"),
            ("rtp:127.0.0.1", "not an RTP destination"),
            ("rtp:127.0.0.1:0", "port 0"),
            ("rtp:127.0.0.1:5004,ttl=4", "unknown RTP option `ttl=4`"),
            ("rtp:127.0.0.1:5004,sdp=", "non-empty"),
            ("rtp:127.0.0.1:5004,cluster=", "`cluster=`: a cluster id"),
            ("rtp:127.0.0.1:5004,cluster=C01", "`cluster=C01`"),
            ("rtp:127.0.0.1:5004,cluster=c1,cluster=c2", "`cluster=c2`"),
            ("rtp:127.0.0.1:5004,port=65535", "`port=65535`"),
            ("rtp:127.0.0.1:5004,port=0", "`port=0`"),
            ("rtp:127.0.0.1:5004,port=x", "`port=x`"),
            ("wav:", "non-empty"),
            ("pipe:   ", "non-empty"),
        ];
        for (input, expected) in cases {
            let err = input.parse::<SinkSpec>().expect_err(input).to_string();
            assert!(err.contains(expected), "{input}: {err}");
            assert!(err.contains("rtp:HOST:PORT"), "{input}: {err}");
        }
    }

    #[test]
    fn kinds() {
        let kinds: Vec<_> = ["rtp:1.2.3.4:5", "wav:a", "pipe:cat"]
            .iter()
            .map(|s| s.parse::<SinkSpec>().map(|s| s.kind()))
            .collect();
        assert_eq!(kinds, vec![Ok("rtp"), Ok("wav"), Ok("pipe")]);
    }

    #[test]
    fn serde_uses_the_string_form() {
        let text = "sinks = [\"rtp:127.0.0.1:5004\", \"wav:/var/lib/relay-agent/out.wav\"]\n";
        let cfg: AgentConfig = toml::from_str(text).expect("parses");
        assert_eq!(cfg.sinks.len(), 2);
        assert_eq!(cfg.sinks[1].kind(), "wav");
        let back = toml::to_string(&cfg).expect("serialises");
        assert!(back.contains(text.trim()), "{back}");
        let again: AgentConfig = toml::from_str(&back).expect("round trip");
        assert_eq!(again, cfg);
    }

    #[test]
    fn defaults_need_only_a_sink() {
        assert_eq!(valid().validate(), Ok(()));
        let err = AgentConfig::default().validate().expect_err("no sinks");
        assert_eq!(err.key.as_deref(), Some("sinks"));
    }

    #[test]
    fn validation_rules() {
        let cases: Vec<(AgentConfig, &str)> = vec![
            (
                AgentConfig {
                    playout_delay_ms: 19,
                    ..valid()
                },
                "playout_delay_ms",
            ),
            (
                AgentConfig {
                    playout_delay_ms: 10_001,
                    jitter_capacity_frames: 10_000,
                    ..valid()
                },
                "playout_delay_ms",
            ),
            (
                AgentConfig {
                    playout_delay_ms: 1000,
                    jitter_capacity_frames: 59,
                    ..valid()
                },
                "jitter_capacity_frames",
            ),
            (
                AgentConfig {
                    reconnect_min_ms: 0,
                    ..valid()
                },
                "reconnect_min_ms",
            ),
            (
                AgentConfig {
                    reconnect_min_ms: 20_000,
                    ..valid()
                },
                "reconnect_max_ms",
            ),
            (
                AgentConfig {
                    server: Some("no-port".into()),
                    ..valid()
                },
                "server",
            ),
            (
                AgentConfig {
                    bundle: PathBuf::new(),
                    ..valid()
                },
                "bundle",
            ),
            (
                AgentConfig {
                    state_dir: PathBuf::new(),
                    ..valid()
                },
                "state_dir",
            ),
            (
                AgentConfig {
                    log: " ".into(),
                    ..valid()
                },
                "log",
            ),
        ];
        let twice = AgentConfig {
            sinks: vec![
                "rtp:10.0.0.1:5004,cluster=c01".parse().expect("sink"),
                "rtp:10.0.0.2:5004,cluster=c01".parse().expect("sink"),
            ],
            ..valid()
        };
        let err = twice.validate().expect_err("one cluster, two sinks");
        assert!(err.to_string().contains("cluster `c01`"), "{err}");
        let short = AgentConfig {
            cluster_timeout_secs: 5,
            ..valid()
        };
        assert_eq!(
            short.validate().expect_err("5 s").key.as_deref(),
            Some("cluster_timeout_secs")
        );
        for (cfg, key) in cases {
            let err = cfg.validate().expect_err(key);
            assert_eq!(err.key.as_deref(), Some(key), "{err}");
        }
        let edge = AgentConfig {
            playout_delay_ms: 1000,
            jitter_capacity_frames: 60,
            reconnect_min_ms: 10,
            reconnect_max_ms: 10,
            server: Some("[::1]:4433".into()),
            ..valid()
        };
        assert_eq!(edge.validate(), Ok(()));
    }

    fn path_text() -> impl Strategy<Value = String> {
        "/?[a-zA-Z0-9_.,=-]{1,12}(/[a-zA-Z0-9_. ,=-]{1,12}){0,3}"
    }

    fn sink_spec() -> impl Strategy<Value = SinkSpec> {
        let ip = prop_oneof![
            any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
            any::<[u16; 8]>().prop_map(std::net::IpAddr::from),
        ];
        let rtp = (
            ip,
            1u16..,
            proptest::option::of(path_text()),
            proptest::option::of("[a-z0-9-]{1,32}"),
            proptest::option::of(1u16..=65534),
        )
            .prop_map(|(ip, dest_port, sdp, cluster, port)| SinkSpec::Rtp {
                dest: SocketAddr::new(ip, dest_port),
                sdp: sdp.map(PathBuf::from),
                cluster,
                port,
            });
        let wav = path_text().prop_map(|p| SinkSpec::Wav { path: p.into() });
        let pipe = "[a-z]{1,8}( [-a-zA-Z0-9_=:,/.]{1,10}){0,5}"
            .prop_map(|command| SinkSpec::Pipe { command });
        prop_oneof![rtp, wav, pipe]
    }

    proptest! {
        #[test]
        fn display_round_trips_through_from_str(spec in sink_spec()) {
            let text = spec.to_string();
            prop_assert_eq!(text.parse::<SinkSpec>(), Ok(spec.clone()));
            prop_assert!(text.starts_with(spec.kind()));
        }

        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,40}") {
            let _ = text.parse::<SinkSpec>();
        }
    }
}
