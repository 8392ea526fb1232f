//! The planner's inputs ([`Demand`], [`PlannerConfig`]) and outputs ([`Plan`] and its parts,
//! [`Applied`]). All of them serialise with serde, so a daemon or the CLI prints them as JSON.

use std::fmt;

use cidrcast_core::model::Time;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::PlannerError;

/// The forecast demand of one subdivision in one pool, in addresses.
///
/// Typically, for a forecast at quantile level `q` (e.g. 0.95): `upper_lead` = the `q` quantile
/// of the peak alive VMs over the lead time (claim + router update + convergence), `upper_long` =
/// the same over the longer release horizon, `score` = the forecast's demand score (peak × Mbps
/// per VM). Shards are sized from the addresses alone; the score only orders subdivisions when
/// space is scarce.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Demand {
    /// The subdivision the demand is for.
    pub subdivision: String,
    /// The pool to hold its shards in; `None` = the subdivision's default pool (the first of its
    /// `pools`, else the first pool by name), as `Ipam::claim_shard` chooses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Upper quantile of the peak alive VMs over the lead time (addresses; finite, >= 0). Sizes
    /// the shards and the ready addresses.
    pub upper_lead: f64,
    /// Upper quantile of the peak alive VMs over the longer release horizon (addresses; finite,
    /// >= 0). Shards are given back only when it is well below what remains (hysteresis).
    pub upper_long: f64,
    /// Demand score (finite): higher is served first when space is scarce.
    pub score: f64,
    /// Prefix length of the shards to claim for this subdivision; `None` = the pool's default
    /// (`shard_prefix_len`). It must lie within the pool's range of shard sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_len: Option<u8>,
}

impl Demand {
    /// A demand in the subdivision's default pool, with default-size shards.
    pub fn new(subdivision: &str, upper_lead: f64, upper_long: f64, score: f64) -> Self {
        Demand {
            subdivision: subdivision.to_string(),
            pool: None,
            upper_lead,
            upper_long,
            score,
            prefix_len: None,
        }
    }

    /// The same demand in pool `pool`.
    pub fn in_pool(mut self, pool: &str) -> Self {
        self.pool = Some(pool.to_string());
        self
    }

    /// The same demand with shards of prefix length `prefix_len`.
    pub fn with_prefix_len(mut self, prefix_len: u8) -> Self {
        self.prefix_len = Some(prefix_len);
        self
    }
}

/// Tunables of the planner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlannerConfig {
    /// Hysteresis: a shard is given back only when `upper_long + ready_headroom <= (capacity
    /// left after giving it back) × (1 - release_margin)`, and the capacity left still covers
    /// `upper_lead + ready_headroom`. In `[0, 1)`; default 0.25 (give back only when the longer
    /// horizon's upper bound stays a quarter below what remains).
    pub release_margin: f64,
    /// Addresses added to both upper quantiles before sizing (a floor of warm addresses, like
    /// the AWS VPC CNI's `WARM_IP_TARGET`); default 0: the forecast alone.
    pub ready_headroom: u64,
    /// A reserved shard is activated only once it has been reserved this long (seconds, >= 0):
    /// the time for routers to converge on its announcement. Default 0: a shard reserved by a
    /// plan is activated by the same plan when its addresses are needed.
    pub activate_after_s: f64,
    /// Whether an active shard that still holds leases may be drained when it is not needed (it
    /// takes no new lease and is released by the allocator once its last lease and cooldown
    /// end). Default true; false: only shards without leases are drained.
    pub drain_leased: bool,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            release_margin: 0.25,
            ready_headroom: 0,
            activate_after_s: 0.0,
            drain_leased: true,
        }
    }
}

impl PlannerConfig {
    /// Checks every field, naming the bad one and its value.
    pub fn validate(&self) -> Result<(), PlannerError> {
        if !(self.release_margin.is_finite() && (0.0..1.0).contains(&self.release_margin)) {
            return Err(PlannerError::InvalidConfig {
                field: "release_margin",
                value: self.release_margin.to_string(),
                reason: "must lie in [0, 1)".into(),
            });
        }
        if !(self.activate_after_s.is_finite() && self.activate_after_s >= 0.0) {
            return Err(PlannerError::InvalidConfig {
                field: "activate_after_s",
                value: self.activate_after_s.to_string(),
                reason: "must be a finite number of seconds >= 0".into(),
            });
        }
        Ok(())
    }
}

/// What an [`Action`] does to a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Claim a free shard (free → reserved); `prefix` is where the allocator places it.
    Reserve,
    /// Make a reserved shard ready (reserved → active), or take back a draining one (draining →
    /// active) instead of claiming a new shard.
    Activate,
    /// Stop handing out addresses from an active shard that still holds leases or addresses in
    /// their cooldown (active → draining); the allocator frees it once it is empty.
    Drain,
    /// Give back a shard with no lease and no cooling address (reserved, active or draining →
    /// free).
    Release,
}

impl ActionKind {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Reserve => "reserve",
            ActionKind::Activate => "activate",
            ActionKind::Drain => "drain",
            ActionKind::Release => "release",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step of a plan. [`crate::apply`] runs the steps in order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub kind: ActionKind,
    pub subdivision: String,
    pub pool: String,
    /// The shard (for `reserve`: where the allocator places it, found on a copy of the state).
    pub prefix: IpNet,
    /// Leases the shard holds when the plan is made (0 for `reserve` and `release`).
    pub leases: u64,
    /// Why, with the figures, e.g. `upper peak over the lead time 130 > 122 usable in 2 live
    /// shards: want 3 × /26 (61 usable each)`.
    pub reason: String,
}

/// Why a subdivision did not get all the shards it wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShortfallCause {
    /// It holds `max_shards` shards in the pool.
    MaxShards,
    /// No free block of the shard size is left where it may place one.
    PoolExhausted,
}

/// A subdivision whose demand the plan cannot cover.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shortfall {
    pub subdivision: String,
    pub pool: String,
    /// Live (reserved + active) shards it would hold with its demand covered: `got_shards` plus
    /// the shards of its size that `short_addresses` take.
    pub wanted_shards: u64,
    /// Live shards it holds after the plan.
    pub got_shards: u64,
    /// `ceil(upper_lead + ready_headroom − usable addresses of its live shards)`.
    pub short_addresses: u64,
    pub cause: ShortfallCause,
}

/// The plan's figures for one demand (one subdivision in one pool), after the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub subdivision: String,
    pub pool: String,
    /// Prefix length of the shards the plan claims for it.
    pub shard_prefix_len: u8,
    /// Addresses a shard of that size can lease (size less `reserve_first` and `reserve_last`).
    pub usable_per_shard: u64,
    /// `min(max_shards, ceil((upper_lead + ready_headroom) / usable_per_shard))`.
    pub wanted_shards: u64,
    /// Reserved + active shards before the plan.
    pub live_before: u64,
    /// Reserved + active shards after the plan.
    pub live_after: u64,
    /// Draining shards after the plan.
    pub draining_after: u64,
    /// Leases it holds (in active and draining shards).
    pub leases: u64,
    /// Ready addresses to hold (the prefetch target): `ceil(upper_lead + ready_headroom) −
    /// leases`, at least 0.
    pub ready_target: u64,
    /// Free addresses of its active shards after the plan (addresses in their release cooldown
    /// count as free: the allocator does not report them per shard).
    pub ready_after: u64,
    /// Minimal CIDR cover of its non-free shards in the pool after the plan.
    pub routes: Vec<IpNet>,
}

/// A subdivision with children, in one pool: the block its family lives in and the aggregate a
/// router above the family announces, after the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    pub subdivision: String,
    pub pool: String,
    /// Capacity the family wants, in shards of the pool's default size: its own want plus the
    /// sum of its descendants' (a member with a demand: its non-free shards after the plan plus
    /// its shortfall; without one: its non-free shards).
    pub wanted_shards: u64,
    /// Non-free shards of the family after the plan, in shards of the pool's default size.
    pub shards: u64,
    /// Its home block in the pool after the plan (`None`: it has none yet).
    pub block: Option<IpNet>,
    /// Size of the home block in shards of the pool's default size (0 without one).
    pub block_shards: u64,
    /// Minimal CIDR cover of the family's non-free shards: what a router above announces.
    pub routes: Vec<IpNet>,
    /// The family's shards that lie outside the home block (borrowed from the pool): each costs
    /// the aggregate an extra route.
    pub outside: Vec<IpNet>,
}

/// What the planner decided: the actions in the order [`crate::apply`] runs them, the
/// subdivisions it could not serve, and the figures behind them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The time the plan was made for.
    pub time: Time,
    pub actions: Vec<Action>,
    /// Demands left uncovered, in the order they were served (highest score first).
    pub shortfalls: Vec<Shortfall>,
    /// One per demand, in the order they were served.
    pub targets: Vec<Target>,
    /// One per subdivision with children and pool it or its family uses, by name and pool.
    pub aggregates: Vec<Aggregate>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The actions of one kind.
    pub fn actions_of(&self, kind: ActionKind) -> impl Iterator<Item = &Action> {
        self.actions.iter().filter(move |a| a.kind == kind)
    }
}

/// What [`crate::apply`] did, by shard.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Applied {
    /// Shards claimed (free → reserved).
    pub reserved: Vec<IpNet>,
    /// Shards made active (from reserved or draining).
    pub activated: Vec<IpNet>,
    /// Shards left draining until their leases and cooling addresses are gone.
    pub draining: Vec<IpNet>,
    /// Shards given back (now free).
    pub freed: Vec<IpNet>,
}
