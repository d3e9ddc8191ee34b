//! Pins every number that is part of the wire format.
//!
//! The `const` assertions fail the *build* of this test if a value is
//! renumbered; the exhaustive `match`es fail it if a variant is added without
//! being pinned here.

use radio_proto::{
    ClusterState, Encode, ErrorCode, JournalEvent, JournalRecord, MessageType, OutputState,
    ProgrammeLevel, ALPN, FRAME_SAMPLES, MAX_FRAME_SIZE, PROTOCOL_VERSION, SAMPLE_RATE,
};

const ERROR_CODES: [(ErrorCode, u16); 13] = [
    (ErrorCode::Malformed, 1),
    (ErrorCode::UnknownMessage, 2),
    (ErrorCode::TooLarge, 3),
    (ErrorCode::UnsupportedVersion, 4),
    (ErrorCode::UnknownAgent, 5),
    (ErrorCode::IdentityMismatch, 6),
    (ErrorCode::ProtocolViolation, 7),
    (ErrorCode::Timeout, 8),
    (ErrorCode::Shutdown, 9),
    (ErrorCode::Internal, 10),
    (ErrorCode::Revoked, 11),
    (ErrorCode::Busy, 12),
    (ErrorCode::Replaced, 13),
];

const MESSAGE_TYPES: [(MessageType, u8); 14] = [
    (MessageType::Hello, 0x01),
    (MessageType::Welcome, 0x02),
    (MessageType::AudioFrame, 0x10),
    (MessageType::ProgrammeStart, 0x11),
    (MessageType::ProgrammeEnd, 0x12),
    (MessageType::Heartbeat, 0x20),
    (MessageType::ClockProbe, 0x21),
    (MessageType::ClockReply, 0x22),
    (MessageType::BoxHealth, 0x23),
    (MessageType::Error, 0x30),
    (MessageType::JournalBatch, 0x40),
    (MessageType::JournalAck, 0x41),
    (MessageType::PrefetchManifest, 0x50),
    (MessageType::PrefetchChunk, 0x51),
];

const _: () = {
    let mut i = 0;
    while i < ERROR_CODES.len() {
        assert!(
            ERROR_CODES[i].0 as u16 == ERROR_CODES[i].1,
            "ErrorCode renumbered"
        );
        i += 1;
    }
    let mut i = 0;
    while i < MESSAGE_TYPES.len() {
        assert!(
            MESSAGE_TYPES[i].0 as u8 == MESSAGE_TYPES[i].1,
            "MessageType renumbered"
        );
        i += 1;
    }
};

/// No wildcard arm: a new code must be added here (and to the table).
fn pinned_error_code(code: ErrorCode) -> u16 {
    match code {
        ErrorCode::Malformed => 1,
        ErrorCode::UnknownMessage => 2,
        ErrorCode::TooLarge => 3,
        ErrorCode::UnsupportedVersion => 4,
        ErrorCode::UnknownAgent => 5,
        ErrorCode::IdentityMismatch => 6,
        ErrorCode::ProtocolViolation => 7,
        ErrorCode::Timeout => 8,
        ErrorCode::Shutdown => 9,
        ErrorCode::Internal => 10,
        ErrorCode::Revoked => 11,
        ErrorCode::Busy => 12,
        ErrorCode::Replaced => 13,
    }
}

/// No wildcard arm: a new type must be added here (and to the table).
fn pinned_message_type(t: MessageType) -> u8 {
    match t {
        MessageType::Hello => 0x01,
        MessageType::Welcome => 0x02,
        MessageType::AudioFrame => 0x10,
        MessageType::ProgrammeStart => 0x11,
        MessageType::ProgrammeEnd => 0x12,
        MessageType::Heartbeat => 0x20,
        MessageType::ClockProbe => 0x21,
        MessageType::ClockReply => 0x22,
        MessageType::BoxHealth => 0x23,
        MessageType::Error => 0x30,
        MessageType::JournalBatch => 0x40,
        MessageType::JournalAck => 0x41,
        MessageType::PrefetchManifest => 0x50,
        MessageType::PrefetchChunk => 0x51,
    }
}

#[test]
fn error_codes_are_pinned() {
    for (code, value) in ERROR_CODES {
        assert_eq!(code.as_u16(), value, "{code:?}");
        assert_eq!(pinned_error_code(code), value, "{code:?}");
        assert_eq!(ErrorCode::from_u16(value), Some(code));
        assert!(!code.description().is_empty());
    }
    assert_eq!(
        ErrorCode::ALL.to_vec(),
        ERROR_CODES.map(|(c, _)| c).to_vec()
    );
    assert_eq!(ErrorCode::from_u16(0), None);
    assert_eq!(ErrorCode::from_u16(14), None);
    assert_eq!(ErrorCode::from_u16(u16::MAX), None);
}

#[test]
fn message_types_are_pinned() {
    for (t, byte) in MESSAGE_TYPES {
        assert_eq!(t.as_u8(), byte, "{t:?}");
        assert_eq!(pinned_message_type(t), byte, "{t:?}");
        assert_eq!(MessageType::try_from(byte), Ok(t));
    }
    assert_eq!(
        MessageType::ALL.to_vec(),
        MESSAGE_TYPES.map(|(t, _)| t).to_vec()
    );
    let known: Vec<u8> = MESSAGE_TYPES.iter().map(|(_, b)| *b).collect();
    for byte in 0..=u8::MAX {
        if !known.contains(&byte) {
            assert_eq!(
                MessageType::try_from(byte),
                Err(radio_proto::DecodeError::UnknownType(byte))
            );
        }
    }
}

#[test]
fn per_type_limits_are_pinned() {
    // Changing a field or limit changes these; the peer's limits must change too.
    let limits = [
        (MessageType::Hello, 138),
        (MessageType::Welcome, 88),
        (MessageType::AudioFrame, 1528),
        (MessageType::ProgrammeStart, 293),
        (MessageType::ProgrammeEnd, 26),
        (MessageType::Heartbeat, 41),
        (MessageType::ClockProbe, 12),
        (MessageType::ClockReply, 28),
        (MessageType::BoxHealth, 5_436),
        (MessageType::Error, 260),
        (MessageType::JournalBatch, 19_786),
        (MessageType::JournalAck, 24),
        (MessageType::PrefetchManifest, 25_418),
        (MessageType::PrefetchChunk, 16_050),
    ];
    for (t, max) in limits {
        assert_eq!(t.max_body_len(), max, "{t:?}");
    }
}

#[test]
fn constants_are_pinned() {
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(ALPN, b"truyen-thanh/1");
    assert_eq!(SAMPLE_RATE, 48_000);
    assert_eq!(FRAME_SAMPLES, 960);
    assert_eq!(FRAME_SAMPLES * 1000 / SAMPLE_RATE, 20);
    assert_eq!(MAX_FRAME_SIZE, 65_536);
}

#[test]
fn decode_error_codes() {
    use radio_proto::DecodeError;
    assert_eq!(DecodeError::Truncated.code(), ErrorCode::Malformed);
    assert_eq!(
        DecodeError::UnknownType(0x7f).code(),
        ErrorCode::UnknownMessage
    );
    assert_eq!(
        DecodeError::TooLarge {
            kind: MessageType::AudioFrame,
            len: 2000,
            max: 1520
        }
        .code(),
        ErrorCode::TooLarge
    );
    assert_eq!(
        DecodeError::Invalid {
            field: "name",
            reason: "x".into()
        }
        .code(),
        ErrorCode::Malformed
    );
    assert_eq!(DecodeError::TrailingBytes(3).code(), ErrorCode::Malformed);
    assert_eq!(
        DecodeError::UnknownType(0x7f).to_string(),
        "unknown message type 0x7f"
    );
    assert_eq!(
        DecodeError::TooLarge {
            kind: MessageType::AudioFrame,
            len: 2000,
            max: 1520
        }
        .to_string(),
        "AudioFrame body of 2000 bytes exceeds limit 1520"
    );
}

/// Journal records are also the on-disk form at both ends: a renumbered tag or state would
/// misread every stored record, years of them.
#[test]
fn journal_numbers_are_pinned() {
    let text = String::new;
    let events = [
        (
            JournalEvent::ProcessStart {
                clean_previous: true,
                software: text(),
            },
            1,
        ),
        (JournalEvent::ProcessStop, 2),
        (JournalEvent::LinkUp { server_run: 0 }, 3),
        (JournalEvent::LinkDown { reason: text() }, 4),
        (
            JournalEvent::Output {
                state: OutputState::Silent,
            },
            5,
        ),
        (
            JournalEvent::ProgrammeStart {
                programme_id: 0,
                name: text(),
                level: ProgrammeLevel::Normal,
            },
            6,
        ),
        (
            JournalEvent::ProgrammeEnd {
                programme_id: 0,
                name: text(),
                frames_played: 0,
                frames_lost: 0,
            },
            7,
        ),
        (
            JournalEvent::Heartbeat {
                link_up: false,
                output: OutputState::Silent,
                frames_received: 0,
                frames_played: 0,
                frames_lost: 0,
                heartbeats_dropped: 0,
            },
            8,
        ),
        (
            JournalEvent::Cluster {
                cluster: text(),
                state: ClusterState::Up,
                reason: text(),
            },
            9,
        ),
        (
            JournalEvent::Amplifier {
                output: text(),
                on: true,
                reason: text(),
            },
            10,
        ),
    ];
    for (event, tag) in events {
        let mut buf = Vec::new();
        JournalRecord {
            seq: 1,
            unix_ms: 0,
            event: event.clone(),
        }
        .encode(&mut buf);
        // seq (8) and unix_ms (8) come first.
        assert_eq!(buf[16], tag, "{event:?}");
    }
    let output = |state| match state {
        OutputState::Silent => 0,
        OutputState::OnAir => 1,
        OutputState::Underrun => 2,
    };
    for state in [
        OutputState::Silent,
        OutputState::OnAir,
        OutputState::Underrun,
    ] {
        assert_eq!(state as u8, output(state));
    }
    let cluster = |state| match state {
        ClusterState::Up => 1,
        ClusterState::Down => 2,
    };
    for state in [ClusterState::Up, ClusterState::Down] {
        assert_eq!(state as u8, cluster(state));
    }
    let level = |level| match level {
        ProgrammeLevel::Normal => 0,
        ProgrammeLevel::Priority => 1,
        ProgrammeLevel::Emergency => 2,
        ProgrammeLevel::Live => 3,
    };
    for l in ProgrammeLevel::ALL {
        assert_eq!(l as u8, level(l));
    }
}

#[test]
fn capability_bits_are_pinned() {
    use radio_proto::Capabilities;
    assert_eq!(Capabilities::OPUS.0, 1);
    assert_eq!(Capabilities::RTP_SINK.0, 2);
    assert_eq!(Capabilities::WAV_SINK.0, 4);
    assert_eq!(Capabilities::PIPE_SINK.0, 8);
    assert_eq!(Capabilities::PREFETCH.0, 16);
}

/// The clock exchange and the frame's media time are read by agents of other builds: their
/// field order and widths are pinned byte for byte.
#[test]
fn clock_fields_are_pinned() {
    use radio_proto::{AudioFrame, ClockProbe, ClockReply, Message};
    let probe = Message::ClockProbe(ClockProbe {
        id: 0x0102_0304,
        agent_send_us: 0x1112_1314_1516_1718,
    });
    assert_eq!(
        probe.to_bytes().as_ref(),
        &[0x21, 12, 0x01, 0x02, 0x03, 0x04, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]
    );
    let reply = Message::ClockReply(ClockReply {
        id: 7,
        agent_send_us: 1,
        server_receive_us: 2,
        server_send_us: 3,
    });
    let mut expected = vec![0x22, 28, 0, 0, 0, 7];
    for v in [1u64, 2, 3] {
        expected.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(reply.to_bytes().as_ref(), &expected[..]);
    let frame = Message::AudioFrame(AudioFrame {
        channel: 1,
        sequence: 2,
        timestamp: 3,
        server_time_us: 0xabcd,
        payload: bytes::Bytes::from_static(&[0xee]),
    });
    let bytes = frame.to_bytes();
    // type, length 28, channel (2), sequence (8), timestamp (8), then the media time.
    assert_eq!(&bytes[..2], &[0x10, 28]);
    assert_eq!(&bytes[20..28], &0xabcd_u64.to_be_bytes());
    assert_eq!(&bytes[28..], &[1, 0xee]);
}
