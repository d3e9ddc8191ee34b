//! Layering of defaults, config file, environment and command line into one configuration.
//!
//! Precedence is command line > environment > file > defaults, field by field. The merge is a
//! pure function of its three inputs so every layer can be tested without touching the
//! process environment; [`load_server`] and [`load_agent`] are the thin impure wrappers.
//!
//! Each field remembers which layer set it, so a rule that fails on the merged result still
//! points at the file line, environment variable or `--flag` the operator has to change.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use crate::agent::{AgentConfig, SinkSpec};
use crate::error::{ConfigError, Invalid};
use crate::location::{error_at_path, parse_toml, toml_error};
use crate::server::ServerConfig;

/// Environment variables of the server are `RADIO_SERVER_<FIELD>`, e.g. `RADIO_SERVER_BITRATE`.
pub const SERVER_ENV_PREFIX: &str = "RADIO_SERVER_";
/// Path of the server's config file, when `--config` is not given.
pub const SERVER_CONFIG_ENV: &str = "RADIO_SERVER_CONFIG";
/// Environment variables of the agent are `RELAY_AGENT_<FIELD>`, e.g. `RELAY_AGENT_SINKS`.
pub const AGENT_ENV_PREFIX: &str = "RELAY_AGENT_";
/// Path of the agent's config file, when `--config` is not given.
pub const AGENT_CONFIG_ENV: &str = "RELAY_AGENT_CONFIG";

/// Fields settable through the environment; kept in step with the structs by a test.
const SERVER_FIELDS: [&str; 17] = [
    "listen",
    "public_address",
    "server_name",
    "data_dir",
    "bitrate",
    "district_file",
    "heartbeat_interval_ms",
    "idle_timeout_ms",
    "max_agents",
    "send_queue_frames",
    "audio_packet_budget",
    "quic_sockets",
    "prefetch_horizon_hours",
    "log",
    "admin_listen",
    "admin_allow_remote",
    "provincial_stream",
];
const AGENT_FIELDS: [&str; 13] = [
    "bundle",
    "server",
    "state_dir",
    "sinks",
    "playout_delay_ms",
    "jitter_capacity_frames",
    "reconnect_min_ms",
    "reconnect_max_ms",
    "journal_heartbeat_secs",
    "journal_max_records",
    "cluster_timeout_secs",
    "prefetch_max_mb",
    "log",
];

/// Command-line flags of `radio-server` that override its configuration.
///
/// Flags deliberately do not use clap's `env` support: the environment is its own layer, read
/// by [`merge_server`], so that typos in variable names are caught and errors say which
/// layer a bad value came from.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc comment above is for rustdoc; without this it would become the binary's `--help` text.
#[command(about = None, long_about = None)]
pub struct ServerOverrides {
    /// Config file (TOML); also RADIO_SERVER_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// QUIC listen address [default: 0.0.0.0:4433].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// host:port written into enrolment bundles [default: derived from --listen].
    #[arg(long)]
    pub public_address: Option<String>,
    /// DNS name in the server certificate [default: localhost].
    #[arg(long)]
    pub server_name: Option<String>,
    /// Directory for keys, enrolments and state [default: /var/lib/radio-server].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Opus bitrate in bits/s, 6000-510000 [default: 32000].
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// District file (TOML) [default: embedded Bình Sơn district].
    #[arg(long)]
    pub district_file: Option<PathBuf>,
    /// tracing filter, e.g. `info,radio_server=debug` [default: info].
    #[arg(long)]
    pub log: Option<String>,
    /// Admin endpoint (HTTP) address; the operator commands call it [default: 127.0.0.1:4480].
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
}

/// Command-line flags of `relay-agent` that override its configuration.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc comment above is for rustdoc; without this it would become the binary's `--help` text.
#[command(about = None, long_about = None)]
pub struct AgentOverrides {
    /// Config file (TOML); also RELAY_AGENT_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Enrolment bundle from `radio-server enroll` [default: /etc/relay-agent/bundle.toml].
    #[arg(long)]
    pub bundle: Option<PathBuf>,
    /// host:port overriding the server address in the bundle.
    #[arg(long)]
    pub server: Option<String>,
    /// Directory for agent state [default: /var/lib/relay-agent].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Audio output, repeatable: rtp:IP:PORT[,sdp=PATH], wav:PATH or pipe:COMMAND.
    /// Replaces (does not extend) sinks from the file or environment.
    #[arg(long = "sink")]
    pub sinks: Vec<SinkSpec>,
    /// Playout delay in ms, 20-10000 [default: 250].
    #[arg(long)]
    pub playout_delay_ms: Option<u32>,
    /// tracing filter [default: info].
    #[arg(long)]
    pub log: Option<String>,
}

/// Merges defaults, an optional `(text, source name)` config file, environment variables and
/// flags, then validates the result.
pub fn merge_server(
    file: Option<(&str, &str)>,
    env: &BTreeMap<String, String>,
    cli: &ServerOverrides,
) -> Result<ServerConfig, ConfigError> {
    let mut layers = Layers::new(file, "radio-server config");
    let mut cfg: ServerConfig = layers.read_file()?.unwrap_or_default();

    for (field, var, value) in
        env_entries(env, SERVER_ENV_PREFIX, SERVER_CONFIG_ENV, &SERVER_FIELDS)?
    {
        match field {
            "listen" => cfg.listen = env_parse(var, value, "an IP:PORT socket address")?,
            "public_address" => cfg.public_address = env_optional(value),
            "server_name" => cfg.server_name = value.to_owned(),
            "data_dir" => cfg.data_dir = value.into(),
            "bitrate" => cfg.bitrate = env_parse(var, value, "bits per second")?,
            "district_file" => cfg.district_file = env_optional(value).map(PathBuf::from),
            "heartbeat_interval_ms" => {
                cfg.heartbeat_interval_ms = env_parse(var, value, "milliseconds")?
            }
            "idle_timeout_ms" => cfg.idle_timeout_ms = env_parse(var, value, "milliseconds")?,
            "max_agents" => cfg.max_agents = env_parse(var, value, "a count")?,
            "send_queue_frames" => cfg.send_queue_frames = env_parse(var, value, "a frame count")?,
            "audio_packet_budget" => {
                cfg.audio_packet_budget = env_parse(var, value, "packets a second")?
            }
            "quic_sockets" => cfg.quic_sockets = env_parse(var, value, "a socket count")?,
            "prefetch_horizon_hours" => {
                cfg.prefetch_horizon_hours = env_parse(var, value, "hours")?
            }
            "log" => cfg.log = value.to_owned(),
            "admin_listen" => {
                cfg.admin_listen = env_parse(var, value, "an IP:PORT socket address")?
            }
            "admin_allow_remote" => {
                cfg.admin_allow_remote = env_parse(var, value, "true or false")?
            }
            "provincial_stream" => cfg.provincial_stream = value.trim().to_owned(),
            _ => return Err(unhandled(var)),
        }
        layers.set(field, Origin::Env(var.to_owned()));
    }

    if let Some(v) = cli.listen {
        cfg.listen = v;
        layers.set("listen", Origin::Cli("--listen"));
    }
    if let Some(v) = &cli.public_address {
        cfg.public_address = Some(v.clone());
        layers.set("public_address", Origin::Cli("--public-address"));
    }
    if let Some(v) = &cli.server_name {
        cfg.server_name = v.clone();
        layers.set("server_name", Origin::Cli("--server-name"));
    }
    if let Some(v) = &cli.data_dir {
        cfg.data_dir = v.clone();
        layers.set("data_dir", Origin::Cli("--data-dir"));
    }
    if let Some(v) = cli.bitrate {
        cfg.bitrate = v;
        layers.set("bitrate", Origin::Cli("--bitrate"));
    }
    if let Some(v) = &cli.district_file {
        cfg.district_file = Some(v.clone());
        layers.set("district_file", Origin::Cli("--district-file"));
    }
    if let Some(v) = &cli.log {
        cfg.log = v.clone();
        layers.set("log", Origin::Cli("--log"));
    }
    if let Some(v) = cli.admin_listen {
        cfg.admin_listen = v;
        layers.set("admin_listen", Origin::Cli("--admin-listen"));
    }

    cfg.check().map_err(|invalid| layers.blame(invalid))?;
    Ok(cfg)
}

/// Merges defaults, an optional `(text, source name)` config file, environment variables and
/// flags, then validates the result.
pub fn merge_agent(
    file: Option<(&str, &str)>,
    env: &BTreeMap<String, String>,
    cli: &AgentOverrides,
) -> Result<AgentConfig, ConfigError> {
    let mut layers = Layers::new(file, "relay-agent config");
    let mut cfg: AgentConfig = layers.read_file()?.unwrap_or_default();

    for (field, var, value) in env_entries(env, AGENT_ENV_PREFIX, AGENT_CONFIG_ENV, &AGENT_FIELDS)?
    {
        match field {
            "bundle" => cfg.bundle = value.into(),
            "server" => cfg.server = env_optional(value),
            "state_dir" => cfg.state_dir = value.into(),
            "sinks" => cfg.sinks = env_sinks(var, value)?,
            "playout_delay_ms" => cfg.playout_delay_ms = env_parse(var, value, "milliseconds")?,
            "jitter_capacity_frames" => {
                cfg.jitter_capacity_frames = env_parse(var, value, "a frame count")?
            }
            "reconnect_min_ms" => cfg.reconnect_min_ms = env_parse(var, value, "milliseconds")?,
            "reconnect_max_ms" => cfg.reconnect_max_ms = env_parse(var, value, "milliseconds")?,
            "journal_heartbeat_secs" => {
                cfg.journal_heartbeat_secs = env_parse(var, value, "seconds")?
            }
            "journal_max_records" => {
                cfg.journal_max_records = env_parse(var, value, "a record count")?
            }
            "cluster_timeout_secs" => cfg.cluster_timeout_secs = env_parse(var, value, "seconds")?,
            "prefetch_max_mb" => cfg.prefetch_max_mb = env_parse(var, value, "megabytes")?,
            "log" => cfg.log = value.to_owned(),
            _ => return Err(unhandled(var)),
        }
        layers.set(field, Origin::Env(var.to_owned()));
    }

    if let Some(v) = &cli.bundle {
        cfg.bundle = v.clone();
        layers.set("bundle", Origin::Cli("--bundle"));
    }
    if let Some(v) = &cli.server {
        cfg.server = Some(v.clone());
        layers.set("server", Origin::Cli("--server"));
    }
    if let Some(v) = &cli.state_dir {
        cfg.state_dir = v.clone();
        layers.set("state_dir", Origin::Cli("--state-dir"));
    }
    if !cli.sinks.is_empty() {
        cfg.sinks = cli.sinks.clone();
        layers.set("sinks", Origin::Cli("--sink"));
    }
    if let Some(v) = cli.playout_delay_ms {
        cfg.playout_delay_ms = v;
        layers.set("playout_delay_ms", Origin::Cli("--playout-delay-ms"));
    }
    if let Some(v) = &cli.log {
        cfg.log = v.clone();
        layers.set("log", Origin::Cli("--log"));
    }

    cfg.check().map_err(|invalid| layers.blame(invalid))?;
    Ok(cfg)
}

/// Reads `cli.config` (else `RADIO_SERVER_CONFIG`) and the process environment, then
/// [`merge_server`]. Without either, runs on defaults, environment and flags alone.
pub fn load_server(cli: &ServerOverrides) -> Result<ServerConfig, ConfigError> {
    let env = process_env(SERVER_ENV_PREFIX)?;
    let file = read_config(cli.config.as_ref(), &env, SERVER_CONFIG_ENV)?;
    merge_server(
        file.as_ref().map(|(t, s)| (t.as_str(), s.as_str())),
        &env,
        cli,
    )
}

/// Reads `cli.config` (else `RELAY_AGENT_CONFIG`) and the process environment, then
/// [`merge_agent`].
pub fn load_agent(cli: &AgentOverrides) -> Result<AgentConfig, ConfigError> {
    let env = process_env(AGENT_ENV_PREFIX)?;
    let file = read_config(cli.config.as_ref(), &env, AGENT_CONFIG_ENV)?;
    merge_agent(
        file.as_ref().map(|(t, s)| (t.as_str(), s.as_str())),
        &env,
        cli,
    )
}

/// Which layer last set a field. Fields absent from the map kept their default.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    File,
    Env(String),
    Cli(&'static str),
}

/// The file (kept for locating keys later) and the origin of every non-default field.
#[derive(Debug)]
struct Layers<'a> {
    file: Option<(&'a str, &'a str)>,
    origins: BTreeMap<String, Origin>,
    /// Names errors about fields nobody set.
    fallback_source: &'static str,
}

impl<'a> Layers<'a> {
    fn new(file: Option<(&'a str, &'a str)>, fallback_source: &'static str) -> Self {
        Layers {
            file,
            origins: BTreeMap::new(),
            fallback_source,
        }
    }

    /// Parses the file, if any, and records the top-level keys it sets.
    fn read_file<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<T>, ConfigError> {
        let Some((text, source)) = self.file else {
            return Ok(None);
        };
        let cfg: T = parse_toml(text, source)?;
        let table: toml::Table = toml::from_str(text).map_err(|e| toml_error(&e, text, source))?;
        for key in table.keys() {
            self.origins.insert(key.clone(), Origin::File);
        }
        Ok(Some(cfg))
    }

    fn set(&mut self, field: &str, origin: Origin) {
        self.origins.insert(field.to_owned(), origin);
    }

    /// Turns a failed rule into an error at the layer the operator should edit: the first
    /// involved field that was set explicitly, else the first field.
    fn blame(&self, invalid: Invalid) -> ConfigError {
        let Invalid { fields, message } = invalid;
        // Keys inside a table (`live.silence_timeout_ms`) come from the file whenever their
        // table does: only top-level keys have an environment variable or a flag.
        let origin = |f: &str| {
            self.origins
                .get(f)
                .or_else(|| self.origins.get(f.split(['.', '[']).next().unwrap_or(f)))
        };
        let field = fields
            .iter()
            .find(|f| origin(f).is_some())
            .or(fields.first())
            .map(String::as_str)
            .unwrap_or_default();
        match (origin(field), self.file) {
            (Some(Origin::File), Some((text, source))) => {
                error_at_path(text, source, field, message)
            }
            (Some(Origin::Env(var)), _) => {
                ConfigError::new("environment", message).with_key(var.as_str())
            }
            (Some(Origin::Cli(flag)), _) => {
                ConfigError::new("command line", message).with_key(*flag)
            }
            // A default broke a rule (e.g. no sinks): the file is where to add the key.
            (_, Some((_, source))) => ConfigError::new(source, message).with_key(field),
            (_, None) => ConfigError::new(self.fallback_source, message).with_key(field),
        }
    }
}

/// The `(field, variable, value)` triples for `prefix`, in variable-name order, refusing any
/// variable with the prefix that names no field: a typo would otherwise be silently ignored.
fn env_entries<'e>(
    env: &'e BTreeMap<String, String>,
    prefix: &str,
    config_var: &str,
    fields: &[&'static str],
) -> Result<Vec<(&'static str, &'e str, &'e str)>, ConfigError> {
    let mut out = Vec::new();
    for (var, value) in env.range(prefix.to_owned()..) {
        let Some(suffix) = var.strip_prefix(prefix) else {
            break;
        };
        if var == config_var {
            continue;
        }
        let Some(field) = fields.iter().find(|f| f.to_ascii_uppercase() == suffix) else {
            let known: Vec<String> = std::iter::once(config_var.to_owned())
                .chain(
                    fields
                        .iter()
                        .map(|f| format!("{prefix}{}", f.to_ascii_uppercase())),
                )
                .collect();
            return Err(ConfigError::new(
                "environment",
                format!("unknown variable; known ones are {}", known.join(", ")),
            )
            .with_key(var.as_str()));
        };
        out.push((*field, var.as_str(), value.as_str()));
    }
    Ok(out)
}

fn env_parse<T>(var: &str, value: &str, what: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value.trim().parse().map_err(|e| {
        ConfigError::new(
            "environment",
            format!("cannot read `{value}` as {what}: {e}"),
        )
        .with_key(var)
    })
}

/// Empty means unset, the usual reading of `VAR=` in service files; it clears a file value.
fn env_optional(value: &str) -> Option<String> {
    (!value.trim().is_empty()).then(|| value.to_owned())
}

/// `;`-separated because sink specs themselves contain `,` (`rtp:…,sdp=…`).
fn env_sinks(var: &str, value: &str) -> Result<Vec<SinkSpec>, ConfigError> {
    value
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, spec)| {
            spec.parse().map_err(|e| {
                ConfigError::new("environment", format!("sink {} `{spec}`: {e}", i + 1))
                    .with_key(var)
            })
        })
        .collect()
}

/// Guards the field tables against drifting from the `match` arms that apply them.
fn unhandled(var: &str) -> ConfigError {
    ConfigError::new("environment", "variable is listed but not applied (a bug)").with_key(var)
}

/// The process environment under `prefix`; a non-UTF-8 value there is an error rather than
/// the panic `std::env::vars` would give.
fn process_env(prefix: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut env = BTreeMap::new();
    for (var, value) in std::env::vars_os() {
        let Some(var) = var.to_str().filter(|v| v.starts_with(prefix)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| {
            ConfigError::new("environment", "value is not valid UTF-8").with_key(var)
        })?;
        env.insert(var.to_owned(), value);
    }
    Ok(env)
}

/// Reads the config file named by the flag, else by the environment; `(text, source name)`.
fn read_config(
    flag: Option<&PathBuf>,
    env: &BTreeMap<String, String>,
    config_var: &str,
) -> Result<Option<(String, String)>, ConfigError> {
    let path = match flag {
        Some(path) => path.clone(),
        None => match env.get(config_var).filter(|v| !v.trim().is_empty()) {
            Some(path) => PathBuf::from(path),
            None => return Ok(None),
        },
    };
    let source = path.display().to_string();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(&source, format!("cannot read config file: {e}")))?;
    Ok(Some((text, source)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    fn wav_sink() -> AgentOverrides {
        AgentOverrides {
            sinks: vec!["wav:/tmp/out.wav".parse().expect("valid sink")],
            ..AgentOverrides::default()
        }
    }

    const SERVER_FILE: &str = "\
# radio-server
listen = \"0.0.0.0:5000\"
server_name = \"radio.binhson.gov.vn\"
bitrate = 24000
log = \"debug\"
";

    // --- defaults ---

    #[test]
    fn server_defaults_when_nothing_is_given() {
        let cfg = merge_server(None, &no_env(), &ServerOverrides::default()).expect("defaults");
        assert_eq!(cfg, ServerConfig::default());
        let cfg = merge_server(
            Some(("", "empty.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect("empty file");
        assert_eq!(cfg, ServerConfig::default());
    }

    #[test]
    fn agent_defaults_apart_from_the_required_sink() {
        let cfg = merge_agent(None, &no_env(), &wav_sink()).expect("defaults");
        assert_eq!(
            cfg,
            AgentConfig {
                sinks: wav_sink().sinks,
                ..AgentConfig::default()
            }
        );
        let err = merge_agent(None, &no_env(), &AgentOverrides::default()).expect_err("no sink");
        assert_eq!(err.key.as_deref(), Some("sinks"));
        assert_eq!(err.source_name, "relay-agent config");
        let err = merge_agent(
            Some(("log = \"info\"\n", "agent.toml")),
            &no_env(),
            &AgentOverrides::default(),
        )
        .expect_err("no sink");
        assert_eq!(err.source_name, "agent.toml");
        assert_eq!(err.key.as_deref(), Some("sinks"));
        assert_eq!(err.line, None);
    }

    // --- precedence ---

    #[test]
    fn server_file_overrides_defaults() {
        let cfg = merge_server(
            Some((SERVER_FILE, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect("valid");
        assert_eq!(cfg.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(cfg.server_name, "radio.binhson.gov.vn");
        assert_eq!(cfg.bitrate, 24_000);
        assert_eq!(cfg.log, "debug");
        assert_eq!(cfg.data_dir, ServerConfig::default().data_dir);
    }

    #[test]
    fn server_env_overrides_file() {
        let e = env(&[
            ("RADIO_SERVER_BITRATE", "48000"),
            ("RADIO_SERVER_DATA_DIR", "/srv/radio"),
            ("RADIO_SERVER_CONFIG", "/ignored/by/merge.toml"),
            ("UNRELATED", "x"),
        ]);
        let cfg = merge_server(
            Some((SERVER_FILE, "server.toml")),
            &e,
            &ServerOverrides::default(),
        )
        .expect("valid");
        assert_eq!(cfg.bitrate, 48_000);
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/radio"));
        assert_eq!(cfg.server_name, "radio.binhson.gov.vn", "file value kept");
    }

    #[test]
    fn server_cli_overrides_env_and_file() {
        let e = env(&[
            ("RADIO_SERVER_BITRATE", "48000"),
            ("RADIO_SERVER_LOG", "warn"),
        ]);
        let cli = ServerOverrides {
            bitrate: Some(64_000),
            listen: Some("127.0.0.1:6000".parse().expect("addr")),
            public_address: Some("radio.example:443".into()),
            ..ServerOverrides::default()
        };
        let cfg = merge_server(Some((SERVER_FILE, "server.toml")), &e, &cli).expect("valid");
        assert_eq!(cfg.bitrate, 64_000);
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:6000");
        assert_eq!(cfg.public_address(), "radio.example:443");
        assert_eq!(cfg.log, "warn", "env beats file where the cli is silent");
    }

    #[test]
    fn every_server_field_has_an_env_var() {
        let e = env(&[
            ("RADIO_SERVER_LISTEN", "10.0.0.1:7000"),
            ("RADIO_SERVER_PUBLIC_ADDRESS", "radio.example:7000"),
            ("RADIO_SERVER_SERVER_NAME", "radio.example"),
            ("RADIO_SERVER_DATA_DIR", "/d"),
            ("RADIO_SERVER_BITRATE", "16000"),
            ("RADIO_SERVER_DISTRICT_FILE", "/d/district.toml"),
            ("RADIO_SERVER_HEARTBEAT_INTERVAL_MS", " 1000 "),
            ("RADIO_SERVER_IDLE_TIMEOUT_MS", "3000"),
            ("RADIO_SERVER_MAX_AGENTS", "22"),
            ("RADIO_SERVER_SEND_QUEUE_FRAMES", "50"),
            ("RADIO_SERVER_PREFETCH_HORIZON_HOURS", "6"),
            ("RADIO_SERVER_LOG", "trace"),
            ("RADIO_SERVER_ADMIN_LISTEN", "0.0.0.0:4481"),
            ("RADIO_SERVER_ADMIN_ALLOW_REMOTE", "true"),
            (
                "RADIO_SERVER_PROVINCIAL_STREAM",
                "http://radio.quangngai.example:8000/qng.mp3",
            ),
        ]);
        let cfg = merge_server(None, &e, &ServerOverrides::default()).expect("valid");
        let expected = ServerConfig {
            listen: "10.0.0.1:7000".parse().expect("addr"),
            public_address: Some("radio.example:7000".into()),
            server_name: "radio.example".into(),
            data_dir: "/d".into(),
            bitrate: 16_000,
            district_file: Some("/d/district.toml".into()),
            heartbeat_interval_ms: 1_000,
            idle_timeout_ms: 3_000,
            max_agents: 22,
            send_queue_frames: 50,
            audio_packet_budget: 25_000,
            quic_sockets: 1,
            prefetch_horizon_hours: 6,
            log: "trace".into(),
            admin_listen: "0.0.0.0:4481".parse().expect("addr"),
            admin_allow_remote: true,
            provincial_stream: "http://radio.quangngai.example:8000/qng.mp3".into(),
            ..ServerConfig::default()
        };
        assert_eq!(cfg, expected);
        // The field table matches the struct: every serialised scalar key is listed (tables
        // such as `[live]` are file-only).
        let table = toml::Table::try_from(&expected).expect("serialises");
        let keys: Vec<&str> = table
            .iter()
            .filter(|(_, value)| !value.is_table())
            .map(|(key, _)| key.as_str())
            .collect();
        let mut fields = SERVER_FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    #[test]
    fn empty_env_value_unsets_an_optional_field() {
        let file = "public_address = \"a.example:1\"\n";
        let e = env(&[("RADIO_SERVER_PUBLIC_ADDRESS", "")]);
        let cfg =
            merge_server(Some((file, "s.toml")), &e, &ServerOverrides::default()).expect("valid");
        assert_eq!(cfg.public_address, None);
    }

    #[test]
    fn agent_layers_in_order() {
        let file = "\
sinks = [\"wav:/file.wav\"]
playout_delay_ms = 350
bundle = \"/file/bundle.toml\"
log = \"debug\"
";
        let e = env(&[
            ("RELAY_AGENT_PLAYOUT_DELAY_MS", "400"),
            (
                "RELAY_AGENT_SINKS",
                "rtp:127.0.0.1:5004,sdp=/tmp/a.sdp; wav:/env.wav",
            ),
            ("RELAY_AGENT_SERVER", "radio.example:4433"),
            ("RELAY_AGENT_LOG", "warn"),
        ]);
        let from_file = merge_agent(
            Some((file, "agent.toml")),
            &no_env(),
            &AgentOverrides::default(),
        )
        .expect("valid");
        assert_eq!(from_file.playout_delay_ms, 350);
        assert_eq!(from_file.sinks.len(), 1);

        let from_env =
            merge_agent(Some((file, "agent.toml")), &e, &AgentOverrides::default()).expect("valid");
        assert_eq!(from_env.playout_delay_ms, 400);
        assert_eq!(
            from_env
                .sinks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["rtp:127.0.0.1:5004,sdp=/tmp/a.sdp", "wav:/env.wav"]
        );
        assert_eq!(from_env.server.as_deref(), Some("radio.example:4433"));
        assert_eq!(from_env.bundle, PathBuf::from("/file/bundle.toml"));

        let cli = AgentOverrides {
            playout_delay_ms: Some(100),
            sinks: vec!["pipe:cat > /dev/null".parse().expect("valid")],
            server: Some("10.0.0.1:4433".into()),
            bundle: Some("/cli/bundle.toml".into()),
            state_dir: Some("/cli/state".into()),
            ..AgentOverrides::default()
        };
        let from_cli = merge_agent(Some((file, "agent.toml")), &e, &cli).expect("valid");
        assert_eq!(from_cli.playout_delay_ms, 100);
        assert_eq!(from_cli.sinks, cli.sinks, "cli sinks replace, not extend");
        assert_eq!(from_cli.server.as_deref(), Some("10.0.0.1:4433"));
        assert_eq!(from_cli.bundle, PathBuf::from("/cli/bundle.toml"));
        assert_eq!(from_cli.state_dir, PathBuf::from("/cli/state"));
        assert_eq!(from_cli.log, "warn");
    }

    #[test]
    fn every_agent_field_has_an_env_var() {
        let e = env(&[
            ("RELAY_AGENT_BUNDLE", "/b.toml"),
            ("RELAY_AGENT_SERVER", "s.example:1"),
            ("RELAY_AGENT_STATE_DIR", "/s"),
            ("RELAY_AGENT_SINKS", "wav:/a.wav"),
            ("RELAY_AGENT_PLAYOUT_DELAY_MS", "100"),
            ("RELAY_AGENT_JITTER_CAPACITY_FRAMES", "20"),
            ("RELAY_AGENT_RECONNECT_MIN_MS", "50"),
            ("RELAY_AGENT_RECONNECT_MAX_MS", "60"),
            ("RELAY_AGENT_JOURNAL_HEARTBEAT_SECS", "5"),
            ("RELAY_AGENT_JOURNAL_MAX_RECORDS", "500"),
            ("RELAY_AGENT_CLUSTER_TIMEOUT_SECS", "45"),
            ("RELAY_AGENT_PREFETCH_MAX_MB", "64"),
            ("RELAY_AGENT_LOG", "trace"),
        ]);
        let cfg = merge_agent(None, &e, &AgentOverrides::default()).expect("valid");
        let expected = AgentConfig {
            bundle: "/b.toml".into(),
            server: Some("s.example:1".into()),
            state_dir: "/s".into(),
            sinks: vec!["wav:/a.wav".parse().expect("valid")],
            playout_delay_ms: 100,
            jitter_capacity_frames: 20,
            reconnect_min_ms: 50,
            reconnect_max_ms: 60,
            journal_heartbeat_secs: 5,
            journal_max_records: 500,
            cluster_timeout_secs: 45,
            prefetch_max_mb: 64,
            log: "trace".into(),
        };
        assert_eq!(cfg, expected);
        let table = toml::Table::try_from(&expected).expect("serialises");
        let keys: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut fields = AGENT_FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(keys, fields);
    }

    // --- file errors ---

    #[test]
    fn unknown_field_in_file_names_line_and_key() {
        let text = "listen = \"0.0.0.0:4433\"\n\nbitrat = 32000\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("typo");
        assert_eq!(err.key.as_deref(), Some("bitrat"));
        assert_eq!((err.line, err.column), (Some(3), Some(1)));
        assert!(
            err.to_string()
                .starts_with("server.toml:3:1: key `bitrat`: unknown field `bitrat`"),
            "{err}"
        );

        let text = "sinks = [\"wav:/a\"]\nplayout = 3\n";
        let err = merge_agent(
            Some((text, "agent.toml")),
            &no_env(),
            &AgentOverrides::default(),
        )
        .expect_err("typo");
        assert_eq!(err.key.as_deref(), Some("playout"));
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn type_error_in_file_names_line_and_key() {
        let text = "listen = \"0.0.0.0:4433\"\nbitrate = \"fast\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("string for u32");
        assert_eq!(err.key.as_deref(), Some("bitrate"));
        assert_eq!((err.line, err.column), (Some(2), Some(11)));
        assert!(err.message.contains("invalid type"), "{err}");

        let text = "listen = \"somewhere\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("bad address");
        assert_eq!(err.key.as_deref(), Some("listen"));
        assert_eq!(err.line, Some(1));
    }

    #[test]
    fn bad_sink_in_file_names_its_element() {
        let text = "log = \"info\"\nsinks = [\n  \"wav:/a.wav\",\n  \"mp3:/b.mp3\",\n]\n";
        let err = merge_agent(
            Some((text, "agent.toml")),
            &no_env(),
            &AgentOverrides::default(),
        )
        .expect_err("bad sink");
        assert_eq!(err.key.as_deref(), Some("sinks[1]"));
        assert_eq!((err.line, err.column), (Some(4), Some(3)));
        assert!(err.message.contains("unknown sink kind `mp3`"), "{err}");
    }

    #[test]
    fn syntax_error_in_file_names_line_and_key() {
        let text = "listen = \"0.0.0.0:4433\"\nbitrate = 32_000_\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("bad number");
        assert_eq!(err.key.as_deref(), Some("bitrate"));
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn validation_error_from_file_names_key_and_line() {
        let text = "listen = \"0.0.0.0:4433\"\n\n\n\n\n\n\n\n\n\n\n    bitrate = 900\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("too low");
        assert_eq!(
            err.to_string(),
            "server.toml:12:15: key `bitrate`: must be between 6000 and 510000 (got 900)"
        );
    }

    #[test]
    fn errors_inside_tables_name_the_dotted_key_and_line() {
        let text = "bitrate = 32000\n\n[live]\nrtp = \"0.0.0.0:5004\"\nallow = [\"127.0.0.1\"]\n\
                    silence_timeout_ms = 30\n\n[[upstream]]\nname = \"tinh\"\nbundle = \"/etc/p.toml\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("30 ms is too short");
        assert_eq!(
            err.to_string(),
            "server.toml:6:22: key `live.silence_timeout_ms`: must be between 1000 and 3600000 \
             (got 30)"
        );
        let text = text.replace("silence_timeout_ms = 30", "silence_timeout_ms = 0");
        let cfg = merge_server(
            Some((&text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect("valid");
        assert_eq!(cfg.live.rtp, Some("0.0.0.0:5004".parse().expect("addr")));
        assert_eq!(cfg.upstreams[0].name, "tinh");
        assert_eq!(cfg.upstreams[0].playout_delay_ms, 500);
        let text = "[[upstream]]\nname = \"tinh\"\nbundle = \"/b.toml\"\n\n[[upstream]]\n\
                    name = \"tinh\"\nbundle = \"/c.toml\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("two upstreams with one name");
        assert!(
            err.to_string()
                .starts_with("server.toml:6:8: key `upstream[1].name`"),
            "{err}"
        );
        let text = "[relay]\nfallback = \"/srv/a.mp3\"\nbackoff_min = 3\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("unknown key");
        assert!(
            err.to_string()
                .starts_with("server.toml:3:1: key `relay.backoff_min`"),
            "{err}"
        );
    }

    #[test]
    fn cross_field_rule_blames_the_field_that_was_set() {
        // Only the heartbeat was set, so the default idle timeout is not the one to blame.
        let text = "log = \"info\"\nheartbeat_interval_ms = 20000\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("idle <= heartbeat");
        assert_eq!(err.key.as_deref(), Some("heartbeat_interval_ms"));
        assert_eq!(err.line, Some(2));
        assert!(err.message.contains("idle_timeout_ms (15000)"), "{err}");

        let text = "idle_timeout_ms = 5000\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("idle <= heartbeat");
        assert_eq!(err.key.as_deref(), Some("idle_timeout_ms"));
        assert_eq!(err.line, Some(1));

        let text = "sinks = [\"wav:/a\"]\nplayout_delay_ms = 10000\n";
        let err = merge_agent(
            Some((text, "agent.toml")),
            &no_env(),
            &AgentOverrides::default(),
        )
        .expect_err("jitter too small");
        assert_eq!(err.key.as_deref(), Some("playout_delay_ms"));
        assert_eq!(err.line, Some(2));
    }

    // --- environment and flag errors ---

    #[test]
    fn unknown_env_var_is_named() {
        let e = env(&[("RADIO_SERVER_BITRATES", "32000")]);
        let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("typo");
        assert_eq!(err.source_name, "environment");
        assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_BITRATES"));
        assert!(err.message.contains("RADIO_SERVER_BITRATE,"), "{err}");

        // Lower-case suffixes are a different variable on Unix, so they are typos too.
        let e = env(&[("RELAY_AGENT_log", "info")]);
        let err = merge_agent(None, &e, &wav_sink()).expect_err("typo");
        assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_log"));
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let e = env(&[("RADIO_SERVER_BITRATE", "fast")]);
        let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not a number");
        assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_BITRATE"));
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with("environment: key `RADIO_SERVER_BITRATE`: cannot read `fast`"),
            "{err}"
        );

        let e = env(&[("RADIO_SERVER_LISTEN", "localhost:4433")]);
        let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not an ip");
        assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_LISTEN"));

        let e = env(&[("RELAY_AGENT_SINKS", "wav:/a.wav;mp3:/b")]);
        let err = merge_agent(None, &e, &AgentOverrides::default()).expect_err("bad sink");
        assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_SINKS"));
        assert!(err.message.starts_with("sink 2 `mp3:/b`"), "{err}");
    }

    /// The variables named in `text` that start with `prefix` (`RADIO_SERVER_*` and
    /// `RADIO_SERVER_…`, which stand for them all, are not names).
    fn variables_named(text: &str, prefix: &str) -> std::collections::BTreeSet<String> {
        let is_name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
        let mut found = std::collections::BTreeSet::new();
        for (i, _) in text.match_indices(prefix) {
            if text[..i].chars().next_back().is_some_and(is_name_char) {
                continue;
            }
            let rest = &text[i..];
            let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
            let name = rest[..end].trim_end_matches('_');
            if name.len() > prefix.trim_end_matches('_').len() {
                found.insert(name.to_owned());
            }
        }
        found
    }

    /// The variables the environment layer reads for `fields`, and the config file's.
    fn variables_read(
        prefix: &str,
        config_var: &str,
        fields: &[&str],
    ) -> std::collections::BTreeSet<String> {
        fields
            .iter()
            .map(|f| format!("{prefix}{}", f.to_ascii_uppercase()))
            .chain([config_var.to_owned()])
            .collect()
    }

    #[test]
    fn the_readme_names_exactly_the_variables_the_environment_layer_reads() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root");
        let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
        for (prefix, config_var, fields) in [
            (SERVER_ENV_PREFIX, SERVER_CONFIG_ENV, &SERVER_FIELDS[..]),
            (AGENT_ENV_PREFIX, AGENT_CONFIG_ENV, &AGENT_FIELDS[..]),
        ] {
            let read = variables_read(prefix, config_var, fields);
            let named = variables_named(&readme, prefix);
            let unread: Vec<&String> = named.difference(&read).collect();
            let unnamed: Vec<&String> = read.difference(&named).collect();
            assert!(
                unread.is_empty(),
                "README.md names {unread:?}, which the environment layer does not read"
            );
            assert!(
                unnamed.is_empty(),
                "the environment layer reads {unnamed:?}, which README.md does not name"
            );
            // The other documents may name fewer, but none that does not exist.
            for doc in std::fs::read_dir(root.join("docs")).expect("docs/") {
                let path = doc.expect("entry").path();
                let text = std::fs::read_to_string(&path).expect("read a document");
                let unread: Vec<String> = variables_named(&text, prefix)
                    .into_iter()
                    .filter(|v| !read.contains(v))
                    .collect();
                assert!(
                    unread.is_empty(),
                    "{} names {unread:?}, which the environment layer does not read",
                    path.display()
                );
            }
        }
    }

    #[test]
    fn variables_are_found_as_whole_names() {
        let text = "`RADIO_SERVER_LOG`, RADIO_SERVER_* and RADIO_SERVER_…; \
                    XRADIO_SERVER_NOT; RADIO_SERVER_BITRATE=32000, RELAY_AGENT_SINKS.";
        let names: Vec<String> = variables_named(text, SERVER_ENV_PREFIX)
            .into_iter()
            .collect();
        assert_eq!(names, ["RADIO_SERVER_BITRATE", "RADIO_SERVER_LOG"]);
        assert_eq!(
            variables_named(text, AGENT_ENV_PREFIX)
                .into_iter()
                .collect::<Vec<_>>(),
            ["RELAY_AGENT_SINKS"]
        );
    }

    #[test]
    fn provincial_stream_from_file_or_environment_is_checked_where_it_was_set() {
        let text = "bitrate = 24000\nprovincial_stream = \"radio.quangngai.example/qng.mp3\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("no scheme");
        assert_eq!(err.line, Some(2), "{err}");
        assert_eq!(err.key.as_deref(), Some("provincial_stream"), "{err}");

        let e = env(&[("RADIO_SERVER_PROVINCIAL_STREAM", "ftp://radio.example/qng")]);
        let err = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
            .expect_err("not http");
        assert_eq!(
            err.key.as_deref(),
            Some("RADIO_SERVER_PROVINCIAL_STREAM"),
            "{err}"
        );

        let e = env(&[(
            "RADIO_SERVER_PROVINCIAL_STREAM",
            "http://radio.quangngai.example:8000/qng.mp3",
        )]);
        let cfg = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
            .expect("the environment wins over the file");
        assert_eq!(
            cfg.provincial_stream,
            "http://radio.quangngai.example:8000/qng.mp3"
        );
    }

    #[test]
    fn validation_error_from_env_or_cli_names_the_variable_or_flag() {
        let text = "bitrate = 24000\n";
        let e = env(&[("RADIO_SERVER_BITRATE", "900")]);
        let err = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
            .expect_err("too low");
        assert_eq!(
            err.to_string(),
            "environment: key `RADIO_SERVER_BITRATE`: must be between 6000 and 510000 (got 900)"
        );

        let cli = ServerOverrides {
            bitrate: Some(900),
            ..ServerOverrides::default()
        };
        let err = merge_server(Some((text, "server.toml")), &e, &cli).expect_err("too low");
        assert_eq!(
            err.to_string(),
            "command line: key `--bitrate`: must be between 6000 and 510000 (got 900)"
        );

        let cli = AgentOverrides {
            playout_delay_ms: Some(5),
            ..wav_sink()
        };
        let err = merge_agent(None, &no_env(), &cli).expect_err("too short");
        assert_eq!(err.key.as_deref(), Some("--playout-delay-ms"));

        let e = env(&[("RELAY_AGENT_SINKS", " ; ")]);
        let err = merge_agent(
            Some(("sinks = [\"wav:/a\"]\n", "agent.toml")),
            &e,
            &AgentOverrides::default(),
        )
        .expect_err("env emptied the sinks");
        assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_SINKS"));
    }

    #[test]
    fn remote_admin_listen_is_blamed_where_it_was_set() {
        let text = "log = \"info\"\nadmin_listen = \"0.0.0.0:4480\"\n";
        let err = merge_server(
            Some((text, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect_err("not loopback");
        assert_eq!(err.key.as_deref(), Some("admin_listen"));
        assert_eq!(err.line, Some(2));

        let allowed = format!("{text}admin_allow_remote = true\n");
        let cfg = merge_server(
            Some((&allowed, "server.toml")),
            &no_env(),
            &ServerOverrides::default(),
        )
        .expect("remote allowed");
        assert!(cfg.admin_allow_remote);

        let cli = ServerOverrides {
            admin_listen: Some("192.168.1.5:4480".parse().expect("addr")),
            ..ServerOverrides::default()
        };
        let err = merge_server(None, &no_env(), &cli).expect_err("not loopback");
        assert_eq!(err.key.as_deref(), Some("--admin-listen"));
        assert_eq!(err.source_name, "command line");

        let e = env(&[("RADIO_SERVER_ADMIN_ALLOW_REMOTE", "yes")]);
        let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not a bool");
        assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_ADMIN_ALLOW_REMOTE"));
    }

    // --- clap and the impure wrappers ---

    #[derive(Debug, clap::Parser)]
    struct ServerCli {
        #[command(flatten)]
        overrides: ServerOverrides,
    }

    #[derive(Debug, clap::Parser)]
    struct AgentCli {
        #[command(flatten)]
        overrides: AgentOverrides,
    }

    #[test]
    fn flags_parse_with_clap() {
        use clap::Parser;
        let cli = ServerCli::try_parse_from([
            "radio-server",
            "--listen",
            "127.0.0.1:1",
            "--public-address",
            "a.example:1",
            "--bitrate",
            "16000",
            "--district-file",
            "/d.toml",
            "--admin-listen",
            "127.0.0.1:4481",
        ])
        .expect("parses");
        assert_eq!(cli.overrides.bitrate, Some(16_000));
        assert_eq!(cli.overrides.public_address.as_deref(), Some("a.example:1"));
        assert_eq!(
            cli.overrides.admin_listen,
            Some("127.0.0.1:4481".parse().expect("addr"))
        );

        let cli = AgentCli::try_parse_from([
            "relay-agent",
            "--sink",
            "rtp:127.0.0.1:5004",
            "--sink",
            "pipe:aplay -q -t raw -f S16_LE -r 48000 -c 1",
            "--playout-delay-ms",
            "100",
        ])
        .expect("parses");
        assert_eq!(cli.overrides.sinks.len(), 2);
        assert_eq!(cli.overrides.sinks[1].kind(), "pipe");

        let err =
            AgentCli::try_parse_from(["relay-agent", "--sink", "mp3:/x"]).expect_err("bad sink");
        assert!(err.to_string().contains("unknown sink kind `mp3`"), "{err}");
    }

    #[test]
    fn load_reads_the_named_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("server.toml");
        std::fs::write(&path, "bitrate = 900\n").expect("write");
        let cli = ServerOverrides {
            config: Some(path.clone()),
            ..ServerOverrides::default()
        };
        let err = load_server(&cli).expect_err("invalid file");
        assert_eq!(err.source_name, path.display().to_string());
        assert_eq!(err.line, Some(1));

        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "sinks = [\"wav:/tmp/a.wav\"]\n").expect("write");
        let cli = AgentOverrides {
            config: Some(path),
            ..AgentOverrides::default()
        };
        // Only asserts what the file sets: the test runner's environment is not ours.
        let cfg = load_agent(&cli).expect("valid file");
        assert_eq!(cfg.sinks.len(), 1);

        let cli = AgentOverrides {
            config: Some(dir.path().join("missing.toml")),
            ..AgentOverrides::default()
        };
        let err = load_agent(&cli).expect_err("missing file");
        assert!(err.message.starts_with("cannot read config file"), "{err}");
    }

    #[test]
    fn config_file_falls_back_to_the_env_var() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, "log = \"x\"\n").expect("write");
        let e = env(&[(AGENT_CONFIG_ENV, path.to_str().expect("utf-8 temp path"))]);
        let (text, source) = read_config(None, &e, AGENT_CONFIG_ENV)
            .expect("readable")
            .expect("named by env");
        assert_eq!(text, "log = \"x\"\n");
        assert_eq!(source, path.display().to_string());
        let flag = dir.path().join("other.toml");
        let err =
            read_config(Some(&flag), &e, AGENT_CONFIG_ENV).expect_err("flag wins, and is missing");
        assert_eq!(err.source_name, flag.display().to_string());
        assert_eq!(read_config(None, &no_env(), AGENT_CONFIG_ENV), Ok(None));
    }
}
