//! Rolling-origin backtests (the protocol of issue 3).
//!
//! From `eval_start` on, a model is refit every `refit_every` steps on all history before that
//! point. With a horizon of one step, it forecasts one step ahead at every step, absorbing each new
//! observation between refits; with a longer horizon it forecasts steps 1..=H from each refit
//! origin. Intervals come from the [`Calibrator`], seeded with the model's errors over the
//! `calibration_window` steps before `eval_start` and fed every error as it is revealed (causal:
//! an interval never uses the error of its own forecast). Forecasts are clamped at 0 (VM counts).
//!
//! Scores per series: MASE (mean absolute error over the in-sample MAE of a seasonal naive of
//! period `season` before `eval_start`), sMAPE (mean of 2|e|/(|y|+|ŷ|), 0 when both are 0), pinball
//! loss of the 0.95 quantile, and the share of actuals inside the central 80% and 95% intervals. A
//! model's score is the mean over series; series whose MASE scale is 0 (constant before
//! `eval_start`) are left out of the MASE mean and counted.

use std::time::Instant;

use serde::Serialize;

use crate::calibrate::Calibrator;
use crate::error::ForecastError;
use crate::model::{Model, Step};

/// How to run a backtest.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Protocol {
    /// Steps ahead scored from each origin (1 = one-step-ahead with state updates).
    pub horizon: usize,
    /// Steps between refits.
    pub refit_every: usize,
    /// First step scored.
    pub eval_start: usize,
    /// Seasonal period of the MASE scale (24 for hourly data).
    pub season: usize,
    /// Errors kept per step ahead by the calibrator.
    pub calibration_window: usize,
}

/// Scores of one model (on one series, or averaged over series).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Score {
    pub mase: f64,
    pub smape: f64,
    pub pinball_95: f64,
    pub coverage_80: f64,
    pub coverage_95: f64,
    /// Fit and predict time, seconds (summed over series).
    pub seconds: f64,
    pub fits: u64,
    pub forecasts: u64,
    pub series: usize,
    /// Series left out of the MASE mean (zero scale) or skipped (too short).
    pub excluded: usize,
}

#[derive(Default)]
struct Acc {
    abs: f64,
    smape: f64,
    pinball: f64,
    in80: u64,
    in95: u64,
    n: u64,
}

impl Acc {
    fn score(&mut self, cal: &Calibrator, step: usize, f: Step, y: f64) {
        let f = Step {
            point: f.point.max(0.0),
            sigma: f.sigma,
        };
        let q = |p: f64| cal.quantile(step, f, p).max(0.0);
        let e = y - f.point;
        self.abs += e.abs();
        let denom = y.abs() + f.point.abs();
        if denom > 0.0 {
            self.smape += 2.0 * e.abs() / denom;
        }
        let q95 = q(0.95);
        self.pinball += (0.95 * (y - q95)).max((0.95 - 1.0) * (y - q95));
        self.in80 += u64::from(y >= q(0.10) && y <= q(0.90));
        self.in95 += u64::from(y >= q(0.025) && y <= q(0.975));
        self.n += 1;
    }
}

/// In-sample MAE of a seasonal naive of period `season` on `y`.
pub fn seasonal_naive_mae(y: &[f64], season: usize) -> f64 {
    if y.len() <= season {
        return f64::NAN;
    }
    let n = y.len() - season;
    (season..y.len())
        .map(|t| (y[t] - y[t - season]).abs())
        .sum::<f64>()
        / n as f64
}

/// Backtests one model on one series.
pub fn backtest_series(
    model: &mut dyn Model,
    y: &[f64],
    p: &Protocol,
) -> Result<Score, ForecastError> {
    if p.horizon == 0 || p.refit_every == 0 {
        return Err(ForecastError::Invalid {
            what: "protocol",
            value: format!("horizon {} refit every {}", p.horizon, p.refit_every),
            reason: "both must be at least one step".into(),
        });
    }
    let t0 = p.eval_start;
    if t0 < model.min_len() || t0 >= y.len() {
        return Err(ForecastError::TooShort {
            series: String::new(),
            model: model.name(),
            len: t0.min(y.len()),
            need: model.min_len(),
        });
    }
    let mut cal = Calibrator::new(p.horizon, p.calibration_window);
    let mut seconds = 0.0;
    let mut fits = 0u64;
    // Seed the calibrator with errors over the window before eval_start.
    let seed_from = t0.saturating_sub(p.calibration_window).max(model.min_len());
    if seed_from < t0 {
        let start = Instant::now();
        model.fit(&y[..seed_from])?;
        fits += 1;
        for t in seed_from..t0 {
            let f = model.forecast(p.horizon);
            for (k, s) in f.iter().enumerate() {
                if t + k < t0 {
                    cal.record(k + 1, y[t + k], s.point.max(0.0));
                }
            }
            model.update(y[t]);
        }
        seconds += start.elapsed().as_secs_f64();
    }
    let mut acc = Acc::default();
    let mut origin = t0;
    while origin < y.len() {
        let start = Instant::now();
        model.fit(&y[..origin])?;
        fits += 1;
        let end = (origin + p.refit_every).min(y.len());
        if p.horizon == 1 {
            for t in origin..end {
                if t > origin {
                    model.update(y[t - 1]);
                }
                let f = model.forecast(1)[0];
                acc.score(&cal, 1, f, y[t]);
                cal.record(1, y[t], f.point.max(0.0));
            }
        } else {
            let f = model.forecast(p.horizon);
            let steps: Vec<(usize, Step)> = f
                .into_iter()
                .enumerate()
                .filter(|(k, _)| origin + k < y.len())
                .collect();
            for &(k, s) in &steps {
                acc.score(&cal, k + 1, s, y[origin + k]);
            }
            for &(k, s) in &steps {
                cal.record(k + 1, y[origin + k], s.point.max(0.0));
            }
        }
        seconds += start.elapsed().as_secs_f64();
        origin = end;
    }
    let n = acc.n.max(1) as f64;
    let scale = seasonal_naive_mae(&y[..t0], p.season);
    Ok(Score {
        mase: acc.abs / n / scale,
        smape: acc.smape / n,
        pinball_95: acc.pinball / n,
        coverage_80: acc.in80 as f64 / n,
        coverage_95: acc.in95 as f64 / n,
        seconds,
        fits,
        forecasts: acc.n,
        series: 1,
        excluded: 0,
    })
}

/// Averages per-series scores (MASE over the series with a finite, non-zero scale). With no
/// series scored, every figure is NaN.
pub fn average(scores: &[Score], skipped: usize) -> Score {
    if scores.is_empty() {
        return Score {
            mase: f64::NAN,
            smape: f64::NAN,
            pinball_95: f64::NAN,
            coverage_80: f64::NAN,
            coverage_95: f64::NAN,
            excluded: skipped,
            ..Score::default()
        };
    }
    let ok: Vec<&Score> = scores.iter().collect();
    let mase: Vec<f64> = ok
        .iter()
        .map(|s| s.mase)
        .filter(|m| m.is_finite())
        .collect();
    let n = ok.len().max(1) as f64;
    Score {
        mase: mase.iter().sum::<f64>() / mase.len().max(1) as f64,
        smape: ok.iter().map(|s| s.smape).sum::<f64>() / n,
        pinball_95: ok.iter().map(|s| s.pinball_95).sum::<f64>() / n,
        coverage_80: ok.iter().map(|s| s.coverage_80).sum::<f64>() / n,
        coverage_95: ok.iter().map(|s| s.coverage_95).sum::<f64>() / n,
        seconds: ok.iter().map(|s| s.seconds).sum(),
        fits: ok.iter().map(|s| s.fits).sum(),
        forecasts: ok.iter().map(|s| s.forecasts).sum(),
        series: ok.len(),
        excluded: skipped + (ok.len() - mase.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SeasonalNaive;

    #[test]
    fn a_perfectly_seasonal_series_scores_zero_error() {
        let y: Vec<f64> = (0..24 * 10).map(|t| 10.0 + (t % 24) as f64).collect();
        let p = Protocol {
            horizon: 1,
            refit_every: 24,
            eval_start: 24 * 6,
            season: 24,
            calibration_window: 48,
        };
        let s = backtest_series(&mut SeasonalNaive::new(24), &y, &p).unwrap();
        assert_eq!(s.forecasts, 24 * 4);
        assert_eq!(s.fits, 4 + 1);
        assert_eq!(s.smape, 0.0);
        assert_eq!(s.coverage_95, 1.0);
        // Zero scale: MASE is not finite and is left out of averages.
        assert!(!s.mase.is_finite());
        assert_eq!(average(&[s], 0).excluded, 1);
        // Nothing scored: NaN, never a perfect-looking zero.
        let none = average(&[], 3);
        assert!(none.mase.is_nan() && none.coverage_95.is_nan());
        assert_eq!((none.series, none.excluded), (0, 3));
    }

    #[test]
    fn mase_and_smape_match_a_hand_computation() {
        // In-sample seasonal-naive(2) errors before t = 8: 1, 0, 1, 0, 1, 0 (MAE 0.5).
        let y = [1.0, 3.0, 2.0, 3.0, 1.0, 3.0, 2.0, 3.0, 2.0, 4.0, 2.0, 4.0];
        let p = Protocol {
            horizon: 1,
            refit_every: 100,
            eval_start: 8,
            season: 2,
            calibration_window: 4,
        };
        let s = backtest_series(&mut SeasonalNaive::new(2), &y, &p).unwrap();
        // One-step forecasts 2, 3, 2, 4 against 2, 4, 2, 4: MAE 0.25, MASE 0.5.
        assert_eq!(s.forecasts, 4);
        assert!((s.mase - 0.5).abs() < 1e-12, "{}", s.mase);
        assert!((s.smape - (2.0 / 7.0) / 4.0).abs() < 1e-12, "{}", s.smape);
        // One seeding fit and one refit.
        assert_eq!(s.fits, 2);
    }
}
