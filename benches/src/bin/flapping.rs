//! A thunderstorm day on one station's link, in accelerated time: every outage of a seeded
//! 24-hour model is applied for real through the impairment proxy between a real `relay-agent`
//! and a real `radio-server` (`radio_tests::flapping`), and the run checks that every reconnect
//! succeeds, that the journal the server stored has one LinkDown/LinkUp pair per outage and no
//! record missing, and that the agent's RSS, threads and open files stay flat.
//!
//! `cargo run -p radio-benches --bin flapping -- [--seed X] [--outages N] [--cap-secs S]
//!  [--up-secs S] [--backoff-ms MIN,MAX] [--quiet]`
//!
//! `--outages N` runs the first N outages of the day only (a short run).

use std::time::Duration;

use anyhow::{bail, Context};
use radio_benches::summary::{arg, percentile};
use radio_tests::flapping::{run_flapping, thunderstorm_day, FlapOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seed: u64 = arg(&args, "--seed", 2026)?;
    let cap = Duration::from_secs_f64(arg(&args, "--cap-secs", 8.0)?);
    let up = Duration::from_secs_f64(arg(&args, "--up-secs", 2.0)?);
    let backoff: String = arg(&args, "--backoff-ms", "100,1000".to_owned())?;
    let (min, max) = backoff
        .split_once(',')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .context("--backoff-ms MIN,MAX")?;
    let mut outages = thunderstorm_day(seed);
    let day = outages.len();
    let modelled: Duration = outages.iter().map(|o| o.length).sum();
    outages.truncate(arg(&args, "--outages", day)?);
    println!(
        "seed {seed}: the day has {day} outages, {:.0} min down in all; running {} of them, each applied for at most {:.0} s, {:.1} s up after each reconnect, agent backoff {min}–{max} ms",
        modelled.as_secs_f64() / 60.0,
        outages.len(),
        cap.as_secs_f64(),
        up.as_secs_f64()
    );
    let dir = tempfile::tempdir()?;
    let report = run_flapping(
        dir.path(),
        &FlapOptions {
            outages,
            cap,
            up,
            backoff_ms: (min, max),
            verbose: !args.iter().any(|a| a == "--quiet"),
        },
    )
    .map_err(anyhow::Error::msg)?;

    let n = report.cycles.len();
    let mut down: Vec<f64> = report
        .cycles
        .iter()
        .filter_map(|c| c.down_after.map(|d| d.as_secs_f64()))
        .collect();
    let mut up_after: Vec<f64> = report
        .cycles
        .iter()
        .filter_map(|c| c.up_after.map(|d| d.as_secs_f64()))
        .collect();
    down.sort_by(|a, b| a.total_cmp(b));
    up_after.sort_by(|a, b| a.total_cmp(b));
    let j = &report.journal;
    println!();
    println!(
        "wall time {:.1} min for {n} outages",
        report.wall_time.as_secs_f64() / 60.0
    );
    println!(
        "link noticed down: {}/{n}; after the blackhole began: median {:.2} s, max {:.2} s",
        down.len(),
        percentile(&down, 0.5),
        down.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "reconnected: {}/{n}; link up after the restore: median {:.2} s, p95 {:.2} s, max {:.2} s",
        report.reconnected(),
        percentile(&up_after, 0.5),
        percentile(&up_after, 0.95),
        up_after.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "journal: {} records stored on the server + {} still with the agent at its stop, {} journal id(s), {} missing, {} duplicates; LinkDown {} (shutdown excluded), LinkUp {}, down→up pairs {}, out of order {}; the server's own link view: {} up, {} down",
        j.stored,
        j.pending,
        j.journal_ids,
        j.missing.len(),
        j.duplicates,
        j.link_downs,
        j.link_ups,
        j.down_up_pairs,
        j.out_of_order,
        j.server_link_ups,
        j.server_link_downs
    );
    let first = report.first_sample;
    println!(
        "agent before the first outage: RSS {} KiB, {} threads, {} fds",
        first.rss_kib, first.threads, first.fds
    );
    if let Some((a, b)) = report.quarters() {
        println!(
            "agent, median of the first quarter of the outages: RSS {} KiB, {} threads, {} fds",
            a.rss_kib, a.threads, a.fds
        );
        println!(
            "agent, median of the last quarter of the outages:  RSS {} KiB, {} threads, {} fds",
            b.rss_kib, b.threads, b.fds
        );
    }
    let samples: Vec<_> = report.cycles.iter().filter_map(|c| c.sample).collect();
    if let (Some(max_rss), Some(max_threads), Some(max_fds)) = (
        samples.iter().map(|s| s.rss_kib).max(),
        samples.iter().map(|s| s.threads).max(),
        samples.iter().map(|s| s.fds).max(),
    ) {
        println!(
            "agent, maxima over the run: RSS {max_rss} KiB, {max_threads} threads, {max_fds} fds"
        );
    }
    // A leak per reconnect shows as a slope; allocator and cache steps do not keep climbing.
    if samples.len() >= 2 {
        let xs: Vec<f64> = (0..samples.len()).map(|i| i as f64).collect();
        let ys: Vec<f64> = samples.iter().map(|s| s.rss_kib as f64).collect();
        let (mx, my) = (
            xs.iter().sum::<f64>() / xs.len() as f64,
            ys.iter().sum::<f64>() / ys.len() as f64,
        );
        let slope = xs
            .iter()
            .zip(&ys)
            .map(|(x, y)| (x - mx) * (y - my))
            .sum::<f64>()
            / xs.iter().map(|x| (x - mx).powi(2)).sum::<f64>();
        println!("agent RSS trend (least squares): {slope:.2} KiB per outage");
    }
    let ok = report.reconnected() == n
        && down.len() == n
        && j.missing.is_empty()
        && j.duplicates == 0
        && j.journal_ids == 1
        && j.link_downs == n
        && j.link_ups == n + 1
        && j.down_up_pairs == n
        && j.out_of_order == 0;
    if !ok {
        bail!("the flapping day failed a check (see above)");
    }
    println!("every outage: one LinkDown and one LinkUp in the stored journal, every reconnect succeeded, no record missing");
    Ok(())
}
