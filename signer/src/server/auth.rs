//! Bearer-token authentication. hsm-core caches successful logins for a minute, so a burst of
//! requests with one token pays for Argon2id once, not per request.
//!
//! Refused logins are limited per source address (`rate_limit.rs`), never per credential: a
//! stranger can slow down their own address, not lock anyone out. A source that is blocked
//! still gets in with a token that has a live cached login, since that costs nothing.
//!
//! The token is copied once out of actix's header map into a `Zeroizing<String>` and hashed
//! for the login cache; the copies that remain are actix's (the request's header buffer and
//! `HeaderValue`) and rustls's decrypted record buffer, which kagi does not control.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use kagi_hsm_core::{ClientInfo, KeyAuth, Session};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use zeroize::Zeroizing;

use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::blocking;
use super::rate_limit;
use super::AppState;

/// The DER of the TLS client certificate a connection presented, kept per connection.
#[derive(Clone)]
pub struct ClientCertificate(pub Vec<u8>);

/// `HttpServer::on_connect` hook: keep the client's certificate (if it sent one) with the
/// connection, so requests on it can log in by certificate.
pub fn remember_client_certificate(conn: &dyn std::any::Any, ext: &mut actix_web::dev::Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>() {
        let (_, session) = tls.get_ref();
        if let Some(cert) = session.peer_certificates().and_then(|c| c.first()) {
            ext.insert(ClientCertificate(cert.as_ref().to_vec()));
        }
    }
}

/// The authenticated caller of a request. Extract it first in a handler's arguments so a missing
/// token is reported before anything about the body.
pub struct Caller(pub Session);

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let token = bearer_token(req);
        let cert = req.conn_data::<ClientCertificate>().cloned();
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let ip = rate_limit::source(req);
        let client = client_info(req);
        let key_auth = key_auth_header(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| ApiError::internal("application state missing"))?;
            // A bearer token, when sent, decides; otherwise a client certificate may.
            let session = match (token, cert) {
                (Ok(token), _) => login_from(&state, ip, token).await?,
                (Err(_), Some(ClientCertificate(der))) => {
                    certificate_login_from(&state, ip, der).await?
                }
                (Err(e), None) => return Err(e),
            };
            let session = session.with_client(client);
            Ok(Caller(match key_auth? {
                Some(auth) => session.with_key_auth(auth),
                None => session,
            }))
        })
    }
}

/// The header that carries the password of a key with per-key authorization.
pub const KEY_AUTH_HEADER: &str = "kagi-key-auth";

/// The session with the key password a request body sent, if it sent one (the
/// [`KEY_AUTH_HEADER`] is already on the session).
pub(super) fn with_key_password(
    session: Session,
    password: Option<String>,
) -> Result<Session, ApiError> {
    Ok(match password {
        Some(p) => session.with_key_auth(KeyAuth::new(p)?),
        None => session,
    })
}

/// The key password a request sends in [`KEY_AUTH_HEADER`], if any. It joins only this
/// request's session, never the cached login.
fn key_auth_header(req: &HttpRequest) -> Result<Option<KeyAuth>, ApiError> {
    let Some(value) = req.headers().get(KEY_AUTH_HEADER) else {
        return Ok(None);
    };
    let text = String::from_utf8(value.as_bytes().to_vec()).map_err(|_| {
        ApiError::new(
            Code::BadRequest,
            "the Kagi-Key-Auth header is not UTF-8: send the key password in the request body's key_password field instead",
        )
    })?;
    Ok(Some(KeyAuth::new(text)?))
}

/// Where a request came from, for the audit records it causes: the TCP peer's address (as the
/// rate limits see it, never a forwarded-for header) and the User-Agent it sent.
pub(super) fn client_info(req: &HttpRequest) -> ClientInfo {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    ClientInfo::new(&rate_limit::source(req).to_string(), user_agent.as_deref())
}

fn bearer_token(req: &HttpRequest) -> Result<Zeroizing<String>, ApiError> {
    let unauthenticated = || {
        ApiError::new(
            Code::Unauthenticated,
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

/// A token login from `ip`, under the per-source limit on refusals.
pub(super) async fn login_from(
    state: &AppState,
    ip: IpAddr,
    token: Zeroizing<String>,
) -> Result<Session, ApiError> {
    if let Some(session) = state.hsm.cached_session(&token) {
        return Ok(session);
    }
    if let Err(t) = state.login_limit.admit(ip) {
        // Only a login hsm-core has cached (it re-checks the credential) gets past a block.
        if !state.hsm.has_cached_login(&token) {
            state.hsm.note_throttled_login(&ip.to_string());
            return Err(t.into());
        }
    }
    let source = ip.to_string();
    let result = blocking(&state.hsm, move |h| h.login_from(&token, &source)).await;
    if result.as_ref().is_err_and(is_refusal) {
        state.login_limit.record(ip);
    }
    result
}

/// A client-certificate login from `ip`, under the same limit.
pub(super) async fn certificate_login_from(
    state: &AppState,
    ip: IpAddr,
    der: Vec<u8>,
) -> Result<Session, ApiError> {
    if let Err(t) = state.login_limit.admit(ip) {
        state.hsm.note_throttled_login(&ip.to_string());
        return Err(t.into());
    }
    let source = ip.to_string();
    let result = blocking(&state.hsm, move |h| {
        h.login_by_certificate_from(&der, &source)
    })
    .await;
    if result.as_ref().is_err_and(is_refusal) {
        state.login_limit.record(ip);
    }
    result
}

/// A refusal of the credential itself (not the HSM's state or a failure inside kagi).
fn is_refusal(e: &ApiError) -> bool {
    matches!(
        e.code(),
        "unauthenticated"
            | "bad_credential"
            | "credential_locked"
            | "credential_revoked"
            | "credential_expired"
    )
}
