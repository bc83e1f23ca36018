//! Bearer-token authentication, with a short in-process cache of successful logins so a burst of
//! requests with one token pays for Argon2 once, not per request.

use actix_web::dev::Payload;
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest};
use hsm_core::{Hsm, Session};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use super::errors::ApiError;
use super::AppState;

const CACHE_TTL: Duration = Duration::from_secs(60);
/// Bounds the memory an attacker with many valid tokens could pin; far above real use.
const CACHE_MAX: usize = 10_000;

/// Successful logins, keyed by SHA-256 of the token so the cache never holds a token itself.
#[derive(Default)]
pub struct LoginCache {
    entries: Mutex<HashMap<[u8; 32], (Session, Instant)>>,
}

impl LoginCache {
    fn get(&self, key: &[u8; 32]) -> Option<Session> {
        let map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_TTL)
            .map(|(s, _)| s.clone())
    }

    fn put(&self, key: [u8; 32], session: Session) {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CACHE_MAX {
            map.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if map.len() >= CACHE_MAX {
                map.clear();
            }
        }
        map.insert(key, (session, Instant::now()));
    }
}

fn token_key(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

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
            let session = login(&state.hsm, &state.logins, token).await?;
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

async fn login(
    hsm: &Hsm,
    cache: &LoginCache,
    token: Zeroizing<String>,
) -> Result<Session, ApiError> {
    let key = token_key(&token);
    if let Some(session) = cache.get(&key) {
        return Ok(session);
    }
    let hsm = hsm.clone();
    let session = web::block(move || hsm.login(&token)).await??;
    cache.put(key, session.clone());
    Ok(session)
}
