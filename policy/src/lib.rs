//! policy: who may do what.
//!
//! A policy is a versioned TOML document, validated as a whole before it takes effect:
//!
//! ```toml
//! description = "release signing and factory lines"   # optional
//!
//! # Top-level keys come before the first [table]: in TOML a key written after a table header
//! # belongs to that table (a `rules` placed there is rejected with that explanation).
//! rules = '''
//! @id("ci-release-cms")
//! permit (
//!   principal == kagi::Pipeline::"ci-release",
//!   action == kagi::Action::"sign",
//!   resource == kagi::Key::"release"
//! ) when { context.format == "cms" };
//! '''
//!
//! [quorum]                  # optional: M-of-N approval of sensitive changes
//! approvers = ["alice", "bob", "carol"]               # person identities, unique
//! required = 2              # 1..=approvers
//! request_ttl_hours = 24    # optional, 1..=720, default 24
//!
//! [[quota]]                 # zero or more
//! name = "line-7-devices"   # unique, [A-Za-z0-9._-]{1,64}
//! identity = "line-7"       # identity name
//! action = "issue"          # "sign" (resource = key label) or "issue" (certificate profile)
//! resource = "device"       # or "*" for any
//! total = 5                 # at least one of total / per_hour / per_day, each > 0
//! per_day = 1000
//! ```
//!
//! `rules` is a [Cedar](https://www.cedarpolicy.com) policy set checked against the schema in
//! [`SCHEMA`]: principals `kagi::Person`, `kagi::Pipeline`, `kagi::Line`; actions
//! `kagi::Action::"sign"` on `kagi::Key` and `kagi::Action::"issue"` on `kagi::Profile`; context
//! `format` (String, "" for issue), `source_ip` (ipaddr), `now` (unix seconds) and `hour`
//! (0..23 UTC). Every rule carries a unique `@id("...")`, which is what audit records name.
//!
//! Decisions follow Cedar: a matching `forbid` denies, else a matching `permit` allows, else the
//! request is denied by `default-deny`. While no policy is active the service applies the
//! built-in [`BOOTSTRAP_TEXT`] (version 0): persons by their roles, pipelines and lines denied.
//! A rejected document reports the line of the whole document that is wrong ([`PolicyError`]). Quotas and the quorum are data for the service:
//! [`Engine::quotas_for`] and [`Engine::quorum`] say which apply; counting is not done here.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bootstrap;
mod diff;
mod document;
mod engine;
mod error;
mod request;
mod rules;
mod schema;

pub use bootstrap::{BOOTSTRAP_RULE, BOOTSTRAP_TEXT, BOOTSTRAP_VERSION};
pub use diff::diff;
pub use document::{PolicyDocument, Quorum, Quota};
pub use engine::{
    Action, CertificateRequest, Context, Decision, Engine, Principal, PrincipalKind, Resource,
    SUBJECT_ATTRIBUTES,
};
pub use error::PolicyError;
pub use rules::DEFAULT_DENY;
pub use schema::SCHEMA;

/// The Cedar crate this one is built on, for benchmarks that measure it directly.
#[doc(hidden)]
pub use cedar_policy;
