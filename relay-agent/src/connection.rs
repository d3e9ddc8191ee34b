//! One agent's link to the server: connect with mutual TLS, run the control session, receive
//! audio, and reconnect for ever when the link drops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
use radio_proto::{
    Capabilities, ErrorCode, Event, FrameReader, Hello, Message, Session, SessionConfig,
    PROTOCOL_VERSION,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn, Instrument};

use crate::bundle::Bundle;
use crate::clock_sync::ClockSync;
use crate::journal::{unix_ms, Journal, JournalSender};
use crate::playout::Playout;
use crate::prefetch_cache::PrefetchCache;
use crate::reconnect::{Ending, NextAttempt, Reconnect, PROBE_WINDOW};

/// Why one connection attempt or session ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The server address could not be resolved.
    #[error("cannot resolve server address {0}")]
    Resolve(String),
    /// QUIC/TLS connection failed.
    #[error("connect: {0}")]
    Connect(String),
    /// Nothing came back from the server: the link or the server is down.
    #[error("no answer from the server within {} ms", .0.as_millis())]
    NoAnswer(Duration),
    /// The connection broke.
    #[error("connection lost: {0}")]
    Lost(String),
    /// The server refused or closed the session.
    #[error("server closed the session: {code:?}: {reason}")]
    Refused {
        /// Wire error code.
        code: ErrorCode,
        /// The server's reason.
        reason: String,
    },
    /// The session ended on our side (timeout, protocol error).
    #[error("session closed: {code:?}: {reason}")]
    Closed {
        /// Wire error code.
        code: ErrorCode,
        /// Why.
        reason: String,
    },
}

/// Live link state, for status reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkState {
    /// A session is established.
    pub connected: bool,
    /// Sessions established so far.
    pub sessions: u64,
}

/// Everything the connection loop needs.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub endpoint: quinn::Endpoint,
    pub client_config: quinn::ClientConfig,
    pub bundle: Bundle,
    pub server: String,
    pub playout: Arc<Mutex<Playout>>,
    pub state: Arc<Mutex<LinkState>>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// The uptime journal: link changes are recorded, pending records uploaded.
    pub journal: Option<LinkJournal>,
    /// Where prefetched recordings go (none: the agent keeps no cache and does not offer it).
    pub prefetch: Option<Arc<Mutex<PrefetchCache>>>,
    /// Set while a session is up, for the playout clock (which airs from the cache otherwise).
    pub link_up: Arc<AtomicBool>,
    /// What the box's health reports are measured from.
    pub health: HealthProbe,
}

/// Where the link measures the box's health (`box_health/`).
#[derive(Debug, Clone)]
pub(crate) struct HealthProbe {
    pub roots: crate::box_health::HealthRoots,
    pub state_dir: std::path::PathBuf,
    pub outputs: crate::box_health::SharedOutputs,
    /// The playout's output state, as `OutputState as u8`.
    pub output: Arc<std::sync::atomic::AtomicU8>,
}

impl HealthProbe {
    /// The box now. Reads a few small kernel files and one statvfs: quick enough for the
    /// link's task, once per heartbeat interval.
    fn measure(&self) -> radio_proto::BoxHealth {
        let output = match self.output.load(Ordering::Relaxed) {
            1 => radio_proto::OutputState::OnAir,
            2 => radio_proto::OutputState::Underrun,
            _ => radio_proto::OutputState::Silent,
        };
        let outputs = self.outputs.lock().map(|o| o.clone()).unwrap_or_default();
        crate::box_health::measure(&self.roots, &self.state_dir, &outputs, output, unix_ms())
    }
}

/// The link's side of the journal.
#[derive(Debug, Clone)]
pub(crate) struct LinkJournal {
    pub journal: Arc<Journal>,
    pub sender: JournalSender,
    /// Woken after every record written.
    pub written: Arc<tokio::sync::Notify>,
}

/// The batch being uploaded, awaiting its acknowledgement: (first, last) sequence.
type InFlight = Option<(u64, u64)>;

/// Sends the oldest pending records if no batch is awaiting acknowledgement.
fn upload_next(journal: &LinkJournal, session: &mut Session, in_flight: &mut InFlight) {
    if in_flight.is_some() {
        return;
    }
    match journal
        .journal
        .pending(radio_proto::JournalBatch::MAX_RECORDS)
    {
        Ok(Some(batch)) => {
            let (Some(first), Some(last)) = (batch.records.first(), batch.records.last()) else {
                return;
            };
            *in_flight = Some((first.seq, last.seq));
            session.send_journal_batch(batch);
        }
        Ok(None) => {}
        Err(e) => warn!("{e}"),
    }
}

impl Link {
    /// Connects, serves, and reconnects until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut policy = Reconnect::new(self.reconnect_min, self.reconnect_max);
        let mut answer_within = None;
        // Kept across connections: a reconnect to the same server run keeps its samples.
        let mut clock = ClockSync::new(std::time::Instant::now());
        loop {
            if *shutdown.borrow() {
                return;
            }
            let span = tracing::info_span!("link", commune = %self.bundle.commune);
            let mut session = SessionTrace::default();
            let result = self
                .serve_once(&mut shutdown, answer_within, &mut session, &mut clock)
                .instrument(span)
                .await;
            self.set_connected(false);
            if let (Some(journal), Some(_)) = (&self.journal, session.welcomed_at) {
                let reason = match &result {
                    Ok(()) => "agent shutting down".to_owned(),
                    Err(e) => e.to_string(),
                };
                // The link died when the server was last heard, not when the idle timer ran
                // out seconds later: the outage in the journal starts at its real start.
                let at = session.last_heard_unix_ms.unwrap_or_else(unix_ms);
                journal
                    .sender
                    .record_at(at, radio_proto::JournalEvent::LinkDown { reason });
            }
            let ending = match result {
                Ok(()) => return,
                Err(e) => {
                    let ending = ending_of(&e, session.welcomed_at);
                    if ending == Ending::NoAnswer && policy.probing(Instant::now().into_std()) {
                        tracing::debug!(commune = %self.bundle.commune, "{e}");
                    } else {
                        warn!(commune = %self.bundle.commune, "{e}");
                    }
                    ending
                }
            };
            if let Some(rtt) = session.rtt {
                policy.observe_rtt(rtt);
            }
            let was_probing = policy.probing(Instant::now().into_std());
            let NextAttempt {
                wait,
                answer_within: answer,
            } = policy.after(ending, Instant::now().into_std(), &mut rand::thread_rng());
            answer_within = answer;
            match answer {
                Some(answer) if !was_probing => info!(
                    commune = %self.bundle.commune,
                    "link lost: probing for the server every {} ms for up to {} s",
                    answer.as_millis(),
                    PROBE_WINDOW.as_secs()
                ),
                Some(_) => {}
                None => {
                    info!(commune = %self.bundle.commune, "reconnecting in {} ms", wait.as_millis())
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn set_connected(&self, connected: bool) {
        self.link_up.store(connected, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            if connected && !s.connected {
                s.sessions += 1;
            }
            s.connected = connected;
        }
    }

    /// One connection. Ok(()) means a clean shutdown was requested. With `answer_within`, the
    /// attempt is a probe: abandoned when the server has not answered by then.
    async fn serve_once(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        answer_within: Option<Duration>,
        trace: &mut SessionTrace,
        clock: &mut ClockSync,
    ) -> Result<(), LinkError> {
        // A stop must not wait for a resolver or a handshake: an embedded agent (a server
        // relaying its upstream) is stopped and started again as programmes change, and a
        // late old session would replace the new one at the upstream.
        let addr = tokio::select! {
            addr = resolve(&self.server) => addr?,
            _ = shutdown.changed() => return Ok(()),
        };
        let mut connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), addr, &self.bundle.server_name)
            .map_err(|e| LinkError::Connect(e.to_string()))?;
        if let Some(answer) = answer_within {
            // The server's first flight carries its handshake data; until it arrives nothing is
            // known to have reached the server.
            tokio::select! {
                answered = tokio::time::timeout(answer, connecting.handshake_data()) => match answered {
                    Err(_) => return Err(LinkError::NoAnswer(answer)),
                    Ok(Err(e)) => return Err(connect_error(e)),
                    Ok(Ok(_)) => {}
                },
                _ = shutdown.changed() => return Ok(()),
            }
        }
        let conn = tokio::select! {
            conn = tokio::time::timeout(Duration::from_secs(10), connecting) => conn
                .map_err(|_| LinkError::Connect("handshake timed out".into()))?
                .map_err(connect_error)?,
            _ = shutdown.changed() => return Ok(()),
        };
        let (mut send, mut recv) = conn.open_bi().await.map_err(connection_error)?;
        let mut capabilities = Capabilities::OPUS
            | Capabilities::RTP_SINK
            | Capabilities::WAV_SINK
            | Capabilities::PIPE_SINK
            | Capabilities::BOX_HEALTH;
        if self.prefetch.is_some() {
            capabilities |= Capabilities::PREFETCH;
        }
        let hello = Hello {
            version: PROTOCOL_VERSION,
            agent_id: self.bundle.commune.clone(),
            software: concat!("relay-agent/", env!("CARGO_PKG_VERSION")).into(),
            capabilities,
        };
        let mut session = Session::agent(hello, SessionConfig::default(), Instant::now().into());
        flush(&mut session, &mut send).await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut counters = tokio::time::interval(Duration::from_secs(1));
        // Anything from the server (audio, heartbeats, QUIC keep-alives every 500 ms) shows in the
        // datagram count; its last change dates the start of an outage.
        let mut hearing = tokio::time::interval(HEARING_CHECK);
        let mut datagrams_heard = 0;
        let mut audio = tokio::task::JoinSet::new();
        let mut in_flight: InFlight = None;
        let written = self.journal.as_ref().map(|j| j.written.clone());
        // Re-armed at the server's heartbeat interval once welcomed.
        let mut health = tokio::time::interval(Duration::from_secs(3600));
        loop {
            let deadline = session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                read = recv.read(&mut buf) => match read {
                    Ok(Some(n)) => session.handle_input(Instant::now().into(), &buf[..n]),
                    Ok(None) => return Err(LinkError::Lost("server closed the control stream".into())),
                    Err(quinn::ReadError::ConnectionLost(e)) => return Err(connection_error(e)),
                    Err(e) => return Err(LinkError::Lost(e.to_string())),
                },
                _ = sleep_until_opt(deadline) => session.handle_timeout(Instant::now().into()),
                _ = tokio::time::sleep_until(Instant::from_std(clock.poll_timeout())), if trace.welcomed_at.is_some() => {
                    if let Some(probe) = clock.poll_probe(Instant::now().into()) {
                        session.send_clock_probe(probe);
                    }
                }
                // Audio is taken only once welcomed: the playout must know the server run before
                // the first programme marker arrives (quinn holds the stream until then).
                uni = conn.accept_uni(), if trace.welcomed_at.is_some() => match uni {
                    Ok(stream) => {
                        let playout = self.playout.clone();
                        let conn = conn.clone();
                        let prefetch = self.prefetch.clone();
                        audio.spawn(async move { receive_audio(stream, playout, conn, prefetch).await }.in_current_span());
                    }
                    Err(e) => return Err(connection_error(e)),
                },
                _ = hearing.tick() => {
                    let stats = conn.stats();
                    if stats.udp_rx.datagrams != datagrams_heard {
                        datagrams_heard = stats.udp_rx.datagrams;
                        trace.last_heard_unix_ms = Some(unix_ms());
                    }
                    trace.rtt = Some(conn.rtt());
                }
                _ = health.tick(), if trace.welcomed_at.is_some() => {
                    session.send_box_health(self.health.measure());
                }
                _ = counters.tick() => {
                    if let Ok(p) = self.playout.lock() {
                        let s = p.stats();
                        session.set_heartbeat_counters(s.frames_received, s.frames_played, s.frames_lost, p.on_air());
                    }
                    session.set_unix_ms(unix_ms());
                }
                Some(ended) = audio.join_next(), if !audio.is_empty() => {
                    // A stream's task that panicked may have poisoned the playout state: the
                    // link must not go on as if audio flowed, so the panic becomes the link's.
                    if let Err(e) = ended {
                        if e.is_panic() {
                            std::panic::resume_unwind(e.into_panic());
                        }
                    }
                }
                // New records: upload them unless a batch is already on its way.
                _ = notified(written.as_deref()), if trace.welcomed_at.is_some() && in_flight.is_none() => {
                    if let Some(journal) = &self.journal {
                        upload_next(journal, &mut session, &mut in_flight);
                    }
                }
                _ = shutdown.changed() => {
                    session.close(ErrorCode::Shutdown, "agent shutting down");
                    let _ = flush(&mut session, &mut send).await;
                    let _ = send.finish();
                    conn.close(quinn::VarInt::from_u32(ErrorCode::Shutdown.as_u16().into()), b"agent shutting down");
                    return Ok(());
                }
            }
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Welcomed(welcome) => {
                        info!(server = %welcome.server_name, "link up");
                        if let Ok(mut p) = self.playout.lock() {
                            p.on_session(welcome.session_id);
                        }
                        clock.on_session(welcome.session_id, Instant::now().into());
                        // The box's health at once, then beside each heartbeat.
                        let every = Duration::from_millis(
                            u64::from(welcome.heartbeat_interval_ms).max(100),
                        );
                        health = tokio::time::interval(every);
                        trace.welcomed_at = Some(Instant::now());
                        self.set_connected(true);
                        if let Some(journal) = &self.journal {
                            journal.sender.record(radio_proto::JournalEvent::LinkUp {
                                server_run: welcome.session_id,
                            });
                            upload_next(journal, &mut session, &mut in_flight);
                        }
                    }
                    Event::JournalAck(ack) => {
                        if let Some(journal) = &self.journal {
                            if in_flight == Some((ack.first_seq, ack.last_seq)) {
                                // Deleting flushes to disk: off the async threads.
                                let j = journal.journal.clone();
                                match tokio::task::spawn_blocking(move || j.acknowledge(&ack)).await
                                {
                                    Ok(Ok(_)) => {}
                                    Ok(Err(e)) => warn!("{e}"),
                                    Err(e) => warn!("journal acknowledgement: {e}"),
                                }
                                in_flight = None;
                                upload_next(journal, &mut session, &mut in_flight);
                            }
                        }
                    }
                    Event::ClockReply { reply, received_at } => {
                        if clock.on_reply(reply, received_at) {
                            let estimate = clock.estimate();
                            if let Ok(mut p) = self.playout.lock() {
                                if p.clock().is_none() && estimate.is_some() {
                                    info!("server clock known: playing in step");
                                }
                                p.set_clock(estimate);
                            }
                        }
                    }
                    Event::Closed {
                        code,
                        reason,
                        by_peer,
                    } => {
                        let _ = flush(&mut session, &mut send).await;
                        close_connection(&conn, code, &reason);
                        return Err(if by_peer {
                            LinkError::Refused { code, reason }
                        } else {
                            LinkError::Closed { code, reason }
                        });
                    }
                    Event::Heartbeat(_)
                    | Event::Hello(_)
                    | Event::JournalBatch(_)
                    | Event::BoxHealth(_) => {}
                }
            }
            flush(&mut session, &mut send).await?;
        }
    }
}

/// Reads one audio stream into the playout, or hands a prefetch stream (told apart by its first
/// message) to the prefetch receiver.
async fn receive_audio(
    mut stream: RecvStream,
    playout: Arc<Mutex<Playout>>,
    conn: Connection,
    prefetch: Option<Arc<Mutex<PrefetchCache>>>,
) {
    let mut reader = FrameReader::new();
    let mut first = true;
    loop {
        let chunk = match stream.read_chunk(64 * 1024, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!("audio stream ended: {e}");
                return;
            }
        };
        reader.push(&chunk.bytes);
        loop {
            match reader.next_message() {
                Ok(None) => break,
                Ok(Some(message)) => {
                    if std::mem::take(&mut first)
                        && matches!(
                            message,
                            Message::PrefetchManifest(_) | Message::PrefetchChunk(_)
                        )
                    {
                        crate::prefetch_receiver::serve(stream, reader, message, prefetch, conn)
                            .await;
                        return;
                    }
                    let Ok(mut p) = playout.lock() else { return };
                    match message {
                        Message::AudioFrame(frame) => p.on_frame(Instant::now().into(), frame),
                        Message::ProgrammeStart(start) => {
                            info!(programme = %start.name, id = start.programme_id, "programme start");
                            p.on_programme_start(&start);
                        }
                        Message::ProgrammeEnd(end) => {
                            info!(id = end.programme_id, frames = end.frames, "programme end");
                            p.on_programme_end(&end);
                        }
                        other => {
                            drop(p);
                            warn!("unexpected {:?} on the audio stream", other.message_type());
                            close_connection(
                                &conn,
                                ErrorCode::ProtocolViolation,
                                "unexpected message on audio stream",
                            );
                            return;
                        }
                    }
                }
                Err(e) => {
                    warn!("malformed audio stream: {e}");
                    close_connection(&conn, e.code(), &e.to_string());
                    return;
                }
            }
        }
    }
}

/// How often the link checks that it still hears the server: the precision of an outage's start.
const HEARING_CHECK: Duration = Duration::from_millis(100);

/// What one connection left behind for the reconnect policy and the journal.
#[derive(Debug, Default)]
struct SessionTrace {
    /// When the server welcomed the session.
    welcomed_at: Option<Instant>,
    /// When anything was last heard from the server.
    last_heard_unix_ms: Option<u64>,
    /// The connection's last round-trip time estimate.
    rtt: Option<Duration>,
}

/// What an error means for reconnecting: silence (probe again at once if the lost session was
/// stable) or an answer (back off).
fn ending_of(error: &LinkError, welcomed_at: Option<Instant>) -> Ending {
    match (error, welcomed_at) {
        (LinkError::NoAnswer(_), _) => Ending::NoAnswer,
        // A server going down for a restart says so; it will be back in seconds.
        (
            LinkError::Lost(_)
            | LinkError::Closed {
                code: ErrorCode::Timeout,
                ..
            }
            | LinkError::Refused {
                code: ErrorCode::Shutdown,
                ..
            },
            Some(at),
        ) => Ending::Lost {
            lasted: at.elapsed(),
        },
        _ => Ending::Refused,
    }
}

/// A handshake that failed: silence, or the server's answer (with a hint for the operator).
fn connect_error(e: quinn::ConnectionError) -> LinkError {
    match e {
        quinn::ConnectionError::TimedOut => LinkError::NoAnswer(crate::tls::IDLE_TIMEOUT),
        e => LinkError::Connect(explain_connect_error(&e)),
    }
}

/// A failed handshake, with a hint for the mistakes an operator can fix.
fn explain_connect_error(e: &quinn::ConnectionError) -> String {
    let text = e.to_string();
    format!("{text}{}", hint(&text))
}

/// What an operator can do about a connection error, from its text (rustls and quinn errors
/// carry their reasons in their messages only).
fn hint(text: &str) -> &'static str {
    // TLS alert 44, certificate_revoked: the server's revocation list names this bundle. With
    // TLS 1.3 it arrives after the agent's side of the handshake is done, as a lost connection.
    if text.contains("error 44") || text.contains("Revoked") {
        "; the server revoked this station's certificate: the district must enrol it again \
         (`radio-server enroll`) and the new bundle be installed here"
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "; the server's certificate is not from this bundle's CA: was this station enrolled on \
         this server? Re-run `radio-server enroll` there and install the new bundle"
    } else if text.contains("NotValidForName") {
        "; the server's certificate does not carry the name in the bundle (`server_name`): \
         check the server's `server_name` setting and re-enrol"
    } else if text.contains("CertificateExpired") || text.contains("error 45") {
        "; this station's certificate has expired: the district must enrol it again \
         (`radio-server enroll`) and the new bundle be installed here"
    } else if text.contains("timed out") {
        "; no answer from the server: check the address, the firewall (UDP) and the link"
    } else {
        ""
    }
}

/// Turns a lost connection into what the operator needs to know: a refusal by the server names its
/// wire error code and reason (unknown agent, revoked, shutdown), anything else is a lost link.
fn connection_error(e: quinn::ConnectionError) -> LinkError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => LinkError::Refused {
            code: u16::try_from(close.error_code.into_inner())
                .ok()
                .and_then(ErrorCode::from_u16)
                .unwrap_or(ErrorCode::Internal),
            reason: String::from_utf8_lossy(&close.reason).into_owned(),
        },
        other => {
            let text = other.to_string();
            // A refused certificate, told after the agent's side of the TLS 1.3 handshake.
            let hint = if text.contains("handshake failed") {
                hint(&text)
            } else {
                ""
            };
            LinkError::Lost(format!("{text}{hint}"))
        }
    }
}

fn close_connection(conn: &Connection, code: ErrorCode, reason: &str) {
    conn.close(
        quinn::VarInt::from_u32(code.as_u16().into()),
        reason.as_bytes(),
    );
}

async fn flush(session: &mut Session, send: &mut SendStream) -> Result<(), LinkError> {
    while let Some(bytes) = session.poll_transmit() {
        send.write_all(&bytes)
            .await
            .map_err(|e| LinkError::Lost(e.to_string()))?;
    }
    Ok(())
}

/// Waits for `notify`, or for ever without one.
async fn notified(notify: Option<&tokio::sync::Notify>) {
    match notify {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn resolve(server: &str) -> Result<SocketAddr, LinkError> {
    tokio::net::lookup_host(server)
        .await
        .map_err(|e| LinkError::Resolve(format!("{server}: {e}")))?
        .next()
        .ok_or_else(|| LinkError::Resolve(server.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_certificate_is_explained_as_the_server_says_it() {
        // The text quinn gives when the server's verifier refuses the certificate.
        let text = "aborted by peer: the cryptographic handshake failed: error 44: invalid peer \
                    certificate: Revoked";
        assert!(hint(text).contains("revoked this station's certificate"));
        assert!(hint("timed out").contains("no answer"));
        assert_eq!(hint("connection reset"), "");
    }
}
