//! Opus packets out of a live WebM stream, as a browser's `MediaRecorder` sends it in pieces
//! (`audio/webm;codecs=opus`): the console's way to go live from a browser without WebCodecs
//! (Firefox for Android, for one). A push parser in the style of the rest of the ingest: bytes
//! in, whole Opus packets out, no IO.
//!
//! A live recorder writes the Segment and its Clusters with an unknown size and never goes back,
//! so the stream is read flat: Segment, Cluster and BlockGroup headers are stepped into, each
//! SimpleBlock or Block gives its frame, and every other element (the EBML header, Info,
//! Tracks, Cues, Tags…) is skipped by its size without being held in memory. The parsers on
//! crates.io read from a blocking `Read` (and most want `Seek`), which a WebSocket's messages
//! are not.

/// Element ids (with their length marker, as written).
const EBML: u32 = 0x1A45_DFA3;
const SEGMENT: u32 = 0x1853_8067;
const CLUSTER: u32 = 0x1F43_B675;
const BLOCK_GROUP: u32 = 0xA0;
const SIMPLE_BLOCK: u32 = 0xA3;
const BLOCK: u32 = 0xA1;

/// The largest block accepted: an Opus packet is at most a few kB (120 ms at 510 kb/s is
/// under 8 kB).
pub const MAX_BLOCK: u64 = 16 * 1024;

/// Why a stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebmError {
    /// It does not start with an EBML header.
    #[error("not a WebM stream (no EBML header)")]
    NotWebm,
    /// An element id or size is not a valid EBML variable-length integer.
    #[error("damaged WebM: a bad element header at byte {0}")]
    BadHeader(u64),
    /// An element other than a Segment or Cluster has an unknown size.
    #[error("damaged WebM: element {id:#x} has an unknown size")]
    UnknownSize {
        /// The element id.
        id: u32,
    },
    /// A block larger than [`MAX_BLOCK`].
    #[error("a WebM block of {0} bytes is larger than an Opus packet can be")]
    BlockTooLarge(u64),
    /// A block with laced frames (browsers do not lace Opus) or without a frame.
    #[error("a WebM block with laced or no frames")]
    Laced,
}

/// The push parser. See the module docs.
#[derive(Debug, Default)]
pub struct WebmOpusStream {
    held: Vec<u8>,
    /// Bytes of a skipped element still to come.
    skip: u64,
    /// Bytes consumed so far, for error messages.
    offset: u64,
    started: bool,
}

impl WebmOpusStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of the stream; appends each complete frame to `frames`.
    pub fn push(&mut self, bytes: &[u8], frames: &mut Vec<Vec<u8>>) -> Result<(), WebmError> {
        self.held.extend_from_slice(bytes);
        let mut at = 0usize;
        let result = loop {
            let rest = &self.held[at..];
            if self.skip > 0 {
                let n = (self.skip.min(rest.len() as u64)) as usize;
                self.skip -= n as u64;
                at += n;
                if self.skip > 0 {
                    break Ok(());
                }
                continue;
            }
            let Some((id, id_len)) = element_id(rest) else {
                break Ok(());
            };
            if id_len == 0 {
                break Err(WebmError::BadHeader(self.offset + at as u64));
            }
            if !self.started {
                if id != EBML {
                    break Err(WebmError::NotWebm);
                }
                self.started = true;
            }
            let Some((size, size_len)) = element_size(&rest[id_len..]) else {
                break Ok(());
            };
            if size_len == 0 {
                break Err(WebmError::BadHeader(self.offset + at as u64));
            }
            let header = id_len + size_len;
            match id {
                SEGMENT | CLUSTER | BLOCK_GROUP => at += header,
                SIMPLE_BLOCK | BLOCK => {
                    let Some(size) = size else {
                        break Err(WebmError::UnknownSize { id });
                    };
                    if size > MAX_BLOCK {
                        break Err(WebmError::BlockTooLarge(size));
                    }
                    let end = header + size as usize;
                    if rest.len() < end {
                        break Ok(());
                    }
                    match block_frame(&rest[header..end]) {
                        Some(frame) => frames.push(frame.to_vec()),
                        None => break Err(WebmError::Laced),
                    }
                    at += end;
                }
                _ => {
                    let Some(size) = size else {
                        break Err(WebmError::UnknownSize { id });
                    };
                    at += header;
                    self.skip = size;
                }
            }
        };
        self.held.drain(..at);
        self.offset += at as u64;
        result
    }
}

/// An element id: its value with the length marker, and its length; `None` if more bytes are
/// needed, a length of 0 if it is not a valid id.
fn element_id(bytes: &[u8]) -> Option<(u32, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Some((0, 0));
    }
    let bytes = bytes.get(..len)?;
    Some((
        bytes.iter().fold(0u32, |v, b| (v << 8) | u32::from(*b)),
        len,
    ))
}

/// An element size (`None` inside: unknown, all value bits set) and its length; `None` if more
/// bytes are needed, a length of 0 if it is not valid.
#[allow(clippy::type_complexity)]
fn element_size(bytes: &[u8]) -> Option<(Option<u64>, usize)> {
    let first = *bytes.first()?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return Some((None, 0));
    }
    let bytes = bytes.get(..len)?;
    let marker_cleared = u64::from(first) & (0xFF >> len);
    let value = bytes[1..]
        .iter()
        .fold(marker_cleared, |v, b| (v << 8) | u64::from(*b));
    let all_ones = (1u64 << (7 * len)) - 1;
    Some((if value == all_ones { None } else { Some(value) }, len))
}

/// The one frame of a SimpleBlock or Block: after the track number (a variable-length
/// integer), the 16-bit timecode and the flags. `None` if laced or empty.
fn block_frame(block: &[u8]) -> Option<&[u8]> {
    let (_, track_len) = element_size(block)?;
    if track_len == 0 {
        return None;
    }
    let flags = *block.get(track_len + 2)?;
    if flags & 0x06 != 0 {
        return None;
    }
    let frame = block.get(track_len + 3..)?;
    (!frame.is_empty()).then_some(frame)
}

#[cfg(test)]
mod tests;
