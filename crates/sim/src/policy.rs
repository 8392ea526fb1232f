//! Allocation policies: how many shards to hold, when to claim and when to release.

use std::str::FromStr;

use cidrcast_forecast::increase::IncreaseConfig;

use crate::SimError;

/// A policy with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Calico IPAM: a block is claimed only when a create finds none with room; a block that has
    /// been empty for `release_delay` seconds is released. (Calico's IPAM releases empty affine
    /// blocks on its own schedule; the delay is the knob swept here.)
    OnDemand { release_delay: f64 },
    /// AWS VPC CNI (ipamd): every 5 s, keep at least `warm_ip_target` free addresses and at least
    /// `minimum_ip_target` in all (rounded up to whole shards, as in prefix-delegation mode); a
    /// shard that has been empty for the 30 s cooldown is released when the targets still hold
    /// without it. (aws/amazon-vpc-cni-k8s docs: WARM_IP_TARGET, MINIMUM_IP_TARGET.)
    WarmTarget {
        warm_ip_target: f64,
        minimum_ip_target: f64,
    },
    /// Cilium ENI / multi-pool IPAM: keep `pre_allocate` addresses available above the used ones
    /// (default 8) and at least `min_allocate` in all; addresses more than `max_above_watermark`
    /// above the watermark are excess, released after the 180 s excess release delay. Checked
    /// every second. (cilium docs: pre-allocate, min-allocate, max-above-watermark,
    /// excess-ip-release-delay.)
    Watermark {
        pre_allocate: f64,
        min_allocate: f64,
        max_above_watermark: f64,
    },
    /// cidrcast's predictive policy, strictly causal. Every `tick` seconds, per subdivision, the
    /// short-horizon forecaster ([`cidrcast_forecast::increase`]) reads the subdivision's own past
    /// (events before the tick) and the planner holds enough shards for the alive count plus the
    /// forecast's `quantile` of the rise over the lead time and one tick: empirical samples at the
    /// same time of day on the last `days` days and over the last `recent` ticks, raised to what a
    /// cron-like period predicts. Releases look further: an empty shard goes only when the
    /// `keep_quantile` of the rise over `keep_horizon` would not need it (hysteresis). The
    /// prefetcher's feedback raises a subdivision's level after each of its misses and lowers it
    /// after each hit, steering it to `target_miss`.
    ///
    /// **Shard sizes.** It is the only policy that adapts them (when the replay's
    /// `min_shard_size < max_shard_size`; the others always claim `shard_size`). The subdivision's
    /// *need* is the address count it holds for: used + forecast rise (+ headroom and miss
    /// feedback). At each claim the policy picks the size that trades idle addresses against
    /// routes: the smallest power of two `s` in `[min_shard_size, max_shard_size]` with
    /// `s >= need / route_budget`, i.e. such that the need fits in at most `route_budget` shards
    /// of that size (more when `s` is clamped at the maximum). While the deficit (need − held
    /// addresses) is at least `s`, it claims shards of `s`; a smaller deficit is rounded up to whole
    /// `min_shard_size` units and topped up with smaller shards, largest first (need 70 from
    /// nothing with sizes 16 to 64: one 64 and one 16, not two 64s). A miss with nothing pending
    /// claims at once by the same rule, towards the last tick's need (at least used + 1). Each
    /// claim takes the lowest free aligned block of its size, so buddies still aggregate. Empty
    /// ready shards are released, highest address first, while the held addresses without them
    /// still cover the need, the release horizon's need, and `hysteresis` shards of size `s`.
    Predictive {
        quantile: f64,
        tick: f64,
        days: f64,
        recent: f64,
        /// Addresses added to the target.
        headroom: f64,
        /// Shards held above the target before empty ones are released.
        hysteresis: f64,
        /// Addresses added to a subdivision's target per recent miss of its own (the prefetcher's
        /// feedback: misses raise the margin where they happen, decaying with `miss_half_life`).
        per_miss: f64,
        miss_half_life: f64,
        /// Periodic detection: a rise predicted when each of the last `repeats` cycles of some
        /// period rose at this phase (0: off).
        repeats: f64,
        /// The miss rate the prefetcher steers each subdivision's level to (0: fixed level).
        target_miss: f64,
        /// How far one miss raises the level.
        gain: f64,
        /// Releases: a shard is kept while the `keep_quantile` of the rise over `keep_horizon`
        /// seconds would need it.
        keep_horizon: f64,
        keep_quantile: f64,
        /// Claims look at the rise over `[lead, lead + tick)` only (what a shard claimed now can
        /// serve) instead of `[0, lead + tick)`.
        claim_from_lead: bool,
        /// With adaptive shard sizes: the number of shards (routes) the need should fit in; a
        /// shard is at least need ÷ `route_budget` addresses (default 4, at least 1).
        route_budget: f64,
    },
    /// cidrcast's adaptive prefetcher: per subdivision, it runs candidate policies in shadow and
    /// follows the one with the least recent cost (see [`Adaptive`]).
    Adaptive(Adaptive),
    /// Perfect foresight (tick 1 s): holds ⌈max alive over [t, t + lead + 1 s) ÷ shard size⌉ shards
    /// and releases empty shards above that at once: zero misses with the least idle, the physical
    /// limit for a given shard size. It always claims `shard_size` (another fixed size is another
    /// `shard_size`). For reference only.
    Oracle,
}

/// The adaptive policy's knobs: learning with expert advice, per subdivision. Every candidate
/// (`experts`: predictive settings and reactive rules) replays the subdivision's events in shadow,
/// as if it alone served them; the subdivision's real pool holds as many addresses as the current
/// leader holds. Every `epoch` seconds each candidate is charged its idle address-seconds plus
/// `miss_cost` address-seconds per miss since the last epoch, on a score that halves every
/// `half_life` seconds, and the cheapest becomes the leader. So a quiet subdivision follows a lean
/// reactive rule and a bursty one a forecast with a margin, and either changes when its workload
/// does. `miss_cost` prices a miss against idle space (the Lagrange multiplier of the miss-rate
/// target): a higher price buys fewer misses with more idle addresses.
#[derive(Clone, Debug, PartialEq)]
pub struct Adaptive {
    pub experts: Vec<Policy>,
    /// Address-seconds one miss costs.
    pub miss_cost: f64,
    pub half_life: f64,
    pub epoch: f64,
    /// How many of the cheapest candidates the pool follows (it holds the most any of them holds).
    pub follow: usize,
    /// Shards (of the smallest size) a subdivision holds before its first VM, as an operator
    /// readies a new zone or tenant network before anything lands on it: its first VMs find
    /// addresses, where a lean candidate would make them wait a lead time.
    pub standby: u64,
}

/// The adaptive policy's default candidates: on-demand at 7 release delays, warm-target 1, 4 and
/// 16, and 7 predictive settings from the sweep grid (`name key=value ...`, `;`-separated, the
/// syntax of its `experts` parameter).
pub const DEFAULT_EXPERTS: &str = "on-demand release_delay=0; on-demand release_delay=300; \
on-demand release_delay=1800; on-demand release_delay=3600; on-demand release_delay=7200; \
on-demand release_delay=14400; on-demand release_delay=86400; \
warm-target warm_ip_target=1; warm-target warm_ip_target=4; warm-target warm_ip_target=16; \
predictive quantile=0.5; predictive quantile=0.9; predictive quantile=0.9 keep_horizon=1800; \
predictive quantile=0.9 keep_horizon=3600; \
predictive quantile=0.95 keep_horizon=7200 target_miss=0.002 gain=0.05 tick=20 recent=90; \
predictive quantile=0.99 keep_horizon=3600 hysteresis=1; predictive quantile=0.9 tick=10 recent=180";

impl Policy {
    /// Parses one setting written `NAME key=value ...` (whitespace-separated), as the sweep grid
    /// and the adaptive policy's `experts` parameter write them.
    pub fn parse_setting(setting: &str) -> Result<Policy, SimError> {
        let mut words = setting.split_whitespace();
        let Some(name) = words.next() else {
            return Err(SimError::Invalid {
                what: "setting",
                value: format!("{setting:?}"),
                reason: "expected `NAME key=value ...`".into(),
            });
        };
        let params = words
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => Ok((k.to_string(), v.to_string())),
                None => Err(SimError::Invalid {
                    what: "setting",
                    value: format!("{setting:?}"),
                    reason: format!("`{kv}` is not key=value"),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Policy::parse(name, &params)
    }

    /// Parses `NAME` with `key=value` parameters, naming any unknown policy or parameter.
    pub fn parse(name: &str, params: &[(String, String)]) -> Result<Policy, SimError> {
        let num = |key: &str, v: &str| -> Result<f64, SimError> {
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
                _ => Err(SimError::Invalid {
                    what: "parameter",
                    value: format!("{key}={v}"),
                    reason: "expected a number >= 0".into(),
                }),
            }
        };
        let unknown = |key: &str, accepted: &str| SimError::Invalid {
            what: "parameter",
            value: key.to_string(),
            reason: format!("policy `{name}` accepts: {accepted}"),
        };
        match name {
            "on-demand" => {
                let mut release_delay = 0.0;
                for (k, v) in params {
                    match k.as_str() {
                        "release_delay" => release_delay = num(k, v)?,
                        _ => return Err(unknown(k, "release_delay")),
                    }
                }
                Ok(Policy::OnDemand { release_delay })
            }
            "warm-target" => {
                let (mut warm, mut min) = (0.0, 0.0);
                for (k, v) in params {
                    match k.as_str() {
                        "warm_ip_target" => warm = num(k, v)?,
                        "minimum_ip_target" => min = num(k, v)?,
                        _ => return Err(unknown(k, "warm_ip_target, minimum_ip_target")),
                    }
                }
                Ok(Policy::WarmTarget {
                    warm_ip_target: warm,
                    minimum_ip_target: min,
                })
            }
            "watermark" => {
                let (mut pre, mut min, mut above) = (8.0, 0.0, 0.0);
                for (k, v) in params {
                    match k.as_str() {
                        "pre_allocate" => pre = num(k, v)?,
                        "min_allocate" => min = num(k, v)?,
                        "max_above_watermark" => above = num(k, v)?,
                        _ => {
                            return Err(unknown(
                                k,
                                "pre_allocate, min_allocate, max_above_watermark",
                            ))
                        }
                    }
                }
                Ok(Policy::Watermark {
                    pre_allocate: pre,
                    min_allocate: min,
                    max_above_watermark: above,
                })
            }
            "predictive" => {
                let (mut quantile, mut tick, mut days, mut recent) = (0.9, 60.0, 7.0, 30.0);
                let (mut headroom, mut hysteresis) = (0.0, 0.0);
                let (mut per_miss, mut miss_half_life) = (0.0, 21600.0);
                let (mut repeats, mut target_miss, mut gain) = (3.0, 0.0, 0.05);
                let (mut keep_horizon, mut keep_quantile) = (0.0, 0.9);
                let mut claim_from_lead = 0.0;
                let mut route_budget = 4.0;
                for (k, v) in params {
                    match k.as_str() {
                        "quantile" => quantile = num(k, v)?,
                        "tick" => tick = num(k, v)?,
                        "days" => days = num(k, v)?,
                        "recent" => recent = num(k, v)?,
                        "headroom" => headroom = num(k, v)?,
                        "hysteresis" => hysteresis = num(k, v)?,
                        "per_miss" => per_miss = num(k, v)?,
                        "miss_half_life" => miss_half_life = num(k, v)?,
                        "repeats" => repeats = num(k, v)?,
                        "target_miss" => target_miss = num(k, v)?,
                        "gain" => gain = num(k, v)?,
                        "keep_horizon" => keep_horizon = num(k, v)?,
                        "keep_quantile" => keep_quantile = num(k, v)?,
                        "claim_from_lead" => claim_from_lead = num(k, v)?,
                        "route_budget" => route_budget = num(k, v)?,
                        _ => {
                            return Err(unknown(
                                k,
                                "quantile, tick, days, recent, headroom, hysteresis, per_miss, miss_half_life, repeats, target_miss, gain, keep_horizon, keep_quantile, claim_from_lead, route_budget",
                            ))
                        }
                    }
                }
                if route_budget < 1.0 {
                    return Err(SimError::Invalid {
                        what: "parameter",
                        value: format!("route_budget={route_budget}"),
                        reason: "expected a number of shards >= 1".into(),
                    });
                }
                if !(quantile > 0.0 && quantile <= 1.0) || tick <= 0.0 {
                    return Err(SimError::Invalid {
                        what: "parameter",
                        value: format!("quantile={quantile} tick={tick}"),
                        reason: "quantile must lie in (0, 1] and tick be positive".into(),
                    });
                }
                Ok(Policy::Predictive {
                    quantile,
                    tick,
                    days,
                    recent,
                    headroom,
                    hysteresis,
                    per_miss,
                    miss_half_life,
                    repeats,
                    target_miss,
                    gain,
                    keep_horizon,
                    keep_quantile,
                    claim_from_lead: claim_from_lead > 0.0,
                    route_budget,
                })
            }
            "adaptive" => {
                let mut experts = DEFAULT_EXPERTS.to_string();
                let (mut miss_cost, mut half_life, mut epoch) = (28.0 * 3600.0, 259200.0, 600.0);
                let (mut follow, mut standby) = (1.0, 0.0);
                for (k, v) in params {
                    match k.as_str() {
                        "experts" => experts = v.clone(),
                        // Address-hours per miss.
                        "miss_cost" => miss_cost = num(k, v)? * 3600.0,
                        "half_life" => half_life = num(k, v)?,
                        "epoch" => epoch = num(k, v)?,
                        "follow" => follow = num(k, v)?,
                        "standby" => standby = num(k, v)?,
                        _ => {
                            return Err(unknown(
                                k,
                                "experts, miss_cost, half_life, epoch, follow, standby",
                            ))
                        }
                    }
                }
                if follow.fract() != 0.0 || standby.fract() != 0.0 {
                    return Err(SimError::Invalid {
                        what: "parameter",
                        value: format!("follow={follow} standby={standby}"),
                        reason: "both must be whole numbers".into(),
                    });
                }
                if epoch <= 0.0 || half_life <= 0.0 {
                    return Err(SimError::Invalid {
                        what: "parameter",
                        value: format!("epoch={epoch} half_life={half_life}"),
                        reason: "both must be positive numbers of seconds".into(),
                    });
                }
                let experts = experts
                    .split(';')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| match Policy::parse_setting(s)? {
                        Policy::Adaptive(_) | Policy::Oracle => Err(SimError::Invalid {
                            what: "parameter",
                            value: format!("experts={}", s.trim()),
                            reason: "a candidate must be a causal policy: on-demand, warm-target, watermark or predictive".into(),
                        }),
                        x => Ok(x),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if experts.is_empty() {
                    return Err(SimError::Invalid {
                        what: "parameter",
                        value: "experts=".into(),
                        reason: "expected at least one candidate".into(),
                    });
                }
                Ok(Policy::Adaptive(Adaptive {
                    experts,
                    miss_cost,
                    half_life,
                    epoch,
                    follow: follow as usize,
                    standby: standby as u64,
                }))
            }
            "oracle" => match params.first() {
                Some((k, _)) => Err(unknown(k, "(none)")),
                None => Ok(Policy::Oracle),
            },
            _ => Err(SimError::Invalid {
                what: "policy",
                value: name.to_string(),
                reason:
                    "expected one of on-demand, warm-target, watermark, predictive, adaptive, oracle"
                        .into(),
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::OnDemand { .. } => "on-demand",
            Policy::WarmTarget { .. } => "warm-target",
            Policy::Watermark { .. } => "watermark",
            Policy::Predictive { .. } => "predictive",
            Policy::Adaptive(_) => "adaptive",
            Policy::Oracle => "oracle",
        }
    }
}

impl FromStr for Policy {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::parse(s, &[])
    }
}

impl Policy {
    /// Seconds between the checks of a reactive pool policy (`None`: event-driven or oracle).
    pub fn tick(&self) -> Option<f64> {
        match self {
            Policy::WarmTarget { .. } => Some(5.0),
            Policy::Watermark { .. } => Some(1.0),
            Policy::Predictive { tick, .. } => Some(*tick),
            _ => None,
        }
    }

    /// The short-horizon forecaster the predictive policy runs at a lead time of `lead` seconds:
    /// window 0 for claims (`[0 or lead, lead + tick)`), window 1 for releases
    /// (`[0, max(keep_horizon, lead + tick))`). `None` for the other policies.
    pub fn increase_config(&self, lead: f64) -> Option<IncreaseConfig> {
        let Policy::Predictive {
            tick,
            days,
            recent,
            repeats,
            keep_horizon,
            claim_from_lead,
            ..
        } = *self
        else {
            return None;
        };
        Some(IncreaseConfig::for_lead(
            lead,
            tick,
            keep_horizon,
            days as usize,
            recent as usize,
            repeats as usize,
            claim_from_lead,
        ))
    }

    /// Seconds a shard must have been empty before a pool policy may release it.
    pub fn release_cooldown(&self) -> f64 {
        match self {
            Policy::WarmTarget { .. } => 30.0,
            Policy::Watermark { .. } => 180.0,
            Policy::OnDemand { release_delay } => *release_delay,
            Policy::Oracle | Policy::Predictive { .. } | Policy::Adaptive(_) => 0.0,
        }
    }
}
