//! `/api/v1/audit`: the audit log's records, its verification and its newest checkpoint.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, ApiResult};
use super::state::AppState;

pub async fn audit_verify(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let report = blocking(&state.hsm, move |h| h.audit_verify(&session)).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn audit_records(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> ApiResult {
    let Caller(session) = caller;
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(1000);
    let records = blocking(&state.hsm, move |h| h.audit_records(&session, from, limit)).await?;
    Ok(HttpResponse::Ok().json(records))
}

pub async fn audit_checkpoint(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    // The checkpoint is public data, but reading it still needs a valid credential.
    let Caller(_session) = caller;
    let checkpoint = blocking(&state.hsm, |h| h.latest_checkpoint()).await?;
    match checkpoint {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::new(
            Code::NoCheckpoint,
            "the audit log has no signed checkpoint yet",
        )),
    }
}
