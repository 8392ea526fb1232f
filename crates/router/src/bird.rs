//! BIRD 2 (`bird.conf`), a complete configuration.
//!
//! - one static protocol per family (`cidrcast_v4`, `cidrcast_v6`) with a blackhole route per
//!   announced prefix, carrying its class's community: the router owns them, and they are the
//!   only routes exported;
//! - one export filter per family that accepts exactly the routes of that static protocol, sets
//!   LOCAL_PREF and MED (BIRD sends MED to an eBGP peer only when the export filter sets it), and
//!   rejects everything else; it names no prefix (see the comment in the rendering);
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
        let mut o = crate::header(intent, "#", "bird");
        let p = &intent.policy;
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
                let c = match a.class {
                    Class::Active => p.active_community,
                    Class::Prefetched => p.prefetched_community,
                };
                let _ = writeln!(
                    o,
                    "  route {} blackhole {{ bgp_community.add({}); }}; # {} {} ({} shard{})",
                    a.prefix,
                    community(c),
                    a.class.as_str(),
                    a.subdivision,
                    a.shards,
                    if a.shards == 1 { "" } else { "s" }
                );
            }
            o.push_str("}\n");
            // The filter never names a prefix: what is exported is exactly the static protocol's
            // routes, and a change of the shard set is a change of those routes, which
            // `birdc configure` applies route by route (BIRD 2.0.12 misses changes made only
            // inside a prefix set `[ ... ]` on reconfiguration, and would keep exporting the old
            // set).
            let _ = writeln!(o, "\nfilter cidrcast_export_{} {{", &ch[2..]);
            let _ = writeln!(
                o,
                "  if proto != \"cidrcast_{}\" then reject;\n  if net.type != NET_IP{} then reject;\n  \
                 bgp_local_pref = {};\n  bgp_med = {};\n  accept;\n}}",
                &ch[2..],
                &ch[3..],
                p.local_pref,
                p.med
            );
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
