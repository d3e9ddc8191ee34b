//! The one skip helper of the workspace's tests. A test that needs something from outside the
//! workspace (ffmpeg, sox, espeak-ng, icecast2, GStreamer, Chromium, an IPv6 loopback) asks
//! [`require_tool`] or calls [`skip`]; nothing else decides to skip.
//!
//! A skip is never silent:
//! - `SKIPPED: <test>: <reason>` goes straight to the process's stderr, past libtest's capture;
//! - the test binary ends with a report of every case it skipped (an `atexit` hook: libtest
//!   has none of its own);
//! - each skip is appended to a ledger, `skipped-tests.log` in the target directory (or the file
//!   [`LEDGER_ENV`] names), which `make test` checks after the run.
//!
//! With [`REQUIRE_TOOLS_ENV`] set (`make test`, and so CI) a skip panics instead: a missing
//! package cannot turn an acceptance test into a silent pass. The ledger still gets the entry,
//! so a skip in a thread whose panic nobody joins fails `make test` all the same.
//!
//! It also drives ffmpeg as an RTP receiver that reports its progress ([`FfmpegReceiver`]), so
//! that tests wait for ffmpeg to receive rather than for time to pass.
//!
//! This is its own crate, with no dependency on the workspace, so that the unit tests of
//! `radio-server` and `relay-agent` can use it as well as the end-to-end kit (`radio-tests`).

pub mod ffmpeg;
pub mod help_text;

pub use ffmpeg::FfmpegReceiver;
pub use help_text::stated_defaults;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, Once, OnceLock};

/// Set by `make test` (and so by CI): a test that would skip fails instead. Any value but empty
/// or `0` counts as set.
pub const REQUIRE_TOOLS_ENV: &str = "RADIO_REQUIRE_TOOLS";

/// The ledger file skips are appended to, if set; otherwise [`LEDGER_FILE`] in the target
/// directory the test binary was built in.
pub const LEDGER_ENV: &str = "RADIO_SKIP_LEDGER";

/// The ledger's name in the target directory.
pub const LEDGER_FILE: &str = "skipped-tests.log";

/// One skipped case: the test (libtest names its thread after it) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Skipped {
    test: String,
    reason: String,
}

/// The cases this process skipped (or refused to skip), for the report at exit.
static SKIPPED: Mutex<Vec<Skipped>> = Mutex::new(Vec::new());

/// Whether [`REQUIRE_TOOLS_ENV`] is set: skips panic.
pub fn tools_required() -> bool {
    required_by(std::env::var_os(REQUIRE_TOOLS_ENV).as_deref())
}

fn required_by(value: Option<&OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether `name` runs here: it starts and answers its version option successfully. Asked once
/// per tool and process.
pub fn tool_runs(name: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(runs) = seen.lock().ok().and_then(|s| s.get(name).copied()) {
        return runs;
    }
    let runs = Command::new(name)
        .arg(version_option(name))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if let Ok(mut s) = seen.lock() {
        s.insert(name.to_owned(), runs);
    }
    runs
}

/// The option that makes `tool` print its version and exit 0.
fn version_option(tool: &str) -> &'static str {
    match tool {
        "ffmpeg" | "ffprobe" => "-version",
        "icecast2" => "-v",
        _ => "--version",
    }
}

/// True if `tool` runs here; otherwise [`skip`]s the calling test (false) or, with
/// [`REQUIRE_TOOLS_ENV`] set, panics. The caller returns when it gets false.
pub fn require_tool(tool: &str) -> bool {
    if tool_runs(tool) {
        return true;
    }
    skip(&format!(
        "{tool} does not run here (`make test` installs it)"
    ));
    false
}

/// Skips the calling test for `reason`: says so on stderr, counts it for the report at exit and
/// appends it to the ledger. With [`REQUIRE_TOOLS_ENV`] set it panics instead (after the ledger
/// entry). The caller returns after it (or carries on without the part it skips).
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("an unnamed thread")
        .to_owned();
    let required = tools_required();
    append_to_ledger(&test, reason, required);
    let line = if required {
        format!("REFUSED TO SKIP: {test}: {reason} ({REQUIRE_TOOLS_ENV} is set)\n")
    } else {
        format!("SKIPPED: {test}: {reason}\n")
    };
    // Past libtest's capture, which only takes `print!` and `eprint!`: a skip is seen even when
    // the test passes.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Ok(mut skipped) = SKIPPED.lock() {
        skipped.push(Skipped {
            test: test.clone(),
            reason: reason.to_owned(),
        });
    }
    report_at_exit();
    if required {
        panic!("{reason} ({REQUIRE_TOOLS_ENV} is set: this test must run, not skip)");
    }
}

/// How many cases this process skipped (or refused to skip) so far.
pub fn skipped_count() -> usize {
    SKIPPED.lock().map(|s| s.len()).unwrap_or(0)
}

/// The ledger: [`LEDGER_ENV`], else `<target>/skipped-tests.log`, the target directory being
/// where the test binary sits (`<target>/<profile>/deps/<binary>`).
fn ledger_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(LEDGER_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe
        .parent()
        .filter(|d| d.file_name() == Some(OsStr::new("deps")))?;
    Some(deps.parent()?.parent()?.join(LEDGER_FILE))
}

fn append_to_ledger(test: &str, reason: &str, required: bool) {
    let Some(path) = ledger_path() else { return };
    let binary = std::env::current_exe()
        .ok()
        .and_then(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let what = if required { "refused" } else { "skipped" };
    let line = format!("{unix}\t{what}\t{binary}\t{test}\t{reason}\n");
    // One write of one line to a file opened for appending: lines from test binaries running
    // at once do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        let _ = std::io::stderr().lock().write_all(
            format!(
                "radio-test-tools: cannot append to {}: {e}\n",
                path.display()
            )
            .as_bytes(),
        );
    }
}

/// The report at the end of the test binary, after libtest's own summary.
fn report(skipped: &[Skipped], required: bool) -> String {
    let n = skipped.len();
    let cases = if n == 1 { "case" } else { "cases" };
    let mut out = if required {
        format!(
            "radio-test-tools: {n} {cases} in this test binary failed instead of skipping \
             ({REQUIRE_TOOLS_ENV} is set):\n"
        )
    } else {
        format!(
            "radio-test-tools: {n} {cases} skipped in this test binary; make test \
             ({REQUIRE_TOOLS_ENV}=1) refuses to skip:\n"
        )
    };
    for s in skipped {
        out.push_str(&format!("  {}: {}\n", s.test, s.reason));
    }
    out
}

/// Registers [`report_now`] with `atexit(3)`, once per process.
fn report_at_exit() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The one unsafe call of the test tools: std has no exit hook, and a static's `Drop`
        // never runs. SAFETY: `atexit` only stores the pointer; `report_now` takes nothing,
        // cannot unwind (it handles every error and never blocks on a lock) and touches only
        // statics that live until the process ends.
        #[allow(unsafe_code)]
        let registered = unsafe { libc::atexit(report_now) };
        if registered != 0 {
            let _ = std::io::stderr()
                .lock()
                .write_all(b"radio-test-tools: cannot register the skip report at exit\n");
        }
    });
}

extern "C" fn report_now() {
    // `try_lock`: a test thread still running at exit may hold the lock; never wait for it.
    let text = match SKIPPED.try_lock() {
        Ok(skipped) if !skipped.is_empty() => report(&skipped, tools_required()),
        Ok(_) => return,
        Err(_) => "radio-test-tools: cases were skipped in this test binary (the list is busy; \
                   see the SKIPPED lines above)\n"
            .to_owned(),
    };
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set for the child process of the tests below, which runs [`child_skips_twice`].
    const CHILD_ENV: &str = "RADIO_TEST_TOOLS_CHILD";

    /// The child: skips once for a missing tool and once for another reason. Ignored, and a
    /// no-op without [`CHILD_ENV`]: skipping is what it is for, and a run that includes ignored
    /// tests must not count it.
    #[test]
    #[ignore = "run by the other tests as a child process"]
    fn child_skips_twice() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        assert!(!require_tool("radio-test-tools-no-such-tool"));
        skip("the second reason");
        assert_eq!(skipped_count(), 2);
    }

    /// Runs [`child_skips_twice`] in a new process of this test binary, with a ledger of its
    /// own; returns whether it passed, its stderr (after its stdout, where libtest reports a
    /// failure) and the ledger.
    fn run_child(require: Option<&str>) -> (bool, String, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = dir.path().join("ledger.log");
        let mut child = Command::new(std::env::current_exe().expect("the test binary"));
        child
            .args(["--exact", "tests::child_skips_twice", "--ignored"])
            .env(CHILD_ENV, "1")
            .env(LEDGER_ENV, &ledger)
            .env_remove(REQUIRE_TOOLS_ENV);
        if let Some(value) = require {
            child.env(REQUIRE_TOOLS_ENV, value);
        }
        let out = child.output().expect("run the child test");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            std::fs::read_to_string(&ledger).unwrap_or_default(),
        )
    }

    #[test]
    fn skips_are_said_counted_reported_at_exit_and_recorded() {
        let (passed, stderr, ledger) = run_child(None);
        assert!(passed, "{stderr}");
        let test = "tests::child_skips_twice";
        assert!(
            stderr.contains(&format!(
                "SKIPPED: {test}: radio-test-tools-no-such-tool does not run here"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("SKIPPED: {test}: the second reason")),
            "{stderr}"
        );
        // The report comes last, after libtest's summary.
        let report = stderr
            .find("radio-test-tools: 2 cases skipped in this test binary")
            .unwrap_or_else(|| panic!("no report:\n{stderr}"));
        assert!(stderr[report..].contains("refuses to skip"), "{stderr}");
        assert!(
            stderr[report..].contains(&format!("  {test}: the second reason")),
            "{stderr}"
        );
        let lines: Vec<&str> = ledger.lines().collect();
        assert_eq!(lines.len(), 2, "{ledger}");
        assert!(
            lines
                .iter()
                .all(|l| l.contains("\tskipped\t") && l.contains(test)),
            "{ledger}"
        );
    }

    #[test]
    fn a_skip_panics_when_tools_are_required_and_is_still_recorded() {
        let (passed, stderr, ledger) = run_child(Some("1"));
        assert!(!passed, "the child passed with tools required:\n{stderr}");
        assert!(
            stderr.contains("REFUSED TO SKIP: tests::child_skips_twice"),
            "{stderr}"
        );
        assert!(
            stderr.contains("is set: this test must run, not skip"),
            "{stderr}"
        );
        // It stopped at the first skip.
        assert!(!stderr.contains("the second reason"), "{stderr}");
        assert!(
            stderr.contains(
                "radio-test-tools: 1 case in this test binary failed instead of skipping"
            ),
            "{stderr}"
        );
        assert_eq!(ledger.lines().count(), 1, "{ledger}");
        assert!(ledger.contains("\trefused\t"), "{ledger}");
    }

    #[test]
    fn an_empty_or_zero_requirement_is_no_requirement() {
        assert!(!required_by(None));
        assert!(!required_by(Some(OsStr::new(""))));
        assert!(!required_by(Some(OsStr::new("0"))));
        assert!(required_by(Some(OsStr::new("1"))));
        assert!(required_by(Some(OsStr::new("yes"))));
        let (passed, stderr, _) = run_child(Some("0"));
        assert!(passed, "{stderr}");
    }

    #[test]
    fn a_tool_that_runs_is_found_and_a_missing_one_is_not() {
        // `ls` is in every Debian base system, and answers `--version`.
        assert!(tool_runs("ls"));
        assert!(!tool_runs("radio-test-tools-no-such-tool"));
        assert_eq!(skipped_count(), 0, "asking is not skipping");
    }

    #[test]
    fn the_report_names_every_case() {
        let skipped = [
            Skipped {
                test: "a::b".into(),
                reason: "ffmpeg does not run here".into(),
            },
            Skipped {
                test: "c".into(),
                reason: "no IPv6 loopback".into(),
            },
        ];
        let text = report(&skipped, false);
        assert!(
            text.starts_with("radio-test-tools: 2 cases skipped"),
            "{text}"
        );
        assert!(
            text.contains("  a::b: ffmpeg does not run here\n"),
            "{text}"
        );
        assert!(text.contains("  c: no IPv6 loopback\n"), "{text}");
    }
}
