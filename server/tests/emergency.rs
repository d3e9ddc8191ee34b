//! An emergency breaks into a programme at two of three stations and the programme resumes
//! where it stopped — shown by what the agents wrote to their WAV files.
//!
//! The real server and three real agents (QUIC, mutual TLS, jitter buffer, playout clock) run in
//! this process on loopback. The programme is a slow chirp, so the pitch heard tells where in the
//! programme a moment is: after the emergency it must pick up at the pitch it stopped at.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use radio_config::{AgentConfig, District, ServerConfig, SinkSpec};
use radio_proto::ProgrammeLevel;
use radio_server::broadcast::on_air::{file_bulletin, play_bulletin, OnAir, OnAirConfig};
use radio_server::identity::certificate_authority::CertificateAuthority;
use radio_server::link::server::{self, Server};
use radio_server::schedule::ladder::{Ladder, LadderConfig};
use radio_server::schedule::scheduler::Scheduler;
use radio_server::schedule::{Schedule, SourceSpec, Targets};
use relay_agent::{Agent, AgentStatus};

const RATE: u32 = 48_000;
const PROGRAMME_SECS: f32 = 6.0;
const EMERGENCY_SECS: f32 = 1.5;
const CHIRP_FROM: f32 = 300.0;
const CHIRP_TO: f32 = 800.0;
const ALARM_HZ: f32 = 1200.0;

/// How long the test waits for something bound to happen: far longer than it takes, so that
/// only a broadcast that never gets there fails, not a loaded machine.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `done` until it holds; panics with `what` after [`WAIT`].
async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether an agent has dealt with every frame it was sent: all `segments` stretches of
/// programme seen, the end of each announced (with how many frames the programme had), and that
/// many frames played, or late, or dropped.
fn played_out(agent: &AgentStatus, segments: usize) -> bool {
    let records = agent.programmes();
    let seen: usize = records.iter().map(|p| p.segments.len()).sum();
    let ended = records
        .iter()
        .flat_map(|p| &p.segments)
        .all(|s| s.last.is_some());
    let sent: u64 = records.iter().map(|p| p.frames).sum();
    let s = agent.stats();
    let done = s.frames_played + s.frames_late + s.frames_overflow + s.frames_displaced;
    seen >= segments && ended && done >= sent
}

fn write_wav(path: &Path, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create");
    for s in samples {
        w.write_sample((s * 32767.0) as i16).expect("write");
    }
    w.finalize().expect("finalize");
}

fn chirp() -> Vec<f32> {
    let n = (PROGRAMME_SECS * RATE as f32) as usize;
    let mut phase = 0.0f32;
    (0..n)
        .map(|i| {
            let f = CHIRP_FROM + (CHIRP_TO - CHIRP_FROM) * i as f32 / n as f32;
            phase += std::f32::consts::TAU * f / RATE as f32;
            0.5 * phase.sin()
        })
        .collect()
}

fn tone(hz: f32, secs: f32) -> Vec<f32> {
    let n = (secs * RATE as f32) as usize;
    (0..n)
        .map(|i| 0.5 * (std::f32::consts::TAU * hz * i as f32 / RATE as f32).sin())
        .collect()
}

/// What 100 ms of output sounds like.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Heard {
    Silence,
    Programme(f32),
    Alarm,
    Other(f32),
}

fn listen(path: &Path) -> Vec<Heard> {
    let mut reader = hound::WavReader::open(path).expect("open wav");
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| s.expect("sample") as f32 / 32768.0)
        .collect();
    samples
        .chunks(4800)
        .map(|w| {
            let rms = (w.iter().map(|s| s * s).sum::<f32>() / w.len() as f32).sqrt();
            if rms < 0.05 {
                return Heard::Silence;
            }
            let crossings = w
                .windows(2)
                .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
                .count();
            let hz = crossings as f32 / 2.0 / (w.len() as f32 / RATE as f32);
            if (ALARM_HZ - hz).abs() < 60.0 {
                Heard::Alarm
            } else if hz > CHIRP_FROM - 40.0 && hz < CHIRP_TO + 40.0 {
                Heard::Programme(hz)
            } else {
                Heard::Other(hz)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emergency_interrupts_its_targets_and_the_programme_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let programme = dir.path().join("chirp.wav");
    let alarm = dir.path().join("alarm.wav");
    write_wav(&programme, &chirp());
    write_wav(&alarm, &tone(ALARM_HZ, EMERGENCY_SECS));

    let district = District::binh_son();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.path().join("server"),
        ..ServerConfig::default()
    };
    let ca = CertificateAuthority::load_or_create(&config.data_dir, &district.name).expect("ca");
    let endpoint = server::bind(&config, &ca).expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    let server = Server::new(config.clone(), district.clone());
    let (stop_server, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(server::run(endpoint, server.clone(), async move {
        let _ = stop_rx.await;
    }));

    let stations = ["binh-trung", "binh-chau", "binh-hai"];
    let (stop_agents, stop_agents_rx) = tokio::sync::watch::channel(false);
    let mut agents = Vec::new();
    let mut statuses = Vec::new();
    for id in stations {
        let bundle = ca
            .enroll(id, id, &addr.to_string(), &config.server_name)
            .expect("enroll");
        let agent = Agent::new(
            AgentConfig {
                state_dir: dir.path().join(id),
                sinks: vec![SinkSpec::Wav {
                    path: dir.path().join(format!("{id}.wav")),
                }],
                // Generous: this test is about what is heard, not latency, and must not fail
                // when a loaded machine delays a frame.
                playout_delay_ms: 500,
                ..AgentConfig::default()
            },
            bundle,
        )
        .expect("agent");
        let mut rx = stop_agents_rx.clone();
        statuses.push(agent.status());
        agents.push(tokio::spawn(agent.run(async move {
            let _ = rx.changed().await;
        })));
    }
    tokio::time::timeout(WAIT, server.wait_connected(stations.len()))
        .await
        .expect("agents connect");

    let scheduler = Scheduler::new(Schedule::default(), &district).expect("scheduler");
    let on_air = OnAir::spawn(
        server.outputs(),
        Ladder::new(scheduler, &district, LadderConfig::default()),
        OnAirConfig {
            bitrate: 32_000,
            ..OnAirConfig::default()
        },
    );
    let mut bulletin = file_bulletin("chirp", "Bản tin thử", &programme);
    bulletin.targets = Targets::Stations(stations.iter().map(|s| s.to_string()).collect());
    let programme_done = {
        let on_air = on_air.clone();
        tokio::spawn(async move { play_bulletin(&on_air, bulletin).await })
    };
    // Before nothing airs, so what binh-trung has been sent is programme. The emergency comes
    // once 2 s of it have gone out, however long that took.
    let trung = server
        .outputs()
        .find(|o| o.station() == "binh-trung")
        .expect("binh-trung's output");
    let sent = || trung.counters().frames_sent.load(Ordering::Relaxed);
    wait_until("2 s of programme sent", || sent() >= 100).await;
    let asked_after = sent();
    on_air
        .emergency(
            "bao",
            "Cảnh báo bão",
            SourceSpec::File {
                path: alarm.clone(),
            },
            Targets::Stations(vec!["binh-trung".into(), "binh-chau".into()]),
            1,
        )
        .await
        .expect("emergency accepted");
    let summary = tokio::time::timeout(WAIT, programme_done)
        .await
        .expect("programme finishes")
        .expect("task")
        .expect("played");
    assert_eq!(summary.error, None);
    // The agents play 500 ms behind the server: wait until each has played all it was sent
    // (the programme, and at the targets its two parts and the emergency between them).
    for (id, status) in stations.iter().zip(&statuses) {
        let segments = if *id == "binh-hai" { 1 } else { 3 };
        wait_until(&format!("{id} played out"), || played_out(status, segments)).await;
    }
    let _ = stop_agents.send(true);
    // Frames of the programme each station was sent before the alarm took over, from the
    // first of its segments in the agent's proof of play.
    let mut first_part = BTreeMap::new();
    for a in agents {
        let report = a.await.expect("agent task").expect("agent ran");
        if let Some(segment) = report
            .programmes
            .iter()
            .find(|p| p.name == "Bản tin thử")
            .and_then(|p| p.segments.first())
        {
            let frames = segment.last.map(|last| last + 1 - segment.first);
            first_part.insert(report.commune.clone(), frames.unwrap_or_default());
        }
        println!(
            "{}: {:?}\n{:?}",
            report.commune, report.stats, report.programmes
        );
        // Proof of play knows which broadcast was the emergency: the level travels with it.
        let levels: Vec<(&str, ProgrammeLevel)> = report
            .programmes
            .iter()
            .map(|p| (p.name.as_str(), p.level))
            .collect();
        assert!(
            levels.contains(&("Bản tin thử", ProgrammeLevel::Priority)),
            "{}: {levels:?}",
            report.commune
        );
        assert_eq!(
            levels.contains(&("Cảnh báo bão", ProgrammeLevel::Emergency)),
            report.commune != "binh-hai",
            "{}: {levels:?}",
            report.commune
        );
    }
    let _ = stop_server.send(());
    let _ = server_task.await;

    for id in stations {
        let heard = listen(&dir.path().join(format!("{id}.wav")));
        let programme_windows: Vec<(usize, f32)> = heard
            .iter()
            .enumerate()
            .filter_map(|(i, h)| match h {
                Heard::Programme(hz) => Some((i, *hz)),
                _ => None,
            })
            .collect();
        let alarm_windows: Vec<usize> = heard
            .iter()
            .enumerate()
            .filter(|(_, h)| **h == Heard::Alarm)
            .map(|(i, _)| i)
            .collect();
        let others = heard
            .iter()
            .filter(|h| matches!(h, Heard::Other(_)))
            .count();
        let summary = format!("{id}: {heard:?}");
        // All of the programme, once: 6 s of chirp in 100 ms windows (±3 for the edges).
        assert!(
            (57..=63).contains(&programme_windows.len()),
            "programme heard for {} windows\n{summary}",
            programme_windows.len()
        );
        assert!(others <= 4, "unexpected sounds\n{summary}");
        if id == "binh-hai" {
            assert!(
                alarm_windows.is_empty(),
                "untargeted station heard the alarm\n{summary}"
            );
            let first = programme_windows[0].0;
            let last = programme_windows[programme_windows.len() - 1].0;
            assert!(
                last - first < 64,
                "the programme was not continuous\n{summary}"
            );
            continue;
        }
        assert!(
            (13..=17).contains(&alarm_windows.len()),
            "alarm heard for {} windows\n{summary}",
            alarm_windows.len()
        );
        let alarm_start = alarm_windows[0];
        let alarm_end = alarm_windows[alarm_windows.len() - 1];
        assert!(
            alarm_end - alarm_start < 17,
            "the alarm was not one block\n{summary}"
        );
        let before: Vec<_> = programme_windows
            .iter()
            .filter(|(i, _)| *i < alarm_start)
            .collect();
        let after: Vec<_> = programme_windows
            .iter()
            .filter(|(i, _)| *i > alarm_end)
            .collect();
        // The alarm came once 2 s of programme had been sent, and cut in where the station's
        // programme stopped: before it, what was sent until then (±3 windows for the edges,
        // which mix in silence or the alarm).
        let sent_before = first_part.get(id).copied().unwrap_or_default();
        assert!(
            sent_before >= asked_after,
            "{sent_before} frames of programme before the alarm, {asked_after} sent before it \
             was asked for\n{summary}"
        );
        let expected = sent_before as usize / 5;
        assert!(
            before.len() + 3 >= expected && before.len() <= expected + 3,
            "{} windows of programme before the alarm, {sent_before} frames sent\n{summary}",
            before.len()
        );
        assert!(after.len() >= 2, "no programme after the alarm\n{summary}");
        // Resumed where it stopped: the pitch after the alarm continues the pitch before it
        // (the chirp rises 8 Hz per window; a skip or a restart would jump by far more). The
        // windows next to the alarm mix both sounds, so compare the ones just beyond.
        let (_, hz_before) = before[before.len() - 2];
        let (_, hz_after) = after[1];
        assert!(
            (hz_after - hz_before).abs() < 50.0,
            "resumed at {hz_after} Hz after stopping at {hz_before} Hz\n{summary}"
        );
    }
}
