//! Feeds arbitrary datagrams through the live RTP ingest's whole packet path: the
//! allowlist, SRTP unprotect, RTP parsing, the reorder buffer, depacketising and the
//! Opus/L16 decoders, on a virtual clock (`LiveRtpReceiver` is sans-IO).
//!
//! Input: one mode byte, then datagrams, each `[flags, len_hi, len_lo, bytes…]`.
//! - mode % 3: 0 plain RTP; 1 an SRTP receiver fed the bytes as they are (the tag check
//!   and its parsing); 2 an SRTP receiver fed the bytes protected with its key, so that
//!   the fuzzer gets past the tag to everything behind it. mode / 3 % 2 picks a zero
//!   jitter delay instead of the default.
//! - flags: bits 0–1 the sender (0 and 1 the allowlisted studio, as IPv4 and as an
//!   IPv4-mapped IPv6 address; 2 and 3 strangers); bits 2–7 how many 5 ms steps pass
//!   before it arrives.
//!
//! Properties, besides not panicking (from `live_rtp.rs`'s docs):
//! - every datagram is counted in exactly one of the drop counters or `accepted`;
//! - strangers are never parsed: `rejected_source` counts exactly their datagrams;
//! - once `poll_frame` has released a frame, the audio waiting is within the latency
//!   bound (the playout delay + 1 s);
//! - one call releases at most the frames of `MAX_RELEASE_LAG` (200 ms) and one more:
//!   a late caller gets the clock re-based, not a burst;
//! - `Receiving` and `Ended` strictly alternate, starting with `Receiving`.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use radio_server::ingest::live_rtp::{L16Format, LiveEvent, LiveRtpConfig, LiveRtpReceiver};
use radio_server::ingest::srtp::{MasterKey, SrtpSender, MASTER_LEN};

/// Frames one `poll_frame` loop may release: 200 ms of lag, the frame due, and one more.
const MAX_FRAMES_PER_POLL: usize = 12;

struct Driver {
    rx: LiveRtpReceiver,
    now: Instant,
    on_air: bool,
}

impl Driver {
    fn poll(&mut self) {
        let mut released = 0;
        while self.rx.poll_frame(self.now).is_some() {
            released += 1;
            assert!(
                released <= MAX_FRAMES_PER_POLL,
                "a burst of {released} frames"
            );
            let backlog = self.rx.backlog().expect("a stream that plays");
            assert!(
                backlog.samples <= backlog.limit,
                "{} samples waiting, bound {}",
                backlog.samples,
                backlog.limit
            );
        }
        while let Some(event) = self.rx.poll_event() {
            match event {
                LiveEvent::Receiving { .. } => assert!(!self.on_air, "Receiving twice"),
                LiveEvent::Ended { .. } => assert!(self.on_air, "Ended while off air"),
            }
            self.on_air = !self.on_air;
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut input)) = data.split_first() else {
        return;
    };
    let key = MasterKey::from_bytes(&std::array::from_fn::<u8, MASTER_LEN, _>(|i| i as u8));
    let studio: SocketAddr = "192.0.2.10:5004".parse().expect("addr");
    let senders: [SocketAddr; 4] = [
        studio,
        "[::ffff:192.0.2.10]:5004".parse().expect("addr"),
        "192.0.2.66:5004".parse().expect("addr"),
        "[2001:db8::66]:5004".parse().expect("addr"),
    ];
    let config = LiveRtpConfig {
        allow: vec![studio.ip()],
        srtp: (mode % 3 != 0).then(|| key.clone()),
        l16: vec![
            L16Format {
                payload_type: 100,
                rate: 48_000,
                channels: 1,
            },
            L16Format {
                payload_type: 101,
                rate: 8_000,
                channels: 2,
            },
        ],
        jitter_delay: if mode / 3 % 2 == 1 {
            Duration::ZERO
        } else {
            LiveRtpConfig::default().jitter_delay
        },
        ..LiveRtpConfig::default()
    };
    let mut protect = (mode % 3 == 2).then(|| SrtpSender::new(&key));
    let mut driver = Driver {
        rx: LiveRtpReceiver::new(config).expect("valid config"),
        now: Instant::now(),
        on_air: false,
    };

    let mut datagrams = 0u64;
    let mut strangers = 0u64;
    while let [flags, hi, lo, rest @ ..] = input {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (bytes, tail) = rest.split_at(len);
        input = tail;
        driver.now += Duration::from_millis(5 * u64::from(flags >> 2));
        let from = senders[usize::from(flags & 3)];
        let protected;
        let bytes = match &mut protect {
            Some(sender) => match sender.protect(bytes) {
                Ok(p) => {
                    protected = p;
                    &protected[..]
                }
                Err(_) => bytes,
            },
            None => bytes,
        };
        driver.rx.handle_packet(driver.now, from, bytes);
        datagrams += 1;
        strangers += u64::from(flags & 3 >= 2);
        driver.poll();
    }
    // Let every timeout run out.
    for _ in 0..400 {
        driver.now += Duration::from_millis(20);
        driver.poll();
    }

    let stats = driver.rx.stats();
    assert_eq!(stats.packets, datagrams);
    assert_eq!(stats.sorted(), stats.packets, "{stats:?}");
    assert_eq!(stats.rejected_source, strangers, "{stats:?}");
    assert!(!driver.on_air, "still on air 8 s after the last packet");
});
