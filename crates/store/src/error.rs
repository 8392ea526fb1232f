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

    /// A failure injected by [`crate::MemoryStore::fail_next_commits`].
    #[error("injected commit failure (MemoryStore::fail_next_commits); nothing was applied")]
    Injected,
}
