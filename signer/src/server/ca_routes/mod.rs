//! HTTP handlers of the certificate authority under `/api/v1`: the CAs here, profiles in
//! `profiles`, issuance (one CSR or a batch) in `issuance`, certificates and their revocation
//! in `certificates`.

use actix_web::{web, HttpResponse};
use kagi_hsm_core::{Algorithm, Gated};
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{audit_refusal, blocking, blocking_with_state, pending, ApiResult};
use super::state::AppState;

pub mod certificates;
pub mod issuance;
pub mod profiles;

fn pem(der: &[u8]) -> String {
    kagi_ca::x509::pem("CERTIFICATE", der).unwrap_or_default()
}

fn ca_json(state: &AppState, rec: &kagi_hsm_core::records::ca::CaRecord) -> serde_json::Value {
    use der::Decode;
    let cert = x509_cert::certificate::Certificate::from_der(&rec.cert_der).ok();
    let (subject, not_after) = cert
        .as_ref()
        .map(|c| {
            (
                c.tbs_certificate().subject().to_string(),
                c.tbs_certificate()
                    .validity()
                    .not_after
                    .to_unix_duration()
                    .as_secs(),
            )
        })
        .unwrap_or_default();
    json!({
        "name": rec.name, "parent": rec.parent, "partition": rec.partition, "key": rec.key_label,
        "subject": subject, "not_after": not_after, "created_at": rec.created_at,
        "revoked_at": rec.revoked_at, "revocation_reason": rec.revocation_reason,
        "certificate": pem(&rec.cert_der),
        "crl_url": state.pki.urls.crl(&rec.name), "ocsp_url": state.pki.urls.ocsp(),
    })
}

// ------------------------------------------------------------------ CAs

pub async fn list_cas(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(_session) = caller;
    let cas = blocking(&state.hsm, |h| h.list_cas()).await?;
    Ok(HttpResponse::Ok().json(cas.iter().map(|c| ca_json(&state, c)).collect::<Vec<_>>()))
}

pub async fn get_ca(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(_session) = caller;
    let name = path.into_inner();
    let (rec, chain) = blocking_with_state(&state, move |st| {
        let rec = st.hsm.ca(&name)?;
        let chain = st.pki.chain(&st.hsm, &name)?;
        Ok((rec, chain))
    })
    .await?;
    let mut v = ca_json(&state, &rec);
    v["chain"] = json!(chain.iter().map(|c| pem(c)).collect::<String>());
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCaBody {
    name: String,
    subject: String,
    #[serde(default = "default_ca_alg")]
    alg: String,
    #[serde(default)]
    validity_days: Option<i64>,
    /// Absent: a root. Present: an intermediate under this CA.
    #[serde(default)]
    parent: Option<String>,
    /// The id of an approved request, when the policy's quorum asked for one.
    #[serde(default)]
    approval: Option<String>,
}

fn default_ca_alg() -> String {
    "ec-p256".into()
}

pub async fn create_ca(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateCaBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let alg = audit_refusal(
        &state,
        &session,
        "ca.create",
        Algorithm::from_str(&body.alg),
    )
    .await?;
    let spec = kagi_ca::CaSpec {
        name: body.name.clone(),
        subject: body.subject.clone(),
        alg,
        validity_days: body.validity_days.unwrap_or(if body.parent.is_some() {
            3650
        } else {
            7300
        }),
    };
    let result = blocking_with_state(&state, move |st| {
        Ok(match &body.parent {
            None => {
                kagi_ca::hierarchy::create_root(&st.hsm, &session, &spec, body.approval.as_deref())?
            }
            Some(parent) => kagi_ca::hierarchy::create_intermediate(
                &st.hsm,
                &session,
                &spec,
                parent,
                &st.pki.urls,
                body.approval.as_deref(),
            )?,
        })
    })
    .await?;
    match result {
        Gated::Done(rec) => Ok(HttpResponse::Created().json(ca_json(&state, &rec))),
        Gated::Pending(p) => Ok(pending(p)),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// An RFC 5280 reason name ("keyCompromise") or code (1).
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    approval: Option<String>,
}

/// The request's RFC 5280 reason code.
pub(in crate::server) fn reason_of(v: &Option<serde_json::Value>) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::new(
            Code::BadReason,
            "'reason' is an RFC 5280 CRLReason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (or its code; revocations are permanent, so no certificateHold)",
        )
    };
    match v {
        None => Ok(0),
        Some(serde_json::Value::Number(n)) => {
            let c = n.as_i64().ok_or_else(bad)?;
            if (0..=10).contains(&c) && !matches!(c, 6..=8) {
                Ok(c)
            } else {
                Err(bad())
            }
        }
        Some(serde_json::Value::String(s)) => kagi_ca::crl::reason_code(s).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

pub async fn revoke_ca(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RevokeBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = path.into_inner();
    let body = body.into_inner();
    let reason = audit_refusal(&state, &session, "ca.revoke", reason_of(&body.reason)).await?;
    let n = name.clone();
    let result = blocking_with_state(&state, move |st| {
        let r =
            kagi_ca::hierarchy::revoke_ca(&st.hsm, &session, &n, reason, body.approval.as_deref())?;
        if let Gated::Done(()) = r {
            st.pki.forget(&n);
            if let Ok(rec) = st.hsm.ca(&n) {
                if let Some(parent) = rec.parent {
                    st.pki.regenerate_crl(&st.hsm, &parent)?;
                }
            }
        }
        Ok(r)
    })
    .await?;
    match result {
        Gated::Done(()) => {
            Ok(HttpResponse::Ok()
                .json(json!({ "status": "revoked", "ca": name, "reason": reason })))
        }
        Gated::Pending(p) => Ok(pending(p)),
    }
}
