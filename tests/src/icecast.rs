//! A real Icecast 2 server on loopback with ffmpeg as its live source: the upstream station for
//! the relay tests (the unit tests of `server/src/ingest/relay.rs` and the end-to-end ones).
//!
//! The server binds its own loopback address ([`Icecast::IP`]) so that its port cannot clash
//! with the `127.0.0.1:0` servers of other tests. As root, Icecast refuses to run unless told to
//! drop to another user, which must then reach the temp dir (mode 755) and write the log dir
//! (mode 777); [`Icecast::start`] arranges both.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `icecast2` (killed when dropped, with its source).
#[derive(Debug)]
pub struct Icecast {
    dir: tempfile::TempDir,
    port: u16,
    server: Child,
    source: Option<Child>,
}

impl Icecast {
    /// The source password (the mount is `/live.mp3`).
    pub const PASSWORD: &'static str = "relay-test-source";
    /// Its own loopback address: all of 127/8 is local on Linux.
    pub const IP: &'static str = "127.0.0.5";

    /// Starts `icecast2` on a free port of [`Icecast::IP`] and waits until it listens. `None`
    /// (after printing `SKIPPED: ...`) only if icecast2 or ffmpeg cannot be run; anything else
    /// that goes wrong panics.
    pub fn start() -> Option<Icecast> {
        for tool in ["icecast2", "ffmpeg"] {
            let runs = Command::new(tool)
                .arg(if tool == "icecast2" { "-v" } else { "-version" })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            if let Err(e) = runs {
                crate::skip(&format!(
                    "cannot run {tool} ({e}); install the icecast2 and ffmpeg packages"
                ));
                return None;
            }
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = TcpListener::bind((Self::IP, 0))
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("bind a port on {}: {e}", Self::IP))
            .port();
        let log_dir = dir.path().join("log");
        std::fs::create_dir(&log_dir).expect("create the icecast log dir");
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let security = if root {
            use std::os::unix::fs::PermissionsExt;
            let open = |p: &Path, mode| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
                    .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
            };
            open(dir.path(), 0o755);
            open(&log_dir, 0o777);
            let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
            let group = if groups.lines().any(|l| l.starts_with("nogroup:")) {
                "nogroup"
            } else {
                "nobody"
            };
            format!(
                "<security><chroot>0</chroot><changeowner><user>nobody</user>\
                 <group>{group}</group></changeowner></security>"
            )
        } else {
            String::new()
        };
        let config = format!(
            "<icecast>\n\
             <limits><sources>2</sources><source-timeout>3</source-timeout></limits>\n\
             <authentication><source-password>{pw}</source-password>\
             <admin-user>admin</admin-user><admin-password>{pw}-admin</admin-password>\
             </authentication>\n\
             <hostname>{ip}</hostname>\n\
             <listen-socket><port>{port}</port><bind-address>{ip}</bind-address></listen-socket>\n\
             <fileserve>0</fileserve>\n\
             <paths><basedir>{base}</basedir><logdir>{logs}</logdir></paths>\n\
             <logging><errorlog>-</errorlog><accesslog>-</accesslog><loglevel>3</loglevel></logging>\n\
             {security}\n\
             </icecast>\n",
            pw = Self::PASSWORD,
            ip = Self::IP,
            base = dir.path().display(),
            logs = log_dir.display(),
        );
        let config_path = dir.path().join("icecast.xml");
        std::fs::write(&config_path, config).expect("write icecast.xml");
        let out =
            std::fs::File::create(dir.path().join("icecast.out")).expect("create icecast.out");
        let server = Command::new("icecast2")
            .arg("-c")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone icecast.out"))
            .stderr(out)
            .spawn()
            .expect("start icecast2");
        let mut ice = Icecast {
            dir,
            port,
            server,
            source: None,
        };
        let t = Instant::now();
        while TcpStream::connect((Self::IP, port)).is_err() {
            if let Ok(Some(status)) = ice.server.try_wait() {
                panic!("icecast2 exited with {status}: {}", ice.output());
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "icecast2 not listening: {}",
                ice.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(ice)
    }

    /// A temporary directory that lives as long as the server (for test files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What icecast2 printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("icecast.out")).unwrap_or_default()
    }

    /// The listeners' URL of the mount.
    pub fn url(&self) -> String {
        format!("http://{}:{}/live.mp3", Self::IP, self.port)
    }

    /// ffmpeg as the live source, looping `wav` at real time as 64 kb/s MP3. Retried briefly,
    /// because right after a source was killed Icecast may still hold the mount.
    pub fn start_source(&mut self, wav: &Path) {
        let target = format!(
            "icecast://source:{}@{}:{}/live.mp3",
            Self::PASSWORD,
            Self::IP,
            self.port
        );
        let log_path = self.dir.path().join("ffmpeg.out");
        for _ in 0..10 {
            let log = std::fs::File::create(&log_path).expect("create ffmpeg.out");
            let mut child = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
                .args(["-stream_loop", "-1", "-i"])
                .arg(wav)
                .args(["-c:a", "libmp3lame", "-b:a", "64k"])
                .args(["-content_type", "audio/mpeg", "-f", "mp3"])
                .arg(&target)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start ffmpeg");
            std::thread::sleep(Duration::from_millis(500));
            if matches!(child.try_wait(), Ok(None)) {
                self.source = Some(child);
                return;
            }
        }
        panic!(
            "ffmpeg could not become the Icecast source: {}\nicecast2: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            self.output()
        );
    }

    /// Kills the source with SIGKILL (a studio link that drops, no goodbye): Icecast ends the
    /// mount and disconnects its listeners.
    pub fn kill_source(&mut self) {
        if let Some(mut child) = self.source.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        self.kill_source();
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
