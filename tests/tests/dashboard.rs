//! The web dashboard in Debian's headless Chromium, driven over WebDriver (chromedriver) like
//! an operator would use it: sign in with the admin token, see all 22 stations with their
//! Vietnamese names and the uptime chart, switch to English, and a screenshot is saved as
//! `target/dashboard.png`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use radio_tests::{enroll, free_udp_port, start_agent, start_server_with, workspace_root};

/// The W3C WebDriver element key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

struct Driver {
    child: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
}

impl Driver {
    /// Starts chromedriver and a headless Chromium session; `None` (after [`radio_tests::skip`])
    /// when they are not installed.
    fn start() -> Option<Driver> {
        for tool in ["chromedriver", "chromium"] {
            if !radio_tests::have(tool) {
                radio_tests::skip(&format!(
                    "{tool} is not installed; install the chromium and chromium-driver packages"
                ));
                return None;
            }
        }
        let port = free_udp_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
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
            json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": "/usr/bin/chromium",
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--window-size=1200,1700", "--lang=vi"]
                }
            }}}),
        );
        driver.session = created["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Some(driver)
    }

    fn send(&self, method: &str, path: &str, body: Value) -> Value {
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

    fn session(&self, method: &str, path: &str, body: Value) -> Value {
        self.send(method, &format!("/session/{}{path}", self.session), body)
    }

    fn open(&self, url: &str) {
        self.session("POST", "/url", json!({ "url": url }));
    }

    fn element(&self, css: &str) -> String {
        let found = self.session(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.session("POST", &format!("/element/{id}/click"), json!({}));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.session(
            "POST",
            &format!("/element/{id}/value"),
            json!({ "text": text }),
        );
    }

    fn script(&self, script: &str) -> Value {
        self.session(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    /// Polls `script` until `check` accepts its value (the page loads data asynchronously).
    fn wait_for(&self, script: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
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

    fn screenshot(&self) -> Vec<u8> {
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

#[test]
fn the_dashboard_shows_every_station_and_switches_language() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let bundle = dir.path().join("binh-trung.toml");
    enroll(&data, "binh-trung", &bundle);
    let (mut server, addr) = start_server_with(&data, "127.0.0.1:0", &["--no-schedule"]);
    let admin = server
        .wait_for("admin endpoint on", Duration::from_secs(10))
        .rsplit(' ')
        .next()
        .expect("address")
        .trim()
        .to_owned();
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("agent"),
        &[format!("wav:{}", dir.path().join("out.wav").display())],
    );
    agent.wait_for("link up", Duration::from_secs(20));
    let token = std::fs::read_to_string(data.join("admin.token")).expect("token");

    // Sign in as an operator does: paste the token, press the button.
    driver.open(&format!("http://{admin}/"));
    driver.type_into("#token", token.trim());
    driver.click("#login-button");
    let rows = driver.wait_for(
        "return Array.from(document.querySelectorAll('#stations tbody tr')).map(r => [r.dataset.station, r.cells[0].textContent, r.cells[1].textContent]);",
        |v| v.as_array().is_some_and(|rows| rows.len() == 22),
    );
    let rows = rows.as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r[1].as_str()).collect();
    for name in ["Thị trấn Châu Ổ", "Bình Trung", "Bình Chương", "Bình Thạnh"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let trung = rows
        .iter()
        .find(|r| r[0] == "binh-trung")
        .expect("binh-trung row");
    assert_eq!(trung[2], "có", "binh-trung's agent is connected: {trung}");
    // The uptime chart: one line per station, and a bar where there is data (binh-trung).
    let chart = driver.wait_for(
        "const svg = document.querySelector('#chart svg'); return svg ? [svg.querySelectorAll('rect').length, svg.textContent] : null;",
        |v| v[0].as_u64().is_some_and(|bars| bars >= 1),
    );
    assert!(
        chart[1].as_str().is_some_and(|t| t.contains("Bình Trung")),
        "{chart}"
    );
    assert_eq!(
        driver.script("return document.querySelector('h1').textContent;"),
        "Truyền thanh thông minh"
    );

    driver.click("#lang");
    assert_eq!(
        driver.script("return document.querySelector('h1').textContent;"),
        "Smart radio broadcast"
    );
    let link = driver.wait_for(
        "return document.querySelector('#stations tbody tr[data-station=\"binh-trung\"]').cells[1].textContent;",
        |v| v == "up",
    );
    assert_eq!(link, "up");

    let png = driver.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    std::fs::create_dir_all(&target).expect("target dir");
    let path = target.join("dashboard.png");
    std::fs::write(&path, png).expect("write screenshot");
    eprintln!("screenshot: {}", path.display());
    drop(agent);
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");
}
