//! cidrcast core: the domain model and the allocator, free of I/O.
//!
//! * [`model`]: persisted records ([`model::PoolSpec`], [`model::ShardRecord`], [`model::LeaseRecord`], ...)
//!   and the [`model::Change`] set a store commits atomically.

pub mod error;
pub mod model;

pub use error::CoreError;
