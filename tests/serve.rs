//! `cidrcast serve` end to end: the HTTP API over a real process and store, errors, tokens and
//! tenancy, history import, plans, metrics, OpenAPI and docs, SIGTERM.

use std::process::Command;

use serde_json::{json, Value};

mod daemon;

use daemon::{Client, Daemon, BIN};

const BASE_CONFIG: &str = r#"
[server]
# Tests run plans explicitly.
reconcile_interval_s = 3600
lead_time_s = 60
max_body_bytes = 4096

[[pool]]
name = "a4"
prefix = "10.1.0.0/16"
shard_prefix_len = 26
vrf = "tenant-a"
reserve_first = 2
reserve_last = 1

[[pool]]
name = "b4"
prefix = "10.2.0.0/16"
shard_prefix_len = 26
vrf = "tenant-b"
reserve_first = 2
reserve_last = 1

[[subdivision]]
name = "zone-a"
pools = ["a4"]

[[subdivision]]
name = "zone-b"
pools = ["b4"]

[[profile]]
name = "small"
vcpus = 1
memory_gib = 2.0
network_mbps = 100.0
"#;

/// `cidrcast token hash` of `secret`.
fn hash(secret: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .args(["token", "hash"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run cidrcast token hash");
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let h = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(h.len(), 64, "a hex SHA-256: {h}");
    h
}

fn start(config: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), config);
    (dir, d)
}

fn alloc(c: &Client, sub: &str, vm: &str) -> (u16, Value) {
    c.req(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": sub, "vm_id": vm})),
    )
}

fn addr_in(addr: &str, net: &str) -> bool {
    let a: std::net::Ipv4Addr = addr.parse().unwrap();
    let (base, len) = net.split_once('/').unwrap();
    let base: std::net::Ipv4Addr = base.parse().unwrap();
    let len: u32 = len.parse().unwrap();
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(a) & mask == u32::from(base)
}

/// Now, in Unix seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A canonical trace of `creates` VMs created in zone-a from two hours ago, one every `every`
/// seconds (profile `profile`), then `deletes` of the first ones 3,000 s in, a minute apart.
fn history(creates: u32, every: f64, profile: &str, deletes: u32) -> String {
    let t0 = unix_now() - 7200.0;
    let mut csv = String::from("time_s,subdivision,event,vm_id,profile\n");
    for i in 0..creates {
        csv.push_str(&format!(
            "{},zone-a,create,h{i},{profile}\n",
            t0 + f64::from(i) * every
        ));
    }
    for i in 0..deletes {
        csv.push_str(&format!(
            "{},zone-a,delete,h{i},\n",
            t0 + 3000.0 + f64::from(i) * 60.0
        ));
    }
    csv
}

#[test]
fn allocation_lifecycle_is_idempotent_and_durable() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    let (s, a) = alloc(&c, "zone-a", "vm-1");
    assert_eq!(s, 201, "{a}");
    let address = a["address"].as_str().unwrap().to_string();
    let shard = a["shard"].as_str().unwrap().to_string();
    assert!(addr_in(&address, "10.1.0.0/16"), "{a}");
    assert!(addr_in(&address, &shard), "{a}");
    assert_eq!(a["prefix_len"], 26);
    assert_eq!(a["pool"], "a4");
    // reserve_first = 2: network and gateway; the gateway is the shard's second address.
    let shard_base: std::net::Ipv4Addr = shard.split('/').next().unwrap().parse().unwrap();
    let gw = std::net::Ipv4Addr::from(u32::from(shard_base) + 1).to_string();
    assert_eq!(a["gateway"], gw);
    assert_ne!(a["address"], a["gateway"]);
    // Nothing was prefetched: the first allocation claimed a shard (slow path).
    assert_eq!(a["prefetched"], false);
    assert_eq!(a["path"], "claimed-shard");
    // The second comes from the shard the first claimed.
    let (s, b) = alloc(&c, "zone-a", "vm-2");
    assert_eq!(s, 201);
    assert_eq!(b["prefetched"], true, "{b}");
    assert_ne!(b["address"], a["address"]);

    // Idempotent retry: 200, same address.
    let (s, again) = alloc(&c, "zone-a", "vm-1");
    assert_eq!(s, 200);
    assert_eq!(again["address"], a["address"]);
    assert_eq!(again["path"], "existing");
    // The same VM elsewhere: 409.
    let m = c.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-b", "vm_id": "vm-1"})),
        409,
        "lease_conflict",
    );
    assert!(m.contains("vm-1") && m.contains(&address), "{m}");

    let got = c.expect("GET", "/v1/allocations/vm-1", None, 200);
    assert_eq!(got["address"], a["address"]);
    let list = c.expect("GET", "/v1/allocations?subdivision=zone-a", None, 200);
    assert_eq!(list["total"], 2);
    let list = c.expect(
        "GET",
        "/v1/allocations?subdivision=zone-a&limit=1&offset=1",
        None,
        200,
    );
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["vm_id"], "vm-2");

    let r = c.expect("DELETE", "/v1/allocations/vm-1", None, 200);
    assert_eq!(r["address"], a["address"]);
    c.expect_error("GET", "/v1/allocations/vm-1", None, 404, "not_found");
    c.expect_error("DELETE", "/v1/allocations/vm-1", None, 404, "unknown_lease");
    // Released addresses cool down: a new VM does not get vm-1's address back at once.
    let (_, n) = alloc(&c, "zone-a", "vm-3");
    assert_ne!(n["address"], a["address"]);

    // Survives a restart.
    let dir = d.dir.clone();
    drop(d);
    let d = Daemon::start_existing(&dir);
    let c = d.client(None);
    let got = c.expect("GET", "/v1/allocations/vm-2", None, 200);
    assert_eq!(got["address"], b["address"]);
    c.expect_error("GET", "/v1/allocations/vm-1", None, 404, "not_found");
}

#[test]
fn bad_input_gets_json_errors_with_the_right_status() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    let raw = |method: &str, path: &str, ct: &str, body: &str| {
        c.raw(method, path, Some((ct, body.to_string()))).unwrap()
    };
    // Malformed JSON.
    let (s, v) = raw(
        "POST",
        "/v1/allocations",
        "application/json",
        "{\"subdivision\": ",
    );
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["code"], "bad_request");
    // A missing field, an unknown field, a wrong type: 422 naming it.
    let (s, v) = raw(
        "POST",
        "/v1/allocations",
        "application/json",
        r#"{"subdivision": "zone-a"}"#,
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("vm_id"), "{v}");
    let (s, v) = raw(
        "POST",
        "/v1/allocations",
        "application/json",
        r#"{"subdivision": "zone-a", "vm_id": "x", "colour": "red"}"#,
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("colour"), "{v}");
    // Not JSON at all.
    let (s, v) = raw("POST", "/v1/allocations", "text/plain", "hello");
    assert!(s == 400 || s == 415, "{s} {v}");
    assert!(v["code"].is_string(), "{v}");
    // Values the allocator refuses.
    let m = c.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "a,b"})),
        422,
        "invalid_vm_id",
    );
    assert!(m.contains("a,b"), "{m}");
    c.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "nowhere", "vm_id": "x"})),
        404,
        "unknown_subdivision",
    );
    let m = c.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "x", "profile": "huge"})),
        422,
        "invalid",
    );
    assert!(m.contains("huge") && m.contains("/v1/profiles"), "{m}");
    // Too large a body: 413.
    let big = json!({"subdivision": "zone-a", "vm_id": "x".repeat(8000)});
    let (s, v) = c.req("POST", "/v1/allocations", Some(big));
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["code"], "payload_too_large");
    // Unknown routes and bad path parameters.
    c.expect_error("GET", "/v1/nothing", None, 404, "not_found");
    c.expect_error(
        "POST",
        "/v1/shards/10.1.0.1/26/drain",
        None,
        400,
        "bad_request",
    );
    c.expect_error(
        "POST",
        "/v1/shards/banana/26/drain",
        None,
        400,
        "bad_request",
    );
    c.expect_error(
        "POST",
        "/v1/shards/10.1.0.0/26/drain",
        None,
        404,
        "unknown_shard",
    );
    c.expect_error("GET", "/v1/allocations?limit=0", None, 400, "bad_request");
    c.expect_error("GET", "/v1/shards?state=sleeping", None, 400, "bad_request");
    // Nothing of that was stored.
    let list = c.expect("GET", "/v1/allocations", None, 200);
    assert_eq!(list["total"], 0, "{list}");
    let shards = c.expect("GET", "/v1/shards", None, 200);
    assert_eq!(shards.as_array().unwrap().len(), 0, "{shards}");
}

#[test]
fn catalog_crud_validates_and_conflicts() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    // Pools.
    let pool = json!({"name": "c4", "prefix": "10.3.0.0/16", "shard_prefix_len": 26});
    c.expect("POST", "/v1/pools", Some(pool.clone()), 201);
    c.expect_error("POST", "/v1/pools", Some(pool.clone()), 409, "pool_exists");
    let overlap = json!({"name": "c5", "prefix": "10.3.128.0/17", "shard_prefix_len": 26});
    c.expect_error("POST", "/v1/pools", Some(overlap), 409, "pool_overlap");
    let bad = json!({"name": "c6", "prefix": "10.4.0.1/16", "shard_prefix_len": 26});
    let m = c.expect_error("POST", "/v1/pools", Some(bad), 422, "invalid_pool");
    assert!(m.contains("10.4.0.1/16") && m.contains("host bits"), "{m}");
    let bad = json!({"name": "c6", "prefix": "10.4.0.0/16", "shard_prefix_len": 40});
    c.expect_error("POST", "/v1/pools", Some(bad), 422, "invalid_pool");
    let got = c.expect("GET", "/v1/pools/c4", None, 200);
    assert_eq!(got["spec"]["prefix"], "10.3.0.0/16");
    assert_eq!(got["size"], "65536");
    // Update (it holds no shards), then the path and body must agree.
    let pool2 = json!({"name": "c4", "prefix": "10.3.0.0/17", "shard_prefix_len": 26});
    c.expect("PUT", "/v1/pools/c4", Some(pool2.clone()), 200);
    assert_eq!(c.expect("GET", "/v1/pools/c4", None, 200)["size"], "32768");
    c.expect_error("PUT", "/v1/pools/other", Some(pool2), 422, "invalid");
    c.expect("DELETE", "/v1/pools/c4", None, 200);
    c.expect_error("GET", "/v1/pools/c4", None, 404, "not_found");
    // A pool holding shards cannot go.
    let (s, _) = alloc(&c, "zone-a", "keep");
    assert_eq!(s, 201);
    c.expect_error("DELETE", "/v1/pools/a4", None, 409, "pool_in_use");

    // Subdivisions.
    c.expect(
        "POST",
        "/v1/subdivisions",
        Some(json!({"name": "rack-1", "parent": "zone-a", "pools": ["a4"]})),
        201,
    );
    c.expect_error(
        "POST",
        "/v1/subdivisions",
        Some(json!({"name": "rack-2", "parent": "nowhere"})),
        422,
        "invalid_subdivision",
    );
    c.expect_error(
        "DELETE",
        "/v1/subdivisions/zone-a",
        None,
        409,
        "subdivision_in_use",
    );
    let subs = c.expect("GET", "/v1/subdivisions", None, 200);
    assert_eq!(subs.as_array().unwrap().len(), 3);

    // Profiles.
    let prof = json!({"name": "gpu", "vcpus": 8, "memory_gib": 64.0, "network_mbps": 25000.0});
    c.expect("POST", "/v1/profiles", Some(prof.clone()), 201);
    c.expect_error("POST", "/v1/profiles", Some(prof), 409, "conflict");
    let bad = json!({"name": "neg", "vcpus": 0, "memory_gib": 1.0, "network_mbps": 1.0});
    let (s, v) = c.req("POST", "/v1/profiles", Some(bad));
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("vcpus"), "{v}");
    c.expect(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "g1", "profile": "gpu"})),
        201,
    );
    c.expect_error("DELETE", "/v1/profiles/gpu", None, 409, "conflict");
    c.expect("DELETE", "/v1/allocations/g1", None, 200);
    c.expect("DELETE", "/v1/profiles/gpu", None, 200);
    c.expect_error("GET", "/v1/profiles/gpu", None, 404, "not_found");

    // Routers.
    let router = json!({"name": "tor-1", "flavor": "bird", "router_id": "192.0.2.1", "asn": 65001,
        "neighbors": [{"address": "192.0.2.2", "asn": 65000}], "subdivisions": ["zone-a"]});
    c.expect("POST", "/v1/routers", Some(router.clone()), 201);
    let got = c.expect("GET", "/v1/routers/tor-1", None, 200);
    assert_eq!(got["asn"], 65001);
    let unknown = json!({"name": "tor-2", "flavor": "frr", "router_id": "192.0.2.3", "asn": 65002,
        "subdivisions": ["nowhere"]});
    let (s, v) = c.req("POST", "/v1/routers", Some(unknown));
    assert!(s == 404 || s == 422, "{s} {v}");
    assert!(v["message"].as_str().unwrap().contains("nowhere"), "{v}");
    let bad_asn = json!({"name": "tor-3", "flavor": "frr", "router_id": "192.0.2.3", "asn": -1});
    let (s, v) = c.req("POST", "/v1/routers", Some(bad_asn));
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("asn"), "{v}");
    let bad_nb = json!({"name": "tor-4", "flavor": "frr", "router_id": "192.0.2.3", "asn": 65003,
        "neighbors": [{"address": "not-an-ip", "asn": 1}]});
    let (s, v) = c.req("POST", "/v1/routers", Some(bad_nb));
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not-an-ip"), "{v}");
    let m = c.expect_error("DELETE", "/v1/subdivisions/zone-a", None, 409, "conflict");
    assert!(m.contains("tor-1"), "{m}");
    c.expect("DELETE", "/v1/subdivisions/rack-1", None, 200);
    c.expect_error(
        "GET",
        "/v1/subdivisions/rack-1",
        None,
        404,
        "unknown_subdivision",
    );
}

#[test]
fn events_crud() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    let ev = json!({"name": "launch", "start": 2000000000.0, "end": 2000003600.0,
        "scope": "zone-a", "extra_vms": 50.0});
    c.expect("POST", "/v1/events", Some(ev.clone()), 201);
    c.expect_error("POST", "/v1/events", Some(ev), 409, "conflict");
    let bad =
        json!({"name": "oops", "start": 10.0, "end": 5.0, "scope": "zone-a", "extra_vms": 1.0});
    c.expect_error("POST", "/v1/events", Some(bad), 422, "invalid_event");
    let unknown =
        json!({"name": "where", "start": 1.0, "end": 5.0, "scope": "nowhere", "extra_vms": 1.0});
    let (s, _) = c.req("POST", "/v1/events", Some(unknown));
    assert!(s == 403 || s == 422, "{s}");
    assert_eq!(
        c.expect("GET", "/v1/events", None, 200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.expect("DELETE", "/v1/events/launch", None, 200);
    c.expect_error("DELETE", "/v1/events/launch", None, 404, "not_found");
}

fn tenancy_config() -> String {
    format!(
        r#"{BASE_CONFIG}
[[token]]
name = "admin"
role = "admin"
sha256 = "{}"

[[token]]
name = "alloc-a"
role = "allocator"
sha256 = "{}"
tenants = ["tenant-a"]

[[token]]
name = "alloc-b"
role = "allocator"
sha256 = "{}"
tenants = ["tenant-b"]

[[token]]
name = "reader"
role = "reader"
sha256 = "{}"
"#,
        hash("s-admin"),
        hash("s-alloc-a"),
        hash("s-alloc-b"),
        hash("s-reader")
    )
}

#[test]
fn tokens_roles_and_tenant_scopes() {
    let (_dir, d) = start(&tenancy_config());
    let none = d.client(None);
    let wrong = d.client(Some("not-a-token"));
    let admin = d.client(Some("s-admin"));
    let a = d.client(Some("s-alloc-a"));
    let b = d.client(Some("s-alloc-b"));
    let reader = d.client(Some("s-reader"));

    none.expect_error("GET", "/v1/allocations", None, 401, "unauthenticated");
    wrong.expect_error("GET", "/v1/allocations", None, 401, "unauthenticated");
    let (s, _) = none.req(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "x"})),
    );
    assert_eq!(s, 401);
    // Health and metrics need no token.
    none.expect("GET", "/healthz", None, 200);
    none.expect("GET", "/readyz", None, 200);

    // Tenant A allocates in its own subdivision only.
    let (s, va) = alloc(&a, "zone-a", "a-1");
    assert_eq!(s, 201, "{va}");
    let m = a.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-b", "vm_id": "a-2"})),
        403,
        "forbidden",
    );
    assert!(m.contains("alloc-a") && m.contains("zone-b"), "{m}");
    let (s, _) = alloc(&b, "zone-b", "b-1");
    assert_eq!(s, 201);
    // ... and cannot read, list or release tenant B's leases and pools.
    b.expect_error("GET", "/v1/allocations/a-1", None, 403, "forbidden");
    b.expect_error("DELETE", "/v1/allocations/a-1", None, 403, "forbidden");
    b.expect_error(
        "GET",
        "/v1/allocations?subdivision=zone-a",
        None,
        403,
        "forbidden",
    );
    let listed = b.expect("GET", "/v1/allocations", None, 200);
    let vms: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["vm_id"].as_str().unwrap())
        .collect();
    assert_eq!(vms, vec!["b-1"]);
    b.expect_error("GET", "/v1/pools/a4", None, 403, "forbidden");
    let pools = b.expect("GET", "/v1/pools", None, 200);
    let names: Vec<&str> = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["b4"]);
    b.expect_error("GET", "/v1/subdivisions/zone-a", None, 403, "forbidden");
    b.expect_error(
        "GET",
        "/v1/shards?subdivision=zone-a",
        None,
        403,
        "forbidden",
    );
    // A's lease is untouched by B's attempts.
    assert_eq!(
        a.expect("GET", "/v1/allocations/a-1", None, 200)["address"],
        va["address"]
    );

    // Roles: allocators and readers cannot change the catalog; readers cannot allocate.
    let pool = json!({"name": "c4", "prefix": "10.3.0.0/16", "shard_prefix_len": 26});
    a.expect_error("POST", "/v1/pools", Some(pool.clone()), 403, "forbidden");
    reader.expect_error(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "r"})),
        403,
        "forbidden",
    );
    reader.expect_error("POST", "/v1/plan", None, 403, "forbidden");
    // The reader (not limited) sees everything.
    assert_eq!(
        reader.expect("GET", "/v1/allocations", None, 200)["total"],
        2
    );
    admin.expect("POST", "/v1/pools", Some(pool), 201);
}

#[test]
fn history_import_is_validated_whole_before_anything_is_stored() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    let csv = history(40, 60.0, "small", 10);
    let t0 = unix_now() - 7200.0;
    // A bad row in the middle: nothing of the body is stored.
    let mut bad = csv.clone();
    bad.insert_str(
        bad.find("\n").unwrap() + 1,
        &format!(
            "{},zone-a,create,x1,small\n{},zone-a,explode,x2,small\n",
            t0 - 10.0,
            t0 - 5.0
        ),
    );
    let (s, v) = c
        .raw("POST", "/v1/history", Some(("text/csv", bad)))
        .unwrap();
    assert_eq!(s, 422, "{v}");
    let m = v["message"].as_str().unwrap();
    assert!(
        m.contains("request body:3:") && m.contains("explode"),
        "{m}"
    );
    let unknown = "time_s,subdivision,event,vm_id,profile\n1.0,nowhere,create,u1,\n".to_string();
    let (s, v) = c
        .raw("POST", "/v1/history", Some(("text/csv", unknown)))
        .unwrap();
    assert_eq!(s, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("nowhere"), "{v}");
    let f = c.expect("GET", "/v1/forecasts", None, 200);
    assert!(
        f["subdivisions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["alive"] == 0),
        "nothing imported yet: {f}"
    );

    let (s, v) = c
        .raw("POST", "/v1/history", Some(("text/csv", csv)))
        .unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["imported"], 50);
    assert_eq!(v["creates"], 40);
    assert_eq!(v["deletes"], 10);
    // The forecaster has seen it: 30 VMs alive in zone-a.
    let f = c.expect("GET", "/v1/forecasts", None, 200);
    let za = f["subdivisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["subdivision"] == "zone-a")
        .cloned()
        .unwrap_or_else(|| panic!("zone-a forecast: {f}"));
    assert_eq!(za["alive"], 30, "{za}");
    // Older than what is stored now: refused.
    let old = format!(
        "time_s,subdivision,event,vm_id,profile\n{},zone-a,create,o1,\n",
        t0 - 100.0
    );
    let (s, v) = c
        .raw("POST", "/v1/history", Some(("text/csv", old)))
        .unwrap();
    assert_eq!(s, 422, "{v}");
}

#[test]
fn plans_dry_run_changes_nothing_and_apply_prefetches() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    // Steady growth in zone-a over the last two hours, through the API.
    let csv = history(240, 30.0, "", 0);
    let (s, v) = c
        .raw("POST", "/v1/history", Some(("text/csv", csv)))
        .unwrap();
    assert_eq!(s, 200, "{v}");
    let dry = c.expect("GET", "/v1/plan", None, 200);
    assert_eq!(dry["applied"], false);
    let actions = dry["plan"]["actions"].as_array().unwrap();
    assert!(
        !actions.is_empty(),
        "growth should make the planner reserve: {dry}"
    );
    assert!(
        actions.iter().all(|a| a["subdivision"] == "zone-a"),
        "{dry}"
    );
    assert_eq!(
        c.expect("GET", "/v1/shards", None, 200)
            .as_array()
            .unwrap()
            .len(),
        0
    );
    let applied = c.expect("POST", "/v1/plan", None, 200);
    assert_eq!(applied["applied"], true);
    let shards = c.expect("GET", "/v1/shards?subdivision=zone-a", None, 200);
    let shards = shards.as_array().unwrap();
    assert!(!shards.is_empty());
    assert!(
        shards.iter().all(|s| s["reason"] == "forecast"),
        "{shards:?}"
    );
    // 240 VMs in the history need at least 4 /26 shards (61 usable addresses each).
    let usable: u64 = shards.iter().map(|s| s["usable"].as_u64().unwrap()).sum();
    assert!(usable >= 240, "{usable} usable addresses for 240 VMs");

    // Shard lifecycle through the API: a reserved shard cannot be drained (nothing is
    // announced yet) but can be released; an active shard with leases cannot be released.
    let p = shards[0]["prefix"].as_str().unwrap().to_string();
    c.expect_error(
        "POST",
        &format!("/v1/shards/{p}/drain"),
        None,
        409,
        "invalid_transition",
    );
    let (s, _) = c.req("DELETE", &format!("/v1/shards/{p}"), None);
    assert_eq!(s, 204);
    let left = c.expect("GET", "/v1/shards?subdivision=zone-a", None, 200);
    assert_eq!(left.as_array().unwrap().len(), shards.len() - 1);
    assert!(left
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["prefix"] != p.as_str()));
    let (s, a) = alloc(&c, "zone-a", "live-1");
    assert_eq!(s, 201, "{a}");
    let shard = a["shard"].as_str().unwrap().to_string();
    c.expect_error(
        "DELETE",
        &format!("/v1/shards/{shard}"),
        None,
        409,
        "shard_busy",
    );
    let drained = c.expect("POST", &format!("/v1/shards/{shard}/drain"), None, 200);
    assert_eq!(drained["state"], "draining", "{drained}");
    // No new leases from a draining shard.
    let (s, b) = alloc(&c, "zone-a", "live-2");
    assert_eq!(s, 201, "{b}");
    assert_ne!(b["shard"], a["shard"]);
    let metrics = c.expect("GET", "/metrics", None, 200);
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("cidrcast_reconcile_runs_total{outcome=\"ok\"}"),
        "{text}"
    );
    assert!(
        text.contains("cidrcast_shards{subdivision=\"zone-a\",state=\"reserved\"}"),
        "{text}"
    );
}

#[test]
fn metrics_count_allocations_by_path() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    for i in 0..5 {
        assert_eq!(alloc(&c, "zone-a", &format!("m{i}")).0, 201);
    }
    c.expect("DELETE", "/v1/allocations/m0", None, 200);
    let text = c.expect("GET", "/metrics", None, 200);
    let text = text.as_str().unwrap();
    let line = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(
        line("cidrcast_allocations_total{subdivision=\"zone-a\",path=\"slow\"}"),
        1.0
    );
    assert_eq!(
        line("cidrcast_allocations_total{subdivision=\"zone-a\",path=\"prefetched\"}"),
        4.0
    );
    assert_eq!(
        line("cidrcast_allocation_misses_total{subdivision=\"zone-a\"}"),
        1.0
    );
    assert_eq!(line("cidrcast_releases_total{subdivision=\"zone-a\"}"), 1.0);
    assert_eq!(line("cidrcast_leases{subdivision=\"zone-a\"}"), 4.0);
    // One /26 with 61 usable addresses, 4 leased, 1 cooling: 57 idle, 56 ready now.
    assert_eq!(
        line("cidrcast_idle_addresses{subdivision=\"zone-a\"}"),
        57.0
    );
    assert_eq!(
        line("cidrcast_ready_addresses{subdivision=\"zone-a\"}"),
        56.0
    );
    assert_eq!(
        line("cidrcast_shards{subdivision=\"zone-a\",state=\"active\"}"),
        1.0
    );
    assert!(text.contains(
        "cidrcast_http_request_duration_seconds_count{method=\"POST\",route=\"/v1/allocations\",status=\"201\"} 5"
    ), "{text}");
}

#[test]
fn openapi_and_docs_are_served() {
    let (_dir, d) = start(BASE_CONFIG);
    let c = d.client(None);
    let doc = c.expect("GET", "/openapi.json", None, 200);
    assert!(doc["paths"]["/v1/allocations"]["post"].is_object(), "{doc}");
    let checked_in: Value =
        serde_json::from_str(&std::fs::read_to_string("openapi.json").unwrap()).unwrap();
    assert_eq!(
        doc, checked_in,
        "openapi.json is stale: UPDATE_GOLDEN=1 cargo test -p cidrcast-server"
    );
    let (s, page) = c.req("GET", "/docs/", None);
    assert_eq!(s, 200);
    assert!(page.as_str().unwrap().contains("swagger"), "{page}");
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let (_dir, mut d) = start(BASE_CONFIG);
    let c = d.client(None);
    // Keep allocations in flight while the signal arrives.
    let worker = {
        let c = c.clone();
        std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0..100_000 {
                match c.try_req(
                    "POST",
                    "/v1/allocations",
                    Some(json!({"subdivision": "zone-a", "vm_id": format!("t{i}")})),
                ) {
                    Ok((201, v)) => acked.push((format!("t{i}"), v["address"].clone())),
                    Ok((s, v)) => panic!("unexpected {s}: {v}"),
                    Err(_) => break, // the listener closed
                }
            }
            acked
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (status, lines) = d.terminate();
    let acked = worker.join().unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        lines.iter().any(|l| l.contains("stopped cleanly")),
        "{lines:?}"
    );
    assert!(!acked.is_empty());
    // Everything acknowledged is there after a restart.
    let d2 = Daemon::start_existing(&d.dir);
    let c = d2.client(None);
    for (vm, addr) in &acked {
        let got = c.expect("GET", &format!("/v1/allocations/{vm}"), None, 200);
        assert_eq!(&got["address"], addr);
    }
}
