//! Amplifier power: the station's amplifiers switched on for airtime and off after (they hum,
//! draw power and wear out when left on), from `[amplifier]` in the agent's config.
//!
//! - `policy.rs` — when they are on: lead, idle, emergencies (sans-IO, on a virtual clock in
//!   `tests.rs`).
//! - `gpio.rs`, `command.rs` — the two kinds of switch behind [`AmplifierSwitch`].
//! - here — [`Amplifiers`], which drives every switch to what the policy wants, retries the
//!   ones that failed and journals each switch; and the thread that feeds it what the playout
//!   and the prefetch cache know.

pub mod command;
pub mod gpio;
pub mod policy;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use radio_config::{AmplifierConfig, SwitchSpec};
use radio_proto::{JournalEvent, OutputState};

use crate::journal::{unix_ms, JournalSender};
use crate::playout::{Playout, SLOT};
use crate::prefetch_cache::PrefetchCache;
use crate::supervise::{spawn_thread, SupervisedThread};

pub use command::CommandSwitch;
pub use gpio::GpioSwitch;
pub use policy::{Due, Observation, Policy, Reason, Switch, Timing};

/// How often the policy is asked: well within [`policy::SWITCH_AHEAD_MS`].
pub const POLL: Duration = Duration::from_millis(100);

/// How long after a failed switch it is tried again.
pub const RETRY: Duration = Duration::from_secs(5);

/// Why a switch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    #[error("GPIO {chip} line {line}: {message}")]
    Gpio {
        chip: String,
        line: u32,
        message: String,
    },
    #[error("amplifier command `{program}` {message}")]
    Command { program: String, message: String },
}

/// Something that powers an amplifier on or off: a GPIO line, a command pair, or a test's
/// recording double. It may block (a command runs to its end); it is only ever called from
/// the amplifier thread.
pub trait AmplifierSwitch: Send + std::fmt::Debug {
    fn set(&mut self, on: bool) -> Result<(), SwitchError>;
    /// For logs: `GPIO /dev/gpiochip0 line 17`.
    fn describe(&self) -> String;
}

/// One amplifier and what is known of it.
#[derive(Debug)]
struct Output {
    name: String,
    switch: Box<dyn AmplifierSwitch>,
    /// What it was last switched to; `None` until a switch succeeded.
    actual: Option<bool>,
    /// A failed switch is not tried again before this.
    retry_at_ms: u64,
}

/// Every amplifier of the station, driven by one policy (every output plays the same
/// timeline).
#[derive(Debug)]
pub struct Amplifiers {
    policy: Policy,
    reason: Reason,
    outputs: Vec<Output>,
}

impl Amplifiers {
    pub fn new(timing: Timing, switches: Vec<(String, Box<dyn AmplifierSwitch>)>) -> Self {
        Amplifiers {
            policy: Policy::new(timing),
            reason: Reason::Start,
            outputs: switches
                .into_iter()
                .map(|(name, switch)| Output {
                    name,
                    switch,
                    actual: None,
                    retry_at_ms: 0,
                })
                .collect(),
        }
    }

    /// The amplifiers `config` describes, with their real switches.
    pub fn from_config(config: &AmplifierConfig) -> Result<Self, radio_config::ConfigError> {
        let timeout = Duration::from_secs(config.command_timeout_secs);
        let switches = config
            .switches()?
            .into_iter()
            .map(|(name, spec)| {
                let switch: Box<dyn AmplifierSwitch> = match spec {
                    SwitchSpec::Gpio {
                        chip,
                        line,
                        active_low,
                    } => Box::new(GpioSwitch::new(chip, line, active_low)),
                    SwitchSpec::Command { on, off } => {
                        Box::new(CommandSwitch::new(on, off, timeout))
                    }
                };
                (name, switch)
            })
            .collect();
        let timing = Timing {
            lead_ms: config.lead_secs.saturating_mul(1000),
            idle_ms: config.idle_secs.saturating_mul(1000),
        };
        Ok(Self::new(timing, switches))
    }

    /// Takes in what is known now and drives every switch not yet in the wanted state (a
    /// failed one again once [`RETRY`] has passed). Returns the switches made, to journal.
    pub fn step(&mut self, o: &Observation<'_>) -> Vec<JournalEvent> {
        if let Some(switch) = self.policy.observe(o) {
            self.reason = switch.reason;
            // A new decision is acted on at once, whatever the last failure.
            for output in &mut self.outputs {
                output.retry_at_ms = 0;
            }
        }
        let Some(wanted) = self.policy.is_on() else {
            return Vec::new();
        };
        let mut done = Vec::new();
        for output in &mut self.outputs {
            if output.actual == Some(wanted) || o.now_ms < output.retry_at_ms {
                continue;
            }
            let state = if wanted { "on" } else { "off" };
            match output.switch.set(wanted) {
                Ok(()) => {
                    output.actual = Some(wanted);
                    tracing::info!(
                        "amplifier {} switched {state} ({})",
                        output.name,
                        self.reason.as_str()
                    );
                    done.push(JournalEvent::Amplifier {
                        output: output.name.clone(),
                        on: wanted,
                        reason: self.reason.as_str().to_owned(),
                    });
                }
                Err(e) => {
                    output.retry_at_ms = o.now_ms.saturating_add(RETRY.as_millis() as u64);
                    tracing::warn!(
                        "amplifier {} not switched {state}: {e}; trying again in {} s",
                        output.name,
                        RETRY.as_secs()
                    );
                }
            }
        }
        done
    }
}

/// What the amplifier thread reads: the playout and the prefetch manifest.
#[derive(Debug, Clone)]
pub struct AmplifierInputs {
    pub playout: Arc<Mutex<Playout>>,
    /// The output state, as `OutputState as u8` (the playout thread's report).
    pub output: Arc<AtomicU8>,
    pub prefetch: Option<Arc<Mutex<PrefetchCache>>>,
    /// A slot's audio is heard up to one playout delay after its end.
    pub playout_delay: Duration,
}

impl AmplifierInputs {
    /// The slots of the prefetch manifest, ending when their recording does (or the slot, if
    /// sooner), plus the playout delay.
    fn scheduled(&self, into: &mut Vec<Due>) {
        into.clear();
        let Some(cache) = &self.prefetch else {
            return;
        };
        let Ok(cache) = cache.lock() else {
            return;
        };
        let delay = self.playout_delay.as_millis() as u64;
        let slot = SLOT.as_millis() as u64;
        into.extend(cache.manifest().items.iter().map(|item| {
            let recording = item
                .start_unix_ms
                .saturating_add(item.frame_count.saturating_mul(slot));
            Due {
                start_ms: item.start_unix_ms,
                end_ms: recording.min(item.end_unix_ms).saturating_add(delay),
            }
        }));
    }
}

/// Runs `amplifiers` every [`POLL`] until `stop` is set, journaling each switch.
pub fn spawn_amplifier_thread(
    mut amplifiers: Amplifiers,
    inputs: AmplifierInputs,
    journal: Option<JournalSender>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SupervisedThread<()>> {
    for output in &amplifiers.outputs {
        tracing::info!("amplifier {}: {}", output.name, output.switch.describe());
    }
    spawn_thread("amplifier", "amplifier thread", move || {
        let mut scheduled = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            inputs.scheduled(&mut scheduled);
            let (incoming, emergency) = match inputs.playout.lock() {
                Ok(p) => (p.frames_buffered(), p.emergency_due()),
                // The playout thread ends the agent on a poisoned playout; until then, on.
                Err(_) => (true, false),
            };
            let output = inputs.output.load(Ordering::Relaxed);
            let observation = Observation {
                now_ms: unix_ms(),
                on_air: output != OutputState::Silent as u8,
                incoming,
                emergency,
                scheduled: &scheduled,
            };
            for event in amplifiers.step(&observation) {
                if let Some(journal) = &journal {
                    journal.record(event);
                }
            }
            std::thread::sleep(POLL);
        }
    })
}
