//! The Google cluster 2011 `task_events` importer: on the bundled real part (cross-checked by an
//! independent simple model of the rows) and on small synthetic parts (exact output, windows, top N,
//! errors).

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cidrcast_core::model::{EventKind, VmEvent};
use cidrcast_trace::google2011::TIMESTAMP_AFTER_TRACE;
use cidrcast_trace::{
    import_google2011_task_events, GroupBy, ImportOptions, ImportStats, ReadOptions, TraceError,
    TraceReader, TraceWriter,
};

fn bundled_part() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/google2011/task_events/part-00001-of-00500.csv.gz")
}

/// Imports into memory; returns the stats and the output text.
fn import(parts: &[PathBuf], opts: &ImportOptions) -> Result<(ImportStats, String), TraceError> {
    let mut writer = TraceWriter::new(Vec::new(), "out.csv")?;
    let stats = import_google2011_task_events(parts, opts, &mut writer)?;
    let text = String::from_utf8(writer.finish()?).unwrap();
    Ok((stats, text))
}

/// Reads an output back with the strict reader.
fn reread(text: &str) -> Vec<VmEvent> {
    TraceReader::new(text.as_bytes(), "out.csv", ReadOptions::STRICT)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("output does not re-read: {e}"))
}

/// What a simple, separate reading of the raw rows expects.
#[derive(Debug, Default)]
struct Expected {
    rows: u64,
    schedules: u64,
    deletions: u64,
    creates: u64,
    deletes: u64,
    duplicate_schedule: u64,
    unknown_delete: u64,
    not_running: u64,
    alive_at_end: u64,
    users: HashSet<String>,
    /// `job-task-life` -> machine of its SCHEDULE.
    machine_of: HashMap<String, String>,
}

/// The bundled part, gunzipped once.
fn bundled_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut text = String::new();
        flate2::read::GzDecoder::new(std::fs::File::open(bundled_part()).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text
    })
}

/// The first `n` rows of the bundled part, as a plain file in `dir` (the importer is slow-ish in
/// debug builds; a slice keeps the tests fast).
fn bundled_slice(dir: &Path, n: usize) -> (PathBuf, String) {
    let text: String = bundled_text()
        .lines()
        .take(n)
        .flat_map(|l| [l, "\n"])
        .collect();
    let path = dir.join("part-00001-head.csv");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

fn expected_from_raw(text: &str) -> Expected {
    let mut e = Expected::default();
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut running: HashMap<(&str, &str), String> = HashMap::new();
    let mut lives: HashMap<(&str, &str), u32> = HashMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(cols.len(), 13, "{line}");
        e.rows += 1;
        let task = (cols[2], cols[3]);
        let known = !seen.insert(task);
        match cols[5] {
            "1" => {
                e.schedules += 1;
                if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(task) {
                    let life = lives.entry(task).or_insert(0);
                    let vm = format!("{}-{}-{}", task.0, task.1, life);
                    *life += 1;
                    e.machine_of.insert(vm.clone(), cols[4].to_string());
                    e.users.insert(cols[6].to_string());
                    slot.insert(vm);
                    e.creates += 1;
                } else {
                    e.duplicate_schedule += 1;
                }
            }
            "2" | "3" | "4" | "5" | "6" => {
                e.deletions += 1;
                if running.remove(&task).is_some() {
                    e.deletes += 1;
                } else if known {
                    e.not_running += 1;
                } else {
                    e.unknown_delete += 1;
                }
            }
            _ => {}
        }
    }
    e.alive_at_end = running.len() as u64;
    e
}

/// Checks an output trace on its own: ordered, every delete after the create of the same vm in
/// the same subdivision, alive never negative; returns the per-kind counts and the alive at the end.
fn check_output(events: &[VmEvent]) -> (u64, u64, u64) {
    let mut live: HashMap<&str, (&str, f64)> = HashMap::new();
    let mut alive: HashMap<&str, i64> = HashMap::new();
    let (mut creates, mut deletes) = (0, 0);
    let mut last = 0.0;
    for ev in events {
        assert!(ev.time >= last, "time goes backwards at {ev:?}");
        last = ev.time;
        let n = alive.entry(&ev.subdivision).or_default();
        match ev.kind {
            EventKind::Create => {
                creates += 1;
                *n += 1;
                assert!(live.insert(&ev.vm_id, (&ev.subdivision, ev.time)).is_none());
            }
            EventKind::Delete => {
                deletes += 1;
                *n -= 1;
                assert!(*n >= 0, "alive < 0 in {}", ev.subdivision);
                let (sub, created) = live.remove(ev.vm_id.as_str()).expect("delete after create");
                assert_eq!(sub, ev.subdivision);
                assert!(created <= ev.time);
            }
        }
        assert!(ev.profile.is_none());
    }
    (creates, deletes, live.len() as u64)
}

#[test]
fn bundled_part_matches_an_independent_count() {
    let part = bundled_part();
    let want = expected_from_raw(bundled_text());
    // Sanity of the independent reading itself (the part starts mid-trace).
    assert_eq!(want.rows, 77_776);
    assert_eq!(want.schedules, 26_231);
    assert!(want.unknown_delete > 0);

    let opts = ImportOptions::default();
    let (stats, text) = import(std::slice::from_ref(&part), &opts).unwrap();
    assert_eq!(stats.parts, 1);
    assert_eq!(stats.rows, want.rows);
    assert_eq!(stats.creates, want.creates);
    assert_eq!(stats.deletes, want.deletes);
    assert_eq!(stats.deletes_by_reason.total(), want.deletes);
    assert_eq!(stats.skipped_duplicate_schedule, want.duplicate_schedule);
    assert_eq!(stats.skipped_unknown_delete, want.unknown_delete);
    assert_eq!(
        stats.skipped_unknown_delete_by_reason.total(),
        want.unknown_delete
    );
    assert_eq!(stats.ignored_delete_not_running, want.not_running);
    assert_eq!(stats.still_alive_at_end, want.alive_at_end);
    assert_eq!(
        stats.creates + stats.skipped_duplicate_schedule,
        want.schedules
    );
    assert_eq!(
        stats.deletes + stats.skipped_unknown_delete + stats.ignored_delete_not_running,
        want.deletions
    );
    assert_eq!(stats.groups, want.users.len());
    assert_eq!(stats.groups_written, want.users.len());
    assert_eq!(stats.creates_at_start, 0);

    let events = reread(&text);
    assert_eq!(events.len() as u64, stats.creates + stats.deletes);
    let (creates, deletes, alive) = check_output(&events);
    assert_eq!(
        (creates, deletes, alive),
        (stats.creates, stats.deletes, stats.still_alive_at_end)
    );
    // The output has millisecond precision, the stats keep the microseconds.
    let near = |a: Option<f64>, b: f64| (a.unwrap() - b).abs() <= 0.0005;
    assert!(near(stats.first_time_s, events[0].time));
    assert!(near(stats.last_time_s, events.last().unwrap().time));
    let subs: HashSet<&str> = events.iter().map(|e| e.subdivision.as_str()).collect();
    assert_eq!(subs, want.users.iter().map(String::as_str).collect());
}

#[test]
fn bundled_part_grouped_by_machine_and_job() {
    let dir = tempfile::tempdir().unwrap();
    let (part, text) = bundled_slice(dir.path(), 20_000);
    let want = expected_from_raw(&text);
    assert_eq!(want.rows, 20_000);

    let opts = ImportOptions {
        group_by: GroupBy::Machine,
        ..ImportOptions::default()
    };
    let (stats, text) = import(std::slice::from_ref(&part), &opts).unwrap();
    let events = reread(&text);
    check_output(&events);
    for ev in events.iter().filter(|e| e.kind == EventKind::Create) {
        let machine = &want.machine_of[&ev.vm_id];
        assert_eq!(ev.subdivision, format!("machine-{machine}"), "{ev:?}");
    }
    let machines: HashSet<&String> = want.machine_of.values().collect();
    assert_eq!(stats.groups, machines.len());

    let opts = ImportOptions {
        group_by: GroupBy::Job,
        top: Some(5),
        ..ImportOptions::default()
    };
    let (stats, text) = import(std::slice::from_ref(&part), &opts).unwrap();
    let events = reread(&text);
    let (creates, deletes, alive) = check_output(&events);
    assert_eq!(
        (creates, deletes, alive),
        (stats.creates, stats.deletes, stats.still_alive_at_end)
    );
    assert_eq!(stats.groups_written, 5);
    let mut per_job: HashMap<&str, u64> = HashMap::new();
    for ev in &events {
        let job = ev.vm_id.split('-').next().unwrap();
        assert_eq!(ev.subdivision, format!("job-{job}"), "{ev:?}");
        if ev.kind == EventKind::Create {
            *per_job.entry(job).or_default() += 1;
        }
    }
    assert_eq!(per_job.len(), 5);
    // The 5 kept jobs have the most creates: count them independently.
    let mut all: HashMap<&str, u64> = HashMap::new();
    for vm in want.machine_of.keys() {
        *all.entry(vm.split('-').next().unwrap()).or_default() += 1;
    }
    let mut counts: Vec<u64> = all.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let mut kept: Vec<u64> = per_job.values().copied().collect();
    kept.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(kept, counts[..5]);
}

// ---- synthetic parts ----------------------------------------------------------------------------

fn raw(t_us: u64, job: u64, task: u64, machine: Option<u64>, event: u8, user: &str) -> String {
    let m = machine.map(|m| m.to_string()).unwrap_or_default();
    format!("{t_us},,{job},{task},{m},{event},{user},0,2,0.025,0.0796,0.0004,0")
}

fn write_part(dir: &Path, name: &str, rows: &[String]) -> PathBuf {
    let path = dir.join(name);
    let text = rows.join("\n") + "\n";
    if name.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
    } else {
        std::fs::write(&path, text).unwrap();
    }
    path
}

/// Two tasks of one job and two users, with every kind of row the importer distinguishes.
fn scenario() -> Vec<String> {
    vec![
        raw(0, 10, 0, Some(100), 0, "alice"), // 1 SUBMIT (present at start)
        raw(0, 10, 0, Some(100), 1, "alice"), // 2 SCHEDULE: create 10-0-0 at 0
        raw(0, 10, 1, None, 0, "alice"),      // 3 SUBMIT, pending
        raw(5_000_000, 10, 0, Some(100), 2, "alice"), // 4 EVICT: delete 10-0-0
        raw(5_000_000, 10, 1, Some(101), 1, "alice"), // 5 SCHEDULE: create 10-1-0
        raw(6_000_000, 10, 0, Some(200), 1, "alice"), // 6 SCHEDULE again: create 10-0-1
        raw(7_000_000, 10, 0, Some(200), 1, "alice"), // 7 duplicate SCHEDULE: skipped
        raw(8_000_000, 11, 3, Some(300), 4, "bob"), // 8 FINISH of an unknown task: skipped
        raw(9_000_000, 10, 0, Some(200), 8, "alice"), // 9 UPDATE_RUNNING: nothing
        raw(10_000_000, 12, 0, None, 0, "bob"), // 10 SUBMIT
        raw(11_000_000, 12, 0, None, 5, "bob"), // 11 KILL of a pending task: ignored
        raw(12_000_000, 12, 0, Some(300), 1, "bob"), // 12 SCHEDULE: create 12-0-0
        raw(13_500_000, 10, 0, Some(200), 4, "alice"), // 13 FINISH: delete 10-0-1
        raw(14_000_000, 12, 0, Some(300), 3, "bob"), // 14 FAIL: delete 12-0-0
        raw(15_000_000, 12, 0, Some(301), 1, "bob"), // 15 SCHEDULE: create 12-0-1
    ]
}

#[test]
fn synthetic_scenario_exact_output_per_grouping() {
    let dir = tempfile::tempdir().unwrap();
    let part = write_part(dir.path(), "part-00000-of-00500.csv.gz", &scenario());
    let rows = |subs: [&str; 5]| {
        format!(
            "time_s,subdivision,event,vm_id,profile\n\
             0.000,{0},create,10-0-0,\n\
             5.000,{0},delete,10-0-0,\n\
             5.000,{1},create,10-1-0,\n\
             6.000,{2},create,10-0-1,\n\
             12.000,{3},create,12-0-0,\n\
             13.500,{2},delete,10-0-1,\n\
             14.000,{3},delete,12-0-0,\n\
             15.000,{4},create,12-0-1,\n",
            subs[0], subs[1], subs[2], subs[3], subs[4]
        )
    };
    let cases = [
        (
            GroupBy::User,
            rows(["alice", "alice", "alice", "bob", "bob"]),
        ),
        (
            GroupBy::Job,
            rows(["job-10", "job-10", "job-10", "job-12", "job-12"]),
        ),
        (
            GroupBy::Machine,
            rows([
                "machine-100",
                "machine-101",
                "machine-200",
                "machine-300",
                "machine-301",
            ]),
        ),
    ];
    for (group_by, want) in cases {
        let opts = ImportOptions {
            group_by,
            ..ImportOptions::default()
        };
        let (stats, text) = import(std::slice::from_ref(&part), &opts).unwrap();
        assert_eq!(text, want, "group by {group_by}");
        assert_eq!(stats.rows, 15);
        assert_eq!((stats.creates, stats.deletes), (5, 3));
        assert_eq!(stats.deletes_by_reason.evict, 1);
        assert_eq!(stats.deletes_by_reason.finish, 1);
        assert_eq!(stats.deletes_by_reason.fail, 1);
        assert_eq!(stats.skipped_duplicate_schedule, 1);
        assert_eq!(stats.skipped_unknown_delete, 1);
        assert_eq!(stats.skipped_unknown_delete_by_reason.finish, 1);
        assert_eq!(stats.ignored_delete_not_running, 1);
        assert_eq!(stats.still_alive_at_end, 2);
        reread(&text);
    }
}

#[test]
fn window_turns_running_tasks_into_creates_at_the_start_and_stops_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let part = write_part(dir.path(), "p.csv", &scenario());
    let opts = ImportOptions {
        start_s: Some(5.5),
        end_s: Some(14.0),
        ..ImportOptions::default()
    };
    let (stats, text) = import(&[part], &opts).unwrap();
    // At 5.5 s 10-1-0 runs; rows from 14 s on are not read.
    assert_eq!(
        text,
        "time_s,subdivision,event,vm_id,profile\n\
         5.500,alice,create,10-1-0,\n\
         6.000,alice,create,10-0-1,\n\
         12.000,bob,create,12-0-0,\n\
         13.500,alice,delete,10-0-1,\n"
    );
    assert_eq!(stats.rows, 13);
    assert_eq!(stats.creates_at_start, 1);
    assert_eq!(
        (stats.creates, stats.deletes, stats.still_alive_at_end),
        (3, 1, 2)
    );
    reread(&text);

    // A start after every row: what runs at the end of the input is created at the start.
    let part = dir.path().join("p.csv");
    let opts = ImportOptions {
        start_s: Some(100.0),
        ..ImportOptions::default()
    };
    let (stats, text) = import(&[part], &opts).unwrap();
    assert_eq!(
        text,
        "time_s,subdivision,event,vm_id,profile\n\
         100.000,alice,create,10-1-0,\n\
         100.000,bob,create,12-0-1,\n"
    );
    assert_eq!((stats.creates_at_start, stats.still_alive_at_end), (2, 2));
}

#[test]
fn top_keeps_the_groups_with_most_creates() {
    let dir = tempfile::tempdir().unwrap();
    let mut rows = Vec::new();
    let mut t = 0;
    // carol 3 creates, bob 2, alice 2 (tie with bob: by name), dave 1.
    for (user, job, n) in [
        ("carol", 1, 3),
        ("bob", 2, 2),
        ("alice", 3, 2),
        ("dave", 4, 1),
    ] {
        for task in 0..n {
            t += 1_000;
            rows.push(raw(t, job, task, Some(7), 1, user));
        }
    }
    t += 1_000;
    rows.push(raw(t, 3, 0, Some(7), 5, "alice"));
    let part = write_part(dir.path(), "p.csv", &rows);
    let opts = ImportOptions {
        top: Some(2),
        ..ImportOptions::default()
    };
    let (stats, text) = import(&[part], &opts).unwrap();
    let events = reread(&text);
    let subs: HashSet<&str> = events.iter().map(|e| e.subdivision.as_str()).collect();
    assert_eq!(subs, HashSet::from(["carol", "alice"]));
    assert_eq!((stats.groups, stats.groups_written), (4, 2));
    assert_eq!(
        (stats.creates, stats.deletes, stats.still_alive_at_end),
        (5, 1, 4)
    );
}

#[test]
fn rows_after_the_trace_end_are_counted_and_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        raw(0, 1, 0, Some(1), 1, "u"),
        raw(TIMESTAMP_AFTER_TRACE, 1, 0, Some(1), 4, "u"),
    ];
    let part = write_part(dir.path(), "p.csv", &rows);
    let (stats, _) = import(&[part], &ImportOptions::default()).unwrap();
    assert_eq!((stats.rows, stats.rows_after_trace_end), (1, 1));
    assert_eq!((stats.deletes, stats.still_alive_at_end), (0, 1));
}

fn import_error(rows: &[String], name: &str) -> (TraceError, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let part = write_part(dir.path(), name, rows);
    let err = import(std::slice::from_ref(&part), &ImportOptions::default()).unwrap_err();
    (err, part)
}

#[test]
fn malformed_rows_name_file_line_column_and_value() {
    let good = raw(0, 1, 0, Some(1), 1, "u");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            "0,,1,0,1,1,u,0,2,0.1,0.1,0.1".into(),
            "expected 13 fields, found 12",
            "",
        ),
        (format!("{good},extra"), "expected 13 fields, found 14", ""),
        (String::new(), "expected 13 fields, found 1", ""),
        ("0,,x12,0,1,1,u,0,2,0.1,0.1,0.1,0".into(), "`x12`", "job_id"),
        ("0,,1,0,1,9,u,0,2,0.1,0.1,0.1,0".into(), "`9`", "event_type"),
        (",,1,0,1,1,u,0,2,0.1,0.1,0.1,0".into(), "empty", "timestamp"),
        (
            "-5,,1,0,1,1,u,0,2,0.1,0.1,0.1,0".into(),
            "`-5`",
            "timestamp",
        ),
        (
            "0,,1,0,1,1,u,0,2,0.1,abc,0.1,0".into(),
            "`abc`",
            "memory_request",
        ),
        (
            "0,,1,0,1,1,u,zero,2,0.1,0.1,0.1,0".into(),
            "`zero`",
            "scheduling_class",
        ),
        ("0,,1,0,1,1,,0,2,0.1,0.1,0.1,0".into(), "empty", "user"),
    ];
    for (bad, snippet, column) in cases {
        for name in ["part.csv", "part.csv.gz"] {
            let rows = vec![good.clone(), good.replace(",1,u,", ",0,u,"), bad.clone()];
            let (err, part) = import_error(&rows, name);
            assert_eq!(err.line(), Some(3), "{err}");
            let msg = err.to_string();
            assert!(msg.starts_with(&format!("{}:3:", part.display())), "{msg}");
            assert!(msg.contains(snippet), "`{snippet}` not in {msg}");
            if column.is_empty() {
                assert!(matches!(err, TraceError::FieldCount { .. }), "{err:?}");
            } else {
                assert!(msg.contains(&format!("field `{column}`")), "{msg}");
            }
        }
    }
}

#[test]
fn machine_grouping_needs_the_machine_of_a_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let part = write_part(dir.path(), "p.csv", &[raw(0, 1, 0, None, 1, "u")]);
    let opts = ImportOptions {
        group_by: GroupBy::Machine,
        ..ImportOptions::default()
    };
    let err = import(std::slice::from_ref(&part), &opts).unwrap_err();
    assert!(err.to_string().contains("field `machine_id`"), "{err}");
    // Other groupings do not need it.
    assert!(import(&[part], &ImportOptions::default()).is_ok());
}

#[test]
fn time_going_backwards_within_and_across_parts() {
    let dir = tempfile::tempdir().unwrap();
    let a = write_part(
        dir.path(),
        "a.csv",
        &[
            raw(0, 1, 0, Some(1), 1, "u"),
            raw(9_000_000, 1, 1, Some(1), 1, "u"),
        ],
    );
    let b = write_part(
        dir.path(),
        "b.csv",
        &[raw(8_000_000, 1, 0, Some(1), 4, "u")],
    );
    let err = import(&[a.clone(), b.clone()], &ImportOptions::default()).unwrap_err();
    match &err {
        TraceError::TimeBackwards {
            file,
            line,
            previous,
            previous_at,
            current,
            ..
        } => {
            assert_eq!(file, &b.display().to_string());
            assert_eq!(*line, 1);
            assert_eq!(
                (previous.as_str(), current.as_str()),
                ("9000000", "8000000")
            );
            assert_eq!(previous_at, &format!("{}:2", a.display()));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("field `timestamp`"), "{err}");
    // Parts in the wrong order are the same error.
    assert!(import(&[b, a], &ImportOptions::default()).is_err());
}

#[test]
fn group_by_parses_and_lists_the_accepted_values() {
    assert_eq!("user".parse::<GroupBy>().unwrap(), GroupBy::User);
    assert_eq!("job".parse::<GroupBy>().unwrap(), GroupBy::Job);
    assert_eq!("machine".parse::<GroupBy>().unwrap(), GroupBy::Machine);
    for g in GroupBy::ALL {
        assert_eq!(g.to_string().parse::<GroupBy>().unwrap(), g);
    }
    let err = "host".parse::<GroupBy>().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("`host`") && msg.contains("user, job, machine"),
        "{msg}"
    );
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let part = write_part(dir.path(), "p.csv", &[raw(0, 1, 0, Some(1), 1, "u")]);
    let bad = [
        ImportOptions {
            top: Some(0),
            ..ImportOptions::default()
        },
        ImportOptions {
            start_s: Some(10.0),
            end_s: Some(10.0),
            ..ImportOptions::default()
        },
        ImportOptions {
            start_s: Some(-1.0),
            ..ImportOptions::default()
        },
        ImportOptions {
            end_s: Some(f64::NAN),
            ..ImportOptions::default()
        },
    ];
    for opts in bad {
        let err = import(std::slice::from_ref(&part), &opts).unwrap_err();
        assert!(matches!(err, TraceError::InvalidOption { .. }), "{err:?}");
    }
    let none: [PathBuf; 0] = [];
    assert!(import(&none, &ImportOptions::default()).is_err());
    let err = import(
        &[dir.path().join("missing.csv.gz")],
        &ImportOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("missing.csv.gz"), "{err}");
}
