//! The outage scenario of issue 5's acceptance, shared by its test and its benchmark: a real
//! server plays a programme to a real agent through the impairment proxy; the link is
//! blackholed while it plays and then restored. It measures when the audio came back at the
//! loudspeaker and what the journal the server stored says about the outage.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rtp_capture::{programme_audio, RtpCapture};
use crate::{
    enroll, start_agent, start_server, test_signal, write_wav, Impairment, ImpairmentProxy,
    PATIENCE,
};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct OutageRun {
    /// The blackhole's length.
    pub hole: Duration,
    /// From the blackhole's start to the last programme packet before the silence (the jitter
    /// buffer plays on for its playout delay).
    pub last_packet: Duration,
    /// From the link's return to the first programme packet after it.
    pub audio_back: Duration,
    /// The journaled `LinkDown`, in ms from the blackhole's start (negative: before it).
    pub journal_down_ms: i64,
    /// The journaled `LinkUp` after the outage, in ms from the blackhole's start.
    pub journal_up_ms: i64,
}

/// Runs the scenario in `dir` with a blackhole of `hole`.
pub fn blackhole_during_programme(dir: &std::path::Path, hole: Duration) -> OutageRun {
    let data = dir.join("server-data");
    let bundle = dir.join("bundle.toml");
    enroll(&data, "binh-hai", &bundle);
    let programme = dir.join("programme.wav");
    write_wav(&programme, &test_signal(hole.as_secs_f32() + 45.0), 48_000);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 1);
    let upstream: SocketAddr = addr.parse().expect("server address");
    let proxy = ImpairmentProxy::start(upstream, Impairment::none());
    let capture = RtpCapture::start().expect("start the RTP receiver");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &proxy.local_addr().to_string(),
        &dir.join("state"),
        &[format!("rtp:{}", capture.addr())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    server.wait_for("on air", Duration::from_secs(10));
    // A session that lasted (10 s, `relay_agent::reconnect::STABLE_AFTER`) is what a station
    // has before a storm; a link that keeps dropping sooner is backed off instead. A deliberate
    // duration, not a wait for anything.
    std::thread::sleep(Duration::from_secs(8));

    let started = Instant::now();
    let started_unix_ms = unix_ms();
    proxy.blackhole(hole);
    agent.wait_for("connection lost", hole);
    agent.wait_for_nth("link up", 2, hole + Duration::from_secs(15));
    let restored = started + hole;
    // The audio back at the loudspeaker: a second of programme after the link's return.
    capture.wait_for_programme_audio(restored, 50, PATIENCE);
    let audio = programme_audio(&capture.stop());

    let settled = started + Duration::from_secs(2).min(hole / 2);
    let last_packet = audio
        .iter()
        .copied()
        .filter(|t| *t < settled)
        .max()
        .expect("programme audio before the outage");
    let resumed = audio
        .iter()
        .copied()
        .find(|t| *t > settled)
        .expect("programme audio after the outage");
    assert!(
        resumed >= restored,
        "programme audio during the blackhole ({:?} in)",
        resumed - started
    );

    // The outage's records uploaded (the link's return is the last of them), then the
    // server's store, read with the server stopped.
    let returned = agent.wait_journaled("LinkUp", 2, PATIENCE);
    agent.wait_acknowledged(returned, PATIENCE);
    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    let _ = server.terminate();
    let stored = crate::journal_dump::stored(&data, "binh-hai");
    let link_events: Vec<(i64, bool)> = stored
        .iter()
        .filter_map(|r| {
            let from_start = r.unix_ms - started_unix_ms as i64;
            if r.event.starts_with("LinkUp") {
                Some((from_start, true))
            } else if r.event.starts_with("LinkDown") {
                Some((from_start, false))
            } else {
                None
            }
        })
        .collect();
    // Up, down at the outage's start, up at its end (the agent's stop was not uploaded).
    let [(_, true), (journal_down_ms, false), (journal_up_ms, true)] = link_events[..] else {
        panic!("link records (ms from the blackhole): {link_events:?}\n{stored:#?}");
    };
    OutageRun {
        hole,
        last_packet: last_packet - started,
        audio_back: resumed - restored,
        journal_down_ms,
        journal_up_ms,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
