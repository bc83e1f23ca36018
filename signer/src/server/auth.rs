//! Bearer-token authentication. hsm-core caches successful logins for a minute, so a burst of
//! requests with one token pays for Argon2id once, not per request.

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use hsm_core::{Hsm, Session};
use std::future::Future;
use std::pin::Pin;
use zeroize::Zeroizing;

use super::errors::ApiError;
use super::AppState;

/// The authenticated caller of a request. Extract it first in a handler's arguments so a missing
/// token is reported before anything about the body.
pub struct Caller(pub Session);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let token = token?;
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            let session = login(&state.hsm, token).await?;
            Ok(Caller(session))
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Result<Zeroizing<String>, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "missing or malformed credential: send 'Authorization: Bearer <token>'",
        )
    };
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(unauthenticated)?
        .to_str()
        .map_err(|_| unauthenticated())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(unauthenticated)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(unauthenticated());
    }
    Ok(Zeroizing::new(token.to_string()))
}

async fn login(hsm: &Hsm, token: Zeroizing<String>) -> Result<Session, ApiError> {
    // A recent login costs a hash lookup: no trip through the blocking pool.
    if let Some(session) = hsm.cached_session(&token) {
        return Ok(session);
    }
    let hsm = hsm.clone();
    Ok(web::block(move || hsm.login(&token)).await??)
}
