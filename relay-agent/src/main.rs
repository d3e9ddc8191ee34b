//! `relay-agent`: the commune station daemon. See the crate docs of `relay_agent`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use radio_config::AgentOverrides;
use relay_agent::process::{init_tracing, install_panic_hook, shutdown_signal};
use relay_agent::{Agent, AgentError, Bundle};

/// Exit status when a thread or task of the running agent died (EX_SOFTWARE, an internal
/// error): the service manager restarts the agent, and the status tells it from a bad config.
const EXIT_DIED: i32 = 70;

/// Relay agent of the smart radio broadcast system: receives the district's programmes over QUIC
/// and plays them to this station's loudspeaker clusters.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    overrides: AgentOverrides,
    /// Without one, the agent runs.
    #[command(subcommand)]
    command: Option<Command>,
    /// Print the records waiting in the journal in DIR (`STATE_DIR/journal`) for upload, one
    /// per line (journal id, sequence, Unix ms, event), and exit. The agent must be stopped.
    #[arg(long, value_name = "DIR")]
    print_journal: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the enrolment bundle the district sent (radio-server enroll) for this station's
    /// service, readable by its user only, and start the service. Where it goes is the config's
    /// `bundle` (give --config before `enroll` for another config).
    Enroll {
        /// The bundle file as received.
        #[arg(long, value_name = "FILE")]
        bundle: std::path::PathBuf,
        /// The user the service runs as, who must read the bundle.
        #[arg(long, default_value = relay_agent::enroll::SERVICE_USER)]
        owner: String,
        /// Put the bundle in place only; do not enable and start the service.
        #[arg(long)]
        no_start: bool,
    },
    /// Write the man pages and shell completions into DIR (for the packages).
    #[command(hide = true)]
    Manual {
        #[arg(long, value_name = "DIR")]
        out: std::path::PathBuf,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relay-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(dir) = &cli.print_journal {
        return print_journal(dir);
    }
    match cli.command {
        Some(Command::Manual { out }) => {
            relay_agent::manual::write(Cli::command(), &out)
                .with_context(|| format!("cannot write the manual into {}", out.display()))?;
            return Ok(());
        }
        Some(Command::Enroll {
            bundle,
            owner,
            no_start,
        }) => return enroll(&cli.overrides, bundle, owner, !no_start),
        None => {}
    }
    let config = radio_config::load_agent(&cli.overrides)?;
    init_tracing(&config.log);
    install_panic_hook();
    let bundle = Bundle::load(&config.bundle)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let agent = Agent::new(config, bundle)?;
        tracing::info!("{agent:?} starting");
        let report = match agent.run(shutdown_signal()).await {
            Ok(report) => report,
            Err(AgentError::Died(died)) => {
                tracing::error!("{died}; exiting so the service manager restarts the agent");
                // At once: dropping the runtime would wait for blocking tasks (a journal flush,
                // a cache write) that may be what hangs.
                std::process::exit(EXIT_DIED);
            }
            Err(e) => return Err(e.into()),
        };
        for p in &report.programmes {
            // Proof of play, until the uptime journal records it durably.
            tracing::info!(
                commune = %report.commune,
                "programme {} \"{}\": played {}/{} frames{}",
                p.programme_id,
                p.name,
                p.played,
                p.frames,
                if p.ended() { "" } else { " (end not announced)" }
            );
        }
        let s = &report.stats;
        // Every playout counter, not only the two the heartbeats carry: late frames and
        // underrun slots are how a stalled reliable stream shows (the loss benchmark reads them).
        tracing::info!(
            commune = %report.commune,
            received = s.frames_received,
            played = s.frames_played,
            lost = s.frames_lost,
            late = s.frames_late,
            duplicate = s.frames_duplicate,
            overflow = s.frames_overflow,
            underrun_slots = s.underrun_slots,
            "stopped cleanly"
        );
        Ok(())
    })
}

/// `--print-journal DIR`. A reader that goes away (`| head -1`) ends the output quietly:
/// `println!` would panic on the broken pipe.
fn enroll(
    overrides: &AgentOverrides,
    from: std::path::PathBuf,
    owner: String,
    start: bool,
) -> anyhow::Result<()> {
    // Only where the bundle goes matters here; a config that does not validate yet (no sink
    // chosen) must not stop the bundle from being installed, but is reported.
    let config = radio_config::load_agent(overrides);
    let to = match (&config, &overrides.bundle) {
        (_, Some(path)) => path.clone(),
        (Ok(config), None) => config.bundle.clone(),
        (Err(_), None) => radio_config::DEFAULT_AGENT_BUNDLE.into(),
    };
    let done = relay_agent::enroll::enrol(&relay_agent::enroll::Enrolment {
        from,
        to,
        owner: Some(owner),
        start,
    })?;
    println!(
        "Đã cài chứng chỉ cho trạm {} (máy chủ {}) vào {}.\nThe bundle for station {} (server {}) is in {}.",
        done.commune,
        done.server,
        done.path.display(),
        done.commune,
        done.server,
        done.path.display()
    );
    if done.started {
        println!(
            "Dịch vụ relay-agent đã khởi động. The relay-agent service is started: systemctl status relay-agent"
        );
    } else if start {
        println!(
            "Máy này không dùng systemd: hãy tự chạy relay-agent. No systemd here: start relay-agent yourself."
        );
    }
    if let Err(e) = config {
        println!("Cảnh báo / warning: the agent's config does not load yet: {e}");
    }
    Ok(())
}

fn print_journal(dir: &Path) -> anyhow::Result<()> {
    let (journal_id, records) = relay_agent::journal::Journal::read_pending(dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = records
        .iter()
        .try_for_each(|r| writeln!(out, "{journal_id}\t{}\t{}\t{:?}", r.seq, r.unix_ms, r.event))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        written => written.context("cannot write the journal to standard output"),
    }
}
