//! `event add`, `event list`, `event remove`: scheduled external events that forecasts reflect.
//!
//! Events named in an explicit configuration file belong to the file: each run with it creates
//! them, or replaces the stored ones when they differ (see `Ctx::engine`). So `event add` and
//! `event remove` refuse to change an event the file defines (the change would be undone by the
//! next run); change the file instead.

use anyhow::{bail, Result};
use cidrcast_core::model::ExternalEventSpec;
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

/// Arguments of `event add`, as typed (numbers are parsed here, so that a malformed one is a
/// one-line error naming the option, like every other refusal).
pub struct EventAdd {
    pub name: String,
    pub start: String,
    pub end: String,
    pub scope: String,
    pub extra_vms: Option<String>,
    pub multiplier: Option<String>,
}

fn number(option: &str, value: &str) -> Result<f64> {
    value
        .trim()
        .parse::<f64>()
        .map_err(|_| anyhow::anyhow!("{option} = {value:?}: not a number"))
}

#[derive(Serialize)]
struct Added {
    /// `created`, `replaced` or `unchanged`.
    action: &'static str,
    #[serde(flatten)]
    event: ExternalEventSpec,
    /// The event it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    previous: Option<ExternalEventSpec>,
}

/// Refuses to change an event that the explicit configuration file defines.
fn check_not_from_config(ctx: &Ctx, name: &str, action: &str) -> Result<()> {
    if let (Some(path), Some(_)) = (&ctx.config_path, ctx.config.event(name)) {
        bail!(
            "event `{name}` is defined in the configuration file {}; {action} it there (the \
             file's events replace the stored ones each time it is used)",
            path.display()
        );
    }
    Ok(())
}

pub fn add(ctx: &Ctx, a: EventAdd) -> Result<()> {
    let spec = ExternalEventSpec {
        name: a.name,
        start: number("--start", &a.start)?,
        end: number("--end", &a.end)?,
        scope: a.scope,
        extra_vms: a.extra_vms.map(|x| number("--extra-vms", &x)).transpose()?,
        multiplier: a
            .multiplier
            .map(|m| number("--multiplier", &m))
            .transpose()?,
    };
    // Checked before the store is opened: bad input leaves it untouched.
    spec.validate()?;
    if ctx.config.event(&spec.name) != Some(&spec) {
        check_not_from_config(ctx, &spec.name, "change")?;
    }
    let engine = ctx.engine()?;
    let previous = engine.put_event(spec.clone())?;
    let action = match &previous {
        None => "created",
        Some(p) if *p == spec => "unchanged",
        Some(_) => "replaced",
    };
    let out = Added {
        action,
        event: spec,
        previous: previous.filter(|_| action == "replaced"),
    };
    emit(ctx.output, &out, |o| {
        format!(
            "{} event `{}`: {} in {}, {}\n",
            o.action,
            o.event.name,
            window(&o.event),
            scope(&o.event),
            effect(&o.event)
        )
    });
    Ok(())
}

pub fn list(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    let rows = engine.events()?;
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&[
            "EVENT",
            "START",
            "END",
            "DURATION",
            "SCOPE",
            "EXTRA VMS",
            "MULTIPLIER",
        ]);
        for e in rows {
            t.row(vec![
                e.name.clone(),
                e.start.to_string(),
                e.end.to_string(),
                duration(e.end - e.start),
                e.scope.clone(),
                e.extra_vms.map_or("-".into(), |x| x.to_string()),
                e.multiplier.map_or("-".into(), |m| m.to_string()),
            ]);
        }
        t.render()
    });
    Ok(())
}

#[derive(Serialize)]
struct Removed {
    removed: ExternalEventSpec,
}

pub fn remove(ctx: &Ctx, name: &str) -> Result<()> {
    check_not_from_config(ctx, name, "remove")?;
    let engine = ctx.engine()?;
    let removed = engine.delete_event(name)?;
    emit(ctx.output, &Removed { removed }, |r| {
        format!("removed event `{}`\n", r.removed.name)
    });
    Ok(())
}

fn window(e: &ExternalEventSpec) -> String {
    format!("[{}, {}) ({})", e.start, e.end, duration(e.end - e.start))
}

fn scope(e: &ExternalEventSpec) -> String {
    if e.is_global() {
        "every subdivision".into()
    } else {
        format!("`{}` and its descendants", e.scope)
    }
}

fn effect(e: &ExternalEventSpec) -> String {
    match (e.multiplier, e.extra_vms) {
        (Some(m), Some(x)) => format!("forecast x {m} + {x} VMs"),
        (Some(m), None) => format!("forecast x {m}"),
        (None, Some(x)) => format!("forecast + {x} VMs"),
        (None, None) => "no effect".into(),
    }
}

/// `90s`, `15m`, `12h`, `3d`, or seconds when no unit divides it.
fn duration(s: f64) -> String {
    for (unit, secs) in [("d", 86_400.0), ("h", 3_600.0), ("m", 60.0)] {
        if s >= secs && (s / secs).fract() == 0.0 {
            return format!("{}{unit}", s / secs);
        }
    }
    format!("{s}s")
}
