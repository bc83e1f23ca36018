//! `/healthz`, unsealing and break-glass recovery: what works before anyone has a
//! credential. Refused shares are limited per source address (`rate_limit.rs`).

use actix_web::{web, HttpRequest, HttpResponse};
use kagi_hsm_core::RecoverAction;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, ApiResult};
use super::rate_limit;
use super::state::AppState;

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "sealed": state.hsm.is_sealed() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealBody {
    share: String,
}

pub async fn unseal(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<UnsealBody>,
) -> ApiResult {
    let ip = rate_limit::source(&req);
    state.share_limit.admit(ip)?;
    let share = Zeroizing::new(body.into_inner().share);
    let client = super::auth::client_info(&req);
    let progress = blocking(&state.hsm, move |h| {
        h.unseal_from(share.trim(), Some(&client))
    })
    .await
    .inspect_err(|e| count_share_refusal(&state, ip, e))?;
    if progress.unsealed {
        log::info!("the HSM is unsealed");
    }
    Ok(HttpResponse::Ok().json(progress))
}

/// A share that was refused (forged, damaged, another instance's) costs its source.
fn count_share_refusal(state: &AppState, ip: std::net::IpAddr, e: &ApiError) {
    if matches!(e.code(), "bad_share" | "wrong_master_key") {
        state.share_limit.record(ip);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    shares: Vec<String>,
    credential: String,
    #[serde(default)]
    new_token: bool,
}

/// Break-glass: a quorum of unseal shares unlocks an administrator credential or gives it a
/// new token. No bearer token: it is for when no administrator can log in.
pub async fn recover(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RecoverBody>,
) -> ApiResult {
    let ip = rate_limit::source(&req);
    state.share_limit.admit(ip)?;
    let RecoverBody {
        shares,
        credential,
        new_token,
    } = body.into_inner();
    let shares: Vec<Zeroizing<String>> = shares.into_iter().map(Zeroizing::new).collect();
    if shares.len() > 255 {
        return Err(ApiError::new(
            Code::BadRequest,
            "send at most 255 shares (the threshold's worth is enough)",
        ));
    }
    let action = if new_token {
        RecoverAction::NewToken
    } else {
        RecoverAction::Unlock
    };
    let client = super::auth::client_info(&req);
    let recovered = blocking(&state.hsm, move |h| {
        let texts: Vec<&str> = shares.iter().map(|s| s.trim()).collect();
        h.recover_administrator_from(&texts, &credential, action, Some(&client))
    })
    .await
    .inspect_err(|e| count_share_refusal(&state, ip, e))?;
    log::warn!(
        "break-glass recovery: administrator credential '{}' was {} by a quorum of share holders",
        recovered.credential.name,
        if new_token {
            "given a new token"
        } else {
            "unlocked"
        }
    );
    Ok(HttpResponse::Ok().json(json!({
        "credential": recovered.credential,
        "token": recovered.token.as_deref().map(|t| t.as_str()),
    })))
}
