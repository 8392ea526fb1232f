//! `apply` is all or nothing: any failure leaves the state (records and journal) as it was.

mod common;

use cidrcast_core::model::Reason;
use cidrcast_planner::{apply, plan, Action, ActionKind, Demand, PlannerConfig, PlannerError};
use common::{allocate, ipam, net, pool61, sub};

#[test]
fn a_plan_made_on_another_state_is_refused_and_changes_nothing() {
    let a_state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a"), sub("b")]);
    let mut b_state = a_state.clone();
    // On the other state, b claimed first: its home is 10.0.0.0/24, so a's home goes to the
    // largest free block, 10.0.128.0/17, and a's first shard is 10.0.128.0/26, not 10.0.0.0/26.
    b_state
        .claim_shard("b", None, Reason::Operator, 0.0)
        .unwrap();
    b_state.take_journal();
    let p = plan(
        &a_state,
        &[Demand::new("a", 130.0, 130.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    let before = b_state.snapshot();
    let err = apply(&mut b_state, &p, 0.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "action 0 (reserve 10.0.0.0/26 for subdivision `a`): the allocator placed the shard at \
         10.0.128.0/26 instead; the state no longer matches the plan, nothing was applied"
    );
    assert_eq!(b_state.snapshot(), before);
    assert!(!b_state.has_journal());
    b_state.check_invariants().unwrap();
}

#[test]
fn a_failure_after_successful_actions_undoes_them_all() {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let mut p = plan(
        &state,
        &[Demand::new("a", 130.0, 130.0, 1.0)],
        &PlannerConfig::default(),
        0.0,
    )
    .unwrap();
    assert_eq!(p.actions.len(), 6);
    // Six good actions, then one on a shard nobody holds.
    p.actions.push(Action {
        kind: ActionKind::Drain,
        subdivision: "a".into(),
        pool: "v4".into(),
        prefix: net("10.9.9.0/26"),
        leases: 0,
        reason: "forced failure".into(),
    });
    let before = state.snapshot();
    let err = apply(&mut state, &p, 0.0).unwrap_err();
    assert!(
        matches!(err, PlannerError::Stale { index: 6, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "action 6 (drain 10.9.9.0/26 for subdivision `a`): no shard 10.9.9.0/26 is claimed in \
         pool `v4`; the state no longer matches the plan, nothing was applied"
    );
    assert_eq!(state.snapshot(), before);
    assert!(!state.has_journal());
    assert!(state.shards(None).unwrap().is_empty());
}

#[test]
fn a_shard_that_got_a_lease_since_the_plan_is_not_released() {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let cfg = PlannerConfig::default();
    let p = plan(&state, &[Demand::new("a", 130.0, 130.0, 1.0)], &cfg, 0.0).unwrap();
    apply(&mut state, &p, 0.0).unwrap();
    allocate(&mut state, "a", "vm", 0..122, 1.0); // .0 and .64 full, .128 empty
                                                  // 122 still fit in 2 shards and the longer horizon says 0: .128 is released.
    let p = plan(&state, &[Demand::new("a", 122.0, 0.0, 1.0)], &cfg, 2.0).unwrap();
    assert_eq!(p.actions.len(), 1);
    assert_eq!(
        (p.actions[0].kind, p.actions[0].prefix),
        (ActionKind::Release, net("10.0.0.128/26"))
    );
    // Meanwhile a VM lands in .128.
    let a = state.allocate("a", "late", None, None, 3.0).unwrap();
    assert_eq!(a.shard, net("10.0.0.128/26"));
    state.take_journal();
    let before = state.snapshot();
    let err = apply(&mut state, &p, 3.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "action 0 (release 10.0.0.128/26 for subdivision `a`): the shard holds 1 lease(s), the \
         plan saw 0; the state no longer matches the plan, nothing was applied"
    );
    assert_eq!(state.snapshot(), before);
    assert!(!state.has_journal());
}

#[test]
fn the_journal_of_an_applied_plan_records_every_transition() {
    let mut state = ipam(&[pool61("v4", "10.0.0.0/16")], &[sub("a")]);
    let p = plan(
        &state,
        &[Demand::new("a", 61.0, 61.0, 1.0)],
        &PlannerConfig::default(),
        5.0,
    )
    .unwrap();
    apply(&mut state, &p, 5.0).unwrap();
    let transitions: Vec<(Option<String>, Option<String>, String)> = state
        .take_journal()
        .into_iter()
        .filter_map(|c| match c {
            cidrcast_core::model::Change::Transition(t) => Some((
                t.from.map(|s| s.to_string()),
                t.to.map(|s| s.to_string()),
                t.reason.to_string(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (None, Some("reserved".into()), "forecast".into()),
            (
                Some("reserved".into()),
                Some("active".into()),
                "forecast".into()
            ),
        ]
    );
}
