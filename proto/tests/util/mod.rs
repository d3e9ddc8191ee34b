//! A simulated agent/server pair on a virtual clock, after quinn-proto's
//! `src/tests/util.rs`: no sockets, no threads, no real time. Bytes move
//! only when [`Pair::drive`] shuttles them, and time moves only when
//! [`Pair::run_until`] jumps to the next deadline either side asked for.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use radio_proto::{
    Capabilities, Event, Hello, Session, SessionConfig, Welcome, FRAME_SAMPLES, PROTOCOL_VERSION,
    SAMPLE_RATE,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Agent,
    Server,
}

pub struct Pair {
    pub start: Instant,
    pub now: Instant,
    pub agent: Session,
    pub server: Session,
    /// Every event either side emitted, with the virtual time it was seen.
    pub agent_events: Vec<(Instant, Event)>,
    pub server_events: Vec<(Instant, Event)>,
    /// Deliver stream data one byte at a time, the worst case of QUIC chunking.
    pub split_bytes: bool,
    /// Simulated one-way outages: bytes from that side are lost.
    pub drop_from_agent: bool,
    pub drop_from_server: bool,
    /// Bytes each side received (after any dropping).
    pub to_agent: usize,
    pub to_server: usize,
}

pub fn hello(agent_id: &str) -> Hello {
    Hello {
        version: PROTOCOL_VERSION,
        agent_id: agent_id.into(),
        software: "relay-agent/test".into(),
        capabilities: Capabilities::OPUS | Capabilities::WAV_SINK,
    }
}

pub fn welcome(heartbeat_interval_ms: u32) -> Welcome {
    Welcome {
        version: PROTOCOL_VERSION,
        server_name: "radio-server/test".into(),
        session_id: 42,
        heartbeat_interval_ms,
        sample_rate: SAMPLE_RATE,
        frame_samples: FRAME_SAMPLES,
    }
}

impl Pair {
    pub fn new(hello: Hello) -> Self {
        Self::with_configs(hello, SessionConfig::default(), SessionConfig::default())
    }

    pub fn with_configs(
        hello: Hello,
        agent_config: SessionConfig,
        server_config: SessionConfig,
    ) -> Self {
        // Tests only look at offsets from `start`, so any origin will do.
        let start = Instant::now();
        Pair {
            start,
            now: start,
            agent: Session::agent(hello, agent_config, start),
            server: Session::server(server_config, start),
            agent_events: Vec::new(),
            server_events: Vec::new(),
            split_bytes: false,
            drop_from_agent: false,
            drop_from_server: false,
            to_agent: 0,
            to_server: 0,
        }
    }

    /// Virtual time elapsed since the pair was created.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Moves bytes both ways until neither side has anything left to send,
    /// collecting events as they appear. Returns whether anything moved.
    pub fn drive(&mut self) -> bool {
        let mut any = false;
        loop {
            let a = self.deliver(Side::Agent);
            let s = self.deliver(Side::Server);
            self.collect_events();
            if !(a || s) {
                return any;
            }
            any = true;
        }
    }

    fn deliver(&mut self, from: Side) -> bool {
        let now = self.now;
        let split = self.split_bytes;
        let (src, dst, dropped, counter) = match from {
            Side::Agent => (
                &mut self.agent,
                &mut self.server,
                self.drop_from_agent,
                &mut self.to_server,
            ),
            Side::Server => (
                &mut self.server,
                &mut self.agent,
                self.drop_from_server,
                &mut self.to_agent,
            ),
        };
        let mut moved = false;
        while let Some(bytes) = src.poll_transmit() {
            moved = true;
            if dropped {
                continue;
            }
            *counter += bytes.len();
            if split {
                for b in bytes.iter() {
                    dst.handle_input(now, std::slice::from_ref(b));
                }
            } else {
                dst.handle_input(now, &bytes);
            }
        }
        moved
    }

    fn collect_events(&mut self) {
        while let Some(e) = self.agent.poll_event() {
            self.agent_events.push((self.now, e));
        }
        while let Some(e) = self.server.poll_event() {
            self.server_events.push((self.now, e));
        }
    }

    /// Earliest deadline of either side.
    pub fn next_timeout(&self) -> Option<Instant> {
        [self.agent.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Fires the earliest deadline (advancing the clock to it) and drives.
    /// Returns false when neither side has a deadline.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_timeout() else {
            return false;
        };
        self.now = self.now.max(t);
        if self.agent.poll_timeout().is_some_and(|d| d <= self.now) {
            self.agent.handle_timeout(self.now);
        }
        if self.server.poll_timeout().is_some_and(|d| d <= self.now) {
            self.server.handle_timeout(self.now);
        }
        self.drive();
        true
    }

    /// Drives and fires deadlines up to and including `start + at`, then
    /// leaves the clock there.
    pub fn run_until(&mut self, at: Duration) {
        let end = self.start + at;
        self.drive();
        while self.next_timeout().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Runs until both sides are closed or nothing is scheduled.
    pub fn run_to_end(&mut self) {
        self.drive();
        while self.step() {}
    }

    /// Completes the handshake with the given `Welcome`, checking each step.
    pub fn handshake(&mut self, welcome: Welcome) {
        self.drive();
        let hello = match self.server_events.last() {
            Some((_, Event::Hello(h))) => h.clone(),
            other => panic!("server expected Hello, got {other:?}"),
        };
        assert_eq!(hello.version, PROTOCOL_VERSION);
        self.server.accept(self.now, welcome.clone());
        self.drive();
        match self.agent_events.last() {
            Some((_, Event::Welcomed(w))) => assert_eq!(w, &welcome),
            other => panic!("agent expected Welcomed, got {other:?}"),
        }
    }

    /// Feeds raw bytes to one side as if its peer had sent them.
    pub fn inject(&mut self, to: Side, bytes: &[u8]) {
        match to {
            Side::Agent => self.agent.handle_input(self.now, bytes),
            Side::Server => self.server.handle_input(self.now, bytes),
        }
        self.drive();
    }

    pub fn events(&self, side: Side) -> &[(Instant, Event)] {
        match side {
            Side::Agent => &self.agent_events,
            Side::Server => &self.server_events,
        }
    }

    /// The single `Closed` event of one side, with its time since start.
    /// Panics unless there is exactly one.
    pub fn closed(&self, side: Side) -> (Duration, radio_proto::ErrorCode, String, bool) {
        let closed: Vec<_> = self
            .events(side)
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Closed {
                    code,
                    reason,
                    by_peer,
                } => Some((*t - self.start, *code, reason.clone(), *by_peer)),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "{side:?} Closed events: {closed:?}");
        closed.into_iter().next().expect("one")
    }

    pub fn heartbeats(&self, side: Side) -> Vec<(Duration, radio_proto::Heartbeat)> {
        self.events(side)
            .iter()
            .filter_map(|(t, e)| match e {
                Event::Heartbeat(h) => Some((*t - self.start, h.clone())),
                _ => None,
            })
            .collect()
    }
}
