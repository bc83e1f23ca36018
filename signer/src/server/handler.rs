//! What every HTTP handler shares: the result type, hsm-core calls on the blocking pool, refusals
//! that leave an audit record, answers that wait for approvals, request times and raw bodies.

use actix_web::{web, HttpResponse};
use kagi_hsm_core::{Gated, Hsm, Session};
use serde::Serialize;
use serde_json::{json, Value};

use super::error_codes::Code;
use super::errors::{self, ApiError};
use super::policy_gate::Verdict;
use super::state::AppState;

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

/// Runs a blocking hsm-core call off the async workers.
pub(super) async fn blocking<T, F>(hsm: &Hsm, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Hsm) -> Result<T, kagi_hsm_core::HsmError> + Send + 'static,
    T: Send + 'static,
{
    let hsm = hsm.clone();
    Ok(web::block(move || f(&hsm)).await??)
}

/// Runs blocking work that needs more of the state than the HSM (the CA service, the policy
/// cache, the settings) off the async workers.
pub(super) async fn blocking_with_state<T, F>(
    state: &web::Data<AppState>,
    f: F,
) -> Result<T, ApiError>
where
    F: FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    let state = state.clone();
    web::block(move || f(&state)).await?
}

/// Writes an audit record of the service's own (hsm-core writes those of its calls); false
/// when it could not be written.
pub(super) async fn record_event(
    hsm: &Hsm,
    actor: String,
    action: &str,
    outcome: &str,
    detail: Value,
) -> bool {
    let hsm = hsm.clone();
    let (action, outcome) = (action.to_string(), outcome.to_string());
    let recorded = web::block(move || hsm.record_event(&actor, &action, &outcome, detail)).await;
    matches!(recorded, Ok(Ok(())))
}

/// Rejections found by the service itself (hsm-core audits its own) are recorded too, so a
/// caller probing the API with malformed requests leaves a trace.
pub(super) async fn audited(
    state: &AppState,
    session: &Session,
    action: &str,
    err: ApiError,
) -> ApiError {
    if err.is_bad_input() {
        let mut detail = json!({ "code": err.code() });
        if let Some(client) = session.client() {
            client.add_to(&mut detail);
        }
        let outcome = format!("denied:{}", err.code());
        if !record_event(&state.hsm, session.actor(), action, &outcome, detail).await {
            log::warn!("could not audit a rejected request ({})", err.code());
        }
    }
    err
}

/// `checked` as it is, or its refusal audited as `action` (see [`audited`]).
pub(super) async fn audit_refusal<T, E: Into<ApiError>>(
    state: &AppState,
    session: &Session,
    action: &str,
    checked: Result<T, E>,
) -> Result<T, ApiError> {
    match checked {
        Ok(v) => Ok(v),
        Err(e) => Err(audited(state, session, action, e.into()).await),
    }
}

/// Audit a policy denial (identity, action, resource, deciding rule) and answer 403.
pub(super) async fn policy_denied(
    state: &AppState,
    session: &Session,
    action: &str,
    resource: &str,
    format: &str,
    v: &Verdict,
) -> ApiError {
    let mut detail = json!({
        "identity": session.name(), "kind": session.kind().as_str(), "action": action,
        "resource": resource, "format": format, "rule": v.decision.rule,
        "policy_version": v.version, "decision": "deny",
    });
    if let Some(client) = session.client() {
        client.add_to(&mut detail);
    }
    let recorded = record_event(
        &state.hsm,
        session.actor(),
        "policy.decision",
        "denied:policy_denied",
        detail,
    )
    .await;
    if !recorded {
        // Invariant 3: a decision that cannot be recorded is not released as anything but a
        // failure.
        return ApiError::internal("the policy denial could not be audited");
    }
    let message = if v.version == kagi_policy::BOOTSTRAP_VERSION {
        format!(
            "no policy is active, and until one is, pipelines and lines may not sign or issue \
             (the built-in bootstrap policy, version 0, decided by rule '{}'): an officer must \
             activate a policy with a rule that allows {} to {action} {resource} (format \
             {format}): kagi policy submit FILE, then kagi policy activate VERSION",
            v.decision.rule,
            session.name()
        )
    } else {
        format!(
            "policy version {} does not allow {} to {action} {resource} (format {format}); decided by rule '{}'",
            v.version,
            session.name(),
            v.decision.rule
        )
    };
    ApiError::new(Code::PolicyDenied, message)
}

/// An RFC 3339 request field as unix seconds.
pub(super) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::new(
                Code::BadTime,
                format!("{field} must be an RFC 3339 time such as 2030-01-01T00:00:00Z"),
            )
        })
}

/// The answer to a change that may wait for approvals: 200 with its result, or 202 with the
/// approval request.
pub(super) fn gated<T: Serialize>(g: Gated<T>) -> HttpResponse {
    match g {
        Gated::Done(v) => HttpResponse::Ok().json(json!({ "status": "done", "result": v })),
        Gated::Pending(req) => pending(req),
    }
}

/// 202: the change was accepted and waits for the approvals `req` asks for.
pub(super) fn pending(req: impl Serialize) -> HttpResponse {
    HttpResponse::Accepted().json(json!({ "status": "pending", "approval": req }))
}

/// Read a raw request body (a CSR, an OCSP request) up to `limit` bytes; larger bodies get the
/// one JSON error shape with 413, as JSON bodies do.
pub(super) async fn read_body(
    payload: actix_web::web::Payload,
    limit: usize,
) -> Result<actix_web::web::Bytes, ApiError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ApiError::new(
            Code::BadBody,
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            Code::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        )),
    }
}

/// A route whose other methods answer 405 in the one error shape.
pub(super) fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(errors::method_not_allowed))
}
