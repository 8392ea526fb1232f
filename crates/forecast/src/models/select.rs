//! Per-series model selection and ensembles, by rolling one-step errors.
//!
//! The meta-model runs every candidate side by side on the same series, records each one's
//! absolute one-step error as observations arrive (its own rolling-origin backtest, refreshed with
//! every new point), and forecasts with the candidate whose mean error over the last `window`
//! steps is lowest ([`Combine::Best`]), or with all of them weighted by the inverse of their mean
//! squared error ([`Combine::Weighted`]). A candidate without a track record yet is seeded at
//! `fit` by fitting it on all but the most recent points and rolling it over them.

use std::collections::VecDeque;

use super::{Model, Step};
use crate::error::ForecastError;

/// How the candidates' forecasts are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// The candidate with the lowest recent mean absolute error.
    Best,
    /// All candidates, weighted by 1 / recent mean squared error.
    Weighted,
}

/// A constructor of a candidate model.
pub type Maker = Box<dyn Fn() -> Box<dyn Model> + Send + Sync>;

struct Candidate {
    model: Box<dyn Model>,
    /// Fitted on the current history (false when the history is too short for it).
    ready: bool,
    errors: VecDeque<f64>,
    /// Running sums of |e| and e² over `errors`.
    abs_sum: f64,
    sq_sum: f64,
    next: f64,
}

/// Selects or combines candidate models per series.
pub struct Selector {
    combine: Combine,
    window: usize,
    candidates: Vec<Candidate>,
}

impl Selector {
    /// A meta-model over fresh instances of `makers`, judging them on the last `window` steps.
    pub fn new(makers: &[Maker], combine: Combine, window: usize) -> Self {
        Selector {
            combine,
            window: window.max(1),
            candidates: makers
                .iter()
                .map(|m| Candidate {
                    model: m(),
                    ready: false,
                    errors: VecDeque::new(),
                    abs_sum: 0.0,
                    sq_sum: 0.0,
                    next: f64::NAN,
                })
                .collect(),
        }
    }

    fn record(c: &mut Candidate, y: f64, window: usize) {
        if c.next.is_finite() {
            if c.errors.len() == window {
                if let Some(old) = c.errors.pop_front() {
                    c.abs_sum -= old.abs();
                    c.sq_sum -= old * old;
                }
            }
            let e = y - c.next;
            c.errors.push_back(e);
            c.abs_sum += e.abs();
            c.sq_sum += e * e;
        }
    }

    fn clear(c: &mut Candidate) {
        c.errors.clear();
        c.abs_sum = 0.0;
        c.sq_sum = 0.0;
    }

    fn mean_abs(c: &Candidate) -> f64 {
        if c.errors.is_empty() {
            return f64::INFINITY;
        }
        c.abs_sum.max(0.0) / c.errors.len() as f64
    }

    fn mean_sq(c: &Candidate) -> f64 {
        if c.errors.is_empty() {
            return f64::INFINITY;
        }
        c.sq_sum.max(0.0) / c.errors.len() as f64
    }

    /// Weights of the ready candidates (summing to 1).
    fn weights(&self) -> Vec<f64> {
        let ready: Vec<bool> = self.candidates.iter().map(|c| c.ready).collect();
        let mut w = vec![0.0; self.candidates.len()];
        match self.combine {
            Combine::Best => {
                let best = self
                    .candidates
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| ready[*i])
                    .min_by(|a, b| Self::mean_abs(a.1).total_cmp(&Self::mean_abs(b.1)))
                    .map(|(i, _)| i);
                if let Some(i) = best {
                    w[i] = 1.0;
                }
            }
            Combine::Weighted => {
                let inv: Vec<f64> = self
                    .candidates
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        if !ready[i] {
                            return 0.0;
                        }
                        let ms = Self::mean_sq(c);
                        if ms.is_finite() {
                            1.0 / (ms + 1e-6)
                        } else {
                            1e-6
                        }
                    })
                    .collect();
                let total: f64 = inv.iter().sum();
                if total > 0.0 {
                    for (wi, v) in w.iter_mut().zip(inv) {
                        *wi = v / total;
                    }
                }
            }
        }
        w
    }

    /// The name of the candidate with the highest weight.
    pub fn leader(&self) -> Option<String> {
        let w = self.weights();
        w.iter()
            .enumerate()
            .filter(|(_, &x)| x > 0.0)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| self.candidates[i].model.name())
    }

    /// Recent mean absolute one-step error of the leader.
    pub fn leader_error(&self) -> f64 {
        let w = self.weights();
        w.iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(f64::NAN, |(i, _)| Self::mean_abs(&self.candidates[i]))
    }
}

impl Model for Selector {
    fn name(&self) -> String {
        match self.combine {
            Combine::Best => "select".into(),
            Combine::Weighted => "ensemble".into(),
        }
    }

    fn min_len(&self) -> usize {
        self.candidates
            .iter()
            .map(|c| c.model.min_len())
            .min()
            .unwrap_or(1)
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        let n = history.len();
        self.require_len(n)?;
        let window = self.window;
        // A candidate without a track record (new, or too short for the history so far) is
        // judged on the most recent points it can be: fitted before them and rolled over them.
        for c in &mut self.candidates {
            let mut rolled_to_end = false;
            if c.errors.len() * 2 < window.min(n) {
                let split = n.saturating_sub(window).max(c.model.min_len());
                if split < n && c.model.fit(&history[..split]).is_ok() {
                    Self::clear(c);
                    for &y in &history[split..] {
                        c.next = c.model.forecast(1)[0].point;
                        Self::record(c, y, window);
                        c.model.update(y);
                    }
                    rolled_to_end = true;
                }
            }
            // A candidate just rolled through the history is up to date: no second fit.
            c.ready = rolled_to_end || (n >= c.model.min_len() && c.model.fit(history).is_ok());
            c.next = if c.ready {
                c.model.forecast(1)[0].point
            } else {
                f64::NAN
            };
        }
        Ok(())
    }

    fn update(&mut self, y: f64) {
        let window = self.window;
        for c in self.candidates.iter_mut().filter(|c| c.ready) {
            Self::record(c, y, window);
            c.model.update(y);
            c.next = c.model.forecast(1)[0].point;
        }
    }

    fn forecast(&self, h: usize) -> Vec<Step> {
        let w = self.weights();
        let mut out = vec![
            Step {
                point: 0.0,
                sigma: 0.0
            };
            h
        ];
        for (c, &wi) in self.candidates.iter().zip(&w) {
            if wi <= 0.0 {
                continue;
            }
            for (o, s) in out.iter_mut().zip(c.model.forecast(h)) {
                o.point += wi * s.point;
                o.sigma += wi * if s.sigma.is_finite() { s.sigma } else { 0.0 };
            }
        }
        out
    }
}

/// The base models every series is judged on, for data with `season` steps a day.
pub fn base_candidates(season: usize) -> Vec<Maker> {
    vec![
        Box::new(move || Box::new(super::SeasonalNaive::new(season)) as Box<dyn Model>),
        Box::new(move || Box::new(super::SeasonalNaive::new(season * 7)) as Box<dyn Model>),
        Box::new(|| Box::new(super::SeasonalNaive::new(1)) as Box<dyn Model>),
        Box::new(move || Box::new(super::hw::HoltWinters::new(season)) as Box<dyn Model>),
        Box::new(|| Box::new(super::hw::HoltWinters::new(0)) as Box<dyn Model>),
        Box::new(move || Box::new(super::sparse::EmpiricalChange::new(season)) as Box<dyn Model>),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::SeasonalNaive;

    fn makers() -> Vec<Maker> {
        vec![
            Box::new(|| Box::new(SeasonalNaive::new(24)) as Box<dyn Model>),
            Box::new(|| Box::new(SeasonalNaive::new(1)) as Box<dyn Model>),
        ]
    }

    #[test]
    fn picks_the_candidate_that_has_been_right() {
        // A pure daily pattern: the seasonal naive of period 24 is exact, the last value is not.
        let y: Vec<f64> = (0..24 * 5).map(|t| ((t % 24) * 3) as f64).collect();
        let mut s = Selector::new(&makers(), Combine::Best, 24);
        s.fit(&y[..24 * 4]).unwrap();
        assert_eq!(s.leader().as_deref(), Some("seasonal_naive_24"));
        assert_eq!(s.forecast(1)[0].point, y[24 * 4]);
        // A random walk with steps: the last value wins.
        let walk: Vec<f64> = (0..24 * 5).map(|t| (t / 5) as f64 * 7.0).collect();
        let mut s = Selector::new(&makers(), Combine::Best, 24);
        s.fit(&walk[..24 * 4]).unwrap();
        assert_eq!(s.leader().as_deref(), Some("seasonal_naive_1"));
    }

    #[test]
    fn weights_follow_recent_errors() {
        let y: Vec<f64> = (0..24 * 5).map(|t| ((t % 24) * 3) as f64).collect();
        let mut s = Selector::new(&makers(), Combine::Weighted, 24);
        s.fit(&y[..24 * 4]).unwrap();
        let w = s.weights();
        assert!(
            w[0] > 0.99 && (w.iter().sum::<f64>() - 1.0).abs() < 1e-9,
            "{w:?}"
        );
        s.update(y[24 * 4]);
        assert_eq!(s.name(), "ensemble");
    }
}
