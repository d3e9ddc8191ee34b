//! An amplifier powered through commands: a USB relay's tool, a smart plug's HTTP call.
//!
//! Each is run as an argv, without a shell (no quoting to get wrong, nothing interpreted), with
//! standard input and output closed and its standard error in the agent's log, and killed past
//! its timeout. It runs on the amplifier thread, never on the playout clock.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{AmplifierSwitch, SwitchError};

/// How often a running command is checked for its end.
const WAIT_STEP: Duration = Duration::from_millis(10);

/// An on/off command pair.
#[derive(Debug)]
pub struct CommandSwitch {
    on: Vec<String>,
    off: Vec<String>,
    timeout: Duration,
}

impl CommandSwitch {
    pub fn new(on: Vec<String>, off: Vec<String>, timeout: Duration) -> Self {
        CommandSwitch { on, off, timeout }
    }
}

/// Runs `argv` to its end or `timeout`.
fn run(argv: &[String], timeout: Duration) -> Result<(), SwitchError> {
    let program = argv.first().cloned().unwrap_or_default();
    let error = |message: String| SwitchError::Command {
        program: program.clone(),
        message,
    };
    let mut child = Command::new(&program)
        .args(argv.iter().skip(1))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| error(format!("cannot start: {e}")))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(error(format!("failed: {status}"))),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error(format!(
                    "did not finish within {} s; killed",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(WAIT_STEP),
            Err(e) => return Err(error(format!("cannot wait for it: {e}"))),
        }
    }
}

impl AmplifierSwitch for CommandSwitch {
    fn set(&mut self, on: bool) -> Result<(), SwitchError> {
        run(if on { &self.on } else { &self.off }, self.timeout)
    }

    fn describe(&self) -> String {
        format!(
            "commands `{}` / `{}`",
            self.on.join(" "),
            self.off.join(" ")
        )
    }
}
