//! The box's health, measured for the server (`BoxHealth` beside the heartbeats): the hottest
//! thermal zone, free disk on the state directory, memory, load, uptime, the time since the
//! clock was last synchronised, and what each output and watched cluster is doing.
//!
//! `parse.rs` turns each kernel file's text into a figure (sans-IO, tested on sample
//! contents); this file is the thin layer that reads them. The roots of `/sys`, `/proc` and
//! `/run` can be moved with `RADIO_BOX_HEALTH_ROOT=DIR` (then `DIR/sys`, `DIR/proc`,
//! `DIR/run`): for tests and diagnosis only, so a hot or failing box can be played from a
//! directory of files. (Not `RELAY_AGENT_…`: those name config keys, and the config refuses
//! any it does not know.)

pub mod parse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use radio_proto::{BoxHealth, ClusterHealth, OutputHealth, OutputState, SinkHealth};

/// The environment variable that moves the roots (tests and diagnosis only).
pub const ROOT_ENV: &str = "RADIO_BOX_HEALTH_ROOT";

/// Where the kernel's files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthRoots {
    pub sys: PathBuf,
    pub proc: PathBuf,
    pub run: PathBuf,
}

impl Default for HealthRoots {
    fn default() -> Self {
        HealthRoots {
            sys: "/sys".into(),
            proc: "/proc".into(),
            run: "/run".into(),
        }
    }
}

impl HealthRoots {
    /// The real roots, or those under [`ROOT_ENV`] when it is set.
    pub fn from_env() -> Self {
        match std::env::var_os(ROOT_ENV) {
            Some(dir) if !dir.is_empty() => Self::under(Path::new(&dir)),
            _ => Self::default(),
        }
    }

    /// `dir/sys`, `dir/proc` and `dir/run`.
    pub fn under(dir: &Path) -> Self {
        HealthRoots {
            sys: dir.join("sys"),
            proc: dir.join("proc"),
            run: dir.join("run"),
        }
    }
}

/// What the playout thread saw of its outputs: each sink by name, whether its last slot
/// failed, and each watched cluster's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputsSeen {
    /// (description, failed) per sink, in the sinks' order.
    pub sinks: Vec<(String, bool)>,
    /// Cluster id → up.
    pub clusters: BTreeMap<String, bool>,
}

/// [`OutputsSeen`] shared between the playout thread and the link.
pub type SharedOutputs = Arc<Mutex<OutputsSeen>>;

/// Measures the box now. Anything that cannot be read is `None` (unknown), never 0.
pub fn measure(
    roots: &HealthRoots,
    state_dir: &Path,
    outputs: &OutputsSeen,
    output: OutputState,
    unix_ms: u64,
) -> BoxHealth {
    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    let zones = std::fs::read_dir(roots.sys.join("class/thermal"))
        .map(|dir| {
            dir.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
                .map(|e| read(e.path().join("temp")).and_then(|t| parse::thermal_zone_temp(&t)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let synced = std::fs::metadata(roots.run.join("systemd/timesync/synchronized"))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    BoxHealth {
        unix_ms,
        temperature_mc: parse::hottest(zones),
        disk: disk(state_dir),
        memory_kib: read(roots.proc.join("meminfo")).and_then(|t| parse::meminfo(&t)),
        load_centi: read(roots.proc.join("loadavg")).and_then(|t| parse::loadavg(&t)),
        uptime_s: read(roots.proc.join("uptime")).and_then(|t| parse::uptime(&t)),
        since_clock_sync_s: parse::since_sync(unix_ms / 1000, synced),
        outputs: sink_states(outputs, output),
        clusters: outputs
            .clusters
            .iter()
            .take(BoxHealth::MAX_CLUSTERS)
            .map(|(id, up)| ClusterHealth {
                id: cut(id),
                up: *up,
            })
            .collect(),
    }
}

/// Each sink's state: failed if its last slot failed, else what the playout airs (every sink
/// plays the same slot).
pub fn sink_states(outputs: &OutputsSeen, output: OutputState) -> Vec<OutputHealth> {
    let playing = match output {
        OutputState::Silent => SinkHealth::Silent,
        OutputState::OnAir => SinkHealth::OnAir,
        OutputState::Underrun => SinkHealth::Underrun,
    };
    outputs
        .sinks
        .iter()
        .take(BoxHealth::MAX_OUTPUTS)
        .map(|(name, failed)| OutputHealth {
            name: cut(name),
            state: if *failed { SinkHealth::Failed } else { playing },
        })
        .collect()
}

/// A name within the wire limit, cut at a character boundary.
fn cut(name: &str) -> String {
    let mut end = name.len().min(BoxHealth::MAX_NAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Free and total bytes of the file system holding `dir`.
fn disk(dir: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(dir).ok()?;
    Some((
        st.f_bavail.checked_mul(st.f_frsize)?,
        st.f_blocks.checked_mul(st.f_frsize)?,
    ))
}

#[cfg(test)]
mod tests;
