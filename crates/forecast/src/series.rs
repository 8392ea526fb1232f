//! Per-subdivision demand series from VM lifecycle events, at a fixed resolution.
//!
//! For each bucket `[start + i·step, start + (i+1)·step)`: the peak number of VMs alive at any
//! moment in it (addresses must cover peaks), the time-weighted mean alive, the number alive at its
//! end, creations and deletions.

use std::collections::BTreeMap;

use cidrcast_core::model::{EventKind, Time, VmEvent};

use crate::error::ForecastError;

/// Which value of a bucket a model forecasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The peak alive inside each bucket.
    Peak,
    /// The time-weighted mean alive.
    Mean,
}

impl std::str::FromStr for Target {
    type Err = ForecastError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "peak" => Ok(Target::Peak),
            "mean" => Ok(Target::Mean),
            _ => Err(ForecastError::Invalid {
                what: "target",
                value: s.to_string(),
                reason: "expected peak or mean".into(),
            }),
        }
    }
}

/// The series of one subdivision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Bucket of the subdivision's first event (0 when it existed before the grid): the buckets
    /// before it are padding, not history.
    pub first_bucket: usize,
    pub peak: Vec<f64>,
    pub mean: Vec<f64>,
    pub alive_end: Vec<f64>,
    pub creations: Vec<f64>,
    pub deletions: Vec<f64>,
}

impl Series {
    /// The values of `target`.
    pub fn target(&self, target: Target) -> &[f64] {
        match target {
            Target::Peak => &self.peak,
            Target::Mean => &self.mean,
        }
    }

    /// Total creations.
    pub fn total_creations(&self) -> f64 {
        self.creations.iter().sum()
    }
}

/// Series of every subdivision on a common grid.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesSet {
    /// Start of bucket 0.
    pub start: Time,
    /// Bucket width in seconds.
    pub step: f64,
    /// Number of buckets.
    pub len: usize,
    pub series: BTreeMap<String, Series>,
}

impl SeriesSet {
    /// Start time of bucket `i`.
    pub fn bucket_start(&self, i: usize) -> Time {
        self.start + i as f64 * self.step
    }

    /// Index of the bucket holding time `t` (clamped to the grid).
    pub fn bucket_of(&self, t: Time) -> usize {
        (((t - self.start) / self.step).floor().max(0.0) as usize).min(self.len)
    }

    /// The `n` subdivisions with the most creations (ties by name).
    pub fn top(&self, n: usize) -> Vec<&str> {
        let mut v: Vec<(&str, f64)> = self
            .series
            .iter()
            .map(|(k, s)| (k.as_str(), s.total_creations()))
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().take(n).map(|(k, _)| k).collect()
    }
}

struct Acc {
    alive: f64,
    /// Bucket being filled.
    cur: usize,
    /// Time of the last change inside it.
    last: Time,
    peak: f64,
    area: f64,
    creations: f64,
    deletions: f64,
    series: Series,
}

impl Acc {
    fn new(start: Time, first_bucket: usize) -> Acc {
        Acc {
            alive: 0.0,
            cur: 0,
            last: start,
            peak: 0.0,
            area: 0.0,
            creations: 0.0,
            deletions: 0.0,
            series: Series {
                first_bucket,
                ..Series::default()
            },
        }
    }

    /// Closes every bucket before `b`.
    fn advance(&mut self, b: usize, start: Time, step: f64) {
        while self.cur < b {
            let end = start + (self.cur + 1) as f64 * step;
            self.area += self.alive * (end - self.last);
            self.series.peak.push(self.peak.max(self.alive));
            self.series.mean.push(self.area / step);
            self.series.alive_end.push(self.alive);
            self.series.creations.push(self.creations);
            self.series.deletions.push(self.deletions);
            self.cur += 1;
            self.last = end;
            self.peak = self.alive;
            self.area = 0.0;
            self.creations = 0.0;
            self.deletions = 0.0;
        }
    }
}

/// Builds the series of every subdivision from time-ordered events, with buckets of `step`
/// seconds from `start` (default: the first event) through the bucket holding `end` (default: the
/// last event). Events before `start` only set the initial alive counts; events after the last
/// bucket are ignored.
pub fn build_series<'a>(
    events: impl IntoIterator<Item = &'a VmEvent>,
    step: f64,
    start: Option<Time>,
    end: Option<Time>,
) -> Result<SeriesSet, ForecastError> {
    if !(step.is_finite() && step > 0.0) {
        return Err(ForecastError::Invalid {
            what: "resolution",
            value: step.to_string(),
            reason: "must be a positive number of seconds".into(),
        });
    }
    let events: Vec<&VmEvent> = events.into_iter().collect();
    let first = events.first().ok_or(ForecastError::NoEvents)?.time;
    let last = events.last().map_or(first, |e| e.time);
    let start = start.unwrap_or(first);
    let end = end.unwrap_or(last);
    if end < start {
        return Err(ForecastError::Invalid {
            what: "window end",
            value: end.to_string(),
            reason: format!("is before the start {start}"),
        });
    }
    let len = ((end - start) / step).floor() as usize + 1;
    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    for e in events {
        let first_bucket = if e.time < start {
            0
        } else {
            (((e.time - start) / step).floor() as usize).min(len)
        };
        let a = acc
            .entry(e.subdivision.as_str())
            .or_insert_with(|| Acc::new(start, first_bucket));
        let delta = match e.kind {
            EventKind::Create => 1.0,
            EventKind::Delete => -1.0,
        };
        if e.time < start {
            a.alive += delta;
            a.peak = a.alive;
            continue;
        }
        let b = ((e.time - start) / step).floor() as usize;
        if b >= len {
            continue;
        }
        a.advance(b, start, step);
        a.area += a.alive * (e.time - a.last);
        a.last = e.time;
        a.alive += delta;
        if delta > 0.0 {
            a.creations += 1.0;
        } else {
            a.deletions += 1.0;
        }
        a.peak = a.peak.max(a.alive);
    }
    let series = acc
        .into_iter()
        .map(|(k, mut a)| {
            a.advance(len, start, step);
            (k.to_string(), a.series)
        })
        .collect();
    Ok(SeriesSet {
        start,
        step,
        len,
        series,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cidrcast_core::model::EventKind::{Create, Delete};

    fn ev(time: f64, sub: &str, kind: EventKind, vm: &str) -> VmEvent {
        VmEvent {
            time,
            subdivision: sub.into(),
            kind,
            vm_id: vm.into(),
            profile: None,
        }
    }

    #[test]
    fn peaks_means_and_counts_per_bucket() {
        let evs = vec![
            ev(0.0, "a", Create, "1"),
            ev(10.0, "a", Create, "2"),
            ev(20.0, "a", Create, "3"),
            ev(30.0, "a", Delete, "1"),
            ev(40.0, "a", Delete, "2"),
            // bucket 1 [60, 120): nothing; bucket 2 [120, 180): one create at 150
            ev(150.0, "a", Create, "4"),
            ev(150.0, "b", Create, "5"),
        ];
        let set = build_series(&evs, 60.0, None, None).unwrap();
        assert_eq!(set.len, 3);
        let a = &set.series["a"];
        assert_eq!(a.peak, vec![3.0, 1.0, 2.0]);
        assert_eq!(a.alive_end, vec![1.0, 1.0, 2.0]);
        assert_eq!(a.creations, vec![3.0, 0.0, 1.0]);
        assert_eq!(a.deletions, vec![2.0, 0.0, 0.0]);
        // mean of bucket 0: 1·10 + 2·10 + 3·10 + 2·10 + 1·20 = 100 over 60 s
        assert!((a.mean[0] - 100.0 / 60.0).abs() < 1e-12);
        assert_eq!(a.mean[1], 1.0);
        assert!((a.mean[2] - (30.0 + 2.0 * 30.0) / 60.0).abs() < 1e-12);
        let b = &set.series["b"];
        assert_eq!(b.peak, vec![0.0, 0.0, 1.0]);
        assert_eq!((a.first_bucket, b.first_bucket), (0, 2));
        assert_eq!(set.top(1), vec!["a"]);
    }

    #[test]
    fn bad_resolution_and_empty_input_are_named() {
        let e = build_series(&[], 0.0, None, None).unwrap_err();
        assert!(e.to_string().contains("resolution 0"), "{e}");
        let e = build_series(&[], 60.0, None, None).unwrap_err();
        assert_eq!(e, ForecastError::NoEvents);
    }
}

/// Parses a duration: a number with an optional unit `s`, `m`, `h`, `d` or `w` (seconds when
/// none), e.g. `300`, `5m`, `1h`, `24h`, `7d`.
pub fn parse_duration(what: &'static str, s: &str) -> Result<f64, ForecastError> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1.0),
        Some('m') => (&t[..t.len() - 1], 60.0),
        Some('h') => (&t[..t.len() - 1], 3600.0),
        Some('d') => (&t[..t.len() - 1], 86400.0),
        Some('w') => (&t[..t.len() - 1], 604800.0),
        _ => (t, 1.0),
    };
    match num.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v * mult),
        _ => Err(ForecastError::Invalid {
            what,
            value: s.to_string(),
            reason: "expected a positive duration such as 300, 5m, 1h, 24h or 7d".into(),
        }),
    }
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("horizon", "1h").unwrap(), 3600.0);
        assert_eq!(parse_duration("horizon", "300").unwrap(), 300.0);
        assert_eq!(parse_duration("horizon", "1.5d").unwrap(), 129600.0);
        let e = parse_duration("horizon", "0h").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid horizon 0h: expected a positive duration such as 300, 5m, 1h, 24h or 7d"
        );
        assert!(parse_duration("horizon", "abc").is_err());
    }
}
