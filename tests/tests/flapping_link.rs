//! A dozen outages of a seeded thunderstorm day, one after the other, between a real agent and
//! a real server (the short version of the `flapping` benchmark, `radio_tests::flapping`):
//! every outage takes the link down and the agent back up, the journal the server stored shows
//! exactly one outage per blackhole with no record missing, and the agent does not pile up
//! threads, open files or memory from one reconnect to the next.

use std::time::Duration;

use radio_tests::flapping::{run_flapping, thunderstorm_day, FlapOptions};

const OUTAGES: usize = 12;

#[test]
fn every_outage_of_a_stormy_day_is_one_journaled_reconnect_without_leaks() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The afternoon's storm, where outages follow each other: the day's first outages are the
    // scattered morning ones, so start at the first one after noon.
    let day = thunderstorm_day(2026);
    let noon = day
        .iter()
        .position(|o| o.start >= Duration::from_secs(12 * 3600))
        .expect("an afternoon outage");
    let outages: Vec<_> = day[noon..].iter().take(OUTAGES).copied().collect();
    assert_eq!(outages.len(), OUTAGES);
    let report = run_flapping(
        dir.path(),
        &FlapOptions {
            outages,
            // Longer than the 3 s idle timeout with margin: the link surely goes down.
            cap: Duration::from_secs(6),
            up: Duration::from_millis(1500),
            backoff_ms: (100, 1000),
            verbose: true,
        },
    )
    .expect("the flapping run");
    for (i, c) in report.cycles.iter().enumerate() {
        assert!(
            c.down_after.is_some(),
            "outage {i} ({:?} applied) never took the link down: {c:?}",
            c.applied
        );
        // Generous: the backoff is at most 1 s here and a handshake takes milliseconds; this
        // only catches an agent that stopped trying or waits out a long timer.
        let up = c
            .up_after
            .unwrap_or_else(|| panic!("no reconnect after outage {i}: {c:?}"));
        assert!(
            up < Duration::from_secs(20),
            "outage {i}: link up only {up:?} after the restore"
        );
    }
    let j = &report.journal;
    eprintln!("{j:?}");
    assert_eq!(j.journal_ids, 1, "{j:?}");
    assert!(j.missing.is_empty(), "records missing: {:?}", j.missing);
    assert_eq!(j.duplicates, 0, "{j:?}");
    assert_eq!(j.link_downs, OUTAGES, "one LinkDown per outage: {j:?}");
    assert_eq!(
        j.link_ups,
        OUTAGES + 1,
        "one LinkUp per outage, plus the first: {j:?}"
    );
    assert_eq!(j.down_up_pairs, OUTAGES, "{j:?}");
    assert_eq!(j.out_of_order, 0, "{j:?}");

    let (first, last) = report.quarters().expect("samples in every quarter");
    eprintln!(
        "agent at the start {:?}; first quarter {first:?}, last quarter {last:?}",
        report.first_sample
    );
    // A resource taken per reconnect and never given back would add about 9 between the
    // quarters' medians (12 outages); the tokio blocking pool may hold a thread or two more
    // for a while, which the margin allows.
    assert!(
        last.threads <= first.threads + 3,
        "threads grow with reconnects: {} → {} (first vs last quarter of {OUTAGES} outages)",
        first.threads,
        last.threads
    );
    assert!(
        last.fds <= first.fds + 3,
        "open files grow with reconnects: {} → {} (first vs last quarter of {OUTAGES} outages)",
        first.fds,
        last.fds
    );
    // Generous: allocator and sled caches settle over minutes; a leak per reconnect of the
    // order of a connection's buffers (hundreds of KiB) over a dozen reconnects shows here.
    assert!(
        last.rss_kib <= first.rss_kib + first.rss_kib / 2 + 8 * 1024,
        "agent RSS grows with reconnects: {} KiB → {} KiB (first vs last quarter of {OUTAGES} outages)",
        first.rss_kib,
        last.rss_kib
    );
}
