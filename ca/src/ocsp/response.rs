//! The response side: sign a BasicOCSPResponse, or answer an error status.

use std::time::Duration;

use const_oid::db::rfc6960;
use der::asn1::{BitString, GeneralizedTime, Null, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extension;
use x509_cert::Certificate;

use super::asn1::{
    BasicOcspResponse, CertId, CertStatus, OcspResponse, OcspResponseStatus, ResponderId,
    ResponseBytes, ResponseData, RevokedInfo, SingleResponse, Version,
};
use super::error::{BuildError, ResponseError};
use super::request::HashAlg;

/// Revocation state of one certificate.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Status {
    Good,
    Revoked {
        at_unix: i64,
        /// CRLReason code (RFC 5280 §5.3.1): 0-6 or 8-10.
        reason: Option<i64>,
    },
    Unknown,
}

/// The answer for one CertID.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct SingleStatus {
    /// Echo [`RequestedCert::cert_id`] here.
    pub cert_id: CertId,
    pub status: Status,
    pub this_update_unix: i64,
    pub next_update_unix: Option<i64>,
}

/// Build a successful BasicOCSPResponse wrapped in an OCSPResponse.
///
/// `responder_cert_der` is the delegated OCSP-signing certificate (issued by
/// the CA, EKU id-kp-OCSPSigning). The responderID is byKey (SHA-1 of the
/// responder's subjectPublicKey) and the certificate goes in `certs`, so
/// clients can check the delegation without fetching anything. A nonce is
/// echoed as a non-critical id-pkix-ocsp-nonce extension.
///
/// `sign` receives the DER of the ResponseData (tbsResponseData) and returns
/// the signature AlgorithmIdentifier and signature bytes; its error is
/// returned as [`BuildError::Sign`].
pub fn build_response<E>(
    statuses: &[SingleStatus],
    responder_cert_der: &[u8],
    nonce: Option<&[u8]>,
    produced_at_unix: i64,
    sign: impl FnOnce(&[u8]) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), E>,
) -> Result<Vec<u8>, BuildError<E>> {
    if statuses.is_empty() {
        return Err(ResponseError::NoStatuses.into());
    }
    let responder =
        Certificate::from_der(responder_cert_der).map_err(ResponseError::ResponderCert)?;
    // The certificate is re-encoded into `certs`; a lossy round trip would
    // break its signature in every client's eyes.
    if responder.to_der().map_err(ResponseError::Encode)? != responder_cert_der {
        return Err(ResponseError::ResponderCertNotCanonical.into());
    }
    let key_hash = HashAlg::Sha1.digest(
        responder
            .tbs_certificate()
            .subject_public_key_info()
            .subject_public_key
            .raw_bytes(),
    );

    let responses = statuses
        .iter()
        .map(single_response)
        .collect::<Result<Vec<_>, _>>()?;

    let response_extensions = match nonce {
        Some(nonce) => Some(vec![Extension {
            extn_id: rfc6960::ID_PKIX_OCSP_NONCE,
            critical: false,
            extn_value: OctetString::new(nonce).map_err(ResponseError::Encode)?,
        }]),
        None => None,
    };

    let tbs_response_data = ResponseData {
        version: Version::V1,
        responder_id: ResponderId::ByKey(
            OctetString::new(key_hash).map_err(ResponseError::Encode)?,
        ),
        produced_at: generalized_time(produced_at_unix, "producedAt")?,
        responses,
        response_extensions,
    };
    let tbs_der = tbs_response_data.to_der().map_err(ResponseError::Encode)?;
    let (signature_algorithm, signature) = sign(&tbs_der).map_err(BuildError::Sign)?;

    let basic = BasicOcspResponse {
        tbs_response_data,
        signature_algorithm,
        signature: BitString::from_bytes(&signature).map_err(ResponseError::Encode)?,
        certs: Some(vec![responder]),
    };
    let basic_der = basic.to_der().map_err(ResponseError::Encode)?;

    let response = OcspResponse {
        response_status: OcspResponseStatus::Successful,
        response_bytes: Some(ResponseBytes {
            response_type: rfc6960::ID_PKIX_OCSP_BASIC,
            response: OctetString::new(basic_der).map_err(ResponseError::Encode)?,
        }),
    };
    Ok(response.to_der().map_err(ResponseError::Encode)?)
}

fn single_response(status: &SingleStatus) -> Result<SingleResponse, ResponseError> {
    let cert_status = match status.status {
        Status::Good => CertStatus::Good(Null),
        Status::Unknown => CertStatus::Unknown(Null),
        Status::Revoked { at_unix, reason } => CertStatus::Revoked(RevokedInfo {
            revocation_time: generalized_time(at_unix, "revocationTime")?,
            revocation_reason: reason.map(crl_reason).transpose()?,
        }),
    };
    let next_update = match status.next_update_unix {
        Some(next) if next < status.this_update_unix => {
            return Err(ResponseError::NextUpdateBeforeThisUpdate {
                this: status.this_update_unix,
                next,
            })
        }
        Some(next) => Some(generalized_time(next, "nextUpdate")?),
        None => None,
    };
    Ok(SingleResponse {
        cert_id: status.cert_id.clone(),
        cert_status,
        this_update: generalized_time(status.this_update_unix, "thisUpdate")?,
        next_update,
        single_extensions: None,
    })
}

fn crl_reason(code: i64) -> Result<CrlReason, ResponseError> {
    Ok(match code {
        0 => CrlReason::Unspecified,
        1 => CrlReason::KeyCompromise,
        2 => CrlReason::CaCompromise,
        3 => CrlReason::AffiliationChanged,
        4 => CrlReason::Superseded,
        5 => CrlReason::CessationOfOperation,
        6 => CrlReason::CertificateHold,
        8 => CrlReason::RemoveFromCRL,
        9 => CrlReason::PrivilegeWithdrawn,
        10 => CrlReason::AaCompromise,
        other => return Err(ResponseError::Reason(other)),
    })
}

/// Whole seconds only: RFC 5280 §4.1.2.5.2 style GeneralizedTime, which is
/// what `der` emits and what RFC 6960 clients expect.
pub(super) fn generalized_time(
    unix: i64,
    field: &'static str,
) -> Result<GeneralizedTime, ResponseError> {
    let bad = || ResponseError::Time { field, unix };
    let secs = u64::try_from(unix).map_err(|_| bad())?;
    GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).map_err(|_| bad())
}

/// An unsuccessful OCSPResponse (malformedRequest, internalError, tryLater,
/// sigRequired, unauthorized) with no responseBytes.
///
/// `Successful` is answered as `internalError`: a successful status without
/// responseBytes is malformed (RFC 6960 §4.2.1), so asking for one is a bug.
pub fn error_response(status: OcspResponseStatus) -> Vec<u8> {
    let status = match status {
        OcspResponseStatus::Successful => OcspResponseStatus::InternalError,
        other => other,
    };
    // Written out by hand because it is five fixed bytes and encoding must
    // not be able to fail on the error path:
    // SEQUENCE (3) { ENUMERATED (1) status }
    vec![0x30, 0x03, 0x0a, 0x01, status as u8]
}
