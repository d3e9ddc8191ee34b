//! The studio goes live: ffmpeg sends Opus RTP to `radio-server demo --live-rtp` while a file is
//! playing. Every agent switches to the studio, and back to the file where it stopped; a sender
//! from an address that is not allowed is dropped and counted and never heard.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use radio_tests::{
    binary, free_udp_port, pitch_track, require_tool, write_chirp, Process, PATIENCE,
};

const STUDIO_HZ: f32 = 1200.0;

/// ffmpeg as a studio encoder sending Opus RTP from `from`, reading its audio from a FIFO. It
/// is started, and known to be up (it has opened the FIFO), before the programme starts: when
/// the test hands it the recording the studio comes in at once, however slowly ffmpeg started
/// (a cold page cache).
struct Studio {
    ffmpeg: Child,
    input: std::fs::File,
    from: String,
}

impl Studio {
    fn start(dir: &Path, port: u16, from: &str) -> Studio {
        let fifo = dir.join(format!("studio-{from}.wav"));
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success(), "mkfifo failed");
        let mut ffmpeg = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(["-f", "wav", "-i"])
            .arg(&fifo)
            .args(["-c:a", "libopus", "-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{port}?localaddr={from}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        // Opening for writing returns once ffmpeg has opened the FIFO for reading: it is up. In
        // a thread, so that an ffmpeg that never gets there fails the test instead of hanging
        // it.
        let (opened_tx, opened_rx) = std::sync::mpsc::channel();
        let path = fifo.clone();
        std::thread::spawn(move || {
            let _ = opened_tx.send(std::fs::OpenOptions::new().write(true).open(&path));
        });
        let input = match opened_rx.recv_timeout(PATIENCE) {
            Ok(opened) => opened.expect("open the FIFO"),
            Err(_) => {
                let _ = ffmpeg.kill();
                panic!(
                    "ffmpeg sending from {from} never opened its input: {:?}",
                    ffmpeg.wait()
                );
            }
        };
        Studio {
            ffmpeg,
            input,
            from: from.to_owned(),
        }
    }

    /// Hands ffmpeg `recording`, which it sends in real time; returns once it has sent it all.
    fn send(mut self, recording: &Path) {
        let audio = std::fs::read(recording).expect("read the recording");
        self.input
            .write_all(&audio)
            .expect("write the recording to ffmpeg");
        // The end of its input: ffmpeg sends the rest and exits.
        drop(self.input);
        let status = self.ffmpeg.wait().expect("wait for ffmpeg");
        assert!(status.success(), "ffmpeg sending from {} failed", self.from);
    }
}

#[test]
fn the_studio_preempts_the_programme_which_resumes_after() {
    if !require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let programme = dir.path().join("programme.wav");
    let studio = dir.path().join("studio.wav");
    write_chirp(&programme, 300.0, 800.0, 10.0);
    write_chirp(&studio, STUDIO_HZ, STUDIO_HZ, 2.0);
    let port = free_udp_port();
    let out = dir.path().join("out");
    let live = format!("127.0.0.1:{port}");
    // Not allowed, and the studio.
    let intruder = Studio::start(dir.path(), port, "127.0.0.2");
    let studio_encoder = Studio::start(dir.path(), port, "127.0.0.1");
    let mut demo = Process::start(
        "demo",
        &binary("radio-server"),
        &[
            "demo",
            "--agents",
            "3",
            "--programme",
            programme.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
            "--live-rtp",
            &live,
        ],
    );
    demo.wait_for("agents connected", PATIENCE);
    // Two seconds of the programme before anyone sends: pacing, not a wait for anything.
    std::thread::sleep(Duration::from_secs(2));
    // Not allowed: must change nothing on air.
    intruder.send(&studio);
    studio_encoder.send(&studio);
    demo.wait_for("agents played the programme", PATIENCE);
    let (status, output) = demo.finish(Duration::from_secs(10));
    let text = output.join("\n");
    assert!(status.success(), "demo failed:\n{text}");
    assert!(
        text.contains("demo: 3/3 agents played the programme"),
        "{text}"
    );
    let dropped = output
        .iter()
        .find(|l| l.starts_with("live input:"))
        .unwrap_or_else(|| panic!("no live input line:\n{text}"));
    assert!(
        dropped.contains("dropped from senders not allowed (last: 127.0.0.2:"),
        "{dropped}"
    );
    assert!(!dropped.contains(" 0 dropped"), "{dropped}");

    for station in ["thi-tran-chau-o", "binh-trung", "binh-duong"] {
        let track = pitch_track(&out.join(format!("{station}.wav")));
        let shown = format!("{station}: {track:?}");
        let loud: Vec<(usize, f32)> = track
            .iter()
            .enumerate()
            .filter(|(_, (rms, _))| *rms > 0.05)
            .map(|(i, (_, hz))| (i, *hz))
            .collect();
        let studio_windows: Vec<usize> = loud
            .iter()
            .filter(|(_, hz)| (hz - STUDIO_HZ).abs() < 60.0)
            .map(|(i, _)| *i)
            .collect();
        let chirp: Vec<(usize, f32)> = loud
            .iter()
            .filter(|(_, hz)| *hz > 260.0 && *hz < 840.0)
            .copied()
            .collect();
        assert!(
            (16..=22).contains(&studio_windows.len()),
            "the studio was heard for {} windows (sent 2 s once, from the allowed address)\n{shown}",
            studio_windows.len()
        );
        assert!(
            (96..=103).contains(&chirp.len()),
            "the programme was heard for {} windows, not its 10 s once\n{shown}",
            chirp.len()
        );
        let first = studio_windows[0];
        let last = studio_windows[studio_windows.len() - 1];
        let before: Vec<f32> = chirp
            .iter()
            .filter(|(i, _)| *i < first)
            .map(|c| c.1)
            .collect();
        let after: Vec<f32> = chirp
            .iter()
            .filter(|(i, _)| *i > last)
            .map(|c| c.1)
            .collect();
        assert!(before.len() > 20 && after.len() > 20, "{shown}");
        // The chirp rises 5 Hz per window; the windows next to a switch mix two sounds.
        let stopped = before[before.len() - 2];
        let resumed = after[1];
        assert!(
            (resumed - stopped).abs() < 40.0,
            "{station}: the programme resumed at {resumed} Hz after stopping at {stopped} Hz\n{shown}"
        );
    }
}
