//! `cidrcast backtest` end to end on a small trace written by the test.

mod common;

use std::process::Command;

use common::{json_in, BIN};

/// A subdivision whose VM count follows a daily pattern: `base + hour-of-day` VMs alive at every
/// hour of six days (one create or delete per change, a minute after the hour).
fn daily_trace(dir: &std::path::Path) -> std::path::PathBuf {
    let mut lines = vec!["time_s,subdivision,event,vm_id,profile".to_string()];
    let mut alive: Vec<u64> = Vec::new();
    let mut next = 0u64;
    for hour in 0..(6 * 24) {
        let want = 5 + (hour % 24) as usize;
        let t = hour as f64 * 3600.0 + 60.0;
        while alive.len() < want {
            lines.push(format!("{t:.3},a,create,vm-{next},"));
            alive.push(next);
            next += 1;
        }
        while alive.len() > want {
            let vm = alive.remove(0);
            lines.push(format!("{t:.3},a,delete,vm-{vm},"));
        }
    }
    let p = dir.join("daily.csv");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// Runs `cidrcast COMMAND --events TRACE EXTRA...` in `dir`, asserts that it fails, and returns
/// its stderr.
fn refused(
    dir: &std::path::Path,
    command: &str,
    trace: &std::path::Path,
    extra: &[&str],
) -> String {
    let out = Command::new(BIN)
        .args([command, "--events", trace.to_str().unwrap()])
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "cidrcast {command} {extra:?} succeeded"
    );
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn backtest_scores_models_and_reports_json() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let v = json_in(
        dir.path().join("data"),
        dir.path(),
        &[
            "backtest",
            "--events",
            trace.to_str().unwrap(),
            "--eval-start",
            &(4.0 * 86400.0).to_string(),
        ],
    );
    let sn = &v["models"]["seasonal_naive_24"];
    // The series repeats every 24 h exactly: the seasonal naive forecast is perfect after the
    // first day, so its sMAPE is 0 and its intervals hold every actual.
    assert_eq!(sn["smape"].as_f64(), Some(0.0), "{v}");
    assert_eq!(sn["coverage_95"].as_f64(), Some(1.0));
    assert_eq!(sn["forecasts"].as_u64(), Some(48));
    assert_eq!(v["series"].as_u64(), Some(1));
    assert_eq!(v["protocol"]["horizon_steps"].as_u64(), Some(1));
    assert_eq!(v["protocol"]["season_steps"].as_u64(), Some(24));
    // Not enough history for a weekly season: reported as not scored, never as zero error.
    let weekly = &v["models"]["seasonal_naive_168"];
    assert!(weekly["mase"].is_null(), "{weekly}");
    assert_eq!(weekly["excluded"].as_u64(), Some(1));
    // The selection picks, per series, the model that has been right: here the exact one.
    assert_eq!(v["selected"]["model"].as_str(), Some("select"));
    assert_eq!(v["models"]["select"]["smape"].as_f64(), Some(0.0), "{v}");
}

#[test]
fn backtest_rejects_bad_arguments_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let run = |extra: &[&str]| refused(dir.path(), "backtest", &trace, extra);
    assert!(run(&["--target", "median"]).contains("invalid target median"));
    assert!(run(&["--horizon", "0h"]).contains("invalid horizon 0h"));
    assert!(run(&["--horizon", "90m"]).contains("--horizon 90m is not a whole number"));
    assert!(run(&["--eval-start", "1e9"]).contains("--eval-start 1000000000 lies after"));
    assert!(run(&["--top", "0"]).contains("--top 0"));
    let missing = Command::new(BIN)
        .args(["backtest", "--events", "nope.csv"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.csv"));
}

#[test]
fn forecast_reflects_a_scheduled_event_in_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let data = dir.path().join("data");
    let args = [
        "forecast",
        "--events",
        trace.to_str().unwrap(),
        "--resolution",
        "1h",
        "--horizon",
        "2h",
        "--quantiles",
        "0.5,0.95",
    ];
    let base = json_in(&data, dir.path(), &args);
    let a = &base["subdivisions"][0];
    assert_eq!(a["subdivision"].as_str(), Some("a"));
    assert_eq!(a["cold_start"].as_bool(), Some(false));
    assert_eq!(a["events"].as_array().map(Vec::len), Some(0));
    let peak = a["peak"]["point"].as_f64().unwrap();
    let end = base["history_end_s"].as_f64().unwrap();
    // The history ends with hour 23 (28 VMs); those VMs live until 00:01, when the count falls
    // to 5, then 6 at 01:01: the peak over the next two hours is the 28 still alive, the count at
    // the horizon 6.
    assert_eq!(peak, 28.0, "{a}");
    assert_eq!(a["alive"]["point"].as_f64(), Some(6.0));
    let added = Command::new(BIN)
        .arg("--data")
        .arg(&data)
        .args(["subdivision", "add", "a"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(added.status.success());
    json_in(
        &data,
        dir.path(),
        &[
            "event",
            "add",
            "launch",
            "--start",
            &(end + 3600.0).to_string(),
            "--end",
            &(end + 7200.0).to_string(),
            "--scope",
            "a",
            "--extra-vms",
            "100",
        ],
    );
    let with = json_in(&data, dir.path(), &args);
    let b = &with["subdivisions"][0];
    assert_eq!(b["events"][0].as_str(), Some("launch"), "{b}");
    let peak_with = b["peak"]["point"].as_f64().unwrap();
    assert_eq!(peak_with, peak + 100.0, "{b}");
    assert!(b["peak"]["quantiles"][1][1].as_f64().unwrap() >= peak_with);
    // An event outside the horizon changes nothing.
    json_in(
        &data,
        dir.path(),
        &[
            "event",
            "add",
            "later",
            "--start",
            &(end + 1e6).to_string(),
            "--end",
            &(end + 2e6).to_string(),
            "--scope",
            "*",
            "--multiplier",
            "3",
        ],
    );
    let again = json_in(&data, dir.path(), &args);
    assert_eq!(
        again["subdivisions"][0]["peak"]["point"].as_f64(),
        Some(peak_with)
    );
}

#[test]
fn forecast_rejects_bad_arguments_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let run = |extra: &[&str]| refused(dir.path(), "forecast", &trace, extra);
    assert!(run(&["--quantiles", "0.5,1.2"])
        .contains("--quantiles: 1.2 must lie strictly between 0 and 1"));
    assert!(run(&["--quantiles", "x"]).contains("\"x\" is not a number"));
    assert!(run(&["--horizon", "0"]).contains("invalid horizon 0"));
    assert!(run(&["--subdivision", "nope"]).contains("unknown subdivision `nope`"));
    std::fs::write(
        dir.path().join("empty.csv"),
        "time_s,subdivision,event,vm_id,profile\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["forecast", "--events", "empty.csv"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no VM events"));
}

#[test]
fn a_young_subdivision_borrows_from_its_parent_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["time_s,subdivision,event,vm_id,profile".to_string()];
    for hour in 0..(4 * 24) {
        let t = hour as f64 * 3600.0 + 30.0;
        lines.push(format!("{t:.3},zone,create,z{hour},"));
    }
    for (i, t) in [95.0 * 3600.0 + 100.0, 95.0 * 3600.0 + 200.0]
        .iter()
        .enumerate()
    {
        lines.push(format!("{t:.3},rack,create,r{i},"));
    }
    std::fs::write(dir.path().join("t.csv"), lines.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.path().join("c.toml"),
        "[[subdivision]]\nname = \"zone\"\n\n[[subdivision]]\nname = \"rack\"\nparent = \"zone\"\n",
    )
    .unwrap();
    let v = json_in(
        dir.path().join("data"),
        dir.path(),
        &[
            "--config",
            "c.toml",
            "forecast",
            "--events",
            "t.csv",
            "--resolution",
            "1h",
            "--subdivision",
            "rack",
        ],
    );
    let f = &v["subdivisions"][0];
    assert_eq!(f["subdivision"].as_str(), Some("rack"));
    assert_eq!(f["cold_start"].as_bool(), Some(true), "{f}");
    assert_eq!(f["model"].as_str(), Some("cold-start: parent `zone`"));
    // The parent grows by one VM an hour: so does the borrowed shape.
    assert!(f["peak"]["point"].as_f64().unwrap() >= 2.0, "{f}");
}

#[test]
fn simulate_reports_json_and_rejects_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let simulate = |extra: &[&str]| {
        let base = ["simulate", "--events", trace.to_str().unwrap()];
        json_in(
            dir.path().join("data"),
            dir.path(),
            &[&base[..], extra].concat(),
        )
    };
    let v = simulate(&[
        "--policy",
        "oracle",
        "--lead-time",
        "60",
        "--shard-prefix",
        "28",
    ]);
    for key in [
        "creations",
        "misses",
        "miss_rate",
        "mean_wait_s",
        "p99_wait_s",
        "mean_idle_addresses",
        "utilization",
        "shard_claims",
        "shard_releases",
        "routes_mean",
        "routes_max",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["misses"].as_u64(), Some(0));
    let run = |extra: &[&str]| refused(dir.path(), "simulate", &trace, extra);
    assert!(run(&["--policy", "magic", "--lead-time", "60"]).contains("policy magic"));
    assert!(run(&[
        "--policy",
        "on-demand",
        "--param",
        "x=1",
        "--lead-time",
        "60"
    ])
    .contains("parameter x"));
    assert!(run(&["--policy", "oracle", "--lead-time", "-5"]).contains("--lead-time -5"));
    assert!(
        run(&["--policy", "oracle", "--lead-time", "60", "--window", "9:3"])
            .contains("--window 9:3")
    );
    // The adaptive policy's candidates come through one `--param experts=...`, spaces and all.
    let e = run(&[
        "--policy",
        "adaptive",
        "--param",
        "experts=on-demand release_delay=0; oracle",
        "--lead-time",
        "60",
    ]);
    assert!(e.contains("experts=oracle"), "{e}");
    let v = simulate(&[
        "--policy",
        "adaptive",
        "--param",
        "experts=on-demand release_delay=0; warm-target warm_ip_target=4",
        "--param",
        "miss_cost=2",
        "--lead-time",
        "60",
    ]);
    assert!(v["creations"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn simulate_names_a_bad_shard_prefix_range() {
    let dir = tempfile::tempdir().unwrap();
    let trace = daily_trace(dir.path());
    let run = |extra: &[&str]| {
        let base = ["--policy", "predictive", "--lead-time", "60"];
        refused(dir.path(), "simulate", &trace, &[&base[..], extra].concat())
    };
    let e = run(&["--min-shard-prefix", "27"]);
    assert!(
        e.contains("--min-shard-prefix 27: must not exceed --shard-prefix 26"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(run(&["--min-shard-prefix", "0"])
        .contains("--min-shard-prefix 0: must lie between 1 and 32"));
    assert!(run(&["--max-shard-prefix", "25"]).contains("--max-shard-prefix 25: must be at least"));
    assert!(run(&["--max-shard-prefix", "33"]).contains("--max-shard-prefix 33"));
    assert!(
        run(&["--min-shard-prefix", "24", "--param", "route_budget=0"]).contains("route_budget=0")
    );
}
