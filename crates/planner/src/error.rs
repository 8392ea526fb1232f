//! The one error type of the planner. Every message names the subdivision, pool, field or value.

use cidrcast_core::CoreError;
use ipnet::IpNet;

use crate::types::ActionKind;

/// What went wrong in [`crate::plan`], [`crate::apply`] or [`crate::subtree_routes`].
///
/// A failed `plan` returns no plan; a failed `apply` leaves the state exactly as it was.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlannerError {
    /// A planner setting is out of range.
    #[error("planner config: {field} = {value}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A demand carries a value that cannot size anything (NaN, infinite, negative).
    #[error("demand of subdivision `{subdivision}`: {field} = {value}: {reason}")]
    InvalidDemand {
        subdivision: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A demand (or a query) names a subdivision the state does not hold.
    #[error("unknown subdivision `{0}`")]
    UnknownSubdivision(String),
    /// A demand names a pool the state does not hold.
    #[error("demand of subdivision `{subdivision}`: unknown pool `{pool}`")]
    UnknownPool { subdivision: String, pool: String },
    /// A demand names a pool its subdivision does not draw from (`pools` of its spec).
    #[error(
        "demand of subdivision `{subdivision}`: it does not draw from pool `{pool}` (its pools: {allowed})"
    )]
    PoolNotAllowed {
        subdivision: String,
        pool: String,
        allowed: String,
    },
    /// A demand without a pool, for a subdivision with no pool to draw from.
    #[error("demand of subdivision `{0}`: no pool to draw from")]
    NoPool(String),
    /// Two demands for the same subdivision and pool.
    #[error("two demands for subdivision `{subdivision}` in pool `{pool}`")]
    DuplicateDemand { subdivision: String, pool: String },
    /// A demand asks for a shard size its pool does not hand out.
    #[error(
        "demand of subdivision `{subdivision}`: pool `{pool}` does not hand out /{prefix_len} shards (it hands out /{min} to /{max})"
    )]
    ShardSize {
        subdivision: String,
        pool: String,
        prefix_len: u8,
        min: u8,
        max: u8,
    },
    /// The allocator refused an operation the planner or `apply` needed.
    #[error("{action} for subdivision `{subdivision}` in pool `{pool}`: {source}")]
    Core {
        action: String,
        subdivision: String,
        pool: String,
        #[source]
        source: Box<CoreError>,
    },
    /// `apply` met a state that differs from the one the plan was made on; nothing was applied.
    #[error(
        "action {index} ({kind} {prefix} for subdivision `{subdivision}`): {message}; the state no longer matches the plan, nothing was applied"
    )]
    Stale {
        index: usize,
        kind: ActionKind,
        prefix: IpNet,
        subdivision: String,
        message: String,
    },
}
