//! The one error type of the router crate. Every message names the router, the file, the command
//! or the value.

use std::path::PathBuf;

/// What went wrong building, rendering, validating or applying a router configuration.
///
/// A failed [`crate::apply`] leaves the deployed file as it was before (or restores it).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The router's routing policy does not resolve (see `RoutingPolicy::resolve`).
    #[error("router `{router}`: {field} = {value}: {reason}")]
    Policy {
        router: String,
        field: &'static str,
        value: String,
        reason: String,
    },
    /// A shard lies outside every pool of its name: nothing outside the pools is announced.
    #[error("router `{router}`: shard {prefix} of pool `{pool}` lies outside the pool; refusing to announce it")]
    OutsidePool {
        router: String,
        pool: String,
        prefix: ipnet::IpNet,
    },
    /// `apply` or `diff` on a router without `config_path`.
    #[error("router `{0}` has no config_path: set one to deploy its configuration (`cidrcast router render` prints it)")]
    NoConfigPath(String),
    /// The configuration file cannot be written where the router says.
    #[error("router `{router}`: config_path {path:?} is not writable: {reason}")]
    Unwritable {
        router: String,
        path: PathBuf,
        reason: String,
    },
    /// Reading the deployed file failed (other than it not existing).
    #[error("router `{router}`: cannot read the deployed configuration {path:?}: {source}")]
    Read {
        router: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// Writing, syncing or renaming the new file failed; the deployed file is unchanged.
    #[error("router `{router}`: writing {path:?} failed: {source}")]
    Write {
        router: String,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The validator (`bird`, `vtysh`) could not be run.
    #[error("cannot validate a {flavor} configuration: running `{program}` failed: {reason} (install Debian package `{package}`)")]
    ValidatorMissing {
        flavor: &'static str,
        program: &'static str,
        package: &'static str,
        reason: String,
    },
    /// The daemon's own parser refused the rendered configuration; nothing was written.
    #[error("router `{router}`: `{command}` refused the rendered configuration (nothing was written):\n{output}")]
    Invalid {
        router: String,
        command: String,
        output: String,
    },
    /// The reload command failed; the previous configuration file was put back (or the new one
    /// removed when there was none).
    #[error("router `{router}`: reload command `{command}` failed ({status}); {kept}:\n{output}")]
    ReloadFailed {
        router: String,
        command: String,
        status: String,
        /// What is in place now.
        kept: String,
        output: String,
    },
    /// The reload command failed and putting the previous file back failed too.
    #[error("router `{router}`: reload command `{command}` failed ({status}) and restoring the previous configuration {path:?} failed too: {restore}")]
    RestoreFailed {
        router: String,
        command: String,
        status: String,
        path: PathBuf,
        restore: std::io::Error,
    },
}
