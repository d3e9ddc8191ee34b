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

use crate::agent::{
    AgentConfig, SinkSpec, DEFAULT_AGENT_BUNDLE, DEFAULT_AGENT_STATE_DIR, DEFAULT_LOG,
    DEFAULT_PLAYOUT_DELAY_MS, PLAYOUT_DELAY_MS_RANGE,
};
use crate::error::{ConfigError, Invalid};
use crate::location::{error_at_path, parse_toml, toml_error};
use crate::server::{
    ServerConfig, BITRATE_RANGE, DEFAULT_ADMIN_LISTEN, DEFAULT_BITRATE, DEFAULT_CONSOLE_LISTEN,
    DEFAULT_DATA_DIR, DEFAULT_LIBRARY_MAX_UPLOAD_MB, DEFAULT_LISTEN, DEFAULT_SERVER_NAME,
    DEFAULT_TTS_MAX_CHARS, DEFAULT_TTS_TIMEOUT_SECS, LIBRARY_MAX_UPLOAD_MB_RANGE,
    TTS_MAX_CHARS_RANGE, TTS_TIMEOUT_SECS_RANGE,
};

/// Environment variables of the server are `RADIO_SERVER_<FIELD>`, e.g. `RADIO_SERVER_BITRATE`.
pub const SERVER_ENV_PREFIX: &str = "RADIO_SERVER_";
/// Path of the server's config file, when `--config` is not given.
pub const SERVER_CONFIG_ENV: &str = "RADIO_SERVER_CONFIG";
/// Environment variables of the agent are `RELAY_AGENT_<FIELD>`, e.g. `RELAY_AGENT_SINKS`.
pub const AGENT_ENV_PREFIX: &str = "RELAY_AGENT_";
/// Path of the agent's config file, when `--config` is not given.
pub const AGENT_CONFIG_ENV: &str = "RELAY_AGENT_CONFIG";

/// Fields settable through the environment; kept in step with the structs by a test.
const SERVER_FIELDS: [&str; 25] = [
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
    "console_listen",
    "console_names",
    "console_cert",
    "console_key",
    "library_max_upload_mb",
    "tts_command",
    "tts_timeout_secs",
    "tts_max_chars",
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
    /// QUIC listen address.
    #[arg(long, help = stating_default("QUIC listen address", DEFAULT_LISTEN))]
    pub listen: Option<SocketAddr>,
    /// host:port written into enrolment bundles [default: derived from --listen].
    #[arg(long)]
    pub public_address: Option<String>,
    /// DNS name in the server certificate.
    #[arg(long, help = stating_default("DNS name in the server certificate", DEFAULT_SERVER_NAME))]
    pub server_name: Option<String>,
    /// Directory for keys, enrolments and state.
    #[arg(
        long,
        help = stating_default("Directory for keys, enrolments and state", DEFAULT_DATA_DIR)
    )]
    pub data_dir: Option<PathBuf>,
    /// Opus bitrate in bits/s.
    #[arg(long, help = stating_default(
        format!("Opus bitrate in bits/s, {}-{}", BITRATE_RANGE.0, BITRATE_RANGE.1),
        DEFAULT_BITRATE,
    ))]
    pub bitrate: Option<u32>,
    /// District file (TOML) [default: embedded Bình Sơn district].
    #[arg(long)]
    pub district_file: Option<PathBuf>,
    /// tracing filter, e.g. `info,radio_server=debug`.
    #[arg(
        long,
        help = stating_default("tracing filter, e.g. `info,radio_server=debug`", DEFAULT_LOG)
    )]
    pub log: Option<String>,
    /// Admin endpoint (HTTP) address; the operator commands call it.
    #[arg(long, help = stating_default(
        "Admin endpoint (HTTP) address; the operator commands call it",
        DEFAULT_ADMIN_LISTEN,
    ))]
    pub admin_listen: Option<SocketAddr>,
    /// Console (HTTPS) address: browsers, phones, remote scripts.
    #[arg(long, help = stating_default(
        "Console (HTTPS) address: browsers, phones, remote scripts",
        DEFAULT_CONSOLE_LISTEN,
    ))]
    pub console_listen: Option<SocketAddr>,
    /// Largest upload to the console's audio library, in MB.
    #[arg(long, help = stating_default(
        format!(
            "Largest upload to the console's audio library, in MB, {}-{}",
            LIBRARY_MAX_UPLOAD_MB_RANGE.0, LIBRARY_MAX_UPLOAD_MB_RANGE.1
        ),
        DEFAULT_LIBRARY_MAX_UPLOAD_MB,
    ))]
    pub library_max_upload_mb: Option<u64>,
    /// The text-to-speech engine's argv as a TOML array.
    #[arg(
        long,
        value_name = "ARGV",
        help = "The console's text-to-speech engine as a TOML array of program and arguments, \
                e.g. '[\"piper\", \"--model\", \"/opt/vi.onnx\", \"--output_file\", \"-\"]': \
                it reads the text on stdin and writes audio to stdout, speed in RADIO_TTS_SPEED \
                (empty: espeak-ng's Vietnamese voice)"
    )]
    pub tts_command: Option<String>,
    /// Seconds the speech engine may take for one text.
    #[arg(long, help = stating_default(
        format!(
            "Seconds the text-to-speech engine may take for one text before it is killed, {}-{}",
            TTS_TIMEOUT_SECS_RANGE.0, TTS_TIMEOUT_SECS_RANGE.1
        ),
        DEFAULT_TTS_TIMEOUT_SECS,
    ))]
    pub tts_timeout_secs: Option<u64>,
    /// Longest text to speak, in characters.
    #[arg(long, help = stating_default(
        format!(
            "Longest text the console speaks, in characters, {}-{}",
            TTS_MAX_CHARS_RANGE.0, TTS_MAX_CHARS_RANGE.1
        ),
        DEFAULT_TTS_MAX_CHARS,
    ))]
    pub tts_max_chars: Option<usize>,
}

/// Command-line flags of `relay-agent` that override its configuration.
#[derive(Debug, Clone, Default, clap::Args)]
// The doc comment above is for rustdoc; without this it would become the binary's `--help` text.
#[command(about = None, long_about = None)]
pub struct AgentOverrides {
    /// Config file (TOML); also RELAY_AGENT_CONFIG.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Enrolment bundle from `radio-server enroll`.
    #[arg(long, help = stating_default(
        "Enrolment bundle from `radio-server enroll`",
        DEFAULT_AGENT_BUNDLE,
    ))]
    pub bundle: Option<PathBuf>,
    /// host:port overriding the server address in the bundle.
    #[arg(long)]
    pub server: Option<String>,
    /// Directory for agent state.
    #[arg(long, help = stating_default("Directory for agent state", DEFAULT_AGENT_STATE_DIR))]
    pub state_dir: Option<PathBuf>,
    /// Audio output, repeatable: rtp:IP:PORT[,sdp=PATH], wav:PATH or pipe:COMMAND.
    /// Replaces (does not extend) sinks from the file or environment.
    #[arg(long = "sink")]
    pub sinks: Vec<SinkSpec>,
    /// Playout delay in ms.
    #[arg(long, help = stating_default(
        format!(
            "Playout delay in ms, {}-{}",
            PLAYOUT_DELAY_MS_RANGE.0, PLAYOUT_DELAY_MS_RANGE.1
        ),
        DEFAULT_PLAYOUT_DELAY_MS,
    ))]
    pub playout_delay_ms: Option<u32>,
    /// tracing filter.
    #[arg(long, help = stating_default("tracing filter", DEFAULT_LOG))]
    pub log: Option<String>,
}

/// A flag's help that states its default, from the constant the default itself is: the
/// flags are `Option`s (the default is the lowest layer of the merge, not clap's), so clap
/// cannot show it, and a default written into the text by hand goes stale.
fn stating_default(help: impl Display, default: impl Display) -> String {
    format!("{help} [default: {default}]")
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
            "console_listen" => {
                cfg.console_listen = env_parse(var, value, "an IP:PORT socket address")?
            }
            "console_names" => {
                cfg.console_names = value
                    .split(',')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "console_cert" => cfg.console_cert = env_optional(value).map(PathBuf::from),
            "console_key" => cfg.console_key = env_optional(value).map(PathBuf::from),
            "library_max_upload_mb" => {
                cfg.library_max_upload_mb = env_parse(var, value, "megabytes")?
            }
            "tts_command" => {
                cfg.tts_command =
                    argv(value).map_err(|m| ConfigError::new("environment", m).with_key(var))?
            }
            "tts_timeout_secs" => cfg.tts_timeout_secs = env_parse(var, value, "seconds")?,
            "tts_max_chars" => cfg.tts_max_chars = env_parse(var, value, "a character count")?,
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
    if let Some(v) = cli.console_listen {
        cfg.console_listen = v;
        layers.set("console_listen", Origin::Cli("--console-listen"));
    }
    if let Some(v) = cli.library_max_upload_mb {
        cfg.library_max_upload_mb = v;
        layers.set(
            "library_max_upload_mb",
            Origin::Cli("--library-max-upload-mb"),
        );
    }
    if let Some(v) = &cli.tts_command {
        cfg.tts_command =
            argv(v).map_err(|m| ConfigError::new("command line", m).with_key("--tts-command"))?;
        layers.set("tts_command", Origin::Cli("--tts-command"));
    }
    if let Some(v) = cli.tts_timeout_secs {
        cfg.tts_timeout_secs = v;
        layers.set("tts_timeout_secs", Origin::Cli("--tts-timeout-secs"));
    }
    if let Some(v) = cli.tts_max_chars {
        cfg.tts_max_chars = v;
        layers.set("tts_max_chars", Origin::Cli("--tts-max-chars"));
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

/// A command's argv from the environment or a flag: a TOML array of strings, as in the file
/// (`["piper", "--model", "/opt/vi.onnx"]`), since arguments may hold spaces and commas; empty
/// means unset.
fn argv(value: &str) -> Result<Vec<String>, String> {
    if value.trim().is_empty() {
        return Ok(Vec::new());
    }
    let wrapped = format!("argv = {value}");
    let how =
        "write it as a TOML array of strings, e.g. [\"piper\", \"--model\", \"/opt/vi.onnx\"]";
    let table: toml::Table = toml::from_str(&wrapped).map_err(|e| {
        format!(
            "cannot read `{value}` as a command: {how} ({})",
            e.message()
        )
    })?;
    match table.get("argv") {
        Some(toml::Value::Array(items)) if table.len() == 1 => items
            .iter()
            .map(|v| match v {
                toml::Value::String(s) => Ok(s.clone()),
                other => Err(format!("`{other}` in `{value}` is not a string: {how}")),
            })
            .collect(),
        _ => Err(format!("cannot read `{value}` as a command: {how}")),
    }
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
mod tests;
