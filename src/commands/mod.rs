//! One module per group of subcommands; each function parses nothing and prints its result.

pub mod admin;
pub mod debug;
pub mod demo;
pub mod events;
pub mod forecast;
pub mod lease;
pub mod router;
pub mod serve;
pub mod shards;
pub mod simulate;
pub mod status;
pub mod trace;
