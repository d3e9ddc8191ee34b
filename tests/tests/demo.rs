//! `radio-server demo`: the whole district on one machine, every supported programme format, and
//! a clear one-line refusal of files that are not audio.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use radio_tests::console::{first_admin_password, https_client};
use radio_tests::{binary, require_tool, Process};

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

/// A player opens a station's SDP while the demo plays, as the demo tells the operator to, and
/// hears the programme: the demo leaves the receiver's port to it, and its table still counts
/// the RTP packets that station's agent sent.
#[test]
fn a_player_hears_a_station_while_the_demo_plays() {
    if !require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // Long enough for ffmpeg to start and record 8 s of it.
    let tone = dir.path().join("tone.wav");
    radio_tests::write_chirp(&tone, 660.0, 660.0, 20.0);
    let out = dir.path().join("out");
    let mut demo = Process::start(
        "demo",
        &binary("radio-server"),
        &[
            "demo",
            "--agents",
            "2",
            "--programme",
            tone.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    // The agents write their SDP when they start, before they connect.
    demo.wait_for("agents connected to", Duration::from_secs(60));
    let sdp = out.join("thi-tran-chau-o.sdp");
    assert!(sdp.exists(), "no SDP at {}", sdp.display());

    let heard = dir.path().join("heard.wav");
    let ffmpeg = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
        ])
        .arg(&sdp)
        .args(["-t", "8", "-ac", "1", "-ar", "48000", "-bitexact", "-y"])
        .arg(&heard)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ffmpeg");
    let pid = ffmpeg.id();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(ffmpeg.wait_with_output());
    });
    let output = match result.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("ffmpeg output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("ffmpeg did not record 8 s of the station within 60 s");
        }
    };
    assert!(
        output.status.success(),
        "ffmpeg could not receive the station's RTP while the demo played: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tone_windows = radio_tests::pitch_track(&heard)
        .iter()
        .filter(|(rms, hz)| *rms > 0.05 && (hz - 660.0).abs() < 40.0)
        .count();
    // 8 s recorded from about when the programme started; the player's own start-up (probing
    // the stream) may take a little of it.
    assert!(
        tone_windows >= 40,
        "the programme's 660 Hz tone was heard for only {tone_windows} windows of 100 ms"
    );

    let (status, lines) = demo.finish(Duration::from_secs(120));
    let text = lines.join("\n");
    assert!(status.success(), "demo failed:\n{text}");
    assert!(
        lines.iter().any(
            |l| l.contains("ffplay -nodisp -protocol_whitelist file,udp,rtp -i")
                && l.contains(sdp.to_str().expect("utf-8 path"))
        ),
        "the demo says how to listen to a station:\n{text}"
    );
    assert!(
        text.contains("demo: 2/2 agents played the programme"),
        "{text}"
    );
    let row = lines
        .iter()
        .find(|l| l.starts_with("thi-tran-chau-o "))
        .unwrap_or_else(|| panic!("no table row for thi-tran-chau-o:\n{text}"));
    let rtp_packets: u64 = row
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no RTP packet count in: {row}"));
    // The agent's own count: every packet while the player listened; while nothing did, the
    // kernel refuses every other send (the receiver's ICMP error comes back on the next one).
    assert!(rtp_packets > 0, "{row}");
}

/// `demo --keep-running`: after its table the district stays up with the console, an admin
/// signs in over HTTPS with the password the demo printed and sees the demo's agents connected,
/// and SIGTERM stops it all cleanly.
#[test]
fn the_demo_keeps_running_with_the_console() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = dir.path().join("out");
    let mut demo = Process::start(
        "demo",
        &binary("radio-server"),
        &[
            "demo",
            "--keep-running",
            "--agents",
            "3",
            "--duration",
            "3",
            "--console-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
        ],
    );
    // The programme plays first (3 s, after the agents connect), then the console comes up.
    let up = Duration::from_secs(120);
    demo.wait_for("demo: 3/3 agents played the programme", up);
    let console = demo
        .wait_for("console on https://", up)
        .rsplit("https://")
        .next()
        .map(|a| a.trim().trim_end_matches('/').to_owned())
        .expect("address after `console on https://`");
    let password =
        first_admin_password(&demo.wait_for("console admin account \"admin\", password ", up));
    let warning = demo.wait_for("unless it trusts the district CA", up);
    assert!(
        warning.contains(data.join("ca").join("ca.crt").to_str().expect("utf-8 path")),
        "the warning names the CA file to trust: {warning}"
    );
    demo.wait_for("Ctrl-C to stop", up);

    let agent = https_client(&data);
    let base = format!("https://{console}");
    let signed_in = agent
        .post(&format!("{base}/api/v1/sign-in"))
        .header("Content-Type", "application/json")
        .send(serde_json::json!({"name": "admin", "password": password}).to_string())
        .expect("sign-in over HTTPS");
    assert_eq!(signed_in.status().as_u16(), 200, "sign-in as admin");
    let cookie = signed_in
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned();

    // The agents stay connected after the programme; polled in case one is reconnecting.
    let deadline = Instant::now() + Duration::from_secs(30);
    let connected = loop {
        let response = agent
            .get(&format!("{base}/api/v1/stations"))
            .header("Cookie", &cookie)
            .call()
            .expect("GET /api/v1/stations");
        assert_eq!(response.status().as_u16(), 200, "stations as admin");
        let text = response
            .into_body()
            .read_to_string()
            .expect("stations body");
        let stations: serde_json::Value = serde_json::from_str(&text).expect("stations JSON");
        let stations = stations.as_array().expect("a list of stations");
        assert_eq!(stations.len(), 22, "every Bình Sơn station is listed");
        let mut connected: Vec<String> = stations
            .iter()
            .filter(|s| s["connected"] == true)
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect();
        connected.sort();
        if connected.len() == 3 || Instant::now() > deadline {
            break connected;
        }
    };
    assert_eq!(
        connected,
        // The first three stations of the district, sorted.
        ["binh-duong", "binh-trung", "thi-tran-chau-o"]
            .map(str::to_owned)
            .to_vec(),
        "the demo's three agents are connected"
    );

    let (status, lines) = demo.terminate();
    assert!(
        status.success(),
        "demo exit: {status}\n{}",
        lines.join("\n")
    );
    // stdout and stderr are read apart, so a late log line may come after it.
    assert!(
        lines.iter().any(|l| l == "demo stopped"),
        "no `demo stopped` line:\n{}",
        lines.join("\n")
    );
}
