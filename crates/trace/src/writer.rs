//! Writer of the canonical trace format.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use cidrcast_core::model::{Time, VmEvent};
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::csvline::push_field;
use crate::input::has_gz_extension;
use crate::{Result, TraceError, HEADER};

/// Where the CSV goes: straight to `W`, or through a gzip encoder.
enum Sink<W: Write> {
    Plain(W),
    Gzip(GzEncoder<W>),
}

impl<W: Write> Write for Sink<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        }
    }
}

/// Writes a canonical trace (version 1): the header at creation, then one row per event, `time_s`
/// with millisecond precision (`{:.3}`), the profile empty when `None`.
///
/// It refuses events that would make an invalid trace by themselves: a time that is negative, not
/// finite or smaller than the previous event's, an empty subdivision or vm_id. (It does not track
/// lifecycles; [`crate::TraceReader`] checks those when reading the result back.) Call
/// [`TraceWriter::finish`] at the end: it completes the gzip stream and flushes.
pub struct TraceWriter<W: Write> {
    sink: Sink<W>,
    name: String,
    /// Lines written, the header included.
    lines: u64,
    last_time: Option<Time>,
    time_buf: String,
    row_buf: Vec<u8>,
}

impl TraceWriter<BufWriter<File>> {
    /// Creates (truncates) the file at `path` and writes the header; the output is gzip when the name
    /// ends in `.gz`.
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::create(path).map_err(|source| TraceError::Open {
            file: name.clone(),
            action: "create",
            source,
        })?;
        let out = BufWriter::with_capacity(64 * 1024, file);
        if has_gz_extension(path) {
            TraceWriter::new_gzip(out, name)
        } else {
            TraceWriter::new(out, name)
        }
    }
}

impl<W: Write> TraceWriter<W> {
    /// Writes an uncompressed trace to `out` (one `write_all` per row: give a buffered writer);
    /// `name` stands for it in error messages.
    pub fn new(out: W, name: impl Into<String>) -> Result<Self> {
        TraceWriter::with_sink(Sink::Plain(out), name.into())
    }

    /// Writes a gzip-compressed trace to `out`; `name` stands for it in error messages.
    pub fn new_gzip(out: W, name: impl Into<String>) -> Result<Self> {
        TraceWriter::with_sink(
            Sink::Gzip(GzEncoder::new(out, Compression::default())),
            name.into(),
        )
    }

    fn with_sink(sink: Sink<W>, name: String) -> Result<Self> {
        let mut writer = TraceWriter {
            sink,
            name,
            lines: 0,
            last_time: None,
            time_buf: String::new(),
            row_buf: Vec::with_capacity(256),
        };
        writer.write_row(HEADER)?;
        Ok(writer)
    }

    /// The name of the output in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Events written so far (the header not included).
    pub fn events_written(&self) -> u64 {
        self.lines.saturating_sub(1)
    }

    fn write_error(&self, source: io::Error) -> TraceError {
        TraceError::Write {
            file: self.name.clone(),
            line: self.lines + 1,
            source,
        }
    }

    fn write_row<'a>(&mut self, row: impl IntoIterator<Item = &'a str>) -> Result<()> {
        self.row_buf.clear();
        for (i, field) in row.into_iter().enumerate() {
            if i > 0 {
                self.row_buf.push(b',');
            }
            push_field(&mut self.row_buf, field);
        }
        self.row_buf.push(b'\n');
        self.sink
            .write_all(&self.row_buf)
            .map_err(|e| self.write_error(e))?;
        self.lines += 1;
        Ok(())
    }

    fn field_error(&self, field: &'static str, value: String, reason: &str) -> TraceError {
        TraceError::Field {
            file: self.name.clone(),
            line: self.lines + 1,
            field,
            value,
            reason: reason.to_string(),
        }
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &VmEvent) -> Result<()> {
        let time = event.time;
        if !time.is_finite() || time < 0.0 {
            return Err(self.field_error(
                "time_s",
                time.to_string(),
                "must be a finite number >= 0",
            ));
        }
        if let Some(last) = self.last_time {
            if time < last {
                return Err(TraceError::TimeBackwards {
                    file: self.name.clone(),
                    line: self.lines + 1,
                    field: "time_s",
                    previous: last.to_string(),
                    previous_at: format!("{}:{}", self.name, self.lines),
                    current: time.to_string(),
                });
            }
        }
        if event.subdivision.is_empty() {
            return Err(self.field_error("subdivision", String::new(), "must not be empty"));
        }
        if event.vm_id.is_empty() {
            return Err(self.field_error("vm_id", String::new(), "must not be empty"));
        }
        // Rounding to a fixed number of decimals is monotone: the written times stay ordered.
        let mut time_buf = std::mem::take(&mut self.time_buf);
        time_buf.clear();
        write!(time_buf, "{time:.3}").expect("formatting into a String");
        let result = self.write_row([
            time_buf.as_str(),
            &event.subdivision,
            event.kind.as_str(),
            &event.vm_id,
            event.profile.as_deref().unwrap_or(""),
        ]);
        self.time_buf = time_buf;
        result?;
        self.last_time = Some(time);
        Ok(())
    }

    /// Flushes everything (and completes the gzip stream), returning the underlying writer.
    pub fn finish(self) -> Result<W> {
        let name = self.name;
        let line = self.lines;
        let write_error = |source| TraceError::Write {
            file: name.clone(),
            line,
            source,
        };
        let mut out = match self.sink {
            Sink::Plain(w) => w,
            Sink::Gzip(gz) => gz.finish().map_err(write_error)?,
        };
        out.flush().map_err(write_error)?;
        Ok(out)
    }
}
