//! `[server]` and `[[token]]`: defaults, and refusals that name the entry, field and value.

use cidrcast_config::{Config, ConfigError, Role};

fn refused(toml: &str) -> String {
    match Config::from_toml_str(toml, "test.toml") {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e @ ConfigError::Invalid { .. }) | Err(e @ ConfigError::Parse { .. }) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn defaults_and_a_token() {
    let c = Config::from_toml_str(
        &format!(
            "[[token]]\nname = \"ci\"\nrole = \"allocator\"\nsha256 = \"{HASH}\"\ntenants = [\"blue\"]\n"
        ),
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.server.reconcile_interval_s, 60.0);
    assert_eq!(c.server.lead_time_s, 60.0);
    assert_eq!(c.server.target_miss_rate, Some(0.001));
    assert_eq!(c.server.listen, None);
    assert_eq!(c.server.leader_ttl_s, 10.0);
    for bad in ["1", "61", "nan"] {
        let m = refused(&format!("[server]\nleader_ttl_s = {bad}\n"));
        assert!(
            m.contains("leader_ttl_s") && m.contains("2 to 60"),
            "{bad}: {m}"
        );
    }
    assert_eq!(c.tokens.len(), 1);
    assert_eq!(c.tokens[0].role, Role::Allocator);
    assert!(c.tokens[0].is_scoped());
    // Round trip.
    let again = Config::from_toml_str(&c.to_toml_string().unwrap(), "again").unwrap();
    assert_eq!(again, c);
}

#[test]
fn roles_are_ordered() {
    assert!(Role::Admin.allows(Role::Operator));
    assert!(Role::Operator.allows(Role::Allocator));
    assert!(Role::Allocator.allows(Role::Reader));
    assert!(!Role::Reader.allows(Role::Allocator));
    assert!(!Role::Allocator.allows(Role::Operator));
    assert!(!Role::Operator.allows(Role::Admin));
}

#[test]
fn bad_server_settings_are_named() {
    let m = refused("[server]\nreconcile_interval_s = 0\n");
    assert!(
        m.contains("reconcile_interval_s") && m.contains("[server]"),
        "{m}"
    );
    let m = refused("[server]\nlead_time_s = -1\n");
    assert!(m.contains("lead_time_s"), "{m}");
    let m = refused("[server]\ntarget_miss_rate = 1.5\n");
    assert!(m.contains("target_miss_rate") && m.contains("1.5"), "{m}");
    let m = refused("[server]\nmax_body_bytes = 10\n");
    assert!(m.contains("max_body_bytes"), "{m}");
    let m = refused("[server]\ntls_cert = \"/x.pem\"\n");
    assert!(m.contains("tls_key"), "{m}");
    let m = refused("[server]\nlisten = \"nowhere\"\n");
    assert!(m.contains("listen"), "{m}");
    let m = refused("[server]\ncolour = 1\n");
    assert!(m.contains("colour"), "{m}");
}

#[test]
fn bad_tokens_are_named() {
    let m = refused("[[token]]\nname = \"t\"\nrole = \"allocator\"\nsha256 = \"secret123\"\n");
    assert!(
        m.contains("sha256") && m.contains("secret123") && m.contains("token \"t\""),
        "{m}"
    );
    let m = refused(&format!(
        "[[token]]\nname = \"t\"\nrole = \"root\"\nsha256 = \"{HASH}\"\n"
    ));
    assert!(m.contains("root"), "{m}");
    let m = refused(&format!(
        "[[token]]\nname = \"a\"\nrole = \"reader\"\nsha256 = \"{HASH}\"\n\
         [[token]]\nname = \"b\"\nrole = \"admin\"\nsha256 = \"{HASH}\"\n"
    ));
    assert!(m.contains("token \"b\"") && m.contains("same hash"), "{m}");
    let m = refused(&format!(
        "[[token]]\nname = \"a\"\nrole = \"reader\"\nsha256 = \"{HASH}\"\n\
         [[token]]\nname = \"a\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
        HASH.replace('9', "8")
    ));
    assert!(m.contains("\"a\""), "{m}");
}
