//! `JournalBatch`: an agent's uptime journal records, uploaded on the control stream.
//!
//! Every record carries the agent's own sequence number (monotonic across restarts, never
//! reused) and its wall-clock time. The server stores a record under (agent, sequence), so a
//! batch sent twice — the agent did not see the acknowledgement before the link dropped — is
//! stored once; the agent deletes records only once they are acknowledged ([`JournalAck`]).
//! The same encoding is the on-disk form of a record on both sides.
//!
//! [`JournalAck`]: crate::JournalAck

use bytes::{Buf, BufMut};

use crate::codec::{
    decode_bool, decode_string, decode_u64, decode_u8, decode_varint, encode_string, encode_varint,
    prefixed_len, truncate_utf8, varint_len,
};
use crate::{Decode, DecodeError, Encode, ProgrammeLevel};

/// What the station's output was doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OutputState {
    /// Nothing on air: the output plays silence.
    Silent = 0,
    /// A programme is playing.
    OnAir = 1,
    /// A programme is on air but its audio stopped arriving (link trouble): concealment and
    /// silence instead of the programme.
    Underrun = 2,
}

impl OutputState {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(OutputState::Silent),
            1 => Ok(OutputState::OnAir),
            2 => Ok(OutputState::Underrun),
            other => Err(DecodeError::Invalid {
                field: "output_state",
                reason: format!("unknown output state {other}"),
            }),
        }
    }
}

/// Whether a loudspeaker cluster fed by the agent can hear the station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ClusterState {
    /// The cluster's receiver answers (RTCP reports arrive, or at least no ICMP error).
    Up = 1,
    /// The receiver is unreachable or stopped reporting.
    Down = 2,
}

impl ClusterState {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            1 => Ok(ClusterState::Up),
            2 => Ok(ClusterState::Down),
            other => Err(DecodeError::Invalid {
                field: "cluster_state",
                reason: format!("unknown cluster state {other}"),
            }),
        }
    }
}

/// One thing that happened at the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalEvent {
    /// The agent process started. `clean_previous` is false when the previous run did not
    /// end with [`JournalEvent::ProcessStop`]: a power cut or a crash.
    ProcessStart {
        clean_previous: bool,
        software: String,
    },
    /// The agent process stopped cleanly (SIGTERM, Ctrl-C).
    ProcessStop,
    /// A session with the server was established; `server_run` is the server's run id.
    LinkUp { server_run: u64 },
    /// The session ended.
    LinkDown { reason: String },
    /// The station's output changed state.
    Output { state: OutputState },
    /// A programme began to play at the station (proof of play opens).
    ProgrammeStart {
        programme_id: u64,
        name: String,
        level: ProgrammeLevel,
    },
    /// A programme stopped playing at the station: switched away, ended, or the stream
    /// stopped. `frames_played` 20 ms frames were heard, `frames_lost` were concealed.
    ProgrammeEnd {
        programme_id: u64,
        name: String,
        frames_played: u64,
        frames_lost: u64,
    },
    /// The periodic state report.
    Heartbeat {
        link_up: bool,
        output: OutputState,
        frames_received: u64,
        frames_played: u64,
        frames_lost: u64,
        /// Heartbeat records not written because the journal was full (see the agent's
        /// journal policy); transitions are never dropped.
        heartbeats_dropped: u64,
    },
    /// A loudspeaker cluster the agent watches (an IP receiver) changed state; `cluster` is
    /// its id within the station (`c01`), `reason` says what showed it.
    Cluster {
        cluster: String,
        state: ClusterState,
        reason: String,
    },
    /// An amplifier the agent powers was switched on or off; `output` names it within the
    /// station (`box` for the whole box's), `reason` says which rule switched it (`lead`,
    /// `late`, `emergency`, `idle`, `start`).
    Amplifier {
        output: String,
        on: bool,
        reason: String,
    },
}

impl JournalEvent {
    /// Longest name or reason carried; longer ones are cut (at a character boundary).
    pub const MAX_TEXT: usize = 256;
    /// Longest cluster id (`c01`; the agent's configuration refuses longer ones).
    pub const MAX_CLUSTER_ID: usize = 32;
    /// Longest amplifier output name (the agent's configuration refuses longer ones).
    pub const MAX_OUTPUT_NAME: usize = 32;

    fn tag(&self) -> u8 {
        match self {
            JournalEvent::ProcessStart { .. } => 1,
            JournalEvent::ProcessStop => 2,
            JournalEvent::LinkUp { .. } => 3,
            JournalEvent::LinkDown { .. } => 4,
            JournalEvent::Output { .. } => 5,
            JournalEvent::ProgrammeStart { .. } => 6,
            JournalEvent::ProgrammeEnd { .. } => 7,
            JournalEvent::Heartbeat { .. } => 8,
            JournalEvent::Cluster { .. } => 9,
            JournalEvent::Amplifier { .. } => 10,
        }
    }

    /// Whether this is the periodic report rather than a transition.
    pub fn is_heartbeat(&self) -> bool {
        matches!(self, JournalEvent::Heartbeat { .. })
    }
}

/// A journal record: the event with its sequence number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalRecord {
    /// The agent's sequence number, from 1, never reused.
    pub seq: u64,
    /// The agent's wall clock, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub event: JournalEvent,
}

impl JournalRecord {
    /// Largest encoding of a record: a cluster change with the longest id and reason (an
    /// amplifier switch with the longest name and reason is as long; a test keeps them equal).
    pub const MAX_LEN: usize = 8
        + 8
        + 1
        + prefixed_len(JournalEvent::MAX_CLUSTER_ID)
        + 1
        + prefixed_len(JournalEvent::MAX_TEXT);
}

impl Encode for JournalRecord {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.seq);
        buf.put_u64(self.unix_ms);
        buf.put_u8(self.event.tag());
        match &self.event {
            JournalEvent::ProcessStart {
                clean_previous,
                software,
            } => {
                buf.put_u8(u8::from(*clean_previous));
                encode_string(buf, truncate_utf8(software, JournalEvent::MAX_TEXT));
            }
            JournalEvent::ProcessStop => {}
            JournalEvent::LinkUp { server_run } => buf.put_u64(*server_run),
            JournalEvent::LinkDown { reason } => {
                encode_string(buf, truncate_utf8(reason, JournalEvent::MAX_TEXT))
            }
            JournalEvent::Output { state } => buf.put_u8(*state as u8),
            JournalEvent::ProgrammeStart {
                programme_id,
                name,
                level,
            } => {
                buf.put_u64(*programme_id);
                encode_string(buf, truncate_utf8(name, JournalEvent::MAX_TEXT));
                buf.put_u8(*level as u8);
            }
            JournalEvent::ProgrammeEnd {
                programme_id,
                name,
                frames_played,
                frames_lost,
            } => {
                buf.put_u64(*programme_id);
                encode_string(buf, truncate_utf8(name, JournalEvent::MAX_TEXT));
                buf.put_u64(*frames_played);
                buf.put_u64(*frames_lost);
            }
            JournalEvent::Heartbeat {
                link_up,
                output,
                frames_received,
                frames_played,
                frames_lost,
                heartbeats_dropped,
            } => {
                buf.put_u8(u8::from(*link_up));
                buf.put_u8(*output as u8);
                buf.put_u64(*frames_received);
                buf.put_u64(*frames_played);
                buf.put_u64(*frames_lost);
                buf.put_u64(*heartbeats_dropped);
            }
            JournalEvent::Cluster {
                cluster,
                state,
                reason,
            } => {
                encode_string(buf, truncate_utf8(cluster, JournalEvent::MAX_CLUSTER_ID));
                buf.put_u8(*state as u8);
                encode_string(buf, truncate_utf8(reason, JournalEvent::MAX_TEXT));
            }
            JournalEvent::Amplifier { output, on, reason } => {
                encode_string(buf, truncate_utf8(output, JournalEvent::MAX_OUTPUT_NAME));
                buf.put_u8(u8::from(*on));
                encode_string(buf, truncate_utf8(reason, JournalEvent::MAX_TEXT));
            }
        }
    }

    fn encoded_len(&self) -> usize {
        let text = |s: &str| prefixed_len(truncate_utf8(s, JournalEvent::MAX_TEXT).len());
        8 + 8
            + 1
            + match &self.event {
                JournalEvent::ProcessStart { software, .. } => 1 + text(software),
                JournalEvent::ProcessStop => 0,
                JournalEvent::LinkUp { .. } => 8,
                JournalEvent::LinkDown { reason } => text(reason),
                JournalEvent::Output { .. } => 1,
                JournalEvent::ProgrammeStart { name, .. } => 8 + text(name) + 1,
                JournalEvent::ProgrammeEnd { name, .. } => 8 + text(name) + 8 + 8,
                JournalEvent::Heartbeat { .. } => 1 + 1 + 8 * 4,
                JournalEvent::Cluster {
                    cluster, reason, ..
                } => {
                    prefixed_len(truncate_utf8(cluster, JournalEvent::MAX_CLUSTER_ID).len())
                        + 1
                        + text(reason)
                }
                JournalEvent::Amplifier { output, reason, .. } => {
                    prefixed_len(truncate_utf8(output, JournalEvent::MAX_OUTPUT_NAME).len())
                        + 1
                        + text(reason)
                }
            }
    }
}

impl Decode for JournalRecord {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let seq = decode_u64(buf)?;
        let unix_ms = decode_u64(buf)?;
        let max = JournalEvent::MAX_TEXT;
        let event = match decode_u8(buf)? {
            1 => JournalEvent::ProcessStart {
                clean_previous: decode_bool(buf, "clean_previous")?,
                software: decode_string(buf, "software", max)?,
            },
            2 => JournalEvent::ProcessStop,
            3 => JournalEvent::LinkUp {
                server_run: decode_u64(buf)?,
            },
            4 => JournalEvent::LinkDown {
                reason: decode_string(buf, "reason", max)?,
            },
            5 => JournalEvent::Output {
                state: OutputState::from_u8(decode_u8(buf)?)?,
            },
            6 => JournalEvent::ProgrammeStart {
                programme_id: decode_u64(buf)?,
                name: decode_string(buf, "name", max)?,
                level: ProgrammeLevel::decode(buf)?,
            },
            7 => JournalEvent::ProgrammeEnd {
                programme_id: decode_u64(buf)?,
                name: decode_string(buf, "name", max)?,
                frames_played: decode_u64(buf)?,
                frames_lost: decode_u64(buf)?,
            },
            8 => JournalEvent::Heartbeat {
                link_up: decode_bool(buf, "link_up")?,
                output: OutputState::from_u8(decode_u8(buf)?)?,
                frames_received: decode_u64(buf)?,
                frames_played: decode_u64(buf)?,
                frames_lost: decode_u64(buf)?,
                heartbeats_dropped: decode_u64(buf)?,
            },
            9 => JournalEvent::Cluster {
                cluster: decode_string(buf, "cluster", JournalEvent::MAX_CLUSTER_ID)?,
                state: ClusterState::from_u8(decode_u8(buf)?)?,
                reason: decode_string(buf, "reason", max)?,
            },
            10 => JournalEvent::Amplifier {
                output: decode_string(buf, "output", JournalEvent::MAX_OUTPUT_NAME)?,
                on: decode_bool(buf, "on")?,
                reason: decode_string(buf, "reason", max)?,
            },
            other => {
                return Err(DecodeError::Invalid {
                    field: "event",
                    reason: format!("unknown journal event {other}"),
                })
            }
        };
        if seq == 0 {
            return Err(DecodeError::Invalid {
                field: "seq",
                reason: "sequence numbers start at 1".into(),
            });
        }
        Ok(JournalRecord {
            seq,
            unix_ms,
            event,
        })
    }
}

/// Records uploaded together, oldest first, with consecutive sequence numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalBatch {
    /// Random id of the agent's journal, made when the journal was created. An agent
    /// reinstalled with an empty state directory starts a new journal (its sequence numbers
    /// start again at 1) and must not be mistaken for the old one.
    pub journal_id: u64,
    pub records: Vec<JournalRecord>,
}

impl JournalBatch {
    /// Most records in one batch.
    pub const MAX_RECORDS: usize = 64;
    /// Largest body a valid `JournalBatch` can have.
    pub const MAX_BODY_LEN: usize =
        8 + varint_len(Self::MAX_RECORDS as u64) + Self::MAX_RECORDS * JournalRecord::MAX_LEN;
}

impl Encode for JournalBatch {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.journal_id);
        encode_varint(buf, self.records.len() as u64);
        for record in &self.records {
            record.encode(buf);
        }
    }

    fn encoded_len(&self) -> usize {
        8 + varint_len(self.records.len() as u64)
            + self.records.iter().map(Encode::encoded_len).sum::<usize>()
    }
}

impl Decode for JournalBatch {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let journal_id = decode_u64(buf)?;
        let count = decode_varint(buf)?;
        if count == 0 || count > Self::MAX_RECORDS as u64 {
            return Err(DecodeError::Invalid {
                field: "records",
                reason: format!("{count} records (1 to {} allowed)", Self::MAX_RECORDS),
            });
        }
        let mut records: Vec<JournalRecord> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let record = JournalRecord::decode(buf)?;
            if let Some(previous) = records.last() {
                // `checked_add`: a peer can send `u64::MAX`, and nothing follows it.
                if previous.seq.checked_add(1) != Some(record.seq) {
                    return Err(DecodeError::Invalid {
                        field: "records",
                        reason: format!(
                            "sequence {} follows {}: a batch is consecutive",
                            record.seq, previous.seq
                        ),
                    });
                }
            }
            records.push(record);
        }
        Ok(JournalBatch {
            journal_id,
            records,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `proto_decode` fuzz target: a record numbered `u64::MAX` followed by
    /// another overflowed `previous.seq + 1`, a panic wherever overflow checks are on (debug
    /// builds: `make build`, `make demo`). Without them it wrapped to 0, which no record has.
    #[test]
    fn a_sequence_number_after_the_last_one_is_refused() {
        let record = |seq| JournalRecord {
            seq,
            unix_ms: 1_790_000_000_000,
            event: JournalEvent::ProcessStop,
        };
        for next in [0, 1, u64::MAX] {
            let batch = JournalBatch {
                journal_id: 0x1234_5678,
                records: vec![record(u64::MAX), record(next)],
            };
            let mut buf = Vec::new();
            batch.encode(&mut buf);
            // (0 is refused by the record itself: sequence numbers start at 1.)
            assert!(
                JournalBatch::decode(&mut buf.as_slice()).is_err(),
                "u64::MAX then {next}"
            );
        }
        let last = JournalBatch {
            journal_id: 1,
            records: vec![record(u64::MAX - 1), record(u64::MAX)],
        };
        let mut buf = Vec::new();
        last.encode(&mut buf);
        assert_eq!(JournalBatch::decode(&mut buf.as_slice()), Ok(last));
    }

    /// The fuzzer's input itself: the stream after its chunk-size byte, a framed
    /// `JournalBatch` whose first record is numbered `u64::MAX`, then bytes the fuzzer added.
    #[test]
    fn the_fuzzers_input_is_refused_not_a_panic() {
        let input: &[u8] = &[
            0x40, 0x40, 0x58, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x78, 0x03, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x01, 0xa0, 0xc4, 0x50, 0x6c, 0x00,
            0x01, 0x00, 0x11, 0x72, 0x65, 0x6c, 0x61, 0x79, 0x2d, 0x61, 0x67, 0x65, 0x6e, 0x74,
            0x2f, 0x30, 0x2e, 0x31, 0x2e, 0x30, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x00, 0x00, 0x01, 0xa0, 0xc4, 0x50, 0x6f, 0xe8, 0x03, 0x00, 0x00, 0x60, 0x12, 0x1a,
            0x00, 0x05, 0x02, 0x2c, 0x00, 0x01, 0x15, 0x72, 0x61, 0x64, 0x80, 0x04, 0x00, 0x00,
            0x01, 0xa0, 0xc4, 0x50, 0x73, 0xd0, 0x05, 0xff, 0xfe, 0x01, 0x02, 0x03, 0x10,
        ];
        let mut reader = crate::FrameReader::new();
        reader.push(input);
        assert!(reader.next_message().is_err());
        assert!(crate::Message::decode(&mut &input[..]).is_err());
    }

    #[test]
    fn max_lengths_are_tight() {
        let name = "é".repeat(JournalEvent::MAX_TEXT / 2 + 10);
        let cluster = JournalRecord {
            seq: 1,
            unix_ms: 2,
            event: JournalEvent::Cluster {
                cluster: "c".repeat(JournalEvent::MAX_CLUSTER_ID + 5),
                state: ClusterState::Down,
                reason: name.clone(),
            },
        };
        assert_eq!(cluster.encoded_len(), JournalRecord::MAX_LEN);
        let mut buf = Vec::new();
        cluster.encode(&mut buf);
        assert_eq!(buf.len(), JournalRecord::MAX_LEN);
        let amplifier = JournalRecord {
            seq: 1,
            unix_ms: 2,
            event: JournalEvent::Amplifier {
                output: "a".repeat(JournalEvent::MAX_OUTPUT_NAME + 5),
                on: true,
                reason: name.clone(),
            },
        };
        assert_eq!(amplifier.encoded_len(), JournalRecord::MAX_LEN);
        let mut buf = Vec::new();
        amplifier.encode(&mut buf);
        assert_eq!(buf.len(), JournalRecord::MAX_LEN);
        let back = JournalRecord::decode(&mut buf.as_slice()).expect("decodes");
        assert!(
            matches!(back.event, JournalEvent::Amplifier { on: true, ref output, .. }
            if output.len() == JournalEvent::MAX_OUTPUT_NAME)
        );
        let longest = JournalRecord {
            seq: 1,
            unix_ms: 2,
            event: JournalEvent::ProgrammeEnd {
                programme_id: 3,
                name: name.clone(),
                frames_played: 4,
                frames_lost: 5,
            },
        };
        assert!(longest.encoded_len() < JournalRecord::MAX_LEN);
        let mut buf = Vec::new();
        longest.encode(&mut buf);
        assert_eq!(buf.len(), longest.encoded_len());
        // The name was cut at a character boundary, not mid-character.
        let back = JournalRecord::decode(&mut buf.as_slice()).expect("decodes");
        let JournalEvent::ProgrammeEnd { name: cut, .. } = back.event else {
            panic!("{back:?}")
        };
        assert!(name.starts_with(&cut) && cut.len() <= JournalEvent::MAX_TEXT);
        // A three-byte character straddling the limit is left out whole.
        let record = JournalRecord {
            seq: 1,
            unix_ms: 2,
            event: JournalEvent::LinkDown {
                reason: "ả".repeat(100),
            },
        };
        let mut buf = Vec::new();
        record.encode(&mut buf);
        assert_eq!(buf.len(), record.encoded_len());
        let back = JournalRecord::decode(&mut buf.as_slice()).expect("decodes");
        assert_eq!(
            back.event,
            JournalEvent::LinkDown {
                reason: "ả".repeat(85)
            }
        );
    }

    #[test]
    fn batches_must_be_consecutive_and_bounded() {
        let record = |seq| JournalRecord {
            seq,
            unix_ms: 0,
            event: JournalEvent::ProcessStop,
        };
        let encode = |records: Vec<JournalRecord>| {
            let mut buf = Vec::new();
            JournalBatch {
                journal_id: 9,
                records,
            }
            .encode(&mut buf);
            buf
        };
        let ok = encode(vec![record(7), record(8)]);
        assert!(JournalBatch::decode(&mut ok.as_slice()).is_ok());
        let gap = encode(vec![record(7), record(9)]);
        assert!(JournalBatch::decode(&mut gap.as_slice()).is_err());
        let empty = encode(vec![]);
        assert!(JournalBatch::decode(&mut empty.as_slice()).is_err());
        let zero = encode(vec![record(0)]);
        assert!(JournalBatch::decode(&mut zero.as_slice()).is_err());
    }
}
