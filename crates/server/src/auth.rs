//! Bearer tokens, roles and scopes.
//!
//! Tokens are configured as `[[token]]` tables holding the SHA-256 of the secret, never the
//! secret. A request presents `Authorization: Bearer SECRET`; the daemon hashes it and looks the
//! hash up. No header or an unknown secret: 401. A role that does not allow the operation, or a
//! subdivision or pool outside the token's scope: 403.
//!
//! Scope: a token limited to tenants (pool VRFs) sees the pools of those VRFs and the
//! subdivisions that draw only from such pools; a token limited to subdivisions sees those
//! subdivisions and everything below them (and the pools they draw from, read-only). Leases and
//! shards are seen through their subdivision. Operations on the whole system (pools, profiles,
//! routers, plans) need a token that is not limited.

use std::collections::HashMap;

use cidrcast_config::{Role, TokenSpec};
use cidrcast_core::model::PoolSpec;
use cidrcast_core::Ipam;
use sha2::{Digest, Sha256};

use crate::error::ServerError;

/// Lower-case hex SHA-256 of `secret`: what a `[[token]]` stores.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// The configured tokens, by hash.
pub struct Auth {
    by_hash: HashMap<String, TokenSpec>,
}

impl Auth {
    /// Authentication is off when no token is configured (every request acts as an unlimited
    /// admin); `cidrcast serve` then refuses to listen on anything but loopback.
    pub fn new(tokens: &[TokenSpec]) -> Auth {
        Auth {
            by_hash: tokens
                .iter()
                .map(|t| (t.sha256.to_ascii_lowercase(), t.clone()))
                .collect(),
        }
    }

    /// Whether requests must carry a token.
    pub fn enabled(&self) -> bool {
        !self.by_hash.is_empty()
    }

    /// Who sends a request with this `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ServerError> {
        if !self.enabled() {
            return Ok(Principal::anonymous());
        }
        let header = header.ok_or_else(|| {
            ServerError::Unauthenticated(
                "missing Authorization header: send `Authorization: Bearer TOKEN`".into(),
            )
        })?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ServerError::Unauthenticated(
                    "the Authorization header must be `Bearer TOKEN`".into(),
                )
            })?;
        let token = self
            .by_hash
            .get(&hash_secret(secret))
            .ok_or_else(|| ServerError::Unauthenticated("unknown token".into()))?;
        Ok(Principal {
            name: token.name.clone(),
            role: token.role,
            tenants: token.tenants.clone(),
            subdivisions: token.subdivisions.clone(),
        })
    }
}

/// The caller of a request: a token's name, role and scope.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    tenants: Vec<String>,
    subdivisions: Vec<String>,
}

impl Principal {
    /// The caller when authentication is off: an unlimited admin.
    pub fn anonymous() -> Principal {
        Principal {
            name: "anonymous".into(),
            role: Role::Admin,
            tenants: Vec::new(),
            subdivisions: Vec::new(),
        }
    }

    /// A principal with this role and scope (tests, tools).
    pub fn new(name: &str, role: Role, tenants: Vec<String>, subdivisions: Vec<String>) -> Self {
        Principal {
            name: name.into(),
            role,
            tenants,
            subdivisions,
        }
    }

    /// Whether the token is limited to some tenants or subdivisions.
    pub fn is_scoped(&self) -> bool {
        !self.tenants.is_empty() || !self.subdivisions.is_empty()
    }

    /// 403 unless the role allows what `needed` may do.
    pub fn require(&self, needed: Role, what: &str) -> Result<(), ServerError> {
        if self.role.allows(needed) {
            Ok(())
        } else {
            Err(ServerError::Forbidden(format!(
                "token `{}` has role {}; {what} needs role {needed} or above",
                self.name, self.role
            )))
        }
    }

    /// 403 unless the role allows `needed` and the token is not limited to a scope.
    pub fn require_global(&self, needed: Role, what: &str) -> Result<(), ServerError> {
        self.require(needed, what)?;
        if self.is_scoped() {
            return Err(ServerError::Forbidden(format!(
                "token `{}` is limited to {}; {what} needs a token that is not limited",
                self.name,
                self.scope_text()
            )));
        }
        Ok(())
    }

    fn scope_text(&self) -> String {
        let mut parts = Vec::new();
        if !self.tenants.is_empty() {
            parts.push(format!("tenants [{}]", self.tenants.join(", ")));
        }
        if !self.subdivisions.is_empty() {
            parts.push(format!("subdivisions [{}]", self.subdivisions.join(", ")));
        }
        parts.join(" and ")
    }

    /// Whether the token may see subdivision `name` (false for an unknown one when scoped).
    pub fn sees_subdivision(&self, ipam: &Ipam, name: &str) -> bool {
        if !self.is_scoped() {
            return true;
        }
        let Some(spec) = ipam.subdivision_spec(name) else {
            return false;
        };
        // Limited to subdivisions: this one or an ancestor is listed.
        let mut cur = Some(spec);
        let mut depth = 0;
        while let Some(s) = cur {
            if self.subdivisions.contains(&s.name) {
                return true;
            }
            depth += 1;
            if depth > 64 {
                break;
            }
            cur = s.parent.as_deref().and_then(|p| ipam.subdivision_spec(p));
        }
        // Limited to tenants: every pool it draws from belongs to one of them.
        if self.tenants.is_empty() {
            return false;
        }
        let pools: Vec<&PoolSpec> = if spec.pools.is_empty() {
            ipam.pool_spec_refs().collect()
        } else {
            spec.pools
                .iter()
                .filter_map(|p| ipam.pool_spec(p))
                .collect()
        };
        !pools.is_empty() && pools.iter().all(|p| self.tenants.contains(&p.vrf))
    }

    /// 403 unless the token may see subdivision `name`.
    pub fn check_subdivision(&self, ipam: &Ipam, name: &str) -> Result<(), ServerError> {
        if self.sees_subdivision(ipam, name) {
            Ok(())
        } else {
            Err(ServerError::Forbidden(format!(
                "token `{}` is limited to {}; subdivision `{name}` is outside it",
                self.name,
                self.scope_text()
            )))
        }
    }

    /// Whether the token may see pool `pool`: its tenant is in scope, or one of the token's
    /// subdivisions draws from it.
    pub fn sees_pool(&self, ipam: &Ipam, pool: &PoolSpec) -> bool {
        if !self.is_scoped() || self.tenants.contains(&pool.vrf) {
            return true;
        }
        self.subdivisions.iter().any(|s| {
            ipam.subdivision_spec(s)
                .is_some_and(|spec| spec.pools.is_empty() || spec.pools.contains(&pool.name))
        })
    }
}
