//! A real Icecast 2 server on loopback with ffmpeg as its live source: the upstream station for
//! the relay tests (the unit tests of `server/src/ingest/relay.rs` and the end-to-end ones).
//!
//! The server binds its own loopback address ([`Icecast::IP`]) so that its port cannot clash
//! with the `127.0.0.1:0` servers of other tests. As root, Icecast refuses to run unless told to
//! drop to another user, which must then reach the temp dir (mode 755) and write the log dir
//! (mode 777); [`Icecast::start`] arranges both.

use std::io::{BufRead, BufReader, Write};
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
    /// (the test skipped, [`crate::require_tool`]) only if icecast2 or ffmpeg cannot be run;
    /// anything else that goes wrong panics.
    pub fn start() -> Option<Icecast> {
        if !["icecast2", "ffmpeg"].into_iter().all(crate::require_tool) {
            return None;
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
                t.elapsed() < crate::PATIENCE,
                "icecast2 not listening: {}",
                ice.output()
            );
            // A poll of the port, which icecast2 announces nowhere else.
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

    /// ffmpeg as the live source, looping `wav` at real time as 64 kb/s MP3; returns once
    /// Icecast serves the mount. Retried, because right after a source was killed Icecast may
    /// still hold the mount and refuse the new one.
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
            // Until Icecast serves the mount (this source is on), or ffmpeg gives up (refused).
            let deadline = Instant::now() + crate::PATIENCE;
            loop {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                if self.mount_is_served() {
                    self.source = Some(child);
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "Icecast does not serve the mount of a running ffmpeg: {}\nicecast2: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default(),
                    self.output()
                );
                // A poll of Icecast, which tells nobody when a source comes on.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "ffmpeg could not become the Icecast source: {}\nicecast2: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default(),
            self.output()
        );
    }

    /// Whether Icecast answers a listener of the mount with `200 OK` (no source: `404`).
    fn mount_is_served(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect((Self::IP, self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /live.mp3 HTTP/1.0\r\nHost: {}:{}\r\n\r\n",
            Self::IP,
            self.port
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return false;
        }
        let mut status = String::new();
        let _ = BufReader::new(stream).read_line(&mut status);
        status.split_whitespace().nth(1) == Some("200")
    }

    /// Kills the source with SIGKILL (a studio link that drops, no goodbye): Icecast ends the
    /// mount and disconnects its listeners. Returns once the mount is gone, so that a mount
    /// served afterwards is a new source's.
    pub fn kill_source(&mut self) {
        if let Some(mut child) = self.source.take() {
            let _ = child.kill();
            let _ = child.wait();
            let deadline = Instant::now() + crate::PATIENCE;
            while self.mount_is_served() {
                assert!(
                    Instant::now() < deadline,
                    "Icecast still serves the mount of a killed source: {}",
                    self.output()
                );
                // A poll of Icecast, which tells nobody when a mount ends.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        if let Some(mut source) = self.source.take() {
            let _ = source.kill();
            let _ = source.wait();
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
