//! Application profiles and routers through the engine: checks, create-or-replace, delete, the
//! configuration sync, failed commits and reopen.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;

use cidrcast_core::model::{
    ExternalEventSpec, Flavor, Neighbor, PoolSpec, Profile, RouterSpec, SubdivisionSpec,
};
use cidrcast_core::{CoreError, Settings, MAX_PROFILES};
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

fn profile(name: &str, vcpus: u32) -> Profile {
    Profile {
        name: name.to_string(),
        vcpus,
        memory_gib: 2.0 * f64::from(vcpus),
        network_mbps: 100.0,
        description: Some(format!("{vcpus} vCPUs")),
    }
}

fn router(name: &str, subdivisions: &[&str]) -> RouterSpec {
    RouterSpec {
        name: name.to_string(),
        flavor: Flavor::Frr,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        asn: 64512,
        neighbors: vec![Neighbor {
            address: "192.0.2.2".parse().unwrap(),
            asn: 64513,
        }],
        subdivisions: subdivisions.iter().map(|s| s.to_string()).collect(),
        config_path: Some(PathBuf::from(format!("/etc/frr/{name}.conf"))),
        reload_command: Some("systemctl reload frr".to_string()),
        policy: Default::default(),
    }
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| name(i).to_string()).collect()
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
fn profiles_put_replace_list_delete_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let big = Profile {
        memory_gib: 64.5,
        description: None,
        ..profile("general", 16)
    };
    {
        let engine =
            Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
        assert!(engine.profiles().unwrap().is_empty());
        assert_eq!(engine.put_profile(profile("small", 1)).unwrap(), None);
        assert_eq!(engine.put_profile(profile("general", 4)).unwrap(), None);
        assert_eq!(engine.put_profile(profile("large", 32)).unwrap(), None);
        assert_eq!(
            names(&engine.profiles().unwrap(), |p| &p.name),
            ["general", "large", "small"],
            "sorted by name"
        );
        assert_eq!(
            engine.put_profile(big.clone()).unwrap(),
            Some(profile("general", 4)),
            "replacing returns the previous profile"
        );
        assert_eq!(
            engine.delete_profile("large").unwrap(),
            profile("large", 32)
        );
        assert_eq!(
            engine.store().profiles().unwrap(),
            vec![big.clone(), profile("small", 1)],
            "durable when the calls return"
        );
    }
    let engine = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(
        engine.profiles().unwrap(),
        vec![big.clone(), profile("small", 1)]
    );
    assert_eq!(engine.delete_profile("general").unwrap(), big);
    drop(engine);
    let engine = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(engine.profiles().unwrap(), vec![profile("small", 1)]);
}

#[test]
fn routers_put_replace_list_delete_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let moved = RouterSpec {
        flavor: Flavor::Bird,
        asn: 65000,
        ..router("edge", &["eu-a", "eu"])
    };
    {
        let engine =
            Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
        engine
            .ensure_config(&[pool()], &[sub("eu", None), sub("eu-a", Some("eu"))])
            .unwrap();
        assert!(engine.routers().unwrap().is_empty());
        assert_eq!(engine.put_router(router("edge", &["eu"])).unwrap(), None);
        assert_eq!(engine.put_router(router("core", &[])).unwrap(), None);
        assert_eq!(
            names(&engine.routers().unwrap(), |r| &r.name),
            ["core", "edge"]
        );
        assert_eq!(
            engine.put_router(moved.clone()).unwrap(),
            Some(router("edge", &["eu"]))
        );
        assert_eq!(engine.delete_router("core").unwrap(), router("core", &[]));
    }
    let engine = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert_eq!(engine.routers().unwrap(), vec![moved.clone()]);
    assert_eq!(engine.store().routers().unwrap(), vec![moved.clone()]);
    assert_eq!(engine.delete_router("edge").unwrap(), moved);
    drop(engine);
    let engine = Engine::open(RedbStore::open(dir.path()).unwrap(), Settings::default()).unwrap();
    assert!(engine.routers().unwrap().is_empty());
}

#[test]
fn putting_an_identical_record_commits_nothing() {
    let (store, engine) = engine();
    engine.put_profile(profile("web", 2)).unwrap();
    engine.put_router(router("edge", &["eu"])).unwrap();
    let commits = store.commits();
    assert_eq!(
        engine.put_profile(profile("web", 2)).unwrap(),
        Some(profile("web", 2))
    );
    assert_eq!(
        engine.put_router(router("edge", &["eu"])).unwrap(),
        Some(router("edge", &["eu"]))
    );
    assert_eq!(store.commits(), commits);
}

#[test]
fn profiles_routers_and_events_of_one_name_are_apart() {
    let (store, engine) = engine();
    engine.put_profile(profile("x", 1)).unwrap();
    engine.put_router(router("x", &[])).unwrap();
    engine
        .put_event(ExternalEventSpec {
            name: "x".to_string(),
            start: 1.0,
            end: 2.0,
            scope: "*".to_string(),
            extra_vms: Some(1.0),
            multiplier: None,
        })
        .unwrap();
    engine.delete_router("x").unwrap();
    assert_eq!(engine.profiles().unwrap(), vec![profile("x", 1)]);
    assert_eq!(engine.events().unwrap().len(), 1);
    assert!(engine.routers().unwrap().is_empty());
    engine.delete_profile("x").unwrap();
    assert_eq!(store.external_events().unwrap().len(), 1);
    assert!(store.profiles().unwrap().is_empty() && store.routers().unwrap().is_empty());
}

#[test]
fn refusals_name_the_field_and_change_nothing() {
    let (store, engine) = engine();
    engine.put_profile(profile("keep", 2)).unwrap();
    engine.put_router(router("keep", &["eu"])).unwrap();
    let (profiles, routers) = (store.profiles().unwrap(), store.routers().unwrap());
    let commits = store.commits();

    let err = engine.put_profile(profile("none", 0)).unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::InvalidProfile { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "profile `none`: vcpus = 0: a VM has at least 1 vCPU"
    );
    let err = engine
        .put_profile(Profile {
            memory_gib: f64::NAN,
            ..profile("keep", 2)
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "profile `keep`: memory_gib = NaN: must be a finite number of GiB > 0"
    );
    let err = engine.put_profile(profile("a b", 1)).unwrap_err();
    assert!(err.to_string().contains("name = \"a b\""), "{err}");

    let err = engine
        .put_router(RouterSpec {
            asn: 0,
            ..router("keep", &["eu"])
        })
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::InvalidRouter { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "router `keep`: asn = 0: AS number 0 is reserved; use 1 to 4294967295"
    );
    let err = engine
        .put_router(RouterSpec {
            router_id: Ipv4Addr::UNSPECIFIED,
            ..router("new", &[])
        })
        .unwrap_err();
    assert!(err.to_string().contains("router_id = \"0.0.0.0\""), "{err}");
    let err = engine
        .put_router(router("keep", &["eu", "eu"]))
        .unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");

    // Every subdivision a router lists must exist; the error names the first missing one.
    let err = engine
        .put_router(router("new", &["eu", "asia", "us"]))
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::InvalidRouter { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "router `new`: subdivisions = \"asia\": unknown subdivision"
    );

    let err = engine.delete_profile("missing").unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::UnknownProfile(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "unknown profile `missing`");
    let err = engine.delete_router("missing").unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::UnknownRouter(_))),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "unknown router `missing`");

    assert_eq!(store.profiles().unwrap(), profiles);
    assert_eq!(store.routers().unwrap(), routers);
    assert_eq!(engine.profiles().unwrap(), profiles);
    assert_eq!(engine.routers().unwrap(), routers);
    assert_eq!(store.commits(), commits, "nothing was committed");
}

#[test]
fn a_failed_commit_leaves_nothing() {
    let (store, engine) = engine();
    engine.put_profile(profile("a", 1)).unwrap();
    engine.put_router(router("a", &["eu"])).unwrap();
    let (profiles, routers) = (store.profiles().unwrap(), store.routers().unwrap());

    let attempts: Vec<Box<dyn Fn() -> Result<(), EngineError>>> = vec![
        Box::new(|| engine.put_profile(profile("b", 2)).map(drop)),
        Box::new(|| engine.put_profile(profile("a", 8)).map(drop)),
        Box::new(|| engine.delete_profile("a").map(drop)),
        Box::new(|| engine.put_router(router("b", &["eu-a"])).map(drop)),
        Box::new(|| engine.put_router(router("a", &[])).map(drop)),
        Box::new(|| engine.delete_router("a").map(drop)),
        Box::new(|| engine.ensure_profiles(&[profile("c", 1)])),
        Box::new(|| engine.ensure_routers(&[router("c", &["eu"])])),
    ];
    for (i, attempt) in attempts.iter().enumerate() {
        store.fail_next_commits(1);
        let err = attempt().unwrap_err();
        assert!(
            matches!(err, EngineError::CommitFailed(_)),
            "attempt {i}: {err:?}"
        );
        assert_eq!(engine.profiles().unwrap(), profiles, "attempt {i}");
        assert_eq!(engine.routers().unwrap(), routers, "attempt {i}");
        assert_eq!(store.profiles().unwrap(), profiles, "attempt {i}");
        assert_eq!(store.routers().unwrap(), routers, "attempt {i}");
    }
    // And the engine goes on.
    engine.put_profile(profile("b", 2)).unwrap();
    engine.delete_router("a").unwrap();
    assert_eq!(names(&engine.profiles().unwrap(), |p| &p.name), ["a", "b"]);
    assert!(store.routers().unwrap().is_empty());
}

#[test]
fn ensure_profiles_creates_or_replaces_by_name_all_or_nothing() {
    let (store, engine) = engine();
    engine.put_profile(profile("from-api", 3)).unwrap();
    engine.put_profile(profile("general", 4)).unwrap();
    let general = Profile {
        network_mbps: 1000.0,
        ..profile("general", 4)
    };
    engine
        .ensure_profiles(&[profile("small", 1), general.clone()])
        .unwrap();
    assert_eq!(
        engine.profiles().unwrap(),
        vec![profile("from-api", 3), general.clone(), profile("small", 1)],
        "created, replaced, and the API's profile kept"
    );
    assert_eq!(store.profiles().unwrap(), engine.profiles().unwrap());
    // Identical: nothing to commit.
    let commits = store.commits();
    engine
        .ensure_profiles(&[general.clone(), profile("small", 1)])
        .unwrap();
    assert_eq!(store.commits(), commits);

    // One bad profile, or a name given twice: nothing of the batch is applied.
    let before = store.profiles().unwrap();
    let err = engine
        .ensure_profiles(&[profile("new", 2), profile("small", 0)])
        .unwrap_err();
    assert!(err.to_string().contains("vcpus = 0"), "{err}");
    let err = engine
        .ensure_profiles(&[profile("twice", 2), profile("twice", 4)])
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::InvalidProfile { .. })),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "profile `twice`: name is given twice");
    assert_eq!(store.profiles().unwrap(), before);
    assert_eq!(engine.profiles().unwrap(), before);
    assert_eq!(store.commits(), commits);
}

#[test]
fn ensure_routers_creates_or_replaces_by_name_all_or_nothing() {
    let (store, engine) = engine();
    engine.put_router(router("from-api", &[])).unwrap();
    engine.put_router(router("edge", &["eu"])).unwrap();
    let edge = RouterSpec {
        reload_command: None,
        ..router("edge", &["eu-a"])
    };
    engine
        .ensure_routers(&[edge.clone(), router("core", &["eu", "eu-a"])])
        .unwrap();
    assert_eq!(
        engine.routers().unwrap(),
        vec![
            router("core", &["eu", "eu-a"]),
            edge.clone(),
            router("from-api", &[])
        ],
        "created, replaced, and the API's router kept"
    );
    assert_eq!(store.routers().unwrap(), engine.routers().unwrap());
    let commits = store.commits();
    engine
        .ensure_routers(&[edge.clone(), router("core", &["eu", "eu-a"])])
        .unwrap();
    assert_eq!(store.commits(), commits, "identical: nothing to commit");

    // A router naming an unknown subdivision, or a name given twice: nothing is applied.
    let before = store.routers().unwrap();
    let err = engine
        .ensure_routers(&[router("new", &["eu"]), router("edge", &["nowhere"])])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "router `edge`: subdivisions = \"nowhere\": unknown subdivision"
    );
    let err = engine
        .ensure_routers(&[router("twice", &[]), router("twice", &["eu"])])
        .unwrap_err();
    assert_eq!(err.to_string(), "router `twice`: name is given twice");
    assert_eq!(store.routers().unwrap(), before);
    assert_eq!(engine.routers().unwrap(), before);
    assert_eq!(store.commits(), commits);
}

#[test]
fn profiles_are_limited_to_what_leases_can_name() {
    let (store, engine) = engine();
    let many: Vec<Profile> = (0..MAX_PROFILES)
        .map(|i| profile(&format!("p{i:03}"), 1))
        .collect();
    engine.ensure_profiles(&many).unwrap();
    assert_eq!(store.profiles().unwrap().len(), MAX_PROFILES);
    let err = engine.put_profile(profile("one-more", 1)).unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::Limit(_))),
        "{err:?}"
    );
    let err = engine
        .ensure_profiles(&[profile("p000", 2), profile("one-more", 1)])
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Core(CoreError::Limit(_))),
        "{err:?}"
    );
    assert_eq!(store.profiles().unwrap(), many, "nothing of a refusal");
    // Replacing one is still allowed at the limit.
    engine.put_profile(profile("p000", 2)).unwrap();
    engine.delete_profile("p001").unwrap();
    engine.put_profile(profile("one-more", 1)).unwrap();
    assert_eq!(store.profiles().unwrap().len(), MAX_PROFILES);
}

#[test]
fn catalog_changes_share_the_group_commit_with_allocations() {
    let (store, engine) = engine();
    let engine = Arc::new(engine);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    match t {
                        0 => {
                            engine.put_profile(profile(&format!("p{i}"), 1)).unwrap();
                        }
                        1 => {
                            engine
                                .put_router(router(&format!("r{i}"), &["eu"]))
                                .unwrap();
                        }
                        _ => {
                            let vm = format!("t{t}-{i}");
                            engine
                                .execute(|ipam, now| ipam.allocate("eu-a", &vm, None, None, now))
                                .unwrap();
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(engine.profiles().unwrap().len(), 25);
    assert_eq!(store.profiles().unwrap().len(), 25);
    assert_eq!(store.routers().unwrap().len(), 25);
    assert_eq!(store.counts().unwrap().leases, 50);
}
