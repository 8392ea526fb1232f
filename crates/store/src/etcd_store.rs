//! [`EtcdStore`]: the records in an etcd v3 cluster (cargo feature `etcd`), shared by several
//! cidrcast daemons; every commit is one etcd transaction guarded by compare-and-swap.
//!
//! # Layout (schema version 1)
//! Every key starts with the configured prefix `{prefix}` (e.g. `/cidrcast/`; it is used as is,
//! so end it with `/`). Values are the records as `serde_json`, like [`crate::RedbStore`]'s.
//!
//! | key                                   | value                                               |
//! |---------------------------------------|-----------------------------------------------------|
//! | `{prefix}meta/schema`                 | schema version, decimal (`1`)                       |
//! | `{prefix}meta/events_seq`             | last event seq handed out, decimal (`0`: none)      |
//! | `{prefix}meta/transitions_seq`        | last transition seq handed out, decimal             |
//! | `{prefix}pools/{name}`                | `PoolSpec` json                                     |
//! | `{prefix}subdivisions/{name}`         | `SubdivisionSpec` json                              |
//! | `{prefix}homes/{subdivision}/{pool}`  | `HomeRecord` json                                   |
//! | `{prefix}shards/{pool}/{shard}`       | `ShardRecord` json (`{shard}`: the shard's prefix)  |
//! | `{prefix}leases/{vm_id}`              | `LeaseRecord` json                                  |
//! | `{prefix}addresses/{pool}/{address}`  | the vm_id leasing the address (index of `leases`)   |
//! | `{prefix}cooling/{pool}/{address}`    | `CoolingRecord` json                                |
//! | `{prefix}events/{seq:020}`            | `VmEvent` json (seq from 1, 20 digits)              |
//! | `{prefix}transitions/{seq:020}`       | `Transition` json (seq from 1, 20 digits)           |
//! | `{prefix}external_events/{name}`      | `ExternalEventSpec` json                            |
//! | `{prefix}profiles/{name}`             | `Profile` json                                      |
//! | `{prefix}routers/{name}`              | `RouterSpec` json                                   |
//! | `{prefix}placement/{pool}`            | empty; its revision is bumped by every commit that places, grows, shrinks or removes a home block of the pool, or places a borrowed shard |
//! | `{prefix}placement/{pool}/{subdivision}` | empty; bumped by every commit that places a shard inside the subdivision's home block, or changes the space of that block (a descendant's home block or borrowed shard) |
//!
//! Key components are escaped so that no component can contain `/`: every byte outside
//! `A-Z a-z 0-9 . _ - ~ :` is written `%XX` (upper-case hex). So a vm id `a/b` is
//! `leases/a%2Fb`, a shard prefix `10.0.0.64/26` is `shards/v4/10.0.0.64%2F26`, a subdivision
//! `rack 1` is `homes/rack%201/v4`. Addresses (in `addresses/` and `cooling/`) are written fixed
//! width so that the keys of a pool sort in address order: IPv4 as four 3-digit groups
//! (`010.000.000.009`), IPv6 as eight 4-digit hex groups
//! (`fd00:0000:0000:0000:0000:0000:0000:0009`).
//!
//! The first [`EtcdStore::connect`] to an empty prefix writes the three `meta` keys in one
//! transaction; a prefix holding keys but no `meta/schema` is refused
//! ([`StoreError::NotAStore`]), one with another schema version too
//! ([`StoreError::SchemaMismatch`]).
//!
//! # Compare-and-swap
//! The store remembers, for every key it loaded ([`Store::load`], the catalog reads
//! [`Store::external_events`], [`Store::profiles`], [`Store::routers`]) or wrote, the
//! `mod_revision` it last saw (a key it does not remember is believed absent). A commit is one
//! transaction that applies only if:
//! * every key it puts or deletes still has the remembered `mod_revision` (or still does not
//!   exist, if believed absent);
//! * for every lease put: the address index key `addresses/{pool}/{address}` is as remembered
//!   (absent, or held by the same VM; the commit writes it, and a lease delete deletes it), the
//!   address's `cooling/` key is as remembered (a stale writer cannot hand out an address that
//!   cools down elsewhere), and the lease's shard, if this store knows it, is as remembered;
//! * placement, so that two writers never place overlapping shards or home blocks from stale
//!   views: the placement keys below are as remembered, and the commit bumps them.
//!   * A home block put or deleted (placed, grown, shrunk, removed), or a new borrowed shard
//!     (outside its subdivision's home block): `placement/{pool}`, and
//!     `placement/{pool}/{ancestor}` for every ancestor of the subdivision (the space comes from
//!     the parent's block, or the pool).
//!   * A new shard inside its subdivision's home block: `placement/{pool}/{subdivision}`, and
//!     the home block's key `homes/{subdivision}/{pool}` is as remembered. So daemons claiming
//!     shards in different subdivisions' home blocks at once do not conflict.
//!   * A put of a shard the store knows (a state or affinity change) takes no space, and a shard
//!     delete frees space (no view believes space free that is taken because of it): the shard's
//!     own key guards them;
//! * for every shard it deletes: no address index key exists inside the shard other than those
//!   this store knows (a lease placed in the shard by another writer stops the release);
//! * if it appends events (transitions): `meta/events_seq` (`meta/transitions_seq`) is as
//!   remembered; the entries get the next dense sequence numbers and the counter is rewritten.
//!
//! When only the sequence counters had moved (another writer appended meanwhile, and one
//! read-only transaction finds every other comparison still true), the store takes the counters'
//! new values, numbers the batch's entries again and resends it (up to 32 times): appends from
//! several writers never need a reload. Any other failed comparison is [`StoreError::Conflict`]
//! naming the first key found changed; nothing was applied and the store does not retry: the
//! caller reloads its view ([`Store::load`], which also refreshes the remembered revisions) and
//! retries its operation. Commits of one
//! `EtcdStore` are serialised (one at a time), so threads sharing a handle never conflict with
//! each other.
//!
//! # Availability
//! Reads are retried with exponential backoff (up to [`EtcdOptions::max_retries`] times) when
//! etcd is unreachable, has no leader or does not answer within
//! [`EtcdOptions::request_timeout`]. A commit is retried only when it surely was not applied
//! (the connection was refused, or etcd answered "no leader" before processing it); otherwise
//! [`StoreError::Unavailable`] says that its outcome is unknown (reload to find out). The client
//! reconnects by itself once etcd is back.
//!
//! # etcd limits
//! etcd limits a transaction to 128 operations (`--max-txn-ops`) and a request to 1.5 MiB
//! (`--max-request-bytes`) by default. A group commit or a history import is one transaction of
//! thousands of operations (a lease put is three of them: the lease, its address index key and a
//! comparison of its cooling key), so cidrcast needs every etcd member started with e.g.
//! `--max-txn-ops 131072 --max-request-bytes 33554432`. A transaction etcd refuses as too large
//! is [`StoreError::EtcdTxnTooLarge`], naming the flag to raise.
//!
//! # Limits of the design
//! * Memory: the store remembers one revision per live record it has read or written (pools,
//!   subdivisions, homes, shards, leases and their index keys, cooling addresses, catalog
//!   records; not events or transitions), about 100 to 150 bytes each.
//! * A lease delete of a lease this store does not know needs no read: the lease is believed
//!   absent, so the commit is a conflict if it exists after all (and if it does not, neither does
//!   its index key, which is only ever written together with it).
//! * After a commit with an unknown outcome the store's view is not updated; if the commit was
//!   applied after all, the next commit touching the same keys reports a conflict (the "other
//!   writer" being this store) and a reload puts things right.
//! * The event and transition counters are one key each: stores appending concurrently conflict
//!   on them (each conflict costs the loser a reload), so a deployment with several writers
//!   appending events at a high rate spends much of its time reloading.
//!
//! # Runtime
//! The [`Store`] trait is synchronous, the etcd client asynchronous (tonic on tokio): the store
//! owns a small tokio runtime of its own; every call spawns its future there and waits for the
//! answer on a `std::sync::mpsc` channel, so it may be called from any thread, including a worker
//! thread of another tokio runtime (where `Runtime::block_on` would panic); it blocks that thread
//! for the duration of the request, like the other backends' file I/O.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use cidrcast_core::model::{
    Change, CoolingRecord, ExternalEventSpec, HomeRecord, LeaseRecord, PoolSpec, Profile,
    RouterSpec, ShardRecord, Snapshot, SubdivisionSpec, Transition, VmEvent,
};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    KvClient, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::runtime::Runtime;

use crate::table as name;
use crate::{validate, Store, StoreCounts, StoreError};

/// Table of the address index (`addresses/{pool}/{address}` → vm id).
const ADDRESSES: &str = "addresses";
/// Table of the per-pool placement version keys.
const PLACEMENT: &str = "placement";
const META_SCHEMA: &str = "schema";
const META_EVENTS: &str = "events_seq";
const META_TRANSITIONS: &str = "transitions_seq";
/// How many times a commit is numbered again after losing only the race for the counters.
const COUNTER_RETRIES: usize = 32;

/// Keys per range request when paging through a table.
const PAGE: usize = 1000;
/// Largest response the client decodes (pages are far smaller; records are small).
const MAX_DECODE_BYTES: usize = 256 << 20;
/// Read-only transactions of the conflict diagnosis hold at most this many reads (below etcd's
/// default `--max-txn-ops`, so that the diagnosis works on any server).
const DIAGNOSIS_CHUNK: usize = 100;
/// Margin of the store's own deadline over the client's request timeout.
const DEADLINE_SLACK: Duration = Duration::from_millis(500);

/// TLS towards etcd: the CA that signed the servers' certificates and, for client certificate
/// authentication, a certificate and its key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdTls {
    /// PEM file of the CA certificate(s) to trust.
    pub ca: PathBuf,
    /// PEM file of the client certificate (with `key`), if etcd requires one.
    pub cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key (with `cert`).
    pub key: Option<PathBuf>,
}

/// Where and how [`EtcdStore::connect`] reaches etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    /// Client URLs of the cluster members, e.g. `http://10.0.0.1:2379` (`https://` with TLS; a
    /// bare `host:port` takes its scheme from whether `tls` is set).
    pub endpoints: Vec<String>,
    /// Prefix of every key, used as is (end it with `/`, e.g. `/cidrcast/`). Daemons sharing a
    /// state use the same prefix; separate states use separate prefixes.
    pub prefix: String,
    /// etcd user (etcd authentication), with `password`.
    pub username: Option<String>,
    /// Password of `username`.
    pub password: Option<String>,
    /// TLS (with `https://` endpoints); `None`: plain text.
    pub tls: Option<EtcdTls>,
    /// Timeout of establishing a connection to a member.
    pub connect_timeout: Duration,
    /// Timeout of one request; a commit without an answer in time has an unknown outcome.
    pub request_timeout: Duration,
    /// Retries (with exponential backoff from 50 ms, at most 2 s apart) of a read, or of a
    /// commit that surely was not applied, while etcd is unavailable.
    pub max_retries: u32,
}

impl fmt::Debug for EtcdOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdOptions")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl EtcdOptions {
    /// Plain-text access without authentication to `endpoints`, keys under `prefix`; 5 s
    /// connect and request timeouts, 5 retries.
    pub fn new<I, S>(endpoints: I, prefix: impl Into<String>) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdOptions {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: prefix.into(),
            username: None,
            password: None,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
            max_retries: 5,
        }
    }

    /// The etcd client's options: timeouts, leader requirement, credentials and TLS (the PEM
    /// files are read here; errors name them).
    pub fn connect_options(&self) -> Result<ConnectOptions, StoreError> {
        let options = self;
        let refused = |op: &str, reason: String| StoreError::Etcd {
            endpoints: options.endpoints.clone(),
            op: op.to_string(),
            reason,
        };
        let mut connect_options =
            ConnectOptions::new().with_connect_timeout(options.connect_timeout);
        if !options.request_timeout.is_zero() {
            connect_options = connect_options.with_timeout(options.request_timeout);
        }
        connect_options = connect_options
            // Without a leader, etcd answers "no leader" at once instead of waiting.
            .with_require_leader(true);
        if let Some(user) = &options.username {
            connect_options = connect_options
                .with_user(user.clone(), options.password.clone().unwrap_or_default())
                .with_auto_token_refresh(true);
        }
        if let Some(tls) = &options.tls {
            let read = |what: &str, path: &PathBuf| {
                std::fs::read(path).map_err(|e| {
                    refused(
                        &format!("read the TLS {what} {}", path.display()),
                        e.to_string(),
                    )
                })
            };
            let mut config = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read("CA certificate", &tls.ca)?));
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read("client certificate", cert)?,
                        read("client key", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(refused(
                        "configure TLS",
                        "a client certificate needs its key, and a key its certificate".to_string(),
                    ))
                }
            }
            connect_options = connect_options.with_tls(config);
        }

        Ok(connect_options)
    }

    /// A client of its own on these options but without a request timeout (for coordination
    /// beside the store: a leader election's campaign waits as long as another daemon leads),
    /// connected on the caller's runtime.
    pub async fn client(&self) -> Result<Client, StoreError> {
        let opts = EtcdOptions {
            request_timeout: Duration::ZERO,
            ..self.clone()
        }
        .connect_options()?;
        Client::connect(self.endpoints.clone(), Some(opts))
            .await
            .map_err(|e| StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: format!("connect: {e}"),
            })
    }
}

/// The store in an etcd v3 cluster, under a key prefix. See the [module docs](self) for the
/// layout, the compare-and-swap rules and the etcd settings it needs.
pub struct EtcdStore {
    /// The store's own runtime; `None` only while dropping.
    runtime: Option<Runtime>,
    /// Kept alive: it owns the channel's endpoint list.
    _client: Client,
    ctx: Arc<Ctx>,
    keys: Keys,
    options: EtcdOptions,
    /// What this store believes the cluster holds; its lock also serialises commits and loads.
    view: Mutex<View>,
}

impl fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdStore")
            .field("endpoints", &self.options.endpoints)
            .field("prefix", &self.options.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        // Never blocks, so that dropping the store inside an async context does not panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// What a store believes the cluster holds (see "Compare-and-swap" in the module docs).
#[derive(Debug, Default)]
struct View {
    /// `mod_revision` of every guarded key believed to exist (absent: believed not to exist).
    /// Events and transitions are not remembered: their counters guard them.
    revs: BTreeMap<String, i64>,
    /// Pool and address of every lease believed to exist, by vm id.
    leases: HashMap<String, (String, IpAddr)>,
    /// Holder (vm id) of every address index key believed to exist.
    holders: BTreeMap<String, String>,
    /// Parent of every subdivision believed to exist.
    parents: HashMap<String, Option<String>>,
    /// Last sequence numbers handed out, as last read or written.
    last_event: u64,
    last_transition: u64,
}

/// Removes the entries of `map` with keys in `[start, end)`.
fn remove_range<V>(map: &mut BTreeMap<String, V>, start: &str, end: &str) {
    let mut tail = map.split_off(start);
    let mut rest = tail.split_off(end);
    map.append(&mut rest);
}

// ---------------------------------------------------------------------------------------------
// Keys.

/// Escapes a key component: every byte outside `A-Z a-z 0-9 . _ - ~ :` becomes `%XX`.
fn escape(component: &str) -> Cow<'_, str> {
    let keep = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'~' | b':');
    if component.bytes().all(keep) {
        return Cow::Borrowed(component);
    }
    let mut out = String::with_capacity(component.len() + 8);
    for b in component.bytes() {
        if keep(b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Cow::Owned(out)
}

/// An address written fixed width, so that the keys of a pool sort in address order.
fn fixed_width(address: IpAddr) -> String {
    match address {
        IpAddr::V4(a) => {
            let [a, b, c, d] = a.octets();
            format!("{a:03}.{b:03}.{c:03}.{d:03}")
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            format!(
                "{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}:{:04x}",
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]
            )
        }
    }
}

/// The first key after every key starting with `prefix` (etcd's range end of a prefix); the whole
/// key space for an empty prefix.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The key right after `key` in byte order.
fn successor(key: &str) -> String {
    let mut next = key.to_string();
    next.push('\0');
    next
}

#[derive(Clone, Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    /// `[start, end)` of every key of a table.
    fn table(&self, table: &str) -> (String, String) {
        (
            format!("{}{table}/", self.prefix),
            format!("{}{table}0", self.prefix),
        )
    }

    fn meta(&self, key: &str) -> String {
        format!("{}{}/{key}", self.prefix, name::META)
    }

    fn one(&self, table: &str, a: &str) -> String {
        format!("{}{table}/{}", self.prefix, escape(a))
    }

    fn two(&self, table: &str, a: &str, b: &str) -> String {
        format!("{}{table}/{}/{}", self.prefix, escape(a), escape(b))
    }

    fn address(&self, table: &str, pool: &str, address: IpAddr) -> String {
        format!(
            "{}{table}/{}/{}",
            self.prefix,
            escape(pool),
            fixed_width(address)
        )
    }

    fn shard(&self, pool: &str, prefix: &IpNet) -> String {
        self.two(name::SHARDS, pool, &prefix.to_string())
    }

    fn seq(&self, table: &str, seq: u64) -> String {
        format!("{}{table}/{seq:020}", self.prefix)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, retries and errors.

/// Why a request failed, as far as retrying is concerned.
#[derive(Debug)]
enum Fail {
    /// Surely not applied (connection refused, no leader): any request may be retried.
    NotSent(String),
    /// Sent (or maybe sent) without an answer: a read may be retried, a commit's outcome is
    /// unknown.
    Unknown(String),
    /// The transaction exceeds an etcd limit; `flag` raises it.
    TooLarge { flag: &'static str, reason: String },
    /// A read at a revision that has been compacted away.
    Compacted(String),
    /// Refused for good (authentication, permission, invalid argument...).
    Refused(String),
}

/// A request that failed, after `attempts` attempts.
#[derive(Debug)]
struct Failed {
    fail: Fail,
    attempts: u32,
}

/// Walks the source chain of an error into one line.
fn describe(error: &etcd_client::Error) -> String {
    let mut out = match error {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(error);
    if let etcd_client::Error::GRpcStatus(status) = error {
        source = std::error::Error::source(status);
    }
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Whether the error is a failure to connect (so nothing of the request was sent).
fn is_connect_error(error: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    if let etcd_client::Error::GRpcStatus(status) = error {
        if status.message().contains("tcp connect error") {
            return true;
        }
        source = Some(status);
    }
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            ) {
                return true;
            }
        }
        let text = s.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = s.source();
    }
    false
}

/// What to check when a connection failed during the handshake: over TLS without a client
/// certificate, etcd wants one; in plain text, etcd speaks TLS.
fn tls_hint(options: &EtcdOptions, reason: &str) -> &'static str {
    let closed = [
        "connection closed",
        "connection reset",
        "broken pipe",
        "fatal alert",
    ]
    .iter()
    .any(|m| reason.contains(m));
    match &options.tls {
        Some(tls) if tls.cert.is_none() && closed => {
            "; etcd ended the TLS handshake: if it runs with --client-cert-auth, set tls_cert \
             and tls_key"
        }
        None if closed => "; if etcd serves TLS (https:// client URLs), set tls_ca",
        _ => "",
    }
}

fn classify(error: &etcd_client::Error) -> Fail {
    let reason = describe(error);
    // A certificate that does not verify (ours or the server's) will not on a retry either.
    if reason.contains("invalid peer certificate") || reason.contains("fatal alert") {
        return Fail::Refused(reason);
    }
    match error {
        etcd_client::Error::GRpcStatus(status) => {
            let message = status.message();
            // gRPC status codes: 1 cancelled, 2 unknown, 4 deadline exceeded, 8 resource
            // exhausted, 10 aborted, 14 unavailable.
            let code = status.code() as i32;
            if message.contains("too many operations in txn request") {
                Fail::TooLarge {
                    flag: "--max-txn-ops",
                    reason,
                }
            } else if message.contains("request is too large")
                || (code == 8 && message.contains("larger than max"))
            {
                Fail::TooLarge {
                    flag: "--max-request-bytes",
                    reason,
                }
            } else if message.contains("required revision has been compacted") {
                Fail::Compacted(reason)
            } else if is_connect_error(error)
                // Refused by the server's interceptor, or before proposing: not applied.
                || message.contains("etcdserver: no leader")
                || message.contains("etcdserver: too many requests")
            {
                Fail::NotSent(reason)
            } else if matches!(code, 1 | 2 | 4 | 10 | 14)
                || message.contains("timed out")
                || message.contains("leader changed")
            {
                Fail::Unknown(reason)
            } else {
                Fail::Refused(reason)
            }
        }
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            if is_connect_error(error) {
                Fail::NotSent(reason)
            } else {
                Fail::Unknown(reason)
            }
        }
        _ => Fail::Refused(reason),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(6)).min(Duration::from_secs(2))
}

/// What the futures need, shared with the runtime's tasks.
struct Ctx {
    kv: KvClient,
    endpoints: Vec<String>,
    request_timeout: Duration,
    max_retries: u32,
}

impl Ctx {
    /// Runs `request` until it succeeds, retrying (with backoff, up to `max_retries` times) the
    /// failures that allow it: those that surely were not applied, and for an `idempotent`
    /// request also those without an answer.
    async fn call<T, F, Fut>(&self, idempotent: bool, mut request: F) -> Result<T, Failed>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let mut attempt = 0u32;
        loop {
            let deadline = self.request_timeout + DEADLINE_SLACK;
            let fail = match tokio::time::timeout(deadline, request(self.kv.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => classify(&e),
                Err(_) => Fail::Unknown(format!("no answer within {deadline:?}")),
            };
            let retry = match fail {
                Fail::NotSent(_) => true,
                Fail::Unknown(_) => idempotent,
                _ => false,
            };
            if !retry || attempt >= self.max_retries {
                return Err(Failed {
                    fail,
                    attempts: attempt + 1,
                });
            }
            tokio::time::sleep(backoff(attempt)).await;
            attempt += 1;
        }
    }

    fn refused(&self, op: impl Into<String>, reason: impl Into<String>) -> StoreError {
        StoreError::Etcd {
            endpoints: self.endpoints.clone(),
            op: op.into(),
            reason: reason.into(),
        }
    }

    /// The error of a failed read.
    fn read_error(&self, failed: Failed, op: &str) -> StoreError {
        let attempts = failed.attempts;
        match failed.fail {
            Fail::NotSent(reason) | Fail::Unknown(reason) => StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: format!("{op}: {reason} (after {attempts} attempts)"),
            },
            Fail::TooLarge { reason, .. } | Fail::Compacted(reason) | Fail::Refused(reason) => {
                self.refused(op, reason)
            }
        }
    }

    /// The error of a failed commit of `ops` operations (and compares) of about `bytes` bytes.
    fn commit_error(&self, failed: Failed, ops: usize, bytes: usize) -> StoreError {
        let attempts = failed.attempts;
        match failed.fail {
            Fail::NotSent(reason) => StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: format!(
                    "commit: {reason} (after {attempts} attempts); the commit was not applied"
                ),
            },
            Fail::Unknown(reason) => StoreError::Unavailable {
                endpoints: self.endpoints.clone(),
                reason: format!(
                    "commit: {reason}; the outcome of the commit is unknown (it may or may not \
                     have been applied): reload to find out"
                ),
            },
            Fail::TooLarge { flag, reason } => StoreError::EtcdTxnTooLarge {
                ops,
                bytes,
                flag,
                reason,
            },
            Fail::Compacted(reason) | Fail::Refused(reason) => {
                self.refused("commit (nothing was applied)", reason)
            }
        }
    }

    /// Every key-value of `[start, end)` at `revision` (0: the current one), paging; returns the
    /// revision read.
    async fn range(
        &self,
        start: &str,
        end: &str,
        mut revision: i64,
        limit: usize,
    ) -> Result<(i64, Vec<KeyValue>), Failed> {
        let mut out = Vec::new();
        let mut from = start.to_string();
        loop {
            let want = (limit - out.len()).min(PAGE);
            if want == 0 {
                return Ok((revision, out));
            }
            #[cfg(test)]
            if let Some(hook) = tests::BEFORE_PAGE
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_mut()
            {
                hook(revision);
            }
            let mut options = GetOptions::new()
                .with_range(end.as_bytes().to_vec())
                .with_limit(want as i64);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let mut response = self
                .call(true, |mut kv| {
                    let (from, options) = (from.clone(), options.clone());
                    async move { kv.get(from, Some(options)).await }
                })
                .await?;
            if revision == 0 {
                revision = response.header().map_or(0, |h| h.revision());
            }
            let more = response.more();
            let kvs = response.take_kvs();
            let Some(last) = kvs.last() else {
                return Ok((revision, out));
            };
            from = successor(&String::from_utf8_lossy(last.key()));
            out.extend(kvs);
            if !more {
                return Ok((revision, out));
            }
        }
    }

    /// Every key-value of every range, read at one revision (restarting, a few times, if that
    /// revision is compacted away meanwhile).
    async fn ranges(&self, ranges: &[(String, String)]) -> Result<Vec<Vec<KeyValue>>, Failed> {
        let mut tries = 0;
        'again: loop {
            tries += 1;
            let mut revision = 0;
            let mut out = Vec::with_capacity(ranges.len());
            for (start, end) in ranges {
                match self.range(start, end, revision, usize::MAX).await {
                    Ok((rev, kvs)) => {
                        revision = rev;
                        out.push(kvs);
                    }
                    Err(Failed {
                        fail: Fail::Compacted(_),
                        ..
                    }) if tries < 3 => continue 'again,
                    Err(e) => return Err(e),
                }
            }
            return Ok(out);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Commit plans.

/// What a comparison expects of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Absent,
    Revision(i64),
}

impl Expect {
    fn of(view: &View, key: &str) -> Expect {
        view.revs
            .get(key)
            .map_or(Expect::Absent, |r| Expect::Revision(*r))
    }

    fn compare(self, key: &str) -> Compare {
        match self {
            Expect::Absent => Compare::version(key, CompareOp::Equal, 0),
            Expect::Revision(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        }
    }
}

/// One put (`value` `Some`) or delete of a key.
#[derive(Debug)]
struct Write {
    key: String,
    value: Option<Vec<u8>>,
    /// Compared against the view and remembered after the commit (every key except the log
    /// entries, which their counters guard).
    guarded: bool,
}

/// A batch turned into one transaction.
#[derive(Debug, Default)]
struct Plan {
    /// The last write of every key, in order of first appearance.
    writes: Vec<Write>,
    index: HashMap<String, usize>,
    /// Keys compared without being written.
    reads: BTreeSet<String>,
    /// Ranges that must hold no key.
    empty: Vec<(String, String)>,
    /// Placement keys the commit bumps (and compares).
    placement: BTreeSet<String>,
    /// Subdivisions the batch puts (with their parent) or deletes (`None`).
    subdivisions: HashMap<String, Option<Option<String>>>,
    /// New pool and address (`None`: deleted) of the leases the batch writes.
    leases: HashMap<String, Option<(String, IpAddr)>>,
    /// New holder (`None`: deleted) of the address index keys the batch writes.
    holders: HashMap<String, Option<String>>,
    events: u64,
    transitions: u64,
}

impl Plan {
    fn write(&mut self, key: String, value: Option<Vec<u8>>, guarded: bool) {
        match self.index.get(&key) {
            Some(&i) => self.writes[i].value = value,
            None => {
                self.index.insert(key.clone(), self.writes.len());
                self.writes.push(Write {
                    key,
                    value,
                    guarded,
                });
            }
        }
    }

    fn put(
        &mut self,
        key: String,
        table: &'static str,
        record: &impl Serialize,
    ) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).map_err(|source| StoreError::Encode {
            table,
            key: key.clone(),
            source,
        })?;
        self.write(key, Some(value), true);
        Ok(())
    }

    fn delete(&mut self, key: String) {
        self.write(key, None, true);
    }

    /// The ancestors of `sub` (parent first), as the batch (so far) leaves them.
    fn ancestors(&self, view: &View, sub: &str) -> Vec<String> {
        let parent_of = |s: &str| -> Option<String> {
            match self.subdivisions.get(s) {
                Some(state) => state.clone().flatten(),
                None => view.parents.get(s).cloned().flatten(),
            }
        };
        let mut out = Vec::new();
        let mut cur = parent_of(sub);
        // A parent cycle cannot be stored; the bound only keeps a damaged view from looping.
        while let Some(p) = cur {
            if out.len() > 64 || out.contains(&p) {
                break;
            }
            cur = parent_of(&p);
            out.push(p);
        }
        out
    }

    /// A home block of `sub` is placed, grown, shrunk or removed: its space comes from its
    /// parent's block (or the pool), so the pool's key and every ancestor's key are bumped.
    fn place_home(&mut self, view: &View, keys: &Keys, pool: &str, sub: &str) {
        self.placement.insert(keys.one(PLACEMENT, pool));
        for a in self.ancestors(view, sub) {
            self.placement.insert(keys.two(PLACEMENT, pool, &a));
        }
    }

    /// Where the batch (so far) leaves `vm`'s lease.
    fn lease_of(&self, view: &View, vm: &str) -> Option<(String, IpAddr)> {
        match self.leases.get(vm) {
            Some(state) => state.clone(),
            None => view.leases.get(vm).cloned(),
        }
    }

    /// Who the batch (so far) leaves holding an address index key.
    fn holder_of(&self, view: &View, key: &str) -> Option<String> {
        match self.holders.get(key) {
            Some(holder) => holder.clone(),
            None => view.holders.get(key).cloned(),
        }
    }

    /// Approximate size of the request, for error messages.
    fn bytes(&self) -> usize {
        let writes: usize = self
            .writes
            .iter()
            .map(|w| 16 + w.key.len() + w.value.as_ref().map_or(0, Vec::len))
            .sum();
        let compares: usize = self
            .writes
            .iter()
            .filter(|w| w.guarded)
            .map(|w| 16 + w.key.len())
            .sum();
        let reads: usize = self.reads.iter().map(|k| 16 + k.len()).sum();
        let empty: usize = self.empty.iter().map(|(a, b)| 16 + a.len() + b.len()).sum();
        writes + compares + reads + empty
    }

    /// The comparisons, each with what it expects (`None`: an empty range, `.1` its end).
    fn checks(&self, view: &View) -> Vec<(String, Option<String>, Expect)> {
        let mut checks: Vec<(String, Option<String>, Expect)> = Vec::new();
        for w in self.writes.iter().filter(|w| w.guarded) {
            checks.push((w.key.clone(), None, Expect::of(view, &w.key)));
        }
        for key in &self.reads {
            if !self.index.contains_key(key) {
                checks.push((key.clone(), None, Expect::of(view, key)));
            }
        }
        for (start, end) in &self.empty {
            checks.push((start.clone(), Some(end.clone()), Expect::Absent));
        }
        checks
    }
}

fn compare_of(key: &str, end: &Option<String>, expect: Expect) -> Compare {
    match end {
        Some(end) => Compare::version(key, CompareOp::Equal, 0).with_range(end.as_bytes()),
        None => expect.compare(key),
    }
}

// ---------------------------------------------------------------------------------------------
// The store.

impl EtcdStore {
    /// Layout version this build reads and writes (`{prefix}meta/schema`).
    pub const SCHEMA_VERSION: u64 = 1;

    /// Connects to etcd and opens the store under `options.prefix`, initialising an empty prefix
    /// (the `meta` keys) on first use.
    ///
    /// Errors: [`StoreError::Unavailable`] when no endpoint answers within the timeouts and
    /// retries (naming the endpoints and the cause), [`StoreError::Etcd`] when etcd refuses
    /// (authentication, TLS files...), [`StoreError::SchemaMismatch`] for a store of another
    /// layout version, [`StoreError::NotAStore`] for a prefix holding other keys.
    pub fn connect(options: EtcdOptions) -> Result<Self, StoreError> {
        let endpoints = options.endpoints.clone();
        let refused = |op: &str, reason: String| StoreError::Etcd {
            endpoints: endpoints.clone(),
            op: op.to_string(),
            reason,
        };
        if options.endpoints.is_empty() {
            return Err(refused("connect", "no endpoint given".to_string()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cidrcast-etcd")
            .enable_all()
            .build()
            .map_err(|e| refused("start the etcd client runtime", e.to_string()))?;

        let connect_options = options.connect_options()?;

        let eps = options.endpoints.clone();
        let (connect_timeout, request_timeout, max_retries) = (
            options.connect_timeout,
            options.request_timeout,
            options.max_retries,
        );
        let client = run_on(&runtime, async move {
            let mut attempt = 0u32;
            loop {
                let deadline = connect_timeout + request_timeout + DEADLINE_SLACK;
                let connecting = Client::connect(eps.clone(), Some(connect_options.clone()));
                let fail = match tokio::time::timeout(deadline, connecting).await {
                    Ok(Ok(client)) => return Ok(client),
                    Ok(Err(e)) => classify(&e),
                    Err(_) => Fail::Unknown(format!("no answer within {deadline:?}")),
                };
                if matches!(fail, Fail::NotSent(_) | Fail::Unknown(_)) && attempt < max_retries {
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                    continue;
                }
                return Err(Failed {
                    fail,
                    attempts: attempt + 1,
                });
            }
        })
        .ok_or_else(|| refused("connect", "the client task ended without an answer".into()))?;
        let client = client.map_err(|failed| match failed.fail {
            Fail::NotSent(reason) | Fail::Unknown(reason) => StoreError::Unavailable {
                endpoints: options.endpoints.clone(),
                reason: format!(
                    "connect: {reason} (after {} attempts){}",
                    failed.attempts,
                    tls_hint(&options, &reason)
                ),
            },
            Fail::TooLarge { reason, .. } | Fail::Compacted(reason) | Fail::Refused(reason) => {
                let hint = tls_hint(&options, &reason);
                refused("connect", format!("{reason}{hint}"))
            }
        })?;
        let ctx = Ctx {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_DECODE_BYTES),
            endpoints: options.endpoints.clone(),
            request_timeout,
            max_retries,
        };
        let store = EtcdStore {
            runtime: Some(runtime),
            _client: client,
            ctx: Arc::new(ctx),
            keys: Keys {
                prefix: options.prefix.clone(),
            },
            options,
            view: Mutex::new(View::default()),
        };
        store.initialise()?;
        Ok(store)
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &EtcdOptions {
        &self.options
    }

    /// The store's location in error messages: `etcd <endpoints> (key prefix <prefix>)`.
    fn location(&self) -> PathBuf {
        PathBuf::from(format!(
            "etcd {} (key prefix {})",
            self.options.endpoints.join(","),
            self.options.prefix
        ))
    }

    fn lock_view(&self) -> MutexGuard<'_, View> {
        // The view is only changed after a request succeeded, by code that cannot fail half way.
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `future` on the store's runtime and waits for its result on a channel (never
    /// `block_on`, so that any thread may call it).
    fn run<T: Send + 'static>(
        &self,
        op: &str,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the store");
        run_on(runtime, future).unwrap_or_else(|| {
            Err(self
                .ctx
                .refused(op, "the request task ended without an answer"))
        })
    }

    /// Writes the `meta` keys into an empty prefix, checks them, and reads the counters.
    fn initialise(&self) -> Result<(), StoreError> {
        let ctx = Arc::clone(&self.ctx);
        let prefix = self.keys.prefix.clone();
        let schema = self.keys.meta(META_SCHEMA);
        let events = self.keys.meta(META_EVENTS);
        let transitions = self.keys.meta(META_TRANSITIONS);
        let (meta_start, meta_end) = self.keys.table(name::META);
        let version = Self::SCHEMA_VERSION.to_string();
        let (count, meta) = self.run("initialise the store", async move {
            // Only an empty prefix is initialised (a range compare: no key in the prefix).
            let (start, end) = if prefix.is_empty() {
                (vec![0u8], vec![0u8])
            } else {
                (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
            };
            let txn = Txn::new()
                .when(vec![
                    Compare::version(start.clone(), CompareOp::Equal, 0).with_range(end.clone())
                ])
                .and_then(vec![
                    TxnOp::put(schema, version, None),
                    TxnOp::put(events, "0", None),
                    TxnOp::put(transitions, "0", None),
                ])
                .or_else(vec![TxnOp::get(
                    start,
                    Some(GetOptions::new().with_range(end).with_count_only()),
                )]);
            // Idempotent: it only writes into an empty prefix.
            let response = ctx
                .call(true, |mut kv| {
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                })
                .await
                .map_err(|f| ctx.read_error(f, "initialise the store"))?;
            let count = response
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(g) => Some(g.count()),
                    _ => None,
                })
                .unwrap_or(0);
            let (_, meta) = ctx
                .range(&meta_start, &meta_end, 0, usize::MAX)
                .await
                .map_err(|f| ctx.read_error(f, "read the meta keys"))?;
            Ok((count, meta))
        })?;
        let values: HashMap<String, &KeyValue> = meta
            .iter()
            .map(|kv| (String::from_utf8_lossy(kv.key()).into_owned(), kv))
            .collect();
        let schema_key = self.keys.meta(META_SCHEMA);
        let Some(schema) = values.get(&schema_key) else {
            return Err(StoreError::NotAStore {
                path: self.location(),
                what: format!(
                    "the prefix holds {count} key(s) but no {schema_key}: keys of another \
                     application, or of a damaged store; choose another prefix"
                ),
            });
        };
        let found = self.meta_number(schema)?;
        if found != Self::SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch {
                path: self.location(),
                found,
                expected: Self::SCHEMA_VERSION,
            });
        }
        let mut view = self.lock_view();
        self.refresh_meta(&mut view, &meta)?;
        Ok(())
    }

    fn meta_number(&self, kv: &KeyValue) -> Result<u64, StoreError> {
        let text = String::from_utf8_lossy(kv.value());
        text.trim().parse().map_err(|_| StoreError::NotAStore {
            path: self.location(),
            what: format!(
                "{} holds {text:?}, not a number",
                String::from_utf8_lossy(kv.key())
            ),
        })
    }

    /// Takes the counters (and the revisions of the meta keys) from a read of the meta table.
    fn refresh_meta(&self, view: &mut View, meta: &[KeyValue]) -> Result<(), StoreError> {
        let (start, end) = self.keys.table(name::META);
        let events_key = self.keys.meta(META_EVENTS);
        let transitions_key = self.keys.meta(META_TRANSITIONS);
        let (mut events, mut transitions) = (None, None);
        for kv in meta {
            let key = String::from_utf8_lossy(kv.key());
            if key == events_key {
                events = Some(self.meta_number(kv)?);
            } else if key == transitions_key {
                transitions = Some(self.meta_number(kv)?);
            }
        }
        let missing = |key: &str| StoreError::NotAStore {
            path: self.location(),
            what: format!("{key} is missing"),
        };
        view.last_event = events.ok_or_else(|| missing(&events_key))?;
        view.last_transition = transitions.ok_or_else(|| missing(&transitions_key))?;
        remember(view, &start, &end, meta);
        Ok(())
    }

    fn decode<T: DeserializeOwned>(
        &self,
        table: &'static str,
        kv: &KeyValue,
    ) -> Result<T, StoreError> {
        serde_json::from_slice(kv.value()).map_err(|source| StoreError::Decode {
            path: self.location(),
            table,
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            source,
        })
    }

    /// Reads whole tables at one revision.
    fn read_tables(&self, op: &str, tables: &[&str]) -> Result<Vec<Vec<KeyValue>>, StoreError> {
        let ranges: Vec<(String, String)> = tables.iter().map(|t| self.keys.table(t)).collect();
        let ctx = Arc::clone(&self.ctx);
        let op_owned = op.to_string();
        self.run(op, async move {
            ctx.ranges(&ranges)
                .await
                .map_err(|f| ctx.read_error(f, &op_owned))
        })
    }

    /// Every record of a name-keyed catalog table, sorted by name; remembers their revisions.
    fn read_catalog<T: DeserializeOwned>(
        &self,
        table: &'static str,
        name_of: fn(&T) -> &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut view = self.lock_view();
        let kvs = self
            .read_tables(&format!("read table {table}"), &[table])?
            .pop()
            .unwrap_or_default();
        let mut records = kvs
            .iter()
            .map(|kv| self.decode(table, kv))
            .collect::<Result<Vec<T>, _>>()?;
        let (start, end) = self.keys.table(table);
        remember(&mut view, &start, &end, &kvs);
        records.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        Ok(records)
    }

    /// Up to `limit` log entries with seq > `after`.
    fn read_log<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let start = self.keys.seq(table, first);
        let (table_start, end) = self.keys.table(table);
        let ctx = Arc::clone(&self.ctx);
        let op = format!("read table {table} after {after}");
        let kvs = self.run(&op.clone(), async move {
            ctx.range(&start, &end, 0, limit)
                .await
                .map(|(_, kvs)| kvs)
                .map_err(|f| ctx.read_error(f, &op))
        })?;
        kvs.iter()
            .map(|kv| {
                let key = String::from_utf8_lossy(kv.key());
                let seq = key
                    .strip_prefix(table_start.as_str())
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| StoreError::NotAStore {
                        path: self.location(),
                        what: format!("{key} is not a key of table {table}"),
                    })?;
                Ok((seq, self.decode(table, kv)?))
            })
            .collect()
    }

    /// Turns a batch into a transaction plan against `view`.
    fn plan(&self, view: &View, batch: &[Change]) -> Result<Plan, StoreError> {
        let keys = &self.keys;
        let mut plan = Plan::default();
        for change in batch {
            match change {
                Change::PutPool(p) => plan.put(keys.one(name::POOLS, &p.name), name::POOLS, p)?,
                Change::DeletePool { name: pool } => plan.delete(keys.one(name::POOLS, pool)),
                Change::PutSubdivision(s) => {
                    plan.put(keys.one(name::SUBDIVISIONS, &s.name), name::SUBDIVISIONS, s)?;
                    plan.subdivisions
                        .insert(s.name.clone(), Some(s.parent.clone()));
                }
                Change::DeleteSubdivision { name: sub } => {
                    plan.delete(keys.one(name::SUBDIVISIONS, sub));
                    plan.subdivisions.insert(sub.clone(), None);
                }
                Change::PutHome(h) => {
                    plan.put(
                        keys.two(name::HOMES, &h.subdivision, &h.pool),
                        name::HOMES,
                        h,
                    )?;
                    plan.place_home(view, keys, &h.pool, &h.subdivision);
                }
                Change::DeleteHome { subdivision, pool } => {
                    plan.delete(keys.two(name::HOMES, subdivision, pool));
                    plan.place_home(view, keys, pool, subdivision);
                }
                Change::PutShard(s) => {
                    let key = keys.shard(&s.pool, &s.prefix);
                    // A new shard takes space (see "Compare-and-swap" in the module docs). A
                    // change of a shard this store knows (its state, its affinity) takes none:
                    // its own key guards it.
                    if !view.revs.contains_key(&key) {
                        if s.borrowed {
                            // Outside its home block: in an ancestor's block or the pool, the
                            // space a home block of it would take.
                            plan.place_home(view, keys, &s.pool, &s.subdivision);
                        } else {
                            plan.reads
                                .insert(keys.two(name::HOMES, &s.subdivision, &s.pool));
                            plan.placement
                                .insert(keys.two(PLACEMENT, &s.pool, &s.subdivision));
                        }
                    }
                    plan.put(key, name::SHARDS, s)?;
                }
                Change::DeleteShard { pool, prefix } => {
                    // Freeing space needs no placement guard: no view believes space free that
                    // is taken because of it (and the shard's own key guards the record).
                    plan.delete(keys.shard(pool, prefix));
                    // No lease may sit in a released shard: the index keys inside it must be
                    // those this store knows (compared one by one), the gaps between them empty.
                    let start = keys.address(ADDRESSES, pool, prefix.network());
                    let end = successor(&keys.address(ADDRESSES, pool, prefix.broadcast()));
                    let mut cursor = start;
                    for key in view
                        .holders
                        .range(cursor.clone()..end.clone())
                        .map(|(k, _)| k)
                    {
                        if cursor < *key {
                            plan.empty.push((cursor.clone(), key.clone()));
                        }
                        plan.reads.insert(key.clone());
                        cursor = successor(key);
                    }
                    if cursor < end {
                        plan.empty.push((cursor, end));
                    }
                }
                Change::PutLease(l) => self.plan_lease(view, &mut plan, l)?,
                Change::DeleteLease { vm_id } => {
                    plan.delete(keys.one(name::LEASES, vm_id));
                    if let Some((pool, address)) = plan.lease_of(view, vm_id) {
                        let index = keys.address(ADDRESSES, &pool, address);
                        if plan.holder_of(view, &index).as_deref() == Some(vm_id.as_str()) {
                            plan.holders.insert(index.clone(), None);
                            plan.delete(index);
                        }
                    }
                    plan.leases.insert(vm_id.clone(), None);
                }
                Change::PutCooling(c) => plan.put(
                    keys.address(name::COOLING, &c.pool, c.address),
                    name::COOLING,
                    c,
                )?,
                Change::DeleteCooling { pool, address } => {
                    plan.delete(keys.address(name::COOLING, pool, *address))
                }
                Change::Transition(t) => {
                    plan.transitions += 1;
                    let seq = view.last_transition + plan.transitions;
                    let value = encode(name::TRANSITIONS, seq, t)?;
                    plan.write(keys.seq(name::TRANSITIONS, seq), Some(value), false);
                }
                Change::Event(e) => {
                    plan.events += 1;
                    let seq = view.last_event + plan.events;
                    let value = encode(name::EVENTS, seq, e)?;
                    plan.write(keys.seq(name::EVENTS, seq), Some(value), false);
                }
                Change::PutExternalEvent(e) => plan.put(
                    keys.one(name::EXTERNAL_EVENTS, &e.name),
                    name::EXTERNAL_EVENTS,
                    e,
                )?,
                Change::DeleteExternalEvent { name: event } => {
                    plan.delete(keys.one(name::EXTERNAL_EVENTS, event))
                }
                Change::PutProfile(p) => {
                    plan.put(keys.one(name::PROFILES, &p.name), name::PROFILES, p)?
                }
                Change::DeleteProfile { name: profile } => {
                    plan.delete(keys.one(name::PROFILES, profile))
                }
                Change::PutRouter(r) => {
                    plan.put(keys.one(name::ROUTERS, &r.name), name::ROUTERS, r)?
                }
                Change::DeleteRouter { name: router } => {
                    plan.delete(keys.one(name::ROUTERS, router))
                }
            }
        }
        for key in std::mem::take(&mut plan.placement) {
            plan.write(key, Some(Vec::new()), true);
        }
        if plan.events > 0 {
            let last = view.last_event + plan.events;
            plan.write(
                keys.meta(META_EVENTS),
                Some(last.to_string().into_bytes()),
                true,
            );
        }
        if plan.transitions > 0 {
            let last = view.last_transition + plan.transitions;
            plan.write(
                keys.meta(META_TRANSITIONS),
                Some(last.to_string().into_bytes()),
                true,
            );
        }
        Ok(plan)
    }

    fn plan_lease(&self, view: &View, plan: &mut Plan, l: &LeaseRecord) -> Result<(), StoreError> {
        let keys = &self.keys;
        let vm = l.vm_id.as_str();
        // The lease key first: a conflict on it is the one to report.
        plan.put(keys.one(name::LEASES, vm), name::LEASES, l)?;
        let index = keys.address(ADDRESSES, &l.pool, l.address);
        // The lease moves: its old index key goes (if it is still its own).
        if let Some((pool, address)) = plan.lease_of(view, vm) {
            if (pool.as_str(), address) != (l.pool.as_str(), l.address) {
                let old = keys.address(ADDRESSES, &pool, address);
                if plan.holder_of(view, &old).as_deref() == Some(vm) {
                    plan.holders.insert(old.clone(), None);
                    plan.delete(old);
                }
            }
        }
        match plan.holder_of(view, &index) {
            // Already this VM's: compared, not rewritten.
            Some(holder) if holder == vm => {
                plan.reads.insert(index);
            }
            Some(holder) => {
                return Err(StoreError::Invalid {
                    table: name::LEASES,
                    key: vm.to_string(),
                    reason: format!(
                        "address {} of pool {} is leased to {holder} (as this store last read \
                         it): one address cannot hold two leases",
                        l.address, l.pool
                    ),
                });
            }
            None => {
                plan.holders.insert(index.clone(), Some(vm.to_string()));
                plan.write(index, Some(vm.as_bytes().to_vec()), true);
            }
        }
        plan.leases
            .insert(vm.to_string(), Some((l.pool.clone(), l.address)));
        // A stale writer must not hand out an address cooling down, nor lease into a shard that
        // changed (released, drained) since it read it.
        plan.reads
            .insert(keys.address(name::COOLING, &l.pool, l.address));
        let shard = keys.shard(&l.pool, &l.shard);
        if view.revs.contains_key(&shard) {
            plan.reads.insert(shard);
        }
        Ok(())
    }

    /// One attempt of [`Store::commit`]: `Ok(true)` committed; `Ok(false)` only the sequence
    /// counters had moved (the view now holds their new values: plan again); otherwise the
    /// conflict or failure.
    fn commit_once(&self, view: &mut View, batch: &[Change]) -> Result<bool, StoreError> {
        let plan = self.plan(view, batch)?;
        let checks = plan.checks(view);
        let compares: Vec<Compare> = checks
            .iter()
            .map(|(key, end, expect)| compare_of(key, end, *expect))
            .collect();
        let ops: Vec<TxnOp> = plan
            .writes
            .iter()
            .map(|w| match &w.value {
                Some(value) => TxnOp::put(w.key.as_bytes(), value.clone(), None),
                None => TxnOp::delete(w.key.as_bytes(), None),
            })
            .collect();
        let (n_ops, bytes) = (ops.len().max(compares.len()), plan.bytes());
        let txn = Txn::new().when(compares).and_then(ops);
        let ctx = Arc::clone(&self.ctx);
        let response = self.run("commit", async move {
            // Not idempotent: retried only when it surely was not applied.
            ctx.call(false, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|f| ctx.commit_error(f, n_ops, bytes))
        })?;
        if !response.succeeded() {
            if (plan.events > 0 || plan.transitions > 0)
                && self.only_counters_moved(view, &checks)?
            {
                return Ok(false);
            }
            let what = self.diagnose(checks);
            return Err(StoreError::Conflict { what });
        }
        let revision = response.header().map_or(0, |h| h.revision());
        for w in plan.writes.iter().filter(|w| w.guarded) {
            if w.value.is_some() {
                view.revs.insert(w.key.clone(), revision);
            } else {
                view.revs.remove(&w.key);
            }
        }
        for (vm, state) in plan.leases {
            match state {
                Some(place) => view.leases.insert(vm, place),
                None => view.leases.remove(&vm),
            };
        }
        for (key, holder) in plan.holders {
            match holder {
                Some(vm) => view.holders.insert(key, vm),
                None => view.holders.remove(&key),
            };
        }
        for (sub, state) in plan.subdivisions {
            match state {
                Some(parent) => view.parents.insert(sub, parent),
                None => view.parents.remove(&sub),
            };
        }
        view.last_event += plan.events;
        view.last_transition += plan.transitions;
        Ok(true)
    }

    /// After a failed commit: whether every comparison but the sequence counters' still holds
    /// (one read-only transaction). If so, the view takes the counters' current values and
    /// revisions.
    fn only_counters_moved(
        &self,
        view: &mut View,
        checks: &[(String, Option<String>, Expect)],
    ) -> Result<bool, StoreError> {
        let counters = [
            self.keys.meta(META_EVENTS),
            self.keys.meta(META_TRANSITIONS),
        ];
        let compares: Vec<Compare> = checks
            .iter()
            .filter(|(key, end, _)| end.is_some() || !counters.contains(key))
            .map(|(key, end, expect)| compare_of(key, end, *expect))
            .collect();
        let gets: Vec<TxnOp> = counters
            .iter()
            .map(|k| TxnOp::get(k.as_bytes(), None))
            .collect();
        let txn = Txn::new().when(compares).and_then(gets);
        let ctx = Arc::clone(&self.ctx);
        let response = self.run("re-read the sequence counters", async move {
            ctx.call(true, |mut kv| {
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await
            .map_err(|f| ctx.read_error(f, "re-read the sequence counters"))
        })?;
        if !response.succeeded() {
            return Ok(false);
        }
        let mut found = Vec::new();
        for op in response.op_responses() {
            let TxnOpResponse::Get(got) = op else {
                return Ok(false);
            };
            let Some(kv) = got.kvs().first() else {
                return Ok(false);
            };
            let value: Option<u64> = kv.value_str().ok().and_then(|v| v.parse().ok());
            let Some(value) = value else {
                return Ok(false);
            };
            found.push((value, kv.mod_revision()));
        }
        let [(events, events_rev), (transitions, transitions_rev)] = found[..] else {
            return Ok(false);
        };
        view.last_event = events;
        view.last_transition = transitions;
        view.revs.insert(counters[0].clone(), events_rev);
        view.revs.insert(counters[1].clone(), transitions_rev);
        Ok(true)
    }

    /// After a failed comparison: the first key found other than the view expects.
    fn diagnose(&self, checks: Vec<(String, Option<String>, Expect)>) -> String {
        let total = checks.len();
        let generic = format!("one of the {total} keys this batch depends on");
        let ctx = Arc::clone(&self.ctx);
        let found = self.run("diagnose a conflict", async move {
            for chunk in checks.chunks(DIAGNOSIS_CHUNK) {
                let ops: Vec<TxnOp> = chunk
                    .iter()
                    .map(|(key, end, _)| {
                        let mut options = GetOptions::new().with_keys_only().with_limit(1);
                        if let Some(end) = end {
                            options = options.with_range(end.as_bytes().to_vec());
                        }
                        TxnOp::get(key.as_bytes().to_vec(), Some(options))
                    })
                    .collect();
                let txn = Txn::new().and_then(ops);
                let response = ctx
                    .call(true, |mut kv| {
                        let txn = txn.clone();
                        async move { kv.txn(txn).await }
                    })
                    .await
                    .map_err(|f| ctx.read_error(f, "diagnose a conflict"))?;
                for ((key, end, expect), op) in chunk.iter().zip(response.op_responses()) {
                    let TxnOpResponse::Get(got) = op else {
                        continue;
                    };
                    let actual = got.kvs().first();
                    match (end, expect, actual) {
                        (Some(_), _, Some(kv)) => {
                            return Ok(Some(format!(
                                "{} (a lease inside a shard this batch releases)",
                                String::from_utf8_lossy(kv.key())
                            )))
                        }
                        (Some(_), _, None) => {}
                        (None, Expect::Absent, Some(_)) => {
                            return Ok(Some(format!("{key} (created)")))
                        }
                        (None, Expect::Revision(_), None) => {
                            return Ok(Some(format!("{key} (deleted)")))
                        }
                        (None, Expect::Revision(r), Some(kv)) if kv.mod_revision() != *r => {
                            return Ok(Some(key.clone()))
                        }
                        _ => {}
                    }
                }
            }
            Ok(None)
        });
        match found {
            Ok(Some(what)) => what,
            _ => generic,
        }
    }
}

/// Serialises a log entry.
fn encode(table: &'static str, seq: u64, record: &impl Serialize) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record).map_err(|source| StoreError::Encode {
        table,
        key: seq.to_string(),
        source,
    })
}

/// Replaces what the view remembers of `[start, end)` by the key-values read.
fn remember(view: &mut View, start: &str, end: &str, kvs: &[KeyValue]) {
    remove_range(&mut view.revs, start, end);
    for kv in kvs {
        view.revs.insert(
            String::from_utf8_lossy(kv.key()).into_owned(),
            kv.mod_revision(),
        );
    }
}

/// Spawns `future` on `runtime` and waits for its output on a channel; `None` if the task ended
/// without one (it panicked, or the runtime shut down).
fn run_on<T: Send + 'static>(
    runtime: &Runtime,
    future: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv().ok()
}

impl Store for EtcdStore {
    fn load(&self) -> Result<Snapshot, StoreError> {
        // Under the view's lock: a commit of this store cannot interleave with the refresh.
        let mut view = self.lock_view();
        let tables = [
            name::META,
            name::POOLS,
            name::SUBDIVISIONS,
            name::HOMES,
            name::SHARDS,
            name::LEASES,
            ADDRESSES,
            name::COOLING,
            PLACEMENT,
        ];
        let read = self.read_tables("load", &tables)?;
        let [meta, pools, subdivisions, homes, shards, leases, addresses, cooling, placement]: [Vec<
            KeyValue,
        >;
            9] = read
            .try_into()
            .map_err(|_| self.ctx.refused("load", "a table read is missing"))?;
        fn all<T: DeserializeOwned>(
            store: &EtcdStore,
            table: &'static str,
            kvs: &[KeyValue],
        ) -> Result<Vec<T>, StoreError> {
            kvs.iter().map(|kv| store.decode(table, kv)).collect()
        }
        let snapshot = Snapshot {
            pools: all::<PoolSpec>(self, name::POOLS, &pools)?,
            subdivisions: all::<SubdivisionSpec>(self, name::SUBDIVISIONS, &subdivisions)?,
            homes: all::<HomeRecord>(self, name::HOMES, &homes)?,
            shards: all::<ShardRecord>(self, name::SHARDS, &shards)?,
            leases: all::<LeaseRecord>(self, name::LEASES, &leases)?,
            cooling: all::<CoolingRecord>(self, name::COOLING, &cooling)?,
        };
        self.refresh_meta(&mut view, &meta)?;
        for (table, kvs) in [
            (name::POOLS, &pools),
            (name::SUBDIVISIONS, &subdivisions),
            (name::HOMES, &homes),
            (name::SHARDS, &shards),
            (name::LEASES, &leases),
            (ADDRESSES, &addresses),
            (name::COOLING, &cooling),
            (PLACEMENT, &placement),
        ] {
            let (start, end) = self.keys.table(table);
            remember(&mut view, &start, &end, kvs);
        }
        view.parents = snapshot
            .subdivisions
            .iter()
            .map(|s| (s.name.clone(), s.parent.clone()))
            .collect();
        view.leases = snapshot
            .leases
            .iter()
            .map(|l| (l.vm_id.clone(), (l.pool.clone(), l.address)))
            .collect();
        view.holders = addresses
            .iter()
            .map(|kv| {
                (
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    String::from_utf8_lossy(kv.value()).into_owned(),
                )
            })
            .collect();
        Ok(snapshot)
    }

    fn commit(&self, batch: &[Change]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        // Refuse before sending anything.
        batch.iter().try_for_each(validate)?;
        let mut view = self.lock_view();
        // A batch that lost only the race for the sequence counters (another writer appended
        // events or transitions meanwhile; nothing else it depends on changed) is numbered again
        // from the counters' new values and sent again: appending never needs a reload.
        for _ in 0..=COUNTER_RETRIES {
            if self.commit_once(&mut view, batch)? {
                return Ok(());
            }
        }
        Err(StoreError::Conflict {
            what: format!(
                "{} / {} (renumbered {COUNTER_RETRIES} times: too many concurrent appends)",
                self.keys.meta(META_EVENTS),
                self.keys.meta(META_TRANSITIONS)
            ),
        })
    }

    fn events(&self, after: u64, limit: usize) -> Result<Vec<(u64, VmEvent)>, StoreError> {
        self.read_log(name::EVENTS, after, limit)
    }

    fn transitions(&self, after: u64, limit: usize) -> Result<Vec<(u64, Transition)>, StoreError> {
        self.read_log(name::TRANSITIONS, after, limit)
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        // One read-only transaction: the four counts of one revision.
        let ops: Vec<TxnOp> = [name::EVENTS, name::TRANSITIONS, name::LEASES, name::SHARDS]
            .iter()
            .map(|t| {
                let (start, end) = self.keys.table(t);
                TxnOp::get(
                    start,
                    Some(GetOptions::new().with_range(end).with_count_only()),
                )
            })
            .collect();
        let txn = Txn::new().and_then(ops);
        let ctx = Arc::clone(&self.ctx);
        let counts = self.run("count", async move {
            let response = ctx
                .call(true, |mut kv| {
                    let txn = txn.clone();
                    async move { kv.txn(txn).await }
                })
                .await
                .map_err(|f| ctx.read_error(f, "count records"))?;
            Ok(response
                .op_responses()
                .into_iter()
                .map(|r| match r {
                    TxnOpResponse::Get(g) => u64::try_from(g.count()).unwrap_or(0),
                    _ => 0,
                })
                .collect::<Vec<u64>>())
        })?;
        let [events, transitions, leases, shards]: [u64; 4] = counts
            .try_into()
            .map_err(|_| self.ctx.refused("count records", "a count is missing"))?;
        Ok(StoreCounts {
            events,
            transitions,
            leases,
            shards,
        })
    }

    fn external_events(&self) -> Result<Vec<ExternalEventSpec>, StoreError> {
        self.read_catalog(name::EXTERNAL_EVENTS, |e: &ExternalEventSpec| &e.name)
    }

    fn profiles(&self) -> Result<Vec<Profile>, StoreError> {
        self.read_catalog(name::PROFILES, |p: &Profile| &p.name)
    }

    fn routers(&self) -> Result<Vec<RouterSpec>, StoreError> {
        self.read_catalog(name::ROUTERS, |r: &RouterSpec| &r.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Called before every page of a range read is requested, with the revision it reads at
    /// (0: the current one, for the first page of a read).
    pub(super) type PageHook = Box<dyn FnMut(i64) + Send>;
    pub(super) static BEFORE_PAGE: Mutex<Option<PageHook>> = Mutex::new(None);

    /// `etcdctl` against `endpoint`: its standard output.
    fn etcdctl(endpoint: &str, args: &[&str]) -> String {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", endpoint])
            .args(args)
            .output()
            .expect("run etcdctl (Debian: etcd-client)");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_load_whose_revision_is_compacted_mid_read_starts_again() {
        let dir = tempfile::tempdir().unwrap();
        let ports = crate::etcd_testing::free_ports(2);
        let mut etcd =
            crate::etcd_testing::Member::single(ports[0], ports[1], dir.path().to_path_buf(), true);
        etcd.spawn();
        etcd.wait_healthy(Duration::from_secs(20)).unwrap();
        let endpoint = etcd.endpoint();
        let store = EtcdStore::connect(EtcdOptions::new([endpoint.clone()], "/compact/")).unwrap();
        // Three pages of subdivisions.
        let subs: Vec<Change> = (0..2 * PAGE + 500)
            .map(|i| Change::PutSubdivision(SubdivisionSpec::new(&format!("s{i:05}"))))
            .collect();
        store.commit(&subs).unwrap();

        // While the load pages through the table at a fixed revision, another writer moves on
        // and etcd compacts up to its latest revision: the next page's read fails as compacted.
        let compactions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let pages_at_a_revision = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        {
            let (compactions, pages, endpoint) = (
                compactions.clone(),
                pages_at_a_revision.clone(),
                endpoint.clone(),
            );
            *BEFORE_PAGE.lock().unwrap() = Some(Box::new(move |revision| {
                if revision == 0 {
                    return;
                }
                // The second page read at a fixed revision: compact that revision away, once.
                if pages.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1
                    && compactions.load(std::sync::atomic::Ordering::SeqCst) == 0
                {
                    etcdctl(&endpoint, &["put", "/elsewhere/x", "1"]);
                    let status = etcdctl(&endpoint, &["get", "/elsewhere/x", "-w", "json"]);
                    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
                    let latest = json["header"]["revision"].as_i64().unwrap();
                    etcdctl(&endpoint, &["compact", &latest.to_string()]);
                    compactions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }));
        }
        let loaded = store.load();
        *BEFORE_PAGE.lock().unwrap() = None;
        let snapshot = loaded.expect("the load starts again at a new revision");
        assert_eq!(compactions.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(snapshot.subdivisions.len(), 2 * PAGE + 500);
        // The view is that of the complete second read: a commit on it works.
        store
            .commit(&[Change::DeleteSubdivision {
                name: "s00000".to_string(),
            }])
            .unwrap();
    }

    #[test]
    fn components_are_escaped() {
        assert_eq!(escape("vm-1_a.b"), "vm-1_a.b");
        assert_eq!(escape("a/b"), "a%2Fb");
        assert_eq!(escape("a%2Fb"), "a%252Fb");
        assert_eq!(escape("rack 1"), "rack%201");
        assert_eq!(escape("fd00::/112"), "fd00::%2F112");
        assert_eq!(escape("é"), "%C3%A9");
    }

    #[test]
    fn addresses_sort_in_address_order() {
        let a: Vec<IpAddr> = ["10.0.0.9", "10.0.0.10", "10.0.1.0", "9.255.255.255"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut keys: Vec<String> = a.iter().map(|x| fixed_width(*x)).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "009.255.255.255",
                "010.000.000.009",
                "010.000.000.010",
                "010.000.001.000"
            ]
        );
        assert_eq!(
            fixed_width("fd00::9".parse().unwrap()),
            "fd00:0000:0000:0000:0000:0000:0000:0009"
        );
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b""), b"\0");
        let keys = Keys {
            prefix: "/p/".to_string(),
        };
        assert_eq!(
            keys.table("pools"),
            ("/p/pools/".into(), "/p/pools0".into())
        );
        assert_eq!(keys.seq("events", 7), "/p/events/00000000000000000007");
    }

    #[test]
    fn ranges_are_removed() {
        let mut map: BTreeMap<String, i64> = ["a/1", "b/1", "b/2", "c/1"]
            .iter()
            .map(|k| (k.to_string(), 1))
            .collect();
        remove_range(&mut map, "b/", "b0");
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a/1", "c/1"]);
    }
}
