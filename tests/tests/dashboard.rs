//! The web console in Debian's headless Chromium, driven over WebDriver (chromedriver) like
//! an operator would use it, over the server's HTTPS: sign in with the first admin's name and
//! password, see all 22 stations with their Vietnamese names, a loudspeaker cluster the agent
//! sees down, and the uptime chart, switch to English, and a screenshot is saved as
//! `target/dashboard.png`; start two emergencies and stop them one at a time, each by its own
//! button; create a commune operator in the console, who signs in on a phone-sized window and
//! sees no control their role may not use (screenshots under `target/console/`).
//!
//! Chromium is told to accept the console's certificate (`acceptInsecureCerts`): the chain to
//! the district CA is what `server/tests/console.rs` checks, with a client that trusts only
//! that CA.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use radio_tests::browser::{console_of, save_screenshot, Driver};
use radio_tests::{
    enroll, free_udp_port, start_agent, start_server_with, test_signal, workspace_root, write_wav,
};

/// Elements wider than the window, outside a scrolling table wrapper: `[tag#id.class, right]`.
const OVERFLOWING: &str = "const w = document.documentElement.clientWidth; return Array.from(document.querySelectorAll('body *')).filter(e => e.offsetParent !== null && !e.closest('.table-wrap') && e.getBoundingClientRect().right > w + 1).map(e => `${e.tagName}#${e.id}.${e.className}: ${Math.round(e.getBoundingClientRect().right)}`).concat(document.documentElement.scrollWidth > w ? [`page ${document.documentElement.scrollWidth} > ${w}`] : []);";

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
    let admin = server.admin_address();
    // Cluster c01's receiver is not running: the agent sees it down (ICMP port unreachable).
    let receiver = free_udp_port();
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("agent"),
        &[
            format!("wav:{}", dir.path().join("out.wav").display()),
            format!("rtp:127.0.0.1:{receiver},cluster=c01"),
        ],
    );
    agent.wait_for("link up", Duration::from_secs(20));
    agent.wait_for("cluster c01 down", Duration::from_secs(10));
    let _ = admin;
    let (console, password) = console_of(&mut server);

    // Sign in as a person does: name, password, the button.
    driver.sign_in(&console, "admin", &password);
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
    // Its 24 clusters: c01 down, named with why, the others following the station.
    const CLUSTERS: &str = "const td = document.querySelector('#stations tbody tr[data-station=\"binh-trung\"]').cells[5]; return [td.querySelector('.cluster-summary').textContent, Array.from(td.querySelectorAll('.cluster-line.bad')).map(l => l.textContent), td.classList.contains('cluster-down')];";
    let clusters = driver.wait_for(CLUSTERS, |v| v[0] == "24 cụm: 1 hỏng, 23 theo đài");
    let down = clusters[1].as_array().expect("down lines");
    assert_eq!(down.len(), 1, "{clusters}");
    let line = down[0].as_str().unwrap_or_default();
    assert!(
        line.starts_with("c01 hỏng: receiver unreachable") && line.contains("(từ "),
        "{clusters}"
    );
    assert_eq!(clusters[2], true, "the cell is highlighted: {clusters}");
    let others = driver.script(
        "return document.querySelector('#stations tbody tr[data-station=\"binh-duong\"]').cells[5].textContent;",
    );
    assert_eq!(others, "22 cụm: 22 theo đài");
    // The uptime chart, on the reports page: one line per station, and a bar where there is
    // data (binh-trung).
    driver.go("reports");
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

    driver.go("overview");
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
    let clusters = driver.wait_for(CLUSTERS, |v| {
        v[0] == "24 clusters: 1 down, 23 follow the station"
    });
    assert!(
        clusters[1][0]
            .as_str()
            .is_some_and(|l| l.starts_with("c01 down: receiver unreachable")),
        "{clusters}"
    );

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

/// The emergency rows of the page: `[id, name, where, button text]`.
const EMERGENCY_ROWS: &str = "return Array.from(document.querySelectorAll('#emergencies tbody tr')).map(r => [r.dataset.emergency, r.cells[0].textContent, r.cells[2].textContent, r.cells[3].textContent]);";

fn row_count(n: usize) -> impl Fn(&Value) -> bool {
    move |v| v.as_array().is_some_and(|rows| rows.len() == n)
}

#[test]
fn running_emergencies_are_listed_and_each_is_stopped_by_its_own_button() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut server, _) = start_server_with(&data, "127.0.0.1:0", &["--no-schedule"]);
    let admin = server.admin_address();
    // Long enough to be still on air while the page is driven.
    let storm = dir.path().join("bao-so-9.wav");
    let fire = dir.path().join("chay-rung.wav");
    for path in [&storm, &fire] {
        write_wav(path, &test_signal(60.0), 48_000);
    }
    let (console, password) = console_of(&mut server);
    driver.sign_in(&console, "admin", &password);
    assert_eq!(
        driver.script("return [document.querySelector('#emergencies').hidden, document.querySelector('#no-emergency').hidden, document.querySelector('#no-emergency').textContent];"),
        json!([true, false, "Không có bản tin khẩn cấp nào đang phát."])
    );

    // Two emergencies, one after the other: the overview's button opens the one send form set
    // for an emergency now; the recording here is a file already on the server.
    for path in [&storm, &fire] {
        driver.click("#emergency-new");
        driver.wait_for(
            "return !document.querySelector('#send').hidden && document.querySelector('input[name=\"send-level\"]:checked').value;",
            |v| v == "emergency",
        );
        // Ids made from names are what the server takes: lowercase ASCII words joined by single
        // hyphens, at most 64 bytes, whatever the name (a cut after a hyphen once made `--`).
        let ids = driver.script(
            "return ['Thông báo về việc tiêm chủng mở rộng cho trẻ em dưới năm tuổi', 'Đợt 1 — xã Bình Trung', 'a-b-c-d-e-f-g-h-i-j-k-l-m-n-o-p-q-r-s-t-u', '!!!'].map(slugId);",
        );
        for id in ids.as_array().expect("ids") {
            let id = id.as_str().expect("id");
            assert!(
                id.len() <= 64
                    && id.split('-').all(|p| !p.is_empty()
                        && p.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())),
                "not a slug: {id}"
            );
        }
        // The clusters of a commune can be chosen too (Bình Trung has 24).
        let clusters = driver.wait_for(
            "const w = document.querySelector('#send-where'); w.value = 'clusters'; w.dispatchEvent(new Event('change')); const s = document.querySelector('#send-cluster-station'); s.value = 'binh-trung'; s.dispatchEvent(new Event('change')); return Array.from(document.querySelectorAll('#send-clusters input')).map(b => b.value);",
            |v| v.as_array().is_some_and(|c| !c.is_empty()),
        );
        assert_eq!(clusters.as_array().map(Vec::len), Some(24), "{clusters}");
        assert_eq!(clusters[2], "binh-trung/c03");
        driver.script(
            "const w = document.querySelector('#send-where'); w.value = 'all'; w.dispatchEvent(new Event('change')); const k = document.querySelector('#send-kind'); k.value = 'file'; k.dispatchEvent(new Event('change')); return null;",
        );
        driver.clear("#send-file");
        driver.type_into("#send-file", path.to_str().expect("utf8"));
        driver.click("#send-submit");
        let question = driver.accept_confirmation();
        assert!(question.contains("Tất cả các đài"), "{question}");
        let said = driver.wait_for(
            "return document.querySelector('#send-message').textContent;",
            |v| v.as_str().is_some_and(|t| !t.is_empty()),
        );
        assert!(
            said.as_str()
                .is_some_and(|t| t.starts_with("Đang phát khẩn cấp")),
            "{said}"
        );
        driver.go("overview");
    }
    let rows = driver.wait_for(EMERGENCY_ROWS, row_count(2));
    let rows = rows.as_array().expect("rows");
    let names: Vec<&str> = rows.iter().filter_map(|r| r[1].as_str()).collect();
    assert_eq!(names, ["bao-so-9", "chay-rung"], "oldest first");
    for row in rows {
        assert_eq!(row[2], "Tất cả các đài", "{row}");
        assert_eq!(row[3], "Dừng", "{row}");
    }
    let storm_id = rows[0][0].as_str().expect("id").to_owned();
    assert!(storm_id.starts_with("khan-cap-"), "{storm_id}");
    driver.wait_for(
        "return document.querySelector('#stations tbody tr[data-station=\"binh-trung\"]').cells[4].textContent;",
        |v| v == "khẩn cấp",
    );

    // Stop the first one by its own button: the second keeps running.
    driver.click(&format!(
        "#emergencies tr[data-emergency=\"{storm_id}\"] button"
    ));
    let question = driver.accept_confirmation();
    assert!(question.contains("bao-so-9"), "{question}");
    let rows = driver.wait_for(EMERGENCY_ROWS, row_count(1));
    assert_eq!(rows[0][1], "chay-rung", "{rows}");
    // `radio-server status` lists the same.
    let text = status_command(&data, &admin);
    let listed: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("khan-cap-"))
        .collect();
    assert_eq!(listed.len(), 1, "{text}");
    assert!(
        listed[0].contains("chay-rung") && listed[0].contains("all (22 stations)"),
        "{text}"
    );
    assert!(text.contains("1 emergency running"), "{text}");

    // In English, the last one, then none.
    driver.click("#lang");
    let rows = driver.wait_for(EMERGENCY_ROWS, |v| v[0][3] == "Stop");
    assert_eq!(rows[0][2], "All stations", "{rows}");
    assert_eq!(
        driver.script("return document.querySelector('h3').textContent;"),
        "Emergencies on air"
    );
    driver.click("#emergencies tbody tr button");
    let question = driver.accept_confirmation();
    assert!(question.contains("chay-rung"), "{question}");
    driver.wait_for(EMERGENCY_ROWS, row_count(0));
    assert_eq!(
        driver.script("return [document.querySelector('#emergencies').hidden, document.querySelector('#no-emergency').textContent];"),
        json!([true, "No emergency is running."])
    );
    // What the page showed is what the server runs: nothing.
    let text = status_command(&data, &admin);
    assert!(text.contains("no emergency running"), "{text}");
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");
}

/// What `radio-server status` prints.
fn status_command(data: &std::path::Path, admin: &str) -> String {
    let out = Command::new(radio_tests::binary("radio-server"))
        .args(["status", "--data-dir", data.to_str().expect("utf8")])
        .args(["--admin-listen", admin])
        .output()
        .expect("radio-server status");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn an_admin_makes_a_commune_operator_who_sees_only_what_the_role_allows() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let (mut server, _) = start_server_with(&data, "127.0.0.1:0", &["--no-schedule"]);
    let (console, password) = console_of(&mut server);

    // A wrong password says so, in Vietnamese, and lets nobody in.
    driver.open(&format!("https://{console}/"));
    driver.type_into("#name", "admin");
    driver.type_into("#password", "không phải mật khẩu");
    driver.click("#login-button");
    let error = driver.wait_for(
        "return document.querySelector('#login-error').textContent;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    assert!(
        error
            .as_str()
            .is_some_and(|t| t.starts_with("Sai tên đăng nhập hoặc mật khẩu")),
        "{error}"
    );
    assert_eq!(
        driver.script("return document.querySelector('#app').hidden;"),
        true
    );

    driver.sign_in(&console, "admin", &password);
    assert_eq!(
        driver.script("return [document.querySelector('#controls').hidden, document.querySelector('#nav button[data-page=\"accounts\"]').hidden, document.querySelector('#nav button[data-page=\"send\"]').hidden];"),
        json!([false, false, false]),
        "an admin sees the controls, the accounts and the send form"
    );
    driver.go("accounts");
    driver.wait_for(
        "return document.querySelectorAll('#new-communes option').length;",
        |v| v == 22,
    );

    // The new account, made in the console: the server keeps running.
    driver.type_into("#new-name", "can-bo-binh-trung");
    driver.script(
        "const role = document.querySelector('#new-role'); role.value = 'operator'; role.dispatchEvent(new Event('change')); document.querySelector('#new-communes option[value=\"binh-trung\"]').selected = true; return null;",
    );
    driver.type_into("#new-password", "Bình Trung 2026");
    driver.click("#create-user");
    let message = driver.wait_for(
        "return document.querySelector('#accounts-message').textContent;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    assert_eq!(message, "Đã tạo tài khoản can-bo-binh-trung.");
    let row = driver.wait_for(
        "const r = document.querySelector('#users tr[data-user=\"can-bo-binh-trung\"]'); return r ? [r.cells[1].textContent, r.cells[2].textContent] : null;",
        |v| !v.is_null(),
    );
    assert_eq!(row, json!(["Người vận hành xã", "Bình Trung"]));

    // A role changed in the console: the operator of Bình Trung also runs Bình Dương.
    driver.click("#users tr[data-user=\"can-bo-binh-trung\"] button[data-action=\"change-role\"]");
    driver.script(
        "const box = document.querySelector('#users tr[data-user=\"can-bo-binh-trung\"] .role-editor'); for (const o of box.querySelector('[data-role=\"communes\"]').options) o.selected = ['binh-trung', 'binh-duong'].includes(o.value); return null;",
    );
    driver.click("#users tr[data-user=\"can-bo-binh-trung\"] button[data-action=\"save-role\"]");
    let question = driver.accept_confirmation();
    assert!(question.contains("can-bo-binh-trung"), "{question}");
    let row = driver.wait_for(
        "const r = document.querySelector('#users tr[data-user=\"can-bo-binh-trung\"]'); return r ? [r.cells[1].textContent, r.cells[2].textContent] : null;",
        |v| v[1] != "Bình Trung",
    );
    assert_eq!(row, json!(["Người vận hành xã", "Bình Trung, Bình Dương"]));
    save_screenshot(&driver, "accounts-desktop");

    driver.click("#sign-out");
    driver.wait_for("return !document.querySelector('#login').hidden;", |v| {
        v == true
    });

    // The operator, on a phone.
    driver.window_size(360, 740);
    save_screenshot(&driver, "sign-in-phone");
    driver.sign_in(&console, "can-bo-binh-trung", "Bình Trung 2026");
    assert_eq!(
        driver.script("return [document.querySelector('#controls').hidden, document.querySelector('#nav button[data-page=\"accounts\"]').hidden, document.querySelector('#nav button[data-page=\"send\"]').hidden, document.querySelector('#who').textContent];"),
        json!([true, true, true, "can-bo-binh-trung · Người vận hành xã"]),
        "a commune operator sees neither the district's controls, nor the accounts, nor the send form"
    );
    // A link to a page the role may not open shows the overview, not the page.
    driver.script("location.hash = '#/accounts'; return null;");
    driver.wait_for(
        "return [document.querySelector('#accounts').hidden, document.querySelector('#stations').closest('section').hidden];",
        |v| v == &json!([true, false]),
    );
    assert_eq!(
        driver.script("return Array.from(document.querySelectorAll('#stations tbody tr')).map(r => r.dataset.station);"),
        json!(["binh-trung", "binh-duong"]),
        "an operator's overview is their own communes"
    );
    let overflowing = driver.script(OVERFLOWING);
    assert_eq!(overflowing, json!([]), "wider than a 360 px phone");
    save_screenshot(&driver, "operator-phone");

    // Their own password, from the phone: the page goes on working under the new session.
    driver.click("#own-password-button");
    driver.type_into("#current-password", "Bình Trung 2026");
    driver.type_into("#own-new-password", "Bình Trung 2027");
    driver.type_into("#own-again-password", "Bình Trung 2027");
    driver.click("#own-password-save");
    let said = driver.wait_for(
        "return document.querySelector('#own-password-message').textContent;",
        |v| v.as_str().is_some_and(|t| !t.is_empty()),
    );
    assert!(
        said.as_str()
            .is_some_and(|t| t.starts_with("Đã đổi mật khẩu")),
        "{said}"
    );
    assert_eq!(
        driver.script(OVERFLOWING),
        json!([]),
        "wider than a 360 px phone"
    );
    save_screenshot(&driver, "own-password-phone");
    driver.click("#sign-out");
    driver.sign_in(&console, "can-bo-binh-trung", "Bình Trung 2027");
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");
}
