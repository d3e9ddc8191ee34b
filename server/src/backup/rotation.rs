//! Nightly backups in a folder: `radio-server-YYYYMMDDTHHMMSSZ.tar`, the newest N kept.

use jiff::Timestamp;

const PREFIX: &str = "radio-server-";
const SUFFIX: &str = ".tar";
/// `YYYYMMDDTHHMMSSZ`.
const STAMP_LEN: usize = 16;

/// The file name of a backup taken at `at` (UTC, so names sort by time).
pub fn file_name(at: Timestamp) -> String {
    format!("{PREFIX}{}{SUFFIX}", at.strftime("%Y%m%dT%H%M%SZ"))
}

/// Of the names in a folder, the backups to delete so that the newest `keep` remain. Names
/// that are not this program's backups are never chosen.
pub fn to_prune(names: &[String], keep: usize) -> Vec<String> {
    let mut ours: Vec<&String> = names.iter().filter(|n| is_backup_name(n)).collect();
    ours.sort();
    let excess = ours.len().saturating_sub(keep);
    ours.into_iter().take(excess).cloned().collect()
}

fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name
        .strip_prefix(PREFIX)
        .and_then(|rest| rest.strip_suffix(SUFFIX))
    else {
        return false;
    };
    stamp.len() == STAMP_LEN
        && stamp.char_indices().all(|(i, c)| match i {
            8 => c == 'T',
            15 => c == 'Z',
            _ => c.is_ascii_digit(),
        })
}
