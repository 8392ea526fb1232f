//! The etcd backend against a real `etcd` (started per test on free loopback ports): the shared
//! conformance suite, compare-and-swap between two stores on one prefix ("two daemons"), etcd's
//! transaction limits, and etcd going away and coming back.
#![cfg(feature = "etcd")]

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cidrcast_core::model::{Change, LeaseRecord, RouterSpec, ShardRecord, ShardState, Snapshot};
use cidrcast_store::conformance::{
    self, cooling, event, home, lease, pool, profile, router, shard, subdivision, transition, vm_id,
};
use cidrcast_store::etcd_testing::{free_ports, Member};
use cidrcast_store::{EtcdOptions, EtcdStore, Store, StoreError};
use ipnet::IpNet;

// ---------------------------------------------------------------------------------------------
// Harness.

/// A real etcd on free loopback ports with a data directory of its own; killed (by PID) when
/// dropped, also when the test panics.
struct Etcd {
    member: Member,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// An etcd with the limits cidrcast needs.
    fn start() -> Etcd {
        Self::start_with(true)
    }

    /// An etcd with its default limits (128 operations, 1.5 MiB per transaction).
    fn start_with_default_limits() -> Etcd {
        Self::start_with(false)
    }

    fn start_with(limits: bool) -> Etcd {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let ports = free_ports(2);
            let mut member = Member::single(ports[0], ports[1], dir.path().to_path_buf(), limits);
            member.spawn();
            match member.wait_healthy(Duration::from_secs(30)) {
                Ok(()) => return Etcd { member, _dir: dir },
                // Lost a race for the ports: try others (with a clean data directory).
                Err(log) if log.contains("address already in use") => continue,
                Err(log) => panic!("etcd did not start; its log:\n{log}"),
            }
        }
        panic!("etcd did not start on free ports after 5 attempts");
    }

    fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    /// Kills the process (by PID) and waits for it; the data directory stays.
    fn stop(&mut self) {
        self.member.kill();
    }

    /// Starts it again on the same data directory and ports.
    fn restart(&mut self) {
        self.member.spawn();
        if let Err(log) = self.member.wait_healthy(Duration::from_secs(30)) {
            panic!("etcd did not come back on its ports: {log}");
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the process.
    fn signal(&self, signal: &str) {
        self.member.signal(signal);
    }
}

fn options(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    EtcdOptions::new([etcd.endpoint()], prefix)
}

fn connect(etcd: &Etcd, prefix: &str) -> EtcdStore {
    EtcdStore::connect(options(etcd, prefix)).expect("connect")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn normalized(store: &impl Store) -> Snapshot {
    let mut snapshot = store.load().expect("load");
    snapshot.normalize();
    snapshot
}

/// A lease of `vm` at `address` in shard `10.0.0.0/26` of pool `v4`.
fn lease_at(vm: &str, address: &str) -> LeaseRecord {
    let address: IpAddr = address.parse().expect("address");
    LeaseRecord {
        vm_id: vm.to_string(),
        address,
        shard: IpNet::new(address, 26).expect("len").trunc(),
        ..lease(1)
    }
}

fn expect_conflict(result: Result<(), StoreError>, key_part: &str) -> String {
    match result {
        Err(StoreError::Conflict { what }) => {
            let message = StoreError::Conflict { what: what.clone() }.to_string();
            assert!(
                what.contains(key_part),
                "the conflict names {key_part}: {message}"
            );
            assert!(message.contains("reload and retry"), "{message}");
            what
        }
        other => panic!("expected a Conflict naming {key_part}, got {other:?}"),
    }
}

/// Two stores ("daemons") on one prefix, both loaded after a pool `v4` (10.0.0.0/16),
/// subdivisions `s1` and `s2`, a home of `s1` and an active shard `10.0.0.0/26` were committed.
fn two_daemons(etcd: &Etcd, prefix: &str) -> (EtcdStore, EtcdStore) {
    let a = connect(etcd, prefix);
    a.commit(&[
        Change::PutPool(pool("v4", "10.0.0.0/16")),
        Change::PutPool(pool("v4b", "10.1.0.0/16")),
        Change::PutSubdivision(subdivision("s1")),
        Change::PutSubdivision(subdivision("s2")),
        Change::PutHome(home("s1", "v4", "10.0.0.0/24")),
        Change::PutShard(shard("v4", "10.0.0.0/26", "s1", ShardState::Active)),
    ])
    .expect("base records");
    let b = connect(etcd, prefix);
    a.load().expect("load a");
    b.load().expect("load b");
    (a, b)
}

// ---------------------------------------------------------------------------------------------
// The shared suite.

#[test]
fn etcd_store_conforms() {
    let etcd = Etcd::start();
    let n = AtomicUsize::new(0);
    conformance::run_all(
        || connect(&etcd, &format!("/t{}/", n.fetch_add(1, Ordering::Relaxed))),
        |store| {
            let options = store.options().clone();
            drop(store);
            EtcdStore::connect(options).expect("reopen")
        },
    );
}

/// Unit tests of the key helpers run without etcd; this checks the layout on a real cluster:
/// escaped components cannot collide, and the keys are where the module docs say.
#[test]
fn key_components_are_escaped_and_laid_out_as_documented() {
    let etcd = Etcd::start();
    let store = connect(&etcd, "/esc/");
    let odd = ["a/b", "a%2Fb", "a b", "a/b/c", "vm:1"];
    let mut batch: Vec<Change> = odd
        .iter()
        .enumerate()
        .map(|(i, vm)| Change::PutLease(lease_at(vm, &format!("10.0.0.{}", i + 2))))
        .collect();
    batch.push(Change::PutPool(pool("p/1", "10.9.0.0/16")));
    batch.push(Change::PutSubdivision(subdivision("rack/1")));
    batch.push(Change::PutHome(home("rack/1", "p/1", "10.9.0.0/24")));
    batch.push(Change::PutShard(shard(
        "p/1",
        "10.9.0.0/26",
        "rack/1",
        ShardState::Active,
    )));
    batch.push(Change::Event(event(1)));
    store.commit(&batch).expect("commit");
    let loaded = normalized(&store);
    let mut vms: Vec<&str> = loaded.leases.iter().map(|l| l.vm_id.as_str()).collect();
    vms.sort_unstable();
    let mut expected = odd.to_vec();
    expected.sort_unstable();
    assert_eq!(vms, expected, "five distinct leases");
    store
        .commit(&[Change::DeleteLease {
            vm_id: "a/b".to_string(),
        }])
        .expect("delete");
    let vms: Vec<String> = normalized(&store)
        .leases
        .into_iter()
        .map(|l| l.vm_id)
        .collect();
    assert_eq!(vms.len(), 4);
    assert!(!vms.contains(&"a/b".to_string()) && vms.contains(&"a%2Fb".to_string()));

    // The keys themselves, read with a raw client.
    let keys = raw_keys(&etcd, "/esc/");
    for key in [
        "/esc/meta/schema",
        "/esc/meta/events_seq",
        "/esc/meta/transitions_seq",
        "/esc/leases/a%2Fb%2Fc",
        "/esc/leases/a%252Fb",
        "/esc/leases/a%20b",
        "/esc/leases/vm:1",
        "/esc/addresses/v4/010.000.000.003",
        "/esc/pools/p%2F1",
        "/esc/subdivisions/rack%2F1",
        "/esc/homes/rack%2F1/p%2F1",
        "/esc/shards/p%2F1/10.9.0.0%2F26",
        "/esc/placement/p%2F1",
        "/esc/events/00000000000000000001",
    ] {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:#?}");
    }
    assert!(
        !keys.contains(&"/esc/leases/a%2Fb".to_string()),
        "deleted with its index key: {keys:#?}"
    );
    assert!(!keys.contains(&"/esc/addresses/v4/010.000.000.002".to_string()));
}

/// Every key under `prefix`, via a raw etcd client.
fn raw_keys(etcd: &Etcd, prefix: &str) -> Vec<String> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .expect("raw client");
        let response = client
            .get(
                prefix,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_keys_only(),
                ),
            )
            .await
            .expect("get");
        response
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect()
    })
}

/// Puts raw keys via a raw etcd client.
fn raw_put(etcd: &Etcd, pairs: &[(&str, &str)]) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut client = etcd_client::Client::connect([etcd.endpoint()], None)
            .await
            .expect("raw client");
        for (key, value) in pairs {
            client.put(*key, *value, None).await.expect("put");
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Connecting.

#[test]
fn connect_checks_the_schema_and_the_prefix() {
    let etcd = Etcd::start();
    // A second connect to an initialised prefix reads it.
    let first = connect(&etcd, "/ok/");
    first.commit(&[Change::Event(event(1))]).expect("commit");
    let second = connect(&etcd, "/ok/");
    second
        .commit(&[Change::Event(event(2))])
        .expect("the counters are read on connect");
    assert_eq!(second.counts().expect("counts").events, 2);

    raw_put(
        &etcd,
        &[
            ("/newer/meta/schema", "2"),
            ("/newer/meta/events_seq", "0"),
            ("/newer/meta/transitions_seq", "0"),
        ],
    );
    let err = EtcdStore::connect(options(&etcd, "/newer/")).expect_err("newer schema");
    match &err {
        StoreError::SchemaMismatch {
            found, expected, ..
        } => assert_eq!((*found, *expected), (2, EtcdStore::SCHEMA_VERSION)),
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("schema version 2") && message.contains("/newer/"),
        "{message}"
    );

    raw_put(&etcd, &[("/foreign/config", "x")]);
    let err = EtcdStore::connect(options(&etcd, "/foreign/")).expect_err("foreign keys");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
    assert!(err.to_string().contains("/foreign/meta/schema"), "{err}");
    assert_eq!(
        raw_keys(&etcd, "/foreign/"),
        vec!["/foreign/config".to_string()],
        "nothing written into a foreign prefix"
    );
}

#[test]
fn connect_to_nothing_is_unavailable_naming_the_endpoint() {
    let port = free_ports(1)[0];
    let endpoint = format!("http://127.0.0.1:{port}");
    let options = EtcdOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        max_retries: 2,
        ..EtcdOptions::new([endpoint.clone()], "/x/")
    };
    let started = Instant::now();
    let err = EtcdStore::connect(options).expect_err("nothing listens");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&endpoint), "{message}");
    assert!(message.to_lowercase().contains("connect"), "{message}");
}

/// The daemon calls the store from async contexts: calls inside another runtime's worker
/// threads work (no `block_on` panic), and so does dropping the store there.
#[test]
fn usable_and_droppable_inside_another_runtime() {
    let etcd = Etcd::start();
    let store = connect(&etcd, "/rt/");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let loaded = runtime.block_on(async move {
        tokio::spawn(async move {
            store.commit(&[Change::PutLease(lease(1))]).expect("commit");
            let loaded = store.load().expect("load");
            drop(store);
            loaded
        })
        .await
        .expect("task")
    });
    assert_eq!(loaded.leases, vec![lease(1)]);
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    current.block_on(async {
        let store = connect(&etcd, "/rt/");
        assert_eq!(store.load().expect("load").leases, vec![lease(1)]);
    });
}

// ---------------------------------------------------------------------------------------------
// Compare-and-swap between two stores.

#[test]
fn stale_lease_on_a_taken_address_conflicts_and_leaves_nothing() {
    let etcd = Etcd::start();
    let (a, b) = two_daemons(&etcd, "/cas1/");
    a.commit(&[Change::PutLease(lease_at("vm-1", "10.0.0.5"))])
        .expect("a leases 10.0.0.5");
    let before = normalized(&a);
    let result = b.commit(&[
        Change::PutProfile(profile("web")),
        Change::Event(event(7)),
        Change::PutLease(lease_at("vm-2", "10.0.0.5")),
        Change::PutCooling(cooling("v4", "10.0.0.40", 9.0)),
    ]);
    expect_conflict(result, "/cas1/addresses/v4/010.000.000.005");
    assert_eq!(normalized(&a), before, "nothing of b's batch is visible");
    assert_eq!(a.counts().expect("counts").events, 0);
    assert!(a.profiles().expect("profiles").is_empty());

    // b reloads, sees vm-1, and a non-overlapping change goes through.
    let seen = normalized(&b);
    assert_eq!(seen.leases, vec![lease_at("vm-1", "10.0.0.5")]);
    b.commit(&[
        Change::PutLease(lease_at("vm-2", "10.0.0.6")),
        Change::Event(event(7)),
    ])
    .expect("after a reload");
    assert_eq!(normalized(&a).leases.len(), 2);
    assert_eq!(a.events(0, 10).expect("events"), vec![(1, event(7))]);
    // Still, even with a fresh view, one address cannot hold two leases.
    let err = b
        .commit(&[Change::PutLease(lease_at("vm-3", "10.0.0.5"))])
        .expect_err("taken address");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("vm-1"), "{err}");
}

#[test]
fn stale_updates_of_one_lease_conflict() {
    let etcd = Etcd::start();
    let (a, b) = two_daemons(&etcd, "/cas2/");
    a.commit(&[Change::PutLease(lease_at("vm-1", "10.0.0.5"))])
        .expect("lease");
    a.load().expect("reload a");
    b.load().expect("reload b");
    let newer = LeaseRecord {
        created: 5.0,
        ..lease_at("vm-1", "10.0.0.5")
    };
    a.commit(&[Change::PutLease(newer.clone())])
        .expect("a updates vm-1");
    let other = LeaseRecord {
        created: 6.0,
        ..lease_at("vm-1", "10.0.0.5")
    };
    expect_conflict(
        b.commit(&[Change::PutLease(other.clone())]),
        "/cas2/leases/vm-1",
    );
    expect_conflict(
        b.commit(&[Change::DeleteLease {
            vm_id: "vm-1".to_string(),
        }]),
        "/cas2/leases/vm-1",
    );
    assert_eq!(normalized(&a).leases, vec![newer]);
    b.load().expect("reload");
    b.commit(&[Change::PutLease(other.clone())])
        .expect("after a reload");
    assert_eq!(normalized(&a).leases, vec![other]);
    // A lease may also move to another address in one batch: the old index key goes.
    b.commit(&[Change::PutLease(lease_at("vm-1", "10.0.0.9"))])
        .expect("move");
    let keys = raw_keys(&etcd, "/cas2/addresses/");
    assert_eq!(keys, vec!["/cas2/addresses/v4/010.000.000.009".to_string()]);
}

#[test]
fn stale_shard_and_home_placements_conflict() {
    // Base: s1's home 10.0.0.0/24 in pool v4 holding 10.0.0.0/26 (see two_daemons).
    let etcd = Etcd::start();
    let (a, b) = two_daemons(&etcd, "/cas3/");
    let reserved = |prefix: &str, sub: &str| shard("v4", prefix, sub, ShardState::Reserved);
    let claim = |prefix: &str, sub: &str| {
        vec![
            Change::PutShard(reserved(prefix, sub)),
            Change::Transition(transition(1.0, "v4", prefix, ShardState::Reserved)),
        ]
    };
    a.commit(&claim("10.0.0.64/26", "s1"))
        .expect("a claims 10.0.0.64/26 in s1's home");
    // b, stale, claims an overlapping /27 in the same home block: that block's placement key
    // stops it.
    expect_conflict(
        b.commit(&claim("10.0.0.64/27", "s1")),
        "/cas3/placement/v4/s1",
    );
    // b places s2's home block: a's claim inside s1's home took no space b could take.
    b.commit(&[Change::PutHome(home("s2", "v4", "10.0.2.0/24"))])
        .expect("b places s2's home from a view older than a's claim");
    // a, stale about that home, borrows a shard from the pool: the pool's key stops it.
    expect_conflict(
        a.commit(&[Change::PutShard(ShardRecord {
            borrowed: true,
            ..reserved("10.0.2.0/26", "s2")
        })]),
        "/cas3/placement/v4",
    );
    // ... and a home block of another subdivision.
    expect_conflict(
        a.commit(&[Change::PutHome(home("s3", "v4", "10.0.2.0/25"))]),
        "/cas3/placement/v4",
    );
    a.load().expect("reload a");
    b.load().expect("reload b");
    // Claims inside two subdivisions' home blocks at once do not conflict.
    a.commit(&claim("10.0.0.128/26", "s1"))
        .expect("a claims in s1's home");
    b.commit(&claim("10.0.2.0/26", "s2"))
        .expect("b claims in s2's home, from a view older than a's claim");
    // A change of a shard b knows (its state, its affinity) takes no space: a's claim elsewhere
    // in the pool does not stop it; the shard's own key guards it.
    let known = ShardRecord {
        affinity: Some("b".to_string()),
        ..shard("v4", "10.0.0.0/26", "s1", ShardState::Active)
    };
    b.commit(&[Change::PutShard(known.clone())])
        .expect("no false conflict on a shard b knows");
    expect_conflict(
        a.commit(&[Change::PutShard(ShardRecord {
            affinity: Some("a".to_string()),
            ..known
        })]),
        "/cas3/shards/v4/10.0.0.0%2F26",
    );
    // Nested: c's home lies in s1's block. c's home growing takes space of s1's block, so a stale
    // claim in s1's home conflicts with it.
    a.load().expect("reload a");
    let mut c = subdivision("c");
    c.parent = Some("s1".to_string());
    a.commit(&[
        Change::PutSubdivision(c),
        Change::PutHome(home("c", "v4", "10.0.0.192/27")),
    ])
    .expect("a adds c, its home in s1's block");
    b.load().expect("reload b");
    a.commit(&[Change::PutHome(home("c", "v4", "10.0.0.192/26"))])
        .expect("a grows c's home");
    expect_conflict(
        b.commit(&claim("10.0.0.224/27", "s1")),
        "/cas3/placement/v4/s1",
    );
    // Another pool's placement is independent: no false conflict.
    b.commit(&[Change::PutShard(shard(
        "v4b",
        "10.1.0.0/26",
        "s2",
        ShardState::Reserved,
    ))])
    .expect("another pool");
    let shards: Vec<IpNet> = normalized(&a).shards.iter().map(|s| s.prefix).collect();
    assert_eq!(
        shards,
        [
            net("10.0.0.0/26"),
            net("10.0.0.64/26"),
            net("10.0.0.128/26"),
            net("10.0.2.0/26"),
            net("10.1.0.0/26")
        ]
    );
    assert_eq!(a.counts().expect("counts").transitions, 3);
}

#[test]
fn appends_from_stale_counters_are_renumbered_and_stay_dense() {
    // Another writer appended meanwhile: a batch whose other keys are as this store read them
    // is numbered again from the counters' new values, without a conflict or a reload.
    let etcd = Etcd::start();
    let a = connect(&etcd, "/cas4/");
    let b = connect(&etcd, "/cas4/");
    a.commit(&[Change::Event(event(1)), Change::Event(event(2))])
        .expect("a appends");
    b.commit(&[Change::Event(event(3)), Change::PutLease(lease(3))])
        .expect("b's stale counter is renumbered");
    a.commit(&[Change::Transition(transition(
        1.0,
        "v4",
        "10.0.0.0/26",
        ShardState::Active,
    ))])
    .expect("a appends a transition");
    b.commit(&[Change::Transition(transition(
        2.0,
        "v4",
        "10.0.0.0/26",
        ShardState::Active,
    ))])
    .expect("b's stale transition counter is renumbered");
    let seqs: Vec<(u64, String)> = a
        .events(0, 100)
        .expect("events")
        .into_iter()
        .map(|(s, e)| (s, e.vm_id))
        .collect();
    assert_eq!(seqs, vec![(1, vm_id(1)), (2, vm_id(2)), (3, vm_id(3))]);
    assert_eq!(
        a.transitions(0, 10)
            .expect("transitions")
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [1, 2]
    );
    // But a stale batch whose other keys changed still conflicts, naming them, and nothing of
    // it is stored: b's view of vm-3's lease is current, a changes it, b's update conflicts.
    a.load().expect("reload a");
    a.commit(&[Change::PutLease(lease_at(&vm_id(3), "10.0.0.99"))])
        .expect("a moves vm-3");
    expect_conflict(
        b.commit(&[Change::Event(event(4)), Change::PutLease(lease(3))]),
        "leases",
    );
    assert_eq!(a.events(0, 100).expect("events").len(), 3, "nothing of it");

    // Two stores, two threads each, appending events with leases of their own: no conflicts,
    // dense sequence numbers, every event exactly once.
    let c = connect(&etcd, "/cas4/");
    let d = connect(&etcd, "/cas4/");
    std::thread::scope(|scope| {
        for (t, store) in [(0u64, &c), (1, &c), (2, &d), (3, &d)] {
            scope.spawn(move || {
                for i in 0..15u64 {
                    let id = 100 + t * 100 + i;
                    store
                        .commit(&[Change::Event(event(id)), Change::PutLease(lease(id))])
                        .unwrap_or_else(|e| panic!("{e}"));
                }
            });
        }
    });
    let events = a.events(0, usize::MAX).expect("events");
    assert_eq!(
        events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=63).collect::<Vec<u64>>(),
    );
    let mut ids: Vec<String> = events[3..].iter().map(|(_, e)| e.vm_id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 60, "every event exactly once");
}

#[test]
fn stale_writer_cannot_reuse_an_address_cooling_down() {
    let etcd = Etcd::start();
    let (a, b) = two_daemons(&etcd, "/cas5/");
    a.commit(&[Change::PutLease(lease_at("vm-1", "10.0.0.5"))])
        .expect("lease");
    a.commit(&[
        Change::DeleteLease {
            vm_id: "vm-1".to_string(),
        },
        Change::PutCooling(cooling("v4", "10.0.0.5", 100.0)),
    ])
    .expect("release");
    // b's view: 10.0.0.5 free, and the index key is indeed absent again; the cooling key is not.
    expect_conflict(
        b.commit(&[Change::PutLease(lease_at("vm-2", "10.0.0.5"))]),
        "/cas5/cooling/v4/010.000.000.005",
    );
    b.load().expect("reload");
    // With a current view, the writer that ends the cooldown may reuse the address.
    b.commit(&[
        Change::DeleteCooling {
            pool: "v4".to_string(),
            address: "10.0.0.5".parse().expect("address"),
        },
        Change::PutLease(lease_at("vm-2", "10.0.0.5")),
    ])
    .expect("reuse after the cooldown");
}

#[test]
fn leases_and_shard_releases_from_stale_views_conflict() {
    let etcd = Etcd::start();
    let (a, b) = two_daemons(&etcd, "/cas6/");
    // b leases into 10.0.0.0/26; a, which saw it empty, releases it.
    b.commit(&[Change::PutLease(lease_at("vm-9", "10.0.0.9"))])
        .expect("lease");
    let what = expect_conflict(
        a.commit(&[Change::DeleteShard {
            pool: "v4".to_string(),
            prefix: net("10.0.0.0/26"),
        }]),
        "/cas6/addresses/v4/010.000.000.009",
    );
    assert!(what.contains("releases"), "{what}");

    // The other order: a changes (drains, then releases) a shard, b (stale) leases into it.
    a.load().expect("reload a");
    a.commit(&[Change::PutShard(shard(
        "v4",
        "10.0.0.128/26",
        "s1",
        ShardState::Active,
    ))])
    .expect("a claims");
    b.load().expect("b sees 10.0.0.128/26");
    a.commit(&[Change::PutShard(shard(
        "v4",
        "10.0.0.128/26",
        "s1",
        ShardState::Draining,
    ))])
    .expect("a drains it");
    expect_conflict(
        b.commit(&[Change::PutLease(lease_at("vm-8", "10.0.0.130"))]),
        "/cas6/shards/v4/10.0.0.128%2F26",
    );
    b.load().expect("b sees it draining");
    a.commit(&[Change::DeleteShard {
        pool: "v4".to_string(),
        prefix: net("10.0.0.128/26"),
    }])
    .expect("a releases it");
    expect_conflict(
        b.commit(&[Change::PutLease(lease_at("vm-8", "10.0.0.130"))]),
        "/cas6/shards/v4/10.0.0.128%2F26",
    );
    // A shard holding this store's own leases released together with them: no false conflict.
    a.load().expect("reload a");
    a.commit(&[
        Change::DeleteLease {
            vm_id: "vm-9".to_string(),
        },
        Change::DeleteShard {
            pool: "v4".to_string(),
            prefix: net("10.0.0.0/26"),
        },
    ])
    .expect("release with its last lease");
}

// ---------------------------------------------------------------------------------------------
// etcd's limits.

#[test]
fn large_batches_need_the_raised_limits() {
    let raised = Etcd::start();
    let store = connect(&raised, "/big/");
    let mut batch: Vec<Change> = (0..5000).map(|i| Change::PutLease(lease(i))).collect();
    batch.extend((0..5000).map(|i| Change::Event(event(i))));
    store
        .commit(&batch)
        .expect("15,000 operations in one transaction");
    let counts = store.counts().expect("counts");
    assert_eq!((counts.leases, counts.events), (5000, 5000));
    assert_eq!(normalized(&store).leases.len(), 5000, "load pages");

    let default = Etcd::start_with_default_limits();
    let store = connect(&default, "/big/");
    let batch: Vec<Change> = (0..100).map(|i| Change::PutLease(lease(i))).collect();
    let err = store.commit(&batch).expect_err("over 128 operations");
    match &err {
        StoreError::EtcdTxnTooLarge { flag, ops, .. } => {
            assert_eq!(*flag, "--max-txn-ops");
            assert!(*ops > 128, "{ops}");
        }
        other => panic!("expected EtcdTxnTooLarge, got {other:?}"),
    }
    assert!(err.to_string().contains("--max-txn-ops"), "{err}");
    assert_eq!(store.counts().expect("counts").leases, 0, "nothing applied");

    // Few operations, but more than 1.5 MiB.
    let huge: Vec<Change> = (0..40)
        .map(|i| {
            Change::PutRouter(RouterSpec {
                reload_command: Some("x".repeat(50_000)),
                ..router(&format!("r{i}"))
            })
        })
        .collect();
    let err = store.commit(&huge).expect_err("over 1.5 MiB");
    match &err {
        StoreError::EtcdTxnTooLarge { flag, .. } => assert_eq!(*flag, "--max-request-bytes"),
        other => panic!("expected EtcdTxnTooLarge, got {other:?}"),
    }
    assert!(store.routers().expect("routers").is_empty());
    // The same batch fits the raised limits.
    let store = connect(&raised, "/big/");
    store.commit(&huge).expect("2 MB with the raised limits");
    assert_eq!(store.routers().expect("routers").len(), 40);
}

// ---------------------------------------------------------------------------------------------
// Availability.

fn quick(etcd: &Etcd, prefix: &str) -> EtcdOptions {
    EtcdOptions {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_secs(1),
        max_retries: 3,
        ..options(etcd, prefix)
    }
}

#[test]
fn unavailable_etcd_fails_fast_and_the_store_recovers() {
    let mut etcd = Etcd::start();
    let store = EtcdStore::connect(quick(&etcd, "/down/")).expect("connect");
    store
        .commit(&[Change::PutLease(lease(1)), Change::Event(event(1))])
        .expect("commit");
    etcd.stop();

    let started = Instant::now();
    let mut err = store
        .commit(&[Change::PutLease(lease(2)), Change::Event(event(2))])
        .expect_err("etcd is down");
    if err.to_string().contains("outcome of the commit is unknown") {
        // The connection open before the kill took the request (broken pipe): its outcome is
        // rightly unknown. The next attempt finds connections refused.
        err = store
            .commit(&[Change::PutLease(lease(2)), Change::Event(event(2))])
            .expect_err("etcd is down");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "no hang: {took:?}");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&etcd.endpoint()), "{message}");
    assert!(
        message.contains("not applied"),
        "refused connections: {message}"
    );
    let err = store.load().expect_err("etcd is down");
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(store.events(0, 10).is_err() && store.counts().is_err());

    etcd.restart();
    store
        .commit(&[Change::PutLease(lease(2)), Change::Event(event(2))])
        .expect("reconnected");
    assert_eq!(normalized(&store).leases, vec![lease(1), lease(2)]);
    assert_eq!(
        store.events(0, 10).expect("events"),
        vec![(1, event(1)), (2, event(2))],
        "nothing committed before was lost"
    );
}

#[test]
fn a_commit_without_answer_has_an_unknown_outcome() {
    let etcd = Etcd::start();
    let store = EtcdStore::connect(quick(&etcd, "/paused/")).expect("connect");
    store.commit(&[Change::PutLease(lease(1))]).expect("commit");
    etcd.signal("STOP");
    let started = Instant::now();
    let result = store.commit(&[Change::PutLease(lease(2)), Change::Event(event(1))]);
    let took = started.elapsed();
    etcd.signal("CONT");
    // Let etcd handle what it received while paused.
    std::thread::sleep(Duration::from_secs(1));
    let err = result.expect_err("etcd is paused");
    assert!(took < Duration::from_secs(5), "no hang: {took:?}");
    let message = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(message.contains("unknown"), "{message}");
    // The caller reloads to find out, and goes on.
    let deadline = Instant::now() + Duration::from_secs(10);
    let leases = loop {
        match store.load() {
            Ok(snapshot) => break snapshot.leases,
            Err(e) if Instant::now() < deadline => {
                eprintln!("etcd not back yet: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("{e}"),
        }
    };
    let applied = leases.len() == 2;
    assert_eq!(store.counts().expect("counts").events, u64::from(applied));
    store
        .commit(&[Change::PutLease(lease(3)), Change::Event(event(2))])
        .expect("after a reload");
    assert_eq!(
        store.counts().expect("counts").events,
        1 + u64::from(applied)
    );
}

#[test]
fn an_address_released_and_leased_again_in_one_batch_commits() {
    // With no cooldown, one group commit can release an address and lease it to another VM.
    let etcd = Etcd::start();
    let store = connect(&etcd, "/reuse/");
    store
        .commit(&[Change::PutLease(lease_at("vm-1", "10.0.0.5"))])
        .unwrap();
    store
        .commit(&[
            Change::DeleteLease {
                vm_id: "vm-1".into(),
            },
            Change::PutLease(lease_at("vm-2", "10.0.0.5")),
        ])
        .unwrap();
    // And the other way round over two batches, after a reload.
    store.load().unwrap();
    store
        .commit(&[
            Change::DeleteLease {
                vm_id: "vm-2".into(),
            },
            Change::PutLease(lease_at("vm-3", "10.0.0.5")),
            Change::DeleteLease {
                vm_id: "vm-3".into(),
            },
            Change::PutLease(lease_at("vm-4", "10.0.0.5")),
        ])
        .unwrap();
    let snap = normalized(&store);
    let vms: Vec<&str> = snap.leases.iter().map(|l| l.vm_id.as_str()).collect();
    assert_eq!(vms, ["vm-4"]);
}
