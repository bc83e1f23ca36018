//! Degenerate "certs-only" PKCS#7 / CMS SignedData (RFC 5652 §5), the
//! format EST (RFC 7030 §4.1.3, §4.2.3) uses to return certificates from
//! /cacerts and /simpleenroll.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use cms::cert::CertificateChoices;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{CertificateSet, EncapsulatedContentInfo, SignedData, SignerInfos};
use const_oid::db::rfc5911;
use der::asn1::SetOfVec;
use der::{Any, Decode, Encode};
use x509_cert::Certificate;

/// Why a certs-only message could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs7Error {
    #[error(
        "certificate #{index} is not a valid DER X.509 certificate ({source}); \
         pass DER, not PEM, and check the stored certificate"
    )]
    BadCert { index: usize, source: der::Error },
    #[error(
        "certificate #{index} does not re-encode to the same bytes, so its signature would \
         break inside the PKCS#7; reissue it in canonical DER"
    )]
    NotCanonical { index: usize },
    #[error(
        "certificate #{index} is the same as certificate #{first}; a SET OF cannot hold \
         duplicates, pass each certificate once"
    )]
    Duplicate { index: usize, first: usize },
    #[error("encoding the PKCS#7 SignedData failed ({0}); this is a bug")]
    Encode(#[from] der::Error),
}

/// Build a DER ContentInfo holding a certs-only SignedData: version 1, no
/// digestAlgorithms, id-data eContentType with no content, the given
/// certificates, no CRLs and no signerInfos.
///
/// `certificates` is a SET OF, so DER sorts it: the output order is not the
/// input order. EST clients pick certificates by subject/key, not position.
/// With no certificates the optional field is left out entirely.
pub fn certs_only(certs_der: &[Vec<u8>]) -> Result<Vec<u8>, Pkcs7Error> {
    let mut choices = Vec::with_capacity(certs_der.len());
    for (index, der) in certs_der.iter().enumerate() {
        if let Some(first) = certs_der[..index].iter().position(|c| c == der) {
            return Err(Pkcs7Error::Duplicate { index, first });
        }
        let cert =
            Certificate::from_der(der).map_err(|source| Pkcs7Error::BadCert { index, source })?;
        if cert.to_der()? != *der {
            return Err(Pkcs7Error::NotCanonical { index });
        }
        choices.push(CertificateChoices::Certificate(cert));
    }

    let certificates = if choices.is_empty() {
        None
    } else {
        Some(CertificateSet::try_from(choices)?)
    };

    let signed_data = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::new(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: rfc5911::ID_DATA,
            econtent: None,
        },
        certificates,
        crls: None,
        signer_infos: SignerInfos(SetOfVec::new()),
    };

    let content_info = ContentInfo {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&signed_data)?,
    };
    Ok(content_info.to_der()?)
}

/// Base64 of `der` in lines of 64 characters, each ending in "\n", as the
/// body of an EST response sent with `Content-Transfer-Encoding: base64`.
pub fn base64_64(der: &[u8]) -> String {
    let encoded = STANDARD.encode(der);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 64 + 1);
    // Base64 output is ASCII, so splitting the bytes never cuts a character.
    for line in encoded.as_bytes().chunks(64) {
        out.extend(line.iter().map(|&b| char::from(b)));
        out.push('\n');
    }
    out
}
