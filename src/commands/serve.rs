//! `cidrcast serve`: the daemon (HTTP API, reconciler, metrics) on the configured store, and
//! `cidrcast token`: bearer tokens for it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::context::{open_engine, store_label, Ctx};
use anyhow::{bail, Context, Result};
use cidrcast_config::{Role, DEFAULT_LISTEN};
use cidrcast_server::auth::{hash_secret, Auth};
use cidrcast_server::reconciler::Prefetcher;
use cidrcast_server::{App, TlsFiles};

pub struct ServeArgs {
    pub listen: Option<SocketAddr>,
    pub insecure_no_auth: bool,
}

pub fn serve(ctx: &Ctx, args: ServeArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let config = &ctx.config;
    let listen = match args.listen.or(config.server.listen) {
        Some(a) => a,
        None => DEFAULT_LISTEN
            .parse()
            .context("the default listen address")?,
    };
    if config.tokens.is_empty() && !cidrcast_server::is_loopback(&listen) && !args.insecure_no_auth
    {
        bail!(
            "refusing to listen on {listen} without authentication: define [[token]] tables in the \
             configuration (`cidrcast token new` makes one), listen on loopback, or pass \
             --insecure-no-auth"
        );
    }
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let engine = open_engine(&ctx.data_dir, config, ctx.config_path.is_some())?;
    // The daemon deploys the configuration of every router with a config_path: refuse to start
    // when it could not write one.
    for r in engine.routers()? {
        cidrcast_router::check_writable(&r)?;
    }
    let prefetcher = Prefetcher::new(&config.server)?;
    let app = Arc::new(App::new(
        engine,
        Auth::new(&config.tokens),
        config.server.clone(),
        prefetcher,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let tls = match &tls {
        Some(files) => Some(runtime.block_on(cidrcast_server::load_tls(files))?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(listen)
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    #[cfg(feature = "etcd")]
    if config.store.kind == cidrcast_config::StoreKind::Etcd {
        elect(&runtime, &app, config, addr)?;
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    // Tests and scripts read this line to find the port (with --listen 127.0.0.1:0).
    println!(
        "cidrcast serve: listening on {scheme}://{addr} (data {}, {} token(s){})",
        store_label(&ctx.data_dir, config),
        config.tokens.len(),
        if config.tokens.is_empty() {
            ", authentication off"
        } else {
            ""
        }
    );
    runtime.block_on(cidrcast_server::serve(
        app.clone(),
        listener,
        tls,
        cidrcast_server::termination(),
    ))?;
    drop(runtime);
    let commits = app.engine.commits();
    drop(app);
    println!("cidrcast serve: stopped cleanly after {commits} store commits");
    Ok(())
}

/// Joins the leader election of the daemons sharing the etcd store: only the leader runs the
/// reconciler and the router deployer.
#[cfg(feature = "etcd")]
fn elect(
    runtime: &tokio::runtime::Runtime,
    app: &Arc<App>,
    config: &cidrcast_config::Config,
    addr: SocketAddr,
) -> Result<()> {
    let opts = crate::context::etcd_options(&config.store)?;
    let client = runtime
        .block_on(opts.client())
        .context("cannot connect to etcd for the leader election")?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    let id = format!("{host}/{addr}/{}", std::process::id());
    // Each daemon allocates only in shards with its affinity (named by its id), and starts
    // looking for free addresses at its own place in a shard (FNV-1a of its id), so that an
    // adopted shard's addresses rarely collide with those of a daemon a moment before.
    let hint = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    app.engine.set_shared(&id, hint | 1);
    let ttl = std::time::Duration::from_secs_f64(config.server.leader_ttl_s);
    let election =
        crate::election::EtcdElection::start(runtime, client.clone(), &opts.prefix, id, ttl);
    runtime.spawn(crate::election::watch_leader(
        election.clone(),
        client,
        opts.prefix.clone(),
    ));
    app.set_leadership(election);
    Ok(())
}

/// `cidrcast token new`: a random secret and the `[[token]]` table holding its hash.
pub fn token_new(
    name: &str,
    role: Role,
    tenants: &[String],
    subdivisions: &[String],
) -> Result<()> {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).context("no randomness from the operating system")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let secret = format!("cc_{secret}");
    let quote = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("# The secret (shown once; clients send `Authorization: Bearer <secret>`):");
    println!("# {secret}");
    println!("[[token]]");
    println!("name = {name:?}");
    println!("role = \"{role}\"");
    println!("sha256 = \"{}\"", hash_secret(&secret));
    if !tenants.is_empty() {
        println!("tenants = [{}]", quote(tenants));
    }
    if !subdivisions.is_empty() {
        println!("subdivisions = [{}]", quote(subdivisions));
    }
    Ok(())
}

/// `cidrcast token hash`: the SHA-256 of a secret read from standard input (one line).
pub fn token_hash() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the secret from standard input")?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("standard input holds no secret (one line expected)");
    }
    println!("{}", hash_secret(secret));
    Ok(())
}
