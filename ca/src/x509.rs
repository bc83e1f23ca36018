//! Glue between x509-cert's builder and kagi: a fixed builder profile (kagi decides subject,
//! issuer and every extension itself), times, and the final SEQUENCE around a signature.

use der::asn1::{BitString, GeneralizedTime, UtcTime};
use der::{AnyRef, Decode, Encode, Sequence};
use std::time::Duration;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{
    AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef,
};
use x509_cert::time::{Time, Validity};

use crate::error::{CaError, Result};
use crate::hsm_key::HsmSigner;

/// 2050-01-01T00:00:00Z: RFC 5280 §4.1.2.5 wants UTCTime before it, GeneralizedTime from it.
const Y2050: i64 = 2_524_608_000;

pub(crate) struct Fixed {
    subject: Name,
    issuer: Name,
    extensions: Vec<Extension>,
}

impl Fixed {
    pub(crate) fn new(subject: Name, issuer: Name, extensions: Vec<Extension>) -> Fixed {
        Fixed {
            subject,
            issuer,
            extensions,
        }
    }
}

impl BuilderProfile for Fixed {
    fn get_issuer(&self, _subject: &Name) -> Name {
        self.issuer.clone()
    }

    fn get_subject(&self) -> Name {
        self.subject.clone()
    }

    fn build_extensions(
        &self,
        _spk: SubjectPublicKeyInfoRef<'_>,
        _issuer_spk: SubjectPublicKeyInfoRef<'_>,
        _tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        Ok(self.extensions.clone())
    }
}

pub fn time(unix: i64) -> Result<Time> {
    let d = Duration::from_secs(
        u64::try_from(unix)
            .map_err(|_| CaError::BadRequest("times before 1970 cannot be encoded".into()))?,
    );
    Ok(if unix < Y2050 {
        Time::UtcTime(UtcTime::from_unix_duration(d)?)
    } else {
        Time::GeneralTime(GeneralizedTime::from_unix_duration(d)?)
    })
}

/// What goes into one certificate, decided before anything is signed.
pub struct TbsPlan {
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub subject: Name,
    pub issuer: Name,
    pub spki: SubjectPublicKeyInfoOwned,
    pub extensions: Vec<Extension>,
}

/// The DER of the TBSCertificate, via x509-cert's builder with the HSM key as its signer (for
/// the signature algorithm identifier; nothing is signed here).
pub fn tbs_der(plan: &TbsPlan, signer: &HsmSigner) -> Result<Vec<u8>> {
    let mut builder = CertificateBuilder::new(
        Fixed {
            subject: plan.subject.clone(),
            issuer: plan.issuer.clone(),
            extensions: plan.extensions.clone(),
        },
        SerialNumber::new(&plan.serial)?,
        Validity::new(time(plan.not_before)?, time(plan.not_after)?),
        plan.spki.clone(),
    )
    .map_err(|e| CaError::Internal(format!("certificate builder: {e}")))?;
    builder
        .finalize(signer)
        .map_err(|e| CaError::Internal(format!("certificate builder: {e}")))
}

/// Certificate, CertificateList and BasicOCSPResponse all start SEQUENCE { tbs, alg, sig }.
#[derive(Sequence)]
struct SignedEnvelope<'a> {
    tbs: AnyRef<'a>,
    algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
}

pub fn assemble(
    tbs_der: &[u8],
    algorithm: &AlgorithmIdentifierOwned,
    sig: &[u8],
) -> Result<Vec<u8>> {
    Ok(SignedEnvelope {
        tbs: AnyRef::from_der(tbs_der)?,
        algorithm: algorithm.clone(),
        signature: BitString::from_bytes(sig)?,
    }
    .to_der()?)
}

pub fn pem(label: &str, der_bytes: &[u8]) -> Result<String> {
    der::pem::encode_string(label, der::pem::LineEnding::LF, der_bytes)
        .map_err(|e| CaError::Internal(format!("PEM: {e}")))
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
