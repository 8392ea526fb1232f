//! `ExternalEventSpec`: field checks and its strict serde form.

use cidrcast_core::model::{Change, ExternalEventSpec};
use cidrcast_core::CoreError;

fn event() -> ExternalEventSpec {
    ExternalEventSpec {
        name: "launch".to_string(),
        start: 100.0,
        end: 200.0,
        scope: "eu".to_string(),
        extra_vms: Some(10.0),
        multiplier: None,
    }
}

fn message(spec: ExternalEventSpec) -> String {
    match spec.validate() {
        Err(e @ CoreError::InvalidEvent { .. }) => e.to_string(),
        other => panic!("expected InvalidEvent, got {other:?}"),
    }
}

#[test]
fn valid_events() {
    event().validate().unwrap();
    ExternalEventSpec {
        extra_vms: None,
        multiplier: Some(0.5),
        scope: "*".into(),
        ..event()
    }
    .validate()
    .unwrap();
    ExternalEventSpec {
        extra_vms: Some(0.0),
        multiplier: Some(3.0),
        start: -5.0,
        end: -4.5,
        ..event()
    }
    .validate()
    .unwrap();
    assert!(ExternalEventSpec {
        scope: "*".into(),
        ..event()
    }
    .is_global());
    assert!(!event().is_global());
}

#[test]
fn every_field_is_checked_and_named_with_its_value() {
    let cases: Vec<(ExternalEventSpec, &str)> = vec![
        (
            ExternalEventSpec {
                name: String::new(),
                ..event()
            },
            "event ``: name = \"\": a name is 1 to 64 characters",
        ),
        (
            ExternalEventSpec {
                name: "a b".into(),
                ..event()
            },
            "name = \"a b\"",
        ),
        (
            ExternalEventSpec {
                name: "x".repeat(65),
                ..event()
            },
            "a name is 1 to 64",
        ),
        (
            ExternalEventSpec {
                start: f64::NAN,
                ..event()
            },
            "event `launch`: start = NaN: must be a finite time in seconds",
        ),
        (
            ExternalEventSpec {
                end: f64::INFINITY,
                ..event()
            },
            "end = inf: must be a finite time",
        ),
        (
            ExternalEventSpec {
                end: 100.0,
                ..event()
            },
            "event `launch`: end = 100: must be greater than start = 100",
        ),
        (
            ExternalEventSpec {
                end: 50.5,
                ..event()
            },
            "end = 50.5: must be greater than start = 100",
        ),
        (
            ExternalEventSpec {
                scope: String::new(),
                ..event()
            },
            "scope = \"\": must name a subdivision",
        ),
        (
            ExternalEventSpec {
                extra_vms: Some(-1.0),
                ..event()
            },
            "event `launch`: extra_vms = -1: must be a finite number of VMs >= 0",
        ),
        (
            ExternalEventSpec {
                extra_vms: Some(f64::NAN),
                ..event()
            },
            "extra_vms = NaN",
        ),
        (
            ExternalEventSpec {
                multiplier: Some(0.0),
                ..event()
            },
            "event `launch`: multiplier = 0: must be a finite number > 0",
        ),
        (
            ExternalEventSpec {
                multiplier: Some(-2.0),
                ..event()
            },
            "multiplier = -2",
        ),
        (
            ExternalEventSpec {
                multiplier: Some(f64::INFINITY),
                ..event()
            },
            "multiplier = inf",
        ),
        (
            ExternalEventSpec {
                extra_vms: None,
                multiplier: None,
                ..event()
            },
            "event `launch`: no effect: give extra_vms, multiplier or both",
        ),
    ];
    for (spec, expected) in cases {
        let got = message(spec.clone());
        assert!(
            got.contains(expected),
            "{spec:?}: {got:?} lacks {expected:?}"
        );
    }
}

#[test]
fn serde_is_strict_and_omits_missing_effects() {
    let json = serde_json::to_string(&event()).unwrap();
    assert_eq!(
        json,
        r#"{"name":"launch","start":100.0,"end":200.0,"scope":"eu","extra_vms":10.0}"#
    );
    let back: ExternalEventSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, event());
    let err = serde_json::from_str::<ExternalEventSpec>(
        r#"{"name":"x","start":1,"end":2,"scope":"*","extra":1}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    let change = Change::DeleteExternalEvent {
        name: "launch".into(),
    };
    let json = serde_json::to_string(&change).unwrap();
    assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
}
