//! Conformal calibration: intervals from the model's own recent errors, per horizon step.
//!
//! For each step ahead `k`, the calibrator keeps the last `window` signed errors `y − ŷ` of the
//! model's `k`-step forecasts. The quantile `q` of a forecast is `ŷ + Q(q)`, where `Q` is the
//! empirical quantile of those errors with the finite-sample correction of split conformal
//! prediction (the ⌈(n + 1)·q⌉-th smallest of `n`); with too few errors it falls back to the model's
//! Gaussian interval. Raw model intervals are not trusted: they cover less than they claim on real,
//! bursty series.
//!
//! VM counts are discrete and often unchanged from one step to the next, so many errors are exactly
//! zero and a plain empirical quantile covers more than it claims. Each standard quantile level is
//! therefore adapted online (adaptive conformal inference, Gibbs & Candès 2021): after every
//! observation, the level used for `q` moves by `γ·(q − 1[y ≤ ŷ_q])`, which drives the long-run
//! frequency of `y ≤ ŷ_q` to `q` whatever the error distribution.

use std::collections::VecDeque;

use crate::model::{normal_quantile, Step};

/// Fewest errors a step needs before its conformal quantiles replace the model's own.
pub const MIN_ERRORS: usize = 24;

/// Quantile levels adapted online (the bounds of the 50, 80, 90, 95 and 99% central intervals and
/// the median).
pub const ADAPTED: [f64; 11] = [
    0.005, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975, 0.995,
];

/// Step size of the online adaptation of quantile levels.
pub const ADAPT_RATE: f64 = 0.05;

/// Range of an adapted level. Beyond [0, 1] the quantile stays at the extreme error, but the level
/// keeps its excess, so the adaptation keeps its accounting instead of being clipped.
const LEVEL_MIN: f64 = 0.0005;
const LEVEL_MAX: f64 = 0.9995;

/// The quantile of sorted errors at `level`, interpolated (type 7); the extreme errors beyond
/// [0, 1].
pub fn sorted_quantile(sorted: &[f64], level: f64) -> f64 {
    let Some((&lo, &hi)) = sorted.first().zip(sorted.last()) else {
        return 0.0;
    };
    if level >= 1.0 {
        return hi;
    }
    if level <= 0.0 {
        return lo;
    }
    let pos = level * (sorted.len() - 1) as f64;
    let (a, b) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[a] + (sorted[b] - sorted[a]) * (pos - a as f64)
}

/// Recent errors per step ahead.
#[derive(Clone, Debug)]
pub struct Calibrator {
    window: usize,
    errors: Vec<VecDeque<f64>>,
    /// The same errors, sorted (kept in step with `errors`).
    sorted: Vec<Vec<f64>>,
    /// Per step: the level in use for each of [`ADAPTED`].
    levels: Vec<[f64; ADAPTED.len()]>,
}

impl Calibrator {
    /// Keeps the last `window` errors for each of `horizon` steps.
    pub fn new(horizon: usize, window: usize) -> Self {
        Calibrator {
            window: window.max(1),
            errors: vec![VecDeque::new(); horizon.max(1)],
            sorted: vec![Vec::new(); horizon.max(1)],
            levels: vec![ADAPTED; horizon.max(1)],
        }
    }

    /// Records the error of a `step`-ahead forecast (1-based).
    pub fn record(&mut self, step: usize, actual: f64, predicted: f64) {
        let e = actual - predicted;
        if step == 0 || step > self.errors.len() || !e.is_finite() {
            return;
        }
        let i = step - 1;
        let sorted = &mut self.sorted[i];
        if sorted.len() >= MIN_ERRORS {
            for (target, level) in ADAPTED.iter().zip(self.levels[i].iter_mut()) {
                let hit = e <= sorted_quantile(sorted, *level);
                *level = (*level + ADAPT_RATE * (target - f64::from(u8::from(hit))))
                    .clamp(LEVEL_MIN, LEVEL_MAX);
            }
        }
        let q = &mut self.errors[i];
        if q.len() == self.window {
            if let Some(old) = q.pop_front() {
                let at = sorted.partition_point(|x| *x < old);
                sorted.remove(at);
            }
        }
        q.push_back(e);
        let at = sorted.partition_point(|x| *x < e);
        sorted.insert(at, e);
    }

    /// The level in use for quantile `q` at `step` (adapted when `q` is one of [`ADAPTED`]).
    pub fn level(&self, step: usize, q: f64) -> f64 {
        ADAPTED
            .iter()
            .position(|a| (a - q).abs() < 1e-9)
            .and_then(|i| self.levels.get(step - 1).map(|l| l[i]))
            .unwrap_or(q)
    }

    /// Errors held for a step.
    pub fn count(&self, step: usize) -> usize {
        self.errors.get(step - 1).map_or(0, VecDeque::len)
    }

    /// The `q`-quantile forecast for `step` (1-based) given the model's forecast of that step.
    pub fn quantile(&self, step: usize, f: Step, q: f64) -> f64 {
        let errs = self.errors.get(step - 1);
        match errs {
            Some(e) if e.len() >= MIN_ERRORS => {
                f.point + sorted_quantile(&self.sorted[step - 1], self.level(step, q))
            }
            _ => f.point + normal_quantile(q) * if f.sigma.is_finite() { f.sigma } else { 0.0 },
        }
    }
}

/// The empirical quantile of `errors` at level `q`, interpolated between order statistics (type 7).
pub fn empirical_quantile(errors: impl Iterator<Item = f64>, q: f64) -> f64 {
    let mut v: Vec<f64> = errors.filter(|e| e.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    sorted_quantile(&v, q.clamp(0.0, 1.0))
}

/// The finite-sample conformal quantile of `errors` at level `q`: for `q >= 0.5` the
/// ⌈(n + 1)q⌉-th smallest (capped at the largest), for `q < 0.5` symmetrically from below.
pub fn conformal_quantile(errors: impl Iterator<Item = f64>, q: f64) -> f64 {
    let mut v: Vec<f64> = errors.filter(|e| e.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if q >= 0.5 {
        let k = ((n as f64 + 1.0) * q).ceil() as usize;
        v[k.clamp(1, n) - 1]
    } else {
        let k = ((n as f64 + 1.0) * (1.0 - q)).ceil() as usize;
        v[n - k.clamp(1, n)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformal_quantiles_use_the_finite_sample_rank() {
        let e: Vec<f64> = (1..=19).map(f64::from).collect();
        // n = 19: the 0.95 quantile is the ⌈20·0.95⌉ = 19th smallest.
        assert_eq!(conformal_quantile(e.iter().copied(), 0.95), 19.0);
        assert_eq!(conformal_quantile(e.iter().copied(), 0.05), 1.0);
        assert_eq!(conformal_quantile(e.iter().copied(), 0.5), 10.0);
    }

    /// Online coverage: interval first, then the actual, then the error is recorded.
    fn online_coverage(draw: impl Fn(f64) -> f64, steps: usize) -> (f64, f64) {
        let mut state = 12345u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let mut cal = Calibrator::new(1, 500);
        let f = Step {
            point: 0.0,
            sigma: 1.0,
        };
        for _ in 0..500 {
            cal.record(1, draw(next()), 0.0);
        }
        let (mut in95, mut in80) = (0, 0);
        for _ in 0..steps {
            let y = draw(next());
            in95 += usize::from(y >= cal.quantile(1, f, 0.025) && y <= cal.quantile(1, f, 0.975));
            in80 += usize::from(y >= cal.quantile(1, f, 0.1) && y <= cal.quantile(1, f, 0.9));
            cal.record(1, y, 0.0);
        }
        (in95 as f64 / steps as f64, in80 as f64 / steps as f64)
    }

    #[test]
    fn calibrated_intervals_cover_what_they_claim_on_skewed_errors() {
        // Exponential errors (mean 3): a Gaussian interval would be wrong on both sides.
        let (c95, c80) = online_coverage(|u| -(1.0 - u).ln() * 3.0, 20_000);
        assert!((0.93..=0.97).contains(&c95), "95%: {c95}");
        assert!((0.77..=0.83).contains(&c80), "80%: {c80}");
    }

    #[test]
    fn adaptation_corrects_over_coverage_on_discrete_errors() {
        // Discrete errors, 60% exactly zero: a plain empirical quantile over-covers; the adapted
        // levels bring the 95% interval back into range.
        let draw = |u: f64| {
            if u < 0.6 {
                0.0
            } else {
                ((u - 0.6) * 50.0).floor() - 10.0
            }
        };
        let (c95, _) = online_coverage(draw, 20_000);
        assert!((0.93..=0.97).contains(&c95), "95%: {c95}");
    }

    #[test]
    fn cold_calibrators_use_the_gaussian_interval() {
        let f = Step {
            point: 0.0,
            sigma: 1.0,
        };
        // Before MIN_ERRORS errors, the model's Gaussian interval is used.
        let cold = Calibrator::new(1, 10);
        assert!((cold.quantile(1, f, 0.975) - 1.959964).abs() < 1e-5);
    }
}
