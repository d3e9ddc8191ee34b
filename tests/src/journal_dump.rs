//! The uptime journal as the tests read it: the records the server stored for an agent
//! (`radio-server journal`) and those still waiting at the agent (`relay-agent --print-journal`),
//! one `journal id, seq, unix ms, event` line each.

use std::path::Path;
use std::process::Command;

use crate::binary;

/// One record of a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpedRecord {
    pub journal_id: u64,
    pub seq: u64,
    pub unix_ms: i64,
    /// The event, as `Debug` prints it (`LinkUp { server_run: … }`).
    pub event: String,
}

/// Parses a dump; the server's own `link` lines are left out.
pub fn parse(dump: &str) -> Vec<DumpedRecord> {
    dump.lines()
        .filter(|l| !l.starts_with("link\t"))
        .map(|l| {
            let mut f = l.splitn(4, '\t');
            let mut field = || {
                f.next()
                    .unwrap_or_else(|| panic!("a field is missing in the dump line {l:?}"))
            };
            let number = |v: &str| -> u64 {
                v.parse()
                    .unwrap_or_else(|_| panic!("{v:?} is not a number in the dump line {l:?}"))
            };
            let journal_id = number(field());
            let seq = number(field());
            let unix_ms = number(field()) as i64;
            let event = field().to_owned();
            DumpedRecord {
                journal_id,
                seq,
                unix_ms,
                event,
            }
        })
        .collect()
}

/// What the server in `data_dir` stored for `agent` (run with the server stopped: sled allows
/// one process).
pub fn stored(data_dir: &Path, agent: &str) -> Vec<DumpedRecord> {
    parse(&run(
        "radio-server",
        &[
            "journal",
            "--data-dir",
            data_dir.to_str().expect("utf8"),
            "--agent",
            agent,
        ],
    ))
}

/// What the agent whose state is in `state_dir` has not had acknowledged yet.
pub fn pending(state_dir: &Path) -> Vec<DumpedRecord> {
    parse(&run(
        "relay-agent",
        &[
            "--print-journal",
            state_dir.join("journal").to_str().expect("utf8"),
        ],
    ))
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(binary(program))
        .args(args)
        .output()
        .expect("run the journal dump");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8")
}

/// The agent's whole journal, from what the server stored and what the agent still holds, by
/// sequence number. Panics unless it is exactly one journal, no number is stored twice, a record
/// on both sides (an acknowledgement lost in a crash) is the same on both, and none is missing.
pub fn whole_journal(
    stored: &[DumpedRecord],
    pending: &[DumpedRecord],
) -> std::collections::BTreeMap<u64, String> {
    let ids: std::collections::BTreeSet<u64> =
        stored.iter().chain(pending).map(|r| r.journal_id).collect();
    assert_eq!(ids.len(), 1, "journal ids {ids:?}");
    let mut journal = std::collections::BTreeMap::new();
    for r in stored {
        assert!(
            journal.insert(r.seq, r.event.clone()).is_none(),
            "the server holds record {} twice",
            r.seq
        );
    }
    for r in pending {
        if let Some(stored) = journal.insert(r.seq, r.event.clone()) {
            assert_eq!(
                stored, r.event,
                "record {} differs between agent and server",
                r.seq
            );
        }
    }
    let last = journal.keys().last().copied().expect("records");
    let missing: Vec<u64> = (1..=last).filter(|s| !journal.contains_key(s)).collect();
    assert!(missing.is_empty(), "records lost: {missing:?}");
    journal
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str =
        "18446744073709551615\t1\t1795758980680\tProcessStart { clean_previous: true }\n\
                        link\t7\tup\n\
                        18446744073709551615\t2\t1795758980690\tLinkUp { server_run: 3 }\n";

    #[test]
    fn a_dump_parses_without_the_server_link_lines() {
        let records = parse(DUMP);
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].journal_id, u64::MAX);
        assert_eq!(records[1].seq, 2);
        assert_eq!(records[1].unix_ms, 1_795_758_980_690);
        assert_eq!(records[1].event, "LinkUp { server_run: 3 }");
    }

    #[test]
    fn the_two_sides_make_one_journal() {
        let records = parse(DUMP);
        let journal = whole_journal(&records[..1], &records);
        assert_eq!(journal.len(), 2);
    }

    #[test]
    #[should_panic(expected = "records lost: [2]")]
    fn a_missing_record_is_found() {
        let mut records = parse(DUMP);
        records[1].seq = 3;
        whole_journal(&records, &[]);
    }
}
