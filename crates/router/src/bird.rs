//! BIRD 2 (`bird.conf`), a complete configuration.
//!
//! - one static protocol per family (`cidrcast_v4`, `cidrcast_v6`) with a blackhole route per
//!   announced prefix: the router owns them, and they are the only routes exported;
//! - one export filter per family that accepts a route only when it comes from that static
//!   protocol and its prefix is exactly one of a class's announced prefixes, sets the class's
//!   community, LOCAL_PREF and MED, and rejects everything else;
//! - one BGP protocol per neighbor, in the channel of its address family, importing nothing.

use std::fmt::Write;

use cidrcast_core::model::Community;
use cidrcast_core::prefix::Family;

use crate::intent::{Class, Intent};
use crate::Renderer;

/// The BIRD 2 renderer.
pub struct Bird;

fn channel(family: Family) -> &'static str {
    match family {
        Family::V4 => "ipv4",
        Family::V6 => "ipv6",
    }
}

fn community(c: Community) -> String {
    format!("({},{})", c.asn, c.value)
}

impl Renderer for Bird {
    fn name(&self) -> &'static str {
        "bird"
    }

    fn render(&self, intent: &Intent) -> String {
        let mut o = String::new();
        let p = &intent.policy;
        let _ = writeln!(
            o,
            "# Rendered by cidrcast for router {} (bird). Do not edit: `cidrcast router apply` replaces it.",
            intent.router
        );
        let _ = writeln!(
            o,
            "# {} prefixes: active carry community {}, prefetched {}; local preference {}, MED {}.",
            intent.announcements.len(),
            p.active_community,
            p.prefetched_community,
            p.local_pref,
            p.med
        );
        let _ = writeln!(
            o,
            "\nrouter id {};\n\nprotocol device {{\n}}",
            intent.router_id
        );
        for f in [Family::V4, Family::V6] {
            if !intent.has_family(f) {
                continue;
            }
            let ch = channel(f);
            let _ = writeln!(o, "\nprotocol static cidrcast_{} {{\n  {ch};", &ch[2..]);
            for a in intent
                .announcements
                .iter()
                .filter(|a| Family::of(&a.prefix) == f)
            {
                let _ = writeln!(
                    o,
                    "  route {} blackhole; # {} {} ({} shard{})",
                    a.prefix,
                    a.class.as_str(),
                    a.subdivision,
                    a.shards,
                    if a.shards == 1 { "" } else { "s" }
                );
            }
            o.push_str("}\n");
            let _ = writeln!(o, "\nfilter cidrcast_export_{} {{", &ch[2..]);
            let _ = writeln!(o, "  if proto != \"cidrcast_{}\" then reject;", &ch[2..]);
            for (class, c) in [
                (Class::Active, p.active_community),
                (Class::Prefetched, p.prefetched_community),
            ] {
                let nets: Vec<String> = intent
                    .prefixes(f, class)
                    .map(|a| a.prefix.to_string())
                    .collect();
                if nets.is_empty() {
                    continue;
                }
                let _ = writeln!(o, "  if net ~ [ {} ] then {{", nets.join(", "));
                let _ = writeln!(o, "    bgp_community.add({});", community(c));
                let _ = writeln!(o, "    bgp_local_pref = {};", p.local_pref);
                let _ = writeln!(o, "    bgp_med = {};", p.med);
                o.push_str("    accept;\n  }\n");
            }
            o.push_str("  reject;\n}\n");
            for (i, n) in intent.neighbors_of(f).enumerate() {
                let _ = writeln!(
                    o,
                    "\nprotocol bgp cidrcast_{}_peer{} {{\n  local as {};\n  neighbor {} as {};\n  {ch} {{\n    import none;\n    export filter cidrcast_export_{};\n  }};\n}}",
                    &ch[2..],
                    i + 1,
                    intent.asn,
                    n.address,
                    n.asn,
                    &ch[2..]
                );
            }
        }
        o
    }

    fn validator(&self) -> Option<crate::Validator> {
        Some(crate::Validator {
            flavor: "bird",
            program: "bird",
            args: &["-p", "-c"],
            package: "bird2",
        })
    }
}
