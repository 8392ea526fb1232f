//! Online, causal forecaster of how far a subdivision's alive count can rise over the next few
//! minutes: the time it takes to make a new shard ready (claim, router update, convergence).
//!
//! The hourly models of [`crate::predict`] say how many VMs a subdivision will run; this one says
//! how many it may have to place before a shard claimed now is routable. It learns from the
//! subdivision's own past only, on a grid of decision times `origin + i·step`:
//! * the **increase** at grid time `r` over a window `[start, end)` is the peak alive over
//!   `[r + start, r + end)` minus the alive count just before `r` (negative when VMs leave); it is
//!   known once `r + end` has passed, and then computed once;
//! * the **empirical samples** at `now` are the increases at the same time of day on each of the
//!   last `days` days and at the last `recent` grid times whose horizon has passed;
//! * the **periodic** estimate catches cron-like submitters (every 15 min, hourly, daily, ...): for
//!   each candidate period it takes, at the same phase (± one step of jitter), the smallest increase
//!   over the last `repeats` cycles; a period whose every cycle rose at this phase predicts a rise
//!   now. The estimate is the largest over the periods.
//!
//! Nothing at or after `now` is read: [`IncreaseForecaster::observe`] takes events in time order
//! and [`IncreaseForecaster::forecast`] only uses increases whose horizon ended by `now`.

use std::collections::BTreeMap;

/// What the forecaster looks at.
#[derive(Clone, Debug, PartialEq)]
pub struct IncreaseConfig {
    /// Seconds between decision times (the grid).
    pub step: f64,
    /// The windows looked at, relative to a decision time; each is forecast on its own (e.g.
    /// `[lead, lead + step)` for claims: what a shard claimed now must serve; `[0, 1 h)` for
    /// releases: what a shard released now might have served).
    pub horizons: Vec<Horizon>,
    /// Same time of day on each of the last `days` days.
    pub days: usize,
    /// The last `recent` grid times whose horizon has passed.
    pub recent: usize,
    /// Candidate periods, in seconds (rounded to whole steps).
    pub periods: Vec<f64>,
    /// A period predicts a rise when each of its last `repeats` cycles rose at this phase
    /// (0: no periodic estimate).
    pub repeats: usize,
}

impl IncreaseConfig {
    /// The periods of cron-like submitters seen in the Google 2011 traces (5 min to 1 day).
    pub fn default_periods() -> Vec<f64> {
        vec![
            300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0, 7200.0, 10800.0, 14400.0, 21600.0,
            43200.0, 86400.0,
        ]
    }

    /// The two windows a predictive shard manager looks at, at a lead time of `lead` seconds
    /// (from a shard's reservation until routers announce it) and a grid of `step` seconds:
    /// horizon 0 for claims, `[0, lead + step)` (or `[lead, lead + step)` with
    /// `claim_from_lead`: only what a shard claimed now can serve); horizon 1 for releases,
    /// `[0, max(keep_horizon, lead + step))`. Candidate periods: [`Self::default_periods`].
    pub fn for_lead(
        lead: f64,
        step: f64,
        keep_horizon: f64,
        days: usize,
        recent: usize,
        repeats: usize,
        claim_from_lead: bool,
    ) -> IncreaseConfig {
        IncreaseConfig {
            step,
            horizons: vec![
                Horizon {
                    start: if claim_from_lead { lead } else { 0.0 },
                    end: lead + step,
                },
                Horizon {
                    start: 0.0,
                    end: keep_horizon.max(lead + step),
                },
            ],
            days,
            recent,
            periods: IncreaseConfig::default_periods(),
            repeats,
        }
    }
}

/// A window `[start, end)` seconds after a decision time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Horizon {
    pub start: f64,
    pub end: f64,
}

/// The forecaster's state for one subdivision.
#[derive(Clone, Debug)]
pub struct IncreaseForecaster {
    cfg: IncreaseConfig,
    origin: f64,
    /// (time, alive after the event), in time order.
    hist: Vec<(f64, i64)>,
    alive: i64,
    /// Increase at each grid index, per horizon, NaN until computed.
    inc: Vec<Vec<f32>>,
    periods: Vec<usize>,
    samples: Vec<f64>,
    /// Per horizon, the increases of the last `recent` known grid times, as a multiset.
    recent: Vec<Window>,
}

/// A sliding window of increases over grid indices `[lo, hi)`, counted by value.
#[derive(Clone, Debug, Default)]
struct Window {
    lo: usize,
    hi: usize,
    counts: BTreeMap<i64, u32>,
}

/// A forecast at one decision time.
#[derive(Clone, Copy, Debug)]
pub struct IncreaseForecast<'a> {
    /// Same-time-of-day samples of the increase, sorted ascending.
    days: &'a [f64],
    /// Recent samples, counted by value.
    recent: &'a BTreeMap<i64, u32>,
    recent_len: usize,
    /// The periodic estimate (0 when no period matches).
    pub periodic: f64,
}

impl IncreaseForecast<'_> {
    /// How many empirical samples there are.
    pub fn len(&self) -> usize {
        self.days.len() + self.recent_len
    }

    /// Whether there is no empirical sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `level` quantile of the empirical samples (the smallest sample with at least that
    /// share at or below it; 0 without samples), raised to the periodic estimate.
    pub fn upper(&self, level: f64) -> f64 {
        let n = self.len();
        if n == 0 {
            return self.periodic;
        }
        let k = ((level * n as f64).ceil() as usize).clamp(1, n);
        // Walk down from the largest sample: the k-th smallest is the (n - k + 1)-th largest.
        let mut from_top = n - k + 1;
        let mut days = self.days.iter().rev().peekable();
        let mut recent = self
            .recent
            .iter()
            .rev()
            .flat_map(|(&v, &c)| std::iter::repeat_n(v as f64, c as usize))
            .peekable();
        let mut value = 0.0;
        while from_top > 0 {
            value = match (days.peek(), recent.peek()) {
                (Some(&&d), Some(&r)) if d >= r => {
                    days.next();
                    d
                }
                (_, Some(&r)) => {
                    recent.next();
                    r
                }
                (Some(&&d), None) => {
                    days.next();
                    d
                }
                (None, None) => break,
            };
            from_top -= 1;
        }
        value.max(self.periodic)
    }
}

impl IncreaseForecaster {
    /// A forecaster whose grid starts at `origin`.
    pub fn new(cfg: IncreaseConfig, origin: f64) -> Self {
        let periods = cfg
            .periods
            .iter()
            .map(|p| (p / cfg.step).round() as usize)
            .filter(|&p| p > 0)
            .collect();
        let cfg_len = cfg.horizons.len();
        IncreaseForecaster {
            inc: vec![Vec::new(); cfg_len],
            cfg,
            origin,
            hist: Vec::new(),
            alive: 0,
            periods,
            samples: Vec::new(),
            recent: vec![Window::default(); cfg_len],
        }
    }

    /// Records a change of the alive count at `time` (events in time order).
    pub fn observe(&mut self, time: f64, delta: i64) {
        self.alive += delta;
        self.hist.push((time, self.alive));
    }

    /// The alive count after the events observed so far.
    pub fn alive(&self) -> i64 {
        self.alive
    }

    /// The start of the grid (decision time of index 0).
    pub fn origin(&self) -> f64 {
        self.origin
    }

    /// The configuration.
    pub fn config(&self) -> &IncreaseConfig {
        &self.cfg
    }

    /// The realised increase at grid index `i` over horizon number `h`, as seen at grid index
    /// `now_ix`: `None` while the window `[origin + i·step + start, origin + i·step + end)` has
    /// not ended by `origin + now_ix·step` (so it reads nothing at or after `now_ix` either). It
    /// is the value [`Self::forecast`] takes as a sample: a forecast made at `i` can be scored
    /// against it once it is known.
    pub fn realised(&mut self, h: usize, i: usize, now_ix: usize) -> Option<f64> {
        let end = self.time_of(i) + self.cfg.horizons[h].end;
        (end <= self.time_of(now_ix)).then(|| self.increase(h, i))
    }

    fn time_of(&self, i: usize) -> f64 {
        self.origin + i as f64 * self.cfg.step
    }

    /// Increase at grid index `i` over horizon `h` (which must have passed).
    fn increase(&mut self, h: usize, i: usize) -> f64 {
        let inc = &mut self.inc[h];
        if i >= inc.len() {
            inc.resize(i + 1, f32::NAN);
        }
        let cached = inc[i];
        if !cached.is_nan() {
            return f64::from(cached);
        }
        let r = self.time_of(i);
        let alive_before = |ix: usize| if ix == 0 { 0 } else { self.hist[ix - 1].1 };
        let now = self.hist.partition_point(|&(t, _)| t < r);
        let Horizon { start, end } = self.cfg.horizons[h];
        let from = now + self.hist[now..].partition_point(|&(t, _)| t < r + start);
        let to = from + self.hist[from..].partition_point(|&(t, _)| t < r + end);
        let base = alive_before(now);
        let peak = self.hist[from..to]
            .iter()
            .map(|&(_, a)| a)
            .fold(alive_before(from), i64::max);
        let v = (peak - base) as f32;
        self.inc[h][i] = v;
        f64::from(v)
    }

    /// The forecast over horizon number `h` at grid index `now_ix` (decision time
    /// `origin + now_ix·step`), from events strictly before it.
    pub fn forecast(&mut self, h: usize, now_ix: usize) -> IncreaseForecast<'_> {
        let now = self.time_of(now_ix);
        // Grid indices whose horizon ended by `now`.
        let last_known = ((now - self.cfg.horizons[h].end - self.origin) / self.cfg.step).floor();
        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        let mut periodic = 0.0f64;
        if last_known >= 0.0 {
            let last_known = last_known as usize;
            let day = (86400.0 / self.cfg.step).round() as usize;
            for k in 1..=self.cfg.days {
                if let Some(i) = now_ix.checked_sub(k * day) {
                    if i <= last_known {
                        samples.push(self.increase(h, i));
                    }
                }
            }
            // Slide the recent window to the last `recent` known grid times.
            let hi = last_known + 1;
            let lo = hi.saturating_sub(self.cfg.recent);
            let mut w = std::mem::take(&mut self.recent[h]);
            if lo >= w.hi {
                w.counts.clear();
                w.lo = lo;
                w.hi = lo;
            }
            while w.lo < lo {
                let v = self.increase(h, w.lo) as i64;
                if let Some(c) = w.counts.get_mut(&v) {
                    *c -= 1;
                    if *c == 0 {
                        w.counts.remove(&v);
                    }
                }
                w.lo += 1;
            }
            w.lo = lo;
            while w.hi < hi {
                let v = self.increase(h, w.hi) as i64;
                *w.counts.entry(v).or_insert(0) += 1;
                w.hi += 1;
            }
            self.recent[h] = w;
            if self.cfg.repeats > 0 {
                for pi in 0..self.periods.len() {
                    let p = self.periods[pi];
                    let mut least = f64::INFINITY;
                    for k in 1..=self.cfg.repeats {
                        let Some(c) = now_ix.checked_sub(k * p) else {
                            least = 0.0;
                            break;
                        };
                        if c + 1 > last_known || c == 0 {
                            least = 0.0;
                            break;
                        }
                        let near = self
                            .increase(h, c - 1)
                            .max(self.increase(h, c))
                            .max(self.increase(h, c + 1));
                        least = least.min(near);
                        if least == 0.0 {
                            break;
                        }
                    }
                    periodic = periodic.max(least);
                }
            }
        }
        samples.sort_by(f64::total_cmp);
        self.samples = samples;
        let w = &self.recent[h];
        IncreaseForecast {
            days: &self.samples,
            recent: &w.counts,
            recent_len: w.hi - w.lo,
            periodic,
        }
    }
}
