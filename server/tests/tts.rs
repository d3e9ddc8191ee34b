//! Text-to-speech against the real `radio-server run`, over its admin endpoint: a Vietnamese
//! announcement previewed as a WAV, kept as a library item the listing shows (measured like an
//! upload), spoken from the command line (`radio-server library say`, a text starting with `-`
//! on stdin); empty and over-long texts, a bad speed and a missing name refused with
//! `message_vi`; a viewer refused. espeak-ng really speaks.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use radio_server::library::LibraryItem;
use radio_server::operator::admin::ErrorBody;
use radio_server::operator::admin_client::AdminClient;
use radio_server::operator::tts_routes::TtsInfo;
use radio_tests::Process;

const BINARY: &str = env!("CARGO_BIN_EXE_radio-server");

/// The text limit the server runs with here, lower than the default so a test text crosses it.
const MAX_CHARS: usize = 300;

const SENTENCE: &str = "Thông báo của Ủy ban nhân dân xã Bình Trung: sáng thứ Bảy, trạm y tế \
                        tiêm phòng sởi cho trẻ em dưới năm tuổi.";

/// The viewer's token, and its SHA-256 for the config.
const VIEWER_TOKEN: &str = "xem-0123456789abcdef0123456789abcdef";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A POST or GET with `token`: status, content type, body bytes.
fn call(
    admin: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, String, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let url = format!("http://{admin}{path}");
    let auth = format!("Bearer {}", token.trim());
    let response = match body {
        Some(body) => agent
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.to_string().as_bytes()),
        None if method == "GET" => agent.get(&url).header("Authorization", &auth).call(),
        None => panic!("{method} without a body"),
    };
    let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response
        .body_mut()
        .with_config()
        .limit(100 << 20)
        .read_to_vec()
        .expect("answer body");
    (status, content_type, bytes)
}

/// A refusal's status and body.
fn refusal(answer: (u16, String, Vec<u8>)) -> (u16, ErrorBody) {
    let (status, _, bytes) = answer;
    let body: ErrorBody = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
    (status, body)
}

/// Seconds of audio in a WAV.
fn wav_seconds(bytes: &[u8]) -> f64 {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a readable WAV");
    let spec = reader.spec();
    f64::from(reader.duration()) / f64::from(spec.sample_rate)
}

#[test]
fn text_is_previewed_kept_spoken_from_the_shell_and_refused_with_vietnamese_messages() {
    if !radio_test_tools::require_tool("espeak-ng") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        format!(
            "tts_max_chars = {MAX_CHARS}\n\n[[admin_token]]\nname = \"xem\"\nrole = \"viewer\"\n\
             sha256 = \"{}\"\n",
            sha256_hex(VIEWER_TOKEN)
        ),
    )
    .expect("write the config");
    let data_str = data.to_str().expect("utf-8 path");
    let config_str = config.to_str().expect("utf-8 path");
    let mut process = Process::start(
        "server",
        Path::new(BINARY),
        &[
            "run",
            "--config",
            config_str,
            "--data-dir",
            data_str,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--no-schedule",
        ],
    );
    let admin: SocketAddr = process.admin_address().parse().expect("admin address");
    process.wait_for("listening on", Duration::from_secs(30));
    let token = std::fs::read_to_string(data.join("admin.token")).expect("admin token");
    let client = AdminClient::new(admin, &token);

    // The limits the console shows.
    let (status, _, bytes) = call(admin, VIEWER_TOKEN, "GET", "/api/v1/tts", None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let info: TtsInfo = serde_json::from_slice(&bytes).expect("TtsInfo");
    assert_eq!(info.max_chars, MAX_CHARS);
    assert_eq!(info.engine, "espeak-ng");
    assert_eq!((info.speed_min, info.speed_max), (80, 300));

    // A preview: a WAV with true sizes, of the sentence's length, and nothing stored.
    let (status, content_type, wav) = call(
        admin,
        &token,
        "POST",
        "/api/v1/tts/preview",
        Some(serde_json::json!({ "text": SENTENCE, "speed": 150 })),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&wav));
    assert_eq!(content_type, "audio/wav");
    let seconds = wav_seconds(&wav);
    assert!((3.0..20.0).contains(&seconds), "{seconds} s");
    assert!(
        client.library().expect("list").is_empty(),
        "a preview is not kept"
    );

    // Kept: an item like an upload's, measured, in the listing, playable.
    let (status, _, bytes) = call(
        admin,
        &token,
        "POST",
        "/api/v1/library/tts",
        Some(serde_json::json!({ "name": "Tiêm phòng sởi", "text": SENTENCE })),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
    let item: LibraryItem = serde_json::from_slice(&bytes).expect("the item");
    assert_eq!(item.name, "Tiêm phòng sởi");
    assert_eq!(item.original_name, "tts.wav");
    assert_eq!(item.format, "wav");
    assert!(
        (item.duration_secs - seconds).abs() < 0.5,
        "{} s kept, {seconds} s previewed",
        item.duration_secs
    );
    assert!(item.rms_dbfs > -40.0 && item.peak_dbfs <= 0.0, "{item:?}");
    assert!(item.path.exists(), "{}", item.path.display());
    let listed = client.library().expect("list");
    assert!(listed.iter().any(|i| i.id == item.id), "{listed:?}");
    let (status, content_type, _) = call(
        admin,
        &token,
        "GET",
        &format!("/api/v1/library/{}/audio", item.id),
        None,
    );
    assert_eq!((status, content_type.as_str()), (200, "audio/wav"));

    // Refusals, each with Vietnamese that says what to do.
    let over = "ă".repeat(MAX_CHARS + 1);
    for (path, body, status, words) in [
        (
            "/api/v1/tts/preview",
            serde_json::json!({ "text": "" }),
            400,
            "Chưa có nội dung",
        ),
        (
            "/api/v1/library/tts",
            serde_json::json!({ "name": "Trống", "text": "  \n " }),
            400,
            "hãy gõ hoặc dán",
        ),
        (
            "/api/v1/tts/preview",
            serde_json::json!({ "text": over }),
            400,
            "tối đa 300 ký tự",
        ),
        (
            "/api/v1/library/tts",
            serde_json::json!({ "name": "Dài", "text": over }),
            400,
            "301 ký tự",
        ),
        (
            "/api/v1/tts/preview",
            serde_json::json!({ "text": SENTENCE, "speed": 500 }),
            400,
            "từ 80 đến 300",
        ),
        (
            "/api/v1/library/tts",
            serde_json::json!({ "name": "", "text": SENTENCE }),
            400,
            "Hãy đặt tên",
        ),
    ] {
        let (got, body) = refusal(call(admin, &token, "POST", path, Some(body.clone())));
        assert_eq!(got, status, "{path} {body:?}");
        let vi = body.message_vi.unwrap_or_default();
        assert!(vi.contains(words), "{path}: {vi:?} lacks {words:?}");
        assert!(body.error.starts_with(&vi), "{:?}", body.error);
    }
    assert_eq!(
        client.library().expect("list").len(),
        1,
        "nothing refused is kept"
    );

    // A viewer may read the limits, not speak.
    for (path, body) in [
        (
            "/api/v1/tts/preview",
            serde_json::json!({ "text": SENTENCE }),
        ),
        (
            "/api/v1/library/tts",
            serde_json::json!({ "name": "x", "text": SENTENCE }),
        ),
    ] {
        let (status, _, bytes) = call(admin, VIEWER_TOKEN, "POST", path, Some(body));
        assert_eq!(status, 403, "{path}: {}", String::from_utf8_lossy(&bytes));
    }

    // From the shell: the text on stdin, starting with `-`, is spoken, not taken as an option.
    let admin_str = admin.to_string();
    let mut say = Command::new(BINARY)
        .args(["library", "say", "--name", "Từ dòng lệnh", "--speed", "180"])
        .args(["--data-dir", data_str, "--admin-listen", &admin_str])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radio-server library say");
    say.stdin
        .take()
        .expect("stdin")
        .write_all("-v en --help Xin chào bà con".as_bytes())
        .expect("write the text");
    let said = say.wait_with_output().expect("library say");
    assert!(
        said.status.success(),
        "{}",
        String::from_utf8_lossy(&said.stderr)
    );
    let id = String::from_utf8_lossy(&said.stdout).trim().to_owned();
    let spoken = client
        .library()
        .expect("list")
        .into_iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("`{id}` not in the library"));
    assert_eq!(spoken.name, "Từ dòng lệnh");
    assert!(spoken.duration_secs > 1.0, "{spoken:?}");
    // And refused from the shell with the server's words.
    let empty = Command::new(BINARY)
        .args(["library", "say", "--name", "Trống"])
        .args(["--data-dir", data_str, "--admin-listen", &admin_str])
        .args(["--", " "])
        .output()
        .expect("library say");
    assert!(!empty.status.success());
    assert!(
        String::from_utf8_lossy(&empty.stderr).contains("Chưa có nội dung"),
        "{}",
        String::from_utf8_lossy(&empty.stderr)
    );

    // Kept texts are audited as library uploads spoken from text.
    let (status, audit) = client
        .raw("GET", "/api/v1/audit?action=library-upload", None)
        .expect("audit");
    assert_eq!(status, 200);
    assert!(audit.contains("text-to-speech"), "{audit:.800}");
    process.quiet();
}
