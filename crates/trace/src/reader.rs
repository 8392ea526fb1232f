//! Streaming, validating reader of the canonical trace format.

use std::io::Read;
use std::path::Path;

use cidrcast_core::model::{EventKind, Time, VmEvent};
use hashbrown::HashMap;

use crate::csvline::{Lines, Record, RecordError};
use crate::input::open_maybe_gz;
use crate::{Result, TraceError, HEADER, HEADER_LINE};

/// How strictly a [`TraceReader`] treats lifecycle errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Skip (and count, see [`TraceReader::skipped`]) the rows that break a VM's lifecycle (a
    /// duplicate create of a live vm_id, a delete of a vm_id that is not alive, a delete naming
    /// another subdivision than the create) instead of failing. Syntax errors (header, field count,
    /// unparsable or empty fields, time going backwards) always fail.
    pub skip_invalid: bool,
}

impl ReadOptions {
    /// Fail on every invalid row (the default).
    pub const STRICT: ReadOptions = ReadOptions {
        skip_invalid: false,
    };
    /// Skip and count lifecycle errors.
    pub const SKIP_INVALID: ReadOptions = ReadOptions { skip_invalid: true };
}

/// Rows skipped under [`ReadOptions::skip_invalid`], by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Creates of a vm_id that was already alive.
    pub duplicate_create: u64,
    /// Deletes of a vm_id that was not alive.
    pub unknown_delete: u64,
    /// Deletes naming another subdivision than the create of the vm.
    pub subdivision_mismatch: u64,
}

impl SkipCounts {
    /// All skipped rows.
    pub fn total(&self) -> u64 {
        self.duplicate_create + self.unknown_delete + self.subdivision_mismatch
    }
}

/// A live VM: where it was created.
#[derive(Clone, Copy, Debug)]
struct Live {
    line: u64,
    subdivision: u32,
}

/// A streaming iterator over the events of a canonical trace (version 1), validating as it goes.
///
/// It holds one row and the set of live vm_ids in memory, never the whole file. Each item is an
/// event or the first error; after an error the iterator is exhausted (it is fused). Validation:
/// the exact header; 5 fields a row; `time_s` a finite number >= 0, not smaller than the previous
/// row's; `event` `create` or `delete`; `subdivision` and `vm_id` not empty; no create of a live
/// vm_id; no delete of a vm_id that is not alive; a delete names the subdivision of its create. A
/// vm_id may be created again after its delete (a new life), though writers should not reuse ids.
pub struct TraceReader<R> {
    lines: Lines<R>,
    name: String,
    opts: ReadOptions,
    record: Record,
    header_done: bool,
    done: bool,
    prev_time: Option<Time>,
    prev_text: String,
    prev_line: u64,
    live: HashMap<String, Live>,
    subdivision_ids: HashMap<String, u32>,
    subdivision_names: Vec<String>,
    skipped: SkipCounts,
    events: u64,
}

impl TraceReader<Box<dyn Read + Send>> {
    /// Opens a trace file, gunzipping it when its name ends in `.gz` or it starts with the gzip
    /// magic bytes. Errors name the file by `path`.
    pub fn open(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Self> {
        let path = path.as_ref();
        let input = open_maybe_gz(path)?;
        Ok(TraceReader::new(input, path.display().to_string(), opts))
    }
}

impl<R: Read> TraceReader<R> {
    /// Reads a trace from `input` (uncompressed; wrap it in a gzip decoder if needed). `name` stands
    /// for the file in error messages.
    pub fn new(input: R, name: impl Into<String>, opts: ReadOptions) -> Self {
        TraceReader {
            lines: Lines::new(input),
            name: name.into(),
            opts,
            record: Record::default(),
            header_done: false,
            done: false,
            prev_time: None,
            prev_text: String::new(),
            prev_line: 0,
            live: HashMap::new(),
            subdivision_ids: HashMap::new(),
            subdivision_names: Vec::new(),
            skipped: SkipCounts::default(),
            events: 0,
        }
    }

    /// The name of the input in error messages (the path for [`TraceReader::open`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Rows skipped so far under [`ReadOptions::skip_invalid`].
    pub fn skipped(&self) -> SkipCounts {
        self.skipped
    }

    /// Events returned so far.
    pub fn events_read(&self) -> u64 {
        self.events
    }

    /// VMs alive after the events returned so far.
    pub fn alive(&self) -> usize {
        self.live.len()
    }

    /// Reads the next record into `self.record`; false at the end of the input.
    fn read_record(&mut self) -> Result<bool> {
        self.record.read(&mut self.lines).map_err(|e| match e {
            RecordError::Io(source) => TraceError::Read {
                file: self.name.clone(),
                line: self.lines.line() + 1,
                source,
            },
            RecordError::Malformed(reason) => TraceError::Csv {
                file: self.name.clone(),
                line: self.record.line(),
                reason,
                row: self.record.raw().to_string(),
            },
        })
    }

    fn record_line(&self) -> u64 {
        self.record.line()
    }

    fn read_header(&mut self) -> Result<()> {
        if !self.read_record()? {
            return Err(TraceError::Header {
                file: self.name.clone(),
                line: 1,
                expected: HEADER_LINE,
                found: String::new(),
            });
        }
        // A UTF-8 byte order mark (spreadsheet exports) is tolerated before the header.
        let mut fields = self.record.iter();
        let first = fields
            .next()
            .map(|f| f.strip_prefix('\u{feff}').unwrap_or(f));
        if !first.into_iter().chain(fields).eq(HEADER.iter().copied()) {
            return Err(TraceError::Header {
                file: self.name.clone(),
                line: self.record_line(),
                expected: HEADER_LINE,
                found: self.record.raw().to_string(),
            });
        }
        self.header_done = true;
        Ok(())
    }

    fn field_error(&self, line: u64, field: &'static str, value: &str, reason: &str) -> TraceError {
        TraceError::Field {
            file: self.name.clone(),
            line,
            field,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }

    /// Parses and validates the next row; `Ok(None)` at the end of the input.
    fn next_event(&mut self) -> Result<Option<VmEvent>> {
        if !self.header_done {
            self.read_header()?;
        }
        loop {
            if !self.read_record()? {
                return Ok(None);
            }
            let line = self.record_line();
            if self.record.len() != HEADER.len() {
                return Err(TraceError::FieldCount {
                    file: self.name.clone(),
                    line,
                    expected: HEADER.len(),
                    found: self.record.len(),
                    row: self.record.raw().to_string(),
                });
            }
            let time_text = self.record.get(0);
            let time: Time = time_text
                .parse()
                .map_err(|_| self.field_error(line, "time_s", time_text, "not a number"))?;
            if !time.is_finite() {
                return Err(self.field_error(line, "time_s", time_text, "not a finite number"));
            }
            if time < 0.0 {
                return Err(self.field_error(line, "time_s", time_text, "negative time"));
            }
            if let Some(prev) = self.prev_time {
                if time < prev {
                    return Err(TraceError::TimeBackwards {
                        file: self.name.clone(),
                        line,
                        field: "time_s",
                        previous: self.prev_text.clone(),
                        previous_at: format!("{}:{}", self.name, self.prev_line),
                        current: time_text.to_string(),
                    });
                }
            }
            let subdivision = self.record.get(1);
            if subdivision.is_empty() {
                return Err(self.field_error(
                    line,
                    "subdivision",
                    subdivision,
                    "must not be empty",
                ));
            }
            let kind_text = self.record.get(2);
            let kind = match kind_text {
                "create" => EventKind::Create,
                "delete" => EventKind::Delete,
                other => {
                    return Err(self.field_error(
                        line,
                        "event",
                        other,
                        "expected `create` or `delete`",
                    ))
                }
            };
            let vm_id = self.record.get(3);
            if vm_id.is_empty() {
                return Err(self.field_error(line, "vm_id", vm_id, "must not be empty"));
            }
            // The row is well-formed: it sets the time even when its lifecycle is skipped.
            self.prev_time = Some(time);
            self.prev_text.clear();
            self.prev_text.push_str(self.record.get(0));
            self.prev_line = line;

            match self.check_lifecycle(line, kind) {
                Ok(()) => {}
                Err(e) if self.opts.skip_invalid && e.is_lifecycle() => {
                    match e {
                        TraceError::DuplicateCreate { .. } => self.skipped.duplicate_create += 1,
                        TraceError::UnknownDelete { .. } => self.skipped.unknown_delete += 1,
                        _ => self.skipped.subdivision_mismatch += 1,
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
            let profile = self.record.get(4);
            self.events += 1;
            return Ok(Some(VmEvent {
                time,
                subdivision: self.record.get(1).to_string(),
                kind,
                vm_id: self.record.get(3).to_string(),
                profile: (!profile.is_empty()).then(|| profile.to_string()),
            }));
        }
    }

    /// Applies the current record (already syntax-checked) to the set of live VMs.
    fn check_lifecycle(&mut self, line: u64, kind: EventKind) -> Result<()> {
        let TraceReader {
            name,
            record,
            live,
            subdivision_ids,
            subdivision_names,
            ..
        } = self;
        let subdivision_name = record.get(1);
        let subdivision = match subdivision_ids.get(subdivision_name) {
            Some(&id) => id,
            None => {
                let id =
                    u32::try_from(subdivision_names.len()).expect("fewer than 2^32 subdivisions");
                subdivision_ids.insert(subdivision_name.to_string(), id);
                subdivision_names.push(subdivision_name.to_string());
                id
            }
        };
        let vm_id = record.get(3);
        match kind {
            EventKind::Create => {
                if let Some(l) = live.get(vm_id) {
                    return Err(TraceError::DuplicateCreate {
                        file: name.clone(),
                        line,
                        vm_id: vm_id.to_string(),
                        created_line: l.line,
                    });
                }
                live.insert(vm_id.to_string(), Live { line, subdivision });
            }
            EventKind::Delete => {
                let Some(l) = live.remove(vm_id) else {
                    return Err(TraceError::UnknownDelete {
                        file: name.clone(),
                        line,
                        vm_id: vm_id.to_string(),
                    });
                };
                if l.subdivision != subdivision {
                    // The delete is refused: the vm stays alive where it was created.
                    live.insert(vm_id.to_string(), l);
                    return Err(TraceError::SubdivisionMismatch {
                        file: name.clone(),
                        line,
                        vm_id: vm_id.to_string(),
                        found: subdivision_name.to_string(),
                        expected: subdivision_names[l.subdivision as usize].clone(),
                        created_line: l.line,
                    });
                }
            }
        }
        Ok(())
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<VmEvent>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_event() {
            Ok(Some(event)) => Some(Ok(event)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<R: Read> std::iter::FusedIterator for TraceReader<R> {}

/// Reads a whole trace file (plain or gzip) into memory, validating it.
pub fn read_all(path: impl AsRef<Path>, opts: ReadOptions) -> Result<Vec<VmEvent>> {
    TraceReader::open(path, opts)?.collect()
}
