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
    /// Adaptive shard sizes (predictive policy): the shortest and longest prefix lengths it may
    /// claim; `None`: `shard_prefix`.
    pub min_shard_prefix: Option<u8>,
    pub max_shard_prefix: Option<u8>,
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
    let (min_prefix, max_prefix) = (
        a.min_shard_prefix.unwrap_or(a.shard_prefix),
        a.max_shard_prefix.unwrap_or(a.shard_prefix),
    );
    for (flag, len) in [
        ("--shard-prefix", a.shard_prefix),
        ("--min-shard-prefix", min_prefix),
        ("--max-shard-prefix", max_prefix),
    ] {
        if !(1..=32).contains(&len) {
            bail!("{flag} {len}: must lie between 1 and 32");
        }
    }
    if min_prefix > a.shard_prefix {
        bail!(
            "--min-shard-prefix {min_prefix}: must not exceed --shard-prefix {} (the shortest prefix is the largest shard)",
            a.shard_prefix
        );
    }
    if max_prefix < a.shard_prefix {
        bail!(
            "--max-shard-prefix {max_prefix}: must be at least --shard-prefix {} (the longest prefix is the smallest shard)",
            a.shard_prefix
        );
    }
    let window = a.window.as_deref().map(parse_window).transpose()?;
    let evs = TraceReader::open(events, ReadOptions::default())?.collect::<Result<Vec<_>, _>>()?;
    let size = |len: u8| 1u32 << (32 - u32::from(len)).min(31);
    let p = Params {
        lead_time: a.lead_time,
        shard_size: size(a.shard_prefix),
        min_shard_size: size(max_prefix),
        max_shard_size: size(min_prefix),
        window,
    };
    let shards = if p.is_adaptive() {
        format!(
            "/{} shards (adaptive /{min_prefix} to /{max_prefix})",
            a.shard_prefix
        )
    } else {
        format!("/{} shards", a.shard_prefix)
    };
    if a.sweep {
        return sweep(output, &evs, &p, &shards, a.plot.as_deref());
    }
    let name = a.policy.as_deref().unwrap_or_default();
    let policy = Policy::parse(name, &params)?;
    let r = replay(&evs, &policy, &p, a.per_subdivision)?;
    emit(output, &r, |r| {
        format!(
            "policy {} ({:?}), lead {} s, {shards}\ncreations {}  misses {} ({:.3}%)  mean wait {:.2} s  p99 wait {:.1} s\nmean idle addresses {:.0}  mean used {:.0}  utilisation {:.1}%\nshard claims {} ({:.1}/h)  releases {} ({:.1}/h)  routes mean {:.2} max {}  mean shard size {:.1}\n",
            policy.name(), policy, p.lead_time, r.creations, r.misses,
            100.0 * r.miss_rate, r.mean_wait_s, r.p99_wait_s, r.mean_idle_addresses,
            r.mean_used_addresses, 100.0 * r.utilization, r.shard_claims, r.claims_per_hour,
            r.shard_releases, r.releases_per_hour, r.routes_mean, r.routes_max, r.mean_shard_size
        )
    });
    Ok(())
}

fn sweep(
    output: Format,
    evs: &[cidrcast_core::model::VmEvent],
    p: &Params,
    shards: &str,
    plot: Option<&Path>,
) -> Result<()> {
    let points = cidrcast_sim::sweep::sweep(evs, p, &grid())?;
    if let Some(path) = plot {
        let title = format!(
            "miss rate against idle addresses, lead {} s, {shards}",
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
