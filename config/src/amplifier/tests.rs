use super::*;
use crate::{merge_agent, AgentConfig, AgentOverrides};

fn load(text: &str) -> Result<AgentConfig, ConfigError> {
    let text = format!("sinks = [\"wav:/tmp/out.wav\"]\n{text}");
    merge_agent(
        Some((&text, "agent.toml")),
        &Default::default(),
        &AgentOverrides::default(),
    )
}

#[test]
fn no_table_switches_nothing() {
    assert_eq!(load("").expect("valid").amplifier, None);
}

#[test]
fn the_box_on_a_gpio_line_with_the_defaults() {
    let cfg = load("[amplifier]\nchip = \"/dev/gpiochip0\"\nline = 17\n").expect("valid");
    let amp = cfg.amplifier.expect("amplifier");
    assert_eq!((amp.lead_secs, amp.idle_secs), (5, 60));
    assert_eq!(
        amp.switches().expect("switches"),
        vec![(
            "box".to_owned(),
            SwitchSpec::Gpio {
                chip: "/dev/gpiochip0".into(),
                line: 17,
                active_low: false
            }
        )]
    );
}

#[test]
fn one_command_pair_per_output() {
    let text = "[amplifier]\nlead_secs = 3\nidle_secs = 4\n\
        [[amplifier.outputs]]\nname = \"c01\"\non_command = [\"relay\", \"1\"]\noff_command = [\"relay\", \"0\"]\n\
        [[amplifier.outputs]]\nname = \"fm\"\nchip = \"/dev/gpiochip1\"\nline = 2\nactive_low = true\n";
    let amp = load(text).expect("valid").amplifier.expect("amplifier");
    let switches = amp.switches().expect("switches");
    assert_eq!(switches.len(), 2);
    assert_eq!(
        switches[0].1,
        SwitchSpec::Command {
            on: vec!["relay".into(), "1".into()],
            off: vec!["relay".into(), "0".into()]
        }
    );
    assert!(matches!(
        switches[1].1,
        SwitchSpec::Gpio {
            active_low: true,
            ..
        }
    ));
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("[amplifier]\n", "amplifier.chip", "no switch given"),
        ("[amplifier]\nchip = \"/dev/gpiochip0\"\n", "amplifier.line", "line is missing"),
        (
            "[amplifier]\nline = 1\non_command = [\"a\"]\noff_command = [\"b\"]\n",
            "amplifier.chip",
            "not both",
        ),
        ("[amplifier]\non_command = [\"a\"]\n", "amplifier.off_command", "both commands"),
        (
            "[amplifier]\non_command = []\noff_command = [\"b\"]\n",
            "amplifier.on_command",
            "program",
        ),
        (
            "[amplifier]\nline = 1\nchip = \"/dev/gpiochip0\"\nidle_secs = 0\n",
            "amplifier.idle_secs",
            "between",
        ),
        (
            "[amplifier]\nline = 1\nchip = \"/dev/gpiochip0\"\nlead = 3\n",
            "lead",
            "unknown field",
        ),
        (
            "[amplifier]\nline = 1\nchip = \"/dev/gpiochip0\"\n[[amplifier.outputs]]\nname = \"c01\"\nline = 2\nchip = \"/dev/gpiochip0\"\n",
            "amplifier.outputs",
            "not both",
        ),
        (
            "[amplifier]\n[[amplifier.outputs]]\nname = \"C01\"\nline = 2\nchip = \"/dev/gpiochip0\"\n",
            "amplifier.outputs[0].name",
            "lowercase",
        ),
        (
            "[amplifier]\n[[amplifier.outputs]]\nname = \"a\"\nline = 2\nchip = \"/x\"\n\
             [[amplifier.outputs]]\nname = \"a\"\nline = 3\nchip = \"/x\"\n",
            "amplifier.outputs[1].name",
            "twice",
        ),
    ];
    for (text, key, message) in cases {
        let err = load(text).expect_err(text);
        let shown = err.to_string();
        assert!(shown.contains(key), "{text}: {shown}");
        assert!(shown.contains(message), "{text}: {shown}");
    }
}

#[test]
fn round_trips_through_toml() {
    let text = "[amplifier]\nlead_secs = 2\non_command = [\"a\", \"b c\"]\noff_command = [\"d\"]\n";
    let cfg = load(text).expect("valid");
    let back = toml::to_string(&cfg).expect("serialises");
    let again: AgentConfig = toml::from_str(&back).expect("parses");
    assert_eq!(again, cfg);
}
