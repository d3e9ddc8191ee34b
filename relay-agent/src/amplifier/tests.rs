//! The amplifier rules on a virtual clock, and the driver with a recording double of the switch
//! (the same [`AmplifierSwitch`] interface the GPIO line and the commands implement).

use std::sync::{Arc, Mutex};

use super::*;

const LEAD: u64 = 5_000;
const IDLE: u64 = 60_000;
const STEP: u64 = 100;
const T0: u64 = 1_790_000_000_000;

fn timing() -> Timing {
    Timing {
        lead_ms: LEAD,
        idle_ms: IDLE,
    }
}

/// What airs at each instant of a scenario.
#[derive(Default)]
struct Scenario {
    /// Known in advance (the manifest).
    scheduled: Vec<Due>,
    /// On air: [from, to).
    on_air: Vec<(u64, u64)>,
    /// Frames buffered before airing: [from, to).
    incoming: Vec<(u64, u64)>,
    /// Emergency announced: [from, to).
    emergency: Vec<(u64, u64)>,
}

fn within(spans: &[(u64, u64)], t: u64) -> bool {
    spans.iter().any(|&(a, b)| (a..b).contains(&t))
}

/// Runs the policy from `T0` to `until` every [`STEP`]; the switches with their instants.
fn run(s: &Scenario, until: u64) -> Vec<(u64, Switch)> {
    let mut policy = Policy::new(timing());
    let mut out = Vec::new();
    let mut t = T0;
    while t <= until {
        let o = Observation {
            now_ms: t,
            on_air: within(&s.on_air, t),
            incoming: within(&s.incoming, t),
            emergency: within(&s.emergency, t),
            scheduled: &s.scheduled,
        };
        if let Some(switch) = policy.observe(&o) {
            out.push((t, switch));
        }
        t += STEP;
    }
    out
}

fn ons(switches: &[(u64, Switch)]) -> Vec<(u64, Reason)> {
    switches
        .iter()
        .filter(|(_, s)| s.on)
        .map(|&(t, s)| (t, s.reason))
        .collect()
}

fn offs(switches: &[(u64, Switch)]) -> Vec<(u64, Reason)> {
    switches
        .iter()
        .filter(|(_, s)| !s.on)
        .map(|&(t, s)| (t, s.reason))
        .collect()
}

/// A programme known in advance at `start` for `secs`, aired one playout delay (300 ms) late
/// as a stream does, its frames arriving a delay before they air.
fn scheduled_programme(start: u64, secs: u64) -> Scenario {
    let first_frame = start + 300;
    let last = first_frame + secs * 1000;
    Scenario {
        scheduled: vec![Due {
            start_ms: start,
            end_ms: start + secs * 1000 + 300,
        }],
        on_air: vec![(first_frame, last)],
        incoming: vec![(start, last - 300)],
        ..Scenario::default()
    }
}

#[test]
fn starts_off_from_a_known_state_when_nothing_is_due() {
    let switches = run(&Scenario::default(), T0 + 10_000);
    assert_eq!(
        switches,
        vec![(
            T0,
            Switch {
                on: false,
                reason: Reason::Start
            }
        )]
    );
}

#[test]
fn the_lead_is_honoured_for_a_programme_known_in_advance() {
    let start = T0 + 60_000;
    let s = scheduled_programme(start, 30);
    let switches = run(&s, start + 200_000);
    let on = ons(&switches);
    assert_eq!(on.len(), 1, "{switches:?}");
    let (at, reason) = on[0];
    assert_eq!(reason, Reason::Lead);
    // At least the lead before the first frame, and not needlessly early.
    let first_frame = start + 300;
    assert!(
        at + LEAD <= first_frame,
        "on at {at}, first frame at {first_frame}"
    );
    assert!(
        at + LEAD + policy::SWITCH_AHEAD_MS + STEP >= start,
        "on {} ms before the slot",
        start - at
    );
}

#[test]
fn the_idle_time_is_honoured_after_the_last_frame() {
    let start = T0 + 60_000;
    let s = scheduled_programme(start, 30);
    let last_frame_end = start + 300 + 30_000;
    let switches = run(&s, last_frame_end + 2 * IDLE);
    let off = offs(&switches);
    assert_eq!(off.len(), 2, "start and idle: {switches:?}");
    let (at, reason) = off[1];
    assert_eq!(reason, Reason::Idle);
    assert!(at >= last_frame_end + IDLE, "off at {at}");
    assert!(at <= last_frame_end + IDLE + 2 * STEP, "off late at {at}");
}

#[test]
fn never_off_in_the_middle_of_a_programme_longer_than_the_idle_time() {
    // Five minutes live, not known in advance: on at once, off only after it.
    let s = Scenario {
        on_air: vec![(T0 + 10_300, T0 + 310_300)],
        incoming: vec![(T0 + 10_000, T0 + 310_000)],
        ..Scenario::default()
    };
    let switches = run(&s, T0 + 500_000);
    assert_eq!(
        ons(&switches),
        vec![(T0 + 10_000, Reason::Late)],
        "{switches:?}"
    );
    let off = offs(&switches);
    assert_eq!(off.len(), 2);
    assert!(off[1].0 >= T0 + 310_300 + IDLE);
}

#[test]
fn a_gap_shorter_than_the_idle_time_keeps_it_on() {
    let first = T0 + 60_000;
    let mut s = scheduled_programme(first, 20);
    // The next programme starts 40 s after the first ends: less than the 60 s idle.
    let second = first + 300 + 20_000 + 40_000;
    let next = scheduled_programme(second, 20);
    s.scheduled.extend(next.scheduled);
    s.on_air.extend(next.on_air);
    s.incoming.extend(next.incoming);
    let switches = run(&s, second + 200_000);
    assert_eq!(ons(&switches).len(), 1, "{switches:?}");
    let off = offs(&switches);
    assert_eq!(off.len(), 2, "{switches:?}");
    assert!(off[1].0 >= second + 300 + 20_000 + IDLE);
}

#[test]
fn a_gap_longer_than_idle_and_lead_switches_off_between() {
    let first = T0 + 60_000;
    let mut s = scheduled_programme(first, 20);
    let second = first + 300 + 20_000 + IDLE + LEAD + 30_000;
    let next = scheduled_programme(second, 20);
    s.scheduled.extend(next.scheduled);
    s.on_air.extend(next.on_air);
    s.incoming.extend(next.incoming);
    let switches = run(&s, second + 200_000);
    let on = ons(&switches);
    assert_eq!(on.len(), 2, "{switches:?}");
    assert!(on[1].0 + LEAD <= second + 300);
    assert_eq!(offs(&switches).len(), 3, "{switches:?}");
}

/// An emergency, and a stream that starts now (its frames arrive one playout delay before
/// they air): both switch on at once, whatever the lead.
#[test]
fn an_emergency_or_something_learnt_too_late_for_the_lead_switches_on_at_once() {
    let at = T0 + 30_000;
    for (emergency, reason) in [(true, Reason::Emergency), (false, Reason::Late)] {
        let s = Scenario {
            emergency: if emergency {
                vec![(at, at + 20_000)]
            } else {
                Vec::new()
            },
            incoming: vec![(at, at + 20_000)],
            on_air: vec![(at + 300, at + 20_300)],
            ..Scenario::default()
        };
        let switches = run(&s, at + 100_000);
        assert_eq!(ons(&switches), vec![(at, reason)]);
    }
}

#[test]
fn a_programme_known_from_the_manifest_while_the_link_is_down() {
    // The link is down: nothing streams, nothing is buffered; the cache airs the slot at its
    // start by the agent's clock. The manifest alone gives the lead.
    let start = T0 + 60_000;
    let s = Scenario {
        scheduled: vec![Due {
            start_ms: start,
            end_ms: start + 10_000 + 300,
        }],
        on_air: vec![(start, start + 10_000)],
        ..Scenario::default()
    };
    let switches = run(&s, start + 200_000);
    let on = ons(&switches);
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].1, Reason::Lead);
    assert!(on[0].0 + LEAD <= start);
    let off = offs(&switches);
    assert!(off[1].0 >= start + 10_300 + IDLE, "{off:?}");
}

/// The recording double: every call, with an optional scripted failure.
#[derive(Debug, Clone, Default)]
struct Recording {
    calls: Arc<Mutex<Vec<bool>>>,
    failures: Arc<Mutex<u32>>,
}

impl AmplifierSwitch for Recording {
    fn set(&mut self, on: bool) -> Result<(), SwitchError> {
        self.calls.lock().expect("calls").push(on);
        let mut failures = self.failures.lock().expect("failures");
        if *failures > 0 {
            *failures -= 1;
            return Err(SwitchError::Gpio {
                chip: "/dev/gpiochip9".into(),
                line: 1,
                message: "Permission denied".into(),
            });
        }
        Ok(())
    }

    fn describe(&self) -> String {
        "recording double".into()
    }
}

fn observe(now_ms: u64, on_air: bool) -> Observation<'static> {
    Observation {
        now_ms,
        on_air,
        incoming: false,
        emergency: false,
        scheduled: &[],
    }
}

#[test]
fn a_failed_switch_is_retried_and_journaled_once_done() {
    let double = Recording::default();
    *double.failures.lock().expect("failures") = 2;
    let mut amps = Amplifiers::new(
        timing(),
        vec![(
            "box".into(),
            Box::new(double.clone()) as Box<dyn AmplifierSwitch>,
        )],
    );
    let retry = RETRY.as_millis() as u64;
    assert!(amps.step(&observe(T0, true)).is_empty());
    // Not again before the retry time.
    assert!(amps.step(&observe(T0 + retry - 1, true)).is_empty());
    assert!(amps.step(&observe(T0 + retry, true)).is_empty());
    let done = amps.step(&observe(T0 + 2 * retry, true));
    assert_eq!(
        done,
        vec![JournalEvent::Amplifier {
            output: "box".into(),
            on: true,
            reason: "late".into()
        }]
    );
    assert!(amps.step(&observe(T0 + 2 * retry + 100, true)).is_empty());
    assert_eq!(*double.calls.lock().expect("calls"), vec![true, true, true]);
}

#[test]
fn every_output_is_switched_and_journaled_under_its_name() {
    let (c01, fm) = (Recording::default(), Recording::default());
    let mut amps = Amplifiers::new(
        timing(),
        vec![
            (
                "c01".into(),
                Box::new(c01.clone()) as Box<dyn AmplifierSwitch>,
            ),
            (
                "fm".into(),
                Box::new(fm.clone()) as Box<dyn AmplifierSwitch>,
            ),
        ],
    );
    let first = amps.step(&observe(T0, false));
    assert_eq!(first.len(), 2, "both off at start: {first:?}");
    let on = amps.step(&observe(T0 + 1_000, true));
    let names: Vec<_> = on
        .iter()
        .map(|e| match e {
            JournalEvent::Amplifier { output, on, .. } => (output.as_str(), *on),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, vec![("c01", true), ("fm", true)]);
    assert_eq!(*c01.calls.lock().expect("calls"), vec![false, true]);
    assert_eq!(*fm.calls.lock().expect("calls"), vec![false, true]);
}

#[test]
fn a_missing_gpio_chip_is_an_error_naming_it_not_a_panic() {
    let mut gpio = GpioSwitch::new("/nonexistent/gpiochip7".into(), 17, true);
    let err = gpio.set(true).expect_err("no such chip");
    let shown = err.to_string();
    assert!(
        shown.contains("/nonexistent/gpiochip7") && shown.contains("17"),
        "{shown}"
    );
}

#[test]
fn a_command_is_run_without_a_shell_and_killed_past_its_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a b;c");
    // `touch` receives the path as one argument: no shell splits it or runs `c`.
    let mut switch = CommandSwitch::new(
        vec!["touch".into(), file.display().to_string()],
        vec!["sleep".into(), "5".into()],
        Duration::from_millis(1_000),
    );
    switch.set(true).expect("touch");
    assert!(file.exists());
    let started = std::time::Instant::now();
    let err = switch.set(false).expect_err("times out");
    assert!(err.to_string().contains("killed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
    let mut missing = CommandSwitch::new(
        vec!["/nonexistent/relay".into()],
        vec!["false".into()],
        Duration::from_secs(1),
    );
    assert!(missing.set(true).is_err());
    assert!(missing
        .set(false)
        .expect_err("false")
        .to_string()
        .contains("failed"));
}

/// The GPIO form's timing, on the recording double (no gpio-sim in this kernel): the switch
/// the driver calls is set at least the lead before the first frame and not before the idle
/// time after the last.
#[test]
fn the_switch_is_driven_a_lead_before_the_first_frame_and_an_idle_time_after_the_last() {
    let double = Recording::default();
    let mut amps = Amplifiers::new(
        timing(),
        vec![(
            "box".into(),
            Box::new(double.clone()) as Box<dyn AmplifierSwitch>,
        )],
    );
    let start = T0 + 60_000;
    let s = scheduled_programme(start, 30);
    let (first_frame, last_frame) = (start + 300, start + 300 + 30_000);
    let mut calls = Vec::new();
    let mut t = T0;
    while t <= last_frame + 2 * IDLE {
        let o = Observation {
            now_ms: t,
            on_air: within(&s.on_air, t),
            incoming: within(&s.incoming, t),
            emergency: false,
            scheduled: &s.scheduled,
        };
        for event in amps.step(&o) {
            if let JournalEvent::Amplifier { on, .. } = event {
                calls.push((t, on));
            }
        }
        t += STEP;
    }
    assert_eq!(
        *double.calls.lock().expect("calls"),
        vec![false, true, false]
    );
    assert!(calls[1].0 + LEAD <= first_frame, "{calls:?}");
    assert!(calls[2].0 >= last_frame + IDLE, "{calls:?}");
}
