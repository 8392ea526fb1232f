//! The shared conformance suite, run against both backends, plus backend-specific checks.

use std::path::PathBuf;

use cidrcast_core::model::Change;
use cidrcast_store::conformance::{self, event, lease, pool};
use cidrcast_store::{
    MemoryStore, RedbOptions, RedbStore, Store, StoreError, DB_FILE_NAME, SCHEMA_VERSION,
};

#[test]
fn memory_store_conforms() {
    conformance::run_all(MemoryStore::new, |store| store);
}

#[test]
fn redb_store_conforms() {
    let mut dirs = Vec::new();
    conformance::run_all(
        || {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = RedbStore::open(dir.path()).expect("open");
            dirs.push(dir);
            store
        },
        |store| {
            let dir = store.dir().to_path_buf();
            drop(store);
            let store = RedbStore::open(&dir).expect("reopen");
            assert!(!store.recovered(), "a cleanly closed store needs no repair");
            store
        },
    );
}

#[test]
fn redb_store_conforms_with_small_cache_and_quick_repair() {
    let options = RedbOptions {
        cache_bytes: 256 * 1024,
        quick_repair: true,
    };
    let mut dirs = Vec::new();
    conformance::run_all(
        || {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = RedbStore::open_with(dir.path(), options.clone()).expect("open");
            dirs.push(dir);
            store
        },
        |store| {
            let dir = store.dir().to_path_buf();
            drop(store);
            RedbStore::open_with(&dir, options.clone()).expect("reopen")
        },
    );
}

#[test]
fn shared_handles_conform() {
    conformance::run_all(
        || std::sync::Arc::new(MemoryStore::new()) as std::sync::Arc<dyn Store>,
        |store| store,
    );
}

#[test]
fn memory_failure_injection_changes_nothing() {
    let store = MemoryStore::new();
    store
        .commit(&[Change::PutLease(lease(1)), Change::Event(event(1))])
        .expect("commit");
    let before = store.load().expect("load");
    store.fail_next_commits(2);
    for _ in 0..2 {
        let err = store
            .commit(&[
                Change::PutLease(lease(2)),
                Change::DeleteLease {
                    vm_id: conformance::vm_id(1),
                },
                Change::Event(event(2)),
            ])
            .expect_err("injected failure");
        assert!(matches!(err, StoreError::Injected), "{err:?}");
        assert_eq!(store.load().expect("load"), before);
        assert_eq!(store.counts().expect("counts").events, 1);
    }
    assert_eq!(store.commits(), 1);
    store
        .commit(&[Change::Event(event(3))])
        .expect("the third commit succeeds");
    assert_eq!(store.events(0, 10).expect("events")[1], (2, event(3)));
    assert_eq!(store.commits(), 2);
}

#[test]
fn redb_creates_nested_directory_and_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a/b/c");
    let store = RedbStore::open(&dir).expect("open");
    assert_eq!(store.path(), dir.join(DB_FILE_NAME));
    assert!(store.path().is_file());
    assert_eq!(store.dir(), dir);
}

#[test]
fn redb_second_open_is_locked_and_names_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _store = RedbStore::open(tmp.path()).expect("open");
    let err = RedbStore::open(tmp.path()).expect_err("second open of the same directory");
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let message = err.to_string();
    let path = tmp.path().join(DB_FILE_NAME);
    assert!(
        message.contains(&path.display().to_string()),
        "message names the file: {message}"
    );
}

#[test]
fn redb_schema_mismatch_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(DB_FILE_NAME);
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .expect("meta");
            meta.insert("schema_version", SCHEMA_VERSION + 1)
                .expect("insert");
        }
        txn.commit().expect("commit");
    }
    let err = RedbStore::open(tmp.path()).expect_err("newer schema");
    match &err {
        StoreError::SchemaMismatch {
            path: p,
            found,
            expected,
        } => {
            assert_eq!(p, &path);
            assert_eq!((*found, *expected), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("schema version"), "{err}");
}

#[test]
fn redb_foreign_database_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(DB_FILE_NAME);
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        txn.open_table(redb::TableDefinition::<u64, u64>::new("other"))
            .expect("table");
        txn.commit().expect("commit");
    }
    let err = RedbStore::open(tmp.path()).expect_err("foreign database");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err:?}");
}

#[test]
fn redb_garbage_file_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path: PathBuf = tmp.path().join(DB_FILE_NAME);
    std::fs::write(&path, b"this is not a redb file at all, just some text").expect("write");
    let err = RedbStore::open(tmp.path()).expect_err("garbage");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn redb_directory_that_is_a_file_is_an_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").expect("write");
    let err = RedbStore::open(&file).expect_err("a file is no directory");
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
}

#[test]
fn redb_errors_keep_their_source() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _store = RedbStore::open(tmp.path()).expect("open");
    let err = RedbStore::open(tmp.path()).expect_err("locked");
    let source = std::error::Error::source(&err).expect("a source");
    assert!(!source.to_string().is_empty());
}

#[test]
fn redb_store_is_usable_as_a_trait_object() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store: Box<dyn Store> = Box::new(RedbStore::open(tmp.path()).expect("open"));
    store
        .commit(&[Change::PutPool(pool("v4", "10.0.0.0/8"))])
        .expect("commit");
    assert_eq!(store.load().expect("load").pools.len(), 1);
}

/// A database laid out by a build that had no `external_events`, `profiles` or `routers` table
/// (schema version 1 as first released): it opens, reads no external event, profile or router,
/// and the first commit of one creates its table.
#[test]
fn redb_database_without_external_events_table_opens_and_upgrades() {
    use redb::TableDefinition;
    type Json = &'static [u8];
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(DB_FILE_NAME);
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        for name in ["pools", "subdivisions", "leases"] {
            txn.open_table(TableDefinition::<&str, Json>::new(name))
                .expect("table");
        }
        for name in ["homes", "shards", "cooling"] {
            txn.open_table(TableDefinition::<(&str, &str), Json>::new(name))
                .expect("table");
        }
        for name in ["events", "transitions"] {
            txn.open_table(TableDefinition::<u64, Json>::new(name))
                .expect("table");
        }
        {
            let mut meta = txn
                .open_table(TableDefinition::<&str, u64>::new("meta"))
                .expect("meta");
            meta.insert("schema_version", SCHEMA_VERSION)
                .expect("insert");
            meta.insert("next_event_seq", 1).expect("insert");
            meta.insert("next_transition_seq", 1).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let store = RedbStore::open(tmp.path()).expect("open a database without the table");
    assert!(store
        .external_events()
        .expect("read a missing table")
        .is_empty());
    assert!(store.profiles().expect("read a missing table").is_empty());
    assert!(store.routers().expect("read a missing table").is_empty());
    // A commit without external events works and does not need the table either.
    store
        .commit(&[Change::PutLease(lease(1)), Change::Event(event(1))])
        .expect("commit");
    assert!(store.external_events().expect("external events").is_empty());
    let launch = conformance::external_event("launch", "s1", 1.0, 2.0);
    store
        .commit(&[Change::PutExternalEvent(launch.clone())])
        .expect("the first external event creates the table");
    // Profiles and routers are still missing; their first puts create their tables.
    assert!(store.profiles().expect("still missing").is_empty());
    let web = conformance::profile("web");
    store
        .commit(&[Change::PutProfile(web.clone())])
        .expect("the first profile creates the table");
    assert!(store.routers().expect("still missing").is_empty());
    let edge = conformance::router("edge");
    store
        .commit(&[Change::PutRouter(edge.clone())])
        .expect("the first router creates the table");
    drop(store);
    let store = RedbStore::open(tmp.path()).expect("reopen");
    assert_eq!(store.external_events().expect("after reopen"), vec![launch]);
    assert_eq!(store.profiles().expect("after reopen"), vec![web]);
    assert_eq!(store.routers().expect("after reopen"), vec![edge]);
    assert_eq!(store.load().expect("load").leases, vec![lease(1)]);
}

/// A failed batch that would have created the `profiles` and `routers` tables leaves the old
/// layout readable as before.
#[test]
fn redb_failed_batch_creating_catalog_tables_leaves_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join(DB_FILE_NAME);
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("begin");
        {
            let mut meta = txn
                .open_table(redb::TableDefinition::<&str, u64>::new("meta"))
                .expect("meta");
            meta.insert("schema_version", SCHEMA_VERSION)
                .expect("insert");
            meta.insert("next_event_seq", 1).expect("insert");
            meta.insert("next_transition_seq", 1).expect("insert");
        }
        txn.commit().expect("commit");
    }
    let store = RedbStore::open(tmp.path()).expect("open a database of meta only");
    let bad = cidrcast_core::model::Profile {
        memory_gib: f64::NAN,
        ..conformance::profile("bad")
    };
    let err = store
        .commit(&[
            Change::PutRouter(conformance::router("edge")),
            Change::PutProfile(conformance::profile("web")),
            Change::PutProfile(bad),
        ])
        .expect_err("a NaN is refused");
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
    assert!(store.profiles().expect("profiles").is_empty());
    assert!(store.routers().expect("routers").is_empty());
}

#[test]
fn redb_delete_of_an_external_event_in_a_database_without_the_table() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(tmp.path()).expect("open");
    store
        .commit(&[Change::DeleteExternalEvent {
            name: "missing".to_string(),
        }])
        .expect("deleting a missing event is a no-op");
    assert!(store.external_events().expect("events").is_empty());
}

#[test]
fn redb_delete_of_a_profile_or_router_that_was_never_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open(tmp.path()).expect("open");
    store
        .commit(&[
            Change::DeleteProfile {
                name: "missing".to_string(),
            },
            Change::DeleteRouter {
                name: "missing".to_string(),
            },
        ])
        .expect("deleting missing records is a no-op");
    assert!(store.profiles().expect("profiles").is_empty());
    assert!(store.routers().expect("routers").is_empty());
}
