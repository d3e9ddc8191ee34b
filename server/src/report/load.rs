//! Reading the stations' timelines from the store: the only part of the reports that does I/O.
//! Blocking (sled): call it off the async runtime's threads.

use std::collections::BTreeMap;

use radio_config::District;

use super::timeline::{merge_journals, Timeline, TimelineBuilder, REPORTING_GRACE_MS};
use crate::records::store::StoreError;
use crate::records::uptime_journal::UptimeJournal;

/// Every station's timeline up to `now_ms`. Records are streamed station by station, journal
/// by journal, so memory holds one station's transitions, never five years of heartbeats.
pub fn timelines(
    journal: &UptimeJournal,
    district: &District,
    now_ms: i64,
) -> Result<BTreeMap<String, Timeline>, StoreError> {
    let mut out = BTreeMap::new();
    let runs = journal.runs()?;
    for station in &district.stations {
        let journals = journal
            .journal_ids(&station.id)?
            .into_iter()
            .map(|id| journal.journal_records(&station.id, id))
            .collect();
        let mut builder = TimelineBuilder::new(now_ms, REPORTING_GRACE_MS);
        for item in merge_journals(journals, now_ms) {
            let (at_ms, record) = item?;
            builder.push(at_ms, &record.event);
        }
        let links = journal.links(&station.id)?;
        out.insert(station.id.clone(), builder.finish(&links, &runs));
    }
    Ok(out)
}
