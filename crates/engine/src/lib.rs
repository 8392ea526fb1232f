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
//! Scheduled external events ([`ExternalEventSpec`]) are not allocator state: the engine keeps
//! them beside the allocator and commits their changes ([`Engine::put_event`],
//! [`Engine::delete_event`], [`Engine::ensure_events`]) through the same group commit.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use cidrcast_core::model::{Change, ExternalEventSpec, PoolSpec, SubdivisionSpec, Time};
use cidrcast_core::{CoreError, Ipam, Settings};
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
    /// The in-memory state could not be rebuilt after a failed commit; restart the process.
    #[error("the engine is unavailable after a failed commit and a failed reload: {0}")]
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

/// Most scheduled external events the engine keeps.
pub const MAX_EXTERNAL_EVENTS: usize = 10_000;

struct State {
    ipam: Ipam,
    /// Scheduled external events by name, as committed or pending.
    events: BTreeMap<String, ExternalEventSpec>,
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
    committing: bool,
    broken: Option<String>,
    commits: u64,
}

/// The durable allocator. `Sync`: share it between threads (e.g. in an `Arc`).
pub struct Engine<S: Store> {
    store: S,
    state: Mutex<State>,
    done: Condvar,
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
        let events = load_events(&store).map_err(EngineError::Store)?;
        Ok(Engine {
            store,
            state: Mutex::new(State {
                ipam,
                events,
                pending: Vec::new(),
                appended: 0,
                durable: 0,
                epoch: 0,
                epoch_durable: Vec::new(),
                last_failure: String::new(),
                committing: false,
                broken: None,
                commits: 0,
            }),
            done: Condvar::new(),
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
        let mut st = self.lock();
        if let Some(why) = &st.broken {
            return Err(EngineError::Unavailable(why.clone()));
        }
        if let Some(now) = now {
            st.ipam.expire(now);
        }
        let result = op(&mut st.ipam);
        let journal = st.ipam.take_journal();
        if !journal.is_empty() {
            st.pending.extend(journal);
            st.appended += 1;
        }
        let (mine, epoch) = (st.appended, st.epoch);
        drop(self.wait_durable(st, mine, epoch, false)?);
        Ok(result?)
    }

    fn wait_durable<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        mine: u64,
        epoch: usize,
        read_only: bool,
    ) -> Result<MutexGuard<'a, State>, EngineError> {
        loop {
            if st.epoch > epoch {
                // A commit failed since: durable up to `epoch_durable[epoch]`, the rest failed. A
                // read only waits for the outcome: the state was rebuilt from the store, so what it
                // reads now is durable.
                if read_only || mine <= st.epoch_durable[epoch] {
                    return Ok(st);
                }
                return Err(EngineError::CommitFailed(st.last_failure.clone()));
            }
            if st.durable >= mine {
                return Ok(st);
            }
            if let Some(why) = &st.broken {
                return Err(EngineError::Unavailable(why.clone()));
            }
            if st.committing {
                st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
                continue;
            }
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
                    st.pending.clear();
                    let settings = st.ipam.settings();
                    let reloaded = self
                        .store
                        .load()
                        .map_err(|e| e.to_string())
                        .and_then(|s| Ipam::from_snapshot(settings, &s).map_err(|e| e.to_string()))
                        .and_then(|ipam| {
                            let events = load_events(&self.store).map_err(|e| e.to_string())?;
                            Ok((ipam, events))
                        });
                    match reloaded {
                        Ok((ipam, events)) => {
                            st.ipam = ipam;
                            st.events = events;
                        }
                        Err(why) => st.broken = Some(why),
                    }
                }
            }
            self.done.notify_all();
        }
    }

    /// Reads the state; waits until everything it could observe is durable.
    pub fn read<T>(&self, f: impl FnOnce(&Ipam) -> T) -> Result<T, EngineError> {
        let st = self.lock();
        let (mine, epoch) = (st.appended, st.epoch);
        let st = self.wait_durable(st, mine, epoch, true)?;
        Ok(f(&st.ipam))
    }

    /// Runs `op` on the external events (with the allocator to check scopes against); the
    /// changes it returns are applied to the events and committed like the allocator's, and the
    /// call waits until they are durable. When `op` fails nothing changes.
    fn run_events<T>(
        &self,
        op: impl FnOnce(
            &Ipam,
            &BTreeMap<String, ExternalEventSpec>,
        ) -> Result<(T, Vec<Change>), CoreError>,
    ) -> Result<T, EngineError> {
        let mut st = self.lock();
        if let Some(why) = &st.broken {
            return Err(EngineError::Unavailable(why.clone()));
        }
        let result = op(&st.ipam, &st.events);
        if let Ok((_, changes)) = &result {
            if !changes.is_empty() {
                for change in changes {
                    match change {
                        Change::PutExternalEvent(e) => {
                            st.events.insert(e.name.clone(), e.clone());
                        }
                        Change::DeleteExternalEvent { name } => {
                            st.events.remove(name);
                        }
                        _ => unreachable!("only external event changes here"),
                    }
                }
                st.pending.extend(changes.iter().cloned());
                st.appended += 1;
            }
        }
        let (mine, epoch) = (st.appended, st.epoch);
        drop(self.wait_durable(st, mine, epoch, false)?);
        Ok(result?.0)
    }

    /// Creates or replaces (by name) a scheduled external event, after checking it
    /// ([`ExternalEventSpec::validate`]) and that its scope names an existing subdivision (or is
    /// `"*"`). Returns the event it replaced, if any. Durable when it returns.
    pub fn put_event(
        &self,
        spec: ExternalEventSpec,
    ) -> Result<Option<ExternalEventSpec>, EngineError> {
        self.run_events(|ipam, events| {
            check_event(ipam, &spec)?;
            if !events.contains_key(&spec.name) && events.len() >= MAX_EXTERNAL_EVENTS {
                return Err(CoreError::Limit(format!(
                    "at most {MAX_EXTERNAL_EVENTS} scheduled events; remove past ones first"
                )));
            }
            let previous = events.get(&spec.name).cloned();
            let changes = if previous.as_ref() == Some(&spec) {
                Vec::new()
            } else {
                vec![Change::PutExternalEvent(spec)]
            };
            Ok((previous, changes))
        })
    }

    /// Deletes a scheduled external event; [`CoreError::UnknownEvent`] when there is none of
    /// that name. Returns the deleted event. Durable when it returns.
    pub fn delete_event(&self, name: &str) -> Result<ExternalEventSpec, EngineError> {
        self.run_events(|_, events| {
            let spec = events
                .get(name)
                .cloned()
                .ok_or_else(|| CoreError::UnknownEvent(name.to_string()))?;
            Ok((
                spec,
                vec![Change::DeleteExternalEvent {
                    name: name.to_string(),
                }],
            ))
        })
    }

    /// Every scheduled external event, sorted by name (waits until everything it could observe
    /// is durable, like [`Engine::read`]).
    pub fn events(&self) -> Result<Vec<ExternalEventSpec>, EngineError> {
        let st = self.lock();
        let (mine, epoch) = (st.appended, st.epoch);
        let st = self.wait_durable(st, mine, epoch, true)?;
        Ok(st.events.values().cloned().collect())
    }

    /// Makes the stored external events include the configured ones, **create or replace by
    /// name**: a configured event missing from the store is created, one that differs replaces
    /// the stored one (the configuration file is the source of truth for the events it names),
    /// an identical one is left alone. Stored events the configuration does not name (added
    /// through the CLI or API) are kept. All or nothing: every event is checked first (fields,
    /// duplicate names, scope naming an existing subdivision or `"*"`), and the changes commit
    /// in one batch. Call it after [`Engine::ensure_config`], so that the scopes exist.
    pub fn ensure_events(&self, configured: &[ExternalEventSpec]) -> Result<(), EngineError> {
        self.run_events(|ipam, events| {
            let mut seen = std::collections::BTreeSet::new();
            for spec in configured {
                check_event(ipam, spec)?;
                if !seen.insert(spec.name.as_str()) {
                    return Err(CoreError::InvalidEvent {
                        name: spec.name.clone(),
                        message: "name is given twice".to_string(),
                    });
                }
            }
            let new = configured
                .iter()
                .filter(|c| !events.contains_key(&c.name))
                .count();
            if new > 0 && events.len() + new > MAX_EXTERNAL_EVENTS {
                return Err(CoreError::Limit(format!(
                    "at most {MAX_EXTERNAL_EVENTS} scheduled events; remove past ones first"
                )));
            }
            let changes = configured
                .iter()
                .filter(|c| events.get(&c.name) != Some(*c))
                .map(|c| Change::PutExternalEvent(c.clone()))
                .collect();
            Ok(((), changes))
        })
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

/// The scheduled external events of `store`, by name.
fn load_events<S: Store>(store: &S) -> Result<BTreeMap<String, ExternalEventSpec>, StoreError> {
    Ok(store
        .external_events()?
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect())
}

/// An event's own fields, and its scope: an existing subdivision or `"*"`.
fn check_event(ipam: &Ipam, spec: &ExternalEventSpec) -> Result<(), CoreError> {
    spec.validate()?;
    if !spec.is_global() && !ipam.has_subdivision(&spec.scope) {
        return Err(CoreError::InvalidEvent {
            name: spec.name.clone(),
            message: format!(
                "scope = {:?}: unknown subdivision (use \"*\" for every subdivision)",
                spec.scope
            ),
        });
    }
    Ok(())
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
