//! `[health]` of the server: the thresholds at which a station's box health (the agents'
//! `BoxHealth` reports) raises a warning — too hot, disk nearly full, an output failing.

use serde::{Deserialize, Serialize};

use crate::error::{in_range, Invalid};

/// Default of [`HealthSettings::max_temperature_c`]: Raspberry Pi class boards throttle at
/// 80–85 °C; 75 leaves time to open the cabinet.
pub const DEFAULT_MAX_TEMPERATURE_C: u32 = 75;
/// Default of [`HealthSettings::min_free_disk_percent`].
pub const DEFAULT_MIN_FREE_DISK_PERCENT: u32 = 10;

/// The thresholds of `[health]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthSettings {
    /// A box hotter than this (its hottest thermal zone, °C) is too hot.
    pub max_temperature_c: u32,
    /// Less free space than this on the agent's state directory (percent) is a nearly full
    /// disk.
    pub min_free_disk_percent: u32,
    /// An output (sink) that reports failing, or a watched loudspeaker cluster that is down,
    /// raises a warning.
    pub warn_failed_outputs: bool,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            max_temperature_c: DEFAULT_MAX_TEMPERATURE_C,
            min_free_disk_percent: DEFAULT_MIN_FREE_DISK_PERCENT,
            warn_failed_outputs: true,
        }
    }
}

impl HealthSettings {
    pub(crate) fn check(&self) -> Result<(), Invalid> {
        in_range("health.max_temperature_c", self.max_temperature_c, 20, 150)?;
        in_range(
            "health.min_free_disk_percent",
            self.min_free_disk_percent,
            0,
            100,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bounds_name_the_key() {
        assert_eq!(HealthSettings::default().check(), Ok(()));
        let hot = HealthSettings {
            max_temperature_c: 500,
            ..HealthSettings::default()
        };
        let err = hot.check().expect_err("out of range");
        assert_eq!(err.fields, vec!["health.max_temperature_c".to_owned()]);
        let full = HealthSettings {
            min_free_disk_percent: 101,
            ..HealthSettings::default()
        };
        let err = full.check().expect_err("out of range");
        assert_eq!(err.fields, vec!["health.min_free_disk_percent".to_owned()]);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<HealthSettings>("max_temp = 70\n").expect_err("unknown key");
        assert!(err.to_string().contains("max_temp"), "{err}");
        let ok: HealthSettings = toml::from_str("max_temperature_c = 70\n").expect("valid");
        assert_eq!(ok.max_temperature_c, 70);
        assert_eq!(ok.min_free_disk_percent, 10);
    }
}
