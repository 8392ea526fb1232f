//! [`Config::validate`]: every rule that a well-typed configuration can still break.

use std::collections::HashMap;

use cidrcast_core::model::FieldError;
use ipnet::IpNet;

use crate::{
    Config, ConfigError, ExternalEventSpec, PoolSpec, Profile, RouterSpec, ServerSettings,
    Settings, StoreKind, StoreSettings, SubdivisionSpec, TokenSpec, EVENT_SCOPE_ALL,
};

/// Longest allowed name.
const MAX_NAME_LEN: usize = 64;

type Result<T = ()> = std::result::Result<T, ConfigError>;

pub(crate) fn validate(config: &Config, origin: &str) -> Result {
    settings(&config.settings, origin)?;

    names(origin, "pool", config.pools.iter().map(|p| p.name.as_str()))?;
    for pool in &config.pools {
        self::pool(pool, origin)?;
    }
    pool_overlaps(&config.pools, origin)?;

    names(
        origin,
        "subdivision",
        config.subdivisions.iter().map(|s| s.name.as_str()),
    )?;
    for sub in &config.subdivisions {
        subdivision(sub, config, origin)?;
    }
    parent_cycles(&config.subdivisions, origin)?;

    names(
        origin,
        "profile",
        config.profiles.iter().map(|p| p.name.as_str()),
    )?;
    for p in &config.profiles {
        profile(p, origin)?;
    }

    names(
        origin,
        "router",
        config.routers.iter().map(|r| r.name.as_str()),
    )?;
    for r in &config.routers {
        router(r, config, origin)?;
    }

    names(
        origin,
        "event",
        config.events.iter().map(|e| e.name.as_str()),
    )?;
    for e in &config.events {
        event(e, config, origin)?;
    }

    server(&config.server, origin)?;
    store(&config.store, origin)?;
    names(
        origin,
        "token",
        config.tokens.iter().map(|t| t.name.as_str()),
    )?;
    let mut hashes: HashMap<String, &str> = HashMap::new();
    for t in &config.tokens {
        token(t, origin)?;
        if let Some(first) = hashes.insert(t.sha256.to_ascii_lowercase(), &t.name) {
            return Err(ConfigError::invalid(
                origin,
                entry("token", &t.name),
                "sha256",
                format_args!("\"{}\"", t.sha256),
                format!("token {first:?} has the same hash: each token needs its own secret"),
            ));
        }
    }
    Ok(())
}

fn store(s: &StoreSettings, origin: &str) -> Result {
    let e = "[store]";
    let bad = |field: &'static str, value: &dyn std::fmt::Display, why: &str| {
        Err(ConfigError::invalid(origin, e, field, value, why))
    };
    for (field, v) in [
        ("connect_timeout_s", s.connect_timeout_s),
        ("request_timeout_s", s.request_timeout_s),
    ] {
        if !v.is_finite() || v <= 0.0 {
            return bad(field, &v, "must be a finite number of seconds > 0");
        }
    }
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return bad(
            if s.tls_cert.is_some() {
                "tls_cert"
            } else {
                "tls_key"
            },
            &"(set)",
            "tls_cert and tls_key go together (a client certificate and its key)",
        );
    }
    if (s.tls_cert.is_some()) && s.tls_ca.is_none() {
        return bad(
            "tls_ca",
            &"(not set)",
            "a client certificate needs TLS: give the CA that signed etcd's certificate",
        );
    }
    if s.password_file.is_some() != s.username.is_some() {
        return bad(
            if s.username.is_some() {
                "password_file"
            } else {
                "username"
            },
            &"(not set)",
            "username and password_file go together",
        );
    }
    if s.kind != StoreKind::Etcd {
        return Ok(());
    }
    if s.endpoints.is_empty() {
        return bad(
            "endpoints",
            &"[]",
            "kind = \"etcd\" needs the cluster's client URLs, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    for (i, ep) in s.endpoints.iter().enumerate() {
        let rest = ep
            .strip_prefix("http://")
            .or_else(|| ep.strip_prefix("https://"));
        let ok = rest.is_some_and(|r| {
            let hostport = r.trim_end_matches('/');
            hostport
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0))
        });
        if !ok {
            return bad(
                "endpoints",
                &format_args!("{ep:?} (entry {i})"),
                "an etcd client URL is http://HOST:PORT or https://HOST:PORT",
            );
        }
        if ep.starts_with("https://") && s.tls_ca.is_none() {
            return bad(
                "tls_ca",
                &"(not set)",
                "https endpoints need the CA that signed etcd's certificate",
            );
        }
    }
    if !(s.prefix.starts_with('/') && s.prefix.ends_with('/') && s.prefix.len() >= 2)
        || s.prefix
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return bad(
            "prefix",
            &format_args!("{:?}", s.prefix),
            "a key prefix starts and ends with `/` and has no spaces, e.g. \"/cidrcast/\"",
        );
    }
    Ok(())
}

fn server(s: &ServerSettings, origin: &str) -> Result {
    let e = "[server]";
    if !s.reconcile_interval_s.is_finite() || s.reconcile_interval_s <= 0.0 {
        return Err(ConfigError::invalid(
            origin,
            e,
            "reconcile_interval_s",
            s.reconcile_interval_s,
            "must be a finite number of seconds > 0",
        ));
    }
    if !s.lead_time_s.is_finite() || s.lead_time_s < 0.0 {
        return Err(ConfigError::invalid(
            origin,
            e,
            "lead_time_s",
            s.lead_time_s,
            "must be a finite number of seconds >= 0",
        ));
    }
    if let Some(t) = s.target_miss_rate {
        if !(t > 0.0 && t < 1.0) {
            return Err(ConfigError::invalid(
                origin,
                e,
                "target_miss_rate",
                t,
                "a miss rate is between 0 and 1 (exclusive), e.g. 0.001; leave it out for a fixed quantile",
            ));
        }
    }
    if !(2.0..=60.0).contains(&s.leader_ttl_s) {
        return Err(ConfigError::invalid(
            origin,
            e,
            "leader_ttl_s",
            s.leader_ttl_s,
            "must be 2 to 60 seconds (the leader's etcd lease; a takeover takes about this long)",
        ));
    }
    if s.max_body_bytes < 1024 {
        return Err(ConfigError::invalid(
            origin,
            e,
            "max_body_bytes",
            s.max_body_bytes,
            "must be at least 1024",
        ));
    }
    if s.max_import_bytes < 1024 {
        return Err(ConfigError::invalid(
            origin,
            e,
            "max_import_bytes",
            s.max_import_bytes,
            "must be at least 1024",
        ));
    }
    match (&s.tls_cert, &s.tls_key) {
        (Some(_), None) => Err(ConfigError::invalid(
            origin,
            e,
            "tls_key",
            "(missing)",
            "tls_cert is set: give the private key file too",
        )),
        (None, Some(_)) => Err(ConfigError::invalid(
            origin,
            e,
            "tls_cert",
            "(missing)",
            "tls_key is set: give the certificate file too",
        )),
        _ => Ok(()),
    }
}

fn token(t: &TokenSpec, origin: &str) -> Result {
    let e = entry("token", &t.name);
    let hex = t.sha256.len() == 64 && t.sha256.chars().all(|c| c.is_ascii_hexdigit());
    if !hex {
        return Err(ConfigError::invalid(
            origin,
            e,
            "sha256",
            format_args!("{:?}", t.sha256),
            "must be the 64 hex digits of the secret's SHA-256 (never the secret itself); `cidrcast token new` makes a token",
        ));
    }
    for (field, list) in [("tenants", &t.tenants), ("subdivisions", &t.subdivisions)] {
        if let Some(bad) = list.iter().find(|x| x.is_empty()) {
            return Err(ConfigError::invalid(
                origin,
                &e,
                field,
                format_args!("{bad:?}"),
                "names must not be empty",
            ));
        }
    }
    Ok(())
}

fn settings(s: &Settings, origin: &str) -> Result {
    if !s.cooldown_s.is_finite() || s.cooldown_s < 0.0 {
        return Err(ConfigError::invalid(
            origin,
            "[settings]",
            "cooldown_s",
            s.cooldown_s,
            "the release cooldown must be a finite number of seconds >= 0",
        ));
    }
    if let Some(dir) = &s.data_dir {
        if dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid(
                origin,
                "[settings]",
                "data_dir",
                "\"\"",
                "must be a directory path; leave the key out for the default",
            ));
        }
    }
    Ok(())
}

/// Names are non-empty, at most 64 of `A-Z a-z 0-9 . _ -` (they end up in router configurations,
/// CSV traces and URLs), and unique within their kind.
fn names<'a>(origin: &str, kind: &'static str, names: impl Iterator<Item = &'a str>) -> Result {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        let valid = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(ConfigError::invalid(
                origin,
                format_args!("{kind} #{}", i + 1),
                "name",
                format_args!("{name:?}"),
                format!("a name is 1 to {MAX_NAME_LEN} characters out of A-Z a-z 0-9 . _ -"),
            ));
        }
        if let Some(first) = seen.insert(name, i + 1) {
            return Err(ConfigError::Duplicate {
                origin: origin.to_string(),
                kind,
                name: name.to_string(),
                first,
                second: i + 1,
            });
        }
    }
    Ok(())
}

fn entry(kind: &str, name: &str) -> String {
    format!("{kind} {name:?}")
}

/// Address bits of the family of `net`.
fn family_bits(net: &IpNet) -> u8 {
    match net {
        IpNet::V4(_) => 32,
        IpNet::V6(_) => 128,
    }
}

fn pool(p: &PoolSpec, origin: &str) -> Result {
    let e = entry("pool", &p.name);
    if p.vrf.is_empty() {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "vrf",
            "\"\"",
            "a VRF name must not be empty; leave the key out for \"default\"",
        ));
    }
    if p.prefix.trunc() != p.prefix {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "prefix",
            format_args!("\"{}\"", p.prefix),
            format!("host bits are set; the network is \"{}\"", p.prefix.trunc()),
        ));
    }

    if p.prefix.prefix_len() == 0 {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "prefix",
            format_args!("\"{}\"", p.prefix),
            "a /0 pool is not supported",
        ));
    }

    let bits = family_bits(&p.prefix);
    let len = p.shard_prefix_len;
    let shard_err =
        |reason: String| ConfigError::invalid(origin, &e, "shard_prefix_len", len, reason);
    if len > bits {
        return Err(shard_err(format!(
            "longer than /{bits}, the longest {} prefix",
            if bits == 32 { "IPv4" } else { "IPv6" }
        )));
    }
    if len < p.prefix.prefix_len() {
        return Err(shard_err(format!(
            "a shard cannot be larger than its pool: the pool prefix is \"{}\", so \
             shard_prefix_len must be at least {}",
            p.prefix,
            p.prefix.prefix_len()
        )));
    }
    if bits == 128 && len < 64 {
        return Err(shard_err(
            "IPv6 shards shorter than /64 are not supported (a shard's address bitmap indexes \
             at most 2^64 addresses); use 64 to 128"
                .to_string(),
        ));
    }

    if let Some(min) = p.min_shard_prefix_len {
        let min_err =
            |reason: String| ConfigError::invalid(origin, &e, "min_shard_prefix_len", min, reason);
        if min > len {
            return Err(min_err(format!(
                "the largest shards cannot be smaller than the default ones: must be at most \
                 shard_prefix_len = {len}"
            )));
        }
        if min < p.prefix.prefix_len() {
            return Err(min_err(format!(
                "a shard cannot be larger than its pool: the pool prefix is \"{}\", so \
                 min_shard_prefix_len must be at least {}",
                p.prefix,
                p.prefix.prefix_len()
            )));
        }
        if bits == 128 && min < 64 {
            return Err(min_err(
                "IPv6 shards shorter than /64 are not supported (a shard's address bitmap \
                 indexes at most 2^64 addresses); use 64 to 128"
                    .to_string(),
            ));
        }
    }
    if let Some(max) = p.max_shard_prefix_len {
        let max_err =
            |reason: String| ConfigError::invalid(origin, &e, "max_shard_prefix_len", max, reason);
        if max < len {
            return Err(max_err(format!(
                "the smallest shards cannot be larger than the default ones: must be at least \
                 shard_prefix_len = {len}"
            )));
        }
        if max > bits {
            return Err(max_err(format!(
                "longer than /{bits}, the longest {} prefix",
                if bits == 32 { "IPv4" } else { "IPv6" }
            )));
        }
    }

    for range in &p.reserved {
        if range.trunc() != *range {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "reserved",
                format_args!("\"{range}\""),
                format!("host bits are set; the network is \"{}\"", range.trunc()),
            ));
        }
        if !p.prefix.contains(range) {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "reserved",
                format_args!("\"{range}\""),
                format!("outside the pool prefix \"{}\"", p.prefix),
            ));
        }
    }

    // bits - len <= 64 here, so the shard size fits in a u128.
    let shard_size = 1u128 << (bits - len);
    let reserved = u128::from(p.reserve_first) + u128::from(p.reserve_last);
    if reserved >= shard_size {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "reserve_first + reserve_last",
            format_args!("{} + {}", p.reserve_first, p.reserve_last),
            format!(
                "leaves no usable address in a /{len} shard of {shard_size} addresses \
                 (the sum must be less than {shard_size})"
            ),
        ));
    }
    // The smallest shard must keep an address too (bits - max <= bits - len here).
    if let Some(max) = p.max_shard_prefix_len {
        let smallest = 1u128 << (bits - max);
        if reserved >= smallest {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "max_shard_prefix_len",
                max,
                format!(
                    "a /{max} shard of {smallest} addresses leaves no usable address after \
                     reserve_first + reserve_last = {} + {} (the smallest shard must hold more \
                     than {reserved} addresses)",
                    p.reserve_first, p.reserve_last
                ),
            ));
        }
    }
    Ok(())
}

fn pool_overlaps(pools: &[PoolSpec], origin: &str) -> Result {
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[..i] {
            if a.vrf == b.vrf && (a.prefix.contains(&b.prefix) || b.prefix.contains(&a.prefix)) {
                return Err(ConfigError::invalid(
                    origin,
                    entry("pool", &a.name),
                    "prefix",
                    format_args!("\"{}\"", a.prefix),
                    format!(
                        "overlaps pool {:?} (prefix = \"{}\") in VRF {:?}",
                        b.name, b.prefix, a.vrf
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn subdivision(s: &SubdivisionSpec, config: &Config, origin: &str) -> Result {
    let e = entry("subdivision", &s.name);
    if let Some(parent) = &s.parent {
        if config.subdivision(parent).is_none() {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "parent",
                format_args!("{parent:?}"),
                "no [[subdivision]] has this name",
            ));
        }
    }
    for (i, name) in s.pools.iter().enumerate() {
        if config.pool(name).is_none() {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "pools",
                format_args!("{name:?}"),
                "no [[pool]] has this name",
            ));
        }
        if s.pools[..i].contains(name) {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "pools",
                format_args!("{name:?}"),
                "listed twice",
            ));
        }
    }
    for (i, name) in s.routers.iter().enumerate() {
        if config.router(name).is_none() {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "routers",
                format_args!("{name:?}"),
                "no [[router]] has this name",
            ));
        }
        if s.routers[..i].contains(name) {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "routers",
                format_args!("{name:?}"),
                "listed twice",
            ));
        }
    }
    if s.max_shards == Some(0) {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "max_shards",
            0,
            "a subdivision must be allowed at least 1 shard; leave the key out for no limit",
        ));
    }
    if let Some(home) = s.home_shards {
        if !home.is_power_of_two() {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "home_shards",
                home,
                "the home block size in shards must be a power of two (1, 2, 4, 8, ...)",
            ));
        }
        if let Some(max) = s.max_shards {
            if home > max {
                return Err(ConfigError::invalid(
                    origin,
                    &e,
                    "home_shards",
                    home,
                    format!("larger than max_shards = {max}"),
                ));
            }
        }
        // The home block must fit in every pool the subdivision draws from.
        let pools: Vec<&PoolSpec> = if s.pools.is_empty() {
            config.pools.iter().collect()
        } else {
            s.pools.iter().filter_map(|n| config.pool(n)).collect()
        };
        for p in pools {
            // Validated pools have shard_prefix_len >= prefix_len.
            let levels = p.shard_prefix_len.saturating_sub(p.prefix.prefix_len());
            if levels < 32 && u64::from(home) > 1u64 << levels {
                return Err(ConfigError::invalid(
                    origin,
                    &e,
                    "home_shards",
                    home,
                    format!(
                        "larger than pool {:?}, which holds {} shards (\"{}\" in /{})",
                        p.name,
                        1u64 << levels,
                        p.prefix,
                        p.shard_prefix_len
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn parent_cycles(subs: &[SubdivisionSpec], origin: &str) -> Result {
    let parent: HashMap<&str, &str> = subs
        .iter()
        .filter_map(|s| s.parent.as_deref().map(|p| (s.name.as_str(), p)))
        .collect();
    for s in subs {
        // Walk up from `s`; a walk longer than the number of subdivisions has looped.
        let mut path = vec![s.name.as_str()];
        let mut at = s.name.as_str();
        while let Some(&up) = parent.get(at) {
            if up == s.name {
                path.push(up);
                return Err(ConfigError::ParentCycle {
                    origin: origin.to_string(),
                    name: s.name.clone(),
                    cycle: path.into_iter().map(str::to_string).collect(),
                });
            }
            if path.len() > subs.len() {
                // A loop above `s` that does not pass through it; reported from its own members.
                break;
            }
            path.push(up);
            at = up;
        }
    }
    Ok(())
}

fn profile(p: &Profile, origin: &str) -> Result {
    p.check_fields()
        .map_err(|f| field_error(origin, entry("profile", &p.name), f))
}

/// A refused field found by a core check, as a configuration error.
fn field_error(origin: &str, entry: String, f: FieldError) -> ConfigError {
    ConfigError::invalid(origin, entry, f.field, f.value, f.reason)
}

fn router(r: &RouterSpec, config: &Config, origin: &str) -> Result {
    let e = entry("router", &r.name);
    r.check_fields()
        .map_err(|f| field_error(origin, e.clone(), f))?;
    if let Some(name) = r
        .subdivisions
        .iter()
        .find(|s| config.subdivision(s).is_none())
    {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "subdivisions",
            format_args!("{name:?}"),
            "no [[subdivision]] has this name",
        ));
    }
    Ok(())
}

fn event(ev: &ExternalEventSpec, config: &Config, origin: &str) -> Result {
    let e = entry("event", &ev.name);
    if !ev.start.is_finite() {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "start",
            ev.start,
            "must be a finite time in seconds",
        ));
    }
    if !ev.end.is_finite() {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "end",
            ev.end,
            "must be a finite time in seconds",
        ));
    }
    if ev.end <= ev.start {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "end",
            ev.end,
            format!("must be greater than start = {}", ev.start),
        ));
    }
    if ev.scope != EVENT_SCOPE_ALL && config.subdivision(&ev.scope).is_none() {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "scope",
            format_args!("{:?}", ev.scope),
            "no [[subdivision]] has this name (use \"*\" for every subdivision)",
        ));
    }
    if let Some(x) = ev.extra_vms {
        if !x.is_finite() || x < 0.0 {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "extra_vms",
                x,
                "must be a finite number of VMs >= 0",
            ));
        }
    }
    if let Some(m) = ev.multiplier {
        if !m.is_finite() || m <= 0.0 {
            return Err(ConfigError::invalid(
                origin,
                &e,
                "multiplier",
                m,
                "must be a finite number > 0",
            ));
        }
    }
    if ev.extra_vms.is_none() && ev.multiplier.is_none() {
        return Err(ConfigError::invalid(
            origin,
            &e,
            "extra_vms, multiplier",
            "(none)",
            "an event needs an effect: give extra_vms, multiplier or both",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The per-field checks of a profile or a router are the core crate's
    //! ([`Profile::check_fields`], [`RouterSpec::check_fields`]), which the API uses through
    //! [`Profile::validate`] and [`RouterSpec::validate`]: a file and the API must refuse the
    //! same entries with the same words.

    use std::net::Ipv4Addr;
    use std::path::PathBuf;

    use cidrcast_core::CoreError;

    use super::*;
    use crate::{Flavor, Neighbor};

    const ORIGIN: &str = "test.toml";

    fn config() -> Config {
        Config {
            subdivisions: vec![SubdivisionSpec::new("eu"), SubdivisionSpec::new("us")],
            routers: vec![RouterSpec {
                name: "edge".to_string(),
                flavor: Flavor::Frr,
                router_id: Ipv4Addr::new(192, 0, 2, 1),
                asn: 64512,
                neighbors: vec![
                    Neighbor {
                        address: "192.0.2.2".parse().unwrap(),
                        asn: 64513,
                    },
                    Neighbor {
                        address: "2001:db8::2".parse().unwrap(),
                        asn: 64514,
                    },
                ],
                subdivisions: vec!["eu".to_string(), "us".to_string()],
                config_path: Some(PathBuf::from("/etc/frr/frr.conf")),
                reload_command: Some("systemctl reload frr".to_string()),
                policy: Default::default(),
            }],
            ..Config::default()
        }
    }

    /// `config` is refused by both, and the config message is the core one, prefixed with the
    /// origin and the entry (`profile "web"` or, for a bad name, `profile #1`).
    fn same_refusal(config: &Config, core: std::result::Result<(), CoreError>, entry: &str) {
        let message = match core {
            Err(CoreError::InvalidProfile { message, .. })
            | Err(CoreError::InvalidRouter { message, .. }) => message,
            other => panic!("core accepted or refused otherwise: {other:?}"),
        };
        let err = config
            .validate(ORIGIN)
            .expect_err("config accepted what core refuses");
        assert_eq!(err.to_string(), format!("{ORIGIN}: {entry}: {message}"));
    }

    #[test]
    fn the_fixture_is_valid_for_both() {
        let c = config();
        c.validate(ORIGIN).unwrap();
        for p in &c.profiles {
            p.validate().unwrap();
        }
        c.routers[0].validate().unwrap();
    }

    #[test]
    fn profiles_are_refused_alike() {
        let cases: Vec<fn(&mut Profile)> = vec![
            |p| p.vcpus = 0,
            |p| p.memory_gib = 0.0,
            |p| p.memory_gib = -1.5,
            |p| p.memory_gib = f64::NAN,
            |p| p.memory_gib = f64::INFINITY,
            |p| p.network_mbps = -0.5,
            |p| p.network_mbps = f64::NEG_INFINITY,
            |p| p.network_mbps = f64::NAN,
        ];
        for set in cases {
            let mut c = config();
            set(&mut c.profiles[0]);
            let entry = format!("profile {:?}", c.profiles[0].name);
            same_refusal(&c, c.profiles[0].validate(), &entry);
        }
        for name in ["", "web server", "ü", &"x".repeat(65)] {
            let mut c = config();
            c.profiles[0].name = name.to_string();
            same_refusal(&c, c.profiles[0].validate(), "profile #1");
        }
    }

    #[test]
    fn routers_are_refused_alike() {
        let cases: Vec<fn(&mut RouterSpec)> = vec![
            |r| r.router_id = Ipv4Addr::UNSPECIFIED,
            |r| r.router_id = Ipv4Addr::BROADCAST,
            |r| r.router_id = Ipv4Addr::new(224, 0, 0, 5),
            |r| r.asn = 0,
            |r| r.neighbors[1].address = "ff02::5".parse().unwrap(),
            |r| r.neighbors[0].address = "0.0.0.0".parse().unwrap(),
            |r| r.neighbors[1].address = "::".parse().unwrap(),
            |r| r.neighbors[1].address = r.neighbors[0].address,
            |r| r.neighbors[1].asn = 0,
            |r| r.subdivisions.push("eu".to_string()),
            |r| r.config_path = Some(PathBuf::new()),
            |r| r.reload_command = Some(" \t".to_string()),
        ];
        for set in cases {
            let mut c = config();
            set(&mut c.routers[0]);
            same_refusal(&c, c.routers[0].validate(), "router \"edge\"");
        }
        let mut c = config();
        c.routers[0].name = "edge/1".to_string();
        same_refusal(&c, c.routers[0].validate(), "router #1");
    }

    #[test]
    fn an_unknown_subdivision_is_a_cross_entry_check() {
        let mut c = config();
        c.routers[0].subdivisions.push("asia".to_string());
        c.routers[0].validate().unwrap();
        let err = c.validate(ORIGIN).unwrap_err().to_string();
        assert!(err.contains("subdivisions = \"asia\""), "{err}");
    }
}
