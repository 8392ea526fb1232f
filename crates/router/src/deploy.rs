//! Deploying a rendered configuration: validate it with the daemon's own parser, write it
//! atomically next to the deployed file, run the reload command, and put the previous file back
//! when the reload fails.

use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cidrcast_core::model::RouterSpec;

use crate::RouterError;

/// How long a reload command may run before it is killed and counted as failed.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// A daemon's parse-only check of a configuration file: `program args... FILE`, exit 0 = valid.
#[derive(Clone, Copy, Debug)]
pub struct Validator {
    pub flavor: &'static str,
    pub program: &'static str,
    pub args: &'static [&'static str],
    /// The Debian package that brings `program`.
    pub package: &'static str,
}

impl Validator {
    /// The command line, for messages.
    pub fn command_line(&self, file: &Path) -> String {
        format!(
            "{} {} {}",
            self.program,
            self.args.join(" "),
            file.display()
        )
    }

    /// Runs the check on `file`; [`RouterError::Invalid`] carries what the daemon printed.
    pub fn check(&self, router: &str, file: &Path) -> Result<(), RouterError> {
        let out = Command::new(self.program)
            .args(self.args)
            .arg(file)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RouterError::ValidatorMissing {
                flavor: self.flavor,
                program: self.program,
                package: self.package,
                reason: e.to_string(),
            })?;
        if out.status.success() {
            return Ok(());
        }
        Err(RouterError::Invalid {
            router: router.to_string(),
            command: self.command_line(file),
            output: printed(&out.stdout, &out.stderr, out.status),
        })
    }

    /// Checks `text` from a temporary file (for rendering without deploying).
    pub fn check_text(&self, router: &str, text: &str) -> Result<(), RouterError> {
        let mut f = tempfile::Builder::new()
            .prefix("cidrcast-check-")
            .suffix(".conf")
            .tempfile()
            .map_err(|e| RouterError::Write {
                router: router.to_string(),
                path: std::env::temp_dir(),
                source: e,
            })?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.flush())
            .map_err(|e| RouterError::Write {
                router: router.to_string(),
                path: f.path().to_path_buf(),
                source: e,
            })?;
        self.check(router, f.path())
    }
}

fn printed(stdout: &[u8], stderr: &[u8], status: std::process::ExitStatus) -> String {
    let mut s = String::from_utf8_lossy(stdout).trim().to_string();
    let e = String::from_utf8_lossy(stderr);
    if !e.trim().is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(e.trim());
    }
    if s.is_empty() {
        s = format!("(nothing printed; {status})");
    }
    s
}

/// What [`apply`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The deployed file already holds exactly this configuration: nothing written or reloaded.
    Unchanged,
    /// Written; `reloaded` when a reload command ran (and succeeded).
    Written { reloaded: bool },
}

fn config_path(router: &RouterSpec) -> Result<&Path, RouterError> {
    router
        .config_path
        .as_deref()
        .ok_or_else(|| RouterError::NoConfigPath(router.name.clone()))
}

/// The deployed configuration of `router`: `None` when its file does not exist yet.
pub fn deployed(router: &RouterSpec) -> Result<Option<String>, RouterError> {
    let path = config_path(router)?;
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RouterError::Read {
            router: router.name.clone(),
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// A unified diff from the deployed configuration to `text`; `None` when they are equal.
pub fn diff(router: &RouterSpec, text: &str) -> Result<Option<String>, RouterError> {
    let path = config_path(router)?;
    let old = deployed(router)?;
    if old.as_deref() == Some(text) {
        return Ok(None);
    }
    let old_name = match &old {
        Some(_) => path.display().to_string(),
        None => "/dev/null".to_string(),
    };
    let d = similar::TextDiff::from_lines(old.as_deref().unwrap_or(""), text);
    Ok(Some(
        d.unified_diff()
            .context_radius(3)
            .header(&old_name, &format!("{} (rendered)", path.display()))
            .to_string(),
    ))
}

fn unwritable(router: &RouterSpec, path: &Path, reason: impl Into<String>) -> RouterError {
    RouterError::Unwritable {
        router: router.name.clone(),
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The directory `path` is written in.
fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a `config_path` that cannot be written: a directory, a missing or non-directory
/// parent, or one where no file can be created (checked by creating and removing a temporary
/// file next to it). Routers without `config_path` pass.
pub fn check_writable(router: &RouterSpec) -> Result<(), RouterError> {
    let Some(path) = router.config_path.as_deref() else {
        return Ok(());
    };
    staging_file(router, path).map(drop)
}

/// Refuses a `config_path` that is a directory or whose parent is not an existing directory;
/// returns that parent.
fn check_target(router: &RouterSpec, path: &Path) -> Result<PathBuf, RouterError> {
    if path.is_dir() {
        return Err(unwritable(router, path, "it is a directory"));
    }
    let dir = dir_of(path);
    if !dir.is_dir() {
        return Err(unwritable(
            router,
            path,
            format!("{} is not an existing directory", dir.display()),
        ));
    }
    Ok(dir)
}

fn staging_file(router: &RouterSpec, path: &Path) -> Result<tempfile::NamedTempFile, RouterError> {
    let dir = check_target(router, path)?;
    tempfile::Builder::new()
        .prefix(".cidrcast-")
        .suffix(".tmp")
        .tempfile_in(&dir)
        .map_err(|e| {
            unwritable(
                router,
                path,
                format!("cannot create a file in {}: {e}", dir.display()),
            )
        })
}

/// Writes `content` to `path` through a temporary file in its directory: complete or not at all.
fn write_atomically(
    router: &RouterSpec,
    path: &Path,
    content: &str,
    validator: Option<&Validator>,
) -> Result<(), RouterError> {
    let write_err = |e: std::io::Error| RouterError::Write {
        router: router.name.clone(),
        path: path.to_path_buf(),
        source: e,
    };
    let mut tmp = staging_file(router, path)?;
    tmp.write_all(content.as_bytes()).map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    if let Some(v) = validator {
        v.check(&router.name, tmp.path())?;
    }
    let existing = std::fs::metadata(path).ok();
    // Keep the owner and group of the file replaced (e.g. frr:frr of /etc/frr/frr.conf, mode
    // 0640), so that the daemon can still read it. Best effort: only root can give a file away.
    if let Some(m) = &existing {
        use std::os::unix::fs::MetadataExt;
        let _ = std::os::unix::fs::chown(tmp.path(), Some(m.uid()), Some(m.gid()));
    }
    let mode = existing.map(|m| m.permissions()).unwrap_or_else(|| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::Permissions::from_mode(0o644)
    });
    std::fs::set_permissions(tmp.path(), mode).map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    if let Ok(d) = std::fs::File::open(dir_of(path)) {
        d.sync_all().map_err(write_err)?;
    }
    Ok(())
}

/// Deploys `text` as `router`'s configuration: unchanged → nothing happens; otherwise it is
/// validated by `validator` (when given) from a temporary file next to `config_path` (refused →
/// nothing written), renamed over `config_path`, and `reload_command` runs (`sh -c`, with
/// `CIDRCAST_ROUTER` and `CIDRCAST_CONFIG_PATH` set). When the reload fails (non-zero exit, or
/// longer than [`RELOAD_TIMEOUT`]), the previous file is put back (or the new one removed when
/// there was none) and [`RouterError::ReloadFailed`] reports it.
pub fn apply(
    router: &RouterSpec,
    text: &str,
    validator: Option<&Validator>,
) -> Result<Applied, RouterError> {
    apply_with_timeout(router, text, validator, RELOAD_TIMEOUT)
}

/// [`apply`] with another reload timeout than [`RELOAD_TIMEOUT`].
pub fn apply_with_timeout(
    router: &RouterSpec,
    text: &str,
    validator: Option<&Validator>,
    reload_timeout: Duration,
) -> Result<Applied, RouterError> {
    let path = config_path(router)?;
    // Before reading it: a directory, or a path under a regular file, is unwritable (not a
    // failure to read a deployed file).
    check_target(router, path)?;
    let previous = deployed(router)?;
    if previous.as_deref() == Some(text) {
        return Ok(Applied::Unchanged);
    }
    write_atomically(router, path, text, validator)?;
    let Some(command) = router.reload_command.as_deref() else {
        return Ok(Applied::Written { reloaded: false });
    };
    let failed = match run_reload(router, path, command, reload_timeout) {
        Ok(()) => return Ok(Applied::Written { reloaded: true }),
        Err(f) => f,
    };
    let restored = match &previous {
        Some(old) => write_atomically(router, path, old, None).map_err(|e| match e {
            RouterError::Write { source, .. } => source,
            other => std::io::Error::other(other.to_string()),
        }),
        None => std::fs::remove_file(path),
    };
    match restored {
        Ok(()) => Err(RouterError::ReloadFailed {
            router: router.name.clone(),
            command: command.to_string(),
            status: failed.0,
            kept: match previous {
                Some(_) => format!("the previous configuration is back in {}", path.display()),
                None => format!(
                    "{} was removed again (there was none before)",
                    path.display()
                ),
            },
            output: failed.1,
        }),
        Err(restore) => Err(RouterError::RestoreFailed {
            router: router.name.clone(),
            command: command.to_string(),
            status: failed.0,
            path: path.to_path_buf(),
            restore,
        }),
    }
}

/// Runs the reload command; on failure, its status and what it printed.
fn run_reload(
    router: &RouterSpec,
    path: &Path,
    command: &str,
    timeout: Duration,
) -> Result<(), (String, String)> {
    use std::os::unix::process::CommandExt;
    // Its own process group, so that a timeout kills everything it started (a shell does not
    // always exec its last command, and a leftover child would hold the output pipes open).
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .process_group(0)
        .env("CIDRCAST_ROUTER", &router.name)
        .env("CIDRCAST_CONFIG_PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ("not started".to_string(), e.to_string()))?;
    // Read both pipes on threads so that a chatty command cannot block on a full pipe.
    let mut out_pipe = child.stdout.take().expect("piped stdout");
    let mut err_pipe = child.stderr.take().expect("piped stderr");
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() > timeout => {
                // The group's id is the shell's pid.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", child.id())])
                    .status();
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(("unknown".to_string(), e.to_string())),
        }
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err((s.to_string(), printed(&out, &err, s))),
        None => Err((
            format!("killed after {:?}", timeout),
            String::from_utf8_lossy(&err).trim().to_string(),
        )),
    }
}
