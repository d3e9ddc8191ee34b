//! The QUIC endpoint's UDP socket, with kernel buffers sized for thousands of agents.
//!
//! Every 20 ms tick the server sends one packet to every agent at once, and the agents'
//! acknowledgements come back as a burst. Linux's default receive buffer (208 KiB, about 270
//! small datagrams as the kernel counts them) overflowed at 1,000 agents on loopback: a fifth
//! of the datagrams were dropped (`RcvbufErrors` in `/proc/net/snmp`), handshakes timed out and
//! audio queued behind retransmissions. The buffers asked for here hold a burst from every
//! agent of a province; the kernel caps them at `net.core.rmem_max` / `wmem_max`, and
//! [`bind`] says when it did, with the `sysctl` that lifts the cap.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer asked for: 10,000 agents' acknowledgements of one tick, at about
/// 1 KiB each as the kernel accounts a datagram.
pub const SOCKET_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// The buffer sizes the kernel granted (as it reports them: twice what it counts as data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSizes {
    /// `SO_RCVBUF`.
    pub receive: usize,
    /// `SO_SNDBUF`.
    pub send: usize,
}

impl BufferSizes {
    /// Whether the kernel capped either buffer below what was asked for.
    pub fn capped(&self, wanted: usize) -> bool {
        self.receive < wanted || self.send < wanted
    }
}

/// Binds a UDP socket on `addr` with receive and send buffers of `buffer` bytes, or as much as
/// the kernel allows; with `shared`, other sockets may bind the same port (`SO_REUSEPORT`) and
/// the kernel spreads the peers over them by address and port.
pub fn bind(
    addr: SocketAddr,
    buffer: usize,
    shared: bool,
) -> std::io::Result<(UdpSocket, BufferSizes)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if shared {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // As std's bind does: a socket on `[::]` takes IPv4 too only where the system says so.
        let _ = socket.set_only_v6(false);
    }
    // A failure here leaves the default buffers: smaller, still working.
    let _ = socket.set_recv_buffer_size(buffer);
    let _ = socket.set_send_buffer_size(buffer);
    socket.bind(&addr.into())?;
    let sizes = BufferSizes {
        receive: socket.recv_buffer_size()?,
        send: socket.send_buffer_size()?,
    };
    Ok((socket.into(), sizes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_with_larger_buffers_than_the_default() {
        let (socket, sizes) =
            bind("127.0.0.1:0".parse().expect("addr"), 1024 * 1024, false).expect("bind");
        assert_ne!(socket.local_addr().expect("addr").port(), 0);
        // Linux's default is 208 KiB; even a machine capped at that would not pass this.
        assert!(
            sizes.receive > 256 * 1024,
            "receive buffer {}",
            sizes.receive
        );
        assert!(sizes.send > 256 * 1024, "send buffer {}", sizes.send);
        assert!(!sizes.capped(1024 * 1024));
    }

    #[test]
    fn shared_sockets_bind_one_port_and_a_peer_always_reaches_the_same_one() {
        let (first, _) = bind("127.0.0.1:0".parse().expect("addr"), 1 << 20, true).expect("bind");
        let addr = first.local_addr().expect("addr");
        let (second, _) = bind(addr, 1 << 20, true).expect("a second socket on the port");
        for s in [&first, &second] {
            s.set_read_timeout(Some(std::time::Duration::from_millis(50)))
                .expect("timeout");
        }
        let peers: Vec<UdpSocket> = (0..16)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("peer"))
            .collect();
        let mut reached = [0usize; 2];
        for peer in &peers {
            for _ in 0..3 {
                peer.send_to(b"x", addr).expect("send");
            }
            let mut got = [0usize; 2];
            let mut buf = [0u8; 8];
            // All three, however late the kernel delivers them on a loaded machine.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while got[0] + got[1] < 3 {
                assert!(std::time::Instant::now() < deadline, "received {got:?}");
                for (i, s) in [&first, &second].into_iter().enumerate() {
                    if let Ok((_, from)) = s.recv_from(&mut buf) {
                        assert_eq!(from, peer.local_addr().expect("addr"));
                        got[i] += 1;
                    }
                }
            }
            // All of a peer's datagrams at one socket: its endpoint knows its connection.
            assert!(got == [3, 0] || got == [0, 3], "{got:?}");
            reached[0] += got[0];
            reached[1] += got[1];
        }
        assert_eq!(reached.iter().sum::<usize>(), 48);
        assert!(
            reached.iter().all(|&n| n > 0),
            "all peers on one socket: {reached:?}"
        );
    }
}
