//! FRR (bgpd, staticd) in the integrated `frr.conf` syntax.
//!
//! - `ip route P blackhole` (staticd): the router owns every announced prefix, so that traffic to
//!   a part of it without a more specific route is dropped rather than looped;
//! - one prefix-list per family and class permitting exactly the announced prefixes (no `le`/`ge`:
//!   exact matches), each ending in `deny any`, and one per family of everything announced, applied
//!   outbound to every neighbor;
//! - a route-map per family that tags each class with its community, LOCAL_PREF and MED and
//!   denies everything else;
//! - `router bgp` with `network` statements for the aggregates (cidrcast aggregates itself, so no
//!   `aggregate-address` is needed) and every neighbor activated in the address family of its
//!   address only (`no bgp default ipv4-unicast`).

use std::fmt::Write;

use cidrcast_core::prefix::Family;

use crate::intent::{Class, Intent};
use crate::Renderer;

/// The FRR renderer.
pub struct Frr;

fn names(family: Family) -> (&'static str, &'static str, &'static str) {
    match family {
        Family::V4 => ("ip", "V4", "ipv4"),
        Family::V6 => ("ipv6", "V6", "ipv6"),
    }
}

fn list_name(class: Option<Class>, fam: &str) -> String {
    match class {
        Some(c) => format!("CIDRCAST-{}-{fam}", c.as_str().to_uppercase()),
        None => format!("CIDRCAST-OUT-{fam}"),
    }
}

impl Renderer for Frr {
    fn name(&self) -> &'static str {
        "frr"
    }

    fn render(&self, intent: &Intent) -> String {
        let mut o = crate::header(intent, "!", "frr");
        let p = &intent.policy;
        o.push_str("!\n");
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| intent.has_family(*f))
            .collect();
        for &f in &families {
            let (ip, _, _) = names(f);
            for a in intent
                .announcements
                .iter()
                .filter(|a| Family::of(&a.prefix) == f)
            {
                let _ = writeln!(o, "{ip} route {} blackhole", a.prefix);
            }
        }
        o.push_str("!\n");
        for &f in &families {
            let (ip, fam, _) = names(f);
            for class in [Some(Class::Active), Some(Class::Prefetched), None] {
                let name = list_name(class, fam);
                let mut seq = 0;
                for a in intent
                    .announcements
                    .iter()
                    .filter(|a| Family::of(&a.prefix) == f && class.is_none_or(|c| a.class == c))
                {
                    seq += 5;
                    let _ = writeln!(o, "{ip} prefix-list {name} seq {seq} permit {}", a.prefix);
                }
                let _ = writeln!(o, "{ip} prefix-list {name} seq {} deny any", seq + 5);
            }
        }
        o.push_str("!\n");
        for &f in &families {
            let (ip, fam, _) = names(f);
            let map = format!("CIDRCAST-EXPORT-{fam}");
            for (seq, class, community) in [
                (10, Class::Active, p.active_community),
                (20, Class::Prefetched, p.prefetched_community),
            ] {
                let _ = writeln!(o, "route-map {map} permit {seq}");
                let _ = writeln!(
                    o,
                    " match {ip} address prefix-list {}",
                    list_name(Some(class), fam)
                );
                let _ = writeln!(o, " set community {community}");
                let _ = writeln!(o, " set local-preference {}", p.local_pref);
                let _ = writeln!(o, " set metric {}", p.med);
                o.push_str("exit\n");
            }
            let _ = writeln!(o, "route-map {map} deny 100");
            o.push_str("exit\n!\n");
        }
        let _ = writeln!(o, "router bgp {}", intent.asn);
        let _ = writeln!(o, " bgp router-id {}", intent.router_id);
        o.push_str(" no bgp default ipv4-unicast\n");
        for n in &intent.neighbors {
            let _ = writeln!(o, " neighbor {} remote-as {}", n.address, n.asn);
        }
        for &f in &families {
            let (_, fam, afi) = names(f);
            o.push_str(" !\n");
            let _ = writeln!(o, " address-family {afi} unicast");
            for a in intent
                .announcements
                .iter()
                .filter(|a| Family::of(&a.prefix) == f)
            {
                let _ = writeln!(o, "  network {}", a.prefix);
            }
            for n in intent.neighbors_of(f) {
                let _ = writeln!(o, "  neighbor {} activate", n.address);
                let _ = writeln!(o, "  neighbor {} send-community", n.address);
                let _ = writeln!(
                    o,
                    "  neighbor {} prefix-list {} out",
                    n.address,
                    list_name(None, fam)
                );
                let _ = writeln!(
                    o,
                    "  neighbor {} route-map CIDRCAST-EXPORT-{fam} out",
                    n.address
                );
            }
            o.push_str(" exit-address-family\n");
        }
        o.push_str("exit\n!\n");
        o
    }

    fn validator(&self) -> Option<crate::Validator> {
        Some(crate::Validator {
            flavor: "frr",
            program: "vtysh",
            args: &["--dryrun", "-f"],
            package: "frr",
        })
    }
}
