//! Crash test of the redb backend: a child process commits batches in a loop and acknowledges each
//! one on stdout once `commit` returned `Ok`; the parent SIGKILLs it at some point, reopens the
//! directory and checks that every acknowledged batch is there, whole.
//!
//! The child is this test binary re-executed on the ignored test `crash_child`, with the store
//! directory in `CIDRCAST_STORE_CRASH_DIR`.
//!
//! SIGKILL tests process crashes (what the kernel already holds survives); power loss additionally
//! relies on redb's fsync (`Durability::Immediate`, the default we keep) and on the disk honouring it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cidrcast_core::model::Change;
use cidrcast_store::conformance::{event, lease, vm_id};
use cidrcast_store::{RedbOptions, RedbStore, Store, StoreError};

const DIR_ENV: &str = "CIDRCAST_STORE_CRASH_DIR";
const QUICK_REPAIR_ENV: &str = "CIDRCAST_STORE_CRASH_QUICK_REPAIR";

fn options(quick_repair: bool) -> RedbOptions {
    RedbOptions {
        quick_repair,
        ..RedbOptions::default()
    }
}

/// The child: commits `PutLease(i) + Event(i)` for i = 0, 1, 2, ... (continuing after what the
/// store already holds) and prints `ack i` after each successful commit, until killed.
#[test]
#[ignore = "child process of redb_acknowledged_commits_survive_sigkill"]
fn crash_child() {
    let Some(dir) = std::env::var_os(DIR_ENV) else {
        return;
    };
    let quick = std::env::var_os(QUICK_REPAIR_ENV).is_some();
    let store = RedbStore::open_with(Path::new(&dir), options(quick)).expect("child: open");
    let start = store.counts().expect("child: counts").leases;
    let stdout = std::io::stdout();
    for id in start.. {
        store
            .commit(&[Change::PutLease(lease(id)), Change::Event(event(id))])
            .expect("child: commit");
        let mut out = stdout.lock();
        writeln!(out, "ack {id}").expect("child: write ack");
        out.flush().expect("child: flush ack");
    }
}

/// Spawns the child on `dir`, reads acks until `kill_after` of them, SIGKILLs it, and returns the
/// highest acknowledged id (acks already in the pipe when it died count too).
fn run_child_until(dir: &Path, kill_after: usize, quick: bool) -> Option<u64> {
    let exe = std::env::current_exe().expect("current exe");
    let mut command = Command::new(exe);
    command
        .args([
            "crash_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if quick {
        command.env(QUICK_REPAIR_ENV, "1");
    }
    let mut child = command.spawn().expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut last_ack = None;
    let mut acks = 0;
    let mut check_lock = true;
    while acks < kill_after {
        let Some(line) = lines.next() else { break };
        let line = line.expect("read child stdout");
        if let Some(id) = line.strip_prefix("ack ") {
            last_ack = Some(id.parse::<u64>().expect("ack id"));
            acks += 1;
            if check_lock {
                // While the child holds the store, another process cannot open it.
                check_lock = false;
                let err = RedbStore::open(dir).expect_err("the child holds the lock");
                assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
                assert!(
                    err.to_string().contains(&dir.display().to_string()),
                    "{err}"
                );
            }
        }
    }
    if acks < kill_after {
        let output = child.wait_with_output().expect("wait child");
        panic!(
            "child exited after {acks} acks ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    child.kill().expect("SIGKILL child");
    let status = child.wait().expect("wait child");
    assert!(!status.success(), "child was killed");
    // Acks the child wrote before it died are acknowledged too.
    for line in lines {
        let line = line.expect("read child stdout");
        if let Some(id) = line.strip_prefix("ack ") {
            last_ack = Some(id.parse::<u64>().expect("ack id"));
        }
    }
    last_ack
}

/// Every acknowledged lease is present, leases are exactly 0..n (no partial or lost batch in the
/// middle), and every lease has its event with the matching seq.
fn verify(store: &RedbStore, last_ack: u64) -> u64 {
    let leases = store.load().expect("load").leases;
    let n = leases.len() as u64;
    assert!(
        n > last_ack,
        "acknowledged lease {last_ack} lost: only {n} leases after the crash"
    );
    let mut ids: Vec<String> = leases.into_iter().map(|l| l.vm_id).collect();
    ids.sort();
    assert_eq!(ids, (0..n).map(vm_id).collect::<Vec<_>>(), "leases 0..{n}");
    let events = store.events(0, usize::MAX).expect("events");
    assert_eq!(
        events.len() as u64,
        n,
        "one event per lease (batches are whole)"
    );
    for (i, (seq, e)) in events.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1);
        assert_eq!(e, &event(i as u64));
    }
    let counts = store.counts().expect("counts");
    assert_eq!((counts.leases, counts.events), (n, n));
    n
}

#[test]
fn redb_acknowledged_commits_survive_sigkill() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let mut total = 0;
    // Kill at different points; the rounds continue on the same (crashed, recovered) directory.
    for (round, (kill_after, quick)) in [
        (1, false),
        (200, false),
        (37, false),
        (120, true),
        (260, false),
    ]
    .into_iter()
    .enumerate()
    {
        let last_ack = run_child_until(&dir, kill_after, quick).expect("at least one ack");
        let store = RedbStore::open_with(&dir, options(quick)).expect("reopen after SIGKILL");
        // A killed writer leaves a database that needs redb's full repair, unless its last commit
        // was made with quick repair (which records the allocator state, so there is none).
        assert_eq!(
            store.recovered(),
            !quick,
            "round {round}: repair after SIGKILL (quick repair {quick})"
        );
        let n = verify(&store, last_ack);
        assert!(n >= total + kill_after as u64, "round {round}: progress");
        total = n;
        drop(store);
        // A clean close needs no repair.
        let store = RedbStore::open(&dir).expect("reopen after clean close");
        assert!(!store.recovered(), "round {round}: clean close");
        assert_eq!(verify(&store, last_ack), n);
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "crash test took {:?}",
        started.elapsed()
    );
}
