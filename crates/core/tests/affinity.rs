//! Shard affinity: daemons sharing a store each allocate only in their own shards, and write only
//! their own shards' records (`Ipam::set_node`).

mod common;

use std::collections::BTreeMap;
use std::net::IpAddr;

use cidrcast_core::model::{Change, Reason, ShardState, Snapshot};
use cidrcast_core::{AllocPath, Ipam, Settings};
use common::{pool, sub, Applied};
use ipnet::IpNet;
use proptest::prelude::*;

const COOLDOWN: f64 = 30.0;

fn settings() -> Settings {
    Settings {
        cooldown_s: COOLDOWN,
    }
}

/// A /24 pool of /28 shards and subdivisions `s0`, `s1`, as committed to a store.
fn shared_store() -> Applied {
    let mut ipam = Ipam::new(settings());
    ipam.add_pool(pool("v4", "10.0.0.0/24", 28)).unwrap();
    ipam.add_subdivision(sub("s0")).unwrap();
    ipam.add_subdivision(sub("s1")).unwrap();
    let mut store = Applied::default();
    store.apply(ipam.take_journal());
    store
}

/// A daemon's view of the store: the allocator loaded from it, named `node`.
fn daemon(store: &Applied, node: &str) -> Ipam {
    let mut ipam = Ipam::from_snapshot(settings(), &store.snapshot()).unwrap();
    ipam.set_node(Some(node));
    ipam
}

fn affinity_of(snap: &Snapshot, prefix: IpNet) -> Option<String> {
    snap.shards
        .iter()
        .find(|s| s.prefix == prefix)
        .and_then(|s| s.affinity.clone())
}

fn shard_puts(journal: &[Change]) -> Vec<(IpNet, Option<String>)> {
    journal
        .iter()
        .filter_map(|c| match c {
            Change::PutShard(s) => Some((s.prefix, s.affinity.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_daemon_claims_with_its_affinity_and_leaves_other_daemons_shards_alone() {
    let mut store = shared_store();
    let mut a = daemon(&store, "a");
    let first = a.allocate("s0", "vm-a1", None, None, 0.0).unwrap();
    assert_eq!(first.path, AllocPath::ClaimedShard);
    let journal = a.take_journal();
    // The claim (reserved) and the activation, both of one key; the last carries the affinity.
    assert_eq!(
        shard_puts(&journal).last(),
        Some(&(first.shard, Some("a".to_string())))
    );
    store.apply(journal);
    assert_eq!(
        affinity_of(&store.snapshot(), first.shard).as_deref(),
        Some("a")
    );

    // b sees a's shard with 15 free addresses, and claims its own all the same.
    let mut b = daemon(&store, "b");
    let other = b.allocate("s0", "vm-b1", None, None, 1.0).unwrap();
    assert_eq!(other.path, AllocPath::ClaimedShard);
    assert_ne!(other.shard, first.shard);
    let journal = b.take_journal();
    assert!(journal.iter().all(|c| match c {
        Change::PutShard(s) => s.prefix == other.shard,
        Change::PutLease(l) => other.shard.contains(&l.address),
        _ => true,
    }));
    store.apply(journal);
    // Its next allocation takes its own shard again; a's takes a's.
    let b2 = b.allocate("s0", "vm-b2", None, None, 2.0).unwrap();
    assert_eq!((b2.path, b2.shard), (AllocPath::Ready, other.shard));
    let a2 = a.allocate("s0", "vm-a2", None, None, 2.0).unwrap();
    assert_eq!((a2.path, a2.shard), (AllocPath::Ready, first.shard));

    // Alone on the store, every shard is usable and no affinity is written.
    let mut alone = Ipam::from_snapshot(settings(), &store.snapshot()).unwrap();
    let x = alone.allocate("s0", "vm-x", None, None, 3.0).unwrap();
    assert_eq!((x.path, x.shard), (AllocPath::Ready, first.shard));
    assert!(shard_puts(&alone.take_journal()).is_empty());
}

#[test]
fn shards_without_affinity_are_adopted_active_first_then_reserved() {
    let mut store = shared_store();
    // The reconciler's plan: one active and one reserved shard without affinity.
    let mut leader = daemon(&store, "leader");
    let active = leader
        .claim_shard("s0", None, Reason::Forecast, 0.0)
        .unwrap()
        .prefix;
    leader
        .activate_shard(&active, Reason::Forecast, 0.0)
        .unwrap();
    let reserved = leader
        .claim_shard("s0", None, Reason::Forecast, 0.0)
        .unwrap()
        .prefix;
    let journal = leader.take_journal();
    assert!(shard_puts(&journal).iter().all(|(_, a)| a.is_none()));
    store.apply(journal);

    let mut a = daemon(&store, "a");
    let got = a.allocate("s0", "vm-1", None, None, 1.0).unwrap();
    assert_eq!((got.path, got.shard), (AllocPath::Ready, active));
    let journal = a.take_journal();
    // Adopting writes the record with the affinity, without a transition.
    assert_eq!(shard_puts(&journal), vec![(active, Some("a".to_string()))]);
    assert!(!journal.iter().any(|c| matches!(c, Change::Transition(_))));
    store.apply(journal);

    // b may not use a's shard: it activates the reserved one and adopts it.
    let mut b = daemon(&store, "b");
    let got = b.allocate("s0", "vm-2", None, None, 2.0).unwrap();
    assert_eq!(
        (got.path, got.shard),
        (AllocPath::ActivatedReserved, reserved)
    );
    let journal = b.take_journal();
    assert_eq!(
        shard_puts(&journal),
        vec![(reserved, Some("b".to_string()))]
    );
    store.apply(journal);
    let snap = store.snapshot();
    let state = |p: IpNet| snap.shards.iter().find(|s| s.prefix == p).unwrap().state;
    assert_eq!(state(reserved), ShardState::Active);
    assert_eq!(affinity_of(&snap, reserved).as_deref(), Some("b"));
}

#[test]
fn cooldowns_in_another_daemons_shard_end_without_a_write() {
    let mut store = shared_store();
    let mut b = daemon(&store, "b");
    let shard_b = b.allocate("s0", "vm-b", None, None, 0.0).unwrap().shard;
    b.release("vm-b", 1.0).unwrap();
    store.apply(b.take_journal());
    let mut a = daemon(&store, "a");
    let shard_a = a.allocate("s0", "vm-a", None, None, 2.0).unwrap().shard;
    a.release("vm-a", 3.0).unwrap();
    let journal = a.take_journal();
    store.apply(journal);
    assert_ne!(shard_a, shard_b);
    // Both cooldowns are over at 40: a ends only its own in the store.
    a.expire(40.0);
    let journal = a.take_journal();
    let ended: Vec<IpAddr> = journal
        .iter()
        .filter_map(|c| match c {
            Change::DeleteCooling { address, .. } => Some(*address),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "{journal:?}");
    assert!(shard_a.contains(&ended[0]));
    store.apply(journal);
    assert_eq!(store.cooling.len(), 1, "b's cooling address is b's to end");
    // b ends its own.
    let mut b = daemon(&store, "b");
    b.expire(40.0);
    store.apply(b.take_journal());
    assert!(store.cooling.is_empty());
}

#[test]
fn affinities_of_gone_daemons_are_cleared_and_journaled() {
    let mut store = shared_store();
    for (node, vm) in [("a", "vm-a"), ("b", "vm-b"), ("c", "vm-c")] {
        let mut d = daemon(&store, node);
        d.allocate("s1", vm, None, None, 0.0).unwrap();
        store.apply(d.take_journal());
    }
    let mut leader = daemon(&store, "a");
    assert_eq!(
        leader.affinities().into_iter().collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let cleared = leader.clear_affinities(|node| node == "a" || node == "c");
    assert_eq!(cleared, 1);
    let journal = leader.take_journal();
    assert_eq!(journal.len(), 1);
    assert!(matches!(&journal[0], Change::PutShard(s) if s.affinity.is_none()));
    store.apply(journal);
    assert_eq!(
        daemon(&store, "x")
            .affinities()
            .into_iter()
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    // The orphaned shard, with b's lease still in it, is adopted by the next daemon that needs
    // room in s1.
    let mut c = daemon(&store, "c");
    for i in 0..15 {
        c.allocate("s1", &format!("fill-{i}"), None, None, 1.0)
            .unwrap();
    }
    store.apply(c.take_journal());
    let mut d = daemon(&store, "d");
    let got = d.allocate("s1", "vm-d", None, None, 2.0).unwrap();
    assert_eq!(got.path, AllocPath::Ready);
    let snap = store.snapshot();
    let b_lease = snap.leases.iter().find(|l| l.vm_id == "vm-b").unwrap();
    assert_eq!(got.shard, b_lease.shard);
}

#[derive(Clone, Debug)]
enum Op {
    Allocate { daemon: usize, sub: usize },
    Release { daemon: usize, pick: usize },
    Advance { secs: u8 },
    Reload { daemon: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..2usize).prop_map(|(daemon, sub)| Op::Allocate { daemon, sub }),
        4 => (0..2usize, any::<usize>()).prop_map(|(daemon, pick)| Op::Release { daemon, pick }),
        2 => (0..40u8).prop_map(|secs| Op::Advance { secs }),
        2 => (0..2usize).prop_map(|daemon| Op::Reload { daemon }),
    ]
}

/// Whether a batch changes where shards and homes are (what etcd guards with the per-pool
/// placement key) or a shard record (guarded by its own key).
fn places(journal: &[Change]) -> bool {
    journal.iter().any(|c| {
        matches!(
            c,
            Change::PutShard(_)
                | Change::DeleteShard { .. }
                | Change::PutHome(_)
                | Change::DeleteHome { .. }
        )
    })
}

/// The addresses whose records a batch writes (leases, their index, cooling), given the store
/// before it.
fn addresses(journal: &[Change], before: &Snapshot) -> Vec<IpAddr> {
    journal
        .iter()
        .filter_map(|c| match c {
            Change::PutLease(l) => Some(l.address),
            Change::DeleteLease { vm_id } => before
                .leases
                .iter()
                .find(|l| &l.vm_id == vm_id)
                .map(|l| l.address),
            Change::PutCooling(r) => Some(r.address),
            Change::DeleteCooling { address, .. } => Some(*address),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Two daemons on one store, each with views of its own age. A batch that places shards or
    /// writes a shard record commits only from a current view (etcd's compare-and-swap; a stale
    /// one is reloaded and retried, as the engine does). Every other batch commits whatever the
    /// view's age, and then writes only addresses of the daemon's own shards: no two daemons
    /// ever write the same lease or cooling record, and the store stays consistent.
    #[test]
    fn daemons_write_only_their_own_shards(ops in proptest::collection::vec(op(), 1..150)) {
        let names = ["a", "b"];
        let mut store = shared_store();
        // The store's placement version, and the version each daemon last loaded.
        let mut version = 0u64;
        let mut daemons: Vec<(Ipam, u64)> = names.iter().map(|n| (daemon(&store, n), 0)).collect();
        let mut held: [Vec<String>; 2] = [Vec::new(), Vec::new()];
        let mut next_vm = 0;
        let mut now = 0.0;
        for (step, op) in ops.into_iter().enumerate() {
            let d = match op {
                Op::Allocate { daemon, .. } | Op::Release { daemon, .. } | Op::Reload { daemon } => daemon,
                Op::Advance { secs } => {
                    now += f64::from(secs);
                    continue;
                }
            };
            if let Op::Reload { .. } = op {
                daemons[d] = (daemon(&store, names[d]), version);
                continue;
            }
            // Try from the daemon's view; a placing batch from a stale view is refused, the
            // daemon reloads and tries once more.
            let mut committed = None;
            for _attempt in 0..2 {
                let (ipam, seen) = &mut daemons[d];
                ipam.expire(now);
                let result = match op {
                    Op::Allocate { sub, .. } => {
                        let vm = format!("{}-{next_vm}", names[d]);
                        ipam.allocate(["s0", "s1"][sub], &vm, None, None, now).map(|_| Some(vm))
                    }
                    Op::Release { pick, .. } if !held[d].is_empty() => {
                        let vm = held[d][pick % held[d].len()].clone();
                        ipam.release(&vm, now).map(|_| None)
                    }
                    _ => Ok(None),
                };
                let journal = ipam.take_journal();
                if places(&journal) && *seen != version {
                    daemons[d] = (daemon(&store, names[d]), version);
                    continue;
                }
                committed = Some((result, journal));
                break;
            }
            let Some((result, journal)) = committed else { continue };
            let before = store.snapshot();
            if places(&journal) {
                version += 1;
                daemons[d].1 = version;
            } else {
                // Written without any check: only addresses of the daemon's own shards.
                for address in addresses(&journal, &before) {
                    let shard = before.shards.iter().find(|s| s.prefix.contains(&address));
                    let owner = shard.and_then(|s| s.affinity.as_deref());
                    prop_assert_eq!(
                        owner, Some(names[d]),
                        "step {}: {} wrote {} outside its shards", step, names[d], address
                    );
                }
            }
            store.apply(journal);
            match result {
                Ok(Some(vm)) => {
                    held[d].push(vm);
                    next_vm += 1;
                }
                Ok(None) => {
                    if let Op::Release { pick, .. } = op {
                        if !held[d].is_empty() {
                            let i = pick % held[d].len();
                            held[d].swap_remove(i);
                        }
                    }
                }
                Err(_) => {}
            }
            // The store is consistent: it loads, and no address is leased twice.
            let snap = store.snapshot();
            let loaded = Ipam::from_snapshot(settings(), &snap)
                .map_err(|e| TestCaseError::fail(format!("step {step}: store inconsistent: {e}")))?;
            loaded.check_invariants().map_err(|e| TestCaseError::fail(format!("step {step}: {e}")))?;
            let mut by_address: BTreeMap<IpAddr, &str> = BTreeMap::new();
            for l in &snap.leases {
                prop_assert!(by_address.insert(l.address, &l.vm_id).is_none(), "{} leased twice", l.address);
            }
        }
    }
}
