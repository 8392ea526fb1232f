//! Properties of every policy's replay on random traces: the counts add up, shards are claimed
//! aligned, never overlap and are released only while held, the oracle never misses, and the
//! adaptive policy with one candidate is that candidate.

use std::collections::BTreeMap;

use cidrcast_core::model::{EventKind, VmEvent};
use cidrcast_sim::{decisions, replay, Params, Policy};
use proptest::prelude::*;

/// A random trace over three subdivisions: each step waits `dt` seconds (0: the same time as the
/// last event) and creates a VM or deletes one of the subdivision's alive VMs (picked by `pick`).
fn trace(steps: &[(u8, u8, bool, u16)]) -> Vec<VmEvent> {
    let mut alive: BTreeMap<u8, Vec<String>> = BTreeMap::new();
    let mut t = 1000.0;
    let mut out = Vec::new();
    for (i, &(dt, sub, create, pick)) in steps.iter().enumerate() {
        t += f64::from(dt);
        let vms = alive.entry(sub).or_default();
        let (kind, vm) = if create || vms.is_empty() {
            let vm = format!("v{i}");
            vms.push(vm.clone());
            (EventKind::Create, vm)
        } else {
            (EventKind::Delete, vms.remove(usize::from(pick) % vms.len()))
        };
        out.push(VmEvent {
            time: t,
            subdivision: format!("s{sub}"),
            kind,
            vm_id: vm,
            profile: None,
        });
    }
    out
}

fn policies() -> Vec<Policy> {
    [
        "on-demand release_delay=0",
        "on-demand release_delay=45",
        "warm-target warm_ip_target=3",
        "watermark pre_allocate=2",
        "predictive quantile=0.9 tick=10 recent=12 keep_horizon=120 target_miss=0.05",
        "oracle",
    ]
    .iter()
    .map(|s| Policy::parse_setting(s).unwrap())
    .chain([Policy::parse(
        "adaptive",
        &[
            (
                "experts".into(),
                "on-demand release_delay=0; warm-target warm_ip_target=4; \
                 predictive quantile=0.9 tick=10 recent=12"
                    .into(),
            ),
            ("epoch".into(), "60".into()),
            ("half_life".into(), "300".into()),
            ("miss_cost".into(), "0.1".into()),
            ("standby".into(), "1".into()),
        ],
    )
    .unwrap()])
    .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_policy_keeps_the_replay_invariants(
        steps in prop::collection::vec((0u8..90, 0u8..3, prop::bool::weighted(0.6), any::<u16>()), 1..250),
        lead in prop::sample::select(vec![0.0, 15.0, 60.0]),
        sizes in prop::sample::select(vec![(4u32, 4u32, 4u32), (2, 4, 16)]),
        windowed in any::<bool>(),
    ) {
        let events = trace(&steps);
        let (first, last) = (events[0].time, events[events.len() - 1].time);
        let window = windowed.then_some((first + 0.25 * (last - first), last + 1.0));
        let p = Params {
            lead_time: lead,
            shard_size: sizes.1,
            min_shard_size: sizes.0,
            max_shard_size: sizes.2,
            window,
        };
        let creations = events
            .iter()
            .filter(|e| e.kind == EventKind::Create)
            .filter(|e| window.is_none_or(|(a, b)| e.time >= a && e.time < b))
            .count() as u64;
        for policy in policies() {
            let name = policy.name();
            let r = replay(&events, &policy, &p, false).unwrap();
            prop_assert_eq!(r.creations, creations, "{}", name);
            prop_assert!(r.misses <= r.creations, "{}: {:?}", name, r);
            prop_assert!(r.mean_idle_addresses >= -1e-9, "{}: {:?}", name, r);
            prop_assert!((0.0..=1.0 + 1e-9).contains(&r.utilization), "{}: {:?}", name, r);
            if name == "oracle" {
                prop_assert_eq!(r.misses, 0, "{:?}", r);
            }
            // Claims are aligned blocks that overlap no held block; releases free held blocks.
            let mut held: BTreeMap<String, Vec<(usize, u32)>> = BTreeMap::new();
            for d in decisions(&events, &policy, &p).unwrap() {
                let units = (d.size / p.min_shard_size) as usize;
                let blocks = held.entry(d.subdivision.clone()).or_default();
                if d.claim {
                    prop_assert!(d.size.is_power_of_two() || !p.is_adaptive(), "{}: {:?}", name, d);
                    prop_assert!(d.size >= p.min_shard_size && d.size <= p.max_shard_size, "{}: {:?}", name, d);
                    prop_assert_eq!(d.shard % units, 0, "{}: unaligned {:?}", name, d);
                    let overlaps = blocks.iter().any(|&(s, z)| {
                        let zu = (z / p.min_shard_size) as usize;
                        d.shard < s + zu && s < d.shard + units
                    });
                    prop_assert!(!overlaps, "{}: {:?} overlaps {:?}", name, d, blocks);
                    blocks.push((d.shard, d.size));
                } else {
                    let at = blocks.iter().position(|&b| b == (d.shard, d.size));
                    prop_assert!(at.is_some(), "{}: released {:?}, not held: {:?}", name, d, blocks);
                    blocks.remove(at.unwrap());
                }
            }
        }
        // The adaptive policy with one candidate holds, claims and releases as that candidate.
        let setting = "predictive quantile=0.9 tick=10 recent=12 keep_horizon=120";
        let alone = replay(&events, &Policy::parse_setting(setting).unwrap(), &p, false).unwrap();
        let followed = replay(
            &events,
            &Policy::parse("adaptive", &[("experts".into(), setting.into())]).unwrap(),
            &p,
            false,
        )
        .unwrap();
        prop_assert_eq!(followed, alone);
    }
}
