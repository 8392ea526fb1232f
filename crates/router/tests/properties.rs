//! Property tests of the routing policy over random shard sets: every announced prefix lies in a
//! pool, each class's announcements cover exactly that class's shards of the served subtree
//! (nothing more, nothing less), they are disjoint and minimal (no two mergeable), and the
//! configurations rendered from them pass the real daemons' parsers.

mod common;

use std::collections::BTreeSet;

use cidrcast_core::model::{Flavor, Reason, ShardState};
use cidrcast_core::prefix::{block_of, min_cover, Family};
use cidrcast_core::{Ipam, Settings};
use cidrcast_router::{Class, Format};
use ipnet::IpNet;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Claim { sub: usize, v6: bool },
    Activate(usize),
    Drain(usize),
    Release(usize),
    Allocate { sub: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..3usize, any::<bool>()).prop_map(|(sub, v6)| Op::Claim { sub, v6 }),
        3 => any::<prop::sample::Index>().prop_map(|i| Op::Activate(i.index(1 << 16))),
        1 => any::<prop::sample::Index>().prop_map(|i| Op::Drain(i.index(1 << 16))),
        1 => any::<prop::sample::Index>().prop_map(|i| Op::Release(i.index(1 << 16))),
        2 => (0..3usize).prop_map(|sub| Op::Allocate { sub }),
    ]
}

const SUBS: [&str; 3] = ["eu", "eu-r1", "us"];

fn run(ops: &[Op]) -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    for p in common::pools() {
        ipam.add_pool(p).unwrap();
    }
    for s in common::subdivisions() {
        ipam.add_subdivision(s).unwrap();
    }
    let mut vm = 0;
    for (i, o) in ops.iter().enumerate() {
        let t = i as f64;
        let shards = ipam.shards(None).unwrap();
        let pick = |k: usize| shards.get(k % shards.len().max(1)).map(|s| s.record.prefix);
        // Refusals (a full pool, a wrong state) are fine: they change nothing.
        match *o {
            Op::Claim { sub, v6 } => {
                let pool = if v6 { "v6" } else { "v4" };
                let _ = ipam.claim_shard(SUBS[sub], Some(pool), Reason::Forecast, t);
            }
            Op::Activate(k) => {
                if let Some(p) = pick(k) {
                    let _ = ipam.activate_shard(&p, Reason::Forecast, t);
                }
            }
            Op::Drain(k) => {
                if let Some(p) = pick(k) {
                    let _ = ipam.drain_shard(&p, Reason::Reclaim, t);
                }
            }
            Op::Release(k) => {
                if let Some(p) = pick(k) {
                    let _ = ipam.release_shard(&p, Reason::Reclaim, t);
                }
            }
            Op::Allocate { sub } => {
                vm += 1;
                let _ = ipam.allocate(SUBS[sub], &format!("vm-{vm}"), None, Some("v4"), t);
            }
        }
    }
    ipam
}

fn class_of(state: ShardState) -> Class {
    match state {
        ShardState::Reserved => Class::Prefetched,
        ShardState::Active | ShardState::Draining => Class::Active,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn announcements_cover_exactly_the_served_shards(
        ops in prop::collection::vec(op(), 0..60),
        serve in 0..3usize,
    ) {
        let ipam = run(&ops);
        let mut router = common::router("r", Flavor::Bird);
        router.subdivisions = vec![SUBS[serve].to_string()];
        let intent = common::intent_of(&router, &ipam);
        let served: BTreeSet<&str> = match SUBS[serve] {
            "eu" => ["eu", "eu-r1"].into(),
            s => [s].into(),
        };
        let pools = common::pools();
        for a in &intent.announcements {
            prop_assert!(
                pools.iter().any(|p| p.name == a.pool && p.prefix.contains(&a.prefix)),
                "{} is outside pool {}", a.prefix, a.pool
            );
        }
        // Pairwise disjoint.
        for (i, a) in intent.announcements.iter().enumerate() {
            for b in &intent.announcements[i + 1..] {
                prop_assert!(!a.prefix.contains(&b.prefix) && !b.prefix.contains(&a.prefix),
                    "{} and {} overlap", a.prefix, b.prefix);
            }
        }
        let shards = ipam.shards(None).unwrap();
        for class in [Class::Active, Class::Prefetched] {
            for (pool, family) in [("v4", Family::V4), ("v6", Family::V6)] {
                let want: Vec<IpNet> = min_cover(
                    family,
                    shards
                        .iter()
                        .filter(|s| served.contains(s.record.subdivision.as_str()))
                        .filter(|s| s.record.pool == pool && class_of(s.record.state) == class)
                        .map(|s| block_of(&s.record.prefix)),
                );
                let got: Vec<IpNet> = intent
                    .announcements
                    .iter()
                    .filter(|a| a.pool == pool && a.class == class)
                    .map(|a| a.prefix)
                    .collect();
                // Exactly the cover: same union (nothing more, nothing less), and minimal
                // (min_cover of the announcements is themselves: no two merge).
                prop_assert_eq!(&got, &want, "{:?} {}", class, pool);
                let again = min_cover(family, got.iter().map(block_of));
                prop_assert_eq!(again, got);
            }
        }
        for a in &intent.announcements {
            let c = match a.class {
                Class::Active => intent.policy.active_community,
                Class::Prefetched => intent.policy.prefetched_community,
            };
            prop_assert_eq!(a.community, c);
        }
    }
}

proptest! {
    // Each case runs both daemons' parsers: fewer cases.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn configurations_rendered_from_random_shard_sets_pass_the_daemons_parsers(
        ops in prop::collection::vec(op(), 0..80),
        serve in 0..3usize,
    ) {
        let ipam = run(&ops);
        for flavor in [Flavor::Frr, Flavor::Bird] {
            let mut router = common::router("r", flavor);
            router.subdivisions = vec![SUBS[serve].to_string()];
            let intent = common::intent_of(&router, &ipam);
            let r = Format::of(flavor).renderer();
            let text = r.render(&intent);
            if let Err(e) = r.validator().unwrap().check_text("r", &text) {
                prop_assert!(false, "{flavor}: {e}\n{text}");
            }
        }
    }
}
