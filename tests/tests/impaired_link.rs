//! The agent reaches the server through the impairment proxy, and the link goes dead for a while
//! (a blackhole: every datagram lost, both ways). An outage shorter than the QUIC idle timeout
//! (3 s, `relay-agent/src/tls.rs`) goes unnoticed; a longer one takes the link down within
//! seconds, and the agent reconnects by itself once datagrams flow again.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use radio_tests::{
    binary, enroll, start_agent, start_server, test_signal, write_wav, Impairment, ImpairmentProxy,
};

#[test]
fn agent_rides_out_a_short_blackhole_and_reconnects_after_a_long_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-hai", &bundle);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", None, 0);
    let upstream: SocketAddr = addr.parse().expect("server address");
    let proxy = ImpairmentProxy::start(upstream, Impairment::none());
    let mut agent = start_agent(
        "agent",
        &bundle,
        &proxy.local_addr().to_string(),
        &dir.path().join("state"),
        &[format!("wav:{}", dir.path().join("out.wav").display())],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    server.wait_for("session established", Duration::from_secs(10));

    // Well inside the idle timeout, with keep-alives every 500 ms to notice that it is over.
    proxy.blackhole(Duration::from_secs(1));
    std::thread::sleep(Duration::from_secs(3));

    // The idle timer restarts with the first keep-alive sent into the silence, and runs late on
    // a busy machine; the outage lasts well past it so that the link surely goes down inside it.
    let hole = Duration::from_secs(10);
    let started = Instant::now();
    proxy.blackhole(hole);
    let down = agent.wait_for("connection lost", hole + Duration::from_secs(5));
    let down_after = started.elapsed();
    assert!(
        down_after < hole,
        "link noticed down only after the blackhole ended ({down_after:?}): {down}"
    );
    agent.wait_for_nth("link up", 2, Duration::from_secs(30));
    let up_after = started.elapsed();
    eprintln!("blackhole of {hole:?}: link down after {down_after:?}, up again after {up_after:?}");
    assert!(
        up_after >= hole,
        "link up again inside the blackhole ({up_after:?})"
    );
    // Generous: a reconnect attempt may be waiting out its backoff or its handshake timeout.
    assert!(
        up_after < hole + Duration::from_secs(20),
        "no reconnect within 20 s of the blackhole's end ({up_after:?})"
    );

    let stats = proxy.stats();
    assert!(
        stats.client_to_server.dropped_blackhole > 0
            && stats.server_to_client.dropped_blackhole > 0,
        "{stats:?}"
    );
    assert_eq!(stats.clients, 1, "the agent kept its UDP socket: {stats:?}");
    let (status, output) = agent.terminate();
    assert!(status.success());
    let links = output.iter().filter(|l| l.contains("link up")).count();
    assert_eq!(
        links,
        2,
        "the short blackhole must not have cost a session:\n{}",
        output.join("\n")
    );
    assert!(
        output
            .iter()
            .any(|l| l.contains("probing for the server") || l.contains("reconnecting in")),
        "no reconnect logged:\n{}",
        output.join("\n")
    );
    let _ = server.terminate();
}

/// Acceptance (issue 5): the link is blackholed for 30 s while a programme plays. The agent
/// finds the link dead within seconds, probes for the server, and the audio is back at the
/// loudspeaker within a second of the link's return; the journal the server stores shows the
/// outage from when the server was last heard to when the link came back.
#[test]
fn after_a_30_s_blackhole_audio_resumes_within_a_second_and_the_outage_is_journaled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-hai", &bundle);
    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(75.0), 48_000);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 1);
    let upstream: SocketAddr = addr.parse().expect("server address");
    let proxy = ImpairmentProxy::start(upstream, Impairment::none());

    // The loudspeaker: an RTP receiver noting when each packet arrives.
    let receiver = UdpSocket::bind("127.0.0.1:0").expect("bind the receiver");
    let receiver_addr = receiver.local_addr().expect("receiver address");
    receiver
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    let arrivals = Arc::new(Mutex::new(Vec::<(Instant, Vec<u8>)>::new()));
    let listening = Arc::new(AtomicBool::new(true));
    let listener = {
        let (arrivals, listening) = (arrivals.clone(), listening.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while listening.load(Ordering::Relaxed) {
                if let Ok(n) = receiver.recv(&mut buf) {
                    let payload = buf.get(12..n).unwrap_or_default().to_vec();
                    arrivals
                        .lock()
                        .expect("arrivals")
                        .push((Instant::now(), payload));
                }
            }
        })
    };
    let mut agent = start_agent(
        "agent",
        &bundle,
        &proxy.local_addr().to_string(),
        &dir.path().join("state"),
        &[format!("rtp:{receiver_addr}")],
    );
    agent.wait_for("link up", Duration::from_secs(30));
    server.wait_for("on air", Duration::from_secs(10));
    // A session that lasted (10 s, `relay_agent::reconnect::STABLE_AFTER`) is what a station
    // has before a storm; a link that keeps dropping sooner is backed off instead.
    std::thread::sleep(Duration::from_secs(8));

    let hole = Duration::from_secs(30);
    let started = Instant::now();
    let started_unix_ms = unix_ms();
    proxy.blackhole(hole);
    agent.wait_for("connection lost", hole);
    agent.wait_for_nth("link up", 2, hole + Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(3));
    listening.store(false, Ordering::Relaxed);
    listener.join().expect("receiver thread");

    // Silent slots all carry the same packet; every packet of the programme is different.
    let arrivals = arrivals.lock().expect("arrivals").clone();
    let mut seen = std::collections::HashMap::<&[u8], usize>::new();
    for (_, payload) in &arrivals {
        *seen.entry(payload).or_default() += 1;
    }
    let arrivals: Vec<Instant> = arrivals
        .iter()
        .filter(|(_, payload)| seen[payload.as_slice()] == 1)
        .map(|(at, _)| *at)
        .collect();
    let restored = started + hole;
    // The jitter buffer plays its last fraction of a second into the outage; then nothing.
    let silent_from = arrivals
        .iter()
        .copied()
        .filter(|t| *t < started + Duration::from_secs(2))
        .max()
        .expect("audio before the outage");
    let resumed = arrivals
        .iter()
        .copied()
        .find(|t| *t > started + Duration::from_secs(2))
        .expect("audio after the outage");
    let after = resumed.saturating_duration_since(restored);
    eprintln!(
        "blackhole of {hole:?}: last packet {:?} in, audio back {after:?} after the link returned",
        silent_from - started
    );
    assert!(
        resumed >= restored,
        "audio during the blackhole ({:?} in)",
        resumed - started
    );
    assert!(
        after <= Duration::from_secs(1),
        "audio back only {after:?} after the link returned (goal: within 1 s)"
    );

    // The upload of the journal, then the server's store is read with the server stopped.
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = agent.terminate();
    assert!(status.success());
    let _ = server.terminate();
    let out = std::process::Command::new(binary("radio-server"))
        .args(["journal", "--data-dir"])
        .arg(&data)
        .args(["--agent", "binh-hai"])
        .output()
        .expect("radio-server journal");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let link_events: Vec<(i64, bool)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let at: i64 = fields.get(2)?.parse().ok()?;
            let event = fields.get(3)?;
            if event.starts_with("LinkUp") {
                Some((at - started_unix_ms as i64, true))
            } else if event.starts_with("LinkDown") {
                Some((at - started_unix_ms as i64, false))
            } else {
                None
            }
        })
        .collect();
    // Up, down at the outage's start, up at its end (the agent's stop was not uploaded).
    let [(_, true), (down, false), (up, true)] = link_events[..] else {
        panic!("link records (ms from the blackhole): {link_events:?}\n{text}");
    };
    eprintln!("journal: link down {down} ms and up {up} ms from the blackhole's start");
    // The server was last heard at most one keep-alive (500 ms) and one check (100 ms) before.
    assert!(
        (-1_000..=100).contains(&down),
        "outage journaled from {down} ms, not from its start:\n{text}"
    );
    let hole_ms = hole.as_millis() as i64;
    assert!(
        (hole_ms..=hole_ms + 1_000).contains(&up),
        "outage journaled until {up} ms, the link returned at {hole_ms} ms:\n{text}"
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
