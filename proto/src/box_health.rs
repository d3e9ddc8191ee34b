//! `BoxHealth`: the agent's box as it measured it (temperature, disk, memory, load, uptime,
//! clock sync, outputs and clusters), sent beside its heartbeats.
//!
//! Only agents that announce [`crate::Capabilities::BOX_HEALTH`] send it, so an older server
//! never sees a message type it does not know. Every measurement is optional: a box without
//! thermal zones (a VM) says "unknown", never 0 °C.

use bytes::{Buf, BufMut};

use crate::codec::{
    decode_bool, decode_string, decode_u32, decode_u64, decode_u8, decode_varint, encode_string,
    encode_varint, prefixed_len, varint_len,
};
use crate::{Decode, DecodeError, Encode};

/// What one output (sink) is doing, as the agent last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SinkHealth {
    Silent = 0,
    OnAir = 1,
    Underrun = 2,
    /// Its last slot could not be delivered (the pipe's command died, the socket refused).
    Failed = 3,
}

impl SinkHealth {
    fn from_u8(v: u8) -> Result<Self, DecodeError> {
        match v {
            0 => Ok(SinkHealth::Silent),
            1 => Ok(SinkHealth::OnAir),
            2 => Ok(SinkHealth::Underrun),
            3 => Ok(SinkHealth::Failed),
            other => Err(DecodeError::Invalid {
                field: "sink_state",
                reason: format!("unknown sink state {other}"),
            }),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SinkHealth::Silent => "silent",
            SinkHealth::OnAir => "on-air",
            SinkHealth::Underrun => "underrun",
            SinkHealth::Failed => "failed",
        }
    }
}

/// One output and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputHealth {
    /// The sink's description (`rtp:127.0.0.1:5004`), at most [`BoxHealth::MAX_NAME`] bytes.
    pub name: String,
    pub state: SinkHealth,
}

/// One loudspeaker cluster the agent watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterHealth {
    /// Its id within the station (`c01`), at most [`BoxHealth::MAX_NAME`] bytes.
    pub id: String,
    pub up: bool,
}

/// The box's health. Sizes are in bytes and kibibytes as the kernel gives them; load is in
/// hundredths, temperature in millidegrees Celsius, so every value is an integer and has one
/// encoding.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BoxHealth {
    /// The agent's wall clock when measured.
    pub unix_ms: u64,
    /// The hottest thermal zone, m°C.
    pub temperature_mc: Option<i32>,
    /// Free and total bytes on the state directory's file system.
    pub disk: Option<(u64, u64)>,
    /// `MemAvailable` and `MemTotal`, KiB.
    pub memory_kib: Option<(u64, u64)>,
    /// 1, 5 and 15-minute load averages, hundredths.
    pub load_centi: Option<[u32; 3]>,
    pub uptime_s: Option<u64>,
    /// Seconds since the system clock was last known synchronised (0: synchronised now).
    pub since_clock_sync_s: Option<u64>,
    /// At most [`BoxHealth::MAX_OUTPUTS`].
    pub outputs: Vec<OutputHealth>,
    /// At most [`BoxHealth::MAX_CLUSTERS`].
    pub clusters: Vec<ClusterHealth>,
}

/// Option flags, one bit per optional field, in field order.
const HAS_TEMPERATURE: u8 = 1;
const HAS_DISK: u8 = 2;
const HAS_MEMORY: u8 = 4;
const HAS_LOAD: u8 = 8;
const HAS_UPTIME: u8 = 16;
const HAS_CLOCK_SYNC: u8 = 32;
const KNOWN_FLAGS: u8 = 63;

impl BoxHealth {
    pub const MAX_NAME: usize = 64;
    pub const MAX_OUTPUTS: usize = 16;
    pub const MAX_CLUSTERS: usize = 64;
    const FIXED_LEN: usize = 8 + 1 + 4 + 16 + 16 + 12 + 8 + 8;
    /// Largest body a valid `BoxHealth` can have.
    pub const MAX_BODY_LEN: usize = Self::FIXED_LEN
        + varint_len(Self::MAX_OUTPUTS as u64)
        + Self::MAX_OUTPUTS * (prefixed_len(Self::MAX_NAME) + 1)
        + varint_len(Self::MAX_CLUSTERS as u64)
        + Self::MAX_CLUSTERS * (prefixed_len(Self::MAX_NAME) + 1);

    fn flags(&self) -> u8 {
        [
            (self.temperature_mc.is_some(), HAS_TEMPERATURE),
            (self.disk.is_some(), HAS_DISK),
            (self.memory_kib.is_some(), HAS_MEMORY),
            (self.load_centi.is_some(), HAS_LOAD),
            (self.uptime_s.is_some(), HAS_UPTIME),
            (self.since_clock_sync_s.is_some(), HAS_CLOCK_SYNC),
        ]
        .into_iter()
        .filter(|(has, _)| *has)
        .fold(0, |acc, (_, bit)| acc | bit)
    }

    /// The temperature in °C, for display and thresholds.
    pub fn temperature_c(&self) -> Option<f64> {
        self.temperature_mc.map(|mc| f64::from(mc) / 1000.0)
    }

    /// Free disk in percent of the file system (none when unknown or the size is 0).
    pub fn disk_free_percent(&self) -> Option<f64> {
        self.disk
            .filter(|(_, total)| *total > 0)
            .map(|(free, total)| free as f64 * 100.0 / total as f64)
    }

    /// Available memory in percent of the total.
    pub fn memory_available_percent(&self) -> Option<f64> {
        self.memory_kib
            .filter(|(_, total)| *total > 0)
            .map(|(free, total)| free as f64 * 100.0 / total as f64)
    }

    /// The 1-minute load average.
    pub fn load1(&self) -> Option<f64> {
        self.load_centi.map(|l| f64::from(l[0]) / 100.0)
    }
}

impl Encode for BoxHealth {
    fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u64(self.unix_ms);
        buf.put_u8(self.flags());
        // Absent values are sent as zero, so the layout is fixed and the flags alone say what
        // is known.
        buf.put_i32(self.temperature_mc.unwrap_or(0));
        let (free, total) = self.disk.unwrap_or((0, 0));
        buf.put_u64(free);
        buf.put_u64(total);
        let (available, total) = self.memory_kib.unwrap_or((0, 0));
        buf.put_u64(available);
        buf.put_u64(total);
        for l in self.load_centi.unwrap_or([0; 3]) {
            buf.put_u32(l);
        }
        buf.put_u64(self.uptime_s.unwrap_or(0));
        buf.put_u64(self.since_clock_sync_s.unwrap_or(0));
        encode_varint(buf, self.outputs.len() as u64);
        for o in &self.outputs {
            encode_string(buf, &o.name);
            buf.put_u8(o.state as u8);
        }
        encode_varint(buf, self.clusters.len() as u64);
        for c in &self.clusters {
            encode_string(buf, &c.id);
            buf.put_u8(u8::from(c.up));
        }
    }

    fn encoded_len(&self) -> usize {
        Self::FIXED_LEN
            + varint_len(self.outputs.len() as u64)
            + self
                .outputs
                .iter()
                .map(|o| prefixed_len(o.name.len()) + 1)
                .sum::<usize>()
            + varint_len(self.clusters.len() as u64)
            + self
                .clusters
                .iter()
                .map(|c| prefixed_len(c.id.len()) + 1)
                .sum::<usize>()
    }
}

/// A list count checked against its limit before anything is allocated.
fn decode_count<B: Buf>(
    buf: &mut B,
    field: &'static str,
    max: usize,
) -> Result<usize, DecodeError> {
    let n = decode_varint(buf)?;
    if n > max as u64 {
        return Err(DecodeError::Invalid {
            field,
            reason: format!("{n} entries exceeds limit of {max}"),
        });
    }
    // Lossless: n <= max, which is a usize.
    Ok(n as usize)
}

/// The value when its flag is set; a set-aside zero must be zero, so every message has one
/// encoding.
fn known<T: PartialEq + Default>(
    flags: u8,
    bit: u8,
    value: T,
    field: &'static str,
) -> Result<Option<T>, DecodeError> {
    if flags & bit != 0 {
        Ok(Some(value))
    } else if value == T::default() {
        Ok(None)
    } else {
        Err(DecodeError::Invalid {
            field,
            reason: "a value marked unknown must be zero".into(),
        })
    }
}

impl Decode for BoxHealth {
    fn decode<B: Buf>(buf: &mut B) -> Result<Self, DecodeError> {
        let unix_ms = decode_u64(buf)?;
        let flags = decode_u8(buf)?;
        if flags & !KNOWN_FLAGS != 0 {
            return Err(DecodeError::Invalid {
                field: "health_flags",
                reason: format!("unknown flags {flags:#04x}"),
            });
        }
        let temperature = decode_u32(buf)? as i32;
        let disk = (decode_u64(buf)?, decode_u64(buf)?);
        let memory = (decode_u64(buf)?, decode_u64(buf)?);
        let load = [decode_u32(buf)?, decode_u32(buf)?, decode_u32(buf)?];
        let uptime = decode_u64(buf)?;
        let since_sync = decode_u64(buf)?;
        let n = decode_count(buf, "outputs", Self::MAX_OUTPUTS)?;
        let mut outputs = Vec::with_capacity(n);
        for _ in 0..n {
            outputs.push(OutputHealth {
                name: decode_string(buf, "output_name", Self::MAX_NAME)?,
                state: SinkHealth::from_u8(decode_u8(buf)?)?,
            });
        }
        let n = decode_count(buf, "clusters", Self::MAX_CLUSTERS)?;
        let mut clusters = Vec::with_capacity(n);
        for _ in 0..n {
            clusters.push(ClusterHealth {
                id: decode_string(buf, "cluster_id", Self::MAX_NAME)?,
                up: decode_bool(buf, "cluster_up")?,
            });
        }
        Ok(BoxHealth {
            unix_ms,
            temperature_mc: known(flags, HAS_TEMPERATURE, temperature, "temperature")?,
            disk: known(flags, HAS_DISK, disk, "disk")?,
            memory_kib: known(flags, HAS_MEMORY, memory, "memory")?,
            load_centi: known(flags, HAS_LOAD, load, "load")?,
            uptime_s: known(flags, HAS_UPTIME, uptime, "uptime")?,
            since_clock_sync_s: known(flags, HAS_CLOCK_SYNC, since_sync, "clock_sync")?,
            outputs,
            clusters,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> BoxHealth {
        BoxHealth {
            unix_ms: 1_700_000_000_000,
            temperature_mc: Some(-5_500),
            disk: Some((10, 100)),
            memory_kib: Some((512, 1024)),
            load_centi: Some([150, 75, 5]),
            uptime_s: Some(3600),
            since_clock_sync_s: Some(0),
            outputs: (0..BoxHealth::MAX_OUTPUTS)
                .map(|i| OutputHealth {
                    name: format!("{i:0>64}"),
                    state: SinkHealth::Failed,
                })
                .collect(),
            clusters: (0..BoxHealth::MAX_CLUSTERS)
                .map(|i| ClusterHealth {
                    id: format!("{i:0>64}"),
                    up: i % 2 == 0,
                })
                .collect(),
        }
    }

    fn roundtrip(h: &BoxHealth) -> Result<BoxHealth, DecodeError> {
        let mut body = Vec::new();
        h.encode(&mut body);
        assert_eq!(body.len(), h.encoded_len());
        let mut slice = &body[..];
        let back = BoxHealth::decode(&mut slice);
        assert!(slice.is_empty() || back.is_err());
        back
    }

    #[test]
    fn the_largest_message_is_the_limit_and_roundtrips() {
        let h = full();
        assert_eq!(h.encoded_len(), BoxHealth::MAX_BODY_LEN);
        assert_eq!(roundtrip(&h), Ok(h));
    }

    #[test]
    fn unknown_stays_unknown_not_zero() {
        let h = BoxHealth {
            unix_ms: 1,
            ..BoxHealth::default()
        };
        let back = roundtrip(&h).expect("decodes");
        assert_eq!(back.temperature_mc, None);
        assert_eq!(back.temperature_c(), None);
        let zero = BoxHealth {
            temperature_mc: Some(0),
            ..h
        };
        assert_eq!(roundtrip(&zero).expect("decodes").temperature_mc, Some(0));
    }

    #[test]
    fn hostile_bodies_are_refused() {
        let mut body = Vec::new();
        BoxHealth::default().encode(&mut body);
        // An unknown flag.
        let mut bad = body.clone();
        bad[8] = 0x80;
        assert!(BoxHealth::decode(&mut &bad[..]).is_err());
        // A value behind a clear flag.
        let mut bad = body.clone();
        bad[12] = 1;
        assert!(BoxHealth::decode(&mut &bad[..]).is_err());
        // Too many outputs declared.
        let mut bad = body[..BoxHealth::FIXED_LEN].to_vec();
        encode_varint(&mut bad, 17);
        assert!(matches!(
            BoxHealth::decode(&mut &bad[..]),
            Err(DecodeError::Invalid {
                field: "outputs",
                ..
            })
        ));
        // An unknown sink state.
        let mut h = BoxHealth::default();
        h.outputs.push(OutputHealth {
            name: "x".into(),
            state: SinkHealth::Silent,
        });
        let mut bytes = Vec::new();
        h.encode(&mut bytes);
        let at = BoxHealth::FIXED_LEN + 1 + 2;
        bytes[at] = 9;
        assert!(BoxHealth::decode(&mut &bytes[..]).is_err());
        // Every cut is an error, never a panic.
        let mut bytes = Vec::new();
        full().encode(&mut bytes);
        for cut in 0..bytes.len() {
            assert!(
                BoxHealth::decode(&mut &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn derived_figures() {
        let h = full();
        assert_eq!(h.temperature_c(), Some(-5.5));
        assert_eq!(h.disk_free_percent(), Some(10.0));
        assert_eq!(h.memory_available_percent(), Some(50.0));
        assert_eq!(h.load1(), Some(1.5));
        let empty_disk = BoxHealth {
            disk: Some((0, 0)),
            ..BoxHealth::default()
        };
        assert_eq!(empty_disk.disk_free_percent(), None);
    }
}
