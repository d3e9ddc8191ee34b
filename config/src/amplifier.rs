//! `[amplifier]` in the agent's config: how the station's amplifiers are powered, and when.
//!
//! One switch for the whole box is written in `[amplifier]` itself; one per output (a cluster's
//! amplifier behind an RTP receiver, the FM transmitter's) as `[[amplifier.outputs]]`, each named.
//! A switch is either a GPIO line (Linux GPIO character device) or an on/off command pair (a USB
//! relay, a smart plug's HTTP call), run as argv without a shell.
//!
//! ```toml
//! [amplifier]
//! lead_secs = 5          # on this long before the first frame of anything known in advance
//! idle_secs = 60         # off after this long with nothing on air and nothing due
//! chip = "/dev/gpiochip0"
//! line = 17
//! active_low = false
//!
//! # or, one switch per output instead of the box's:
//! # [[amplifier.outputs]]
//! # name = "c01"
//! # on_command = ["usbrelay", "HURTM_1=1"]
//! # off_command = ["usbrelay", "HURTM_1=0"]
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{in_range, ConfigError, Invalid};

/// Default of [`AmplifierConfig::lead_secs`].
pub const DEFAULT_AMPLIFIER_LEAD_SECS: u64 = 5;
/// Default of [`AmplifierConfig::idle_secs`].
pub const DEFAULT_AMPLIFIER_IDLE_SECS: u64 = 60;
/// Default of [`AmplifierConfig::command_timeout_secs`].
pub const DEFAULT_AMPLIFIER_COMMAND_TIMEOUT_SECS: u64 = 10;
/// Name of the whole box's switch, in the journal and on the dashboard.
pub const BOX_AMPLIFIER: &str = "box";
/// Longest output name (the journal carries at most this).
pub const MAX_AMPLIFIER_NAME: usize = 32;

/// `[amplifier]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmplifierConfig {
    /// Warm-up: seconds the amplifier is on before the first frame of anything that will air,
    /// when that is known in advance (the prefetch manifest's slots).
    pub lead_secs: u64,
    /// Seconds with nothing on air and nothing due before the amplifier is switched off.
    pub idle_secs: u64,
    /// Seconds an on/off command may run before it is killed and counted as failed.
    pub command_timeout_secs: u64,
    // The whole box's switch (when `outputs` is empty); serde's `flatten` would lose
    // `deny_unknown_fields` and the key spans of errors, so the keys are repeated here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub active_low: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_command: Option<Vec<String>>,
    /// One switch per output, instead of the box's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<AmplifierOutput>,
}

impl Default for AmplifierConfig {
    fn default() -> Self {
        AmplifierConfig {
            lead_secs: DEFAULT_AMPLIFIER_LEAD_SECS,
            idle_secs: DEFAULT_AMPLIFIER_IDLE_SECS,
            command_timeout_secs: DEFAULT_AMPLIFIER_COMMAND_TIMEOUT_SECS,
            chip: None,
            line: None,
            active_low: false,
            on_command: None,
            off_command: None,
            outputs: Vec::new(),
        }
    }
}

/// `[[amplifier.outputs]]`: one output's amplifier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmplifierOutput {
    /// `c01`, `fm`: how the journal, the reports and the dashboard name it.
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chip: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub active_low: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub off_command: Option<Vec<String>>,
}

/// The keys that say how one amplifier is switched, borrowed from either table.
#[derive(Debug, Default, PartialEq, Eq)]
struct SwitchFields<'a> {
    chip: Option<&'a PathBuf>,
    line: Option<u32>,
    active_low: bool,
    on_command: Option<&'a Vec<String>>,
    off_command: Option<&'a Vec<String>>,
}

/// How one amplifier is switched, once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchSpec {
    /// A GPIO output line: active powers the amplifier.
    Gpio {
        chip: PathBuf,
        line: u32,
        active_low: bool,
    },
    /// Programs run (argv, no shell) to switch it on and off.
    Command { on: Vec<String>, off: Vec<String> },
}

/// The accepted switch forms, quoted in every switch error.
const SWITCH_FORMS: &str = "an amplifier switch is either a GPIO line (`chip = \
     \"/dev/gpiochip0\"`, `line = 17`, optional `active_low = true`) or a command pair \
     (`on_command = [\"prog\", \"arg\"]`, `off_command = [...]`)";

impl SwitchFields<'_> {
    /// The switch these keys describe; errors name the key under `prefix` (`amplifier.`).
    fn spec(&self, prefix: &str) -> Result<SwitchSpec, Invalid> {
        let key = |k: &str| format!("{prefix}{k}");
        let gpio = self.chip.is_some() || self.line.is_some() || self.active_low;
        let command = self.on_command.is_some() || self.off_command.is_some();
        match (gpio, command) {
            (true, true) => Err(Invalid::new(
                key("chip"),
                format!("give a GPIO line or commands, not both; {SWITCH_FORMS}"),
            )),
            (false, false) => Err(Invalid::new(
                key("chip"),
                format!("no switch given; {SWITCH_FORMS}"),
            )),
            (true, false) => {
                let chip = self
                    .chip
                    .cloned()
                    .filter(|c| !c.as_os_str().is_empty())
                    .ok_or_else(|| {
                        Invalid::new(
                            key("chip"),
                            format!("the GPIO chip is missing; {SWITCH_FORMS}"),
                        )
                    })?;
                let line = self.line.ok_or_else(|| {
                    Invalid::new(
                        key("line"),
                        format!("the GPIO line is missing; {SWITCH_FORMS}"),
                    )
                })?;
                Ok(SwitchSpec::Gpio {
                    chip,
                    line,
                    active_low: self.active_low,
                })
            }
            (false, true) => {
                let argv = |name: &str, value: Option<&Vec<String>>| match value {
                    Some(argv) if argv.first().is_some_and(|p| !p.trim().is_empty()) => {
                        Ok(argv.clone())
                    }
                    Some(_) => Err(Invalid::new(
                        key(name),
                        format!("the program (first element) is missing; {SWITCH_FORMS}"),
                    )),
                    None => Err(Invalid::new(
                        key(name),
                        format!("both commands are needed; {SWITCH_FORMS}"),
                    )),
                };
                Ok(SwitchSpec::Command {
                    on: argv("on_command", self.on_command)?,
                    off: argv("off_command", self.off_command)?,
                })
            }
        }
    }

    fn is_empty(&self) -> bool {
        *self == SwitchFields::default()
    }
}

impl AmplifierConfig {
    fn own_switch(&self) -> SwitchFields<'_> {
        SwitchFields {
            chip: self.chip.as_ref(),
            line: self.line,
            active_low: self.active_low,
            on_command: self.on_command.as_ref(),
            off_command: self.off_command.as_ref(),
        }
    }

    /// The amplifiers to switch, by name: the box's, or one per output. Errors name the key.
    pub fn switches(&self) -> Result<Vec<(String, SwitchSpec)>, ConfigError> {
        self.checked_switches()
            .map_err(|i| i.unlocated("relay-agent config"))
    }

    fn checked_switches(&self) -> Result<Vec<(String, SwitchSpec)>, Invalid> {
        if self.outputs.is_empty() {
            return Ok(vec![(
                BOX_AMPLIFIER.to_owned(),
                self.own_switch().spec("amplifier.")?,
            )]);
        }
        if !self.own_switch().is_empty() {
            return Err(Invalid::new(
                "amplifier.outputs",
                "give the box's switch in [amplifier] or one per output in \
                 [[amplifier.outputs]], not both",
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (i, output) in self.outputs.iter().enumerate() {
            let prefix = format!("amplifier.outputs[{i}].");
            let valid = !output.name.is_empty()
                && output.name.len() <= MAX_AMPLIFIER_NAME
                && output
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(Invalid::new(
                    format!("{prefix}name"),
                    format!(
                        "an output name is 1 to {MAX_AMPLIFIER_NAME} lowercase letters, digits \
                         or `-` (got `{}`)",
                        output.name
                    ),
                ));
            }
            if !names.insert(output.name.as_str()) {
                return Err(Invalid::new(
                    format!("{prefix}name"),
                    format!("output `{}` is named twice", output.name),
                ));
            }
            let fields = SwitchFields {
                chip: output.chip.as_ref(),
                line: output.line,
                active_low: output.active_low,
                on_command: output.on_command.as_ref(),
                off_command: output.off_command.as_ref(),
            };
            out.push((output.name.clone(), fields.spec(&prefix)?));
        }
        Ok(out)
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        in_range("amplifier.lead_secs", self.lead_secs, 0, 600)?;
        in_range("amplifier.idle_secs", self.idle_secs, 1, 86_400)?;
        in_range(
            "amplifier.command_timeout_secs",
            self.command_timeout_secs,
            1,
            600,
        )?;
        self.checked_switches().map(|_| ())
    }
}

#[cfg(test)]
mod tests;
