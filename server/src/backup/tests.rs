use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::records::store::Store;
use crate::records::uptime_journal::LinkEvent;

/// The test CA key's bytes: found in the archive by them.
const SECRET: &[u8] = b"SECRET-CA-KEY";

fn now() -> jiff::Timestamp {
    "2026-03-01T02:00:00Z".parse().unwrap()
}

/// A data directory with a store holding records, a library file and CA-like files.
fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.admin_token().unwrap();
    for i in 0..50 {
        store
            .uptime()
            .record_link(
                "binh-trung",
                &LinkEvent {
                    unix_ms: 1_000 + i,
                    up: i % 2 == 0,
                    reason: String::new(),
                    server_run: Some(7),
                },
            )
            .unwrap();
    }
    let ca = dir.path().join("ca");
    std::fs::create_dir_all(ca.join("enrolled")).unwrap();
    std::fs::write(ca.join("ca.crt"), "cert").unwrap();
    relay_agent::bundle::write_private(&ca.join("ca.key"), SECRET).unwrap();
    relay_agent::bundle::write_private(&ca.join("enrolled/binh-trung.toml"), b"x").unwrap();
    (dir, store)
}

fn archive_of(store: &Store) -> Vec<u8> {
    let snapshot = Snapshot::take(store, now()).unwrap();
    let mut out = Vec::new();
    snapshot.write_archive(&mut out).unwrap();
    out
}

#[test]
fn a_restored_store_holds_the_same_trees_and_generates_ids_above_the_old_ones() {
    let (dir, store) = seeded();
    let before = store.uptime().links("binh-trung").unwrap();
    let archive = archive_of(&store);
    let target = dir.path().join("restored");
    let restored = restore(&archive[..], &target).unwrap();
    assert!(restored.store_entries > 50, "{}", restored.store_entries);
    let old_max = store.db().generate_id().unwrap();
    let copy = Store::open(&target).unwrap();
    assert_eq!(copy.uptime().links("binh-trung").unwrap(), before);
    assert!(copy.verify_token(&store.admin_token().unwrap()));
    let next = copy.db().generate_id().unwrap();
    assert!(
        next > old_max,
        "ids restart at {next}, old ones reach {old_max}"
    );
    // A new link event sorts after the old ones rather than among them.
    let late = LinkEvent {
        unix_ms: 9_999,
        up: true,
        reason: String::new(),
        server_run: Some(8),
    };
    copy.uptime().record_link("binh-trung", &late).unwrap();
    assert_eq!(
        copy.uptime().links("binh-trung").unwrap().last(),
        Some(&late)
    );
    // Files and their modes.
    let key = target.join("ca/ca.key");
    assert_eq!(std::fs::read(&key).unwrap(), SECRET);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read(target.join("ca/enrolled/binh-trung.toml")).unwrap(),
        b"x"
    );
    assert_eq!(
        std::fs::metadata(&target).unwrap().permissions().mode() & 0o777,
        0o700
    );
}

#[test]
fn the_snapshot_folder_is_removed_after_the_archive() {
    let (dir, store) = seeded();
    let snapshot = Snapshot::take(&store, now()).unwrap();
    let work = snapshot.work_dir().to_owned();
    assert!(work.starts_with(dir.path()));
    let mut out = Vec::new();
    snapshot.write_archive(&mut out).unwrap();
    drop(snapshot);
    assert!(!work.exists());
}

#[test]
fn a_non_empty_target_is_refused_and_left_alone() {
    let (dir, store) = seeded();
    let archive = archive_of(&store);
    let target = dir.path().join("busy");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("something"), "mine").unwrap();
    let err = restore(&archive[..], &target).unwrap_err();
    assert!(matches!(err, RestoreError::NotEmpty { .. }), "{err}");
    assert!(err.to_string().contains("empty"), "{err}");
    assert_eq!(std::fs::read(target.join("something")).unwrap(), b"mine");
    // An empty directory (systemd's StateDirectory) is fine, and keeps its mode.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o750)).unwrap();
    restore(&archive[..], &empty).unwrap();
    assert_eq!(
        std::fs::metadata(&empty).unwrap().permissions().mode() & 0o777,
        0o750
    );
    assert!(empty.join("store").is_dir());
}

fn leftovers(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect()
}

#[test]
fn a_damaged_or_truncated_archive_restores_nothing() {
    let (dir, store) = seeded();
    let archive = archive_of(&store);
    let parent = dir.path().join("out");
    std::fs::create_dir(&parent).unwrap();
    // One byte changed in the CA key's data.
    let at = archive
        .windows(SECRET.len())
        .position(|w| w == SECRET)
        .expect("the key's bytes");
    let mut flipped = archive.clone();
    flipped[at] ^= 0x01;
    let target = parent.join("data");
    let err = restore(&flipped[..], &target).unwrap_err();
    assert!(err.to_string().contains("ca/ca.key"), "{err}");
    assert!(!target.exists());
    // Cut short anywhere: refused, nothing left.
    for cut in [
        archive.len() / 3,
        archive.len() - 2048,
        archive.len() - 1500,
    ] {
        let err = restore(&archive[..cut], &target).unwrap_err();
        assert!(
            matches!(err, RestoreError::Truncated | RestoreError::Damaged(_)),
            "cut at {cut}: {err}"
        );
        assert!(!target.exists(), "cut at {cut}");
    }
    assert!(leftovers(&parent).is_empty(), "{:?}", leftovers(&parent));
    restore(&archive[..], &target).unwrap();
}

#[test]
fn writes_wait_while_the_gate_is_closed() {
    let (_dir, store) = seeded();
    let store = std::sync::Arc::new(store);
    let closed = store.write_gate().close();
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .uptime()
                .record_link(
                    "binh-duong",
                    &LinkEvent {
                        unix_ms: 5,
                        up: true,
                        reason: String::new(),
                        server_run: None,
                    },
                )
                .unwrap();
            tx.send(()).unwrap();
        })
    };
    assert!(
        rx.recv_timeout(std::time::Duration::from_millis(300))
            .is_err(),
        "a write went through the closed gate"
    );
    drop(closed);
    rx.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
    writer.join().unwrap();
}

#[test]
fn rotation_keeps_the_newest_and_touches_nothing_else() {
    let name = file_name("2026-03-01T02:00:05Z".parse().unwrap());
    assert_eq!(name, "radio-server-20260301T020005Z.tar");
    let names: Vec<String> = [
        "radio-server-20260301T020005Z.tar",
        "radio-server-20260227T020005Z.tar",
        "radio-server-20260228T020005Z.tar",
        "radio-server-notes.tar",
        ".radio-server-20260302T020005Z.tar.part",
        "radio-server-20260226T020005Z.tar.zst",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        to_prune(&names, 2),
        vec!["radio-server-20260227T020005Z.tar".to_string()]
    );
    assert!(to_prune(&names, 3).is_empty());
}
