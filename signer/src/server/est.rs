//! EST (RFC 7030) for factory lines under `/.well-known/est/`: `cacerts`, `simpleenroll` and
//! `simplereenroll`. A line authenticates with HTTP Basic (its identity name and its token as
//! the password) or with the TLS client certificate pinned to its identity. Bodies are base64
//! DER: PKCS#10 in, PKCS#7 certs-only out.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use kagi_ca::IssueOptions;
use kagi_hsm_core::Session;
use zeroize::Zeroizing;

use super::auth::{certificate_login_from, login_from, ClientCertificate};
use super::ca_routes::issuance::{issue_verdict, read_csr};
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{audit_refusal, blocking_with_state, read_body, ApiResult};
use super::rate_limit::source;
use super::state::AppState;

/// A base64 PKCS#10 body: a CSR is at most 8 KiB of DER.
pub const EST_BODY_LIMIT: usize = 16 * 1024;

fn unauthorized(msg: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::UNAUTHORIZED)
        .insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"kagi EST\""))
        .json(
            serde_json::json!({"error": {"code": Code::Unauthenticated.as_str(), "message": msg}}),
        )
}

fn pkcs7_reply(certs: &[Vec<u8>]) -> Result<HttpResponse, ApiError> {
    let der = kagi_ca::pkcs7::certs_only(certs).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "application/pkcs7-mime; smime-type=certs-only",
        ))
        .insert_header(("Content-Transfer-Encoding", "base64"))
        .body(kagi_ca::pkcs7::base64_64(&der)))
}

/// `GET /.well-known/est/cacerts`: the issuing CA and the certificates above it.
pub async fn cacerts(state: web::Data<AppState>) -> ApiResult {
    let chain = blocking_with_state(&state, |st| Ok(st.pki.chain(&st.hsm, &st.est.ca)?)).await?;
    pkcs7_reply(&chain)
}

/// Who is asking: Basic (name + token), a bearer token, or a pinned TLS client certificate.
async fn authenticate(state: &AppState, req: &HttpRequest) -> Result<Session, HttpResponse> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(value) = auth {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value.as_str(), ""));
        let (user, token) = if scheme.eq_ignore_ascii_case("basic") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
            let decoded = Zeroizing::new(decoded);
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| unauthorized("malformed Basic credentials"))?;
            (Some(u.to_string()), Zeroizing::new(p.to_string()))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            (None, Zeroizing::new(rest.trim().to_string()))
        } else {
            return Err(unauthorized(
                "use HTTP Basic (identity name and token) or a client certificate",
            ));
        };
        let session = login_from(state, source(req), token).await.map_err(|e| {
            if e.code() == Code::TooManyAttempts.as_str() {
                return actix_web::ResponseError::error_response(&e);
            }
            let why = match e.code() {
                "credential_locked" | "credential_revoked" | "credential_expired" => e.to_string(),
                _ => "the credentials were not accepted: the user name is the line's identity name and the password its token".into(),
            };
            unauthorized(&why)
        })?;
        if let Some(u) = user {
            if u != session.name() {
                return Err(unauthorized(
                    "the user name does not match the token's identity",
                ));
            }
        }
        return Ok(session);
    }
    if let Some(ClientCertificate(der)) = req.conn_data::<ClientCertificate>().cloned() {
        return match certificate_login_from(state, source(req), der).await {
            Ok(s) => Ok(s),
            Err(e) if e.code() == Code::TooManyAttempts.as_str() => {
                Err(actix_web::ResponseError::error_response(&e))
            }
            Err(e) => Err(unauthorized(&e.to_string())),
        };
    }
    Err(unauthorized(
        "authenticate with HTTP Basic (identity name and token) or a TLS client certificate",
    ))
}

fn csr_from_body(body: &[u8]) -> Result<Vec<u8>, ApiError> {
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.starts_with(b"-----BEGIN") {
        return Ok(body.to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|_| {
            ApiError::new(
                Code::BadCsr,
                "the body must be a base64-encoded DER PKCS#10 request (Content-Type: application/pkcs10)",
            )
        })
}

async fn enroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
    re: bool,
) -> ApiResult {
    let session = match authenticate(&state, &req).await {
        Ok(s) => s.with_client(super::auth::client_info(&req)),
        Err(resp) => return Ok(resp),
    };
    let body = read_body(payload, EST_BODY_LIMIT).await?;
    let action = if re {
        "est.simplereenroll"
    } else {
        "est.simpleenroll"
    };
    let profile = state.est.profile.clone();
    let read = csr_from_body(&body).and_then(|b| read_csr(&b));
    let (verdict, read) = issue_verdict(&state, &session, &profile, read, &req, action).await?;
    let quotas = verdict.quotas.clone();
    let detail = serde_json::json!({
        "via": action, "identity": session.name(), "kind": session.kind().as_str(),
        "policy_version": verdict.version, "policy_rule": verdict.decision.rule,
    });
    let sess = session.clone();
    let result = blocking_with_state(&state, move |st| {
        let ca_name = st.est.ca.clone();
        if re {
            // RFC 7030 §4.2.2: re-enrollment renews a certificate the client already holds,
            // so the subject must be one this identity was issued before.
            let subject = read.csr.subject.to_string();
            if st
                .hsm
                .latest_certificate(&ca_name, &st.est.profile, &sess.actor(), Some(&subject))?
                .is_none()
            {
                return Err(ApiError::new(
                    Code::NotRenewable,
                    format!(
                        "no current certificate for '{subject}' was issued to {}: use simpleenroll",
                        sess.name()
                    ),
                ));
            }
        }
        let issued = st.pki.issue_parsed(
            &st.hsm,
            &sess,
            &ca_name,
            &st.est.profile,
            &read.csr,
            &IssueOptions::default(),
            &quotas,
            detail,
        )?;
        Ok(issued.der)
    })
    .await;
    state
        .metrics
        .issuance(&state.est.ca, &state.est.profile, &result);
    let der = audit_refusal(&state, &session, action, result).await?;
    pkcs7_reply(&[der])
}

pub async fn simpleenroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult {
    enroll(state, req, payload, false).await
}

pub async fn simplereenroll(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult {
    enroll(state, req, payload, true).await
}
