//! The algorithms kagi supports, named the way users type them. They live in `kagi-crypto`,
//! which verifiers use without hsm-core; this module keeps their hsm-core paths.

pub use kagi_crypto::{Algorithm, DigestAlg, Error as AlgorithmError, RsaPadding};

use crate::error::HsmError;

impl From<kagi_crypto::Error> for HsmError {
    fn from(e: kagi_crypto::Error) -> Self {
        match e {
            kagi_crypto::Error::UnknownAlgorithm(name) => HsmError::UnknownAlgorithm(name),
            kagi_crypto::Error::BadInput(why) => HsmError::BadInput(why),
            kagi_crypto::Error::Crypto(what) => HsmError::Crypto(what),
            // A variant added later: keep its code's class (bad input) and its whole text.
            other => HsmError::BadInput(other.to_string()),
        }
    }
}
