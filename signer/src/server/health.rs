//! `/readyz` and `/metrics`: whether this process should get traffic, and why not.
//!
//! Liveness (`/healthz`) only says the process answers. Readiness also says it can change
//! anything: unsealed, and not failed closed over an audit log that does not verify.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::state::AppState;

/// 200 when unsealed and the audit log verifies; 503 with the reason otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.hsm.is_sealed() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "reason": "sealed",
            "message": "the HSM is sealed: submit unseal shares ('kagi unseal')",
        }));
    }
    match state.hsm.integrity_failure() {
        None => HttpResponse::Ok().json(json!({ "ready": true })),
        Some(reason) => HttpResponse::ServiceUnavailable().json(json!({
            "ready": false,
            "reason": "integrity_failure",
            "message": reason,
        })),
    }
}

/// Prometheus text format: the states an operator alerts on.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let sealed = state.hsm.is_sealed();
    let failed = state.hsm.integrity_failure().is_some();
    let body = format!(
        "# HELP kagi_sealed 1 while the HSM is sealed.\n# TYPE kagi_sealed gauge\nkagi_sealed {}\n\
         # HELP kagi_integrity_failure 1 once the audit log failed verification and kagi failed closed.\n\
         # TYPE kagi_integrity_failure gauge\nkagi_integrity_failure {}\n",
        u8::from(sealed),
        u8::from(failed)
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(body)
}
