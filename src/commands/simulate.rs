//! `simulate`: replay a trace against an allocation policy.

use std::path::Path;

use anyhow::{bail, Result};
use cidrcast_sim::sweep::{grid, svg, Point};
use cidrcast_sim::{replay, Params, Policy};
use cidrcast_trace::{ReadOptions, TraceReader};

use crate::output::{emit, Format};

/// Arguments of `simulate`.
pub struct SimulateArgs {
    pub policy: Option<String>,
    pub sweep: bool,
    pub plot: Option<std::path::PathBuf>,
    pub params: Vec<String>,
    pub lead_time: f64,
    pub shard_prefix: u8,
    pub window: Option<String>,
    pub per_subdivision: bool,
}

fn parse_window(s: &str) -> Result<(f64, f64)> {
    let bad =
        || anyhow::anyhow!("--window {s:?}: expected START:END in trace seconds, e.g. 4200:605400");
    let (a, b) = s.split_once(':').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if !(a.is_finite() && b.is_finite() && a < b) {
        bail!("--window {s}: the start must come before the end");
    }
    Ok((a, b))
}

pub fn simulate(output: Format, events: &Path, a: SimulateArgs) -> Result<()> {
    let params: Vec<(String, String)> = a
        .params
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| anyhow::anyhow!("--param {kv:?}: expected key=value"))
        })
        .collect::<Result<_>>()?;
    if !(a.lead_time.is_finite() && a.lead_time >= 0.0) {
        bail!(
            "--lead-time {}: must be a number of seconds >= 0",
            a.lead_time
        );
    }
    if !(1..=32).contains(&a.shard_prefix) {
        bail!(
            "--shard-prefix {}: must lie between 1 and 32",
            a.shard_prefix
        );
    }
    let window = a.window.as_deref().map(parse_window).transpose()?;
    let evs = TraceReader::open(events, ReadOptions::default())?.collect::<Result<Vec<_>, _>>()?;
    let p = Params {
        lead_time: a.lead_time,
        shard_size: 1u32 << (32 - u32::from(a.shard_prefix)).min(31),
        window,
    };
    if a.sweep {
        return sweep(output, &evs, &p, a.shard_prefix, a.plot.as_deref());
    }
    let name = a.policy.as_deref().unwrap_or_default();
    let policy = Policy::parse(name, &params)?;
    let r = replay(&evs, &policy, &p, a.per_subdivision)?;
    emit(output, &r, |r| {
        format!(
            "policy {} ({:?}), lead {} s, /{} shards\ncreations {}  misses {} ({:.3}%)  mean wait {:.2} s  p99 wait {:.1} s\nmean idle addresses {:.0}  mean used {:.0}  utilisation {:.1}%\nshard claims {} ({:.1}/h)  releases {} ({:.1}/h)  routes mean {:.2} max {}\n",
            policy.name(), policy, p.lead_time, a.shard_prefix, r.creations, r.misses,
            100.0 * r.miss_rate, r.mean_wait_s, r.p99_wait_s, r.mean_idle_addresses,
            r.mean_used_addresses, 100.0 * r.utilization, r.shard_claims, r.claims_per_hour,
            r.shard_releases, r.releases_per_hour, r.routes_mean, r.routes_max
        )
    });
    Ok(())
}

fn sweep(
    output: Format,
    evs: &[cidrcast_core::model::VmEvent],
    p: &Params,
    prefix: u8,
    plot: Option<&Path>,
) -> Result<()> {
    let points = cidrcast_sim::sweep::sweep(evs, p, &grid())?;
    if let Some(path) = plot {
        let title = format!(
            "miss rate against idle addresses, lead {} s, /{prefix} shards",
            p.lead_time
        );
        std::fs::write(path, svg(&points, &title))
            .map_err(|e| anyhow::anyhow!("cannot write the plot to {}: {e}", path.display()))?;
    }
    emit(output, &points, |pts: &Vec<Point>| {
        let mut t = crate::output::Table::new(&[
            "FAMILY",
            "SETTING",
            "MISS RATE",
            "MEAN IDLE",
            "MEAN WAIT S",
            "CLAIMS",
            "PARETO",
            "BEST <=1%",
            "BEST <=0.1%",
        ]);
        let mark = |b: bool| if b { "*" } else { "" }.to_string();
        for q in pts {
            t.row(vec![
                q.family.to_string(),
                q.setting.clone(),
                format!("{:.4}%", 100.0 * q.miss_rate),
                format!("{:.0}", q.mean_idle_addresses),
                format!("{:.2}", q.mean_wait_s),
                q.shard_claims.to_string(),
                mark(q.pareto),
                mark(q.best_1pct),
                mark(q.best_01pct),
            ]);
        }
        t.render()
    });
    Ok(())
}
