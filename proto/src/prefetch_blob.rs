//! The prefetched blob: a recording's 20 ms Opus packets, each with a 2-byte big-endian length.
//!
//! No container: the agent only ever plays the packets in order from a position, and a length
//! prefix is all that needs (the position is a frame index, found by walking the lengths).

use bytes::{Buf, BufMut, Bytes};

use crate::{AudioFrame, DecodeError};

/// Appends one packet in blob form. A packet must be 1 to [`AudioFrame::MAX_PAYLOAD`] bytes;
/// the caller (the server's encoder) guarantees it.
pub fn put_blob_packet<B: BufMut>(buf: &mut B, packet: &[u8]) {
    debug_assert!((1..=AudioFrame::MAX_PAYLOAD).contains(&packet.len()));
    buf.put_u16(packet.len() as u16);
    buf.put_slice(packet);
}

/// Splits a blob into its packets; zero-copy. Any length outside 1 to
/// [`AudioFrame::MAX_PAYLOAD`] or running past the end is an error, not a panic: a blob is
/// checked by its digest before it is read, but the format must not trust that alone.
pub fn blob_packets(blob: &Bytes) -> Result<Vec<Bytes>, DecodeError> {
    let mut rest = blob.clone();
    let mut packets = Vec::new();
    while rest.has_remaining() {
        if rest.remaining() < 2 {
            return Err(DecodeError::Truncated);
        }
        let len = usize::from(rest.get_u16());
        if !(1..=AudioFrame::MAX_PAYLOAD).contains(&len) {
            return Err(DecodeError::Invalid {
                field: "packet",
                reason: format!("packet of {len} bytes"),
            });
        }
        if rest.remaining() < len {
            return Err(DecodeError::Truncated);
        }
        packets.push(rest.split_to(len));
    }
    Ok(packets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_lengths_are_errors() {
        let mut blob = Vec::new();
        put_blob_packet(&mut blob, &[1, 2, 3]);
        put_blob_packet(&mut blob, &[4]);
        let blob = Bytes::from(blob);
        assert_eq!(
            blob_packets(&blob),
            Ok(vec![
                Bytes::from_static(&[1, 2, 3]),
                Bytes::from_static(&[4])
            ])
        );
        assert_eq!(blob_packets(&blob.slice(..4)), Err(DecodeError::Truncated));
        assert_eq!(blob_packets(&blob.slice(..1)), Err(DecodeError::Truncated));
        assert!(matches!(
            blob_packets(&Bytes::from_static(&[0, 0])),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            blob_packets(&Bytes::from_static(&[0xff, 0xff, 1])),
            Err(DecodeError::Invalid { .. })
        ));
        assert_eq!(blob_packets(&Bytes::new()), Ok(vec![]));
    }
}
