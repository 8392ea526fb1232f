//! Hysteresis, draining and no flapping. Pool 10.0.0.0/16 of /26 shards with 61 usable
//! addresses; `a` starts with 3 active shards .0, .64, .128 (a demand of 130), margin 0.25
//! unless said otherwise.

mod common;

use cidrcast_core::model::ShardState;
use cidrcast_core::Ipam;
use cidrcast_planner::{apply, plan, ActionKind, Applied, Demand, PlannerConfig};
use common::{allocate, ipam, pool61, shards, sub};

fn three_active() -> Ipam {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let p = plan(
        &state,
        &[Demand::new("a", 130.0, 130.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    apply(&mut state, &p, 0.0).unwrap();
    assert_eq!(
        shards(&state, "a"),
        [
            ("10.0.0.0/26".into(), ShardState::Active, 0),
            ("10.0.0.64/26".into(), ShardState::Active, 0),
            ("10.0.0.128/26".into(), ShardState::Active, 0),
        ]
    );
    state.take_journal();
    state
}

fn plan_a(
    state: &Ipam,
    lead: f64,
    long: f64,
    cfg: &PlannerConfig,
    now: f64,
) -> cidrcast_planner::Plan {
    plan(state, &[Demand::new("a", lead, long, 1.0)], cfg, now).unwrap()
}

fn summary(p: &cidrcast_planner::Plan) -> Vec<(ActionKind, String, u64)> {
    p.actions
        .iter()
        .map(|a| (a.kind, a.prefix.to_string(), a.leases))
        .collect()
}

#[test]
fn a_slightly_lower_demand_gives_nothing_back() {
    let mut state = three_active();
    allocate(&mut state, "a", "vm", 0..50, 1.0);
    // 115 wants 2 shards, but 120 over the longer horizon > 2 × 61 × 0.75 = 91.5.
    let cfg = PlannerConfig::default();
    assert!(plan_a(&state, 115.0, 120.0, &cfg, 2.0).is_empty());
}

#[test]
fn a_demand_well_below_releases_empty_shards_highest_first_and_never_a_leased_one() {
    let mut state = three_active();
    let cfg = PlannerConfig::default();
    allocate(&mut state, "a", "vm", 0..50, 1.0); // all in .0
                                                 // 60 <= 122 × 0.75 = 91.5: .128 (empty, highest) goes; then 61 × 0.75 = 45.75 < 60: stop.
    let p = plan_a(&state, 50.0, 60.0, &cfg, 2.0);
    assert_eq!(
        summary(&p),
        [(ActionKind::Release, "10.0.0.128/26".into(), 0)]
    );
    assert_eq!(
        p.actions[0].reason,
        "upper peak over the release horizon 60 <= 122 usable left × (1 − 0.25) = 91.5, and 122 >= upper peak over the lead time 50; empty"
    );
    let applied = apply(&mut state, &p, 2.0).unwrap();
    assert_eq!(applied.freed, common::nets(&["10.0.0.128/26"]));
    // Lower still: .64 (empty) goes, .0 keeps its 50 leases (0 left < 10).
    let p = plan_a(&state, 10.0, 20.0, &cfg, 3.0);
    assert_eq!(
        summary(&p),
        [(ActionKind::Release, "10.0.0.64/26".into(), 0)]
    );
    apply(&mut state, &p, 3.0).unwrap();
    assert_eq!(
        shards(&state, "a"),
        [("10.0.0.0/26".into(), ShardState::Active, 50)]
    );
    assert!(plan_a(&state, 10.0, 20.0, &cfg, 4.0).is_empty());
}

#[test]
fn a_shard_with_only_cooling_addresses_is_drained_and_freed_when_they_expire() {
    let mut state = three_active();
    allocate(&mut state, "a", "vm", 0..183, 1.0); // 61 in each shard
    for i in 122..183 {
        state.release(&format!("vm-{i}"), 2.0).unwrap(); // .128 empties; cooling until 32
    }
    // 90 <= 91.5: .128 goes, but its addresses cool down until 32 s: drained, not released.
    let p = plan_a(&state, 80.0, 90.0, &PlannerConfig::default(), 3.0);
    assert_eq!(
        summary(&p),
        [(ActionKind::Drain, "10.0.0.128/26".into(), 0)]
    );
    assert!(
        p.actions[0]
            .reason
            .ends_with("; no lease, 61 address(es) in their cooldown: released when they expire"),
        "{}",
        p.actions[0].reason
    );
    let applied = apply(&mut state, &p, 3.0).unwrap();
    assert_eq!(applied.draining, common::nets(&["10.0.0.128/26"]));
    assert_eq!(shards(&state, "a")[2].1, ShardState::Draining);
    state.expire(32.0);
    assert_eq!(
        shards(&state, "a"),
        [
            ("10.0.0.0/26".into(), ShardState::Active, 61),
            ("10.0.0.64/26".into(), ShardState::Active, 61),
        ]
    );
}

/// `a` with 20 leases in each of its 3 shards (fragmented), cooldowns over.
fn fragmented() -> Ipam {
    let mut state = three_active();
    allocate(&mut state, "a", "vm", 0..183, 1.0);
    for i in (20..61).chain(81..122).chain(142..183) {
        state.release(&format!("vm-{i}"), 2.0).unwrap();
    }
    state.expire(40.0);
    assert_eq!(
        shards(&state, "a").iter().map(|s| s.2).collect::<Vec<_>>(),
        [20, 20, 20]
    );
    state
}

#[test]
fn leased_shards_are_drained_and_released_only_once_empty() {
    let mut state = fragmented();
    let cfg = PlannerConfig {
        release_margin: 0.0,
        ..PlannerConfig::default()
    };
    // 61 over both horizons: one shard covers it. All hold 20 leases: highest first.
    // .128: 122 left >= 61 and 61 <= 122; .64: 61 left >= 61 and 61 <= 61; .0: 0 left < 61.
    let p = plan_a(&state, 61.0, 61.0, &cfg, 40.0);
    assert_eq!(
        summary(&p),
        [
            (ActionKind::Drain, "10.0.0.128/26".into(), 20),
            (ActionKind::Drain, "10.0.0.64/26".into(), 20),
        ]
    );
    assert_eq!(
        p.actions[0].reason,
        "upper peak over the release horizon 61 <= 122 usable left × (1 − 0) = 122, and 122 >= upper peak over the lead time 61; 20 lease(s) left: released when empty"
    );
    apply(&mut state, &p, 40.0).unwrap();
    assert_eq!(
        shards(&state, "a"),
        [
            ("10.0.0.0/26".into(), ShardState::Active, 20),
            ("10.0.0.64/26".into(), ShardState::Draining, 20),
            ("10.0.0.128/26".into(), ShardState::Draining, 20),
        ]
    );
    // New VMs only go to the active shard.
    let new = state.allocate("a", "new-0", None, None, 41.0).unwrap();
    assert_eq!(new.shard, common::net("10.0.0.0/26"));
    // The 20 VMs of .128 go: it stays draining while their addresses cool down, and the
    // planner has nothing to do (a shard is never released with leases or cooling addresses).
    for i in 122..142 {
        state.release(&format!("vm-{i}"), 50.0).unwrap();
    }
    assert_eq!(
        shards(&state, "a")[2],
        ("10.0.0.128/26".into(), ShardState::Draining, 0)
    );
    assert!(plan_a(&state, 61.0, 61.0, &cfg, 50.0).is_empty());
    state.expire(80.0);
    assert_eq!(
        shards(&state, "a"),
        [
            ("10.0.0.0/26".into(), ShardState::Active, 21),
            ("10.0.0.64/26".into(), ShardState::Draining, 20),
        ]
    );

    // Demand comes back: the draining shard is taken back before anything is claimed.
    // Live 61 < 130: reactivate .64 (122 < 130), then claim .128 again (lowest free in the home
    // block). Ready 40 + 41 = 81 < 130 − 41 leased = 89: activate it.
    let p = plan_a(&state, 130.0, 130.0, &cfg, 80.0);
    assert_eq!(
        summary(&p),
        [
            (ActionKind::Activate, "10.0.0.64/26".into(), 20),
            (ActionKind::Reserve, "10.0.0.128/26".into(), 0),
            (ActionKind::Activate, "10.0.0.128/26".into(), 0),
        ]
    );
    assert_eq!(
        p.actions[0].reason,
        "demand came back: upper peak over the lead time 130 > 61 usable in 1 live shard(s); taken back from draining (20 lease(s)) instead of claiming a new shard"
    );
    assert_eq!(
        p.actions[2].reason,
        "ready 81 < target 89 (upper peak over the lead time 130 − 41 leased)"
    );
    apply(&mut state, &p, 80.0).unwrap();
    state.check_invariants().unwrap();
}

#[test]
fn with_drain_leased_off_only_shards_without_leases_are_drained() {
    let state = fragmented();
    let cfg = PlannerConfig {
        release_margin: 0.0,
        drain_leased: false,
        ..PlannerConfig::default()
    };
    assert!(plan_a(&state, 61.0, 61.0, &cfg, 40.0).is_empty());
}

#[test]
fn a_demand_moving_inside_the_band_never_flaps() {
    let mut state = three_active();
    allocate(&mut state, "a", "vm", 0..50, 1.0);
    state.take_journal();
    let cfg = PlannerConfig::default();
    let snapshot = state.snapshot();
    // Every step: lead <= 183 (no claim), and either 122 < lead or long > 91.5 (no release).
    // A rule without hysteresis (ceil(lead / 61) shards) would go 3, 2, 3, 2, 3.
    for (i, (lead, long)) in [
        (130.0, 130.0),
        (100.0, 130.0),
        (125.0, 140.0),
        (95.0, 95.0),
        (130.0, 100.0),
        (61.0, 92.0),
    ]
    .into_iter()
    .enumerate()
    {
        let now = 10.0 * (i + 1) as f64;
        let p = plan_a(&state, lead, long, &cfg, now);
        assert!(p.is_empty(), "step {i}: {:?}", p.actions);
        assert_eq!(apply(&mut state, &p, now).unwrap(), Applied::default());
        assert_eq!(state.snapshot(), snapshot, "step {i}");
    }
    assert!(!state.has_journal());
}

#[test]
fn headroom_is_added_to_both_horizons() {
    let state = three_active();
    let cfg = PlannerConfig {
        ready_headroom: 70,
        ..PlannerConfig::default()
    };
    // 130 + 70 = 200 > 183: a fourth shard.
    let p = plan_a(&state, 130.0, 130.0, &cfg, 1.0);
    assert_eq!(
        summary(&p)[0],
        (ActionKind::Reserve, "10.0.0.192/26".into(), 0)
    );
    assert_eq!(
        p.actions[0].reason,
        "upper peak over the lead time 130 + headroom 70 > 183 usable in 3 live shard(s): want 4 × /26 (61 usable each)"
    );
    // 10 + 70 = 80 over the longer horizon <= 91.5 with 2 shards left, 80 <= 122: one goes.
    let p = plan_a(&state, 10.0, 10.0, &cfg, 1.0);
    assert_eq!(
        summary(&p),
        [(ActionKind::Release, "10.0.0.128/26".into(), 0)]
    );
}
