//! The uptime journal survives crashes on both sides: the real agent and the real server are
//! killed (SIGKILL) at seeded random points while records are written and uploaded, 200 times
//! (`RADIO_FAULT_ITERATIONS`, `RADIO_FAULT_SEED` to vary). Afterwards the server's records and
//! the agent's remaining ones together are exactly the agent's journal: every sequence number
//! once, none missing, every start and every crash of the agent accounted for.

use std::path::Path;
use std::time::{Duration, Instant};

use radio_tests::{
    binary, enroll, free_udp_port, journal_dump, start_server_with, Process, PATIENCE,
};

/// A small, seedable generator (xorshift64*): the test needs reproducible choices, not
/// cryptography.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Agent<'a> {
    bundle: &'a Path,
    config: &'a Path,
    state: &'a Path,
    server: String,
    launches: u64,
}

impl Agent<'_> {
    /// Starts the agent and waits until its start is journaled.
    fn start(&mut self) -> Process {
        let args = [
            "--config",
            self.config.to_str().expect("utf8"),
            "--bundle",
            self.bundle.to_str().expect("utf8"),
            "--server",
            &self.server,
            "--state-dir",
            self.state.to_str().expect("utf8"),
        ];
        let mut agent = Process::start("agent", &binary("relay-agent"), &args);
        agent.wait_for("journal opened", Duration::from_secs(20));
        self.launches += 1;
        agent
    }
}

#[test]
fn no_record_is_lost_or_counted_twice_across_crashes() {
    let iterations = env_or("RADIO_FAULT_ITERATIONS", 200);
    let seed = env_or("RADIO_FAULT_SEED", 0x5EED_2026);
    eprintln!("{iterations} iterations, seed {seed:#x}");
    let mut rng = Rng(seed.max(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let bundle = dir.path().join("binh-trung.toml");
    enroll(&data, "binh-trung", &bundle);
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "journal_heartbeat_secs = 1\nreconnect_min_ms = 20\nreconnect_max_ms = 200\n\
             sinks = [\"wav:{}\"]\n",
            dir.path().join("out.wav").display()
        ),
    )
    .expect("agent config");
    let state = dir.path().join("agent");
    let listen = format!("127.0.0.1:{}", free_udp_port());
    let start_server = || start_server_with(&data, &listen, &["--no-schedule"]).0;

    let mut agent_runner = Agent {
        bundle: &bundle,
        config: &config,
        state: &state,
        server: listen.clone(),
        launches: 0,
    };
    let mut server = Some(start_server());
    let mut agent = Some(agent_runner.start());
    let mut agent_kills = 0u64;
    let started = Instant::now();
    for _ in 0..iterations {
        // The seeded crash point: pacing, not a wait for anything.
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        match rng.below(5) {
            0 | 1 => {
                drop(agent.take());
                agent_kills += 1;
            }
            2 | 3 => drop(server.take()),
            _ => {
                drop(agent.take());
                agent_kills += 1;
                drop(server.take());
            }
        }
        if server.is_none() {
            server = Some(start_server());
        }
        if agent.is_none() {
            agent = Some(agent_runner.start());
        }
    }
    eprintln!(
        "{iterations} crash points in {:.0} s; {} agent starts, {agent_kills} agent crashes",
        started.elapsed().as_secs_f64(),
        agent_runner.launches
    );
    // The server's copy catches up (every server before this one is dead, so an
    // acknowledgement from now on is this one's), then a clean stop of both.
    let mut agent = agent.take().expect("agent");
    agent.wait_caught_up(jiff::Timestamp::now(), PATIENCE);
    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    let (status, _) = server.take().expect("server").terminate();
    assert!(status.success(), "server exit {status}");

    let stored = journal_dump::stored(&data, "binh-trung");
    let pending = journal_dump::pending(&state);
    eprintln!(
        "{} records on the server, {} still with the agent",
        stored.len(),
        pending.len()
    );
    // One journal; every number once on the server; the agent's remainder agrees with the
    // server where a lost acknowledgement left a record on both sides; none missing.
    let journal = journal_dump::whole_journal(&stored, &pending);
    // Every start and every crash of the agent is there, once.
    let starts = journal
        .values()
        .filter(|e| e.starts_with("ProcessStart"))
        .count() as u64;
    let unclean = journal
        .values()
        .filter(|e| e.starts_with("ProcessStart { clean_previous: false"))
        .count() as u64;
    assert_eq!(starts, agent_runner.launches, "journaled starts");
    assert_eq!(unclean, agent_kills, "journaled crashes");
    assert!(
        journal.values().last().is_some_and(|e| e == "ProcessStop"),
        "the clean stop is the last record"
    );
    // The uploads kept up: only the last moments wait for the next run.
    assert!(
        pending.len() <= 5,
        "{} records still waiting with the agent",
        pending.len()
    );
}
