//! Transcoding a programme file to Opus: the server's own pipeline against ffmpeg with libopus,
//! the same file, the same encoder settings.
//!
//! `cargo run --release -p radio-benches --bin transcode_compare -- [RUNS] [--minutes M]`
//! (5 runs and 10 minutes by default)
//!
//! The input is made once per invocation in a temporary directory and never committed: speech
//! from espeak-ng (the Vietnamese bulletin of `opus_fec`), repeated to M minutes over a little
//! pink noise, as 44.1 kHz stereo, the shape of what stations upload. It is written twice: as a
//! 128 kb/s MP3 (what programmes are; the decoder does real work) and as 16-bit WAV (only the
//! resampler and the encoder).
//!
//! - server: `radio_server::pipeline::ProgrammeEncoder`, in this process, exactly as a playback
//!   pulls it (symphonia → downmix → rubato to 48 kHz → libopus), every packet pulled and
//!   dropped: the server streams packets, it writes no file.
//! - ffmpeg: `-c:a libopus` with what `FrameEncoder` gets: 32 kb/s, `voip`, 20 ms frames, mono,
//!   48 kHz, no FEC, and what libopus defaults to where the server sets nothing (the copy
//!   bundled with `audiopus_sys`, 1.3.1, `opus_encoder_init`): complexity 9
//!   (`-compression_level 9`, ffmpeg's own default is 10) and constrained VBR (`-vbr
//!   constrained`, ffmpeg's `on` is unconstrained). Output to an Ogg Opus file in the temporary
//!   directory.
//!
//! The two alternate within each run (which goes first alternates too), so a noisy neighbour
//! on the shared machine slows both. Reported: wall time of each, CPU time (the server's own
//! from `/proc/self/stat`; ffmpeg's from the children's fields of the same file once it is
//! reaped), the medians, and server / ffmpeg.

use clap::Parser;
use radio_benches::summary::median;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use radio_server::pipeline::ProgrammeEncoder;

/// The server's default bitrate (`radio-config`, `bitrate`).
const BITRATE: u32 = 32_000;

const TEXT: &str = "Thông báo của Ủy ban nhân dân xã Bình Hải. Do ảnh hưởng của cơn bão số ba, \
    từ chiều nay đến ngày mai trên địa bàn xã có mưa to đến rất to, gió giật mạnh. \
    Đề nghị bà con không ra khơi, neo đậu tàu thuyền tại nơi an toàn, chằng chống nhà cửa, \
    cắt tỉa cây xanh quanh nhà. Các hộ ở vùng trũng thấp chuẩn bị di dời đến nhà văn hóa thôn. \
    Tiếp theo là chương trình thời sự. Sáng nay, đồng chí Chủ tịch huyện đã đến kiểm tra \
    công tác phòng chống lụt bão tại các xã ven biển, yêu cầu các địa phương chủ động \
    phương án sơ tán dân, bảo đảm an toàn tính mạng và tài sản của nhân dân.";

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Speech over pink noise, `minutes` long, as `input.mp3` and `input.wav` (44.1 kHz stereo).
fn make_inputs(dir: &Path, minutes: u32) -> anyhow::Result<Vec<PathBuf>> {
    let speech = dir.join("speech.wav");
    run(
        Command::new("espeak-ng")
            .args(["-v", "vi", "-s", "140", "-w"])
            .arg(&speech)
            .arg(TEXT),
        "espeak-ng",
    )?;
    let secs = (minutes * 60).to_string();
    let mut inputs = Vec::new();
    for (name, codec) in [
        ("input.mp3", &["-c:a", "libmp3lame", "-b:a", "128k"][..]),
        ("input.wav", &["-c:a", "pcm_s16le"][..]),
    ] {
        let path = dir.join(name);
        run(
            Command::new("ffmpeg")
                .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
                .args(["-stream_loop", "-1", "-i"])
                .arg(&speech)
                .args([
                    "-f",
                    "lavfi",
                    "-i",
                    "anoisesrc=color=pink:amplitude=0.02:r=44100:seed=2026",
                ])
                .args([
                    "-filter_complex",
                    "[0:a]aresample=44100[s];[s][1:a]amix=inputs=2:duration=first:normalize=0",
                ])
                .args(["-ar", "44100", "-ac", "2", "-t", &secs])
                .args(codec)
                .arg(&path),
            "ffmpeg (making the input)",
        )?;
        inputs.push(path);
    }
    Ok(inputs)
}

/// Fields of `/proc/self/stat` after the command name, from field 3 on.
fn self_stat() -> anyhow::Result<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let rest = stat.rsplit_once(')').context("/proc/self/stat")?.1;
    // Field 3 is a letter (the state); everything this reads is numeric and after it.
    Ok(rest
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect())
}

/// CPU seconds (user + system) of this process and of its reaped children, in USER_HZ (100 on
/// Linux): fields 14–15 and 16–17.
fn cpu_seconds() -> anyhow::Result<(f64, f64)> {
    let f = self_stat()?;
    let get = |field: usize| f.get(field - 3).copied().unwrap_or(0) as f64 / 100.0;
    Ok((get(14) + get(15), get(16) + get(17)))
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
    bytes: u64,
}

fn server(input: &Path) -> anyhow::Result<Timing> {
    let (cpu0, _) = cpu_seconds()?;
    let start = Instant::now();
    let mut enc = ProgrammeEncoder::open(input, BITRATE)?;
    let mut bytes = 0u64;
    while let Some(frame) = enc.next_frame()? {
        bytes += frame.payload.len() as u64;
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = cpu_seconds()?;
    Ok(Timing {
        wall,
        cpu: cpu1 - cpu0,
        bytes,
    })
}

fn ffmpeg(input: &Path, output: &Path) -> anyhow::Result<Timing> {
    let (_, children0) = cpu_seconds()?;
    let start = Instant::now();
    run(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(input)
            .args(["-ac", "1", "-ar", "48000", "-c:a", "libopus"])
            .args(["-b:a", &BITRATE.to_string(), "-vbr", "constrained"])
            .args(["-application", "voip", "-frame_duration", "20"])
            .args(["-compression_level", "9", "-fec", "0"])
            .arg(output),
        "ffmpeg",
    )?;
    let wall = start.elapsed().as_secs_f64();
    let (_, children1) = cpu_seconds()?;
    Ok(Timing {
        wall,
        cpu: children1 - children0,
        bytes: std::fs::metadata(output)?.len(),
    })
}

/// Transcoding a programme file to Opus: the server's own pipeline against ffmpeg with libopus,
/// the same file, the same encoder settings (needs ffmpeg and espeak-ng).
#[derive(Debug, Parser)]
struct Cli {
    /// Runs.
    #[arg(default_value_t = 5)]
    runs: usize,
    /// Minutes of speech in the input.
    #[arg(long, value_name = "M", default_value_t = 10)]
    minutes: u32,
}

fn main() -> anyhow::Result<()> {
    let Cli { runs, minutes } = Cli::parse();
    let dir = tempfile::tempdir()?;
    eprintln!(
        "making {minutes} min of 44.1 kHz stereo speech in {}",
        dir.path().display()
    );
    let inputs = make_inputs(dir.path(), minutes)?;
    let output = dir.path().join("ffmpeg.opus");

    let mut summary = Vec::new();
    for input in &inputs {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        println!(
            "\n{name} ({minutes} min, {} bytes)",
            std::fs::metadata(input)?.len()
        );
        println!(
            "{:>4} {:>10} {:>10} {:>10} {:>10} {:>7} {:>12} {:>12}",
            "run", "server s", "srv cpu", "ffmpeg s", "ff cpu", "ratio", "srv bytes", "ff bytes"
        );
        let (mut sw, mut sc, mut fw, mut fc, mut ratios) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for r in 0..runs {
            let (s, f) = if r % 2 == 0 {
                let s = server(input)?;
                (s, ffmpeg(input, &output)?)
            } else {
                let f = ffmpeg(input, &output)?;
                (server(input)?, f)
            };
            println!(
                "{:>4} {:>10.3} {:>10.2} {:>10.3} {:>10.2} {:>7.3} {:>12} {:>12}",
                r + 1,
                s.wall,
                s.cpu,
                f.wall,
                f.cpu,
                s.wall / f.wall,
                s.bytes,
                f.bytes
            );
            sw.push(s.wall);
            sc.push(s.cpu);
            fw.push(f.wall);
            fc.push(f.cpu);
            ratios.push(s.wall / f.wall);
        }
        let line = format!(
            "{name}: median server {:.3} s (cpu {:.2} s), ffmpeg {:.3} s (cpu {:.2} s), \
             server/ffmpeg {:.3} (median of per-run ratios {:.3}; cpu {:.3}), {:.0}× real time",
            median(&sw),
            median(&sc),
            median(&fw),
            median(&fc),
            median(&sw) / median(&fw),
            median(&ratios),
            median(&sc) / median(&fc),
            f64::from(minutes * 60) / median(&sw),
        );
        println!("{line}");
        summary.push(line);
    }
    println!();
    for line in summary {
        println!("{line}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_command_parses() {
        // BENCHMARKS.md, "Transcoding".
        let cli = Cli::try_parse_from(["transcode_compare", "5"]).expect("parses");
        assert_eq!((cli.runs, cli.minutes), (5, 10));
        let cli = Cli::try_parse_from(["transcode_compare", "--minutes", "2"]).expect("parses");
        assert_eq!((cli.runs, cli.minutes), (5, 2));
    }
}
