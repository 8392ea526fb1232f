//! Real etcd processes for tests (feature `etcd`): the store's own tests and the multi-daemon
//! tests start members on free loopback ports, each with a data directory of its own, and kill
//! them by PID when dropped (also when a test panics). Not for production use.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The transaction limits cidrcast needs (a group commit is one transaction).
pub const RAISED_LIMITS: [&str; 4] = ["--max-txn-ops", "131072", "--max-request-bytes", "33554432"];

/// `n` distinct free loopback ports (all bound at once, so they differ).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

/// One etcd member on loopback; killed (by PID) when dropped.
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// Holds `data/` and `etcd.log`.
    pub dir: PathBuf,
    /// `--initial-cluster`, e.g. `m1=http://127.0.0.1:P1,m2=...`.
    pub initial_cluster: String,
    /// With [`RAISED_LIMITS`] (else etcd's defaults: 128 operations, 1.5 MiB a transaction).
    pub limits: bool,
    child: Option<Child>,
}

impl Member {
    /// A member that is not started yet.
    pub fn new(
        name: &str,
        client_port: u16,
        peer_port: u16,
        dir: PathBuf,
        initial_cluster: String,
        limits: bool,
    ) -> Member {
        Member {
            name: name.to_string(),
            client_port,
            peer_port,
            dir,
            initial_cluster,
            limits,
            child: None,
        }
    }

    /// A one-member cluster of its own.
    pub fn single(client_port: u16, peer_port: u16, dir: PathBuf, limits: bool) -> Member {
        let cluster = format!("cidrcast-test=http://127.0.0.1:{peer_port}");
        Member::new(
            "cidrcast-test",
            client_port,
            peer_port,
            dir,
            cluster,
            limits,
        )
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (with the same name, data directory and ports every time). Panics,
    /// naming the Debian packages, when `etcd` is not installed.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let client = self.endpoint();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("etcd log file");
        let mut command = Command::new("etcd");
        command
            .args(["--name", &self.name])
            .args(["--data-dir", &self.dir.join("data").display().to_string()])
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "cidrcast-test"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        if self.limits {
            command.args(RAISED_LIMITS);
        }
        self.child = Some(match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "`etcd` is not installed (not on PATH): these tests need a real etcd 3.4 or \
                 newer; on Debian/Ubuntu install the packages etcd-server etcd-client"
            ),
            Err(e) => panic!("cannot start etcd: {e}"),
        });
    }

    /// Whether the process exited (then its handle is gone).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(_))) => {
                self.child = None;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// `GET /health` answers `"health":"true"` once the member has a leader.
    pub fn healthy(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.client_port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        if stream
            .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer.contains("\"health\":\"true\"")
    }

    /// Waits until it is healthy; its log when it exited or stayed unhealthy `within`.
    pub fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if self.exited() {
                return Err(self.log());
            }
            if self.healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not healthy within {within:?}:\n{}",
                    self.name,
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`STOP`, `CONT`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("running");
        let status = Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGKILL by PID, and wait for it; the data directory stays.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused member still dies of SIGKILL; resume it anyway, harmlessly.
            let _ = Command::new("kill")
                .args(["-CONT".to_string(), child.id().to_string()])
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
