//! One audio frame to N agents over real QUIC connections on 127.0.0.1: what the router's
//! fan-out (`hot_path`, `fanout/route_one_frame`) leaves out — quinn packetising, encrypting
//! and sending per connection, and the agents receiving.
//!
//! Both ends use the system's own TLS: the server's `tls::server_config` with a certificate
//! from the district CA (`CertificateAuthority::load_or_create` in a temporary directory) and its
//! `transport_config`; each agent enrols with that CA and connects with
//! `relay_agent::tls::client_config`, from its own UDP socket as a station would. Each
//! server-side connection opens one unidirectional stream, as the server's audio stream does.
//!
//! Timed: one encoded `AudioFrame` (80 bytes of Opus) written to all N streams until every agent
//! has read and decoded it. Connections are made once per N and reused by every iteration.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use radio_proto::{AudioFrame, FrameReader, Message};
use radio_server::certificate_authority::CertificateAuthority;
use radio_server::revocation_list::Revocations;
use tokio::sync::mpsc;

const SERVER_NAME: &str = "localhost";

fn frame_bytes(sequence: u64) -> Bytes {
    Message::AudioFrame(AudioFrame {
        channel: 0,
        sequence,
        timestamp: sequence * 960,
        server_time_us: sequence * 20_000,
        payload: Bytes::from(vec![0x5a; 80]),
    })
    .to_bytes()
}

/// N live connections: the server's send streams, and a channel on which the agents' readers
/// report each frame they decode.
struct Fanout {
    streams: Vec<quinn::SendStream>,
    received: mpsc::UnboundedReceiver<()>,
    // Kept so that the connections stay open while the bench runs.
    _server: quinn::Endpoint,
    _clients: Vec<quinn::Endpoint>,
    _connections: Vec<quinn::Connection>,
    _dir: tempfile::TempDir,
}

async fn connect(n: usize) -> Fanout {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "Huyện Bình Sơn").expect("CA");
    let revocations = Arc::new(Revocations::open(ca.dir()).expect("revocation list"));
    let server_config = radio_server::tls::server_config(
        &ca,
        SERVER_NAME,
        radio_server::server::transport_config(32_000),
        revocations,
    )
    .expect("server TLS");
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse().expect("addr"))
        .expect("server endpoint");
    let addr = server.local_addr().expect("server address");
    let bundle = ca
        .enroll("bench", "Bench", &addr.to_string(), SERVER_NAME)
        .expect("enrol");
    let client_config = relay_agent::tls::client_config(&bundle).expect("client TLS");

    let (tx, mut received) = mpsc::unbounded_channel();
    let mut clients = Vec::with_capacity(n);
    let mut streams = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(2 * n);
    // Fifty handshakes at a time: a thousand at once would only queue behind the two cores and
    // run into the handshake timeout.
    let mut left = n;
    while left > 0 {
        let batch = left.min(50);
        left -= batch;
        let mut agents = Vec::with_capacity(batch);
        for _ in 0..batch {
            let mut client =
                quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
            client.set_default_client_config(client_config.clone());
            let connecting = client.connect(addr, SERVER_NAME).expect("connect");
            let tx = tx.clone();
            agents.push(tokio::spawn(async move {
                let conn = connecting.await.expect("handshake");
                let mut recv = conn.accept_uni().await.expect("audio stream");
                // The agent's receive loop (`relay_agent::connection`), reporting each frame.
                tokio::spawn(async move {
                    let mut reader = FrameReader::new();
                    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
                        reader.push(&chunk.bytes);
                        while let Ok(Some(_)) = reader.next_message() {
                            if tx.send(()).is_err() {
                                return;
                            }
                        }
                    }
                });
                (client, conn)
            }));
        }
        let mut sessions = Vec::with_capacity(batch);
        for _ in 0..batch {
            let incoming = server.accept().await.expect("incoming");
            sessions.push(tokio::spawn(async move {
                let conn = incoming.await.expect("server handshake");
                let mut send = conn.open_uni().await.expect("open audio stream");
                // A stream reaches the peer with its first bytes.
                send.write_chunk(frame_bytes(0)).await.expect("first frame");
                (conn, send)
            }));
        }
        for s in sessions {
            let (conn, send) = s.await.expect("session task");
            connections.push(conn);
            streams.push(send);
        }
        for a in agents {
            let (client, conn) = a.await.expect("agent task");
            clients.push(client);
            connections.push(conn);
        }
    }
    for _ in 0..n {
        received.recv().await.expect("first frame at every agent");
    }
    Fanout {
        streams,
        received,
        _server: server,
        _clients: clients,
        _connections: connections,
        _dir: dir,
    }
}

fn quic_fanout(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("quic_fanout");
    for n in [1usize, 10, 100, 1000] {
        let mut fanout = rt.block_on(connect(n));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("one_frame_to_n_agents", n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for i in 0..iters {
                        let bytes = frame_bytes(i + 1);
                        for s in &mut fanout.streams {
                            s.write_chunk(bytes.clone()).await.expect("write frame");
                        }
                        for _ in 0..n {
                            fanout.received.recv().await.expect("agent reader");
                        }
                    }
                    start.elapsed()
                })
            })
        });
        drop(fanout);
    }
    g.finish();
    rt.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, quic_fanout);
criterion_main!(benches);
