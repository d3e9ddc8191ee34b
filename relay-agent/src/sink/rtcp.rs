//! RTCP (RFC 3550 §6) as far as a sender to one loudspeaker receiver needs it: reading the
//! report blocks that receivers send about our stream, and writing our sender reports.
//!
//! Sans-IO: bytes in, values out. Packets come from the network, so every length is checked
//! and anything malformed is refused, never trusted.

/// RTCP packet types (RFC 3550 §12.1).
const SR: u8 = 200;
const RR: u8 = 201;
/// Highest type in the RTCP range that RFC 5761 §4 keeps apart from RTP payload types.
const LAST_RTCP: u8 = 223;

/// What a receiver said about our stream in one report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceptionReport {
    /// Fraction of our packets lost since its previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since it started receiving (24-bit, signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Interarrival jitter in RTP timestamp units (1/48000 s for Opus).
    pub jitter: u32,
}

/// Why a datagram is not an RTCP compound packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet of {0} bytes is shorter than its 4-byte header")]
    Short(usize),
    #[error("RTCP version {0}, expected 2")]
    Version(u8),
    #[error("packet type {0} is not RTCP")]
    NotRtcp(u8),
    #[error("RTCP length field says {claimed} bytes, only {left} remain")]
    Length { claimed: usize, left: usize },
    #[error("{kind} with {count} report blocks does not fit its {len} bytes")]
    Blocks {
        kind: &'static str,
        count: usize,
        len: usize,
    },
}

/// Reads a compound RTCP packet and returns the report block about `ssrc`, if a sender or
/// receiver report in it carries one (the last one wins).
///
/// `Ok(None)` is a valid RTCP packet that says nothing about our stream: the receiver is alive
/// but is not receiving us, which is not evidence that the cluster hears the station.
pub fn report_about(packet: &[u8], ssrc: u32) -> Result<Option<ReceptionReport>, RtcpError> {
    let mut rest = packet;
    let mut found = None;
    if rest.is_empty() {
        return Err(RtcpError::Short(0));
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(RtcpError::Short(rest.len()));
        }
        let version = rest[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let count = usize::from(rest[0] & 0x1f);
        let kind = rest[1];
        if !(SR..=LAST_RTCP).contains(&kind) && !(192..=195).contains(&kind) {
            return Err(RtcpError::NotRtcp(kind));
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(RtcpError::Length {
                claimed: len,
                left: rest.len(),
            });
        }
        let (body, next) = rest.split_at(len);
        rest = next;
        // Report blocks follow the reporter's SSRC, and in an SR its 20-byte sender info.
        let (name, blocks_at) = match kind {
            SR => ("sender report", 4 + 4 + 20),
            RR => ("receiver report", 4 + 4),
            _ => continue,
        };
        if blocks_at + count * 24 > len {
            return Err(RtcpError::Blocks {
                kind: name,
                count,
                len,
            });
        }
        for block in body[blocks_at..blocks_at + count * 24].chunks_exact(24) {
            if be32(&block[0..4]) != ssrc {
                continue;
            }
            // Sign-extend the 24-bit count.
            let cumulative_lost = (i32::from_be_bytes([block[5], block[6], block[7], 0])) >> 8;
            found = Some(ReceptionReport {
                fraction_lost: block[4],
                cumulative_lost,
                jitter: be32(&block[12..16]),
            });
        }
    }
    Ok(found)
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// What a sender report states (RFC 3550 §6.4.1), without report blocks: this sender
/// receives nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// Wall clock, NTP format (seconds since 1900 in the high 32 bits, fraction in the low).
    pub ntp: u64,
    /// The RTP timestamp that corresponds to `ntp`.
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

impl SenderReport {
    /// Seconds from 1900 (NTP era 0) to 1970 (Unix).
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

    /// The NTP timestamp of a Unix time.
    pub fn ntp_from_unix(since_epoch: std::time::Duration) -> u64 {
        let secs = since_epoch.as_secs().wrapping_add(Self::NTP_UNIX_OFFSET);
        let fraction = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        (secs << 32) | fraction
    }

    /// The 28-byte packet.
    pub fn to_bytes(&self) -> [u8; 28] {
        let mut out = [0u8; 28];
        out[0] = 2 << 6;
        out[1] = SR;
        // Length in 32-bit words minus one.
        out[2..4].copy_from_slice(&6u16.to_be_bytes());
        out[4..8].copy_from_slice(&self.ssrc.to_be_bytes());
        out[8..16].copy_from_slice(&self.ntp.to_be_bytes());
        out[16..20].copy_from_slice(&self.rtp_timestamp.to_be_bytes());
        out[20..24].copy_from_slice(&self.packets.to_be_bytes());
        out[24..28].copy_from_slice(&self.octets.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(ssrc: u32, fraction: u8, lost: i32, jitter: u32) -> Vec<u8> {
        let mut b = ssrc.to_be_bytes().to_vec();
        b.push(fraction);
        b.extend_from_slice(&lost.to_be_bytes()[1..]);
        b.extend_from_slice(&77u32.to_be_bytes()); // highest sequence
        b.extend_from_slice(&jitter.to_be_bytes());
        b.extend_from_slice(&[0; 8]); // LSR, DLSR
        b
    }

    fn rr(reporter: u32, blocks: &[Vec<u8>]) -> Vec<u8> {
        let words = 1 + blocks.len() * 6;
        let mut p = vec![0x80 | blocks.len() as u8, RR];
        p.extend_from_slice(&(words as u16).to_be_bytes());
        p.extend_from_slice(&reporter.to_be_bytes());
        for b in blocks {
            p.extend_from_slice(b);
        }
        p
    }

    fn sdes(ssrc: u32) -> Vec<u8> {
        // One chunk: SSRC, CNAME "rx", end, padding to a word.
        let mut p = vec![0x81, 202, 0, 3];
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[1, 2, b'r', b'x', 0, 0, 0, 0]);
        p
    }

    #[test]
    fn finds_the_block_about_our_stream_in_a_compound_packet() {
        let mut packet = rr(9, &[block(1, 0, 0, 0), block(0xabcd, 26, -2, 480)]);
        packet.extend(sdes(9));
        assert_eq!(
            report_about(&packet, 0xabcd),
            Ok(Some(ReceptionReport {
                fraction_lost: 26,
                cumulative_lost: -2,
                jitter: 480
            }))
        );
        // Another sender's block is not about us; an empty RR is valid and says nothing.
        assert_eq!(report_about(&packet, 5), Ok(None));
        assert_eq!(report_about(&rr(9, &[]), 5), Ok(None));
    }

    #[test]
    fn a_sender_report_carries_blocks_after_its_sender_info() {
        let sr = SenderReport {
            ssrc: 3,
            ntp: 1,
            rtp_timestamp: 2,
            packets: 3,
            octets: 4,
        };
        let mut packet = sr.to_bytes().to_vec();
        assert_eq!(report_about(&packet, 3), Ok(None));
        packet[0] |= 1;
        packet[3] += 6;
        packet.extend(block(0x77, 1, 5, 9));
        assert_eq!(
            report_about(&packet, 0x77).map(|r| r.map(|r| r.cumulative_lost)),
            Ok(Some(5))
        );
    }

    #[test]
    fn malformed_packets_are_refused() {
        let good = rr(9, &[block(1, 0, 0, 0)]);
        assert_eq!(report_about(&[], 1), Err(RtcpError::Short(0)));
        assert_eq!(report_about(&good[..3], 1), Err(RtcpError::Short(3)));
        let mut v1 = good.clone();
        v1[0] = 0x41;
        assert_eq!(report_about(&v1, 1), Err(RtcpError::Version(1)));
        // An RTP packet (payload type 111) arriving on the RTCP port.
        let mut rtp = good.clone();
        rtp[1] = 111;
        assert_eq!(report_about(&rtp, 1), Err(RtcpError::NotRtcp(111)));
        assert!(matches!(
            report_about(&good[..good.len() - 4], 1),
            Err(RtcpError::Length { .. })
        ));
        // Claims two blocks, holds one.
        let mut two = good.clone();
        two[0] = 0x82;
        assert!(matches!(
            report_about(&two, 1),
            Err(RtcpError::Blocks { count: 2, .. })
        ));
    }

    #[test]
    fn ntp_time_of_the_unix_epoch_and_a_half_second() {
        let t = SenderReport::ntp_from_unix(std::time::Duration::from_millis(1_500));
        assert_eq!(t >> 32, 2_208_988_801);
        assert_eq!(t & 0xffff_ffff, 1 << 31);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = report_about(&bytes, 1);
        }
    }
}
