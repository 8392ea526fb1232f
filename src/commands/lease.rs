//! `allocate`, `release`, `leases`.

use std::net::IpAddr;

use anyhow::Result;
use cidrcast_core::model::LeaseRecord;
use ipnet::IpNet;
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

#[derive(Serialize)]
struct Allocated {
    vm_id: String,
    subdivision: String,
    pool: String,
    address: IpAddr,
    prefix_len: u8,
    shard: IpNet,
    path: &'static str,
    profile: Option<String>,
}

pub fn allocate(
    ctx: &Ctx,
    subdivision: &str,
    vm: &str,
    profile: Option<&str>,
    pool: Option<&str>,
) -> Result<()> {
    ctx.check_profile(profile)?;
    let engine = ctx.engine()?;
    let (a, lease) = engine.execute(|ipam, now| {
        let a = ipam.allocate(subdivision, vm, profile, pool, now)?;
        Ok((a, ipam.lease(vm).expect("just allocated")))
    })?;
    let out = Allocated {
        vm_id: lease.vm_id,
        subdivision: lease.subdivision,
        pool: lease.pool,
        address: a.address,
        prefix_len: a.shard.prefix_len(),
        shard: a.shard,
        path: a.path.as_str(),
        profile: lease.profile,
    };
    emit(ctx.output, &out, |o| {
        format!(
            "{}  {}/{}  shard {}  subdivision {}  pool {}  ({})\n",
            o.vm_id, o.address, o.prefix_len, o.shard, o.subdivision, o.pool, o.path
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct Released {
    vm_id: String,
    address: IpAddr,
    subdivision: String,
    cooldown_s: f64,
}

pub fn release(ctx: &Ctx, vm: &str) -> Result<()> {
    let engine = ctx.engine()?;
    let (lease, addr) = engine.execute(|ipam, now| {
        let lease = ipam.lease(vm);
        let addr = ipam.release(vm, now)?;
        Ok((lease.expect("released a lease"), addr))
    })?;
    let out = Released {
        vm_id: lease.vm_id,
        address: addr,
        subdivision: lease.subdivision,
        cooldown_s: ctx.config.settings.cooldown_s,
    };
    emit(ctx.output, &out, |o| {
        format!(
            "released {} of {} in {} (reusable after {} s)\n",
            o.address, o.vm_id, o.subdivision, o.cooldown_s
        )
    });
    Ok(())
}

pub fn leases(ctx: &Ctx, subdivision: Option<&str>) -> Result<()> {
    let engine = ctx.engine()?;
    let rows: Vec<LeaseRecord> = engine.read(|ipam| ipam.leases(subdivision))??;
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&["VM", "ADDRESS", "SHARD", "SUBDIVISION", "POOL", "PROFILE"]);
        for l in rows {
            t.row(vec![
                l.vm_id.clone(),
                l.address.to_string(),
                l.shard.to_string(),
                l.subdivision.clone(),
                l.pool.clone(),
                l.profile.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        t.render()
    });
    Ok(())
}
