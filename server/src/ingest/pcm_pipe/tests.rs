use super::*;
use crate::ingest::live_rtp::tests::{aligned_correlation, speech_wav};
use std::f64::consts::PI;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;

struct Collected {
    result: Result<PipeStats, PipeError>,
    pcm: Vec<f32>,
    frames: usize,
    events: Vec<LiveEvent>,
}

/// Runs the pipe ingest over `reader` to the end, collecting everything it sends.
async fn collect<R: AsyncRead + Unpin + Send + 'static>(
    reader: R,
    config: PipeConfig,
    capacity: usize,
) -> Collected {
    let (frame_tx, mut frame_rx) = mpsc::channel(capacity);
    let (event_tx, mut event_rx) = mpsc::channel(16);
    let task = tokio::spawn(run_pcm_pipe_with(
        reader,
        config,
        frame_tx,
        event_tx,
        std::future::pending(),
    ));
    let mut pcm = Vec::new();
    let mut frames = 0;
    while let Some(f) = frame_rx.recv().await {
        pcm.extend_from_slice(&f[..]);
        frames += 1;
    }
    let result = task.await.unwrap();
    let mut events = Vec::new();
    while let Ok(e) = event_rx.try_recv() {
        events.push(e);
    }
    Collected {
        result,
        pcm,
        frames,
        events,
    }
}

fn s16le(interleaved: &[f32]) -> Vec<u8> {
    interleaved
        .iter()
        .flat_map(|&s| ((s * 32_767.0).round() as i16).to_le_bytes())
        .collect()
}

fn receiving() -> LiveEvent {
    LiveEvent::Receiving {
        from: LiveSource::Pipe,
    }
}

fn ended(reason: EndReason) -> LiveEvent {
    LiveEvent::Ended { reason }
}

/// Writes `bytes` into a duplex pipe in awkward pieces that split samples, then
/// closes it.
fn feed(bytes: Vec<u8>, piece: usize) -> tokio::io::DuplexStream {
    let (mut writer, reader) = tokio::io::duplex(4_096);
    tokio::spawn(async move {
        for chunk in bytes.chunks(piece) {
            writer.write_all(chunk).await.unwrap();
        }
        writer.shutdown().await.unwrap();
    });
    reader
}

/// Hands out `data` at most `piece` bytes per read, so that reads split samples.
struct Trickle {
    data: Vec<u8>,
    pos: usize,
    piece: usize,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self
            .piece
            .min(buf.remaining())
            .min(self.data.len() - self.pos);
        let pos = self.pos;
        buf.put_slice(&self.data[pos..pos + n]);
        self.pos += n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn pcm_at_48k_mono_passes_through_exactly() {
    let samples: Vec<f32> = (0..48_000 + 100)
        .map(|i| ((i as f64 * 0.01).sin() * 0.5) as f32)
        .collect();
    let bytes = s16le(&samples);
    let reader = Trickle {
        data: bytes.clone(),
        pos: 0,
        piece: 1_001,
    };
    let got = collect(reader, PipeConfig::default(), 8).await;
    let stats = got.result.unwrap();
    assert_eq!(stats.bytes, bytes.len() as u64);
    assert_eq!(stats.trailing_bytes, 0);
    // 50 whole frames and a zero-padded 51st.
    assert_eq!(got.frames, 51);
    assert_eq!(stats.frames_out, 51);
    for (i, s) in samples.iter().enumerate() {
        let want = f32::from((s * 32_767.0).round() as i16) / 32_768.0;
        assert_eq!(got.pcm[i], want, "sample {i}");
    }
    assert!(got.pcm[samples.len()..].iter().all(|&s| s == 0.0));
    assert_eq!(got.events, vec![receiving(), ended(EndReason::EndOfInput)]);
}

#[tokio::test]
async fn stereo_44k1_is_downmixed_and_resampled() {
    // 1 kHz left, silence right; one trailing odd byte.
    let n = 44_100 * 2;
    let mut interleaved = Vec::with_capacity(2 * n);
    for i in 0..n {
        interleaved.push((0.8 * (2.0 * PI * 1_000.0 * i as f64 / 44_100.0).sin()) as f32);
        interleaved.push(0.0);
    }
    let mut bytes = s16le(&interleaved);
    bytes.push(0x7F);
    let format = PcmFormat {
        rate: 44_100,
        channels: 2,
    };
    let config = PipeConfig {
        format,
        ..PipeConfig::default()
    };
    let got = collect(feed(bytes, 777), config, 8).await;
    let stats = got.result.unwrap();
    assert_eq!(stats.trailing_bytes, 1);
    assert_eq!(got.frames, 100, "2 s at 48 kHz");
    let steady = &got.pcm[4_800..52_800];
    let crossings = steady
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    assert!((999..=1_001).contains(&crossings), "{crossings} Hz");
    let peak = steady.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.4).abs() < 0.01, "peak {peak}");
}

#[tokio::test]
async fn silence_ends_the_broadcast_and_sound_brings_it_back() {
    let mut samples = vec![0.0f32; 48_000 * 3 / 2];
    samples.extend((0..24_000).map(|i| 0.5 * (i as f32 * 0.05).sin()));
    let config = PipeConfig {
        silence_timeout: Duration::from_secs(1),
        ..PipeConfig::default()
    };
    let got = collect(feed(s16le(&samples), 4_096), config, 8).await;
    let stats = got.result.unwrap();
    assert_eq!(
        got.events,
        vec![
            receiving(),
            ended(EndReason::Silence),
            receiving(),
            ended(EndReason::EndOfInput)
        ]
    );
    // 50 silent frames are the timeout, the next 25 are withheld, 25 frames of sound.
    assert_eq!(stats.frames_withheld, 25);
    assert_eq!((got.frames, stats.frames_out), (75, 75));
    assert!(got.pcm[..50 * FRAME_SAMPLES].iter().all(|&s| s == 0.0));
    assert!(got.pcm[50 * FRAME_SAMPLES..].iter().any(|&s| s.abs() > 0.4));
}

#[tokio::test]
async fn a_slow_consumer_slows_the_pipe_instead_of_losing_audio() {
    let samples = vec![0.25f32; 48_000];
    let (frame_tx, mut frame_rx) = mpsc::channel(1);
    let (event_tx, _events) = mpsc::channel(16);
    let task = tokio::spawn(run_pcm_pipe(
        feed(s16le(&samples), 65_536),
        PcmFormat::default(),
        frame_tx,
        event_tx,
        std::future::pending(),
    ));
    let mut n = 0;
    while let Some(_frame) = frame_rx.recv().await {
        n += 1;
        // Paces the consumer: slower than the pipe, which must wait for it.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(n, 50);
    assert_eq!(task.await.unwrap().unwrap().frames_out, 50);
}

#[tokio::test]
async fn shutdown_stops_a_pipe_that_never_ends() {
    // Room for all of it: nothing reads until the ingest starts.
    let (mut writer, reader) = tokio::io::duplex(16_384);
    writer.write_all(&[0u8; 9_600]).await.unwrap();
    let (frame_tx, mut frame_rx) = mpsc::channel(64);
    let (event_tx, mut event_rx) = mpsc::channel(16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_pcm_pipe(
        reader,
        PcmFormat::default(),
        frame_tx,
        event_tx,
        async {
            let _ = stopped.await;
        },
    ));
    for _ in 0..5 {
        frame_rx.recv().await.unwrap();
    }
    stop.send(()).unwrap();
    let stats = task.await.unwrap().unwrap();
    assert_eq!(stats.bytes, 9_600);
    assert_eq!(event_rx.recv().await, Some(receiving()));
    // Stopped, not ended: the writer is still open, so no EndOfInput.
    assert!(event_rx.recv().await.is_none());
    drop(writer);
}

struct Failing(usize);

impl AsyncRead for Failing {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("mixer unplugged")));
        }
        self.0 -= 1;
        buf.put_slice(&[0x10; 1_920]);
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_read_error_ends_the_broadcast_and_is_reported() {
    let got = collect(Failing(3), PipeConfig::default(), 8).await;
    match got.result {
        Err(PipeError::Read { source, stats }) => {
            assert_eq!(source.to_string(), "mixer unplugged");
            assert_eq!(stats.bytes, 3 * 1_920);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(got.frames, 3);
    assert_eq!(got.events, vec![receiving(), ended(EndReason::EndOfInput)]);
}

#[tokio::test]
async fn bad_formats_fail_before_reading() {
    for format in [
        PcmFormat {
            rate: 48_000,
            channels: 0,
        },
        PcmFormat {
            rate: 1,
            channels: 1,
        },
    ] {
        let (frames, _f) = mpsc::channel(1);
        let (events, _e) = mpsc::channel(1);
        let err = run_pcm_pipe(Failing(0), format, frames, events, std::future::pending())
            .await
            .unwrap_err();
        assert!(matches!(err, PipeError::Format(_)), "{err}");
    }
    let (frames, _f) = mpsc::channel(1);
    let (events, _e) = mpsc::channel(1);
    let config = PipeConfig {
        silence_threshold_dbfs: 3.0,
        ..PipeConfig::default()
    };
    let err = run_pcm_pipe_with(Failing(0), config, frames, events, std::future::pending())
        .await
        .unwrap_err();
    assert!(matches!(err, PipeError::Config(_)), "{err}");
}

/// `tool args…` writing raw PCM to stdout, fed to the pipe ingest; `None` where the tool
/// does not run (a skip).
async fn from_child(tool: &str, args: &[&str], format: PcmFormat) -> Option<Collected> {
    if !radio_test_tools::require_tool(tool) {
        return None;
    }
    let mut child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {tool}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let config = PipeConfig {
        format,
        ..PipeConfig::default()
    };
    let got = collect(stdout, config, 16).await;
    assert!(child.wait().await.unwrap().success(), "{tool} failed");
    Some(got)
}

#[tokio::test]
async fn child_process_stdout_from_ffmpeg_and_sox() {
    // ffmpeg makes the 48 kHz WAV both tools read.
    if !radio_test_tools::require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (wav, source) = speech_wav(dir.path());
    let wav = wav.to_str().unwrap();
    let format = PcmFormat {
        rate: 44_100,
        channels: 2,
    };
    let ffmpeg = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        wav,
        "-f",
        "s16le",
        "-ar",
        "44100",
        "-ac",
        "2",
        "-",
    ];
    let sox = [
        wav, "-t", "raw", "-e", "signed", "-b", "16", "-L", "-r", "44100", "-c", "2", "-",
    ];
    for (tool, args) in [("ffmpeg", &ffmpeg[..]), ("sox", &sox[..])] {
        let Some(got) = from_child(tool, args, format).await else {
            continue;
        };
        let stats = got.result.unwrap();
        let (lag, corr) = aligned_correlation(&source, &got.pcm, 2_000);
        eprintln!("{tool} | pcm_pipe: {stats:?}, lag {lag}, correlation {corr:.4}");
        assert!(corr >= 0.99, "{tool}: correlation {corr}");
        assert!(lag <= 2, "{tool}: lag {lag}");
        assert_eq!(got.events, vec![receiving(), ended(EndReason::EndOfInput)]);
        assert_eq!(got.frames, source.len().div_ceil(FRAME_SAMPLES));
    }
}
