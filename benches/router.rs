//! Router configurations at scale: 1,000 racks under 10 zones, 20 shards each (20,000 /26 shards).
//! In each rack 12 are active (one of them draining, with a lease) and 8 reserved. Measured:
//! - `snapshot`: copying the shard records out of the allocator (what the daemon's deployer does
//!   under the engine lock);
//! - `intent/zone` and `intent/all`: the announcement intent of a router serving one zone (2,000
//!   shards) and one serving all ten (20,000);
//! - `render/frr|bird|json`: rendering the intent of the router serving everything;
//! - `validate/frr|bird`: the daemon's own parser on that configuration (`vtysh --dryrun -f`,
//!   `bird -p -c`), which `router apply` runs before writing.
//!
//!     cargo bench --bench router

use std::hint::black_box;
use std::net::Ipv4Addr;

use cidrcast_core::model::{
    Flavor, Neighbor, PoolSpec, Reason, RouterSpec, RoutingPolicy, SubdivisionSpec,
};
use cidrcast_core::{Ipam, Settings};
use cidrcast_router::{Format, Inputs};
use criterion::{criterion_group, criterion_main, Criterion};

const ZONES: usize = 10;
const RACKS_PER_ZONE: usize = 100;
const SHARDS_PER_RACK: usize = 20;

/// Every rack claims 20 shards, activates the first 12 and leaves 8 reserved; in every rack, one
/// active shard in four holds a lease and is drained (so it is draining).
fn state() -> Ipam {
    let mut ipam = Ipam::new(Settings::default());
    ipam.set_journaling(false);
    ipam.add_pool(PoolSpec::new("v4", "10.0.0.0/8".parse().unwrap(), 26))
        .unwrap();
    for z in 0..ZONES {
        ipam.add_subdivision(SubdivisionSpec {
            home_shards: Some(4096),
            ..SubdivisionSpec::new(&format!("zone-{z}"))
        })
        .unwrap();
        for r in 0..RACKS_PER_ZONE {
            ipam.add_subdivision(SubdivisionSpec {
                parent: Some(format!("zone-{z}")),
                home_shards: Some(32),
                ..SubdivisionSpec::new(&format!("rack-{z}-{r}"))
            })
            .unwrap();
        }
    }
    let mut vm = 0;
    for z in 0..ZONES {
        for r in 0..RACKS_PER_ZONE {
            let rack = format!("rack-{z}-{r}");
            for i in 0..SHARDS_PER_RACK {
                let p = ipam
                    .claim_shard(&rack, None, Reason::Forecast, 0.0)
                    .unwrap()
                    .prefix;
                if i < 12 {
                    ipam.activate_shard(&p, Reason::Forecast, 0.0).unwrap();
                }
            }
            // One lease in the first active shard, which then drains.
            vm += 1;
            let a = ipam
                .allocate(&rack, &format!("vm-{vm}"), None, None, 0.0)
                .unwrap();
            ipam.drain_shard(&a.shard, Reason::Reclaim, 0.0).unwrap();
        }
    }
    ipam
}

fn router(subdivisions: Vec<String>, flavor: Flavor) -> RouterSpec {
    RouterSpec {
        name: "edge".into(),
        flavor,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        asn: 65001,
        neighbors: vec![Neighbor {
            address: "192.0.2.254".parse().unwrap(),
            asn: 65000,
        }],
        subdivisions,
        config_path: None,
        reload_command: None,
        policy: RoutingPolicy::default(),
    }
}

fn bench(c: &mut Criterion) {
    let ipam = state();
    let inputs = Inputs::of(&ipam);
    assert_eq!(
        inputs.shards.len(),
        ZONES * RACKS_PER_ZONE * SHARDS_PER_RACK
    );
    let all: Vec<String> = (0..ZONES).map(|z| format!("zone-{z}")).collect();

    c.bench_function("router/snapshot", |b| {
        b.iter(|| Inputs::of(black_box(&ipam)))
    });
    let zone = router(vec!["zone-0".into()], Flavor::Frr);
    c.bench_function("router/intent/zone", |b| {
        b.iter(|| inputs.intent(black_box(&zone)).unwrap())
    });
    let everything = router(all.clone(), Flavor::Frr);
    c.bench_function("router/intent/all", |b| {
        b.iter(|| inputs.intent(black_box(&everything)).unwrap())
    });
    let intent = inputs.intent(&everything).unwrap();
    eprintln!(
        "router serving everything: {} shards -> {} announced prefixes",
        inputs.shards.len(),
        intent.announcements.len()
    );
    for format in [Format::Frr, Format::Bird, Format::Json] {
        c.bench_function(&format!("router/render/{format}"), |b| {
            b.iter(|| format.renderer().render(black_box(&intent)))
        });
    }
    let mut g = c.benchmark_group("router/validate");
    g.sample_size(10);
    for format in [Format::Frr, Format::Bird] {
        let r = format.renderer();
        let text = r.render(&intent);
        let v = r.validator().unwrap();
        g.bench_function(format.to_string(), |b| {
            b.iter(|| v.check_text("edge", &text).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
