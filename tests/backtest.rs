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
    let run = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args(["backtest", "--events", trace.to_str().unwrap()])
            .args(extra)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
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
