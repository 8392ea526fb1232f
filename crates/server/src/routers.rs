//! The daemon's side of router configuration: `/v1/routers/{name}/config` renders a router's
//! configuration from the current shard set, and [`App::sync_routers`] deploys the configuration
//! of every router with a `config_path` whenever the shard set or the routers change (validated
//! by the daemon's parser, written atomically, reloaded; a failure keeps the previous file).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cidrcast_config::{Role, RouterSpec};
use cidrcast_router::{Applied, Format, RouterError};

use crate::app::App;
use crate::auth::Principal;
use crate::error::ServerError;

/// What the deployer remembers between runs.
#[derive(Default)]
pub struct RouterSync {
    inner: Mutex<SyncState>,
}

#[derive(Default)]
struct SyncState {
    /// The shard transitions counter and the routers at the last run.
    seen: Option<(u64, Vec<RouterSpec>)>,
    /// router → the text last deployed (or found deployed).
    deployed: BTreeMap<String, String>,
    /// When the last run had a failure: retried [`RETRY_AFTER`] later, or at the next change.
    failed_at: Option<Instant>,
}

/// How long after a failed deployment it is tried again when nothing changed.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// The outcome of deploying one router.
#[derive(Debug)]
pub struct SyncOutcome {
    pub router: String,
    pub result: Result<Applied, RouterError>,
}

impl From<RouterError> for ServerError {
    fn from(e: RouterError) -> Self {
        match e {
            RouterError::Policy { .. }
            | RouterError::NoConfigPath(_)
            | RouterError::Unwritable { .. } => ServerError::Unprocessable(e.to_string()),
            _ => ServerError::Unavailable(e.to_string()),
        }
    }
}

impl App {
    /// The configuration of router `name` in `format` (default: its flavor), rendered from the
    /// current shard set, and its content type. It lists every tenant's shards the router
    /// announces: readers with a global scope only.
    pub fn router_config(
        &self,
        p: &Principal,
        name: &str,
        format: Option<&str>,
    ) -> Result<(String, &'static str), ServerError> {
        p.require_global(Role::Reader, "reading router configurations")?;
        let router = self.router(p, name)?;
        let format = match format {
            None => Format::of(router.flavor),
            Some(f) => f.parse::<Format>().map_err(ServerError::BadRequest)?,
        };
        let intent = self
            .engine
            .read(|ipam| cidrcast_router::from_state(&router, ipam))??;
        Ok((format.renderer().render(&intent), format.content_type()))
    }

    /// Deploys the configuration of every router with a `config_path` when the shard set or the
    /// routers changed since the last run, or the last run failed (otherwise it returns at once
    /// with nothing). Rendering reads the state under the engine lock; validating, writing and
    /// reloading happen outside it.
    pub fn sync_routers(&self) -> Result<Vec<SyncOutcome>, ServerError> {
        let mut sync = self
            .router_sync
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let routers = self.engine.routers()?;
        let transitions = self.engine.read(|ipam| ipam.counters().shard_transitions)?;
        let changed = match &sync.seen {
            Some((t, r)) => *t != transitions || *r != routers,
            None => true,
        };
        let retry = sync.failed_at.is_some_and(|at| at.elapsed() >= RETRY_AFTER);
        if !changed && !retry {
            return Ok(Vec::new());
        }
        let deployable: Vec<&RouterSpec> =
            routers.iter().filter(|r| r.config_path.is_some()).collect();
        // One consistent view of the shard set for every router, copied under the engine lock;
        // intents are built and rendered outside it.
        let inputs = self.engine.read(cidrcast_router::Inputs::of)?;
        let rendered: Vec<_> = deployable
            .iter()
            .map(|r| {
                let item = inputs.intent(r).map(|i| {
                    let n = i.announcements.len();
                    let (text, validator) = cidrcast_router::render_deployable(&i);
                    (text, validator, n)
                });
                (*r, item)
            })
            .collect();
        let mut outcomes = Vec::new();
        let mut failed = false;
        for (router, item) in rendered {
            let (text, validator, prefixes) = match item {
                Ok(x) => x,
                Err(e) => {
                    failed = true;
                    self.metrics.router_apply(&router.name, "failed", None);
                    tracing::error!(router = %router.name, "router configuration not rendered: {e}");
                    outcomes.push(SyncOutcome {
                        router: router.name.clone(),
                        result: Err(e),
                    });
                    continue;
                }
            };
            if sync.deployed.get(&router.name) == Some(&text) {
                continue;
            }
            let result = cidrcast_router::apply(router, &text, validator.as_ref());
            match &result {
                Ok(applied) => {
                    let outcome = match applied {
                        Applied::Unchanged => "unchanged",
                        Applied::Written { .. } => "applied",
                    };
                    self.metrics
                        .router_apply(&router.name, outcome, Some(prefixes));
                    tracing::info!(router = %router.name, prefixes, outcome, "router configuration deployed");
                    sync.deployed.insert(router.name.clone(), text);
                }
                Err(e) => {
                    failed = true;
                    self.metrics.router_apply(&router.name, "failed", None);
                    tracing::error!(router = %router.name, "router configuration not deployed: {e}");
                }
            }
            outcomes.push(SyncOutcome {
                router: router.name.clone(),
                result,
            });
        }
        sync.deployed
            .retain(|name, _| routers.iter().any(|r| r.name == *name));
        sync.seen = Some((transitions, routers));
        sync.failed_at = failed.then(Instant::now);
        Ok(outcomes)
    }

    /// Refuses a router whose `config_path` the daemon could not write (checked when a router is
    /// created or replaced through the API, and at startup).
    pub fn check_router_writable(router: &RouterSpec) -> Result<(), ServerError> {
        cidrcast_router::check_writable(router).map_err(ServerError::from)
    }
}
