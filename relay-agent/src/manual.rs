//! Man pages and shell completions generated from a binary's own command line (clap), so that
//! what `man radio-server-enroll` says is what `radio-server enroll --help` says. The packages
//! (`make deb`) ship what [`write`] produces; nothing is written by hand that could go stale.

use std::path::Path;

/// The shells the packages carry completions for, and where Debian looks for each.
const SHELLS: [(clap_complete::Shell, &str); 3] = [
    (clap_complete::Shell::Bash, "bash-completion/completions"),
    (clap_complete::Shell::Zsh, "zsh/vendor-completions"),
    (clap_complete::Shell::Fish, "fish/vendor_completions.d"),
];

/// Writes `out/man/man1/NAME.1` and one page per subcommand (`NAME-SUB.1`, `NAME-SUB-SUBSUB.1`),
/// and the completions under `out/completions/` in the layout of `/usr/share`.
pub fn write(cmd: clap::Command, out: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut cmd = cmd;
    cmd.build();
    let man_dir = out.join("man/man1");
    std::fs::create_dir_all(&man_dir)?;
    let mut written = Vec::new();
    write_pages(&cmd, &man_dir, &mut written)?;
    let name = cmd.get_name().to_owned();
    for (shell, dir) in SHELLS {
        let dir = out.join("completions").join(dir);
        std::fs::create_dir_all(&dir)?;
        let mut path = clap_complete::generate_to(shell, &mut cmd, &name, &dir)?;
        if shell == clap_complete::Shell::Bash {
            // bash-completion loads a command's file by the command's name, no suffix.
            let named = dir.join(&name);
            std::fs::rename(&path, &named)?;
            path = named;
        }
        written.push(path);
    }
    Ok(written)
}

fn write_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    if cmd.is_hide_set() {
        return Ok(());
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = dir.join(format!(
        "{}.1",
        cmd.get_display_name().unwrap_or(cmd.get_name())
    ));
    std::fs::write(&path, page)?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, dir, written)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_visible_subcommand_gets_a_page_and_every_shell_a_completion() {
        let cmd = clap::Command::new("radio-test")
            .about("A test")
            .subcommand(
                clap::Command::new("enroll")
                    .about("Enrol")
                    .arg(clap::arg!(--bundle <FILE>)),
            )
            .subcommand(clap::Command::new("secret").hide(true));
        let dir = tempfile::tempdir().expect("tempdir");
        let written = write(cmd, dir.path()).expect("written");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert!(names.contains(&"radio-test.1".to_owned()), "{names:?}");
        assert!(
            names.contains(&"radio-test-enroll.1".to_owned()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.contains("secret")), "{names:?}");
        let enroll =
            std::fs::read_to_string(dir.path().join("man/man1/radio-test-enroll.1")).expect("page");
        assert!(enroll.contains("bundle"), "{enroll}");
        for file in [
            "bash-completion/completions/radio-test",
            "zsh/vendor-completions/_radio-test",
            "fish/vendor_completions.d/radio-test.fish",
        ] {
            assert!(
                dir.path().join("completions").join(file).is_file(),
                "{file}"
            );
        }
    }
}
