//! Several `cidrcast serve` daemons sharing one state in a real 3-member etcd cluster (started
//! per test on free loopback ports): concurrent clients on every daemon never get one address
//! leased twice, the leader election replaces a killed leader within its bound, and losing one
//! etcd member is harmless while losing two (quorum) refuses cleanly and recovers.
#![cfg(feature = "etcd")]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cidrcast_store::etcd_testing::{free_ports, Member};
use serde_json::{json, Value};

mod daemon;

use daemon::{Client, Daemon};

// ---------------------------------------------------------------------------------------------
// Harness: a 3-member etcd cluster.

/// The tests run one at a time: each starts 3 etcd members and 3 daemons, and measures times.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const PREFIX: &str = "/cc-cluster/";

struct Cluster {
    members: Vec<Member>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three members m1..m3, healthy (with a leader).
    fn start() -> Cluster {
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let ports = free_ports(6);
            let initial_cluster = (0..3)
                .map(|i| format!("m{}=http://127.0.0.1:{}", i + 1, ports[2 * i + 1]))
                .collect::<Vec<_>>()
                .join(",");
            let mut members: Vec<Member> = (0..3)
                .map(|i| {
                    let mdir = dir.path().join(format!("m{}", i + 1));
                    std::fs::create_dir_all(&mdir).expect("member dir");
                    Member::new(
                        &format!("m{}", i + 1),
                        ports[2 * i],
                        ports[2 * i + 1],
                        mdir,
                        initial_cluster.clone(),
                        true,
                    )
                })
                .collect();
            for m in &mut members {
                m.spawn();
            }
            let mut cluster = Cluster { members, _dir: dir };
            match cluster.wait_healthy(&[0, 1, 2], Duration::from_secs(30)) {
                Ok(()) => return cluster,
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("the etcd cluster did not start; a log:\n{log}"),
            }
        }
        panic!("the etcd cluster did not start on free ports after 3 attempts");
    }

    /// Waits until these members are healthy; the log of one that exited or stayed unhealthy.
    fn wait_healthy(&mut self, which: &[usize], within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            for &i in which {
                if self.members[i].exited() {
                    return Err(self.members[i].log());
                }
            }
            if which.iter().all(|&i| self.members[i].healthy()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let i = *which
                    .iter()
                    .find(|&&i| !self.members[i].healthy())
                    .unwrap_or(&which[0]);
                return Err(format!(
                    "{} not healthy within {within:?}:\n{}",
                    self.members[i].name,
                    self.members[i].log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(Member::endpoint).collect()
    }

    /// `etcdctl get --prefix {PREFIX}leases/` through the running members: vm → address.
    fn leases(&self) -> BTreeMap<String, String> {
        let live: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.pid().is_some())
            .map(Member::endpoint)
            .collect();
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .args([
                "--command-timeout=10s",
                "get",
                "--prefix",
                "--print-value-only",
            ])
            .arg(format!("{PREFIX}leases/"))
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl get: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut leases = BTreeMap::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.trim().is_empty() {
                continue;
            }
            let v: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("a lease value that is not JSON ({e}): {line}"));
            let vm = v["vm_id"].as_str().expect("vm_id").to_string();
            let addr = v["address"].as_str().expect("address").to_string();
            assert!(
                leases.insert(vm.clone(), addr).is_none(),
                "{vm} twice in etcd"
            );
        }
        leases
    }
}

// ---------------------------------------------------------------------------------------------
// Harness: daemons on the cluster.

fn config(endpoints: &[String]) -> String {
    let endpoints = endpoints
        .iter()
        .map(|e| format!("{e:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[settings]
cooldown_s = 0

[store]
kind = "etcd"
endpoints = [{endpoints}]
prefix = "{PREFIX}"

[server]
reconcile_interval_s = 1
leader_ttl_s = 3

[[pool]]
name = "v4"
prefix = "10.77.0.0/16"
shard_prefix_len = 26
reserve_first = 2
reserve_last = 1

[[subdivision]]
name = "zone-a"

[[subdivision]]
name = "zone-b"
"#
    )
}

/// Three daemons on the cluster, each with a directory of its own.
struct Daemons {
    daemons: Vec<Daemon>,
    _dirs: Vec<tempfile::TempDir>,
}

fn start_daemons(cluster: &Cluster) -> Daemons {
    let cfg = config(&cluster.endpoints());
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let daemons = dirs.iter().map(|d| Daemon::start(d.path(), &cfg)).collect();
    Daemons {
        daemons,
        _dirs: dirs,
    }
}

/// Whether this daemon says it leads (`cidrcast_leader 1` in /metrics); `None` if it does not
/// answer.
fn is_leader(c: &Client) -> Option<bool> {
    match c.try_req("GET", "/metrics", None) {
        Ok((200, Value::String(text))) => {
            Some(text.lines().any(|l| l.trim() == "cidrcast_leader 1"))
        }
        _ => None,
    }
}

/// Polls until exactly one of `clients` leads; its index. Panics if two lead at once.
fn one_leader(clients: &[&Client], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leading: Vec<usize> = clients
            .iter()
            .enumerate()
            .filter(|(_, c)| is_leader(c) == Some(true))
            .map(|(i, _)| i)
            .collect();
        assert!(leading.len() <= 1, "two leaders at once: {leading:?}");
        if leading.len() == 1 {
            return leading[0];
        }
        assert!(
            Instant::now() < deadline,
            "no daemon leads within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn allocate(c: &Client, vm: &str, sub: &str) -> (u16, Value) {
    c.req(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": sub, "vm_id": vm})),
    )
}

/// Allocates, retrying (with new VM ids) until a 201 within `within`; the VM, its address and
/// the number of refused attempts. Only 503 refusals are allowed.
fn allocate_within(c: &Client, vm: &str, within: Duration) -> (String, String, usize) {
    let deadline = Instant::now() + within;
    let mut refused = 0;
    loop {
        let id = format!("{vm}-{refused}");
        let (s, v) = allocate(c, &id, "zone-a");
        match s {
            201 => return (id, v["address"].as_str().unwrap().to_string(), refused),
            503 => refused += 1,
            _ => panic!("allocate {id}: {s} {v}"),
        }
        assert!(
            Instant::now() < deadline,
            "no allocation succeeded within {within:?}; last: {s} {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The allocations a daemon lists: vm → address, asserting no address is listed twice.
fn listed(c: &Client) -> BTreeMap<String, String> {
    daemon::listed_allocations(c)
}

/// Every shard a daemon lists: prefix → affinity (`None`: none).
fn affinities(c: &Client) -> BTreeMap<String, Option<String>> {
    let shards = c.expect("GET", "/v1/shards", None, 200);
    shards
        .as_array()
        .expect("a list of shards")
        .iter()
        .map(|s| {
            (
                s["prefix"].as_str().unwrap().to_string(),
                s["affinity"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// The shard of every allocation a daemon lists: vm → shard.
fn shards_of_leases(c: &Client) -> BTreeMap<String, String> {
    let list = c.expect("GET", "/v1/allocations?limit=100000", None, 200);
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|l| {
            (
                l["vm_id"].as_str().unwrap().to_string(),
                l["shard"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// No address is held by two leases.
fn assert_unique_addresses(leases: &BTreeMap<String, String>, what: &str) {
    let mut by_addr: BTreeMap<&str, &str> = BTreeMap::new();
    for (vm, addr) in leases {
        if let Some(other) = by_addr.insert(addr, vm) {
            panic!("{what}: address {addr} leased to both {other} and {vm}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests.

const THREADS: usize = 6;
const OPS_PER_THREAD: usize = 100;

#[derive(Default)]
struct Acks {
    allocated: BTreeMap<String, String>,
    released: BTreeSet<String>,
    /// Releases answered 503: the lease may or may not be gone.
    release_unknown: BTreeSet<String>,
    refused_allocations: usize,
    refused_releases: usize,
    ops: usize,
}

#[test]
fn three_daemons_never_lease_an_address_twice() {
    let _serial = serial();
    let start = Instant::now();
    let cluster = Cluster::start();
    let ds = start_daemons(&cluster);
    let acks = Arc::new(Mutex::new(Acks::default()));
    let load_start = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let c = ds.daemons[t % 3].client(None);
            let acks = acks.clone();
            std::thread::spawn(move || {
                let sub = if t % 2 == 0 { "zone-a" } else { "zone-b" };
                let mut mine: Vec<String> = Vec::new();
                let mut ops = 0;
                let mut i = 0;
                while ops < OPS_PER_THREAD {
                    i += 1;
                    let vm = format!("t{t}-{i}");
                    let (s, v) = allocate(&c, &vm, sub);
                    ops += 1;
                    match s {
                        201 => {
                            let addr = v["address"].as_str().unwrap().to_string();
                            acks.lock().unwrap().allocated.insert(vm.clone(), addr);
                            mine.push(vm);
                        }
                        503 => acks.lock().unwrap().refused_allocations += 1,
                        _ => panic!("allocate {vm}: {s} {v}"),
                    }
                    // Release every third acknowledged allocation (an older one).
                    if i % 3 == 0 && mine.len() >= 2 {
                        let old = mine.remove(mine.len() / 2);
                        let (s, v) = c.req("DELETE", &format!("/v1/allocations/{old}"), None);
                        ops += 1;
                        let mut a = acks.lock().unwrap();
                        match s {
                            200 => {
                                a.released.insert(old);
                            }
                            503 => {
                                a.refused_releases += 1;
                                a.release_unknown.insert(old);
                            }
                            _ => panic!("release {old}: {s} {v}"),
                        }
                    }
                }
                acks.lock().unwrap().ops += ops;
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a client thread panicked");
    }
    let load_time = load_start.elapsed();
    let a = acks.lock().unwrap();
    let refused = a.refused_allocations + a.refused_releases;
    eprintln!(
        "three daemons: {} operations by {THREADS} clients in {:.1} s: {} allocations and {} \
         releases acknowledged; 503: {} allocations, {} releases ({:.1}%)",
        a.ops,
        load_time.as_secs_f64(),
        a.allocated.len(),
        a.released.len(),
        a.refused_allocations,
        a.refused_releases,
        100.0 * refused as f64 / a.ops as f64
    );
    assert!(
        refused * 10 <= a.ops,
        "more than 10% of the operations were refused: {refused} of {}",
        a.ops
    );
    assert!(a.allocated.len() > THREADS * OPS_PER_THREAD / 2);

    // Every daemon's view refreshes every second.
    std::thread::sleep(Duration::from_millis(1500));
    let from_etcd = cluster.leases();
    let clients: Vec<Client> = ds.daemons.iter().map(|d| d.client(None)).collect();
    for (view, present) in [
        ("daemon 1", listed(&clients[0])),
        ("daemon 3", listed(&clients[2])),
        ("etcd", from_etcd),
    ] {
        assert_unique_addresses(&present, view);
        for (vm, addr) in &a.allocated {
            if a.released.contains(vm) {
                assert!(
                    !present.contains_key(vm),
                    "{view}: released {vm} is present"
                );
            } else if a.release_unknown.contains(vm) {
                if let Some(p) = present.get(vm) {
                    assert_eq!(p, addr, "{view}: {vm} moved");
                }
            } else {
                assert_eq!(
                    present.get(vm),
                    Some(addr),
                    "{view}: acknowledged {vm} at {addr} lost or moved"
                );
            }
        }
    }
    // Shard affinity: the leases allocated through one daemon (client thread t used daemon
    // t % 3) lie in shards of that daemon's alone, each shard with the daemon's affinity.
    let shard_of = shards_of_leases(&clients[0]);
    let affinity = affinities(&clients[0]);
    let mut daemon_of_shard: BTreeMap<&str, usize> = BTreeMap::new();
    let mut affinity_of_daemon: BTreeMap<usize, &str> = BTreeMap::new();
    for (vm, shard) in &shard_of {
        let t: usize = vm[1..vm.find('-').unwrap()].parse().unwrap();
        let d = t % 3;
        let previous = daemon_of_shard.insert(shard, d);
        assert!(
            previous.is_none_or(|p| p == d),
            "shard {shard} holds leases of daemons {} and {}",
            previous.unwrap() + 1,
            d + 1
        );
        let owner = affinity[shard]
            .as_deref()
            .unwrap_or_else(|| panic!("shard {shard} holding {vm} has no affinity"));
        let known = affinity_of_daemon.insert(d, owner);
        assert!(
            known.is_none_or(|k| k == owner),
            "daemon {}'s leases lie in shards of {owner} and {}",
            d + 1,
            known.unwrap()
        );
    }
    let owners: BTreeSet<&str> = affinity_of_daemon.values().copied().collect();
    assert_eq!(
        owners.len(),
        3,
        "three daemons, three affinities: {owners:?}"
    );

    // A lease made through one daemon is released through another at once, before any
    // periodic refresh: the unknown lease makes that daemon reload its view.
    let (s, v) = allocate(&clients[0], "cross-daemon", "zone-a");
    assert_eq!(s, 201, "{v}");
    let address = v["address"].clone();
    let (s, v) = clients[1].req("DELETE", "/v1/allocations/cross-daemon", None);
    assert_eq!(s, 200, "release through another daemon: {v}");
    assert_eq!(v["address"], address);
    let (s, v) = clients[2].req("DELETE", "/v1/allocations/cross-daemon", None);
    assert_eq!(s, 404, "released twice: {v}");

    // Every 503 of the load was an operation that gave up after its conflicting attempts, and
    // the daemons counted each.
    let counted = |outcome: &str| -> u64 {
        let line = format!("cidrcast_store_conflicts_total{{outcome=\"{outcome}\"}} ");
        clients
            .iter()
            .map(|c| match c.req("GET", "/metrics", None) {
                (200, Value::String(text)) => text
                    .lines()
                    .find_map(|l| l.strip_prefix(line.as_str()))
                    .unwrap_or_else(|| panic!("no {line} in /metrics"))
                    .parse::<u64>()
                    .unwrap(),
                other => panic!("/metrics: {other:?}"),
            })
            .sum()
    };
    assert_eq!(counted("gave_up"), refused as u64);
    eprintln!(
        "three daemons: {} conflicting attempts retried",
        counted("retried")
    );

    let refs: Vec<&Client> = clients.iter().collect();
    let leader = one_leader(&refs, Duration::from_secs(10));
    eprintln!(
        "three daemons: daemon {} leads; test took {:.1} s",
        leader + 1,
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn the_leader_is_replaced_within_the_bound() {
    let _serial = serial();
    let start = Instant::now();
    let cluster = Cluster::start();
    let mut ds = start_daemons(&cluster);
    let clients: Vec<Client> = ds.daemons.iter().map(|d| d.client(None)).collect();
    let refs: Vec<&Client> = clients.iter().collect();
    let leader = one_leader(&refs, Duration::from_secs(15));
    // Let it lead a little (a reconciler run or two), and hold a shard of zone-b.
    let mut orphan = None;
    for i in 0..3 {
        let (s, v) = allocate(&clients[leader], &format!("leader-{i}"), "zone-b");
        assert_eq!(s, 201, "{v}");
        orphan = Some(v["shard"].as_str().unwrap().to_string());
    }
    let orphan = orphan.unwrap();
    let owner = affinities(&clients[leader])[&orphan]
        .clone()
        .expect("the leader's shard has its affinity");
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(one_leader(&refs, Duration::from_secs(1)), leader);

    ds.daemons[leader].kill();
    let killed = Instant::now();
    let survivors: Vec<&Client> = (0..3)
        .filter(|&i| i != leader)
        .map(|i| &clients[i])
        .collect();
    let next = one_leader(&survivors, Duration::from_secs(15));
    let takeover = killed.elapsed();
    eprintln!(
        "leader takeover: daemon {} killed, another led after {:.2} s (leader_ttl_s = 3)",
        leader + 1,
        takeover.as_secs_f64()
    );
    assert!(takeover < Duration::from_secs(15));
    // It stays the only one.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(one_leader(&survivors, Duration::from_secs(1)), next);

    // The new leader clears the dead daemon's affinity (after 2 ttls missing, checked before
    // each reconciler run, on a list of live daemons read every 3 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = affinities(survivors[next]);
        if now
            .get(&orphan)
            .is_some_and(|a| a.as_deref() != Some(owner.as_str()))
        {
            eprintln!(
                "leader takeover: {orphan}'s affinity to the dead daemon cleared {:.1} s after the kill",
                killed.elapsed().as_secs_f64()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{orphan} still has the dead daemon's affinity ({owner}) 20 s after the kill"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The survivors serve, and adopt the orphaned shard (it has room; they hold none in zone-b).
    let mut adopted = false;
    let mut addresses = BTreeSet::new();
    for (k, c) in survivors.iter().enumerate() {
        for i in 0..5 {
            let vm = format!("after-{k}-{i}");
            let (s, v) = allocate(c, &vm, "zone-b");
            assert_eq!(s, 201, "allocate {vm} after the takeover: {v}");
            assert!(addresses.insert(v["address"].as_str().unwrap().to_string()));
            adopted |= v["shard"].as_str() == Some(orphan.as_str());
        }
    }
    assert!(adopted, "no survivor adopted the orphaned shard {orphan}");
    eprintln!(
        "leader takeover: test took {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn losing_one_member_is_fine_losing_two_refuses_cleanly_and_recovers() {
    let _serial = serial();
    let start = Instant::now();
    let mut cluster = Cluster::start();
    let ds = start_daemons(&cluster);
    let clients: Vec<Client> = ds.daemons.iter().map(|d| d.client(None)).collect();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    for (k, c) in clients.iter().enumerate() {
        for i in 0..10 {
            let vm = format!("before-{k}-{i}");
            let (s, v) = allocate(c, &vm, "zone-a");
            assert_eq!(s, 201, "allocate {vm}: {v}");
            acked.insert(vm, v["address"].as_str().unwrap().to_string());
        }
    }

    // One member down: still a quorum.
    cluster.members[0].kill();
    let mut refused_one = 0;
    for (k, c) in clients.iter().enumerate() {
        let (vm, addr, refused) =
            allocate_within(c, &format!("one-down-{k}"), Duration::from_secs(10));
        refused_one += refused;
        acked.insert(vm, addr);
        for i in 0..5 {
            let vm = format!("one-down-{k}-more-{i}");
            let (s, v) = allocate(c, &vm, "zone-b");
            assert_eq!(s, 201, "allocate {vm} with one member down: {v}");
            acked.insert(vm, v["address"].as_str().unwrap().to_string());
        }
    }
    eprintln!("one member down: {refused_one} allocations refused (503) right after the kill");

    // Two members down: no quorum. Refused with 503, promptly.
    cluster.members[1].kill();
    let no_quorum = Instant::now();
    // Every daemon's /readyz is polled from the kill on, concurrently with the allocations.
    let pollers: Vec<_> = clients
        .iter()
        .map(|c| {
            let c = c.clone();
            std::thread::spawn(move || loop {
                let sent = Instant::now();
                let (s, v) = c.req("GET", "/readyz", None);
                if s == 503 {
                    return (no_quorum.elapsed(), sent.elapsed());
                }
                assert_eq!(s, 200, "/readyz: {v}");
                if no_quorum.elapsed() > Duration::from_secs(30) {
                    return (no_quorum.elapsed(), sent.elapsed());
                }
                std::thread::sleep(Duration::from_millis(200));
            })
        })
        .collect();
    let refusals: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(k, c)| {
            let c = c.clone();
            std::thread::spawn(move || {
                (0..2)
                    .map(|i| {
                        let vm = format!("no-quorum-{k}-{i}");
                        let sent = Instant::now();
                        let (s, v) = allocate(&c, &vm, "zone-a");
                        (vm, s, v, sent.elapsed())
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    for r in refusals {
        for (vm, s, v, took) in r.join().expect("a client thread panicked") {
            eprintln!(
                "no quorum: allocate {vm}: {s} after {:.2} s",
                took.as_secs_f64()
            );
            slowest = slowest.max(took);
            assert_eq!(s, 503, "allocate {vm} without quorum: {v}");
            assert!(
                took < Duration::from_secs(20),
                "allocate {vm} without quorum took {took:?}"
            );
        }
    }
    let mut unready = Duration::ZERO;
    for (k, p) in pollers.into_iter().enumerate() {
        let (at, took) = p.join().expect("a /readyz poller panicked");
        eprintln!(
            "no quorum: daemon {} /readyz 503 {:.2} s after the kill (that request took {:.2} s)",
            k + 1,
            at.as_secs_f64(),
            took.as_secs_f64()
        );
        assert!(
            at < Duration::from_secs(20),
            "daemon {}: /readyz not 503 within 20 s of the quorum loss ({at:?})",
            k + 1
        );
        unready = unready.max(at);
    }
    eprintln!(
        "no quorum: slowest refusal {:.2} s; every /readyz 503 within {:.2} s of the kill",
        slowest.as_secs_f64(),
        unready.as_secs_f64()
    );

    // Both back: it recovers.
    cluster.members[0].spawn();
    cluster.members[1].spawn();
    let restarted = Instant::now();
    if let Err(log) = cluster.wait_healthy(&[0, 1, 2], Duration::from_secs(30)) {
        panic!("the members did not rejoin: {log}");
    }
    let healthy = restarted.elapsed();
    let deadline = restarted + Duration::from_secs(30);
    let mut refused_after = 0;
    for (k, c) in clients.iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        let (vm, addr, refused) = allocate_within(c, &format!("recovered-{k}"), left);
        refused_after += refused;
        acked.insert(vm, addr);
        loop {
            let (s, _) = c.req("GET", "/readyz", None);
            if s == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "daemon {} not ready 30 s after the restart",
                k + 1
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    eprintln!(
        "recovery: etcd healthy {:.2} s after the restart, every daemon allocating and ready \
         after {:.2} s ({refused_after} refusals on the way)",
        healthy.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    );

    // Nothing acknowledged was lost.
    std::thread::sleep(Duration::from_millis(1500));
    for (view, present) in [
        ("daemon 2", listed(&clients[1])),
        ("etcd", cluster.leases()),
    ] {
        assert_unique_addresses(&present, view);
        for (vm, addr) in &acked {
            assert_eq!(
                present.get(vm),
                Some(addr),
                "{view}: acknowledged {vm} at {addr} lost or moved by the outage"
            );
        }
    }
    eprintln!(
        "quorum loss: test took {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
