//! The signature algorithms kagi signs and verifies X.509 and CMS structures with, in one
//! table: ECDSA (RFC 5758, no parameters) and RSA PKCS#1 v1.5 (RFC 4055, NULL parameters), each
//! with SHA-256, SHA-384 or SHA-512; and the SHA-2 digest OIDs.
//!
//! The table lives in `kagi-x509` (verifiers read it without the CA); the AlgorithmIdentifier
//! the CA writes into what it signs is built here.

use der::asn1::Null;
use der::Any;
use kagi_hsm_core::DigestAlg;
use spki::AlgorithmIdentifierOwned;

pub use kagi_x509::algorithms::{digest_from_oid, digest_oid, key_family, scheme, Family};

use crate::error::CaError;

/// The AlgorithmIdentifier for `family` with `digest`.
pub fn identifier(family: Family, digest: DigestAlg) -> Result<AlgorithmIdentifierOwned, CaError> {
    let oid = kagi_x509::algorithms::signature_oid(family, digest)
        .ok_or_else(|| CaError::Internal(format!("no {family:?} algorithm with {digest:?}")))?;
    let parameters = match family {
        Family::Rsa => Some(Any::encode_from(&Null)?),
        Family::Ecdsa => None,
    };
    Ok(AlgorithmIdentifierOwned { oid, parameters })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_carry_parameters_only_for_rsa() {
        for (oid, family, digest) in kagi_x509::algorithms::TABLE {
            let id = identifier(family, digest).unwrap();
            assert_eq!(id.oid, oid);
            assert_eq!(id.parameters.is_some(), family == Family::Rsa);
        }
    }
}
