//! kagi-crypto: the algorithms kagi names and the public-key half of its signatures.
//!
//! [`Algorithm`], [`DigestAlg`] and [`RsaPadding`] are the names users type and the sealed
//! attributes store; [`verify_digest`] checks a signature over a digest with a public key.
//! Nothing here holds or parses a private key.
//!
//! Why a crate of its own: a relying party's verifier (`kagi-verify`) needs exactly this and no
//! more, and hsm-core (which adds the store, sealing and private keys) pulls in diesel, libpq,
//! SQLite, Argon2 and Shamir. hsm-core re-exports these items, so `kagi_hsm_core::Algorithm` and
//! `kagi_hsm_core::verify_digest` keep working for the service's code. The only dependency is the
//! crypto engine (aws-lc-rs) that hsm-core signs with, so a signature and its check can never
//! disagree about an algorithm's parameters.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod algorithm;
mod verify;

pub use algorithm::{Algorithm, DigestAlg, RsaPadding};
pub use verify::verify_digest;

/// What can go wrong naming an algorithm or checking a signature. The texts and codes are the
/// ones hsm-core's `HsmError` gives for the same mistakes, so the HTTP API and the CLI say the
/// same thing whichever crate found the mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("unknown algorithm '{0}': use one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")]
    UnknownAlgorithm(String),
    /// A digest or padding name that is not one of kagi's; the message names the valid ones.
    #[error("invalid request: {0}")]
    BadInput(String),
    /// The engine refused the inputs (a malformed public key, a digest of the wrong length).
    #[error("crypto engine error: {0}")]
    Crypto(&'static str),
}

impl Error {
    /// The stable machine code, as `HsmError::code` gives it.
    pub fn code(&self) -> &'static str {
        match self {
            Error::UnknownAlgorithm(_) => "unknown_algorithm",
            Error::BadInput(_) => "bad_request",
            Error::Crypto(_) => "crypto_error",
        }
    }
}

impl From<aws_lc_rs::error::Unspecified> for Error {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        Error::Crypto("operation failed")
    }
}
