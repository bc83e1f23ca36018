//! RFC 3161 time-stamp authority: request parsing and response building. The protocol's ASN.1
//! types live in [`crate::rfc3161`] (re-exported here), which the CMS checker reads too.
//!
//! The token is a CMS SignedData built by [`crate::cms_sign`] with the TSTInfo attached.

use std::time::Duration;

use cms::content_info::ContentInfo;
use const_oid::db::{rfc3161, rfc5912};
use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use kagi_hsm_core::DigestAlg;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::ExtendedKeyUsage;

use crate::cms_sign::{self, CmsSigner, Content};
use crate::error::CaError;
pub use crate::rfc3161::*;

/// kagi's default TSA policy, used when a request names none. It sits under the PEN RFC 5612
/// reserves for documentation (32473), so no one's registered arc is claimed; an organisation
/// running kagi for real would name its own policy OID here.
pub const DEFAULT_POLICY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.32473.1");

/// id-aa-signingCertificateV2 (RFC 5035 §3): binds the signature to the TSA certificate.
pub const ID_AA_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");

/// A TimeStampReq is some 60-100 bytes; anything over this is refused before parsing, so a
/// client cannot make the TSA allocate for an arbitrarily large body.
pub const MAX_REQUEST_LEN: usize = 16 * 1024;

/// RFC 3161 leaves the nonce size open; clients send 64 bits. Larger ones are refused rather
/// than echoed into a signed token.
pub const MAX_NONCE_LEN: usize = 64;

/// Status texts are cut to this many characters so a rejection stays small.
pub const MAX_STATUS_TEXT: usize = 512;

/// PKIFailureInfo bits (RFC 3161 §2.4.2) for [`rejection`].
pub mod fail {
    /// Unrecognized or unsupported algorithm identifier.
    pub const BAD_ALG: u8 = 0;
    /// Transaction not permitted or supported.
    pub const BAD_REQUEST: u8 = 2;
    /// The data submitted has the wrong format.
    pub const BAD_DATA_FORMAT: u8 = 5;
    /// The requested extension is not supported by the TSA.
    pub const UNACCEPTED_EXTENSION: u8 = 16;
    /// The request cannot be handled due to a system failure.
    pub const SYSTEM_FAILURE: u8 = 25;
}

// ---------------------------------------------------------------------------
// ASN.1 types (RFC 3161 §2.4, RFC 5035 §3)
// ---------------------------------------------------------------------------

/// Why a TimeStampReq was refused. [`TsaError::fail_bit`] gives the PKIFailureInfo bit to
/// answer it with.
#[derive(Debug, thiserror::Error)]
pub enum TsaError {
    #[error(
        "the time-stamp request body is empty; POST a DER-encoded TimeStampReq (RFC 3161 §2.4.1)"
    )]
    Empty,
    #[error(
        "the time-stamp request is {len} bytes, over the {max}-byte limit; \
         a TimeStampReq carries a hash, not the data it hashes"
    )]
    TooLarge { len: usize, max: usize },
    #[error(
        "the time-stamp request is not a valid DER TimeStampReq ({0}); \
         send one DER-encoded TimeStampReq (RFC 3161 §2.4.1) with nothing after it"
    )]
    Malformed(der::Error),
    #[error("the time-stamp request has version {0}; RFC 3161 defines only version 1")]
    Version(u32),
    #[error(
        "the message imprint uses hash algorithm {0}, which this TSA does not accept; \
         hash with SHA-256 (2.16.840.1.101.3.4.2.1), SHA-384 or SHA-512"
    )]
    UnsupportedHash(ObjectIdentifier),
    #[error(
        "the message imprint's hash algorithm carries parameters; SHA-2 identifiers take none \
         (or NULL)"
    )]
    HashParameters,
    #[error(
        "the message imprint holds {got} bytes, but {alg} digests are {want} bytes; \
         send the raw digest of the data under the named algorithm"
    )]
    HashLength {
        alg: &'static str,
        got: usize,
        want: usize,
    },
    #[error(
        "the time-stamp request nonce is {len} bytes, over the {max}-byte limit; \
         a 64-bit random nonce is enough"
    )]
    NonceLength { len: usize, max: usize },
    #[error(
        "the time-stamp request marks extension {0} as critical, and this TSA does not \
         understand it; drop the extension or mark it non-critical"
    )]
    UnsupportedCriticalExtension(ObjectIdentifier),
}

impl TsaError {
    /// The PKIFailureInfo bit a rejection of this request carries (RFC 3161 §2.4.2).
    pub fn fail_bit(&self) -> u8 {
        match self {
            TsaError::UnsupportedHash(_) | TsaError::HashParameters => fail::BAD_ALG,
            TsaError::Empty
            | TsaError::TooLarge { .. }
            | TsaError::Malformed(_)
            | TsaError::HashLength { .. } => fail::BAD_DATA_FORMAT,
            TsaError::UnsupportedCriticalExtension(_) => fail::UNACCEPTED_EXTENSION,
            TsaError::Version(_) | TsaError::NonceLength { .. } => fail::BAD_REQUEST,
        }
    }
}

/// A TimeStampReq that passed every check, with what a response needs from it.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ParsedRequest {
    /// SHA-256, SHA-384 or SHA-512.
    pub hash_alg: DigestAlg,
    pub hashed_message: Vec<u8>,
    /// The nonce's INTEGER content octets, echoed into the TSTInfo.
    pub nonce: Option<Vec<u8>>,
    /// Whether the client asked for the TSA certificates in the token.
    pub cert_req: bool,
    pub req_policy: Option<ObjectIdentifier>,
    /// The request's MessageImprint as DER, copied into the TSTInfo unchanged.
    pub message_imprint_der: Vec<u8>,
}

impl ParsedRequest {
    /// A request kagi makes for itself (a timestamp over one of its own signatures): the
    /// imprint, certificates included, no nonce, the default policy.
    pub fn for_imprint(
        hash_alg: DigestAlg,
        hashed_message: Vec<u8>,
    ) -> Result<ParsedRequest, CaError> {
        let message_imprint_der = MessageImprint {
            hash_algorithm: cms_sign::digest_algorithm_identifier(hash_alg),
            hashed_message: OctetString::new(hashed_message.clone())?,
        }
        .to_der()?;
        Ok(ParsedRequest {
            hash_alg,
            hashed_message,
            nonce: None,
            cert_req: true,
            req_policy: None,
            message_imprint_der,
        })
    }
}

/// The timeStampToken (a ContentInfo, DER) of a granted TimeStampResp.
pub fn token_of(response_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let resp = TimeStampResp::from_der(response_der)
        .map_err(|e| CaError::Internal(format!("not a TimeStampResp: {e}")))?;
    let token = resp.time_stamp_token.ok_or_else(|| {
        CaError::Internal("the time-stamp response carries no token (it was not granted)".into())
    })?;
    Ok(token.to_der()?)
}

/// Parse and check a DER TimeStampReq.
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, TsaError> {
    if der.is_empty() {
        return Err(TsaError::Empty);
    }
    if der.len() > MAX_REQUEST_LEN {
        return Err(TsaError::TooLarge {
            len: der.len(),
            max: MAX_REQUEST_LEN,
        });
    }
    // `from_der` refuses trailing bytes and non-canonical encodings.
    let req = TimeStampReq::from_der(der).map_err(TsaError::Malformed)?;
    if req.version != 1 {
        return Err(TsaError::Version(req.version));
    }

    let alg = &req.message_imprint.hash_algorithm;
    let hash_alg = cms_sign::digest_from_oid(&alg.oid).ok_or(TsaError::UnsupportedHash(alg.oid))?;
    if let Some(params) = &alg.parameters {
        if params.decode_as::<Null>().is_err() {
            return Err(TsaError::HashParameters);
        }
    }
    let hashed_message = req.message_imprint.hashed_message.as_bytes().to_vec();
    if hashed_message.len() != hash_alg.output_len() {
        return Err(TsaError::HashLength {
            alg: hash_alg.as_str(),
            got: hashed_message.len(),
            want: hash_alg.output_len(),
        });
    }

    let nonce = match &req.nonce {
        Some(n) if n.as_bytes().len() > MAX_NONCE_LEN => {
            return Err(TsaError::NonceLength {
                len: n.as_bytes().len(),
                max: MAX_NONCE_LEN,
            })
        }
        Some(n) => Some(n.as_bytes().to_vec()),
        None => None,
    };

    // This TSA understands no request extensions; non-critical ones may be ignored (RFC 5280
    // §4.2 semantics, which RFC 3161 §2.4.1 borrows).
    if let Some(ext) = req.extensions.iter().flatten().find(|ext| ext.critical) {
        return Err(TsaError::UnsupportedCriticalExtension(ext.extn_id));
    }

    let message_imprint_der = req.message_imprint.to_der().map_err(TsaError::Malformed)?;
    Ok(ParsedRequest {
        hash_alg,
        hashed_message,
        nonce,
        cert_req: req.cert_req,
        req_policy: req.req_policy,
        message_imprint_der,
    })
}

// ---------------------------------------------------------------------------
// Response side
// ---------------------------------------------------------------------------

/// A granted TimeStampResp for `req`, signed by `signer` (the TSA key and certificate).
///
/// The token is a SignedData whose eContent is the DER TSTInfo (eContentType id-ct-TSTInfo),
/// with the signed attributes contentType, signingTime, messageDigest and signingCertificateV2;
/// it carries the TSA certificate and `signer.chain` when the request set certReq. The TSTInfo
/// names the request's policy if it gave one, else `policy`; `serial` is the big-endian
/// magnitude of a positive serial number (the caller draws it at random, 128 bits suffice),
/// `gen_time_unix` the time in whole seconds, with an accuracy of one second.
pub fn granted_response(
    req: &ParsedRequest,
    serial: &[u8],
    gen_time_unix: i64,
    policy: ObjectIdentifier,
    signer: &CmsSigner,
) -> Result<Vec<u8>, CaError> {
    let message_imprint = MessageImprint::from_der(&req.message_imprint_der).map_err(|e| {
        CaError::BadRequest(format!(
            "the request's message imprint is not DER ({e}); get the ParsedRequest from \
             parse_request"
        ))
    })?;
    if message_imprint.hash_algorithm.oid != cms_sign::digest_oid(req.hash_alg)
        || message_imprint.hashed_message.as_bytes() != req.hashed_message.as_slice()
    {
        return Err(CaError::BadRequest(
            "the ParsedRequest's hash fields disagree with its message imprint; get it from \
             parse_request and do not change it"
                .into(),
        ));
    }
    let nonce = match &req.nonce {
        Some(bytes) => Some(canonical_int(bytes, "the nonce")?),
        None => None,
    };
    let gen_time = u64::try_from(gen_time_unix)
        .ok()
        .and_then(|secs| GeneralizedTime::from_unix_duration(Duration::from_secs(secs)).ok())
        .ok_or_else(|| {
            CaError::BadRequest(format!(
                "genTime {gen_time_unix} (unix seconds) cannot be written as a GeneralizedTime; \
                 use a time between 1970 and 9999"
            ))
        })?;

    let tsa_cert = cms_sign::parse_canonical(signer.cert_der, "the TSA certificate")?;
    check_tsa_certificate(&tsa_cert)?;

    let tst_info = TstInfo {
        version: 1,
        policy: req.req_policy.unwrap_or(policy),
        message_imprint,
        serial_number: positive_serial(serial)?,
        gen_time,
        accuracy: Some(Accuracy {
            seconds: Some(1),
            millis: None,
            micros: None,
        }),
        ordering: false,
        nonce,
        tsa: None,
        extensions: None,
    };
    let tst_der = tst_info.to_der()?;

    // RFC 5816: identify the TSA certificate by its SHA-256 hash, plus issuer and serial so a
    // verifier can find it among several.
    let tbs = tsa_cert.tbs_certificate();
    let signing_certificate = SigningCertificateV2 {
        certs: vec![EssCertIdV2 {
            // SHA-256 is the DEFAULT, so DER leaves it out.
            hash_algorithm: None,
            cert_hash: OctetString::new(DigestAlg::Sha256.hash(signer.cert_der))?,
            issuer_serial: Some(IssuerSerial {
                issuer: vec![GeneralName::DirectoryName(tbs.issuer().clone())],
                serial_number: tbs.serial_number().clone(),
            }),
        }],
        policies: None,
    };
    let message_digest = signer.digest.hash(&tst_der);
    let token_der = cms_sign::build(
        &Content {
            content_type: rfc3161::ID_CT_TST_INFO,
            attached: Some(&tst_der),
            message_digest: &message_digest,
        },
        gen_time_unix,
        vec![cms_sign::attribute(
            ID_AA_SIGNING_CERTIFICATE_V2,
            &signing_certificate,
        )?],
        req.cert_req,
        signer,
    )?;

    Ok(TimeStampResp {
        status: PkiStatusInfo {
            status: PkiStatus::Granted,
            status_string: None,
            fail_info: None,
        },
        time_stamp_token: Some(ContentInfo::from_der(&token_der)?),
    }
    .to_der()?)
}

/// RFC 3161 §2.3: the TSA certificate must have exactly one extended key usage,
/// id-kp-timeStamping, marked critical. Verifiers refuse tokens from any other certificate, so
/// a wrongly configured TSA fails here, before it answers anyone.
fn check_tsa_certificate(cert: &x509_cert::Certificate) -> Result<(), CaError> {
    let eku = cert
        .tbs_certificate()
        .get_extension::<ExtendedKeyUsage>()
        .map_err(|e| {
            CaError::BadRequest(format!(
                "the TSA certificate's extendedKeyUsage is malformed ({e})"
            ))
        })?;
    match eku {
        Some((true, ExtendedKeyUsage(usages)))
            if usages.as_slice() == [rfc5912::ID_KP_TIME_STAMPING] =>
        {
            Ok(())
        }
        _ => Err(CaError::BadRequest(
            "the TSA certificate must carry a critical extendedKeyUsage of exactly \
             id-kp-timeStamping (RFC 3161 §2.3); issue it with the timestamping profile"
                .into(),
        )),
    }
}

/// `bytes` as a DER INTEGER, refusing contents DER would not produce (they would be written out
/// as they are and make the TSTInfo non-DER).
fn canonical_int(bytes: &[u8], what: &str) -> Result<Int, CaError> {
    let canonical = match bytes {
        [] => false,
        [0x00, next, ..] => *next >= 0x80,
        [0xFF, next, ..] => *next < 0x80,
        _ => true,
    };
    if !canonical {
        return Err(CaError::BadRequest(format!(
            "{what} is not the content of a DER INTEGER (empty or with a redundant leading byte)"
        )));
    }
    Ok(Int::new(bytes)?)
}

/// A positive INTEGER from a big-endian magnitude: leading zero bytes dropped, one added back
/// when the top bit is set so the value stays positive.
fn positive_serial(serial: &[u8]) -> Result<Int, CaError> {
    let start = serial
        .iter()
        .position(|&b| b != 0)
        .ok_or_else(|| CaError::BadRequest("the TSTInfo serial number must not be zero".into()))?;
    let magnitude = &serial[start..];
    // RFC 3161 §2.4.2: clients must handle serial numbers up to 160 bits.
    if magnitude.len() > 20 {
        return Err(CaError::BadRequest(format!(
            "the TSTInfo serial number is {} bytes; use at most 160 bits (128 random bits suffice)",
            magnitude.len()
        )));
    }
    let mut content = Vec::with_capacity(magnitude.len() + 1);
    if magnitude.first().is_some_and(|&b| b >= 0x80) {
        content.push(0);
    }
    content.extend_from_slice(magnitude);
    Ok(Int::new(&content)?)
}

/// A rejection (status rejection(2)) with PKIFailureInfo bit `fail_bit` (see [`fail`]) and
/// `text` as the statusString (left out when empty, cut to [`MAX_STATUS_TEXT`] characters).
pub fn rejection(fail_bit: u8, text: &str) -> Vec<u8> {
    let text: String = text.chars().take(MAX_STATUS_TEXT).collect();
    let fail_info = {
        // DER writes a named-bit BIT STRING without trailing zero bits: exactly fail_bit + 1
        // bits, the set bit last.
        let bit = usize::from(fail_bit);
        let mut bytes = vec![0u8; bit / 8 + 1];
        if let Some(last) = bytes.last_mut() {
            *last = 0x80 >> (bit % 8);
        }
        BitString::new(7 - (fail_bit % 8), bytes).ok()
    };
    let resp = TimeStampResp {
        status: PkiStatusInfo {
            status: PkiStatus::Rejection,
            status_string: if text.is_empty() {
                None
            } else {
                Some(vec![text])
            },
            fail_info,
        },
        time_stamp_token: None,
    };
    // Encoding a status, a bounded text and a bit string cannot fail; should it ever, a bare
    // rejection still tells the client no.
    resp.to_der()
        .unwrap_or_else(|_| vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02])
}
