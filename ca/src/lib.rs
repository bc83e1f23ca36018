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
pub mod tsa;
pub mod x509;

pub use authority::{Authority, PublicUrls};
pub use error::CaError;
pub use hierarchy::CaSpec;
pub use issue::{IssueOptions, Issued};
pub use profile::{Days, Profile, Profiles};
