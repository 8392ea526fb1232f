//! Property tests: random operation sequences, IPv4 and IPv6, every invariant of the brief checked
//! after every step, plus the journal and the snapshot reproducing the live state exactly.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;

use cidrcast_core::model::{PoolSpec, Reason};
use cidrcast_core::{AllocPath, CoreError, Ipam, Settings};
use common::{pool, pool_sized, sub, Applied};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Allocate {
        sub: usize,
        vm: usize,
    },
    Release {
        vm: usize,
    },
    /// A claim in pool `pool` (modulo the pools) of the default size (`len: None`) or of prefix
    /// length `shard_prefix_len + len`, which may lie outside the pool's range (then refused).
    Claim {
        sub: usize,
        pool: usize,
        len: Option<i8>,
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
        6 => (0..4usize, 0..40usize).prop_map(|(sub, vm)| Op::Allocate { sub, vm }),
        4 => (0..40usize).prop_map(|vm| Op::Release { vm }),
        2 => (0..4usize, 0..2usize, proptest::option::weighted(0.8, -3..=3i8))
            .prop_map(|(sub, pool, len)| Op::Claim { sub, pool, len }),
        1 => any::<usize>().prop_map(|pick| Op::Activate { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Drain { pick }),
        1 => any::<usize>().prop_map(|pick| Op::ReleaseShard { pick }),
        2 => (0..40u8).prop_map(|secs| Op::Advance { secs }),
    ]
}

const SUBS: [&str; 4] = ["a", "b", "a.child", "c"];
const COOLDOWN: f64 = 30.0;

fn build(pools: &[PoolSpec]) -> Ipam {
    let mut ipam = Ipam::new(Settings {
        cooldown_s: COOLDOWN,
    });
    for p in pools {
        ipam.add_pool(p.clone()).unwrap();
    }
    for (i, name) in SUBS.iter().enumerate() {
        let mut s = sub(name);
        if *name == "a.child" {
            s.parent = Some("a".into());
        }
        s.home_shards = Some(1 << (i % 3));
        if i == 3 {
            s.max_shards = Some(3);
        }
        ipam.add_subdivision(s).unwrap();
    }
    ipam
}

fn run(pools: Vec<PoolSpec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    run_hinted(pools, ops, 0)
}

/// [`run`] with allocations starting at an address hint (as daemons sharing a store do).
fn run_hinted(pools: Vec<PoolSpec>, ops: Vec<Op>, hint: u64) -> Result<(), TestCaseError> {
    let mut ipam = build(&pools);
    ipam.set_address_hint(hint);
    let mut applied = Applied::default();
    applied.apply(ipam.take_journal());
    let mut now = 0.0;
    let mut released_at: HashMap<(String, IpAddr), f64> = HashMap::new();
    let mut holder: HashMap<String, (String, IpAddr)> = HashMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        ipam.expire(now);
        applied.apply(ipam.take_journal());
        let before = ipam.snapshot();
        let shards = ipam.shards(None).unwrap();
        let pick = |p: usize| (!shards.is_empty()).then(|| shards[p % shards.len()].record.prefix);
        let result: Result<(), String> = match &op {
            Op::Allocate { sub, vm } => {
                let vm_id = format!("vm{vm}");
                match ipam.allocate(SUBS[*sub], &vm_id, None, None, now) {
                    Ok(a) => {
                        let pool = ipam.lease(&vm_id).unwrap().pool;
                        if a.path == AllocPath::Existing {
                            // Idempotent: the same address as before.
                            prop_assert_eq!(holder.get(&vm_id).map(|h| h.1), Some(a.address));
                        } else {
                            prop_assert!(!holder.contains_key(&vm_id));
                            if let Some(t) = released_at.get(&(pool.clone(), a.address)) {
                                prop_assert!(
                                    now >= t + COOLDOWN,
                                    "step {}: {} reused at {} after release at {}",
                                    step,
                                    a.address,
                                    now,
                                    t
                                );
                            }
                            holder.insert(vm_id, (SUBS[*sub].to_string(), a.address));
                        }
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            Op::Release { vm } => {
                let vm_id = format!("vm{vm}");
                let pool = ipam.lease(&vm_id).map(|l| l.pool);
                match ipam.release(&vm_id, now) {
                    Ok(addr) => {
                        prop_assert_eq!(holder.remove(&vm_id).map(|h| h.1), Some(addr));
                        released_at.insert((pool.unwrap(), addr), now);
                        Ok(())
                    }
                    Err(e) => {
                        prop_assert!(!holder.contains_key(&vm_id));
                        Err(e.to_string())
                    }
                }
            }
            Op::Claim { sub, pool, len } => {
                let spec = &pools[pool % pools.len()];
                let len = len.map(|d| spec.shard_prefix_len.saturating_add_signed(d));
                let (min, max) = spec.shard_prefix_range();
                let result = match len {
                    None => ipam.claim_shard(SUBS[*sub], Some(&spec.name), Reason::Forecast, now),
                    Some(l) => ipam.claim_shard_sized(
                        SUBS[*sub],
                        Some(&spec.name),
                        Some(l),
                        Reason::Forecast,
                        now,
                    ),
                };
                match result {
                    Ok(r) => {
                        let got = r.prefix.prefix_len();
                        prop_assert_eq!(got, len.unwrap_or(spec.shard_prefix_len));
                        prop_assert!(min <= got && got <= max, "claimed a /{} shard", got);
                        Ok(())
                    }
                    Err(e) => {
                        let out_of_range = len.is_some_and(|l| l < min || l > max);
                        prop_assert_eq!(
                            matches!(e, CoreError::ShardSizeNotAllowed { .. }),
                            out_of_range,
                            "step {}: {}",
                            step,
                            e
                        );
                        Err(e.to_string())
                    }
                }
            }
            Op::Activate { pick: p } => match pick(*p) {
                Some(s) => ipam
                    .activate_shard(&s, Reason::Operator, now)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Op::Drain { pick: p } => match pick(*p) {
                Some(s) => ipam
                    .drain_shard(&s, Reason::Operator, now)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Op::ReleaseShard { pick: p } => match pick(*p) {
                Some(s) => ipam
                    .release_shard(&s, Reason::Operator, now)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => Ok(()),
            },
            Op::Advance { secs } => {
                now += f64::from(*secs);
                Ok(())
            }
        };
        if let Err(msg) = &result {
            // A failed operation changes nothing and journals nothing.
            prop_assert!(
                !ipam.has_journal(),
                "step {step}: {op:?} failed ({msg}) but journaled"
            );
            prop_assert_eq!(
                &ipam.snapshot(),
                &before,
                "step {}: {:?} failed ({}) but changed state",
                step,
                op,
                msg
            );
        }
        if let Err(v) = ipam.check_invariants() {
            return Err(TestCaseError::fail(format!(
                "step {step} after {op:?}: {v}"
            )));
        }
        // Every lease lies in a non-reserved shard of its own subdivision.
        for l in ipam.leases(None).unwrap() {
            prop_assert_eq!(&holder[&l.vm_id].0, &l.subdivision);
            prop_assert!(l.shard.contains(&l.address));
        }
        // The journal, applied like a store would, reproduces the live state.
        applied.apply(ipam.take_journal());
        let snap = ipam.snapshot();
        prop_assert_eq!(
            &applied.snapshot(),
            &snap,
            "step {}: journal diverged after {:?}",
            step,
            op
        );
        if step % 16 == 0 {
            let copy = Ipam::from_snapshot(ipam.settings(), &snap)
                .map_err(|e| TestCaseError::fail(format!("reload: {e}")))?;
            prop_assert_eq!(copy.snapshot(), snap);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn ipv4_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        // 16 shards of 4 addresses: scarce enough to exhaust, borrow and coalesce.
        let mut p = pool("v4", "10.0.0.0/26", 30);
        p.reserve_first = 1;
        run(vec![p], ops)?;
    }

    #[test]
    fn ipv4_invariants_hold_with_an_address_hint(
        ops in proptest::collection::vec(op(), 1..120),
        hint in 1u64..1_000_000,
    ) {
        let mut p = pool("v4", "10.0.0.0/26", 30);
        p.reserve_first = 1;
        run_hinted(vec![p], ops, hint)?;
    }

    #[test]
    fn ipv4_mixed_shard_sizes_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        // Shards of 2 to 16 addresses, 4 by default, with a reserved range.
        let mut p = pool_sized("v4", "10.0.0.0/26", 30, 28, 31);
        p.reserve_first = 1;
        p.reserved = vec!["10.0.0.36/31".parse().unwrap()];
        run(vec![p], ops)?;
    }

    #[test]
    fn ipv6_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        let mut p = pool_sized("v6", "fd00::/120", 124, 122, 126);
        p.reserved = vec!["fd00::f0/124".parse().unwrap()];
        run(vec![p], ops)?;
    }

    #[test]
    fn dual_stack_invariants_hold(ops in proptest::collection::vec(op(), 1..120)) {
        run(
            vec![
                pool_sized("v4", "10.0.0.0/27", 29, 28, 30),
                pool_sized("v6", "2001:db8::/60", 64, 64, 66),
            ],
            ops,
        )?;
    }
}
