//! The one error type of the config crate. Every message names the file (or other origin) it
//! comes from, the entry (`pool "v4"`), the field and the offending value.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be read, parsed, validated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the configuration: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not TOML, or not the shape of a configuration: unknown or misspelt key, missing key, wrong
    /// type, malformed prefix or address. `line`/`column` are 1-based when toml knows the position.
    #[error("{}", render_parse(origin, *line, *column, message, excerpt))]
    Parse {
        origin: String,
        line: Option<usize>,
        column: Option<usize>,
        /// toml's message, e.g. ``unknown field `shard_len`, expected one of `name`, ...``.
        message: String,
        /// The offending source line with a caret underneath, empty when the position is unknown.
        excerpt: String,
    },

    /// Two entries of one kind share a name.
    #[error(
        "{origin}: {kind} name {name:?} is used by entries #{first} and #{second} of [[{kind}]]"
    )]
    Duplicate {
        origin: String,
        /// `pool`, `subdivision`, `profile`, `router` or `event`.
        kind: &'static str,
        name: String,
        /// 1-based positions of the two entries among the `[[kind]]` tables.
        first: usize,
        second: usize,
    },

    /// Subdivisions whose `parent` links form a loop.
    #[error("{origin}: subdivision {name:?}: parent cycle {}", cycle.join(" -> "))]
    ParentCycle {
        origin: String,
        name: String,
        /// The loop, starting and ending with `name`.
        cycle: Vec<String>,
    },

    /// A field has a value that is well-formed but not allowed (also: a pool overlapping another
    /// pool of its VRF, an unknown reference).
    #[error("{origin}: {entry}: {field} = {value}: {reason}")]
    Invalid {
        origin: String,
        /// The table or entry, e.g. `[settings]` or `pool "v4"`.
        entry: String,
        /// The field, e.g. `shard_prefix_len`.
        field: &'static str,
        /// The value as written in TOML, e.g. `"10.0.0.1/8"` or `70`.
        value: String,
        /// What is wrong with it and, where there is one, what is expected instead.
        reason: String,
    },

    /// The configuration could not be written as TOML (e.g. a non-UTF-8 path).
    #[error("cannot write the configuration as TOML: {0}")]
    Serialize(#[from] toml::ser::Error),
}

fn render_parse(
    origin: &str,
    line: Option<usize>,
    column: Option<usize>,
    message: &str,
    excerpt: &str,
) -> String {
    let mut out = String::from(origin);
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    out.push_str(message.trim_end());
    if !excerpt.is_empty() {
        out.push('\n');
        out.push_str(excerpt);
    }
    out
}

impl ConfigError {
    /// Wraps a toml deserialization error of `input` read from `origin`.
    pub(crate) fn parse(origin: &str, input: &str, err: &toml::de::Error) -> Self {
        let mut line = None;
        let mut column = None;
        let mut excerpt = String::new();
        if let Some(span) = err.span() {
            let start = span.start.min(input.len());
            let line_start = input[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = input[start..].find('\n').map_or(input.len(), |i| start + i);
            let text = input[line_start..line_end].trim_end_matches('\r');
            let line_no = input[..line_start].matches('\n').count() + 1;
            let col = input[line_start..start].chars().count() + 1;
            let width = input[start..span.end.min(line_end).max(start)]
                .chars()
                .count()
                .max(1);
            let gutter = line_no.to_string().len();
            excerpt = format!(
                "{:gutter$} |\n{line_no} | {text}\n{:gutter$} | {}{}",
                "",
                "",
                " ".repeat(col - 1),
                "^".repeat(width),
            );
            line = Some(line_no);
            column = Some(col);
        }
        ConfigError::Parse {
            origin: origin.to_string(),
            line,
            column,
            message: err.message().trim_end().to_string(),
            excerpt,
        }
    }

    /// Builds [`ConfigError::Invalid`].
    pub(crate) fn invalid(
        origin: &str,
        entry: impl fmt::Display,
        field: &'static str,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError::Invalid {
            origin: origin.to_string(),
            entry: entry.to_string(),
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
