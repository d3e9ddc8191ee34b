//! A programme file reaches every agent: the real `radio-server` and three `relay-agent` processes
//! on loopback, mutual TLS with enrolled bundles, a generated test signal, and each agent's WAV
//! compared with the source after alignment.

use std::time::Duration;

use radio_tests::{
    compare, enroll, read_wav, start_agent, start_server, test_signal, write_wav, PATIENCE,
};

const COMMUNES: [&str; 3] = ["binh-trung", "binh-duong", "binh-thanh-nang"];

#[test]
fn every_agent_plays_the_file_faithfully_and_completely() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let signal = test_signal(4.0);
    let signal_path = dir.path().join("signal.wav");
    write_wav(&signal_path, &signal, 48_000);

    for commune in COMMUNES {
        enroll(
            &data,
            commune,
            &dir.path().join(format!("{commune}.bundle.toml")),
        );
    }
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&signal_path), COMMUNES.len());

    let mut agents = Vec::new();
    for commune in COMMUNES {
        let wav = dir.path().join(format!("{commune}.wav"));
        agents.push(start_agent(
            commune,
            &dir.path().join(format!("{commune}.bundle.toml")),
            &addr,
            &dir.path().join("state").join(commune),
            &[format!("wav:{}", wav.display())],
        ));
    }
    for agent in &mut agents {
        agent.wait_for("link up", Duration::from_secs(30));
    }
    server.wait_for("off air", Duration::from_secs(60));
    // The agents play out their buffers (300 ms playout delay) before they are stopped.
    for agent in &mut agents {
        agent.wait_played_out(1, PATIENCE);
    }

    let frames = signal.len().div_ceil(960);
    for (commune, agent) in COMMUNES.iter().zip(agents) {
        let (status, output) = agent.terminate();
        assert!(status.success(), "{commune} exit status {status}");
        let proof = format!("played {frames}/{frames} frames");
        assert!(
            output.iter().any(|l| l.contains(&proof)),
            "{commune}: no proof of play `{proof}` (a frame is missing):\n{}",
            output.join("\n")
        );
        let (played, rate) = read_wav(&dir.path().join(format!("{commune}.wav")));
        assert_eq!(rate, 48_000);
        let s = compare(&signal, &played, 48_000);
        println!("{commune}: {s:?}");
        assert!(
            s.correlation >= 0.95 || s.snr_db >= 20.0,
            "{commune}: output does not match the source: {s:?}"
        );
        assert!(
            s.blocks_ok >= 0.99,
            "{commune}: some 20 ms blocks do not match (missing or repeated frames): {s:?}"
        );
    }
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit status {status}");
}
