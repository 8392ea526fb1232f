//! Rendered router configurations announce what they should, over real BGP sessions.
//!
//! Each test builds a two-namespace lab (network namespaces and a veth pair it creates, addresses
//! only inside the namespaces): router A runs the configuration `cidrcast router apply` renders
//! and deploys (BIRD in one test, FRR's zebra + staticd + bgpd in the other; the router's
//! `reload_command` reconfigures the running daemon), and peer B runs BIRD importing everything
//! from A. After each change of the shard set and `router apply`, B must have learned exactly the
//! expected aggregates with the expected communities and MED, the expectation being computed here
//! from `cidrcast shards` (not by the renderer). One more BIRD test lets `cidrcast serve` deploy
//! router A by itself while a plan reserves shards, an API call releases one and an allocation
//! activates one, the expectation coming from `GET /v1/shards`.
//!
//! The lab's guard kills every daemon it started by PID (from their pid files, and whatever is
//! still inside its namespaces) and deletes the namespaces, also when an assertion fails.
//!
//! Needs root, iproute2, bird2 and frr (with frr-pythontools for `frr-reload.py`). Without them
//! the tests fail (they never skip).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

mod common;
mod daemon;

use common::json_in;

/// Router A's address (inside namespace A) and AS number.
const A_ADDR: &str = "10.255.0.1";
const A_ASN: u32 = 65001;
/// Peer B's address (inside namespace B) and AS number.
const B_ADDR: &str = "10.255.0.2";
const B_ASN: u32 = 65002;
/// The router's name in the cidrcast configuration.
const ROUTER: &str = "edge-a";
/// The only subdivision, served by the router.
const SUBDIVISION: &str = "rack1";
/// How long B may take to converge after a change.
const CONVERGE: Duration = Duration::from_secs(30);

const FRR_DAEMONS: [&str; 3] = ["zebra", "staticd", "bgpd"];
const FRR_RELOAD: &str = "/usr/lib/frr/frr-reload.py";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flavor {
    Bird,
    Frr,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Bird => "bird",
            Flavor::Frr => "frr",
        }
    }
}

/// The routing policy the test expects on B (and writes in `[router.policy]` when `custom`).
struct Policy {
    active: &'static str,
    prefetched: &'static str,
    med: u32,
    custom: bool,
}

/// The defaults: `ASN:100`, `ASN:200`, MED 0.
const DEFAULT_POLICY: Policy = Policy {
    active: "65001:100",
    prefetched: "65001:200",
    med: 0,
    custom: false,
};

const CUSTOM_POLICY: Policy = Policy {
    active: "65001:111",
    prefetched: "65001:222",
    med: 7,
    custom: true,
};

/// A route as B sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Route {
    /// Standard communities, as `ASN:VALUE`.
    communities: BTreeSet<String>,
    med: Option<u32>,
    as_path: String,
}

/// Prefix (as BIRD prints it) → route.
type Routes = BTreeMap<String, Route>;

/// A daemon the lab started: its pid file and its process name (checked before it is killed,
/// so that a reused PID is never signalled).
struct Daemon {
    comm: &'static str,
    pid_file: PathBuf,
}

/// Two network namespaces joined by a veth pair, BIRD (peer B) in one and router A in the other,
/// and a cidrcast configuration and store, all in one temporary directory. Dropping it stops
/// every daemon by PID and deletes the namespaces, even while a failed assertion unwinds.
struct Lab {
    flavor: Flavor,
    ns_a: String,
    ns_b: String,
    veth_a: String,
    veth_b: String,
    /// Namespaces created so far (deleted on drop).
    namespaces: Vec<String>,
    daemons: Vec<Daemon>,
    /// Last field: removed after `drop` stopped the daemons.
    dir: tempfile::TempDir,
}

impl Lab {
    /// Creates the namespaces and the veth pair and addresses them; fails the test (with what
    /// to do) when not root or when `ip netns add` fails.
    fn new(flavor: Flavor) -> Lab {
        require_root_and_tools(flavor);
        let dir = tempfile::Builder::new()
            .prefix("cidrcast-bgp-")
            .tempdir()
            .expect("temporary directory");
        // FRR's daemons drop to user frr and must reach their directory below this one.
        set_mode(dir.path(), 0o755);
        let n = LAB_COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let mut lab = Lab {
            flavor,
            ns_a: format!("cidrcast-bgp-{pid}-{n}-a"),
            ns_b: format!("cidrcast-bgp-{pid}-{n}-b"),
            // At most 15 characters: 2 + 7 (largest PID) + 1 + counter + 1.
            veth_a: format!("cb{pid}x{n}a"),
            veth_b: format!("cb{pid}x{n}b"),
            namespaces: Vec::new(),
            daemons: Vec::new(),
            dir,
        };
        assert!(lab.veth_a.len() <= 15, "veth name {} too long", lab.veth_a);
        for ns in [lab.ns_a.clone(), lab.ns_b.clone()] {
            let out = output(Command::new("ip").args(["netns", "add", &ns]));
            assert!(
                out.status.success(),
                "`ip netns add {ns}` failed: {}\nThis test needs root (CAP_SYS_ADMIN) and iproute2 \
                 to create network namespaces; it does not skip.",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            lab.namespaces.push(ns);
        }
        // The pair is created inside the namespaces: nothing appears in the host's namespace.
        run(Command::new("ip").args([
            "-n",
            &lab.ns_a,
            "link",
            "add",
            &lab.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &lab.veth_b,
            "netns",
            &lab.ns_b,
        ]));
        for (ns, dev, addr) in [
            (&lab.ns_a, &lab.veth_a, A_ADDR),
            (&lab.ns_b, &lab.veth_b, B_ADDR),
        ] {
            let cidr = format!("{addr}/30");
            run(Command::new("ip").args(["-n", ns, "addr", "add", &cidr, "dev", dev]));
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
            run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]));
        }
        lab
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn frr_dir(&self) -> PathBuf {
        self.path("frr")
    }

    /// Where `cidrcast router apply` writes router A's configuration.
    fn config_path(&self) -> PathBuf {
        match self.flavor {
            Flavor::Bird => self.path("a.conf"),
            Flavor::Frr => self.frr_dir().join("frr.conf"),
        }
    }

    /// Router A's reload command: reconfigures the running daemon from `config_path`.
    fn reload_command(&self) -> String {
        match self.flavor {
            // birdc exits 1 when it cannot reach the daemon or the configuration is refused.
            Flavor::Bird => format!("birdc -s {} configure", self.path("a.ctl").display()),
            // Applies the difference between the running configuration and the file through
            // vtysh; --stdout keeps its log out of /var/log/frr; the file is confdir/frr.conf,
            // so it does not `write` the running configuration over anything.
            Flavor::Frr => {
                let d = self.frr_dir();
                let d = d.display();
                format!(
                    "{FRR_RELOAD} --reload --stdout --vty_socket {d} --bindir /usr/bin \
                     --confdir {d} --rundir {d} {d}/frr.conf"
                )
            }
        }
    }

    /// The cidrcast configuration: one IPv4 pool of /26 shards, one subdivision, router A.
    fn config_toml(&self, policy: &Policy) -> String {
        let mut toml = format!(
            r#"[settings]
# A released address is reusable at once: a draining shard frees when its last lease goes.
cooldown_s = 0

[[pool]]
name = "v4"
prefix = "10.40.0.0/16"
shard_prefix_len = 26

[[subdivision]]
name = "{SUBDIVISION}"
pools = ["v4"]
home_shards = 16

[[router]]
name = "{ROUTER}"
flavor = "{flavor}"
router_id = "{A_ADDR}"
asn = {A_ASN}
neighbors = [{{ address = "{B_ADDR}", asn = {B_ASN} }}]
subdivisions = ["{SUBDIVISION}"]
config_path = '{config_path}'
reload_command = '{reload}'
"#,
            flavor = self.flavor.name(),
            config_path = self.config_path().display(),
            reload = self.reload_command(),
        );
        if policy.custom {
            toml.push_str(&format!(
                "\n[router.policy]\nactive_community = \"{}\"\n\
                 prefetched_community = \"{}\"\nmed = {}\n",
                policy.active, policy.prefetched, policy.med
            ));
        }
        toml
    }

    /// Writes [`Lab::config_toml`] where the CLI reads it.
    fn write_config(&self, policy: &Policy) -> PathBuf {
        let path = self.path("cidrcast.toml");
        fs::write(&path, self.config_toml(policy)).expect("write cidrcast.toml");
        path
    }

    /// `cidrcast --config ... --data ... ARGS --output json`, asserted to succeed.
    fn cidrcast(&self, args: &[&str]) -> Value {
        let config = self.path("cidrcast.toml");
        let config = config.to_str().expect("UTF-8 path");
        let mut all = vec!["--config", config];
        all.extend_from_slice(args);
        json_in(self.path("data"), self.dir.path(), &all)
    }

    /// Starts a daemon in `ns` (it daemonizes; its output goes to `log`). It is registered
    /// before it starts, so that the guard finds its pid file whatever happens next.
    fn start(
        &mut self,
        ns: &str,
        comm: &'static str,
        pid_file: PathBuf,
        argv: &[&str],
        log_name: &str,
    ) {
        self.daemons.push(Daemon { comm, pid_file });
        let log = fs::File::create(self.path(log_name)).expect("daemon log");
        let status = Command::new("ip")
            .args(["netns", "exec", ns])
            .args(argv)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .status()
            .unwrap_or_else(|e| panic!("cannot run {argv:?}: {e}"));
        assert!(
            status.success(),
            "{argv:?} in {ns} failed ({status}): {}",
            fs::read_to_string(self.path(log_name)).unwrap_or_default()
        );
    }

    /// Starts BIRD with `conf` in `ns`; its control socket is `<name>.ctl`.
    fn start_bird(&mut self, ns: &str, name: &str, conf: &str) -> PathBuf {
        let conf_path = self.path(&format!("{name}.conf"));
        fs::write(&conf_path, conf).expect("write BIRD config");
        let ctl = self.path(&format!("{name}.ctl"));
        let pid = self.path(&format!("bird-{name}.pid"));
        let argv = [
            "bird",
            "-c",
            conf_path.to_str().expect("UTF-8"),
            "-s",
            ctl.to_str().expect("UTF-8"),
            "-P",
            pid.to_str().expect("UTF-8"),
        ];
        self.start(ns, "bird", pid.clone(), &argv, &format!("bird-{name}.log"));
        wait_until(
            Duration::from_secs(10),
            &format!("BIRD {name} answers"),
            || {
                output(Command::new("birdc").arg("-s").arg(&ctl).arg("show status"))
                    .status
                    .success()
            },
        );
        ctl
    }

    /// Peer B: BIRD importing everything from A, retrying its connection every 2 s.
    fn start_peer_b(&mut self) {
        let conf = format!(
            "router id {B_ADDR};\nprotocol device {{}}\n\
             protocol bgp peer_a {{\n  local {B_ADDR} as {B_ASN};\n  \
             neighbor {A_ADDR} as {A_ASN};\n  connect delay time 1;\n  connect retry time 2;\n  \
             error wait time 1, 3;\n  ipv4 {{ import all; export none; }};\n}}\n"
        );
        let ns = self.ns_b.clone();
        self.start_bird(&ns, "b", &conf);
    }

    /// Router A, running with an empty configuration until `router apply` reloads it.
    fn start_router_a(&mut self) {
        let ns = self.ns_a.clone();
        match self.flavor {
            Flavor::Bird => {
                // The deployed file starts as a placeholder: apply replaces it and reconfigures.
                self.start_bird(
                    &ns,
                    "a",
                    &format!("router id {A_ADDR};\nprotocol device {{}}\n"),
                );
            }
            Flavor::Frr => {
                let f = self.frr_dir();
                fs::create_dir(&f).expect("frr directory");
                fs::write(f.join("empty.conf"), "").expect("empty.conf");
                run(Command::new("chown").args(["-R", "frr:frr"]).arg(&f));
                let utf8 = |p: PathBuf| p.to_str().expect("UTF-8").to_string();
                let empty = utf8(f.join("empty.conf"));
                let zserv = utf8(f.join("zserv.api"));
                let sock = utf8(f.clone());
                for d in FRR_DAEMONS {
                    let pid = f.join(format!("{d}.pid"));
                    let bin = format!("/usr/lib/frr/{d}");
                    let argv = [
                        bin.as_str(),
                        "-d",
                        "-f",
                        &empty,
                        "-z",
                        &zserv,
                        "-i",
                        &utf8(pid.clone()),
                        "--vty_socket",
                        &sock,
                        "-A",
                        "127.0.0.1",
                    ];
                    self.start(&ns, d, pid, &argv, &format!("{d}.log"));
                    let vty = f.join(format!("{d}.vty"));
                    wait_until(Duration::from_secs(10), &format!("{d} is up"), || {
                        vty.exists() && (d != "zebra" || f.join("zserv.api").exists())
                    });
                }
            }
        }
    }

    /// `router apply`: returns its outcome.
    fn apply(&self) -> String {
        let r = self.cidrcast(&["router", "apply", "--router", ROUTER]);
        r["outcome"].as_str().expect("outcome").to_string()
    }

    /// B's routes, from `birdc show route all`.
    fn routes_b(&self) -> Routes {
        let out = run(Command::new("birdc")
            .arg("-s")
            .arg(self.path("b.ctl"))
            .arg("show route all"));
        parse_bird_routes(&out)
    }

    /// Polls until B has exactly `want` (twice in a row), or fails with what both sides show.
    fn wait_routes(&self, want: &Routes, step: &str) {
        let start = Instant::now();
        let mut last;
        loop {
            last = self.routes_b();
            if &last == want {
                sleep(Duration::from_millis(500));
                last = self.routes_b();
                if &last == want {
                    eprintln!(
                        "[{}] {step}: B converged in {:.1} s",
                        self.flavor.name(),
                        start.elapsed().as_secs_f64()
                    );
                    return;
                }
            }
            if start.elapsed() > CONVERGE {
                panic!(
                    "[{}] {step}: after {} s peer B has\n{last:#?}\n\
                     but should have exactly\n{want:#?}\n\n{}",
                    self.flavor.name(),
                    CONVERGE.as_secs(),
                    self.diagnostics()
                );
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// What both daemons show, for failure messages.
    fn diagnostics(&self) -> String {
        let mut s = String::new();
        let mut show = |title: &str, cmd: &mut Command| {
            let out = output(cmd);
            s.push_str(&format!(
                "--- {title}\n{}{}\n",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        };
        let b = self.path("b.ctl");
        show(
            "B: show protocols all peer_a",
            Command::new("birdc")
                .arg("-s")
                .arg(&b)
                .arg("show protocols all peer_a"),
        );
        match self.flavor {
            Flavor::Bird => {
                let a = self.path("a.ctl");
                for c in ["show route all", "show protocols all"] {
                    show(
                        &format!("A: {c}"),
                        Command::new("birdc").arg("-s").arg(&a).arg(c),
                    );
                }
            }
            Flavor::Frr => {
                for c in [
                    "show bgp ipv4 unicast",
                    &format!("show bgp ipv4 unicast neighbors {B_ADDR} advertised-routes"),
                    "show ip route",
                    "show running-config",
                ] {
                    show(
                        &format!("A: {c}"),
                        Command::new("vtysh")
                            .arg("--vty_socket")
                            .arg(self.frr_dir())
                            .args(["-c", c]),
                    );
                }
            }
        }
        s.push_str(&format!(
            "--- A's deployed configuration {}\n{}",
            self.config_path().display(),
            fs::read_to_string(self.config_path()).unwrap_or_default()
        ));
        s
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The daemons' PIDs from their pid files (a daemon that has just forked may not have
        // written it yet: give it a moment), then anything else still inside the namespaces.
        let mut pids = BTreeSet::new();
        for d in &self.daemons {
            let deadline = Instant::now() + Duration::from_secs(2);
            let pid = loop {
                let pid = fs::read_to_string(&d.pid_file)
                    .ok()
                    .and_then(|s| s.trim().parse::<u32>().ok());
                if pid.is_some() || Instant::now() > deadline {
                    break pid;
                }
                sleep(Duration::from_millis(50));
            };
            match pid {
                Some(p) if process_name(p).as_deref() == Some(d.comm) => {
                    pids.insert(p);
                }
                Some(_) => {} // already gone (or the PID was reused by something else)
                None => eprintln!(
                    "router_bgp cleanup: no PID in {} ({})",
                    d.pid_file.display(),
                    d.comm
                ),
            }
        }
        for ns in &self.namespaces {
            if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
                pids.extend(
                    String::from_utf8_lossy(&out.stdout)
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
        stop_all(&pids);
        for ns in &self.namespaces {
            let out = output(Command::new("ip").args(["netns", "del", ns]));
            if !out.status.success() {
                eprintln!(
                    "router_bgp cleanup: `ip netns del {ns}` failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        // The pair lives in the namespaces and goes with them; remove it should one end have
        // stayed in the host's namespace.
        for dev in [&self.veth_a, &self.veth_b] {
            if output(Command::new("ip").args(["link", "show", "dev", dev]))
                .status
                .success()
            {
                let _ = output(Command::new("ip").args(["link", "del", "dev", dev]));
            }
        }
    }
}

/// SIGTERM to every PID, then SIGKILL to those alive after 3 s.
fn stop_all(pids: &BTreeSet<u32>) {
    for sig in ["-TERM", "-KILL"] {
        let alive: Vec<u32> = pids.iter().copied().filter(|&p| is_alive(p)).collect();
        if alive.is_empty() {
            return;
        }
        for p in &alive {
            let _ = output(Command::new("kill").arg(sig).arg(p.to_string()));
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && alive.iter().any(|&p| is_alive(p)) {
            sleep(Duration::from_millis(50));
        }
    }
    for p in pids {
        if is_alive(*p) {
            eprintln!("router_bgp cleanup: process {p} survived SIGKILL");
        }
    }
}

/// Running (a zombie, never reaped by a container's init, counts as gone).
fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn process_name(pid: u32) -> Option<String> {
    if !is_alive(pid) {
        return None;
    }
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Fails (never skips) when not root or when a daemon or tool is missing.
fn require_root_and_tools(flavor: Flavor) {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1)) // effective UID
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "tests/router_bgp.rs must run as root: it creates network namespaces and veth pairs and \
         runs BIRD and FRR in them (effective UID is {uid}). Run it as root, e.g. \
         `sudo -E cargo test --test router_bgp`; it does not skip."
    );
    let mut missing = Vec::new();
    for (tool, package) in [("ip", "iproute2"), ("bird", "bird2"), ("birdc", "bird2")] {
        if Command::new(tool)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            missing.push(format!("{tool} ({package})"));
        }
    }
    if flavor == Flavor::Frr {
        for d in FRR_DAEMONS {
            let p = format!("/usr/lib/frr/{d}");
            if !Path::new(&p).exists() {
                missing.push(format!("{p} (frr)"));
            }
        }
        if !Path::new("/usr/bin/vtysh").exists() {
            missing.push("/usr/bin/vtysh (frr)".into());
        }
        if !Path::new(FRR_RELOAD).exists() {
            missing.push(format!("{FRR_RELOAD} (frr-pythontools)"));
        }
    }
    assert!(
        missing.is_empty(),
        "tests/router_bgp.rs needs {}; install them (apt-get install iproute2 bird2 frr \
         frr-pythontools); it does not skip",
        missing.join(", ")
    );
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd`, asserts success, returns its standard output.
fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn wait_until(timeout: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {} s waiting until {what}",
            timeout.as_secs()
        );
        sleep(Duration::from_millis(100));
    }
}

/// The routes of `birdc show route all`: a line starting with a prefix opens a route; its
/// indented attribute lines give `BGP.community: (65001,100) ...`, `BGP.med` and `BGP.as_path`.
fn parse_bird_routes(text: &str) -> Routes {
    let mut routes = Routes::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            current = line
                .split_whitespace()
                .next()
                .filter(|t| {
                    t.contains('/') && t.split('/').next().unwrap().parse::<Ipv4Addr>().is_ok()
                })
                .map(str::to_string);
            if let Some(p) = &current {
                let dup = routes.insert(
                    p.clone(),
                    Route {
                        communities: BTreeSet::new(),
                        med: None,
                        as_path: String::new(),
                    },
                );
                assert!(dup.is_none(), "B lists {p} twice:\n{text}");
            }
            continue;
        }
        let Some(route) = current.as_ref().and_then(|p| routes.get_mut(p)) else {
            continue;
        };
        let line = line.trim();
        if let Some(v) = line.strip_prefix("BGP.community:") {
            route.communities = v
                .split_whitespace()
                .map(|c| {
                    c.trim_matches(|ch| ch == '(' || ch == ')')
                        .replace(',', ":")
                })
                .collect();
        } else if let Some(v) = line.strip_prefix("BGP.med:") {
            route.med = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("BGP.as_path:") {
            route.as_path = v.trim().to_string();
        }
    }
    routes
}

/// `a.b.c.d/len` → (address, length).
fn parse_v4(prefix: &str) -> (u32, u8) {
    let (a, l) = prefix.split_once('/').expect("a prefix");
    (
        u32::from(a.parse::<Ipv4Addr>().expect("an IPv4 address")),
        l.parse().expect("a prefix length"),
    )
}

/// The minimal cover of aligned blocks: buddies merge until none is left.
fn aggregate(mut blocks: BTreeSet<(u32, u8)>) -> BTreeSet<(u32, u8)> {
    loop {
        let merge = blocks.iter().find_map(|&(a, l)| {
            let bit = 1u32.checked_shl(32 - u32::from(l))?;
            let buddy = (a ^ bit, l);
            blocks
                .contains(&buddy)
                .then_some(((a, l), buddy, (a & !bit, l - 1)))
        });
        match merge {
            Some((x, y, parent)) => {
                blocks.remove(&x);
                blocks.remove(&y);
                blocks.insert(parent);
            }
            None => return blocks,
        }
    }
}

fn route(community: &str, policy: &Policy) -> Route {
    Route {
        communities: BTreeSet::from([community.to_string()]),
        med: Some(policy.med),
        as_path: A_ASN.to_string(),
    }
}

/// What B must learn, from `cidrcast shards`: per class (active and draining shards; reserved
/// ones), the aggregates of its shards, each with its class's community and the policy's MED.
fn expected_routes(shards: &Value, policy: &Policy) -> Routes {
    let mut active = BTreeSet::new();
    let mut prefetched = BTreeSet::new();
    for s in shards.as_array().expect("a list of shards") {
        let prefix = parse_v4(s["prefix"].as_str().expect("prefix"));
        match s["state"].as_str().expect("state") {
            "active" | "draining" => active.insert(prefix),
            "reserved" => prefetched.insert(prefix),
            other => panic!("unexpected shard state {other:?} in {s}"),
        };
    }
    let mut routes = Routes::new();
    for (blocks, community) in [(active, policy.active), (prefetched, policy.prefetched)] {
        for (a, l) in aggregate(blocks) {
            routes.insert(
                format!("{}/{l}", Ipv4Addr::from(a)),
                route(community, policy),
            );
        }
    }
    routes
}

/// Routes from `(prefix, "active" | "prefetched")` pairs written in the test.
fn literal(list: &[(&str, &str)], policy: &Policy) -> Routes {
    list.iter()
        .map(|&(p, class)| {
            let c = match class {
                "active" => policy.active,
                "prefetched" => policy.prefetched,
                _ => unreachable!(),
            };
            (p.to_string(), route(c, policy))
        })
        .collect()
}

/// The expectation from the shard list (checked against what the test meant), then polls B.
fn expect(lab: &Lab, policy: &Policy, meant: &[(&str, &str)], step: &str) {
    let want = expected_routes(&lab.cidrcast(&["shards"]), policy);
    assert_eq!(
        want,
        literal(meant, policy),
        "{step}: the shard set is not what the test built"
    );
    lab.wait_routes(&want, step);
}

/// The whole scenario for one flavor of router A.
fn scenario(flavor: Flavor, policy: &Policy) {
    let started = Instant::now();
    let mut lab = Lab::new(flavor);
    lab.write_config(policy);
    lab.start_peer_b();
    lab.start_router_a();

    // Three shards: the first two are buddies (one /25), the third is left reserved.
    for want in ["10.40.0.0/26", "10.40.0.64/26", "10.40.0.128/26"] {
        let r = lab.cidrcast(&["shard", "claim", "--subdivision", SUBDIVISION]);
        assert_eq!(
            r["prefix"], want,
            "shard placement changed: the test expects claims in address order"
        );
        assert_eq!(r["state"], "reserved");
    }
    for p in ["10.40.0.0/26", "10.40.0.64/26"] {
        assert_eq!(lab.cidrcast(&["shard", "activate", p])["state"], "active");
    }
    let vm = lab.cidrcast(&["allocate", "--subdivision", SUBDIVISION, "--vm", "vm1"]);
    let leased = vm["shard"].as_str().expect("shard").to_string();
    let other = match leased.as_str() {
        "10.40.0.0/26" => "10.40.0.64/26",
        "10.40.0.64/26" => "10.40.0.0/26",
        s => panic!("vm1 got a lease in {s}, not in an active shard"),
    };

    // 1. Two active buddies aggregate into one /25; the reserved shard is prefetched.
    assert_eq!(lab.apply(), "written and reloaded");
    expect(
        &lab,
        policy,
        &[("10.40.0.0/25", "active"), ("10.40.0.128/26", "prefetched")],
        "1: first apply",
    );

    // 2. Activating the reserved shard changes its community only (no buddy to merge with).
    lab.cidrcast(&["shard", "activate", "10.40.0.128/26"]);
    assert_eq!(lab.apply(), "written and reloaded");
    expect(
        &lab,
        policy,
        &[("10.40.0.0/25", "active"), ("10.40.0.128/26", "active")],
        "2: reserved shard activated",
    );

    // 3. A draining shard with a lease stays announced; once its last lease goes it is
    //    released, withdrawn, and the /25 splits back into the remaining /26.
    assert_eq!(
        lab.cidrcast(&["shard", "drain", &leased])["state"],
        "draining"
    );
    assert_eq!(lab.apply(), "unchanged");
    expect(
        &lab,
        policy,
        &[("10.40.0.0/25", "active"), ("10.40.0.128/26", "active")],
        "3a: leased shard draining",
    );
    lab.cidrcast(&["release", "--vm", "vm1"]);
    assert_eq!(lab.apply(), "written and reloaded");
    expect(
        &lab,
        policy,
        &[(other, "active"), ("10.40.0.128/26", "active")],
        "3b: drained shard released, /25 split",
    );

    // 4. Draining a shard without leases releases it at once: B no longer has it.
    assert_eq!(
        lab.cidrcast(&["shard", "drain", "10.40.0.128/26"])["state"],
        "free"
    );
    assert_eq!(lab.apply(), "written and reloaded");
    expect(
        &lab,
        policy,
        &[(other, "active")],
        "4: empty shard drained and released",
    );
    eprintln!(
        "[{}] scenario done in {:.1} s",
        flavor.name(),
        started.elapsed().as_secs_f64()
    );
}

/// A canonical trace (`POST /v1/history`) of steady growth in the subdivision: `creates` VMs
/// created from two hours ago, one every `every` seconds, none deleted.
fn rising_history(creates: u32, every: f64) -> String {
    let t0 = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        - 7200.0;
    let mut csv = String::from("time_s,subdivision,event,vm_id,profile\n");
    for i in 0..creates {
        csv.push_str(&format!(
            "{},{SUBDIVISION},create,h{i},\n",
            t0 + f64::from(i) * every
        ));
    }
    csv
}

/// Whether prefix `outer` contains prefix `inner` (both `a.b.c.d/len`).
fn covers(outer: &str, inner: &str) -> bool {
    let ((o, ol), (i, il)) = (parse_v4(outer), parse_v4(inner));
    let mask = u32::MAX.checked_shl(32 - u32::from(ol)).unwrap_or(0);
    ol <= il && o & mask == i & mask
}

/// The shards of `GET /v1/shards` in `state`, as prefixes.
fn prefixes_in(shards: &Value, state: &str) -> Vec<String> {
    shards
        .as_array()
        .expect("a list of shards")
        .iter()
        .filter(|s| s["state"] == state)
        .map(|s| s["prefix"].as_str().expect("prefix").to_string())
        .collect()
}

/// `cidrcast serve` deploys router A's configuration by itself: what a plan reserves is announced
/// as prefetched, a released shard is withdrawn, and the shard an allocation activates turns
/// active, each time without `router apply`. The expectation comes from `GET /v1/shards`.
#[test]
fn the_daemon_announces_what_its_plan_reserves() {
    let started = Instant::now();
    let policy = &DEFAULT_POLICY;
    let mut lab = Lab::new(Flavor::Bird);
    lab.start_peer_b();
    lab.start_router_a();
    // The daemon uses the lab's directory: its config and store are where the CLI would look.
    // Declared after the lab, it is killed before the lab is cleaned up.
    let config = format!(
        "[server]\n# Plans run only when the test posts one.\nreconcile_interval_s = 3600\n\
         lead_time_s = 60\n\n{}",
        lab.config_toml(policy)
    );
    let serve = daemon::Daemon::start(lab.dir.path(), &config);
    let c = serve.client(None);

    // 0. At startup the daemon deploys the configuration (no shard yet) over the placeholder.
    let deployed = lab.config_path();
    wait_until(
        CONVERGE,
        "the daemon deploys router A's configuration",
        || fs::read_to_string(&deployed).is_ok_and(|t| t.contains("protocol bgp")),
    );
    assert!(
        c.expect("GET", "/v1/shards", None, 200)
            .as_array()
            .expect("a list")
            .is_empty(),
        "no shard before the plan"
    );

    // 1. Steady growth in the history: the plan reserves shards ahead, announced as prefetched.
    let (s, v) = c
        .raw(
            "POST",
            "/v1/history",
            Some(("text/csv", rising_history(240, 30.0))),
        )
        .expect("POST /v1/history");
    assert_eq!(s, 200, "{v}");
    let plan = c.expect("POST", "/v1/plan", None, 200);
    assert_eq!(plan["applied"], true, "{plan}");
    let shards = c.expect("GET", "/v1/shards", None, 200);
    let reserved = prefixes_in(&shards, "reserved");
    assert!(
        !reserved.is_empty() && reserved.len() == shards.as_array().expect("a list").len(),
        "the plan should only reserve shards ahead: {plan}\n{shards}"
    );
    let want = expected_routes(&shards, policy);
    assert!(
        want.values()
            .any(|r| r.communities.contains(policy.prefetched)),
        "no prefetched prefix expected: {shards}"
    );
    eprintln!(
        "[daemon] the plan reserved {} shards, announced as {:?}",
        reserved.len(),
        want.keys().collect::<Vec<_>>()
    );
    lab.wait_routes(&want, "1: plan applied, reserved shards prefetched");

    // 2. Releasing a reserved shard withdraws it: no route of B covers it any more.
    let released = reserved.last().expect("a reserved shard").clone();
    let (s, v) = c.req("DELETE", &format!("/v1/shards/{released}"), None);
    assert_eq!(s, 204, "DELETE /v1/shards/{released}: {v}");
    let shards = c.expect("GET", "/v1/shards", None, 200);
    assert!(
        !prefixes_in(&shards, "reserved").contains(&released),
        "{released} still listed: {shards}"
    );
    let want = expected_routes(&shards, policy);
    assert!(
        !want.keys().any(|p| covers(p, &released)),
        "{released} still expected: {want:#?}"
    );
    lab.wait_routes(&want, &format!("2: reserved shard {released} released"));

    // 3. An allocation activates the shard it lands in: announced with the active community.
    let a = c.expect(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": SUBDIVISION, "vm_id": "vm-1"})),
        201,
    );
    let shard = a["shard"].as_str().expect("shard").to_string();
    let shards = c.expect("GET", "/v1/shards", None, 200);
    assert_eq!(
        prefixes_in(&shards, "active"),
        std::slice::from_ref(&shard),
        "vm-1's shard is the only active one: {shards}"
    );
    let want = expected_routes(&shards, policy);
    // The only active shard has no active buddy: it is announced as it is.
    assert_eq!(
        want.get(&shard),
        Some(&route(policy.active, policy)),
        "{want:#?}"
    );
    lab.wait_routes(&want, &format!("3: vm-1 activated {shard}"));

    eprintln!(
        "[daemon] scenario done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(serve);
}

#[test]
fn bird_router_announces_the_plan() {
    scenario(Flavor::Bird, &DEFAULT_POLICY);
}

#[test]
fn frr_router_announces_the_plan() {
    scenario(Flavor::Frr, &CUSTOM_POLICY);
}

#[test]
fn bird_route_parser_reads_prefixes_communities_and_med() {
    let text = "BIRD 2.0.12 ready.\nTable master4:\n\
        10.40.0.128/26       unicast [peer_a 18:25:03.552] * (100) [AS65001i]\n\
        \tvia 10.255.0.1 on vb1\n\tType: BGP univ\n\tBGP.origin: IGP\n\tBGP.as_path: 65001\n\
        \tBGP.next_hop: 10.255.0.1\n\tBGP.med: 7\n\tBGP.local_pref: 100\n\
        \tBGP.community: (65001,200) (65001,5)\n\
        10.40.0.0/25         unicast [peer_a 18:25:03.552] * (100) [AS65001i]\n\
        \tvia 10.255.0.1 on vb1\n\tBGP.as_path: 65001\n";
    let r = parse_bird_routes(text);
    assert_eq!(r.len(), 2);
    assert_eq!(
        r["10.40.0.128/26"].communities,
        BTreeSet::from(["65001:200".to_string(), "65001:5".to_string()])
    );
    assert_eq!(r["10.40.0.128/26"].med, Some(7));
    assert!(r["10.40.0.0/25"].communities.is_empty());
    assert_eq!(r["10.40.0.0/25"].med, None);
    let blocks = [
        "10.40.0.0/26",
        "10.40.0.64/26",
        "10.40.0.128/26",
        "10.40.1.0/26",
    ]
    .map(parse_v4)
    .into_iter()
    .collect();
    let agg: Vec<String> = aggregate(blocks)
        .into_iter()
        .map(|(a, l)| format!("{}/{l}", Ipv4Addr::from(a)))
        .collect();
    assert_eq!(agg, ["10.40.0.0/25", "10.40.0.128/26", "10.40.1.0/26"]);
}
