//! The replay itself. See the crate documentation for the semantics.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use cidrcast_core::model::{EventKind, Time, VmEvent};
use cidrcast_core::prefix::{min_cover, Block, Family};
use serde::Serialize;

use cidrcast_forecast::increase::IncreaseForecaster;

use crate::policy::{Adaptive, Policy};
use crate::SimError;

/// Replay parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// Seconds from a claim until the shard serves creates.
    pub lead_time: f64,
    /// Addresses per shard (64 for a /26): the size every policy claims, except the predictive one
    /// when the range below is wider (adaptive shard sizes).
    pub shard_size: u32,
    /// The smallest and largest shard sizes the predictive policy may choose from (addresses,
    /// powers of two, `min_shard_size <= shard_size <= max_shard_size`); both equal to
    /// `shard_size` when sizes are fixed. A subdivision's shards live in one address space in
    /// units of `min_shard_size`, each an aligned block (buddy style).
    pub min_shard_size: u32,
    pub max_shard_size: u32,
    /// Metrics are taken over `[window.0, window.1)`; `None`: the whole replay.
    pub window: Option<(Time, Time)>,
}

impl Params {
    /// Fixed-size shards of `shard_size` addresses.
    pub fn fixed(lead_time: f64, shard_size: u32, window: Option<(Time, Time)>) -> Self {
        Params {
            lead_time,
            shard_size,
            min_shard_size: shard_size,
            max_shard_size: shard_size,
            window,
        }
    }

    /// Whether the predictive policy may choose among several shard sizes.
    pub fn is_adaptive(&self) -> bool {
        self.min_shard_size != self.max_shard_size
    }

    /// Checks the lead time and the shard sizes.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(self.lead_time.is_finite() && self.lead_time >= 0.0) {
            return Err(SimError::Invalid {
                what: "lead time",
                value: self.lead_time.to_string(),
                reason: "must be a number of seconds >= 0".into(),
            });
        }
        if self.shard_size == 0 {
            return Err(SimError::Invalid {
                what: "shard size",
                value: "0".into(),
                reason: "must hold at least one address".into(),
            });
        }
        let (min, size, max) = (self.min_shard_size, self.shard_size, self.max_shard_size);
        if !(min <= size && size <= max) {
            return Err(SimError::Invalid {
                what: "shard sizes",
                value: format!("{min}..{max} (default {size})"),
                reason: "expected min_shard_size <= shard_size <= max_shard_size".into(),
            });
        }
        if (min != size || size != max) && ![min, size, max].iter().all(|x| x.is_power_of_two()) {
            return Err(SimError::Invalid {
                what: "shard sizes",
                value: format!("{min}..{max} (default {size})"),
                reason: "adaptive shard sizes must be powers of two".into(),
            });
        }
        Ok(())
    }
}

/// What a replay measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub creations: u64,
    pub misses: u64,
    pub miss_rate: f64,
    pub mean_wait_s: f64,
    pub p99_wait_s: f64,
    /// Ready + pending − used addresses, time-averaged, summed over subdivisions.
    pub mean_idle_addresses: f64,
    /// Mean used addresses, summed over subdivisions.
    pub mean_used_addresses: f64,
    /// Used ÷ held addresses, time-averaged.
    pub utilization: f64,
    pub shard_claims: u64,
    pub shard_releases: u64,
    pub claims_per_hour: f64,
    pub releases_per_hour: f64,
    /// Routes after aggregation (minimal cover of a subdivision's shards), mean over time and
    /// subdivisions, and the largest seen.
    pub routes_mean: f64,
    pub routes_max: usize,
    /// Mean size of the held shards (addresses), weighted by the time each is held: held
    /// address-seconds ÷ shard-seconds (0 when nothing was held). `shard_size` unless adaptive.
    pub mean_shard_size: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_subdivision: Option<Vec<(String, Report)>>,
}

/// The state of one unit (`min_shard_size` addresses) of a subdivision's address space. A shard
/// of order `k` covers `2^k` units: its first unit (the head, where the shard is kept) is
/// `Pending` or `Ready`, the others are `Inside`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Free,
    Pending(Time),
    Ready,
    Inside,
}

#[derive(Clone, Debug)]
struct Shard {
    state: State,
    used: u32,
    empty_since: Time,
    /// log2 of the shard's size in units.
    order: u8,
}

impl Shard {
    fn held(&self) -> bool {
        matches!(self.state, State::Pending(_) | State::Ready)
    }
}

/// Internal events, ordered by time (earliest first), maturations before anything else.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Due {
    time: Time,
    rank: u8,
    shard: usize,
}

impl Eq for Due {}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .total_cmp(&self.time)
            .then(other.rank.cmp(&self.rank))
    }
}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

const MATURE: u8 = 0;
const RELEASE: u8 = 1;

/// A shard claim or release, as the policy decided it (for causality checks).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub time: Time,
    pub subdivision: String,
    /// Where the shard starts, in units of `min_shard_size` addresses (with fixed sizes: the shard
    /// number); it covers addresses `[shard · min_shard_size, shard · min_shard_size + size)`.
    pub shard: usize,
    /// Addresses in the shard.
    pub size: u32,
    pub claim: bool,
}

#[derive(Default)]
struct Acc {
    log: Vec<(Time, usize, u32, bool)>,
    creations: u64,
    misses: u64,
    waits: Vec<f64>,
    idle: f64,
    used: f64,
    held: f64,
    /// Shard-seconds (for the mean shard size).
    shard_time: f64,
    routes: f64,
    routes_max: usize,
    claims: u64,
    releases: u64,
    span: f64,
}

struct Sub<'a> {
    p: Params,
    policy: &'a Policy,
    shards: Vec<Shard>,
    due: BinaryHeap<Due>,
    vm: HashMap<&'a str, usize>,
    used: u64,
    /// Shards held (pending or ready) and the addresses in them.
    live: u64,
    held: u64,
    /// The order (in units) of `shard_size` and of `max_shard_size`.
    base_order: u8,
    max_order: u8,
    /// The predictive policy's last need (addresses), for the size of the claims its misses make.
    need: f64,
    routes: usize,
    last: Time,
    acc: Acc,
    /// Recent misses of this subdivision (decaying), for the predictive policy's feedback.
    miss_boost: f64,
    boost_at: Time,
    /// The predictive policy's quantile level (above 1: the top sample, stretched).
    level: f64,
    /// Idle address-seconds and misses since the start of the replay (not only in the window):
    /// what the adaptive policy scores its candidates by.
    all_idle: f64,
    all_misses: u64,
}

impl<'a> Sub<'a> {
    fn new(policy: &'a Policy, p: &Params, start: Time) -> Self {
        Sub {
            p: *p,
            policy,
            shards: Vec::new(),
            due: BinaryHeap::new(),
            vm: HashMap::new(),
            used: 0,
            live: 0,
            held: 0,
            base_order: (p.shard_size / p.min_shard_size).trailing_zeros() as u8,
            max_order: (p.max_shard_size / p.min_shard_size).trailing_zeros() as u8,
            need: 0.0,
            routes: 0,
            last: start,
            acc: Acc::default(),
            miss_boost: 0.0,
            boost_at: start,
            level: match policy {
                Policy::Predictive { quantile, .. } => *quantile,
                _ => 1.0,
            },
            all_idle: 0.0,
            all_misses: 0,
        }
    }

    fn in_window(&self, t: Time) -> bool {
        self.p.window.is_none_or(|(a, b)| t >= a && t < b)
    }

    /// Accumulates the time-weighted figures from `self.last` to `t`.
    fn advance(&mut self, t: Time) {
        if t > self.last {
            self.all_idle += (self.held as f64 - self.used as f64) * (t - self.last);
        }
        let (a, b) = match self.p.window {
            Some((a, b)) => (self.last.max(a), t.min(b)),
            None => (self.last, t),
        };
        if b > a {
            let dt = b - a;
            let held = self.held as f64;
            self.acc.idle += (held - self.used as f64) * dt;
            self.acc.used += self.used as f64 * dt;
            self.acc.held += held * dt;
            self.acc.shard_time += self.live as f64 * dt;
            self.acc.routes += self.routes as f64 * dt;
            self.acc.routes_max = self.acc.routes_max.max(self.routes);
            self.acc.span += dt;
        }
        self.last = self.last.max(t);
    }

    /// Addresses in a shard of `order`.
    fn size(&self, order: u8) -> u32 {
        self.p.min_shard_size << order
    }

    fn recount_routes(&mut self, t: Time) {
        let blocks = self
            .shards
            .iter()
            .enumerate()
            .filter(|(_, s)| s.held())
            .map(|(i, s)| Block {
                base: i as u128,
                order: s.order,
            });
        self.routes = min_cover(Family::V6, blocks).len();
        if self.in_window(t) {
            self.acc.routes_max = self.acc.routes_max.max(self.routes);
        }
    }

    /// Claims the lowest free aligned block of `2^order` units (with one size: the lowest free
    /// shard number); returns its first unit.
    fn claim(&mut self, t: Time, order: u8) -> usize {
        let n = 1usize << order;
        let len = self.shards.len();
        let i = (0..)
            .step_by(n)
            .find(|&b: &usize| {
                self.shards[b.min(len)..(b + n).min(len)]
                    .iter()
                    .all(|s| s.state == State::Free)
            })
            .expect("the address space grows without bound");
        if self.shards.len() < i + n {
            self.shards.resize(
                i + n,
                Shard {
                    state: State::Free,
                    used: 0,
                    empty_since: t,
                    order: 0,
                },
            );
        }
        let ready = t + self.p.lead_time;
        self.shards[i] = Shard {
            state: State::Pending(ready),
            used: 0,
            empty_since: t,
            order,
        };
        for s in &mut self.shards[i + 1..i + n] {
            s.state = State::Inside;
        }
        self.due.push(Due {
            time: ready,
            rank: MATURE,
            shard: i,
        });
        self.live += 1;
        let size = self.size(order);
        self.held += u64::from(size);
        self.acc.log.push((t, i, size, true));
        if self.in_window(t) {
            self.acc.claims += 1;
        }
        self.recount_routes(t);
        i
    }

    fn release(&mut self, i: usize, t: Time) {
        let order = self.shards[i].order;
        for s in &mut self.shards[i..i + (1usize << order)] {
            s.state = State::Free;
        }
        self.live -= 1;
        let size = self.size(order);
        self.held -= u64::from(size);
        self.acc.log.push((t, i, size, false));
        if self.in_window(t) {
            self.acc.releases += 1;
        }
        self.recount_routes(t);
    }

    fn empty(&mut self, i: usize, t: Time) {
        self.shards[i].empty_since = t;
        if let Policy::OnDemand { release_delay } = self.policy {
            self.due.push(Due {
                time: t + release_delay,
                rank: RELEASE,
                shard: i,
            });
        }
    }

    /// Runs internal events due at or before `t`.
    fn run_due(&mut self, t: Time) {
        while let Some(d) = self.due.peek().copied() {
            if d.time > t {
                break;
            }
            self.due.pop();
            self.advance(d.time);
            let s = &self.shards[d.shard];
            match d.rank {
                MATURE => {
                    if s.state == State::Pending(d.time) {
                        self.shards[d.shard].state = State::Ready;
                        if self.shards[d.shard].used == 0 {
                            self.empty(d.shard, d.time);
                        }
                    }
                }
                _ => {
                    if let Policy::OnDemand { release_delay } = self.policy {
                        if s.state == State::Ready
                            && s.used == 0
                            && s.empty_since + release_delay <= d.time
                        {
                            self.release(d.shard, d.time);
                        }
                    }
                }
            }
        }
    }

    /// Replays one trace event, after the internal events due by then.
    fn step(&mut self, e: &'a VmEvent) {
        self.run_due(e.time);
        self.advance(e.time);
        match e.kind {
            EventKind::Create => self.create(e),
            EventKind::Delete => self.delete(e),
        }
    }

    /// Replays the events from `*next` that come strictly before the tick `t`, then brings the
    /// state to `t`.
    fn feed(&mut self, events: &[&'a VmEvent], next: &mut usize, t: Time) {
        while *next < events.len() && events[*next].time < t {
            self.step(events[*next]);
            *next += 1;
        }
        self.run_due(t);
        self.advance(t);
    }

    fn create(&mut self, e: &'a VmEvent) {
        let t = e.time;
        let unit = self.p.min_shard_size;
        let room = |s: &Shard| s.used < unit << s.order;
        let counted = self.in_window(t);
        if counted {
            self.acc.creations += 1;
        }
        let ready = self
            .shards
            .iter()
            .position(|s| s.state == State::Ready && room(s));
        let (i, wait) = match ready {
            Some(i) => (i, 0.0),
            None => {
                let pending = self
                    .shards
                    .iter()
                    .enumerate()
                    .filter_map(|(i, s)| match s.state {
                        State::Pending(at) if room(s) => Some((i, at)),
                        _ => None,
                    })
                    .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                match pending {
                    Some((i, at)) => (i, at - t),
                    None => {
                        let order = self.miss_order();
                        (self.claim(t, order), self.p.lead_time)
                    }
                }
            }
        };
        if wait > 0.0 {
            self.miss_boost += 1.0;
            self.all_misses += 1;
        }
        if let Policy::Predictive {
            target_miss, gain, ..
        } = *self.policy
        {
            // The prefetcher's own feedback: raise the level after a miss, lower it a little
            // after each hit, so that the long-run miss rate settles at `target_miss`.
            if target_miss > 0.0 {
                let miss = if wait > 0.0 { 1.0 } else { 0.0 };
                self.level = (self.level + gain * (miss - target_miss)).clamp(0.5, 4.0);
            }
        }
        if counted {
            if wait > 0.0 {
                self.acc.misses += 1;
            }
            self.acc.waits.push(wait);
        }
        self.shards[i].used += 1;
        self.used += 1;
        self.vm.insert(e.vm_id.as_str(), i);
    }

    fn delete(&mut self, e: &VmEvent) {
        let Some(i) = self.vm.remove(e.vm_id.as_str()) else {
            return;
        };
        self.shards[i].used -= 1;
        self.used -= 1;
        if self.shards[i].used == 0 && self.shards[i].state == State::Ready {
            self.empty(i, e.time);
        }
    }

    /// A reactive pool policy's check at `t` (it sees events strictly before `t`): claim up to the
    /// floor the policy keeps, release empty shards past their cooldown that the policy no longer
    /// needs (highest-numbered first).
    fn pool_tick(&mut self, t: Time) {
        let held = |s: &Self| s.held as f64;
        let free = |s: &Self| held(s) - s.used as f64;
        // (wanted free, wanted total, free above which a shard is excess)
        let (want_free, want_total, excess_above) = match *self.policy {
            Policy::WarmTarget {
                warm_ip_target,
                minimum_ip_target,
            } => (warm_ip_target, minimum_ip_target, warm_ip_target),
            Policy::Watermark {
                pre_allocate,
                min_allocate,
                max_above_watermark,
            } => (
                pre_allocate,
                min_allocate,
                pre_allocate + max_above_watermark,
            ),
            _ => return,
        };
        while free(self) < want_free || held(self) < want_total {
            self.claim(t, self.base_order);
        }
        let cooldown = self.policy.release_cooldown();
        for i in (0..self.shards.len()).rev() {
            let s = &self.shards[i];
            let size = f64::from(self.size(s.order));
            if s.state == State::Ready
                && s.used == 0
                && t - s.empty_since >= cooldown
                && free(self) - size >= excess_above
                && held(self) - size >= want_total
            {
                self.release(i, t);
            }
        }
    }

    /// The predictive policy's shard size for a subdivision that needs `need` addresses: the
    /// smallest order whose size is at least `need / route_budget`, within the range of sizes.
    /// Without a predictive policy or a range, the order of `shard_size`.
    fn size_order(&self, need: f64) -> u8 {
        let Policy::Predictive { route_budget, .. } = *self.policy else {
            return self.base_order;
        };
        let per_shard = need / route_budget;
        (0..self.max_order)
            .find(|&o| f64::from(self.size(o)) >= per_shard)
            .unwrap_or(self.max_order)
    }

    /// The order of the predictive policy's next claim towards `need` addresses: a whole shard of
    /// the chosen size while the deficit (`need` − held) is at least that size; below it, the
    /// deficit rounded up to whole units is topped up largest part first (its binary
    /// decomposition), so that a deficit of 6 with 16-address units takes one 16, not a 64.
    fn topup_order(&self, need: f64) -> u8 {
        let order = self.size_order(need);
        let deficit = need - self.held as f64;
        if deficit >= f64::from(self.size(order)) {
            return order;
        }
        let units = (deficit / f64::from(self.p.min_shard_size)).ceil().max(1.0);
        largest_order(units as u64, order)
    }

    /// The order of a claim made at once by a miss: the predictive policy tops up towards its last
    /// need (at least one address more than used), the adaptive policy towards what its leaders
    /// hold, every other policy claims `shard_size`.
    fn miss_order(&self) -> u8 {
        match self.policy {
            Policy::Predictive { .. } => self.topup_order(self.need.max(self.used as f64 + 1.0)),
            Policy::Adaptive(_) => self.fill_order((self.need as u64).saturating_sub(self.held)),
            _ => self.base_order,
        }
    }

    /// The adaptive policy's next claim towards a deficit of `deficit` addresses: the largest
    /// aligned block within it (at least the smallest shard).
    fn fill_order(&self, deficit: u64) -> u8 {
        largest_order(
            deficit.div_ceil(u64::from(self.p.min_shard_size)),
            self.max_order,
        )
    }

    /// Predictive policy at grid index `ix` (time `t`): the forecaster has seen every event before
    /// `t`. Holds shards for the alive count plus the forecast's upper quantile of the increase over
    /// the lead time and one tick, at this subdivision's own level.
    fn predictive_tick(&mut self, t: Time, ix: usize, fc: &mut IncreaseForecaster) {
        let Policy::Predictive {
            headroom,
            hysteresis,
            per_miss,
            miss_half_life,
            keep_quantile,
            ..
        } = *self.policy
        else {
            return;
        };
        let level = self.level.min(1.0);
        let stretch = self.level.max(1.0);
        let inc = fc.forecast(0, ix).upper(level) * stretch;
        let keep_inc = fc.forecast(1, ix).upper(keep_quantile);
        if miss_half_life > 0.0 {
            self.miss_boost *= 0.5f64.powf((t - self.boost_at) / miss_half_life);
        }
        self.boost_at = t;
        let feedback = per_miss * self.miss_boost;
        // Addresses to hold: with fixed sizes, ⌈need ÷ size⌉ shards.
        let need = self.used as f64 + inc.max(0.0) + headroom + feedback;
        self.need = need;
        // Releases look further ahead: a shard stays while the rise expected over the longer
        // horizon would need it again.
        let keep = (self.used as f64 + keep_inc.max(0.0)).max(need);
        while (self.held as f64) < need {
            let order = self.topup_order(need);
            self.claim(t, order);
        }
        // `hysteresis` shards of the chosen size are kept above that.
        let floor = keep + (hysteresis as u64 * u64::from(self.size(self.size_order(need)))) as f64;
        self.release_above(t, floor, false);
    }

    /// Oracle: at integer second `t`, holds `target` addresses (whole shards of `shard_size`).
    fn oracle_tick(&mut self, t: Time, target: u64) {
        while self.held < target {
            self.claim(t, self.base_order);
        }
        self.release_above(t, target as f64, true);
    }

    /// Releases empty shards, highest first, while the shards that stay hold at least `floor`
    /// addresses; ready ones only, or pending ones too (`pending_too`, as the oracle does).
    fn release_above(&mut self, t: Time, floor: f64, pending_too: bool) {
        if (self.held as f64) - f64::from(self.p.min_shard_size) < floor {
            return;
        }
        for i in (0..self.shards.len()).rev() {
            let s = &self.shards[i];
            let may_go = if pending_too {
                s.held()
            } else {
                s.state == State::Ready
            };
            if s.used == 0 && may_go && (self.held - u64::from(self.size(s.order))) as f64 >= floor
            {
                self.release(i, t);
            }
        }
    }
}

/// The largest order `o <= cap` whose block of `2^o` units fits in `units` (0 when none does).
fn largest_order(units: u64, cap: u8) -> u8 {
    (0..=cap).rev().find(|&o| 1u64 << o <= units).unwrap_or(0)
}

/// A causal policy's replay of one subdivision, stepped in time order: its ticks (a tick at `t`
/// runs before the trace events at `t`) and the trace events.
struct Driver<'a> {
    sub: Sub<'a>,
    /// The predictive policy's forecaster.
    fc: Option<IncreaseForecaster>,
    /// Seconds between ticks (`None`: event-driven); tick `ix` runs at `(first + ix) · tick`.
    tick: Option<f64>,
    first: f64,
    ix: usize,
    /// No tick runs after this.
    end_ticks: Time,
}

impl<'a> Driver<'a> {
    fn new(policy: &'a Policy, p: &Params, start: Time, end_ticks: Time) -> Self {
        let tick = policy.tick();
        let first = tick.map_or(0.0, |tick| (start / tick).ceil());
        let fc = policy
            .increase_config(p.lead_time)
            .map(|cfg| IncreaseForecaster::new(cfg, first * tick.unwrap_or(0.0)));
        Driver {
            sub: Sub::new(policy, p, start),
            fc,
            tick,
            first,
            ix: 0,
            end_ticks,
        }
    }

    /// When the next tick runs, if one is left.
    fn next_tick(&self) -> Option<Time> {
        let t = (self.first + self.ix as f64) * self.tick?;
        (t <= self.end_ticks).then_some(t)
    }

    /// Runs the next tick: the policy sees every event before it.
    fn run_tick(&mut self, t: Time) {
        self.sub.run_due(t);
        self.sub.advance(t);
        match &mut self.fc {
            Some(fc) => self.sub.predictive_tick(t, self.ix, fc),
            None => self.sub.pool_tick(t),
        }
        self.ix += 1;
    }

    /// Runs the ticks due at or before `t`.
    fn ticks_until(&mut self, t: Time) {
        while let Some(at) = self.next_tick().filter(|&at| at <= t) {
            self.run_tick(at);
        }
    }

    /// What this candidate has cost by `t`: its idle address-seconds plus `miss_cost` per miss.
    fn cost(&mut self, t: Time, miss_cost: f64) -> f64 {
        self.sub.run_due(t);
        self.sub.advance(t);
        self.sub.all_idle + miss_cost * self.sub.all_misses as f64
    }

    /// Replays one trace event (after the ticks due by then).
    fn event(&mut self, e: &'a VmEvent) {
        self.ticks_until(e.time);
        self.sub.step(e);
        if let Some(fc) = &mut self.fc {
            fc.observe(e.time, if e.kind == EventKind::Create { 1 } else { -1 });
        }
    }
}

/// Replays one subdivision's events.
/// When the replay of a trace that opens at `first` starts: `lead_time` + 60 s before, so that a
/// policy can have shards ready for the first events.
fn start_of(first: Time, p: &Params) -> Time {
    first - p.lead_time - 60.0
}

/// Replays one subdivision's events; the trace opens at `first` (the replay starts
/// [`start_of`] it).
fn replay_sub(events: &[&VmEvent], policy: &Policy, p: &Params, first: Time) -> Acc {
    let start = start_of(first, p);
    let end = events.last().map_or(start, |e| e.time);
    let end_ticks = p.window.map_or(end, |(_, b)| b.max(end));
    let mut sub = match policy {
        Policy::Adaptive(a) => select(events, a, policy, p, first, end_ticks),
        Policy::Oracle => oracle(events, policy, p, start),
        _ => {
            let mut d = Driver::new(policy, p, start, end_ticks);
            for e in events {
                d.event(e);
            }
            d.ticks_until(end_ticks);
            d.sub
        }
    };
    sub.run_due(end_ticks);
    sub.advance(end_ticks);
    sub.acc
}

/// The adaptive policy's replay of one subdivision: every candidate runs in shadow on the same
/// events (each with its own shards, as if it alone served the subdivision), and the real pool
/// follows the candidate with the least recent cost (with `follow` k: the k cheapest): it claims
/// and releases so as to hold as many addresses as that candidate holds (the most any of them
/// holds). Every `epoch` seconds each candidate is charged what it cost since the last epoch, idle
/// address-seconds + `miss_cost` per miss, on a score that halves every `half_life` seconds; the
/// cheapest scores lead until the next epoch (the first candidates until the first). Scores start
/// once the trace has opened (after its first timestamp, whose creates are the VMs alive when it
/// opens: a state to load, not demand to learn from). Until its first VM the subdivision holds
/// `standby` shards besides. Strictly causal: scores, ticks and the real pool see only events
/// before `t`.
fn select<'a>(
    events: &[&'a VmEvent],
    a: &'a Adaptive,
    policy: &'a Policy,
    p: &Params,
    first: Time,
    end_ticks: Time,
) -> Sub<'a> {
    let start = start_of(first, p);
    let mut real = Sub::new(policy, p, start);
    let mut shadows: Vec<Driver<'a>> = a
        .experts
        .iter()
        .map(|x| Driver::new(x, p, start, end_ticks))
        .collect();
    let mut score = vec![0.0f64; shadows.len()];
    let mut charged = vec![0.0f64; shadows.len()];
    let decay = 0.5f64.powf(a.epoch / a.half_life);
    // The candidates followed: the `follow` cheapest (the first ones until the first epoch).
    let k = a.follow.clamp(1, shadows.len());
    let mut leaders: Vec<usize> = (0..k).collect();
    let mut next_epoch = start + a.epoch;
    let mut ev = 0usize;
    // Until its first VM, a subdivision holds `standby` of the smallest shards.
    let standby = a.standby * u64::from(p.min_shard_size);
    follow(&mut real, standby, start);
    let mut opened = false;
    loop {
        let floor = if ev == 0 { standby } else { 0 };
        let at_event = events.get(ev).map_or(f64::INFINITY, |e| e.time);
        let (ticker, at_tick) = shadows
            .iter()
            .enumerate()
            .filter_map(|(j, d)| d.next_tick().map(|t| (j, t)))
            .min_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap_or((0, f64::INFINITY));
        let at_epoch = if next_epoch <= end_ticks {
            next_epoch
        } else {
            f64::INFINITY
        };
        // The creates at the trace's first timestamp are the VMs alive when it opens, not
        // demand: scores start once they are in place.
        if !opened && at_event.min(at_tick).min(at_epoch) > first {
            for (j, d) in shadows.iter_mut().enumerate() {
                charged[j] = d.cost(first, a.miss_cost);
                score[j] = 0.0;
            }
            opened = true;
        }
        if at_epoch <= at_tick && at_epoch <= at_event {
            if at_epoch.is_infinite() {
                break;
            }
            for (j, d) in shadows.iter_mut().enumerate() {
                let cost = d.cost(at_epoch, a.miss_cost);
                score[j] = score[j] * decay + (cost - charged[j]);
                charged[j] = cost;
            }
            // The cheapest lead; a stable sort keeps the earlier candidate on a tie.
            let mut order: Vec<usize> = (0..score.len()).collect();
            order.sort_by(|&x, &y| score[x].total_cmp(&score[y]));
            leaders = order[..k].to_vec();
            let target = leaders_hold(&mut shadows, &leaders, at_epoch, floor);
            follow(&mut real, target, at_epoch);
            next_epoch += a.epoch;
        } else if at_tick <= at_event {
            shadows[ticker].run_tick(at_tick);
            if leaders.contains(&ticker) {
                let target = leaders_hold(&mut shadows, &leaders, at_tick, floor);
                follow(&mut real, target, at_tick);
            }
        } else {
            let e = events[ev];
            ev += 1;
            for d in &mut shadows {
                d.event(e);
            }
            // A miss of the real pool claims towards what the leaders hold after the event.
            let target = leaders_hold(&mut shadows, &leaders, e.time, floor);
            real.need = target as f64;
            real.step(e);
            follow(&mut real, target, e.time);
        }
    }
    real
}

/// What the leaders hold at `t` (the most of them), at least `floor`: the addresses the real pool
/// follows.
fn leaders_hold(shadows: &mut [Driver], leaders: &[usize], t: Time, floor: u64) -> u64 {
    let mut target = floor;
    for &j in leaders {
        shadows[j].sub.run_due(t);
        target = target.max(shadows[j].sub.held);
    }
    target
}

/// Brings the real pool at `t` to `target` addresses (what the leaders hold): claims (largest
/// aligned blocks first, within the deficit) or releases empty ready shards, highest first.
fn follow(real: &mut Sub, target: u64, t: Time) {
    real.run_due(t);
    real.advance(t);
    while real.held < target {
        real.claim(t, real.fill_order(target - real.held));
    }
    real.release_above(t, target as f64, false);
}

/// The oracle's replay of one subdivision (perfect foresight, tick 1 s).
fn oracle<'a>(events: &[&'a VmEvent], policy: &'a Policy, p: &Params, start: Time) -> Sub<'a> {
    let mut sub = Sub::new(policy, p, start);
    // Alive after each event, for the sliding maximum over [t, t + lead + 1).
    let mut alive = 0i64;
    let points: Vec<(Time, i64)> = events
        .iter()
        .map(|e| {
            alive += if e.kind == EventKind::Create { 1 } else { -1 };
            (e.time, alive)
        })
        .collect();
    let horizon = p.lead_time + 1.0;
    // Ticks where the target can change, or an emptied shard can go.
    let mut ticks: Vec<f64> = events
        .iter()
        .flat_map(|e| {
            [
                (e.time - horizon).floor() + 1.0,
                e.time.ceil(),
                e.time.floor() + 1.0,
            ]
        })
        .chain([start.ceil()])
        .filter(|t| *t >= start.ceil())
        .collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let mut window: VecDeque<usize> = VecDeque::new();
    let (mut head, mut tail) = (0usize, 0usize);
    let mut ev = 0usize;
    for &t in &ticks {
        // Events strictly before the tick happen first.
        sub.feed(events, &mut ev, t);
        // Points inside [t, t + horizon): alive just before t, and every change in it.
        while tail < points.len() && points[tail].0 < t + horizon {
            while window
                .back()
                .is_some_and(|&j| points[j].1 <= points[tail].1)
            {
                window.pop_back();
            }
            window.push_back(tail);
            tail += 1;
        }
        while head < points.len() && points[head].0 < t {
            head += 1;
        }
        while window.front().is_some_and(|&j| j < head) {
            window.pop_front();
        }
        let before = if head == 0 { 0 } else { points[head - 1].1 };
        let max = window
            .front()
            .map_or(before, |&j| points[j].1.max(before))
            .max(0) as u64;
        let size = u64::from(p.shard_size);
        sub.oracle_tick(t, max.div_ceil(size) * size);
    }
    for e in &events[ev..] {
        sub.step(e);
    }
    sub
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let k = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[k - 1]
}

fn report(accs: &[Acc], span: f64) -> Report {
    let creations: u64 = accs.iter().map(|a| a.creations).sum();
    let misses: u64 = accs.iter().map(|a| a.misses).sum();
    let mut waits: Vec<f64> = accs.iter().flat_map(|a| a.waits.iter().copied()).collect();
    let hours = span / 3600.0;
    let per = |x: f64| if span > 0.0 { x / span } else { 0.0 };
    let held: f64 = accs.iter().map(|a| a.held).sum();
    let used: f64 = accs.iter().map(|a| a.used).sum();
    let (claims, releases): (u64, u64) = (
        accs.iter().map(|a| a.claims).sum(),
        accs.iter().map(|a| a.releases).sum(),
    );
    let route_time: f64 = accs.iter().map(|a| a.span).sum();
    Report {
        creations,
        misses,
        miss_rate: if creations > 0 {
            misses as f64 / creations as f64
        } else {
            0.0
        },
        mean_wait_s: if waits.is_empty() {
            0.0
        } else {
            waits.iter().sum::<f64>() / waits.len() as f64
        },
        p99_wait_s: percentile(&mut waits, 0.99),
        mean_idle_addresses: per(accs.iter().map(|a| a.idle).sum()),
        mean_used_addresses: per(used),
        utilization: if held > 0.0 { used / held } else { 0.0 },
        shard_claims: claims,
        shard_releases: releases,
        claims_per_hour: if hours > 0.0 {
            claims as f64 / hours
        } else {
            0.0
        },
        releases_per_hour: if hours > 0.0 {
            releases as f64 / hours
        } else {
            0.0
        },
        routes_mean: if route_time > 0.0 {
            accs.iter().map(|a| a.routes).sum::<f64>() / route_time
        } else {
            0.0
        },
        routes_max: accs.iter().map(|a| a.routes_max).max().unwrap_or(0),
        mean_shard_size: {
            let shard_time: f64 = accs.iter().map(|a| a.shard_time).sum();
            if shard_time > 0.0 {
                held / shard_time
            } else {
                0.0
            }
        },
        per_subdivision: None,
    }
}

/// Every claim and release `policy` makes on `events`, in time order per subdivision.
pub fn decisions(
    events: &[VmEvent],
    policy: &Policy,
    p: &Params,
) -> Result<Vec<Decision>, SimError> {
    p.validate()?;
    let Some(first) = events.first() else {
        return Ok(Vec::new());
    };
    let mut by_sub: Vec<(&str, Vec<&VmEvent>)> = Vec::new();
    for e in events {
        match by_sub.iter_mut().find(|(s, _)| *s == e.subdivision) {
            Some((_, v)) => v.push(e),
            None => by_sub.push((e.subdivision.as_str(), vec![e])),
        }
    }
    let mut out = Vec::new();
    for (sub, evs) in by_sub {
        let acc = replay_sub(&evs, policy, p, first.time);
        out.extend(
            acc.log
                .into_iter()
                .map(|(time, shard, size, claim)| Decision {
                    time,
                    subdivision: sub.to_string(),
                    shard,
                    size,
                    claim,
                }),
        );
    }
    Ok(out)
}

/// Replays `events` (time-ordered) against `policy`.
pub fn replay(
    events: &[VmEvent],
    policy: &Policy,
    p: &Params,
    per_subdivision: bool,
) -> Result<Report, SimError> {
    p.validate()?;
    let Some(first) = events.first() else {
        return Err(SimError::Invalid {
            what: "trace",
            value: "(empty)".into(),
            reason: "no events to replay".into(),
        });
    };
    let start = start_of(first.time, p);
    let last = events.last().map_or(first.time, |e| e.time);
    let span = match p.window {
        Some((a, b)) => {
            if a.partial_cmp(&b) != Some(std::cmp::Ordering::Less) {
                return Err(SimError::Invalid {
                    what: "window",
                    value: format!("{a}:{b}"),
                    reason: "the start must come before the end".into(),
                });
            }
            b - a
        }
        None => last - start,
    };
    let mut by_sub: HashMap<&str, Vec<&VmEvent>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    for e in events {
        by_sub
            .entry(e.subdivision.as_str())
            .or_insert_with(|| {
                order.push(e.subdivision.as_str());
                Vec::new()
            })
            .push(e);
    }
    let accs = parallel_map(&order, |s| replay_sub(&by_sub[s], policy, p, first.time));
    let mut r = report(&accs, span);
    if per_subdivision {
        r.per_subdivision = Some(
            order
                .iter()
                .zip(&accs)
                .map(|(s, a)| (s.to_string(), report(std::slice::from_ref(a), span)))
                .collect(),
        );
    }
    Ok(r)
}

/// `f` over `items` on every core (subdivisions replay independently), in order.
pub(crate) fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    break;
                };
                let r = f(item);
                *out[i].lock().expect("no replay panics") = Some(r);
            });
        }
    });
    out.into_iter()
        .map(|m| {
            m.into_inner()
                .expect("no replay panics")
                .expect("every item ran")
        })
        .collect()
}
