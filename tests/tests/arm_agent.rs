//! The agent on an ARM board: the aarch64 `relay-agent` (cross-built by `make cross`) runs under
//! qemu-user against the x86 `radio-server` on loopback, plays a programme file and its WAV is
//! compared with the source, as `file_to_loudspeakers.rs` does for the native agent.
//!
//! The binary's path comes from `RADIO_AARCH64_AGENT`, which `make test` sets after building it;
//! without it the test skips (and so fails under `make test`).

use std::path::PathBuf;

use radio_tests::{
    compare, enroll, read_wav, require_tool, skip, start_aarch64_agent, start_server, test_signal,
    write_wav, PATIENCE, QEMU_AARCH64,
};

/// The variable that names the cross-built aarch64 agent.
const AGENT_ENV: &str = "RADIO_AARCH64_AGENT";

fn aarch64_agent() -> Option<PathBuf> {
    let Some(path) = std::env::var_os(AGENT_ENV).filter(|p| !p.is_empty()) else {
        skip(&format!(
            "{AGENT_ENV} is not set (`make test` cross-builds the aarch64 agent and sets it)"
        ));
        return None;
    };
    if !require_tool(QEMU_AARCH64[0]) {
        return None;
    }
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{AGENT_ENV}={} is not a file (run `make cross`)",
        path.display()
    );
    Some(path)
}

#[test]
fn the_aarch64_agent_under_qemu_plays_the_file_faithfully_and_in_time() {
    let Some(agent_path) = aarch64_agent() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let signal = test_signal(4.0);
    let signal_path = dir.path().join("signal.wav");
    write_wav(&signal_path, &signal, 48_000);
    let bundle = dir.path().join("arm.bundle.toml");
    enroll(&data, "binh-trung", &bundle);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&signal_path), 1);

    let (mut agent, wav) = start_aarch64_agent(&agent_path, &bundle, &addr, dir.path());
    // Emulated, the agent's start (TLS, the journal's sled database) is slower than native.
    agent.wait_for("link up", PATIENCE);
    server.wait_for("off air", PATIENCE);
    agent.wait_played_out(1, PATIENCE);

    let (status, output) = agent.terminate();
    assert!(status.success(), "aarch64 agent exit status {status}");
    let log = output.join("\n");
    let frames = signal.len().div_ceil(960);
    let proof = format!("played {frames}/{frames} frames");
    assert!(
        output.iter().any(|l| l.contains(&proof)),
        "no proof of play `{proof}` (a frame is missing):\n{log}"
    );
    // Keeping up with real time under emulation: no frame played after its slot, no slot left
    // empty while the programme ran.
    let stopped = output
        .iter()
        .find(|l| l.contains("stopped cleanly"))
        .unwrap_or_else(|| panic!("no `stopped cleanly` line:\n{log}"));
    for counter in ["late=0", "lost=0", "underrun_slots=0"] {
        assert!(
            stopped.contains(counter),
            "the emulated agent fell behind real time ({counter} expected): {stopped}"
        );
    }
    let (played, rate) = read_wav(&wav);
    assert_eq!(rate, 48_000);
    let s = compare(&signal, &played, 48_000);
    println!("aarch64 under qemu: {s:?}");
    assert!(
        s.correlation >= 0.95 || s.snr_db >= 20.0,
        "output does not match the source: {s:?}"
    );
    assert!(
        s.blocks_ok >= 0.99,
        "some 20 ms blocks do not match (missing or repeated frames): {s:?}"
    );
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit status {status}");
}
