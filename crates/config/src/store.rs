//! `[store]`: where the records live. The embedded redb file by default; etcd for several daemons.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The store backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// One redb file in the data directory (one process).
    #[default]
    Redb,
    /// An etcd cluster (v3 API), shared by several daemons.
    Etcd,
}

impl StoreKind {
    /// Lower-case name, as in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Redb => "redb",
            StoreKind::Etcd => "etcd",
        }
    }
}

/// `[store]`. Every key has a default; the etcd keys only matter with `kind = "etcd"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `redb` (default) or `etcd`.
    pub kind: StoreKind,
    /// etcd client URLs, e.g. `["http://10.0.0.1:2379", "http://10.0.0.2:2379"]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    /// Prefix of every key cidrcast writes in etcd: starts and ends with `/` (default
    /// `/cidrcast/`). Two deployments on one cluster use two prefixes.
    pub prefix: String,
    /// etcd user (with `password_file`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// File holding the etcd user's password (its first line); kept out of this file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// CA certificate (PEM) that signed etcd's server certificate: connects over TLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for etcd's client-certificate authentication, with `tls_key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Seconds to wait for a connection, > 0.
    pub connect_timeout_s: f64,
    /// Seconds to wait for one request, > 0.
    pub request_timeout_s: f64,
}

/// The key prefix when none is given.
pub const DEFAULT_ETCD_PREFIX: &str = "/cidrcast/";

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            kind: StoreKind::Redb,
            endpoints: Vec::new(),
            prefix: DEFAULT_ETCD_PREFIX.to_string(),
            username: None,
            password_file: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            connect_timeout_s: 5.0,
            request_timeout_s: 5.0,
        }
    }
}
