//! Issuing an end-entity certificate: the CSR is judged against its profile, the certificate is
//! planned and checked (pre-issuance lint), and only then signed by the CA key in hsm-core, in
//! the same transaction that counts the use, charges the line's quota and stores the result.

use const_oid::db::rfc5280 as oids;
use der::{Decode, Encode};
use kagi_hsm_core::records::ca::{NewCertificate, SerialClaim};
use kagi_hsm_core::{QuotaCharge, Session};
use std::collections::HashSet;
use x509_cert::certificate::TbsCertificate;

use crate::authority::{Authority, PublicUrls};
use crate::csr::{self, Csr};
use crate::error::{CaError, Result};
use crate::extensions as ext;
use crate::hsm_key::HsmSigner;
use crate::profile::{attribute_name, Days, Profile, NO_EXPIRY_UNIX};
use crate::serial::random_serial;
use crate::x509::{self, TbsPlan};

/// Backdating notBefore a little keeps a device with a slightly slow clock from rejecting a
/// certificate it just received.
const BACKDATE_SECS: i64 = 60;

#[derive(Debug, Clone, Default)]
pub struct IssueOptions {
    /// `None`: the profile's default.
    pub validity: Option<Days>,
    /// Issue even though the CSR's device serial number has a live certificate for another key
    /// (profiles with `one_certificate_per_serial_number`). Officers only; audited.
    pub override_serial_in_use: bool,
}

/// A certificate issued and durably stored.
#[derive(Debug, Clone)]
pub struct Issued {
    pub record: kagi_hsm_core::records::ca::CertificateRecord,
    pub der: Vec<u8>,
}

fn not_allowed(profile: &Profile, why: String) -> CaError {
    CaError::NotAllowed(format!("profile '{}' does not allow {why}", profile.name()))
}

/// Judge a verified CSR against a profile and lay out the certificate. Nothing is signed.
pub fn plan(
    ca: &Authority,
    profile: &Profile,
    csr: &Csr,
    opts: &IssueOptions,
    urls: &PublicUrls,
    now: i64,
) -> Result<TbsPlan> {
    if ca.is_revoked() {
        return Err(CaError::Conflict(format!(
            "CA '{}' is revoked and issues nothing more",
            ca.name()
        )));
    }
    let key = csr.key_type.as_str();
    if !profile.spec.key_types.iter().any(|k| k == key) {
        return Err(not_allowed(
            profile,
            format!(
                "a {key} key (wrong key type; allowed: {})",
                profile.spec.key_types.join(", ")
            ),
        ));
    }

    // Subject: every attribute must be one the profile names, with a matching value.
    for a in &csr.subject_attrs {
        let rule = profile.subject.iter().find(|(oid, ..)| *oid == a.oid);
        match rule {
            None => {
                return Err(not_allowed(
                    profile,
                    format!(
                        "subject attribute {} (subject outside the profile)",
                        attribute_name(&a.oid)
                    ),
                ))
            }
            Some((_, name, re, _)) if !re.is_match(&a.value) => {
                return Err(not_allowed(
                    profile,
                    format!(
                        "{name}={:?} (subject outside the profile: it must match {})",
                        a.value.chars().take(80).collect::<String>(),
                        re.as_str()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    for (oid, name, _, required) in &profile.subject {
        if *required && !csr.subject_attrs.iter().any(|a| a.oid == *oid) {
            return Err(CaError::NotAllowed(format!(
                "profile '{}' requires {name} in the subject (subject outside the profile)",
                profile.name()
            )));
        }
    }

    // Subject alternative names.
    for s in &csr.sans {
        if let Some(why) = profile.san_refusal(s) {
            return Err(CaError::SanNotAllowed(why));
        }
    }
    if profile.spec.san_required && csr.sans.is_empty() {
        return Err(CaError::NotAllowed(format!(
            "profile '{}' needs at least one subjectAltName",
            profile.name()
        )));
    }
    if csr.subject_attrs.is_empty() && csr.sans.is_empty() {
        return Err(CaError::NotAllowed(
            "the CSR has neither a subject nor a subjectAltName".into(),
        ));
    }

    // What the key may do: a CSR may ask for less than the profile, never more.
    if let Some(ku) = csr.key_usage {
        if ku & !profile.key_usage_bits != 0 {
            return Err(not_allowed(
                profile,
                format!(
                    "the key usages the CSR asks for (profile grants {})",
                    profile.spec.key_usage.join(", ")
                ),
            ));
        }
    }
    if let Some(ekus) = &csr.ekus {
        if let Some(extra) = ekus.iter().find(|e| !profile.ekus.contains(e)) {
            return Err(not_allowed(profile, format!("extended key usage {extra}")));
        }
    }

    // Validity.
    let not_before = now - BACKDATE_SECS;
    let wanted = opts.validity.unwrap_or(profile.spec.default_validity_days);
    let not_after = match (wanted, profile.spec.max_validity_days) {
        (Days::Forever(_), Days::Forever(_)) => NO_EXPIRY_UNIX,
        (Days::Forever(_), Days::Days(max)) => {
            return Err(not_allowed(
                profile,
                format!("a certificate without expiry (at most {max} days)"),
            ))
        }
        (Days::Days(d), max) => {
            if d < 1 {
                return Err(CaError::BadRequest(
                    "the validity must be at least 1 day".into(),
                ));
            }
            if let Days::Days(max) = max {
                if d > max {
                    return Err(not_allowed(
                        profile,
                        format!("{d} days of validity (at most {max})"),
                    ));
                }
            }
            let end = now.saturating_add(d.saturating_mul(86_400));
            if end > ca.not_after() {
                return Err(CaError::NotAllowed(format!(
                    "{d} days would outlive CA '{}' (it expires at unix {}): ask for fewer days",
                    ca.name(),
                    ca.not_after()
                )));
            }
            end
        }
    };

    let mut extensions = vec![ext::key_usage(
        csr.key_usage.unwrap_or(profile.key_usage_bits),
    )?];
    if !profile.ekus.is_empty() {
        let ekus = csr.ekus.clone().unwrap_or_else(|| profile.ekus.clone());
        extensions.push(ext::extended_key_usage(&ekus, profile.spec.eku_critical)?);
    }
    if !csr.sans.is_empty() {
        extensions.push(ext::subject_alt_name(
            &csr.sans,
            csr.subject_attrs.is_empty(),
        )?);
    }
    extensions.push(ext::subject_key_id(&csr.spki)?);
    extensions.push(ext::authority_key_id(&ca.key_id)?);
    extensions.push(ext::crl_distribution_point(&urls.crl(ca.name()))?);
    extensions.push(ext::authority_info_access(
        &urls.ocsp(),
        &urls.ca_cert(ca.name()),
    )?);
    if profile.spec.ocsp_nocheck {
        extensions.push(ext::ocsp_nocheck()?);
    }

    Ok(TbsPlan {
        serial: random_serial()
            .map_err(|_| CaError::Internal("no randomness for a serial".into()))?,
        not_before,
        not_after,
        subject: csr.subject.clone(),
        issuer: ca.subject().clone(),
        spki: csr.spki.clone(),
        extensions,
    })
}

/// SHA-256 of a SubjectPublicKeyInfo's DER: how a stored certificate names its key.
pub fn spki_hash(spki: &x509_cert::spki::SubjectPublicKeyInfoOwned) -> Result<[u8; 32]> {
    let der = spki.to_der()?;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der);
    d.as_ref()
        .try_into()
        .map_err(|_| CaError::Internal("SHA-256 is not 32 bytes".into()))
}

/// Pre-issuance lint: read back the TBSCertificate about to be signed and refuse anything RFC
/// 5280 or the profile would not allow. A failure here is kagi's bug, caught before signing.
pub fn check_tbs(tbs_der: &[u8], ca: &Authority, profile: Option<&Profile>) -> Result<()> {
    let lint = |m: &str| Err(CaError::Lint(m.to_string()));
    let tbs = TbsCertificate::from_der(tbs_der)
        .map_err(|e| CaError::Lint(format!("the TBSCertificate does not decode: {e}")))?;
    let serial = tbs.serial_number().as_bytes();
    if serial.is_empty()
        || serial.len() > 20
        || serial[0] & 0x80 != 0
        || serial.iter().all(|b| *b == 0)
    {
        return lint("the serial must be a positive INTEGER of at most 20 octets");
    }
    if tbs.issuer().to_der()? != ca.subject().to_der()? {
        return lint("the issuer is not the CA's subject");
    }
    let v = tbs.validity();
    if v.not_before.to_unix_duration() >= v.not_after.to_unix_duration() {
        return lint("notBefore is not before notAfter");
    }
    if tbs.signature() != &ca.signer.signature_algorithm_identifier_owned()? {
        return lint("the signature algorithm is not the CA key's");
    }
    let exts = tbs.extensions().map(|e| e.as_slice()).unwrap_or(&[]);
    let mut seen = HashSet::new();
    for e in exts {
        if !seen.insert(e.extn_id) {
            return lint("an extension appears twice");
        }
    }
    let has = |oid| exts.iter().find(|e| e.extn_id == oid);
    if let Some(e) = has(oids::ID_CE_EXT_KEY_USAGE) {
        let eku = x509_cert::ext::pkix::ExtendedKeyUsage::from_der(e.extn_value.as_bytes())?;
        let mut seen = HashSet::new();
        if eku.0.is_empty() || !eku.0.iter().all(|o| seen.insert(*o)) {
            return lint("extendedKeyUsage is empty or repeats a purpose");
        }
    }
    if let Some(e) = has(oids::ID_CE_SUBJECT_ALT_NAME) {
        let san = x509_cert::ext::pkix::SubjectAltName::from_der(e.extn_value.as_bytes())?;
        if san.0.is_empty() {
            return lint("subjectAltName is empty");
        }
    }
    if has(oids::ID_CE_AUTHORITY_KEY_IDENTIFIER).is_none() {
        return lint("no authorityKeyIdentifier");
    }
    if has(oids::ID_CE_SUBJECT_KEY_IDENTIFIER).is_none() {
        return lint("no subjectKeyIdentifier");
    }
    match has(oids::ID_CE_KEY_USAGE) {
        Some(ku) if ku.critical => {}
        _ => return lint("keyUsage is missing or not critical"),
    }
    if tbs.subject().is_empty() {
        match has(oids::ID_CE_SUBJECT_ALT_NAME) {
            Some(san) if san.critical => {}
            _ => return lint("an empty subject needs a critical subjectAltName"),
        }
    }
    if let Some(p) = profile {
        if let Some(bc) = has(oids::ID_CE_BASIC_CONSTRAINTS) {
            let bc = x509_cert::ext::pkix::BasicConstraints::from_der(bc.extn_value.as_bytes())?;
            if bc.ca {
                return lint("an end-entity certificate may not be a CA");
            }
        }
        let ku = has(oids::ID_CE_KEY_USAGE)
            .map(|e| der::asn1::BitString::from_der(e.extn_value.as_bytes()))
            .transpose()?;
        if let Some(ku) = ku {
            for (i, set) in ku.bits().enumerate() {
                if set && i < 16 && p.key_usage_bits & (1 << i) == 0 {
                    return lint("keyUsage grants more than the profile");
                }
            }
        }
        if let Days::Days(max) = p.spec.max_validity_days {
            let span = v.not_after.to_unix_duration().as_secs() as i64
                - v.not_before.to_unix_duration().as_secs() as i64;
            if span > max * 86_400 + BACKDATE_SECS {
                return lint("the validity exceeds the profile's maximum");
            }
        }
    }
    Ok(())
}

/// Issue one certificate for a CSR (PEM or DER) to the caller in `session`. `quotas` (from the
/// active policy) are charged in the CA key use's own transaction.
#[allow(clippy::too_many_arguments)]
pub fn issue(
    ca: &Authority,
    session: &Session,
    profile: &Profile,
    csr_input: &[u8],
    opts: &IssueOptions,
    urls: &PublicUrls,
    quotas: &[QuotaCharge],
    audit: serde_json::Value,
) -> Result<Issued> {
    let der_bytes = csr::decode_csr_bytes(csr_input)?;
    let csr = csr::parse(&der_bytes)?;
    issue_parsed(ca, session, profile, &csr, opts, urls, quotas, audit)
}

/// [`issue`] for a request already parsed and verified (or built by kagi for its own key).
#[allow(clippy::too_many_arguments)]
pub fn issue_parsed(
    ca: &Authority,
    session: &Session,
    profile: &Profile,
    csr: &Csr,
    opts: &IssueOptions,
    urls: &PublicUrls,
    quotas: &[QuotaCharge],
    audit: serde_json::Value,
) -> Result<Issued> {
    let now = x509::unix_now();
    let plan = plan(ca, profile, csr, opts, urls, now)?;
    let signer = ca.signer.for_session(session);
    let tbs = x509::tbs_der(&plan, &signer)?;
    check_tbs(&tbs, ca, Some(profile))?;

    let serial = hex::encode(&plan.serial);
    let subject = plan.subject.to_string();
    let mut detail = serde_json::json!({
        "purpose": "issue_certificate", "ca": ca.name(), "profile": profile.name(),
        "serial": serial, "subject": subject,
    });
    let claim = serial_claim(ca, session, profile, csr, opts, &plan, &mut detail)?;
    if let (Some(d), Some(extra)) = (detail.as_object_mut(), audit.as_object()) {
        for (k, v) in extra {
            d.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    sign_and_store(
        &signer,
        session,
        &plan,
        &tbs,
        ca.name(),
        profile.name(),
        quotas,
        detail,
        claim.as_ref(),
    )
}

/// For a profile with one live certificate per device serial number: the serial number this
/// certificate claims, checked before anything is signed (the claim itself is made, and checked
/// again, in the transaction that stores the certificate). The same key may renew; another key
/// is refused with `serial_in_use` unless an officer asked for the override, which the audit
/// record carries with the certificate it takes the serial number from.
fn serial_claim(
    ca: &Authority,
    session: &Session,
    profile: &Profile,
    csr: &Csr,
    opts: &IssueOptions,
    plan: &TbsPlan,
    detail: &mut serde_json::Value,
) -> Result<Option<SerialClaim>> {
    if !profile.spec.one_certificate_per_serial_number {
        if opts.override_serial_in_use {
            return Err(CaError::BadRequest(format!(
                "profile '{}' does not limit certificates per serial number, so there is nothing to override",
                profile.name()
            )));
        }
        return Ok(None);
    }
    if opts.override_serial_in_use {
        session
            .require(
                kagi_hsm_core::Role::Officer,
                "issue a certificate for a device serial number in use",
            )
            .map_err(CaError::Hsm)?;
    }
    let serial_number = csr
        .subject_attrs
        .iter()
        .find(|a| a.oid == const_oid::db::rfc4519::SERIAL_NUMBER)
        .map(|a| a.value.clone())
        .ok_or_else(|| {
            CaError::NotAllowed(format!(
                "profile '{}' issues one certificate per device serial number, so the subject needs serialNumber",
                profile.name()
            ))
        })?;
    let spki = hex::encode(spki_hash(&plan.spki)?);
    let hsm = ca.signer.hsm();
    let holder = hsm.device_serial_holder(ca.name(), &serial_number)?;
    if let Some(d) = detail.as_object_mut() {
        d.insert("device_serial".into(), serial_number.clone().into());
    }
    match holder {
        Some(h) if h.spki_sha256 != spki => {
            if !opts.override_serial_in_use {
                // A clone asking for an identity is worth a trace, though nothing was signed.
                let mut refused = detail.clone();
                refused["holder"] = h.cert_serial.clone().into();
                if let Err(e) = hsm.record_event(
                    &session.actor(),
                    "ca.issue",
                    "denied:serial_in_use",
                    refused,
                ) {
                    log::warn!("could not audit a refused device serial number: {e}");
                }
                return Err(CaError::Hsm(kagi_hsm_core::Hsm::serial_in_use(
                    ca.name(),
                    &serial_number,
                    &h,
                )));
            }
            if let Some(d) = detail.as_object_mut() {
                d.insert("override_serial_in_use".into(), true.into());
                d.insert("replaces".into(), h.cert_serial.into());
            }
        }
        Some(h) => {
            if let Some(d) = detail.as_object_mut() {
                d.insert("renews".into(), h.cert_serial.into());
            }
        }
        None => {}
    }
    Ok(Some(SerialClaim {
        serial_number,
        override_in_use: opts.override_serial_in_use,
    }))
}

/// Sign `tbs` (laid out as `plan`) with `signer`'s CA key and store the certificate as issued by
/// `ca_name` under `profile`, in the transaction that counts the use and makes `claim` (see
/// `Hsm::sign_and_store_certificate`). End-entity issuance and intermediate CAs both end here.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_and_store(
    signer: &HsmSigner,
    session: &Session,
    plan: &TbsPlan,
    tbs: &[u8],
    ca_name: &str,
    profile: &str,
    quotas: &[QuotaCharge],
    detail: serde_json::Value,
    claim: Option<&SerialClaim>,
) -> Result<Issued> {
    let alg = signer.signature_algorithm_identifier_owned()?;
    let serial = hex::encode(&plan.serial);
    let subject = plan.subject.to_string();
    let spki_sha256 = spki_hash(&plan.spki)?;
    let mut der_out = Vec::new();
    let mut build = |sig: &[u8]| -> kagi_hsm_core::Result<NewCertificate> {
        let der = x509::assemble(tbs, &alg, sig)
            .map_err(|e| kagi_hsm_core::HsmError::BadInput(e.to_string()))?;
        der_out = der.clone();
        Ok(NewCertificate {
            serial: serial.clone(),
            ca_name: ca_name.to_string(),
            profile: profile.to_string(),
            subject: subject.clone(),
            not_before: plan.not_before,
            not_after: plan.not_after,
            der,
            spki_sha256,
        })
    };
    let (record, _) = signer.hsm().sign_and_store_certificate(
        session,
        signer.label(),
        &signer.sign_request(tbs)?,
        quotas,
        detail,
        claim,
        &mut build,
    )?;
    Ok(Issued {
        record,
        der: der_out,
    })
}
