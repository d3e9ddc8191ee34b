//! The console's audio library against the real `radio-server run`, over its admin endpoint
//! with the district token: recordings as phones, PCs and browsers make them (MP3, iPhone-style
//! M4A, Ogg Opus, WebM Opus from MediaRecorder) are taken with their length and level; what is
//! not audio, cut short or over the limit is refused in Vietnamese and leaves nothing behind;
//! a recording the schedule plays cannot be deleted until its entry is gone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use radio_server::library::LibraryItem;
use radio_server::operator::admin::ErrorBody;
use radio_server::operator::admin_client::{AdminClient, ClientError};
use radio_tests::Process;

const BINARY: &str = env!("CARGO_BIN_EXE_radio-server");

/// Seconds of the tone in every fixture.
const SECONDS: f64 = 3.0;

/// The upload limit the server runs with in these tests.
const LIMIT_MB: u64 = 1;

struct Server {
    process: Process,
    client: AdminClient,
    admin: SocketAddr,
    data_dir: PathBuf,
}

fn start(data_dir: &Path) -> Server {
    let data = data_dir.to_str().expect("utf-8 path");
    let limit = LIMIT_MB.to_string();
    let mut process = Process::start(
        "server",
        Path::new(BINARY),
        &[
            "run",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--no-schedule",
            "--library-max-upload-mb",
            &limit,
        ],
    );
    let admin: SocketAddr = process.admin_address().parse().expect("admin address");
    process.wait_for("listening on", Duration::from_secs(30));
    let token = std::fs::read_to_string(data_dir.join("admin.token")).expect("admin token");
    Server {
        process,
        client: AdminClient::new(admin, &token),
        admin,
        data_dir: data_dir.to_path_buf(),
    }
}

impl Server {
    fn list(&self) -> Vec<LibraryItem> {
        self.client.library().expect("library list")
    }

    /// Every file in the library folder, by name.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir.join("library"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn upload(&self, path: &Path, name: &str) -> Result<LibraryItem, ClientError> {
        let bytes = std::fs::read(path).expect("fixture");
        let file_name = path.file_name().expect("name").to_string_lossy();
        self.client.library_upload(bytes, &file_name, Some(name))
    }

    /// An upload that must be refused: its status and Vietnamese message.
    fn refused(&self, bytes: Vec<u8>, file_name: &str) -> (u16, ErrorBody) {
        let url = format!(
            "http://{}/api/v1/library?name={}",
            self.admin,
            radio_server::operator::library_routes::percent_encode(file_name)
        );
        let token = std::fs::read_to_string(self.data_dir.join("admin.token")).expect("token");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        let mut response = agent
            .post(&url)
            .header("Authorization", &format!("Bearer {}", token.trim()))
            .header("Content-Type", "audio/mpeg")
            .header("x-file-name", file_name)
            .send(&bytes[..])
            .unwrap_or_else(|e| panic!("upload of {file_name}: {e}"));
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().expect("answer");
        let body: ErrorBody = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (status, body)
    }
}

impl Server {
    /// Asks to upload 100 MB with `Expect: 100-continue` and sends none of it: the status and
    /// body of the answer, which must come without the body.
    fn declared_over_the_limit(&self) -> (u16, String) {
        use std::io::{Read, Write};
        let token = std::fs::read_to_string(self.data_dir.join("admin.token")).expect("token");
        let mut stream = std::net::TcpStream::connect(self.admin).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let request = format!(
            "POST /api/v1/library?name=lon HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: audio/mpeg\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
            self.admin,
            token.trim(),
            100 << 20
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the headers and the JSON body's end have come (the server may keep the
        // connection open).
        while !answer.ends_with(b"}") {
            let n = stream
                .read(&mut buf)
                .expect("an answer without the body being sent");
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, text)
    }
}

/// Renders the 440 Hz tone with ffmpeg into `name`; `extra` picks the codec and muxer.
fn tone(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let source = format!("sine=frequency=440:duration={SECONDS}");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
        .args(["-i", &source])
        .args(extra)
        .arg(&out)
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg could not make {name}");
    out
}

/// The first 60% of `path`, as a copy cut short in the middle of sending would be.
fn cut(path: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(path).expect("fixture");
    let out = path.with_file_name(name);
    std::fs::write(&out, &bytes[..bytes.len() * 6 / 10]).expect("write");
    out
}

#[test]
fn recordings_from_phones_and_browsers_are_taken_and_bad_ones_refused() {
    if !radio_test_tools::require_tool("ffmpeg") {
        return;
    }
    let fixtures = tempfile::tempdir().expect("tempdir");
    let f = fixtures.path();
    let mp3 = tone(f, "thong-bao.mp3", &["-c:a", "libmp3lame", "-b:a", "64k"]);
    let iphone = tone(
        f,
        "Ghi âm mới.m4a",
        &["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart"],
    );
    let m4a = tone(f, "ban-tin.m4a", &["-c:a", "aac", "-b:a", "64k"]);
    let opus = tone(f, "ghi-am.opus", &["-c:a", "libopus", "-b:a", "32k"]);
    let webm = tone(f, "recording.webm", &["-c:a", "libopus", "-b:a", "32k"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = start(dir.path());
    assert!(server.list().is_empty());

    // Each is taken, with the length that decodes and a level: the tone is at -18 dBFS peak
    // and -21 dBFS RMS (lossy codecs overshoot the peak a little where the tone starts).
    let mut items = Vec::new();
    for (path, name, format, codec) in [
        (&mp3, "Thông báo lịch tiêm phòng", "mp3", "mp3"),
        (&iphone, "Ghi âm từ iPhone", "m4a", "aac"),
        (&m4a, "Bản tin sáng", "m4a", "aac"),
        (&opus, "Ghi âm Opus", "opus", "opus"),
        (&webm, "Ghi âm trên trình duyệt", "webm", "opus"),
    ] {
        let item = server
            .upload(path, name)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let shown = format!("{}: {item:?}", path.display());
        assert_eq!(item.name, name, "{shown}");
        assert_eq!(
            item.original_name,
            path.file_name().expect("name").to_string_lossy(),
            "{shown}"
        );
        assert_eq!(
            (item.format.as_str(), item.codec.as_str()),
            (format, codec),
            "{shown}"
        );
        assert!((item.duration_secs - SECONDS).abs() <= 0.2, "{shown}");
        assert!((-20.0..-12.0).contains(&item.peak_dbfs), "{shown}");
        assert!((-23.0..-19.0).contains(&item.rms_dbfs), "{shown}");
        assert_eq!(
            item.size_bytes,
            std::fs::metadata(path).expect("size").len(),
            "{shown}"
        );
        assert_eq!(item.uploaded_by, "district", "{shown}");
        assert_eq!(
            item.path,
            dir.path()
                .join("library")
                .join(format!("{}.{format}", item.id)),
            "{shown}"
        );
        // The stored file is the upload, byte for byte, served with a type <audio> plays.
        let (status, body, content_type) = get_audio(&server, &item.id, None);
        assert_eq!(status, 200, "{shown}");
        assert_eq!(body, std::fs::read(path).expect("fixture"), "{shown}");
        let want_type = match format {
            "mp3" => "audio/mpeg",
            "m4a" => "audio/mp4",
            "opus" => "audio/ogg",
            _ => "audio/webm",
        };
        assert_eq!(content_type, want_type, "{shown}");
        items.push(item);
    }
    let listed = server.list();
    assert_eq!(listed, items, "listed as uploaded, oldest first");
    let mut stored: Vec<String> = items.iter().map(LibraryItem::file_name).collect();
    stored.sort();
    assert_eq!(server.files(), stored);

    // A phone's player asks for a range.
    let (status, body, _) = get_audio(&server, &items[0].id, Some("bytes=100-199"));
    assert_eq!(status, 206);
    assert_eq!(body, std::fs::read(&mp3).expect("fixture")[100..200]);

    // Refusals: Vietnamese first, saying what to do; nothing stored, nothing left on disk.
    let text = "Kính gửi bà con, đây là văn bản chứ không phải âm thanh.\n".repeat(100);
    let cut_iphone = cut(&iphone, "cut-faststart.m4a");
    let cut_m4a = cut(&m4a, "cut.m4a");
    let cut_webm = cut(&webm, "cut.webm");
    let mut big = Vec::with_capacity(2 << 20);
    let mut x = 0x2545_f491_u32;
    while big.len() < 2 << 20 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        big.extend_from_slice(&x.to_le_bytes());
    }
    for (bytes, file_name, status, message) in [
        (
            text.into_bytes(),
            "bai-hat.mp3",
            400,
            "Tệp không phải âm thanh",
        ),
        (
            std::fs::read(&cut_iphone).expect("cut"),
            "cut-faststart.m4a",
            400,
            // symphonia walks every top-level box at open: the cut `mdat` fails it there.
            "Tệp ghi âm bị hỏng hoặc không đầy đủ",
        ),
        (
            std::fs::read(&cut_m4a).expect("cut"),
            "cut.m4a",
            400,
            "Tệp ghi âm bị hỏng hoặc không đầy đủ",
        ),
        (
            std::fs::read(&cut_webm).expect("cut"),
            "cut.webm",
            400,
            "Tệp ghi âm bị hỏng hoặc không đầy đủ",
        ),
        (big, "qua-lon.mp3", 413, "Tệp quá lớn: tối đa 1 MB"),
    ] {
        let (got, body) = server.refused(bytes, file_name);
        assert_eq!(got, status, "{file_name}: {body:?}");
        let vi = body.message_vi.clone().unwrap_or_default();
        assert!(vi.starts_with(message), "{file_name}: {body:?}");
        assert!(vi.contains("hãy"), "says what to do: {body:?}");
        assert!(body.error.starts_with(&vi), "error leads with it: {body:?}");
        assert_eq!(server.list(), items, "{file_name} changed the list");
        assert_eq!(server.files(), stored, "{file_name} left a file");
    }

    // A client that waits for `100 Continue` is refused before it sends the file.
    let (status, answer) = server.declared_over_the_limit();
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("Tệp quá lớn"), "{answer}");
    assert_eq!(server.list(), items);
    assert_eq!(server.files(), stored);

    // Renamed, in Vietnamese.
    let renamed = server
        .client
        .library_rename(&items[1].id, "Thông báo — họp dân thôn 3")
        .expect("rename");
    assert_eq!(renamed.name, "Thông báo — họp dân thôn 3");
    assert_eq!(server.list()[1].name, "Thông báo — họp dân thôn 3");
    let Err(ClientError::Refused { status, .. }) = server.client.library_rename(&items[1].id, " ")
    else {
        panic!("a blank name was taken");
    };
    assert_eq!(status, 400);
    let current = server.list();
    assert_eq!(current.len(), items.len());

    // Scheduled: not deleted while the entry plays it, with the entry named.
    let entry = serde_json::json!({
        "id": "phat-thong-bao", "name": "Phát thông báo",
        "recurrence": { "once": { "date": "2099-09-02" } },
        "start": "07:00", "end": { "at": "08:00" },
        "source": { "kind": "file", "path": items[0].path },
        "targets": { "stations": ["binh-trung"] }
    });
    let (status, answer) = server
        .client
        .raw("POST", "/api/v1/schedule/entries", Some(entry.to_string()))
        .expect("answer");
    assert_eq!(status, 201, "{answer}");
    let (status, answer) = server
        .client
        .raw("DELETE", &format!("/api/v1/library/{}", items[0].id), None)
        .expect("answer");
    assert_eq!(status, 409, "{answer}");
    let body: ErrorBody = serde_json::from_str(&answer).expect("error JSON");
    let vi = body.message_vi.unwrap_or_default();
    assert!(
        vi.contains("đang có trong lịch: Phát thông báo (phat-thong-bao)"),
        "{vi}"
    );
    assert_eq!(server.list(), current, "a refused delete changed the list");
    assert!(items[0].path.exists());
    server
        .client
        .remove_entry("phat-thong-bao")
        .expect("entry removed");
    let deleted = server
        .client
        .library_delete(&items[0].id)
        .expect("deleted once unscheduled");
    assert_eq!(deleted.id, items[0].id);
    assert!(!items[0].path.exists());
    assert_eq!(server.list(), current[1..]);

    // Nor while an emergency airs it or a bulletin waits to.
    let path = &items[1].path;
    let uses = [
        (
            "/api/v1/emergency",
            serde_json::json!({
                "id": "khan-cap-thu", "name": "Khẩn cấp thử", "file": path,
                "targets": { "stations": ["binh-trung"] }, "repeat": 1000
            }),
            "đang phát khẩn cấp: Khẩn cấp thử (khan-cap-thu)",
            (
                "POST",
                "/api/v1/emergency/stop",
                Some(r#"{"id": "khan-cap-thu"}"#),
            ),
        ),
        (
            "/api/v1/bulletins",
            serde_json::json!({
                "id": "ban-tin-thu", "name": "Bản tin thử",
                "source": { "kind": "file", "path": path },
                "targets": { "stations": ["binh-trung"] }
            }),
            "đang có bản tin: Bản tin thử (ban-tin-thu)",
            ("DELETE", "/api/v1/bulletins/ban-tin-thu", None),
        ),
    ];
    for (route, request, named, (method, undo, undo_body)) in uses {
        let (status, answer) = server
            .client
            .raw("POST", route, Some(request.to_string()))
            .expect("answer");
        assert!((200..300).contains(&status), "{route}: {answer}");
        let (status, answer) = server
            .client
            .raw("DELETE", &format!("/api/v1/library/{}", items[1].id), None)
            .expect("answer");
        assert_eq!(status, 409, "{route}: {answer}");
        let body: ErrorBody = serde_json::from_str(&answer).expect("error JSON");
        let vi = body.message_vi.unwrap_or_default();
        assert!(vi.contains(named), "{route}: {vi}");
        assert!(path.exists(), "{route}");
        let (status, answer) = server
            .client
            .raw(method, undo, undo_body.map(str::to_owned))
            .expect("answer");
        assert_eq!(status, 200, "{undo}: {answer}");
    }
    let deleted = server
        .client
        .library_delete(&items[1].id)
        .expect("deleted once nothing plays it");
    assert_eq!(deleted.name, "Thông báo — họp dân thôn 3");
    assert!(!path.exists());
    assert_eq!(server.list(), current[2..]);

    // The command line does the same through the admin endpoint.
    let data = dir.path().to_str().expect("utf-8");
    let admin = server.admin.to_string();
    let common = ["--data-dir", data, "--admin-listen", admin.as_str()];
    let added = Command::new(BINARY)
        .args(["library", "add"])
        .arg(&mp3)
        .args(["--name", "Từ dòng lệnh"])
        .args(common)
        .output()
        .expect("radio-server library add");
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let id = String::from_utf8_lossy(&added.stdout).trim().to_owned();
    let listed = Command::new(BINARY)
        .args(["library", "list"])
        .args(common)
        .output()
        .expect("radio-server library list");
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("Từ dòng lệnh")),
        "{table}"
    );

    // Every change was audited.
    let (status, audit) = server
        .client
        .raw("GET", "/api/v1/audit", None)
        .expect("audit");
    assert_eq!(status, 200);
    for action in ["library-upload", "library-rename", "library-delete"] {
        assert!(audit.contains(action), "{action} not audited: {audit:.500}");
    }
    server.process.quiet();
}

/// `GET /api/v1/library/{id}/audio`, with a `Range` if given: status, body, content type.
fn get_audio(server: &Server, id: &str, range: Option<&str>) -> (u16, Vec<u8>, String) {
    let token = std::fs::read_to_string(server.data_dir.join("admin.token")).expect("token");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .get(&format!(
            "http://{}/api/v1/library/{id}/audio",
            server.admin
        ))
        .header("Authorization", &format!("Bearer {}", token.trim()));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let mut response = request.call().expect("audio");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    (status, body, content_type)
}
