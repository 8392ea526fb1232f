//! `shards`, `shard claim|activate|drain|release`, `routes`.

use anyhow::Result;
use cidrcast_core::model::{Reason, ShardRecord};
use ipnet::IpNet;
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

#[derive(Serialize)]
struct ShardRow {
    #[serde(flatten)]
    record: ShardRecord,
    leases: u64,
    usable: String,
}

pub fn list(ctx: &Ctx, subdivision: Option<&str>) -> Result<()> {
    let engine = ctx.engine()?;
    let rows: Vec<ShardRow> = engine
        .read(|ipam| ipam.shards(subdivision))??
        .into_iter()
        .map(|s| ShardRow {
            record: s.record,
            leases: s.leases,
            usable: s.usable.to_string(),
        })
        .collect();
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&[
            "SHARD",
            "POOL",
            "SUBDIVISION",
            "STATE",
            "LEASES",
            "USABLE",
            "BORROWED",
            "REASON",
        ]);
        for r in rows {
            t.row(vec![
                r.record.prefix.to_string(),
                r.record.pool.clone(),
                r.record.subdivision.clone(),
                r.record.state.to_string(),
                r.leases.to_string(),
                r.usable.clone(),
                if r.record.borrowed { "yes" } else { "no" }.into(),
                r.record.reason.to_string(),
            ]);
        }
        t.render()
    });
    Ok(())
}

fn parse_shard(s: &str) -> Result<IpNet> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("shard {s:?} is not a CIDR prefix (e.g. 10.0.0.64/26)"))
}

fn print_shard(ctx: &Ctx, verb: &str, rec: Option<ShardRecord>, prefix: &str) {
    match rec {
        Some(r) => emit(ctx.output, &r, |r| {
            format!(
                "{verb} shard {} of {} in pool {}: now {}\n",
                r.prefix, r.subdivision, r.pool, r.state
            )
        }),
        None => emit(
            ctx.output,
            &serde_json::json!({ "prefix": prefix, "state": "free" }),
            |_| format!("{verb} shard {prefix}: now free\n"),
        ),
    }
}

/// `shard claim`: a shard of the pool's default size, or of `prefix_len` (within the pool's
/// range of shard sizes).
pub fn claim(
    ctx: &Ctx,
    subdivision: &str,
    pool: Option<&str>,
    prefix_len: Option<u8>,
) -> Result<()> {
    let engine = ctx.engine()?;
    let r = engine.execute(|ipam, now| {
        ipam.claim_shard_sized(subdivision, pool, prefix_len, Reason::Operator, now)
    })?;
    let p = r.prefix.to_string();
    print_shard(ctx, "claimed", Some(r), &p);
    Ok(())
}

pub fn activate(ctx: &Ctx, prefix: &str) -> Result<()> {
    let net = parse_shard(prefix)?;
    let engine = ctx.engine()?;
    let r = engine.execute(|ipam, now| ipam.activate_shard(&net, Reason::Operator, now))?;
    print_shard(ctx, "activated", Some(r), prefix);
    Ok(())
}

pub fn drain(ctx: &Ctx, prefix: &str) -> Result<()> {
    let net = parse_shard(prefix)?;
    let engine = ctx.engine()?;
    let r = engine.execute(|ipam, now| ipam.drain_shard(&net, Reason::Operator, now))?;
    print_shard(ctx, "drained", r, prefix);
    Ok(())
}

pub fn release(ctx: &Ctx, prefix: &str) -> Result<()> {
    let net = parse_shard(prefix)?;
    let engine = ctx.engine()?;
    engine.execute(|ipam, now| ipam.release_shard(&net, Reason::Operator, now))?;
    print_shard(ctx, "released", None, prefix);
    Ok(())
}

#[derive(Serialize)]
struct RouteRow {
    subdivision: String,
    shards: u64,
    routes: Vec<IpNet>,
}

pub fn routes(ctx: &Ctx, subdivision: Option<&str>) -> Result<()> {
    let engine = ctx.engine()?;
    let rows: Vec<RouteRow> = engine.read(|ipam| -> Result<Vec<RouteRow>> {
        let names: Vec<String> = match subdivision {
            Some(s) => {
                ipam.subdivision(s)?;
                vec![s.to_string()]
            }
            None => ipam
                .subdivision_specs()
                .into_iter()
                .map(|s| s.name)
                .collect(),
        };
        names
            .into_iter()
            .map(|n| {
                let info = ipam.subdivision(&n)?;
                Ok(RouteRow {
                    subdivision: n,
                    shards: info.shards,
                    routes: info.routes,
                })
            })
            .collect()
    })??;
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&["SUBDIVISION", "SHARDS", "ROUTES", "MINIMAL COVER"]);
        for r in rows {
            t.row(vec![
                r.subdivision.clone(),
                r.shards.to_string(),
                r.routes.len().to_string(),
                r.routes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
        }
        t.render()
    });
    Ok(())
}
