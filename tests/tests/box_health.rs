//! The box's health end to end: a real server with `[health]` thresholds and a real agent whose
//! `/sys` and `/proc` are a test directory (`RADIO_BOX_HEALTH_ROOT`). A thermal zone written
//! hot raises the warning in `/metrics`, the stations API (the dashboard's line) and the audit
//! log, once; written cool, it clears, once. A disk threshold of 100 % is tripped by the real
//! disk. The uptime report then shows the month's worst temperature and hours over the
//! threshold, no more than the time the box was seen hot.
//!
//! Every step waits on evidence (the figure in `/metrics`), never on a sleep.

use std::path::Path;
use std::time::{Duration, Instant};

use radio_tests::{enroll, start_agent_with_env, start_server_with};

const PATIENCE: Duration = Duration::from_secs(60);
/// Between polls of the admin endpoint: not a synchronisation, only a pace.
const POLL: Duration = Duration::from_millis(100);

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    // Written aside and renamed: the agent never reads half a file.
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).expect("write");
    std::fs::rename(&aside, &path).expect("rename");
}

fn get(admin: &str, token: &str, path: &str) -> String {
    ureq::get(format!("http://{admin}{path}"))
        .header("Authorization", format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
        .body_mut()
        .read_to_string()
        .expect("body")
}

/// The value of `metric` for binh-trung (and `kind`, if given) in an exposition.
fn sample(metrics: &str, metric: &str, kind: Option<&str>) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(metric)?.strip_prefix('{')?;
        let (labels, value) = rest.split_once("} ")?;
        let ours = labels.contains("station=\"binh-trung\"")
            && kind.is_none_or(|k| labels.contains(&format!("kind=\"{k}\"")));
        ours.then(|| value.trim().parse().ok()).flatten()
    })
}

/// Polls `/metrics` until `check` holds; returns that exposition.
fn wait_metrics(admin: &str, token: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let metrics = get(admin, token, "/metrics");
        if check(&metrics) {
            return metrics;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "{what}: not in /metrics within {PATIENCE:?}:\n{metrics}"
        );
        std::thread::sleep(POLL);
    }
}

/// The audit records of `action` for binh-trung, as (id, detail).
fn audited(admin: &str, token: &str, action: &str) -> Vec<(String, String)> {
    let listing: serde_json::Value = serde_json::from_str(&get(
        admin,
        token,
        &format!("/api/v1/audit?action={action}&station=binh-trung"),
    ))
    .expect("audit JSON");
    listing["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_hot_box_warns_once_clears_once_and_shows_in_the_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let bundle = dir.path().join("binh-trung.toml");
    enroll(&data, "binh-trung", &bundle);
    let root = dir.path().join("box");
    write(&root, "sys/class/thermal/thermal_zone0/temp", "45000\n");
    write(
        &root,
        "proc/meminfo",
        "MemTotal: 1000000 kB\nMemAvailable: 600000 kB\n",
    );
    write(&root, "proc/loadavg", "0.50 0.40 0.30 1/100 1\n");
    write(&root, "proc/uptime", "1000.00 10.00\n");
    let config = dir.path().join("server.toml");
    std::fs::write(
        &config,
        "heartbeat_interval_ms = 200\n\n[health]\nmax_temperature_c = 75\n\
         # Every real disk has less than 100 % free: the disk warning is on from the start.\n\
         min_free_disk_percent = 100\n",
    )
    .expect("config");
    let (mut server, addr) = start_server_with(
        &data,
        "127.0.0.1:0",
        &["--no-schedule", "--config", config.to_str().expect("utf8")],
    );
    let admin = server.admin_address();
    let token = std::fs::read_to_string(data.join("admin.token"))
        .expect("admin token")
        .trim()
        .to_owned();
    let root_env = root.to_str().expect("utf8").to_owned();
    let mut agent = start_agent_with_env(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!("wav:{}", dir.path().join("out.wav").display())],
        &[("RADIO_BOX_HEALTH_ROOT", &root_env)],
    );
    agent.wait_for("link up", PATIENCE);

    // A cool box on a real disk: the figures arrive, the disk warns, the temperature does not.
    let metrics = wait_metrics(&admin, &token, "a cool box with a full disk", |m| {
        sample(m, "radio_box_temperature_celsius", None) == Some(45.0)
            && sample(m, "radio_box_warning", Some("disk-full")) == Some(1.0)
    });
    assert_eq!(
        sample(&metrics, "radio_box_warning", Some("hot")),
        Some(0.0)
    );
    assert_eq!(
        sample(&metrics, "radio_box_memory_available_percent", None),
        Some(60.0)
    );
    assert_eq!(sample(&metrics, "radio_box_load1", None), Some(0.5));
    assert_eq!(
        sample(&metrics, "radio_box_uptime_seconds", None),
        Some(1000.0)
    );
    let free = sample(&metrics, "radio_box_disk_free_percent", None).expect("free disk");
    assert!((0.0..100.0).contains(&free), "{free}");

    // Hot.
    let hot_written = Instant::now();
    write(&root, "sys/class/thermal/thermal_zone0/temp", "81000\n");
    wait_metrics(&admin, &token, "the hot warning", |m| {
        sample(m, "radio_box_warning", Some("hot")) == Some(1.0)
    });
    let hot_seen = Instant::now();
    // More reports while hot (each heartbeat; evidence: a changed figure arrives): still one
    // warning, not one per report.
    write(
        &root,
        "proc/meminfo",
        "MemTotal: 1000000 kB\nMemAvailable: 500000 kB\n",
    );
    wait_metrics(&admin, &token, "a later hot report", |m| {
        sample(m, "radio_box_memory_available_percent", None) == Some(50.0)
    });
    write(&root, "proc/loadavg", "2.00 0.40 0.30 1/100 1\n");
    wait_metrics(&admin, &token, "another hot report", |m| {
        sample(m, "radio_box_load1", None) == Some(2.0)
    });
    let stations: serde_json::Value =
        serde_json::from_str(&get(&admin, &token, "/api/v1/stations")).expect("stations JSON");
    let ours = stations
        .as_array()
        .expect("stations")
        .iter()
        .find(|s| s["id"] == "binh-trung")
        .expect("binh-trung");
    let line = ours["health"]["line_vi"].as_str().unwrap_or_default();
    assert!(
        line.starts_with("Nhiệt độ 81 °C — quá nóng") && line.contains("đĩa sắp đầy"),
        "{ours}"
    );
    assert!(ours["health"]["warnings"]["hot"].is_string(), "{ours}");
    let warnings = audited(&admin, &token, "health-warning");
    let hot: Vec<_> = warnings
        .iter()
        .filter(|(id, _)| id == "binh-trung/hot")
        .collect();
    assert_eq!(
        hot.len(),
        1,
        "one warning, not one per report: {warnings:?}"
    );
    assert!(hot[0].1.contains("81.0 °C > 75 °C"), "{hot:?}");
    assert_eq!(
        warnings
            .iter()
            .filter(|(id, _)| id == "binh-trung/disk-full")
            .count(),
        1,
        "{warnings:?}"
    );

    // Cool again.
    let cool_written = Instant::now();
    write(&root, "sys/class/thermal/thermal_zone0/temp", "50000\n");
    wait_metrics(&admin, &token, "the hot warning cleared", |m| {
        sample(m, "radio_box_warning", Some("hot")) == Some(0.0)
            && sample(m, "radio_box_temperature_celsius", None) == Some(50.0)
    });
    let cool_seen = Instant::now();
    let cleared = audited(&admin, &token, "health-cleared");
    assert_eq!(
        cleared
            .iter()
            .filter(|(id, _)| id == "binh-trung/hot")
            .count(),
        1,
        "{cleared:?}"
    );
    // The disk warning stays on: nothing cleared it.
    assert!(
        !cleared.iter().any(|(id, _)| id == "binh-trung/disk-full"),
        "{cleared:?}"
    );

    // The month in the report: the worst temperature, and hours over the threshold within
    // what the box can have been hot as the server saw it (from the first hot report, after
    // it was written, to the first cool one, before it was seen).
    let today = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh")
        .expect("zone")
        .to_datetime(jiff::Timestamp::now())
        .date()
        .to_string();
    let report: serde_json::Value = serde_json::from_str(&get(
        &admin,
        &token,
        &format!("/api/v1/reports/uptime?from={today}&to={today}&by=day&format=json"),
    ))
    .expect("report JSON");
    let month = &report["box_health"][0];
    assert_eq!(month["id"], "binh-trung", "{report}");
    let month = &month["months"][0];
    assert_eq!(month["worst_temperature_c"].as_f64(), Some(81.0), "{month}");
    let hours = month["hours_over_threshold"].as_f64().expect("hours");
    let most = cool_seen.duration_since(hot_written).as_secs_f64() / 3600.0;
    assert!(
        hours > 0.0 && hours <= most,
        "{hours} h over the threshold; the box was hot at most {most} h"
    );
    // At least the stretch from seeing it hot to writing it cool, less the reports' spacing
    // (a gap longer than three heartbeats is not counted, and the machine may be loaded).
    let least = cool_written.duration_since(hot_seen).as_secs_f64() / 3600.0;
    assert!(
        hours >= least * 0.5,
        "{hours} h over the threshold; the box was seen hot for {least} h"
    );
    let _ = agent.terminate();
    let _ = server.terminate();
}
