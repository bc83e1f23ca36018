//! ca: the X.509 certificate authority whose keys live in hsm-core.
//!
//! - [`hierarchy`] creates root and intermediate CAs (keys generated in hsm-core, quorum-gated);
//! - [`profile`] holds certificate profiles as data, [`csr`] verifies requests against nothing
//!   but their own key, [`issue`] judges them against a profile, lints the result and signs it;
//! - [`crl`], [`ocsp`] and [`pkcs7`] answer relying parties and EST clients;
//! - [`hsm_key`] is the HSM key handle as a RustCrypto `Signer`.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod algorithms;
pub mod authority;
pub mod cms_sign;
pub mod crl;
pub mod csr;
pub mod error;
pub mod extensions;
pub mod fulcio;
pub mod hierarchy;
pub mod hsm_key;
pub mod issue;
pub mod ocsp;
pub mod pkcs7;
pub mod profile;
pub mod rfc3161;
pub mod sct;
pub mod serial;
pub mod service;
pub mod tsa;
pub mod x509;

pub use authority::{Authority, PublicUrls};
pub use error::CaError;
pub use hierarchy::CaSpec;
pub use issue::{IssueOptions, Issued};
pub use profile::{Days, Profile, Profiles};

/// The pure certificate helpers (`kagi-x509`) fail with their own error; in the CA each lands
/// on the class it always had: a bad key in a CSR, a key type no profile takes, a malformed
/// input, or an encoding the CA itself got wrong.
impl From<kagi_x509::Error> for CaError {
    fn from(e: kagi_x509::Error) -> Self {
        match e {
            kagi_x509::Error::BadKey(why) => CaError::BadCsr(why),
            kagi_x509::Error::UnsupportedKey(why) => CaError::NotAllowed(why),
            kagi_x509::Error::Malformed(why) => CaError::BadRequest(why),
            kagi_x509::Error::Encoding(why) => CaError::Internal(why),
            other => CaError::Internal(other.to_string()),
        }
    }
}
