//! One station's states over time, rebuilt from its agent's journal records and the server's
//! view of its link (the rules in plain words are in `docs/REPORTS.md`).
//!
//! - The agent *runs* from a `ProcessStart` to its `ProcessStop`. A run without a
//!   `ProcessStop` (power cut, crash) ended at its last record: the time after it is *off*.
//! - While it runs, its *link* is up from `LinkUp` to `LinkDown`; a heartbeat restates the
//!   link and the output, so a transition lost in a crash is mended at the next heartbeat.
//! - *Available* = running with the link up. Unavailable = *link down* (running, no link),
//!   *off*, or *unreported* (after the last record; see [`TimelineBuilder::finish`]).
//! - Before the first record there is no data: no span at all. A new station that connects
//!   within [`FIRST_CONNECT_GRACE_MS`] of its very first start has its data start there.
//! - After the last record, the last state lasts a grace, cut short where the server saw the
//!   station's session end — its down event, or the last sign of life of a server run that
//!   crashed with the session open ([`session_ends`]).
//!
//! Robustness: journals (an agent reinstalled starts a new one) are merged by time, each in
//! sequence order with its times made non-decreasing (a clock stepping back a little does not
//! reorder transitions); records stamped in the future are left out; a `LinkDown` without a
//! `LinkUp`, or a second `ProcessStart`, changes nothing it should not; any record proves the
//! agent was running at its time, so a journal whose start was lost still counts.

use std::collections::BTreeMap;

use radio_proto::{ClusterState, JournalEvent, JournalRecord, OutputState, ProgrammeLevel};

use crate::records::uptime_journal::{LinkEvent, ServerRun, StoredRecord};

/// One 20 ms frame.
pub const FRAME_MS: i64 = 20;

/// Records stamped more than this after the report's "now" are left out (a clock far ahead).
pub const FUTURE_SLACK_MS: i64 = 60_000;

/// How long after a station's last record its last state is taken to continue: records are
/// uploaded as they are written while the link is up (heartbeats every 60 s by default), so
/// a healthy station's newest records are at most a minute or two old.
pub const REPORTING_GRACE_MS: i64 = 5 * 60_000;

/// A new station's first connection, this soon after its first start, starts its data: the
/// time before it (one handshake, which times out after 10 s) is not counted, instead of
/// being an outage of a few milliseconds that says nothing about the station and would pull
/// its MTTR towards zero.
pub const FIRST_CONNECT_GRACE_MS: i64 = 10_000;

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
    /// In a cluster's timeline only: the station could air, but the cluster's receiver was
    /// down (its agent watches it: RTCP reports stopped, or ICMP said unreachable).
    ClusterDown,
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
    /// As announced at its start.
    pub level: ProgrammeLevel,
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
    pub level: ProgrammeLevel,
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
    /// The clusters the agent watches (`c01`), with the stretches their receiver was down
    /// while the agent ran, in time order. Clusters not here follow the station.
    pub clusters: BTreeMap<String, Vec<Outage>>,
    /// The stretches each amplifier was switched on (journaled `Amplifier` switches), every
    /// output's, in the order they ended.
    pub amplifier_on: Vec<Outage>,
}

impl Timeline {
    /// Rebuilds from stored records in any order (grouped by journal, each journal in
    /// sequence order, merged by time) and the server's link events, without the server's
    /// runs (see [`Timeline::build_with`]).
    pub fn build(records: &[StoredRecord], links: &[LinkEvent], now_ms: i64) -> Timeline {
        Self::build_with(records, links, &[], now_ms, REPORTING_GRACE_MS)
    }

    /// [`Timeline::build`] with the server's runs (in start order) and another reporting
    /// grace.
    pub fn build_with(
        records: &[StoredRecord],
        links: &[LinkEvent],
        runs: &[ServerRun],
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
        builder.finish(links, runs)
    }
}

/// When the server saw one of a station's sessions end, somewhere in
/// `[earliest_ms, latest_ms]`: a down event gives the moment; a session its run never closed
/// (the server crashed) ended between the run's last sign of life and the next run's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEnd {
    pub earliest_ms: i64,
    pub latest_ms: i64,
}

/// The ends of a station's server sessions, from its link events (in stored order, which is
/// the order they were written, across runs) and the server's runs (in start order). A session
/// up in run A and never closed ended, once a later run exists (a later run's event of this
/// station, or a later run's start marker), at A's last sign of life: its alive time, or this
/// station's last event in A if that is later. Events without a run (stored before runs were
/// recorded) count only by their down events, as they always did.
pub fn session_ends(links: &[LinkEvent], runs: &[ServerRun]) -> Vec<SessionEnd> {
    let position = |run: u64| runs.iter().rposition(|r| r.run_id == run);
    // The session open in a run, and this station's last event in it.
    let implied_end = |run: u64, seen_ms: i64, next_event_ms: Option<i64>| {
        let (alive_ms, next_start_ms) = match position(run) {
            Some(i) => (
                signed_ms(runs[i].alive_ms),
                runs.get(i + 1).map(|r| signed_ms(r.started_ms)),
            ),
            None => (i64::MIN, None),
        };
        let earliest_ms = alive_ms.max(seen_ms);
        let latest_ms = next_start_ms
            .or(next_event_ms)
            .unwrap_or(i64::MAX)
            .max(earliest_ms);
        SessionEnd {
            earliest_ms,
            latest_ms,
        }
    };
    let mut out = Vec::new();
    let mut open: Option<(u64, i64)> = None;
    for link in links {
        let at = signed_ms(link.unix_ms);
        if let Some((run, seen_ms)) = open {
            // A later run's event: this run is over (`open` is set again just below).
            if link.server_run.is_some_and(|r| r != run) {
                out.push(implied_end(run, seen_ms, Some(at)));
            }
        }
        if link.up {
            open = link.server_run.map(|run| (run, at));
        } else {
            out.push(SessionEnd {
                earliest_ms: at,
                latest_ms: at,
            });
            open = None;
        }
    }
    if let Some((run, seen_ms)) = open {
        // Over only if a later run started; the newest run is the one making the report.
        if position(run).is_some_and(|i| i + 1 < runs.len()) {
            out.push(implied_end(run, seen_ms, None));
        }
    }
    out
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

impl Timeline {
    /// The timeline of one loudspeaker cluster of this station (`c01`): the station's, with
    /// the time its receiver was down taken out of the available time. A cluster the agent
    /// does not watch (wired, FM, or an IP receiver without `cluster=`) follows the station:
    /// `None`. Plays stay the station's.
    pub fn for_cluster(&self, cluster: &str) -> Option<Timeline> {
        let downs = self.clusters.get(cluster)?;
        let mut spans: Vec<Span> = Vec::with_capacity(self.spans.len());
        let mut push = |span: Span| {
            if span.end_ms <= span.start_ms {
                return;
            }
            match spans.last_mut() {
                Some(last)
                    if last.end_ms == span.start_ms
                        && last.condition == span.condition
                        && last.on_air == span.on_air =>
                {
                    last.end_ms = span.end_ms
                }
                _ => spans.push(span),
            }
        };
        // Both lists are in time order: walk the downs alongside the spans.
        let mut first_down = 0;
        for span in &self.spans {
            if span.condition != Condition::Available {
                push(*span);
                continue;
            }
            while downs
                .get(first_down)
                .is_some_and(|d| d.end_ms <= span.start_ms)
            {
                first_down += 1;
            }
            let mut at = span.start_ms;
            for down in downs[first_down..]
                .iter()
                .take_while(|d| d.start_ms < span.end_ms)
            {
                let (start, end) = (down.start_ms.max(at), down.end_ms.min(span.end_ms));
                if end <= start {
                    continue;
                }
                push(Span {
                    end_ms: start,
                    start_ms: at,
                    ..*span
                });
                push(Span {
                    start_ms: start,
                    end_ms: end,
                    condition: Condition::ClusterDown,
                    on_air: false,
                });
                at = end;
            }
            push(Span {
                start_ms: at,
                ..*span
            });
        }
        Some(Timeline {
            outages: outages(&spans),
            spans,
            plays: self.plays.clone(),
            cut_off: self.cut_off.clone(),
            clusters: BTreeMap::new(),
            // The station's row has them.
            amplifier_on: Vec::new(),
        })
    }
}

/// Rebuilds a timeline from records fed in time order.
#[derive(Debug)]
pub struct TimelineBuilder {
    now_ms: i64,
    grace_ms: i64,
    /// Where the next span starts; `None` before the first record.
    cursor: Option<i64>,
    /// The station's very first record was a start at this time, and no link came up yet
    /// ([`FIRST_CONNECT_GRACE_MS`]).
    first_start_ms: Option<i64>,
    last_record_ms: i64,
    running: bool,
    link: bool,
    output: OutputState,
    /// The programme playing (started, not ended), with its level.
    playing: Option<(String, ProgrammeLevel)>,
    /// Watched clusters, with the start of the stretch each is down in, if it is.
    cluster_down_since: BTreeMap<String, Option<i64>>,
    /// Amplifiers switched on, by output, since when.
    amplifier_on_since: BTreeMap<String, i64>,
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
            first_start_ms: None,
            last_record_ms: i64::MIN,
            running: false,
            link: false,
            output: OutputState::Silent,
            playing: None,
            cluster_down_since: BTreeMap::new(),
            amplifier_on_since: BTreeMap::new(),
            timeline: Timeline::default(),
        }
    }

    /// Ends every cluster's down stretch at `at`: a cluster's state is known only while the
    /// agent that watches it runs (after a restart it is decided afresh).
    fn close_cluster_downs(&mut self, at: i64) {
        for (cluster, since) in &mut self.cluster_down_since {
            if let Some(start) = since.take() {
                push_cluster_down(&mut self.timeline, cluster, start, at);
            }
        }
    }

    /// Ends every amplifier's on stretch at `at`: past the agent's last record (a crash, the
    /// end of what is reported) its amplifier is not known to be on.
    fn close_amplifiers(&mut self, at: i64) {
        for (_, since) in std::mem::take(&mut self.amplifier_on_since) {
            push_amplifier_on(&mut self.timeline, since, at);
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
        self.close_cluster_downs(self.last_record_ms);
        self.close_amplifiers(self.last_record_ms);
        if let Some((name, level)) = self.playing.take() {
            self.timeline.cut_off.push(CutOff {
                at_ms: self.last_record_ms,
                name,
                level,
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
        let first = self.cursor.is_none();
        let at = match self.cursor {
            None => {
                self.cursor = Some(at_ms);
                self.last_record_ms = at_ms;
                at_ms
            }
            Some(_) => at_ms.max(self.last_record_ms),
        };
        if first {
            if let JournalEvent::ProcessStart { .. } = event {
                self.first_start_ms = Some(at);
            }
        } else if let Some(started) = self.first_start_ms {
            match event {
                JournalEvent::LinkUp { .. } if at - started <= FIRST_CONNECT_GRACE_MS => {
                    // The new station's data starts at its first connection: what it did
                    // while connecting (link down, by definition) is not counted.
                    self.timeline.spans.clear();
                    self.cursor = Some(at);
                    self.first_start_ms = None;
                }
                JournalEvent::ProcessStart { .. } | JournalEvent::ProcessStop => {
                    self.first_start_ms = None;
                }
                _ if at - started > FIRST_CONNECT_GRACE_MS => self.first_start_ms = None,
                _ => {}
            }
        }
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
            JournalEvent::ProgrammeStart { name, level, .. } => {
                self.ensure_running();
                if let Some((previous, level)) = self.playing.replace((name.clone(), *level)) {
                    self.timeline.cut_off.push(CutOff {
                        at_ms: at,
                        name: previous,
                        level,
                    });
                }
            }
            JournalEvent::ProgrammeEnd {
                name,
                frames_played,
                ..
            } => {
                self.ensure_running();
                // An end names the programme its start announced; only the start has the level.
                let level = match self.playing.take() {
                    Some((started, level)) if started == *name => level,
                    _ => ProgrammeLevel::Normal,
                };
                self.timeline.plays.push(Play {
                    at_ms: at,
                    name: name.clone(),
                    level,
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
            // Clusters have their own timelines (per-cluster rows); the station's is unchanged.
            JournalEvent::Cluster { cluster, state, .. } => {
                self.ensure_running();
                self.timeline.clusters.entry(cluster.clone()).or_default();
                let since = self.cluster_down_since.entry(cluster.clone()).or_default();
                match (state, *since) {
                    (ClusterState::Down, None) => *since = Some(at),
                    (ClusterState::Up, Some(start)) => {
                        *since = None;
                        push_cluster_down(&mut self.timeline, cluster, start, at);
                    }
                    _ => {}
                }
            }
            JournalEvent::Amplifier { output, on, .. } => {
                self.ensure_running();
                match (*on, self.amplifier_on_since.get(output)) {
                    (true, None) => {
                        self.amplifier_on_since.insert(output.clone(), at);
                    }
                    (false, Some(&since)) => {
                        self.amplifier_on_since.remove(output);
                        push_amplifier_on(&mut self.timeline, since, at);
                    }
                    _ => {}
                }
            }
        }
        self.last_record_ms = at;
    }

    /// Closes the timeline at now. After the last record, its state is taken to continue for
    /// the grace (its next records may be on their way), cut short where the server saw the
    /// station's session end ([`session_ends`]: a session that may still have been open at
    /// the last record counts from then at the earliest); from there to now the station is
    /// *unreported*. `links` in stored order, `runs` in start order.
    pub fn finish(mut self, links: &[LinkEvent], runs: &[ServerRun]) -> Timeline {
        if self.cursor.is_none() {
            return self.timeline;
        }
        let last = self.last_record_ms;
        let server_down = session_ends(links, runs)
            .iter()
            .filter(|end| end.latest_ms > last)
            .map(|end| end.earliest_ms.max(last))
            .min();
        let mut assumed_until = last.saturating_add(self.grace_ms).min(self.now_ms);
        if let Some(down) = server_down {
            assumed_until = assumed_until.min(down);
        }
        let (condition, on_air) = (self.condition(), self.on_air());
        self.emit(assumed_until, condition, on_air);
        self.emit(self.now_ms, Condition::Unreported, false);
        // Past the assumed state the station is not available anyway.
        self.close_cluster_downs(assumed_until);
        self.close_amplifiers(assumed_until);
        let mut timeline = self.timeline;
        timeline.outages = outages(&timeline.spans);
        timeline
    }
}

/// Records that `cluster`'s receiver was down `[start, end)`.
fn push_cluster_down(timeline: &mut Timeline, cluster: &str, start: i64, end: i64) {
    if end > start {
        timeline
            .clusters
            .entry(cluster.to_owned())
            .or_default()
            .push(Outage {
                start_ms: start,
                end_ms: end,
            });
    }
}

/// Records that an amplifier was on `[start, end)`.
fn push_amplifier_on(timeline: &mut Timeline, start: i64, end: i64) {
    if end > start {
        timeline.amplifier_on.push(Outage {
            start_ms: start,
            end_ms: end,
        });
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
mod tests;
