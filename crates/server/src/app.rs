//! The application layer of the daemon: every operation of the API as a plain (blocking) method,
//! with authorisation and scope checks. The HTTP handlers only parse, call one method, and
//! serialise its result.

use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cidrcast_config::{
    ExternalEventSpec, PoolSpec, Profile, Role, RouterSpec, ServerSettings, SubdivisionSpec,
};
use cidrcast_core::model::{EventKind, LeaseRecord, Reason, ShardState, VmEvent};
use cidrcast_core::{AllocPath, CoreError, Ipam};
use cidrcast_engine::{Engine, EngineError, Ticket};
use cidrcast_store::Store;
use cidrcast_trace::{ReadOptions, TraceReader};
use ipnet::IpNet;

use crate::api;
use crate::auth::{Auth, Principal};
use crate::error::ServerError;
use crate::metrics::{Metrics, SubGauges};
use crate::reconciler::Prefetcher;

/// The engine the daemon runs on: the allocator over any store backend.
pub type DaemonEngine = Engine<Box<dyn Store>>;

/// Events committed per store transaction by a history import.
const IMPORT_BATCH: usize = 50_000;

/// Most allocations one list request returns.
const MAX_LIST: usize = 100_000;

/// Most one forced reload of a daemon's view of a shared store per this interval (see
/// [`App::release_async`]): unknown VM ids cannot make a daemon reload all the time.
pub const FORCED_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// How many times an operation is tried when its commit conflicts with another daemon's.
pub const CONFLICT_ATTEMPTS: u32 = 8;

/// Runs `op` again while its commit conflicts with another writer of a shared store (the engine
/// has reloaded its state by then), with exponential backoff and jitter (5 ms, 10 ms, ... up to
/// 320 ms); after [`CONFLICT_ATTEMPTS`] it gives up with the last conflict. While the engine
/// reloads its view ([`EngineError::Reloading`]) it waits, polling every 2 ms, for up to
/// [`RELOAD_WAIT`]: that is no conflict and costs no attempt.
async fn retry_conflicts<T, F, Fut>(metrics: &Metrics, mut op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        match op().await {
            Err(ServerError::Engine(EngineError::Conflict(why))) => {
                attempt += 1;
                tracing::debug!(attempt, "retrying after a conflict: {why}");
                metrics.conflict(attempt >= CONFLICT_ATTEMPTS);
                if attempt >= CONFLICT_ATTEMPTS {
                    return Err(ServerError::Unavailable(format!(
                        "gave up after {attempt} attempts that each conflicted with another \
                         daemon's writes; last: {why}"
                    )));
                }
                let base = 5u64 << (attempt - 1).min(6);
                let jitter = u64::from(std::process::id() ^ attempt) % base.max(1);
                tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
            }
            Err(ServerError::Engine(EngineError::Reloading)) if started.elapsed() < RELOAD_WAIT => {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            other => return other,
        }
    }
}

/// Longest an operation waits for a reload of the daemon's view (see [`retry_conflicts`]).
pub const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Everything the handlers share.
pub struct App {
    pub engine: DaemonEngine,
    pub auth: Auth,
    pub metrics: Metrics,
    pub settings: ServerSettings,
    pub prefetcher: Mutex<Prefetcher>,
    /// Deploys router configurations when the shard set changes.
    pub router_sync: crate::routers::RouterSync,
    /// Whether this daemon runs the reconciler and the deployer ([`crate::leadership::Solo`]
    /// unless [`App::set_leadership`] gave another).
    leadership: std::sync::OnceLock<Arc<dyn crate::leadership::Leadership>>,
    ready: AtomicBool,
    stopping: AtomicBool,
    /// Serialises history imports (their order is the history's order).
    import: Mutex<()>,
    /// Daemons with shard affinity that are missing from the live ones, since when (see
    /// [`App::clear_stale_affinities`]).
    pub(crate) missing_nodes: Mutex<std::collections::BTreeMap<String, std::time::Instant>>,
    /// Bumped after every store commit: wakes requests waiting for their changes to be durable.
    committed: Arc<tokio::sync::watch::Sender<u64>>,
}

type Result<T, E = ServerError> = std::result::Result<T, E>;

impl App {
    pub fn new(
        engine: DaemonEngine,
        auth: Auth,
        settings: ServerSettings,
        prefetcher: Prefetcher,
    ) -> App {
        let committed = Arc::new(tokio::sync::watch::Sender::new(0u64));
        {
            let committed = committed.clone();
            engine.set_on_commit(Box::new(move || {
                committed.send_modify(|n| *n = n.wrapping_add(1));
            }));
        }
        App {
            committed,
            engine,
            auth,
            metrics: Metrics::default(),
            settings,
            prefetcher: Mutex::new(prefetcher),
            router_sync: Default::default(),
            leadership: std::sync::OnceLock::new(),
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            import: Mutex::new(()),
            missing_nodes: Mutex::default(),
        }
    }

    /// Sets who leads (once, before serving): an etcd election on a shared store.
    pub fn set_leadership(&self, l: Arc<dyn crate::leadership::Leadership>) {
        let _ = self.leadership.set(l);
    }

    /// Who leads: this daemon alone unless [`App::set_leadership`] said otherwise.
    pub fn leadership(&self) -> &dyn crate::leadership::Leadership {
        match self.leadership.get() {
            Some(l) => l.as_ref(),
            None => &crate::leadership::Solo,
        }
    }

    /// Marks the daemon ready (after startup) or not.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Marks the daemon as shutting down: `/readyz` fails from now on.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// `Ok` when the daemon can serve: started, not stopping, and the store readable.
    pub fn readiness(&self) -> Result<()> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(ServerError::Unavailable("shutting down".into()));
        }
        if !self.ready.load(Ordering::SeqCst) {
            return Err(ServerError::Unavailable(
                "starting: reading the history".into(),
            ));
        }
        self.engine.read(|_| ())?;
        self.engine
            .store()
            .counts()
            .map_err(|e| ServerError::Unavailable(format!("the store cannot be read: {e}")))?;
        Ok(())
    }

    fn prefetcher(&self) -> std::sync::MutexGuard<'_, Prefetcher> {
        self.prefetcher.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ----- allocations -----

    /// Waits (asynchronously) until what `ticket` covers is durable. A committer thread
    /// ([`cidrcast_engine::Engine::run_committer`]) must be running.
    pub async fn durable(&self, ticket: Ticket) -> Result<()> {
        let mut rx = self.committed.subscribe();
        loop {
            if let Some(r) = self.engine.ticket_status(ticket) {
                return r.map_err(ServerError::from);
            }
            if rx.changed().await.is_err() {
                return Err(ServerError::Unavailable("shutting down".into()));
            }
        }
    }

    /// [`App::allocate`] without blocking a thread: the allocation is made in memory at once and
    /// answered when its commit is durable (the committer thread commits in batches).
    pub async fn allocate_async(
        &self,
        p: &Principal,
        req: api::AllocateRequest,
    ) -> Result<(api::Allocation, bool)> {
        retry_conflicts(&self.metrics, || self.allocate_once(p, &req)).await
    }

    async fn allocate_once(
        &self,
        p: &Principal,
        req: &api::AllocateRequest,
    ) -> Result<(api::Allocation, bool)> {
        p.require(Role::Allocator, "allocating")?;
        if let Some(name) = req.profile.as_deref() {
            if !self.engine.has_profile_unsynced(name) {
                return Err(ServerError::Unprocessable(format!(
                    "profile = {name:?}: unknown profile (GET /v1/profiles lists the defined ones)"
                )));
            }
        }
        let (result, ticket) =
            self.engine
                .submit_at(cidrcast_engine::unix_now(), |ipam, now| {
                    // Scope refusals come out as the inner error, before anything changes.
                    if let Err(denied) = p.check_subdivision(ipam, &req.subdivision) {
                        return Ok(Err(denied));
                    }
                    let a = ipam.allocate(
                        &req.subdivision,
                        &req.vm_id,
                        req.profile.as_deref(),
                        req.pool.as_deref(),
                        now,
                    )?;
                    let lease = ipam.lease(&req.vm_id).ok_or_else(|| {
                        CoreError::Corrupt(format!("lease of {} vanished", req.vm_id))
                    })?;
                    Ok(Ok((allocation_view(ipam, &lease, Some(a.path)), a.path)))
                })?;
        self.durable(ticket).await?;
        let (view, path) = result??;
        let created = path != AllocPath::Existing;
        if created {
            self.metrics
                .allocation(&req.subdivision, path == AllocPath::Ready);
        }
        Ok((view, created))
    }

    /// [`App::release`] without blocking a thread.
    pub async fn release_async(
        self: &Arc<Self>,
        p: &Principal,
        vm_id: &str,
    ) -> Result<api::Released> {
        match retry_conflicts(&self.metrics, || self.release_once(p, vm_id)).await {
            Err(ServerError::Engine(EngineError::Core(CoreError::UnknownLease(_))))
                if self.reload_shared_view().await? =>
            {
                retry_conflicts(&self.metrics, || self.release_once(p, vm_id)).await
            }
            other => other,
        }
    }

    /// On a shared store, a lease this daemon does not know may have been made through another
    /// daemon since its view was loaded: reloads the view now ([`Engine::reload_now`], at most
    /// once per [`FORCED_RELOAD_INTERVAL`]). `Ok(true)`: reloaded, look again.
    async fn reload_shared_view(self: &Arc<Self>) -> Result<bool> {
        if !self.leadership().shared() {
            return Ok(false);
        }
        let app = self.clone();
        let reloaded =
            tokio::task::spawn_blocking(move || app.engine.reload_now(FORCED_RELOAD_INTERVAL))
                .await
                .map_err(|e| {
                    ServerError::Internal(format!("reloading the view panicked: {e}"))
                })??;
        Ok(reloaded)
    }

    async fn release_once(&self, p: &Principal, vm_id: &str) -> Result<api::Released> {
        p.require(Role::Allocator, "releasing")?;
        let (result, ticket) =
            self.engine
                .submit_at(cidrcast_engine::unix_now(), |ipam, now| {
                    let lease = ipam
                        .lease(vm_id)
                        .ok_or_else(|| CoreError::UnknownLease(vm_id.to_string()))?;
                    if let Err(denied) = p.check_subdivision(ipam, &lease.subdivision) {
                        return Ok(Err(denied));
                    }
                    Ok(Ok((ipam.release(vm_id, now)?, lease.subdivision)))
                })?;
        self.durable(ticket).await?;
        let (address, sub) = result??;
        self.metrics.release(&sub);
        Ok(api::Released {
            vm_id: vm_id.to_string(),
            address: address.to_string(),
        })
    }

    /// One allocation.
    pub fn lease(&self, p: &Principal, vm_id: &str) -> Result<api::Allocation> {
        p.require(Role::Reader, "reading allocations")?;
        self.engine.read(|ipam| {
            let lease = ipam
                .lease(vm_id)
                .ok_or_else(|| ServerError::NotFound(format!("no allocation for vm `{vm_id}`")))?;
            p.check_subdivision(ipam, &lease.subdivision)?;
            Ok(allocation_view(ipam, &lease, None))
        })?
    }

    /// Allocations matching the filter, in the token's scope.
    pub fn leases(&self, p: &Principal, f: api::AllocationFilter) -> Result<api::AllocationList> {
        p.require(Role::Reader, "reading allocations")?;
        let limit = f.limit.unwrap_or(1000);
        if limit == 0 || limit > MAX_LIST {
            return Err(ServerError::BadRequest(format!(
                "limit = {limit}: must be 1 to {MAX_LIST}"
            )));
        }
        self.engine.read(|ipam| {
            if let Some(s) = &f.subdivision {
                p.check_subdivision(ipam, s)?;
            }
            if let Some(pool) = &f.pool {
                if !ipam.has_pool(pool) {
                    return Err(ServerError::NotFound(format!("unknown pool `{pool}`")));
                }
            }
            let all = ipam.leases(f.subdivision.as_deref())?;
            let matching: Vec<&LeaseRecord> = all
                .iter()
                .filter(|l| f.pool.as_ref().is_none_or(|x| *x == l.pool))
                .filter(|l| f.profile.is_none() || f.profile == l.profile)
                .filter(|l| p.sees_subdivision(ipam, &l.subdivision))
                .collect();
            Ok(api::AllocationList {
                total: matching.len(),
                items: matching
                    .into_iter()
                    .skip(f.offset)
                    .take(limit)
                    .map(|l| allocation_view(ipam, l, None))
                    .collect(),
            })
        })?
    }

    // ----- pools -----

    pub fn pools(&self, p: &Principal) -> Result<Vec<api::Pool>> {
        p.require(Role::Reader, "reading pools")?;
        Ok(self.engine.read(|ipam| {
            ipam.pools()
                .into_iter()
                .filter(|i| p.sees_pool(ipam, &i.spec))
                .map(pool_view)
                .collect()
        })?)
    }

    pub fn pool(&self, p: &Principal, name: &str) -> Result<api::Pool> {
        p.require(Role::Reader, "reading pools")?;
        self.engine.read(|ipam| {
            let info = ipam
                .pools()
                .into_iter()
                .find(|i| i.spec.name == name)
                .ok_or_else(|| ServerError::NotFound(format!("unknown pool `{name}`")))?;
            if !p.sees_pool(ipam, &info.spec) {
                return Err(ServerError::Forbidden(format!(
                    "token `{}` may not see pool `{name}`: it is outside the token's scope",
                    p.name
                )));
            }
            Ok(pool_view(info))
        })?
    }

    /// Creates a pool (`Ok(true)`), or replaces the one of that name (`Ok(false)`) when `replace`
    /// and it holds no shards; an identical one is left alone.
    pub fn put_pool(&self, p: &Principal, spec: PoolSpec, replace: bool) -> Result<bool> {
        p.require_global(Role::Admin, "changing pools")?;
        Ok(self
            .engine
            .execute_untimed(|ipam| match ipam.pool_spec(&spec.name) {
                None => {
                    ipam.add_pool(spec)?;
                    Ok(true)
                }
                Some(_) if !replace => Err(CoreError::PoolExists(spec.name.clone())),
                Some(old) if *old == spec => Ok(false),
                Some(_) => {
                    let mut scratch = ipam.clone();
                    scratch.remove_pool(&spec.name)?;
                    scratch.add_pool(spec)?;
                    *ipam = scratch;
                    Ok(false)
                }
            })?)
    }

    pub fn delete_pool(&self, p: &Principal, name: &str) -> Result<PoolSpec> {
        p.require_global(Role::Admin, "deleting pools")?;
        Ok(self.engine.execute_untimed(|ipam| ipam.remove_pool(name))?)
    }

    // ----- subdivisions -----

    pub fn subdivisions(&self, p: &Principal) -> Result<Vec<api::Subdivision>> {
        p.require(Role::Reader, "reading subdivisions")?;
        Ok(self.engine.read(|ipam| {
            ipam.subdivisions()
                .into_iter()
                .filter(|s| p.sees_subdivision(ipam, &s.spec.name))
                .map(subdivision_view)
                .collect()
        })?)
    }

    pub fn subdivision(&self, p: &Principal, name: &str) -> Result<api::Subdivision> {
        p.require(Role::Reader, "reading subdivisions")?;
        self.engine.read(|ipam| {
            let info = ipam.subdivision(name)?;
            p.check_subdivision(ipam, name)?;
            Ok(subdivision_view(info))
        })?
    }

    /// Creates a subdivision (`Ok(true)`) or replaces it (`Ok(false)`, when `replace` and it
    /// holds no shards, leases or children). A scoped token may create subdivisions below one in
    /// its scope.
    pub fn put_subdivision(
        &self,
        p: &Principal,
        spec: SubdivisionSpec,
        replace: bool,
    ) -> Result<bool> {
        p.require(Role::Operator, "changing subdivisions")?;
        self.check_routers_exist(&spec)?;
        self.engine.execute_untimed(|ipam| {
            // A scoped token creates below a subdivision of its scope (a top-level one only if
            // it is in scope itself) and replaces only one in its scope.
            let under = spec.parent.as_deref().unwrap_or(&spec.name);
            if let Err(denied) = p.check_subdivision(ipam, under) {
                return Ok(Err(denied));
            }
            match ipam.subdivision_spec(&spec.name) {
                None => {
                    ipam.add_subdivision(spec)?;
                    Ok(Ok(true))
                }
                Some(_) if !replace => Err(CoreError::SubdivisionExists(spec.name.clone())),
                Some(old) if *old == spec => Ok(Ok(false)),
                Some(_) => {
                    if let Err(denied) = p.check_subdivision(ipam, &spec.name) {
                        return Ok(Err(denied));
                    }
                    let mut scratch = ipam.clone();
                    scratch.remove_subdivision(&spec.name)?;
                    scratch.add_subdivision(spec)?;
                    *ipam = scratch;
                    Ok(Ok(false))
                }
            }
        })?
    }

    fn check_routers_exist(&self, spec: &SubdivisionSpec) -> Result<()> {
        if spec.routers.is_empty() {
            return Ok(());
        }
        let routers = self.engine.routers()?;
        for r in &spec.routers {
            if !routers.iter().any(|x| x.name == *r) {
                return Err(ServerError::Unprocessable(format!(
                    "subdivision `{}`: routers names {r:?}, which is not a known router",
                    spec.name
                )));
            }
        }
        Ok(())
    }

    pub fn delete_subdivision(&self, p: &Principal, name: &str) -> Result<SubdivisionSpec> {
        p.require(Role::Operator, "deleting subdivisions")?;
        let routers = self.engine.routers()?;
        if let Some(r) = routers
            .iter()
            .find(|r| r.subdivisions.iter().any(|s| s == name))
        {
            return Err(ServerError::Conflict(format!(
                "subdivision `{name}` is announced by router `{}`; remove it from the router first",
                r.name
            )));
        }
        self.engine.execute_untimed(|ipam| {
            if let Err(denied) = p.check_subdivision(ipam, name) {
                return Ok(Err(denied));
            }
            ipam.remove_subdivision(name).map(Ok)
        })?
    }

    // ----- profiles -----

    pub fn profiles(&self, p: &Principal) -> Result<Vec<Profile>> {
        p.require(Role::Reader, "reading profiles")?;
        Ok(self.engine.profiles()?)
    }

    pub fn profile(&self, p: &Principal, name: &str) -> Result<Profile> {
        self.profiles(p)?
            .into_iter()
            .find(|x| x.name == name)
            .ok_or_else(|| ServerError::NotFound(format!("unknown profile `{name}`")))
    }

    /// Creates (`Ok(true)`) or replaces (`Ok(false)`) a profile.
    pub fn put_profile(&self, p: &Principal, profile: Profile, replace: bool) -> Result<bool> {
        p.require_global(Role::Operator, "changing profiles")?;
        let exists = self
            .engine
            .profiles()?
            .iter()
            .any(|x| x.name == profile.name);
        if exists && !replace {
            return Err(ServerError::Conflict(format!(
                "profile `{}` already exists",
                profile.name
            )));
        }
        Ok(self.engine.put_profile(profile)?.is_none())
    }

    pub fn delete_profile(&self, p: &Principal, name: &str) -> Result<Profile> {
        p.require_global(Role::Operator, "deleting profiles")?;
        let used = self.engine.read(|ipam| {
            ipam.leases(None).map(|l| {
                l.iter()
                    .filter(|l| l.profile.as_deref() == Some(name))
                    .count()
            })
        })??;
        if used > 0 {
            return Err(ServerError::Conflict(format!(
                "profile `{name}` is used by {used} allocation(s); release them first"
            )));
        }
        Ok(self.engine.delete_profile(name)?)
    }

    // ----- routers -----

    pub fn routers(&self, p: &Principal) -> Result<Vec<RouterSpec>> {
        p.require(Role::Reader, "reading routers")?;
        Ok(self.engine.routers()?)
    }

    pub fn router(&self, p: &Principal, name: &str) -> Result<RouterSpec> {
        self.routers(p)?
            .into_iter()
            .find(|x| x.name == name)
            .ok_or_else(|| ServerError::NotFound(format!("unknown router `{name}`")))
    }

    /// Creates (`Ok(true)`) or replaces (`Ok(false)`) a router.
    pub fn put_router(&self, p: &Principal, router: RouterSpec, replace: bool) -> Result<bool> {
        // A router names a file the daemon writes and a command it runs: admins only.
        p.require_global(Role::Admin, "changing routers")?;
        App::check_router_writable(&router)?;
        let exists = self.engine.routers()?.iter().any(|x| x.name == router.name);
        if exists && !replace {
            return Err(ServerError::Conflict(format!(
                "router `{}` already exists",
                router.name
            )));
        }
        Ok(self.engine.put_router(router)?.is_none())
    }

    pub fn delete_router(&self, p: &Principal, name: &str) -> Result<RouterSpec> {
        p.require_global(Role::Admin, "deleting routers")?;
        let subs = self.engine.read(|ipam| ipam.subdivision_specs())?;
        if let Some(s) = subs.iter().find(|s| s.routers.iter().any(|r| r == name)) {
            return Err(ServerError::Conflict(format!(
                "router `{name}` is named by subdivision `{}`; remove it there first",
                s.name
            )));
        }
        Ok(self.engine.delete_router(name)?)
    }

    // ----- external events -----

    fn sees_event(&self, p: &Principal, ipam: &Ipam, e: &ExternalEventSpec) -> bool {
        e.is_global() || p.sees_subdivision(ipam, &e.scope)
    }

    pub fn events(&self, p: &Principal) -> Result<Vec<ExternalEventSpec>> {
        p.require(Role::Reader, "reading events")?;
        let events = self.engine.events()?;
        Ok(self.engine.read(|ipam| {
            events
                .into_iter()
                .filter(|e| self.sees_event(p, ipam, e))
                .collect()
        })?)
    }

    pub fn event(&self, p: &Principal, name: &str) -> Result<ExternalEventSpec> {
        p.require(Role::Reader, "reading events")?;
        let e = self
            .engine
            .events()?
            .into_iter()
            .find(|e| e.name == name)
            .ok_or_else(|| ServerError::NotFound(format!("unknown event `{name}`")))?;
        self.engine.read(|ipam| {
            if self.sees_event(p, ipam, &e) {
                Ok(e)
            } else {
                Err(ServerError::Forbidden(format!(
                    "token `{}` may not see event `{name}`: its scope is outside the token's",
                    p.name
                )))
            }
        })?
    }

    fn check_event_scope(&self, p: &Principal, e: &ExternalEventSpec) -> Result<()> {
        if e.is_global() {
            return p.require_global(Role::Operator, "an event for every subdivision");
        }
        self.engine
            .read(|ipam| p.check_subdivision(ipam, &e.scope))?
    }

    /// Creates (`Ok(true)`) or replaces (`Ok(false)`) an event.
    pub fn put_event(&self, p: &Principal, spec: ExternalEventSpec, replace: bool) -> Result<bool> {
        p.require(Role::Operator, "changing events")?;
        self.check_event_scope(p, &spec)?;
        if let Some(old) = self
            .engine
            .events()?
            .into_iter()
            .find(|e| e.name == spec.name)
        {
            if !replace {
                return Err(ServerError::Conflict(format!(
                    "event `{}` already exists",
                    spec.name
                )));
            }
            self.check_event_scope(p, &old)?;
        }
        Ok(self.engine.put_event(spec)?.is_none())
    }

    pub fn delete_event(&self, p: &Principal, name: &str) -> Result<ExternalEventSpec> {
        let e = self.event(p, name)?;
        p.require(Role::Operator, "deleting events")?;
        self.check_event_scope(p, &e)?;
        Ok(self.engine.delete_event(name)?)
    }

    // ----- shards -----

    pub fn shards(&self, p: &Principal, f: api::ShardFilter) -> Result<Vec<api::Shard>> {
        p.require(Role::Reader, "reading shards")?;
        let state = f.state.as_deref().map(parse_state).transpose()?;
        self.engine.read(|ipam| {
            if let Some(s) = &f.subdivision {
                p.check_subdivision(ipam, s)?;
            }
            Ok(ipam
                .shards(f.subdivision.as_deref())?
                .into_iter()
                .filter(|s| f.pool.as_ref().is_none_or(|x| *x == s.record.pool))
                .filter(|s| state.is_none_or(|x| x == s.record.state))
                .filter(|s| p.sees_subdivision(ipam, &s.record.subdivision))
                .map(shard_view)
                .collect())
        })?
    }

    /// Drains a shard: no new leases; it is released when its last lease goes.
    pub fn drain_shard(&self, p: &Principal, prefix: IpNet) -> Result<Option<api::Shard>> {
        p.require(Role::Operator, "draining shards")?;
        self.engine.execute(|ipam, now| {
            let sub = ipam.shard_info(&prefix)?.record.subdivision;
            if let Err(denied) = p.check_subdivision(ipam, &sub) {
                return Ok(Err(denied));
            }
            ipam.drain_shard(&prefix, Reason::Operator, now)?;
            // Gone when it was released at once (nothing leased or cooling).
            Ok(Ok(ipam.shard_info(&prefix).ok().map(shard_view)))
        })?
    }

    /// Releases a shard (refused while it holds leases).
    pub fn release_shard(&self, p: &Principal, prefix: IpNet) -> Result<()> {
        p.require(Role::Operator, "releasing shards")?;
        self.engine.execute(|ipam, now| {
            let sub = ipam.shard_info(&prefix)?.record.subdivision;
            if let Err(denied) = p.check_subdivision(ipam, &sub) {
                return Ok(Err(denied));
            }
            ipam.release_shard(&prefix, Reason::Operator, now).map(Ok)
        })?
    }

    // ----- history -----

    /// Imports VM lifecycle events in the canonical trace format, streamed from `input`. Every
    /// row is checked first (syntax, lifecycle, known subdivisions in the token's scope, times not
    /// before the last stored event and not in the future) while it is spooled to a temporary
    /// file; only when the whole body is valid is it appended to the history, in transactions of
    /// [`IMPORT_BATCH`] events. A refused import changes nothing.
    pub fn import_history(&self, p: &Principal, input: impl Read) -> Result<api::ImportReport> {
        p.require(Role::Operator, "importing history")?;
        let _serial = self.import.lock().unwrap_or_else(|e| e.into_inner());
        let last = self.last_event_time()?;
        let now = cidrcast_engine::unix_now();
        let spool = tempfile::tempfile()
            .map_err(|e| ServerError::Unavailable(format!("cannot create a spool file: {e}")))?;
        let mut writer = BufWriter::new(spool);
        let mut report = api::ImportReport {
            imported: 0,
            creates: 0,
            deletes: 0,
            first_time: None,
            last_time: None,
        };
        let reader = TraceReader::new(input, "request body", ReadOptions::STRICT);
        let subs = self.engine.read(|ipam| {
            ipam.subdivision_specs()
                .into_iter()
                .map(|s| {
                    let seen = p.sees_subdivision(ipam, &s.name);
                    (s.name, seen)
                })
                .collect::<std::collections::HashMap<String, bool>>()
        })?;
        for (i, ev) in reader.enumerate() {
            let ev = ev.map_err(|e| match e {
                cidrcast_trace::TraceError::Read { .. } if is_too_large(&e) => {
                    ServerError::TooLarge(format!(
                        "the history is larger than max_import_bytes = {}",
                        self.settings.max_import_bytes
                    ))
                }
                other => ServerError::Unprocessable(other.to_string()),
            })?;
            let row = i + 2; // the header is line 1
            match subs.get(&ev.subdivision) {
                None => {
                    return Err(ServerError::Unprocessable(format!(
                        "request body, line {row}: subdivision {:?} is not defined (create it first)",
                        ev.subdivision
                    )))
                }
                Some(false) => {
                    return Err(ServerError::Forbidden(format!(
                        "request body, line {row}: token `{}` may not import history of subdivision `{}`",
                        p.name, ev.subdivision
                    )))
                }
                Some(true) => {}
            }
            if let Some(last) = last {
                if ev.time < last {
                    return Err(ServerError::Unprocessable(format!(
                        "request body, line {row}: time = {} is before the last event already in the history ({last}); import history before the daemon records newer events",
                        ev.time
                    )));
                }
            }
            if ev.time > now + 60.0 {
                return Err(ServerError::Unprocessable(format!(
                    "request body, line {row}: time = {} is in the future (now {now:.0}); history holds past events in Unix seconds",
                    ev.time
                )));
            }
            serde_json::to_writer(&mut writer, &ev)
                .and_then(|()| writer.write_all(b"\n").map_err(serde_json::Error::io))
                .map_err(|e| ServerError::Unavailable(format!("cannot spool the history: {e}")))?;
            report.imported += 1;
            match ev.kind {
                EventKind::Create => report.creates += 1,
                EventKind::Delete => report.deletes += 1,
            }
            report.first_time.get_or_insert(ev.time);
            report.last_time = Some(ev.time);
        }
        let mut spool = writer
            .into_inner()
            .map_err(|e| ServerError::Unavailable(format!("cannot spool the history: {e}")))?;
        spool
            .seek(SeekFrom::Start(0))
            .map_err(|e| ServerError::Unavailable(format!("cannot read the spool back: {e}")))?;
        let lines = std::io::BufRead::lines(std::io::BufReader::new(spool));
        let mut batch: Vec<VmEvent> =
            Vec::with_capacity(IMPORT_BATCH.min(report.imported as usize));
        let mut committed = 0u64;
        let mut flush = |batch: &mut Vec<VmEvent>| -> Result<()> {
            self.engine.append_history(batch).map_err(|e| {
                ServerError::Unavailable(format!(
                    "the store failed after {committed} of {} events were imported (they stay): {e}",
                    report.imported
                ))
            })?;
            committed += batch.len() as u64;
            batch.clear();
            Ok(())
        };
        for line in lines {
            let line = line.map_err(|e| {
                ServerError::Unavailable(format!("cannot read the spool back: {e}"))
            })?;
            let ev: VmEvent = serde_json::from_str(&line)
                .map_err(|e| ServerError::Internal(format!("spooled event does not parse: {e}")))?;
            batch.push(ev);
            if batch.len() >= IMPORT_BATCH {
                flush(&mut batch)?;
            }
        }
        if !batch.is_empty() {
            flush(&mut batch)?;
        }
        self.metrics.imported(report.imported);
        Ok(report)
    }

    fn last_event_time(&self) -> Result<Option<f64>> {
        let store = self.engine.store();
        let n = store
            .counts()
            .map_err(cidrcast_engine::EngineError::Store)?
            .events;
        if n == 0 {
            return Ok(None);
        }
        Ok(store
            .events(n - 1, 1)
            .map_err(cidrcast_engine::EngineError::Store)?
            .first()
            .map(|(_, e)| e.time))
    }

    // ----- metrics -----

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> Result<String> {
        let subs = self.engine.read(sub_gauges)?;
        let forecast = self.prefetcher().gauges();
        Ok(self.metrics.render(
            &subs,
            &forecast,
            self.readiness().is_ok(),
            self.leadership().is_leader(),
        ))
    }
}

/// Whether a trace read error is the body limit being hit.
fn is_too_large(e: &cidrcast_trace::TraceError) -> bool {
    e.to_string().contains(crate::http::TOO_LARGE)
}

fn parse_state(s: &str) -> Result<ShardState> {
    match s {
        "reserved" => Ok(ShardState::Reserved),
        "active" => Ok(ShardState::Active),
        "draining" => Ok(ShardState::Draining),
        _ => Err(ServerError::BadRequest(format!(
            "state = {s:?}: must be reserved, active or draining"
        ))),
    }
}

fn allocation_view(ipam: &Ipam, l: &LeaseRecord, path: Option<AllocPath>) -> api::Allocation {
    let reserves_gateway = ipam
        .pool_spec(&l.pool)
        .is_some_and(|p| p.reserve_first >= 2);
    let gateway = reserves_gateway.then(|| nth_address(&l.shard, 1)).flatten();
    api::Allocation {
        vm_id: l.vm_id.clone(),
        subdivision: l.subdivision.clone(),
        pool: l.pool.clone(),
        address: l.address.to_string(),
        prefix_len: l.shard.prefix_len(),
        gateway: gateway.map(|g| g.to_string()),
        shard: l.shard.to_string(),
        profile: l.profile.clone(),
        created: l.created,
        prefetched: path.and_then(|p| match p {
            AllocPath::Existing => None,
            other => Some(other == AllocPath::Ready),
        }),
        path: path.map(|p| p.as_str().to_string()),
    }
}

/// The `n`th address of `net` (0 = the network address).
fn nth_address(net: &IpNet, n: u32) -> Option<std::net::IpAddr> {
    match net {
        IpNet::V4(v) => u32::from(v.network())
            .checked_add(n)
            .map(|a| std::net::IpAddr::V4(a.into())),
        IpNet::V6(v) => u128::from(v.network())
            .checked_add(u128::from(n))
            .map(|a| std::net::IpAddr::V6(a.into())),
    }
}

fn pool_view(i: cidrcast_core::PoolInfo) -> api::Pool {
    api::Pool {
        size: i.size.to_string(),
        shards_reserved: i.shards_reserved,
        shards_active: i.shards_active,
        shards_draining: i.shards_draining,
        leases: i.leases,
        unassigned: i.unassigned.to_string(),
        spec: i.spec,
    }
}

fn subdivision_view(i: cidrcast_core::SubdivisionInfo) -> api::Subdivision {
    api::Subdivision {
        shards: i.shards,
        borrowed: i.borrowed,
        leases: i.leases,
        usable: i.usable.to_string(),
        homes: i.homes.iter().map(ToString::to_string).collect(),
        routes: i.routes.iter().map(ToString::to_string).collect(),
        spec: i.spec,
    }
}

fn shard_view(s: cidrcast_core::ShardInfo) -> api::Shard {
    api::Shard {
        pool: s.record.pool,
        prefix: s.record.prefix.to_string(),
        subdivision: s.record.subdivision,
        state: s.record.state.as_str().to_string(),
        borrowed: s.record.borrowed,
        since: s.record.since,
        reason: s.record.reason.as_str().to_string(),
        leases: s.leases,
        usable: u64::try_from(s.usable).unwrap_or(u64::MAX),
        affinity: s.record.affinity,
    }
}

/// Ready and idle addresses and shards by state, per subdivision.
fn sub_gauges(ipam: &Ipam) -> Vec<SubGauges> {
    let mut by: std::collections::BTreeMap<String, SubGauges> = ipam
        .subdivision_specs()
        .into_iter()
        .map(|s| {
            (
                s.name.clone(),
                SubGauges {
                    subdivision: s.name,
                    ..SubGauges::default()
                },
            )
        })
        .collect();
    if let Ok(shards) = ipam.shards(None) {
        for s in shards {
            let g = by.entry(s.record.subdivision.clone()).or_default();
            let free = s.usable.saturating_sub(u128::from(s.leases));
            g.idle += free;
            g.leases += s.leases;
            match s.record.state {
                ShardState::Reserved => g.reserved += 1,
                ShardState::Active => {
                    g.active += 1;
                    g.ready += free.saturating_sub(u128::from(s.cooling));
                }
                ShardState::Draining => g.draining += 1,
            }
        }
    }
    by.into_values().collect()
}
