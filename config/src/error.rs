//! The one error type of this crate, shaped like a compiler diagnostic.

use std::fmt;

/// A configuration problem, located as precisely as its source allows.
///
/// Displays as `server.toml:12:5: key `bitrate`: must be between 6000 and 510000 (got 900)`.
/// Parts that are unknown are left out, so an environment variable reads
/// `environment: key `RADIO_SERVER_BITRATE`: ...` and an unreadable file `server.toml: ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// File name, `environment`, `command line`, or the name of the checked configuration.
    pub source_name: String,
    /// 1-based line in the file, when the problem has one.
    pub line: Option<usize>,
    /// 1-based column (in characters, not bytes: station names are Vietnamese).
    pub column: Option<usize>,
    /// The offending key: a TOML path such as `station[3].speakers`, an environment variable
    /// name, or a `--flag`.
    pub key: Option<String>,
    /// What is wrong, in words an operator can act on.
    pub message: String,
}

impl ConfigError {
    /// An error with nothing but a source and a message; chain the `at_*`/`with_key` setters.
    pub fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            source_name: source_name.into(),
            line: None,
            column: None,
            key: None,
            message: message.into(),
        }
    }

    /// Names the offending key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Places the error at a 1-based line and column.
    #[must_use]
    pub fn at(mut self, line: usize, column: usize) -> Self {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    fn render(&self) -> String {
        let mut out = self.source_name.clone();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
            if let Some(column) = self.column {
                out.push_str(&format!(":{column}"));
            }
        }
        out.push_str(": ");
        if let Some(key) = &self.key {
            out.push_str(&format!("key `{key}`: "));
        }
        out.push_str(&self.message);
        out
    }
}

/// A failed validation rule, before we know where the offending value came from.
///
/// Validation runs on merged values, so the rule only knows field names; the merge layer turns
/// this into a [`ConfigError`] pointing at the file line, environment variable or flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    /// Fields involved, most likely culprit first. Cross-field rules list several so the
    /// error can blame whichever one the operator actually set.
    /// Dotted paths for keys inside tables (`live.no_packet_timeout_ms`).
    pub fields: Vec<String>,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            fields: vec![field.into()],
            message: message.into(),
        }
    }

    pub fn between(fields: &[&'static str], message: impl Into<String>) -> Self {
        Invalid {
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            message: message.into(),
        }
    }

    /// For `validate()` on a value built in code: there is no file, only field names.
    pub fn unlocated(self, source_name: &str) -> ConfigError {
        let key = self.fields.first().cloned().unwrap_or_default();
        ConfigError::new(source_name, self.message).with_key(key)
    }
}

/// Checks `low <= value <= high`, with the message format every range rule shares.
pub(crate) fn in_range<T>(field: &str, value: T, low: T, high: T) -> Result<(), Invalid>
where
    T: PartialOrd + fmt::Display,
{
    if value < low || value > high {
        return Err(Invalid::new(
            field,
            format!("must be between {low} and {high} (got {value})"),
        ));
    }
    Ok(())
}

/// Checks that a free-text field is not blank.
pub(crate) fn not_blank(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_with_every_part() {
        let err = ConfigError::new("server.toml", "must be between 6000 and 510000 (got 900)")
            .with_key("bitrate")
            .at(12, 5);
        assert_eq!(
            err.to_string(),
            "server.toml:12:5: key `bitrate`: must be between 6000 and 510000 (got 900)"
        );
    }

    #[test]
    fn display_omits_unknown_parts() {
        let err = ConfigError::new("server.toml", "cannot read: not found");
        assert_eq!(err.to_string(), "server.toml: cannot read: not found");

        let err = ConfigError::new("environment", "bad").with_key("RADIO_SERVER_BITRATE");
        assert_eq!(
            err.to_string(),
            "environment: key `RADIO_SERVER_BITRATE`: bad"
        );

        let mut err = ConfigError::new("a.toml", "m");
        err.line = Some(3);
        assert_eq!(err.to_string(), "a.toml:3: m");
    }

    #[test]
    fn range_message() {
        let err = in_range("bitrate", 900u32, 6000, 510_000).expect_err("900 is out of range");
        assert_eq!(err.fields, vec!["bitrate"]);
        assert_eq!(err.message, "must be between 6000 and 510000 (got 900)");
        assert!(in_range("bitrate", 6000u32, 6000, 510_000).is_ok());
        assert!(in_range("bitrate", 510_000u32, 6000, 510_000).is_ok());
    }
}
