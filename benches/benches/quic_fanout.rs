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
//!
//! The agents run on the same two cores as the server, so the wall time is both ends' work.
//! The server's share is measured apart: its endpoint and streams live on one thread of their
//! own, whose CPU time (`/proc/thread-self/schedstat`, nanoseconds) is read around each sample;
//! the median per frame over the samples is printed after each N.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use radio_benches::voice_frame::voice_frame;
use radio_proto::FrameReader;
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::identity::revocation_list::Revocations;
use tokio::sync::mpsc;

const SERVER_NAME: &str = "localhost";

/// Datagrams the kernel dropped because a UDP socket's receive buffer was full, machine-wide
/// (`/proc/net/snmp`): on loopback the only way a packet is lost.
fn udp_receive_buffer_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp");
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Datagrams dropped so far by this process's UDP sockets (the `drops` column of
/// `/proc/net/udp`, sockets found by inode among `/proc/self/fd`): the server's socket (by its
/// port) and the agents' together.
fn socket_drops(server_port: u16) -> (u64, u64) {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir("/proc/self/fd")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(
                link.strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let (mut server, mut agents) = (0, 0);
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(inode), Some(drops)) = (f.get(1), f.get(9), f.get(12)) else {
            continue;
        };
        if !inodes.contains(*inode) {
            continue;
        }
        let drops: u64 = drops.parse().unwrap_or(0);
        let port = local
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if port == Some(server_port) {
            server += drops;
        } else {
            agents += drops;
        }
    }
    (server, agents)
}

/// The idle timeout of both ends here instead of the 3 s they use. A thousand agents, the server
/// and other builds share two cores, and a connection starved of keep-alives for 3 s was closed
/// in one of five runs; the timeout decides when a dead link is noticed, not what a frame costs.
const BENCH_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

fn with_bench_idle_timeout(mut transport: quinn::TransportConfig) -> Arc<quinn::TransportConfig> {
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(BENCH_IDLE_TIMEOUT).expect("idle timeout"),
    ));
    Arc::new(transport)
}

/// Nanoseconds the server thread has spent on a CPU, from its `schedstat`.
fn thread_cpu_ns(schedstat: &std::path::Path) -> u64 {
    std::fs::read_to_string(schedstat)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("schedstat")
}

/// The server side: one thread with its own runtime, holding the endpoint and the N streams.
/// Each message asks it to write one frame to every stream.
struct Server {
    frames: mpsc::UnboundedSender<Bytes>,
    addr: std::net::SocketAddr,
    schedstat: std::path::PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// `receive_buffer`: the socket's receive buffer in bytes, or the system's default (what
    /// `radio_server::link::server::bind` gets) when `None`.
    fn start(config: quinn::ServerConfig, n: usize, receive_buffer: Option<usize>) -> Server {
        let (frames, mut to_send) = mpsc::unbounded_channel::<Bytes>();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                if let Some(bytes) = receive_buffer {
                    quinn::udp::UdpSocketState::new((&socket).into())
                        .and_then(|state| state.set_recv_buffer_size((&socket).into(), bytes))
                        .expect("receive buffer");
                }
                let endpoint = quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    Some(config),
                    socket,
                    quinn::default_runtime().expect("runtime"),
                )
                .expect("server endpoint");
                let me = std::fs::read_link("/proc/thread-self").expect("thread id");
                ready_tx
                    .send((
                        endpoint.local_addr().expect("address"),
                        std::path::Path::new("/proc").join(me).join("schedstat"),
                    ))
                    .expect("bench waits");
                let mut sessions = tokio::task::JoinSet::new();
                for _ in 0..n {
                    let incoming = endpoint.accept().await.expect("incoming");
                    sessions.spawn(async move {
                        let conn = incoming.await.expect("server handshake");
                        let mut send = conn.open_uni().await.expect("open audio stream");
                        // A stream reaches the peer with its first bytes.
                        send.write_chunk(voice_frame(0).to_bytes())
                            .await
                            .expect("first frame");
                        (conn, send)
                    });
                }
                let mut connections = Vec::with_capacity(n);
                let mut streams = Vec::with_capacity(n);
                while let Some(session) = sessions.join_next().await {
                    let (conn, send) = session.expect("session task");
                    connections.push(conn);
                    streams.push(send);
                }
                // Written one after the other, not from a task per agent as the server does: a
                // write that fits the stream's window only queues the bytes and wakes the
                // connection, which is where the cost is.
                while let Some(bytes) = to_send.recv().await {
                    for s in &mut streams {
                        s.write_chunk(bytes.clone()).await.expect("write frame");
                    }
                }
                drop(connections);
                endpoint.close(0u32.into(), b"done");
                endpoint.wait_idle().await;
            });
        });
        let (addr, schedstat) = ready.recv().expect("server thread");
        Server {
            frames,
            addr,
            schedstat,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing the channel ends the server's loop; it closes its endpoint and returns.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.frames, closed));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// N agents: their endpoints and connections, and a channel on which their readers report each
/// frame they decode.
struct Agents {
    received: mpsc::UnboundedReceiver<()>,
    _endpoints: Vec<quinn::Endpoint>,
    _connections: Vec<quinn::Connection>,
}

async fn connect(n: usize, addr: std::net::SocketAddr, config: quinn::ClientConfig) -> Agents {
    let (tx, mut received) = mpsc::unbounded_channel();
    let mut endpoints = Vec::with_capacity(n);
    let mut connections = Vec::with_capacity(n);
    // Fifty handshakes at a time: a thousand at once would only queue behind the two cores and
    // run into the handshake timeout.
    let mut left = n;
    while left > 0 {
        let batch = left.min(50);
        left -= batch;
        let mut agents = tokio::task::JoinSet::new();
        for _ in 0..batch {
            let mut endpoint =
                quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
            endpoint.set_default_client_config(config.clone());
            let connecting = endpoint.connect(addr, SERVER_NAME).expect("connect");
            let tx = tx.clone();
            agents.spawn(async move {
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
                (endpoint, conn)
            });
        }
        while let Some(agent) = agents.join_next().await {
            let (endpoint, conn) = agent.expect("agent task");
            endpoints.push(endpoint);
            connections.push(conn);
        }
    }
    for _ in 0..n {
        received.recv().await.expect("first frame at every agent");
    }
    Agents {
        received,
        _endpoints: endpoints,
        _connections: connections,
    }
}

fn quic_fanout(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::load_or_create(dir.path(), "Huyện Bình Sơn").expect("CA");
    let revocations = Arc::new(Revocations::open(ca.dir()).expect("revocation list"));
    let bundle = ca
        .enroll("bench", "Bench", "127.0.0.1:4433", SERVER_NAME)
        .expect("enrol");
    let mut client_config = relay_agent::tls::client_config(&bundle).expect("client TLS");
    client_config.transport_config(with_bench_idle_timeout(relay_agent::tls::transport_config()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("agents' runtime");
    let mut g = c.benchmark_group("quic_fanout");
    // The default receive buffer, as the server binds today, and at 1,000 agents a 4 MiB one
    // (`net.core.rmem_max` here): a thousand acknowledgements arrive together after each frame
    // and overflow the default (212,992 bytes here); the second run tells whether those drops
    // are what makes a thousand agents dearer per agent than a hundred.
    let cases = [
        (1usize, None),
        (10, None),
        (100, None),
        (1000, None),
        (1000, Some(4 << 20)),
    ];
    for (n, receive_buffer) in cases {
        let mut server_config = radio_server::identity::tls::server_config(
            &ca,
            SERVER_NAME,
            radio_server::link::server::transport_config(32_000),
            revocations.clone(),
        )
        .expect("server TLS");
        server_config.transport_config(with_bench_idle_timeout(
            radio_server::link::server::transport_config(32_000),
        ));
        let server = Server::start(server_config, n, receive_buffer);
        let name = match receive_buffer {
            None => "one_frame_to_n_agents".to_string(),
            Some(bytes) => format!("one_frame_to_n_agents_receive_buffer_{}k", bytes >> 10),
        };
        let mut agents = rt.block_on(connect(n, server.addr, client_config.clone()));
        let drops = udp_receive_buffer_drops();
        let (server_drops, agent_drops) = socket_drops(server.addr.port());
        let mut sequence = 0;
        let mut server_ns_per_frame = Vec::new();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new(&name, n), &n, |b, &n| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let cpu = thread_cpu_ns(&server.schedstat);
                    let start = Instant::now();
                    for _ in 0..iters {
                        sequence += 1;
                        server
                            .frames
                            .send(voice_frame(sequence).to_bytes())
                            .expect("server thread");
                        for _ in 0..n {
                            agents.received.recv().await.expect("agent reader");
                        }
                    }
                    let elapsed = start.elapsed();
                    let server_ns = thread_cpu_ns(&server.schedstat) - cpu;
                    server_ns_per_frame.push(server_ns as f64 / iters as f64);
                    elapsed
                })
            })
        });
        println!(
            "quic_fanout/{name}/{n}: server thread CPU per frame, median of {} \
             samples: {:.1} µs ({:.2} µs per agent); {} frames; datagrams dropped by full \
             receive buffers meanwhile: {} machine-wide, {} at the server's socket, {} at the \
             agents'",
            server_ns_per_frame.len(),
            radio_benches::summary::median(&server_ns_per_frame) / 1e3,
            radio_benches::summary::median(&server_ns_per_frame) / 1e3 / n as f64,
            sequence,
            udp_receive_buffer_drops() - drops,
            socket_drops(server.addr.port()).0 - server_drops,
            socket_drops(server.addr.port()).1 - agent_drops,
        );
        drop(agents);
        drop(server);
    }
    g.finish();
    rt.shutdown_timeout(Duration::from_secs(1));
}

criterion_group!(benches, quic_fanout);
criterion_main!(benches);
