use super::*;

fn write(root: &Path, path: &str, text: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

#[test]
fn a_hot_box_from_a_test_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write(root, "sys/class/thermal/thermal_zone0/temp", "45000\n");
    write(root, "sys/class/thermal/thermal_zone1/temp", "81000\n");
    write(root, "sys/class/thermal/cooling_device0/temp", "99000\n");
    write(
        root,
        "proc/meminfo",
        "MemTotal: 1000 kB\nMemAvailable: 250 kB\n",
    );
    write(root, "proc/loadavg", "3.50 2.00 1.00 1/100 42\n");
    write(root, "proc/uptime", "7200.5 100.0\n");
    write(root, "run/systemd/timesync/synchronized", "");
    let outputs = OutputsSeen {
        sinks: vec![("wav:/x.wav".into(), false), ("pipe:aplay".into(), true)],
        clusters: [("c01".to_owned(), false)].into_iter().collect(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64;
    let h = measure(
        &HealthRoots::under(root),
        root,
        &outputs,
        OutputState::OnAir,
        now,
    );
    // The hottest thermal zone, not a cooling device.
    assert_eq!(h.temperature_mc, Some(81_000));
    assert_eq!(h.memory_kib, Some((250, 1000)));
    assert_eq!(h.load_centi, Some([350, 200, 100]));
    assert_eq!(h.uptime_s, Some(7200));
    assert!(h.since_clock_sync_s.is_some_and(|s| s < 60), "{h:?}");
    assert!(h
        .disk
        .is_some_and(|(free, total)| free <= total && total > 0));
    assert_eq!(
        h.outputs,
        vec![
            OutputHealth {
                name: "wav:/x.wav".into(),
                state: SinkHealth::OnAir
            },
            OutputHealth {
                name: "pipe:aplay".into(),
                state: SinkHealth::Failed
            },
        ]
    );
    assert_eq!(
        h.clusters,
        vec![ClusterHealth {
            id: "c01".into(),
            up: false
        }]
    );
}

#[test]
fn a_box_without_the_files_is_unknown_not_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = measure(
        &HealthRoots::under(dir.path()),
        &dir.path().join("missing"),
        &OutputsSeen::default(),
        OutputState::Silent,
        0,
    );
    assert_eq!(
        h,
        BoxHealth {
            unix_ms: 0,
            ..BoxHealth::default()
        }
    );
}

#[test]
fn long_names_are_cut_to_the_wire_limit() {
    let outputs = OutputsSeen {
        sinks: vec![("ổ".repeat(40), false)],
        clusters: BTreeMap::new(),
    };
    let states = sink_states(&outputs, OutputState::Underrun);
    assert!(states[0].name.len() <= BoxHealth::MAX_NAME);
    assert_eq!(states[0].state, SinkHealth::Underrun);
}
