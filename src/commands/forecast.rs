//! `backtest`: rolling-origin evaluation of the forecasting models on a real trace.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use cidrcast_forecast::backtest::{average, backtest_series, Protocol, Score};
use cidrcast_forecast::models::mstl::Mstl;
use cidrcast_forecast::models::select::{base_candidates, Combine, Maker, Selector};
use cidrcast_forecast::models::Model;
use cidrcast_forecast::{build_series, parse_duration, Target};
use cidrcast_trace::{ReadOptions, TraceReader};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::output::{emit, Format, Table};

/// Arguments of `backtest`.
pub struct BacktestArgs {
    pub target: String,
    pub resolution: String,
    pub horizon: String,
    pub refit_every: String,
    pub eval_start: Option<f64>,
    pub top: Option<usize>,
    pub calibration_window: String,
}

#[derive(Serialize)]
struct ProtocolOut {
    target: Target,
    resolution_s: f64,
    horizon_steps: usize,
    refit_every_steps: usize,
    eval_start_s: f64,
    season_steps: usize,
    calibration_window_steps: usize,
}

#[derive(Serialize)]
struct Report {
    events: String,
    series: usize,
    protocol: ProtocolOut,
    models: BTreeMap<String, Score>,
    selected: Selected,
}

#[derive(Serialize)]
struct Selected {
    /// How the selection was made.
    rule: &'static str,
    model: String,
    #[serde(flatten)]
    score: Score,
}

fn steps(what: &'static str, text: &str, resolution: f64) -> Result<usize> {
    let secs = parse_duration(what, text)?;
    let n = secs / resolution;
    if (n - n.round()).abs() > 1e-9 || n.round() < 1.0 {
        bail!("--{what} {text} is not a whole number of --resolution steps ({resolution} s)");
    }
    Ok(n.round() as usize)
}

/// The models scored: every base candidate, then per-series selection and the ensemble over them.
fn models(season: usize, window: usize) -> Vec<Maker> {
    let mut all = base_candidates(season);
    // MSTL + AutoETS is scored on its own; it is too slow to refit per series inside the
    // selection at 5-minute resolution (tens of ms per 2,016-point fit).
    all.push(Box::new(move || {
        Box::new(Mstl::new(vec![season])) as Box<dyn Model>
    }));
    all.push(Box::new(move || {
        Box::new(Mstl::new(vec![season, season * 7])) as Box<dyn Model>
    }));
    all.push(Box::new(move || {
        Box::new(Selector::new(
            &base_candidates(season),
            Combine::Best,
            window,
        )) as Box<dyn Model>
    }));
    all.push(Box::new(move || {
        Box::new(Selector::new(
            &base_candidates(season),
            Combine::Weighted,
            window,
        )) as Box<dyn Model>
    }));
    all
}

pub fn backtest(output: Format, events: &Path, a: BacktestArgs) -> Result<()> {
    let target: Target = a.target.parse()?;
    let resolution = parse_duration("resolution", &a.resolution)?;
    let horizon = steps("horizon", &a.horizon, resolution)?;
    let refit_every = steps("refit-every", &a.refit_every, resolution)?;
    let window = steps("calibration-window", &a.calibration_window, resolution)?;
    if a.top == Some(0) {
        bail!("--top 0: at least one subdivision is needed");
    }
    let evs = TraceReader::open(events, ReadOptions::default())?.collect::<Result<Vec<_>, _>>()?;
    let set = build_series(&evs, resolution, None, None)?;
    let first = set.start;
    let eval_start_s = a.eval_start.unwrap_or(first + 4.0 * 86400.0);
    if !eval_start_s.is_finite() || eval_start_s <= first {
        bail!("--eval-start {eval_start_s} must lie after the first event ({first})");
    }
    // The first bucket that starts at or after --eval-start.
    let eval_start = ((eval_start_s - first) / resolution - 1e-9).ceil() as usize;
    if eval_start >= set.len {
        bail!(
            "--eval-start {eval_start_s} lies after the last bucket ({} s)",
            set.bucket_start(set.len - 1)
        );
    }
    let season = ((86400.0 / resolution).round() as usize).max(1);
    let protocol = Protocol {
        horizon,
        refit_every,
        eval_start,
        season,
        calibration_window: window,
    };
    let names: Vec<&str> = match a.top {
        Some(n) => set.top(n),
        None => set.series.keys().map(String::as_str).collect(),
    };
    let makers = models(season, window);
    let bar = ProgressBar::new((names.len() * makers.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} backtest [{bar:40}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    for make in &makers {
        let name = make().name();
        bar.set_message(name.clone());
        let mut per_series = Vec::with_capacity(names.len());
        let mut skipped = 0;
        for n in &names {
            let y = set.series[*n].target(target);
            let mut model = make();
            match backtest_series(model.as_mut(), y, &protocol) {
                Ok(s) => per_series.push(s),
                Err(cidrcast_forecast::ForecastError::TooShort { .. }) => skipped += 1,
                Err(e) => return Err(e.into()),
            }
            bar.inc(1);
        }
        scores.insert(name, average(&per_series, skipped));
    }
    bar.finish_and_clear();
    let best = "select".to_string();
    let best_score = scores[&best].clone();
    let report = Report {
        events: events.display().to_string(),
        series: names.len(),
        protocol: ProtocolOut {
            target,
            resolution_s: resolution,
            horizon_steps: horizon,
            refit_every_steps: refit_every,
            eval_start_s,
            season_steps: season,
            calibration_window_steps: window,
        },
        models: scores,
        selected: Selected {
            rule: "per series, the base model with the lowest mean absolute one-step error over the calibration window, refreshed with every new observation",
            model: best,
            score: best_score,
        },
    };
    emit(output, &report, |r| {
        let mut t = Table::new(&[
            "MODEL",
            "MASE",
            "sMAPE",
            "PINBALL 0.95",
            "COVERAGE 80%",
            "COVERAGE 95%",
            "SECONDS",
            "MS/FIT",
        ]);
        let row = |name: &str, s: &Score| {
            vec![
                name.to_string(),
                format!("{:.3}", s.mase),
                format!("{:.3}", s.smape),
                format!("{:.3}", s.pinball_95),
                format!("{:.3}", s.coverage_80),
                format!("{:.3}", s.coverage_95),
                format!("{:.3}", s.seconds),
                format!("{:.3}", 1000.0 * s.seconds / s.fits.max(1) as f64),
            ]
        };
        for (n, s) in &r.models {
            t.row(row(n, s));
        }
        t.row(row(
            &format!("selected: {}", r.selected.model),
            &r.selected.score,
        ));
        format!(
            "{} series of {}, target {:?}, {} s steps, horizon {} step(s), refit every {}, scored from {} s\n{}",
            r.series,
            r.events,
            r.protocol.target,
            r.protocol.resolution_s,
            r.protocol.horizon_steps,
            r.protocol.refit_every_steps,
            r.protocol.eval_start_s,
            t.render()
        )
    });
    Ok(())
}

/// Arguments of `forecast`.
pub struct ForecastArgs {
    pub events: Option<std::path::PathBuf>,
    pub subdivision: Option<String>,
    pub horizon: String,
    pub resolution: String,
    pub quantiles: String,
}

#[derive(Serialize)]
struct ForecastReport {
    source: String,
    resolution_s: f64,
    horizon_s: f64,
    history_end_s: f64,
    quantiles: Vec<f64>,
    subdivisions: Vec<cidrcast_forecast::predict::SubdivisionForecast>,
}

/// Parses `0.5,0.95,0.99`, naming a bad entry.
pub fn parse_quantiles(s: &str) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let q: f64 = part
            .parse()
            .map_err(|_| anyhow::anyhow!("--quantiles: {part:?} is not a number"))?;
        if !(q > 0.0 && q < 1.0) {
            bail!("--quantiles: {part} must lie strictly between 0 and 1");
        }
        v.push(q);
    }
    if v.is_empty() {
        bail!("--quantiles: no quantile given");
    }
    v.sort_by(f64::total_cmp);
    v.dedup();
    Ok(v)
}

/// Mbps per VM of each subdivision: the mean `network_mbps` of the profiles its VMs were created
/// with; VMs without a (known) profile count as the `general` profile when the configuration has
/// one, else as the mean of all profiles.
fn mbps_per_vm(
    events: &[cidrcast_core::model::VmEvent],
    config: &cidrcast_config::Config,
) -> std::collections::HashMap<String, f64> {
    let fallback = config
        .profile("general")
        .map(|p| p.network_mbps)
        .unwrap_or_else(|| {
            let n = config.profiles.len().max(1) as f64;
            config.profiles.iter().map(|p| p.network_mbps).sum::<f64>() / n
        });
    let mut sums: std::collections::HashMap<String, (f64, f64)> = Default::default();
    for e in events
        .iter()
        .filter(|e| e.kind == cidrcast_core::model::EventKind::Create)
    {
        let mbps = e
            .profile
            .as_deref()
            .and_then(|p| config.profile(p))
            .map_or(fallback, |p| p.network_mbps);
        let s = sums.entry(e.subdivision.clone()).or_default();
        s.0 += mbps;
        s.1 += 1.0;
    }
    sums.into_iter().map(|(k, (m, n))| (k, m / n)).collect()
}

pub fn forecast(ctx: &crate::context::Ctx, a: ForecastArgs) -> Result<()> {
    use cidrcast_forecast::events::{ancestors, covers, effects, in_scope};
    use cidrcast_forecast::predict::{
        apply_events, default_options, forecast_subdivision, is_cold,
    };
    let levels = parse_quantiles(&a.quantiles)?;
    let resolution = parse_duration("resolution", &a.resolution)?;
    let horizon = steps("horizon", &a.horizon, resolution)?;
    let (evs, source) = match &a.events {
        Some(p) => (
            TraceReader::open(p, ReadOptions::default())?.collect::<Result<Vec<_>, _>>()?,
            p.display().to_string(),
        ),
        None => {
            let engine = ctx.engine()?;
            let mut all = Vec::new();
            let mut after = 0;
            loop {
                let page = cidrcast_store::Store::events(engine.store(), after, 10_000)?;
                let Some(&(last, _)) = page.last() else { break };
                after = last;
                all.extend(page.into_iter().map(|(_, e)| e));
            }
            (all, format!("the store in {}", ctx.data_dir.display()))
        }
    };
    if evs.is_empty() {
        bail!("no VM events in {source}: nothing to forecast from");
    }
    let set = build_series(&evs, resolution, None, None)?;
    if let Some(s) = &a.subdivision {
        if !set.series.contains_key(s) {
            bail!("unknown subdivision `{s}`: it has no events in {source}");
        }
    }
    let season = ((86400.0 / resolution).round() as usize).max(1);
    let mut opts = default_options(horizon, season, levels.clone());
    opts.phase = ((set.start.rem_euclid(86400.0)) / resolution).floor() as usize;
    let mbps = mbps_per_vm(&evs, &ctx.config);
    // Scheduled external events: the configuration's, and the store's when there is one.
    let mut scheduled = ctx.config.events.clone();
    let mut specs = ctx.config.subdivisions.clone();
    if ctx.data_dir.exists() {
        let engine = ctx.engine()?;
        for e in engine.events()? {
            if !scheduled.iter().any(|s| s.name == e.name) {
                scheduled.push(e);
            }
        }
        specs.extend(engine.read(|ipam| ipam.subdivision_specs())?);
    }
    let history_end = set.bucket_start(set.len);
    let step_starts: Vec<f64> = (0..horizon)
        .map(|i| history_end + i as f64 * resolution)
        .collect();
    let all: Vec<&cidrcast_forecast::Series> = set.series.values().collect();
    let mut out = Vec::new();
    for (name, s) in &set.series {
        if a.subdivision.as_ref().is_some_and(|x| x != name) {
            continue;
        }
        // A cold start borrows from the nearest ancestor with a history of its own, else from
        // every other subdivision.
        let anc = ancestors(name, &specs);
        let parent = anc
            .iter()
            .find(|a| set.series.get(*a).is_some_and(|p| !is_cold(p, &opts)));
        let peers: Vec<&cidrcast_forecast::Series> = match parent {
            Some(p) if is_cold(s, &opts) => vec![&set.series[p]],
            _ => all
                .iter()
                .copied()
                .filter(|p| !std::ptr::eq(*p, s))
                .collect(),
        };
        let mut f = forecast_subdivision(
            name,
            s,
            &peers,
            mbps.get(name).copied().unwrap_or(0.0),
            &opts,
        )?;
        if f.cold_start {
            if let Some(p) = parent {
                f.model = format!("cold-start: parent `{p}`");
            }
        }
        let effects = effects(name, &anc, &step_starts, resolution, &scheduled);
        if apply_events(&mut f, &effects) {
            f.events = scheduled
                .iter()
                .filter(|e| {
                    in_scope(e, name, &anc) && step_starts.iter().any(|&t| covers(e, t, resolution))
                })
                .map(|e| e.name.clone())
                .collect();
        }
        out.push(f);
    }
    let report = ForecastReport {
        source,
        resolution_s: resolution,
        horizon_s: horizon as f64 * resolution,
        history_end_s: history_end,
        quantiles: levels,
        subdivisions: out,
    };
    emit(ctx.output, &report, |r| {
        let hi = r.quantiles.last().copied().unwrap_or(0.5);
        let fmt = |q: &cidrcast_forecast::predict::Quantiles| {
            format!("{:.1} (q{}: {:.1})", q.point, hi, q.at(hi))
        };
        let mut t = Table::new(&[
            "SUBDIVISION",
            "MODEL",
            "ALIVE NOW",
            "ALIVE",
            "PEAK",
            "CREATIONS",
            "MBPS",
            "SCORE",
        ]);
        for f in &r.subdivisions {
            t.row(vec![
                f.subdivision.clone(),
                f.model.clone(),
                format!("{:.0}", f.alive_now),
                fmt(&f.alive),
                fmt(&f.peak),
                fmt(&f.creations),
                format!("{:.0}", f.bandwidth_mbps.point),
                format!("{:.0}", f.demand_score),
            ]);
        }
        format!(
            "forecast for the {} s after {} s, from {}\n{}",
            r.horizon_s,
            r.history_end_s,
            r.source,
            t.render()
        )
    });
    Ok(())
}
