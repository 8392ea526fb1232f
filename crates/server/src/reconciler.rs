//! The daemon's side of the reconciler: the prefetcher that keeps ready addresses in every
//! subdivision (history → forecasts → plan → apply, see [`cidrcast_engine::reconcile`]), and the
//! API operations on it (forecasts, dry-run and applied plans).

use std::time::Instant;

use cidrcast_config::{Role, ServerSettings};
use cidrcast_engine::reconcile::{ReconcileError, Reconciler, ReconcilerConfig};
use cidrcast_engine::{unix_now, EngineError};

use crate::api;
use crate::app::App;
use crate::auth::Principal;
use crate::error::ServerError;
use crate::metrics::ForecastGauges;

/// The reconciler with the daemon's settings.
pub struct Prefetcher {
    inner: Reconciler,
}

impl Prefetcher {
    /// A reconciler at the configured lead time and target miss rate.
    pub fn new(settings: &ServerSettings) -> Result<Prefetcher, ServerError> {
        let mut cfg = ReconcilerConfig::predictive(settings.lead_time_s);
        if let Some(t) = settings.target_miss_rate {
            cfg = cfg.with_target_miss(t);
        }
        let inner = Reconciler::new(cfg).map_err(|e| ServerError::Unprocessable(e.to_string()))?;
        Ok(Prefetcher { inner })
    }

    /// How good the forecasts have been, and the quantile in use.
    pub fn gauges(&self) -> ForecastGauges {
        let s = self.inner.stats();
        let scored = s.forecasts_scored > 0;
        ForecastGauges {
            coverage: scored.then_some(s.coverage),
            mean_abs_error: scored.then_some(s.mean_abs_error),
            quantile: s.quantile,
        }
    }
}

impl From<ReconcileError> for ServerError {
    fn from(e: ReconcileError) -> Self {
        match e {
            ReconcileError::Engine(e) => ServerError::Engine(e),
            ReconcileError::Planner(e) => {
                ServerError::Conflict(format!("the plan did not apply: {e}"))
            }
            ReconcileError::Config { .. } => ServerError::Unprocessable(e.to_string()),
        }
    }
}

impl App {
    /// Feeds the stored history to the forecasters (at startup; later runs catch up themselves).
    pub fn catch_up(&self) -> Result<usize, EngineError> {
        let mut p = self.prefetcher.lock().unwrap_or_else(|e| e.into_inner());
        p.inner.catch_up(&self.engine)
    }

    /// Whether startup is over.
    pub fn is_ready(&self) -> bool {
        self.readiness().is_ok()
    }

    /// One reconciler run now: catch up on the history, forecast, plan, apply in one store
    /// transaction.
    pub fn reconcile(&self) -> Result<api::Plan, ServerError> {
        self.run_plan(false)
    }

    fn run_plan(&self, dry_run: bool) -> Result<api::Plan, ServerError> {
        let start = Instant::now();
        let mut p = self.prefetcher.lock().unwrap_or_else(|e| e.into_inner());
        let plan = p.inner.tick(&self.engine, unix_now(), dry_run)?;
        Ok(api::Plan {
            applied: !dry_run,
            seconds: start.elapsed().as_secs_f64(),
            plan,
        })
    }

    /// `GET /v1/plan` (dry run: nothing changes) and `POST /v1/plan` (apply now).
    pub fn plan(&self, principal: &Principal, dry_run: bool) -> Result<api::Plan, ServerError> {
        if dry_run {
            principal.require(Role::Reader, "reading plans")?;
        } else {
            principal.require_global(Role::Operator, "applying a plan")?;
        }
        if !dry_run {
            let start = Instant::now();
            let result = self.run_plan(false);
            self.metrics
                .reconcile(result.is_ok(), start.elapsed().as_secs_f64());
            return result;
        }
        let mut plan = self.run_plan(true)?;
        if principal.is_scoped() {
            let visible = self.visible_subdivisions(principal)?;
            let sees = |sub: &String| visible.contains(sub);
            plan.plan.actions.retain(|a| sees(&a.subdivision));
            plan.plan.shortfalls.retain(|s| sees(&s.subdivision));
            plan.plan.targets.retain(|t| sees(&t.subdivision));
            plan.plan.aggregates.retain(|a| sees(&a.subdivision));
        }
        Ok(plan)
    }

    /// The subdivisions the token may see, sorted, in one read of the state.
    fn visible_subdivisions(&self, principal: &Principal) -> Result<Vec<String>, ServerError> {
        Ok(self.engine.read(|ipam| {
            ipam.subdivision_specs()
                .into_iter()
                .filter(|s| principal.sees_subdivision(ipam, &s.name))
                .map(|s| s.name)
                .collect()
        })?)
    }

    /// `GET /v1/forecasts`: every subdivision's forecast now, in the token's scope.
    pub fn forecasts(&self, principal: &Principal) -> Result<api::Forecasts, ServerError> {
        principal.require(Role::Reader, "reading forecasts")?;
        let now = unix_now();
        let (subs, stats) = {
            let mut p = self.prefetcher.lock().unwrap_or_else(|e| e.into_inner());
            p.inner.catch_up(&self.engine)?;
            (p.inner.forecasts(now), p.inner.stats())
        };
        let known = self.visible_subdivisions(principal)?;
        let out: Vec<api::Forecast> = known
            .iter()
            .map(|name| {
                let f = subs.iter().find(|f| f.subdivision == *name);
                api::Forecast {
                    subdivision: name.clone(),
                    alive: f.map_or(0, |f| f.alive as i64),
                    rise_lead_upper: f.map_or(0.0, |f| f.rise_lead_upper),
                    rise_keep_upper: f.map_or(0.0, |f| f.rise_keep_upper),
                    quantile: f.map_or(stats.quantile, |f| f.quantile),
                    demand_score: f.map_or(0.0, |f| f.demand_score),
                }
            })
            .collect();
        let scored = stats.forecasts_scored > 0;
        Ok(api::Forecasts {
            time: now,
            lead_time_s: self.settings.lead_time_s,
            quantile: stats.quantile,
            target_miss_rate: stats.target_miss,
            coverage: scored.then_some(stats.coverage),
            mean_abs_error: scored.then_some(stats.mean_abs_error),
            subdivisions: out,
        })
    }
}
