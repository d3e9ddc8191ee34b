use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::pipeline::decode_file_to_48k_mono;
use crate::pipeline::decoder::SourceDecoder;

const SECONDS: usize = 3;
const TONE_HZ: usize = 440;

/// A 3 s 440 Hz sine encoded by ffmpeg's libopus into `name` (the extension picks Ogg or
/// WebM); `None` when the test is skipped for want of ffmpeg.
fn opus_file(dir: &Path, name: &str, channels: u32) -> Option<PathBuf> {
    if !radio_test_tools::require_tool("ffmpeg") {
        return None;
    }
    let out = dir.join(name);
    let source = format!("sine=frequency={TONE_HZ}:sample_rate=48000:duration={SECONDS}");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", &source, "-ac", &channels.to_string()])
        .args(["-c:a", "libopus", "-b:a", "64k"])
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {name}");
    Some(out)
}

/// Upward zero crossings of the middle of `pcm` (a second away from both ends, where the
/// codec's ramp-in and padding are), per second.
fn crossings_per_second(pcm: &[f32]) -> f64 {
    let middle = &pcm[48_000 / 2..pcm.len() - 48_000 / 2];
    let ups = middle
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    ups as f64 / (middle.len() as f64 / 48_000.0)
}

fn check_tone(path: &Path, channels: u16) {
    let (_, info) = SourceDecoder::open(path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(info.codec, "opus");
    assert_eq!(info.sample_rate, 48_000);
    assert_eq!(info.channels, channels);
    let pcm = decode_file_to_48k_mono(path).unwrap_or_else(|e| panic!("{e}"));
    let want = SECONDS * 48_000;
    // The pre-skip dropped (312 samples from ffmpeg) and at most one 20 ms frame of padding
    // left at the end (WebM does not say where the last frame ends): a decoder that kept the
    // pre-skip would end a whole frame late.
    assert!(
        (want..want + 960).contains(&pcm.len()),
        "{}: {} samples, want {want} plus less than one frame",
        path.display(),
        pcm.len()
    );
    let rate = crossings_per_second(&pcm);
    assert!(
        (rate - TONE_HZ as f64).abs() < 2.0,
        "{}: {rate} crossings a second, want {TONE_HZ}",
        path.display()
    );
    let peak = pcm.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    // ffmpeg's sine is at 1/8 of full scale.
    assert!((0.08..0.2).contains(&peak), "peak {peak}");
}

#[test]
fn ogg_opus_decodes_to_the_tone_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mono) = opus_file(dir.path(), "tone.opus", 1) else {
        return;
    };
    check_tone(&mono, 1);
    let Some(stereo) = opus_file(dir.path(), "tone-stereo.ogg", 2) else {
        return;
    };
    check_tone(&stereo, 2);
}

#[test]
fn webm_opus_decodes_to_the_tone_it_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(mono) = opus_file(dir.path(), "tone.webm", 1) else {
        return;
    };
    check_tone(&mono, 1);
    let Some(stereo) = opus_file(dir.path(), "tone-stereo.webm", 2) else {
        return;
    };
    check_tone(&stereo, 2);
}

#[test]
fn opus_head_is_read_and_garbage_is_not() {
    let mut head = b"OpusHead".to_vec();
    head.extend_from_slice(&[1, 2, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 0]);
    assert_eq!(
        opus_head(&head),
        Some(OpusHead {
            channels: 2,
            pre_skip: 312
        })
    );
    assert_eq!(opus_head(&head[..18]), None);
    assert_eq!(opus_head(b"OpusTags and then some bytes"), None);
}

#[test]
fn surround_and_other_codecs_are_refused() {
    let mut params = CodecParameters::new();
    params
        .for_codec(CODEC_TYPE_OPUS)
        .with_channels(Channels::FRONT_LEFT | Channels::FRONT_RIGHT | Channels::FRONT_CENTRE);
    assert!(OpusDecoder::try_new(&params, &DecoderOptions::default()).is_err());
    let mut params = CodecParameters::new();
    params
        .for_codec(symphonia::core::codecs::CODEC_TYPE_VORBIS)
        .with_channels(Channels::FRONT_LEFT);
    assert!(OpusDecoder::try_new(&params, &DecoderOptions::default()).is_err());
    // The registry offers both symphonia's decoders and this one.
    assert!(codecs().get_codec(CODEC_TYPE_OPUS).is_some());
    assert!(codecs()
        .get_codec(symphonia::core::codecs::CODEC_TYPE_MP3)
        .is_some());
}

#[test]
fn a_damaged_packet_is_an_error_not_a_panic() {
    let mut params = CodecParameters::new();
    params
        .for_codec(CODEC_TYPE_OPUS)
        .with_channels(Channels::FRONT_LEFT);
    let mut decoder = OpusDecoder::try_new(&params, &DecoderOptions::default()).expect("decoder");
    // A code-3 TOC byte announcing 63 frames of 120 ms with no data: invalid for libopus.
    let packet = Packet::new_from_slice(0, 0, 0, &[0xfb, 0xff]);
    assert!(decoder.decode(&packet).is_err());
    assert_eq!(decoder.last_decoded().frames(), 0);
}

#[test]
fn a_webm_cut_short_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(webm) = opus_file(dir.path(), "tone.webm", 1) else {
        return;
    };
    let bytes = std::fs::read(&webm).expect("read");
    std::fs::write(&webm, &bytes[..bytes.len() * 6 / 10]).expect("write");
    // Refused at open, where the file is seen to end inside a block (`cut_short`).
    let err = decode_file_to_48k_mono(&webm).expect_err("a cut WebM is damaged");
    assert!(
        matches!(err, crate::pipeline::PipelineError::Corrupt { .. }),
        "{err:?}"
    );
    // The same bytes past that check (seekable, from memory): symphonia-format-mkv 0.5 panics
    // reading them, and the decoder must say they are damaged instead.
    let cut = std::fs::read(&webm).expect("read");
    let source = std::io::Cursor::new(cut);
    let outcome = SourceDecoder::from_stream(Box::new(source), Some("webm"), "cut.webm").and_then(
        |(mut decoder, _)| {
            while decoder.next_chunk()?.is_some() {}
            Ok(())
        },
    );
    assert!(
        matches!(outcome, Err(crate::pipeline::PipelineError::Corrupt { .. })),
        "{outcome:?}"
    );
}
