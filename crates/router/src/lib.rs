//! Router configuration: what a router announces ([`intent`]), its configuration in the daemon's
//! syntax (one [`Renderer`] per flavor: [`frr`], [`bird`], and a structured [`json`] form), and
//! deploying it ([`deploy`]: validate with the daemon's own parser, write atomically, reload, put
//! the previous file back when the reload fails).
//!
//! Data flow: shard records + subdivisions + pools + a router → [`intent::build`] (pure) →
//! [`Renderer::render`] (pure text) → [`deploy::apply`] (the only I/O).

pub mod bird;
pub mod deploy;
mod error;
pub mod frr;
pub mod intent;
pub mod json;

use std::fmt;
use std::str::FromStr;

use cidrcast_core::model::Flavor;

pub use deploy::{apply, apply_with_timeout, check_writable, deployed, diff, Applied, Validator};
pub use error::RouterError;
pub use intent::{build, from_state, Announcement, Class, Inputs, Intent};

/// Writes an [`Intent`] in one daemon's (or tool's) syntax.
pub trait Renderer {
    /// The format's name, as in `--format`.
    fn name(&self) -> &'static str;
    /// The configuration text. Deterministic: the same intent gives the same bytes.
    fn render(&self, intent: &Intent) -> String;
    /// The daemon's parse-only check of a file in this format; `None` when there is no daemon.
    fn validator(&self) -> Option<Validator>;
}

/// An output format of `cidrcast router render` and `/v1/routers/{name}/config`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Frr,
    Bird,
    Json,
}

impl Format {
    /// Every format, for messages.
    pub const ALL: [Format; 3] = [Format::Frr, Format::Bird, Format::Json];

    /// The format a router of `flavor` deploys.
    pub fn of(flavor: Flavor) -> Format {
        match flavor {
            Flavor::Frr => Format::Frr,
            Flavor::Bird => Format::Bird,
        }
    }

    /// Its renderer.
    pub fn renderer(self) -> &'static dyn Renderer {
        match self {
            Format::Frr => &frr::Frr,
            Format::Bird => &bird::Bird,
            Format::Json => &json::Json,
        }
    }

    /// The HTTP content type of its text.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            _ => "text/plain; charset=utf-8",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.renderer().name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Format::ALL
            .into_iter()
            .find(|f| f.renderer().name() == s)
            .ok_or_else(|| format!("unknown format {s:?}: use frr, bird or json"))
    }
}

/// The configuration of `intent`'s router in its own flavor, and that flavor's validator.
pub fn render_deployable(intent: &Intent) -> (String, Option<Validator>) {
    let r = Format::of(intent.flavor).renderer();
    (r.render(intent), r.validator())
}

/// The first lines of a rendered configuration, as comments starting with `comment`: who wrote
/// it, and the policy in force.
fn header(intent: &Intent, comment: &str, flavor: &str) -> String {
    let p = &intent.policy;
    format!(
        "{comment} Rendered by cidrcast for router {} ({flavor}). Do not edit: `cidrcast router apply` replaces it.\n\
         {comment} {} prefixes: active carry community {}, prefetched {}; local preference {}, MED {}.\n",
        intent.router,
        intent.announcements.len(),
        p.active_community,
        p.prefetched_community,
        p.local_pref,
        p.med
    )
}
