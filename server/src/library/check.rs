//! The check every upload passes before it joins the library: the whole file is decoded with
//! the pipeline's own decoder, so a recording that is accepted here is one that airs, to the
//! end.
//!
//! "Truncated" is decided three ways, because containers fail differently when cut short:
//! - the file cannot be opened: an M4A cut anywhere (symphonia walks every top-level box at
//!   open, and the cut `mdat` runs past the end);
//! - the file ends inside an Ogg page or a WebM element, whose own length says more was to
//!   come (`pipeline::cut_short`, at open; a browser's WebM declares no sizes above its blocks);
//! - the demuxer fails partway;
//! - the header declares a duration (WAV, MP3 with a Xing/LAME header) and much less than that
//!   decodes: the data stops early.
//!
//! A file where more than a few packets fail to decode is damaged either way. An Ogg file cut
//! at a page boundary is a shorter, valid Ogg file: nothing in it says more was meant.

use std::io::Read;
use std::path::Path;

use crate::pipeline::decoder::SourceDecoder;
use crate::pipeline::PipelineError;

/// Packets that may fail to decode in an accepted file: a cut-from-a-stream MP3 can start
/// mid-frame, more than that is a damaged file.
const MAX_BAD_PACKETS: u64 = 3;

/// A file is truncated when less than this share of its declared duration decodes...
const MIN_DECODED_SHARE: f64 = 0.97;
/// ...and the gap is at least this long (encoder delay and padding are milliseconds).
const MIN_MISSING_SECS: f64 = 0.5;

/// The level given to digital silence, where the logarithm has none.
pub const SILENCE_DBFS: f64 = -120.0;

/// What the check found in a file that passed.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioCheck {
    /// The container, as an extension (see [`LibraryItem::format`](super::LibraryItem)).
    pub format: String,
    pub codec: String,
    pub duration_secs: f64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
}

/// Why an upload is refused. [`Refusal::vietnamese`] is what staff read; `Display` is the same
/// in English, for logs and the audit log.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("not an audio file the server can read ({reason})")]
    NotAudio { reason: String },
    #[error("the file holds no audio")]
    Empty,
    #[error(
        "the recording is cut short: {decoded_secs:.1} s of the {declared_secs:.1} s its header \
         declares decode"
    )]
    Truncated {
        decoded_secs: f64,
        declared_secs: f64,
    },
    #[error("the recording is damaged or incomplete ({reason})")]
    Corrupt { reason: String },
    #[error("the file is larger than the {max_mb} MB an upload may have")]
    TooLarge { max_mb: u64 },
}

impl Refusal {
    /// The refusal as staff read it: what is wrong and what to do.
    pub fn vietnamese(&self) -> String {
        match self {
            Refusal::NotAudio { .. } => "Tệp không phải âm thanh (MP3, M4A, OGG, OPUS, WEBM, \
                 WAV, FLAC...) — hãy chọn tệp ghi âm khác."
                .to_owned(),
            Refusal::Empty => "Tệp không có âm thanh nào — hãy chọn tệp ghi âm khác.".to_owned(),
            Refusal::Truncated {
                decoded_secs,
                declared_secs,
            } => format!(
                "Tệp ghi âm bị cắt cụt: chỉ đọc được {decoded_secs:.1} giây trong \
                 {declared_secs:.1} giây — hãy tải lên lại tệp đầy đủ (chờ ghi âm hoặc sao chép \
                 xong rồi mới gửi)."
            ),
            Refusal::Corrupt { .. } => "Tệp ghi âm bị hỏng hoặc không đầy đủ — hãy tải lên lại \
                 tệp gốc, hoặc xuất (export) lại bản ghi rồi gửi."
                .to_owned(),
            Refusal::TooLarge { max_mb } => format!(
                "Tệp quá lớn: tối đa {max_mb} MB — hãy cắt ngắn bản ghi hoặc lưu ở dạng nén \
                 (ví dụ MP3 64 kbit/s) rồi tải lên lại."
            ),
        }
    }
}

/// Decodes all of `path` and measures it. `Err(Ok(refusal))` is the file's fault;
/// `Err(Err(message))` is the server's (the file could not be opened or read).
pub fn check_file(path: &Path) -> Result<AudioCheck, Result<Refusal, String>> {
    let refused = |e: PipelineError| match e {
        PipelineError::Open { reason, .. } => Err(reason),
        PipelineError::Unsupported { reason, .. } => Ok(Refusal::NotAudio { reason }),
        PipelineError::Corrupt { reason, .. } => Ok(Refusal::Corrupt { reason }),
        PipelineError::Empty { .. } => Ok(Refusal::Empty),
        PipelineError::Encoder(reason) => Err(reason),
    };
    let (mut decoder, info) = SourceDecoder::open(path).map_err(|e| {
        // A file that starts like a known container but does not open is a damaged recording
        // (an M4A cut before its index), not a file of another kind.
        match refused(e) {
            Ok(Refusal::NotAudio { reason }) if sniff_format(path, "") != "bin" => {
                Ok(Refusal::Corrupt { reason })
            }
            other => other,
        }
    })?;
    let mut decoded_secs = 0.0f64;
    let mut peak = 0.0f32;
    let mut squares = 0.0f64;
    let mut samples = 0u64;
    while let Some(chunk) = decoder.next_chunk().map_err(refused)? {
        if chunk.rate == 0 {
            continue;
        }
        decoded_secs += chunk.samples.len() as f64 / f64::from(chunk.rate);
        samples += chunk.samples.len() as u64;
        for &s in &chunk.samples {
            peak = peak.max(s.abs());
            squares += f64::from(s) * f64::from(s);
        }
    }
    let bad = decoder.skipped_packets();
    if bad > MAX_BAD_PACKETS {
        return Err(Ok(Refusal::Corrupt {
            reason: format!("{bad} packets do not decode"),
        }));
    }
    if let Some(declared_secs) = info.duration_secs.filter(|d| d.is_finite() && *d > 0.0) {
        if decoded_secs < declared_secs * MIN_DECODED_SHARE
            && declared_secs - decoded_secs >= MIN_MISSING_SECS
        {
            return Err(Ok(Refusal::Truncated {
                decoded_secs,
                declared_secs,
            }));
        }
    }
    if samples == 0 {
        return Err(Ok(Refusal::Empty));
    }
    let rms = (squares / samples as f64).sqrt();
    Ok(AudioCheck {
        format: sniff_format(path, &info.codec).to_owned(),
        codec: info.codec,
        duration_secs: round(decoded_secs, 3),
        peak_dbfs: dbfs(f64::from(peak)),
        rms_dbfs: dbfs(rms),
    })
}

/// Level in dBFS to a tenth, [`SILENCE_DBFS`] at the bottom.
fn dbfs(level: f64) -> f64 {
    if level <= 0.0 {
        return SILENCE_DBFS;
    }
    round((20.0 * level.log10()).max(SILENCE_DBFS), 1)
}

fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// The container of `path` from its first bytes (what the uploader named it does not count),
/// as the extension the library stores it under; the codec decides where the bytes are a
/// bare stream.
fn sniff_format(path: &Path, codec: &str) -> &'static str {
    let mut head = [0u8; 12];
    let read = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..read];
    if head.starts_with(b"OggS") {
        return if codec == "opus" { "opus" } else { "ogg" };
    }
    if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        return "webm";
    }
    if head.len() >= 8 && &head[4..8] == b"ftyp" {
        return "m4a";
    }
    if head.starts_with(b"RIFF") && head.len() >= 12 && &head[8..12] == b"WAVE" {
        return "wav";
    }
    if head.starts_with(b"fLaC") {
        return "flac";
    }
    if head.starts_with(b"ID3") {
        return "mp3";
    }
    match codec {
        "mp3" | "mp2" | "mp1" => "mp3",
        "aac" => "aac",
        "flac" => "flac",
        "opus" => "opus",
        "vorbis" => "ogg",
        c if c.starts_with("pcm") => "wav",
        _ => "bin",
    }
}

/// The `Content-Type` a browser's `<audio>` plays a library file of `format` with.
pub fn content_type(format: &str) -> &'static str {
    match format {
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "webm" => "audio/webm",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "aac" => "audio/aac",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_in_dbfs_with_a_floor() {
        assert_eq!(dbfs(1.0), 0.0);
        assert_eq!(dbfs(0.5), -6.0);
        assert_eq!(dbfs(0.0), SILENCE_DBFS);
        assert_eq!(dbfs(1e-9), SILENCE_DBFS);
    }

    #[test]
    fn every_refusal_reads_in_vietnamese_first() {
        for refusal in [
            Refusal::NotAudio { reason: "x".into() },
            Refusal::Empty,
            Refusal::Truncated {
                decoded_secs: 1.0,
                declared_secs: 3.0,
            },
            Refusal::Corrupt { reason: "x".into() },
            Refusal::TooLarge { max_mb: 50 },
        ] {
            let text = refusal.vietnamese();
            assert!(text.starts_with("Tệp"), "{text}");
            assert!(text.contains("hãy"), "says what to do: {text}");
        }
    }

    #[test]
    fn a_text_file_is_not_audio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bai-hat.mp3");
        std::fs::write(
            &path,
            "Đây là một tệp văn bản, không phải âm thanh.\n".repeat(200),
        )
        .unwrap();
        assert!(matches!(
            check_file(&path),
            Err(Ok(Refusal::NotAudio { .. } | Refusal::Corrupt { .. }))
        ));
    }

    #[test]
    fn a_wav_cut_short_is_truncated_and_a_whole_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..16_000 * 4 {
            let s = (i as f32 * 440.0 * std::f32::consts::TAU / 16_000.0).sin() * 0.5;
            writer.write_sample((s * 32_767.0) as i16).unwrap();
        }
        writer.finalize().unwrap();
        let whole = check_file(&path).expect("a whole WAV passes");
        assert_eq!(whole.format, "wav");
        assert!((whole.duration_secs - 4.0).abs() < 0.01, "{whole:?}");
        assert!((whole.peak_dbfs + 6.0).abs() < 0.2, "{whole:?}");
        // A sine's RMS is 3 dB under its peak.
        assert!((whole.rms_dbfs + 9.0).abs() < 0.2, "{whole:?}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() * 6 / 10]).unwrap();
        assert!(
            matches!(check_file(&path), Err(Ok(Refusal::Truncated { .. }))),
            "{:?}",
            check_file(&path)
        );
    }

    #[test]
    fn silence_passes_with_the_floor_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silence.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..48_000 * 2 {
            writer.write_sample(0i16).unwrap();
        }
        writer.finalize().unwrap();
        let check = check_file(&path).expect("silence is accepted");
        assert_eq!(check.peak_dbfs, SILENCE_DBFS);
        assert_eq!(check.rms_dbfs, SILENCE_DBFS);
        assert!((check.duration_secs - 1.0).abs() < 0.01, "{check:?}");
    }
}
