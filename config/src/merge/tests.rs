use super::*;
use clap::Args as _;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn no_env() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn wav_sink() -> AgentOverrides {
    AgentOverrides {
        sinks: vec!["wav:/tmp/out.wav".parse().expect("valid sink")],
        ..AgentOverrides::default()
    }
}

const SERVER_FILE: &str = "\
# radio-server
listen = \"0.0.0.0:5000\"
server_name = \"radio.binhson.gov.vn\"
bitrate = 24000
log = \"debug\"
";

// --- help texts ---

/// `(flag id, stated default)` for every flag of `args` whose help states a default, in
/// declaration order.
fn stated_defaults<A: clap::Args>() -> Vec<(String, String)> {
    let cmd = A::augment_args(clap::Command::new("help"));
    cmd.get_arguments()
        .filter_map(|arg| {
            let help = arg.get_help()?.to_string();
            let (_, stated) = help.split_once("[default: ")?;
            let stated = stated.strip_suffix(']').unwrap_or_else(|| {
                panic!("--{}: text after the stated default: {help}", arg.get_id())
            });
            Some((arg.get_id().to_string(), stated.to_owned()))
        })
        .collect()
}

fn pairs(expected: &[(&str, String)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(id, default)| ((*id).to_owned(), default.clone()))
        .collect()
}

#[test]
fn agent_flags_state_the_defaults_the_agent_has() {
    let d = AgentConfig::default();
    assert_eq!(
        stated_defaults::<AgentOverrides>(),
        pairs(&[
            ("bundle", d.bundle.display().to_string()),
            ("state_dir", d.state_dir.display().to_string()),
            ("playout_delay_ms", d.playout_delay_ms.to_string()),
            ("log", d.log),
        ]),
        "a flag whose help states a default must state the one the agent has"
    );
}

#[test]
fn server_flags_state_the_defaults_the_server_has() {
    let d = ServerConfig::default();
    assert_eq!(d.public_address, None);
    assert_eq!(d.district_file, None);
    assert_eq!(
        stated_defaults::<ServerOverrides>(),
        pairs(&[
            ("listen", d.listen.to_string()),
            ("public_address", "derived from --listen".into()),
            ("server_name", d.server_name),
            ("data_dir", d.data_dir.display().to_string()),
            ("bitrate", d.bitrate.to_string()),
            ("district_file", "embedded Bình Sơn district".into()),
            ("log", d.log),
            ("admin_listen", d.admin_listen.to_string()),
            ("console_listen", d.console_listen.to_string()),
            ("library_max_upload_mb", d.library_max_upload_mb.to_string()),
            ("tts_timeout_secs", d.tts_timeout_secs.to_string()),
            ("tts_max_chars", d.tts_max_chars.to_string()),
        ]),
        "a flag whose help states a default must state the one the server has"
    );
}

#[test]
fn flags_state_the_ranges_the_rules_enforce() {
    let help = |cmd: clap::Command, id: &str| {
        cmd.get_arguments()
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
    };
    let agent = AgentOverrides::augment_args(clap::Command::new("help"));
    let (min, max) = PLAYOUT_DELAY_MS_RANGE;
    let mut cfg = AgentConfig {
        sinks: vec!["wav:/tmp/x.wav".parse().expect("sink")],
        ..AgentConfig::default()
    };
    for (delay, valid) in [(min, true), (min - 1, false), (max, true), (max + 1, false)] {
        cfg.playout_delay_ms = delay;
        cfg.jitter_capacity_frames = delay / 20 + 10;
        assert_eq!(cfg.validate().is_ok(), valid, "playout_delay_ms {delay}");
    }
    assert!(help(agent, "playout_delay_ms").contains(&format!("{min}-{max}")));
    let server = ServerOverrides::augment_args(clap::Command::new("help"));
    let (min, max) = BITRATE_RANGE;
    let mut cfg = ServerConfig::default();
    for (bitrate, valid) in [(min, true), (min - 1, false), (max, true), (max + 1, false)] {
        cfg.bitrate = bitrate;
        assert_eq!(cfg.validate().is_ok(), valid, "bitrate {bitrate}");
    }
    assert!(help(server, "bitrate").contains(&format!("{min}-{max}")));
}

// --- defaults ---

#[test]
fn server_defaults_when_nothing_is_given() {
    let cfg = merge_server(None, &no_env(), &ServerOverrides::default()).expect("defaults");
    assert_eq!(cfg, ServerConfig::default());
    let cfg = merge_server(
        Some(("", "empty.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect("empty file");
    assert_eq!(cfg, ServerConfig::default());
}

#[test]
fn agent_defaults_apart_from_the_required_sink() {
    let cfg = merge_agent(None, &no_env(), &wav_sink()).expect("defaults");
    assert_eq!(
        cfg,
        AgentConfig {
            sinks: wav_sink().sinks,
            ..AgentConfig::default()
        }
    );
    let err = merge_agent(None, &no_env(), &AgentOverrides::default()).expect_err("no sink");
    assert_eq!(err.key.as_deref(), Some("sinks"));
    assert_eq!(err.source_name, "relay-agent config");
    let err = merge_agent(
        Some(("log = \"info\"\n", "agent.toml")),
        &no_env(),
        &AgentOverrides::default(),
    )
    .expect_err("no sink");
    assert_eq!(err.source_name, "agent.toml");
    assert_eq!(err.key.as_deref(), Some("sinks"));
    assert_eq!(err.line, None);
}

// --- precedence ---

#[test]
fn server_file_overrides_defaults() {
    let cfg = merge_server(
        Some((SERVER_FILE, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect("valid");
    assert_eq!(cfg.listen.to_string(), "0.0.0.0:5000");
    assert_eq!(cfg.server_name, "radio.binhson.gov.vn");
    assert_eq!(cfg.bitrate, 24_000);
    assert_eq!(cfg.log, "debug");
    assert_eq!(cfg.data_dir, ServerConfig::default().data_dir);
}

#[test]
fn server_env_overrides_file() {
    let e = env(&[
        ("RADIO_SERVER_BITRATE", "48000"),
        ("RADIO_SERVER_DATA_DIR", "/srv/radio"),
        ("RADIO_SERVER_CONFIG", "/ignored/by/merge.toml"),
        ("UNRELATED", "x"),
    ]);
    let cfg = merge_server(
        Some((SERVER_FILE, "server.toml")),
        &e,
        &ServerOverrides::default(),
    )
    .expect("valid");
    assert_eq!(cfg.bitrate, 48_000);
    assert_eq!(cfg.data_dir, PathBuf::from("/srv/radio"));
    assert_eq!(cfg.server_name, "radio.binhson.gov.vn", "file value kept");
}

#[test]
fn server_cli_overrides_env_and_file() {
    let e = env(&[
        ("RADIO_SERVER_BITRATE", "48000"),
        ("RADIO_SERVER_LOG", "warn"),
    ]);
    let cli = ServerOverrides {
        bitrate: Some(64_000),
        listen: Some("127.0.0.1:6000".parse().expect("addr")),
        public_address: Some("radio.example:443".into()),
        ..ServerOverrides::default()
    };
    let cfg = merge_server(Some((SERVER_FILE, "server.toml")), &e, &cli).expect("valid");
    assert_eq!(cfg.bitrate, 64_000);
    assert_eq!(cfg.listen.to_string(), "127.0.0.1:6000");
    assert_eq!(cfg.public_address(), "radio.example:443");
    assert_eq!(cfg.log, "warn", "env beats file where the cli is silent");
}

#[test]
fn every_server_field_has_an_env_var() {
    let e = env(&[
        ("RADIO_SERVER_LISTEN", "10.0.0.1:7000"),
        ("RADIO_SERVER_PUBLIC_ADDRESS", "radio.example:7000"),
        ("RADIO_SERVER_SERVER_NAME", "radio.example"),
        ("RADIO_SERVER_DATA_DIR", "/d"),
        ("RADIO_SERVER_BITRATE", "16000"),
        ("RADIO_SERVER_DISTRICT_FILE", "/d/district.toml"),
        ("RADIO_SERVER_HEARTBEAT_INTERVAL_MS", " 1000 "),
        ("RADIO_SERVER_IDLE_TIMEOUT_MS", "3000"),
        ("RADIO_SERVER_MAX_AGENTS", "22"),
        ("RADIO_SERVER_SEND_QUEUE_FRAMES", "50"),
        ("RADIO_SERVER_PREFETCH_HORIZON_HOURS", "6"),
        ("RADIO_SERVER_LOG", "trace"),
        ("RADIO_SERVER_ADMIN_LISTEN", "0.0.0.0:4481"),
        ("RADIO_SERVER_ADMIN_ALLOW_REMOTE", "true"),
        ("RADIO_SERVER_CONSOLE_LISTEN", "10.0.0.1:9443"),
        ("RADIO_SERVER_CONSOLE_NAMES", "radio.example, 10.0.0.1"),
        ("RADIO_SERVER_CONSOLE_CERT", "/d/console.crt"),
        ("RADIO_SERVER_CONSOLE_KEY", "/d/console.key"),
        ("RADIO_SERVER_LIBRARY_MAX_UPLOAD_MB", "8"),
        (
            "RADIO_SERVER_TTS_COMMAND",
            r#"["piper", "--model", "/opt/vi, giọng nam.onnx", "--output_file", "-"]"#,
        ),
        ("RADIO_SERVER_TTS_TIMEOUT_SECS", "9"),
        ("RADIO_SERVER_TTS_MAX_CHARS", "500"),
        (
            "RADIO_SERVER_PROVINCIAL_STREAM",
            "http://radio.quangngai.example:8000/qng.mp3",
        ),
    ]);
    let cfg = merge_server(None, &e, &ServerOverrides::default()).expect("valid");
    let expected = ServerConfig {
        listen: "10.0.0.1:7000".parse().expect("addr"),
        public_address: Some("radio.example:7000".into()),
        server_name: "radio.example".into(),
        data_dir: "/d".into(),
        bitrate: 16_000,
        district_file: Some("/d/district.toml".into()),
        heartbeat_interval_ms: 1_000,
        idle_timeout_ms: 3_000,
        max_agents: 22,
        send_queue_frames: 50,
        audio_packet_budget: 25_000,
        quic_sockets: 1,
        prefetch_horizon_hours: 6,
        log: "trace".into(),
        admin_listen: "0.0.0.0:4481".parse().expect("addr"),
        admin_allow_remote: true,
        console_listen: "10.0.0.1:9443".parse().expect("addr"),
        console_names: vec!["radio.example".into(), "10.0.0.1".into()],
        console_cert: Some("/d/console.crt".into()),
        console_key: Some("/d/console.key".into()),
        library_max_upload_mb: 8,
        tts_command: vec![
            "piper".into(),
            "--model".into(),
            "/opt/vi, giọng nam.onnx".into(),
            "--output_file".into(),
            "-".into(),
        ],
        tts_timeout_secs: 9,
        tts_max_chars: 500,
        provincial_stream: "http://radio.quangngai.example:8000/qng.mp3".into(),
        ..ServerConfig::default()
    };
    assert_eq!(cfg, expected);
    // The field table matches the struct: every serialised scalar key is listed (tables
    // such as `[live]` are file-only).
    let table = toml::Table::try_from(&expected).expect("serialises");
    let keys: Vec<&str> = table
        .iter()
        .filter(|(_, value)| !value.is_table())
        .map(|(key, _)| key.as_str())
        .collect();
    let mut fields = SERVER_FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(keys, fields);
}

#[test]
fn the_console_certificate_needs_its_key_and_names_need_no_spaces() {
    let half = merge_server(
        Some(("console_cert = \"/etc/radio/console.crt\"\n", "server.toml")),
        &env(&[]),
        &ServerOverrides::default(),
    )
    .expect_err("a certificate without its key");
    assert_eq!(half.key.as_deref(), Some("console_cert"));
    assert_eq!(half.line, Some(1), "{half}");
    let spaced = merge_server(
        None,
        &env(&[("RADIO_SERVER_CONSOLE_NAMES", "radio example")]),
        &ServerOverrides::default(),
    )
    .expect_err("a name with a space");
    assert!(
        spaced.to_string().contains("RADIO_SERVER_CONSOLE_NAMES"),
        "{spaced}"
    );
}

#[test]
fn empty_env_value_unsets_an_optional_field() {
    let file = "public_address = \"a.example:1\"\n";
    let e = env(&[("RADIO_SERVER_PUBLIC_ADDRESS", "")]);
    let cfg = merge_server(Some((file, "s.toml")), &e, &ServerOverrides::default()).expect("valid");
    assert_eq!(cfg.public_address, None);
}

#[test]
fn agent_layers_in_order() {
    let file = "\
sinks = [\"wav:/file.wav\"]
playout_delay_ms = 350
bundle = \"/file/bundle.toml\"
log = \"debug\"
";
    let e = env(&[
        ("RELAY_AGENT_PLAYOUT_DELAY_MS", "400"),
        (
            "RELAY_AGENT_SINKS",
            "rtp:127.0.0.1:5004,sdp=/tmp/a.sdp; wav:/env.wav",
        ),
        ("RELAY_AGENT_SERVER", "radio.example:4433"),
        ("RELAY_AGENT_LOG", "warn"),
    ]);
    let from_file = merge_agent(
        Some((file, "agent.toml")),
        &no_env(),
        &AgentOverrides::default(),
    )
    .expect("valid");
    assert_eq!(from_file.playout_delay_ms, 350);
    assert_eq!(from_file.sinks.len(), 1);

    let from_env =
        merge_agent(Some((file, "agent.toml")), &e, &AgentOverrides::default()).expect("valid");
    assert_eq!(from_env.playout_delay_ms, 400);
    assert_eq!(
        from_env
            .sinks
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["rtp:127.0.0.1:5004,sdp=/tmp/a.sdp", "wav:/env.wav"]
    );
    assert_eq!(from_env.server.as_deref(), Some("radio.example:4433"));
    assert_eq!(from_env.bundle, PathBuf::from("/file/bundle.toml"));

    let cli = AgentOverrides {
        playout_delay_ms: Some(100),
        sinks: vec!["pipe:cat > /dev/null".parse().expect("valid")],
        server: Some("10.0.0.1:4433".into()),
        bundle: Some("/cli/bundle.toml".into()),
        state_dir: Some("/cli/state".into()),
        ..AgentOverrides::default()
    };
    let from_cli = merge_agent(Some((file, "agent.toml")), &e, &cli).expect("valid");
    assert_eq!(from_cli.playout_delay_ms, 100);
    assert_eq!(from_cli.sinks, cli.sinks, "cli sinks replace, not extend");
    assert_eq!(from_cli.server.as_deref(), Some("10.0.0.1:4433"));
    assert_eq!(from_cli.bundle, PathBuf::from("/cli/bundle.toml"));
    assert_eq!(from_cli.state_dir, PathBuf::from("/cli/state"));
    assert_eq!(from_cli.log, "warn");
}

#[test]
fn every_agent_field_has_an_env_var() {
    let e = env(&[
        ("RELAY_AGENT_BUNDLE", "/b.toml"),
        ("RELAY_AGENT_SERVER", "s.example:1"),
        ("RELAY_AGENT_STATE_DIR", "/s"),
        ("RELAY_AGENT_SINKS", "wav:/a.wav"),
        ("RELAY_AGENT_PLAYOUT_DELAY_MS", "100"),
        ("RELAY_AGENT_JITTER_CAPACITY_FRAMES", "20"),
        ("RELAY_AGENT_RECONNECT_MIN_MS", "50"),
        ("RELAY_AGENT_RECONNECT_MAX_MS", "60"),
        ("RELAY_AGENT_JOURNAL_HEARTBEAT_SECS", "5"),
        ("RELAY_AGENT_JOURNAL_MAX_RECORDS", "500"),
        ("RELAY_AGENT_CLUSTER_TIMEOUT_SECS", "45"),
        ("RELAY_AGENT_PREFETCH_MAX_MB", "64"),
        ("RELAY_AGENT_LOG", "trace"),
    ]);
    let cfg = merge_agent(None, &e, &AgentOverrides::default()).expect("valid");
    let expected = AgentConfig {
        bundle: "/b.toml".into(),
        server: Some("s.example:1".into()),
        state_dir: "/s".into(),
        sinks: vec!["wav:/a.wav".parse().expect("valid")],
        playout_delay_ms: 100,
        jitter_capacity_frames: 20,
        reconnect_min_ms: 50,
        reconnect_max_ms: 60,
        journal_heartbeat_secs: 5,
        journal_max_records: 500,
        cluster_timeout_secs: 45,
        prefetch_max_mb: 64,
        log: "trace".into(),
        amplifier: None,
    };
    assert_eq!(cfg, expected);
    let table = toml::Table::try_from(&expected).expect("serialises");
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let mut fields = AGENT_FIELDS.to_vec();
    fields.sort_unstable();
    assert_eq!(keys, fields);
}

// --- file errors ---

#[test]
fn unknown_field_in_file_names_line_and_key() {
    let text = "listen = \"0.0.0.0:4433\"\n\nbitrat = 32000\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("typo");
    assert_eq!(err.key.as_deref(), Some("bitrat"));
    assert_eq!((err.line, err.column), (Some(3), Some(1)));
    assert!(
        err.to_string()
            .starts_with("server.toml:3:1: key `bitrat`: unknown field `bitrat`"),
        "{err}"
    );

    let text = "sinks = [\"wav:/a\"]\nplayout = 3\n";
    let err = merge_agent(
        Some((text, "agent.toml")),
        &no_env(),
        &AgentOverrides::default(),
    )
    .expect_err("typo");
    assert_eq!(err.key.as_deref(), Some("playout"));
    assert_eq!(err.line, Some(2));
}

#[test]
fn type_error_in_file_names_line_and_key() {
    let text = "listen = \"0.0.0.0:4433\"\nbitrate = \"fast\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("string for u32");
    assert_eq!(err.key.as_deref(), Some("bitrate"));
    assert_eq!((err.line, err.column), (Some(2), Some(11)));
    assert!(err.message.contains("invalid type"), "{err}");

    let text = "listen = \"somewhere\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("bad address");
    assert_eq!(err.key.as_deref(), Some("listen"));
    assert_eq!(err.line, Some(1));
}

#[test]
fn bad_sink_in_file_names_its_element() {
    let text = "log = \"info\"\nsinks = [\n  \"wav:/a.wav\",\n  \"mp3:/b.mp3\",\n]\n";
    let err = merge_agent(
        Some((text, "agent.toml")),
        &no_env(),
        &AgentOverrides::default(),
    )
    .expect_err("bad sink");
    assert_eq!(err.key.as_deref(), Some("sinks[1]"));
    assert_eq!((err.line, err.column), (Some(4), Some(3)));
    assert!(err.message.contains("unknown sink kind `mp3`"), "{err}");
}

#[test]
fn syntax_error_in_file_names_line_and_key() {
    let text = "listen = \"0.0.0.0:4433\"\nbitrate = 32_000_\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("bad number");
    assert_eq!(err.key.as_deref(), Some("bitrate"));
    assert_eq!(err.line, Some(2));
}

#[test]
fn validation_error_from_file_names_key_and_line() {
    let text = "listen = \"0.0.0.0:4433\"\n\n\n\n\n\n\n\n\n\n\n    bitrate = 900\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("too low");
    assert_eq!(
        err.to_string(),
        "server.toml:12:15: key `bitrate`: must be between 6000 and 510000 (got 900)"
    );
}

#[test]
fn errors_inside_tables_name_the_dotted_key_and_line() {
    let text = "bitrate = 32000\n\n[live]\nrtp = \"0.0.0.0:5004\"\nallow = [\"127.0.0.1\"]\n\
                silence_timeout_ms = 30\n\n[[upstream]]\nname = \"tinh\"\nbundle = \"/etc/p.toml\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("30 ms is too short");
    assert_eq!(
        err.to_string(),
        "server.toml:6:22: key `live.silence_timeout_ms`: must be between 1000 and 3600000 \
         (got 30)"
    );
    let text = text.replace("silence_timeout_ms = 30", "silence_timeout_ms = 0");
    let cfg = merge_server(
        Some((&text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect("valid");
    assert_eq!(cfg.live.rtp, Some("0.0.0.0:5004".parse().expect("addr")));
    assert_eq!(cfg.upstreams[0].name, "tinh");
    assert_eq!(cfg.upstreams[0].playout_delay_ms, 500);
    let text = "[[upstream]]\nname = \"tinh\"\nbundle = \"/b.toml\"\n\n[[upstream]]\n\
                name = \"tinh\"\nbundle = \"/c.toml\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("two upstreams with one name");
    assert!(
        err.to_string()
            .starts_with("server.toml:6:8: key `upstream[1].name`"),
        "{err}"
    );
    let text = "[relay]\nfallback = \"/srv/a.mp3\"\nbackoff_min = 3\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("unknown key");
    assert!(
        err.to_string()
            .starts_with("server.toml:3:1: key `relay.backoff_min`"),
        "{err}"
    );
}

#[test]
fn cross_field_rule_blames_the_field_that_was_set() {
    // Only the heartbeat was set, so the default idle timeout is not the one to blame.
    let text = "log = \"info\"\nheartbeat_interval_ms = 20000\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("idle <= heartbeat");
    assert_eq!(err.key.as_deref(), Some("heartbeat_interval_ms"));
    assert_eq!(err.line, Some(2));
    assert!(err.message.contains("idle_timeout_ms (15000)"), "{err}");

    let text = "idle_timeout_ms = 5000\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("idle <= heartbeat");
    assert_eq!(err.key.as_deref(), Some("idle_timeout_ms"));
    assert_eq!(err.line, Some(1));

    let text = "sinks = [\"wav:/a\"]\nplayout_delay_ms = 10000\n";
    let err = merge_agent(
        Some((text, "agent.toml")),
        &no_env(),
        &AgentOverrides::default(),
    )
    .expect_err("jitter too small");
    assert_eq!(err.key.as_deref(), Some("playout_delay_ms"));
    assert_eq!(err.line, Some(2));
}

// --- environment and flag errors ---

#[test]
fn unknown_env_var_is_named() {
    let e = env(&[("RADIO_SERVER_BITRATES", "32000")]);
    let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("typo");
    assert_eq!(err.source_name, "environment");
    assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_BITRATES"));
    assert!(err.message.contains("RADIO_SERVER_BITRATE,"), "{err}");

    // Lower-case suffixes are a different variable on Unix, so they are typos too.
    let e = env(&[("RELAY_AGENT_log", "info")]);
    let err = merge_agent(None, &e, &wav_sink()).expect_err("typo");
    assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_log"));
}

#[test]
fn bad_env_value_names_the_variable() {
    let e = env(&[("RADIO_SERVER_BITRATE", "fast")]);
    let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not a number");
    assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_BITRATE"));
    assert_eq!(err.line, None);
    assert!(
        err.to_string()
            .starts_with("environment: key `RADIO_SERVER_BITRATE`: cannot read `fast`"),
        "{err}"
    );

    let e = env(&[("RADIO_SERVER_LISTEN", "localhost:4433")]);
    let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not an ip");
    assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_LISTEN"));

    let e = env(&[("RELAY_AGENT_SINKS", "wav:/a.wav;mp3:/b")]);
    let err = merge_agent(None, &e, &AgentOverrides::default()).expect_err("bad sink");
    assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_SINKS"));
    assert!(err.message.starts_with("sink 2 `mp3:/b`"), "{err}");
}

/// The variables named in `text` that start with `prefix` (`RADIO_SERVER_*` and
/// `RADIO_SERVER_…`, which stand for them all, are not names).
fn variables_named(text: &str, prefix: &str) -> std::collections::BTreeSet<String> {
    let is_name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    let mut found = std::collections::BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        if text[..i].chars().next_back().is_some_and(is_name_char) {
            continue;
        }
        let rest = &text[i..];
        let end = rest.find(|c| !is_name_char(c)).unwrap_or(rest.len());
        let name = rest[..end].trim_end_matches('_');
        if name.len() > prefix.trim_end_matches('_').len() {
            found.insert(name.to_owned());
        }
    }
    found
}

/// The variables the environment layer reads for `fields`, and the config file's.
fn variables_read(
    prefix: &str,
    config_var: &str,
    fields: &[&str],
) -> std::collections::BTreeSet<String> {
    fields
        .iter()
        .map(|f| format!("{prefix}{}", f.to_ascii_uppercase()))
        .chain([config_var.to_owned()])
        .collect()
}

#[test]
fn the_readme_names_exactly_the_variables_the_environment_layer_reads() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for (prefix, config_var, fields) in [
        (SERVER_ENV_PREFIX, SERVER_CONFIG_ENV, &SERVER_FIELDS[..]),
        (AGENT_ENV_PREFIX, AGENT_CONFIG_ENV, &AGENT_FIELDS[..]),
    ] {
        let read = variables_read(prefix, config_var, fields);
        let named = variables_named(&readme, prefix);
        let unread: Vec<&String> = named.difference(&read).collect();
        let unnamed: Vec<&String> = read.difference(&named).collect();
        assert!(
            unread.is_empty(),
            "README.md names {unread:?}, which the environment layer does not read"
        );
        assert!(
            unnamed.is_empty(),
            "the environment layer reads {unnamed:?}, which README.md does not name"
        );
        // The other documents may name fewer, but none that does not exist.
        for doc in std::fs::read_dir(root.join("docs")).expect("docs/") {
            let path = doc.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("read a document");
            let unread: Vec<String> = variables_named(&text, prefix)
                .into_iter()
                .filter(|v| !read.contains(v))
                .collect();
            assert!(
                unread.is_empty(),
                "{} names {unread:?}, which the environment layer does not read",
                path.display()
            );
        }
    }
}

#[test]
fn variables_are_found_as_whole_names() {
    let text = "`RADIO_SERVER_LOG`, RADIO_SERVER_* and RADIO_SERVER_…; \
                XRADIO_SERVER_NOT; RADIO_SERVER_BITRATE=32000, RELAY_AGENT_SINKS.";
    let names: Vec<String> = variables_named(text, SERVER_ENV_PREFIX)
        .into_iter()
        .collect();
    assert_eq!(names, ["RADIO_SERVER_BITRATE", "RADIO_SERVER_LOG"]);
    assert_eq!(
        variables_named(text, AGENT_ENV_PREFIX)
            .into_iter()
            .collect::<Vec<_>>(),
        ["RELAY_AGENT_SINKS"]
    );
}

#[test]
fn provincial_stream_from_file_or_environment_is_checked_where_it_was_set() {
    let text = "bitrate = 24000\nprovincial_stream = \"radio.quangngai.example/qng.mp3\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("no scheme");
    assert_eq!(err.line, Some(2), "{err}");
    assert_eq!(err.key.as_deref(), Some("provincial_stream"), "{err}");

    let e = env(&[("RADIO_SERVER_PROVINCIAL_STREAM", "ftp://radio.example/qng")]);
    let err = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
        .expect_err("not http");
    assert_eq!(
        err.key.as_deref(),
        Some("RADIO_SERVER_PROVINCIAL_STREAM"),
        "{err}"
    );

    let e = env(&[(
        "RADIO_SERVER_PROVINCIAL_STREAM",
        "http://radio.quangngai.example:8000/qng.mp3",
    )]);
    let cfg = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
        .expect("the environment wins over the file");
    assert_eq!(
        cfg.provincial_stream,
        "http://radio.quangngai.example:8000/qng.mp3"
    );
}

#[test]
fn validation_error_from_env_or_cli_names_the_variable_or_flag() {
    let text = "bitrate = 24000\n";
    let e = env(&[("RADIO_SERVER_BITRATE", "900")]);
    let err = merge_server(Some((text, "server.toml")), &e, &ServerOverrides::default())
        .expect_err("too low");
    assert_eq!(
        err.to_string(),
        "environment: key `RADIO_SERVER_BITRATE`: must be between 6000 and 510000 (got 900)"
    );

    let cli = ServerOverrides {
        bitrate: Some(900),
        ..ServerOverrides::default()
    };
    let err = merge_server(Some((text, "server.toml")), &e, &cli).expect_err("too low");
    assert_eq!(
        err.to_string(),
        "command line: key `--bitrate`: must be between 6000 and 510000 (got 900)"
    );

    let cli = AgentOverrides {
        playout_delay_ms: Some(5),
        ..wav_sink()
    };
    let err = merge_agent(None, &no_env(), &cli).expect_err("too short");
    assert_eq!(err.key.as_deref(), Some("--playout-delay-ms"));

    let e = env(&[("RELAY_AGENT_SINKS", " ; ")]);
    let err = merge_agent(
        Some(("sinks = [\"wav:/a\"]\n", "agent.toml")),
        &e,
        &AgentOverrides::default(),
    )
    .expect_err("env emptied the sinks");
    assert_eq!(err.key.as_deref(), Some("RELAY_AGENT_SINKS"));
}

#[test]
fn remote_admin_listen_is_blamed_where_it_was_set() {
    let text = "log = \"info\"\nadmin_listen = \"0.0.0.0:4480\"\n";
    let err = merge_server(
        Some((text, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("not loopback");
    assert_eq!(err.key.as_deref(), Some("admin_listen"));
    assert_eq!(err.line, Some(2));

    let allowed = format!("{text}admin_allow_remote = true\n");
    let cfg = merge_server(
        Some((&allowed, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect("remote allowed");
    assert!(cfg.admin_allow_remote);

    let cli = ServerOverrides {
        admin_listen: Some("192.168.1.5:4480".parse().expect("addr")),
        ..ServerOverrides::default()
    };
    let err = merge_server(None, &no_env(), &cli).expect_err("not loopback");
    assert_eq!(err.key.as_deref(), Some("--admin-listen"));
    assert_eq!(err.source_name, "command line");

    let e = env(&[("RADIO_SERVER_ADMIN_ALLOW_REMOTE", "yes")]);
    let err = merge_server(None, &e, &ServerOverrides::default()).expect_err("not a bool");
    assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_ADMIN_ALLOW_REMOTE"));
}

// --- clap and the impure wrappers ---

#[derive(Debug, clap::Parser)]
struct ServerCli {
    #[command(flatten)]
    overrides: ServerOverrides,
}

#[derive(Debug, clap::Parser)]
struct AgentCli {
    #[command(flatten)]
    overrides: AgentOverrides,
}

#[test]
fn flags_parse_with_clap() {
    use clap::Parser;
    let cli = ServerCli::try_parse_from([
        "radio-server",
        "--listen",
        "127.0.0.1:1",
        "--public-address",
        "a.example:1",
        "--bitrate",
        "16000",
        "--district-file",
        "/d.toml",
        "--admin-listen",
        "127.0.0.1:4481",
        "--library-max-upload-mb",
        "5",
    ])
    .expect("parses");
    assert_eq!(cli.overrides.bitrate, Some(16_000));
    assert_eq!(cli.overrides.library_max_upload_mb, Some(5));
    let merged = merge_server(None, &no_env(), &cli.overrides).expect("valid");
    assert_eq!(merged.library_max_upload_mb, 5);
    let zero = ServerOverrides {
        library_max_upload_mb: Some(0),
        ..ServerOverrides::default()
    };
    let err = merge_server(None, &no_env(), &zero).expect_err("0 MB takes nothing");
    assert!(err.to_string().contains("--library-max-upload-mb"), "{err}");
    assert_eq!(cli.overrides.public_address.as_deref(), Some("a.example:1"));
    assert_eq!(
        cli.overrides.admin_listen,
        Some("127.0.0.1:4481".parse().expect("addr"))
    );

    let cli = AgentCli::try_parse_from([
        "relay-agent",
        "--sink",
        "rtp:127.0.0.1:5004",
        "--sink",
        "pipe:aplay -q -t raw -f S16_LE -r 48000 -c 1",
        "--playout-delay-ms",
        "100",
    ])
    .expect("parses");
    assert_eq!(cli.overrides.sinks.len(), 2);
    assert_eq!(cli.overrides.sinks[1].kind(), "pipe");

    let err = AgentCli::try_parse_from(["relay-agent", "--sink", "mp3:/x"]).expect_err("bad sink");
    assert!(err.to_string().contains("unknown sink kind `mp3`"), "{err}");
}

#[test]
fn load_reads_the_named_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("server.toml");
    std::fs::write(&path, "bitrate = 900\n").expect("write");
    let cli = ServerOverrides {
        config: Some(path.clone()),
        ..ServerOverrides::default()
    };
    let err = load_server(&cli).expect_err("invalid file");
    assert_eq!(err.source_name, path.display().to_string());
    assert_eq!(err.line, Some(1));

    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "sinks = [\"wav:/tmp/a.wav\"]\n").expect("write");
    let cli = AgentOverrides {
        config: Some(path),
        ..AgentOverrides::default()
    };
    // Only asserts what the file sets: the test runner's environment is not ours.
    let cfg = load_agent(&cli).expect("valid file");
    assert_eq!(cfg.sinks.len(), 1);

    let cli = AgentOverrides {
        config: Some(dir.path().join("missing.toml")),
        ..AgentOverrides::default()
    };
    let err = load_agent(&cli).expect_err("missing file");
    assert!(err.message.starts_with("cannot read config file"), "{err}");
}

#[test]
fn config_file_falls_back_to_the_env_var() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, "log = \"x\"\n").expect("write");
    let e = env(&[(AGENT_CONFIG_ENV, path.to_str().expect("utf-8 temp path"))]);
    let (text, source) = read_config(None, &e, AGENT_CONFIG_ENV)
        .expect("readable")
        .expect("named by env");
    assert_eq!(text, "log = \"x\"\n");
    assert_eq!(source, path.display().to_string());
    let flag = dir.path().join("other.toml");
    let err =
        read_config(Some(&flag), &e, AGENT_CONFIG_ENV).expect_err("flag wins, and is missing");
    assert_eq!(err.source_name, flag.display().to_string());
    assert_eq!(read_config(None, &no_env(), AGENT_CONFIG_ENV), Ok(None));
}

#[test]
fn the_speech_engine_is_an_argv_from_every_layer() {
    let file = "tts_command = [\"espeak-ng\", \"-v\", \"vi-vn-x-central\", \"--stdout\"]\n\
                tts_timeout_secs = 12\n";
    let cfg = merge_server(
        Some((file, "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect("a file's engine");
    assert_eq!(
        cfg.tts_command,
        ["espeak-ng", "-v", "vi-vn-x-central", "--stdout"]
    );
    assert_eq!(cfg.tts_timeout_secs, 12);
    assert_eq!(cfg.tts_max_chars, DEFAULT_TTS_MAX_CHARS);

    // An empty variable unsets the file's engine: espeak-ng again.
    let cfg = merge_server(
        Some((file, "server.toml")),
        &env(&[("RADIO_SERVER_TTS_COMMAND", " ")]),
        &ServerOverrides::default(),
    )
    .expect("unset");
    assert!(cfg.tts_command.is_empty());

    // A shell line is not an argv: refused, naming the variable and the form to use.
    let err = merge_server(
        None,
        &env(&[("RADIO_SERVER_TTS_COMMAND", "piper --model x")]),
        &ServerOverrides::default(),
    )
    .expect_err("a shell line");
    assert_eq!(err.key.as_deref(), Some("RADIO_SERVER_TTS_COMMAND"));
    assert!(err.to_string().contains("TOML array"), "{err}");
    let err = merge_server(
        None,
        &env(&[("RADIO_SERVER_TTS_COMMAND", "[\"piper\", 3]")]),
        &ServerOverrides::default(),
    )
    .expect_err("a number");
    assert!(err.to_string().contains("not a string"), "{err}");

    let cli = ServerOverrides {
        tts_command: Some("[\"sh\", \"-c\", \"cat >/dev/null; cat /opt/a.wav\"]".into()),
        tts_timeout_secs: Some(3),
        tts_max_chars: Some(100),
        ..ServerOverrides::default()
    };
    let cfg = merge_server(
        Some((file, "server.toml")),
        &env(&[("RADIO_SERVER_TTS_TIMEOUT_SECS", "20")]),
        &cli,
    )
    .expect("flags win");
    assert_eq!(
        cfg.tts_command,
        ["sh", "-c", "cat >/dev/null; cat /opt/a.wav"]
    );
    assert_eq!(cfg.tts_timeout_secs, 3);
    assert_eq!(cfg.tts_max_chars, 100);

    let (min, max) = TTS_TIMEOUT_SECS_RANGE;
    for (secs, valid) in [(min, true), (min - 1, false), (max, true), (max + 1, false)] {
        let cli = ServerOverrides {
            tts_timeout_secs: Some(secs),
            ..ServerOverrides::default()
        };
        let merged = merge_server(None, &no_env(), &cli);
        assert_eq!(merged.is_ok(), valid, "tts_timeout_secs {secs}");
        if let Err(e) = merged {
            assert!(e.to_string().contains("--tts-timeout-secs"), "{e}");
        }
    }
    let (min, max) = TTS_MAX_CHARS_RANGE;
    for (chars, valid) in [(min, true), (min - 1, false), (max, true), (max + 1, false)] {
        let cfg = ServerConfig {
            tts_max_chars: chars,
            ..ServerConfig::default()
        };
        assert_eq!(cfg.validate().is_ok(), valid, "tts_max_chars {chars}");
    }
    let err = merge_server(
        Some(("tts_command = [\"piper\", \"\"]\n", "server.toml")),
        &no_env(),
        &ServerOverrides::default(),
    )
    .expect_err("an empty argument");
    assert_eq!(err.key.as_deref(), Some("tts_command"));
    assert_eq!(err.line, Some(1), "{err}");
}
