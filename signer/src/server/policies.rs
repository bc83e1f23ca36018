//! `/api/v1/policies`: submit, read and activate policy documents.

use actix_web::{web, HttpResponse};
use kagi_hsm_core::QuorumRule;
use serde_json::json;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{audit_refusal, blocking, gated, read_body, ApiResult};
use super::state::AppState;

/// Policy documents are TOML sent as the raw request body; this bounds them.
pub const POLICY_LIMIT: usize = 4 * 1024 * 1024;

fn quorum_of(doc: &kagi_policy::PolicyDocument) -> Option<QuorumRule> {
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
    // The role first: a caller who may not submit policies learns nothing about a document.
    session.require(kagi_hsm_core::Role::Officer, "submit policies")?;
    let body = read_body(payload, POLICY_LIMIT).await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::new(Code::PolicyInvalid, "the policy document is not UTF-8 text"))?;
    let stored = submit_text(&state, session, text).await?;
    Ok(HttpResponse::Created().json(json!({ "version": stored.version, "active": stored.active })))
}

/// Validate and store a policy document as `session` (the API's and the console's one path):
/// a refusal names the line and is audited.
pub(super) async fn submit_text(
    state: &AppState,
    session: kagi_hsm_core::Session,
    text: String,
) -> Result<kagi_hsm_core::StoredPolicy, ApiError> {
    session.require(kagi_hsm_core::Role::Officer, "submit policies")?;
    let parsed = kagi_policy::PolicyDocument::parse(&text).map_err(|e| {
        ApiError::new(
            Code::PolicyInvalid,
            format!("the policy was rejected, nothing changed: {e}"),
        )
    });
    let doc = audit_refusal(state, &session, "policy.submit", parsed).await?;
    let quorum = quorum_of(&doc);
    blocking(&state.hsm, move |h| {
        h.submit_policy(&session, &text, quorum)
    })
    .await
}

/// The built-in bootstrap policy as a version: in force (`active`) while no stored version is.
fn bootstrap_json(active: bool) -> serde_json::Value {
    json!({
        "version": kagi_policy::BOOTSTRAP_VERSION, "text": kagi_policy::BOOTSTRAP_TEXT,
        "quorum": null, "submitted_by": "(built in)", "submitted_at": null, "active": active,
        "built_in": true,
    })
}

pub async fn list_policies(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let (list, active) = blocking(&state.hsm, move |h| {
        Ok((h.list_policies(&session)?, h.active_policy_version()?))
    })
    .await?;
    let mut brief: Vec<_> = list
        .iter()
        .map(|p| json!({"version": p.version, "active": p.active, "submitted_by": p.submitted_by, "submitted_at": p.submitted_at, "quorum": p.quorum}))
        .collect();
    brief.push(json!({
        "version": kagi_policy::BOOTSTRAP_VERSION, "active": active.is_none(),
        "submitted_by": "(built in)", "submitted_at": null, "quorum": null,
    }));
    Ok(HttpResponse::Ok().json(brief))
}

pub async fn get_policy(
    caller: Caller,
    state: web::Data<AppState>,
    version: web::Path<i64>,
) -> ApiResult {
    let Caller(session) = caller;
    let v = version.into_inner();
    if v == kagi_policy::BOOTSTRAP_VERSION {
        // Built in, never read from the store: a row numbered 0 in the database is not it.
        session.require(kagi_hsm_core::Role::Officer, "read policies")?;
        let active = blocking(&state.hsm, |h| h.active_policy_version()).await?;
        return Ok(HttpResponse::Ok().json(bootstrap_json(active.is_none())));
    }
    let p = blocking(&state.hsm, move |h| h.policy(&session, v)).await?;
    Ok(HttpResponse::Ok().json(p))
}

/// `GET /api/v1/policies/active`: the policy in force, the bootstrap policy when no version is
/// active.
pub async fn get_active_policy(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    session.require(kagi_hsm_core::Role::Officer, "read policies")?;
    let p = blocking(&state.hsm, |h| h.active_policy()).await?;
    Ok(match p {
        Some(p) => HttpResponse::Ok().json(p),
        None => HttpResponse::Ok().json(bootstrap_json(true)),
    })
}

/// Activate a version. Under a quorum this files a request whose summary is the diff against
/// the active document.
pub async fn activate_policy(
    caller: Caller,
    state: web::Data<AppState>,
    version: web::Path<i64>,
) -> ApiResult {
    let Caller(session) = caller;
    let result = activate(&state, session, version.into_inner()).await?;
    Ok(gated(result))
}

/// Activate version `v` as `session`, or file the request the quorum decides, whose summary is
/// the diff against the active document (the API's and the console's one path).
pub(super) async fn activate(
    state: &AppState,
    session: kagi_hsm_core::Session,
    v: i64,
) -> Result<kagi_hsm_core::Gated<i64>, ApiError> {
    let result = blocking(&state.hsm, move |h| {
        let new = h.policy(&session, v)?;
        let old = match h.active_policy()? {
            Some(p) => p.text,
            None => kagi_policy::BOOTSTRAP_TEXT.to_string(),
        };
        let summary = format!(
            "activate policy version {v}\n{}",
            kagi_policy::diff(&old, &new.text)
        );
        h.activate_policy(&session, v, &summary)
    })
    .await?;
    state.policy.invalidate();
    Ok(result)
}
