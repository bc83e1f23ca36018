//! The transparency log over HTTP: checkpoint, verifier key, inclusion and consistency proofs
//! for anyone (no credentials: verifiers and witnesses need them, and checkpoints are signed),
//! and entry bodies for those allowed to read them. An entry names an identity, a key and a
//! time, so a public entry would let anyone count a line's output or a team's releases: by
//! default an auditor reads every entry and any other identity only its own; the
//! `log_entries_public` setting opens them to everyone. The full recomputation is an auditor's
//! call under /api/v1.

use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use base64::Engine;
use der::DecodePem;
use kagi_hsm_core::{Role, Session, TlogEntry};
use serde::Deserialize;
use serde_json::json;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

use super::auth::{Caller, ClientCertificate};
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, ApiResult};
use super::state::AppState;

fn b64(h: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// `GET /log/checkpoint[?size=N]`: the signed note (text/plain).
pub async fn checkpoint(state: web::Data<AppState>, q: web::Query<SizeQuery>) -> ApiResult {
    let size = q.size;
    let cp = blocking(&state.hsm, move |h| h.tlog_checkpoint(size)).await?;
    match cp {
        Some(c) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-cache"))
            .body(c.note)),
        None => Err(ApiError::new(
            Code::NoCheckpoint,
            "the transparency log has no checkpoint at that size (none yet, or the size is not one a batch ended at)",
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeQuery {
    #[serde(default)]
    size: Option<i64>,
}

/// `GET /log/key`: the verifier key (C2SP signed-note format) to pin.
pub async fn key(state: web::Data<AppState>) -> ApiResult {
    let k = blocking(&state.hsm, |h| h.tlog_verifier_key()).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{k}\n")))
}

/// `GET /log/entries/N` on the HTTPS listener: public under `log_entries_public`; otherwise an
/// auditor reads any entry and another identity the entries that name it. Any other entry is
/// answered exactly as one past the end of the log (404 `not_found`, the same message), so a
/// caller learns nothing about entries that are not theirs.
pub async fn entry(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<i64>,
) -> ApiResult {
    let index = path.into_inner();
    if state.log_entries_public {
        return read(&state, index).await;
    }
    if req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .is_none()
        && req.conn_data::<ClientCertificate>().is_none()
    {
        return Err(private_entries());
    }
    let Caller(session) = Caller::extract(&req).await?;
    if session.has_role(Role::Auditor) {
        return read(&state, index).await;
    }
    let found = blocking(&state.hsm, move |h| h.tlog_entry(index)).await;
    let e = match found {
        Ok(e) => e,
        Err(e) if e.code() == Code::NotFound.as_str() => return Err(no_entry(index)),
        Err(e) => return Err(e),
    };
    if !names(&e, &session, &state.pki.urls.base) {
        return Err(no_entry(index));
    }
    Ok(HttpResponse::Ok().json(e))
}

/// `GET /log/entries/N` on the plain-HTTP listener: public under `log_entries_public`, else
/// 401 whatever the request carries. A credential sent in clear text is never looked at, so
/// no client is ever rewarded for sending one there.
pub async fn public_entry(state: web::Data<AppState>, path: web::Path<i64>) -> ApiResult {
    if state.log_entries_public {
        return read(&state, path.into_inner()).await;
    }
    Err(private_entries())
}

async fn read(state: &AppState, index: i64) -> ApiResult {
    let e = blocking(&state.hsm, move |h| h.tlog_entry(index)).await?;
    Ok(HttpResponse::Ok().json(e))
}

fn private_entries() -> ApiError {
    ApiError::new(
        Code::Unauthenticated,
        "log entries are private on this instance: ask the HTTPS API with the token of an \
         auditor, or of the identity that made the entry (KAGI_TOKEN); checkpoints and proofs \
         need no credential",
    )
}

fn no_entry(index: i64) -> ApiError {
    ApiError::new(
        Code::NotFound,
        format!(
            "no log entry {index} that you may read: an identity reads the entries that name \
             it, an auditor every entry"
        ),
    )
}

/// Whether entry `e` names `session`: kagi's own entries by their `identity` (the session's
/// actor, `partition:name`), Sigstore entries by their certificate's URI subjectAltName (the
/// identity URI kagi put there). Anything else names no one.
fn names(e: &TlogEntry, session: &Session, public_url: &str) -> bool {
    let body = e.body.as_bytes();
    if let Ok(sig) = kagi_tlog::SignatureEntry::parse(body) {
        return sig.identity == session.actor();
    }
    let Ok(rekord) = kagi_tlog::HashedRekord::parse(body) else {
        return false;
    };
    let Ok(cert) = x509_cert::Certificate::from_pem(rekord.certificate_pem.as_bytes()) else {
        return false;
    };
    let want = crate::sigstore::identity_uri(public_url, session);
    let sans = match cert.tbs_certificate().get_extension::<SubjectAltName>() {
        Ok(Some((_, san))) => san,
        _ => return false,
    };
    sans.0.iter().any(|n| match n {
        GeneralName::UniformResourceIdentifier(u) => u.as_str() == want,
        _ => false,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    index: i64,
    size: i64,
}

pub async fn inclusion(state: web::Data<AppState>, q: web::Query<InclusionQuery>) -> ApiResult {
    let (index, size) = (q.index, q.size);
    let proof = blocking(&state.hsm, move |h| h.tlog_inclusion_proof(index, size)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "index": index, "tree_size": size,
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    first: i64,
    second: i64,
}

pub async fn consistency(state: web::Data<AppState>, q: web::Query<ConsistencyQuery>) -> ApiResult {
    let (first, second) = (q.first, q.second);
    let proof = blocking(&state.hsm, move |h| h.tlog_consistency_proof(first, second)).await?;
    Ok(HttpResponse::Ok().json(json!({
        "first": first, "second": second,
        "hashes": proof.iter().map(|h| b64(h)).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/log/verify` (auditor): recompute the whole log from its entries.
pub async fn verify(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let (entries, checkpoints) = blocking(&state.hsm, move |h| h.tlog_verify(&session)).await?;
    Ok(HttpResponse::Ok().json(json!({"entries": entries, "checkpoints": checkpoints})))
}
