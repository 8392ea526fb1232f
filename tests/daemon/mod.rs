//! A `cidrcast serve` process for integration tests, and a small HTTP client for it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_cidrcast");

/// `cidrcast --config DIR/cidrcast.toml --data DIR/data serve --listen 127.0.0.1:0`, with no
/// configuration from the environment.
pub fn serve_command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.arg("--config")
        .arg(dir.join("cidrcast.toml"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("CIDRCAST_CONFIG")
        .env_remove("CIDRCAST_DATA")
        .env("RUST_LOG", "warn");
    c
}

/// A running daemon; killed (SIGKILL) when dropped.
pub struct Daemon {
    pub child: Option<Child>,
    pub base: String,
    pub dir: PathBuf,
    stdout: mpsc::Receiver<String>,
    /// The PEM certificate that clients trust, when the daemon serves HTTPS.
    pub root_pem: Option<String>,
}

impl Daemon {
    /// Starts `cidrcast serve` with `config` (TOML, written to DIR/cidrcast.toml) and the store
    /// in DIR/data, on a free loopback port; waits until it listens.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        std::fs::write(dir.join("cidrcast.toml"), config).expect("write the config");
        Self::start_existing(dir)
    }

    /// Like [`Daemon::start`] for a config that serves HTTPS: waits for readiness, and makes
    /// [`Daemon::client`]s, over TLS trusting exactly `root_pem` (a PEM certificate).
    pub fn start_tls(dir: &Path, config: &str, root_pem: &str) -> Daemon {
        std::fs::write(dir.join("cidrcast.toml"), config).expect("write the config");
        Self::launch(dir, Some(root_pem.to_string()))
    }

    /// Starts it again on the same directory (after a kill).
    pub fn start_existing(dir: &Path) -> Daemon {
        Self::launch(dir, None)
    }

    fn launch(dir: &Path, root_pem: Option<String>) -> Daemon {
        let mut child = serve_command(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cidrcast serve");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("cidrcast serve printed its address");
        let base = line
            .split("listening on ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        let d = Daemon {
            child: Some(child),
            base,
            dir: dir.to_path_buf(),
            stdout: rx,
            root_pem,
        };
        d.wait_ready();
        d
    }

    /// Waits until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let c = self.client(None);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = c.try_req("GET", "/readyz", None) {
                return;
            }
            assert!(Instant::now() < deadline, "the daemon never became ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        match &self.root_pem {
            None => Client::new(&self.base, token),
            Some(pem) => Client::with_root(&self.base, token, pem),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status and the lines it printed after the first.
    pub fn terminate(&mut self) -> (ExitStatus, Vec<String>) {
        let mut c = self.child.take().expect("running");
        let status = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -TERM {}", c.id()))
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = c.try_wait().expect("wait") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("the daemon did not exit within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut lines = Vec::new();
        while let Ok(l) = self.stdout.recv_timeout(Duration::from_millis(500)) {
            lines.push(l);
        }
        (status, lines)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// JSON over HTTP with an optional bearer token. Statuses are returned, not errors.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(base: &str, token: Option<&str>) -> Client {
        Self::with_tls(base, token, ureq::tls::TlsConfig::default())
    }

    /// A client whose only trusted root is `root_pem` (a PEM certificate), for HTTPS.
    pub fn with_root(base: &str, token: Option<&str>, root_pem: &str) -> Client {
        let cert = ureq::tls::Certificate::from_pem(root_pem.as_bytes()).expect("a PEM cert");
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
            .build();
        Self::with_tls(base, token, tls)
    }

    /// A client with this TLS configuration (used only for `https://` bases).
    pub fn with_tls(base: &str, token: Option<&str>, tls: ureq::tls::TlsConfig) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .tls_config(tls)
            .build()
            .into();
        Client {
            agent,
            base: base.to_string(),
            token: token.map(str::to_string),
        }
    }

    /// `METHOD path` with an optional JSON body; the status and the body (JSON, or a string).
    pub fn req(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_req(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub fn try_req(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), ureq::Error> {
        let raw = body.map(|b| ("application/json", b.to_string()));
        self.raw(method, path, raw)
    }

    /// A request with a body of the given content type.
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> Result<(u16, Value), ureq::Error> {
        let url = format!("{}{path}", self.base);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        macro_rules! send_without {
            ($b:expr) => {{
                let mut b = $b;
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                b.call()?
            }};
        }
        macro_rules! send_with {
            ($b:expr) => {{
                let mut b = $b;
                if let Some(a) = &auth {
                    b = b.header("Authorization", a);
                }
                match body {
                    Some((ct, text)) => b.header("Content-Type", ct).send(text)?,
                    None => b.send_empty()?,
                }
            }};
        }
        let mut resp = match method {
            "GET" => send_without!(self.agent.get(&url)),
            "DELETE" => send_without!(self.agent.delete(&url)),
            "POST" => send_with!(self.agent.post(&url)),
            "PUT" => send_with!(self.agent.put(&url)),
            other => panic!("method {other}"),
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 << 20)
            .read_to_string()?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Asserts the status and returns the body.
    pub fn expect(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (s, v) = self.req(method, path, body);
        assert_eq!(s, status, "{method} {path}: {v}");
        v
    }

    /// Asserts an error status and that the body is `{code, message}` with this code.
    pub fn expect_error(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        status: u16,
        code: &str,
    ) -> String {
        let v = self.expect(method, path, body, status);
        assert_eq!(v["code"], code, "{method} {path}: {v}");
        let message = v["message"].as_str().expect("a message").to_string();
        assert!(!message.is_empty());
        message
    }
}

/// The allocations a daemon lists (`GET /v1/allocations`): vm → address, asserting that the
/// total matches and that no address and no VM is listed twice.
pub fn listed_allocations(c: &Client) -> std::collections::BTreeMap<String, String> {
    let list = c.expect("GET", "/v1/allocations?limit=100000", None, 200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(list["total"].as_u64().expect("total") as usize, items.len());
    let mut present = std::collections::BTreeMap::new();
    let mut addresses = std::collections::BTreeSet::new();
    for l in items {
        let vm = l["vm_id"].as_str().expect("vm_id").to_string();
        let addr = l["address"].as_str().expect("address").to_string();
        assert!(
            addresses.insert(addr.clone()),
            "address {addr} leased twice"
        );
        assert!(
            present.insert(vm.clone(), addr).is_none(),
            "vm {vm} listed twice"
        );
    }
    present
}
