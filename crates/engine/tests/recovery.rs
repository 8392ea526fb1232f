//! An engine whose store goes away and comes back (an etcd cluster losing its quorum): while the
//! store is down operations are refused, nothing acknowledged is lost, and the engine serves
//! again once the store is back, without a restart. And `Engine::reload` shows what another
//! writer of a shared store committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cidrcast_core::model::{
    Change, ExternalEventSpec, PoolSpec, Profile, RouterSpec, Snapshot, SubdivisionSpec,
    Transition, VmEvent,
};
use cidrcast_core::Settings;
use cidrcast_engine::{Engine, EngineError, RECOVERY_INTERVAL};
use cidrcast_store::{MemoryStore, Store, StoreCounts, StoreError};

/// A memory store that can be taken down: then every call fails.
#[derive(Clone)]
struct Flaky {
    inner: Arc<MemoryStore>,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable {
                endpoints: vec!["flaky".into()],
                reason: "down for the test".into(),
            })
        } else {
            Ok(())
        }
    }
}

impl Store for Flaky {
    fn load(&self) -> Result<Snapshot, StoreError> {
        self.check()?;
        self.inner.load()
    }
    fn commit(&self, batch: &[Change]) -> Result<(), StoreError> {
        self.check()?;
        // A commit takes a while, as over a network: reloads and commits overlap.
        std::thread::sleep(Duration::from_micros(300));
        self.inner.commit(batch)
    }
    fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError> {
        self.check()?;
        self.inner.events(after, limit)
    }
    fn transitions(&self, after: u64, limit: usize) -> Result<Vec<(u64, Transition)>, StoreError> {
        self.check()?;
        self.inner.transitions(after, limit)
    }
    fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.check()?;
        self.inner.counts()
    }
    fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError> {
        self.check()?;
        self.inner.external_events()
    }
    fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.check()?;
        self.inner.profiles()
    }
    fn routers(&self) -> Result<Vec<RouterSpec>, StoreError> {
        self.check()?;
        self.inner.routers()
    }
}

fn engine(store: &Flaky) -> Engine<Flaky> {
    let e = Engine::open(store.clone(), Settings::default()).unwrap();
    e.ensure_config(
        &[PoolSpec::new("v4", "10.0.0.0/16".parse().unwrap(), 26)],
        &[SubdivisionSpec::new("a")],
    )
    .unwrap();
    e
}

fn allocate(e: &Engine<Flaky>, vm: &str) -> Result<std::net::IpAddr, EngineError> {
    e.execute(|ipam, now| ipam.allocate("a", vm, None, None, now))
        .map(|a| a.address)
}

#[test]
fn an_engine_refuses_while_its_store_is_down_and_recovers_when_it_returns() {
    let store = Flaky {
        inner: Arc::new(MemoryStore::new()),
        down: Arc::new(AtomicBool::new(false)),
    };
    let e = engine(&store);
    let first = allocate(&e, "vm-1").unwrap();

    store.down.store(true, Ordering::SeqCst);
    let err = allocate(&e, "vm-2").unwrap_err();
    assert!(matches!(err, EngineError::CommitFailed(_)), "{err:?}");
    // The reload after the failed commit failed too: refused, naming the store.
    let err = allocate(&e, "vm-3").unwrap_err();
    assert!(matches!(err, EngineError::Unavailable(_)), "{err:?}");
    assert!(e.read(|ipam| ipam.lease_count()).is_err());

    store.down.store(false, Ordering::SeqCst);
    // The next reload is tried at most every RECOVERY_INTERVAL.
    let start = Instant::now();
    let served = loop {
        match allocate(&e, "vm-4") {
            Ok(a) => break a,
            Err(EngineError::Unavailable(_)) if start.elapsed() < RECOVERY_INTERVAL * 3 => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(other) => panic!("not recovered: {other:?}"),
        }
    };
    assert_ne!(served, first);
    // What was acknowledged is there; what was refused is not.
    let leases: Vec<String> = e
        .read(|ipam| ipam.leases(None).unwrap())
        .unwrap()
        .into_iter()
        .map(|l| l.vm_id)
        .collect();
    assert_eq!(leases, ["vm-1", "vm-4"]);
}

/// A flaky store, an engine over it, and a committer thread running until `stop` is set.
fn with_committer() -> (
    Flaky,
    Arc<Engine<Flaky>>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<()>,
) {
    let store = Flaky {
        inner: Arc::new(MemoryStore::new()),
        down: Arc::new(AtomicBool::new(false)),
    };
    let e = Arc::new(engine(&store));
    let stop = Arc::new(AtomicBool::new(false));
    let committer = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || e.run_committer(&stop))
    };
    (store, e, stop, committer)
}

#[test]
fn the_committer_thread_survives_an_outage() {
    let (store, e, stop, committer) = with_committer();
    let submit = |vm: &str| {
        let (r, ticket) = e.submit_at(cidrcast_engine::unix_now(), |ipam, now| {
            ipam.allocate("a", vm, None, None, now)
        })?;
        r?;
        let start = Instant::now();
        loop {
            if let Some(outcome) = e.ticket_status(ticket) {
                return outcome;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "never decided");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    submit("vm-1").unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(submit("vm-2").is_err());
    store.down.store(false, Ordering::SeqCst);
    // The committer keeps running and recovers the engine: submissions are durable again.
    let start = Instant::now();
    loop {
        match submit("vm-3") {
            Ok(()) => break,
            Err(EngineError::Unavailable(_)) if start.elapsed() < RECOVERY_INTERVAL * 3 => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(other) => panic!("not recovered: {other:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    committer.join().unwrap();
    assert_eq!(store.inner.counts().unwrap().leases, 2);
}

#[test]
fn reload_commits_what_is_pending_then_shows_what_another_writer_committed() {
    let shared = Arc::new(MemoryStore::new());
    let mk = || Flaky {
        inner: shared.clone(),
        down: Arc::new(AtomicBool::new(false)),
    };
    let a = engine(&mk());
    // Another writer, in a pool and subdivision of its own (a MemoryStore has no
    // compare-and-swap, so the two must not place shards in the same space).
    let b = Engine::open(mk(), Settings::default()).unwrap();
    b.ensure_config(
        &[
            PoolSpec::new("v4", "10.0.0.0/16".parse().unwrap(), 26),
            PoolSpec::new("v6", "fd00::/48".parse().unwrap(), 64),
        ],
        &[SubdivisionSpec::new("a"), {
            let mut s = SubdivisionSpec::new("b");
            s.pools = vec!["v6".to_string()];
            s
        }],
    )
    .unwrap();
    a.reload().unwrap();
    b.execute(|ipam, now| ipam.allocate("b", "vm-from-b", None, None, now))
        .unwrap();
    assert!(
        a.read(|ipam| ipam.lease("vm-from-b")).unwrap().is_none(),
        "a's view is stale"
    );
    // a applies an allocation in memory, not yet committed (no committer runs).
    let (r, ticket) = a
        .submit_at(cidrcast_engine::unix_now(), |ipam, now| {
            ipam.allocate("a", "vm-from-a", None, None, now)
        })
        .unwrap();
    r.unwrap();
    assert!(a.ticket_status(ticket).is_none(), "pending");
    assert!(!a.reload_if_idle().unwrap(), "busy: not even read");

    assert!(a.reload_now(Duration::ZERO).unwrap());
    a.ticket_status(ticket)
        .expect("committed by the reload")
        .unwrap();
    for vm in ["vm-from-a", "vm-from-b"] {
        assert!(a.read(|ipam| ipam.lease(vm)).unwrap().is_some(), "{vm}");
    }
    assert_eq!(shared.counts().unwrap().leases, 2);
    // At most once per interval.
    assert!(!a.reload_now(Duration::from_secs(3600)).unwrap());
    assert!(a.reload_if_idle().unwrap());
}

#[test]
fn reload_under_load_holds_operations_back_and_loses_nothing() {
    // Reloads racing group commits: what is being committed, or applied but not yet committed,
    // must neither vanish from the state nor differ from the store afterwards; and every reload
    // installs what it read (operations wait meanwhile).
    let (store, e, stop, committer) = with_committer();
    let reloader = {
        let (e, stop) = (e.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                e.reload().unwrap();
                n += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            n
        })
    };
    let held_back = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|t| {
            let (e, held_back) = (e.clone(), held_back.clone());
            std::thread::spawn(move || {
                for i in 0..300 {
                    let vm = format!("t{t}-{i}");
                    let ticket = loop {
                        match e.submit_at(cidrcast_engine::unix_now(), |ipam, now| {
                            ipam.allocate("a", &vm, None, None, now)
                        }) {
                            Ok((r, ticket)) => {
                                r.unwrap();
                                break ticket;
                            }
                            Err(EngineError::Reloading) => {
                                held_back.fetch_add(1, Ordering::SeqCst);
                                std::thread::yield_now();
                            }
                            Err(other) => panic!("{other}"),
                        }
                    };
                    while e.ticket_status(ticket).is_none() {
                        std::thread::yield_now();
                    }
                    e.ticket_status(ticket).unwrap().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::SeqCst);
    let reloads = reloader.join().unwrap();
    committer.join().unwrap();
    assert!(reloads > 0, "no reload ran ({reloads})");
    assert!(
        held_back.load(Ordering::SeqCst) > 0,
        "no operation met a reload under way"
    );
    assert_eq!(store.inner.counts().unwrap().leases, 1200);
    assert_eq!(e.read(|ipam| ipam.lease_count()).unwrap(), 1200);
}

#[test]
fn a_failed_reload_refuses_until_a_reload_succeeds() {
    // A shared store may take part of a failed read as its view: the engine must not go on
    // deciding on its older state, so it refuses until a whole reload succeeds.
    let store = Flaky {
        inner: Arc::new(MemoryStore::new()),
        down: Arc::new(AtomicBool::new(false)),
    };
    let e = engine(&store);
    allocate(&e, "vm-1").unwrap();
    store.down.store(true, Ordering::SeqCst);
    assert!(matches!(e.reload(), Err(EngineError::Unavailable(_))));
    store.down.store(false, Ordering::SeqCst);
    assert!(
        matches!(allocate(&e, "vm-2"), Err(EngineError::Unavailable(_))),
        "refused until the recovery reload"
    );
    std::thread::sleep(RECOVERY_INTERVAL + Duration::from_millis(50));
    allocate(&e, "vm-2").unwrap();
    assert_eq!(store.inner.counts().unwrap().leases, 2);
}
