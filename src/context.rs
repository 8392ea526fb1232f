//! What every command needs: the configuration, the data directory, the engine over the store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cidrcast_config::{Config, StoreKind, StoreSettings};
use cidrcast_engine::Engine;
use cidrcast_store::{RedbOptions, RedbStore, Store};

use crate::output::Format;

/// The default data directory when neither `--data` nor the config names one.
pub const DEFAULT_DATA_DIR: &str = "cidrcast-data";
/// The config file read when `--config` is not given and it exists.
pub const DEFAULT_CONFIG_FILE: &str = "cidrcast.toml";

/// Global options, resolved.
pub struct Ctx {
    pub config: Config,
    /// Where the config came from (`None`: the built-in default).
    pub config_path: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub output: Format,
}

impl Ctx {
    pub fn new(config: Option<PathBuf>, data: Option<PathBuf>, output: Format) -> Result<Ctx> {
        let config_path = config.or_else(|| {
            let p = PathBuf::from(DEFAULT_CONFIG_FILE);
            p.exists().then_some(p)
        });
        let config = match &config_path {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        let data_dir = data
            .or_else(|| config.settings.data_dir.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        Ok(Ctx {
            config,
            config_path,
            data_dir,
            output,
        })
    }

    /// Opens the store in the data directory and brings the configuration into it: an explicit
    /// config file's pools and subdivisions are created when missing (and must match when
    /// present), and its profiles, routers and scheduled events are created or replaced by name
    /// (the file is the source of truth for the ones it names; other stored ones are kept); the
    /// built-in default pools only seed a store without pools, the built-in default profiles a
    /// store without profiles.
    pub fn engine(&self) -> Result<Engine<Box<dyn Store>>> {
        open_engine(&self.data_dir, &self.config, self.config_path.is_some())
    }

    /// Checks that a profile name is defined.
    pub fn check_profile(&self, profile: Option<&str>) -> Result<()> {
        if let Some(p) = profile {
            if self.config.profile(p).is_none() {
                let known: Vec<&str> = self
                    .config
                    .profiles
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect();
                anyhow::bail!("unknown profile `{p}` (defined: {})", known.join(", "));
            }
        }
        Ok(())
    }
}

/// The store `config` names (`[store]`): the redb file in `dir` (default), or etcd.
pub fn open_store(dir: &Path, config: &Config) -> Result<Box<dyn Store>> {
    match config.store.kind {
        StoreKind::Redb => {
            let store = RedbStore::open_with(dir, RedbOptions::default())
                .with_context(|| format!("cannot open the store in {}", dir.display()))?;
            Ok(Box::new(store))
        }
        StoreKind::Etcd => open_etcd(&config.store),
    }
}

/// What the store is, for messages: its directory or its etcd endpoints.
pub fn store_label(dir: &Path, config: &Config) -> String {
    match config.store.kind {
        StoreKind::Redb => dir.display().to_string(),
        StoreKind::Etcd => format!(
            "etcd {} under {}",
            config.store.endpoints.join(","),
            config.store.prefix
        ),
    }
}

/// The etcd client options of `[store]` (the password read from its file).
#[cfg(feature = "etcd")]
pub fn etcd_options(s: &StoreSettings) -> Result<cidrcast_store::EtcdOptions> {
    use cidrcast_store::{EtcdOptions, EtcdTls};
    let password = match &s.password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .with_context(|| format!("[store] password_file {}", p.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_string(),
        ),
        None => None,
    };
    let mut opts = EtcdOptions::new(s.endpoints.clone(), s.prefix.clone());
    opts.username = s.username.clone();
    opts.password = password;
    opts.tls = s.tls_ca.as_ref().map(|ca| EtcdTls {
        ca: ca.clone(),
        cert: s.tls_cert.clone(),
        key: s.tls_key.clone(),
    });
    opts.connect_timeout = std::time::Duration::from_secs_f64(s.connect_timeout_s);
    opts.request_timeout = std::time::Duration::from_secs_f64(s.request_timeout_s);
    Ok(opts)
}

#[cfg(feature = "etcd")]
fn open_etcd(s: &StoreSettings) -> Result<Box<dyn Store>> {
    let store = cidrcast_store::EtcdStore::connect(etcd_options(s)?)
        .with_context(|| format!("cannot open the etcd store at {}", s.endpoints.join(",")))?;
    Ok(Box::new(store))
}

#[cfg(not(feature = "etcd"))]
fn open_etcd(_: &StoreSettings) -> Result<Box<dyn Store>> {
    anyhow::bail!(
        "[store] kind = \"etcd\", but this build of cidrcast has no etcd support: build it with \
         `cargo build --release --features etcd` (needs Debian's protobuf-compiler and \
         libprotobuf-dev)"
    )
}

/// Opens the engine over the store `config` names, bringing `config` into it.
pub fn open_engine(dir: &Path, config: &Config, explicit: bool) -> Result<Engine<Box<dyn Store>>> {
    let store = open_store(dir, config)?;
    let engine = Engine::open(store, config.settings.to_core())
        .with_context(|| format!("cannot load the store in {}", store_label(dir, config)))?;
    // Daemons starting together on a shared store bring the same configuration in at once: one
    // wins, the others conflict, reload (the engine does) and find it there.
    let mut attempt = 0;
    loop {
        match bring_in(&engine, config, explicit) {
            Err(e)
                if attempt < 8
                    && matches!(
                        e.downcast_ref::<cidrcast_engine::EngineError>(),
                        Some(cidrcast_engine::EngineError::Conflict(_))
                    ) =>
            {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 << attempt.min(5)));
            }
            other => break other?,
        }
    }
    Ok(engine)
}

/// Brings `config` into the store under `engine`: an explicit config file's pools, subdivisions,
/// profiles, routers and events are created when missing (pools and subdivisions must match when
/// present; profiles, routers and events are replaced by name); the built-in defaults only seed
/// an empty store.
pub fn bring_in<S: Store>(engine: &Engine<S>, config: &Config, explicit: bool) -> Result<()> {
    let subs: Vec<_> = config
        .subdivisions_parents_first()
        .into_iter()
        .cloned()
        .collect();
    if explicit || engine.read(|ipam| ipam.pool_specs().is_empty())? {
        engine.ensure_config(&config.pools, &subs)?;
    }
    if explicit || engine.profiles()?.is_empty() {
        engine.ensure_profiles(&config.profiles)?;
    }
    if explicit {
        // After the subdivisions: an event's scope and a router's subdivisions must exist.
        engine.ensure_routers(&config.routers)?;
        engine.ensure_events(&config.events)?;
    }
    Ok(())
}
