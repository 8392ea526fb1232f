//! The OpenAPI document checked in at the repository root (`openapi.json`) is the one the code
//! generates. Regenerate it with `UPDATE_GOLDEN=1 cargo test -p cidrcast-server --test openapi`.

#[test]
fn checked_in_openapi_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = cidrcast_server::http::openapi_text();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &generated).expect("write openapi.json");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "openapi.json differs from the generated document; regenerate it with \
         UPDATE_GOLDEN=1 cargo test -p cidrcast-server --test openapi"
    );
    let doc: serde_json::Value = serde_json::from_str(&generated).expect("valid JSON");
    for path in [
        "/v1/allocations",
        "/v1/allocations/{vm_id}",
        "/v1/pools/{name}",
        "/v1/history",
        "/v1/plan",
        "/v1/shards/{addr}/{len}/drain",
        "/metrics",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is documented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
