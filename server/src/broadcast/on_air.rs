//! The on-air controller: the 20 ms clock, the router, and the priority ladder in one task.
//!
//! Everything that changes what a station airs — the schedule's slots, bulletins, live
//! broadcasts, emergencies — is a command to this task, so switching is serialised with the
//! clock and always lands on a frame boundary. The ladder (`schedule/ladder.rs`) decides; this
//! task carries its decisions out: it opens playbacks (each item encoded once, shared by every
//! station that airs it from the same point), routes stations to them, and tells the ladder when
//! a recording has run out.
//!
//! Opening a file decodes its first packets (and, to resume, skips to the position), so it runs
//! on a blocking thread; the station stays silent for the few milliseconds that takes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;

use crate::broadcast::playback::{Playback, FRAME_PERIOD};
use crate::broadcast::router::{PlaybackId, Router, TickEvent};
use crate::broadcast::station_output::StationOutput;
use crate::ingest::live_rtp::ReleaseTimes;
use crate::ingest::relay::{spawn_relay, Fallback, RelayConfig, RelayHandle};
use crate::ingest::upstream::{Upstream, UpstreamHandle};
use crate::ingest::PcmFrame;
use crate::schedule::ladder::{BulletinSnapshot, Change, ItemRef, Ladder, StopReason};
use crate::schedule::scheduler::Scheduler;
use crate::schedule::{Bulletin, Level, ScheduleError, SourceSpec, Targets};
use radio_proto::ProgrammeLevel;
use relay_agent::service_manager::Progress;

/// Frames a relay may deliver ahead of the clock; its thread blocks beyond that, so the
/// upstream is read at real-time pace.
const RELAY_AHEAD: usize = 8;

/// Clocked live frames handed to the live playback; each is routed at once, so one would do.
const LIVE_FEED: usize = 4;

/// A clocked live input that has released nothing for this long (µs of media time) is
/// carried on with silence on the tick ([`Controller::live_silence`]).
const LIVE_SILENCE_AFTER_US: u64 = 40_000;

/// The next frame of a live input, or `None` once it has closed (never while there is none:
/// the branch that awaits it is disabled then).
async fn recv_live(live: &mut Option<mpsc::Receiver<Box<PcmFrame>>>) -> Option<Box<PcmFrame>> {
    match live {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The text a panic was raised with, as the default hook prints it.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_owned(),
            Err(_) => "a panic without a message".to_owned(),
        },
    }
}

/// Debug builds only, for the tests that check a dead controller ends the process:
/// `RADIO_TEST_PANIC=on_air` makes the controller panic at its tick number
/// `RADIO_TEST_PANIC_AFTER_TICKS` (default 50). Release builds have no such hook.
#[cfg(debug_assertions)]
fn injected_panic_tick() -> Option<u64> {
    if std::env::var("RADIO_TEST_PANIC").ok()? != "on_air" {
        return None;
    }
    Some(
        std::env::var("RADIO_TEST_PANIC_AFTER_TICKS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(50),
    )
}

/// What happened on air, for the demo, tests, logs and (later) the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnAirEvent {
    /// A station started airing an item.
    Started {
        /// The station.
        station: String,
        /// The item.
        item: ItemRef,
        /// The programme id its agent sees.
        programme_id: u64,
    },
    /// A station stopped airing an item.
    Stopped {
        /// The station.
        station: String,
        /// The item.
        item: ItemRef,
        /// Why.
        reason: StopReason,
    },
    /// A playback ran out (or failed, or lost its last listener) and was removed.
    PlaybackEnded {
        /// The item it played.
        item: ItemRef,
        /// Its programme id.
        programme_id: u64,
        /// Where in the programme it ended, in 20 ms frames: its start offset plus what it
        /// produced (for a recording played to its end, the recording's length).
        frames: u64,
        /// Why it ended early, one line, if it did.
        error: Option<String>,
    },
}

/// The controller stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The controller is gone.
    #[error("the on-air controller has stopped")]
    Stopped,
    /// The ladder refused the command.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

type Reply = oneshot::Sender<Result<(), ScheduleError>>;

enum Command {
    Emergency {
        id: String,
        name: String,
        source: SourceSpec,
        targets: Targets,
        repeat: u32,
        reply: Reply,
    },
    StopEmergency {
        id: String,
        reply: Reply,
    },
    Live {
        id: String,
        /// What the status and reports call it; `Trực tiếp: ID` when `None`.
        name: Option<String>,
        targets: Targets,
        reply: Reply,
    },
    StopLive {
        id: String,
        reply: Reply,
    },
    Bulletin {
        bulletin: Bulletin,
        reply: Reply,
    },
    Accept {
        station: String,
        id: String,
        from: Option<Timestamp>,
        reply: Reply,
    },
    Decline {
        station: String,
        id: String,
        reason: Option<String>,
        reply: Reply,
    },
    Bulletins {
        reply: oneshot::Sender<Vec<BulletinSnapshot>>,
    },
    CancelBulletin {
        id: String,
        reply: Reply,
    },
    Schedule {
        scheduler: Box<Scheduler>,
        reply: Reply,
    },
    Status {
        reply: oneshot::Sender<OnAirStatus>,
    },
    Sources {
        reply: oneshot::Sender<Vec<SourceInUse>>,
    },
}

/// What a running emergency or a bulletin still to air plays: what must not be deleted from
/// under it (the audio library asks before it deletes a recording).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInUse {
    /// `emergency` or `bulletin`.
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub source: SourceSpec,
}

/// What one station airs now, for status pages and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StationStatus {
    /// Station id.
    pub station: String,
    /// The item on air (per the ladder), if any: `entry:ID`, `bulletin:ID`, `live:ID`,
    /// `emergency:ID`.
    pub item: Option<String>,
    /// Its name.
    pub name: Option<String>,
    /// Its level: `thường`, `ưu tiên`, `trực tiếp`, `khẩn cấp`.
    pub level: Option<String>,
    /// Since when (RFC 3339).
    pub since: Option<String>,
}

/// An emergency that is running (started and not stopped; it may be waiting under a newer one
/// at all its stations), for status pages and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EmergencyStatus {
    /// The id that stops it.
    pub id: String,
    pub name: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// As given when it started: `"all"`, `{"stations": [..]}` or `{"groups": [..]}`.
    pub targets: Targets,
    /// The stations those targets are, in the district's order.
    pub stations: Vec<String>,
}

/// What airs now: every station, and the emergencies running (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OnAirStatus {
    pub stations: Vec<StationStatus>,
    pub emergencies: Vec<EmergencyStatus>,
}

/// Handle to the on-air controller.
#[derive(Debug, Clone)]
pub struct OnAir {
    tx: mpsc::Sender<Command>,
    events: broadcast::Sender<OnAirEvent>,
    schedule: watch::Receiver<Arc<Scheduler>>,
    /// Set once, with the panic's message, if the controller's task panics.
    died: watch::Receiver<Option<Arc<str>>>,
    /// Advanced every 20 ms tick: what feeds the watchdog (`relay_agent::service_manager`), so a
    /// controller that hangs, not only one that panics, gets the server restarted.
    progress: Progress,
}

/// The id a broadcast from the console goes on air under ([`crate::broadcast::console_live`]).
pub const CONSOLE_LIVE_ID: &str = "console";

/// Settings of the controller.
#[derive(Debug)]
pub struct OnAirConfig {
    /// Opus bitrate of every playback.
    pub bitrate: u32,
    /// The live input (studio RTP or pipe), if the server has one.
    pub live: Option<mpsc::Receiver<Box<PcmFrame>>>,
    /// Set when the live input releases its frames on its own real-time clock (the RTP
    /// input's jitter buffer does), with the instant each frame in `live` was due: each frame
    /// is then encoded and sent as soon as it is released, stamped with that instant, instead
    /// of waiting up to 20 ms for the next tick. `None` for a pipe, which has no clock of its
    /// own and is paced by the tick.
    pub live_release: Option<Arc<ReleaseTimes>>,
    /// Set when `live` carries only the console's broadcasts (the server has no studio
    /// input): any other live item then fails to open, as it would without a live input.
    pub console_only_live: bool,
    /// How HTTP/Icecast relays fail over and retry.
    pub relay: radio_config::RelaySettings,
    /// Upstream radio servers that `SourceSpec::Upstream` names.
    pub upstreams: Vec<Upstream>,
}

impl Default for OnAirConfig {
    fn default() -> Self {
        OnAirConfig {
            bitrate: radio_config::ServerConfig::default().bitrate,
            live: None,
            live_release: None,
            console_only_live: false,
            relay: radio_config::RelaySettings::default(),
            upstreams: Vec::new(),
        }
    }
}

/// The relay settings of `settings` for `url`.
fn relay_config(settings: &radio_config::RelaySettings, url: String) -> RelayConfig {
    let ms = Duration::from_millis;
    RelayConfig {
        fallback: match &settings.fallback {
            Some(path) => Fallback::File(path.clone()),
            None => Fallback::Silence,
        },
        connect_timeout: ms(settings.connect_timeout_ms),
        stall_timeout: ms(settings.stall_timeout_ms),
        backoff_min: ms(settings.backoff_min_ms),
        backoff_max: ms(settings.backoff_max_ms),
        ..RelayConfig::new(url)
    }
}

impl OnAir {
    /// Starts the controller over `outputs`, driven by `ladder`; it runs until every handle is
    /// dropped.
    pub fn spawn(
        outputs: impl IntoIterator<Item = Arc<StationOutput>>,
        ladder: Ladder,
        config: OnAirConfig,
    ) -> Self {
        let (tx, rx) = mpsc::channel(64);
        let outputs: Vec<Arc<StationOutput>> = outputs.into_iter().collect();
        // One tick can switch every station: a programme's end and the next one's start are two
        // events per station, all sent before any subscriber runs. A channel smaller than that
        // made subscribers lag at a province's size (3,000 stations): `play_bulletin` missed the
        // end of `--repeat`'s programme and never started the next.
        let (events, _) = broadcast::channel(1024.max(4 * outputs.len()));
        let (schedule_tx, schedule) = watch::channel(Arc::new(ladder.scheduler().clone()));
        let mut controller = Controller::new(Router::new(outputs), ladder, config, events.clone());
        controller.schedule = Some(schedule_tx);
        let progress = controller.progress.clone();
        let task = tokio::spawn(controller.run(rx));
        // Tokio keeps a panicking task's panic to itself: without this watch, a dead controller
        // leaves a process that answers the admin API, keeps its agents' links up and airs
        // nothing, so no service manager would ever restart it.
        let (died_tx, died) = watch::channel(None);
        tokio::spawn(async move {
            if let Err(error) = task.await {
                if error.is_panic() {
                    let _ = died_tx.send(Some(panic_message(error.into_panic()).into()));
                }
            }
        });
        Self {
            tx,
            events,
            schedule,
            died,
            progress,
        }
    }

    /// The controller's ticks, counted: feed a watchdog with it.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// Resolves, with the panic's message, if the controller dies: from then on no station
    /// airs anything, and the process must end so that its service manager restarts it. Never
    /// resolves while the controller runs, nor after it ends normally.
    pub async fn died(&self) -> Arc<str> {
        let mut died = self.died.clone();
        let why = match died.wait_for(Option::is_some).await {
            Ok(why) => why.clone(),
            // The watcher ended without a panic: the controller stopped normally.
            Err(_) => None,
        };
        match why {
            Some(why) => why,
            None => std::future::pending().await,
        }
    }

    /// Subscribes to what happens on air from now on.
    pub fn events(&self) -> broadcast::Receiver<OnAirEvent> {
        self.events.subscribe()
    }

    /// The schedule on air, republished at every change (prefetch planning follows it).
    pub fn schedule(&self) -> watch::Receiver<Arc<Scheduler>> {
        self.schedule.clone()
    }

    async fn call(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)??;
        Ok(())
    }

    /// Breaks in with an emergency at `targets`, interrupting everything there. A recording is
    /// played `repeat` times (at least once), then the emergency ends by itself; streams run until
    /// [`OnAir::stop_emergency`].
    pub async fn emergency(
        &self,
        id: &str,
        name: &str,
        source: SourceSpec,
        targets: Targets,
        repeat: u32,
    ) -> Result<(), CommandError> {
        self.call(|reply| Command::Emergency {
            id: id.into(),
            name: name.into(),
            source,
            targets,
            repeat: repeat.max(1),
            reply,
        })
        .await
    }

    /// Ends an emergency; what it interrupted resumes.
    pub async fn stop_emergency(&self, id: &str) -> Result<(), CommandError> {
        self.call(|reply| Command::StopEmergency {
            id: id.into(),
            reply,
        })
        .await
    }

    /// Puts the live input on air at `targets`.
    pub async fn live(&self, id: &str, targets: Targets) -> Result<(), CommandError> {
        self.call(|reply| Command::Live {
            id: id.into(),
            name: None,
            targets,
            reply,
        })
        .await
    }

    /// [`OnAir::live`] under a name of its own (the status and the plays report show it).
    pub async fn live_named(
        &self,
        id: &str,
        name: &str,
        targets: Targets,
    ) -> Result<(), CommandError> {
        self.call(|reply| Command::Live {
            id: id.into(),
            name: Some(name.into()),
            targets,
            reply,
        })
        .await
    }

    /// Takes a live broadcast off air; what it interrupted resumes.
    pub async fn stop_live(&self, id: &str) -> Result<(), CommandError> {
        self.call(|reply| Command::StopLive {
            id: id.into(),
            reply,
        })
        .await
    }

    /// Queues a bulletin (priority ones air at once where nothing higher is on).
    pub async fn bulletin(&self, bulletin: Bulletin) -> Result<(), CommandError> {
        self.call(|reply| Command::Bulletin { bulletin, reply })
            .await
    }

    /// A station accepts a normal bulletin, to air at once.
    pub async fn accept(&self, station: &str, id: &str) -> Result<(), CommandError> {
        self.accept_from(station, id, None).await
    }

    /// A station accepts a normal bulletin, to air at the first opportunity at or after
    /// `from` (`None`: at once).
    pub async fn accept_from(
        &self,
        station: &str,
        id: &str,
        from: Option<Timestamp>,
    ) -> Result<(), CommandError> {
        self.call(|reply| Command::Accept {
            station: station.into(),
            id: id.into(),
            from,
            reply,
        })
        .await
    }

    /// A station declines a normal bulletin: it never airs there.
    pub async fn decline(
        &self,
        station: &str,
        id: &str,
        reason: Option<String>,
    ) -> Result<(), CommandError> {
        self.call(|reply| Command::Decline {
            station: station.into(),
            id: id.into(),
            reason,
            reply,
        })
        .await
    }

    /// The queued bulletins, oldest first, with their state at each station they target.
    pub async fn bulletins(&self) -> Result<Vec<BulletinSnapshot>, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Bulletins { reply })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)
    }

    /// Withdraws a bulletin everywhere; where it airs, what it interrupted resumes.
    pub async fn cancel_bulletin(&self, id: &str) -> Result<(), CommandError> {
        self.call(|reply| Command::CancelBulletin {
            id: id.into(),
            reply,
        })
        .await
    }

    /// What every station airs now, and the emergencies running.
    pub async fn status(&self) -> Result<OnAirStatus, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Status { reply })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)
    }

    /// What the running emergencies and the bulletins still to air play.
    pub async fn sources_in_use(&self) -> Result<Vec<SourceInUse>, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Sources { reply })
            .await
            .map_err(|_| CommandError::Stopped)?;
        rx.await.map_err(|_| CommandError::Stopped)
    }

    /// Replaces the schedule while running.
    pub async fn replace_schedule(&self, scheduler: Scheduler) -> Result<(), CommandError> {
        self.call(|reply| Command::Schedule {
            scheduler: Box::new(scheduler),
            reply,
        })
        .await
    }
}

/// What a playback is: the same item from the same point is shared; a stream is shared by every
/// item that airs it, whatever its position (streams only have a live point).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum PlaybackKey {
    File { item: ItemRef, offset_ms: i64 },
    Stream(StreamKey),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum StreamKey {
    Relay(String),
    Upstream(String),
    Live,
}

/// Keeps a stream's ingest running while its playback does (dropping it stops the ingest).
#[derive(Debug)]
#[allow(dead_code)] // Held, never read.
enum StreamHandle {
    Relay(RelayHandle),
    Upstream(UpstreamHandle),
}

#[derive(Debug)]
struct Running {
    key: PlaybackKey,
    item: ItemRef,
    programme_id: u64,
    /// Frames into the programme where this playback started (a resumed recording).
    start_frame: u64,
    /// Keeps a relay alive while its playback runs.
    _stream: Option<StreamHandle>,
}

struct Opened {
    key: PlaybackKey,
    result: Result<(Playback, Option<StreamHandle>), String>,
}

struct Controller {
    progress: Progress,
    router: Router,
    ladder: Ladder,
    bitrate: u32,
    events: broadcast::Sender<OnAirEvent>,
    /// Playbacks in the router, by id and by key.
    running: BTreeMap<PlaybackId, Running>,
    by_key: BTreeMap<PlaybackKey, PlaybackId>,
    /// Playbacks being opened, with the stations waiting for them.
    pending: BTreeMap<PlaybackKey, (ItemRef, BTreeSet<String>)>,
    /// What each station is meant to air (per the ladder), even while its playback opens.
    airing: BTreeMap<String, ItemRef>,
    programme_ids: BTreeMap<ItemRef, u64>,
    next_programme: u64,
    names: BTreeMap<ItemRef, String>,
    /// Levels of submitted bulletins (entries carry theirs in the schedule).
    bulletin_levels: BTreeMap<String, Level>,
    emergency_repeats: BTreeMap<String, u32>,
    live: Option<mpsc::Receiver<Box<PcmFrame>>>,
    /// [`OnAirConfig::live_release`]: `live` stays here, and each frame is handed to the live
    /// playback through `live_feed` and routed at once.
    live_release: Option<Arc<ReleaseTimes>>,
    /// [`OnAirConfig::console_only_live`].
    console_only_live: bool,
    live_feed: Option<mpsc::Sender<Box<PcmFrame>>>,
    /// The stamp of the last clocked live frame, to keep the next on its 20 ms grid.
    live_last_us: Option<u64>,
    relay: radio_config::RelaySettings,
    upstreams: BTreeMap<String, Upstream>,
    /// When the ladder next has something to do (a slot boundary, a bulletin's end), as of
    /// the last [`Controller::advance`]; the clock checks it every tick.
    wakeup: Option<Timestamp>,
    /// An item was skipped while advancing: advance again at the next tick.
    advance_again: bool,
    opened_tx: mpsc::Sender<Opened>,
    opened_rx: Option<mpsc::Receiver<Opened>>,
    relay_stop: watch::Receiver<bool>,
    _relay_stop_tx: watch::Sender<bool>,
    /// Where each schedule put on air is published.
    schedule: Option<watch::Sender<Arc<Scheduler>>>,
}

impl Controller {
    fn new(
        router: Router,
        ladder: Ladder,
        config: OnAirConfig,
        events: broadcast::Sender<OnAirEvent>,
    ) -> Self {
        let (opened_tx, opened_rx) = mpsc::channel(64);
        let (relay_stop_tx, relay_stop) = watch::channel(false);
        Self {
            progress: Progress::new(),
            router,
            ladder,
            bitrate: config.bitrate,
            events,
            running: BTreeMap::new(),
            by_key: BTreeMap::new(),
            pending: BTreeMap::new(),
            airing: BTreeMap::new(),
            programme_ids: BTreeMap::new(),
            next_programme: 1,
            names: BTreeMap::new(),
            bulletin_levels: BTreeMap::new(),
            emergency_repeats: BTreeMap::new(),
            live: config.live,
            live_release: config.live_release,
            console_only_live: config.console_only_live,
            live_feed: None,
            live_last_us: None,
            relay: config.relay,
            upstreams: config
                .upstreams
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect(),
            wakeup: None,
            advance_again: false,
            opened_tx,
            opened_rx: Some(opened_rx),
            relay_stop,
            _relay_stop_tx: relay_stop_tx,
            schedule: None,
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut clock = tokio::time::interval(FRAME_PERIOD);
        // A stalled runtime catches up frame by frame (agents buffer) rather than skipping audio.
        clock.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let Some(mut opened) = self.opened_rx.take() else {
            return;
        };
        self.advance();
        #[cfg(debug_assertions)]
        let (panic_at, mut ticks) = (injected_panic_tick(), 0u64);
        loop {
            tokio::select! {
                tick = clock.tick() => {
                    self.progress.advance();
                    #[cfg(debug_assertions)]
                    {
                        ticks += 1;
                        if panic_at == Some(ticks) {
                            tracing::warn!("RADIO_TEST_PANIC=on_air: panicking at tick {ticks}");
                            panic!("injected panic (RADIO_TEST_PANIC=on_air) at tick {ticks}");
                        }
                    }
                    // Studio audio before live first goes on air is not heard by anyone: drop
                    // it, so the studio is never held back (a pipe would block the mixer) and
                    // the first broadcast starts with what is said now, not a backlog.
                    if let (Some(live), None) = (&mut self.live, &self.live_release) {
                        while live.try_recv().is_ok() {}
                    }
                    // Stamped with the tick's scheduled instant, not the time the task woke: every
                    // station's frame of this tick carries the same media time, on a steady 20 ms
                    // grid even when a stalled runtime catches up in a burst.
                    let at = crate::broadcast::media_clock::media_clock().micros(tick.into_std());
                    self.live_silence(at);
                    let events = self.router.tick(at);
                    for event in events {
                        self.playback_ended(event);
                    }
                    if self.wakeup.is_some_and(|t| t <= Timestamp::now()) {
                        self.advance();
                    }
                }
                command = commands.recv() => match command {
                    None => return,
                    Some(command) => {
                        self.command(command);
                        self.advance();
                    }
                },
                Some(done) = opened.recv() => self.opened(done),
                frame = recv_live(&mut self.live), if self.live_release.is_some() && self.live.is_some() => {
                    self.live_frame(frame);
                }
            }
        }
    }

    /// While a clocked live input releases nothing (the studio stopped sending: its input
    /// stalls after 100 ms of concealment), the live programme carries silence on the tick, as
    /// the tick-driven live playback does: the stations' streams stay continuous, and agents do
    /// not count the frames after a pause as late.
    fn live_silence(&mut self, at: u64) {
        if self.live_release.is_none() || self.live_feed.is_none() {
            return;
        }
        let Some(id) = self
            .by_key
            .get(&PlaybackKey::Stream(StreamKey::Live))
            .copied()
        else {
            return;
        };
        if self
            .live_last_us
            .is_some_and(|last| at <= last.saturating_add(LIVE_SILENCE_AFTER_US))
        {
            return;
        }
        self.live_last_us = Some(at);
        for event in self.router.tick_one(id, at) {
            self.playback_ended(event);
        }
    }

    /// A frame from a clocked live input ([`OnAirConfig::live_release`]): encoded and sent to
    /// the stations airing live now, stamped with the instant it was due on the input's release
    /// grid (not when this task got to it: after a stall, the frames keep their grid), or
    /// dropped when live is not on air. `None`: the input has closed, and so does the live
    /// playback.
    fn live_frame(&mut self, frame: Option<Box<PcmFrame>>) {
        let id = self
            .by_key
            .get(&PlaybackKey::Stream(StreamKey::Live))
            .copied();
        let released = self.live_release.as_ref().and_then(|r| r.pop());
        let clock = crate::broadcast::media_clock::media_clock();
        let mut at = clock.micros(released.unwrap_or_else(std::time::Instant::now));
        // Exactly one slot after the last frame when it is one slot after it to the rounding of
        // the µs, so that the grid stays exact.
        if let Some(next) = self.live_last_us.map(|l| l.saturating_add(20_000)) {
            if at.abs_diff(next) <= 100 {
                at = next;
            }
        }
        match frame {
            Some(frame) => {
                let (Some(id), Some(feed)) = (id, &self.live_feed) else {
                    // Not on air: nobody hears it.
                    return;
                };
                if feed.try_send(frame).is_err() {
                    return;
                }
                self.live_last_us = Some(at);
                for event in self.router.tick_one(id, at) {
                    self.playback_ended(event);
                }
            }
            None => {
                self.live = None;
                self.live_feed = None;
                if let Some(id) = id {
                    for event in self.router.tick_one(id, at) {
                        self.playback_ended(event);
                    }
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        let now = Timestamp::now();
        let (result, reply) = match command {
            Command::Emergency {
                id,
                name,
                source,
                targets,
                repeat,
                reply,
            } => {
                let result = self.ladder.start_emergency(now, &id, source, &targets);
                if result.is_ok() {
                    self.names
                        .insert(ItemRef::Emergency { id: id.clone() }, name);
                    self.emergency_repeats.insert(id, repeat);
                }
                (result, reply)
            }
            Command::StopEmergency { id, reply } => {
                self.emergency_repeats.remove(&id);
                (self.ladder.stop_emergency(now, &id), reply)
            }
            Command::Live {
                id,
                name,
                targets,
                reply,
            } => {
                let result = self.ladder.start_live(now, &id, &targets);
                let item = ItemRef::Live { id };
                match name {
                    Some(name) if result.is_ok() => {
                        self.names.insert(item, name);
                    }
                    _ if result.is_ok() => {
                        self.names.remove(&item);
                    }
                    _ => {}
                }
                (result, reply)
            }
            Command::StopLive { id, reply } => (self.ladder.stop_live(now, &id), reply),
            Command::Bulletin { bulletin, reply } => {
                let item = ItemRef::Bulletin {
                    id: bulletin.id.clone(),
                };
                let name = bulletin.name.clone();
                let level = bulletin.level;
                let result = self.ladder.submit_bulletin(now, bulletin);
                if result.is_ok() {
                    if let ItemRef::Bulletin { id } = &item {
                        self.bulletin_levels.insert(id.clone(), level);
                    }
                    self.names.insert(item, name);
                }
                (result, reply)
            }
            Command::Accept {
                station,
                id,
                from,
                reply,
            } => (
                self.ladder.accept_bulletin_from(now, &station, &id, from),
                reply,
            ),
            Command::Decline {
                station,
                id,
                reason,
                reply,
            } => (
                self.ladder.decline_bulletin(now, &station, &id, reason),
                reply,
            ),
            Command::Bulletins { reply } => {
                let _ = reply.send(self.ladder.bulletins());
                return;
            }
            Command::CancelBulletin { id, reply } => (self.ladder.cancel_bulletin(now, &id), reply),
            Command::Schedule { scheduler, reply } => {
                if let Some(published) = &self.schedule {
                    published.send_replace(Arc::new((*scheduler).clone()));
                }
                self.ladder.replace_scheduler(*scheduler);
                (Ok(()), reply)
            }
            Command::Status { reply } => {
                let _ = reply.send(self.status());
                return;
            }
            Command::Sources { reply } => {
                let _ = reply.send(self.sources_in_use());
                return;
            }
        };
        let _ = reply.send(result);
    }

    /// Asks the ladder what changed and carries it out.
    fn advance(&mut self) {
        let now = Timestamp::now();
        let changes = self.ladder.advance(now);
        for change in changes {
            match change {
                Change::Stop {
                    station,
                    item,
                    reason,
                } => {
                    self.router.route(&station, None);
                    self.airing.remove(&station);
                    for (_, waiting) in self.pending.values_mut() {
                        waiting.remove(&station);
                    }
                    self.emit(OnAirEvent::Stopped {
                        station,
                        item,
                        reason,
                    });
                }
                Change::Start {
                    station,
                    item,
                    offset,
                } => self.start(station, item, offset),
            }
        }
        self.drop_unheard();
        self.wakeup = if std::mem::take(&mut self.advance_again) {
            Some(now)
        } else {
            self.ladder.next_wakeup(now)
        };
    }

    fn start(&mut self, station: String, item: ItemRef, offset: jiff::SignedDuration) {
        let Some(source) = self.ladder.on_air(&station).map(|o| o.source.clone()) else {
            return;
        };
        let key = match &source {
            SourceSpec::File { .. } | SourceSpec::Playlist { .. } => PlaybackKey::File {
                item: item.clone(),
                offset_ms: offset.as_millis().clamp(0, i64::MAX as i128) as i64,
            },
            SourceSpec::Relay { url } => PlaybackKey::Stream(StreamKey::Relay(url.clone())),
            SourceSpec::Live => PlaybackKey::Stream(StreamKey::Live),
            SourceSpec::Upstream { name } => {
                if !self.upstreams.contains_key(name) {
                    // Schedules are checked against the configured upstreams when loaded; a
                    // bulletin or a config change can still get here.
                    tracing::error!(
                        %station,
                        "no upstream server is called `{name}` in the config; {} skipped",
                        item_label(&item)
                    );
                    let _ = self.ladder.item_finished(Timestamp::now(), &station, &item);
                    // What the skipped item would have interrupted airs from the next tick.
                    self.advance_again = true;
                    return;
                }
                PlaybackKey::Stream(StreamKey::Upstream(name.clone()))
            }
        };
        self.airing.insert(station.clone(), item.clone());
        if let Some(id) = self.by_key.get(&key).copied() {
            self.router.route(&station, Some(id));
            let programme_id = self.running.get(&id).map(|r| r.programme_id).unwrap_or(0);
            self.emit(OnAirEvent::Started {
                station,
                item,
                programme_id,
            });
            return;
        }
        // Silent until the playback is open (milliseconds for a file).
        self.router.route(&station, None);
        if let Some((_, waiting)) = self.pending.get_mut(&key) {
            waiting.insert(station);
            return;
        }
        self.pending
            .insert(key.clone(), (item.clone(), BTreeSet::from([station])));
        self.open(key, item, source, offset);
    }

    fn status(&self) -> OnAirStatus {
        let emergencies = self
            .ladder
            .emergencies()
            .into_iter()
            .map(|e| EmergencyStatus {
                name: self.name_of(&ItemRef::Emergency { id: e.id.clone() }),
                id: e.id,
                started: e.started.to_string(),
                targets: e.targets,
                stations: e.stations,
            })
            .collect();
        OnAirStatus {
            stations: self.station_status(),
            emergencies,
        }
    }

    fn sources_in_use(&self) -> Vec<SourceInUse> {
        let emergencies = self.ladder.emergencies().into_iter().map(|e| SourceInUse {
            kind: "emergency",
            name: self.name_of(&ItemRef::Emergency { id: e.id.clone() }),
            id: e.id,
            source: e.source,
        });
        let bulletins = self
            .ladder
            .pending_bulletins()
            .into_iter()
            .map(|b| SourceInUse {
                kind: "bulletin",
                id: b.id.clone(),
                name: b.name.clone(),
                source: b.source.clone(),
            });
        emergencies.chain(bulletins).collect()
    }

    fn station_status(&self) -> Vec<StationStatus> {
        let stations: Vec<String> = self.ladder_stations();
        stations
            .into_iter()
            .map(|station| match self.ladder.on_air(&station) {
                Some(on_air) => StationStatus {
                    item: Some(item_label(&on_air.item)),
                    name: Some(self.name_of(&on_air.item)),
                    level: Some(
                        match on_air.tier {
                            crate::schedule::ladder::Tier::Normal => "thường",
                            crate::schedule::ladder::Tier::Priority => "ưu tiên",
                            crate::schedule::ladder::Tier::Live => "trực tiếp",
                            crate::schedule::ladder::Tier::Emergency => "khẩn cấp",
                        }
                        .to_string(),
                    ),
                    since: Some(on_air.since.to_string()),
                    station,
                },
                None => StationStatus {
                    station,
                    item: None,
                    name: None,
                    level: None,
                    since: None,
                },
            })
            .collect()
    }

    fn ladder_stations(&self) -> Vec<String> {
        self.router.stations().map(str::to_string).collect()
    }

    fn programme_id(&mut self, item: &ItemRef) -> u64 {
        if let Some(id) = self.programme_ids.get(item) {
            return *id;
        }
        let id = self.next_programme;
        self.next_programme += 1;
        self.programme_ids.insert(item.clone(), id);
        id
    }

    fn name_of(&self, item: &ItemRef) -> String {
        if let Some(name) = self.names.get(item) {
            return name.clone();
        }
        match item {
            ItemRef::Entry { entry_id, .. } => self
                .ladder
                .scheduler()
                .entry(entry_id)
                .map(|e| e.name.clone())
                .unwrap_or_else(|| entry_id.clone()),
            ItemRef::Bulletin { id } => id.clone(),
            ItemRef::Live { id } => format!("Trực tiếp: {id}"),
            ItemRef::Emergency { id } => format!("Khẩn cấp: {id}"),
        }
    }

    /// The level announced with `item`, for the agents' proof of play.
    fn level_of(&self, item: &ItemRef) -> ProgrammeLevel {
        let level = match item {
            ItemRef::Entry { entry_id, .. } => self
                .ladder
                .scheduler()
                .entry(entry_id)
                .map_or(Level::Normal, |e| e.level),
            ItemRef::Bulletin { id } => self
                .bulletin_levels
                .get(id)
                .copied()
                .unwrap_or(Level::Normal),
            ItemRef::Live { .. } => return ProgrammeLevel::Live,
            ItemRef::Emergency { .. } => Level::Emergency,
        };
        match level {
            Level::Normal => ProgrammeLevel::Normal,
            Level::Priority => ProgrammeLevel::Priority,
            Level::Emergency => ProgrammeLevel::Emergency,
        }
    }

    fn open(
        &mut self,
        key: PlaybackKey,
        item: ItemRef,
        source: SourceSpec,
        offset: jiff::SignedDuration,
    ) {
        let programme_id = self.programme_id(&item);
        let name = self.name_of(&item);
        let bitrate = self.bitrate;
        let done = self.opened_tx.clone();
        match source {
            SourceSpec::File { path } => {
                let offset = offset.unsigned_abs();
                tokio::task::spawn_blocking(move || {
                    let result = Playback::file(programme_id, &name, &path, bitrate, offset, None)
                        .map(|p| (p, None))
                        .map_err(|e| e.to_string());
                    let _ = done.blocking_send(Opened { key, result });
                });
            }
            SourceSpec::Playlist { paths } => {
                let offset = offset.unsigned_abs();
                tokio::task::spawn_blocking(move || {
                    let result = open_playlist(programme_id, &name, &paths, bitrate, offset)
                        .map(|p| (p, None));
                    let _ = done.blocking_send(Opened { key, result });
                });
            }
            SourceSpec::Relay { url } => {
                let (tx, rx) = mpsc::channel(RELAY_AHEAD);
                let result =
                    spawn_relay(relay_config(&self.relay, url), tx, self.relay_stop.clone())
                        .map_err(|e| e.to_string())
                        .and_then(|handle| {
                            Playback::pcm(programme_id, &name, rx, bitrate)
                                .map(|p| (p, Some(StreamHandle::Relay(handle))))
                                .map_err(|e| e.to_string())
                        });
                self.opened(Opened { key, result });
            }
            SourceSpec::Upstream { name: upstream } => {
                let (tx, rx) = mpsc::channel(RELAY_AHEAD);
                let result = match self.upstreams.get(&upstream) {
                    Some(upstream) => upstream.spawn(tx).map_err(|e| e.to_string()),
                    None => Err(format!("no upstream server is called `{upstream}`")),
                }
                .and_then(|handle| {
                    Playback::pcm(programme_id, &name, rx, bitrate)
                        .map(|p| (p, Some(StreamHandle::Upstream(handle))))
                        .map_err(|e| e.to_string())
                });
                self.opened(Opened { key, result });
            }
            SourceSpec::Live
                if self.console_only_live
                    && item
                        != (ItemRef::Live {
                            id: CONSOLE_LIVE_ID.to_owned(),
                        }) =>
            {
                let result = Err("this server has no live input configured".to_string());
                self.opened(Opened { key, result });
            }
            SourceSpec::Live if self.live_release.is_some() => {
                let result = match &self.live {
                    Some(_) => {
                        // Each frame is handed over and routed at once (`live_frame`).
                        let (feed, rx) = mpsc::channel(LIVE_FEED);
                        self.live_feed = Some(feed);
                        // Silence fills in only if the input releases nothing from now on.
                        self.live_last_us = Some(
                            crate::broadcast::media_clock::media_clock()
                                .micros(std::time::Instant::now()),
                        );
                        Playback::pcm(programme_id, &name, rx, bitrate)
                            .map(|p| (p, None))
                            .map_err(|e| e.to_string())
                    }
                    None => Err("this server has no live input configured".to_string()),
                };
                self.opened(Opened { key, result });
            }
            SourceSpec::Live => {
                let result = match self.live.take() {
                    Some(rx) => Playback::pcm(programme_id, &name, rx, bitrate)
                        .map(|p| (p, None))
                        .map_err(|e| e.to_string()),
                    None => Err("this server has no live input configured".to_string()),
                };
                self.opened(Opened { key, result });
            }
        }
    }

    fn opened(&mut self, opened: Opened) {
        let Some((item, stations)) = self.pending.remove(&opened.key) else {
            return;
        };
        match opened.result {
            Ok((mut playback, relay)) => {
                playback.level = self.level_of(&item);
                let programme_id = playback.programme_id;
                let id = if self.live_release.is_some()
                    && opened.key == PlaybackKey::Stream(StreamKey::Live)
                {
                    self.router.add_driven(playback)
                } else {
                    self.router.add(playback)
                };
                self.by_key.insert(opened.key.clone(), id);
                let start_frame = match &opened.key {
                    PlaybackKey::File { offset_ms, .. } => (*offset_ms / 20).max(0) as u64,
                    PlaybackKey::Stream(_) => 0,
                };
                self.running.insert(
                    id,
                    Running {
                        key: opened.key,
                        item: item.clone(),
                        programme_id,
                        start_frame,
                        _stream: relay,
                    },
                );
                for station in stations {
                    if self.airing.get(&station) == Some(&item) {
                        self.router.route(&station, Some(id));
                        self.emit(OnAirEvent::Started {
                            station,
                            item: item.clone(),
                            programme_id,
                        });
                    }
                }
                self.drop_unheard();
            }
            Err(reason) => {
                tracing::error!("{reason}");
                let programme_id = self.programme_id(&item);
                self.emit(OnAirEvent::PlaybackEnded {
                    item: item.clone(),
                    programme_id,
                    frames: 0,
                    error: Some(reason),
                });
                self.finished(&item, &stations);
                self.advance();
            }
        }
    }

    fn playback_ended(&mut self, event: TickEvent) {
        let TickEvent::Ended {
            id,
            programme_id,
            frames,
            error,
            stations,
        } = event;
        let Some(running) = self.running.remove(&id) else {
            return;
        };
        self.by_key.remove(&running.key);
        let error = error.map(|e| e.to_string());
        if let Some(e) = &error {
            tracing::error!("{e}");
        }
        self.emit(OnAirEvent::PlaybackEnded {
            item: running.item.clone(),
            programme_id,
            frames: running.start_frame + frames,
            error: error.clone(),
        });
        let stations: BTreeSet<String> = stations
            .into_iter()
            .filter(|s| self.airing.get(s) == Some(&running.item))
            .collect();
        if let ItemRef::Emergency { id: emergency } = &running.item {
            // An emergency recording plays its repeats, then the emergency is over.
            let left = self.emergency_repeats.get(emergency).copied().unwrap_or(1);
            if left > 1 && error.is_none() {
                self.emergency_repeats.insert(emergency.clone(), left - 1);
                if let Some(source) = stations
                    .iter()
                    .next()
                    .and_then(|s| self.ladder.on_air(s))
                    .map(|o| o.source.clone())
                {
                    let key = running.key.clone();
                    self.pending
                        .insert(key.clone(), (running.item.clone(), stations));
                    self.open(key, running.item, source, jiff::SignedDuration::ZERO);
                    return;
                }
            }
            self.emergency_repeats.remove(emergency);
            let _ = self.ladder.stop_emergency(Timestamp::now(), emergency);
            self.advance();
            return;
        }
        self.finished(&running.item, &stations);
        self.advance();
    }

    /// Tells the ladder that `item` ran out at `stations`.
    fn finished(&mut self, item: &ItemRef, stations: &BTreeSet<String>) {
        let now = Timestamp::now();
        for station in stations {
            self.airing.remove(station);
            match item {
                ItemRef::Emergency { id } => {
                    let _ = self.ladder.stop_emergency(now, id);
                }
                ItemRef::Live { id } => {
                    let _ = self.ladder.stop_live(now, id);
                }
                _ => {
                    if let Err(e) = self.ladder.item_finished(now, station, item) {
                        tracing::debug!("{e}");
                    }
                }
            }
        }
    }

    /// Playbacks nobody listens to any more stop (a live input's playback is kept, so the
    /// studio can come back).
    fn drop_unheard(&mut self) {
        let unheard: Vec<PlaybackId> = self
            .running
            .iter()
            .filter(|(id, r)| {
                self.router.listeners(**id) == 0 && r.key != PlaybackKey::Stream(StreamKey::Live)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in unheard {
            let frames = self.router.remove(id).map(|p| p.frames_produced());
            if let Some(running) = self.running.remove(&id) {
                self.by_key.remove(&running.key);
                self.emit(OnAirEvent::PlaybackEnded {
                    item: running.item,
                    programme_id: running.programme_id,
                    frames: running.start_frame + frames.unwrap_or(0),
                    error: None,
                });
            }
        }
    }

    fn emit(&self, event: OnAirEvent) {
        match &event {
            OnAirEvent::Started {
                station,
                item,
                programme_id,
            } => tracing::info!(%station, ?item, programme_id, "on air"),
            OnAirEvent::Stopped {
                station,
                item,
                reason,
            } => tracing::info!(%station, ?item, ?reason, "off air"),
            OnAirEvent::PlaybackEnded {
                item,
                programme_id,
                frames,
                error,
            } => tracing::info!(?item, programme_id, frames, ?error, "programme ended"),
        }
        let _ = self.events.send(event);
    }
}

/// `kind:id` for an item, as the admin API shows it.
pub fn item_label(item: &ItemRef) -> String {
    match item {
        ItemRef::Entry {
            entry_id,
            occurrence_start,
        } => format!("entry:{entry_id}@{occurrence_start}"),
        ItemRef::Bulletin { id } => format!("bulletin:{id}"),
        ItemRef::Live { id } => format!("live:{id}"),
        ItemRef::Emergency { id } => format!("emergency:{id}"),
    }
}

/// A playlist as one playback: the files one after another, starting `offset` into the whole.
fn open_playlist(
    programme_id: u64,
    name: &str,
    paths: &[PathBuf],
    bitrate: u32,
    offset: Duration,
) -> Result<Playback, String> {
    Playback::files(programme_id, name, paths, bitrate, offset).map_err(|e| e.to_string())
}

/// How a bulletin's playback ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackSummary {
    /// Its programme id.
    pub programme_id: u64,
    /// Frames produced (the last playback, if it was interrupted and resumed).
    pub frames: u64,
    /// Why it ended early, one line, if it did.
    pub error: Option<String>,
}

/// Queues `bulletin` and waits until it is done: every station that aired it has stopped it for
/// good (ended or cancelled, not merely interrupted) and its playback is closed.
pub async fn play_bulletin(
    on_air: &OnAir,
    bulletin: Bulletin,
) -> Result<PlaybackSummary, CommandError> {
    let item = ItemRef::Bulletin {
        id: bulletin.id.clone(),
    };
    let mut events = on_air.events();
    on_air.bulletin(bulletin).await?;
    let mut airing = BTreeSet::new();
    let mut stopped_for_good = false;
    let mut summary: Option<PlaybackSummary> = None;
    loop {
        match events.recv().await {
            Ok(OnAirEvent::Started {
                station,
                item: started,
                ..
            }) if started == item => {
                airing.insert(station);
                summary = None;
            }
            Ok(OnAirEvent::Stopped {
                station,
                item: stopped,
                reason,
            }) if stopped == item => {
                airing.remove(&station);
                stopped_for_good |= !matches!(reason, StopReason::Interrupted { .. });
            }
            Ok(OnAirEvent::PlaybackEnded {
                item: ended,
                programme_id,
                frames,
                error,
            }) if ended == item => {
                summary = Some(PlaybackSummary {
                    programme_id,
                    frames,
                    error,
                });
            }
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
            Err(broadcast::error::RecvError::Closed) => return Err(CommandError::Stopped),
        }
        if stopped_for_good && airing.is_empty() {
            if let Some(summary) = summary.take() {
                return Ok(summary);
            }
        }
    }
}

/// A priority bulletin of one file for every station: what `radio-server run --programme` and
/// the demo put on air.
pub fn file_bulletin(id: &str, name: &str, path: &std::path::Path) -> Bulletin {
    Bulletin {
        id: id.to_string(),
        name: name.to_string(),
        source: SourceSpec::File {
            path: path.to_path_buf(),
        },
        level: crate::schedule::Level::Priority,
        targets: Targets::All,
        duration: None,
        submitted: Timestamp::now(),
    }
}
