//! `/readyz`: whether this process should get traffic, and why not.
//!
//! Liveness (`/healthz`) only says the process answers. Readiness also says it can change
//! anything: unsealed, not failed closed over an audit log that does not verify or a rollback
//! a witness showed, a quorum of its witnesses (if any) answering, and its database answering.

use actix_web::{web, HttpResponse};
use serde_json::json;
use std::time::Duration;

use super::state::AppState;

/// How long the database may take to hand out a connection and answer `SELECT 1` before the
/// instance is reported unready. Short: a load balancer polls this, and a blocking-pool thread
/// waits for it.
const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

fn unready(reason: &str, message: String) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({
        "ready": false,
        "reason": reason,
        "message": message,
    }))
}

/// [`unready`] with the witnesses' state (`kagi status` shows it).
fn unready_witnessed(
    reason: &str,
    message: String,
    witnesses: &kagi_hsm_core::WitnessStatus,
) -> HttpResponse {
    HttpResponse::ServiceUnavailable().json(json!({
        "ready": false,
        "reason": reason,
        "message": message,
        "witnesses": witnesses,
    }))
}

/// 200 when unsealed, the audit log verifies and the database answers; 503 with the reason
/// otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.hsm.is_sealed() {
        return unready(
            "sealed",
            "the HSM is sealed: submit unseal shares ('kagi unseal')".into(),
        );
    }
    if let Some(reason) = state.hsm.integrity_failure() {
        return unready("integrity_failure", reason);
    }
    let witnesses = state.hsm.witness_status();
    if witnesses.is_none() {
        // Witnesses removed from the settings do not end a detected rollback either.
        if let Some(reason) = state.hsm.rollback_detected() {
            return unready("rollback_detected", reason);
        }
    }
    if let Some(w) = &witnesses {
        if let Some(reason) = &w.rollback {
            return unready_witnessed("rollback_detected", reason.clone(), w);
        }
        let answering = w
            .witnesses
            .iter()
            .filter(|x| x.last_error.is_none())
            .count();
        if answering < w.quorum {
            let troubles: Vec<String> = w
                .witnesses
                .iter()
                .filter_map(|x| x.last_error.as_ref().map(|e| format!("{}: {e}", x.name)))
                .collect();
            return unready_witnessed(
                "witness_unavailable",
                format!(
                    "{answering} of the {} witnesses answer and {} must cosign before results are released ({})",
                    w.witnesses.len(),
                    w.quorum,
                    troubles.join("; ")
                ),
                w,
            );
        }
    }
    let hsm = state.hsm.clone();
    let ping = web::block(move || hsm.ping_store(STORE_PING_TIMEOUT));
    // The pool's timeout bounds the wait for a connection, not a query on a connection whose
    // peer went silent: the answer is bounded here too, whatever the blocking thread meets.
    match actix_web::rt::time::timeout(2 * STORE_PING_TIMEOUT, ping).await {
        Ok(Ok(Ok(()))) => HttpResponse::Ok().json(match &witnesses {
            Some(w) => json!({ "ready": true, "witnesses": w }),
            None => json!({ "ready": true }),
        }),
        Ok(Ok(Err(e))) => unready(
            "database_unreachable",
            format!("the database does not answer: {e}"),
        ),
        Err(_) => unready(
            "database_unreachable",
            format!(
                "the database did not answer SELECT 1 within {} s",
                (2 * STORE_PING_TIMEOUT).as_secs()
            ),
        ),
        Ok(Err(_)) => unready(
            "shutting_down",
            "the worker pool is unavailable: the service is shutting down".into(),
        ),
    }
}
