use super::*;

#[test]
fn a_displaced_frame_is_not_counted_as_played() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_programme_start(&start(7, 0, 2));
    p.on_frame(t0, frame(0));
    p.on_frame(t0, frame(1));
    assert_eq!(p.tick(t0), Tick::Play(frame(0)));
    let Tick::Play(second) = p.tick(t0) else {
        panic!("frame 1 plays")
    };
    p.displaced(&second);
    let rec = p.programmes().next().cloned().expect("record");
    assert_eq!(rec.played, 1);
    assert_eq!(p.stats().frames_played, 1);
    assert_eq!(p.stats().frames_displaced, 1);
}
use bytes::Bytes;

fn frame(sequence: u64) -> AudioFrame {
    AudioFrame {
        channel: 0,
        sequence,
        timestamp: sequence * 960,
        server_time_us: sequence * 20_000,
        payload: Bytes::from_static(&[1, 2, 3]),
    }
}

fn start(id: u64, first: u64, frames: u64) -> ProgrammeStart {
    ProgrammeStart {
        channel: 0,
        programme_id: id,
        name: "Bản tin".into(),
        first_sequence: first,
        first_timestamp: first * 960,
        frame_count: frames,
        level: ProgrammeLevel::Priority,
    }
}

#[test]
fn waits_for_the_delay_then_plays_in_order() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::from_millis(100), 100);
    p.on_frame(t0, frame(10));
    p.on_frame(t0, frame(11));
    // 4 slots before the delay has passed: idle.
    for i in 0..5 {
        assert_eq!(p.tick(t0 + SLOT * i), Tick::Idle, "slot {i}");
    }
    assert_eq!(p.tick(t0 + SLOT * 5), Tick::Play(frame(10)));
    assert_eq!(p.tick(t0 + SLOT * 6), Tick::Play(frame(11)));
    assert!(p.on_air());
}

#[test]
fn a_gap_is_lost_not_waited_for_and_late_frames_are_dropped() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_frame(t0, frame(0));
    p.on_frame(t0, frame(2));
    assert_eq!(p.tick(t0), Tick::Play(frame(0)));
    assert_eq!(p.tick(t0 + SLOT), Tick::Lost { sequence: 1 });
    p.on_frame(t0 + SLOT, frame(1));
    assert_eq!(p.tick(t0 + SLOT * 2), Tick::Play(frame(2)));
    assert_eq!(p.stats().frames_lost, 1);
    assert_eq!(p.stats().frames_late, 1);
}

#[test]
fn programme_accounting_and_idle_after_its_end() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_programme_start(&start(7, 100, 3));
    for s in 100..103 {
        p.on_frame(t0, frame(s));
    }
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 7,
        last_sequence: 102,
        frames: 3,
    });
    for s in 100..103 {
        assert_eq!(p.tick(t0), Tick::Play(frame(s)));
    }
    assert_eq!(
        p.tick(t0),
        Tick::Idle,
        "programme over: silence, not underrun"
    );
    let rec = p.programmes().next().cloned().expect("record");
    assert!(rec.complete(), "{rec:?}");
    assert_eq!(p.stats().underrun_slots, 0);
}

#[test]
fn a_stalled_stream_underruns_then_rebuffers() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::from_millis(40), 100);
    p.on_frame(t0, frame(0));
    let mut now = t0 + Duration::from_millis(40);
    assert_eq!(p.tick(now), Tick::Play(frame(0)));
    for _ in 0..MAX_UNDERRUN_SLOTS {
        now += SLOT;
        assert_eq!(p.tick(now), Tick::Underrun);
    }
    assert!(!p.on_air());
    // The stream comes back far ahead: a new run, anchored with a fresh delay.
    p.on_frame(now, frame(500));
    assert_eq!(p.tick(now + SLOT), Tick::Idle);
    assert_eq!(
        p.tick(now + Duration::from_millis(40)),
        Tick::Play(frame(500))
    );
}

#[test]
fn an_interrupted_programme_resumes_as_a_second_segment_and_completes() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_programme_start(&start(1, 0, 0));
    p.on_frame(t0, frame(0));
    p.on_frame(t0, frame(1));
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 1,
        last_sequence: 1,
        frames: 2,
    });
    p.on_programme_start(&start(2, 2, 0));
    p.on_frame(t0, frame(2));
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 2,
        last_sequence: 2,
        frames: 1,
    });
    p.on_programme_start(&start(1, 3, 0));
    p.on_frame(t0, frame(3));
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 1,
        last_sequence: 3,
        frames: 3,
    });
    assert_eq!(
        p.boundary(1),
        Boundary {
            starts: false,
            ends: true
        }
    );
    assert_eq!(
        p.boundary(2),
        Boundary {
            starts: true,
            ends: true
        }
    );
    assert_eq!(
        p.boundary(3),
        Boundary {
            starts: true,
            ends: true
        }
    );
    for s in 0..4 {
        assert_eq!(p.tick(t0), Tick::Play(frame(s)), "no gap at the switches");
    }
    let records: Vec<_> = p.programmes().cloned().collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].segments.len(), 2);
    assert!(
        records[0].complete() && records[1].complete(),
        "{records:?}"
    );
    assert_eq!(records[0].played, 3);
}

#[test]
fn a_switch_is_faded_not_stepped() {
    let mut pcm = vec![10_000i16; 960];
    smooth_switch(
        &mut pcm,
        Boundary {
            starts: true,
            ends: true,
        },
    );
    assert_eq!(pcm[0], 0);
    assert!(pcm[959].abs() < 100, "{}", pcm[959]);
    assert_eq!(pcm[480], 10_000);
    let mut pcm = vec![10_000i16; 960];
    smooth_switch(&mut pcm, Boundary::default());
    assert!(pcm.iter().all(|s| *s == 10_000));
}

#[test]
fn incomplete_programme_is_not_complete() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_programme_start(&start(1, 0, 3));
    p.on_frame(t0, frame(0));
    p.on_frame(t0, frame(2));
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 1,
        last_sequence: 2,
        frames: 3,
    });
    for _ in 0..3 {
        p.tick(t0);
    }
    let rec = p.programmes().next().cloned().expect("record");
    assert_eq!(rec.played, 2);
    assert!(!rec.complete());
}

#[test]
fn programme_ids_of_a_restarted_server_are_new_programmes() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_session(1);
    p.on_programme_start(&start(1, 0, 2));
    p.on_frame(t0, frame(0));
    p.tick(t0);
    p.on_session(2);
    p.on_programme_start(&start(1, 0, 2));
    for s in 0..2 {
        p.on_frame(t0, frame(s));
    }
    p.on_programme_end(&ProgrammeEnd {
        channel: 0,
        programme_id: 1,
        last_sequence: 1,
        frames: 2,
    });
    p.tick(t0);
    p.tick(t0);
    let records: Vec<_> = p.programmes().cloned().collect();
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0].played, 1);
    assert!(!records[0].complete());
    assert!(records[1].complete(), "{:?}", records[1]);
}

/// A frame of the server's tick `k`: sequence `k`, stamped `k` slots after 10 s.
fn timed(sequence: u64, server_time_us: u64) -> AudioFrame {
    AudioFrame {
        server_time_us,
        ..frame(sequence)
    }
}

const BASE_US: u64 = 10_000_000;

/// A clock under which server time `BASE_US` is local instant `at`.
fn clock_at(at: Instant) -> ClockMap {
    ClockMap {
        local_ref: at,
        server_ref_us: BASE_US as f64,
        rate: 0.0,
    }
}

/// Runs the playout thread's loop on a virtual clock from `start` to `end`: frames are
/// delivered at their arrival instants, each slot is decided at its deadline, and the next
/// deadline is the playout's (or one slot later). `change` may alter the playout at a slot.
fn drive(
    p: &mut Playout,
    start: Instant,
    end: Instant,
    mut arrivals: Vec<(Instant, AudioFrame)>,
    mut change: impl FnMut(&mut Playout, Instant),
) -> Vec<(Instant, Tick)> {
    arrivals.sort_by_key(|(at, _)| *at);
    let mut arrivals = arrivals.into_iter().peekable();
    let mut slots = Vec::new();
    let mut deadline = start;
    while deadline < end {
        while let Some((at, f)) = arrivals.next_if(|(at, _)| *at <= deadline) {
            p.on_frame(at, f);
        }
        change(p, deadline);
        let tick = p.tick(deadline);
        slots.push((deadline, tick));
        let next = p.next_deadline().unwrap_or(deadline + SLOT);
        assert!(next >= deadline, "deadlines never go back");
        deadline = next;
    }
    slots
}

fn played(slots: &[(Instant, Tick)]) -> Vec<(Instant, u64)> {
    slots
        .iter()
        .filter_map(|(at, t)| match t {
            Tick::Play(f) => Some((*at, f.sequence)),
            _ => None,
        })
        .collect()
}

const DELAY: Duration = Duration::from_millis(250);

/// Frames 0..n of a server whose tick k is at `BASE_US + k × 20 ms`, arriving `latency`
/// after that (on the clock `clock_at(t0)`), plus `jitter_us(k)`.
fn stream(
    t0: Instant,
    n: u64,
    latency: Duration,
    jitter_us: impl Fn(u64) -> u64,
) -> Vec<(Instant, AudioFrame)> {
    (0..n)
        .map(|k| {
            let sent = t0 + SLOT * k as u32;
            (
                sent + latency + Duration::from_micros(jitter_us(k)),
                timed(k, BASE_US + k * 20_000),
            )
        })
        .collect()
}

#[test]
fn synced_agents_play_each_frame_at_its_server_time_plus_the_delay() {
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(3);
    // Two agents whose links differ by 110 ms and jitter differently; both know the clock.
    let mut near = Playout::new(DELAY, 100);
    let mut far = Playout::new(DELAY, 100);
    near.set_clock(Some(clock_at(t0)));
    far.set_clock(Some(clock_at(t0)));
    // The agents' ticks start at unrelated phases.
    let a = drive(
        &mut near,
        t0 + Duration::from_micros(3_333),
        end,
        stream(t0, 100, Duration::from_millis(5), |k| k * 7 % 3_000),
        |_, _| {},
    );
    let b = drive(
        &mut far,
        t0 + Duration::from_micros(17_000),
        end,
        stream(t0, 100, Duration::from_millis(115), |k| k * 13 % 9_000),
        |_, _| {},
    );
    let (a, b) = (played(&a), played(&b));
    assert_eq!(a.len(), 100);
    assert_eq!(a, b, "both play every frame at the same instant");
    for (at, k) in a {
        assert_eq!(at, t0 + DELAY + SLOT * k as u32, "frame {k}");
    }
    assert_eq!(near.stats().resyncs + far.stats().resyncs, 0);
}

#[test]
fn a_new_estimate_is_slewed_towards_gently() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    p.set_clock(Some(clock_at(t0)));
    let shift = Duration::from_millis(2);
    let changed = t0 + Duration::from_secs(1);
    let slots = drive(
        &mut p,
        t0,
        t0 + Duration::from_millis(3_500),
        stream(t0, 140, Duration::from_millis(5), |_| 0),
        // The estimate moves: the server's clock is found to be 2 ms behind.
        |p, now| {
            if now >= changed {
                p.set_clock(Some(clock_at(t0 + shift)));
            }
        },
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 140, "no frame skipped or lost");
    for w in plays.windows(2) {
        let step = w[1].0 - w[0].0;
        assert!(
            step >= SLOT && step <= SLOT + MAX_SLEW,
            "slot of {step:?} at frame {}",
            w[1].1
        );
    }
    // 2 ms at 50 µs per slot: in step again after 40 slots.
    for (at, k) in plays.iter().filter(|(at, _)| *at > changed + SLOT * 45) {
        assert_eq!(*at, t0 + shift + DELAY + SLOT * *k as u32, "frame {k}");
    }
    assert_eq!(p.stats().resyncs, 0);
}

#[test]
fn an_estimate_past_the_threshold_re_anchors_at_once() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    p.set_clock(Some(clock_at(t0)));
    let changed = t0 + Duration::from_secs(1);
    // The server's clock is found to be 100 ms ahead: frames are due earlier.
    let shift = Duration::from_millis(100);
    let slots = drive(
        &mut p,
        t0,
        t0 + Duration::from_secs(3),
        stream(t0, 140, Duration::from_millis(5), |_| 0),
        |p, now| {
            if now >= changed {
                p.set_clock(Some(clock_at(t0 - shift)));
            }
        },
    );
    assert_eq!(p.stats().resyncs, 1);
    let plays = played(&slots);
    // Frame 38 was played at 1010 ms when the estimate moved; frames 39 to 42 were due
    // in the past by then and are skipped, and frame 43 (now due at 1010 ms) follows at once.
    let at_change: Vec<u64> = plays
        .iter()
        .filter(|(at, _)| *at == t0 + Duration::from_millis(1010))
        .map(|(_, k)| *k)
        .collect();
    assert_eq!(at_change, vec![38, 43]);
    assert_eq!(p.stats().frames_late, 4);
    let after: Vec<_> = plays
        .iter()
        .filter(|(at, _)| *at > changed + SLOT)
        .collect();
    assert!(after.len() > 50);
    for (at, k) in after {
        assert_eq!(*at, t0 - shift + DELAY + SLOT * *k as u32, "frame {k}");
    }
}

#[test]
fn after_a_stall_the_frames_no_longer_on_time_are_skipped() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    p.set_clock(Some(clock_at(t0)));
    for (at, f) in stream(t0, 100, Duration::from_millis(5), |_| 0) {
        p.on_frame(at, f);
    }
    let mut now = t0 + DELAY;
    for k in 0..10 {
        assert_eq!(p.tick(now), Tick::Play(timed(k, BASE_US + k * 20_000)));
        now = p.next_deadline().expect("synced");
    }
    // The machine stalls: the thread wakes 130 ms after frame 10 was due and decides that
    // slot at once, then follows the playout's deadlines again.
    let woke = now + Duration::from_millis(130);
    assert!(matches!(p.tick(woke), Tick::Play(f) if f.sequence == 10));
    let mut plays = Vec::new();
    let mut at = p.next_deadline().expect("re-anchoring");
    while at < woke + Duration::from_millis(100) {
        if let Tick::Play(f) = p.tick(at) {
            plays.push((at, f.sequence));
        }
        at = p.next_deadline().unwrap_or(at + SLOT);
    }
    assert_eq!(p.stats().resyncs, 1);
    // Frames 11 to 16 were due during the stall or just after it woke: skipped.
    assert_eq!(plays[0], (t0 + DELAY + SLOT * 17, 17));
    for (at, k) in plays {
        assert_eq!(at, t0 + DELAY + SLOT * k as u32, "frame {k}");
    }
    assert_eq!(p.stats().frames_late, 6);
}

#[test]
fn a_gap_in_the_server_stream_is_played_as_a_gap() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    p.set_clock(Some(clock_at(t0)));
    // Frames 0..10, then the source sent nothing for 3 ticks: frame 10 is stamped tick 13.
    let mut arrivals = stream(t0, 10, Duration::from_millis(5), |_| 0);
    for k in 10..30u64 {
        let tick = k + 3;
        arrivals.push((
            t0 + SLOT * tick as u32 + Duration::from_millis(5),
            timed(k, BASE_US + tick * 20_000),
        ));
    }
    let slots = drive(
        &mut p,
        t0,
        t0 + Duration::from_millis(900),
        arrivals,
        |_, _| {},
    );
    for (at, k) in played(&slots) {
        let tick = if k < 10 { k } else { k + 3 };
        assert_eq!(at, t0 + DELAY + SLOT * tick as u32, "frame {k}");
    }
    assert_eq!(p.stats().underrun_slots, 3);
    assert_eq!(p.stats().frames_lost, 0);
    assert_eq!(p.stats().resyncs, 0);
}

#[test]
fn frames_too_late_for_their_instant_are_played_late_rather_than_not_at_all() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::from_millis(100), 100);
    p.set_clock(Some(clock_at(t0)));
    // A link 300 ms slow: every frame arrives 200 ms after its instant.
    let slots = drive(
        &mut p,
        t0,
        t0 + Duration::from_secs(2),
        stream(t0, 50, Duration::from_millis(300), |_| 0),
        |_, _| {},
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 50);
    assert_eq!(plays[0].0, t0 + Duration::from_millis(400));
    assert_eq!(p.stats().late_runs, 1);
    assert_eq!(p.stats().resyncs, 0);
}

#[test]
fn a_late_run_rejoins_the_others_once_the_link_is_fast_again() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 200);
    p.set_clock(Some(clock_at(t0)));
    // For its first second the link takes 400 ms (150 ms more than the delay), then 5 ms.
    let arrivals = (0..150u64)
        .map(|k| {
            let latency = if k < 50 {
                Duration::from_millis(400)
            } else {
                Duration::from_millis(5)
            };
            (
                t0 + SLOT * k as u32 + latency,
                timed(k, BASE_US + k * 20_000),
            )
        })
        .collect();
    let slots = drive(
        &mut p,
        t0,
        t0 + Duration::from_millis(3_500),
        arrivals,
        |_, _| {},
    );
    assert_eq!(p.stats().late_runs, 1);
    assert_eq!(p.stats().resyncs, 1);
    let plays = played(&slots);
    // Played late at first, on arrival plus the delay (at the next 20 ms slot)…
    assert_eq!(plays[0], (t0 + Duration::from_millis(660), 0));
    // …and in step again from the first frame still on time when the link recovered.
    let rejoined: Vec<_> = plays
        .iter()
        .filter(|(at, k)| *at == t0 + DELAY + SLOT * *k as u32)
        .collect();
    assert!(rejoined.len() > 50, "{} frames in step", rejoined.len());
    let first = rejoined[0].1;
    assert!(
        plays
            .iter()
            .all(|(_, k)| *k < first || rejoined.iter().any(|(_, j)| j == k)),
        "every frame after rejoining is in step"
    );
}

#[test]
fn an_arrival_anchored_run_joins_the_clock_when_it_becomes_known() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    let known = t0 + Duration::from_millis(600);
    // Arrival anchoring on a 20 ms grid puts this agent 1 ms behind the synchronised
    // instants.
    let slots = drive(
        &mut p,
        t0 + Duration::from_millis(11),
        t0 + Duration::from_millis(3_500),
        stream(t0, 140, Duration::from_millis(1), |_| 0),
        |p, now| {
            if now >= known && p.clock().is_none() {
                p.set_clock(Some(clock_at(t0)));
            }
        },
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 140);
    assert_eq!(plays[0].0, t0 + Duration::from_millis(251));
    for (at, k) in plays.iter().filter(|(at, _)| *at > known + SLOT * 25) {
        assert_eq!(*at, t0 + DELAY + SLOT * *k as u32, "frame {k}");
    }
}

#[test]
fn a_first_frame_found_just_after_its_instant_starts_the_run_in_step() {
    // A live studio at a 20 ms delay: every frame arrives 1 ms after its server time, and
    // the idle slots fall 0.8 ms after the first frame's server time, before it arrived.
    let delay = Duration::from_millis(20);
    let t0 = Instant::now();
    let mut p = Playout::new(delay, 100);
    p.set_clock(Some(clock_at(t0)));
    let slots = drive(
        &mut p,
        t0 + Duration::from_micros(800),
        t0 + Duration::from_secs(1),
        stream(t0, 40, Duration::from_millis(1), |_| 0),
        |_, _| {},
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 40);
    // Frame 0 was due at t0 + 20 ms and is found by the idle slot at t0 + 20.8 ms...
    assert_eq!(plays[0], (t0 + delay + Duration::from_micros(800), 0));
    // ...and every later frame is played exactly at its instant.
    for (at, k) in &plays[1..] {
        assert_eq!(*at, t0 + delay + SLOT * *k as u32, "frame {k}");
    }
    assert_eq!(p.stats().late_runs, 0);
    assert_eq!(p.stats().frames_late, 0);
}

#[test]
fn with_a_short_delay_a_late_run_rejoins_once_frames_are_on_time_again() {
    // A live studio at a 20 ms delay; for its first second the link takes 100 ms (more
    // than the delay), then 1 ms.
    let delay = Duration::from_millis(20);
    let t0 = Instant::now();
    let mut p = Playout::new(delay, 100);
    p.set_clock(Some(clock_at(t0)));
    let arrivals = (0..100u64)
        .map(|k| {
            let latency = Duration::from_millis(if k < 50 { 100 } else { 1 });
            (
                t0 + SLOT * k as u32 + latency,
                timed(k, BASE_US + k * 20_000),
            )
        })
        .collect();
    let slots = drive(
        &mut p,
        t0 + Duration::from_millis(7),
        t0 + Duration::from_millis(2_100),
        arrivals,
        |_, _| {},
    );
    assert_eq!(p.stats().late_runs, 1);
    assert_eq!(p.stats().resyncs, 1);
    let plays = played(&slots);
    let in_step: Vec<_> = plays
        .iter()
        .filter(|(at, k)| *at == t0 + delay + SLOT * *k as u32)
        .collect();
    // In step again within a few slots of the frames coming on time (frame 50).
    assert!(in_step[0].1 <= 53, "rejoined at frame {}", in_step[0].1);
    assert_eq!(in_step.last().map(|(_, k)| *k), Some(99));
}

#[test]
fn with_a_short_delay_the_frames_after_a_pause_are_played_at_their_instants() {
    // A live studio at a 20 ms delay, frames arriving 1 ms after their server time; the
    // stream pauses for 5 slots after frame 19 (a switch to live: the frames after it are
    // stamped later).
    let delay = Duration::from_millis(20);
    let t0 = Instant::now();
    let mut p = Playout::new(delay, 100);
    p.set_clock(Some(clock_at(t0)));
    let tick = |k: u64| if k < 20 { k } else { k + 5 };
    let arrivals = (0..60u64)
        .map(|k| {
            (
                t0 + SLOT * tick(k) as u32 + Duration::from_millis(1),
                timed(k, BASE_US + tick(k) * 20_000),
            )
        })
        .collect();
    let slots = drive(
        &mut p,
        t0 + Duration::from_micros(800),
        t0 + Duration::from_millis(1_400),
        arrivals,
        |_, _| {},
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 60, "{:?}", p.stats());
    for (at, k) in &plays[1..] {
        assert_eq!(*at, t0 + delay + SLOT * tick(*k) as u32, "frame {k}");
    }
    assert_eq!(p.stats().frames_late, 0);
    assert_eq!(p.stats().resyncs, 0);
}

#[test]
fn with_a_short_delay_a_frame_that_comes_after_its_instant_is_late_and_the_next_on_time() {
    let delay = Duration::from_millis(20);
    let t0 = Instant::now();
    let mut p = Playout::new(delay, 100);
    p.set_clock(Some(clock_at(t0)));
    // Frame 10 takes 30 ms (10 ms after its instant), the others 1 ms.
    let arrivals = (0..30u64)
        .map(|k| {
            let latency = Duration::from_millis(if k == 10 { 30 } else { 1 });
            (
                t0 + SLOT * k as u32 + latency,
                timed(k, BASE_US + k * 20_000),
            )
        })
        .collect();
    let slots = drive(
        &mut p,
        t0 + Duration::from_micros(800),
        t0 + Duration::from_millis(700),
        arrivals,
        |_, _| {},
    );
    let plays = played(&slots);
    assert_eq!(plays.len(), 29);
    assert!(plays.iter().all(|(_, k)| *k != 10));
    for (at, k) in &plays[1..] {
        assert_eq!(*at, t0 + delay + SLOT * *k as u32, "frame {k}");
    }
    assert_eq!(p.stats().frames_late, 1);
    assert_eq!(p.stats().resyncs, 0);
}

#[test]
fn a_new_server_run_forgets_the_clock() {
    let t0 = Instant::now();
    let mut p = Playout::new(DELAY, 100);
    p.on_session(1);
    p.set_clock(Some(clock_at(t0)));
    p.on_session(1);
    assert!(p.clock().is_some(), "a reconnect to the same run keeps it");
    p.on_session(2);
    assert_eq!(p.clock(), None);
}

#[test]
fn a_new_server_run_resets_the_sequence_space() {
    let t0 = Instant::now();
    let mut p = Playout::new(Duration::ZERO, 100);
    p.on_session(1);
    p.on_frame(t0, frame(1000));
    assert_eq!(p.tick(t0), Tick::Play(frame(1000)));
    p.on_session(2);
    p.on_frame(t0, frame(0));
    assert_eq!(p.tick(t0), Tick::Play(frame(0)));
}
