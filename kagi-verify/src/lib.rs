//! kagi-verify: the relying party's side of kagi, with no server and no store.
//!
//! It checks what kagi produces against kagi's code-signing root certificate and the
//! transparency log's key, never against the service's word: raw and CMS signatures with their
//! RFC 3161 timestamps and log proofs ([`signature`]), Sigstore bundles ([`sigstore`]), the
//! revocation of every certificate they chain through, by OCSP or CRL (`revocation`), and the
//! log itself: checkpoints, consistency and inclusion ([`log`]). The `kagi` binary's `kagi verify` and `kagi log` run
//! this code; the `kagi-verify` binary runs the same code for relying parties (a release
//! pipeline's consumers, a factory test station) that should not install the service.
//!
//! Why a crate of its own: the checks need proofs, signed notes, certificate parsing and
//! public-key verification (`kagi-tlog`, `kagi-x509`, `kagi-crypto`), and nothing that opens a
//! database; linking hsm-core would bring diesel, libpq, SQLite, Argon2 and Shamir into a
//! verifier. The service is reached through the small [`Service`] trait: `kagi` passes its own
//! HTTP client, the `kagi-verify` binary the minimal one in [`client`].
//!
//! Errors are `anyhow` chains: they are the command's report to a person, built with context at
//! each step, and `kagi` prints them unchanged.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod args;
pub mod client;
pub mod digest_file;
pub mod log;
mod revocation;
pub mod signature;
pub mod sigstore;
mod timestamp;
mod trust;

pub use args::{LogCommand, VerifyArgs};

/// Prints one line of a command's report on stdout (the caller's error handling stops at a
/// closed pipe).
macro_rules! say {
    ($($arg:tt)*) => {
        {
            use std::io::Write as _;
            writeln!(std::io::stdout().lock(), $($arg)*)?
        }
    };
}
pub(crate) use say;

/// The kagi service, as far as a verifier talks to it: public reads, and the one auditor call
/// (`kagi log verify`'s full recomputation). Nothing it answers is trusted; every answer is
/// checked against pinned keys and certificates.
pub trait Service {
    fn get_text(&self, path: &str) -> anyhow::Result<String>;
    fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value>;
    fn post_json(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value>;
    /// Whether requests carry a credential (the auditor call needs one).
    fn has_credential(&self) -> bool {
        true
    }
}
