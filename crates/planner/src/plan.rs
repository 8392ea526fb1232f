//! [`plan`]: from the state, the demands and the config to a [`Plan`]. See the crate docs for
//! the rules; this file follows them phase by phase.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use cidrcast_core::model::{PoolSpec, Reason, ShardState, SubdivisionSpec, Time};
use cidrcast_core::prefix::{block_of, min_cover, Family};
use cidrcast_core::{CoreError, Ipam, ShardInfo, MAX_SHARD_ADDRESSES};
use ipnet::IpNet;

use crate::error::PlannerError;
use crate::types::{
    Action, ActionKind, Aggregate, Demand, Plan, PlannerConfig, Shortfall, ShortfallCause, Target,
};

/// A non-free shard of a demand's subdivision, as the planning copy of the state holds it.
#[derive(Clone, Debug)]
struct View {
    prefix: IpNet,
    state: ShardState,
    leases: u64,
    usable: u64,
    borrowed: bool,
    since: Time,
    /// Given back by this plan.
    freed: bool,
}

/// One demand, resolved against the state.
#[derive(Debug)]
struct Entry {
    sub: String,
    pool: String,
    score: f64,
    upper_lead: f64,
    upper_long: f64,
    /// `upper_lead + ready_headroom`.
    need: f64,
    /// `upper_long + ready_headroom`.
    long: f64,
    /// As passed to `claim_shard_sized`.
    prefix_len: Option<u8>,
    /// Prefix length and usable addresses of a shard claimed for it.
    len: u8,
    usable: u64,
    max_shards: Option<u32>,
    shards: Vec<View>,
    live_before: u64,
    cause: Option<ShortfallCause>,
}

impl Entry {
    fn live(&self) -> impl Iterator<Item = &View> {
        self.shards
            .iter()
            .filter(|v| !v.freed && v.state != ShardState::Draining)
    }

    fn live_capacity(&self) -> u64 {
        self.live().map(|v| v.usable).sum()
    }

    fn live_count(&self) -> u64 {
        self.live().count() as u64
    }

    fn held(&self) -> u64 {
        self.shards.iter().filter(|v| !v.freed).count() as u64
    }

    fn need_text(&self, headroom: u64) -> String {
        with_headroom(self.upper_lead, headroom)
    }

    fn long_text(&self, headroom: u64) -> String {
        with_headroom(self.upper_long, headroom)
    }

    /// An action on one of this entry's shards.
    fn action(&self, kind: ActionKind, prefix: IpNet, leases: u64, reason: String) -> Action {
        Action {
            kind,
            subdivision: self.sub.clone(),
            pool: self.pool.clone(),
            prefix,
            leases,
            reason,
        }
    }

    fn core_err(
        &self,
        action: &str,
        prefix: Option<IpNet>,
    ) -> impl FnOnce(CoreError) -> PlannerError {
        let action = match prefix {
            Some(p) => format!("{action} {p}"),
            None => action.to_string(),
        };
        let (subdivision, pool) = (self.sub.clone(), self.pool.clone());
        move |source| PlannerError::Core {
            action,
            subdivision,
            pool,
            source: Box::new(source),
        }
    }
}

/// A number for a reason text: at most two decimals, no trailing zeros.
pub(crate) fn num(x: f64) -> String {
    let r = (x * 100.0).round() / 100.0;
    if r == r.trunc() && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

fn with_headroom(upper: f64, headroom: u64) -> String {
    if headroom == 0 {
        num(upper)
    } else {
        format!("{} + headroom {headroom}", num(upper))
    }
}

fn family_bits(prefix: &IpNet) -> u8 {
    match prefix {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

/// Addresses a shard of prefix length `len` of `pool` can lease, as the allocator counts them:
/// the shard less `reserve_first` and `reserve_last`, at most 2^32 per shard.
pub(crate) fn usable_of(pool: &PoolSpec, len: u8) -> u64 {
    let order = u32::from(family_bits(&pool.prefix).saturating_sub(len));
    let size = 1u128.checked_shl(order).unwrap_or(u128::MAX);
    let hi = size
        .saturating_sub(u128::from(pool.reserve_last))
        .min(u128::from(MAX_SHARD_ADDRESSES));
    hi.saturating_sub(u128::from(pool.reserve_first)) as u64
}

/// Addresses of a block of prefix length `len` in the family of `pool`.
fn space_of(pool: &PoolSpec, len: u8) -> u128 {
    let order = u32::from(family_bits(&pool.prefix).saturating_sub(len));
    1u128.checked_shl(order).unwrap_or(u128::MAX)
}

fn check_demand(d: &Demand) -> Result<(), PlannerError> {
    let invalid = |field: &'static str, value: f64, reason: &str| PlannerError::InvalidDemand {
        subdivision: d.subdivision.clone(),
        field,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    for (field, v) in [("upper_lead", d.upper_lead), ("upper_long", d.upper_long)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(invalid(
                field,
                v,
                "must be a finite number of addresses >= 0",
            ));
        }
    }
    if !d.score.is_finite() {
        return Err(invalid("score", d.score, "must be finite"));
    }
    Ok(())
}

/// The pool a demand's shards go in: the one it names, else the subdivision's default (the
/// first of its `pools`, else the first pool by name), as `Ipam::claim_shard` chooses it.
fn resolve_pool(
    d: &Demand,
    spec: &SubdivisionSpec,
    pools: &BTreeMap<String, PoolSpec>,
) -> Result<String, PlannerError> {
    let name = match &d.pool {
        Some(p) => {
            if !spec.pools.is_empty() && !spec.pools.iter().any(|x| x == p) {
                return Err(PlannerError::PoolNotAllowed {
                    subdivision: d.subdivision.clone(),
                    pool: p.clone(),
                    allowed: spec.pools.join(", "),
                });
            }
            p.clone()
        }
        None => match spec.pools.first().or_else(|| pools.keys().next()) {
            Some(p) => p.clone(),
            None => return Err(PlannerError::NoPool(d.subdivision.clone())),
        },
    };
    if !pools.contains_key(&name) {
        return Err(PlannerError::UnknownPool {
            subdivision: d.subdivision.clone(),
            pool: name,
        });
    }
    Ok(name)
}

fn view_of(info: &ShardInfo) -> View {
    View {
        prefix: info.record.prefix,
        state: info.record.state,
        leases: info.leases,
        usable: info.usable.min(u128::from(u64::MAX)) as u64,
        borrowed: info.record.borrowed,
        since: info.record.since,
        freed: false,
    }
}

/// Non-free shards by (subdivision, pool), each list by address.
fn shards_by_owner(state: &Ipam) -> BTreeMap<(String, String), Vec<ShardInfo>> {
    let mut out: BTreeMap<(String, String), Vec<ShardInfo>> = BTreeMap::new();
    for s in state.shards(None).expect("all shards") {
        out.entry((s.record.subdivision.clone(), s.record.pool.clone()))
            .or_default()
            .push(s);
    }
    out
}

/// Computes the plan for `demands` at time `now`. Pure and deterministic: the same state,
/// demands, config and time give the same plan; `state` is not changed (the claims run on a
/// copy, which is how the plan knows where the allocator places each new shard).
///
/// Subdivisions and pools without a demand are left alone. See the crate docs for the rules.
/// Cost: one copy of the state (as [`crate::apply`]), plus one allocator call per action.
pub fn plan(
    state: &Ipam,
    demands: &[Demand],
    cfg: &PlannerConfig,
    now: Time,
) -> Result<Plan, PlannerError> {
    cfg.validate()?;
    if !now.is_finite() {
        return Err(PlannerError::InvalidConfig {
            field: "now",
            value: now.to_string(),
            reason: "the plan time must be finite".into(),
        });
    }
    let pools: BTreeMap<String, PoolSpec> = state
        .pool_specs()
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let specs: BTreeMap<String, SubdivisionSpec> = state
        .subdivision_specs()
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let mut before = shards_by_owner(state);
    let headroom = cfg.ready_headroom as f64;

    let mut entries: Vec<Entry> = Vec::with_capacity(demands.len());
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    for d in demands {
        check_demand(d)?;
        let spec = specs
            .get(&d.subdivision)
            .ok_or_else(|| PlannerError::UnknownSubdivision(d.subdivision.clone()))?;
        let pool = resolve_pool(d, spec, &pools)?;
        if !seen.insert((d.subdivision.clone(), pool.clone())) {
            return Err(PlannerError::DuplicateDemand {
                subdivision: d.subdivision.clone(),
                pool,
            });
        }
        let pspec = &pools[&pool];
        let len = d.prefix_len.unwrap_or(pspec.shard_prefix_len);
        let (min, max) = pspec.shard_prefix_range();
        if len < min || len > max {
            return Err(PlannerError::ShardSize {
                subdivision: d.subdivision.clone(),
                pool,
                prefix_len: len,
                min,
                max,
            });
        }
        let shards: Vec<View> = before
            .remove(&(d.subdivision.clone(), pool.clone()))
            .unwrap_or_default()
            .iter()
            .map(view_of)
            .collect();
        let mut e = Entry {
            sub: d.subdivision.clone(),
            pool,
            score: d.score,
            upper_lead: d.upper_lead,
            upper_long: d.upper_long,
            need: d.upper_lead + headroom,
            long: d.upper_long + headroom,
            prefix_len: d.prefix_len,
            len,
            usable: usable_of(pspec, len),
            max_shards: spec.max_shards,
            shards,
            live_before: 0,
            cause: None,
        };
        e.live_before = e.live_count();
        entries.push(e);
    }
    // Highest demand score first; ties by name, for determinism.
    entries.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.sub.cmp(&b.sub))
            .then_with(|| a.pool.cmp(&b.pool))
    });

    let mut sim = state.clone();
    sim.set_journaling(false);
    let mut actions: Vec<Action> = Vec::new();

    // Phase 1: take back draining shards where demand came back, give back what is not needed.
    // Giving back first frees space for the claims of phase 2.
    for e in &mut entries {
        take_back_and_give_back(&mut sim, e, cfg, now, &mut actions)?;
    }
    // Phase 2: claims, highest score first, so that scarce space goes to the highest demand
    // (then, for a subdivision with shards of several sizes, giving back again).
    for e in &mut entries {
        claim(&mut sim, e, cfg, now, &mut actions)?;
    }
    // Phase 3: activate reserved shards until the ready addresses reach the prefetch target.
    for e in &mut entries {
        activate(&mut sim, e, cfg, now, &mut actions)?;
    }

    // Figures after the plan, from the planning copy.
    let after = shards_by_owner(&sim);
    let mut shortfalls = Vec::new();
    let mut targets = Vec::with_capacity(entries.len());
    for e in &entries {
        let shards = after
            .get(&(e.sub.clone(), e.pool.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let live: Vec<&ShardInfo> = shards
            .iter()
            .filter(|s| s.record.state != ShardState::Draining)
            .collect();
        let capacity: u64 = live.iter().map(|s| s.usable as u64).sum();
        let live_after = live.len() as u64;
        if (capacity as f64) < e.need {
            let short = (e.need - capacity as f64).ceil() as u64;
            shortfalls.push(Shortfall {
                subdivision: e.sub.clone(),
                pool: e.pool.clone(),
                wanted_shards: live_after + short.div_ceil(e.usable.max(1)),
                got_shards: live_after,
                short_addresses: short,
                cause: e.cause.unwrap_or(ShortfallCause::PoolExhausted),
            });
        }
        let leases: u64 = shards.iter().map(|s| s.leases).sum();
        let ready_after: u64 = shards
            .iter()
            .filter(|s| s.record.state == ShardState::Active)
            .map(|s| (s.usable as u64).saturating_sub(s.leases))
            .sum();
        let mut wanted = (e.need / e.usable.max(1) as f64).ceil() as u64;
        if let Some(m) = e.max_shards {
            wanted = wanted.min(u64::from(m));
        }
        targets.push(Target {
            subdivision: e.sub.clone(),
            pool: e.pool.clone(),
            shard_prefix_len: e.len,
            usable_per_shard: e.usable,
            wanted_shards: wanted,
            live_before: e.live_before,
            live_after,
            draining_after: shards.len() as u64 - live_after,
            leases,
            ready_target: (e.need.ceil() as u64).saturating_sub(leases),
            ready_after,
            routes: cover(shards.iter().map(|s| s.record.prefix)),
        });
    }
    let aggregates = aggregates(&sim, &specs, &pools, &after, &entries, &shortfalls)?;
    Ok(Plan {
        time: now,
        actions,
        shortfalls,
        targets,
        aggregates,
    })
}

/// Minimal CIDR cover of prefixes of one family.
pub(crate) fn cover(prefixes: impl IntoIterator<Item = IpNet>) -> Vec<IpNet> {
    let nets: Vec<IpNet> = prefixes.into_iter().collect();
    let Some(first) = nets.first() else {
        return Vec::new();
    };
    min_cover(Family::of(first), nets.iter().map(block_of))
}

/// Phase 1 for one demand: reactivates draining shards (most leases first) while the live
/// capacity is short of the demand; releases the draining shards left with no lease and no
/// cooling address; then [`give_back`].
fn take_back_and_give_back(
    sim: &mut Ipam,
    e: &mut Entry,
    cfg: &PlannerConfig,
    now: Time,
    actions: &mut Vec<Action>,
) -> Result<(), PlannerError> {
    let h = cfg.ready_headroom;
    let mut cap = e.live_capacity();
    let mut draining: Vec<usize> = (0..e.shards.len())
        .filter(|&i| e.shards[i].state == ShardState::Draining)
        .collect();
    draining.sort_by_key(|&i| (Reverse(e.shards[i].leases), e.shards[i].prefix));
    for &i in &draining {
        if cap as f64 >= e.need {
            break;
        }
        let v = &e.shards[i];
        sim.activate_shard(&v.prefix, Reason::Forecast, now)
            .map_err(e.core_err("activate", Some(v.prefix)))?;
        actions.push(e.action(
            ActionKind::Activate,
            v.prefix,
            v.leases,
            format!(
                "demand came back: upper peak over the lead time {} > {cap} usable in {} live \
                 shard(s); taken back from draining ({} lease(s)) instead of claiming a new shard",
                e.need_text(h),
                e.live_count(),
                v.leases
            ),
        ));
        cap += v.usable;
        e.shards[i].state = ShardState::Active;
    }
    for &i in &draining {
        let v = &e.shards[i];
        if v.state != ShardState::Draining || v.leases > 0 {
            continue;
        }
        match sim.release_shard(&v.prefix, Reason::Reclaim, now) {
            Ok(()) => {
                actions.push(e.action(
                    ActionKind::Release,
                    v.prefix,
                    0,
                    "draining and empty".to_string(),
                ));
                e.shards[i].freed = true;
            }
            // Addresses still cooling: the allocator frees it when they expire.
            Err(CoreError::ShardCooling { .. }) => {}
            Err(err) => return Err(e.core_err("release", Some(v.prefix))(err)),
        }
    }

    give_back(sim, e, cfg, now, actions)
}

/// Gives back live shards beyond the demand while the hysteresis test passes: reserved first,
/// then active ones (fewest leases, borrowed, highest address first). Runs in phase 1, and again
/// after the claims of phase 2 when a subdivision holds shards of several sizes (claims in the
/// demand's size may overshoot enough that an odd-sized shard is no longer needed; giving it
/// back in the same plan keeps the next plan from doing it: plans are a fixed point).
fn give_back(
    sim: &mut Ipam,
    e: &mut Entry,
    cfg: &PlannerConfig,
    now: Time,
    actions: &mut Vec<Action>,
) -> Result<(), PlannerError> {
    let h = cfg.ready_headroom;
    let mut cap = e.live_capacity();
    if cap as f64 <= e.need {
        return Ok(());
    }
    let mut reserved: Vec<usize> = (0..e.shards.len())
        .filter(|&i| !e.shards[i].freed && e.shards[i].state == ShardState::Reserved)
        .collect();
    reserved.sort_by_key(|&i| (!e.shards[i].borrowed, Reverse(e.shards[i].prefix)));
    let mut active: Vec<usize> = (0..e.shards.len())
        .filter(|&i| {
            let v = &e.shards[i];
            !v.freed && v.state == ShardState::Active && (cfg.drain_leased || v.leases == 0)
        })
        .collect();
    active.sort_by_key(|&i| {
        let v = &e.shards[i];
        (v.leases, !v.borrowed, Reverse(v.prefix))
    });
    let keep = 1.0 - cfg.release_margin;
    for i in reserved.into_iter().chain(active) {
        let v = e.shards[i].clone();
        let left = cap - v.usable;
        if (left as f64) < e.need || e.long > left as f64 * keep {
            continue;
        }
        let why = format!(
            "upper peak over the release horizon {} <= {left} usable left × (1 − {}) = {}, and \
             {left} >= upper peak over the lead time {}",
            e.long_text(h),
            num(cfg.release_margin),
            num(left as f64 * keep),
            e.need_text(h)
        );
        let mut push = |kind: ActionKind, leases: u64, what: String| {
            actions.push(e.action(kind, v.prefix, leases, format!("{why}; {what}")))
        };
        if v.state == ShardState::Reserved {
            sim.release_shard(&v.prefix, Reason::Reclaim, now)
                .map_err(e.core_err("release", Some(v.prefix)))?;
            push(ActionKind::Release, 0, "reserved, never activated".into());
            e.shards[i].freed = true;
        } else if v.leases == 0 {
            match sim.release_shard(&v.prefix, Reason::Reclaim, now) {
                Ok(()) => {
                    push(ActionKind::Release, 0, "empty".into());
                    e.shards[i].freed = true;
                }
                Err(CoreError::ShardCooling { cooling, .. }) => {
                    let still = sim
                        .drain_shard(&v.prefix, Reason::Reclaim, now)
                        .map_err(e.core_err("drain", Some(v.prefix)))?;
                    debug_assert!(still.is_some(), "a cooling shard stays draining");
                    push(
                        ActionKind::Drain,
                        0,
                        format!(
                            "no lease, {cooling} address(es) in their cooldown: released when \
                             they expire"
                        ),
                    );
                    e.shards[i].state = ShardState::Draining;
                }
                Err(err) => return Err(e.core_err("release", Some(v.prefix))(err)),
            }
        } else {
            sim.drain_shard(&v.prefix, Reason::Reclaim, now)
                .map_err(e.core_err("drain", Some(v.prefix)))?;
            push(
                ActionKind::Drain,
                v.leases,
                format!("{} lease(s) left: released when empty", v.leases),
            );
            e.shards[i].state = ShardState::Draining;
        }
        cap = left;
    }
    Ok(())
}

/// Phase 2 for one demand: claims shards of its size until its live capacity covers the demand,
/// or `max_shards` or the pool's space stops it (recorded as the shortfall's cause).
fn claim(
    sim: &mut Ipam,
    e: &mut Entry,
    cfg: &PlannerConfig,
    now: Time,
    actions: &mut Vec<Action>,
) -> Result<(), PlannerError> {
    let mut cap = e.live_capacity();
    let mut held = e.held();
    let want = (e.need / e.usable.max(1) as f64).ceil();
    while (cap as f64) < e.need {
        if e.max_shards.is_some_and(|m| held >= u64::from(m)) {
            e.cause = Some(ShortfallCause::MaxShards);
            break;
        }
        let reason = format!(
            "upper peak over the lead time {} > {cap} usable in {} live shard(s): want {} × /{} \
             ({} usable each)",
            e.need_text(cfg.ready_headroom),
            e.live_count(),
            num(want),
            e.len,
            e.usable
        );
        match sim.claim_shard_sized(&e.sub, Some(&e.pool), e.prefix_len, Reason::Forecast, now) {
            Ok(rec) => {
                let usable = e.usable;
                actions.push(e.action(ActionKind::Reserve, rec.prefix, 0, reason));
                e.shards.push(View {
                    prefix: rec.prefix,
                    state: ShardState::Reserved,
                    leases: 0,
                    usable,
                    borrowed: rec.borrowed,
                    since: rec.since,
                    freed: false,
                });
                cap += usable;
                held += 1;
            }
            Err(CoreError::PoolExhausted { .. }) => {
                e.cause = Some(ShortfallCause::PoolExhausted);
                break;
            }
            Err(CoreError::MaxShards { .. }) => {
                e.cause = Some(ShortfallCause::MaxShards);
                break;
            }
            Err(err) => return Err(e.core_err("claim a shard", None)(err)),
        }
    }
    let sizes: BTreeSet<u64> = e.live().map(|v| v.usable).collect();
    if sizes.len() > 1 {
        give_back(sim, e, cfg, now, actions)?;
    }
    Ok(())
}

/// Phase 3 for one demand: activates reserved shards (lowest address first, once reserved for
/// `activate_after_s`) while the free addresses of its active shards are below the prefetch
/// target `ceil(upper_lead + headroom) − leases`.
fn activate(
    sim: &mut Ipam,
    e: &mut Entry,
    cfg: &PlannerConfig,
    now: Time,
    actions: &mut Vec<Action>,
) -> Result<(), PlannerError> {
    let leases: u64 = e.shards.iter().filter(|v| !v.freed).map(|v| v.leases).sum();
    let target = (e.need.ceil() as u64).saturating_sub(leases);
    let mut ready: u64 = e
        .shards
        .iter()
        .filter(|v| !v.freed && v.state == ShardState::Active)
        .map(|v| v.usable.saturating_sub(v.leases))
        .sum();
    let mut reserved: Vec<usize> = (0..e.shards.len())
        .filter(|&i| {
            let v = &e.shards[i];
            !v.freed
                && v.state == ShardState::Reserved
                && (cfg.activate_after_s <= 0.0 || now - v.since >= cfg.activate_after_s)
        })
        .collect();
    reserved.sort_by_key(|&i| e.shards[i].prefix);
    for i in reserved {
        if ready >= target {
            break;
        }
        let v = &e.shards[i];
        sim.activate_shard(&v.prefix, Reason::Forecast, now)
            .map_err(e.core_err("activate", Some(v.prefix)))?;
        actions.push(e.action(
            ActionKind::Activate,
            v.prefix,
            0,
            format!(
                "ready {ready} < target {target} (upper peak over the lead time {} − {leases} \
                 leased)",
                e.need_text(cfg.ready_headroom)
            ),
        ));
        ready += v.usable;
        e.shards[i].state = ShardState::Active;
    }
    Ok(())
}

/// The subdivision and its descendants, by name (itself first).
pub(crate) fn family(root: &str, children: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = vec![root.to_string()];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().cloned());
        }
        i += 1;
    }
    out
}

pub(crate) fn children_of(
    specs: &BTreeMap<String, SubdivisionSpec>,
) -> BTreeMap<String, Vec<String>> {
    let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in specs.values() {
        if let Some(p) = &s.parent {
            children.entry(p.clone()).or_default().push(s.name.clone());
        }
    }
    children
}

/// The home block of `sub` in `pool`: the home that lies in the pool's prefix (`None` when it
/// has none, or when another pool's prefix, in another VRF, also holds it: `Ipam` lists homes
/// without their pool).
fn home_in(
    sim: &Ipam,
    sub: &str,
    pool: &PoolSpec,
    pools: &BTreeMap<String, PoolSpec>,
) -> Result<Option<IpNet>, PlannerError> {
    let info = sim
        .subdivision(sub)
        .map_err(|_| PlannerError::UnknownSubdivision(sub.to_string()))?;
    let mut found = info.homes.iter().filter(|h| pool.prefix.contains(*h));
    let (Some(home), None) = (found.next(), found.next()) else {
        return Ok(None);
    };
    let ambiguous = pools
        .values()
        .any(|p| p.name != pool.name && p.prefix.contains(home));
    Ok((!ambiguous).then_some(*home))
}

fn aggregates(
    sim: &Ipam,
    specs: &BTreeMap<String, SubdivisionSpec>,
    pools: &BTreeMap<String, PoolSpec>,
    after: &BTreeMap<(String, String), Vec<ShardInfo>>,
    entries: &[Entry],
    shortfalls: &[Shortfall],
) -> Result<Vec<Aggregate>, PlannerError> {
    let children = children_of(specs);
    let mut out = Vec::new();
    for parent in children.keys() {
        let members = family(parent, &children);
        let member_set: BTreeSet<&str> = members.iter().map(String::as_str).collect();
        let mut used_pools: BTreeSet<&str> = after
            .keys()
            .filter(|(s, _)| member_set.contains(s.as_str()))
            .map(|(_, p)| p.as_str())
            .collect();
        used_pools.extend(
            entries
                .iter()
                .filter(|e| member_set.contains(e.sub.as_str()))
                .map(|e| e.pool.as_str()),
        );
        for pool_name in used_pools {
            let pool = &pools[pool_name];
            let unit = space_of(pool, pool.shard_prefix_len);
            let shards: Vec<IpNet> = members
                .iter()
                .filter_map(|m| after.get(&(m.clone(), pool_name.to_string())))
                .flatten()
                .map(|s| s.record.prefix)
                .collect();
            let space: u128 = shards.iter().map(|p| space_of(pool, p.prefix_len())).sum();
            let missing: u128 = shortfalls
                .iter()
                .filter(|s| s.pool == pool_name && member_set.contains(s.subdivision.as_str()))
                .map(|s| {
                    let len = entries
                        .iter()
                        .find(|e| e.sub == s.subdivision && e.pool == s.pool)
                        .map_or(pool.shard_prefix_len, |e| e.len);
                    u128::from(s.wanted_shards - s.got_shards) * space_of(pool, len)
                })
                .sum();
            let block = home_in(sim, parent, pool, pools)?;
            let mut sorted = shards.clone();
            sorted.sort();
            let outside: Vec<IpNet> = sorted
                .iter()
                .filter(|s| block.is_none_or(|b| !b.contains(*s)))
                .copied()
                .collect();
            let units = |space: u128| space.div_ceil(unit).min(u128::from(u64::MAX)) as u64;
            out.push(Aggregate {
                subdivision: parent.clone(),
                pool: pool_name.to_string(),
                wanted_shards: units(space + missing),
                shards: units(space),
                block,
                block_shards: block.map_or(0, |b| units(space_of(pool, b.prefix_len()))),
                routes: cover(sorted),
                outside,
            });
        }
    }
    Ok(out)
}
