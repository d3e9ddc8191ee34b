//! Text-to-speech for the console: an announcement typed or pasted by staff becomes a recording,
//! to preview or to keep in the library like an upload.
//!
//! The default engine is espeak-ng's Vietnamese voice (`espeak-ng -v vi -s WPM --stdout`); a
//! district with a better engine names it in `tts_command`, an argv (never a shell line) that
//! reads the text on stdin and writes audio (WAV, MP3, Ogg... whatever the library decodes) to
//! stdout, with the speed in the environment variable [`SPEED_ENV`].
//!
//! The text only ever travels on the child's stdin: a text that starts with `-` is read aloud,
//! never taken as an option. The child runs in its own process group, is killed with all it
//! started when [`TtsSettings::timeout`] passes (or when the request goes away: `kill_on_drop`),
//! and its stdout is read up to the library's upload limit, its stderr up to a few kilobytes.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The speeds staff may choose, in words per minute (espeak-ng's `-s`): slower than 80 drags
/// each syllable out, faster than 300 is not understood over a loudspeaker.
pub const SPEED_RANGE: (u32, u32) = (80, 300);
/// The speed when the request names none: a little slower than espeak-ng's 175, for outdoor
/// loudspeakers and elderly listeners.
pub const DEFAULT_SPEED: u32 = 150;
/// The environment variable that gives a `tts_command` the speed chosen, in words per minute.
pub const SPEED_ENV: &str = "RADIO_TTS_SPEED";
/// The default engine.
pub const ESPEAK: &str = "espeak-ng";
/// The espeak-ng voice: Vietnamese (espeak-ng also has `vi-vn-x-central` and `vi-vn-x-south`).
pub const ESPEAK_VOICE: &str = "vi";
/// How much of the engine's stderr is kept for the log and the error.
const STDERR_MAX: usize = 8 * 1024;
/// How long stderr is still read after the engine exited.
const STDERR_GRACE: Duration = Duration::from_millis(500);

/// How the server speaks text: from the config's `tts_command`, `tts_timeout_secs`,
/// `tts_max_chars` and `library_max_upload_mb`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsSettings {
    /// The engine's argv; empty for espeak-ng.
    pub command: Vec<String>,
    /// How long the engine may take for one text.
    pub timeout: Duration,
    /// Longest text, in characters (Unicode scalar values, what a browser's `[...text].length`
    /// counts), not bytes: a Vietnamese letter with two diacritics is one character.
    pub max_chars: usize,
    /// Most bytes of audio read from the engine: what an upload may have.
    pub max_output_bytes: u64,
}

impl Default for TtsSettings {
    fn default() -> Self {
        TtsSettings {
            command: Vec::new(),
            timeout: Duration::from_secs(radio_config::DEFAULT_TTS_TIMEOUT_SECS),
            max_chars: radio_config::DEFAULT_TTS_MAX_CHARS,
            max_output_bytes: radio_config::DEFAULT_LIBRARY_MAX_UPLOAD_MB * 1024 * 1024,
        }
    }
}

impl TtsSettings {
    /// The engine's name, for messages and the console: `espeak-ng` or the command's program.
    pub fn engine(&self) -> &str {
        self.command.first().map_or(ESPEAK, String::as_str)
    }
}

/// Why a text did not become audio. [`TtsError::vietnamese`] is what staff read; `Display` is
/// the same in English, for logs and the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TtsError {
    #[error("the text is empty")]
    Empty,
    #[error("the text has {chars} characters, more than the {max} allowed (tts_max_chars)")]
    TooLong { chars: usize, max: usize },
    #[error("the speed {given} is outside {min}-{max} words per minute", min = SPEED_RANGE.0, max = SPEED_RANGE.1)]
    Speed { given: u32 },
    #[error("cannot start the speech engine `{program}`: {reason}")]
    NotStarted { program: String, reason: String },
    #[error("the speech engine `{program}` did not finish within {secs} s (tts_timeout_secs); it was stopped")]
    TimedOut { program: String, secs: u64 },
    #[error("the speech engine `{program}` failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        program: String,
        status: String,
        /// The first line of its stderr.
        stderr: String,
    },
    #[error("the speech engine `{program}` wrote more than {max_mb} MB of audio")]
    TooLarge { program: String, max_mb: u64 },
    #[error("the speech engine `{program}` wrote no audio{}", stderr_suffix(.stderr))]
    NoAudio { program: String, stderr: String },
    #[error("the speech engine `{program}`: {reason}")]
    Io { program: String, reason: String },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

impl TtsError {
    /// The error as staff read it: what is wrong and what to do.
    pub fn vietnamese(&self) -> String {
        let (min, max) = SPEED_RANGE;
        match self {
            TtsError::Empty => {
                "Chưa có nội dung thông báo — hãy gõ hoặc dán văn bản cần đọc.".to_owned()
            }
            TtsError::TooLong { chars, max } => format!(
                "Văn bản quá dài: {chars} ký tự, tối đa {max} ký tự — hãy rút gọn hoặc chia \
                 thành nhiều thông báo."
            ),
            TtsError::Speed { given } => format!(
                "Tốc độ đọc {given} không hợp lệ: phải từ {min} đến {max} từ/phút — hãy chỉnh \
                 lại tốc độ."
            ),
            TtsError::NotStarted { program, .. } => format!(
                "Máy chủ không chạy được chương trình đọc văn bản ({program}) — hãy báo quản trị \
                 viên cài espeak-ng (make deps) hoặc sửa tts_command."
            ),
            TtsError::TimedOut { secs, .. } => format!(
                "Chương trình đọc văn bản không xong sau {secs} giây nên đã bị dừng — hãy thử \
                 lại với văn bản ngắn hơn, hoặc báo quản trị viên (tts_timeout_secs)."
            ),
            TtsError::TooLarge { .. } => "Bản đọc quá lớn so với giới hạn của thư viện — hãy \
                 rút gọn văn bản hoặc chia thành nhiều thông báo."
                .to_owned(),
            TtsError::Failed { .. } | TtsError::NoAudio { .. } | TtsError::Io { .. } => {
                "Chương trình đọc văn bản bị lỗi — hãy thử lại, và báo quản trị viên nếu vẫn \
                 lỗi."
                    .to_owned()
            }
        }
    }

    /// Whether the text or the speed was at fault (the caller can fix it), rather than the
    /// engine or the server.
    pub fn is_request_fault(&self) -> bool {
        matches!(
            self,
            TtsError::Empty
                | TtsError::TooLong { .. }
                | TtsError::Speed { .. }
                | TtsError::TooLarge { .. }
        )
    }
}

/// Checks `text` and `speed` before anything runs: the text as it will be spoken (control
/// characters but line breaks and tabs become spaces), and the speed to use.
pub fn check_request(
    settings: &TtsSettings,
    text: &str,
    speed: Option<u32>,
) -> Result<(String, u32), TtsError> {
    let speed = speed.unwrap_or(DEFAULT_SPEED);
    if !(SPEED_RANGE.0..=SPEED_RANGE.1).contains(&speed) {
        return Err(TtsError::Speed { given: speed });
    }
    if text.trim().is_empty() {
        return Err(TtsError::Empty);
    }
    let chars = text.chars().count();
    if chars > settings.max_chars {
        return Err(TtsError::TooLong {
            chars,
            max: settings.max_chars,
        });
    }
    let clean = text
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    Ok((clean, speed))
}

/// Speaks `text` at `speed` words per minute (default [`DEFAULT_SPEED`]): the engine's audio
/// bytes, a WAV's header sizes made true (engines writing to a pipe cannot seek back to fill
/// them in).
pub async fn synthesize(
    settings: &TtsSettings,
    text: &str,
    speed: Option<u32>,
) -> Result<Vec<u8>, TtsError> {
    let (text, speed) = check_request(settings, text, speed)?;
    let program = settings.engine().to_owned();
    let chars = text.chars().count();
    let mut command = match settings.command.split_first() {
        None => {
            let mut c = Command::new(ESPEAK);
            c.args(["-v", ESPEAK_VOICE, "-s", &speed.to_string(), "--stdout"]);
            c
        }
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest);
            c
        }
    };
    command
        .env(SPEED_ENV, speed.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own group, so that a timeout can kill what a wrapper script started too.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| TtsError::NotStarted {
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let started = std::time::Instant::now();
    let run = talk(&mut child, &program, text, settings.max_output_bytes);
    let outcome = tokio::time::timeout(settings.timeout, run).await;
    let (stdout, stderr, status) = match outcome {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            kill_group(&mut child).await;
            return Err(e);
        }
        Err(_) => {
            kill_group(&mut child).await;
            tracing::warn!(
                "tts: `{program}` still running after {} s: killed",
                settings.timeout.as_secs()
            );
            return Err(TtsError::TimedOut {
                program,
                secs: settings.timeout.as_secs(),
            });
        }
    };
    let stderr_text = String::from_utf8_lossy(&stderr);
    let first_line = stderr_text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default()
        .to_owned();
    if !stderr_text.trim().is_empty() {
        tracing::debug!("tts: `{program}` stderr: {}", stderr_text.trim());
    }
    if !status.success() {
        tracing::warn!("tts: `{program}` failed ({status}): {first_line}");
        return Err(TtsError::Failed {
            program,
            status: status.to_string(),
            stderr: first_line,
        });
    }
    if stdout.is_empty() {
        return Err(TtsError::NoAudio {
            program,
            stderr: first_line,
        });
    }
    let mut audio = stdout;
    seal_wav(&mut audio);
    tracing::info!(
        "tts: `{program}` spoke {chars} characters at {speed} wpm in {} ms: {} bytes",
        started.elapsed().as_millis(),
        audio.len()
    );
    Ok(audio)
}

/// Feeds the text, reads both outputs and reaps the child: `(stdout, stderr, status)`.
async fn talk(
    child: &mut Child,
    program: &str,
    text: String,
    max_output: u64,
) -> Result<(Vec<u8>, Vec<u8>, std::process::ExitStatus), TtsError> {
    let io_err = |e: std::io::Error| TtsError::Io {
        program: program.to_owned(),
        reason: e.to_string(),
    };
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io_err(std::io::Error::other(
            "the child's pipes are missing",
        )));
    };
    let feed = async move {
        // An engine may exit without reading all of it (a fixed announcement, a failure):
        // a closed pipe is its answer, not an error of ours.
        let _ = stdin.write_all(text.as_bytes()).await;
        let _ = stdin.shutdown().await;
        drop(stdin);
    };
    // Drained on its own task: a child blocked writing stderr would never finish stdout.
    let errors = tokio::spawn(read_capped(stderr, STDERR_MAX as u64));
    let (_, out) = tokio::join!(feed, read_capped(stdout, max_output));
    let (out, over) = out.map_err(io_err)?;
    if over {
        errors.abort();
        return Err(TtsError::TooLarge {
            program: program.to_owned(),
            max_mb: max_output / (1024 * 1024),
        });
    }
    let status = child.wait().await.map_err(io_err)?;
    // Something the engine started may still hold stderr open: what came by now is enough.
    let err = match tokio::time::timeout(STDERR_GRACE, errors).await {
        Ok(Ok(Ok((err, _)))) => err,
        _ => Vec::new(),
    };
    Ok((out, err, status))
}

/// Reads `reader` to its end keeping at most `max` bytes: `(bytes, whether more came)`. Past
/// `max` on stdout it stops at once (the caller kills the child); stderr is drained to its end
/// so the child never blocks writing it.
async fn read_capped(
    mut reader: impl AsyncRead + Unpin,
    max: u64,
) -> std::io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut over = false;
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, over));
        }
        let room = usize::try_from(max.saturating_sub(kept.len() as u64)).unwrap_or(usize::MAX);
        if n > room {
            kept.extend_from_slice(&buf[..room]);
            over = true;
            if max > STDERR_MAX as u64 {
                return Ok((kept, true));
            }
        } else {
            kept.extend_from_slice(&buf[..n]);
        }
    }
}

/// Kills the child's whole process group, then the child, and reaps it.
async fn kill_group(child: &mut Child) {
    if let Some(pid) = child.id() {
        // No `unsafe` here (workspace lint): kill(1) signals the group. The group id is the
        // child's pid, which cannot be reused before the wait below.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
    let _ = child.kill().await;
}

/// Makes a WAV's RIFF and `data` sizes match the bytes there are. Engines writing to a pipe put
/// placeholders there (espeak-ng and sox write 0x7ffff000 and the like), which the library's
/// check reads as a recording cut short and a browser as hours of audio. Anything that is not
/// a RIFF WAVE is left alone.
pub fn seal_wav(bytes: &mut [u8]) {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return;
    }
    let total = bytes.len();
    let riff = u32::try_from(total - 8).unwrap_or(u32::MAX);
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut at = 12usize;
    while at + 8 <= total {
        let id = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        let size = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]]);
        let body = at + 8;
        if &id == b"data" {
            let room = u32::try_from(total - body).unwrap_or(u32::MAX);
            if size > room {
                bytes[at + 4..at + 8].copy_from_slice(&room.to_le_bytes());
            }
            return;
        }
        // Chunks are padded to an even length.
        let next = body
            .saturating_add(size as usize)
            .saturating_add(size as usize & 1);
        if next <= at {
            return;
        }
        at = next;
    }
}

/// The `Content-Type` of the engine's audio, from its first bytes.
pub fn audio_content_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"RIFF") {
        "audio/wav"
    } else if bytes.starts_with(b"OggS") {
        "audio/ogg"
    } else if bytes.starts_with(b"ID3")
        || (bytes.len() > 1 && bytes[0] == 0xff && bytes[1] & 0xe0 == 0xe0)
    {
        "audio/mpeg"
    } else if bytes.starts_with(b"fLaC") {
        "audio/flac"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests;
