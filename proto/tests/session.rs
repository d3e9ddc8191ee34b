//! Session behaviour on a simulated agent/server pair (see `util/mod.rs`).

mod util;

use std::time::Duration;

use bytes::Bytes;
use radio_proto::{
    AudioFrame, ErrorCode, Event, Message, ProgrammeLevel, ProgrammeStart, Session, SessionConfig,
    SessionState, PROTOCOL_VERSION,
};
use util::{hello, welcome, Pair, Side};

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn handshake_succeeds() {
    for split in [false, true] {
        let mut pair = Pair::new(hello("xa-phu-tho"));
        pair.split_bytes = split;
        assert_eq!(pair.agent.state(), SessionState::AwaitingWelcome);
        assert_eq!(pair.server.state(), SessionState::AwaitingHello);
        pair.drive();
        assert_eq!(pair.server.state(), SessionState::AwaitingAccept);
        assert_eq!(pair.server_events.len(), 1);
        match &pair.server_events[0].1 {
            Event::Hello(h) => assert_eq!(h, &hello("xa-phu-tho")),
            other => panic!("{other:?}"),
        }
        assert!(pair.agent_events.is_empty());

        pair.server.accept(pair.now, welcome(5000));
        pair.drive();
        assert_eq!(pair.agent.state(), SessionState::Established);
        assert_eq!(pair.server.state(), SessionState::Established);
        assert_eq!(pair.agent_events.len(), 1);
        assert!(matches!(&pair.agent_events[0].1, Event::Welcomed(w) if w == &welcome(5000)));
        assert!(!pair.agent.is_closed() && !pair.server.is_closed());
    }
}

#[test]
fn hello_with_other_version_is_rejected_with_unsupported_version() {
    let mut h = hello("xa-future");
    h.version = PROTOCOL_VERSION + 1;
    let mut pair = Pair::new(h);
    pair.drive();
    // The server application never sees the Hello.
    assert!(!pair
        .server_events
        .iter()
        .any(|(_, e)| matches!(e, Event::Hello(_))));
    let (_, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!((code, by_peer), (ErrorCode::UnsupportedVersion, false));
    let (at, code, reason, by_peer) = pair.closed(Side::Agent);
    assert_eq!((code, by_peer), (ErrorCode::UnsupportedVersion, true));
    assert_eq!(at, Duration::ZERO);
    assert!(
        reason.contains('2'),
        "reason should name the version: {reason}"
    );
    assert!(pair.agent.is_closed() && pair.server.is_closed());
}

#[test]
fn welcome_with_other_version_is_refused_by_agent() {
    let mut pair = Pair::new(hello("xa-a"));
    pair.drive();
    let mut w = welcome(5000);
    w.version = PROTOCOL_VERSION + 1;
    pair.server.accept(pair.now, w);
    pair.drive();
    assert!(!pair
        .agent_events
        .iter()
        .any(|(_, e)| matches!(e, Event::Welcomed(_))));
    let (_, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!((code, by_peer), (ErrorCode::UnsupportedVersion, false));
    let (_, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!((code, by_peer), (ErrorCode::UnsupportedVersion, true));
}

#[test]
fn server_reject_is_seen_by_agent() {
    let mut pair = Pair::new(hello("xa-unknown"));
    pair.drive();
    pair.server
        .reject(ErrorCode::UnknownAgent, "no such station: xa-unknown");
    assert_eq!(pair.server.state(), SessionState::Closed);
    pair.drive();
    assert_eq!(
        pair.closed(Side::Server),
        (
            Duration::ZERO,
            ErrorCode::UnknownAgent,
            "no such station: xa-unknown".into(),
            false
        )
    );
    assert_eq!(
        pair.closed(Side::Agent),
        (
            Duration::ZERO,
            ErrorCode::UnknownAgent,
            "no such station: xa-unknown".into(),
            true
        )
    );
    // Nothing is scheduled after close, and nothing more happens.
    assert_eq!(pair.agent.poll_timeout(), None);
    assert_eq!(pair.server.poll_timeout(), None);
    pair.run_until(Duration::from_secs(60));
    assert_eq!(pair.agent_events.len(), 1);
    assert_eq!(pair.server_events.len(), 2); // Hello, Closed
}

#[test]
fn heartbeats_flow_at_the_interval_for_a_minute() {
    for split in [false, true] {
        // The agent is configured for 5 s but must adopt the server's 2 s.
        let mut pair = Pair::new(hello("xa-b"));
        pair.split_bytes = split;
        pair.handshake(welcome(2000));
        pair.agent.set_heartbeat_counters(100, 90, 3, true);
        pair.agent.set_unix_ms(1_700_000_000_000);
        pair.run_until(Duration::from_secs(30));
        pair.agent.set_heartbeat_counters(1600, 1590, 4, false);
        pair.run_until(Duration::from_secs(60));

        for side in [Side::Agent, Side::Server] {
            let hbs = pair.heartbeats(side);
            assert_eq!(hbs.len(), 30, "{side:?} received {} heartbeats", hbs.len());
            for (i, (at, hb)) in hbs.iter().enumerate() {
                assert_eq!(hb.sequence, i as u64, "{side:?}");
                assert_eq!(
                    *at,
                    Duration::from_millis(2000 * (i as u64 + 1)),
                    "{side:?} #{i}"
                );
            }
        }
        // Heartbeats the server received carry the agent's counters of the time.
        let from_agent = pair.heartbeats(Side::Server);
        for (at, hb) in &from_agent {
            let expected = if *at <= Duration::from_secs(30) {
                (100, 90, 3, true)
            } else {
                (1600, 1590, 4, false)
            };
            assert_eq!(
                (
                    hb.frames_received,
                    hb.frames_played,
                    hb.frames_lost,
                    hb.on_air
                ),
                expected,
                "at {at:?}"
            );
            assert_eq!(hb.unix_ms, 1_700_000_000_000);
        }
        // The server's own heartbeats carry its (unset) counters.
        assert!(pair
            .heartbeats(Side::Agent)
            .iter()
            .all(|(_, hb)| hb.frames_received == 0 && !hb.on_air && hb.unix_ms == 0));
        // A minute is four idle timeouts: heartbeats kept both alive.
        assert!(!pair.agent.is_closed() && !pair.server.is_closed());
    }
}

#[test]
fn server_uses_its_config_interval_when_welcome_says_zero() {
    let cfg = SessionConfig {
        heartbeat_interval: Duration::from_secs(3),
        ..SessionConfig::default()
    };
    let mut pair = Pair::with_configs(hello("xa-c"), SessionConfig::default(), cfg);
    pair.drive();
    pair.server.accept(pair.now, welcome(0));
    pair.drive();
    match &pair.agent_events[0].1 {
        Event::Welcomed(w) => assert_eq!(w.heartbeat_interval_ms, 3000),
        other => panic!("{other:?}"),
    }
    pair.run_until(Duration::from_secs(30));
    assert_eq!(pair.heartbeats(Side::Server).len(), 10);
    assert_eq!(pair.heartbeats(Side::Agent).len(), 10);
}

#[test]
fn idle_timeout_when_agent_goes_silent() {
    let mut pair = Pair::new(hello("xa-d"));
    pair.handshake(welcome(5000));
    pair.run_until(Duration::from_secs(12));
    // The agent's last heartbeat reached the server at 10 s; then the link
    // from the agent dies (the agent still hears the server).
    assert_eq!(
        pair.heartbeats(Side::Server).last().map(|(t, _)| *t),
        Some(10 * SECOND)
    );
    pair.drop_from_agent = true;

    pair.run_until(Duration::from_secs(25) - Duration::from_millis(1));
    assert!(
        !pair.server.is_closed(),
        "closed before idle_timeout elapsed"
    );

    pair.run_until(Duration::from_secs(40));
    let (at, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!(
        (at, code, by_peer),
        (25 * SECOND, ErrorCode::Timeout, false)
    );
    // The agent still hears the server, so it learns why.
    let (at, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!((at, code, by_peer), (25 * SECOND, ErrorCode::Timeout, true));
}

#[test]
fn idle_timeout_on_both_sides_when_the_link_dies() {
    let mut pair = Pair::new(hello("xa-e"));
    pair.split_bytes = true;
    pair.handshake(welcome(5000));
    pair.run_until(Duration::from_secs(7));
    pair.drop_from_agent = true;
    pair.drop_from_server = true;
    pair.run_to_end();
    // Last bytes crossed at 5 s, so both give up at 5 + 15 s.
    for side in [Side::Agent, Side::Server] {
        let (at, code, _, by_peer) = pair.closed(side);
        assert_eq!(
            (at, code, by_peer),
            (20 * SECOND, ErrorCode::Timeout, false),
            "{side:?}"
        );
    }
}

#[test]
fn handshake_timeout_when_server_never_decides() {
    // The agent is more patient, so the server's deadline is the one that fires.
    let agent_cfg = SessionConfig {
        handshake_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(30),
        ..SessionConfig::default()
    };
    let mut pair = Pair::with_configs(hello("xa-f"), agent_cfg, SessionConfig::default());
    pair.drive();
    assert_eq!(pair.server.state(), SessionState::AwaitingAccept);
    pair.run_until(Duration::from_secs(10) - Duration::from_millis(1));
    assert!(!pair.server.is_closed());
    pair.run_to_end();
    let (at, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!(
        (at, code, by_peer),
        (10 * SECOND, ErrorCode::Timeout, false)
    );
    let (at, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!((at, code, by_peer), (10 * SECOND, ErrorCode::Timeout, true));
}

#[test]
fn handshake_timeout_when_server_is_unreachable() {
    let mut pair = Pair::new(hello("xa-g"));
    pair.drop_from_agent = true;
    pair.run_until(Duration::from_secs(10) - Duration::from_millis(1));
    assert!(!pair.agent.is_closed());
    pair.run_until(Duration::from_secs(60));
    let (at, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!(
        (at, code, by_peer),
        (10 * SECOND, ErrorCode::Timeout, false)
    );
    // The server never heard a byte: its own handshake deadline closed it too.
    let (at, code, _, _) = pair.closed(Side::Server);
    assert_eq!((at, code), (10 * SECOND, ErrorCode::Timeout));
    assert_eq!(pair.to_server, 0);
}

#[test]
fn audio_frame_on_control_stream_is_a_protocol_violation() {
    let mut pair = Pair::new(hello("xa-h"));
    pair.handshake(welcome(5000));
    let frame = Message::AudioFrame(AudioFrame {
        channel: 0,
        sequence: 0,
        timestamp: 0,
        server_time_us: 0,
        payload: Bytes::from_static(&[0xfc, 0xff, 0xfe]),
    });
    pair.inject(Side::Server, &frame.to_bytes());
    let (_, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!((code, by_peer), (ErrorCode::ProtocolViolation, false));
    let (_, code, reason, by_peer) = pair.closed(Side::Agent);
    assert_eq!((code, by_peer), (ErrorCode::ProtocolViolation, true));
    assert!(reason.contains("AudioFrame"), "{reason}");
}

#[test]
fn prefetch_messages_on_the_control_stream_are_protocol_violations() {
    let manifest = Message::PrefetchManifest(radio_proto::PrefetchManifest::default());
    let chunk = Message::PrefetchChunk(radio_proto::PrefetchChunk {
        blob_sha256: [1; 32],
        blob_size: 3,
        offset: 0,
        data: Bytes::from_static(&[1, 2, 3]),
    });
    for (message, name) in [(manifest, "PrefetchManifest"), (chunk, "PrefetchChunk")] {
        let mut pair = Pair::new(hello("xa-p"));
        pair.handshake(welcome(5000));
        // Sent by the server to the agent: prefetch has streams of its own.
        pair.inject(Side::Agent, &message.to_bytes());
        let (_, code, reason, by_peer) = pair.closed(Side::Agent);
        assert_eq!((code, by_peer), (ErrorCode::ProtocolViolation, false));
        assert!(reason.contains(name), "{reason}");
    }
}

#[test]
fn out_of_state_messages_are_protocol_violations() {
    let programme = Message::ProgrammeStart(ProgrammeStart {
        channel: 0,
        programme_id: 1,
        name: "Bản tin sáng".into(),
        first_sequence: 0,
        first_timestamp: 0,
        frame_count: 0,
        level: ProgrammeLevel::Priority,
    });
    let second_hello = Message::Hello(hello("xa-i"));
    let welcome_to_server = Message::Welcome(welcome(5000));
    let hello_to_agent = Message::Hello(hello("xa-i"));
    let cases: [(&str, bool, Side, Message); 5] = [
        (
            "ProgrammeStart to established server",
            true,
            Side::Server,
            programme.clone(),
        ),
        (
            "ProgrammeStart to waiting agent",
            false,
            Side::Agent,
            programme,
        ),
        ("second Hello", false, Side::Server, second_hello),
        ("Welcome to server", true, Side::Server, welcome_to_server),
        ("Hello to agent", false, Side::Agent, hello_to_agent),
    ];
    for (name, establish, to, msg) in cases {
        let mut pair = Pair::new(hello("xa-i"));
        if establish {
            pair.handshake(welcome(5000));
        } else {
            pair.drive();
        }
        pair.inject(to, &msg.to_bytes());
        let (_, code, _, by_peer) = pair.closed(to);
        assert_eq!(
            (code, by_peer),
            (ErrorCode::ProtocolViolation, false),
            "{name}"
        );
    }
}

#[test]
fn garbage_bytes_close_with_malformed() {
    let mut pair = Pair::new(hello("xa-j"));
    pair.handshake(welcome(5000));
    // A Hello type byte with a body that cannot be a Hello: version, then a
    // string length of 0xff.. whose 8-byte varint runs past the 5-byte body.
    pair.inject(Side::Agent, &[0x01, 0x05, 0xde, 0xad, 0xff, 0xff, 0xff]);
    let (_, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!((code, by_peer), (ErrorCode::Malformed, false));
    let (_, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!((code, by_peer), (ErrorCode::Malformed, true));
}

#[test]
fn unknown_type_closes_with_unknown_message_and_oversize_with_too_large() {
    let mut pair = Pair::new(hello("xa-k"));
    pair.inject(Side::Server, &[0x99, 0x00]);
    assert_eq!(pair.closed(Side::Server).1, ErrorCode::UnknownMessage);

    let mut pair = Pair::new(hello("xa-l"));
    // Hello header declaring 16 KiB.
    pair.inject(Side::Server, &[0x01, 0x80, 0x00, 0x40, 0x00]);
    assert_eq!(pair.closed(Side::Server).1, ErrorCode::TooLarge);
}

#[test]
fn closed_is_emitted_once_and_input_ignored_afterwards() {
    let now = std::time::Instant::now();
    let mut s = Session::server(SessionConfig::default(), now);
    s.close(ErrorCode::Shutdown, "bye");
    s.close(ErrorCode::Internal, "again");
    s.reject(ErrorCode::Busy, "and again");
    s.handle_input(now, &Message::Hello(hello("xa-m")).to_bytes());
    s.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(
        s.poll_event(),
        Some(Event::Closed {
            code: ErrorCode::Shutdown,
            reason: "bye".into(),
            by_peer: false
        })
    );
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.poll_timeout(), None);
    // Exactly one Error queued, and it is still handed out after close.
    let bytes = s.poll_transmit().expect("Error frame");
    assert_eq!(bytes[0], 0x30);
    assert_eq!(s.poll_transmit(), None);
}

#[test]
fn peer_error_after_local_close_does_not_emit_a_second_closed() {
    let mut pair = Pair::new(hello("xa-n"));
    pair.handshake(welcome(5000));
    // Both sides close at the same moment; each then receives the other's Error.
    pair.agent.close(ErrorCode::Shutdown, "agent stopping");
    pair.server.close(ErrorCode::Shutdown, "server stopping");
    pair.drive();
    assert!(!pair.closed(Side::Agent).3);
    assert!(!pair.closed(Side::Server).3);
}

#[test]
fn accept_outside_awaiting_accept_is_ignored() {
    let now = std::time::Instant::now();
    let mut server = Session::server(SessionConfig::default(), now);
    server.accept(now, welcome(5000));
    assert_eq!(server.state(), SessionState::AwaitingHello);
    assert_eq!(server.poll_transmit(), None);

    let mut agent = Session::agent(hello("xa-o"), SessionConfig::default(), now);
    let _hello = agent.poll_transmit();
    agent.accept(now, welcome(5000));
    assert_eq!(agent.state(), SessionState::AwaitingWelcome);
    assert_eq!(agent.poll_transmit(), None);
}

#[test]
fn zero_heartbeat_interval_in_welcome_is_refused() {
    let now = std::time::Instant::now();
    let mut agent = Session::agent(hello("xa-p"), SessionConfig::default(), now);
    agent.handle_input(now, &Message::Welcome(welcome(0)).to_bytes());
    assert!(matches!(
        agent.poll_event(),
        Some(Event::Closed {
            code: ErrorCode::ProtocolViolation,
            by_peer: false,
            ..
        })
    ));
}

#[test]
fn late_timer_sends_one_heartbeat_not_a_burst() {
    let mut pair = Pair::new(hello("xa-q"));
    pair.handshake(welcome(1000));
    // The agent's event loop stalls for 5.5 s, well under the idle timeout.
    let late = pair.now + Duration::from_millis(5500);
    pair.agent.handle_timeout(late);
    let mut sent = 0;
    while pair.agent.poll_transmit().is_some() {
        sent += 1;
    }
    assert_eq!(sent, 1);
    assert_eq!(
        pair.agent.poll_timeout(),
        Some(late + Duration::from_secs(1))
    );
}

/// A server that heartbeats slower than the agent's own idle timeout must not make the agent
/// hang up on a healthy link (the agent adopts the server's pace).
#[test]
fn slow_server_heartbeats_do_not_time_the_agent_out() {
    let server_config = SessionConfig {
        heartbeat_interval: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(10),
    };
    let mut pair = Pair::with_configs(hello("xa-b"), SessionConfig::default(), server_config);
    pair.handshake(welcome(20_000));
    pair.run_until(Duration::from_secs(300));
    assert_eq!(pair.agent.state(), SessionState::Established);
    assert_eq!(pair.server.state(), SessionState::Established);
    assert!(pair.heartbeats(Side::Agent).len() >= 14);
}

#[test]
fn journal_batches_go_up_and_acknowledgements_come_down() {
    use radio_proto::{JournalAck, JournalBatch, JournalEvent, JournalRecord};
    let batch = JournalBatch {
        journal_id: 42,
        records: vec![
            JournalRecord {
                seq: 7,
                unix_ms: 1_700_000_000_000,
                event: JournalEvent::ProcessStop,
            },
            JournalRecord {
                seq: 8,
                unix_ms: 1_700_000_000_020,
                event: JournalEvent::LinkUp { server_run: 3 },
            },
        ],
    };
    let mut pair = Pair::new(hello("xa-phu-tho"));
    // Before the session is established a batch is not sent at all: it waits in the journal.
    pair.agent.send_journal_batch(batch.clone());
    pair.handshake(welcome(5000));
    pair.agent.send_journal_batch(batch.clone());
    pair.drive();
    let got: Vec<&JournalBatch> = pair
        .events(Side::Server)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::JournalBatch(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(got, vec![&batch]);
    let ack = JournalAck {
        journal_id: 42,
        first_seq: 7,
        last_seq: 8,
    };
    pair.server.send_journal_ack(ack);
    // The roles are not interchangeable: these are ignored.
    pair.server.send_journal_batch(batch.clone());
    pair.agent.send_journal_ack(ack);
    pair.drive();
    let acks: Vec<JournalAck> = pair
        .events(Side::Agent)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::JournalAck(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(acks, vec![ack]);
    assert!(!pair.agent.is_closed() && !pair.server.is_closed());

    // A server that sends a batch anyway breaks the protocol.
    pair.inject(Side::Agent, &Message::JournalBatch(batch).to_bytes());
    pair.drive();
    let (_, code, _, by_peer) = pair.closed(Side::Agent);
    assert_eq!((code, by_peer), (ErrorCode::ProtocolViolation, false));
}

#[test]
fn clock_probes_are_answered_on_the_server_media_clock() {
    use radio_proto::{ClockProbe, ClockReply, MediaClock};
    let mut pair = Pair::new(hello("xa-binh-hai"));
    // The server process started 10 s before this session.
    pair.server
        .set_media_clock(MediaClock::new(pair.start - Duration::from_secs(10)));
    // Not sent before the session is established.
    pair.agent.send_clock_probe(ClockProbe {
        id: 1,
        agent_send_us: 5,
    });
    pair.handshake(welcome(5000));
    pair.run_until(Duration::from_millis(2_500));
    let probe = ClockProbe {
        id: 2,
        agent_send_us: 2_500_000,
    };
    pair.agent.send_clock_probe(probe);
    // A server does not probe.
    pair.server.send_clock_probe(probe);
    pair.drive();
    let replies: Vec<(ClockReply, std::time::Instant)> = pair
        .events(Side::Agent)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::ClockReply { reply, received_at } => Some((*reply, *received_at)),
            _ => None,
        })
        .collect();
    assert_eq!(
        replies,
        vec![(
            ClockReply {
                id: 2,
                agent_send_us: 2_500_000,
                server_receive_us: 12_500_000,
                server_send_us: 12_500_000,
            },
            pair.start + Duration::from_millis(2_500)
        )]
    );
    // Nothing else reached the server application.
    assert_eq!(pair.events(Side::Server).len(), 1, "only the Hello");
    assert!(!pair.agent.is_closed() && !pair.server.is_closed());
}

#[test]
fn clock_messages_in_the_wrong_direction_or_state_are_protocol_violations() {
    use radio_proto::{ClockProbe, ClockReply};
    let probe = Message::ClockProbe(ClockProbe {
        id: 1,
        agent_send_us: 1,
    });
    let reply = Message::ClockReply(ClockReply {
        id: 1,
        agent_send_us: 1,
        server_receive_us: 2,
        server_send_us: 2,
    });
    let cases = [
        ("probe to agent", true, Side::Agent, probe.clone()),
        ("reply to server", true, Side::Server, reply.clone()),
        ("probe before welcome", false, Side::Server, probe),
        ("reply before welcome", false, Side::Agent, reply),
    ];
    for (name, establish, to, msg) in cases {
        let mut pair = Pair::new(hello("xa-i"));
        if establish {
            pair.handshake(welcome(5000));
        } else {
            pair.drive();
        }
        pair.inject(to, &msg.to_bytes());
        let (_, code, _, by_peer) = pair.closed(to);
        assert_eq!(
            (code, by_peer),
            (ErrorCode::ProtocolViolation, false),
            "{name}"
        );
    }
}

#[test]
fn box_health_flows_only_from_agents_that_announce_it() {
    use radio_proto::{BoxHealth, Capabilities};
    let health = BoxHealth {
        unix_ms: 1_700_000_000_000,
        temperature_mc: Some(81_000),
        ..BoxHealth::default()
    };
    let received = |pair: &util::Pair| -> Vec<BoxHealth> {
        pair.events(Side::Server)
            .iter()
            .filter_map(|(_, e)| match e {
                Event::BoxHealth(h) => Some(h.clone()),
                _ => None,
            })
            .collect()
    };
    let mut announcing = hello("xa-phu-tho");
    announcing.capabilities |= Capabilities::BOX_HEALTH;
    let mut pair = Pair::new(announcing);
    // Not before the session is established.
    pair.agent.send_box_health(health.clone());
    pair.handshake(welcome(5000));
    pair.agent.send_box_health(health.clone());
    pair.drive();
    assert_eq!(received(&pair), vec![health.clone()]);
    assert!(!pair.agent.is_closed() && !pair.server.is_closed());

    // An agent that did not announce it does not send it...
    let mut pair = Pair::new(hello("xa-phu-tho"));
    pair.handshake(welcome(5000));
    pair.agent.send_box_health(health.clone());
    pair.drive();
    assert!(received(&pair).is_empty());
    assert!(!pair.server.is_closed());
    // ...and one that sends it anyway breaks the protocol: the server was not told to expect it.
    pair.inject(Side::Server, &Message::BoxHealth(health).to_bytes());
    pair.drive();
    let (_, code, _, by_peer) = pair.closed(Side::Server);
    assert_eq!((code, by_peer), (ErrorCode::ProtocolViolation, false));
}
