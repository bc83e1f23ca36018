//! Signed certificate timestamps (RFC 6962 §3.2-3.3), as a small certificate-transparency
//! signer makes them for precertificates: Sigstore clients require one embedded in every
//! Fulcio-style leaf, signed by a key their trust root lists under `ctlogs`.
//!
//! kagi's "CT log" is a key (`ca.<CA>.ct`, ECDSA P-256 with SHA-256, what clients accept) and
//! the encoding in `kagi-x509` (re-exported here), which verifiers share. The promise it signs
//! is kept by kagi's own transparency log: every issued certificate is an entry there,
//! appended in the transaction that stores it.

pub use kagi_x509::sct::{
    embedded_scts, encode_sct, precert_signed_data, precert_signed_data_with, precert_tbs,
    sct_list_extension, EmbeddedSct, ID_SCT_LIST,
};

use crate::error::{CaError, Result};
use crate::hsm_key::HsmSigner;

/// A CT signer: its key in hsm-core and its log id (SHA-256 of the key's SPKI).
pub struct CtSigner {
    pub signer: HsmSigner,
    pub log_id: [u8; 32],
}

impl CtSigner {
    pub fn new(signer: HsmSigner) -> Result<CtSigner> {
        if signer.algorithm() != kagi_hsm_core::Algorithm::EcP256 {
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
        Ok(encode_sct(&self.log_id, timestamp_ms, &signature)?)
    }
}
