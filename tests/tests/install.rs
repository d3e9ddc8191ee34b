//! The .deb packages as a district installs them (issue 18, part 1): in a throwaway system
//! booted with a real systemd (`radio_tests::container`), both packages are installed; the
//! units pass `systemd-analyze verify`; the server reports ready; a station is enrolled in one
//! step (`relay-agent enroll --bundle`) and its agent, started by the installed unit, plays an
//! emergency to its output; a hung agent is killed and restarted by systemd's watchdog; an
//! upgrade keeps the configs, the bundle, the store and the journal; a purge removes what the
//! packages created.
//!
//! `make test` builds the packages first (`make deb`) and names their directory in
//! `RADIO_DEB_DIR`.

use std::path::{Path, PathBuf};
use std::process::Command;

use radio_tests::container::{self, Container};
use radio_tests::{compare, test_signal, write_wav, PATIENCE};

fn debs() -> Option<(PathBuf, PathBuf)> {
    let Some(dir) = std::env::var_os("RADIO_DEB_DIR") else {
        radio_test_tools::skip("RADIO_DEB_DIR is not set: run `make deb`, then this test with RADIO_DEB_DIR=target/debian (`make test` does both)");
        return None;
    };
    let dir = PathBuf::from(dir);
    let find = |name: &str| -> Option<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}_")) && n.ends_with(".deb"))
            })
            .collect();
        found.sort();
        found.pop()
    };
    match (find("radio-server"), find("relay-agent")) {
        (Some(server), Some(agent)) => Some((server, agent)),
        _ => {
            radio_test_tools::skip(&format!(
                "no radio-server_*.deb and relay-agent_*.deb in {} (run `make deb`)",
                dir.display()
            ));
            None
        }
    }
}

/// A copy of `deb` with a higher version, as the next release would be: the upgrade path's
/// maintainer scripts run for real.
fn next_version(deb: &Path, out: &Path) -> PathBuf {
    let tree = out.join(format!(
        "tree-{}",
        deb.file_stem().and_then(|s| s.to_str()).expect("name")
    ));
    let ok = |c: &mut Command| {
        let o = c.output().expect("dpkg-deb runs");
        assert!(
            o.status.success(),
            "{c:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).expect("control");
    let bumped: String = text
        .lines()
        .map(|l| match l.strip_prefix("Version: ") {
            Some(v) => format!("Version: {v}+upgrade1\n"),
            None => format!("{l}\n"),
        })
        .collect();
    std::fs::write(&control, bumped).expect("control");
    let next = out.join(format!(
        "{}-next.deb",
        deb.file_stem().and_then(|s| s.to_str()).expect("name")
    ));
    ok(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-b"])
        .arg(&tree)
        .arg(&next));
    next
}

fn put(c: &Container, inside: &str, from: &Path) {
    let to = c.path(inside);
    std::fs::create_dir_all(to.parent().expect("parent")).expect("dir in the container");
    std::fs::copy(from, &to)
        .unwrap_or_else(|e| panic!("copy {} into the container: {e}", from.display()));
}

fn wav_samples(path: &Path) -> Vec<f32> {
    // The agent's WAV is being written: read its samples past the 44-byte header, whatever the
    // header says yet.
    let bytes = std::fs::read(path).unwrap_or_default();
    bytes
        .get(44..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0)
        .collect()
}

/// The unit is active; its journal says why when it is not.
fn assert_active(c: &Container, unit: &str) {
    assert_eq!(
        c.unit_property(unit, "ActiveState"),
        "active",
        "{unit}:\n{}",
        c.journal(unit.trim_end_matches(".service"))
    );
}

#[test]
fn the_packages_install_run_under_systemd_upgrade_and_purge() {
    let Some((server_deb, agent_deb)) = debs() else {
        return;
    };
    if let Err(why) = container::available() {
        radio_test_tools::skip(&why);
        return;
    }
    let work = tempfile::tempdir().expect("tempdir");
    let c = Container::boot(&format!("radio-install-{}", std::process::id()));

    // This machine's image (built for containers) forbids maintainer scripts to start services;
    // a commune box does not, and the packages' own start is part of what is tested.
    let _ = std::fs::remove_file(c.path("/usr/sbin/policy-rc.d"));
    // Install both, as `apt install ./radio-server_*.deb ./relay-agent_*.deb` would.
    put(&c, "/root/debs/radio-server.deb", &server_deb);
    put(&c, "/root/debs/relay-agent.deb", &agent_deb);
    c.must(&[
        "dpkg",
        "-i",
        "/root/debs/radio-server.deb",
        "/root/debs/relay-agent.deb",
    ]);
    for unit in [
        "/usr/lib/systemd/system/radio-server.service",
        "/usr/lib/systemd/system/radio-server-backup.service",
        "/usr/lib/systemd/system/radio-server-backup.timer",
        "/usr/lib/systemd/system/relay-agent.service",
    ] {
        let out = c.run(&["systemd-analyze", "verify", unit]);
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "systemd-analyze verify {unit}:\n{said}"
        );
        // verify also reports problems it does not fail on; ours must have none.
        let ours: Vec<&str> = said
            .lines()
            .filter(|l| l.contains("radio-server") || l.contains("relay-agent"))
            .collect();
        assert!(ours.is_empty(), "systemd-analyze verify {unit}:\n{said}");
    }
    for page in [
        "radio-server.1.gz",
        "radio-server-run.1.gz",
        "radio-server-backup.1.gz",
        "relay-agent.1.gz",
        "relay-agent-enroll.1.gz",
    ] {
        assert!(
            c.path(&format!("/usr/share/man/man1/{page}")).is_file(),
            "man page {page}"
        );
    }
    assert!(c
        .path("/usr/share/bash-completion/completions/relay-agent")
        .is_file());

    // The test must not depend on the time of day: the default schedule relays the province
    // twice a day. A drop-in, as an administrator would add one, runs the server without it.
    let drop_in = c.path("/etc/systemd/system/radio-server.service.d/no-schedule.conf");
    std::fs::create_dir_all(drop_in.parent().expect("parent")).expect("drop-in directory");
    std::fs::write(
        &drop_in,
        "[Service]\nExecStart=\nExecStart=/usr/bin/radio-server run --config /etc/radio-server/radio-server.toml --no-schedule\n",
    )
    .expect("drop-in");
    c.must(&["systemctl", "daemon-reload"]);
    // `restart` of a Type=notify unit returns once the server said READY=1, and fails if it
    // never does.
    c.must(&["systemctl", "restart", "radio-server"]);

    // The server: started by the package, active only once it said it is ready.
    assert_active(&c, "radio-server.service");
    assert_eq!(c.unit_property("radio-server.service", "Type"), "notify");
    assert_eq!(
        c.unit_property("radio-server.service", "User"),
        "radio-server"
    );
    assert_eq!(
        c.unit_property("radio-server-backup.timer", "ActiveState"),
        "active"
    );
    // The agent: installed, waiting for its bundle, not failing in a loop.
    assert_ne!(
        c.unit_property("relay-agent.service", "ActiveState"),
        "failed"
    );

    // Enrol the station at the district, as the service's user (the CA is the service's).
    c.must(&[
        "runuser",
        "-u",
        "radio-server",
        "--",
        "radio-server",
        "enroll",
        "--config",
        "/etc/radio-server/radio-server.toml",
        "--commune",
        "binh-trung",
        "--out",
        "/var/lib/radio-server/binh-trung.toml",
    ]);
    std::fs::copy(
        c.path("/var/lib/radio-server/binh-trung.toml"),
        c.path("/root/binh-trung.toml"),
    )
    .expect("the bundle, carried to the commune");
    // The commune box writes its air to a WAV here, where the test can hear it.
    let config = c.path("/etc/relay-agent/agent.toml");
    let text = std::fs::read_to_string(&config).expect("agent.toml");
    assert!(
        text.contains("sinks = [\"pipe:aplay"),
        "the packaged default plays on the sound card:\n{text}"
    );
    std::fs::write(
        &config,
        text.replace(
            "sinks = [\"pipe:aplay -q -t raw -f S16_LE -r 48000 -c 1\"]",
            "sinks = [\"wav:/var/lib/relay-agent/air.wav\"]",
        ),
    )
    .expect("edit agent.toml");
    let enrolled = c.must(&["relay-agent", "enroll", "--bundle", "/root/binh-trung.toml"]);
    assert!(enrolled.contains("binh-trung"), "{enrolled}");
    assert_active(&c, "relay-agent.service");
    assert_eq!(
        c.unit_property("relay-agent.service", "UnitFileState"),
        "enabled"
    );
    let bundle = c.must(&["stat", "-c", "%U %a", "/etc/relay-agent/bundle.toml"]);
    assert_eq!(bundle.trim(), "relay-agent 600");
    c.wait_until("the agent's link to the server", PATIENCE, |c| {
        c.must(&["radio-server", "status"]).lines().any(|l| {
            (l.contains("binh-trung") || l.contains("Bình Trung"))
                && l.split_whitespace().any(|w| w == "up")
        })
    });

    // An emergency reaches the loudspeaker output through the installed services.
    let signal = test_signal(4.0);
    let source = work.path().join("bao-dong.wav");
    write_wav(&source, &signal, 48_000);
    put(&c, "/srv/radio/bao-dong.wav", &source);
    let air = c.path("/var/lib/relay-agent/air.wav");
    let before = wav_samples(&air).len();
    c.must(&["chmod", "-R", "a+rX", "/srv/radio"]);
    c.must(&[
        "radio-server",
        "emergency",
        "--file",
        "/srv/radio/bao-dong.wav",
        "--targets",
        "binh-trung",
        "--repeat",
        "1",
    ]);
    c.wait_until("the emergency at the agent's output", PATIENCE, |_| {
        // Only what was aired since the emergency was sent: silence, then the recording.
        let all = wav_samples(&air);
        let out = all.get(before..).unwrap_or_default();
        out.len() > signal.len() && compare(&signal, out, 48_000).correlation > 0.9
    });

    // A hang (the process stopped, alive but doing nothing) is caught by the watchdog.
    let pid = c.unit_property("relay-agent.service", "MainPID");
    assert_eq!(
        c.unit_property("relay-agent.service", "NRestarts"),
        "0",
        "{}",
        c.journal("relay-agent")
    );
    c.must(&["kill", "-STOP", &pid]);
    c.wait_until(
        "systemd's watchdog restarting the hung agent",
        PATIENCE,
        |c| {
            c.unit_property("relay-agent.service", "NRestarts") != "0"
                && c.unit_property("relay-agent.service", "ActiveState") == "active"
        },
    );
    let journal = c.journal("relay-agent");
    assert!(
        journal.contains("Watchdog timeout"),
        "restarted, but not by the watchdog:\n{journal}"
    );
    assert_ne!(c.unit_property("relay-agent.service", "MainPID"), pid);
    let journaled = c.must(&["find", "/var/lib/relay-agent", "-mindepth", "1"]);

    // Upgrade: configs, the bundle, the store and the journal stay.
    let server_next = next_version(&server_deb, work.path());
    let agent_next = next_version(&agent_deb, work.path());
    put(&c, "/root/debs/radio-server-next.deb", &server_next);
    put(&c, "/root/debs/relay-agent-next.deb", &agent_next);
    c.must(&[
        "dpkg",
        "-i",
        "/root/debs/radio-server-next.deb",
        "/root/debs/relay-agent-next.deb",
    ]);
    let after = std::fs::read_to_string(&config).expect("agent.toml after the upgrade");
    assert!(
        after.contains("wav:/var/lib/relay-agent/air.wav"),
        "the upgrade replaced the edited config:\n{after}"
    );
    assert_eq!(
        std::fs::read(c.path("/etc/relay-agent/bundle.toml")).ok(),
        std::fs::read(c.path("/root/binh-trung.toml")).ok(),
        "the upgrade lost or changed the bundle"
    );
    assert!(
        c.path("/var/lib/radio-server/store").is_dir(),
        "the upgrade lost the store"
    );
    assert!(
        c.path("/var/lib/radio-server/ca").is_dir(),
        "the upgrade lost the CA"
    );
    // sled rotates its own files; the journal's database stays.
    for kept in [
        "/var/lib/relay-agent/journal/db",
        "/var/lib/relay-agent/journal/conf",
    ] {
        assert!(
            c.path(kept).is_file(),
            "the upgrade lost {kept}:\n{journaled}"
        );
    }
    assert_active(&c, "radio-server.service");
    assert_active(&c, "relay-agent.service");
    c.wait_until(
        "the agent back on its link after the upgrade",
        PATIENCE,
        |c| {
            c.must(&["radio-server", "status"]).lines().any(|l| {
                (l.contains("binh-trung") || l.contains("Bình Trung"))
                    && l.split_whitespace().any(|w| w == "up")
            })
        },
    );

    // Purge: what the packages created is gone.
    c.must(&["dpkg", "--purge", "relay-agent", "radio-server"]);
    for gone in [
        "/var/lib/radio-server",
        "/var/lib/relay-agent",
        "/etc/radio-server",
        "/etc/relay-agent",
        "/usr/bin/radio-server",
        "/usr/lib/systemd/system/relay-agent.service",
    ] {
        assert!(!c.path(gone).exists(), "{gone} is left after the purge");
    }
    for user in ["radio-server", "relay-agent"] {
        assert!(
            !c.run(&["getent", "passwd", user]).status.success(),
            "user {user} is left after the purge"
        );
    }
}
