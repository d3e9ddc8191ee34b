//! `radio-server`: the district server's command line. See the `radio_server` crate docs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, Parser, Subcommand};
use radio_config::ServerOverrides;
use radio_server::broadcast::on_air::{file_bulletin, play_bulletin};
use radio_server::demo::{run_demo, DemoOptions, KeepRunning};
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::ingest::relay_probe::{self, RelayProbes, StreamOrigin};
use radio_server::link::server::{self, Server};
use radio_server::operator::admin::{
    self, AdminState, BulletinRequest, EmergencyRequest, LiveStart,
};
use radio_server::operator::admin_client::{render_schedule, render_status, AdminClient};
use radio_server::operator::https;
use radio_server::records::store::Store;
use radio_server::report::{Format, Granularity, ReportKind, ReportQuery, ReportRequest};
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::{load_timezone, Level, Schedule, ScheduleEntry, SourceSpec, Targets};
use relay_agent::process::{init_tracing, shutdown_signal};
use tokio::sync::watch;

/// Exit status when a task the audio depends on died (`EX_SOFTWARE`): the process is broken and
/// must be restarted, not left running silent.
const EXIT_AUDIO_TASK_DIED: i32 = 70;

/// Who may send live RTP when `--live-rtp` is given and nothing else says: the machine itself.
const DEFAULT_LIVE_ALLOW: std::net::IpAddr = std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

/// Central server of the smart radio broadcast system: encodes programmes once to Opus and
/// streams them over QUIC to the relay agents of every commune station.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Run {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Play this programme file (once every --wait-agents agents are connected).
        #[arg(long)]
        programme: Option<PathBuf>,
        /// Wait for this many agents before playing the programme.
        #[arg(long, default_value_t = 0)]
        wait_agents: usize,
        /// Play the programme again and again.
        #[arg(long)]
        repeat: bool,
        /// The schedule (TOML, see docs/SCHEDULING.md); it replaces the stored one. Default: the
        /// stored schedule (as last changed with `radio-server schedule`), else the embedded Bình
        /// Sơn schedule (the config's `provincial_stream`, relayed 05:00–07:00 and 17:00–19:00).
        #[arg(long, conflicts_with = "no_schedule")]
        schedule: Option<PathBuf>,
        /// Run without any timed schedule; the stored one is left as it is, until a schedule
        /// change replaces it.
        #[arg(long)]
        no_schedule: bool,
        /// Take live studio RTP (Opus or L16) on ADDR:PORT; it goes on air at every station by
        /// itself while packets arrive (and `radio-server live start` can target it).
        #[arg(long, value_name = "ADDR:PORT")]
        live_rtp: Option<std::net::SocketAddr>,
        #[arg(long, value_delimiter = ',', help = format!(
            "Senders allowed to send live RTP (comma-separated addresses); others are dropped \
             and counted. Overrides `allow` in the config's [live] table [default with \
             --live-rtp and no [live] allow: {}]",
            DEFAULT_LIVE_ALLOW
        ))]
        live_allow: Vec<std::net::IpAddr>,
        /// Accept only SRTP (AES_CM_128_HMAC_SHA1_80) under the key in this file (base64 of
        /// 30 bytes, mode 0600). Overrides `srtp_key_file` in the config's [live] table.
        #[arg(long, value_name = "FILE")]
        live_srtp_key_file: Option<PathBuf>,
    },
    /// Send bulletins and accept them (asks the running server).
    Bulletin {
        #[command(subcommand)]
        action: BulletinCommand,
    },
    /// Console accounts: add, list, disable, enable, role, new password (asks the running
    /// server).
    User {
        #[command(subcommand)]
        action: UserCommand,
    },
    /// The audio library: recordings uploaded to the server, to air by their path (asks the
    /// running server).
    Library {
        #[command(subcommand)]
        action: LibraryCommand,
    },
    /// Put the live input on air, or take it off (asks the running server).
    Live {
        #[command(subcommand)]
        action: LiveCommand,
    },
    /// Break in at once with an emergency (khẩn cấp), or stop one (asks the running server).
    Emergency(EmergencyArgs),
    /// Show or change the timed schedule of the running server (stored: it survives restarts).
    Schedule {
        #[command(subcommand)]
        action: ScheduleCommand,
    },
    /// District reports from the stations' journals, per station and day, month or year:
    /// `uptime` (availability, outages, hours on air) or `plays` (programmes played). Asks the
    /// running server; docs/REPORTS.md explains every figure.
    Report {
        #[command(subcommand)]
        kind: ReportCommand,
    },
    /// The audit log: every on-air change (live, emergency, schedule, bulletins), who asked,
    /// from where, and how it ended (asks the running server).
    Audit(AuditArgs),
    /// What every station airs now, and the emergencies running (asks the running server).
    Status {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
    /// Enrol an agent: write its bundle (CA certificate, its own certificate and key, server address).
    Enroll {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Commune (station) id, e.g. binh-trung.
        #[arg(long)]
        commune: String,
        /// Where to write the bundle (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke a station's certificates: the running server refuses them at the handshake and
    /// closes the station's open connection within a second. `enroll` then issues a new one.
    Revoke {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Commune (station) id, e.g. binh-trung.
        commune: String,
        /// Revoke only this certificate (16 hex digits, see `certificates`), e.g. the old one
        /// after a renewal; default: every certificate issued to the station so far.
        #[arg(long, value_parser = parse_serial)]
        serial: Option<u64>,
        /// Why, for the record (e.g. "bundle stolen").
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List every station certificate: serial, issued, expires, days left, and whether it is
    /// valid, expiring (within 90 days), expired, revoked or superseded by a newer one.
    Certificates {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the uptime journal records an agent uploaded, one per line (journal id, sequence,
    /// Unix ms, event), and the server's own view of its link. Reads the store: the server
    /// must be stopped.
    Journal {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The station (agent) id.
        #[arg(long)]
        agent: String,
    },
    /// Make an admin API token with a role and print it with its `[[admin_token]]` table for
    /// the server's config (which keeps only the token's SHA-256).
    Token {
        /// Who will hold it, e.g. can-bo-binh-trung.
        #[arg(long)]
        name: String,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// The station of a commune operator.
        #[arg(long, required_if_eq("role", "operator"))]
        station: Option<String>,
    },
    /// Back up the data directory (store, district CA and enrolments, revocation list, admin
    /// token, audio library) into one tar file, checked before it is kept (mode 0600: it holds
    /// the CA's key). A running server takes the snapshot itself, consistent while it airs;
    /// when none runs, this command opens the data directory itself.
    Backup(BackupArgs),
    /// Restore a backup into an empty or new data directory (the config's, or --data-dir).
    /// A damaged or cut-short archive is refused and nothing is written.
    Restore {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The archive `radio-server backup` wrote.
        file: PathBuf,
    },
    /// List the district's stations.
    Stations {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
    /// Print the admin API's OpenAPI 3.1 description (JSON), generated from the routes and
    /// their roles; a running server serves the same at /api/v1/openapi.json.
    Openapi,
    /// Write the man pages and shell completions into DIR (for the packages).
    #[command(hide = true)]
    Manual {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Run the server and one agent per Bình Sơn station on this machine and play a programme.
    Demo {
        /// Play at most this many seconds of the programme.
        #[arg(long)]
        duration: Option<u64>,
        /// Run the first N stations.
        #[arg(long, default_value_t = 22)]
        agents: usize,
        /// Programme file (default: a bundled Vietnamese sample announcement).
        #[arg(long)]
        programme: Option<PathBuf>,
        /// Output directory: <station>.wav and <station>.sdp per agent. Open an SDP with a
        /// player while the demo plays to hear that station, e.g. `ffplay -nodisp
        /// -protocol_whitelist file,udp,rtp -i demo-out/binh-trung.sdp`.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Opus bitrate in bits per second.
        #[arg(long, default_value_t = radio_config::DEFAULT_BITRATE)]
        bitrate: u32,
        /// Log filter for the demo (server and agents). By default the agents' refused RTP
        /// sends are not shown: nothing listens on a station's receiver port until a player
        /// opens its SDP, and each agent says once that its receiver (cluster c01) is down.
        #[arg(long, default_value = "warn,relay_agent::sink::rtp=error")]
        log: String,
        /// Accept live studio RTP (Opus or L16) on ADDR:PORT from 127.0.0.1; it pre-empts the
        /// programme while packets arrive and the programme resumes after.
        #[arg(long, value_name = "ADDR:PORT")]
        live_rtp: Option<std::net::SocketAddr>,
        #[arg(long, value_name = "URL", conflicts_with = "programme", help = format!(
            "Relay this HTTP/Icecast stream (MP3, AAC, Ogg) as the programme instead of a file \
             for --duration seconds [default: {}]",
            radio_server::demo::DEFAULT_RELAY_SECS
        ))]
        relay: Option<String>,
        /// After the programme and its table, keep the server and every agent running, with
        /// the web console and the admin endpoint, until Ctrl-C: a working district to try the
        /// console on. The first admin's password is printed once.
        #[arg(long)]
        keep_running: bool,
        /// With --keep-running: where the HTTPS console listens (certificate from the district
        /// CA, for localhost and 127.0.0.1).
        #[arg(long, value_name = "ADDR:PORT", default_value = radio_server::demo::DEFAULT_CONSOLE_LISTEN)]
        console_listen: std::net::SocketAddr,
        /// With --keep-running: where the plain admin endpoint listens (the operator commands'
        /// side; callers on this machine only).
        #[arg(long, value_name = "ADDR:PORT", default_value = radio_server::demo::DEFAULT_ADMIN_LISTEN)]
        admin_listen: std::net::SocketAddr,
        /// Server data directory (district CA, bundles, and with --keep-running the console's
        /// accounts); by default a temporary one, removed at the end.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
    /// Write the archive to FILE.
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "dir",
        conflicts_with = "dir"
    )]
    out: Option<PathBuf>,
    /// Write it into DIR as radio-server-YYYYMMDDTHHMMSSZ.tar (UTC), as the nightly timer does.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// With --dir: keep the newest N backups there and delete the older ones.
    #[arg(long, value_name = "N", requires = "dir", value_parser = clap::value_parser!(u32).range(1..))]
    keep: Option<u32>,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Per station: availability %, outages (how many, total, longest, mean time to repair),
    /// hours on air, programmes played and seconds aired; plus the district.
    Uptime(ReportArgs),
    /// Per station and programme: how many times it played and the seconds aired.
    Plays(ReportArgs),
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
    /// First day, included (a local date, YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    from: jiff::civil::Date,
    /// Last day, included (a local date, YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    to: jiff::civil::Date,
    /// One column per `day`, `month` or `year` (in the district's time zone).
    #[arg(long, value_name = "day|month|year", default_value = "year")]
    by: Granularity,
    /// `table`, `csv` (UTF-8 with a byte order mark, for Excel) or `json`.
    #[arg(long, value_name = "table|csv|json", default_value = "table")]
    format: Format,
    /// Uptime only: a row for every loudspeaker cluster under its station's.
    #[arg(long)]
    clusters: bool,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
    /// First day, included (a local date, YYYY-MM-DD) [default: the first record].
    #[arg(long, value_name = "DATE")]
    from: Option<jiff::civil::Date>,
    /// Last day, included (a local date, YYYY-MM-DD) [default: the last record].
    #[arg(long, value_name = "DATE")]
    to: Option<jiff::civil::Date>,
    /// Only the changes asked by this caller (its exact name, e.g. `district`).
    #[arg(long, value_name = "NAME")]
    actor: Option<String>,
    /// Only this action, as the log writes it, e.g. `bulletin-decline`.
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,
    /// Only the changes whose targets include this station.
    #[arg(long, value_name = "STATION")]
    station: Option<String>,
    /// Only the changes done, or only those refused.
    #[arg(long, value_name = "done|refused")]
    outcome: Option<String>,
    /// `table`, `csv` (UTF-8 with a byte order mark, for Excel) or `json`.
    #[arg(long, value_name = "table|csv|json", default_value = "table")]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum LiveCommand {
    /// Start a live broadcast (trực tiếp): it interrupts everything below emergencies.
    Start {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the broadcast.
        #[arg(long, help = format!("Id of the broadcast [default: {}]", admin::DEFAULT_LIVE_ID))]
        id: Option<String>,
        #[command(flatten)]
        targets: TargetArgs,
    },
    /// Stop a live broadcast; what it interrupted resumes (`--id console` stops whoever is
    /// speaking from the console).
    Stop {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the broadcast.
        #[arg(long, help = format!("Id of the broadcast [default: {}]", admin::DEFAULT_LIVE_ID))]
        id: Option<String>,
    },
    /// Who is speaking live from the console now, where, and since when.
    Who {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
}

#[derive(Debug, Subcommand)]
enum ScheduleCommand {
    /// List the timed entries (times are local, in the schedule's zone).
    List {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
    /// Add one timed entry from a TOML file (the fields of one [[entries]] table, see
    /// docs/SCHEDULING.md); relative file paths in it are taken from the file's directory.
    Add {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The entry (TOML).
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a timed entry.
    Remove {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the entry.
        id: String,
    },
}

/// Roles of `radio-server token`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum TokenRole {
    /// Everything.
    Admin,
    /// One commune station: read, and accept normal bulletins for it.
    Operator,
    /// Read only.
    Viewer,
}

#[derive(Debug, clap::Subcommand)]
enum UserCommand {
    /// Create a console account. The password is asked for (twice) on a terminal, or read
    /// from the first line of standard input with --password-stdin.
    Add {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The name to sign in with: lowercase letters, digits, `.`, `-`, `_`.
        name: String,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A commune an operator runs (repeat for several).
        #[arg(long = "commune", required_if_eq("role", "operator"))]
        communes: Vec<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
    /// Sign an account out everywhere and keep it out.
    Disable {
        #[command(flatten)]
        overrides: ServerOverrides,
        name: String,
    },
    /// Let a disabled account sign in again.
    Enable {
        #[command(flatten)]
        overrides: ServerOverrides,
        name: String,
    },
    /// Give an account another role (signs it out everywhere).
    Role {
        #[command(flatten)]
        overrides: ServerOverrides,
        name: String,
        #[arg(long, value_enum)]
        role: TokenRole,
        /// A commune an operator runs (repeat for several).
        #[arg(long = "commune", required_if_eq("role", "operator"))]
        communes: Vec<String>,
    },
    /// Set a new password (signs the account out everywhere).
    Password {
        #[command(flatten)]
        overrides: ServerOverrides,
        name: String,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum LibraryCommand {
    /// Upload a recording (MP3, M4A/AAC, Ogg or WebM Opus, Ogg Vorbis, WAV, FLAC). The server
    /// decodes all of it first and refuses what is not audio, damaged or cut short.
    Add {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The recording.
        file: PathBuf,
        /// The name staff see [default: the file's name].
        #[arg(long)]
        name: Option<String>,
    },
    /// List the recordings: id, name, length, level, format and the path to air them by.
    List {
        #[command(flatten)]
        overrides: ServerOverrides,
    },
    /// Give a recording another name.
    Rename {
        #[command(flatten)]
        overrides: ServerOverrides,
        id: String,
        name: String,
    },
    /// Delete a recording (refused while the schedule, a bulletin or an emergency plays it).
    Delete {
        #[command(flatten)]
        overrides: ServerOverrides,
        id: String,
    },
    /// Speak a Vietnamese text (espeak-ng, or the config's tts_command) and keep it as a
    /// recording. The text is read aloud as it is, even if it starts with `-`.
    Say {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// The name staff see.
        #[arg(long)]
        name: String,
        /// Words per minute.
        #[arg(long, help = format!(
            "Words per minute, {}-{} [default: {}]",
            radio_server::library::tts::SPEED_RANGE.0,
            radio_server::library::tts::SPEED_RANGE.1,
            radio_server::library::tts::DEFAULT_SPEED,
        ))]
        speed: Option<u32>,
        /// The text; read from stdin when absent or `-` (put `--` before a text that starts
        /// with `-`).
        text: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum BulletinCommand {
    /// Send a bulletin to stations. A normal one (thường) waits until each commune operator
    /// accepts it; a priority one (ưu tiên) airs at the end of the item on air.
    Submit(BulletinArgs),
    /// Withdraw a bulletin everywhere; where it airs, what it interrupted resumes.
    Cancel {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the bulletin.
        id: String,
    },
    /// Accept a normal bulletin at a station (the commune operator's decision).
    Accept {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the bulletin.
        id: String,
        /// The station that accepts it.
        #[arg(long)]
        station: String,
        /// Not before this time: HH:MM today (the schedule's time zone) or an RFC 3339
        /// timestamp [default: at once].
        #[arg(long, value_name = "HH:MM")]
        at: Option<String>,
    },
    /// Decline a normal bulletin at a station: it never airs there (priority ones cannot be).
    Decline {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Id of the bulletin.
        id: String,
        /// The station that declines it.
        #[arg(long)]
        station: String,
        /// Why, for the district.
        #[arg(long)]
        reason: Option<String>,
    },
    /// The bulletins queued and where each stands at its stations: awaiting an answer,
    /// accepted, declined, airing, done, or queued (priority).
    List {
        #[command(flatten)]
        overrides: ServerOverrides,
        /// Only this station.
        #[arg(long)]
        station: Option<String>,
        /// Print the server's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// The TT39 levels a bulletin can have; emergencies have their own command.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum BulletinLevel {
    /// thường: each commune operator decides.
    Normal,
    /// ưu tiên: goes first, without acceptance.
    Priority,
}

#[derive(Debug, clap::Args)]
struct BulletinArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
    /// Id of the bulletin (lowercase letters, digits and hyphens), e.g. ban-tin-phong-chong-bao.
    #[arg(long)]
    id: String,
    /// The recording (a file the server can read).
    #[arg(long, required_unless_present = "url", conflicts_with = "url")]
    file: Option<PathBuf>,
    /// A stream to relay instead of a recording (http:// or https://), for --duration.
    #[arg(long, requires = "duration")]
    url: Option<String>,
    /// Name shown to operators [default: the file's name, or the URL].
    #[arg(long)]
    name: Option<String>,
    #[arg(long, value_enum, default_value = "normal")]
    level: BulletinLevel,
    #[command(flatten)]
    targets: TargetArgs,
    /// Longest airtime, e.g. `10m` or `1h 30m` [default: a recording's own length].
    #[arg(long)]
    duration: Option<jiff::SignedDuration>,
}

/// Who hears a live broadcast or an emergency.
#[derive(Debug, clap::Args)]
struct TargetArgs {
    /// Station ids, comma-separated [default: all stations].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "STATION,...",
        conflicts_with = "groups"
    )]
    targets: Vec<String>,
    /// Groups of the schedule, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "GROUP,...")]
    groups: Vec<String>,
}

impl TargetArgs {
    fn targets(self) -> Option<Targets> {
        if !self.targets.is_empty() {
            Some(Targets::Stations(self.targets))
        } else if !self.groups.is_empty() {
            Some(Targets::Groups(self.groups))
        } else {
            None
        }
    }

    fn given(&self) -> bool {
        !self.targets.is_empty() || !self.groups.is_empty()
    }
}

#[derive(Debug, clap::Args)]
struct EmergencyArgs {
    #[command(flatten)]
    overrides: ServerOverrides,
    /// The recording to broadcast (a file the server can read).
    #[arg(long, required_unless_present_any = ["url", "stop"], conflicts_with_all = ["url", "stop"])]
    file: Option<PathBuf>,
    /// A stream to relay instead of a recording (http:// or https://).
    #[arg(long, conflicts_with = "stop")]
    url: Option<String>,
    /// Name shown in the status [default: the file's name].
    #[arg(long, conflicts_with = "stop")]
    name: Option<String>,
    /// Id of the emergency [default: generated from the time, and printed].
    #[arg(long, conflicts_with = "stop")]
    id: Option<String>,
    #[command(flatten)]
    targets: TargetArgs,
    #[arg(long, conflicts_with = "stop", help = format!(
        "Play the recording this many times, then end [default: {}]",
        admin::DEFAULT_EMERGENCY_REPEAT
    ))]
    repeat: Option<u32>,
    /// Stop the emergency with this id instead; what it interrupted resumes.
    #[arg(long, value_name = "ID")]
    stop: Option<String>,
}

/// Standard output went away under a command (`radio-server stations | head`): the reader has
/// what it wanted, so the command ends there, quietly and successfully.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
struct ReaderGone;

/// Writes a command's output. Rust ignores SIGPIPE, so a reader that went away shows up here
/// as `BrokenPipe` (which `println!` would turn into a panic); any other failure is an error.
fn write_out(text: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_fmt(text).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(ReaderGone.into()),
        Err(e) => Err(anyhow::Error::new(e).context("cannot write to standard output")),
    }
}

/// Writes a note for the operator on standard error. Nothing can be said about a failure to
/// say it, so failures (a closed stderr) are ignored rather than panicking like `eprintln!`.
fn write_note(text: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_fmt(text);
}

/// `print!` through [`write_out`]; returns from the command when the reader went away.
macro_rules! out {
    ($($arg:tt)*) => {
        write_out(format_args!($($arg)*))?
    };
}

/// `println!` through [`write_out`].
macro_rules! outln {
    ($($arg:tt)*) => {
        write_out(format_args!("{}\n", format_args!($($arg)*)))?
    };
}

/// `eprintln!` through [`write_note`].
macro_rules! note {
    ($($arg:tt)*) => {
        write_note(format_args!("{}\n", format_args!($($arg)*)))
    };
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) if e.is::<ReaderGone>() => std::process::ExitCode::SUCCESS,
        Err(e) => {
            note!("radio-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A certificate serial as `certificates` prints it: hex, 16 digits or fewer.
fn parse_serial(text: &str) -> Result<u64, String> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16).map_err(|_| {
        format!(
            "`{text}` is not a certificate serial (hex digits, see `radio-server certificates`)"
        )
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Run {
            overrides,
            programme,
            wait_agents,
            repeat,
            schedule,
            no_schedule,
            live_rtp,
            live_allow,
            live_srtp_key_file,
        } => {
            let config = radio_config::load_server(&overrides)?;
            init_tracing(&config.log);
            runtime()?.block_on(run_server(
                config,
                RunOptions {
                    programme,
                    wait_agents,
                    repeat,
                    schedule,
                    no_schedule,
                    live_rtp,
                    live_allow,
                    live_srtp_key_file,
                },
            ))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Enroll {
            overrides,
            commune,
            out,
        } => {
            let config = radio_config::load_server(&overrides)?;
            let district = config.district()?;
            let Some(station) = district.station(&commune) else {
                bail!(
                    "unknown commune `{commune}`: not a station of {} (see `radio-server stations`)",
                    district.name
                );
            };
            let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name)?;
            let bundle = ca.enroll(
                &station.id,
                &station.name,
                &config.public_address(),
                &config.server_name,
            )?;
            bundle.save(&out)?;
            outln!(
                "enrolled {} ({}): bundle written to {} (keep it secret: it holds the agent's key)",
                station.id,
                station.name,
                out.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Revoke {
            overrides,
            commune,
            serial,
            reason,
        } => {
            let config = radio_config::load_server(&overrides)?;
            let ca_dir = config.data_dir.join("ca");
            let revoked = radio_server::identity::revocation_list::revoke(
                &ca_dir,
                &commune,
                serial,
                &reason,
                jiff::Timestamp::now(),
            )?;
            if revoked.is_empty() {
                outln!("{commune}: already revoked; nothing changed");
            } else {
                for r in &revoked {
                    outln!("revoked {} certificate {:016x}", r.commune, r.serial);
                }
                outln!(
                    "a running server refuses it from now on and closes its connection within a \
                     second; `radio-server enroll --commune {commune}` issues a new certificate"
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Certificates { overrides, json } => {
            let config = radio_config::load_server(&overrides)?;
            let all = radio_server::identity::certificate_expiry::certificates(
                &config.data_dir.join("ca"),
                jiff::Timestamp::now(),
            )?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                outln!(
                    "{:<24} {:<16}  {:<10}  {:<10}  {:>9}  state",
                    "station",
                    "serial",
                    "issued",
                    "expires",
                    "days left"
                );
                for c in &all {
                    let day = |t: jiff::Timestamp| t.strftime("%Y-%m-%d").to_string();
                    outln!(
                        "{:<24} {:<16}  {:<10}  {:<10}  {:>9}  {}",
                        c.commune,
                        c.serial,
                        day(c.issued_at),
                        c.expires_at.map(day).unwrap_or_else(|| "?".into()),
                        c.days_left
                            .map(|d| d.to_string())
                            .unwrap_or_else(|| "?".into()),
                        serde_json::to_value(c.state)?.as_str().unwrap_or("?"),
                    );
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Journal { overrides, agent } => {
            let config = radio_config::load_server(&overrides)?;
            let store = Store::open(&config.data_dir)?;
            for r in store.uptime().records(&agent)? {
                outln!(
                    "{}\t{}\t{}\t{:?}",
                    r.journal_id,
                    r.record.seq,
                    r.record.unix_ms,
                    r.record.event
                );
            }
            for l in store.uptime().links(&agent)? {
                outln!(
                    "link\t{}\t{}\t{}\t{}",
                    l.unix_ms,
                    if l.up { "up" } else { "down" },
                    l.server_run
                        .map_or_else(|| "-".to_owned(), |run| format!("run {run:016x}")),
                    l.reason
                );
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Token {
            name,
            role,
            station,
        } => {
            use sha2::Digest;
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            let hash: String = sha2::Sha256::digest(token.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            let role = match role {
                TokenRole::Admin => "admin",
                TokenRole::Operator => "operator",
                TokenRole::Viewer => "viewer",
            };
            note!("Give this token to {name}; it is shown once and is not stored anywhere:");
            outln!("{token}");
            note!("\nAdd this to the server's config and restart it:\n");
            note!("[[admin_token]]\nname = \"{name}\"\nrole = \"{role}\"");
            if let Some(station) = station {
                note!("station = \"{station}\"");
            }
            note!("sha256 = \"{hash}\"");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Backup(args) => {
            backup_command(args)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Restore { overrides, file } => {
            let config = radio_config::load_server(&overrides)?;
            let input =
                std::fs::File::open(&file).with_context(|| format!("{}", file.display()))?;
            let restored =
                radio_server::backup::restore(std::io::BufReader::new(input), &config.data_dir)?;
            let m = &restored.manifest;
            outln!(
                "restored {} into {}: {} files, {} bytes, {} store entries (backup of {}, radio-server {})",
                file.display(),
                config.data_dir.display(),
                m.files.len(),
                m.total_bytes(),
                restored.store_entries,
                m.created_at,
                m.server_version
            );
            note!(
                "the files belong to the user who ran this; give them to the server's user (e.g. chown -R radio-server: {}) before starting it",
                config.data_dir.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Openapi => {
            let document = radio_server::operator::openapi::document();
            outln!("{}", serde_json::to_string_pretty(&document)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Stations { overrides } => {
            let config = radio_config::load_server(&overrides)?;
            let district = config.district()?;
            outln!("{} ({}), {}", district.name, district.id, district.province);
            for s in &district.stations {
                outln!(
                    "{:<18} {:<16} {:<9} {:>3} clusters {:>4} speakers",
                    s.id,
                    s.name,
                    format!("{:?}", s.kind).to_lowercase(),
                    s.clusters,
                    s.speakers
                );
            }
            outln!(
                "{} stations, {} clusters, {} speakers",
                district.stations.len(),
                district.total_clusters(),
                district.total_speakers()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Manual { out } => {
            relay_agent::manual::write(Cli::command(), &out)
                .with_context(|| format!("cannot write the manual into {}", out.display()))?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            agents,
            programme,
            out,
            bitrate,
            log,
            live_rtp,
            relay,
            keep_running,
            console_listen,
            admin_listen,
            data_dir,
        } => {
            init_tracing(&log);
            let outcome = runtime()?.block_on(run_demo(DemoOptions {
                duration: duration.map(Duration::from_secs),
                agents,
                programme,
                out,
                data_dir,
                bitrate,
                live_rtp,
                relay,
                keep_running: keep_running.then_some(KeepRunning {
                    console_listen,
                    admin_listen,
                }),
            }))?;
            if keep_running {
                // The table was printed before the district went on serving; what matters now
                // is that it stopped cleanly.
                outln!("demo stopped");
                return Ok(std::process::ExitCode::SUCCESS);
            }
            out!("{}", outcome.render());
            Ok(if outcome.played() == outcome.rows.len() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Live { action } => {
            match action {
                LiveCommand::Start {
                    overrides,
                    id,
                    targets,
                } => {
                    let shown = targets_text(&targets);
                    let request = LiveStart {
                        id,
                        targets: targets.targets(),
                    };
                    let id = client(&overrides)?.live_start(&request)?;
                    outln!("live `{id}` on air at {shown}");
                }
                LiveCommand::Stop { overrides, id } => {
                    let id = client(&overrides)?.live_stop(id.as_deref())?;
                    outln!("live `{id}` stopped");
                }
                LiveCommand::Who { overrides } => {
                    let state: serde_json::Value =
                        client(&overrides)?.get("/api/v1/live/console")?;
                    match (&state["speaker"], state["available"].as_bool()) {
                        (serde_json::Value::Null, Some(false)) => outln!(
                            "nobody: this server cannot go live from the console (its studio \
                             input is a PCM pipe)"
                        ),
                        (serde_json::Value::Null, _) => outln!("nobody is live from the console"),
                        (speaker, _) => outln!(
                            "{} is live from the console since {}, to {} (stop it: radio-server \
                             live stop --id console)",
                            speaker["user"].as_str().unwrap_or("?"),
                            speaker["since"].as_str().unwrap_or("?"),
                            speaker["targets"]
                        ),
                    }
                }
            }
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Emergency(args) => {
            emergency(args)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::User { action } => {
            user_command(action)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Library { action } => {
            library_command(action)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Bulletin { action } => {
            bulletin_command(action)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Schedule { action } => {
            schedule_command(action)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Report { kind } => {
            report_command(kind)?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Audit(args) => {
            let query = radio_server::operator::admin_client::AuditQuery {
                from: args.from,
                to: args.to,
                actor: args.actor,
                action: args.action,
                station: args.station,
                outcome: args.outcome,
            };
            let listing = client(&args.overrides)?.audit_matching(&query)?;
            let text = radio_server::operator::admin_client::render_audit(&listing, args.format);
            out!("{text}");
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Status { overrides } => {
            let client = client(&overrides)?;
            let status = client.status()?;
            // `since` in the district's time, as operators read clocks.
            let tz = client
                .schedule()
                .ok()
                .and_then(|s| load_timezone(&s.timezone).ok())
                .map_or_else(
                    || load_timezone(radio_server::schedule::DEFAULT_TIMEZONE),
                    Ok,
                )?;
            out!("{}", render_status(&status, &tz));
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// `radio-server backup`: asks the running server for the archive (sled lets one process
/// at a time open the store, so only the server can copy it while it runs), or, when the
/// store's lock is free, takes the snapshot itself.
fn backup_command(args: BackupArgs) -> anyhow::Result<()> {
    use radio_server::backup;
    use radio_server::records::store::StoreError;
    let config = radio_config::load_server(&args.overrides)?;
    let now = jiff::Timestamp::now();
    let target = match (args.out, &args.dir) {
        (Some(out), _) => out,
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            dir.join(backup::file_name(now))
        }
        (None, None) => bail!("give --out FILE or --dir DIR"),
    };
    if !config.data_dir.join("store").is_dir() {
        bail!(
            "{}: no store there, so not a radio-server data directory (give --data-dir or --config)",
            config.data_dir.display()
        );
    }
    let manifest = match Store::open(&config.data_dir) {
        Ok(store) => {
            note!(
                "no server runs on {}: backing it up directly",
                config.data_dir.display()
            );
            let snapshot = backup::Snapshot::take(&store, now)?;
            backup::save(&target, |out| snapshot.write_archive(out).map(drop))?
        }
        Err(StoreError::Locked { .. }) => {
            let client = AdminClient::from_config(&config)?;
            backup::save(&target, |out| client.backup(out).map(drop))?
        }
        Err(e) => return Err(e.into()),
    };
    outln!(
        "backup written to {}: {} files, {} bytes (keep it private: it holds the district CA's key)",
        target.display(),
        manifest.files.len(),
        manifest.total_bytes()
    );
    if let (Some(dir), Some(keep)) = (&args.dir, args.keep) {
        for name in backup::prune(dir, keep as usize)
            .with_context(|| format!("cannot delete old backups in {}", dir.display()))?
        {
            outln!("deleted the old backup {name}");
        }
    }
    Ok(())
}

/// On the first start (no console account yet), creates `admin` with a random password and
/// prints it once: the console must be usable before anyone has a shell habit.
fn first_admin(store: &Store) -> anyhow::Result<()> {
    use radio_server::operator::accounts::{create_first_admin, first_admin_notice};
    if let Some(password) = create_first_admin(store.accounts())? {
        let _ = write_out(format_args!("{}\n", first_admin_notice(&password)));
    }
    Ok(())
}

/// The admin client for the server the overrides (and config file, environment) describe.
fn client(overrides: &ServerOverrides) -> anyhow::Result<AdminClient> {
    let config = radio_config::load_server(overrides)?;
    Ok(AdminClient::from_config(&config)?)
}

fn targets_text(targets: &TargetArgs) -> String {
    if !targets.targets.is_empty() {
        targets.targets.join(", ")
    } else if !targets.groups.is_empty() {
        format!("groups {}", targets.groups.join(", "))
    } else {
        "all stations".to_owned()
    }
}

fn emergency(args: EmergencyArgs) -> anyhow::Result<()> {
    let client = client(&args.overrides)?;
    if let Some(id) = args.stop {
        if args.targets.given() {
            bail!("--stop ends the emergency everywhere it airs; leave out --targets/--groups");
        }
        let id = client.stop_emergency(&id)?;
        outln!("emergency `{id}` stopped");
        return Ok(());
    }
    // The server does not share this shell's working directory.
    let file = args
        .file
        .map(|f| std::path::absolute(&f).with_context(|| format!("{}", f.display())))
        .transpose()?;
    let shown = targets_text(&args.targets);
    let request = EmergencyRequest {
        id: args.id,
        name: args.name,
        file,
        url: args.url,
        targets: args.targets.targets(),
        repeat: args.repeat,
    };
    let id = client.emergency(&request)?;
    // The id alone on stdout, for scripts; the rest for the operator.
    outln!("{id}");
    note!("emergency `{id}` on air at {shown}; stop it with: radio-server emergency --stop {id}");
    Ok(())
}

/// The password for `user add` / `user password`: stdin's first line, or asked twice on the
/// terminal without echo.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("cannot read the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("no terminal to ask the password on: give --password-stdin and pipe it in");
    }
    let first = rpassword::prompt_password("Password (at least 10 characters): ")
        .context("cannot read the password")?;
    let second = rpassword::prompt_password("Again: ").context("cannot read the password")?;
    if first != second {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(first)
}

fn role_of(role: TokenRole) -> radio_config::Role {
    match role {
        TokenRole::Admin => radio_config::Role::Admin,
        TokenRole::Operator => radio_config::Role::Operator,
        TokenRole::Viewer => radio_config::Role::Viewer,
    }
}

fn user_command(action: UserCommand) -> anyhow::Result<()> {
    use radio_server::operator::account_routes::{NewAccountRequest, PasswordRequest};
    use radio_server::operator::accounts::Account;
    let show = |a: &Account| {
        let role = match a.role {
            radio_config::Role::Admin => "admin",
            radio_config::Role::Operator => "operator",
            radio_config::Role::Viewer => "viewer",
        };
        let communes = if a.communes.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.communes.join(", "))
        };
        let state = if a.disabled { "  disabled" } else { "" };
        format!("{:<24} {role}{communes}{state}", a.name)
    };
    match action {
        UserCommand::Add {
            overrides,
            name,
            role,
            communes,
            password_stdin,
        } => {
            let client = client(&overrides)?;
            let password = read_password(password_stdin)?;
            let role = role_of(role);
            let account: Account = client.post(
                "/api/v1/users",
                &NewAccountRequest {
                    name,
                    role,
                    communes,
                    password,
                },
            )?;
            outln!("created {}", show(&account));
        }
        UserCommand::List { overrides } => {
            let accounts: Vec<Account> = client(&overrides)?.get("/api/v1/users")?;
            for account in &accounts {
                outln!("{}", show(account));
            }
        }
        UserCommand::Disable { overrides, name } => {
            let account: Account = client(&overrides)?.post(
                &format!("/api/v1/users/{name}/disable"),
                &serde_json::json!({}),
            )?;
            outln!("disabled {}", show(&account));
        }
        UserCommand::Enable { overrides, name } => {
            let account: Account = client(&overrides)?.post(
                &format!("/api/v1/users/{name}/enable"),
                &serde_json::json!({}),
            )?;
            outln!("enabled {}", show(&account));
        }
        UserCommand::Role {
            overrides,
            name,
            role,
            communes,
        } => {
            let account: Account = client(&overrides)?.post(
                &format!("/api/v1/users/{name}/role"),
                &radio_server::operator::account_routes::RoleRequest {
                    role: role_of(role),
                    communes,
                },
            )?;
            outln!("new role for {} (signed out everywhere)", show(&account));
        }
        UserCommand::Password {
            overrides,
            name,
            password_stdin,
        } => {
            let client = client(&overrides)?;
            let password = read_password(password_stdin)?;
            let account: Account = client.post(
                &format!("/api/v1/users/{name}/password"),
                &PasswordRequest { password },
            )?;
            outln!(
                "new password for {} (signed out everywhere)",
                show(&account)
            );
        }
    }
    Ok(())
}

fn library_command(action: LibraryCommand) -> anyhow::Result<()> {
    use radio_server::operator::admin_client::render_library;
    match action {
        LibraryCommand::Add {
            overrides,
            file,
            name,
        } => {
            let client = client(&overrides)?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let file_name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let item = client.library_upload(bytes, &file_name, name.as_deref())?;
            // The id alone on stdout, for scripts; the rest for the operator.
            outln!("{}", item.id);
            note!(
                "added `{}` ({:.1} s, peak {:.1} dBFS); air it by its path: {}",
                item.name,
                item.duration_secs,
                item.peak_dbfs,
                item.path.display()
            );
        }
        LibraryCommand::List { overrides } => {
            let items = client(&overrides)?.library()?;
            out!("{}", render_library(&items));
        }
        LibraryCommand::Rename {
            overrides,
            id,
            name,
        } => {
            let item = client(&overrides)?.library_rename(&id, &name)?;
            outln!("`{}` is now called {}", item.id, item.name);
        }
        LibraryCommand::Delete { overrides, id } => {
            let item = client(&overrides)?.library_delete(&id)?;
            outln!("deleted `{}` ({})", item.id, item.name);
        }
        LibraryCommand::Say {
            overrides,
            name,
            speed,
            text,
        } => {
            let client = client(&overrides)?;
            let text = match text {
                Some(text) if text != "-" => text,
                _ => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .context("cannot read the text from stdin")?;
                    text
                }
            };
            let item = client.library_say(&name, &text, speed)?;
            outln!("{}", item.id);
            note!(
                "spoke `{}` ({:.1} s, peak {:.1} dBFS); air it by its path: {}",
                item.name,
                item.duration_secs,
                item.peak_dbfs,
                item.path.display()
            );
        }
    }
    Ok(())
}

fn bulletin_command(action: BulletinCommand) -> anyhow::Result<()> {
    match action {
        BulletinCommand::Submit(args) => {
            let client = client(&args.overrides)?;
            let shown = targets_text(&args.targets);
            let (source, default_name) = match (args.file, args.url) {
                (Some(file), _) => {
                    // The server does not share this shell's working directory.
                    let path = std::path::absolute(&file)
                        .with_context(|| format!("{}", file.display()))?;
                    let name = path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (SourceSpec::File { path }, name)
                }
                // The name is shown in the status and the logs: never an Icecast password.
                (None, Some(url)) => {
                    let name = radio_server::ingest::stream_url::mask(&url).into_owned();
                    (SourceSpec::Relay { url }, name)
                }
                (None, None) => bail!("give --file or --url"),
            };
            let level = match args.level {
                BulletinLevel::Normal => Level::Normal,
                BulletinLevel::Priority => Level::Priority,
            };
            let request = BulletinRequest {
                id: args.id,
                name: args.name.unwrap_or(default_name),
                source,
                level,
                targets: args.targets.targets().unwrap_or(Targets::All),
                duration: args.duration,
            };
            let id = client.submit_bulletin(&request)?;
            outln!("{id}");
            match level {
                Level::Normal => note!(
                    "bulletin `{id}` offered to {shown}; each station airs it once its operator \
                     runs: radio-server bulletin accept {id} --station STATION"
                ),
                _ => {
                    note!("priority bulletin `{id}` goes to {shown} at the next item boundary")
                }
            }
        }
        BulletinCommand::Cancel { overrides, id } => {
            let id = client(&overrides)?.cancel_bulletin(&id)?;
            outln!("bulletin `{id}` cancelled");
        }
        BulletinCommand::Accept {
            overrides,
            id,
            station,
            at,
        } => {
            let id = client(&overrides)?.accept_bulletin_at(&id, &station, at.as_deref())?;
            match at {
                Some(at) => outln!("bulletin `{id}` accepted at {station}, from {at}"),
                None => outln!("bulletin `{id}` accepted at {station}"),
            }
        }
        BulletinCommand::Decline {
            overrides,
            id,
            station,
            reason,
        } => {
            let id = client(&overrides)?.decline_bulletin(&id, &station, reason.as_deref())?;
            outln!("bulletin `{id}` declined at {station}");
        }
        BulletinCommand::List {
            overrides,
            station,
            json,
        } => {
            let listing = client(&overrides)?.bulletins(station.as_deref())?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&listing)?);
            } else {
                out!(
                    "{}",
                    radio_server::operator::admin_client::render_bulletins(&listing)
                );
            }
        }
    }
    Ok(())
}

fn report_command(kind: ReportCommand) -> anyhow::Result<()> {
    let (kind, args) = match kind {
        ReportCommand::Uptime(args) => (ReportKind::Uptime, args),
        ReportCommand::Plays(args) => (ReportKind::Plays, args),
    };
    if args.from > args.to {
        bail!(
            "--from {} is after --to {}: the range runs from the first day to the last, both included",
            args.from,
            args.to
        );
    }
    let query = ReportQuery {
        request: ReportRequest {
            clusters: args.clusters,
            ..ReportRequest::new(args.from, args.to, args.by)?
        },
        format: args.format,
    };
    let text = client(&args.overrides)?.report(kind, &query)?;
    out!("{text}");
    Ok(())
}

fn schedule_command(action: ScheduleCommand) -> anyhow::Result<()> {
    match action {
        ScheduleCommand::List { overrides } => {
            let schedule = client(&overrides)?.schedule()?;
            out!("{}", render_schedule(&schedule));
        }
        ScheduleCommand::Add { overrides, file } => {
            let entry = read_entry(&file)?;
            let changed = client(&overrides)?.add_entry(&entry)?;
            outln!("entry `{}` added", changed.id);
            for overlap in changed.overlaps {
                outln!("note: {overlap}");
            }
        }
        ScheduleCommand::Remove { overrides, id } => {
            let changed = client(&overrides)?.remove_entry(&id)?;
            outln!("entry `{}` removed", changed.id);
        }
    }
    Ok(())
}

/// One schedule entry from TOML, with relative recording paths taken from the file's
/// directory (the server runs elsewhere). Errors are one line: `FILE:LINE:COLUMN: message`.
fn read_entry(path: &Path) -> anyhow::Result<ScheduleEntry> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the entry {}", path.display()))?;
    let mut entry: ScheduleEntry = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(":{line}:{column}")
            })
            .unwrap_or_default();
        anyhow::anyhow!(
            "{}{at}: not a valid schedule entry: {}",
            path.display(),
            e.message().replace('\n', " ")
        )
    })?;
    let base = std::path::absolute(path)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    match &mut entry.source {
        SourceSpec::File { path } => resolve(path),
        SourceSpec::Playlist { paths } => paths.iter_mut().for_each(resolve),
        SourceSpec::Relay { .. } | SourceSpec::Upstream { .. } | SourceSpec::Live => {}
    }
    Ok(entry)
}

/// What `radio-server run` was asked to do besides serving.
struct RunOptions {
    programme: Option<PathBuf>,
    wait_agents: usize,
    repeat: bool,
    schedule: Option<PathBuf>,
    no_schedule: bool,
    live_rtp: Option<std::net::SocketAddr>,
    live_allow: Vec<std::net::IpAddr>,
    live_srtp_key_file: Option<PathBuf>,
}

async fn run_server(config: radio_config::ServerConfig, options: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        programme,
        wait_agents,
        repeat,
        schedule,
        no_schedule,
        live_rtp,
        live_allow,
        live_srtp_key_file,
    } = options;
    let district = config.district()?;
    if wait_agents > district.stations.len() {
        bail!(
            "--wait-agents {wait_agents} can never be reached: {} has {} stations",
            district.name,
            district.stations.len()
        );
    }
    // A broken fallback is found now, not in the middle of an outage.
    let fallbacks = config
        .relay
        .fallback
        .iter()
        .map(|path| ("relay.fallback".to_owned(), path))
        .chain(config.upstreams.iter().enumerate().filter_map(|(i, u)| {
            u.fallback
                .as_ref()
                .map(|path| (format!("upstream[{i}].fallback"), path))
        }));
    for (key, path) in fallbacks {
        radio_server::pipeline::ProgrammeEncoder::open(path, config.bitrate)
            .with_context(|| format!("config key `{key}`: the fallback cannot be played"))?;
    }
    let upstreams = config
        .upstreams
        .iter()
        .map(radio_server::ingest::upstream::Upstream::load)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, token) in config.admin_tokens.iter().enumerate() {
        if let Some(station) = &token.station {
            if !district.stations.iter().any(|s| &s.id == station) {
                bail!(
                    "config key `admin_token[{i}].station`: `{station}` is not a station of {}",
                    district.name
                );
            }
        }
    }
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name)?;
    let store = Arc::new(Store::open(&config.data_dir)?);
    let upstream_names: Vec<String> = upstreams.iter().map(|u| u.name.clone()).collect();
    let mut embedded = false;
    let (schedule, from_file) = match &schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the schedule {}", path.display()))?;
            let schedule = toml::from_str::<Schedule>(&text)
                .with_context(|| format!("{}: not a valid schedule", path.display()))?;
            (schedule, Some(path))
        }
        None if no_schedule => (Schedule::default(), None),
        None => match store.schedule()? {
            Some(stored) => (stored, None),
            None => {
                radio_server::ingest::relay::validate_relay_url(&config.provincial_stream)
                    .context("config key `provincial_stream`")?;
                embedded = true;
                (Schedule::binh_son_relaying(&config.provincial_stream), None)
            }
        },
    };
    // Where the warning about an unreachable stream sends the operator to set the real one.
    let stream_origin = if embedded {
        StreamOrigin::Config {
            provincial_stream: config.provincial_stream.clone(),
        }
    } else {
        StreamOrigin::Schedule
    };
    let scheduler =
        Scheduler::new(schedule.clone(), &district).with_context(|| match from_file {
            Some(path) => format!("{}", path.display()),
            None => format!(
                "the stored schedule ({}); replace it with --schedule FILE",
                config.data_dir.join("store").display()
            ),
        })?;
    radio_server::schedule::check_upstreams(&schedule, &upstream_names).with_context(|| {
        match from_file {
            Some(path) => format!("{}", path.display()),
            None => format!(
                "the stored schedule ({}); replace it with --schedule FILE, or add the upstream \
                 it names to the config",
                config.data_dir.join("store").display()
            ),
        }
    })?;
    let live_targets = if config.live.targets.is_empty() {
        radio_server::schedule::Targets::All
    } else {
        radio_server::schedule::Targets::Stations(config.live.targets.clone())
    };
    live_targets
        .resolve(&district, &schedule.groups)
        .map_err(|e| anyhow::anyhow!("config key `live.targets`: {e}"))?;
    for upstream in &upstreams {
        tracing::info!("upstream server {}", upstream.describe());
    }
    if let Some(path) = from_file {
        store.save_schedule(&schedule)?;
        let record = radio_server::operator::audit_log::AuditRecord::schedule_from_file(
            path,
            jiff::Timestamp::now(),
        );
        store.audit().append(&record)?;
        tracing::info!(
            "schedule from {} stored (it replaces the stored one)",
            path.display()
        );
    }
    for overlap in scheduler.overlaps() {
        tracing::info!("schedule: {}", admin::describe_overlap(overlap));
    }
    store.admin_token()?;
    first_admin(&store)?;
    tracing::info!(
        "admin token in {} (the operator commands read it)",
        store.token_path().display()
    );
    let admin_listener = tokio::net::TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on admin_listen {} (is another radio-server running? set \
                 --admin-listen)",
                config.admin_listen
            )
        })?;
    let admin_addr = admin_listener.local_addr()?;
    let console_listener = tokio::net::TcpListener::bind(config.console_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on console_listen {} (is another radio-server running, or does \
                 another program use the port? set --console-listen)",
                config.console_listen
            )
        })?;
    let console_addr = console_listener.local_addr()?;
    let server_name_for_console = config.server_name.clone();
    let console_tls = match (&config.console_cert, &config.console_key) {
        (Some(cert), Some(key)) => {
            https::server_config(https::CertificateSource::Files { cert, key })
        }
        _ => https::server_config(https::CertificateSource::District {
            ca: &ca,
            names: https::console_names(&config.server_name, console_addr, &config.console_names),
        }),
    }?;
    let endpoint = server::bind(&config, &ca)?;
    let addr = endpoint.local_addr()?;
    tracing::info!(
        "serving the {} stations of {} on {addr}",
        district.stations.len(),
        district.name
    );
    // Tests bind port 0 and read the ports from here. A server whose standard output went
    // away keeps serving: these lines are a courtesy.
    if console_addr.ip().is_unspecified() {
        // 0.0.0.0 cannot be typed into a browser; say what can.
        tracing::info!(
            "console: from other machines open https://{}:{}/ (or an address in console_names)",
            server_name_for_console,
            console_addr.port()
        );
    }
    let _ = write_out(format_args!(
        "admin endpoint on {admin_addr}\nconsole on https://{console_addr}/\nlistening on {addr}\n"
    ));
    let bitrate = config.bitrate;
    let ladder = Ladder::new(
        scheduler,
        &district,
        LadderConfig {
            live_above_emergency: config.live.above_emergency,
        },
    );
    let mut live = config.live.clone();
    let relay = config.relay.clone();
    let admin_tokens = config.admin_tokens.clone();
    let library_max_upload_mb = config.library_max_upload_mb;
    let tts = radio_server::library::TtsSettings {
        command: config.tts_command.clone(),
        timeout: Duration::from_secs(config.tts_timeout_secs),
        max_chars: config.tts_max_chars,
        ..radio_server::library::TtsSettings::default()
    };
    let server = Server::with_uptime(config, district.clone(), store.uptime().clone());
    server.set_health_records(radio_server::health::HealthRecords {
        months: store.box_health().clone(),
        audit: store.audit().clone(),
    });
    // The flags are shortcuts for a trial; they override the `[live]` table.
    if let Some(addr) = live_rtp {
        live.rtp = Some(addr);
        live.pipe = None;
    }
    live.srtp_key_file = live_srtp_key_file.or(live.srtp_key_file);
    if !live_allow.is_empty() {
        live.allow = live_allow;
    } else if live_rtp.is_some() && live.allow.is_empty() {
        live.allow = vec![DEFAULT_LIVE_ALLOW];
    }
    if live.rtp.is_some() && live.allow.is_empty() {
        bail!(
            "live RTP input: no sender is allowed; give --live-allow ADDRESS (or `allow` in the \
             [live] table of the config)"
        );
    }
    let (on_air, studio) = radio_server::broadcast::live_input::spawn_on_air(
        server.outputs(),
        ladder,
        radio_server::broadcast::live_input::OnAirSetup {
            bitrate,
            live,
            live_targets,
            relay,
            upstreams,
        },
    )
    .await?;
    // Kept for the life of the server: dropping it would stop the input.
    if server.config().prefetch_horizon_hours > 0 {
        server.set_prefetch(radio_server::prefetch::PrefetchPlanner::spawn(
            on_air.schedule(),
            &district,
            jiff::SignedDuration::from_hours(server.config().prefetch_horizon_hours.into()),
            bitrate,
        ));
    }
    // In the background: a stream that does not answer must not hold the start-up up.
    let relay_probes = RelayProbes::spawn(
        on_air.schedule(),
        stream_origin,
        relay_probe::PROBE_INTERVAL,
        relay_probe::PROBE_TIMEOUT,
    );
    // One signal stops both endpoints.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        relay_agent::service_manager::notify_stopping();
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    // A session nobody comes back to is never looked up again, so nothing else removes it.
    let accounts = store.accounts().clone();
    tokio::spawn(async move {
        let mut hourly = tokio::time::interval(Duration::from_secs(3600));
        loop {
            hourly.tick().await;
            let accounts = accounts.clone();
            let purged =
                tokio::task::spawn_blocking(move || accounts.purge_expired(jiff::Timestamp::now()))
                    .await;
            match purged {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!("console: {n} ended sessions removed"),
                Ok(Err(e)) => tracing::warn!("console: ended sessions not removed: {e}"),
                Err(e) => tracing::warn!("console: session purge failed: {e}"),
            }
        }
    });
    let ready = format!("{} stations; agents on {addr}", district.stations.len());
    let admin_state = AdminState::new(on_air.clone(), store, district, schedule)
        .with_upstreams(upstream_names)
        .with_server(server.clone())
        .with_relay_probes(relay_probes)
        .with_tokens(&admin_tokens)
        .with_console_port(console_addr.port())
        .with_library_max_upload_mb(library_max_upload_mb)
        .with_console_live(studio.console.clone())
        .with_tts(tts);
    let app = admin::router(Arc::new(admin_state));
    let admin_stop = stopped(stop_rx.clone());
    let admin_app = app.clone();
    let admin_task = tokio::spawn(async move {
        if let Err(e) = admin::serve_router(admin_listener, admin_app, admin_stop).await {
            tracing::error!("admin endpoint stopped: {e}");
        }
    });
    let console_stop = stopped(stop_rx.clone());
    let console_task = tokio::spawn(async move {
        if let Err(e) = https::serve(console_listener, console_tls, app, console_stop).await {
            tracing::error!("console stopped: {e}");
        }
    });
    let controller = on_air.clone();
    if let Some(path) = programme {
        let server: Arc<Server> = server.clone();
        tokio::spawn(async move {
            server.wait_connected(wait_agents).await;
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            for n in 1.. {
                let bulletin = file_bulletin(&format!("programme-{n}"), &name, &path);
                match play_bulletin(&on_air, bulletin).await {
                    Ok(s) if s.error.is_none() => {}
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!("{e}");
                        break;
                    }
                }
                if !repeat {
                    break;
                }
            }
        });
    }
    // Ready: every listener is bound and the on-air controller ticks.
    relay_agent::service_manager::notify_ready(&ready);
    let _watchdog = relay_agent::service_manager::spawn_watchdog(
        controller.progress(),
        "on-air controller",
        relay_agent::service_manager::stall_limit(),
        |died| {
            tracing::error!(
                "{died}: no station can air; exiting so that the service manager restarts \
                 radio-server"
            );
            std::process::exit(EXIT_AUDIO_TASK_DIED);
        },
    )
    .context("cannot start the watchdog thread")?;
    tokio::select! {
        () = server::run(endpoint, server, stopped(stop_rx)) => {}
        why = controller.died() => {
            // Exiting at once, not draining: nothing airs any more, and the sooner the service
            // manager restarts the server the shorter the silence at every station.
            tracing::error!(
                "on-air controller panicked ({why}): no station can air; exiting so that the \
                 service manager restarts radio-server"
            );
            std::process::exit(EXIT_AUDIO_TASK_DIED);
        }
    }
    // Requests in flight finish; a client that hangs on does not hold the shutdown up.
    if tokio::time::timeout(Duration::from_secs(5), async {
        let _ = tokio::join!(admin_task, console_task);
    })
    .await
    .is_err()
    {
        tracing::warn!("admin endpoint or console: requests still open at shutdown, dropped");
    }
    Ok(())
}
