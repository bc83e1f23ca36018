//! What relying parties fetch without credentials: CA certificates, CRLs and OCSP answers, and
//! the time-stamping authority (an identity's, unless the open TSA is on). Served on the HTTPS
//! port and on the plain-HTTP listener: the responses are signed, and the URLs in issued
//! certificates are http (RFC 5280 §4.2.1.13, RFC 6960 Appendix A).

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::Engine;

use super::auth::{Caller, ClientCertificate};

use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, blocking_with_state, read_body, ApiResult};
use super::state::AppState;

/// OCSP requests are small; RFC 6960 Appendix A.1 GETs carry them base64 in the URL.
pub const OCSP_BODY_LIMIT: usize = 64 * 1024;

fn strip<'a>(file: &'a str, ext: &str) -> Result<&'a str, ApiError> {
    file.strip_suffix(ext)
        .ok_or_else(|| ApiError::new(Code::NotFound, format!("ask for '<ca>{ext}'")))
}

pub async fn crl(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let file = path.into_inner();
    let name = strip(&file, ".crl")?.to_string();
    let der = blocking_with_state(&state, move |st| Ok(st.pki.crl(&st.hsm, &name)?)).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/pkix-crl")
        .insert_header(("Cache-Control", "max-age=300"))
        .body(der))
}

pub async fn ca_cert(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let file = path.into_inner();
    let name = strip(&file, ".crt")?.to_string();
    let rec = blocking(&state.hsm, move |h| h.ca(&name)).await?;
    Ok(HttpResponse::Ok()
        .content_type("application/pkix-cert")
        .body(rec.cert_der))
}

fn ocsp_reply(der: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/ocsp-response")
        .insert_header(("Cache-Control", "no-cache"))
        .body(der)
}

pub async fn ocsp_post(state: web::Data<AppState>, payload: web::Payload) -> ApiResult {
    let body = read_body(payload, OCSP_BODY_LIMIT).await?;
    let der = blocking_with_state(&state, move |st| Ok(st.pki.ocsp(&st.hsm, &body))).await?;
    Ok(ocsp_reply(der))
}

/// `GET /ocsp/{base64(DER)}`, URL-encoded (RFC 6960 Appendix A.1).
pub async fn ocsp_get(state: web::Data<AppState>, path: web::Path<String>) -> ApiResult {
    let encoded = path.into_inner();
    let decoded = percent_decode(&encoded);
    let req = base64::engine::general_purpose::STANDARD
        .decode(decoded.trim())
        .unwrap_or_default();
    let der = blocking_with_state(&state, move |st| Ok(st.pki.ocsp(&st.hsm, &req))).await?;
    Ok(ocsp_reply(der))
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `POST /tsa` (RFC 3161 over HTTP, `application/timestamp-query`): the signing CA's
/// time-stamping authority.
///
/// Every token is a counted, audited use of the TSA key with its own transparency-log entry, so
/// by default the TSA answers identities only: a bearer token or a pinned client certificate,
/// over HTTPS (a credential sent over plain HTTP is refused, never used). An operator who wants
/// an open TSA turns it on (`"open_tsa": true`, or `kagi serve --open-tsa`); anonymous requests
/// are then answered within a per-source rate limit.
pub async fn tsa(state: web::Data<AppState>, req: HttpRequest, payload: web::Payload) -> ApiResult {
    let has_credential = req.headers().contains_key(header::AUTHORIZATION)
        || req.conn_data::<ClientCertificate>().is_some();
    let requested_by = if has_credential {
        if !req.app_config().secure() {
            return Err(ApiError::new(
                Code::Unauthenticated,
                "credentials are accepted over HTTPS only: send the time-stamp request with its token to the HTTPS port (and replace a token that crossed plain HTTP)",
            ));
        }
        let Caller(session) = Caller::from_request(&req, &mut Payload::None).await?;
        Some(session.actor())
    } else if state.open_tsa {
        // Every anonymous request counts against its source, before any body is read or
        // anything is signed: each one the open TSA answers signs, audits and logs.
        state
            .tsa_limit
            .take(super::rate_limit::source(&req))
            .map_err(ApiError::from)?;
        None
    } else {
        return Err(ApiError::new(
            Code::Unauthenticated,
            "the time-stamping authority needs a credential: send 'Authorization: Bearer <token>' over HTTPS (curl -H \"Authorization: Bearer $TOKEN\"), or have the operator enable the open TSA (\"open_tsa\": true in the config file, or 'kagi serve --open-tsa')",
        ));
    };
    let body = read_body(payload, OCSP_BODY_LIMIT).await?;
    let der = blocking_with_state(&state, move |st| {
        Ok(st
            .pki
            .timestamp(&st.hsm, &st.signing_ca, &body, requested_by.as_deref()))
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("application/timestamp-reply")
        .body(der))
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("ab%2Bcd%3D%3D"), "ab+cd==");
        assert_eq!(super::percent_decode("a%2"), "a%2");
        assert_eq!(super::percent_decode("%"), "%");
    }
}
