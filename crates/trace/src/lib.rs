//! cidrcast VM event traces.
//!
//! * The canonical trace format, version 1 (see `ARCHITECTURE.md`, "Event trace format"): a CSV file
//!   with the header `time_s,subdivision,event,vm_id,profile` and one VM lifecycle event a row, in
//!   non-decreasing time. [`TraceReader`] streams and validates it (plain or gzip), [`TraceWriter`]
//!   writes it (plain or gzip), [`read_all`] and [`summarize`] are conveniences on top.
//! * Importers of real traces into that format: [`google2011`] (Google cluster 2011 `task_events`).
//!
//! Every error is a [`TraceError`] whose message names the file, the 1-based line, the field and the
//! value.

mod csvline;
pub mod error;
pub mod google2011;
mod input;
mod reader;
mod summary;
mod writer;

pub use error::{Result, TraceError};
pub use google2011::{
    import_google2011_task_events, DeleteReasons, GroupBy, ImportOptions, ImportStats,
};
pub use reader::{read_all, ReadOptions, SkipCounts, TraceReader};
pub use summary::{summarize, summarize_file, SubdivisionSummary, TraceSummary};
pub use writer::TraceWriter;

/// The fields of the canonical trace format, version 1, in order.
pub const HEADER: [&str; 5] = ["time_s", "subdivision", "event", "vm_id", "profile"];

/// The header line of the canonical trace format, version 1.
pub const HEADER_LINE: &str = "time_s,subdivision,event,vm_id,profile";
