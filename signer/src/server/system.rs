//! `/healthz`, `/ui` and unsealing: what works before anyone has a credential.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::handler::{blocking, ApiResult};
use super::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "sealed": state.hsm.is_sealed() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealBody {
    share: String,
}

pub async fn unseal(state: web::Data<AppState>, body: web::Json<UnsealBody>) -> ApiResult {
    let share = zeroize::Zeroizing::new(body.into_inner().share);
    let progress = blocking(&state.hsm, move |h| h.unseal(share.trim())).await?;
    if progress.unsealed {
        log::info!("the HSM is unsealed");
    }
    Ok(HttpResponse::Ok().json(progress))
}

pub async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            kagi_web_ui::CONTENT_SECURITY_POLICY,
        ))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(kagi_web_ui::INDEX_HTML)
}
