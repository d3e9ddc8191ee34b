//! Settings of the server's inputs besides recordings: the studio's live input (`[live]`), the
//! HTTP/Icecast relay (`[relay]`) and upstream radio servers (`[[upstream]]`).
//!
//! They live in the config file only: they are tables, and an environment variable or a flag
//! per key would be more confusing than helpful. `radio-server run --live-rtp` and
//! `--live-allow` remain as shortcuts for a trial.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;

use serde::{Deserialize, Serialize};

use crate::address::check_host_port;
use crate::district::is_slug;
use crate::error::{in_range, Invalid};

/// Upper bound of every timeout here: anything longer is a unit mistake (seconds written as
/// milliseconds is the other way round and is caught by the lower bounds).
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// Sample rates a mixer's PCM may have.
const PCM_RATES: [u32; 12] = [
    8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000, 192_000,
];

/// The studio's live input: RTP from the studio's encoder and/or raw PCM from a local mixer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LiveSettings {
    /// UDP address for studio RTP (Opus, RFC 7587, or L16). `None`: no RTP input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtp: Option<SocketAddr>,
    /// Senders allowed to send RTP; everyone else is dropped and counted. Empty means nobody,
    /// so an `rtp` address without `allow` is refused as a mistake.
    pub allow: Vec<IpAddr>,
    /// A file holding the SRTP master key (base64 of 16 key and 14 salt bytes, ffmpeg's
    /// `-srtp_out_params`): with it, only SRTP (AES_CM_128_HMAC_SHA1_80) under that key is
    /// accepted, since a source address alone can be forged. The key is kept out of this
    /// file so that the config can be shown; the key file must be mode 0600.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srtp_key_file: Option<PathBuf>,
    /// Raw s16le PCM from a local mixer: `"-"` for standard input, else a path (a FIFO made
    /// with `mkfifo`, or a file). `None`: no PCM input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pipe: Option<PathBuf>,
    /// Sample rate of the PCM on `pipe`.
    pub pipe_sample_rate: u32,
    /// Interleaved channels of the PCM on `pipe` (mixed down to mono).
    pub pipe_channels: u16,
    /// Go on air by itself when audio arrives (and off when it stops). When false, live goes
    /// on air only by `radio-server live start` (or the HTTP endpoint).
    pub auto_start: bool,
    /// The stations (ids) the studio goes to when it starts by itself; empty: all of them.
    /// `radio-server live start --targets` chooses for each session it starts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// Live ends after this long without an RTP packet.
    pub no_packet_timeout_ms: u64,
    /// Live ends after this long of silence; 0 never ends it for silence.
    pub silence_timeout_ms: u64,
    /// Audio quieter than this (RMS, dBFS) counts as silence.
    pub silence_threshold_dbfs: i32,
    /// How long the first RTP packet is held so that reordered packets can be put back in order.
    pub jitter_delay_ms: u64,
    /// Live interrupts emergencies instead of the other way round: for districts that announce
    /// emergencies from the live studio itself. Off: a warning must reach people even during a
    /// live broadcast.
    pub above_emergency: bool,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            rtp: None,
            allow: Vec::new(),
            srtp_key_file: None,
            pipe: None,
            pipe_sample_rate: 48_000,
            pipe_channels: 1,
            auto_start: true,
            targets: Vec::new(),
            no_packet_timeout_ms: 5_000,
            silence_timeout_ms: 30_000,
            silence_threshold_dbfs: -50,
            jitter_delay_ms: 60,
            above_emergency: false,
        }
    }
}

impl LiveSettings {
    /// Whether any live input is configured.
    pub fn enabled(&self) -> bool {
        self.rtp.is_some() || self.pipe.is_some()
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        if self.rtp.is_some() && self.allow.is_empty() {
            return Err(Invalid::between(
                &["live.allow", "live.rtp"],
                "no sender is allowed: list the studio encoder's address, e.g. \
                 allow = [\"192.168.1.20\"] (everyone else is dropped)",
            ));
        }
        if self.rtp.is_some() && self.pipe.is_some() {
            // Both would feed the one live programme, interleaved frame by frame.
            return Err(Invalid::between(
                &["live.pipe", "live.rtp"],
                "the studio has one live input: set either rtp or pipe, not both",
            ));
        }
        if let Some(path) = &self.srtp_key_file {
            if self.rtp.is_none() {
                return Err(Invalid::between(
                    &["live.srtp_key_file", "live.rtp"],
                    "an SRTP key without an rtp address protects nothing: set rtp too, or \
                     leave srtp_key_file out",
                ));
            }
            read_srtp_key(path).map_err(|m| Invalid::new("live.srtp_key_file", m))?;
        }
        if let Some(pipe) = &self.pipe {
            if pipe.as_os_str().is_empty() {
                return Err(Invalid::new(
                    "live.pipe",
                    "must not be empty: \"-\" for standard input, or a path",
                ));
            }
            check_pipe_permissions(pipe).map_err(|m| Invalid::new("live.pipe", m))?;
        }
        if !PCM_RATES.contains(&self.pipe_sample_rate) {
            // An odd rate (a typo such as 44101) would make the resampler work in huge blocks.
            return Err(Invalid::new(
                "live.pipe_sample_rate",
                format!(
                    "{} Hz is not a standard sample rate; use one of {}",
                    self.pipe_sample_rate,
                    PCM_RATES.map(|r| r.to_string()).join(", ")
                ),
            ));
        }
        in_range("live.pipe_channels", self.pipe_channels, 1, 8)?;
        in_range(
            "live.no_packet_timeout_ms",
            self.no_packet_timeout_ms,
            100,
            MAX_TIMEOUT_MS,
        )?;
        if self.silence_timeout_ms != 0 {
            in_range(
                "live.silence_timeout_ms",
                self.silence_timeout_ms,
                1_000,
                MAX_TIMEOUT_MS,
            )?;
        }
        in_range(
            "live.silence_threshold_dbfs",
            self.silence_threshold_dbfs,
            -120,
            0,
        )?;
        in_range("live.jitter_delay_ms", self.jitter_delay_ms, 0, 2_000)?;
        Ok(())
    }
}

/// Bytes of an SRTP master key and salt (AES_CM_128_HMAC_SHA1_80).
pub const SRTP_KEY_LEN: usize = 30;

/// Reads an SRTP key file (`live.srtp_key_file`): one line of base64 that decodes to the
/// 30 bytes of master key and salt. A file that others can read is refused: whoever has
/// the key can speak to every loudspeaker.
pub fn read_srtp_key(path: &Path) -> Result<[u8; SRTP_KEY_LEN], String> {
    let shown = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} can be read or written by group or others (mode {:04o}): it holds the \
             live studio's key; run `chmod 600 {shown}`",
            mode & 0o7777
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("{shown} is not base64 ({e}); make a key with `head -c 30 /dev/urandom | base64 > {shown}`"))?;
    <[u8; SRTP_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "{shown} holds {} bytes once decoded; an AES_CM_128_HMAC_SHA1_80 key is {SRTP_KEY_LEN} \
             (16 of key, 14 of salt): make one with `head -c 30 /dev/urandom | base64 > {shown}`",
            bytes.len()
        )
    })
}

/// Refuses a live PCM pipe that users other than the server's own can write to.
///
/// Whatever is written to the pipe goes on air at every loudspeaker of the district, and
/// a local FIFO has no other credential than its permissions: they are its shared secret.
/// A path writable by others is refused; one writable by its group is allowed (a mixer
/// often runs as another user of the server's group) but worth a look, so it is reported
/// by [`pipe_permission_warning`]. A path that does not exist yet is fine here (the mixer
/// may create it later, with its own permissions: `mkfifo -m 600`), and standard input
/// (`-`) is whatever the server was started with.
pub fn check_pipe_permissions(path: &Path) -> Result<(), String> {
    let Some(mode) = pipe_mode(path) else {
        return Ok(());
    };
    if mode & 0o002 != 0 {
        let shown = path.display();
        return Err(format!(
            "{shown} can be written by any user (mode {:04o}), and whatever is written to it \
             goes on air at every loudspeaker: run `chmod o-w {shown}` (or make it with \
             `mkfifo -m 600 {shown}`)",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// `live.pipe`'s permission bits, unless it is standard input or does not exist.
fn pipe_mode(path: &Path) -> Option<u32> {
    if path.as_os_str() == "-" {
        return None;
    }
    std::fs::metadata(path).ok().map(|m| m.permissions().mode())
}

impl LiveSettings {
    /// A warning worth logging at start: `live.pipe` can be written by its group, whose
    /// members can all put audio on air.
    pub fn pipe_permission_warning(&self) -> Option<String> {
        let path = self.pipe.as_deref()?;
        let mode = pipe_mode(path)?;
        (mode & 0o020 != 0).then(|| {
            format!(
                "live.pipe: {} can be written by its group (mode {:04o}): every member of \
                 that group can put audio on air; `chmod g-w` it unless that is intended",
                path.display(),
                mode & 0o7777
            )
        })
    }
}

/// How the server relays HTTP/Icecast streams (the provincial station).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelaySettings {
    /// Played (looped) while a stream is down; silence when `None`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<PathBuf>,
    /// Budget for name resolution, connect and the response headers, each.
    pub connect_timeout_ms: u64,
    /// No audio for this long from a connected stream counts as a failure.
    pub stall_timeout_ms: u64,
    /// First retry delay after a failure; it doubles per failure in a row.
    pub backoff_min_ms: u64,
    /// Longest retry delay.
    pub backoff_max_ms: u64,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            fallback: None,
            connect_timeout_ms: 10_000,
            stall_timeout_ms: 5_000,
            backoff_min_ms: 1_000,
            backoff_max_ms: 30_000,
        }
    }
}

impl RelaySettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        check_fallback("relay.fallback", self.fallback.as_ref())?;
        for (field, value) in [
            ("relay.connect_timeout_ms", self.connect_timeout_ms),
            ("relay.stall_timeout_ms", self.stall_timeout_ms),
            ("relay.backoff_min_ms", self.backoff_min_ms),
            ("relay.backoff_max_ms", self.backoff_max_ms),
        ] {
            in_range(field, value, 100, MAX_TIMEOUT_MS)?;
        }
        if self.backoff_max_ms < self.backoff_min_ms {
            return Err(Invalid::between(
                &["relay.backoff_max_ms", "relay.backoff_min_ms"],
                format!(
                    "backoff_max_ms ({}) must not be below backoff_min_ms ({})",
                    self.backoff_max_ms, self.backoff_min_ms
                ),
            ));
        }
        Ok(())
    }
}

/// An upstream radio server this server relays, as one of that server's agents: the province
/// enrols the district (`radio-server enroll binh-son` on the province's server) and the
/// district names the bundle here. A schedule entry then airs it with
/// `source = { kind = "upstream", name = "NAME" }`.
///
/// An array of tables (`[[upstream]]` with a `name`) rather than `[upstreams.NAME]`: errors
/// then point at `upstream[0].bundle`, and a name is checked like every other value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// What schedule entries call it, e.g. `tinh-quang-ngai`.
    pub name: String,
    /// Enrolment bundle issued by the upstream server.
    pub bundle: PathBuf,
    /// `host:port` overriding the address in the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Played (looped) while the upstream is unreachable; silence when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<PathBuf>,
    /// Audio is held this long before it is aired, to ride out jitter on the link.
    #[serde(default = "default_upstream_delay")]
    pub playout_delay_ms: u32,
}

fn default_upstream_delay() -> u32 {
    500
}

/// The configured upstreams, in file order.
pub type Upstreams = Vec<UpstreamSettings>;

pub(crate) fn check_upstreams(upstreams: &[UpstreamSettings]) -> Result<(), Invalid> {
    let mut seen = BTreeSet::new();
    for (i, upstream) in upstreams.iter().enumerate() {
        let name = &upstream.name;
        let key = |field: &str| format!("upstream[{i}].{field}");
        if !seen.insert(name) {
            return Err(Invalid::new(
                key("name"),
                format!("`{name}` is used by two upstreams; names must be unique"),
            ));
        }
        if !is_slug(name) {
            return Err(Invalid::new(
                key("name"),
                format!(
                    "`{name}` is not a valid name: use lowercase letters, digits and single \
                     hyphens, e.g. `tinh-quang-ngai`"
                ),
            ));
        }
        if upstream.bundle.as_os_str().is_empty() {
            return Err(Invalid::new(key("bundle"), "must not be empty"));
        }
        if let Some(server) = &upstream.server {
            check_host_port(server).map_err(|m| Invalid::new(key("server"), m))?;
        }
        check_fallback(&key("fallback"), upstream.fallback.as_ref())?;
        in_range(
            &key("playout_delay_ms"),
            upstream.playout_delay_ms,
            20,
            10_000,
        )?;
    }
    Ok(())
}

fn check_fallback(field: &str, fallback: Option<&PathBuf>) -> Result<(), Invalid> {
    match fallback {
        Some(path) if path.as_os_str().is_empty() => Err(Invalid::new(
            field,
            "must not be empty (leave it out to play silence)",
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(LiveSettings::default().check(), Ok(()));
        assert_eq!(RelaySettings::default().check(), Ok(()));
        assert_eq!(check_upstreams(&Upstreams::new()), Ok(()));
        assert!(!LiveSettings::default().enabled());
    }

    #[test]
    fn rtp_without_allowlist_is_refused() {
        let live = LiveSettings {
            rtp: Some("0.0.0.0:5004".parse().expect("addr")),
            ..LiveSettings::default()
        };
        let err = live.check().expect_err("nobody allowed");
        assert_eq!(err.fields[0], "live.allow");
        let live = LiveSettings {
            allow: vec!["127.0.0.1".parse().expect("ip")],
            ..live
        };
        assert_eq!(live.check(), Ok(()));
        assert!(live.enabled());
        let both = LiveSettings {
            pipe: Some("-".into()),
            ..live
        };
        assert_eq!(both.check().expect_err("two inputs").fields[0], "live.pipe");
    }

    #[test]
    fn timeouts_are_bounded() {
        let live = LiveSettings {
            silence_timeout_ms: 0,
            ..LiveSettings::default()
        };
        assert_eq!(live.check(), Ok(()), "0 disables the silence timeout");
        let odd = LiveSettings {
            pipe_sample_rate: 44_101,
            ..LiveSettings::default()
        };
        assert_eq!(
            odd.check().expect_err("odd rate").fields[0],
            "live.pipe_sample_rate"
        );
        let live = LiveSettings {
            silence_timeout_ms: 30,
            ..LiveSettings::default()
        };
        assert_eq!(
            live.check().expect_err("30 ms").fields[0],
            "live.silence_timeout_ms"
        );
        let relay = RelaySettings {
            backoff_min_ms: 5_000,
            backoff_max_ms: 1_000,
            ..RelaySettings::default()
        };
        assert_eq!(
            relay.check().expect_err("max < min").fields[0],
            "relay.backoff_max_ms"
        );
    }

    #[test]
    fn upstream_names_and_fields_are_checked() {
        let good = UpstreamSettings {
            name: "tinh".to_owned(),
            bundle: "/etc/radio-server/province.toml".into(),
            server: None,
            fallback: None,
            playout_delay_ms: 500,
        };
        let mut upstreams = vec![good.clone()];
        assert_eq!(check_upstreams(&upstreams), Ok(()));
        upstreams.push(good.clone());
        assert_eq!(
            check_upstreams(&upstreams).expect_err("twice").fields[0],
            "upstream[1].name"
        );
        upstreams[1].name = "Tỉnh".to_owned();
        assert_eq!(
            check_upstreams(&upstreams).expect_err("bad name").fields[0],
            "upstream[1].name"
        );
        let upstreams = vec![UpstreamSettings {
            server: Some("no-port".into()),
            ..good
        }];
        assert_eq!(
            check_upstreams(&upstreams).expect_err("bad server").fields[0],
            "upstream[0].server"
        );
    }

    fn with_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    fn rtp_with_key(path: &Path) -> LiveSettings {
        LiveSettings {
            rtp: Some("0.0.0.0:5004".parse().expect("addr")),
            allow: vec!["192.168.1.20".parse().expect("ip")],
            srtp_key_file: Some(path.to_owned()),
            ..LiveSettings::default()
        }
    }

    fn refusal(live: &LiveSettings) -> Invalid {
        live.check().expect_err("refused")
    }

    #[test]
    fn srtp_key_file_must_be_private_and_hold_30_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("live-srtp.key");
        // base64 of bytes 0..30, as `head -c 30 /dev/urandom | base64` writes it.
        std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\n").expect("write");
        with_mode(&path, 0o600);
        let live = rtp_with_key(&path);
        assert_eq!(live.check(), Ok(()));
        let want: [u8; SRTP_KEY_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(read_srtp_key(&path), Ok(want));

        for mode in [0o640, 0o604, 0o620] {
            with_mode(&path, mode);
            let err = refusal(&live);
            assert_eq!(err.fields[0], "live.srtp_key_file");
            assert!(
                err.message
                    .contains(&format!("chmod 600 {}", path.display())),
                "{mode:o}: {}",
                err.message
            );
        }
        with_mode(&path, 0o400);
        assert_eq!(live.check(), Ok(()), "read-only for its owner is fine");

        // 29 bytes, then something that is not base64.
        with_mode(&path, 0o600);
        std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw=").expect("write");
        let err = refusal(&live);
        assert_eq!(err.fields[0], "live.srtp_key_file");
        assert!(err.message.contains("holds 29 bytes"), "{}", err.message);
        std::fs::write(&path, "not a key!").expect("write");
        assert!(refusal(&live).message.contains("is not base64"));

        let missing = rtp_with_key(&dir.path().join("nowhere.key"));
        let err = refusal(&missing);
        assert_eq!(err.fields[0], "live.srtp_key_file");
        assert!(err.message.contains("cannot read"), "{}", err.message);

        let no_rtp = LiveSettings { rtp: None, ..live };
        assert_eq!(refusal(&no_rtp).fields[0], "live.srtp_key_file");
    }

    fn pipe(path: &Path) -> LiveSettings {
        LiveSettings {
            pipe: Some(path.to_owned()),
            ..LiveSettings::default()
        }
    }

    #[test]
    fn a_pipe_anyone_can_write_to_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("studio.pcm");
        let made = std::process::Command::new("mkfifo")
            .args(["-m", "622"])
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let err = refusal(&pipe(&fifo));
        assert_eq!(err.fields[0], "live.pipe");
        assert!(err.message.contains("mode 0622"), "{}", err.message);
        assert!(err.message.contains("chmod o-w"), "{}", err.message);
        assert!(err.message.contains("mkfifo -m 600"), "{}", err.message);

        with_mode(&fifo, 0o600);
        assert_eq!(pipe(&fifo).check(), Ok(()));
        assert_eq!(pipe(&fifo).pipe_permission_warning(), None);
        with_mode(&fifo, 0o660);
        assert_eq!(pipe(&fifo).check(), Ok(()), "group-writable is allowed");
        let warning = pipe(&fifo).pipe_permission_warning().expect("warned");
        assert!(warning.contains("g-w"), "{warning}");

        // A plain file too, and not a path that does not exist yet, nor standard input.
        let file = dir.path().join("recording.pcm");
        std::fs::write(&file, [0u8; 4]).expect("write");
        with_mode(&file, 0o666);
        assert_eq!(refusal(&pipe(&file)).fields[0], "live.pipe");
        assert_eq!(pipe(&dir.path().join("later.pcm")).check(), Ok(()));
        assert_eq!(pipe(Path::new("-")).check(), Ok(()));
    }
}
