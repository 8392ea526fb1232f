//! The engine over real stores: group commit under concurrency, failed commits, reopen.

use std::sync::Arc;

use cidrcast_core::model::{PoolSpec, SubdivisionSpec};
use cidrcast_core::Settings;
use cidrcast_engine::{Engine, EngineError};
use cidrcast_store::{MemoryStore, RedbStore, Store};

fn pool() -> PoolSpec {
    PoolSpec::new("v4", "10.0.0.0/16".parse().unwrap(), 26)
}

fn sub(name: &str) -> SubdivisionSpec {
    SubdivisionSpec::new(name)
}

#[test]
fn concurrent_allocations_share_commits_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap());
    engine
        .ensure_config(&[pool()], &[sub("a"), sub("b")])
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| {
                        let vm = format!("t{t}-{i}");
                        let s = if t % 2 == 0 { "a" } else { "b" };
                        let a = engine
                            .execute(|ipam, now| ipam.allocate(s, &vm, None, None, now))
                            .unwrap();
                        (vm, a.address)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let acked: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(acked.len(), 800);
    let commits = engine.commits();
    assert!(commits <= 801, "{commits} commits for 800 allocations");
    let mut addrs: Vec<_> = acked.iter().map(|(_, a)| *a).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 800, "an address was handed out twice");
    drop(engine);
    let reopened = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    reopened
        .read(|ipam| {
            ipam.check_invariants().unwrap();
            for (vm, addr) in &acked {
                assert_eq!(ipam.lease(vm).map(|l| l.address), Some(*addr), "{vm} lost");
            }
        })
        .unwrap();
    assert_eq!(reopened.store().counts().unwrap().events, 800);
}

#[test]
fn a_failed_commit_fails_the_operation_and_leaves_nothing() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(store.clone(), Settings::default()).unwrap();
    engine.ensure_config(&[pool()], &[sub("a")]).unwrap();
    engine
        .execute(|ipam, now| ipam.allocate("a", "vm-1", None, None, now))
        .unwrap();
    let before = store.load().unwrap();
    store.fail_next_commits(1);
    let err = engine
        .execute(|ipam, now| ipam.allocate("a", "vm-2", None, None, now))
        .unwrap_err();
    assert!(matches!(err, EngineError::CommitFailed(_)), "{err}");
    assert_eq!(store.load().unwrap(), before);
    // Memory was rebuilt from the store: vm-2 is not there, and it allocates fine now.
    assert!(engine.read(|ipam| ipam.lease("vm-2")).unwrap().is_none());
    let again = engine
        .execute(|ipam, now| ipam.allocate("a", "vm-2", None, None, now))
        .unwrap();
    assert_eq!(again.address.to_string(), "10.0.0.1");
}

#[test]
fn refused_operations_and_config_changes_leave_the_store_as_it_was() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(store.clone(), Settings::default()).unwrap();
    engine.ensure_config(&[pool()], &[sub("a")]).unwrap();
    let before = store.load().unwrap();
    let err = engine
        .execute(|ipam, now| ipam.allocate("nowhere", "vm-1", None, None, now))
        .unwrap_err();
    assert_eq!(err.to_string(), "unknown subdivision `nowhere`");
    // A config whose second subdivision is invalid adds nothing at all.
    let mut bad = sub("c");
    bad.parent = Some("missing".into());
    let err = engine.ensure_config(&[], &[sub("b"), bad]).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown parent subdivision `missing`"),
        "{err}"
    );
    let mut changed = pool();
    changed.shard_prefix_len = 24;
    let err = engine.ensure_config(&[changed], &[]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("pool `v4` in the configuration differs"),
        "{err}"
    );
    assert_eq!(store.load().unwrap(), before);
}

#[test]
fn config_changes_do_not_move_the_clock_of_trace_time_replays() {
    // Adding pools and subdivisions happens at no time: a replay in trace time (seconds since the
    // trace start) must still see its cooldowns expire.
    let engine = Engine::open(MemoryStore::new(), Settings::default()).unwrap();
    engine.ensure_config(&[pool()], &[sub("a")]).unwrap();
    let x = engine
        .execute_at(100.0, |ipam, now| ipam.allocate("a", "x", None, None, now))
        .unwrap()
        .address;
    engine
        .execute_at(110.0, |ipam, now| ipam.release("x", now))
        .unwrap();
    let y = engine
        .execute_at(141.0, |ipam, now| ipam.allocate("a", "y", None, None, now))
        .unwrap()
        .address;
    assert_eq!(x, y, "the cooldown did not end 30 s after the release");
}

#[test]
fn submitted_changes_become_durable_through_the_committer() {
    let dir = tempfile::tempdir().unwrap();
    let engine =
        Arc::new(Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap());
    engine.ensure_config(&[pool()], &[sub("a")]).unwrap();
    let (result, ticket) = engine
        .submit_at(100.0, |ipam, now| {
            ipam.allocate("a", "vm-1", None, None, now)
        })
        .unwrap();
    let address = result.unwrap().address;
    // Nobody has committed yet: not durable, not in the store.
    assert!(engine.ticket_status(ticket).is_none());
    assert_eq!(engine.store().counts().unwrap().leases, 0);
    let woken = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let woken = woken.clone();
        engine.set_on_commit(Box::new(move || {
            woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committer = {
        let (engine, stop) = (engine.clone(), stop.clone());
        std::thread::spawn(move || engine.run_committer(&stop))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while engine.ticket_status(ticket).is_none() {
        assert!(std::time::Instant::now() < deadline, "never committed");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    assert!(engine.ticket_status(ticket).unwrap().is_ok());
    assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    // A refusal changes nothing but still waits for what it saw.
    let (refused, t2) = engine
        .submit_at(101.0, |ipam, now| {
            ipam.allocate("nowhere", "vm-2", None, None, now)
        })
        .unwrap();
    assert!(refused.is_err());
    assert!(engine.ticket_status(t2).unwrap().is_ok());
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    committer.join().unwrap();
    drop(engine);
    let reopened = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(
        reopened
            .read(|ipam| ipam.lease("vm-1").map(|l| l.address))
            .unwrap(),
        Some(address)
    );
}

#[test]
fn a_failed_commit_fails_the_submitted_tickets() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(store.clone(), Settings::default()).unwrap();
    engine.ensure_config(&[pool()], &[sub("a")]).unwrap();
    let before = store.load().unwrap();
    let (r1, t1) = engine
        .submit_at(1.0, |ipam, now| ipam.allocate("a", "vm-1", None, None, now))
        .unwrap();
    let (r2, t2) = engine
        .submit_at(2.0, |ipam, now| ipam.allocate("a", "vm-2", None, None, now))
        .unwrap();
    assert!(r1.is_ok() && r2.is_ok());
    store.fail_next_commits(1);
    // A synchronous read commits what is pending (and it fails).
    let _ = engine.read(|_| ());
    for t in [t1, t2] {
        let status = engine.ticket_status(t).expect("decided");
        assert!(
            matches!(status, Err(EngineError::CommitFailed(_))),
            "{status:?}"
        );
    }
    assert_eq!(store.load().unwrap(), before);
    assert!(engine.read(|ipam| ipam.lease("vm-1")).unwrap().is_none());
}
