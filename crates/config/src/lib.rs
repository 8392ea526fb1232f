//! The strict TOML configuration of cidrcast.
//!
//! A file has a `[settings]` table and arrays of tables `[[pool]]`, `[[subdivision]]`,
//! `[[profile]]`, `[[router]]` and `[[event]]` (see [`EXAMPLE_TOML`]). Pools, subdivisions,
//! application profiles, routers and scheduled external events are the core crate's
//! [`PoolSpec`], [`SubdivisionSpec`], [`Profile`], [`RouterSpec`] and [`ExternalEventSpec`], the
//! same types the API takes. Every table rejects unknown keys, and [`Config::from_toml_str`] /
//! [`Config::load`] validate the whole file ([`Config::validate`]); every error ([`ConfigError`])
//! names the file, the entry, the field and the value.

mod error;
mod example;
mod server;
mod store;
mod validate;

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use cidrcast_core::model::default_vrf;
pub use cidrcast_core::model::{
    Community, ExternalEventSpec, Flavor, Neighbor, PoolSpec, Profile, RouterSpec, RoutingPolicy,
    SubdivisionSpec, DEFAULT_COOLDOWN_S, EVENT_SCOPE_ALL,
};
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use example::EXAMPLE_TOML;
pub use server::{Role, ServerSettings, TokenSpec, DEFAULT_LISTEN};
pub use store::{StoreKind, StoreSettings, DEFAULT_ETCD_PREFIX};

/// A whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[settings]`; every key has a default, so the table may be left out.
    #[serde(default)]
    pub settings: Settings,
    /// `[[pool]]`: root prefixes carved into shards.
    #[serde(rename = "pool", default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpec>,
    /// `[[subdivision]]`: places that run VMs.
    #[serde(rename = "subdivision", default, skip_serializing_if = "Vec::is_empty")]
    pub subdivisions: Vec<SubdivisionSpec>,
    /// `[[profile]]`: application profiles (VM classes).
    #[serde(rename = "profile", default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<Profile>,
    /// `[[router]]`: routers that announce shards.
    #[serde(rename = "router", default, skip_serializing_if = "Vec::is_empty")]
    pub routers: Vec<RouterSpec>,
    /// `[[event]]`: scheduled external events the forecasts must reflect. The file is the source
    /// of truth for the events it names: they are created, or replaced when they differ, in the
    /// store each time the file is used; events added through the CLI or API under other names
    /// are kept.
    #[serde(rename = "event", default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<ExternalEventSpec>,
    /// `[server]`: the daemon (`cidrcast serve`); every key has a default.
    #[serde(default)]
    pub server: ServerSettings,
    /// `[store]`: the embedded redb file (default) or an etcd cluster.
    #[serde(default)]
    pub store: StoreSettings,
    /// `[[token]]`: bearer tokens of the API (their SHA-256, never the secret). None: the daemon
    /// runs without authentication, on loopback only.
    #[serde(rename = "token", default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<TokenSpec>,
}

/// `[settings]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Release cooldown in seconds before an address is handed out again (finite, >= 0).
    pub cooldown_s: f64,
    /// Where the daemon keeps its store; `None` leaves it to the command line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// The allocator settings these stand for.
    pub fn to_core(&self) -> cidrcast_core::Settings {
        cidrcast_core::Settings {
            cooldown_s: self.cooldown_s,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cooldown_s: DEFAULT_COOLDOWN_S,
            data_dir: None,
        }
    }
}

impl Default for Config {
    /// The built-in configuration used when no file is given: pools `v4` = 10.0.0.0/8 in /26
    /// shards and `v6` = fd00::/48 in /64 shards, a 30 s cooldown, profiles `small`, `general`
    /// and `large`, no subdivisions and no routers.
    fn default() -> Self {
        let pool =
            |name: &str, prefix: &str, shard_prefix_len, reserve_first, reserve_last| PoolSpec {
                name: name.to_string(),
                prefix: prefix.parse().expect("valid built-in prefix"),
                shard_prefix_len,
                min_shard_prefix_len: None,
                max_shard_prefix_len: None,
                vrf: default_vrf(),
                reserved: Vec::new(),
                reserve_first,
                reserve_last,
            };
        let profile = |name: &str, vcpus, memory_gib, network_mbps, description: &str| Profile {
            name: name.to_string(),
            vcpus,
            memory_gib,
            network_mbps,
            description: Some(description.to_string()),
        };
        Config {
            settings: Settings::default(),
            pools: vec![
                // Network address and gateway at the start, broadcast at the end of every /26.
                pool("v4", "10.0.0.0/8", 26, 2, 1),
                // Subnet-router anycast (::0) and gateway (::1) of every /64.
                pool("v6", "fd00::/48", 64, 2, 0),
            ],
            subdivisions: Vec::new(),
            profiles: vec![
                profile("small", 1, 2.0, 100.0, "small VM: sidecars, CI runners"),
                profile("general", 4, 16.0, 1000.0, "general purpose VM"),
                profile("large", 16, 64.0, 10000.0, "large VM: databases, caches"),
            ],
            routers: Vec::new(),
            events: Vec::new(),
            server: ServerSettings::default(),
            store: StoreSettings::default(),
            tokens: Vec::new(),
        }
    }
}

impl Config {
    /// Parses `s` strictly and validates it. `origin` names the source in error messages (a file
    /// path, `<built-in example>`, ...).
    pub fn from_toml_str(s: &str, origin: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(s).map_err(|e| ConfigError::parse(origin, s, &e))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads, parses and validates the file at `path`; errors name the path.
    pub fn load(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, &path.display().to_string())
    }

    /// Writes the configuration as TOML; [`Config::from_toml_str`] reads it back unchanged.
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        Ok(toml::to_string_pretty(self)?)
    }

    /// Checks every cross-field and cross-entry rule (names unique, prefixes aligned, shard sizes,
    /// reserved ranges, pool overlaps per VRF, references, parent cycles, home/max shards, AS
    /// numbers, router ids, profile numbers, cooldown, event windows, effects and scopes). Returns the first violation; `origin`
    /// names the source in its message.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        validate::validate(self, origin)
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&PoolSpec> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The subdivision named `name`.
    pub fn subdivision(&self, name: &str) -> Option<&SubdivisionSpec> {
        self.subdivisions.iter().find(|s| s.name == name)
    }

    /// The profile named `name`.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The router named `name`.
    pub fn router(&self, name: &str) -> Option<&RouterSpec> {
        self.routers.iter().find(|r| r.name == name)
    }

    /// The scheduled external event named `name`.
    pub fn event(&self, name: &str) -> Option<&ExternalEventSpec> {
        self.events.iter().find(|e| e.name == name)
    }

    /// The subdivisions with every parent before its children (otherwise in configuration
    /// order): the order in which to add them to an `Ipam`. Subdivisions on a parent cycle or
    /// under an unknown parent (which [`Config::validate`] rejects) come last.
    pub fn subdivisions_parents_first(&self) -> Vec<&SubdivisionSpec> {
        let mut out: Vec<&SubdivisionSpec> = Vec::with_capacity(self.subdivisions.len());
        let mut placed = vec![false; self.subdivisions.len()];
        let mut names: HashSet<&str> = HashSet::new();
        loop {
            let before = out.len();
            for (i, s) in self.subdivisions.iter().enumerate() {
                let ready = match s.parent.as_deref() {
                    None => true,
                    Some(p) => names.contains(p),
                };
                if !placed[i] && ready {
                    placed[i] = true;
                    names.insert(&s.name);
                    out.push(s);
                }
            }
            if out.len() == before {
                break;
            }
        }
        for (i, s) in self.subdivisions.iter().enumerate() {
            if !placed[i] {
                out.push(s);
            }
        }
        out
    }

    /// The subdivisions router `router` announces: those it lists in `subdivisions` and those that
    /// list it in their `routers`, each once, in configuration order (the router's list first).
    pub fn router_subdivisions(&self, router: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        if let Some(r) = self.router(router) {
            for s in &r.subdivisions {
                if !out.contains(&s.as_str()) {
                    out.push(s);
                }
            }
        }
        for s in &self.subdivisions {
            if s.routers.iter().any(|r| r == router) && !out.contains(&s.name.as_str()) {
                out.push(&s.name);
            }
        }
        out
    }
}
