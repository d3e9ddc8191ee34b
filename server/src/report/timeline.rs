//! One station's states over time, rebuilt from its agent's journal records and the server's
//! view of its link (the rules in plain words are in `docs/REPORTS.md`).
//!
//! - The agent *runs* from a `ProcessStart` to its `ProcessStop`. A run without a
//!   `ProcessStop` (power cut, crash) ended at its last record: the time after it is *off*.
//! - While it runs, its *link* is up from `LinkUp` to `LinkDown`; a heartbeat restates the
//!   link and the output, so a transition lost in a crash is mended at the next heartbeat.
//! - *Available* = running with the link up. Unavailable = *link down* (running, no link),
//!   *off*, or *unreported* (after the last record; see [`TimelineBuilder::finish`]).
//! - Before the first record there is no data: no span at all.
//!
//! Robustness: journals (an agent reinstalled starts a new one) are merged by time, each in
//! sequence order with its times made non-decreasing (a clock stepping back a little does not
//! reorder transitions); records stamped in the future are left out; a `LinkDown` without a
//! `LinkUp`, or a second `ProcessStart`, changes nothing it should not; any record proves the
//! agent was running at its time, so a journal whose start was lost still counts.

use radio_proto::{JournalEvent, JournalRecord, OutputState};

use crate::uptime_journal::{LinkEvent, StoredRecord};

/// One 20 ms frame.
pub const FRAME_MS: i64 = 20;

/// Records stamped more than this after the report's "now" are left out (a clock far ahead).
pub const FUTURE_SLACK_MS: i64 = 60_000;

/// How long after a station's last record its last state is taken to continue: records are
/// uploaded as they are written while the link is up (heartbeats every 60 s by default), so
/// a healthy station's newest records are at most a minute or two old.
pub const REPORTING_GRACE_MS: i64 = 5 * 60_000;

/// What a station was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    /// The agent ran with its link to the server up: the station could air the district.
    Available,
    /// The agent ran but had no link.
    LinkDown,
    /// The agent did not run: stopped, power cut, crash.
    Off,
    /// After the station's last record: no news (off or no link; its records tell once they
    /// arrive).
    Unreported,
}

impl Condition {
    pub fn is_available(self) -> bool {
        self == Condition::Available
    }
}

/// A stretch of time in one condition, `[start_ms, end_ms)`, Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: i64,
    pub end_ms: i64,
    pub condition: Condition,
    /// The output was on air (only while the agent ran).
    pub on_air: bool,
}

impl Span {
    pub fn len_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }
}

/// A programme that finished playing (`ProgrammeEnd`), counted at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Play {
    pub at_ms: i64,
    pub name: String,
    pub frames: u64,
}

impl Play {
    /// Milliseconds heard: frames played × 20 ms.
    pub fn aired_ms(&self) -> i64 {
        i64::try_from(self.frames)
            .unwrap_or(i64::MAX)
            .saturating_mul(FRAME_MS)
    }
}

/// A programme that started and never got its `ProgrammeEnd` (the run ended uncleanly):
/// how long it played is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    /// The last record of the run it was playing in.
    pub at_ms: i64,
    pub name: String,
}

/// A maximal stretch of unavailable time, `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub start_ms: i64,
    pub end_ms: i64,
}

/// A station's rebuilt history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Contiguous, in time order, from the first record to "now"; adjacent spans differ.
    pub spans: Vec<Span>,
    /// Unavailable spans merged.
    pub outages: Vec<Outage>,
    /// In time order.
    pub plays: Vec<Play>,
    pub cut_off: Vec<CutOff>,
}

impl Timeline {
    /// Rebuilds from stored records in any order (grouped by journal, each journal in
    /// sequence order, merged by time) and the server's link events.
    pub fn build(records: &[StoredRecord], links: &[LinkEvent], now_ms: i64) -> Timeline {
        Self::build_with_grace(records, links, now_ms, REPORTING_GRACE_MS)
    }

    /// [`Timeline::build`] with another reporting grace.
    pub fn build_with_grace(
        records: &[StoredRecord],
        links: &[LinkEvent],
        now_ms: i64,
        grace_ms: i64,
    ) -> Timeline {
        let mut journals: Vec<(u64, Vec<JournalRecord>)> = Vec::new();
        for stored in records {
            match journals.iter_mut().find(|(id, _)| *id == stored.journal_id) {
                Some((_, records)) => records.push(stored.record.clone()),
                None => journals.push((stored.journal_id, vec![stored.record.clone()])),
            }
        }
        let iters = journals
            .into_iter()
            .map(|(_, mut records)| {
                records.sort_by_key(|r| r.seq);
                records.into_iter().map(Ok::<_, std::convert::Infallible>)
            })
            .collect();
        let mut builder = TimelineBuilder::new(now_ms, grace_ms);
        for (at_ms, record) in merge_journals(iters, now_ms).flatten() {
            builder.push(at_ms, &record.event);
        }
        builder.finish(links)
    }
}

/// Unix milliseconds as a signed number (far-future values saturate).
pub fn signed_ms(unix_ms: u64) -> i64 {
    i64::try_from(unix_ms).unwrap_or(i64::MAX)
}

/// One journal being merged: its next record with its non-decreasing time.
#[derive(Debug)]
struct JournalCursor<I> {
    records: I,
    head: Option<(i64, JournalRecord)>,
    last_ms: i64,
}

/// Journals merged into one stream by time: see [`merge_journals`].
#[derive(Debug)]
pub struct MergedJournals<I> {
    journals: Vec<JournalCursor<I>>,
    now_ms: i64,
    started: bool,
}

/// Merges journals (each an iterator in sequence order) into time order. Within a journal the
/// sequence order stands and a time earlier than the record before is raised to it (the agent's
/// clock stepped back); records stamped after `now_ms` + [`FUTURE_SLACK_MS`] are left out.
/// Yields each record with its effective time; a read error is passed on.
pub fn merge_journals<I, E>(journals: Vec<I>, now_ms: i64) -> MergedJournals<I>
where
    I: Iterator<Item = Result<JournalRecord, E>>,
{
    MergedJournals {
        journals: journals
            .into_iter()
            .map(|records| JournalCursor {
                records,
                head: None,
                last_ms: i64::MIN,
            })
            .collect(),
        now_ms,
        started: false,
    }
}

impl<I, E> MergedJournals<I>
where
    I: Iterator<Item = Result<JournalRecord, E>>,
{
    /// Fills `journal`'s head; an error is returned (and the journal left empty-headed).
    fn advance(journal: &mut JournalCursor<I>, now_ms: i64) -> Result<(), E> {
        journal.head = None;
        for item in journal.records.by_ref() {
            let record = item?;
            let at = signed_ms(record.unix_ms);
            if at > now_ms.saturating_add(FUTURE_SLACK_MS) {
                continue;
            }
            journal.last_ms = journal.last_ms.max(at);
            journal.head = Some((journal.last_ms, record));
            break;
        }
        Ok(())
    }
}

impl<I, E> Iterator for MergedJournals<I>
where
    I: Iterator<Item = Result<JournalRecord, E>>,
{
    type Item = Result<(i64, JournalRecord), E>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started {
            self.started = true;
            for journal in &mut self.journals {
                if let Err(e) = Self::advance(journal, self.now_ms) {
                    return Some(Err(e));
                }
            }
        }
        // Earliest head; on a tie the journal listed first.
        let index = self
            .journals
            .iter()
            .enumerate()
            .filter_map(|(i, j)| j.head.as_ref().map(|(at, _)| (*at, i)))
            .min()?
            .1;
        let journal = self.journals.get_mut(index)?;
        let head = journal.head.take()?;
        if let Err(e) = Self::advance(journal, self.now_ms) {
            return Some(Err(e));
        }
        Some(Ok(head))
    }
}

/// Rebuilds a timeline from records fed in time order.
#[derive(Debug)]
pub struct TimelineBuilder {
    now_ms: i64,
    grace_ms: i64,
    /// Where the next span starts; `None` before the first record.
    cursor: Option<i64>,
    last_record_ms: i64,
    running: bool,
    link: bool,
    output: OutputState,
    /// The programme playing (started, not ended).
    playing: Option<String>,
    timeline: Timeline,
}

impl TimelineBuilder {
    /// `now_ms` bounds the timeline; `grace_ms` is how long the last state is taken to last
    /// after the last record ([`REPORTING_GRACE_MS`]).
    pub fn new(now_ms: i64, grace_ms: i64) -> Self {
        TimelineBuilder {
            now_ms,
            grace_ms: grace_ms.max(0),
            cursor: None,
            last_record_ms: i64::MIN,
            running: false,
            link: false,
            output: OutputState::Silent,
            playing: None,
            timeline: Timeline::default(),
        }
    }

    fn condition(&self) -> Condition {
        match (self.running, self.link) {
            (true, true) => Condition::Available,
            (true, false) => Condition::LinkDown,
            (false, _) => Condition::Off,
        }
    }

    fn on_air(&self) -> bool {
        self.running && self.output == OutputState::OnAir
    }

    /// Closes the current stretch at `until` in `condition`.
    fn emit(&mut self, until: i64, condition: Condition, on_air: bool) {
        let Some(start) = self.cursor else {
            return;
        };
        if until <= start {
            return;
        }
        self.cursor = Some(until);
        if let Some(last) = self.timeline.spans.last_mut() {
            if last.end_ms == start && last.condition == condition && last.on_air == on_air {
                last.end_ms = until;
                return;
            }
        }
        self.timeline.spans.push(Span {
            start_ms: start,
            end_ms: until,
            condition,
            on_air,
        });
    }

    /// The run ended (stop, or a start that shows it ended uncleanly): a programme still
    /// playing was cut off.
    fn end_run(&mut self) {
        if let Some(name) = self.playing.take() {
            self.timeline.cut_off.push(CutOff {
                at_ms: self.last_record_ms,
                name,
            });
        }
        self.running = false;
        self.link = false;
        self.output = OutputState::Silent;
    }

    /// A record other than a start proves the agent ran; if it was not known to, it starts
    /// now, in the state an agent starts in.
    fn ensure_running(&mut self) {
        if !self.running {
            self.running = true;
            self.link = false;
            self.output = OutputState::Silent;
        }
    }

    /// Feeds one record at `at_ms` (a time before the previous record's is raised to it).
    pub fn push(&mut self, at_ms: i64, event: &JournalEvent) {
        let at = match self.cursor {
            None => {
                self.cursor = Some(at_ms);
                self.last_record_ms = at_ms;
                at_ms
            }
            Some(_) => at_ms.max(self.last_record_ms),
        };
        // The time since the previous record, in the state it left.
        if self.running && matches!(event, JournalEvent::ProcessStart { .. }) {
            // A start while running: the previous run ended without a stop, at its last
            // record. Whatever `clean_previous` says (a new journal says "clean").
            let (condition, on_air) = (self.condition(), self.on_air());
            self.emit(self.last_record_ms, condition, on_air);
            self.end_run();
            self.emit(at, Condition::Off, false);
        } else {
            let (condition, on_air) = (self.condition(), self.on_air());
            self.emit(at, condition, on_air);
        }
        match event {
            JournalEvent::ProcessStart { .. } => {
                self.running = true;
                self.link = false;
                self.output = OutputState::Silent;
            }
            JournalEvent::ProcessStop => {
                if self.running {
                    self.last_record_ms = at;
                    self.end_run();
                }
            }
            JournalEvent::LinkUp { .. } => {
                self.ensure_running();
                self.link = true;
            }
            JournalEvent::LinkDown { .. } => {
                self.ensure_running();
                self.link = false;
            }
            JournalEvent::Output { state } => {
                self.ensure_running();
                self.output = *state;
            }
            JournalEvent::ProgrammeStart { name, .. } => {
                self.ensure_running();
                if let Some(previous) = self.playing.replace(name.clone()) {
                    self.timeline.cut_off.push(CutOff {
                        at_ms: at,
                        name: previous,
                    });
                }
            }
            JournalEvent::ProgrammeEnd {
                name,
                frames_played,
                ..
            } => {
                self.ensure_running();
                self.playing = None;
                self.timeline.plays.push(Play {
                    at_ms: at,
                    name: name.clone(),
                    frames: *frames_played,
                });
            }
            JournalEvent::Heartbeat {
                link_up, output, ..
            } => {
                self.ensure_running();
                self.link = *link_up;
                self.output = *output;
            }
        }
        self.last_record_ms = at;
    }

    /// Closes the timeline at now. After the last record, its state is taken to continue for
    /// the grace (its next records may be on their way), cut short where the server saw the
    /// link go down; from there to now the station is *unreported*.
    pub fn finish(mut self, links: &[LinkEvent]) -> Timeline {
        if self.cursor.is_none() {
            return self.timeline;
        }
        let last = self.last_record_ms;
        let server_down = links
            .iter()
            .filter(|l| !l.up)
            .map(|l| signed_ms(l.unix_ms))
            .filter(|&at| at > last)
            .min();
        let mut assumed_until = last.saturating_add(self.grace_ms).min(self.now_ms);
        if let Some(down) = server_down {
            assumed_until = assumed_until.min(down);
        }
        let (condition, on_air) = (self.condition(), self.on_air());
        self.emit(assumed_until, condition, on_air);
        self.emit(self.now_ms, Condition::Unreported, false);
        let mut timeline = self.timeline;
        timeline.outages = outages(&timeline.spans);
        timeline
    }
}

/// Unavailable spans merged into maximal stretches.
fn outages(spans: &[Span]) -> Vec<Outage> {
    let mut out: Vec<Outage> = Vec::new();
    for span in spans.iter().filter(|s| !s.condition.is_available()) {
        match out.last_mut() {
            Some(last) if last.end_ms == span.start_ms => last.end_ms = span.end_ms,
            _ => out.push(Outage {
                start_ms: span.start_ms,
                end_ms: span.end_ms,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_proto::OutputState::{OnAir, Silent};

    const MIN: i64 = 60_000;

    fn start(clean: bool) -> JournalEvent {
        JournalEvent::ProcessStart {
            clean_previous: clean,
            software: "relay-agent/test".into(),
        }
    }

    fn up() -> JournalEvent {
        JournalEvent::LinkUp { server_run: 1 }
    }

    fn down() -> JournalEvent {
        JournalEvent::LinkDown { reason: "x".into() }
    }

    fn heartbeat(link_up: bool, output: OutputState) -> JournalEvent {
        JournalEvent::Heartbeat {
            link_up,
            output,
            frames_received: 0,
            frames_played: 0,
            frames_lost: 0,
            heartbeats_dropped: 0,
        }
    }

    /// Records of one journal at minutes.
    fn journal(id: u64, events: &[(i64, JournalEvent)]) -> Vec<StoredRecord> {
        events
            .iter()
            .enumerate()
            .map(|(i, (minute, event))| StoredRecord {
                journal_id: id,
                record: JournalRecord {
                    seq: i as u64 + 1,
                    unix_ms: (minute * MIN) as u64,
                    event: event.clone(),
                },
            })
            .collect()
    }

    fn spans(t: &Timeline) -> Vec<(i64, i64, Condition, bool)> {
        t.spans
            .iter()
            .map(|s| (s.start_ms / MIN, s.end_ms / MIN, s.condition, s.on_air))
            .collect()
    }

    use Condition::{Available as A, LinkDown as L, Off as O, Unreported as U};

    #[test]
    fn runs_links_power_cuts_and_the_tail() {
        let records = journal(
            7,
            &[
                (10, start(true)),
                (11, up()),
                (20, JournalEvent::Output { state: OnAir }),
                (30, JournalEvent::Output { state: Silent }),
                (40, heartbeat(true, Silent)),
                // Power cut after minute 40: the next start says so.
                (55, start(false)),
                (56, up()),
                (60, down()),
                (70, up()),
                (80, JournalEvent::ProcessStop),
                (90, start(true)),
                (91, up()),
                (100, heartbeat(true, Silent)),
            ],
        );
        let t = Timeline::build_with_grace(&records, &[], 200 * MIN, 5 * MIN);
        assert_eq!(
            spans(&t),
            vec![
                (10, 11, L, false),
                (11, 20, A, false),
                (20, 30, A, true),
                (30, 40, A, false),
                (40, 55, O, false),
                (55, 56, L, false),
                (56, 60, A, false),
                (60, 70, L, false),
                (70, 80, A, false),
                (80, 90, O, false),
                (90, 91, L, false),
                (91, 105, A, false),
                (105, 200, U, false),
            ]
        );
        let outages: Vec<(i64, i64)> = t
            .outages
            .iter()
            .map(|o| (o.start_ms / MIN, o.end_ms / MIN))
            .collect();
        assert_eq!(
            outages,
            vec![(10, 11), (40, 56), (60, 70), (80, 91), (105, 200)]
        );
    }

    #[test]
    fn the_server_seeing_the_link_drop_ends_the_assumed_tail() {
        let records = journal(1, &[(0, start(true)), (1, up())]);
        let links = [
            LinkEvent {
                unix_ms: MIN as u64,
                up: true,
                reason: String::new(),
            },
            LinkEvent {
                unix_ms: (3 * MIN) as u64,
                up: false,
                reason: "idle".into(),
            },
        ];
        let t = Timeline::build_with_grace(&records, &links, 60 * MIN, 10 * MIN);
        assert_eq!(
            spans(&t),
            vec![(0, 1, L, false), (1, 3, A, false), (3, 60, U, false)]
        );
        // Now within the grace: nothing unreported yet.
        let t = Timeline::build_with_grace(&records, &[], 4 * MIN, 10 * MIN);
        assert_eq!(spans(&t), vec![(0, 1, L, false), (1, 4, A, false)]);
    }

    #[test]
    fn odd_data_does_not_break_the_rebuild() {
        let mut records = journal(
            3,
            &[
                // The journal's start was lost: a heartbeat says the agent ran.
                (5, heartbeat(true, OnAir)),
                // A LinkDown without LinkUp, twice.
                (6, down()),
                (6, down()),
                // The clock stepped back: raised to minute 6.
                (4, up()),
                (8, JournalEvent::Output { state: Silent }),
                // Far in the future: left out.
                (1_000_000, down()),
                (9, JournalEvent::ProcessStop),
            ],
        );
        // A reinstall: a new journal (lower id, listed first) whose records come later.
        let mut reinstalled = journal(1, &[(12, start(true)), (13, up())]);
        reinstalled.append(&mut records);
        let t = Timeline::build_with_grace(&reinstalled, &[], 20 * MIN, 0);
        assert_eq!(
            spans(&t),
            vec![
                (5, 8, A, true),
                (8, 9, A, false),
                (9, 12, O, false),
                (12, 13, L, false),
                (13, 20, U, false),
            ]
        );
    }

    #[test]
    fn plays_and_programmes_cut_off_by_a_power_cut() {
        let records = journal(
            1,
            &[
                (0, start(true)),
                (0, up()),
                (
                    1,
                    JournalEvent::ProgrammeStart {
                        programme_id: 1,
                        name: "Bản tin sáng".into(),
                    },
                ),
                (
                    2,
                    JournalEvent::ProgrammeEnd {
                        programme_id: 1,
                        name: "Bản tin sáng".into(),
                        frames_played: 3000,
                        frames_lost: 2,
                    },
                ),
                (
                    3,
                    JournalEvent::ProgrammeStart {
                        programme_id: 2,
                        name: "Tiếp sóng".into(),
                    },
                ),
                (4, heartbeat(true, OnAir)),
                (9, start(false)),
            ],
        );
        let t = Timeline::build_with_grace(&records, &[], 10 * MIN, 0);
        assert_eq!(
            t.plays,
            vec![Play {
                at_ms: 2 * MIN,
                name: "Bản tin sáng".into(),
                frames: 3000
            }]
        );
        assert_eq!(t.plays[0].aired_ms(), 60_000);
        assert_eq!(
            t.cut_off,
            vec![CutOff {
                at_ms: 4 * MIN,
                name: "Tiếp sóng".into()
            }]
        );
        assert_eq!(
            spans(&t),
            vec![(0, 4, A, false), (4, 9, O, false), (9, 10, U, false),]
        );
    }

    #[test]
    fn no_records_no_spans() {
        assert_eq!(Timeline::build(&[], &[], 1_000), Timeline::default());
    }
}
