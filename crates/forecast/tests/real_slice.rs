//! Forecasting on the bundled slice of the real Google 2011 trace (data/google2011).

use cidrcast_forecast::backtest::{average, backtest_series, Protocol};
use cidrcast_forecast::models::select::{base_candidates, Combine, Selector};
use cidrcast_forecast::predict::{default_options, forecast_subdivision};
use cidrcast_forecast::{build_series, SeriesSet};
use cidrcast_trace::{ReadOptions, TraceReader};

fn slice() -> SeriesSet {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../data/google2011/demo-events.csv.gz"
    );
    let events: Vec<_> = TraceReader::open(path, ReadOptions::default())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // One-minute buckets over the ~3 hours after the initial state (which lands at t = 0).
    build_series(&events, 60.0, Some(600.0), None).unwrap()
}

#[test]
fn cold_start_on_a_real_subdivision_borrows_from_its_peers() {
    let set = slice();
    let top = set.top(10);
    let young = &set.series[top[0]];
    let mut short = young.clone();
    for v in [
        &mut short.peak,
        &mut short.mean,
        &mut short.alive_end,
        &mut short.creations,
        &mut short.deletions,
    ] {
        v.truncate(20);
    }
    let peers: Vec<_> = top[1..].iter().map(|n| &set.series[*n]).collect();
    // "A day" of 60 one-minute steps: 20 points are a cold start.
    let mut opts = default_options(5, 60, vec![0.5, 0.95, 0.99]);
    opts.min_history = 122;
    let f = forecast_subdivision(top[0], &short, &peers, 10.0, &opts).unwrap();
    assert!(f.cold_start);
    assert_eq!(f.model, "cold-start: pooled peers");
    assert!(f.peak.point >= f.alive_now, "{f:?}");
    let q: Vec<f64> = f.peak.quantiles.iter().map(|(_, v)| *v).collect();
    assert!(
        q.windows(2).all(|w| w[0] <= w[1]) && q.iter().all(|v| v.is_finite()),
        "{q:?}"
    );
    // With its whole history the same subdivision is not a cold start.
    let warm = forecast_subdivision(top[0], young, &peers, 10.0, &opts).unwrap();
    assert!(!warm.cold_start);
    assert!(!warm.model.starts_with("cold-start"));
}

#[test]
fn calibrated_intervals_hold_on_real_series() {
    let set = slice();
    let p = Protocol {
        horizon: 1,
        refit_every: 30,
        eval_start: 100,
        season: 60,
        calibration_window: 60,
    };
    let scores: Vec<_> = set
        .top(20)
        .iter()
        .filter_map(|n| {
            let y = &set.series[*n].peak;
            let mut m = Selector::new(&base_candidates(60), Combine::Best, 60);
            backtest_series(&mut m, y, &p).ok()
        })
        .collect();
    assert!(scores.len() >= 15);
    let avg = average(&scores, 0);
    assert!(
        (0.90..=1.0).contains(&avg.coverage_95),
        "95% intervals covered {}",
        avg.coverage_95
    );
    assert!(
        avg.coverage_80 >= 0.7,
        "80% intervals covered {}",
        avg.coverage_80
    );
    assert!(avg.smape.is_finite());
}
