//! [`RedbStore`]: the embedded default backend, one redb file per store directory (layout in
//! [`RedbStore`]'s docs).

use std::borrow::Borrow;
use std::fmt;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cidrcast_core::model::{
    Change, ExternalEventSpec, Profile, RouterSpec, Snapshot, Transition, VmEvent,
};
use redb::{
    Builder, Database, DatabaseError, Key, ReadTransaction, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, TableError, TableHandle, WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::table as name;
use crate::{validate, Store, StoreCounts, StoreError};

/// File name of the database inside the store directory.
pub const DB_FILE_NAME: &str = "cidrcast.redb";

/// Layout version this build reads and writes; a database with another one is refused on open.
pub const SCHEMA_VERSION: u64 = 1;

const META_SCHEMA: &str = "schema_version";
const META_NEXT_EVENT: &str = "next_event_seq";
const META_NEXT_TRANSITION: &str = "next_transition_seq";

type Json = &'static [u8];
const POOLS: TableDefinition<&str, Json> = TableDefinition::new(name::POOLS);
const SUBDIVISIONS: TableDefinition<&str, Json> = TableDefinition::new(name::SUBDIVISIONS);
const HOMES: TableDefinition<(&str, &str), Json> = TableDefinition::new(name::HOMES);
const SHARDS: TableDefinition<(&str, &str), Json> = TableDefinition::new(name::SHARDS);
const LEASES: TableDefinition<&str, Json> = TableDefinition::new(name::LEASES);
const COOLING: TableDefinition<(&str, &str), Json> = TableDefinition::new(name::COOLING);
const EVENTS: TableDefinition<u64, Json> = TableDefinition::new(name::EVENTS);
const TRANSITIONS: TableDefinition<u64, Json> = TableDefinition::new(name::TRANSITIONS);
const META: TableDefinition<&str, u64> = TableDefinition::new(name::META);
const EXTERNAL_EVENTS: TableDefinition<&str, Json> = TableDefinition::new(name::EXTERNAL_EVENTS);
const PROFILES: TableDefinition<&str, Json> = TableDefinition::new(name::PROFILES);
const ROUTERS: TableDefinition<&str, Json> = TableDefinition::new(name::ROUTERS);

/// Tuning of a [`RedbStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// Page cache of redb, in bytes. redb's own default is 1 GiB, which shows up as resident
    /// memory once the file is that large; ours is 32 MiB.
    pub cache_bytes: usize,
    /// redb's quick repair: every commit also saves the allocator state (and uses a two-phase
    /// commit, i.e. two fsyncs), so that reopening after a crash is almost instant instead of a
    /// walk of the whole file. Off by default: commits are faster, recovery is O(file size).
    pub quick_repair: bool,
}

impl Default for RedbOptions {
    fn default() -> Self {
        Self {
            cache_bytes: 32 * 1024 * 1024,
            quick_repair: false,
        }
    }
}

/// The embedded store: one redb database file, `<dir>/cidrcast.redb`, one write transaction per
/// [`Store::commit`] with redb's default `Durability::Immediate` (fsync before `commit` returns).
///
/// Only one process may have a directory open at a time (redb locks the file); a second open, from
/// another process or this one, fails with [`StoreError::Locked`]. Dropping the store closes the
/// file cleanly; after a crash the next open runs redb's repair (see [`RedbStore::recovered`]).
///
/// # Layout (schema version 1)
/// One file, `<dir>/cidrcast.redb`. Values are the records as `serde_json` bytes.
///
/// | table          | key                                   | value                 |
/// |----------------|---------------------------------------|-----------------------|
/// | `pools`        | `&str` pool name                      | `PoolSpec` json       |
/// | `subdivisions` | `&str` subdivision name               | `SubdivisionSpec` json|
/// | `homes`        | `(&str, &str)` (subdivision, pool)    | `HomeRecord` json     |
/// | `shards`       | `(&str, &str)` (pool, prefix `Display`, e.g. `10.0.0.64/26`) | `ShardRecord` json |
/// | `leases`       | `&str` vm_id                          | `LeaseRecord` json    |
/// | `cooling`      | `(&str, &str)` (pool, address `Display`) | `CoolingRecord` json |
/// | `events`       | `u64` seq (from 1)                    | `VmEvent` json        |
/// | `transitions`  | `u64` seq (from 1)                    | `Transition` json     |
/// | `meta`         | `&str`                                | `u64`                 |
/// | `external_events` | `&str` event name                  | `ExternalEventSpec` json |
/// | `profiles`     | `&str` profile name                   | `Profile` json        |
/// | `routers`      | `&str` router name                    | `RouterSpec` json     |
///
/// `meta` holds `schema_version` (checked on open), `next_event_seq` and `next_transition_seq`
/// (the seq the next appended entry gets; both start at 1). Every table is created, and `meta`
/// filled, by the first open, in one transaction.
///
/// `external_events`, `profiles` and `routers` came after the first release of schema version 1
/// and are compatible with it: a database laid out without one of them opens as is, reads of it
/// return nothing, and the first commit that puts or deletes a record of its kind creates it (in
/// that commit's transaction).
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    options: RedbOptions,
    recovered: bool,
}

impl fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .field("options", &self.options)
            .field("recovered", &self.recovered)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating it and the directory if needed) the store in `dir` with default options.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, RedbOptions::default())
    }

    /// Opens (creating it and the directory if needed) the store in `dir`.
    ///
    /// An existing database is recovered by redb itself if the last process did not close it
    /// (crash, SIGKILL, power loss): the last committed transaction is kept, anything after it is
    /// discarded. Errors: [`StoreError::Locked`] if another handle has it open,
    /// [`StoreError::SchemaMismatch`] if it was written with another layout.
    pub fn open_with(dir: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let new_dir = !dir.is_dir();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE_NAME);
        let new_file = !path.exists();
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&repaired);
        let db = Builder::new()
            .set_cache_size(options.cache_bytes)
            .set_repair_callback(move |_| flag.store(true, Ordering::Relaxed))
            .create(&path)
            .map_err(|e| match e {
                DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
                    StoreError::Locked {
                        path: path.clone(),
                        source: Box::new(e.into()),
                    }
                }
                e => StoreError::Redb {
                    path: path.clone(),
                    op: "open database".to_string(),
                    source: Box::new(e.into()),
                },
            })?;
        let store = RedbStore {
            db,
            path,
            options,
            recovered: repaired.load(Ordering::Relaxed),
        };
        store.check_schema()?;
        if new_file {
            // redb fsyncs the file, not the directory entry that names it.
            sync_dir(dir)?;
            if new_dir {
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    sync_dir(parent)?;
                }
            }
        }
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store directory (what [`RedbStore::open`] was given).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &RedbOptions {
        &self.options
    }

    /// Whether opening ran redb's full repair: the previous process did not close the database
    /// (it crashed or was killed) and its last commit was made without
    /// [`RedbOptions::quick_repair`]. The repair walks the whole file (checksums, allocator state),
    /// so it takes time proportional to the file size; worth a log line. Committed data is intact
    /// either way.
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    fn fail(&self, op: impl Into<String>, e: impl Into<redb::Error>) -> StoreError {
        StoreError::Redb {
            path: self.path.clone(),
            op: op.into(),
            source: Box::new(e.into()),
        }
    }

    fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        self.db
            .begin_read()
            .map_err(|e| self.fail("begin read transaction", e))
    }

    /// Checks the schema version, or lays out a new database.
    fn check_schema(&self) -> Result<(), StoreError> {
        let rtxn = self.begin_read()?;
        match rtxn.open_table(META) {
            Ok(meta) => match self.meta_value(&meta, META_SCHEMA)? {
                Some(SCHEMA_VERSION) => Ok(()),
                Some(found) => Err(StoreError::SchemaMismatch {
                    path: self.path.clone(),
                    found,
                    expected: SCHEMA_VERSION,
                }),
                None => Err(StoreError::NotAStore {
                    path: self.path.clone(),
                    what: format!("table {} has no {META_SCHEMA}", name::META),
                }),
            },
            Err(TableError::TableDoesNotExist(_)) => {
                let tables: Vec<String> = rtxn
                    .list_tables()
                    .map_err(|e| self.fail("list tables", e))?
                    .map(|t| t.name().to_string())
                    .collect();
                if !tables.is_empty() {
                    return Err(StoreError::NotAStore {
                        path: self.path.clone(),
                        what: format!("it has tables {tables:?} but no {} table", name::META),
                    });
                }
                drop(rtxn);
                self.initialize()
            }
            Err(e) => Err(self.fail(format!("open table {}", name::META), e)),
        }
    }

    fn initialize(&self) -> Result<(), StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| self.fail("begin write transaction (initialise)", e))?;
        {
            self.open_write(&txn, POOLS)?;
            self.open_write(&txn, SUBDIVISIONS)?;
            self.open_write(&txn, HOMES)?;
            self.open_write(&txn, SHARDS)?;
            self.open_write(&txn, LEASES)?;
            self.open_write(&txn, COOLING)?;
            self.open_write(&txn, EVENTS)?;
            self.open_write(&txn, TRANSITIONS)?;
            self.open_write(&txn, EXTERNAL_EVENTS)?;
            self.open_write(&txn, PROFILES)?;
            self.open_write(&txn, ROUTERS)?;
            let mut meta = self.open_write(&txn, META)?;
            for (key, value) in [
                (META_SCHEMA, SCHEMA_VERSION),
                (META_NEXT_EVENT, 1),
                (META_NEXT_TRANSITION, 1),
            ] {
                self.set_meta(&mut meta, key, value)?;
            }
        }
        txn.commit()
            .map_err(|e| self.fail("commit (initialise)", e))
    }

    fn open_write<'txn, K: Key + 'static, V: redb::Value + 'static>(
        &self,
        txn: &'txn WriteTransaction,
        def: TableDefinition<K, V>,
    ) -> Result<Table<'txn, K, V>, StoreError> {
        txn.open_table(def)
            .map_err(|e| self.fail(format!("open table {} for writing", def.name()), e))
    }

    /// The table in `slot`, opened for writing (and created, in a database laid out before it
    /// existed) on first use.
    fn open_lazily<'s, 'txn>(
        &self,
        slot: &'s mut Option<Table<'txn, &'static str, Json>>,
        txn: &'txn WriteTransaction,
        def: TableDefinition<&'static str, Json>,
    ) -> Result<&'s mut Table<'txn, &'static str, Json>, StoreError> {
        let table = match slot.take() {
            Some(table) => table,
            None => self.open_write(txn, def)?,
        };
        Ok(slot.insert(table))
    }

    /// Every record of a name-keyed table that may be missing (a database laid out before it
    /// existed has none: that is no record, not an error), sorted by name.
    fn read_catalog<T: DeserializeOwned>(
        &self,
        def: TableDefinition<&'static str, Json>,
        table_name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let rtxn = self.begin_read()?;
        match rtxn.open_table(def) {
            Err(TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(self.fail(format!("open table {table_name}"), e)),
            Ok(table) => {
                drop(table);
                // Keys are names; redb orders `&str` keys bytewise, as `String`'s `Ord` does.
                self.read_all(&rtxn, def, table_name)
            }
        }
    }

    fn meta_value(
        &self,
        meta: &impl ReadableTable<&'static str, u64>,
        key: &str,
    ) -> Result<Option<u64>, StoreError> {
        Ok(meta
            .get(key)
            .map_err(|e| self.fail(format!("read table {} key {key}", name::META), e))?
            .map(|g| g.value()))
    }

    fn next_seq(&self, meta: &Table<'_, &'static str, u64>, key: &str) -> Result<u64, StoreError> {
        self.meta_value(meta, key)?
            .ok_or_else(|| StoreError::NotAStore {
                path: self.path.clone(),
                what: format!("table {} has no {key}", name::META),
            })
    }

    fn set_meta(
        &self,
        meta: &mut Table<'_, &'static str, u64>,
        key: &str,
        value: u64,
    ) -> Result<(), StoreError> {
        meta.insert(key, value)
            .map_err(|e| self.fail(format!("write table {} key {key}", name::META), e))?;
        Ok(())
    }

    fn put<'k, K: Key + 'static>(
        &self,
        table: &mut Table<'_, K, Json>,
        table_name: &'static str,
        key: impl Borrow<K::SelfType<'k>>,
        record: &impl Serialize,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            table: table_name,
            key: format!("{:?}", key.borrow()),
            source,
        })?;
        table.insert(key.borrow(), bytes.as_slice()).map_err(|e| {
            self.fail(
                format!("insert into table {table_name} key {:?}", key.borrow()),
                e,
            )
        })?;
        Ok(())
    }

    fn delete<'k, K: Key + 'static>(
        &self,
        table: &mut Table<'_, K, Json>,
        table_name: &'static str,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<(), StoreError> {
        table.remove(key.borrow()).map_err(|e| {
            self.fail(
                format!("remove from table {table_name} key {:?}", key.borrow()),
                e,
            )
        })?;
        Ok(())
    }

    /// Writes the whole batch into `txn`; the caller commits, or drops (aborts) on error.
    fn write_batch(&self, txn: &WriteTransaction, batch: &[Change]) -> Result<(), StoreError> {
        let mut pools = self.open_write(txn, POOLS)?;
        let mut subdivisions = self.open_write(txn, SUBDIVISIONS)?;
        let mut homes = self.open_write(txn, HOMES)?;
        let mut shards = self.open_write(txn, SHARDS)?;
        let mut leases = self.open_write(txn, LEASES)?;
        let mut cooling = self.open_write(txn, COOLING)?;
        let mut events = self.open_write(txn, EVENTS)?;
        let mut transitions = self.open_write(txn, TRANSITIONS)?;
        let mut meta = self.open_write(txn, META)?;
        let first_event = self.next_seq(&meta, META_NEXT_EVENT)?;
        let first_transition = self.next_seq(&meta, META_NEXT_TRANSITION)?;
        let (mut next_event, mut next_transition) = (first_event, first_transition);
        // Opened (created, in a database laid out before they existed) only when a change needs
        // them.
        let (mut external, mut profiles, mut routers) = (None, None, None);

        for change in batch {
            // Validated one by one while writing, so that a refused change genuinely rolls back
            // the earlier ones (the transaction is dropped uncommitted).
            validate(change)?;
            match change {
                Change::PutPool(p) => self.put(&mut pools, name::POOLS, p.name.as_str(), p)?,
                Change::DeletePool { name: pool } => {
                    self.delete(&mut pools, name::POOLS, pool.as_str())?
                }
                Change::PutSubdivision(s) => {
                    self.put(&mut subdivisions, name::SUBDIVISIONS, s.name.as_str(), s)?
                }
                Change::DeleteSubdivision { name: sub } => {
                    self.delete(&mut subdivisions, name::SUBDIVISIONS, sub.as_str())?
                }
                Change::PutHome(h) => self.put(
                    &mut homes,
                    name::HOMES,
                    (h.subdivision.as_str(), h.pool.as_str()),
                    h,
                )?,
                Change::DeleteHome { subdivision, pool } => self.delete(
                    &mut homes,
                    name::HOMES,
                    (subdivision.as_str(), pool.as_str()),
                )?,
                Change::PutShard(s) => {
                    let prefix = s.prefix.to_string();
                    self.put(
                        &mut shards,
                        name::SHARDS,
                        (s.pool.as_str(), prefix.as_str()),
                        s,
                    )?
                }
                Change::DeleteShard { pool, prefix } => {
                    let prefix = prefix.to_string();
                    self.delete(&mut shards, name::SHARDS, (pool.as_str(), prefix.as_str()))?
                }
                Change::PutLease(l) => self.put(&mut leases, name::LEASES, l.vm_id.as_str(), l)?,
                Change::DeleteLease { vm_id } => {
                    self.delete(&mut leases, name::LEASES, vm_id.as_str())?
                }
                Change::PutCooling(c) => {
                    let address = c.address.to_string();
                    self.put(
                        &mut cooling,
                        name::COOLING,
                        (c.pool.as_str(), address.as_str()),
                        c,
                    )?
                }
                Change::DeleteCooling { pool, address } => {
                    let address = address.to_string();
                    self.delete(
                        &mut cooling,
                        name::COOLING,
                        (pool.as_str(), address.as_str()),
                    )?
                }
                Change::Transition(t) => {
                    self.put(&mut transitions, name::TRANSITIONS, next_transition, t)?;
                    next_transition += 1;
                }
                Change::Event(e) => {
                    self.put(&mut events, name::EVENTS, next_event, e)?;
                    next_event += 1;
                }
                Change::PutExternalEvent(e) => {
                    let table = self.open_lazily(&mut external, txn, EXTERNAL_EVENTS)?;
                    self.put(table, name::EXTERNAL_EVENTS, e.name.as_str(), e)?
                }
                Change::DeleteExternalEvent { name: event } => {
                    let table = self.open_lazily(&mut external, txn, EXTERNAL_EVENTS)?;
                    self.delete(table, name::EXTERNAL_EVENTS, event.as_str())?
                }
                Change::PutProfile(p) => {
                    let table = self.open_lazily(&mut profiles, txn, PROFILES)?;
                    self.put(table, name::PROFILES, p.name.as_str(), p)?
                }
                Change::DeleteProfile { name: profile } => {
                    let table = self.open_lazily(&mut profiles, txn, PROFILES)?;
                    self.delete(table, name::PROFILES, profile.as_str())?
                }
                Change::PutRouter(r) => {
                    let table = self.open_lazily(&mut routers, txn, ROUTERS)?;
                    self.put(table, name::ROUTERS, r.name.as_str(), r)?
                }
                Change::DeleteRouter { name: router } => {
                    let table = self.open_lazily(&mut routers, txn, ROUTERS)?;
                    self.delete(table, name::ROUTERS, router.as_str())?
                }
            }
        }
        if next_event != first_event {
            self.set_meta(&mut meta, META_NEXT_EVENT, next_event)?;
        }
        if next_transition != first_transition {
            self.set_meta(&mut meta, META_NEXT_TRANSITION, next_transition)?;
        }
        Ok(())
    }

    fn read_all<K: Key + 'static, T: DeserializeOwned>(
        &self,
        rtxn: &ReadTransaction,
        def: TableDefinition<K, Json>,
        table_name: &'static str,
    ) -> Result<Vec<T>, StoreError> {
        let table = rtxn
            .open_table(def)
            .map_err(|e| self.fail(format!("open table {table_name}"), e))?;
        let len = table
            .len()
            .map_err(|e| self.fail(format!("count table {table_name}"), e))?;
        let iter = table
            .iter()
            .map_err(|e| self.fail(format!("iterate table {table_name}"), e))?;
        let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for entry in iter {
            let (key, value) =
                entry.map_err(|e| self.fail(format!("iterate table {table_name}"), e))?;
            let record =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    path: self.path.clone(),
                    table: table_name,
                    key: format!("{:?}", key.value()),
                    source,
                })?;
            out.push(record);
        }
        Ok(out)
    }

    fn read_log<T: DeserializeOwned>(
        &self,
        def: TableDefinition<u64, Json>,
        table_name: &'static str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rtxn = self.begin_read()?;
        let table = rtxn
            .open_table(def)
            .map_err(|e| self.fail(format!("open table {table_name}"), e))?;
        let range = table
            .range::<u64>((Bound::Excluded(after), Bound::Unbounded))
            .map_err(|e| self.fail(format!("range over table {table_name} after {after}"), e))?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            let (seq, value) = entry.map_err(|e| {
                self.fail(format!("range over table {table_name} after {after}"), e)
            })?;
            let seq = seq.value();
            let record =
                serde_json::from_slice(value.value()).map_err(|source| StoreError::Decode {
                    path: self.path.clone(),
                    table: table_name,
                    key: seq.to_string(),
                    source,
                })?;
            out.push((seq, record));
        }
        Ok(out)
    }

    fn table_len<K: Key + 'static>(
        &self,
        rtxn: &ReadTransaction,
        def: TableDefinition<K, Json>,
    ) -> Result<u64, StoreError> {
        let table_name = def.name();
        rtxn.open_table(def)
            .map_err(|e| self.fail(format!("open table {table_name}"), e))?
            .len()
            .map_err(|e| self.fail(format!("count table {table_name}"), e))
    }
}

/// Makes the entries of `dir` durable (a new file or subdirectory in it survives a power loss).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    let result = std::fs::File::open(dir).and_then(|d| d.sync_all());
    match result {
        Ok(()) => Ok(()),
        // Some platforms/filesystems cannot open or fsync a directory; nothing more can be done.
        Err(e) if cfg!(not(unix)) || e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        Err(source) => Err(StoreError::SyncDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

impl Store for RedbStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        // One read transaction: a consistent snapshot even while commits go on.
        let rtxn = self.begin_read()?;
        Ok(Snapshot {
            pools: self.read_all(&rtxn, POOLS, name::POOLS)?,
            subdivisions: self.read_all(&rtxn, SUBDIVISIONS, name::SUBDIVISIONS)?,
            homes: self.read_all(&rtxn, HOMES, name::HOMES)?,
            shards: self.read_all(&rtxn, SHARDS, name::SHARDS)?,
            leases: self.read_all(&rtxn, LEASES, name::LEASES)?,
            cooling: self.read_all(&rtxn, COOLING, name::COOLING)?,
        })
    }

    fn commit(&self, batch: &[Change]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| self.fail("begin write transaction", e))?;
        if self.options.quick_repair {
            txn.set_quick_repair(true);
        }
        // On error `txn` is dropped uncommitted, which aborts it: nothing of the batch remains.
        self.write_batch(&txn, batch)?;
        txn.commit()
            .map_err(|e| self.fail(format!("commit of a batch of {} changes", batch.len()), e))
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError> {
        self.read_log(EVENTS, name::EVENTS, after, limit)
    }

    fn transitions(&self, after: u64, limit: usize) -> Result<Vec<(u64, Transition)>, StoreError> {
        self.read_log(TRANSITIONS, name::TRANSITIONS, after, limit)
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let rtxn = self.begin_read()?;
        Ok(StoreCounts {
            events: self.table_len(&rtxn, EVENTS)?,
            transitions: self.table_len(&rtxn, TRANSITIONS)?,
            leases: self.table_len(&rtxn, LEASES)?,
            shards: self.table_len(&rtxn, SHARDS)?,
        })
    }

    fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError> {
        self.read_catalog(EXTERNAL_EVENTS, name::EXTERNAL_EVENTS)
    }

    fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.read_catalog(PROFILES, name::PROFILES)
    }

    fn routers(&self) -> Result<Vec<RouterSpec>, StoreError> {
        self.read_catalog(ROUTERS, name::ROUTERS)
    }
}
