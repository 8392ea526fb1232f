//! Deploying configurations with the real validators (`bird -p -c`, `vtysh --dryrun -f`) into
//! temporary directories: atomic write, no-op when unchanged, reload with its environment,
//! refusal of invalid configurations, rollback after a failed reload, unwritable paths, the
//! unified diff, and the file's mode.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cidrcast_core::model::{Flavor, Reason, RouterSpec};
use cidrcast_core::Ipam;
use cidrcast_router::{
    apply, apply_with_timeout, check_writable, deployed, diff, render_deployable, Applied,
    RouterError, Validator,
};
use ipnet::IpNet;

const FLAVORS: [Flavor; 2] = [Flavor::Bird, Flavor::Frr];

/// The router `edge-eu` of the fixed state, writing to `path`, reloading with `reload`.
fn router(flavor: Flavor, path: Option<&Path>, reload: Option<String>) -> RouterSpec {
    RouterSpec {
        config_path: path.map(Path::to_path_buf),
        reload_command: reload,
        ..common::router("edge-eu", flavor)
    }
}

/// The rendered configuration of `router` over `ipam`, and its flavor's real validator.
fn rendered(router: &RouterSpec, ipam: &Ipam) -> (String, Validator) {
    let (text, v) = render_deployable(&common::intent_of(router, ipam));
    (text, v.expect("frr and bird have a validator"))
}

/// A router of `flavor` deploying to a new temporary directory's `file`, reloading with
/// `reload`, and its rendering over the fixed state: (directory, path, router, text, validator).
fn fresh(
    flavor: Flavor,
    file: &str,
    reload: Option<&str>,
) -> (tempfile::TempDir, PathBuf, RouterSpec, String, Validator) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file);
    let r = router(flavor, Some(&path), reload.map(str::to_string));
    let (text, v) = rendered(&r, &common::state());
    (dir, path, r, text, v)
}

/// A router of `flavor` deploying to `daemon.conf` in a new directory, counting its reloads in
/// another (`counter`), and its rendering over `ipam`.
struct Counted {
    dir: tempfile::TempDir,
    _out: tempfile::TempDir,
    path: PathBuf,
    counter: PathBuf,
    r: RouterSpec,
    text: String,
    v: Validator,
}

fn counted(flavor: Flavor, ipam: &Ipam) -> Counted {
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = dir.path().join("daemon.conf");
    let counter = out.path().join("reloads");
    let r = router(flavor, Some(&path), Some(counting(&counter)));
    let (text, v) = rendered(&r, ipam);
    Counted {
        dir,
        _out: out,
        path,
        counter,
        r,
        text,
        v,
    }
}

/// The fixed state and the same state with one more reserved shard in `eu-r1`: two different
/// renderings. Returns both states and the new shard's prefix.
fn states() -> (Ipam, Ipam, IpNet) {
    let before = common::state();
    let mut after = common::state();
    let rec = after
        .claim_shard("eu-r1", Some("v4"), Reason::Forecast, 2000.0)
        .unwrap();
    (before, after, rec.prefix)
}

/// A shell command that appends a line to `counter`.
fn counting(counter: &Path) -> String {
    format!("echo reload >> '{}'", counter.display())
}

/// How many times the counting reload command ran.
fn runs(counter: &Path) -> usize {
    match std::fs::read_to_string(counter) {
        Ok(s) => s.lines().count(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("{}: {e}", counter.display()),
    }
}

/// The names in `dir`.
fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Asserts that no staging file of `apply` is left in `dir`.
fn assert_no_stray(dir: &Path) {
    let stray: Vec<String> = listing(dir)
        .into_iter()
        .filter(|n| n.starts_with(".cidrcast-"))
        .collect();
    assert!(
        stray.is_empty(),
        "stray files in {}: {stray:?}",
        dir.display()
    );
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn apply_writes_the_file_and_a_second_apply_changes_nothing() {
    let ipam = common::state();
    for flavor in FLAVORS {
        let Counted {
            dir,
            _out,
            path,
            counter,
            r,
            text,
            v,
        } = counted(flavor, &ipam);

        assert_eq!(
            deployed(&r).unwrap(),
            None,
            "{flavor}: nothing deployed yet"
        );
        assert_eq!(
            apply(&r, &text, Some(&v)).unwrap(),
            Applied::Written { reloaded: true },
            "{flavor}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{flavor}");
        assert_eq!(deployed(&r).unwrap().as_deref(), Some(text.as_str()));
        assert_eq!(runs(&counter), 1, "{flavor}: the reload ran once");
        assert_eq!(listing(dir.path()), BTreeSet::from(["daemon.conf".into()]));

        // The same text again: nothing written, no reload.
        let written_at = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(
            apply(&r, &text, Some(&v)).unwrap(),
            Applied::Unchanged,
            "{flavor}"
        );
        assert_eq!(
            runs(&counter),
            1,
            "{flavor}: an unchanged apply must not reload"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            written_at,
            "{flavor}: an unchanged apply must not replace the file"
        );
        assert_eq!(diff(&r, &text).unwrap(), None, "{flavor}");
        assert_no_stray(dir.path());
    }
}

#[test]
fn apply_without_reload_command_only_writes() {
    let (dir, path, r, text, v) = fresh(Flavor::Bird, "bird.conf", None);
    assert_eq!(
        apply(&r, &text, Some(&v)).unwrap(),
        Applied::Written { reloaded: false }
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    // Without a validator the text is written as it is.
    let other = format!("{text}# edited\n");
    assert_eq!(
        apply(&r, &other, None).unwrap(),
        Applied::Written { reloaded: false }
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), other);
    assert_no_stray(dir.path());
}

#[test]
fn the_reload_command_sees_the_router_and_the_written_file() {
    let ipam = common::state();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let path = dir.path().join("frr.conf");
    let env_file = out.path().join("env");
    let seen = out.path().join("seen");
    let cmd = format!(
        "printf '%s\\n%s\\n' \"$CIDRCAST_ROUTER\" \"$CIDRCAST_CONFIG_PATH\" > '{}'; \
         cp \"$CIDRCAST_CONFIG_PATH\" '{}'",
        env_file.display(),
        seen.display()
    );
    let r = router(Flavor::Frr, Some(&path), Some(cmd));
    let (text, v) = rendered(&r, &ipam);
    assert_eq!(
        apply(&r, &text, Some(&v)).unwrap(),
        Applied::Written { reloaded: true }
    );
    assert_eq!(
        std::fs::read_to_string(&env_file).unwrap(),
        format!("edge-eu\n{}\n", path.display())
    );
    // The reload runs after the new file is in place.
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), text);
}

#[test]
fn an_invalid_configuration_is_refused_and_changes_nothing() {
    let ipam = common::state();
    for flavor in FLAVORS {
        let Counted {
            dir,
            _out,
            path,
            counter,
            r,
            text,
            v,
        } = counted(flavor, &ipam);
        let broken = format!("{text}this is not a configuration line\n");

        // Nothing deployed yet: refused, and no file appears.
        let err = apply(&r, &broken, Some(&v)).expect_err("a broken configuration is refused");
        assert!(
            matches!(err, RouterError::Invalid { .. }),
            "{flavor}: {err:?}"
        );
        assert!(
            listing(dir.path()).is_empty(),
            "{flavor}: {:?}",
            listing(dir.path())
        );
        assert_eq!(runs(&counter), 0, "{flavor}");

        // Over a deployed file: refused, the file byte-identical, no reload, nothing left over.
        apply(&r, &text, Some(&v)).unwrap();
        assert_eq!(runs(&counter), 1);
        let before = std::fs::read(&path).unwrap();
        let err = apply(&r, &broken, Some(&v)).expect_err("a broken configuration is refused");
        let msg = err.to_string();
        match &err {
            RouterError::Invalid {
                router,
                command,
                output,
            } => {
                assert_eq!(router, "edge-eu");
                assert!(command.starts_with(v.program), "{flavor}: {command}");
                // The daemon's own words, pointing at the bad line.
                let expect = match flavor {
                    Flavor::Bird => "syntax error",
                    Flavor::Frr => "Unknown command",
                };
                assert!(output.contains(expect), "{flavor}: {output}");
                assert!(msg.contains(output.as_str()), "{flavor}: {msg}");
                assert!(msg.contains("nothing was written"), "{flavor}: {msg}");
            }
            other => panic!("{flavor}: expected Invalid, got {other:?}"),
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "{flavor}");
        assert_eq!(
            runs(&counter),
            1,
            "{flavor}: a refused configuration must not reload"
        );
        assert_eq!(listing(dir.path()), BTreeSet::from(["daemon.conf".into()]));
    }
}

#[test]
fn a_missing_validator_is_reported_and_changes_nothing() {
    let (dir, _path, r, text, _) = fresh(Flavor::Frr, "frr.conf", None);
    let missing = Validator {
        flavor: "frr",
        program: "/nonexistent/vtysh",
        args: &["--dryrun", "-f"],
        package: "frr",
    };
    let err = apply(&r, &text, Some(&missing)).expect_err("no validator");
    assert!(
        matches!(err, RouterError::ValidatorMissing { .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent/vtysh") && msg.contains("package `frr`"),
        "{msg}"
    );
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
}

#[test]
fn a_failed_reload_puts_the_previous_file_back() {
    let (old_state, new_state, _) = states();
    for flavor in FLAVORS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.conf");
        let quiet = router(flavor, Some(&path), None);
        let (old, v) = rendered(&quiet, &old_state);
        let (new, _) = rendered(&quiet, &new_state);
        assert_ne!(old, new);
        apply(&quiet, &old, Some(&v)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::read(&path).unwrap();

        let cmd = "echo boom >&2; exit 7";
        let failing = router(flavor, Some(&path), Some(cmd.to_string()));
        let err = apply(&failing, &new, Some(&v)).expect_err("the reload fails");
        let msg = err.to_string();
        match &err {
            RouterError::ReloadFailed {
                router,
                command,
                status,
                kept,
                output,
            } => {
                assert_eq!(router, "edge-eu");
                assert_eq!(command, cmd);
                assert!(status.contains('7'), "{flavor}: {status}");
                assert_eq!(
                    kept,
                    &format!("the previous configuration is back in {}", path.display())
                );
                assert_eq!(output, "boom");
            }
            other => panic!("{flavor}: expected ReloadFailed, got {other:?}"),
        }
        for needle in [cmd, "exit status: 7", "boom"] {
            assert!(msg.contains(needle), "{flavor}: {needle:?} not in {msg}");
        }
        assert_eq!(std::fs::read(&path).unwrap(), before, "{flavor}");
        assert_eq!(
            mode(&path),
            0o640,
            "{flavor}: the restored file keeps its mode"
        );
        assert_eq!(listing(dir.path()), BTreeSet::from(["daemon.conf".into()]));
        // The rendering still differs from what is deployed: the next apply tries again.
        assert!(diff(&failing, &new).unwrap().is_some());
    }
}

#[test]
fn a_failed_reload_of_a_first_deployment_removes_the_file() {
    let (dir, path, r, text, v) = fresh(Flavor::Bird, "bird.conf", Some("echo boom >&2; exit 7"));
    let err = apply(&r, &text, Some(&v)).expect_err("the reload fails");
    assert!(
        matches!(&err, RouterError::ReloadFailed { output, .. } if output == "boom"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("was removed again (there was none before)"),
        "{err}"
    );
    assert!(!path.exists(), "the new file must be removed");
    assert!(listing(dir.path()).is_empty(), "{:?}", listing(dir.path()));
    assert_eq!(deployed(&r).unwrap(), None);
}

#[test]
fn unwritable_config_paths_are_refused_and_nothing_is_created() {
    let ipam = common::state();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain-file");
    std::fs::write(&plain, "not a directory\n").unwrap();
    let a_dir = dir.path().join("a-dir");
    std::fs::create_dir(&a_dir).unwrap();
    let cases: [(&str, PathBuf); 3] = [
        ("missing parent", dir.path().join("missing/frr.conf")),
        ("parent is a file", plain.join("frr.conf")),
        ("path is a directory", a_dir.clone()),
    ];
    let before = listing(dir.path());
    let out = tempfile::tempdir().unwrap();
    let counter = out.path().join("reloads");
    for (case, path) in cases {
        let r = router(Flavor::Frr, Some(&path), Some(counting(&counter)));
        let (text, v) = rendered(&r, &ipam);
        let from_check = check_writable(&r).expect_err(case);
        let from_apply = apply(&r, &text, Some(&v)).expect_err(case);
        for err in [from_check, from_apply] {
            match &err {
                RouterError::Unwritable {
                    router, path: p, ..
                } => {
                    assert_eq!(router, "edge-eu", "{case}");
                    assert_eq!(p, &path, "{case}");
                }
                other => panic!("{case}: expected Unwritable, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains("not writable"),
                "{case}: {msg}"
            );
        }
        assert_eq!(listing(dir.path()), before, "{case}: something was created");
        assert!(listing(&a_dir).is_empty(), "{case}");
        assert_eq!(
            std::fs::read_to_string(&plain).unwrap(),
            "not a directory\n"
        );
        assert_eq!(runs(&counter), 0, "{case}");
    }
    // A writable one passes, and checking leaves nothing behind.
    let ok = router(Flavor::Frr, Some(&dir.path().join("frr.conf")), None);
    check_writable(&ok).unwrap();
    assert_eq!(listing(dir.path()), before);
}

#[test]
fn a_router_without_config_path_cannot_be_deployed() {
    let ipam = common::state();
    let r = router(Flavor::Bird, None, Some("exit 0".into()));
    let (text, v) = rendered(&r, &ipam);
    let errs = [
        apply(&r, &text, Some(&v)).unwrap_err(),
        diff(&r, &text).unwrap_err(),
        deployed(&r).unwrap_err(),
    ];
    for err in errs {
        assert!(
            matches!(&err, RouterError::NoConfigPath(name) if name == "edge-eu"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("edge-eu") && msg.contains("config_path"),
            "{msg}"
        );
    }
    // Nothing to write, so nothing is unwritable.
    check_writable(&r).unwrap();
}

/// The `-` and `+` lines of a unified diff, without their marks and the two header lines.
fn changes(d: &str) -> (Vec<&str>, Vec<&str>) {
    let body = d
        .lines()
        .filter(|l| !l.starts_with("--- ") && !l.starts_with("+++ "));
    let (mut minus, mut plus) = (Vec::new(), Vec::new());
    for l in body {
        if let Some(x) = l.strip_prefix('-') {
            minus.push(x);
        } else if let Some(x) = l.strip_prefix('+') {
            plus.push(x);
        }
    }
    (minus, plus)
}

#[test]
fn diff_shows_what_apply_would_change() {
    let (old_state, new_state, new_shard) = states();
    for flavor in FLAVORS {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("daemon.conf");
        let r = router(flavor, Some(&path), None);
        let (old, v) = rendered(&r, &old_state);
        let (new, _) = rendered(&r, &new_state);

        // Nothing deployed: the whole file is added.
        let d = diff(&r, &old).unwrap().expect("a difference");
        let mut lines = d.lines();
        assert_eq!(lines.next(), Some("--- /dev/null"), "{flavor}: {d}");
        assert_eq!(
            lines.next(),
            Some(format!("+++ {} (rendered)", path.display()).as_str()),
            "{flavor}: {d}"
        );
        let (minus, plus) = changes(&d);
        assert!(minus.is_empty(), "{flavor}: {minus:?}");
        assert_eq!(plus, old.lines().collect::<Vec<_>>(), "{flavor}");

        apply(&r, &old, Some(&v)).unwrap();
        assert_eq!(diff(&r, &old).unwrap(), None, "{flavor}");

        // One more shard: its announcement is added; every `-` line is an old line, every `+`
        // line a new one.
        let d = diff(&r, &new).unwrap().expect("a difference");
        assert!(
            d.starts_with(&format!(
                "--- {}\n+++ {} (rendered)\n@@ ",
                path.display(),
                path.display()
            )),
            "{flavor}: {d}"
        );
        let (minus, plus) = changes(&d);
        assert!(!minus.is_empty() && !plus.is_empty(), "{flavor}: {d}");
        assert!(minus.iter().all(|l| old.lines().any(|o| o == *l)), "{d}");
        assert!(plus.iter().all(|l| new.lines().any(|n| n == *l)), "{d}");
        // The prefix announced for the new shard (it may aggregate with a neighbour).
        let announced = common::intent_of(&r, &new_state)
            .announcements
            .into_iter()
            .find(|a| a.prefix.contains(&new_shard))
            .expect("the new shard is announced")
            .prefix
            .to_string();
        assert!(
            !old.contains(&announced),
            "{flavor}: {announced} was there before"
        );
        assert!(
            plus.iter().any(|l| l.contains(&announced)),
            "{flavor}: no + line with {announced}: {d}"
        );
        assert!(
            !minus.iter().any(|l| l.contains(&announced)),
            "{flavor}: {d}"
        );
        // The deployed file is only read.
        assert_eq!(std::fs::read_to_string(&path).unwrap(), old);
    }
}

#[test]
fn diff_is_an_exact_unified_diff() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.conf");
    let r = router(Flavor::Frr, Some(&path), None);
    std::fs::write(&path, "a\nb\nc\n").unwrap();
    assert_eq!(
        diff(&r, "a\nB\nc\n").unwrap().unwrap(),
        format!(
            "--- {p}\n+++ {p} (rendered)\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n",
            p = path.display()
        )
    );
    assert_eq!(diff(&r, "a\nb\nc\n").unwrap(), None);
}

#[test]
fn a_new_file_gets_0644_and_an_existing_file_keeps_its_mode_and_owner() {
    let (old_state, new_state, _) = states();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bird.conf");
    let r = router(Flavor::Bird, Some(&path), None);
    let (old, v) = rendered(&r, &old_state);
    let (new, _) = rendered(&r, &new_state);

    apply(&r, &old, Some(&v)).unwrap();
    assert_eq!(mode(&path), 0o644);

    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Like /etc/frr/frr.conf owned by frr:frr: the daemon must still read the new file. Only
    // root can give a file away; otherwise the owner is the writer anyway.
    let owner = (54321, 54322);
    let chowned = std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).is_ok();
    apply(&r, &new, Some(&v)).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), new);
    assert_eq!(mode(&path), 0o600, "the mode of the replaced file is kept");
    if chowned {
        let m = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (m.uid(), m.gid()),
            owner,
            "the owner of the replaced file is kept"
        );
    }
    assert_no_stray(dir.path());
}

#[test]
fn a_reload_that_hangs_is_killed_with_everything_it_started() {
    // `sh -c` keeps the shell as the parent of `sleep`: killing only the shell would leave
    // `sleep` holding the output pipes open for 30 s.
    let (_dir, path, r, text, v) = fresh(
        Flavor::Bird,
        "bird.conf",
        Some("echo started; sleep 30; echo never"),
    );
    let start = std::time::Instant::now();
    let err = apply_with_timeout(&r, &text, Some(&v), std::time::Duration::from_secs(1))
        .expect_err("the reload times out");
    let took = start.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "the timeout must kill the whole reload, took {took:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("killed after 1s"), "{msg}");
    assert!(!path.exists(), "a failed first deployment leaves no file");
}
