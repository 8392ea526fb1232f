//! The one error type of the store crate. Every message names the path, table, operation or key.

use std::path::PathBuf;

/// What went wrong in a store operation. A failed `commit` leaves nothing of its batch visible.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store directory does not exist and could not be created.
    #[error("cannot create store directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The directory holding a newly created database could not be synced (so the new file's
    /// directory entry would not survive a power loss).
    #[error("cannot sync directory {path}")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another handle in this process) has the database open: redb allows one
    /// writer process per file.
    #[error(
        "store database {path} is locked: another process (or another open handle in this process) \
         has it open; stop it or use another directory"
    )]
    Locked {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },

    /// The database was written with another layout than this build reads.
    #[error(
        "store database {path} has schema version {found}, this build of cidrcast reads version \
         {expected}"
    )]
    SchemaMismatch {
        path: PathBuf,
        found: u64,
        expected: u64,
    },

    /// The database file is readable but is not a (complete) cidrcast store.
    #[error("store database {path} is not a valid cidrcast store: {what}")]
    NotAStore { path: PathBuf, what: String },

    /// A redb operation failed; `op` names the operation and the table (and key, if any).
    #[error("store database {path}: {op} failed")]
    Redb {
        path: PathBuf,
        op: String,
        #[source]
        source: Box<redb::Error>,
    },

    /// A record could not be serialised.
    #[error("cannot encode {table} record {key}")]
    Encode {
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },

    /// A stored record could not be decoded (written by an incompatible build, or damaged).
    #[error("store database {path}: cannot decode {table} record {key}")]
    Decode {
        path: PathBuf,
        table: &'static str,
        key: String,
        #[source]
        source: serde_json::Error,
    },

    /// A change was refused (e.g. a non-finite time, which JSON cannot hold); the batch holding it
    /// was not applied.
    #[error("invalid {table} record {key}: {reason}")]
    Invalid {
        table: &'static str,
        key: String,
        reason: String,
    },

    /// Compare-and-swap failure of a shared store (the etcd backend): another writer changed a
    /// record this batch depends on (or created one it believed absent) since this store last
    /// read it. Nothing of the batch was applied; reload (`Store::load`) and retry the operation.
    #[error("another writer changed {what} since this store read it; reload and retry")]
    Conflict {
        /// The key (or key range) found changed, e.g. `/cidrcast/addresses/v4/010.000.000.005`.
        what: String,
    },

    /// The etcd cluster could not be reached (connection refused, no leader, timeout) within
    /// the configured timeouts and retries. `reason` says whether a commit surely was not applied
    /// or whether its outcome is unknown (sent, but no answer: it may have been applied; reload to
    /// find out).
    #[error("etcd at {} is unavailable: {reason}", .endpoints.join(", "))]
    Unavailable {
        endpoints: Vec<String>,
        reason: String,
    },

    /// etcd refused a request for another reason than availability (authentication, permission,
    /// invalid argument, bad TLS files...); nothing of a refused commit was applied.
    #[error("etcd at {}: {op} failed: {reason}", .endpoints.join(", "))]
    Etcd {
        endpoints: Vec<String>,
        op: String,
        reason: String,
    },

    /// etcd refused a commit as too large for its limits (`--max-txn-ops`, 128 operations by
    /// default, or `--max-request-bytes`, 1.5 MiB by default); nothing was applied. cidrcast
    /// commits a group commit or an import as one transaction: raise the flag on every member.
    #[error(
        "etcd refused a transaction of {ops} operations and about {bytes} bytes ({reason}); \
         nothing was applied: start etcd with a larger {flag} (cidrcast needs e.g. \
         --max-txn-ops 131072 --max-request-bytes 33554432)"
    )]
    EtcdTxnTooLarge {
        /// Operations (and, separately, compares) in the transaction.
        ops: usize,
        /// Approximate size of the request.
        bytes: usize,
        /// The etcd flag to raise: `--max-txn-ops` or `--max-request-bytes`.
        flag: &'static str,
        /// etcd's own message.
        reason: String,
    },

    /// A failure injected by [`crate::MemoryStore::fail_next_commits`].
    #[error("injected commit failure (MemoryStore::fail_next_commits); nothing was applied")]
    Injected,
}
