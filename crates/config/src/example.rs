//! The commented example configuration that `cidrcast init` writes.

/// A complete, commented example configuration: every key is explained; subdivisions nest
/// region > zone > rack; a v4 and a v6 pool with reserved addresses; profiles; an FRR and a BIRD
/// router; scheduled external events. It parses and validates.
pub const EXAMPLE_TOML: &str = r#"# cidrcast configuration.
#
# Every table is strict: a misspelt or unknown key is an error that names the key and its line.
# Names of pools, subdivisions, profiles and routers are 1 to 64 characters out of
# A-Z a-z 0-9 . _ -  and unique within their kind. Every section below is optional.

[settings]
# Release cooldown in seconds: an address released at time t is not handed out again before
# t + cooldown_s, so that stale ARP/ND caches, DNS records and firewall state age out first.
# A finite number >= 0; default 30.
cooldown_s = 30
# Directory of the daemon's store. Optional; when left out the command line decides.
# data_dir = "cidrcast-data"

# -------------------------------------------------------------------------------------------
# Pools: root prefixes, each carved into aligned shards (of one size, or of a range of sizes).
# Subdivisions are handed whole shards, and routers announce them. Pools of one VRF must not
# overlap.
# -------------------------------------------------------------------------------------------

[[pool]]
# Unique name; subdivisions refer to it.
name = "v4"
# The root prefix, with host bits zero.
prefix = "10.0.0.0/8"
# Prefix length of one shard: /26 = 64 addresses. At least the pool's prefix length, at most 32.
shard_prefix_len = 26
# Shards of several sizes: shards from /min_shard_prefix_len (the largest, here a /24 of 256
# addresses) to /max_shard_prefix_len (the smallest, here a /28 of 16) may be claimed, by the
# planner or by `cidrcast shard claim --prefix-len N`; shard_prefix_len, which must lie between
# the two, stays the default size and the unit home blocks are counted in. The smallest shard
# must keep an address after reserve_first + reserve_last. Optional; default shard_prefix_len
# (shards of one size).
min_shard_prefix_len = 24
max_shard_prefix_len = 28
# VRF / tenant: pools only conflict with pools of the same VRF. Optional; default "default".
vrf = "default"
# Ranges never handed out: a shard overlapping one is never placed. Each must lie inside the
# prefix, host bits zero. Optional; default none.
reserved = ["10.0.0.0/24", "10.255.255.0/24"]
# Addresses at the start of every shard that are never leased: network address and gateway.
# Optional; default 0.
reserve_first = 2
# Addresses at the end of every shard that are never leased: the IPv4 broadcast address.
# reserve_first + reserve_last must leave at least one address. Optional; default 0.
reserve_last = 1

[[pool]]
name = "v6"
# A unique local address (ULA) /48.
prefix = "fd12:3456:789a::/48"
# IPv6 shards are /64 to /128 (a shard's address bitmap indexes at most 2^64 addresses).
shard_prefix_len = 64
vrf = "default"
# Keep the last /64 for infrastructure.
reserved = ["fd12:3456:789a:ffff::/64"]
# ::0 (subnet-router anycast) and ::1 (gateway) of every /64.
reserve_first = 2
reserve_last = 0

# -------------------------------------------------------------------------------------------
# Subdivisions: named places that run VMs, nested through `parent` (here region > zone > rack).
# A subdivision's shards are placed in its home block, an aligned block of `home_shards` shards
# carved out of its parent's, so that they aggregate into few routes.
# -------------------------------------------------------------------------------------------

[[subdivision]]
# Unique name; VM events and allocation requests refer to it.
name = "eu"
# Pools to draw from, in order of preference. Optional; empty or left out means every pool.
pools = ["v4", "v6"]
# Size of the home block in shards, a power of two: 4096 /26 = a /14, and 4096 /64 = a /52.
# It grows by claiming its buddy and never shrinks below this size. Optional.
home_shards = 4096

[[subdivision]]
name = "eu-a"
# The enclosing subdivision (a zone of region "eu"). Optional; must name a subdivision, no cycles.
parent = "eu"
pools = ["v4", "v6"]
home_shards = 1024
# Upper bound on non-free shards per pool, >= 1 and >= home_shards. Optional; default no limit.
max_shards = 2048

[[subdivision]]
name = "eu-a-r1"
# A rack of zone "eu-a".
parent = "eu-a"
home_shards = 16
max_shards = 64

[[subdivision]]
name = "eu-b"
parent = "eu"
home_shards = 1024
max_shards = 2048
# Routers that announce this subdivision's shards. Optional. A router can also list its
# subdivisions itself (see `subdivisions` under [[router]]); the two lists are merged.
routers = ["edge-eu-b"]

# -------------------------------------------------------------------------------------------
# Application profiles: VM classes. Allocation requests and traces name a profile; its network
# I/O drives bandwidth forecasts and the demand score.
# -------------------------------------------------------------------------------------------

[[profile]]
# Unique name.
name = "small"
# Virtual CPUs per VM, >= 1.
vcpus = 1
# Memory per VM in GiB, > 0.
memory_gib = 2.0
# Expected network I/O per VM in Mbit/s, >= 0.
network_mbps = 100.0
# Free text. Optional.
description = "sidecars, CI runners"

[[profile]]
name = "web"
vcpus = 2
memory_gib = 4.0
network_mbps = 500.0
description = "web front ends"

[[profile]]
name = "general"
vcpus = 4
memory_gib = 16.0
network_mbps = 1000.0
description = "general purpose"

[[profile]]
name = "large"
vcpus = 16
memory_gib = 64.0
network_mbps = 10000.0
description = "databases, caches"

# -------------------------------------------------------------------------------------------
# Routers: each announces the aggregated shards of its subdivisions over BGP. cidrcast renders
# its configuration and, when asked, writes it and reloads the daemon.
# -------------------------------------------------------------------------------------------

[[router]]
# Unique name.
name = "edge-eu-a"
# Routing daemon the configuration is rendered for: "frr" or "bird".
flavor = "frr"
# BGP router id: an IPv4 address (also for IPv6-only routers), not 0.0.0.0.
router_id = "192.0.2.1"
# Local AS number, 1 to 4294967295.
asn = 65001
# BGP neighbors: each an IPv4 or IPv6 address and the peer's AS number. Optional.
neighbors = [
    { address = "192.0.2.254", asn = 65000 },
    { address = "2001:db8::fe", asn = 65000 },
]
# Subdivisions whose shards this router announces. Optional; merged with the subdivisions that
# name this router in their `routers`.
subdivisions = ["eu-a", "eu-a-r1"]
# Where the rendered configuration is written, by `cidrcast router apply` and by the daemon
# (which keeps it up to date as shards change): validated by the daemon's own parser first,
# then written atomically. Optional: without it the configuration is only rendered
# (`cidrcast router render`, GET /v1/routers/NAME/config). Commented out here so that trying
# this file does not replace a real router's configuration; the daemon refuses to start when
# it could not write this path.
# config_path = "/etc/frr/frr.conf"
# Command run after writing it (sh -c; CIDRCAST_ROUTER and CIDRCAST_CONFIG_PATH are set).
# Optional. When it fails, the previous file is put back and the failure reported. For FRR,
# frr-reload.py applies only the differences; for BIRD, `birdc configure`.
# reload_command = "/usr/lib/frr/frr-reload.py --reload /etc/frr/frr.conf"

# Routing policy of the announcements. Optional; these are the defaults.
[router.policy]
# Community on prefixes of active (and draining) shards: "ASN:VALUE", default <asn>:100.
active_community = "65001:100"
# Community on prefixes of reserved (prefetched) shards, default <asn>:200.
prefetched_community = "65001:200"
# LOCAL_PREF (iBGP) and MED (eBGP) of every announced prefix: the owning subdivision's router
# is preferred where another router announces the same prefix.
local_pref = 200
med = 0

[[router]]
name = "edge-eu-b"
flavor = "bird"
router_id = "192.0.2.2"
asn = 65002
neighbors = [{ address = "192.0.2.253", asn = 65000 }]
# No `subdivisions` here: subdivision "eu-b" names this router in its `routers`.
# config_path = "/etc/bird/bird.conf"
# reload_command = "birdc configure"

# -------------------------------------------------------------------------------------------
# Scheduled external events: known changes of demand ahead (a launch, a sale, a migration) that
# the forecasts must reflect during their window. Each time this file is used, its events are
# created in the store, or replace the stored event of the same name when they differ; events
# added with `cidrcast event add` under other names are kept.
# -------------------------------------------------------------------------------------------

[[event]]
# Unique name, the same rules as the other names.
name = "product-launch"
# Window in seconds, start inclusive, end exclusive: Unix time in the daemon, trace time in
# replays. end must be greater than start. Here 2026-03-02 08:00 to 20:00 UTC.
start = 1772438400
end = 1772481600
# A subdivision name: the event applies to it and to every subdivision below it (here the zone
# "eu-a" and its rack "eu-a-r1"). "*" applies it everywhere.
scope = "eu-a"
# Expected additional VMs alive during the window, >= 0. Optional, but give this, `multiplier`
# or both.
extra_vms = 400

[[event]]
name = "black-friday"
# 2026-11-27 00:00 to 2026-11-30 00:00 UTC (the weekend included).
start = 1795737600
end = 1795996800
# Every subdivision.
scope = "*"
# Factor applied to the forecast during the window, > 0. Optional. With both keys, a forecast v
# becomes v * multiplier + extra_vms; overlapping events multiply their multipliers and add
# their extras.
multiplier = 1.5

# -------------------------------------------------------------------------------------------
# [server]: the daemon, `cidrcast serve`. Every key has a default (shown).
# -------------------------------------------------------------------------------------------

[server]
# Address to listen on; `--listen` overrides it. Port 0 picks a free one (printed at startup).
listen = "127.0.0.1:8470"
# Seconds between reconciler runs (history -> forecasts -> plan -> apply); POST /v1/plan runs
# one at once.
reconcile_interval_s = 60
# Seconds from a shard's reservation until routers announce it: reserved shards activate after
# it, and the prefetcher holds ready what the forecast says is needed over it.
lead_time_s = 60
# Miss rate (allocations that find no ready address) the prefetcher steers its quantile to.
target_miss_rate = 0.001
# Largest JSON request body, and largest history import (streamed), in bytes.
max_body_bytes = 1048576
max_import_bytes = 1073741824
# With [store] kind = "etcd": seconds of the etcd lease behind the leader election (2 to 60).
# One daemon runs the reconciler; when it dies, another takes over within about this long.
leader_ttl_s = 10
# HTTPS (rustls) when both are given: PEM certificate chain and private key.
# tls_cert = "/etc/cidrcast/tls.crt"
# tls_key = "/etc/cidrcast/tls.key"

# -------------------------------------------------------------------------------------------
# [store]: where the records live. The embedded redb file in the data directory by default;
# an etcd cluster (v3 API) when several daemons share one state (a build with
# `--features etcd`). etcd must run with `--max-txn-ops 131072 --max-request-bytes 33554432`:
# one commit is one transaction.
# -------------------------------------------------------------------------------------------

# [store]
# kind = "etcd"
# endpoints = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]
# prefix = "/cidrcast/"                    # every key starts with it
# username = "cidrcast"                    # with password_file (its first line)
# password_file = "/etc/cidrcast/etcd-password"
# tls_ca = "/etc/cidrcast/etcd-ca.pem"     # TLS; https endpoints need it
# tls_cert = "/etc/cidrcast/etcd-client.pem"   # client certificate, with tls_key
# tls_key = "/etc/cidrcast/etcd-client.key"
# connect_timeout_s = 5
# request_timeout_s = 5

# -------------------------------------------------------------------------------------------
# [[token]]: API bearer tokens. A token stores the SHA-256 of its secret, never the secret;
# `cidrcast token new --name N --role R` prints a fresh secret and its table. Without any
# [[token]] the daemon serves without authentication, and only on loopback.
# Roles, each including the ones after it: admin (pools, routers), operator (subdivisions,
# profiles, events, history, plans, shards), allocator (allocate, release), reader.
# tenants (pool VRFs) and subdivisions (with everything below them) limit what it sees.
# -------------------------------------------------------------------------------------------

# [[token]]
# name = "scheduler-blue"
# role = "allocator"
# sha256 = "6a1f0c3e..."           # 64 hex digits
# tenants = ["blue"]
"#;
