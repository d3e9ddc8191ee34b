//! `PrefetchManifest`: the scheduled recordings a station will air within the server's horizon.

use bytes::{Buf, BufMut};

use crate::codec::{
    decode_string, decode_u64, decode_varint, encode_string, encode_varint, prefixed_len,
    varint_len,
};
use crate::{Decode, DecodeError, Encode, ProgrammeLevel};

/// A SHA-256 digest: names a prefetched blob by its content.
pub type BlobDigest = [u8; 32];

/// One airing of a recording that the agent should hold before its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefetchItem {
    /// The schedule entry: together with `start_unix_ms` it names the airing, so a manifest
    /// that no longer lists the pair has cancelled it.
    pub entry_id: String,
    /// The id the agent's proof of play journals the airing under (stable across server runs
    /// for the same entry and start, unlike the ids the audio stream carries).
    pub programme_id: u64,
    /// The programme's name, as the audio stream would announce it: the reports count plays by
    /// name and level, so an airing from the cache counts like a streamed one.
    pub name: String,
    pub level: ProgrammeLevel,
    /// When the slot starts, by the wall clock (Unix milliseconds).
    pub start_unix_ms: u64,
    /// When the slot ends (exclusive): the recording is cut there, as the server's ladder cuts it.
    pub end_unix_ms: u64,
    /// 20 ms Opus frames in the blob.
    pub frame_count: u64,
    /// The blob's size in bytes.
    pub blob_size: u64,
    /// SHA-256 of the blob; the agent airs only a blob that hashes to it.
    pub blob_sha256: BlobDigest,
}

impl PrefetchItem {
    pub const MAX_ENTRY_ID: usize = 64;
    pub const MAX_NAME: usize = 256;
    /// A slot lasts at most 24 h, and the server never encodes beyond the slot.
    pub const MAX_FRAMES: u64 = 24 * 3600 * 50;
    /// Every frame is a 2-byte length and at most 1500 bytes of Opus.
    pub const MAX_BLOB_SIZE: u64 = Self::MAX_FRAMES * (2 + 1500);
    const MAX_LEN: usize = prefixed_len(Self::MAX_ENTRY_ID)
        + 8
        + prefixed_len(Self::MAX_NAME)
        + 1
        + 8
        + 8
        + 8
        + 8
        + 32;

    fn len(&self) -> usize {
        prefixed_len(self.entry_id.len()) + 8 + prefixed_len(self.name.len()) + 1 + 8 * 4 + 32
    }

    fn put<B: BufMut>(&self, buf: &mut B) {
        encode_string(buf, &self.entry_id);
        buf.put_u64(self.programme_id);
        encode_string(buf, &self.name);
        buf.put_u8(self.level as u8);
        buf.put_u64(self.start_unix_ms);
        buf.put_u64(self.end_unix_ms);
        buf.put_u64(self.frame_count);
        buf.put_u64(self.blob_size);
        buf.put_slice(&self.blob_sha256);
    }

    fn get<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let item = PrefetchItem {
            entry_id: decode_string(buf, "entry_id", Self::MAX_ENTRY_ID)?,
            programme_id: decode_u64(buf)?,
            name: decode_string(buf, "name", Self::MAX_NAME)?,
            level: ProgrammeLevel::decode(buf)?,
            start_unix_ms: decode_u64(buf)?,
            end_unix_ms: decode_u64(buf)?,
            frame_count: decode_u64(buf)?,
            blob_size: decode_u64(buf)?,
            blob_sha256: decode_digest(buf)?,
        };
        let invalid = |field, reason: String| Err(DecodeError::Invalid { field, reason });
        if item.end_unix_ms <= item.start_unix_ms {
            return invalid(
                "end_unix_ms",
                format!(
                    "slot ends ({}) at or before it starts ({})",
                    item.end_unix_ms, item.start_unix_ms
                ),
            );
        }
        if !(1..=Self::MAX_FRAMES).contains(&item.frame_count) {
            return invalid(
                "frame_count",
                format!(
                    "{} is not within 1..={}",
                    item.frame_count,
                    Self::MAX_FRAMES
                ),
            );
        }
        // Every frame takes at least 3 bytes (length and one byte of Opus).
        let least = item.frame_count * 3;
        let most = item.frame_count * (2 + 1500);
        if !(least..=most).contains(&item.blob_size) {
            return invalid(
                "blob_size",
                format!(
                    "{} bytes cannot hold {} frames",
                    item.blob_size, item.frame_count
                ),
            );
        }
        Ok(item)
    }
}

/// Reads a 32-byte digest.
pub(crate) fn decode_digest<B: Buf>(buf: &mut B) -> Result<BlobDigest, DecodeError> {
    if buf.remaining() < 32 {
        return Err(DecodeError::Truncated);
    }
    let mut digest = [0; 32];
    buf.copy_to_slice(&mut digest);
    Ok(digest)
}

/// Server → agent, on the prefetch stream: **every** recording the station is scheduled to air
/// within the horizon, in start order. It is complete, not a change: an airing the agent holds
/// that is not listed has been cancelled or moved, and is dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefetchManifest {
    /// The server's wall clock when it made the list, for logs.
    pub issued_unix_ms: u64,
    pub items: Vec<PrefetchItem>,
}

impl PrefetchManifest {
    /// Airings in one manifest; a station with more in its horizon gets the earliest.
    pub const MAX_ITEMS: usize = 64;
    /// Largest body a valid `PrefetchManifest` can have.
    pub const MAX_BODY_LEN: usize =
        8 + varint_len(Self::MAX_ITEMS as u64) + Self::MAX_ITEMS * PrefetchItem::MAX_LEN;
}

impl Encode for PrefetchManifest {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.issued_unix_ms);
        encode_varint(buf, self.items.len() as u64);
        for item in &self.items {
            item.put(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        8 + varint_len(self.items.len() as u64)
            + self.items.iter().map(PrefetchItem::len).sum::<usize>()
    }
}

impl Decode for PrefetchManifest {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let issued_unix_ms = decode_u64(buf)?;
        let count = decode_varint(buf)?;
        if count > Self::MAX_ITEMS as u64 {
            return Err(DecodeError::Invalid {
                field: "count",
                reason: format!("{count} items exceeds limit of {}", Self::MAX_ITEMS),
            });
        }
        let mut items: Vec<PrefetchItem> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let item = PrefetchItem::get(buf)?;
            // Entry and start name an airing; two with one name would make "which one aired"
            // ambiguous in the agent's cache.
            if items
                .iter()
                .any(|i| i.entry_id == item.entry_id && i.start_unix_ms == item.start_unix_ms)
            {
                return Err(DecodeError::Invalid {
                    field: "items",
                    reason: format!(
                        "entry `{}` at {} listed twice",
                        item.entry_id, item.start_unix_ms
                    ),
                });
            }
            items.push(item);
        }
        Ok(PrefetchManifest {
            issued_unix_ms,
            items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn item(entry_id: &str, start: u64) -> PrefetchItem {
        PrefetchItem {
            entry_id: entry_id.into(),
            programme_id: 9,
            name: "Bản tin".into(),
            level: ProgrammeLevel::Priority,
            start_unix_ms: start,
            end_unix_ms: start + 60_000,
            frame_count: 10,
            blob_size: 100,
            blob_sha256: [7; 32],
        }
    }

    #[test]
    fn max_body_len_is_tight() {
        let big = PrefetchItem {
            entry_id: "a".repeat(PrefetchItem::MAX_ENTRY_ID),
            name: "é".repeat(PrefetchItem::MAX_NAME / 2),
            ..item("x", 0)
        };
        let m = PrefetchManifest {
            issued_unix_ms: 1,
            items: (0..PrefetchManifest::MAX_ITEMS as u64)
                .map(|i| PrefetchItem {
                    start_unix_ms: i,
                    end_unix_ms: i + 1,
                    ..big.clone()
                })
                .collect(),
        };
        assert_eq!(m.encoded_len(), PrefetchManifest::MAX_BODY_LEN);
    }

    #[test]
    fn inconsistent_items_are_refused() {
        let decode = |item: PrefetchItem| {
            let m = PrefetchManifest {
                issued_unix_ms: 0,
                items: vec![item],
            };
            let mut body = Vec::new();
            m.encode(&mut body);
            PrefetchManifest::decode(&mut &body[..])
        };
        assert!(decode(item("a", 5)).is_ok());
        for (bad, field) in [
            (
                PrefetchItem {
                    end_unix_ms: 5,
                    ..item("a", 5)
                },
                "end_unix_ms",
            ),
            (
                PrefetchItem {
                    frame_count: 0,
                    ..item("a", 5)
                },
                "frame_count",
            ),
            (
                PrefetchItem {
                    blob_size: 29,
                    ..item("a", 5)
                },
                "blob_size",
            ),
        ] {
            assert!(
                matches!(decode(bad), Err(DecodeError::Invalid { field: f, .. }) if f == field),
                "{field}"
            );
        }
        let twice = PrefetchManifest {
            issued_unix_ms: 0,
            items: vec![item("a", 5), item("a", 5)],
        };
        let mut body = Vec::new();
        twice.encode(&mut body);
        assert!(matches!(
            PrefetchManifest::decode(&mut &body[..]),
            Err(DecodeError::Invalid { field: "items", .. })
        ));
    }
}
