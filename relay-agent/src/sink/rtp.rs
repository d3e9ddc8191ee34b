//! RTP sink: Opus packets (RFC 7587) over UDP, with an SDP file for the receivers.

use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rtp_rs::{RtpPacketBuilder, Seq};

use super::rtcp::{report_about, SenderReport};
use super::sdp::{opus_sdp, MULTICAST_TTL};
use super::{ClusterWatch, LogLimiter, Sink, SinkError, SinkStats, Slot, FRAME_SAMPLES};
use crate::cluster_health::{ClusterChange, ClusterHealth};

/// RFC 3550 §6.2: 5 s is the minimum interval between RTCP reports.
const SENDER_REPORT_INTERVAL: Duration = Duration::from_secs(5);
/// Slots between reads of the RTCP socket: reports come every few seconds, 100 ms is plenty.
const RTCP_POLL_SLOTS: u64 = 5;
/// Tries at finding a free even/odd port pair for RTP and RTCP.
const PORT_PAIR_TRIES: usize = 64;

/// The loudspeaker cluster this sink's receiver serves, and how its health is watched.
#[derive(Debug)]
struct Watch {
    id: String,
    /// Bound to the RTP port + 1 (RFC 3550 §11), where receivers send their reports.
    rtcp: UdpSocket,
    /// The receiver's RTCP port (its RTP port + 1), where our sender reports go.
    rtcp_dest: SocketAddr,
    health: ClusterHealth,
    next_sender_report: Instant,
    octets: u32,
    bad_rtcp: LogLimiter,
    buf: Vec<u8>,
}

/// Dynamic payload type announced in the SDP; 111 is what most Opus receivers expect.
pub const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Sends each slot's Opus packet to one UDP destination.
#[derive(Debug)]
pub struct RtpSink {
    socket: UdpSocket,
    dest: SocketAddr,
    sdp_path: PathBuf,
    ssrc: u32,
    next_seq: Seq,
    next_timestamp: u32,
    /// Set while nothing has been sent since the stream start or a silent slot, so the next
    /// sound packet carries the talkspurt marker.
    talkspurt_pending: bool,
    finished: bool,
    stats: SinkStats,
    send_errors: LogLimiter,
    packet: Vec<u8>,
    watch: Option<Watch>,
}

impl RtpSink {
    /// Binds an ephemeral UDP socket towards `dest` and writes the SDP to `sdp_path`.
    pub fn open(dest: SocketAddr, sdp_path: &Path, session_name: &str) -> Result<Self, SinkError> {
        Self::open_with(dest, sdp_path, session_name, None, None)
    }

    /// Like [`RtpSink::open`], sending from `local_port` if given, and watching the health of
    /// the `cluster` the receiver serves: its RTCP reports are read on the sending port + 1.
    pub fn open_with(
        dest: SocketAddr,
        sdp_path: &Path,
        session_name: &str,
        local_port: Option<u16>,
        cluster: Option<ClusterWatch>,
    ) -> Result<Self, SinkError> {
        let name = format!("rtp:{dest}");
        let any = |port: u16| -> SocketAddr {
            match dest.ip() {
                IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, port).into(),
                IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, port).into(),
            }
        };
        let bind_error =
            |port: u16, e: io::Error| SinkError::io(&name, format!("bind port {port}: {e}"));
        let (socket, rtcp) = match (local_port, cluster.is_some()) {
            (Some(port), watch) => {
                let socket = UdpSocket::bind(any(port)).map_err(|e| bind_error(port, e))?;
                let rtcp = if watch {
                    // The configuration refuses 65535; a caller of this API may not.
                    let next = port.checked_add(1).ok_or_else(|| SinkError::Config {
                        sink: name.clone(),
                        reason: "local port 65535 leaves no port for RTCP".into(),
                    })?;
                    Some(UdpSocket::bind(any(next)).map_err(|e| bind_error(next, e))?)
                } else {
                    None
                };
                (socket, rtcp)
            }
            (None, true) => {
                let (socket, rtcp) = bind_port_pair(any).map_err(|e| SinkError::io(&name, e))?;
                (socket, Some(rtcp))
            }
            (None, false) => (
                UdpSocket::bind(any(0)).map_err(|e| SinkError::io(&name, e))?,
                None,
            ),
        };
        // Connecting makes the kernel report ICMP unreachable replies (ECONNREFUSED) on later
        // sends, which is how an absent receiver shows up in the error counter.
        socket.connect(dest).map_err(|e| SinkError::io(&name, e))?;
        // A full socket buffer must cost a dropped packet, never a late playout clock.
        socket
            .set_nonblocking(true)
            .map_err(|e| SinkError::io(&name, e))?;
        if let IpAddr::V4(ip) = dest.ip() {
            if ip.is_multicast() {
                socket
                    .set_multicast_ttl_v4(MULTICAST_TTL)
                    .map_err(|e| SinkError::io(&name, e))?;
            }
        }

        let ssrc: u32 = rand::random();
        let watch = match (cluster, rtcp) {
            (Some(cluster), Some(rtcp)) => {
                rtcp.set_nonblocking(true)
                    .map_err(|e| SinkError::io(&name, e))?;
                let rtcp_port = rtcp.local_addr().map(|a| a.port()).unwrap_or_default();
                tracing::info!(
                    "{name}: watching loudspeaker cluster {} (RTCP reports to port {rtcp_port})",
                    cluster.id
                );
                let now = Instant::now();
                Some(Watch {
                    id: cluster.id,
                    rtcp,
                    rtcp_dest: SocketAddr::new(dest.ip(), dest.port().wrapping_add(1)),
                    health: ClusterHealth::new(now, cluster.timeout),
                    next_sender_report: now,
                    octets: 0,
                    bad_rtcp: LogLimiter::per_minute(),
                    buf: vec![0; 1500],
                })
            }
            _ => None,
        };
        let sdp = opus_sdp(dest, OPUS_PAYLOAD_TYPE, session_name, ssrc);
        write_atomically(sdp_path, sdp.as_bytes())
            .map_err(|e| SinkError::io(&name, format!("writing {}: {e}", sdp_path.display())))?;
        tracing::info!(
            "{name}: sending Opus RTP (ssrc {ssrc:08x}), SDP at {}",
            sdp_path.display()
        );

        Ok(Self {
            socket,
            dest,
            sdp_path: sdp_path.to_path_buf(),
            ssrc,
            // RFC 3550 §5.1: random initial sequence number and timestamp.
            next_seq: Seq::from(rand::random::<u16>()),
            next_timestamp: rand::random(),
            talkspurt_pending: true,
            finished: false,
            stats: SinkStats::default(),
            send_errors: LogLimiter::per_minute(),
            packet: Vec::with_capacity(1500),
            watch,
        })
    }

    /// The local address RTP is sent from.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Reads the receiver reports that arrived and sends our sender report when due.
    fn watch_rtcp(&mut self) {
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        let now = Instant::now();
        // Bounded, so a flood on the RTCP port cannot hold the playout clock.
        for _ in 0..16 {
            // WouldBlock: nothing more has arrived; any other error will be there next slot.
            let Ok((n, from)) = watch.rtcp.recv_from(&mut watch.buf) else {
                break;
            };
            // Reports count only from the receiver's address (any member of a multicast group).
            if !self.dest.ip().is_multicast() && from.ip() != self.dest.ip() {
                continue;
            }
            match report_about(&watch.buf[..n], self.ssrc) {
                Ok(Some(_)) => watch.health.on_report(now),
                Ok(None) => {}
                Err(e) => {
                    if let Some(suppressed) = watch.bad_rtcp.allow() {
                        tracing::debug!(
                            "rtp:{}: ignoring a bad RTCP packet from {from}: {e} ({suppressed} \
                             more since last report)",
                            self.dest
                        );
                    }
                }
            }
        }
        if now >= watch.next_sender_report {
            watch.next_sender_report = now + SENDER_REPORT_INTERVAL;
            let since_epoch = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            let report = SenderReport {
                ssrc: self.ssrc,
                ntp: SenderReport::ntp_from_unix(since_epoch),
                rtp_timestamp: self.next_timestamp,
                packets: self.stats.packets_sent as u32,
                octets: watch.octets,
            };
            // A receiver with no RTCP port answers with ICMP, which an unconnected socket does
            // not report: sender reports are a courtesy, not a probe.
            let _ = watch.rtcp.send_to(&report.to_bytes(), watch.rtcp_dest);
        }
    }

    /// The synchronisation source identifier of this stream (also the SDP session id).
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Where the SDP was written.
    pub fn sdp_path(&self) -> &Path {
        &self.sdp_path
    }

    fn send(&mut self, payload: &[u8], timestamp: u32, marked: bool) -> bool {
        let builder = RtpPacketBuilder::new()
            .payload_type(OPUS_PAYLOAD_TYPE)
            .ssrc(self.ssrc)
            .sequence(self.next_seq)
            .timestamp(timestamp)
            .marked(marked)
            .payload(payload);
        self.packet.resize(builder.target_length(), 0);
        let len = match builder.build_into(&mut self.packet) {
            Ok(len) => len,
            Err(e) => {
                self.stats.errors += 1;
                self.log_send_error(format_args!("cannot build RTP packet: {e:?}"));
                return false;
            }
        };
        match self.socket.send(&self.packet[..len]) {
            Ok(_) => {
                self.stats.packets_sent += 1;
                self.next_seq = self.next_seq.next();
                if let Some(watch) = &mut self.watch {
                    watch.octets = watch.octets.wrapping_add(payload.len() as u32);
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.stats.dropped += 1;
                self.log_send_error(format_args!("socket buffer full, packet dropped"));
                false
            }
            Err(e) => {
                self.stats.errors += 1;
                if let Some(watch) = &mut self.watch {
                    // ICMP errors about the receiver, reported on the connected socket.
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::HostUnreachable
                            | io::ErrorKind::NetworkUnreachable
                    ) {
                        watch.health.on_unreachable(Instant::now(), &e.to_string());
                    }
                }
                self.log_send_error(format_args!("send failed: {e}"));
                false
            }
        }
    }

    fn log_send_error(&mut self, what: std::fmt::Arguments<'_>) {
        if let Some(suppressed) = self.send_errors.allow() {
            tracing::warn!(
                "rtp:{}: {what} ({suppressed} similar since last report; errors {}, dropped {})",
                self.dest,
                self.stats.errors,
                self.stats.dropped
            );
        }
    }
}

impl Sink for RtpSink {
    fn describe(&self) -> String {
        format!("rtp:{}", self.dest)
    }

    fn play(&mut self, slot: &Slot<'_>) -> Result<(), SinkError> {
        if self.finished {
            return Err(SinkError::Closed {
                sink: self.describe(),
            });
        }
        self.stats.slots += 1;
        // The timestamp counts every slot, sent or not, so receivers see lost slots as a gap
        // to conceal rather than as time that never happened.
        let timestamp = self.next_timestamp;
        self.next_timestamp = timestamp.wrapping_add(FRAME_SAMPLES as u32);

        match slot.opus {
            // An empty payload is not an Opus packet (RFC 6716 §3.4 R1); the receiver treats
            // the gap like a loss.
            Some(payload) if !payload.is_empty() => {
                let marked = self.talkspurt_pending && !slot.silent;
                if self.send(payload, timestamp, marked) && !slot.silent {
                    self.talkspurt_pending = false;
                }
            }
            _ => {}
        }
        if slot.silent {
            self.talkspurt_pending = true;
        }
        if self.stats.slots.is_multiple_of(RTCP_POLL_SLOTS) {
            self.watch_rtcp();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.finished = true;
        Ok(())
    }

    fn stats(&self) -> SinkStats {
        self.stats.clone()
    }

    fn cluster_change(&mut self, now: Instant) -> Option<(String, ClusterChange)> {
        let watch = self.watch.as_mut()?;
        let change = watch.health.poll(now)?;
        Some((watch.id.clone(), change))
    }
}

/// Binds RTP to an even ephemeral port and RTCP to the odd one above it (RFC 3550 §11), the
/// pair receivers expect when they answer to the sender's address.
fn bind_port_pair(any: impl Fn(u16) -> SocketAddr) -> io::Result<(UdpSocket, UdpSocket)> {
    for _ in 0..PORT_PAIR_TRIES {
        let rtp = UdpSocket::bind(any(0))?;
        let port = rtp.local_addr()?.port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        if let Ok(rtcp) = UdpSocket::bind(any(port + 1)) {
            return Ok((rtp, rtcp));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free RTP/RTCP port pair in {PORT_PAIR_TRIES} tries"),
    ))
}

/// Writes `data` to `path` so that readers never see a half-written file: a receiver may be
/// (re)reading the SDP at any moment.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "SDP path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(file_name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use radio_test_tools::FfmpegReceiver;
    use rtp_rs::RtpReader;
    use std::time::{Duration, Instant};

    /// How long a test waits for a datagram or an error that is bound to come: far longer than
    /// loopback takes, however loaded the machine.
    const WAIT: Duration = Duration::from_secs(60);

    fn receiver() -> (UdpSocket, SocketAddr) {
        let rx = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
        rx.set_read_timeout(Some(WAIT)).expect("timeout");
        let addr = rx.local_addr().expect("addr");
        (rx, addr)
    }

    #[test]
    fn packets_follow_rfc3550_and_rfc7587() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rx, addr) = receiver();
        let sdp_path = dir.path().join("sdp/stream.sdp");
        let mut sink = RtpSink::open(addr, &sdp_path, "Đài xã").expect("open");

        let sdp = fs::read_to_string(&sdp_path).expect("sdp written");
        assert_eq!(sdp, opus_sdp(addr, 111, "Đài xã", sink.ssrc()));
        // No temp file is left behind by the atomic write.
        let entries = fs::read_dir(sdp_path.parent().expect("parent"))
            .expect("dir")
            .count();
        assert_eq!(entries, 1);

        let pcm = [0i16; FRAME_SAMPLES];
        let silence: &[u8] = &[0xf8, 0xff, 0xfe];
        let payloads: Vec<Vec<u8>> = (0..10u8).map(|i| vec![0xfc, i, i, i]).collect();
        // Slot plan: 0,1 sound; 2 lost; 3 sound; 4,5,6 silent; 7 lost; 8,9 sound.
        let mut sent_slots = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let slot = match i {
                2 | 7 => Slot {
                    opus: None,
                    pcm: &pcm,
                    silent: false,
                },
                4..=6 => Slot {
                    opus: Some(silence),
                    pcm: &pcm,
                    silent: true,
                },
                _ => Slot {
                    opus: Some(payload),
                    pcm: &pcm,
                    silent: false,
                },
            };
            sink.play(&slot).expect("play");
            if slot.opus.is_some() {
                sent_slots.push(i);
            }
        }

        let mut buf = [0u8; 2048];
        let mut got = Vec::new();
        for _ in 0..sent_slots.len() {
            let n = rx.recv(&mut buf).expect("packet");
            let r = RtpReader::new(&buf[..n]).expect("valid RTP");
            got.push((
                r.version(),
                r.payload_type(),
                u16::from(r.sequence_number()),
                r.timestamp(),
                r.ssrc(),
                r.mark(),
                r.payload().to_vec(),
            ));
        }
        assert_eq!(got.len(), 8);
        let (_, _, seq0, ts0, ssrc0, _, _) = got[0].clone();
        assert_eq!(ssrc0, sink.ssrc());
        for (k, (version, pt, seq, ts, ssrc, mark, payload)) in got.iter().enumerate() {
            let slot = sent_slots[k];
            assert_eq!(*version, 2);
            assert_eq!(*pt, 111);
            assert_eq!(*ssrc, ssrc0);
            assert_eq!(*seq, seq0.wrapping_add(k as u16), "packet {k}");
            assert_eq!(
                ts.wrapping_sub(ts0),
                960 * slot as u32,
                "timestamp of slot {slot}"
            );
            let expected: &[u8] = if (4..=6).contains(&slot) {
                silence
            } else {
                &payloads[slot]
            };
            assert_eq!(payload.as_slice(), expected);
            // Talkspurt starts: the first sound packet, and the first sound after silence.
            assert_eq!(*mark, slot == 0 || slot == 8, "marker of slot {slot}");
        }
        // Across the lost slot 2 the timestamp jumps by two slots while the sequence does not.
        assert_eq!(got[2].3.wrapping_sub(got[1].3), 1920);
        assert_eq!(got[2].2.wrapping_sub(got[1].2), 1);

        let stats = sink.stats();
        assert_eq!(
            stats,
            SinkStats {
                slots: 10,
                packets_sent: 8,
                dropped: 0,
                errors: 0
            }
        );
        sink.finish().expect("finish");
        assert!(matches!(
            sink.play(&Slot {
                opus: None,
                pcm: &pcm,
                silent: false
            }),
            Err(SinkError::Closed { .. })
        ));
    }

    #[test]
    fn absent_receiver_is_counted_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A port nobody listens on: loopback answers with ICMP port unreachable.
        let addr = {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr")
        };
        let mut sink = RtpSink::open(addr, &dir.path().join("x.sdp"), "x").expect("open");
        let pcm = [0i16; FRAME_SAMPLES];
        let payload = [0xfcu8, 1, 2, 3];
        // The port-unreachable answer to one packet fails a later send; when it comes back is
        // up to the kernel, so send until one has.
        let start = Instant::now();
        let mut slots = 0;
        while sink.stats().errors == 0 {
            assert!(
                start.elapsed() < WAIT,
                "ECONNREFUSED not counted: {:?}",
                sink.stats()
            );
            let slot = Slot {
                opus: Some(&payload),
                pcm: &pcm,
                silent: false,
            };
            sink.play(&slot).expect("send errors are not fatal");
            slots += 1;
            // Paces the slots, as the playout clock would (faster, to keep the test short).
            std::thread::sleep(Duration::from_millis(2));
        }
        let stats = sink.stats();
        assert_eq!(stats.slots, slots);
        assert_eq!(stats.packets_sent + stats.errors, slots);
    }

    #[test]
    fn ipv6_destination() {
        let Ok(rx) = UdpSocket::bind("[::1]:0") else {
            radio_test_tools::skip("no IPv6 loopback");
            return;
        };
        rx.set_read_timeout(Some(WAIT)).expect("timeout");
        let addr = rx.local_addr().expect("addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let sdp_path = dir.path().join("v6.sdp");
        let mut sink = RtpSink::open(addr, &sdp_path, "v6").expect("open");
        assert!(fs::read_to_string(&sdp_path)
            .expect("sdp")
            .contains("c=IN IP6 ::1\r\n"));
        let pcm = [0i16; FRAME_SAMPLES];
        let payload = [0xfcu8, 9];
        sink.play(&Slot {
            opus: Some(&payload),
            pcm: &pcm,
            silent: false,
        })
        .expect("play");
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).expect("packet");
        assert_eq!(
            RtpReader::new(&buf[..n]).expect("rtp").payload(),
            &payload[..]
        );
    }

    fn free_udp_port() -> u16 {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    }

    /// Correlation of `x` with the best-phase 440 Hz sine, i.e. the maximum over all lags of
    /// the normalised correlation, computed by projecting onto sine and cosine.
    fn sine_correlation(x: &[f64], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
        let (mut s, mut c, mut e, mut es, mut ec, mut sc) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            let (sn, cn) = (w * n as f64).sin_cos();
            s += v * sn;
            c += v * cn;
            e += v * v;
            es += sn * sn;
            ec += cn * cn;
            sc += sn * cn;
        }
        // Least-squares fit onto the (nearly orthogonal) sine/cosine pair.
        let det = es * ec - sc * sc;
        let a = (s * ec - c * sc) / det;
        let b = (c * es - s * sc) / det;
        let fitted = a * s + b * c;
        if e <= 0.0 {
            0.0
        } else {
            (fitted / e).max(0.0).sqrt()
        }
    }

    #[test]
    fn ffmpeg_decodes_the_stream_from_the_sdp() {
        if !radio_test_tools::require_tool("ffmpeg") {
            return;
        }
        // Generous: on a loaded machine with a cold page cache ffmpeg takes seconds to start.
        const PEER: Duration = Duration::from_secs(120);
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_udp_port();
        let dest: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
        let sdp_path = dir.path().join("stream.sdp");
        let out_path = dir.path().join("out.raw");
        let mut sink = RtpSink::open(dest, &sdp_path, "Đài truyền thanh").expect("open");
        let mut ffmpeg = FfmpegReceiver::start(&sdp_path, &out_path).expect("start ffmpeg");

        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio)
                .expect("encoder");
        let sine: Vec<i16> = (0..2 * 48_000)
            .map(|n| {
                let t = n as f64 / 48_000.0;
                (12_000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        let mut packet = [0u8; 1500];
        // Like the playout's, the silence packet comes from a fresh encoder: one cut from the
        // running tone encoder carries its state and decodes to a buzz when repeated.
        let zeros = [0i16; FRAME_SAMPLES];
        let mut fresh = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip)
            .expect("encoder");
        let n = fresh.encode(&zeros, &mut packet).expect("encode");
        let silence = packet[..n].to_vec();
        let mut tick = Instant::now();
        // Sleeps that pace the stream: one 20 ms frame per slot, as the playout sends them.
        let pace = |tick: &mut Instant| {
            *tick += Duration::from_millis(20);
            if let Some(wait) = tick.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        };
        let send_silence = |sink: &mut RtpSink, tick: &mut Instant| {
            sink.play(&Slot {
                opus: Some(&silence),
                pcm: &zeros,
                silent: true,
            })
            .expect("play");
            pace(tick);
        };

        // Silence, as an idle agent sends it, until ffmpeg shows that it decodes the stream:
        // the tone then cannot start before ffmpeg listens, however slowly it started.
        let started = Instant::now();
        while ffmpeg.decoded().is_zero() {
            assert!(
                started.elapsed() < PEER,
                "ffmpeg decoded nothing in {PEER:?}"
            );
            send_silence(&mut sink, &mut tick);
        }
        // Sent before ffmpeg opened its port, some were refused; none may fail from now on.
        let refused_before = sink.stats().errors;
        for frame in sine.chunks(FRAME_SAMPLES) {
            let n = encoder.encode(frame, &mut packet).expect("encode");
            sink.play(&Slot {
                opus: Some(&packet[..n]),
                pcm: frame,
                silent: false,
            })
            .expect("play");
            pace(&mut tick);
        }
        // Silence until ffmpeg's output has moved on by a second past the tone's end: it has
        // decoded the whole tone.
        let sent = ffmpeg.decoded();
        let started = Instant::now();
        while ffmpeg.decoded() <= sent + Duration::from_secs(1) {
            assert!(
                started.elapsed() < PEER,
                "ffmpeg decoded only {:?} in {PEER:?}",
                ffmpeg.decoded()
            );
            send_silence(&mut sink, &mut tick);
        }
        // None refused while ffmpeg listened. Once told to quit it may close its port before
        // it is seen to exit, and the silence sent meanwhile is refused: not counted here.
        assert_eq!(sink.stats().errors, refused_before);
        // It reads `q` between packets: the stream goes on until it has gone.
        ffmpeg.quit().unwrap_or_else(|e| panic!("{e}"));
        let status = loop {
            if let Some(status) = ffmpeg.exited() {
                break status;
            }
            assert!(started.elapsed() < PEER, "ffmpeg did not stop");
            send_silence(&mut sink, &mut tick);
        };
        assert!(status.success(), "ffmpeg failed: {status}");
        sink.finish().expect("finish");

        let raw = fs::read(&out_path).expect("ffmpeg output");
        if let Some(keep) = std::env::var_os("SINK_TEST_KEEP") {
            let _ = fs::copy(&out_path, keep);
        }
        let decoded: Vec<f64> = raw
            .chunks_exact(2)
            .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
            .collect();
        // The tone is where the signal is loud; the rest is the silence that followed.
        let loud = |v: &f64| v.abs() > 2_000.0;
        let first = decoded.iter().position(loud).expect("no audio decoded");
        let last = decoded.iter().rposition(loud).expect("no audio decoded");
        let tone_secs = (last - first) as f64 / 48_000.0;
        assert!(tone_secs >= 1.5, "only {tone_secs:.2} s of tone decoded");
        // Skip codec onset and tail so the window holds steady tone only.
        let margin = 4_800;
        let window = &decoded[first + margin..last - margin];
        let corr = sine_correlation(window, 440.0);
        println!(
            "ffmpeg decoded {:.2} s total, {tone_secs:.2} s tone, correlation {corr:.4}",
            decoded.len() as f64 / 48_000.0
        );
        assert!(corr >= 0.9, "correlation with 440 Hz only {corr:.3}");
    }

    #[test]
    fn correlation_measure_can_fail() {
        // A 440 Hz tone with an arbitrary phase scores ~1; 660 Hz and noise score low.
        let tone: Vec<f64> = (0..48_000)
            .map(|n| (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 48_000.0 + 1.0).sin())
            .collect();
        assert!(sine_correlation(&tone, 440.0) > 0.99);
        let other: Vec<f64> = (0..48_000)
            .map(|n| (2.0 * std::f64::consts::PI * 660.0 * n as f64 / 48_000.0).sin())
            .collect();
        assert!(sine_correlation(&other, 440.0) < 0.1);
    }
}
