//! kagi-x509: the certificate helpers a verifier shares with the CA, with no key and no store.
//!
//! - [`algorithms`]: the one table of signature-algorithm and digest OIDs kagi signs and
//!   verifies X.509 and CMS structures with;
//! - [`sct`]: RFC 6962 signed certificate timestamps: the signed data, the embedded list, and
//!   the precertificate TBS a verifier rebuilds;
//! - [`key_type`]: which kagi [`Algorithm`] a SubjectPublicKeyInfo holds;
//! - [`ocsp`] and [`rfc3161`]: the ASN.1 of OCSP (RFC 6960) and time-stamping (RFC 3161), which
//!   the CA's responder and TSA write and the verifier reads.
//!
//! Why a crate of its own: the `ca` crate signs with hsm-core keys and so links hsm-core's
//! store (diesel, libpq, SQLite) and its secrets' crates (Argon2, Shamir). A relying party's
//! verifier needs only these pure encodings. `ca` re-exports them under their old paths
//! (`kagi_ca::algorithms`, `kagi_ca::sct`, `kagi_ca::csr::key_type`), so the CA's code is unchanged, and the
//! bytes the CA signs and the bytes a verifier rebuilds come from the same functions.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod algorithms;
mod key;
pub mod ocsp;
pub mod rfc3161;
pub mod sct;

pub use kagi_crypto::{Algorithm, DigestAlg};
pub use key::key_type;

/// What can go wrong reading or encoding these structures. `ca` maps each variant onto its own
/// error of the same class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A public key that does not parse.
    #[error("{0}")]
    BadKey(String),
    /// A well-formed public key of a type or size kagi does not use.
    #[error("{0}")]
    UnsupportedKey(String),
    /// Input (a certificate, an SCT list) that does not have the expected form.
    #[error("{0}")]
    Malformed(String),
    /// A value that cannot be encoded (a length beyond its field).
    #[error("{0}")]
    Encoding(String),
}

impl From<der::Error> for Error {
    fn from(e: der::Error) -> Self {
        Error::Malformed(format!("DER: {e}"))
    }
}
