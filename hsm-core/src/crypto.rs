//! The one module that calls the crypto engine (aws-lc-rs) for private-key work.
//!
//! Keeping key generation, parsing and signing here makes the engine swappable and keeps every
//! plaintext PKCS#8 buffer inside `Zeroizing`. aws-lc frees key objects with OPENSSL_free, which
//! cleanses memory, so dropping a [`LoadedKey`] also wipes the key.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use zeroize::Zeroizing;

use crate::algorithm::{Algorithm, DigestAlg, RsaPadding};
use crate::error::{HsmError, Result};

/// A private key ready to sign. Never serialized, never printed.
pub(crate) enum LoadedKey {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoadedKey(<private>)")
    }
}

fn ecdsa_alg(alg: Algorithm) -> Result<&'static signature::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::EcP256 => Ok(&signature::ECDSA_P256_SHA256_ASN1_SIGNING),
        Algorithm::EcP384 => Ok(&signature::ECDSA_P384_SHA384_ASN1_SIGNING),
        _ => Err(HsmError::Crypto("not an EC algorithm")),
    }
}

/// Generate a key; returns its PKCS#8 (to be sealed at once) and its SPKI DER.
pub(crate) fn generate(alg: Algorithm) -> Result<(Zeroizing<Vec<u8>>, Vec<u8>)> {
    let pkcs8 = match alg {
        Algorithm::EcP256 | Algorithm::EcP384 => {
            let kp = EcdsaKeyPair::generate(ecdsa_alg(alg)?)?;
            Zeroizing::new(kp.to_pkcs8v1()?.as_ref().to_vec())
        }
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            let size = match alg {
                Algorithm::Rsa2048 => KeySize::Rsa2048,
                Algorithm::Rsa3072 => KeySize::Rsa3072,
                _ => KeySize::Rsa4096,
            };
            let kp = RsaKeyPair::generate(size)?;
            let der: Pkcs8V1Der<'static> = kp.as_der()?;
            Zeroizing::new(der.as_ref().to_vec())
        }
        Algorithm::Ed25519 => {
            let kp = Ed25519KeyPair::generate()?;
            Zeroizing::new(kp.to_pkcs8v1()?.as_ref().to_vec())
        }
    };
    let key = load(alg, &pkcs8)?;
    let spki = key.public_key_der()?;
    Ok((pkcs8, spki))
}

/// Parse PKCS#8 into a signing key of the expected algorithm. Rejects a key whose type or size
/// differs from `alg`, so an imported key cannot claim to be something it is not.
pub(crate) fn load(alg: Algorithm, pkcs8: &[u8]) -> Result<LoadedKey> {
    let bad = |_| HsmError::BadInput(format!("the key material is not a valid {alg} PKCS#8 key"));
    let key = match alg {
        Algorithm::EcP256 | Algorithm::EcP384 => {
            LoadedKey::Ecdsa(EcdsaKeyPair::from_pkcs8(ecdsa_alg(alg)?, pkcs8).map_err(bad)?)
        }
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            let kp = RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?;
            let want = match alg {
                Algorithm::Rsa2048 => 256,
                Algorithm::Rsa3072 => 384,
                _ => 512,
            };
            if kp.public_modulus_len() != want {
                return Err(HsmError::BadInput(format!(
                    "the RSA key is {} bits, not {alg}",
                    kp.public_modulus_len() * 8
                )));
            }
            LoadedKey::Rsa(kp)
        }
        Algorithm::Ed25519 => LoadedKey::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?),
    };
    Ok(key)
}

impl LoadedKey {
    pub(crate) fn public_key_der(&self) -> Result<Vec<u8>> {
        Ok(match self {
            LoadedKey::Ecdsa(k) => k.public_key().as_der()?.as_ref().to_vec(),
            LoadedKey::Rsa(k) => k.public_key().as_der()?.as_ref().to_vec(),
            LoadedKey::Ed25519(k) => k.public_key().as_der()?.as_ref().to_vec(),
        })
    }

    /// Sign a precomputed digest. For Ed25519 (which has no prehash mode in PKCS#11's CKM_EDDSA
    /// without parameters) the digest bytes are the message.
    pub(crate) fn sign_digest(
        &self,
        digest_alg: DigestAlg,
        digest: &[u8],
        padding: RsaPadding,
    ) -> Result<Vec<u8>> {
        match self {
            LoadedKey::Ecdsa(k) => {
                // aws-lc-rs binds each ECDSA key to one digest (P-256/SHA-256,
                // P-384/SHA-384). ECDSA itself only uses the digest as an integer: FIPS 186-5's
                // bits2int takes its leftmost qlen bits. Left-padding a shorter digest with
                // zero bytes, or cutting a longer one to the curve's size, gives the same
                // integer, so the signature is exactly ECDSA over the caller's digest.
                let native = if k.algorithm() == &signature::ECDSA_P384_SHA384_ASN1_SIGNING {
                    DigestAlg::Sha384
                } else {
                    DigestAlg::Sha256
                };
                let q = native.output_len();
                let mut z = vec![0u8; q];
                if digest.len() >= q {
                    z.copy_from_slice(&digest[..q]);
                } else {
                    z[q - digest.len()..].copy_from_slice(digest);
                }
                let d = aws_lc_rs::digest::Digest::import_less_safe(&z, native.aws())?;
                Ok(k.sign_digest(&d)?.as_ref().to_vec())
            }
            LoadedKey::Rsa(k) => {
                let d = aws_lc_rs::digest::Digest::import_less_safe(digest, digest_alg.aws())?;
                let enc: &'static dyn signature::RsaEncoding = match (padding, digest_alg) {
                    (RsaPadding::Pkcs1v15, DigestAlg::Sha256) => &signature::RSA_PKCS1_SHA256,
                    (RsaPadding::Pkcs1v15, DigestAlg::Sha384) => &signature::RSA_PKCS1_SHA384,
                    (RsaPadding::Pkcs1v15, DigestAlg::Sha512) => &signature::RSA_PKCS1_SHA512,
                    (RsaPadding::Pss, DigestAlg::Sha256) => &signature::RSA_PSS_SHA256,
                    (RsaPadding::Pss, DigestAlg::Sha384) => &signature::RSA_PSS_SHA384,
                    (RsaPadding::Pss, DigestAlg::Sha512) => &signature::RSA_PSS_SHA512,
                };
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign_digest(enc, &d, &mut sig)?;
                Ok(sig)
            }
            LoadedKey::Ed25519(k) => Ok(k.try_sign(digest)?.as_ref().to_vec()),
        }
    }
}

/// [`kagi_crypto::verify_digest`] with hsm-core's error type, for the `Hsm` methods that verify
/// with a stored key's public half.
pub fn verify_digest(
    alg: Algorithm,
    spki: &[u8],
    digest_alg: DigestAlg,
    digest: &[u8],
    padding: RsaPadding,
    sig: &[u8],
) -> Result<bool> {
    Ok(kagi_crypto::verify_digest(
        alg, spki, digest_alg, digest, padding, sig,
    )?)
}
