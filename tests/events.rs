//! `cidrcast event add|list|remove` end to end, and the `[[event]]` tables of a configuration
//! file: each test runs the real binary in its own temporary directory.

mod common;

use std::path::Path;
use std::process::Command;

use common::{json_in, run_in, Run, BIN};
use serde_json::{json, Value};

/// Runs `cidrcast --data DIR/data ARGS...` in DIR, with no configuration from the environment.
fn run(dir: &Path, args: &[&str]) -> Run {
    run_in(Some(&dir.join("data")), dir, args)
}

/// `--output json`, success asserted.
fn json(dir: &Path, args: &[&str]) -> Value {
    json_in(dir.join("data"), dir, args)
}

/// The stored events, through `event list --output json`.
fn events(dir: &Path, extra: &[&str]) -> Value {
    json(dir, &[&["event", "list"], extra].concat())
}

/// Asserts `args` fails cleanly (exit 1, one `error: ` line naming every needle, nothing on
/// stdout) and changes no event. Returns the line.
fn rejected(dir: &Path, args: &[&str], needles: &[&str]) -> String {
    let before = events(dir, &[]);
    let r = run(dir, args);
    assert_eq!(r.code, Some(1), "cidrcast {args:?}: {}", r.stderr);
    assert_eq!(r.stdout, "", "cidrcast {args:?} printed to stdout");
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "cidrcast {args:?}: not one line: {:?}",
        r.stderr
    );
    assert!(lines[0].starts_with("error: "), "{}", lines[0]);
    for n in needles {
        assert!(
            lines[0].contains(n),
            "cidrcast {args:?}: {:?} lacks {n:?}",
            lines[0]
        );
    }
    assert_eq!(
        events(dir, &[]),
        before,
        "cidrcast {args:?} changed the events"
    );
    lines[0].to_string()
}

/// A store with subdivisions `eu` and its child `eu-a`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["subdivision", "add", "eu"][..],
        &["subdivision", "add", "eu-a", "--parent", "eu"],
    ] {
        let r = run(dir.path(), args);
        assert_eq!(r.code, Some(0), "{args:?}: {}", r.stderr);
    }
    dir
}

#[test]
fn add_list_replace_remove() {
    let tmp = setup();
    let dir = tmp.path();
    assert_eq!(events(dir, &[]), json!([]));

    let v = json(
        dir,
        &[
            "event",
            "add",
            "launch",
            "--start",
            "1000",
            "--end",
            "4600",
            "--scope",
            "eu-a",
            "--extra-vms",
            "40",
        ],
    );
    assert_eq!(v["action"], "created");
    assert_eq!(v["name"], "launch");
    assert_eq!(v["scope"], "eu-a");
    assert_eq!(v["extra_vms"], 40.0);
    assert!(
        v.get("multiplier").is_none() && v.get("previous").is_none(),
        "{v}"
    );

    // "*" needs no subdivision; negative times (trace time) are fine.
    let v = json(
        dir,
        &[
            "event",
            "add",
            "sale",
            "--start",
            "-60",
            "--end",
            "86340",
            "--scope",
            "*",
            "--multiplier",
            "1.5",
        ],
    );
    assert_eq!(v["action"], "created");

    // Replace by name.
    let v = json(
        dir,
        &[
            "event",
            "add",
            "launch",
            "--start",
            "1000",
            "--end",
            "8200",
            "--scope",
            "eu",
            "--extra-vms",
            "40",
            "--multiplier",
            "2",
        ],
    );
    assert_eq!(v["action"], "replaced");
    assert_eq!(v["previous"]["end"], 4600.0);
    assert_eq!(v["previous"]["scope"], "eu-a");
    let v = json(
        dir,
        &[
            "event",
            "add",
            "launch",
            "--start",
            "1000",
            "--end",
            "8200",
            "--scope",
            "eu",
            "--extra-vms",
            "40",
            "--multiplier",
            "2",
        ],
    );
    assert_eq!(v["action"], "unchanged");

    assert_eq!(
        events(dir, &[]),
        json!([
            {"name": "launch", "start": 1000.0, "end": 8200.0, "scope": "eu",
             "extra_vms": 40.0, "multiplier": 2.0},
            {"name": "sale", "start": -60.0, "end": 86340.0, "scope": "*", "multiplier": 1.5},
        ])
    );

    // The table.
    let r = run(dir, &["event", "list"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.stdout);
    for h in ["EVENT", "START", "END", "SCOPE", "EXTRA VMS", "MULTIPLIER"] {
        assert!(lines[0].contains(h), "{}", lines[0]);
    }
    assert!(
        lines[1].starts_with("launch") && lines[1].contains("2h"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("sale") && lines[2].contains("1d"),
        "{}",
        lines[2]
    );

    let v = json(dir, &["event", "remove", "launch"]);
    assert_eq!(v["removed"]["name"], "launch");
    let r = run(dir, &["event", "remove", "sale"]);
    assert_eq!(r.code, Some(0));
    assert_eq!(r.stdout, "removed event `sale`\n");
    assert_eq!(events(dir, &[]), json!([]));
}

#[test]
fn bad_input_is_one_line_naming_the_field_and_leaves_the_store() {
    let tmp = setup();
    let dir = tmp.path();
    json(
        dir,
        &[
            "event",
            "add",
            "keep",
            "--start",
            "0",
            "--end",
            "10",
            "--scope",
            "eu",
            "--extra-vms",
            "1",
        ],
    );
    let add = |name: &'static str, rest: &[&'static str]| -> Vec<&'static str> {
        [&["event", "add", name][..], rest].concat()
    };
    let base = |start: &'static str, end: &'static str| {
        vec!["--start", start, "--end", end, "--scope", "eu"]
    };
    rejected(
        dir,
        &add("x", &[base("10", "5"), vec!["--extra-vms", "1"]].concat()),
        &["event `x`", "end = 5", "greater than start = 10"],
    );
    rejected(
        dir,
        &add("x", &[base("10", "10"), vec!["--extra-vms", "1"]].concat()),
        &["end = 10"],
    );
    rejected(
        dir,
        &add("x", &[base("0", "5"), vec!["--extra-vms", "-3"]].concat()),
        &["extra_vms = -3", ">= 0"],
    );
    rejected(
        dir,
        &add("x", &[base("0", "5"), vec!["--multiplier", "0"]].concat()),
        &["multiplier = 0", "> 0"],
    );
    rejected(
        dir,
        &add("x", &[base("0", "5"), vec!["--multiplier", "inf"]].concat()),
        &["multiplier = inf"],
    );
    rejected(
        dir,
        &add("x", &base("0", "5")),
        &["no effect", "extra_vms", "multiplier"],
    );
    rejected(
        dir,
        &add("x", &[base("nan", "5"), vec!["--extra-vms", "1"]].concat()),
        &["start = NaN"],
    );
    rejected(
        dir,
        &add("x", &[base("soon", "5"), vec!["--extra-vms", "1"]].concat()),
        &["--start = \"soon\"", "not a number"],
    );
    rejected(
        dir,
        &add("x", &[base("0", "5"), vec!["--extra-vms", "many"]].concat()),
        &["--extra-vms = \"many\""],
    );
    rejected(
        dir,
        &add(
            "x",
            &[
                "--start",
                "0",
                "--end",
                "5",
                "--scope",
                "us",
                "--extra-vms",
                "1",
            ],
        ),
        &["event `x`", "scope = \"us\"", "unknown subdivision"],
    );
    rejected(
        dir,
        &add("a,b", &[base("0", "5"), vec!["--extra-vms", "1"]].concat()),
        &["name = \"a,b\""],
    );
    // A refused replacement keeps the stored event.
    rejected(
        dir,
        &add(
            "keep",
            &[base("0", "5"), vec!["--multiplier", "-1"]].concat(),
        ),
        &["event `keep`", "multiplier = -1"],
    );
    rejected(
        dir,
        &["event", "remove", "missing"],
        &["unknown event `missing`"],
    );
    assert_eq!(events(dir, &[]).as_array().unwrap().len(), 1);
}

const CONFIG: &str = r#"
[[pool]]
name = "v4"
prefix = "10.0.0.0/16"
shard_prefix_len = 26

[[subdivision]]
name = "eu"

[[subdivision]]
name = "eu-a"
parent = "eu"

[[event]]
name = "launch"
start = 1000
end = 2000
scope = "eu-a"
extra_vms = 40

[[event]]
name = "sale"
start = 0
end = 86400
scope = "*"
multiplier = 1.25
"#;

#[test]
fn config_events_are_created_replaced_and_owned_by_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("c.toml"), CONFIG).unwrap();
    let cfg = ["--config", "c.toml"];
    let list = events(dir, &cfg);
    assert_eq!(
        list,
        json!([
            {"name": "launch", "start": 1000.0, "end": 2000.0, "scope": "eu-a", "extra_vms": 40.0},
            {"name": "sale", "start": 0.0, "end": 86400.0, "scope": "*", "multiplier": 1.25},
        ])
    );
    // Stored: visible without the file too.
    assert_eq!(events(dir, &[]), list);

    // An event added through the CLI is kept when the file is used again.
    json(
        dir,
        &[
            "--config",
            "c.toml",
            "event",
            "add",
            "cli",
            "--start",
            "5",
            "--end",
            "6",
            "--scope",
            "eu",
            "--extra-vms",
            "1",
        ],
    );
    // Changing a file's event through the CLI is refused (the next run would undo it), and so
    // is removing one; re-adding it unchanged is fine.
    rejected(
        dir,
        &[
            "--config",
            "c.toml",
            "event",
            "add",
            "launch",
            "--start",
            "1000",
            "--end",
            "3000",
            "--scope",
            "eu-a",
            "--extra-vms",
            "40",
        ],
        &["event `launch` is defined in the configuration file c.toml"],
    );
    rejected(
        dir,
        &["--config", "c.toml", "event", "remove", "sale"],
        &[
            "event `sale` is defined in the configuration file c.toml",
            "remove it there",
        ],
    );
    let v = json(
        dir,
        &[
            "--config",
            "c.toml",
            "event",
            "add",
            "launch",
            "--start",
            "1000",
            "--end",
            "2000",
            "--scope",
            "eu-a",
            "--extra-vms",
            "40",
        ],
    );
    assert_eq!(v["action"], "unchanged");

    // Editing the file replaces the stored event of that name on the next run.
    std::fs::write(
        dir.join("c.toml"),
        CONFIG.replace("end = 2000", "end = 5000"),
    )
    .unwrap();
    let list = events(dir, &cfg);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["cli", "launch", "sale"]);
    assert_eq!(list[1]["end"], 5000.0);

    // Without the file, its events are ordinary stored events.
    json(dir, &["event", "remove", "sale"]);
    assert_eq!(events(dir, &[]).as_array().unwrap().len(), 2);
}

#[test]
fn invalid_config_events_are_refused_naming_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cases = [
        (
            "scope = \"eu-a\"",
            "scope = \"nowhere\"",
            "event \"launch\": scope = \"nowhere\"",
        ),
        ("end = 2000", "end = 500", "event \"launch\": end = 500"),
        ("extra_vms = 40", "extra_vms = -40", "extra_vms = -40"),
        ("multiplier = 1.25", "multiplier = 0", "multiplier = 0"),
        (
            "name = \"sale\"",
            "name = \"launch\"",
            "event name \"launch\" is used by entries #1 and #2",
        ),
        (
            "multiplier = 1.25",
            "multiplier = 1.25\ncolour = \"red\"",
            "unknown field `colour`",
        ),
    ];
    for (from, to, needle) in cases {
        std::fs::write(dir.join("bad.toml"), CONFIG.replace(from, to)).unwrap();
        let r = run(dir, &["--config", "bad.toml", "event", "list"]);
        assert_eq!(r.code, Some(1), "{to}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("error: bad.toml"),
            "{to}: {}",
            r.stderr
        );
        assert!(
            r.stderr.contains(needle),
            "{to}: {:?} lacks {needle:?}",
            r.stderr
        );
    }
    // The file is refused before the store is opened.
    assert!(!dir.join("data").exists());
}

#[test]
fn the_example_configuration_schedules_its_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let r = Command::new(BIN)
        .args(["init", "cidrcast.toml"])
        .current_dir(dir)
        .env_remove("CIDRCAST_CONFIG")
        .output()
        .unwrap();
    assert!(r.status.success());
    // ./cidrcast.toml is read without --config.
    let list = events(dir, &[]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["black-friday", "product-launch"]);
}
