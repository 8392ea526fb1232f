//! Imports Google cluster 2011 `task_events` parts into a canonical trace, then reads the result
//! back with the strict reader and prints a summary.
//!
//! ```text
//! cargo run --release -p cidrcast-trace --example import -- \
//!     [--group-by user|job|machine] [--top N] [--start S] [--end S] -o OUT.csv[.gz] PART...
//! ```
//! (Stand-in for `cidrcast trace import --from google2011-task-events ...` until the CLI has it.)

use std::path::PathBuf;
use std::process::ExitCode;

use cidrcast_trace::{
    import_google2011_task_events, summarize_file, GroupBy, ImportOptions, ReadOptions, TraceWriter,
};

const USAGE: &str = "usage: import [--group-by user|job|machine] [--top N] [--start S] [--end S] \
                     -o OUT.csv[.gz] PART...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprint!("error: {e}");
            let mut source = e.source();
            while let Some(s) = source {
                eprint!(": {s}");
                source = s.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ImportOptions::default();
    let mut out: Option<PathBuf> = None;
    let mut parts = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--group-by" => opts.group_by = value("--group-by")?.parse::<GroupBy>()?,
            "--top" => opts.top = Some(value("--top")?.parse()?),
            "--start" => opts.start_s = Some(value("--start")?.parse()?),
            "--end" => opts.end_s = Some(value("--end")?.parse()?),
            "-o" | "--output" => out = Some(value("-o")?.into()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`\n{USAGE}").into()),
            _ => parts.push(PathBuf::from(arg)),
        }
    }
    let out = out.ok_or(format!("-o OUT is required\n{USAGE}"))?;

    let mut writer = TraceWriter::create(&out)?;
    let stats = import_google2011_task_events(&parts, &opts, &mut writer)?;
    writer.finish()?;
    eprint!("{stats}");

    let summary = summarize_file(&out, ReadOptions::STRICT)?;
    eprintln!(
        "{}: re-read OK: {} events ({} creates, {} deletes), {} subdivisions, peak alive {} at {:.3} s, \
         {} alive at the end",
        out.display(),
        summary.events,
        summary.creations,
        summary.deletions,
        summary.subdivisions.len(),
        summary.peak_alive,
        summary.peak_time,
        summary.alive_at_end
    );
    Ok(())
}
