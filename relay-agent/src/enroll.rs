//! `relay-agent enroll --bundle FILE`: the one step at the commune box. The district hands the
//! station a bundle (`radio-server enroll`, on a USB stick or by message); this checks it, puts
//! it where the agent's config says, readable by the service's user only, and (re)starts the
//! service, so that nobody at the commune has to know about owners, modes or systemctl.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bundle::{write_private, Bundle, BundleError};

/// The system user the packaged service runs as (`relay-agent.service`, `User=`).
pub const SERVICE_USER: &str = "relay-agent";

/// The packaged service's unit.
pub const SERVICE_UNIT: &str = "relay-agent.service";

/// What enrolment needs to know.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The bundle as received.
    pub from: PathBuf,
    /// Where the agent reads it (the config's `bundle`).
    pub to: PathBuf,
    /// Who must be able to read it: the service's user. `None`: leave the owner as is
    /// (a hand-run agent, a test).
    pub owner: Option<String>,
    /// Whether to enable and (re)start the service afterwards.
    pub start: bool,
}

/// What went wrong, in words for the person at the box.
#[derive(Debug, thiserror::Error)]
pub enum EnrolError {
    #[error("{0} (ask the district for a new bundle: radio-server enroll --commune ID)")]
    Bundle(#[from] BundleError),
    #[error("there is no user `{0}` on this machine: is the relay-agent package installed? (or give --owner USER)")]
    NoSuchUser(String),
    #[error("cannot look up user `{user}`: {error}")]
    UserLookup { user: String, error: String },
    #[error("cannot write {path}: {error} (run as root: sudo relay-agent enroll ...)")]
    Write { path: String, error: std::io::Error },
    #[error(
        "cannot give {path} to user `{user}`: {error} (run as root: sudo relay-agent enroll ...)"
    )]
    Chown {
        path: String,
        user: String,
        error: std::io::Error,
    },
    #[error("the bundle is in place, but `{command}` failed: {why}; start the service by hand, then see: journalctl -u relay-agent")]
    Service { command: String, why: String },
}

/// What [`enrol`] did, for its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub commune: String,
    pub server: String,
    pub path: PathBuf,
    /// Whether the service was (re)started.
    pub started: bool,
}

/// Checks the bundle, installs it and (re)starts the service.
pub fn enrol(e: &Enrolment) -> Result<Enrolled, EnrolError> {
    let bundle = Bundle::load(&e.from)?;
    let owner = e.owner.as_deref().map(lookup_user).transpose()?;
    let shown = e.to.display().to_string();
    if same_file(&e.from, &e.to) {
        // Already copied into place by hand: only its mode and owner are to be put right.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&e.to, std::fs::Permissions::from_mode(0o600)).map_err(
            |error| EnrolError::Write {
                path: shown.clone(),
                error,
            },
        )?;
    } else {
        // The file as received, comments and all: it is what was just checked.
        let text = std::fs::read(&e.from).map_err(|error| BundleError::Read {
            path: e.from.display().to_string(),
            error,
        })?;
        write_private(&e.to, &text).map_err(|error| EnrolError::Write {
            path: shown.clone(),
            error,
        })?;
    }
    if let (Some((uid, gid)), Some(user)) = (owner, &e.owner) {
        std::os::unix::fs::chown(&e.to, Some(uid), Some(gid)).map_err(|error| {
            EnrolError::Chown {
                path: shown.clone(),
                user: user.clone(),
                error,
            }
        })?;
    }
    let started = e.start && systemd_running();
    if started {
        for args in [["enable", SERVICE_UNIT], ["restart", SERVICE_UNIT]] {
            systemctl(&args)?;
        }
    }
    Ok(Enrolled {
        commune: bundle.commune,
        server: bundle.server,
        path: e.to.clone(),
        started,
    })
}

/// Whether systemd is this machine's service manager (sd_booted(3)).
pub fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> Result<(), EnrolError> {
    let command = format!("systemctl {}", args.join(" "));
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .map_err(|e| EnrolError::Service {
            command: command.clone(),
            why: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EnrolError::Service {
            command,
            why: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

fn lookup_user(user: &str) -> Result<(u32, u32), EnrolError> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(EnrolError::NoSuchUser(user.to_owned())),
        Err(e) => Err(EnrolError::UserLookup {
            user: user.to_owned(),
            error: e.to_string(),
        }),
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
