//! The one error type of the forecast crate.

/// What went wrong while building series, fitting or backtesting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForecastError {
    #[error("invalid {what} {value}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error("no events to build series from")]
    NoEvents,
    #[error("series `{series}` has {len} points; {model} needs at least {need}")]
    TooShort {
        series: String,
        model: String,
        len: usize,
        need: usize,
    },
}
