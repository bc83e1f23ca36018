//! Creating and revoking CAs. Keys are generated inside hsm-core and never leave it; the root's
//! certificate is signed through x509-cert's builder with the HSM handle as its `Signer`.
//! Both changes pass the policy's M-of-N quorum first (hsm-core's approvals).

use der::{Decode, Encode};
use kagi_hsm_core::records::ca::{CaRecord, CA_KEY_NAMESPACE};
use kagi_hsm_core::{Algorithm, ApprovalAction, Gated, Hsm, HsmError, Session};
use std::str::FromStr;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::Certificate;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Validity;

use crate::authority::{Authority, PublicUrls};
use crate::error::{CaError, Result};
use crate::extensions as ext;
use crate::hsm_key::{unwrap_builder_error, HsmSignature, HsmSigner};
use crate::serial::random_serial;
use crate::x509::{self, Fixed, TbsPlan};

const CA_KEY_USAGE: u16 = (1 << 5) | (1 << 6); // keyCertSign | cRLSign

/// What a new CA should be.
#[derive(Debug, Clone)]
pub struct CaSpec {
    pub name: String,
    /// RFC 4514, e.g. "CN=Example Device CA,O=Example".
    pub subject: String,
    pub alg: Algorithm,
    pub validity_days: i64,
}

fn parse_subject(s: &str) -> Result<Name> {
    let name = Name::from_str(s).map_err(|e| {
        CaError::BadRequest(format!(
            "subject '{s}' is not an RFC 4514 name ({e}); write it like 'CN=Example Root CA,O=Example'"
        ))
    })?;
    if name.is_empty() {
        return Err(CaError::BadRequest("a CA needs a non-empty subject".into()));
    }
    Ok(name)
}

fn check_spec(spec: &CaSpec) -> Result<Name> {
    if !(1..=36_500).contains(&spec.validity_days) {
        return Err(CaError::BadRequest(
            "a CA's validity is 1 to 36500 days".into(),
        ));
    }
    crate::hsm_key::signature_algorithm(spec.alg)?;
    parse_subject(&spec.subject)
}

fn authorize(
    hsm: &Hsm,
    session: &Session,
    spec: &CaSpec,
    parent: Option<&str>,
    approval: Option<&str>,
) -> Result<Gated<kagi_hsm_core::ChangeGrant>> {
    match hsm.ca(&spec.name) {
        Ok(_) => {
            return Err(CaError::Conflict(format!(
                "a CA named '{}' already exists: pick another name",
                spec.name
            )))
        }
        Err(HsmError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let action = ApprovalAction::Authorize {
        change: kagi_hsm_core::records::ca::CREATE_CA.into(),
        target: format!("ca:{}", spec.name),
        params: serde_json::json!({
            "name": spec.name,
            "parent": parent,
            "subject": spec.subject,
            "alg": spec.alg.as_str(),
        }),
    };
    let summary = match parent {
        None => format!(
            "create root CA '{}' ({}, {})",
            spec.name, spec.subject, spec.alg
        ),
        Some(p) => format!(
            "create intermediate CA '{}' under '{p}' ({}, {})",
            spec.name, spec.subject, spec.alg
        ),
    };
    Ok(hsm.authorize_ca_change(session, action, &summary, approval)?)
}

/// The CA's key: new, or the one a previous attempt made before it failed (only CA key
/// creation makes keys with the sealed `certify` operation, so no one else can have made it).
fn ca_key(hsm: &Hsm, session: &Session, spec: &CaSpec) -> Result<HsmSigner> {
    let label = format!("{}{}", CA_KEY_NAMESPACE, spec.name);
    match hsm.create_ca_key(session, &spec.name, spec.alg) {
        Ok(_) => {}
        Err(HsmError::KeyExists(_)) => {
            let info = hsm.key_info(session, &label)?;
            if !info.operations.contains(&kagi_hsm_core::Operation::Certify) {
                return Err(CaError::Conflict(format!(
                    "key '{label}' exists but is not a CA key: destroy it or pick another CA name"
                )));
            }
            if info.algorithm != spec.alg {
                return Err(CaError::Conflict(format!(
                    "key '{label}' exists with algorithm {}: destroy it or pick another CA name",
                    info.algorithm
                )));
            }
        }
        Err(e) => return Err(e.into()),
    }
    HsmSigner::new(hsm, session, &label)
}

/// Create a self-signed root CA. With a quorum, the first call files an approval request; call
/// again with its id once approved.
pub fn create_root(
    hsm: &Hsm,
    session: &Session,
    spec: &CaSpec,
    approval: Option<&str>,
) -> Result<Gated<CaRecord>> {
    let subject = check_spec(spec)?;
    let grant = match authorize(hsm, session, spec, None, approval)? {
        Gated::Pending(p) => return Ok(Gated::Pending(p)),
        Gated::Done(g) => g,
    };
    let signer = ca_key(hsm, session, spec)?
        .with_audit(serde_json::json!({"purpose": "create_root_ca", "ca": spec.name}));
    let now = x509::unix_now();
    let spki = signer.spki()?;
    let builder = CertificateBuilder::new(
        Fixed::new(
            subject.clone(),
            subject,
            vec![
                ext::basic_constraints(true, None)?,
                ext::key_usage(CA_KEY_USAGE)?,
                ext::subject_key_id(&spki)?,
            ],
        ),
        SerialNumber::new(
            &random_serial().map_err(|_| CaError::Internal("no randomness".into()))?,
        )?,
        Validity::new(
            x509::time(now - 60)?,
            x509::time(now + spec.validity_days * 86_400)?,
        ),
        spki,
    )
    .map_err(unwrap_builder_error)?;
    let cert = builder
        .build::<_, HsmSignature>(&signer)
        .map_err(unwrap_builder_error)?;
    let record = CaRecord {
        name: spec.name.clone(),
        partition: session.partition().to_string(),
        key_label: signer.label().to_string(),
        parent: None,
        cert_der: cert.to_der()?,
        created_at: now,
        revoked_at: None,
        revocation_reason: None,
    };
    hsm.register_ca(session, &record, &grant)?;
    Ok(Gated::Done(record))
}

/// Create an intermediate CA under `parent` (pathLen 0: it issues end-entity certificates
/// only). Its certificate is stored among the parent's issued certificates, so revoking it
/// puts it on the parent's CRL.
pub fn create_intermediate(
    hsm: &Hsm,
    session: &Session,
    spec: &CaSpec,
    parent: &str,
    urls: &PublicUrls,
    approval: Option<&str>,
) -> Result<Gated<CaRecord>> {
    let subject = check_spec(spec)?;
    let parent_ca = Authority::load(hsm, session, parent)?;
    if parent_ca.is_revoked() {
        return Err(CaError::Conflict(format!("CA '{parent}' is revoked")));
    }
    if parent_ca.record.parent.is_some() {
        return Err(CaError::BadRequest(format!(
            "'{parent}' is an intermediate (pathLen 0); create intermediates under a root"
        )));
    }
    let grant = match authorize(hsm, session, spec, Some(parent), approval)? {
        Gated::Pending(p) => return Ok(Gated::Pending(p)),
        Gated::Done(g) => g,
    };
    let key = ca_key(hsm, session, spec)?;
    let spki = key.spki()?;
    let now = x509::unix_now();
    let not_after = (now + spec.validity_days * 86_400).min(parent_ca.not_after());
    let plan = TbsPlan {
        serial: random_serial().map_err(|_| CaError::Internal("no randomness".into()))?,
        not_before: now - 60,
        not_after,
        subject: subject.clone(),
        issuer: parent_ca.subject().clone(),
        spki: spki.clone(),
        extensions: vec![
            ext::basic_constraints(true, Some(0))?,
            ext::key_usage(CA_KEY_USAGE)?,
            ext::subject_key_id(&spki)?,
            ext::authority_key_id(&parent_ca.key_id)?,
            ext::crl_distribution_point(&urls.crl(parent))?,
            ext::authority_info_access(&urls.ocsp(), &urls.ca_cert(parent))?,
        ],
    };
    let signer = parent_ca.signer.for_session(session);
    let tbs = x509::tbs_der(&plan, &signer)?;
    crate::issue::check_tbs(&tbs, &parent_ca, None)?;
    let serial = hex::encode(&plan.serial);
    let issued = crate::issue::sign_and_store(
        &signer,
        session,
        &plan,
        &tbs,
        parent,
        "sub-ca",
        &[],
        serde_json::json!({"purpose": "create_intermediate_ca", "ca": parent, "subject_ca": spec.name, "serial": serial}),
        None,
    )?;
    let cert_der = issued.der;
    Certificate::from_der(&cert_der)?;
    let record = CaRecord {
        name: spec.name.clone(),
        partition: session.partition().to_string(),
        key_label: key.label().to_string(),
        parent: Some(parent.to_string()),
        cert_der,
        created_at: now,
        revoked_at: None,
        revocation_reason: None,
    };
    hsm.register_ca(session, &record, &grant)?;
    Ok(Gated::Done(record))
}

/// Revoke a CA (quorum-gated). An intermediate's certificate is also revoked at its parent, so
/// the parent's next CRL lists it.
pub fn revoke_ca(
    hsm: &Hsm,
    session: &Session,
    name: &str,
    reason: i64,
    approval: Option<&str>,
) -> Result<Gated<()>> {
    let ca = hsm.ca(name)?;
    if ca.revoked_at.is_some() {
        return Err(CaError::Conflict(format!("CA '{name}' is already revoked")));
    }
    let action = ApprovalAction::Authorize {
        change: kagi_hsm_core::records::ca::REVOKE_CA.into(),
        target: format!("ca:{name}"),
        params: serde_json::json!({ "name": name, "reason": reason }),
    };
    let grant = match hsm.authorize_ca_change(
        session,
        action,
        &format!("revoke CA '{name}' (reason {reason})"),
        approval,
    )? {
        Gated::Pending(p) => return Ok(Gated::Pending(p)),
        Gated::Done(g) => g,
    };
    if ca.parent.is_some() {
        let cert = Certificate::from_der(&ca.cert_der)?;
        let serial = hex::encode(cert.tbs_certificate().serial_number().as_bytes());
        match hsm.revoke_certificate(session, &serial, reason) {
            Ok(_) | Err(HsmError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    hsm.revoke_ca(session, name, reason, &grant)?;
    Ok(Gated::Done(()))
}
