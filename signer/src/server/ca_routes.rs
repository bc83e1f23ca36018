//! HTTP handlers of the certificate authority under `/api/v1`: CAs, profiles, issuance (one CSR
//! or a batch), certificates and their revocation.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ca::{Days, IssueOptions, Issued};
use hsm_core::{Algorithm, Gated, Session};
use policy::{Action, Resource};
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::auth::Caller;
use super::errors::ApiError;
use super::policy_gate::{decide, Verdict};
use super::routes::{audited, blocking, policy_denied, ApiResult};
use super::AppState;

/// Largest batch: 10,000 CSRs of a few hundred bytes each.
pub const MAX_BATCH: usize = 10_000;
/// Body limit of `issue-batch` (JSON with PEM CSRs).
pub const BATCH_BODY_LIMIT: usize = 32 * 1024 * 1024;
/// Body limit of a single issue (one CSR, PEM or DER, or the JSON around it).
pub const ISSUE_BODY_LIMIT: usize = 64 * 1024;
/// Parallel issuers per batch: enough to fill the commit thread's group commits.
const BATCH_WORKERS: usize = 16;

fn pem(der: &[u8]) -> String {
    ca::x509::pem("CERTIFICATE", der).unwrap_or_default()
}

fn ca_json(state: &AppState, rec: &hsm_core::records::ca::CaRecord) -> serde_json::Value {
    use der::Decode;
    let cert = x509_cert::certificate::Certificate::from_der(&rec.cert_der).ok();
    let (subject, not_after) = cert
        .as_ref()
        .map(|c| {
            (
                c.tbs_certificate().subject().to_string(),
                c.tbs_certificate()
                    .validity()
                    .not_after
                    .to_unix_duration()
                    .as_secs(),
            )
        })
        .unwrap_or_default();
    json!({
        "name": rec.name, "parent": rec.parent, "partition": rec.partition, "key": rec.key_label,
        "subject": subject, "not_after": not_after, "created_at": rec.created_at,
        "revoked_at": rec.revoked_at, "revocation_reason": rec.revocation_reason,
        "certificate": pem(&rec.cert_der),
        "crl_url": state.pki.urls.crl(&rec.name), "ocsp_url": state.pki.urls.ocsp(),
    })
}

// ------------------------------------------------------------------ CAs

pub async fn list_cas(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(_session) = caller;
    let cas = blocking(&state.hsm, |h| h.list_cas()).await?;
    Ok(HttpResponse::Ok().json(cas.iter().map(|c| ca_json(&state, c)).collect::<Vec<_>>()))
}

pub async fn get_ca(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(_session) = caller;
    let name = path.into_inner();
    let st = state.clone();
    let (rec, chain) = web::block(move || -> Result<_, ApiError> {
        let rec = st.hsm.ca(&name)?;
        let chain = st.pki.chain(&st.hsm, &name)?;
        Ok((rec, chain))
    })
    .await??;
    let mut v = ca_json(&state, &rec);
    v["chain"] = json!(chain.iter().map(|c| pem(c)).collect::<String>());
    Ok(HttpResponse::Ok().json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCaBody {
    name: String,
    subject: String,
    #[serde(default = "default_ca_alg")]
    alg: String,
    #[serde(default)]
    validity_days: Option<i64>,
    /// Absent: a root. Present: an intermediate under this CA.
    #[serde(default)]
    parent: Option<String>,
    /// The id of an approved request, when the policy's quorum asked for one.
    #[serde(default)]
    approval: Option<String>,
}

fn default_ca_alg() -> String {
    "ec-p256".into()
}

pub async fn create_ca(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CreateCaBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let alg = match Algorithm::from_str(&body.alg) {
        Ok(a) => a,
        Err(e) => return Err(audited(&state, &session, "ca.create", e.into()).await),
    };
    let spec = ca::CaSpec {
        name: body.name.clone(),
        subject: body.subject.clone(),
        alg,
        validity_days: body.validity_days.unwrap_or(if body.parent.is_some() {
            3650
        } else {
            7300
        }),
    };
    let st = state.clone();
    let result = web::block(move || -> Result<_, ApiError> {
        Ok(match &body.parent {
            None => ca::hierarchy::create_root(&st.hsm, &session, &spec, body.approval.as_deref())?,
            Some(parent) => ca::hierarchy::create_intermediate(
                &st.hsm,
                &session,
                &spec,
                parent,
                &st.pki.urls,
                body.approval.as_deref(),
            )?,
        })
    })
    .await??;
    match result {
        Gated::Done(rec) => Ok(HttpResponse::Created().json(ca_json(&state, &rec))),
        Gated::Pending(p) => {
            Ok(HttpResponse::Accepted().json(json!({ "status": "pending", "approval": p })))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// An RFC 5280 reason name ("keyCompromise") or code (1).
    #[serde(default)]
    reason: Option<serde_json::Value>,
    #[serde(default)]
    approval: Option<String>,
}

fn reason_of(v: &Option<serde_json::Value>) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::bad_request(
            "bad_reason",
            "'reason' is an RFC 5280 CRLReason: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn, aACompromise (or its code; revocations are permanent, so no certificateHold)",
        )
    };
    match v {
        None => Ok(0),
        Some(serde_json::Value::Number(n)) => {
            let c = n.as_i64().ok_or_else(bad)?;
            if (0..=10).contains(&c) && !matches!(c, 6..=8) {
                Ok(c)
            } else {
                Err(bad())
            }
        }
        Some(serde_json::Value::String(s)) => ca::crl::reason_code(s).ok_or_else(bad),
        Some(_) => Err(bad()),
    }
}

/// The request's reason code; a bad one is refused and audited as `action`.
async fn audited_reason(
    state: &AppState,
    session: &Session,
    reason: &Option<serde_json::Value>,
    action: &str,
) -> Result<i64, ApiError> {
    match reason_of(reason) {
        Ok(r) => Ok(r),
        Err(e) => Err(audited(state, session, action, e).await),
    }
}

pub async fn revoke_ca(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RevokeBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = path.into_inner();
    let body = body.into_inner();
    let reason = audited_reason(&state, &session, &body.reason, "ca.revoke").await?;
    let st = state.clone();
    let n = name.clone();
    let result = web::block(move || -> Result<_, ApiError> {
        let r = ca::hierarchy::revoke_ca(&st.hsm, &session, &n, reason, body.approval.as_deref())?;
        if let Gated::Done(()) = r {
            st.pki.forget(&n);
            if let Ok(rec) = st.hsm.ca(&n) {
                if let Some(parent) = rec.parent {
                    st.pki.regenerate_crl(&st.hsm, &parent)?;
                }
            }
        }
        Ok(r)
    })
    .await??;
    match result {
        Gated::Done(()) => {
            Ok(HttpResponse::Ok()
                .json(json!({ "status": "revoked", "ca": name, "reason": reason })))
        }
        Gated::Pending(p) => {
            Ok(HttpResponse::Accepted().json(json!({ "status": "pending", "approval": p })))
        }
    }
}

pub async fn list_profiles(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(_session) = caller;
    Ok(HttpResponse::Ok().json(
        state
            .pki
            .profiles
            .iter()
            .map(|p| &p.spec)
            .collect::<Vec<_>>(),
    ))
}

// ------------------------------------------------------------------ issuance

/// The policy's word on `session` issuing under `profile`; `Ok(None)`: no policy is active.
pub(super) async fn issue_verdict(
    state: &web::Data<AppState>,
    session: &Session,
    profile: &str,
    http: &HttpRequest,
) -> Result<Option<Verdict>, ApiError> {
    let ip = http.peer_addr().map(|a| a.ip());
    let (st, sess, p) = (state.clone(), session.clone(), profile.to_string());
    let verdict = web::block(move || -> Result<Option<Verdict>, ApiError> {
        Ok(st.policy.active(&st.hsm)?.map(|active| {
            decide(
                &active,
                &sess,
                Action::Issue,
                &Resource::Profile(&p),
                None,
                ip,
            )
        }))
    })
    .await??;
    if let Some(v) = &verdict {
        if !v.decision.allowed {
            return Err(policy_denied(
                state,
                session,
                "issue",
                &format!("profile:{profile}"),
                "x509",
                v,
            )
            .await);
        }
    }
    Ok(verdict)
}

fn audit_detail(verdict: &Option<Verdict>, session: &Session) -> serde_json::Value {
    match verdict {
        Some(v) => json!({
            "decision": "allow", "identity": session.name(), "kind": session.kind().as_str(),
            "policy_version": v.version, "policy_rule": v.decision.rule,
        }),
        None => json!({"policy": "none (roles only)"}),
    }
}

fn validity_of(v: &Option<serde_json::Value>) -> Result<Option<Days>, ApiError> {
    match v {
        None => Ok(None),
        Some(v) => serde_json::from_value::<Days>(v.clone())
            .map(Some)
            .map_err(|_| {
                ApiError::bad_request(
                    "bad_validity",
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
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueQuery {
    #[serde(default)]
    validity_days: Option<String>,
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
/// `{"csr": "<PEM>", "validity_days": 365}`. Answers JSON, or the DER certificate when the
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
    let body = super::errors::read_body(payload, ISSUE_BODY_LIMIT).await?;
    let (ca_name, profile) = path.into_inner();
    let verdict = issue_verdict(&state, &session, &profile, &http).await?;
    let (csr, validity) = if body.trim_ascii_start().starts_with(b"{") {
        match serde_json::from_slice::<IssueJson>(&body) {
            Ok(j) => (j.csr.into_bytes(), j.validity_days),
            Err(e) => {
                let e = ApiError::bad_request(
                    "bad_json",
                    format!("the request body is not valid: {e}"),
                );
                return Err(audited(&state, &session, "ca.issue", e).await);
            }
        }
    } else {
        (
            body.to_vec(),
            query.validity_days.clone().map(|d| match d.parse::<i64>() {
                Ok(n) => json!(n),
                Err(_) => json!(d),
            }),
        )
    };
    let validity = match validity_of(&validity) {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "ca.issue", e).await),
    };
    let quotas = verdict
        .as_ref()
        .map(|v| v.quotas.clone())
        .unwrap_or_default();
    let detail = audit_detail(&verdict, &session);
    let st = state.clone();
    let sess = session.clone();
    let result = web::block(move || -> Result<_, ApiError> {
        let issued = st.pki.issue(
            &st.hsm,
            &sess,
            &ca_name,
            &profile,
            &csr,
            &IssueOptions { validity },
            &quotas,
            detail,
        )?;
        let chain = st.pki.chain(&st.hsm, &ca_name)?;
        Ok((issued, chain))
    })
    .await?;
    let (issued, chain) = match result {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "ca.issue", e).await),
    };
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
        let e = ApiError::bad_request(
            "bad_batch",
            format!("'csrs' holds 1 to {MAX_BATCH} CSRs; split larger batches"),
        );
        return Err(audited(&state, &session, "ca.issue_batch", e).await);
    }
    let validity = match validity_of(&body.validity_days) {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "ca.issue_batch", e).await),
    };
    let verdict = issue_verdict(&state, &session, &profile, &http).await?;
    let quotas = verdict
        .as_ref()
        .map(|v| v.quotas.clone())
        .unwrap_or_default();
    let detail = audit_detail(&verdict, &session);
    let st = state.clone();
    let sess = session.clone();
    let ca2 = ca_name.clone();
    let (results, chain) = web::block(move || -> Result<_, ApiError> {
        let chain = st.pki.chain(&st.hsm, &ca2)?;
        let n = body.csrs.len();
        let results: Vec<Mutex<Option<Result<Issued, ApiError>>>> =
            (0..n).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let opts = IssueOptions { validity };
        std::thread::scope(|scope| {
            for _ in 0..BATCH_WORKERS.min(n) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let mut d = detail.clone();
                    d["batch_index"] = json!(i);
                    let r = st
                        .pki
                        .issue(
                            &st.hsm,
                            &sess,
                            &ca2,
                            &profile,
                            csr_bytes(&body.csrs[i]).as_slice(),
                            &opts,
                            &quotas,
                            d,
                        )
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
    .await??;
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
        let (hsm, actor) = (state.hsm.clone(), session.actor());
        let detail = json!({"ca": ca_name, "issued": issued, "failed": failures.len(), "failures": failures});
        let recorded =
            web::block(move || hsm.record_event(&actor, "ca.issue_batch", "partial", detail)).await;
        if !matches!(recorded, Ok(Ok(()))) {
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

// ------------------------------------------------------------------ certificates

pub async fn get_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(_session) = caller;
    let serial = path.into_inner();
    let s2 = serial.clone();
    let cert = blocking(&state.hsm, move |h| h.certificate(&s2)).await?;
    match cert {
        Some(c) => {
            let mut v = serde_json::to_value(&c).unwrap_or_default();
            v["certificate"] = json!(pem(&c.der));
            Ok(HttpResponse::Ok().json(v))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!(
                "no certificate with serial {} ('kagi ca certs CA' lists them)",
                serial.chars().take(64).collect::<String>()
            ),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn list_certificates(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> ApiResult {
    let Caller(_session) = caller;
    let ca_name = path.into_inner();
    let limit = query.limit.unwrap_or(100);
    let (certs, total) = blocking(&state.hsm, move |h| {
        h.ca(&ca_name)?;
        Ok((
            h.list_certificates(&ca_name, limit)?,
            h.count_certificates(&ca_name)?,
        ))
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({"total": total, "certificates": certs})))
}

/// Revoke a certificate and publish a new CRL of its CA before answering, so the CRL a client
/// fetches next already lists it.
pub async fn revoke_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<RevokeBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let serial = path.into_inner();
    let body = body.into_inner();
    let reason = audited_reason(&state, &session, &body.reason, "ca.revoke_certificate").await?;
    if body.approval.is_some() {
        return Err(ApiError::bad_request(
            "bad_request",
            "revoking an end-entity certificate needs no approval; 'approval' is for CAs",
        ));
    }
    let st = state.clone();
    let (rec, crl_number) = web::block(move || -> Result<_, ApiError> {
        let rec = st.hsm.revoke_certificate(&session, &serial, reason)?;
        let crl = st.pki.regenerate_crl(&st.hsm, &rec.ca_name)?;
        Ok((rec, crl.number))
    })
    .await??;
    let mut v = serde_json::to_value(&rec).unwrap_or_default();
    v["crl_number"] = json!(crl_number);
    Ok(HttpResponse::Ok().json(v))
}

// ------------------------------------------------------------------ signing keys' certificates

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertifyBody {
    /// RFC 4514; default "CN=<key>,O=kagi".
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    validity_days: Option<serde_json::Value>,
}

/// `POST /api/v1/keys/{name}/certificate`: a code-signing certificate for a key of the caller's
/// partition, from the signing CA.
pub async fn certify_key(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CertifyBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let label = path.into_inner();
    let body = body.into_inner();
    let validity = match validity_of(&body.validity_days) {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "key.certify", e).await),
    };
    let st = state.clone();
    let (issued, chain) = web::block(move || -> Result<_, ApiError> {
        let issued = st.pki.certify_key(
            &st.hsm,
            &session,
            &st.signing_ca,
            &label,
            body.subject.as_deref(),
            validity,
        )?;
        let chain = st.pki.chain(&st.hsm, &issued.record.ca_name)?;
        Ok((issued, chain))
    })
    .await??;
    Ok(HttpResponse::Created().json(issued_json(&state, &issued, &chain)))
}

/// `GET /api/v1/keys/{name}/certificate`: the key's current code-signing certificate.
pub async fn key_certificate(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let label = path.into_inner();
    let l2 = label.clone();
    let st = state.clone();
    let found = web::block(move || -> Result<_, ApiError> {
        Ok(st.pki.key_certificate(&st.hsm, &session, &l2)?)
    })
    .await??;
    match found {
        Some(kc) => {
            let issued = Issued {
                der: kc.record.der.clone(),
                record: kc.record,
            };
            Ok(HttpResponse::Ok().json(issued_json(&state, &issued, &kc.chain)))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_certificate",
            format!("key '{label}' has no current code-signing certificate: 'kagi key certify {label}' makes one"),
        )),
    }
}
