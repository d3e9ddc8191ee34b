//! What a command's `--help` text states, for the tests that check it against the code.

/// `(flag, stated default)` for every option of a clap `--help` text that states one
/// (`[default: …]`), in the order they are listed.
pub fn stated_defaults(help: &str) -> Vec<(String, String)> {
    // An option's entry starts on a line whose first word is a flag; its help follows, on the
    // same line or the next ones.
    let mut entries: Vec<String> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') {
            entries.push(trimmed.to_owned());
        } else if let Some(entry) = entries.last_mut() {
            entry.push(' ');
            entry.push_str(trimmed);
        }
    }
    entries
        .iter()
        .filter_map(|entry| {
            let flag = entry
                .split([' ', ','])
                .find(|w| w.starts_with("--"))?
                .to_owned();
            let (_, stated) = entry.split_once("[default: ")?;
            let (stated, _) = stated.split_once(']')?;
            Some((flag, stated.to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_default_stated_on_a_continuation_line_belongs_to_its_flag() {
        let help = "Options:\n  -d, --delay <MS>\n          Playout delay\n          [default: 300]\n      --log <LOG>  Filter [default: info]\n  -h, --help  Print help\n";
        assert_eq!(
            stated_defaults(help),
            [
                ("--delay".to_owned(), "300".to_owned()),
                ("--log".to_owned(), "info".to_owned())
            ]
        );
    }
}
