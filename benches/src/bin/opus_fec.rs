//! Opus in-band FEC against packet-loss concealment, offline: the alternative to a reliable
//! stream, measured on real speech.
//!
//! `cargo run -p radio-benches --bin opus_fec -- [--seed X] [--runs N]`
//!
//! Speech: the demo's bundled bulletin (`server/assets/ban-tin-mau.ogg`, a chime then a
//! Vietnamese announcement) followed by a minute of Vietnamese from espeak-ng, both converted to
//! 48 kHz mono by ffmpeg. It is encoded twice with libopus as the server does (voice, mono, 20 ms,
//! 32 kb/s): without FEC (today's setting) and with in-band FEC and an expected loss of 10 %.
//! Each stream then loses the same seeded 10 % of its packets (independent, and in bursts) and
//! is decoded as an agent would over an unreliable transport: a lost frame is rebuilt from the
//! FEC data in the next packet when that one arrived, and concealed (PLC) otherwise.
//!
//! Quality is segmental SNR (per 20 ms frame, clamped to [-10, 35] dB, speech frames only):
//! against the same stream decoded without loss (what concealment or FEC costs on the frames
//! they replace), and against the original (what the listener gets overall).

use clap::Parser;
use radio_benches::summary::median;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use opus::{Application, Bitrate, Channels, Decoder, Encoder};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RATE: u32 = 48_000;
const FRAME: usize = 960;
const BITRATE: i32 = 32_000;
/// Frames whose lossless decode is quieter than this (RMS, dBFS) are pauses: their SNR says
/// nothing about speech and they are left out.
const SILENCE_DBFS: f64 = -45.0;

const TEXT: &str = "Thông báo của Ủy ban nhân dân xã Bình Hải. Do ảnh hưởng của cơn bão số ba, \
    từ chiều nay đến ngày mai trên địa bàn xã có mưa to đến rất to, gió giật mạnh. \
    Đề nghị bà con không ra khơi, neo đậu tàu thuyền tại nơi an toàn, chằng chống nhà cửa, \
    cắt tỉa cây xanh quanh nhà. Các hộ ở vùng trũng thấp chuẩn bị di dời đến nhà văn hóa thôn. \
    Lực lượng dân quân trực chiến hai mươi bốn trên hai mươi bốn giờ. \
    Mọi thông tin cần hỗ trợ xin liên hệ số điện thoại của Ủy ban nhân dân xã. \
    Tiếp theo là chương trình thời sự. Sáng nay, đồng chí Chủ tịch huyện đã đến kiểm tra \
    công tác phòng chống lụt bão tại các xã ven biển, yêu cầu các địa phương chủ động \
    phương án sơ tán dân, bảo đảm an toàn tính mạng và tài sản của nhân dân.";

fn to_pcm(input: &Path) -> anyhow::Result<Vec<f32>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-ac", "1", "-ar", "48000", "-f", "s16le", "-"])
        .output()
        .context("run ffmpeg")?;
    if !out.status.success() {
        bail!(
            "ffmpeg failed on {}: {}",
            input.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out
        .stdout
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect())
}

fn speech() -> anyhow::Result<Vec<f32>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?
        .to_path_buf();
    let mut pcm = to_pcm(&root.join("server/assets/ban-tin-mau.ogg"))?;
    let dir = tempfile::tempdir()?;
    let wav = dir.path().join("espeak.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "vi", "-s", "140", "-w"])
        .arg(&wav)
        .arg(TEXT)
        .status()
        .context("run espeak-ng")?;
    if !status.success() {
        bail!("espeak-ng failed");
    }
    pcm.extend(to_pcm(&wav)?);
    let whole = pcm.len() / FRAME * FRAME;
    pcm.truncate(whole);
    Ok(pcm)
}

struct Stream {
    packets: Vec<Vec<u8>>,
    lookahead: usize,
}

impl Stream {
    fn kbps(&self) -> f64 {
        let bytes: usize = self.packets.iter().map(Vec::len).sum();
        bytes as f64 * 8.0 / (self.packets.len() as f64 * 0.02) / 1000.0
    }

    /// Packets per Opus mode, from the TOC byte (RFC 6716 §3.1): FEC data (LBRR) exists only in
    /// SILK and hybrid frames.
    fn modes(&self) -> [usize; 3] {
        let mut m = [0; 3];
        for p in &self.packets {
            let config = p.first().map_or(31, |toc| toc >> 3);
            m[match config {
                0..=11 => 0,
                12..=15 => 1,
                _ => 2,
            }] += 1;
        }
        m
    }
}

fn encode(pcm: &[f32], fec: bool) -> anyhow::Result<Stream> {
    let mut enc = Encoder::new(RATE, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::Bits(BITRATE))?;
    enc.set_inband_fec(fec)?;
    enc.set_packet_loss_perc(if fec { 10 } else { 0 })?;
    let lookahead = usize::try_from(enc.get_lookahead()?)?;
    let mut out = vec![0u8; 4000];
    let mut packets = Vec::new();
    for frame in pcm.chunks_exact(FRAME) {
        let n = enc.encode_float(frame, &mut out)?;
        packets.push(out[..n].to_vec());
    }
    Ok(Stream { packets, lookahead })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Received,
    /// Lost, rebuilt from the next packet's FEC data.
    Fec,
    /// Lost, concealed.
    Plc,
}

/// Decodes `stream` with the packets where `lost` is true missing; FEC from the next packet
/// when `use_fec`.
fn decode(stream: &Stream, lost: &[bool], use_fec: bool) -> anyhow::Result<(Vec<f32>, Vec<Slot>)> {
    let mut dec = Decoder::new(RATE, Channels::Mono)?;
    let mut pcm = Vec::with_capacity(stream.packets.len() * FRAME);
    let mut slots = Vec::with_capacity(stream.packets.len());
    let mut frame = [0f32; FRAME];
    for (i, packet) in stream.packets.iter().enumerate() {
        let slot = if !lost[i] {
            dec.decode_float(packet, &mut frame, false)?;
            Slot::Received
        } else if use_fec && i + 1 < lost.len() && !lost[i + 1] {
            // The next packet is in hand (the playout delay holds several frames): its LBRR
            // part is this frame, coarser.
            dec.decode_float(&stream.packets[i + 1], &mut frame, true)?;
            Slot::Fec
        } else {
            dec.decode_float(&[], &mut frame, false)?;
            Slot::Plc
        };
        pcm.extend_from_slice(&frame);
        slots.push(slot);
    }
    Ok((pcm, slots))
}

fn rms_dbfs(x: &[f32]) -> f64 {
    let e = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64;
    10.0 * e.max(1e-20).log10()
}

/// Segmental SNR of `test` against `reference` over the frames `pick` chooses and whose
/// `loud` reference is speech, not a pause.
fn seg_snr(
    reference: &[f32],
    test: &[f32],
    loud: &[f32],
    pick: impl Fn(usize) -> bool,
) -> (f64, usize) {
    let mut sum = 0.0;
    let mut n = 0;
    let frames = reference.len().min(test.len()).min(loud.len()) / FRAME;
    for f in (0..frames).filter(|f| pick(*f)) {
        let r = &reference[f * FRAME..(f + 1) * FRAME];
        if rms_dbfs(&loud[f * FRAME..(f + 1) * FRAME]) < SILENCE_DBFS {
            continue;
        }
        let t = &test[f * FRAME..(f + 1) * FRAME];
        let signal: f64 = r.iter().map(|v| f64::from(*v).powi(2)).sum();
        let noise: f64 = r
            .iter()
            .zip(t)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum();
        let snr = 10.0 * (signal / noise.max(1e-20)).log10();
        sum += snr.clamp(-10.0, 35.0);
        n += 1;
    }
    (if n == 0 { f64::NAN } else { sum / n as f64 }, n)
}

fn random_loss(n: usize, p: f64, rng: &mut StdRng) -> Vec<bool> {
    (0..n).map(|_| rng.gen_bool(p)).collect()
}

/// Gilbert: bad spells of 4 packets on average (80 ms), entered so that 10 % are lost.
fn burst_loss(n: usize, rng: &mut StdRng) -> Vec<bool> {
    let (p_bad_to_good, loss) = (0.25, 0.10);
    let p_good_to_bad = loss * p_bad_to_good / (1.0 - loss);
    let mut bad = false;
    (0..n)
        .map(|_| {
            bad = if bad {
                !rng.gen_bool(p_bad_to_good)
            } else {
                rng.gen_bool(p_good_to_bad)
            };
            bad
        })
        .collect()
}

/// Opus in-band FEC against packet-loss concealment, offline, on real speech (needs ffmpeg and
/// espeak-ng).
#[derive(Debug, Parser)]
struct Cli {
    /// Seed of the losses.
    #[arg(long, value_name = "X", default_value_t = 1)]
    seed: u64,
    /// Runs.
    #[arg(long, value_name = "N", default_value_t = 5)]
    runs: u64,
}

fn main() -> anyhow::Result<()> {
    let Cli { seed, runs } = Cli::parse();
    let original = speech()?;
    let frames = original.len() / FRAME;
    let plain = encode(&original, false)?;
    let fec = encode(&original, true)?;
    let (plain_clean, _) = decode(&plain, &vec![false; frames], false)?;
    let (fec_clean, _) = decode(&fec, &vec![false; frames], false)?;
    // The decoder's output lags the input by the encoder's lookahead.
    let lag = plain.lookahead;
    let aligned = |decoded: &[f32]| decoded[lag..].to_vec();
    let orig = &original[..original.len() - lag];
    let all = |_: usize| true;
    println!(
        "speech: {:.1} s, {frames} frames; encoder lookahead {lag} samples",
        frames as f64 * 0.02
    );
    for (name, s, clean) in [
        ("no FEC", &plain, &plain_clean),
        ("FEC, loss 10 %", &fec, &fec_clean),
    ] {
        let [silk, hybrid, celt] = s.modes();
        let (snr, n) = seg_snr(orig, &aligned(clean), orig, all);
        println!(
            "{name:<15} {:.2} kb/s; packets SILK {silk}, hybrid {hybrid}, CELT {celt}; lossless segSNR vs original {snr:.2} dB over {n} speech frames",
            s.kbps()
        );
    }
    println!();
    println!("| loss | run | lost | FEC-recovered | concealed (FEC stream) | concealed (no-FEC stream) | segSNR of the lost frames vs lossless: FEC-recovered / PLC in FEC stream / PLC in no-FEC stream | overall segSNR vs original: reliable / FEC stream / no-FEC stream |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut summary: Vec<(&str, Vec<[f64; 9]>)> =
        vec![("random 10 %", vec![]), ("bursts 10 %", vec![])];
    for run in 0..runs {
        for (k, (pattern, rows)) in summary.iter_mut().enumerate() {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000) + run * 10 + k as u64);
            let lost = if k == 0 {
                random_loss(frames, 0.10, &mut rng)
            } else {
                burst_loss(frames, &mut rng)
            };
            let (fec_out, fec_slots) = decode(&fec, &lost, true)?;
            let (plc_out, plc_slots) = decode(&plain, &lost, false)?;
            let count = |slots: &[Slot], s: Slot| slots.iter().filter(|x| **x == s).count();
            let recovered = count(&fec_slots, Slot::Fec);
            let concealed_fec = count(&fec_slots, Slot::Plc);
            let concealed_plain = count(&plc_slots, Slot::Plc);
            // The lost frames against the same stream decoded without loss.
            let (snr_fec, _) = seg_snr(&fec_clean, &fec_out, &fec_clean, |f| {
                fec_slots[f] == Slot::Fec
            });
            let (snr_fec_plc, _) = seg_snr(&fec_clean, &fec_out, &fec_clean, |f| {
                fec_slots[f] == Slot::Plc
            });
            let (snr_plc, _) = seg_snr(&plain_clean, &plc_out, &plain_clean, |f| {
                plc_slots[f] == Slot::Plc
            });
            let (whole_clean, _) = seg_snr(orig, &aligned(&plain_clean), orig, all);
            let (whole_fec, _) = seg_snr(orig, &aligned(&fec_out), orig, all);
            let (whole_plc, _) = seg_snr(orig, &aligned(&plc_out), orig, all);
            let lost_n = lost.iter().filter(|l| **l).count();
            println!(
                "| {pattern} | {run} | {lost_n} | {recovered} | {concealed_fec} | {concealed_plain} | {snr_fec:.2} / {snr_fec_plc:.2} / {snr_plc:.2} dB | {whole_clean:.2} / {whole_fec:.2} / {whole_plc:.2} dB |"
            );
            rows.push([
                lost_n as f64,
                recovered as f64,
                concealed_fec as f64,
                concealed_plain as f64,
                snr_fec,
                snr_fec_plc,
                snr_plc,
                whole_fec,
                whole_plc,
            ]);
        }
    }
    println!();
    println!("medians over {runs} seeded loss patterns:");
    for (pattern, rows) in &summary {
        let m = |i: usize| median(&rows.iter().map(|r| r[i]).collect::<Vec<_>>());
        println!(
            "| {pattern} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} / {:.2} / {:.2} dB | {:.2} / {:.2} dB |",
            m(0),
            m(1),
            m(2),
            m(3),
            m(4),
            m(5),
            m(6),
            m(7),
            m(8)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_command_parses() {
        // BENCHMARKS.md, "Opus in-band FEC instead".
        let cli = Cli::try_parse_from(["opus_fec", "--runs", "5"]).expect("parses");
        assert_eq!((cli.seed, cli.runs), (1, 5));
    }
}
