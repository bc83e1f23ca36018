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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
#[allow(missing_docs)]
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
        "request #{index} uses CertID hash algorithm {oid}, which this responder does not \
         support; use SHA-1 (1.3.14.3.2.26) or SHA-256 (2.16.840.1.101.3.4.2.1)"
    )]
    UnsupportedHash { index: usize, oid: ObjectIdentifier },
    #[error(
        "request #{index} gives parameters for its CertID hash algorithm; \
         they must be absent or NULL"
    )]
    HashParameters { index: usize },
    #[error(
        "request #{index} has a {got}-byte {field}, but its hash algorithm yields {want} bytes; \
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
