use super::*;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rtp_rs::RtpPacketBuilder;
use std::f64::consts::PI;
use std::process::Stdio;
use std::sync::OnceLock;

const PT_OPUS: u8 = 111;
const SSRC: u32 = 0x5EED_0001;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn studio() -> SocketAddr {
    "10.20.30.40:5004".parse().unwrap()
}

fn config() -> LiveRtpConfig {
    LiveRtpConfig {
        allow: vec![studio().ip()],
        ..LiveRtpConfig::default()
    }
}

/// Three partials, so that a wrong rate or a misaligned frame shows.
fn multitone(secs: f64, rate: u32) -> Vec<f32> {
    let n = (secs * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            (0.2 * (2.0 * PI * 330.0 * t).sin()
                + 0.15 * (2.0 * PI * 870.0 * t).sin()
                + 0.1 * (2.0 * PI * 2_450.0 * t).sin()) as f32
        })
        .collect()
}

fn tone(freq: f64, amp: f64, n: usize, rate: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Opus packets of `frame` samples each, from a stereo encoder as ffmpeg uses.
fn encode_opus(pcm: &[f32], frame: usize) -> Vec<Vec<u8>> {
    let mut enc =
        opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio).unwrap();
    pcm.chunks_exact(frame)
        .map(|chunk| {
            let stereo: Vec<f32> = chunk.iter().flat_map(|&s| [s, s]).collect();
            enc.encode_vec_float(&stereo, 4_000).unwrap()
        })
        .collect()
}

/// What an independent decoder makes of `packets`; `None` is a lost packet, concealed
/// for the previous packet's duration.
fn reference_decode(packets: &[Option<&[u8]>]) -> Vec<f32> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Stereo).unwrap();
    let mut buf = vec![0.0f32; MAX_OPUS_SAMPLES * 2];
    let mut out = Vec::new();
    let mut last = FRAME_SAMPLES;
    for p in packets {
        let n = match p {
            Some(p) => dec.decode_float(p, &mut buf, false).unwrap(),
            None => dec.decode_float(&[], &mut buf[..2 * last], false).unwrap(),
        };
        last = n;
        out.extend(buf[..2 * n].chunks_exact(2).map(|p| (p[0] + p[1]) * 0.5));
    }
    out
}

fn all(packets: &[Vec<u8>]) -> Vec<Option<&[u8]>> {
    packets.iter().map(|p| Some(p.as_slice())).collect()
}

fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(pt)
        .sequence(Seq::from(seq))
        .timestamp(ts)
        .ssrc(ssrc)
        .payload(payload)
        .build()
        .unwrap()
}

#[derive(Clone)]
struct Arrival {
    at: Duration,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// Packet `k` of `packets` as RTP, sent at k × 20 ms from the studio.
fn paced(packets: &[Vec<u8>], first_seq: u16, ssrc: u32) -> Vec<Arrival> {
    packets
        .iter()
        .enumerate()
        .map(|(k, p)| Arrival {
            at: ms(20 * k as u64),
            from: studio(),
            bytes: rtp(
                PT_OPUS,
                first_seq.wrapping_add(k as u16),
                (k * 960) as u32,
                ssrc,
                p,
            ),
        })
        .collect()
}

/// Drives a receiver on a virtual clock: time only ever jumps to the next arrival or
/// to the receiver's own `poll_timeout`, so an event recorded at time T also proves
/// nothing fired at any earlier poll.
struct Harness {
    rx: LiveRtpReceiver,
    t0: Instant,
    now: Duration,
    frames: Vec<(Duration, Box<PcmFrame>)>,
    events: Vec<(Duration, LiveEvent)>,
}

impl Harness {
    fn new(config: LiveRtpConfig) -> Self {
        Harness {
            rx: LiveRtpReceiver::new(config).unwrap(),
            t0: Instant::now(),
            now: Duration::ZERO,
            frames: Vec::new(),
            events: Vec::new(),
        }
    }

    fn run(&mut self, arrivals: &[Arrival], end: Duration) {
        let mut arrivals = arrivals.to_vec();
        arrivals.sort_by_key(|a| a.at);
        let mut next_arrival = arrivals
            .iter()
            .position(|a| a.at >= self.now)
            .unwrap_or(arrivals.len());
        let mut stuck = 0;
        loop {
            let timer = self.rx.poll_timeout().map(|t| t - self.t0);
            let arrival = arrivals.get(next_arrival).map(|a| a.at);
            let next = match (timer, arrival) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            assert!(next >= self.now, "poll_timeout {next:?} is before now");
            stuck = if next == self.now && arrival != Some(next) {
                stuck + 1
            } else {
                0
            };
            assert!(stuck < 3, "poll_timeout does not advance at {next:?}");
            self.now = next;
            while let Some(a) = arrivals.get(next_arrival).filter(|a| a.at <= next) {
                self.rx.handle_packet(self.t0 + a.at, a.from, &a.bytes);
                next_arrival += 1;
            }
            self.drain();
        }
        self.now = end;
        self.drain();
    }

    fn drain(&mut self) {
        let now = self.t0 + self.now;
        self.rx.handle_timeout(now);
        while let Some(f) = self.rx.poll_frame(now) {
            self.frames.push((self.now, f));
        }
        while let Some(e) = self.rx.poll_event() {
            self.events.push((self.now, e));
        }
    }

    fn pcm(&self) -> Vec<f32> {
        self.frames
            .iter()
            .flat_map(|(_, f)| f.iter().copied())
            .collect()
    }
}

fn assert_same(got: &[f32], want: &[f32]) {
    assert!(got.len() <= want.len(), "{} > {}", got.len(), want.len());
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "sample {i} (frame {}) differs: {} vs {}",
            i / FRAME_SAMPLES,
            got[i],
            want[i]
        );
    }
}

fn receiving() -> LiveEvent {
    LiveEvent::Receiving {
        from: LiveSource::Rtp(studio()),
    }
}

#[test]
fn in_order_stream_plays_the_decoded_input() {
    let packets = encode_opus(&multitone(2.0, 48_000), FRAME_SAMPLES);
    let arrivals = paced(&packets, 1_000, SSRC);
    let mut h = Harness::new(config());
    // Stop while the last packet still waits, before the end-of-stream concealment.
    h.run(&arrivals, ms(99 * 20 + 40));
    let want = reference_decode(&all(&packets));
    assert_eq!(h.frames.len(), 99);
    assert_same(&h.pcm(), &want);
    // One frame per 20 ms, the first after the 60 ms reorder window.
    for (k, (at, _)) in h.frames.iter().enumerate() {
        assert_eq!(*at, ms(60 + 20 * k as u64));
    }
    assert_eq!(h.events, vec![(Duration::ZERO, receiving())]);
    let stats = h.rx.stats();
    assert_eq!(
        (stats.packets, stats.accepted, stats.lost, stats.frames_out),
        (100, 100, 0, 99)
    );
    assert!(stats.bytes > 100 * 12);

    // The stream then ends: the last packet plays, then at most 100 ms of concealment
    // (it cannot yet tell an ended stream from a stalled one), then nothing.
    h.run(&[], ms(4_000));
    assert_same(&h.pcm()[..100 * FRAME_SAMPLES], &want);
    let stats = h.rx.stats();
    assert_eq!(stats.lost, u64::from(MAX_CONCEALED_RUN));
    assert_eq!(h.frames.len() as u64, 100 + stats.lost);
    assert_eq!(h.rx.poll_timeout(), Some(h.t0 + ms(1_980) + ms(5_000)));
}

#[test]
fn reordering_within_the_window_loses_nothing() {
    let packets = encode_opus(&multitone(3.0, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&packets, 7, SSRC);
    // The first two swapped (the stream must start from the older one), then every
    // packet delayed by up to 40 ms at random, which reorders plenty of neighbours.
    arrivals[0].at = ms(5);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for a in &mut arrivals[2..] {
        a.at += ms(rng.gen_range(0..=40));
    }
    let mut sorted = arrivals.clone();
    sorted.sort_by_key(|a| a.at);
    let reordered = sorted
        .windows(2)
        .filter(|w| w[0].bytes[2..4] > w[1].bytes[2..4])
        .count();
    assert!(reordered > 10, "only {reordered} reorderings");

    let mut h = Harness::new(config());
    h.run(&arrivals, ms(149 * 20));
    let stats = h.rx.stats();
    assert_eq!(
        (stats.lost, stats.late, stats.duplicate),
        (0, 0, 0),
        "{stats:?}"
    );
    assert!(h.frames.len() >= 145);
    assert_same(&h.pcm(), &reference_decode(&all(&packets)));
}

#[test]
fn a_gap_is_concealed_by_exactly_one_frame() {
    let packets = encode_opus(&multitone(2.0, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&packets, 500, SSRC);
    arrivals.remove(20);
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(99 * 20 + 40));
    let mut with_loss = all(&packets);
    with_loss[20] = None;
    let want = reference_decode(&with_loss);
    assert_same(&h.pcm(), &want);
    assert_eq!(h.frames.len(), 99);
    // Opus concealment, not silence.
    let concealed = &h.frames[20].1;
    assert!(concealed.iter().any(|s| s.abs() > 0.01));
    let stats = h.rx.stats();
    assert_eq!((stats.lost, stats.late, stats.accepted), (1, 0, 99));
}

#[test]
fn duplicates_and_late_packets_are_counted_and_dropped() {
    let packets = encode_opus(&multitone(2.0, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&packets, 60_000, SSRC);
    // Packet 15 twice while it is held, packet 25 again long after it was played,
    // packet 40 100 ms late: past its turn at 60 + 40 × 20 ms.
    let mut dup_held = arrivals[15].clone();
    dup_held.at += ms(3);
    let mut dup_played = arrivals[25].clone();
    dup_played.at += ms(300);
    arrivals[40].at += ms(100);
    arrivals.push(dup_held);
    arrivals.push(dup_played);

    let mut h = Harness::new(config());
    h.run(&arrivals, ms(99 * 20 + 40));
    let stats = h.rx.stats();
    assert_eq!(
        (stats.duplicate, stats.late, stats.lost, stats.accepted),
        (2, 1, 1, 99),
        "{stats:?}"
    );
    assert_eq!(stats.packets, 102);
    let mut want = all(&packets);
    want[40] = None;
    assert_same(&h.pcm(), &reference_decode(&want));
}

#[test]
fn sequence_numbers_wrap_around_mid_stream() {
    let packets = encode_opus(&multitone(2.0, 48_000), FRAME_SAMPLES);
    // 65500 + 36 wraps to 0 in the middle of the stream; a late packet from before
    // the wrap must still be told apart.
    let mut arrivals = paced(&packets, 65_500, SSRC);
    arrivals[35].at += ms(50); // 65535, arriving after 0 and 1: reordered, not lost
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(99 * 20 + 40));
    let stats = h.rx.stats();
    assert_eq!(
        (stats.lost, stats.late, stats.accepted),
        (0, 0, 100),
        "{stats:?}"
    );
    assert_same(&h.pcm(), &reference_decode(&all(&packets)));
    assert_eq!(h.frames.len(), 99);
}

#[test]
fn an_ssrc_change_resets_buffer_and_decoder() {
    let a = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let b = encode_opus(&tone(523.0, 0.4, 48_000, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&a, 100, SSRC);
    // The encoder restarts: new SSRC and numbering, 20 ms after the old one's last.
    arrivals.extend(paced(&b, 40_000, 0xB0B).into_iter().map(|mut p| {
        p.at += ms(1_000);
        p
    }));
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(1_000 + 49 * 20 + 40));

    let stats = h.rx.stats();
    // The first two of B come while A was heard less than jitter_delay ago.
    assert_eq!(stats.foreign_ssrc, 2);
    assert_eq!(stats.accepted, 50 + 48);
    let pcm = h.pcm();
    // A until B takes over at 1040 ms (A's packet 49 was still waiting and is dropped
    // with the buffer), then B after its own reorder window, from a fresh decoder:
    // bit-identical to decoding B from its third packet.
    let a_frames = h.frames.iter().filter(|(at, _)| *at < ms(1_040)).count();
    assert_eq!(a_frames, 49);
    assert_same(
        &pcm[..a_frames * FRAME_SAMPLES],
        &reference_decode(&all(&a)),
    );
    assert!(h.frames[a_frames].0 == ms(1_100));
    assert_same(
        &pcm[a_frames * FRAME_SAMPLES..],
        &reference_decode(&all(&b[2..])),
    );
    assert!(pcm.len() - a_frames * FRAME_SAMPLES >= 40 * FRAME_SAMPLES);
    // Still the same broadcast: no new Receiving.
    assert_eq!(h.events, vec![(Duration::ZERO, receiving())]);
}

#[test]
fn non_allowlisted_sources_are_dropped_unparsed() {
    let intruder: SocketAddr = "10.20.30.41:5004".parse().unwrap();
    let packets = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let noise = encode_opus(&tone(1_000.0, 0.5, 48_000, 48_000), FRAME_SAMPLES);

    // Alone, the intruder gets nothing through, and even garbage is not "malformed":
    // it is never parsed.
    let mut h = Harness::new(config());
    let mut attack: Vec<Arrival> = paced(&noise, 0, 0xBAD)
        .into_iter()
        .map(|a| Arrival {
            from: intruder,
            ..a
        })
        .collect();
    attack.push(Arrival {
        at: ms(3),
        from: intruder,
        bytes: vec![0xFF; 7],
    });
    h.run(&attack, ms(3_000));
    let stats = h.rx.stats();
    assert!(h.frames.is_empty() && h.events.is_empty());
    assert_eq!(stats.rejected_source, 51);
    assert_eq!(stats.packets, 51);
    assert_eq!((stats.malformed, stats.accepted), (0, 0));
    assert_eq!(stats.last_rejected_source, Some(intruder));
    assert_eq!(h.rx.poll_timeout(), None);

    // Interleaved with the studio, it changes nothing in what is played.
    let mut h = Harness::new(config());
    let mut mixed = paced(&packets, 0, SSRC);
    mixed.extend(attack.iter().cloned().map(|mut a| {
        a.at += ms(7);
        a
    }));
    h.run(&mixed, ms(49 * 20 + 40));
    assert_same(&h.pcm(), &reference_decode(&all(&packets)));
    assert_eq!(h.frames.len(), 49);
    assert_eq!(h.rx.stats().rejected_source, 51);
    assert_eq!(h.rx.stats().foreign_ssrc, 0);
    assert_eq!(h.events, vec![(Duration::ZERO, receiving())]);
}

#[test]
fn ipv4_mapped_addresses_match_the_allowlist() {
    let mut rx = LiveRtpReceiver::new(config()).unwrap();
    let mapped: SocketAddr = "[::ffff:10.20.30.40]:5004".parse().unwrap();
    let packet = &encode_opus(&multitone(0.02, 48_000), FRAME_SAMPLES)[0];
    rx.handle_packet(Instant::now(), mapped, &rtp(PT_OPUS, 1, 0, SSRC, packet));
    assert_eq!(rx.stats().accepted, 1);
}

fn test_key(byte: u8) -> MasterKey {
    MasterKey::from_bytes(&[byte; crate::ingest::srtp::MASTER_LEN])
}

fn srtp_config(byte: u8) -> LiveRtpConfig {
    LiveRtpConfig {
        srtp: Some(test_key(byte)),
        ..config()
    }
}

/// `arrivals` as a sender holding `key` sends them.
fn protected(arrivals: &[Arrival], key: &MasterKey) -> Vec<Arrival> {
    let mut sender = crate::ingest::srtp::SrtpSender::new(key);
    arrivals
        .iter()
        .map(|a| Arrival {
            bytes: sender.protect(&a.bytes).unwrap(),
            ..a.clone()
        })
        .collect()
}

#[test]
fn with_a_key_srtp_plays_and_plain_rtp_is_not_authenticated() {
    let packets = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let plain = paced(&packets, 65_500, SSRC);

    let mut h = Harness::new(srtp_config(7));
    h.run(&protected(&plain, &test_key(7)), ms(49 * 20 + 40));
    assert_same(&h.pcm(), &reference_decode(&all(&packets)));
    let stats = h.rx.stats();
    assert_eq!((stats.accepted, stats.not_authenticated), (50, 0));

    // Plain RTP, and SRTP under another key, from the allowlisted address.
    for arrivals in [plain.clone(), protected(&plain, &test_key(8))] {
        let mut h = Harness::new(srtp_config(7));
        h.run(&arrivals, ms(3_000));
        let stats = h.rx.stats();
        assert!(h.frames.is_empty() && h.events.is_empty());
        assert_eq!((stats.not_authenticated, stats.accepted), (50, 0));
        assert_eq!(stats.sorted(), stats.packets);
    }
}

#[test]
fn with_a_key_replayed_and_altered_packets_are_dropped() {
    let packets = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let genuine = protected(&paced(&packets, 0, SSRC), &test_key(7));
    // An altered copy of each packet just before it (so that the forgery must not
    // spoil the genuine packet), and the genuine packet again 5 ms later.
    let mut arrivals = Vec::new();
    for a in &genuine {
        let mut bytes = a.bytes.clone();
        let in_payload = bytes.len() - 15;
        bytes[in_payload] ^= 0x80;
        arrivals.push(Arrival { bytes, ..a.clone() });
        arrivals.push(a.clone());
        arrivals.push(Arrival {
            at: a.at + ms(5),
            ..a.clone()
        });
    }
    let mut h = Harness::new(srtp_config(7));
    h.run(&arrivals, ms(49 * 20 + 40));
    assert_same(&h.pcm(), &reference_decode(&all(&packets)));
    let stats = h.rx.stats();
    assert_eq!(
        (stats.accepted, stats.replayed, stats.not_authenticated),
        (50, 50, 50)
    );
    assert_eq!(stats.sorted(), stats.packets);
}

#[test]
fn the_allowlist_applies_before_srtp() {
    let packets = encode_opus(&multitone(0.2, 48_000), FRAME_SAMPLES);
    let intruder: SocketAddr = "10.20.30.41:5004".parse().unwrap();
    let arrivals: Vec<Arrival> = protected(&paced(&packets, 0, SSRC), &test_key(7))
        .into_iter()
        .map(|a| Arrival {
            from: intruder,
            ..a
        })
        .collect();
    let mut h = Harness::new(srtp_config(7));
    h.run(&arrivals, ms(1_000));
    let stats = h.rx.stats();
    assert_eq!((stats.rejected_source, stats.accepted), (10, 0));
    assert_eq!(stats.not_authenticated, 0, "never even checked");
}

/// `arrivals` as a sender holding `key` sends them after its sequence number wrapped
/// `wraps` times (each wrap shown to it by a packet at 65 535 and one at 0), as a
/// studio on air for hours before the server (re)started would.
fn protected_after_wraps(arrivals: &[Arrival], key: &MasterKey, wraps: u32) -> Vec<Arrival> {
    let mut sender = crate::ingest::srtp::SrtpSender::new(key);
    for _ in 0..wraps {
        for seq in [u16::MAX, 0] {
            sender.protect(&rtp(PT_OPUS, seq, 0, SSRC, b"x")).unwrap();
        }
    }
    arrivals
        .iter()
        .map(|a| Arrival {
            bytes: sender.protect(&a.bytes).unwrap(),
            ..a.clone()
        })
        .collect()
}

#[test]
fn a_freshly_started_input_plays_srtp_whose_sequence_number_wrapped_long_ago() {
    let packets = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    // One wrap: found with the first packet, so everything plays.
    let mut h = Harness::new(srtp_config(7));
    h.run(
        &protected_after_wraps(&paced(&packets, 100, SSRC), &test_key(7), 1),
        ms(49 * 20 + 100),
    );
    let want = reference_decode(&all(&packets));
    let got = h.pcm();
    assert!(got.len() >= want.len(), "{} < {}", got.len(), want.len());
    assert_same(&got[..want.len()], &want);
    let stats = h.rx.stats();
    assert_eq!((stats.accepted, stats.not_authenticated), (50, 0));

    // 40 000 wraps (two years of 20 ms packets) is beyond what the first packet tries:
    // found within a sweep of sequence numbers (1 024 packets), then it plays.
    let packets = encode_opus(&multitone(21.0, 48_000), FRAME_SAMPLES);
    let mut h = Harness::new(srtp_config(7));
    h.run(
        &protected_after_wraps(&paced(&packets, 0, SSRC), &test_key(7), 40_000),
        ms(1_049 * 20 + 100),
    );
    let stats = h.rx.stats();
    let refused = stats.not_authenticated as usize;
    assert!((1..1_024).contains(&refused), "{refused} refused");
    assert_eq!(stats.accepted as usize, 1_050 - refused);
    let want = reference_decode(&all(&packets[refused..]));
    let got = h.pcm();
    assert!(got.len() >= want.len(), "{} < {}", got.len(), want.len());
    assert_same(&got[..want.len()], &want);
}

fn opus_payload() -> &'static [u8] {
    static PACKET: OnceLock<Vec<u8>> = OnceLock::new();
    PACKET.get_or_init(|| encode_opus(&multitone(0.02, 48_000), FRAME_SAMPLES).remove(0))
}

#[test]
fn malformed_packets_are_counted_and_dropped() {
    let good = rtp(PT_OPUS, 1, 0, SSRC, opus_payload());
    let mut v1 = good.clone();
    v1[0] = (v1[0] & 0x3F) | 0x40; // version 1
                                   // Padding flag set, and the last byte claims more padding than the packet holds.
    let mut padded_wrong = rtp(PT_OPUS, 1, 0, SSRC, &[0xF8, 1, 2, 3]);
    padded_wrong[0] |= 0x20;
    *padded_wrong.last_mut().unwrap() = 200;
    let mut csrc_overrun = good[..16].to_vec();
    csrc_overrun[0] |= 0x0F; // 15 CSRCs announced, none there
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("truncated header", good[..7].to_vec()),
        ("version 1", v1),
        ("bad padding", padded_wrong),
        ("CSRC overrun", csrc_overrun),
        ("unknown payload type", rtp(0, 2, 0, SSRC, opus_payload())),
        (
            "L16 type that is not configured",
            rtp(95, 3, 0, SSRC, &[0; 4]),
        ),
        ("empty Opus payload", rtp(PT_OPUS, 4, 0, SSRC, &[])),
        // Code 3 TOC announcing 63 frames of 20 ms: 1.26 s, and no frame data.
        (
            "bogus Opus framing",
            rtp(PT_OPUS, 5, 0, SSRC, &[0xFB, 0xFF]),
        ),
        ("odd L16 length", rtp(11, 6, 0, SSRC, &[1, 2, 3])),
        ("L16 stereo, half a frame", rtp(10, 7, 0, SSRC, &[1, 2])),
    ];
    let mut rx = LiveRtpReceiver::new(config()).unwrap();
    let now = Instant::now();
    for (i, (name, bytes)) in cases.iter().enumerate() {
        rx.handle_packet(now, studio(), bytes);
        assert_eq!(rx.stats().malformed, i as u64 + 1, "{name} not counted");
    }
    assert!(rx.poll_frame(now + ms(1_000)).is_none());
    assert_eq!(rx.poll_event(), None);
    let stats = rx.stats();
    assert_eq!(stats.accepted, 0);
    assert_eq!(stats.sorted(), stats.packets);
    rx.handle_packet(now, studio(), &good);
    assert_eq!(
        rx.stats().accepted,
        1,
        "a good packet after bad ones still plays"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut rx = LiveRtpReceiver::new(config()).unwrap();
        let now = Instant::now();
        rx.handle_packet(now, studio(), &bytes);
        let _ = rx.poll_frame(now + ms(100));
        let _ = rx.poll_frame(now + ms(10_000));
        let s = rx.stats();
        prop_assert_eq!(s.sorted(), 1);
    }
}

proptest! {

    /// Valid-looking RTP with random header fields: the state machine must survive
    /// any order, jump, SSRC mix and payload, and account for every packet.
    #[test]
    fn random_headers_never_panic(
        packets in proptest::collection::vec(
            (0u64..120, any::<u16>(), 0u8..3, prop_oneof![Just(PT_OPUS), Just(10u8), Just(11u8), any::<u8>()], 0usize..4),
            1..80,
        ),
    ) {
        let payloads: [&[u8]; 4] = [opus_payload(), &[0u8; 1764], &[0x12u8; 882], &[]];
        let mut t = Duration::ZERO;
        let arrivals: Vec<Arrival> = packets
            .iter()
            .map(|&(dt, seq, ssrc, pt, payload)| {
                t += ms(dt);
                Arrival {
                    at: t,
                    from: studio(),
                    bytes: rtp(pt & 0x7F, seq, 0, u32::from(ssrc), payloads[payload]),
                }
            })
            .collect();
        let mut h = Harness::new(config());
        h.run(&arrivals, t + ms(6_000));
        let s = h.rx.stats();
        prop_assert_eq!(s.sorted(), s.packets);
        prop_assert_eq!(s.packets, packets.len() as u64);
        // Everything ends: nothing is left once the no-packet timeout has passed.
        prop_assert_eq!(h.rx.poll_timeout(), None);
    }
}

#[test]
fn no_packet_timeout_fires_on_time_and_not_before() {
    let packets = encode_opus(&multitone(0.2, 48_000), FRAME_SAMPLES);
    let mut h = Harness::new(LiveRtpConfig {
        no_packet_timeout: ms(2_500),
        ..config()
    });
    let mut arrivals = paced(&packets, 9, SSRC);
    // After a pause, the studio comes back: a new broadcast.
    arrivals.extend(paced(&packets, 9_000, SSRC).into_iter().map(|mut a| {
        a.at += ms(10_000);
        a
    }));
    h.run(&arrivals, ms(20_000));
    let ended = LiveEvent::Ended {
        reason: EndReason::NoPackets,
    };
    assert_eq!(
        h.events,
        vec![
            (Duration::ZERO, receiving()),
            (ms(180 + 2_500), ended),
            (ms(10_000), receiving()),
            (ms(10_180 + 2_500), ended),
        ]
    );
    // The same with explicit polls a nanosecond either side.
    let mut rx = LiveRtpReceiver::new(config()).unwrap();
    let t0 = Instant::now();
    rx.handle_packet(t0, studio(), &rtp(PT_OPUS, 1, 0, SSRC, opus_payload()));
    assert_eq!(rx.poll_event(), Some(receiving()));
    while rx.poll_frame(t0 + ms(200)).is_some() {}
    assert_eq!(rx.poll_timeout(), Some(t0 + ms(5_000)));
    rx.handle_timeout(t0 + ms(5_000) - Duration::from_nanos(1));
    assert_eq!(rx.poll_event(), None);
    rx.handle_timeout(t0 + ms(5_000));
    assert_eq!(rx.poll_event(), Some(ended));
    assert_eq!(rx.poll_timeout(), None);
}

#[test]
fn silence_timeout_ends_the_broadcast_until_sound_returns() {
    let silence = encode_opus(&vec![0.0; 48_000 * 32], FRAME_SAMPLES);
    let speech = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&silence, 0, SSRC);
    arrivals.extend(
        paced(&speech, silence.len() as u16, SSRC)
            .into_iter()
            .map(|mut a| {
                a.at += ms(20 * silence.len() as u64);
                a
            }),
    );
    // Default config: 30 s at -50 dBFS.
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(33_000));
    let ended = LiveEvent::Ended {
        reason: EndReason::Silence,
    };
    // 1500 silent frames = 30 s, the first released at 60 ms.
    let first_frame = ms(60);
    let at_timeout = first_frame + ms(1_499 * 20);
    assert_eq!(
        h.events[..2],
        [(Duration::ZERO, receiving()), (at_timeout, ended)]
    );
    let before = h.frames.iter().filter(|(at, _)| *at <= at_timeout).count();
    assert_eq!(before, 1_500);
    // Frames of the first sound: released 32 s + 60 ms in, and with them the air again.
    let resumed = ms(32_000 + 60);
    assert_eq!(h.events[2..], [(resumed, receiving())]);
    assert_eq!(h.frames[1_500].0, resumed);
    assert!(h.frames.iter().skip(1_500).all(|(at, _)| *at >= resumed));
    assert!(h.frames.len() >= 1_500 + 45);

    // Zero disables the rule.
    let mut h = Harness::new(LiveRtpConfig {
        silence_timeout: Duration::ZERO,
        ..config()
    });
    h.run(&arrivals[..1_600], ms(31_000));
    assert_eq!(h.events, vec![(Duration::ZERO, receiving())]);
    assert!(h.frames.len() >= 1_540);
}

/// Frequency of a sine by counting rising zero crossings over whole seconds.
fn measured_frequency(x: &[f32]) -> f64 {
    let crossings = x.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
    crossings as f64 * 48_000.0 / x.len() as f64
}

fn l16_packets(pcm_interleaved: &[i16], channels: usize, per_packet: usize) -> Vec<Vec<u8>> {
    pcm_interleaved
        .chunks(per_packet * channels)
        .map(|c| c.iter().flat_map(|s| s.to_be_bytes()).collect())
        .collect()
}

#[test]
fn l16_at_44k1_stereo_becomes_48k_mono_at_the_right_pitch() {
    // 1 kHz on the left, nothing on the right: pitch shows the resampling, level
    // the downmix. Unresampled it would play at 918.75 Hz.
    let left = tone(1_000.0, 0.8, 44_100 * 2, 44_100);
    let interleaved: Vec<i16> = left
        .iter()
        .flat_map(|&s| [(s * 32_767.0) as i16, 0])
        .collect();
    let packets = l16_packets(&interleaved, 2, 882);
    let arrivals: Vec<Arrival> = packets
        .iter()
        .enumerate()
        .map(|(k, p)| Arrival {
            at: ms(20 * k as u64),
            from: studio(),
            bytes: rtp(10, k as u16, (k * 882) as u32, SSRC, p),
        })
        .collect();
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(2_000));
    let pcm = h.pcm();
    assert!(pcm.len() >= 90 * FRAME_SAMPLES, "{} samples", pcm.len());
    let steady = &pcm[4_800..4_800 + 48_000];
    let f = measured_frequency(steady);
    assert!((f - 1_000.0).abs() < 2.0, "pitch {f} Hz");
    let peak = steady.iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.4).abs() < 0.01, "peak {peak}");
    assert_eq!(h.rx.stats().malformed, 0);
    assert_eq!(h.rx.stats().lost, 0);
}

#[test]
fn l16_any_rate_and_channel_count_when_configured() {
    // 16 kHz, three channels, in 10 ms packets on dynamic type 98 (which would otherwise
    // be Opus).
    let ch = tone(440.0, 0.6, 16_000 * 2, 16_000);
    let interleaved: Vec<i16> = ch
        .iter()
        .flat_map(|&s| {
            let v = (s * 32_767.0) as i16;
            [v, v, v]
        })
        .collect();
    let packets = l16_packets(&interleaved, 3, 160);
    let arrivals: Vec<Arrival> = packets
        .iter()
        .enumerate()
        .map(|(k, p)| Arrival {
            at: ms(10 * k as u64),
            from: studio(),
            bytes: rtp(98, k as u16, (k * 160) as u32, SSRC, p),
        })
        .collect();
    let mut h = Harness::new(LiveRtpConfig {
        l16: vec![L16Format {
            payload_type: 98,
            rate: 16_000,
            channels: 3,
        }],
        ..config()
    });
    h.run(&arrivals, ms(2_000));
    let pcm = h.pcm();
    let f = measured_frequency(&pcm[4_800..4_800 + 48_000]);
    assert!((f - 440.0).abs() < 1.5, "pitch {f} Hz");
    let peak = pcm[4_800..52_800].iter().fold(0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.6).abs() < 0.01, "peak {peak}");
    // The resampler's 64 ms blocks exceed the 60 ms window: without the extra start
    // delay, packets would be concealed before they were due and then dropped as late.
    let stats = h.rx.stats();
    assert_eq!(
        (stats.malformed, stats.lost, stats.late),
        (0, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn opus_packets_of_any_duration_are_rechunked_into_20ms_frames() {
    for frame in [120usize, 240, 480, 1_920, 2_880] {
        let pcm = multitone(2.0, 48_000);
        let packets = encode_opus(&pcm, frame);
        let arrivals: Vec<Arrival> = packets
            .iter()
            .enumerate()
            .map(|(k, p)| Arrival {
                // Real time: packet k covers k × frame / 48 kHz onwards.
                at: Duration::from_micros((k * frame) as u64 * 1_000 / 48),
                from: studio(),
                bytes: rtp(PT_OPUS, k as u16, (k * frame) as u32, SSRC, p),
            })
            .collect();
        let mut h = Harness::new(config());
        h.run(&arrivals, ms(1_900));
        let stats = h.rx.stats();
        assert_eq!((stats.lost, stats.malformed), (0, 0), "{frame}: {stats:?}");
        assert!(h.frames.len() >= 90, "{frame}: {} frames", h.frames.len());
        assert_same(&h.pcm(), &reference_decode(&all(&packets)));

        // One packet lost: concealed for exactly its own duration, which is what keeps
        // libopus in step with the packets after it.
        let gap = packets.len() / 3;
        let mut arrivals = arrivals;
        arrivals.remove(gap);
        let mut h = Harness::new(config());
        h.run(&arrivals, ms(1_900));
        assert_eq!(h.rx.stats().lost, 1, "{frame}");
        let mut with_loss = all(&packets);
        with_loss[gap] = None;
        assert_same(&h.pcm(), &reference_decode(&with_loss));
    }
}

#[test]
fn a_long_burst_is_trimmed_to_bounded_latency() {
    // Three seconds arrive at once (a sender that buffered while the link was down).
    let packets = encode_opus(&multitone(3.0, 48_000), FRAME_SAMPLES);
    let mut arrivals = paced(&packets, 0, SSRC);
    for a in &mut arrivals {
        a.at = Duration::ZERO;
    }
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(4_000));
    let stats = h.rx.stats();
    // Everything past jitter_delay + 1 s of waiting audio goes.
    let skipped = stats.frames_skipped;
    assert!((90..=100).contains(&skipped), "skipped {skipped}");
    // Every packet was either played or skipped; the rest is end-of-stream concealment.
    let played = stats.frames_out - stats.lost;
    assert_eq!(played + skipped, 150);
    // And the end of the burst is heard ~1 s after it arrived, not 3 s.
    let last_sound = h.frames[played as usize - 1].0;
    assert!(last_sound <= ms(1_200), "{last_sound:?}");
}

#[test]
fn catch_up_skips_silent_frames_only() {
    // ffmpeg-style start: half a second at once (0.3 s of silence then sound), then
    // real time. The excess is taken out of the silence; no sound frame is lost.
    let mut pcm = vec![0.0f32; 48_000 * 3 / 10];
    pcm.extend(multitone(2.0, 48_000));
    let packets = encode_opus(&pcm, FRAME_SAMPLES);
    let mut arrivals = paced(&packets, 0, SSRC);
    for a in &mut arrivals[..25] {
        a.at = Duration::ZERO;
    }
    for a in &mut arrivals[25..] {
        a.at -= ms(500);
    }
    let mut h = Harness::new(config());
    h.run(&arrivals, ms(1_800));
    let want = reference_decode(&all(&packets));
    let want_frames: Vec<&[f32]> = want.chunks(FRAME_SAMPLES).collect();
    let threshold = mean_square_threshold(-50.0);
    // The output is the reference with some silent frames taken out.
    let mut k = 0;
    let mut skipped = Vec::new();
    for (_, got) in &h.frames {
        while want_frames[k] != &got[..] {
            skipped.push(k);
            k += 1;
            assert!(k < want_frames.len(), "output frame not in the reference");
        }
        k += 1;
    }
    let stats = h.rx.stats();
    assert_eq!(skipped.len() as u64, stats.frames_skipped);
    assert!(skipped.len() >= 5, "skipped {skipped:?}");
    for &i in &skipped {
        assert!(
            is_silent(want_frames[i], threshold),
            "sound frame {i} skipped"
        );
    }
}

#[test]
fn config_is_checked() {
    let bad = |c: LiveRtpConfig| LiveRtpReceiver::new(c).unwrap_err();
    assert_eq!(
        bad(LiveRtpConfig {
            opus_payload_types: vec![128],
            ..config()
        }),
        LiveConfigError::PayloadType(128)
    );
    let l16 = |payload_type, rate, channels| L16Format {
        payload_type,
        rate,
        channels,
    };
    assert!(matches!(
        bad(LiveRtpConfig {
            l16: vec![l16(100, 1, 1)],
            ..config()
        }),
        LiveConfigError::L16 { .. }
    ));
    assert!(matches!(
        bad(LiveRtpConfig {
            l16: vec![l16(100, 48_000, 0)],
            ..config()
        }),
        LiveConfigError::L16 { .. }
    ));
    assert_eq!(
        bad(LiveRtpConfig {
            l16: vec![l16(100, 48_000, 1), l16(100, 8_000, 1)],
            ..config()
        }),
        LiveConfigError::DuplicateL16(100)
    );
    assert!(matches!(
        bad(LiveRtpConfig {
            no_packet_timeout: Duration::ZERO,
            ..config()
        }),
        LiveConfigError::NoPacketTimeout(_)
    ));
    assert!(matches!(
        bad(LiveRtpConfig {
            silence_threshold_dbfs: f32::NAN,
            ..config()
        }),
        LiveConfigError::SilenceThreshold(_)
    ));
    assert!(matches!(
        bad(LiveRtpConfig {
            jitter_delay: Duration::from_secs(60),
            ..config()
        }),
        LiveConfigError::JitterDelay(_)
    ));
    // Empty allowlist is valid and lets nobody in.
    let mut rx = LiveRtpReceiver::new(LiveRtpConfig::default()).unwrap();
    rx.handle_packet(
        Instant::now(),
        studio(),
        &rtp(PT_OPUS, 1, 0, 1, opus_payload()),
    );
    assert_eq!(rx.stats().rejected_source, 1);
}

#[test]
fn warnings_are_rate_limited() {
    let t0 = Instant::now();
    let mut w = WarnLimiter::default();
    assert_eq!(w.check(t0), Some(0));
    for s in 1..10 {
        assert_eq!(w.check(t0 + Duration::from_secs(s)), None);
    }
    assert_eq!(w.check(t0 + WARN_INTERVAL), Some(9));
    assert_eq!(w.check(t0 + WARN_INTERVAL), None);
}

#[test]
fn receiver_and_stats_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    fn assert_sync<T: Send + Sync>() {}
    assert_send::<LiveRtpReceiver>();
    assert_sync::<LiveStatsHandle>();
}

// --- The async runner on real sockets -------------------------------------------

struct Running {
    stats: Arc<LiveStatsHandle>,
    frames: mpsc::Receiver<Box<PcmFrame>>,
    events: mpsc::Receiver<LiveEvent>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<LiveStats>,
    port: u16,
}

async fn start(config: LiveRtpConfig, capacity: usize) -> Running {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let receiver = LiveRtpReceiver::new(config).unwrap();
    let stats = receiver.stats_handle();
    let (frame_tx, frames) = mpsc::channel(capacity);
    let (event_tx, events) = mpsc::channel(16);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(run_live_rtp(socket, receiver, frame_tx, event_tx, async {
        let _ = stopped.await;
    }));
    Running {
        stats,
        frames,
        events,
        stop,
        task,
        port,
    }
}

impl Running {
    async fn stop(self) -> (LiveStats, Vec<f32>, Vec<LiveEvent>) {
        let _ = self.stop.send(());
        let stats = self.task.await.unwrap();
        let mut frames = self.frames;
        let mut pcm = Vec::new();
        while let Ok(f) = frames.try_recv() {
            pcm.extend_from_slice(&f[..]);
        }
        let mut events = self.events;
        let mut ev = Vec::new();
        while let Ok(e) = events.try_recv() {
            ev.push(e);
        }
        (stats, pcm, ev)
    }
}

fn loopback_config() -> LiveRtpConfig {
    LiveRtpConfig {
        allow: vec!["127.0.0.1".parse().unwrap()],
        ..LiveRtpConfig::default()
    }
}

/// Sends `packets` at once. The receiver holds them in sequence order and releases one
/// frame per 20 ms, so none can be late however slowly this task gets to run on a loaded
/// machine (a paced sender that stalled would make its next packets late); pacing and
/// lateness are the sans-IO tests' subject.
async fn send_all(port: u16, packets: &[Vec<u8>]) -> SocketAddr {
    let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for (k, p) in packets.iter().enumerate() {
        let bytes = rtp(PT_OPUS, k as u16, (k * 960) as u32, SSRC, p);
        tx.send_to(&bytes, ("127.0.0.1", port)).await.unwrap();
    }
    tx.local_addr().unwrap()
}

/// Polls the live counters (readable while the runner runs) until `done` holds; panics
/// with `what` and the counters after a deadline far beyond any machine's load.
async fn wait_for_stats(
    stats: &LiveStatsHandle,
    what: &str,
    done: impl Fn(&LiveStats) -> bool,
) -> LiveStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = stats.snapshot();
        if done(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within 60 s; {now:?}"
        );
        tokio::time::sleep(ms(5)).await;
    }
}

#[tokio::test]
async fn runner_delivers_frames_events_and_live_stats() {
    let packets = encode_opus(&multitone(1.0, 48_000), FRAME_SAMPLES);
    let run = start(loopback_config(), 256).await;
    let stats = Arc::clone(&run.stats);
    let from = send_all(run.port, &packets[..25]).await;
    // Readable while running: every packet counted, then every frame released.
    wait_for_stats(&stats, "25 packets accepted", |s| s.accepted == 25).await;
    wait_for_stats(&stats, "25 frames released", |s| s.frames_out >= 25).await;
    let (final_stats, pcm, events) = run.stop().await;
    assert_eq!(
        events,
        vec![LiveEvent::Receiving {
            from: LiveSource::Rtp(from)
        }]
    );
    // Every packet's frame, and perhaps some concealment after the last.
    assert!(pcm.len() >= 25 * FRAME_SAMPLES, "{}", pcm.len());
    assert_same(
        &pcm[..25 * FRAME_SAMPLES],
        &reference_decode(&all(&packets[..25])),
    );
    assert_eq!(final_stats.frames_dropped, 0);
    assert_eq!(final_stats.packets, 25);
}

#[tokio::test]
async fn a_full_frame_channel_drops_instead_of_blocking() {
    let packets = encode_opus(&multitone(0.6, 48_000), FRAME_SAMPLES);
    let run = start(loopback_config(), 2).await;
    send_all(run.port, &packets).await;
    // Nobody reads the channel: every packet is still handled and its frame released
    // (and dropped), rather than the runner waiting for room.
    wait_for_stats(&run.stats, "30 frames released", |s| {
        s.accepted == 30 && s.frames_out >= 30
    })
    .await;
    let (stats, pcm, _) = run.stop().await;
    assert_eq!(pcm.len(), 2 * FRAME_SAMPLES);
    assert!(stats.frames_dropped >= 25, "{stats:?}");
    assert_eq!(stats.frames_out, stats.frames_dropped + 2);
    assert_eq!(stats.accepted, 30);
}

// --- With ffmpeg as the studio encoder ------------------------------------------

/// Vietnamese speech from espeak-ng at 48 kHz mono, or a multi-tone signal where
/// espeak-ng is missing (a skip, counted: `make test` refuses it). Returns the file and its
/// samples.
pub(crate) fn speech_wav(dir: &std::path::Path) -> (std::path::PathBuf, Vec<f32>) {
    let path = dir.join("speech.wav");
    let raw = dir.join("speech_raw.wav");
    if radio_test_tools::require_tool("espeak-ng") {
        let spoke = std::process::Command::new("espeak-ng")
            .args(["-v", "vi", "-w"])
            .arg(&raw)
            .arg("Xin chào bà con huyện Bình Sơn. Hôm nay là lễ chào cờ đầu tháng.")
            .status()
            .unwrap();
        assert!(spoke.success(), "espeak-ng failed: {spoke}");
        let ok = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(&raw)
            .args(["-ar", "48000", "-ac", "1", "-c:a", "pcm_s16le"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success());
    } else {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for s in multitone(4.0, 48_000) {
            w.write_sample((s * 32_767.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }
    let samples = hound::WavReader::open(&path)
        .unwrap()
        .samples::<i16>()
        .map(|s| f32::from(s.unwrap()) / 32_768.0)
        .collect();
    (path, samples)
}

/// Best normalised correlation of `output` against `source` over lags 0..max_lag
/// (the output trails the source by codec and resampler delay).
pub(crate) fn aligned_correlation(source: &[f32], output: &[f32], max_lag: usize) -> (usize, f64) {
    let corr = |lag: usize, len: usize| {
        let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
        for (x, y) in source[..len].iter().zip(&output[lag..lag + len]) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            xy += x * y;
            xx += x * x;
            yy += y * y;
        }
        if xx == 0.0 || yy == 0.0 {
            0.0
        } else {
            xy / (xx * yy).sqrt()
        }
    };
    // Find the lag on the first second, then score the whole overlap.
    let probe = 48_000
        .min(source.len())
        .min(output.len().saturating_sub(max_lag));
    assert!(probe > 4_800, "output too short: {} samples", output.len());
    let lag = (0..max_lag)
        .max_by(|&a, &b| corr(a, probe).total_cmp(&corr(b, probe)))
        .unwrap();
    let len = source.len().min(output.len() - lag);
    (lag, corr(lag, len))
}

/// Streams `wav` in real time; returns the SDP ffmpeg wrote for the stream.
async fn ffmpeg_rtp(wav: &std::path::Path, port: u16, args: &[&str], url_query: &str) -> String {
    let sdp = wav.with_extension("sdp");
    // ffmpeg's SRTP is a protocol: the same RTP muxer, written to an srtp:// URL.
    let scheme = if args.contains(&"-srtp_out_suite") {
        "srtp"
    } else {
        "rtp"
    };
    let status = tokio::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(wav)
        .args(args)
        .arg("-sdp_file")
        .arg(&sdp)
        .args(["-f", "rtp"])
        .arg(format!("{scheme}://127.0.0.1:{port}{url_query}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .await
        .unwrap();
    assert!(status.success(), "ffmpeg failed");
    std::fs::read_to_string(sdp).unwrap()
}

struct FfmpegRun {
    stats: LiveStats,
    pcm: Vec<f32>,
    events: Vec<LiveEvent>,
    source: Vec<f32>,
    sdp: String,
}

/// ffmpeg's stream of `speech_wav` through a receiver with `config`; `rate` is the RTP
/// clock of what `args` make ffmpeg send.
async fn ffmpeg_case(
    config: LiveRtpConfig,
    args: &[&str],
    url_query: &str,
    rate: u32,
) -> Option<FfmpegRun> {
    if !radio_test_tools::require_tool("ffmpeg") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (wav, source) = speech_wav(dir.path());
    let (datagrams, sdp) = ffmpeg_capture(&wav, args, url_query).await;
    // Played on the virtual clock, as ffmpeg paced them: what ffmpeg sends is the subject
    // here. Played as they arrived, the stalls of a loaded machine (of ffmpeg, which then
    // catches up in a burst, or of a receiving task) made packets late or the catch-up
    // skip silent frames. The runner on a real socket is the runner tests' subject.
    let arrivals = arrivals_at_their_timestamps(&datagrams, rate);
    let last = arrivals.last().map_or(Duration::ZERO, |a| a.at);
    let end = last + config.no_packet_timeout + ms(1_000);
    let mut h = Harness::new(config);
    h.run(&arrivals, end);
    Some(FfmpegRun {
        stats: h.rx.stats(),
        pcm: h.pcm(),
        events: h.events.into_iter().map(|(_, e)| e).collect(),
        source,
        sdp,
    })
}

/// Streams `wav` in real time to a capturing socket; returns every datagram ffmpeg sent,
/// with its source, and the SDP ffmpeg wrote.
async fn ffmpeg_capture(
    wav: &std::path::Path,
    args: &[&str],
    url_query: &str,
) -> (Vec<(SocketAddr, Vec<u8>)>, String) {
    // Room for the whole clip: a capture held up by a loaded machine loses nothing.
    let (socket, _) =
        crate::link::udp_socket::bind("127.0.0.1:0".parse().unwrap(), 8 << 20, false).unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = UdpSocket::from_std(socket).unwrap();
    let port = socket.local_addr().unwrap().port();
    // Bound before ffmpeg starts, so that ffmpeg (from 127.0.0.2 in the allowlist case)
    // cannot be given its address.
    let marker = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let marker_from = marker.local_addr().unwrap();
    let capture = tokio::spawn(async move {
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = socket.recv_from(&mut buf).await.unwrap();
            if from == marker_from {
                return datagrams;
            }
            datagrams.push((from, buf[..n].to_vec()));
        }
    });
    let sdp = ffmpeg_rtp(wav, port, args, url_query).await;
    // Queued behind every datagram ffmpeg sent: once it is read, they all are.
    marker
        .send_to(b"marker", ("127.0.0.1", port))
        .await
        .unwrap();
    let datagrams = tokio::time::timeout(Duration::from_secs(60), capture)
        .await
        .expect("the marker reaches the capture")
        .unwrap();
    (datagrams, sdp)
}

/// `datagrams` as a sender pacing them exactly by their RTP timestamps (`rate` Hz) would
/// deliver them, which is what `ffmpeg -re` does when nothing holds it up. The header is in
/// the clear in SRTP too.
fn arrivals_at_their_timestamps(datagrams: &[(SocketAddr, Vec<u8>)], rate: u32) -> Vec<Arrival> {
    let timestamp = |bytes: &[u8]| {
        RtpReader::new(bytes)
            .unwrap_or_else(|e| panic!("ffmpeg sent something else than RTP: {e:?}"))
            .timestamp()
    };
    let Some((_, first)) = datagrams.first() else {
        return Vec::new();
    };
    let first = timestamp(first);
    datagrams
        .iter()
        .map(|(from, bytes)| Arrival {
            at: Duration::from_secs_f64(
                f64::from(timestamp(bytes).wrapping_sub(first)) / f64::from(rate),
            ),
            from: *from,
            bytes: bytes.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_opus_over_rtp() {
    let Some(FfmpegRun {
        stats,
        pcm,
        events,
        source,
        sdp,
    }) = ffmpeg_case(loopback_config(), &["-c:a", "libopus"], "", 48_000).await
    else {
        return;
    };
    eprintln!("ffmpeg opus: {stats:?}\n{sdp}");
    // A dynamic type (97 with ffmpeg 5.1), covered by the default Opus range.
    assert!(sdp.contains(" opus/48000/2"), "{sdp}");
    let (lag, corr) = aligned_correlation(&source, &pcm, 4_800);
    eprintln!("ffmpeg opus: lag {lag}, correlation {corr:.4}");
    assert!(corr >= 0.9, "correlation {corr}");
    assert_eq!(
        stats.malformed + stats.late + stats.duplicate,
        0,
        "{stats:?}"
    );
    assert!(stats.lost <= u64::from(MAX_CONCEALED_RUN), "{stats:?}");
    assert!(
        matches!(
            events[..],
            [
                LiveEvent::Receiving { .. },
                LiveEvent::Ended {
                    reason: EndReason::NoPackets
                }
            ]
        ),
        "{events:?}"
    );
    assert!(pcm.len() >= source.len() - 2 * FRAME_SAMPLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_l16_over_rtp() {
    let config = LiveRtpConfig {
        l16: vec![L16Format {
            payload_type: 100,
            rate: 48_000,
            channels: 1,
        }],
        ..loopback_config()
    };
    let args = [
        "-c:a",
        "pcm_s16be",
        "-ar",
        "48000",
        "-ac",
        "1",
        "-payload_type",
        "100",
    ];
    let Some(FfmpegRun {
        stats,
        pcm,
        source,
        sdp,
        ..
    }) = ffmpeg_case(config, &args, "", 48_000).await
    else {
        return;
    };
    eprintln!("ffmpeg L16: {stats:?}\n{sdp}");
    assert!(sdp.contains("a=rtpmap:100 L16/48000/1"), "{sdp}");
    let (lag, corr) = aligned_correlation(&source, &pcm, 4_800);
    eprintln!("ffmpeg L16: lag {lag}, correlation {corr:.4}");
    // Lossless and unresampled: the samples themselves come back.
    assert!(corr >= 0.999, "correlation {corr}");
    assert_eq!(lag, 0);
    assert_eq!(stats.malformed + stats.late, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_l16_44k1_stereo_uses_static_payload_type_10() {
    let args = ["-c:a", "pcm_s16be", "-ar", "44100", "-ac", "2"];
    let Some(FfmpegRun {
        stats,
        pcm,
        source,
        sdp,
        ..
    }) = ffmpeg_case(loopback_config(), &args, "", 44_100).await
    else {
        return;
    };
    eprintln!("ffmpeg L16 44.1k: {stats:?}\n{sdp}");
    // The static type: no rtpmap needed, nothing to configure.
    assert!(
        sdp.lines().any(|l| l.trim_end().ends_with(" RTP/AVP 10")),
        "{sdp}"
    );
    let (lag, corr) = aligned_correlation(&source, &pcm, 4_800);
    eprintln!("ffmpeg L16 44.1k: lag {lag}, correlation {corr:.4}");
    assert!(corr >= 0.95, "correlation {corr}");
    assert_eq!(stats.malformed + stats.late, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_from_a_non_allowlisted_address_is_rejected() {
    // Allow 127.0.0.1 only; ffmpeg sends from 127.0.0.2.
    let Some(FfmpegRun {
        stats, pcm, events, ..
    }) = ffmpeg_case(
        loopback_config(),
        &["-c:a", "libopus"],
        "?localaddr=127.0.0.2",
        48_000,
    )
    .await
    else {
        return;
    };
    eprintln!("ffmpeg from 127.0.0.2: {stats:?}");
    assert!(pcm.is_empty());
    assert!(events.is_empty());
    assert!(stats.packets > 100);
    assert_eq!(stats.rejected_source, stats.packets);
    assert_eq!(
        stats.last_rejected_source.map(|a| a.ip()),
        Some("127.0.0.2".parse().unwrap())
    );
}

/// `base64(bytes 0..30)`, what `-srtp_out_params` takes.
const FFMPEG_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd";

fn ffmpeg_key_config() -> LiveRtpConfig {
    let bytes: [u8; crate::ingest::srtp::MASTER_LEN] = std::array::from_fn(|i| i as u8);
    LiveRtpConfig {
        srtp: Some(MasterKey::from_bytes(&bytes)),
        ..loopback_config()
    }
}

fn ffmpeg_srtp_args(key: &str) -> [&str; 6] {
    [
        "-c:a",
        "libopus",
        "-srtp_out_suite",
        "AES_CM_128_HMAC_SHA1_80",
        "-srtp_out_params",
        key,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_srtp_with_the_right_key_is_heard() {
    let Some(FfmpegRun {
        stats, pcm, source, ..
    }) = ffmpeg_case(
        ffmpeg_key_config(),
        &ffmpeg_srtp_args(FFMPEG_KEY),
        "",
        48_000,
    )
    .await
    else {
        return;
    };
    eprintln!("ffmpeg SRTP: {stats:?}");
    let (lag, corr) = aligned_correlation(&source, &pcm, 4_800);
    eprintln!("ffmpeg SRTP: lag {lag}, correlation {corr:.4}");
    assert!(corr >= 0.9, "correlation {corr}");
    assert_eq!(
        stats.not_authenticated + stats.replayed + stats.malformed,
        0,
        "{stats:?}"
    );
    assert!(pcm.len() >= source.len() - 2 * FRAME_SAMPLES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_srtp_with_a_wrong_key_is_not_heard() {
    let wrong = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0e";
    let Some(FfmpegRun {
        stats, pcm, events, ..
    }) = ffmpeg_case(ffmpeg_key_config(), &ffmpeg_srtp_args(wrong), "", 48_000).await
    else {
        return;
    };
    eprintln!("ffmpeg SRTP, wrong key: {stats:?}");
    assert!(pcm.is_empty());
    assert!(events.is_empty());
    assert!(stats.packets > 100, "{stats:?}");
    assert_eq!(stats.not_authenticated, stats.packets, "{stats:?}");
}

fn console() -> SocketAddr {
    "192.0.2.7:51000".parse().unwrap()
}

fn from_console() -> LiveEvent {
    LiveEvent::Receiving {
        from: LiveSource::Console(console()),
    }
}

#[test]
fn console_packets_skip_the_allowlist_and_srtp() {
    // SRTP is required and only the studio is allowed: neither is the console's way in (its
    // caller signed in to the console), so its plain RTP from anywhere is heard.
    let mut rx = LiveRtpReceiver::new(srtp_config(7)).unwrap();
    let t0 = Instant::now();
    let packets = encode_opus(&multitone(0.2, 48_000), FRAME_SAMPLES);
    for (k, p) in packets.iter().enumerate() {
        let at = t0 + ms(20 * k as u64);
        rx.handle_console_packet(
            at,
            console(),
            &rtp(PT_OPUS, k as u16, (k * 960) as u32, SSRC, p),
        );
    }
    assert_eq!(rx.poll_event(), Some(from_console()));
    let mut frames = 0;
    for step in 0..=20 {
        while rx.poll_frame(t0 + ms(20 * step)).is_some() {
            frames += 1;
        }
    }
    assert!(frames >= 8, "{frames} frames");
    let stats = rx.stats();
    assert_eq!(stats.accepted, packets.len() as u64);
    assert_eq!(stats.not_authenticated + stats.rejected_source, 0);
    // The same plain RTP from the network is not authenticated.
    rx.handle_packet(
        t0 + ms(500),
        studio(),
        &rtp(PT_OPUS, 99, 0, 0xABC, opus_payload()),
    );
    assert_eq!(rx.stats().not_authenticated, 1);
}

#[test]
fn the_console_takes_over_from_the_studio_and_keeps_the_air_until_it_ends() {
    let mut rx = LiveRtpReceiver::new(config()).unwrap();
    let t0 = Instant::now();
    let p = opus_payload();
    rx.handle_packet(t0, studio(), &rtp(PT_OPUS, 1, 0, SSRC, p));
    assert_eq!(rx.poll_event(), Some(receiving()));
    // The console's first packet takes the input at once: the studio's broadcast ends
    // (events keep alternating) and the console's begins.
    rx.handle_console_packet(t0 + ms(20), console(), &rtp(PT_OPUS, 500, 0, 0xC0C, p));
    assert_eq!(
        rx.poll_event(),
        Some(LiveEvent::Ended {
            reason: EndReason::NoPackets
        })
    );
    assert_eq!(rx.poll_event(), Some(from_console()));
    // The studio, still sending, cannot take it back while the console is heard, however
    // long the console's gaps (short of its no-packet time-out).
    for k in 1..=5u16 {
        rx.handle_console_packet(
            t0 + ms(20 + 20 * u64::from(k)),
            console(),
            &rtp(PT_OPUS, 500 + k, 0, 0xC0C, p),
        );
    }
    rx.handle_packet(t0 + ms(2_000), studio(), &rtp(PT_OPUS, 2, 960, SSRC, p));
    rx.handle_packet(t0 + ms(4_000), studio(), &rtp(PT_OPUS, 3, 1920, SSRC, p));
    assert_eq!(rx.stats().foreign_ssrc, 2);
    assert_eq!(rx.poll_event(), None);
    // The console goes quiet: its broadcast ends after the time-out, and the studio is
    // heard again.
    rx.handle_timeout(t0 + ms(120 + 5_000));
    assert_eq!(
        rx.poll_event(),
        Some(LiveEvent::Ended {
            reason: EndReason::NoPackets
        })
    );
    rx.handle_packet(t0 + ms(5_200), studio(), &rtp(PT_OPUS, 4, 2880, SSRC, p));
    assert_eq!(rx.poll_event(), Some(receiving()));
}
