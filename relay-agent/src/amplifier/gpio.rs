//! An amplifier powered through a GPIO output line (a relay board on a Raspberry Pi's header),
//! through the Linux GPIO character device (`/dev/gpiochipN`).
//!
//! The line is requested on the first switch, not at start, and again after a failure: a chip
//! that is missing or not yet permitted (the service's user not in the `gpio` group) is logged
//! and retried like a failed command, and the station keeps playing.

use std::path::PathBuf;

use gpiocdev::line::Value;
use gpiocdev::Request;

use super::{AmplifierSwitch, SwitchError};

/// The consumer name the kernel shows for the line (`gpioinfo`).
const CONSUMER: &str = "relay-agent amplifier";

/// One GPIO output line.
#[derive(Debug)]
pub struct GpioSwitch {
    chip: PathBuf,
    line: u32,
    active_low: bool,
    request: Option<Request>,
}

impl GpioSwitch {
    pub fn new(chip: PathBuf, line: u32, active_low: bool) -> Self {
        GpioSwitch {
            chip,
            line,
            active_low,
            request: None,
        }
    }

    fn error(&self, message: impl std::fmt::Display) -> SwitchError {
        SwitchError::Gpio {
            chip: self.chip.display().to_string(),
            line: self.line,
            message: message.to_string(),
        }
    }
}

impl AmplifierSwitch for GpioSwitch {
    fn set(&mut self, on: bool) -> Result<(), SwitchError> {
        let value = if on { Value::Active } else { Value::Inactive };
        if let Some(request) = &self.request {
            return match request.set_lone_value(value) {
                Ok(()) => Ok(()),
                Err(e) => {
                    // Requested again on the retry: the chip may have gone and come back.
                    self.request = None;
                    Err(self.error(e))
                }
            };
        }
        let mut builder = Request::builder();
        builder
            .on_chip(&self.chip)
            .with_consumer(CONSUMER)
            .with_line(self.line);
        if self.active_low {
            builder.as_active_low();
        }
        // Requested with the wanted value: the line never shows the other one first.
        let request = builder
            .as_output(value)
            .request()
            .map_err(|e| self.error(e))?;
        self.request = Some(request);
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "GPIO {} line {}{}",
            self.chip.display(),
            self.line,
            if self.active_low { " (active low)" } else { "" }
        )
    }
}
