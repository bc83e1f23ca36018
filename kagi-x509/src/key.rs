//! Which kagi algorithm a public key is, read from its SubjectPublicKeyInfo: the CA checks CSRs
//! with it, verifiers pick the verification algorithm with it.

use const_oid::ObjectIdentifier;
use der::{Decode, Sequence};
use kagi_crypto::Algorithm;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::Error;

const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// RFC 8017 RSAPublicKey, to learn the modulus size.
#[derive(Sequence)]
struct RsaPublicKey<'a> {
    modulus: der::asn1::UintRef<'a>,
    public_exponent: der::asn1::UintRef<'a>,
}

fn bad(msg: String) -> Error {
    Error::BadKey(msg)
}

/// Which kagi algorithm a public key is (EC P-256/P-384, RSA 2048/3072/4096, Ed25519).
pub fn key_type(spki: &SubjectPublicKeyInfoOwned) -> Result<Algorithm, Error> {
    let oid = spki.algorithm.oid;
    if oid == ID_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
            .ok_or_else(|| bad("its EC public key names no curve".into()))?;
        return match curve {
            c if c == SECP256R1 => Ok(Algorithm::EcP256),
            c if c == SECP384R1 => Ok(Algorithm::EcP384),
            c => Err(Error::UnsupportedKey(format!(
                "wrong key type: EC curve {c} is not supported (use P-256 or P-384)"
            ))),
        };
    }
    if oid == RSA_ENCRYPTION {
        let raw = spki.subject_public_key.raw_bytes();
        let key = RsaPublicKey::from_der(raw)
            .map_err(|e| bad(format!("its RSA public key is malformed: {e}")))?;
        let bits = key.modulus.as_bytes().len() * 8
            - key
                .modulus
                .as_bytes()
                .first()
                .map(|b| b.leading_zeros() as usize)
                .unwrap_or(0);
        return match bits {
            2048 => Ok(Algorithm::Rsa2048),
            3072 => Ok(Algorithm::Rsa3072),
            4096 => Ok(Algorithm::Rsa4096),
            b => Err(Error::UnsupportedKey(format!(
                "wrong key type: RSA-{b} is not supported (use 2048, 3072 or 4096 bits)"
            ))),
        };
    }
    if oid == ED25519 {
        return Ok(Algorithm::Ed25519);
    }
    Err(Error::UnsupportedKey(format!(
        "wrong key type: public key algorithm {oid} is not supported (use EC P-256/P-384, RSA or Ed25519)"
    )))
}
