//! Sans-IO parsers for what the kernel says about the box: each takes a file's contents and
//! returns the figure, or `None` when the text is not what the kernel writes (never a panic,
//! never a made-up zero).

/// A thermal zone's `temp`: millidegrees Celsius, one integer.
pub fn thermal_zone_temp(text: &str) -> Option<i32> {
    text.trim().parse().ok()
}

/// The hottest of the zones that read; `None` when none does (a VM has no thermal zones).
pub fn hottest(zones: impl IntoIterator<Item = Option<i32>>) -> Option<i32> {
    zones.into_iter().flatten().max()
}

/// `/proc/meminfo`: (`MemAvailable`, `MemTotal`) in KiB.
pub fn meminfo(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
    };
    Some((field("MemAvailable")?, field("MemTotal")?))
}

/// `/proc/loadavg`: the three load averages, in hundredths.
pub fn loadavg(text: &str) -> Option<[u32; 3]> {
    let mut fields = text.split_whitespace().map(centi);
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// A non-negative decimal with up to two places ("0.52", "12", "1.5") in hundredths.
fn centi(s: &str) -> Option<u32> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u32 = whole.parse().ok()?;
    let mut digits = frac.bytes().map(|b| u32::from(b - b'0'));
    let tenths = digits.next().unwrap_or(0);
    let hundredths = digits.next().unwrap_or(0);
    whole
        .checked_mul(100)?
        .checked_add(tenths * 10 + hundredths)
}

/// `/proc/uptime`: whole seconds since boot.
pub fn uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let whole = first.split_once('.').map_or(first, |(w, _)| w);
    whole.parse().ok()
}

/// Seconds since the clock was last synchronised, from systemd-timesyncd's
/// `/run/systemd/timesync/synchronized` (touched at each sync): `now - mtime`, 0 for an mtime
/// in the future (the clock was stepped back by that very sync).
pub fn since_sync(now_unix_s: u64, synchronized_mtime_unix_s: Option<u64>) -> Option<u64> {
    synchronized_mtime_unix_s.map(|m| now_unix_s.saturating_sub(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thermal_zones() {
        assert_eq!(thermal_zone_temp("48312\n"), Some(48_312));
        assert_eq!(thermal_zone_temp("-2000\n"), Some(-2_000));
        assert_eq!(thermal_zone_temp(""), None);
        assert_eq!(thermal_zone_temp("hot"), None);
        assert_eq!(
            hottest([Some(41_000), None, Some(81_500), Some(60_000)]),
            Some(81_500)
        );
        // No zone at all is unknown, not 0 °C.
        assert_eq!(hottest([]), None);
        assert_eq!(hottest([None, None]), None);
    }

    #[test]
    fn memory() {
        let text = "MemTotal:        2014572 kB\nMemFree:          120332 kB\n\
                    MemAvailable:     912340 kB\nBuffers:           40000 kB\n";
        assert_eq!(meminfo(text), Some((912_340, 2_014_572)));
        // An old kernel without MemAvailable: unknown.
        assert_eq!(meminfo("MemTotal: 100 kB\nMemFree: 50 kB\n"), None);
        // A field whose name only starts the same is not it.
        assert_eq!(
            meminfo("MemTotalX: 1 kB\nMemTotal: 10 kB\nMemAvailable: 5 kB\n"),
            Some((5, 10))
        );
        assert_eq!(meminfo("MemTotal: lots kB\nMemAvailable: 5 kB\n"), None);
    }

    #[test]
    fn load() {
        assert_eq!(
            loadavg("0.52 1.07 3.10 2/345 12345\n"),
            Some([52, 107, 310])
        );
        assert_eq!(loadavg("12 1.5 0.05 1/1 1"), Some([1200, 150, 5]));
        assert_eq!(loadavg("0.52 1.07"), None);
        assert_eq!(loadavg("-1.00 1.07 3.10"), None);
        assert_eq!(loadavg("1.x0 1.07 3.10"), None);
        assert_eq!(loadavg("99999999999.00 1 1"), None);
    }

    #[test]
    fn uptime_and_clock_sync() {
        assert_eq!(uptime("350735.47 234388.90\n"), Some(350_735));
        assert_eq!(uptime("12 3"), Some(12));
        assert_eq!(uptime(""), None);
        assert_eq!(uptime("soon"), None);
        assert_eq!(since_sync(1_000, Some(940)), Some(60));
        assert_eq!(since_sync(1_000, Some(1_010)), Some(0));
        assert_eq!(since_sync(1_000, None), None);
    }
}
