//! cidrcast daemon: the JSON HTTP API (axum) over the application layer ([`app::App`]), the
//! background reconciler (history → forecasts → plan → apply), bearer-token authentication with
//! roles and tenant scopes, Prometheus metrics, and a graceful shutdown on SIGTERM.
//!
//! Data flow of a request: [`http`] parses it and authenticates the caller ([`auth`]), one
//! [`app::App`] method runs on a blocking thread against the engine (group commit: a 2xx is sent
//! only once the change is durable), and [`error::ServerError`] turns every refusal into a JSON
//! `{code, message}` with its status.

pub mod api;
pub mod app;
pub mod auth;
pub mod error;
pub mod http;
pub mod leadership;
pub mod metrics;
pub mod reconciler;
pub mod routers;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use app::{App, DaemonEngine};
pub use error::ServerError;

/// How long in-flight requests may take to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// TLS certificate and key files (PEM).
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets in-flight
/// requests finish (at most [`SHUTDOWN_GRACE`]) and stops the reconciler. Reports the address it
/// listens on through `on_listen` before serving.
pub async fn serve(
    app: Arc<App>,
    listener: std::net::TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let router = http::router(app.clone());
    let handle = axum_server::Handle::new();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);

    // Startup: rebuild the forecasts from the stored history, then mark ready.
    let startup = {
        let app = app.clone();
        tokio::task::spawn_blocking(move || {
            let result = app.catch_up();
            if let Err(e) = &result {
                tracing::error!("reading the history failed: {e}");
            }
            app.set_ready(result.is_ok());
        })
    };

    let reconciler = tokio::spawn(reconcile_loop(app.clone(), stop_rx.clone()));
    let deployer = tokio::spawn(router_loop(app.clone(), stop_rx.clone()));
    let refresher = tokio::spawn(refresh_loop(app.clone(), stop_rx));

    // Commits what requests submit, in batches (group commit), while they wait asynchronously.
    let committer_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let committer = {
        let (app, stop) = (app.clone(), committer_stop.clone());
        std::thread::Builder::new()
            .name("cidrcast-committer".into())
            .spawn(move || app.engine.run_committer(&stop))?
    };

    {
        let handle = handle.clone();
        let app = app.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections, finishing in-flight requests");
            app.set_stopping();
            handle.graceful_shutdown(Some(SHUTDOWN_GRACE));
        });
    }

    let service = router.into_make_service();
    let served = match tls {
        None => {
            axum_server::from_tcp(listener)
                .handle(handle)
                .serve(service)
                .await
        }
        Some(config) => {
            axum_server::from_tcp_rustls(listener, config)
                .handle(handle)
                .serve(service)
                .await
        }
    };
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    let _ = deployer.await;
    let _ = refresher.await;
    let _ = startup.await;
    // In-flight requests are done: commit what is left, then stop the committer.
    let _ = app.engine.read(|_| ());
    committer_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = committer.join();
    served
}

/// Loads the TLS certificate chain and key (PEM) for [`serve`]; errors name the files.
pub async fn load_tls(files: &TlsFiles) -> std::io::Result<axum_server::tls_rustls::RustlsConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key)
        .await
        .map_err(|e| {
            std::io::Error::other(format!(
                "cannot load TLS files {} / {}: {e}",
                files.cert.display(),
                files.key.display()
            ))
        })
}

/// Runs the reconciler every `reconcile_interval_s` until `stop` turns true. A run that fails is
/// logged and counted; the next one tries again.
async fn reconcile_loop(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let period = Duration::from_secs_f64(app.settings.reconcile_interval_s.max(0.001));
    let mut next = tokio::time::Instant::now() + period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        next += period;
        if !app.is_ready() || !app.leadership().is_leader() {
            continue;
        }
        let a = app.clone();
        let start = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            // On a shared store, plan on what every daemon committed (even under load: the
            // daemon's own operations wait for one read of the store).
            if a.leadership().shared() {
                let reload = Instant::now();
                a.engine.reload()?;
                tracing::debug!(
                    seconds = reload.elapsed().as_secs_f64(),
                    "reloaded the shared view for the reconciler"
                );
                a.clear_stale_affinities()?;
            }
            a.reconcile()
        })
        .await;
        let ok = matches!(result, Ok(Ok(_)));
        app.metrics.reconcile(ok, start.elapsed().as_secs_f64());
        match result {
            Ok(Ok(plan)) => {
                if !plan.plan.actions.is_empty() {
                    tracing::info!(
                        actions = plan.plan.actions.len(),
                        seconds = plan.seconds,
                        "reconciled"
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!("reconciler run failed: {e}"),
            Err(e) => tracing::error!("reconciler run panicked: {e}"),
        }
    }
}

/// How often the deployer looks whether the shard set or the routers changed.
pub const ROUTER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Deploys router configurations ([`App::sync_routers`]) when the shard set or the routers
/// change, checking every [`ROUTER_CHECK_INTERVAL`] until `stop` turns true.
async fn router_loop(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    every(
        app,
        stop,
        ROUTER_CHECK_INTERVAL,
        |a| a.is_ready() && a.leadership().is_leader(),
        "router deployment run",
        |a| a.sync_routers().map(drop),
    )
    .await;
}

/// How often a daemon on a shared store reloads its view to see other daemons' commits.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// On a shared store, reloads the engine's view every [`REFRESH_INTERVAL`] while it is idle, to
/// see other daemons' leases and the leader's shards, until `stop` turns true. A busy daemon
/// skips it ([`cidrcast_engine::Engine::reload_if_idle`]: a reload holds its operations back);
/// its compare-and-swap commits, the reconciler's reload and the reload of
/// [`App::release_async`] cover what its view misses.
async fn refresh_loop(app: Arc<App>, stop: tokio::sync::watch::Receiver<bool>) {
    if !app.leadership().shared() {
        return;
    }
    every(
        app,
        stop,
        REFRESH_INTERVAL,
        |_| true,
        "reloading the shared state",
        |a| a.engine.reload_if_idle().map(drop),
    )
    .await;
}

/// Every `interval` until `stop` turns true: runs `work` on a blocking thread when `when` says
/// so, logging (as `what`) a failure or a panic; the next round tries again.
async fn every<E: std::fmt::Display + Send + 'static>(
    app: Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    interval: Duration,
    when: fn(&App) -> bool,
    what: &'static str,
    work: fn(&App) -> Result<(), E>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        if !when(&app) {
            continue;
        }
        let a = app.clone();
        match tokio::task::spawn_blocking(move || work(&a)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("{what} failed: {e}"),
            Err(e) => tracing::error!("{what} panicked: {e}"),
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn termination() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = ctrl_c => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Whether `addr` is on loopback (where serving without authentication is allowed).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}
