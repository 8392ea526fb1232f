//! Nested subdivisions: children's shards live inside the parent's home block (the core grows
//! it by its buddy), and the plan reports the family's aggregate.

mod common;

use cidrcast_planner::{apply, plan, subtree_routes, Aggregate, Demand, PlannerConfig};
use common::{child, home, ipam, net, nets, pool61, sub};

#[test]
fn two_full_racks_aggregate_into_the_parents_block() {
    let mut state = ipam(
        &[pool61("v4", "10.0.0.0/16")],
        &[sub("eu"), child("rack1", "eu"), child("rack2", "eu")],
    );
    // rack1: 240 -> 4 shards (4 × 61 = 244); rack2: 200 -> 4 shards. eu gets its home block
    // first (4 shards: 10.0.0.0/24), rack1's home takes all of it; for rack2's home eu's block
    // doubles by its buddy 10.0.1.0/24. Each rack fills its /24; eu's family is one /23.
    let demands = [
        Demand::new("rack1", 240.0, 240.0, 2.0),
        Demand::new("rack2", 200.0, 200.0, 1.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 0.0).unwrap();
    assert_eq!(p.targets[0].routes, nets(&["10.0.0.0/24"]));
    assert_eq!(p.targets[1].routes, nets(&["10.0.1.0/24"]));
    assert_eq!(
        p.aggregates,
        [Aggregate {
            subdivision: "eu".into(),
            pool: "v4".into(),
            wanted_shards: 8,
            shards: 8,
            block: Some(net("10.0.0.0/23")),
            block_shards: 8,
            routes: nets(&["10.0.0.0/23"]),
            outside: vec![],
        }]
    );
    apply(&mut state, &p, 0.0).unwrap();
    assert_eq!(
        subtree_routes(&state, "eu").unwrap(),
        nets(&["10.0.0.0/23"])
    );
    assert_eq!(
        subtree_routes(&state, "rack2").unwrap(),
        nets(&["10.0.1.0/24"])
    );
    // eu itself holds no shard: only the family cover says what a router above announces.
    assert!(state.routes("eu", &[]).unwrap().is_empty());
    assert_eq!(
        subtree_routes(&state, "nope").unwrap_err().to_string(),
        "unknown subdivision `nope`"
    );
}

#[test]
fn a_parent_with_its_own_demand_holds_its_shards_beside_its_childrens_blocks() {
    let state = ipam(
        &[pool61("v4", "10.0.0.0/16")],
        &[sub("eu"), child("rack1", "eu"), child("rack2", "eu")],
    );
    // eu (score 3) first: home 10.0.0.0/24, its shard 10.0.0.0/26. rack1's 4-shard home no
    // longer fits in eu's block: eu doubles to 10.0.0.0/23 and rack1 gets 10.0.1.0/24; rack2
    // likewise doubles eu to 10.0.0.0/22 and gets 10.0.2.0/24. The family wants 1 + 4 + 4 = 9
    // shards, in a 16-shard block; its cover is 3 routes.
    let demands = [
        Demand::new("eu", 61.0, 61.0, 3.0),
        Demand::new("rack1", 240.0, 240.0, 2.0),
        Demand::new("rack2", 200.0, 200.0, 1.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 0.0).unwrap();
    let routes: Vec<(&str, Vec<ipnet::IpNet>)> = p
        .targets
        .iter()
        .map(|t| (t.subdivision.as_str(), t.routes.clone()))
        .collect();
    assert_eq!(
        routes,
        [
            ("eu", nets(&["10.0.0.0/26"])),
            ("rack1", nets(&["10.0.1.0/24"])),
            ("rack2", nets(&["10.0.2.0/24"])),
        ]
    );
    assert_eq!(
        p.aggregates,
        [Aggregate {
            subdivision: "eu".into(),
            pool: "v4".into(),
            wanted_shards: 9,
            shards: 9,
            block: Some(net("10.0.0.0/22")),
            block_shards: 16,
            routes: nets(&["10.0.0.0/26", "10.0.1.0/24", "10.0.2.0/24"]),
            outside: vec![],
        }]
    );
}

#[test]
fn a_child_that_must_borrow_outside_the_parents_block_is_reported() {
    // A /24 pool (4 shards). x (score 3) takes .0/26 as its 1-shard home. eu's 1-shard home goes
    // in the largest free block: .128/26, and rack1's inside it. rack1 (183 -> 3 shards): .128,
    // then eu and rack1 double to .128/25 and rack1 takes .192; the next doubling needs .0/25,
    // where x lives: the third shard is borrowed from the pool, .64/26, outside eu's block.
    let eu = home("eu", 1);
    let mut rack1 = child("rack1", "eu");
    rack1.home_shards = Some(1);
    let state = ipam(&[pool61("v4", "10.0.0.0/24")], &[home("x", 1), eu, rack1]);
    let demands = [
        Demand::new("x", 61.0, 61.0, 3.0),
        Demand::new("rack1", 183.0, 183.0, 2.0),
    ];
    let p = plan(&state, &demands, &PlannerConfig::default(), 0.0).unwrap();
    assert!(p.shortfalls.is_empty());
    assert_eq!(
        p.targets[1].routes,
        nets(&["10.0.0.64/26", "10.0.0.128/25"])
    );
    assert_eq!(
        p.aggregates,
        [Aggregate {
            subdivision: "eu".into(),
            pool: "v4".into(),
            wanted_shards: 3,
            shards: 3,
            block: Some(net("10.0.0.128/25")),
            block_shards: 2,
            routes: nets(&["10.0.0.64/26", "10.0.0.128/25"]),
            outside: nets(&["10.0.0.64/26"]),
        }]
    );
}
