//! A loudspeaker cluster's health, seen by a real agent through real receivers, journaled and
//! uploaded to a real server.
//!
//! The agent's RTP sink feeds cluster c01 on loopback. In turn:
//! 1. nobody listens: the kernel answers with ICMP port unreachable, the cluster is down;
//! 2. GStreamer's rtpbin receives and sends RTCP receiver reports: up, shown by RTCP;
//! 3. GStreamer is SIGKILLed: ICMP again, down at once;
//! 4. ffmpeg receives: up (it answers the agent's RTCP sender reports with receiver reports);
//! 5. ffmpeg is SIGKILLed: down;
//! 6. a bare UDP socket receives, sending no RTCP at all: up, shown by 10 s without errors.
//!
//! Afterwards the server's copy of the journal holds exactly those six changes, in order.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use radio_tests::{
    binary, enroll, free_udp_port, require_tool, start_agent, start_server, PATIENCE,
};

/// A GStreamer receiver on `port` (RTCP in on `port + 1`) reporting to `report_to`.
fn gstreamer(port: u16, report_to: u16) -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q", "rtpbin", "name=rb"])
        .args(["udpsrc", &format!("port={port}")])
        .arg("caps=application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=111")
        .args(["!", "rb.recv_rtp_sink_0"])
        .args([
            "udpsrc",
            &format!("port={}", port + 1),
            "!",
            "rb.recv_rtcp_sink_0",
        ])
        .args(["rb.", "!", "rtpopusdepay", "!", "opusdec", "!", "fakesink"])
        .args(["rb.send_rtcp_src_0", "!", "udpsink", "host=127.0.0.1"])
        .arg(format!("port={report_to}"))
        .args(["sync=false", "async=false"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start gst-launch-1.0")
}

fn ffmpeg(sdp: &std::path::Path) -> Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(sdp)
        .args(["-f", "null", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start ffmpeg")
}

#[test]
fn cluster_health_follows_real_receivers_into_the_servers_journal() {
    if !["gst-launch-1.0", "ffmpeg"].into_iter().all(require_tool) {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server-data");
    let bundle = dir.path().join("bundle.toml");
    enroll(&data, "binh-chau", &bundle);
    let (mut server, addr) = start_server(&data, "127.0.0.1:0", None, 1);

    // The receiver's port, and the agent's sending port (RTCP reports go to the next one).
    let receiver = free_udp_port();
    let local = loop {
        let p = free_udp_port();
        if p.is_multiple_of(2) && ![receiver, receiver + 1].contains(&p) && p + 1 != receiver {
            break p;
        }
    };
    let sdp = dir.path().join("c01.sdp");
    let mut agent = start_agent(
        "agent",
        &bundle,
        &addr,
        &dir.path().join("state"),
        &[format!(
            "rtp:127.0.0.1:{receiver},cluster=c01,port={local},sdp={}",
            sdp.display()
        )],
    );
    server.wait_for("binh-chau", Duration::from_secs(20));
    let admin = server.admin_address();

    let first = agent.wait_for("cluster c01 down", Duration::from_secs(10));
    assert!(first.contains("unreachable"), "{first}");

    let mut gst = gstreamer(receiver, local + 1);
    let up = agent.wait_for("cluster c01 up", PATIENCE);
    assert!(up.contains("RTCP"), "{up}");

    let _ = gst.kill();
    let _ = gst.wait();
    // Errors count once the receiver's last report is 3 s old; reports come every 5 s.
    let down = agent.wait_for_nth("cluster c01 down", 2, Duration::from_secs(20));
    assert!(down.contains("unreachable"), "{down}");

    let mut ff = ffmpeg(&sdp);
    // ffmpeg answers the agent's sender reports (every 5 s) with receiver reports: up by RTCP,
    // before 10 s without errors could say so.
    let up = agent.wait_for_nth("cluster c01 up", 2, PATIENCE);
    assert!(up.contains("RTCP"), "{up}");
    let _ = ff.kill();
    let _ = ff.wait();
    let down = agent.wait_for_nth("cluster c01 down", 3, Duration::from_secs(20));
    assert!(down.contains("unreachable"), "{down}");

    let bare = std::net::UdpSocket::bind(("127.0.0.1", receiver)).expect("bind the receiver port");
    // Up once 10 s pass without an ICMP error.
    let up = agent.wait_for_nth("cluster c01 up", 3, Duration::from_secs(20));
    assert!(up.contains("no error"), "{up}");
    // The sixth change uploaded: the server's copy has them all. The receiver stays until the
    // agent has stopped: gone sooner, it would be a seventh change.
    let sixth = agent.wait_journaled("Cluster", 6, PATIENCE);
    agent.wait_acknowledged(sixth, PATIENCE);

    // The uptime report has a row per cluster: c01 lost time to its receiver, c02 and the
    // others follow the station.
    let today = jiff::tz::TimeZone::get("Asia/Ho_Chi_Minh")
        .expect("zone")
        .to_datetime(jiff::Timestamp::now())
        .date()
        .to_string();
    let out = Command::new(binary("radio-server"))
        .args(["report", "uptime", "--data-dir"])
        .arg(&data)
        .args(["--admin-listen", &admin, "--from", &today, "--to", &today])
        .args(["--by", "day", "--format", "json", "--clusters"])
        .output()
        .expect("radio-server report");
    assert!(out.status.success(), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let station = report["stations"]
        .as_array()
        .expect("stations")
        .iter()
        .find(|s| s["id"] == "binh-chau")
        .expect("binh-chau");
    let clusters = station["clusters"].as_array().expect("clusters");
    let c01 = &clusters[0];
    assert_eq!(c01["id"], "binh-chau/c01");
    assert_eq!(c01["watched"], true);
    // Down at the start and after each kill: the receiver's time is taken out of the station's.
    let down = c01["all"]["cluster_down_s"].as_f64().expect("seconds");
    assert!(down > 1.0, "{c01}");
    assert!(
        c01["all"]["outages"].as_u64() > station["all"]["outages"].as_u64(),
        "{c01}\n{}",
        station["all"]
    );
    assert_eq!(clusters[1]["watched"], false);
    assert_eq!(clusters[1]["all"], station["all"]);

    let (status, _) = agent.terminate();
    assert!(status.success(), "agent exit {status}");
    drop(bare);
    let (status, _) = server.terminate();
    assert!(status.success(), "server exit {status}");

    let out = Command::new(binary("radio-server"))
        .args(["journal", "--data-dir"])
        .arg(&data)
        .args(["--agent", "binh-chau"])
        .output()
        .expect("radio-server journal");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let changes: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Cluster {"))
        .map(|l| {
            if l.contains("state: Up") {
                "up"
            } else {
                "down"
            }
        })
        .collect();
    assert_eq!(
        changes,
        ["down", "up", "down", "up", "down", "up"],
        "{text}"
    );
    assert!(text.contains("cluster: \"c01\""), "{text}");
}
