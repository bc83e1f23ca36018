//! The ASN.1 of RFC 6960 §4.1.1 and §4.2.1 (OCSP), mirrored with `der` derives. The RFC's
//! module is `DEFINITIONS EXPLICIT TAGS`: every context tag here is EXPLICIT except the three
//! alternatives of `CertStatus`, which the RFC marks IMPLICIT. kagi's responder
//! (`kagi_ca::ocsp`, which re-exports these) builds responses with them, and the verifier
//! builds requests and reads responses with them.

use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Choice, Enumerated, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::Extensions;
use x509_cert::name::Name;
use x509_cert::Certificate;

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
