//! Reassembles frames from a byte stream delivered in arbitrary pieces.

use bytes::{Buf, BytesMut};

use crate::codec::{decode_u8, decode_varint};
use crate::message::{check_body_len, decode_body};
use crate::{DecodeError, Message, MessageType};

/// Incremental frame decoder for one stream.
///
/// QUIC delivers stream data in chunks that ignore frame boundaries. Push
/// every chunk, then call [`FrameReader::next_message`] until it returns
/// `Ok(None)`. Draining after each push keeps the buffer below one frame,
/// and one frame is at most [`crate::MAX_FRAME_SIZE`]: an oversized length
/// is refused as soon as the header is complete, before its body is
/// buffered.
///
/// The first error poisons the reader. After a framing error the stream
/// position is unknown, so nothing later on the stream can be trusted; the
/// caller is expected to close the stream or session with
/// [`DecodeError::code`].
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: BytesMut,
    error: Option<DecodeError>,
}

impl FrameReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends stream data. Ignored once the reader is poisoned, so a
    /// misbehaving peer cannot grow memory after the error.
    pub fn push(&mut self, data: &[u8]) {
        if self.error.is_none() {
            self.buf.extend_from_slice(data);
        }
    }

    /// Returns the next complete message, `Ok(None)` if more bytes are needed,
    /// or the (sticky) error.
    pub fn next_message(&mut self) -> Result<Option<Message>, DecodeError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.try_next() {
            Ok(m) => Ok(m),
            Err(e) => {
                self.buf = BytesMut::new();
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Bytes held that do not yet form a complete frame (or frames not yet
    /// taken with [`FrameReader::next_message`]).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn try_next(&mut self) -> Result<Option<Message>, DecodeError> {
        let mut header = &self.buf[..];
        // Truncation while reading the header only means "not yet"; every
        // other error is final. The type byte is judged on its own so an
        // unknown type is refused without waiting for a length.
        let kind = match decode_u8(&mut header) {
            Ok(b) => MessageType::try_from(b)?,
            Err(DecodeError::Truncated) => return Ok(None),
            Err(e) => return Err(e),
        };
        let declared = match decode_varint(&mut header) {
            Ok(v) => v,
            Err(DecodeError::Truncated) => return Ok(None),
            Err(e) => return Err(e),
        };
        let body_len = check_body_len(kind, declared)?;
        let header_len = self.buf.len() - header.len();
        if header.len() < body_len {
            // Reserve the rest of the frame once instead of regrowing on
            // every small chunk; bounded because body_len passed the limit.
            self.buf.reserve(header_len + body_len - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(header_len + body_len).freeze();
        frame.advance(header_len);
        // The whole body is here, so a Truncated from the body decoder is a
        // real error (body shorter than its fields), not a request for more.
        decode_body(kind, frame).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, ErrorMessage};

    fn sample() -> Message {
        Message::Error(ErrorMessage {
            code: ErrorCode::Shutdown,
            reason: "maintenance".into(),
        })
    }

    #[test]
    fn byte_by_byte() {
        let frame = sample().to_bytes();
        let mut r = FrameReader::new();
        for (i, b) in frame.iter().enumerate() {
            assert_eq!(r.next_message(), Ok(None));
            r.push(&[*b]);
            assert_eq!(r.buffered(), i + 1);
        }
        assert_eq!(r.next_message(), Ok(Some(sample())));
        assert_eq!(r.next_message(), Ok(None));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn several_frames_in_one_push() {
        let mut data = Vec::new();
        for _ in 0..3 {
            data.extend_from_slice(&sample().to_bytes());
        }
        data.push(0x30); // start of a fourth
        let mut r = FrameReader::new();
        r.push(&data);
        for _ in 0..3 {
            assert_eq!(r.next_message(), Ok(Some(sample())));
        }
        assert_eq!(r.next_message(), Ok(None));
        assert_eq!(r.buffered(), 1);
    }

    #[test]
    fn unknown_type_rejected_from_first_byte_and_poisons() {
        let mut r = FrameReader::new();
        r.push(&[0x7f]);
        assert_eq!(r.next_message(), Err(DecodeError::UnknownType(0x7f)));
        r.push(&sample().to_bytes());
        assert_eq!(r.buffered(), 0);
        assert_eq!(r.next_message(), Err(DecodeError::UnknownType(0x7f)));
    }
}
