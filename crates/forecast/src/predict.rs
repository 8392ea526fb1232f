//! Forecasts per subdivision and horizon: alive VMs, peak alive over the horizon, creations,
//! bandwidth and the demand score, each with calibrated quantiles, plus the model chosen and its
//! recent error.
//!
//! * **Alive at the horizon**: the per-series [`Selector`] over the base models, fitted on the
//!   end-of-bucket alive series, its `k`-step forecast, with quantiles from its own recent `k`-step
//!   errors (conformal, adapted online) replayed over the calibration window.
//! * **Peak alive over the horizon** and **creations over the horizon**: empirical, for sparse and
//!   bursty series: the current alive count plus the quantiles of the past increases from "now" to
//!   the highest point of the next `k` steps, and the quantiles of past `k`-step creation totals, both
//!   at the same time of day (pooled over neighbouring hours when a single hour has few samples).
//! * **Cold start**: a subdivision with less than `min_history` steps borrows the pooled shape of its
//!   peers (their increases relative to their mean alive, rescaled to its own level) and says so.
//! * **Bandwidth** = alive × Mbps per VM (the mix of application profiles in its history); the
//!   **demand score** = predicted peak × Mbps per VM: it orders subdivisions when space is scarce.
//!   Shards are sized from addresses, never from the score.

use serde::Serialize;

use crate::backtest::Protocol;
use crate::calibrate::Calibrator;
use crate::error::ForecastError;
use crate::models::select::{base_candidates, Combine, Selector};
use crate::models::Model;
use crate::series::Series;

/// A forecast value with its quantiles (`(level, value)` pairs, ascending levels).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Quantiles {
    pub point: f64,
    pub quantiles: Vec<(f64, f64)>,
}

impl Quantiles {
    /// The value at `level` (exact level match, else the point).
    pub fn at(&self, level: f64) -> f64 {
        self.quantiles
            .iter()
            .find(|(l, _)| (l - level).abs() < 1e-9)
            .map_or(self.point, |&(_, v)| v)
    }

    fn map(&self, f: impl Fn(f64) -> f64) -> Quantiles {
        Quantiles {
            point: f(self.point),
            quantiles: self.quantiles.iter().map(|&(l, v)| (l, f(v))).collect(),
        }
    }
}

/// How to forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Steps ahead.
    pub horizon: usize,
    /// Steps in a day (the time-of-day conditioning and the daily season).
    pub season: usize,
    /// Quantile levels reported, each in (0, 1).
    pub levels: Vec<f64>,
    /// Steps of recent errors used to calibrate and to select models.
    pub window: usize,
    /// Below this many steps of history, a subdivision is a cold start.
    pub min_history: usize,
    /// Phase of the day of step 0 of the series (steps since midnight), for time-of-day effects.
    pub phase: usize,
}

/// The forecast of one subdivision.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SubdivisionForecast {
    pub subdivision: String,
    pub horizon_steps: usize,
    pub alive_now: f64,
    pub alive: Quantiles,
    pub peak: Quantiles,
    pub creations: Quantiles,
    pub bandwidth_mbps: Quantiles,
    pub mbps_per_vm: f64,
    pub demand_score: f64,
    /// The model behind `alive` (or `cold-start: pooled peers`).
    pub model: String,
    /// Its recent mean absolute one-step error.
    pub model_error: f64,
    pub cold_start: bool,
    /// Names of the scheduled external events that changed this forecast.
    pub events: Vec<String>,
}

/// Checks the options, naming the bad value.
pub fn validate(opts: &Options) -> Result<(), ForecastError> {
    if opts.horizon == 0 {
        return Err(ForecastError::Invalid {
            what: "horizon",
            value: "0".into(),
            reason: "must be at least one step".into(),
        });
    }
    for &l in &opts.levels {
        if !(l > 0.0 && l < 1.0) {
            return Err(ForecastError::Invalid {
                what: "quantile",
                value: l.to_string(),
                reason: "must lie strictly between 0 and 1".into(),
            });
        }
    }
    Ok(())
}

fn quantile_sorted(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// Samples of `f(t)` for past origins `t` at the same phase of the day as `now` (pooling
/// neighbouring phases until there are at least 4), where `f` sees the series and the origin.
fn same_phase(
    len: usize,
    now: usize,
    k: usize,
    season: usize,
    f: impl Fn(usize) -> f64,
) -> Vec<f64> {
    let m = season.max(1);
    let mut spread = 0;
    loop {
        let v: Vec<f64> = (1..len.saturating_sub(k - 1))
            .filter(|&t| {
                let d = (t % m + m - now % m) % m;
                d <= spread || m - d <= spread
            })
            .map(&f)
            .collect();
        if v.len() >= 4 || spread >= m / 2 {
            let mut v = v;
            v.sort_by(f64::total_cmp);
            return v;
        }
        spread += 1;
    }
}

fn empirical(base: f64, samples: &[f64], levels: &[f64]) -> Quantiles {
    Quantiles {
        point: (base + quantile_sorted(samples, 0.5)).max(0.0),
        quantiles: levels
            .iter()
            .map(|&l| (l, (base + quantile_sorted(samples, l)).max(0.0)))
            .collect(),
    }
}

/// Increase from the alive count at origin `t` to the highest peak of the next `k` steps.
fn peak_increase(s: &Series, t: usize, k: usize) -> f64 {
    let hi = s.peak[t..t + k]
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    hi - s.alive_end[t - 1]
}

fn creations_sum(s: &Series, t: usize, k: usize) -> f64 {
    s.creations[t..t + k].iter().sum()
}

/// Whether a series is too short to forecast from its own history.
pub fn is_cold(s: &Series, opts: &Options) -> bool {
    s.alive_end.len().saturating_sub(s.first_bucket) < opts.min_history.max(opts.horizon + 2)
}

/// Forecasts one subdivision from its own history (`peers` are used for a cold start only: the
/// caller passes the parent's series when it has one, else the other subdivisions').
pub fn forecast_subdivision(
    name: &str,
    s: &Series,
    peers: &[&Series],
    mbps_per_vm: f64,
    opts: &Options,
) -> Result<SubdivisionForecast, ForecastError> {
    validate(opts)?;
    let n = s.alive_end.len();
    let k = opts.horizon;
    let now = n + opts.phase; // phase of the next step
    let alive_now = s.alive_end.last().copied().unwrap_or(0.0);
    let cold = is_cold(s, opts);
    let (alive, peak, creations, model, model_error) = if cold {
        // Pooled peers: increases relative to each peer's mean alive, rescaled to this level.
        let level = if n > 0 {
            (s.alive_end.iter().sum::<f64>() / n as f64).max(1.0)
        } else {
            1.0
        };
        let mut inc = Vec::new();
        let mut cre = Vec::new();
        for p in peers {
            let pn = p.alive_end.len();
            if pn < k + 2 {
                continue;
            }
            let mean = (p.alive_end.iter().sum::<f64>() / pn as f64).max(1.0);
            inc.extend(same_phase(pn, now, k, opts.season, |t| {
                peak_increase(p, t, k) / mean
            }));
            cre.extend(same_phase(pn, now, k, opts.season, |t| {
                creations_sum(p, t, k) / mean
            }));
        }
        inc.sort_by(f64::total_cmp);
        cre.sort_by(f64::total_cmp);
        let peak = empirical(0.0, &inc, &opts.levels).map(|v| alive_now + v * level);
        let creations = empirical(0.0, &cre, &opts.levels).map(|v| v * level);
        let alive = peak.clone();
        (
            alive,
            peak,
            creations,
            "cold-start: pooled peers".to_string(),
            f64::NAN,
        )
    } else {
        let mut sel = Selector::new(&base_candidates(opts.season), Combine::Best, opts.window);
        // Replay the calibration window to collect k-step errors, then fit on everything.
        let mut cal = Calibrator::new(k, opts.window);
        let start = n.saturating_sub(opts.window).max(sel.min_len());
        if start < n {
            sel.fit(&s.alive_end[..start])?;
            // Only the k-step errors matter: the forecast reported is the k-th step's.
            for t in start..n {
                if t + k - 1 < n {
                    let f = sel.forecast(k)[k - 1];
                    cal.record(k, s.alive_end[t + k - 1], f.point.max(0.0));
                }
                sel.update(s.alive_end[t]);
            }
        }
        sel.fit(&s.alive_end)?;
        let f = sel.forecast(k)[k - 1];
        let alive = Quantiles {
            point: f.point.max(0.0),
            quantiles: opts
                .levels
                .iter()
                .map(|&l| (l, cal.quantile(k, f, l).max(0.0)))
                .collect(),
        };
        let inc = same_phase(n, now, k, opts.season, |t| peak_increase(s, t, k));
        let peak = empirical(alive_now, &inc, &opts.levels);
        let cre = same_phase(n, now, k, opts.season, |t| creations_sum(s, t, k));
        let creations = empirical(0.0, &cre, &opts.levels);
        (
            alive,
            peak,
            creations,
            sel.leader().unwrap_or_default(),
            sel.leader_error(),
        )
    };
    // The peak over the horizon is never below the alive count forecast at its end.
    let peak = Quantiles {
        point: peak.point.max(alive.point),
        quantiles: peak
            .quantiles
            .iter()
            .zip(&alive.quantiles)
            .map(|(&(l, p), &(_, a))| (l, p.max(a)))
            .collect(),
    };
    let bandwidth_mbps = alive.map(|v| v * mbps_per_vm);
    Ok(SubdivisionForecast {
        subdivision: name.to_string(),
        horizon_steps: k,
        alive_now,
        demand_score: peak.point * mbps_per_vm,
        alive,
        peak,
        creations,
        bandwidth_mbps,
        mbps_per_vm,
        model,
        model_error,
        cold_start: cold,
        events: Vec::new(),
    })
}

/// Applies scheduled external events to a forecast, given the effect on each step of the horizon
/// (see [`crate::events::effects`]): the alive count takes the last step's effect, the peak over the
/// horizon the strongest step's (every quantile is the largest over the steps), creations the
/// strongest step's as well; bandwidth and the demand score follow. Returns whether anything
/// changed.
pub fn apply_events(f: &mut SubdivisionForecast, effects: &[crate::events::Effect]) -> bool {
    if effects.iter().all(|e| e.is_none()) {
        return false;
    }
    let last = effects
        .last()
        .copied()
        .unwrap_or(crate::events::Effect::NONE);
    f.alive = f.alive.map(|v| last.apply(v));
    let strongest = |v: f64| effects.iter().map(|e| e.apply(v)).fold(v, f64::max);
    f.peak = f.peak.map(strongest);
    f.creations = f.creations.map(|v| {
        // New VMs of the event are creations too.
        effects.iter().map(|e| e.apply(v)).fold(v, f64::max)
    });
    f.bandwidth_mbps = f.alive.map(|v| v * f.mbps_per_vm);
    f.demand_score = f.peak.point * f.mbps_per_vm;
    true
}

/// Default protocol-like options for `horizon` steps with `season` steps a day.
pub fn default_options(horizon: usize, season: usize, levels: Vec<f64>) -> Options {
    Options {
        horizon,
        season,
        levels,
        window: 3 * season,
        min_history: 2 * season + 2,
        phase: 0,
    }
}

/// Keeps [`Protocol`] reachable from here for callers that backtest what they forecast.
pub type BacktestProtocol = Protocol;

#[cfg(test)]
mod tests {
    use super::*;

    fn series_from_alive(alive: &[f64]) -> Series {
        let mut s = Series::default();
        let mut prev = 0.0;
        for &a in alive {
            s.alive_end.push(a);
            s.peak.push(a.max(prev));
            s.mean.push(a);
            s.creations.push((a - prev).max(0.0));
            s.deletions.push((prev - a).max(0.0));
            prev = a;
        }
        s
    }

    #[test]
    fn a_daily_burst_is_forecast_at_its_hour() {
        // 10 VMs, a burst to 60 every day at 09:00-10:00.
        let alive: Vec<f64> = (0..24 * 8)
            .map(|t| if t % 24 == 9 { 60.0 } else { 10.0 })
            .collect();
        let s = series_from_alive(&alive[..24 * 7 + 8]);
        let opts = default_options(2, 24, vec![0.5, 0.95]);
        // History ends at 07:00 of day 8; the next two steps are 08:00 and 09:00.
        let f = forecast_subdivision("a", &s, &[], 100.0, &opts).unwrap();
        assert!(!f.cold_start);
        assert_eq!(f.alive_now, 10.0);
        assert_eq!(f.peak.point, 60.0, "{f:?}");
        assert_eq!(f.creations.point, 50.0);
        assert_eq!(f.demand_score, 6000.0);
        assert!(f.peak.at(0.95) >= 60.0);
        // Quiet hours: no peak expected.
        let quiet = forecast_subdivision(
            "a",
            &series_from_alive(&alive[..24 * 7 + 12]),
            &[],
            100.0,
            &opts,
        )
        .unwrap();
        assert_eq!(quiet.peak.point, 10.0);
    }

    #[test]
    fn cold_start_borrows_from_peers_and_says_so() {
        let peer_alive: Vec<f64> = (0..24 * 7)
            .map(|t| if t % 24 == 9 { 200.0 } else { 100.0 })
            .collect();
        let peer = series_from_alive(&peer_alive);
        // A new subdivision with 5 hours of history at a level of 10, ending at 08:00.
        let young = series_from_alive(&[10.0, 10.0, 10.0, 10.0, 10.0]);
        let mut opts = default_options(1, 24, vec![0.5, 0.95]);
        opts.phase = 4; // the series starts at 04:00, so the next step is 09:00
        let f = forecast_subdivision("young", &young, &[&peer], 0.0, &opts).unwrap();
        assert!(f.cold_start);
        assert!(f.model.starts_with("cold-start"));
        // The peers double at 09:00 relative to their mean (≈104): +96/104 of 10 ≈ +9.
        assert!(f.peak.point > 15.0 && f.peak.point < 25.0, "{f:?}");
    }

    #[test]
    fn events_raise_the_forecast_in_their_window() {
        use crate::events::Effect;
        let alive: Vec<f64> = vec![10.0; 60];
        let s = series_from_alive(&alive);
        let opts = default_options(2, 24, vec![0.5, 0.95]);
        let mut f = forecast_subdivision("a", &s, &[], 10.0, &opts).unwrap();
        assert_eq!(f.peak.point, 10.0);
        // An event of +50 VMs covering the second step only, and x2 on the first.
        let effects = [
            Effect {
                multiplier: 2.0,
                extra: 0.0,
            },
            Effect {
                multiplier: 1.0,
                extra: 50.0,
            },
        ];
        assert!(apply_events(&mut f, &effects));
        assert_eq!(f.alive.point, 60.0);
        assert_eq!(f.peak.point, 60.0);
        assert!(f.peak.at(0.95) >= 60.0);
        assert_eq!(f.demand_score, 600.0);
        assert!(!apply_events(&mut f, &[Effect::NONE, Effect::NONE]));
    }

    #[test]
    fn bad_options_are_named() {
        let s = series_from_alive(&[1.0; 60]);
        let mut opts = default_options(0, 24, vec![0.5]);
        let e = forecast_subdivision("a", &s, &[], 0.0, &opts).unwrap_err();
        assert!(e.to_string().contains("horizon 0"), "{e}");
        opts.horizon = 1;
        opts.levels = vec![1.5];
        let e = forecast_subdivision("a", &s, &[], 0.0, &opts).unwrap_err();
        assert!(e.to_string().contains("quantile 1.5"), "{e}");
    }
}
