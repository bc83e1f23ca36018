//! Signature verification over a precomputed digest, with a public key only.

use aws_lc_rs::signature::{self, VerificationAlgorithm};

use crate::{Algorithm, DigestAlg, Error, RsaPadding};

/// Verify a signature over a digest with a public key (SPKI DER): what `Hsm::verify` does,
/// without the HSM, for clients checking signatures offline. `Ok(false)` is a signature that
/// does not verify; `Err` is input the engine cannot use (a malformed key or digest).
///
/// Ed25519 signs the digest bytes as its message (kagi's raw format: Ed25519 has no
/// digest-only mode). ECDSA accepts any SHA-2 digest with either curve, as hsm-core signs it.
pub fn verify_digest(
    alg: Algorithm,
    spki: &[u8],
    digest_alg: DigestAlg,
    digest: &[u8],
    padding: RsaPadding,
    sig: &[u8],
) -> Result<bool, Error> {
    let d = aws_lc_rs::digest::Digest::import_less_safe(digest, digest_alg.aws())?;
    let vk: &'static dyn VerificationAlgorithm = match alg {
        Algorithm::Ed25519 => {
            return Ok(
                signature::UnparsedPublicKey::new(&signature::ED25519, raw_ed25519(spki)?)
                    .verify(digest, sig)
                    .is_ok(),
            )
        }
        Algorithm::EcP256 | Algorithm::EcP384 => match (alg, digest_alg) {
            (Algorithm::EcP256, DigestAlg::Sha256) => &signature::ECDSA_P256_SHA256_ASN1,
            (Algorithm::EcP256, DigestAlg::Sha384) => &signature::ECDSA_P256_SHA384_ASN1,
            (Algorithm::EcP256, DigestAlg::Sha512) => &signature::ECDSA_P256_SHA512_ASN1,
            (_, DigestAlg::Sha256) => &signature::ECDSA_P384_SHA256_ASN1,
            (_, DigestAlg::Sha384) => &signature::ECDSA_P384_SHA384_ASN1,
            (_, DigestAlg::Sha512) => &signature::ECDSA_P384_SHA512_ASN1,
        },
        _ => match (padding, digest_alg) {
            (RsaPadding::Pkcs1v15, DigestAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
            (RsaPadding::Pkcs1v15, DigestAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
            (RsaPadding::Pkcs1v15, DigestAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
            (RsaPadding::Pss, DigestAlg::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
            (RsaPadding::Pss, DigestAlg::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
            (RsaPadding::Pss, DigestAlg::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
        },
    };
    let pk =
        signature::ParsedPublicKey::new(vk, spki).map_err(|_| Error::Crypto("bad public key"))?;
    Ok(pk.verify_digest_sig(&d, sig).is_ok())
}

/// Ed25519 SPKI is a fixed 12-byte prefix plus the 32-byte key.
fn raw_ed25519(spki: &[u8]) -> Result<&[u8], Error> {
    if spki.len() == 44 {
        Ok(&spki[12..])
    } else {
        Err(Error::Crypto("bad Ed25519 public key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    #[test]
    fn verifies_what_the_engine_signs_and_refuses_the_rest() {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap();
        let spki = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(
            kp.public_key(),
        )
        .unwrap();
        let msg = b"kagi";
        let sig = kp.sign(&rng, msg).unwrap();
        let digest = DigestAlg::Sha256.hash(msg);
        let ok = |sig: &[u8]| {
            verify_digest(
                Algorithm::EcP256,
                spki.as_ref(),
                DigestAlg::Sha256,
                &digest,
                RsaPadding::Pkcs1v15,
                sig,
            )
        };
        assert_eq!(ok(sig.as_ref()), Ok(true));
        let mut bad = sig.as_ref().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(ok(&bad), Ok(false));
        assert_eq!(
            verify_digest(
                Algorithm::Ed25519,
                b"short",
                DigestAlg::Sha256,
                &digest,
                RsaPadding::Pkcs1v15,
                sig.as_ref()
            ),
            Err(Error::Crypto("bad Ed25519 public key"))
        );
        assert_eq!(
            "md5".parse::<DigestAlg>().unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(
            "rsa-1024".parse::<Algorithm>().unwrap_err().code(),
            "unknown_algorithm"
        );
    }
}
