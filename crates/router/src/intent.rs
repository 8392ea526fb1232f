//! What a router announces: the intent every renderer writes out in its daemon's syntax.
//!
//! The routing policy (README, "Routing policy"):
//! - a router serves the subdivisions it lists, those that name it, and every subdivision below
//!   those (a parent's block holds its children's shards, so the parent's router announces one
//!   aggregate for the whole subtree);
//! - it announces, per served subtree and pool, the minimal CIDR cover of the active and draining
//!   shards (class [`Class::Active`]) and, separately, of the reserved shards (class
//!   [`Class::Prefetched`]), so that every announced prefix is exactly one class;
//! - a draining shard stays announced until it is released (withdrawn only after it drained);
//! - nothing outside the pools is ever announced;
//! - every prefix carries its class's community, LOCAL_PREF and MED.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

use cidrcast_core::model::{
    Community, Flavor, Neighbor, PoolSpec, ResolvedPolicy, RouterSpec, ShardRecord, ShardState,
    SubdivisionSpec,
};
use cidrcast_core::prefix::{block_of, min_cover, Family};
use ipnet::IpNet;
use serde::Serialize;

use crate::RouterError;

/// The class of an announced prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Covers active shards (addresses are handed out) and draining ones (leases remain).
    Active,
    /// Covers reserved shards: announced ahead of demand, no lease yet.
    Prefetched,
}

impl Class {
    /// Lower-case name, as in the JSON form and the rendered comments.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Active => "active",
            Class::Prefetched => "prefetched",
        }
    }

    fn of(state: ShardState) -> Class {
        match state {
            ShardState::Active | ShardState::Draining => Class::Active,
            ShardState::Reserved => Class::Prefetched,
        }
    }
}

/// One announced prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// The aggregate announced.
    pub prefix: IpNet,
    pub class: Class,
    /// The served subdivision whose subtree it covers.
    pub subdivision: String,
    pub pool: String,
    /// How many shards it covers.
    pub shards: u32,
    /// The community it carries (its class's).
    pub community: Community,
}

/// Everything a renderer needs: the router, its policy with defaults resolved, and the
/// announcements, IPv4 before IPv6, by address.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Intent {
    pub router: String,
    pub flavor: Flavor,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub neighbors: Vec<Neighbor>,
    /// The subdivisions served (listed, naming the router, and below those), by name.
    pub subdivisions: Vec<String>,
    pub policy: ResolvedPolicy,
    pub announcements: Vec<Announcement>,
}

impl Intent {
    /// The announcements of one family and class.
    pub fn prefixes(&self, family: Family, class: Class) -> impl Iterator<Item = &Announcement> {
        self.announcements
            .iter()
            .filter(move |a| Family::of(&a.prefix) == family && a.class == class)
    }

    /// Whether anything of `family` is rendered: an announcement or a neighbor of it.
    pub fn has_family(&self, family: Family) -> bool {
        self.announcements
            .iter()
            .any(|a| Family::of(&a.prefix) == family)
            || self
                .neighbors
                .iter()
                .any(|n| Family::of(&IpNet::from(n.address)) == family)
    }

    /// The neighbors of `family`.
    pub fn neighbors_of(&self, family: Family) -> impl Iterator<Item = &Neighbor> {
        self.neighbors
            .iter()
            .filter(move |n| Family::of(&IpNet::from(n.address)) == family)
    }
}

/// The intent of `router` given the subdivisions, pools and non-free shards of a state. Pure:
/// the same inputs give the same intent.
pub fn build<'a>(
    router: &RouterSpec,
    subdivisions: &[SubdivisionSpec],
    pools: &[PoolSpec],
    shards: impl IntoIterator<Item = &'a ShardRecord>,
) -> Result<Intent, RouterError> {
    let policy = router
        .policy
        .resolve(router.asn)
        .map_err(|f| RouterError::Policy {
            router: router.name.clone(),
            field: f.field,
            value: f.value,
            reason: f.reason,
        })?;
    let parent: BTreeMap<&str, Option<&str>> = subdivisions
        .iter()
        .map(|s| (s.name.as_str(), s.parent.as_deref()))
        .collect();
    // Served directly: listed by the router (if it exists) or naming the router.
    let direct: BTreeSet<&str> = router
        .subdivisions
        .iter()
        .map(String::as_str)
        .filter(|s| parent.contains_key(s))
        .chain(
            subdivisions
                .iter()
                .filter(|s| s.routers.contains(&router.name))
                .map(|s| s.name.as_str()),
        )
        .collect();
    // The topmost directly served subdivision at or above each subdivision, if any: computed
    // once per subdivision, then looked up once per shard.
    let mut roots: HashMap<&str, &str> = HashMap::with_capacity(subdivisions.len());
    for s in subdivisions {
        let mut top = None;
        let mut cur = Some(s.name.as_str());
        let mut steps = 0;
        while let Some(n) = cur {
            if let Some(&d) = direct.get(n) {
                top = Some(d);
            }
            cur = parent.get(n).copied().flatten();
            steps += 1;
            if steps > subdivisions.len() {
                break; // a cycle cannot be stored; stop anyway
            }
        }
        if let Some(t) = top {
            roots.insert(s.name.as_str(), t);
        }
    }
    let root_of = |name: &str| roots.get(name).copied();
    let served: Vec<String> = subdivisions
        .iter()
        .filter(|s| roots.contains_key(s.name.as_str()))
        .map(|s| s.name.clone())
        .collect();

    type Key<'k> = (&'k str, &'k str, Class);
    let mut groups: BTreeMap<Key, (Family, Vec<IpNet>)> = BTreeMap::new();
    for shard in shards {
        let Some(root) = root_of(&shard.subdivision) else {
            continue;
        };
        let inside = pools
            .iter()
            .any(|p| p.name == shard.pool && p.prefix.contains(&shard.prefix));
        if !inside {
            return Err(RouterError::OutsidePool {
                router: router.name.clone(),
                pool: shard.pool.clone(),
                prefix: shard.prefix,
            });
        }
        groups
            .entry((root, shard.pool.as_str(), Class::of(shard.state)))
            .or_insert_with(|| (Family::of(&shard.prefix), Vec::new()))
            .1
            .push(shard.prefix);
    }
    let mut announcements = Vec::new();
    for ((root, pool, class), (family, mut nets)) in groups {
        let community = match class {
            Class::Active => policy.active_community,
            Class::Prefetched => policy.prefetched_community,
        };
        nets.sort_unstable();
        // The cover comes out sorted, like `nets`: count the shards under each prefix in one walk.
        let mut next = 0;
        for prefix in min_cover(family, nets.iter().map(block_of)) {
            let start = next;
            while next < nets.len() && prefix.contains(&nets[next]) {
                next += 1;
            }
            let shards = (next - start) as u32;
            announcements.push(Announcement {
                prefix,
                class,
                subdivision: root.to_string(),
                pool: pool.to_string(),
                shards,
                community,
            });
        }
    }
    announcements.sort_by_key(|a| (Family::of(&a.prefix), a.prefix));
    Ok(Intent {
        router: router.name.clone(),
        flavor: router.flavor,
        router_id: router.router_id,
        asn: router.asn,
        neighbors: router.neighbors.clone(),
        subdivisions: served,
        policy,
        announcements,
    })
}

/// What intents are built from, copied out of an allocator state once (under the engine lock)
/// for any number of routers.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub subdivisions: Vec<SubdivisionSpec>,
    pub pools: Vec<PoolSpec>,
    pub shards: Vec<ShardRecord>,
}

impl Inputs {
    /// The subdivisions, pools and non-free shards of `ipam`.
    pub fn of(ipam: &cidrcast_core::Ipam) -> Inputs {
        Inputs {
            subdivisions: ipam.subdivision_specs(),
            pools: ipam.pool_specs(),
            shards: ipam
                .shards(None)
                .expect("every shard")
                .into_iter()
                .map(|s| s.record)
                .collect(),
        }
    }

    /// The intent of `router` over these inputs.
    pub fn intent(&self, router: &RouterSpec) -> Result<Intent, RouterError> {
        build(router, &self.subdivisions, &self.pools, &self.shards)
    }
}

/// The intent of `router` over an allocator state (its subdivisions, pools and shards).
pub fn from_state(router: &RouterSpec, ipam: &cidrcast_core::Ipam) -> Result<Intent, RouterError> {
    Inputs::of(ipam).intent(router)
}
