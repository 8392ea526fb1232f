//! The short-horizon increase forecaster, on hand-made histories.

use cidrcast_forecast::increase::{Horizon, IncreaseConfig, IncreaseForecaster};

fn cfg(horizon: Horizon, days: usize, recent: usize, repeats: usize) -> IncreaseConfig {
    IncreaseConfig {
        step: 10.0,
        horizons: vec![horizon],
        days,
        recent,
        periods: vec![60.0],
        repeats,
    }
}

#[test]
fn recent_increases_and_their_quantiles() {
    // Grid every 10 s from 0; window [0, 20). Alive: +3 at 5 s, -1 at 12 s, +2 at 25 s.
    let mut f = IncreaseForecaster::new(
        cfg(
            Horizon {
                start: 0.0,
                end: 20.0,
            },
            0,
            10,
            0,
        ),
        0.0,
    );
    for (t, d) in [(5.0, 3), (12.0, -1), (25.0, 2)] {
        f.observe(t, d);
    }
    // At 50 s the windows of grid times 0, 10, 20, 30 have ended (30 + 20 = 50).
    // Increases by hand: r=0: [0, 20) peaks at 3 (5 s), before 0 -> 3; r=10: [10, 30) peaks at 4
    // (25 s), before 3 -> 1; r=20: before 2, peak 4 -> 2; r=30: before 4, nothing after -> 0.
    // Sorted: 0, 1, 2, 3.
    let fc = f.forecast(0, 5);
    assert_eq!(fc.len(), 4);
    assert_eq!(fc.upper(1.0), 3.0);
    assert_eq!(fc.upper(0.75), 2.0);
    assert_eq!(fc.upper(0.5), 1.0);
    assert_eq!(fc.upper(0.25), 0.0);
    // Nothing at or after the decision time is read: a later event changes nothing at 50 s.
    f.observe(50.0, 100);
    let again = f.forecast(0, 5);
    assert_eq!((again.len(), again.upper(1.0)), (4, 3.0));
}

#[test]
fn a_window_starting_at_the_lead_time_ignores_the_rise_before_it() {
    // Window [20, 30): what a shard claimed now, ready in 20 s, must serve.
    let mut f = IncreaseForecaster::new(
        cfg(
            Horizon {
                start: 20.0,
                end: 30.0,
            },
            0,
            1,
            0,
        ),
        0.0,
    );
    // +5 at 1 s, -5 at 15 s: the rise is over before the window of r=0 opens.
    f.observe(1.0, 5);
    f.observe(15.0, -5);
    // At 30 s only r=0 is known: alive before 0 is 0, peak over [20, 30) is 0.
    assert_eq!(f.forecast(0, 3).upper(1.0), 0.0);
}

#[test]
fn a_cron_like_submitter_is_caught_by_its_period() {
    // Five VMs every 60 s, at 61 s, 121 s, ... each living 5 s; window [0, 10).
    let mut f = IncreaseForecaster::new(
        cfg(
            Horizon {
                start: 0.0,
                end: 10.0,
            },
            0,
            0,
            3,
        ),
        0.0,
    );
    for k in 1..=4 {
        let t = 60.0 * f64::from(k) + 1.0;
        f.observe(t, 5);
        f.observe(t + 5.0, -5);
    }
    // At 300 s (index 30) the last three cycles (240, 180, 120 s) each rose by 5 at this phase.
    assert_eq!(f.forecast(0, 30).periodic, 5.0);
    // Half a period later (index 33, 330 s) no cycle rose at that phase.
    assert_eq!(f.forecast(0, 33).periodic, 0.0);
}
