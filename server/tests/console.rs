//! The console's HTTPS and its people, against the real `radio-server run`: the certificate
//! the district CA issues is trusted by a client that trusts only that CA; the first admin's
//! password is printed once; sign-in sets a Secure, HttpOnly, SameSite cookie; changes need the
//! session's CSRF token; accounts made by the admin (in the API, live) and by `radio-server user
//! add` on the server sign in with their roles; disabling one ends its session at once.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use radio_tests::console::{first_admin_password, https_client};
use radio_tests::Process;
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_radio-server");

/// One answer: status, `Set-Cookie` if any, JSON body (or Null).
struct Answer {
    status: u16,
    set_cookie: Option<String>,
    body: Value,
}

struct Console {
    agent: ureq::Agent,
    base: String,
}

impl Console {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        cookie: Option<&str>,
        csrf: Option<&str>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let response = if method == "GET" {
            let mut request = self.agent.get(&url);
            if let Some(cookie) = cookie {
                request = request.header("Cookie", cookie);
            }
            request.call()
        } else {
            let mut request = self.agent.post(&url);
            if let Some(cookie) = cookie {
                request = request.header("Cookie", cookie);
            }
            if let Some(csrf) = csrf {
                request = request.header("X-CSRF-Token", csrf);
            }
            request
                .header("Content-Type", "application/json")
                .send(body.unwrap_or_else(|| json!({})).to_string())
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.into_body().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            set_cookie,
            body,
        }
    }

    /// Signs in; the cookie pair to send back and the CSRF token.
    fn sign_in(&self, name: &str, password: &str) -> (String, String) {
        let answer = self.call(
            "POST",
            "/api/v1/sign-in",
            Some(json!({"name": name, "password": password})),
            None,
            None,
        );
        assert_eq!(answer.status, 200, "sign-in of {name}: {}", answer.body);
        let set_cookie = answer.set_cookie.expect("a session cookie");
        for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(
                set_cookie.split(';').any(|a| a.trim() == attribute),
                "cookie without {attribute}: {set_cookie}"
            );
        }
        assert!(
            set_cookie.starts_with("__Host-"),
            "the cookie's name must bind it to this host: {set_cookie}"
        );
        let pair = set_cookie.split(';').next().expect("name=value").to_owned();
        let csrf = answer.body["csrf"].as_str().expect("csrf").to_owned();
        (pair, csrf)
    }
}

fn start(data_dir: &Path) -> (Process, Console, String, String) {
    let data = data_dir.to_str().expect("utf-8 path");
    let mut server = Process::start(
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
        ],
    );
    let console = server.console_address();
    let admin = server.admin_address();
    let line = server.wait_for("console admin account", Duration::from_secs(30));
    let password = first_admin_password(&line);
    server.wait_for("listening on", Duration::from_secs(30));
    let console = Console {
        agent: https_client(data_dir),
        base: format!("https://{console}"),
    };
    (server, console, admin, password)
}

#[test]
fn people_sign_in_over_https_with_their_roles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, console, admin, first_password) = start(dir.path());

    // The page itself comes over HTTPS from a certificate chained to the district CA.
    let page = console.call("GET", "/", None, None, None);
    assert_eq!(page.status, 200);

    let wrong = console.call(
        "POST",
        "/api/v1/sign-in",
        Some(json!({"name": "admin", "password": "not the password"})),
        None,
        None,
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.set_cookie.is_none());
    let nobody = console.call("GET", "/api/v1/status", None, None, None);
    assert_eq!(nobody.status, 401);

    let (admin_cookie, admin_csrf) = console.sign_in("admin", &first_password);
    let me = console.call("GET", "/api/v1/session", None, Some(&admin_cookie), None);
    assert_eq!(me.status, 200);
    assert_eq!(me.body["name"], "admin");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["csrf"], admin_csrf.as_str());

    // A change without the CSRF token is what a hostile page could make a browser send.
    let viewer = json!({"name": "xem", "role": "viewer", "password": "mật khẩu người xem"});
    let forged = console.call(
        "POST",
        "/api/v1/users",
        Some(viewer.clone()),
        Some(&admin_cookie),
        None,
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let wrong_csrf = console.call(
        "POST",
        "/api/v1/users",
        Some(viewer.clone()),
        Some(&admin_cookie),
        Some("0000"),
    );
    assert_eq!(wrong_csrf.status, 403, "{}", wrong_csrf.body);
    let listed = console.call("GET", "/api/v1/users", None, Some(&admin_cookie), None);
    assert_eq!(
        listed.body.as_array().map(Vec::len),
        Some(1),
        "a refused change stored nothing: {}",
        listed.body
    );

    let created = console.call(
        "POST",
        "/api/v1/users",
        Some(viewer),
        Some(&admin_cookie),
        Some(&admin_csrf),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let unknown_commune = console.call(
        "POST",
        "/api/v1/users",
        Some(
            json!({"name": "op", "role": "operator", "communes": ["atlantis"],
                    "password": "mật khẩu của xã"}),
        ),
        Some(&admin_cookie),
        Some(&admin_csrf),
    );
    assert_eq!(unknown_commune.status, 400, "{}", unknown_commune.body);
    assert!(
        unknown_commune.body["error"]
            .as_str()
            .is_some_and(|e| e.contains("atlantis")),
        "{}",
        unknown_commune.body
    );

    // A commune operator made on the server itself, through the loopback API.
    let mut add = Command::new(BINARY)
        .args([
            "user",
            "add",
            "op-binh-trung",
            "--role",
            "operator",
            "--commune",
            "binh-trung",
            "--password-stdin",
            "--admin-listen",
            &admin,
            "--data-dir",
        ])
        .arg(dir.path())
        .env_remove("RADIO_SERVER_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("radio-server user add");
    add.stdin
        .take()
        .expect("stdin")
        .write_all("Bình Trung 2026\n".as_bytes())
        .expect("password to stdin");
    let added = add.wait_with_output().expect("user add ends");
    assert!(
        added.status.success(),
        "user add: {}",
        String::from_utf8_lossy(&added.stderr)
    );

    // The viewer reads, and changes nothing.
    let (viewer_cookie, viewer_csrf) = console.sign_in("xem", "mật khẩu người xem");
    let status = console.call("GET", "/api/v1/status", None, Some(&viewer_cookie), None);
    assert_eq!(status.status, 200);
    let emergency = console.call(
        "POST",
        "/api/v1/emergency",
        Some(json!({"file": "/nonexistent.wav"})),
        Some(&viewer_cookie),
        Some(&viewer_csrf),
    );
    assert_eq!(emergency.status, 403, "{}", emergency.body);
    let users = console.call("GET", "/api/v1/users", None, Some(&viewer_cookie), None);
    assert_eq!(users.status, 403, "{}", users.body);

    // The operator acts for its commune only.
    let (op_cookie, op_csrf) = console.sign_in("op-binh-trung", "Bình Trung 2026");
    let me = console.call("GET", "/api/v1/session", None, Some(&op_cookie), None);
    assert_eq!(me.body["communes"], json!(["binh-trung"]));
    let elsewhere = console.call(
        "POST",
        "/api/v1/bulletins/any/accept",
        Some(json!({"station": "binh-hai"})),
        Some(&op_cookie),
        Some(&op_csrf),
    );
    assert_eq!(elsewhere.status, 403, "{}", elsewhere.body);

    // Disabled: its open session ends at once, and it cannot sign in again.
    let disabled = console.call(
        "POST",
        "/api/v1/users/xem/disable",
        None,
        Some(&admin_cookie),
        Some(&admin_csrf),
    );
    assert_eq!(disabled.status, 200, "{}", disabled.body);
    assert_eq!(disabled.body["disabled"], true);
    let after = console.call("GET", "/api/v1/status", None, Some(&viewer_cookie), None);
    assert_eq!(after.status, 401, "{}", after.body);
    let again = console.call(
        "POST",
        "/api/v1/sign-in",
        Some(json!({"name": "xem", "password": "mật khẩu người xem"})),
        None,
        None,
    );
    assert_eq!(again.status, 401, "{}", again.body);

    // A person changes their own password: the current one is asked again; the session goes
    // on under a new cookie, any other one ends.
    let wrong = console.call(
        "POST",
        "/api/v1/session/password",
        Some(json!({"current": "not it at all", "new": "Bình Trung 2027"})),
        Some(&op_cookie),
        Some(&op_csrf),
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    let changed = console.call(
        "POST",
        "/api/v1/session/password",
        Some(json!({"current": "Bình Trung 2026", "new": "Bình Trung 2027"})),
        Some(&op_cookie),
        Some(&op_csrf),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let old_session = console.call("GET", "/api/v1/session", None, Some(&op_cookie), None);
    assert_eq!(old_session.status, 401, "the old cookie ended");
    let op_cookie = changed
        .set_cookie
        .expect("a new cookie")
        .split(';')
        .next()
        .expect("name=value")
        .to_owned();
    let op_csrf = changed.body["csrf"].as_str().expect("csrf").to_owned();
    let me = console.call("GET", "/api/v1/session", None, Some(&op_cookie), None);
    assert_eq!(me.body["name"], "op-binh-trung");
    let _ = console.sign_in("op-binh-trung", "Bình Trung 2027");

    // Signing out ends the session on the server, not only in the browser.
    let out = console.call(
        "POST",
        "/api/v1/sign-out",
        None,
        Some(&op_cookie),
        Some(&op_csrf),
    );
    assert_eq!(out.status, 204);
    let gone = console.call("GET", "/api/v1/session", None, Some(&op_cookie), None);
    assert_eq!(gone.status, 401);

    // Every account change and sign-in is in the audit log, never a password.
    let audit = console.call("GET", "/api/v1/audit", None, Some(&admin_cookie), None);
    let text = audit.body.to_string();
    for action in ["sign-in", "account-create", "account-disable", "sign-out"] {
        assert!(
            text.contains(action),
            "no {action} in the audit log: {text}"
        );
    }
    for secret in [
        first_password.as_str(),
        "mật khẩu người xem",
        "Bình Trung 2026",
        "Bình Trung 2027",
    ] {
        assert!(!text.contains(secret), "a password in the audit log");
    }

    // The first admin's password is printed once: a restart prints none.
    let _ = server.terminate();
    let mut again = Process::start(
        "server-again",
        Path::new(BINARY),
        &[
            "run",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--no-schedule",
        ],
    );
    again.wait_for("listening on", Duration::from_secs(30));
    assert_eq!(again.count_seen("console admin account"), 0);
}
