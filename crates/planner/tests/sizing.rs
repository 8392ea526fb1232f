//! Sizing from addresses, placement of new shards, prefetch (activation), max_shards, shard sizes,
//! input errors and JSON. Every expected value is worked out by hand in the comments.

mod common;

use cidrcast_core::model::{PoolSpec, ShardState};
use cidrcast_planner::{
    apply, plan, ActionKind, Demand, PlannerConfig, PlannerError, Shortfall, ShortfallCause, Target,
};
use common::{allocate, ipam, net, nets, pool61, shards, sub};

fn kinds_and_prefixes(p: &cidrcast_planner::Plan) -> Vec<(ActionKind, String, String)> {
    p.actions
        .iter()
        .map(|a| (a.kind, a.subdivision.clone(), a.prefix.to_string()))
        .collect()
}

#[test]
fn demand_of_130_reserves_three_contiguous_lowest_shards_in_the_home_block() {
    // /26 with 2 + 1 reserved: 61 usable; ceil(130 / 61) = 3 shards. The home block of `a` is
    // 4 shards (the default), placed at the start of the pool: 10.0.0.0/24; shards go in it
    // lowest aligned buddy first: .0, .64, .128, which aggregate to .0/25 + .128/26.
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let cfg = PlannerConfig {
        activate_after_s: 60.0,
        ..PlannerConfig::default()
    };
    let demands = [Demand::new("a", 130.0, 130.0, 1.0)];
    let p = plan(&state, &demands, &cfg, 0.0).unwrap();
    let r = |s: &str| (ActionKind::Reserve, "a".to_string(), s.to_string());
    assert_eq!(
        kinds_and_prefixes(&p),
        [r("10.0.0.0/26"), r("10.0.0.64/26"), r("10.0.0.128/26")]
    );
    assert_eq!(
        p.actions[0].reason,
        "upper peak over the lead time 130 > 0 usable in 0 live shard(s): want 3 × /26 (61 usable each)"
    );
    assert_eq!(
        p.actions[2].reason,
        "upper peak over the lead time 130 > 122 usable in 2 live shard(s): want 3 × /26 (61 usable each)"
    );
    assert!(p.actions.iter().all(|a| a.pool == "v4" && a.leases == 0));
    assert!(p.shortfalls.is_empty());
    assert_eq!(
        p.targets,
        [Target {
            subdivision: "a".into(),
            pool: "v4".into(),
            shard_prefix_len: 26,
            usable_per_shard: 61,
            wanted_shards: 3,
            live_before: 0,
            live_after: 3,
            draining_after: 0,
            leases: 0,
            ready_target: 130,
            ready_after: 0,
            routes: nets(&["10.0.0.0/25", "10.0.0.128/26"]),
        }]
    );
    assert!(p.aggregates.is_empty(), "no subdivision has children");
    // Planning changed nothing.
    assert!(state.shards(None).unwrap().is_empty());

    let applied = apply(&mut state, &p, 0.0).unwrap();
    assert_eq!(
        applied.reserved,
        nets(&["10.0.0.0/26", "10.0.0.64/26", "10.0.0.128/26"])
    );
    assert_eq!(
        shards(&state, "a"),
        [
            ("10.0.0.0/26".into(), ShardState::Reserved, 0),
            ("10.0.0.64/26".into(), ShardState::Reserved, 0),
            ("10.0.0.128/26".into(), ShardState::Reserved, 0),
        ]
    );
    assert_eq!(
        state.routes("a", &[]).unwrap(),
        nets(&["10.0.0.0/25", "10.0.0.128/26"])
    );
    assert_eq!(
        state.subdivision("a").unwrap().homes,
        nets(&["10.0.0.0/24"])
    );
    assert!(
        state.has_journal(),
        "apply journals the changes for the store"
    );

    // Reserved at 0, activated only from 60 s on (routers converge meanwhile).
    assert!(plan(&state, &demands, &cfg, 30.0).unwrap().is_empty());
    let p = plan(&state, &demands, &cfg, 60.0).unwrap();
    let a = |s: &str| (ActionKind::Activate, "a".to_string(), s.to_string());
    assert_eq!(
        kinds_and_prefixes(&p),
        [a("10.0.0.0/26"), a("10.0.0.64/26"), a("10.0.0.128/26")]
    );
    // Ready target 130 − 0 leased; each activation adds 61 ready addresses.
    let reasons: Vec<&str> = p.actions.iter().map(|a| a.reason.as_str()).collect();
    assert_eq!(
        reasons,
        [
            "ready 0 < target 130 (upper peak over the lead time 130 − 0 leased)",
            "ready 61 < target 130 (upper peak over the lead time 130 − 0 leased)",
            "ready 122 < target 130 (upper peak over the lead time 130 − 0 leased)",
        ]
    );
    apply(&mut state, &p, 60.0).unwrap();
    assert!(shards(&state, "a")
        .iter()
        .all(|(_, s, _)| *s == ShardState::Active));
    assert!(plan(&state, &demands, &cfg, 90.0).unwrap().is_empty());
}

#[test]
fn the_prefetch_target_is_the_upper_quantile_less_the_leases() {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let cfg = PlannerConfig::default();
    let p = plan(&state, &[Demand::new("a", 130.0, 130.0, 1.0)], &cfg, 0.0).unwrap();
    // With no activation delay, the same plan reserves and activates.
    let kinds: Vec<ActionKind> = p.actions.iter().map(|a| a.kind).collect();
    use ActionKind::{Activate, Reserve};
    assert_eq!(
        kinds,
        [Reserve, Reserve, Reserve, Activate, Activate, Activate]
    );
    apply(&mut state, &p, 0.0).unwrap();
    // 100 VMs: 61 in .0, 39 in .64; ready = 0 + 22 + 61 = 83.
    allocate(&mut state, "a", "vm", 0..100, 1.0);
    // 200 over the lead time: ceil(200 / 61) = 4 shards, so one more (.192, the last of the
    // home block); ready target 200 − 100 = 100 > 83, so it is activated too.
    let p = plan(&state, &[Demand::new("a", 200.0, 200.0, 1.0)], &cfg, 2.0).unwrap();
    assert_eq!(
        kinds_and_prefixes(&p),
        [
            (Reserve, "a".into(), "10.0.0.192/26".into()),
            (Activate, "a".into(), "10.0.0.192/26".into()),
        ]
    );
    assert_eq!(
        p.actions[1].reason,
        "ready 83 < target 100 (upper peak over the lead time 200 − 100 leased)"
    );
    assert_eq!(p.targets[0].ready_target, 100);
    assert_eq!(p.targets[0].ready_after, 83 + 61);
    assert_eq!(p.targets[0].leases, 100);
    assert_eq!(p.targets[0].routes, nets(&["10.0.0.0/24"]));
}

#[test]
fn only_the_reserved_shards_the_ready_target_needs_are_activated() {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    for _ in 0..3 {
        state
            .claim_shard("a", None, cidrcast_core::model::Reason::Operator, 0.0)
            .unwrap();
    }
    // 70 over the lead time wants 2 shards; the third stays (100 over the longer horizon is
    // above 122 × 0.75 = 91.5). Ready target 70: .0 gives 61 < 70, .64 brings 122: .128 stays
    // reserved.
    let p = plan(
        &state,
        &[Demand::new("a", 70.0, 100.0, 1.0)],
        &PlannerConfig::default(),
        1.0,
    )
    .unwrap();
    assert_eq!(
        kinds_and_prefixes(&p),
        [
            (ActionKind::Activate, "a".into(), "10.0.0.0/26".into()),
            (ActionKind::Activate, "a".into(), "10.0.0.64/26".into()),
        ]
    );
    apply(&mut state, &p, 1.0).unwrap();
    assert_eq!(shards(&state, "a")[2].1, ShardState::Reserved);
}

#[test]
fn max_shards_caps_the_want_and_reports_the_rest() {
    let mut c = sub("c");
    c.max_shards = Some(2);
    let state = ipam(&[pool61("v4", "10.0.0.0/16")], &[c]);
    // ceil(300 / 61) = 5, capped at 2: .0 and .64 (the home block is 2 shards, /25);
    // short 300 − 2 × 61 = 178 addresses.
    let p = plan(
        &state,
        &[Demand::new("c", 300.0, 300.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    assert_eq!(
        p.actions_of(ActionKind::Reserve)
            .map(|a| a.prefix)
            .collect::<Vec<_>>(),
        nets(&["10.0.0.0/26", "10.0.0.64/26"])
    );
    assert_eq!(p.targets[0].wanted_shards, 2);
    assert_eq!(
        p.shortfalls,
        [Shortfall {
            subdivision: "c".into(),
            pool: "v4".into(),
            wanted_shards: 5,
            got_shards: 2,
            short_addresses: 178,
            cause: ShortfallCause::MaxShards,
        }]
    );
}

#[test]
fn a_demand_may_choose_its_shard_size() {
    let mut pool = pool61("v4", "10.0.0.0/16");
    pool.min_shard_prefix_len = Some(24);
    pool.max_shard_prefix_len = Some(28);
    let state = ipam(&[pool], &[sub("a")]);
    // /28: 16 − 2 − 1 = 13 usable; ceil(30 / 13) = 3 shards, lowest first in the /24 home:
    // .0/28, .16/28, .32/28 = .0/27 + .32/28.
    let d = Demand::new("a", 30.0, 30.0, 1.0).with_prefix_len(28);
    let p = plan(&state, &[d], &PlannerConfig::default(), 0.0).unwrap();
    assert_eq!(
        p.actions_of(ActionKind::Reserve)
            .map(|a| a.prefix)
            .collect::<Vec<_>>(),
        nets(&["10.0.0.0/28", "10.0.0.16/28", "10.0.0.32/28"])
    );
    assert_eq!(
        p.actions[0].reason,
        "upper peak over the lead time 30 > 0 usable in 0 live shard(s): want 3 × /28 (13 usable each)"
    );
    let t = &p.targets[0];
    assert_eq!(
        (t.shard_prefix_len, t.usable_per_shard, t.wanted_shards),
        (28, 13, 3)
    );
    assert_eq!(t.routes, nets(&["10.0.0.0/27", "10.0.0.32/28"]));

    let d = Demand::new("a", 30.0, 30.0, 1.0).with_prefix_len(30);
    let err = plan(&state, &[d], &PlannerConfig::default(), 0.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "demand of subdivision `a`: pool `v4` does not hand out /30 shards (it hands out /24 to /28)"
    );
}

#[test]
fn a_demand_is_placed_in_the_pool_it_names() {
    let mut state = ipam(
        &[
            pool61("v4", "10.0.0.0/16"),
            PoolSpec::new("v6", net("fd00::/48"), 64),
        ],
        &[sub("a")],
    );
    let p = plan(
        &state,
        &[
            Demand::new("a", 10.0, 10.0, 1.0).in_pool("v6"),
            Demand::new("a", 10.0, 10.0, 1.0),
        ],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    // The default pool of a subdivision without `pools` is the first by name: v4.
    let pools: Vec<(String, String)> = p
        .actions_of(ActionKind::Reserve)
        .map(|a| (a.pool.clone(), a.prefix.to_string()))
        .collect();
    assert_eq!(
        pools,
        [
            ("v4".into(), "10.0.0.0/26".into()),
            ("v6".into(), "fd00::/64".into())
        ]
    );
    apply(&mut state, &p, 0.0).unwrap();
    state.check_invariants().unwrap();
}

#[test]
fn bad_inputs_are_named() {
    let mut only_v4 = sub("p");
    only_v4.pools = vec!["v4".into()];
    let state = ipam(
        &[
            pool61("v4", "10.0.0.0/16"),
            PoolSpec::new("v6", net("fd00::/48"), 64),
        ],
        &[sub("a"), only_v4],
    );
    let cfg = PlannerConfig::default();
    let err = |d: Vec<Demand>| plan(&state, &d, &cfg, 0.0).unwrap_err().to_string();
    assert_eq!(
        err(vec![Demand::new("nope", 1.0, 1.0, 1.0)]),
        "unknown subdivision `nope`"
    );
    assert_eq!(
        err(vec![Demand::new("a", f64::NAN, 1.0, 1.0)]),
        "demand of subdivision `a`: upper_lead = NaN: must be a finite number of addresses >= 0"
    );
    assert_eq!(
        err(vec![Demand::new("a", 1.0, -2.0, 1.0)]),
        "demand of subdivision `a`: upper_long = -2: must be a finite number of addresses >= 0"
    );
    assert_eq!(
        err(vec![Demand::new("a", 1.0, 1.0, f64::INFINITY)]),
        "demand of subdivision `a`: score = inf: must be finite"
    );
    assert_eq!(
        err(vec![Demand::new("p", 1.0, 1.0, 1.0).in_pool("v6")]),
        "demand of subdivision `p`: it does not draw from pool `v6` (its pools: v4)"
    );
    assert_eq!(
        err(vec![Demand::new("a", 1.0, 1.0, 1.0).in_pool("zz")]),
        "demand of subdivision `a`: unknown pool `zz`"
    );
    assert_eq!(
        err(vec![
            Demand::new("a", 1.0, 1.0, 1.0),
            Demand::new("a", 2.0, 2.0, 1.0).in_pool("v4"),
        ]),
        "two demands for subdivision `a` in pool `v4`"
    );
    let bad = PlannerConfig {
        release_margin: 1.0,
        ..PlannerConfig::default()
    };
    let e = plan(&state, &[], &bad, 0.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "planner config: release_margin = 1: must lie in [0, 1)"
    );
    assert!(matches!(e, PlannerError::InvalidConfig { .. }));
}

#[test]
fn plans_and_demands_are_json() {
    let state = ipam(&[pool61("v4", "10.0.0.0/24")], &[sub("a")]);
    // 4 shards × 61 = 244 < 300: short 56 addresses, one more shard.
    let p = plan(
        &state,
        &[Demand::new("a", 300.0, 300.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    let json = serde_json::to_string(&p).unwrap();
    assert!(
        json.contains(r#""kind":"reserve","subdivision":"a","pool":"v4","prefix":"10.0.0.0/26""#),
        "{json}"
    );
    assert!(
        json.contains(
            r#""wanted_shards":5,"got_shards":4,"short_addresses":56,"cause":"pool-exhausted""#
        ),
        "{json}"
    );
    let back: cidrcast_planner::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);

    let d: Demand = serde_json::from_str(
        r#"{"subdivision":"a","upper_lead":1.5,"upper_long":2,"score":0,"prefix_len":27}"#,
    )
    .unwrap();
    assert_eq!(d, Demand::new("a", 1.5, 2.0, 0.0).with_prefix_len(27));
    let e = serde_json::from_str::<Demand>(
        r#"{"subdivision":"a","upper_lead":1,"upper_long":2,"score":0,"colour":1}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let cfg: PlannerConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(cfg, PlannerConfig::default());
}
