//! Issued certificates (read, list, revoke) and signing keys' code-signing certificates.

use actix_web::{web, HttpResponse};
use kagi_ca::Issued;
use serde::Deserialize;
use serde_json::json;

use super::issuance::{issued_json, validity_of};
use super::{pem, reason_of, RevokeBody};
use crate::server::auth::Caller;
use crate::server::error_codes::Code;
use crate::server::errors::ApiError;
use crate::server::handler::{audit_refusal, blocking, blocking_with_state, ApiResult};
use crate::server::state::AppState;

pub async fn get_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(_session) = caller;
    let serial = path.into_inner();
    let s2 = serial.clone();
    let cert = blocking(&state.hsm, move |h| h.certificate(&s2)).await?;
    match cert {
        Some(c) => {
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["certificate"] = json!(pem(&c.der));
            Ok(HttpResponse::Ok().json(v))
        }
        None => Err(ApiError::new(
            Code::NotFound,
            format!(
                "no certificate with serial {} ('kagi ca certs CA' lists them)",
                serial.chars().take(64).collect::<String>()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<i64>,
    /// The previous page's `next`: the serial of its last certificate.
    #[serde(default)]
    before: Option<String>,
}

pub async fn list_certificates(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> ApiResult {
    let Caller(_session) = caller;
    let ca_name = path.into_inner();
    let limit = query.limit.unwrap_or(100).clamp(1, 10_000);
    let before = query.into_inner().before;
    let (certs, total) = blocking(&state.hsm, move |h| {
        h.ca(&ca_name)?;
        Ok((
            h.list_certificates_before(&ca_name, limit, before.as_deref())?,
            h.count_certificates(&ca_name)?,
        ))
    })
    .await?;
    // A full page may have a next one: its cursor is this page's last serial.
    let next = (certs.len() as i64 == limit)
        .then(|| certs.last().map(|c| c.serial.clone()))
        .flatten();
    Ok(HttpResponse::Ok().json(json!({"total": total, "certificates": certs, "next": next})))
}

/// Revoke a certificate and publish a new CRL of its CA before answering, so the CRL a client
/// fetches next already lists it.
pub async fn revoke_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RevokeBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let serial = path.into_inner();
    let body = body.into_inner();
    let reason = reason_of(&body.reason);
    let reason = audit_refusal(&state, &session, "ca.revoke_certificate", reason).await?;
    if body.approval.is_some() {
        return Err(ApiError::new(
            Code::BadRequest,
            "revoking an end-entity certificate needs no approval; 'approval' is for CAs",
        ));
    }
    let (rec, crl_number) = revoke(&state, session, serial, reason).await?;
    let mut v = serde_json::to_value(&rec).unwrap_or_default();
    v["crl_number"] = json!(crl_number);
    Ok(HttpResponse::Ok().json(v))
}

/// Revoke certificate `serial` as `session` and publish its CA's new CRL (the API's and the
/// console's one path): the CRL's number comes back with the record.
pub(in crate::server) async fn revoke(
    state: &web::Data<AppState>,
    session: kagi_hsm_core::Session,
    serial: String,
    reason: i64,
) -> Result<(kagi_hsm_core::records::ca::CertificateRecord, i64), ApiError> {
    blocking_with_state(state, move |st| {
        let rec = st.hsm.revoke_certificate(&session, &serial, reason)?;
        let crl = st.pki.regenerate_crl(&st.hsm, &rec.ca_name)?;
        Ok((rec, crl.number))
    })
    .await
}

// ------------------------------------------------------------------ signing keys' certificates

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyBody {
    /// RFC 4514; default "CN=<key>,O=kagi".
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    validity_days: Option<serde_json::Value>,
}

/// `POST /api/v1/keys/{name}/certificate`: a code-signing certificate for a key of the caller's
/// partition, from the signing CA.
pub async fn certify_key(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CertifyBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let label = path.into_inner();
    let body = body.into_inner();
    let validity = validity_of(&body.validity_days);
    let validity = audit_refusal(&state, &session, "key.certify", validity).await?;
    let (issued, chain) = blocking_with_state(&state, move |st| {
        let issued = st.pki.certify_key(
            &st.hsm,
            &session,
            &st.signing_ca,
            &label,
            body.subject.as_deref(),
            validity,
        )?;
        let chain = st.pki.chain(&st.hsm, &issued.record.ca_name)?;
        Ok((issued, chain))
    })
    .await?;
    Ok(HttpResponse::Created().json(issued_json(&state, &issued, &chain)))
}

/// `GET /api/v1/keys/{name}/certificate`: the key's current code-signing certificate.
pub async fn key_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let label = path.into_inner();
    let l2 = label.clone();
    let found = blocking_with_state(&state, move |st| {
        Ok(st.pki.key_certificate(&st.hsm, &session, &l2)?)
    })
    .await?;
    match found {
        Some(kc) => {
            let issued = Issued {
                der: kc.record.der.clone(),
                record: kc.record,
            };
            Ok(HttpResponse::Ok().json(issued_json(&state, &issued, &kc.chain)))
        }
        None => Err(ApiError::new(
            Code::NoCertificate,
            format!("key '{label}' has no current code-signing certificate: 'kagi key certify {label}' makes one"),
        )),
    }
}
