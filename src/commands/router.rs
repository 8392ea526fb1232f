//! `router list|render|diff|apply`: router configurations rendered from the shard set.

use anyhow::{bail, Result};
use cidrcast_core::model::RouterSpec;
use cidrcast_router::{Applied, Format, Intent};
use serde::Serialize;

use crate::context::Ctx;
use crate::output::{emit, Table};

/// The router named `name` from the store, and its intent over the current state.
fn load(ctx: &Ctx, name: &str) -> Result<(RouterSpec, Intent)> {
    let engine = ctx.engine()?;
    let routers = engine.routers()?;
    let Some(router) = routers.into_iter().find(|r| r.name == name) else {
        let known: Vec<String> = engine.routers()?.into_iter().map(|r| r.name).collect();
        bail!(
            "unknown router `{name}` (known: {}; routers are defined in the configuration file)",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let intent = engine.read(|ipam| cidrcast_router::from_state(&router, ipam))??;
    Ok((router, intent))
}

#[derive(Serialize)]
struct RouterRow {
    #[serde(flatten)]
    spec: RouterSpec,
    prefixes: usize,
    deployed: &'static str,
}

pub fn list(ctx: &Ctx) -> Result<()> {
    let engine = ctx.engine()?;
    let inputs = engine.read(cidrcast_router::Inputs::of)?;
    let mut rows = Vec::new();
    for r in engine.routers()? {
        let intent = inputs.intent(&r)?;
        let deployed = match r.config_path {
            None => "no config_path",
            Some(_) => {
                let (text, _) = cidrcast_router::render_deployable(&intent);
                match cidrcast_router::deployed(&r) {
                    Ok(None) => "not yet",
                    Ok(Some(d)) if d == text => "up to date",
                    Ok(Some(_)) => "differs",
                    Err(_) => "unreadable",
                }
            }
        };
        rows.push(RouterRow {
            prefixes: intent.announcements.len(),
            spec: r,
            deployed,
        });
    }
    emit(ctx.output, &rows, |rows| {
        let mut t = Table::new(&[
            "ROUTER",
            "FLAVOR",
            "ASN",
            "NEIGHBORS",
            "PREFIXES",
            "CONFIG",
            "DEPLOYED",
        ]);
        for r in rows {
            t.row(vec![
                r.spec.name.clone(),
                r.spec.flavor.to_string(),
                r.spec.asn.to_string(),
                r.spec.neighbors.len().to_string(),
                r.prefixes.to_string(),
                r.spec
                    .config_path
                    .as_ref()
                    .map_or("-".to_string(), |p| p.display().to_string()),
                r.deployed.to_string(),
            ]);
        }
        t.render()
    });
    Ok(())
}

/// Prints the configuration of `router` in `format` (default: the router's flavor).
pub fn render(ctx: &Ctx, router: &str, format: Option<&str>) -> Result<()> {
    let (spec, intent) = load(ctx, router)?;
    let format = match format {
        Some(f) => f.parse::<Format>().map_err(anyhow::Error::msg)?,
        None => Format::of(spec.flavor),
    };
    print!("{}", format.renderer().render(&intent));
    Ok(())
}

/// Prints the unified diff from the deployed configuration to the rendered one. Returns whether
/// the caller must exit with status 3: with `exit_code`, when they differ (errors exit 1).
pub fn diff(ctx: &Ctx, router: &str, exit_code: bool) -> Result<bool> {
    let (spec, intent) = load(ctx, router)?;
    let (text, _) = cidrcast_router::render_deployable(&intent);
    match cidrcast_router::diff(&spec, &text)? {
        None => {
            eprintln!(
                "router `{router}`: {} is up to date",
                spec.config_path
                    .as_deref()
                    .expect("diff needs it")
                    .display()
            );
            Ok(false)
        }
        Some(d) => {
            print!("{d}");
            Ok(exit_code)
        }
    }
}

#[derive(Serialize)]
struct ApplyReport<'a> {
    router: &'a str,
    config_path: String,
    outcome: &'static str,
    prefixes: usize,
}

/// Validates, writes and reloads the configuration of `router`.
pub fn apply(ctx: &Ctx, router: &str) -> Result<()> {
    let (spec, intent) = load(ctx, router)?;
    let (text, validator) = cidrcast_router::render_deployable(&intent);
    let outcome = match cidrcast_router::apply(&spec, &text, validator.as_ref())? {
        Applied::Unchanged => "unchanged",
        Applied::Written { reloaded: true } => "written and reloaded",
        Applied::Written { reloaded: false } => "written (no reload_command)",
    };
    let report = ApplyReport {
        router,
        config_path: spec
            .config_path
            .as_deref()
            .expect("apply needs it")
            .display()
            .to_string(),
        outcome,
        prefixes: intent.announcements.len(),
    };
    emit(ctx.output, &report, |r| {
        format!(
            "router `{}`: {} {} ({} prefixes)\n",
            r.router, r.config_path, r.outcome, r.prefixes
        )
    });
    Ok(())
}
