//! `radio-server demo`: the whole district on one machine, every supported programme format, and
//! a clear one-line refusal of files that are not audio.

use std::path::Path;
use std::process::Command;

use radio_tests::{binary, require_tool};

fn demo(args: &[&str], out: &Path) -> (bool, String, String) {
    let output = Command::new(binary("radio-server"))
        .arg("demo")
        .args(args)
        .arg("--out")
        .arg(out)
        .output()
        .expect("run radio-server demo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn all_22_stations_play_the_bundled_programme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, stdout, stderr) = demo(&[], dir.path());
    println!("{stdout}\n{stderr}");
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("demo: 22/22 agents played the programme")
    );
    // Vietnamese names in the table, one row per station.
    assert!(stdout.contains("Thị trấn Châu Ổ") && stdout.contains("Bình Thạnh"));
    for id in ["thi-tran-chau-o", "binh-chuong"] {
        assert!(dir.path().join(format!("{id}.wav")).exists());
        let sdp = std::fs::read_to_string(dir.path().join(format!("{id}.sdp"))).expect("sdp");
        assert!(sdp.contains("m=audio"));
    }
}

/// Every format of the foundation issue, made by ffmpeg.
#[test]
fn every_supported_format_plays() {
    if !require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &[&str])] = &[
        (
            "mp3-44k-stereo.mp3",
            &["-ar", "44100", "-ac", "2", "-c:a", "libmp3lame"],
        ),
        (
            "aac-48k-mono.m4a",
            &["-ar", "48000", "-ac", "1", "-c:a", "aac"],
        ),
        (
            "aac-22k-stereo.aac",
            &["-ar", "22050", "-ac", "2", "-c:a", "aac", "-f", "adts"],
        ),
        (
            "flac-96k-stereo.flac",
            &["-ar", "96000", "-ac", "2", "-c:a", "flac"],
        ),
        (
            "wav-8bit-8k.wav",
            &["-ar", "8000", "-ac", "1", "-c:a", "pcm_u8"],
        ),
        (
            "wav-16bit-16k.wav",
            &["-ar", "16000", "-ac", "2", "-c:a", "pcm_s16le"],
        ),
        (
            "wav-24bit-48k.wav",
            &["-ar", "48000", "-ac", "1", "-c:a", "pcm_s24le"],
        ),
        (
            "wav-float-32k.wav",
            &["-ar", "32000", "-ac", "2", "-c:a", "pcm_f32le"],
        ),
        (
            "vorbis-44k-mono.ogg",
            &["-ar", "44100", "-ac", "1", "-c:a", "libvorbis"],
        ),
    ];
    let mut failures = Vec::new();
    for (name, codec) in cases {
        let path = dir.path().join(name);
        let status = Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
            ])
            .arg("sine=frequency=523:duration=2")
            .args(*codec)
            .arg(&path)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg could not make {name}");
        let out = dir.path().join(format!("out-{name}"));
        let (ok, stdout, stderr) = demo(
            &["--agents", "2", "--programme", path.to_str().expect("utf8")],
            &out,
        );
        if !ok || stdout.lines().last() != Some("demo: 2/2 agents played the programme") {
            failures.push(format!("{name}:\n{stdout}\n{stderr}"));
        }
    }
    assert!(
        failures.is_empty(),
        "formats that failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn files_that_are_not_audio_get_one_clear_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").expect("write");
    let truncated = dir.path().join("truncated.wav");
    let mut header = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
    header.truncate(20);
    std::fs::write(&truncated, &header).expect("write");
    let random = dir.path().join("random.flac");
    let mut state = 0x9e37_79b9_u32;
    let bytes: Vec<u8> = (0..65_536)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect();
    std::fs::write(&random, bytes).expect("write");
    let text = dir.path().join("notes.ogg");
    std::fs::write(
        &text,
        "Lịch phát thanh tuần này: thứ Hai 17:00 bản tin thời sự.\n",
    )
    .expect("write");
    let missing = dir.path().join("does-not-exist.mp3");

    for path in [&empty, &truncated, &random, &text, &missing] {
        let shown = path.to_str().expect("utf8");
        let (ok, stdout, stderr) = demo(
            &["--agents", "1", "--programme", shown],
            &dir.path().join("out"),
        );
        assert!(!ok, "{shown}: demo must fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{shown}: expected one line, got:\n{stderr}\nstdout:\n{stdout}"
        );
        assert!(
            lines[0].contains(shown),
            "{shown}: the line must name the file: {}",
            lines[0]
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("backtrace"),
            "{shown}: {stderr}"
        );
    }
}

/// `demo --relay URL`: the programme is a live Icecast stream (ffmpeg as its source), and every
/// agent hears it.
#[test]
fn the_demo_relays_an_icecast_stream() {
    let Some(mut icecast) = radio_tests::icecast::Icecast::start() else {
        return;
    };
    let tone = icecast.dir().join("tone.wav");
    radio_tests::write_chirp(&tone, 660.0, 660.0, 3.0);
    icecast.start_source(&tone);
    let dir = tempfile::tempdir().expect("tempdir");
    let url = icecast.url();
    let (ok, stdout, stderr) = demo(
        &["--agents", "2", "--relay", &url, "--duration", "6"],
        dir.path(),
    );
    println!("{stdout}\n{stderr}");
    assert!(ok, "demo failed:\n{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().last(),
        Some("demo: 2/2 agents played the programme")
    );
    assert!(stdout.contains(&format!("relaying {url}")), "{stdout}");
    let wav = std::fs::read_dir(dir.path())
        .expect("out dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wav"))
        .expect("an agent's WAV");
    let heard = radio_tests::pitch_track(&wav)
        .iter()
        .filter(|(rms, hz)| *rms > 0.05 && (hz - 660.0).abs() < 40.0)
        .count();
    // 6 s relayed; the first moments go to connecting and Icecast's start-up.
    assert!(
        heard >= 40,
        "the stream's 660 Hz tone was heard for only {heard} windows of 100 ms"
    );
}
