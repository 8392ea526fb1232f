//! The structured form of an [`Intent`] (for other tooling): the router, its resolved policy and
//! every announcement with its class, subdivision, pool, shard count and community.

use crate::intent::Intent;
use crate::{Renderer, Validator};

/// The JSON renderer.
pub struct Json;

impl Renderer for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn render(&self, intent: &Intent) -> String {
        let mut s = serde_json::to_string_pretty(intent).expect("an intent serializes");
        s.push('\n');
        s
    }

    fn validator(&self) -> Option<Validator> {
        None
    }
}
