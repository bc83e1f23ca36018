//! Certificate revocation lists (RFC 5280 §5): v2, with cRLNumber and the CA's own
//! authorityKeyIdentifier, reason codes on entries, signed in hsm-core and stored with a number
//! that only grows.

use const_oid::db::rfc5280 as oids;
use der::asn1::{OctetString, Uint};
use der::{Encode, Enumerated};
use kagi_hsm_core::records::ca::CrlRecord;
use x509_cert::crl::{RevokedCert, TbsCertList};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber};
use x509_cert::ext::{Extension, Extensions};
use x509_cert::serial_number::SerialNumber;
use x509_cert::Version;

use crate::authority::Authority;
use crate::error::{CaError, Result};
use crate::x509;

/// How long a CRL is good for; kagi regenerates well before (see the service's schedule).
pub const CRL_LIFETIME_SECS: i64 = 7 * 86_400;

/// CRLReason (RFC 5280 §5.3.1), as an ENUMERATED.
#[derive(Clone, Copy, Debug, Enumerated)]
#[repr(u32)]
enum Reason {
    Unspecified = 0,
    KeyCompromise = 1,
    CaCompromise = 2,
    AffiliationChanged = 3,
    Superseded = 4,
    CessationOfOperation = 5,
    CertificateHold = 6,
    RemoveFromCrl = 8,
    PrivilegeWithdrawn = 9,
    AaCompromise = 10,
}

fn reason(code: i64) -> Option<Reason> {
    Some(match code {
        0 => Reason::Unspecified,
        1 => Reason::KeyCompromise,
        2 => Reason::CaCompromise,
        3 => Reason::AffiliationChanged,
        4 => Reason::Superseded,
        5 => Reason::CessationOfOperation,
        6 => Reason::CertificateHold,
        8 => Reason::RemoveFromCrl,
        9 => Reason::PrivilegeWithdrawn,
        10 => Reason::AaCompromise,
        _ => return None,
    })
}

/// A reason code's name as `kagi ca revoke --reason` takes it (the code itself when unknown).
pub fn reason_name(code: i64) -> String {
    match code {
        0 => "unspecified",
        1 => "keyCompromise",
        2 => "cACompromise",
        3 => "affiliationChanged",
        4 => "superseded",
        5 => "cessationOfOperation",
        6 => "certificateHold",
        8 => "removeFromCRL",
        9 => "privilegeWithdrawn",
        10 => "aACompromise",
        other => return format!("reason code {other}"),
    }
    .to_string()
}

/// Reason names as `kagi ca revoke --reason` takes them, and their codes.
pub fn reason_code(name: &str) -> Option<i64> {
    Some(match name {
        "unspecified" => 0,
        "keyCompromise" | "key-compromise" => 1,
        "cACompromise" | "ca-compromise" => 2,
        "affiliationChanged" | "affiliation-changed" => 3,
        "superseded" => 4,
        "cessationOfOperation" | "cessation-of-operation" => 5,
        "privilegeWithdrawn" | "privilege-withdrawn" => 9,
        "aACompromise" | "aa-compromise" => 10,
        _ => return None,
    })
}

fn ext(id: const_oid::ObjectIdentifier, value: impl Encode) -> Result<Extension> {
    Ok(Extension {
        extn_id: id,
        critical: false,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// Sign and store a fresh CRL for `ca` (its signer's session is what the audit log names).
pub fn generate(ca: &Authority, now: i64) -> Result<CrlRecord> {
    let hsm = ca.signer.hsm();
    let number = hsm.next_crl_number(ca.name())?;
    let revoked = hsm.revoked_certificates(ca.name())?;
    let mut entries: Vec<RevokedCert> = Vec::with_capacity(revoked.len());
    for r in &revoked {
        let serial = hex::decode(&r.serial)
            .map_err(|_| CaError::Internal(format!("stored serial '{}' is not hex", r.serial)))?;
        // RFC 5280 §5.3.1: omit the reason rather than say "unspecified".
        let crl_entry_extensions = match r.reason.filter(|c| *c != 0).and_then(reason) {
            Some(code) => Some(vec![ext(oids::ID_CE_CRL_REASONS, code)?]),
            None => None,
        };
        entries.push(RevokedCert {
            serial_number: SerialNumber::new(&serial)?,
            revocation_date: x509::time(r.revoked_at)?,
            crl_entry_extensions,
        });
    }
    let extensions: Extensions = vec![
        ext(
            oids::ID_CE_AUTHORITY_KEY_IDENTIFIER,
            AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(ca.key_id.clone())?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
        ext(
            oids::ID_CE_CRL_NUMBER,
            CrlNumber(Uint::new(&number.to_be_bytes())?),
        )?,
    ];
    let next_update = now + CRL_LIFETIME_SECS;
    let alg = ca.signer.signature_algorithm_identifier_owned()?;
    let tbs = TbsCertList {
        version: Version::V2,
        signature: alg.clone(),
        issuer: ca.subject().clone(),
        this_update: x509::time(now)?,
        next_update: Some(x509::time(next_update)?),
        revoked_certificates: if entries.is_empty() {
            None
        } else {
            Some(entries)
        },
        crl_extensions: Some(extensions),
    }
    .to_der()?;
    let signer = ca.signer.clone().with_audit(serde_json::json!({
        "purpose": "sign_crl", "ca": ca.name(), "crl_number": number, "entries": revoked.len(),
    }));
    let sig = signer.sign_tbs(&tbs)?;
    let der = x509::assemble(&tbs, &alg, &sig)?;
    let record = CrlRecord {
        ca_name: ca.name().to_string(),
        number,
        this_update: now,
        next_update,
        der,
    };
    hsm.store_crl(ca.signer.session(), record.clone())?;
    Ok(record)
}
