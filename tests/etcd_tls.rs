//! cidrcast on an etcd that requires TLS with client certificates and password authentication,
//! as a production cluster would: a CA, server and client certificates made here (rcgen), a real
//! etcd started with `--client-cert-auth` and `auth enable`, users with and without permission
//! on cidrcast's key prefix. The CLI and the daemon (whose leader election has a client of its
//! own) work with the right settings; every wrong one (password, permission, missing client
//! certificate, untrusted server, missing file) is a clear error that writes nothing.
#![cfg(feature = "etcd")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cidrcast_store::etcd_testing::{free_ports, RAISED_LIMITS};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::json;

mod common;
mod daemon;

use common::{assert_failed, run_in};
use daemon::Daemon;

const PREFIX: &str = "/tls/";

/// A CA: its certificate (PEM) and what signs with it.
fn ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate signed by `issuer` for `common_name`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// The certificates, in `dir`: `ca.pem`, `server.{pem,key}`, `client.{pem,key}` (CN `cidrcast`),
/// and `other-ca.pem`, a CA that signed nothing here.
fn certificates(dir: &Path) {
    let (ca_pem, issuer) = ca("cidrcast test CA");
    let (server, server_key) = leaf(
        &issuer,
        "etcd",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client, client_key) = leaf(
        &issuer,
        "cidrcast",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let (other_ca, _) = ca("another CA");
    for (name, pem) in [
        ("ca.pem", ca_pem),
        ("server.pem", server),
        ("server.key", server_key),
        ("client.pem", client),
        ("client.key", client_key),
        ("other-ca.pem", other_ca),
    ] {
        std::fs::write(dir.join(name), pem).unwrap();
    }
}

/// etcd requiring TLS client certificates, killed by PID when dropped.
struct SecureEtcd {
    child: Child,
    endpoint: String,
    dir: PathBuf,
}

impl Drop for SecureEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SecureEtcd {
    fn start(dir: &Path) -> SecureEtcd {
        let ports = free_ports(2);
        let endpoint = format!("https://127.0.0.1:{}", ports[0]);
        let peer = format!("http://127.0.0.1:{}", ports[1]);
        let path = |f: &str| dir.join(f).display().to_string();
        let log = std::fs::File::create(dir.join("etcd.log")).unwrap();
        let child = Command::new("etcd")
            .args(["--name", "tls-test", "--data-dir", &path("data")])
            .args(["--listen-client-urls", &endpoint])
            .args(["--advertise-client-urls", &endpoint])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("tls-test={peer}")])
            .args(["--cert-file", &path("server.pem")])
            .args(["--key-file", &path("server.key")])
            .args(["--trusted-ca-file", &path("ca.pem")])
            .arg("--client-cert-auth")
            .args(RAISED_LIMITS)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start etcd (Debian: etcd-server etcd-client)");
        let etcd = SecureEtcd {
            child,
            endpoint,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !etcd.ctl(None, &["endpoint", "health"]).0 {
            assert!(
                Instant::now() < deadline,
                "etcd did not become healthy: {}",
                std::fs::read_to_string(dir.join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        etcd
    }

    /// `etcdctl` over TLS with the client certificate (and `user`, `name:password`): whether it
    /// succeeded, and its output.
    fn ctl(&self, user: Option<&str>, args: &[&str]) -> (bool, String) {
        let path = |f: &str| self.dir.join(f).display().to_string();
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.endpoint])
            .args(["--cacert", &path("ca.pem")])
            .args(["--cert", &path("client.pem")])
            .args(["--key", &path("client.key")])
            .args(["--dial-timeout", "2s"]);
        if let Some(u) = user {
            c.args(["--user", u]);
        }
        let out = c
            .args(args)
            .output()
            .expect("run etcdctl (Debian: etcd-client)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn ctl_ok(&self, user: Option<&str>, args: &[&str]) -> String {
        let (ok, text) = self.ctl(user, args);
        assert!(ok, "etcdctl {args:?}: {text}");
        text
    }

    /// The keys under cidrcast's prefix (read as root).
    fn keys(&self) -> Vec<String> {
        self.ctl_ok(
            Some("root:root-pw"),
            &["get", "--prefix", "--keys-only", PREFIX],
        )
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
    }
}

/// A config on the secure etcd with these `[store]` credential lines.
fn config(endpoint: &str, store_lines: &str) -> String {
    format!(
        r#"
[store]
kind = "etcd"
endpoints = ["{endpoint}"]
prefix = "{PREFIX}"
connect_timeout_s = 2
request_timeout_s = 2
{store_lines}

[server]
reconcile_interval_s = 3600
leader_ttl_s = 3

[[pool]]
name = "v4"
prefix = "10.88.0.0/16"
shard_prefix_len = 26

[[subdivision]]
name = "zone-a"
"#
    )
}

#[test]
fn tls_with_client_certificates_and_passwords_works_and_every_wrong_setting_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    certificates(d);
    let etcd = SecureEtcd::start(d);
    // Users: root (to enable authentication), cidrcast (read-write on the prefix), intruder
    // (read-write elsewhere only).
    for args in [
        vec!["user", "add", "root", "--new-user-password", "root-pw"],
        vec!["user", "add", "cidrcast", "--new-user-password", "good-pw"],
        vec!["role", "add", "cidrcast-rw"],
        vec![
            "role",
            "grant-permission",
            "cidrcast-rw",
            "--prefix=true",
            "readwrite",
            PREFIX,
        ],
        vec!["user", "grant-role", "cidrcast", "cidrcast-rw"],
        vec![
            "user",
            "add",
            "intruder",
            "--new-user-password",
            "intruder-pw",
        ],
        vec!["role", "add", "elsewhere"],
        vec![
            "role",
            "grant-permission",
            "elsewhere",
            "--prefix=true",
            "readwrite",
            "/elsewhere/",
        ],
        vec!["user", "grant-role", "intruder", "elsewhere"],
        vec!["auth", "enable"],
    ] {
        etcd.ctl_ok(None, &args);
    }
    std::fs::write(d.join("good.pw"), "good-pw\n").unwrap();
    std::fs::write(d.join("bad.pw"), "wrong-pw\n").unwrap();
    std::fs::write(d.join("intruder.pw"), "intruder-pw\n").unwrap();
    let file = |f: &str| d.join(f).display().to_string();
    let tls = |ca: &str| {
        format!(
            "tls_ca = {:?}\ntls_cert = {:?}\ntls_key = {:?}\n",
            file(ca),
            file("client.pem"),
            file("client.key")
        )
    };
    let user =
        |name: &str, pw: &str| format!("username = {name:?}\npassword_file = {:?}\n", file(pw));

    // The right settings: the CLI allocates; a second run sees it.
    let good = config(
        &etcd.endpoint,
        &(tls("ca.pem") + &user("cidrcast", "good.pw")),
    );
    std::fs::write(d.join("good.toml"), &good).unwrap();
    let work = tempfile::tempdir().unwrap();
    let alloc = [
        "--config",
        "good.toml",
        "allocate",
        "--subdivision",
        "zone-a",
        "--vm",
        "vm-1",
    ];
    let r = run_in(Some(&work.path().join("data")), d, &alloc);
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    let r = run_in(
        Some(&work.path().join("data")),
        d,
        &["--config", "good.toml", "--output", "json", "status"],
    );
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let status: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(status["leases"], json!(1), "{status}");
    let keys = etcd.keys();
    assert!(
        keys.iter().any(|k| k == "/tls/leases/vm-1"),
        "the lease is in etcd: {keys:?}"
    );

    // Every wrong setting fails cleanly, naming the cause, and writes nothing.
    let https = etcd.endpoint.clone();
    let http = https.replacen("https://", "http://", 1);
    let cases: [(&str, &str, String, &[&str]); 6] = [
        (
            "wrong password",
            &https,
            tls("ca.pem") + &user("cidrcast", "bad.pw"),
            &["authentication failed"],
        ),
        (
            "no permission on the prefix",
            &https,
            tls("ca.pem") + &user("intruder", "intruder.pw"),
            &["permission denied"],
        ),
        (
            "server certificate from an untrusted CA",
            &https,
            tls("other-ca.pem") + &user("cidrcast", "good.pw"),
            &[
                "cannot open the etcd store",
                "invalid peer certificate: UnknownIssuer",
            ],
        ),
        (
            "no client certificate",
            &https,
            format!("tls_ca = {:?}\n", file("ca.pem")) + &user("cidrcast", "good.pw"),
            &["cannot open the etcd store", "set tls_cert and tls_key"],
        ),
        (
            "plain text to a TLS port",
            &http,
            user("cidrcast", "good.pw"),
            &["cannot open the etcd store", "set tls_ca"],
        ),
        (
            "missing password file",
            &https,
            tls("ca.pem") + &user("cidrcast", "missing.pw"),
            &["password_file", "missing.pw"],
        ),
    ];
    for (what, endpoint, lines, expected) in cases {
        let before = etcd.keys();
        std::fs::write(d.join("case.toml"), config(endpoint, &lines)).unwrap();
        let args = [
            "--config",
            "case.toml",
            "allocate",
            "--subdivision",
            "zone-a",
            "--vm",
            "vm-x",
        ];
        let start = Instant::now();
        let r = run_in(Some(&work.path().join("data")), d, &args);
        let msg = assert_failed(&args, &r);
        for e in expected {
            assert!(msg.contains(e), "{what}: `{e}` not in {msg}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{what}: took {:?}",
            start.elapsed()
        );
        assert_eq!(etcd.keys(), before, "{what}: etcd changed");
        eprintln!("{what}: {}", msg.trim());
    }

    // The daemon (store and leader election, each with a client of its own) on the same settings.
    let ddir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(ddir.path(), &good);
    let c = daemon.client(None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !c
        .expect("GET", "/metrics", None, 200)
        .as_str()
        .is_some_and(|m| m.lines().any(|l| l.trim() == "cidrcast_leader 1"))
    {
        assert!(Instant::now() < deadline, "the daemon never led");
        std::thread::sleep(Duration::from_millis(200));
    }
    let v = c.expect(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "vm-2"})),
        201,
    );
    assert!(v["address"].as_str().unwrap().starts_with("10.88."), "{v}");
    let (status, lines) = daemon.terminate();
    assert!(status.success(), "{lines:?}");
    assert!(etcd.keys().iter().any(|k| k == "/tls/leases/vm-2"));
}
