//! CMS SignedData (RFC 5652) made by a key kagi holds.
//!
//! [`detached_signed_data`] signs a digest the client computed, so the file being signed never
//! reaches the service: the result is a detached signature (`.p7s`) that `openssl cms -verify
//! -content file` and other CMS verifiers check against the file. [`add_timestamp_token`] and
//! [`signature_value`] attach an RFC 3161 signature timestamp to it afterwards. The time-stamp
//! authority in [`crate::tsa`] uses the same construction with its content attached.
//!
//! Who signs is a callback ([`CmsSigner::sign`]), so the HSM signer and a software key in a test
//! go through the same code.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, DigestAlgorithmIdentifiers, EncapsulatedContentInfo, SignedData,
    SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::db::{rfc3161, rfc5911, rfc5912};
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag};
use kagi_hsm_core::DigestAlg;
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

use crate::algorithms::{self, Family};
pub(crate) use crate::algorithms::{digest_from_oid, digest_oid};
use crate::error::CaError;

/// What signs: the SignerInfo's signatureAlgorithm and a function from the DER of the signed
/// attributes (an explicit SET OF, tag 0x31) to the signature over them.
pub struct CmsSigner<'a> {
    /// The signer's certificate (DER). Its issuer and serial number identify the signer.
    pub cert_der: &'a [u8],
    /// More certificates to include (DER): intermediates, optionally the root.
    pub chain: &'a [Vec<u8>],
    /// The SignerInfo's digestAlgorithm: what the messageDigest attribute was computed with.
    /// OpenSSL also verifies the signature over the signed attributes with this hash, so it must
    /// be the hash the signature algorithm names.
    pub digest: DigestAlg,
    /// The SignerInfo's signatureAlgorithm (ecdsa-with-SHA256/384/512 or
    /// sha256/384/512WithRSAEncryption).
    pub signature_algorithm: AlgorithmIdentifierOwned,
    /// Signs the DER of the signed attributes (it hashes them itself, as `HsmSigner::sign_tbs`
    /// does) and returns a DER ECDSA-Sig-Value or RSA PKCS#1 v1.5 signature.
    pub sign: &'a SignFn<'a>,
}

/// The signing callback of [`CmsSigner`]: signed-attributes DER in, signature out.
pub type SignFn<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, CaError> + 'a;

/// The digest algorithm identifier for a SignerInfo or a DigestAlgorithmIdentifiers set.
/// RFC 5754 §2: the SHA-2 identifiers are written with absent parameters.
pub(crate) fn digest_algorithm_identifier(alg: DigestAlg) -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: digest_oid(alg),
        parameters: None,
    }
}

/// Build a detached SignedData over `message_digest`, the client's digest of the file under
/// `signer.digest`, and return its ContentInfo DER.
///
/// The SignedData is version 1 with eContentType id-data and no eContent; its one SignerInfo
/// (version 1, issuerAndSerialNumber) carries the signed attributes contentType, signingTime
/// and messageDigest, and the certificates are the signer's plus `signer.chain`.
pub fn detached_signed_data(
    message_digest: &[u8],
    signing_time_unix: i64,
    signer: &CmsSigner,
) -> Result<Vec<u8>, CaError> {
    if message_digest.len() != signer.digest.output_len() {
        return Err(CaError::BadRequest(format!(
            "the message digest is {} bytes, but {} digests are {} bytes; hash the file with {} \
             (the algorithm this key signs with) and send the raw digest, not hex",
            message_digest.len(),
            signer.digest.as_str(),
            signer.digest.output_len(),
            signer.digest.as_str()
        )));
    }
    build(
        &Content {
            content_type: rfc5911::ID_DATA,
            attached: None,
            message_digest,
        },
        signing_time_unix,
        Vec::new(),
        true,
        signer,
    )
}

/// What a SignedData wraps.
pub(crate) struct Content<'a> {
    /// eContentType, and the value of the contentType signed attribute.
    pub content_type: ObjectIdentifier,
    /// The eContent octets, or `None` for a detached signature.
    pub attached: Option<&'a [u8]>,
    /// The digest of the content under the signer's digest algorithm.
    pub message_digest: &'a [u8],
}

/// Build a SignedData ContentInfo with one SignerInfo. `extra_attrs` join the three signed
/// attributes every signature carries; `include_certs` decides whether the certificates go in
/// (an RFC 3161 client may ask for a token without them).
pub(crate) fn build(
    content: &Content,
    signing_time_unix: i64,
    extra_attrs: Vec<Attribute>,
    include_certs: bool,
    signer: &CmsSigner,
) -> Result<Vec<u8>, CaError> {
    let scheme = check_signature_algorithm(signer)?;
    let leaf = parse_canonical(signer.cert_der, "the signer certificate")?;
    // Settled before signing, so a misconfigured signer does not spend a (counted) HSM use.
    let verifier = verification_algorithm(&leaf, scheme)?;
    let certificates = if include_certs {
        Some(certificate_set(&leaf, signer)?)
    } else {
        None
    };

    let mut attrs = vec![
        attribute(rfc5911::ID_CONTENT_TYPE, &content.content_type)?,
        attribute(
            rfc5911::ID_SIGNING_TIME,
            &crate::x509::time(signing_time_unix)?,
        )?,
        attribute(
            rfc5911::ID_MESSAGE_DIGEST,
            &OctetString::new(content.message_digest)?,
        )?,
    ];
    attrs.extend(extra_attrs);
    // A SET OF is DER-sorted by its elements' encodings; SetOfVec sorts on construction, and the
    // signature covers exactly the bytes it encodes to.
    let signed_attrs: SetOfVec<Attribute> = SetOfVec::try_from(attrs)?;
    let to_sign = signed_attrs.to_der()?;
    let signature = (signer.sign)(&to_sign)?;
    verify_own_signature(&leaf, verifier, &to_sign, &signature)?;

    let tbs = leaf.tbs_certificate();
    let signer_info = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: tbs.issuer().clone(),
            serial_number: tbs.serial_number().clone(),
        }),
        digest_alg: digest_algorithm_identifier(signer.digest),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: signer.signature_algorithm.clone(),
        signature: OctetString::new(signature)?,
        unsigned_attrs: None,
    };

    let econtent = match content.attached {
        Some(bytes) => Some(Any::new(Tag::OctetString, bytes)?),
        None => None,
    };
    // RFC 5652 §5.1: version 3 once the content is anything but id-data (a TSTInfo), else 1.
    let version = if content.content_type == rfc5911::ID_DATA {
        CmsVersion::V1
    } else {
        CmsVersion::V3
    };
    let mut digest_algorithms = DigestAlgorithmIdentifiers::new();
    digest_algorithms.insert(digest_algorithm_identifier(signer.digest))?;
    let signed_data = SignedData {
        version,
        digest_algorithms,
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: content.content_type,
            econtent,
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::try_from(vec![signer_info])?),
    };
    Ok(ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    }
    .to_der()?)
}

/// One signed or unsigned attribute with a single value.
pub(crate) fn attribute(oid: ObjectIdentifier, value: &impl Encode) -> Result<Attribute, CaError> {
    let mut values = SetOfVec::new();
    // Through DER rather than `Any::encode_from`, which CHOICE types (Time) do not support.
    values.insert(Any::from_der(&value.to_der()?)?)?;
    Ok(Attribute { oid, values })
}

/// Parse a certificate and insist it re-encodes to the same bytes: the SignedData carries the
/// re-encoded form, and a certificate that changed on the way would no longer verify.
pub(crate) fn parse_canonical(der: &[u8], what: &str) -> Result<Certificate, CaError> {
    let cert = Certificate::from_der(der).map_err(|e| {
        CaError::BadRequest(format!(
            "{what} is not a DER X.509 certificate ({e}); pass DER, not PEM"
        ))
    })?;
    if cert.to_der()? != der {
        return Err(CaError::BadRequest(format!(
            "{what} does not re-encode to the same bytes, so its signature would break inside \
             the CMS message; reissue it in canonical DER"
        )));
    }
    Ok(cert)
}

fn certificate_set(leaf: &Certificate, signer: &CmsSigner) -> Result<CertificateSet, CaError> {
    let mut seen: Vec<&[u8]> = vec![signer.cert_der];
    let mut choices = vec![CertificateChoices::Certificate(leaf.clone())];
    for (index, der) in signer.chain.iter().enumerate() {
        // A chain that repeats the leaf or a CA is harmless, but a SET OF may hold each once.
        if seen.contains(&der.as_slice()) {
            continue;
        }
        seen.push(der);
        let cert = parse_canonical(der, &format!("chain certificate #{index}"))?;
        choices.push(CertificateChoices::Certificate(cert));
    }
    Ok(CertificateSet::try_from(choices)?)
}

/// Refuse combinations verifiers reject: OpenSSL verifies the signature over the signed
/// attributes with the SignerInfo's digestAlgorithm, whatever hash the signature OID names.
fn check_signature_algorithm(signer: &CmsSigner) -> Result<(Family, DigestAlg), CaError> {
    let oid = signer.signature_algorithm.oid;
    let Some((family, hash)) = algorithms::scheme(&oid) else {
        return Err(CaError::BadRequest(format!(
            "signature algorithm {oid} is not supported for CMS; sign with an ec-p256, ec-p384 \
             or rsa-* key (ecdsa-with-SHA256/384/512, sha256/384/512WithRSAEncryption)"
        )));
    };
    if hash != signer.digest {
        return Err(CaError::BadRequest(format!(
            "the digest algorithm {} does not match the {} the signature algorithm {oid} uses; \
             verifiers check the signature with the digest algorithm, so digest with {}",
            signer.digest.as_str(),
            hash.as_str(),
            hash.as_str()
        )));
    }
    Ok((family, hash))
}

/// The aws-lc verification algorithm for the signer certificate's key under `scheme`, or an
/// error when the signature algorithm does not fit that key.
fn verification_algorithm(
    leaf: &Certificate,
    (family, hash): (Family, DigestAlg),
) -> Result<&'static dyn sig::VerificationAlgorithm, CaError> {
    let spki = leaf.tbs_certificate().subject_public_key_info();
    let key_oid = spki.algorithm.oid;
    let mismatch = || {
        CaError::BadRequest(format!(
            "the signature algorithm does not fit the signer certificate's {key_oid} key; \
             use the signature algorithm of the key that certificate was issued for"
        ))
    };
    if key_oid == rfc5912::ID_EC_PUBLIC_KEY {
        if family != Family::Ecdsa {
            return Err(mismatch());
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        match (curve, hash) {
            (Some(c), DigestAlg::Sha256) if c == rfc5912::SECP_256_R_1 => {
                Ok(&sig::ECDSA_P256_SHA256_ASN1)
            }
            (Some(c), DigestAlg::Sha384) if c == rfc5912::SECP_256_R_1 => {
                Ok(&sig::ECDSA_P256_SHA384_ASN1)
            }
            (Some(c), DigestAlg::Sha512) if c == rfc5912::SECP_256_R_1 => {
                Ok(&sig::ECDSA_P256_SHA512_ASN1)
            }
            (Some(c), DigestAlg::Sha256) if c == rfc5912::SECP_384_R_1 => {
                Ok(&sig::ECDSA_P384_SHA256_ASN1)
            }
            (Some(c), DigestAlg::Sha384) if c == rfc5912::SECP_384_R_1 => {
                Ok(&sig::ECDSA_P384_SHA384_ASN1)
            }
            (Some(c), DigestAlg::Sha512) if c == rfc5912::SECP_384_R_1 => {
                Ok(&sig::ECDSA_P384_SHA512_ASN1)
            }
            _ => Err(CaError::BadRequest(
                "the signer certificate's EC key is not on P-256 or P-384".into(),
            )),
        }
    } else if key_oid == rfc5912::RSA_ENCRYPTION {
        if family != Family::Rsa {
            return Err(mismatch());
        }
        Ok(match hash {
            DigestAlg::Sha256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            DigestAlg::Sha384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            DigestAlg::Sha512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        })
    } else {
        Err(CaError::BadRequest(format!(
            "the signer certificate's key algorithm {key_oid} is not EC or RSA"
        )))
    }
}

/// Check the signature just made against the signer certificate before releasing it: a key that
/// does not belong to the certificate, or a callback that signs the wrong bytes, would otherwise
/// produce a signature every verifier rejects, found only when the signed file ships.
fn verify_own_signature(
    leaf: &Certificate,
    alg: &'static dyn sig::VerificationAlgorithm,
    signed: &[u8],
    signature: &[u8],
) -> Result<(), CaError> {
    let spki = leaf.tbs_certificate().subject_public_key_info();
    UnparsedPublicKey::new(alg, spki.subject_public_key.raw_bytes())
        .verify(signed, signature)
        .map_err(|_| {
            CaError::Internal(
                "the new CMS signature does not verify with the signer certificate's public key: \
                 the signing key does not belong to that certificate, or its signature algorithm \
                 does not fit the key; nothing was released"
                    .into(),
            )
        })
}

/// Decode a SignedData ContentInfo; `what` names it in errors.
fn decode_signed_data(der: &[u8], what: &str) -> Result<SignedData, CaError> {
    let info = ContentInfo::from_der(der).map_err(|e| {
        CaError::BadRequest(format!(
            "{what} is not a DER CMS ContentInfo ({e}); pass the DER bytes, not PEM or base64"
        ))
    })?;
    if info.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(CaError::BadRequest(format!(
            "{what} is a CMS {} ContentInfo, not SignedData (1.2.840.113549.1.7.2)",
            info.content_type
        )));
    }
    info.content
        .decode_as::<SignedData>()
        .map_err(|e| CaError::BadRequest(format!("{what} holds a malformed SignedData ({e})")))
}

fn first_signer_info<'s>(sd: &'s SignedData, what: &str) -> Result<&'s SignerInfo, CaError> {
    sd.signer_infos.0.as_slice().first().ok_or_else(|| {
        CaError::BadRequest(format!(
            "{what} has no SignerInfo: it is a certificates-only message, not a signature"
        ))
    })
}

/// The SignerInfo's signature value: what a TSA timestamps for a signature timestamp.
pub fn signature_value(signed_data_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let sd = decode_signed_data(signed_data_der, "the CMS signature")?;
    Ok(first_signer_info(&sd, "the CMS signature")?
        .signature
        .as_bytes()
        .to_vec())
}

/// Add an RFC 3161 timestamp token (a ContentInfo DER) to the first SignerInfo as the unsigned
/// attribute id-aa-timeStampToken (1.2.840.113549.1.9.16.2.14); returns the new ContentInfo DER.
///
/// The token must timestamp this signature: its messageImprint has to be the hash of
/// [`signature_value`], so a token fetched for another signature is refused here rather than
/// found out by a verifier.
pub fn add_timestamp_token(signed_data_der: &[u8], token_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let mut sd = decode_signed_data(signed_data_der, "the CMS signature")?;
    let token = ContentInfo::from_der(token_der).map_err(|e| {
        CaError::BadRequest(format!(
            "the timestamp token is not a DER CMS ContentInfo ({e}); pass the timeStampToken \
             from the TSA's response, not the whole TimeStampResp"
        ))
    })?;
    check_token_covers(&sd, token_der)?;

    let mut infos = std::mem::take(&mut sd.signer_infos.0).into_vec();
    let Some(info) = infos.first_mut() else {
        return Err(CaError::BadRequest(
            "the CMS signature has no SignerInfo: it is a certificates-only message".into(),
        ));
    };
    let attr = attribute(rfc3161::ID_AA_TIME_STAMP_TOKEN, &token)?;
    let mut unsigned = info.unsigned_attrs.take().unwrap_or_default();
    if unsigned
        .iter()
        .any(|a| a.oid == rfc3161::ID_AA_TIME_STAMP_TOKEN)
    {
        return Err(CaError::Conflict(
            "the CMS signature already carries a timestamp token; keep the first one".into(),
        ));
    }
    unsigned.insert(attr)?;
    info.unsigned_attrs = Some(unsigned);
    sd.signer_infos = SignerInfos(SetOfVec::try_from(infos)?);

    Ok(ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&sd)?,
    }
    .to_der()?)
}

/// Check that `token_der` is a TSTInfo token over the first SignerInfo's signature value.
fn check_token_covers(sd: &SignedData, token_der: &[u8]) -> Result<(), CaError> {
    let what = "the timestamp token";
    let token_sd = decode_signed_data(token_der, what)?;
    if token_sd.encap_content_info.econtent_type != rfc3161::ID_CT_TST_INFO {
        return Err(CaError::BadRequest(format!(
            "{what} encapsulates {}, not a TSTInfo (1.2.840.113549.1.9.16.1.4)",
            token_sd.encap_content_info.econtent_type
        )));
    }
    let tst_der = token_sd
        .encap_content_info
        .econtent
        .as_ref()
        .and_then(|e| e.decode_as::<OctetString>().ok())
        .ok_or_else(|| CaError::BadRequest(format!("{what} carries no TSTInfo content")))?;
    let tst = crate::rfc3161::TstInfoImprint::from_der(tst_der.as_bytes())
        .map_err(|e| CaError::BadRequest(format!("{what} holds a malformed TSTInfo ({e})")))?;
    let imprint = &tst.message_imprint;
    let hash = digest_from_oid(&imprint.hash_algorithm.oid).ok_or_else(|| {
        CaError::BadRequest(format!(
            "{what} uses hash algorithm {}; kagi accepts SHA-256/384/512 imprints",
            imprint.hash_algorithm.oid
        ))
    })?;
    let signature = first_signer_info(sd, "the CMS signature")?
        .signature
        .as_bytes();
    if imprint.hashed_message.as_bytes() != hash.hash(signature).as_slice() {
        return Err(CaError::BadRequest(format!(
            "{what} does not timestamp this signature: its messageImprint is not the {} of the \
             SignerInfo's signature value; ask the TSA to timestamp signature_value() of this \
             signature",
            hash.as_str()
        )));
    }
    Ok(())
}
