//! Forecasting 10,000 subdivisions with 7 days of 5-minute history (2,016 points each), on all
//! cores, with the resident memory it takes.
//!
//!     cargo bench --bench forecast [-- EVENTS_FILE]
//!
//! The series are real: the 100 most active users of the first week of the Google 2011 job events
//! (../shared/data/events/google-jobs-user-top100-d0-7.csv.gz by default), each used 100 times,
//! rotated by a different number of days and hours so that no two series are alike in phase.

use std::time::Instant;

use cidrcast_forecast::predict::{default_options, forecast_subdivision};
use cidrcast_forecast::{build_series, Series};
use cidrcast_trace::{ReadOptions, TraceReader};

const SUBDIVISIONS: usize = 10_000;
const POINTS: usize = 2016;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn rotate(s: &Series, by: usize) -> Series {
    let r = |v: &Vec<f64>| {
        let mut v = v[..POINTS].to_vec();
        v.rotate_left(by % POINTS);
        v
    };
    Series {
        first_bucket: 0,
        peak: r(&s.peak),
        mean: r(&s.mean),
        alive_end: r(&s.alive_end),
        creations: r(&s.creations),
        deletions: r(&s.deletions),
    }
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .unwrap_or_else(|| "../shared/data/events/google-jobs-user-top100-d0-7.csv.gz".into());
    let events: Vec<_> = TraceReader::open(&path, ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    let set = build_series(&events, 300.0, None, None).unwrap();
    drop(events);
    let base: Vec<&Series> = set
        .series
        .values()
        .filter(|s| s.alive_end.len() >= POINTS)
        .collect();
    assert!(!base.is_empty(), "no series with {POINTS} points in {path}");
    let all: Vec<Series> = (0..SUBDIVISIONS)
        .map(|i| rotate(base[i % base.len()], (i / base.len()) * 300 + i % 288))
        .collect();
    let opts = default_options(12, 288, vec![0.5, 0.8, 0.95, 0.99]);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let before = rss_mib();
    let start = Instant::now();
    let chunks: Vec<&[Series]> = all.chunks(SUBDIVISIONS.div_ceil(threads)).collect();
    let done: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let opts = &opts;
                scope.spawn(move || {
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(i, s)| {
                            let f = forecast_subdivision(&format!("s{i}"), s, &[], 100.0, opts)
                                .expect("forecast");
                            std::hint::black_box(f);
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "forecast/10k_subdivisions: {done} subdivisions x {POINTS} points, horizon 1 h, {threads} threads: {secs:.2} s ({:.2} ms per subdivision per core); peak RSS {:.0} MiB (before forecasting {:.0} MiB)",
        secs * 1000.0 * threads as f64 / done as f64,
        rss_mib(),
        before
    );
}
