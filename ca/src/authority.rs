//! A CA as the issuing code sees it: its stored record, its parsed certificate, its HSM key, and
//! the public URLs its certificates point relying parties to.

use der::{Decode, Encode};
use kagi_hsm_core::records::ca::CaRecord;
use kagi_hsm_core::{Hsm, Session};
use x509_cert::certificate::Certificate;
use x509_cert::ext::pkix::SubjectKeyIdentifier;
use x509_cert::name::Name;

use crate::error::{CaError, Result};
use crate::extensions;
use crate::hsm_key::HsmSigner;

/// Where relying parties fetch CRLs, OCSP answers and CA certificates: the plain-HTTP listener,
/// since these are signed and clients expect http URLs (RFC 5280 §4.2.1.13, §4.2.2.1).
#[derive(Debug, Clone)]
pub struct PublicUrls {
    /// e.g. "http://127.0.0.1:8080", without a trailing slash.
    pub base: String,
}

impl PublicUrls {
    pub fn new(base: &str) -> PublicUrls {
        PublicUrls {
            base: base.trim_end_matches('/').to_string(),
        }
    }
    pub fn crl(&self, ca: &str) -> String {
        format!("{}/crl/{ca}.crl", self.base)
    }
    pub fn ocsp(&self) -> String {
        format!("{}/ocsp", self.base)
    }
    pub fn ca_cert(&self, ca: &str) -> String {
        format!("{}/ca/{ca}.crt", self.base)
    }
}

/// A CA loaded for signing.
pub struct Authority {
    pub record: CaRecord,
    pub cert: Certificate,
    pub signer: HsmSigner,
    pub key_id: Vec<u8>,
}

impl Authority {
    /// Load CA `name` for signing in `session` (which must be in the CA's partition).
    pub fn load(hsm: &Hsm, session: &Session, name: &str) -> Result<Authority> {
        let record = hsm.ca(name)?;
        if record.partition != session.partition() {
            return Err(CaError::BadRequest(format!(
                "CA '{name}' lives in partition '{}': use a credential of that partition",
                record.partition
            )));
        }
        let cert = Certificate::from_der(&record.cert_der)?;
        let signer = HsmSigner::new(hsm, session, &record.key_label)?;
        if cert.tbs_certificate().subject_public_key_info().to_der()? != signer.spki_der() {
            return Err(CaError::Hsm(kagi_hsm_core::HsmError::Integrity(format!(
                "CA '{name}': its certificate does not hold its key's public key"
            ))));
        }
        let key_id = match cert
            .tbs_certificate()
            .get_extension::<SubjectKeyIdentifier>()?
        {
            Some((_, ski)) => ski.0.as_bytes().to_vec(),
            None => extensions::key_id(&signer.spki()?),
        };
        Ok(Authority {
            record,
            cert,
            signer,
            key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn subject(&self) -> &Name {
        self.cert.tbs_certificate().subject()
    }

    /// The CA's own notBefore, unix seconds.
    pub fn not_before(&self) -> i64 {
        self.cert
            .tbs_certificate()
            .validity()
            .not_before
            .to_unix_duration()
            .as_secs() as i64
    }

    /// The CA's own notAfter, unix seconds.
    pub fn not_after(&self) -> i64 {
        self.cert
            .tbs_certificate()
            .validity()
            .not_after
            .to_unix_duration()
            .as_secs() as i64
    }

    pub fn is_revoked(&self) -> bool {
        self.record.revoked_at.is_some()
    }
}
