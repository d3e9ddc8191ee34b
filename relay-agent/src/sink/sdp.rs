//! SDP (RFC 4566) describing the RTP sink's Opus stream (RFC 7587), for receivers such as
//! `ffmpeg -protocol_whitelist file,udp,rtp -i stream.sdp`, VLC or GStreamer's `sdpdemux`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

/// TTL written into the `c=` line of IPv4 multicast sessions; the RTP sink sets the same TTL
/// on its socket so the SDP tells the truth. RFC 4566 makes the TTL mandatory there.
pub const MULTICAST_TTL: u32 = 16;

/// Builds the SDP for an Opus RTP stream sent to `dest`.
///
/// The session name may be any UTF-8 (RFC 4566's default charset), e.g. a Vietnamese station
/// name; line breaks in it are replaced because they would end the `s=` line early.
pub fn opus_sdp(dest: SocketAddr, payload_type: u8, session_name: &str, ssrc: u32) -> String {
    let (family, loopback) = match dest.ip() {
        IpAddr::V4(_) => ("IP4", "127.0.0.1"),
        IpAddr::V6(_) => ("IP6", "::1"),
    };
    let connection = match dest.ip() {
        IpAddr::V4(ip) if ip.is_multicast() => format!("{ip}/{MULTICAST_TTL}"),
        ip => ip.to_string(),
    };
    let name: String = session_name
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let name = name.trim();
    // RFC 4566 §5.3: an unnamed session uses a single space rather than an empty s= line.
    let name = if name.is_empty() { " " } else { name };
    let pt = payload_type;

    let mut sdp = String::new();
    let mut line = |l: std::fmt::Arguments<'_>| {
        // Writing into a String cannot fail.
        let _ = sdp.write_fmt(l);
        sdp.push_str("\r\n");
    };
    line(format_args!("v=0"));
    // The originator address is not known to the caller; like ffmpeg's own SDP writer we name
    // the local host. The SSRC is random per sink, which makes it a fitting session id.
    line(format_args!("o=- {ssrc} 1 IN {family} {loopback}"));
    line(format_args!("s={name}"));
    line(format_args!("c=IN {family} {connection}"));
    line(format_args!("t=0 0"));
    line(format_args!("a=tool:relay-agent"));
    line(format_args!("a=recvonly"));
    line(format_args!("m=audio {} RTP/AVP {pt}", dest.port()));
    // RFC 7587 §7: the rtpmap always says 48000/2 whatever is actually encoded; the fmtp
    // parameters are what announce the mono stream.
    line(format_args!("a=rtpmap:{pt} opus/48000/2"));
    line(format_args!(
        "a=fmtp:{pt} stereo=0; sprop-stereo=0; useinbandfec=0; sprop-maxcapturerate=48000"
    ));
    line(format_args!("a=ptime:20"));
    line(format_args!("a=ssrc:{ssrc} cname:relay-agent"));
    sdp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(sdp: &str) -> Vec<&str> {
        assert!(sdp.ends_with("\r\n"), "SDP must end with CRLF");
        let body = &sdp[..sdp.len() - 2];
        let lines: Vec<&str> = body.split("\r\n").collect();
        for l in &lines {
            assert!(
                !l.contains('\n') && !l.contains('\r'),
                "bare newline in {l:?}"
            );
            assert!(
                l.len() >= 2 && &l[1..2] == "=",
                "not a type=value line: {l:?}"
            );
        }
        lines
    }

    #[test]
    fn ipv4_unicast() {
        let dest: SocketAddr = "192.0.2.10:5004".parse().expect("addr");
        let sdp = opus_sdp(dest, 111, "Đài truyền thanh xã Hòa Bình", 0xDEADBEEF);
        let l = lines(&sdp);
        assert_eq!(l[0], "v=0");
        assert_eq!(l[1], format!("o=- {} 1 IN IP4 127.0.0.1", 0xDEADBEEFu32));
        assert_eq!(l[2], "s=Đài truyền thanh xã Hòa Bình");
        assert!(l.contains(&"c=IN IP4 192.0.2.10"));
        assert!(l.contains(&"t=0 0"));
        assert!(l.contains(&"m=audio 5004 RTP/AVP 111"));
        assert!(l.contains(&"a=rtpmap:111 opus/48000/2"));
        assert!(l.contains(&"a=ptime:20"));
        assert!(l.contains(&"a=recvonly"));
        let fmtp: Vec<&str> = l
            .iter()
            .find_map(|x| x.strip_prefix("a=fmtp:111 "))
            .expect("fmtp")
            .split("; ")
            .collect();
        for p in ["stereo=0", "sprop-stereo=0", "useinbandfec=0"] {
            assert!(fmtp.contains(&p), "{p} missing from {fmtp:?}");
        }
        // RFC 4566 §5: session-level lines come before the first m= line, in this order.
        let pos = |prefix: &str| {
            l.iter()
                .position(|x| x.starts_with(prefix))
                .expect("line present")
        };
        assert!(pos("v=") < pos("o=") && pos("o=") < pos("s=") && pos("s=") < pos("c="));
        assert!(pos("c=") < pos("t=") && pos("t=") < pos("m="));
        assert!(pos("m=") < pos("a=rtpmap"));
    }

    #[test]
    fn ipv6_and_multicast() {
        let dest: SocketAddr = "[2001:db8::7]:6000".parse().expect("addr");
        let sdp = opus_sdp(dest, 111, "x", 1);
        let l = lines(&sdp);
        assert_eq!(l[1], "o=- 1 1 IN IP6 ::1");
        assert!(l.contains(&"c=IN IP6 2001:db8::7"));
        assert!(l.contains(&"m=audio 6000 RTP/AVP 111"));

        let dest: SocketAddr = "239.1.2.3:5004".parse().expect("addr");
        let sdp = opus_sdp(dest, 111, "x", 1);
        assert!(lines(&sdp).contains(&"c=IN IP4 239.1.2.3/16"));
    }

    #[test]
    fn session_name_cannot_break_lines() {
        let dest: SocketAddr = "127.0.0.1:5004".parse().expect("addr");
        let sdp = opus_sdp(dest, 111, "evil\r\nm=video 1 RTP/AVP 96", 1);
        let l = lines(&sdp);
        assert_eq!(l.iter().filter(|x| x.starts_with("m=")).count(), 1);
        assert_eq!(l[2], "s=evil  m=video 1 RTP/AVP 96");

        let sdp = opus_sdp(dest, 111, "", 1);
        assert_eq!(lines(&sdp)[2], "s= ");
    }
}
