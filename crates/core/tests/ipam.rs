//! Behaviour of the allocator on concrete scenarios.

mod common;

use std::net::IpAddr;

use cidrcast_core::model::{Reason, ShardState};
use cidrcast_core::{AllocPath, CoreError, Ipam, Settings};
use common::{pool, pool_sized, sub};
use ipnet::IpNet;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ipam_v4(prefix: &str, shard: u8) -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool("v4", prefix, shard)).unwrap();
    ipam
}

#[test]
fn allocate_is_idempotent_and_conflicts_across_subdivisions() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    ipam.add_subdivision(sub("b")).unwrap();
    let first = ipam.allocate("a", "vm-1", None, None, 0.0).unwrap();
    assert_eq!(first.path, AllocPath::ClaimedShard);
    assert_eq!(first.address, ip("10.0.0.0"));
    let again = ipam.allocate("a", "vm-1", None, None, 1.0).unwrap();
    assert_eq!(again.path, AllocPath::Existing);
    assert_eq!(again.address, first.address);
    let err = ipam.allocate("b", "vm-1", None, None, 2.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "vm `vm-1` already holds 10.0.0.0 in subdivision `a`"
    );
    assert_eq!(ipam.lease_count(), 1);
    let second = ipam.allocate("a", "vm-2", None, None, 3.0).unwrap();
    assert_eq!(second.path, AllocPath::Ready);
    assert_eq!(second.address, ip("10.0.0.1"));
}

#[test]
fn shards_fill_the_home_block_and_aggregate() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    for i in 0..256 {
        ipam.allocate("a", &format!("vm-{i}"), None, None, 0.0)
            .unwrap();
    }
    let shards = ipam.shards(Some("a")).unwrap();
    let prefixes: Vec<String> = shards.iter().map(|s| s.record.prefix.to_string()).collect();
    assert_eq!(
        prefixes,
        [
            "10.0.0.0/26",
            "10.0.0.64/26",
            "10.0.0.128/26",
            "10.0.0.192/26"
        ]
    );
    assert_eq!(ipam.routes("a", &[]).unwrap(), vec![net("10.0.0.0/24")]);
    // The fifth shard doubles the home block by claiming its buddy.
    let a = ipam.allocate("a", "vm-256", None, None, 0.0).unwrap();
    assert_eq!(a.shard, net("10.0.1.0/26"));
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/23")]
    );
    assert_eq!(ipam.counters().home_growths, 1);
    assert_eq!(ipam.counters().borrowed_claims, 0);
    ipam.check_invariants().unwrap();
}

#[test]
fn homes_spread_and_borrow_only_when_the_buddy_is_taken() {
    // a /26 pool of /30 shards: 16 shards.
    let mut ipam = ipam_v4("10.0.0.0/26", 30);
    let mut a = sub("a");
    a.home_shards = Some(1);
    let mut b = sub("b");
    b.home_shards = Some(1);
    ipam.add_subdivision(a).unwrap();
    ipam.add_subdivision(b).unwrap();
    ipam.allocate("a", "a0", None, None, 0.0).unwrap();
    ipam.allocate("b", "b0", None, None, 0.0).unwrap();
    // a's home at the bottom, b's in the middle of the largest free block.
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/30")]
    );
    assert_eq!(
        ipam.subdivision("b").unwrap().homes,
        vec![net("10.0.0.32/30")]
    );
    // a grows 1 -> 2 -> 4 -> 8 shards (a /27) without borrowing.
    for i in 1..32 {
        ipam.allocate("a", &format!("a{i}"), None, None, 0.0)
            .unwrap();
    }
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/27")]
    );
    assert_eq!(ipam.routes("a", &[]).unwrap(), vec![net("10.0.0.0/27")]);
    assert_eq!(ipam.counters().borrowed_claims, 0);
    // The next doubling would need b's half: a borrows a far shard instead.
    let far = ipam.allocate("a", "a32", None, None, 0.0).unwrap();
    assert_eq!(far.path, AllocPath::ClaimedShard);
    assert_eq!(ipam.counters().borrowed_claims, 1);
    let info = ipam.subdivision("a").unwrap();
    assert_eq!(info.borrowed, 1);
    assert_eq!(info.routes.len(), 2);
    assert!(!net("10.0.0.32/27").contains(&far.address) || far.address != ip("10.0.0.32"));
    ipam.check_invariants().unwrap();
}

#[test]
fn released_addresses_cool_down_before_reuse() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    let x = ipam.allocate("a", "x", None, None, 100.0).unwrap().address;
    ipam.release("x", 110.0).unwrap();
    let y = ipam.allocate("a", "y", None, None, 120.0).unwrap().address;
    assert_ne!(x, y, "reused within the cooldown");
    ipam.release("y", 121.0).unwrap();
    // 110 + 30 = 140: x is free again and is the lowest.
    let z = ipam.allocate("a", "z", None, None, 140.0).unwrap().address;
    assert_eq!(z, x);
    let err = ipam.release("nobody", 150.0).unwrap_err();
    assert_eq!(err, CoreError::UnknownLease("nobody".into()));
}

#[test]
fn a_full_shard_waiting_on_cooldown_claims_another() {
    let mut ipam = ipam_v4("10.0.0.0/24", 30);
    let mut a = sub("a");
    a.max_shards = Some(1);
    ipam.add_subdivision(a).unwrap();
    for i in 0..4 {
        ipam.allocate("a", &format!("v{i}"), None, None, 0.0)
            .unwrap();
    }
    ipam.release("v0", 1.0).unwrap();
    let err = ipam.allocate("a", "v4", None, None, 2.0).unwrap_err();
    assert!(matches!(err, CoreError::MaxShards { max: 1, .. }), "{err}");
    let ok = ipam.allocate("a", "v4", None, None, 31.0).unwrap();
    assert_eq!(ok.address, ip("10.0.0.0"));
}

#[test]
fn drained_shards_take_no_new_leases_and_go_when_empty() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    let first = ipam.allocate("a", "v0", None, None, 0.0).unwrap();
    let shard = first.shard;
    ipam.drain_shard(&shard, Reason::Operator, 1.0).unwrap();
    let next = ipam.allocate("a", "v1", None, None, 2.0).unwrap();
    assert_ne!(next.shard, shard, "a draining shard handed out an address");
    let busy = ipam
        .release_shard(&shard, Reason::Operator, 3.0)
        .unwrap_err();
    assert_eq!(busy.to_string(), "shard 10.0.0.0/26 still holds 1 lease(s)");
    ipam.release("v0", 4.0).unwrap();
    // Released once its last lease has gone and that address has cooled down.
    let still = ipam.shards(Some("a")).unwrap();
    assert!(still
        .iter()
        .any(|s| s.record.prefix == shard && s.record.state == ShardState::Draining));
    let e = ipam
        .release_shard(&shard, Reason::Operator, 5.0)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("1 address(es) in their release cooldown"),
        "{e}"
    );
    ipam.expire(34.0);
    assert!(ipam
        .shards(Some("a"))
        .unwrap()
        .iter()
        .all(|s| s.record.prefix != shard));
    ipam.check_invariants().unwrap();
}

#[test]
fn lifecycle_transitions_are_checked_and_journaled_with_reasons() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    ipam.take_journal();
    let s = ipam.claim_shard("a", None, Reason::Forecast, 5.0).unwrap();
    assert_eq!(s.state, ShardState::Reserved);
    let err = ipam
        .drain_shard(&s.prefix, Reason::Operator, 6.0)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "shard 10.0.0.0/26 is reserved; cannot drain it"
    );
    ipam.activate_shard(&s.prefix, Reason::Forecast, 7.0)
        .unwrap();
    assert_eq!(
        ipam.drain_shard(&s.prefix, Reason::Reclaim, 8.0).unwrap(),
        None
    );
    let transitions: Vec<_> = ipam
        .take_journal()
        .into_iter()
        .filter_map(|c| match c {
            cidrcast_core::model::Change::Transition(t) => Some((t.from, t.to, t.reason)),
            _ => None,
        })
        .collect();
    use ShardState::*;
    assert_eq!(
        transitions,
        vec![
            (None, Some(Reserved), Reason::Forecast),
            (Some(Reserved), Some(Active), Reason::Forecast),
            (Some(Active), Some(Draining), Reason::Reclaim),
            (Some(Draining), None, Reason::Reclaim),
        ]
    );
    assert!(ipam.shards(None).unwrap().is_empty());
}

#[test]
fn a_reserved_shard_is_activated_before_claiming_another() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    let s = ipam.claim_shard("a", None, Reason::Forecast, 0.0).unwrap();
    let a = ipam.allocate("a", "v", None, None, 1.0).unwrap();
    assert_eq!(a.path, AllocPath::ActivatedReserved);
    assert_eq!(a.shard, s.prefix);
}

#[test]
fn exhausted_pool_is_an_error_that_changes_nothing() {
    let mut ipam = ipam_v4("10.0.0.0/29", 30);
    ipam.add_subdivision(sub("a")).unwrap();
    for i in 0..8 {
        ipam.allocate("a", &format!("v{i}"), None, None, 0.0)
            .unwrap();
    }
    ipam.take_journal();
    let before = ipam.snapshot();
    let err = ipam.allocate("a", "v8", None, None, 0.0).unwrap_err();
    assert_eq!(
        err.to_string(),
        "pool `v4` is exhausted: no free /30 left for subdivision `a`"
    );
    assert_eq!(ipam.snapshot(), before);
    assert!(!ipam.has_journal());
}

#[test]
fn pool_validation_names_the_problem() {
    let mut ipam = ipam_v4("10.0.0.0/8", 26);
    let e = ipam.add_pool(pool("x", "10.1.0.0/16", 26)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool `x`: prefix 10.1.0.0/16 overlaps pool `v4` (10.0.0.0/8) in VRF `default`"
    );
    let mut other_vrf = pool("x", "10.1.0.0/16", 26);
    other_vrf.vrf = "blue".into();
    ipam.add_pool(other_vrf).unwrap();
    let e = ipam.add_pool(pool("y", "192.168.1.1/24", 26)).unwrap_err();
    assert!(
        e.to_string().contains("192.168.1.1/24 has host bits set"),
        "{e}"
    );
    let e = ipam.add_pool(pool("y", "192.168.0.0/24", 20)).unwrap_err();
    assert!(e.to_string().contains("shard_prefix_len 20"), "{e}");
    let e = ipam.add_pool(pool("y", "2001:db8::/32", 48)).unwrap_err();
    assert!(e.to_string().contains("at most 2^64"), "{e}");
    let e = ipam.add_pool(pool("v4", "192.168.0.0/24", 26)).unwrap_err();
    assert_eq!(e, CoreError::PoolExists("v4".into()));
}

#[test]
fn reserved_ranges_and_addresses_are_never_handed_out() {
    let mut p = pool("v4", "10.0.0.0/24", 28);
    p.reserved = vec![net("10.0.0.0/28"), net("10.0.0.20/32")];
    p.reserve_first = 1;
    p.reserve_last = 1;
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(p).unwrap();
    ipam.add_subdivision(sub("a")).unwrap();
    let mut addrs = vec![];
    for i in 0..14 * 14 {
        let a = ipam
            .allocate("a", &format!("v{i}"), None, None, 0.0)
            .unwrap();
        assert!(!net("10.0.0.0/28").contains(&a.address));
        assert!(!net("10.0.0.16/28").contains(&a.address));
        let last = a.address.to_string();
        assert!(!last.ends_with(".0") && !a.shard.broadcast().eq(&a.address));
        assert_ne!(a.address, a.shard.network());
        addrs.push(a.address);
    }
    assert!(ipam.allocate("a", "one-more", None, None, 0.0).is_err());
    ipam.check_invariants().unwrap();
}

#[test]
fn ipv6_scale_never_enumerates_the_space() {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool("v6", "2001:db8::/32", 64)).unwrap();
    for s in 0..50 {
        ipam.add_subdivision(sub(&format!("s{s}"))).unwrap();
    }
    for i in 0..20_000 {
        let s = format!("s{}", i % 50);
        let a = ipam
            .allocate(&s, &format!("vm{i}"), None, None, 0.0)
            .unwrap();
        assert_eq!(a.shard.prefix_len(), 64);
    }
    // Each subdivision packs its 400 VMs in one /64, from ::0 upwards.
    let info = ipam.subdivision("s7").unwrap();
    assert_eq!(info.shards, 1);
    assert_eq!(info.leases, 400);
    let pools = ipam.pools();
    assert_eq!(pools[0].shards_active, 50);
    assert_eq!(pools[0].size, 1u128 << 96);
    ipam.check_invariants().unwrap();
    // /112 shards too.
    let mut small = Ipam::new(Settings::default());
    small.add_pool(pool("v6", "fd00::/48", 112)).unwrap();
    small.add_subdivision(sub("a")).unwrap();
    for i in 0..70_000 {
        small
            .allocate("a", &format!("vm{i}"), None, None, 0.0)
            .unwrap();
    }
    assert_eq!(
        small.subdivision("a").unwrap().routes,
        vec![net("fd00::/111")]
    );
}

#[test]
fn nested_subdivisions_stay_inside_their_parent_block() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("region")).unwrap();
    let mut zone = sub("zone");
    zone.parent = Some("region".into());
    ipam.add_subdivision(zone).unwrap();
    for r in 0..3 {
        let mut rack = sub(&format!("rack{r}"));
        rack.parent = Some("zone".into());
        ipam.add_subdivision(rack).unwrap();
    }
    for i in 0..600 {
        let rack = format!("rack{}", i % 3);
        ipam.allocate(&rack, &format!("vm{i}"), None, None, 0.0)
            .unwrap();
    }
    let region = ipam.subdivision("region").unwrap().homes[0];
    let zone = ipam.subdivision("zone").unwrap().homes[0];
    assert!(region.contains(&zone), "{region} does not hold {zone}");
    for r in 0..3 {
        let info = ipam.subdivision(&format!("rack{r}")).unwrap();
        assert_eq!(info.borrowed, 0);
        for route in info.routes {
            assert!(zone.contains(&route), "{zone} does not hold {route}");
        }
    }
    let e = ipam.remove_subdivision("zone").unwrap_err();
    assert_eq!(
        e.to_string(),
        "subdivision `zone` still has 3 child subdivision(s)"
    );
    ipam.check_invariants().unwrap();
}

#[test]
fn snapshot_round_trip_rebuilds_the_same_state() {
    let mut ipam = ipam_v4("10.0.0.0/16", 28);
    ipam.add_subdivision(sub("a")).unwrap();
    let mut b = sub("b");
    b.parent = Some("a".into());
    ipam.add_subdivision(b).unwrap();
    for i in 0..100 {
        let s = if i % 2 == 0 { "a" } else { "b" };
        ipam.allocate(s, &format!("v{i}"), Some("web"), None, i as f64)
            .unwrap();
    }
    for i in (0..100).step_by(3) {
        ipam.release(&format!("v{i}"), 100.0 + i as f64).unwrap();
    }
    let snap = ipam.snapshot();
    let mut copy = Ipam::from_snapshot(Settings::default(), &snap).unwrap();
    assert_eq!(copy.snapshot(), snap);
    copy.check_invariants().unwrap();
    // Both continue identically.
    for i in 100..160 {
        let s = if i % 2 == 0 { "a" } else { "b" };
        let x = ipam
            .allocate(s, &format!("v{i}"), None, None, 150.0)
            .unwrap();
        let y = copy
            .allocate(s, &format!("v{i}"), None, None, 150.0)
            .unwrap();
        assert_eq!(x, y);
    }
}

#[test]
fn allocation_falls_through_to_the_next_pool_with_space() {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool("tiny", "192.168.0.0/30", 30)).unwrap();
    ipam.add_pool(pool("v4", "10.0.0.0/16", 26)).unwrap();
    let mut s = sub("s");
    s.pools = vec!["tiny".into(), "v4".into()];
    ipam.add_subdivision(s).unwrap();
    ipam.add_subdivision(sub("every")).unwrap();
    let mut got = vec![];
    for i in 0..6 {
        got.push(
            ipam.allocate("s", &format!("v{i}"), None, None, 0.0)
                .unwrap()
                .address,
        );
    }
    assert_eq!(got[0], ip("192.168.0.0"));
    assert_eq!(got[3], ip("192.168.0.3"));
    assert_eq!(
        got[4],
        ip("10.0.0.0"),
        "did not fall through to the next pool"
    );
    // A subdivision drawing from every pool keeps using the pool it has room in.
    let a = ipam.allocate("every", "e0", None, None, 0.0).unwrap();
    assert!(net("10.0.0.0/16").contains(&a.address), "{}", a.address);
    let b = ipam.allocate("every", "e1", None, None, 0.0).unwrap();
    assert_eq!(b.shard, a.shard);
    // An explicit pool is honoured, and its exhaustion is reported for that pool.
    let e = ipam
        .allocate("s", "x", None, Some("tiny"), 0.0)
        .unwrap_err();
    assert!(e.to_string().starts_with("pool `tiny` is exhausted"), "{e}");
    ipam.check_invariants().unwrap();
}

#[test]
fn profiles_beyond_the_limit_are_refused_without_change() {
    let mut ipam = ipam_v4("10.0.0.0/16", 26);
    ipam.add_subdivision(sub("a")).unwrap();
    for i in 0..cidrcast_core::MAX_PROFILES {
        let p = format!("p{i}");
        ipam.allocate("a", &format!("v{i}"), Some(&p), None, 0.0)
            .unwrap();
    }
    assert_eq!(ipam.lease("v7").unwrap().profile.as_deref(), Some("p7"));
    ipam.take_journal();
    let before = ipam.snapshot();
    let e = ipam
        .allocate("a", "one-more", Some("p-new"), None, 0.0)
        .unwrap_err();
    assert!(e.to_string().contains("at most 255"), "{e}");
    assert_eq!(ipam.snapshot(), before);
    assert!(!ipam.has_journal());
    // Known profiles still work.
    ipam.allocate("a", "again", Some("p3"), None, 0.0).unwrap();
}

// ------------------------------------------------------------------------------------------
// Adaptive shard sizes: a pool hands out shards from /min_shard_prefix_len to
// /max_shard_prefix_len.

/// 10.0.0.0/16 in /26 shards by default, /24 to /28 allowed; one subdivision `a` (home block of
/// 4 default shards: a /24).
fn ipam_sized() -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool_sized("v4", "10.0.0.0/16", 26, 24, 28))
        .unwrap();
    ipam.add_subdivision(sub("a")).unwrap();
    ipam
}

fn claim(ipam: &mut Ipam, sub: &str, len: u8) -> IpNet {
    ipam.claim_shard_sized(sub, None, Some(len), Reason::Forecast, 0.0)
        .unwrap_or_else(|e| panic!("claim /{len} for {sub}: {e}"))
        .prefix
}

#[test]
fn shards_of_two_sizes_in_one_home_block_are_aligned_and_disjoint() {
    let mut ipam = ipam_sized();
    let small = claim(&mut ipam, "a", 28);
    let big = claim(&mut ipam, "a", 26);
    // Best fit, lowest buddy first: the /28 opens the home block, the /26 takes the lowest free
    // /26 (the first /26 is split by the /28).
    assert_eq!(small, net("10.0.0.0/28"));
    assert_eq!(big, net("10.0.0.64/26"));
    for s in [small, big] {
        assert_eq!(s.network(), s.addr(), "{s} is not aligned");
        assert!(
            net("10.0.0.0/24").contains(&s),
            "{s} outside the home block"
        );
    }
    assert!(!small.contains(&big.network()) && !big.contains(&small.network()));
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/24")]
    );
    // The next /28 fills the hole beside the first one rather than splitting a larger block.
    assert_eq!(claim(&mut ipam, "a", 28), net("10.0.0.16/28"));
    assert_eq!(claim(&mut ipam, "a", 27), net("10.0.0.32/27"));
    assert_eq!(ipam.routes("a", &[]).unwrap(), vec![net("10.0.0.0/25")]);
    let shards = ipam.shards(Some("a")).unwrap();
    let usable: Vec<(String, u128)> = shards
        .iter()
        .map(|s| (s.record.prefix.to_string(), s.usable))
        .collect();
    assert_eq!(
        usable,
        [
            ("10.0.0.0/28".to_string(), 16),
            ("10.0.0.16/28".to_string(), 16),
            ("10.0.0.32/27".to_string(), 32),
            ("10.0.0.64/26".to_string(), 64),
        ]
    );
    assert_eq!(ipam.subdivision("a").unwrap().usable, 128);
    assert_eq!(ipam.pools()[0].usable_in_shards, 128);
    assert_eq!(ipam.counters().borrowed_claims, 0);
    ipam.check_invariants().unwrap();
}

#[test]
fn routes_aggregate_shards_of_mixed_sizes() {
    let mut ipam = ipam_sized();
    assert_eq!(claim(&mut ipam, "a", 27), net("10.0.0.0/27"));
    assert_eq!(claim(&mut ipam, "a", 28), net("10.0.0.32/28"));
    assert_eq!(claim(&mut ipam, "a", 28), net("10.0.0.48/28"));
    // A /27 and two /28 buddies: one /26.
    assert_eq!(ipam.routes("a", &[]).unwrap(), vec![net("10.0.0.0/26")]);
    assert_eq!(
        ipam.subdivision("a").unwrap().routes,
        vec![net("10.0.0.0/26")]
    );
    // Only the active ones: the /27 alone.
    ipam.activate_shard(&net("10.0.0.0/27"), Reason::Operator, 1.0)
        .unwrap();
    assert_eq!(
        ipam.routes("a", &[ShardState::Active]).unwrap(),
        vec![net("10.0.0.0/27")]
    );
    ipam.check_invariants().unwrap();
}

#[test]
fn a_shard_size_outside_the_pool_range_is_refused_without_change() {
    let mut ipam = ipam_sized();
    claim(&mut ipam, "a", 28);
    ipam.take_journal();
    let before = ipam.snapshot();
    let counters = ipam.counters();
    for (len, msg) in [
        (
            23,
            "pool `v4`: cannot claim a /23 shard: the allowed shard prefix lengths are /24 to /28",
        ),
        (
            29,
            "pool `v4`: cannot claim a /29 shard: the allowed shard prefix lengths are /24 to /28",
        ),
        (
            200,
            "pool `v4`: cannot claim a /200 shard: the allowed shard prefix lengths are /24 to /28",
        ),
    ] {
        let e = ipam
            .claim_shard_sized("a", None, Some(len), Reason::Operator, 1.0)
            .unwrap_err();
        assert_eq!(
            e,
            CoreError::ShardSizeNotAllowed {
                pool: "v4".into(),
                prefix_len: len,
                min: 24,
                max: 28
            }
        );
        assert_eq!(e.to_string(), msg);
        assert_eq!(ipam.snapshot(), before);
        assert!(!ipam.has_journal());
        assert_eq!(ipam.counters(), counters);
    }
    // A pool without a range hands out its shard_prefix_len only; None is that size.
    let mut plain = ipam_v4("10.0.0.0/16", 26);
    plain.add_subdivision(sub("a")).unwrap();
    let e = plain
        .claim_shard_sized("a", None, Some(27), Reason::Operator, 0.0)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool `v4`: cannot claim a /27 shard: it only hands out /26 shards (set \
         min_shard_prefix_len / max_shard_prefix_len to allow other sizes)"
    );
    assert!(plain.shards(None).unwrap().is_empty());
    assert!(plain.subdivision("a").unwrap().homes.is_empty());
    let s = plain
        .claim_shard_sized("a", None, Some(26), Reason::Operator, 0.0)
        .unwrap();
    assert_eq!(s.prefix, net("10.0.0.0/26"));
    let s = plain
        .claim_shard_sized("a", None, None, Reason::Operator, 0.0)
        .unwrap();
    assert_eq!(s.prefix, net("10.0.0.64/26"));
}

#[test]
fn a_shard_larger_than_the_home_block_grows_it() {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool_sized("v4", "10.0.0.0/16", 26, 22, 28))
        .unwrap();
    ipam.add_subdivision(sub("a")).unwrap();
    assert_eq!(claim(&mut ipam, "a", 26), net("10.0.0.0/26"));
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/24")]
    );
    // A /23 does not fit the /24 home: it doubles twice (the first /23 holds the /26).
    assert_eq!(claim(&mut ipam, "a", 23), net("10.0.2.0/23"));
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/22")]
    );
    assert_eq!(ipam.counters().home_growths, 2);
    assert_eq!(ipam.counters().borrowed_claims, 0);
    ipam.check_invariants().unwrap();
    // Released, the /23 coalesces and the home block shrinks back to its floor.
    ipam.release_shard(&net("10.0.2.0/23"), Reason::Reclaim, 1.0)
        .unwrap();
    assert_eq!(
        ipam.subdivision("a").unwrap().homes,
        vec![net("10.0.0.0/24")]
    );
    ipam.check_invariants().unwrap();
}

#[test]
fn a_shard_that_no_grown_home_holds_is_borrowed_and_the_home_left_as_it_was() {
    // A /24 pool of /28 shards, /26 to /28 allowed; three subdivisions with one-shard homes.
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool_sized("v4", "10.0.0.0/24", 28, 26, 28))
        .unwrap();
    for name in ["a", "b", "c"] {
        let mut s = sub(name);
        s.home_shards = Some(1);
        ipam.add_subdivision(s).unwrap();
        claim(&mut ipam, name, 28);
    }
    let home = |ipam: &Ipam, s: &str| ipam.subdivision(s).unwrap().homes;
    assert_eq!(home(&ipam, "a"), vec![net("10.0.0.0/28")]);
    assert_eq!(home(&ipam, "b"), vec![net("10.0.0.128/28")]);
    assert_eq!(home(&ipam, "c"), vec![net("10.0.0.64/28")]);
    let growths = ipam.counters().home_growths;
    // a's home could grow to a /26, which its first shard splits; the /25 would need c's space.
    let far = claim(&mut ipam, "a", 26);
    assert_eq!(far, net("10.0.0.192/26"));
    assert_eq!(home(&ipam, "a"), vec![net("10.0.0.0/28")]);
    assert_eq!(ipam.counters().home_growths, growths);
    assert_eq!(ipam.counters().borrowed_claims, 1);
    let info = ipam.subdivision("a").unwrap();
    assert_eq!(info.borrowed, 1);
    assert_eq!(info.routes, vec![net("10.0.0.0/28"), net("10.0.0.192/26")]);
    ipam.check_invariants().unwrap();
    // No /26 is left anywhere: refused, and nothing changes (no home grown on the way).
    ipam.take_journal();
    let before = ipam.snapshot();
    let counters = ipam.counters();
    let e = ipam
        .claim_shard_sized("c", None, Some(26), Reason::Forecast, 1.0)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pool `v4` is exhausted: no free /26 left for subdivision `c`"
    );
    assert_eq!(ipam.snapshot(), before);
    assert_eq!(ipam.counters(), counters);
    assert!(!ipam.has_journal());
    // A /27 still fits by growing c's home.
    assert_eq!(claim(&mut ipam, "c", 27), net("10.0.0.96/27"));
    assert_eq!(home(&ipam, "c"), vec![net("10.0.0.64/26")]);
    ipam.check_invariants().unwrap();
}

#[test]
fn freed_shards_of_mixed_sizes_coalesce() {
    let mut ipam = ipam_sized();
    assert_eq!(claim(&mut ipam, "a", 28), net("10.0.0.0/28"));
    assert_eq!(claim(&mut ipam, "a", 28), net("10.0.0.16/28"));
    assert_eq!(claim(&mut ipam, "a", 27), net("10.0.0.32/27"));
    for s in ["10.0.0.0/28", "10.0.0.16/28"] {
        ipam.release_shard(&net(s), Reason::Reclaim, 1.0).unwrap();
    }
    // The two freed /28s merged into a /27, which the next /27 takes.
    assert_eq!(claim(&mut ipam, "a", 27), net("10.0.0.0/27"));
    ipam.release_shard(&net("10.0.0.0/27"), Reason::Reclaim, 2.0)
        .unwrap();
    ipam.release_shard(&net("10.0.0.32/27"), Reason::Reclaim, 2.0)
        .unwrap();
    // Everything free again: the whole home block takes a /24.
    assert_eq!(claim(&mut ipam, "a", 24), net("10.0.0.0/24"));
    ipam.check_invariants().unwrap();
}

#[test]
fn leases_in_shards_of_several_sizes_round_trip_through_a_snapshot() {
    let mut p = pool_sized("v4", "10.0.0.0/16", 26, 24, 28);
    p.reserve_first = 2;
    p.reserve_last = 1;
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(p).unwrap();
    ipam.add_subdivision(sub("a")).unwrap();
    let mut b = sub("b");
    b.parent = Some("a".into());
    ipam.add_subdivision(b).unwrap();
    let small = claim(&mut ipam, "b", 28);
    ipam.activate_shard(&small, Reason::Forecast, 0.0).unwrap();
    // 16 - 3 reserved: 13 addresses, from .2 to .14.
    assert_eq!(ipam.shards(Some("b")).unwrap()[0].usable, 13);
    let mut got = vec![];
    for i in 0..13 {
        let a = ipam
            .allocate("b", &format!("s{i}"), None, None, 1.0)
            .unwrap();
        assert_eq!(a.shard, small);
        assert_eq!(a.path, AllocPath::Ready);
        got.push(a.address);
    }
    assert_eq!(got[0], ip("10.0.0.2"));
    assert_eq!(got[12], ip("10.0.0.14"));
    // The small shard is full: the slow path claims a default-size shard.
    let next = ipam.allocate("b", "s13", None, None, 2.0).unwrap();
    assert_eq!(next.path, AllocPath::ClaimedShard);
    assert_eq!(next.shard.prefix_len(), 26);
    let big = claim(&mut ipam, "a", 24);
    ipam.activate_shard(&big, Reason::Forecast, 3.0).unwrap();
    ipam.allocate("a", "big0", Some("web"), None, 3.0).unwrap();
    ipam.release("s3", 4.0).unwrap();
    ipam.check_invariants().unwrap();

    let snap = ipam.snapshot();
    let mut copy = Ipam::from_snapshot(Settings::default(), &snap).unwrap();
    assert_eq!(copy.snapshot(), snap);
    copy.check_invariants().unwrap();
    for i in 0..80 {
        let vm = format!("n{i}");
        let now = 40.0 + f64::from(i);
        let x = ipam.allocate("b", &vm, None, None, now).unwrap();
        let y = copy.allocate("b", &vm, None, None, now).unwrap();
        assert_eq!(x, y);
    }
    assert_eq!(copy.snapshot(), ipam.snapshot());

    // A stored shard whose size the pool does not hand out is refused.
    let mut bad = snap.clone();
    bad.pools[0].max_shard_prefix_len = Some(27);
    let e = Ipam::from_snapshot(Settings::default(), &bad).unwrap_err();
    assert!(
        e.to_string()
            .contains(&format!("shard {small} has the wrong size")),
        "{e}"
    );
    // A lease naming a shard of another size at the same base is refused.
    let mut bad = snap.clone();
    let l = bad.leases.iter_mut().find(|l| l.vm_id == "s0").unwrap();
    l.shard = net("10.0.0.0/27");
    let e = Ipam::from_snapshot(Settings::default(), &bad).unwrap_err();
    assert!(e.to_string().contains("is not in shard 10.0.0.0/27"), "{e}");
}

#[test]
fn max_shards_counts_shards_of_every_size() {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool_sized("v4", "10.0.0.0/16", 26, 24, 28))
        .unwrap();
    let mut a = sub("a");
    a.max_shards = Some(2);
    ipam.add_subdivision(a).unwrap();
    claim(&mut ipam, "a", 24);
    claim(&mut ipam, "a", 28);
    let e = ipam
        .claim_shard_sized("a", None, Some(28), Reason::Forecast, 0.0)
        .unwrap_err();
    assert!(matches!(e, CoreError::MaxShards { max: 2, .. }), "{e}");
}

#[test]
fn ipv6_pools_take_shards_of_several_sizes() {
    let mut ipam = Ipam::new(Settings::default());
    ipam.add_pool(pool_sized("v6", "2001:db8::/48", 64, 64, 112))
        .unwrap();
    ipam.add_subdivision(sub("a")).unwrap();
    assert_eq!(claim(&mut ipam, "a", 112), net("2001:db8::/112"));
    assert_eq!(claim(&mut ipam, "a", 64), net("2001:db8:0:1::/64"));
    assert_eq!(claim(&mut ipam, "a", 96), net("2001:db8::1:0:0/96"));
    let shards = ipam.shards(Some("a")).unwrap();
    let usable: Vec<u128> = shards.iter().map(|s| s.usable).collect();
    // A shard leases at most its first 2^32 addresses.
    assert_eq!(usable, [1 << 16, 1 << 32, 1 << 32]);
    ipam.check_invariants().unwrap();
    let snap = ipam.snapshot();
    assert_eq!(
        Ipam::from_snapshot(Settings::default(), &snap)
            .unwrap()
            .snapshot(),
        snap
    );
}

#[test]
fn shard_size_ranges_are_validated() {
    let check = |min: Option<u8>, max: Option<u8>, reserve: u32, needle: &str| {
        let mut p = pool("p", "192.168.0.0/16", 26);
        p.min_shard_prefix_len = min;
        p.max_shard_prefix_len = max;
        p.reserve_first = reserve;
        let e = Ipam::new(Settings::default()).add_pool(p).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("pool `p`: "), "{msg}");
        assert!(msg.contains(needle), "{msg} does not mention {needle:?}");
    };
    check(
        Some(27),
        None,
        0,
        "min_shard_prefix_len 27 exceeds shard_prefix_len 26",
    );
    check(
        None,
        Some(25),
        0,
        "max_shard_prefix_len 25 is below shard_prefix_len 26",
    );
    check(
        Some(15),
        None,
        0,
        "min_shard_prefix_len 15 must lie between the pool's /16 and /32",
    );
    check(
        None,
        Some(33),
        0,
        "max_shard_prefix_len 33 must lie between the pool's /16 and /32",
    );
    // Room for 3 reserved addresses + 1: a /30 holds 4, a /31 only 2.
    check(
        None,
        Some(31),
        3,
        "max_shard_prefix_len 31: a /31 shard leaves no address after reserve_first 3",
    );
    let mut ok = pool("p", "192.168.0.0/16", 26);
    ok.max_shard_prefix_len = Some(30);
    ok.reserve_first = 3;
    Ipam::new(Settings::default()).add_pool(ok).unwrap();
    // IPv6 shards hold at most 2^64 addresses.
    let mut v6 = pool("v6", "2001:db8::/32", 64);
    v6.min_shard_prefix_len = Some(60);
    let e = Ipam::new(Settings::default()).add_pool(v6).unwrap_err();
    assert!(
        e.to_string()
            .contains("min_shard_prefix_len 60 is too short: shards hold at most 2^64"),
        "{e}"
    );
    // Stored JSON without the new fields still reads; they are not written when unset.
    let json = r#"{"name":"p","prefix":"10.0.0.0/8","shard_prefix_len":26}"#;
    let spec: cidrcast_core::model::PoolSpec = serde_json::from_str(json).unwrap();
    assert_eq!(spec, pool("p", "10.0.0.0/8", 26));
    assert_eq!(spec.shard_prefix_range(), (26, 26));
    let out = serde_json::to_string(&spec).unwrap();
    assert!(!out.contains("min_shard_prefix_len"), "{out}");
    let sized = pool_sized("p", "10.0.0.0/8", 26, 24, 28);
    assert_eq!(sized.shard_prefix_range(), (24, 28));
    let back: cidrcast_core::model::PoolSpec =
        serde_json::from_str(&serde_json::to_string(&sized).unwrap()).unwrap();
    assert_eq!(back, sized);
}
