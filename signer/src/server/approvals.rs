//! `/api/v1/approvals`: M-of-N requests, read and decided.

use actix_web::{web, HttpResponse};

use super::auth::Caller;
use super::handler::{blocking, ApiResult};
use super::state::AppState;

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
