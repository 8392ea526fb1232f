//! `init`, `pool ...`, `subdivision ...`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cidrcast_config::EXAMPLE_TOML;
use cidrcast_core::model::{default_vrf, PoolSpec, SubdivisionSpec};
use ipnet::IpNet;
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

/// `cidrcast init`: writes the commented example configuration.
pub fn init(path: &Path, force: bool) -> Result<()> {
    if path.exists() && !force {
        bail!(
            "{} already exists; pass --force to overwrite it",
            path.display()
        );
    }
    // The example must stay valid: refuse to write one that would not load.
    cidrcast_config::Config::from_toml_str(EXAMPLE_TOML, "the built-in example")?;
    std::fs::write(path, EXAMPLE_TOML)
        .with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "wrote {} (a commented example: edit it, then pass --config {} or keep it in the working directory)",
        path.display(),
        path.display()
    );
    Ok(())
}

/// What a create/remove command reports.
#[derive(Serialize)]
struct Done<'a, T: Serialize> {
    action: &'a str,
    kind: &'a str,
    #[serde(flatten)]
    spec: T,
}

fn done<T: Serialize>(ctx: &Ctx, action: &str, kind: &str, name: &str, spec: T) {
    emit(ctx.output, &Done { action, kind, spec }, |_| {
        format!("{action} {kind} `{name}`\n")
    });
}

#[derive(Serialize)]
struct PoolRow {
    name: String,
    prefix: IpNet,
    vrf: String,
    shard_prefix_len: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    min_shard_prefix_len: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_shard_prefix_len: Option<u8>,
    size: String,
    shards_reserved: u64,
    shards_active: u64,
    shards_draining: u64,
    leases: u64,
    usable_in_shards: String,
    unassigned: String,
}

/// Arguments of `pool add`.
pub struct PoolAdd {
    pub name: String,
    pub prefix: String,
    pub shard_prefix_len: u8,
    pub min_shard_prefix_len: Option<u8>,
    pub max_shard_prefix_len: Option<u8>,
    pub vrf: Option<String>,
    pub reserved: Vec<String>,
    pub reserve_first: u32,
    pub reserve_last: u32,
}

fn parse_prefix(field: &str, s: &str) -> Result<IpNet> {
    s.parse::<IpNet>().map_err(|_| {
        anyhow::anyhow!("{field} {s:?} is not a CIDR prefix (e.g. 10.0.0.0/8 or fd00::/48)")
    })
}

pub fn pool_add(ctx: &Ctx, a: PoolAdd) -> Result<()> {
    let spec = PoolSpec {
        name: a.name,
        prefix: parse_prefix("--prefix", &a.prefix)?,
        shard_prefix_len: a.shard_prefix_len,
        min_shard_prefix_len: a.min_shard_prefix_len,
        max_shard_prefix_len: a.max_shard_prefix_len,
        vrf: a.vrf.unwrap_or_else(default_vrf),
        reserved: a
            .reserved
            .iter()
            .map(|r| parse_prefix("--reserved", r))
            .collect::<Result<_>>()?,
        reserve_first: a.reserve_first,
        reserve_last: a.reserve_last,
    };
    let engine = ctx.engine()?;
    engine.execute_untimed(|ipam| ipam.add_pool(spec.clone()))?;
    done(ctx, "added", "pool", &spec.name, &spec);
    Ok(())
}

pub fn pool_remove(ctx: &Ctx, name: &str) -> Result<()> {
    let engine = ctx.engine()?;
    let spec = engine.execute_untimed(|ipam| ipam.remove_pool(name))?;
    done(ctx, "removed", "pool", &spec.name, &spec);
    Ok(())
}

/// The SHARD column: `/26`, or `/26 (/24-/28)` when the pool hands out several sizes.
fn shard_sizes(r: &PoolRow) -> String {
    let (min, max) = (
        r.min_shard_prefix_len.unwrap_or(r.shard_prefix_len),
        r.max_shard_prefix_len.unwrap_or(r.shard_prefix_len),
    );
    if (min, max) == (r.shard_prefix_len, r.shard_prefix_len) {
        format!("/{}", r.shard_prefix_len)
    } else {
        format!("/{} (/{min}-/{max})", r.shard_prefix_len)
    }
}

pub fn pool_list(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    let rows: Vec<PoolRow> = engine.read(|ipam| {
        ipam.pools()
            .into_iter()
            .map(|p| PoolRow {
                name: p.spec.name,
                prefix: p.spec.prefix,
                vrf: p.spec.vrf,
                shard_prefix_len: p.spec.shard_prefix_len,
                min_shard_prefix_len: p.spec.min_shard_prefix_len,
                max_shard_prefix_len: p.spec.max_shard_prefix_len,
                size: p.size.to_string(),
                shards_reserved: p.shards_reserved,
                shards_active: p.shards_active,
                shards_draining: p.shards_draining,
                leases: p.leases,
                usable_in_shards: p.usable_in_shards.to_string(),
                unassigned: p.unassigned.to_string(),
            })
            .collect()
    })?;
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&[
            "POOL",
            "PREFIX",
            "VRF",
            "SHARD",
            "RESERVED",
            "ACTIVE",
            "DRAINING",
            "LEASES",
            "USABLE IN SHARDS",
        ]);
        for r in rows {
            t.row(vec![
                r.name.clone(),
                r.prefix.to_string(),
                r.vrf.clone(),
                shard_sizes(r),
                r.shards_reserved.to_string(),
                r.shards_active.to_string(),
                r.shards_draining.to_string(),
                r.leases.to_string(),
                r.usable_in_shards.clone(),
            ]);
        }
        t.render()
    });
    Ok(())
}

/// Arguments of `subdivision add`.
pub struct SubdivisionAdd {
    pub name: String,
    pub parent: Option<String>,
    pub pools: Vec<String>,
    pub max_shards: Option<u32>,
    pub home_shards: Option<u32>,
    pub routers: Vec<String>,
}

pub fn subdivision_add(ctx: &Ctx, a: SubdivisionAdd) -> Result<()> {
    for r in &a.routers {
        if ctx.config.router(r).is_none() {
            bail!("unknown router `{r}` (routers are defined in the configuration file)");
        }
    }
    let spec = SubdivisionSpec {
        name: a.name,
        parent: a.parent,
        pools: a.pools,
        max_shards: a.max_shards,
        home_shards: a.home_shards,
        routers: a.routers,
    };
    let engine = ctx.engine()?;
    engine.execute_untimed(|ipam| ipam.add_subdivision(spec.clone()))?;
    done(ctx, "added", "subdivision", &spec.name, &spec);
    Ok(())
}

pub fn subdivision_remove(ctx: &Ctx, name: &str) -> Result<()> {
    let engine = ctx.engine()?;
    let spec = engine.execute_untimed(|ipam| ipam.remove_subdivision(name))?;
    done(ctx, "removed", "subdivision", name, &spec);
    Ok(())
}

#[derive(Serialize)]
pub struct SubdivisionRow {
    pub name: String,
    pub parent: Option<String>,
    pub pools: Vec<String>,
    pub max_shards: Option<u32>,
    pub shards: u64,
    pub borrowed: u64,
    pub leases: u64,
    pub usable: String,
    pub homes: Vec<IpNet>,
    pub routes: Vec<IpNet>,
}

pub fn subdivision_rows(ipam: &cidrcast_core::Ipam) -> Vec<SubdivisionRow> {
    ipam.subdivisions()
        .into_iter()
        .map(|s| SubdivisionRow {
            name: s.spec.name,
            parent: s.spec.parent,
            pools: s.spec.pools,
            max_shards: s.spec.max_shards,
            shards: s.shards,
            borrowed: s.borrowed,
            leases: s.leases,
            usable: s.usable.to_string(),
            homes: s.homes,
            routes: s.routes,
        })
        .collect()
}

fn join<T: ToString>(v: &[T]) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
    }
}

pub fn subdivision_list(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    let rows = engine.read(subdivision_rows)?;
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&[
            "SUBDIVISION",
            "PARENT",
            "POOLS",
            "SHARDS",
            "BORROWED",
            "LEASES",
            "HOME",
            "ROUTES",
        ]);
        for r in rows {
            t.row(vec![
                r.name.clone(),
                r.parent.clone().unwrap_or_else(|| "-".into()),
                if r.pools.is_empty() {
                    "all".into()
                } else {
                    r.pools.join(",")
                },
                r.shards.to_string(),
                r.borrowed.to_string(),
                r.leases.to_string(),
                join(&r.homes),
                join(&r.routes),
            ]);
        }
        t.render()
    });
    Ok(())
}
