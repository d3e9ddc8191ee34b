//! Size limits: oversized fields are refused on decode, and oversized frames
//! are refused from their header alone.

use bytes::Bytes;
use radio_proto::codec::encode_varint;
use radio_proto::{
    AudioFrame, Capabilities, Decode, DecodeError, Encode, ErrorCode, ErrorMessage, FrameReader,
    Heartbeat, Hello, Message, MessageType, PrefetchChunk, PrefetchItem, PrefetchManifest,
    ProgrammeLevel, ProgrammeStart, Welcome, MAX_FRAME_SIZE,
};

fn hello(agent_id: &str, software: &str) -> Hello {
    Hello {
        version: 1,
        agent_id: agent_id.into(),
        software: software.into(),
        capabilities: Capabilities::OPUS,
    }
}

fn body<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode(&mut out);
    out
}

fn assert_invalid<T: std::fmt::Debug>(r: Result<T, DecodeError>, expected: &str) {
    match r {
        Err(DecodeError::Invalid { field, .. }) => assert_eq!(field, expected),
        other => panic!("expected Invalid({expected}), got {other:?}"),
    }
}

/// Builds a frame by hand so its header can lie about nothing but still
/// carry a body the encoder would never produce.
fn frame(kind: MessageType, body: &[u8]) -> Vec<u8> {
    let mut out = vec![kind.as_u8()];
    encode_varint(&mut out, body.len() as u64);
    out.extend_from_slice(body);
    out
}

#[test]
fn strings_at_the_limit_are_accepted() {
    let h = hello(&"a".repeat(64), &"s".repeat(64));
    assert_eq!(
        Message::decode(&mut &Message::Hello(h.clone()).to_bytes()[..]),
        Ok(Message::Hello(h))
    );
    let e = ErrorMessage {
        code: ErrorCode::Busy,
        reason: "r".repeat(256),
    };
    assert_eq!(
        Message::decode(&mut &Message::Error(e.clone()).to_bytes()[..]),
        Ok(Message::Error(e))
    );
}

#[test]
fn oversized_agent_id_rejected() {
    // One byte over is caught by the field check even inside a frame whose
    // total length is within the Hello limit.
    let h = hello(&"a".repeat(65), "");
    assert_invalid(Hello::decode(&mut &body(&h)[..]), "agent_id");
    assert_invalid(
        Message::decode(&mut &Message::Hello(h).to_bytes()[..]),
        "agent_id",
    );
}

#[test]
fn oversized_software_rejected() {
    let h = hello("a", &"s".repeat(65));
    assert_invalid(Hello::decode(&mut &body(&h)[..]), "software");
    assert_invalid(
        Message::decode(&mut &Message::Hello(h).to_bytes()[..]),
        "software",
    );
}

#[test]
fn oversized_server_name_rejected() {
    let w = Welcome {
        version: 1,
        server_name: "n".repeat(65),
        session_id: 1,
        heartbeat_interval_ms: 5000,
        sample_rate: 48_000,
        frame_samples: 960,
    };
    assert_invalid(Welcome::decode(&mut &body(&w)[..]), "server_name");
}

#[test]
fn oversized_programme_name_rejected() {
    let p = ProgrammeStart {
        channel: 0,
        programme_id: 1,
        name: "x".repeat(257),
        first_sequence: 0,
        first_timestamp: 0,
        frame_count: 0,
        level: ProgrammeLevel::Normal,
    };
    assert_invalid(ProgrammeStart::decode(&mut &body(&p)[..]), "name");
    // The whole frame is then over the ProgrammeStart limit too.
    assert!(matches!(
        Message::decode(&mut &Message::ProgrammeStart(p).to_bytes()[..]),
        Err(DecodeError::TooLarge {
            kind: MessageType::ProgrammeStart,
            ..
        })
    ));
}

#[test]
fn oversized_reason_rejected() {
    let e = ErrorMessage {
        code: ErrorCode::Internal,
        reason: "r".repeat(257),
    };
    assert_invalid(ErrorMessage::decode(&mut &body(&e)[..]), "reason");
}

#[test]
fn audio_payload_limits() {
    let frame_with = |n: usize| AudioFrame {
        channel: 1,
        sequence: 2,
        timestamp: 3,
        server_time_us: 4,
        payload: Bytes::from(vec![0x55; n]),
    };
    for ok in [1, 1500] {
        let f = frame_with(ok);
        assert_eq!(AudioFrame::decode(&mut &body(&f)[..]), Ok(f));
    }
    assert_invalid(
        AudioFrame::decode(&mut &body(&frame_with(1501))[..]),
        "payload",
    );
    assert_invalid(
        AudioFrame::decode(&mut &body(&frame_with(0))[..]),
        "payload",
    );
    assert_invalid(
        Message::decode(&mut &Message::AudioFrame(frame_with(0)).to_bytes()[..]),
        "payload",
    );
    assert_eq!(
        Message::decode(&mut &Message::AudioFrame(frame_with(1501)).to_bytes()[..]),
        Err(DecodeError::TooLarge {
            kind: MessageType::AudioFrame,
            len: 1529,
            max: 1528
        })
    );
}

#[test]
fn invalid_utf8_rejected() {
    let mut b = vec![0x00, 0x01];
    b.extend_from_slice(&[0x02, 0xff, 0xfe]); // agent_id: two invalid bytes
    b.push(0x00); // software: empty
    b.extend_from_slice(&[0, 0, 0, 1]);
    assert_invalid(
        Message::decode(&mut &frame(MessageType::Hello, &b)[..]),
        "agent_id",
    );
}

#[test]
fn bool_other_than_0_or_1_rejected() {
    let hb = Heartbeat {
        sequence: 0,
        unix_ms: 0,
        frames_received: 0,
        frames_played: 0,
        frames_lost: 0,
        on_air: true,
    };
    let mut b = body(&hb);
    *b.last_mut().expect("non-empty") = 2;
    assert_invalid(
        Message::decode(&mut &frame(MessageType::Heartbeat, &b)[..]),
        "on_air",
    );
}

#[test]
fn short_body_inside_complete_frame_is_an_error_for_the_reader() {
    // A Heartbeat frame declaring (and carrying) only 10 bytes: the frame is
    // complete, so the reader must report it, not wait for more.
    let f = frame(MessageType::Heartbeat, &[0; 10]);
    let mut r = FrameReader::new();
    r.push(&f);
    let err = r.next_message().expect_err("body too short");
    assert_eq!(err, DecodeError::Truncated);
    assert_eq!(err.code(), ErrorCode::Malformed);
}

#[test]
fn reader_rejects_oversized_length_from_header_alone() {
    // AudioFrame header declaring one byte over the limit, plus a few body bytes.
    let mut data = vec![MessageType::AudioFrame.as_u8()];
    encode_varint(&mut data, 1529);
    data.extend_from_slice(&[0, 1, 2, 3]);
    let mut r = FrameReader::new();
    r.push(&data);
    let expected = DecodeError::TooLarge {
        kind: MessageType::AudioFrame,
        len: 1529,
        max: 1528,
    };
    assert_eq!(r.next_message(), Err(expected.clone()));
    assert_eq!(expected.code(), ErrorCode::TooLarge);
    // Poisoned: no further buffering, same error forever.
    r.push(&[0; 4096]);
    assert_eq!(r.buffered(), 0);
    assert_eq!(r.next_message(), Err(expected));
}

#[test]
fn reader_rejects_huge_lengths_for_every_type() {
    for kind in MessageType::ALL {
        for declared in [
            kind.max_body_len() as u64 + 1,
            MAX_FRAME_SIZE as u64 + 1,
            (1 << 62) - 1,
        ] {
            let mut data = vec![kind.as_u8()];
            encode_varint(&mut data, declared);
            data.push(0xab);
            let mut r = FrameReader::new();
            r.push(&data);
            match r.next_message() {
                Err(DecodeError::TooLarge { kind: k, len, max }) => {
                    assert_eq!(k, kind);
                    assert_eq!(len as u64, declared);
                    assert_eq!(max, kind.max_body_len());
                }
                other => panic!("{kind:?} with {declared}: {other:?}"),
            }
        }
    }
}

#[test]
fn reader_waits_for_a_body_at_the_limit() {
    let mut data = vec![MessageType::AudioFrame.as_u8()];
    encode_varint(&mut data, 1528);
    data.extend_from_slice(&[0; 10]);
    let mut r = FrameReader::new();
    r.push(&data);
    assert_eq!(r.next_message(), Ok(None));
}

#[test]
fn message_decode_does_not_trust_declared_length() {
    // Declares a 1528-byte body but carries 3 bytes: Truncated, no panic.
    let mut data = vec![MessageType::AudioFrame.as_u8()];
    encode_varint(&mut data, 1528);
    data.extend_from_slice(&[1, 2, 3]);
    assert_eq!(Message::decode(&mut &data[..]), Err(DecodeError::Truncated));
}

fn prefetch_item(entry_id: &str, name: &str, start: u64) -> PrefetchItem {
    PrefetchItem {
        entry_id: entry_id.into(),
        programme_id: 1,
        name: name.into(),
        level: ProgrammeLevel::Normal,
        start_unix_ms: start,
        end_unix_ms: start + 1,
        frame_count: PrefetchItem::MAX_FRAMES,
        blob_size: PrefetchItem::MAX_BLOB_SIZE,
        blob_sha256: [0; 32],
    }
}

#[test]
fn prefetch_manifest_limits() {
    let at_limit = PrefetchManifest {
        issued_unix_ms: 0,
        items: (0..PrefetchManifest::MAX_ITEMS as u64)
            .map(|i| prefetch_item(&"e".repeat(64), &"n".repeat(256), i))
            .collect(),
    };
    let bytes = Message::PrefetchManifest(at_limit.clone()).to_bytes();
    assert_eq!(
        Message::decode(&mut &bytes[..]),
        Ok(Message::PrefetchManifest(at_limit.clone()))
    );
    let mut one_more = at_limit.clone();
    one_more.items.truncate(1);
    one_more.items.push(prefetch_item("x", "y", 1_000));
    assert!(PrefetchManifest::decode(&mut &body(&one_more)[..]).is_ok());

    // A count over the limit is refused before any item is read.
    let mut over = body(&PrefetchManifest {
        issued_unix_ms: 0,
        items: Vec::new(),
    });
    over[8] = 0x40;
    over.push(65);
    assert_invalid(PrefetchManifest::decode(&mut &over[..]), "count");

    for (item, field) in [
        (prefetch_item(&"e".repeat(65), "n", 0), "entry_id"),
        (prefetch_item("e", &"n".repeat(257), 0), "name"),
        (
            PrefetchItem {
                frame_count: PrefetchItem::MAX_FRAMES + 1,
                ..prefetch_item("e", "n", 0)
            },
            "frame_count",
        ),
        (
            PrefetchItem {
                blob_size: PrefetchItem::MAX_BLOB_SIZE + 1,
                ..prefetch_item("e", "n", 0)
            },
            "blob_size",
        ),
    ] {
        let m = PrefetchManifest {
            issued_unix_ms: 0,
            items: vec![item],
        };
        assert_invalid(PrefetchManifest::decode(&mut &body(&m)[..]), field);
    }
}

#[test]
fn prefetch_chunk_limits() {
    let chunk = |len: usize| PrefetchChunk {
        blob_sha256: [3; 32],
        blob_size: 1 << 20,
        offset: 0,
        data: Bytes::from(vec![9; len]),
    };
    let full = chunk(PrefetchChunk::MAX_DATA);
    assert_eq!(
        PrefetchChunk::decode(&mut &body(&full)[..]),
        Ok(full.clone())
    );
    assert_invalid(
        PrefetchChunk::decode(&mut &body(&chunk(PrefetchChunk::MAX_DATA + 1))[..]),
        "data",
    );
    // A chunk one byte over the data limit is also over the frame limit, refused from its header.
    let mut data = vec![MessageType::PrefetchChunk.as_u8()];
    encode_varint(&mut data, PrefetchChunk::MAX_BODY_LEN as u64 + 1);
    let mut r = FrameReader::new();
    r.push(&data);
    assert!(matches!(
        r.next_message(),
        Err(DecodeError::TooLarge {
            kind: MessageType::PrefetchChunk,
            ..
        })
    ));
}

#[test]
fn clock_reply_sent_before_it_was_received_is_refused() {
    use radio_proto::ClockReply;
    let reply = |receive, send| ClockReply {
        id: 1,
        agent_send_us: 10,
        server_receive_us: receive,
        server_send_us: send,
    };
    for ok in [reply(5, 5), reply(5, 6), reply(0, u64::MAX)] {
        assert_eq!(ClockReply::decode(&mut &body(&ok)[..]), Ok(ok));
    }
    assert_invalid(
        Message::decode(&mut &Message::ClockReply(reply(6, 5)).to_bytes()[..]),
        "server_send_us",
    );
}
