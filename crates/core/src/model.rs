//! Persisted records of the domain model and the change set the store commits.
//!
//! Every mutating operation of [`crate::Ipam`] journals the records it changed as [`Change`]s; a
//! store commits a batch of them atomically, and [`Snapshot`] (everything live) rebuilds an `Ipam`.
//! Free shards and free addresses are never records: they are what the records do not claim.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// Seconds (trace time in replays, Unix time in the daemon).
pub type Time = f64;

/// Default release cooldown: an address released at `t` is not handed out again before `t + 30 s`.
pub const DEFAULT_COOLDOWN_S: f64 = 30.0;

/// A root prefix (IPv4 or IPv6) carved into aligned shards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    /// Unique name, e.g. `v4`.
    pub name: String,
    /// The root prefix, host bits zero, e.g. `10.0.0.0/8`.
    pub prefix: IpNet,
    /// Prefix length of one shard, e.g. 26 (64 addresses) in IPv4, 64 or 112 in IPv6: the default
    /// shard size, and the unit home blocks are sized in (`home_shards`).
    pub shard_prefix_len: u8,
    /// Shortest shard prefix length the pool hands out (its largest shards), when shards of
    /// several sizes are allowed; `None` = `shard_prefix_len`. At most `shard_prefix_len`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_shard_prefix_len: Option<u8>,
    /// Longest shard prefix length the pool hands out (its smallest shards), when shards of
    /// several sizes are allowed; `None` = `shard_prefix_len`. At least `shard_prefix_len`, and
    /// the smallest shard must hold `reserve_first + reserve_last + 1` addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shard_prefix_len: Option<u8>,
    /// VRF / tenant the pool belongs to; pools only conflict with pools of the same VRF.
    #[serde(default = "default_vrf")]
    pub vrf: String,
    /// Ranges never handed out; a shard overlapping one is never placed.
    #[serde(default)]
    pub reserved: Vec<IpNet>,
    /// Addresses at the start of every shard that are never leased (e.g. 2: network and gateway).
    #[serde(default)]
    pub reserve_first: u32,
    /// Addresses at the end of every shard that are never leased (e.g. 1: IPv4 broadcast).
    #[serde(default)]
    pub reserve_last: u32,
}

/// The VRF a pool belongs to when none is named.
pub fn default_vrf() -> String {
    "default".to_string()
}

impl PoolSpec {
    /// A pool in the default VRF with no reserved ranges or addresses.
    pub fn new(name: &str, prefix: IpNet, shard_prefix_len: u8) -> Self {
        PoolSpec {
            name: name.to_string(),
            prefix,
            shard_prefix_len,
            min_shard_prefix_len: None,
            max_shard_prefix_len: None,
            vrf: default_vrf(),
            reserved: Vec::new(),
            reserve_first: 0,
            reserve_last: 0,
        }
    }

    /// The shard prefix lengths the pool hands out, `(shortest, longest)`: `(min, max)` of
    /// `min_shard_prefix_len` / `max_shard_prefix_len`, each defaulting to `shard_prefix_len`.
    /// A shard of prefix length `len` may be claimed when `shortest <= len <= longest`.
    pub fn shard_prefix_range(&self) -> (u8, u8) {
        (
            self.min_shard_prefix_len.unwrap_or(self.shard_prefix_len),
            self.max_shard_prefix_len.unwrap_or(self.shard_prefix_len),
        )
    }
}

impl SubdivisionSpec {
    /// A top-level subdivision drawing from every pool, with no limits.
    pub fn new(name: &str) -> Self {
        SubdivisionSpec {
            name: name.to_string(),
            parent: None,
            pools: Vec::new(),
            max_shards: None,
            home_shards: None,
            routers: Vec::new(),
        }
    }
}

/// A named place that runs VMs (region, zone, rack, host group, tenant network).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubdivisionSpec {
    /// Unique name.
    pub name: String,
    /// Enclosing subdivision: this one's home block is carved out of the parent's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Pools this subdivision draws from, in order of preference; empty means every pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    /// Upper bound on non-free shards per pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_shards: Option<u32>,
    /// Size of the home block in shards (a power of two); it grows by claiming its buddy and never
    /// shrinks below this size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home_shards: Option<u32>,
    /// Routers that announce this subdivision's shards.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<String>,
}

/// Lifecycle state of a non-free shard. `free` is the absence of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    /// Planned, not yet announced.
    Reserved,
    /// Announced; addresses are handed out.
    Active,
    /// No new leases; announced until empty.
    Draining,
}

impl ShardState {
    /// Lower-case name, as in the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Reserved => "reserved",
            ShardState::Active => "active",
            ShardState::Draining => "draining",
        }
    }
}

impl fmt::Display for ShardState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a shard changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reason {
    /// Ahead of predicted demand (the planner).
    Forecast,
    /// An allocation found no ready address (slow path).
    Miss,
    /// An operator asked for it.
    Operator,
    /// Space taken back (drain/release of an unneeded shard).
    Reclaim,
}

impl Reason {
    /// Lower-case name, as in the CLI and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Forecast => "forecast",
            Reason::Miss => "miss",
            Reason::Operator => "operator",
            Reason::Reclaim => "reclaim",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A non-free shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardRecord {
    pub pool: String,
    pub prefix: IpNet,
    pub subdivision: String,
    pub state: ShardState,
    /// Placed outside the subdivision's home block (an extra route).
    pub borrowed: bool,
    /// Time of the last transition.
    pub since: Time,
    /// Reason of the last transition.
    pub reason: Reason,
}

/// One recorded shard transition (`from`/`to` `None` = free).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub time: Time,
    pub pool: String,
    pub prefix: IpNet,
    pub subdivision: String,
    pub from: Option<ShardState>,
    pub to: Option<ShardState>,
    pub reason: Reason,
}

/// An address bound to a VM.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseRecord {
    /// Idempotency key.
    pub vm_id: String,
    pub subdivision: String,
    pub pool: String,
    pub address: IpAddr,
    /// The shard holding the address.
    pub shard: IpNet,
    pub profile: Option<String>,
    pub created: Time,
}

/// A released address that must not be handed out before `until`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoolingRecord {
    pub pool: String,
    pub address: IpAddr,
    pub until: Time,
}

/// The aligned block a subdivision grows its shards in, per pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeRecord {
    pub subdivision: String,
    pub pool: String,
    pub block: IpNet,
}

/// VM lifecycle event kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Create,
    Delete,
}

impl EventKind {
    /// As written in the canonical trace format.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Create => "create",
            EventKind::Delete => "delete",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One VM lifecycle event (a row of the canonical trace format, an entry of the history).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmEvent {
    pub time: Time,
    pub subdivision: String,
    pub kind: EventKind,
    pub vm_id: String,
    pub profile: Option<String>,
}

/// Scope of an [`ExternalEventSpec`] that covers every subdivision.
pub const EVENT_SCOPE_ALL: &str = "*";

/// Longest allowed event name.
pub const MAX_EVENT_NAME_LEN: usize = 64;

/// A scheduled external event (a launch, a sale, a migration, a maintenance window) that the
/// forecasts of the subdivisions in its scope must reflect during `[start, end)`.
///
/// The effect on a forecast value `v` of a step the event covers is `v * multiplier + extra_vms`
/// (a missing `multiplier` is 1, a missing `extra_vms` is 0); several events covering one step
/// multiply their multipliers and add their extras (see `cidrcast_forecast::events`).
///
/// Events are not allocator state: [`Snapshot`] and [`crate::Ipam`] do not hold them; a store keeps
/// them in their own table, written by [`Change::PutExternalEvent`] and
/// [`Change::DeleteExternalEvent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalEventSpec {
    /// Unique name: 1 to 64 characters out of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Start of the window in seconds (trace time in replays, Unix time in the daemon).
    pub start: Time,
    /// End of the window in seconds (exclusive), greater than `start`.
    pub end: Time,
    /// The subdivision the event applies to, together with all its descendants (so a region's
    /// event covers its zones and racks), or `"*"` ([`EVENT_SCOPE_ALL`]) for every subdivision.
    /// It must name an existing subdivision when the event is put; removing that subdivision
    /// later leaves the event stored, applying to nothing until one of that name exists again.
    pub scope: String,
    /// Expected additional VMs alive during the window (finite, >= 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_vms: Option<f64>,
    /// Factor applied to the forecast during the window (finite, > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
}

impl ExternalEventSpec {
    /// Whether the event's scope is every subdivision (`"*"`).
    pub fn is_global(&self) -> bool {
        self.scope == EVENT_SCOPE_ALL
    }

    /// Checks every field on its own (what does not depend on other records): the name, a finite
    /// window with `end > start`, a non-empty scope, `extra_vms` finite and >= 0, `multiplier`
    /// finite and > 0, at least one of the two. Whether the scope names an existing subdivision is
    /// the caller's check. The error names the field and its value.
    pub fn validate(&self) -> Result<(), CoreError> {
        let invalid = |message: String| CoreError::InvalidEvent {
            name: self.name.clone(),
            message,
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= MAX_EVENT_NAME_LEN
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(invalid(format!(
                "name = {:?}: a name is 1 to {MAX_EVENT_NAME_LEN} characters out of \
                 A-Z a-z 0-9 . _ -",
                self.name
            )));
        }
        if !self.start.is_finite() {
            return Err(invalid(format!(
                "start = {}: must be a finite time in seconds",
                self.start
            )));
        }
        if !self.end.is_finite() {
            return Err(invalid(format!(
                "end = {}: must be a finite time in seconds",
                self.end
            )));
        }
        if self.end <= self.start {
            return Err(invalid(format!(
                "end = {}: must be greater than start = {}",
                self.end, self.start
            )));
        }
        if self.scope.is_empty() || self.scope.chars().any(|c| c.is_control() || c == ',') {
            return Err(invalid(format!(
                "scope = {:?}: must name a subdivision, or be \"*\" for every subdivision",
                self.scope
            )));
        }
        if let Some(x) = self.extra_vms {
            if !x.is_finite() || x < 0.0 {
                return Err(invalid(format!(
                    "extra_vms = {x}: must be a finite number of VMs >= 0"
                )));
            }
        }
        if let Some(m) = self.multiplier {
            if !m.is_finite() || m <= 0.0 {
                return Err(invalid(format!(
                    "multiplier = {m}: must be a finite number > 0"
                )));
            }
        }
        if self.extra_vms.is_none() && self.multiplier.is_none() {
            return Err(invalid(
                "no effect: give extra_vms, multiplier or both".to_string(),
            ));
        }
        Ok(())
    }
}

/// One record-level change. A batch of them is committed atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    PutPool(PoolSpec),
    DeletePool {
        name: String,
    },
    PutSubdivision(SubdivisionSpec),
    DeleteSubdivision {
        name: String,
    },
    PutHome(HomeRecord),
    DeleteHome {
        subdivision: String,
        pool: String,
    },
    PutShard(ShardRecord),
    DeleteShard {
        pool: String,
        prefix: IpNet,
    },
    PutLease(LeaseRecord),
    DeleteLease {
        vm_id: String,
    },
    PutCooling(CoolingRecord),
    DeleteCooling {
        pool: String,
        address: IpAddr,
    },
    /// Appended to the shard transition log.
    Transition(Transition),
    /// Appended to the VM event history.
    Event(VmEvent),
    /// Creates or replaces a scheduled external event (keyed by name). Not allocator state: the
    /// allocator never journals it.
    PutExternalEvent(ExternalEventSpec),
    /// Deletes a scheduled external event.
    DeleteExternalEvent {
        name: String,
    },
}

/// Everything live, as records: what a store loads to rebuild an `Ipam`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub pools: Vec<PoolSpec>,
    pub subdivisions: Vec<SubdivisionSpec>,
    pub homes: Vec<HomeRecord>,
    pub shards: Vec<ShardRecord>,
    pub leases: Vec<LeaseRecord>,
    pub cooling: Vec<CoolingRecord>,
}

impl Snapshot {
    /// Sorts every list by its key so that two snapshots of the same state compare equal.
    pub fn normalize(&mut self) {
        self.pools.sort_by(|a, b| a.name.cmp(&b.name));
        self.subdivisions.sort_by(|a, b| a.name.cmp(&b.name));
        self.homes
            .sort_by(|a, b| (&a.subdivision, &a.pool).cmp(&(&b.subdivision, &b.pool)));
        self.shards
            .sort_by(|a, b| (&a.pool, a.prefix).cmp(&(&b.pool, b.prefix)));
        self.leases.sort_by(|a, b| a.vm_id.cmp(&b.vm_id));
        self.cooling
            .sort_by(|a, b| (&a.pool, a.address).cmp(&(&b.pool, b.address)));
    }
}
