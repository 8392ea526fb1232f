//! [`apply`]: runs a plan's actions through the allocator, all or nothing.

use std::collections::BTreeMap;

use cidrcast_core::model::{Reason, ShardState, Time};
use cidrcast_core::{CoreError, Ipam};
use ipnet::IpNet;

use crate::error::PlannerError;
use crate::types::{Action, ActionKind, Applied, Plan};

/// A non-free shard as `apply` tracks it while it runs the actions.
struct Owned {
    subdivision: String,
    pool: String,
    state: ShardState,
    leases: u64,
}

/// Applies `plan` to `state` at time `now`: every action in order, through the allocator
/// (`claim_shard_sized` and `activate_shard` with [`Reason::Forecast`], `drain_shard` and
/// `release_shard` with [`Reason::Reclaim`]), so the journal of `state` records the changes for
/// the store to commit.
///
/// All or nothing: the actions run on a copy of the state, which replaces `state` only when every
/// one of them succeeded. Before each action, the shard must be what the plan saw (subdivision,
/// pool, state, leases), and a claim must land where the plan placed it; otherwise the error
/// ([`PlannerError::Stale`] or [`PlannerError::Core`]) names the action and `state` is left
/// exactly as it was. A plan is meant for the state it was made on: re-plan after any other
/// change.
pub fn apply(state: &mut Ipam, plan: &Plan, now: Time) -> Result<Applied, PlannerError> {
    let mut next = state.clone();
    let mut owned: BTreeMap<(String, IpNet), Owned> = next
        .shards(None)
        .expect("all shards")
        .into_iter()
        .map(|s| {
            (
                (s.record.pool.clone(), s.record.prefix),
                Owned {
                    subdivision: s.record.subdivision,
                    pool: s.record.pool,
                    state: s.record.state,
                    leases: s.leases,
                },
            )
        })
        .collect();
    let mut done = Applied::default();
    for (index, a) in plan.actions.iter().enumerate() {
        let stale = |message: String| PlannerError::Stale {
            index,
            kind: a.kind,
            prefix: a.prefix,
            subdivision: a.subdivision.clone(),
            message,
        };
        let core = |what: &str| {
            let action = format!("{what} {}", a.prefix);
            move |source: CoreError| PlannerError::Core {
                action,
                subdivision: a.subdivision.clone(),
                pool: a.pool.clone(),
                source: Box::new(source),
            }
        };
        let key = (a.pool.clone(), a.prefix);
        if a.kind != ActionKind::Reserve {
            check_owner(owned.get(&key), a).map_err(stale)?;
        }
        match a.kind {
            ActionKind::Reserve => {
                let rec = next
                    .claim_shard_sized(
                        &a.subdivision,
                        Some(&a.pool),
                        Some(a.prefix.prefix_len()),
                        Reason::Forecast,
                        now,
                    )
                    .map_err(core("reserve"))?;
                if rec.prefix != a.prefix {
                    return Err(stale(format!(
                        "the allocator placed the shard at {} instead",
                        rec.prefix
                    )));
                }
                owned.insert(
                    key,
                    Owned {
                        subdivision: rec.subdivision,
                        pool: rec.pool,
                        state: ShardState::Reserved,
                        leases: 0,
                    },
                );
                done.reserved.push(a.prefix);
            }
            ActionKind::Activate => {
                let rec = next
                    .activate_shard(&a.prefix, Reason::Forecast, now)
                    .map_err(core("activate"))?;
                if rec.pool != a.pool || rec.subdivision != a.subdivision {
                    return Err(stale(format!(
                        "the allocator activated the shard of `{}` in pool `{}`",
                        rec.subdivision, rec.pool
                    )));
                }
                owned.get_mut(&key).expect("checked").state = ShardState::Active;
                done.activated.push(a.prefix);
            }
            ActionKind::Drain => {
                match next
                    .drain_shard(&a.prefix, Reason::Reclaim, now)
                    .map_err(core("drain"))?
                {
                    Some(_) => {
                        owned.get_mut(&key).expect("checked").state = ShardState::Draining;
                        done.draining.push(a.prefix);
                    }
                    None => {
                        owned.remove(&key);
                        done.freed.push(a.prefix);
                    }
                }
            }
            ActionKind::Release => {
                next.release_shard(&a.prefix, Reason::Reclaim, now)
                    .map_err(core("release"))?;
                owned.remove(&key);
                done.freed.push(a.prefix);
            }
        }
    }
    *state = next;
    Ok(done)
}

/// Whether the shard of a non-reserve action is as the plan saw it.
fn check_owner(o: Option<&Owned>, a: &Action) -> Result<(), String> {
    let Some(o) = o else {
        return Err(format!(
            "no shard {} is claimed in pool `{}`",
            a.prefix, a.pool
        ));
    };
    if o.subdivision != a.subdivision || o.pool != a.pool {
        return Err(format!(
            "the shard belongs to subdivision `{}` in pool `{}`",
            o.subdivision, o.pool
        ));
    }
    if o.leases != a.leases {
        return Err(format!(
            "the shard holds {} lease(s), the plan saw {}",
            o.leases, a.leases
        ));
    }
    let expected: &[ShardState] = match a.kind {
        ActionKind::Reserve => &[],
        ActionKind::Activate => &[ShardState::Reserved, ShardState::Draining],
        ActionKind::Drain => &[ShardState::Active],
        ActionKind::Release => &[
            ShardState::Reserved,
            ShardState::Active,
            ShardState::Draining,
        ],
    };
    if !expected.contains(&o.state) {
        return Err(format!("the shard is {}", o.state));
    }
    if a.kind == ActionKind::Release && o.leases > 0 {
        return Err(format!("the shard holds {} lease(s)", o.leases));
    }
    Ok(())
}
