//! Helpers shared by the binary's integration tests.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

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
