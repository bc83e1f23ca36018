//! `POST /api/v1/rollback/recover`: the officers' recovery after a detected rollback.

use actix_web::web;
use serde::Deserialize;

use super::auth::Caller;
use super::handler::{blocking, gated, ApiResult};
use super::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    /// Why signing may resume: kept in the audit log.
    reason: String,
}

pub async fn recover(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<RecoverBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let reason = body.into_inner().reason;
    let g = blocking(&state.hsm, move |h| h.recover_rollback(&session, &reason)).await?;
    Ok(gated(g))
}
