//! Behavioural tests of the `cidrcast` binary: every test runs the real executable in its own
//! temporary directory (the working directory and the `--data` directory), with no configuration
//! unless the test writes one.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde_json::Value;

mod common;

use common::{assert_failed, run_in, Run};

/// The Google 2011 task-events part shipped with the repository.
fn task_events_part() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/google2011/task_events/part-00001-of-00500.csv.gz")
}

/// A temporary directory that is both the working directory and the data directory.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `cidrcast --data DIR ARGS...` in DIR.
    fn run(&self, args: &[&str]) -> Run {
        self.run_raw(&[&["--data", self.path().to_str().unwrap()], args].concat())
    }

    /// Runs `cidrcast ARGS...` in DIR (no `--data`).
    fn run_raw(&self, args: &[&str]) -> Run {
        run_in(None, self.path(), args)
    }

    /// Runs and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code,
            Some(0),
            "cidrcast {args:?} failed\nstdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        assert_eq!(r.stderr, "", "cidrcast {args:?} wrote to stderr");
        r.stdout
    }

    /// Runs with `--output json`, asserts success, parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["--output", "json"]].concat());
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("cidrcast {args:?}: stdout is not JSON ({e}): {out}"))
    }

    /// Runs and asserts a clean failure: exit code 1, nothing on stdout, exactly one line on
    /// stderr starting with `error: `. Returns that line.
    fn fail(&self, args: &[&str]) -> String {
        let r = self.run(args);
        check_one_line_error(args, &r)
    }

    /// Everything the store exposes, to compare before and after a refused command.
    fn snapshot(&self) -> Value {
        serde_json::json!({
            "leases": self.json(&["leases"]),
            "shards": self.json(&["shards"]),
            "pools": self.json(&["pool", "list"]),
            "subdivisions": self.json(&["subdivision", "list"]),
            "routes": self.json(&["routes"]),
            "status": self.json(&["status"]),
            "history": self.json(&["history", "--limit", "1000"]),
        })
    }

    /// Asserts that `args` is refused with a one-line error containing every string of `needles`,
    /// and that the store is exactly as it was.
    fn assert_rejected(&self, args: &[&str], needles: &[&str]) -> String {
        let before = self.snapshot();
        let msg = self.fail(args);
        for n in needles {
            assert!(
                msg.contains(n),
                "cidrcast {args:?}: error does not mention {n:?}: {msg}"
            );
        }
        let after = self.snapshot();
        assert_eq!(
            before, after,
            "cidrcast {args:?} was refused but changed the store"
        );
        msg
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, contents).expect("write file");
        p
    }

    fn files(&self) -> BTreeSet<String> {
        std::fs::read_dir(self.path())
            .expect("read dir")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }
}

fn check_one_line_error(args: &[&str], r: &Run) -> String {
    let err = assert_failed(args, r);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "cidrcast {args:?}: stderr should be one line: {err:?}"
    );
    lines[0].to_string()
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not an unsigned integer in {v}"))
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a JSON array: {v}"))
}

/// Parses an IPv4 prefix `a.b.c.d/len` into (network as u32, len).
fn v4net(p: &str) -> (u32, u8) {
    let (a, l) = p.split_once('/').expect("a prefix");
    (
        u32::from(a.parse::<Ipv4Addr>().unwrap()),
        l.parse().unwrap(),
    )
}

fn v4(a: &str) -> u32 {
    u32::from(a.parse::<Ipv4Addr>().unwrap())
}

/// A store with a subdivision `web` holding the lease of `vm1`, and `vm2` released (cooling).
fn populated() -> Env {
    let env = Env::new();
    env.ok(&["subdivision", "add", "web"]);
    env.ok(&["allocate", "--subdivision", "web", "--vm", "vm1"]);
    env.ok(&["allocate", "--subdivision", "web", "--vm", "vm2"]);
    env.ok(&["release", "--vm", "vm2"]);
    env
}

// ------------------------------------------------------------------------------------------
// Happy path

#[test]
fn allocate_release_and_inspect() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["subdivision", "add", "web"]),
        "added subdivision `web`\n"
    );

    let a1 = env.json(&["allocate", "--subdivision", "web", "--vm", "vm1"]);
    assert_eq!(s(&a1, "vm_id"), "vm1");
    assert_eq!(s(&a1, "subdivision"), "web");
    assert_eq!(s(&a1, "pool"), "v4", "the built-in IPv4 pool comes first");
    assert_eq!(
        s(&a1, "path"),
        "claimed-shard",
        "the first VM finds no shard"
    );
    assert_eq!(n(&a1, "prefix_len"), 26);
    let (shard, len) = v4net(s(&a1, "shard"));
    assert_eq!(len, 26);
    assert_eq!(
        shard >> 24,
        10,
        "shard {} outside 10.0.0.0/8",
        s(&a1, "shard")
    );
    let addr1 = v4(s(&a1, "address"));
    // The built-in pool keeps the first two and the last address of every /26.
    assert!(
        addr1 >= shard + 2 && addr1 <= shard + 62,
        "{} is not a usable address of {}",
        s(&a1, "address"),
        s(&a1, "shard")
    );

    let a2 = env.json(&["allocate", "--subdivision", "web", "--vm", "vm2"]);
    assert_eq!(
        s(&a2, "path"),
        "ready",
        "the second VM uses the active shard"
    );
    assert_eq!(s(&a2, "shard"), s(&a1, "shard"));
    assert_ne!(s(&a2, "address"), s(&a1, "address"));

    // An idempotent retry returns the same lease.
    let again = env.json(&["allocate", "--subdivision", "web", "--vm", "vm1"]);
    assert_eq!(s(&again, "path"), "existing");
    assert_eq!(s(&again, "address"), s(&a1, "address"));
    assert_eq!(s(&again, "shard"), s(&a1, "shard"));

    let rel = env.json(&["release", "--vm", "vm2"]);
    assert_eq!(s(&rel, "vm_id"), "vm2");
    assert_eq!(s(&rel, "address"), s(&a2, "address"));
    assert_eq!(s(&rel, "subdivision"), "web");
    assert_eq!(rel["cooldown_s"].as_f64(), Some(30.0));

    // The released address is cooling down: a new VM gets another one.
    let a3 = env.json(&[
        "allocate",
        "--subdivision",
        "web",
        "--vm",
        "vm3",
        "--profile",
        "small",
    ]);
    assert_eq!(s(&a3, "path"), "ready");
    assert_eq!(s(&a3, "profile"), "small");
    assert_ne!(s(&a3, "address"), s(&a2, "address"));
    assert_ne!(s(&a3, "address"), s(&a1, "address"));

    let leases = env.json(&["leases"]);
    let got: HashMap<&str, &str> = arr(&leases)
        .iter()
        .map(|l| (s(l, "vm_id"), s(l, "address")))
        .collect();
    let want: HashMap<&str, &str> = [("vm1", s(&a1, "address")), ("vm3", s(&a3, "address"))]
        .into_iter()
        .collect();
    assert_eq!(got, want);
    for l in arr(&leases) {
        assert_eq!(s(l, "subdivision"), "web");
        assert_eq!(s(l, "pool"), "v4");
        assert_eq!(s(l, "shard"), s(&a1, "shard"));
    }
    assert_eq!(
        env.json(&["leases", "--subdivision", "web"]),
        leases,
        "filtering by the only subdivision changes nothing"
    );
    // The table form: a header and one row per lease.
    let table = env.ok(&["leases"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("VM"), "{table}");
    assert!(
        lines[1..]
            .iter()
            .any(|l| l.starts_with("vm1 ") && l.contains(s(&a1, "address"))),
        "{table}"
    );

    let shards = env.json(&["shards"]);
    assert_eq!(arr(&shards).len(), 1, "{shards}");
    let sh = &shards[0];
    assert_eq!(s(sh, "prefix"), s(&a1, "shard"));
    assert_eq!(s(sh, "subdivision"), "web");
    assert_eq!(s(sh, "pool"), "v4");
    assert_eq!(s(sh, "state"), "active");
    assert_eq!(n(sh, "leases"), 2);
    assert_eq!(s(sh, "usable"), "61");

    let routes = env.json(&["routes"]);
    assert_eq!(
        routes,
        serde_json::json!([{ "subdivision": "web", "shards": 1, "routes": [s(&a1, "shard")] }])
    );

    let st = env.json(&["status"]);
    assert_eq!(s(&st, "config"), "built-in default");
    assert_eq!(n(&st, "pools"), 2);
    assert_eq!(n(&st, "subdivisions"), 1);
    assert_eq!(n(&st, "leases"), 2);
    assert_eq!(n(&st, "shards_reserved"), 0);
    assert_eq!(n(&st, "shards_active"), 1);
    assert_eq!(n(&st, "shards_draining"), 0);
    assert_eq!(
        n(&st, "events"),
        4,
        "3 creations and 1 deletion; a retry is no event"
    );
    assert_eq!(st["cooldown_s"].as_f64(), Some(30.0));

    let hist = env.json(&["history"]);
    let events: Vec<(u64, &str, &str)> = arr(&hist)
        .iter()
        .map(|e| (n(e, "seq"), s(e, "kind"), s(e, "vm_id")))
        .collect();
    assert_eq!(
        events,
        vec![
            (1, "create", "vm1"),
            (2, "create", "vm2"),
            (3, "delete", "vm2"),
            (4, "create", "vm3")
        ]
    );
    assert!(arr(&hist).iter().all(|e| s(e, "subdivision") == "web"));
    assert_eq!(hist[3]["profile"], "small");
    let tail = env.json(&["history", "--after", "2", "--limit", "1"]);
    assert_eq!(arr(&tail).len(), 1);
    assert_eq!(n(&tail[0], "seq"), 3);
    assert_eq!(s(&tail[0], "kind"), "delete");
}

#[test]
fn shard_lifecycle_by_hand() {
    let env = Env::new();
    env.ok(&["subdivision", "add", "rack1"]);
    let claimed = env.json(&["shard", "claim", "--subdivision", "rack1"]);
    assert_eq!(s(&claimed, "state"), "reserved");
    assert_eq!(s(&claimed, "subdivision"), "rack1");
    let prefix = s(&claimed, "prefix").to_string();
    // A reserved shard cannot be drained.
    env.assert_rejected(
        &["shard", "drain", &prefix],
        &[&prefix, "reserved", "drain"],
    );
    let act = env.json(&["shard", "activate", &prefix]);
    assert_eq!(s(&act, "state"), "active");
    // The next allocation lands in it on the fast path.
    let a = env.json(&["allocate", "--subdivision", "rack1", "--vm", "x"]);
    assert_eq!(s(&a, "shard"), prefix);
    assert_eq!(s(&a, "path"), "ready");
    env.ok(&["release", "--vm", "x"]);
    // Drained while its address cools down: it stays draining until the cooldown ends.
    let drained = env.json(&["shard", "drain", &prefix]);
    assert_eq!(s(&drained, "state"), "draining");
    let shards = env.json(&["shards", "--subdivision", "rack1"]);
    assert_eq!(arr(&shards).len(), 1);
    assert_eq!(s(&shards[0], "state"), "draining");
    assert_eq!(n(&shards[0], "leases"), 0);
}

#[test]
fn shard_claim_takes_a_prefix_len_within_the_pool_range() {
    let env = populated();
    env.ok(&[
        "pool",
        "add",
        "sized",
        "--prefix",
        "192.168.0.0/16",
        "--shard-prefix-len",
        "26",
        "--min-shard-prefix-len",
        "24",
        "--max-shard-prefix-len",
        "28",
    ]);
    let pools = env.json(&["pool", "list"]);
    let sized = arr(&pools)
        .iter()
        .find(|p| s(p, "name") == "sized")
        .expect("sized listed");
    assert_eq!(n(sized, "shard_prefix_len"), 26);
    assert_eq!(n(sized, "min_shard_prefix_len"), 24);
    assert_eq!(n(sized, "max_shard_prefix_len"), 28);
    let table = env.ok(&["pool", "list"]);
    assert!(table.contains("/26 (/24-/28)"), "{table}");
    env.ok(&["subdivision", "add", "rack", "--pool", "sized"]);

    // A /28, a default /26 and a /24 (which grows the /24 home block to a /23).
    let small = env.json(&[
        "shard",
        "claim",
        "--subdivision",
        "rack",
        "--prefix-len",
        "28",
    ]);
    assert_eq!(s(&small, "prefix"), "192.168.0.0/28");
    assert_eq!(s(&small, "state"), "reserved");
    assert_eq!(s(&small, "pool"), "sized");
    let default = env.json(&["shard", "claim", "--subdivision", "rack"]);
    assert_eq!(s(&default, "prefix"), "192.168.0.64/26");
    let big = env.json(&[
        "shard",
        "claim",
        "--subdivision",
        "rack",
        "--prefix-len",
        "24",
    ]);
    assert_eq!(s(&big, "prefix"), "192.168.1.0/24");
    assert!(!big["borrowed"].as_bool().unwrap());
    let shards = env.json(&["shards", "--subdivision", "rack"]);
    let got: Vec<(&str, &str)> = arr(&shards)
        .iter()
        .map(|x| (s(x, "prefix"), s(x, "usable")))
        .collect();
    assert_eq!(
        got,
        [
            ("192.168.0.0/28", "16"),
            ("192.168.0.64/26", "64"),
            ("192.168.1.0/24", "256")
        ]
    );
    // The /28 hands out its addresses once active.
    env.ok(&["shard", "activate", "192.168.0.0/28"]);
    let a = env.json(&["allocate", "--subdivision", "rack", "--vm", "r1"]);
    assert_eq!(s(&a, "shard"), "192.168.0.0/28");
    assert_eq!(s(&a, "address"), "192.168.0.0");

    // Outside the pool's range, or another size than a one-size pool's: refused, nothing changes.
    env.assert_rejected(
        &[
            "shard",
            "claim",
            "--subdivision",
            "rack",
            "--prefix-len",
            "29",
        ],
        &["pool `sized`", "/29", "/24 to /28"],
    );
    env.assert_rejected(
        &[
            "shard",
            "claim",
            "--subdivision",
            "rack",
            "--prefix-len",
            "23",
        ],
        &["pool `sized`", "/23", "/24 to /28"],
    );
    env.assert_rejected(
        &[
            "shard",
            "claim",
            "--subdivision",
            "web",
            "--pool",
            "v4",
            "--prefix-len",
            "27",
        ],
        &["pool `v4`", "/27", "only hands out /26 shards"],
    );
    // A range the default size does not lie in.
    env.assert_rejected(
        &[
            "pool",
            "add",
            "bad",
            "--prefix",
            "172.16.0.0/16",
            "--shard-prefix-len",
            "26",
            "--max-shard-prefix-len",
            "25",
        ],
        &["`bad`", "max_shard_prefix_len 25", "shard_prefix_len 26"],
    );
}

// ------------------------------------------------------------------------------------------
// Bad input: one line on stderr, exit code 1, and the store unchanged

#[test]
fn malformed_cidr_is_rejected() {
    let env = populated();
    let msg = env.assert_rejected(
        &[
            "pool",
            "add",
            "bad",
            "--prefix",
            "10.0.0/33",
            "--shard-prefix-len",
            "26",
        ],
        &["10.0.0/33", "--prefix"],
    );
    assert!(msg.contains("not a CIDR prefix"), "{msg}");
    env.assert_rejected(
        &[
            "pool",
            "add",
            "bad",
            "--prefix",
            "banana",
            "--shard-prefix-len",
            "26",
        ],
        &["banana"],
    );
    env.assert_rejected(
        &[
            "pool",
            "add",
            "bad",
            "--prefix",
            "192.168.0.0/16",
            "--shard-prefix-len",
            "26",
            "--reserved",
            "192.168.0.0/99",
        ],
        &["--reserved", "192.168.0.0/99"],
    );
}

#[test]
fn overlapping_pool_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &[
            "pool",
            "add",
            "inner",
            "--prefix",
            "10.1.0.0/16",
            "--shard-prefix-len",
            "26",
        ],
        &["`inner`", "`v4`", "10.1.0.0/16", "10.0.0.0/8"],
    );
    // The same prefix in another VRF is fine.
    env.ok(&[
        "pool",
        "add",
        "inner",
        "--prefix",
        "10.1.0.0/16",
        "--shard-prefix-len",
        "26",
        "--vrf",
        "tenant-b",
    ]);
    let pools = env.json(&["pool", "list"]);
    let names: Vec<&str> = arr(&pools).iter().map(|p| s(p, "name")).collect();
    assert_eq!(names, ["inner", "v4", "v6"], "pools are listed by name");
}

#[test]
fn pool_with_host_bits_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &[
            "pool",
            "add",
            "hb",
            "--prefix",
            "192.168.1.1/24",
            "--shard-prefix-len",
            "26",
        ],
        &["192.168.1.1/24", "host bits", "192.168.1.0/24"],
    );
}

#[test]
fn bad_shard_prefix_len_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &[
            "pool",
            "add",
            "p",
            "--prefix",
            "192.168.0.0/16",
            "--shard-prefix-len",
            "12",
        ],
        &["`p`", "shard_prefix_len 12"],
    );
    env.assert_rejected(
        &[
            "pool",
            "add",
            "p",
            "--prefix",
            "192.168.0.0/16",
            "--shard-prefix-len",
            "33",
        ],
        &["`p`", "shard_prefix_len 33"],
    );
}

#[test]
fn unknown_subdivision_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &["allocate", "--subdivision", "nowhere", "--vm", "vm9"],
        &["`nowhere`", "subdivision"],
    );
    env.assert_rejected(&["leases", "--subdivision", "nowhere"], &["`nowhere`"]);
    env.assert_rejected(&["routes", "--subdivision", "nowhere"], &["`nowhere`"]);
}

#[test]
fn vm_holding_an_address_elsewhere_is_rejected() {
    let env = populated();
    env.ok(&["subdivision", "add", "db"]);
    let vm1 = arr(&env.json(&["leases"]))[0].clone();
    env.assert_rejected(
        &["allocate", "--subdivision", "db", "--vm", "vm1"],
        &["`vm1`", s(&vm1, "address"), "`web`"],
    );
}

#[test]
fn unknown_profile_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &[
            "allocate",
            "--subdivision",
            "web",
            "--vm",
            "vm9",
            "--profile",
            "nope",
        ],
        &["`nope`", "profile", "small"],
    );
}

#[test]
fn invalid_vm_id_is_rejected() {
    let env = populated();
    env.assert_rejected(
        &["allocate", "--subdivision", "web", "--vm", "a,b"],
        &["\"a,b\"", "vm id"],
    );
}

#[test]
fn releasing_an_unknown_vm_is_rejected() {
    let env = populated();
    env.assert_rejected(&["release", "--vm", "ghost"], &["`ghost`"]);
    // A released VM is unknown too: releasing twice fails.
    env.assert_rejected(&["release", "--vm", "vm2"], &["`vm2`"]);
}

#[test]
fn exhausted_pool_is_rejected() {
    let env = populated();
    env.ok(&[
        "pool",
        "add",
        "tiny",
        "--prefix",
        "192.168.0.0/29",
        "--shard-prefix-len",
        "30",
    ]);
    env.ok(&["subdivision", "add", "s", "--pool", "tiny"]);
    let mut addresses = BTreeSet::new();
    let mut shards = BTreeSet::new();
    let mut first_failure = None;
    for i in 0..20 {
        let vm = format!("t{i}");
        let r = env.run(&[
            "allocate",
            "--subdivision",
            "s",
            "--vm",
            &vm,
            "--output",
            "json",
        ]);
        if r.code != Some(0) {
            first_failure = Some(i);
            break;
        }
        let a: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(s(&a, "pool"), "tiny");
        addresses.insert(s(&a, "address").to_string());
        shards.insert(s(&a, "shard").to_string());
    }
    // A /29 holds two /30 shards of 4 addresses each (no reserved addresses in this pool).
    assert_eq!(
        first_failure,
        Some(8),
        "the 9th allocation should be the first to fail"
    );
    assert_eq!(addresses.len(), 8);
    let want: BTreeSet<String> = (0..8).map(|i| format!("192.168.0.{i}")).collect();
    assert_eq!(addresses, want);
    assert_eq!(
        shards,
        ["192.168.0.0/30", "192.168.0.4/30"]
            .map(String::from)
            .into_iter()
            .collect()
    );
    env.assert_rejected(
        &["allocate", "--subdivision", "s", "--vm", "t8"],
        &["`tiny`", "exhausted", "`s`"],
    );
    // A subdivision restricted to another pool is not affected.
    env.ok(&["subdivision", "add", "db", "--pool", "v4"]);
    let a = env.json(&["allocate", "--subdivision", "db", "--vm", "other"]);
    assert_eq!(s(&a, "pool"), "v4");
}

/// A subdivision that draws from every pool (no `--pool`) takes the pool whose name sorts first,
/// even when it has an active shard with room in another pool: adding pool `tiny` and exhausting
/// it from another subdivision makes `web` fail although its /26 in `v4` has 60 free addresses.
#[test]
fn adding_a_pool_does_not_break_subdivisions_drawing_from_every_pool() {
    let env = populated();
    let web_shard = s(&arr(&env.json(&["shards"]))[0], "prefix").to_string();
    env.ok(&[
        "pool",
        "add",
        "tiny",
        "--prefix",
        "192.168.0.0/30",
        "--shard-prefix-len",
        "30",
    ]);
    env.ok(&["subdivision", "add", "s", "--pool", "tiny"]);
    for i in 0..4 {
        env.ok(&["allocate", "--subdivision", "s", "--vm", &format!("t{i}")]);
    }
    let a = env.json(&["allocate", "--subdivision", "web", "--vm", "vm3"]);
    assert_eq!(s(&a, "pool"), "v4");
    assert_eq!(s(&a, "shard"), web_shard);
    assert_eq!(s(&a, "path"), "ready");
}

#[test]
fn max_shards_is_enforced() {
    let env = populated();
    env.ok(&[
        "pool",
        "add",
        "small",
        "--prefix",
        "192.168.10.0/24",
        "--shard-prefix-len",
        "30",
    ]);
    env.ok(&[
        "subdivision",
        "add",
        "capped",
        "--pool",
        "small",
        "--max-shards",
        "1",
    ]);
    for i in 0..4 {
        let a = env.json(&[
            "allocate",
            "--subdivision",
            "capped",
            "--vm",
            &format!("c{i}"),
        ]);
        assert_eq!(s(&a, "pool"), "small");
    }
    env.assert_rejected(
        &["allocate", "--subdivision", "capped", "--vm", "c4"],
        &["`capped`", "max_shards = 1", "`small`"],
    );
    // A hand claim hits the same limit.
    env.assert_rejected(
        &["shard", "claim", "--subdivision", "capped"],
        &["`capped`", "max_shards = 1"],
    );
    let subs = env.json(&["subdivision", "list"]);
    let capped = arr(&subs)
        .iter()
        .find(|d| s(d, "name") == "capped")
        .expect("capped listed");
    assert_eq!(n(capped, "shards"), 1);
    assert_eq!(n(capped, "leases"), 4);
    assert_eq!(n(capped, "max_shards"), 1);
}

#[test]
fn shards_with_leases_cannot_be_released() {
    let env = populated();
    let shard = s(&arr(&env.json(&["shards"]))[0], "prefix").to_string();
    env.assert_rejected(&["shard", "release", &shard], &[&shard, "1 lease(s)"]);
    // Draining a shard with leases is allowed (it takes no new lease) ...
    let d = env.json(&["shard", "drain", &shard]);
    assert_eq!(s(&d, "state"), "draining");
    assert_eq!(s(&d, "prefix"), shard);
    // ... but only once, and it still cannot be released.
    env.assert_rejected(
        &["shard", "drain", &shard],
        &[&shard, "draining", "cannot drain"],
    );
    env.assert_rejected(&["shard", "release", &shard], &[&shard, "1 lease(s)"]);
    // The leases stay where they are, and new VMs go elsewhere.
    let a = env.json(&["allocate", "--subdivision", "web", "--vm", "vm5"]);
    assert_ne!(s(&a, "shard"), shard);
    assert_eq!(s(&a, "path"), "claimed-shard");
    let vm1 = env.json(&["leases"]);
    assert!(arr(&vm1)
        .iter()
        .any(|l| s(l, "vm_id") == "vm1" && s(l, "shard") == shard));
}

#[test]
fn shard_with_cooling_addresses_cannot_be_released() {
    let env = Env::new();
    env.ok(&["subdivision", "add", "web"]);
    let a = env.json(&["allocate", "--subdivision", "web", "--vm", "only"]);
    env.ok(&["release", "--vm", "only"]);
    let shard = s(&a, "shard");
    env.assert_rejected(&["shard", "release", shard], &[shard, "cooldown"]);
}

#[test]
fn unclaimed_shard_is_rejected() {
    let env = populated();
    for verb in ["drain", "release", "activate"] {
        env.assert_rejected(
            &["shard", verb, "10.200.0.0/26"],
            &["10.200.0.0/26", "claimed"],
        );
    }
    env.assert_rejected(&["shard", "drain", "not-a-prefix"], &["\"not-a-prefix\""]);
}

#[test]
fn removing_things_in_use_is_rejected() {
    let env = populated();
    env.assert_rejected(&["pool", "remove", "v4"], &["`v4`", "shards"]);
    env.assert_rejected(&["subdivision", "remove", "web"], &["`web`"]);
    env.assert_rejected(&["pool", "remove", "nope"], &["`nope`"]);
    env.assert_rejected(&["subdivision", "add", "web"], &["`web`", "already exists"]);
    env.assert_rejected(
        &["subdivision", "add", "child", "--parent", "nope"],
        &["nope"],
    );
    env.assert_rejected(
        &["subdivision", "add", "x", "--router", "edge"],
        &["`edge`", "router"],
    );
}

#[test]
fn usage_errors_exit_non_zero() {
    let env = populated();
    let before = env.snapshot();
    for args in [
        &["allocate", "--subdivision", "web"][..],
        &["release"][..],
        &["pool", "add", "p", "--prefix", "10.0.0.0/8"][..],
        &[
            "pool",
            "add",
            "p",
            "--prefix",
            "10.0.0.0/8",
            "--shard-prefix-len",
            "x",
        ][..],
        &["frobnicate"][..],
        &["demo", "--batch", "0"][..],
    ] {
        let r = env.run(args);
        assert_eq!(
            r.code,
            Some(2),
            "cidrcast {args:?} should be a usage error: {}",
            r.stderr
        );
        assert_eq!(r.stdout, "");
        assert!(r.stderr.starts_with("error: "), "{}", r.stderr);
    }
    let r = env.run(&["allocate", "--subdivision", "web"]);
    assert!(r.stderr.contains("--vm"), "{}", r.stderr);
    assert_eq!(env.snapshot(), before);
}

// ------------------------------------------------------------------------------------------
// Configuration

#[test]
fn init_writes_a_working_config() {
    let env = Env::new();
    let out = env.ok(&["init"]);
    assert!(out.contains("cidrcast.toml"), "{out}");
    let cfg = env.path().join("cidrcast.toml");
    let written = std::fs::read_to_string(&cfg).expect("init wrote cidrcast.toml");
    assert!(written.contains("[[pool]]") && written.contains("[[subdivision]]"));

    // Again without --force: refused, the file untouched (even an edited one).
    let edited = format!("{written}\n# my edit\n");
    std::fs::write(&cfg, &edited).unwrap();
    let r = env.run_raw(&["init"]);
    let msg = check_one_line_error(&["init"], &r);
    assert!(
        msg.contains("cidrcast.toml") && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), edited);
    // Another path is fine, and --force overwrites.
    env.ok(&["init", "other.toml"]);
    assert_eq!(
        std::fs::read_to_string(env.path().join("other.toml")).unwrap(),
        written
    );
    env.ok(&["init", "--force"]);
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);

    // The written file works as --config.
    let pools = env.json(&["--config", "other.toml", "pool", "list"]);
    let got: Vec<(&str, &str, u64)> = arr(&pools)
        .iter()
        .map(|p| (s(p, "name"), s(p, "prefix"), n(p, "shard_prefix_len")))
        .collect();
    assert_eq!(
        got,
        [("v4", "10.0.0.0/8", 26), ("v6", "fd12:3456:789a::/48", 64)]
    );
    let subs = env.json(&["--config", "other.toml", "subdivision", "list"]);
    let got: BTreeSet<(&str, Option<&str>)> = arr(&subs)
        .iter()
        .map(|d| (s(d, "name"), d["parent"].as_str()))
        .collect();
    let want: BTreeSet<(&str, Option<&str>)> = [
        ("eu", None),
        ("eu-a", Some("eu")),
        ("eu-a-r1", Some("eu-a")),
        ("eu-b", Some("eu")),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    // Its profiles are usable, and ./cidrcast.toml is read without --config.
    let a = env.json(&[
        "allocate",
        "--subdivision",
        "eu-a-r1",
        "--vm",
        "w1",
        "--profile",
        "web",
    ]);
    assert_eq!(s(&a, "profile"), "web");
    assert_eq!(s(&a, "pool"), "v4");
    let (shard, _) = v4net(s(&a, "shard"));
    let addr = v4(s(&a, "address"));
    // reserve_first = 2, reserve_last = 1 in the example.
    assert!(addr >= shard + 2 && addr <= shard + 62, "{a}");
    let st = env.json(&["status"]);
    assert_eq!(s(&st, "config"), "cidrcast.toml");
    assert_eq!(n(&st, "subdivisions"), 4);
    assert_eq!(n(&st, "leases"), 1);
}

#[test]
fn an_etcd_store_that_cannot_be_reached_is_a_clear_error() {
    let env = Env::new();
    // Nothing listens on port 1 of loopback.
    env.write(
        "e.toml",
        "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:1\"]\n\
         connect_timeout_s = 0.2\nrequest_timeout_s = 0.2\n",
    );
    let msg = env.fail(&["--config", "e.toml", "status"]);
    if cfg!(feature = "etcd") {
        assert!(
            msg.contains("cannot open the etcd store at http://127.0.0.1:1"),
            "{msg}"
        );
        assert!(msg.contains("unavailable"), "{msg}");
    } else {
        assert!(
            msg.contains("no etcd support") && msg.contains("--features etcd"),
            "{msg}"
        );
    }
    // Nothing was created in the data directory.
    assert_eq!(env.files(), ["e.toml".to_string()].into_iter().collect());
}

#[test]
fn config_with_unknown_field_is_rejected() {
    let env = Env::new();
    env.write(
        "c.toml",
        "[[pool]]\nname = \"p\"\nprefix = \"10.0.0.0/16\"\nshard_prefix_len = 26\ncolour = \"red\"\n",
    );
    let msg = env.fail(&["--config", "c.toml", "status"]);
    assert!(msg.contains("colour"), "{msg}");
    assert!(msg.contains("c.toml"), "{msg}");
    // Nothing was created in the data directory.
    assert_eq!(env.files(), ["c.toml".to_string()].into_iter().collect());

    env.write("d.toml", "[settings]\ncooldown = 3\n");
    let msg = env.fail(&["--config", "d.toml", "status"]);
    assert!(
        msg.contains("`cooldown`") && msg.contains("d.toml"),
        "{msg}"
    );
}

#[test]
fn config_differing_from_the_store_is_rejected() {
    let env = Env::new();
    let cfg = "[[pool]]\nname = \"p\"\nprefix = \"10.0.0.0/16\"\nshard_prefix_len = 26\n\n\
               [[subdivision]]\nname = \"z\"\n";
    env.write("c.toml", cfg);
    let a = env.json(&[
        "--config",
        "c.toml",
        "allocate",
        "--subdivision",
        "z",
        "--vm",
        "a",
    ]);
    assert_eq!(s(&a, "pool"), "p");
    // Without --config (and no ./cidrcast.toml) the store is read as it is.
    let before = env.snapshot();
    assert_eq!(
        arr(&before["pools"]).len(),
        1,
        "built-in pools only seed an empty store"
    );
    assert_eq!(arr(&before["leases"]).len(), 1);

    // Change the shard size and add a subdivision: refused as a whole.
    let changed = cfg.replace("= 26", "= 27") + "\n[[subdivision]]\nname = \"z2\"\n";
    env.write("c.toml", &changed);
    for args in [
        &["--config", "c.toml", "status"][..],
        &[
            "--config",
            "c.toml",
            "allocate",
            "--subdivision",
            "z",
            "--vm",
            "b",
        ][..],
        &["--config", "c.toml", "leases"][..],
    ] {
        let msg = env.fail(args);
        assert!(msg.contains("pool `p`"), "{msg}");
        assert!(msg.contains("differs"), "{msg}");
    }
    assert_eq!(env.snapshot(), before, "the store changed");
}

// ------------------------------------------------------------------------------------------
// Traces

#[test]
fn trace_import_then_check() {
    let env = Env::new();
    let part = task_events_part();
    let rep = env.json(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        "--group-by",
        "user",
        part.to_str().unwrap(),
        "-o",
        "out.csv",
    ]);
    assert_eq!(n(&rep, "parts"), 1);
    assert_eq!(s(&rep, "output"), "out.csv");
    let (creates, deletes) = (n(&rep, "creates"), n(&rep, "deletes"));
    assert!(creates > 0 && deletes > 0, "{rep}");
    assert_eq!(n(&rep, "groups_written"), n(&rep, "groups"));
    assert_eq!(
        creates - deletes,
        n(&rep, "still_alive_at_end"),
        "every delete ends a creation: {rep}"
    );

    let text = std::fs::read_to_string(env.path().join("out.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time_s,subdivision,event,vm_id,profile"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len() as u64, creates + deletes);
    assert_eq!(
        rows.iter()
            .filter(|r| r.split(',').nth(2) == Some("create"))
            .count() as u64,
        creates
    );
    assert!(
        !env.files().iter().any(|f| f.contains("partial")),
        "{:?}",
        env.files()
    );

    let chk = env.json(&["trace", "check", "out.csv"]);
    assert_eq!(n(&chk, "events"), creates + deletes);
    assert_eq!(n(&chk, "creations"), creates);
    assert_eq!(n(&chk, "deletions"), deletes);
    assert_eq!(n(&chk, "alive_at_end"), n(&rep, "still_alive_at_end"));
    assert_eq!(n(&chk, "subdivisions"), n(&rep, "groups_written"));
    assert_eq!(n(&chk, "skipped"), 0);
    assert!(n(&chk, "peak_alive") >= n(&chk, "alive_at_end"));
    let first = chk["first_time"].as_f64().unwrap();
    let last = chk["last_time"].as_f64().unwrap();
    assert!(first <= last);
    // Table form.
    let out = env.ok(&["trace", "check", "out.csv"]);
    assert!(out.starts_with("out.csv: valid, "), "{out}");

    // --top keeps the biggest subdivisions; gzip output reads back the same way.
    let rep3 = env.json(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        "--top",
        "3",
        part.to_str().unwrap(),
        "-o",
        "top3.csv.gz",
    ]);
    assert_eq!(n(&rep3, "groups_written"), 3);
    let chk3 = env.json(&["trace", "check", "top3.csv.gz"]);
    assert_eq!(n(&chk3, "subdivisions"), 3);
    assert_eq!(n(&chk3, "creations"), n(&rep3, "creates"));
    // The three biggest of the full import.
    let top_full: Vec<(String, u64)> = arr(&chk["top"])
        .iter()
        .take(3)
        .map(|t| (t[0].as_str().unwrap().to_string(), t[1].as_u64().unwrap()))
        .collect();
    let top3: Vec<(String, u64)> = arr(&chk3["top"])
        .iter()
        .map(|t| (t[0].as_str().unwrap().to_string(), t[1].as_u64().unwrap()))
        .collect();
    assert_eq!(top3, top_full);
}

#[test]
fn trace_import_failures_leave_no_output() {
    let env = Env::new();
    let part = task_events_part();
    let part = part.to_str().unwrap();
    let msg = env.fail(&[
        "trace", "import", "--from", "borg2019", part, "-o", "out.csv",
    ]);
    assert!(msg.contains("`borg2019`"), "{msg}");
    assert!(msg.contains("google2011-task-events"), "{msg}");
    let msg = env.fail(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        "--group-by",
        "planet",
        part,
        "-o",
        "out.csv",
    ]);
    assert!(msg.contains("planet"), "{msg}");
    assert_eq!(env.files(), BTreeSet::new());

    // A good part then a corrupt one: the import fails after writing rows, and leaves nothing.
    env.write("bad.csv.gz", "this is not gzip\n");
    let msg = env.fail(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        part,
        "bad.csv.gz",
        "-o",
        "out.csv",
    ]);
    assert!(msg.contains("bad.csv.gz"), "{msg}");
    assert_eq!(
        env.files(),
        ["bad.csv.gz".to_string()].into_iter().collect()
    );
    let msg = env.fail(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        "missing.csv.gz",
        "-o",
        "out.csv.gz",
    ]);
    assert!(msg.contains("missing.csv.gz"), "{msg}");
    assert_eq!(
        env.files(),
        ["bad.csv.gz".to_string()].into_iter().collect()
    );

    // A failed import leaves an existing output file as it was.
    env.write("out.csv", "precious\n");
    env.fail(&[
        "trace",
        "import",
        "--from",
        "google2011-task-events",
        part,
        "bad.csv.gz",
        "-o",
        "out.csv",
    ]);
    assert_eq!(
        std::fs::read_to_string(env.path().join("out.csv")).unwrap(),
        "precious\n"
    );
    assert_eq!(
        env.files(),
        ["bad.csv.gz".to_string(), "out.csv".to_string()]
            .into_iter()
            .collect()
    );
}

#[test]
fn trace_check_names_the_bad_line() {
    let env = Env::new();
    env.write(
        "back.csv",
        "time_s,subdivision,event,vm_id,profile\n1,a,create,v1,\n2,a,create,v2,\n2,b,create,v3,\n1.5,a,delete,v1,\n",
    );
    let msg = env.fail(&["trace", "check", "back.csv"]);
    assert!(msg.contains("back.csv:5"), "{msg}");
    assert!(msg.contains("1.5"), "{msg}");
    assert!(msg.contains("backwards"), "{msg}");

    env.write(
        "dup.csv",
        "time_s,subdivision,event,vm_id,profile\n1,a,create,v1,\n2,a,create,v1,\n",
    );
    let msg = env.fail(&["trace", "check", "dup.csv"]);
    assert!(msg.contains("dup.csv:3"), "{msg}");
    // ... unless lifecycle errors are skipped.
    let chk = env.json(&["trace", "check", "dup.csv", "--skip-invalid"]);
    assert_eq!(n(&chk, "events"), 1);
    assert_eq!(n(&chk, "skipped"), 1);

    env.write("hdr.csv", "time,sub,event,vm,profile\n");
    let msg = env.fail(&["trace", "check", "hdr.csv"]);
    assert!(msg.contains("hdr.csv:1") && msg.contains("header"), "{msg}");
}

// ------------------------------------------------------------------------------------------
// Demo

/// A small canonical trace: (time, subdivision, event, vm).
const SMALL_TRACE: &[(f64, &str, &str, &str)] = &[
    (0.0, "a", "create", "v1"),
    (1.0, "a", "create", "v2"),
    (2.0, "b", "create", "v3"),
    (3.0, "a", "delete", "v1"),
    (4.0, "b", "create", "v4"),
    (5.0, "a", "create", "v5"),
    (6.0, "c", "create", "v6"),
    (7.0, "b", "delete", "v3"),
    (8.0, "c", "delete", "v6"),
    (9.0, "a", "create", "v7"),
    (10.0, "b", "create", "v8"),
];

#[test]
fn demo_on_a_small_trace() {
    let env = Env::new();
    let mut csv = String::from("time_s,subdivision,event,vm_id,profile\n");
    for (t, sub, ev, vm) in SMALL_TRACE {
        csv.push_str(&format!("{t:.3},{sub},{ev},{vm},\n"));
    }
    env.write("events.csv", &csv);

    // Independently: creations, deletions, peak alive, who is alive at the end.
    let mut alive: BTreeSet<&str> = BTreeSet::new();
    let (mut creations, mut deletions, mut peak) = (0u64, 0u64, 0usize);
    let mut subs: BTreeSet<&str> = BTreeSet::new();
    let mut per_sub: HashMap<&str, (u64, usize, usize)> = HashMap::new(); // creations, alive, peak
    for (_, sub, ev, vm) in SMALL_TRACE {
        subs.insert(sub);
        let e = per_sub.entry(sub).or_default();
        if *ev == "create" {
            creations += 1;
            alive.insert(vm);
            e.0 += 1;
            e.1 += 1;
            e.2 = e.2.max(e.1);
        } else {
            deletions += 1;
            alive.remove(vm);
            e.1 -= 1;
        }
        peak = peak.max(alive.len());
    }
    assert_eq!((creations, deletions, peak, alive.len()), (8, 3, 5, 5));

    let data = env.path().join("store");
    let data = data.to_str().unwrap();
    let out = env.run_raw(&[
        "demo",
        "--events",
        "events.csv",
        "--data",
        data,
        "--quiet",
        "--output",
        "json",
    ]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let sum: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(n(&sum, "events"), SMALL_TRACE.len() as u64);
    assert_eq!(n(&sum, "creations"), creations);
    assert_eq!(n(&sum, "deletions"), deletions);
    assert_eq!(n(&sum, "allocations"), creations);
    assert_eq!(n(&sum, "peak_alive"), peak as u64);
    assert_eq!(n(&sum, "subdivisions") as usize, subs.len());
    assert_eq!(n(&sum, "recovered_leases") as usize, alive.len());
    assert_eq!(
        n(&sum, "ready_hits") + n(&sum, "slow_path"),
        creations,
        "every allocation is either a ready hit or a slow path"
    );
    assert!((sum["trace_hours"].as_f64().unwrap() - 10.0 / 3600.0).abs() < 1e-9);
    assert_eq!(s(&sum, "data_dir"), data);
    for row in arr(&sum["top"]) {
        let name = s(row, "subdivision");
        let (c, a, p) = per_sub[name];
        assert_eq!(n(row, "creations"), c, "{name}");
        assert_eq!(n(row, "alive_at_end") as usize, a, "{name}");
        assert_eq!(n(row, "peak_alive") as usize, p, "{name}");
    }
    assert_eq!(arr(&sum["top"]).len(), subs.len());

    // The store it leaves behind holds exactly the VMs alive at the end.
    let leases = common::json_in(data, env.path(), &["leases"]);
    let got: BTreeSet<&str> = arr(&leases).iter().map(|l| s(l, "vm_id")).collect();
    assert_eq!(got, alive);
    let addrs: BTreeSet<&str> = arr(&leases).iter().map(|l| s(l, "address")).collect();
    assert_eq!(addrs.len(), alive.len(), "duplicate addresses: {leases}");

    // An invalid trace is refused before the store is touched.
    env.write(
        "bad.csv",
        &csv.replace("5.000,a,create,v5", "0.500,a,create,v5"),
    );
    let bad_data = env.path().join("bad-store");
    let args = [
        "demo",
        "--events",
        "bad.csv",
        "--data",
        bad_data.to_str().unwrap(),
        "--quiet",
    ];
    let msg = check_one_line_error(&args, &env.run_raw(&args));
    assert!(msg.contains("bad.csv:7"), "{msg}");
    assert!(
        !bad_data.exists(),
        "the demo created its store for an invalid trace"
    );
}

/// The bundled slice (~270k events), replayed twice (on demand, then predictive).
#[test]
fn demo_on_the_bundled_slice() {
    let env = Env::new();
    let r = env.run_raw(&["demo", "--quiet", "--output", "json"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let sum: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(s(&sum, "trace").contains("bundled"));
    assert!(s(&sum, "data_dir").contains("temporary"));
    assert_eq!(n(&sum, "subdivisions"), 40);
    assert!(n(&sum, "events") > 100_000, "{sum}");
    assert_eq!(
        n(&sum, "events"),
        n(&sum, "creations") + n(&sum, "deletions")
    );
    assert_eq!(n(&sum, "allocations"), n(&sum, "creations"));
    assert_eq!(
        n(&sum, "ready_hits") + n(&sum, "slow_path"),
        n(&sum, "allocations")
    );
    assert_eq!(
        n(&sum, "recovered_leases"),
        n(&sum, "creations") - n(&sum, "deletions")
    );
    assert!(n(&sum, "peak_alive") >= n(&sum, "recovered_leases"));
    // Both runs count the same arrivals (after the 113,302 VMs running when the trace starts),
    // each a hit or a miss; the predictive run planned at every minute of the 3 h.
    let (base, pred) = (&sum["baseline"], &sum["predictive"]);
    assert_eq!(s(base, "policy"), "on-demand");
    assert_eq!(s(pred, "policy"), "predictive");
    assert_eq!(n(base, "allocations"), n(&sum, "creations") - 113_302);
    assert_eq!(n(pred, "allocations"), n(base, "allocations"));
    for r in [base, pred] {
        assert_eq!(n(r, "ready_hits") + n(r, "misses"), n(r, "allocations"));
        assert!(r["mean_idle_addresses"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert!(n(pred, "plans") >= 170, "{pred}");
    assert_eq!(n(base, "plans"), 0);
    let alive_top: u64 = arr(&sum["top"]).iter().map(|r| n(r, "alive_at_end")).sum();
    assert!(alive_top <= n(&sum, "recovered_leases"));
    assert_eq!(arr(&sum["top"]).len(), 10);
    // The temporary store is gone, and nothing was written to the working directory.
    assert_eq!(env.files(), BTreeSet::new());
}
