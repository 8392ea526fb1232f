//! Helpers shared by the planner tests.
#![allow(dead_code)]

use cidrcast_core::model::{PoolSpec, ShardState, SubdivisionSpec};
use cidrcast_core::{Ipam, Settings};
use ipnet::IpNet;

pub fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|s| net(s)).collect()
}

/// A pool of /26 shards with 2 addresses reserved at the start and 1 at the end: 61 usable.
pub fn pool61(name: &str, prefix: &str) -> PoolSpec {
    let mut p = PoolSpec::new(name, net(prefix), 26);
    p.reserve_first = 2;
    p.reserve_last = 1;
    p
}

pub fn sub(name: &str) -> SubdivisionSpec {
    SubdivisionSpec::new(name)
}

pub fn child(name: &str, parent: &str) -> SubdivisionSpec {
    let mut s = SubdivisionSpec::new(name);
    s.parent = Some(parent.to_string());
    s
}

pub fn home(name: &str, home_shards: u32) -> SubdivisionSpec {
    let mut s = SubdivisionSpec::new(name);
    s.home_shards = Some(home_shards);
    s
}

pub fn ipam(pools: &[PoolSpec], subs: &[SubdivisionSpec]) -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    for p in pools {
        ipam.add_pool(p.clone()).unwrap();
    }
    for s in subs {
        ipam.add_subdivision(s.clone()).unwrap();
    }
    ipam.take_journal();
    ipam
}

/// (prefix, state, leases) of a subdivision's shards, by address.
pub fn shards(ipam: &Ipam, sub: &str) -> Vec<(String, ShardState, u64)> {
    ipam.shards(Some(sub))
        .unwrap()
        .into_iter()
        .map(|s| (s.record.prefix.to_string(), s.record.state, s.leases))
        .collect()
}

/// Allocates `n` VMs named `{prefix}-{i}` in `sub` at time `now`.
pub fn allocate(ipam: &mut Ipam, sub: &str, prefix: &str, range: std::ops::Range<usize>, now: f64) {
    for i in range {
        ipam.allocate(sub, &format!("{prefix}-{i}"), None, None, now)
            .unwrap();
    }
}
