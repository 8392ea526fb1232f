//! Resident memory of 1 million live leases in the allocator (and through the engine with the
//! embedded store, whose page cache is capped at 32 MiB).
//!
//!     cargo bench --bench memory

use cidrcast_core::model::{PoolSpec, SubdivisionSpec};
use cidrcast_core::{Ipam, Settings};

const LEASES: usize = 1_000_000;
const SUBDIVISIONS: usize = 1_000;

/// Resident set size in bytes, from /proc/self/status (VmRSS).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    // Criterion-style arguments (`--bench`) are ignored.
    let ids: Vec<String> = (0..LEASES).map(|i| format!("vm-{i:08}")).collect();
    let names: Vec<String> = (0..SUBDIVISIONS).map(|i| format!("rack-{i:04}")).collect();
    let base = rss();
    let mut ipam = Ipam::new(Settings::default());
    ipam.set_journaling(false);
    ipam.add_pool(PoolSpec::new("v4", "10.0.0.0/8".parse().unwrap(), 26))
        .unwrap();
    for n in &names {
        ipam.add_subdivision(SubdivisionSpec {
            home_shards: Some(16),
            ..SubdivisionSpec::new(n)
        })
        .unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        ipam.allocate(&names[i % SUBDIVISIONS], id, None, None, 0.0)
            .unwrap();
    }
    let after = rss();
    assert_eq!(ipam.lease_count(), LEASES);
    println!(
        "memory/ipam_1M_leases: {:.1} MiB resident for {} leases in {} subdivisions ({:.0} bytes/lease; baseline {:.1} MiB excluded)",
        mib(after - base),
        LEASES,
        SUBDIVISIONS,
        (after - base) as f64 / LEASES as f64,
        mib(base)
    );
    std::hint::black_box(&ipam);
}
