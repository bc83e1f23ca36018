//! The signature algorithms kagi signs and verifies X.509 and CMS structures with, in one
//! table: ECDSA (RFC 5758, no parameters) and RSA PKCS#1 v1.5 (RFC 4055, NULL parameters), each
//! with SHA-256, SHA-384 or SHA-512; and the SHA-2 digest OIDs.

use const_oid::db::rfc5912;
use const_oid::ObjectIdentifier;
use kagi_crypto::DigestAlg;

/// A key family, as signature algorithms name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Ecdsa,
    Rsa,
}

/// Every signature algorithm kagi signs or verifies with: (OID, key family, digest).
pub const TABLE: [(ObjectIdentifier, Family, DigestAlg); 6] = [
    (
        rfc5912::ECDSA_WITH_SHA_256,
        Family::Ecdsa,
        DigestAlg::Sha256,
    ),
    (
        rfc5912::ECDSA_WITH_SHA_384,
        Family::Ecdsa,
        DigestAlg::Sha384,
    ),
    (
        rfc5912::ECDSA_WITH_SHA_512,
        Family::Ecdsa,
        DigestAlg::Sha512,
    ),
    (
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
        Family::Rsa,
        DigestAlg::Sha256,
    ),
    (
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
        Family::Rsa,
        DigestAlg::Sha384,
    ),
    (
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
        Family::Rsa,
        DigestAlg::Sha512,
    ),
];

/// The key family and digest a signature algorithm OID names, if kagi knows it.
pub fn scheme(oid: &ObjectIdentifier) -> Option<(Family, DigestAlg)> {
    TABLE
        .iter()
        .find(|(o, _, _)| o == oid)
        .map(|(_, f, d)| (*f, *d))
}

/// The signature algorithm OID for `family` with `digest`: every pair is in the table.
pub fn signature_oid(family: Family, digest: DigestAlg) -> Option<ObjectIdentifier> {
    TABLE
        .iter()
        .find(|(_, f, d)| *f == family && *d == digest)
        .map(|(o, _, _)| *o)
}

/// The OID of a SHA-2 digest.
pub fn digest_oid(alg: DigestAlg) -> ObjectIdentifier {
    match alg {
        DigestAlg::Sha256 => rfc5912::ID_SHA_256,
        DigestAlg::Sha384 => rfc5912::ID_SHA_384,
        DigestAlg::Sha512 => rfc5912::ID_SHA_512,
    }
}

/// The SHA-2 digest an OBJECT IDENTIFIER names, if it names one kagi uses.
pub fn digest_from_oid(oid: &ObjectIdentifier) -> Option<DigestAlg> {
    [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512]
        .into_iter()
        .find(|d| digest_oid(*d) == *oid)
}

/// The family of a SubjectPublicKeyInfo's algorithm (id-ecPublicKey or rsaEncryption).
pub fn key_family(spki_algorithm: &ObjectIdentifier) -> Option<Family> {
    match *spki_algorithm {
        o if o == rfc5912::ID_EC_PUBLIC_KEY => Some(Family::Ecdsa),
        o if o == rfc5912::RSA_ENCRYPTION => Some(Family::Rsa),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_round_trips() {
        for (oid, family, digest) in TABLE {
            assert_eq!(signature_oid(family, digest), Some(oid));
            assert_eq!(scheme(&oid), Some((family, digest)));
        }
        assert_eq!(scheme(&rfc5912::ID_SHA_256), None);
        for d in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
            assert_eq!(digest_from_oid(&digest_oid(d)), Some(d));
        }
    }
}
