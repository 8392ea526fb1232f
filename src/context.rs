//! What every command needs: the configuration, the data directory, the engine over the store.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cidrcast_config::Config;
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
    pub fn engine(&self) -> Result<Engine<RedbStore>> {
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

/// Opens the engine over a redb store in `dir`, bringing `config` into it.
pub fn open_engine(dir: &Path, config: &Config, explicit: bool) -> Result<Engine<RedbStore>> {
    let store = RedbStore::open_with(dir, RedbOptions::default())
        .with_context(|| format!("cannot open the store in {}", dir.display()))?;
    let engine = Engine::open(store, config.settings.to_core())
        .with_context(|| format!("cannot load the store in {}", dir.display()))?;
    bring_in(&engine, config, explicit)?;
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
