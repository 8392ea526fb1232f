//! `cidrcast demo`: replays a real trace (by default the bundled Google 2011 slice) through the
//! allocator on the embedded store twice: first claiming shards on demand (the baseline, on a
//! scratch store), then forecasting, planning and prefetching (on the demo's store), and prints
//! hit rate, idle addresses and routes of both.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use cidrcast_core::model::{EventKind, Reason, ShardState, SubdivisionSpec, VmEvent};
use cidrcast_engine::reconcile::{grid_after, Reconciler, ReconcilerConfig};
use cidrcast_engine::Engine;
use cidrcast_store::{RedbStore, Store};
use cidrcast_trace::{ReadOptions, TraceReader};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::context::{open_engine, Ctx};
use crate::output::{emit, Table};

/// The bundled slice: Google cluster 2011 task events, parts 0-1, top 40 users (CC-BY 4.0; see
/// data/google2011/README.md).
const BUNDLED: &[u8] = include_bytes!("../../data/google2011/demo-events.csv.gz");
const BUNDLED_NAME: &str = "data/google2011/demo-events.csv.gz (bundled)";

pub struct DemoArgs {
    pub events: Option<PathBuf>,
    /// Seconds from a shard's reservation until routers announce it.
    pub lead_time: f64,
    pub batch: usize,
    pub progress: bool,
}

#[derive(Serialize, Default)]
struct SubRow {
    subdivision: String,
    creations: u64,
    peak_alive: u64,
    alive_at_end: u64,
    shards: u64,
    borrowed: u64,
    routes: usize,
    utilisation_at_end: f64,
}

#[derive(Serialize)]
struct Summary {
    trace: String,
    data_dir: String,
    events: u64,
    creations: u64,
    deletions: u64,
    trace_hours: f64,
    subdivisions: usize,
    peak_alive: u64,
    allocations: u64,
    ready_hits: u64,
    slow_path: u64,
    shard_claims: u64,
    shard_releases: u64,
    borrowed_claims: u64,
    home_growths: u64,
    mean_utilisation: f64,
    utilisation_at_end: f64,
    routes_mean: f64,
    routes_max: usize,
    store_commits: u64,
    recovered_leases: usize,
    replay_seconds: f64,
    lead_time_s: f64,
    /// The same trace, the same allocator and store, shards claimed on demand.
    baseline: RunFigures,
    /// This run: forecast, planned and prefetched.
    predictive: RunFigures,
    top: Vec<SubRow>,
}

type Reader = TraceReader<Box<dyn Read + Send>>;

fn reader(args: &DemoArgs) -> Result<(Reader, String)> {
    let opts = ReadOptions::default();
    Ok(match &args.events {
        Some(p) => (TraceReader::open(p, opts)?, p.display().to_string()),
        None => {
            let gz: Box<dyn Read + Send> = Box::new(flate2::read::GzDecoder::new(BUNDLED));
            (
                TraceReader::new(gz, BUNDLED_NAME, opts),
                BUNDLED_NAME.to_string(),
            )
        }
    })
}

pub fn demo(ctx: &Ctx, data_explicit: bool, args: DemoArgs) -> Result<()> {
    // Pass 1: validate the whole trace and learn its subdivisions before touching the store.
    let (mut pass1, trace_name) = reader(&args)?;
    let mut order: Vec<String> = Vec::new();
    let mut stats: HashMap<String, SubRow> = HashMap::new();
    let (mut events, mut first, mut last) = (0u64, None::<f64>, 0.0f64);
    for ev in pass1.by_ref() {
        let ev = ev?;
        events += 1;
        first.get_or_insert(ev.time);
        last = ev.time;
        if !stats.contains_key(&ev.subdivision) {
            order.push(ev.subdivision.clone());
            stats.insert(
                ev.subdivision.clone(),
                SubRow {
                    subdivision: ev.subdivision.clone(),
                    ..SubRow::default()
                },
            );
        }
    }
    let tmp;
    let data_dir = if data_explicit {
        ctx.data_dir.clone()
    } else {
        tmp = tempfile::Builder::new()
            .prefix("cidrcast-demo-")
            .tempdir()?;
        tmp.path().to_path_buf()
    };
    // The demo runs on the embedded store, whatever `[store]` says.
    let config = cidrcast_config::Config {
        store: Default::default(),
        ..ctx.config.clone()
    };
    let engine = open_engine(&data_dir, &config, false)?;
    let pool = ctx
        .config
        .pools
        .iter()
        .find(|p| p.prefix.addr().is_ipv4())
        .or(ctx.config.pools.first())
        .context("the configuration has no pool to replay into")?
        .name
        .clone();
    add_subdivisions(&engine, &order, &pool)?;

    // Pass 2: the on-demand baseline on a scratch store, then the predictive run on the demo's
    // store. Each batch of events is one durable commit; each tick's plan is another.
    let scratch = tempfile::Builder::new()
        .prefix("cidrcast-demo-baseline-")
        .tempdir()?;
    let baseline_engine = open_engine(scratch.path(), &config, false)?;
    add_subdivisions(&baseline_engine, &order, &pool)?;
    let (mut replay, _) = reader(&args)?;
    let baseline = run(
        &baseline_engine,
        &mut replay,
        &Mode::OnDemand,
        args.batch,
        &bar(args.progress, events, "on-demand"),
        None,
    )?;
    drop(baseline_engine);
    let (mut replay, _) = reader(&args)?;
    let started = Instant::now();
    let mut alive: HashMap<String, u64> = HashMap::new();
    let (mut total_alive, mut peak_alive) = (0u64, 0u64);
    let mut tally = |ev: &VmEvent| {
        let a = alive.entry(ev.subdivision.clone()).or_default();
        let s = stats.get_mut(&ev.subdivision).expect("seen in pass 1");
        match ev.kind {
            EventKind::Create => {
                *a += 1;
                total_alive += 1;
                s.creations += 1;
                s.peak_alive = s.peak_alive.max(*a);
            }
            EventKind::Delete => {
                *a -= 1;
                total_alive -= 1;
            }
        }
        peak_alive = peak_alive.max(total_alive);
    };
    let predictive = run(
        &engine,
        &mut replay,
        &Mode::Predictive(ReconcilerConfig::predictive(args.lead_time)),
        args.batch,
        &bar(args.progress, events, "predictive"),
        Some(&mut tally),
    )?;
    let replay_seconds = started.elapsed().as_secs_f64();

    let (counters, subs, pool_infos) = engine.read(|ipam| {
        ipam.check_invariants()
            .map_err(|v| anyhow::anyhow!("invariant violated after the replay: {v}"))?;
        Ok::<_, anyhow::Error>((ipam.counters(), ipam.subdivisions(), ipam.pools()))
    })??;
    let commits = engine.commits();
    let leases_now = engine.store().counts()?.leases;
    drop(engine);
    // Reopen the store as a restart would, and check that every lease came back.
    let store = RedbStore::open(&data_dir)?;
    let recovered =
        Engine::open(store, ctx.config.settings.to_core())?.read(|ipam| ipam.lease_count())?;
    anyhow::ensure!(
        recovered as u64 == leases_now,
        "the reopened store holds {recovered} leases, {leases_now} were committed"
    );

    let mut routes_total = 0usize;
    let mut routes_max = 0usize;
    for info in &subs {
        let row = stats.get_mut(&info.spec.name);
        routes_total += info.routes.len();
        routes_max = routes_max.max(info.routes.len());
        if let Some(r) = row {
            r.alive_at_end = info.leases;
            r.shards = info.shards;
            r.borrowed = info.borrowed;
            r.routes = info.routes.len();
            r.utilisation_at_end = if info.usable > 0 {
                info.leases as f64 / info.usable as f64
            } else {
                0.0
            };
        }
    }
    let usable_end: u128 = pool_infos.iter().map(|p| p.usable_in_shards).sum();
    let leases_end: u64 = pool_infos.iter().map(|p| p.leases).sum();
    let utilisation_end = if usable_end > 0 {
        leases_end as f64 / usable_end as f64
    } else {
        0.0
    };
    let mut top: Vec<SubRow> = stats.into_values().collect();
    top.sort_by(|a, b| {
        b.creations
            .cmp(&a.creations)
            .then(a.subdivision.cmp(&b.subdivision))
    });
    top.truncate(10);
    let summary = Summary {
        trace: trace_name,
        data_dir: if data_explicit {
            data_dir.display().to_string()
        } else {
            format!("{} (temporary, removed on exit)", data_dir.display())
        },
        events,
        creations: counters.allocations,
        deletions: counters.releases,
        trace_hours: (last - first.unwrap_or(0.0)) / 3600.0,
        subdivisions: order.len(),
        peak_alive,
        allocations: counters.allocations,
        ready_hits: counters.ready_hits,
        slow_path: counters.slow_path,
        shard_claims: counters.shard_claims,
        shard_releases: counters.shard_releases,
        borrowed_claims: counters.borrowed_claims,
        home_growths: counters.home_growths,
        mean_utilisation: predictive.mean_utilisation,
        utilisation_at_end: utilisation_end,
        routes_mean: if subs.is_empty() {
            0.0
        } else {
            routes_total as f64 / subs.len() as f64
        },
        routes_max,
        store_commits: commits,
        recovered_leases: recovered,
        replay_seconds,
        lead_time_s: args.lead_time,
        baseline,
        predictive,
        top,
    };
    emit(ctx.output, &summary, render);
    Ok(())
}

/// Applies one batch of events in one durable commit; with `drain`, then drains the empty shards
/// beyond the first of each subdivision (on-demand: shards are claimed on a miss and given back
/// when idle).
fn apply_batch(
    engine: &Engine<Box<dyn Store>>,
    batch: &[VmEvent],
    now: f64,
    drain: bool,
) -> Result<()> {
    engine.execute_at(now, |ipam, now| {
        for ev in batch {
            match ev.kind {
                EventKind::Create => {
                    ipam.allocate(
                        &ev.subdivision,
                        &ev.vm_id,
                        ev.profile.as_deref(),
                        None,
                        ev.time,
                    )?;
                }
                EventKind::Delete => {
                    ipam.release(&ev.vm_id, ev.time)?;
                }
            }
        }
        if !drain {
            return Ok(());
        }
        let shards = ipam.shards(None)?;
        let mut active: HashMap<&str, usize> = HashMap::new();
        for s in &shards {
            if s.record.state == ShardState::Active {
                *active.entry(s.record.subdivision.as_str()).or_default() += 1;
            }
        }
        for s in &shards {
            let n = active.get_mut(s.record.subdivision.as_str());
            if s.record.state == ShardState::Active && s.leases == 0 {
                if let Some(n) = n.filter(|n| **n > 1) {
                    *n -= 1;
                    ipam.drain_shard(&s.record.prefix, Reason::Reclaim, now)?;
                }
            }
        }
        Ok(())
    })?;
    Ok(())
}

fn add_subdivisions(engine: &Engine<Box<dyn Store>>, order: &[String], pool: &str) -> Result<()> {
    engine.execute_untimed(|ipam| {
        for name in order {
            if !ipam.has_subdivision(name) {
                ipam.add_subdivision(SubdivisionSpec {
                    pools: vec![pool.to_string()],
                    ..SubdivisionSpec::new(name)
                })?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

fn bar(progress: bool, events: u64, what: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(events);
    b.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what:<10} [{{bar:40}}] {{pos}}/{{len}} events ({{per_sec}}, eta {{eta}})"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    b
}

/// How shards are managed during a run.
enum Mode {
    /// Calico-like: a shard is claimed when an allocation finds no free address, and empty
    /// shards beyond the first are drained after each batch.
    OnDemand,
    /// cidrcast: the reconciler ([`cidrcast_engine::reconcile`]) with the simulator's
    /// predictive policy ([`ReconcilerConfig::predictive`]): every tick the short-horizon
    /// forecaster of each subdivision gives the upper quantile of the rise over its two windows
    /// (claims, releases); the planner turns them into reserve/activate/drain/release actions
    /// (shards become active `lead` seconds after they are reserved: routers converge), applied
    /// in one durable commit.
    Predictive(ReconcilerConfig),
}

/// What one run measured, after the initial state (the VMs running when the trace starts).
#[derive(Serialize, Clone, Debug)]
struct RunFigures {
    policy: &'static str,
    allocations: u64,
    ready_hits: u64,
    /// Allocations that found no ready address (a shard had to be claimed or activated first).
    misses: u64,
    hit_rate: f64,
    /// Usable addresses in non-free shards less leases, mean over the ticks.
    mean_idle_addresses: f64,
    mean_utilisation: f64,
    /// Routes per subdivision (minimal CIDR cover of its shards), mean over the ticks.
    routes_mean: f64,
    routes_max: usize,
    shard_claims: u64,
    shard_releases: u64,
    plans: u64,
    plan_actions: u64,
    /// The largest shortfall of one plan (addresses the pool could not give), if any.
    shortfall_addresses: u64,
}

#[derive(Default)]
struct Sampler {
    idle: f64,
    used: f64,
    usable: f64,
    routes: f64,
    routes_max: usize,
    n: f64,
}

impl Sampler {
    fn sample(&mut self, engine: &Engine<Box<dyn Store>>) -> Result<()> {
        let (leases, usable, routes, max, subs) = engine.read(|ipam| {
            let (l, u) = ipam.pools().iter().fold((0.0, 0.0), |(l, u), p| {
                (l + p.leases as f64, u + p.usable_in_shards as f64)
            });
            let subs = ipam.subdivisions();
            let routes: usize = subs.iter().map(|s| s.routes.len()).sum();
            let max = subs.iter().map(|s| s.routes.len()).max().unwrap_or(0);
            (l, u, routes, max, subs.len().max(1))
        })?;
        self.idle += usable - leases;
        self.used += leases;
        self.usable += usable;
        self.routes += routes as f64 / subs as f64;
        self.routes_max = self.routes_max.max(max);
        self.n += 1.0;
        Ok(())
    }
}

/// Replays `replay` through `engine` under `mode`; `tally` sees every event once.
fn run(
    engine: &Engine<Box<dyn Store>>,
    replay: &mut Reader,
    mode: &Mode,
    batch_size: usize,
    bar: &ProgressBar,
    mut tally: Option<&mut dyn FnMut(&VmEvent)>,
) -> Result<RunFigures> {
    let (tick, drain) = match mode {
        Mode::Predictive(cfg) => (cfg.tick_s, false),
        Mode::OnDemand => (60.0, true),
    };
    // The trace's events go to the reconciler directly (not read back from the store's history).
    let mut reconciler: Option<Reconciler> = None;
    let mut origin: Option<f64> = None;
    let mut next_tick = f64::INFINITY;
    let mut batch: Vec<VmEvent> = Vec::with_capacity(batch_size);
    let mut sampler = Sampler::default();
    let (mut plans, mut actions, mut short) = (0u64, 0u64, 0u64);
    let flush = |batch: &mut Vec<VmEvent>| -> Result<()> {
        if let Some(now) = batch.last().map(|e| e.time) {
            apply_batch(engine, batch, now, drain)?;
        }
        batch.clear();
        Ok(())
    };
    // The VMs at the trace's first timestamp were already running when it starts (113,302 in
    // the bundled slice): that is the initial state, not arrivals. Both runs load it first; the
    // forecasters see it as their base level, and the figures count what comes after it.
    let mut initial: Option<(f64, Option<cidrcast_core::Counters>)> = None;
    for ev in replay.by_ref() {
        let ev = ev?;
        if origin.is_none() {
            let o = grid_after(ev.time, tick);
            origin = Some(o);
            next_tick = o;
            if let Mode::Predictive(cfg) = mode {
                reconciler = Some(Reconciler::with_origin(cfg.clone(), o)?);
            }
        }
        let (t0, base) = initial.get_or_insert((ev.time, None));
        if base.is_none() && ev.time > *t0 {
            flush(&mut batch)?;
            *base = Some(engine.read(|ipam| ipam.counters())?);
        }
        // Each tick sees only the events before it.
        while ev.time >= next_tick {
            flush(&mut batch)?;
            if let Some(r) = reconciler.as_mut() {
                let plan = r.tick_with(engine, next_tick, false)?;
                plans += 1;
                actions += plan.actions.len() as u64;
                short = short.max(plan.shortfalls.iter().map(|s| s.short_addresses).sum());
            }
            sampler.sample(engine)?;
            next_tick += tick;
        }
        if let Some(t) = tally.as_mut() {
            t(&ev);
        }
        if let Some(r) = reconciler.as_mut() {
            r.observe(&ev);
        }
        batch.push(ev);
        if batch.len() >= batch_size {
            flush(&mut batch)?;
        }
        bar.inc(1);
    }
    flush(&mut batch)?;
    sampler.sample(engine)?;
    bar.finish_and_clear();
    let now = engine.read(|ipam| ipam.counters())?;
    let base = initial.and_then(|(_, b)| b).unwrap_or_default();
    let c = cidrcast_core::Counters {
        allocations: now.allocations - base.allocations,
        ready_hits: now.ready_hits - base.ready_hits,
        shard_claims: now.shard_claims - base.shard_claims,
        shard_releases: now.shard_releases - base.shard_releases,
        ..now
    };
    let n = sampler.n.max(1.0);
    Ok(RunFigures {
        policy: match mode {
            Mode::OnDemand => "on-demand",
            Mode::Predictive(_) => "predictive",
        },
        allocations: c.allocations,
        ready_hits: c.ready_hits,
        misses: c.allocations - c.ready_hits,
        hit_rate: c.ready_hits as f64 / c.allocations.max(1) as f64,
        mean_idle_addresses: sampler.idle / n,
        mean_utilisation: if sampler.usable > 0.0 {
            sampler.used / sampler.usable
        } else {
            0.0
        },
        routes_mean: sampler.routes / n,
        routes_max: sampler.routes_max,
        shard_claims: c.shard_claims,
        shard_releases: c.shard_releases,
        plans,
        plan_actions: actions,
        shortfall_addresses: short,
    })
}

fn short(name: &str) -> String {
    if name.chars().count() > 14 {
        format!("{}…", name.chars().take(13).collect::<String>())
    } else {
        name.to_string()
    }
}

fn render(s: &Summary) -> String {
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let mut out = String::new();
    out.push_str(&format!(
        "cidrcast demo: replayed {} through the allocator on the embedded redb store, twice:\n  shards claimed on demand (baseline), then forecast, planned and prefetched {} s ahead\n\n",
        s.trace, s.lead_time_s
    ));
    let mut cmp = Table::new(&[
        "POLICY",
        "HIT RATE",
        "MISSES",
        "MEAN IDLE ADDRESSES",
        "UTILISATION",
        "ROUTES MEAN",
        "ROUTES MAX",
        "CLAIMS",
        "RELEASES",
    ]);
    for r in [&s.baseline, &s.predictive] {
        cmp.row(vec![
            r.policy.to_string(),
            pct(r.hit_rate),
            r.misses.to_string(),
            format!("{:.0}", r.mean_idle_addresses),
            pct(r.mean_utilisation),
            format!("{:.2}", r.routes_mean),
            r.routes_max.to_string(),
            r.shard_claims.to_string(),
            r.shard_releases.to_string(),
        ]);
    }
    out.push_str(&cmp.render());
    out.push_str(&format!(
        "\n  predictive run: {} plans, {} actions (reserve/activate/drain/release); largest shortfall {} addresses\n\n",
        s.predictive.plans, s.predictive.plan_actions, s.predictive.shortfall_addresses
    ));
    out.push_str(&format!(
        "  trace            {} events: {} creations, {} deletions over {:.1} h, {} subdivisions\n",
        s.events, s.creations, s.deletions, s.trace_hours, s.subdivisions
    ));
    out.push_str(&format!(
        "  allocations      {} ({} from a ready shard = {}, {} slow path: shard claimed on a miss)\n",
        s.allocations,
        s.ready_hits,
        pct(s.ready_hits as f64 / s.allocations.max(1) as f64),
        s.slow_path
    ));
    out.push_str(&format!("  peak alive       {} VMs\n", s.peak_alive));
    out.push_str(&format!(
        "  shards           {} claimed, {} released, {} borrowed outside a home block, {} home-block doublings\n",
        s.shard_claims, s.shard_releases, s.borrowed_claims, s.home_growths
    ));
    out.push_str(&format!(
        "  utilisation      {} mean (time-weighted leased / usable in claimed shards), {} at the end\n",
        pct(s.mean_utilisation),
        pct(s.utilisation_at_end)
    ));
    out.push_str(&format!(
        "  routes           {:.2} per subdivision on average, {} at most (minimal CIDR cover of its shards)\n",
        s.routes_mean, s.routes_max
    ));
    out.push_str(&format!(
        "  store            {} durable commits in {}; reopened: {} leases recovered\n",
        s.store_commits, s.data_dir, s.recovered_leases
    ));
    out.push_str(&format!(
        "  replay time      {:.2} s ({:.0} events/s)\n\n",
        s.replay_seconds,
        s.events as f64 / s.replay_seconds.max(1e-9)
    ));
    let mut t = Table::new(&[
        "SUBDIVISION",
        "CREATIONS",
        "PEAK ALIVE",
        "ALIVE AT END",
        "SHARDS",
        "BORROWED",
        "ROUTES",
        "UTILISATION",
    ]);
    for r in &s.top {
        t.row(vec![
            short(&r.subdivision),
            r.creations.to_string(),
            r.peak_alive.to_string(),
            r.alive_at_end.to_string(),
            r.shards.to_string(),
            r.borrowed.to_string(),
            r.routes.to_string(),
            pct(r.utilisation_at_end),
        ]);
    }
    out.push_str("  the 10 subdivisions with the most creations:\n");
    out.push_str(&t.render());
    out.push_str("\n  data: Google cluster trace 2011 (clusterdata-2011-2), CC-BY 4.0; see data/google2011/README.md\n");
    out
}

#[cfg(test)]
mod tests {
    use cidrcast_planner::PlannerConfig;
    use cidrcast_sim::Policy;

    use super::*;

    /// The reconciler's preset is what the demo ran before it moved into the engine: the
    /// simulator's predictive policy with a 30 min release horizon, and the demo's planner.
    #[test]
    fn the_reconciler_runs_the_simulators_predictive_policy() {
        let policy =
            Policy::parse("predictive", &[("keep_horizon".into(), "1800".into())]).unwrap();
        let Policy::Predictive { quantile, tick, .. } = policy else {
            unreachable!("parsed as predictive");
        };
        for lead in [0.0, 60.0, 120.0, 300.0] {
            let cfg = ReconcilerConfig::predictive(lead);
            assert_eq!(Some(&cfg.forecaster), policy.increase_config(lead).as_ref());
            assert_eq!(
                (cfg.quantile, cfg.tick_s, cfg.lead_s),
                (quantile, tick, lead)
            );
            assert_eq!(cfg.target_miss, None, "a fixed quantile");
            assert_eq!(
                cfg.planner,
                PlannerConfig {
                    activate_after_s: lead,
                    release_margin: 0.0,
                    drain_leased: false,
                    ..PlannerConfig::default()
                }
            );
        }
    }
}
