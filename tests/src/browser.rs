//! A WebDriver client for the console tests: chromedriver and Debian's headless Chromium, driven
//! as a person uses the console (sign in, open a page by its tab, type, click, answer the
//! confirmation), with screenshots saved under `target/console/`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

pub use crate::console::console_of;
use crate::{free_udp_port, workspace_root, PATIENCE};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Debug)]
pub struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Driver {
    /// Starts chromedriver and a headless Chromium session; `None` (after [`crate::require_tool`] skipped)
    /// when they are not installed.
    pub fn start() -> Option<Driver> {
        Driver::start_with(&[])
    }

    /// [`Driver::start`] with more Chromium arguments: a fake microphone, for instance
    /// (`--use-fake-device-for-media-stream`, `--use-file-for-fake-audio-capture=FILE`,
    /// `--use-fake-ui-for-media-stream` to grant it without the permission prompt).
    pub fn start_with(extra_args: &[&str]) -> Option<Driver> {
        if !["chromedriver", "chromium"]
            .into_iter()
            .all(crate::require_tool)
        {
            return None;
        }
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1200,1700",
            "--lang=vi",
        ];
        args.extend_from_slice(extra_args);
        Some(Driver::launch(
            "chromedriver",
            json!({
                "browserName": "chrome",
                "acceptInsecureCerts": true,
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": args
                }
            }),
        ))
    }

    /// geckodriver and a headless Firefox (Debian's ESR) session whose microphone is Firefox's
    /// own fake device (`media.navigator.streams.fake`: a steady tone), granted without asking;
    /// `None` (after [`crate::require_tool`] skipped) when they are not installed.
    pub fn start_firefox() -> Option<Driver> {
        if !["geckodriver", "firefox-esr", "pulseaudio", "pactl"]
            .into_iter()
            .all(crate::require_tool)
        {
            return None;
        }
        ensure_sound_server();
        Some(Driver::launch(
            "geckodriver",
            json!({
                "browserName": "firefox",
                "acceptInsecureCerts": true,
                "moz:firefoxOptions": {
                    "binary": "/usr/bin/firefox-esr",
                    "args": ["-headless", "--width=1200", "--height=1700"],
                    "prefs": {
                        "intl.accept_languages": "vi",
                        "media.navigator.streams.fake": true,
                        "media.navigator.permission.disabled": true,
                        "media.autoplay.default": 0,
                        "media.autoplay.blocking_policy": 0
                    }
                }
            }),
        ))
    }

    /// Starts `program` (a WebDriver server) on a free port and opens a session with
    /// `capabilities`.
    fn launch(program: &str, capabilities: Value) -> Driver {
        let port = free_udp_port();
        let child = Command::new(program)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let deadline = Instant::now() + PATIENCE;
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "{program} did not start");
            // A poll: a WebDriver server announces nothing but its answers.
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut driver = Driver {
            child,
            base,
            session: String::new(),
            agent,
        };
        let created = driver.send(
            "POST",
            "/session",
            json!({"capabilities": {"alwaysMatch": capabilities}}),
        );
        driver.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        driver
    }

    pub fn send(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{}", self.base, path);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(&body),
        }
        .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let status = response.status();
        let value: Value = response
            .into_body()
            .read_json()
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        assert!(status.is_success(), "WebDriver {method} {path}: {value}");
        value["value"].clone()
    }

    pub fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.send(method, &format!("/session/{}{path}", self.session), body)
    }

    /// Opens a new tab beside the current one (the current one stays in use); its handle.
    pub fn new_tab(&self) -> String {
        let made = self.session("POST", "/window/new", json!({"type": "tab"}));
        made["handle"].as_str().expect("a window handle").to_owned()
    }

    /// Closes the current tab, as a person closing it does (its page gets no chance to say
    /// goodbye beyond what the browser does itself), and goes on in the tab `next`.
    pub fn close_tab_for(&self, next: &str) {
        self.session("DELETE", "/window", json!({}));
        self.session("POST", "/window", json!({ "handle": next }));
    }

    pub fn open(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url }));
    }

    pub fn element(&self, css: &str) -> String {
        let found = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/click"), json!({}));
    }

    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    /// Chooses `file` in the file input `css`, as the file picker does.
    pub fn choose_file(&self, css: &str, file: &Path) {
        self.type_into(css, file.to_str().expect("a UTF-8 path"));
    }

    pub fn clear(&self, css: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/clear"), json!({}));
    }

    /// Accepts the confirmation the last click opened; its text.
    pub fn accept_confirmation(&self) -> String {
        self.accept_confirmation_with(None)
    }

    fn accept_confirmation_with(&self, answer: Option<&str>) -> String {
        let url = format!("{}/session/{}/alert/text", self.base, self.session);
        let deadline = Instant::now() + PATIENCE;
        let text = loop {
            let answer = self.agent.get(&url).call().expect("WebDriver alert text");
            if answer.status().is_success() {
                let value: Value = answer.into_body().read_json().expect("JSON");
                break value["value"].as_str().unwrap_or_default().to_owned();
            }
            assert!(Instant::now() < deadline, "no confirmation dialog opened");
            // A poll of the browser, as for every state below.
            std::thread::sleep(Duration::from_millis(100));
        };
        if let Some(answer) = answer {
            self.session("POST", "/alert/text", json!({ "text": answer }));
        }
        self.session("POST", "/alert/accept", json!({}));
        text
    }

    /// Types `text` into the prompt the last click opened, and accepts it.
    pub fn answer_prompt(&self, text: &str) {
        self.accept_confirmation_with(Some(text));
    }

    /// The page's own `fetch` of an API route, with the session cookie (and the page's CSRF
    /// token when `csrf`): `[status, body as JSON or text]`.
    pub fn fetch(&self, method: &str, path: &str, body: Option<Value>, csrf: bool) -> Value {
        let body = body.map_or("undefined".to_owned(), |b| format!("JSON.stringify({b})"));
        self.script(&format!(
            "const headers = {{'Content-Type': 'application/json'}}; if ({csrf}) headers['X-CSRF-Token'] = csrf; \
             return fetch('{path}', {{method: '{method}', headers, credentials: 'same-origin', body: {body}}}) \
             .then(r => r.text().then(t => {{ let v = t; try {{ v = JSON.parse(t); }} catch (_) {{}} return [r.status, v]; }}));"
        ))
    }

    /// Waits until the server's status shows, at each station, the item name given (`None`:
    /// nothing on air), as the page's own fetch sees it.
    pub fn wait_on_air(&self, expected: &[(&str, Option<&str>)]) {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let rows = self.fetch("GET", "/api/v1/status", None, false)[1]["stations"].clone();
            let ok = expected.iter().all(|(station, name)| {
                rows.as_array()
                    .and_then(|rows| rows.iter().find(|r| r["station"] == *station))
                    .is_some_and(|r| r["name"].as_str() == *name)
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "never on air as {expected:?}; status {rows}"
            );
            // A poll of the server's status, the evidence of what airs.
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    pub fn script(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls `script` until `check` accepts its value (the page loads data asynchronously).
    pub fn wait_for(&self, script: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let value = self.script(script);
            if check(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page never satisfied `{script}`; last value {value}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Opens the console of `server` and signs in as `name`; waits until the stations show.
    pub fn sign_in(&self, console: &str, name: &str, password: &str) {
        self.open(&format!("https://{console}/"));
        self.wait_for("return !document.querySelector('#login').hidden;", |v| {
            v == true
        });
        self.clear("#name");
        self.type_into("#name", name);
        self.clear("#password");
        self.type_into("#password", password);
        self.click("#login-button");
        // Signed in once the overview lists stations (all 22, or an operator's own).
        self.wait_for(
            "return document.querySelectorAll('#stations tbody tr').length;",
            |v| v.as_u64().is_some_and(|n| n > 0),
        );
    }

    /// Opens a page of the console by its tab, as a person does; waits until it shows.
    pub fn go(&self, page: &str) {
        self.click(&format!("#nav button[data-page=\"{page}\"]"));
        self.wait_for(
            "return Array.from(document.querySelectorAll('section.page')).filter(s => !s.hidden).map(s => s.dataset.page);",
            |v| v.as_array().is_some_and(|shown| !shown.is_empty() && shown.iter().all(|p| p == page)),
        );
    }

    /// Resizes the browser window (the viewport follows).
    pub fn window_size(&self, width: u32, height: u32) {
        self.session(
            "POST",
            "/window/rect",
            json!({"width": width, "height": height}),
        );
    }

    pub fn screenshot(&self) -> Vec<u8> {
        let data = self.session("GET", "/screenshot", Value::Null);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().expect("base64 PNG"))
            .expect("valid base64")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self
                .agent
                .delete(format!("{}/session/{}", self.base, self.session))
                .call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Saves a PNG under `target/console/`.
pub fn save_screenshot(driver: &Driver, name: &str) {
    let png = driver.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("console");
    std::fs::create_dir_all(&target).expect("target dir");
    let path = target.join(format!("{name}.png"));
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
}

/// Firefox's Web Audio runs only with a sound server to play to (without one its AudioContext
/// never advances, so the microphone is never heard): a PulseAudio daemon with its null sink,
/// started if none runs, is enough. Chromium needs none.
fn ensure_sound_server() {
    let answers = || {
        Command::new("pactl")
            .arg("info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if answers() {
        return;
    }
    let started = Command::new("pulseaudio")
        .args(["--daemonize", "--exit-idle-time=-1", "--disallow-exit"])
        .status()
        .expect("start pulseaudio");
    assert!(started.success(), "pulseaudio did not start: {started}");
    let deadline = Instant::now() + PATIENCE;
    while !answers() {
        assert!(Instant::now() < deadline, "pulseaudio does not answer");
        // A poll: the daemon announces nothing but its answers.
        std::thread::sleep(Duration::from_millis(100));
    }
}
