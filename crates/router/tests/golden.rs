//! Golden files of the rendered configurations (FRR, BIRD, JSON) of a fixed state, and every
//! golden configuration accepted by the real daemons' parsers (`bird -p -c`, `vtysh --dryrun -f`).
//! Regenerate them with `UPDATE_GOLDEN=1 cargo test -p cidrcast-router --test golden`.

mod common;

use std::path::PathBuf;

use cidrcast_core::model::Flavor;
use cidrcast_router::Format;

fn golden(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with UPDATE_GOLDEN=1", path.display()));
    assert!(
        want == text,
        "{} differs from the rendered configuration (regenerate with UPDATE_GOLDEN=1 cargo test \
         -p cidrcast-router --test golden):\n{}",
        path.display(),
        similar_lines(&want, text)
    );
}

fn similar_lines(want: &str, got: &str) -> String {
    want.lines()
        .zip(got.lines())
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| {
            format!(
                "first difference at line {}:\n  golden:   {a}\n  rendered: {b}",
                i + 1
            )
        })
        .unwrap_or_else(|| "one is a prefix of the other".to_string())
}

#[test]
fn rendered_configurations_match_golden_files_and_pass_the_daemons_parsers() {
    let ipam = common::state();
    for (file, flavor, format) in [
        ("edge-eu.frr.conf", Flavor::Frr, Format::Frr),
        ("edge-eu.bird.conf", Flavor::Bird, Format::Bird),
        ("edge-eu.json", Flavor::Frr, Format::Json),
    ] {
        let router = common::router("edge-eu", flavor);
        let intent = common::intent_of(&router, &ipam);
        let r = format.renderer();
        let text = r.render(&intent);
        golden(file, &text);
        // The golden file itself (not only the rendering) passes the daemon's parser.
        if let Some(v) = r.validator() {
            let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/golden")
                .join(file);
            v.check("edge-eu", &path)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }
}

#[test]
fn an_empty_router_renders_valid_configurations() {
    // No shards at all, and a router with no neighbors: still a configuration each daemon takes.
    let ipam = {
        let mut i = cidrcast_core::Ipam::new(Default::default());
        for p in common::pools() {
            i.add_pool(p).unwrap();
        }
        for s in common::subdivisions() {
            i.add_subdivision(s).unwrap();
        }
        i
    };
    for flavor in [Flavor::Frr, Flavor::Bird] {
        for neighbors in [true, false] {
            let mut router = common::router("empty", flavor);
            if !neighbors {
                router.neighbors.clear();
            }
            let intent = common::intent_of(&router, &ipam);
            assert!(intent.announcements.is_empty());
            let r = Format::of(flavor).renderer();
            r.validator()
                .unwrap()
                .check_text("empty", &r.render(&intent))
                .unwrap_or_else(|e| panic!("{flavor}, neighbors {neighbors}: {e}"));
        }
    }
}

#[test]
fn a_broken_configuration_is_refused_by_the_validators() {
    // The validators must be able to fail: a broken file is refused with the daemon's message.
    for format in [Format::Frr, Format::Bird] {
        let v = format.renderer().validator().unwrap();
        let err = v
            .check_text(
                "broken",
                "router bgp 65001\n neighbor nonsense remote-as\nprotocol {\n",
            )
            .expect_err("a broken configuration must be refused");
        let msg = err.to_string();
        assert!(msg.contains("refused the rendered configuration"), "{msg}");
    }
}
