//! The operator console's acceptance (issue 16), in Debian's headless Chromium over WebDriver,
//! against a real `radio-server` over HTTPS and three real `relay-agent`s recording WAVs. Each
//! step is checked where it matters, at the agents' output, not only on the page:
//!
//! - (a) an admin signs in with a password and uploads an MP3, an iPhone-style M4A and an Ogg
//!   Opus file; sends the MP3 as an emergency to two communes, interrupting what was airing:
//!   their WAVs hold it (correlation with the decoded MP3), the third's does not; the admin
//!   stops it and what was interrupted resumes where it was;
//! - (b) a library item scheduled at priority for every commune a minute or two ahead: every
//!   agent airs it, the week grid shows it and the plays report lists it;
//! - (c) a commune operator, created in the console with no restart, sees only their commune,
//!   accepts a normal bulletin the district offered, and it airs there only;
//! - (d) a viewer sees no action control, and action calls with a viewer's session, or without
//!   the CSRF token, are refused (403);
//! - (e) bad input gets a clear Vietnamese message and stores nothing: a text file named .mp3, a
//!   truncated M4A, an upload over the limit, a time in the past, an unknown commune;
//! - (f) every page at 1366×900 and 360×740 is saved under `target/console/`, and nothing
//!   overflows the phone-sized viewport.
//!
//! The plain-HTTP refusal from another machine is `server/tests/admin.rs`
//! (`plain_http_answers_only_the_machine_itself`): a browser here only has loopback.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use radio_tests::browser::{console_of, save_screenshot, Driver};
use radio_tests::console::{wait_wav_grown, wav_len, District};
use radio_tests::{compare, pitch_track, read_wav, require_tool, test_signal, write_wav, PATIENCE};

const STATIONS: [&str; 3] = ["binh-trung", "binh-duong", "binh-chanh"];
/// Long enough for the emergency to interrupt it and for it to resume afterwards.
const BACKGROUND_SECONDS: u32 = 40;
/// The length of the emergency recording; it is sent three times in a row and stopped after the
/// first has aired in full.
const EMERGENCY_SECONDS: f32 = 6.0;

/// RMS above which a 100 ms window is programme, not silence (the tones are at 0.09).
const LOUD: f32 = 0.03;

const OVERFLOWING: &str = "const w = document.documentElement.clientWidth; return Array.from(document.querySelectorAll('body *')).filter(e => e.offsetParent !== null && !e.closest('.table-wrap') && e.getBoundingClientRect().right > w + 1).map(e => `${e.tagName}#${e.id}.${e.className}: ${Math.round(e.getBoundingClientRect().right)}`).concat(document.documentElement.scrollWidth > w ? [`page ${document.documentElement.scrollWidth} > ${w}`] : []);";

const PAGES: [&str; 8] = [
    "overview", "live", "send", "week", "library", "inbox", "reports", "accounts",
];

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tone(path: &Path, hz: u32, seconds: u32, codec: &[&str]) {
    let source = format!("sine=frequency={hz}:duration={seconds}:sample_rate=48000");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &source,
        "-af",
        "volume=0.5",
        "-ac",
        "1",
    ];
    args.extend_from_slice(codec);
    args.push(path.to_str().expect("utf8"));
    ffmpeg(&args);
}

/// The recordings a district's staff would bring: an MP3, an iPhone voice memo (AAC in MP4), an
/// Android/browser Ogg Opus; and the bad ones.
struct Recordings {
    background: PathBuf,
    emergency: PathBuf,
    /// The emergency MP3 decoded, at 48 kHz: what the agents should have played.
    emergency_reference: Vec<f32>,
    iphone: PathBuf,
    ogg: PathBuf,
    not_audio: PathBuf,
    truncated: PathBuf,
    too_large: PathBuf,
}

fn recordings(dir: &Path) -> Recordings {
    let background = dir.join("nhac-nen.mp3");
    tone(
        &background,
        440,
        BACKGROUND_SECONDS,
        &["-c:a", "libmp3lame", "-b:a", "64k"],
    );
    let signal = dir.join("canh-bao.wav");
    write_wav(&signal, &test_signal(EMERGENCY_SECONDS), 48_000);
    let emergency = dir.join("canh-bao-bao.mp3");
    ffmpeg(&[
        "-i",
        signal.to_str().expect("utf8"),
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        emergency.to_str().expect("utf8"),
    ]);
    let decoded = dir.join("canh-bao-decoded.wav");
    ffmpeg(&[
        "-i",
        emergency.to_str().expect("utf8"),
        "-ar",
        "48000",
        "-ac",
        "1",
        decoded.to_str().expect("utf8"),
    ]);
    let (emergency_reference, rate) = read_wav(&decoded);
    assert_eq!(rate, 48_000);
    let iphone = dir.join("tiem-chung.m4a");
    tone(
        &iphone,
        1000,
        5,
        &["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"],
    );
    let ogg = dir.join("hop-dan.ogg");
    tone(&ogg, 1500, 5, &["-c:a", "libopus", "-b:a", "32k"]);
    let not_audio = dir.join("thong-bao.mp3");
    std::fs::write(
        &not_audio,
        "Đây là văn bản, không phải âm thanh.\n".repeat(200),
    )
    .expect("text");
    // The same memo cut at 60 %, as an interrupted transfer leaves it.
    let truncated = dir.join("bi-cat.m4a");
    let whole = std::fs::read(&iphone).expect("m4a");
    std::fs::write(&truncated, &whole[..whole.len() * 6 / 10]).expect("truncated");
    // A real recording over the 2 MB limit the server is started with.
    let too_large = dir.join("qua-lon.mp3");
    tone(
        &too_large,
        300,
        180,
        &["-c:a", "libmp3lame", "-b:a", "128k"],
    );
    assert!(std::fs::metadata(&too_large).expect("size").len() > 2 * 1024 * 1024);
    Recordings {
        background,
        emergency,
        emergency_reference,
        iphone,
        ogg,
        not_audio,
        truncated,
        too_large,
    }
}

/// The page's own `fetch` of an API route, with the session cookie (and the CSRF token when
/// `csrf`): `[status, body as JSON or text]`.
fn fetch(driver: &Driver, method: &str, path: &str, body: Option<Value>, csrf: bool) -> Value {
    driver.fetch(method, path, body, csrf)
}

fn wait_on_air(driver: &Driver, expected: &[(&str, Option<&str>)]) {
    driver.wait_on_air(expected);
}

fn upload(driver: &Driver, file: &Path, name: &str) -> String {
    driver.script("document.querySelector('#library-message').textContent = ''; return null;");
    driver.choose_file("#upload-file", file);
    driver.clear("#upload-name");
    driver.type_into("#upload-name", name);
    driver.click("#upload-submit");
    let said = driver.wait_for(
        "const m = document.querySelector('#library-message').textContent; return m.startsWith('Đang tải lên') ? '' : m;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    said.as_str().expect("text").to_owned()
}

fn library_names(driver: &Driver) -> Vec<String> {
    let listing = fetch(driver, "GET", "/api/v1/library", None, false);
    assert_eq!(listing[0], 200, "{listing}");
    let items = if listing[1].is_array() {
        listing[1].clone()
    } else {
        listing[1]["items"].clone()
    };
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_owned())
        .collect()
}

fn library_files(data: &Path) -> usize {
    std::fs::read_dir(data.join("library")).map_or(0, |d| d.count())
}

/// Fills the send form: `kind` library item `item`, level, where (`None`: all), when
/// (`now` or `once` at date and time), times; submits and accepts the confirmation; the message.
struct Send<'a> {
    item: &'a str,
    level: &'a str,
    stations: Option<&'a [&'a str]>,
    once: Option<(String, String)>,
    times: u32,
}

fn send(driver: &Driver, s: &Send<'_>) -> String {
    driver.go("send");
    driver.wait_for(
        "return document.querySelectorAll('#send-item option').length;",
        |v| v.as_u64().is_some_and(|n| n >= 3),
    );
    let (when, date, time) = match &s.once {
        None => ("now", String::new(), String::new()),
        Some((d, t)) => ("once", d.clone(), t.clone()),
    };
    let stations = s
        .stations
        .map_or("null".to_owned(), |list| json!(list).to_string());
    driver.script(&format!(
        "const f = (id, v) => {{ const e = document.querySelector(id); e.value = v; e.dispatchEvent(new Event('change')); }};
         f('#send-kind', 'library');
         const item = Array.from(document.querySelectorAll('#send-item option')).find(o => o.textContent.startsWith({item}));
         f('#send-item', item.value);
         document.querySelector('#send-name').value = '';
         delete document.querySelector('#send-name').dataset.touched;
         document.querySelector('input[name=\"send-level\"][value=\"{level}\"]').click();
         const stations = {stations};
         f('#send-where', stations ? 'stations' : 'all');
         for (const b of document.querySelectorAll('#send-stations input')) b.checked = !!stations && stations.includes(b.value);
         f('#send-when', '{when}');
         document.querySelector('#send-date').value = '{date}';
         document.querySelector('#send-time').value = '{time}';
         document.querySelector('#send-times').value = '{times}';
         f('#send-item', item.value);
         document.querySelector('#send-message').textContent = '';
         return null;",
        item = json!(s.item),
        level = s.level,
        times = s.times,
    ));
    driver.click("#send-submit");
    driver.accept_confirmation();
    let said = driver.wait_for(
        "return document.querySelector('#send-message').textContent;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    said.as_str().expect("text").to_owned()
}

/// `(date, HH:MM)` in the district (Asia/Ho_Chi_Minh) `minutes` from now, rounded up to the next
/// whole minute.
fn district_in(minutes: i64) -> (String, String) {
    let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").expect("zone");
    let at = tz.to_datetime(
        jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(minutes * 60 + 60))
            .expect("time"),
    );
    (
        at.date().to_string(),
        format!("{:02}:{:02}", at.hour(), at.minute()),
    )
}

/// 100 ms windows of a WAV near `hz` (±8 %) and well above silence.
fn windows_at(track: &[(f32, f32)], hz: f32) -> Vec<usize> {
    track
        .iter()
        .enumerate()
        .filter(|(_, (rms, f))| *rms > LOUD && (f - hz).abs() < hz * 0.08)
        .map(|(i, _)| i)
        .collect()
}

fn screenshots(driver: &Driver, who: &str) {
    for (width, height, size) in [(1366, 900, "desktop"), (360, 740, "phone")] {
        driver.window_size(width, height);
        for page in PAGES {
            let allowed = driver.script(&format!(
                "return !document.querySelector('#nav button[data-page=\"{page}\"]').hidden;"
            ));
            if allowed != true {
                continue;
            }
            driver.go(page);
            // The page's data is in (its refresh has drawn something or said why not).
            driver.wait_for(
                &format!("return document.querySelector('section.page[data-page=\"{page}\"]').textContent.length;"),
                |v| v.as_u64().is_some_and(|n| n > 0),
            );
            save_screenshot(driver, &format!("{who}-{page}-{size}"));
            if width == 360 {
                assert_eq!(
                    driver.script(OVERFLOWING),
                    json!([]),
                    "{who}: page {page} is wider than a 360 px phone"
                );
            }
        }
    }
    driver.window_size(1366, 900);
}

fn create_account(driver: &Driver, name: &str, role: &str, commune: Option<&str>, password: &str) {
    driver.go("accounts");
    driver.wait_for(
        "return document.querySelectorAll('#new-communes option').length;",
        |v| v == 22,
    );
    driver.clear("#new-name");
    driver.type_into("#new-name", name);
    driver.script(&format!(
        "const role = document.querySelector('#new-role'); role.value = '{role}'; role.dispatchEvent(new Event('change')); for (const o of document.querySelectorAll('#new-communes option')) o.selected = o.value === {commune}; return null;",
        commune = json!(commune.unwrap_or(""))
    ));
    driver.clear("#new-password");
    driver.type_into("#new-password", password);
    driver.click("#create-user");
    driver.wait_for(
        &format!("return document.querySelector('#users tr[data-user=\"{name}\"]') !== null;"),
        |v| v == true,
    );
}

#[test]
fn the_district_runs_its_day_from_the_console() {
    if !require_tool("ffmpeg") {
        return;
    }
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let files = recordings(dir.path());
    let District {
        mut server,
        agents,
        data,
        ..
    } = District::start(
        dir.path(),
        &STATIONS,
        &["--no-schedule", "--library-max-upload-mb", "2"],
    );
    let wav = |station: &str| dir.path().join(format!("{station}.wav"));
    let (console, password) = console_of(&mut server);

    // (a) The admin signs in with the password and fills the library.
    driver.sign_in(&console, "admin", &password);
    driver.go("library");
    for (file, name) in [
        (&files.background, "Nhạc nền"),
        (&files.emergency, "Cảnh báo bão"),
        (&files.iphone, "Tiêm chủng"),
        (&files.ogg, "Họp dân"),
    ] {
        let said = upload(&driver, file, name);
        assert!(
            said.starts_with(&format!("Đã tải lên “{name}”")),
            "{name}: {said}"
        );
    }
    assert_eq!(
        library_names(&driver).len(),
        4,
        "{:?}",
        library_names(&driver)
    );
    let stored = library_files(&data);
    // The page knows the server's limit (from the listing), and says it.
    assert_eq!(driver.script("return uploadLimitMb;"), 2);
    // Each item has a player whose source the browser can play: the MP3 itself.
    let player = driver.script(
        "const a = document.querySelector('#library-items tbody tr audio'); return fetch(a.src).then(r => r.arrayBuffer().then(b => [r.status, r.headers.get('content-type'), b.byteLength]));",
    );
    assert_eq!(
        player,
        json!([
            200,
            "audio/mpeg",
            std::fs::metadata(&files.background).expect("mp3").len()
        ])
    );

    // (e) Bad uploads: one clear message each, and nothing stored.
    for (file, why) in [
        (&files.not_audio, "not audio"),
        (&files.truncated, "truncated"),
        (&files.too_large, "too large"),
    ] {
        let said = upload(&driver, file, "Hỏng");
        assert!(
            !said.starts_with("Đã tải lên") && said.chars().any(|c| "ảạáàãệẹếềễộọốồỗ".contains(c)),
            "{why}: not a Vietnamese refusal: {said}"
        );
        assert_eq!(library_names(&driver).len(), 4, "{why}: stored");
        assert_eq!(library_files(&data), stored, "{why}: a file was left");
    }
    // Over the limit straight to the API (the page checks the size before it sends): 413.
    let big = driver.script(
        "return fetch('/api/v1/library?name=lon', {method: 'POST', headers: {'X-CSRF-Token': csrf, 'Content-Type': 'audio/mpeg'}, body: new Uint8Array(3 * 1024 * 1024)}).then(r => r.status);",
    );
    assert_eq!(big, 413);
    assert_eq!(
        library_files(&data),
        stored,
        "an over-limit body left a file"
    );

    // What the emergency will interrupt: a priority bulletin at every station.
    let said = send(
        &driver,
        &Send {
            item: "Nhạc nền",
            level: "priority",
            stations: None,
            once: None,
            times: 1,
        },
    );
    assert!(said.starts_with("Đã gửi “Nhạc nền”"), "{said}");
    wait_on_air(&driver, &STATIONS.map(|s| (s, Some("Nhạc nền"))));

    // The emergency, to two communes, three times in a row; stopped after the first.
    let said = send(
        &driver,
        &Send {
            item: "Cảnh báo bão",
            level: "emergency",
            stations: Some(&STATIONS[..2]),
            once: None,
            times: 3,
        },
    );
    assert!(
        said.starts_with("Đang phát khẩn cấp “Cảnh báo bão”"),
        "{said}"
    );
    wait_on_air(
        &driver,
        &[
            (STATIONS[0], Some("Cảnh báo bão")),
            (STATIONS[1], Some("Cảnh báo bão")),
            (STATIONS[2], Some("Nhạc nền")),
        ],
    );
    let at_start = wav_len(&wav(STATIONS[0]));
    wait_wav_grown(&wav(STATIONS[0]), at_start, EMERGENCY_SECONDS + 2.0);
    driver.go("overview");
    driver.wait_for(
        "return document.querySelectorAll('#emergencies tbody tr').length;",
        |v| v == 1,
    );
    driver.click("#emergencies tbody tr button");
    let question = driver.accept_confirmation();
    assert!(question.contains("Cảnh báo bão"), "{question}");
    // What it interrupted comes back at both.
    wait_on_air(&driver, &STATIONS.map(|s| (s, Some("Nhạc nền"))));
    wait_on_air(&driver, &STATIONS.map(|s| (s, None)));

    // (b) A library item at priority for every commune, a minute or two ahead.
    let (date, time) = district_in(1);
    let said = send(
        &driver,
        &Send {
            item: "Tiêm chủng",
            level: "priority",
            stations: None,
            once: Some((date.clone(), time.clone())),
            times: 1,
        },
    );
    assert!(said.starts_with("Đã đặt lịch “Tiêm chủng”"), "{said}");
    driver.go("week");
    let slot = driver.wait_for(
        &format!("const s = Array.from(document.querySelectorAll('.day[data-date=\"{date}\"] .slot')).find(s => s.textContent.includes('Tiêm chủng')); return s ? s.textContent : null;"),
        |v| !v.is_null(),
    );
    assert!(
        slot.as_str()
            .is_some_and(|t| t.starts_with(&time) && t.contains("ưu tiên")),
        "{slot}"
    );
    wait_on_air(&driver, &STATIONS.map(|s| (s, Some("Tiêm chủng"))));
    wait_on_air(&driver, &STATIONS.map(|s| (s, None)));
    // The plays report lists it at every station (once the agents' journals are in).
    driver.go("reports");
    let deadline = Instant::now() + PATIENCE;
    loop {
        driver.click("#report-show");
        let listed = driver.script(
            "return Array.from(document.querySelectorAll('#plays tbody tr')).filter(r => r.cells[1].textContent === 'Tiêm chủng').map(r => r.cells[0].textContent);",
        );
        if listed.as_array().is_some_and(|l| l.len() == 3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plays report never listed it: {listed}"
        );
        // A poll of the report, which follows the agents' journals.
        std::thread::sleep(Duration::from_millis(500));
    }

    // (c) and (d): a commune operator and a viewer, made in the console, with no restart.
    create_account(
        &driver,
        "can-bo-binh-duong",
        "operator",
        Some("binh-duong"),
        "Bình Dương 2026",
    );
    create_account(&driver, "xem-bao-cao", "viewer", None, "Xem báo cáo 2026");
    // A normal bulletin offered to every commune: it airs where a commune accepts it.
    let said = send(
        &driver,
        &Send {
            item: "Họp dân",
            level: "normal",
            stations: None,
            once: None,
            times: 1,
        },
    );
    assert!(said.starts_with("Đã gửi “Họp dân”"), "{said}");

    // (e) A time in the past, next to the field, in Vietnamese; nothing stored.
    let entries = |driver: &Driver| {
        fetch(driver, "GET", "/api/v1/schedule", None, false)[1]["entries"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let before = entries(&driver);
    let yesterday = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh")
        .expect("zone")
        .to_datetime(jiff::Timestamp::now())
        .date()
        .yesterday()
        .expect("yesterday")
        .to_string();
    let said = send(
        &driver,
        &Send {
            item: "Tiêm chủng",
            level: "priority",
            stations: None,
            once: Some((yesterday, "08:00".to_owned())),
            times: 1,
        },
    );
    assert_eq!(said, "Giờ này đã qua. Hãy chọn giờ muộn hơn.");
    assert_eq!(
        driver.script("return document.querySelector('[data-error=\"when\"]').textContent;"),
        "Giờ này đã qua. Hãy chọn giờ muộn hơn."
    );
    assert_eq!(entries(&driver), before, "a past entry was stored");
    // An unknown commune, as a script or an old page would send it: refused, nothing queued.
    let listed =
        |driver: &Driver| fetch(driver, "GET", "/api/v1/bulletins", None, false)[1].clone();
    let queued = listed(&driver);
    let refused = fetch(
        &driver,
        "POST",
        "/api/v1/bulletins",
        Some(json!({"id": "xa-la", "name": "Xã lạ", "level": "priority",
            "source": {"kind": "relay", "url": "http://127.0.0.1:9/x.mp3"},
            "targets": {"stations": ["xa-khong-co"]}, "duration": "PT10S"})),
        true,
    );
    assert_eq!(refused[0], 400, "{refused}");
    assert!(
        refused[1]["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown station `xa-khong-co`")),
        "{refused}"
    );
    assert_eq!(listed(&driver), queued, "the refused bulletin was queued");
    // (d) An admin's session without the CSRF token changes nothing.
    let no_csrf = fetch(
        &driver,
        "POST",
        "/api/v1/live/start",
        Some(json!({})),
        false,
    );
    assert_eq!(no_csrf[0], 403, "{no_csrf}");

    // (f) Every page as the admin sees it.
    screenshots(&driver, "admin");
    driver.click("#sign-out");

    // (c) The operator, on a phone: only their commune; accepts the bulletin.
    driver.window_size(360, 740);
    driver.sign_in(&console, "can-bo-binh-duong", "Bình Dương 2026");
    assert_eq!(
        driver.script("return Array.from(document.querySelectorAll('#stations tbody tr')).map(r => r.dataset.station);"),
        json!(["binh-duong"]),
        "an operator's overview is their own commune"
    );
    driver.go("inbox");
    let rows = driver.wait_for(
        "return Array.from(document.querySelectorAll('#bulletins .offer')).map(o => [o.dataset.station, o.querySelector('h3').textContent]);",
        |v| v.as_array().is_some_and(|r| !r.is_empty()),
    );
    assert!(
        rows.as_array()
            .expect("rows")
            .iter()
            .all(|r| r[0] == "binh-duong"),
        "an operator sees another commune's bulletins: {rows}"
    );
    driver.click("#bulletins .offer[data-station=\"binh-duong\"] button[data-action=\"accept\"]");
    wait_on_air(
        &driver,
        &[
            (STATIONS[0], None),
            (STATIONS[1], Some("Họp dân")),
            (STATIONS[2], None),
        ],
    );
    screenshots(&driver, "operator");
    wait_on_air(&driver, &STATIONS.map(|s| (s, None)));
    driver.click("#sign-out");

    // (d) The viewer: no control anywhere, and the API refuses every action of theirs.
    driver.sign_in(&console, "xem-bao-cao", "Xem báo cáo 2026");
    screenshots(&driver, "viewer");
    for page in ["overview", "week", "library", "inbox", "reports"] {
        driver.go(page);
        let controls = driver.script(
            "return Array.from(document.querySelectorAll('section.page:not([hidden]) button, section.page:not([hidden]) input[type=file]')).filter(b => b.offsetParent !== null && !['week-prev', 'week-this', 'week-next', 'report-show', 'audit-show'].includes(b.id)).map(b => b.id || b.textContent);",
        );
        assert_eq!(
            controls,
            json!([]),
            "a viewer sees action controls on {page}"
        );
    }
    for (method, path, body) in [
        (
            "POST",
            "/api/v1/emergency",
            json!({"name": "x", "url": "http://127.0.0.1:9/x.mp3"}),
        ),
        ("POST", "/api/v1/live/start", json!({})),
        ("POST", "/api/v1/schedule/entries", json!({})),
        ("POST", "/api/v1/users", json!({})),
        ("POST", "/api/v1/library?name=x", json!({})),
        (
            "POST",
            "/api/v1/bulletins/hop-dan/accept",
            json!({"station": "binh-duong"}),
        ),
    ] {
        let answer = fetch(&driver, method, path, Some(body), true);
        assert_eq!(answer[0], 403, "viewer {method} {path}: {answer}");
    }
    driver.click("#sign-out");

    let mut outputs = Vec::new();
    for (station, agent) in STATIONS.iter().zip(agents) {
        let (status, _) = agent.terminate();
        assert!(status.success(), "{station} exit {status}");
        outputs.push(wav(station));
    }
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");

    // At the loudspeakers. (a): the emergency at the first two, correlated with the decoded MP3,
    // and the background before and after it; the third never left the background.
    for (i, path) in outputs.iter().enumerate() {
        let (samples, rate) = read_wav(path);
        assert_eq!(rate, 48_000);
        let track = pitch_track(path);
        let background = windows_at(&track, 440.0);
        let first = *background.first().expect("the background aired");
        let last = *background.last().expect("the background aired");
        // Loud and not the background, between its first and last window: the emergency.
        let other: Vec<usize> = (first..last)
            .filter(|w| track[*w].0 > LOUD && !background.contains(w))
            .collect();
        if i < 2 {
            let start = *other.first().unwrap_or_else(|| {
                panic!("{}: no emergency inside the background", path.display())
            });
            let from = (start.saturating_sub(5)) * 4_800;
            let s = compare(&files.emergency_reference, &samples[from..], 96_000);
            println!("{}: emergency {s:?}", path.display());
            assert!(
                s.correlation >= 0.8,
                "{}: the emergency does not match the MP3: {s:?}",
                path.display()
            );
            // Resumed where it was: the background aired about once in all, not restarted.
            let aired = background.len() as f32 / 10.0;
            assert!(
                (aired - BACKGROUND_SECONDS as f32).abs() < 3.0,
                "{}: the background aired {aired} s of {BACKGROUND_SECONDS}",
                path.display()
            );
        } else {
            assert!(
                other.len() < 5,
                "{}: something interrupted the background where no emergency was sent ({} windows)",
                path.display(),
                other.len()
            );
        }
        // (b) everywhere; (c) only where it was accepted.
        assert!(
            windows_at(&track, 1000.0).len() >= 40,
            "{}: the scheduled item did not air",
            path.display()
        );
        let accepted = windows_at(&track, 1500.0).len();
        if STATIONS[i] == "binh-duong" {
            assert!(
                accepted >= 40,
                "{}: the accepted bulletin did not air",
                path.display()
            );
        } else {
            assert!(
                accepted < 3,
                "{}: a bulletin it never accepted aired",
                path.display()
            );
        }
    }
}
