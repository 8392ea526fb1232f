//! Forecasting models behind one trait, and the seasonal naive reference.
//!
//! * [`hw`]: Holt-Winters, ETS(A,Ad,A), with an O(1) state update.
//! * [`sparse`]: empirical changes by time of day, for sparse and bursty counts.
//! * [`select`]: per-series selection or weighted ensembles by rolling one-step errors.
//! * [`mstl`]: MSTL decomposition with explicit periods and AutoETS on the remainder (augurs).

use crate::error::ForecastError;

pub mod hw;
pub mod mstl;
pub mod select;
pub mod sparse;

/// One step of a forecast: the point and the model's own standard error for that step (`NaN` when
/// the model has none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    pub point: f64,
    pub sigma: f64,
}

/// A univariate model: fit on history, then forecast and absorb new observations.
pub trait Model: Send {
    /// A short name (as in backtest tables).
    fn name(&self) -> String;
    /// Fewest points `fit` accepts.
    fn min_len(&self) -> usize;
    /// Estimates the parameters and the state from `history`.
    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError>;
    /// Absorbs one new observation without re-estimating the parameters.
    fn update(&mut self, y: f64);
    /// Forecasts steps 1..=`h` after the last observation.
    fn forecast(&self, h: usize) -> Vec<Step>;

    /// `TooShort` when a history of `len` points is below [`Model::min_len`].
    fn require_len(&self, len: usize) -> Result<(), ForecastError> {
        if len < self.min_len() {
            return Err(ForecastError::TooShort {
                series: String::new(),
                model: self.name(),
                len,
                need: self.min_len(),
            });
        }
        Ok(())
    }
}

/// Seasonal naive: the value one season ago. Its standard error comes from the in-sample
/// seasonal differences, growing with the number of seasons ahead (as statsforecast's
/// `SeasonalNaive`).
#[derive(Clone, Debug)]
pub struct SeasonalNaive {
    period: usize,
    /// The last `period` observations (ring order: oldest first).
    last: Vec<f64>,
    sigma: f64,
}

impl SeasonalNaive {
    /// A seasonal naive model of the given period (e.g. 24 hourly, 168 weekly).
    pub fn new(period: usize) -> Self {
        SeasonalNaive {
            period: period.max(1),
            last: Vec::new(),
            sigma: f64::NAN,
        }
    }
}

impl Model for SeasonalNaive {
    fn name(&self) -> String {
        format!("seasonal_naive_{}", self.period)
    }

    fn min_len(&self) -> usize {
        self.period + 1
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        let m = self.period;
        self.require_len(history.len())?;
        let diffs: Vec<f64> = (m..history.len())
            .map(|t| history[t] - history[t - m])
            .collect();
        let ss: f64 = diffs.iter().map(|d| d * d).sum();
        self.sigma = (ss / diffs.len() as f64).sqrt();
        self.last = history[history.len() - m..].to_vec();
        Ok(())
    }

    fn update(&mut self, y: f64) {
        if !self.last.is_empty() {
            self.last.remove(0);
            self.last.push(y);
        }
    }

    fn forecast(&self, h: usize) -> Vec<Step> {
        let m = self.period;
        (0..h)
            .map(|i| Step {
                point: self.last[i % m],
                sigma: self.sigma * (((i / m) + 1) as f64).sqrt(),
            })
            .collect()
    }
}

/// The standard normal quantile (Acklam's rational approximation, |error| < 1.2e-9).
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let plow = 0.02425;
    if p <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if p >= 1.0 {
        return f64::INFINITY;
    }
    if p < plow {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p <= 1.0 - plow {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seasonal_naive_repeats_the_last_season_and_widens_per_season() {
        let y: Vec<f64> = (0..48)
            .map(|t| (t % 24) as f64 + if t >= 24 { 1.0 } else { 0.0 })
            .collect();
        let mut m = SeasonalNaive::new(24);
        m.fit(&y).unwrap();
        let f = m.forecast(26);
        assert_eq!(f[0].point, 1.0);
        assert_eq!(f[23].point, 24.0);
        assert_eq!(f[24].point, 1.0);
        assert!((f[0].sigma - 1.0).abs() < 1e-12);
        assert!((f[24].sigma - 2f64.sqrt()).abs() < 1e-12);
        m.update(100.0);
        assert_eq!(m.forecast(24)[23].point, 100.0);
        assert!(SeasonalNaive::new(24).fit(&y[..24]).is_err());
    }

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
        assert!((normal_quantile(0.9) - 1.281552).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-12);
        assert!((normal_quantile(0.01) + 2.326348).abs() < 1e-6);
    }
}
