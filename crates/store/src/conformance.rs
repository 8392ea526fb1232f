//! The conformance suite every [`Store`] backend must pass.
//!
//! Always compiled (it only uses the crate's own dependencies) so that any crate's tests can run
//! it against its backend:
//!
//! ```no_run
//! use cidrcast_store::{conformance, MemoryStore};
//! conformance::run_all(MemoryStore::new, |store| store);
//! ```
//!
//! `make` returns a fresh, empty store each call; `reopen` takes a store, drops it (closing
//! whatever it holds) and returns a new handle on the same storage, as a restarted process would
//! (for an in-memory store, the identity). Each case is also a public function, for a backend that
//! wants to run them one by one (e.g. one `#[test]` each). Cases panic with a message on failure.
//!
//! The fixture constructors ([`pool`], [`lease`], [`event`], [`profile`], [`router`], ...) are
//! public too, for backend
//! specific tests (crash tests, benchmarks).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use cidrcast_core::model::{
    Change, CoolingRecord, EventKind, ExternalEventSpec, Flavor, HomeRecord, LeaseRecord, Neighbor,
    PoolSpec, Profile, Reason, RouterSpec, ShardRecord, ShardState, Snapshot, SubdivisionSpec,
    Transition, VmEvent,
};
use ipnet::{IpNet, Ipv4Net};

use cidrcast_core::{Ipam, Settings};

use crate::{Store, StoreCounts, StoreError};

/// Runs every case, each on a fresh store from `make`.
pub fn run_all<S: Store>(mut make: impl FnMut() -> S, mut reopen: impl FnMut(S) -> S) {
    empty_store(&make());
    put_overwrite_delete(&make());
    changes_apply_in_order(&make());
    batch_is_atomic(&make());
    sequences_and_paging(&make());
    times_round_trip(&make());
    large_batch(&make());
    concurrent_commits(&make());
    external_events(&make());
    profiles_and_routers(&make());
    reopen_preserves_everything(make(), &mut reopen);
    external_events_survive_reopen(make(), &mut reopen);
    profiles_and_routers_survive_reopen(make(), &mut reopen);
    shards_of_several_sizes_survive_reopen(make(), &mut reopen);
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/// An IPv4 pool of /26 shards.
pub fn pool(name: &str, prefix: &str) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        prefix: net(prefix),
        shard_prefix_len: 26,
        min_shard_prefix_len: None,
        max_shard_prefix_len: None,
        vrf: "default".to_string(),
        reserved: Vec::new(),
        reserve_first: 2,
        reserve_last: 1,
    }
}

/// A subdivision drawing from every pool.
pub fn subdivision(name: &str) -> SubdivisionSpec {
    SubdivisionSpec {
        name: name.to_string(),
        parent: None,
        pools: Vec::new(),
        max_shards: Some(16),
        home_shards: Some(4),
        routers: vec!["r1".to_string()],
    }
}

/// A home block.
pub fn home(subdivision: &str, pool: &str, block: &str) -> HomeRecord {
    HomeRecord {
        subdivision: subdivision.to_string(),
        pool: pool.to_string(),
        block: net(block),
    }
}

/// A shard of `pool`, set to `state` at time 1.
pub fn shard(pool: &str, prefix: &str, subdivision: &str, state: ShardState) -> ShardRecord {
    ShardRecord {
        pool: pool.to_string(),
        prefix: net(prefix),
        subdivision: subdivision.to_string(),
        state,
        borrowed: false,
        since: 1.0,
        reason: Reason::Forecast,
        affinity: None,
    }
}

/// The VM id of lease/event number `id`.
pub fn vm_id(id: u64) -> String {
    format!("vm-{id:08}")
}

/// Lease number `id`: VM [`vm_id`]`(id)` in subdivision `s1`, pool `v4`, address `10.0.0.0 + id`.
pub fn lease(id: u64) -> LeaseRecord {
    let address = Ipv4Addr::from(0x0a00_0000u32.wrapping_add(id as u32));
    LeaseRecord {
        vm_id: vm_id(id),
        subdivision: "s1".to_string(),
        pool: "v4".to_string(),
        address: IpAddr::V4(address),
        shard: IpNet::V4(Ipv4Net::new(address, 26).expect("valid length").trunc()),
        profile: (id & 1 == 0).then(|| "web".to_string()),
        created: id as f64 * 0.5,
    }
}

/// A cooling address.
pub fn cooling(pool: &str, address: &str, until: f64) -> CoolingRecord {
    CoolingRecord {
        pool: pool.to_string(),
        address: address.parse().expect("valid address"),
        until,
    }
}

/// Event number `id`: a create of VM [`vm_id`]`(id)` in `s1` at time `id`.
pub fn event(id: u64) -> VmEvent {
    VmEvent {
        time: id as f64,
        subdivision: "s1".to_string(),
        kind: EventKind::Create,
        vm_id: vm_id(id),
        profile: Some("web".to_string()),
    }
}

/// A transition of `pool`'s shard `prefix` from free to `to` at `time`.
pub fn transition(time: f64, pool: &str, prefix: &str, to: ShardState) -> Transition {
    Transition {
        time,
        pool: pool.to_string(),
        prefix: net(prefix),
        subdivision: "s1".to_string(),
        from: None,
        to: Some(to),
        reason: Reason::Miss,
    }
}

/// A scheduled external event `name` over `[start, end)` in `scope`, adding 10 VMs.
pub fn external_event(name: &str, scope: &str, start: f64, end: f64) -> ExternalEventSpec {
    ExternalEventSpec {
        name: name.to_string(),
        start,
        end,
        scope: scope.to_string(),
        extra_vms: Some(10.0),
        multiplier: None,
    }
}

/// An application profile `name` of 2 vCPUs, 4 GiB and 100 Mbit/s.
pub fn profile(name: &str) -> Profile {
    Profile {
        name: name.to_string(),
        vcpus: 2,
        memory_gib: 4.0,
        network_mbps: 100.0,
        description: Some(format!("profile {name}")),
    }
}

/// An FRR router `name` in AS 64512 with router id 192.0.2.1, one IPv4 and one IPv6 neighbor,
/// announcing subdivision `s1`, with a configuration path and a reload command.
pub fn router(name: &str) -> RouterSpec {
    RouterSpec {
        name: name.to_string(),
        flavor: Flavor::Frr,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        asn: 64512,
        neighbors: vec![
            Neighbor {
                address: "192.0.2.2".parse().expect("address"),
                asn: 64513,
            },
            Neighbor {
                address: "2001:db8::2".parse().expect("address"),
                asn: 4_200_000_000,
            },
        ],
        subdivisions: vec!["s1".to_string()],
        config_path: Some(PathBuf::from(format!("/etc/frr/{name}.conf"))),
        reload_command: Some("systemctl reload frr".to_string()),
        policy: Default::default(),
    }
}

fn net(s: &str) -> IpNet {
    s.parse().expect("valid prefix")
}

fn normalized(mut snapshot: Snapshot) -> Snapshot {
    snapshot.normalize();
    snapshot
}

fn load<S: Store>(store: &S) -> Snapshot {
    normalized(store.load().expect("load"))
}

fn commit<S: Store>(store: &S, batch: &[Change]) {
    store
        .commit(batch)
        .unwrap_or_else(|e| panic!("commit of {} changes failed: {e:?}", batch.len()));
}

fn all_events<S: Store>(store: &S) -> Vec<(u64, VmEvent)> {
    store.events(0, usize::MAX).expect("events")
}

fn all_transitions<S: Store>(store: &S) -> Vec<(u64, Transition)> {
    store.transitions(0, usize::MAX).expect("transitions")
}

fn all_external<S: Store>(store: &S) -> Vec<ExternalEventSpec> {
    store.external_events().expect("external events")
}

fn all_profiles<S: Store>(store: &S) -> Vec<Profile> {
    store.profiles().expect("profiles")
}

fn all_routers<S: Store>(store: &S) -> Vec<RouterSpec> {
    store.routers().expect("routers")
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// A new store holds nothing.
pub fn empty_store<S: Store>(store: &S) {
    assert_eq!(load(store), Snapshot::default(), "a new store loads empty");
    assert_eq!(store.counts().expect("counts"), StoreCounts::default());
    assert!(all_events(store).is_empty());
    assert!(all_transitions(store).is_empty());
    assert!(all_external(store).is_empty());
    assert!(all_profiles(store).is_empty());
    assert!(all_routers(store).is_empty());
    // An empty batch is a no-op.
    commit(store, &[]);
    assert_eq!(load(store), Snapshot::default());
}

/// Puts of every record kind, overwrites, deletes (including of missing keys); `load` returns
/// exactly the live set.
pub fn put_overwrite_delete<S: Store>(store: &S) {
    let v4 = pool("v4", "10.0.0.0/16");
    let v6 = PoolSpec {
        shard_prefix_len: 112,
        reserve_first: 0,
        reserve_last: 0,
        ..pool("v6", "fd00::/48")
    };
    let s1 = subdivision("s1");
    let s2 = SubdivisionSpec {
        parent: Some("s1".to_string()),
        ..subdivision("s2")
    };
    let h1 = home("s1", "v4", "10.0.0.0/24");
    let h2 = home("s2", "v6", "fd00::/104");
    let sh1 = shard("v4", "10.0.0.0/26", "s1", ShardState::Active);
    let sh2 = shard("v4", "10.0.0.64/26", "s1", ShardState::Reserved);
    let sh3 = shard("v6", "fd00::/112", "s2", ShardState::Active);
    let (l1, l2, l3) = (lease(1), lease(2), lease(3));
    let c1 = cooling("v4", "10.0.0.9", 40.0);
    let c2 = cooling("v6", "fd00::9", 41.0);
    let batch: Vec<Change> = vec![
        Change::PutPool(v4.clone()),
        Change::PutPool(v6.clone()),
        Change::PutSubdivision(s1.clone()),
        Change::PutSubdivision(s2.clone()),
        Change::PutHome(h1.clone()),
        Change::PutHome(h2.clone()),
        Change::PutShard(sh1.clone()),
        Change::PutShard(sh2.clone()),
        Change::PutShard(sh3.clone()),
        Change::PutLease(l1.clone()),
        Change::PutLease(l2.clone()),
        Change::PutLease(l3.clone()),
        Change::PutCooling(c1.clone()),
        Change::PutCooling(c2.clone()),
    ];
    commit(store, &batch);
    let expected = normalized(Snapshot {
        pools: vec![v4.clone(), v6.clone()],
        subdivisions: vec![s1.clone(), s2.clone()],
        homes: vec![h1.clone(), h2.clone()],
        shards: vec![sh1.clone(), sh2.clone(), sh3.clone()],
        leases: vec![l1.clone(), l2.clone(), l3.clone()],
        cooling: vec![c1.clone(), c2.clone()],
    });
    assert_eq!(load(store), expected, "load after the first batch");
    let counts = store.counts().expect("counts");
    assert_eq!((counts.leases, counts.shards), (3, 3));
    assert_eq!((counts.events, counts.transitions), (0, 0));

    // Overwrite one of each kind, delete one of each kind, delete missing keys of each kind.
    let v4b = PoolSpec {
        reserve_first: 0,
        reserved: vec![net("10.0.255.0/24")],
        ..v4.clone()
    };
    let s1b = SubdivisionSpec {
        max_shards: Some(64),
        pools: vec!["v4".to_string()],
        ..s1.clone()
    };
    let h1b = home("s1", "v4", "10.0.0.0/23");
    let sh1b = ShardRecord {
        state: ShardState::Draining,
        since: 99.25,
        reason: Reason::Reclaim,
        borrowed: true,
        affinity: Some("node a/127.0.0.1:8470".to_string()),
        ..sh1.clone()
    };
    let l1b = LeaseRecord {
        profile: None,
        created: 7.75,
        ..l1.clone()
    };
    let c1b = cooling("v4", "10.0.0.9", 90.0);
    let batch = vec![
        Change::PutPool(v4b.clone()),
        Change::PutSubdivision(s1b.clone()),
        Change::PutHome(h1b.clone()),
        Change::PutShard(sh1b.clone()),
        Change::PutLease(l1b.clone()),
        Change::PutCooling(c1b.clone()),
        Change::DeletePool {
            name: "v6".to_string(),
        },
        Change::DeleteSubdivision {
            name: "s2".to_string(),
        },
        Change::DeleteHome {
            subdivision: "s2".to_string(),
            pool: "v6".to_string(),
        },
        Change::DeleteShard {
            pool: "v4".to_string(),
            prefix: net("10.0.0.64/26"),
        },
        Change::DeleteLease { vm_id: vm_id(2) },
        Change::DeleteCooling {
            pool: "v6".to_string(),
            address: "fd00::9".parse().expect("address"),
        },
        // Missing keys: no-ops.
        Change::DeletePool {
            name: "nope".to_string(),
        },
        Change::DeleteSubdivision {
            name: "nope".to_string(),
        },
        Change::DeleteHome {
            subdivision: "s1".to_string(),
            pool: "nope".to_string(),
        },
        Change::DeleteShard {
            // Same prefix, other pool: a different key.
            pool: "v6".to_string(),
            prefix: net("10.0.0.0/26"),
        },
        Change::DeleteLease { vm_id: vm_id(999) },
        Change::DeleteCooling {
            pool: "v4".to_string(),
            address: "10.0.0.10".parse().expect("address"),
        },
    ];
    commit(store, &batch);
    let expected = normalized(Snapshot {
        pools: vec![v4b],
        subdivisions: vec![s1b],
        homes: vec![h1b],
        shards: vec![sh1b, sh3],
        leases: vec![l1b, l3],
        cooling: vec![c1b],
    });
    assert_eq!(load(store), expected, "load after overwrites and deletes");
    let counts = store.counts().expect("counts");
    assert_eq!((counts.leases, counts.shards), (2, 2));
}

/// Changes of one batch apply in order.
pub fn changes_apply_in_order<S: Store>(store: &S) {
    let first = lease(1);
    let second = LeaseRecord {
        created: 123.0,
        ..lease(1)
    };
    commit(
        store,
        &[
            // Put then delete: gone.
            Change::PutLease(lease(2)),
            Change::DeleteLease { vm_id: vm_id(2) },
            // Delete then put: present.
            Change::DeleteLease { vm_id: vm_id(3) },
            Change::PutLease(lease(3)),
            // Put twice: the last wins.
            Change::PutLease(first),
            Change::PutLease(second.clone()),
        ],
    );
    assert_eq!(load(store).leases, vec![second, lease(3)]);
}

/// A batch is all or nothing: a batch whose last change is refused leaves no trace, not even a
/// consumed sequence number.
pub fn batch_is_atomic<S: Store>(store: &S) {
    commit(
        store,
        &[
            Change::PutPool(pool("v4", "10.0.0.0/16")),
            Change::PutLease(lease(1)),
            Change::Event(event(1)),
            Change::Transition(transition(1.0, "v4", "10.0.0.0/26", ShardState::Active)),
        ],
    );
    let before = load(store);
    let counts = store.counts().expect("counts");

    let bad = LeaseRecord {
        created: f64::NAN,
        ..lease(3)
    };
    let batch = vec![
        Change::PutLease(lease(2)),
        Change::DeleteLease { vm_id: vm_id(1) },
        Change::DeletePool {
            name: "v4".to_string(),
        },
        Change::PutShard(shard("v4", "10.0.0.0/26", "s1", ShardState::Active)),
        Change::Event(event(2)),
        Change::Transition(transition(2.0, "v4", "10.0.0.64/26", ShardState::Active)),
        Change::PutLease(bad),
    ];
    let err = store
        .commit(&batch)
        .expect_err("a batch holding a NaN time must be refused");
    assert!(
        matches!(err, StoreError::Invalid { .. }),
        "expected StoreError::Invalid, got {err:?}"
    );
    assert_eq!(load(store), before, "nothing of a failed batch is visible");
    assert_eq!(store.counts().expect("counts"), counts);

    // Every time field is checked.
    let non_finite: Vec<Change> = vec![
        Change::PutShard(ShardRecord {
            since: f64::INFINITY,
            ..shard("v4", "10.0.0.0/26", "s1", ShardState::Active)
        }),
        Change::PutCooling(cooling("v4", "10.0.0.1", f64::NEG_INFINITY)),
        Change::Event(VmEvent {
            time: f64::NAN,
            ..event(9)
        }),
        Change::Transition(transition(
            f64::NAN,
            "v4",
            "10.0.0.0/26",
            ShardState::Active,
        )),
    ];
    for change in non_finite {
        let batch = [Change::PutLease(lease(5)), change];
        assert!(
            matches!(store.commit(&batch), Err(StoreError::Invalid { .. })),
            "non-finite time accepted in {:?}",
            batch[1]
        );
    }
    assert_eq!(load(store), before);
    assert_eq!(store.counts().expect("counts"), counts);

    // The failed batches consumed no sequence number.
    commit(
        store,
        &[
            Change::Event(event(3)),
            Change::Transition(transition(3.0, "v4", "10.0.0.0/26", ShardState::Draining)),
        ],
    );
    let seqs: Vec<u64> = all_events(store).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2]);
    let seqs: Vec<u64> = all_transitions(store).iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, vec![1, 2]);
}

/// Sequence numbers start at 1 and increase across commits; paging returns `seq > after`.
pub fn sequences_and_paging<S: Store>(store: &S) {
    let mut expected_events = Vec::new();
    let mut expected_transitions = Vec::new();
    let mut id = 0u64;
    for round in 0..5u64 {
        let mut batch = Vec::new();
        // 0..=4 events and 4..=0 transitions per batch, interleaved with records.
        for i in 0..round {
            id += 1;
            batch.push(Change::Event(event(id)));
            expected_events.push(event(id));
            batch.push(Change::PutLease(lease(id)));
            let t = transition(id as f64, "v4", "10.0.0.0/26", ShardState::Active);
            if i % 2 == 0 {
                batch.push(Change::Transition(t.clone()));
                expected_transitions.push(t);
            }
        }
        for _ in round..4 {
            let t = transition(round as f64, "v4", "10.0.1.0/26", ShardState::Reserved);
            batch.push(Change::Transition(t.clone()));
            expected_transitions.push(t);
        }
        commit(store, &batch);
        commit(store, &[]);
    }
    let numbered =
        |v: &[VmEvent]| -> Vec<(u64, VmEvent)> { (1..).zip(v.iter().cloned()).collect::<Vec<_>>() };
    let events = numbered(&expected_events);
    let transitions: Vec<(u64, Transition)> =
        (1..).zip(expected_transitions.iter().cloned()).collect();
    assert_eq!(
        all_events(store),
        events,
        "events numbered 1.. in commit order"
    );
    assert_eq!(all_transitions(store), transitions);
    let counts = store.counts().expect("counts");
    assert_eq!(counts.events, events.len() as u64);
    assert_eq!(counts.transitions, transitions.len() as u64);

    // Paging by 3 reassembles the log.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = store.events(after, 3).expect("events page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.0;
        paged.extend(page);
    }
    assert_eq!(paged, events);
    let page = store.transitions(2, 2).expect("transitions page");
    assert_eq!(page, transitions[2..4].to_vec());
    assert_eq!(store.events(4, 1).expect("page"), events[4..5].to_vec());
    assert!(store.events(0, 0).expect("limit 0").is_empty());
    let n = events.len() as u64;
    assert!(store.events(n, 10).expect("at the end").is_empty());
    assert!(store.events(u64::MAX, 10).expect("after max").is_empty());
    assert!(store
        .transitions(u64::MAX, 10)
        .expect("after max")
        .is_empty());
}

/// Times load back bit for bit.
pub fn times_round_trip<S: Store>(store: &S) {
    let times = [
        0.1 + 0.2,
        1.0 / 3.0,
        -0.0,
        5e-324,
        2.2250738585072014e-308,
        1.7976931348623157e308,
        -1e-7,
        1_722_000_000.123_456_7,
        0.000_123_456_789_012_345_67,
        9_007_199_254_740_993.0,
        std::f64::consts::PI * 1e12,
        // Values serde_json's default (best effort) float parser reads back one ulp off.
        1.0715660391465826e-75,
        -1.81996730402717e-179,
        -1.603964615428183e143,
    ];
    let mut batch = Vec::new();
    for (i, t) in times.iter().enumerate() {
        let i = i as u64;
        batch.push(Change::PutLease(LeaseRecord {
            created: *t,
            ..lease(i)
        }));
        batch.push(Change::Event(VmEvent {
            time: *t,
            ..event(i)
        }));
        batch.push(Change::PutCooling(cooling(
            "v4",
            &format!("10.1.0.{i}"),
            *t,
        )));
    }
    commit(store, &batch);
    let snapshot = load(store);
    let created: Vec<u64> = snapshot
        .leases
        .iter()
        .map(|l| l.created.to_bits())
        .collect();
    let until: Vec<u64> = snapshot.cooling.iter().map(|c| c.until.to_bits()).collect();
    let event_times: Vec<u64> = all_events(store)
        .iter()
        .map(|(_, e)| e.time.to_bits())
        .collect();
    let expected: Vec<u64> = times.iter().map(|t| t.to_bits()).collect();
    assert_eq!(created, expected, "lease times");
    assert_eq!(event_times, expected, "event times");
    // Cooling keys sort as strings: 10.1.0.10 before 10.1.0.2.
    let mut until_sorted = until;
    until_sorted.sort_unstable();
    let mut expected_sorted = expected;
    expected_sorted.sort_unstable();
    assert_eq!(until_sorted, expected_sorted, "cooling times");
}

/// A batch of 1,000 puts (and 1,000 events) is one commit; and so is deleting them.
pub fn large_batch<S: Store>(store: &S) {
    let mut batch: Vec<Change> = (0..1000).map(|i| Change::PutLease(lease(i))).collect();
    batch.extend((0..1000).map(|i| Change::Event(event(i))));
    commit(store, &batch);
    let counts = store.counts().expect("counts");
    assert_eq!((counts.leases, counts.events), (1000, 1000));
    let leases = load(store).leases;
    assert_eq!(leases.len(), 1000);
    assert_eq!(leases[999], lease(999));
    let batch: Vec<Change> = (0..1000)
        .map(|i| Change::DeleteLease { vm_id: vm_id(i) })
        .collect();
    commit(store, &batch);
    assert_eq!(store.counts().expect("counts").leases, 0);
    assert_eq!(
        store.events(999, 10).expect("events"),
        vec![(1000, event(999))]
    );
}

/// Commits from several threads: every batch lands whole, sequence numbers stay dense.
pub fn concurrent_commits<S: Store>(store: &S) {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 25;
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                for i in 0..PER_THREAD {
                    let id = t * 1000 + i;
                    commit(
                        store,
                        &[
                            Change::PutLease(lease(id)),
                            Change::Event(event(id)),
                            Change::Transition(transition(
                                id as f64,
                                "v4",
                                "10.0.0.0/26",
                                ShardState::Active,
                            )),
                        ],
                    );
                }
            });
        }
    });
    let events = all_events(store);
    let transitions = all_transitions(store);
    let n = THREADS * PER_THREAD;
    assert_eq!(
        events.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (1..=n).collect::<Vec<_>>()
    );
    // Event and transition of one batch got the same seq (each batch appends one of each).
    for ((seq, e), (tseq, t)) in events.iter().zip(&transitions) {
        assert_eq!(seq, tseq);
        assert_eq!(
            e.time, t.time,
            "event and transition {seq} come from one batch"
        );
    }
    let mut vms: Vec<String> = events.into_iter().map(|(_, e)| e.vm_id).collect();
    vms.sort();
    let leases: Vec<String> = load(store).leases.into_iter().map(|l| l.vm_id).collect();
    assert_eq!(vms, leases);
}

/// Scheduled external events: puts (create or replace by name), deletes (of missing names too),
/// order by name, atomicity with the other changes of a batch; they stay out of the snapshot.
pub fn external_events<S: Store>(store: &S) {
    let launch = external_event("launch", "s1", 100.0, 200.0);
    let sale = ExternalEventSpec {
        extra_vms: None,
        multiplier: Some(1.5),
        ..external_event("black-friday", "*", 1_700_000_000.5, 1_700_086_400.25)
    };
    // With other changes, in one batch.
    commit(
        store,
        &[
            Change::PutLease(lease(1)),
            Change::PutExternalEvent(launch.clone()),
            Change::Event(event(1)),
            Change::PutExternalEvent(sale.clone()),
        ],
    );
    assert_eq!(
        all_external(store),
        vec![sale.clone(), launch.clone()],
        "sorted by name"
    );
    let snapshot = load(store);
    assert_eq!(snapshot.leases, vec![lease(1)]);
    assert_eq!(all_events(store).len(), 1);
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.leases, counts.events),
        (1, 1),
        "events are not counted"
    );

    // Overwrite by name, delete, delete of a missing name; a put then a delete in one batch leaves
    // nothing, a delete then a put leaves the put.
    let launch2 = ExternalEventSpec {
        end: 250.0,
        multiplier: Some(2.0),
        scope: "s2".to_string(),
        ..launch.clone()
    };
    let migration = external_event("migration", "s1", 0.0, 1.0);
    commit(
        store,
        &[
            Change::PutExternalEvent(launch2.clone()),
            Change::DeleteExternalEvent {
                name: "black-friday".to_string(),
            },
            Change::DeleteExternalEvent {
                name: "never-stored".to_string(),
            },
            Change::PutExternalEvent(external_event("flash", "*", 5.0, 6.0)),
            Change::DeleteExternalEvent {
                name: "flash".to_string(),
            },
            Change::DeleteExternalEvent {
                name: "migration".to_string(),
            },
            Change::PutExternalEvent(migration.clone()),
        ],
    );
    assert_eq!(
        all_external(store),
        vec![launch2.clone(), migration.clone()]
    );
    assert_eq!(
        load(store),
        snapshot,
        "external events are not in the snapshot"
    );

    // A failed batch leaves the events as they were.
    let before = all_external(store);
    let bad_lease = LeaseRecord {
        created: f64::NAN,
        ..lease(2)
    };
    let err = store
        .commit(&[
            Change::PutExternalEvent(external_event("new", "*", 1.0, 2.0)),
            Change::DeleteExternalEvent {
                name: "launch".to_string(),
            },
            Change::PutLease(bad_lease),
        ])
        .expect_err("a batch holding a NaN time must be refused");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(
        all_external(store),
        before,
        "nothing of a failed batch is visible"
    );

    // Every number of an event is checked; the other changes of the batch are not applied.
    let non_finite = [
        ExternalEventSpec {
            start: f64::NEG_INFINITY,
            ..launch.clone()
        },
        ExternalEventSpec {
            end: f64::INFINITY,
            ..launch.clone()
        },
        ExternalEventSpec {
            extra_vms: Some(f64::NAN),
            ..launch.clone()
        },
        ExternalEventSpec {
            multiplier: Some(f64::INFINITY),
            ..launch.clone()
        },
    ];
    for bad in non_finite {
        let batch = [
            Change::DeleteExternalEvent {
                name: "migration".to_string(),
            },
            Change::PutLease(lease(3)),
            Change::PutExternalEvent(bad),
        ];
        let err = store
            .commit(&batch)
            .expect_err("non-finite number accepted");
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("launch"), "names the event: {err}");
    }
    assert_eq!(all_external(store), before);
    assert_eq!(load(store), snapshot);

    // Numbers load back bit for bit.
    let precise = ExternalEventSpec {
        start: 0.1 + 0.2,
        end: 1_722_000_000.123_456_7,
        extra_vms: Some(1.0 / 3.0),
        multiplier: Some(1.0715660391465826e-75),
        ..launch.clone()
    };
    commit(store, &[Change::PutExternalEvent(precise.clone())]);
    let got = all_external(store);
    let stored = got.iter().find(|e| e.name == "launch").expect("launch");
    assert_eq!(stored.start.to_bits(), precise.start.to_bits());
    assert_eq!(stored.end.to_bits(), precise.end.to_bits());
    assert_eq!(
        stored.extra_vms.map(f64::to_bits),
        precise.extra_vms.map(f64::to_bits)
    );
    assert_eq!(
        stored.multiplier.map(f64::to_bits),
        precise.multiplier.map(f64::to_bits)
    );
}

/// Scheduled external events survive a reopen and can still be changed after it.
pub fn external_events_survive_reopen<S: Store>(store: S, reopen: &mut impl FnMut(S) -> S) {
    let a = external_event("a", "s1", 10.0, 20.0);
    let b = ExternalEventSpec {
        multiplier: Some(3.0),
        ..external_event("b", "*", 15.0, 30.0)
    };
    commit(
        &store,
        &[
            Change::PutPool(pool("v4", "10.0.0.0/16")),
            Change::PutExternalEvent(b.clone()),
            Change::PutExternalEvent(a.clone()),
        ],
    );
    let store = reopen(store);
    assert_eq!(
        all_external(&store),
        vec![a.clone(), b.clone()],
        "after reopen"
    );
    assert_eq!(load(&store).pools.len(), 1);
    commit(
        &store,
        &[Change::DeleteExternalEvent {
            name: "a".to_string(),
        }],
    );
    let store = reopen(store);
    assert_eq!(all_external(&store), vec![b], "a delete survives a reopen");
}

/// Application profiles and routers: puts (create or replace by name), deletes (of missing names
/// too), order by name, changes applied in order, atomicity with the other changes of a batch;
/// they stay out of the snapshot and apart from each other and from the external events.
pub fn profiles_and_routers<S: Store>(store: &S) {
    let web = profile("web");
    let db = Profile {
        vcpus: 16,
        memory_gib: 128.5,
        network_mbps: 0.0,
        description: None,
        ..profile("db")
    };
    let edge = router("edge");
    let core = RouterSpec {
        flavor: Flavor::Bird,
        neighbors: Vec::new(),
        subdivisions: Vec::new(),
        config_path: None,
        reload_command: None,
        ..router("core")
    };
    // With other changes, in one batch; a profile and a router of the same name are apart.
    commit(
        store,
        &[
            Change::PutLease(lease(1)),
            Change::PutProfile(web.clone()),
            Change::PutRouter(edge.clone()),
            Change::Event(event(1)),
            Change::PutProfile(db.clone()),
            Change::PutRouter(core.clone()),
            Change::PutProfile(profile("edge")),
            Change::PutExternalEvent(external_event("web", "*", 1.0, 2.0)),
        ],
    );
    assert_eq!(
        all_profiles(store),
        vec![db.clone(), profile("edge"), web.clone()],
        "profiles sorted by name"
    );
    assert_eq!(
        all_routers(store),
        vec![core.clone(), edge.clone()],
        "routers sorted by name"
    );
    let snapshot = load(store);
    assert_eq!(snapshot.leases, vec![lease(1)]);
    assert!(snapshot.pools.is_empty() && snapshot.subdivisions.is_empty());
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.leases, counts.events),
        (1, 1),
        "profiles and routers are not counted"
    );

    // Overwrite by name, delete, delete of a missing name; a put then a delete in one batch leaves
    // nothing, a delete then a put leaves the put; deleting a router leaves the profile of that
    // name (and the external event) alone.
    let web2 = Profile {
        vcpus: 4,
        network_mbps: 2500.0,
        description: Some("web, bigger".to_string()),
        ..web.clone()
    };
    let edge2 = RouterSpec {
        asn: 65000,
        subdivisions: vec!["s1".to_string(), "s2".to_string()],
        reload_command: None,
        ..edge.clone()
    };
    commit(
        store,
        &[
            Change::PutProfile(web2.clone()),
            Change::PutRouter(edge2.clone()),
            Change::DeleteProfile {
                name: "db".to_string(),
            },
            Change::DeleteRouter {
                name: "core".to_string(),
            },
            Change::DeleteProfile {
                name: "never-stored".to_string(),
            },
            Change::DeleteRouter {
                name: "never-stored".to_string(),
            },
            Change::PutProfile(profile("flash")),
            Change::DeleteProfile {
                name: "flash".to_string(),
            },
            Change::PutRouter(router("flash")),
            Change::DeleteRouter {
                name: "flash".to_string(),
            },
            Change::DeleteProfile {
                name: "batch".to_string(),
            },
            Change::PutProfile(profile("batch")),
            Change::DeleteRouter {
                name: "batch".to_string(),
            },
            Change::PutRouter(router("batch")),
            Change::DeleteRouter {
                name: "web".to_string(),
            },
        ],
    );
    assert_eq!(
        all_profiles(store),
        vec![profile("batch"), profile("edge"), web2.clone()]
    );
    assert_eq!(all_routers(store), vec![router("batch"), edge2.clone()]);
    assert_eq!(
        all_external(store),
        vec![external_event("web", "*", 1.0, 2.0)]
    );
    assert_eq!(
        load(store),
        snapshot,
        "profiles and routers are not in the snapshot"
    );

    // A failed batch leaves them as they were.
    let (profiles_before, routers_before) = (all_profiles(store), all_routers(store));
    let bad_lease = LeaseRecord {
        created: f64::NAN,
        ..lease(2)
    };
    let err = store
        .commit(&[
            Change::PutProfile(profile("new")),
            Change::DeleteProfile {
                name: "web".to_string(),
            },
            Change::PutRouter(router("new")),
            Change::DeleteRouter {
                name: "edge".to_string(),
            },
            Change::PutLease(bad_lease),
        ])
        .expect_err("a batch holding a NaN time must be refused");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert_eq!(
        all_profiles(store),
        profiles_before,
        "nothing of a failed batch is visible"
    );
    assert_eq!(all_routers(store), routers_before);

    // Every number of a profile is checked; the other changes of the batch are not applied.
    let non_finite = [
        Profile {
            memory_gib: f64::NAN,
            ..web.clone()
        },
        Profile {
            memory_gib: f64::INFINITY,
            ..web.clone()
        },
        Profile {
            network_mbps: f64::NEG_INFINITY,
            ..web.clone()
        },
    ];
    for bad in non_finite {
        let batch = [
            Change::DeleteRouter {
                name: "edge".to_string(),
            },
            Change::PutLease(lease(3)),
            Change::PutProfile(bad),
        ];
        let err = store
            .commit(&batch)
            .expect_err("non-finite number accepted");
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("profiles record web"), "{message}");
        assert!(message.contains("must be finite"), "{message}");
    }
    // A configuration path JSON cannot hold is refused by every backend alike.
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let bad = RouterSpec {
            config_path: Some(PathBuf::from(std::ffi::OsStr::from_bytes(
                b"/etc/\xff.conf",
            ))),
            ..router("edge")
        };
        let err = store
            .commit(&[Change::PutProfile(profile("new")), Change::PutRouter(bad)])
            .expect_err("a non-UTF-8 path accepted");
        assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
        assert!(err.to_string().contains("routers record edge"), "{err}");
    }
    assert_eq!(all_profiles(store), profiles_before);
    assert_eq!(all_routers(store), routers_before);
    assert_eq!(load(store), snapshot);

    // Numbers load back bit for bit, and every field of a router comes back.
    let precise = Profile {
        memory_gib: 0.1 + 0.2,
        network_mbps: 1.0715660391465826e-75,
        ..web.clone()
    };
    let full = RouterSpec {
        asn: u32::MAX,
        neighbors: vec![
            Neighbor {
                address: "fe80::1".parse().expect("address"),
                asn: 1,
            },
            Neighbor {
                address: "198.51.100.7".parse().expect("address"),
                asn: u32::MAX,
            },
        ],
        config_path: Some(PathBuf::from("relative/bird \"quoted\".conf")),
        reload_command: Some("birdc configure && echo 'done'".to_string()),
        flavor: Flavor::Bird,
        ..edge.clone()
    };
    commit(
        store,
        &[
            Change::PutProfile(precise.clone()),
            Change::PutRouter(full.clone()),
        ],
    );
    let got = all_profiles(store);
    let stored = got.iter().find(|p| p.name == "web").expect("web");
    assert_eq!(stored.memory_gib.to_bits(), precise.memory_gib.to_bits());
    assert_eq!(
        stored.network_mbps.to_bits(),
        precise.network_mbps.to_bits()
    );
    assert_eq!(
        all_routers(store).into_iter().find(|r| r.name == "edge"),
        Some(full)
    );
}

/// Application profiles and routers survive a reopen and can still be changed after it.
pub fn profiles_and_routers_survive_reopen<S: Store>(store: S, reopen: &mut impl FnMut(S) -> S) {
    commit(
        &store,
        &[
            Change::PutPool(pool("v4", "10.0.0.0/16")),
            Change::PutProfile(profile("b")),
            Change::PutProfile(profile("a")),
            Change::PutRouter(router("r2")),
            Change::PutRouter(router("r1")),
        ],
    );
    let store = reopen(store);
    assert_eq!(
        all_profiles(&store),
        vec![profile("a"), profile("b")],
        "profiles after reopen"
    );
    assert_eq!(
        all_routers(&store),
        vec![router("r1"), router("r2")],
        "routers after reopen"
    );
    assert_eq!(load(&store).pools.len(), 1);
    let b2 = Profile {
        vcpus: 8,
        ..profile("b")
    };
    commit(
        &store,
        &[
            Change::DeleteProfile {
                name: "a".to_string(),
            },
            Change::PutProfile(b2.clone()),
            Change::DeleteRouter {
                name: "r2".to_string(),
            },
        ],
    );
    let store = reopen(store);
    assert_eq!(all_profiles(&store), vec![b2], "changes survive a reopen");
    assert_eq!(all_routers(&store), vec![router("r1")]);
}

/// Reopening preserves everything, and the logs continue their numbering.
pub fn reopen_preserves_everything<S: Store>(store: S, reopen: &mut impl FnMut(S) -> S) {
    commit(
        &store,
        &[
            Change::PutPool(pool("v4", "10.0.0.0/16")),
            Change::PutSubdivision(subdivision("s1")),
            Change::PutHome(home("s1", "v4", "10.0.0.0/24")),
            Change::PutShard(shard("v4", "10.0.0.0/26", "s1", ShardState::Active)),
            Change::PutLease(lease(1)),
            Change::PutLease(lease(2)),
            Change::PutCooling(cooling("v4", "10.0.0.7", 31.5)),
            Change::Event(event(1)),
            Change::Event(event(2)),
            Change::Transition(transition(0.5, "v4", "10.0.0.0/26", ShardState::Active)),
        ],
    );
    commit(&store, &[Change::DeleteLease { vm_id: vm_id(2) }]);
    let snapshot = load(&store);
    let events = all_events(&store);
    let transitions = all_transitions(&store);
    let counts = store.counts().expect("counts");

    let store = reopen(store);
    assert_eq!(load(&store), snapshot, "load after reopen");
    assert_eq!(all_events(&store), events, "events after reopen");
    assert_eq!(
        all_transitions(&store),
        transitions,
        "transitions after reopen"
    );
    assert_eq!(store.counts().expect("counts"), counts);

    commit(
        &store,
        &[
            Change::Event(event(3)),
            Change::Transition(transition(9.0, "v4", "10.0.0.0/26", ShardState::Draining)),
        ],
    );
    let store = reopen(store);
    assert_eq!(
        store.events(2, 10).expect("events"),
        vec![(3, event(3))],
        "numbering continues after a reopen"
    );
    assert_eq!(store.transitions(0, 10).expect("transitions").len(), 2);
    assert_eq!(store.transitions(1, 10).expect("transitions")[0].0, 2);
}

/// A pool handing out shards of several sizes: the allocator's journal of claims of a default
/// /26, a /28 and a /24 (with leases in the /28) is stored, and after a reopen the loaded records
/// rebuild the same allocator state, shard sizes included.
pub fn shards_of_several_sizes_survive_reopen<S: Store>(store: S, reopen: &mut impl FnMut(S) -> S) {
    let sized = PoolSpec {
        min_shard_prefix_len: Some(24),
        max_shard_prefix_len: Some(28),
        ..pool("v4", "10.0.0.0/16")
    };
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(sized.clone())
        .expect("a pool of /24 to /28 shards");
    ipam.add_subdivision(subdivision("s1"))
        .expect("subdivision");
    let mut claimed = Vec::new();
    for len in [None, Some(28), Some(24)] {
        let r = ipam
            .claim_shard_sized("s1", None, len, Reason::Forecast, 1.0)
            .expect("claim");
        claimed.push(r.prefix);
    }
    assert_eq!(
        claimed,
        [net("10.0.0.0/26"), net("10.0.0.64/28"), net("10.0.1.0/24")],
        "placement of the claims"
    );
    ipam.activate_shard(&claimed[1], Reason::Forecast, 2.0)
        .expect("activate");
    for i in 0..3 {
        let a = ipam
            .allocate("s1", &vm_id(i), None, None, 3.0)
            .expect("allocate");
        assert_eq!(a.shard, claimed[1], "leases go to the active /28");
    }
    ipam.release(&vm_id(0), 4.0).expect("release");
    commit(&store, &ipam.take_journal());
    let expected = ipam.snapshot();
    assert_eq!(load(&store), expected, "load before reopen");

    let store = reopen(store);
    let loaded = load(&store);
    assert_eq!(loaded, expected, "load after reopen");
    assert_eq!(
        loaded.pools,
        vec![sized],
        "the pool keeps its shard size range"
    );
    let lens: Vec<u8> = loaded
        .shards
        .iter()
        .map(|s| s.prefix.prefix_len())
        .collect();
    assert_eq!(lens, [26, 28, 24], "shard sizes after reopen");
    let rebuilt = Ipam::from_snapshot(Settings::default(), &loaded).expect("rebuild");
    assert_eq!(rebuilt.snapshot(), expected, "the rebuilt allocator state");
}
