use std::sync::OnceLock;

use super::*;

/// When packets arrive in the tests that are not about time.
fn t0() -> Instant {
    static T0: OnceLock<Instant> = OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn master(key: &str, salt: &str) -> MasterKey {
    let bytes: [u8; MASTER_LEN] = [hex(key), hex(salt)].concat().try_into().expect("30");
    MasterKey::from_bytes(&bytes)
}

fn rfc_master() -> MasterKey {
    master(
        "E1F97A0D3E018BE0D64FA32C06DE4139",
        "0EC675AD498AFEEBB6960B3AABE6",
    )
}

#[test]
fn key_derivation_matches_rfc_3711_b3() {
    let keys = SessionKeys::derive(&rfc_master());
    assert_eq!(
        keys.cipher_key.to_vec(),
        hex("C61E7A93744F39EE10734AFE3FF7A087")
    );
    assert_eq!(keys.salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0; AUTH_KEY_LEN];
    rfc_master().derive(LABEL_AUTHENTICATION, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

#[test]
fn keystream_matches_rfc_3711_b2() {
    // B.2 gives the session key and salt directly; SSRC 0, index 0.
    let keys = SessionKeys {
        cipher_key: hex("2B7E151628AED2A6ABF7158809CF4F3C")
            .try_into()
            .expect("16"),
        salt: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().expect("14"),
        auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &[]),
    };
    let mut stream = vec![0u8; 16 * 0xff02];
    keys.apply_keystream(0, 0, &mut stream);
    let block = |n: usize| stream[16 * n..16 * (n + 1)].to_vec();
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xfeff), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xff00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xff01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 97];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn pair() -> (SrtpSender, SrtpReceiver) {
    let key = rfc_master();
    (SrtpSender::new(&key), SrtpReceiver::new(&key))
}

#[test]
fn protect_then_unprotect_gives_the_packet_back_with_the_payload_hidden() {
    let (mut tx, mut rx) = pair();
    let plain = rtp(7, 0x1234, b"studio audio, twenty ms of it");
    let srtp = tx.protect(&plain).expect("protect");
    assert_eq!(srtp.len(), plain.len() + TAG_LEN);
    assert_eq!(srtp[..12], plain[..12], "the header stays in the clear");
    assert_ne!(
        srtp[12..plain.len()],
        plain[12..],
        "the payload is encrypted"
    );
    assert_eq!(rx.unprotect(t0(), &srtp), Ok(plain));
}

#[test]
fn tampered_packets_are_not_authenticated() {
    let (mut tx, mut rx) = pair();
    let srtp = tx.protect(&rtp(1, 5, b"payload bytes")).expect("protect");
    for i in 0..srtp.len() {
        let mut bad = srtp.clone();
        bad[i] ^= 0x01;
        let got = rx.unprotect(t0(), &bad);
        assert!(
            matches!(
                got,
                Err(SrtpError::NotAuthenticated | SrtpError::Malformed(_))
            ),
            "byte {i} flipped: {got:?}"
        );
    }
    assert!(
        rx.unprotect(t0(), &srtp).is_ok(),
        "the genuine packet still passes"
    );
}

#[test]
fn a_wrong_key_and_plain_rtp_are_not_authenticated() {
    let mut tx = SrtpSender::new(&master(
        "000102030405060708090A0B0C0D0E0F",
        "0EC675AD498AFEEBB6960B3AABE6",
    ));
    let (_, mut rx) = pair();
    let plain = rtp(1, 5, b"hello loudspeakers");
    let srtp = tx.protect(&plain).expect("protect");
    assert_eq!(rx.unprotect(t0(), &srtp), Err(SrtpError::NotAuthenticated));
    // Plain RTP with ten bytes of payload where the tag would be.
    assert_eq!(rx.unprotect(t0(), &plain), Err(SrtpError::NotAuthenticated));
    assert_eq!(
        rx.unprotect(t0(), &plain[..15]),
        Err(SrtpError::Malformed("too short for its header and a tag"))
    );
}

#[test]
fn replays_are_refused_within_and_behind_the_window() {
    let (mut tx, mut rx) = pair();
    let packets: Vec<Vec<u8>> = (0..100u16)
        .map(|seq| tx.protect(&rtp(seq, 9, b"x")).expect("protect"))
        .collect();
    // Out of order within the window is fine, once.
    assert!(rx.unprotect(t0(), &packets[10]).is_ok());
    assert!(rx.unprotect(t0(), &packets[5]).is_ok());
    assert_eq!(rx.unprotect(t0(), &packets[5]), Err(SrtpError::Replayed));
    assert_eq!(rx.unprotect(t0(), &packets[10]), Err(SrtpError::Replayed));
    assert!(rx.unprotect(t0(), &packets[9]).is_ok());
    assert!(rx.unprotect(t0(), &packets[99]).is_ok());
    // 35 behind the highest (99): inside the window, never seen.
    assert!(rx.unprotect(t0(), &packets[64]).is_ok());
    // 64 behind: too old to tell, refused.
    assert_eq!(rx.unprotect(t0(), &packets[35]), Err(SrtpError::Replayed));
    assert_eq!(rx.unprotect(t0(), &packets[99]), Err(SrtpError::Replayed));
}

#[test]
fn the_rollover_counter_follows_the_sequence_number_wrap() {
    let (mut tx, mut rx) = pair();
    // 65 530 is held back and arrives after the wrap: it must still be placed before it.
    let mut held_back = None;
    for seq in (65_500..=u16::MAX).chain(0..200) {
        let plain = rtp(seq, 3, b"audio");
        let srtp = tx.protect(&plain).expect("protect");
        if seq == 65_530 {
            held_back = Some((srtp, plain));
            continue;
        }
        assert_eq!(rx.unprotect(t0(), &srtp), Ok(plain), "seq {seq}");
        if seq == 10 {
            let (srtp, plain) = held_back.take().expect("held back");
            assert_eq!(
                rx.unprotect(t0(), &srtp),
                Ok(plain),
                "reordered across the wrap"
            );
        }
    }
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (1, 199));
}

#[test]
fn forged_packets_do_not_move_the_rollover_counter() {
    let (mut tx, mut rx) = pair();
    assert!(rx
        .unprotect(t0(), &tx.protect(&rtp(100, 3, b"a")).expect("protect"))
        .is_ok());
    // A forged packet that would imply a wrap.
    let mut forged = rtp(40_000, 3, b"a");
    forged.extend_from_slice(&[0; TAG_LEN]);
    assert_eq!(
        rx.unprotect(t0(), &forged),
        Err(SrtpError::NotAuthenticated)
    );
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (0, 100));
    assert!(rx
        .unprotect(t0(), &tx.protect(&rtp(101, 3, b"a")).expect("protect"))
        .is_ok());
}

#[test]
fn ssrc_contexts_are_bounded_and_old_ones_evicted() {
    let key = rfc_master();
    let mut rx = SrtpReceiver::new(&key);
    for ssrc in 0..(MAX_CONTEXTS as u32 + 10) {
        let mut tx = SrtpSender::new(&key);
        let srtp = tx.protect(&rtp(1, ssrc, b"a")).expect("protect");
        assert!(rx.unprotect(t0(), &srtp).is_ok());
    }
    assert_eq!(rx.contexts.len(), MAX_CONTEXTS);
    assert!(rx.contexts.iter().all(|c| c.ssrc >= 10));
}

#[test]
fn header_extensions_and_csrcs_stay_in_the_clear() {
    let (mut tx, mut rx) = pair();
    // CC = 1, X = 1 with one word of extension.
    let mut plain = vec![0x91, 97, 0, 1, 0, 0, 0, 0, 0, 0, 0, 7];
    plain.extend_from_slice(&[1, 2, 3, 4]); // CSRC
    plain.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]); // extension
    plain.extend_from_slice(b"payload");
    let srtp = tx.protect(&plain).expect("protect");
    assert_eq!(srtp[..24], plain[..24]);
    assert_ne!(srtp[24..plain.len()], plain[24..]);
    assert_eq!(rx.unprotect(t0(), &srtp), Ok(plain.clone()));
    // An extension that claims more than the packet holds.
    let mut bad = plain.clone();
    bad[18] = 0xff;
    assert!(matches!(
        rx.unprotect(t0(), &bad),
        Err(SrtpError::Malformed(_))
    ));
}

/// Tag checks one search may make at most.
const SEARCH_TRIES: u64 = (NEAR_ROCS + SWEEP_SLICE) as u64;

#[test]
fn a_fresh_receiver_resumes_a_stream_that_wrapped_before_it_heard_it() {
    // The sender started at 65 000 and sent 1 000 packets: it wrapped at the 537th. The
    // receiver, as after a server restart, hears it from the 600th on.
    let (mut tx, mut rx) = pair();
    let sent: Vec<(Vec<u8>, Vec<u8>)> = (0..1_000u16)
        .map(|k| {
            let plain = rtp(65_000u16.wrapping_add(k), 0xfeed, &k.to_be_bytes());
            (tx.protect(&plain).expect("protect"), plain)
        })
        .collect();
    let mut now = t0();
    let mut checks = rx.tag_checks();
    for (srtp, plain) in &sent[600..] {
        now += Duration::from_millis(20);
        assert_eq!(rx.unprotect(now, srtp).as_ref(), Ok(plain));
    }
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (1, 463));
    checks = rx.tag_checks() - checks;
    assert!(
        checks <= 400 + SEARCH_TRIES,
        "{checks} tag checks: one search, then one per packet"
    );
    // Replays, and a packet from before the wrap, far behind, are still refused.
    assert_eq!(rx.unprotect(now, &sent[999].0), Err(SrtpError::Replayed));
    assert_eq!(rx.unprotect(now, &sent[600].0), Err(SrtpError::Replayed));
    assert_eq!(rx.unprotect(now, &sent[500].0), Err(SrtpError::Replayed));
    // The next packet still comes through: nothing above moved the context.
    let plain = rtp(464, 0xfeed, b"next");
    let srtp = tx.protect(&plain).expect("protect");
    assert_eq!(rx.unprotect(now, &srtp), Ok(plain));
}

/// Sends from `first_seq` on, `every` apart, at rollover counter `roc` until the wrap,
/// until a fresh receiver authenticates a packet or `give_up` packets have gone; then
/// checks the next 100. How many packets were refused, or `None` if all were.
fn packets_refused_before_resuming(
    roc: u32,
    first_seq: u16,
    every: Duration,
    give_up: u16,
) -> Option<u16> {
    let (mut tx, mut rx) = pair();
    tx.roc = roc;
    let mut now = t0();
    let mut send = |k: u16, rx: &mut SrtpReceiver| {
        let plain = rtp(first_seq.wrapping_add(k), 42, &[k as u8; 160]);
        now += every;
        (
            rx.unprotect(now, &tx.protect(&plain).expect("protect")),
            plain,
        )
    };
    let refused = (0..give_up).find(|&k| match send(k, &mut rx) {
        (Ok(got), plain) => {
            assert_eq!(got, plain);
            true
        }
        (got, _) => {
            assert_eq!(got, Err(SrtpError::NotAuthenticated), "packet {k}");
            false
        }
    })?;
    for k in refused + 1..refused + 101 {
        let (got, plain) = send(k, &mut rx);
        assert_eq!(got, Ok(plain), "packet {k} after resuming");
    }
    Some(refused)
}

#[test]
fn far_rollover_counters_are_found_within_one_sweep_of_sequence_numbers() {
    let ms = Duration::from_millis;
    for roc in [1, NEAR_ROCS - 1, NEAR_ROCS, 40_000, MAX_SEARCHED_ROC] {
        // Opus packets of 20 ms, as ffmpeg sends, and the shortest there are.
        for (first_seq, every) in [(0, ms(20)), (1_000, ms(20)), (65_500, ms(20))]
            .into_iter()
            .chain([(7, Duration::from_micros(2_500))])
        {
            let refused = packets_refused_before_resuming(roc, first_seq, every, 2 * SWEEP_SLICES);
            let within = if roc < NEAR_ROCS { 0 } else { SWEEP_SLICES };
            assert!(
                refused.is_some_and(|n| n <= within),
                "rollover counter {roc} from {first_seq}: {refused:?} refused"
            );
        }
    }
    // Beyond the search, the sender has to restart (a new SSRC starts at 0).
    assert_eq!(
        packets_refused_before_resuming(MAX_SEARCHED_ROC + 2, 0, ms(20), 2 * SWEEP_SLICES),
        None
    );
}

#[test]
fn a_stream_unheard_for_more_than_half_a_wrap_resumes() {
    // Heard from 60 000 to 60 099, then not for 35 000 packets (a network outage of
    // 12 minutes): it comes back at 30 100 after a wrap, where RFC 3711's estimate
    // from 60 099 says rollover counter 0 (a replay) and will never say 1.
    let (mut tx, mut rx) = pair();
    let mut now = t0();
    let mut sent = Vec::new();
    for k in 0..35_200u16 {
        let plain = rtp(60_000u16.wrapping_add(k), 77, &k.to_be_bytes());
        sent.push((tx.protect(&plain).expect("protect"), plain));
    }
    for (srtp, plain) in sent[..100].iter().chain(&sent[35_100..]) {
        now += Duration::from_millis(20);
        assert_eq!(rx.unprotect(now, srtp).as_ref(), Ok(plain));
    }
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (1, 29_663));
    // Replays are still refused: from after the outage as replays, and from before it,
    // more than half a wrap ago, as RFC 3711 places them: ahead, where their tags are
    // wrong at every rollover counter tried.
    for (k, refused) in [
        (50, SrtpError::NotAuthenticated),
        (99, SrtpError::NotAuthenticated),
        (35_100, SrtpError::Replayed),
        (35_199, SrtpError::Replayed),
    ] {
        now += Duration::from_millis(20);
        assert_eq!(rx.unprotect(now, &sent[k].0), Err(refused), "packet {k}");
    }
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (1, 29_663));
}

/// A packet that parses as SRTP with anything in it, as a flood of forgeries would be.
fn forgeries(seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut state = seed;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mut p = rtp(state as u16, (state >> 16) as u32, &state.to_le_bytes());
        p.extend_from_slice(&state.to_be_bytes()[..TAG_LEN - 2]);
        p.extend_from_slice(&[0x5a, 0xa5]);
        p
    })
}

#[test]
fn forgeries_cost_a_bounded_number_of_tag_checks() {
    let (mut tx, mut rx) = pair();
    // All at once: one search in all.
    let before = rx.tag_checks();
    for forged in forgeries(0x9e37_79b9_7f4a_7c15).take(10_000) {
        assert_eq!(
            rx.unprotect(t0(), &forged),
            Err(SrtpError::NotAuthenticated)
        );
    }
    assert!(rx.tag_checks() - before <= 10_000 + SEARCH_TRIES);
    // One every 500 µs for 5 s: a search at most every 2 ms.
    let before = rx.tag_checks();
    let mut now = t0();
    for forged in forgeries(7).take(10_000) {
        now += Duration::from_micros(500);
        assert_eq!(rx.unprotect(now, &forged), Err(SrtpError::NotAuthenticated));
    }
    assert!(rx.tag_checks() - before <= 10_000 + 2_501 * SEARCH_TRIES);
    assert!(rx.contexts.is_empty());
    // A wrapped sender is still resumed once the flood stops.
    tx.roc = 5;
    let plain = rtp(9, 1, b"on air again");
    let srtp = tx.protect(&plain).expect("protect");
    now += SEARCH_INTERVAL;
    assert_eq!(rx.unprotect(now, &srtp), Ok(plain));
    // Forgeries in its name, which search forward of its rollover counter, are bounded
    // the same way, and do not move it.
    let before = rx.tag_checks();
    for mut forged in forgeries(11).take(10_000) {
        forged[8..12].copy_from_slice(&1u32.to_be_bytes());
        now += Duration::from_micros(500);
        let got = rx.unprotect(now, &forged);
        assert!(
            matches!(got, Err(SrtpError::NotAuthenticated | SrtpError::Replayed)),
            "{got:?}"
        );
    }
    assert!(rx.tag_checks() - before <= 10_000 + 2_501 * SEARCH_TRIES);
    assert_eq!((rx.contexts[0].roc, rx.contexts[0].s_l), (5, 9));
}
