//! `[store]`: the redb default, an etcd cluster, and refusals that name the field and value.

use cidrcast_config::{Config, StoreKind, DEFAULT_ETCD_PREFIX};

fn refused(toml: &str) -> String {
    match Config::from_toml_str(toml, "test.toml") {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn redb_is_the_default_and_etcd_round_trips() {
    let c = Config::from_toml_str("", "test.toml").unwrap();
    assert_eq!(c.store.kind, StoreKind::Redb);
    assert_eq!(c.store.prefix, DEFAULT_ETCD_PREFIX);
    let c = Config::from_toml_str(
        "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\", \"https://etcd-2.example:2379\"]\n\
         prefix = \"/prod/cidrcast/\"\nusername = \"cidrcast\"\npassword_file = \"/etc/cidrcast/etcd-password\"\n\
         tls_ca = \"/etc/cidrcast/ca.pem\"\ntls_cert = \"/etc/cidrcast/client.pem\"\ntls_key = \"/etc/cidrcast/client.key\"\n\
         request_timeout_s = 2.5\n",
        "test.toml",
    )
    .unwrap();
    assert_eq!(c.store.kind, StoreKind::Etcd);
    assert_eq!(c.store.endpoints.len(), 2);
    assert_eq!(c.store.request_timeout_s, 2.5);
    let again = Config::from_toml_str(&c.to_toml_string().unwrap(), "again").unwrap();
    assert_eq!(again, c);
}

#[test]
fn bad_store_settings_are_refused_naming_field_and_value() {
    let cases: [(&str, &[&str]); 9] = [
        ("kind = \"zookeeper\"", &["kind", "zookeeper"]),
        (
            "kind = \"etcd\"",
            &["[store]", "endpoints", "needs the cluster's client URLs"],
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]",
            &["endpoints", "127.0.0.1:2379", "http://HOST:PORT"],
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:0\"]",
            &["endpoints", "http://127.0.0.1:0"],
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"https://127.0.0.1:2379\"]",
            &["tls_ca", "https endpoints need the CA"],
        ),
        (
            "kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"cidrcast\"",
            &["prefix", "\"cidrcast\"", "starts and ends with `/`"],
        ),
        ("request_timeout_s = 0", &["request_timeout_s", "0", "> 0"]),
        ("tls_cert = \"/c.pem\"", &["tls_cert", "go together"]),
        ("username = \"u\"", &["password_file", "go together"]),
    ];
    for (body, needles) in cases {
        let msg = refused(&format!("[store]\n{body}\n"));
        for n in needles {
            assert!(msg.contains(n), "[store] {body:?}: {n:?} not in {msg}");
        }
    }
}
