//! Helpers shared by the core tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use cidrcast_core::model::{Change, PoolSpec, Snapshot, SubdivisionSpec};

pub fn pool(name: &str, prefix: &str, shard: u8) -> PoolSpec {
    PoolSpec::new(name, prefix.parse().unwrap(), shard)
}

/// A pool of shards from /`min` to /`max` (default /`shard`).
pub fn pool_sized(name: &str, prefix: &str, shard: u8, min: u8, max: u8) -> PoolSpec {
    PoolSpec {
        min_shard_prefix_len: Some(min),
        max_shard_prefix_len: Some(max),
        ..pool(name, prefix, shard)
    }
}

pub fn sub(name: &str) -> SubdivisionSpec {
    SubdivisionSpec::new(name)
}

/// Applies journaled changes to keyed maps, as a store would, independently of the allocator.
#[derive(Default, Debug)]
pub struct Applied {
    pub pools: BTreeMap<String, Change>,
    pub subs: BTreeMap<String, Change>,
    pub homes: BTreeMap<(String, String), Change>,
    pub shards: BTreeMap<(String, String), Change>,
    pub leases: BTreeMap<String, Change>,
    pub cooling: BTreeMap<(String, String), Change>,
    pub events: usize,
    pub transitions: usize,
    pub external_events: usize,
    /// Profile and router changes (never journaled by the allocator either).
    pub catalog: usize,
}

impl Applied {
    pub fn apply(&mut self, changes: Vec<Change>) {
        for c in changes {
            match &c {
                Change::PutPool(p) => {
                    self.pools.insert(p.name.clone(), c);
                }
                Change::DeletePool { name } => {
                    self.pools.remove(name);
                }
                Change::PutSubdivision(s) => {
                    self.subs.insert(s.name.clone(), c);
                }
                Change::DeleteSubdivision { name } => {
                    self.subs.remove(name);
                }
                Change::PutHome(h) => {
                    self.homes
                        .insert((h.subdivision.clone(), h.pool.clone()), c);
                }
                Change::DeleteHome { subdivision, pool } => {
                    self.homes.remove(&(subdivision.clone(), pool.clone()));
                }
                Change::PutShard(s) => {
                    self.shards
                        .insert((s.pool.clone(), s.prefix.to_string()), c);
                }
                Change::DeleteShard { pool, prefix } => {
                    self.shards.remove(&(pool.clone(), prefix.to_string()));
                }
                Change::PutLease(l) => {
                    self.leases.insert(l.vm_id.clone(), c);
                }
                Change::DeleteLease { vm_id } => {
                    self.leases.remove(vm_id);
                }
                Change::PutCooling(r) => {
                    self.cooling
                        .insert((r.pool.clone(), r.address.to_string()), c);
                }
                Change::DeleteCooling { pool, address } => {
                    self.cooling.remove(&(pool.clone(), address.to_string()));
                }
                Change::Transition(_) => self.transitions += 1,
                Change::Event(_) => self.events += 1,
                // Never journaled by the allocator; counted so that a test would notice.
                Change::PutExternalEvent(_) | Change::DeleteExternalEvent { .. } => {
                    self.external_events += 1
                }
                Change::PutProfile(_)
                | Change::DeleteProfile { .. }
                | Change::PutRouter(_)
                | Change::DeleteRouter { .. } => self.catalog += 1,
            }
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot::default();
        for c in self
            .pools
            .values()
            .chain(self.subs.values())
            .chain(self.homes.values())
            .chain(self.shards.values())
            .chain(self.leases.values())
            .chain(self.cooling.values())
        {
            match c.clone() {
                Change::PutPool(p) => s.pools.push(p),
                Change::PutSubdivision(x) => s.subdivisions.push(x),
                Change::PutHome(h) => s.homes.push(h),
                Change::PutShard(x) => s.shards.push(x),
                Change::PutLease(l) => s.leases.push(l),
                Change::PutCooling(r) => s.cooling.push(r),
                _ => unreachable!(),
            }
        }
        s.normalize();
        s
    }
}
