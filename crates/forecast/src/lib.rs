//! cidrcast forecasting: from VM lifecycle events to per-subdivision demand forecasts with
//! calibrated intervals, and the rolling-origin backtests that choose between models.
//!
//! * [`series`]: per-subdivision series (peak, mean and end-of-bucket alive, creations, deletions)
//!   at a fixed resolution.
//! * [`model`]: the [`model::Model`] trait and the seasonal naive reference.
//! * [`calibrate`]: conformal calibration of intervals from recent errors, per step ahead.
//! * [`backtest`]: rolling-origin backtests and their scores (MASE, sMAPE, pinball, coverage).

pub mod backtest;
pub mod calibrate;
pub mod error;
pub mod events;
pub mod increase;
pub mod models;
/// The model trait and the seasonal naive reference (re-exported under their first name).
pub use models as model;
pub mod predict;
pub mod series;

pub use error::ForecastError;
pub use series::{build_series, parse_duration, Series, SeriesSet, Target};
