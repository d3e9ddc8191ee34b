//! The engine really runs: espeak-ng for the default, `sleep`, `sh` and sox for a
//! `tts_command`. Nothing is mocked.

use std::time::{Duration, Instant};

use super::*;
use crate::library::check_file;

/// A Vietnamese announcement with every kind of diacritic.
const SENTENCE: &str = "Thông báo: sáng mai, thứ Bảy, xã Bình Trung tổ chức tiêm phòng cho trẻ \
                        em tại trạm y tế. Đề nghị bà con đưa cháu đến đúng giờ.";

fn settings() -> TtsSettings {
    TtsSettings::default()
}

fn command(argv: &[&str], timeout_secs: u64) -> TtsSettings {
    TtsSettings {
        command: argv.iter().map(|a| (*a).to_owned()).collect(),
        timeout: Duration::from_secs(timeout_secs),
        ..TtsSettings::default()
    }
}

/// The audio as the library checks an upload: its measured length.
fn checked(audio: &[u8]) -> crate::library::AudioCheck {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tts.bin");
    std::fs::write(&path, audio).expect("write the audio");
    check_file(&path).unwrap_or_else(|e| panic!("the engine's audio fails the check: {e:?}"))
}

#[tokio::test]
async fn a_vietnamese_sentence_becomes_speech_of_a_plausible_length() {
    if !radio_test_tools::require_tool(ESPEAK) {
        return;
    }
    let audio = synthesize(&settings(), SENTENCE, None)
        .await
        .expect("espeak-ng speaks Vietnamese");
    assert_eq!(audio_content_type(&audio), "audio/wav");
    let check = checked(&audio);
    // 27 words at 150 wpm: about 11 s with the pauses; anything from 5 to 25 s is speech of
    // the sentence, not a beep or a hang.
    assert!(
        (5.0..25.0).contains(&check.duration_secs),
        "{} s for 27 words: {check:?}",
        check.duration_secs
    );
    assert!(check.rms_dbfs > -40.0, "speech, not silence: {check:?}");

    // Faster speech is shorter: the speed reaches the engine.
    let fast = synthesize(&settings(), SENTENCE, Some(300))
        .await
        .expect("fast");
    let fast = checked(&fast);
    assert!(
        fast.duration_secs < check.duration_secs * 0.75,
        "300 wpm {} s vs 150 wpm {} s",
        fast.duration_secs,
        check.duration_secs
    );
}

#[tokio::test]
async fn a_text_starting_with_a_dash_is_spoken_not_taken_as_an_option() {
    if !radio_test_tools::require_tool(ESPEAK) {
        return;
    }
    let audio = synthesize(&settings(), "-v en --help xin chào", None)
        .await
        .expect("a dash is text");
    // `--help` as an option would print usage to stdout (text, no RIFF header).
    assert!(
        audio.starts_with(b"RIFF"),
        "{:?}",
        &audio[..audio.len().min(40)]
    );
    let check = checked(&audio);
    assert!(check.duration_secs > 1.0, "{check:?}");
    let only_dash = synthesize(&settings(), "-", None).await;
    assert!(only_dash.is_ok(), "{only_dash:?}");
}

#[tokio::test]
async fn empty_and_over_long_texts_and_wrong_speeds_are_refused_before_anything_runs() {
    // A program that does not exist: a refusal must come before any attempt to run it.
    let absent = command(&["/nonexistent/tts-engine"], 5);
    for text in ["", "   \n\t  "] {
        let e = synthesize(&absent, text, None).await.expect_err("empty");
        assert_eq!(e, TtsError::Empty);
        assert!(e.vietnamese().contains("hãy gõ"), "{}", e.vietnamese());
    }
    let limited = TtsSettings {
        max_chars: 10,
        ..absent.clone()
    };
    // Ten characters of Vietnamese are far more than ten bytes: characters are counted.
    let ten = "Đường ướt!";
    assert_eq!(ten.chars().count(), 10);
    assert!(ten.len() > 10);
    let e = synthesize(&limited, ten, None)
        .await
        .expect_err("no engine");
    assert!(matches!(e, TtsError::NotStarted { .. }), "{e:?}");
    let e = synthesize(&limited, "Đường ướt!!", None)
        .await
        .expect_err("too long");
    assert_eq!(e, TtsError::TooLong { chars: 11, max: 10 });
    assert!(
        e.vietnamese().contains("11 ký tự, tối đa 10"),
        "{}",
        e.vietnamese()
    );
    for speed in [SPEED_RANGE.0 - 1, SPEED_RANGE.1 + 1, 0] {
        let e = synthesize(&absent, "xin chào", Some(speed))
            .await
            .expect_err("speed");
        assert_eq!(e, TtsError::Speed { given: speed });
        assert!(e.vietnamese().contains("80 đến 300"), "{}", e.vietnamese());
        assert!(e.is_request_fault());
    }
}

#[tokio::test]
async fn an_engine_past_its_time_out_is_killed_and_the_error_says_so() {
    let started = Instant::now();
    let e = synthesize(&command(&["sleep", "30"], 1), "xin chào", None)
        .await
        .expect_err("too slow");
    let took = started.elapsed();
    assert!(matches!(e, TtsError::TimedOut { secs: 1, .. }), "{e:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(e.vietnamese().contains("1 giây"), "{}", e.vietnamese());
    // The child is gone: no `sleep 30` is left of this test (its own group was killed).
    let left = std::process::Command::new("pgrep")
        .args(["-x", "-f", "sleep 30"])
        .output()
        .expect("pgrep");
    let pids = String::from_utf8_lossy(&left.stdout);
    let ours: Vec<&str> = pids
        .lines()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat.rsplit(')').next().map(str::to_owned))
                .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned))
                .is_some_and(|ppid| ppid == std::process::id().to_string())
        })
        .collect();
    assert!(ours.is_empty(), "children left running: {ours:?}");

    // A wrapper that starts the slow part itself: the whole group goes.
    let started = Instant::now();
    let e = synthesize(
        &command(&["sh", "-c", "cat >/dev/null; sleep 30; echo never"], 1),
        "xin chào",
        None,
    )
    .await
    .expect_err("too slow");
    assert!(matches!(e, TtsError::TimedOut { .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_tts_command_that_writes_a_wav_is_used_with_the_speed_in_its_environment() {
    if !radio_test_tools::require_tool("sox") {
        return;
    }
    // The speed decides the tone's length, so the test sees it arrive: 120 wpm → 1.2 s.
    let engine = command(
        &[
            "sh",
            "-c",
            "cat >/dev/null; sox -n -t wav -r 48000 -c 1 - synth \"$(( RADIO_TTS_SPEED / 100 )).$(( RADIO_TTS_SPEED % 100 / 10 ))\" sine 440 2>/dev/null",
        ],
        10,
    );
    let audio = synthesize(&engine, "-n -t wav /etc/passwd", Some(120))
        .await
        .expect("the command's WAV");
    let check = checked(&audio);
    assert!((check.duration_secs - 1.2).abs() < 0.05, "{check:?}");
    assert!(check.peak_dbfs > -3.0, "{check:?}");
}

#[tokio::test]
async fn an_engine_that_fails_gives_the_first_line_of_its_stderr() {
    let engine = command(
        &[
            "sh",
            "-c",
            "cat >/dev/null; echo; echo 'model vi.onnx not found' >&2; echo second >&2; exit 3",
        ],
        10,
    );
    let e = synthesize(&engine, "xin chào", None)
        .await
        .expect_err("fails");
    match &e {
        TtsError::Failed { stderr, status, .. } => {
            assert_eq!(stderr, "model vi.onnx not found");
            assert!(status.contains('3'), "{status}");
        }
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("model vi.onnx not found"), "{e}");
    assert!(!e.is_request_fault());
    assert!(
        e.vietnamese().contains("báo quản trị viên"),
        "{}",
        e.vietnamese()
    );

    let silent = command(&["sh", "-c", "cat >/dev/null"], 10);
    let e = synthesize(&silent, "xin chào", None)
        .await
        .expect_err("no audio");
    assert!(matches!(e, TtsError::NoAudio { .. }), "{e:?}");
    let missing = command(&["/nonexistent/tts-engine"], 10);
    let e = synthesize(&missing, "xin chào", None)
        .await
        .expect_err("not there");
    assert!(matches!(e, TtsError::NotStarted { .. }), "{e:?}");
}

#[tokio::test]
async fn output_past_the_limit_is_refused_without_being_read_whole() {
    let engine = TtsSettings {
        max_output_bytes: 1024 * 1024,
        ..command(&["sh", "-c", "cat >/dev/null; exec cat /dev/zero"], 10)
    };
    let started = Instant::now();
    let e = synthesize(&engine, "xin chào", None)
        .await
        .expect_err("endless output");
    assert!(matches!(e, TtsError::TooLarge { max_mb: 1, .. }), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_piped_wav_gets_true_sizes_and_other_audio_is_left_alone() {
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&0x7fff_f000u32.to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&[1, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x80, 0x3e, 0, 0, 2, 0, 16, 0]);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&0x7fff_f000u32.to_le_bytes());
    wav.extend_from_slice(&[0u8; 100]);
    seal_wav(&mut wav);
    assert_eq!(&wav[4..8], &(wav.len() as u32 - 8).to_le_bytes());
    assert_eq!(&wav[40..44], &100u32.to_le_bytes());
    let mut mp3 = b"ID3\x04\x00 rest".to_vec();
    let before = mp3.clone();
    seal_wav(&mut mp3);
    assert_eq!(mp3, before);
    assert_eq!(audio_content_type(&mp3), "audio/mpeg");
    // A truncated header is left as it is, without a panic.
    let mut short = b"RIFF\0\0\0\0WAVEdat".to_vec();
    seal_wav(&mut short);
}

#[test]
fn control_characters_become_spaces_and_line_breaks_stay() {
    let (text, speed) =
        check_request(&settings(), "Dòng 1\nDòng\u{0}2\u{1b}[31m", None).expect("valid");
    assert_eq!(text, "Dòng 1\nDòng 2 [31m");
    assert_eq!(speed, DEFAULT_SPEED);
}
