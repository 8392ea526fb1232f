//! Property tests: random states (built by random allocator operations, IPv4 and IPv6, nested
//! subdivisions, shards of several sizes), random demands and configs. For every plan:
//! * planning is deterministic (same inputs, same plan);
//! * a release never targets a shard with leases, a drain only an active shard (one with leases
//!   only when `drain_leased`), and only demanded subdivisions and pools are touched;
//! * apply succeeds, keeps every invariant of the allocator and every lease as it was;
//! * the demands are covered unless a shortfall says by how much they are not, and the ready
//!   addresses reach the prefetch target when activation is immediate;
//! * planning again on the result changes nothing (a fixed point: no flapping).

use std::collections::{BTreeMap, BTreeSet};

use cidrcast_core::model::{PoolSpec, Reason, ShardState, SubdivisionSpec};
use cidrcast_core::{Ipam, Settings};
use cidrcast_planner::{apply, plan, ActionKind, Demand, PlannerConfig};
use ipnet::IpNet;
use proptest::prelude::*;

const SUBS: [(&str, Option<&str>); 5] = [
    ("a", None),
    ("a.x", Some("a")),
    ("a.y", Some("a")),
    ("b", None),
    ("c", None),
];
const POOLS: [&str; 2] = ["p4", "p6"];
/// Default shard prefix length of each pool; sizes one shorter and one longer are allowed too.
const DEFAULT_LEN: [u8; 2] = [26, 124];

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        sub: usize,
        vm: usize,
        pool: Option<usize>,
    },
    Release {
        vm: usize,
    },
    Claim {
        sub: usize,
        pool: usize,
        len_delta: i8,
    },
    Activate {
        pick: usize,
    },
    Drain {
        pick: usize,
    },
    ReleaseShard {
        pick: usize,
    },
    Advance {
        secs: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..5usize, 0..80usize, proptest::option::of(0..2usize))
            .prop_map(|(sub, vm, pool)| Op::Allocate { sub, vm, pool }),
        6 => (0..80usize).prop_map(|vm| Op::Release { vm }),
        2 => (0..5usize, 0..2usize, -1..=1i8)
            .prop_map(|(sub, pool, len_delta)| Op::Claim { sub, pool, len_delta }),
        1 => any::<usize>().prop_map(|pick| Op::Activate { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Drain { pick }),
        1 => any::<usize>().prop_map(|pick| Op::ReleaseShard { pick }),
        2 => (0..45u8).prop_map(|secs| Op::Advance { secs }),
    ]
}

#[derive(Clone, Debug)]
struct DemandSpec {
    sub: usize,
    pool: usize,
    lead: f64,
    long: f64,
    score: u8,
    len_delta: Option<i8>,
}

fn demand() -> impl Strategy<Value = DemandSpec> {
    (
        0..5usize,
        0..2usize,
        prop_oneof![Just(0.0), 0.0..40.0f64, 0.0..400.0f64],
        prop_oneof![Just(0.0), 0.0..60.0f64, 0.0..500.0f64],
        0..4u8,
        proptest::option::of(-1..=1i8),
    )
        .prop_map(|(sub, pool, lead, long, score, len_delta)| DemandSpec {
            sub,
            pool,
            lead,
            long,
            score,
            len_delta,
        })
}

fn config() -> impl Strategy<Value = PlannerConfig> {
    (
        prop_oneof![Just(0.0), Just(0.1), Just(0.25), Just(0.5)],
        prop_oneof![Just(0u64), 0..20u64],
        prop_oneof![Just(0.0), Just(30.0)],
        any::<bool>(),
    )
        .prop_map(
            |(release_margin, ready_headroom, activate_after_s, drain_leased)| PlannerConfig {
                release_margin,
                ready_headroom,
                activate_after_s,
                drain_leased,
            },
        )
}

#[derive(Clone, Debug)]
struct Round {
    ops: Vec<Op>,
    demands: Vec<DemandSpec>,
    cfg: PlannerConfig,
}

fn round() -> impl Strategy<Value = Round> {
    (
        proptest::collection::vec(op(), 0..40),
        proptest::collection::vec(demand(), 0..6),
        config(),
    )
        .prop_map(|(ops, demands, cfg)| Round { ops, demands, cfg })
}

fn build(rf: u32, rl: u32, homes: &[u32]) -> Ipam {
    let mut ipam = Ipam::new(Settings { cooldown_s: 30.0 });
    let mut p4 = PoolSpec::new("p4", "10.0.0.0/22".parse().unwrap(), 26);
    p4.min_shard_prefix_len = Some(25);
    p4.max_shard_prefix_len = Some(27);
    p4.reserve_first = rf;
    p4.reserve_last = rl;
    ipam.add_pool(p4).unwrap();
    let mut p6 = PoolSpec::new("p6", "fd00::/118".parse().unwrap(), 124);
    p6.min_shard_prefix_len = Some(123);
    p6.max_shard_prefix_len = Some(125);
    p6.reserve_first = rf.min(1);
    ipam.add_pool(p6).unwrap();
    for (i, (name, parent)) in SUBS.iter().enumerate() {
        let mut s = SubdivisionSpec::new(name);
        s.parent = parent.map(str::to_string);
        s.home_shards = Some(homes[i]);
        if *name == "c" {
            s.max_shards = Some(3);
        }
        ipam.add_subdivision(s).unwrap();
    }
    ipam
}

fn run_op(ipam: &mut Ipam, op: &Op, now: &mut f64) {
    let shards = ipam.shards(None).unwrap();
    let pick = |p: usize| (!shards.is_empty()).then(|| shards[p % shards.len()].record.prefix);
    // Refusals are part of the game: they change nothing.
    let _ = match op {
        Op::Allocate { sub, vm, pool } => ipam
            .allocate(
                SUBS[*sub].0,
                &format!("vm{vm}"),
                None,
                pool.map(|p| POOLS[p]),
                *now,
            )
            .map(|_| ()),
        Op::Release { vm } => ipam.release(&format!("vm{vm}"), *now).map(|_| ()),
        Op::Claim {
            sub,
            pool,
            len_delta,
        } => ipam
            .claim_shard_sized(
                SUBS[*sub].0,
                Some(POOLS[*pool]),
                Some((DEFAULT_LEN[*pool] as i8 + len_delta) as u8),
                Reason::Operator,
                *now,
            )
            .map(|_| ()),
        Op::Activate { pick: p } => match pick(*p) {
            Some(prefix) => ipam
                .activate_shard(&prefix, Reason::Operator, *now)
                .map(|_| ()),
            None => Ok(()),
        },
        Op::Drain { pick: p } => match pick(*p) {
            Some(prefix) => ipam
                .drain_shard(&prefix, Reason::Operator, *now)
                .map(|_| ()),
            None => Ok(()),
        },
        Op::ReleaseShard { pick: p } => match pick(*p) {
            Some(prefix) => ipam.release_shard(&prefix, Reason::Operator, *now),
            None => Ok(()),
        },
        Op::Advance { secs } => {
            *now += f64::from(*secs);
            ipam.expire(*now);
            Ok(())
        }
    };
}

fn demands_of(specs: &[DemandSpec]) -> Vec<Demand> {
    let mut seen = BTreeSet::new();
    specs
        .iter()
        .filter(|d| seen.insert((d.sub, d.pool)))
        .map(|d| Demand {
            subdivision: SUBS[d.sub].0.to_string(),
            pool: Some(POOLS[d.pool].to_string()),
            upper_lead: d.lead,
            upper_long: d.long,
            score: f64::from(d.score),
            prefix_len: d.len_delta.map(|x| (DEFAULT_LEN[d.pool] as i8 + x) as u8),
        })
        .collect()
}

type ShardKey = (String, IpNet);

fn shard_map(ipam: &Ipam) -> BTreeMap<ShardKey, (String, ShardState, u64, u64)> {
    ipam.shards(None)
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                (s.record.pool.clone(), s.record.prefix),
                (
                    s.record.subdivision,
                    s.record.state,
                    s.leases,
                    s.usable as u64,
                ),
            )
        })
        .collect()
}

fn check_round(ipam: &mut Ipam, r: &Round, now: f64) -> Result<(), TestCaseError> {
    let demands = demands_of(&r.demands);
    let cfg = &r.cfg;
    let p = plan(ipam, &demands, cfg, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&p, &plan(&ipam.clone(), &demands, cfg, now).unwrap());

    // Replays the actions on the shard map: each must fit the shard as it is at that point.
    let mut cur = shard_map(ipam);
    let demanded: BTreeSet<(String, String)> = demands
        .iter()
        .map(|d| (d.subdivision.clone(), d.pool.clone().unwrap()))
        .collect();
    for a in &p.actions {
        prop_assert!(
            demanded.contains(&(a.subdivision.clone(), a.pool.clone())),
            "{:?} touches a subdivision/pool without a demand",
            a
        );
        let key = (a.pool.clone(), a.prefix);
        if a.kind == ActionKind::Reserve {
            prop_assert!(!cur.contains_key(&key), "reserved a held shard: {:?}", a);
            cur.insert(key, (a.subdivision.clone(), ShardState::Reserved, 0, 0));
            continue;
        }
        let Some((sub, state, leases, _)) = cur.get_mut(&key) else {
            return Err(TestCaseError::fail(format!("{a:?}: no such shard")));
        };
        prop_assert_eq!(&*sub, &a.subdivision);
        prop_assert_eq!(*leases, a.leases, "{:?}", a);
        match a.kind {
            ActionKind::Release => {
                prop_assert_eq!(*leases, 0, "released with leases: {:?}", a);
                cur.remove(&key);
            }
            ActionKind::Drain => {
                prop_assert_eq!(*state, ShardState::Active);
                prop_assert!(cfg.drain_leased || *leases == 0, "{:?}", a);
                *state = ShardState::Draining;
            }
            ActionKind::Activate => {
                prop_assert_ne!(*state, ShardState::Active);
                *state = ShardState::Active;
            }
            ActionKind::Reserve => unreachable!(),
        }
    }

    let leases_before = ipam.snapshot().leases;
    let mut next = ipam.clone();
    apply(&mut next, &p, now).map_err(|e| TestCaseError::fail(e.to_string()))?;
    next.check_invariants().map_err(TestCaseError::fail)?;
    prop_assert_eq!(&next.snapshot().leases, &leases_before);

    // Covered, or a shortfall says by how much it is not.
    let after = shard_map(&next);
    for (t, d) in p.targets.iter().map(|t| {
        let d = demands
            .iter()
            .find(|d| d.subdivision == t.subdivision && d.pool.as_deref() == Some(&t.pool))
            .unwrap();
        (t, d)
    }) {
        let live: Vec<&(String, ShardState, u64, u64)> = after
            .iter()
            .filter(|((pool, _), (s, st, _, _))| {
                pool == &t.pool && s == &t.subdivision && *st != ShardState::Draining
            })
            .map(|(_, v)| v)
            .collect();
        let capacity: u64 = live.iter().map(|v| v.3).sum();
        let need = d.upper_lead + cfg.ready_headroom as f64;
        let short = p
            .shortfalls
            .iter()
            .find(|s| s.subdivision == t.subdivision && s.pool == t.pool);
        match short {
            None => prop_assert!(capacity as f64 >= need, "{t:?}: {capacity} < {need}"),
            Some(s) => {
                prop_assert_eq!(s.got_shards, live.len() as u64);
                prop_assert_eq!(s.short_addresses, (need - capacity as f64).ceil() as u64);
                prop_assert!(s.short_addresses > 0);
            }
        }
        prop_assert_eq!(t.live_after, live.len() as u64);
        if short.is_none() && cfg.activate_after_s == 0.0 {
            prop_assert!(t.ready_after >= t.ready_target, "{:?}", t);
        }
    }

    // A fixed point: the same inputs on the result plan nothing.
    let again = plan(&next, &demands, cfg, now).unwrap();
    prop_assert!(
        again.actions.is_empty(),
        "replanning changed: {:?}",
        again.actions
    );
    prop_assert_eq!(&again.shortfalls, &p.shortfalls);
    *ipam = next;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn plan_then_apply_is_safe_deterministic_and_a_fixed_point(
        rf in 0..3u32,
        rl in 0..2u32,
        homes in proptest::collection::vec(prop_oneof![Just(1u32), Just(2), Just(4)], 5),
        rounds in proptest::collection::vec(round(), 1..5),
    ) {
        let mut ipam = build(rf, rl, &homes);
        let mut now = 0.0;
        for r in &rounds {
            for op in &r.ops {
                run_op(&mut ipam, op, &mut now);
            }
            ipam.take_journal();
            check_round(&mut ipam, r, now)?;
            now += 1.0;
        }
    }
}
