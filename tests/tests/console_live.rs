//! Going live from the console (issue 17, acceptance a), in Debian's headless Chromium with a
//! fake microphone that plays a Vietnamese speech WAV, against a real `radio-server` over HTTPS
//! and three real `relay-agent`s recording WAVs:
//!
//! - the admin turns the microphone on and goes live to every commune over a programme that is
//!   airing; every agent's output carries the speech (found in the file by cross-correlation);
//! - the uplink the server measured is at most 64 kb/s;
//! - a second try while live is told who is live;
//! - «Dừng phát» ends it and the programme resumes at every commune;
//! - live again, then the tab is closed instead: the broadcast ends by itself and the
//!   programme resumes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{json, Value};

use radio_tests::browser::{console_of, save_screenshot, Driver};
use radio_tests::console::{wait_wav_grown, wav_len, District};
use radio_tests::{binary, correlation_at, free_udp_port, read_wav, require_tool};

const STATIONS: [&str; 3] = ["binh-trung", "binh-duong", "binh-chanh"];
const LIVE_NAME: &str = "Trực tiếp từ bảng điều khiển: admin";
const BACKGROUND: &str = "Nhạc nền";
const STUDIO_NAME: &str = "Trực tiếp: studio";
/// Long enough for two live broadcasts over it and its return after each.
const BACKGROUND_SECONDS: u32 = 300;
/// Seconds of live air checked at the agents.
const LIVE_SECONDS: f32 = 12.0;
/// Samples per second.
const RATE: usize = 48_000;

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-hide_banner", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    run("ffmpeg", &all);
}

/// Vietnamese speech, 48 kHz mono 16-bit: the fake microphone's file (Chromium loops it).
fn speech(dir: &Path) -> PathBuf {
    let raw = dir.join("speech-22k.wav");
    run(
        "espeak-ng",
        &[
            "-v",
            "vi",
            "-s",
            "150",
            "-w",
            raw.to_str().expect("utf8"),
            "Kính thưa bà con, đây là Đài truyền thanh huyện Bình Sơn. Sáng mai, lúc bảy giờ, \
             xã tổ chức tiêm phòng cho trẻ em tại trạm y tế. Đề nghị các gia đình đưa cháu \
             đến đúng giờ. Xin cảm ơn bà con đã lắng nghe.",
        ],
    );
    let wav = dir.join("speech.wav");
    ffmpeg(&[
        "-i",
        raw.to_str().expect("utf8"),
        "-ar",
        "48000",
        "-ac",
        "1",
        "-c:a",
        "pcm_s16le",
        wav.to_str().expect("utf8"),
    ]);
    wav
}

/// 10 ms RMS envelope.
fn envelope(x: &[f32]) -> Vec<f32> {
    x.chunks(RATE / 100)
        .map(|w| (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt())
        .collect()
}

/// Where `piece` (a stretch of an agent's output) is in the looped speech, and how well it
/// matches there: its 10 ms envelope is placed first (cheap), then the samples around that.
/// The fake microphone loops the file from wherever it was when capture started, so the
/// reference is the file twice over.
fn find_in_loop(speech: &[f32], piece: &[f32]) -> (usize, f64) {
    let looped: Vec<f32> = speech.iter().chain(speech.iter()).copied().collect();
    let (env_ref, env_piece) = (envelope(&looped), envelope(piece));
    let coarse = (0..env_ref.len().saturating_sub(env_piece.len()))
        .map(|lag| (lag, correlation_at(&env_piece, &env_ref, lag)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
    let centre = coarse.0 * (RATE / 100);
    let lo = centre.saturating_sub(RATE / 50);
    let hi = (centre + RATE / 50).min(looped.len().saturating_sub(piece.len()));
    (lo..=hi)
        .map(|lag| (lag, correlation_at(piece, &looped, lag)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best })
}

/// The speech aired at each agent in the `LIVE_SECONDS` after `from` bytes of its WAV: the
/// best-matching two-second stretch of three, each placed on its own (the live input may skip
/// a silent frame to keep latency bounded, which shifts what follows by 20 ms).
fn check_speech_aired(speech: &[f32], wav: &Path, from: u64) -> f64 {
    let (samples, rate) = read_wav(wav);
    assert_eq!(rate, 48_000);
    let start = ((from.saturating_sub(44)) / 2) as usize + RATE; // a second in: past the switch
    let mut best: f64 = 0.0;
    for k in 0..3 {
        let at = start + k * 3 * RATE;
        let piece = &samples[at.min(samples.len())..(at + 2 * RATE).min(samples.len())];
        let loud = piece.iter().map(|s| s * s).sum::<f32>() / piece.len().max(1) as f32;
        if loud.sqrt() < 0.01 {
            continue; // a pause between sentences says nothing about alignment
        }
        let (_, c) = find_in_loop(speech, piece);
        best = best.max(c);
    }
    best
}

/// A WebSocket the page opens by script, as a second person's console would: its first answer.
fn try_live(driver: &Driver, hello: &str) -> Value {
    driver.script(&format!(
        "return new Promise((done) => {{ const s = new WebSocket(`wss://${{location.host}}/api/v1/live/console`); \
         s.onopen = () => s.send(JSON.stringify({hello})); \
         s.onmessage = (e) => {{ done(JSON.parse(e.data)); s.close(); }}; s.onerror = () => done('error'); }});"
    ))
}

fn live_state(driver: &Driver) -> Value {
    driver.fetch("GET", "/api/v1/live/console", None, false)
}

/// Opens the live page, ticks every commune, and goes live; waits for the on-air banner.
fn go_live(driver: &Driver) {
    driver.go("live");
    driver.wait_for(
        "return document.querySelectorAll('#live-stations input').length;",
        |v| v.as_u64().is_some_and(|n| n == 22),
    );
    driver.script("document.querySelector('input[name=\"live-where\"][value=\"all\"]').checked = true; return null;");
    driver.click("#live-go");
    let question = driver.accept_confirmation();
    assert!(question.contains("Tất cả các đài"), "{question}");
    let banner = driver.wait_for(
        "const b = document.querySelector('#live-banner'); return b.hidden ? document.querySelector('#live-message').textContent : 'BANNER ' + b.textContent;",
        |v| v.as_str().is_some_and(|t| t.starts_with("BANNER") || t.contains("Không") || t.contains("không")),
    );
    let banner = banner.as_str().expect("text");
    assert!(
        banner.starts_with("BANNER ĐANG PHÁT TRỰC TIẾP tới Tất cả các đài"),
        "{banner}"
    );
}

#[test]
fn an_operator_speaks_live_from_the_browser_to_every_commune() {
    if !require_tool("ffmpeg") || !require_tool("espeak-ng") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let speech_wav = speech(dir.path());
    let (speech, _) = read_wav(&speech_wav);
    let fake_mic = format!("--use-file-for-fake-audio-capture={}", speech_wav.display());
    let Some(driver) = Driver::start_with(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        &fake_mic,
        "--autoplay-policy=no-user-gesture-required",
    ]) else {
        return;
    };
    let background = dir.path().join("nhac-nen.mp3");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={BACKGROUND_SECONDS}:sample_rate=48000"),
        "-af",
        "volume=0.3",
        "-ac",
        "1",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "48k",
        background.to_str().expect("utf8"),
    ]);
    // A studio input too: the console's broadcasts share it, and it must keep working.
    let studio_port = free_udp_port();
    let studio_addr = format!("127.0.0.1:{studio_port}");
    let District {
        mut server,
        agents,
        data,
        ..
    } = District::start(
        dir.path(),
        &STATIONS,
        &["--no-schedule", "--live-rtp", &studio_addr],
    );
    let wav = |station: &str| dir.path().join(format!("{station}.wav"));
    let admin = server.admin_address();
    let (console, password) = console_of(&mut server);
    driver.sign_in(&console, "admin", &password);

    // What live interrupts: a priority bulletin at every station.
    let sent = driver.fetch(
        "POST",
        "/api/v1/bulletins",
        Some(json!({
            "id": "nhac-nen", "name": BACKGROUND, "level": "priority", "targets": "all",
            "source": {"kind": "file", "path": background.to_str().expect("utf8")},
        })),
        true,
    );
    assert!(sent[0] == 200 || sent[0] == 201, "{sent}");
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));
    assert_eq!(live_state(&driver)[1]["speaker"], Value::Null);

    // The studio goes on air by itself while it sends; the console may not break in.
    let mut studio = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(&speech_wav)
        .args(["-t", "6", "-c:a", "libopus", "-b:a", "32k", "-f", "rtp"])
        .arg(format!("rtp://{studio_addr}"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start ffmpeg as the studio's encoder");
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(STUDIO_NAME))));
    let refused = try_live(&driver, "{csrf, targets: 'all'}");
    assert_eq!(refused["ok"], false, "{refused}");
    assert!(
        refused["message_vi"]
            .as_str()
            .is_some_and(|m| m.starts_with("Phòng thu đang phát trực tiếp")),
        "{refused}"
    );
    assert!(studio.wait().expect("ffmpeg").success());
    // The studio's no-packet time-out hands the air back.
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));

    // The microphone first: its level shows before anyone is on air.
    driver.go("live");
    driver.click("#live-mic");
    driver.wait_for("return live.mic !== null;", |v| v == true);
    save_screenshot(&driver, "live-microphone-on");

    // Live to every commune.
    go_live(&driver);
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(LIVE_NAME))));
    save_screenshot(&driver, "live-on-air");
    let state = live_state(&driver);
    assert_eq!(state[1]["speaker"]["user"], "admin", "{state}");
    assert_eq!(state[1]["speaker"]["targets"], "all", "{state}");
    // The command line says the same.
    let who = Command::new(binary("radio-server"))
        .args(["live", "who", "--data-dir"])
        .arg(&data)
        .args(["--admin-listen", &admin])
        .output()
        .expect("radio-server live who");
    let said = String::from_utf8_lossy(&who.stdout);
    assert!(
        who.status.success() && said.starts_with("admin is live from the console since "),
        "{said}{}",
        String::from_utf8_lossy(&who.stderr)
    );
    let starts: Vec<u64> = STATIONS.iter().map(|s| wav_len(&wav(s))).collect();
    for (station, from) in STATIONS.iter().zip(&starts) {
        wait_wav_grown(&wav(station), *from, LIVE_SECONDS + 1.0);
    }

    // A second try while live: told who is live.
    let second = try_live(&driver, "{csrf, targets: 'all'}");
    assert_eq!(second["ok"], false, "{second}");
    assert!(
        second["message_vi"]
            .as_str()
            .is_some_and(|m| m.starts_with("admin đang phát trực tiếp")),
        "{second}"
    );
    // A page of another site cannot open it: the Origin is checked.
    let foreign = driver.script("return fetch('/api/v1/live/console').then(r => r.status);");
    assert_eq!(foreign, 200, "the status without an upgrade");

    // Stop: the programme resumes everywhere.
    driver.click("#live-end");
    let said = driver.wait_for(
        "return document.querySelector('#live-banner').hidden ? document.querySelector('#live-message').textContent : '';",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    assert!(
        said.as_str()
            .is_some_and(|t| t.starts_with("Đã dừng phát trực tiếp sau")),
        "{said}"
    );
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));
    assert_eq!(live_state(&driver)[1]["speaker"], Value::Null);

    // What every agent aired while live was the speech.
    for (station, from) in STATIONS.iter().zip(&starts) {
        let c = check_speech_aired(&speech, &wav(station), *from);
        eprintln!("{station}: live speech correlation {c:.3}");
        // Measured 0.87: speech through Opus twice (24 kb/s in the browser, the
        // server's own encoding to the agents).
        assert!(
            c >= 0.75,
            "{station}: the live speech is not in its output ({c:.3})"
        );
    }

    // The uplink, as the server measured it, recorded with the stop in the audit log.
    let audit = driver.fetch("GET", "/api/v1/audit?action=live-stop", None, false);
    let detail = audit[1]["records"]
        .as_array()
        .and_then(|r| r.iter().rev().find_map(|r| r["detail"].as_str()))
        .unwrap_or_else(|| panic!("no live-stop record with its uplink: {audit}"))
        .to_owned();
    let kbps: f64 = detail
        .split(", ")
        .find_map(|part| part.strip_suffix(" kb/s on the network"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no uplink in {detail}"));
    eprintln!("uplink: {detail}");
    assert!(
        kbps > 8.0 && kbps <= 64.0,
        "uplink {kbps} kb/s (must be at most 64): {detail}"
    );

    // Live again, then the tab is closed instead of pressing stop; a second tab watches.
    let watcher = driver.new_tab();
    go_live(&driver);
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(LIVE_NAME))));
    let closed_at = Instant::now();
    driver.close_tab_for(&watcher);
    driver.open(&format!("https://{console}/"));
    driver.wait_for("return typeof me !== 'undefined' && me !== null;", |v| {
        v == true
    });
    // Ended by the server when the socket closed (or, had the connection just vanished,
    // within the live input's no-packet time-out).
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));
    assert_eq!(live_state(&driver)[1]["speaker"], Value::Null);
    eprintln!(
        "closing the tab ended the broadcast after {:?}",
        closed_at.elapsed()
    );
    let audit = driver.fetch("GET", "/api/v1/audit?action=live-stop", None, false);
    assert!(
        audit.to_string().contains("closed: "),
        "the second broadcast did not end by its tab closing: {audit}"
    );

    // A browser without WebCodecs sends its MediaRecorder's WebM instead: heard the same.
    driver.script("delete window.AudioEncoder; return null;");
    go_live(&driver);
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(LIVE_NAME))));
    let starts: Vec<u64> = STATIONS.iter().map(|s| wav_len(&wav(s))).collect();
    for (station, from) in STATIONS.iter().zip(&starts) {
        wait_wav_grown(&wav(station), *from, LIVE_SECONDS + 1.0);
    }
    driver.click("#live-end");
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));
    for (station, from) in STATIONS.iter().zip(&starts) {
        let c = check_speech_aired(&speech, &wav(station), *from);
        eprintln!("{station}: live speech correlation (WebM uplink) {c:.3}");
        assert!(
            c >= 0.75,
            "{station}: the WebM uplink's speech is not in its output ({c:.3})"
        );
    }
    let audit = driver.fetch("GET", "/api/v1/audit?action=live-stop", None, false);
    eprintln!("uplinks: {audit}");

    // A browser whose audio stops while its connection stays open (a phone that lost its
    // uplink without the socket noticing): the server ends the broadcast after the live input's
    // no-packet time-out, and the programme resumes.
    let quiet = driver.script(
        "return new Promise((done) => { const s = new WebSocket(`wss://${location.host}/api/v1/live/console`); const got = []; \
         s.onopen = () => s.send(JSON.stringify({csrf, targets: 'all'})); \
         s.onmessage = (e) => { got.push(JSON.parse(e.data)); if (got.length === 2) done(got); }; s.onerror = () => done('error'); });",
    );
    assert_eq!(quiet[0]["ok"], true, "{quiet}");
    assert_eq!(quiet[1]["ended"], "no-audio", "{quiet}");
    driver.wait_on_air(&STATIONS.map(|s| (s, Some(BACKGROUND))));

    // Without the session's CSRF token nothing goes on air.
    let forged = try_live(&driver, "{csrf: 'not-the-token', targets: 'all'}");
    assert_eq!(forged["ok"], false, "{forged}");
    assert!(
        forged["message_vi"]
            .as_str()
            .is_some_and(|m| m.starts_with("Phiên làm việc không khớp")),
        "{forged}"
    );

    // A commune operator speaks to their own commune only.
    let made = driver.fetch(
        "POST",
        "/api/v1/users",
        Some(json!({"name": "can-bo-binh-trung", "role": "operator",
                    "communes": ["binh-trung"], "password": "Bình Trung 2026"})),
        true,
    );
    assert_eq!(made[0], 201, "{made}");
    driver.click("#sign-out");
    driver.wait_for("return !document.querySelector('#login').hidden;", |v| {
        v == true
    });
    driver.sign_in(&console, "can-bo-binh-trung", "Bình Trung 2026");
    driver.go("live");
    let offered = driver.wait_for(
        "return Array.from(document.querySelectorAll('#live-stations input')).map(i => [i.value, i.checked]);",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    );
    assert_eq!(offered, json!([["binh-trung", true]]));
    assert_eq!(
        driver.script("return document.querySelector('#live-all-label').hidden;"),
        true
    );
    let elsewhere = try_live(&driver, "{csrf, targets: {stations: ['binh-duong']}}");
    assert_eq!(elsewhere["ok"], false, "{elsewhere}");
    assert!(
        elsewhere["message_vi"]
            .as_str()
            .is_some_and(|m| m.starts_with("Bạn chỉ được phát tới xã mình phụ trách")),
        "{elsewhere}"
    );
    let everywhere = try_live(&driver, "{csrf, targets: 'all'}");
    assert_eq!(everywhere["ok"], false, "{everywhere}");
    assert_eq!(live_state(&driver)[1]["speaker"], Value::Null);
    driver.window_size(360, 740);
    save_screenshot(&driver, "live-operator-phone");
    drop(agents);
    drop(server);
}

/// The same page in Firefox (Debian's ESR, headless, its own fake microphone: a steady tone):
/// live to one commune, heard there as that tone, stopped, and the programme back.
#[test]
fn firefox_goes_live_too() {
    let Some(driver) = Driver::start_firefox() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let station = STATIONS[0];
    // The agent is bound (not `..`) so that it lives as long as the test.
    let District {
        mut server,
        agents: _agent,
        ..
    } = District::start(dir.path(), &[station], &["--no-schedule"]);
    let wav = dir.path().join(format!("{station}.wav"));
    let (console, password) = console_of(&mut server);
    driver.sign_in(&console, "admin", &password);
    driver.go("live");
    driver.wait_for(
        "return document.querySelectorAll('#live-stations input').length;",
        |v| v.as_u64().is_some_and(|n| n == 22),
    );
    assert_eq!(
        driver.script("return liveUplink();"),
        "opus",
        "Firefox has WebCodecs"
    );
    driver.script(&format!(
        "document.querySelector('input[name=\"live-where\"][value=\"stations\"]').checked = true; \
         for (const b of document.querySelectorAll('#live-stations input')) b.checked = b.value === '{station}'; return null;"
    ));
    driver.click("#live-go");
    let question = driver.accept_confirmation();
    assert!(question.contains("Bình Trung"), "{question}");
    driver.wait_on_air(&[(station, Some(LIVE_NAME))]);
    let from = wav_len(&wav);
    wait_wav_grown(&wav, from, 6.0);
    save_screenshot(&driver, "live-firefox");
    driver.click("#live-end");
    driver.wait_on_air(&[(station, None)]);
    // What aired while live: Firefox's fake microphone, a steady tone, loud in most windows.
    let (samples, _) = read_wav(&wav);
    // From 2.5 s in: past the playout delay and the encoder's start.
    let start = (from.saturating_sub(44) / 2) as usize + 5 * RATE / 2;
    let aired = &samples[start.min(samples.len())..(start + 3 * RATE).min(samples.len())];
    let windows: Vec<f32> = aired
        .chunks(RATE / 10)
        .map(|w| (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt())
        .collect();
    assert!(windows.len() >= 25, "only {} windows aired", windows.len());
    let loud = windows.iter().filter(|rms| **rms > 0.01).count();
    eprintln!(
        "firefox: {loud} of {} windows loud; {windows:?}",
        windows.len()
    );
    assert!(
        loud * 10 >= windows.len() * 8,
        "Firefox's microphone was not heard: {windows:?}"
    );
    drop(server);
}
