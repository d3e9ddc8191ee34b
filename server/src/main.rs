//! `radio-server`: the district server's command line. See the `radio_server` crate docs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use radio_config::ServerOverrides;
use radio_server::certificate_authority::CertificateAuthority;
use radio_server::demo::{run_demo, DemoOptions};
use radio_server::on_air::{file_bulletin, play_bulletin, OnAir, OnAirConfig};
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::Schedule;
use radio_server::server::{self, Server};
use relay_agent::process::{init_tracing, shutdown_signal};

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
        /// The schedule (TOML, see docs/SCHEDULING.md); default: the embedded Bình Sơn schedule
        /// (the provincial relay 05:00–07:00 and 17:00–19:00).
        #[arg(long, conflicts_with = "no_schedule")]
        schedule: Option<PathBuf>,
        /// Run without any timed schedule.
        #[arg(long)]
        no_schedule: bool,
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
    /// List the district's stations.
    Stations {
        #[command(flatten)]
        overrides: ServerOverrides,
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
        /// Output directory: <station>.wav and <station>.sdp per agent.
        #[arg(long, default_value = "demo-out")]
        out: PathBuf,
        /// Opus bitrate in bits per second.
        #[arg(long, default_value_t = 32_000)]
        bitrate: u32,
        /// Log filter for the demo (server and agents).
        #[arg(long, default_value = "warn")]
        log: String,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("radio-server: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
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
            println!(
                "enrolled {} ({}): bundle written to {} (keep it secret: it holds the agent's key)",
                station.id,
                station.name,
                out.display()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Stations { overrides } => {
            let config = radio_config::load_server(&overrides)?;
            let district = config.district()?;
            println!("{} ({}), {}", district.name, district.id, district.province);
            for s in &district.stations {
                println!(
                    "{:<18} {:<16} {:<9} {:>3} clusters {:>4} speakers",
                    s.id,
                    s.name,
                    format!("{:?}", s.kind).to_lowercase(),
                    s.clusters,
                    s.speakers
                );
            }
            println!(
                "{} stations, {} clusters, {} speakers",
                district.stations.len(),
                district.total_clusters(),
                district.total_speakers()
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo {
            duration,
            agents,
            programme,
            out,
            bitrate,
            log,
        } => {
            init_tracing(&log);
            let outcome = runtime()?.block_on(run_demo(DemoOptions {
                duration: duration.map(Duration::from_secs),
                agents,
                programme,
                out,
                data_dir: None,
                bitrate,
            }))?;
            print!("{}", outcome.render());
            Ok(if outcome.played() == outcome.rows.len() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
    }
}

/// What `radio-server run` was asked to do besides serving.
struct RunOptions {
    programme: Option<PathBuf>,
    wait_agents: usize,
    repeat: bool,
    schedule: Option<PathBuf>,
    no_schedule: bool,
}

async fn run_server(config: radio_config::ServerConfig, options: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        programme,
        wait_agents,
        repeat,
        schedule,
        no_schedule,
    } = options;
    let district = config.district()?;
    if wait_agents > district.stations.len() {
        bail!(
            "--wait-agents {wait_agents} can never be reached: {} has {} stations",
            district.name,
            district.stations.len()
        );
    }
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name)?;
    let endpoint = server::bind(&config, &ca)?;
    let addr = endpoint.local_addr()?;
    tracing::info!(
        "serving the {} stations of {} on {addr}",
        district.stations.len(),
        district.name
    );
    // Tests bind port 0 and read the port from here.
    println!("listening on {addr}");
    let bitrate = config.bitrate;
    let schedule = match &schedule {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the schedule {}", path.display()))?;
            toml::from_str::<Schedule>(&text)
                .with_context(|| format!("{}: not a valid schedule", path.display()))?
        }
        None if no_schedule => Schedule::default(),
        None => Schedule::binh_son_default(),
    };
    let scheduler = Scheduler::new(schedule, &district)?;
    for overlap in scheduler.overlaps() {
        tracing::info!("schedule: {overlap:?}");
    }
    let ladder = Ladder::new(scheduler, &district, LadderConfig::default());
    let server = Server::new(config, district);
    let on_air = OnAir::spawn(
        server.outputs(),
        ladder,
        OnAirConfig {
            bitrate,
            live: None,
        },
    );
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
    server::run(endpoint, server, shutdown_signal()).await;
    Ok(())
}
