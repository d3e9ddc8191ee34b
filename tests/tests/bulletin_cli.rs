//! The operator's bulletin commands against a real running `radio-server`: a normal bulletin is
//! offered and airs only at the station whose operator accepts it; a priority one airs without
//! acceptance; bad requests end with one clear line and a failure status.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use radio_tests::{binary, start_server_with, write_chirp};

/// Runs `radio-server ARGS --data-dir DATA --admin-listen ADMIN`.
fn cli(data: &Path, admin: &str, args: &[&str]) -> Output {
    Command::new(binary("radio-server"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(["--admin-listen", admin])
        .output()
        .expect("run radio-server")
}

/// Runs a command that must succeed; returns its stdout and stderr.
fn ok(data: &Path, admin: &str, args: &[&str]) -> (String, String) {
    let out = cli(data, admin, args);
    assert!(out.status.success(), "{args:?} failed: {}", text(&out));
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        text(&out),
    )
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The `status` line of `station`, polled until `check` holds (the change lands on the next
/// 20 ms tick, and a recording takes a moment to open).
fn status_until(data: &Path, admin: &str, station: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = cli(data, admin, &["status"]);
        assert!(out.status.success(), "status failed: {}", text(&out));
        let all = text(&out);
        let line = all
            .lines()
            .find(|l| l.contains(station))
            .unwrap_or_default()
            .to_owned();
        if check(&line) {
            return line;
        }
        assert!(
            Instant::now() < deadline,
            "{station} never reached the expected state; last status:\n{all}"
        );
        // A poll: the status is asked for, nothing announces it.
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bulletins_are_offered_accepted_and_prioritised_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let recording = dir.path().join("ban-tin.wav");
    write_chirp(&recording, 300.0, 600.0, 30.0);
    let (mut server, _) = start_server_with(&data, "127.0.0.1:0", &["--no-schedule"]);
    let admin = server.admin_address();
    let file = recording.to_str().expect("utf8");

    let (stdout, all) = ok(
        &data,
        &admin,
        &[
            "bulletin",
            "submit",
            "--id",
            "ban-tin-sang",
            "--name",
            "Bản tin sáng",
            "--file",
            file,
            "--targets",
            "binh-trung,binh-duong",
        ],
    );
    assert_eq!(stdout.trim(), "ban-tin-sang");
    assert!(
        all.contains("bulletin accept ban-tin-sang --station"),
        "{all}"
    );

    // Offered, not aired: nothing is on at either station until an operator accepts. A
    // bulletin that went on air by itself would within a tick (20 ms): half a second is the
    // deliberate window in which nothing may happen.
    std::thread::sleep(Duration::from_millis(500));
    let before = status_until(&data, &admin, "binh-trung", |_| true);
    assert!(
        !before.contains("Bản tin sáng"),
        "aired before acceptance: {before}"
    );

    let (_, all) = ok(
        &data,
        &admin,
        &[
            "bulletin",
            "accept",
            "ban-tin-sang",
            "--station",
            "binh-trung",
        ],
    );
    assert!(all.contains("accepted at binh-trung"), "{all}");
    status_until(&data, &admin, "binh-trung", |l| l.contains("Bản tin sáng"));
    let other = status_until(&data, &admin, "binh-duong", |_| true);
    assert!(
        !other.contains("Bản tin sáng"),
        "binh-duong did not accept it: {other}"
    );

    // A priority bulletin needs nobody's acceptance.
    ok(
        &data,
        &admin,
        &[
            "bulletin",
            "submit",
            "--id",
            "phong-chong-bao",
            "--name",
            "Phòng chống bão",
            "--file",
            file,
            "--level",
            "priority",
            "--targets",
            "binh-chau",
        ],
    );
    status_until(&data, &admin, "binh-chau", |l| {
        l.contains("Phòng chống bão")
    });
    // Withdrawn: it comes off the air.
    let (_, all) = ok(&data, &admin, &["bulletin", "cancel", "phong-chong-bao"]);
    assert!(all.contains("cancelled"), "{all}");
    status_until(&data, &admin, "binh-chau", |l| {
        !l.contains("Phòng chống bão")
    });

    // Mistakes end with one line naming the problem and a failure status.
    for (args, expect) in [
        (
            vec!["bulletin", "accept", "khong-co", "--station", "binh-trung"],
            "khong-co",
        ),
        (vec!["bulletin", "cancel", "khong-co"], "khong-co"),
        (
            vec![
                "bulletin",
                "submit",
                "--id",
                "x",
                "--file",
                "/nonexistent/a.wav",
            ],
            "/nonexistent/a.wav",
        ),
        (
            vec![
                "bulletin",
                "submit",
                "--id",
                "y",
                "--file",
                file,
                "--targets",
                "khong-ton-tai",
            ],
            "khong-ton-tai",
        ),
    ] {
        let out = cli(&data, &admin, &args);
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{args:?}: one line: {stderr}"
        );
    }

    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");
}
