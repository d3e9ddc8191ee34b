//! The studio's live input from the server's config file: raw s16le PCM from a local mixer on
//! a FIFO (`[live] pipe = …`) goes on air at the agent by itself, comes off at the end of input,
//! and a second session on the same FIFO goes on air again.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use radio_tests::{enroll, pitch_track, start_agent, start_server_with, Process, PATIENCE};

const MIXER_HZ: f32 = 700.0;

/// `seconds` of a 700 Hz tone as s16le stereo at 44.1 kHz, the format the config declares (so
/// the server's channel mix-down and resampling are on the path).
fn mixer_pcm(seconds: f32) -> Vec<u8> {
    let n = (seconds * 44_100.0) as usize;
    let mut out = Vec::with_capacity(n * 4);
    for i in 0..n {
        let v = (i as f32 * MIXER_HZ * std::f32::consts::TAU / 44_100.0).sin();
        let s = ((v * 12_000.0) as i16).to_le_bytes();
        out.extend_from_slice(&s);
        out.extend_from_slice(&s);
    }
    out
}

/// Starts a server on `data` whose studio input is a new FIFO in `dir`, stereo 44.1 kHz, with
/// `extra` lines in its `[live]` table; returns the FIFO, the server and its address.
fn server_with_studio_fifo(dir: &Path, data: &Path, extra: &str) -> (PathBuf, Process, String) {
    let fifo = dir.join("studio.pcm");
    let status = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "[live]\npipe = \"{}\"\npipe_sample_rate = 44100\npipe_channels = 2\n{extra}",
            fifo.display()
        ),
    )
    .expect("write config");
    let (mut server, addr) = start_server_with(
        data,
        "127.0.0.1:0",
        &["--config", config.to_str().expect("utf8"), "--no-schedule"],
    );
    server.wait_for("live studio PCM from", Duration::from_secs(10));
    (fifo, server, addr)
}

#[test]
fn pcm_from_a_fifo_goes_on_air_and_off_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let bundle = dir.path().join("binh-trung.toml");
    enroll(&data, "binh-trung", &bundle);
    let (fifo, mut server, addr) =
        server_with_studio_fifo(dir.path(), &data, "silence_timeout_ms = 5000\n");
    let wav = dir.path().join("binh-trung.wav");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("agent"),
        &[format!("wav:{}", wav.display())],
    );
    agent.wait_for("link up", Duration::from_secs(20));

    for session in 1..=2 {
        // Opening blocks until the server has the FIFO open for reading.
        let mut mixer = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open the FIFO");
        mixer.write_all(&mixer_pcm(3.0)).expect("write PCM");
        drop(mixer);
        let on = server.wait_for_nth(
            "studio is sending: live on air",
            session,
            Duration::from_secs(20),
        );
        let off = server.wait_for_nth(
            "studio stopped: live off air",
            session,
            Duration::from_secs(20),
        );
        assert!(
            off.contains("EndOfInput"),
            "ended by the end of input: {off} (after {on})"
        );
        // The session's end reaches the WAV a playout delay after the server sent it.
        agent.wait_played_out(session, PATIENCE);
        if session == 1 {
            // A second of silence between the sessions, which the check below tells apart:
            // pacing, not a wait for anything.
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");

    let track = pitch_track(&wav);
    let runs: String = track
        .iter()
        .map(
            |(rms, hz)| match (*rms > 0.05, (hz - MIXER_HZ).abs() < 40.0) {
                (false, _) => '.',
                (true, true) => 'm',
                (true, false) => '?',
            },
        )
        .collect();
    eprintln!("windows (m = mixer): {runs}");
    // Sessions are separated by at least half a second of silence; a single quiet window
    // inside one (a busy machine) does not split it.
    let sessions: Vec<&str> = runs
        .split(".....")
        .map(|r| r.trim_matches('.'))
        .filter(|r| r.contains('m'))
        .collect();
    assert_eq!(sessions.len(), 2, "two separate live sessions: {runs}");
    for s in sessions {
        let heard = s.chars().filter(|c| *c == 'm').count();
        // 3 s were sent, and the end of input waits for the last frames to be aired.
        assert!(
            (28..=31).contains(&heard),
            "each session is heard for its 3 s, not {heard} windows: {runs}"
        );
    }
}

/// With `auto_start = false` the studio airs only when an operator starts live; meanwhile the
/// mixer's audio is taken and dropped, never left to block the mixer's writes.
#[test]
fn a_studio_that_is_not_on_air_is_not_held_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (fifo, server, _) = server_with_studio_fifo(dir.path(), &data, "auto_start = false\n");
    // 10 s of audio, far more than the pipe and the queues hold: the writer finishes only if
    // the server keeps reading while live is off air.
    let path = fifo.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut mixer = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open the FIFO");
        let result = mixer.write_all(&mixer_pcm(10.0));
        let _ = done_tx.send(result.is_ok());
    });
    let written = done_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the mixer was held back: its writes never completed");
    assert!(written, "the mixer's write failed");
    let (status, lines) = server.terminate();
    assert!(status.success(), "server exit {status}");
    let log = lines.join("\n");
    assert!(
        log.contains("it goes on air with `radio-server live start`"),
        "{log}"
    );
    assert!(
        !log.contains("live on air"),
        "aired without live start:\n{log}"
    );
}
