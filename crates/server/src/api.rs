//! Request and response bodies of the HTTP API (JSON), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /v1/allocations`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateRequest {
    /// Subdivision the VM runs in.
    pub subdivision: String,
    /// The VM's id: the idempotency key (a retry returns the same address).
    pub vm_id: String,
    /// Application profile of the VM (must be defined).
    #[serde(default)]
    pub profile: Option<String>,
    /// Pool to draw from (default: the subdivision's pools in order).
    #[serde(default)]
    pub pool: Option<String>,
}

/// An address bound to a VM.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Allocation {
    pub vm_id: String,
    pub subdivision: String,
    pub pool: String,
    /// The VM's address.
    pub address: String,
    /// Prefix length of the VM's subnet (its shard).
    pub prefix_len: u8,
    /// The subnet's gateway: the shard's second address when the pool reserves it
    /// (`reserve_first >= 2`), else none.
    pub gateway: Option<String>,
    /// The shard holding the address.
    pub shard: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Unix time of the allocation.
    pub created: f64,
    /// Whether the address came from the prefetched pool (a ready address in an active shard)
    /// rather than the slow path (a shard claimed or activated on the spot). `None` when this
    /// request did not make the allocation (a read, or an idempotent retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefetched: Option<bool>,
    /// How this request was served: ready, activated-reserved, claimed-shard or existing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `DELETE /v1/allocations/{vm_id}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Released {
    pub vm_id: String,
    /// The address, now in its release cooldown.
    pub address: String,
}

/// Filters of `GET /v1/allocations`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AllocationFilter {
    /// Only this subdivision.
    pub subdivision: Option<String>,
    /// Only this pool.
    pub pool: Option<String>,
    /// Only this profile.
    pub profile: Option<String>,
    /// Skip this many (after filtering), for paging.
    #[serde(default)]
    pub offset: usize,
    /// At most this many (default 1000, at most 100000).
    pub limit: Option<usize>,
}

/// A page of allocations.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AllocationList {
    /// Matching allocations in all (before offset and limit).
    pub total: usize,
    pub items: Vec<Allocation>,
}

/// A non-free shard.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Shard {
    pub pool: String,
    pub prefix: String,
    pub subdivision: String,
    /// reserved, active or draining.
    pub state: String,
    /// Placed outside the subdivision's home block.
    pub borrowed: bool,
    /// Unix time of the last transition.
    pub since: f64,
    /// Why it is in this state.
    pub reason: String,
    pub leases: u64,
    pub usable: u64,
    /// Daemons sharing a store (etcd): the one that allocates in this shard; absent when any
    /// daemon may adopt it, and always for a daemon alone on its store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
}

/// Filters of `GET /v1/shards`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ShardFilter {
    pub subdivision: Option<String>,
    pub pool: Option<String>,
    /// reserved, active or draining.
    pub state: Option<String>,
}

/// A pool with its figures.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Pool {
    /// The pool as configured (the same fields as a `[[pool]]` table).
    #[schema(value_type = Object)]
    pub spec: cidrcast_core::model::PoolSpec,
    /// Addresses in the pool.
    pub size: String,
    pub shards_reserved: u64,
    pub shards_active: u64,
    pub shards_draining: u64,
    pub leases: u64,
    /// Addresses not inside any home block or shard.
    pub unassigned: String,
}

/// A subdivision with its figures.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Subdivision {
    /// The subdivision as configured (the same fields as a `[[subdivision]]` table).
    #[schema(value_type = Object)]
    pub spec: cidrcast_core::model::SubdivisionSpec,
    pub shards: u64,
    pub borrowed: u64,
    pub leases: u64,
    pub usable: String,
    pub homes: Vec<String>,
    /// Minimal CIDR cover of its non-free shards.
    pub routes: Vec<String>,
}

/// The outcome of a history import.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    /// Events appended to the history.
    pub imported: u64,
    pub creates: u64,
    pub deletes: u64,
    /// Trace time of the first and last event imported.
    pub first_time: Option<f64>,
    pub last_time: Option<f64>,
}

/// A plan: what the planner would do (dry run) or did (apply).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Plan {
    /// Whether it was applied.
    pub applied: bool,
    /// How long planning (and applying) took, in seconds.
    pub seconds: f64,
    /// The planner's plan: `time`, `actions` (reserve, activate, drain, release, each with its
    /// subdivision, pool, prefix and reason), `shortfalls` (who got less than they need, by how
    /// many addresses), `targets` (per subdivision and pool: shards wanted, ready addresses) and
    /// `aggregates` (routes of nested subdivisions).
    #[schema(value_type = Object)]
    pub plan: cidrcast_planner::Plan,
}

/// The forecast of one subdivision.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Forecast {
    pub subdivision: String,
    /// VMs alive now (from the history).
    pub alive: i64,
    /// Upper quantile of the rise of alive VMs over the lead time.
    pub rise_lead_upper: f64,
    /// Upper quantile of the rise over the longer (release) horizon.
    pub rise_keep_upper: f64,
    /// The quantile these bounds are at.
    pub quantile: f64,
    /// Demand score (peak alive expected over the lead time): serves subdivisions in order when
    /// space is scarce.
    pub demand_score: f64,
}

/// `GET /v1/forecasts`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Forecasts {
    /// Unix time of the forecasts.
    pub time: f64,
    pub lead_time_s: f64,
    /// The quantile the prefetcher uses now (adjusted towards the target miss rate).
    pub quantile: f64,
    /// The miss rate the prefetcher steers towards, if any.
    pub target_miss_rate: Option<f64>,
    /// Share of past lead windows whose realised rise stayed within the upper bound.
    pub coverage: Option<f64>,
    /// Mean absolute error of the rise over the lead window, in VMs.
    pub mean_abs_error: Option<f64>,
    pub subdivisions: Vec<Forecast>,
}

/// `GET /readyz`, `GET /healthz`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// ok, or why not.
    pub status: String,
}

/// Query of `GET /v1/routers/{name}/config`.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RouterConfigQuery {
    /// frr, bird or json; default: the router's flavor.
    pub format: Option<String>,
}
