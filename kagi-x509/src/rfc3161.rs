//! The ASN.1 of RFC 3161 (time-stamp protocol) §2.4, with the RFC 5816 signing-certificate
//! attribute, mirrored with `der` derives. That module is `DEFINITIONS IMPLICIT TAGS`, so the
//! context tags below are IMPLICIT except `tsa [0] GeneralName`, which tags a CHOICE and is
//! therefore EXPLICIT. kagi's TSA (`kagi_ca::tsa`) builds these, its CMS checker reads a
//! timestamp token's imprint with them, and the verifier reads a token's time and signing
//! certificate with them (`kagi_ca::rfc3161` re-exports this module).

use cms::content_info::ContentInfo;
use der::asn1::{BitString, GeneralizedTime, Int, ObjectIdentifier, OctetString};
use der::{Any, Enumerated, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::ext::Extensions;
use x509_cert::serial_number::SerialNumber;

/// ```text
/// TimeStampReq ::= SEQUENCE  {
///    version                  INTEGER  { v1(1) },
///    messageImprint           MessageImprint,
///    reqPolicy                TSAPolicyId              OPTIONAL,
///    nonce                    INTEGER                  OPTIONAL,
///    certReq                  BOOLEAN                  DEFAULT FALSE,
///    extensions           [0] IMPLICIT Extensions      OPTIONAL  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampReq {
    pub version: u32,
    pub message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    pub req_policy: Option<ObjectIdentifier>,
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    #[asn1(default = "Default::default")]
    pub cert_req: bool,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub extensions: Option<Extensions>,
}

/// ```text
/// MessageImprint ::= SEQUENCE  {
///    hashAlgorithm            AlgorithmIdentifier,
///    hashedMessage            OCTET STRING  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct MessageImprint {
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub hashed_message: OctetString,
}

/// ```text
/// TimeStampResp ::= SEQUENCE  {
///    status                   PKIStatusInfo,
///    timeStampToken           TimeStampToken     OPTIONAL  }
/// TimeStampToken ::= ContentInfo
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampResp {
    pub status: PkiStatusInfo,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<ContentInfo>,
}

/// ```text
/// PKIStatus ::= INTEGER {
///    granted(0), grantedWithMods(1), rejection(2), waiting(3),
///    revocationWarning(4), revocationNotification(5) }
/// ```
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[asn1(type = "INTEGER")]
#[repr(u8)]
pub enum PkiStatus {
    Granted = 0,
    GrantedWithMods = 1,
    Rejection = 2,
    Waiting = 3,
    RevocationWarning = 4,
    RevocationNotification = 5,
}

/// ```text
/// PKIStatusInfo ::= SEQUENCE {
///    status        PKIStatus,
///    statusString  PKIFreeText     OPTIONAL,
///    failInfo      PKIFailureInfo  OPTIONAL  }
/// PKIFreeText ::= SEQUENCE SIZE (1..MAX) OF UTF8String
/// PKIFailureInfo ::= BIT STRING
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct PkiStatusInfo {
    pub status: PkiStatus,
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// ```text
/// TSTInfo ::= SEQUENCE  {
///    version                  INTEGER  { v1(1) },
///    policy                   TSAPolicyId,
///    messageImprint           MessageImprint,
///    serialNumber             INTEGER,
///    genTime                  GeneralizedTime,
///    accuracy                 Accuracy                 OPTIONAL,
///    ordering                 BOOLEAN             DEFAULT FALSE,
///    nonce                    INTEGER                  OPTIONAL,
///    tsa                  [0] GeneralName              OPTIONAL,
///    extensions           [1] IMPLICIT Extensions      OPTIONAL  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TstInfo {
    pub version: u32,
    pub policy: ObjectIdentifier,
    pub message_imprint: MessageImprint,
    pub serial_number: Int,
    pub gen_time: GeneralizedTime,
    #[asn1(optional = "true")]
    pub accuracy: Option<Accuracy>,
    #[asn1(default = "Default::default")]
    pub ordering: bool,
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub extensions: Option<Extensions>,
}

/// A TSTInfo read only as far as its messageImprint, the rest kept as raw DER: enough to check
/// what a token from any TSA timestamps. [`TstInfo`] itself cannot read every TSA's tokens,
/// because `der`'s GeneralizedTime takes no fractional seconds, which many TSAs write.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TstInfoImprint {
    pub version: Int,
    pub policy: ObjectIdentifier,
    pub message_imprint: MessageImprint,
    pub serial_number: Int,
    pub gen_time: Any,
    // accuracy, ordering, nonce, tsa and extensions: at most five more elements.
    #[asn1(optional = "true")]
    pub rest0: Option<Any>,
    #[asn1(optional = "true")]
    pub rest1: Option<Any>,
    #[asn1(optional = "true")]
    pub rest2: Option<Any>,
    #[asn1(optional = "true")]
    pub rest3: Option<Any>,
    #[asn1(optional = "true")]
    pub rest4: Option<Any>,
}

/// ```text
/// Accuracy ::= SEQUENCE {
///    seconds              INTEGER           OPTIONAL,
///    millis           [0] INTEGER (1..999)  OPTIONAL,
///    micros           [1] INTEGER (1..999)  OPTIONAL  }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct Accuracy {
    #[asn1(optional = "true")]
    pub seconds: Option<u32>,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub millis: Option<u16>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub micros: Option<u16>,
}

/// ```text
/// SigningCertificateV2 ::= SEQUENCE {
///    certs        SEQUENCE OF ESSCertIDv2,
///    policies     SEQUENCE OF PolicyInformation OPTIONAL }
/// ```
///
/// `policies` is kept as raw DER: kagi never writes it.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    pub certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    pub policies: Option<Vec<der::Any>>,
}

/// ```text
/// ESSCertIDv2 ::= SEQUENCE {
///    hashAlgorithm   AlgorithmIdentifier DEFAULT {algorithm id-sha256},
///    certHash        Hash,
///    issuerSerial    IssuerSerial OPTIONAL }
/// Hash ::= OCTET STRING
/// ```
///
/// `None` stands for the DEFAULT (SHA-256), which DER leaves out.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// ```text
/// IssuerSerial ::= SEQUENCE {
///    issuer          GeneralNames,
///    serialNumber    CertificateSerialNumber }
/// ```
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IssuerSerial {
    pub issuer: GeneralNames,
    pub serial_number: SerialNumber,
}
