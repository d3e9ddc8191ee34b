//! ffmpeg as a real RTP receiver that says how far it got: it reads the stream an SDP file
//! describes, decodes it to raw PCM, and reports its progress (`-progress pipe:1`), so a test
//! can wait until ffmpeg is demonstrably receiving before it sends what it checks, instead of
//! hoping that ffmpeg started quickly.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running `ffmpeg -i SDP … -f s16le OUTPUT` (killed when dropped).
#[derive(Debug)]
pub struct FfmpegReceiver {
    child: Child,
    stdin: Option<ChildStdin>,
    progress: mpsc::Receiver<Progress>,
    decoded: Duration,
    ended: bool,
}

/// One line of ffmpeg's progress that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Progress {
    /// `out_time_us=N`: this much audio written to the output.
    Decoded(Duration),
    /// `progress=end`: ffmpeg is finishing.
    End,
}

fn parse(line: &str) -> Option<Progress> {
    if let Some(us) = line.strip_prefix("out_time_us=") {
        // `N/A` until the first packet is decoded; negative for a moment on some inputs.
        let us: i64 = us.trim().parse().ok()?;
        return Some(Progress::Decoded(Duration::from_micros(us.max(0) as u64)));
    }
    (line.trim() == "progress=end").then_some(Progress::End)
}

impl FfmpegReceiver {
    /// Starts ffmpeg on the stream `sdp` describes, writing it to `output` as raw s16le mono
    /// 48 kHz until [`FfmpegReceiver::finish`]. ffmpeg's errors go to the test's stderr.
    pub fn start(sdp: &Path, output: &Path) -> std::io::Result<FfmpegReceiver> {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostats", "-y"])
            .args(["-progress", "pipe:1"])
            .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
            .arg(sdp)
            .args(["-ac", "1", "-ar", "48000", "-f", "s16le"])
            .arg(output)
            // Its keyboard: `q` ends it cleanly.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("ffmpeg's stdout is not piped"))?;
        let (tx, progress) = mpsc::channel();
        std::thread::Builder::new()
            .name("ffmpeg-progress".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(p) = parse(&line) {
                        if tx.send(p).is_err() {
                            break;
                        }
                    }
                }
            })?;
        Ok(FfmpegReceiver {
            child,
            stdin,
            progress,
            decoded: Duration::ZERO,
            ended: false,
        })
    }

    /// How much audio ffmpeg has written so far, by its latest report (without waiting).
    pub fn decoded(&mut self) -> Duration {
        while let Ok(p) = self.progress.try_recv() {
            self.note(p);
        }
        self.decoded
    }

    fn note(&mut self, p: Progress) {
        match p {
            Progress::Decoded(d) => self.decoded = self.decoded.max(d),
            Progress::End => self.ended = true,
        }
    }

    /// Waits until ffmpeg reports more than `at` of audio written: it is receiving and
    /// decoding. Returns its report; an error if it ends or `timeout` passes first.
    pub fn wait_decoded_past(
        &mut self,
        at: Duration,
        timeout: Duration,
    ) -> Result<Duration, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.decoded() > at {
                return Ok(self.decoded);
            }
            if self.ended {
                return Err(format!(
                    "ffmpeg ended after {:?} of audio, not past {at:?}",
                    self.decoded
                ));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(p) => self.note(p),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "ffmpeg wrote {:?} of audio in {timeout:?}, not past {at:?}",
                        self.decoded
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "ffmpeg exited after {:?} of audio, not past {at:?}: {:?}",
                        self.decoded,
                        self.child.try_wait()
                    ))
                }
            }
        }
    }

    /// Asks ffmpeg to end as its user would (`q`), so that it writes out what it holds. It
    /// reads its keyboard between packets: the stream must go on until it has exited.
    pub fn quit(&mut self) -> Result<(), String> {
        match self.stdin.take() {
            Some(mut stdin) => stdin
                .write_all(b"q")
                .map_err(|e| format!("ffmpeg's keyboard: {e}")),
            None => Ok(()),
        }
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// [`FfmpegReceiver::quit`], and waits up to `timeout` for its exit status (the stream
    /// must still flow).
    pub fn finish(mut self, timeout: Duration) -> Result<ExitStatus, String> {
        self.quit()?;
        // ffmpeg's stdout, and with it the progress channel, closes as it exits.
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.progress.recv_timeout(left) {
                Ok(p) => self.note(p),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!("ffmpeg did not stop within {timeout:?} of `q`"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.child.wait().map_err(|e| e.to_string())
    }
}

impl Drop for FfmpegReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_read() {
        assert_eq!(
            parse("out_time_us=1060000"),
            Some(Progress::Decoded(Duration::from_millis(1060)))
        );
        assert_eq!(parse("out_time_us=N/A"), None);
        assert_eq!(
            parse("out_time_us=-23000"),
            Some(Progress::Decoded(Duration::ZERO))
        );
        assert_eq!(parse("progress=continue"), None);
        assert_eq!(parse("progress=end"), Some(Progress::End));
        assert_eq!(parse("out_time=00:00:01.060000"), None);
    }
}
