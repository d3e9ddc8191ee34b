//! Two agents, one of them 100 ms further from the server (each way), play the same frames at the
//! same instants: each plays a frame at its server time plus the playout delay, on its estimate
//! of the server's clock, not when the frame happened to arrive.
//!
//! A correctness check with a loose bound, not a timing goal (that is the `playout_spread`
//! benchmark): timed on arrival, the far agent would play every frame about 100 ms late.

use std::net::SocketAddr;
use std::time::Duration;

use radio_tests::rtp_capture::{playout_spread, quantile, RtpCapture};
use radio_tests::{
    enroll, start_agent, start_server, test_signal, write_wav, Impairment, ImpairmentProxy,
    LinkImpairment, PATIENCE,
};

#[test]
fn an_agent_100_ms_further_away_plays_in_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(6.0), 48_000);
    let communes = ["binh-trung", "binh-duong"];
    for commune in communes {
        enroll(&data, commune, &dir.path().join(format!("{commune}.toml")));
    }
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 2);
    let upstream: SocketAddr = addr.parse().expect("server address");
    let far = ImpairmentProxy::start(
        upstream,
        Impairment::both(LinkImpairment::default().with_delay(Duration::from_millis(100))),
    );
    let mut captures = Vec::new();
    let mut agents = Vec::new();
    for (commune, server_addr) in communes
        .iter()
        .zip([addr.clone(), far.local_addr().to_string()])
    {
        let capture = RtpCapture::start().expect("capture port");
        agents.push(start_agent(
            commune,
            &dir.path().join(format!("{commune}.toml")),
            &server_addr,
            &dir.path().join("state").join(commune),
            &[format!("rtp:127.0.0.1:{}", capture.port())],
        ));
        captures.push(capture);
    }
    for agent in &mut agents {
        agent.wait_for("server clock known", Duration::from_secs(30));
    }
    server.wait_for("off air", Duration::from_secs(60));
    // Both play out their buffers (the playout delay) before they are stopped.
    for agent in &mut agents {
        agent.wait_played_out(1, PATIENCE);
    }
    for agent in agents {
        let (status, _) = agent.terminate();
        assert!(status.success());
    }
    let _ = server.terminate();

    let packets: Vec<_> = captures.into_iter().map(RtpCapture::stop).collect();
    let spreads = playout_spread(&packets);
    // 6 s is 300 frames; a few may be lost to the start-up or be indistinguishable.
    assert!(
        spreads.len() >= 250,
        "only {} frames were played once by both agents",
        spreads.len()
    );
    let median = quantile(&spreads, 0.5).expect("frames");
    let p99 = quantile(&spreads, 0.99).expect("frames");
    eprintln!(
        "{} frames: spread p50 {median:.0} µs, p99 {p99:.0} µs",
        spreads.len()
    );
    assert!(
        median < 10_000.0,
        "the agents play {median:.0} µs apart (median): not in step"
    );
    let stats = far.stats();
    assert!(
        stats.server_to_client.delayed > 0 && stats.client_to_server.delayed > 0,
        "the far agent's link was not delayed: {stats:?}"
    );
}
