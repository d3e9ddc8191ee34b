//! Text-to-speech in the console (issue 17, acceptance c), in Debian's headless Chromium over
//! WebDriver, against a real `radio-server` over HTTPS with espeak-ng and three real
//! `relay-agent`s recording WAVs:
//!
//! - empty text and text over `tts_max_chars` get the Vietnamese refusal, and nothing is kept;
//!   a text starting with `-` is spoken as text;
//! - a Vietnamese sentence with diacritics is typed, previewed (the page's `<audio>` gets a
//!   playable duration), kept with «Gửi ngay…», which opens the send form with the new item
//!   chosen, and scheduled there at priority (ưu tiên) for every commune at the next whole
//!   minute at least 40 s away;
//! - every agent's WAV holds the stored speech (its loudness envelope correlated with the
//!   library's file) starting at that minute, and the plays report lists it at every station;
//! - the library page with the panel is saved under `target/console/` at 1366×900 and 360×740,
//!   and nothing overflows the phone's width.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use radio_tests::browser::{console_of, save_screenshot, Driver};
use radio_tests::console::District;
use radio_tests::{read_wav, require_tool, PATIENCE};

const STATIONS: [&str; 3] = ["binh-trung", "binh-duong", "binh-chanh"];
/// Bytes of WAV per second of air: 48 kHz mono 16-bit.
const WAV_BYTES_PER_SECOND: f64 = 96_000.0;
/// The WAV header the sink writes before the samples.
const WAV_HEADER: u64 = 44;
/// The text limit the server runs with here.
const MAX_CHARS: usize = 400;
/// An announcement with every Vietnamese diacritic.
const SENTENCE: &str = "Thông báo của Ủy ban nhân dân xã: sáng thứ Bảy tuần này, trạm y tế tiêm \
                        phòng sởi cho trẻ em dưới năm tuổi. Đề nghị bà con đưa các cháu đến đúng giờ.";
const NAME: &str = "Tiêm phòng sởi (đọc tự động)";
/// The least time between scheduling and the air time: the form is filled in well before.
const LEAD: i64 = 40;

const OVERFLOWING: &str = "const w = document.documentElement.clientWidth; return Array.from(document.querySelectorAll('body *')).filter(e => e.offsetParent !== null && !e.closest('.table-wrap') && e.getBoundingClientRect().right > w + 1).map(e => `${e.tagName}#${e.id}.${e.className}: ${Math.round(e.getBoundingClientRect().right)}`).concat(document.documentElement.scrollWidth > w ? [`page ${document.documentElement.scrollWidth} > ${w}`] : []);";

fn wav_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// Where each agent's WAV is on the wall clock: the sink records every 20 ms slot, silence
/// included, as it airs and flushes each second, so `now - seconds written` is at least the
/// wall time of the WAV's first sample, and equal to it just after a flush. The least of many
/// readings is that time, to a few hundred milliseconds (the playout slews its clock).
struct Timeline {
    paths: Vec<PathBuf>,
    /// Per WAV: the wall time (Unix seconds) of its first sample, as far as seen.
    origin: Vec<f64>,
}

impl Timeline {
    fn new(paths: Vec<PathBuf>) -> Timeline {
        let origin = vec![f64::MAX; paths.len()];
        Timeline { paths, origin }
    }

    fn read(&mut self) {
        for (path, origin) in self.paths.iter().zip(&mut self.origin) {
            let len = wav_len(path);
            if len <= WAV_HEADER {
                continue;
            }
            let written = (len - WAV_HEADER) as f64 / WAV_BYTES_PER_SECOND;
            *origin = origin.min(now_secs() - written);
        }
    }

    /// Reads the WAVs until every one has recorded past `unix` (Unix seconds).
    fn follow_until(&mut self, unix: f64) {
        let deadline = Instant::now() + PATIENCE + Duration::from_secs(120);
        loop {
            self.read();
            let past = self.paths.iter().zip(&self.origin).all(|(path, origin)| {
                let len = wav_len(path);
                len > WAV_HEADER
                    && *origin + (len - WAV_HEADER) as f64 / WAV_BYTES_PER_SECOND > unix
            });
            if past {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the agents' WAVs never reached {unix}: {:?}",
                self.paths.iter().map(|p| wav_len(p)).collect::<Vec<_>>()
            );
            // A poll of the files the agents write; short, since each reading times the WAV.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The page's own `fetch` of an API route with the session cookie and CSRF token:
/// `[status, body as JSON or text]`.
fn fetch(driver: &Driver, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map_or("undefined".to_owned(), |b| format!("JSON.stringify({b})"));
    driver.script(&format!(
        "const headers = {{'Content-Type': 'application/json', 'X-CSRF-Token': csrf}}; \
         return fetch('{path}', {{method: '{method}', headers, credentials: 'same-origin', body: {body}}}) \
         .then(r => r.text().then(t => {{ let v = t; try {{ v = JSON.parse(t); }} catch (_) {{}} return [r.status, v]; }}));"
    ))
}

fn library(driver: &Driver) -> Vec<Value> {
    let listing = fetch(driver, "GET", "/api/v1/library", None);
    assert_eq!(listing[0], 200, "{listing}");
    listing[1].as_array().expect("items").clone()
}

/// Puts `text` in the panel's text area as a paste does, the count following.
fn paste(driver: &Driver, text: &str) {
    driver.script(&format!(
        "const a = document.querySelector('#tts-text'); a.value = {}; a.dispatchEvent(new Event('input')); return null;",
        json!(text)
    ));
}

/// Clicks `button` and waits for the panel's message to change from `Máy chủ đang đọc…`.
fn press(driver: &Driver, button: &str) -> String {
    driver.script("document.querySelector('#tts-message').textContent = ''; return null;");
    driver.click(button);
    let said = driver.wait_for(
        "const m = document.querySelector('#tts-message').textContent; return m.startsWith('Máy chủ đang đọc') ? '' : m;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    said.as_str().expect("text").to_owned()
}

/// The preview player's duration once its metadata is in.
fn preview_duration(driver: &Driver) -> f64 {
    let duration = driver.wait_for(
        "const a = document.querySelector('#tts-audio'); return !a.hidden && a.readyState >= 1 && Number.isFinite(a.duration) ? a.duration : null;",
        |v| v.is_number(),
    );
    duration.as_f64().expect("seconds")
}

fn screenshots(driver: &Driver, name: &str) {
    for (width, height, size) in [(1366, 900, "desktop"), (360, 740, "phone")] {
        driver.window_size(width, height);
        driver.script("document.querySelector('#tts-form').scrollIntoView(); return null;");
        save_screenshot(driver, &format!("{name}-{size}"));
        if width == 360 {
            assert_eq!(
                driver.script(OVERFLOWING),
                json!([]),
                "the library page with the panel is wider than a 360 px phone"
            );
        }
    }
    driver.window_size(1366, 900);
}

/// The next whole minute at least [`LEAD`] seconds away: Unix seconds, and the district's
/// (Asia/Ho_Chi_Minh) date and `HH:MM`.
fn next_minute() -> (i64, String, String) {
    let now = jiff::Timestamp::now().as_second();
    let at = (now + LEAD + 59) / 60 * 60;
    let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").expect("zone");
    let local = tz.to_datetime(jiff::Timestamp::from_second(at).expect("time"));
    (
        at,
        local.date().to_string(),
        format!("{:02}:{:02}", local.hour(), local.minute()),
    )
}

/// `path` resampled to 48 kHz mono by sox: what the agents' WAVs are.
fn at_48k(path: &Path, out: &Path) -> Vec<f32> {
    // -G: the resampler's overshoot is scaled down rather than clipped.
    let status = Command::new("sox")
        .arg("-G")
        .arg(path)
        .args(["-r", "48000", "-c", "1", "-b", "16"])
        .arg(out)
        .status()
        .expect("run sox");
    assert!(status.success(), "sox {}", path.display());
    let (samples, rate) = read_wav(out);
    assert_eq!(rate, 48_000);
    samples
}

/// Pearson correlation of the 10 ms RMS envelopes of `reference` and the start of `output`.
fn envelope_correlation(reference: &[f32], output: &[f32]) -> f64 {
    let envelope = |x: &[f32]| -> Vec<f64> {
        x.chunks_exact(480)
            .map(|w| (w.iter().map(|s| f64::from(s * s)).sum::<f64>() / 480.0).sqrt())
            .collect()
    };
    let n = reference.len().min(output.len());
    let (a, b) = (envelope(&reference[..n]), envelope(&output[..n]));
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (ma, mb) = (mean(&a), mean(&b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(&b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma).powi(2);
        bb += (y - mb).powi(2);
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Index of the end of the last 10 ms window whose RMS is over `level`.
fn last_loud(samples: &[f32], level: f32) -> Option<usize> {
    samples
        .chunks(480)
        .rposition(|w| (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt() > level)
        .map(|i| ((i + 1) * 480).min(samples.len()))
}

/// Index of the first 10 ms window from `from` whose RMS is over `level`.
fn first_loud(samples: &[f32], from: usize, level: f32) -> Option<usize> {
    samples
        .get(from..)?
        .chunks(480)
        .position(|w| (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt() > level)
        .map(|i| from + i * 480)
}

#[test]
fn an_announcement_typed_in_the_console_airs_everywhere_at_the_minute() {
    if !require_tool("espeak-ng") || !require_tool("sox") {
        return;
    }
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let max_chars = MAX_CHARS.to_string();
    let District {
        mut server,
        agents,
        data,
        ..
    } = District::start(
        dir.path(),
        &STATIONS,
        &["--no-schedule", "--tts-max-chars", &max_chars],
    );
    let wav = |station: &str| dir.path().join(format!("{station}.wav"));
    let (console, password) = console_of(&mut server);
    driver.sign_in(&console, "admin", &password);
    driver.go("library");
    // The panel has the server's limit.
    driver.wait_for(
        "return document.querySelector('#tts-count').textContent;",
        |v| v.as_str() == Some(&format!("0/{MAX_CHARS} ký tự")),
    );

    // Empty text: refused in Vietnamese, nothing kept.
    let said = press(&driver, "#tts-preview");
    assert_eq!(
        said,
        "Chưa có nội dung thông báo — hãy gõ hoặc dán văn bản cần đọc."
    );
    paste(&driver, "  \n  ");
    assert_eq!(press(&driver, "#tts-save"), said);
    // Over the limit: the count turns red, and both buttons are refused with the count.
    let over = "ả".repeat(MAX_CHARS + 1);
    paste(&driver, &over);
    assert_eq!(
        driver.script(
            "const c = document.querySelector('#tts-count'); return [c.textContent, c.className];"
        ),
        json!([format!("{}/{MAX_CHARS} ký tự", MAX_CHARS + 1), "bad"])
    );
    let too_long = format!(
        "Văn bản quá dài: {} ký tự, tối đa {MAX_CHARS} ký tự — hãy rút gọn hoặc chia thành nhiều thông báo.",
        MAX_CHARS + 1
    );
    assert_eq!(press(&driver, "#tts-preview"), too_long);
    assert_eq!(press(&driver, "#tts-send"), too_long);
    // The server refuses it the same way when a page does not check first.
    let refused = fetch(
        &driver,
        "POST",
        "/api/v1/library/tts",
        Some(json!({"name": "Dài", "text": over})),
    );
    assert_eq!(refused[0], 400, "{refused}");
    assert_eq!(refused[1]["message_vi"], too_long.as_str(), "{refused}");
    assert!(library(&driver).is_empty(), "a refused text was kept");

    // A text starting with `-` is spoken, not taken as an option.
    paste(&driver, "");
    driver.type_into("#tts-text", "-v en --help xin chào");
    let said = press(&driver, "#tts-preview");
    assert!(said.starts_with("Bản nghe thử đã sẵn sàng"), "{said}");
    let dashed = preview_duration(&driver);
    assert!(dashed > 0.5, "{dashed} s");

    // The announcement, typed with its diacritics, a little slower than the default.
    driver.clear("#tts-text");
    driver.type_into("#tts-text", SENTENCE);
    assert_eq!(
        driver.script("return document.querySelector('#tts-text').value;"),
        SENTENCE,
        "the text area holds the sentence as typed"
    );
    driver.script(
        "const s = document.querySelector('#tts-speed'); s.value = '140'; s.dispatchEvent(new Event('input')); return null;",
    );
    assert_eq!(
        driver.script("return document.querySelector('#tts-speed-value').textContent;"),
        "140 từ/phút"
    );
    driver.script("document.querySelector('#tts-audio').removeAttribute('src'); return null;");
    let said = press(&driver, "#tts-preview");
    assert!(said.starts_with("Bản nghe thử đã sẵn sàng"), "{said}");
    let previewed = preview_duration(&driver);
    assert!(
        (4.0..25.0).contains(&previewed),
        "the preview plays {previewed} s"
    );
    assert!(library(&driver).is_empty(), "a preview was kept");
    screenshots(&driver, "tts-library");

    // «Gửi ngay…»: kept, and the send form opens with it chosen.
    driver.clear("#tts-name");
    driver.type_into("#tts-name", NAME);
    driver.click("#tts-send");
    driver.wait_for(
        "return Array.from(document.querySelectorAll('section.page')).filter(s => !s.hidden).map(s => s.dataset.page);",
        |v| v == &json!(["send"]),
    );
    let items = library(&driver);
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["name"], NAME);
    assert_eq!(item["original_name"], "tts.wav");
    let seconds = item["duration_secs"].as_f64().expect("duration");
    assert!(
        (seconds - previewed).abs() < 0.5,
        "kept {seconds} s, previewed {previewed} s"
    );
    let id = item["id"].as_str().expect("id").to_owned();
    // Once the send page has read the library itself (its options show the length).
    let chosen = driver.wait_for(
        "const s = document.querySelector('#send-item'); const o = s.selectedOptions[0]; return o && o.textContent.includes(' (') ? [document.querySelector('#send-kind').value, s.value, document.querySelector('#send-name').value, o.textContent] : null;",
        |v| !v.is_null(),
    );
    let chosen = chosen.as_array().expect("an array");
    assert_eq!(
        chosen[..3],
        [json!("library"), json!(id), json!(NAME)],
        "{chosen:?}"
    );
    save_screenshot(&driver, "tts-send-form");

    // Scheduled there: priority, every commune, the next whole minute at least 40 s away.
    let (at, date, time) = next_minute();
    driver.script(&format!(
        "const f = (id, v) => {{ const e = document.querySelector(id); e.value = v; e.dispatchEvent(new Event('change')); }};
         document.querySelector('input[name=\"send-level\"][value=\"priority\"]').click();
         f('#send-where', 'all');
         f('#send-when', 'once');
         document.querySelector('#send-date').value = '{date}';
         document.querySelector('#send-time').value = '{time}';
         document.querySelector('#send-times').value = '1';
         document.querySelector('#send-message').textContent = '';
         return null;"
    ));
    driver.click("#send-submit");
    let question = driver.accept_confirmation();
    assert!(
        question.contains(NAME) && question.contains("Ưu tiên"),
        "{question}"
    );
    let said = driver.wait_for(
        "return document.querySelector('#send-message').textContent;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    assert!(
        said.as_str()
            .is_some_and(|t| t.starts_with(&format!("Đã đặt lịch “{NAME}”"))),
        "{said}"
    );
    assert!(
        jiff::Timestamp::now().as_second() < at - 5,
        "the form took too long: the minute is already here"
    );

    // The agents' air, timed against the wall clock until the speech is over everywhere.
    let mut timeline = Timeline::new(STATIONS.iter().map(|s| wav(s)).collect());
    timeline.follow_until(at as f64 + seconds + 3.0);

    // The plays report lists it at every station (once the agents' journals are in).
    driver.go("reports");
    let deadline = Instant::now() + PATIENCE;
    loop {
        driver.click("#report-show");
        let listed = driver.script(&format!(
            "return Array.from(document.querySelectorAll('#plays tbody tr')).filter(r => r.cells[1].textContent === {}).map(r => r.cells[0].textContent);",
            json!(NAME)
        ));
        if listed.as_array().is_some_and(|l| l.len() == STATIONS.len()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the plays report never listed it at every station: {listed}"
        );
        // A poll of the report, which follows the agents' journals.
        std::thread::sleep(Duration::from_millis(500));
    }
    save_screenshot(&driver, "tts-plays-report");

    let origins = timeline.origin.clone();
    for (station, agent) in STATIONS.iter().zip(agents) {
        let (status, _) = agent.terminate();
        assert!(status.success(), "{station} exit {status}");
    }
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");

    // At the loudspeakers: the stored speech, from the minute.
    let stored = data.join("library").join(format!("{id}.wav"));
    let reference = at_48k(&stored, &dir.path().join("reference-48k.wav"));
    let reference_onset = first_loud(&reference, 0, 0.01).expect("the speech is not silent");
    for (station, origin) in STATIONS.iter().zip(origins) {
        let path = wav(station);
        let (samples, rate) = read_wav(&path);
        assert_eq!(rate, 48_000);
        // Nothing airs in the ten seconds before the minute (the schedule is empty).
        let minute = ((at as f64 - origin) * 48_000.0) as usize;
        let before = minute.saturating_sub(480_000);
        let onset = first_loud(&samples, before, 0.01)
            .unwrap_or_else(|| panic!("{station}: no speech after the minute"));
        let onset_wall = origin + onset as f64 / 48_000.0;
        let start_wall = onset_wall - reference_onset as f64 / 48_000.0;
        println!(
            "{station}: the speech starts {:+.3} s from the minute",
            start_wall - at as f64
        );
        // Within a second of the minute (plus the agents' 300 ms playout delay): the WAV's
        // wall-clock origin is known to a few hundred milliseconds (runs here measured -0.12 to
        // +0.32 s), a slot or a minute off is not.
        assert!(
            (-1.0..1.3).contains(&(start_wall - at as f64)),
            "{station}: the speech starts {:.3} s from the minute",
            start_wall - at as f64
        );
        // The stored speech laid over what aired, by their onsets: its loudness, syllable by
        // syllable (10 ms windows), must be what aired. (Opus at the server's 32 kbit/s keeps
        // speech's sound better than its waveform, whose correlation varied from 0.53 to 0.95
        // between runs here; the envelope's was 0.998.)
        let start = onset.saturating_sub(reference_onset);
        let envelope = envelope_correlation(&reference, &samples[start..]);
        println!("{station}: envelope correlation with the stored speech {envelope:.3}");
        assert!(
            envelope >= 0.9,
            "{station}: what aired is not the stored speech (envelope correlation {envelope:.3})"
        );
        // All of it aired, and nothing after it.
        let end = start + last_loud(&reference, 0.01).expect("the speech is not silent");
        assert!(
            samples.len() > end + 48_000,
            "{station}: the WAV ends before the speech does"
        );
        assert_eq!(
            first_loud(&samples, end + 24_000, 0.01),
            None,
            "{station}: something aired after the speech"
        );
    }
}
