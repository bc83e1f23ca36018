//! What every HTTP handler shares: the result type, hsm-core calls on the blocking pool, refusals
//! that leave an audit record, answers that wait for approvals, request times and raw bodies.

use actix_web::{web, HttpResponse};
use hsm_core::{Gated, Hsm, Session};
use serde_json::json;

use super::error_codes::Code;
use super::errors::{self, ApiError};
use super::state::AppState;

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

/// Runs a blocking hsm-core call off the async workers.
pub(super) async fn blocking<T, F>(hsm: &Hsm, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Hsm) -> Result<T, hsm_core::HsmError> + Send + 'static,
    T: Send + 'static,
{
    let hsm = hsm.clone();
    Ok(web::block(move || f(&hsm)).await??)
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
        let actor = session.actor();
        let action = action.to_string();
        let detail = json!({ "code": err.code() });
        let outcome = format!("denied:{}", err.code());
        let hsm = state.hsm.clone();
        let recorded =
            web::block(move || hsm.record_event(&actor, &action, &outcome, detail)).await;
        if !matches!(recorded, Ok(Ok(()))) {
            log::warn!("could not audit a rejected request ({})", err.code());
        }
    }
    err
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
pub(super) fn gated<T: serde::Serialize>(g: Gated<T>) -> HttpResponse {
    match g {
        Gated::Done(v) => HttpResponse::Ok().json(json!({ "status": "done", "result": v })),
        // 202: accepted, waits for approvals.
        Gated::Pending(req) => {
            HttpResponse::Accepted().json(json!({ "status": "pending", "approval": req }))
        }
    }
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
