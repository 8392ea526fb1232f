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
    /// On a shared store, the node names of the daemons alive now (those holding their etcd
    /// lease), as read a few seconds ago at most; `None` when unknown (or alone).
    fn live_nodes(&self) -> Option<Vec<String>> {
        None
    }
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

/// How long a daemon must have been missing from [`Leadership::live_nodes`] before the leader
/// clears its shard affinity, in units of the leader lease's ttl: a daemon that only renewed its
/// lease late, or is restarting its campaign, keeps its shards.
pub const AFFINITY_GRACE_TTLS: f64 = 2.0;

impl crate::App {
    /// On a shared store, run by the leader before each reconciler run: clears the shard affinity
    /// of every daemon missing from the live ones for longer than [`AFFINITY_GRACE_TTLS`] lease
    /// ttls, so that the live daemons adopt its shards (their free addresses, and its cooling
    /// addresses that nobody would otherwise end). Returns how many shards it cleared.
    pub fn clear_stale_affinities(&self) -> Result<usize, crate::error::ServerError> {
        let Some(live) = self.leadership().live_nodes() else {
            return Ok(0);
        };
        let live: std::collections::BTreeSet<String> = live.into_iter().collect();
        let owners = self.engine.read(|ipam| ipam.affinities())?;
        let grace =
            std::time::Duration::from_secs_f64(self.settings.leader_ttl_s * AFFINITY_GRACE_TTLS);
        let now = std::time::Instant::now();
        let gone: std::collections::BTreeSet<String> = {
            let mut missing = self.missing_nodes.lock().unwrap_or_else(|p| p.into_inner());
            missing.retain(|node, _| owners.contains(node) && !live.contains(node));
            for node in owners.difference(&live) {
                missing.entry(node.clone()).or_insert(now);
            }
            missing
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= grace)
                .map(|(node, _)| node.clone())
                .collect()
        };
        if gone.is_empty() {
            return Ok(0);
        }
        let cleared = self
            .engine
            .execute(|ipam, _| Ok(ipam.clear_affinities(|node| !gone.contains(node))))?;
        tracing::info!(
            shards = cleared,
            daemons = ?gone,
            "cleared the shard affinity of daemons that are gone"
        );
        Ok(cleared)
    }
}
