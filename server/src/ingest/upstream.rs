//! Relaying an upstream radio server (province → district → commune) over the same QUIC
//! protocol the agents speak.
//!
//! This server is simply one of the upstream's agents: the upstream enrols it like a commune
//! station (`radio-server enroll binh-son` there), and it runs the relay agent's own link,
//! reconnect, jitter buffer and playout ([`relay_agent::Agent`]) with one special sink,
//! [`UpstreamSink`], which hands every decoded 20 ms slot to the on-air controller as a
//! [`PcmFrame`]. Everything agents get for free therefore holds for a chained server too:
//! mutual TLS, refusal of unknown or revoked identities, reconnect with backoff and jitter for
//! ever, packet-loss concealment, seamless programme switches.
//!
//! The upstream's Opus is decoded and encoded again by this server's pipeline, once per
//! upstream (not per agent): every source of a station goes through one encoder so that
//! switches between them can be faded at a frame boundary. Passing the upstream's packets
//! through untouched would save one Opus generation, at the price of a second switching path;
//! at 32 kb/s speech the generation loss is small next to the loudspeakers.
//!
//! While the link is down, the configured fallback (or silence) plays, as for an HTTP relay;
//! the link logs each failure and retry, this module logs the outage and the recovery.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use radio_config::{AgentConfig, UpstreamSettings};
use relay_agent::sink::{Sink, SinkError, SinkStats, Slot};
use relay_agent::{Agent, AgentStatus, Bundle};
use tokio::sync::{mpsc, oneshot};

use crate::ingest::relay::{Fallback, FallbackSource};
use crate::ingest::{PcmFrame, FRAME_SAMPLES};

/// Silence, not the fallback, while the first connection is being made: a normal start takes
/// a fraction of a second, and a few seconds of fallback at every start would be noise.
const STARTUP_GRACE: Duration = Duration::from_secs(3);

/// Why an upstream cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The enrolment bundle is missing or broken.
    #[error("upstream `{name}`: {error}")]
    Bundle {
        /// The upstream's name.
        name: String,
        /// What is wrong with the bundle (shown, not chained: it is the whole story).
        error: relay_agent::bundle::BundleError,
    },
    /// The bundle's TLS material is unusable, or the link cannot start.
    #[error("upstream `{name}`: {reason}")]
    Start {
        /// The upstream's name.
        name: String,
        /// Why.
        reason: String,
    },
}

/// A configured upstream with its bundle loaded (at start-up, so a broken bundle is reported
/// before the first slot, not at air time).
#[derive(Debug, Clone)]
pub struct Upstream {
    /// What schedule entries call it.
    pub name: String,
    settings: UpstreamSettings,
    bundle: Bundle,
}

impl Upstream {
    /// Loads the bundle named in `settings`.
    pub fn load(settings: &UpstreamSettings) -> Result<Self, UpstreamError> {
        let bundle = Bundle::load(&settings.bundle).map_err(|error| UpstreamError::Bundle {
            name: settings.name.clone(),
            error,
        })?;
        // The TLS material is checked now too: the same call runs again at every relay.
        relay_agent::tls::client_config(&bundle).map_err(|e| UpstreamError::Start {
            name: settings.name.clone(),
            reason: e.to_string(),
        })?;
        Ok(Upstream {
            name: settings.name.clone(),
            settings: settings.clone(),
            bundle,
        })
    }

    /// The identity this server has at the upstream, and the upstream's address.
    pub fn describe(&self) -> String {
        format!(
            "`{}` as `{}` at {}",
            self.name,
            self.bundle.commune,
            self.settings
                .server
                .as_deref()
                .unwrap_or(&self.bundle.server)
        )
    }

    /// Connects and relays into `frames` until the handle is dropped. Must run inside a tokio
    /// runtime; the frames come at the pace of the embedded agent's playout clock.
    pub fn spawn(
        &self,
        frames: mpsc::Sender<Box<PcmFrame>>,
    ) -> Result<UpstreamHandle, UpstreamError> {
        let defaults = AgentConfig::default();
        let config = AgentConfig {
            server: self.settings.server.clone(),
            playout_delay_ms: self.settings.playout_delay_ms,
            // The jitter buffer must hold the whole delay and some spare, as a standalone
            // agent's config check demands.
            jitter_capacity_frames: defaults
                .jitter_capacity_frames
                .max(self.settings.playout_delay_ms / 20 + 10),
            ..defaults
        };
        let status: Arc<OnceLock<AgentStatus>> = Arc::new(OnceLock::new());
        let link = status.clone();
        let sink = UpstreamSink::new(
            &self.name,
            frames,
            match &self.settings.fallback {
                Some(path) => Fallback::File(path.clone()),
                None => Fallback::Silence,
            },
            Box::new(move || link.get().is_some_and(AgentStatus::connected)),
        );
        let agent =
            Agent::with_sinks(config, self.bundle.clone(), vec![Box::new(sink)]).map_err(|e| {
                UpstreamError::Start {
                    name: self.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        let _ = status.set(agent.status());
        let (stop, stopped) = oneshot::channel::<()>();
        let name = self.name.clone();
        tracing::info!(upstream = %name, "relaying upstream {}", self.describe());
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            match agent.run(shutdown).await {
                Ok(report) => tracing::info!(
                    upstream = %name,
                    "upstream relay stopped: {} frames received, {} sessions",
                    report.stats.frames_received,
                    report.sessions
                ),
                Err(e) => tracing::error!(upstream = %name, "upstream relay failed: {e}"),
            }
        });
        Ok(UpstreamHandle { _stop: stop })
    }
}

/// A running upstream relay; dropping it disconnects.
#[derive(Debug)]
pub struct UpstreamHandle {
    _stop: oneshot::Sender<()>,
}

/// The embedded agent's only sink: slots become [`PcmFrame`]s for the on-air controller, and
/// the fallback fills in while the link is down.
struct UpstreamSink {
    name: String,
    frames: mpsc::Sender<Box<PcmFrame>>,
    fallback: FallbackSource,
    /// Whether the embedded agent's session is up.
    connected: Box<dyn Fn() -> bool + Send>,
    started: Instant,
    /// Start of the current outage, once the fallback is playing.
    outage: Option<Instant>,
    stats: SinkStats,
}

impl UpstreamSink {
    fn new(
        name: &str,
        frames: mpsc::Sender<Box<PcmFrame>>,
        fallback: Fallback,
        connected: Box<dyn Fn() -> bool + Send>,
    ) -> Self {
        UpstreamSink {
            name: name.to_owned(),
            frames,
            fallback: FallbackSource::new(&fallback),
            connected,
            started: Instant::now(),
            outage: None,
            stats: SinkStats::default(),
        }
    }

    /// What to hand on for this slot.
    fn frame_for(&mut self, slot: &Slot<'_>) -> Box<PcmFrame> {
        let connected = (self.connected)();
        // Back as soon as the link is: the upstream may have nothing on air right now.
        if connected {
            if let Some(since) = self.outage.take() {
                tracing::info!(
                    upstream = %self.name,
                    "upstream `{}` recovered after {:.1} s",
                    self.name,
                    since.elapsed().as_secs_f64()
                );
            }
        }
        // An idle slot with the link up is the upstream's own silence (nothing on air there);
        // with the link down it is an outage, once what was buffered has played.
        if slot.silent && !connected {
            if self.outage.is_none() && self.started.elapsed() >= STARTUP_GRACE {
                tracing::warn!(
                    upstream = %self.name,
                    "upstream `{}` unreachable: playing the fallback until it returns",
                    self.name
                );
                self.fallback.restart();
                self.outage = Some(Instant::now());
            }
            if self.outage.is_some() {
                return self.fallback.next_frame();
            }
            return Box::new([0.0; FRAME_SAMPLES]);
        }
        let mut frame = Box::new([0.0; FRAME_SAMPLES]);
        for (out, sample) in frame.iter_mut().zip(slot.pcm) {
            *out = f32::from(*sample) / 32_768.0;
        }
        frame
    }
}

impl Sink for UpstreamSink {
    fn describe(&self) -> String {
        format!("upstream:{}", self.name)
    }

    fn play(&mut self, slot: &Slot<'_>) -> Result<(), SinkError> {
        self.stats.slots += 1;
        let frame = self.frame_for(slot);
        // Never blocks the agent's playout clock: a full queue means the on-air controller is
        // behind, and for live audio the newest frame is the one to lose (the controller
        // trims its own backlog too).
        match self.frames.try_send(frame) {
            Ok(()) => self.stats.packets_sent += 1,
            Err(mpsc::error::TrySendError::Full(_)) => self.stats.dropped += 1,
            // The playback ended; the handle is about to stop the agent.
            Err(mpsc::error::TrySendError::Closed(_)) => self.stats.dropped += 1,
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        self.stats.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (UpstreamSink, mpsc::Receiver<Box<PcmFrame>>) {
        let (tx, rx) = mpsc::channel(4);
        (
            UpstreamSink::new("tinh", tx, Fallback::Silence, Box::new(|| true)),
            rx,
        )
    }

    #[test]
    fn slots_become_frames_scaled_to_unit_range() {
        let (mut sink, mut rx) = sink();
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| if i % 2 == 0 { 16_384 } else { -32_768 })
            .collect();
        sink.play(&Slot {
            opus: None,
            pcm: &pcm,
            silent: false,
        })
        .expect("play");
        let frame = rx.try_recv().expect("a frame");
        assert_eq!(frame[0], 0.5);
        assert_eq!(frame[1], -1.0);
    }

    #[test]
    fn a_full_queue_drops_instead_of_blocking() {
        let (mut sink, _rx) = sink();
        let pcm = vec![0i16; FRAME_SAMPLES];
        for _ in 0..10 {
            sink.play(&Slot {
                opus: None,
                pcm: &pcm,
                silent: false,
            })
            .expect("play");
        }
        let stats = sink.stats();
        assert_eq!((stats.slots, stats.packets_sent, stats.dropped), (10, 4, 6));
    }

    #[test]
    fn the_fallback_plays_only_after_the_startup_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tone.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("wav");
        for i in 0..48_000 {
            let v = (i as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin();
            w.write_sample((v * 16_000.0) as i16).expect("sample");
        }
        w.finalize().expect("finalize");
        let (tx, mut rx) = mpsc::channel(4);
        let link = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let up = link.clone();
        let mut sink = UpstreamSink::new(
            "tinh",
            tx,
            Fallback::File(path),
            Box::new(move || up.load(std::sync::atomic::Ordering::Relaxed)),
        );
        let idle = vec![0i16; FRAME_SAMPLES];
        let idle = Slot {
            opus: None,
            pcm: &idle,
            silent: true,
        };
        sink.play(&idle).expect("play");
        let first = rx.try_recv().expect("frame");
        assert!(first.iter().all(|s| *s == 0.0), "silence while connecting");
        sink.started = Instant::now() - STARTUP_GRACE;
        sink.play(&idle).expect("play");
        let fallback = rx.try_recv().expect("frame");
        assert!(fallback.iter().any(|s| s.abs() > 0.1), "the fallback tone");
        assert!(sink.outage.is_some());
        // Audio buffered before the link fell is not a recovery; the link coming back is,
        // even while the upstream has nothing on air.
        let pcm = vec![1000i16; FRAME_SAMPLES];
        sink.play(&Slot {
            opus: None,
            pcm: &pcm,
            silent: false,
        })
        .expect("play");
        assert!(sink.outage.is_some());
        let _ = rx.try_recv();
        link.store(true, std::sync::atomic::Ordering::Relaxed);
        sink.play(&idle).expect("play");
        assert!(sink.outage.is_none());
        let upstream_silence = rx.try_recv().expect("frame");
        assert!(upstream_silence.iter().all(|s| *s == 0.0));
    }
}
