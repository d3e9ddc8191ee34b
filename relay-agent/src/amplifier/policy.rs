//! When the amplifiers are on: the rules, sans-IO, driven by the wall clock (`now_ms`) because
//! the slots known in advance (the prefetch manifest's) are wall-clock times.
//!
//! - On at least `lead` before the first frame of anything known in advance (a slot of the
//!   prefetch manifest, known hours ahead, link or no link).
//! - On at once for what is learnt too late for the lead: frames already buffered (live, an
//!   emergency, a stream that starts now arrive one playout delay before they air), or a
//!   programme already on air.
//! - On at once for an emergency.
//! - Off only once nothing has been on air, buffered or due within the lead for `idle`: never in
//!   the middle of a programme, and a gap between two programmes shorter than `idle` keeps it on.
//! - At start the state of the amplifier is unknown: it is switched to what the rules want,
//!   off when nothing is due (so the journal's hours start from a known state).

/// How early a slot known in advance switches on, beyond `lead`: the policy is polled (every
/// [`super::POLL`]) and a command takes time to act, and neither may eat into the warm-up.
pub const SWITCH_AHEAD_MS: u64 = 1_000;

/// The lead and idle times, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub lead_ms: u64,
    pub idle_ms: u64,
}

/// A slot known in advance: it airs from `start_ms` until `end_ms` (wall clock, Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What the agent knows at `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    pub now_ms: u64,
    /// The output is playing a programme (or concealing a stalled one).
    pub on_air: bool,
    /// Frames are buffered: they air within the playout delay.
    pub incoming: bool,
    /// An emergency is announced or airing.
    pub emergency: bool,
    /// Slots known in advance.
    pub scheduled: &'a [Due],
}

/// Which rule switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The agent started and nothing is due: off, to start from a known state.
    Start,
    /// A slot known in advance is within the lead.
    Lead,
    /// Something airs, or is about to, that was not known in time for the lead.
    Late,
    /// An emergency.
    Emergency,
    /// Nothing on air or due for the idle time.
    Idle,
}

impl Reason {
    /// As journaled.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Start => "start",
            Reason::Lead => "lead",
            Reason::Late => "late",
            Reason::Emergency => "emergency",
            Reason::Idle => "idle",
        }
    }
}

/// A decision to switch the amplifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub on: bool,
    pub reason: Reason,
}

/// The amplifier rules (sans-IO).
#[derive(Debug, Clone)]
pub struct Policy {
    timing: Timing,
    /// What was last decided; `None` before the first observation.
    on: Option<bool>,
    /// Since when nothing has been on air, buffered or due (while on).
    idle_since: Option<u64>,
}

impl Policy {
    pub fn new(timing: Timing) -> Self {
        Policy {
            timing,
            on: None,
            idle_since: None,
        }
    }

    /// The state last decided; `None` before the first observation.
    pub fn is_on(&self) -> Option<bool> {
        self.on
    }

    /// Takes in what is known now; returns a switch when the amplifiers must change state.
    pub fn observe(&mut self, o: &Observation<'_>) -> Option<Switch> {
        let warm_up = self.timing.lead_ms.saturating_add(SWITCH_AHEAD_MS);
        let due = o
            .scheduled
            .iter()
            .any(|d| o.now_ms.saturating_add(warm_up) >= d.start_ms && o.now_ms < d.end_ms);
        let wanted = if o.emergency {
            Some(Reason::Emergency)
        } else if due {
            Some(Reason::Lead)
        } else if o.on_air || o.incoming {
            Some(Reason::Late)
        } else {
            None
        };
        match (wanted, self.on) {
            (Some(_), Some(true)) => {
                self.idle_since = None;
                None
            }
            (Some(reason), _) => {
                self.idle_since = None;
                self.on = Some(true);
                Some(Switch { on: true, reason })
            }
            (None, None) => {
                self.on = Some(false);
                Some(Switch {
                    on: false,
                    reason: Reason::Start,
                })
            }
            (None, Some(false)) => None,
            (None, Some(true)) => {
                // The idle time counts from the first moment seen idle, never from before it:
                // an amplifier is switched off late rather than early.
                let since = *self.idle_since.get_or_insert(o.now_ms);
                if o.now_ms.saturating_sub(since) >= self.timing.idle_ms {
                    self.on = Some(false);
                    self.idle_since = None;
                    Some(Switch {
                        on: false,
                        reason: Reason::Idle,
                    })
                } else {
                    None
                }
            }
        }
    }
}
