//! HTTP handlers of `/api/v1`, `/healthz` and `/ui`. Each one parses and checks its input, then
//! runs the blocking hsm-core call on actix's blocking pool.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use hsm_core::{
    Algorithm, DigestAlg, Hsm, KeySpec, Operation, Role, RsaPadding, Session, SignRequest,
};
use policy::{Action, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::errors::ApiError;
use super::policy_gate::{decide, Verdict};
use super::AppState;
use crate::pem::public_key_pem;

/// The import routes share the `/keys/{name}` space, so no key may take their names.
const RESERVED_KEY_NAMES: [&str; 2] = ["import", "import-key"];

pub(super) type ApiResult = Result<HttpResponse, ApiError>;

/// Runs a blocking hsm-core call off the async workers.
pub(super) async fn blocking<T, F>(hsm: &Hsm, f: F) -> Result<T, ApiError>
where
    F: FnOnce(&Hsm) -> Result<T, hsm_core::HsmError> + Send + 'static,
    T: Send + 'static,
{
    let hsm = hsm.clone();
    Ok(web::block(move || f(&hsm)).await??)
}

/// Rejections found by the service itself (hsm-core audits its own) are recorded too, so a
/// caller probing the API with malformed requests leaves a trace.
pub(super) async fn audited(
    state: &AppState,
    session: &Session,
    action: &str,
    err: ApiError,
) -> ApiError {
    if err.is_bad_input() {
        let actor = session.actor();
        let action = action.to_string();
        let detail = json!({ "code": err.code() });
        let outcome = format!("denied:{}", err.code());
        let hsm = state.hsm.clone();
        let recorded =
            web::block(move || hsm.record_event(&actor, &action, &outcome, detail)).await;
        if !matches!(recorded, Ok(Ok(()))) {
            log::warn!("could not audit a rejected request ({})", err.code());
        }
    }
    err
}

// ------------------------------------------------------------------ system

pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok", "sealed": state.hsm.is_sealed() }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealBody {
    share: String,
}

pub async fn unseal(state: web::Data<AppState>, body: web::Json<UnsealBody>) -> ApiResult {
    let share = zeroize::Zeroizing::new(body.into_inner().share);
    let progress = blocking(&state.hsm, move |h| h.unseal(share.trim())).await?;
    if progress.unsealed {
        log::info!("the HSM is unsealed");
    }
    Ok(HttpResponse::Ok().json(progress))
}

pub async fn ui() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", web_ui::CONTENT_SECURITY_POLICY))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .body(web_ui::INDEX_HTML)
}

// ------------------------------------------------------------------ keys

/// Body of key creation and import. Times are RFC 3339 strings ("2030-01-01T00:00:00Z").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    name: String,
    alg: String,
    #[serde(default)]
    usage_limit: Option<i64>,
    #[serde(default)]
    not_before: Option<String>,
    #[serde(default)]
    not_after: Option<String>,
    #[serde(default)]
    operations: Option<Vec<String>>,
    #[serde(default)]
    exportable_under_wrap: bool,
    #[serde(default)]
    trusted: bool,
    /// Import only: the key wrapped to the partition's import key, base64.
    #[serde(default)]
    wrapped: Option<String>,
}

impl KeyBody {
    fn spec(&self) -> Result<KeySpec, ApiError> {
        if RESERVED_KEY_NAMES.contains(&self.name.as_str()) {
            return Err(ApiError::bad_request(
                "reserved_name",
                format!(
                    "'{}' is reserved for the key import routes: pick another name",
                    self.name
                ),
            ));
        }
        let alg = Algorithm::from_str(&self.alg)?;
        let mut spec = KeySpec::new(&self.name, alg);
        spec.usage_limit = self.usage_limit;
        spec.not_before = self
            .not_before
            .as_deref()
            .map(|t| parse_time("not_before", t))
            .transpose()?;
        spec.not_after = self
            .not_after
            .as_deref()
            .map(|t| parse_time("not_after", t))
            .transpose()?;
        if let Some(ops) = &self.operations {
            spec.operations = ops
                .iter()
                .map(|o| Operation::from_str(o))
                .collect::<Result<_, _>>()?;
        }
        spec.exportable_under_wrap = self.exportable_under_wrap;
        spec.trusted = self.trusted;
        Ok(spec)
    }
}

pub(super) fn parse_time(field: &str, text: &str) -> Result<i64, ApiError> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| {
            ApiError::bad_request(
                "bad_time",
                format!("{field} must be an RFC 3339 time such as 2030-01-01T00:00:00Z"),
            )
        })
}

pub async fn create_key(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<KeyBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let checked = match body.wrapped {
        Some(_) => Err(ApiError::bad_request(
            "bad_request",
            "'wrapped' belongs to POST /api/v1/keys/import, not to key creation",
        )),
        None => body.spec(),
    };
    let spec = match checked {
        Ok(spec) => spec,
        Err(e) => return Err(audited(&state, &session, "key.generate", e).await),
    };
    let info = blocking(&state.hsm, move |h| h.create_key(&session, &spec)).await?;
    Ok(HttpResponse::Created().json(info))
}

pub async fn import_key(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<KeyBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let checked = body.spec().and_then(|spec| {
        let wrapped = body.wrapped.as_deref().ok_or_else(|| {
            ApiError::bad_request("bad_request", "'wrapped' (base64) is required")
        })?;
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| ApiError::bad_request("bad_base64", "'wrapped' is not valid base64"))?;
        Ok((spec, wrapped))
    });
    let (spec, wrapped) = match checked {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "key.import", e).await),
    };
    let info = blocking(&state.hsm, move |h| h.import_key(&session, &spec, &wrapped)).await?;
    Ok(HttpResponse::Created().json(info))
}

pub async fn list_keys(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let keys = blocking(&state.hsm, move |h| h.list_keys(&session)).await?;
    Ok(HttpResponse::Ok().json(keys))
}

pub async fn get_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let info = blocking(&state.hsm, move |h| h.key_info(&session, &name)).await?;
    Ok(HttpResponse::Ok().json(info))
}

fn pem_response(spki_der: &[u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(public_key_pem(spki_der))
}

pub async fn public_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let info = blocking(&state.hsm, move |h| h.key_info(&session, &name)).await?;
    Ok(pem_response(&info.public_key_der))
}

pub async fn import_wrapping_key(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let spki = blocking(&state.hsm, move |h| h.import_public_key(&session)).await?;
    Ok(pem_response(&spki))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    wrapping_key: String,
}

pub async fn export_wrapped(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<ExportBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let wrapping = body.into_inner().wrapping_key;
    let result = blocking(&state.hsm, move |h| {
        h.export_wrapped(&session, &name, &wrapping)
    })
    .await?;
    Ok(match result {
        hsm_core::Gated::Done(wrapped) => HttpResponse::Ok().json(json!({
            "status": "done",
            "wrapped": base64::engine::general_purpose::STANDARD.encode(wrapped),
            "mechanism": hsm_core::WRAP_MECHANISM,
        })),
        // Under a quorum: the requester collects the wrapped key from the approved request.
        hsm_core::Gated::Pending(req) => {
            HttpResponse::Accepted().json(json!({ "status": "pending", "approval": req }))
        }
    })
}

// ------------------------------------------------------------------ sign

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// Label of a key held in the HSM ...
    #[serde(default)]
    key: Option<String>,
    /// ... or a key kept outside, wrapped to the partition's import key (base64), with `alg`.
    #[serde(default)]
    wrapped_key: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    /// Hex of the precomputed digest.
    digest: String,
    #[serde(default)]
    digest_alg: Option<String>,
    #[serde(default)]
    padding: Option<String>,
    #[serde(default)]
    format: Option<String>,
    /// cms and sigstore: add an RFC 3161 timestamp of the signature (cms: an unsigned
    /// attribute; sigstore: the bundle's timestampVerificationData).
    #[serde(default)]
    timestamp: bool,
}

#[derive(Serialize)]
struct SignResponse {
    /// Base64 of the raw signature: DER ECDSA-Sig-Value for EC keys, the RSA signature block,
    /// or the 64-byte Ed25519 signature.
    signature: String,
    key: String,
    algorithm: Algorithm,
    digest_alg: DigestAlg,
    /// The key's usage count including this signature.
    usage_count: i64,
    usage_limit: Option<i64>,
    /// This signature's entry in the public transparency log (/log/entries/N).
    tlog_index: Option<i64>,
    /// sigstore: the Sigstore bundle (v0.3), and what to verify it with.
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
}

impl SignResponse {
    fn new(signature: &[u8], key: String, signed: &hsm_core::Signed) -> SignResponse {
        SignResponse {
            signature: base64::engine::general_purpose::STANDARD.encode(signature),
            key,
            algorithm: signed.algorithm,
            digest_alg: signed.digest_alg,
            usage_count: signed.usage_count,
            usage_limit: signed.usage_limit,
            tlog_index: signed.tlog_index,
            bundle: None,
            identity: None,
            issuer: None,
        }
    }
}

fn sign_request(body: &SignBody) -> Result<SignRequest, ApiError> {
    match body.format.as_deref().unwrap_or("raw") {
        "raw" if !body.timestamp => {}
        "raw" => {
            return Err(ApiError::bad_request(
                "bad_request",
                "'timestamp' goes with format \"cms\" (a raw signature has nowhere to carry it)",
            ))
        }
        "cms" if body.wrapped_key.is_none() => {}
        "cms" => {
            return Err(ApiError::bad_request(
                "bad_request",
                "format \"cms\" needs a key in the HSM with a certificate ('kagi key certify'), not a wrapped key",
            ))
        }
        "sigstore" if body.wrapped_key.is_none() => {}
        "sigstore" => {
            return Err(ApiError::bad_request(
                "bad_request",
                "format \"sigstore\" needs a key in the HSM (its certificate names the caller), not a wrapped key",
            ))
        }
        other => {
            return Err(ApiError::bad_request(
                "unsupported_format",
                format!(
                    "signature format '{}' is not supported: use \"raw\", \"cms\" or \"sigstore\"",
                    other.chars().take(32).collect::<String>()
                ),
            ))
        }
    }
    let digest = hex::decode(body.digest.trim()).map_err(|_| {
        ApiError::bad_request(
            "bad_digest",
            "'digest' must be the hex of the precomputed digest",
        )
    })?;
    let digest_alg = body
        .digest_alg
        .as_deref()
        .map(DigestAlg::from_str)
        .transpose()?;
    let padding = body
        .padding
        .as_deref()
        .map(RsaPadding::from_str)
        .transpose()?
        .unwrap_or_default();
    Ok(SignRequest {
        digest_alg,
        digest,
        padding,
    })
}

/// Policies name a key kept outside the HSM by this resource id.
pub const WRAPPED_KEY_RESOURCE: &str = "(wrapped)";

pub async fn sign(
    caller: Caller,
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<SignBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let resource = match (&body.key, &body.wrapped_key) {
        (Some(label), None) => label.clone(),
        (None, Some(_)) => WRAPPED_KEY_RESOURCE.to_string(),
        _ => {
            let e = ApiError::bad_request(
                "bad_request",
                "name exactly one of 'key' (a key in the HSM) or 'wrapped_key' (base64, with 'alg')",
            );
            return Err(audited(&state, &session, "key.use", e).await);
        }
    };
    let format = body.format.clone().unwrap_or_else(|| "raw".into());
    // The policy decides first, so a denial never depends on what this build supports.
    let verdict = {
        let (st, sess, res, fmt) = (
            state.clone(),
            session.clone(),
            resource.clone(),
            format.clone(),
        );
        let ip = http.peer_addr().map(|a| a.ip());
        web::block(move || -> Result<Option<Verdict>, ApiError> {
            Ok(st.policy.active(&st.hsm)?.map(|active| {
                decide(
                    &active,
                    &sess,
                    Action::Sign,
                    &Resource::Key(&res),
                    Some(&fmt),
                    ip,
                )
            }))
        })
        .await??
    };
    if let Some(v) = &verdict {
        if !v.decision.allowed {
            return Err(policy_denied(
                &state,
                &session,
                "sign",
                &format!("key:{resource}"),
                &format,
                v,
            )
            .await);
        }
    }
    let req = match sign_request(&body) {
        Ok(req) => req,
        Err(e) => return Err(audited(&state, &session, "key.use", e).await),
    };
    let detail = match &verdict {
        Some(v) => {
            json!({
                "format": format, "decision": "allow", "identity": session.name(),
                "kind": session.kind().as_str(), "policy_version": v.version, "policy_rule": v.decision.rule,
            })
        }
        None => json!({"format": format, "policy": "none (roles only)"}),
    };
    let quotas = verdict.map(|v| v.quotas).unwrap_or_default();
    if format == "cms" {
        let st = state.clone();
        let timestamp = body.timestamp.then(|| st.signing_ca.clone());
        let label = resource.clone();
        let (cms, signed) = web::block(move || -> Result<_, ApiError> {
            Ok(st.pki.cms_sign(
                &st.hsm,
                &session,
                &label,
                &req,
                &quotas,
                detail,
                timestamp.as_deref(),
            )?)
        })
        .await??;
        return Ok(HttpResponse::Ok().json(SignResponse::new(&cms, resource, &signed)));
    }
    if format == "sigstore" {
        let st = state.clone();
        let label = resource.clone();
        let timestamp = body.timestamp;
        let out = web::block(move || -> Result<_, ApiError> {
            Ok(st.pki.sigstore_sign(
                &st.hsm,
                &session,
                &label,
                &req,
                &quotas,
                detail,
                &st.signing_ca,
                timestamp,
            )?)
        })
        .await??;
        return Ok(HttpResponse::Ok().json(SignResponse {
            bundle: Some(out.bundle),
            identity: Some(out.identity_uri),
            issuer: Some(out.issuer),
            ..SignResponse::new(&out.signed.signature, resource, &out.signed)
        }));
    }
    // One signing operation for stored and wrapped keys alike, so the policy's quotas and
    // audit detail are charged to both.
    let wrapped = match &body.wrapped_key {
        None => None,
        Some(wrapped) => match wrapped_key_parts(wrapped, body.alg.as_deref()) {
            Ok(v) => Some(v),
            Err(e) => return Err(audited(&state, &session, "key.use_wrapped", e).await),
        },
    };
    let signed = blocking(&state.hsm, move |h| {
        let key = match &wrapped {
            None => hsm_core::SignKey::Stored(&resource),
            Some((algorithm, wrapped)) => hsm_core::SignKey::Wrapped {
                algorithm: *algorithm,
                wrapped,
            },
        };
        h.sign_op(
            &session,
            hsm_core::SignOp {
                key,
                request: &req,
                purpose: hsm_core::SignPurpose::Digest,
                quotas: &quotas,
                audit: detail,
                staging: hsm_core::Staging::KagiEntry,
            },
        )
    })
    .await?;
    Ok(HttpResponse::Ok().json(SignResponse::new(
        &signed.signature,
        body.key.unwrap_or_else(|| WRAPPED_KEY_RESOURCE.into()),
        &signed,
    )))
}

/// Audit a policy denial (identity, action, resource, deciding rule) and answer 403.
pub(super) async fn policy_denied(
    state: &AppState,
    session: &Session,
    action: &str,
    resource: &str,
    format: &str,
    v: &Verdict,
) -> ApiError {
    let detail = json!({
        "identity": session.name(), "kind": session.kind().as_str(), "action": action,
        "resource": resource, "format": format, "rule": v.decision.rule,
        "policy_version": v.version, "decision": "deny",
    });
    let (hsm, actor) = (state.hsm.clone(), session.actor());
    let recorded = web::block(move || {
        hsm.record_event(&actor, "policy.decision", "denied:policy_denied", detail)
    })
    .await;
    if !matches!(recorded, Ok(Ok(()))) {
        // Invariant 3: a decision that cannot be recorded is not released as anything but a
        // failure.
        return ApiError::internal("the policy denial could not be audited");
    }
    ApiError::new(
        StatusCode::FORBIDDEN,
        "policy_denied",
        format!(
            "policy version {} does not allow {} to {action} {resource} (format {format}); decided by rule '{}'",
            v.version, session.name(), v.decision.rule
        ),
    )
}

fn wrapped_key_parts(wrapped: &str, alg: Option<&str>) -> Result<(Algorithm, Vec<u8>), ApiError> {
    let alg = alg.ok_or_else(|| {
        ApiError::bad_request("bad_request", "'alg' is required with 'wrapped_key'")
    })?;
    let alg = Algorithm::from_str(alg)?;
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(wrapped.trim())
        .map_err(|_| ApiError::bad_request("bad_base64", "'wrapped_key' is not valid base64"))?;
    Ok((alg, wrapped))
}

// ------------------------------------------------------------------ audit

pub async fn audit_verify(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let report = blocking(&state.hsm, move |h| h.audit_verify(&session)).await?;
    Ok(HttpResponse::Ok().json(report))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    from: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

pub async fn audit_records(
    caller: Caller,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> ApiResult {
    let Caller(session) = caller;
    let from = query.from.unwrap_or(0);
    let limit = query.limit.unwrap_or(1000);
    let records = blocking(&state.hsm, move |h| h.audit_records(&session, from, limit)).await?;
    Ok(HttpResponse::Ok().json(records))
}

pub async fn audit_checkpoint(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    // The checkpoint is public data, but reading it still needs a valid credential.
    let Caller(_session) = caller;
    let checkpoint = blocking(&state.hsm, |h| h.latest_checkpoint()).await?;
    match checkpoint {
        Some(c) => Ok(HttpResponse::Ok().json(c)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_checkpoint",
            "the audit log has no signed checkpoint yet",
        )),
    }
}

// ------------------------------------------------------------------ credentials

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialBody {
    name: String,
    roles: Vec<String>,
    /// Another partition (administrators only); default: the caller's.
    #[serde(default)]
    partition: Option<String>,
}

pub async fn create_credential(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<CredentialBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let roles = match body
        .roles
        .iter()
        .map(|r| Role::from_str(r))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(roles) => roles,
        Err(e) => return Err(audited(&state, &session, "credential.create", e.into()).await),
    };
    let (info, token) = blocking(&state.hsm, move |h| match &body.partition {
        Some(p) => h.create_credential_in(&session, p, &body.name, &roles),
        None => h.create_credential(&session, &body.name, &roles),
    })
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "credential": info, "token": token.as_str() })))
}

pub async fn list_credentials(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let creds = blocking(&state.hsm, move |h| h.list_credentials(&session)).await?;
    Ok(HttpResponse::Ok().json(creds))
}

// ------------------------------------------------------------------ partitions

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionBody {
    name: String,
}

pub async fn create_partition(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<PartitionBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = body.into_inner().name;
    let created = name.clone();
    blocking(&state.hsm, move |h| h.create_partition(&session, &created)).await?;
    Ok(HttpResponse::Created().json(json!({ "partition": name })))
}

pub async fn list_partitions(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let names = blocking(&state.hsm, move |h| h.list_partitions(&session)).await?;
    Ok(HttpResponse::Ok().json(names))
}
