//! Writes the seed corpora of the `proto_decode` and `journal_record` fuzz targets into
//! `fuzz/seeds/<target>/`: one small, valid input per message type and journal event.
//!
//! `cd fuzz/seedgen && cargo run` (from anywhere: paths are relative to this crate). The output
//! is committed; rerun only when the wire format changes.

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use radio_proto::{
    BoxHealth, Capabilities, ClockProbe, ClusterHealth, OutputHealth, SinkHealth, ClockReply, ClusterState, Encode, ErrorCode, ErrorMessage, Heartbeat,
    Hello, JournalAck, JournalBatch, JournalEvent, JournalRecord, Message, OutputState,
    PrefetchChunk, PrefetchItem, PrefetchManifest, ProgrammeEnd, ProgrammeLevel, ProgrammeStart,
    Welcome, FRAME_SAMPLES, PROTOCOL_VERSION, SAMPLE_RATE,
};

fn main() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../seeds");
    write_proto(&seeds.join("proto_decode"));
    write_journal(&seeds.join("journal_record"));
}

fn hello() -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        agent_id: "binh-son-binh-chanh".into(),
        software: "relay-agent/0.1.0".into(),
        capabilities: Capabilities(
            Capabilities::OPUS.0 | Capabilities::RTP_SINK.0 | Capabilities::PREFETCH.0,
        ),
    }
}

fn messages() -> Vec<(&'static str, Message)> {
    vec![
        ("hello", Message::Hello(hello())),
        (
            "welcome",
            Message::Welcome(Welcome {
                version: PROTOCOL_VERSION,
                server_name: "radio.binhson.example".into(),
                session_id: 7,
                heartbeat_interval_ms: 5_000,
                sample_rate: SAMPLE_RATE,
                frame_samples: FRAME_SAMPLES,
            }),
        ),
        (
            "audio_frame",
            Message::AudioFrame(radio_proto::AudioFrame {
                channel: 0,
                sequence: 42,
                timestamp: 42 * u64::from(FRAME_SAMPLES),
                server_time_us: 840_000,
                // An Opus TOC byte (CELT FB 20 ms, mono) and a few payload bytes.
                payload: Bytes::from_static(&[0xfc, 0xff, 0xfe, 0x01, 0x02, 0x03]),
            }),
        ),
        (
            "programme_start",
            Message::ProgrammeStart(ProgrammeStart {
                channel: 0,
                programme_id: 3,
                name: "Bản tin sáng".into(),
                first_sequence: 42,
                first_timestamp: 42 * u64::from(FRAME_SAMPLES),
                frame_count: 1_500,
                level: ProgrammeLevel::Emergency,
            }),
        ),
        (
            "programme_end",
            Message::ProgrammeEnd(ProgrammeEnd {
                channel: 0,
                programme_id: 3,
                last_sequence: 1_541,
                frames: 1_500,
            }),
        ),
        (
            "heartbeat",
            Message::Heartbeat(Heartbeat {
                sequence: 9,
                unix_ms: 1_790_000_000_000,
                frames_received: 1_000,
                frames_played: 990,
                frames_lost: 10,
                on_air: true,
            }),
        ),
        (
            "clock_probe",
            Message::ClockProbe(ClockProbe {
                id: 1,
                agent_send_us: 123_456,
            }),
        ),
        (
            "clock_reply",
            Message::ClockReply(ClockReply {
                id: 1,
                agent_send_us: 123_456,
                server_receive_us: 200_000,
                server_send_us: 200_050,
            }),
        ),
        (
            "error",
            Message::Error(ErrorMessage {
                code: ErrorCode::Busy,
                reason: "too many agents".into(),
            }),
        ),
        ("journal_batch", Message::JournalBatch(batch())),
        (
            "journal_ack",
            Message::JournalAck(JournalAck {
                journal_id: 0x1234_5678,
                first_seq: 1,
                last_seq: 3,
            }),
        ),
        (
            "prefetch_manifest",
            Message::PrefetchManifest(PrefetchManifest {
                issued_unix_ms: 1_790_000_000_000,
                items: vec![PrefetchItem {
                    entry_id: "morning-news".into(),
                    programme_id: 11,
                    name: "Thời sự".into(),
                    level: ProgrammeLevel::Normal,
                    start_unix_ms: 1_790_000_600_000,
                    end_unix_ms: 1_790_000_900_000,
                    frame_count: 15_000,
                    blob_size: 1_200_000,
                    blob_sha256: [0xab; 32],
                }],
            }),
        ),
        (
            "prefetch_chunk",
            Message::PrefetchChunk(PrefetchChunk {
                blob_sha256: [0xab; 32],
                blob_size: 8,
                offset: 0,
                data: Bytes::from_static(b"OpusHead"),
            }),
        ),
        // Last, so the earlier seeds keep their chunk sizes.
        (
            "box_health",
            Message::BoxHealth(BoxHealth {
                unix_ms: 1_700_000_000_000,
                temperature_mc: Some(81_000),
                disk: Some((1 << 30, 8 << 30)),
                memory_kib: Some((512_000, 2_000_000)),
                load_centi: Some([150, 80, 20]),
                uptime_s: Some(86_400),
                since_clock_sync_s: None,
                outputs: vec![OutputHealth {
                    name: "pipe:aplay".into(),
                    state: SinkHealth::Failed,
                }],
                clusters: vec![ClusterHealth {
                    id: "c01".into(),
                    up: false,
                }],
            }),
        ),
    ]
}

/// `proto_decode` takes a chunk-size byte, then the stream bytes.
fn write_proto(dir: &Path) {
    reset(dir);
    let all = messages();
    for (i, (name, msg)) in all.iter().enumerate() {
        let mut input = vec![i as u8 * 5];
        input.extend_from_slice(&msg.to_bytes());
        write(dir.join(format!("{name}.bin")), &input);
    }
    // A session as the server sees it: hello, then heartbeats, a probe and a journal batch.
    let mut session = vec![7];
    for name in [
        "hello",
        "heartbeat",
        "clock_probe",
        "journal_batch",
        "heartbeat",
    ] {
        let msg = &all.iter().find(|(n, _)| *n == name).expect("seed").1;
        session.extend_from_slice(&msg.to_bytes());
    }
    write(dir.join("session.bin"), &session);
    // An audio stream as the agent sees it, split in 3-byte reads.
    let mut stream = vec![2];
    for name in [
        "programme_start",
        "audio_frame",
        "audio_frame",
        "programme_end",
    ] {
        let msg = &all.iter().find(|(n, _)| *n == name).expect("seed").1;
        stream.extend_from_slice(&msg.to_bytes());
    }
    write(dir.join("audio_stream.bin"), &stream);
}

fn records() -> Vec<JournalRecord> {
    let events = vec![
        JournalEvent::ProcessStart {
            clean_previous: false,
            software: "relay-agent/0.1.0".into(),
        },
        JournalEvent::LinkUp { server_run: 77 },
        JournalEvent::Output {
            state: OutputState::OnAir,
        },
        JournalEvent::ProgrammeStart {
            programme_id: 3,
            name: "Bản tin sáng".into(),
            level: ProgrammeLevel::Priority,
        },
        JournalEvent::ProgrammeEnd {
            programme_id: 3,
            name: "Bản tin sáng".into(),
            frames_played: 1_490,
            frames_lost: 10,
        },
        JournalEvent::Heartbeat {
            link_up: true,
            output: OutputState::Underrun,
            frames_received: 1_000,
            frames_played: 990,
            frames_lost: 10,
            heartbeats_dropped: 0,
        },
        JournalEvent::Cluster {
            cluster: "c01".into(),
            state: ClusterState::Down,
            reason: "no RTCP receiver report for 30 s".into(),
        },
        JournalEvent::Amplifier {
            output: "box".into(),
            on: true,
            reason: "lead".into(),
        },
        JournalEvent::LinkDown {
            reason: "idle timeout".into(),
        },
        JournalEvent::ProcessStop,
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| JournalRecord {
            seq: i as u64 + 1,
            unix_ms: 1_790_000_000_000 + i as u64 * 1_000,
            event,
        })
        .collect()
}

fn batch() -> JournalBatch {
    JournalBatch {
        journal_id: 0x1234_5678,
        records: records().into_iter().take(3).collect(),
    }
}

/// `journal_record` decodes the bytes as a record, then as a batch body.
fn write_journal(dir: &Path) {
    reset(dir);
    for (i, record) in records().iter().enumerate() {
        let mut bytes = Vec::new();
        record.encode(&mut bytes);
        write(dir.join(format!("record_{i}.bin")), &bytes);
    }
    let mut bytes = Vec::new();
    batch().encode(&mut bytes);
    write(dir.join("batch.bin"), &bytes);
}

fn reset(dir: &Path) {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).expect("create seed directory");
}

fn write(path: PathBuf, bytes: &[u8]) {
    assert!(
        bytes.len() < 8 * 1024,
        "{} is too big a seed",
        path.display()
    );
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
