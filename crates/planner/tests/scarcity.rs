//! Scarce space: a /24 pool of /26 shards (4 shards, 61 usable each) and two subdivisions whose
//! wants (2 + 3 shards) exceed it. Both have 1-shard home blocks that grow by their buddy.

mod common;

use cidrcast_planner::{apply, plan, ActionKind, Demand, PlannerConfig, Shortfall, ShortfallCause};
use common::{home, ipam, nets, shards};

fn reserves(p: &cidrcast_planner::Plan, sub: &str) -> Vec<ipnet::IpNet> {
    p.actions_of(ActionKind::Reserve)
        .filter(|a| a.subdivision == sub)
        .map(|a| a.prefix)
        .collect()
}

#[test]
fn the_higher_score_is_served_first_and_the_other_is_told_how_short_it_is() {
    let mut state = ipam(
        &[common::pool61("small", "10.0.0.0/24")],
        &[home("a", 1), home("b", 1)],
    );
    // a (score 2): 100 -> 2 shards. Its home is .0/26 (lowest of the pool), grown by its buddy
    // .64 to .0/25. b (score 1): 130 -> 3 shards. Its home goes in the largest free block,
    // .128/25: .128, then its buddy .192; the next buddy (.0/25) is a's and the pool has no
    // free shard left: b gets 2, short 130 − 122 = 8 addresses.
    let demands = [
        Demand::new("b", 130.0, 130.0, 1.0),
        Demand::new("a", 100.0, 100.0, 2.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 0.0).unwrap();
    assert_eq!(reserves(&p, "a"), nets(&["10.0.0.0/26", "10.0.0.64/26"]));
    assert_eq!(reserves(&p, "b"), nets(&["10.0.0.128/26", "10.0.0.192/26"]));
    // Claims in score order, then activations in score order.
    let order: Vec<(ActionKind, &str)> = p
        .actions
        .iter()
        .map(|a| (a.kind, a.subdivision.as_str()))
        .collect();
    use ActionKind::{Activate, Reserve};
    assert_eq!(
        order,
        [
            (Reserve, "a"),
            (Reserve, "a"),
            (Reserve, "b"),
            (Reserve, "b"),
            (Activate, "a"),
            (Activate, "a"),
            (Activate, "b"),
            (Activate, "b"),
        ]
    );
    assert_eq!(
        p.shortfalls,
        [Shortfall {
            subdivision: "b".into(),
            pool: "small".into(),
            wanted_shards: 3,
            got_shards: 2,
            short_addresses: 8,
            cause: ShortfallCause::PoolExhausted,
        }]
    );
    let targets: Vec<(&str, u64, u64)> = p
        .targets
        .iter()
        .map(|t| (t.subdivision.as_str(), t.wanted_shards, t.live_after))
        .collect();
    assert_eq!(targets, [("a", 2, 2), ("b", 3, 2)]);
    apply(&mut state, &p, 0.0).unwrap();
    assert_eq!(state.routes("a", &[]).unwrap(), nets(&["10.0.0.0/25"]));
    assert_eq!(state.routes("b", &[]).unwrap(), nets(&["10.0.0.128/25"]));
    // The next plan retries b's claim, fails again, and changes nothing.
    let again = plan(&state, &demands, &PlannerConfig::default(), 1.0).unwrap();
    assert!(again.is_empty());
    assert_eq!(again.shortfalls, p.shortfalls);
}

#[test]
fn swapping_the_scores_swaps_who_is_served() {
    let state = ipam(
        &[common::pool61("small", "10.0.0.0/24")],
        &[home("a", 1), home("b", 1)],
    );
    // b (score 2) first: home .0/26 grows to .0/25 then .0/24, shards .0, .64, .128. a then
    // finds no free block for a home nor a shard (the free .192 lies in b's home block, which
    // only b uses): 0 of 2 shards, short 100.
    let demands = [
        Demand::new("b", 130.0, 130.0, 2.0),
        Demand::new("a", 100.0, 100.0, 1.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 0.0).unwrap();
    assert_eq!(
        reserves(&p, "b"),
        nets(&["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26"])
    );
    assert!(reserves(&p, "a").is_empty());
    assert_eq!(
        p.shortfalls,
        [Shortfall {
            subdivision: "a".into(),
            pool: "small".into(),
            wanted_shards: 2,
            got_shards: 0,
            short_addresses: 100,
            cause: ShortfallCause::PoolExhausted,
        }]
    );
}

#[test]
fn space_given_back_goes_to_the_claims_of_the_same_plan() {
    let mut state = ipam(
        &[common::pool61("small", "10.0.0.0/24")],
        &[home("a", 1), home("b", 1)],
    );
    // a takes the whole pool (4 shards, home .0/24).
    let p = plan(
        &state,
        &[Demand::new("a", 244.0, 244.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    apply(&mut state, &p, 0.0).unwrap();
    assert_eq!(state.routes("a", &[]).unwrap(), nets(&["10.0.0.0/24"]));
    // a falls to 50 (40 over the longer horizon): it keeps 1 shard (40 <= 61 × 0.75 = 45.75),
    // .192, .128 and .64 go, and its home block halves back to .0/26. b (lower score) then
    // gets .128 and .192 in the same plan.
    let demands = [
        Demand::new("a", 50.0, 40.0, 2.0),
        Demand::new("b", 100.0, 100.0, 1.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 1.0).unwrap();
    let summary: Vec<(ActionKind, &str, String)> = p
        .actions
        .iter()
        .map(|a| (a.kind, a.subdivision.as_str(), a.prefix.to_string()))
        .collect();
    use ActionKind::{Activate, Release, Reserve};
    assert_eq!(
        summary,
        [
            (Release, "a", "10.0.0.192/26".into()),
            (Release, "a", "10.0.0.128/26".into()),
            (Release, "a", "10.0.0.64/26".into()),
            (Reserve, "b", "10.0.0.128/26".into()),
            (Reserve, "b", "10.0.0.192/26".into()),
            (Activate, "b", "10.0.0.128/26".into()),
            (Activate, "b", "10.0.0.192/26".into()),
        ]
    );
    assert!(p.shortfalls.is_empty());
    apply(&mut state, &p, 1.0).unwrap();
    assert_eq!(shards(&state, "a").len(), 1);
    assert_eq!(state.routes("b", &[]).unwrap(), nets(&["10.0.0.128/25"]));
    state.check_invariants().unwrap();
}
