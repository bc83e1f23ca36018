//! Short-lived certificates bound to a caller's identity, shaped as Sigstore's Fulcio issues
//! them, so Sigstore clients verify kagi's bundles: an empty subject, the identity as a
//! critical URI subjectAltName, digitalSignature and codeSigning, the OIDC issuer in both of
//! Fulcio's extensions, and one embedded SCT from kagi's CT signer.
//!
//! The SCT covers the precertificate: this certificate's TBSCertificate without the SCT
//! extension. The extension goes last, so leaving it out of the TBS (what verifiers do to
//! rebuild the precertificate) gives exactly the bytes that were timestamped.

use const_oid::db::rfc5280 as oids;
use const_oid::ObjectIdentifier;
use der::asn1::{OctetString, Utf8StringRef};
use der::Encode;
use kagi_hsm_core::{QuotaCharge, Session};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::authority::Authority;
use crate::csr::San;
use crate::error::{CaError, Result};
use crate::extensions as ext;
use crate::issue::{check_tbs, sign_and_store, Issued};
use crate::sct::{sct_list_extension, CtSigner};
use crate::serial::random_serial;
use crate::x509::{self, TbsPlan};

/// Fulcio's issuer extension, value the raw issuer URL (deprecated but still what
/// sigstore-python's `--cert-oidc-issuer` compares).
pub const ID_FULCIO_ISSUER_V1: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// Fulcio's issuer extension, value a DER UTF8String.
pub const ID_FULCIO_ISSUER_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// The profile name these certificates are stored under.
pub const PROFILE: &str = "sigstore";
/// Fulcio's lifetime: long enough to sign and log, short enough that nobody revokes.
pub const DEFAULT_LIFETIME_SECS: i64 = 600;
/// digitalSignature (RFC 5280 §4.2.1.3 bit 0).
const KU_DIGITAL_SIGNATURE: u16 = 1;
/// Identities and issuers are URLs; this bounds what a caller can put in a certificate.
const MAX_URI_LEN: usize = 1024;

/// Whom a certificate names and for how long.
pub struct IdentityRequest<'a> {
    /// The caller's identity, the certificate's only subjectAltName (a URI).
    pub identity_uri: &'a str,
    /// Who vouches for the identity: kagi's own URL (Fulcio: the OIDC issuer).
    pub issuer: &'a str,
    /// The key being certified (the caller's signing key in hsm-core).
    pub spki: &'a SubjectPublicKeyInfoOwned,
    pub lifetime_secs: i64,
}

fn check_uri(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_URI_LEN || !s.is_ascii() || s.contains(char::is_whitespace) {
        return Err(CaError::BadRequest(format!(
            "the {what} must be an ASCII URI without spaces, 1 to {MAX_URI_LEN} characters"
        )));
    }
    if !s.contains("://") {
        return Err(CaError::BadRequest(format!(
            "the {what} '{s}' is not an absolute URI (scheme://...)"
        )));
    }
    Ok(())
}

/// Issue (sign and durably store) a Fulcio-style certificate for `req.spki` from `ca`, with an
/// SCT from `ct`. Two CA-side signatures are made, each a counted and audited use: the SCT by
/// the CT key, then the certificate by the CA key, which also stores it.
pub fn issue_identity_certificate(
    ca: &Authority,
    ct: &CtSigner,
    session: &Session,
    req: &IdentityRequest<'_>,
    quotas: &[QuotaCharge],
) -> Result<Issued> {
    check_uri("identity", req.identity_uri)?;
    check_uri("issuer", req.issuer)?;
    if ca.is_revoked() {
        return Err(CaError::Conflict(format!(
            "CA '{}' is revoked and issues nothing more",
            ca.name()
        )));
    }
    if !(1..=86_400).contains(&req.lifetime_secs) {
        return Err(CaError::BadRequest(
            "a short-lived certificate lives 1 second to 1 day".into(),
        ));
    }
    let now = x509::unix_now();
    let not_after = (now + req.lifetime_secs).min(ca.not_after());
    if not_after <= now {
        return Err(CaError::Conflict(format!(
            "CA '{}' expires now and can issue nothing",
            ca.name()
        )));
    }
    let issuer_v2 = Utf8StringRef::new(req.issuer)?.to_der()?;
    let mut plan = TbsPlan {
        serial: random_serial()
            .map_err(|_| CaError::Internal("no randomness for a serial".into()))?,
        not_before: now,
        not_after,
        subject: Name::default(),
        issuer: ca.subject().clone(),
        spki: req.spki.clone(),
        extensions: vec![
            ext::key_usage(KU_DIGITAL_SIGNATURE)?,
            ext::extended_key_usage(&[oids::ID_KP_CODE_SIGNING], false)?,
            ext::subject_key_id(req.spki)?,
            ext::authority_key_id(&ca.key_id)?,
            ext::subject_alt_name(&[San::Uri(req.identity_uri.to_string())], true)?,
            Extension {
                extn_id: ID_FULCIO_ISSUER_V1,
                critical: false,
                extn_value: OctetString::new(req.issuer.as_bytes())?,
            },
            Extension {
                extn_id: ID_FULCIO_ISSUER_V2,
                critical: false,
                extn_value: OctetString::new(issuer_v2)?,
            },
        ],
    };
    let signer = ca.signer.for_session(session);
    let precert = x509::tbs_der(&plan, &signer)?;
    check_tbs(&precert, ca, None)?;
    let now_ms = u64::try_from(now).unwrap_or(0) * 1000;
    let sct = ct.precert_sct(ca.signer.spki_der(), &precert, now_ms)?;
    plan.extensions.push(sct_list_extension(&[sct])?);
    let tbs = x509::tbs_der(&plan, &signer)?;
    check_tbs(&tbs, ca, None)?;
    let detail = serde_json::json!({
        "purpose": "issue_certificate", "ca": ca.name(), "profile": PROFILE,
        "serial": hex::encode(&plan.serial), "identity_uri": req.identity_uri,
        "issuer": req.issuer,
    });
    sign_and_store(
        &signer,
        session,
        &plan,
        &tbs,
        ca.name(),
        PROFILE,
        quotas,
        detail,
        None,
    )
}
