//! Encoding traits and the primitive field codecs every message is built from.
//!
//! Every decoder here checks `remaining()` before reading, because the `get_*`
//! methods of [`bytes::Buf`] panic on short input and decoding must never panic
//! on hostile bytes. Length-prefixed fields are checked against their limit
//! *before* anything is allocated, so a peer cannot make us reserve memory by
//! merely declaring a large length.

use bytes::{Buf, BufMut, Bytes};

use crate::DecodeError;

/// Writes a value in its wire form.
///
/// Encoding cannot fail: the encoder trusts the caller to respect field limits.
/// A value that breaks them (say a 300-byte `reason`) still produces a
/// well-framed message, which the peer then rejects on decode.
pub trait Encode {
    /// Appends the wire form of `self` to `buf`.
    fn encode<B: BufMut>(&self, buf: &mut B);
    /// Exact number of bytes [`Encode::encode`] will write, so callers can
    /// size buffers and length prefixes without encoding twice.
    fn encoded_len(&self) -> usize;
}

/// Reads a value from its wire form.
pub trait Decode: Sized {
    /// Reads one value from the front of `buf`.
    ///
    /// On error the buffer may have been partially consumed; use
    /// [`crate::FrameReader`] when bytes arrive in pieces.
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError>;
}

/// Largest value a QUIC variable-length integer can carry (RFC 9000 §16).
pub const VARINT_MAX: u64 = (1 << 62) - 1;

/// Bytes needed for the minimal QUIC varint encoding of `v`.
pub const fn varint_len(v: u64) -> usize {
    if v < 1 << 6 {
        1
    } else if v < 1 << 14 {
        2
    } else if v < 1 << 30 {
        4
    } else {
        8
    }
}

/// Writes `v` as a minimal QUIC varint.
///
/// Values above [`VARINT_MAX`] cannot be represented; they only arise from
/// lengths of exabyte-sized buffers, so this debug-asserts rather than
/// threading an error through every encoder.
pub fn encode_varint<B: BufMut>(buf: &mut B, v: u64) {
    debug_assert!(v <= VARINT_MAX, "varint out of range: {v}");
    match varint_len(v) {
        1 => buf.put_u8(v as u8),
        2 => buf.put_u16(0x4000 | v as u16),
        4 => buf.put_u32(0x8000_0000 | v as u32),
        _ => buf.put_u64(0xc000_0000_0000_0000 | (v & VARINT_MAX)),
    }
}

/// Reads a QUIC varint. Non-minimal encodings are accepted, as RFC 9000 requires.
pub fn decode_varint<B: Buf>(buf: &mut B) -> Result<u64, DecodeError> {
    if !buf.has_remaining() {
        return Err(DecodeError::Truncated);
    }
    let first = buf.chunk()[0];
    let len = 1usize << (first >> 6);
    if buf.remaining() < len {
        return Err(DecodeError::Truncated);
    }
    let mut v = u64::from(buf.get_u8() & 0x3f);
    for _ in 1..len {
        v = (v << 8) | u64::from(buf.get_u8());
    }
    Ok(v)
}

pub(crate) fn decode_u8<B: Buf>(buf: &mut B) -> Result<u8, DecodeError> {
    if buf.remaining() < 1 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u8())
}

pub(crate) fn decode_u16<B: Buf>(buf: &mut B) -> Result<u16, DecodeError> {
    if buf.remaining() < 2 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u16())
}

pub(crate) fn decode_u32<B: Buf>(buf: &mut B) -> Result<u32, DecodeError> {
    if buf.remaining() < 4 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u32())
}

pub(crate) fn decode_u64<B: Buf>(buf: &mut B) -> Result<u64, DecodeError> {
    if buf.remaining() < 8 {
        return Err(DecodeError::Truncated);
    }
    Ok(buf.get_u64())
}

/// One byte, 0 or 1; anything else is rejected so that every value has
/// exactly one encoding.
pub(crate) fn decode_bool<B: Buf>(buf: &mut B, field: &'static str) -> Result<bool, DecodeError> {
    match decode_u8(buf)? {
        0 => Ok(false),
        1 => Ok(true),
        other => Err(DecodeError::Invalid {
            field,
            reason: format!("boolean byte must be 0 or 1, got {other}"),
        }),
    }
}

/// Encoded size of a varint-length-prefixed byte string of `len` bytes.
pub const fn prefixed_len(len: usize) -> usize {
    varint_len(len as u64) + len
}

/// Writes a varint length followed by the bytes.
pub fn encode_bytes<B: BufMut>(buf: &mut B, data: &[u8]) {
    encode_varint(buf, data.len() as u64);
    buf.put_slice(data);
}

/// Writes a varint length followed by the UTF-8 bytes.
pub fn encode_string<B: BufMut>(buf: &mut B, s: &str) {
    encode_bytes(buf, s.as_bytes());
}

/// Reads the length prefix and checks it against `max` before anything else,
/// so the limit — not the peer — bounds what gets allocated.
fn decode_prefix<B: Buf>(
    buf: &mut B,
    field: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let len = decode_varint(buf)?;
    if len > max as u64 {
        return Err(DecodeError::Invalid {
            field,
            reason: format!("{len} bytes exceeds limit of {max}"),
        });
    }
    // Lossless: len <= max, which is a usize.
    let len = len as usize;
    if buf.remaining() < len {
        return Err(DecodeError::Truncated);
    }
    Ok(len)
}

/// Reads a varint-length-prefixed byte string of at most `max` bytes.
///
/// Zero-copy when `buf` is a [`Bytes`], which is how message bodies are
/// decoded, so audio payloads share the receive buffer.
pub fn decode_bytes<B: Buf>(
    buf: &mut B,
    field: &'static str,
    max: usize,
) -> Result<Bytes, DecodeError> {
    let len = decode_prefix(buf, field, max)?;
    Ok(buf.copy_to_bytes(len))
}

/// Reads a varint-length-prefixed UTF-8 string of at most `max` bytes.
pub fn decode_string<B: Buf>(
    buf: &mut B,
    field: &'static str,
    max: usize,
) -> Result<String, DecodeError> {
    let len = decode_prefix(buf, field, max)?;
    let mut raw = vec![0; len];
    buf.copy_to_slice(&mut raw);
    String::from_utf8(raw).map_err(|e| DecodeError::Invalid {
        field,
        reason: format!("not UTF-8: {e}"),
    })
}

/// `s` cut to at most `max` bytes at a character boundary, for text fields with a wire limit.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate_utf8("abc", 5), "abc");
        assert_eq!(truncate_utf8("abc", 2), "ab");
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("éé", 4), "éé");
    }

    fn roundtrip(v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_varint(&mut out, v);
        assert_eq!(out.len(), varint_len(v), "length of {v}");
        assert_eq!(decode_varint(&mut &out[..]), Ok(v));
        out
    }

    #[test]
    fn varint_boundaries() {
        assert_eq!(roundtrip(0), [0x00]);
        assert_eq!(roundtrip(63), [0x3f]);
        assert_eq!(roundtrip(64), [0x40, 0x40]);
        assert_eq!(roundtrip(16_383), [0x7f, 0xff]);
        assert_eq!(roundtrip(16_384), [0x80, 0x00, 0x40, 0x00]);
        assert_eq!(roundtrip((1 << 30) - 1), [0xbf, 0xff, 0xff, 0xff]);
        assert_eq!(roundtrip(1 << 30).len(), 8);
        assert_eq!(roundtrip(VARINT_MAX), [0xff; 8]);
    }

    #[test]
    fn varint_rfc9000_examples() {
        // Examples from RFC 9000 Appendix A.1, including a non-minimal encoding of 37.
        let cases: [(&[u8], u64); 4] = [
            (
                &[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c],
                151_288_809_941_952_652,
            ),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x40, 0x25], 37),
        ];
        for (bytes, v) in cases {
            let mut b = bytes;
            assert_eq!(decode_varint(&mut b), Ok(v));
            assert!(b.is_empty());
        }
    }

    #[test]
    fn varint_truncated() {
        assert_eq!(decode_varint(&mut &[][..]), Err(DecodeError::Truncated));
        assert_eq!(decode_varint(&mut &[0x40][..]), Err(DecodeError::Truncated));
        assert_eq!(
            decode_varint(&mut &[0xc0, 0, 0, 0, 0, 0, 0][..]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn string_limit_checked_before_length_available() {
        // Declares 2^30 bytes but carries none: must be Invalid (limit), not
        // Truncated, and must not try to allocate.
        let mut b = &[0xc0, 0, 0, 0, 0x40, 0, 0, 0][..];
        assert!(matches!(
            decode_string(&mut b, "name", 256),
            Err(DecodeError::Invalid { field: "name", .. })
        ));
    }

    #[test]
    fn string_rejects_invalid_utf8() {
        let mut b = &[0x02, 0xc3, 0x28][..];
        assert!(matches!(
            decode_string(&mut b, "reason", 256),
            Err(DecodeError::Invalid {
                field: "reason",
                ..
            })
        ));
    }

    #[test]
    fn bool_rejects_other_values() {
        assert_eq!(decode_bool(&mut &[0][..], "b"), Ok(false));
        assert_eq!(decode_bool(&mut &[1][..], "b"), Ok(true));
        assert!(matches!(
            decode_bool(&mut &[2][..], "b"),
            Err(DecodeError::Invalid { field: "b", .. })
        ));
    }
}
