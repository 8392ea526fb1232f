//! [`MemoryStore`]: the store semantics in memory, for tests and simulations.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

use cidrcast_core::model::{
    Change, CoolingRecord, ExternalEventSpec, HomeRecord, LeaseRecord, PoolSpec, Profile,
    RouterSpec, ShardRecord, Snapshot, SubdivisionSpec, Transition, VmEvent,
};
use ipnet::IpNet;

use crate::{validate, Store, StoreCounts, StoreError};

/// The store semantics in memory (`BTreeMap`s behind a `Mutex`): nothing survives the process.
///
/// Records are kept as values, not serialised; validation is the same as [`crate::RedbStore`]'s,
/// so both backends accept and refuse the same batches.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    pools: BTreeMap<String, PoolSpec>,
    subdivisions: BTreeMap<String, SubdivisionSpec>,
    homes: BTreeMap<(String, String), HomeRecord>,
    shards: BTreeMap<(String, IpNet), ShardRecord>,
    leases: BTreeMap<String, LeaseRecord>,
    cooling: BTreeMap<(String, IpAddr), CoolingRecord>,
    events: BTreeMap<u64, VmEvent>,
    transitions: BTreeMap<u64, Transition>,
    external_events: BTreeMap<String, ExternalEventSpec>,
    profiles: BTreeMap<String, Profile>,
    routers: BTreeMap<String, RouterSpec>,
    /// Last sequence numbers handed out (0: none yet).
    last_event: u64,
    last_transition: u64,
    /// Commits still to fail (failure injection).
    fail_next: usize,
    /// Successful non-empty commits.
    commits: u64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the next `n` calls to [`Store::commit`] (empty batches included) return
    /// [`StoreError::Injected`] without changing anything. Replaces any count still pending.
    pub fn fail_next_commits(&self, n: usize) {
        self.lock().fail_next = n;
    }

    /// Number of successful commits of non-empty batches (one per transaction).
    pub fn commits(&self) -> u64 {
        self.lock().commits
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every mutation validates first and cannot fail (or panic) half way, so the state behind
        // a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn page<T: Clone>(log: &BTreeMap<u64, T>, after: u64, limit: usize) -> Vec<(u64, T)> {
    log.range((Bound::Excluded(after), Bound::Unbounded))
        .take(limit)
        .map(|(seq, v)| (*seq, v.clone()))
        .collect()
}

impl Store for MemoryStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        let inner = self.lock();
        Ok(Snapshot {
            pools: inner.pools.values().cloned().collect(),
            subdivisions: inner.subdivisions.values().cloned().collect(),
            homes: inner.homes.values().cloned().collect(),
            shards: inner.shards.values().cloned().collect(),
            leases: inner.leases.values().cloned().collect(),
            cooling: inner.cooling.values().cloned().collect(),
        })
    }

    fn commit(&self, batch: &[Change]) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner.fail_next > 0 {
            inner.fail_next -= 1;
            return Err(StoreError::Injected);
        }
        if batch.is_empty() {
            return Ok(());
        }
        // Validate everything first: applying below cannot fail, so the batch is all or nothing.
        batch.iter().try_for_each(validate)?;
        let inner = &mut *inner;
        for change in batch {
            match change {
                Change::PutPool(p) => {
                    inner.pools.insert(p.name.clone(), p.clone());
                }
                Change::DeletePool { name } => {
                    inner.pools.remove(name);
                }
                Change::PutSubdivision(s) => {
                    inner.subdivisions.insert(s.name.clone(), s.clone());
                }
                Change::DeleteSubdivision { name } => {
                    inner.subdivisions.remove(name);
                }
                Change::PutHome(h) => {
                    let key = (h.subdivision.clone(), h.pool.clone());
                    inner.homes.insert(key, h.clone());
                }
                Change::DeleteHome { subdivision, pool } => {
                    inner.homes.remove(&(subdivision.clone(), pool.clone()));
                }
                Change::PutShard(s) => {
                    inner.shards.insert((s.pool.clone(), s.prefix), s.clone());
                }
                Change::DeleteShard { pool, prefix } => {
                    inner.shards.remove(&(pool.clone(), *prefix));
                }
                Change::PutLease(l) => {
                    inner.leases.insert(l.vm_id.clone(), l.clone());
                }
                Change::DeleteLease { vm_id } => {
                    inner.leases.remove(vm_id);
                }
                Change::PutCooling(c) => {
                    inner.cooling.insert((c.pool.clone(), c.address), c.clone());
                }
                Change::DeleteCooling { pool, address } => {
                    inner.cooling.remove(&(pool.clone(), *address));
                }
                Change::Transition(t) => {
                    inner.last_transition += 1;
                    inner.transitions.insert(inner.last_transition, t.clone());
                }
                Change::Event(e) => {
                    inner.last_event += 1;
                    inner.events.insert(inner.last_event, e.clone());
                }
                Change::PutExternalEvent(e) => {
                    inner.external_events.insert(e.name.clone(), e.clone());
                }
                Change::DeleteExternalEvent { name } => {
                    inner.external_events.remove(name);
                }
                Change::PutProfile(p) => {
                    inner.profiles.insert(p.name.clone(), p.clone());
                }
                Change::DeleteProfile { name } => {
                    inner.profiles.remove(name);
                }
                Change::PutRouter(r) => {
                    inner.routers.insert(r.name.clone(), r.clone());
                }
                Change::DeleteRouter { name } => {
                    inner.routers.remove(name);
                }
            }
        }
        inner.commits += 1;
        Ok(())
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError> {
        Ok(page(&self.lock().events, after, limit))
    }

    fn transitions(&self, after: u64, limit: usize) -> Result<Vec<(u64, Transition)>, StoreError> {
        Ok(page(&self.lock().transitions, after, limit))
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let inner = self.lock();
        Ok(StoreCounts {
            events: inner.events.len() as u64,
            transitions: inner.transitions.len() as u64,
            leases: inner.leases.len() as u64,
            shards: inner.shards.len() as u64,
        })
    }

    fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError> {
        Ok(self.lock().external_events.values().cloned().collect())
    }

    fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        Ok(self.lock().profiles.values().cloned().collect())
    }

    fn routers(&self) -> Result<Vec<RouterSpec>, StoreError> {
        Ok(self.lock().routers.values().cloned().collect())
    }
}
