//! Allocation policies: how many shards to hold, when to claim and when to release.

use std::str::FromStr;

use crate::SimError;

/// A policy with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// Calico IPAM: a block is claimed only when a create finds none with room; a block that has
    /// been empty for `release_delay` seconds is released. (Calico's IPAM releases empty affine
    /// blocks on its own schedule; the delay is the knob swept here.)
    OnDemand { release_delay: f64 },
    /// Perfect foresight (tick 1 s): holds ⌈max alive over [t, t + lead + 1 s) ÷ shard size⌉ shards
    /// and releases empty shards above that at once: zero misses with the least idle, the physical
    /// limit for a given shard size. For reference only.
    Oracle,
}

impl Policy {
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
            "oracle" => match params.first() {
                Some((k, _)) => Err(unknown(k, "(none)")),
                None => Ok(Policy::Oracle),
            },
            _ => Err(SimError::Invalid {
                what: "policy",
                value: name.to_string(),
                reason: "expected one of on-demand, oracle".into(),
            }),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &'static str {
        match self {
            Policy::OnDemand { .. } => "on-demand",
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
