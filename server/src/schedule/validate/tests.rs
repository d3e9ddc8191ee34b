use super::super::{Groups, Scheduler, Targets};
use super::*;
use jiff::civil::{date, time};
use proptest::prelude::*;

fn entry(id: &str, recurrence: Recurrence, start: (i8, i8), end: EntryEnd) -> ScheduleEntry {
    ScheduleEntry {
        id: id.to_owned(),
        name: format!("Chương trình {id}"),
        recurrence,
        start: time(start.0, start.1, 0, 0),
        end,
        source: SourceSpec::Relay {
            url: "http://127.0.0.1:8000/a.mp3".to_owned(),
        },
        targets: Targets::All,
        level: Level::Normal,
    }
}

fn at(h: i8, m: i8) -> EntryEnd {
    EntryEnd::At(time(h, m, 0, 0))
}

fn schedule(entries: Vec<ScheduleEntry>) -> Schedule {
    Schedule {
        entries,
        ..Schedule::default()
    }
}

fn check(s: &Schedule) -> Result<Vec<Overlap>, ScheduleError> {
    validate(s, &District::binh_son(), &|_| true)
}

#[test]
fn binh_son_default_is_valid() {
    let overlaps = check(&Schedule::binh_son_default()).expect("valid");
    assert!(overlaps.is_empty());
}

#[test]
fn unknown_targets_name_entry_and_target() {
    let mut e = entry("a", Recurrence::Daily, (5, 0), at(6, 0));
    e.targets = Targets::Stations(vec!["binh-trung".into(), "binh-xyz".into()]);
    let err = check(&schedule(vec![e.clone()])).expect_err("unknown station");
    let text = err.to_string();
    assert!(text.contains("entry `a`"), "{text}");
    assert!(text.contains("targets.stations[1]"), "{text}");
    assert!(text.contains("binh-xyz"), "{text}");

    e.targets = Targets::Groups(vec!["coast".into()]);
    let err = check(&schedule(vec![e.clone()])).expect_err("unknown group");
    assert!(err.to_string().contains("unknown group `coast`"), "{err}");

    let mut s = schedule(vec![e]);
    s.groups
        .insert("coast".into(), vec!["binh-trung/c77".into()]);
    let err = check(&s).expect_err("unknown cluster");
    let text = err.to_string();
    assert!(text.starts_with("entry `a`"), "{text}");
    assert!(text.contains("group `coast`"), "{text}");
    assert!(text.contains("binh-trung/c77"), "{text}");

    // A bad group that no entry uses is still reported, under its own name.
    let mut s = schedule(vec![]);
    s.groups.insert("trong".into(), vec!["atlantis".into()]);
    let err = check(&s).expect_err("unused bad group");
    assert_eq!(
        err.to_string(),
        "group `trong`: field `groups.trong[0]`: group `trong` member `atlantis`: no station \
         has this id"
    );
}

#[test]
fn missing_files_name_entry_and_path() {
    let mut e = entry("nhac", Recurrence::Daily, (8, 0), at(9, 0));
    e.source = SourceSpec::Playlist {
        paths: vec!["/srv/a.mp3".into(), "/srv/missing.mp3".into()],
    };
    let s = schedule(vec![e]);
    let err = validate(&s, &District::binh_son(), &|p: &Path| {
        p != Path::new("/srv/missing.mp3")
    })
    .expect_err("missing file");
    let text = err.to_string();
    assert!(text.contains("entry `nhac`"), "{text}");
    assert!(text.contains("source.paths[1]"), "{text}");
    assert!(text.contains("/srv/missing.mp3"), "{text}");
}

#[test]
fn relay_urls_go_through_the_stream_url_check() {
    // The rules themselves are tested in `ingest::stream_url`.
    let mut e = entry("relay", Recurrence::Daily, (5, 0), at(6, 0));
    e.source = SourceSpec::Relay {
        url: "http://source:hackme@icecast.vn:99999/live".into(),
    };
    let text = check(&schedule(vec![e])).expect_err("port").to_string();
    assert!(text.contains("`99999` is not a port"), "{text}");
    assert!(text.contains("source:***@icecast.vn"), "{text}");
    assert!(!text.contains("hackme"), "{text}");
    let mut e = entry("relay", Recurrence::Daily, (5, 0), at(6, 0));
    e.source = SourceSpec::Relay {
        url: "rtsp://cam/1".into(),
    };
    let err = check(&schedule(vec![e])).expect_err("scheme");
    let text = err.to_string();
    assert!(
        text.contains("entry `relay`") && text.contains("source.url"),
        "{text}"
    );
}

#[test]
fn upstream_names_are_slugs_and_must_be_configured() {
    let mut e = entry("up", Recurrence::Daily, (5, 0), at(6, 0));
    e.source = SourceSpec::Upstream {
        name: "Tỉnh Quảng Ngãi".into(),
    };
    let err = check(&schedule(vec![e.clone()])).expect_err("not a slug");
    assert!(err.to_string().contains("source.name"), "{err}");
    e.source = SourceSpec::Upstream {
        name: "tinh".into(),
    };
    let schedule = schedule(vec![e]);
    assert!(check(&schedule).is_ok());
    assert!(check_upstreams(&schedule, &["tinh".to_owned()]).is_ok());
    let err = check_upstreams(&schedule, &[]).expect_err("none configured");
    assert_eq!(
        err.to_string(),
        "entry `up` (entries[0]): field `source.name`: no upstream server is called `tinh` in \
         the server's config (configured: none)"
    );
}

#[test]
fn ids_names_durations_and_levels_are_checked() {
    let base = entry("a", Recurrence::Daily, (5, 0), at(6, 0));

    let mut e = base.clone();
    e.id = String::new();
    let err = check(&schedule(vec![e])).expect_err("empty id");
    assert_eq!(err.to_string(), "entries[0]: field `id` must not be empty");

    let mut e = base.clone();
    e.id = "Bản tin".into();
    assert!(matches!(
        check(&schedule(vec![e])),
        Err(ScheduleError::InvalidId { .. })
    ));

    let mut e = base.clone();
    e.name = "  ".into();
    let err = check(&schedule(vec![e])).expect_err("empty name");
    assert_eq!(
        err.to_string(),
        "entry `a` (entries[0]): field `name` must not be empty"
    );

    let mut other = base.clone();
    other.start = time(9, 0, 0, 0);
    other.end = at(10, 0);
    let err = check(&schedule(vec![base.clone(), other])).expect_err("duplicate");
    assert_eq!(
        err,
        ScheduleError::DuplicateId {
            id: "a".into(),
            first: 0,
            second: 1
        }
    );

    for d in [SignedDuration::ZERO, SignedDuration::from_secs(-60)] {
        let mut e = base.clone();
        e.end = EntryEnd::Duration(d);
        let err = check(&schedule(vec![e])).expect_err("non-positive");
        assert!(err.to_string().contains("end.duration"), "{err}");
    }
    let mut e = base.clone();
    e.end = EntryEnd::Duration(SignedDuration::from_hours(25));
    assert!(matches!(
        check(&schedule(vec![e])),
        Err(ScheduleError::TooLong { .. })
    ));
    let mut e = base.clone();
    e.end = at(5, 0);
    assert!(matches!(
        check(&schedule(vec![e])),
        Err(ScheduleError::EmptySlot { .. })
    ));

    let mut e = base.clone();
    e.level = Level::Emergency;
    let err = check(&schedule(vec![e])).expect_err("emergency");
    assert!(err.to_string().contains("entry `a`"), "{err}");
    assert!(err.to_string().contains("level"), "{err}");

    let mut e = base.clone();
    e.recurrence = Recurrence::Weekly { days: vec![] };
    assert!(matches!(
        check(&schedule(vec![e])),
        Err(ScheduleError::NoWeekdays { .. })
    ));

    let mut s = schedule(vec![base]);
    s.timezone = "Mars/Olympus".into();
    assert!(matches!(
        check(&s),
        Err(ScheduleError::UnknownTimezone { .. })
    ));
}

#[test]
fn same_level_overlap_names_both_entries_station_and_time() {
    let a = entry("sang", Recurrence::Daily, (5, 0), at(7, 0));
    let mut b = entry(
        "thu-hai",
        Recurrence::Weekly {
            days: vec![Weekday::Monday],
        },
        (6, 30),
        at(8, 0),
    );
    b.targets = Targets::Stations(vec!["binh-trung".into()]);
    let err = check(&schedule(vec![a, b])).expect_err("overlap");
    assert_eq!(
        err.to_string(),
        "entries `sang` and `thu-hai` are both normal (thường) and overlap on station \
         `binh-trung` at monday 06:30–07:00 (local time); move one, or make one the other \
         level"
    );
}

#[test]
fn overlaps_across_midnight_and_the_week_end_are_found() {
    // Sunday 23:00 → Monday 01:00 against a Monday-only 00:30 slot.
    let a = entry(
        "dem-cn",
        Recurrence::Weekly {
            days: vec![Weekday::Sunday],
        },
        (23, 0),
        at(1, 0),
    );
    let b = entry(
        "sang-t2",
        Recurrence::Weekly {
            days: vec![Weekday::Monday],
        },
        (0, 30),
        EntryEnd::Duration(SignedDuration::from_mins(15)),
    );
    let err = check(&schedule(vec![a.clone(), b.clone()])).expect_err("wraps the week");
    match err {
        ScheduleError::SameLevelOverlap { at, .. } => assert_eq!(
            at,
            LocalSpan::Weekly {
                start_day: Weekday::Monday,
                start: time(0, 30, 0, 0),
                end_day: Weekday::Monday,
                end: time(0, 45, 0, 0),
            }
        ),
        other => panic!("unexpected {other}"),
    }
    // The same Monday slot on a Tuesday does not meet Sunday night.
    let mut b2 = b;
    b2.recurrence = Recurrence::Weekly {
        days: vec![Weekday::Tuesday],
    };
    assert!(check(&schedule(vec![a, b2])).is_ok());

    // A one-off on Sunday 2025-09-07 23:30 → 00:30 meets a daily 00:00–00:10.
    let once = entry(
        "le",
        Recurrence::Once {
            date: date(2025, 9, 7),
        },
        (23, 30),
        at(0, 30),
    );
    let daily = entry("dau-ngay", Recurrence::Daily, (0, 0), at(0, 10));
    let err = check(&schedule(vec![once, daily])).expect_err("once vs daily");
    match err {
        ScheduleError::SameLevelOverlap { at, .. } => assert_eq!(
            at,
            LocalSpan::Dated {
                start: date(2025, 9, 8).at(0, 0, 0, 0),
                end: date(2025, 9, 8).at(0, 10, 0, 0),
            }
        ),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn touching_slots_do_not_overlap() {
    let a = entry("a", Recurrence::Daily, (5, 0), at(7, 0));
    let b = entry("b", Recurrence::Daily, (7, 0), at(8, 0));
    let c = entry(
        "c",
        Recurrence::Daily,
        (23, 0),
        EntryEnd::Duration(SignedDuration::from_hours(6)),
    );
    assert_eq!(check(&schedule(vec![a, b, c])), Ok(vec![]));
}

#[test]
fn different_levels_are_reported_not_rejected() {
    let a = entry("relay", Recurrence::Daily, (5, 0), at(7, 0));
    let mut b = entry(
        "canh-bao",
        Recurrence::Once {
            date: date(2025, 9, 2),
        },
        (6, 0),
        at(6, 15),
    );
    b.level = Level::Priority;
    b.targets = Targets::Stations(vec!["binh-trung".into(), "binh-duong".into()]);
    let overlaps = check(&schedule(vec![a, b])).expect("allowed");
    assert_eq!(overlaps.len(), 1);
    let o = &overlaps[0];
    assert_eq!((o.higher.as_str(), o.lower.as_str()), ("canh-bao", "relay"));
    assert_eq!(o.stations.len(), 2);
    assert_eq!(
        o.spans,
        vec![LocalSpan::Dated {
            start: date(2025, 9, 2).at(6, 0, 0, 0),
            end: date(2025, 9, 2).at(6, 15, 0, 0),
        }]
    );
}

#[test]
fn disjoint_targets_never_overlap() {
    let mut a = entry("a", Recurrence::Daily, (5, 0), at(7, 0));
    a.targets = Targets::Stations(vec!["binh-trung".into()]);
    let mut b = entry("b", Recurrence::Daily, (5, 0), at(7, 0));
    b.targets = Targets::Stations(vec!["binh-duong".into()]);
    assert_eq!(check(&schedule(vec![a, b])), Ok(vec![]));
}

fn arb_entry(i: usize) -> impl Strategy<Value = ScheduleEntry> {
    let recurrence = prop_oneof![
        Just(Recurrence::Daily),
        proptest::collection::btree_set(0i8..7, 1..3).prop_map(|days| Recurrence::Weekly {
            days: days
                .into_iter()
                .filter_map(|d| Weekday::from_monday_zero_offset(d).ok())
                .collect()
        }),
        (1i8..=14).prop_map(|d| Recurrence::Once {
            date: date(2025, 9, d)
        }),
    ];
    let end = prop_oneof![
        (0i64..48).prop_map(|q| EntryEnd::At(
            civil::Time::midnight().saturating_add(SignedDuration::from_mins(q * 30))
        )),
        (1i64..=48).prop_map(|q| EntryEnd::Duration(SignedDuration::from_mins(q * 30))),
    ];
    let targets = prop_oneof![
        Just(Targets::All),
        Just(Targets::Stations(vec!["binh-trung".into()])),
        Just(Targets::Stations(vec!["binh-duong".into()])),
    ];
    (recurrence, 0i64..48, end, targets, any::<bool>()).prop_map(
        move |(recurrence, start, end, targets, priority)| {
            let mut e = entry(&format!("e{i}"), recurrence, (0, 0), end);
            e.start = civil::Time::midnight().saturating_add(SignedDuration::from_mins(start * 30));
            if e.end == EntryEnd::At(e.start) {
                e.end = EntryEnd::Duration(SignedDuration::from_mins(30));
            }
            e.targets = targets;
            e.level = if priority {
                Level::Priority
            } else {
                Level::Normal
            };
            e
        },
    )
}

proptest! {
    /// The week arithmetic agrees with brute force: real occurrences over three weeks
    /// (in a zone without DST, where wall-clock and elapsed time agree).
    #[test]
    fn week_check_matches_real_occurrences(
        a in arb_entry(0),
        b in arb_entry(1),
    ) {
        let district = District::binh_son();
        let mut s = schedule(vec![a, b]);
        s.timezone = "Asia/Ho_Chi_Minh".into();
        let result = validate(&s, &district, &|_| true);
        let mut lenient = s.clone();
        for e in &mut lenient.entries {
            e.level = Level::Normal;
        }
        lenient.entries[1].level = Level::Priority;
        let scheduler = Scheduler::new(lenient, &district).expect("levels differ");
        let from = date(2025, 8, 25).in_tz("Asia/Ho_Chi_Minh").expect("tz").timestamp();
        let to = date(2025, 9, 22).in_tz("Asia/Ho_Chi_Minh").expect("tz").timestamp();
        let occ = scheduler.occurrences(from, to);
        let mut real_overlap = false;
        for x in occ.iter().filter(|o| o.entry_id == "e0") {
            for y in occ.iter().filter(|o| o.entry_id == "e1") {
                if x.start < y.end && y.start < x.end && !x.stations.is_disjoint(&y.stations) {
                    real_overlap = true;
                }
            }
        }
        let same_level = s.entries[0].level == s.entries[1].level;
        match result {
            Err(ScheduleError::SameLevelOverlap { .. }) => {
                prop_assert!(same_level && real_overlap)
            }
            Ok(overlaps) => {
                prop_assert_eq!(!overlaps.is_empty(), real_overlap);
                prop_assert!(!same_level || !real_overlap);
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }
}

#[test]
fn a_period_airs_on_its_days_between_its_dates_and_meets_only_what_shares_them() {
    let period = |from, until, days: Vec<Weekday>| Recurrence::Period { from, until, days };
    let every_day = period(date(2026, 12, 7), date(2026, 12, 20), vec![]);
    assert!(!every_day.matches(date(2026, 12, 6)));
    assert!(every_day.matches(date(2026, 12, 7)));
    assert!(every_day.matches(date(2026, 12, 20)));
    assert!(!every_day.matches(date(2026, 12, 21)));
    // 2026-12-07 is a Monday.
    let mondays = period(date(2026, 12, 7), date(2026, 12, 20), vec![Weekday::Monday]);
    assert!(mondays.matches(date(2026, 12, 14)));
    assert!(!mondays.matches(date(2026, 12, 15)));

    let backwards = entry(
        "nguoc",
        period(date(2026, 12, 20), date(2026, 12, 7), vec![]),
        (8, 0),
        at(8, 30),
    );
    let err = check(&schedule(vec![backwards])).expect_err("until before from");
    assert!(err.to_string().contains("recurrence.period.until"), "{err}");

    // Same level, same time: two campaigns in different weeks do not overlap, a daily entry
    // meets either, and a one-off inside the period meets it.
    let first = entry("dot-1", every_day.clone(), (8, 0), at(8, 30));
    let later = entry(
        "dot-2",
        period(date(2027, 1, 4), date(2027, 1, 10), vec![]),
        (8, 0),
        at(8, 30),
    );
    assert!(check(&schedule(vec![first.clone(), later.clone()])).is_ok());
    let daily = entry("hang-ngay", Recurrence::Daily, (8, 15), at(8, 45));
    let err = check(&schedule(vec![first.clone(), daily])).expect_err("daily meets it");
    assert!(
        matches!(err, ScheduleError::SameLevelOverlap { .. }),
        "{err}"
    );
    let inside = entry(
        "mot-lan",
        Recurrence::Once {
            date: date(2026, 12, 10),
        },
        (8, 10),
        at(8, 20),
    );
    assert!(check(&schedule(vec![first.clone(), inside.clone()])).is_err());
    let outside = entry(
        "mot-lan",
        Recurrence::Once {
            date: date(2026, 12, 22),
        },
        (8, 10),
        at(8, 20),
    );
    assert!(check(&schedule(vec![first, outside])).is_ok());
}

#[test]
fn a_new_entry_that_could_never_air_again_is_refused_as_past() {
    let tz = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh").unwrap();
    // 2026-12-07 09:00 in Vietnam.
    let now: jiff::Timestamp = "2026-12-07T02:00:00Z".parse().unwrap();
    let once = |d, h| {
        entry(
            "mot-lan",
            Recurrence::Once { date: d },
            (h, 0),
            at(h + 1, 0),
        )
    };
    let err = check_not_past(3, &once(date(2026, 12, 7), 7), &tz, now).expect_err("07–08 is over");
    let text = err.to_string();
    assert!(
        text.contains("entries[3]") && text.contains("`start`"),
        "{text}"
    );
    assert!(
        text.contains("2026-12-07 07:00") && text.contains("now 2026-12-07 09:00"),
        "{text}"
    );
    // 08:00–09:00 ends at 09:00: over. 08:30 for an hour is under way: it joins in progress.
    assert!(check_not_past(0, &once(date(2026, 12, 7), 8), &tz, now).is_err());
    let mut under_way = once(date(2026, 12, 7), 8);
    under_way.start = time(8, 30, 0, 0);
    under_way.end = EntryEnd::Duration(jiff::SignedDuration::from_hours(1));
    assert!(check_not_past(0, &under_way, &tz, now).is_ok());
    assert!(check_not_past(0, &once(date(2026, 12, 7), 10), &tz, now).is_ok());
    assert!(check_not_past(0, &once(date(2026, 12, 8), 5), &tz, now).is_ok());

    let period = |until| {
        entry(
            "dot",
            Recurrence::Period {
                from: date(2026, 12, 1),
                until,
                days: vec![],
            },
            (8, 0),
            at(8, 30),
        )
    };
    let err = check_not_past(0, &period(date(2026, 12, 7)), &tz, now)
        .expect_err("last day's 08:00–08:30 is over");
    assert!(err.to_string().contains("recurrence.period.until"), "{err}");
    assert!(check_not_past(0, &period(date(2026, 12, 8)), &tz, now).is_ok());
    assert!(check_not_past(
        0,
        &entry("d", Recurrence::Daily, (8, 0), at(9, 0)),
        &tz,
        now
    )
    .is_ok());
}

#[test]
fn a_period_reads_from_toml_with_or_without_days() {
    let text = r#"
        id = "tiem-chung"
        name = "Tiêm chủng"
        recurrence = { period = { from = "2026-12-07", until = "2026-12-20", days = ["t2", "thu"] } }
        start = "08:00"
        end = { duration = "10m" }
        source = { kind = "relay", url = "http://127.0.0.1:8000/a.mp3" }
        targets = "all"
    "#;
    let e: ScheduleEntry = toml::from_str(text).expect("period entry");
    assert_eq!(
        e.recurrence,
        Recurrence::Period {
            from: date(2026, 12, 7),
            until: date(2026, 12, 20),
            days: vec![Weekday::Monday, Weekday::Thursday],
        }
    );
    let plain: ScheduleEntry = toml::from_str(&text.replace(r#", days = ["t2", "thu"]"#, ""))
        .expect("period without days");
    assert!(matches!(plain.recurrence, Recurrence::Period { ref days, .. } if days.is_empty()));
}

#[test]
fn a_target_may_name_a_cluster_of_a_station() {
    let district = District::binh_son();
    let groups = Groups::default();
    let targets = Targets::Stations(vec!["binh-trung/c03".into(), "binh-duong".into()]);
    let resolved = targets.resolve_detailed(&district, &groups).expect("valid");
    assert_eq!(
        resolved
            .stations
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["binh-duong", "binh-trung"]
    );
    assert_eq!(
        resolved
            .clusters
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["binh-trung/c03"]
    );
    // A whole station covers its clusters.
    let both = Targets::Stations(vec!["binh-trung/c03".into(), "binh-trung".into()]);
    assert!(both
        .resolve_detailed(&district, &groups)
        .expect("valid")
        .clusters
        .is_empty());
    let err = Targets::Stations(vec!["binh-trung".into(), "binh-trung/c99".into()])
        .resolve_detailed(&district, &groups)
        .expect_err("no such cluster");
    let text = err.to_string();
    assert!(
        text.contains("targets.stations[1]") && text.contains("binh-trung/c99"),
        "{text}"
    );
    let err = Targets::Stations(vec!["binh-xyz".into()])
        .resolve_detailed(&district, &groups)
        .expect_err("no such station");
    assert!(
        err.to_string().contains("unknown station `binh-xyz`"),
        "{err}"
    );
}
