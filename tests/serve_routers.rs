//! The daemon and router configurations: `/v1/routers/{name}/config` renders from the current
//! shard set, the daemon deploys (validates, writes, reloads) a router's configuration when the
//! shard set changes, a failed reload keeps the previous file, and routers whose file cannot be
//! written are refused.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod daemon;

use daemon::{Client, Daemon};

fn config(dir: &Path) -> String {
    format!(
        r#"
[server]
reconcile_interval_s = 3600

[[pool]]
name = "a4"
prefix = "10.1.0.0/16"
shard_prefix_len = 26

[[subdivision]]
name = "zone-a"
pools = ["a4"]

[[router]]
name = "r1"
flavor = "bird"
router_id = "192.0.2.1"
asn = 65001
neighbors = [{{ address = "192.0.2.254", asn = 65000 }}]
subdivisions = ["zone-a"]
config_path = "{dir}/r1.conf"
reload_command = "echo reloaded >> {dir}/reloads"

[[router]]
name = "r2"
flavor = "frr"
router_id = "192.0.2.2"
asn = 65002
subdivisions = ["zone-a"]
"#,
        dir = dir.display()
    )
}

/// Polls `f` every 100 ms for up to 15 s; panics with `what` when it never holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(15) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}

fn reloads(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("reloads"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn text(c: &Client, path: &str) -> (u16, String) {
    let (s, v) = c.req("GET", path, None);
    match v {
        Value::String(t) => (s, t),
        other => (s, other.to_string()),
    }
}

fn metric(c: &Client, line_prefix: &str) -> Option<f64> {
    let (_, m) = text(c, "/metrics");
    m.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .map(|v| v.trim().parse().unwrap())
}

#[test]
fn the_daemon_serves_and_deploys_router_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &config(dir.path()));
    let c = d.client(None);
    let file = dir.path().join("r1.conf");

    // At startup the daemon deploys the (empty) configuration once and reloads.
    eventually("the first deployment", || {
        file.exists() && reloads(dir.path()) == 1
    });
    let first = std::fs::read_to_string(&file).unwrap();
    assert!(first.contains("router id 192.0.2.1;"), "{first}");
    assert!(!first.contains("route 10.1."), "no shard yet: {first}");

    // The endpoint renders in the router's flavor or the one asked for.
    let (s, bird) = text(&c, "/v1/routers/r1/config");
    assert_eq!(s, 200);
    assert_eq!(bird, first, "the served rendering is what was deployed");
    let (s, frr) = text(&c, "/v1/routers/r1/config?format=frr");
    assert_eq!(s, 200);
    assert!(frr.contains("router bgp 65001"), "{frr}");
    let v = c.expect("GET", "/v1/routers/r1/config?format=json", None, 200);
    assert_eq!(v["router"], "r1");
    assert_eq!(v["announcements"], json!([]));
    let m = c.expect_error(
        "GET",
        "/v1/routers/r1/config?format=xml",
        None,
        400,
        "bad_request",
    );
    assert!(m.contains("xml"), "{m}");
    let m = c.expect_error("GET", "/v1/routers/nope/config", None, 404, "not_found");
    assert!(m.contains("nope"), "{m}");

    // An allocation claims a shard (slow path): the shard set changed, the daemon deploys.
    let a = c.expect(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "vm-1"})),
        201,
    );
    let shard = a["shard"].as_str().unwrap().to_string();
    eventually("the shard announced in the deployed file", || {
        std::fs::read_to_string(&file)
            .is_ok_and(|t| t.contains(&format!("route {shard} blackhole")))
    });
    eventually("the second reload", || reloads(dir.path()) == 2);
    let deployed = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text(&c, "/v1/routers/r1/config").1, deployed);
    // The counters move right after the reload returns.
    eventually("two deployments counted", || {
        metric(
            &c,
            "cidrcast_router_applies_total{router=\"r1\",outcome=\"applied\"}",
        ) == Some(2.0)
    });
    assert_eq!(
        metric(&c, "cidrcast_router_announced_prefixes{router=\"r1\"}"),
        Some(1.0)
    );
    // r2 has no config_path: rendered on request, never deployed.
    assert_eq!(
        metric(
            &c,
            "cidrcast_router_applies_total{router=\"r2\",outcome=\"applied\"}"
        ),
        None
    );

    // A reload that fails: the previous file stays, the failure is counted.
    let mut r1 = c.expect("GET", "/v1/routers/r1", None, 200);
    r1["reload_command"] = json!("echo broken >&2; exit 9");
    r1["neighbors"] = json!([{"address": "192.0.2.253", "asn": 65000}]);
    c.expect("PUT", "/v1/routers/r1", Some(r1.clone()), 200);
    eventually("the failed deployment counted", || {
        metric(
            &c,
            "cidrcast_router_applies_total{router=\"r1\",outcome=\"failed\"}",
        ) == Some(1.0)
    });
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        deployed,
        "a failed reload puts the previous configuration back"
    );
    // Once the reload works again, the new configuration goes out.
    r1["reload_command"] = json!(format!("echo reloaded >> {}/reloads", dir.path().display()));
    c.expect("PUT", "/v1/routers/r1", Some(r1), 200);
    eventually("the corrected deployment", || {
        std::fs::read_to_string(&file).is_ok_and(|t| t.contains("neighbor 192.0.2.253 as 65000"))
    });

    // A router whose file the daemon could not write is refused, naming the path.
    let bad = json!({
        "name": "r3", "flavor": "bird", "router_id": "192.0.2.3", "asn": 65003,
        "config_path": "/nonexistent-dir-of-cidrcast/r3.conf"
    });
    let m = c.expect_error("POST", "/v1/routers", Some(bad), 422, "invalid");
    assert!(m.contains("/nonexistent-dir-of-cidrcast/r3.conf"), "{m}");
    c.expect_error("GET", "/v1/routers/r3", None, 404, "not_found");
}

#[test]
fn the_daemon_refuses_to_start_with_a_router_file_it_cannot_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path()).replace(
        &format!("{}/r1.conf", dir.path().display()),
        "/nonexistent-dir-of-cidrcast/r1.conf",
    );
    std::fs::write(dir.path().join("cidrcast.toml"), cfg).unwrap();
    let out = daemon::serve_command(dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/nonexistent-dir-of-cidrcast/r1.conf") && err.contains("not writable"),
        "{err}"
    );
}
