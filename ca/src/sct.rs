//! Signed certificate timestamps (RFC 6962 §3.2-3.3), as a small certificate-transparency
//! signer makes them for precertificates: Sigstore clients require one embedded in every
//! Fulcio-style leaf, signed by a key their trust root lists under `ctlogs`.
//!
//! kagi's "CT log" is a key (`ca.<CA>.ct`, ECDSA P-256 with SHA-256, what clients accept) and
//! this encoding. The promise it signs is kept by kagi's own transparency log: every issued
//! certificate is an entry there, appended in the transaction that stores it.

use const_oid::ObjectIdentifier;
use der::asn1::OctetString;
use der::Encode;
use x509_cert::ext::Extension;

use crate::error::{CaError, Result};
use crate::signer::HsmSigner;

/// id-ce-embeddedSCT-list (RFC 6962 §3.3): the SignedCertificateTimestampList extension.
pub const ID_SCT_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.11129.2.4.2");

/// TLS HashAlgorithm sha256(4) and SignatureAlgorithm ecdsa(3) (RFC 5246 §7.4.1.4.1).
const HASH_SHA256: u8 = 4;
const SIG_ECDSA: u8 = 3;
/// LogEntryType precert_entry(1); SignatureType certificate_timestamp(0); Version v1(0).
const PRECERT_ENTRY: u16 = 1;
const CERTIFICATE_TIMESTAMP: u8 = 0;
const V1: u8 = 0;

/// A CT signer: its key in hsm-core and its log id (SHA-256 of the key's SPKI).
pub struct CtSigner {
    pub signer: HsmSigner,
    pub log_id: [u8; 32],
}

impl CtSigner {
    pub fn new(signer: HsmSigner) -> Result<CtSigner> {
        if signer.algorithm() != hsm_core::Algorithm::EcP256 {
            return Err(CaError::Internal(
                "a CT signer's key must be ECDSA P-256 (clients accept SHA-256 SCTs only)".into(),
            ));
        }
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, signer.spki_der());
        let log_id = d
            .as_ref()
            .try_into()
            .map_err(|_| CaError::Internal("SHA-256 is not 32 bytes".into()))?;
        Ok(CtSigner { signer, log_id })
    }

    /// An SCT (its TLS encoding) for the precertificate whose TBSCertificate, without the SCT
    /// extension, is `tbs_precert`, issued by the CA whose SPKI (DER) is `issuer_spki`.
    pub fn precert_sct(
        &self,
        issuer_spki: &[u8],
        tbs_precert: &[u8],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>> {
        let signed = precert_signed_data(issuer_spki, tbs_precert, timestamp_ms)?;
        let signature = self.signer.sign_tbs(&signed)?;
        let mut sct = Vec::with_capacity(48 + signature.len());
        sct.push(V1);
        sct.extend_from_slice(&self.log_id);
        sct.extend_from_slice(&timestamp_ms.to_be_bytes());
        sct.extend_from_slice(&0u16.to_be_bytes()); // no CtExtensions
        sct.push(HASH_SHA256);
        sct.push(SIG_ECDSA);
        sct.extend_from_slice(&u16_len(signature.len())?.to_be_bytes());
        sct.extend_from_slice(&signature);
        Ok(sct)
    }
}

/// The `digitally-signed` input of an SCT over a precertificate entry (RFC 6962 §3.2).
pub fn precert_signed_data(
    issuer_spki: &[u8],
    tbs_precert: &[u8],
    timestamp_ms: u64,
) -> Result<Vec<u8>> {
    let issuer_key_hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_spki);
    let len = tbs_precert.len();
    if len == 0 || len >= 1 << 24 {
        return Err(CaError::Internal(
            "a TBSCertificate must be 1 byte to 16 MiB long".into(),
        ));
    }
    let mut d = Vec::with_capacity(len + 50);
    d.push(V1);
    d.push(CERTIFICATE_TIMESTAMP);
    d.extend_from_slice(&timestamp_ms.to_be_bytes());
    d.extend_from_slice(&PRECERT_ENTRY.to_be_bytes());
    d.extend_from_slice(issuer_key_hash.as_ref());
    d.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    d.extend_from_slice(tbs_precert);
    d.extend_from_slice(&0u16.to_be_bytes()); // no CtExtensions
    Ok(d)
}

/// The embedded-SCT extension: an OCTET STRING holding the TLS SignedCertificateTimestampList.
pub fn sct_list_extension(scts: &[Vec<u8>]) -> Result<Extension> {
    let mut body = Vec::new();
    for sct in scts {
        body.extend_from_slice(&u16_len(sct.len())?.to_be_bytes());
        body.extend_from_slice(sct);
    }
    let mut list = u16_len(body.len())?.to_be_bytes().to_vec();
    list.extend_from_slice(&body);
    Ok(Extension {
        extn_id: ID_SCT_LIST,
        critical: false,
        extn_value: OctetString::new(OctetString::new(list)?.to_der()?)?,
    })
}

fn u16_len(n: usize) -> Result<u16> {
    u16::try_from(n).map_err(|_| CaError::Internal(format!("{n} bytes do not fit a TLS u16")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_data_layout_follows_rfc6962() {
        let d = precert_signed_data(b"issuer", &[0x30, 0x00], 0x0102_0304_0506_0708).unwrap();
        assert_eq!(&d[..2], &[0, 0]);
        assert_eq!(&d[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&d[10..12], &[0, 1]);
        assert_eq!(
            &d[12..44],
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"issuer").as_ref()
        );
        assert_eq!(&d[44..47], &[0, 0, 2]);
        assert_eq!(&d[47..49], &[0x30, 0x00]);
        assert_eq!(&d[49..], &[0, 0]);
        assert!(precert_signed_data(b"i", &[], 0).is_err());
    }

    #[test]
    fn list_extension_nests_an_octet_string() {
        let e = sct_list_extension(&[vec![7u8; 3]]).unwrap();
        // OCTET STRING { 00 05 | 00 03 | 07 07 07 }
        assert_eq!(
            e.extn_value.as_bytes(),
            &[0x04, 0x07, 0x00, 0x05, 0x00, 0x03, 7, 7, 7]
        );
        assert!(!e.critical);
    }
}
