//! `backtest`: rolling-origin evaluation of the forecasting models on a real trace.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};
use cidrcast_forecast::backtest::{average, backtest_series, Protocol, Score};
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
    all.push(Box::new(move || {
        Box::new(Selector::new(&base_candidates(season), Combine::Best, window)) as Box<dyn Model>
    }));
    all.push(Box::new(move || {
        Box::new(Selector::new(&base_candidates(season), Combine::Weighted, window))
            as Box<dyn Model>
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
