//! cidrcast core: the domain model and the allocator, free of I/O.
//!
//! * [`model`]: persisted records ([`model::PoolSpec`], [`model::ShardRecord`], [`model::LeaseRecord`], ...)
//!   and the [`model::Change`] set a store commits atomically.
//! * [`Ipam`]: the allocator state machine (pools, home blocks, shard lifecycle, leases, cooldown).
//! * [`arena`] (buddy allocator over prefixes), [`addrset`] (per-shard bitmap), [`prefix`]
//!   (prefix arithmetic and the minimal CIDR cover).

pub mod addrset;
pub mod arena;
pub mod error;
pub mod ipam;
pub mod model;
pub mod prefix;

pub use error::CoreError;
pub use ipam::{
    validate_vm_id, AllocPath, Allocation, Counters, Ipam, PoolInfo, Settings, ShardInfo,
    SubdivisionInfo, DEFAULT_HOME_SHARDS, MAX_LIVE_SHARDS, MAX_PROFILES, MAX_SHARD_ADDRESSES,
};
