//! The agent side of the protocol without the relay agent: a QUIC connection with any client
//! configuration and the sans-IO session, so tests can also misbehave (claim another identity,
//! send bytes no agent would, stop reading).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use radio_proto::{
    Capabilities, ErrorCode, Event, Hello, JournalBatch, Session, SessionConfig, Welcome,
    PROTOCOL_VERSION,
};

/// How long a test waits for any one answer of the server: far longer than it takes, so that
/// only a server that never answers fails, not a loaded machine.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// Opens a QUIC connection to the server as `client`; Err is a failed handshake, as text.
pub async fn connect(
    addr: SocketAddr,
    client: quinn::ClientConfig,
) -> Result<(quinn::Endpoint, quinn::Connection), String> {
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    let connecting = endpoint
        .connect_with(client, addr, "localhost")
        .map_err(|e| e.to_string())?;
    let conn = tokio::time::timeout(ANSWER_WITHIN, connecting)
        .await
        .map_err(|_| format!("no handshake within {ANSWER_WITHIN:?}"))?
        .map_err(|e| e.to_string())?;
    Ok((endpoint, conn))
}

/// An agent session over its own connection.
pub struct RawAgent {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
    pub session: Session,
    /// The server's welcome, once welcomed.
    pub welcome: Option<Welcome>,
}

impl RawAgent {
    /// Connects and opens the control stream; the session's Hello claims `agent_id` and is
    /// sent with the first exchange.
    pub async fn open(
        addr: SocketAddr,
        client: quinn::ClientConfig,
        agent_id: &str,
    ) -> Result<RawAgent, String> {
        let (endpoint, conn) = connect(addr, client).await?;
        let (send, recv) = conn.open_bi().await.map_err(|e| why(&conn, e))?;
        let session = Session::agent(
            Hello {
                version: PROTOCOL_VERSION,
                agent_id: agent_id.into(),
                software: "raw-test-agent".into(),
                capabilities: Capabilities::OPUS,
            },
            SessionConfig::default(),
            Instant::now(),
        );
        Ok(RawAgent {
            endpoint,
            conn,
            send,
            recv,
            session,
            welcome: None,
        })
    }

    /// Connects as `agent_id` and runs the session until it is welcomed (Ok) or refused.
    pub async fn welcomed(
        addr: SocketAddr,
        client: quinn::ClientConfig,
        agent_id: &str,
    ) -> Result<RawAgent, String> {
        let mut agent = Self::open(addr, client, agent_id).await?;
        match agent.next_event().await? {
            Event::Welcomed(welcome) => {
                agent.welcome = Some(welcome);
                Ok(agent)
            }
            other => Err(format!("not welcomed: {other:?}")),
        }
    }

    /// Sends what the session has to send, then reads until it has an event.
    pub async fn next_event(&mut self) -> Result<Event, String> {
        let mut buf = vec![0u8; 4096];
        loop {
            while let Some(bytes) = self.session.poll_transmit() {
                let written = self.send.write_all(&bytes).await;
                written.map_err(|e| why(&self.conn, e))?;
            }
            if let Some(event) = self.session.poll_event() {
                return Ok(event);
            }
            match tokio::time::timeout(ANSWER_WITHIN, self.recv.read(&mut buf)).await {
                Ok(Ok(Some(n))) => self.session.handle_input(Instant::now(), &buf[..n]),
                Ok(Ok(None)) => return Err("stream finished".into()),
                Ok(Err(e)) => return Err(why(&self.conn, e)),
                Err(_) => return Err(format!("no answer within {ANSWER_WITHIN:?}")),
            }
        }
    }

    /// Exchanges messages until `wanted` accepts an event; Err if the session closes first.
    pub async fn until(&mut self, wanted: impl Fn(&Event) -> bool) -> Result<Event, String> {
        loop {
            let event = self.next_event().await?;
            if wanted(&event) {
                return Ok(event);
            }
            if let Event::Closed { code, reason, .. } = &event {
                return Err(format!("closed: {code:?}: {reason}"));
            }
        }
    }

    /// Uploads a batch and waits for its acknowledgement: proof that the server still serves
    /// this agent, and stores what it sends.
    pub async fn upload(&mut self, batch: JournalBatch) -> Result<(), String> {
        let last = batch.records.last().map(|r| r.seq).unwrap_or_default();
        self.session.send_journal_batch(batch);
        self.until(|e| matches!(e, Event::JournalAck(ack) if ack.last_seq == last))
            .await
            .map(|_| ())
    }

    /// Writes raw bytes on the control stream, bypassing the session.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let written = self.send.write_all(bytes).await;
        written.map_err(|e| why(&self.conn, e))
    }

    /// Waits for the connection to end; the server's close code, if it closed it.
    pub async fn closed_by_server(&self) -> Option<ErrorCode> {
        close_code(&self.conn.closed().await)
    }
}

/// The wire error code a connection was closed with by the application (the server), if any.
pub fn close_code(e: &quinn::ConnectionError) -> Option<ErrorCode> {
    match e {
        quinn::ConnectionError::ApplicationClosed(close) => {
            u16::try_from(close.error_code.into_inner())
                .ok()
                .and_then(ErrorCode::from_u16)
        }
        _ => None,
    }
}

/// The code a connection is closed with by the server within `within`; panics otherwise.
pub async fn closed_within(conn: &quinn::Connection, within: Duration) -> ErrorCode {
    let e = tokio::time::timeout(within, conn.closed())
        .await
        .unwrap_or_else(|_| panic!("not closed within {within:?}"));
    close_code(&e).unwrap_or_else(|| panic!("not closed by the server: {e}"))
}

/// A stream error with the connection's close reason, which says what the server refused
/// (a TLS alert, a wire error code); the stream error alone says only "connection lost".
fn why(conn: &quinn::Connection, e: impl std::fmt::Display) -> String {
    match conn.close_reason() {
        Some(reason) => format!("{e}: {reason}"),
        None => e.to_string(),
    }
}
