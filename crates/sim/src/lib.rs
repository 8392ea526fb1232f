//! cidrcast replay simulator: replays a VM event trace against an allocation policy and measures
//! what operators pay for it (misses and waits against idle addresses and routes), with the replay
//! semantics of ARCHITECTURE.md:
//!
//! * each subdivision holds shards of `shard_size` addresses, numbered from 0: *pending* shards
//!   become *ready* `lead_time` seconds after their claim (claim, router update, convergence); a
//!   claim takes the lowest free number;
//! * with adaptive sizes (`min_shard_size < max_shard_size`, chosen per claim by the predictive
//!   policy only), a subdivision's shards live in one address space in units of
//!   `min_shard_size`, and a claim of size `s` takes the lowest free block of `s` aligned on `s`
//!   (buddy style, so neighbours still aggregate); with one size this is the numbering above;
//! * a create takes a slot in the lowest-addressed ready shard with room: a **hit** (wait 0);
//!   otherwise it is a **miss**: it reserves a slot in the pending shard that matures first (and
//!   waits until then), or claims one at once and waits `lead_time`;
//! * only empty ready shards are released (no lease migration);
//! * idle addresses are the held shards' sizes minus the used addresses; routes are the minimal
//!   CIDR cover of the held (pending or ready) shards;
//! * a shard maturing at `t` serves creates at `t`; the replay starts `lead_time + 60 s` before the
//!   first event; metrics are taken over an evaluation window.
//!
//! Subdivisions are independent here, so each is replayed on its own and the figures are summed
//! (idle addresses, claims) or pooled (waits).

pub mod policy;
pub mod replay;
pub mod sweep;

pub use policy::Policy;
pub use replay::{decisions, replay, Decision, Params, Report};

/// What went wrong in a simulation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("invalid {what} {value}: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
}
