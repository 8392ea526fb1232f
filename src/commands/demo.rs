//! `cidrcast demo`: replays a real trace (by default the bundled Google 2011 slice) through the
//! allocator on the embedded store, claiming shards on demand, and prints what happened.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use cidrcast_core::model::{EventKind, Reason, ShardState, SubdivisionSpec, VmEvent};
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
    let engine = open_engine(&data_dir, &ctx.config, false)?;
    let pool = ctx
        .config
        .pools
        .iter()
        .find(|p| p.prefix.addr().is_ipv4())
        .or(ctx.config.pools.first())
        .context("the configuration has no pool to replay into")?
        .name
        .clone();
    engine.execute_untimed(|ipam| {
        for name in &order {
            if !ipam.has_subdivision(name) {
                ipam.add_subdivision(SubdivisionSpec {
                    pools: vec![pool.clone()],
                    ..SubdivisionSpec::new(name)
                })?;
            }
        }
        Ok(())
    })?;

    // Pass 2: replay in batches; each batch is one durable commit.
    let bar = if args.progress {
        let b = ProgressBar::new(events);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} replay [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    let (mut replay, _) = reader(&args)?;
    let started = Instant::now();
    let mut alive: HashMap<String, u64> = HashMap::new();
    let (mut total_alive, mut peak_alive) = (0u64, 0u64);
    let (mut util_weighted, mut util_time) = (0.0f64, 0.0f64);
    let mut last_sample: Option<(f64, f64)> = None;
    let mut batch: Vec<VmEvent> = Vec::with_capacity(args.batch);
    let mut done = false;
    while !done {
        batch.clear();
        for ev in replay.by_ref() {
            batch.push(ev?);
            if batch.len() >= args.batch {
                break;
            }
        }
        if batch.len() < args.batch {
            done = true;
        }
        if batch.is_empty() {
            break;
        }
        let now = batch.last().map(|e| e.time).unwrap_or(0.0);
        let (leases, usable) = apply_batch(&engine, &batch, now)?;
        for ev in &batch {
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
        }
        // Time-weighted utilisation: leased / usable addresses in claimed shards.
        let u = if usable > 0.0 { leases / usable } else { 0.0 };
        if let Some((t0, u0)) = last_sample {
            let dt = now - t0;
            util_weighted += u0 * dt;
            util_time += dt;
        }
        last_sample = Some((now, u));
        bar.inc(batch.len() as u64);
    }
    bar.finish_and_clear();
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
        mean_utilisation: if util_time > 0.0 {
            util_weighted / util_time
        } else {
            // A single batch has no time span to weigh over: its state is the mean.
            utilisation_end
        },
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
        top,
    };
    emit(ctx.output, &summary, render);
    Ok(())
}

/// Applies one batch of events in one durable commit, then drains the empty shards beyond the
/// first of each subdivision (on-demand: shards are claimed on a miss and given back when idle).
/// Returns (leases, usable addresses in claimed shards).
fn apply_batch(engine: &Engine<RedbStore>, batch: &[VmEvent], now: f64) -> Result<(f64, f64)> {
    Ok(engine.execute_at(now, |ipam, now| {
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
        let (leases, usable) = ipam.pools().iter().fold((0.0, 0.0), |(l, u), p| {
            (l + p.leases as f64, u + p.usable_in_shards as f64)
        });
        Ok((leases, usable))
    })?)
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
        "cidrcast demo: replayed {} through the allocator (on-demand shards, embedded redb store)\n\n",
        s.trace
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
