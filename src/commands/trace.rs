//! `trace import` and `trace check`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use cidrcast_trace::{
    import_google2011_task_events, summarize_file, GroupBy, ImportOptions, ReadOptions, TraceWriter,
};
use serde::Serialize;

use crate::output::{emit, Format, Table};

/// Trace formats `trace import --from` accepts.
pub const IMPORT_FORMATS: &str = "google2011-task-events";

#[derive(Serialize)]
struct ImportReport {
    output: String,
    parts: usize,
    rows: u64,
    creates: u64,
    creates_at_start: u64,
    deletes: u64,
    skipped_duplicate_schedule: u64,
    skipped_unknown_delete: u64,
    still_alive_at_end: u64,
    groups: usize,
    groups_written: usize,
}

#[allow(clippy::too_many_arguments)]
pub fn import(
    output: Format,
    from: &str,
    group_by: &str,
    parts: &[PathBuf],
    out: &Path,
    top: Option<usize>,
    start: Option<f64>,
    end: Option<f64>,
) -> Result<()> {
    if from != "google2011-task-events" {
        bail!("unknown trace format `{from}` for --from (accepted: {IMPORT_FORMATS})");
    }
    let opts = ImportOptions {
        group_by: group_by.parse::<GroupBy>()?,
        top,
        start_s: start,
        end_s: end,
    };
    // Write next to the target and rename on success: a failed import leaves no partial file.
    let tmp = out.with_extension(format!(
        "{}.partial",
        out.extension().and_then(|e| e.to_str()).unwrap_or("csv")
    ));
    let result = (|| -> Result<_> {
        let mut writer = if out.extension().is_some_and(|e| e == "gz") {
            TraceWriter::new_gzip(
                std::io::BufWriter::new(std::fs::File::create(&tmp)?),
                out.display().to_string(),
            )?
        } else {
            TraceWriter::new(
                std::io::BufWriter::new(std::fs::File::create(&tmp)?),
                out.display().to_string(),
            )?
        };
        let stats = import_google2011_task_events(parts, &opts, &mut writer)?;
        writer.finish()?;
        Ok(stats)
    })();
    let stats = match result {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    std::fs::rename(&tmp, out)?;
    let r = ImportReport {
        output: out.display().to_string(),
        parts: stats.parts,
        rows: stats.rows,
        creates: stats.creates,
        creates_at_start: stats.creates_at_start,
        deletes: stats.deletes,
        skipped_duplicate_schedule: stats.skipped_duplicate_schedule,
        skipped_unknown_delete: stats.skipped_unknown_delete,
        still_alive_at_end: stats.still_alive_at_end,
        groups: stats.groups,
        groups_written: stats.groups_written,
    };
    emit(output, &r, |r| {
        format!(
            "wrote {}: {} creates ({} alive at start), {} deletes, {} of {} subdivisions, from {} rows in {} part(s)\nskipped: {} duplicate schedules, {} deletes of tasks not seen running; {} still alive at the end\n",
            r.output, r.creates, r.creates_at_start, r.deletes, r.groups_written, r.groups,
            r.rows, r.parts, r.skipped_duplicate_schedule, r.skipped_unknown_delete,
            r.still_alive_at_end
        )
    });
    Ok(())
}

#[derive(Serialize)]
struct CheckReport {
    file: String,
    events: u64,
    creations: u64,
    deletions: u64,
    first_time: Option<f64>,
    last_time: Option<f64>,
    peak_alive: u64,
    alive_at_end: u64,
    subdivisions: usize,
    skipped: u64,
    top: Vec<(String, u64, u64)>,
}

pub fn check(output: Format, file: &Path, skip_invalid: bool) -> Result<()> {
    let s = summarize_file(file, ReadOptions { skip_invalid })?;
    let r = CheckReport {
        file: file.display().to_string(),
        events: s.events,
        creations: s.creations,
        deletions: s.deletions,
        first_time: s.first_time,
        last_time: s.last_time,
        peak_alive: s.peak_alive,
        alive_at_end: s.alive_at_end,
        subdivisions: s.subdivisions.len(),
        skipped: s.skipped.total(),
        top: s
            .by_creations()
            .into_iter()
            .take(10)
            .map(|(n, x)| (n.to_string(), x.creations, x.peak_alive))
            .collect(),
    };
    emit(output, &r, |r| {
        let mut out = format!(
            "{}: valid, {} events ({} creations, {} deletions) over {:.0} s, {} subdivisions, peak alive {}, {} skipped\n",
            r.file,
            r.events,
            r.creations,
            r.deletions,
            r.last_time.unwrap_or(0.0) - r.first_time.unwrap_or(0.0),
            r.subdivisions,
            r.peak_alive,
            r.skipped
        );
        let mut t = Table::new(&["SUBDIVISION", "CREATIONS", "PEAK ALIVE"]);
        for (n, c, p) in &r.top {
            t.row(vec![n.clone(), c.to_string(), p.to_string()]);
        }
        out.push_str(&t.render());
        out
    });
    Ok(())
}
