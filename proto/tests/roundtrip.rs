//! Property tests: every message survives encode → chunked stream → decode,
//! and no byte sequence makes a decoder panic or over-buffer.

use bytes::Bytes;
use proptest::prelude::*;
use radio_proto::{
    AudioFrame, BoxHealth, Capabilities, ClockProbe, ClockReply, ClusterHealth, ClusterState,
    Decode, DecodeError, Encode, ErrorCode, ErrorMessage, FrameReader, Heartbeat, Hello,
    JournalAck, JournalBatch, JournalEvent, JournalRecord, Message, OutputHealth, OutputState,
    PrefetchChunk, PrefetchItem, PrefetchManifest, ProgrammeEnd, ProgrammeLevel, ProgrammeStart,
    SinkHealth, Welcome, MAX_FRAME_SIZE,
};

/// Strings of up to `max` *bytes*, mixing ASCII with multi-byte characters
/// so byte and char lengths differ.
fn string_upto(max: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![3 => proptest::char::range('a', 'z'), 1 => any::<char>()];
    proptest::collection::vec(ch, 0..=max).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        any::<u16>(),
        string_upto(Hello::MAX_AGENT_ID),
        string_upto(Hello::MAX_SOFTWARE),
        any::<u32>(),
    )
        .prop_map(|(version, agent_id, software, caps)| Hello {
            version,
            agent_id,
            software,
            capabilities: Capabilities(caps),
        })
}

fn welcome() -> impl Strategy<Value = Welcome> {
    (
        any::<u16>(),
        string_upto(Welcome::MAX_SERVER_NAME),
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(
                version,
                server_name,
                session_id,
                heartbeat_interval_ms,
                sample_rate,
                frame_samples,
            )| Welcome {
                version,
                server_name,
                session_id,
                heartbeat_interval_ms,
                sample_rate,
                frame_samples,
            },
        )
}

fn audio_frame() -> impl Strategy<Value = AudioFrame> {
    (
        any::<u16>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 1..=AudioFrame::MAX_PAYLOAD),
    )
        .prop_map(
            |(channel, sequence, timestamp, server_time_us, payload)| AudioFrame {
                channel,
                sequence,
                timestamp,
                server_time_us,
                payload: Bytes::from(payload),
            },
        )
}

fn clock_probe() -> impl Strategy<Value = ClockProbe> {
    (any::<u32>(), any::<u64>()).prop_map(|(id, agent_send_us)| ClockProbe { id, agent_send_us })
}

fn clock_reply() -> impl Strategy<Value = ClockReply> {
    (any::<u32>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(id, t1, a, b)| ClockReply {
        id,
        agent_send_us: t1,
        server_receive_us: a.min(b),
        server_send_us: a.max(b),
    })
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (any::<[u64; 5]>(), any::<bool>()).prop_map(|(n, on_air)| Heartbeat {
        sequence: n[0],
        unix_ms: n[1],
        frames_received: n[2],
        frames_played: n[3],
        frames_lost: n[4],
        on_air,
    })
}

fn programme_start() -> impl Strategy<Value = ProgrammeStart> {
    (
        any::<u16>(),
        any::<u64>(),
        string_upto(ProgrammeStart::MAX_NAME),
        any::<[u64; 3]>(),
        level(),
    )
        .prop_map(|(channel, programme_id, name, n, level)| ProgrammeStart {
            channel,
            programme_id,
            name,
            first_sequence: n[0],
            first_timestamp: n[1],
            frame_count: n[2],
            level,
        })
}

fn level() -> impl Strategy<Value = ProgrammeLevel> {
    proptest::sample::select(ProgrammeLevel::ALL.to_vec())
}

fn programme_end() -> impl Strategy<Value = ProgrammeEnd> {
    (any::<u16>(), any::<[u64; 3]>()).prop_map(|(channel, n)| ProgrammeEnd {
        channel,
        programme_id: n[0],
        last_sequence: n[1],
        frames: n[2],
    })
}

fn error_message() -> impl Strategy<Value = ErrorMessage> {
    (error_code(), string_upto(ErrorMessage::MAX_REASON))
        .prop_map(|(code, reason)| ErrorMessage { code, reason })
}

fn output_state() -> impl Strategy<Value = OutputState> {
    prop_oneof![
        Just(OutputState::Silent),
        Just(OutputState::OnAir),
        Just(OutputState::Underrun),
    ]
}

fn journal_event() -> impl Strategy<Value = JournalEvent> {
    let text = || string_upto(JournalEvent::MAX_TEXT);
    prop_oneof![
        (any::<bool>(), text()).prop_map(|(clean_previous, software)| {
            JournalEvent::ProcessStart {
                clean_previous,
                software,
            }
        }),
        Just(JournalEvent::ProcessStop),
        any::<u64>().prop_map(|server_run| JournalEvent::LinkUp { server_run }),
        text().prop_map(|reason| JournalEvent::LinkDown { reason }),
        output_state().prop_map(|state| JournalEvent::Output { state }),
        (any::<u64>(), text(), level()).prop_map(|(programme_id, name, level)| {
            JournalEvent::ProgrammeStart {
                programme_id,
                name,
                level,
            }
        }),
        (any::<[u64; 3]>(), text()).prop_map(|(n, name)| JournalEvent::ProgrammeEnd {
            programme_id: n[0],
            name,
            frames_played: n[1],
            frames_lost: n[2],
        }),
        (any::<bool>(), output_state(), any::<[u64; 4]>()).prop_map(|(link_up, output, n)| {
            JournalEvent::Heartbeat {
                link_up,
                output,
                frames_received: n[0],
                frames_played: n[1],
                frames_lost: n[2],
                heartbeats_dropped: n[3],
            }
        }),
        (
            "[a-z0-9-]{0,32}",
            prop_oneof![Just(ClusterState::Up), Just(ClusterState::Down)],
            text()
        )
            .prop_map(|(cluster, state, reason)| JournalEvent::Cluster {
                cluster,
                state,
                reason
            }),
        ("[a-z0-9-]{0,32}", any::<bool>(), text())
            .prop_map(|(output, on, reason)| JournalEvent::Amplifier { output, on, reason }),
    ]
}

fn journal_batch() -> impl Strategy<Value = JournalBatch> {
    (
        any::<u64>(),
        1u64..u64::MAX / 2,
        proptest::collection::vec(
            (any::<u64>(), journal_event()),
            1..=JournalBatch::MAX_RECORDS,
        ),
    )
        .prop_map(|(journal_id, first, events)| JournalBatch {
            journal_id,
            records: events
                .into_iter()
                .enumerate()
                .map(|(i, (unix_ms, event))| JournalRecord {
                    seq: first + i as u64,
                    unix_ms,
                    event,
                })
                .collect(),
        })
}

fn journal_ack() -> impl Strategy<Value = JournalAck> {
    (any::<u64>(), 1u64..u64::MAX / 2, 0u64..1000).prop_map(|(journal_id, first_seq, n)| {
        JournalAck {
            journal_id,
            first_seq,
            last_seq: first_seq + n,
        }
    })
}

fn prefetch_item() -> impl Strategy<Value = PrefetchItem> {
    (
        string_upto(PrefetchItem::MAX_ENTRY_ID),
        string_upto(PrefetchItem::MAX_NAME),
        level(),
        any::<[u64; 2]>(),
        1..=PrefetchItem::MAX_FRAMES,
        any::<[u8; 32]>(),
        (any::<u32>(), any::<u64>()),
    )
        .prop_map(
            |(entry_id, name, level, n, frame_count, blob_sha256, (length, size))| {
                let start_unix_ms = n[1] % (u64::MAX / 2);
                let (least, most) = (frame_count * 3, frame_count * 1502);
                PrefetchItem {
                    entry_id,
                    programme_id: n[0],
                    name,
                    level,
                    start_unix_ms,
                    end_unix_ms: start_unix_ms + 1 + u64::from(length),
                    frame_count,
                    blob_size: least + size % (most - least + 1),
                    blob_sha256,
                }
            },
        )
}

fn prefetch_manifest() -> impl Strategy<Value = PrefetchManifest> {
    (
        any::<u64>(),
        proptest::collection::vec(prefetch_item(), 0..=PrefetchManifest::MAX_ITEMS),
    )
        .prop_map(|(issued_unix_ms, mut items)| {
            // Airings are unique by entry and start.
            let mut seen = std::collections::BTreeSet::new();
            items.retain(|i| seen.insert((i.entry_id.clone(), i.start_unix_ms)));
            PrefetchManifest {
                issued_unix_ms,
                items,
            }
        })
}

fn prefetch_chunk() -> impl Strategy<Value = PrefetchChunk> {
    (
        any::<[u8; 32]>(),
        proptest::collection::vec(any::<u8>(), 1..=PrefetchChunk::MAX_DATA),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(blob_sha256, data, offset, extra)| {
            let len = data.len() as u64;
            let limit = PrefetchItem::MAX_BLOB_SIZE;
            let offset = offset % (limit - len + 1);
            let blob_size = offset + len + extra % (limit - offset - len + 1);
            PrefetchChunk {
                blob_sha256,
                blob_size,
                offset,
                data: Bytes::from(data),
            }
        })
}

fn box_health() -> impl Strategy<Value = BoxHealth> {
    let output = (string_upto(BoxHealth::MAX_NAME), 0u8..4).prop_map(|(name, s)| OutputHealth {
        name,
        state: [
            SinkHealth::Silent,
            SinkHealth::OnAir,
            SinkHealth::Underrun,
            SinkHealth::Failed,
        ][usize::from(s)],
    });
    let cluster = (string_upto(BoxHealth::MAX_NAME), any::<bool>())
        .prop_map(|(id, up)| ClusterHealth { id, up });
    (
        any::<u64>(),
        any::<Option<i32>>(),
        any::<Option<(u64, u64)>>(),
        any::<Option<(u64, u64)>>(),
        any::<Option<[u32; 3]>>(),
        (any::<Option<u64>>(), any::<Option<u64>>()),
        proptest::collection::vec(output, 0..=BoxHealth::MAX_OUTPUTS),
        proptest::collection::vec(cluster, 0..=8),
    )
        .prop_map(
            |(
                unix_ms,
                temperature_mc,
                disk,
                memory_kib,
                load_centi,
                (uptime_s, since),
                outputs,
                clusters,
            )| {
                BoxHealth {
                    unix_ms,
                    temperature_mc,
                    disk,
                    memory_kib,
                    load_centi,
                    uptime_s,
                    since_clock_sync_s: since,
                    outputs,
                    clusters,
                }
            },
        )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        welcome().prop_map(Message::Welcome),
        audio_frame().prop_map(Message::AudioFrame),
        heartbeat().prop_map(Message::Heartbeat),
        clock_probe().prop_map(Message::ClockProbe),
        clock_reply().prop_map(Message::ClockReply),
        box_health().prop_map(Message::BoxHealth),
        programme_start().prop_map(Message::ProgrammeStart),
        programme_end().prop_map(Message::ProgrammeEnd),
        error_message().prop_map(Message::Error),
        journal_batch().prop_map(Message::JournalBatch),
        journal_ack().prop_map(Message::JournalAck),
        prefetch_manifest().prop_map(Message::PrefetchManifest),
        prefetch_chunk().prop_map(Message::PrefetchChunk),
    ]
}

/// Splits `data` into consecutive pieces whose sizes cycle through `sizes`.
fn chunks<'a>(data: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let (head, tail) = rest.split_at(n);
        out.push(head);
        rest = tail;
        i += 1;
    }
    out
}

/// Pushes each chunk and drains the reader after it, as a real stream
/// handler would. Checks the buffering bound after every drain.
fn feed(reader: &mut FrameReader, pieces: &[&[u8]]) -> Result<Vec<Message>, DecodeError> {
    let mut out = Vec::new();
    for piece in pieces {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(e) => {
                    // Poisoned: the same error again, nothing buffered.
                    assert_eq!(reader.next_message(), Err(e.clone()));
                    assert_eq!(reader.buffered(), 0);
                    return Err(e);
                }
            }
        }
        assert!(
            reader.buffered() < MAX_FRAME_SIZE,
            "buffered {}",
            reader.buffered()
        );
    }
    Ok(out)
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(prop_oneof![1..=3usize, 1..=64usize, 1..=2000usize], 1..16)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn messages_roundtrip_through_chunked_reader(
        msgs in proptest::collection::vec(message(), 1..6),
        sizes in chunk_sizes(),
    ) {
        let mut stream = Vec::new();
        for m in &msgs {
            let bytes = m.to_bytes();
            prop_assert_eq!(bytes.len(), m.encoded_len());
            prop_assert!(bytes.len() <= 1 + 2 + m.message_type().max_body_len());
            stream.extend_from_slice(&bytes);
        }
        let mut reader = FrameReader::new();
        let got = feed(&mut reader, &chunks(&stream, &sizes));
        prop_assert_eq!(got, Ok(msgs));
        prop_assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn message_decode_roundtrip(msg in message()) {
        let bytes = msg.to_bytes();
        let mut slice = &bytes[..];
        prop_assert_eq!(Message::decode(&mut slice), Ok(msg.clone()));
        prop_assert!(slice.is_empty());
        // And through a `Bytes` buffer, the zero-copy path.
        let mut b = bytes.clone();
        prop_assert_eq!(Message::decode(&mut b), Ok(msg));
        prop_assert!(b.is_empty());
    }

    #[test]
    fn bodies_roundtrip(msg in message()) {
        fn check<T: Encode + Decode + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
            let mut buf = Vec::new();
            v.encode(&mut buf);
            prop_assert_eq!(buf.len(), v.encoded_len());
            let mut slice = &buf[..];
            prop_assert_eq!(&T::decode(&mut slice)?, v);
            prop_assert!(slice.is_empty());
            Ok(())
        }
        match &msg {
            Message::Hello(m) => check(m)?,
            Message::Welcome(m) => check(m)?,
            Message::AudioFrame(m) => check(m)?,
            Message::Heartbeat(m) => check(m)?,
            Message::ClockProbe(m) => check(m)?,
            Message::ClockReply(m) => check(m)?,
            Message::BoxHealth(m) => check(m)?,
            Message::ProgrammeStart(m) => check(m)?,
            Message::ProgrammeEnd(m) => check(m)?,
            Message::Error(m) => check(m)?,
            Message::JournalBatch(m) => check(m)?,
            Message::JournalAck(m) => check(m)?,
            Message::PrefetchManifest(m) => check(m)?,
            Message::PrefetchChunk(m) => check(m)?,
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_reader(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        sizes in chunk_sizes(),
    ) {
        let mut reader = FrameReader::new();
        let _ = feed(&mut reader, &chunks(&data, &sizes));
    }

    #[test]
    fn blob_packets_roundtrip_and_arbitrary_blobs_never_panic(
        packets in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 1..=AudioFrame::MAX_PAYLOAD),
            0..20,
        ),
        noise in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let mut blob = Vec::new();
        for p in &packets {
            radio_proto::put_blob_packet(&mut blob, p);
        }
        let back = radio_proto::blob_packets(&Bytes::from(blob)).expect("valid blob");
        prop_assert_eq!(back.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), packets);
        let _ = radio_proto::blob_packets(&Bytes::from(noise));
    }

    #[test]
    fn arbitrary_bytes_never_panic_decode(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mut slice = &data[..];
        while !slice.is_empty() {
            if Message::decode(&mut slice).is_err() {
                break;
            }
        }
        for decode in [
            |b: &mut &[u8]| Hello::decode(b).map(drop),
            |b: &mut &[u8]| Welcome::decode(b).map(drop),
            |b: &mut &[u8]| AudioFrame::decode(b).map(drop),
            |b: &mut &[u8]| Heartbeat::decode(b).map(drop),
            |b: &mut &[u8]| ProgrammeStart::decode(b).map(drop),
            |b: &mut &[u8]| ProgrammeEnd::decode(b).map(drop),
            |b: &mut &[u8]| ErrorMessage::decode(b).map(drop),
        ] {
            let _ = decode(&mut &data[..]);
        }
    }

    /// Valid streams with bytes flipped exercise the body decoders much more
    /// than uniform noise, which mostly dies at the type byte. The reader
    /// and one-shot decoding must agree on every prefix of messages and on
    /// the error (the reader reports `Truncated` only for a short body inside
    /// a complete frame; otherwise it waits).
    #[test]
    fn mutated_streams_never_panic_and_reader_agrees_with_decode(
        msgs in proptest::collection::vec(message(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        sizes in chunk_sizes(),
    ) {
        let mut data = Vec::new();
        for m in &msgs {
            data.extend_from_slice(&m.to_bytes());
        }
        for (i, v) in flips {
            let i = i.index(data.len());
            data[i] = v;
        }
        let mut reader = FrameReader::new();
        let mut from_reader = Vec::new();
        let mut reader_error = None;
        'feed: for piece in chunks(&data, &sizes) {
            reader.push(piece);
            loop {
                match reader.next_message() {
                    Ok(Some(m)) => from_reader.push(m),
                    Ok(None) => break,
                    Err(e) => {
                        reader_error = Some(e);
                        break 'feed;
                    }
                }
            }
        }
        let mut slice = &data[..];
        let mut from_decode = Vec::new();
        while !slice.is_empty() {
            match Message::decode(&mut slice) {
                Ok(m) => from_decode.push(m),
                Err(DecodeError::Truncated) => break,
                Err(e) => {
                    prop_assert_eq!(reader_error.as_ref(), Some(&e));
                    break;
                }
            }
        }
        prop_assert_eq!(&from_reader, &from_decode);
        for m in from_decode {
            // Decoded values re-encode to something that decodes the same.
            prop_assert_eq!(Message::decode(&mut &m.to_bytes()[..]), Ok(m));
        }
    }
}
