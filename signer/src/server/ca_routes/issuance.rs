//! `POST /api/v1/ca/{ca}/profiles/{profile}/issue` and `issue-batch`, and the policy's word on
//! issuance, which EST asks too.

use actix_web::{web, HttpRequest, HttpResponse};
use kagi_ca::{Days, IssueOptions, Issued};
use kagi_hsm_core::Session;
use kagi_policy::CertificateRequest;
use serde::Deserialize;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::pem;
use crate::server::auth::Caller;
use crate::server::error_codes::Code;
use crate::server::errors::ApiError;
use crate::server::handler::{
    audit_refusal, audited, blocking_with_state, policy_denied, read_body, record_event, ApiResult,
};
use crate::server::policy_gate::{certificate_request, decide_issue, Verdict};
use crate::server::state::AppState;

/// Largest batch: 10,000 CSRs of a few hundred bytes each.
pub const MAX_BATCH: usize = 10_000;

/// Body limit of `issue-batch` (JSON with PEM CSRs).
pub const BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// Body limit of a single issue (one CSR, PEM or DER, or the JSON around it).
pub const ISSUE_BODY_LIMIT: usize = 64 * 1024;

/// Parallel issuers per batch: enough to fill the commit thread's group commits.
const BATCH_WORKERS: usize = 16;

/// A CSR read for issuance: verified, with what the policy sees of it.
pub(crate) struct ReadCsr {
    pub csr: kagi_ca::csr::Csr,
    pub facts: CertificateRequest,
}

/// Read a CSR (PEM or DER) and what the policy sees of it.
pub(crate) fn read_csr(bytes: &[u8]) -> Result<ReadCsr, ApiError> {
    let der = kagi_ca::csr::decode_csr_bytes(bytes)?;
    let csr = kagi_ca::csr::parse(&der)?;
    let facts = certificate_request(&csr)?;
    Ok(ReadCsr { csr, facts })
}

/// The policy's word on `session` issuing under `profile` what the CSR asks for (the
/// bootstrap policy's when none is active); a denial is audited and answered here. A CSR that
/// could not be read is decided on with an empty subject first, so a caller the policy denies
/// outright hears `policy_denied`, whatever its CSR; `audit_action` then records the CSR's flaw.
pub(crate) async fn issue_verdict(
    state: &web::Data<AppState>,
    session: &Session,
    profile: &str,
    csr: Result<ReadCsr, ApiError>,
    http: &HttpRequest,
    audit_action: &str,
) -> Result<(Verdict, ReadCsr), ApiError> {
    let ip = http.peer_addr().map(|a| a.ip());
    let facts = csr.as_ref().map(|c| c.facts.clone()).unwrap_or_default();
    let verdict = match state.policy.fresh() {
        Some(active) => decide_issue(&active, session, profile, &facts, ip),
        None => {
            let (sess, p) = (session.clone(), profile.to_string());
            blocking_with_state(state, move |st| {
                Ok(decide_issue(
                    &st.policy.active(&st.hsm)?,
                    &sess,
                    &p,
                    &facts,
                    ip,
                ))
            })
            .await?
        }
    };
    if !verdict.decision.allowed {
        return Err(policy_denied(
            state,
            session,
            "issue",
            &format!("profile:{profile}"),
            "x509",
            &verdict,
        )
        .await);
    }
    let csr = audit_refusal(state, session, audit_action, csr).await?;
    Ok((verdict, csr))
}

fn audit_detail(v: &Verdict, session: &Session) -> serde_json::Value {
    json!({
        "decision": "allow", "identity": session.name(), "kind": session.kind().as_str(),
        "policy_version": v.version, "policy_rule": v.decision.rule,
    })
}

pub(super) fn validity_of(v: &Option<serde_json::Value>) -> Result<Option<Days>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) => serde_json::from_value::<Days>(v.clone())
            .map(Some)
            .map_err(|_| {
                ApiError::new(
                    Code::BadValidity,
                    "'validity_days' is a number of days or \"forever\"",
                )
            }),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueJson {
    csr: String,
    #[serde(default)]
    validity_days: Option<serde_json::Value>,
    /// Officers only, audited: issue although the device serial number is in use.
    #[serde(default)]
    override_serial_in_use: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueQuery {
    #[serde(default)]
    validity_days: Option<String>,
    #[serde(default)]
    override_serial_in_use: bool,
}

pub fn issued_json(state: &AppState, issued: &Issued, chain: &[Vec<u8>]) -> serde_json::Value {
    let r = &issued.record;
    json!({
        "serial": r.serial, "ca": r.ca_name, "profile": r.profile, "subject": r.subject,
        "issued_to": r.issued_to, "not_before": r.not_before, "not_after": r.not_after,
        "certificate": pem(&issued.der),
        "chain": chain.iter().map(|c| pem(c)).collect::<String>(),
        "crl_url": state.pki.urls.crl(&r.ca_name),
    })
}

/// `POST /api/v1/ca/{ca}/profiles/{profile}/issue`: the body is one CSR, PEM or DER, or JSON
/// `{"csr": "<PEM>", "validity_days": 365, "override_serial_in_use": false}` (the override:
/// officers only, audited). Answers JSON, or the DER certificate when the
/// client accepts only `application/pkix-cert`.
pub async fn issue(
    caller: Caller,
    state: web::Data<AppState>,
    http: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<IssueQuery>,
    payload: web::Payload,
) -> ApiResult {
    let Caller(session) = caller;
    let body = read_body(payload, ISSUE_BODY_LIMIT).await?;
    let (ca_name, profile) = path.into_inner();
    let (csr, validity, override_serial_in_use) = if body.trim_ascii_start().starts_with(b"{") {
        let parsed = serde_json::from_slice::<IssueJson>(&body).map_err(|e| {
            ApiError::new(Code::BadJson, format!("the request body is not valid: {e}"))
        });
        let j = audit_refusal(&state, &session, "ca.issue", parsed).await?;
        (
            j.csr.into_bytes(),
            j.validity_days,
            j.override_serial_in_use || query.override_serial_in_use,
        )
    } else {
        (
            body.to_vec(),
            query.validity_days.clone().map(|d| match d.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(d),
            }),
            query.override_serial_in_use,
        )
    };
    let validity = audit_refusal(&state, &session, "ca.issue", validity_of(&validity)).await?;
    let (verdict, read) = issue_verdict(
        &state,
        &session,
        &profile,
        read_csr(&csr),
        &http,
        "ca.issue",
    )
    .await?;
    let quotas = verdict.quotas.clone();
    let detail = audit_detail(&verdict, &session);
    let sess = session.clone();
    let names = (ca_name.clone(), profile.clone());
    let result = blocking_with_state(&state, move |st| {
        let issued = st.pki.issue_parsed(
            &st.hsm,
            &sess,
            &ca_name,
            &profile,
            &read.csr,
            &IssueOptions {
                validity,
                override_serial_in_use,
            },
            &quotas,
            detail,
        )?;
        let chain = st.pki.chain(&st.hsm, &ca_name)?;
        Ok((issued, chain))
    })
    .await;
    state.metrics.issuance(&names.0, &names.1, &result);
    let (issued, chain) = audit_refusal(&state, &session, "ca.issue", result).await?;
    let wants_der = http
        .headers()
        .get(actix_web::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "application/pkix-cert");
    if wants_der {
        return Ok(HttpResponse::Created()
            .content_type("application/pkix-cert")
            .body(issued.der));
    }
    Ok(HttpResponse::Created().json(issued_json(&state, &issued, &chain)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// PEM CSRs (or base64 DER).
    csrs: Vec<String>,
    #[serde(default)]
    validity_days: Option<serde_json::Value>,
}

/// `POST /api/v1/ca/{ca}/profiles/{profile}/issue-batch`: many CSRs, one answer per item, in
/// order. One bad CSR fails only itself.
pub async fn issue_batch(
    caller: Caller,
    state: web::Data<AppState>,
    http: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Json<BatchBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let (ca_name, profile) = path.into_inner();
    let body = body.into_inner();
    if body.csrs.is_empty() || body.csrs.len() > MAX_BATCH {
        let e = ApiError::new(
            Code::BadBatch,
            format!("'csrs' holds 1 to {MAX_BATCH} CSRs; split larger batches"),
        );
        return Err(audited(&state, &session, "ca.issue_batch", e).await);
    }
    let validity = validity_of(&body.validity_days);
    let validity = audit_refusal(&state, &session, "ca.issue_batch", validity).await?;
    let ip = http.peer_addr().map(|a| a.ip());
    // Each CSR is shown to the policy with its own subject and SANs. A caller the policy
    // denies every item is refused as a whole (403, one audit record), as before CSRs were
    // shown to it; otherwise each denied item fails alone and is audited.
    let (sess, p) = (session.clone(), profile.clone());
    let csrs = body.csrs;
    let (active_verdicts, reads) = blocking_with_state(&state, move |st| {
        // Reading a CSR checks its signature: spread over the workers like the issuance.
        let per = csrs.len().div_ceil(BATCH_WORKERS).max(1);
        let reads: Vec<Result<ReadCsr, ApiError>> = std::thread::scope(|scope| {
            let parts: Vec<_> = csrs
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|c| read_csr(&csr_bytes(c)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|h| {
                    h.join()
                        .unwrap_or_else(|_| vec![Err(ApiError::internal("a CSR reader failed"))])
                })
                .collect()
        });
        if reads.len() != csrs.len() {
            return Err(ApiError::internal("the batch's CSRs were not all read"));
        }
        let active = st.policy.active(&st.hsm)?;
        let empty = CertificateRequest::default();
        let verdicts: Vec<Verdict> = reads
            .iter()
            .map(|r| {
                let facts = r.as_ref().map(|r| &r.facts).unwrap_or(&empty);
                decide_issue(&active, &sess, &p, facts, ip)
            })
            .collect();
        Ok((verdicts, reads))
    })
    .await?;
    let Some(allowed) = active_verdicts.iter().find(|v| v.decision.allowed) else {
        let first = active_verdicts
            .first()
            .ok_or_else(|| ApiError::internal("an empty batch was decided"))?;
        return Err(policy_denied(
            &state,
            &session,
            "issue",
            &format!("profile:{profile}"),
            "x509",
            first,
        )
        .await);
    };
    let quotas = allowed.quotas.clone();
    let detail = audit_detail(allowed, &session);
    let sess = session.clone();
    let ca2 = ca_name.clone();
    let profile_name = profile.clone();
    let (results, chain) = blocking_with_state(&state, move |st| {
        let chain = st.pki.chain(&st.hsm, &ca2)?;
        let n = reads.len();
        let mut todo: Vec<Option<ReadCsr>> = Vec::with_capacity(n);
        let mut early: Vec<Option<Result<Issued, ApiError>>> = Vec::with_capacity(n);
        for (i, (read, v)) in reads.into_iter().zip(&active_verdicts).enumerate() {
            match read {
                _ if !v.decision.allowed => {
                    early.push(Some(Err(item_denied(st, &sess, &ca2, &profile, i, v))));
                    todo.push(None);
                }
                Err(e) => {
                    early.push(Some(Err(e)));
                    todo.push(None);
                }
                Ok(read) => {
                    early.push(None);
                    todo.push(Some(read));
                }
            }
        }
        let results: Vec<Mutex<Option<Result<Issued, ApiError>>>> =
            early.into_iter().map(Mutex::new).collect();
        let next = AtomicUsize::new(0);
        let opts = IssueOptions {
            validity,
            ..IssueOptions::default()
        };
        std::thread::scope(|scope| {
            for _ in 0..BATCH_WORKERS.min(n) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let Some(read) = &todo[i] else { continue };
                    let mut d = detail.clone();
                    d["batch_index"] = json!(i);
                    let r = st
                        .pki
                        .issue_parsed(&st.hsm, &sess, &ca2, &profile, &read.csr, &opts, &quotas, d)
                        .map_err(ApiError::from);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(r);
                    }
                });
            }
        });
        let results: Vec<Result<Issued, ApiError>> = results
            .into_iter()
            .map(|m| {
                m.into_inner()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| Err(ApiError::internal("the item was not processed")))
            })
            .collect();
        Ok((results, chain))
    })
    .await?;
    for r in &results {
        state.metrics.issuance(&ca_name, &profile_name, r);
    }
    let issued = results.iter().filter(|r| r.is_ok()).count();
    let failures: Vec<serde_json::Value> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            r.as_ref()
                .err()
                .map(|e| json!({"index": i, "code": e.code()}))
        })
        .collect();
    if !failures.is_empty() {
        let detail = json!({"ca": ca_name, "issued": issued, "failed": failures.len(), "failures": failures});
        let actor = session.actor();
        if !record_event(&state.hsm, actor, "ca.issue_batch", "partial", detail).await {
            log::warn!("could not audit the failed items of a batch");
        }
    }
    let items: Vec<serde_json::Value> = results
        .iter()
        .enumerate()
        .map(|(i, r)| match r {
            Ok(issued) => {
                let mut v = issued_json(&state, issued, &[]);
                v["index"] = json!(i);
                v["status"] = json!("issued");
                v
            }
            Err(e) => json!({"index": i, "status": "error", "error": e.to_json()}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "issued": issued,
        "failed": results.len() - issued,
        "chain": chain.iter().map(|c| pem(c)).collect::<String>(),
        "results": items,
    })))
}

/// A batch item the policy denied: audited like a denied request (the record names the item),
/// answered `policy_denied`.
fn item_denied(
    st: &AppState,
    session: &Session,
    ca: &str,
    profile: &str,
    index: usize,
    v: &Verdict,
) -> ApiError {
    let detail = json!({
        "identity": session.name(), "kind": session.kind().as_str(), "action": "issue",
        "resource": format!("profile:{profile}"), "format": "x509", "rule": v.decision.rule,
        "policy_version": v.version, "decision": "deny", "ca": ca, "batch_index": index,
    });
    match st.hsm.record_event(
        &session.actor(),
        "policy.decision",
        "denied:policy_denied",
        detail,
    ) {
        Ok(()) => ApiError::new(
            Code::PolicyDenied,
            format!(
                "policy version {} does not allow {} to issue this CSR under profile:{profile}; decided by rule '{}'",
                v.version,
                session.name(),
                v.decision.rule
            ),
        ),
        Err(_) => ApiError::internal("the policy denial could not be audited"),
    }
}

/// A batch item: PEM as is, anything else taken as base64 DER.
fn csr_bytes(item: &str) -> Vec<u8> {
    use base64::Engine;
    let t = item.trim();
    if t.starts_with("-----BEGIN") {
        return t.as_bytes().to_vec();
    }
    let compact: String = t.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .unwrap_or_else(|_| t.as_bytes().to_vec())
}
