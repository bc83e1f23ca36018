//! The HSM key handle as a RustCrypto signer: x509-cert's builders take it like any software
//! key, but every signature is made, counted and audited inside hsm-core, and the builders never
//! see key bytes.

use der::asn1::BitString;
use der::Decode;
use kagi_hsm_core::{Algorithm, DigestAlg, Hsm, RsaPadding, Session, SignRequest};
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};

use crate::algorithms::{self, Family};
use crate::error::CaError;

/// A CA key in hsm-core, usable wherever RustCrypto wants a `Signer`.
#[derive(Clone)]
pub struct HsmSigner {
    hsm: Hsm,
    session: Session,
    label: String,
    alg: Algorithm,
    spki_der: Vec<u8>,
    /// Joins the audit record of each use: what was signed (a CRL, an OCSP response, a CA
    /// certificate) and for whom.
    audit: serde_json::Value,
}

/// The public half, as the builders ask for it.
#[derive(Clone, Debug)]
pub struct HsmPublicKey(Vec<u8>);

impl EncodePublicKey for HsmPublicKey {
    fn to_public_key_der(&self) -> spki::Result<der::Document> {
        Ok(der::Document::from_der(&self.0)?)
    }
}

/// A signature made by hsm-core (DER ECDSA-Sig-Value or RSA PKCS#1 v1.5 bytes).
#[derive(Clone, Debug)]
pub struct HsmSignature(pub Vec<u8>);

impl SignatureBitStringEncoding for HsmSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

/// Which digest and signature algorithm a CA key signs X.509 structures with.
pub fn signature_algorithm(
    alg: Algorithm,
) -> Result<(DigestAlg, AlgorithmIdentifierOwned), CaError> {
    let (family, digest) = match alg {
        Algorithm::EcP256 => (Family::Ecdsa, DigestAlg::Sha256),
        Algorithm::EcP384 => (Family::Ecdsa, DigestAlg::Sha384),
        Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => {
            (Family::Rsa, DigestAlg::Sha256)
        }
        Algorithm::Ed25519 => {
            return Err(CaError::BadRequest(
                "a CA key must be ec-p256, ec-p384 or rsa-2048/3072/4096 (kagi signs Ed25519 over digests, which X.509 does not use)".into(),
            ))
        }
    };
    Ok((digest, algorithms::identifier(family, digest)?))
}

pub fn digest(alg: DigestAlg, data: &[u8]) -> Vec<u8> {
    let d = match alg {
        DigestAlg::Sha256 => &aws_lc_rs::digest::SHA256,
        DigestAlg::Sha384 => &aws_lc_rs::digest::SHA384,
        DigestAlg::Sha512 => &aws_lc_rs::digest::SHA512,
    };
    aws_lc_rs::digest::digest(d, data).as_ref().to_vec()
}

impl HsmSigner {
    /// A handle on CA key `label` in `session`'s partition. Reads the public key once.
    pub fn new(hsm: &Hsm, session: &Session, label: &str) -> Result<HsmSigner, CaError> {
        let info = hsm.key_info(session, label)?;
        signature_algorithm(info.algorithm)?;
        Ok(HsmSigner {
            hsm: hsm.clone(),
            session: session.clone(),
            label: label.to_string(),
            alg: info.algorithm,
            spki_der: info.public_key_der.clone(),
            audit: serde_json::json!({}),
        })
    }

    /// The same key, used by another session (the audit records name who asked).
    pub fn for_session(&self, session: &Session) -> HsmSigner {
        HsmSigner {
            session: session.clone(),
            ..self.clone()
        }
    }

    /// The same handle, with `detail` added to the audit record of each use.
    pub fn with_audit(mut self, detail: serde_json::Value) -> HsmSigner {
        self.audit = detail;
        self
    }

    /// The AlgorithmIdentifier this key's X.509 signatures carry.
    pub fn signature_algorithm_identifier_owned(
        &self,
    ) -> Result<AlgorithmIdentifierOwned, CaError> {
        signature_algorithm(self.alg).map(|(_, id)| id)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub fn hsm(&self) -> &Hsm {
        &self.hsm
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn spki(&self) -> Result<SubjectPublicKeyInfoOwned, CaError> {
        Ok(SubjectPublicKeyInfoOwned::from_der(&self.spki_der)?)
    }

    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The request hsm-core signs for `tbs`: its digest, under this key's X.509 algorithm.
    pub fn sign_request(&self, tbs: &[u8]) -> Result<SignRequest, CaError> {
        let (d, _) = signature_algorithm(self.alg)?;
        Ok(SignRequest {
            digest_alg: Some(d),
            digest: digest(d, tbs),
            padding: RsaPadding::Pkcs1v15,
        })
    }

    /// Sign `tbs` through hsm-core with typed errors (the `Signer` impl wraps this).
    pub fn sign_tbs(&self, tbs: &[u8]) -> Result<Vec<u8>, CaError> {
        let req = self.sign_request(tbs)?;
        let signed = self
            .hsm
            .sign_as_ca(&self.session, &self.label, &req, self.audit.clone())?;
        Ok(signed.signature)
    }
}

impl signature::Keypair for HsmSigner {
    type VerifyingKey = HsmPublicKey;

    fn verifying_key(&self) -> HsmPublicKey {
        HsmPublicKey(self.spki_der.clone())
    }
}

impl DynSignatureAlgorithmIdentifier for HsmSigner {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        signature_algorithm(self.alg)
            .map(|(_, id)| id)
            .map_err(|_| spki::Error::AlgorithmParametersMissing)
    }
}

impl signature::Signer<HsmSignature> for HsmSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<HsmSignature, signature::Error> {
        self.sign_tbs(msg)
            .map(HsmSignature)
            .map_err(signature::Error::from_source)
    }
}

/// The same HSM key for rcgen's builders (`rcgen::KeyPair::from_remote`): rcgen hands over
/// the bytes to sign and gets the signature back; the key stays in hsm-core.
pub struct HsmRemoteKey {
    signer: HsmSigner,
    raw_public_key: Vec<u8>,
    alg: &'static rcgen::SignatureAlgorithm,
}

impl HsmRemoteKey {
    pub fn new(signer: HsmSigner) -> Result<HsmRemoteKey, CaError> {
        let alg = match signer.alg {
            Algorithm::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            Algorithm::Ed25519 => {
                return Err(CaError::BadRequest(
                    "rcgen signs with CA keys only (ec-p256, ec-p384, rsa-*)".into(),
                ))
            }
        };
        let raw_public_key = signer.spki()?.subject_public_key.raw_bytes().to_vec();
        Ok(HsmRemoteKey {
            signer,
            raw_public_key,
            alg,
        })
    }

    /// An rcgen key pair whose private half is this HSM key.
    pub fn into_key_pair(self) -> Result<rcgen::KeyPair, CaError> {
        rcgen::KeyPair::from_remote(Box::new(self))
            .map_err(|e| CaError::Internal(format!("rcgen: {e}")))
    }
}

impl rcgen::RemoteKeyPair for HsmRemoteKey {
    fn public_key(&self) -> &[u8] {
        &self.raw_public_key
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign_tbs(msg).map_err(|e| {
            log::warn!("rcgen signing through hsm-core failed: {e}");
            rcgen::Error::RemoteKeyError
        })
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.alg
    }
}

/// Recover the typed error a builder wrapped in `signature::Error`.
pub(crate) fn unwrap_builder_error(e: x509_cert::builder::Error) -> CaError {
    use std::error::Error as _;
    if let x509_cert::builder::Error::Signature(sig) = &e {
        if let Some(src) = sig.source() {
            if let Some(ca) = src.downcast_ref::<CaError>() {
                return ca.clone_shallow();
            }
        }
    }
    CaError::Internal(format!("certificate builder: {e}"))
}
