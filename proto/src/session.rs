//! Sans-IO state machine for the control stream of one connection.
//!
//! The session never reads a clock or touches a socket: the caller feeds it
//! bytes and the current [`Instant`], and drains bytes to send, events and the
//! next deadline. That keeps every timing rule testable on a virtual clock,
//! as quinn-proto does for QUIC itself.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::truncate_utf8;
use crate::{
    BoxHealth, Capabilities, ClockProbe, ClockReply, ErrorCode, ErrorMessage, FrameReader,
    Heartbeat, Hello, JournalAck, JournalBatch, MediaClock, Message, Welcome, PROTOCOL_VERSION,
};

/// Timing parameters of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionConfig {
    /// How often to send a `Heartbeat` once established. On the agent the
    /// server's `Welcome` overrides it, so both sides use the server's value.
    pub heartbeat_interval: Duration,
    /// Close with `Timeout` after this long without receiving any byte.
    /// Should be a few heartbeat intervals, so one late heartbeat is tolerated.
    pub idle_timeout: Duration,
    /// Close with `Timeout` if the handshake has not completed by then,
    /// including a server application that never decides on a `Hello`.
    pub handshake_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            heartbeat_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Server: waiting for the agent's `Hello`.
    AwaitingHello,
    /// Server: `Hello` handed to the application, waiting for
    /// [`Session::accept`] or [`Session::reject`].
    AwaitingAccept,
    /// Agent: `Hello` sent, waiting for the server's `Welcome`.
    AwaitingWelcome,
    Established,
    Closed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: an agent introduced itself; call [`Session::accept`] or
    /// [`Session::reject`] (typically after checking its certificate).
    Hello(Hello),
    /// Agent: the server accepted us; the session is established.
    Welcomed(Welcome),
    Heartbeat(Heartbeat),
    /// Server: the agent's box health (only from agents announcing
    /// [`Capabilities::BOX_HEALTH`]).
    BoxHealth(BoxHealth),
    /// Server: journal records from the agent; store them durably, then
    /// [`Session::send_journal_ack`].
    JournalBatch(JournalBatch),
    /// Agent: the server stored these records; they may be deleted.
    JournalAck(JournalAck),
    /// Agent: the server answered a [`Session::send_clock_probe`].
    ClockReply {
        reply: ClockReply,
        /// The `now` of the [`Session::handle_input`] that completed the reply: the agent's
        /// receive time (t4), taken before anything else could delay it.
        received_at: Instant,
    },
    /// The session is over. Emitted exactly once.
    Closed {
        code: ErrorCode,
        reason: String,
        /// True when the peer closed (sent `Error`), false when this side did.
        by_peer: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Agent,
    Server,
}

/// Floor for the heartbeat interval: a zero interval would make
/// [`Session::poll_timeout`] always due and spin the caller's event loop.
const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_millis(1);

/// Control-stream protocol state of one QUIC connection, for either role.
///
/// Drive it with [`Session::handle_input`] and [`Session::handle_timeout`],
/// then drain [`Session::poll_transmit`] and [`Session::poll_event`] and
/// re-arm a timer for [`Session::poll_timeout`]. Audio streams are not
/// handled here; they are plain frame streams read with [`FrameReader`].
#[derive(Debug)]
pub struct Session {
    role: Role,
    state: SessionState,
    config: SessionConfig,
    reader: FrameReader,
    transmit: VecDeque<Bytes>,
    events: VecDeque<Event>,
    /// `None` when the deadline lies beyond what `Instant` can represent.
    handshake_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    next_heartbeat: Option<Instant>,
    heartbeat_interval: Duration,
    heartbeat_sequence: u64,
    frames_received: u64,
    frames_played: u64,
    frames_lost: u64,
    on_air: bool,
    unix_ms: u64,
    /// Server: the clock that `ClockReply` times are read on.
    media_clock: MediaClock,
    /// The agent announced [`Capabilities::BOX_HEALTH`]: only then may `BoxHealth` flow.
    box_health: bool,
}

impl Session {
    /// Starts the agent side; the `Hello` is queued for transmit at once.
    pub fn agent(hello: Hello, config: SessionConfig, now: Instant) -> Self {
        let mut s = Self::new(Role::Agent, SessionState::AwaitingWelcome, config, now);
        s.box_health = hello.capabilities.contains(Capabilities::BOX_HEALTH);
        s.send(Message::Hello(hello));
        s
    }

    /// Starts the server side, waiting for the agent's `Hello`.
    pub fn server(config: SessionConfig, now: Instant) -> Self {
        Self::new(Role::Server, SessionState::AwaitingHello, config, now)
    }

    fn new(role: Role, state: SessionState, config: SessionConfig, now: Instant) -> Self {
        Session {
            role,
            state,
            config,
            reader: FrameReader::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            handshake_deadline: now.checked_add(config.handshake_timeout),
            idle_deadline: now.checked_add(config.idle_timeout),
            next_heartbeat: None,
            heartbeat_interval: config.heartbeat_interval.max(MIN_HEARTBEAT_INTERVAL),
            heartbeat_sequence: 0,
            frames_received: 0,
            frames_played: 0,
            frames_lost: 0,
            on_air: false,
            unix_ms: 0,
            media_clock: MediaClock::new(now),
            box_health: false,
        }
    }

    /// Feeds bytes read from the control stream, split anywhere.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.is_closed() || data.is_empty() {
            return;
        }
        // Any byte counts as life, even a partial frame: a slow link
        // delivering a heartbeat in pieces is not idle.
        self.idle_deadline = now.checked_add(self.config.idle_timeout);
        self.reader.push(data);
        while !self.is_closed() {
            match self.reader.next_message() {
                Ok(Some(msg)) => self.on_message(now, msg),
                Ok(None) => break,
                Err(e) => self.close(e.code(), &e.to_string()),
            }
        }
    }

    fn on_message(&mut self, now: Instant, msg: Message) {
        match (self.role, self.state, msg) {
            (_, _, Message::Error(e)) => self.closed_by_peer(e),
            (Role::Server, SessionState::AwaitingHello, Message::Hello(hello)) => {
                if hello.version != PROTOCOL_VERSION {
                    let reason = format!(
                        "server speaks protocol version {PROTOCOL_VERSION}, agent sent {}",
                        hello.version
                    );
                    self.reject(ErrorCode::UnsupportedVersion, &reason);
                } else {
                    self.state = SessionState::AwaitingAccept;
                    self.box_health = hello.capabilities.contains(Capabilities::BOX_HEALTH);
                    self.events.push_back(Event::Hello(hello));
                }
            }
            (Role::Agent, SessionState::AwaitingWelcome, Message::Welcome(welcome)) => {
                if welcome.version != PROTOCOL_VERSION {
                    let reason = format!(
                        "agent speaks protocol version {PROTOCOL_VERSION}, server sent {}",
                        welcome.version
                    );
                    self.close(ErrorCode::UnsupportedVersion, &reason);
                } else if welcome.heartbeat_interval_ms == 0 {
                    self.close(
                        ErrorCode::ProtocolViolation,
                        "welcome has a zero heartbeat interval",
                    );
                } else {
                    self.heartbeat_interval =
                        Duration::from_millis(u64::from(welcome.heartbeat_interval_ms));
                    // The server sets the pace: an agent whose own idle timeout were shorter
                    // than a few of the server's heartbeats would hang up on a healthy link.
                    self.config.idle_timeout = self
                        .config
                        .idle_timeout
                        .max(self.heartbeat_interval.saturating_mul(3));
                    self.idle_deadline = now.checked_add(self.config.idle_timeout);
                    self.establish(now);
                    self.events.push_back(Event::Welcomed(welcome));
                }
            }
            (_, SessionState::Established, Message::Heartbeat(hb)) => {
                self.events.push_back(Event::Heartbeat(hb));
            }
            (Role::Server, SessionState::Established, Message::BoxHealth(health))
                if self.box_health =>
            {
                self.events.push_back(Event::BoxHealth(health));
            }
            (Role::Server, SessionState::Established, Message::JournalBatch(batch)) => {
                self.events.push_back(Event::JournalBatch(batch));
            }
            (Role::Agent, SessionState::Established, Message::JournalAck(ack)) => {
                self.events.push_back(Event::JournalAck(ack));
            }
            (Role::Server, SessionState::Established, Message::ClockProbe(probe)) => {
                // Answered here rather than by the application: every step between the bytes
                // arriving and the reply leaving would widen the round trip the agent measures.
                let at = self.media_clock.micros(now);
                self.send(Message::ClockReply(ClockReply {
                    id: probe.id,
                    agent_send_us: probe.agent_send_us,
                    server_receive_us: at,
                    server_send_us: at,
                }));
            }
            (Role::Agent, SessionState::Established, Message::ClockReply(reply)) => {
                self.events.push_back(Event::ClockReply {
                    reply,
                    received_at: now,
                });
            }
            (_, state, msg) => {
                let reason = format!(
                    "{:?} not allowed on the control stream in state {state:?}",
                    msg.message_type()
                );
                self.close(ErrorCode::ProtocolViolation, &reason);
            }
        }
    }

    /// Sends due heartbeats and enforces the handshake and idle timeouts.
    /// Calling it early is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.state != SessionState::Established
            && self.handshake_deadline.is_some_and(|d| now >= d)
        {
            let reason = format!(
                "handshake not completed within {:?}",
                self.config.handshake_timeout
            );
            self.close(ErrorCode::Timeout, &reason);
            return;
        }
        if self.idle_deadline.is_some_and(|d| now >= d) {
            let reason = format!("nothing received for {:?}", self.config.idle_timeout);
            self.close(ErrorCode::Timeout, &reason);
            return;
        }
        if let Some(due) = self.next_heartbeat.filter(|&due| now >= due) {
            self.send_heartbeat();
            // Keep the cadence when called on time, but after a long stall
            // (suspended process) send one heartbeat, not a burst of catch-ups.
            let next = due
                .checked_add(self.heartbeat_interval)
                .filter(|&n| n > now);
            self.next_heartbeat = next.or_else(|| now.checked_add(self.heartbeat_interval));
        }
    }

    /// When [`Session::handle_timeout`] should next be called; `None` once closed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let handshake = match self.state {
            SessionState::Established => None,
            _ => self.handshake_deadline,
        };
        [handshake, self.idle_deadline, self.next_heartbeat]
            .into_iter()
            .flatten()
            .min()
    }

    /// Next bytes to write to the control stream, in order. Still yields the
    /// final `Error` after the session is closed.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Server: admits the agent whose `Hello` was just reported. Ignored in
    /// any other role or state.
    ///
    /// The server also heartbeats at `welcome.heartbeat_interval_ms`, so both
    /// sides use the advertised value; 0 there means "use my
    /// [`SessionConfig::heartbeat_interval`]" and is filled in before sending.
    pub fn accept(&mut self, now: Instant, mut welcome: Welcome) {
        if self.role != Role::Server || self.state != SessionState::AwaitingAccept {
            return;
        }
        if welcome.heartbeat_interval_ms == 0 {
            welcome.heartbeat_interval_ms =
                u32::try_from(self.heartbeat_interval.as_millis()).unwrap_or(u32::MAX);
        }
        self.heartbeat_interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms))
            .max(MIN_HEARTBEAT_INTERVAL);
        self.send(Message::Welcome(welcome));
        self.establish(now);
    }

    /// Server: refuses the agent. Same as [`Session::close`]; a separate name
    /// so the server's handshake code reads as the decision it is.
    pub fn reject(&mut self, code: ErrorCode, reason: &str) {
        self.close(code, reason);
    }

    /// Ends the session from this side: queues an `Error` for the peer and
    /// emits `Event::Closed { by_peer: false }`. No-op once closed.
    ///
    /// `reason` is cut to [`ErrorMessage::MAX_REASON`] bytes on the wire (the
    /// peer would reject a longer one); the local event keeps it whole.
    pub fn close(&mut self, code: ErrorCode, reason: &str) {
        if self.is_closed() {
            return;
        }
        self.send(Message::Error(ErrorMessage {
            code,
            reason: truncate_utf8(reason, ErrorMessage::MAX_REASON).to_owned(),
        }));
        self.enter_closed(Event::Closed {
            code,
            reason: reason.to_owned(),
            by_peer: false,
        });
    }

    /// Statistics carried by this side's following heartbeats.
    pub fn set_heartbeat_counters(
        &mut self,
        frames_received: u64,
        frames_played: u64,
        frames_lost: u64,
        on_air: bool,
    ) {
        self.frames_received = frames_received;
        self.frames_played = frames_played;
        self.frames_lost = frames_lost;
        self.on_air = on_air;
    }

    /// Wall-clock time stamped into the next heartbeats. Separate from `now`
    /// because `Instant` has no epoch, and keeping the wall clock out of the
    /// timing logic keeps that logic deterministic.
    pub fn set_unix_ms(&mut self, unix_ms: u64) {
        self.unix_ms = unix_ms;
    }

    /// Agent: uploads journal records. Ignored unless the session is established (records
    /// wait in the agent's journal for the next session).
    pub fn send_journal_batch(&mut self, batch: JournalBatch) {
        if self.role == Role::Agent && self.state == SessionState::Established {
            self.send(Message::JournalBatch(batch));
        }
    }

    /// Agent: reports the box's health. Ignored unless the session is established and the
    /// agent's `Hello` announced [`Capabilities::BOX_HEALTH`] (a server that was not told would
    /// close the session).
    pub fn send_box_health(&mut self, health: BoxHealth) {
        if self.role == Role::Agent && self.state == SessionState::Established && self.box_health {
            self.send(Message::BoxHealth(health));
        }
    }

    /// Agent: asks for the server's media clock; the answer comes as [`Event::ClockReply`].
    /// Ignored unless the session is established.
    pub fn send_clock_probe(&mut self, probe: ClockProbe) {
        if self.role == Role::Agent && self.state == SessionState::Established {
            self.send(Message::ClockProbe(probe));
        }
    }

    /// Server: the clock that clock replies are read on, the one audio frames are stamped
    /// with. Until it is set, the session's own start serves as the epoch.
    pub fn set_media_clock(&mut self, clock: MediaClock) {
        self.media_clock = clock;
    }

    /// Server: acknowledges records stored durably.
    pub fn send_journal_ack(&mut self, ack: JournalAck) {
        if self.role == Role::Server && self.state == SessionState::Established {
            self.send(Message::JournalAck(ack));
        }
    }

    pub fn state(&self) -> SessionState {
        self.state
    }

    pub fn is_closed(&self) -> bool {
        self.state == SessionState::Closed
    }

    fn establish(&mut self, now: Instant) {
        self.state = SessionState::Established;
        self.next_heartbeat = now.checked_add(self.heartbeat_interval);
    }

    fn closed_by_peer(&mut self, e: ErrorMessage) {
        self.enter_closed(Event::Closed {
            code: e.code,
            reason: e.reason,
            by_peer: true,
        });
    }

    fn enter_closed(&mut self, event: Event) {
        self.state = SessionState::Closed;
        self.next_heartbeat = None;
        self.events.push_back(event);
    }

    fn send_heartbeat(&mut self) {
        let hb = Heartbeat {
            sequence: self.heartbeat_sequence,
            unix_ms: self.unix_ms,
            frames_received: self.frames_received,
            frames_played: self.frames_played,
            frames_lost: self.frames_lost,
            on_air: self.on_air,
        };
        self.heartbeat_sequence += 1;
        self.send(Message::Heartbeat(hb));
    }

    fn send(&mut self, msg: Message) {
        self.transmit.push_back(msg.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_close_reason_is_cut_on_the_wire_only() {
        let now = Instant::now();
        let mut s = Session::server(SessionConfig::default(), now);
        let reason = "ư".repeat(200); // 400 bytes
        s.close(ErrorCode::Internal, &reason);
        let bytes = s.poll_transmit().expect("error queued");
        let mut r = FrameReader::new();
        r.push(&bytes);
        match r.next_message() {
            Ok(Some(Message::Error(e))) => {
                assert_eq!(e.code, ErrorCode::Internal);
                assert_eq!(e.reason, "ư".repeat(128));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            s.poll_event(),
            Some(Event::Closed {
                code: ErrorCode::Internal,
                reason,
                by_peer: false
            })
        );
    }

    #[test]
    fn huge_timeouts_do_not_overflow() {
        let now = Instant::now();
        let config = SessionConfig {
            heartbeat_interval: Duration::MAX,
            idle_timeout: Duration::MAX,
            handshake_timeout: Duration::MAX,
        };
        let mut s = Session::server(config, now);
        assert_eq!(s.poll_timeout(), None);
        s.handle_timeout(now);
        assert!(!s.is_closed());
    }
}
