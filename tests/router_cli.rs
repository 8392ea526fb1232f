//! `cidrcast router list|render|diff|apply` on the real binary: every test has its own temporary
//! directory holding `cidrcast.toml` (a pool, a subdivision and routers), the data directory and
//! the routers' configuration files. `apply` runs the real validators (`bird -p`, `vtysh
//! --dryrun`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde_json::Value;

mod common;

use common::{assert_failed, json_in, run_in, Run};

/// A pool `v4` of /26 shards and a subdivision `eu`; routers are appended.
const BASE: &str = "[[pool]]\nname = \"v4\"\nprefix = \"10.20.0.0/16\"\nshard_prefix_len = 26\n\n\
                    [[subdivision]]\nname = \"eu\"\n";

/// A temporary directory: the working directory (with `cidrcast.toml`), `data/` the store and
/// `etc/` where the routers' configurations go.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// `routers` is the `[[router]]` part of the configuration; `{etc}` in it is replaced by the
    /// absolute path of `etc/`.
    fn new(routers: &str) -> Env {
        let env = Env {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        std::fs::create_dir(env.etc()).unwrap();
        let routers = routers.replace("{etc}", env.etc().to_str().unwrap());
        std::fs::write(env.config(), format!("{BASE}\n{routers}")).unwrap();
        env
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn config(&self) -> PathBuf {
        self.path().join("cidrcast.toml")
    }

    fn data(&self) -> PathBuf {
        self.path().join("data")
    }

    fn etc(&self) -> PathBuf {
        self.path().join("etc")
    }

    /// Runs `cidrcast --data data ARGS...` in the directory (reading ./cidrcast.toml).
    fn run(&self, args: &[&str]) -> Run {
        run_in(Some(&self.data()), self.path(), args)
    }

    /// Runs and asserts exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.run(args);
        assert_eq!(
            r.code,
            Some(0),
            "cidrcast {args:?} failed\nstdout: {}\nstderr: {}",
            r.stdout,
            r.stderr
        );
        r.stdout
    }

    /// Runs with `--output json`, asserts success, parses stdout.
    fn json(&self, args: &[&str]) -> Value {
        json_in(self.data(), self.path(), args)
    }

    /// Runs and asserts a clean failure: exit 1, nothing on stdout, stderr starting with
    /// `error: `. Returns stderr.
    fn fail(&self, args: &[&str]) -> String {
        assert_failed(args, &self.run(args))
    }

    /// Claims a shard of `eu`; returns its prefix.
    fn claim(&self) -> IpNet {
        let c = self.json(&["shard", "claim", "--subdivision", "eu"]);
        c["prefix"]
            .as_str()
            .unwrap_or_else(|| panic!("no prefix in {c}"))
            .parse()
            .unwrap()
    }

    /// The announced prefixes of `router`, from `router render --format json`.
    fn announced(&self, router: &str) -> Vec<IpNet> {
        let j: Value = serde_json::from_str(
            &self.ok(&["router", "render", "--router", router, "--format", "json"]),
        )
        .expect("JSON rendering");
        j["announcements"]
            .as_array()
            .unwrap_or_else(|| panic!("no announcements array in {j}"))
            .iter()
            .map(|a| a["prefix"].as_str().unwrap().parse().unwrap())
            .collect()
    }

    /// `deployed` of each router in `router list --output json`, by name.
    fn deployed(&self) -> Vec<(String, String, u64)> {
        let list = self.json(&["router", "list"]);
        list.as_array()
            .unwrap_or_else(|| panic!("not an array: {list}"))
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_string(),
                    r["deployed"].as_str().unwrap().to_string(),
                    r["prefixes"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A router `name` of `flavor` serving `eu`, with `extra` lines (config_path, reload_command).
fn router(name: &str, flavor: &str, asn: u32, extra: &str) -> String {
    format!(
        "[[router]]\nname = \"{name}\"\nflavor = \"{flavor}\"\nrouter_id = \"192.0.2.1\"\n\
         asn = {asn}\nneighbors = [{{ address = \"192.0.2.254\", asn = 65000 }}]\n\
         subdivisions = [\"eu\"]\n{extra}\n"
    )
}

/// `edge-bird` (reloads by appending to etc/../reloads) and `edge-frr` (no reload command).
fn two_routers() -> Env {
    Env::new(&format!(
        "{}{}",
        router(
            "edge-bird",
            "bird",
            65001,
            "config_path = \"{etc}/bird.conf\"\nreload_command = \"echo reload >> '{etc}/../reloads'\""
        ),
        router("edge-frr", "frr", 65002, "config_path = \"{etc}/frr.conf\""),
    ))
}

fn reloads(env: &Env) -> usize {
    std::fs::read_to_string(env.path().join("reloads"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

#[test]
fn render_prints_the_claimed_shards_in_each_format() {
    let env = two_routers();
    let shard = env.claim();
    let p = shard.to_string();

    let bird = env.ok(&["router", "render", "--router", "edge-bird"]);
    assert!(
        bird.contains(&format!("route {p} blackhole")) && bird.contains("protocol bgp"),
        "{bird}"
    );
    let frr = env.ok(&["router", "render", "--router", "edge-frr"]);
    assert!(
        frr.contains(&format!("ip route {p} blackhole")) && frr.contains("router bgp 65002"),
        "{frr}"
    );
    // --format overrides the flavor.
    let frr_as_bird = env.ok(&[
        "router", "render", "--router", "edge-frr", "--format", "bird",
    ]);
    assert!(frr_as_bird.contains("local as 65002;"), "{frr_as_bird}");
    assert_eq!(env.announced("edge-frr"), vec![shard]);
    assert_eq!(env.announced("edge-bird"), vec![shard]);

    let msg = env.fail(&[
        "router", "render", "--router", "edge-frr", "--format", "xml",
    ]);
    assert!(
        msg.contains("\"xml\"") && msg.contains("frr, bird or json"),
        "{msg}"
    );
    let msg = env.fail(&["router", "render", "--router", "edge-nope"]);
    assert!(
        msg.contains("`edge-nope`") && msg.contains("edge-bird, edge-frr"),
        "{msg}"
    );
    // Rendering writes nothing.
    assert!(listing(&env.etc()).is_empty(), "{:?}", listing(&env.etc()));
}

#[test]
fn apply_then_diff_then_apply_again() {
    let env = two_routers();
    let bird_conf = env.etc().join("bird.conf");
    let first = env.claim();
    assert_eq!(
        env.deployed(),
        [
            ("edge-bird".into(), "not yet".into(), 1),
            ("edge-frr".into(), "not yet".into(), 1)
        ]
    );
    // Nothing deployed: everything is added, and --exit-code says so.
    let r = env.run(&["router", "diff", "--router", "edge-bird", "--exit-code"]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    assert!(r.stdout.starts_with("--- /dev/null\n"), "{}", r.stdout);

    let report = env.json(&["router", "apply", "--router", "edge-bird"]);
    assert_eq!(report["outcome"], "written and reloaded", "{report}");
    assert_eq!(report["config_path"], bird_conf.to_str().unwrap());
    assert_eq!(reloads(&env), 1);
    let rendered = env.ok(&["router", "render", "--router", "edge-bird"]);
    let written = std::fs::read_to_string(&bird_conf).unwrap();
    assert_eq!(written, rendered);
    assert!(written.contains(&first.to_string()));
    assert_eq!(
        env.deployed(),
        [
            ("edge-bird".into(), "up to date".into(), 1),
            ("edge-frr".into(), "not yet".into(), 1)
        ]
    );

    let r = env.run(&["router", "diff", "--router", "edge-bird", "--exit-code"]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("up to date"), "{}", r.stderr);

    // Another shard: the rendering announces a prefix that the deployed file lacks.
    let before = env.announced("edge-bird");
    let second = env.claim();
    let announced = env
        .announced("edge-bird")
        .into_iter()
        .find(|a| a.contains(&second))
        .expect("the new shard is announced");
    assert!(!before.contains(&announced), "{announced} {before:?}");
    let r = env.run(&["router", "diff", "--router", "edge-bird", "--exit-code"]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let plus = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .map(str::to_string)
            .collect()
    };
    let added = plus(&r.stdout);
    assert!(
        added.iter().any(|l| l.contains(&announced.to_string())),
        "no + line with {announced}:\n{}",
        r.stdout
    );
    assert!(
        r.stdout
            .starts_with(&format!("--- {}\n", bird_conf.display())),
        "{}",
        r.stdout
    );
    // Without --exit-code, the same diff and exit 0.
    let r2 = env.run(&["router", "diff", "--router", "edge-bird"]);
    assert_eq!((r2.code, r2.stdout.as_str()), (Some(0), r.stdout.as_str()));
    assert_eq!(std::fs::read_to_string(&bird_conf).unwrap(), written);
    let now = env.announced("edge-bird").len() as u64;
    assert_eq!(
        env.deployed(),
        [
            ("edge-bird".into(), "differs".into(), now),
            ("edge-frr".into(), "not yet".into(), now)
        ]
    );

    let report = env.json(&["router", "apply", "--router", "edge-bird"]);
    assert_eq!(report["outcome"], "written and reloaded", "{report}");
    assert_eq!(reloads(&env), 2);
    let r = env.run(&["router", "diff", "--router", "edge-bird", "--exit-code"]);
    assert_eq!((r.code, r.stdout.as_str()), (Some(0), ""), "{}", r.stderr);
    let report = env.json(&["router", "apply", "--router", "edge-bird"]);
    assert_eq!(report["outcome"], "unchanged", "{report}");
    assert_eq!(reloads(&env), 2, "an unchanged apply must not reload");

    // The FRR router, validated by vtysh.
    let out = env.ok(&["router", "apply", "--router", "edge-frr"]);
    assert!(out.contains("written (no reload_command)"), "{out}");
    assert_eq!(
        std::fs::read_to_string(env.etc().join("frr.conf")).unwrap(),
        env.ok(&["router", "render", "--router", "edge-frr"])
    );
    let states: Vec<String> = env.deployed().into_iter().map(|(_, d, _)| d).collect();
    assert_eq!(states, ["up to date", "up to date"]);
    assert_eq!(
        listing(&env.etc()),
        BTreeSet::from(["bird.conf".into(), "frr.conf".into()])
    );
}

#[test]
fn a_failed_reload_keeps_the_previous_file() {
    let cmd = "echo boom >&2; exit 7";
    let env = Env::new(&router(
        "edge-fail",
        "bird",
        65001,
        &format!("config_path = \"{{etc}}/bird.conf\"\nreload_command = \"{cmd}\""),
    ));
    let conf = env.etc().join("bird.conf");
    let previous = b"# the previous configuration\nrouter id 192.0.2.9;\n";
    std::fs::write(&conf, previous).unwrap();
    env.claim();
    let err = env.fail(&["router", "apply", "--router", "edge-fail"]);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].contains(&format!("`{cmd}`")) && lines[0].contains("exit status: 7"),
        "{err}"
    );
    assert_eq!(
        lines[1..],
        ["  boom"],
        "the command's output, indented: {err}"
    );
    assert_eq!(std::fs::read(&conf).unwrap(), previous);
    assert_eq!(listing(&env.etc()), BTreeSet::from(["bird.conf".into()]));
    let states: Vec<String> = env.deployed().into_iter().map(|(_, d, _)| d).collect();
    assert_eq!(states, ["differs"]);
}

#[test]
fn unusable_config_paths_are_refused_and_nothing_is_created() {
    let env = Env::new(&format!(
        "{}{}{}",
        router("no-path", "frr", 65001, ""),
        router(
            "no-dir",
            "frr",
            65001,
            "config_path = \"{etc}/missing/frr.conf\""
        ),
        router(
            "under-file",
            "bird",
            65001,
            "config_path = \"{etc}/plain/bird.conf\""
        ),
    ));
    std::fs::write(env.etc().join("plain"), "a file\n").unwrap();
    env.claim();

    let msg = env.fail(&["router", "apply", "--router", "no-path"]);
    assert!(
        msg.contains("`no-path`") && msg.contains("no config_path"),
        "{msg}"
    );
    let msg = env.fail(&["router", "diff", "--router", "no-path", "--exit-code"]);
    assert!(msg.contains("no config_path"), "{msg}");

    for (name, path) in [
        ("no-dir", env.etc().join("missing/frr.conf")),
        ("under-file", env.etc().join("plain/bird.conf")),
    ] {
        let msg = env.fail(&["router", "apply", "--router", name]);
        assert!(
            msg.contains(&format!("{:?}", path.display().to_string()))
                && msg.contains("not writable"),
            "{name}: {msg}"
        );
    }
    assert_eq!(listing(&env.etc()), BTreeSet::from(["plain".into()]));
    assert_eq!(
        std::fs::read_to_string(env.etc().join("plain")).unwrap(),
        "a file\n"
    );
}

/// Writes `cidrcast.toml` with one router `edge` of `fields` (and `after` it), runs `router
/// list`, and asserts a one-line refusal containing every needle, with no store created.
fn refused(fields: &str, after: &str, needles: &[&str]) {
    let env = Env::new(&format!(
        "[[router]]\nname = \"edge\"\nflavor = \"bird\"\n{fields}\n{after}"
    ));
    let msg = env.fail(&["router", "list"]);
    assert_eq!(msg.lines().count(), 1, "{fields}: one line: {msg:?}");
    for n in needles {
        assert!(msg.contains(n), "{fields}: {n:?} not in {msg}");
    }
    assert!(!env.data().exists(), "{fields}: a store was created");
}

#[test]
fn bad_router_definitions_are_refused() {
    let id = "router_id = \"192.0.2.1\"";
    let cases: [(String, &str, &[&str]); 8] = [
        (
            format!("{id}\nasn = 65001\nsubdivisions = [\"asia\"]"),
            "",
            &[
                "router \"edge\"",
                "subdivisions = \"asia\"",
                "no [[subdivision]]",
            ],
        ),
        (
            format!("{id}\nasn = 0"),
            "",
            &["router \"edge\"", "asn = 0", "reserved"],
        ),
        (
            format!("{id}\nasn = 4294967296"),
            "",
            &["router \"edge\"", "asn = 4294967296", "out of range"],
        ),
        (
            format!("{id}\nasn = 65001\nneighbors = [{{ address = \"10.0.0.300\", asn = 65000 }}]"),
            "",
            &[
                "router \"edge\"",
                "address = \"10.0.0.300\"",
                "not an IPv4 or IPv6 address",
            ],
        ),
        (
            "router_id = \"0.0.0.0\"\nasn = 65001".to_string(),
            "",
            &[
                "router \"edge\"",
                "router_id = \"0.0.0.0\"",
                "BGP router id",
            ],
        ),
        (
            format!("{id}\nasn = 65001"),
            "[router.policy]\nactive_community = \"65535:1\"\n",
            &[
                "router \"edge\"",
                "policy.active_community = \"65535:1\"",
                "reserved",
            ],
        ),
        (
            format!("{id}\nasn = 65001"),
            "[router.policy]\nactive_community = \"65001:7\"\nprefetched_community = \"65001:7\"\n",
            &[
                "policy.prefetched_community = \"65001:7\"",
                "must differ from policy.active_community",
            ],
        ),
        (
            format!("{id}\nasn = 4200000000"),
            "",
            &[
                "router \"edge\"",
                "policy.active_community",
                "4200000000:100",
                "does not fit",
            ],
        ),
    ];
    for (fields, after, needles) in cases {
        refused(&fields, after, needles);
    }
}

#[test]
fn a_malformed_community_is_refused_naming_router_key_and_value() {
    let env = Env::new(
        "[[router]]\nname = \"edge\"\nflavor = \"frr\"\nrouter_id = \"192.0.2.1\"\nasn = 65001\n\
         [router.policy]\nactive_community = \"65001\"\n",
    );
    let text = std::fs::read_to_string(env.config()).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("[[router]]"))
        .unwrap()
        + 1;
    let msg = env.fail(&["router", "list"]);
    // The message points at the router's table and names the router, the key and the value.
    for n in [
        format!("cidrcast.toml:{line}:"),
        "router \"edge\"".to_string(),
        "policy.active_community = \"65001\" is not a BGP community".to_string(),
        "ASN:VALUE".to_string(),
    ] {
        assert!(msg.contains(&n), "{n:?} not in {msg}");
    }
    assert!(!env.data().exists());
}
