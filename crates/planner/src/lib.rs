//! cidrcast sharding engine: a pure, deterministic planner. Given the allocator state
//! ([`cidrcast_core::Ipam`]), the forecast demand of subdivisions ([`Demand`]) and the config
//! ([`PlannerConfig`]), [`plan`] returns a [`Plan`]: the shards to reserve, activate, drain and
//! release per subdivision, each with its reason, the subdivisions it could not serve
//! ([`Shortfall`]), the prefetch targets ([`Target`]) and the aggregates of nested subdivisions
//! ([`Aggregate`]). [`apply`] runs a plan through the allocator, all or nothing. No I/O here:
//! the same inputs always give the same plan.
//!
//! # Sizing: addresses, not the demand score
//!
//! For a demand in a pool whose shards lease `usable` addresses each (the shard size less
//! `reserve_first` and `reserve_last`; 61 for a /26 with 2 + 1 reserved):
//!
//! ```text
//! wanted shards = min(max_shards, ceil((upper_lead + ready_headroom) / usable))
//! ```
//!
//! where `upper_lead` is the upper quantile of the peak alive VMs over the lead time. The seed's
//! `floor(demandScore / shardSize)` mixed VMs × Mbps with addresses; the demand score (peak ×
//! Mbps per VM) only orders subdivisions when space is scarce. Internally the rule is kept in
//! addresses (the *live* shards, reserved + active, must lease at least `upper_lead +
//! ready_headroom` addresses), which is the formula when all shards have one size and stays right
//! when a subdivision holds shards of several sizes ([`Demand::prefix_len`], claimed with
//! `Ipam::claim_shard_sized`). Draining shards do not count: they take no new lease.
//!
//! # The three phases of a plan
//!
//! The claims run on a copy of the state (journal off), in the order below, so the plan names
//! the exact prefix the allocator places each new shard at, and knows which claims fail.
//!
//! 1. **Take back and give back**, per demand.
//!    * When the live capacity is short, draining shards are *reactivated* (most leases first)
//!      instead of claiming new ones: demand came back.
//!    * Draining shards left with no lease and no address in its cooldown are released.
//!    * **Hysteresis**: a live shard is given back only when the capacity left still covers
//!      `upper_lead + ready_headroom` *and* `upper_long + ready_headroom <= capacity left × (1 −
//!      release_margin)`, with `upper_long` the upper quantile over the longer release horizon.
//!      Growing needs `capacity < upper_lead`, shrinking needs `capacity − shard >= upper_lead`
//!      and the longer horizon well below: a demand that moves inside that band changes nothing,
//!      so plans do not flap. Shards are given back one at a time while the test passes:
//!      reserved shards first (never announced in use), then active ones with the fewest leases,
//!      borrowed before home ones, highest address first (keeping the low buddies together).
//!    * A reserved or empty shard is **released** (free at once). An active shard with leases
//!      (or with addresses in their release cooldown) is **drained**: it takes no new lease, and
//!      the allocator frees it when its last lease and cooldown are gone; a shard with leases is
//!      never released. With `drain_leased = false` only shards without leases are drained.
//!      Giving back before claiming frees space for the claims of phase 2.
//! 2. **Claims**, highest demand score first (ties by name), so that when space is scarce it
//!    goes to the highest demand: shards of the demand's size are reserved until the live
//!    capacity covers the demand. A claim refused for lack of space (`PoolExhausted`) or by
//!    `max_shards` (which counts draining shards too, as the allocator does) stops that demand
//!    and becomes a [`Shortfall`] saying how many shards it wanted, how many it got and how many
//!    addresses it is short. A subdivision that holds shards of several sizes gets the
//!    hysteresis test of phase 1 once more after its claims (claims of its size may overshoot
//!    enough that an odd-sized shard is no longer needed), so that the next plan on the result
//!    does not do it: planning is a fixed point.
//! 3. **Activation** (the prefetcher): per demand, the ready addresses to hold are
//!    `ceil(upper_lead + ready_headroom) − leases` (the forecast's upper quantile less what is
//!    used); reserved shards are activated, lowest address first, until the free addresses of
//!    the active shards reach it. `activate_after_s` holds a newly reserved shard back until
//!    routers have converged on it (default 0: the same plan activates it). Addresses are
//!    materialised just in time inside ready shards: the allocator keeps a bitmap per shard and
//!    hands out the lowest free address on allocation. Addresses in their release cooldown count
//!    as free here (the allocator does not report them per shard).
//!
//! Subdivisions and pools without a demand are left alone.
//!
//! # Contiguity
//!
//! Placement is the allocator's (`cidrcast_core::ipam`): a new shard goes inside the
//! subdivision's home block, best fit and lowest aligned buddy first; a full home block doubles
//! by claiming its buddy; only when that fails is a shard borrowed from the parent's block or the
//! pool (an extra route). The planner keeps to it by giving back borrowed and high shards first,
//! so that the shards that stay merge into few prefixes ([`Target::routes`], the minimal CIDR
//! cover).
//!
//! # Hierarchy
//!
//! What the core does: a child's home block is carved out of its parent's home block (the parent
//! gets one first), and when the parent's block has no room the core doubles it by claiming its
//! buddy, growing the grandparent first when needed. So the shards of a family stay inside the
//! top block, and a router above the family announces its minimal cover, as long as each block
//! can double; when a buddy is taken (another subdivision's block, a borrowed shard), a child's
//! shard is borrowed from further up or the pool, outside the parent's block.
//!
//! What the planner adds: for every subdivision with children and every pool its family uses,
//! an [`Aggregate`] with the capacity the family wants (its own want plus the sum of its
//! descendants', in default-size shards), the shards it holds and the home block after the plan,
//! the routes a router above announces (the minimal cover of the family's shards) and the shards
//! that escaped the block. When `wanted_shards` exceeds `block_shards` the block will have to
//! double (or cannot, and children will borrow): an operator raises the parent's `home_shards`
//! to the next power of two of `wanted_shards` to reserve the room up front. The allocator offers
//! no way to size a home block from outside, so the planner reports rather than forces it.
//! [`subtree_routes`] gives the same cover for any subdivision from a state.
//!
//! # Apply
//!
//! [`apply`] runs the actions in order on a copy of the state and swaps it in only when all
//! succeeded; before each action it checks that the shard is what the plan saw, and that each
//! claim lands where the plan placed it. A plan is for the state it was made on.

mod apply;
mod error;
mod plan;
mod types;

use std::collections::{BTreeMap, BTreeSet};

use cidrcast_core::model::SubdivisionSpec;
use cidrcast_core::Ipam;
use ipnet::IpNet;

pub use apply::apply;
pub use error::PlannerError;
pub use plan::plan;
pub use types::{
    Action, ActionKind, Aggregate, Applied, Demand, Plan, PlannerConfig, Shortfall, ShortfallCause,
    Target,
};

/// The routes a router above `subdivision` announces: the minimal CIDR cover of the non-free
/// shards of the subdivision and all its descendants, per pool (pools by name, each cover by
/// address).
pub fn subtree_routes(state: &Ipam, subdivision: &str) -> Result<Vec<IpNet>, PlannerError> {
    if !state.has_subdivision(subdivision) {
        return Err(PlannerError::UnknownSubdivision(subdivision.to_string()));
    }
    let specs: BTreeMap<String, SubdivisionSpec> = state
        .subdivision_specs()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let members: BTreeSet<String> = plan::family(subdivision, &plan::children_of(&specs))
        .into_iter()
        .collect();
    let mut by_pool: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
    for s in state.shards(None).expect("all shards") {
        if members.contains(&s.record.subdivision) {
            by_pool
                .entry(s.record.pool)
                .or_default()
                .push(s.record.prefix);
        }
    }
    Ok(by_pool.into_values().flat_map(plan::cover).collect())
}
