//! A lightweight simulated agent for the load harness: a real QUIC client with the station's
//! own certificate (mutual TLS), speaking the real protocol (Hello, heartbeats, clock probes,
//! the audio stream), that decodes no audio. It only stamps each audio frame's arrival against
//! the server's media clock, estimated the way a real agent estimates it, so that thousands of
//! them fit in one process beside the server.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use radio_proto::{
    Capabilities, ErrorCode, Event, FrameReader, Hello, Message, Session, SessionConfig,
    PROTOCOL_VERSION,
};
use relay_agent::clock_sync::{ClockMap, ClockSync};
use tokio::sync::watch;

use crate::latency_histogram::LatencyHistogram;

/// What all simulated agents saw, shared.
#[derive(Debug, Default)]
pub struct LoadStats {
    /// Agents the server welcomed (a session is up).
    pub welcomed: AtomicU64,
    /// Agents whose connection or session failed, ever.
    pub failed: AtomicU64,
    /// Agents whose session is up right now.
    pub up: AtomicU64,
    /// Whether frames are counted now (the measurement window).
    pub measuring: AtomicBool,
    /// Audio frames received in the window.
    pub received: AtomicU64,
    /// Audio frames the server numbered in the window but the agent never got (sequence gaps:
    /// dropped from a slow agent's queue, or lost with its connection).
    pub missing: AtomicU64,
    /// Audio frames received in the window before the agent knew the server's clock.
    pub unclocked: AtomicU64,
    /// Latency from the server's stamp (its router tick) to the frame's arrival, µs.
    pub latency: LatencyHistogram,
}

/// One simulated station.
#[derive(Debug, Clone)]
pub struct SimulatedAgent {
    /// Its commune id (the common name of its certificate).
    pub commune: String,
    /// Its TLS client configuration, holding its own certificate.
    pub config: quinn::ClientConfig,
}

impl SimulatedAgent {
    /// Connects to `server`, runs the session and counts audio until `stop` turns true or the
    /// session ends. Returns why it ended.
    pub async fn run(
        self,
        endpoint: quinn::Endpoint,
        server: std::net::SocketAddr,
        server_name: String,
        stats: Arc<LoadStats>,
        mut stop: watch::Receiver<bool>,
        handshake: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), String> {
        // Held until the session is up: the harness ramps agents up a few handshakes at a
        // time, as a district's stations come up after a power cut rather than all at once.
        let mut handshake = handshake;
        let conn = endpoint
            .connect_with(self.config, server, &server_name)
            .map_err(|e| format!("connect: {e}"))?
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            agent_id: self.commune.clone(),
            software: "radio-bench simulated agent".into(),
            capabilities: Capabilities::OPUS,
        };
        let mut session = Session::agent(hello, SessionConfig::default(), Instant::now());
        let mut clock = ClockSync::new(Instant::now());
        let mut map: Option<ClockMap> = None;
        let mut audio: Option<quinn::RecvStream> = None;
        let mut reader = FrameReader::new();
        let mut last_sequence: Option<u64> = None;
        let mut welcomed = false;
        let mut buf = vec![0u8; 2048];
        let result = loop {
            let mut write_failed = None;
            while let Some(bytes) = session.poll_transmit() {
                if let Err(e) = send.write_all(&bytes).await {
                    write_failed = Some(e);
                    break;
                }
            }
            if let Some(e) = write_failed {
                break Err(format!("control stream: {e}"));
            }
            let deadline = session.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                read = recv.read(&mut buf) => match read {
                    Ok(Some(n)) => session.handle_input(Instant::now(), &buf[..n]),
                    Ok(None) => break Err("server closed the control stream".to_string()),
                    Err(e) => break Err(format!("control stream: {e}")),
                },
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    session.handle_timeout(Instant::now());
                }
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(clock.poll_timeout())), if welcomed => {
                    if let Some(probe) = clock.poll_probe(Instant::now()) {
                        session.send_clock_probe(probe);
                    }
                }
                uni = conn.accept_uni(), if welcomed && audio.is_none() => match uni {
                    Ok(stream) => audio = Some(stream),
                    Err(e) => break Err(format!("audio stream: {e}")),
                },
                chunk = async { match audio.as_mut() { Some(a) => a.read_chunk(64 * 1024, true).await, None => std::future::pending().await } } => {
                    let arrived = Instant::now();
                    match chunk {
                        Ok(Some(chunk)) => reader.push(&chunk.bytes),
                        Ok(None) => break Err("server ended the audio stream".to_string()),
                        Err(e) => break Err(format!("audio stream: {e}")),
                    }
                    if let Err(e) = count_frames(&mut reader, arrived, map.as_ref(), &mut last_sequence, &stats) {
                        break Err(e);
                    }
                }
                _ = stop.changed() => {
                    session.close(ErrorCode::Shutdown, "bench over");
                    while let Some(bytes) = session.poll_transmit() {
                        let _ = send.write_all(&bytes).await;
                    }
                    conn.close(quinn::VarInt::from_u32(ErrorCode::Shutdown.as_u16().into()), b"bench over");
                    break Ok(());
                }
            }
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Welcomed(welcome) => {
                        welcomed = true;
                        drop(handshake.take());
                        clock.on_session(welcome.session_id, Instant::now());
                        stats.welcomed.fetch_add(1, Ordering::Relaxed);
                        stats.up.fetch_add(1, Ordering::Relaxed);
                    }
                    Event::ClockReply { reply, received_at }
                        if clock.on_reply(reply, received_at) =>
                    {
                        map = clock.estimate();
                    }
                    Event::Closed { code, reason, .. } => {
                        if welcomed {
                            stats.up.fetch_sub(1, Ordering::Relaxed);
                        }
                        stats.failed.fetch_add(1, Ordering::Relaxed);
                        return Err(format!("session closed: {code:?}: {reason}"));
                    }
                    _ => {}
                }
            }
        };
        if welcomed {
            stats.up.fetch_sub(1, Ordering::Relaxed);
        }
        if result.is_err() {
            stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// Takes every complete message out of the audio stream and counts its frames.
fn count_frames(
    reader: &mut FrameReader,
    arrived: Instant,
    map: Option<&ClockMap>,
    last_sequence: &mut Option<u64>,
    stats: &LoadStats,
) -> Result<(), String> {
    let measuring = stats.measuring.load(Ordering::Relaxed);
    loop {
        match reader.next_message() {
            Ok(None) => return Ok(()),
            Ok(Some(Message::AudioFrame(frame))) => {
                let gap = last_sequence
                    .map(|last| frame.sequence.saturating_sub(last + 1))
                    .unwrap_or(0);
                *last_sequence = Some(frame.sequence);
                if !measuring {
                    continue;
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                stats.missing.fetch_add(gap, Ordering::Relaxed);
                match map {
                    Some(map) => {
                        let latency_us = map.server_us(arrived) - frame.server_time_us as f64;
                        stats.latency.record(latency_us.round() as i64);
                    }
                    None => {
                        stats.unclocked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(format!("malformed audio stream: {e}")),
        }
    }
}

/// How long a simulated agent waits before trying again after a failed connection.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Runs `agent` until `stop`, reconnecting after [`RETRY_AFTER`] whenever its connection or
/// session fails, as a real agent would (without its backoff: the harness wants them all up).
pub async fn run_until_stopped(
    agent: SimulatedAgent,
    endpoint: quinn::Endpoint,
    server: std::net::SocketAddr,
    server_name: String,
    stats: Arc<LoadStats>,
    stop: watch::Receiver<bool>,
    handshakes: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let Ok(permit) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let ended = agent
            .clone()
            .run(
                endpoint.clone(),
                server,
                server_name.clone(),
                stats.clone(),
                stop.clone(),
                Some(permit),
            )
            .await;
        if *stop.borrow() {
            return;
        }
        if let Err(e) = ended {
            report_failure(&agent.commune, &e);
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}

/// The first failures are printed, so a run that cannot connect says why; the rest are only
/// counted.
fn report_failure(commune: &str, why: &str) {
    static PRINTED: AtomicU64 = AtomicU64::new(0);
    if PRINTED.fetch_add(1, Ordering::Relaxed) < 10 {
        eprintln!("simulated agent {commune}: {why}");
    }
}
