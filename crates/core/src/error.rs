//! The one error type of the core crate. Every message names the offending thing and value.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::ShardState;

/// What went wrong in a domain operation. A failed operation changes nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("pool `{0}` already exists")]
    PoolExists(String),
    #[error("unknown pool `{0}`")]
    UnknownPool(String),
    #[error(
        "pool `{pool}`: prefix {prefix} overlaps pool `{other}` ({other_prefix}) in VRF `{vrf}`"
    )]
    PoolOverlap {
        pool: String,
        prefix: IpNet,
        other: String,
        other_prefix: IpNet,
        vrf: String,
    },
    #[error("prefix {given} has host bits set (the network is {network})")]
    HostBitsSet { given: IpNet, network: IpNet },
    #[error("pool `{pool}`: {message}")]
    InvalidPool { pool: String, message: String },
    #[error("pool `{0}` still holds shards; drain and release them first")]
    PoolInUse(String),
    #[error("subdivision `{0}` already exists")]
    SubdivisionExists(String),
    #[error("unknown subdivision `{0}`")]
    UnknownSubdivision(String),
    #[error("subdivision `{name}`: {message}")]
    InvalidSubdivision { name: String, message: String },
    #[error("subdivision `{name}` still has {what}")]
    SubdivisionInUse { name: String, what: String },
    #[error(
        "pool `{pool}` is exhausted: no free /{prefix_len} left for subdivision `{subdivision}`"
    )]
    PoolExhausted {
        pool: String,
        subdivision: String,
        prefix_len: u8,
    },
    /// A shard size the pool does not hand out (outside `[min, max]` of its shard prefix lengths).
    #[error(
        "pool `{pool}`: cannot claim a /{prefix_len} shard: {}",
        allowed_sizes(*min, *max)
    )]
    ShardSizeNotAllowed {
        pool: String,
        prefix_len: u8,
        /// Shortest allowed prefix length (largest shard).
        min: u8,
        /// Longest allowed prefix length (smallest shard).
        max: u8,
    },
    #[error(
        "subdivision `{subdivision}` already holds max_shards = {max} shards in pool `{pool}`"
    )]
    MaxShards {
        subdivision: String,
        pool: String,
        max: u32,
    },
    #[error("vm `{vm_id}` already holds {address} in subdivision `{subdivision}`")]
    LeaseConflict {
        vm_id: String,
        address: IpAddr,
        subdivision: String,
    },
    #[error("no lease for vm `{0}`")]
    UnknownLease(String),
    #[error("invalid vm id {0:?}: it must be 1 to 128 printable characters without commas")]
    InvalidVmId(String),
    #[error("no shard {0} is claimed")]
    UnknownShard(IpNet),
    #[error("shard {prefix} is {state}; cannot {action} it")]
    InvalidTransition {
        prefix: IpNet,
        state: ShardState,
        action: &'static str,
    },
    #[error("shard {prefix} still holds {leases} lease(s)")]
    ShardBusy { prefix: IpNet, leases: u64 },
    #[error("shard {prefix} has {cooling} address(es) in their release cooldown; drain it and it is released when they expire")]
    ShardCooling { prefix: IpNet, cooling: u64 },
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    /// A scheduled external event is malformed; `message` names the field and its value.
    #[error("event `{name}`: {message}")]
    InvalidEvent { name: String, message: String },
    #[error("unknown profile `{0}`")]
    UnknownProfile(String),
    /// An application profile is malformed; `message` names the field and its value.
    #[error("profile `{name}`: {message}")]
    InvalidProfile { name: String, message: String },
    #[error("unknown router `{0}`")]
    UnknownRouter(String),
    /// A router is malformed (or lists an unknown subdivision); `message` names the field and its
    /// value.
    #[error("router `{name}`: {message}")]
    InvalidRouter { name: String, message: String },
    #[error("limit reached: {0}")]
    Limit(String),
    #[error("inconsistent stored state: {0}")]
    Corrupt(String),
}

fn allowed_sizes(min: u8, max: u8) -> String {
    if min == max {
        format!(
            "it only hands out /{min} shards (set min_shard_prefix_len / max_shard_prefix_len \
             to allow other sizes)"
        )
    } else {
        format!("the allowed shard prefix lengths are /{min} to /{max}")
    }
}
