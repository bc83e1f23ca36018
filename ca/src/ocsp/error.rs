//! Why a request could not be used, or a response could not be built.

use der::asn1::ObjectIdentifier;

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

/// Why [`build_response`](super::build_response) could not produce a response from its arguments.
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

/// [`build_response`](super::build_response) failure: either the arguments were unusable, or the
/// caller's signer failed (its error is kept as is).
#[derive(Debug, thiserror::Error)]
pub enum BuildError<E> {
    #[error(transparent)]
    Response(#[from] ResponseError),
    #[error("signing the OCSP response failed: {0}")]
    Sign(E),
}
