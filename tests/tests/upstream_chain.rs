//! Province → district chaining: a district `radio-server` relays what the provincial
//! `radio-server` airs for it, over the same QUIC protocol, as one of the province's agents.
//!
//! The province is killed mid-slot and restarted on the same port: the district plays its
//! fallback meanwhile, logs the outage and the recovery, and its agent hears the province
//! again afterwards.

use std::path::Path;
use std::time::Duration;

use radio_tests::{
    enroll_with, free_udp_port, pitch_track, start_agent, start_server_with, write_chirp, Process,
};

const PROVINCE_HZ: f32 = 440.0;
const FALLBACK_HZ: f32 = 1_000.0;

fn start_province(data: &Path, district: &Path, port: u16, programme: &Path) -> Process {
    let listen = format!("127.0.0.1:{port}");
    let (province, _) = start_server_with(
        data,
        &listen,
        &[
            "--district-file",
            district.to_str().expect("utf8"),
            "--no-schedule",
            "--programme",
            programme.to_str().expect("utf8"),
            "--wait-agents",
            "1",
            "--repeat",
        ],
    );
    province
}

#[test]
fn a_district_server_relays_its_province_and_survives_its_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // The province's "stations" are its districts; Bình Sơn is the one this test runs.
    let province_district = root.join("quang-ngai.toml");
    std::fs::write(
        &province_district,
        "[district]\nid = \"quang-ngai\"\nname = \"Tỉnh Quảng Ngãi\"\nprovince = \"Quảng Ngãi\"\n\
         timezone = \"Asia/Ho_Chi_Minh\"\ndistrict_station_clusters = 1\n\n\
         [[station]]\nid = \"binh-son\"\nname = \"Huyện Bình Sơn\"\nkind = \"wired\"\n\
         villages = 1\nclusters = 1\nspeakers = 1\n",
    )
    .expect("write district");
    let province_data = root.join("province");
    let district_data = root.join("district");
    let tone = root.join("province-tone.wav");
    write_chirp(&tone, PROVINCE_HZ, PROVINCE_HZ, 4.0);
    let fallback = root.join("fallback.wav");
    write_chirp(&fallback, FALLBACK_HZ, FALLBACK_HZ, 2.0);

    let upstream_bundle = root.join("binh-son-at-province.toml");
    enroll_with(
        &province_data,
        "binh-son",
        &upstream_bundle,
        &["--district-file", province_district.to_str().expect("utf8")],
    );
    let port = free_udp_port();
    let config = root.join("district-server.toml");
    std::fs::write(
        &config,
        format!(
            "[[upstream]]\nname = \"tinh\"\nbundle = \"{}\"\nserver = \"127.0.0.1:{port}\"\n\
             fallback = \"{}\"\nplayout_delay_ms = 300\n",
            upstream_bundle.display(),
            fallback.display()
        ),
    )
    .expect("write config");
    // A slot that is already running (it began at the start of this minute, UTC) and lasts
    // far longer than the test.
    let now = jiff::Timestamp::now().to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let schedule = root.join("schedule.toml");
    std::fs::write(
        &schedule,
        format!(
            "timezone = \"UTC\"\n\n[[entries]]\nid = \"tiep-song-tinh\"\n\
             name = \"Tiếp sóng Đài tỉnh\"\nrecurrence = {{ once = {{ date = \"{}\" }} }}\n\
             start = \"{:02}:{:02}\"\nend = {{ duration = \"2h\" }}\n\
             source = {{ kind = \"upstream\", name = \"tinh\" }}\ntargets = \"all\"\n",
            now.date(),
            now.hour(),
            now.minute()
        ),
    )
    .expect("write schedule");

    let mut province = start_province(&province_data, &province_district, port, &tone);
    let (mut district, district_addr) = start_server_with(
        &district_data,
        "127.0.0.1:0",
        &[
            "--config",
            config.to_str().expect("utf8"),
            "--schedule",
            schedule.to_str().expect("utf8"),
        ],
    );
    district.wait_for(
        "relaying upstream `tinh` as `binh-son`",
        Duration::from_secs(20),
    );
    let agent_bundle = root.join("binh-trung.toml");
    radio_tests::enroll(&district_data, "binh-trung", &agent_bundle);
    let wav = root.join("binh-trung.wav");
    let agent_state = root.join("agent");
    let mut agent = start_agent(
        "agent",
        &agent_bundle,
        &district_addr,
        &agent_state,
        &[format!("wav:{}", wav.display())],
    );
    agent.wait_for("link up", Duration::from_secs(20));
    province.wait_for("programme-1", Duration::from_secs(20));
    // The province plays for a deliberate 4 s (at least 2 s of it heard, checked below).
    std::thread::sleep(Duration::from_secs(4));

    // The province dies without a word: the district notices, plays its fallback, retries.
    drop(province);
    district.wait_for(
        "upstream `tinh` unreachable: playing the fallback",
        Duration::from_secs(20),
    );
    // The outage's deliberate length (at least 1 s of fallback heard, checked below).
    std::thread::sleep(Duration::from_secs(3));
    let province = start_province(&province_data, &province_district, port, &tone);
    district.wait_for("upstream `tinh` recovered after", Duration::from_secs(30));
    // The province plays again for a deliberate 4 s (at least 2 s of it heard).
    std::thread::sleep(Duration::from_secs(4));

    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    let (status, district_log) = district.terminate();
    assert!(status.success(), "district server exit {status}");
    drop(province);

    // Every step is in the district's log: the link's failure and retries, the outage, the
    // recovery.
    let log = district_log.join("\n");
    assert!(
        log.contains("reconnecting in"),
        "the link retries with backoff:\n{log}"
    );

    let track = pitch_track(&wav);
    let shown: String = track
        .iter()
        .enumerate()
        .map(|(i, (rms, hz))| format!("{i}:{rms:.2}/{hz:.0} "))
        .collect();
    let near = |hz: f32, want: f32| (hz - want).abs() < 40.0;
    let windows: Vec<char> = track
        .iter()
        .map(|(rms, hz)| match (*rms > 0.05, hz) {
            (false, _) => '.',
            (true, hz) if near(*hz, PROVINCE_HZ) => 'p',
            (true, hz) if near(*hz, FALLBACK_HZ) => 'f',
            _ => '?',
        })
        .collect();
    let runs: String = windows.iter().collect();
    let first_p = runs
        .find('p')
        .unwrap_or_else(|| panic!("the province was never heard\n{shown}"));
    let first_f = runs[first_p..]
        .find('f')
        .map(|i| i + first_p)
        .unwrap_or_else(|| panic!("no fallback after the province was heard: {runs}\n{shown}"));
    let back = runs[first_f..]
        .find('p')
        .map(|i| i + first_f)
        .unwrap_or_else(|| panic!("the province was not heard again: {runs}\n{shown}"));
    eprintln!("windows (p = province, f = fallback): {runs}");
    let count =
        |from: usize, to: usize, c: char| runs[from..to].chars().filter(|x| *x == c).count();
    assert!(
        count(first_p, first_f, 'p') >= 20,
        "at least 2 s of the province before the outage: {runs}"
    );
    assert!(
        count(first_f, back, 'f') >= 10,
        "at least 1 s of fallback during the outage: {runs}"
    );
    assert!(
        count(back, runs.len(), 'p') >= 20,
        "at least 2 s of the province after its return: {runs}"
    );
}
