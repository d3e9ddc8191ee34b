//! `relay-agent`: the commune station daemon. See the crate docs of `relay_agent`.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context;
use clap::Parser;
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
    /// Print the records waiting in the journal in DIR (`STATE_DIR/journal`) for upload, one
    /// per line (journal id, sequence, Unix ms, event), and exit. The agent must be stopped.
    #[arg(long, value_name = "DIR")]
    print_journal: Option<std::path::PathBuf>,
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
