//! `[server]` and `[[token]]`: what `cidrcast serve` reads.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The address `cidrcast serve` listens on when neither the command line nor `[server]` names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// `[server]`: the daemon's settings. Every key has a default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address and port to listen on (default 127.0.0.1:8470; `--listen` overrides it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Seconds between two runs of the reconciler (history → forecasts → plan → apply); > 0.
    pub reconcile_interval_s: f64,
    /// Seconds from a shard's reservation until routers announce it (claim, router update,
    /// convergence): the planner activates reserved shards after it, and the prefetcher holds
    /// what the forecast says will be needed over it. >= 0.
    pub lead_time_s: f64,
    /// Miss rate (allocations that found no ready address) the prefetcher steers its quantile
    /// towards, in (0, 1); `None` keeps the quantile fixed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_miss_rate: Option<f64>,
    /// Largest JSON request body in bytes (larger ones get 413); >= 1024.
    pub max_body_bytes: usize,
    /// Largest history import (a streamed request body) in bytes; >= 1024.
    pub max_import_bytes: u64,
    /// PEM certificate chain: with `tls_key`, the daemon serves HTTPS (rustls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// With `[store] kind = "etcd"`: seconds of the etcd lease behind the leader election
    /// (2 to 60). When the leader dies, another daemon takes over the reconciler within about
    /// this long.
    pub leader_ttl_s: f64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            listen: None,
            reconcile_interval_s: 60.0,
            lead_time_s: 60.0,
            target_miss_rate: Some(0.001),
            max_body_bytes: 1 << 20,
            max_import_bytes: 1 << 30,
            tls_cert: None,
            tls_key: None,
            leader_ttl_s: 10.0,
        }
    }
}

/// What a token may do. Each role may do everything the roles after it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including pools.
    Admin,
    /// Subdivisions, profiles, routers, events, history, plans, shards.
    Operator,
    /// Allocate and release addresses.
    Allocator,
    /// Read.
    Reader,
}

impl Role {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Allocator => "allocator",
            Role::Reader => "reader",
        }
    }

    /// Whether this role may do what `needed` may do.
    pub fn allows(self, needed: Role) -> bool {
        self <= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[token]]`: a bearer token of the API, stored as the SHA-256 of the secret (never the secret;
/// `cidrcast token new` makes one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// Unique name (in logs and metrics; never the secret).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// Lower-case hex SHA-256 of the secret the client sends as `Authorization: Bearer SECRET`.
    pub sha256: String,
    /// Tenants (pool VRFs) the token is limited to. With `subdivisions` empty too, the token is
    /// not limited.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Subdivisions (with everything below them) the token is limited to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subdivisions: Vec<String>,
}

impl TokenSpec {
    /// Whether the token is limited to some tenants or subdivisions.
    pub fn is_scoped(&self) -> bool {
        !self.tenants.is_empty() || !self.subdivisions.is_empty()
    }
}
