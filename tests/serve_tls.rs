//! `cidrcast serve` over HTTPS: a self-signed certificate made here (rcgen), the daemon serving
//! the API with it, a client that trusts exactly that certificate, and the refusals: plain HTTP on
//! the TLS port, a client that does not trust the certificate, and broken TLS settings.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

mod daemon;

use daemon::{Client, Daemon};

/// A self-signed certificate for `localhost` and `127.0.0.1`: (certificate PEM, key PEM).
fn self_signed() -> (String, String) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("generate a self-signed certificate");
    (cert.pem(), signing_key.serialize_pem())
}

/// The config: one pool and one subdivision, with these `[server]` TLS lines.
fn config(tls_lines: &str) -> String {
    format!(
        r#"
[server]
reconcile_interval_s = 3600
lead_time_s = 60
{tls_lines}

[[pool]]
name = "p4"
prefix = "10.0.0.0/16"
shard_prefix_len = 26

[[subdivision]]
name = "zone-a"
pools = ["p4"]
"#
    )
}

/// `tls_cert = "..."` / `tls_key = "..."` lines (TOML strings) for these paths.
fn tls_line(key: &str, path: &Path) -> String {
    format!("{key} = {}\n", toml_string(path))
}

fn toml_string(path: &Path) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(path.to_str().expect("a UTF-8 path")).unwrap()
}

/// Writes the certificate and key into `dir`; returns the config serving HTTPS with them.
fn tls_config(dir: &Path, cert_pem: &str, key_pem: &str) -> String {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    config(&(tls_line("tls_cert", &cert) + &tls_line("tls_key", &key)))
}

fn in_10_0(address: &str) -> bool {
    let ip: Ipv4Addr = address.parse().expect("an IPv4 address");
    let [a, b, _, _] = ip.octets();
    (a, b) == (10, 0)
}

#[test]
fn https_with_a_trusted_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let d = Daemon::start_tls(dir.path(), &tls_config(dir.path(), &cert, &key), &cert);
    assert!(d.base.starts_with("https://127.0.0.1:"), "{}", d.base);

    let c = d.client(None);
    let a = c.expect(
        "POST",
        "/v1/allocations",
        Some(json!({"subdivision": "zone-a", "vm_id": "vm-1"})),
        201,
    );
    let address = a["address"].as_str().expect("an address").to_string();
    assert!(in_10_0(&address), "{a}");
    assert_eq!(a["pool"], "p4", "{a}");
    let got = c.expect("GET", "/v1/allocations/vm-1", None, 200);
    assert_eq!(got["address"], address.as_str(), "{got}");

    // A second client built from the PEM alone (nothing shared with the daemon's harness).
    let other = Client::with_root(&d.base, None, &cert);
    let got = other.expect("GET", "/v1/allocations/vm-1", None, 200);
    assert_eq!(got["address"], address.as_str(), "{got}");
}

/// The client refused the server's certificate during the handshake (rustls reports it inside an
/// I/O error: `InvalidCertificate(UnknownIssuer | BadSignature | ...)`).
fn assert_bad_certificate(e: &ureq::Error) {
    let text = format!("{e:?}");
    assert!(
        text.contains("InvalidCertificate"),
        "not a certificate refusal: {text}"
    );
}

#[test]
fn plain_http_and_untrusting_clients_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let d = Daemon::start_tls(dir.path(), &tls_config(dir.path(), &cert, &key), &cert);
    let hostport = d.base.strip_prefix("https://").expect("an https:// URL");

    // Plain HTTP through a client: no HTTP response.
    let plain = Client::new(&format!("http://{hostport}"), None);
    let r = plain.try_req("GET", "/readyz", None);
    assert!(r.is_err(), "plain HTTP on the TLS port answered: {r:?}");

    // Plain HTTP by hand: whatever comes back (a TLS alert, or nothing) is not an HTTP response.
    let mut s = TcpStream::connect(hostport).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        !got.starts_with(b"HTTP/"),
        "plain HTTP on the TLS port got an HTTP response: {:?}",
        String::from_utf8_lossy(&got)
    );

    // A client trusting another self-signed certificate: the handshake fails.
    let (stranger, _) = self_signed();
    let untrusting = Client::with_root(&d.base, None, &stranger);
    match untrusting.try_req("GET", "/readyz", None) {
        Err(e) => assert_bad_certificate(&e),
        Ok(r) => panic!("a client not trusting the certificate got {r:?}"),
    }
    // A client with the public web roots only: the same.
    let public = Client::new(&d.base, None);
    match public.try_req("GET", "/readyz", None) {
        Err(e) => assert_bad_certificate(&e),
        Ok(r) => panic!("a client with the public roots got {r:?}"),
    }

    // The daemon still serves trusting clients after the refused connections.
    d.client(None).expect("GET", "/readyz", None, 200);
}

/// Runs `cidrcast --config DIR/cidrcast.toml serve` on a free port; it must exit within 60 s.
fn run_serve(dir: &Path, config: &str) -> Output {
    let path = dir.join("cidrcast.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = daemon::serve_command(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start cidrcast serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "cidrcast serve kept running: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn broken_tls_settings_fail_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();

    // A certificate without its key: refused by the config validation.
    let out = run_serve(dir.path(), &config(&tls_line("tls_cert", &cert_path)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}: {err}", out.status);
    assert!(err.contains("tls_key"), "{err}");

    // A key without its certificate: the same.
    let out = run_serve(dir.path(), &config(&tls_line("tls_key", &key_path)));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}: {err}", out.status);
    assert!(err.contains("tls_cert"), "{err}");

    // A certificate file that does not exist: the error names it.
    let missing = dir.path().join("no-such-cert.pem");
    let lines = tls_line("tls_cert", &missing) + &tls_line("tls_key", &key_path);
    let out = run_serve(dir.path(), &config(&lines));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");

    // A key file that does not exist: the same.
    let missing = dir.path().join("no-such-key.pem");
    let lines = tls_line("tls_cert", &cert_path) + &tls_line("tls_key", &missing);
    let out = run_serve(dir.path(), &config(&lines));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");

    // A certificate file that holds no certificate: the error names it too.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let lines = tls_line("tls_cert", &garbage) + &tls_line("tls_key", &key_path);
    let out = run_serve(dir.path(), &config(&lines));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit status {:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(garbage.to_str().unwrap()), "{err}");
}
