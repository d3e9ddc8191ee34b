//! A thread the agent cannot play without dies: the real `relay-agent` must end at once, with a
//! non-zero status and one clear line, so that its service manager restarts it, instead of
//! living on with a link that sends heartbeats and loudspeakers that hear nothing. Its next
//! start journals that the run did not end cleanly.
//!
//! The panic is injected by the debug build's test hook (`RADIO_TEST_PANIC`,
//! `relay-agent/src/test_panic.rs`) into the playout thread, holding the playout state, and into
//! a pipe sink's writer thread.

use std::path::Path;
use std::time::{Duration, Instant};

use radio_tests::{
    enroll, journal_dump, start_agent, start_agent_with_env, start_server, test_signal, write_wav,
};

/// The one line the agent gives when it ends for a dead thread.
const EXIT_LINE: &str = "exiting so the service manager restarts the agent";

/// Checks the agent ended as a service manager needs, with status 70 (EX_SOFTWARE) and one
/// exit line, and returns that line.
fn the_exit_line(status: std::process::ExitStatus, output: &[String]) -> &String {
    assert_eq!(
        status.code(),
        Some(70),
        "exit status {status}, expected 70 (EX_SOFTWARE):\n{}",
        output.join("\n")
    );
    let exit_lines: Vec<&String> = output.iter().filter(|l| l.contains(EXIT_LINE)).collect();
    assert_eq!(
        exit_lines.len(),
        1,
        "one exit line, not {}:\n{}",
        exit_lines.len(),
        output.join("\n")
    );
    exit_lines[0]
}

/// A server that plays a 6 s programme once `commune`'s agent is connected, and that agent's
/// bundle and state directory, all in `dir`.
struct District {
    dir: tempfile::TempDir,
    data: std::path::PathBuf,
    bundle: std::path::PathBuf,
    server: radio_tests::Process,
    addr: String,
    state: std::path::PathBuf,
}

impl District {
    fn start(commune: &str) -> District {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("server");
        let bundle = dir.path().join(format!("{commune}.toml"));
        enroll(&data, commune, &bundle);
        let programme = dir.path().join("programme.wav");
        write_wav(&programme, &test_signal(6.0), 48_000);
        let (server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 1);
        let state = dir.path().join("agent");
        District {
            dir,
            data,
            bundle,
            server,
            addr,
            state,
        }
    }
}

/// The issue asks for 1 s; a loaded machine (two cores shared by parallel tests) gets more.
const PROMPT: Duration = Duration::from_secs(5);

/// Starts a server with a programme and an agent whose `thread` panics after `after` frames;
/// checks the exit, its line and its timing, then the journal. `sink` is the agent's sink in
/// `dir`; `died` is how the exit line must name the death.
fn a_dead_thread_ends_the_agent(
    commune: &str,
    thread: &str,
    after: u32,
    sink: impl Fn(&Path) -> String,
    died: &str,
) {
    let District {
        dir,
        data,
        bundle,
        server,
        addr,
        state,
    } = District::start(commune);
    let after = after.to_string();
    let mut agent = start_agent_with_env(
        commune,
        &bundle,
        &addr,
        &state,
        &[sink(dir.path())],
        &[
            ("RADIO_TEST_PANIC", thread),
            ("RADIO_TEST_PANIC_AFTER_FRAMES", &after),
        ],
    );
    let panic_line = agent.wait_for(
        &format!("RADIO_TEST_PANIC={thread}: injected panic"),
        Duration::from_secs(60),
    );
    let panicked = Instant::now();
    assert!(
        panic_line.contains(&format!("thread '{thread}' panicked at")),
        "the panic is reported with its thread and place: {panic_line}"
    );
    // Without supervision the agent lives on: this fails after PROMPT instead of hanging.
    let (status, output) = agent.finish(PROMPT);
    let exited = panicked.elapsed();
    println!(
        "{thread}: the agent exited {} ms after the panic line",
        exited.as_millis()
    );
    assert!(exited <= PROMPT, "exit took {exited:?}");
    let exit_line = the_exit_line(status, &output);
    assert!(
        exit_line.contains(died) && exit_line.contains(&format!("RADIO_TEST_PANIC={thread}")),
        "the exit line says what died and how: {}",
        exit_line
    );
    assert!(
        !output.iter().any(|l| l.contains("stopped cleanly")),
        "a crash is no clean stop:\n{}",
        output.join("\n")
    );

    // The next start finds the run unclosed, as after any crash, and journals it.
    let mut again = start_agent(commune, &bundle, &addr, &state, &[sink(dir.path())]);
    again.wait_for(
        "the previous run did not stop cleanly",
        Duration::from_secs(20),
    );
    again.wait_for("link up", Duration::from_secs(20));
    let (status, _) = again.terminate();
    assert!(
        status.success(),
        "the restarted agent's exit status {status}"
    );
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit status {status}");
    let journal = journal_dump::whole_journal(
        &journal_dump::stored(&data, commune),
        &journal_dump::pending(&state),
    );
    let process: Vec<&str> = journal
        .values()
        .filter(|e| e.starts_with("Process"))
        .map(|e| e.split(',').next().unwrap_or(e))
        .collect();
    assert_eq!(
        process,
        [
            "ProcessStart { clean_previous: true",
            "ProcessStart { clean_previous: false",
            "ProcessStop"
        ],
        "the crashed run has no stop, and the next start says so: {journal:#?}"
    );
}

#[test]
fn a_panic_in_the_playout_thread_ends_the_agent() {
    a_dead_thread_ends_the_agent(
        "binh-trung",
        "playout",
        25,
        |dir| format!("wav:{}", dir.join("out.wav").display()),
        "playout thread panicked: ",
    );
}

#[test]
fn a_panic_in_a_pipe_sink_writer_ends_the_agent() {
    a_dead_thread_ends_the_agent(
        "binh-duong",
        "pipe-sink",
        25,
        // The writer thread is the agent's; the command only has to read.
        |_| "pipe:cat > /dev/null".to_owned(),
        "sink pipe:cat > /dev/null: writer thread panicked: ",
    );
}

/// A hang, not a panic: the playout thread stops for good holding the playout state (the debug
/// build's `RADIO_TEST_PANIC=playout-hang`). Nothing dies, so only the watchdog fed by the
/// playout's slots can see it; the agent must end with status 70 and its one line. An agent
/// that plays normally under the same short stall limit must not be taken for hung.
#[test]
fn a_hung_playout_thread_ends_the_agent_and_a_working_one_does_not() {
    let commune = "binh-chau";
    let District {
        dir,
        bundle,
        server,
        addr,
        state,
        ..
    } = District::start(commune);
    let sink = format!("wav:{}", dir.path().join("out.wav").display());
    // Two seconds: far above the 20 ms between slots, and short for the test.
    let limit = ("RADIO_STALL_LIMIT_MS", "2000");

    let mut working = start_agent_with_env(
        commune,
        &bundle,
        &addr,
        &state,
        std::slice::from_ref(&sink),
        &[limit],
    );
    // The whole 6 s programme, three times the limit, played with no verdict.
    working.wait_played_out(1, Duration::from_secs(120));
    assert_eq!(
        working.count_seen("no progress"),
        0,
        "the watchdog took a working agent for hung"
    );
    let (status, output) = working.terminate();
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        output.join("\n")
    );

    let mut hung = start_agent_with_env(
        commune,
        &bundle,
        &addr,
        &state,
        &[sink],
        &[
            limit,
            ("RADIO_TEST_PANIC", "playout-hang"),
            // Counted in programme frames, and the programme is over: at once.
            ("RADIO_TEST_PANIC_AFTER_FRAMES", "0"),
        ],
    );
    hung.wait_for("the playout thread hangs now", Duration::from_secs(60));
    // Without the watchdog the agent lives on, hung: this fails instead of waiting forever.
    let (status, output) = hung.finish(Duration::from_secs(60));
    let exit_line = the_exit_line(status, &output);
    assert!(
        exit_line.contains("playout thread ended: it made no progress"),
        "the exit line says what hung: {}",
        exit_line
    );
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit status {status}");
}
