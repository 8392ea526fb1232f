//! A fixed state for the router tests: two pools (IPv4 /26 shards, IPv6 /64 shards), a zone
//! `eu` with a rack `eu-r1`, a zone `us`, and shards in every state.

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use cidrcast_core::model::{
    Flavor, Neighbor, PoolSpec, Reason, RouterSpec, RoutingPolicy, SubdivisionSpec,
};
use cidrcast_core::{Ipam, Settings};
use cidrcast_router::{from_state, Intent};

pub fn pools() -> Vec<PoolSpec> {
    vec![
        PoolSpec::new("v4", "10.20.0.0/16".parse().unwrap(), 26),
        PoolSpec::new("v6", "fd00:20::/48".parse().unwrap(), 64),
    ]
}

pub fn subdivisions() -> Vec<SubdivisionSpec> {
    vec![
        SubdivisionSpec {
            home_shards: Some(8),
            ..SubdivisionSpec::new("eu")
        },
        SubdivisionSpec {
            parent: Some("eu".into()),
            home_shards: Some(4),
            ..SubdivisionSpec::new("eu-r1")
        },
        SubdivisionSpec::new("us"),
    ]
}

pub fn router(name: &str, flavor: Flavor) -> RouterSpec {
    RouterSpec {
        name: name.to_string(),
        flavor,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        asn: 65001,
        neighbors: vec![
            Neighbor {
                address: "192.0.2.254".parse::<IpAddr>().unwrap(),
                asn: 65000,
            },
            Neighbor {
                address: "2001:db8::fe".parse::<IpAddr>().unwrap(),
                asn: 65000,
            },
        ],
        subdivisions: vec!["eu".into()],
        config_path: None,
        reload_command: None,
        policy: RoutingPolicy::default(),
    }
}

/// The fixed state: in `eu-r1` two active shards (buddies: one /25), one draining (with a lease),
/// one reserved; in `eu` one reserved; in `us` one active (not announced by `eu`'s router); in
/// IPv6, one active and one reserved `/64` in `eu-r1`.
pub fn state() -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    for p in pools() {
        ipam.add_pool(p).unwrap();
    }
    for s in subdivisions() {
        ipam.add_subdivision(s).unwrap();
    }
    let t = 1000.0;
    let mut shards = Vec::new();
    for (sub, pool) in [
        ("eu-r1", "v4"),
        ("eu-r1", "v4"),
        ("eu-r1", "v4"),
        ("eu-r1", "v4"),
        ("eu", "v4"),
        ("us", "v4"),
        ("eu-r1", "v6"),
        ("eu-r1", "v6"),
    ] {
        let rec = ipam
            .claim_shard(sub, Some(pool), Reason::Forecast, t)
            .unwrap();
        shards.push(rec.prefix);
    }
    for i in [0, 1, 2, 5, 6] {
        ipam.activate_shard(&shards[i], Reason::Forecast, t)
            .unwrap();
    }
    // 129 leases fill the first two /26 shards and put one lease in the third, which then
    // drains: it stays announced while that lease lives.
    for i in 0..129 {
        ipam.allocate("eu-r1", &format!("vm-{i}"), None, Some("v4"), t)
            .unwrap();
    }
    let kept = ipam.drain_shard(&shards[2], Reason::Reclaim, t).unwrap();
    assert!(
        kept.is_some(),
        "a shard with a lease drains instead of being released"
    );
    ipam
}

/// The intent of `router` over `ipam`.
pub fn intent_of(router: &RouterSpec, ipam: &Ipam) -> Intent {
    from_state(router, ipam).unwrap()
}
