//! Wire error codes and decode failures.

use std::fmt;

use crate::MessageType;

/// Why a session was closed, carried in [`crate::ErrorMessage`].
///
/// The numeric values are part of the wire format and must never be reused
/// or renumbered; new codes get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    Malformed = 1,
    UnknownMessage = 2,
    TooLarge = 3,
    UnsupportedVersion = 4,
    UnknownAgent = 5,
    IdentityMismatch = 6,
    ProtocolViolation = 7,
    Timeout = 8,
    Shutdown = 9,
    Internal = 10,
    Revoked = 11,
    Busy = 12,
    /// A newer connection of the same station replaced this one.
    Replaced = 13,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 13] = [
        ErrorCode::Malformed,
        ErrorCode::UnknownMessage,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedVersion,
        ErrorCode::UnknownAgent,
        ErrorCode::IdentityMismatch,
        ErrorCode::ProtocolViolation,
        ErrorCode::Timeout,
        ErrorCode::Shutdown,
        ErrorCode::Internal,
        ErrorCode::Revoked,
        ErrorCode::Busy,
        ErrorCode::Replaced,
    ];

    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// `None` for values this version does not know; see
    /// [`crate::ErrorMessage`] for how decoding copes with those.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_u16() == v)
    }

    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed message",
            ErrorCode::UnknownMessage => "unknown message type",
            ErrorCode::TooLarge => "message too large",
            ErrorCode::UnsupportedVersion => "unsupported protocol version",
            ErrorCode::UnknownAgent => "unknown agent",
            ErrorCode::IdentityMismatch => "agent identity does not match its certificate",
            ErrorCode::ProtocolViolation => "message not allowed in this state",
            ErrorCode::Timeout => "timed out",
            ErrorCode::Shutdown => "shutting down",
            ErrorCode::Internal => "internal error",
            ErrorCode::Revoked => "agent revoked",
            ErrorCode::Busy => "busy",
            ErrorCode::Replaced => "replaced by a newer connection",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description(), self.as_u16())
    }
}

impl From<ErrorCode> for u16 {
    fn from(code: ErrorCode) -> u16 {
        code.as_u16()
    }
}

/// Why bytes could not be decoded into a message.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended early. From `Message::decode` on a partial
    /// frame this means "wait for more"; inside a complete frame (as
    /// [`crate::FrameReader`] reports it) it means the body is too short for
    /// its fields.
    #[error("truncated: need more bytes")]
    Truncated,
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{kind:?} body of {len} bytes exceeds limit {max}")]
    TooLarge {
        kind: MessageType,
        len: usize,
        max: usize,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{0} trailing bytes after message body")]
    TrailingBytes(usize),
}

impl DecodeError {
    /// The code to close the session with when a peer sent these bytes.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::TooLarge { .. } => ErrorCode::TooLarge,
            DecodeError::UnknownType(_) => ErrorCode::UnknownMessage,
            DecodeError::Truncated
            | DecodeError::Invalid { .. }
            | DecodeError::TrailingBytes(_) => ErrorCode::Malformed,
        }
    }
}
