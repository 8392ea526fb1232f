//! Prints a quick overview of a canonical trace (plain or gzip): totals and the busiest
//! subdivisions.
//!
//! ```text
//! cargo run --release -p cidrcast-trace --example summary -- TRACE.csv[.gz] [--top N] [--skip-invalid]
//! ```

use std::process::ExitCode;

use cidrcast_trace::{summarize_file, ReadOptions};

fn main() -> ExitCode {
    let mut path = None;
    let mut top = 10;
    let mut opts = ReadOptions::STRICT;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--top" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) => top = n,
                None => {
                    eprintln!("--top needs a number");
                    return ExitCode::FAILURE;
                }
            },
            "--skip-invalid" => opts = ReadOptions::SKIP_INVALID,
            _ => path = Some(arg),
        }
    }
    let Some(path) = path else {
        eprintln!("usage: summary TRACE.csv[.gz] [--top N] [--skip-invalid]");
        return ExitCode::FAILURE;
    };
    let s = match summarize_file(&path, opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{path}: {} events ({} creates, {} deletes), {} subdivisions, time {:.3} .. {:.3} s",
        s.events,
        s.creations,
        s.deletions,
        s.subdivisions.len(),
        s.first_time.unwrap_or(0.0),
        s.last_time.unwrap_or(0.0)
    );
    println!(
        "peak alive {} at {:.3} s, {} alive at the end, skipped {:?}",
        s.peak_alive, s.peak_time, s.alive_at_end, s.skipped
    );
    println!(
        "{:>9} {:>9} {:>9} {:>9}  subdivision",
        "creates", "deletes", "peak", "end"
    );
    for (name, sub) in s.by_creations().into_iter().take(top) {
        println!(
            "{:>9} {:>9} {:>9} {:>9}  {name}",
            sub.creations, sub.deletions, sub.peak_alive, sub.alive_at_end
        );
    }
    ExitCode::SUCCESS
}
