//! The one error type of the trace crate.
//!
//! Every message starts with `file:line:` (1-based line of the file; `file` is the path, or the name
//! given to a reader/writer that is not a file), then names the field and the offending value. The
//! cause of an I/O or CSV failure is kept as [`std::error::Error::source`], not repeated in the
//! message (print the chain, e.g. with anyhow's `{:#}`, to see it).

use std::io;

/// What went wrong while reading, writing or importing a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A file could not be opened or created.
    #[error("{file}: cannot {action}")]
    Open {
        file: String,
        /// `open` or `create`.
        action: &'static str,
        #[source]
        source: io::Error,
    },

    /// Reading failed (I/O, corrupt gzip) at `line` (the line being read).
    #[error("{file}:{line}: cannot read")]
    Read {
        file: String,
        line: u64,
        #[source]
        source: io::Error,
    },

    /// A row that is not valid CSV (unbalanced quotes, invalid UTF-8).
    #[error("{file}:{line}: malformed CSV: {reason} (`{row}`)")]
    Csv {
        file: String,
        line: u64,
        reason: &'static str,
        row: String,
    },

    /// Writing a row, flushing or finishing the output failed.
    #[error("{file}:{line}: cannot write")]
    Write {
        file: String,
        line: u64,
        #[source]
        source: io::Error,
    },

    /// The first line of a canonical trace is not the version 1 header.
    #[error("{file}:{line}: bad header: expected `{expected}`, found `{found}`")]
    Header {
        file: String,
        line: u64,
        expected: &'static str,
        found: String,
    },

    /// A row with the wrong number of fields.
    #[error("{file}:{line}: expected {expected} fields, found {found} (`{row}`)")]
    FieldCount {
        file: String,
        line: u64,
        expected: usize,
        found: usize,
        row: String,
    },

    /// A field whose value is not valid (unparsable number, negative or non-finite time, unknown
    /// event kind, empty required field, ...).
    #[error("{file}:{line}: field `{field}`: invalid value `{value}`: {reason}")]
    Field {
        file: String,
        line: u64,
        field: &'static str,
        value: String,
        reason: String,
    },

    /// A row earlier in time than the row before it.
    #[error(
        "{file}:{line}: field `{field}`: time goes backwards: `{current}` after `{previous}` \
         (at {previous_at})"
    )]
    TimeBackwards {
        file: String,
        line: u64,
        field: &'static str,
        /// The previous row's time, as written in its file.
        previous: String,
        /// Where the previous row is, `file:line`.
        previous_at: String,
        /// This row's time, as written.
        current: String,
    },

    /// A create of a vm_id that is already alive.
    #[error(
        "{file}:{line}: field `vm_id`: duplicate create of `{vm_id}`, alive since line {created_line}"
    )]
    DuplicateCreate {
        file: String,
        line: u64,
        vm_id: String,
        created_line: u64,
    },

    /// A delete of a vm_id that is not alive (never created, or already deleted).
    #[error("{file}:{line}: field `vm_id`: delete of unknown vm `{vm_id}` (not alive)")]
    UnknownDelete {
        file: String,
        line: u64,
        vm_id: String,
    },

    /// A delete naming another subdivision than the create of the same vm.
    #[error(
        "{file}:{line}: field `subdivision`: delete of `{vm_id}` in `{found}`, but it was created \
         in `{expected}` (line {created_line})"
    )]
    SubdivisionMismatch {
        file: String,
        line: u64,
        vm_id: String,
        found: String,
        expected: String,
        created_line: u64,
    },

    /// An option (of the importer, a writer, ...) with a value it cannot take.
    #[error("option `{option}`: invalid value `{value}`: {reason}")]
    InvalidOption {
        option: &'static str,
        value: String,
        reason: String,
    },
}

impl TraceError {
    /// The 1-based line of the file the error is about, if it is about one.
    pub fn line(&self) -> Option<u64> {
        match self {
            TraceError::Read { line, .. }
            | TraceError::Csv { line, .. }
            | TraceError::Write { line, .. }
            | TraceError::Header { line, .. }
            | TraceError::FieldCount { line, .. }
            | TraceError::Field { line, .. }
            | TraceError::TimeBackwards { line, .. }
            | TraceError::DuplicateCreate { line, .. }
            | TraceError::UnknownDelete { line, .. }
            | TraceError::SubdivisionMismatch { line, .. } => Some(*line),
            TraceError::Open { .. } | TraceError::InvalidOption { .. } => None,
        }
    }

    /// The file (or stream name) the error is about, if it is about one.
    pub fn file(&self) -> Option<&str> {
        match self {
            TraceError::Open { file, .. }
            | TraceError::Read { file, .. }
            | TraceError::Csv { file, .. }
            | TraceError::Write { file, .. }
            | TraceError::Header { file, .. }
            | TraceError::FieldCount { file, .. }
            | TraceError::Field { file, .. }
            | TraceError::TimeBackwards { file, .. }
            | TraceError::DuplicateCreate { file, .. }
            | TraceError::UnknownDelete { file, .. }
            | TraceError::SubdivisionMismatch { file, .. } => Some(file),
            TraceError::InvalidOption { .. } => None,
        }
    }

    /// True for the lifecycle errors that [`crate::ReadOptions::skip_invalid`] turns into counted skips.
    pub fn is_lifecycle(&self) -> bool {
        matches!(
            self,
            TraceError::DuplicateCreate { .. }
                | TraceError::UnknownDelete { .. }
                | TraceError::SubdivisionMismatch { .. }
        )
    }
}

/// Result of this crate.
pub type Result<T, E = TraceError> = std::result::Result<T, E>;
