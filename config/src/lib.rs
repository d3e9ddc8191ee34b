//! Configuration of the Bình Sơn smart radio system: the district and its commune stations,
//! the settings of `radio-server` and `relay-agent`, and how file, environment and flags
//! combine into them.
//!
//! Every error is a [`ConfigError`] that reads like a compiler diagnostic,
//! `server.toml:12:5: key `bitrate`: must be between 6000 and 510000 (got 900)`, naming the
//! file line, environment variable or `--flag` the operator has to change.
//!
//! # Layout
//!
//! - `district.rs`: [`District`] and [`Station`], loaded from a district TOML file; the Bình Sơn
//!   district (`data/binh-son.toml`) is embedded as the default.
//! - `server.rs`: [`ServerConfig`], the settings of `radio-server`, and their rules.
//! - `agent.rs`: [`AgentConfig`], the settings of `relay-agent`, and [`SinkSpec`], where an
//!   agent plays audio.
//! - `amplifier.rs`: `[amplifier]` of the agent, how the station's amplifiers are switched
//!   (a GPIO line or a command pair, for the box or per output) and their lead and idle times.
//! - `merge.rs`: defaults < file < environment < flags, as the pure [`merge_server`] and
//!   [`merge_agent`], the [`load_server`]/[`load_agent`] wrappers, and the clap flag structs.
//! - `admin_token.rs`: `[[admin_token]]`, admin API tokens with a role (admin, commune operator,
//!   viewer), kept as SHA-256.
//! - `ingest.rs`: the `[live]`, `[relay]` and `[[upstream]]` tables of the server: the
//!   studio input, how HTTP streams are relayed, and upstream radio servers.
//! - `health.rs`: `[health]` of the server, the thresholds of the stations' box health warnings.
//! - `error.rs`: [`ConfigError`] and the shared validation helpers.
//! - `location.rs`: turning TOML byte spans and key paths into lines, columns and keys.
//! - `address.rs`: checking `host:port` addresses that may be DNS names.

mod address;
mod admin_token;
mod agent;
mod amplifier;
mod district;
mod error;
mod health;
mod ingest;
mod location;
mod merge;
mod server;

pub use admin_token::{AdminTokenSettings, Role};
pub use agent::{
    AgentConfig, SinkSpec, SinkSpecError, DEFAULT_AGENT_BUNDLE, DEFAULT_AGENT_STATE_DIR,
    DEFAULT_LOG, DEFAULT_PLAYOUT_DELAY_MS, PLAYOUT_DELAY_MS_RANGE,
};
pub use amplifier::{
    AmplifierConfig, AmplifierOutput, SwitchSpec, BOX_AMPLIFIER,
    DEFAULT_AMPLIFIER_COMMAND_TIMEOUT_SECS, DEFAULT_AMPLIFIER_IDLE_SECS,
    DEFAULT_AMPLIFIER_LEAD_SECS, MAX_AMPLIFIER_NAME,
};
pub use district::{is_slug, District, Station, StationKind, MAX_SLUG_BYTES};
pub use error::ConfigError;
pub use health::{HealthSettings, DEFAULT_MAX_TEMPERATURE_C, DEFAULT_MIN_FREE_DISK_PERCENT};
pub use ingest::{
    check_pipe_permissions, read_srtp_key, LiveSettings, RelaySettings, UpstreamSettings,
    Upstreams, SRTP_KEY_LEN,
};
pub use merge::{
    load_agent, load_server, merge_agent, merge_server, AgentOverrides, ServerOverrides,
    AGENT_CONFIG_ENV, AGENT_ENV_PREFIX, SERVER_CONFIG_ENV, SERVER_ENV_PREFIX,
};
pub use server::{
    ServerConfig, BITRATE_RANGE, DEFAULT_ADMIN_LISTEN, DEFAULT_BITRATE, DEFAULT_CONSOLE_LISTEN,
    DEFAULT_DATA_DIR, DEFAULT_LIBRARY_MAX_UPLOAD_MB, DEFAULT_LISTEN, DEFAULT_PROVINCIAL_STREAM,
    DEFAULT_SERVER_NAME, DEFAULT_TTS_MAX_CHARS, DEFAULT_TTS_TIMEOUT_SECS,
    LIBRARY_MAX_UPLOAD_MB_RANGE, TTS_MAX_CHARS_RANGE, TTS_TIMEOUT_SECS_RANGE,
};
