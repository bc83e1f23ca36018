//! OCSP (RFC 6960): request parsing and response building.
//!
//! No OCSP crate exists for x509-cert 0.3, so the ASN.1 of RFC 6960 §4.1.1
//! and §4.2.1 is mirrored here with `der` derives. That ASN.1 module is
//! `DEFINITIONS EXPLICIT TAGS`, so every context tag below is EXPLICIT except
//! the three alternatives of `CertStatus`, which the RFC marks IMPLICIT.

use std::time::Duration;

use aws_lc_rs::digest;
use const_oid::db::{rfc5912, rfc6960};
use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Choice, Decode, Encode, Enumerated, Sequence, Tag, Tagged};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::{Extension, Extensions};
use x509_cert::name::Name;
use x509_cert::Certificate;

/// Requests larger than this are refused before any parsing, so a client
/// cannot make the responder allocate for an arbitrarily large body.
pub const MAX_REQUEST_LEN: usize = 1 << 20;

/// Upper bound on CertIDs per request; each one costs a status lookup.
pub const MAX_CERTS_PER_REQUEST: usize = 64;

/// RFC 8954 asks responders to accept 1..=32 octet nonces; the extnValue
/// also carries the OCTET STRING wrapper, and some clients send larger ones.
/// Anything beyond this is refused rather than echoed into a signed response.
pub const MAX_NONCE_LEN: usize = 128;

// ---------------------------------------------------------------------------
// ASN.1 types (RFC 6960 §4.1.1 and §4.2.1)
// ---------------------------------------------------------------------------

/// `Version ::= INTEGER { v1(0) }`
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq, Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
pub enum Version {
    /// The only version RFC 6960 defines.
    #[default]
    V1 = 0,
}

/// ```text
/// OCSPRequest ::= SEQUENCE {
///     tbsRequest                  TBSRequest,
///     optionalSignature   [0]     EXPLICIT Signature OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct OcspRequest {
    pub tbs_request: TbsRequest,
    #[asn1(context_specific = "0", optional = "true")]
    pub optional_signature: Option<Signature>,
}

/// ```text
/// TBSRequest ::= SEQUENCE {
///     version             [0]     EXPLICIT Version DEFAULT v1,
///     requestorName       [1]     EXPLICIT GeneralName OPTIONAL,
///     requestList                 SEQUENCE OF Request,
///     requestExtensions   [2]     EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TbsRequest {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    #[asn1(context_specific = "1", optional = "true")]
    pub requestor_name: Option<GeneralName>,
    pub request_list: Vec<Request>,
    #[asn1(context_specific = "2", optional = "true")]
    pub request_extensions: Option<Extensions>,
}

/// ```text
/// Signature ::= SEQUENCE {
///     signatureAlgorithm      AlgorithmIdentifier,
///     signature               BIT STRING,
///     certs               [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
/// ```
///
/// Parsed so that signed requests are accepted, but never verified: the
/// responder answers anyone (RFC 6960 §4.1.2 makes request signing optional).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Signature {
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
    #[asn1(context_specific = "0", optional = "true")]
    pub certs: Option<Vec<Certificate>>,
}

/// ```text
/// Request ::= SEQUENCE {
///     reqCert                     CertID,
///     singleRequestExtensions [0] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Request {
    pub req_cert: CertId,
    #[asn1(context_specific = "0", optional = "true")]
    pub single_request_extensions: Option<Extensions>,
}

/// ```text
/// CertID ::= SEQUENCE {
///     hashAlgorithm       AlgorithmIdentifier,
///     issuerNameHash      OCTET STRING,
///     issuerKeyHash       OCTET STRING,
///     serialNumber        CertificateSerialNumber }
/// ```
///
/// The serial is a plain `Int` rather than x509-cert's `SerialNumber` so that
/// a request naming a serial our CA would never issue still parses and gets
/// an `unknown` answer instead of a `malformedRequest`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertId {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub issuer_name_hash: OctetString,
    pub issuer_key_hash: OctetString,
    pub serial_number: Int,
}

/// ```text
/// OCSPResponseStatus ::= ENUMERATED {
///     successful(0), malformedRequest(1), internalError(2), tryLater(3),
///     sigRequired(5), unauthorized(6) }
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u8)]
pub enum OcspResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

/// ```text
/// OCSPResponse ::= SEQUENCE {
///     responseStatus      OCSPResponseStatus,
///     responseBytes   [0] EXPLICIT ResponseBytes OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct OcspResponse {
    pub response_status: OcspResponseStatus,
    #[asn1(context_specific = "0", optional = "true")]
    pub response_bytes: Option<ResponseBytes>,
}

/// ```text
/// ResponseBytes ::= SEQUENCE {
///     responseType    OBJECT IDENTIFIER,
///     response        OCTET STRING }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ResponseBytes {
    pub response_type: ObjectIdentifier,
    pub response: OctetString,
}

/// ```text
/// BasicOCSPResponse ::= SEQUENCE {
///     tbsResponseData     ResponseData,
///     signatureAlgorithm  AlgorithmIdentifier,
///     signature           BIT STRING,
///     certs           [0] EXPLICIT SEQUENCE OF Certificate OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct BasicOcspResponse {
    pub tbs_response_data: ResponseData,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: BitString,
    #[asn1(context_specific = "0", optional = "true")]
    pub certs: Option<Vec<Certificate>>,
}

/// ```text
/// ResponseData ::= SEQUENCE {
///     version             [0] EXPLICIT Version DEFAULT v1,
///     responderID             ResponderID,
///     producedAt              GeneralizedTime,
///     responses               SEQUENCE OF SingleResponse,
///     responseExtensions  [1] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct ResponseData {
    #[asn1(context_specific = "0", default = "Default::default")]
    pub version: Version,
    pub responder_id: ResponderId,
    pub produced_at: GeneralizedTime,
    pub responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", optional = "true")]
    pub response_extensions: Option<Extensions>,
}

/// ```text
/// ResponderID ::= CHOICE {
///     byName  [1] Name,
///     byKey   [2] KeyHash }
/// KeyHash ::= OCTET STRING -- SHA-1 of the responder's public key
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Choice)]
pub enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Name),
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

/// ```text
/// SingleResponse ::= SEQUENCE {
///     certID                  CertID,
///     certStatus              CertStatus,
///     thisUpdate              GeneralizedTime,
///     nextUpdate          [0] EXPLICIT GeneralizedTime OPTIONAL,
///     singleExtensions    [1] EXPLICIT Extensions OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SingleResponse {
    pub cert_id: CertId,
    pub cert_status: CertStatus,
    pub this_update: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true")]
    pub next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", optional = "true")]
    pub single_extensions: Option<Extensions>,
}

/// ```text
/// CertStatus ::= CHOICE {
///     good        [0] IMPLICIT NULL,
///     revoked     [1] IMPLICIT RevokedInfo,
///     unknown     [2] IMPLICIT UnknownInfo }
/// UnknownInfo ::= NULL
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Choice)]
pub enum CertStatus {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

/// ```text
/// RevokedInfo ::= SEQUENCE {
///     revocationTime          GeneralizedTime,
///     revocationReason    [0] EXPLICIT CRLReason OPTIONAL }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct RevokedInfo {
    pub revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", optional = "true")]
    pub revocation_reason: Option<CrlReason>,
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why an OCSP request could not be used. Every variant maps to a
/// `malformedRequest` answer except [`OcspError::IssuerCert`], which is a
/// problem with our own CA certificate (answer `internalError`).
#[derive(Debug, thiserror::Error)]
pub enum OcspError {
    #[error("the OCSP request body is empty; POST a DER-encoded OCSPRequest (RFC 6960 §4.1.1)")]
    Empty,
    #[error(
        "the OCSP request is {len} bytes, over the {max}-byte limit; \
         ask about fewer certificates per request"
    )]
    TooLarge { len: usize, max: usize },
    #[error(
        "the OCSP request is not a valid DER OCSPRequest ({0}); \
         send a single DER-encoded OCSPRequest (RFC 6960 §4.1.1) with nothing after it"
    )]
    Malformed(der::Error),
    #[error("the OCSP request's requestList is empty; name at least one certificate")]
    NoCerts,
    #[error(
        "the OCSP request names {count} certificates, over the limit of {max}; \
         split it into several requests"
    )]
    TooManyCerts { count: usize, max: usize },
    #[error(
        "requestList[{index}] uses CertID hash algorithm {oid}, which this responder does not \
         support; use SHA-1 (1.3.14.3.2.26) or SHA-256 (2.16.840.1.101.3.4.2.1)"
    )]
    UnsupportedHash { index: usize, oid: ObjectIdentifier },
    #[error(
        "requestList[{index}] gives parameters for its CertID hash algorithm; \
         they must be absent or NULL"
    )]
    HashParameters { index: usize },
    #[error(
        "requestList[{index}] has a {got}-byte {field}, but its hash algorithm yields {want} bytes; \
         compute the CertID hashes with the algorithm named in hashAlgorithm"
    )]
    HashLength {
        index: usize,
        field: &'static str,
        got: usize,
        want: usize,
    },
    #[error("the OCSP request carries more than one nonce extension; send exactly one")]
    DuplicateNonce,
    #[error(
        "the OCSP request nonce extension value is {len} bytes; \
         it must be between 1 and {max} bytes (RFC 8954 recommends 32)"
    )]
    NonceLength { len: usize, max: usize },
    #[error(
        "the OCSP request marks extension {oid} in {place} as critical, and this responder \
         does not understand it; drop the extension or mark it non-critical"
    )]
    UnsupportedCriticalExtension {
        oid: ObjectIdentifier,
        place: &'static str,
    },
    #[error(
        "the CA certificate given for CertID matching is not a valid DER X.509 certificate \
         ({0}); check the CA certificate stored for this issuer"
    )]
    IssuerCert(der::Error),
}

/// Why [`build_response`] could not produce a response from its arguments.
#[derive(Debug, thiserror::Error)]
pub enum ResponseError {
    #[error(
        "no certificate statuses were given; an OCSP response must answer at least one CertID"
    )]
    NoStatuses,
    #[error(
        "the responder certificate is not a valid DER X.509 certificate ({0}); \
         check the OCSP signing certificate configured for this CA"
    )]
    ResponderCert(der::Error),
    #[error(
        "the responder certificate does not re-encode to the same bytes, so clients would see \
         a broken certificate signature; reissue it in canonical DER"
    )]
    ResponderCertNotCanonical,
    #[error(
        "{field} = {unix} (unix seconds) cannot be written as a GeneralizedTime; \
         use a time between 1970 and 9999"
    )]
    Time { field: &'static str, unix: i64 },
    #[error(
        "nextUpdate ({next}) is before thisUpdate ({this}) for a certificate status; \
         nextUpdate must not precede thisUpdate"
    )]
    NextUpdateBeforeThisUpdate { this: i64, next: i64 },
    #[error(
        "revocation reason {0} is not a CRLReason; use 0-6 or 8-10 \
         (7 is unassigned in RFC 5280 §5.3.1)"
    )]
    Reason(i64),
    #[error("encoding the OCSP response failed ({0}); this is a bug in the responder")]
    Encode(#[from] der::Error),
}

/// [`build_response`] failure: either the arguments were unusable, or the
/// caller's signer failed (its error is kept as is).
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E> {
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error("signing the OCSP response failed: {0}")]
    Sign(E),
}

// ---------------------------------------------------------------------------
// Request side
// ---------------------------------------------------------------------------

/// Hash algorithm of a CertID.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum HashAlg {
    /// What nearly every client sends (RFC 5019 mandates it).
    Sha1,
    Sha256,
}

impl HashAlg {
    /// The algorithm's OBJECT IDENTIFIER.
    pub fn oid(self) -> ObjectIdentifier {
        match self {
            HashAlg::Sha1 => rfc5912::ID_SHA_1,
            HashAlg::Sha256 => rfc5912::ID_SHA_256,
        }
    }

    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        self.algorithm().output_len()
    }

    /// Digest `data` with this algorithm.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.algorithm(), data).as_ref().to_vec()
    }

    fn algorithm(self) -> &'static digest::Algorithm {
        match self {
            // CertID hashes identify, they do not authenticate, so SHA-1's
            // collision weakness does not matter here.
            HashAlg::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            HashAlg::Sha256 => &digest::SHA256,
        }
    }

    fn from_algorithm(alg: &AlgorithmIdentifierOwned, index: usize) -> Result<Self, OcspError> {
        let hash = if alg.oid == rfc5912::ID_SHA_1 {
            HashAlg::Sha1
        } else if alg.oid == rfc5912::ID_SHA_256 {
            HashAlg::Sha256
        } else {
            return Err(OcspError::UnsupportedHash {
                index,
                oid: alg.oid,
            });
        };
        // OpenSSL sends an explicit NULL, RFC 5754 says absent; both are seen.
        match &alg.parameters {
            None => Ok(hash),
            Some(p) if p.tag() == Tag::Null && p.value().is_empty() => Ok(hash),
            Some(_) => Err(OcspError::HashParameters { index }),
        }
    }
}

/// One CertID from a request.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RequestedCert {
    pub hash_alg: HashAlg,
    pub issuer_name_hash: Vec<u8>,
    pub issuer_key_hash: Vec<u8>,
    /// Content octets of the serialNumber INTEGER, exactly as the client
    /// sent them (so a serial with the high bit set keeps its leading 0x00).
    pub serial: Vec<u8>,
    /// The CertID as received, to be echoed in the SingleResponse: clients
    /// match responses to requests by comparing CertIDs.
    pub cert_id: CertId,
}

/// The parts of an OCSP request the responder acts on.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ParsedRequest {
    pub certs: Vec<RequestedCert>,
    /// Raw extnValue octets of id-pkix-ocsp-nonce, to be echoed unchanged.
    pub nonce: Option<Vec<u8>>,
}

/// Parse a DER OCSPRequest.
///
/// Request signatures and requestorName are accepted and ignored.
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, OcspError> {
    if der.is_empty() {
        return Err(OcspError::Empty);
    }
    if der.len() > MAX_REQUEST_LEN {
        return Err(OcspError::TooLarge {
            len: der.len(),
            max: MAX_REQUEST_LEN,
        });
    }
    // `from_der` refuses trailing bytes after the outer SEQUENCE.
    let request = OcspRequest::from_der(der).map_err(OcspError::Malformed)?;
    let tbs = request.tbs_request;

    let count = tbs.request_list.len();
    if count == 0 {
        return Err(OcspError::NoCerts);
    }
    if count > MAX_CERTS_PER_REQUEST {
        return Err(OcspError::TooManyCerts {
            count,
            max: MAX_CERTS_PER_REQUEST,
        });
    }

    let mut nonce = None;
    for ext in tbs.request_extensions.iter().flatten() {
        if ext.extn_id == rfc6960::ID_PKIX_OCSP_NONCE {
            if nonce.is_some() {
                return Err(OcspError::DuplicateNonce);
            }
            let value = ext.extn_value.as_bytes();
            if value.is_empty() || value.len() > MAX_NONCE_LEN {
                return Err(OcspError::NonceLength {
                    len: value.len(),
                    max: MAX_NONCE_LEN,
                });
            }
            nonce = Some(value.to_vec());
        } else {
            reject_critical(ext, "requestExtensions")?;
        }
    }

    let certs = tbs
        .request_list
        .into_iter()
        .enumerate()
        .map(|(index, request)| {
            for ext in request.single_request_extensions.iter().flatten() {
                reject_critical(ext, "singleRequestExtensions")?;
            }
            requested_cert(request.req_cert, index)
        })
        .collect::<Result<Vec<_>, _>>()?;

    Ok(ParsedRequest { certs, nonce })
}

/// RFC 6960 §4.4: unrecognised extensions are ignored unless critical.
fn reject_critical(ext: &Extension, place: &'static str) -> Result<(), OcspError> {
    if ext.critical {
        return Err(OcspError::UnsupportedCriticalExtension {
            oid: ext.extn_id,
            place,
        });
    }
    Ok(())
}

fn requested_cert(cert_id: CertId, index: usize) -> Result<RequestedCert, OcspError> {
    let hash_alg = HashAlg::from_algorithm(&cert_id.hash_algorithm, index)?;
    let want = hash_alg.output_len();
    let name_hash = cert_id.issuer_name_hash.as_bytes();
    let key_hash = cert_id.issuer_key_hash.as_bytes();
    for (field, got) in [
        ("issuerNameHash", name_hash.len()),
        ("issuerKeyHash", key_hash.len()),
    ] {
        if got != want {
            return Err(OcspError::HashLength {
                index,
                field,
                got,
                want,
            });
        }
    }
    Ok(RequestedCert {
        hash_alg,
        issuer_name_hash: name_hash.to_vec(),
        issuer_key_hash: key_hash.to_vec(),
        serial: cert_id.serial_number.as_bytes().to_vec(),
        cert_id,
    })
}

/// Does this CertID name the CA with this certificate (DER)?
///
/// issuerNameHash is compared against the hash of the DER of the CA's subject
/// Name, issuerKeyHash against the hash of the CA's subjectPublicKey BIT
/// STRING value (without tag, length or unused-bits octet), both with the
/// request's hash algorithm.
pub fn names_issuer(req: &RequestedCert, ca_cert_der: &[u8]) -> Result<bool, OcspError> {
    let ca = Certificate::from_der(ca_cert_der).map_err(OcspError::IssuerCert)?;
    let tbs = ca.tbs_certificate();
    let name_der = tbs.subject().to_der().map_err(OcspError::IssuerCert)?;
    let key = tbs.subject_public_key_info().subject_public_key.raw_bytes();
    // Both hashes are public values, so a plain comparison leaks nothing.
    Ok(req.hash_alg.digest(&name_der) == req.issuer_name_hash
        && req.hash_alg.digest(key) == req.issuer_key_hash)
}

// ---------------------------------------------------------------------------
// Response side
// ---------------------------------------------------------------------------

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
fn generalized_time(unix: i64, field: &'static str) -> Result<GeneralizedTime, ResponseError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
    };
    use std::path::Path;
    use std::process::Command;
    use std::time::{SystemTime, UNIX_EPOCH};

    const LEAF_SERIAL: [u8; 6] = [0x00, 0xC0, 0xFF, 0xEE, 0x12, 0x34];

    /// Runs `openssl` with a whitespace-separated command line (no argument
    /// here needs embedded spaces) and returns success plus stdout+stderr.
    fn run_openssl(dir: &Path, cmd: &str) -> (bool, String) {
        let out = Command::new("openssl")
            .args(cmd.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("the openssl CLI must be installed to run these tests");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    fn openssl(dir: &Path, cmd: &str) -> String {
        let (ok, text) = run_openssl(dir, cmd);
        assert!(ok, "openssl {cmd} failed:\n{text}");
        text
    }

    const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

    /// CA, a second unrelated CA, a delegated OCSP responder and a leaf, all
    /// EC P-256, made by the openssl CLI so nothing here vouches for itself.
    struct Pki {
        dir: tempfile::TempDir,
        ca: Vec<u8>,
        other_ca: Vec<u8>,
        responder: Vec<u8>,
        responder_pkcs8: Vec<u8>,
    }

    fn make_ca(dir: &Path, name: &str) {
        openssl(
            dir,
            &format!(
                "req -x509 -new {EC_KEY} -keyout {name}.key -out {name}.pem \
                 -subj /CN=Kagi-{name}-CA -days 2 \
                 -addext basicConstraints=critical,CA:TRUE \
                 -addext keyUsage=critical,keyCertSign,cRLSign"
            ),
        );
    }

    fn issue(dir: &Path, name: &str, serial: &str, ext: &str) {
        std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
        openssl(
            dir,
            &format!("req -new {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN=kagi-{name}"),
        );
        openssl(
            dir,
            &format!(
                "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial {serial} \
                 -days 2 -out {name}.pem -extfile {name}.ext"
            ),
        );
    }

    fn der_of(dir: &Path, name: &str) -> Vec<u8> {
        openssl(
            dir,
            &format!("x509 -in {name}.pem -outform DER -out {name}.der"),
        );
        std::fs::read(dir.join(format!("{name}.der"))).unwrap()
    }

    fn pki() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_ca(d, "ca");
        make_ca(d, "other");
        issue(
            d,
            "responder",
            "2",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=OCSPSigning\n",
        );
        issue(
            d,
            "leaf",
            "0x00C0FFEE1234",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
        );
        openssl(
            d,
            "pkcs8 -topk8 -nocrypt -in responder.key -outform DER -out responder.p8",
        );
        Pki {
            ca: der_of(d, "ca"),
            other_ca: der_of(d, "other"),
            responder: der_of(d, "responder"),
            responder_pkcs8: std::fs::read(d.join("responder.p8")).unwrap(),
            dir,
        }
    }

    fn now() -> i64 {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        i64::try_from(secs).unwrap()
    }

    fn ecdsa_sign(
        pkcs8: &[u8],
        tbs: &[u8],
    ) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), aws_lc_rs::error::Unspecified> {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
            .map_err(|_| aws_lc_rs::error::Unspecified)?;
        let sig = key.sign(&SystemRandom::new(), tbs)?;
        let alg = AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        };
        Ok((alg, sig.as_ref().to_vec()))
    }

    fn basic_of(response_der: &[u8]) -> BasicOcspResponse {
        let response = OcspResponse::from_der(response_der).unwrap();
        assert_eq!(response.response_status, OcspResponseStatus::Successful);
        let bytes = response.response_bytes.unwrap();
        assert_eq!(bytes.response_type, rfc6960::ID_PKIX_OCSP_BASIC);
        BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap()
    }

    /// Checks our own response with aws-lc-rs, independently of openssl.
    fn verify_signature(response_der: &[u8], responder_der: &[u8]) {
        let basic = basic_of(response_der);
        let responder = Certificate::from_der(responder_der).unwrap();
        let spki = responder.tbs_certificate().subject_public_key_info();
        let key =
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki.subject_public_key.raw_bytes());
        let tbs = basic.tbs_response_data.to_der().unwrap();
        key.verify(&tbs, basic.signature.raw_bytes())
            .expect("response signature must verify under the responder key");
        assert_eq!(
            basic.tbs_response_data.responder_id,
            ResponderId::ByKey(
                OctetString::new(HashAlg::Sha1.digest(spki.subject_public_key.raw_bytes()))
                    .unwrap()
            )
        );
        assert_eq!(basic.certs.unwrap()[0].to_der().unwrap(), responder_der);
    }

    /// Have openssl make a request, answer it, and have openssl judge the
    /// answer. `digest` is "" or an openssl digest flag such as "-sha256".
    /// Returns openssl's verdict output.
    fn interop(pki: &Pki, digest: &str, nonce: bool, status: Status) -> String {
        let d = pki.dir.path();
        let no_nonce = if nonce { "" } else { "-no_nonce" };
        openssl(
            d,
            &format!("ocsp {digest} -issuer ca.pem -cert leaf.pem -reqout req.der {no_nonce}"),
        );

        let parsed = parse_request(&std::fs::read(d.join("req.der")).unwrap()).unwrap();
        assert_eq!(parsed.certs.len(), 1);
        assert_eq!(parsed.nonce.is_some(), nonce);
        if let Some(n) = &parsed.nonce {
            // OpenSSL wraps its 16 random bytes in an OCTET STRING.
            assert_eq!(&n[..2], &[0x04, 0x10]);
            assert_eq!(n.len(), 18);
        }
        let cert = &parsed.certs[0];
        let want_alg = if digest == "-sha256" {
            HashAlg::Sha256
        } else {
            HashAlg::Sha1
        };
        assert_eq!(cert.hash_alg, want_alg);
        assert_eq!(cert.serial, LEAF_SERIAL);
        assert!(names_issuer(cert, &pki.ca).unwrap());
        assert!(!names_issuer(cert, &pki.other_ca).unwrap());
        assert!(!names_issuer(cert, &pki.responder).unwrap());

        let now = now();
        let statuses = [SingleStatus {
            cert_id: cert.cert_id.clone(),
            status,
            this_update_unix: now - 60,
            next_update_unix: Some(now + 3600),
        }];
        let response = build_response(
            &statuses,
            &pki.responder,
            parsed.nonce.as_deref(),
            now,
            |tbs| ecdsa_sign(&pki.responder_pkcs8, tbs),
        )
        .unwrap();
        verify_signature(&response, &pki.responder);
        std::fs::write(d.join("resp.der"), &response).unwrap();

        // Two verdicts, because `openssl ocsp` only checks the nonce against
        // a request given with -reqin when no -cert builds a fresh request
        // (with a fresh nonce) instead. So: first the real request, checking
        // nonce, signature and chain; then -cert for the per-certificate
        // summary line, with -no_nonce so its throwaway request has none.
        let with_request = openssl(
            d,
            "ocsp -reqin req.der -respin resp.der -CAfile ca.pem -resp_text",
        );
        let summary = openssl(
            d,
            &format!(
                "ocsp {digest} -respin resp.der -issuer ca.pem -cert leaf.pem \
                 -CAfile ca.pem -no_nonce"
            ),
        );
        format!("{with_request}\n{summary}")
    }

    fn assert_clean(out: &str) {
        assert_eq!(out.matches("Response verify OK").count(), 2, "{out}");
        assert!(!out.contains("WARNING"), "{out}");
        assert!(!out.contains("Nonce Verify error"), "{out}");
        assert!(!out.to_lowercase().contains("error"), "{out}");
    }

    #[test]
    fn openssl_good_with_nonce() {
        let pki = pki();
        let out = interop(&pki, "", true, Status::Good);
        assert!(out.contains("leaf.pem: good"), "{out}");
        assert!(out.contains("Cert Status: good"), "{out}");
        assert!(out.contains("OCSP Nonce"), "{out}");
        assert_clean(&out);
    }

    #[test]
    fn openssl_good_without_nonce() {
        let pki = pki();
        let out = interop(&pki, "", false, Status::Good);
        assert!(out.contains("leaf.pem: good"), "{out}");
        assert_clean(&out);
    }

    #[test]
    fn openssl_sha256_cert_id() {
        let pki = pki();
        let out = interop(&pki, "-sha256", true, Status::Good);
        assert!(out.contains("leaf.pem: good"), "{out}");
        assert_clean(&out);
    }

    #[test]
    fn openssl_revoked_with_reason() {
        let pki = pki();
        let status = Status::Revoked {
            at_unix: now() - 3600,
            reason: Some(1),
        };
        let out = interop(&pki, "", true, status);
        assert!(out.contains("leaf.pem: revoked"), "{out}");
        // The -cert summary line (tab-indented), then the -resp_text dump.
        assert!(out.contains("\tReason: keyCompromise"), "{out}");
        assert!(
            out.contains("Revocation Reason: keyCompromise (0x1)"),
            "{out}"
        );
        assert!(out.contains("Revocation Time:"), "{out}");
        assert_clean(&out);
    }

    #[test]
    fn openssl_revoked_without_reason_and_unknown() {
        let pki = pki();
        let status = Status::Revoked {
            at_unix: now() - 3600,
            reason: None,
        };
        let out = interop(&pki, "", false, status);
        assert!(out.contains("leaf.pem: revoked"), "{out}");
        assert!(!out.contains("Reason:"), "{out}");
        assert_clean(&out);

        let out = interop(&pki, "", false, Status::Unknown);
        assert!(out.contains("leaf.pem: unknown"), "{out}");
        assert_clean(&out);
    }

    const VERIFY_WITH_REQUEST: &str = "ocsp -reqin req.der -respin resp.der -CAfile ca.pem";

    /// Proves the nonce check in `interop` has teeth: a response carrying a
    /// different nonce is refused by openssl.
    #[test]
    fn openssl_notices_wrong_nonce() {
        let pki = pki();
        let d = pki.dir.path();
        openssl(d, "ocsp -issuer ca.pem -cert leaf.pem -reqout req.der");
        let parsed = parse_request(&std::fs::read(d.join("req.der")).unwrap()).unwrap();
        let mut wrong = parsed.nonce.clone().unwrap();
        *wrong.last_mut().unwrap() ^= 1;
        let now = now();
        let statuses = [SingleStatus {
            cert_id: parsed.certs[0].cert_id.clone(),
            status: Status::Good,
            this_update_unix: now,
            next_update_unix: None,
        }];
        let response = build_response(&statuses, &pki.responder, Some(&wrong), now, |tbs| {
            ecdsa_sign(&pki.responder_pkcs8, tbs)
        })
        .unwrap();
        std::fs::write(d.join("resp.der"), response).unwrap();
        let (_, out) = run_openssl(d, VERIFY_WITH_REQUEST);
        assert!(out.contains("Nonce Verify error"), "{out}");

        // And one that drops the nonce draws a warning.
        let response = build_response(&statuses, &pki.responder, None, now, |tbs| {
            ecdsa_sign(&pki.responder_pkcs8, tbs)
        })
        .unwrap();
        std::fs::write(d.join("resp.der"), response).unwrap();
        let (_, out) = run_openssl(d, VERIFY_WITH_REQUEST);
        assert!(out.contains("WARNING: no nonce in response"), "{out}");
    }

    #[test]
    fn sign_error_is_propagated() {
        let pki = pki();
        let cert_id = sample_cert_id(HashAlg::Sha1, 20);
        let statuses = [SingleStatus {
            cert_id,
            status: Status::Good,
            this_update_unix: 1_700_000_000,
            next_update_unix: None,
        }];
        let err = build_response(&statuses, &pki.responder, None, 1_700_000_000, |_| {
            Err::<(AlgorithmIdentifierOwned, Vec<u8>), _>("hsm offline")
        })
        .unwrap_err();
        assert!(matches!(err, BuildError::Sign("hsm offline")));
        assert_eq!(
            err.to_string(),
            "signing the OCSP response failed: hsm offline"
        );
    }

    #[test]
    fn build_rejects_bad_arguments() {
        let pki = pki();
        let sign = |_: &[u8]| -> Result<(AlgorithmIdentifierOwned, Vec<u8>), ()> {
            panic!("must not sign invalid input")
        };
        let base = SingleStatus {
            cert_id: sample_cert_id(HashAlg::Sha1, 20),
            status: Status::Good,
            this_update_unix: 1_700_000_000,
            next_update_unix: None,
        };
        let cases: Vec<(Vec<SingleStatus>, &[u8], i64)> = vec![
            (vec![], &pki.responder, 1_700_000_000),
            (vec![base.clone()], b"not a certificate", 1_700_000_000),
            (vec![base.clone()], &pki.responder, -1),
            (
                vec![SingleStatus {
                    next_update_unix: Some(1_600_000_000),
                    ..base.clone()
                }],
                &pki.responder,
                1_700_000_000,
            ),
            (
                vec![SingleStatus {
                    status: Status::Revoked {
                        at_unix: 1_600_000_000,
                        reason: Some(7),
                    },
                    ..base.clone()
                }],
                &pki.responder,
                1_700_000_000,
            ),
            (
                vec![SingleStatus {
                    this_update_unix: 300_000_000_000,
                    ..base.clone()
                }],
                &pki.responder,
                1_700_000_000,
            ),
        ];
        for (statuses, responder, produced) in cases {
            let err = build_response(&statuses, responder, None, produced, sign).unwrap_err();
            assert!(matches!(err, BuildError::Response(_)), "{err:?}");
        }
    }

    /// Tag of the first element inside a DER SEQUENCE.
    fn first_inner_tag(der: &[u8]) -> u8 {
        let len_octets = if der[1] < 0x80 {
            0
        } else {
            usize::from(der[1] & 0x7f)
        };
        der[2 + len_octets]
    }

    fn sample_cert_id(alg: HashAlg, hash_len: usize) -> CertId {
        CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: alg.oid(),
                parameters: Some(der::Any::null()),
            },
            issuer_name_hash: OctetString::new(vec![0x11; hash_len]).unwrap(),
            issuer_key_hash: OctetString::new(vec![0x22; hash_len]).unwrap(),
            serial_number: Int::new(&[0x01, 0x02]).unwrap(),
        }
    }

    fn request_der(cert_ids: Vec<CertId>, extensions: Option<Extensions>) -> Vec<u8> {
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: cert_ids
                    .into_iter()
                    .map(|req_cert| Request {
                        req_cert,
                        single_request_extensions: None,
                    })
                    .collect(),
                request_extensions: extensions,
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    fn extension(oid: ObjectIdentifier, critical: bool, value: &[u8]) -> Extension {
        Extension {
            extn_id: oid,
            critical,
            extn_value: OctetString::new(value).unwrap(),
        }
    }

    #[test]
    fn request_round_trip() {
        let ids = vec![
            sample_cert_id(HashAlg::Sha1, 20),
            sample_cert_id(HashAlg::Sha256, 32),
        ];
        let nonce = [0x04, 0x02, 0xAB, 0xCD];
        let der = request_der(
            ids.clone(),
            Some(vec![extension(rfc6960::ID_PKIX_OCSP_NONCE, false, &nonce)]),
        );
        let parsed = parse_request(&der).unwrap();
        assert_eq!(parsed.nonce.as_deref(), Some(&nonce[..]));
        assert_eq!(parsed.certs.len(), 2);
        assert_eq!(parsed.certs[0].hash_alg, HashAlg::Sha1);
        assert_eq!(parsed.certs[1].hash_alg, HashAlg::Sha256);
        assert_eq!(parsed.certs[1].issuer_key_hash, vec![0x22; 32]);
        assert_eq!(parsed.certs[0].serial, vec![0x01, 0x02]);
        assert_eq!(parsed.certs[0].cert_id, ids[0]);
        assert_eq!(OcspRequest::from_der(&der).unwrap().to_der().unwrap(), der);
        // version DEFAULT v1 must be omitted in DER: tbsRequest starts with
        // the requestList SEQUENCE, not a [0] tag.
        let tbs = OcspRequest::from_der(&der)
            .unwrap()
            .tbs_request
            .to_der()
            .unwrap();
        assert_eq!(first_inner_tag(&tbs), 0x30);

        // Absent hash parameters are as acceptable as NULL.
        let mut id = sample_cert_id(HashAlg::Sha256, 32);
        id.hash_algorithm.parameters = None;
        assert_eq!(
            parse_request(&request_der(vec![id], None)).unwrap().nonce,
            None
        );
    }

    #[test]
    fn signed_request_is_accepted() {
        let mut req =
            OcspRequest::from_der(&request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None))
                .unwrap();
        req.optional_signature = Some(Signature {
            signature_algorithm: AlgorithmIdentifierOwned {
                oid: rfc5912::ECDSA_WITH_SHA_256,
                parameters: None,
            },
            signature: BitString::from_bytes(&[1, 2, 3]).unwrap(),
            certs: None,
        });
        let der = req.to_der().unwrap();
        assert_eq!(parse_request(&der).unwrap().certs.len(), 1);
    }

    #[test]
    fn response_types_round_trip_and_encode_as_rfc() {
        let t = generalized_time(1_700_000_000, "t").unwrap();
        assert_eq!(t.to_der().unwrap()[2..], *b"20231114221320Z");

        assert_eq!(CertStatus::Good(Null).to_der().unwrap(), [0x80, 0x00]);
        assert_eq!(CertStatus::Unknown(Null).to_der().unwrap(), [0x82, 0x00]);
        let revoked = CertStatus::Revoked(RevokedInfo {
            revocation_time: t,
            revocation_reason: Some(CrlReason::KeyCompromise),
        });
        let der = revoked.to_der().unwrap();
        // [1] IMPLICIT SEQUENCE { GeneralizedTime, [0] EXPLICIT ENUMERATED 1 }
        assert_eq!(der[0], 0xA1);
        assert_eq!(der[2], 0x18);
        assert_eq!(der[der.len() - 5..], [0xA0, 0x03, 0x0A, 0x01, 0x01]);
        assert_eq!(CertStatus::from_der(&der).unwrap(), revoked);

        let by_key = ResponderId::ByKey(OctetString::new(vec![7; 20]).unwrap());
        let der = by_key.to_der().unwrap();
        assert_eq!(der[..4], [0xA2, 22, 0x04, 20]);
        assert_eq!(ResponderId::from_der(&der).unwrap(), by_key);

        let data = ResponseData {
            version: Version::V1,
            responder_id: by_key,
            produced_at: t,
            responses: vec![SingleResponse {
                cert_id: sample_cert_id(HashAlg::Sha1, 20),
                cert_status: revoked,
                this_update: t,
                next_update: Some(t),
                single_extensions: None,
            }],
            response_extensions: None,
        };
        let der = data.to_der().unwrap();
        assert_eq!(first_inner_tag(&der), 0xA2, "version v1 must be omitted");
        assert_eq!(ResponseData::from_der(&der).unwrap(), data);
    }

    #[test]
    fn error_responses() {
        for status in [
            OcspResponseStatus::MalformedRequest,
            OcspResponseStatus::InternalError,
            OcspResponseStatus::TryLater,
            OcspResponseStatus::SigRequired,
            OcspResponseStatus::Unauthorized,
        ] {
            let der = error_response(status);
            let expected = OcspResponse {
                response_status: status,
                response_bytes: None,
            };
            assert_eq!(der, expected.to_der().unwrap());
            assert_eq!(OcspResponse::from_der(&der).unwrap(), expected);
        }
        let der = error_response(OcspResponseStatus::Successful);
        assert_eq!(
            OcspResponse::from_der(&der).unwrap().response_status,
            OcspResponseStatus::InternalError
        );
    }

    #[test]
    fn openssl_reads_error_response() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("resp.der"),
            error_response(OcspResponseStatus::TryLater),
        )
        .unwrap();
        let (_, out) = run_openssl(dir.path(), "ocsp -respin resp.der -resp_text");
        assert!(out.contains("Responder Error: trylater (3)"), "{out}");
    }

    #[test]
    fn hostile_requests_are_errors() {
        let valid = request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None);
        assert!(parse_request(&valid).is_ok());

        assert!(matches!(parse_request(&[]), Err(OcspError::Empty)));
        for len in 1..valid.len() {
            assert!(parse_request(&valid[..len]).is_err(), "truncated to {len}");
        }
        let mut trailing = valid.clone();
        trailing.push(0);
        assert!(matches!(
            parse_request(&trailing),
            Err(OcspError::Malformed(_))
        ));

        let huge = vec![0x30; MAX_REQUEST_LEN + 1];
        assert!(matches!(
            parse_request(&huge),
            Err(OcspError::TooLarge { .. })
        ));
        // A length header promising far more than is present.
        assert!(parse_request(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30]).is_err());
        // Deeply nested SEQUENCEs must not blow the stack.
        let mut nested = Vec::new();
        for _ in 0..10_000 {
            nested.extend([0x30, 0x80]);
        }
        assert!(parse_request(&nested).is_err());

        let mut state = 0x1234_5678_u32;
        for _ in 0..2_000 {
            let len = (state % 300) as usize;
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect();
            let _ = parse_request(&garbage);
        }
        // Bit flips over a valid request: any outcome but a panic is fine.
        for i in 0..valid.len() {
            for bit in 0..8 {
                let mut flipped = valid.clone();
                flipped[i] ^= 1 << bit;
                let _ = parse_request(&flipped);
            }
        }

        let ids = vec![sample_cert_id(HashAlg::Sha1, 20); MAX_CERTS_PER_REQUEST + 1];
        assert!(matches!(
            parse_request(&request_der(ids, None)),
            Err(OcspError::TooManyCerts { count: 65, .. })
        ));
        let ids = vec![sample_cert_id(HashAlg::Sha1, 20); MAX_CERTS_PER_REQUEST];
        assert_eq!(
            parse_request(&request_der(ids, None)).unwrap().certs.len(),
            MAX_CERTS_PER_REQUEST
        );
        assert!(matches!(
            parse_request(&request_der(vec![], None)),
            Err(OcspError::NoCerts)
        ));

        let mut md5 = sample_cert_id(HashAlg::Sha1, 16);
        md5.hash_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5");
        assert!(matches!(
            parse_request(&request_der(vec![md5], None)),
            Err(OcspError::UnsupportedHash { index: 0, .. })
        ));
        let mut params = sample_cert_id(HashAlg::Sha1, 20);
        params.hash_algorithm.parameters = Some(der::Any::encode_from(&7u8).unwrap());
        assert!(matches!(
            parse_request(&request_der(vec![params], None)),
            Err(OcspError::HashParameters { .. })
        ));
        let short = sample_cert_id(HashAlg::Sha256, 20);
        assert!(matches!(
            parse_request(&request_der(vec![short], None)),
            Err(OcspError::HashLength {
                want: 32,
                got: 20,
                ..
            })
        ));

        let one = || vec![sample_cert_id(HashAlg::Sha1, 20)];
        let nonce = |v: &[u8]| extension(rfc6960::ID_PKIX_OCSP_NONCE, false, v);
        assert!(matches!(
            parse_request(&request_der(one(), Some(vec![nonce(&[1]), nonce(&[2])]))),
            Err(OcspError::DuplicateNonce)
        ));
        assert!(matches!(
            parse_request(&request_der(one(), Some(vec![nonce(&[])]))),
            Err(OcspError::NonceLength { len: 0, .. })
        ));
        assert!(matches!(
            parse_request(&request_der(
                one(),
                Some(vec![nonce(&[0; MAX_NONCE_LEN + 1])])
            )),
            Err(OcspError::NonceLength { .. })
        ));
        let odd = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1");
        assert!(matches!(
            parse_request(&request_der(one(), Some(vec![extension(odd, true, &[5])]))),
            Err(OcspError::UnsupportedCriticalExtension { .. })
        ));
        let ok = parse_request(&request_der(one(), Some(vec![extension(odd, false, &[5])])));
        assert_eq!(ok.unwrap().nonce, None);
    }

    #[test]
    fn names_issuer_rejects_garbage_ca() {
        let req =
            parse_request(&request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None)).unwrap();
        assert!(matches!(
            names_issuer(&req.certs[0], b"junk"),
            Err(OcspError::IssuerCert(_))
        ));
    }
}
