//! Helpers shared by the binary's integration tests (each test file uses a part of them).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cidrcast");

/// Runs `cidrcast --data DATA ARGS... --output json` in `cwd` (no config from the environment),
/// asserts success, and parses its output.
pub fn json_in(data: impl AsRef<OsStr>, cwd: &Path, args: &[&str]) -> Value {
    let out = Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .args(["--output", "json"])
        .current_dir(cwd)
        .env_remove("CIDRCAST_CONFIG")
        .env_remove("CIDRCAST_DATA")
        .output()
        .expect("run cidrcast");
    assert!(
        out.status.success(),
        "cidrcast {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

/// A finished run of the binary: exit code, stdout, stderr.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }
}

/// Runs `cidrcast [--data DATA] ARGS...` in `cwd`, with no configuration from the environment.
pub fn run_in(data: Option<&Path>, cwd: &Path, args: &[&str]) -> Run {
    let mut c = Command::new(BIN);
    if let Some(d) = data {
        c.arg("--data").arg(d);
    }
    let out = c
        .args(args)
        .current_dir(cwd)
        .env_remove("CIDRCAST_CONFIG")
        .env_remove("CIDRCAST_DATA")
        .output()
        .expect("run cidrcast");
    Run::from(out)
}

/// Asserts a clean failure: exit code 1, nothing on stdout, stderr starting with `error: `.
/// Returns stderr.
pub fn assert_failed(args: &[&str], r: &Run) -> String {
    assert_eq!(
        r.code,
        Some(1),
        "cidrcast {args:?} should fail with exit code 1\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    assert_eq!(
        r.stdout, "",
        "cidrcast {args:?} failed but printed to stdout"
    );
    assert!(
        r.stderr.starts_with("error: "),
        "cidrcast {args:?}: stderr should start with `error: `: {:?}",
        r.stderr
    );
    r.stderr.clone()
}
