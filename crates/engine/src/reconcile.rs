//! The predictive reconciler: history → forecasts → plan → apply, in one store transaction per
//! tick. The loop `cidrcast demo` runs over a trace, and a daemon runs in the background.
//!
//! * [`DemandModel`] (pure, no store) keeps one short-horizon [`IncreaseForecaster`] per
//!   subdivision, fed every VM create (+1) and delete (−1) in time order. At a tick it turns the
//!   forecasts' upper `quantile` into planner [`Demand`]s:
//!   `upper_lead = alive + rise`, `upper_long = alive + max(rise, keep)`, `score = alive + rise`,
//!   where `rise` is the upper quantile of the rise over the claim window (`[0, lead + tick)`),
//!   `keep` over the release window (`[0, max(keep_horizon, lead + tick))`), both at least 0.
//! * [`Reconciler`] reads the new VM events from the store's history log
//!   ([`Reconciler::catch_up`]), and at each tick ([`Reconciler::tick`]) plans and applies the
//!   plan inside one [`Engine::execute_at`] (one durable commit), or only plans (`dry_run`).
//! * **Online quantile adaptation.** With a `target_miss`, each tick compares the allocations
//!   since the last tick that did not come from a ready shard (the allocator's
//!   [`Counters`]: `allocations − ready_hits`) with the target, and scales the tail probability
//!   `1 − q` of the quantile ([`QuantileController`]): each miss multiplies it by
//!   `e^(−gain·(1 − target))`, each hit by `e^(gain·target)`, so it stands still exactly when the
//!   miss rate is the target, and `q` stays within `quantile_bounds`.
//! * **Forecast error.** Each applied tick's claim-window forecast is scored once its window has
//!   passed, against the realised rise (the peak alive over the window less the alive count at
//!   the tick): coverage (realised ≤ forecast) and mean absolute error, in [`ReconcilerStats`].
//!
//! Causality: a tick at `now` uses the grid time `origin + ⌊(now − origin) / tick⌋·tick` and only
//! events before it; feed events in time order (times going backwards are clamped to the last
//! one) and everything before a tick before ticking.

use std::collections::{BTreeMap, VecDeque};

use cidrcast_core::model::{EventKind, VmEvent};
use cidrcast_core::Counters;
use cidrcast_forecast::increase::IncreaseForecaster;
use cidrcast_store::Store;
use serde::{Deserialize, Serialize};

use crate::{Engine, EngineError};

pub use cidrcast_forecast::increase::IncreaseConfig;
pub use cidrcast_planner::{Action, ActionKind, Demand, Plan, PlannerConfig, PlannerError};

/// What went wrong in a reconciler tick.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The engine (allocator or store) failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The planner refused the demands or the plan did not apply; nothing was applied.
    #[error(transparent)]
    Planner(#[from] PlannerError),
    /// A reconciler setting is out of range.
    #[error("reconciler config: {field} = {value}: {reason}")]
    Config {
        field: &'static str,
        value: String,
        reason: String,
    },
}

/// The defaults of the simulator's predictive policy (`crates/sim/src/policy.rs`, `Policy::parse
/// ("predictive", ..)`), which the demo runs: a 60 s grid, the 0.9 quantile, samples from the same
/// time of day on the last 7 days and from the last 30 ticks, periodic detection over 3 cycles.
const PREDICTIVE_TICK_S: f64 = 60.0;
const PREDICTIVE_QUANTILE: f64 = 0.9;
const PREDICTIVE_DAYS: usize = 7;
const PREDICTIVE_RECENT: usize = 30;
const PREDICTIVE_REPEATS: usize = 3;
/// The demo's release horizon (`keep_horizon=1800`): an empty shard goes only when the rise over
/// the next 30 minutes would not need it.
const PREDICTIVE_KEEP_HORIZON_S: f64 = 1800.0;

/// How the reconciler forecasts, plans and adapts.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconcilerConfig {
    /// Seconds from a shard's reservation until routers announce it (the planner's
    /// `activate_after_s`; the claim window of the forecaster ends `lead_s + tick_s` after a tick).
    pub lead_s: f64,
    /// Seconds between ticks; the forecaster's grid (`forecaster.step`) must be the same.
    pub tick_s: f64,
    /// The upper quantile of the forecasts the demands take (the initial one when adapting).
    pub quantile: f64,
    /// The short-horizon forecaster: horizon 0 for claims, horizon 1 for releases.
    pub forecaster: IncreaseConfig,
    pub planner: PlannerConfig,
    /// The miss rate (allocations not served from a ready shard ÷ allocations) to hold by
    /// moving the quantile; `None`: a fixed quantile.
    pub target_miss: Option<f64>,
    /// The range the adapted quantile stays in, `(lowest, highest)`, `0 < lowest <= highest < 1`.
    pub quantile_bounds: (f64, f64),
    /// How far one miss moves the tail probability `1 − q`: by a factor `e^(−gain·(1 − target))`
    /// (and one hit by `e^(gain·target)`).
    pub gain: f64,
}

impl ReconcilerConfig {
    /// What `cidrcast demo` runs: the simulator's predictive policy with its defaults (60 s tick,
    /// 0.9 quantile, claims over `[0, lead + tick)`) and a 30 min release horizon, at lead time
    /// `lead_s`; the planner activates a reserved shard `lead_s` after its reservation, gives
    /// back only empty shards, with the longer horizon as the only hysteresis (release margin 0).
    /// Fixed quantile; with a `target_miss` it would move within `[0.5, 0.999]`, gain 0.05.
    pub fn predictive(lead_s: f64) -> ReconcilerConfig {
        ReconcilerConfig {
            lead_s,
            tick_s: PREDICTIVE_TICK_S,
            quantile: PREDICTIVE_QUANTILE,
            forecaster: IncreaseConfig::for_lead(
                lead_s,
                PREDICTIVE_TICK_S,
                PREDICTIVE_KEEP_HORIZON_S,
                PREDICTIVE_DAYS,
                PREDICTIVE_RECENT,
                PREDICTIVE_REPEATS,
                false,
            ),
            planner: PlannerConfig {
                activate_after_s: lead_s,
                // The longer horizon is the hysteresis; a margin in proportion to capacity would
                // keep thousands of idle addresses in a subdivision of 20,000 VMs.
                release_margin: 0.0,
                // Only empty shards go back, as in the simulator: draining a shard with leases
                // strands its free addresses until its last VM leaves.
                drain_leased: false,
                ..PlannerConfig::default()
            },
            target_miss: None,
            quantile_bounds: (0.5, 0.999),
            gain: 0.05,
        }
    }

    /// The same, holding the miss rate at `target` by moving the quantile.
    pub fn with_target_miss(mut self, target: f64) -> ReconcilerConfig {
        self.target_miss = Some(target);
        self
    }

    /// Checks every field, naming the bad one and its value.
    pub fn validate(&self) -> Result<(), ReconcileError> {
        let bad = |field: &'static str, value: String, reason: &str| {
            Err(ReconcileError::Config {
                field,
                value,
                reason: reason.to_string(),
            })
        };
        if !(self.lead_s.is_finite() && self.lead_s >= 0.0) {
            return bad("lead_s", self.lead_s.to_string(), "must be seconds >= 0");
        }
        if !(self.tick_s.is_finite() && self.tick_s > 0.0) {
            return bad("tick_s", self.tick_s.to_string(), "must be seconds > 0");
        }
        if self.forecaster.step != self.tick_s {
            return bad(
                "forecaster.step",
                self.forecaster.step.to_string(),
                &format!("must equal tick_s ({})", self.tick_s),
            );
        }
        if self.forecaster.horizons.len() < 2 {
            return bad(
                "forecaster.horizons",
                self.forecaster.horizons.len().to_string(),
                "needs two windows: claims, then releases",
            );
        }
        if !(self.quantile > 0.0 && self.quantile <= 1.0) {
            return bad("quantile", self.quantile.to_string(), "must lie in (0, 1]");
        }
        if let Some(t) = self.target_miss {
            if !(t > 0.0 && t < 1.0) {
                return bad("target_miss", t.to_string(), "must lie in (0, 1)");
            }
            let (lo, hi) = self.quantile_bounds;
            if !(lo > 0.0 && lo <= hi && hi < 1.0) {
                return bad(
                    "quantile_bounds",
                    format!("({lo}, {hi})"),
                    "must satisfy 0 < lowest <= highest < 1",
                );
            }
            if !(self.gain.is_finite() && self.gain >= 0.0) {
                return bad(
                    "gain",
                    self.gain.to_string(),
                    "must be a finite number >= 0",
                );
            }
        }
        self.planner.validate()?;
        Ok(())
    }
}

/// The first grid time strictly after `time` on a grid of `tick` seconds from 0: where the demo
/// (and [`DemandModel::unanchored`]) starts the forecasters' grid.
pub fn grid_after(time: f64, tick: f64) -> f64 {
    (time / tick).floor() * tick + tick
}

/// One subdivision's forecast at a tick (what a `/v1/forecasts` endpoint shows).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SubForecast {
    pub subdivision: String,
    /// VMs alive after the events observed so far.
    pub alive: u64,
    /// Upper `quantile` of the rise over the claim window (`[0, lead + tick)`), at least 0.
    pub rise_lead_upper: f64,
    /// Upper `quantile` of the rise over the release window, at least `rise_lead_upper`.
    pub rise_keep_upper: f64,
    pub quantile: f64,
    /// `alive + rise_lead_upper`: orders subdivisions when space is scarce.
    pub demand_score: f64,
}

impl SubForecast {
    /// The planner's demand: `upper_lead = alive + rise_lead_upper`, `upper_long = alive +
    /// rise_keep_upper`, `score = demand_score`, in the subdivision's default pool.
    pub fn demand(&self) -> Demand {
        let alive = self.alive as f64;
        Demand::new(
            &self.subdivision,
            alive + self.rise_lead_upper,
            alive + self.rise_keep_upper,
            self.demand_score,
        )
    }
}

/// Scores of the claim-window forecasts whose window has passed.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct ErrorTally {
    resolved: u64,
    covered: u64,
    abs_error: f64,
}

/// Per-subdivision forecasters over the VM events, and the demands they give. No store.
#[derive(Clone, Debug)]
pub struct DemandModel {
    forecaster: IncreaseConfig,
    tick: f64,
    quantile: f64,
    origin: Option<f64>,
    subs: BTreeMap<String, IncreaseForecaster>,
    last_time: f64,
    last_ix: usize,
    events: u64,
    /// Claim-window forecasts waiting for their window to pass: (grid index, subdivision, rise).
    pending: VecDeque<(usize, String, f64)>,
    errors: ErrorTally,
}

impl DemandModel {
    /// A model whose grid starts at `origin` (the first decision time; events may come before).
    pub fn new(cfg: &ReconcilerConfig, origin: f64) -> DemandModel {
        DemandModel {
            origin: Some(origin),
            ..DemandModel::unanchored(cfg)
        }
    }

    /// A model whose grid starts at the first grid time after the first event it observes
    /// ([`grid_after`]): the same origin every time the same history is replayed.
    pub fn unanchored(cfg: &ReconcilerConfig) -> DemandModel {
        DemandModel {
            forecaster: cfg.forecaster.clone(),
            tick: cfg.tick_s,
            quantile: cfg.quantile,
            origin: None,
            subs: BTreeMap::new(),
            last_time: f64::NEG_INFINITY,
            last_ix: 0,
            events: 0,
            pending: VecDeque::new(),
            errors: ErrorTally::default(),
        }
    }

    /// The grid's origin, once known.
    pub fn origin(&self) -> Option<f64> {
        self.origin
    }

    /// The quantile the demands take.
    pub fn quantile(&self) -> f64 {
        self.quantile
    }

    pub fn set_quantile(&mut self, quantile: f64) {
        self.quantile = quantile;
    }

    /// Events observed so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The alive count of `subdivision` after the events observed so far (0 if never seen;
    /// negative only if deletes came without their creates).
    pub fn alive(&self, subdivision: &str) -> i64 {
        self.subs.get(subdivision).map_or(0, |f| f.alive())
    }

    /// The subdivisions seen so far, by name.
    pub fn subdivisions(&self) -> impl Iterator<Item = &str> {
        self.subs.keys().map(String::as_str)
    }

    /// Records one VM event: a create raises its subdivision's alive count by one, a delete
    /// lowers it; a subdivision's forecaster starts at its first event. Events in time order.
    pub fn observe(&mut self, ev: &VmEvent) {
        let origin = *self
            .origin
            .get_or_insert_with(|| grid_after(ev.time, self.tick));
        let time = ev.time.max(self.last_time);
        self.last_time = time;
        let delta = match ev.kind {
            EventKind::Create => 1,
            EventKind::Delete => -1,
        };
        self.events += 1;
        if let Some(fc) = self.subs.get_mut(&ev.subdivision) {
            fc.observe(time, delta);
        } else {
            let mut fc = IncreaseForecaster::new(self.forecaster.clone(), origin);
            fc.observe(time, delta);
            self.subs.insert(ev.subdivision.clone(), fc);
        }
    }

    /// The grid index of the decision time at or before `now` (never before the last one).
    fn grid_index(&mut self, now: f64) -> Option<usize> {
        let origin = self.origin?;
        // A tiny slack so that a tick time accumulated in floating point lands on its index.
        let x = ((now - origin) / self.tick + 1e-6).floor();
        let ix = if x > 0.0 { x as usize } else { 0 };
        self.last_ix = self.last_ix.max(ix);
        Some(self.last_ix)
    }

    /// Every subdivision's forecast at `now` (by name), from the events before its grid time.
    pub fn forecasts(&mut self, now: f64) -> Vec<SubForecast> {
        let Some(ix) = self.grid_index(now) else {
            return Vec::new();
        };
        let q = self.quantile;
        self.subs
            .iter_mut()
            .map(|(sub, fc)| {
                let alive = fc.alive().max(0) as f64;
                let rise = fc.forecast(0, ix).upper(q).max(0.0);
                let keep = fc.forecast(1, ix).upper(q).max(rise);
                SubForecast {
                    subdivision: sub.clone(),
                    alive: alive as u64,
                    rise_lead_upper: rise,
                    rise_keep_upper: keep,
                    quantile: q,
                    demand_score: alive + rise,
                }
            })
            .collect()
    }

    /// The planner's demands at `now`: [`SubForecast::demand`] of each forecast.
    pub fn demands(&mut self, now: f64) -> Vec<Demand> {
        self.forecasts(now)
            .iter()
            .map(SubForecast::demand)
            .collect()
    }

    /// Scores the forecasts made earlier whose claim window has passed by `now`, then keeps
    /// `forecasts` (made at `now`) to score later.
    pub fn record(&mut self, now: f64, forecasts: &[SubForecast]) {
        let Some(ix) = self.grid_index(now) else {
            return;
        };
        while let Some((made, sub, rise)) = self.pending.front() {
            let Some(fc) = self.subs.get_mut(sub) else {
                self.pending.pop_front();
                continue;
            };
            let Some(realised) = fc.realised(0, *made, ix) else {
                break;
            };
            let e = &mut self.errors;
            e.resolved += 1;
            e.covered += u64::from(realised <= *rise);
            e.abs_error += (realised - rise).abs();
            self.pending.pop_front();
        }
        self.pending.extend(
            forecasts
                .iter()
                .map(|f| (ix, f.subdivision.clone(), f.rise_lead_upper)),
        );
    }
}

/// Moves the quantile to hold a target miss rate: multiplicative steps on the tail `1 − q`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantileController {
    pub target_miss: f64,
    pub bounds: (f64, f64),
    pub gain: f64,
}

impl QuantileController {
    /// The quantile after `allocations` of which `misses` did not come from a ready shard:
    /// `1 − (1 − q)·e^(gain·(allocations·target − misses))`, clamped to the bounds. Misses above
    /// the target share raise it, below lower it, exactly at it leave it; no allocation, no
    /// change (but the clamp).
    pub fn next(&self, quantile: f64, allocations: u64, misses: u64) -> f64 {
        let excess = allocations as f64 * self.target_miss - misses as f64;
        let tail = (1.0 - quantile) * (self.gain * excess).exp();
        (1.0 - tail).clamp(self.bounds.0, self.bounds.1)
    }
}

/// What the reconciler has done and seen (serialisable for a status endpoint).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReconcilerStats {
    /// VM events fed to the model (from the store and directly).
    pub events_observed: u64,
    /// The last history sequence number read from the store.
    pub last_seq: u64,
    /// Ticks whose plan was applied (dry runs not counted).
    pub ticks: u64,
    /// The time of the last applied tick.
    pub last_tick: Option<f64>,
    /// Actions applied over all ticks.
    pub plan_actions: u64,
    /// Actions of the last applied plan.
    pub last_plan_actions: u64,
    /// Addresses the last applied plan could not give (sum of its shortfalls).
    pub last_shortfall_addresses: u64,
    /// The quantile the demands take now.
    pub quantile: f64,
    pub target_miss: Option<f64>,
    /// Allocations and misses (not from a ready shard) between the first and the last tick.
    pub allocations: u64,
    pub misses: u64,
    /// `misses / allocations` (0 without allocations).
    pub miss_rate: f64,
    /// Claim-window forecasts scored against the realised rise.
    pub forecasts_scored: u64,
    /// Share of them whose upper bound covered the realised rise (0 when none).
    pub coverage: f64,
    /// Mean |realised rise − forecast upper bound| (0 when none).
    pub mean_abs_error: f64,
}

/// History → forecasts → plan → apply. Holds no engine: pass it at each call.
#[derive(Clone, Debug)]
pub struct Reconciler {
    cfg: ReconcilerConfig,
    model: DemandModel,
    last_seq: u64,
    /// The allocator's counters at the last applied tick.
    last_counters: Option<Counters>,
    ticks: u64,
    last_tick: Option<f64>,
    plan_actions: u64,
    last_plan_actions: u64,
    last_shortfall: u64,
    allocations: u64,
    misses: u64,
}

/// History events read from the store per call.
const CATCH_UP_BATCH: usize = 10_000;

impl Reconciler {
    /// A reconciler whose grid starts at the first grid time after the first event it sees.
    pub fn new(cfg: ReconcilerConfig) -> Result<Reconciler, ReconcileError> {
        let model = DemandModel::unanchored(&cfg);
        Reconciler::with_model(cfg, model)
    }

    /// A reconciler whose grid starts at `origin`.
    pub fn with_origin(cfg: ReconcilerConfig, origin: f64) -> Result<Reconciler, ReconcileError> {
        let model = DemandModel::new(&cfg, origin);
        Reconciler::with_model(cfg, model)
    }

    fn with_model(
        cfg: ReconcilerConfig,
        mut model: DemandModel,
    ) -> Result<Reconciler, ReconcileError> {
        cfg.validate()?;
        if cfg.target_miss.is_some() {
            let (lo, hi) = cfg.quantile_bounds;
            model.set_quantile(cfg.quantile.clamp(lo, hi));
        }
        Ok(Reconciler {
            cfg,
            model,
            last_seq: 0,
            last_counters: None,
            ticks: 0,
            last_tick: None,
            plan_actions: 0,
            last_plan_actions: 0,
            last_shortfall: 0,
            allocations: 0,
            misses: 0,
        })
    }

    pub fn config(&self) -> &ReconcilerConfig {
        &self.cfg
    }

    pub fn model(&self) -> &DemandModel {
        &self.model
    }

    /// The last history sequence number read from the store.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Feeds one event to the model directly (not from the store): for a caller that has the
    /// events at hand, such as a trace replay. Do not mix with [`Self::catch_up`] on the same
    /// events.
    pub fn observe(&mut self, ev: &VmEvent) {
        self.model.observe(ev);
    }

    /// Reads the VM events the store's history holds after the last one read, in order, and
    /// feeds them to the model; returns how many.
    pub fn catch_up<S: Store>(&mut self, engine: &Engine<S>) -> Result<usize, EngineError> {
        let mut n = 0;
        loop {
            let batch = engine
                .store()
                .events(self.last_seq, CATCH_UP_BATCH)
                .map_err(EngineError::Store)?;
            let Some(&(last, _)) = batch.last() else {
                return Ok(n);
            };
            for (_, ev) in &batch {
                self.model.observe(ev);
            }
            n += batch.len();
            self.last_seq = last;
        }
    }

    /// Every subdivision's forecast at `now` (see [`DemandModel::forecasts`]).
    pub fn forecasts(&mut self, now: f64) -> Vec<SubForecast> {
        self.model.forecasts(now)
    }

    /// [`Self::catch_up`], then [`Self::tick_with`].
    pub fn tick<S: Store>(
        &mut self,
        engine: &Engine<S>,
        now: f64,
        dry_run: bool,
    ) -> Result<Plan, ReconcileError> {
        self.catch_up(engine)?;
        self.tick_with(engine, now, dry_run)
    }

    /// One tick at `now` on the events observed so far: adapts the quantile to the misses since
    /// the last tick (with a `target_miss`), forecasts, plans, and applies the plan in one
    /// [`Engine::execute_at`] (one durable commit, none when nothing changes). With `dry_run`
    /// it only plans, on a copy of the state at `now`: nothing changes, in the store or here.
    pub fn tick_with<S: Store>(
        &mut self,
        engine: &Engine<S>,
        now: f64,
        dry_run: bool,
    ) -> Result<Plan, ReconcileError> {
        if dry_run {
            let demands = self.model.demands(now);
            let cfg = &self.cfg.planner;
            let plan = engine.read(|ipam| {
                let mut state = ipam.clone();
                state.expire(now);
                cidrcast_planner::plan(&state, &demands, cfg, now)
            })??;
            return Ok(plan);
        }
        let counters = engine.read(|ipam| ipam.counters())?;
        if let Some(prev) = self.last_counters {
            let allocations = counters.allocations.saturating_sub(prev.allocations);
            let hits = counters.ready_hits.saturating_sub(prev.ready_hits);
            let misses = allocations.saturating_sub(hits);
            self.allocations += allocations;
            self.misses += misses;
            if let Some(target_miss) = self.cfg.target_miss {
                let controller = QuantileController {
                    target_miss,
                    bounds: self.cfg.quantile_bounds,
                    gain: self.cfg.gain,
                };
                let q = controller.next(self.model.quantile(), allocations, misses);
                self.model.set_quantile(q);
            }
        }
        self.last_counters = Some(counters);
        let forecasts = self.model.forecasts(now);
        self.model.record(now, &forecasts);
        let demands: Vec<Demand> = forecasts.iter().map(SubForecast::demand).collect();
        let cfg = &self.cfg.planner;
        let plan = engine.execute_at(now, |ipam, now| {
            Ok(
                cidrcast_planner::plan(ipam, &demands, cfg, now).and_then(|plan| {
                    cidrcast_planner::apply(ipam, &plan, now)?;
                    Ok(plan)
                }),
            )
        })??;
        self.ticks += 1;
        self.last_tick = Some(now);
        self.last_plan_actions = plan.actions.len() as u64;
        self.plan_actions += self.last_plan_actions;
        self.last_shortfall = plan.shortfalls.iter().map(|s| s.short_addresses).sum();
        Ok(plan)
    }

    pub fn stats(&self) -> ReconcilerStats {
        let e = self.model.errors;
        let per = |x: f64, n: u64| if n == 0 { 0.0 } else { x / n as f64 };
        ReconcilerStats {
            events_observed: self.model.events(),
            last_seq: self.last_seq,
            ticks: self.ticks,
            last_tick: self.last_tick,
            plan_actions: self.plan_actions,
            last_plan_actions: self.last_plan_actions,
            last_shortfall_addresses: self.last_shortfall,
            quantile: self.model.quantile(),
            target_miss: self.cfg.target_miss,
            allocations: self.allocations,
            misses: self.misses,
            miss_rate: per(self.misses as f64, self.allocations),
            forecasts_scored: e.resolved,
            coverage: per(e.covered as f64, e.resolved),
            mean_abs_error: per(e.abs_error, e.resolved),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> QuantileController {
        QuantileController {
            target_miss: 0.01,
            bounds: (0.5, 0.99),
            gain: 0.5,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn misses_above_the_target_raise_the_quantile() {
        // 3 misses in 100 allocations, target 1%: exponent 0.5 × (100 × 0.01 − 3) = −1, so the
        // tail 0.1 becomes 0.1 / e = 0.0367879441171, q = 0.9632120558829.
        let q = controller().next(0.9, 100, 3);
        assert!(close(q, 0.963_212_055_882_9), "{q}");
    }

    #[test]
    fn misses_below_the_target_lower_the_quantile() {
        // No miss in 100: exponent 0.5 × 1 = 0.5, tail 0.1 × e^0.5 = 0.1648721270700, q =
        // 0.8351278729300.
        let q = controller().next(0.9, 100, 0);
        assert!(close(q, 0.835_127_872_930_0), "{q}");
    }

    #[test]
    fn at_the_target_or_without_allocations_nothing_moves() {
        assert!(close(controller().next(0.9, 100, 1), 0.9));
        assert!(close(controller().next(0.9, 0, 0), 0.9));
    }

    #[test]
    fn the_quantile_stays_within_its_bounds() {
        // 50 misses in 100: tail 0.1 × e^−24.5 ≈ 2.3e−12 → q ≈ 1, clamped to 0.99.
        assert_eq!(controller().next(0.9, 100, 50), 0.99);
        // 10,000 allocations without a miss: tail 0.1 × e^50 → q far below 0, clamped to 0.5.
        assert_eq!(controller().next(0.9, 10_000, 0), 0.5);
        // From the upper bound, one hit more than the target share lowers it again:
        // 200 allocations, 1 miss: exponent 0.5, tail 0.01 × e^0.5 = 0.0164872127070.
        let q = controller().next(0.99, 200, 1);
        assert!(close(q, 0.983_512_787_293_0), "{q}");
    }

    #[test]
    fn held_at_the_target_the_steps_cancel() {
        // A miss and 99 hits (the target share) take the tail back where it was.
        let c = controller();
        let q = c.next(c.next(0.9, 1, 1), 99, 0);
        assert!(close(q, 0.9), "{q}");
    }

    #[test]
    fn the_demo_config_validates() {
        let cfg = ReconcilerConfig::predictive(120.0);
        cfg.validate().unwrap();
        assert_eq!(cfg.forecaster.horizons[0].end, 180.0);
        assert_eq!(cfg.forecaster.horizons[1].end, 1800.0);
        assert_eq!(cfg.planner.activate_after_s, 120.0);
        let bad = ReconcilerConfig {
            tick_s: 30.0,
            ..cfg.clone()
        };
        assert!(matches!(
            bad.validate(),
            Err(ReconcileError::Config {
                field: "forecaster.step",
                ..
            })
        ));
        let bad = cfg.with_target_miss(1.5);
        assert!(matches!(
            bad.validate(),
            Err(ReconcileError::Config {
                field: "target_miss",
                ..
            })
        ));
    }

    fn ev(time: f64, sub: &str, kind: EventKind, vm: &str) -> VmEvent {
        VmEvent {
            time,
            subdivision: sub.to_string(),
            kind,
            vm_id: vm.to_string(),
            profile: None,
        }
    }

    #[test]
    fn the_model_counts_alive_and_anchors_its_grid_on_the_first_event() {
        let mut m = DemandModel::unanchored(&ReconcilerConfig::predictive(120.0));
        assert!(m.forecasts(1000.0).is_empty(), "no origin, no forecast");
        m.observe(&ev(610.0, "a", EventKind::Create, "1"));
        m.observe(&ev(620.0, "a", EventKind::Create, "2"));
        m.observe(&ev(630.0, "b", EventKind::Create, "3"));
        m.observe(&ev(640.0, "a", EventKind::Delete, "1"));
        // ⌊610 / 60⌋ · 60 + 60 = 660.
        assert_eq!(m.origin(), Some(660.0));
        assert_eq!((m.alive("a"), m.alive("b"), m.alive("c")), (1, 1, 0));
        let f = m.forecasts(660.0);
        assert_eq!(f.len(), 2);
        assert_eq!((f[0].subdivision.as_str(), f[0].alive), ("a", 1));
        // Nothing known yet: no rise.
        assert_eq!(f[0].rise_lead_upper, 0.0);
        assert_eq!(f[0].demand(), Demand::new("a", 1.0, 1.0, 1.0));
    }

    #[test]
    fn forecasts_are_scored_once_their_window_has_passed() {
        // Lead 120 s, tick 60 s: the claim window is [0, 180 s). The forecast at 660 (nothing
        // known: rise 0) is scored at 840 = 660 + 180, against the realised rise: 2 creates at
        // 700 and 800 → 2, not covered, error 2.
        let cfg = ReconcilerConfig::predictive(120.0);
        let mut m = DemandModel::new(&cfg, 660.0);
        m.observe(&ev(600.0, "a", EventKind::Create, "0"));
        let f = m.forecasts(660.0);
        m.record(660.0, &f);
        m.observe(&ev(700.0, "a", EventKind::Create, "1"));
        m.observe(&ev(800.0, "a", EventKind::Create, "2"));
        m.record(780.0, &[]);
        assert_eq!(m.errors.resolved, 0, "the window has not passed at 780");
        m.record(840.0, &[]);
        assert_eq!(
            m.errors,
            ErrorTally {
                resolved: 1,
                covered: 0,
                abs_error: 2.0
            }
        );
    }
}
