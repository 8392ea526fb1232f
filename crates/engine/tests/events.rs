//! Scheduled external events through the engine: checks, create-or-replace, delete, the
//! configuration sync, failed commits and reopen.

use std::sync::Arc;

use cidrcast_core::model::{ExternalEventSpec, PoolSpec, SubdivisionSpec};
use cidrcast_core::{CoreError, Settings};
use cidrcast_engine::{Engine, EngineError};
use cidrcast_store::{MemoryStore, RedbStore, Store};

fn pool() -> PoolSpec {
    PoolSpec::new("v4", "10.0.0.0/16".parse().unwrap(), 26)
}

fn sub(name: &str, parent: Option<&str>) -> SubdivisionSpec {
    SubdivisionSpec {
        parent: parent.map(str::to_string),
        ..SubdivisionSpec::new(name)
    }
}

fn event(name: &str, scope: &str) -> ExternalEventSpec {
    ExternalEventSpec {
        name: name.to_string(),
        start: 100.0,
        end: 200.0,
        scope: scope.to_string(),
        extra_vms: Some(5.0),
        multiplier: None,
    }
}

fn engine() -> (Arc<MemoryStore>, Engine<Arc<MemoryStore>>) {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open(store.clone(), Settings::default()).unwrap();
    engine
        .ensure_config(&[pool()], &[sub("eu", None), sub("eu-a", Some("eu"))])
        .unwrap();
    (store, engine)
}

#[test]
fn put_replace_list_delete() {
    let (store, engine) = engine();
    assert!(engine.events().unwrap().is_empty());
    assert_eq!(engine.put_event(event("launch", "eu-a")).unwrap(), None);
    assert_eq!(engine.put_event(event("all", "*")).unwrap(), None);
    let names: Vec<String> = engine
        .events()
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["all", "launch"], "sorted by name");
    assert_eq!(store.external_events().unwrap().len(), 2, "durable");

    let replaced = ExternalEventSpec {
        multiplier: Some(2.0),
        ..event("launch", "eu")
    };
    let previous = engine.put_event(replaced.clone()).unwrap();
    assert_eq!(previous, Some(event("launch", "eu-a")));
    assert_eq!(engine.events().unwrap()[1], replaced);
    // Putting the same event again commits nothing.
    let commits = store.commits();
    assert_eq!(
        engine.put_event(replaced.clone()).unwrap(),
        Some(replaced.clone())
    );
    assert_eq!(store.commits(), commits);

    assert_eq!(engine.delete_event("launch").unwrap(), replaced);
    assert_eq!(engine.events().unwrap(), vec![event("all", "*")]);
    assert_eq!(store.external_events().unwrap(), vec![event("all", "*")]);
}

#[test]
fn refusals_name_the_field_and_change_nothing() {
    let (store, engine) = engine();
    engine.put_event(event("keep", "eu")).unwrap();
    let before = store.external_events().unwrap();
    let commits = store.commits();

    let err = engine.put_event(event("x", "nowhere")).unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::InvalidEvent { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "event `x`: scope = \"nowhere\": unknown subdivision (use \"*\" for every subdivision)"
    );
    let err = engine
        .put_event(ExternalEventSpec {
            end: 50.0,
            ..event("x", "eu")
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "event `x`: end = 50: must be greater than start = 100"
    );
    let err = engine
        .put_event(ExternalEventSpec {
            multiplier: Some(0.0),
            ..event("x", "eu")
        })
        .unwrap_err();
    assert!(err.to_string().contains("multiplier = 0"), "{err}");
    let err = engine
        .put_event(ExternalEventSpec {
            extra_vms: None,
            ..event("x", "eu")
        })
        .unwrap_err();
    assert!(err.to_string().contains("no effect"), "{err}");

    let err = engine.delete_event("missing").unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::UnknownEvent(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "unknown event `missing`");

    assert_eq!(store.external_events().unwrap(), before);
    assert_eq!(store.commits(), commits, "nothing was committed");
}

#[test]
fn a_failed_commit_leaves_the_events_as_they_were() {
    let (store, engine) = engine();
    engine.put_event(event("a", "eu")).unwrap();
    store.fail_next_commits(1);
    let err = engine.put_event(event("b", "eu")).unwrap_err();
    assert!(matches!(err, EngineError::CommitFailed(_)), "{err:?}");
    store.fail_next_commits(1);
    let err = engine.delete_event("a").unwrap_err();
    assert!(matches!(err, EngineError::CommitFailed(_)), "{err:?}");
    assert_eq!(engine.events().unwrap(), vec![event("a", "eu")]);
    assert_eq!(store.external_events().unwrap(), vec![event("a", "eu")]);
    // And the engine goes on.
    engine.put_event(event("b", "eu")).unwrap();
    assert_eq!(engine.events().unwrap().len(), 2);
}

#[test]
fn event_changes_share_the_group_commit_with_allocations() {
    let (store, engine) = engine();
    let engine = Arc::new(engine);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    if t == 0 {
                        engine.put_event(event(&format!("e{i}"), "*")).unwrap();
                    } else {
                        let vm = format!("t{t}-{i}");
                        engine
                            .execute(|ipam, now| ipam.allocate("eu-a", &vm, None, None, now))
                            .unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(engine.events().unwrap().len(), 25);
    assert_eq!(store.external_events().unwrap().len(), 25);
    assert_eq!(store.counts().unwrap().leases, 75);
}

#[test]
fn ensure_events_creates_or_replaces_by_name_all_or_nothing() {
    let (store, engine) = engine();
    engine.put_event(event("from-cli", "eu")).unwrap();
    engine.put_event(event("launch", "eu")).unwrap();
    let launch = ExternalEventSpec {
        multiplier: Some(1.5),
        ..event("launch", "eu-a")
    };
    engine
        .ensure_events(&[launch.clone(), event("sale", "*")])
        .unwrap();
    assert_eq!(
        engine.events().unwrap(),
        vec![event("from-cli", "eu"), launch.clone(), event("sale", "*")],
        "created, replaced, and the CLI's event kept"
    );
    // Identical: nothing to commit.
    let commits = store.commits();
    engine
        .ensure_events(&[launch.clone(), event("sale", "*")])
        .unwrap();
    assert_eq!(store.commits(), commits);

    // One bad event: nothing of the batch is applied.
    let before = store.external_events().unwrap();
    let err = engine
        .ensure_events(&[event("new", "eu"), event("bad", "nowhere")])
        .unwrap_err();
    assert!(err.to_string().contains("scope = \"nowhere\""), "{err}");
    let err = engine
        .ensure_events(&[event("twice", "eu"), event("twice", "*")])
        .unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
    assert_eq!(store.external_events().unwrap(), before);
    assert_eq!(engine.events().unwrap(), before);
}

#[test]
fn events_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let engine =
            Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
        engine.ensure_config(&[pool()], &[sub("eu", None)]).unwrap();
        engine.put_event(event("a", "eu")).unwrap();
        engine.put_event(event("b", "*")).unwrap();
        engine.delete_event("a").unwrap();
    }
    let engine = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(engine.events().unwrap(), vec![event("b", "*")]);
    assert_eq!(engine.delete_event("b").unwrap(), event("b", "*"));
    assert!(engine.events().unwrap().is_empty());
}
