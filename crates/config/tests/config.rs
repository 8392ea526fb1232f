//! Behavioural tests of parsing, validation, the example, the default and serialization.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use cidrcast_config::{
    Config, ConfigError, Flavor, Neighbor, PoolSpec, Profile, RouterSpec, SubdivisionSpec,
    DEFAULT_COOLDOWN_S, EXAMPLE_TOML,
};

const ORIGIN: &str = "test.toml";

/// A small valid configuration that the validation tests break one rule at a time.
fn base() -> Config {
    let config = Config::from_toml_str(
        r#"
[settings]
cooldown_s = 30

[[pool]]
name = "v4"
prefix = "10.0.0.0/8"
shard_prefix_len = 26
reserved = ["10.0.0.0/24"]
reserve_first = 2
reserve_last = 1

[[pool]]
name = "v6"
prefix = "fd00::/48"
shard_prefix_len = 64

[[subdivision]]
name = "region"
home_shards = 64

[[subdivision]]
name = "zone"
parent = "region"
pools = ["v4"]
home_shards = 16
max_shards = 32
routers = ["edge"]

[[profile]]
name = "web"
vcpus = 2
memory_gib = 4
network_mbps = 500

[[router]]
name = "edge"
flavor = "frr"
router_id = "192.0.2.1"
asn = 65001
neighbors = [{ address = "192.0.2.2", asn = 65002 }]
subdivisions = ["region"]
"#,
        ORIGIN,
    )
    .expect("the base configuration is valid");
    assert_eq!(config.pools.len(), 2);
    assert_eq!(config.subdivisions.len(), 2);
    config
}

/// Validates `config` and returns the error message, asserting it names the origin and every
/// one of `needles`.
fn rejected(config: &Config, needles: &[&str]) -> String {
    let msg = match config.validate(ORIGIN) {
        Ok(()) => panic!("expected a validation error mentioning {needles:?}"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains(ORIGIN), "{msg:?} does not name {ORIGIN}");
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
    }
    msg
}

/// Parses `toml` and returns the error message, asserting it names the origin and `needles`.
fn parse_rejected(toml: &str, needles: &[&str]) -> String {
    let msg = match Config::from_toml_str(toml, ORIGIN) {
        Ok(c) => panic!("expected a parse error mentioning {needles:?}, got {c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(msg.contains(ORIGIN), "{msg:?} does not name {ORIGIN}");
    for needle in needles {
        assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
    }
    msg
}

fn pool(name: &str, prefix: &str, shard_prefix_len: u8) -> PoolSpec {
    PoolSpec {
        name: name.to_string(),
        prefix: prefix.parse().unwrap(),
        shard_prefix_len,
        min_shard_prefix_len: None,
        max_shard_prefix_len: None,
        vrf: "default".to_string(),
        reserved: Vec::new(),
        reserve_first: 0,
        reserve_last: 0,
    }
}

fn sub(name: &str, parent: Option<&str>) -> SubdivisionSpec {
    SubdivisionSpec {
        name: name.to_string(),
        parent: parent.map(str::to_string),
        pools: Vec::new(),
        max_shards: None,
        home_shards: None,
        routers: Vec::new(),
    }
}

const ROUTER: &str = "[[router]]\nname = \"edge\"\nflavor = \"frr\"\n";

// ---------------------------------------------------------------------------------------------
// Strict parsing
// ---------------------------------------------------------------------------------------------

#[test]
fn unknown_field_in_pool_is_named_with_its_line() {
    let toml = "[[pool]]\nname = \"v4\"\nprefix = \"10.0.0.0/8\"\nshard_len = 26\n";
    let err = Config::from_toml_str(toml, ORIGIN).unwrap_err();
    match &err {
        ConfigError::Parse {
            origin,
            line,
            message,
            ..
        } => {
            assert_eq!(origin, ORIGIN);
            assert_eq!(*line, Some(4));
            assert!(message.contains("unknown field `shard_len`"), "{message}");
        }
        other => panic!("expected a parse error, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.starts_with("test.toml:4:1: "), "{msg}");
    assert!(
        msg.contains("shard_len = 26"),
        "the excerpt shows the line: {msg}"
    );
}

#[test]
fn unknown_fields_are_rejected_in_every_table() {
    parse_rejected(
        "[settings]\ncooldown = 3\n",
        &["unknown field `cooldown`", ":2:"],
    );
    parse_rejected("[pools]\n", &["unknown field `pools`"]);
    parse_rejected(
        "[[subdivision]]\nname = \"a\"\nhome = 4\n",
        &["unknown field `home`", ":3:"],
    );
    parse_rejected(
        "[[profile]]\nname = \"p\"\nvcpus = 1\nmemory_gib = 1\nnetwork_mbps = 1\ncpu = 2\n",
        &["unknown field `cpu`", ":6:"],
    );
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = 1\nreload = \"x\"\n"),
        &["unknown field `reload`", ":6:"],
    );
    parse_rejected(
        &format!(
            "{ROUTER}router_id = \"192.0.2.1\"\nasn = 1\n\
             neighbors = [{{ address = \"192.0.2.2\", asn = 2, password = \"x\" }}]\n"
        ),
        &["unknown field `password`", ":6:"],
    );
}

#[test]
fn malformed_values_are_parse_errors_with_position() {
    parse_rejected(
        "[[pool]]\nname = \"v4\"\nprefix = \"10.0.0.0/33\"\nshard_prefix_len = 26\n",
        &[":3:", "10.0.0.0/33"],
    );
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = 1\nflavor2 = 1\n"),
        &["flavor2"],
    );
    parse_rejected(
        "[[router]]\nname = \"edge\"\nflavor = \"gobgp\"\nrouter_id = \"192.0.2.1\"\nasn = 1\n",
        &["gobgp", "`frr` or `bird`", ":3:"],
    );
    parse_rejected(
        "[[profile]]\nname = \"p\"\nvcpus = -1\nmemory_gib = 1\nnetwork_mbps = 1\n",
        &["-1", ":3:"],
    );
}

#[test]
fn missing_required_field_is_named() {
    parse_rejected(
        "[[pool]]\nname = \"v4\"\nprefix = \"10.0.0.0/8\"\n",
        &["shard_prefix_len"],
    );
}

#[test]
fn asn_outside_u32_is_rejected_naming_router_and_value() {
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = 4294967296\n"),
        &["router \"edge\"", "asn = 4294967296", "out of range"],
    );
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = -1\n"),
        &["router \"edge\"", "asn = -1"],
    );
    parse_rejected(
        &format!(
            "{ROUTER}router_id = \"192.0.2.1\"\nasn = 1\n\
             neighbors = [{{ address = \"192.0.2.2\", asn = 5000000000 }}]\n"
        ),
        &["router \"edge\"", "neighbors[0]", "asn = 5000000000"],
    );
    // The top of the range is accepted, with communities given: the default ASN:100 does not
    // fit a standard community above AS 65535.
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = 4294967295\n"),
        &[
            "router \"edge\"",
            "policy.active_community",
            "AS 4294967295",
        ],
    );
    let c = Config::from_toml_str(
        &format!(
            "{ROUTER}router_id = \"192.0.2.1\"\nasn = 4294967295\n\
             [router.policy]\nactive_community = \"64512:1\"\nprefetched_community = \"64512:2\"\n"
        ),
        ORIGIN,
    )
    .unwrap();
    assert_eq!(c.routers[0].asn, u32::MAX);
    assert_eq!(
        c.routers[0]
            .policy
            .resolve(u32::MAX)
            .unwrap()
            .prefetched_community
            .to_string(),
        "64512:2"
    );
}

#[test]
fn router_id_must_be_ipv4() {
    parse_rejected(
        &format!("{ROUTER}router_id = \"2001:db8::1\"\nasn = 1\n"),
        &["router \"edge\"", "router_id = \"2001:db8::1\"", "IPv4"],
    );
    parse_rejected(
        &format!("{ROUTER}router_id = \"edge-1\"\nasn = 1\n"),
        &["router \"edge\"", "router_id = \"edge-1\""],
    );
}

#[test]
fn neighbor_address_must_be_an_ip_address() {
    parse_rejected(
        &format!(
            "{ROUTER}router_id = \"192.0.2.1\"\nasn = 1\n\
             neighbors = [{{ address = \"192.0.2.2\", asn = 2 }}, {{ address = \"peer-b\", asn = 2 }}]\n"
        ),
        &["router \"edge\"", "neighbors[1]", "address = \"peer-b\""],
    );
}

#[test]
fn integers_are_accepted_for_float_fields() {
    let c = Config::from_toml_str(
        "[settings]\ncooldown_s = 5\n[[profile]]\nname = \"p\"\nvcpus = 1\nmemory_gib = 3\nnetwork_mbps = 0\n",
        ORIGIN,
    )
    .unwrap();
    assert_eq!(c.settings.cooldown_s, 5.0);
    assert_eq!(c.profiles[0].memory_gib, 3.0);
}

#[test]
fn empty_file_is_empty_not_the_builtin_default() {
    let c = Config::from_toml_str("", ORIGIN).unwrap();
    assert!(c.pools.is_empty());
    assert!(c.profiles.is_empty());
    assert_eq!(c.settings.cooldown_s, DEFAULT_COOLDOWN_S);
    assert_eq!(c.settings.data_dir, None);
}

#[test]
fn load_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cidrcast.toml");

    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("cidrcast.toml"), "{err}");

    std::fs::write(&path, "[settings]\ncooldown_s = 1\ncolor = 2\n").unwrap();
    let msg = Config::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&format!("{}:3:", path.display())),
        "parse errors name the file and line: {msg}"
    );
    assert!(msg.contains("color"), "{msg}");

    std::fs::write(&path, "[settings]\ncooldown_s = -1\n").unwrap();
    let msg = Config::load(&path).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("cooldown_s = -1"), "{msg}");

    std::fs::write(&path, EXAMPLE_TOML).unwrap();
    assert_eq!(
        Config::load(&path).unwrap(),
        Config::from_toml_str(EXAMPLE_TOML, "x").unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[test]
fn base_is_valid() {
    base().validate(ORIGIN).unwrap();
}

#[test]
fn duplicate_names_are_rejected_per_kind() {
    let mut c = base();
    c.pools.push(pool("v4", "172.16.0.0/12", 26));
    rejected(&c, &["pool", "\"v4\"", "#1", "#3"]);

    let mut c = base();
    c.subdivisions.push(sub("zone", None));
    rejected(&c, &["subdivision", "\"zone\"", "#2", "#3"]);

    let mut c = base();
    c.profiles.push(c.profiles[0].clone());
    rejected(&c, &["profile", "\"web\""]);

    let mut c = base();
    let mut r = c.routers[0].clone();
    r.router_id = Ipv4Addr::new(192, 0, 2, 9);
    c.routers.push(r);
    rejected(&c, &["router", "\"edge\""]);

    // The same name in two kinds is fine.
    let mut c = base();
    c.profiles[0].name = "zone".to_string();
    c.validate(ORIGIN).unwrap();
}

#[test]
fn invalid_names_are_rejected() {
    let mut c = base();
    c.pools[0].name = String::new();
    rejected(&c, &["pool #1", "name = \"\""]);
    let mut c = base();
    c.profiles[0].name = "web server".to_string();
    rejected(&c, &["profile #1", "\"web server\""]);
}

#[test]
fn pool_prefix_with_host_bits_names_the_network() {
    let mut c = base();
    c.pools[0].prefix = "10.1.2.3/8".parse().unwrap();
    rejected(&c, &["pool \"v4\"", "prefix", "10.1.2.3/8", "10.0.0.0/8"]);
}

#[test]
fn zero_length_pool_is_rejected() {
    let mut c = base();
    c.pools[0].prefix = "0.0.0.0/0".parse().unwrap();
    rejected(&c, &["pool \"v4\"", "prefix = \"0.0.0.0/0\"", "/0"]);
}

#[test]
fn shard_prefix_len_bounds() {
    let mut c = base();
    c.pools[0].shard_prefix_len = 7;
    rejected(&c, &["pool \"v4\"", "shard_prefix_len = 7", "at least 8"]);

    let mut c = base();
    c.pools[0].shard_prefix_len = 33;
    rejected(&c, &["pool \"v4\"", "shard_prefix_len = 33", "/32"]);

    let mut c = base();
    c.pools[1].shard_prefix_len = 129;
    rejected(&c, &["pool \"v6\"", "shard_prefix_len = 129", "/128"]);

    let mut c = base();
    c.pools[1].shard_prefix_len = 56;
    rejected(&c, &["pool \"v6\"", "shard_prefix_len = 56", "64"]);

    // Boundaries that are allowed: one shard = the whole pool, /32, /64, /128.
    let mut c = base();
    c.pools[0].shard_prefix_len = 8;
    c.pools[1].shard_prefix_len = 128;
    c.subdivisions[0].home_shards = None;
    c.subdivisions[1].home_shards = None;
    c.pools[0].reserve_first = 0;
    c.pools[0].reserve_last = 0;
    c.validate(ORIGIN).unwrap();
    c.pools[0].shard_prefix_len = 32;
    c.pools[1].shard_prefix_len = 64;
    c.validate(ORIGIN).unwrap();
}

#[test]
fn shard_size_range_is_parsed_and_checked_naming_the_field() {
    let toml = "[[pool]]\nname = \"p\"\nprefix = \"10.0.0.0/16\"\nshard_prefix_len = 26\n\
                min_shard_prefix_len = 24\nmax_shard_prefix_len = 30\n";
    let c = Config::from_toml_str(toml, ORIGIN).unwrap();
    assert_eq!(c.pools[0].min_shard_prefix_len, Some(24));
    assert_eq!(c.pools[0].max_shard_prefix_len, Some(30));
    assert_eq!(c.pools[0].shard_prefix_range(), (24, 30));
    // Left out: None, and not written back.
    let c = base();
    assert_eq!(c.pools[0].min_shard_prefix_len, None);
    assert_eq!(c.pools[0].max_shard_prefix_len, None);
    assert!(!toml::to_string(&c)
        .unwrap()
        .contains("_shard_prefix_len = "));
    // Strict keys and types.
    parse_rejected(
        &toml.replace("max_shard_prefix_len", "max_shard_prefix"),
        &[
            "unknown field `max_shard_prefix`",
            "max_shard_prefix_len",
            ":6:",
        ],
    );
    parse_rejected(
        &toml.replace("= 30", "= 300"),
        &["max_shard_prefix_len", "300", ":6:"],
    );

    let with = |min: Option<u8>, max: Option<u8>| {
        let mut c = base();
        c.pools[0].min_shard_prefix_len = min;
        c.pools[0].max_shard_prefix_len = max;
        c
    };
    with(Some(24), Some(28)).validate(ORIGIN).unwrap();
    // Equal to the default size: one size, allowed.
    with(Some(26), Some(26)).validate(ORIGIN).unwrap();
    rejected(
        &with(Some(27), None),
        &[
            "pool \"v4\"",
            "min_shard_prefix_len = 27",
            "shard_prefix_len = 26",
        ],
    );
    rejected(
        &with(Some(7), None),
        &["pool \"v4\"", "min_shard_prefix_len = 7", "at least 8"],
    );
    rejected(
        &with(None, Some(25)),
        &[
            "pool \"v4\"",
            "max_shard_prefix_len = 25",
            "shard_prefix_len = 26",
        ],
    );
    rejected(
        &with(None, Some(33)),
        &["pool \"v4\"", "max_shard_prefix_len = 33", "/32"],
    );
    // reserve_first 2 + reserve_last 1: a /30 keeps one address, a /31 none.
    with(None, Some(30)).validate(ORIGIN).unwrap();
    rejected(
        &with(None, Some(31)),
        &[
            "pool \"v4\"",
            "max_shard_prefix_len = 31",
            "2 + 1",
            "no usable address",
        ],
    );
    // IPv6 shards hold at most 2^64 addresses.
    let mut c = base();
    c.pools[1].min_shard_prefix_len = Some(63);
    rejected(&c, &["pool \"v6\"", "min_shard_prefix_len = 63", "64"]);
    c.pools[1].min_shard_prefix_len = Some(64);
    c.pools[1].max_shard_prefix_len = Some(128);
    c.validate(ORIGIN).unwrap();
}

#[test]
fn reserved_ranges_must_lie_in_the_pool() {
    let mut c = base();
    c.pools[0].reserved.push("192.168.0.0/24".parse().unwrap());
    rejected(
        &c,
        &["pool \"v4\"", "reserved", "192.168.0.0/24", "10.0.0.0/8"],
    );

    let mut c = base();
    c.pools[0].reserved.push("fd00::/64".parse().unwrap());
    rejected(&c, &["pool \"v4\"", "reserved", "fd00::/64"]);

    let mut c = base();
    c.pools[0].reserved.push("0.0.0.0/4".parse().unwrap());
    rejected(&c, &["pool \"v4\"", "reserved = \"0.0.0.0/4\"", "outside"]);

    let mut c = base();
    c.pools[0].reserved.push("10.0.1.1/24".parse().unwrap());
    rejected(
        &c,
        &["pool \"v4\"", "reserved", "10.0.1.1/24", "10.0.1.0/24"],
    );
}

#[test]
fn reserve_first_and_last_must_leave_an_address() {
    let mut c = base();
    c.pools[0].reserve_first = 32;
    c.pools[0].reserve_last = 32;
    rejected(
        &c,
        &[
            "pool \"v4\"",
            "reserve_first + reserve_last",
            "32 + 32",
            "64",
        ],
    );

    let mut c = base();
    c.pools[0].shard_prefix_len = 32;
    c.pools[0].reserve_first = 1;
    c.pools[0].reserve_last = 0;
    c.subdivisions[0].home_shards = None;
    c.subdivisions[1].home_shards = None;
    rejected(&c, &["pool \"v4\"", "1 + 0"]);

    // 63 of 64 reserved leaves one address.
    let mut c = base();
    c.pools[0].reserve_first = 62;
    c.pools[0].reserve_last = 1;
    c.validate(ORIGIN).unwrap();

    // In IPv6 no u32 sum fills a /64.
    let mut c = base();
    c.pools[1].reserve_first = u32::MAX;
    c.pools[1].reserve_last = u32::MAX;
    c.validate(ORIGIN).unwrap();
    c.pools[1].shard_prefix_len = 96;
    rejected(&c, &["pool \"v6\"", "4294967295 + 4294967295"]);
}

#[test]
fn overlapping_pools_in_one_vrf_are_rejected_naming_both() {
    let mut c = base();
    c.pools.push(pool("inner", "10.5.0.0/16", 26));
    rejected(
        &c,
        &["pool \"inner\"", "10.5.0.0/16", "pool \"v4\"", "10.0.0.0/8"],
    );

    let mut c = base();
    c.pools.insert(0, pool("inner", "10.5.0.0/16", 26));
    rejected(&c, &["pool \"inner\"", "pool \"v4\""]);

    let mut c = base();
    c.pools.push(pool("same6", "fd00::/48", 64));
    rejected(&c, &["pool \"same6\"", "pool \"v6\"", "fd00::/48"]);

    // Another VRF may reuse the space; disjoint prefixes never conflict.
    let mut c = base();
    let mut tenant = pool("tenant", "10.0.0.0/8", 26);
    tenant.vrf = "tenant-1".to_string();
    c.pools.push(tenant);
    c.pools.push(pool("other", "172.16.0.0/12", 26));
    c.validate(ORIGIN).unwrap();
}

#[test]
fn subdivision_references_must_exist() {
    let mut c = base();
    c.subdivisions[1].parent = Some("nowhere".to_string());
    rejected(&c, &["subdivision \"zone\"", "parent", "\"nowhere\""]);

    let mut c = base();
    c.subdivisions[1].pools.push("v9".to_string());
    rejected(&c, &["subdivision \"zone\"", "pools", "\"v9\""]);

    let mut c = base();
    c.subdivisions[1].routers.push("core-9".to_string());
    rejected(&c, &["subdivision \"zone\"", "routers", "\"core-9\""]);

    let mut c = base();
    c.subdivisions[1].pools.push("v4".to_string());
    rejected(&c, &["subdivision \"zone\"", "pools", "\"v4\"", "twice"]);
}

#[test]
fn parent_cycles_are_rejected() {
    let mut c = base();
    c.subdivisions[0].parent = Some("zone".to_string());
    rejected(&c, &["parent cycle", "region -> zone -> region"]);

    let mut c = base();
    c.subdivisions.push(sub("loop", Some("loop")));
    rejected(&c, &["subdivision \"loop\"", "loop -> loop"]);

    // A cycle above a subdivision that is not on it is found too.
    let mut c = base();
    c.subdivisions.insert(0, sub("leaf", Some("a")));
    c.subdivisions.push(sub("a", Some("b")));
    c.subdivisions.push(sub("b", Some("a")));
    rejected(&c, &["parent cycle", "a -> b -> a"]);
}

#[test]
fn home_and_max_shards_rules() {
    let mut c = base();
    c.subdivisions[1].home_shards = Some(12);
    rejected(
        &c,
        &["subdivision \"zone\"", "home_shards = 12", "power of two"],
    );

    let mut c = base();
    c.subdivisions[1].home_shards = Some(0);
    rejected(
        &c,
        &["subdivision \"zone\"", "home_shards = 0", "power of two"],
    );

    let mut c = base();
    c.subdivisions[1].home_shards = Some(64);
    rejected(
        &c,
        &[
            "subdivision \"zone\"",
            "home_shards = 64",
            "max_shards = 32",
        ],
    );

    let mut c = base();
    c.subdivisions[1].max_shards = Some(0);
    c.subdivisions[1].home_shards = None;
    rejected(
        &c,
        &["subdivision \"zone\"", "max_shards = 0", "at least 1"],
    );

    // A home block larger than a pool it draws from: the region draws from every pool, and
    // the v6 /48 holds 65536 /64 shards.
    let mut c = base();
    c.subdivisions[0].home_shards = Some(1 << 17);
    rejected(
        &c,
        &[
            "subdivision \"region\"",
            "home_shards = 131072",
            "pool \"v6\"",
            "65536",
        ],
    );

    // home_shards == max_shards is fine.
    let mut c = base();
    c.subdivisions[1].home_shards = Some(32);
    c.validate(ORIGIN).unwrap();
}

#[test]
fn router_rules() {
    let mut c = base();
    c.routers[0].subdivisions.push("rack-9".to_string());
    rejected(&c, &["router \"edge\"", "subdivisions", "\"rack-9\""]);

    let mut c = base();
    c.routers[0].asn = 0;
    rejected(&c, &["router \"edge\"", "asn = 0"]);

    let mut c = base();
    c.routers[0].neighbors[0].asn = 0;
    rejected(&c, &["router \"edge\"", "neighbors.asn = 0", "192.0.2.2"]);

    let mut c = base();
    c.routers[0].router_id = Ipv4Addr::UNSPECIFIED;
    rejected(&c, &["router \"edge\"", "router_id = \"0.0.0.0\""]);

    let mut c = base();
    c.routers[0].neighbors[0].address = "224.0.0.5".parse().unwrap();
    rejected(
        &c,
        &["router \"edge\"", "neighbors.address = \"224.0.0.5\""],
    );

    let mut c = base();
    let n = c.routers[0].neighbors[0].clone();
    c.routers[0].neighbors.push(n);
    rejected(&c, &["router \"edge\"", "\"192.0.2.2\"", "twice"]);

    let mut c = base();
    c.routers[0].reload_command = Some("  ".to_string());
    rejected(&c, &["router \"edge\"", "reload_command"]);

    // asn = 0 through the file names the file too.
    parse_rejected(
        &format!("{ROUTER}router_id = \"192.0.2.1\"\nasn = 0\n"),
        &["router \"edge\"", "asn = 0"],
    );
}

#[test]
fn profile_numbers_must_be_finite_and_in_range() {
    for (field, value, set) in [
        (
            "memory_gib",
            "-1",
            (|p: &mut Profile| p.memory_gib = -1.0) as fn(&mut Profile),
        ),
        ("memory_gib", "0", |p| p.memory_gib = 0.0),
        ("memory_gib", "NaN", |p| p.memory_gib = f64::NAN),
        ("network_mbps", "-0.5", |p| p.network_mbps = -0.5),
        ("network_mbps", "inf", |p| p.network_mbps = f64::INFINITY),
        ("vcpus", "0", |p| p.vcpus = 0),
    ] {
        let mut c = base();
        set(&mut c.profiles[0]);
        rejected(&c, &["profile \"web\"", &format!("{field} = {value}")]);
    }
    // Also through the file (TOML has nan and inf literals).
    parse_rejected(
        "[[profile]]\nname = \"p\"\nvcpus = 1\nmemory_gib = nan\nnetwork_mbps = 1\n",
        &["profile \"p\"", "memory_gib = NaN"],
    );
    // No network I/O is allowed.
    let mut c = base();
    c.profiles[0].network_mbps = 0.0;
    c.validate(ORIGIN).unwrap();
}

#[test]
fn cooldown_must_be_finite_and_not_negative() {
    for (v, shown) in [(-1.0, "-1"), (f64::NAN, "NaN"), (f64::INFINITY, "inf")] {
        let mut c = base();
        c.settings.cooldown_s = v;
        rejected(&c, &["[settings]", &format!("cooldown_s = {shown}")]);
    }
    parse_rejected("[settings]\ncooldown_s = -inf\n", &["cooldown_s = -inf"]);
    let mut c = base();
    c.settings.cooldown_s = 0.0;
    c.validate(ORIGIN).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Example, default, serialization
// ---------------------------------------------------------------------------------------------

#[test]
fn example_parses_validates_and_shows_every_feature() {
    let c = Config::from_toml_str(EXAMPLE_TOML, "example").unwrap();

    // A v4 and a v6 pool, each with reserved ranges.
    let v4 = c.pool("v4").unwrap();
    let v6 = c.pool("v6").unwrap();
    assert!(matches!(v4.prefix, ipnet::IpNet::V4(_)));
    assert!(matches!(v6.prefix, ipnet::IpNet::V6(_)));
    assert!(!v4.reserved.is_empty() && !v6.reserved.is_empty());
    assert!(v4.reserve_first > 0 && v4.reserve_last > 0);
    // Shards of several sizes in the v4 pool, of one size in the v6 pool.
    assert_eq!(v4.shard_prefix_range(), (24, 28));
    assert_eq!(v6.shard_prefix_range(), (64, 64));

    // Nesting region > zone > rack through `parent`.
    let rack = c
        .subdivisions
        .iter()
        .find(|s| {
            let zone = s.parent.as_deref().and_then(|p| c.subdivision(p));
            zone.is_some_and(|z| z.parent.is_some())
        })
        .expect("a three-level nesting");
    assert!(rack.max_shards.is_some() && rack.home_shards.is_some());

    // Profiles, and an FRR and a BIRD router with neighbors; their paths and reload commands
    // are there commented out (trying the example must not replace a real router's file), and
    // parse once uncommented.
    assert!(c.profiles.len() >= 2);
    assert!(c.profiles.iter().any(|p| p.description.is_some()));
    let uncommented = EXAMPLE_TOML
        .replace("# config_path = ", "config_path = ")
        .replace("# reload_command = ", "reload_command = ");
    let u = Config::from_toml_str(&uncommented, "example").unwrap();
    for flavor in [Flavor::Frr, Flavor::Bird] {
        let r = c.routers.iter().find(|r| r.flavor == flavor).unwrap();
        assert!(!r.neighbors.is_empty());
        assert!(r.config_path.is_none() && r.reload_command.is_none());
        assert!(!c.router_subdivisions(&r.name).is_empty());
        let r = u.routers.iter().find(|r| r.flavor == flavor).unwrap();
        assert!(r.config_path.is_some() && r.reload_command.is_some());
    }
    assert!(c
        .routers
        .iter()
        .flat_map(|r| &r.neighbors)
        .any(|n| n.address.is_ipv6()));
}

#[test]
fn example_comments_every_key() {
    // Every key of every table is mentioned in the example (set, or commented out).
    for key in [
        "cooldown_s",
        "data_dir",
        "name",
        "prefix",
        "shard_prefix_len",
        "min_shard_prefix_len",
        "max_shard_prefix_len",
        "vrf",
        "reserved",
        "reserve_first",
        "reserve_last",
        "parent",
        "pools",
        "max_shards",
        "home_shards",
        "routers",
        "vcpus",
        "memory_gib",
        "network_mbps",
        "description",
        "flavor",
        "router_id",
        "asn",
        "neighbors",
        "address",
        "subdivisions",
        "config_path",
        "reload_command",
    ] {
        assert!(
            EXAMPLE_TOML.contains(key),
            "the example does not show {key}"
        );
    }
}

#[test]
fn default_validates_and_matches_its_description() {
    let c = Config::default();
    c.validate("built-in default").unwrap();
    assert_eq!(c.settings.cooldown_s, 30.0);
    let v4 = c.pool("v4").unwrap();
    assert_eq!(v4.prefix, "10.0.0.0/8".parse().unwrap());
    assert_eq!(v4.shard_prefix_len, 26);
    let v6 = c.pool("v6").unwrap();
    assert_eq!(v6.prefix, "fd00::/48".parse().unwrap());
    assert_eq!(v6.shard_prefix_len, 64);
    assert!(c.profiles.len() >= 3);
    assert!(c.profiles.iter().all(|p| p.bandwidth_mbps() > 0.0));
    assert!(c.subdivisions.is_empty() && c.routers.is_empty());
}

#[test]
fn round_trip_preserves_the_configuration() {
    let mut full = Config::from_toml_str(EXAMPLE_TOML, "example").unwrap();
    full.settings.data_dir = Some(PathBuf::from("/var/lib/cidrcast"));
    for c in [
        Config::default(),
        full,
        base(),
        Config::from_toml_str("", "x").unwrap(),
    ] {
        let text = c.to_toml_string().unwrap();
        let back = Config::from_toml_str(&text, "round-trip").unwrap();
        assert_eq!(back, c, "round trip of:\n{text}");
    }
}

#[test]
fn neighbor_and_router_deserialize_standalone() {
    let n: Neighbor = toml::from_str("address = \"2001:db8::2\"\nasn = 65010\n").unwrap();
    assert_eq!(
        n,
        Neighbor {
            address: "2001:db8::2".parse::<IpAddr>().unwrap(),
            asn: 65010
        }
    );
    let r: RouterSpec =
        toml::from_str("name = \"r\"\nflavor = \"bird\"\nrouter_id = \"10.0.0.1\"\nasn = 7\n")
            .unwrap();
    assert_eq!(r.flavor, Flavor::Bird);
    assert!(r.neighbors.is_empty() && r.subdivisions.is_empty());
    assert_eq!(r.config_path, None);
}

#[test]
fn router_subdivisions_merges_both_directions() {
    let c = base();
    // "edge" lists "region"; "zone" lists "edge".
    assert_eq!(c.router_subdivisions("edge"), vec!["region", "zone"]);
    let mut c = base();
    c.routers[0].subdivisions.push("zone".to_string());
    assert_eq!(c.router_subdivisions("edge"), vec!["region", "zone"]);
    assert!(c.router_subdivisions("nobody").is_empty());
}

#[test]
fn subdivisions_parents_first_orders_parents_before_children() {
    let mut c = base();
    // Children listed before their parents.
    c.subdivisions = vec![
        sub("rack", Some("zone")),
        sub("zone", Some("region")),
        sub("other", None),
        sub("region", None),
    ];
    c.routers[0].subdivisions.clear();
    c.validate(ORIGIN).unwrap();
    let order: Vec<&str> = c
        .subdivisions_parents_first()
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(order, vec!["other", "region", "zone", "rack"]);
}

#[test]
fn settings_convert_to_core_settings() {
    let mut c = base();
    c.settings.cooldown_s = 12.5;
    assert_eq!(c.settings.to_core().cooldown_s, 12.5);
}
