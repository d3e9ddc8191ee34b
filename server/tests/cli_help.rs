//! `radio-server`'s help texts state the defaults the server has: every option of these
//! subcommands that states a default states the one from the constant the default is.

use radio_test_tools::stated_defaults;
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_radio-server");

/// The default each flag has, where the help states one.
fn expected(subcommand: &[&str], flag: &str) -> Option<String> {
    let d = radio_config::ServerConfig::default();
    if subcommand == ["demo"] {
        return Some(match flag {
            "--relay" => radio_server::demo::DEFAULT_RELAY_SECS.to_string(),
            "--bitrate" => radio_config::DEFAULT_BITRATE.to_string(),
            // clap's own `default_value_t`/`default_value`: the help is made from the default.
            "--agents" => "22".into(),
            "--out" => "demo-out".into(),
            "--log" => "warn,relay_agent::sink::rtp=error".into(),
            "--console-listen" => radio_server::demo::DEFAULT_CONSOLE_LISTEN.into(),
            "--admin-listen" => radio_server::demo::DEFAULT_ADMIN_LISTEN.into(),
            _ => return None,
        });
    }
    Some(match flag {
        "--listen" => d.listen.to_string(),
        "--public-address" => "derived from --listen".into(),
        "--server-name" => d.server_name,
        "--data-dir" => d.data_dir.display().to_string(),
        "--bitrate" => d.bitrate.to_string(),
        "--district-file" => "embedded Bình Sơn district".into(),
        "--log" => d.log,
        "--admin-listen" => d.admin_listen.to_string(),
        "--console-listen" => d.console_listen.to_string(),
        "--library-max-upload-mb" => d.library_max_upload_mb.to_string(),
        "--tts-timeout-secs" => d.tts_timeout_secs.to_string(),
        "--tts-max-chars" => d.tts_max_chars.to_string(),
        "--speed" if subcommand == ["library", "say"] => {
            radio_server::library::tts::DEFAULT_SPEED.to_string()
        }
        "--id" if subcommand == ["emergency"] => "generated from the time, and printed".into(),
        "--id" => radio_server::operator::admin::DEFAULT_LIVE_ID.into(),
        "--targets" => "all stations".into(),
        // clap's own `default_value_t`: the help is made from the default itself.
        "--wait-agents" => "0".into(),
        "--name" => "the file's name".into(),
        "--repeat" => radio_server::operator::admin::DEFAULT_EMERGENCY_REPEAT.to_string(),
        "--live-allow" => "with --live-rtp and no [live] allow: 127.0.0.1".into(),
        _ => return None,
    })
}

#[test]
fn help_states_the_defaults_the_server_has() {
    for subcommand in [
        &["run"][..],
        &["status"],
        &["enroll"],
        &["live", "start"],
        &["live", "stop"],
        &["emergency"],
        &["library", "add"],
        &["library", "say"],
        &["demo"],
    ] {
        let out = Command::new(SERVER)
            .args(subcommand)
            .arg("--help")
            .output()
            .expect("run radio-server");
        assert!(
            out.status.success(),
            "{subcommand:?} --help: {}",
            out.status
        );
        let help = String::from_utf8(out.stdout).expect("utf8");
        let stated = stated_defaults(&help);
        assert!(
            !stated.is_empty(),
            "{subcommand:?}: no default found in\n{help}"
        );
        for (flag, default) in stated {
            assert_eq!(
                Some(&default),
                expected(subcommand, &flag).as_ref(),
                "radio-server {subcommand:?} {flag} states the default `{default}`:\n{help}"
            );
        }
    }
}
