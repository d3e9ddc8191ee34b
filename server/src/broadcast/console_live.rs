//! Broadcasting from the console: a district or commune operator speaks into a PC or phone
//! microphone. The browser encodes Opus (WebCodecs, 40 ms packets at 24 kb/s: a 4G uplink
//! carries it) and sends each packet over a WebSocket ([`crate::operator::live_routes`]);
//! here each one becomes an RTP packet for the live input ([`ConsolePacket`]). The console
//! therefore gets exactly what the studio gets — the jitter buffer, the no-packet time-out,
//! the silence rule, the levels and the ladder — and the studio input keeps working beside it.
//!
//! One console broadcast at a time: the live input has one stream, so a second person who
//! tries is told who is live and where. The studio on air is not interrupted either: the
//! console refuses to start over it (an emergency may, as it does over the studio).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broadcast::on_air::{CommandError, OnAir, CONSOLE_LIVE_ID};
use crate::ingest::live_rtp::ConsolePacket;
use crate::schedule::Targets;

/// The RTP payload type the console's Opus goes in as (in the default Opus range).
const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Samples of a 20 ms Opus packet on the RTP clock (48 kHz): the timestamp's step for a packet
/// whose own length cannot be read (the live input then counts it malformed anyway).
const SAMPLES_PER_PACKET: u32 = 960;

/// The largest Opus packet accepted from a browser: 120 ms at 510 kb/s is under 8 kB, and
/// the console sends 40 ms at 24 kb/s (120 bytes).
pub const MAX_PACKET_BYTES: usize = 4_000;

/// Who is speaking from the console now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Speaker {
    /// The person's account name.
    pub user: String,
    /// Where they are heard.
    pub targets: Targets,
    /// Since when (RFC 3339).
    pub since: String,
    #[serde(skip)]
    session: u64,
}

/// Why a console broadcast could not start.
#[derive(Debug, thiserror::Error)]
pub enum BeginError {
    /// Someone else is live from the console.
    #[error("{} is already live from the console", .0.user)]
    Busy(Speaker),
    /// The studio (or another live item) is on air at a station.
    #[error("live `{item}` is on air at {station}; it must stop first")]
    LiveOnAir {
        /// The item, `live:ID`.
        item: String,
        /// One station where it airs.
        station: String,
    },
    /// The on-air controller refused (bad targets, stopped controller).
    #[error(transparent)]
    Refused(#[from] CommandError),
}

/// Why a packet was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Larger than [`MAX_PACKET_BYTES`] or empty.
    #[error("an Opus packet must be 1 to {MAX_PACKET_BYTES} bytes")]
    Size,
    /// The live input has stopped (the server is shutting down).
    #[error("the live input has stopped")]
    Closed,
}

/// The console's way into the live input: one per server.
#[derive(Debug)]
pub struct ConsoleLive {
    on_air: OnAir,
    feed: mpsc::Sender<ConsolePacket>,
    no_packet_timeout: Duration,
    current: Mutex<Option<Speaker>>,
    sessions: AtomicU64,
}

impl ConsoleLive {
    /// `feed` is the live input's ([`crate::broadcast::live_input::LiveInput::console_feed`]);
    /// `no_packet_timeout` is the studio's, which the console's sessions keep too.
    pub fn new(
        on_air: OnAir,
        feed: mpsc::Sender<ConsolePacket>,
        no_packet_timeout: Duration,
    ) -> Self {
        ConsoleLive {
            on_air,
            feed,
            no_packet_timeout,
            current: Mutex::new(None),
            sessions: AtomicU64::new(1),
        }
    }

    /// How long a session may go without a packet before it ends.
    pub fn no_packet_timeout(&self) -> Duration {
        self.no_packet_timeout
    }

    /// Who is live from the console, if anyone.
    pub fn speaker(&self) -> Option<Speaker> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Speaker>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Puts the console on air at `targets` for `user`, whose browser is at `from`. The
    /// targets are the caller's to check against the person's role.
    pub async fn begin(
        self: &Arc<Self>,
        user: &str,
        from: SocketAddr,
        targets: Targets,
    ) -> Result<ConsoleSession, BeginError> {
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        let speaker = Speaker {
            user: user.to_owned(),
            targets: targets.clone(),
            since: jiff::Timestamp::now().to_string(),
            session,
        };
        // Claimed before the controller is asked, so that two people pressing at once cannot
        // both get through.
        {
            let mut current = self.lock();
            if let Some(busy) = current.as_ref() {
                return Err(BeginError::Busy(busy.clone()));
            }
            *current = Some(speaker);
        }
        let started = self.start(user, targets).await;
        if started.is_err() {
            self.release(session);
        }
        started?;
        Ok(ConsoleSession {
            live: Arc::clone(self),
            session,
            from,
            ssrc: rand::random(),
            seq: rand::random(),
            timestamp: rand::random(),
            packets: 0,
            bytes: 0,
            ended: false,
        })
    }

    async fn start(&self, user: &str, targets: Targets) -> Result<(), BeginError> {
        let console_item = format!("live:{CONSOLE_LIVE_ID}");
        let status = self.on_air.status().await?;
        if let Some(station) = status.stations.iter().find(|s| {
            s.item
                .as_deref()
                .is_some_and(|item| item.starts_with("live:") && item != console_item)
        }) {
            return Err(BeginError::LiveOnAir {
                item: station.item.clone().unwrap_or_default(),
                station: station.station.clone(),
            });
        }
        let name = format!("Trực tiếp từ bảng điều khiển: {user}");
        self.on_air
            .live_named(CONSOLE_LIVE_ID, &name, targets)
            .await?;
        Ok(())
    }

    fn release(&self, session: u64) -> bool {
        let mut current = self.lock();
        if current.as_ref().is_some_and(|s| s.session == session) {
            *current = None;
            true
        } else {
            false
        }
    }
}

/// One person's broadcast from the console. [`ConsoleSession::end`] takes it off air; what it
/// interrupted resumes.
#[derive(Debug)]
pub struct ConsoleSession {
    live: Arc<ConsoleLive>,
    session: u64,
    from: SocketAddr,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    packets: u64,
    bytes: u64,
    ended: bool,
}

impl ConsoleSession {
    /// Hands one Opus packet (of any length: 40 ms from WebCodecs, 20 or 60 ms from a
    /// recorder's WebM) to the live input. A packet the input has no room for is
    /// dropped (live audio never waits; the jitter buffer conceals it) and still `Ok`.
    pub fn send(&mut self, packet: &[u8]) -> Result<(), SendError> {
        if packet.is_empty() || packet.len() > MAX_PACKET_BYTES {
            return Err(SendError::Size);
        }
        let rtp = rtp_rs::RtpPacketBuilder::new()
            .payload_type(OPUS_PAYLOAD_TYPE)
            .ssrc(self.ssrc)
            .sequence(rtp_rs::Seq::from(self.seq))
            .timestamp(self.timestamp)
            .payload(packet)
            .build()
            .map_err(|_| SendError::Size)?;
        self.seq = self.seq.wrapping_add(1);
        // The RTP clock advances by what the packet holds, as a sender's would.
        let samples = opus::packet::get_nb_samples(packet, 48_000)
            .ok()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(SAMPLES_PER_PACKET);
        self.timestamp = self.timestamp.wrapping_add(samples);
        self.packets += 1;
        self.bytes += packet.len() as u64;
        match self.live.feed.try_send(ConsolePacket {
            from: self.from,
            rtp,
        }) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
        }
    }

    /// Opus packets and their bytes so far.
    pub fn sent(&self) -> (u64, u64) {
        (self.packets, self.bytes)
    }

    /// Whether the session still holds the console (an admin's `live stop --id console`
    /// takes it off air, after which [`ConsoleSession::end`] only releases it).
    pub fn holds(&self) -> bool {
        self.live
            .lock()
            .as_ref()
            .is_some_and(|s| s.session == self.session)
    }

    /// Takes the broadcast off air (unless someone already did) and frees the console.
    pub async fn end(mut self) -> Result<(), CommandError> {
        self.ended = true;
        self.finish().await
    }

    async fn finish(&self) -> Result<(), CommandError> {
        if !self.live.release(self.session) {
            return Ok(());
        }
        match self.live.on_air.stop_live(CONSOLE_LIVE_ID).await {
            Ok(())
            | Err(CommandError::Schedule(crate::schedule::ScheduleError::NotActive { .. })) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for ConsoleSession {
    /// A session dropped without [`ConsoleSession::end`] (its connection's task was cancelled)
    /// still comes off air.
    fn drop(&mut self) {
        if self.ended || !self.live.release(self.session) {
            return;
        }
        let on_air = self.live.on_air.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = on_air.stop_live(CONSOLE_LIVE_ID).await;
            });
        }
    }
}
