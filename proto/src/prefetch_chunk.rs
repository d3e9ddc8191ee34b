//! `PrefetchChunk`: a piece of a prefetched blob, on that blob's own stream.

use bytes::{Buf, BufMut, Bytes};

use crate::codec::{decode_bytes, decode_u64, encode_bytes, prefixed_len};
use crate::prefetch_manifest::decode_digest;
use crate::{BlobDigest, Decode, DecodeError, Encode, PrefetchItem};

/// The QUIC stop code of a blob stream the agent does not want: it holds the blob already, or
/// has no room or use for it. The server does not send it again on this connection.
pub const PREFETCH_STOP_HELD: u32 = 0;
/// The QUIC stop code of a blob stream whose bytes went wrong (out of order, or not hashing to
/// the digest): the server sends it again with the next manifest.
pub const PREFETCH_STOP_RETRY: u32 = 1;

/// Server → agent: bytes `offset..offset + data.len()` of the blob `blob_sha256`.
///
/// Each blob travels on a unidirectional stream of its own, in order from offset 0, so a
/// blob never waits behind another and the agent can refuse one it already holds by stopping
/// its stream. Every chunk repeats the digest and size, so the first one tells the agent what
/// the stream carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchChunk {
    pub blob_sha256: BlobDigest,
    /// The whole blob's size.
    pub blob_size: u64,
    pub offset: u64,
    /// 1 to [`PrefetchChunk::MAX_DATA`] bytes.
    pub data: Bytes,
}

impl PrefetchChunk {
    /// Small enough that a chunk queued ahead of live audio on a slow link delays it little.
    pub const MAX_DATA: usize = 16_000;
    /// Largest body a valid `PrefetchChunk` can have.
    pub const MAX_BODY_LEN: usize = 32 + 8 + 8 + prefixed_len(Self::MAX_DATA);
}

impl Encode for PrefetchChunk {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_slice(&self.blob_sha256);
        buf.put_u64(self.blob_size);
        buf.put_u64(self.offset);
        encode_bytes(buf, &self.data);
    }

    fn encoded_len(&self) -> usize {
        32 + 8 + 8 + prefixed_len(self.data.len())
    }
}

impl Decode for PrefetchChunk {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let chunk = PrefetchChunk {
            blob_sha256: decode_digest(buf)?,
            blob_size: decode_u64(buf)?,
            offset: decode_u64(buf)?,
            data: decode_bytes(buf, "data", Self::MAX_DATA)?,
        };
        if chunk.data.is_empty() {
            return Err(DecodeError::Invalid {
                field: "data",
                reason: "empty chunk".into(),
            });
        }
        if chunk.blob_size > PrefetchItem::MAX_BLOB_SIZE {
            return Err(DecodeError::Invalid {
                field: "blob_size",
                reason: format!(
                    "{} bytes exceeds limit of {}",
                    chunk.blob_size,
                    PrefetchItem::MAX_BLOB_SIZE
                ),
            });
        }
        let end = chunk.offset.checked_add(chunk.data.len() as u64);
        if end.is_none_or(|end| end > chunk.blob_size) {
            return Err(DecodeError::Invalid {
                field: "offset",
                reason: format!(
                    "{} bytes at {} run past the blob's {} bytes",
                    chunk.data.len(),
                    chunk.offset,
                    chunk.blob_size
                ),
            });
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(c: &PrefetchChunk) -> Vec<u8> {
        let mut b = Vec::new();
        c.encode(&mut b);
        b
    }

    #[test]
    fn max_body_len_is_tight() {
        let c = PrefetchChunk {
            blob_sha256: [1; 32],
            blob_size: 1 << 40,
            offset: 0,
            data: Bytes::from(vec![0; PrefetchChunk::MAX_DATA]),
        };
        assert_eq!(c.encoded_len(), PrefetchChunk::MAX_BODY_LEN);
    }

    #[test]
    fn chunks_past_the_end_or_empty_are_refused() {
        let ok = PrefetchChunk {
            blob_sha256: [1; 32],
            blob_size: 10,
            offset: 7,
            data: Bytes::from_static(&[1, 2, 3]),
        };
        assert_eq!(PrefetchChunk::decode(&mut &body(&ok)[..]), Ok(ok.clone()));
        for bad in [
            PrefetchChunk {
                offset: 8,
                ..ok.clone()
            },
            PrefetchChunk {
                offset: u64::MAX,
                ..ok.clone()
            },
            PrefetchChunk {
                data: Bytes::new(),
                ..ok.clone()
            },
            PrefetchChunk {
                blob_size: u64::MAX,
                offset: 0,
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(
                    PrefetchChunk::decode(&mut &body(&bad)[..]),
                    Err(DecodeError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
