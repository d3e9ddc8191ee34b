//! Upstream-station relay: pulls an HTTP/Icecast stream (MP3, ADTS AAC, Ogg Vorbis), decodes it
//! to 48 kHz mono and delivers 20 ms [`PcmFrame`]s. When the upstream fails, a fallback (a looped
//! file, or silence) keeps the frames coming while the relay reconnects with backoff.
//!
//! # Threads
//! - The *relay thread* (one per [`spawn_relay`]) owns the consumer channel. It forwards upstream
//!   frames, plays the fallback at real-time pace whenever no upstream audio is coming, runs the
//!   stall watchdog and the backoff, and is the only one that logs failures and recoveries.
//! - A *fetch thread* per connection attempt does the blocking work (HTTP with ureq, symphonia,
//!   resampling) and hands frames to the relay thread over a small queue. Blocking reads therefore
//!   never delay the fallback, the watchdog or a stop. An abandoned fetch thread ends by itself:
//!   its next read or send fails, at the latest when its socket read times out.
//!
//! Backpressure runs end to end: a consumer that takes frames at real time fills the channel, the
//! relay thread then waits on it, the fetch queue fills, the fetch thread stops reading and TCP
//! flow control slows the upstream server down.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::Rng;
use symphonia::core::io::MediaSource;
use tokio::sync::{mpsc, watch};

use crate::ingest::stream_url::{mask, StreamUrl};
use crate::ingest::{PcmFrame, FRAME_SAMPLES};
use crate::pipeline::decoder::{MonoChunk, SourceDecoder};
use crate::pipeline::resampler::Resampler;
use crate::pipeline::PipelineError;

/// Duration of one frame.
const FRAME: Duration = Duration::from_millis(20);

/// Frames the fetch thread may decode ahead of the relay thread. Small, so that backpressure
/// reaches the socket quickly and a failover does not discard much decoded audio.
const FETCH_QUEUE_FRAMES: usize = 8;

/// How far the fallback clock may fall behind before it stops catching up. A consumer that was
/// blocked for a while must not receive a burst of stale fallback frames afterwards.
const MAX_FALLBACK_LAG: Duration = Duration::from_millis(100);

/// Upper bound for every configured duration: it keeps the backoff arithmetic far from overflow,
/// and anything longer is a unit mistake in the configuration.
const MAX_SETTING: Duration = Duration::from_secs(3600);

/// Extra time the socket read timeout gets beyond the stall timeout, so that the relay thread's
/// watchdog (with its clearer message) normally fires first and the socket timeout only ends
/// an abandoned fetch thread.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// Consecutive end-of-file restarts of the fallback file tolerated while filling one frame; a
/// file that short is useless as a loop and would otherwise be reopened dozens of times a second.
const MAX_FALLBACK_RESTARTS_PER_FRAME: u32 = 8;

/// What plays while the upstream is unavailable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    Silence,
    /// Decoded like any programme file and looped seamlessly; restarts from its beginning at each
    /// outage. If it cannot be decoded, silence plays instead (and a warning says why).
    File(PathBuf),
}

/// Settings of one upstream relay.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `http://` or `https://` stream URL; see [`validate_relay_url`].
    pub url: String,
    pub fallback: Fallback,
    /// Budget for name resolution, TCP/TLS connect and the response headers, each.
    pub connect_timeout: Duration,
    /// No audio from an established connection for this long counts as a failure.
    pub stall_timeout: Duration,
    /// First retry delay; it doubles per consecutive failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub user_agent: String,
}

impl RelayConfig {
    /// Defaults: silence as fallback, 10 s connect, 5 s stall, backoff 1 s to 30 s.
    pub fn new(url: impl Into<String>) -> Self {
        RelayConfig {
            url: url.into(),
            fallback: Fallback::Silence,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            user_agent: concat!(
                "radio-server/",
                env!("CARGO_PKG_VERSION"),
                " (upstream relay)"
            )
            .to_string(),
        }
    }

    /// Checks everything, including that the fallback file decodes. Meant for configuration
    /// load time; [`spawn_relay`] itself tolerates a broken fallback file (it plays silence),
    /// because refusing to relay at air time would be worse.
    pub fn validate(&self) -> Result<RelayUrl, RelayError> {
        let url = self.check_settings()?;
        if let Fallback::File(path) = &self.fallback {
            FallbackSource::check_file(path)?;
        }
        Ok(url)
    }

    fn check_settings(&self) -> Result<RelayUrl, RelayError> {
        let url = validate_relay_url(&self.url)?;
        for (name, value) in [
            ("connect_timeout", self.connect_timeout),
            ("stall_timeout", self.stall_timeout),
            ("backoff_min", self.backoff_min),
            ("backoff_max", self.backoff_max),
        ] {
            if value.is_zero() || value > MAX_SETTING {
                return Err(RelayError::Config(format!(
                    "{name} must be between 0 and {} s, got {:.3} s",
                    MAX_SETTING.as_secs(),
                    value.as_secs_f64()
                )));
            }
        }
        if self.backoff_min > self.backoff_max {
            return Err(RelayError::Config(format!(
                "backoff_min ({:.3} s) is greater than backoff_max ({:.3} s)",
                self.backoff_min.as_secs_f64(),
                self.backoff_max.as_secs_f64()
            )));
        }
        Ok(url)
    }
}

/// Everything that can go wrong, one line each; the upstream variants name the URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RelayError {
    #[error("relay URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("relay config: {0}")]
    Config(String),
    #[error("fallback file {path}: {reason}")]
    FallbackFile { path: String, reason: String },
    #[error("relay cannot start: {0}")]
    Spawn(String),
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: server answered HTTP {status} {reason}")]
    Status {
        url: String,
        status: u16,
        reason: String,
    },
    #[error("{url}: unsupported content: {reason}")]
    UnsupportedContent { url: String, reason: String },
    #[error("{url}: cannot decode: {reason}")]
    Decode { url: String, reason: String },
    #[error("{url}: connection lost: {reason}")]
    ConnectionLost { url: String, reason: String },
    #[error("{url}: stream ended")]
    EndOfStream { url: String },
    #[error("{url}: stalled: no audio for {secs:.1} s")]
    Stalled { url: String, secs: f64 },
}

/// A URL that passed [`validate_relay_url`]: shown with its password masked.
pub type RelayUrl = StreamUrl;

/// The one stream URL check ([`StreamUrl::parse`]), as a [`RelayError`] naming the URL
/// (masked) and what is wrong with it.
pub fn validate_relay_url(url: &str) -> Result<RelayUrl, RelayError> {
    StreamUrl::parse(url).map_err(|e| RelayError::InvalidUrl {
        url: mask(url).into_owned(),
        reason: e.to_string(),
    })
}

/// Symphonia hint for a response. `Err` explains why the content cannot be a stream.
fn format_hint(content_type: Option<&str>, url: &RelayUrl) -> Result<Option<String>, String> {
    let mime = content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let known = match mime.as_str() {
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" => Some("mp3"),
        "audio/aac" | "audio/aacp" | "audio/x-aac" | "audio/x-aacp" => Some("aac"),
        "application/ogg" | "audio/ogg" | "audio/x-ogg" | "audio/vorbis" => Some("ogg"),
        "audio/x-mpegurl"
        | "audio/mpegurl"
        | "application/x-mpegurl"
        | "application/vnd.apple.mpegurl"
        | "audio/x-scpls"
        | "application/pls+xml" => {
            return Err(format!(
                "{mime} is a playlist, not a stream: configure the stream URL listed in it"
            ))
        }
        m if m.starts_with("text/")
            || m == "application/json"
            || m == "application/xml"
            || m == "application/xhtml+xml" =>
        {
            return Err(format!("server sent {mime}, not audio"))
        }
        _ => None,
    };
    Ok(known.map(str::to_string).or_else(|| url.extension()))
}

/// What the relay is doing.
#[derive(Debug, Clone)]
pub enum RelayState {
    /// First connection attempt; silence is delivered meanwhile.
    Connecting,
    /// Upstream audio is flowing (since the first frame of this connection).
    Relaying { since: Instant },
    /// The upstream failed; the fallback plays and reconnects are attempted. `since` is when
    /// upstream audio was last delivered (or the first failure, if it never was).
    Fallback {
        since: Instant,
        last_error: RelayError,
    },
}

/// Counters since [`spawn_relay`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Connection attempts started.
    pub attempts: u64,
    /// Attempts that got an HTTP 200 with acceptable content.
    pub connects: u64,
    /// Attempts that ended in a failure (each one logged).
    pub failures: u64,
    pub frames_relayed: u64,
    /// Fallback and connecting-silence frames.
    pub frames_fallback: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<RelayState>,
    attempts: AtomicU64,
    connects: AtomicU64,
    failures: AtomicU64,
    frames_relayed: AtomicU64,
    frames_fallback: AtomicU64,
}

impl Shared {
    fn set_state(&self, state: RelayState) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The running relay. Dropping it stops the relay thread without waiting for it.
#[derive(Debug)]
pub struct RelayHandle {
    url: RelayUrl,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl RelayHandle {
    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    pub fn state(&self) -> RelayState {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn stats(&self) -> RelayStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RelayStats {
            attempts: load(&self.shared.attempts),
            connects: load(&self.shared.connects),
            failures: load(&self.shared.failures),
            frames_relayed: load(&self.shared.frames_relayed),
            frames_fallback: load(&self.shared.frames_fallback),
        }
    }

    /// True once the relay thread has ended (stopped, or the consumer went away).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the relay and waits for its thread, which reacts within milliseconds even while the
    /// consumer is not taking frames. Fetch threads are not waited for (see the module docs).
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!(url = %self.url, "relay thread panicked");
            }
        }
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Starts relaying `config.url` into `frames` on a dedicated thread until `shutdown` becomes
/// true (or its sender is dropped), [`RelayHandle::stop`] is called, or the receiver of `frames`
/// is dropped. Must be given a channel whose consumer paces at real time: upstream frames are
/// sent as fast as the channel accepts them.
pub fn spawn_relay(
    config: RelayConfig,
    frames: mpsc::Sender<Box<PcmFrame>>,
    shutdown: watch::Receiver<bool>,
) -> Result<RelayHandle, RelayError> {
    let url = config.check_settings()?;
    // Built here so that a failure surfaces to the caller instead of inside the thread. Only a
    // timer is needed: all I/O happens on the fetch threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| RelayError::Spawn(format!("runtime: {e}")))?;
    let shared = Arc::new(Shared {
        state: Mutex::new(RelayState::Connecting),
        attempts: AtomicU64::new(0),
        connects: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        frames_relayed: AtomicU64::new(0),
        frames_fallback: AtomicU64::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let relay = Relay {
        agent: make_agent(&config),
        url: url.clone(),
        fallback: FallbackSource::new(&config.fallback),
        config,
        frames,
        shared: shared.clone(),
        stop: Stop {
            external: shutdown,
            internal: stop_rx,
        },
        next_tick: Instant::now(),
        last_audio: None,
    };
    let thread = std::thread::Builder::new()
        .name("relay-upstream".into())
        .spawn(move || runtime.block_on(relay.run()))
        .map_err(|e| RelayError::Spawn(format!("thread: {e}")))?;
    Ok(RelayHandle {
        url,
        shared,
        stop: stop_tx,
        thread: Some(thread),
    })
}

fn make_agent(config: &RelayConfig) -> ureq::Agent {
    let connect = Some(config.connect_timeout);
    ureq::Agent::config_builder()
        // Statuses are judged by the relay, which wants the number in its own error.
        .http_status_as_error(false)
        .user_agent(config.user_agent.as_str())
        .timeout_resolve(connect)
        .timeout_connect(connect)
        .timeout_send_request(connect)
        .timeout_recv_response(connect)
        .timeout_per_read(Some(config.stall_timeout + READ_TIMEOUT_MARGIN))
        .max_redirects(5)
        .build()
        .into()
}

/// Both ways of being told to stop. A closed channel counts as a stop: nobody could ever ask.
#[derive(Debug)]
struct Stop {
    external: watch::Receiver<bool>,
    internal: watch::Receiver<bool>,
}

impl Stop {
    async fn wait(&mut self) {
        tokio::select! {
            _ = self.external.wait_for(|&stop| stop) => {}
            _ = self.internal.wait_for(|&stop| stop) => {}
        }
    }
}

/// Why the relay loop (or one part of it) ended.
enum Flow {
    Stop,
    ConsumerGone,
}

enum Event {
    Connected { content_type: Option<String> },
    Frame(Box<PcmFrame>),
    Failed(RelayError),
}

struct Relay {
    config: RelayConfig,
    url: RelayUrl,
    agent: ureq::Agent,
    frames: mpsc::Sender<Box<PcmFrame>>,
    shared: Arc<Shared>,
    stop: Stop,
    fallback: FallbackSource,
    /// When the next fallback frame is due; shared by the backoff wait and the attempts so the
    /// fallback keeps an even pace across both.
    next_tick: Instant,
    last_audio: Option<Instant>,
}

impl Relay {
    async fn run(mut self) {
        // Consecutive failures without upstream audio in between; drives the backoff.
        let mut streak = 0u32;
        // Start of the current outage; `None` while relaying and before the first failure.
        let mut outage: Option<Instant> = None;
        loop {
            Shared::bump(&self.shared.attempts);
            let error = match self.attempt(&mut outage, &mut streak).await {
                Ok(error) => error,
                Err(Flow::Stop) => {
                    tracing::info!(url = %self.url, "relay stopped");
                    return;
                }
                Err(Flow::ConsumerGone) => {
                    tracing::info!(url = %self.url, "relay consumer gone, relay stopped");
                    return;
                }
            };
            Shared::bump(&self.shared.failures);
            let since = match outage {
                Some(since) => since,
                None => {
                    // A new outage: the fallback starts from its beginning, right away.
                    self.fallback.restart();
                    self.next_tick = Instant::now();
                    *outage.insert(self.last_audio.unwrap_or_else(Instant::now))
                }
            };
            self.shared.set_state(RelayState::Fallback {
                since,
                last_error: error.clone(),
            });
            let delay = backoff_delay(
                streak,
                self.config.backoff_min,
                self.config.backoff_max,
                &mut rand::thread_rng(),
            );
            streak = streak.saturating_add(1);
            tracing::warn!(
                url = %self.url,
                "{error}; playing fallback, retrying in {:.1} s",
                delay.as_secs_f64()
            );
            if let Err(flow) = self.play_fallback_until(Instant::now() + delay).await {
                if matches!(flow, Flow::Stop) {
                    tracing::info!(url = %self.url, "relay stopped");
                }
                return;
            }
        }
    }

    /// One connection: fallback (or silence before any failure) until upstream audio arrives,
    /// then upstream audio until something fails. Returns the failure.
    async fn attempt(
        &mut self,
        outage: &mut Option<Instant>,
        streak: &mut u32,
    ) -> Result<RelayError, Flow> {
        let cancel = Arc::new(AtomicBool::new(false));
        // Whatever way this attempt ends, its fetch thread must give up.
        let _cancel_on_exit = CancelOnDrop(cancel.clone());
        let (events_tx, mut events) = mpsc::channel(FETCH_QUEUE_FRAMES);
        let job = FetchJob {
            agent: self.agent.clone(),
            url: self.url.clone(),
            events: events_tx,
            cancel,
        };
        if let Err(e) = std::thread::Builder::new()
            .name("relay-fetch".into())
            .spawn(move || job.run())
        {
            return Ok(RelayError::Spawn(format!("fetch thread: {e}")));
        }

        let mut progress = Instant::now();
        // Before the headers the ureq timeouts normally fire first; this only bounds the case
        // they do not cover (e.g. a resolver that ignores its timeout).
        let mut budget = self.config.connect_timeout * 3;
        let mut connected = false;
        let mut relaying = false;
        loop {
            let deadline = tokio::time::Instant::from_std(progress + budget);
            let event = if relaying {
                tokio::select! {
                    biased;
                    _ = self.stop.wait() => return Err(Flow::Stop),
                    event = events.recv() => event,
                    _ = tokio::time::sleep_until(deadline) => return Ok(self.timed_out(connected)),
                }
            } else {
                let tick = tokio::time::Instant::from_std(self.next_tick);
                tokio::select! {
                    biased;
                    _ = self.stop.wait() => return Err(Flow::Stop),
                    event = events.recv() => event,
                    _ = tokio::time::sleep_until(deadline) => return Ok(self.timed_out(connected)),
                    _ = tokio::time::sleep_until(tick) => {
                        self.play_fallback_frame(outage.is_some()).await?;
                        continue;
                    }
                }
            };
            match event {
                Some(Event::Connected { content_type }) => {
                    Shared::bump(&self.shared.connects);
                    tracing::debug!(
                        url = %self.url,
                        content_type = content_type.as_deref().unwrap_or("none"),
                        "relay connected"
                    );
                    connected = true;
                    progress = Instant::now();
                    budget = self.config.stall_timeout;
                }
                Some(Event::Frame(frame)) => {
                    if !relaying {
                        relaying = true;
                        *streak = 0;
                        match outage.take() {
                            Some(since) => tracing::info!(
                                url = %self.url,
                                "relay recovered after {:.1} s",
                                since.elapsed().as_secs_f64()
                            ),
                            None => tracing::info!(url = %self.url, "relaying upstream"),
                        }
                        self.shared.set_state(RelayState::Relaying {
                            since: Instant::now(),
                        });
                    }
                    self.deliver(frame).await?;
                    Shared::bump(&self.shared.frames_relayed);
                    // Measured after the send: time spent waiting for the consumer is
                    // backpressure, not a stall.
                    progress = Instant::now();
                    self.last_audio = Some(progress);
                }
                Some(Event::Failed(error)) => return Ok(error),
                None => {
                    return Ok(RelayError::ConnectionLost {
                        url: self.url.to_string(),
                        reason: "fetch thread ended without a reason".into(),
                    })
                }
            }
        }
    }

    fn timed_out(&self, connected: bool) -> RelayError {
        if connected {
            RelayError::Stalled {
                url: self.url.to_string(),
                secs: self.config.stall_timeout.as_secs_f64(),
            }
        } else {
            RelayError::Connect {
                url: self.url.to_string(),
                reason: format!(
                    "no response within {:.1} s",
                    (self.config.connect_timeout * 3).as_secs_f64()
                ),
            }
        }
    }

    /// Plays the fallback at real-time pace until `until`.
    async fn play_fallback_until(&mut self, until: Instant) -> Result<(), Flow> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            if now >= self.next_tick {
                self.play_fallback_frame(true).await?;
                continue;
            }
            let wake = tokio::time::Instant::from_std(self.next_tick.min(until));
            tokio::select! {
                biased;
                _ = self.stop.wait() => return Err(Flow::Stop),
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// Delivers one fallback frame (silence if `fallback` is false) and schedules the next.
    async fn play_fallback_frame(&mut self, fallback: bool) -> Result<(), Flow> {
        let frame = if fallback {
            self.fallback.next_frame()
        } else {
            silence()
        };
        self.deliver(frame).await?;
        Shared::bump(&self.shared.frames_fallback);
        self.next_tick += FRAME;
        let now = Instant::now();
        if now > self.next_tick + MAX_FALLBACK_LAG {
            self.next_tick = now;
        }
        Ok(())
    }

    async fn deliver(&mut self, frame: Box<PcmFrame>) -> Result<(), Flow> {
        tokio::select! {
            biased;
            _ = self.stop.wait() => Err(Flow::Stop),
            sent = self.frames.send(frame) => sent.map_err(|_| Flow::ConsumerGone),
        }
    }
}

/// Exponential backoff from `min`, doubling per consecutive failure, with ±20 % jitter so that
/// restarts of several relays (or of the upstream) do not line up; always within `min..=max`.
fn backoff_delay(streak: u32, min: Duration, max: Duration, rng: &mut impl Rng) -> Duration {
    let base = min.saturating_mul(1u32 << streak.min(16)).min(max);
    base.mul_f64(rng.gen_range(0.8..=1.2)).clamp(min, max)
}

fn silence() -> Box<PcmFrame> {
    Box::new([0.0; FRAME_SAMPLES])
}

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The blocking half of one connection attempt.
struct FetchJob {
    agent: ureq::Agent,
    url: RelayUrl,
    events: mpsc::Sender<Event>,
    cancel: Arc<AtomicBool>,
}

impl FetchJob {
    fn run(self) {
        if let Err(error) = self.fetch() {
            // The relay thread may have given up on this attempt already; then nobody listens.
            let _ = self.events.blocking_send(Event::Failed(error));
        }
    }

    /// `Ok` only when the relay thread is no longer interested.
    fn fetch(&self) -> Result<(), RelayError> {
        let masked = self.url.to_string();
        let url = masked.as_str();
        let response = request(self.agent.get(self.url.uri().clone()), &self.url)?;
        let (content_type, hint) = accept_response(&response, &self.url)?;
        if self
            .events
            .blocking_send(Event::Connected { content_type })
            .is_err()
        {
            return Ok(());
        }

        let body = HttpBody {
            reader: response.into_body().into_reader(),
            cancel: self.cancel.clone(),
            error: Arc::default(),
        };
        let read_error = body.error.clone();
        let (mut decoder, info) = SourceDecoder::from_stream(Box::new(body), hint.as_deref(), url)
            .map_err(|e| stream_error(&self.url, e, &read_error))?;
        tracing::debug!(
            url,
            codec = %info.codec,
            sample_rate = info.sample_rate,
            channels = info.channels,
            "relay decoding"
        );
        let mut frames = FrameAssembler::default();
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            match decoder.next_chunk() {
                Ok(Some(chunk)) => frames.push(&chunk).map_err(|reason| RelayError::Decode {
                    url: url.to_string(),
                    reason,
                })?,
                Ok(None) => {
                    return Err(match read_error.get() {
                        Some(reason) => RelayError::ConnectionLost {
                            url: url.to_string(),
                            reason: reason.clone(),
                        },
                        None => RelayError::EndOfStream {
                            url: url.to_string(),
                        },
                    })
                }
                Err(e) => return Err(stream_error(&self.url, e, &read_error)),
            }
            while let Some(frame) = frames.pop() {
                if self.events.blocking_send(Event::Frame(frame)).is_err() {
                    return Ok(());
                }
            }
        }
    }
}

/// Sends a stream request. No `Icy-MetaData` header: without it Icecast sends plain audio, no
/// metadata blocks.
fn request(
    request: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    url: &RelayUrl,
) -> Result<ureq::http::Response<ureq::Body>, RelayError> {
    request.call().map_err(|e| RelayError::Connect {
        url: url.to_string(),
        reason: one_line(e),
    })
}

/// Whether an answer can be a stream the relay plays: HTTP 200 and audio (or unknown)
/// content. Its content type and the decoder's format hint.
fn accept_response(
    response: &ureq::http::Response<ureq::Body>,
    url: &RelayUrl,
) -> Result<(Option<String>, Option<String>), RelayError> {
    let status = response.status();
    if status != ureq::http::StatusCode::OK {
        return Err(RelayError::Status {
            url: url.to_string(),
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_string(),
        });
    }
    let content_type = response
        .headers()
        .get(ureq::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let hint = format_hint(content_type.as_deref(), url).map_err(|reason| {
        RelayError::UnsupportedContent {
            url: url.to_string(),
            reason,
        }
    })?;
    Ok((content_type, hint))
}

/// A read error is the real cause of whatever the decoder made of it.
fn stream_error(url: &RelayUrl, error: PipelineError, read_error: &OnceLock<String>) -> RelayError {
    let url = url.to_string();
    if let Some(reason) = read_error.get() {
        return RelayError::ConnectionLost {
            url,
            reason: reason.clone(),
        };
    }
    match error {
        PipelineError::Unsupported { reason, .. } => RelayError::UnsupportedContent { url, reason },
        PipelineError::Empty { .. } => RelayError::Decode {
            url,
            reason: "no audio in the stream".into(),
        },
        PipelineError::Open { reason, .. } | PipelineError::Corrupt { reason, .. } => {
            RelayError::Decode { url, reason }
        }
        PipelineError::Encoder(reason) => RelayError::Decode { url, reason },
    }
}

/// What [`probe_stream`] found at a stream that works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamProbe {
    /// The answer's `Content-Type`, if it had one.
    pub content_type: Option<String>,
}

/// Checks that `url` can be relayed, the way the relay itself would open it: the URL check,
/// an HTTP 200 with audio content, and a first block of audio that decodes. `timeout` bounds
/// each step (resolving, connecting, the answer, each read) and the whole probe twice over.
/// Blocking: call it off the async runtime's threads.
pub fn probe_stream(url: &str, timeout: Duration) -> Result<StreamProbe, RelayError> {
    let config = RelayConfig {
        connect_timeout: timeout,
        stall_timeout: timeout,
        ..RelayConfig::new(url)
    };
    let url = config.check_settings()?;
    let agent = make_agent(&config);
    let get = agent
        .get(url.uri().clone())
        .config()
        .timeout_global(Some(timeout * 2))
        .build();
    let response = request(get, &url)?;
    let (content_type, hint) = accept_response(&response, &url)?;
    let body = HttpBody {
        reader: response.into_body().into_reader(),
        cancel: Arc::default(),
        error: Arc::default(),
    };
    let read_error = body.error.clone();
    let masked = url.to_string();
    let (mut decoder, _) = SourceDecoder::from_stream(Box::new(body), hint.as_deref(), &masked)
        .map_err(|e| stream_error(&url, e, &read_error))?;
    match decoder.next_chunk() {
        Ok(Some(_)) => Ok(StreamProbe { content_type }),
        Ok(None) => Err(match read_error.get() {
            Some(reason) => RelayError::ConnectionLost {
                url: masked,
                reason: reason.clone(),
            },
            None => RelayError::EndOfStream { url: masked },
        }),
        Err(e) => Err(stream_error(&url, e, &read_error)),
    }
}

/// An HTTP body as a symphonia source.
struct HttpBody {
    reader: ureq::BodyReader<'static>,
    cancel: Arc<AtomicBool>,
    /// First read error, kept because symphonia reports it only as corrupt audio or an end.
    error: Arc<OnceLock<String>>,
}

impl Read for HttpBody {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(io::Error::other("relay attempt abandoned"));
        }
        let result = self.reader.read(buf);
        if let Err(e) = &result {
            if e.kind() != io::ErrorKind::Interrupted {
                let _ = self.error.set(one_line(e));
            }
        }
        result
    }
}

impl Seek for HttpBody {
    fn seek(&mut self, _: SeekFrom) -> io::Result<u64> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "an HTTP stream cannot seek",
        ))
    }
}

impl MediaSource for HttpBody {
    fn is_seekable(&self) -> bool {
        false
    }

    fn byte_len(&self) -> Option<u64> {
        None
    }
}

fn one_line(s: impl fmt::Display) -> String {
    s.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decoded chunks in, exact 20 ms frames at 48 kHz out.
#[derive(Default)]
struct FrameAssembler {
    /// Created from the first chunk's rate because some streams (ADTS, some MP3) only reveal
    /// their true rate once a packet is decoded; replaced when the rate changes mid-stream.
    resampler: Option<Resampler>,
    pcm: Vec<f32>,
    /// Read position in `pcm`; consumed samples are dropped on the next push so that each frame
    /// does not shift the whole buffer.
    pos: usize,
}

impl FrameAssembler {
    fn push(&mut self, chunk: &MonoChunk) -> Result<(), String> {
        self.pcm.drain(..self.pos);
        self.pos = 0;
        let resampler = match &mut self.resampler {
            Some(r) if r.input_rate() == chunk.rate => r,
            slot => {
                // Flushed first so the old rate's last samples are not lost.
                if let Some(old) = slot {
                    old.finish(&mut self.pcm)?;
                }
                slot.insert(Resampler::new(chunk.rate)?)
            }
        };
        resampler.process(&chunk.samples, &mut self.pcm)
    }

    /// Flushes the resampler at the end of an input; buffered samples stay for the next one.
    fn end_of_input(&mut self) -> Result<(), String> {
        match self.resampler.take() {
            Some(mut r) => r.finish(&mut self.pcm),
            None => Ok(()),
        }
    }

    fn pop(&mut self) -> Option<Box<PcmFrame>> {
        let samples = self.pcm.get(self.pos..self.pos + FRAME_SAMPLES)?;
        let mut frame = silence();
        // Lossy decoders and the resampler overshoot full scale slightly; frames promise -1..=1.
        for (out, &s) in frame.iter_mut().zip(samples) {
            *out = s.clamp(-1.0, 1.0);
        }
        self.pos += FRAME_SAMPLES;
        Some(frame)
    }
}

/// The fallback programme, decoded on demand one frame at a time (also used by the upstream
/// server relay, `super::upstream`).
pub(crate) struct FallbackSource {
    path: Option<PathBuf>,
    decoder: Option<SourceDecoder>,
    frames: FrameAssembler,
    /// Set after a failure (already logged) until the next outage: silence plays meanwhile.
    broken: bool,
}

impl FallbackSource {
    pub(crate) fn new(fallback: &Fallback) -> Self {
        FallbackSource {
            path: match fallback {
                Fallback::Silence => None,
                Fallback::File(path) => Some(path.clone()),
            },
            decoder: None,
            frames: FrameAssembler::default(),
            broken: false,
        }
    }

    fn check_file(path: &Path) -> Result<(), RelayError> {
        SourceDecoder::open(path)
            .map(drop)
            .map_err(|e| RelayError::FallbackFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
    }

    /// Back to the beginning, and a fresh chance for a file that failed before.
    pub(crate) fn restart(&mut self) {
        self.decoder = None;
        self.frames = FrameAssembler::default();
        self.broken = false;
    }

    pub(crate) fn next_frame(&mut self) -> Box<PcmFrame> {
        let Some(path) = self.path.clone() else {
            return silence();
        };
        if self.broken {
            return silence();
        }
        match self.decode_frame(&path) {
            Ok(frame) => frame,
            Err(reason) => {
                tracing::warn!(
                    path = %path.display(),
                    "fallback file unusable, playing silence instead: {reason}"
                );
                self.broken = true;
                self.decoder = None;
                silence()
            }
        }
    }

    fn decode_frame(&mut self, path: &Path) -> Result<Box<PcmFrame>, String> {
        let mut restarts = 0u32;
        loop {
            if let Some(frame) = self.frames.pop() {
                return Ok(frame);
            }
            let decoder = match &mut self.decoder {
                Some(d) => d,
                None => {
                    let (decoder, _) = SourceDecoder::open(path).map_err(|e| e.to_string())?;
                    self.decoder.insert(decoder)
                }
            };
            // A corrupt stretch ends the pass early instead of silencing the fallback: the
            // loop restarts from the beginning, which decoded fine when it was opened.
            let chunk = match decoder.next_chunk() {
                Ok(chunk) => chunk,
                Err(e) => {
                    tracing::warn!(path = %path.display(), "fallback file: {e}; looping early");
                    None
                }
            };
            match chunk {
                Some(chunk) => self.frames.push(&chunk)?,
                None => {
                    self.frames.end_of_input()?;
                    self.decoder = None;
                    restarts += 1;
                    if restarts > MAX_FALLBACK_RESTARTS_PER_FRAME {
                        return Err("too short to loop".into());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
