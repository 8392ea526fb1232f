//! Holt-Winters: exponential smoothing with a damped additive trend and an additive season,
//! ETS(A,Ad,A) — or ETS(A,Ad,N) without a season. Pure Rust, with an O(1) state update, so a
//! one-step-ahead forecaster can absorb every new observation without refitting.
//!
//! Fit: the state starts from the first two seasons (level = mean of the first, trend = the change
//! of the mean between the first two, per step; seasonal indices = the first season's deviations
//! from its mean), and (α, β, γ, φ) are chosen on a grid by the one-step squared error over the
//! history, then refined by coordinate descent.

use super::{Model, Step};
use crate::error::ForecastError;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Params {
    alpha: f64,
    beta: f64,
    gamma: f64,
    phi: f64,
}

#[derive(Clone, Debug, PartialEq)]
struct State {
    level: f64,
    trend: f64,
    /// Seasonal indices; `season[pos]` applies to the next observation when `pos` is `next`.
    season: Vec<f64>,
    next: usize,
}

/// Holt-Winters model; `period` 0 or 1 means no season.
#[derive(Clone, Debug)]
pub struct HoltWinters {
    period: usize,
    params: Params,
    state: Option<State>,
    sigma: f64,
}

impl HoltWinters {
    /// A model with a season of `period` steps (0 or 1: none).
    pub fn new(period: usize) -> Self {
        HoltWinters {
            period,
            params: Params {
                alpha: 0.3,
                beta: 0.0,
                gamma: 0.1,
                phi: 0.9,
            },
            state: None,
            sigma: f64::NAN,
        }
    }

    fn m(&self) -> usize {
        self.period.max(1)
    }

    fn init(&self, y: &[f64]) -> State {
        let m = self.m();
        if m == 1 {
            let level = y[0];
            let trend = if y.len() > 1 { y[1] - y[0] } else { 0.0 };
            return State {
                level,
                trend,
                season: vec![0.0],
                next: 0,
            };
        }
        let mean1 = y[..m].iter().sum::<f64>() / m as f64;
        let mean2 = y[m..2 * m].iter().sum::<f64>() / m as f64;
        State {
            level: mean1,
            trend: (mean2 - mean1) / m as f64,
            season: y[..m].iter().map(|v| v - mean1).collect(),
            next: 0,
        }
    }

    /// One step of the recursion; returns the one-step forecast error.
    fn step(p: &Params, s: &mut State, y: f64, seasonal: bool) -> f64 {
        let si = if seasonal { s.season[s.next] } else { 0.0 };
        let fc = s.level + p.phi * s.trend + si;
        let e = y - fc;
        let level = s.level + p.phi * s.trend + p.alpha * e;
        s.trend = p.phi * s.trend + p.beta * e;
        s.level = level;
        if seasonal {
            s.season[s.next] = si + p.gamma * e;
            s.next = (s.next + 1) % s.season.len();
        }
        e
    }

    /// Runs the recursion over `y` from the initial state; the sum of squared errors and the end
    /// state (the first two seasons only initialise the state in the seasonal model, their errors
    /// are still counted after the first season).
    fn run(&self, p: &Params, y: &[f64]) -> (f64, State) {
        let seasonal = self.m() > 1;
        let mut s = self.init(y);
        let mut sse = 0.0;
        for (t, &v) in y.iter().enumerate() {
            let e = Self::step(p, &mut s, v, seasonal);
            if t >= self.m() {
                sse += e * e;
            }
        }
        (sse, s)
    }
}

// A coarse grid (48 points with a season), then coordinate descent refines the best one.
const ALPHAS: [f64; 4] = [0.05, 0.2, 0.5, 0.9];
const BETAS: [f64; 2] = [0.0, 0.05];
const GAMMAS: [f64; 3] = [0.0, 0.1, 0.3];
const PHIS: [f64; 2] = [0.85, 0.98];

impl Model for HoltWinters {
    fn name(&self) -> String {
        if self.m() > 1 {
            format!("holt_winters_{}", self.period)
        } else {
            "ets_damped".into()
        }
    }

    fn min_len(&self) -> usize {
        2 * self.m() + 2
    }

    fn fit(&mut self, history: &[f64]) -> Result<(), ForecastError> {
        self.require_len(history.len())?;
        let seasonal = self.m() > 1;
        let gammas: &[f64] = if seasonal { &GAMMAS } else { &[0.0] };
        let mut best = (f64::INFINITY, self.params);
        for &alpha in &ALPHAS {
            for &beta in &BETAS {
                for &gamma in gammas {
                    for &phi in &PHIS {
                        let p = Params {
                            alpha,
                            beta,
                            gamma,
                            phi,
                        };
                        let (sse, _) = self.run(&p, history);
                        if sse < best.0 {
                            best = (sse, p);
                        }
                    }
                }
            }
        }
        // Coordinate descent around the best grid point.
        let mut p = best.1;
        let mut sse = best.0;
        let mut delta = 0.05;
        for _ in 0..4 {
            for k in 0..4 {
                for dir in [-1.0, 1.0] {
                    let mut q = p;
                    match k {
                        0 => q.alpha = (q.alpha + dir * delta).clamp(0.01, 0.99),
                        1 => q.beta = (q.beta + dir * delta * 0.2).clamp(0.0, 0.5),
                        2 if seasonal => q.gamma = (q.gamma + dir * delta).clamp(0.0, 0.9),
                        3 => q.phi = (q.phi + dir * delta * 0.5).clamp(0.7, 0.99),
                        _ => continue,
                    }
                    let (s, _) = self.run(&q, history);
                    if s < sse {
                        sse = s;
                        p = q;
                    }
                }
            }
            delta /= 2.0;
        }
        let (sse, state) = self.run(&p, history);
        let n = (history.len() - self.m()).max(1);
        self.sigma = (sse / n as f64).sqrt();
        self.params = p;
        self.state = Some(state);
        Ok(())
    }

    fn update(&mut self, y: f64) {
        let seasonal = self.m() > 1;
        let p = self.params;
        if let Some(s) = self.state.as_mut() {
            Self::step(&p, s, y, seasonal);
        }
    }

    fn forecast(&self, h: usize) -> Vec<Step> {
        let Some(s) = &self.state else {
            return vec![
                Step {
                    point: f64::NAN,
                    sigma: f64::NAN
                };
                h
            ];
        };
        let p = &self.params;
        let seasonal = self.m() > 1;
        let mut damp = 0.0;
        let mut pow = 1.0;
        let mut var_sum = 0.0;
        (0..h)
            .map(|i| {
                pow *= p.phi;
                damp += pow;
                let si = if seasonal {
                    s.season[(s.next + i) % s.season.len()]
                } else {
                    0.0
                };
                // Variance of the h-step error of ETS(A,Ad,A): σ²(1 + Σ c_j²), c_j ≈ α(1 + β·Σφ^k)
                // (+ γ when j is a multiple of the season).
                if i > 0 {
                    let mut c = p.alpha * (1.0 + p.beta * damp);
                    if seasonal && i % s.season.len() == 0 {
                        c += p.gamma;
                    }
                    var_sum += c * c;
                }
                Step {
                    point: s.level + damp * s.trend + si,
                    sigma: self.sigma * (1.0 + var_sum).sqrt(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(n: usize, shift_at: Option<usize>) -> Vec<f64> {
        (0..n)
            .map(|t| {
                let base = 50.0 + 10.0 * ((t % 24) as f64 * std::f64::consts::TAU / 24.0).sin();
                let noise = ((t * 7919) % 13) as f64 / 13.0 - 0.5;
                base + noise + shift_at.map_or(0.0, |s| if t >= s { 30.0 } else { 0.0 })
            })
            .collect()
    }

    #[test]
    fn learns_a_daily_season() {
        let y = daily(24 * 8, None);
        let mut m = HoltWinters::new(24);
        m.fit(&y[..24 * 7]).unwrap();
        let f = m.forecast(24);
        let mae: f64 = f
            .iter()
            .zip(&y[24 * 7..])
            .map(|(s, v)| (s.point - v).abs())
            .sum::<f64>()
            / 24.0;
        assert!(mae < 1.5, "mae {mae}");
        // Much better than repeating the last value.
        let flat: f64 = y[24 * 7..]
            .iter()
            .map(|v| (v - y[24 * 7 - 1]).abs())
            .sum::<f64>()
            / 24.0;
        assert!(mae < flat / 3.0, "mae {mae} vs flat {flat}");
        assert!(f.iter().all(|s| s.sigma.is_finite() && s.sigma > 0.0));
        assert!(f[23].sigma >= f[0].sigma);
    }

    #[test]
    fn updates_follow_a_level_shift() {
        let y = daily(24 * 9, Some(24 * 7));
        let mut m = HoltWinters::new(24);
        m.fit(&y[..24 * 7]).unwrap();
        let before = m.forecast(1)[0].point;
        for &v in &y[24 * 7..24 * 7 + 12] {
            m.update(v);
        }
        let after = m.forecast(1)[0].point;
        assert!(after > before + 2.0, "{before} -> {after}");
        // An update is exactly one more step of the recursion with the fitted parameters.
        let (_, replayed) = m.run(&m.params, &y[..24 * 7 + 12]);
        assert_eq!(m.state.as_ref(), Some(&replayed));
    }

    #[test]
    fn non_seasonal_and_short_series() {
        let y: Vec<f64> = (0..30).map(|t| t as f64).collect();
        let mut m = HoltWinters::new(0);
        m.fit(&y).unwrap();
        assert!((m.forecast(1)[0].point - 30.0).abs() < 1.0);
        assert!(HoltWinters::new(24).fit(&y).is_err());
        let zeros = vec![0.0; 100];
        let mut z = HoltWinters::new(24);
        z.fit(&zeros).unwrap();
        assert!(z
            .forecast(5)
            .iter()
            .all(|s| s.point == 0.0 && s.sigma == 0.0));
    }
}
