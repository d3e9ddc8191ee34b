//! A loudspeaker's view of an agent: a UDP socket that takes the agent's RTP packets and notes
//! when each arrived, so tests and benchmarks can tell when programme audio stopped and resumed.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// RTP header without CSRCs or extensions, as the agent's RTP sink sends it.
const RTP_HEADER: usize = 12;

/// One received packet: when, and its Opus payload.
pub type Arrival = (Instant, Vec<u8>);

/// A running RTP receiver on 127.0.0.1.
#[derive(Debug)]
pub struct RtpCapture {
    addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpCapture {
    /// Binds a fresh port and starts receiving.
    pub fn start() -> RtpCapture {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the RTP receiver");
        let addr = socket.local_addr().expect("receiver address");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("read timeout");
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let running = Arc::new(AtomicBool::new(true));
        let thread = {
            let (arrivals, running) = (arrivals.clone(), running.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while running.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        let payload = buf.get(RTP_HEADER..n).unwrap_or_default().to_vec();
                        if let Ok(mut a) = arrivals.lock() {
                            a.push((Instant::now(), payload));
                        }
                    }
                }
            })
        };
        RtpCapture {
            addr,
            arrivals,
            running,
            thread: Some(thread),
        }
    }

    /// Where the agent's RTP sink should send (`rtp:ADDR`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops receiving and returns every packet, in arrival order.
    pub fn stop(mut self) -> Vec<Arrival> {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        std::mem::take(&mut *self.arrivals.lock().expect("arrivals"))
    }
}

impl Drop for RtpCapture {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

/// When each packet of programme audio arrived. The agent sends one and the same packet for
/// every silent slot, while every 20 ms of a programme encodes differently: a payload seen more
/// than once is silence.
pub fn programme_audio(arrivals: &[Arrival]) -> Vec<Instant> {
    let mut seen = HashMap::<&[u8], usize>::new();
    for (_, payload) in arrivals {
        *seen.entry(payload).or_default() += 1;
    }
    arrivals
        .iter()
        .filter(|(_, payload)| seen[payload.as_slice()] == 1)
        .map(|(at, _)| *at)
        .collect()
}
