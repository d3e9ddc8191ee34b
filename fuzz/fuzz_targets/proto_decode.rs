//! Feeds arbitrary bytes to every decoding entry point.
//!
//! Run with `fuzz/run.sh proto_decode` (see fuzz/README.md).
//! Beyond "no panic", it checks the properties a peer could otherwise abuse:
//! the reader never buffers a frame beyond `MAX_FRAME_SIZE`, stays poisoned
//! after an error, and agrees with one-shot `Message::decode`.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use radio_proto::{Decode, FrameReader, Message, Session, SessionConfig, MAX_FRAME_SIZE};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size, so the fuzzer explores how frames
    // split across QUIC stream reads as well as their content.
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(first % 64) + 1;

    let mut reader = FrameReader::new();
    let mut from_reader = Vec::new();
    let mut reader_error = None;
    'feed: for piece in input.chunks(chunk) {
        reader.push(piece);
        loop {
            match reader.next_message() {
                Ok(Some(msg)) => {
                    // Whatever decodes must re-encode to the same message.
                    let again = Message::decode(&mut &msg.to_bytes()[..])
                        .expect("re-encoded message decodes");
                    assert_eq!(again, msg);
                    from_reader.push(msg);
                }
                Ok(None) => break,
                Err(e) => {
                    assert_eq!(
                        reader.next_message(),
                        Err(e.clone()),
                        "reader must stay poisoned"
                    );
                    reader_error = Some(e);
                    break 'feed;
                }
            }
        }
        assert!(reader.buffered() < MAX_FRAME_SIZE);
    }

    // One-shot decoding of the same bytes must yield the same messages and
    // fail the same way (truncation is "wait" for the reader).
    let mut slice = input;
    let mut from_decode = Vec::new();
    while !slice.is_empty() {
        match Message::decode(&mut slice) {
            Ok(msg) => from_decode.push(msg),
            Err(e) => {
                if e != radio_proto::DecodeError::Truncated {
                    assert_eq!(reader_error.as_ref(), Some(&e));
                }
                break;
            }
        }
    }
    assert_eq!(from_reader, from_decode);

    // A server session fed the same bytes, with time moving between pieces.
    let start = Instant::now();
    let mut session = Session::server(SessionConfig::default(), start);
    for (i, piece) in input.chunks(chunk).enumerate() {
        let now = start + Duration::from_millis(i as u64 * 100);
        session.handle_input(now, piece);
        session.handle_timeout(now);
        while session.poll_transmit().is_some() {}
        let mut closed = 0;
        while let Some(event) = session.poll_event() {
            if let radio_proto::Event::Hello(_) = event {
                session.accept(now, welcome());
            }
            if matches!(event, radio_proto::Event::Closed { .. }) {
                closed += 1;
            }
        }
        assert!(closed <= 1);
        if session.is_closed() {
            assert_eq!(session.poll_timeout(), None);
        }
    }
});

fn welcome() -> radio_proto::Welcome {
    radio_proto::Welcome {
        version: radio_proto::PROTOCOL_VERSION,
        server_name: "fuzz".into(),
        session_id: 1,
        heartbeat_interval_ms: 1000,
        sample_rate: radio_proto::SAMPLE_RATE,
        frame_samples: radio_proto::FRAME_SAMPLES,
    }
}
