//! OCSP (RFC 6960): request parsing and response building.
//!
//! No OCSP crate exists for x509-cert 0.3, so the ASN.1 of RFC 6960 §4.1.1
//! and §4.2.1 is mirrored with `der` derives in `kagi_x509::ocsp` (the verifier reads
//! responses with the same types; `asn1` re-exports them). That ASN.1 module is
//! `DEFINITIONS EXPLICIT TAGS`, so every context tag there is EXPLICIT except
//! the three alternatives of `CertStatus`, which the RFC marks IMPLICIT.
//!
//! `asn1` holds the RFC's types, `request` parses what clients send, `response` builds
//! what the responder answers; their items are re-exported here, so paths stay `kagi_ca::ocsp::*`.

mod asn1;
mod error;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use asn1::{
    BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus, Request,
    ResponderId, ResponseBytes, ResponseData, RevokedInfo, Signature, SingleResponse, TbsRequest,
    Version,
};
pub use error::{BuildError, OcspError, ResponseError};
pub use request::{names_issuer, parse_request, HashAlg, ParsedRequest, RequestedCert};
pub use response::{build_response, error_response, SingleStatus, Status};

/// Requests larger than this are refused before any parsing, so a client
/// cannot make the responder allocate for an arbitrarily large body.
pub const MAX_REQUEST_LEN: usize = 1 << 20;

/// Upper bound on CertIDs per request; each one costs a status lookup.
pub const MAX_CERTS_PER_REQUEST: usize = 64;

/// RFC 8954 asks responders to accept 1..=32 octet nonces; the extnValue
/// also carries the OCTET STRING wrapper, and some clients send larger ones.
/// Anything beyond this is refused rather than echoed into a signed response.
pub const MAX_NONCE_LEN: usize = 128;
