use super::*;

#[test]
fn urls_are_validated() {
    let ok = validate_relay_url("http://radio.example.vn:8000/live.mp3").unwrap();
    assert_eq!(ok.to_string(), "http://radio.example.vn:8000/live.mp3");
    assert_eq!(ok.host(), "radio.example.vn");
    assert!(!ok.is_https());
    assert!(validate_relay_url("HTTPS://radio.example.vn/a")
        .unwrap()
        .is_https());
    for (bad, why) in [
        ("", "empty"),
        ("radio.example.vn/live", "http"),
        ("ftp://radio.example.vn/live", "scheme"),
        ("rtsp://radio.example.vn/live", "scheme"),
        ("http:///live", "no host"),
        ("http://radio example/live", "space"),
        (" http://radio.example.vn/live", "space"),
        ("/live.mp3", "http"),
    ] {
        let e = validate_relay_url(bad).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, RelayError::InvalidUrl { .. }), "{bad}: {msg}");
        assert!(
            msg.contains(&format!("{:?}", bad)),
            "{msg} must name the URL"
        );
        assert!(msg.contains(why), "{bad}: {msg} should mention {why}");
    }
}

#[test]
fn icecast_credentials_are_accepted_and_never_shown() {
    let url = validate_relay_url("http://source:hackme@icecast.vn:8000/live").unwrap();
    assert_eq!(url.to_string(), "http://source:***@icecast.vn:8000/live");
    let bad = validate_relay_url("rtsp://source:hackme@icecast.vn/live").unwrap_err();
    assert!(!bad.to_string().contains("hackme"), "{bad}");
    assert!(bad.to_string().contains("source:***@"), "{bad}");
}

#[test]
fn content_type_picks_the_hint() {
    let url = validate_relay_url("http://h/stream.OGG").unwrap();
    let bare = validate_relay_url("http://h/stream").unwrap();
    let hint = |ct: Option<&str>, u: &RelayUrl| format_hint(ct, u);
    assert_eq!(
        hint(Some("audio/mpeg"), &url).unwrap().as_deref(),
        Some("mp3")
    );
    assert_eq!(
        hint(Some("Audio/AACP; charset=x"), &url)
            .unwrap()
            .as_deref(),
        Some("aac")
    );
    assert_eq!(
        hint(Some("audio/aac"), &bare).unwrap().as_deref(),
        Some("aac")
    );
    assert_eq!(
        hint(Some("application/ogg"), &bare).unwrap().as_deref(),
        Some("ogg")
    );
    assert_eq!(
        hint(Some("audio/ogg"), &bare).unwrap().as_deref(),
        Some("ogg")
    );
    // Unknown or missing types fall back to the URL's extension.
    assert_eq!(
        hint(Some("application/octet-stream"), &url)
            .unwrap()
            .as_deref(),
        Some("ogg")
    );
    assert_eq!(hint(None, &url).unwrap().as_deref(), Some("ogg"));
    assert_eq!(hint(None, &bare).unwrap(), None);
    let err = hint(Some("text/html; charset=utf-8"), &url).unwrap_err();
    assert!(err.contains("text/html"), "{err}");
    let err = hint(Some("audio/x-mpegurl"), &url).unwrap_err();
    assert!(err.contains("playlist"), "{err}");
}

#[test]
fn backoff_grows_with_jitter_within_bounds() {
    let min = Duration::from_secs(1);
    let max = Duration::from_secs(30);
    let mut rng = rand::thread_rng();
    for streak in 0..40 {
        let delays: Vec<Duration> = (0..200)
            .map(|_| backoff_delay(streak, min, max, &mut rng))
            .collect();
        let expected = (1u64 << streak.min(16)).min(30) as f64;
        for d in &delays {
            assert!(*d >= min && *d <= max, "streak {streak}: {d:?}");
            let s = d.as_secs_f64();
            assert!(
                s >= (expected * 0.8).max(1.0) - 1e-9 && s <= (expected * 1.2).min(30.0) + 1e-9,
                "streak {streak}: {s} vs {expected}"
            );
        }
        if (1..=4).contains(&streak) {
            let distinct = delays
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len();
            assert!(distinct > 50, "streak {streak}: no jitter");
        }
    }
}

#[test]
fn config_settings_are_checked() {
    let ok = RelayConfig::new("http://127.0.0.1:1/x.mp3");
    assert!(ok.check_settings().is_ok());
    let mut zero = ok.clone();
    zero.stall_timeout = Duration::ZERO;
    assert!(zero
        .check_settings()
        .unwrap_err()
        .to_string()
        .contains("stall_timeout"));
    let mut inverted = ok.clone();
    inverted.backoff_min = Duration::from_secs(60);
    assert!(inverted
        .check_settings()
        .unwrap_err()
        .to_string()
        .contains("backoff_min"));
    let mut huge = ok.clone();
    huge.backoff_max = Duration::MAX;
    assert!(huge.check_settings().is_err());
    let mut missing = ok;
    missing.fallback = Fallback::File("/nonexistent/fallback.mp3".into());
    let e = missing.validate().unwrap_err();
    assert!(matches!(e, RelayError::FallbackFile { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/fallback.mp3"), "{e}");
}

// ---- Streaming tests: a real HTTP server on loopback, fixtures made with ffmpeg ----

use std::f64::consts::PI;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::AtomicUsize;

const RATE: usize = 48_000;

/// Log lines of every relay in this test binary, captured by a global subscriber because
/// the relay logs from its own threads. Tests tell theirs apart by the URL (unique port).
static LOG: Mutex<Vec<String>> = Mutex::new(Vec::new());
static CAPTURE: OnceLock<bool> = OnceLock::new();

struct Capture;

struct Line(String);

impl tracing::field::Visit for Line {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, " {value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        *meta.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        LOG.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// False if some other test installed a global subscriber first: log checks are skipped.
fn capture_logs() -> bool {
    *CAPTURE.get_or_init(|| tracing::subscriber::set_global_default(Capture).is_ok())
}

fn log_lines(needle: &str) -> Vec<String> {
    LOG.lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

fn assert_logged(url: &str, level: &str, text: &str) {
    if !capture_logs() {
        radio_test_tools::skip(&format!(
            "another global tracing subscriber is installed: {level} {text:?} not checked"
        ));
        return;
    }
    let lines = log_lines(url);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(level) && l.contains(text)),
        "no {level} line with {text:?} for {url}; got {lines:#?}"
    );
}

/// Sum of three unrelated tones under a slow, irregular envelope: aperiodic over the test's
/// span, so a correlation peak can only come from the right alignment.
fn test_signal(secs: f64) -> Vec<f32> {
    let n = (secs * RATE as f64) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let env = 0.6 + 0.25 * (2.0 * PI * 0.7 * t).sin() + 0.15 * (2.0 * PI * 1.9 * t).sin();
            let s = 0.3 * (2.0 * PI * 313.0 * t).sin()
                + 0.25 * (2.0 * PI * 737.0 * t + 0.4).sin()
                + 0.2 * (2.0 * PI * 1559.0 * t + 1.1).sin();
            (env * s) as f32
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample((s * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Encodes `wav` with ffmpeg; a missing ffmpeg fails the test (as in `pipeline`).
fn encode(wav: &Path, out: &Path, args: &[&str]) -> Vec<u8> {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(wav)
        .args(args)
        .arg(out)
        .status()
        .expect("ffmpeg must be installed to run the relay tests");
    assert!(status.success(), "ffmpeg failed to make {}", out.display());
    std::fs::read(out).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    signal: Vec<f32>,
    data: Vec<u8>,
    secs: f64,
}

fn fixture(name: &str, args: &[&str], secs: f64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let signal = test_signal(secs);
    let wav = dir.path().join("signal.wav");
    write_wav(&wav, &signal);
    let data = encode(&wav, &dir.path().join(name), args);
    Fixture {
        _dir: dir,
        signal,
        data,
        secs,
    }
}

fn mp3_fixture() -> Fixture {
    // Stereo 44.1 kHz exercises the downmix and the resampler.
    let args = [
        "-ar",
        "44100",
        "-ac",
        "2",
        "-c:a",
        "libmp3lame",
        "-b:a",
        "128k",
        "-f",
        "mp3",
    ];
    fixture("s.mp3", &args, 4.0)
}

/// Loopback HTTP server; each connection is handed to `handler` with its index.
struct TestServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    connections: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    fn start<F>(handler: F) -> Self
    where
        F: Fn(usize, TcpStream, &AtomicBool) + Send + Sync + 'static,
    {
        Self::start_on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
    }

    fn start_on<F>(listener: TcpListener, handler: F) -> Self
    where
        F: Fn(usize, TcpStream, &AtomicBool) + Send + Sync + 'static,
    {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let handler = Arc::new(handler);
        let (stop2, conns2) = (stop.clone(), connections.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let n = conns2.fetch_add(1, Ordering::SeqCst);
                        let (h, st) = (handler.clone(), stop2.clone());
                        std::thread::spawn(move || h(n, stream, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        TestServer {
            addr,
            stop,
            connections,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_request(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut req = Vec::new();
    let mut byte = [0u8; 1];
    while !req.ends_with(b"\r\n\r\n") && req.len() < 8192 {
        match stream.read(&mut byte) {
            Ok(1) => req.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&req).into_owned()
}

#[derive(Clone, Copy)]
enum Pace {
    /// At the stream's own bitrate, 20 ms of bytes at a time (like Icecast after its burst).
    RealTime { bytes_per_sec: usize },
    /// `secs` of audio at once, then a wait of that long.
    Bursts { bytes_per_sec: usize, secs: f64 },
}

#[derive(Clone, Copy)]
enum After {
    Close,
    /// Keeps the socket open and silent until the server stops.
    Hold,
}

/// Answers like Icecast: HTTP/1.0, no length, body until close. Returns false once the client
/// has gone.
fn serve(
    stream: &mut TcpStream,
    stop: &AtomicBool,
    content_type: &str,
    data: &[u8],
    pace: Pace,
    after: After,
) -> bool {
    let head = format!("HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nServer: test\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let (step, wait) = match pace {
        Pace::RealTime { bytes_per_sec } => (bytes_per_sec / 50, Duration::from_millis(20)),
        Pace::Bursts {
            bytes_per_sec,
            secs,
        } => (
            (bytes_per_sec as f64 * secs) as usize,
            Duration::from_secs_f64(secs),
        ),
    };
    let start = Instant::now();
    for (i, chunk) in data.chunks(step.max(1)).enumerate() {
        if stop.load(Ordering::Relaxed) || stream.write_all(chunk).is_err() {
            return false;
        }
        let due = start + wait * (i as u32 + 1);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    if let After::Hold = after {
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    true
}

/// A port on `ip` with nothing listening. Tests run in parallel and the loopback servers bind
/// `127.0.0.1:0`, which could be handed a port just released here; other loopback addresses
/// (all of 127/8 is local on Linux), one per test, keep such ports out of that pool.
fn refusing_addr(ip: &str) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

fn bytes_per_sec(f: &Fixture) -> usize {
    (f.data.len() as f64 / f.secs) as usize
}

fn fast_config(url: String) -> RelayConfig {
    RelayConfig {
        connect_timeout: Duration::from_secs(2),
        stall_timeout: Duration::from_secs(2),
        backoff_min: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        ..RelayConfig::new(url)
    }
}

struct Running {
    handle: RelayHandle,
    rx: mpsc::Receiver<Box<PcmFrame>>,
    _shutdown: watch::Sender<bool>,
}

fn start(config: RelayConfig) -> Running {
    capture_logs();
    let (tx, rx) = mpsc::channel(64);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let handle = spawn_relay(config, tx, shutdown_rx).unwrap();
    Running {
        handle,
        rx,
        _shutdown: shutdown_tx,
    }
}

/// How long a test waits for something the relay is expected to do: far longer than it
/// takes, so that only a relay that never does it fails, not a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

impl Running {
    /// Receives frames until `done` holds for the relay, or panics after [`WAIT`]; returns
    /// every frame received, including those queued when `done` became true.
    fn collect_until(
        &mut self,
        what: &str,
        mut done: impl FnMut(&RelayHandle, &[f32]) -> bool,
    ) -> Vec<f32> {
        let end = Instant::now() + WAIT;
        let mut pcm = Vec::new();
        while !done(&self.handle, &pcm) {
            assert!(
                Instant::now() < end,
                "{what}: not within {WAIT:?}; state {:?}, stats {:?}",
                self.handle.state(),
                self.handle.stats()
            );
            match self.rx.try_recv() {
                Ok(frame) => pcm.extend_from_slice(&frame[..]),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
        // The counters count frames put into the channel: those still queued belong to
        // what `done` saw.
        while let Ok(frame) = self.rx.try_recv() {
            pcm.extend_from_slice(&frame[..]);
        }
        pcm
    }
}

fn first_sound(x: &[f32]) -> usize {
    x.iter().position(|s| s.abs() > 1e-4).unwrap_or(x.len())
}

/// Best normalised correlation of 0.5 s of `reference` (from 0.5 s in) against `out`,
/// aligned on the first non-silent sample of `out` and searched ±50 ms around it.
fn aligned_correlation(reference: &[f32], out: &[f32]) -> f64 {
    let s0 = first_sound(out) as isize;
    let (t0, len, span) = (RATE / 2, RATE / 2, 2_400isize);
    let seg = &reference[t0..t0 + len];
    let seg_norm = seg
        .iter()
        .map(|&r| f64::from(r).powi(2))
        .sum::<f64>()
        .sqrt();
    let mut best = 0.0f64;
    for lag in -span..=span {
        let start = s0 + t0 as isize + lag;
        let Some(o) = usize::try_from(start)
            .ok()
            .and_then(|s| out.get(s..s + len))
        else {
            continue;
        };
        let (mut dot, mut energy) = (0.0f64, 0.0f64);
        for (&a, &r) in o.iter().zip(seg) {
            dot += f64::from(a) * f64::from(r);
            energy += f64::from(a) * f64::from(a);
        }
        if energy > 0.0 {
            best = best.max(dot / (energy.sqrt() * seg_norm));
        }
    }
    best
}

/// Relays `f` served as `pace` and checks the audio against the source signal.
fn check_format(f: Fixture, content_type: &'static str, path: &str, pace: Pace) {
    let data = Arc::new(f.data.clone());
    let server = TestServer::start(move |_, mut s, stop| {
        read_request(&mut s);
        serve(&mut s, stop, content_type, &data, pace, After::Hold);
    });
    let url = server.url(path);
    let mut relay = start(fast_config(url.clone()));
    // 1.2 s of upstream audio after the first sound covers the compared window.
    let pcm = relay.collect_until("1.2 s of upstream audio", |_, pcm| {
        pcm.len() > first_sound(pcm) + RATE * 6 / 5
    });
    let stats = relay.handle.stats();
    assert!(matches!(relay.handle.state(), RelayState::Relaying { .. }));
    assert_eq!(stats.failures, 0, "{stats:?}");
    assert_eq!(stats.connects, 1, "{stats:?}");
    // The connecting silence comes first, and the upstream audio right after it.
    let silence_end = stats.frames_fallback as usize * FRAME_SAMPLES;
    assert!(pcm[..silence_end].iter().all(|&s| s == 0.0));
    let s0 = first_sound(&pcm);
    assert!(
        s0 >= silence_end && s0 - silence_end < RATE / 10,
        "sound at {s0}, silence until {silence_end}"
    );
    assert!(pcm.iter().all(|s| (-1.0..=1.0).contains(s)));
    let corr = aligned_correlation(&f.signal, &pcm);
    eprintln!("{url}: correlation {corr:.3}");
    assert!(corr >= 0.9, "{url}: correlation {corr:.3} < 0.9");
    assert_logged(&url, "INFO", "relaying upstream");
    relay.handle.stop();
}

#[test]
fn relays_mp3_paced_in_real_time() {
    let f = mp3_fixture();
    let bps = bytes_per_sec(&f);
    check_format(
        f,
        "audio/mpeg",
        "/live",
        Pace::RealTime { bytes_per_sec: bps },
    );
}

#[test]
fn relays_adts_aac_in_bursts() {
    let args = [
        "-ar", "44100", "-ac", "2", "-c:a", "aac", "-b:a", "128k", "-f", "adts",
    ];
    let f = fixture("s.aac", &args, 4.0);
    let bps = bytes_per_sec(&f);
    let pace = Pace::Bursts {
        bytes_per_sec: bps,
        secs: 0.5,
    };
    check_format(f, "audio/aacp", "/live", pace);
}

#[test]
fn relays_ogg_vorbis_sent_at_once() {
    let args = [
        "-ar",
        "22050",
        "-ac",
        "1",
        "-c:a",
        "libvorbis",
        "-q:a",
        "6",
        "-f",
        "ogg",
    ];
    let f = fixture("s.ogg", &args, 4.0);
    // No content type at all: the hint comes from the URL, the format from the bytes.
    let pace = Pace::Bursts {
        bytes_per_sec: f.data.len(),
        secs: 1.0,
    };
    check_format(f, "application/octet-stream", "/stream.ogg", pace);
}

/// The fallback keeps coming, `frames` more of it, and never faster than real time: they
/// take at least their 20 ms each, but for the few the relay catches up on after a stall
/// (`MAX_FALLBACK_LAG`). A loaded machine can only make them take longer.
fn assert_paced(relay: &mut Running, frames: u64) {
    let t = Instant::now();
    let before = relay.handle.stats().frames_fallback;
    relay.collect_until("fallback frames", |h, _| {
        h.stats().frames_fallback >= before + frames
    });
    let n = relay.handle.stats().frames_fallback - before;
    let took = t.elapsed();
    let catch_up = MAX_FALLBACK_LAG.as_millis() as u64 / 20 + 5;
    assert!(
        n <= took.as_millis() as u64 / 20 + catch_up,
        "{n} fallback frames in {took:?}: faster than real time"
    );
}

/// Polls `done` until it holds; panics after [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < end, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn connection_refused_plays_fallback_then_recovers() {
    let f = mp3_fixture();
    let bps = bytes_per_sec(&f);
    // A port that refuses: bound for its number, then released.
    let addr = refusing_addr("127.0.0.2");
    let url = format!("http://{addr}/live.mp3");
    let mut relay = start(fast_config(url.clone()));
    // That the first frames do not wait for the connection is
    // `silence_plays_while_the_upstream_has_not_answered`.
    relay.collect_until("first frame", |_, pcm| !pcm.is_empty());
    relay.collect_until("a failure", |h, _| h.stats().failures >= 1);
    match relay.handle.state() {
        RelayState::Fallback { last_error, .. } => {
            assert!(
                matches!(last_error, RelayError::Connect { .. }),
                "{last_error}"
            )
        }
        other => panic!("expected fallback, got {other:?}"),
    }
    assert_paced(&mut relay, 50);
    relay.collect_until("a retry", |h, _| h.stats().failures >= 2);
    assert_eq!(relay.handle.stats().frames_relayed, 0);
    assert_logged(&url, "WARN", "cannot connect");

    // The upstream appears on that port.
    let data = Arc::new(f.data);
    let _server = TestServer::start_on(TcpListener::bind(addr).unwrap(), move |_, mut s, stop| {
        read_request(&mut s);
        serve(
            &mut s,
            stop,
            "audio/mpeg",
            &data,
            Pace::RealTime { bytes_per_sec: bps },
            After::Hold,
        );
    });
    relay.collect_until("recovery", |h, _| h.stats().frames_relayed >= 10);
    assert!(matches!(relay.handle.state(), RelayState::Relaying { .. }));
    assert_logged(&url, "INFO", "relay recovered after");
    relay.handle.stop();
}

#[test]
fn silence_plays_while_the_upstream_has_not_answered() {
    // Connections are accepted by the kernel and never answered: the request waits for
    // its response headers for as long as the connect timeout allows, an hour.
    let listener = TcpListener::bind("127.0.0.5:0").unwrap();
    let url = format!("http://{}/live.mp3", listener.local_addr().unwrap());
    let config = RelayConfig {
        connect_timeout: MAX_SETTING,
        ..fast_config(url)
    };
    let mut relay = start(config);
    // The consumer is not kept waiting for the connection: silence flows while the one
    // attempt is still pending.
    let pcm = relay.collect_until("frames while connecting", |_, pcm| {
        pcm.len() >= 10 * FRAME_SAMPLES
    });
    let stats = relay.handle.stats();
    assert_eq!(
        (stats.attempts, stats.connects, stats.failures),
        (1, 0, 0),
        "{stats:?}"
    );
    assert!(pcm.iter().all(|&s| s == 0.0));
    relay.handle.stop();
}

#[test]
fn server_closing_mid_stream_falls_back_then_recovers() {
    let f = mp3_fixture();
    let bps = bytes_per_sec(&f);
    let data = Arc::new(f.data);
    let server = TestServer::start(move |n, mut s, stop| {
        read_request(&mut s);
        // The first connection dies after a second of audio; later ones are fine.
        let (body, after) = if n == 0 {
            (&data[..bps], After::Close)
        } else {
            (&data[..], After::Hold)
        };
        serve(
            &mut s,
            stop,
            "audio/mpeg",
            body,
            Pace::RealTime { bytes_per_sec: bps },
            after,
        );
    });
    let url = server.url("/live.mp3");
    let mut relay = start(fast_config(url.clone()));
    // The silence played while connecting, counted while the first connection relays:
    // `failures`, read after it, is still 0, so no fallback frame of the outage is in it.
    let mut before_cut = None;
    relay.collect_until("audio before the cut", |h, _| {
        let s = h.stats();
        if s.frames_relayed > 0 && h.stats().failures == 0 {
            before_cut = Some(s.frames_fallback);
        }
        before_cut.is_some()
    });
    let before_cut = before_cut.expect("counted");
    relay.collect_until("the cut", |h, _| h.stats().failures >= 1);
    let at_cut = relay.handle.stats();
    assert!(at_cut.frames_relayed >= 30, "{at_cut:?}");
    match relay.handle.state() {
        RelayState::Fallback { last_error, .. } => assert!(
            matches!(last_error, RelayError::EndOfStream { .. }),
            "{last_error}"
        ),
        RelayState::Relaying { .. } => {} // already recovered: the log still tells
        other => panic!("unexpected {other:?}"),
    }
    relay.collect_until("recovery", |h, _| {
        h.stats().frames_relayed >= at_cut.frames_relayed + 25
    });
    let stats = relay.handle.stats();
    assert!(stats.frames_fallback > before_cut, "{stats:?}");
    assert_eq!(stats.connects, 2, "{stats:?}");
    assert!(server.connections.load(Ordering::SeqCst) >= 2);
    assert_logged(&url, "WARN", "stream ended");
    assert_logged(&url, "INFO", "relay recovered after");
    relay.handle.stop();
}

#[test]
fn http_404_is_a_logged_failure() {
    let server = TestServer::start(|_, mut s, _| {
        read_request(&mut s);
        let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
    });
    let url = server.url("/missing.mp3");
    let mut relay = start(fast_config(url.clone()));
    relay.collect_until("two failures", |h, _| h.stats().failures >= 2);
    match relay.handle.state() {
        RelayState::Fallback { last_error, .. } => {
            assert!(
                matches!(last_error, RelayError::Status { status: 404, .. }),
                "{last_error}"
            );
            assert!(last_error.to_string().contains(&url), "{last_error}");
        }
        other => panic!("expected fallback, got {other:?}"),
    }
    let stats = relay.handle.stats();
    assert_eq!((stats.connects, stats.frames_relayed), (0, 0), "{stats:?}");
    assert!(stats.frames_fallback > 0);
    assert_logged(&url, "WARN", "HTTP 404 Not Found");
    relay.handle.stop();
}

#[test]
fn https_is_spoken_and_a_tls_failure_is_a_connect_failure() {
    // A plain-HTTP server behind an https:// URL: the TLS handshake must fail cleanly.
    let server = TestServer::start(|_, mut s, _| {
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n\r\n");
    });
    let url = format!("https://{}/live.mp3", server.addr);
    let mut relay = start(fast_config(url.clone()));
    relay.collect_until("a failure", |h, _| h.stats().failures >= 1);
    match relay.handle.state() {
        RelayState::Fallback { last_error, .. } => {
            assert!(
                matches!(last_error, RelayError::Connect { .. }),
                "{last_error}"
            )
        }
        other => panic!("expected fallback, got {other:?}"),
    }
    assert!(server.connections.load(Ordering::SeqCst) >= 1);
    assert_logged(&url, "WARN", "cannot connect");
    relay.handle.stop();
}

#[test]
fn stalled_upstream_fails_after_stall_timeout() {
    let f = mp3_fixture();
    let bps = bytes_per_sec(&f);
    let data = Arc::new(f.data);
    let server = TestServer::start(move |n, mut s, stop| {
        read_request(&mut s);
        // One second of audio at once, then the socket stays open and silent.
        let body = if n == 0 { &data[..bps] } else { &data[..] };
        let pace = Pace::Bursts {
            bytes_per_sec: bps,
            secs: 1.0,
        };
        serve(&mut s, stop, "audio/mpeg", body, pace, After::Hold);
    });
    let url = server.url("/live.mp3");
    let config = RelayConfig {
        stall_timeout: Duration::from_secs(1),
        ..fast_config(url.clone())
    };
    let mut relay = start(config);
    relay.collect_until("stall", |h, _| h.stats().failures >= 1);
    let detected = Instant::now();
    let RelayState::Fallback { since, last_error } = relay.handle.state() else {
        panic!("expected fallback, got {:?}", relay.handle.state());
    };
    assert!(
        matches!(last_error, RelayError::Stalled { .. }),
        "{last_error}"
    );
    // Not before the stall timeout; how much later depends on the machine. That it was the
    // watchdog, not the socket's read timeout a second later, the error says.
    let waited = detected - since;
    assert!(
        waited >= Duration::from_millis(950),
        "stall detected {waited:?} after the last audio"
    );
    assert!(relay.handle.stats().frames_relayed >= 40);
    assert_logged(&url, "WARN", "stalled: no audio for 1.0 s");
    relay.handle.stop();
}

#[test]
fn garbage_is_a_failure_not_a_panic() {
    // Deterministic noise, labelled as MP3, sent forever; and an HTML error page.
    let server = TestServer::start(|n, mut s, stop| {
        read_request(&mut s);
        if n % 2 == 1 {
            let page = b"<html><body>Station offline</body></html>";
            let _ = write!(s, "HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n");
            let _ = s.write_all(page);
            return;
        }
        let mut x = 0x2545_f491_u32;
        let noise: Vec<u8> = (0..64 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let pace = Pace::RealTime {
            bytes_per_sec: 16_000,
        };
        serve(&mut s, stop, "audio/mpeg", &noise, pace, After::Hold);
    });
    let url = server.url("/live.mp3");
    let mut relay = start(fast_config(url.clone()));
    relay.collect_until("failures", |h, _| h.stats().failures >= 3);
    assert!(
        !relay.handle.is_finished(),
        "the relay must survive garbage"
    );
    assert!(relay.handle.stats().frames_fallback > 0);
    assert_logged(&url, "WARN", "not audio");
    if capture_logs() {
        let noise_failure = log_lines(&url).into_iter().any(|l| {
            l.contains("cannot decode")
                || l.contains("unsupported content")
                || l.contains("stalled")
        });
        assert!(noise_failure, "{:#?}", log_lines(&url));
    }
    relay.handle.stop();
}

#[test]
fn fallback_file_is_looped_at_real_time_pace() {
    let dir = tempfile::tempdir().unwrap();
    // A ramp: every sample says where in the file it is, so the loop is checked exactly.
    let len = RATE * 3 / 10;
    let ramp: Vec<f32> = (0..len).map(|i| -0.5 + i as f32 / len as f32).collect();
    let path = dir.path().join("fallback.wav");
    write_wav(&path, &ramp);
    let addr = refusing_addr("127.0.0.3");
    let config = RelayConfig {
        fallback: Fallback::File(path.clone()),
        ..fast_config(format!("http://{addr}/live.mp3"))
    };
    config.validate().unwrap();
    let mut relay = start(config);
    let t = Instant::now();
    let pcm = relay.collect_until("1.2 s of fallback", |_, pcm| {
        pcm.len() >= first_sound(pcm) + len * 4
    });
    // Four loops of 0.3 s cannot arrive faster than real time.
    assert!(
        t.elapsed() >= Duration::from_millis(1100),
        "{:?}",
        t.elapsed()
    );
    let s0 = first_sound(&pcm);
    for (i, &s) in pcm[s0..s0 + len * 4].iter().enumerate() {
        let want = ramp[i % len];
        assert!((s - want).abs() < 1e-3, "sample {i}: {s} != {want}");
    }
    relay.handle.stop();
}

#[test]
fn stops_promptly_even_when_the_consumer_is_stuck() {
    let addr = refusing_addr("127.0.0.4");
    let url = format!("http://{addr}/x.mp3");
    // Nobody reads: the channel fills after two frames and the relay waits on it.
    let (tx, _rx) = mpsc::channel(2);
    let (_keep, shutdown) = watch::channel(false);
    let handle = spawn_relay(fast_config(url.clone()), tx, shutdown).unwrap();
    wait_until("the channel full", || handle.stats().frames_fallback >= 2);
    // Lets the relay get to its third frame, which waits for room that never comes; no
    // assertion depends on it having got there.
    std::thread::sleep(Duration::from_millis(100));
    // Nothing else ends this relay: a stop that did not reach the waiting delivery would
    // hang for ever, so the generous bound tells.
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        handle.stop();
        let _ = stopped_tx.send(());
    });
    stopped
        .recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("stop hung with the consumer stuck"));

    // The external shutdown flag works too.
    let (tx, mut rx) = mpsc::channel(2);
    let (stop_tx, shutdown) = watch::channel(false);
    let handle = spawn_relay(fast_config(url.clone()), tx, shutdown).unwrap();
    wait_until("the channel full", || handle.stats().frames_fallback >= 2);
    stop_tx.send(true).unwrap();
    wait_until("the shutdown flag obeyed", || handle.is_finished());
    rx.close();

    // And a consumer that goes away ends the relay.
    let (tx, rx) = mpsc::channel(2);
    let (_keep, shutdown) = watch::channel(false);
    let handle = spawn_relay(fast_config(url), tx, shutdown).unwrap();
    drop(rx);
    wait_until("the end for a consumer gone", || handle.is_finished());
}

// ---- A real Icecast 2 server with ffmpeg as its source (from the end-to-end test kit) ----

use radio_tests::icecast::Icecast;

/// Amplitude of `freq` in `x` (48 kHz), via Goertzel.
fn amplitude(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    2.0 * (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0).sqrt() / x.len() as f64
}

fn assert_tone(pcm: &[f32], freq: f64, when: &str) {
    let tail = &pcm[pcm.len() - RATE / 2..];
    let (on, below, above) = (
        amplitude(tail, freq),
        amplitude(tail, freq * 0.7),
        amplitude(tail, freq * 1.5),
    );
    assert!(
        on > 0.25 && on > 10.0 * below && on > 10.0 * above,
        "{when}: {freq} Hz amplitude {on:.3}, neighbours {below:.3} / {above:.3}"
    );
}

#[test]
fn relays_real_icecast_through_source_loss() {
    let Some(mut ice) = Icecast::start() else {
        return;
    };
    let wav = ice.dir().join("signal.wav");
    let tone: Vec<f32> = (0..RATE * 2)
        .map(|i| (0.5 * (2.0 * PI * 1000.0 * i as f64 / RATE as f64).sin()) as f32)
        .collect();
    write_wav(&wav, &tone);
    ice.start_source(&wav);

    let url = ice.url();
    let config = RelayConfig {
        backoff_min: Duration::from_millis(250),
        backoff_max: Duration::from_secs(1),
        ..fast_config(url.clone())
    };
    let mut relay = start(config);
    let pcm = relay.collect_until("Icecast audio", |h, _| h.stats().frames_relayed >= 50);
    assert!(matches!(relay.handle.state(), RelayState::Relaying { .. }));
    assert_tone(&pcm, 1000.0, "first source");

    // The studio link drops: Icecast ends the mount and its listeners.
    ice.kill_source();
    let before = relay.handle.stats();
    relay.collect_until("failure after source loss", |h, _| {
        h.stats().failures > before.failures
    });
    assert!(matches!(relay.handle.state(), RelayState::Fallback { .. }));
    assert_logged(&url, "WARN", &url);
    // While the mount is gone, retries keep failing (404) and the fallback keeps flowing.
    let lost = relay.handle.stats();
    relay.collect_until("retries with the fallback flowing", |h, _| {
        let now = h.stats();
        now.failures >= lost.failures + 2 && now.frames_fallback > lost.frames_fallback + 10
    });
    assert_logged(&url, "WARN", "HTTP 404");

    ice.start_source(&wav);
    let relayed = relay.handle.stats().frames_relayed;
    let pcm = relay.collect_until("recovery", |h, _| h.stats().frames_relayed >= relayed + 50);
    assert!(matches!(relay.handle.state(), RelayState::Relaying { .. }));
    assert_tone(&pcm, 1000.0, "second source");
    assert_logged(&url, "INFO", "relay recovered after");
    relay.handle.stop();
}
