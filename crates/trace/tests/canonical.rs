//! The canonical trace format: writer/reader round trips, validation errors and their lines, skip
//! mode, gzip, streaming, summaries.

use std::io::{self, Read, Write};

use cidrcast_core::model::{EventKind, VmEvent};
use cidrcast_trace::{
    read_all, summarize, summarize_file, ReadOptions, SkipCounts, TraceError, TraceReader,
    TraceWriter, HEADER_LINE,
};

fn ev(time: f64, sub: &str, kind: EventKind, vm: &str, profile: Option<&str>) -> VmEvent {
    VmEvent {
        time,
        subdivision: sub.to_string(),
        kind,
        vm_id: vm.to_string(),
        profile: profile.map(str::to_string),
    }
}

fn sample() -> Vec<VmEvent> {
    use EventKind::*;
    vec![
        ev(0.0, "user-17", Create, "vm-1", Some("web")),
        ev(0.0, "user-17", Create, "vm-2", None),
        ev(1.5, "rack \"a\", row 2", Create, "vm-3", Some("db")),
        ev(12.5, "user-17", Delete, "vm-1", None),
        ev(12.5, "rack \"a\", row 2", Delete, "vm-3", Some("db")),
        ev(86_400.001, "user-17", Create, "vm-1b", None),
    ]
}

fn write_to_vec(events: &[VmEvent]) -> Vec<u8> {
    let mut w = TraceWriter::new(Vec::new(), "mem").unwrap();
    for e in events {
        w.write_event(e).unwrap();
    }
    assert_eq!(w.events_written(), events.len() as u64);
    w.finish().unwrap()
}

fn read_str(text: &str, opts: ReadOptions) -> (Vec<VmEvent>, Option<TraceError>, SkipCounts) {
    let mut reader = TraceReader::new(text.as_bytes(), "t.csv", opts);
    let mut events = Vec::new();
    let mut error = None;
    for item in reader.by_ref() {
        match item {
            Ok(e) => events.push(e),
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    (events, error, reader.skipped())
}

fn strict_error(text: &str) -> TraceError {
    let (_, error, _) = read_str(text, ReadOptions::STRICT);
    error.unwrap_or_else(|| panic!("expected an error for:\n{text}"))
}

#[test]
fn writer_output_is_the_documented_format() {
    let text = String::from_utf8(write_to_vec(&sample()[..4])).unwrap();
    assert_eq!(
        text,
        "time_s,subdivision,event,vm_id,profile\n\
         0.000,user-17,create,vm-1,web\n\
         0.000,user-17,create,vm-2,\n\
         1.500,\"rack \"\"a\"\", row 2\",create,vm-3,db\n\
         12.500,user-17,delete,vm-1,\n"
    );
}

#[test]
fn round_trip_through_writer_and_reader() {
    let events = sample();
    let bytes = write_to_vec(&events);
    let (back, error, skipped) =
        read_str(std::str::from_utf8(&bytes).unwrap(), ReadOptions::STRICT);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(back, events);
    assert_eq!(skipped.total(), 0);
}

#[test]
fn writer_rounds_time_to_milliseconds() {
    let events = vec![ev(1.23449, "s", EventKind::Create, "a", None)];
    let text = String::from_utf8(write_to_vec(&events)).unwrap();
    assert!(text.ends_with("\n1.234,s,create,a,\n"), "{text}");
}

#[test]
fn gzip_round_trip_by_extension_and_by_magic() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample();

    let gz = dir.path().join("events.csv.gz");
    let mut w = TraceWriter::create(&gz).unwrap();
    for e in &events {
        w.write_event(e).unwrap();
    }
    w.finish().unwrap();
    let raw = std::fs::read(&gz).unwrap();
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "a .gz output is gzip");
    assert_eq!(read_all(&gz, ReadOptions::STRICT).unwrap(), events);

    // Gzip content under a name without `.gz`: detected by the magic bytes.
    let disguised = dir.path().join("events.csv");
    std::fs::write(&disguised, &raw).unwrap();
    assert_eq!(read_all(&disguised, ReadOptions::STRICT).unwrap(), events);

    // A plain file is read as is.
    let plain = dir.path().join("plain.csv");
    let mut w = TraceWriter::create(&plain).unwrap();
    for e in &events {
        w.write_event(e).unwrap();
    }
    w.finish().unwrap();
    assert!(std::fs::read_to_string(&plain)
        .unwrap()
        .starts_with(HEADER_LINE));
    assert_eq!(read_all(&plain, ReadOptions::STRICT).unwrap(), events);
}

#[test]
fn open_errors_name_the_file() {
    let err = TraceReader::open("/nonexistent/dir/x.csv", ReadOptions::STRICT)
        .err()
        .unwrap();
    assert!(matches!(err, TraceError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/dir/x.csv"), "{err}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn corrupt_gzip_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.csv.gz");
    std::fs::write(&path, b"\x1f\x8bthis is not deflate").unwrap();
    let err = read_all(&path, ReadOptions::STRICT).unwrap_err();
    assert!(matches!(err, TraceError::Read { line: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("bad.csv.gz:1:"), "{err}");
}

#[test]
fn header_errors_show_what_was_found() {
    let err = strict_error("time,subdivision,event,vm_id,profile\n0,a,create,x,\n");
    match &err {
        TraceError::Header { line, found, .. } => {
            assert_eq!(*line, 1);
            assert_eq!(found, "time,subdivision,event,vm_id,profile");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("t.csv:1:"), "{msg}");
    assert!(msg.contains(HEADER_LINE), "{msg}");

    // A missing header: the first data row is reported.
    let err = strict_error("0,a,create,x,\n");
    assert!(err.to_string().contains("found `0,a,create,x,`"), "{err}");
    // Fewer columns than the header.
    let err = strict_error("time_s,subdivision,event,vm_id\n");
    assert!(matches!(err, TraceError::Header { .. }), "{err:?}");
    // Empty input.
    let err = strict_error("");
    assert!(matches!(err, TraceError::Header { line: 1, .. }), "{err:?}");
}

/// `(trace, expected line, field or None, snippet of the message)`.
fn syntax_cases() -> Vec<(String, u64, Option<&'static str>, &'static str)> {
    let h = HEADER_LINE;
    vec![
        (
            format!("{h}\n0,a,create,x,\n1,a,delete,x\n"),
            3,
            None,
            "expected 5 fields, found 4",
        ),
        (format!("{h}\n0,a,create,x,,extra\n"), 2, None, "found 6"),
        (
            format!("{h}\n0,a,create,x,\nabc,a,create,y,\n"),
            3,
            Some("time_s"),
            "`abc`",
        ),
        (
            format!("{h}\nNaN,a,create,x,\n"),
            2,
            Some("time_s"),
            "`NaN`",
        ),
        (
            format!("{h}\ninf,a,create,x,\n"),
            2,
            Some("time_s"),
            "`inf`",
        ),
        (format!("{h}\n-1,a,create,x,\n"), 2, Some("time_s"), "`-1`"),
        (
            format!("{h}\n0,a,create,x,\n,a,create,y,\n"),
            3,
            Some("time_s"),
            "``",
        ),
        (format!("{h}\n0,a,start,x,\n"), 2, Some("event"), "`start`"),
        (
            format!("{h}\n0,a,Create,x,\n"),
            2,
            Some("event"),
            "`Create`",
        ),
        (
            format!("{h}\n0,a,create,x,\n0,,create,y,\n"),
            3,
            Some("subdivision"),
            "empty",
        ),
        (format!("{h}\n0,a,create,,\n"), 2, Some("vm_id"), "empty"),
    ]
}

#[test]
fn syntax_errors_name_line_field_and_value() {
    for (text, line, field, snippet) in syntax_cases() {
        for opts in [ReadOptions::STRICT, ReadOptions::SKIP_INVALID] {
            let (_, err, _) = read_str(&text, opts);
            let err = err.unwrap_or_else(|| panic!("no error for\n{text}"));
            assert_eq!(err.line(), Some(line), "{err}\n{text}");
            assert_eq!(err.file(), Some("t.csv"));
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("t.csv:{line}:")), "{msg}");
            assert!(msg.contains(snippet), "`{snippet}` not in {msg}");
            if let Some(field) = field {
                assert!(
                    matches!(&err, TraceError::Field { field: f, .. } if *f == field),
                    "{err:?}"
                );
                assert!(msg.contains(&format!("field `{field}`")), "{msg}");
            } else {
                assert!(matches!(err, TraceError::FieldCount { .. }), "{err:?}");
            }
        }
    }
}

#[test]
fn time_going_backwards_names_line_and_both_times() {
    let text = format!("{HEADER_LINE}\n0,a,create,x,\n5.5,a,create,y,\n5.25,a,delete,x,\n");
    let err = strict_error(&text);
    match &err {
        TraceError::TimeBackwards {
            line,
            previous,
            current,
            previous_at,
            ..
        } => {
            assert_eq!(*line, 4);
            assert_eq!(previous, "5.5");
            assert_eq!(current, "5.25");
            assert_eq!(previous_at, "t.csv:3");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("t.csv:4:"), "{msg}");
    assert!(msg.contains("`5.25`") && msg.contains("`5.5`"), "{msg}");
    // Also fatal when skipping lifecycle errors.
    let (events, err, _) = read_str(&text, ReadOptions::SKIP_INVALID);
    assert_eq!(events.len(), 2);
    assert_eq!(err.unwrap().line(), Some(4));
    // Equal times are fine.
    let (events, err, _) = read_str(
        &format!("{HEADER_LINE}\n1,a,create,x,\n1,a,delete,x,\n1.0,a,create,y,\n"),
        ReadOptions::STRICT,
    );
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.len(), 3);
}

#[test]
fn lifecycle_errors_name_the_line_and_the_vm() {
    let h = HEADER_LINE;
    let err = strict_error(&format!(
        "{h}\n0,a,create,x,\n1,a,create,y,\n2,a,create,x,\n"
    ));
    assert!(
        matches!(&err, TraceError::DuplicateCreate { line: 4, vm_id, created_line: 2, .. } if vm_id == "x"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("t.csv:4:"), "{err}");
    assert!(err.to_string().contains("`x`"), "{err}");

    let err = strict_error(&format!("{h}\n0,a,create,x,\n1,a,delete,y,\n"));
    assert!(
        matches!(&err, TraceError::UnknownDelete { line: 3, vm_id, .. } if vm_id == "y"),
        "{err:?}"
    );
    // Deleted twice: the second is unknown.
    let err = strict_error(&format!(
        "{h}\n0,a,create,x,\n1,a,delete,x,\n2,a,delete,x,\n"
    ));
    assert!(
        matches!(err, TraceError::UnknownDelete { line: 4, .. }),
        "{err:?}"
    );
    let err = strict_error(&format!("{h}\n0,a,create,x,\n1,b,delete,x,\n"));
    match &err {
        TraceError::SubdivisionMismatch {
            line,
            found,
            expected,
            created_line,
            ..
        } => {
            assert_eq!((*line, *created_line), (3, 2));
            assert_eq!((found.as_str(), expected.as_str()), ("b", "a"));
        }
        other => panic!("{other:?}"),
    }
    // A vm_id may live again after its delete.
    let (events, err, _) = read_str(
        &format!("{h}\n0,a,create,x,\n1,a,delete,x,\n2,a,create,x,\n"),
        ReadOptions::STRICT,
    );
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.len(), 3);
}

#[test]
fn line_numbers_count_blank_lines_and_crlf() {
    let text = format!("{HEADER_LINE}\r\n0,a,create,x,\r\n\r\n1,a,delete,y,\r\n");
    let err = strict_error(&text);
    assert!(
        matches!(err, TraceError::UnknownDelete { line: 4, .. }),
        "{err:?}"
    );
    // A quoted field spanning two lines: the next row's line is still the file's.
    let text = format!("{HEADER_LINE}\n0,\"a\nb\",create,x,\n1,a,delete,x,\n");
    let err = strict_error(&text);
    assert!(
        matches!(
            err,
            TraceError::SubdivisionMismatch {
                line: 4,
                created_line: 2,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn skip_mode_counts_lifecycle_errors_and_keeps_the_rest() {
    let text = format!(
        "{HEADER_LINE}\n\
         0,a,create,x,\n\
         1,a,create,x,\n\
         2,a,delete,ghost,\n\
         3,b,delete,x,\n\
         4,a,delete,x,\n\
         5,a,delete,x,\n\
         6,a,create,y,p\n"
    );
    let (events, err, skipped) = read_str(&text, ReadOptions::SKIP_INVALID);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        skipped,
        SkipCounts {
            duplicate_create: 1,
            unknown_delete: 2,
            subdivision_mismatch: 1,
        }
    );
    assert_eq!(skipped.total(), 4);
    let got: Vec<_> = events
        .iter()
        .map(|e| (e.time, e.kind, e.vm_id.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0.0, EventKind::Create, "x"),
            (4.0, EventKind::Delete, "x"),
            (6.0, EventKind::Create, "y"),
        ]
    );
    assert_eq!(events[2].profile.as_deref(), Some("p"));
    // Strict mode stops at the first of them.
    let (events, err, skipped) = read_str(&text, ReadOptions::STRICT);
    assert_eq!(events.len(), 1);
    assert_eq!(err.unwrap().line(), Some(3));
    assert_eq!(skipped.total(), 0);
}

#[test]
fn reader_is_fused_after_an_error() {
    let text = format!("{HEADER_LINE}\n0,a,create,x,\nbad,a,create,y,\n1,a,create,z,\n");
    let mut reader = TraceReader::new(text.as_bytes(), "t.csv", ReadOptions::STRICT);
    assert!(reader.next().unwrap().is_ok());
    assert!(reader.next().unwrap().is_err());
    assert!(reader.next().is_none());
    assert!(reader.next().is_none());
    assert_eq!(reader.events_read(), 1);
    assert_eq!(reader.alive(), 1);
}

/// An endless trace made on the fly; counts the bytes handed out.
struct Endless {
    pending: Vec<u8>,
    next_row: u64,
    bytes_read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pending.is_empty() {
            if self.next_row == 0 {
                writeln!(self.pending, "{HEADER_LINE}")?;
            }
            let i = self.next_row;
            writeln!(self.pending, "{i},sub-{},create,vm-{i},", i % 7)?;
            self.next_row += 1;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.bytes_read.set(self.bytes_read.get() + n as u64);
        Ok(n)
    }
}

#[test]
fn reader_streams_instead_of_loading_everything() {
    let bytes_read = std::rc::Rc::new(std::cell::Cell::new(0));
    let input = Endless {
        pending: Vec::new(),
        next_row: 0,
        bytes_read: bytes_read.clone(),
    };
    let reader = TraceReader::new(input, "endless", ReadOptions::STRICT);
    let first: Vec<_> = reader.take(1000).collect::<Result<_, _>>().unwrap();
    assert_eq!(first.len(), 1000);
    assert_eq!(first[999].vm_id, "vm-999");
    // 1000 rows are ~25 kB; the reader buffers a bounded amount beyond them.
    assert!(
        bytes_read.get() < 1 << 20,
        "read {} bytes",
        bytes_read.get()
    );
}

#[test]
fn writer_refuses_events_that_make_an_invalid_trace() {
    let mut w = TraceWriter::new(Vec::new(), "out.csv").unwrap();
    w.write_event(&ev(5.0, "a", EventKind::Create, "x", None))
        .unwrap();
    let err = w
        .write_event(&ev(4.0, "a", EventKind::Create, "y", None))
        .unwrap_err();
    assert!(
        matches!(err, TraceError::TimeBackwards { line: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("out.csv:3:"), "{err}");
    for bad in [
        ev(f64::NAN, "a", EventKind::Create, "y", None),
        ev(-1.0, "a", EventKind::Create, "y", None),
        ev(6.0, "", EventKind::Create, "y", None),
        ev(6.0, "a", EventKind::Create, "", None),
    ] {
        let err = w.write_event(&bad).unwrap_err();
        assert!(matches!(err, TraceError::Field { line: 3, .. }), "{err:?}");
    }
    w.write_event(&ev(6.0, "a", EventKind::Delete, "x", None))
        .unwrap();
    let text = String::from_utf8(w.finish().unwrap()).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
}

#[test]
fn writer_create_error_names_the_file() {
    let err = TraceWriter::create("/nonexistent/dir/out.csv.gz")
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            TraceError::Open {
                action: "create",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("/nonexistent/dir/out.csv.gz"),
        "{err}"
    );
}

#[test]
fn summaries_count_per_subdivision_and_peak() {
    use EventKind::*;
    let events = vec![
        ev(0.0, "a", Create, "1", None),
        ev(1.0, "a", Create, "2", None),
        ev(2.0, "b", Create, "3", None),
        ev(3.0, "a", Delete, "1", None),
        ev(4.0, "b", Create, "4", None),
        ev(5.0, "b", Create, "5", None),
        ev(6.0, "a", Delete, "2", None),
        ev(7.0, "b", Delete, "3", None),
    ];
    let s = summarize(&events);
    assert_eq!((s.events, s.creations, s.deletions), (8, 5, 3));
    assert_eq!((s.first_time, s.last_time), (Some(0.0), Some(7.0)));
    assert_eq!((s.peak_alive, s.peak_time, s.alive_at_end), (4, 5.0, 2));
    let a = &s.subdivisions["a"];
    assert_eq!(
        (
            a.creations,
            a.deletions,
            a.peak_alive,
            a.peak_time,
            a.alive_at_end
        ),
        (2, 2, 2, 1.0, 0)
    );
    let b = &s.subdivisions["b"];
    assert_eq!(
        (
            b.creations,
            b.deletions,
            b.peak_alive,
            b.peak_time,
            b.alive_at_end
        ),
        (3, 1, 3, 5.0, 2)
    );
    let order: Vec<_> = s.by_creations().into_iter().map(|(n, _)| n).collect();
    assert_eq!(order, ["b", "a"]);

    // The streaming variant agrees, and reports skips.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.csv.gz");
    let mut w = TraceWriter::create(&path).unwrap();
    for e in &events {
        w.write_event(e).unwrap();
    }
    w.write_event(&ev(8.0, "a", Delete, "ghost", None)).unwrap();
    w.finish().unwrap();
    assert!(summarize_file(&path, ReadOptions::STRICT).is_err());
    let streamed = summarize_file(&path, ReadOptions::SKIP_INVALID).unwrap();
    assert_eq!(streamed.skipped.unknown_delete, 1);
    assert_eq!(streamed.subdivisions, s.subdivisions);
    assert_eq!(streamed.peak_alive, s.peak_alive);
}

#[test]
fn malformed_csv_names_the_line() {
    let h = HEADER_LINE;
    let err = strict_error(&format!("{h}\n0,a,create,x,\n1,\"a\"b,create,y,\n"));
    assert!(matches!(err, TraceError::Csv { line: 3, .. }), "{err:?}");
    assert!(
        err.to_string().starts_with("t.csv:3: malformed CSV"),
        "{err}"
    );
    // A quote left open runs to the end of the input: reported where the row starts.
    let err = strict_error(&format!(
        "{h}\n0,a,create,x,\n1,\"a,create,y,\n2,a,create,z,\n"
    ));
    assert!(matches!(err, TraceError::Csv { line: 3, .. }), "{err:?}");
    // Invalid UTF-8.
    let mut bytes = format!("{h}\n0,a,create,x,\n").into_bytes();
    bytes.extend_from_slice(b"1,\xff,create,y,\n");
    let mut reader = TraceReader::new(&bytes[..], "t.csv", ReadOptions::STRICT);
    assert!(reader.next().unwrap().is_ok());
    let err = reader.next().unwrap().unwrap_err();
    assert!(matches!(err, TraceError::Csv { line: 3, .. }), "{err:?}");
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn a_byte_order_mark_before_the_header_is_tolerated() {
    let text = format!("\u{feff}{HEADER_LINE}\n0,a,create,x,\n");
    let (events, err, _) = read_str(&text, ReadOptions::STRICT);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(events.len(), 1);
}

#[test]
fn bundled_demo_trace_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/google2011/demo-events.csv.gz");
    let s = summarize_file(&path, ReadOptions::STRICT).unwrap();
    // The counts stated in data/google2011/README.md.
    assert_eq!(
        (s.events, s.creations, s.deletions),
        (268_797, 190_389, 78_408)
    );
    assert_eq!(s.subdivisions.len(), 40);
    assert_eq!(s.alive_at_end, 111_981);
}
