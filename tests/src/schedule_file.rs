//! Schedules for end-to-end tests: one one-off slot, in UTC, written as the server's schedule
//! file (`docs/SCHEDULING.md`).

use std::path::Path;

use jiff::{SignedDuration, Timestamp};

/// A one-off entry of a test schedule.
#[derive(Debug, Clone)]
pub struct OneOffSlot<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// When the slot starts; whole seconds (the schedule's times have no fractions).
    pub start: Timestamp,
    /// The slot's length, as the schedule writes it (`"2m"`).
    pub duration: &'a str,
    /// The `source` inline table (`{ kind = "file", path = "…" }`).
    pub source: String,
    /// The `targets` value (`"all"`, `{ stations = ["binh-hai"] }`).
    pub targets: String,
}

/// A slot start `lead` from now, on a whole second.
pub fn slot_start_after(lead: SignedDuration) -> Timestamp {
    (Timestamp::now() + lead)
        .round(jiff::Unit::Second)
        .expect("round to a second")
}

/// Writes a schedule of `slot` alone to `path`. Its date is the date the slot starts on, so a
/// slot that runs past midnight is still right.
pub fn write_one_off_schedule(path: &Path, slot: &OneOffSlot<'_>) {
    let civil = jiff::tz::TimeZone::UTC.to_datetime(slot.start);
    let text = format!(
        "timezone = \"UTC\"\n\
         \n\
         [[entries]]\n\
         id = \"{id}\"\n\
         name = \"{name}\"\n\
         recurrence = {{ once = {{ date = \"{date}\" }} }}\n\
         start = \"{time}\"\n\
         end = {{ duration = \"{duration}\" }}\n\
         source = {source}\n\
         targets = {targets}\n",
        id = slot.id,
        name = slot.name,
        date = civil.date(),
        time = civil.time().strftime("%H:%M:%S"),
        duration = slot.duration,
        source = slot.source,
        targets = slot.targets,
    );
    std::fs::write(path, text).expect("write the schedule");
}
