//! Scheduled external events applied to forecasts.
//!
//! An [`ExternalEventSpec`] says that, during `[start, end)`, the subdivisions in its scope will
//! run `extra_vms` more VMs and/or `multiplier` times what their history predicts. This module is
//! pure: given a subdivision, its ancestors, the start time of each forecast step and the step
//! width, [`effects`] returns for each step the [`Effect`] to apply, and [`apply`] applies it to a
//! forecast value (a point forecast or an interval bound alike).
//!
//! Rules:
//! * **Scope**: an event applies to the subdivision it names and to every descendant of it (a
//!   region's event reaches its zones and racks), or to every subdivision when its scope is `"*"`.
//!   It never applies to a sibling or an ancestor of the subdivision it names.
//! * **Time**: a step is `[t, t + step)`; an event covers it when the two windows overlap on an
//!   interval of positive length, i.e. `event.start < t + step && event.end > t`. **A partial
//!   overlap counts**: addresses must cover peaks, and an event that is on for a part of a step
//!   raises the peak of that step. So an event ending exactly at `t` or starting exactly at
//!   `t + step` does not cover the step. (A step width of zero or less is read as the instant `t`:
//!   covered when `start <= t < end`.)
//! * **Combination**: the events covering one step multiply their multipliers and add their
//!   extras; the value becomes `value * multiplier + extra` ([`apply`]): the multipliers scale the
//!   history's forecast, the extras are added on top and are not scaled.
//! * Events that fail [`ExternalEventSpec::validate`] (a non-finite or non-positive number, an
//!   empty window, no effect) are ignored rather than poisoning a forecast with NaN; the engine
//!   and the configuration refuse them before they are stored.

use cidrcast_core::model::{ExternalEventSpec, SubdivisionSpec, Time};
use serde::Serialize;

/// What the events covering one step do to its forecast: `value * multiplier + extra`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Effect {
    /// Product of the multipliers of the covering events (1 when none has one).
    pub multiplier: f64,
    /// Sum of the extra VMs of the covering events (0 when none has any).
    pub extra: f64,
}

impl Effect {
    /// No event: the forecast unchanged.
    pub const NONE: Effect = Effect {
        multiplier: 1.0,
        extra: 0.0,
    };

    /// The effect of one event on its own.
    pub fn of(event: &ExternalEventSpec) -> Effect {
        Effect {
            multiplier: event.multiplier.unwrap_or(1.0),
            extra: event.extra_vms.unwrap_or(0.0),
        }
    }

    /// Both effects at once: multipliers multiply, extras add.
    pub fn combine(self, other: Effect) -> Effect {
        Effect {
            multiplier: self.multiplier * other.multiplier,
            extra: self.extra + other.extra,
        }
    }

    /// Whether this is [`Effect::NONE`].
    pub fn is_none(self) -> bool {
        self == Effect::NONE
    }

    /// `value * multiplier + extra`.
    pub fn apply(self, value: f64) -> f64 {
        value * self.multiplier + self.extra
    }
}

impl Default for Effect {
    fn default() -> Self {
        Effect::NONE
    }
}

impl From<Effect> for (f64, f64) {
    /// `(multiplier, extra)`.
    fn from(e: Effect) -> (f64, f64) {
        (e.multiplier, e.extra)
    }
}

/// `value * effect.multiplier + effect.extra`.
pub fn apply(value: f64, effect: Effect) -> f64 {
    effect.apply(value)
}

/// Applies `effects[i]` to `values[i]` (for every `i` both have; a longer `values` keeps its tail).
pub fn apply_all(values: &mut [f64], effects: &[Effect]) {
    for (v, e) in values.iter_mut().zip(effects) {
        *v = e.apply(*v);
    }
}

/// Whether `event` applies to `subdivision`, whose ancestors (parent, grandparent, ..., in any
/// order) are `ancestors`: its scope is `"*"`, the subdivision itself or one of its ancestors.
pub fn in_scope<A: AsRef<str>>(
    event: &ExternalEventSpec,
    subdivision: &str,
    ancestors: &[A],
) -> bool {
    event.is_global()
        || event.scope == subdivision
        || ancestors.iter().any(|a| a.as_ref() == event.scope)
}

/// Whether `event`'s window covers the step `[step_start, step_start + step)` (any overlap of
/// positive length; see the module docs).
pub fn covers(event: &ExternalEventSpec, step_start: Time, step: f64) -> bool {
    if step > 0.0 {
        event.start < step_start + step && event.end > step_start
    } else {
        event.start <= step_start && step_start < event.end
    }
}

/// For each step starting at `step_starts[i]` and `step` seconds wide, the combined effect of the
/// `events` that apply to `subdivision` (with ancestors `ancestors`) and cover the step;
/// [`Effect::NONE`] where none does. Invalid events are ignored (see the module docs).
pub fn effects<A: AsRef<str>>(
    subdivision: &str,
    ancestors: &[A],
    step_starts: &[Time],
    step: f64,
    events: &[ExternalEventSpec],
) -> Vec<Effect> {
    let relevant: Vec<&ExternalEventSpec> = events
        .iter()
        .filter(|e| e.validate().is_ok() && in_scope(e, subdivision, ancestors))
        .collect();
    step_starts
        .iter()
        .map(|&t| {
            relevant
                .iter()
                .filter(|e| covers(e, t, step))
                .fold(Effect::NONE, |acc, e| acc.combine(Effect::of(e)))
        })
        .collect()
}

/// The ancestors of `subdivision` in `subdivisions`, nearest first (parent, grandparent, ...).
/// Stops at an unknown parent, and at a parent cycle (which the configuration and the allocator
/// refuse) instead of looping.
pub fn ancestors(subdivision: &str, subdivisions: &[SubdivisionSpec]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut at = subdivision;
    while let Some(parent) = subdivisions
        .iter()
        .find(|s| s.name == at)
        .and_then(|s| s.parent.as_deref())
    {
        if parent == subdivision || out.iter().any(|a| a == parent) {
            break;
        }
        out.push(parent.to_string());
        at = parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, scope: &str, start: f64, end: f64) -> ExternalEventSpec {
        ExternalEventSpec {
            name: name.to_string(),
            start,
            end,
            scope: scope.to_string(),
            extra_vms: Some(10.0),
            multiplier: None,
        }
    }

    fn mult(name: &str, scope: &str, start: f64, end: f64, m: f64) -> ExternalEventSpec {
        ExternalEventSpec {
            extra_vms: None,
            multiplier: Some(m),
            ..event(name, scope, start, end)
        }
    }

    const NO_ANCESTORS: &[&str] = &[];

    /// Steps of 10 s starting at 0, 10, 20, 30.
    fn steps() -> Vec<f64> {
        vec![0.0, 10.0, 20.0, 30.0]
    }

    fn extras(effects: &[Effect]) -> Vec<f64> {
        effects.iter().map(|e| e.extra).collect()
    }

    #[test]
    fn scope_by_name_by_ancestor_and_star_but_not_another_subdivision() {
        let ev = |scope: &str| vec![event("e", scope, 0.0, 40.0)];
        let ancestors = ["eu-a", "eu"];
        // The rack itself, its zone, its region, everything.
        for scope in ["eu-a-r1", "eu-a", "eu", "*"] {
            let got = effects("eu-a-r1", &ancestors, &steps(), 10.0, &ev(scope));
            assert_eq!(extras(&got), vec![10.0; 4], "scope {scope}");
        }
        // A sibling zone, a sibling rack, a child of the subdivision: not in scope.
        for scope in ["eu-b", "eu-a-r2", "eu-a-r1-h1", "EU"] {
            let got = effects("eu-a-r1", &ancestors, &steps(), 10.0, &ev(scope));
            assert!(got.iter().all(|e| e.is_none()), "scope {scope}: {got:?}");
        }
        // An event on a rack does not reach its zone.
        let got = effects("eu-a", &["eu"], &steps(), 10.0, &ev("eu-a-r1"));
        assert!(got.iter().all(|e| e.is_none()));
        assert!(in_scope(&ev("x")[0], "x", NO_ANCESTORS));
        assert!(!in_scope(&ev("x")[0], "y", NO_ANCESTORS));
    }

    #[test]
    fn window_edges_partial_overlap_counts_touching_does_not() {
        let at = |start: f64, end: f64| {
            extras(&effects(
                "s",
                NO_ANCESTORS,
                &steps(),
                10.0,
                &[event("e", "s", start, end)],
            ))
        };
        // Exactly one step: it starts where step 0 ends and ends where step 2 starts, and
        // touches neither.
        assert_eq!(at(10.0, 20.0), vec![0.0, 10.0, 0.0, 0.0]);
        // A part of a step is enough (peaks matter), on either side.
        assert_eq!(at(15.0, 16.0), vec![0.0, 10.0, 0.0, 0.0]);
        assert_eq!(at(9.5, 20.5), vec![10.0, 10.0, 10.0, 0.0]);
        // Touching a step at one instant is no overlap.
        assert_eq!(at(20.0, 30.0), vec![0.0, 0.0, 10.0, 0.0]);
        assert_eq!(at(-5.0, 0.0), vec![0.0; 4]);
        assert_eq!(at(40.0, 50.0), vec![0.0; 4]);
        // Longer than the horizon.
        assert_eq!(at(-100.0, 1e9), vec![10.0; 4]);
        // Just inside the last step.
        assert_eq!(at(39.999, 45.0), vec![0.0, 0.0, 0.0, 10.0]);
        // Steps need not be regular, and a zero width is an instant.
        let e = [event("e", "s", 10.0, 20.0)];
        assert_eq!(
            extras(&effects(
                "s",
                NO_ANCESTORS,
                &[5.0, 10.0, 19.9, 20.0],
                0.0,
                &e
            )),
            vec![0.0, 10.0, 10.0, 0.0]
        );
        assert!(covers(&e[0], 19.0, 1.0));
        assert!(!covers(&e[0], 20.0, 1.0));
        assert!(!covers(&e[0], 9.0, 1.0));
        assert!(covers(&e[0], 9.0, 1.5));
    }

    #[test]
    fn two_events_multiply_multipliers_and_add_extras() {
        let events = [
            ExternalEventSpec {
                multiplier: Some(2.0),
                ..event("a", "eu", 0.0, 20.0)
            },
            ExternalEventSpec {
                extra_vms: Some(5.0),
                multiplier: Some(1.5),
                ..event("b", "*", 10.0, 30.0)
            },
            mult("c", "eu-a", 10.0, 20.0, 0.5),
            // Out of scope: ignored.
            mult("d", "us", 0.0, 40.0, 100.0),
        ];
        let got = effects("eu-a", &["eu"], &steps(), 10.0, &events);
        let tuples: Vec<(f64, f64)> = got.iter().map(|&e| e.into()).collect();
        assert_eq!(
            tuples,
            vec![(2.0, 10.0), (1.5, 15.0), (1.5, 5.0), (1.0, 0.0)],
            "step 1: 2 * 1.5 * 0.5 and 10 + 5 (c adds no extra)"
        );
        // value * multiplier + extra: extras are not scaled.
        assert_eq!(apply(100.0, got[0]), 210.0);
        assert_eq!(apply(100.0, got[1]), 165.0);
        assert_eq!(apply(100.0, got[3]), 100.0);
        let mut values = vec![100.0, 100.0, 100.0, 100.0, 7.0];
        apply_all(&mut values, &got);
        assert_eq!(values, vec![210.0, 165.0, 155.0, 100.0, 7.0]);
        // The order of the events does not matter.
        let mut reversed = events.to_vec();
        reversed.reverse();
        assert_eq!(effects("eu-a", &["eu"], &steps(), 10.0, &reversed), got);
    }

    #[test]
    fn invalid_events_are_ignored() {
        let events = [
            mult("zero", "*", 0.0, 40.0, 0.0),
            mult("nan", "*", 0.0, 40.0, f64::NAN),
            event("backwards", "*", 30.0, 10.0),
            ExternalEventSpec {
                extra_vms: Some(-3.0),
                ..event("negative", "*", 0.0, 40.0)
            },
        ];
        let got = effects("s", NO_ANCESTORS, &steps(), 10.0, &events);
        assert!(got.iter().all(|e| e.is_none()), "{got:?}");
        assert!(effects("s", NO_ANCESTORS, &[], 10.0, &events).is_empty());
        assert_eq!(Effect::default(), Effect::NONE);
    }

    #[test]
    fn ancestors_nearest_first_and_safe_on_cycles() {
        let sub = |name: &str, parent: Option<&str>| SubdivisionSpec {
            parent: parent.map(str::to_string),
            ..SubdivisionSpec::new(name)
        };
        let subs = [
            sub("eu", None),
            sub("eu-a", Some("eu")),
            sub("eu-a-r1", Some("eu-a")),
            sub("loop-a", Some("loop-b")),
            sub("loop-b", Some("loop-a")),
            sub("orphan", Some("gone")),
        ];
        assert_eq!(ancestors("eu-a-r1", &subs), vec!["eu-a", "eu"]);
        assert!(ancestors("eu", &subs).is_empty());
        assert!(ancestors("unknown", &subs).is_empty());
        assert_eq!(ancestors("loop-a", &subs), vec!["loop-b"]);
        assert_eq!(ancestors("orphan", &subs), vec!["gone"]);
        // With the helper, a region's event reaches the rack.
        let a = ancestors("eu-a-r1", &subs);
        let got = effects("eu-a-r1", &a, &[0.0], 10.0, &[event("e", "eu", 0.0, 1.0)]);
        assert_eq!(got[0].extra, 10.0);
    }
}
