//! The crash test: `cidrcast debug alloc-loop` allocates (and releases every third VM's
//! predecessor) from several threads, printing `ack VM ADDRESS` after each durable allocation and
//! `released VM` after each durable release. We kill it with SIGKILL at varying points, reopen the
//! store through the CLI, and check that everything it acknowledged survived, and nothing else
//! beyond the operations that were in flight.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

use common::BIN;
const THREADS: usize = 4;

fn cli_json(dir: &Path, args: &[&str]) -> Value {
    common::json_in(dir, dir, args)
}

/// The leases in the store: VM → address.
fn leases(dir: &Path) -> BTreeMap<String, String> {
    let v = cli_json(dir, &["leases"]);
    let rows = v.as_array().expect("an array of leases");
    let mut out = BTreeMap::new();
    for l in rows {
        let vm = l["vm_id"].as_str().unwrap().to_string();
        let addr = l["address"].as_str().unwrap().to_string();
        assert!(
            out.insert(vm.clone(), addr).is_none(),
            "vm {vm} listed twice"
        );
    }
    out
}

/// Splits `p{pid}-t{thread}-{i}`.
fn parse_vm(vm: &str, pid: u32) -> (usize, u64) {
    let rest = vm
        .strip_prefix(&format!("p{pid}-t"))
        .unwrap_or_else(|| panic!("vm {vm} is not from process {pid}"));
    let (t, i) = rest.split_once('-').expect("p{pid}-t{t}-{i}");
    (t.parse().unwrap(), i.parse().unwrap())
}

/// What one run printed before it was killed.
#[derive(Default)]
struct Printed {
    acked: HashMap<String, String>,
    released: BTreeSet<String>,
    /// Highest acknowledged index per thread.
    last_ack: HashMap<usize, u64>,
}

impl Printed {
    fn line(&mut self, line: &str, pid: u32) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["ack", vm, addr] => {
                let (t, i) = parse_vm(vm, pid);
                assert!(t < THREADS, "{line}");
                let expected_next = self.last_ack.get(&t).map_or(0, |k| k + 1);
                assert_eq!(i, expected_next, "thread {t} acked out of order: {line}");
                self.last_ack.insert(t, i);
                assert!(
                    self.acked
                        .insert(vm.to_string(), addr.to_string())
                        .is_none(),
                    "acked twice: {line}"
                );
            }
            ["released", vm] => {
                assert!(
                    self.acked.contains_key(*vm),
                    "released a VM that was never acked: {line}"
                );
                assert!(
                    self.released.insert(vm.to_string()),
                    "released twice: {line}"
                );
            }
            _ => panic!("unexpected line from alloc-loop: {line:?}"),
        }
    }
}

/// One round: run alloc-loop until at least `acks` acknowledgements, SIGKILL it, and check the
/// store against `expected` (the leases before the round), which is then updated.
fn round(dir: &Path, acks: usize, expected: &mut BTreeMap<String, String>, round_no: usize) {
    let stderr_path = dir.join(format!("alloc-loop-{round_no}.stderr"));
    let mut child = Command::new(BIN)
        .arg("--data")
        .arg(dir)
        .args(["debug", "alloc-loop", "--threads", &THREADS.to_string()])
        .current_dir(dir)
        .env_remove("CIDRCAST_CONFIG")
        .env_remove("CIDRCAST_DATA")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start alloc-loop");
    let pid = child.id();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Printed::default();
    let started = Instant::now();
    let mut line = String::new();
    while printed.acked.len() < acks {
        line.clear();
        let n = out.read_line(&mut line).expect("read stdout");
        if n == 0 {
            let _ = child.wait();
            panic!(
                "alloc-loop ended after {} acks: {}",
                printed.acked.len(),
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        assert!(line.ends_with('\n'), "partial line while running: {line:?}");
        printed.line(line.trim_end(), pid);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "alloc-loop too slow: {} acks in a minute",
            printed.acked.len()
        );
    }
    child.kill().expect("kill alloc-loop");
    let status = child.wait().expect("wait for alloc-loop");
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "alloc-loop was not killed: {status}"
        );
    }
    assert!(!status.success());
    // What it printed before dying is acknowledged too (a torn last line is not).
    loop {
        line.clear();
        if out.read_line(&mut line).expect("read stdout") == 0 || !line.ends_with('\n') {
            break;
        }
        printed.line(line.trim_end(), pid);
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(stderr, "", "alloc-loop reported an error");
    assert!(printed.acked.len() >= acks);

    // Operations that may have been durable but not printed when the process died: per thread,
    // either the release of the previous VM (after an ack of index i with i % 3 == 2, before its
    // `released` line) or else the allocation of the next index (before its `ack` line).
    let mut may_be_missing = BTreeSet::new();
    let mut may_be_extra = BTreeSet::new();
    for t in 0..THREADS {
        match printed.last_ack.get(&t) {
            Some(&k)
                if k % 3 == 2 && !printed.released.contains(&format!("p{pid}-t{t}-{}", k - 1)) =>
            {
                may_be_missing.insert(format!("p{pid}-t{t}-{}", k - 1));
            }
            Some(&k) => {
                may_be_extra.insert(format!("p{pid}-t{t}-{}", k + 1));
            }
            None => {
                may_be_extra.insert(format!("p{pid}-t{t}-0"));
            }
        }
    }

    let mut want = expected.clone();
    for (vm, addr) in &printed.acked {
        want.insert(vm.clone(), addr.clone());
    }
    for vm in &printed.released {
        want.remove(vm);
    }

    let got = leases(dir);
    for (vm, addr) in &want {
        match got.get(vm) {
            Some(a) => assert_eq!(
                a, addr,
                "round {round_no}: vm {vm} came back with another address"
            ),
            None => assert!(
                may_be_missing.contains(vm),
                "round {round_no}: acknowledged vm {vm} ({addr}) is lost"
            ),
        }
    }
    let extra: Vec<&String> = got.keys().filter(|vm| !want.contains_key(*vm)).collect();
    for vm in &extra {
        assert!(
            may_be_extra.contains(*vm),
            "round {round_no}: vm {vm} is leased but was never acknowledged (in flight: {may_be_extra:?})"
        );
    }
    assert!(extra.len() <= THREADS);
    let mut by_addr: HashMap<&str, &str> = HashMap::new();
    for (vm, addr) in &got {
        if let Some(other) = by_addr.insert(addr, vm) {
            panic!("round {round_no}: address {addr} leased to both {other} and {vm}");
        }
    }
    // Every lease is in the subdivision alloc-loop uses.
    let rows = cli_json(dir, &["leases", "--subdivision", "crash"]);
    assert_eq!(rows.as_array().unwrap().len(), got.len());

    let st = cli_json(dir, &["status"]);
    assert_eq!(st["leases"].as_u64(), Some(got.len() as u64));
    assert_eq!(st["subdivisions"].as_u64(), Some(1));
    eprintln!(
        "round {round_no}: {} acks, {} released, {} leases, {} in flight allocated, {} in flight released",
        printed.acked.len(),
        printed.released.len(),
        got.len(),
        extra.len(),
        want.keys().filter(|vm| !got.contains_key(*vm)).count()
    );
    *expected = got;
}

#[test]
fn acknowledged_allocations_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for (i, acks) in [50, 300, 1000].into_iter().enumerate() {
        round(dir.path(), acks, &mut expected, i + 1);
    }
    // Three rounds: at least (1350 acks less a third released) leases survived.
    assert!(expected.len() >= 900, "{} leases", expected.len());
    let pids: BTreeSet<&str> = expected
        .keys()
        .map(|vm| vm.split('-').next().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "each round used its own VM ids");
}
