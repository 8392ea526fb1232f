//! The daemon's crash test: `cidrcast serve` under a concurrent allocation (and release) load is
//! killed with SIGKILL at varying points; after a restart every allocation that was acknowledged
//! with a 2xx is present with the same address, every acknowledged release is gone, no address
//! is leased twice, and the daemon serves again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

mod daemon;

use daemon::Daemon;

const CONFIG: &str = r#"
[server]
reconcile_interval_s = 0.5
lead_time_s = 5

[[pool]]
name = "v4"
prefix = "10.0.0.0/16"
shard_prefix_len = 26
reserve_first = 2
reserve_last = 1

[[subdivision]]
name = "zone-a"

[[subdivision]]
name = "zone-b"
"#;

const CLIENTS: usize = 8;

/// What the clients were told: VM → address for acknowledged allocations, and the VMs whose
/// release was acknowledged.
#[derive(Default)]
struct Acks {
    allocated: BTreeMap<String, String>,
    released: BTreeSet<String>,
    /// Releases sent (acknowledged or not: the one in flight at the kill may have happened).
    release_sent: BTreeSet<String>,
}

/// Runs `CLIENTS` threads allocating (and releasing every third VM they allocated) until the
/// daemon goes away; records every 2xx.
fn load(
    d: &Daemon,
    round: usize,
    acks: Arc<Mutex<Acks>>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..CLIENTS)
        .map(|t| {
            let c = d.client(None);
            let acks = acks.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let sub = if t % 2 == 0 { "zone-a" } else { "zone-b" };
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let vm = format!("r{round}-t{t}-{i}");
                    match c.try_req(
                        "POST",
                        "/v1/allocations",
                        Some(json!({"subdivision": sub, "vm_id": vm})),
                    ) {
                        Ok((201, v)) => {
                            let addr = v["address"].as_str().unwrap().to_string();
                            acks.lock().unwrap().allocated.insert(vm.clone(), addr);
                        }
                        Ok((s, v)) => panic!("allocate {vm}: {s} {v}"),
                        Err(_) => return, // killed
                    }
                    if i.is_multiple_of(3) {
                        let old = format!("r{round}-t{t}-{}", i - 1);
                        acks.lock().unwrap().release_sent.insert(old.clone());
                        match c.try_req("DELETE", &format!("/v1/allocations/{old}"), None) {
                            Ok((200, _)) => {
                                acks.lock().unwrap().released.insert(old);
                            }
                            Ok((s, v)) => panic!("release {old}: {s} {v}"),
                            Err(_) => return,
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn acknowledged_allocations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cidrcast.toml"), CONFIG).unwrap();
    let acks = Arc::new(Mutex::new(Acks::default()));
    for (round, wait_ms) in [300u64, 700, 1100].into_iter().enumerate() {
        let mut d = Daemon::start_existing(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let workers = load(&d, round, acks.clone(), stop.clone());
        std::thread::sleep(Duration::from_millis(wait_ms));
        d.kill(); // SIGKILL, under load
        stop.store(true, Ordering::SeqCst);
        for w in workers {
            w.join().expect("a client thread panicked");
        }

        let d = Daemon::start_existing(dir.path());
        let c = d.client(None);
        let present = daemon::listed_allocations(&c);
        let a = acks.lock().unwrap();
        assert!(
            a.allocated
                .keys()
                .any(|vm| vm.starts_with(&format!("r{round}-"))),
            "round {round}: no allocation was acknowledged before the kill"
        );
        let mut checked = 0;
        for (vm, addr) in &a.allocated {
            if a.released.contains(vm) {
                assert!(!present.contains_key(vm), "released {vm} came back");
            } else if a.release_sent.contains(vm) {
                // In flight at the kill: either outcome is right, but not another address.
                if let Some(p) = present.get(vm) {
                    assert_eq!(p, addr, "{vm} moved");
                }
            } else {
                assert_eq!(
                    present.get(vm),
                    Some(addr),
                    "acknowledged {vm} at {addr} lost or moved after SIGKILL (round {round})"
                );
                checked += 1;
            }
        }
        assert!(checked > 0);
        // Anything present beyond the acknowledged ones was in flight at the kill: at most one
        // request per client.
        let unacked: Vec<&String> = present
            .keys()
            .filter(|vm| vm.starts_with(&format!("r{round}-")) && !a.allocated.contains_key(*vm))
            .collect();
        assert!(
            unacked.len() <= CLIENTS,
            "{} allocations nobody was told about: {unacked:?}",
            unacked.len()
        );
        drop(a);
        // It serves again.
        let (s, v) = c.req(
            "POST",
            "/v1/allocations",
            Some(json!({"subdivision": "zone-a", "vm_id": format!("after-{round}")})),
        );
        assert_eq!(s, 201, "{v}");
        let address = v["address"].as_str().unwrap();
        assert!(!present.values().any(|a| a == address), "{address} reused");
        c.expect(
            "DELETE",
            &format!("/v1/allocations/after-{round}"),
            None,
            200,
        );
    }
}
