use super::*;

/// An element with a known size (sizes written in 8 bytes, as some muxers do, or 1 byte).
fn element(id: &[u8], body: &[u8], long_size: bool) -> Vec<u8> {
    let mut out = id.to_vec();
    if long_size {
        out.push(0x01);
        out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    } else {
        assert!(body.len() < 127);
        out.push(0x80 | body.len() as u8);
    }
    out.extend_from_slice(body);
    out
}

/// An element with the unknown size a live recorder writes.
fn open_element(id: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.extend_from_slice(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
    out
}

fn simple_block(frame: &[u8], flags: u8) -> Vec<u8> {
    let mut body = vec![0x81, 0x00, 0x10, flags];
    body.extend_from_slice(frame);
    element(&[0xA3], &body, false)
}

/// What a browser's MediaRecorder writes: header, an open Segment with Info and Tracks, open
/// Clusters of SimpleBlocks, one BlockGroup, and a Cues element to skip.
fn recording(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = element(&[0x1A, 0x45, 0xDF, 0xA3], &[0x42, 0x86, 0x81, 0x01], false);
    out.extend(open_element(&[0x18, 0x53, 0x80, 0x67]));
    out.extend(element(&[0x15, 0x49, 0xA9, 0x66], &[0u8; 40], true));
    out.extend(element(
        &[0x16, 0x54, 0xAE, 0x6B],
        b"OpusHead and the track entry",
        false,
    ));
    for (k, frame) in frames.iter().enumerate() {
        if k % 4 == 0 {
            out.extend(open_element(&[0x1F, 0x43, 0xB6, 0x75]));
            out.extend(element(&[0xE7], &[k as u8], false));
        }
        if k == 5 {
            let mut block = vec![0x81, 0x00, 0x10, 0x00];
            block.extend_from_slice(frame);
            out.extend(element(&[0xA0], &element(&[0xA1], &block, false), false));
        } else {
            out.extend(simple_block(frame, 0x80));
        }
    }
    out.extend(element(&[0x1C, 0x53, 0xBB, 0x6B], &[7u8; 30], false));
    out
}

fn frames(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|k| vec![k as u8; 3 + k % 60]).collect()
}

#[test]
fn frames_come_out_whatever_the_pieces() {
    let want = frames(13);
    let stream = recording(&want);
    for piece in 1..=9 {
        let mut parser = WebmOpusStream::new();
        let mut got = Vec::new();
        for chunk in stream.chunks(piece) {
            parser.push(chunk, &mut got).expect("a valid stream");
        }
        assert_eq!(got, want, "in pieces of {piece} bytes");
    }
}

#[test]
fn what_is_not_a_browser_recording_is_refused() {
    let mut got = Vec::new();
    assert_eq!(
        WebmOpusStream::new().push(b"OggS\0\x02", &mut got),
        Err(WebmError::NotWebm)
    );
    let mut laced = recording(&[]);
    laced.extend(open_element(&[0x1F, 0x43, 0xB6, 0x75]));
    laced.extend(simple_block(&[1, 2, 3], 0x82));
    assert_eq!(
        WebmOpusStream::new().push(&laced, &mut got),
        Err(WebmError::Laced)
    );
    let mut huge = recording(&[]);
    huge.extend(element(&[0xA3], &vec![0u8; 20_000], true));
    assert_eq!(
        WebmOpusStream::new().push(&huge[..huge.len() - 19_000], &mut got),
        Err(WebmError::BlockTooLarge(20_000))
    );
    let mut unknown = recording(&[]);
    unknown.extend(open_element(&[0x16, 0x54, 0xAE, 0x6B]));
    assert_eq!(
        WebmOpusStream::new().push(&unknown, &mut got),
        Err(WebmError::UnknownSize { id: 0x1654_AE6B })
    );
    let mut bad = recording(&[]);
    bad.push(0x00);
    assert!(matches!(
        WebmOpusStream::new().push(&bad, &mut got),
        Err(WebmError::BadHeader(_))
    ));
    assert!(got.is_empty());
}

/// A live WebM from ffmpeg's muxer (unknown sizes, as a recorder writes): every packet decodes,
/// and they add up to the length encoded.
#[test]
fn ffmpeg_live_webm_gives_every_opus_packet() {
    if !radio_test_tools::require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.webm");
    let made = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("sine=frequency=440:duration=3:sample_rate=48000")
        .args([
            "-ac", "1", "-c:a", "libopus", "-b:a", "24k", "-f", "webm", "-live", "1",
        ])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(made.success());
    let stream = std::fs::read(&path).expect("webm");
    let mut parser = WebmOpusStream::new();
    let mut packets = Vec::new();
    for chunk in stream.chunks(997) {
        parser.push(chunk, &mut packets).expect("a valid stream");
    }
    let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).expect("decoder");
    let mut pcm = vec![0.0f32; 5_760];
    let samples: usize = packets
        .iter()
        .map(|p| {
            decoder
                .decode_float(p, &mut pcm, false)
                .expect("an Opus packet")
        })
        .sum();
    // 3 s, give or take the encoder's padding at both ends.
    assert!((143_000..=147_000).contains(&samples), "{samples} samples");
}
