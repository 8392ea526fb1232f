//! Importer of the Google cluster trace 2011 (`clusterdata-2011-2`) `task_events` table.
//!
//! Input: the table's parts (`part-NNNNN-of-00500.csv.gz`: gzip CSV, no header, 13 columns, see
//! [`COLUMNS`]), given in order. Rows are ordered by time within and across parts.
//!
//! Semantics (one task is one VM; the task is `(job_id, task_index)`):
//! * a `SCHEDULE` (1) of a task that is not running is a **create**; it starts a new *life* of the task,
//!   vm_id `{job_id}-{task_index}-{life}` (life counts from 0 per task, over the rows processed);
//! * an `EVICT` (2), `FAIL` (3), `FINISH` (4), `KILL` (5) or `LOST` (6) of a running task is a
//!   **delete** of its current life; a task scheduled again later is a new life;
//! * `SUBMIT` (0), `UPDATE_PENDING` (7) and `UPDATE_RUNNING` (8) only make the task known;
//! * time is `timestamp / 1e6` seconds; rows at time 0 are the state already present when the trace
//!   starts, so the tasks running then become creates at time 0;
//! * the subdivision of a life is fixed by its `SCHEDULE` row: the `user` hash, `job-<job_id>` or
//!   `machine-<machine_id>` ([`GroupBy`]); its delete names the same subdivision.
//!
//! Real-data inconsistencies are skipped and counted in [`ImportStats`]: a deletion of a task never
//! seen before (typically running since before the first part given), a `SCHEDULE` of a task that is
//! already running. A deletion of a known task that is not running (e.g. a `KILL` of a pending task)
//! is normal and counted apart. Rows with the timestamp 2^63-1 ("after the end of the trace") are
//! counted and ignored. A malformed row (column count, unparsable number, event type out of range)
//! or a row going back in time fails the import with the file, line, column and value.
//!
//! Window ([`ImportOptions::start_s`], [`ImportOptions::end_s`], half-open): rows before the start
//! only update the state; the tasks running at the start become creates at the start time (rounded up
//! to the microsecond); reading stops at the first row at or after the end (tasks still running then
//! stay alive in the output). Times stay absolute trace times (they are not shifted to 0).

use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use cidrcast_core::model::{EventKind, Time, VmEvent};
use hashbrown::HashMap;

use crate::csvline::Lines;
use crate::input::open_maybe_gz;
use crate::{Result, TraceError, TraceWriter};

/// The 13 columns of `task_events` (schema v2.1), in order.
pub const COLUMNS: [&str; 13] = [
    "timestamp",
    "missing_info",
    "job_id",
    "task_index",
    "machine_id",
    "event_type",
    "user",
    "scheduling_class",
    "priority",
    "cpu_request",
    "memory_request",
    "disk_request",
    "different_machine_restriction",
];

const COL_TIME: usize = 0;
const COL_JOB: usize = 2;
const COL_TASK: usize = 3;
const COL_MACHINE: usize = 4;
const COL_EVENT: usize = 5;
const COL_USER: usize = 6;
/// Optional integer columns, validated when present.
const OPTIONAL_INT_COLUMNS: [usize; 4] = [1, 7, 8, 12];
/// Optional float columns, validated when present.
const OPTIONAL_FLOAT_COLUMNS: [usize; 3] = [9, 10, 11];

/// `event_type` values.
const SUBMIT: u8 = 0;
const SCHEDULE: u8 = 1;
const EVICT: u8 = 2;
const FAIL: u8 = 3;
const FINISH: u8 = 4;
const KILL: u8 = 5;
const LOST: u8 = 6;
const UPDATE_PENDING: u8 = 7;
const UPDATE_RUNNING: u8 = 8;

/// The timestamp of events that happened after the end of the trace window.
pub const TIMESTAMP_AFTER_TRACE: u64 = i64::MAX as u64;

/// What a subdivision of the imported trace is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GroupBy {
    /// The (hashed) user that runs the task: the subdivision name is the hash.
    #[default]
    User,
    /// The job of the task: `job-<job_id>`.
    Job,
    /// The machine the task was scheduled on: `machine-<machine_id>`.
    Machine,
}

impl GroupBy {
    /// Every value, in the order of [`GroupBy::ACCEPTED`].
    pub const ALL: [GroupBy; 3] = [GroupBy::User, GroupBy::Job, GroupBy::Machine];
    /// The accepted spellings, for help texts and errors.
    pub const ACCEPTED: &'static str = "user, job, machine";

    /// The name as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            GroupBy::User => "user",
            GroupBy::Job => "job",
            GroupBy::Machine => "machine",
        }
    }
}

impl fmt::Display for GroupBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GroupBy {
    type Err = TraceError;

    fn from_str(s: &str) -> Result<Self> {
        GroupBy::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| TraceError::InvalidOption {
                option: "group-by",
                value: s.to_string(),
                reason: format!("expected one of {}", GroupBy::ACCEPTED),
            })
    }
}

/// How to import.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportOptions {
    pub group_by: GroupBy,
    /// Keep only the N subdivisions with the most creates in the output (ties: by name). The events
    /// are buffered in memory until the end.
    pub top: Option<usize>,
    /// Start of the window, trace seconds (inclusive).
    pub start_s: Option<f64>,
    /// End of the window, trace seconds (exclusive).
    pub end_s: Option<f64>,
}

impl ImportOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |option, value: String, reason: &str| TraceError::InvalidOption {
            option,
            value,
            reason: reason.to_string(),
        };
        if self.top == Some(0) {
            return Err(invalid("top", "0".into(), "must be at least 1"));
        }
        for (option, value) in [("start", self.start_s), ("end", self.end_s)] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    return Err(invalid(
                        option,
                        v.to_string(),
                        "must be a finite number >= 0",
                    ));
                }
            }
        }
        if let (Some(start), Some(end)) = (self.start_s, self.end_s) {
            if start >= end {
                return Err(invalid(
                    "end",
                    end.to_string(),
                    &format!("must be after the start ({start})"),
                ));
            }
        }
        Ok(())
    }
}

/// Deletions by the `event_type` that caused them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeleteReasons {
    pub evict: u64,
    pub fail: u64,
    pub finish: u64,
    pub kill: u64,
    pub lost: u64,
}

impl DeleteReasons {
    fn add(&mut self, event_type: u8) {
        match event_type {
            EVICT => self.evict += 1,
            FAIL => self.fail += 1,
            FINISH => self.finish += 1,
            KILL => self.kill += 1,
            LOST => self.lost += 1,
            _ => unreachable!("not a deletion event type: {event_type}"),
        }
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.evict + self.fail + self.finish + self.kill + self.lost
    }
}

impl fmt::Display for DeleteReasons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "evict {}, fail {}, finish {}, kill {}, lost {}",
            self.evict, self.fail, self.finish, self.kill, self.lost
        )
    }
}

/// What an import read, wrote and skipped.
///
/// `creates`, `deletes`, `deletes_by_reason`, `creates_at_start`, `still_alive_at_end` and
/// `groups_written` describe the output (after the window and the top-N filter): `creates - deletes ==
/// still_alive_at_end`. The `rows` and skip counters describe every row processed (every group, before
/// the window start too).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportStats {
    /// Parts read (fully or up to the window end).
    pub parts: usize,
    /// Raw rows processed.
    pub rows: u64,
    /// Rows with the timestamp 2^63-1 (after the end of the trace), ignored.
    pub rows_after_trace_end: u64,
    /// Create events written.
    pub creates: u64,
    /// Of `creates`, the tasks already running at the window start (with a start).
    pub creates_at_start: u64,
    /// Delete events written.
    pub deletes: u64,
    pub deletes_by_reason: DeleteReasons,
    /// `SCHEDULE` of a task already running: ignored (the running life goes on).
    pub skipped_duplicate_schedule: u64,
    /// Deletion of a task never seen before (e.g. running since before the first part): ignored.
    pub skipped_unknown_delete: u64,
    pub skipped_unknown_delete_by_reason: DeleteReasons,
    /// Deletion of a known task that is not running (e.g. `KILL` of a pending task): ignored, normal.
    pub ignored_delete_not_running: u64,
    /// VMs alive at the end of the output.
    pub still_alive_at_end: u64,
    /// Subdivisions with at least one create in the window.
    pub groups: usize,
    /// Subdivisions in the output (`groups`, or fewer with `top`).
    pub groups_written: usize,
    /// Time of the first and the last event written.
    pub first_time_s: Option<Time>,
    pub last_time_s: Option<Time>,
}

impl fmt::Display for ImportStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "parts {}, rows {} ({} after the trace end, ignored)",
            self.parts, self.rows, self.rows_after_trace_end
        )?;
        writeln!(
            f,
            "written: {} creates ({} at the window start), {} deletes ({}), {} still alive at the end",
            self.creates,
            self.creates_at_start,
            self.deletes,
            self.deletes_by_reason,
            self.still_alive_at_end
        )?;
        writeln!(
            f,
            "groups: {} with creates, {} written",
            self.groups, self.groups_written
        )?;
        if let (Some(first), Some(last)) = (self.first_time_s, self.last_time_s) {
            writeln!(f, "time: {first:.3} .. {last:.3} s")?;
        }
        writeln!(
            f,
            "skipped: {} SCHEDULE of a running task, {} deletions of an unknown task ({}); \
             ignored: {} deletions of a task not running",
            self.skipped_duplicate_schedule,
            self.skipped_unknown_delete,
            self.skipped_unknown_delete_by_reason,
            self.ignored_delete_not_running
        )
    }
}

/// Converts `task_events` parts (in order; gzip or plain CSV) into a canonical trace written to
/// `out`. The caller calls [`TraceWriter::finish`] afterwards.
pub fn import_google2011_task_events<P: AsRef<Path>, W: Write>(
    parts: &[P],
    opts: &ImportOptions,
    out: &mut TraceWriter<W>,
) -> Result<ImportStats> {
    opts.validate()?;
    if parts.is_empty() {
        return Err(TraceError::InvalidOption {
            option: "parts",
            value: String::new(),
            reason: "no task_events part given".into(),
        });
    }
    let mut importer = Importer::new(opts, out);
    for part in parts {
        let path = part.as_ref();
        let input = open_maybe_gz(path)?;
        importer.stats.parts += 1;
        if importer.read_part(input, path.display().to_string())? == Flow::Stop {
            break;
        }
    }
    importer.finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// The running life of a task.
#[derive(Clone, Copy, Debug)]
struct Running {
    life: u32,
    group: u32,
}

/// A task seen in the rows.
#[derive(Clone, Copy, Debug, Default)]
struct Task {
    /// Lives started so far (the next life's number).
    lives: u32,
    running: Option<Running>,
}

/// An output event before it is written (compact; buffered for the top-N filter).
#[derive(Clone, Copy, Debug)]
struct Pending {
    time: Time,
    job: u64,
    task: u64,
    life: u32,
    group: u32,
    /// `SCHEDULE` for a create, the deletion's type otherwise.
    event_type: u8,
    at_start: bool,
}

/// The fields of a row the import uses.
struct Row {
    time_us: u64,
    job: u64,
    task: u64,
    machine: Option<u64>,
    event_type: u8,
}

struct Importer<'a, W: Write> {
    opts: &'a ImportOptions,
    out: &'a mut TraceWriter<W>,
    /// Events wait here until the end when `top` is set.
    buffer: Option<Vec<Pending>>,
    start_us: u64,
    end_us: Option<u64>,
    /// The window start has been reached (the creates at the start are out).
    started: bool,
    tasks: HashMap<(u64, u64), Task>,
    group_ids: HashMap<String, u32>,
    group_names: Vec<String>,
    /// Creates emitted per group.
    group_creates: Vec<u64>,
    name_buf: String,
    /// The previous row: time, file, line.
    prev: Option<(u64, String, u64)>,
    stats: ImportStats,
}

/// Seconds to microseconds, rounded up.
fn to_us(s: f64) -> u64 {
    // Saturating float-to-int cast; `s` is finite and >= 0 (validated).
    (s * 1e6).ceil() as u64
}

impl<'a, W: Write> Importer<'a, W> {
    fn new(opts: &'a ImportOptions, out: &'a mut TraceWriter<W>) -> Self {
        Importer {
            opts,
            out,
            buffer: opts.top.map(|_| Vec::new()),
            start_us: opts.start_s.map_or(0, to_us),
            end_us: opts.end_s.map(to_us),
            started: opts.start_s.is_none(),
            tasks: HashMap::new(),
            group_ids: HashMap::new(),
            group_names: Vec::new(),
            group_creates: Vec::new(),
            name_buf: String::new(),
            prev: None,
            stats: ImportStats::default(),
        }
    }

    fn read_part(&mut self, input: Box<dyn Read + Send>, file: String) -> Result<Flow> {
        let mut lines = Lines::new(input);
        let mut buf = Vec::with_capacity(256);
        let mut fields = Vec::with_capacity(COLUMNS.len());
        loop {
            buf.clear();
            let more = lines
                .read_line(&mut buf)
                .map_err(|source| TraceError::Read {
                    file: file.clone(),
                    line: lines.line() + 1,
                    source,
                })?;
            if !more {
                return Ok(Flow::Continue);
            }
            let line = lines.line();
            split_fields(&buf, &mut fields);
            let row = parse_row(&buf, &fields, &file, line, self.opts.group_by)?;
            if let Some((prev_us, prev_file, prev_line)) = &self.prev {
                if row.time_us < *prev_us {
                    return Err(TraceError::TimeBackwards {
                        file,
                        line,
                        field: "timestamp",
                        previous: prev_us.to_string(),
                        previous_at: format!("{prev_file}:{prev_line}"),
                        current: row.time_us.to_string(),
                    });
                }
            }
            match &mut self.prev {
                Some((us, f, l)) => {
                    *us = row.time_us;
                    *l = line;
                    if *f != file {
                        f.clone_from(&file);
                    }
                }
                None => self.prev = Some((row.time_us, file.clone(), line)),
            }
            if row.time_us == TIMESTAMP_AFTER_TRACE {
                self.stats.rows_after_trace_end += 1;
                continue;
            }
            if self.end_us.is_some_and(|end| row.time_us >= end) {
                return Ok(Flow::Stop);
            }
            self.stats.rows += 1;
            if !self.started && row.time_us >= self.start_us {
                self.emit_start_creates()?;
            }
            self.apply(&row, &buf[fields[COL_USER].clone()])?;
        }
    }

    /// The tasks running at the window start become creates at the start.
    fn emit_start_creates(&mut self) -> Result<()> {
        self.started = true;
        let time = self.start_us as f64 / 1e6;
        let mut running: Vec<_> = self
            .tasks
            .iter()
            .filter_map(|(&(job, task), t)| t.running.map(|r| (job, task, r)))
            .collect();
        running.sort_unstable_by_key(|&(job, task, _)| (job, task));
        for (job, task, r) in running {
            self.emit(Pending {
                time,
                job,
                task,
                life: r.life,
                group: r.group,
                event_type: SCHEDULE,
                at_start: true,
            })?;
        }
        Ok(())
    }

    fn group_id(&mut self, row: &Row, user: &[u8]) -> u32 {
        use std::fmt::Write as _;
        self.name_buf.clear();
        match self.opts.group_by {
            // Checked by `parse_row`: ASCII-compatible UTF-8, not empty.
            GroupBy::User => self
                .name_buf
                .push_str(std::str::from_utf8(user).unwrap_or_default()),
            GroupBy::Job => write!(self.name_buf, "job-{}", row.job).expect("String write"),
            GroupBy::Machine => write!(
                self.name_buf,
                "machine-{}",
                row.machine.expect("checked by parse_row")
            )
            .expect("String write"),
        }
        if let Some(&id) = self.group_ids.get(self.name_buf.as_str()) {
            return id;
        }
        let id = u32::try_from(self.group_names.len()).expect("fewer than 2^32 groups");
        self.group_ids.insert(self.name_buf.clone(), id);
        self.group_names.push(self.name_buf.clone());
        self.group_creates.push(0);
        id
    }

    fn apply(&mut self, row: &Row, user: &[u8]) -> Result<()> {
        let key = (row.job, row.task);
        let time = row.time_us as f64 / 1e6;
        match row.event_type {
            SCHEDULE => {
                if self.tasks.get(&key).is_some_and(|t| t.running.is_some()) {
                    self.stats.skipped_duplicate_schedule += 1;
                    return Ok(());
                }
                let group = self.group_id(row, user);
                let task = self.tasks.entry(key).or_default();
                let life = task.lives;
                task.lives += 1;
                task.running = Some(Running { life, group });
                if self.started {
                    self.emit(Pending {
                        time,
                        job: row.job,
                        task: row.task,
                        life,
                        group,
                        event_type: SCHEDULE,
                        at_start: false,
                    })?;
                }
            }
            EVICT..=LOST => {
                let ended = match self.tasks.get_mut(&key) {
                    None => {
                        self.stats.skipped_unknown_delete += 1;
                        self.stats
                            .skipped_unknown_delete_by_reason
                            .add(row.event_type);
                        self.tasks.insert(key, Task::default());
                        None
                    }
                    Some(task) => {
                        let ended = task.running.take();
                        if ended.is_none() {
                            self.stats.ignored_delete_not_running += 1;
                        }
                        ended
                    }
                };
                if let (Some(r), true) = (ended, self.started) {
                    self.emit(Pending {
                        time,
                        job: row.job,
                        task: row.task,
                        life: r.life,
                        group: r.group,
                        event_type: row.event_type,
                        at_start: false,
                    })?;
                }
            }
            SUBMIT | UPDATE_PENDING | UPDATE_RUNNING => {
                self.tasks.entry(key).or_default();
            }
            other => unreachable!("event_type {other} is checked by parse_row"),
        }
        Ok(())
    }

    fn emit(&mut self, p: Pending) -> Result<()> {
        if p.event_type == SCHEDULE {
            self.group_creates[p.group as usize] += 1;
        }
        match &mut self.buffer {
            Some(buffer) => {
                buffer.push(p);
                Ok(())
            }
            None => self.write(&p),
        }
    }

    fn write(&mut self, p: &Pending) -> Result<()> {
        let kind = if p.event_type == SCHEDULE {
            EventKind::Create
        } else {
            EventKind::Delete
        };
        self.out.write_event(&VmEvent {
            time: p.time,
            subdivision: self.group_names[p.group as usize].clone(),
            kind,
            vm_id: format!("{}-{}-{}", p.job, p.task, p.life),
            profile: None,
        })?;
        let s = &mut self.stats;
        match kind {
            EventKind::Create => {
                s.creates += 1;
                s.creates_at_start += u64::from(p.at_start);
            }
            EventKind::Delete => {
                s.deletes += 1;
                s.deletes_by_reason.add(p.event_type);
            }
        }
        s.first_time_s.get_or_insert(p.time);
        s.last_time_s = Some(p.time);
        Ok(())
    }

    fn finish(mut self) -> Result<ImportStats> {
        if !self.started {
            self.emit_start_creates()?;
        }
        self.stats.groups = self.group_creates.iter().filter(|&&c| c > 0).count();
        let mut kept = vec![true; self.group_names.len()];
        if let (Some(top), Some(buffer)) = (self.opts.top, self.buffer.take()) {
            let mut ranked: Vec<usize> = (0..self.group_names.len())
                .filter(|&g| self.group_creates[g] > 0)
                .collect();
            ranked.sort_by(|&a, &b| {
                self.group_creates[b]
                    .cmp(&self.group_creates[a])
                    .then_with(|| self.group_names[a].cmp(&self.group_names[b]))
            });
            kept = vec![false; self.group_names.len()];
            for &g in ranked.iter().take(top) {
                kept[g] = true;
            }
            for p in buffer.iter().filter(|p| kept[p.group as usize]) {
                self.write(p)?;
            }
        }
        self.stats.groups_written = (0..self.group_names.len())
            .filter(|&g| kept[g] && self.group_creates[g] > 0)
            .count();
        self.stats.still_alive_at_end = self
            .tasks
            .values()
            .filter_map(|t| t.running)
            .filter(|r| kept[r.group as usize])
            .count() as u64;
        Ok(self.stats)
    }
}

/// Splits a raw line at its commas (the table has no quoting).
fn split_fields(line: &[u8], fields: &mut Vec<Range<usize>>) {
    fields.clear();
    let mut start = 0;
    while let Some(i) = line[start..].iter().position(|&b| b == b',') {
        fields.push(start..start + i);
        start += i + 1;
    }
    fields.push(start..line.len());
}

/// Parses and validates one raw row.
fn parse_row(
    line_bytes: &[u8],
    fields: &[Range<usize>],
    file: &str,
    line: u64,
    group_by: GroupBy,
) -> Result<Row> {
    if fields.len() != COLUMNS.len() {
        return Err(TraceError::FieldCount {
            file: file.to_string(),
            line,
            expected: COLUMNS.len(),
            found: fields.len(),
            row: String::from_utf8_lossy(line_bytes).into_owned(),
        });
    }
    let field = |col: usize| &line_bytes[fields[col].clone()];
    let error = |col: usize, reason: &str| TraceError::Field {
        file: file.to_string(),
        line,
        field: COLUMNS[col],
        value: String::from_utf8_lossy(field(col)).into_owned(),
        reason: reason.to_string(),
    };
    let text = |col: usize| std::str::from_utf8(field(col)).map_err(|_| error(col, "not UTF-8"));
    let int = |col: usize| -> Result<Option<u64>> {
        let t = text(col)?;
        if t.is_empty() {
            return Ok(None);
        }
        t.parse::<u64>()
            .map(Some)
            .map_err(|_| error(col, "not an unsigned integer"))
    };
    let required = |col: usize| -> Result<u64> { int(col)?.ok_or_else(|| error(col, "empty")) };

    let time_us = required(COL_TIME)?;
    let job = required(COL_JOB)?;
    let task = required(COL_TASK)?;
    let machine = int(COL_MACHINE)?;
    let event_type = required(COL_EVENT)?;
    if event_type > u64::from(UPDATE_RUNNING) {
        return Err(error(
            COL_EVENT,
            "expected 0 (SUBMIT) ..= 8 (UPDATE_RUNNING)",
        ));
    }
    let event_type = event_type as u8;
    for col in OPTIONAL_INT_COLUMNS {
        int(col)?;
    }
    for col in OPTIONAL_FLOAT_COLUMNS {
        let t = text(col)?;
        if !t.is_empty() && t.parse::<f64>().is_err() {
            return Err(error(col, "not a number"));
        }
    }
    let user = text(COL_USER)?;
    if event_type == SCHEDULE {
        match group_by {
            GroupBy::User if user.is_empty() => {
                return Err(error(COL_USER, "empty (needed to group by user)"))
            }
            GroupBy::Machine if machine.is_none() => {
                return Err(error(COL_MACHINE, "empty (needed to group by machine)"))
            }
            _ => {}
        }
    }
    Ok(Row {
        time_us,
        job,
        task,
        machine,
        event_type,
    })
}
