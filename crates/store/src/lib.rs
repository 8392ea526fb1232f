//! cidrcast store: durable storage of the domain records behind one trait.
//!
//! The core allocator journals every mutation as [`Change`] records; a [`Store`] commits a batch of
//! them atomically and durably, and [`Store::load`] returns a [`Snapshot`] of everything live to
//! rebuild the allocator after a restart. Two append-only logs sit beside the live records: the VM
//! event history ([`Change::Event`]) and the shard transition log ([`Change::Transition`]), each
//! numbered by the store with sequence numbers starting at 1. Scheduled external events
//! ([`ExternalEventSpec`], written by [`Change::PutExternalEvent`] / [`Change::DeleteExternalEvent`])
//! are kept in a table of their own, keyed by name, outside the [`Snapshot`]; read them with
//! [`Store::external_events`]. So are application profiles ([`Profile`], [`Change::PutProfile`] /
//! [`Change::DeleteProfile`], read with [`Store::profiles`]) and routers ([`RouterSpec`],
//! [`Change::PutRouter`] / [`Change::DeleteRouter`], read with [`Store::routers`]).
//!
//! Backends:
//! * [`RedbStore`]: the embedded default, one [redb](https://docs.rs/redb) file `cidrcast.redb` in a
//!   directory, one fsynced write transaction per commit.
//! * [`MemoryStore`]: the same semantics in memory, with failure injection for tests.
//! * `EtcdStore` (cargo feature `etcd`, off by default because building the etcd client needs
//!   `protoc`): the records in an etcd v3 cluster under a key prefix, so that several cidrcast
//!   daemons can share one state. Every commit is one etcd transaction guarded by the revisions
//!   the store last read (compare-and-swap): a writer working from a stale view gets
//!   [`StoreError::Conflict`], reloads and retries, instead of overwriting another writer's
//!   leases, cooling addresses, shard placements or sequence numbers. etcd must run with raised
//!   transaction limits (e.g. `--max-txn-ops 131072 --max-request-bytes 33554432`): a group
//!   commit is one transaction. Key layout, limits and error handling in the `etcd_store` module
//!   docs (see `EtcdStore`).
//!
//! [`conformance`] is the suite every backend must pass; it is public so that other crates run the
//! very same checks.
//!
//! # Semantics shared by every backend
//! * Changes of a batch apply in order (a put then a delete of the same key in one batch leaves
//!   nothing); puts overwrite; deletes of missing keys are no-ops.
//! * A batch is all or nothing: after `Err`, no change of it is visible and no sequence number was
//!   consumed.
//! * Times (and the numbers of external events and profiles) must be finite, and a router's
//!   `config_path` valid UTF-8: a record holding a NaN or infinite number, or such a path, is
//!   refused with [`StoreError::Invalid`] (JSON cannot represent it, so it could not be loaded
//!   back).
//! * Group commit is the caller's job: one `commit` call is one transaction (one fsync in
//!   [`RedbStore`]), whatever the size of the batch.
//! * A shared backend (etcd) may also refuse a batch with [`StoreError::Conflict`] (another writer
//!   changed what the batch depends on: reload and retry) or [`StoreError::Unavailable`] (its
//!   message says whether the outcome of the commit is unknown); the embedded ones never do.

use std::sync::Arc;

use cidrcast_core::model::{
    Change, ExternalEventSpec, Profile, RouterSpec, Snapshot, Transition, VmEvent,
};

pub mod conformance;
mod error;
#[cfg(feature = "etcd")]
pub mod etcd_store;
#[cfg(feature = "etcd")]
pub mod etcd_testing;
mod memory;
mod redb_store;

pub use error::StoreError;
/// The etcd client the backend uses (for coordination beside the store, on the same version).
#[cfg(feature = "etcd")]
pub use etcd_client;
#[cfg(feature = "etcd")]
pub use etcd_store::{EtcdOptions, EtcdStore, EtcdTls};
pub use memory::MemoryStore;
pub use redb_store::{RedbOptions, RedbStore, DB_FILE_NAME, SCHEMA_VERSION};

/// Sizes of what a store holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// VM events in the history.
    pub events: u64,
    /// Entries of the shard transition log.
    pub transitions: u64,
    /// Live leases.
    pub leases: u64,
    /// Non-free shards.
    pub shards: u64,
}

/// Durable storage of the domain records. See the crate docs for the shared semantics.
pub trait Store: Send + Sync + 'static {
    /// Everything live (pools, subdivisions, homes, shards, leases, cooling), in any order; call
    /// [`Snapshot::normalize`] to compare.
    fn load(&self) -> Result<Snapshot, StoreError>;

    /// Applies the batch atomically and durably: after `Ok`, it survives a crash (SIGKILL, power
    /// loss); after `Err`, nothing of the batch is visible. Puts overwrite, deletes of missing keys
    /// are no-ops. Events and transitions are appended with increasing sequence numbers (each log
    /// starting at 1). An empty batch is a no-op.
    fn commit(&self, batch: &[Change]) -> Result<(), StoreError>;

    /// VM history: up to `limit` events with seq > `after`, in order, with their seq.
    fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError>;

    /// Shard transition log: up to `limit` entries with seq > `after`, in order, with their seq.
    fn transitions(&self, after: u64, limit: usize) -> Result<Vec<(u64, Transition)>, StoreError>;

    /// Number of events, transitions, live leases and non-free shards stored.
    fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// Every scheduled external event, sorted by name (empty when none was ever stored).
    fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError>;

    /// Every application profile, sorted by name (empty when none was ever stored).
    fn profiles(&self) -> Result<Vec<Profile>, StoreError>;

    /// Every router, sorted by name (empty when none was ever stored).
    fn routers(&self) -> Result<Vec<RouterSpec>, StoreError>;
}

macro_rules! forward_store {
    ($($ty:ty),*) => {$(
        impl<S: Store + ?Sized> Store for $ty {
            fn load(&self) -> Result<Snapshot, StoreError> {
                (**self).load()
            }
            fn commit(&self, batch: &[Change]) -> Result<(), StoreError> {
                (**self).commit(batch)
            }
            fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError> {
                (**self).events(after, limit)
            }
            fn transitions(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<(u64, Transition)>, StoreError> {
                (**self).transitions(after, limit)
            }
            fn counts(&self) -> Result<StoreCounts, StoreError> {
                (**self).counts()
            }
            fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError> {
                (**self).external_events()
            }
            fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
                (**self).profiles()
            }
            fn routers(&self) -> Result<Vec<RouterSpec>, StoreError> {
                (**self).routers()
            }
        }
    )*};
}

forward_store!(Arc<S>, Box<S>);

/// Table names, shared by the backends and their error messages.
pub(crate) mod table {
    pub const POOLS: &str = "pools";
    pub const SUBDIVISIONS: &str = "subdivisions";
    pub const HOMES: &str = "homes";
    pub const SHARDS: &str = "shards";
    pub const LEASES: &str = "leases";
    pub const COOLING: &str = "cooling";
    pub const EVENTS: &str = "events";
    pub const TRANSITIONS: &str = "transitions";
    pub const META: &str = "meta";
    pub const EXTERNAL_EVENTS: &str = "external_events";
    pub const PROFILES: &str = "profiles";
    pub const ROUTERS: &str = "routers";
}

/// Refuses changes that could not be stored and loaded back faithfully.
pub(crate) fn validate(change: &Change) -> Result<(), StoreError> {
    /// `value` must be finite; `what` is `times` or `numbers`, for the message.
    fn finite(
        value: f64,
        what: &str,
        table: &'static str,
        field: &str,
        key: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        if value.is_finite() {
            Ok(())
        } else {
            Err(StoreError::Invalid {
                table,
                key: key(),
                reason: format!("{field} is {value}, {what} must be finite"),
            })
        }
    }
    fn time(
        value: f64,
        table: &'static str,
        field: &str,
        key: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        finite(value, "times", table, field, key)
    }
    fn number(
        value: f64,
        table: &'static str,
        field: &str,
        key: impl FnOnce() -> String,
    ) -> Result<(), StoreError> {
        finite(value, "numbers", table, field, key)
    }
    match change {
        Change::PutShard(s) => time(s.since, table::SHARDS, "since", || {
            format!("({}, {})", s.pool, s.prefix)
        }),
        Change::PutLease(l) => time(l.created, table::LEASES, "created", || l.vm_id.clone()),
        Change::PutCooling(c) => time(c.until, table::COOLING, "until", || {
            format!("({}, {})", c.pool, c.address)
        }),
        Change::Transition(t) => time(t.time, table::TRANSITIONS, "time", || {
            format!("({}, {}) at the next seq", t.pool, t.prefix)
        }),
        Change::Event(e) => time(e.time, table::EVENTS, "time", || {
            format!("{} {} at the next seq", e.kind, e.vm_id)
        }),
        Change::PutExternalEvent(e) => {
            let key = || e.name.clone();
            time(e.start, table::EXTERNAL_EVENTS, "start", key)?;
            time(e.end, table::EXTERNAL_EVENTS, "end", key)?;
            if let Some(x) = e.extra_vms {
                number(x, table::EXTERNAL_EVENTS, "extra_vms", key)?;
            }
            if let Some(m) = e.multiplier {
                number(m, table::EXTERNAL_EVENTS, "multiplier", key)?;
            }
            Ok(())
        }
        Change::PutProfile(p) => {
            let key = || p.name.clone();
            number(p.memory_gib, table::PROFILES, "memory_gib", key)?;
            number(p.network_mbps, table::PROFILES, "network_mbps", key)
        }
        Change::PutRouter(r) => match &r.config_path {
            Some(path) if path.to_str().is_none() => Err(StoreError::Invalid {
                table: table::ROUTERS,
                key: r.name.clone(),
                reason: format!(
                    "config_path {} is not valid UTF-8, which JSON cannot hold",
                    path.display()
                ),
            }),
            _ => Ok(()),
        },
        Change::PutPool(_)
        | Change::DeletePool { .. }
        | Change::PutSubdivision(_)
        | Change::DeleteSubdivision { .. }
        | Change::PutHome(_)
        | Change::DeleteHome { .. }
        | Change::DeleteShard { .. }
        | Change::DeleteLease { .. }
        | Change::DeleteCooling { .. }
        | Change::DeleteExternalEvent { .. }
        | Change::DeleteProfile { .. }
        | Change::DeleteRouter { .. } => Ok(()),
    }
}
