//! The allocator state machine: pools, subdivisions with home blocks, shards with their lifecycle,
//! leases with per-shard bitmaps, and the release cooldown.
//!
//! Every mutating operation validates first and fails without changing anything; when it succeeds
//! it appends the records it changed to the journal ([`Ipam::take_journal`]), which a store commits
//! atomically. [`Ipam::from_snapshot`] rebuilds the same state from the stored records.
//!
//! Placement (see ARCHITECTURE.md, "Contiguity and aggregation"):
//! * each subdivision gets, per pool, a *home block* of `home_shards` shards (default 4), placed in
//!   the largest free block of its container (the parent's home block, or the pool) so that it has
//!   room to grow;
//! * a shard is taken inside the home block, best fit and lowest buddy first;
//! * when the home block is full it doubles by claiming its buddy (growing the parent first when the
//!   home fills the parent's block);
//! * only when neither fits is a shard *borrowed* from the parent's block or the pool (counted: it
//!   is an extra route);
//! * released shards coalesce with their buddies; a home block gives back a free half while it is
//!   larger than `home_shards`.
//!
//! Shard sizes: a pool hands out shards of `shard_prefix_len` by default, and of any prefix length
//! from `min_shard_prefix_len` (largest) to `max_shard_prefix_len` (smallest) when it sets them
//! ([`Ipam::claim_shard_sized`]). The buddy arenas work in blocks of the smallest size, so shards
//! of every size are aligned, never overlap and coalesce when freed; home blocks are still counted
//! in default-size shards. A shard larger than its home block grows the home block (by claiming
//! buddies) until it fits; when it cannot, the growth is undone and the shard is borrowed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;

use compact_str::CompactString;
use hashbrown::{HashMap, HashTable};
use ipnet::IpNet;

use crate::addrset::AddrSet;
use crate::arena::Arena;
use crate::error::CoreError;
use crate::model::{
    Change, CoolingRecord, EventKind, HomeRecord, LeaseRecord, PoolSpec, Reason, ShardRecord,
    ShardState, Snapshot, SubdivisionSpec, Time, Transition, VmEvent, DEFAULT_COOLDOWN_S,
};
use crate::prefix::{
    addr_to_u128, block_of, min_cover, require_network, size_of_order, u128_to_addr, Block, Family,
};

/// Home block size in shards when a subdivision does not set `home_shards`.
pub const DEFAULT_HOME_SHARDS: u32 = 4;

type PoolId = u32;
type SubId = u32;
type ShardId = u32;

/// Tunables of the allocator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    /// Seconds before a released address may be handed out again.
    pub cooldown_s: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldown_s: DEFAULT_COOLDOWN_S,
        }
    }
}

/// How an allocation was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AllocPath {
    /// From an active shard with a free address (prefetched/ready).
    Ready,
    /// A reserved shard had to be activated first.
    ActivatedReserved,
    /// No shard was ready: one was claimed on the spot (slow path).
    ClaimedShard,
    /// The VM already held this lease (idempotent retry).
    Existing,
}

impl AllocPath {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AllocPath::Ready => "ready",
            AllocPath::ActivatedReserved => "activated-reserved",
            AllocPath::ClaimedShard => "claimed-shard",
            AllocPath::Existing => "existing",
        }
    }
}

/// The result of an allocation (plain values: building records is left to the caller).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Allocation {
    pub address: IpAddr,
    /// The shard holding the address (the subnet the VM sits in).
    pub shard: IpNet,
    pub path: AllocPath,
}

/// Counters since this state was built (not persisted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub allocations: u64,
    pub ready_hits: u64,
    pub slow_path: u64,
    pub releases: u64,
    pub shard_claims: u64,
    pub shard_releases: u64,
    pub borrowed_claims: u64,
    pub home_growths: u64,
    /// Shard state changes of any kind (claim, activate, drain, release): when it moves, the
    /// set of announced shards may have changed and router configurations are rendered again.
    pub shard_transitions: u64,
}

/// A shard with its live figures.
#[derive(Clone, Debug, PartialEq)]
pub struct ShardInfo {
    pub record: ShardRecord,
    pub leases: u64,
    /// Released addresses still in their cooldown (not leased, not yet ready).
    pub cooling: u64,
    /// Addresses that can be leased (shard size less reserved addresses).
    pub usable: u128,
}

/// Per-pool figures.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolInfo {
    pub spec: PoolSpec,
    pub size: u128,
    pub shards_reserved: u64,
    pub shards_active: u64,
    pub shards_draining: u64,
    pub leases: u64,
    /// Addresses of non-free shards that can be leased.
    pub usable_in_shards: u128,
    /// Addresses not inside any home block or shard.
    pub unassigned: u128,
}

/// Per-subdivision figures.
#[derive(Clone, Debug, PartialEq)]
pub struct SubdivisionInfo {
    pub spec: SubdivisionSpec,
    pub shards: u64,
    pub borrowed: u64,
    pub leases: u64,
    pub usable: u128,
    pub homes: Vec<IpNet>,
    /// Minimal CIDR cover of the non-free shards.
    pub routes: Vec<IpNet>,
}

#[derive(Clone, Debug)]
struct Pool {
    spec: PoolSpec,
    family: Family,
    block: Block,
    /// Order of a default-size shard (`shard_prefix_len`): home blocks are sized in these.
    shard_order: u8,
    /// Order of the smallest shard handed out (`max_shard_prefix_len`); the arenas' granule.
    min_order: u8,
    /// Order of the largest shard handed out (`min_shard_prefix_len`).
    max_order: u8,
    root: Arena,
    /// Released addresses and when they may be reused, in release order.
    cooling: VecDeque<(u128, Time)>,
    /// Non-free shards by base.
    shards: BTreeMap<u128, ShardId>,
    reserved_blocks: Vec<Block>,
}

#[derive(Clone, Debug)]
struct Home {
    arena: Arena,
    /// Never shrinks below this order.
    floor: u8,
}

/// The state a failed or abandoned home-block placement restores (see `Ipam::place_shard`).
struct PlacementUndo {
    homes: Vec<(SubId, Option<Option<Home>>)>,
    root: Arena,
    journal_len: usize,
    counters: Counters,
}

#[derive(Clone, Debug, Default)]
struct SubPool {
    home: Option<Home>,
    /// Non-free shards of this subdivision in this pool, by base.
    shards: BTreeMap<u128, ShardId>,
    /// Active shards with a free address, by base (first fit takes the lowest).
    with_room: BTreeSet<u128>,
}

#[derive(Clone, Debug)]
struct Sub {
    spec: SubdivisionSpec,
    parent: Option<SubId>,
    children: Vec<SubId>,
    per_pool: BTreeMap<PoolId, SubPool>,
    leases: u64,
}

#[derive(Clone, Debug)]
struct Shard {
    pool: PoolId,
    sub: SubId,
    block: Block,
    state: ShardState,
    borrowed: bool,
    since: Time,
    reason: Reason,
    addrs: AddrSet,
    leases: u64,
    /// The daemon allocating in this shard ([`ShardRecord::affinity`]).
    affinity: Option<CompactString>,
}

/// Live shards at most (shard ids are 24 bits in a lease).
pub const MAX_LIVE_SHARDS: usize = 1 << 24;
/// Distinct application profiles at most (8 bits in a lease).
pub const MAX_PROFILES: usize = 255;
/// Addresses one shard hands out at most (offsets are 32 bits in a lease): a /64 shard leases its
/// first 2^32 addresses.
pub const MAX_SHARD_ADDRESSES: u64 = 1 << 32;

/// A live lease, packed to 40 bytes: a million of them fit in about 40 MiB.
#[derive(Clone, Debug)]
struct Lease {
    vm: CompactString,
    created: Time,
    /// Shard id (low 24 bits) and profile (high 8 bits: 0 = none, else index + 1 into `profiles`).
    shard_profile: u32,
    offset: u32,
}

impl Lease {
    fn new(vm: &str, shard: ShardId, offset: u64, profile: u8, created: Time) -> Lease {
        debug_assert!((shard as usize) < MAX_LIVE_SHARDS && offset < MAX_SHARD_ADDRESSES);
        Lease {
            vm: CompactString::from(vm),
            created,
            shard_profile: shard | (u32::from(profile) << 24),
            offset: offset as u32,
        }
    }

    fn shard(&self) -> ShardId {
        self.shard_profile & 0x00ff_ffff
    }

    fn profile(&self) -> u8 {
        (self.shard_profile >> 24) as u8
    }

    fn offset(&self) -> u64 {
        u64::from(self.offset)
    }
}

/// The allocator state. See the module documentation.
#[derive(Clone, Debug)]
pub struct Ipam {
    settings: Settings,
    pools: Vec<Option<Pool>>,
    pool_ix: HashMap<String, PoolId>,
    subs: Vec<Option<Sub>>,
    sub_ix: HashMap<String, SubId>,
    shards: Vec<Option<Shard>>,
    free_shard_ids: Vec<ShardId>,
    leases: Vec<Lease>,
    lease_ix: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    profiles: Vec<CompactString>,
    clock: Time,
    journal: Vec<Change>,
    journaling: bool,
    counters: Counters,
    /// Where allocations start to look inside a shard (see [`Ipam::set_address_hint`]).
    address_hint: u64,
    /// This daemon's node name on a shared store (see [`Ipam::set_node`]); `None`: alone.
    node: Option<CompactString>,
}

fn invalid_sub(name: &str, message: impl Into<String>) -> CoreError {
    CoreError::InvalidSubdivision {
        name: name.to_string(),
        message: message.into(),
    }
}

fn invalid_pool(name: &str, message: impl Into<String>) -> CoreError {
    CoreError::InvalidPool {
        pool: name.to_string(),
        message: message.into(),
    }
}

/// Checks a VM id: 1 to 128 printable characters, no commas (it is a CSV field in traces).
pub fn validate_vm_id(vm_id: &str) -> Result<(), CoreError> {
    let ok = !vm_id.is_empty()
        && vm_id.len() <= 128
        && vm_id.chars().all(|c| !c.is_control() && c != ',');
    if ok {
        Ok(())
    } else {
        Err(CoreError::InvalidVmId(vm_id.to_string()))
    }
}

impl Ipam {
    /// An empty state.
    pub fn new(settings: Settings) -> Self {
        Ipam {
            settings,
            pools: Vec::new(),
            pool_ix: HashMap::new(),
            subs: Vec::new(),
            sub_ix: HashMap::new(),
            shards: Vec::new(),
            free_shard_ids: Vec::new(),
            leases: Vec::new(),
            lease_ix: HashTable::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            profiles: Vec::new(),
            clock: f64::NEG_INFINITY,
            journal: Vec::new(),
            journaling: true,
            counters: Counters::default(),
            address_hint: 0,
            node: None,
        }
    }

    /// Where allocations start to look inside a shard: at offset `hint` modulo its allocatable
    /// range, then upwards, wrapping (0, the default: the lowest free address). Several daemons
    /// allocating from one shared store each take their own hint, so that they rarely pick the
    /// same address from views a moment old. Not persisted.
    pub fn set_address_hint(&mut self, hint: u64) {
        self.address_hint = hint;
    }

    /// Makes this allocator one of several daemons sharing a store, named `node` (unique among
    /// them): it then allocates only in shards with its affinity ([`ShardRecord::affinity`]).
    /// An allocation takes a shard of its own with room; else adopts one without affinity
    /// (active, then reserved), writing its name into the record; else claims a new one, with its
    /// affinity. Shards with another daemon's affinity are left alone, and so are their cooling
    /// addresses: their cooldowns end in this allocator's memory only (the owner writes it), so
    /// that two daemons never write the same records. `None` (the default): alone on the store,
    /// every shard is usable and affinity is never written. Not persisted.
    pub fn set_node(&mut self, node: Option<&str>) {
        self.node = node.map(CompactString::from);
    }

    /// Whether this allocator may allocate in (or write the cooling addresses of) shard `id`:
    /// alone, or the shard has its affinity or none.
    fn may_use(&self, id: ShardId) -> bool {
        match (&self.node, &self.shard(id).affinity) {
            (None, _) | (_, None) => true,
            (Some(me), Some(owner)) => me == owner,
        }
    }

    /// Whether shard `id` has this allocator's affinity (always, alone on the store).
    fn owns(&self, id: ShardId) -> bool {
        self.node.is_none() || self.shard(id).affinity == self.node
    }

    /// Gives shard `id` this allocator's affinity (a no-op alone on the store), journaling the
    /// record. The shard must have no affinity or this one.
    fn adopt(&mut self, id: ShardId) {
        if self.owns(id) {
            return;
        }
        self.adopt_quietly(id);
        self.record_shard(id);
    }

    /// Journals shard `id`'s record as it is now (a change that is no transition).
    fn record_shard(&mut self, id: ShardId) {
        if self.journaling {
            let rec = self.shard_record(id);
            self.journal.push(Change::PutShard(rec));
        }
    }

    /// Gives shard `id` this allocator's affinity without journaling it: for a shard whose
    /// record is journaled right after (a transition).
    fn adopt_quietly(&mut self, id: ShardId) {
        if self.node.is_some() {
            let node = self.node.clone();
            self.shard_mut(id).affinity = node;
        }
    }

    /// The distinct daemons with affinity to some shard.
    pub fn affinities(&self) -> std::collections::BTreeSet<String> {
        self.shards
            .iter()
            .flatten()
            .filter_map(|s| s.affinity.as_deref().map(str::to_string))
            .collect()
    }

    /// Clears the affinity of every shard whose daemon is not `alive` (it stopped or lost its
    /// store), so that the live daemons may adopt them; returns how many. The records are
    /// journaled. Run by the one daemon that runs the reconciler.
    pub fn clear_affinities(&mut self, alive: impl Fn(&str) -> bool) -> usize {
        let mut cleared = 0;
        for id in 0..self.shards.len() as ShardId {
            let stale = self.shards[id as usize]
                .as_ref()
                .and_then(|s| s.affinity.as_deref())
                .is_some_and(|a| !alive(a));
            if stale {
                self.shard_mut(id).affinity = None;
                cleared += 1;
                self.record_shard(id);
            }
        }
        cleared
    }

    /// The settings in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Turns the journal on or off (off: nothing is recorded; for pure in-memory use).
    pub fn set_journaling(&mut self, on: bool) {
        self.journaling = on;
        if !on {
            self.journal.clear();
        }
    }

    /// The changes recorded since the last call, oldest first.
    pub fn take_journal(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.journal)
    }

    /// Whether the journal holds changes not yet taken.
    pub fn has_journal(&self) -> bool {
        !self.journal.is_empty()
    }

    /// Counters since this state was built.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Number of live leases.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    fn record(&mut self, change: impl FnOnce() -> Change) {
        if self.journaling {
            self.journal.push(change());
        }
    }

    fn tick(&mut self, now: Time) -> Time {
        if now > self.clock {
            self.clock = now;
        }
        self.clock
    }

    fn pool(&self, id: PoolId) -> &Pool {
        self.pools[id as usize].as_ref().expect("live pool id")
    }

    fn pool_mut(&mut self, id: PoolId) -> &mut Pool {
        self.pools[id as usize].as_mut().expect("live pool id")
    }

    fn sub(&self, id: SubId) -> &Sub {
        self.subs[id as usize]
            .as_ref()
            .expect("live subdivision id")
    }

    fn sub_mut(&mut self, id: SubId) -> &mut Sub {
        self.subs[id as usize]
            .as_mut()
            .expect("live subdivision id")
    }

    fn shard(&self, id: ShardId) -> &Shard {
        self.shards[id as usize].as_ref().expect("live shard id")
    }

    fn shard_mut(&mut self, id: ShardId) -> &mut Shard {
        self.shards[id as usize].as_mut().expect("live shard id")
    }

    fn pool_id(&self, name: &str) -> Result<PoolId, CoreError> {
        self.pool_ix
            .get(name)
            .copied()
            .ok_or_else(|| CoreError::UnknownPool(name.to_string()))
    }

    fn sub_id(&self, name: &str) -> Result<SubId, CoreError> {
        self.sub_ix
            .get(name)
            .copied()
            .ok_or_else(|| CoreError::UnknownSubdivision(name.to_string()))
    }

    // ----------------------------------------------------------------------------------------
    // Pools

    /// Adds a pool after checking it (prefix, shard size, reserved ranges, overlaps in its VRF).
    pub fn add_pool(&mut self, spec: PoolSpec) -> Result<(), CoreError> {
        if self.pool_ix.contains_key(&spec.name) {
            return Err(CoreError::PoolExists(spec.name));
        }
        let pool = Self::build_pool(&spec)?;
        for other in self.pools.iter().flatten() {
            if other.spec.vrf == spec.vrf
                && other.family == pool.family
                && other.block.overlaps(pool.block)
            {
                return Err(CoreError::PoolOverlap {
                    pool: spec.name.clone(),
                    prefix: spec.prefix,
                    other: other.spec.name.clone(),
                    other_prefix: other.spec.prefix,
                    vrf: spec.vrf.clone(),
                });
            }
        }
        let id = self.pools.len() as PoolId;
        self.pool_ix.insert(spec.name.clone(), id);
        self.pools.push(Some(pool));
        self.record(|| Change::PutPool(spec));
        Ok(())
    }

    fn build_pool(spec: &PoolSpec) -> Result<Pool, CoreError> {
        if spec.name.is_empty() {
            return Err(invalid_pool("", "the name is empty"));
        }
        require_network(&spec.prefix).map_err(|e| invalid_pool(&spec.name, e.to_string()))?;
        let family = Family::of(&spec.prefix);
        let bits = family.bits();
        let len = spec.prefix.prefix_len();
        if len == 0 {
            return Err(invalid_pool(&spec.name, "a /0 pool is not supported"));
        }
        if spec.shard_prefix_len < len || spec.shard_prefix_len > bits {
            return Err(invalid_pool(
                &spec.name,
                format!(
                    "shard_prefix_len {} must lie between the pool's /{} and /{}",
                    spec.shard_prefix_len, len, bits
                ),
            ));
        }
        let shard_order = bits - spec.shard_prefix_len;
        if shard_order > 64 {
            return Err(invalid_pool(
                &spec.name,
                format!(
                    "shard_prefix_len {} is too short: shards hold at most 2^64 addresses (/64 in IPv6)",
                    spec.shard_prefix_len
                ),
            ));
        }
        if let Some(min) = spec.min_shard_prefix_len {
            if min > spec.shard_prefix_len {
                return Err(invalid_pool(
                    &spec.name,
                    format!(
                        "min_shard_prefix_len {min} exceeds shard_prefix_len {} (the default \
                         shard size must lie within [min_shard_prefix_len, max_shard_prefix_len])",
                        spec.shard_prefix_len
                    ),
                ));
            }
            if min < len {
                return Err(invalid_pool(
                    &spec.name,
                    format!(
                        "min_shard_prefix_len {min} must lie between the pool's /{len} and /{bits}"
                    ),
                ));
            }
            if bits - min > 64 {
                return Err(invalid_pool(
                    &spec.name,
                    format!(
                        "min_shard_prefix_len {min} is too short: shards hold at most 2^64 \
                         addresses (/64 in IPv6)"
                    ),
                ));
            }
        }
        if let Some(max) = spec.max_shard_prefix_len {
            if max < spec.shard_prefix_len {
                return Err(invalid_pool(
                    &spec.name,
                    format!(
                        "max_shard_prefix_len {max} is below shard_prefix_len {} (the default \
                         shard size must lie within [min_shard_prefix_len, max_shard_prefix_len])",
                        spec.shard_prefix_len
                    ),
                ));
            }
            if max > bits {
                return Err(invalid_pool(
                    &spec.name,
                    format!(
                        "max_shard_prefix_len {max} must lie between the pool's /{len} and /{bits}"
                    ),
                ));
            }
        }
        let (min_len, max_len) = spec.shard_prefix_range();
        let (min_order, max_order) = (bits - max_len, bits - min_len);
        let reserved = u128::from(spec.reserve_first) + u128::from(spec.reserve_last);
        if reserved >= size_of_order(shard_order) {
            return Err(invalid_pool(
                &spec.name,
                format!(
                    "reserve_first {} + reserve_last {} leave no address in a /{} shard",
                    spec.reserve_first, spec.reserve_last, spec.shard_prefix_len
                ),
            ));
        }
        // The smallest shard must keep an address after the reserved ones too.
        if reserved >= size_of_order(min_order) {
            return Err(invalid_pool(
                &spec.name,
                format!(
                    "max_shard_prefix_len {max_len}: a /{max_len} shard leaves no address after \
                     reserve_first {} + reserve_last {} (it must hold at least {} addresses)",
                    spec.reserve_first,
                    spec.reserve_last,
                    reserved + 1
                ),
            ));
        }
        let block = block_of(&spec.prefix);
        let mut root = Arena::new(block, min_order);
        let mut reserved_blocks = Vec::new();
        for r in &spec.reserved {
            if Family::of(r) != family || !block.contains(block_of(r)) {
                return Err(invalid_pool(
                    &spec.name,
                    format!("reserved range {r} lies outside {}", spec.prefix),
                ));
            }
            // Whole shards of the smallest size covering the range are taken out of the pool.
            let rb = block_of(r);
            let order = rb.order.max(min_order);
            let covering = Block {
                base: rb.base & !(size_of_order(order) - 1),
                order,
            };
            if root.claim_exact(covering) {
                reserved_blocks.push(covering);
            } else if !reserved_blocks.iter().any(|b| b.contains(covering)) {
                // Partly claimed by an earlier range: claim the shards still free one by one.
                let shards = size_of_order(order - min_order);
                for i in 0..shards {
                    let s = Block {
                        base: covering.base + i * size_of_order(min_order),
                        order: min_order,
                    };
                    if root.claim_exact(s) {
                        reserved_blocks.push(s);
                    }
                }
            }
        }
        Ok(Pool {
            spec: spec.clone(),
            family,
            block,
            shard_order,
            min_order,
            max_order,
            root,
            cooling: VecDeque::new(),
            shards: BTreeMap::new(),
            reserved_blocks,
        })
    }

    /// Removes a pool that holds no shard (empty home blocks in it are dropped).
    pub fn remove_pool(&mut self, name: &str) -> Result<PoolSpec, CoreError> {
        let id = self.pool_id(name)?;
        if !self.pool(id).shards.is_empty() {
            return Err(CoreError::PoolInUse(name.to_string()));
        }
        for s in self.subs.iter().flatten() {
            if s.spec.pools.iter().any(|p| p == name) {
                return Err(CoreError::InvalidPool {
                    pool: name.to_string(),
                    message: format!("subdivision `{}` draws from it", s.spec.name),
                });
            }
        }
        let mut dropped = Vec::new();
        for s in self.subs.iter_mut().flatten() {
            if let Some(sp) = s.per_pool.remove(&id) {
                if sp.home.is_some() {
                    dropped.push(s.spec.name.clone());
                }
            }
        }
        for sub in dropped {
            self.record(|| Change::DeleteHome {
                subdivision: sub,
                pool: name.to_string(),
            });
        }
        let pool = self.pools[id as usize].take().expect("live pool");
        self.pool_ix.remove(name);
        self.record(|| Change::DeletePool {
            name: name.to_string(),
        });
        Ok(pool.spec)
    }

    // ----------------------------------------------------------------------------------------
    // Subdivisions

    /// Adds a subdivision after checking its parent, pools and limits.
    pub fn add_subdivision(&mut self, spec: SubdivisionSpec) -> Result<(), CoreError> {
        if spec.name.is_empty() || spec.name.chars().any(|c| c.is_control() || c == ',') {
            return Err(invalid_sub(
                &spec.name,
                "the name must be non-empty, without commas or control characters",
            ));
        }
        if self.sub_ix.contains_key(&spec.name) {
            return Err(CoreError::SubdivisionExists(spec.name));
        }
        let parent = match &spec.parent {
            Some(p) => Some(self.sub_id(p).map_err(|_| {
                invalid_sub(&spec.name, format!("unknown parent subdivision `{p}`"))
            })?),
            None => None,
        };
        for p in &spec.pools {
            if !self.pool_ix.contains_key(p) {
                return Err(invalid_sub(&spec.name, format!("unknown pool `{p}`")));
            }
        }
        if spec.max_shards == Some(0) {
            return Err(invalid_sub(&spec.name, "max_shards must be at least 1"));
        }
        if let Some(h) = spec.home_shards {
            if h == 0 || !h.is_power_of_two() {
                return Err(invalid_sub(
                    &spec.name,
                    format!("home_shards {h} is not a power of two"),
                ));
            }
            if let Some(m) = spec.max_shards {
                if h > m.next_power_of_two() {
                    return Err(invalid_sub(
                        &spec.name,
                        format!("home_shards {h} exceeds max_shards {m}"),
                    ));
                }
            }
        }
        let id = self.subs.len() as SubId;
        if let Some(p) = parent {
            self.sub_mut(p).children.push(id);
        }
        self.sub_ix.insert(spec.name.clone(), id);
        self.subs.push(Some(Sub {
            spec: spec.clone(),
            parent,
            children: Vec::new(),
            per_pool: BTreeMap::new(),
            leases: 0,
        }));
        self.record(|| Change::PutSubdivision(spec));
        Ok(())
    }

    /// Removes a subdivision with no shards, leases or children; its home blocks go back.
    pub fn remove_subdivision(&mut self, name: &str) -> Result<SubdivisionSpec, CoreError> {
        let id = self.sub_id(name)?;
        let sub = self.sub(id);
        let in_use = |what: String| CoreError::SubdivisionInUse {
            name: name.to_string(),
            what,
        };
        if !sub.children.is_empty() {
            return Err(in_use(format!(
                "{} child subdivision(s)",
                sub.children.len()
            )));
        }
        let shards: usize = sub.per_pool.values().map(|p| p.shards.len()).sum();
        if shards > 0 {
            return Err(in_use(format!("{shards} shard(s)")));
        }
        let homes: Vec<(PoolId, Block)> = sub
            .per_pool
            .iter()
            .filter_map(|(&p, sp)| sp.home.as_ref().map(|h| (p, h.arena.block())))
            .collect();
        for (pool, block) in homes {
            self.container_free(id, pool, block);
            let pool_name = self.pool(pool).spec.name.clone();
            self.record(|| Change::DeleteHome {
                subdivision: name.to_string(),
                pool: pool_name,
            });
        }
        let sub = self.subs[id as usize].take().expect("live subdivision");
        if let Some(p) = sub.parent {
            let parent = self.sub_mut(p);
            parent.children.retain(|&c| c != id);
            self.shrink_home_chain(p, None);
        }
        self.sub_ix.remove(name);
        self.record(|| Change::DeleteSubdivision {
            name: name.to_string(),
        });
        Ok(sub.spec)
    }

    fn choose_pool(&self, sub: SubId, pool: Option<&str>) -> Result<PoolId, CoreError> {
        let spec = &self.sub(sub).spec;
        match pool {
            Some(name) => {
                let id = self.pool_id(name)?;
                if !spec.pools.is_empty() && !spec.pools.iter().any(|p| p == name) {
                    return Err(invalid_sub(
                        &spec.name,
                        format!("does not draw from pool `{name}`"),
                    ));
                }
                Ok(id)
            }
            None => match spec.pools.first() {
                Some(first) => self.pool_id(first),
                None => self
                    .pool_ix
                    .iter()
                    .min_by(|a, b| a.0.cmp(b.0))
                    .map(|(_, &id)| id)
                    .ok_or_else(|| invalid_sub(&spec.name, "no pool to draw from")),
            },
        }
    }

    // ----------------------------------------------------------------------------------------
    // Placement

    fn home_floor(&self, sub: SubId, pool: PoolId) -> u8 {
        let spec = &self.sub(sub).spec;
        let mut shards = spec.home_shards.unwrap_or(DEFAULT_HOME_SHARDS);
        if let Some(m) = spec.max_shards {
            // Never reserve more than the subdivision may use.
            let cap = if m.is_power_of_two() {
                m
            } else {
                m.next_power_of_two() / 2
            };
            shards = shards.min(cap.max(1));
        }
        let p = self.pool(pool);
        (p.shard_order + shards.trailing_zeros() as u8).min(p.block.order)
    }

    fn home_block(&self, sub: SubId, pool: PoolId) -> Option<Block> {
        self.sub(sub)
            .per_pool
            .get(&pool)
            .and_then(|sp| sp.home.as_ref())
            .map(|h| h.arena.block())
    }

    fn home_arena_mut(&mut self, sub: SubId, pool: PoolId) -> Option<&mut Arena> {
        self.sub_mut(sub)
            .per_pool
            .get_mut(&pool)
            .and_then(|sp| sp.home.as_mut())
            .map(|h| &mut h.arena)
    }

    /// The arena a block of `sub`'s sits in: the innermost home block of `sub` or an ancestor that
    /// contains it, else the pool.
    fn owner_of(&self, sub: SubId, pool: PoolId, block: Block) -> Option<SubId> {
        let mut cur = Some(sub);
        while let Some(s) = cur {
            if self.home_block(s, pool).is_some_and(|h| h.contains(block)) {
                return Some(s);
            }
            cur = self.sub(s).parent;
        }
        None
    }

    fn arena_mut(&mut self, owner: Option<SubId>, pool: PoolId) -> &mut Arena {
        match owner {
            Some(s) => self.home_arena_mut(s, pool).expect("owner has a home"),
            None => &mut self.pool_mut(pool).root,
        }
    }

    /// Frees a block that `sub` (its home block or a borrowed shard) holds in its container.
    fn container_free(&mut self, sub: SubId, pool: PoolId, block: Block) {
        let owner = match self.sub(sub).parent {
            Some(p) => self.owner_of(p, pool, block),
            None => None,
        };
        self.arena_mut(owner, pool).free(block);
    }

    /// Makes sure `sub` has a home block in `pool`; false when no space is left anywhere.
    fn ensure_home(&mut self, sub: SubId, pool: PoolId) -> bool {
        if self.home_block(sub, pool).is_some() {
            return true;
        }
        let floor = self.home_floor(sub, pool);
        let shard_order = self.pool(pool).shard_order;
        let parent = self.sub(sub).parent;
        let mut placed: Option<Block> = None;
        if let Some(p) = parent {
            if self.ensure_home(p, pool) {
                'outer: for order in (shard_order..=floor).rev() {
                    loop {
                        let arena = self.home_arena_mut(p, pool).expect("parent home");
                        if let Some(base) = arena.alloc_largest(order) {
                            placed = Some(Block { base, order });
                            break 'outer;
                        }
                        if !self.grow_home(p, pool) {
                            break;
                        }
                    }
                }
            }
        }
        if placed.is_none() {
            // Top level, or the parent could not make room: the pool itself.
            let root = &mut self.pool_mut(pool).root;
            placed = (shard_order..=floor)
                .rev()
                .find_map(|order| root.alloc_largest(order).map(|base| Block { base, order }));
        }
        let Some(block) = placed else {
            return false;
        };
        let home = Home {
            arena: Arena::new(block, self.pool(pool).min_order),
            floor: block.order,
        };
        self.sub_mut(sub).per_pool.entry(pool).or_default().home = Some(home);
        self.record_home(sub, pool);
        true
    }

    fn record_home(&mut self, sub: SubId, pool: PoolId) {
        let block = self.home_block(sub, pool).expect("home");
        let family = self.pool(pool).family;
        let (sname, pname) = (
            self.sub(sub).spec.name.clone(),
            self.pool(pool).spec.name.clone(),
        );
        self.record(|| {
            Change::PutHome(HomeRecord {
                subdivision: sname,
                pool: pname,
                block: block.to_net(family),
            })
        });
    }

    /// Doubles `sub`'s home block by claiming its buddy; false when the buddy is taken.
    fn grow_home(&mut self, sub: SubId, pool: PoolId) -> bool {
        let Some(home) = self.home_block(sub, pool) else {
            return false;
        };
        let pool_block = self.pool(pool).block;
        if home.order >= pool_block.order {
            return false;
        }
        let parent = self.sub(sub).parent;
        let owner = parent.and_then(|p| self.owner_of(p, pool, home));
        if let Some(o) = owner {
            let container = self.home_block(o, pool).expect("owner home");
            if container.order == home.order && !self.grow_home(o, pool) {
                return false;
            }
        }
        let buddy = Block {
            base: home.base ^ size_of_order(home.order),
            order: home.order,
        };
        if !self.arena_mut(owner, pool).claim_exact(buddy) {
            return false;
        }
        self.home_arena_mut(sub, pool).expect("home").grow();
        self.counters.home_growths += 1;
        self.record_home(sub, pool);
        true
    }

    /// Gives back free halves of `sub`'s home above its floor, then does the same for its
    /// ancestors (whose blocks may have become free).
    fn shrink_home_chain(&mut self, sub: SubId, pool: Option<PoolId>) {
        let pools: Vec<PoolId> = match pool {
            Some(p) => vec![p],
            None => self.sub(sub).per_pool.keys().copied().collect(),
        };
        for pool in pools {
            let mut cur = Some(sub);
            while let Some(s) = cur {
                let mut changed = false;
                while let Some(home) = self
                    .sub_mut(s)
                    .per_pool
                    .get_mut(&pool)
                    .and_then(|sp| sp.home.as_mut())
                {
                    let floor = home.floor;
                    let Some(half) = home.arena.halve(floor) else {
                        break;
                    };
                    self.container_free(s, pool, half);
                    changed = true;
                }
                if changed {
                    self.record_home(s, pool);
                }
                cur = self.sub(s).parent;
            }
        }
    }

    /// Finds a place for a new shard of `sub` of `2^order` addresses: home block, grown home
    /// block, then borrowed. Fails without changing anything.
    fn place_shard(
        &mut self,
        sub: SubId,
        pool: PoolId,
        order: u8,
    ) -> Result<(Block, bool), CoreError> {
        // Only a shard larger than a default one can grow or create home blocks and still not
        // fit in them (a new or grown home block always has room for a default shard): keep
        // what the attempt may change, to undo it before borrowing or failing.
        let undo = (order > self.pool(pool).shard_order).then(|| self.save_placement(sub, pool));
        if self.ensure_home(sub, pool) {
            loop {
                if let Some(base) = self
                    .home_arena_mut(sub, pool)
                    .and_then(|a| a.alloc_best_fit(order))
                {
                    return Ok((Block { base, order }, false));
                }
                if !self.grow_home(sub, pool) {
                    break;
                }
            }
        }
        if let Some(undo) = undo {
            self.restore_placement(pool, undo);
        }
        // Borrow: the innermost ancestor block with room, else the pool.
        let mut cur = self.sub(sub).parent;
        while let Some(s) = cur {
            if let Some(base) = self
                .home_arena_mut(s, pool)
                .and_then(|a| a.alloc_best_fit(order))
            {
                return Ok((Block { base, order }, true));
            }
            cur = self.sub(s).parent;
        }
        if let Some(base) = self.pool_mut(pool).root.alloc_best_fit(order) {
            return Ok((Block { base, order }, true));
        }
        let p = self.pool(pool);
        Err(CoreError::PoolExhausted {
            pool: p.spec.name.clone(),
            subdivision: self.sub(sub).spec.name.clone(),
            prefix_len: p.family.bits() - order,
        })
    }

    /// What placing a shard of `sub` may change in `pool`: the home blocks of `sub` and its
    /// ancestors (`None`: no entry for the pool), the pool's free space, the journal length and
    /// the counters.
    fn save_placement(&self, sub: SubId, pool: PoolId) -> PlacementUndo {
        let mut homes = Vec::new();
        let mut cur = Some(sub);
        while let Some(s) = cur {
            let entry = self.sub(s).per_pool.get(&pool).map(|sp| sp.home.clone());
            homes.push((s, entry));
            cur = self.sub(s).parent;
        }
        PlacementUndo {
            homes,
            root: self.pool(pool).root.clone(),
            journal_len: self.journal.len(),
            counters: self.counters,
        }
    }

    fn restore_placement(&mut self, pool: PoolId, undo: PlacementUndo) {
        for (s, entry) in undo.homes {
            let per_pool = &mut self.sub_mut(s).per_pool;
            match entry {
                Some(home) => per_pool.entry(pool).or_default().home = home,
                None => {
                    per_pool.remove(&pool);
                }
            }
        }
        self.pool_mut(pool).root = undo.root;
        self.journal.truncate(undo.journal_len);
        self.counters = undo.counters;
    }

    /// The shard order of a claim of `prefix_len` (`None`: the pool's default size), checked
    /// against the pool's range of shard sizes.
    fn shard_order_for(&self, pool: PoolId, prefix_len: Option<u8>) -> Result<u8, CoreError> {
        let p = self.pool(pool);
        let Some(len) = prefix_len else {
            return Ok(p.shard_order);
        };
        let (min, max) = p.spec.shard_prefix_range();
        if len < min || len > max {
            return Err(CoreError::ShardSizeNotAllowed {
                pool: p.spec.name.clone(),
                prefix_len: len,
                min,
                max,
            });
        }
        Ok(p.family.bits() - len)
    }

    // ----------------------------------------------------------------------------------------
    // Shard lifecycle

    fn shard_record(&self, id: ShardId) -> ShardRecord {
        let s = self.shard(id);
        let pool = self.pool(s.pool);
        ShardRecord {
            pool: pool.spec.name.clone(),
            prefix: s.block.to_net(pool.family),
            subdivision: self.sub(s.sub).spec.name.clone(),
            state: s.state,
            borrowed: s.borrowed,
            since: s.since,
            reason: s.reason,
            affinity: s.affinity.as_deref().map(str::to_string),
        }
    }

    fn record_transition(&mut self, id: ShardId, from: Option<ShardState>, to: Option<ShardState>) {
        self.counters.shard_transitions += 1;
        if !self.journaling {
            return;
        }
        let rec = self.shard_record(id);
        self.journal.push(Change::Transition(Transition {
            time: rec.since,
            pool: rec.pool.clone(),
            prefix: rec.prefix,
            subdivision: rec.subdivision.clone(),
            from,
            to,
            reason: rec.reason,
        }));
        if to.is_some() {
            self.journal.push(Change::PutShard(rec));
        } else {
            self.journal.push(Change::DeleteShard {
                pool: rec.pool,
                prefix: rec.prefix,
            });
        }
    }

    fn new_addrset(&self, pool: PoolId, block: Block) -> AddrSet {
        let p = self.pool(pool);
        let size = size_of_order(block.order);
        let lo = u64::from(p.spec.reserve_first);
        let hi =
            (size - u128::from(p.spec.reserve_last)).min(u128::from(MAX_SHARD_ADDRESSES)) as u64;
        // Free space holds no cooling address: a shard is only freed once its cooldowns ended.
        AddrSet::new(block.order, lo, hi)
    }

    fn insert_shard(&mut self, shard: Shard) -> ShardId {
        let (pool, sub, base) = (shard.pool, shard.sub, shard.block.base);
        let id = match self.free_shard_ids.pop() {
            Some(id) => {
                self.shards[id as usize] = Some(shard);
                id
            }
            None => {
                self.shards.push(Some(shard));
                (self.shards.len() - 1) as ShardId
            }
        };
        self.pool_mut(pool).shards.insert(base, id);
        self.sub_mut(sub)
            .per_pool
            .entry(pool)
            .or_default()
            .shards
            .insert(base, id);
        id
    }

    fn refresh_room(&mut self, id: ShardId) {
        let s = self.shard(id);
        let has_room = s.state == ShardState::Active && s.addrs.lowest_free().is_some();
        let (pool, sub, base) = (s.pool, s.sub, s.block.base);
        let sp = self.sub_mut(sub).per_pool.entry(pool).or_default();
        if has_room {
            sp.with_room.insert(base);
        } else {
            sp.with_room.remove(&base);
        }
    }

    fn claim_in(
        &mut self,
        sub: SubId,
        pool: PoolId,
        order: u8,
        reason: Reason,
        now: Time,
    ) -> Result<ShardId, CoreError> {
        if let Some(max) = self.sub(sub).spec.max_shards {
            let held = self
                .sub(sub)
                .per_pool
                .get(&pool)
                .map_or(0, |sp| sp.shards.len());
            if held as u64 >= u64::from(max) {
                return Err(CoreError::MaxShards {
                    subdivision: self.sub(sub).spec.name.clone(),
                    pool: self.pool(pool).spec.name.clone(),
                    max,
                });
            }
        }
        if self.free_shard_ids.is_empty() && self.shards.len() >= MAX_LIVE_SHARDS {
            return Err(CoreError::Limit(format!(
                "{MAX_LIVE_SHARDS} shards are claimed; release some before claiming more"
            )));
        }
        let (block, borrowed) = self.place_shard(sub, pool, order)?;
        let addrs = self.new_addrset(pool, block);
        let id = self.insert_shard(Shard {
            pool,
            sub,
            block,
            state: ShardState::Reserved,
            borrowed,
            since: now,
            reason,
            addrs,
            leases: 0,
            affinity: None,
        });
        self.counters.shard_claims += 1;
        if borrowed {
            self.counters.borrowed_claims += 1;
        }
        self.record_transition(id, None, Some(ShardState::Reserved));
        Ok(id)
    }

    /// Claims a free shard of the pool's default size (`shard_prefix_len`) for a subdivision
    /// (free → reserved). See [`Ipam::claim_shard_sized`].
    pub fn claim_shard(
        &mut self,
        subdivision: &str,
        pool: Option<&str>,
        reason: Reason,
        now: Time,
    ) -> Result<ShardRecord, CoreError> {
        self.claim_shard_sized(subdivision, pool, None, reason, now)
    }

    /// Claims a free shard of prefix length `prefix_len` for a subdivision (free → reserved);
    /// `None` is the pool's default size (`shard_prefix_len`). The length must lie within the
    /// pool's range ([`PoolSpec::shard_prefix_range`]), else the claim is refused
    /// ([`CoreError::ShardSizeNotAllowed`]) and nothing changes.
    ///
    /// The shard is placed like any other: inside the subdivision's home block (best fit, lowest
    /// aligned buddy first), growing the home block by claiming its buddy until the shard fits,
    /// else borrowed from the parent's block or the pool (counted). `max_shards` counts shards of
    /// every size.
    pub fn claim_shard_sized(
        &mut self,
        subdivision: &str,
        pool: Option<&str>,
        prefix_len: Option<u8>,
        reason: Reason,
        now: Time,
    ) -> Result<ShardRecord, CoreError> {
        let now = self.tick(now);
        let sub = self.sub_id(subdivision)?;
        let pool = self.choose_pool(sub, pool)?;
        let order = self.shard_order_for(pool, prefix_len)?;
        let id = self.claim_in(sub, pool, order, reason, now)?;
        Ok(self.shard_record(id))
    }

    fn shard_id(&self, prefix: &IpNet) -> Result<ShardId, CoreError> {
        let family = Family::of(prefix);
        let block = block_of(prefix);
        self.pools
            .iter()
            .flatten()
            .filter(|p| p.family == family)
            .find_map(|p| {
                p.shards
                    .get(&block.base)
                    .filter(|&&id| self.shard(id).block == block)
                    .copied()
            })
            .ok_or(CoreError::UnknownShard(*prefix))
    }

    fn set_state(&mut self, id: ShardId, to: ShardState, reason: Reason, now: Time) {
        let from = {
            let s = self.shard_mut(id);
            let from = s.state;
            s.state = to;
            s.reason = reason;
            s.since = now;
            from
        };
        self.refresh_room(id);
        self.record_transition(id, Some(from), Some(to));
    }

    /// Activates a reserved shard, or reactivates a draining one.
    pub fn activate_shard(
        &mut self,
        prefix: &IpNet,
        reason: Reason,
        now: Time,
    ) -> Result<ShardRecord, CoreError> {
        let now = self.tick(now);
        let id = self.shard_id(prefix)?;
        match self.shard(id).state {
            ShardState::Reserved | ShardState::Draining => {}
            state => {
                return Err(CoreError::InvalidTransition {
                    prefix: *prefix,
                    state,
                    action: "activate",
                })
            }
        }
        self.set_state(id, ShardState::Active, reason, now);
        Ok(self.shard_record(id))
    }

    /// Drains an active shard: no new leases; it is released once it holds no lease and no
    /// address in its release cooldown (at once when it is already empty). Returns the shard's record, or `None` when it was released.
    pub fn drain_shard(
        &mut self,
        prefix: &IpNet,
        reason: Reason,
        now: Time,
    ) -> Result<Option<ShardRecord>, CoreError> {
        let now = self.tick(now);
        let id = self.shard_id(prefix)?;
        let state = self.shard(id).state;
        if state != ShardState::Active {
            return Err(CoreError::InvalidTransition {
                prefix: *prefix,
                state,
                action: "drain",
            });
        }
        self.set_state(id, ShardState::Draining, reason, now);
        if self.shard(id).addrs.used() == 0 {
            self.free_shard(id, reason, now);
            return Ok(None);
        }
        Ok(Some(self.shard_record(id)))
    }

    /// Releases a shard with no lease and no cooling address (reserved, draining, or active: then
    /// drained first).
    pub fn release_shard(
        &mut self,
        prefix: &IpNet,
        reason: Reason,
        now: Time,
    ) -> Result<(), CoreError> {
        let now = self.tick(now);
        let id = self.shard_id(prefix)?;
        let leases = self.shard(id).leases;
        if leases > 0 {
            return Err(CoreError::ShardBusy {
                prefix: *prefix,
                leases,
            });
        }
        let cooling = self.shard(id).addrs.used();
        if cooling > 0 {
            return Err(CoreError::ShardCooling {
                prefix: *prefix,
                cooling,
            });
        }
        if self.shard(id).state == ShardState::Active {
            self.set_state(id, ShardState::Draining, reason, now);
        }
        self.free_shard(id, reason, now);
        Ok(())
    }

    fn free_shard(&mut self, id: ShardId, reason: Reason, now: Time) {
        {
            let s = self.shard_mut(id);
            s.reason = reason;
            s.since = now;
        }
        let from = self.shard(id).state;
        self.record_transition(id, Some(from), None);
        let shard = self.shards[id as usize].take().expect("live shard");
        self.free_shard_ids.push(id);
        self.pool_mut(shard.pool).shards.remove(&shard.block.base);
        if let Some(sp) = self.sub_mut(shard.sub).per_pool.get_mut(&shard.pool) {
            sp.shards.remove(&shard.block.base);
            sp.with_room.remove(&shard.block.base);
        }
        let owner = self.owner_of(shard.sub, shard.pool, shard.block);
        self.arena_mut(owner, shard.pool).free(shard.block);
        self.counters.shard_releases += 1;
        self.shrink_home_chain(owner.unwrap_or(shard.sub), Some(shard.pool));
    }

    // ----------------------------------------------------------------------------------------
    // Leases

    fn lease_hash(&self, vm: &str) -> u64 {
        self.hasher.hash_one(vm)
    }

    fn find_lease(&self, vm: &str) -> Option<usize> {
        let h = self.lease_hash(vm);
        self.lease_ix
            .find(h, |&i| self.leases[i as usize].vm == vm)
            .map(|&i| i as usize)
    }

    fn lease_record(&self, idx: usize) -> LeaseRecord {
        let l = &self.leases[idx];
        let s = self.shard(l.shard());
        let pool = self.pool(s.pool);
        LeaseRecord {
            vm_id: l.vm.to_string(),
            subdivision: self.sub(s.sub).spec.name.clone(),
            pool: pool.spec.name.clone(),
            address: u128_to_addr(pool.family, s.block.base + u128::from(l.offset())),
            shard: s.block.to_net(pool.family),
            profile: (l.profile() > 0).then(|| self.profiles[l.profile() as usize - 1].to_string()),
            created: l.created,
        }
    }

    fn intern_profile(&mut self, profile: Option<&str>) -> Result<u8, CoreError> {
        let Some(p) = profile else { return Ok(0) };
        if let Some(i) = self.profiles.iter().position(|x| x == p) {
            return Ok(i as u8 + 1);
        }
        if self.profiles.len() >= MAX_PROFILES {
            return Err(CoreError::Limit(format!(
                "profile `{p}` would be the {}th distinct profile; at most {MAX_PROFILES} are supported",
                MAX_PROFILES + 1
            )));
        }
        self.profiles.push(CompactString::from(p));
        Ok(self.profiles.len() as u8)
    }

    fn push_lease(&mut self, lease: Lease) {
        let h = self.lease_hash(&lease.vm);
        let idx = self.leases.len() as u32;
        self.leases.push(lease);
        let leases = &self.leases;
        let hasher = &self.hasher;
        self.lease_ix
            .insert_unique(h, idx, |&i| hasher.hash_one(leases[i as usize].vm.as_str()));
    }

    fn remove_lease_at(&mut self, idx: usize) -> Lease {
        let h = self.lease_hash(&self.leases[idx].vm);
        self.lease_ix
            .find_entry(h, |&i| i as usize == idx)
            .expect("indexed lease")
            .remove();
        let last = self.leases.len() - 1;
        if idx != last {
            let hl = self.lease_hash(&self.leases[last].vm);
            *self
                .lease_ix
                .find_mut(hl, |&i| i as usize == last)
                .expect("indexed lease") = idx as u32;
        }
        self.leases.swap_remove(idx)
    }

    /// An active shard with room of the subdivision in the pool: the lowest; on a shared store
    /// the lowest with this daemon's affinity, else the lowest without affinity.
    fn ready_shard(&self, sub: SubId, pool: PoolId) -> Option<ShardId> {
        let sp = self.sub(sub).per_pool.get(&pool)?;
        let mut room = sp.with_room.iter().map(|b| sp.shards[b]);
        if self.node.is_none() {
            return room.next();
        }
        let mut unowned = None;
        for id in room {
            if self.owns(id) {
                return Some(id);
            }
            if unowned.is_none() && self.may_use(id) {
                unowned = Some(id);
            }
        }
        unowned
    }

    /// The pools a subdivision draws from, in order of preference: its list, or every pool by name.
    fn candidate_pools(&self, sub: SubId) -> Vec<PoolId> {
        let spec = &self.sub(sub).spec;
        if spec.pools.is_empty() {
            let mut all: Vec<(&String, PoolId)> =
                self.pool_ix.iter().map(|(n, &i)| (n, i)).collect();
            all.sort();
            all.into_iter().map(|(_, i)| i).collect()
        } else {
            spec.pools
                .iter()
                .filter_map(|p| self.pool_ix.get(p).copied())
                .collect()
        }
    }

    /// A shard to allocate from among `pools` (in order of preference): an active shard with room,
    /// else a reserved shard (activated), else a newly claimed one in the first pool with space.
    /// When no pool has space, the error of the first pool; nothing changes then.
    fn pick_shard(
        &mut self,
        sub: SubId,
        pools: &[PoolId],
        now: Time,
    ) -> Result<(ShardId, AllocPath), CoreError> {
        if let Some(id) = pools.iter().find_map(|&p| self.ready_shard(sub, p)) {
            return Ok((id, AllocPath::Ready));
        }
        let reserved = pools.iter().find_map(|p| {
            self.sub(sub).per_pool.get(p).and_then(|sp| {
                sp.shards
                    .values()
                    .copied()
                    .find(|&id| self.shard(id).state == ShardState::Reserved && self.may_use(id))
            })
        });
        if let Some(id) = reserved {
            self.adopt_quietly(id);
            self.set_state(id, ShardState::Active, Reason::Miss, now);
            return Ok((id, AllocPath::ActivatedReserved));
        }
        let mut first_err = None;
        for &p in pools {
            let order = self.pool(p).shard_order;
            match self.claim_in(sub, p, order, Reason::Miss, now) {
                Ok(id) => {
                    self.adopt_quietly(id);
                    self.set_state(id, ShardState::Active, Reason::Miss, now);
                    return Ok((id, AllocPath::ClaimedShard));
                }
                Err(e @ (CoreError::PoolExhausted { .. } | CoreError::MaxShards { .. })) => {
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(first_err
            .unwrap_or_else(|| invalid_sub(&self.sub(sub).spec.name, "no pool to draw from")))
    }

    /// Allocates an address for `vm_id` in `subdivision` (idempotent: a retry returns the same
    /// lease). Serves from the lowest active shard with room; else activates a reserved shard; else
    /// claims one on the spot (slow path).
    pub fn allocate(
        &mut self,
        subdivision: &str,
        vm_id: &str,
        profile: Option<&str>,
        pool: Option<&str>,
        now: Time,
    ) -> Result<Allocation, CoreError> {
        validate_vm_id(vm_id)?;
        let now = self.tick(now);
        let sub = self.sub_id(subdivision)?;
        let explicit_pool = pool;
        let pool = self.choose_pool(sub, pool)?;
        let profile_ix = self.intern_profile(profile)?;
        self.expire(now);
        if let Some(idx) = self.find_lease(vm_id) {
            let lease = self.lease_record(idx);
            if lease.subdivision != subdivision {
                return Err(CoreError::LeaseConflict {
                    vm_id: vm_id.to_string(),
                    address: lease.address,
                    subdivision: lease.subdivision,
                });
            }
            return Ok(Allocation {
                address: lease.address,
                shard: lease.shard,
                path: AllocPath::Existing,
            });
        }
        let (shard, path) = if explicit_pool.is_some() {
            self.pick_shard(sub, &[pool], now)?
        } else {
            let ready = self.ready_shard(sub, pool);
            match ready {
                Some(id) => (id, AllocPath::Ready),
                None => {
                    let candidates = self.candidate_pools(sub);
                    self.pick_shard(sub, &candidates, now)?
                }
            }
        };
        self.adopt(shard);
        let hint = self.address_hint;
        let s = self.shard_mut(shard);
        let offset = s
            .addrs
            .free_from_hint(hint)
            .expect("an active shard with room");
        s.addrs.insert(offset);
        s.leases += 1;
        if s.addrs.lowest_free().is_none() {
            let (p, b) = (s.pool, s.block.base);
            if let Some(sp) = self.sub_mut(sub).per_pool.get_mut(&p) {
                sp.with_room.remove(&b);
            }
        }
        self.sub_mut(sub).leases += 1;
        self.push_lease(Lease::new(vm_id, shard, offset, profile_ix, now));
        self.counters.allocations += 1;
        if path == AllocPath::Ready {
            self.counters.ready_hits += 1;
        } else {
            self.counters.slow_path += 1;
        }
        if self.journaling {
            let lease = self.lease_record(self.leases.len() - 1);
            self.journal.push(Change::PutLease(lease));
            self.journal.push(Change::Event(VmEvent {
                time: now,
                subdivision: subdivision.to_string(),
                kind: EventKind::Create,
                vm_id: vm_id.to_string(),
                profile: profile.map(str::to_string),
            }));
        }
        let s = self.shard(shard);
        let family = self.pool(s.pool).family;
        Ok(Allocation {
            address: u128_to_addr(family, s.block.base + u128::from(offset)),
            shard: s.block.to_net(family),
            path,
        })
    }

    /// Releases `vm_id`'s address; it cools down before reuse. A draining shard whose last lease
    /// goes is released.
    pub fn release(&mut self, vm_id: &str, now: Time) -> Result<IpAddr, CoreError> {
        let now = self.tick(now);
        let idx = self
            .find_lease(vm_id)
            .ok_or_else(|| CoreError::UnknownLease(vm_id.to_string()))?;
        let record = self.journaling.then(|| self.lease_record(idx));
        let lease = self.remove_lease_at(idx);
        let (pool, sub, base, state, leases_left) = {
            let s = self.shard_mut(lease.shard());
            s.leases -= 1;
            (s.pool, s.sub, s.block.base, s.state, s.leases)
        };
        self.sub_mut(sub).leases -= 1;
        let addr = base + u128::from(lease.offset());
        let until = now + self.settings.cooldown_s;
        if self.settings.cooldown_s > 0.0 {
            self.pool_mut(pool).cooling.push_back((addr, until));
        } else {
            self.shard_mut(lease.shard()).addrs.remove(lease.offset());
            self.refresh_room(lease.shard());
        }
        self.counters.releases += 1;
        if let Some(record) = record {
            if self.settings.cooldown_s > 0.0 {
                self.journal.push(Change::PutCooling(CoolingRecord {
                    pool: record.pool.clone(),
                    address: record.address,
                    until,
                }));
            }
            self.journal.push(Change::DeleteLease {
                vm_id: record.vm_id.clone(),
            });
            self.journal.push(Change::Event(VmEvent {
                time: now,
                subdivision: record.subdivision,
                kind: EventKind::Delete,
                vm_id: record.vm_id,
                profile: record.profile,
            }));
        }
        if state == ShardState::Draining
            && leases_left == 0
            && self.shard(lease.shard()).addrs.used() == 0
        {
            self.free_shard(lease.shard(), Reason::Reclaim, now);
        }
        Ok(u128_to_addr(self.pool(pool).family, addr))
    }

    /// Ends the cooldown of every address whose time has come.
    pub fn expire(&mut self, now: Time) {
        let now = self.tick(now);
        for pid in 0..self.pools.len() {
            while let Some(pool) = self.pools[pid].as_mut() {
                match pool.cooling.front() {
                    Some(&(addr, until)) if until <= now => {
                        pool.cooling.pop_front();
                        let shard = pool
                            .shards
                            .range(..=addr)
                            .next_back()
                            .map(|(_, &id)| id)
                            .filter(|&id| self.shard(id).block.contains_addr(addr));
                        // Another daemon's shard: its owner writes the end of the cooldown (and
                        // the shard's release); here it only ends in memory.
                        let foreign = shard.is_some_and(|id| !self.may_use(id));
                        let journaling = self.journaling;
                        self.journaling = journaling && !foreign;
                        let pool = self.pools[pid].as_ref().expect("live pool");
                        let (family, name) = (pool.family, pool.spec.name.clone());
                        self.record(|| Change::DeleteCooling {
                            pool: name,
                            address: u128_to_addr(family, addr),
                        });
                        if let Some(id) = shard {
                            let s = self.shard_mut(id);
                            s.addrs.remove((addr - s.block.base) as u64);
                            if s.state == ShardState::Draining && s.addrs.used() == 0 {
                                self.free_shard(id, Reason::Reclaim, now);
                            } else {
                                self.refresh_room(id);
                            }
                        }
                        self.journaling = journaling;
                    }
                    _ => break,
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Queries

    /// The lease of a VM.
    pub fn lease(&self, vm_id: &str) -> Option<LeaseRecord> {
        self.find_lease(vm_id).map(|i| self.lease_record(i))
    }

    /// Leases, optionally of one subdivision, ordered by address.
    pub fn leases(&self, subdivision: Option<&str>) -> Result<Vec<LeaseRecord>, CoreError> {
        let filter = subdivision.map(|s| self.sub_id(s)).transpose()?;
        let mut v: Vec<LeaseRecord> = (0..self.leases.len())
            .filter(|&i| filter.is_none_or(|f| self.shard(self.leases[i].shard()).sub == f))
            .map(|i| self.lease_record(i))
            .collect();
        v.sort_by(|a, b| (&a.pool, a.address).cmp(&(&b.pool, b.address)));
        Ok(v)
    }

    /// Pool specs by name.
    pub fn pool_specs(&self) -> Vec<PoolSpec> {
        let mut v: Vec<PoolSpec> = self
            .pools
            .iter()
            .flatten()
            .map(|p| p.spec.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Pools with their figures.
    pub fn pools(&self) -> Vec<PoolInfo> {
        let mut v: Vec<PoolInfo> = self
            .pools
            .iter()
            .flatten()
            .map(|p| {
                let mut info = PoolInfo {
                    spec: p.spec.clone(),
                    size: p.block.size(),
                    shards_reserved: 0,
                    shards_active: 0,
                    shards_draining: 0,
                    leases: 0,
                    usable_in_shards: 0,
                    unassigned: p.root.free_addresses(),
                };
                for &id in p.shards.values() {
                    let s = self.shard(id);
                    match s.state {
                        ShardState::Reserved => info.shards_reserved += 1,
                        ShardState::Active => info.shards_active += 1,
                        ShardState::Draining => info.shards_draining += 1,
                    }
                    info.leases += s.leases;
                    info.usable_in_shards += u128::from(s.addrs.capacity());
                }
                info
            })
            .collect();
        v.sort_by(|a, b| a.spec.name.cmp(&b.spec.name));
        v
    }

    /// Subdivision specs by name.
    pub fn subdivision_specs(&self) -> Vec<SubdivisionSpec> {
        let mut v: Vec<SubdivisionSpec> =
            self.subs.iter().flatten().map(|s| s.spec.clone()).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Whether a subdivision exists.
    pub fn has_subdivision(&self, name: &str) -> bool {
        self.sub_ix.contains_key(name)
    }

    /// Whether a pool exists.
    pub fn has_pool(&self, name: &str) -> bool {
        self.pool_ix.contains_key(name)
    }

    /// The spec of subdivision `name`, without computing its figures.
    pub fn subdivision_spec(&self, name: &str) -> Option<&SubdivisionSpec> {
        self.sub_ix.get(name).map(|&id| &self.sub(id).spec)
    }

    /// Every pool's spec, in no particular order, without cloning.
    pub fn pool_spec_refs(&self) -> impl Iterator<Item = &PoolSpec> {
        self.pools.iter().flatten().map(|p| &p.spec)
    }

    /// The spec of pool `name`.
    pub fn pool_spec(&self, name: &str) -> Option<&PoolSpec> {
        self.pool_ix.get(name).map(|&id| &self.pool(id).spec)
    }

    /// One subdivision with its figures.
    pub fn subdivision(&self, name: &str) -> Result<SubdivisionInfo, CoreError> {
        let id = self.sub_id(name)?;
        let sub = self.sub(id);
        let mut info = SubdivisionInfo {
            spec: sub.spec.clone(),
            shards: 0,
            borrowed: 0,
            leases: sub.leases,
            usable: 0,
            homes: Vec::new(),
            routes: Vec::new(),
        };
        for (&pid, sp) in &sub.per_pool {
            let family = self.pool(pid).family;
            if let Some(h) = &sp.home {
                info.homes.push(h.arena.block().to_net(family));
            }
            for &sid in sp.shards.values() {
                let s = self.shard(sid);
                info.shards += 1;
                info.borrowed += u64::from(s.borrowed);
                info.usable += u128::from(s.addrs.capacity());
            }
            info.routes.extend(min_cover(
                family,
                sp.shards.values().map(|&s| self.shard(s).block),
            ));
        }
        Ok(info)
    }

    /// Every subdivision with its figures, by name.
    pub fn subdivisions(&self) -> Vec<SubdivisionInfo> {
        self.subdivision_specs()
            .iter()
            .map(|s| self.subdivision(&s.name).expect("listed subdivision"))
            .collect()
    }

    /// The minimal CIDR cover of a subdivision's shards in the given states (all non-free
    /// shards when `states` is empty): the routes that announce them.
    pub fn routes(
        &self,
        subdivision: &str,
        states: &[ShardState],
    ) -> Result<Vec<IpNet>, CoreError> {
        let id = self.sub_id(subdivision)?;
        let mut out = Vec::new();
        for (&pid, sp) in &self.sub(id).per_pool {
            let family = self.pool(pid).family;
            out.extend(min_cover(
                family,
                sp.shards
                    .values()
                    .map(|&s| self.shard(s))
                    .filter(|s| states.is_empty() || states.contains(&s.state))
                    .map(|s| s.block),
            ));
        }
        Ok(out)
    }

    /// Shards, optionally of one subdivision, by pool and address.
    pub fn shards(&self, subdivision: Option<&str>) -> Result<Vec<ShardInfo>, CoreError> {
        let filter = subdivision.map(|s| self.sub_id(s)).transpose()?;
        let mut v: Vec<ShardInfo> = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i as ShardId, s)))
            .filter(|(_, s)| filter.is_none_or(|f| s.sub == f))
            .map(|(id, _)| self.shard_info_of(id))
            .collect();
        v.sort_by(|a, b| (&a.record.pool, a.record.prefix).cmp(&(&b.record.pool, b.record.prefix)));
        Ok(v)
    }

    /// One non-free shard with its figures; [`CoreError::UnknownShard`] when none is claimed at
    /// `prefix`.
    pub fn shard_info(&self, prefix: &IpNet) -> Result<ShardInfo, CoreError> {
        Ok(self.shard_info_of(self.shard_id(prefix)?))
    }

    fn shard_info_of(&self, id: ShardId) -> ShardInfo {
        let s = self.shard(id);
        ShardInfo {
            record: self.shard_record(id),
            leases: s.leases,
            cooling: s.addrs.used().saturating_sub(s.leases),
            usable: u128::from(s.addrs.capacity()),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Snapshots

    /// Everything live as records.
    pub fn snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            pools: self
                .pools
                .iter()
                .flatten()
                .map(|p| p.spec.clone())
                .collect(),
            subdivisions: self.subs.iter().flatten().map(|s| s.spec.clone()).collect(),
            homes: Vec::new(),
            shards: Vec::new(),
            leases: (0..self.leases.len())
                .map(|i| self.lease_record(i))
                .collect(),
            cooling: Vec::new(),
        };
        for s in self.subs.iter().flatten() {
            for (&pid, sp) in &s.per_pool {
                if let Some(h) = &sp.home {
                    let p = self.pool(pid);
                    snap.homes.push(HomeRecord {
                        subdivision: s.spec.name.clone(),
                        pool: p.spec.name.clone(),
                        block: h.arena.block().to_net(p.family),
                    });
                }
            }
        }
        for (i, s) in self.shards.iter().enumerate() {
            if s.is_some() {
                snap.shards.push(self.shard_record(i as ShardId));
            }
        }
        for p in self.pools.iter().flatten() {
            for &(addr, until) in &p.cooling {
                snap.cooling.push(CoolingRecord {
                    pool: p.spec.name.clone(),
                    address: u128_to_addr(p.family, addr),
                    until,
                });
            }
        }
        snap.normalize();
        snap
    }

    /// Rebuilds the state from stored records, checking that they fit together.
    pub fn from_snapshot(settings: Settings, snap: &Snapshot) -> Result<Ipam, CoreError> {
        let corrupt = |m: String| CoreError::Corrupt(m);
        let mut ipam = Ipam::new(settings);
        ipam.journaling = false;
        let mut pools = snap.pools.clone();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        for p in pools {
            ipam.add_pool(p)?;
        }
        // Parents before children.
        let mut pending: Vec<SubdivisionSpec> = snap.subdivisions.clone();
        pending.sort_by(|a, b| a.name.cmp(&b.name));
        while !pending.is_empty() {
            let before = pending.len();
            let mut rest = Vec::new();
            for s in pending {
                if s.parent
                    .as_ref()
                    .is_none_or(|p| ipam.sub_ix.contains_key(p))
                {
                    ipam.add_subdivision(s)?;
                } else {
                    rest.push(s);
                }
            }
            if rest.len() == before {
                return Err(corrupt(format!(
                    "subdivision `{}` has a missing parent or a parent cycle",
                    rest[0].name
                )));
            }
            pending = rest;
        }
        // Homes, outermost first.
        let mut homes: Vec<(usize, &HomeRecord)> = Vec::with_capacity(snap.homes.len());
        for h in &snap.homes {
            let mut depth = 0;
            let mut cur = ipam.sub(ipam.sub_id(&h.subdivision)?).parent;
            while let Some(p) = cur {
                depth += 1;
                cur = ipam.sub(p).parent;
            }
            homes.push((depth, h));
        }
        homes.sort_by_key(|(depth, _)| *depth);
        for (_, h) in homes {
            let sub = ipam.sub_id(&h.subdivision)?;
            let pool = ipam.pool_id(&h.pool)?;
            let block = block_of(&h.block);
            let floor = ipam.home_floor(sub, pool).min(block.order);
            let owner = match ipam.sub(sub).parent {
                Some(p) => ipam.owner_of(p, pool, block),
                None => None,
            };
            if !ipam.arena_mut(owner, pool).claim_exact(block) {
                return Err(corrupt(format!(
                    "home block {} of `{}` overlaps other space",
                    h.block, h.subdivision
                )));
            }
            let min_order = ipam.pool(pool).min_order;
            ipam.sub_mut(sub).per_pool.entry(pool).or_default().home = Some(Home {
                arena: Arena::new(block, min_order),
                floor,
            });
        }
        for c in &snap.cooling {
            let pool = ipam.pool_id(&c.pool)?;
            ipam.pool_mut(pool)
                .cooling
                .push_back((addr_to_u128(c.address), c.until));
        }
        for pid in 0..ipam.pools.len() {
            if let Some(p) = ipam.pools[pid].as_mut() {
                p.cooling
                    .make_contiguous()
                    .sort_by(|a, b| a.1.total_cmp(&b.1));
            }
        }
        for r in &snap.shards {
            let sub = ipam.sub_id(&r.subdivision)?;
            let pool = ipam.pool_id(&r.pool)?;
            let block = block_of(&r.prefix);
            let p = ipam.pool(pool);
            if r.prefix.addr() != r.prefix.network() || Family::of(&r.prefix) != p.family {
                return Err(corrupt(format!(
                    "shard {} of pool `{}` is not a network of the pool's family",
                    r.prefix, r.pool
                )));
            }
            if block.order < p.min_order || block.order > p.max_order {
                let (min, max) = p.spec.shard_prefix_range();
                return Err(corrupt(format!(
                    "shard {} has the wrong size: pool `{}` hands out /{min} to /{max} shards",
                    r.prefix, r.pool
                )));
            }
            let owner = ipam.owner_of(sub, pool, block);
            if !ipam.arena_mut(owner, pool).claim_exact(block) {
                return Err(corrupt(format!("shard {} overlaps other space", r.prefix)));
            }
            if ipam.shards.len() >= MAX_LIVE_SHARDS {
                return Err(CoreError::Limit(format!(
                    "the store holds more than {MAX_LIVE_SHARDS} shards"
                )));
            }
            let addrs = ipam.new_addrset(pool, block);
            let id = ipam.insert_shard(Shard {
                pool,
                sub,
                block,
                state: r.state,
                borrowed: r.borrowed,
                since: r.since,
                reason: r.reason,
                addrs,
                leases: 0,
                affinity: r.affinity.as_deref().map(CompactString::from),
            });
            ipam.refresh_room(id);
        }
        for pid in 0..ipam.pools.len() {
            let Some(p) = ipam.pools[pid].as_ref() else {
                continue;
            };
            let marks: Vec<(ShardId, u128)> = p
                .cooling
                .iter()
                .map(|&(addr, _)| {
                    p.shards
                        .range(..=addr)
                        .next_back()
                        .map(|(_, &id)| (id, addr))
                        .filter(|&(id, addr)| ipam.shard(id).block.contains_addr(addr))
                        .ok_or_else(|| {
                            corrupt(format!(
                                "cooling address {} lies outside every shard",
                                u128_to_addr(p.family, addr)
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
            for (id, addr) in marks {
                let family = ipam.pool(pid as PoolId).family;
                let s = ipam.shard_mut(id);
                let offset = (addr - s.block.base) as u64;
                if !s.addrs.allocatable(offset) {
                    return Err(corrupt(format!(
                        "cooling address {} is a reserved address of shard {}",
                        u128_to_addr(family, addr),
                        s.block.to_net(family)
                    )));
                }
                s.addrs.insert(offset);
                ipam.refresh_room(id);
            }
        }
        for l in &snap.leases {
            let sub = ipam.sub_id(&l.subdivision)?;
            let pool = ipam.pool_id(&l.pool)?;
            let block = block_of(&l.shard);
            let id = ipam
                .pool(pool)
                .shards
                .get(&block.base)
                .copied()
                .ok_or_else(|| corrupt(format!("lease of `{}`: no shard {}", l.vm_id, l.shard)))?;
            let addr = addr_to_u128(l.address);
            let shard = ipam.shard_mut(id);
            if shard.sub != sub || shard.block != block || !shard.block.contains_addr(addr) {
                return Err(corrupt(format!(
                    "lease of `{}` ({}) is not in shard {} of `{}`",
                    l.vm_id, l.address, l.shard, l.subdivision
                )));
            }
            let offset = (addr - block.base) as u64;
            if !shard.addrs.allocatable(offset) {
                return Err(corrupt(format!(
                    "lease of `{}`: {} is a reserved address of shard {} (or beyond the first \
                     2^32 addresses)",
                    l.vm_id, l.address, l.shard
                )));
            }
            if !shard.addrs.insert(offset) {
                return Err(corrupt(format!("address {} is leased twice", l.address)));
            }
            shard.leases += 1;
            ipam.sub_mut(sub).leases += 1;
            if ipam.find_lease(&l.vm_id).is_some() {
                return Err(corrupt(format!("vm `{}` holds two leases", l.vm_id)));
            }
            if offset >= MAX_SHARD_ADDRESSES {
                return Err(corrupt(format!(
                    "lease of `{}`: offset beyond 2^32",
                    l.vm_id
                )));
            }
            let profile = ipam.intern_profile(l.profile.as_deref())?;
            ipam.push_lease(Lease::new(&l.vm_id, id, offset, profile, l.created));
            ipam.refresh_room(id);
        }
        // The clock never runs backwards across a restart: resume from the latest recorded time.
        let latest = snap
            .leases
            .iter()
            .map(|l| l.created)
            .chain(snap.shards.iter().map(|s| s.since))
            .chain(snap.cooling.iter().map(|c| c.until - settings.cooldown_s))
            .fold(f64::NEG_INFINITY, f64::max);
        ipam.clock = latest;
        ipam.journaling = true;
        Ok(ipam)
    }

    // ----------------------------------------------------------------------------------------
    // Invariants

    /// Checks every invariant of the brief by brute force (for tests); the first violation found.
    pub fn check_invariants(&self) -> Result<(), String> {
        // Shards inside exactly one pool, no two non-free shards overlap.
        let mut all: Vec<(u8, u128, Block, &Shard)> = Vec::new();
        for s in self.shards.iter().flatten() {
            let pool = self.pool(s.pool);
            let containing = self
                .pools
                .iter()
                .flatten()
                .filter(|p| {
                    p.family == pool.family
                        && p.spec.vrf == pool.spec.vrf
                        && p.block.contains(s.block)
                })
                .count();
            if containing != 1 {
                return Err(format!(
                    "shard {} lies in {containing} pools",
                    s.block.to_net(pool.family)
                ));
            }
            if s.block.order < pool.min_order || s.block.order > pool.max_order {
                let (min, max) = pool.spec.shard_prefix_range();
                return Err(format!(
                    "shard {} is outside the pool's /{min} to /{max} shard sizes",
                    s.block.to_net(pool.family)
                ));
            }
            if s.block.base & (s.block.size() - 1) != 0 {
                return Err(format!("shard {:?} is not aligned", s.block));
            }
            // The bitmap is sized for this shard: [reserve_first, size - reserve_last).
            let hi = (s.block.size() - u128::from(pool.spec.reserve_last))
                .min(u128::from(MAX_SHARD_ADDRESSES));
            if u128::from(s.addrs.capacity()) != hi - u128::from(pool.spec.reserve_first) {
                return Err(format!(
                    "shard {} has a bitmap of {} usable addresses",
                    s.block.to_net(pool.family),
                    s.addrs.capacity()
                ));
            }
            for r in &pool.reserved_blocks {
                if r.overlaps(s.block) {
                    return Err(format!(
                        "shard {} overlaps a reserved range",
                        s.block.to_net(pool.family)
                    ));
                }
            }
            all.push((pool.family.bits(), s.block.base, s.block, s));
        }
        all.sort_by_key(|x| (x.0, x.3.pool, x.1));
        for w in all.windows(2) {
            if w[0].3.pool == w[1].3.pool && w[0].2.overlaps(w[1].2) {
                return Err(format!("shards {:?} and {:?} overlap", w[0].2, w[1].2));
            }
        }
        // Leases: unique vm, unique address, inside an active/draining shard of their subdivision.
        let mut seen = std::collections::HashSet::new();
        let mut per_shard: HashMap<ShardId, u64> = HashMap::new();
        for (i, l) in self.leases.iter().enumerate() {
            if self.find_lease(&l.vm) != Some(i) {
                return Err(format!("vm `{}` is indexed wrongly or twice", l.vm));
            }
            let s = self
                .shards
                .get(l.shard() as usize)
                .and_then(|s| s.as_ref())
                .ok_or_else(|| format!("lease of `{}` points at a free shard", l.vm))?;
            if s.state == ShardState::Reserved {
                return Err(format!("lease of `{}` sits in a reserved shard", l.vm));
            }
            if !s.addrs.contains(l.offset()) {
                return Err(format!("lease of `{}` is not marked in its bitmap", l.vm));
            }
            if !seen.insert((s.pool, s.block.base + u128::from(l.offset()))) {
                return Err(format!("address of `{}` is leased twice", l.vm));
            }
            *per_shard.entry(l.shard()).or_default() += 1;
        }
        for (i, s) in self.shards.iter().enumerate() {
            if let Some(s) = s {
                let n = per_shard.get(&(i as ShardId)).copied().unwrap_or(0);
                if n != s.leases {
                    return Err(format!(
                        "shard {:?} counts {} leases, has {n}",
                        s.block, s.leases
                    ));
                }
                let cooling = self
                    .pool(s.pool)
                    .cooling
                    .iter()
                    .filter(|(a, _)| s.block.contains_addr(*a))
                    .count() as u64;
                if s.addrs.used() != n + cooling {
                    return Err(format!(
                        "shard {:?} marks {} used, {n} leased + {cooling} cooling",
                        s.block,
                        s.addrs.used()
                    ));
                }
            }
        }
        // Free space holds no cooling address.
        for p in self.pools.iter().flatten() {
            for &(addr, _) in &p.cooling {
                let inside = p
                    .shards
                    .range(..=addr)
                    .next_back()
                    .is_some_and(|(_, &id)| self.shard(id).block.contains_addr(addr));
                if !inside {
                    return Err(format!("cooling address {addr:#x} lies in free space"));
                }
            }
        }
        // Homes inside their parent's home or the pool; shards inside home or borrowed.
        for s in self.subs.iter().flatten() {
            for (&pid, sp) in &s.per_pool {
                for &sid in sp.shards.values() {
                    let sh = self.shard(sid);
                    let in_home = sp
                        .home
                        .as_ref()
                        .is_some_and(|h| h.arena.block().contains(sh.block));
                    if in_home == sh.borrowed {
                        return Err(format!(
                            "shard {:?} of `{}`: borrowed={} but in_home={in_home}",
                            sh.block, s.spec.name, sh.borrowed
                        ));
                    }
                }
                if let Some(h) = &sp.home {
                    if !self.pool(pid).block.contains(h.arena.block()) {
                        return Err(format!("home of `{}` lies outside its pool", s.spec.name));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_packed_to_40_bytes() {
        assert_eq!(std::mem::size_of::<Lease>(), 40);
        let l = Lease::new(
            "vm",
            MAX_LIVE_SHARDS as u32 - 1,
            MAX_SHARD_ADDRESSES - 1,
            255,
            1.5,
        );
        assert_eq!(l.shard(), MAX_LIVE_SHARDS as u32 - 1);
        assert_eq!(l.profile(), 255);
        assert_eq!(l.offset(), MAX_SHARD_ADDRESSES - 1);
    }
}
