//! `cidrcast`: the command line of the predictive IP address manager.

mod commands;
mod context;
#[cfg(feature = "etcd")]
mod election;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::{
    admin, debug, demo, events, forecast, lease, router, serve, shards, simulate, status, trace,
};
use context::Ctx;
use output::Format;

/// cidrcast: an IP address manager that acts before demand arrives.
#[derive(Parser)]
#[command(name = "cidrcast", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML; `cidrcast init` writes an example). Default: ./cidrcast.toml when
    /// it exists, else built-in defaults (10.0.0.0/8 and fd00::/48).
    #[arg(long, global = true, env = "CIDRCAST_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory of the embedded store. Default: the config's data_dir, else ./cidrcast-data
    /// (the demo uses a temporary one unless this is given).
    #[arg(long, global = true, env = "CIDRCAST_DATA")]
    data: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a commented example configuration file.
    Init {
        /// Where to write it.
        #[arg(default_value = "cidrcast.toml")]
        path: PathBuf,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Manage pools (root prefixes carved into shards).
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Manage subdivisions (zones, racks, host groups, tenant networks).
    #[command(subcommand)]
    Subdivision(SubdivisionCmd),
    /// Manage scheduled external events (launches, sales, migrations) that forecasts reflect.
    #[command(subcommand)]
    Event(EventCmd),
    /// Allocate an address for a VM (idempotent per VM id).
    Allocate {
        #[arg(long)]
        subdivision: String,
        #[arg(long)]
        vm: String,
        /// Application profile (from the configuration).
        #[arg(long)]
        profile: Option<String>,
        /// Pool to draw from (default: the subdivision's first pool).
        #[arg(long)]
        pool: Option<String>,
    },
    /// Release a VM's address (it cools down before reuse).
    Release {
        #[arg(long)]
        vm: String,
    },
    /// List leases.
    Leases {
        #[arg(long)]
        subdivision: Option<String>,
    },
    /// List non-free shards with their state and last transition reason.
    Shards {
        #[arg(long)]
        subdivision: Option<String>,
    },
    /// Shard lifecycle by hand: claim, activate, drain, release.
    #[command(subcommand)]
    Shard(ShardCmd),
    /// Router configurations (FRR, BIRD) that announce the shards: list, render, diff, apply.
    #[command(subcommand)]
    Router(RouterCmd),
    /// The minimal CIDR cover (routes) of each subdivision's shards.
    Routes {
        #[arg(long)]
        subdivision: Option<String>,
    },
    /// Summary of the store.
    Status,
    /// The VM event history recorded by allocations and releases.
    History {
        /// Show events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Event traces: import real traces, check canonical ones.
    #[command(subcommand)]
    Trace(TraceCmd),
    /// Forecast each subdivision: alive VMs, peak alive over the horizon, creations, bandwidth and
    /// demand score, with calibrated quantiles (history from --events, else from the store).
    Forecast {
        /// Canonical event trace (CSV, optionally gzip); default: the history in the store.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Only this subdivision.
        #[arg(long)]
        subdivision: Option<String>,
        /// How far ahead (a whole number of --resolution steps).
        #[arg(long, default_value = "1h")]
        horizon: String,
        /// Bucket width of the history.
        #[arg(long, default_value = "5m")]
        resolution: String,
        /// Quantile levels reported, comma-separated, each in (0, 1).
        #[arg(long, default_value = "0.5,0.8,0.95,0.99")]
        quantiles: String,
    },
    /// Replay a trace against an allocation policy (on-demand, warm-target, watermark, predictive, adaptive, oracle) and measure misses, waits,
    /// idle addresses and routes.
    Simulate {
        #[arg(long)]
        events: PathBuf,
        /// on-demand | warm-target | watermark | predictive | adaptive | oracle (not with --sweep)
        #[arg(long, required_unless_present = "sweep")]
        policy: Option<String>,
        /// Run every policy over a grid of its knobs and print the Pareto table.
        #[arg(long, conflicts_with_all = ["policy", "params"])]
        sweep: bool,
        /// With --sweep: write the plot (miss rate against idle addresses) as SVG here.
        #[arg(long, requires = "sweep")]
        plot: Option<PathBuf>,
        /// Policy parameter key=value (repeatable), e.g. release_delay=3600; the adaptive policy's
        /// candidates: experts='on-demand release_delay=0; predictive quantile=0.9'.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Seconds from a claim until the shard serves (claim, router update, convergence).
        #[arg(long, allow_negative_numbers = true)]
        lead_time: f64,
        /// Shard prefix length (IPv4): 26 = 64 addresses.
        #[arg(long, default_value_t = 26)]
        shard_prefix: u8,
        /// Adaptive shard sizes: the shortest prefix (largest shard) the predictive policy may
        /// claim. Default: --shard-prefix.
        #[arg(long)]
        min_shard_prefix: Option<u8>,
        /// Adaptive shard sizes: the longest prefix (smallest shard) the predictive policy may
        /// claim. Default: --shard-prefix.
        #[arg(long)]
        max_shard_prefix: Option<u8>,
        /// Evaluation window START:END in trace seconds.
        #[arg(long)]
        window: Option<String>,
        /// Also report each subdivision.
        #[arg(long)]
        per_subdivision: bool,
    },
    /// Rolling-origin backtest of the forecasting models on a canonical event trace.
    Backtest {
        /// Canonical event trace (CSV, optionally gzip).
        #[arg(long)]
        events: PathBuf,
        /// What to forecast per bucket: peak or mean alive.
        #[arg(long, default_value = "peak")]
        target: String,
        /// Bucket width (e.g. 5m, 1h).
        #[arg(long, default_value = "1h")]
        resolution: String,
        /// Steps ahead scored from each origin (1h at 1h resolution: one-step-ahead).
        #[arg(long, default_value = "1h")]
        horizon: String,
        /// Refit every ... on all history before that point.
        #[arg(long, default_value = "24h")]
        refit_every: String,
        /// First time scored, trace seconds (default: first event + 4 days).
        #[arg(long)]
        eval_start: Option<f64>,
        /// Only the N subdivisions with the most creations.
        #[arg(long)]
        top: Option<usize>,
        /// Recent errors kept per step ahead to calibrate the intervals and to select models.
        #[arg(long, default_value = "3d")]
        calibration_window: String,
    },
    /// Replay a real trace through the allocator twice, shards claimed on demand and then
    /// forecast, planned and prefetched, and compare (default: the bundled slice).
    Demo {
        /// A canonical event trace (CSV, optionally gzip) instead of the bundled slice.
        #[arg(long)]
        events: Option<PathBuf>,
        /// Seconds from a shard's reservation until routers announce it (the prefetcher looks
        /// this far ahead).
        #[arg(long, default_value_t = 60.0, value_parser = non_negative_seconds)]
        lead_time: f64,
        /// Events per durable commit.
        #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
        batch: u64,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run the daemon: the HTTP API, the reconciler and the metrics, on the embedded store.
    Serve {
        /// Address to listen on (default: the config's [server] listen, else 127.0.0.1:8470;
        /// port 0 picks a free one, printed at startup).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve without authentication on a non-loopback address (no [[token]] configured).
        #[arg(long)]
        insecure_no_auth: bool,
    },
    /// Bearer tokens of the API.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Tools for tests.
    #[command(subcommand, hide = true)]
    Debug(DebugCmd),
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Make a random secret and print the [[token]] table (with its SHA-256) to add to the
    /// configuration.
    New {
        /// The token's name (in logs).
        #[arg(long)]
        name: String,
        /// admin, operator, allocator or reader.
        #[arg(long, value_parser = parse_role)]
        role: cidrcast_config::Role,
        /// Limit the token to this tenant (pool VRF); repeat for several.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Limit the token to this subdivision and those below it; repeat for several.
        #[arg(long = "subdivision")]
        subdivisions: Vec<String>,
    },
    /// Print the SHA-256 of a secret read from standard input.
    Hash,
}

fn parse_role(s: &str) -> Result<cidrcast_config::Role, String> {
    use cidrcast_config::Role;
    match s {
        "admin" => Ok(Role::Admin),
        "operator" => Ok(Role::Operator),
        "allocator" => Ok(Role::Allocator),
        "reader" => Ok(Role::Reader),
        _ => Err(format!(
            "{s:?} is not a role: use admin, operator, allocator or reader"
        )),
    }
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Add a pool.
    Add {
        name: String,
        /// Root prefix, e.g. 10.0.0.0/8 or fd00::/48.
        #[arg(long)]
        prefix: String,
        /// Prefix length of one shard, e.g. 26 (the default shard size).
        #[arg(long)]
        shard_prefix_len: u8,
        /// Shortest shard prefix length handed out (largest shards; default: --shard-prefix-len).
        #[arg(long)]
        min_shard_prefix_len: Option<u8>,
        /// Longest shard prefix length handed out (smallest shards; default: --shard-prefix-len).
        #[arg(long)]
        max_shard_prefix_len: Option<u8>,
        #[arg(long)]
        vrf: Option<String>,
        /// A range never handed out (repeatable).
        #[arg(long)]
        reserved: Vec<String>,
        /// Addresses at the start of each shard never leased (network, gateway).
        #[arg(long, default_value_t = 0)]
        reserve_first: u32,
        /// Addresses at the end of each shard never leased (broadcast).
        #[arg(long, default_value_t = 0)]
        reserve_last: u32,
    },
    /// List pools with their usage.
    List,
    /// Remove a pool that holds no shard.
    Remove { name: String },
}

#[derive(Subcommand)]
enum SubdivisionCmd {
    /// Add a subdivision.
    Add {
        name: String,
        #[arg(long)]
        parent: Option<String>,
        /// Pool to draw from (repeatable; default: every pool).
        #[arg(long = "pool")]
        pools: Vec<String>,
        #[arg(long)]
        max_shards: Option<u32>,
        /// Home block size in shards (a power of two).
        #[arg(long)]
        home_shards: Option<u32>,
        /// Router announcing it (repeatable; defined in the configuration).
        #[arg(long = "router")]
        routers: Vec<String>,
    },
    /// List subdivisions with shards, leases, home blocks and routes.
    List,
    /// Remove a subdivision with no shard, lease or child.
    Remove { name: String },
}

#[derive(Subcommand)]
enum EventCmd {
    /// Schedule an event, or replace the one of the same name.
    Add {
        /// Unique name (1 to 64 of A-Z a-z 0-9 . _ -).
        name: String,
        /// Start of the window, seconds (Unix time; trace time in replays).
        #[arg(long, allow_hyphen_values = true)]
        start: String,
        /// End of the window (exclusive), seconds, greater than --start.
        #[arg(long, allow_hyphen_values = true)]
        end: String,
        /// Subdivision it applies to, with all its descendants; '*' for every subdivision.
        #[arg(long)]
        scope: String,
        /// Expected additional VMs alive during the window (>= 0).
        #[arg(long, allow_hyphen_values = true)]
        extra_vms: Option<String>,
        /// Factor applied to the forecast during the window (> 0).
        #[arg(long, allow_hyphen_values = true)]
        multiplier: Option<String>,
    },
    /// List scheduled events, by name.
    List,
    /// Remove a scheduled event.
    Remove { name: String },
}

#[derive(Subcommand)]
enum RouterCmd {
    /// List routers with their announced prefixes and whether the deployed file is up to date.
    List,
    /// Print a router's configuration rendered from the current shard set.
    Render {
        #[arg(long)]
        router: String,
        /// frr | bird | json (default: the router's flavor).
        #[arg(long)]
        format: Option<String>,
    },
    /// Show what `apply` would change: a unified diff from the deployed file to the rendering.
    Diff {
        #[arg(long)]
        router: String,
        /// Exit with status 3 when the deployed file differs (errors exit 1).
        #[arg(long)]
        exit_code: bool,
    },
    /// Validate the rendering with the daemon's parser, write it atomically to the router's
    /// config_path, run its reload_command; a failed reload puts the previous file back.
    Apply {
        #[arg(long)]
        router: String,
    },
}

#[derive(Subcommand)]
enum ShardCmd {
    /// Claim a free shard for a subdivision (free → reserved).
    Claim {
        #[arg(long)]
        subdivision: String,
        #[arg(long)]
        pool: Option<String>,
        /// Prefix length of the shard, within the pool's min/max shard prefix lengths
        /// (default: the pool's shard_prefix_len).
        #[arg(long)]
        prefix_len: Option<u8>,
    },
    /// Activate a reserved (or draining) shard.
    Activate { prefix: String },
    /// Drain an active shard: no new leases; released once empty.
    Drain { prefix: String },
    /// Release a shard with no leases.
    Release { prefix: String },
}

#[derive(Subcommand)]
enum TraceCmd {
    /// Convert raw trace parts into the canonical event format.
    Import {
        /// Source format: google2011-task-events.
        #[arg(long)]
        from: String,
        /// What a subdivision is: user, job or machine.
        #[arg(long, default_value = "user")]
        group_by: String,
        /// Keep the N subdivisions with the most creations.
        #[arg(long)]
        top: Option<usize>,
        /// Window start, trace seconds.
        #[arg(long)]
        start: Option<f64>,
        /// Window end, trace seconds.
        #[arg(long)]
        end: Option<f64>,
        /// Output file (.csv or .csv.gz).
        #[arg(short, long)]
        out: PathBuf,
        /// The raw parts, in order.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
    },
    /// Validate a canonical trace and summarise it.
    Check {
        file: PathBuf,
        /// Skip (and count) lifecycle errors instead of failing.
        #[arg(long)]
        skip_invalid: bool,
    },
}

#[derive(Subcommand)]
enum DebugCmd {
    /// Allocate in a loop, printing `ack VM ADDRESS` after each durable allocation.
    AllocLoop {
        #[arg(long, default_value = "crash")]
        subdivision: String,
        #[arg(long, default_value_t = 4)]
        threads: usize,
        #[arg(long, default_value_t = u64::MAX)]
        count: u64,
    },
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let data_explicit = cli.data.is_some();
    let ctx = || Ctx::new(cli.config.clone(), cli.data.clone(), cli.output);
    match cli.command {
        Command::Init { path, force } => admin::init(&path, force),
        Command::Pool(PoolCmd::Add {
            name,
            prefix,
            shard_prefix_len,
            min_shard_prefix_len,
            max_shard_prefix_len,
            vrf,
            reserved,
            reserve_first,
            reserve_last,
        }) => admin::pool_add(
            &ctx()?,
            admin::PoolAdd {
                name,
                prefix,
                shard_prefix_len,
                min_shard_prefix_len,
                max_shard_prefix_len,
                vrf,
                reserved,
                reserve_first,
                reserve_last,
            },
        ),
        Command::Pool(PoolCmd::List) => admin::pool_list(&ctx()?),
        Command::Pool(PoolCmd::Remove { name }) => admin::pool_remove(&ctx()?, &name),
        Command::Subdivision(SubdivisionCmd::Add {
            name,
            parent,
            pools,
            max_shards,
            home_shards,
            routers,
        }) => admin::subdivision_add(
            &ctx()?,
            admin::SubdivisionAdd {
                name,
                parent,
                pools,
                max_shards,
                home_shards,
                routers,
            },
        ),
        Command::Subdivision(SubdivisionCmd::List) => admin::subdivision_list(&ctx()?),
        Command::Subdivision(SubdivisionCmd::Remove { name }) => {
            admin::subdivision_remove(&ctx()?, &name)
        }
        Command::Event(EventCmd::Add {
            name,
            start,
            end,
            scope,
            extra_vms,
            multiplier,
        }) => events::add(
            &ctx()?,
            events::EventAdd {
                name,
                start,
                end,
                scope,
                extra_vms,
                multiplier,
            },
        ),
        Command::Event(EventCmd::List) => events::list(&ctx()?),
        Command::Event(EventCmd::Remove { name }) => events::remove(&ctx()?, &name),
        Command::Allocate {
            subdivision,
            vm,
            profile,
            pool,
        } => lease::allocate(
            &ctx()?,
            &subdivision,
            &vm,
            profile.as_deref(),
            pool.as_deref(),
        ),
        Command::Release { vm } => lease::release(&ctx()?, &vm),
        Command::Leases { subdivision } => lease::leases(&ctx()?, subdivision.as_deref()),
        Command::Shards { subdivision } => shards::list(&ctx()?, subdivision.as_deref()),
        Command::Shard(ShardCmd::Claim {
            subdivision,
            pool,
            prefix_len,
        }) => shards::claim(&ctx()?, &subdivision, pool.as_deref(), prefix_len),
        Command::Shard(ShardCmd::Activate { prefix }) => shards::activate(&ctx()?, &prefix),
        Command::Shard(ShardCmd::Drain { prefix }) => shards::drain(&ctx()?, &prefix),
        Command::Shard(ShardCmd::Release { prefix }) => shards::release(&ctx()?, &prefix),
        Command::Routes { subdivision } => shards::routes(&ctx()?, subdivision.as_deref()),
        Command::Router(RouterCmd::List) => router::list(&ctx()?),
        Command::Router(RouterCmd::Render { router, format }) => {
            router::render(&ctx()?, &router, format.as_deref())
        }
        Command::Router(RouterCmd::Diff { router, exit_code }) => {
            if router::diff(&ctx()?, &router, exit_code)? {
                use std::io::Write;
                let _ = std::io::stdout().flush();
                std::process::exit(3);
            }
            Ok(())
        }
        Command::Router(RouterCmd::Apply { router }) => router::apply(&ctx()?, &router),
        Command::Serve {
            listen,
            insecure_no_auth,
        } => serve::serve(
            &ctx()?,
            serve::ServeArgs {
                listen,
                insecure_no_auth,
            },
        ),
        Command::Token(TokenCmd::New {
            name,
            role,
            tenants,
            subdivisions,
        }) => serve::token_new(&name, role, &tenants, &subdivisions),
        Command::Token(TokenCmd::Hash) => serve::token_hash(),
        Command::Status => status::status(&ctx()?),
        Command::History { after, limit } => status::history(&ctx()?, after, limit),
        Command::Trace(TraceCmd::Import {
            from,
            group_by,
            top,
            start,
            end,
            out,
            parts,
        }) => trace::import(cli.output, &from, &group_by, &parts, &out, top, start, end),
        Command::Trace(TraceCmd::Check { file, skip_invalid }) => {
            trace::check(cli.output, &file, skip_invalid)
        }
        Command::Forecast {
            events,
            subdivision,
            horizon,
            resolution,
            quantiles,
        } => forecast::forecast(
            &ctx()?,
            forecast::ForecastArgs {
                events,
                subdivision,
                horizon,
                resolution,
                quantiles,
            },
        ),
        Command::Simulate {
            events,
            policy,
            sweep,
            plot,
            params,
            lead_time,
            shard_prefix,
            min_shard_prefix,
            max_shard_prefix,
            window,
            per_subdivision,
        } => simulate::simulate(
            cli.output,
            &events,
            simulate::SimulateArgs {
                policy,
                sweep,
                plot,
                params,
                lead_time,
                shard_prefix,
                min_shard_prefix,
                max_shard_prefix,
                window,
                per_subdivision,
            },
        ),
        Command::Backtest {
            events,
            target,
            resolution,
            horizon,
            refit_every,
            eval_start,
            top,
            calibration_window,
        } => forecast::backtest(
            cli.output,
            &events,
            forecast::BacktestArgs {
                target,
                resolution,
                horizon,
                refit_every,
                eval_start,
                top,
                calibration_window,
            },
        ),
        Command::Demo {
            events,
            lead_time,
            batch,
            quiet,
        } => demo::demo(
            &ctx()?,
            data_explicit,
            demo::DemoArgs {
                events,
                lead_time,
                batch: batch as usize,
                progress: !quiet,
            },
        ),
        Command::Debug(DebugCmd::AllocLoop {
            subdivision,
            threads,
            count,
        }) => debug::alloc_loop(&ctx()?, &subdivision, threads, count),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the first line of the error and of each cause.
            let chain: Vec<String> = e
                .chain()
                .map(|c| {
                    c.to_string()
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect();
            let mut line = String::new();
            for c in chain {
                if !line.contains(&c) {
                    if !line.is_empty() {
                        line.push_str(": ");
                    }
                    line.push_str(&c);
                }
            }
            eprintln!("error: {line}");
            // A router daemon's own words (its parser's errors, a reload command's output)
            // follow, indented.
            if let Some(r) = e.downcast_ref::<cidrcast_router::RouterError>() {
                for l in r.to_string().lines().skip(1) {
                    eprintln!("  {l}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// A number of seconds: finite and not negative.
fn non_negative_seconds(v: &str) -> Result<f64, String> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("expected a number of seconds >= 0, got `{v}`")),
    }
}
