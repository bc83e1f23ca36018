//! `POST /api/v1/sign`: the policy decides, then a raw, CMS or Sigstore signature of a digest.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use kagi_hsm_core::{Algorithm, DigestAlg, RsaPadding, SignRequest};
use kagi_policy::{Action, Resource};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{audited, blocking, policy_denied, ApiResult};
use super::policy_gate::{decide, Verdict};
use super::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    /// Label of a key held in the HSM ...
    #[serde(default)]
    key: Option<String>,
    /// With `key`: the id the caller knows the key by; a key of that name with another id
    /// (the first destroyed, the name reused) answers 404 key_not_found.
    #[serde(default)]
    key_id: Option<String>,
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
    /// The password of a key with per-key authorization (or the Kagi-Key-Auth header).
    #[serde(default)]
    key_password: Option<String>,
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
    /// This signature's entry in the transparency log (/log/entries/N: readable by this
    /// identity and auditors).
    tlog_index: Option<i64>,
    /// sigstore: the Sigstore bundle (v0.3), and what to verify it with.
    #[serde(skip_serializing_if = "Option::is_none")]
    bundle: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<String>,
    /// Which version of the key signed (`kagi key public NAME --version N` has its public
    /// key); absent for a key the caller brought wrapped.
    #[serde(skip_serializing_if = "Option::is_none")]
    key_version: Option<i64>,
}

impl SignResponse {
    fn new(signature: &[u8], key: String, signed: &kagi_hsm_core::Signed) -> SignResponse {
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
            key_version: signed.key_version,
        }
    }
}

/// The signature formats the service makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignFormat {
    /// The bare signature.
    Raw,
    /// Detached CMS SignedData with the key's certificate (RFC 5652), optionally timestamped.
    Cms,
    /// A Sigstore bundle with a certificate naming the caller and a log entry.
    Sigstore,
}

impl SignFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            SignFormat::Raw => "raw",
            SignFormat::Cms => "cms",
            SignFormat::Sigstore => "sigstore",
        }
    }

    /// The format a request names (raw when it names none), or why it cannot have it.
    fn of(body: &SignBody) -> Result<SignFormat, ApiError> {
        let format = match body.format.as_deref().unwrap_or("raw") {
            "raw" => SignFormat::Raw,
            "cms" => SignFormat::Cms,
            "sigstore" => SignFormat::Sigstore,
            other => {
                return Err(ApiError::new(
                    Code::UnsupportedFormat,
                    format!(
                    "signature format '{}' is not supported: use \"raw\", \"cms\" or \"sigstore\"",
                    other.chars().take(32).collect::<String>()
                ),
                ))
            }
        };
        let refusal = match format {
            SignFormat::Raw if body.timestamp => {
                "'timestamp' goes with format \"cms\" (a raw signature has nowhere to carry it)"
            }
            SignFormat::Cms if body.wrapped_key.is_some() => {
                "format \"cms\" needs a key in the HSM with a certificate ('kagi key certify'), not a wrapped key"
            }
            SignFormat::Sigstore if body.wrapped_key.is_some() => {
                "format \"sigstore\" needs a key in the HSM (its certificate names the caller), not a wrapped key"
            }
            _ => return Ok(format),
        };
        Err(ApiError::new(Code::BadRequest, refusal))
    }
}

fn sign_request(body: &SignBody) -> Result<(SignFormat, SignRequest), ApiError> {
    let format = SignFormat::of(body)?;
    let digest = hex::decode(body.digest.trim()).map_err(|_| {
        ApiError::new(
            Code::BadDigest,
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
    Ok((
        format,
        SignRequest {
            digest_alg,
            digest,
            padding,
        },
    ))
}

/// Policies name a key kept outside the HSM by this resource id.
pub const WRAPPED_KEY_RESOURCE: &str = "(wrapped)";

/// `POST /api/v1/sign`: [`sign_digest`], its answer counted for `/metrics`.
pub async fn sign(
    caller: Caller,
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<SignBody>,
) -> ApiResult {
    let partition = caller.0.partition().to_string();
    let (key, format) = (body.key.clone(), body.format.clone());
    let result = sign_digest(caller, state.clone(), http, body).await;
    state
        .metrics
        .signature(&partition, key.as_deref(), format.as_deref(), &result);
    result
}

/// The policy's decision, then the signature in the format asked for.
async fn sign_digest(
    caller: Caller,
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Json<SignBody>,
) -> ApiResult {
    let mut body = body.into_inner();
    let session = super::auth::with_key_password(caller.0, body.key_password.take())?;
    let resource = match (&body.key, &body.wrapped_key) {
        (Some(label), None) => label.clone(),
        (None, Some(_)) if body.key_id.is_none() => WRAPPED_KEY_RESOURCE.to_string(),
        (None, Some(_)) => {
            let e = ApiError::new(
                Code::BadRequest,
                "'key_id' names a key held in the HSM: give it with 'key', not with 'wrapped_key'",
            );
            return Err(audited(&state, &session, "key.use_wrapped", e).await);
        }
        _ => {
            let e = ApiError::new(
                Code::BadRequest,
                "name exactly one of 'key' (a key in the HSM) or 'wrapped_key' (base64, with 'alg')",
            );
            return Err(audited(&state, &session, "key.use", e).await);
        }
    };
    let format = body.format.clone().unwrap_or_else(|| "raw".into());
    // The policy decides first, so a denial never depends on what this build supports.
    let ip = http.peer_addr().map(|a| a.ip());
    let verdict = match state.policy.fresh() {
        Some(active) => decide(
            &active,
            &session,
            Action::Sign,
            &Resource::Key(&resource),
            Some(&format),
            ip,
        ),
        None => {
            let (st, sess, res, fmt) = (
                state.clone(),
                session.clone(),
                resource.clone(),
                format.clone(),
            );
            web::block(move || -> Result<Verdict, ApiError> {
                Ok(decide(
                    &st.policy.active(&st.hsm)?,
                    &sess,
                    Action::Sign,
                    &Resource::Key(&res),
                    Some(&fmt),
                    ip,
                ))
            })
            .await??
        }
    };
    if !verdict.decision.allowed {
        return Err(policy_denied(
            &state,
            &session,
            "sign",
            &format!("key:{resource}"),
            &format,
            &verdict,
        )
        .await);
    }
    let (sign_format, req) = match sign_request(&body) {
        Ok(v) => v,
        Err(e) => return Err(audited(&state, &session, "key.use", e).await),
    };
    let detail = json!({
        "format": sign_format.as_str(), "decision": "allow", "identity": session.name(),
        "kind": session.kind().as_str(), "policy_version": verdict.version, "policy_rule": verdict.decision.rule,
    });
    let quotas = verdict.quotas;
    if sign_format == SignFormat::Cms {
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
    if sign_format == SignFormat::Sigstore {
        let st = state.clone();
        let label = resource.clone();
        let timestamp = body.timestamp;
        let out = web::block(move || -> Result<_, ApiError> {
            Ok(crate::sigstore::Sigstore(&st.pki).sign(
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
    let key_id = body.key_id.clone();
    let signed = blocking(&state.hsm, move |h| {
        let key = match (&wrapped, &key_id) {
            (None, None) => kagi_hsm_core::SignKey::Stored(&resource),
            (None, Some(key_id)) => kagi_hsm_core::SignKey::StoredId {
                label: &resource,
                key_id,
            },
            (Some((algorithm, wrapped)), _) => kagi_hsm_core::SignKey::Wrapped {
                algorithm: *algorithm,
                wrapped,
            },
        };
        h.sign_op(
            &session,
            kagi_hsm_core::SignOp {
                key,
                request: &req,
                purpose: kagi_hsm_core::SignPurpose::Digest,
                quotas: &quotas,
                audit: detail,
                staging: kagi_hsm_core::Staging::KagiEntry,
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

fn wrapped_key_parts(wrapped: &str, alg: Option<&str>) -> Result<(Algorithm, Vec<u8>), ApiError> {
    let alg =
        alg.ok_or_else(|| ApiError::new(Code::BadRequest, "'alg' is required with 'wrapped_key'"))?;
    let alg = Algorithm::from_str(alg)?;
    let wrapped = base64::engine::general_purpose::STANDARD
        .decode(wrapped.trim())
        .map_err(|_| ApiError::new(Code::BadBase64, "'wrapped_key' is not valid base64"))?;
    Ok((alg, wrapped))
}
