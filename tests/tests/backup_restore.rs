//! Backups (issue 18): a running district with months of records is backed up mid-broadcast
//! with `radio-server backup`, restored with `radio-server restore` into a fresh data
//! directory, and the server started on it gives the same uptime and plays reports for those
//! months, lets the same agents in with their existing bundles (they play), and refuses the
//! revoked one. A restore into a non-empty directory, and of a damaged or cut-short archive,
//! is refused and writes nothing.
//!
//! The months of records are honest uploads: before each agent first starts, its journal
//! (`state_dir/journal`, the agent's own `Journal`) is filled with ninety days of backdated
//! transitions, which the agent then uploads to the server through the real protocol.

use std::path::Path;
use std::process::{Command, Output};

use radio_proto::{JournalEvent, ProgrammeLevel};
use radio_tests::{binary, enroll, start_agent, start_server, test_signal, write_wav, PATIENCE};
use relay_agent::journal::Journal;

const DAY_MS: u64 = 86_400_000;
const HOUR_MS: u64 = 3_600_000;
/// Days of history seeded, ending this many days ago (so the reports' period is over).
const DAYS: u64 = 90;
const ENDS_DAYS_AGO: u64 = 3;

fn run(args: &[&str], data: &Path, extra: &[&str]) -> Output {
    Command::new(binary("radio-server"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .args(extra)
        .output()
        .expect("run radio-server")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(args: &[&str], data: &Path, extra: &[&str]) -> String {
    let out = run(args, data, extra);
    assert!(out.status.success(), "{args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Fills a new agent journal in `state_dir` with `DAYS` days of a station's life: on air every
/// morning, a storm outage every week; the last seq written.
fn seed_journal(state_dir: &Path, first_day_ms: u64, programme: &str) -> u64 {
    let (journal, _) = Journal::open(&state_dir.join("journal"), 100_000).expect("open journal");
    let mut last = 0;
    let mut put = |at: u64, event: JournalEvent| {
        last = journal
            .append(at, event)
            .expect("append")
            .expect("a transition is always written");
    };
    put(
        first_day_ms,
        JournalEvent::ProcessStart {
            clean_previous: true,
            software: "relay-agent seeded".into(),
        },
    );
    for day in 0..DAYS {
        let start = first_day_ms + day * DAY_MS;
        put(start + 60_000, JournalEvent::LinkUp { server_run: 42 });
        put(
            start + 5 * HOUR_MS,
            JournalEvent::ProgrammeStart {
                programme_id: day + 1,
                name: programme.into(),
                level: ProgrammeLevel::Normal,
            },
        );
        put(
            start + 5 * HOUR_MS + HOUR_MS / 2,
            JournalEvent::ProgrammeEnd {
                programme_id: day + 1,
                name: programme.into(),
                frames_played: 90_000 - day,
                frames_lost: day,
            },
        );
        if day % 7 == 3 {
            put(
                start + 14 * HOUR_MS,
                JournalEvent::LinkDown {
                    reason: "storm".into(),
                },
            );
            put(
                start + 15 * HOUR_MS + day * 60_000,
                JournalEvent::LinkUp { server_run: 42 },
            );
        }
        put(
            start + DAY_MS - 60_000,
            JournalEvent::LinkDown {
                reason: "night".into(),
            },
        );
    }
    journal
        .close(first_day_ms + DAYS * DAY_MS)
        .expect("close journal");
    last + 1
}

/// A report as JSON without the time it was made.
fn report(kind: &str, data: &Path, admin: &str, from: &str, to: &str) -> serde_json::Value {
    let out = ok(
        &[
            "report", kind, "--from", from, "--to", to, "--by", "month", "--format", "json",
        ],
        data,
        &["--admin-listen", admin],
    );
    let mut value: serde_json::Value = serde_json::from_str(out.trim_start_matches('\u{feff}'))
        .unwrap_or_else(|e| panic!("{kind} report is not JSON ({e}): {out}"));
    strip_generated(&mut value);
    value
}

fn strip_generated(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.remove("generated");
            map.values_mut().for_each(strip_generated);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_generated),
        _ => {}
    }
}

fn local_date(unix_ms: u64) -> String {
    let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").expect("tz");
    tz.to_datetime(jiff::Timestamp::from_millisecond(unix_ms as i64).expect("time"))
        .date()
        .to_string()
}

#[test]
fn a_backup_taken_mid_broadcast_restores_the_same_reports_agents_and_revocations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = |s: &str| dir.path().join(format!("{s}.toml"));
    for station in ["binh-trung", "binh-duong", "binh-chanh"] {
        enroll(&data, station, &bundle(station));
    }
    let now_ms = jiff::Timestamp::now().as_millisecond() as u64;
    let first_day = (now_ms / DAY_MS - DAYS - ENDS_DAYS_AGO) * DAY_MS;
    let state = |s: &str| dir.path().join(format!("state-{s}"));
    let seeded: Vec<u64> = [("binh-trung", "Bản tin sáng"), ("binh-duong", "Thời sự")]
        .iter()
        .map(|&(s, p)| seed_journal(&state(s), first_day, p))
        .collect();
    let (from, to) = (
        local_date(first_day + DAY_MS),
        local_date(first_day + (DAYS - 1) * DAY_MS),
    );

    let programme = dir.path().join("programme.wav");
    write_wav(&programme, &test_signal(30.0), 48_000);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", Some(&programme), 2);
    let admin = server.admin_address();
    // binh-chanh's bundle is stolen: revoked while the district runs.
    ok(
        &["revoke", "binh-chanh", "--reason", "bundle stolen"],
        &data,
        &[],
    );
    let start = |name: &str, addr: &str| {
        start_agent(
            name,
            &bundle(name),
            addr,
            &state(name),
            &[format!(
                "wav:{}",
                dir.path().join(format!("{name}.wav")).display()
            )],
        )
    };
    let mut agents = vec![
        start("binh-trung", addr.as_str()),
        start("binh-duong", addr.as_str()),
    ];
    for (agent, last) in agents.iter_mut().zip(&seeded) {
        agent.wait_acknowledged(*last, PATIENCE);
        agent.wait_journaled("ProgrammeStart", 1, PATIENCE);
    }
    let uptime_before = report("uptime", &data, &admin, &from, &to);
    let plays_before = report("plays", &data, &admin, &from, &to);
    assert!(
        plays_before.to_string().contains("Bản tin sáng"),
        "the seeded months are not in the report: {plays_before}"
    );

    // Mid-broadcast: the programme is airing at both stations, whose agents are journaling.
    let archive = dir.path().join("backups/district.tar");
    std::fs::create_dir_all(archive.parent().expect("parent")).expect("mkdir");
    let backup_started = jiff::Timestamp::now();
    let said = ok(
        &["backup", "--out", archive.to_str().expect("utf8")],
        &data,
        &["--admin-listen", &admin],
    );
    assert!(said.contains("backup written"), "{said}");
    server.wait_for("backup: sent", PATIENCE);
    for agent in &mut agents {
        // The programme that was airing when the backup began plays on to its end after it.
        let line = agent.wait_for(": ProgrammeEnd", PATIENCE);
        let ended: jiff::Timestamp = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("no time on {line:?}"));
        assert!(
            ended > backup_started,
            "the programme ended at {ended}, before the backup began at {backup_started}"
        );
    }
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&archive)
            .expect("archive")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the archive holds the CA's key");
    }
    for agent in agents.drain(..) {
        let _ = agent.terminate();
    }
    let _ = server.terminate();

    // Restored into a fresh data directory, started, asked the same.
    let restored = dir.path().join("restored-data");
    let said = ok(
        &["restore", archive.to_str().expect("utf8")],
        &restored,
        &[],
    );
    assert!(said.contains("restored"), "{said}");
    let (mut server, addr) = start_server(&restored, "127.0.0.1:0", Some(&programme), 2);
    let admin = server.admin_address();
    assert_eq!(
        report("uptime", &restored, &admin, &from, &to),
        uptime_before,
        "the uptime report differs after the restore"
    );
    assert_eq!(
        report("plays", &restored, &admin, &from, &to),
        plays_before,
        "the plays report differs after the restore"
    );
    // The same stations get in with the bundles they have, and play.
    let mut agents = vec![
        start("binh-trung", addr.as_str()),
        start("binh-duong", addr.as_str()),
    ];
    for agent in &mut agents {
        agent.wait_journaled("ProgrammeEnd", 1, PATIENCE);
    }
    // The revoked one is still refused.
    let mut thief = start("binh-chanh", addr.as_str());
    thief.wait_for("revoked this station's certificate", PATIENCE);
    server.wait_for("refused a revoked certificate", PATIENCE);
    drop(thief);
    drop(agents);
    // The restored store goes on storing: a run marker and link events need new sled ids
    // above the old ones (sled panics in a store whose id counter was carried over wrong).
    let (_, lines) = server.terminate();
    let broken: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("panicked") || l.contains("cannot record"))
        .collect();
    assert!(
        broken.is_empty(),
        "the restored server could not store: {broken:?}"
    );

    // Not into a directory that holds anything.
    let busy = dir.path().join("busy");
    std::fs::create_dir_all(&busy).expect("mkdir");
    std::fs::write(busy.join("notes.txt"), "mine").expect("write");
    let out = run(&["restore", archive.to_str().expect("utf8")], &busy, &[]);
    assert!(!out.status.success(), "restored over a non-empty directory");
    assert!(text(&out).contains("not empty"), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(&busy).expect("ls").flatten().collect();
    assert_eq!(left.len(), 1, "the non-empty directory was changed");

    // Not from a damaged archive: one byte of the CA's key changed, or the end cut off.
    let bytes = std::fs::read(&archive).expect("read archive");
    let key_at = bytes
        .windows(11)
        .position(|w| w == b"PRIVATE KEY")
        .expect("the CA key in the archive");
    let mut damaged = bytes.clone();
    damaged[key_at + 40] ^= 0x20;
    let damaged_path = dir.path().join("damaged.tar");
    std::fs::write(&damaged_path, &damaged).expect("write");
    let cut_path = dir.path().join("cut.tar");
    std::fs::write(&cut_path, &bytes[..bytes.len() * 2 / 3]).expect("write");
    for (bad, why) in [(&damaged_path, "differs"), (&cut_path, "")] {
        let target = dir.path().join("never");
        let out = run(&["restore", bad.to_str().expect("utf8")], &target, &[]);
        assert!(!out.status.success(), "restored {}", bad.display());
        assert!(text(&out).contains(why), "{}", text(&out));
        assert!(
            text(&out).contains("nothing was restored"),
            "{}",
            text(&out)
        );
        assert!(!target.exists(), "{} left a directory", bad.display());
    }
    let strays: Vec<String> = std::fs::read_dir(dir.path())
        .expect("ls")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".restore-"))
        .collect();
    assert!(strays.is_empty(), "half-restored folders left: {strays:?}");
}
