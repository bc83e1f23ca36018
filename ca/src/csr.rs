//! PKCS#10 certificate requests: parsed, their proof of possession checked, and what they ask for
//! laid out for the profile to judge. Nothing here trusts the request's own claims about itself.

use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use const_oid::db::rfc5280;
use const_oid::ObjectIdentifier;
use der::asn1::{Ia5String, PrintableStringRef, Utf8StringRef};
use der::{Decode, Encode, Tag, Tagged};
use kagi_hsm_core::Algorithm;
use std::net::IpAddr;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::request::{CertReq, ExtensionReq};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::error::{CaError, Result};
use crate::profile::attribute_name;

/// Largest CSR accepted, DER. An RSA-4096 request with a full subject is under 2 KiB.
pub const MAX_CSR_BYTES: usize = 8 * 1024;

const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ECDSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.4");
const RSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const RSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const RSA_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const CHALLENGE_PASSWORD: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.7");

/// One subject attribute, with its value as text.
#[derive(Debug, Clone)]
pub struct SubjectAttr {
    pub oid: ObjectIdentifier,
    pub value: String,
}

/// A subjectAltName entry kagi understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
    Email(String),
}

/// A verified CSR.
#[derive(Debug, Clone)]
pub struct Csr {
    pub subject: Name,
    pub subject_attrs: Vec<SubjectAttr>,
    pub spki: SubjectPublicKeyInfoOwned,
    pub key_type: Algorithm,
    pub sans: Vec<San>,
    /// keyUsage bits the CSR asks for (bit n = 1 << n), if it asks.
    pub key_usage: Option<u16>,
    pub ekus: Option<Vec<ObjectIdentifier>>,
}

impl Csr {
    /// A request for a key kagi holds itself (an OCSP responder's, say): possession is known,
    /// so there is no signature to check.
    pub fn for_own_key(subject: Name, spki: SubjectPublicKeyInfoOwned) -> Result<Csr> {
        let key_type = key_type(&spki)?;
        Ok(Csr {
            subject_attrs: subject_attrs(&subject)?,
            subject,
            spki,
            key_type,
            sans: Vec::new(),
            key_usage: None,
            ekus: None,
        })
    }
}

fn bad(msg: impl Into<String>) -> CaError {
    CaError::BadCsr(msg.into())
}

/// Accept PEM ("CERTIFICATE REQUEST" or "NEW CERTIFICATE REQUEST") or DER.
pub fn decode_csr_bytes(input: &[u8]) -> Result<Vec<u8>> {
    let trimmed = input.trim_ascii();
    if trimmed.starts_with(b"-----BEGIN") {
        // Base64 is 4/3 of the DER plus line breaks: anything longer cannot decode to a CSR
        // kagi accepts.
        if trimmed.len() > MAX_CSR_BYTES * 2 {
            return Err(CaError::BadCsr(format!(
                "the CSR's PEM is {} bytes, more than a {MAX_CSR_BYTES}-byte DER request can take",
                trimmed.len()
            )));
        }
        let (label, der) = der::pem::decode_vec(trimmed)
            .map_err(|e| bad(format!("the PEM could not be decoded: {e}")))?;
        if label != "CERTIFICATE REQUEST" && label != "NEW CERTIFICATE REQUEST" {
            return Err(bad(format!(
                "the PEM holds a '{label}', not a 'CERTIFICATE REQUEST'"
            )));
        }
        return Ok(der);
    }
    Ok(input.to_vec())
}

fn oversize(n: usize) -> CaError {
    CaError::BadCsr(format!(
        "the CSR is {n} bytes; kagi accepts at most {MAX_CSR_BYTES} bytes of DER"
    ))
}

/// Parse a DER CSR and check its signature (proof that the requester holds the private key).
pub fn parse(der_bytes: &[u8]) -> Result<Csr> {
    // A DER request is a SEQUENCE: anything else (a README, a text file) is not a CSR at all,
    // whatever its size, and saying "too large" would send the user the wrong way.
    if der_bytes.first() != Some(&0x30) {
        return Err(bad(
            "the body is not a PEM or DER PKCS#10 certificate signing request (CSR); make one with, e.g.: openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj '/CN=device-0001' -out device.csr",
        ));
    }
    if der_bytes.len() > MAX_CSR_BYTES {
        return Err(oversize(der_bytes.len()));
    }
    let req = CertReq::from_der(der_bytes)
        .map_err(|e| bad(format!("not a DER PKCS#10 certificate request: {e}")))?;
    if req.info.version != x509_cert::request::Version::V1 {
        return Err(bad("only version 1 (0) certificate requests exist"));
    }
    let spki = req.info.public_key.clone();
    let key_type = key_type(&spki)?;
    verify_signature(&req, &spki, key_type)?;

    let subject_attrs = subject_attrs(&req.info.subject)?;
    let mut csr = Csr {
        subject: req.info.subject.clone(),
        subject_attrs,
        spki,
        key_type,
        sans: Vec::new(),
        key_usage: None,
        ekus: None,
    };
    for attr in req.info.attributes.iter() {
        if attr.oid == CHALLENGE_PASSWORD {
            // EST and SCEP clients may send one; kagi authenticates callers otherwise.
            continue;
        }
        if attr.oid != ID_EXTENSION_REQ {
            return Err(CaError::NotAllowed(format!(
                "the CSR carries attribute {} which kagi does not support; request only extensions",
                attr.oid
            )));
        }
        for v in attr.values.iter() {
            let exts = ExtensionReq::from_der(&v.to_der()?)
                .map_err(|e| bad(format!("its extensionRequest is malformed: {e}")))?;
            requested_extensions(&mut csr, &exts)?;
        }
    }
    Ok(csr)
}

const ID_EXTENSION_REQ: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.14");

/// Which kagi algorithm a public key is (EC P-256/P-384, RSA 2048/3072/4096, Ed25519); the
/// reading is `kagi-x509`'s, which verifiers share.
pub fn key_type(spki: &SubjectPublicKeyInfoOwned) -> Result<Algorithm> {
    Ok(kagi_x509::key_type(spki)?)
}

fn verify_signature(req: &CertReq, spki: &SubjectPublicKeyInfoOwned, key: Algorithm) -> Result<()> {
    let alg: &'static dyn sig::VerificationAlgorithm = match (key, req.algorithm.oid) {
        (Algorithm::EcP256, o) if o == ECDSA_SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        (Algorithm::EcP256, o) if o == ECDSA_SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
        (Algorithm::EcP256, o) if o == ECDSA_SHA512 => &sig::ECDSA_P256_SHA512_ASN1,
        (Algorithm::EcP384, o) if o == ECDSA_SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
        (Algorithm::EcP384, o) if o == ECDSA_SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        (Algorithm::EcP384, o) if o == ECDSA_SHA512 => &sig::ECDSA_P384_SHA512_ASN1,
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, o) if o == RSA_SHA256 => {
            &sig::RSA_PKCS1_2048_8192_SHA256
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, o) if o == RSA_SHA384 => {
            &sig::RSA_PKCS1_2048_8192_SHA384
        }
        (Algorithm::Rsa2048 | Algorithm::Rsa3072 | Algorithm::Rsa4096, o) if o == RSA_SHA512 => {
            &sig::RSA_PKCS1_2048_8192_SHA512
        }
        (Algorithm::Ed25519, o) if o == ED25519 => &sig::ED25519,
        (_, o) => {
            return Err(bad(format!(
                "bad signature: algorithm {o} does not fit its {key} key, or is not supported (sign with SHA-256/384/512)"
            )))
        }
    };
    let signed = req.info.to_der()?;
    let signature = req
        .signature
        .as_bytes()
        .ok_or_else(|| bad("bad signature: its signature BIT STRING is not whole bytes"))?;
    UnparsedPublicKey::new(alg, spki.subject_public_key.raw_bytes())
        .verify(&signed, signature)
        .map_err(|_| {
            bad("bad signature: the CSR's signature does not verify with its public key (the request was altered, or not signed by the key it names)")
        })
}

/// Attribute values as text; only single-valued RDNs of PrintableString or UTF8String.
fn subject_attrs(name: &Name) -> Result<Vec<SubjectAttr>> {
    let mut out: Vec<SubjectAttr> = Vec::new();
    for rdn in name.iter_rdn() {
        if rdn.len() != 1 {
            return Err(CaError::NotAllowed(
                "the subject has a multi-valued RDN, which kagi does not issue".into(),
            ));
        }
        for atv in rdn.iter() {
            let value = match atv.value.tag() {
                Tag::PrintableString => {
                    PrintableStringRef::try_from(&atv.value).map(|s| s.as_str().to_string())
                }
                Tag::Utf8String => {
                    Utf8StringRef::try_from(&atv.value).map(|s| s.as_str().to_string())
                }
                t => {
                    return Err(CaError::NotAllowed(format!(
                        "subject attribute {} is a {t}; use UTF8String or PrintableString",
                        attribute_name(&atv.oid)
                    )))
                }
            }
            .map_err(|e| bad(format!("a subject attribute is malformed: {e}")))?;
            if out.iter().any(|a| a.oid == atv.oid) {
                return Err(CaError::NotAllowed(format!(
                    "the subject names {} twice",
                    attribute_name(&atv.oid)
                )));
            }
            out.push(SubjectAttr {
                oid: atv.oid,
                value,
            });
        }
    }
    Ok(out)
}

fn ia5(s: &Ia5String) -> String {
    s.as_str().to_string()
}

fn requested_extensions(csr: &mut Csr, exts: &ExtensionReq) -> Result<()> {
    for (i, ext) in exts.0.iter().enumerate() {
        if exts.0[..i].iter().any(|e| e.extn_id == ext.extn_id) {
            return Err(bad(format!("it requests extension {} twice", ext.extn_id)));
        }
        let value = ext.extn_value.as_bytes();
        let id = ext.extn_id;
        if id == rfc5280::ID_CE_SUBJECT_ALT_NAME {
            let san = SubjectAltName::from_der(value)
                .map_err(|e| bad(format!("its subjectAltName is malformed: {e}")))?;
            if san.0.is_empty() {
                return Err(bad(
                    "its subjectAltName is empty (RFC 5280: at least one name); leave the extension out instead",
                ));
            }
            for gn in san.0 {
                csr.sans.push(match gn {
                    GeneralName::DnsName(d) => San::Dns(ia5(&d)),
                    GeneralName::UniformResourceIdentifier(u) => San::Uri(ia5(&u)),
                    GeneralName::Rfc822Name(m) => San::Email(ia5(&m)),
                    GeneralName::IpAddress(ip) => San::Ip(match ip.as_bytes().len() {
                        4 => {
                            let b: [u8; 4] = ip.as_bytes().try_into().map_err(|_| bad("bad IP"))?;
                            IpAddr::from(b)
                        }
                        16 => {
                            let b: [u8; 16] =
                                ip.as_bytes().try_into().map_err(|_| bad("bad IP"))?;
                            IpAddr::from(b)
                        }
                        n => return Err(bad(format!("a subjectAltName IP address is {n} bytes"))),
                    }),
                    _ => {
                        return Err(CaError::NotAllowed(
                            "the subjectAltName has a name type kagi does not issue (use DNS, IP, URI or email)".into(),
                        ))
                    }
                });
            }
        } else if id == rfc5280::ID_CE_KEY_USAGE {
            let bits = der::asn1::BitString::from_der(value)
                .map_err(|e| bad(format!("its keyUsage is malformed: {e}")))?;
            let mut mask = 0u16;
            for (i, set) in bits.bits().enumerate().take(16) {
                if set {
                    mask |= 1 << i;
                }
            }
            if mask == 0 {
                return Err(bad(
                    "its keyUsage asserts no usage; leave the extension out to get the profile's",
                ));
            }
            csr.key_usage = Some(mask);
        } else if id == rfc5280::ID_CE_EXT_KEY_USAGE {
            let eku = ExtendedKeyUsage::from_der(value)
                .map_err(|e| bad(format!("its extendedKeyUsage is malformed: {e}")))?;
            if eku.0.is_empty() {
                return Err(bad(
                    "its extendedKeyUsage is empty (RFC 5280: at least one purpose); leave the extension out to get the profile's",
                ));
            }
            let mut ekus: Vec<ObjectIdentifier> = Vec::with_capacity(eku.0.len());
            for oid in eku.0 {
                if !ekus.contains(&oid) {
                    ekus.push(oid);
                }
            }
            csr.ekus = Some(ekus);
        } else if id == rfc5280::ID_CE_BASIC_CONSTRAINTS {
            let bc = BasicConstraints::from_der(value)
                .map_err(|e| bad(format!("its basicConstraints is malformed: {e}")))?;
            if bc.ca {
                return Err(CaError::NotAllowed(
                    "the CSR asks to be a CA (basicConstraints CA:TRUE); CAs are made with 'kagi ca create-intermediate'".into(),
                ));
            }
        } else if id == rfc5280::ID_CE_SUBJECT_KEY_IDENTIFIER {
            // kagi computes its own from the public key.
        } else {
            return Err(CaError::NotAllowed(format!(
                "the CSR asks for extension {} ({}), which no profile grants",
                id,
                const_oid::db::DB.by_oid(&id).unwrap_or("unknown")
            )));
        }
    }
    Ok(())
}
