//! Sweeps: every policy over a grid of its knobs, the Pareto front of miss rate against mean idle
//! addresses, and each family's best setting at a miss-rate bound.

use serde::Serialize;

use crate::policy::Policy;
use crate::replay::{parallel_map, replay, Params};
use crate::SimError;
use cidrcast_core::model::VmEvent;

/// One point of a sweep.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Point {
    pub family: &'static str,
    pub setting: String,
    pub miss_rate: f64,
    pub mean_idle_addresses: f64,
    pub mean_wait_s: f64,
    pub shard_claims: u64,
    /// No other point of a causal policy has both fewer misses and fewer idle addresses (the
    /// oracle is a reference, never on the front).
    pub pareto: bool,
    /// The family's least idle setting with a miss rate of at most 1% / 0.1%.
    pub best_1pct: bool,
    pub best_01pct: bool,
}

/// The grid swept: each reactive family, the predictive and adaptive policies, and the oracle.
pub fn grid() -> Vec<(Policy, String)> {
    let mut v = Vec::new();
    for d in [
        0.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
    ] {
        v.push((
            Policy::OnDemand { release_delay: d },
            format!("release_delay={d}"),
        ));
    }
    for w in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0] {
        v.push((
            Policy::WarmTarget {
                warm_ip_target: w,
                minimum_ip_target: 0.0,
            },
            format!("warm_ip_target={w}"),
        ));
    }
    for pre in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0] {
        v.push((
            Policy::Watermark {
                pre_allocate: pre,
                min_allocate: 0.0,
                max_above_watermark: 0.0,
            },
            format!("pre_allocate={pre}"),
        ));
    }
    let mut setting = |name: &str, params: &str| {
        let policy = Policy::parse_setting(&format!("{name} {params}"))
            .expect("the sweep's own grid parses");
        v.push((policy, params.to_string()));
    };
    for (q, keep) in [
        (0.5, 0.0),
        (0.7, 0.0),
        (0.8, 0.0),
        (0.9, 0.0),
        (0.95, 0.0),
        (0.9, 1800.0),
        (0.9, 3600.0),
        (0.95, 3600.0),
        (0.99, 3600.0),
    ] {
        setting("predictive", &format!("quantile={q} keep_horizon={keep}"));
    }
    // A finer tick reacts sooner to a burst in progress (the best point at lead 60 s, ≤ 1%).
    setting("predictive", "quantile=0.9 tick=10 recent=180");
    // For 0.1%: the prefetcher's feedback steering each subdivision to a 0.2% miss rate, a 20 s
    // tick, a 2 h release horizon (the best point at lead 60 s, ≤ 0.1%); and one standing spare
    // shard per subdivision (the fewest misses, at a price in idle addresses).
    setting(
        "predictive",
        "quantile=0.95 keep_horizon=7200 target_miss=0.002 gain=0.05 tick=20 recent=90",
    );
    setting("predictive", "quantile=0.99 keep_horizon=3600 hysteresis=1");
    // The adaptive policy (each subdivision follows its cheapest candidate) at three prices of a
    // miss: the best points at lead 60 s and 300 s, ≤ 1%, and lead 300 s, ≤ 0.1% (with a standby
    // shard in each subdivision until its first VM).
    for extra in ["miss_cost=8", "miss_cost=28", "miss_cost=1700 standby=1"] {
        setting("adaptive", &format!("{extra} half_life=259200"));
    }
    v.push((Policy::Oracle, "-".to_string()));
    v
}

/// Runs every point of `grid` and marks the Pareto front and the per-family bests.
pub fn sweep(
    events: &[VmEvent],
    p: &Params,
    grid: &[(Policy, String)],
) -> Result<Vec<Point>, SimError> {
    // The points are independent: run them on every core, in grid order.
    let reports = parallel_map(grid, |(policy, _)| replay(events, policy, p, false));
    let mut pts = Vec::with_capacity(grid.len());
    for ((policy, setting), r) in grid.iter().zip(reports) {
        let r = r?;
        pts.push(Point {
            family: policy.name(),
            setting: setting.clone(),
            miss_rate: r.miss_rate,
            mean_idle_addresses: r.mean_idle_addresses,
            mean_wait_s: r.mean_wait_s,
            shard_claims: r.shard_claims,
            pareto: false,
            best_1pct: false,
            best_01pct: false,
        });
    }
    // The front of the causal policies: the oracle (perfect foresight, a reference) would
    // dominate nearly every point, so it is left out of it.
    let causal = |q: &Point| q.family != "oracle";
    for i in 0..pts.len() {
        let dominated = pts.iter().enumerate().any(|(j, q)| {
            j != i
                && causal(q)
                && q.miss_rate <= pts[i].miss_rate
                && q.mean_idle_addresses <= pts[i].mean_idle_addresses
                && (q.miss_rate < pts[i].miss_rate
                    || q.mean_idle_addresses < pts[i].mean_idle_addresses)
        });
        pts[i].pareto = causal(&pts[i]) && !dominated;
    }
    for bound in [0.01, 0.001] {
        let families: Vec<&'static str> = pts.iter().map(|q| q.family).collect();
        for fam in families {
            let best = pts
                .iter()
                .enumerate()
                .filter(|(_, q)| q.family == fam && q.miss_rate <= bound)
                .min_by(|a, b| a.1.mean_idle_addresses.total_cmp(&b.1.mean_idle_addresses))
                .map(|(i, _)| i);
            if let Some(i) = best {
                if bound == 0.01 {
                    pts[i].best_1pct = true;
                } else {
                    pts[i].best_01pct = true;
                }
            }
        }
    }
    Ok(pts)
}

/// The sweep as an SVG scatter plot: mean idle addresses (x) against miss rate (y, log scale),
/// one colour per family, the Pareto front joined.
pub fn svg(points: &[Point], title: &str) -> String {
    let (w, h, m) = (800.0, 500.0, 70.0);
    // The x axis spans 90% to twice the least idle (huge warm pools would squeeze the rest);
    // points beyond it are left out of the plot, not of the table.
    let least = points
        .iter()
        .map(|p| p.mean_idle_addresses)
        .fold(f64::INFINITY, f64::min);
    let most = points
        .iter()
        .map(|p| p.mean_idle_addresses)
        .fold(1.0, f64::max);
    let xmin = 0.9 * least.min(most);
    let xmax = most.min(2.0 * least.max(1.0)) * 1.05;
    let points: Vec<&Point> = points
        .iter()
        .filter(|p| p.mean_idle_addresses <= xmax)
        .collect();
    let floor = 1e-5;
    let ly = |r: f64| r.max(floor).log10();
    let (ymin, ymax) = (floor.log10(), 0.0);
    let x = |v: f64| m + (w - 2.0 * m) * (v - xmin) / (xmax - xmin);
    let y = |r: f64| h - m - (h - 2.0 * m) * (ly(r) - ymin) / (ymax - ymin);
    let colour = |f: &str| match f {
        "on-demand" => "#1f77b4",
        "warm-target" => "#ff7f0e",
        "watermark" => "#2ca02c",
        "oracle" => "#d62728",
        "predictive" => "#9467bd",
        _ => "#8c564b",
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        w / 2.0,
        title.replace('&', "&amp;").replace('<', "&lt;")
    );
    s += &format!(
        "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n",
        h - m,
        w - m,
        h - m,
        h - m
    );
    for e in -5..=0 {
        let r = 10f64.powi(e);
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text>\n",
            m - 6.0,
            y(r) + 4.0
        );
    }
    for k in 0..=5 {
        let v = xmin + (xmax - xmin) * f64::from(k) / 5.0;
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{v:.0}</text>\n",
            x(v),
            h - m + 18.0
        );
    }
    s += &format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">mean idle addresses</text>\n<text x=\"18\" y=\"{}\" transform=\"rotate(-90 18 {})\" text-anchor=\"middle\">miss rate (log; 0 drawn at 1e-5)</text>\n",
        w / 2.0,
        h - 20.0,
        h / 2.0,
        h / 2.0
    );
    let mut front: Vec<&Point> = points.iter().copied().filter(|p| p.pareto).collect();
    front.sort_by(|a, b| a.mean_idle_addresses.total_cmp(&b.mean_idle_addresses));
    let path: Vec<String> = front
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.mean_idle_addresses), y(p.miss_rate)))
        .collect();
    s += &format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
        path.join(" ")
    );
    for p in &points {
        s += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{}\" fill=\"{}\"><title>{} {}: miss {:.4}, idle {:.0}</title></circle>\n",
            x(p.mean_idle_addresses),
            y(p.miss_rate),
            if p.best_01pct || p.best_1pct { 6 } else { 4 },
            colour(p.family),
            p.family,
            p.setting,
            p.miss_rate,
            p.mean_idle_addresses
        );
    }
    for (i, f) in [
        "on-demand",
        "warm-target",
        "watermark",
        "predictive",
        "adaptive",
        "oracle",
    ]
    .iter()
    .enumerate()
    {
        let yy = m + 16.0 * i as f64;
        s += &format!(
            "<circle cx=\"{}\" cy=\"{yy}\" r=\"4\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{f}</text>\n",
            w - m - 110.0,
            colour(f),
            w - m - 100.0,
            yy + 4.0
        );
    }
    s += "</svg>\n";
    s
}
