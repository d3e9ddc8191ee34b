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

use anyhow::bail;
use clap::Parser;
use radio_benches::summary::percentile;
use radio_tests::flapping::{run_flapping, thunderstorm_day, FlapOptions};

/// A thunderstorm day on one station's link, in accelerated time, through the impairment proxy
/// between a real relay-agent and a real radio-server.
#[derive(Debug, Parser)]
struct Cli {
    /// Seed of the day's outage model.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Run the first N outages of the day only (a short run) [default: all].
    #[arg(long, value_name = "N")]
    outages: Option<usize>,
    /// Longest an outage is applied for, in seconds.
    #[arg(long, value_name = "S", default_value_t = 8.0)]
    cap_secs: f64,
    /// Seconds the link stays up after each reconnect.
    #[arg(long, value_name = "S", default_value_t = 2.0)]
    up_secs: f64,
    /// The agent's reconnect backoff, MIN,MAX in ms.
    #[arg(long, value_name = "MIN,MAX", default_value = "100,1000", value_parser = backoff)]
    backoff_ms: (u64, u64),
    /// Do not echo the processes' output.
    #[arg(long)]
    quiet: bool,
}

fn backoff(text: &str) -> Result<(u64, u64), String> {
    text.split_once(',')
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .ok_or_else(|| format!("`{text}` is not MIN,MAX in ms"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let seed = cli.seed;
    let cap = Duration::try_from_secs_f64(cli.cap_secs)?;
    let up = Duration::try_from_secs_f64(cli.up_secs)?;
    let (min, max) = cli.backoff_ms;
    let mut outages = thunderstorm_day(seed);
    let day = outages.len();
    let modelled: Duration = outages.iter().map(|o| o.length).sum();
    outages.truncate(cli.outages.unwrap_or(day));
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
            verbose: !cli.quiet,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_commands_parse() {
        // BENCHMARKS.md, "Flapping link".
        let cli = Cli::try_parse_from(["flapping", "--seed", "2026"]).expect("parses");
        assert_eq!((cli.seed, cli.outages), (2026, None));
        assert_eq!((cli.cap_secs, cli.up_secs), (8.0, 2.0));
        assert_eq!(cli.backoff_ms, (100, 1000));
        let cli = Cli::try_parse_from(["flapping", "--outages", "20"]).expect("parses");
        assert_eq!(cli.outages, Some(20));
        assert!(Cli::try_parse_from(["flapping", "--backoff-ms", "100"]).is_err());
    }
}
