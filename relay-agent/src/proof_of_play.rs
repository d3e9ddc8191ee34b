//! Proof of play and output state for the journal, from what the playout clock does in each
//! 20 ms slot (sans-IO: slots in, journal events out).
//!
//! - A programme *run* opens at the first slot that plays one of its frames and closes when
//!   another programme's frame plays, when the output goes idle, or when the agent stops; its
//!   `ProgrammeEnd` says how many frames were heard and how many were concealed.
//! - The output is `OnAir` while frames play, `Silent` while nothing is on air, and
//!   `Underrun` once a programme's audio has been missing for [`UNDERRUN_SLOTS`] slots in a
//!   row (a single lost frame is concealment, not an outage).

use radio_proto::{JournalEvent, OutputState, ProgrammeLevel};

/// Missing slots in a row (0.5 s) before the output counts as in underrun.
pub const UNDERRUN_SLOTS: u32 = 25;

/// What happened in one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind<'a> {
    /// A frame played; the programme it belongs to (id, name, level), when known.
    Played(Option<(u64, &'a str, ProgrammeLevel)>),
    /// The slot's frame was missing (lost, or the stream stalled): concealed or silent.
    Missing,
    /// Nothing on air.
    Idle,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Run {
    programme_id: u64,
    name: String,
    played: u64,
    lost: u64,
}

/// The tracker; feed it every slot.
#[derive(Debug, Clone)]
pub struct ProofOfPlay {
    run: Option<Run>,
    output: OutputState,
    missing: u32,
}

impl Default for ProofOfPlay {
    fn default() -> Self {
        ProofOfPlay {
            run: None,
            output: OutputState::Silent,
            missing: 0,
        }
    }
}

impl ProofOfPlay {
    /// The output's state now.
    pub fn output(&self) -> OutputState {
        self.output
    }

    /// Accounts one slot; journal events go to `out`.
    pub fn slot(&mut self, slot: SlotKind<'_>, out: &mut Vec<JournalEvent>) {
        match slot {
            SlotKind::Played(programme) => {
                self.missing = 0;
                if let Some((id, name, level)) = programme {
                    if self.run.as_ref().is_none_or(|r| r.programme_id != id) {
                        self.close(out);
                        self.run = Some(Run {
                            programme_id: id,
                            name: name.to_owned(),
                            played: 0,
                            lost: 0,
                        });
                        out.push(JournalEvent::ProgrammeStart {
                            programme_id: id,
                            name: name.to_owned(),
                            level,
                        });
                    }
                }
                if let Some(run) = &mut self.run {
                    run.played += 1;
                }
                self.set_output(OutputState::OnAir, out);
            }
            SlotKind::Missing => {
                if let Some(run) = &mut self.run {
                    run.lost += 1;
                }
                self.missing = self.missing.saturating_add(1);
                if self.missing >= UNDERRUN_SLOTS {
                    self.set_output(OutputState::Underrun, out);
                }
            }
            SlotKind::Idle => {
                self.missing = 0;
                self.close(out);
                self.set_output(OutputState::Silent, out);
            }
        }
    }

    /// Closes the programme run, if any (the agent is stopping).
    pub fn finish(&mut self, out: &mut Vec<JournalEvent>) {
        self.close(out);
    }

    fn close(&mut self, out: &mut Vec<JournalEvent>) {
        if let Some(run) = self.run.take() {
            out.push(JournalEvent::ProgrammeEnd {
                programme_id: run.programme_id,
                name: run.name,
                frames_played: run.played,
                frames_lost: run.lost,
            });
        }
    }

    fn set_output(&mut self, state: OutputState, out: &mut Vec<JournalEvent>) {
        if self.output != state {
            self.output = state;
            out.push(JournalEvent::Output { state });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(p: &mut ProofOfPlay, slots: &[SlotKind<'_>]) -> Vec<JournalEvent> {
        let mut out = Vec::new();
        for s in slots {
            p.slot(*s, &mut out);
        }
        out
    }

    #[test]
    fn a_programme_run_is_opened_counted_and_closed() {
        let mut p = ProofOfPlay::default();
        let a = SlotKind::Played(Some((1, "Bản tin sáng", ProgrammeLevel::Normal)));
        let b = SlotKind::Played(Some((2, "Khẩn cấp", ProgrammeLevel::Emergency)));
        let mut slots = vec![a, a, SlotKind::Missing, a, b, b, a];
        slots.push(SlotKind::Idle);
        let events = feed(&mut p, &slots);
        assert_eq!(
            events,
            vec![
                JournalEvent::ProgrammeStart {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    level: ProgrammeLevel::Normal,
                },
                JournalEvent::Output {
                    state: OutputState::OnAir
                },
                JournalEvent::ProgrammeEnd {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    frames_played: 3,
                    frames_lost: 1
                },
                JournalEvent::ProgrammeStart {
                    programme_id: 2,
                    name: "Khẩn cấp".into(),
                    level: ProgrammeLevel::Emergency,
                },
                JournalEvent::ProgrammeEnd {
                    programme_id: 2,
                    name: "Khẩn cấp".into(),
                    frames_played: 2,
                    frames_lost: 0
                },
                // The interrupted programme resumes: a new run of it.
                JournalEvent::ProgrammeStart {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    level: ProgrammeLevel::Normal,
                },
                JournalEvent::ProgrammeEnd {
                    programme_id: 1,
                    name: "Bản tin sáng".into(),
                    frames_played: 1,
                    frames_lost: 0
                },
                JournalEvent::Output {
                    state: OutputState::Silent
                },
            ]
        );
    }

    #[test]
    fn underrun_needs_half_a_second_of_missing_audio() {
        let mut p = ProofOfPlay::default();
        let a = SlotKind::Played(Some((1, "x", ProgrammeLevel::Normal)));
        let mut slots = vec![a];
        slots.extend(std::iter::repeat_n(
            SlotKind::Missing,
            UNDERRUN_SLOTS as usize - 1,
        ));
        slots.push(a);
        let events = feed(&mut p, &slots);
        assert!(
            !events.contains(&JournalEvent::Output {
                state: OutputState::Underrun
            }),
            "{events:?}"
        );
        let events = feed(&mut p, &vec![SlotKind::Missing; UNDERRUN_SLOTS as usize]);
        assert_eq!(
            events,
            vec![JournalEvent::Output {
                state: OutputState::Underrun
            }]
        );
        assert_eq!(p.output(), OutputState::Underrun);
        let events = feed(&mut p, &[a]);
        assert_eq!(
            events,
            vec![JournalEvent::Output {
                state: OutputState::OnAir
            }]
        );
        let mut out = Vec::new();
        p.finish(&mut out);
        assert!(matches!(
            out[..],
            [JournalEvent::ProgrammeEnd {
                frames_played: 3,
                frames_lost: 49,
                ..
            }]
        ));
    }
}
