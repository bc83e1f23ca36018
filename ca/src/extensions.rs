//! X.509 v3 extensions as kagi issues them (RFC 5280 §4.2), encoded explicitly so what a
//! certificate carries is decided here and nowhere else.

use const_oid::db::rfc5280 as oids;
use const_oid::ObjectIdentifier;
use der::asn1::{BitString, Ia5String, Null, OctetString};
use der::Encode;
use x509_cert::ext::pkix::crl::dp::DistributionPoint;
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::{
    AccessDescription, AuthorityInfoAccessSyntax, AuthorityKeyIdentifier, BasicConstraints,
    CrlDistributionPoints, ExtendedKeyUsage, SubjectAltName,
};
use x509_cert::ext::Extension;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::csr::San;
use crate::error::{CaError, Result};

pub const ID_PKIX_OCSP_NOCHECK: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.5");
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const ID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

fn ext(id: ObjectIdentifier, critical: bool, value: impl Encode) -> Result<Extension> {
    Ok(Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// RFC 5280 §4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING's value.
pub fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        spki.subject_public_key.raw_bytes(),
    )
    .as_ref()
    .to_vec()
}

pub fn subject_key_id(spki: &SubjectPublicKeyInfoOwned) -> Result<Extension> {
    ext(
        oids::ID_CE_SUBJECT_KEY_IDENTIFIER,
        false,
        OctetString::new(key_id(spki))?,
    )
}

pub fn authority_key_id(issuer_key_id: &[u8]) -> Result<Extension> {
    ext(
        oids::ID_CE_AUTHORITY_KEY_IDENTIFIER,
        false,
        AuthorityKeyIdentifier {
            key_identifier: Some(OctetString::new(issuer_key_id)?),
            authority_cert_issuer: None,
            authority_cert_serial_number: None,
        },
    )
}

/// keyUsage from a mask (bit n = 1 << n), DER-minimal: trailing zero bits dropped.
pub fn key_usage(mask: u16) -> Result<Extension> {
    if mask == 0 {
        return Err(CaError::Lint("an empty keyUsage".into()));
    }
    let highest = 15 - mask.leading_zeros() as usize;
    let len = highest / 8 + 1;
    let mut bytes = vec![0u8; len];
    for bit in 0..=highest {
        if mask & (1 << bit) != 0 {
            bytes[bit / 8] |= 0x80 >> (bit % 8);
        }
    }
    let unused = (7 - highest % 8) as u8;
    ext(oids::ID_CE_KEY_USAGE, true, BitString::new(unused, bytes)?)
}

pub fn extended_key_usage(ekus: &[ObjectIdentifier], critical: bool) -> Result<Extension> {
    ext(
        oids::ID_CE_EXT_KEY_USAGE,
        critical,
        ExtendedKeyUsage(ekus.to_vec()),
    )
}

pub fn basic_constraints(ca: bool, path_len: Option<u8>) -> Result<Extension> {
    ext(
        oids::ID_CE_BASIC_CONSTRAINTS,
        true,
        BasicConstraints {
            ca,
            path_len_constraint: path_len,
        },
    )
}

fn ia5(s: &str) -> Result<Ia5String> {
    Ia5String::new(s).map_err(|_| CaError::NotAllowed(format!("'{s}' is not ASCII")))
}

pub fn general_name(san: &San) -> Result<GeneralName> {
    Ok(match san {
        San::Dns(d) => GeneralName::DnsName(ia5(d)?),
        San::Uri(u) => GeneralName::UniformResourceIdentifier(ia5(u)?),
        San::Email(e) => GeneralName::Rfc822Name(ia5(e)?),
        San::Ip(ip) => GeneralName::from(*ip),
    })
}

/// subjectAltName; critical when the subject is empty (RFC 5280 §4.2.1.6).
pub fn subject_alt_name(sans: &[San], critical: bool) -> Result<Extension> {
    let names = sans.iter().map(general_name).collect::<Result<Vec<_>>>()?;
    ext(
        oids::ID_CE_SUBJECT_ALT_NAME,
        critical,
        SubjectAltName(names),
    )
}

pub fn crl_distribution_point(url: &str) -> Result<Extension> {
    ext(
        oids::ID_CE_CRL_DISTRIBUTION_POINTS,
        false,
        CrlDistributionPoints(vec![DistributionPoint {
            distribution_point: Some(DistributionPointName::FullName(vec![
                GeneralName::UniformResourceIdentifier(ia5(url)?),
            ])),
            reasons: None,
            crl_issuer: None,
        }]),
    )
}

pub fn authority_info_access(ocsp: &str, ca_issuers: &str) -> Result<Extension> {
    ext(
        oids::ID_PE_AUTHORITY_INFO_ACCESS,
        false,
        AuthorityInfoAccessSyntax(vec![
            AccessDescription {
                access_method: ID_AD_OCSP,
                access_location: GeneralName::UniformResourceIdentifier(ia5(ocsp)?),
            },
            AccessDescription {
                access_method: ID_AD_CA_ISSUERS,
                access_location: GeneralName::UniformResourceIdentifier(ia5(ca_issuers)?),
            },
        ]),
    )
}

/// id-pkix-ocsp-nocheck (RFC 6960 §4.2.2.2.1): the responder's own status is not checked.
pub fn ocsp_nocheck() -> Result<Extension> {
    ext(ID_PKIX_OCSP_NOCHECK, false, Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn key_usage_is_der_minimal() {
        let e = key_usage(1).unwrap();
        assert_eq!(e.extn_value.as_bytes(), &[0x03, 0x02, 0x07, 0x80]);
        // keyCertSign | cRLSign: bits 5 and 6.
        let e = key_usage((1 << 5) | (1 << 6)).unwrap();
        assert_eq!(e.extn_value.as_bytes(), &[0x03, 0x02, 0x01, 0x06]);
        let e = key_usage((1 << 0) | (1 << 5) | (1 << 6)).unwrap();
        let bits = BitString::from_der(e.extn_value.as_bytes()).unwrap();
        assert_eq!(bits.raw_bytes(), &[0x86]);
        assert!(e.critical);
    }
}
