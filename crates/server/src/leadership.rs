//! Who runs the reconciler and deploys router configurations. One daemon alone always does; on a
//! shared store (several daemons on one etcd cluster) exactly one, elected through an etcd lease
//! (the binary provides that [`Leadership`]), while every daemon serves allocations.

/// The answer to "should this daemon run the reconciler now?".
pub trait Leadership: Send + Sync {
    /// This daemon leads now: it runs the reconciler and the router deployer.
    fn is_leader(&self) -> bool;
    /// The store is shared with other daemons: their commits are not in this daemon's view
    /// until it reloads (before each reconciler run, and every second).
    fn shared(&self) -> bool;
    /// For logs and `/readyz`: e.g. `leader`, `follower (leader: daemon-2)`.
    fn describe(&self) -> String;
}

/// A daemon alone on its store: always the leader.
pub struct Solo;

impl Leadership for Solo {
    fn is_leader(&self) -> bool {
        true
    }
    fn shared(&self) -> bool {
        false
    }
    fn describe(&self) -> String {
        "alone on its store".to_string()
    }
}
