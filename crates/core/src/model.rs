//! Persisted records of the domain model and the change set the store commits.
//!
//! Every mutating operation of [`crate::Ipam`] journals the records it changed as [`Change`]s; a
//! store commits a batch of them atomically, and [`Snapshot`] (everything live) rebuilds an `Ipam`.
//! Free shards and free addresses are never records: they are what the records do not claim.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

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
    /// Shard affinity on a shared store: the daemon (node name) that allocates in this shard,
    /// alone, so that daemons never contend for the same addresses (like a Calico block's host
    /// affinity). `None`: any daemon may adopt it; always `None` for a daemon alone on its store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
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

/// Longest allowed name of a scheduled external event, an application profile or a router.
pub const MAX_NAME_LEN: usize = 64;

/// Longest allowed event name.
pub const MAX_EVENT_NAME_LEN: usize = MAX_NAME_LEN;

/// Whether `name` is 1 to `max` characters out of `A-Z a-z 0-9 . _ -` (names end up in router
/// configurations, CSV traces and URLs).
fn name_ok(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The message of a name that is not 1 to `max` characters out of `A-Z a-z 0-9 . _ -`.
fn bad_name(name: &str, max: usize) -> String {
    format!("name = {name:?}: a name is 1 to {max} characters out of A-Z a-z 0-9 . _ -")
}

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
        if !name_ok(&self.name, MAX_EVENT_NAME_LEN) {
            return Err(invalid(bad_name(&self.name, MAX_EVENT_NAME_LEN)));
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

/// An application profile, i.e. a VM class (`[[profile]]` in the configuration).
///
/// Profiles are not allocator state: [`Snapshot`] and [`crate::Ipam`] do not hold them; a store
/// keeps them in their own table, keyed by name, written by [`Change::PutProfile`] and
/// [`Change::DeleteProfile`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Unique name, as in the `profile` column of traces and allocation requests: 1 to 64
    /// characters out of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Virtual CPUs per VM (>= 1).
    pub vcpus: u32,
    /// Memory per VM in GiB (finite, > 0).
    pub memory_gib: f64,
    /// Expected network I/O per VM in Mbit/s (finite, >= 0); drives bandwidth forecasts and the
    /// demand score.
    pub network_mbps: f64,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl Profile {
    /// Expected network I/O of one VM of this profile, in Mbit/s.
    pub fn bandwidth_mbps(&self) -> f64 {
        self.network_mbps
    }

    /// Checks every field on its own: the name, then [`Profile::check_fields`]. The error
    /// ([`CoreError::InvalidProfile`]) names the field and its value.
    pub fn validate(&self) -> Result<(), CoreError> {
        let invalid = |message: String| CoreError::InvalidProfile {
            name: self.name.clone(),
            message,
        };
        if !name_ok(&self.name, MAX_NAME_LEN) {
            return Err(invalid(bad_name(&self.name, MAX_NAME_LEN)));
        }
        self.check_fields().map_err(|f| invalid(f.to_string()))
    }

    /// The checks of the numbers (the name is checked with the other names): `vcpus` >= 1,
    /// `memory_gib` finite and > 0, `network_mbps` finite and >= 0. The configuration file and
    /// the API both use them.
    pub fn check_fields(&self) -> Result<(), FieldError> {
        if self.vcpus == 0 {
            return Err(FieldError::new("vcpus", 0, "a VM has at least 1 vCPU"));
        }
        if !self.memory_gib.is_finite() || self.memory_gib <= 0.0 {
            return Err(FieldError::new(
                "memory_gib",
                self.memory_gib,
                "must be a finite number of GiB > 0",
            ));
        }
        if !self.network_mbps.is_finite() || self.network_mbps < 0.0 {
            return Err(FieldError::new(
                "network_mbps",
                self.network_mbps,
                "must be a finite number of Mbit/s >= 0",
            ));
        }
        Ok(())
    }
}

/// A field whose value is refused: the field, the value as written, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, self.value, self.reason)
    }
}

/// Routing daemon a router's configuration is rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// FRRouting (`frr.conf` syntax).
    Frr,
    /// BIRD 2 (`bird.conf` syntax).
    Bird,
}

impl Flavor {
    /// Lower-case name, as in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Flavor::Frr => "frr",
            Flavor::Bird => "bird",
        }
    }
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A BGP neighbor of a router.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawNeighbor")]
pub struct Neighbor {
    /// The peer's address (IPv4 or IPv6).
    pub address: IpAddr,
    /// The peer's AS number (1 ..= 4294967295).
    pub asn: u32,
}

/// A router that announces the shards of its subdivisions (`[[router]]` in the configuration).
///
/// Routers are not allocator state: [`Snapshot`] and [`crate::Ipam`] do not hold them; a store
/// keeps them in their own table, keyed by name, written by [`Change::PutRouter`] and
/// [`Change::DeleteRouter`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRouter")]
pub struct RouterSpec {
    /// Unique name: 1 to 64 characters out of `A-Z a-z 0-9 . _ -`.
    pub name: String,
    /// Which daemon the rendered configuration is for.
    pub flavor: Flavor,
    /// BGP router id (an IPv4 address, not 0.0.0.0).
    pub router_id: Ipv4Addr,
    /// Local AS number (1 ..= 4294967295).
    pub asn: u32,
    /// BGP neighbors the shards are announced to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub neighbors: Vec<Neighbor>,
    /// Subdivisions whose shards this router announces (in addition to subdivisions that name
    /// this router in their `routers`). They must exist when the router is put; removing one
    /// later leaves the router stored, listing a subdivision that announces nothing until one of
    /// that name exists again.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subdivisions: Vec<String>,
    /// Where the rendered configuration is written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_path: Option<PathBuf>,
    /// Shell command run after writing the configuration, e.g. `systemctl reload frr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_command: Option<String>,
    /// How announcements are tagged and preferred (`[router.policy]`); every key has a default.
    #[serde(default, skip_serializing_if = "RoutingPolicy::is_default")]
    pub policy: RoutingPolicy,
}

/// A standard BGP community (RFC 1997), written `ASN:VALUE`, each part 0 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Community {
    pub asn: u16,
    pub value: u16,
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.asn, self.value)
    }
}

impl From<Community> for String {
    fn from(c: Community) -> String {
        c.to_string()
    }
}

impl TryFrom<String> for Community {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl std::str::FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "{s:?} is not a BGP community: write ASN:VALUE, each 0 to 65535, e.g. \"65001:100\""
            )
        };
        let (a, v) = s.split_once(':').ok_or_else(bad)?;
        Ok(Community {
            asn: a.trim().parse().map_err(|_| bad())?,
            value: v.trim().parse().map_err(|_| bad())?,
        })
    }
}

/// Default LOCAL_PREF of announced prefixes (above the usual default of 100).
pub const DEFAULT_LOCAL_PREF: u32 = 200;
/// Default MED of announced prefixes (lowest, i.e. most preferred).
pub const DEFAULT_MED: u32 = 0;
/// Default community value (after the router's AS number) of active prefixes.
pub const DEFAULT_ACTIVE_COMMUNITY_VALUE: u16 = 100;
/// Default community value (after the router's AS number) of prefetched prefixes.
pub const DEFAULT_PREFETCHED_COMMUNITY_VALUE: u16 = 200;

/// The routing policy of a router's announcements. Prefixes covering active (and still draining)
/// shards carry `active_community`; prefixes covering reserved (prefetched) shards carry
/// `prefetched_community`; both carry LOCAL_PREF `local_pref` (sent to iBGP peers) and MED `med`
/// (sent to eBGP peers), so that where another router announces the same prefix (a standby, or a
/// parent's router), the owning subdivision's router is preferred.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingPolicy {
    /// Community of active prefixes; default `ASN:100` (needs an AS number up to 65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_community: Option<Community>,
    /// Community of prefetched prefixes; default `ASN:200` (needs an AS number up to 65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetched_community: Option<Community>,
    /// LOCAL_PREF of every announced prefix; default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_pref: Option<u32>,
    /// MED of every announced prefix; default 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub med: Option<u32>,
}

/// A [`RoutingPolicy`] with its defaults filled in for one router.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedPolicy {
    pub active_community: Community,
    pub prefetched_community: Community,
    pub local_pref: u32,
    pub med: u32,
}

impl RoutingPolicy {
    /// No key set: every default applies.
    pub fn is_default(&self) -> bool {
        *self == RoutingPolicy::default()
    }

    /// The policy with its defaults for a router of AS `asn`; refuses a default community when
    /// `asn` does not fit one (above 65535), communities in the reserved ranges (AS part 0 or
    /// 65535, RFC 1997 and RFC 7999), and one community for both classes.
    pub fn resolve(&self, asn: u32) -> Result<ResolvedPolicy, FieldError> {
        let community = |given: Option<Community>, field: &'static str, value: u16| {
            let c = match given {
                Some(c) => c,
                None => Community {
                    asn: u16::try_from(asn).map_err(|_| {
                        FieldError::new(
                            field,
                            "(not set)",
                            format!(
                                "required for AS {asn}: the default {asn}:{value} does not fit a \
                                 standard community (AS part up to 65535)"
                            ),
                        )
                    })?,
                    value,
                },
            };
            if c.asn == 0 || c.asn == u16::MAX {
                return Err(FieldError::new(
                    field,
                    format_args!("\"{c}\""),
                    "communities with AS part 0 or 65535 are reserved (RFC 1997); use your AS number",
                ));
            }
            Ok(c)
        };
        let active = community(
            self.active_community,
            "policy.active_community",
            DEFAULT_ACTIVE_COMMUNITY_VALUE,
        )?;
        let prefetched = community(
            self.prefetched_community,
            "policy.prefetched_community",
            DEFAULT_PREFETCHED_COMMUNITY_VALUE,
        )?;
        if active == prefetched {
            return Err(FieldError::new(
                "policy.prefetched_community",
                format_args!("\"{prefetched}\""),
                "must differ from policy.active_community, so that peers can tell them apart",
            ));
        }
        Ok(ResolvedPolicy {
            active_community: active,
            prefetched_community: prefetched,
            local_pref: self.local_pref.unwrap_or(DEFAULT_LOCAL_PREF),
            med: self.med.unwrap_or(DEFAULT_MED),
        })
    }
}

impl RouterSpec {
    /// Checks every field on its own (what does not depend on other records): the name, then
    /// [`RouterSpec::check_fields`]. Whether the subdivisions exist is the caller's check. The
    /// error ([`CoreError::InvalidRouter`]) names the field and its value.
    pub fn validate(&self) -> Result<(), CoreError> {
        let invalid = |message: String| CoreError::InvalidRouter {
            name: self.name.clone(),
            message,
        };
        if !name_ok(&self.name, MAX_NAME_LEN) {
            return Err(invalid(bad_name(&self.name, MAX_NAME_LEN)));
        }
        self.check_fields().map_err(|f| invalid(f.to_string()))
    }

    /// The checks of the fields but the name: a router id usable as a BGP router id (not
    /// 0.0.0.0, broadcast or multicast), AS number not 0, neighbors with unicast addresses, each
    /// listed once and with an AS number not 0, subdivisions each listed once, a non-empty
    /// `config_path` and a non-blank `reload_command` when given, and a policy that resolves
    /// ([`RoutingPolicy::resolve`]). The configuration file and the API both use them.
    pub fn check_fields(&self) -> Result<(), FieldError> {
        let id = self.router_id;
        if id.is_unspecified() || id.is_broadcast() || id.is_multicast() {
            return Err(FieldError::new(
                "router_id",
                format_args!("\"{id}\""),
                "not usable as a BGP router id; use a unicast IPv4 address of the router",
            ));
        }
        if self.asn == 0 {
            return Err(FieldError::new(
                "asn",
                0,
                "AS number 0 is reserved; use 1 to 4294967295",
            ));
        }
        for (i, n) in self.neighbors.iter().enumerate() {
            let bad_address = match n.address {
                IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast() || a.is_multicast(),
                IpAddr::V6(a) => a.is_unspecified() || a.is_multicast(),
            };
            let address = format_args!("\"{}\"", n.address).to_string();
            if bad_address {
                return Err(FieldError::new(
                    "neighbors.address",
                    address,
                    "not a unicast address a BGP session can be opened to",
                ));
            }
            if self.neighbors[..i].iter().any(|m| m.address == n.address) {
                return Err(FieldError::new(
                    "neighbors.address",
                    address,
                    "listed twice",
                ));
            }
            if n.asn == 0 {
                return Err(FieldError::new(
                    "neighbors.asn",
                    0,
                    format!("AS number 0 (of neighbor {address}) is reserved; use 1 to 4294967295"),
                ));
            }
        }
        for (i, name) in self.subdivisions.iter().enumerate() {
            if self.subdivisions[..i].contains(name) {
                return Err(FieldError::new(
                    "subdivisions",
                    format_args!("{name:?}"),
                    "listed twice",
                ));
            }
        }
        if let Some(path) = &self.config_path {
            if path.as_os_str().is_empty() {
                return Err(FieldError::new(
                    "config_path",
                    "\"\"",
                    "must be a file path; leave the key out to not write the configuration",
                ));
            }
        }
        if let Some(cmd) = &self.reload_command {
            if cmd.trim().is_empty() {
                return Err(FieldError::new(
                    "reload_command",
                    format_args!("{cmd:?}"),
                    "must be a command; leave the key out to not reload",
                ));
            }
        }
        self.policy.resolve(self.asn).map(|_| ())
    }
}

/// What a router holds before its addresses and AS numbers are checked, so that an error can
/// name the router.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    name: String,
    flavor: Flavor,
    router_id: String,
    asn: i64,
    #[serde(default)]
    neighbors: Vec<RawNeighbor>,
    #[serde(default)]
    subdivisions: Vec<String>,
    #[serde(default)]
    config_path: Option<PathBuf>,
    #[serde(default)]
    reload_command: Option<String>,
    #[serde(default)]
    policy: RawPolicy,
}

/// A routing policy as written: communities and numbers are checked in
/// [`RawPolicy::convert`], so that an error names the router and the key.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    active_community: Option<String>,
    #[serde(default)]
    prefetched_community: Option<String>,
    #[serde(default)]
    local_pref: Option<i64>,
    #[serde(default)]
    med: Option<i64>,
}

impl RawPolicy {
    fn convert(self, entry: &str) -> Result<RoutingPolicy, String> {
        let community = |v: Option<String>, key: &str| {
            v.map(|s| {
                s.parse::<Community>()
                    .map_err(|e| format!("{entry}: policy.{key} = {e}"))
            })
            .transpose()
        };
        let number = |v: Option<i64>, key: &str| {
            v.map(|n| {
                u32::try_from(n).map_err(|_| {
                    format!("{entry}: policy.{key} = {n} is out of range: 0 to 4294967295")
                })
            })
            .transpose()
        };
        Ok(RoutingPolicy {
            active_community: community(self.active_community, "active_community")?,
            prefetched_community: community(self.prefetched_community, "prefetched_community")?,
            local_pref: number(self.local_pref, "local_pref")?,
            med: number(self.med, "med")?,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: String,
    asn: i64,
}

/// An AS number as written, checked against the 32-bit range (0 is rejected by validation, so
/// that the message can name the file).
fn asn_from(entry: &str, field: &str, asn: i64) -> Result<u32, String> {
    u32::try_from(asn).map_err(|_| {
        format!("{entry}: {field} = {asn} is out of range: an AS number is 1 to 4294967295")
    })
}

impl RawNeighbor {
    fn convert(self, entry: &str) -> Result<Neighbor, String> {
        let address = self.address.parse::<IpAddr>().map_err(|_| {
            format!(
                "{entry}: address = {:?} is not an IPv4 or IPv6 address",
                self.address
            )
        })?;
        let asn = asn_from(entry, "asn", self.asn)?;
        Ok(Neighbor { address, asn })
    }
}

impl TryFrom<RawNeighbor> for Neighbor {
    type Error = String;
    fn try_from(raw: RawNeighbor) -> Result<Self, String> {
        let entry = format!("neighbor {:?}", raw.address);
        raw.convert(&entry)
    }
}

impl TryFrom<RawRouter> for RouterSpec {
    type Error = String;
    fn try_from(raw: RawRouter) -> Result<Self, String> {
        let entry = format!("router {:?}", raw.name);
        let router_id = raw.router_id.parse::<Ipv4Addr>().map_err(|_| {
            format!(
                "{entry}: router_id = {:?} is not an IPv4 address (a BGP router id is written \
                 as one, e.g. \"192.0.2.1\")",
                raw.router_id
            )
        })?;
        let asn = asn_from(&entry, "asn", raw.asn)?;
        let neighbors = raw
            .neighbors
            .into_iter()
            .enumerate()
            .map(|(i, n)| n.convert(&format!("{entry}: neighbors[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RouterSpec {
            name: raw.name,
            flavor: raw.flavor,
            router_id,
            asn,
            neighbors,
            subdivisions: raw.subdivisions,
            config_path: raw.config_path,
            reload_command: raw.reload_command,
            policy: raw.policy.convert(&entry)?,
        })
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
    /// Creates or replaces an application profile (keyed by name). Not allocator state: the
    /// allocator never journals it.
    PutProfile(Profile),
    /// Deletes an application profile.
    DeleteProfile {
        name: String,
    },
    /// Creates or replaces a router (keyed by name). Not allocator state: the allocator never
    /// journals it.
    PutRouter(RouterSpec),
    /// Deletes a router.
    DeleteRouter {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> Profile {
        Profile {
            name: "web".to_string(),
            vcpus: 2,
            memory_gib: 4.0,
            network_mbps: 0.0,
            description: Some("front ends".to_string()),
        }
    }

    fn router() -> RouterSpec {
        RouterSpec {
            name: "edge-1".to_string(),
            flavor: Flavor::Bird,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            asn: u32::MAX,
            neighbors: vec![
                Neighbor {
                    address: "192.0.2.2".parse().unwrap(),
                    asn: 64513,
                },
                Neighbor {
                    address: "2001:db8::2".parse().unwrap(),
                    asn: 1,
                },
            ],
            subdivisions: vec!["eu".to_string(), "us".to_string()],
            config_path: Some(PathBuf::from("/etc/bird/bird.conf")),
            reload_command: Some("birdc configure".to_string()),
            // AS 4294967295 needs its communities given: the defaults hold 16 bits of AS.
            policy: RoutingPolicy {
                active_community: Some("64512:100".parse().unwrap()),
                prefetched_community: Some("64512:200".parse().unwrap()),
                local_pref: Some(150),
                med: Some(5),
            },
        }
    }

    fn profile_error(p: Profile) -> String {
        match p.validate() {
            Err(e @ CoreError::InvalidProfile { .. }) => e.to_string(),
            other => panic!("expected InvalidProfile, got {other:?}"),
        }
    }

    fn router_error(r: RouterSpec) -> String {
        match r.validate() {
            Err(e @ CoreError::InvalidRouter { .. }) => e.to_string(),
            other => panic!("expected InvalidRouter, got {other:?}"),
        }
    }

    #[test]
    fn valid_profiles_and_routers() {
        profile().validate().unwrap();
        Profile {
            name: "a.b_c-D9".to_string(),
            vcpus: 1,
            memory_gib: 0.25,
            network_mbps: 1e6,
            description: None,
        }
        .validate()
        .unwrap();
        router().validate().unwrap();
        RouterSpec {
            neighbors: Vec::new(),
            subdivisions: Vec::new(),
            config_path: None,
            reload_command: None,
            asn: 1,
            name: "x".repeat(64),
            ..router()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn every_profile_field_is_checked_and_named_with_its_value() {
        let cases = [
            (
                Profile {
                    name: "web server".to_string(),
                    ..profile()
                },
                "profile `web server`: name = \"web server\": a name is 1 to 64 characters out \
                 of A-Z a-z 0-9 . _ -",
            ),
            (
                Profile {
                    name: "x".repeat(65),
                    ..profile()
                },
                "a name is 1 to 64 characters",
            ),
            (
                Profile {
                    vcpus: 0,
                    ..profile()
                },
                "profile `web`: vcpus = 0: a VM has at least 1 vCPU",
            ),
            (
                Profile {
                    memory_gib: 0.0,
                    ..profile()
                },
                "profile `web`: memory_gib = 0: must be a finite number of GiB > 0",
            ),
            (
                Profile {
                    memory_gib: f64::NAN,
                    ..profile()
                },
                "memory_gib = NaN:",
            ),
            (
                Profile {
                    network_mbps: -0.5,
                    ..profile()
                },
                "profile `web`: network_mbps = -0.5: must be a finite number of Mbit/s >= 0",
            ),
            (
                Profile {
                    network_mbps: f64::INFINITY,
                    ..profile()
                },
                "network_mbps = inf:",
            ),
        ];
        for (p, expected) in cases {
            let got = profile_error(p);
            assert!(
                got.contains(expected),
                "{got:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn every_router_field_is_checked_and_named_with_its_value() {
        let mut twice = router();
        twice.neighbors[1].address = twice.neighbors[0].address;
        let mut neighbor_asn = router();
        neighbor_asn.neighbors[1].asn = 0;
        let mut multicast6 = router();
        multicast6.neighbors[1].address = "ff02::5".parse().unwrap();
        let cases = [
            (
                RouterSpec {
                    name: String::new(),
                    ..router()
                },
                "router ``: name = \"\": a name is 1 to 64 characters",
            ),
            (
                RouterSpec {
                    router_id: Ipv4Addr::UNSPECIFIED,
                    ..router()
                },
                "router `edge-1`: router_id = \"0.0.0.0\": not usable as a BGP router id",
            ),
            (
                RouterSpec {
                    router_id: Ipv4Addr::BROADCAST,
                    ..router()
                },
                "router_id = \"255.255.255.255\"",
            ),
            (
                RouterSpec {
                    router_id: Ipv4Addr::new(239, 1, 1, 1),
                    ..router()
                },
                "router_id = \"239.1.1.1\"",
            ),
            (
                RouterSpec { asn: 0, ..router() },
                "router `edge-1`: asn = 0: AS number 0 is reserved; use 1 to 4294967295",
            ),
            (
                multicast6,
                "router `edge-1`: neighbors.address = \"ff02::5\": not a unicast address",
            ),
            (
                twice,
                "router `edge-1`: neighbors.address = \"192.0.2.2\": listed twice",
            ),
            (
                neighbor_asn,
                "router `edge-1`: neighbors.asn = 0: AS number 0 (of neighbor \"2001:db8::2\") \
                 is reserved",
            ),
            (
                RouterSpec {
                    subdivisions: vec!["eu".into(), "us".into(), "eu".into()],
                    ..router()
                },
                "router `edge-1`: subdivisions = \"eu\": listed twice",
            ),
            (
                RouterSpec {
                    config_path: Some(PathBuf::new()),
                    ..router()
                },
                "router `edge-1`: config_path = \"\": must be a file path",
            ),
            (
                RouterSpec {
                    reload_command: Some("  ".to_string()),
                    ..router()
                },
                "router `edge-1`: reload_command = \"  \": must be a command",
            ),
            (
                RouterSpec {
                    policy: RoutingPolicy::default(),
                    ..router()
                },
                "router `edge-1`: policy.active_community = (not set): required for AS 4294967295",
            ),
            (
                RouterSpec {
                    policy: RoutingPolicy {
                        active_community: Some("65535:1".parse().unwrap()),
                        ..router().policy
                    },
                    ..router()
                },
                "router `edge-1`: policy.active_community = \"65535:1\": communities with AS part 0 or 65535 are reserved",
            ),
            (
                RouterSpec {
                    policy: RoutingPolicy {
                        prefetched_community: Some("64512:100".parse().unwrap()),
                        ..router().policy
                    },
                    ..router()
                },
                "router `edge-1`: policy.prefetched_community = \"64512:100\": must differ from policy.active_community",
            ),
        ];
        for (r, expected) in cases {
            let got = router_error(r);
            assert!(
                got.contains(expected),
                "{got:?} does not contain {expected:?}"
            );
        }
    }

    #[test]
    fn json_round_trips_and_is_strict() {
        let p = profile();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
        let r = router();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"router_id\":\"192.0.2.1\""), "{json}");
        assert!(json.contains("\"flavor\":\"bird\""), "{json}");
        assert_eq!(serde_json::from_str::<RouterSpec>(&json).unwrap(), r);
        let bare = RouterSpec {
            neighbors: Vec::new(),
            subdivisions: Vec::new(),
            config_path: None,
            reload_command: None,
            ..router()
        };
        let json = serde_json::to_string(&bare).unwrap();
        assert!(
            json.contains("\"active_community\":\"64512:100\""),
            "{json}"
        );
        assert!(!json.contains("neighbors"), "{json}");
        assert_eq!(serde_json::from_str::<RouterSpec>(&json).unwrap(), bare);

        let err = serde_json::from_str::<Profile>(
            r#"{"name":"p","vcpus":1,"memory_gib":1,"network_mbps":1,"cpu":2}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `cpu`"), "{err}");
        let err = serde_json::from_str::<RouterSpec>(
            r#"{"name":"r","flavor":"frr","router_id":"10.0.0.1","asn":4294967296}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("router \"r\": asn = 4294967296 is out of range"),
            "{err}"
        );
        let err = serde_json::from_str::<RouterSpec>(
            r#"{"name":"r","flavor":"frr","router_id":"10.0.0.1","asn":1,
                "neighbors":[{"address":"peer","asn":2}]}"#,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("router \"r\": neighbors[0]: address = \"peer\" is not an IPv4 or IPv6"),
            "{err}"
        );
        let err = serde_json::from_str::<RouterSpec>(
            r#"{"name":"r","flavor":"frr","router_id":"10.0.0.1","asn":1,"reload":"x"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `reload`"), "{err}");
    }

    #[test]
    fn catalog_changes_serialize() {
        for change in [
            Change::PutProfile(profile()),
            Change::DeleteProfile {
                name: "web".to_string(),
            },
            Change::PutRouter(router()),
            Change::DeleteRouter {
                name: "edge-1".to_string(),
            },
        ] {
            let json = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&json).unwrap(), change);
        }
    }
}
