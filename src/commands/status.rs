//! `status` and `history`.

use anyhow::Result;
use cidrcast_core::model::VmEvent;
use cidrcast_store::Store;
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

#[derive(Serialize)]
struct Status {
    data_dir: String,
    config: String,
    pools: usize,
    subdivisions: usize,
    leases: u64,
    shards_reserved: u64,
    shards_active: u64,
    shards_draining: u64,
    events: u64,
    transitions: u64,
    cooldown_s: f64,
}

pub fn status(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    let (pools, subdivisions) =
        engine.read(|ipam| (ipam.pools(), ipam.subdivision_specs().len()))?;
    let counts = engine.store().counts()?;
    let s = Status {
        data_dir: ctx.data_dir.display().to_string(),
        config: ctx
            .config_path
            .as_ref()
            .map_or("built-in default".into(), |p| p.display().to_string()),
        pools: pools.len(),
        subdivisions,
        leases: pools.iter().map(|p| p.leases).sum(),
        shards_reserved: pools.iter().map(|p| p.shards_reserved).sum(),
        shards_active: pools.iter().map(|p| p.shards_active).sum(),
        shards_draining: pools.iter().map(|p| p.shards_draining).sum(),
        events: counts.events,
        transitions: counts.transitions,
        cooldown_s: ctx.config.settings.cooldown_s,
    };
    emit(ctx.output, &s, |s| {
        format!(
            "data dir      {}\nconfig        {}\npools         {}\nsubdivisions  {}\nleases        {}\nshards        {} reserved, {} active, {} draining\nhistory       {} VM events, {} shard transitions\ncooldown      {} s\n",
            s.data_dir, s.config, s.pools, s.subdivisions, s.leases, s.shards_reserved,
            s.shards_active, s.shards_draining, s.events, s.transitions, s.cooldown_s
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct HistoryRow {
    seq: u64,
    #[serde(flatten)]
    event: VmEvent,
}

pub fn history(ctx: &Ctx, after: u64, limit: usize) -> Result<()> {
    let engine = ctx.engine()?;
    let rows: Vec<HistoryRow> = engine
        .store()
        .events(after, limit)?
        .into_iter()
        .map(|(seq, event)| HistoryRow { seq, event })
        .collect();
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&["SEQ", "TIME", "SUBDIVISION", "EVENT", "VM", "PROFILE"]);
        for r in rows {
            t.row(vec![
                r.seq.to_string(),
                format!("{:.3}", r.event.time),
                r.event.subdivision.clone(),
                r.event.kind.to_string(),
                r.event.vm_id.clone(),
                r.event.profile.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        t.render()
    });
    Ok(())
}
