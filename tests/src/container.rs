//! A throwaway Debian system with systemd as its init, for the install test: the packages are
//! installed, started, upgraded and purged by real dpkg and a real systemd, and nothing of it
//! touches the machine the tests run on.
//!
//! The machine's own root file system is the container's, read-only underneath an overlay
//! whose writable layer is a fresh tmpfs: every change (packages, users, the services' data)
//! lives in memory and is gone when the container is. `systemd-nspawn --boot` runs systemd as
//! its PID 1 with a private network (loopback only), so the services' fixed ports cannot meet
//! another test's. Commands run inside through `nsenter` into the container's init. Needs root
//! and systemd-nspawn (Debian's systemd-container); the machine need not run systemd itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A booted container; shut down, unmounted and forgotten when dropped.
#[derive(Debug)]
pub struct Container {
    base: tempfile::TempDir,
    merged: PathBuf,
    mounts: Vec<PathBuf>,
    nspawn: Option<Child>,
    leader: u32,
}

/// Whether this process can boot one: root, and systemd-nspawn installed.
pub fn available() -> Result<(), String> {
    if !is_root() {
        return Err(
            "the install test needs root (it mounts an overlay and boots a container)".into(),
        );
    }
    match Command::new("systemd-nspawn").arg("--version").output() {
        Ok(o) if o.status.success() => Ok(()),
        _ => Err("systemd-nspawn does not run here (`make deb` installs systemd-container)".into()),
    }
}

fn is_root() -> bool {
    // From /proc: the kit has no libc binding, and needs none for this.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Container {
    /// Boots a container and waits until its systemd has finished starting up.
    pub fn boot(name: &str) -> Container {
        let base = tempfile::Builder::new()
            .prefix("radio-container-")
            .tempdir()
            .expect("container base directory");
        let (lower, layers, merged) = (
            base.path().join("lower"),
            base.path().join("layers"),
            base.path().join("root"),
        );
        for dir in [&lower, &layers, &merged] {
            std::fs::create_dir_all(dir).expect("container directory");
        }
        let mut container = Container {
            merged: merged.clone(),
            mounts: Vec::new(),
            nspawn: None,
            leader: 0,
            base,
        };
        // Not recursive: only the root file system, not /proc, /sys or this very tmpfs.
        run("mount", &["--bind", "/", path_str(&lower)]).expect("bind the root read-only");
        container.mounts.push(lower.clone());
        run(
            "mount",
            &["-t", "tmpfs", "-o", "mode=0755", "tmpfs", path_str(&layers)],
        )
        .expect("tmpfs for the writable layer");
        container.mounts.push(layers.clone());
        let (upper, work) = (layers.join("upper"), layers.join("work"));
        std::fs::create_dir_all(&upper).expect("upper");
        std::fs::create_dir_all(&work).expect("work");
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        );
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &options,
                path_str(&merged),
            ],
        )
        .expect("overlay root");
        container.mounts.push(merged.clone());
        // The machine's identity is not the container's: a fresh machine id, and no first-boot
        // questions on the console nobody reads.
        let _ = std::fs::remove_file(merged.join("etc/machine-id"));
        let log = std::fs::File::create(container.base.path().join("nspawn.log")).expect("log");
        let child = Command::new("systemd-nspawn")
            .args([
                "--directory",
                path_str(&merged),
                "--boot",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--console=passive",
                "--machine",
                name,
                "--",
                "systemd.firstboot=off",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("systemd-nspawn starts");
        let nspawn_pid = child.id();
        container.nspawn = Some(child);
        container.leader = container.wait_for_leader(nspawn_pid);
        container.wait_booted();
        container
    }

    /// The init process nspawn started: the target of every `nsenter`.
    fn wait_for_leader(&mut self, nspawn: u32) -> u32 {
        let deadline = Instant::now() + crate::PATIENCE;
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
                    .unwrap_or_default();
            for pid in children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "systemd" {
                    return pid;
                }
            }
            if let Some(status) = self
                .nspawn
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "systemd-nspawn ended ({status}) before booting:\n{}",
                    self.nspawn_log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no systemd under systemd-nspawn:\n{}",
                self.nspawn_log()
            );
            // A poll of /proc while nspawn forks its init.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_booted(&self) {
        let deadline = Instant::now() + crate::PATIENCE;
        loop {
            let out = self.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            // "degraded": some unit of the machine's own failed in a container; ours are
            // checked one by one.
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the container's systemd is still {state:?}:\n{}",
                self.nspawn_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn nspawn_log(&self) -> String {
        std::fs::read_to_string(self.base.path().join("nspawn.log")).unwrap_or_default()
    }

    /// Where a path of the container is on this machine (to put files in or read them).
    pub fn path(&self, inside: &str) -> PathBuf {
        self.merged.join(inside.trim_start_matches('/'))
    }

    /// Runs a command inside, as root, and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        let leader = self.leader.to_string();
        Command::new("nsenter")
            .args(["--target", &leader, "--all", "--"])
            .args(args)
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("nsenter {args:?}: {e}"))
    }

    /// Runs a command inside that must succeed; its standard output.
    pub fn must(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "in the container, {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A unit's property (`systemctl show -p NAME --value`).
    pub fn unit_property(&self, unit: &str, property: &str) -> String {
        self.must(&["systemctl", "show", "-p", property, "--value", unit])
            .trim()
            .to_owned()
    }

    /// Polls `check` until it holds; `what` says what was awaited when it never does.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Container) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The systemd journal of a unit inside, for failure messages.
    pub fn journal(&self, unit: &str) -> String {
        let out = self.run(&["journalctl", "--no-pager", "-o", "cat", "-u", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            // SIGTERM: nspawn asks the container's systemd to halt, then ends.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        for mount in self.mounts.iter().rev() {
            if run("umount", &[path_str(mount)]).is_err() {
                // Something inside still holds it: detach it now, the kernel frees it later.
                let _ = run("umount", &["--lazy", path_str(mount)]);
            }
        }
    }
}
