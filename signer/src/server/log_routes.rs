//! The public transparency log over HTTP (no credentials: the log is public, and its
//! checkpoints are signed): checkpoint, verifier key, entries, inclusion and consistency
//! proofs. The full recomputation is an auditor's call under /api/v1.

use actix_web::{web, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{blocking, resource, ApiResult};
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

pub async fn entry(state: web::Data<AppState>, path: web::Path<i64>) -> ApiResult {
    let index = path.into_inner();
    let e = blocking(&state.hsm, move |h| h.tlog_entry(index)).await?;
    Ok(HttpResponse::Ok().json(e))
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

/// The routes both listeners serve.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/log/checkpoint").route(web::get().to(checkpoint)))
        .service(resource("/log/key").route(web::get().to(key)))
        .service(resource("/log/entries/{index}").route(web::get().to(entry)))
        .service(resource("/log/proof/inclusion").route(web::get().to(inclusion)))
        .service(resource("/log/proof/consistency").route(web::get().to(consistency)));
}
