//! `[[event]]` tables: scheduled external events in the configuration file.

use cidrcast_config::{Config, ExternalEventSpec, EXAMPLE_TOML};

const ORIGIN: &str = "events.toml";

const BASE: &str = r#"
[[subdivision]]
name = "eu"

[[subdivision]]
name = "eu-a"
parent = "eu"
"#;

fn parse(events: &str) -> Result<Config, String> {
    Config::from_toml_str(&format!("{BASE}\n{events}"), ORIGIN).map_err(|e| e.to_string())
}

fn rejected(events: &str, needles: &[&str]) -> String {
    let msg = match parse(events) {
        Ok(c) => panic!(
            "expected an error mentioning {needles:?}, got {:?}",
            c.events
        ),
        Err(m) => m,
    };
    assert!(msg.contains(ORIGIN), "{msg:?} does not name {ORIGIN}");
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
    }
    msg
}

#[test]
fn events_parse_with_integers_and_optional_effects() {
    let c = parse(
        r#"
[[event]]
name = "launch"
start = 100
end = 200.5
scope = "eu"
extra_vms = 40

[[event]]
name = "sale"
start = 0
end = 1
scope = "*"
multiplier = 1.5

[[event]]
name = "both"
start = -10
end = 10
scope = "eu-a"
extra_vms = 0
multiplier = 0.5
"#,
    )
    .unwrap();
    assert_eq!(
        c.events[0],
        ExternalEventSpec {
            name: "launch".into(),
            start: 100.0,
            end: 200.5,
            scope: "eu".into(),
            extra_vms: Some(40.0),
            multiplier: None,
        }
    );
    assert_eq!(c.events[1].multiplier, Some(1.5));
    assert_eq!(c.events[1].extra_vms, None);
    assert!(c.events[1].is_global());
    assert_eq!(c.event("both").unwrap().scope, "eu-a");
    for e in &c.events {
        e.validate().unwrap();
    }
    // Round trip.
    let text = c.to_toml_string().unwrap();
    assert_eq!(Config::from_toml_str(&text, "round trip").unwrap(), c);
}

#[test]
fn unknown_and_missing_keys_are_named() {
    let msg = rejected(
        "[[event]]\nname = \"x\"\nstart = 1\nend = 2\nscope = \"*\"\nextra = 3\n",
        &["unknown field `extra`"],
    );
    assert!(msg.contains(&format!("{ORIGIN}:")), "{msg}");
    rejected(
        "[[event]]\nname = \"x\"\nstart = 1\nend = 2\nextra_vms = 3\n",
        &["missing field `scope`"],
    );
    rejected(
        "[[event]]\nname = \"x\"\nstart = \"monday\"\nend = 2\nscope = \"*\"\nextra_vms = 3\n",
        &["start"],
    );
}

#[test]
fn duplicate_and_invalid_names_are_rejected() {
    let one = |name: &str| {
        format!("[[event]]\nname = \"{name}\"\nstart = 1\nend = 2\nscope = \"*\"\nextra_vms = 1\n")
    };
    let msg = rejected(&format!("{}{}", one("x"), one("x")), &["\"x\""]);
    assert!(
        msg.ends_with("event name \"x\" is used by entries #1 and #2 of [[event]]"),
        "{msg}"
    );
    rejected(&one("a b"), &["event #1", "name = \"a b\""]);
    rejected(&one(""), &["event #1", "name = \"\""]);
}

#[test]
fn windows_effects_and_scopes_are_checked() {
    let ev = |fields: &str| format!("[[event]]\nname = \"x\"\n{fields}\n");
    let cases: [(&str, &str); 10] = [
        (
            "start = 5\nend = 5\nscope = \"*\"\nextra_vms = 1",
            "event \"x\": end = 5: must be greater than start = 5",
        ),
        (
            "start = 5\nend = 1.5\nscope = \"*\"\nextra_vms = 1",
            "end = 1.5: must be greater than start = 5",
        ),
        (
            "start = nan\nend = 1\nscope = \"*\"\nextra_vms = 1",
            "start = NaN: must be a finite time",
        ),
        (
            "start = 1\nend = inf\nscope = \"*\"\nextra_vms = 1",
            "end = inf: must be a finite time",
        ),
        (
            "start = 1\nend = 2\nscope = \"*\"\nextra_vms = -1",
            "event \"x\": extra_vms = -1: must be a finite number of VMs >= 0",
        ),
        (
            "start = 1\nend = 2\nscope = \"*\"\nextra_vms = nan",
            "extra_vms = NaN",
        ),
        (
            "start = 1\nend = 2\nscope = \"*\"\nmultiplier = 0",
            "event \"x\": multiplier = 0: must be a finite number > 0",
        ),
        (
            "start = 1\nend = 2\nscope = \"*\"\nmultiplier = -1.5",
            "multiplier = -1.5",
        ),
        (
            "start = 1\nend = 2\nscope = \"*\"",
            "an event needs an effect: give extra_vms, multiplier or both",
        ),
        (
            "start = 1\nend = 2\nscope = \"us\"\nextra_vms = 1",
            "event \"x\": scope = \"us\": no [[subdivision]] has this name (use \"*\" for every subdivision)",
        ),
    ];
    for (fields, needle) in cases {
        rejected(&ev(fields), &[needle]);
    }
}

#[test]
fn the_example_schedules_events() {
    let c = Config::from_toml_str(EXAMPLE_TOML, "example").unwrap();
    assert!(c.events.len() >= 2);
    assert!(c.events.iter().any(|e| e.is_global()));
    assert!(c.events.iter().any(|e| e.extra_vms.is_some()));
    assert!(c.events.iter().any(|e| e.multiplier.is_some()));
    for e in &c.events {
        e.validate().unwrap();
        assert!(e.is_global() || c.subdivision(&e.scope).is_some());
    }
    for key in [
        "[[event]]",
        "start",
        "end",
        "scope",
        "extra_vms",
        "multiplier",
    ] {
        assert!(
            EXAMPLE_TOML.contains(key),
            "the example does not show {key}"
        );
    }
    assert!(Config::default().events.is_empty());
}
