//! The reconciler over a durable engine: history read back from the store, shards reserved ahead
//! of a steady rise, dry runs, restarts and the quantile controller. One pool (`10.0.0.0/16`,
//! /26 shards of 64 usable addresses: nothing reserved) and one subdivision (`web`), lead 120 s,
//! tick 60 s: the claim window is `[0, 180 s)`, the release window `[0, 1800 s)`.

use std::path::Path;

use cidrcast_core::model::{PoolSpec, ShardState, SubdivisionSpec};
use cidrcast_core::{AllocPath, Settings};
use cidrcast_engine::reconcile::{
    ActionKind, Reconciler, ReconcilerConfig, ReconcilerStats, SubForecast,
};
use cidrcast_engine::Engine;
use cidrcast_store::{RedbStore, Store};

const LEAD: f64 = 120.0;

fn open(dir: &Path) -> Engine<RedbStore> {
    let engine = Engine::open(RedbStore::open(dir).unwrap(), Settings::default()).unwrap();
    engine
        .ensure_config(
            &[PoolSpec::new("v4", "10.0.0.0/16".parse().unwrap(), 26)],
            &[SubdivisionSpec::new("web")],
        )
        .unwrap();
    engine
}

fn create(engine: &Engine<RedbStore>, vm: &str, time: f64) -> AllocPath {
    engine
        .execute_at(time, |ipam, now| ipam.allocate("web", vm, None, None, now))
        .unwrap()
        .path
}

fn delete(engine: &Engine<RedbStore>, vm: &str, time: f64) {
    engine
        .execute_at(time, |ipam, now| ipam.release(vm, now))
        .unwrap();
}

/// A steady rise: `n` creates, one every 10 s from t = 600 (6 a minute).
fn rise(engine: &Engine<RedbStore>, n: usize) {
    for k in 0..n {
        create(engine, &format!("vm-{k}"), 600.0 + 10.0 * k as f64);
    }
}

/// (active, reserved) shards of `web`, from the store.
fn shard_states(engine: &Engine<RedbStore>) -> (usize, usize) {
    let shards = engine.store().load().unwrap().shards;
    let count = |s: ShardState| shards.iter().filter(|r| r.state == s).count();
    (count(ShardState::Active), count(ShardState::Reserved))
}

#[test]
fn catch_up_reads_the_allocations_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    for k in 0..5 {
        create(&engine, &format!("vm-{k}"), 600.0 + 10.0 * k as f64);
    }
    delete(&engine, "vm-1", 650.0);
    delete(&engine, "vm-3", 660.0);

    let mut r = Reconciler::new(ReconcilerConfig::predictive(LEAD)).unwrap();
    assert_eq!(r.catch_up(&engine).unwrap(), 7, "5 creates and 2 deletes");
    assert_eq!(r.model().alive("web"), 3);
    assert_eq!(r.last_seq(), 7);
    // The grid starts at the first minute after the first event: ⌊600 / 60⌋ · 60 + 60.
    assert_eq!(r.model().origin(), Some(660.0));
    assert_eq!(r.catch_up(&engine).unwrap(), 0, "nothing new");

    create(&engine, "vm-5", 700.0);
    assert_eq!(r.catch_up(&engine).unwrap(), 1);
    assert_eq!((r.model().alive("web"), r.last_seq()), (4, 8));
    assert_eq!(r.stats().events_observed, 8);
}

#[test]
fn a_steady_rise_reserves_a_shard_ahead_of_demand_and_activates_it_after_the_lead() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    // 240 creates from 600 to 2990, each on demand: ⌈240 / 64⌉ = 4 active shards (256).
    rise(&engine, 240);
    assert_eq!(shard_states(&engine), (4, 0));

    let mut r = Reconciler::new(ReconcilerConfig::predictive(LEAD)).unwrap();
    r.catch_up(&engine).unwrap();
    // At 3000 (grid index 39 from 660), each of the last 30 known claim windows (grid 7..=36,
    // ending by 3000) saw 18 creates in its 180 s, so the 0.9 quantile of the rise is 18; the
    // release windows known (grid 0..=9, 1800 s each) saw 180.
    assert_eq!(
        r.forecasts(3000.0),
        [SubForecast {
            subdivision: "web".into(),
            alive: 240,
            rise_lead_upper: 18.0,
            rise_keep_upper: 180.0,
            quantile: 0.9,
            demand_score: 258.0,
        }]
    );

    // Demand 240 + 18 = 258 > 256: one more shard, reserved now, active only 120 s later.
    let plan = r.tick(&engine, 3000.0, false).unwrap();
    let kinds: Vec<ActionKind> = plan.actions.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ActionKind::Reserve]);
    let reserved = plan.actions[0].prefix;
    assert_eq!(
        (plan.targets[0].wanted_shards, plan.targets[0].ready_target),
        (5, 18)
    );
    assert_eq!(shard_states(&engine), (4, 1), "durable");

    // 3060: the rise is still 18 (29 windows of 18, one of 12); reserved for 60 s < 120 s.
    let plan = r.tick(&engine, 3060.0, false).unwrap();
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);

    // 3120: still 18 (28 windows of 18, then 12 and 6: the 27th smallest of 30 is 18), and the
    // 16 free addresses of the active shards are fewer than the 18 to hold ready: activate.
    let plan = r.tick(&engine, 3120.0, false).unwrap();
    let acts: Vec<_> = plan.actions.iter().map(|a| (a.kind, a.prefix)).collect();
    assert_eq!(acts, [(ActionKind::Activate, reserved)]);
    assert_eq!(shard_states(&engine), (5, 0));

    // The next 18 VMs find their addresses ready: no claim on the spot.
    for k in 0..18 {
        let path = create(&engine, &format!("late-{k}"), 3121.0 + k as f64);
        assert_eq!(path, AllocPath::Ready, "VM {k}");
    }
    let ReconcilerStats {
        ticks,
        plan_actions,
        last_tick,
        ..
    } = r.stats();
    assert_eq!((ticks, plan_actions, last_tick), (3, 2, Some(3120.0)));
}

#[test]
fn a_dry_run_changes_nothing_in_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    rise(&engine, 240);
    let snapshot = |e: &Engine<RedbStore>| {
        let mut s = e.store().load().unwrap();
        s.normalize();
        s
    };
    let (before, counts, commits) = (
        snapshot(&engine),
        engine.store().counts().unwrap(),
        engine.commits(),
    );

    let mut r = Reconciler::new(ReconcilerConfig::predictive(LEAD)).unwrap();
    let dry = r.tick(&engine, 3000.0, true).unwrap();
    let kinds: Vec<ActionKind> = dry.actions.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, [ActionKind::Reserve], "the plan a real tick makes");
    assert_eq!(snapshot(&engine), before);
    assert_eq!(engine.store().counts().unwrap(), counts);
    assert_eq!(engine.commits(), commits, "no commit");
    assert_eq!(r.stats().ticks, 0, "a dry run is not a tick");

    // The real tick then does exactly what the dry run showed.
    let plan = r.tick(&engine, 3000.0, false).unwrap();
    assert_eq!(plan.actions, dry.actions);
    assert_eq!(engine.commits(), commits + 1, "one commit");
    assert_eq!(shard_states(&engine), (4, 1));
}

#[test]
fn after_a_restart_the_history_gives_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let (seq, forecasts) = {
        let engine = open(dir.path());
        rise(&engine, 240);
        for k in [3, 7, 11] {
            delete(&engine, &format!("vm-{k}"), 2995.0);
        }
        let mut r = Reconciler::new(ReconcilerConfig::predictive(LEAD)).unwrap();
        assert_eq!(r.catch_up(&engine).unwrap(), 243);
        assert_eq!(r.model().alive("web"), 237);
        (r.last_seq(), r.forecasts(3000.0))
    };

    let engine = open(dir.path());
    let mut r = Reconciler::new(ReconcilerConfig::predictive(LEAD)).unwrap();
    assert_eq!(r.catch_up(&engine).unwrap(), 243, "from seq 0");
    assert_eq!(r.model().alive("web"), 237);
    assert_eq!(r.last_seq(), seq);
    assert_eq!(r.model().origin(), Some(660.0));
    assert_eq!(r.forecasts(3000.0), forecasts);
    assert_eq!(forecasts[0].alive, 237);
}

#[test]
fn misses_above_the_target_raise_the_quantile() {
    let dir = tempfile::tempdir().unwrap();
    let engine = open(dir.path());
    let cfg = ReconcilerConfig {
        quantile_bounds: (0.5, 0.99),
        gain: 0.5,
        ..ReconcilerConfig::predictive(LEAD).with_target_miss(0.01)
    };
    let mut r = Reconciler::new(cfg).unwrap();
    // The first tick only takes the allocator's counters as the baseline.
    r.tick(&engine, 600.0, false).unwrap();
    assert_eq!(r.stats().quantile, 0.9);

    // 100 creates on demand: VMs 1 and 65 each claim a shard (2 misses), the rest are ready.
    let paths: Vec<AllocPath> = (0..100)
        .map(|k| create(&engine, &format!("vm-{k}"), 601.0 + k as f64))
        .collect();
    assert_eq!(paths.iter().filter(|p| **p != AllocPath::Ready).count(), 2);

    // 2 misses in 100 against 1 expected: the tail 0.1 becomes 0.1 · e^(0.5 · (1 − 2)) =
    // 0.0606530659713, the quantile 0.9393469340287.
    r.tick(&engine, 780.0, false).unwrap();
    let stats = r.stats();
    assert!(
        (stats.quantile - 0.939_346_934_028_7).abs() < 1e-9,
        "{}",
        stats.quantile
    );
    assert_eq!((stats.allocations, stats.misses), (100, 2));
    assert_eq!(stats.miss_rate, 0.02);
    assert_eq!(r.forecasts(780.0)[0].quantile, stats.quantile);
}
