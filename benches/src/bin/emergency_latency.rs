//! Emergency latency: from the emergency command to the first emergency frame played at each of
//! the 22 Bình Sơn agents, on loopback, with the real server and agents (in this process).
//!
//! `cargo run --release -p radio-benches --bin emergency_latency -- [ROUNDS]`
//!
//! The figure includes the agents' playout delay (300 ms by default), which is there on purpose:
//! it absorbs network jitter. Goal: p99 ≤ 500 ms.

use std::time::{Duration, Instant};

use radio_benches::summary::percentile;
use radio_config::{AgentConfig, District, ServerConfig, SinkSpec};
use radio_server::broadcast::live_input::{spawn_on_air, OnAirSetup};
use radio_server::broadcast::on_air::file_bulletin;
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::link::server::{self, Server};
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::{Schedule, SourceSpec, Targets};
use relay_agent::Agent;

fn write_tone(path: &std::path::Path, hz: f32, secs: f32) -> std::io::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(std::io::Error::other)?;
    for i in 0..(secs * 48_000.0) as usize {
        let s = 0.4 * (std::f32::consts::TAU * hz * i as f32 / 48_000.0).sin();
        w.write_sample((s * 32767.0) as i16)
            .map_err(std::io::Error::other)?;
    }
    w.finalize().map_err(std::io::Error::other)
}

/// Emergency latency: from the emergency command to the first emergency frame played at each of
/// the 22 Bình Sơn agents, on loopback, with the real server and agents (in this process).
#[derive(Debug, clap::Parser)]
struct Cli {
    /// Emergencies to measure.
    #[arg(default_value_t = 5)]
    rounds: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let Cli { rounds } = clap::Parser::parse();
    let dir = tempfile::tempdir()?;
    let programme = dir.path().join("programme.wav");
    let alarm = dir.path().join("alarm.wav");
    write_tone(&programme, 440.0, 600.0)?;
    write_tone(&alarm, 1200.0, 1.0)?;

    let district = District::binh_son();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name)?;
    let endpoint = server::bind(&config, &ca)?;
    let addr = endpoint.local_addr()?;
    let server = Server::new(config.clone(), district.clone());
    let (stop_server, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server::run(endpoint, server.clone(), async move {
        let _ = stop_rx.await;
    }));
    let (stop_agents, stop_agents_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    for station in &district.stations {
        let bundle = ca.enroll(
            &station.id,
            &station.name,
            &addr.to_string(),
            &config.server_name,
        )?;
        let agent = Agent::new(
            AgentConfig {
                state_dir: dir.path().join(&station.id),
                sinks: vec![SinkSpec::Wav {
                    path: dir.path().join(format!("{}.wav", station.id)),
                }],
                ..AgentConfig::default()
            },
            bundle,
        )?;
        let status = agent.status();
        let mut rx = stop_agents_rx.clone();
        let task = tokio::spawn(agent.run(async move {
            let _ = rx.changed().await;
        }));
        agents.push((station.id.clone(), status, task));
    }
    tokio::time::timeout(
        Duration::from_secs(30),
        server.wait_connected(district.stations.len()),
    )
    .await?;
    let scheduler = Scheduler::new(Schedule::default(), &district)?;
    let (on_air, _) = spawn_on_air(
        server.outputs(),
        Ladder::new(scheduler, &district, LadderConfig::default()),
        OnAirSetup {
            bitrate: 32_000,
            ..OnAirSetup::default()
        },
    )
    .await?;
    on_air
        .bulletin(file_bulletin("programme", "Chương trình", &programme))
        .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut latencies_ms = Vec::new();
    for round in 0..rounds {
        let name = format!("bench-{round}");
        let sent = Instant::now();
        on_air
            .emergency(
                &name,
                &name,
                SourceSpec::File {
                    path: alarm.clone(),
                },
                Targets::All,
                1,
            )
            .await?;
        let mut waiting: Vec<usize> = (0..agents.len()).collect();
        let deadline = sent + Duration::from_secs(10);
        while !waiting.is_empty() && Instant::now() < deadline {
            waiting.retain(|i| {
                let played = agents[*i]
                    .1
                    .programmes()
                    .iter()
                    .any(|p| p.name == name && p.played > 0);
                if played {
                    latencies_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
                }
                !played
            });
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if !waiting.is_empty() {
            anyhow::bail!("{} agents never played emergency {name}", waiting.len());
        }
        // Let the alarm end and the programme resume before the next round.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    latencies_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "{{\"agents\": {}, \"rounds\": {rounds}, \"samples\": {}, \"p50_ms\": {:.1}, \"p99_ms\": {:.1}, \"max_ms\": {:.1}}}",
        agents.len(),
        latencies_ms.len(),
        percentile(&latencies_ms, 0.5),
        percentile(&latencies_ms, 0.99),
        latencies_ms.last().copied().unwrap_or(0.0)
    );
    let _ = stop_agents.send(true);
    for (_, _, task) in agents {
        let _ = task.await;
    }
    let _ = stop_server.send(());
    let _ = server_task.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn the_documented_command_parses() {
        // BENCHMARKS.md, "Emergency latency".
        let cli = Cli::try_parse_from(["emergency_latency", "5"]).expect("parses");
        assert_eq!(cli.rounds, 5);
        assert!(Cli::try_parse_from(["emergency_latency", "five"]).is_err());
    }
}
