//! The request side: parse a DER OCSPRequest and match its CertIDs to a CA.

use aws_lc_rs::digest;
use const_oid::db::{rfc5912, rfc6960};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Tag, Tagged};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::Extension;
use x509_cert::Certificate;

use super::asn1::{CertId, OcspRequest};
use super::error::OcspError;
use super::{MAX_CERTS_PER_REQUEST, MAX_NONCE_LEN, MAX_REQUEST_LEN};

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
