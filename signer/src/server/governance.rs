//! Identities, policy documents and M-of-N approvals over HTTP.

use actix_web::{web, HttpResponse};
use hsm_core::{Gated, IdentityKind, IdentitySpec, QuorumRule, Role};
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::errors::ApiError;
use super::routes::{blocking, parse_time, ApiResult};
use super::AppState;

/// Policy documents are TOML sent as the raw request body; this bounds them.
pub const POLICY_LIMIT: usize = 4 * 1024 * 1024;

fn gated<T: serde::Serialize>(g: Gated<T>) -> HttpResponse {
    match g {
        Gated::Done(v) => HttpResponse::Ok().json(json!({ "status": "done", "result": v })),
        // 202: accepted, waits for approvals.
        Gated::Pending(req) => {
            HttpResponse::Accepted().json(json!({ "status": "pending", "approval": req }))
        }
    }
}

// ------------------------------------------------------------------ identities

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBody {
    name: String,
    kind: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    partition: Option<String>,
    /// SHA-256 (hex) of a TLS client certificate that authenticates this identity too.
    #[serde(default)]
    client_cert_sha256: Option<String>,
}

pub async fn create_identity(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<IdentityBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let kind = IdentityKind::from_str(&body.kind)?;
    // Machines sign; people run the HSM. Either can be given other roles explicitly.
    let roles = match &body.roles {
        Some(r) => r
            .iter()
            .map(|r| Role::from_str(r))
            .collect::<Result<Vec<_>, _>>()?,
        None => match kind {
            IdentityKind::Pipeline | IdentityKind::Line => vec![Role::User],
            IdentityKind::Person => vec![Role::Officer, Role::User],
        },
    };
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| parse_time("expires_at", t))
        .transpose()?;
    let client_cert_sha256 = body
        .client_cert_sha256
        .as_deref()
        .map(|h| {
            hex::decode(h.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "bad_request",
                        "'client_cert_sha256' must be the 64 hex digits of the certificate's SHA-256",
                    )
                })
        })
        .transpose()?;
    let spec = IdentitySpec {
        client_cert_sha256,
        partition: body.partition,
        name: body.name,
        kind,
        roles,
        expires_at,
    };
    let (info, token) = blocking(&state.hsm, move |h| h.create_identity(&session, &spec)).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "identity": info, "token": token.as_str() })))
}

pub async fn revoke_identity(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let revoked = id.clone();
    blocking(&state.hsm, move |h| h.revoke_credential(&session, &revoked)).await?;
    Ok(HttpResponse::Ok().json(json!({ "revoked": id })))
}

pub async fn unlock_identity(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let unlocked = id.clone();
    blocking(&state.hsm, move |h| {
        h.unlock_credential(&session, &unlocked)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "unlocked": id })))
}

// ------------------------------------------------------------------ policies

fn quorum_of(doc: &policy::PolicyDocument) -> Option<QuorumRule> {
    doc.quorum.as_ref().map(|q| QuorumRule {
        approvers: q.approvers.clone(),
        required: q.required,
        ttl_secs: q.request_ttl_secs,
    })
}

/// Validate (schema, Cedar, fields) and store a new version. It takes effect when activated.
pub async fn submit_policy(
    caller: Caller,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> ApiResult {
    let Caller(session) = caller;
    let body = super::errors::read_body(payload, POLICY_LIMIT).await?;
    let text = String::from_utf8(body.to_vec()).map_err(|_| {
        ApiError::bad_request("policy_invalid", "the policy document is not UTF-8 text")
    })?;
    let doc = match policy::PolicyDocument::parse(&text) {
        Ok(doc) => doc,
        Err(e) => {
            let err = ApiError::bad_request(
                "policy_invalid",
                format!("the policy was rejected, nothing changed: {e}"),
            );
            return Err(super::routes::audited(&state, &session, "policy.submit", err).await);
        }
    };
    let quorum = quorum_of(&doc);
    let stored = blocking(&state.hsm, move |h| {
        h.submit_policy(&session, &text, quorum)
    })
    .await?;
    Ok(HttpResponse::Created().json(json!({ "version": stored.version, "active": stored.active })))
}

pub async fn list_policies(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let list = blocking(&state.hsm, move |h| h.list_policies(&session)).await?;
    let brief: Vec<_> = list
        .iter()
        .map(|p| json!({"version": p.version, "active": p.active, "submitted_by": p.submitted_by, "submitted_at": p.submitted_at, "quorum": p.quorum}))
        .collect();
    Ok(HttpResponse::Ok().json(brief))
}

pub async fn get_policy(
    caller: Caller,
    state: web::Data<AppState>,
    version: web::Path<i64>,
) -> ApiResult {
    let Caller(session) = caller;
    let v = version.into_inner();
    let p = blocking(&state.hsm, move |h| h.policy(&session, v)).await?;
    Ok(HttpResponse::Ok().json(p))
}

/// Activate a version. Under a quorum this files a request whose summary is the diff against
/// the active document.
pub async fn activate_policy(
    caller: Caller,
    state: web::Data<AppState>,
    version: web::Path<i64>,
) -> ApiResult {
    let Caller(session) = caller;
    let v = version.into_inner();
    let st = state.clone();
    let result = blocking(&state.hsm, move |h| {
        let new = h.policy(&session, v)?;
        let old = h.active_policy()?.map(|p| p.text).unwrap_or_default();
        let summary = format!(
            "activate policy version {v}\n{}",
            policy::diff(&old, &new.text)
        );
        h.activate_policy(&session, v, &summary)
    })
    .await?;
    st.policy.invalidate();
    Ok(gated(result))
}

// ------------------------------------------------------------------ approvals

pub async fn list_approvals(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let list = blocking(&state.hsm, move |h| h.list_approvals(&session)).await?;
    Ok(HttpResponse::Ok().json(list))
}

pub async fn get_approval(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let a = blocking(&state.hsm, move |h| h.approval(&session, &id)).await?;
    Ok(HttpResponse::Ok().json(a))
}

pub async fn approve(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let a = blocking(&state.hsm, move |h| h.approve(&session, &id)).await?;
    if a.status == "executed" {
        state.policy.invalidate();
    }
    Ok(HttpResponse::Ok().json(a))
}

pub async fn reject(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let a = blocking(&state.hsm, move |h| h.reject(&session, &id)).await?;
    Ok(HttpResponse::Ok().json(a))
}

// ------------------------------------------------------------------ gated key changes

pub async fn destroy_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let label = name.clone();
    let g = blocking(&state.hsm, move |h| h.destroy_key(&session, &label)).await?;
    Ok(match g {
        Gated::Done(()) => HttpResponse::Ok().json(json!({ "status": "done", "destroyed": name })),
        pending => gated(pending),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// `null`: unlimited.
    usage_limit: Option<i64>,
}

pub async fn set_usage_limit(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<LimitBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let limit = body.into_inner().usage_limit;
    let g = blocking(&state.hsm, move |h| {
        h.set_usage_limit(&session, &name, limit)
    })
    .await?;
    Ok(gated(g))
}
