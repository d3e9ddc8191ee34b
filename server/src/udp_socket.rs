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
/// the kernel allows.
pub fn bind(addr: SocketAddr, buffer: usize) -> std::io::Result<(UdpSocket, BufferSizes)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
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
            bind("127.0.0.1:0".parse().expect("addr"), 1024 * 1024).expect("bind");
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
}
