//! cidrcast engine: the allocator ([`cidrcast_core::Ipam`]) over a durable [`Store`], with group
//! commit.
//!
//! Every operation runs against the in-memory state under one lock; the records it changed are
//! appended to a pending batch, and the caller waits until a batch holding them is committed. The
//! first waiter that finds no commit under way becomes the leader: it takes everything pending,
//! commits it in one store transaction (one fsync), and wakes the others. So concurrent callers
//! share fsyncs, and nothing is acknowledged before it is on disk.
//!
//! Reads wait too, for every change they could have observed, so no caller ever sees a change
//! that is not yet durable. When a commit fails, every operation of that batch and every later
//! pending one fails, and the in-memory state is rebuilt from the store: a failed operation leaves
//! nothing behind.
//!
//! Scheduled external events ([`ExternalEventSpec`]), application profiles ([`Profile`]) and
//! routers ([`RouterSpec`]), the catalog, are not allocator state: the engine keeps them beside
//! the allocator and commits their changes ([`Engine::put_event`], [`Engine::delete_event`],
//! [`Engine::ensure_events`], and the same for profiles and routers) through the same group
//! commit.

pub mod reconcile;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cidrcast_core::model::{
    Change, ExternalEventSpec, PoolSpec, Profile, RouterSpec, SubdivisionSpec, Time, VmEvent,
};
use cidrcast_core::{CoreError, Ipam, Settings, MAX_PROFILES};
use cidrcast_store::{Store, StoreError};

/// What went wrong in an engine operation.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The operation itself was refused; nothing changed.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// The store failed; the operation was not applied.
    #[error("the store failed; the operation was not applied")]
    Store(#[source] StoreError),
    /// A commit this operation depended on failed; it was not applied.
    #[error("a commit failed ({0}); the operation was not applied")]
    CommitFailed(String),
    /// Another writer of a shared store (another daemon on the same etcd cluster) changed what
    /// the commit this operation depended on had read; it was not applied, the state was reloaded
    /// from the store, and the operation may be retried.
    #[error(
        "another writer changed what this operation depended on ({0}); it was not applied, retry"
    )]
    Conflict(String),
    /// [`Engine::reload`] is replacing the state: the operation was not applied; retry in a
    /// moment (the reload takes one read of the store).
    #[error("this daemon is reloading its view of the shared store; retry in a moment")]
    Reloading,
    /// The in-memory state could not be rebuilt from the store after a failed commit (the store
    /// is unreachable): operations are refused until a reload succeeds, which is tried again at
    /// most every [`RECOVERY_INTERVAL`].
    #[error("the store is unavailable (a commit failed and the state could not be reloaded): {0}")]
    Unavailable(String),
    /// A pool or subdivision of the configuration differs from the stored one.
    #[error("{kind} `{name}` in the configuration differs from the stored one ({differences}); change it through the CLI or API, or fix the configuration")]
    ConfigMismatch {
        kind: &'static str,
        name: String,
        /// `field: stored X, configured Y` for each differing field.
        differences: String,
    },
}

/// How often a broken engine (its store unreachable) tries to reload its state.
pub const RECOVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most scheduled external events the engine keeps.
pub const MAX_EXTERNAL_EVENTS: usize = 10_000;

/// Most routers the engine keeps. (Profiles are limited to [`MAX_PROFILES`], the number of
/// distinct profile names the allocator records in leases.)
pub const MAX_ROUTERS: usize = 10_000;

struct State {
    ipam: Ipam,
    /// Scheduled external events, profiles and routers, as committed or pending.
    catalog: Catalog,
    pending: Vec<Change>,
    /// Sequence number of the last operation whose changes are pending or committed.
    appended: u64,
    /// Operations up to this one are durable.
    durable: u64,
    /// Incremented by every failed commit (after which the state is rebuilt from the store).
    epoch: usize,
    /// For each past epoch, the last operation of it that was durable: the later ones failed.
    epoch_durable: Vec<u64>,
    last_failure: String,
    /// Whether the last failed commit was a conflict with another writer ([`EngineError::Conflict`]).
    last_failure_conflict: bool,
    committing: bool,
    /// A [`Engine::reload`] is under way: [`Engine::submit_at`] refuses (retry), synchronous
    /// callers wait.
    gated: bool,
    /// When the last [`Engine::reload_now`] ran.
    last_forced_reload: Option<std::time::Instant>,
    broken: Option<String>,
    /// When the last reload of a broken engine was tried.
    last_recovery: Option<std::time::Instant>,
    /// Kept across reloads: see [`Engine::set_shared`].
    local: Local,
    commits: u64,
}

impl State {
    /// The ticket covering every operation queued so far.
    fn ticket(&self) -> Ticket {
        Ticket {
            seq: self.appended,
            epoch: self.epoch,
        }
    }

    /// Queues `changes` as one operation (nothing when there are none); returns the ticket that
    /// covers it and everything before it.
    fn queue(&mut self, changes: impl IntoIterator<Item = Change>) -> Ticket {
        let before = self.pending.len();
        self.pending.extend(changes);
        if self.pending.len() > before {
            self.appended += 1;
        }
        self.ticket()
    }

    /// Runs `op` on the allocator at `now` (expired cooldowns end first; `None`: no time passes)
    /// and queues what it journaled.
    fn apply<T>(
        &mut self,
        now: Option<Time>,
        op: impl FnOnce(&mut Ipam) -> Result<T, CoreError>,
    ) -> (Result<T, CoreError>, Ticket) {
        if let Some(now) = now {
            self.ipam.expire(now);
        }
        let result = op(&mut self.ipam);
        let journal = self.ipam.take_journal();
        (result, self.queue(journal))
    }

    /// `None` while `ticket` is undecided; then `Ok` once it is durable, or the failure of the
    /// commit that dropped it. After a failed commit, the state was rebuilt from the store:
    /// durable up to `epoch_durable[epoch]`, the rest failed; a read (`read_only`) is decided
    /// then, since what it reads now is durable.
    fn outcome(&self, ticket: Ticket, read_only: bool) -> Option<Result<(), EngineError>> {
        if self.epoch > ticket.epoch {
            return Some(
                if read_only || ticket.seq <= self.epoch_durable[ticket.epoch] {
                    Ok(())
                } else {
                    Err(if self.last_failure_conflict {
                        EngineError::Conflict(self.last_failure.clone())
                    } else {
                        EngineError::CommitFailed(self.last_failure.clone())
                    })
                },
            );
        }
        if self.durable >= ticket.seq {
            return Some(Ok(()));
        }
        self.broken
            .as_ref()
            .map(|why| Err(EngineError::Unavailable(why.clone())))
    }
}

/// What is particular to this daemon among several sharing a store ([`Engine::set_shared`]);
/// not persisted, applied to every state loaded.
#[derive(Clone, Debug, Default)]
struct Local {
    hint: u64,
    node: Option<String>,
}

impl Local {
    fn apply(&self, ipam: &mut Ipam) {
        ipam.set_address_hint(self.hint);
        ipam.set_node(self.node.as_deref());
    }
}

/// What an [`Engine::submit_at`] caller waits for: its changes (and what it saw) being durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    seq: u64,
    epoch: usize,
}

/// The durable allocator. `Sync`: share it between threads (e.g. in an `Arc`).
pub struct Engine<S: Store> {
    store: S,
    state: Mutex<State>,
    done: Condvar,
    /// Wakes [`Engine::run_committer`] when changes are pending.
    work: Condvar,
    /// Called after every commit (successful or not), e.g. to wake asynchronous waiters.
    on_commit: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl<S: Store> Engine<S> {
    /// Loads the stored state (recovering what was acknowledged before a crash).
    pub fn open(store: S, settings: Settings) -> Result<Self, EngineError> {
        let snap = store.load().map_err(EngineError::Store)?;
        let ipam = Ipam::from_snapshot(settings, &snap)?;
        let catalog = Catalog::load(&store).map_err(EngineError::Store)?;
        Ok(Engine {
            store,
            state: Mutex::new(State {
                ipam,
                catalog,
                pending: Vec::new(),
                appended: 0,
                durable: 0,
                epoch: 0,
                epoch_durable: Vec::new(),
                last_failure: String::new(),
                last_failure_conflict: false,
                committing: false,
                gated: false,
                last_forced_reload: None,
                broken: None,
                last_recovery: None,
                local: Local::default(),
                commits: 0,
            }),
            done: Condvar::new(),
            work: Condvar::new(),
            on_commit: std::sync::OnceLock::new(),
        })
    }

    /// The store underneath (history and transition queries).
    pub fn store(&self) -> &S {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of store commits so far (each is one transaction).
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    /// Runs `op` at wall-clock time; see [`Engine::execute_at`].
    pub fn execute<T>(
        &self,
        op: impl FnOnce(&mut Ipam, Time) -> Result<T, CoreError>,
    ) -> Result<T, EngineError> {
        self.execute_at(unix_now(), op)
    }

    /// Runs `op` on the state at time `now` (expired cooldowns end first), then waits until every
    /// change it made or could have seen is durable. `op` may perform many operations: they commit
    /// together. When `op` fails, what it changed before failing is kept only if it is the
    /// expiry of cooldowns (core operations change nothing when they fail).
    pub fn execute_at<T>(
        &self,
        now: Time,
        op: impl FnOnce(&mut Ipam, Time) -> Result<T, CoreError>,
    ) -> Result<T, EngineError> {
        self.run(Some(now), |ipam| op(ipam, now))
    }

    /// Runs `op` without a time: no cooldown expires and the state's clock does not move (for
    /// changes that do not depend on time, such as adding pools and subdivisions).
    pub fn execute_untimed<T>(
        &self,
        op: impl FnOnce(&mut Ipam) -> Result<T, CoreError>,
    ) -> Result<T, EngineError> {
        self.run(None, op)
    }

    fn run<T>(
        &self,
        now: Option<Time>,
        op: impl FnOnce(&mut Ipam) -> Result<T, CoreError>,
    ) -> Result<T, EngineError> {
        let mut st = self.usable()?;
        let (result, ticket) = st.apply(now, op);
        drop(self.wait_durable(st, ticket, false)?);
        Ok(result?)
    }

    /// The state, locked, unless the engine is broken (a failed commit after which the state
    /// could not be reloaded): then the reload is tried again (at most every
    /// [`RECOVERY_INTERVAL`]), and the engine serves again once it succeeds.
    fn usable(&self) -> Result<MutexGuard<'_, State>, EngineError> {
        let mut st = self.lock();
        while st.gated {
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let st = self.try_recover(st);
        match &st.broken {
            Some(why) => Err(EngineError::Unavailable(why.clone())),
            None => Ok(st),
        }
    }

    /// Tries to reload a broken engine's state (not more often than [`RECOVERY_INTERVAL`]).
    /// The store is read without the lock held, so that callers are refused at once meanwhile
    /// instead of waiting out the store's timeouts.
    fn try_recover<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        if st.broken.is_none() || st.committing {
            return st;
        }
        if st
            .last_recovery
            .is_some_and(|t| t.elapsed() < RECOVERY_INTERVAL)
        {
            return st;
        }
        st.last_recovery = Some(std::time::Instant::now());
        let (settings, local, epoch) = (st.ipam.settings(), st.local.clone(), st.epoch);
        drop(st);
        let loaded = self.load_state(settings, &local);
        let mut st = self.lock();
        // Another caller may have recovered (or a commit failed again) meanwhile.
        if st.broken.is_some() && st.epoch == epoch {
            match loaded {
                Ok((ipam, catalog)) => {
                    st.ipam = ipam;
                    st.catalog = catalog;
                    st.broken = None;
                }
                Err(why) => st.broken = Some(why),
            }
        }
        st
    }

    /// The state the store holds: allocator (with this daemon's `local` settings) and catalog.
    fn load_state(&self, settings: Settings, local: &Local) -> Result<(Ipam, Catalog), String> {
        let snap = self.store.load().map_err(|e| e.to_string())?;
        let mut ipam = Ipam::from_snapshot(settings, &snap).map_err(|e| e.to_string())?;
        local.apply(&mut ipam);
        let catalog = Catalog::load(&self.store).map_err(|e| e.to_string())?;
        Ok((ipam, catalog))
    }

    /// Replaces the in-memory state (allocator and catalog) with what the store holds, gated
    /// (see [`Engine::reload`]: operations wait) and with the lock released during the read, so
    /// that waiters hear of what happened before at once and async callers are never blocked on
    /// the lock for a read of the store. When the read fails, the engine is broken (the store may
    /// have taken part of the read as its view). The caller must let nothing be pending.
    fn replace_state<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
    ) -> (MutexGuard<'a, State>, Result<(), String>) {
        let was_gated = std::mem::replace(&mut st.gated, true);
        let (settings, local) = (st.ipam.settings(), st.local.clone());
        self.done.notify_all();
        drop(st);
        let loaded = self.load_state(settings, &local);
        let mut st = self.lock();
        let result = match loaded {
            Ok((ipam, catalog)) => {
                st.ipam = ipam;
                st.catalog = catalog;
                Ok(())
            }
            Err(why) => {
                st.broken = Some(why.clone());
                st.last_recovery = Some(std::time::Instant::now());
                Err(why)
            }
        };
        st.gated = was_gated;
        (st, result)
    }

    /// Makes this engine one of several daemons sharing the store: `node` is its name (unique
    /// among them; [`Ipam::set_node`]: it allocates only in shards with its affinity) and `hint`
    /// where its allocations start to look inside a shard ([`Ipam::set_address_hint`]). Kept
    /// across reloads.
    pub fn set_shared(&self, node: &str, hint: u64) {
        let mut st = self.lock();
        st.local = Local {
            hint,
            node: Some(node.to_string()),
        };
        let local = st.local.clone();
        local.apply(&mut st.ipam);
    }

    /// [`Engine::reload`], unless changes are pending or being committed: then it returns
    /// `Ok(false)` at once, without reading the store (for periodic refreshes that should not
    /// hold a busy daemon back). `Ok(true)`: reloaded.
    pub fn reload_if_idle(&self) -> Result<bool, EngineError> {
        {
            let st = self.usable()?;
            if st.committing || !st.pending.is_empty() {
                return Ok(false);
            }
        }
        self.reload().map(|()| true)
    }

    /// [`Engine::reload`] at most once per `min_interval` (`Ok(false)`: skipped, one ran less
    /// than that ago). For what only another daemon's commits can explain (a lease this daemon
    /// does not know), which a client could ask for again and again.
    pub fn reload_now(&self, min_interval: std::time::Duration) -> Result<bool, EngineError> {
        {
            let mut st = self.usable()?;
            if st
                .last_forced_reload
                .is_some_and(|t| t.elapsed() < min_interval)
            {
                return Ok(false);
            }
            st.last_forced_reload = Some(std::time::Instant::now());
        }
        self.reload().map(|()| true)
    }

    /// Replaces the state with what the store holds, to see what other writers of a shared store
    /// (other daemons on one etcd cluster) committed; the state read is always installed, even
    /// under load. New operations are held back meanwhile ([`Engine::submit_at`] refuses them
    /// with [`EngineError::Reloading`], so that async callers retry; synchronous callers wait),
    /// what is pending is committed first (nothing unacknowledged is lost), then the store is
    /// read without the lock. It delays every operation of this engine by one read of the store.
    ///
    /// Installing always matters: a shared store ([`cidrcast_store::EtcdStore`]) guards commits
    /// with what its last read saw, so the state the engine decides on must be that same read.
    /// When the read fails, the engine is broken until a reload succeeds
    /// ([`EngineError::Unavailable`]; retried at most every [`RECOVERY_INTERVAL`]).
    pub fn reload(&self) -> Result<(), EngineError> {
        let mut st = self.usable()?;
        st.gated = true;
        loop {
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
            } else if !st.pending.is_empty() {
                st = self.lead_commit(st);
            } else {
                break;
            }
        }
        let result = match st.broken.clone() {
            Some(why) => Err(EngineError::Unavailable(why)),
            None => {
                let (guard, result) = self.replace_state(st);
                st = guard;
                result.map_err(EngineError::Unavailable)
            }
        };
        st.gated = false;
        drop(st);
        self.done.notify_all();
        result
    }

    /// Waits until `ticket` is decided ([`State::outcome`]), committing what is pending when no
    /// commit is under way.
    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        ticket: Ticket,
        read_only: bool,
    ) -> Result<MutexGuard<'a, State>, EngineError> {
        loop {
            if let Some(outcome) = st.outcome(ticket, read_only) {
                return outcome.map(|()| st);
            }
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            st = self.lead_commit(st);
        }
    }

    /// Commits everything pending in one transaction (the caller found no commit under way),
    /// then wakes every waiter. On failure, the state is rebuilt from the store.
    fn lead_commit<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        // Lead: commit everything pending in one transaction.
        st.committing = true;
        let batch = std::mem::take(&mut st.pending);
        let upto = st.appended;
        drop(st);
        let result = self.store.commit(&batch);
        st = self.lock();
        st.committing = false;
        st.commits += 1;
        match result {
            Ok(()) => st.durable = upto,
            Err(e) => {
                // This batch and everything after it was built on state that is not durable.
                let durable = st.durable;
                st.epoch_durable.push(durable);
                st.epoch += 1;
                st.durable = st.appended;
                st.last_failure = e.to_string();
                st.last_failure_conflict = matches!(e, StoreError::Conflict { .. });
                st.pending.clear();
                if matches!(e, StoreError::Unavailable { .. }) {
                    // The store cannot be reached: a reload now would wait out the same timeouts
                    // before the waiters hear of the failure. Refuse at once and reload later.
                    st.broken = Some(e.to_string());
                    st.last_recovery = Some(std::time::Instant::now());
                } else {
                    // Rebuild from the store; the waiters hear of the failure meanwhile.
                    if let Some(hook) = self.on_commit.get() {
                        hook();
                    }
                    st = self.replace_state(st).0;
                }
            }
        }
        self.done.notify_all();
        self.work.notify_one();
        if let Some(hook) = self.on_commit.get() {
            hook();
        }
        st
    }

    /// Runs `op` like [`Engine::execute_at`] but does not wait: the changes are applied in
    /// memory and queued, and the returned [`Ticket`] tells when everything `op` changed or could
    /// have seen is durable ([`Engine::ticket_status`]). Hold the result back from whoever asked
    /// until then. Someone must commit: a thread in [`Engine::run_committer`], or any synchronous
    /// caller. For callers that must not block (an async server): the lock is held only for `op`.
    pub fn submit_at<T>(
        &self,
        now: Time,
        op: impl FnOnce(&mut Ipam, Time) -> Result<T, CoreError>,
    ) -> Result<(Result<T, CoreError>, Ticket), EngineError> {
        // Never waits on the store (the caller may be an async task): a broken engine is
        // refused at once, and the committer thread tries the reloads.
        let mut st = self.lock();
        if let Some(why) = &st.broken {
            return Err(EngineError::Unavailable(why.clone()));
        }
        if st.gated {
            return Err(EngineError::Reloading);
        }
        let (result, ticket) = st.apply(Some(now), |ipam| op(ipam, now));
        let waiting = st.outcome(ticket, false).is_none();
        drop(st);
        if waiting {
            self.work.notify_one();
        }
        Ok((result, ticket))
    }

    /// `None` while what `ticket` waits for is not yet durable; then `Ok` (durable) or the
    /// error of the commit that failed it (nothing of it was applied).
    pub fn ticket_status(&self, ticket: Ticket) -> Option<Result<(), EngineError>> {
        self.lock().outcome(ticket, false)
    }

    /// Whether a profile of that name exists, without waiting for durability: follow it with a
    /// [`Engine::submit_at`] whose ticket is awaited (the ticket covers what this saw).
    pub fn has_profile_unsynced(&self, name: &str) -> bool {
        self.lock().catalog.profiles.contains_key(name)
    }

    /// Sets the function called after every commit (once; later calls are ignored), e.g. to wake
    /// tasks waiting on [`Ticket`]s. It runs under the engine's lock: keep it short and do not
    /// call the engine from it.
    pub fn set_on_commit(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_commit.set(hook);
    }

    /// Commits whatever is pending, one transaction at a time, until `stop` is set (checked at
    /// least every 50 ms). While the engine is broken (its store unreachable) it tries to
    /// reload every [`RECOVERY_INTERVAL`]. Run it on a thread of its own beside
    /// [`Engine::submit_at`] callers.
    pub fn run_committer(&self, stop: &std::sync::atomic::AtomicBool) {
        let mut st = self.lock();
        loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            st = self.try_recover(st);
            if st.pending.is_empty() || st.committing || st.broken.is_some() {
                st = self
                    .work
                    .wait_timeout(st, std::time::Duration::from_millis(50))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            st = self.lead_commit(st);
        }
    }

    /// Reads the state; waits until everything it could observe is durable.
    pub fn read<T>(&self, f: impl FnOnce(&Ipam) -> T) -> Result<T, EngineError> {
        let st = self.usable()?;
        let ticket = st.ticket();
        let st = self.wait_durable(st, ticket, true)?;
        Ok(f(&st.ipam))
    }

    /// Runs `op` on the catalog (external events, profiles, routers), with the allocator to check
    /// references against; the changes it returns are applied to the catalog and committed like
    /// the allocator's, and the call waits until they are durable. When `op` fails nothing
    /// changes. The one path by which every catalog change is made.
    fn run_catalog<T>(
        &self,
        op: impl FnOnce(&Ipam, &Catalog) -> Result<(T, Vec<Change>), CoreError>,
    ) -> Result<T, EngineError> {
        let mut st = self.usable()?;
        let result = op(&st.ipam, &st.catalog);
        if let Ok((_, changes)) = &result {
            for change in changes {
                st.catalog.apply(change);
            }
            st.queue(changes.iter().cloned());
        }
        let ticket = st.ticket();
        drop(self.wait_durable(st, ticket, false)?);
        Ok(result?.0)
    }

    /// Appends VM lifecycle events to the history log (a history import) in one transaction,
    /// after the events already there; durable when it returns. The caller checks them (known
    /// subdivisions, time order): the allocator's state does not change.
    pub fn append_history(&self, events: &[VmEvent]) -> Result<(), EngineError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut st = self.usable()?;
        let ticket = st.queue(events.iter().cloned().map(Change::Event));
        drop(self.wait_durable(st, ticket, false)?);
        Ok(())
    }

    /// Creates or replaces a catalog record by name, after [`Entry::check`]; returns the one it
    /// replaced. An identical record commits nothing.
    fn put_entry<E: Entry>(&self, spec: E) -> Result<Option<E>, EngineError> {
        self.run_catalog(|ipam, catalog| {
            spec.check(ipam)?;
            let entries = E::entries(catalog);
            if !entries.contains_key(spec.name()) && entries.len() >= E::MAX {
                return Err(E::limit());
            }
            let previous = entries.get(spec.name()).cloned();
            let changes = if previous.as_ref() == Some(&spec) {
                Vec::new()
            } else {
                vec![spec.put()]
            };
            Ok((previous, changes))
        })
    }

    /// Deletes a catalog record; [`Entry::unknown`] when there is none of that name.
    fn delete_entry<E: Entry>(&self, name: &str) -> Result<E, EngineError> {
        self.run_catalog(|_, catalog| {
            let spec = E::entries(catalog)
                .get(name)
                .cloned()
                .ok_or_else(|| E::unknown(name))?;
            Ok((spec, vec![E::delete(name.to_string())]))
        })
    }

    /// Every catalog record of a kind, sorted by name, once everything it could observe is
    /// durable.
    fn list<E: Entry>(&self) -> Result<Vec<E>, EngineError> {
        let st = self.usable()?;
        let ticket = st.ticket();
        let st = self.wait_durable(st, ticket, true)?;
        Ok(E::entries(&st.catalog).values().cloned().collect())
    }

    /// Create or replace by name, all or nothing (see [`Engine::ensure_events`]).
    fn ensure_entries<E: Entry>(&self, configured: &[E]) -> Result<(), EngineError> {
        self.run_catalog(|ipam, catalog| {
            let mut seen = std::collections::BTreeSet::new();
            for spec in configured {
                spec.check(ipam)?;
                if !seen.insert(spec.name()) {
                    return Err(E::invalid(spec.name(), "name is given twice".to_string()));
                }
            }
            let entries = E::entries(catalog);
            let new = configured
                .iter()
                .filter(|c| !entries.contains_key(c.name()))
                .count();
            if new > 0 && entries.len() + new > E::MAX {
                return Err(E::limit());
            }
            let changes = configured
                .iter()
                .filter(|c| entries.get(c.name()) != Some(*c))
                .map(|c| c.clone().put())
                .collect();
            Ok(((), changes))
        })
    }

    /// Creates or replaces (by name) a scheduled external event, after checking it
    /// ([`ExternalEventSpec::validate`]) and that its scope names an existing subdivision (or is
    /// `"*"`). Returns the event it replaced, if any. Durable when it returns.
    pub fn put_event(
        &self,
        spec: ExternalEventSpec,
    ) -> Result<Option<ExternalEventSpec>, EngineError> {
        self.put_entry(spec)
    }

    /// Deletes a scheduled external event; [`CoreError::UnknownEvent`] when there is none of
    /// that name. Returns the deleted event. Durable when it returns.
    pub fn delete_event(&self, name: &str) -> Result<ExternalEventSpec, EngineError> {
        self.delete_entry(name)
    }

    /// Every scheduled external event, sorted by name (waits until everything it could observe
    /// is durable, like [`Engine::read`]).
    pub fn events(&self) -> Result<Vec<ExternalEventSpec>, EngineError> {
        self.list()
    }

    /// Makes the stored external events include the configured ones, **create or replace by
    /// name**: a configured event missing from the store is created, one that differs replaces
    /// the stored one (the configuration file is the source of truth for the events it names),
    /// an identical one is left alone. Stored events the configuration does not name (added
    /// through the CLI or API) are kept. All or nothing: every event is checked first (fields,
    /// duplicate names, scope naming an existing subdivision or `"*"`), and the changes commit
    /// in one batch. Call it after [`Engine::ensure_config`], so that the scopes exist.
    pub fn ensure_events(&self, configured: &[ExternalEventSpec]) -> Result<(), EngineError> {
        self.ensure_entries(configured)
    }

    /// Creates or replaces (by name) an application profile, after checking it
    /// ([`Profile::validate`]). Returns the profile it replaced, if any; putting an identical one
    /// commits nothing. At most [`MAX_PROFILES`] profiles. Durable when it returns.
    pub fn put_profile(&self, profile: Profile) -> Result<Option<Profile>, EngineError> {
        self.put_entry(profile)
    }

    /// Deletes an application profile; [`CoreError::UnknownProfile`] when there is none of that
    /// name. Returns the deleted profile. Leases that name it keep their profile name. Durable
    /// when it returns.
    pub fn delete_profile(&self, name: &str) -> Result<Profile, EngineError> {
        self.delete_entry(name)
    }

    /// Every application profile, sorted by name (waits until everything it could observe is
    /// durable, like [`Engine::read`]).
    pub fn profiles(&self) -> Result<Vec<Profile>, EngineError> {
        self.list()
    }

    /// Makes the stored profiles include the configured ones, create or replace by name, all or
    /// nothing; stored profiles the configuration does not name are kept. Same semantics as
    /// [`Engine::ensure_events`].
    pub fn ensure_profiles(&self, configured: &[Profile]) -> Result<(), EngineError> {
        self.ensure_entries(configured)
    }

    /// Creates or replaces (by name) a router, after checking it ([`RouterSpec::validate`]) and
    /// that every subdivision it lists exists. Returns the router it replaced, if any; putting an
    /// identical one commits nothing. At most [`MAX_ROUTERS`] routers. Durable when it returns.
    pub fn put_router(&self, router: RouterSpec) -> Result<Option<RouterSpec>, EngineError> {
        self.put_entry(router)
    }

    /// Deletes a router; [`CoreError::UnknownRouter`] when there is none of that name. Returns
    /// the deleted router. Subdivisions that list it in their `routers` keep the name. Durable
    /// when it returns.
    pub fn delete_router(&self, name: &str) -> Result<RouterSpec, EngineError> {
        self.delete_entry(name)
    }

    /// Every router, sorted by name (waits until everything it could observe is durable, like
    /// [`Engine::read`]).
    pub fn routers(&self) -> Result<Vec<RouterSpec>, EngineError> {
        self.list()
    }

    /// Makes the stored routers include the configured ones, create or replace by name, all or
    /// nothing; stored routers the configuration does not name are kept. Same semantics as
    /// [`Engine::ensure_events`]; call it after [`Engine::ensure_config`], so that the
    /// subdivisions the routers list exist.
    pub fn ensure_routers(&self, configured: &[RouterSpec]) -> Result<(), EngineError> {
        self.ensure_entries(configured)
    }

    /// Makes the stored pools and subdivisions include the configured ones: missing ones are
    /// created, identical ones left alone, differing ones refused (nothing is changed then).
    pub fn ensure_config(
        &self,
        pools: &[PoolSpec],
        subdivisions: &[SubdivisionSpec],
    ) -> Result<(), EngineError> {
        let (stored_pools, stored_subs) =
            self.read(|ipam| (ipam.pool_specs(), ipam.subdivision_specs()))?;
        for p in pools {
            if let Some(s) = stored_pools.iter().find(|s| s.name == p.name) {
                if s != p {
                    return Err(EngineError::ConfigMismatch {
                        kind: "pool",
                        name: p.name.clone(),
                        differences: differences(s, p),
                    });
                }
            }
        }
        for d in subdivisions {
            if let Some(s) = stored_subs.iter().find(|s| s.name == d.name) {
                if s != d {
                    return Err(EngineError::ConfigMismatch {
                        kind: "subdivision",
                        name: d.name.clone(),
                        differences: differences(s, d),
                    });
                }
            }
        }
        let new_pools: Vec<PoolSpec> = pools
            .iter()
            .filter(|p| !stored_pools.iter().any(|s| s.name == p.name))
            .cloned()
            .collect();
        let new_subs: Vec<SubdivisionSpec> = subdivisions
            .iter()
            .filter(|d| !stored_subs.iter().any(|s| s.name == d.name))
            .cloned()
            .collect();
        if new_pools.is_empty() && new_subs.is_empty() {
            return Ok(());
        }
        // All or nothing: on a refusal, the whole batch is dropped by rebuilding from the store.
        self.execute_untimed(|ipam| {
            let mut scratch = ipam.clone();
            for p in &new_pools {
                scratch.add_pool(p.clone())?;
            }
            for s in order_parents_first(&new_subs, &stored_subs) {
                scratch.add_subdivision(s.clone())?;
            }
            *ipam = scratch;
            Ok(())
        })
    }
}

/// What the engine keeps beside the allocator, each kind by name, as committed or pending.
struct Catalog {
    events: BTreeMap<String, ExternalEventSpec>,
    profiles: BTreeMap<String, Profile>,
    routers: BTreeMap<String, RouterSpec>,
}

impl Catalog {
    /// The catalog `store` holds.
    fn load<S: Store>(store: &S) -> Result<Self, StoreError> {
        fn by_name<E: Entry>(entries: Vec<E>) -> BTreeMap<String, E> {
            entries
                .into_iter()
                .map(|e| (e.name().to_string(), e))
                .collect()
        }
        Ok(Catalog {
            events: by_name(store.external_events()?),
            profiles: by_name(store.profiles()?),
            routers: by_name(store.routers()?),
        })
    }

    /// Applies a catalog change (the allocator's own changes never come here).
    fn apply(&mut self, change: &Change) {
        match change {
            Change::PutExternalEvent(e) => {
                self.events.insert(e.name.clone(), e.clone());
            }
            Change::DeleteExternalEvent { name } => {
                self.events.remove(name);
            }
            Change::PutProfile(p) => {
                self.profiles.insert(p.name.clone(), p.clone());
            }
            Change::DeleteProfile { name } => {
                self.profiles.remove(name);
            }
            Change::PutRouter(r) => {
                self.routers.insert(r.name.clone(), r.clone());
            }
            Change::DeleteRouter { name } => {
                self.routers.remove(name);
            }
            _ => unreachable!("only catalog changes are applied to the catalog"),
        }
    }
}

/// A kind of catalog record: named, kept in a map of the [`Catalog`], written to the store by its
/// own put and delete changes.
trait Entry: Clone + PartialEq {
    /// Most records of the kind the engine keeps.
    const MAX: usize;
    fn name(&self) -> &str;
    /// The records of the kind.
    fn entries(catalog: &Catalog) -> &BTreeMap<String, Self>;
    /// The record's own fields, and what it names in the allocator's state.
    fn check(&self, ipam: &Ipam) -> Result<(), CoreError>;
    fn put(self) -> Change;
    fn delete(name: String) -> Change;
    /// No record of that name.
    fn unknown(name: &str) -> CoreError;
    /// The record `name` is refused; `message` says why.
    fn invalid(name: &str, message: String) -> CoreError;
    /// There would be more than [`Entry::MAX`].
    fn limit() -> CoreError;
}

impl Entry for ExternalEventSpec {
    const MAX: usize = MAX_EXTERNAL_EVENTS;
    fn name(&self) -> &str {
        &self.name
    }
    fn entries(catalog: &Catalog) -> &BTreeMap<String, Self> {
        &catalog.events
    }
    /// An event's own fields, and its scope: an existing subdivision or `"*"`.
    fn check(&self, ipam: &Ipam) -> Result<(), CoreError> {
        self.validate()?;
        if !self.is_global() && !ipam.has_subdivision(&self.scope) {
            return Err(Self::invalid(
                &self.name,
                format!(
                    "scope = {:?}: unknown subdivision (use \"*\" for every subdivision)",
                    self.scope
                ),
            ));
        }
        Ok(())
    }
    fn put(self) -> Change {
        Change::PutExternalEvent(self)
    }
    fn delete(name: String) -> Change {
        Change::DeleteExternalEvent { name }
    }
    fn unknown(name: &str) -> CoreError {
        CoreError::UnknownEvent(name.to_string())
    }
    fn invalid(name: &str, message: String) -> CoreError {
        CoreError::InvalidEvent {
            name: name.to_string(),
            message,
        }
    }
    fn limit() -> CoreError {
        CoreError::Limit(format!(
            "at most {MAX_EXTERNAL_EVENTS} scheduled events; remove past ones first"
        ))
    }
}

impl Entry for Profile {
    const MAX: usize = MAX_PROFILES;
    fn name(&self) -> &str {
        &self.name
    }
    fn entries(catalog: &Catalog) -> &BTreeMap<String, Self> {
        &catalog.profiles
    }
    fn check(&self, _: &Ipam) -> Result<(), CoreError> {
        self.validate()
    }
    fn put(self) -> Change {
        Change::PutProfile(self)
    }
    fn delete(name: String) -> Change {
        Change::DeleteProfile { name }
    }
    fn unknown(name: &str) -> CoreError {
        CoreError::UnknownProfile(name.to_string())
    }
    fn invalid(name: &str, message: String) -> CoreError {
        CoreError::InvalidProfile {
            name: name.to_string(),
            message,
        }
    }
    fn limit() -> CoreError {
        CoreError::Limit(format!(
            "at most {MAX_PROFILES} application profiles (the most distinct profiles leases can \
             name); remove unused ones first"
        ))
    }
}

impl Entry for RouterSpec {
    const MAX: usize = MAX_ROUTERS;
    fn name(&self) -> &str {
        &self.name
    }
    fn entries(catalog: &Catalog) -> &BTreeMap<String, Self> {
        &catalog.routers
    }
    /// A router's own fields, and the subdivisions it lists: existing ones.
    fn check(&self, ipam: &Ipam) -> Result<(), CoreError> {
        self.validate()?;
        if let Some(missing) = self.subdivisions.iter().find(|s| !ipam.has_subdivision(s)) {
            return Err(Self::invalid(
                &self.name,
                format!("subdivisions = {missing:?}: unknown subdivision"),
            ));
        }
        Ok(())
    }
    fn put(self) -> Change {
        Change::PutRouter(self)
    }
    fn delete(name: String) -> Change {
        Change::DeleteRouter { name }
    }
    fn unknown(name: &str) -> CoreError {
        CoreError::UnknownRouter(name.to_string())
    }
    fn invalid(name: &str, message: String) -> CoreError {
        CoreError::InvalidRouter {
            name: name.to_string(),
            message,
        }
    }
    fn limit() -> CoreError {
        CoreError::Limit(format!(
            "at most {MAX_ROUTERS} routers; remove unused ones first"
        ))
    }
}

/// `field: stored X, configured Y` for every top-level field that differs.
fn differences<T: serde::Serialize>(stored: &T, configured: &T) -> String {
    let (Ok(serde_json::Value::Object(a)), Ok(serde_json::Value::Object(b))) = (
        serde_json::to_value(stored),
        serde_json::to_value(configured),
    ) else {
        return "they differ".into();
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = serde_json::Value::Null;
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| {
            format!(
                "{k}: stored {}, configured {}",
                a.get(k).unwrap_or(&none),
                b.get(k).unwrap_or(&none)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Subdivisions ordered so that a parent comes before its children (unknown parents last, where
/// adding them reports the unknown parent).
fn order_parents_first<'a>(
    new: &'a [SubdivisionSpec],
    stored: &[SubdivisionSpec],
) -> Vec<&'a SubdivisionSpec> {
    let mut known: Vec<&str> = stored.iter().map(|s| s.name.as_str()).collect();
    let mut rest: Vec<&SubdivisionSpec> = new.iter().collect();
    let mut out = Vec::with_capacity(new.len());
    loop {
        let before = rest.len();
        let (ready, later): (Vec<_>, Vec<_>) = rest
            .into_iter()
            .partition(|s| s.parent.as_deref().is_none_or(|p| known.contains(&p)));
        for s in &ready {
            known.push(&s.name);
        }
        out.extend(ready);
        rest = later;
        if rest.is_empty() || rest.len() == before {
            out.extend(rest);
            return out;
        }
    }
}
