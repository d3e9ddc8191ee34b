//! SRTP (RFC 3711) for the live studio's RTP: AES_CM_128_HMAC_SHA1_80 with a pre-shared
//! master key, the suite ffmpeg sends with `-srtp_out_suite AES_CM_128_HMAC_SHA1_80
//! -srtp_out_params <base64 of 16 key + 14 salt bytes>` to `srtp://SERVER:PORT`.
//!
//! # Why
//! The live RTP allowlist checks the source address of a UDP datagram, which anyone on the
//! studio's network can forge, and whoever gets audio into the live input speaks to every
//! loudspeaker of the district. With a key, only a sender that holds it can put audio on
//! air: every packet must carry a valid HMAC-SHA1-80 tag or it is dropped unread, and a
//! packet heard before is dropped too.
//!
//! # Shape
//! [`SrtpReceiver::unprotect`] is sans-IO: an SRTP datagram in, the plain RTP packet or a
//! typed [`SrtpError`] out. It keeps, per SSRC, the rollover counter and the replay window,
//! and only ever updates them from packets that authenticated, so forged packets cannot
//! move them. [`SrtpSender`] is the other end, for tests and fuzzing.
//!
//! # Rules (RFC 3711)
//! - Session keys are derived once (key derivation rate 0, which is what ffmpeg uses, §4.3).
//! - The packet index is estimated from the sequence number and the highest one
//!   authenticated so far (§3.3.1, Appendix A).
//! - An SSRC not heard before is at rollover counter 0 (§3.3.1), unless its first packets
//!   do not authenticate there: the sender may have been sending for longer than one wrap
//!   of the sequence number before this receiver heard it, as after a server restart in
//!   the middle of a broadcast. Then a bounded, rate-limited search tries other rollover
//!   counters, up to [`MAX_SEARCHED_ROC`], and the stream resumes at the one whose tag
//!   is right (see `SrtpReceiver::search`). The same search, forward only, resumes a known
//!   SSRC unheard for half a wrap or more, which the estimate cannot place.
//! - A 64-packet replay window (§3.3.2): a packet whose index was authenticated already, or
//!   that is 64 or more behind the highest, is [`SrtpError::Replayed`].
//! - The tag is checked in constant time before anything is decrypted (§3.3, step 5).
//!
//! # What it does not protect against
//! The key is static, as ffmpeg's `srtp://` has no key exchange. The replay state is kept
//! in memory, for the last [`MAX_CONTEXTS`] SSRCs: after a server restart, a recording of
//! an earlier broadcast made with the same key would authenticate again, from any point of
//! it, since the rollover counter search that resumes a genuine stream resumes a recording
//! too. Rotating the key (a new file on both sides) ends that; so does not reusing a key
//! across many broadcasts.
//! SRTCP is not handled: the live input does not read RTCP.

use std::fmt;
use std::time::{Duration, Instant};

use aes::cipher::{KeyIvInit, StreamCipher};
use ring::hmac;
use subtle::ConstantTimeEq;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Bytes of the master key.
pub const MASTER_KEY_LEN: usize = 16;
/// Bytes of the master salt.
pub const MASTER_SALT_LEN: usize = 14;
/// Bytes of ffmpeg's `-srtp_out_params` (base64-decoded): key then salt.
pub const MASTER_LEN: usize = MASTER_KEY_LEN + MASTER_SALT_LEN;
/// Bytes of the HMAC-SHA1-80 tag at the end of every packet.
pub const TAG_LEN: usize = 10;
/// Bytes of the HMAC-SHA1 session authentication key.
const AUTH_KEY_LEN: usize = 20;
/// RFC 3711's minimum replay window.
const REPLAY_WINDOW: u64 = 64;
/// SSRCs whose rollover counter and replay window are remembered. A restarted encoder
/// picks a new SSRC; remembering the old ones keeps their packets from being replayed while
/// the server runs. Only authenticated packets create an entry, so this bounds memory, not
/// what an attacker without the key can do.
pub const MAX_CONTEXTS: usize = 64;
/// Rollover counters every search tries, from 0: a stream that wrapped up to 31 times
/// before the receiver heard it (11 hours of ffmpeg's 20 ms Opus packets; fewer hours of
/// shorter packets) is resumed at its first packet.
const NEAR_ROCS: u32 = 32;
/// Rollover counters a search tries beyond the near ones: slice `seq % SWEEP_SLICES` of
/// [`NEAR_ROCS`]..=[`MAX_SEARCHED_ROC`]. Choosing the slice by the packet's sequence
/// number sweeps them all over that many consecutive packets with no state to keep, and
/// packets from others cannot stop or restart the sweep.
const SWEEP_SLICE: u32 = 64;
const SWEEP_SLICES: u16 = 1024;
/// Highest rollover counter a search reaches: 65 567 wraps, more than two years of 20 ms
/// packets without a restart of the sender.
pub const MAX_SEARCHED_ROC: u32 = NEAR_ROCS + SWEEP_SLICES as u32 * SWEEP_SLICE - 1;
/// A search is at most one every this often, whatever arrives, so that forgeries cannot
/// make the receiver check more than 500 × ([`NEAR_ROCS`] + [`SWEEP_SLICE`]) tags a second
/// on top of one per packet. It is shorter than any packet a studio sends (Opus packets
/// last 2.5 ms or more), so that every packet of a genuine sender gets its search when no
/// one else sends: were only every other packet searched, the sequence numbers of the
/// searched ones would all be even and half the slices would never be tried.
const SEARCH_INTERVAL: Duration = Duration::from_millis(2);
/// Key derivation labels (RFC 3711 §4.3.1).
const LABEL_ENCRYPTION: u8 = 0x00;
const LABEL_AUTHENTICATION: u8 = 0x01;
const LABEL_SALT: u8 = 0x02;

/// An SRTP master key and salt, as ffmpeg's `-srtp_out_params` carries them.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey {
    key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
}

impl fmt::Debug for MasterKey {
    // A key must never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    /// The key from its 30 bytes: 16 of key, then 14 of salt.
    pub fn from_bytes(bytes: &[u8; MASTER_LEN]) -> Self {
        let mut key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        key.copy_from_slice(&bytes[..MASTER_KEY_LEN]);
        salt.copy_from_slice(&bytes[MASTER_KEY_LEN..]);
        MasterKey { key, salt }
    }

    /// The key derivation function (RFC 3711 §4.3.1, key derivation rate 0): AES-CM keyed
    /// with the master key, the IV the master salt with `label` at byte 7, shifted 16 bits.
    fn derive(&self, label: u8, out: &mut [u8]) {
        let mut iv = [0u8; 16];
        iv[..MASTER_SALT_LEN].copy_from_slice(&self.salt);
        iv[7] ^= label;
        out.fill(0);
        Aes128Ctr::new(&self.key.into(), &iv.into()).apply_keystream(out);
    }
}

/// The session keys of one direction of SRTP.
#[derive(Clone)]
struct SessionKeys {
    cipher_key: [u8; MASTER_KEY_LEN],
    salt: [u8; MASTER_SALT_LEN],
    auth: hmac::Key,
}

impl SessionKeys {
    fn derive(master: &MasterKey) -> Self {
        let mut cipher_key = [0; MASTER_KEY_LEN];
        let mut salt = [0; MASTER_SALT_LEN];
        let mut auth_key = [0; AUTH_KEY_LEN];
        master.derive(LABEL_ENCRYPTION, &mut cipher_key);
        master.derive(LABEL_SALT, &mut salt);
        master.derive(LABEL_AUTHENTICATION, &mut auth_key);
        SessionKeys {
            cipher_key,
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &auth_key),
        }
    }

    /// Encrypts or decrypts `payload` in place (AES-CM, RFC 3711 §4.1.1).
    fn apply_keystream(&self, ssrc: u32, index: u64, payload: &mut [u8]) {
        Aes128Ctr::new(&self.cipher_key.into(), &iv(&self.salt, ssrc, index).into())
            .apply_keystream(payload);
    }

    /// The HMAC-SHA1 state after the authenticated portion of a packet: the tag under each
    /// rollover counter is then one 4-byte update and a finish away (§4.2), which is what
    /// makes trying many rollover counters on one packet cheap.
    fn mac(&self, authenticated: &[u8]) -> hmac::Context {
        let mut context = hmac::Context::with_key(&self.auth);
        context.update(authenticated);
        context
    }

    /// The full HMAC-SHA1 of the authenticated portion (in `mac`) and the rollover counter.
    fn tag(mac: &hmac::Context, roc: u32) -> hmac::Tag {
        let mut context = mac.clone();
        context.update(&roc.to_be_bytes());
        context.sign()
    }
}

/// The AES-CM IV: (salt · 2^16) XOR (SSRC · 2^64) XOR (index · 2^16).
fn iv(salt: &[u8; MASTER_SALT_LEN], ssrc: u32, index: u64) -> [u8; 16] {
    let mut iv = [0u8; 16];
    iv[..MASTER_SALT_LEN].copy_from_slice(salt);
    for (b, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
        *b ^= s;
    }
    for (b, i) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
        *b ^= i;
    }
    iv
}

/// Why a datagram was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Too short for an RTP header and a tag, or not RTP version 2: it cannot be SRTP.
    #[error("not an SRTP packet: {0}")]
    Malformed(&'static str),
    /// The tag is not right: sent without the key (plain RTP included), or altered.
    #[error("not authenticated")]
    NotAuthenticated,
    /// Authenticated before, or too old to tell (§3.3.2).
    #[error("replayed")]
    Replayed,
}

/// Where the parts of an SRTP packet are.
struct Layout {
    ssrc: u32,
    seq: u16,
    /// Bytes of the RTP header, CSRCs and extension: sent in the clear.
    header: usize,
    /// Bytes before the tag.
    body: usize,
}

fn layout(packet: &[u8]) -> Result<Layout, SrtpError> {
    const FIXED: usize = 12;
    let byte = |i: usize| {
        packet
            .get(i)
            .copied()
            .ok_or(SrtpError::Malformed("too short"))
    };
    let first = byte(0)?;
    if first >> 6 != 2 {
        return Err(SrtpError::Malformed("not RTP version 2"));
    }
    let mut header = FIXED + 4 * usize::from(first & 0x0f);
    if first & 0x10 != 0 {
        let words = u16::from_be_bytes([byte(header + 2)?, byte(header + 3)?]);
        header += 4 + 4 * usize::from(words);
    }
    let body = packet
        .len()
        .checked_sub(TAG_LEN)
        .filter(|&body| body >= header)
        .ok_or(SrtpError::Malformed("too short for its header and a tag"))?;
    Ok(Layout {
        ssrc: u32::from_be_bytes([byte(8)?, byte(9)?, byte(10)?, byte(11)?]),
        seq: u16::from_be_bytes([byte(2)?, byte(3)?]),
        header,
        body,
    })
}

/// What is known of one SSRC's stream, from authenticated packets only.
#[derive(Debug, Clone, Copy)]
struct Context {
    ssrc: u32,
    roc: u32,
    /// Highest sequence number authenticated (RFC 3711's s_l).
    s_l: u16,
    /// Highest index authenticated, and which of the 64 before it were (bit n: index − n).
    highest: u64,
    window: u64,
    /// For evicting the least recently heard.
    last_used: u64,
}

impl Context {
    /// The rollover counter the sender used for `seq` (RFC 3711 Appendix A), or `None` when
    /// it would precede the stream's first rollover counter, which no sender can have used.
    fn estimate_roc(&self, seq: u16) -> Option<u32> {
        const HALF: u16 = 1 << 15;
        if self.s_l < HALF {
            if seq > self.s_l && seq - self.s_l > HALF {
                return self.roc.checked_sub(1);
            }
        } else if self.s_l - HALF > seq {
            return self.roc.checked_add(1);
        }
        Some(self.roc)
    }

    fn check_replay(&self, index: u64) -> Result<(), SrtpError> {
        if index > self.highest {
            return Ok(());
        }
        let behind = self.highest - index;
        if behind >= REPLAY_WINDOW || self.window & (1 << behind) != 0 {
            return Err(SrtpError::Replayed);
        }
        Ok(())
    }

    /// Notes an authenticated packet (RFC 3711 §3.3.1 step 7 and §3.3.2).
    fn accept(&mut self, roc: u32, seq: u16, index: u64) {
        if roc > self.roc {
            self.roc = roc;
            self.s_l = seq;
        } else if roc == self.roc && seq > self.s_l {
            self.s_l = seq;
        }
        if index > self.highest {
            let ahead = index - self.highest;
            self.window = if ahead >= REPLAY_WINDOW {
                0
            } else {
                self.window << ahead
            };
            self.window |= 1;
            self.highest = index;
        } else {
            self.window |= 1 << (self.highest - index);
        }
    }
}

fn index_of(roc: u32, seq: u16) -> u64 {
    (u64::from(roc) << 16) | u64::from(seq)
}

/// The receiving end of SRTP. See the module docs.
pub struct SrtpReceiver {
    keys: SessionKeys,
    contexts: Vec<Context>,
    clock: u64,
    /// No rollover counter search before this (see [`SEARCH_INTERVAL`]).
    next_search: Option<Instant>,
    tag_checks: u64,
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("ssrcs", &self.contexts.len())
            .field("tag_checks", &self.tag_checks)
            .finish_non_exhaustive()
    }
}

impl SrtpReceiver {
    pub fn new(master: &MasterKey) -> Self {
        SrtpReceiver {
            keys: SessionKeys::derive(master),
            contexts: Vec::new(),
            clock: 0,
            next_search: None,
            tag_checks: 0,
        }
    }

    /// Tags computed so far: the receiver's work, which forgeries must not multiply.
    pub fn tag_checks(&self) -> u64 {
        self.tag_checks
    }

    /// Checks one SRTP datagram, which arrived at `now`, and returns its RTP packet,
    /// decrypted.
    pub fn unprotect(&mut self, now: Instant, packet: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let Layout {
            ssrc,
            seq,
            header,
            body,
        } = layout(packet)?;
        let tag = &packet[body..];
        let known = self.contexts.iter().position(|c| c.ssrc == ssrc);
        let mac = self.keys.mac(&packet[..body]);
        // A new SSRC starts at rollover counter 0 with its first packet (RFC 3711 §3.3.1).
        let estimate = match known {
            Some(i) => self.contexts[i].estimate_roc(seq),
            None => Some(0),
        };
        let at_estimate = match (estimate, known) {
            (None, _) => Err(SrtpError::NotAuthenticated),
            (Some(roc), Some(i)) if self.contexts[i].check_replay(index_of(roc, seq)).is_err() => {
                Err(SrtpError::Replayed)
            }
            (Some(roc), _) if self.authenticates(&mac, roc, tag) => Ok(roc),
            (Some(_), _) => Err(SrtpError::NotAuthenticated),
        };
        let roc = match at_estimate {
            Ok(roc) => roc,
            Err(e) => {
                // Only ever forward of a known stream, past all it authenticated: a sender's
                // rollover counter does not go back, and nothing there can be a replay.
                let after = known.map(|i| (self.contexts[i].roc, self.contexts[i].highest));
                self.search(now, seq, after, estimate, &mac, tag).ok_or(e)?
            }
        };
        let index = index_of(roc, seq);

        self.clock += 1;
        match known {
            Some(i) => {
                let context = &mut self.contexts[i];
                if Some(roc) != estimate {
                    tracing::info!(
                        "SRTP: SSRC {ssrc:#010x} resumed at rollover counter {roc} after \
                         half a wrap of its sequence number (32 768 packets) or more unheard"
                    );
                }
                context.accept(roc, seq, index);
                context.last_used = self.clock;
            }
            None => {
                if Some(roc) != estimate {
                    tracing::info!(
                        "SRTP: SSRC {ssrc:#010x} resumed at rollover counter {roc} after \
                         restart (its sequence number had wrapped before this server heard it)"
                    );
                }
                self.remember(Context {
                    ssrc,
                    roc,
                    s_l: seq,
                    highest: index,
                    window: 1,
                    last_used: self.clock,
                })
            }
        }
        let mut rtp = packet[..body].to_vec();
        self.keys.apply_keystream(ssrc, index, &mut rtp[header..]);
        Ok(rtp)
    }

    /// Whether `tag` is the packet's tag under rollover counter `roc`, in constant time.
    fn authenticates(&mut self, mac: &hmac::Context, roc: u32, tag: &[u8]) -> bool {
        self.tag_checks += 1;
        let expected = SessionKeys::tag(mac, roc);
        let expected = expected.as_ref().get(..TAG_LEN).unwrap_or_default();
        bool::from(expected.ct_eq(tag))
    }

    /// The rollover counter of a packet whose tag is not right at `tried`, RFC 3711's
    /// estimate (`None`: it had none), when the sender's sequence number may have wrapped
    /// without this receiver hearing it:
    /// - from an SSRC not heard before (`after` is `None`): as when the server restarts in
    ///   the middle of a long broadcast. RFC 3711's rollover counter 0 for a new SSRC
    ///   would refuse every packet until the sender restarts;
    /// - from a known SSRC (`after` is its rollover counter and highest index), unheard
    ///   for half a wrap or more, as in a network outage of 11 minutes of 20 ms packets:
    ///   the estimate, from the highest sequence number heard, can then never be right
    ///   again. Only counters from the known one on, and indices past the highest, are
    ///   tried, so that replay protection stays whole.
    ///
    /// Why this shape: nothing in a packet tells its rollover counter (the RTP timestamp
    /// starts anywhere too), and one kept in the data directory would be stale whenever the
    /// sender went on while the server was down, so the receiver tries counters until the
    /// tag is right. A try is one HMAC-SHA1 finish, about a microsecond, as the packet is
    /// hashed once (`mac`). Each search tries the smallest counters, since broadcasts are
    /// mostly hours long, and one slice of the rest up to [`MAX_SEARCHED_ROC`], chosen by
    /// the sequence number, so that the sender's consecutive packets sweep them all in
    /// [`SWEEP_SLICES`] packets (20 s of 20 ms packets). The searches, not the SSRCs, are
    /// rate-limited, since forgeries can carry any SSRC: a flood of them delays the
    /// recovery but costs at most 500 searches a second, a few percent of a core, next to
    /// the flood's own cost of one tag and one datagram each. Each try is one more chance
    /// for a forged tag, 96 in 2^80 at most per packet, which changes nothing.
    fn search(
        &mut self,
        now: Instant,
        seq: u16,
        after: Option<(u32, u64)>,
        tried: Option<u32>,
        mac: &hmac::Context,
        tag: &[u8],
    ) -> Option<u32> {
        if self.next_search.is_some_and(|next| now < next) {
            return None;
        }
        self.next_search = Some(now + SEARCH_INTERVAL);
        let (from, highest) = after.map_or((0, None), |(roc, highest)| (roc, Some(highest)));
        let slice = NEAR_ROCS + u32::from(seq % SWEEP_SLICES) * SWEEP_SLICE;
        (0..NEAR_ROCS)
            .chain(slice..slice + SWEEP_SLICE)
            .filter_map(|offset| from.checked_add(offset))
            .filter(|&roc| Some(roc) != tried)
            .filter(|&roc| highest.is_none_or(|highest| index_of(roc, seq) > highest))
            .find(|&roc| self.authenticates(mac, roc, tag))
    }

    fn remember(&mut self, context: Context) {
        if self.contexts.len() < MAX_CONTEXTS {
            self.contexts.push(context);
        } else if let Some(oldest) = self.contexts.iter_mut().min_by_key(|c| c.last_used) {
            *oldest = context;
        }
    }
}

/// The sending end of SRTP, for one SSRC: what ffmpeg does, for tests and fuzzing.
pub struct SrtpSender {
    keys: SessionKeys,
    roc: u32,
    last_seq: Option<u16>,
}

impl fmt::Debug for SrtpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpSender")
            .field("roc", &self.roc)
            .finish_non_exhaustive()
    }
}

impl SrtpSender {
    pub fn new(master: &MasterKey) -> Self {
        SrtpSender {
            keys: SessionKeys::derive(master),
            roc: 0,
            last_seq: None,
        }
    }

    /// Encrypts and tags one RTP packet. Packets must come in sequence order (the rollover
    /// counter advances when the sequence number wraps).
    pub fn protect(&mut self, rtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
        let mut out = rtp.to_vec();
        out.extend_from_slice(&[0; TAG_LEN]);
        let Layout {
            ssrc,
            seq,
            header,
            body,
        } = layout(&out)?;
        if self.last_seq.is_some_and(|last| seq < last) {
            self.roc = self.roc.wrapping_add(1);
        }
        self.last_seq = Some(seq);
        self.keys
            .apply_keystream(ssrc, index_of(self.roc, seq), &mut out[header..body]);
        let tag = SessionKeys::tag(&self.keys.mac(&out[..body]), self.roc);
        out[body..].copy_from_slice(tag.as_ref().get(..TAG_LEN).unwrap_or_default());
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
