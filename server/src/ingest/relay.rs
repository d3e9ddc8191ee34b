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
mod tests {
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
                let env =
                    0.6 + 0.25 * (2.0 * PI * 0.7 * t).sin() + 0.15 * (2.0 * PI * 1.9 * t).sin();
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
        let head =
            format!("HTTP/1.0 200 OK\r\nContent-Type: {content_type}\r\nServer: test\r\n\r\n");
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
        let _server =
            TestServer::start_on(TcpListener::bind(addr).unwrap(), move |_, mut s, stop| {
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
}
