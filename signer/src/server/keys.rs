//! `/api/v1/keys`: create, import, read, destroy, limit and export keys.

use actix_web::{web, HttpResponse};
use base64::Engine;
use kagi_hsm_core::{Algorithm, Gated, KeySpec, Operation};
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{
    audit_refusal, blocking, blocking_with_state, gated, parse_time, pending, ApiResult,
};
use super::state::AppState;
use crate::pem::public_key_pem;

/// The import routes share the `/keys/{name}` space, so no key may take their names.
const RESERVED_KEY_NAMES: [&str; 2] = ["import", "import-key"];

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
    /// End of the verification period (RFC 3339).
    #[serde(default)]
    verify_until: Option<String>,
    #[serde(default)]
    operations: Option<Vec<String>>,
    #[serde(default)]
    exportable_under_wrap: bool,
    #[serde(default)]
    trusted: bool,
    /// Import only: the key wrapped to the partition's import key, base64.
    #[serde(default)]
    wrapped: Option<String>,
    /// Per-key authorization: every use needs the key's own password.
    #[serde(default)]
    key_auth: bool,
    /// With `key_auth`: the key's password (or send it in the Kagi-Key-Auth header).
    #[serde(default)]
    key_password: Option<String>,
    /// What the usage limit counts across rotations: "name" (default) or "version".
    #[serde(default)]
    limit_per: Option<String>,
}

impl KeyBody {
    fn spec(&self) -> Result<KeySpec, ApiError> {
        if RESERVED_KEY_NAMES.contains(&self.name.as_str()) {
            return Err(ApiError::new(
                Code::ReservedName,
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
        spec.verify_until = self
            .verify_until
            .as_deref()
            .map(|t| parse_time("verify_until", t))
            .transpose()?;
        if let Some(ops) = &self.operations {
            spec.operations = ops
                .iter()
                .map(|o| Operation::from_str(o))
                .collect::<Result<_, _>>()?;
        }
        spec.exportable_under_wrap = self.exportable_under_wrap;
        spec.trusted = self.trusted;
        spec.key_auth = self.key_auth;
        spec.limit_per_version = match self.limit_per.as_deref() {
            None | Some("name") => false,
            Some("version") => true,
            Some(other) => {
                return Err(ApiError::new(
                    Code::BadRequest,
                    format!(
                        "limit_per '{}' is neither 'name' nor 'version'",
                        other.chars().take(32).collect::<String>()
                    ),
                ))
            }
        };
        Ok(spec)
    }
}

/// The spec of a key from the console's create form (name, algorithm, usage limit, end of
/// validity, exportability) as the API would make it: the same reserved names and parsing.
pub(super) fn spec_of(
    name: &str,
    alg: &str,
    usage_limit: Option<i64>,
    not_after: Option<String>,
    exportable_under_wrap: bool,
) -> Result<KeySpec, ApiError> {
    KeyBody {
        name: name.to_string(),
        alg: alg.to_string(),
        usage_limit,
        not_before: None,
        not_after,
        verify_until: None,
        operations: None,
        exportable_under_wrap,
        trusted: false,
        wrapped: None,
        key_auth: false,
        key_password: None,
        limit_per: None,
    }
    .spec()
}

pub async fn create_key(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<KeyBody>,
) -> ApiResult {
    let mut body = body.into_inner();
    let session = super::auth::with_key_password(caller.0, body.key_password.take())?;
    let checked = match body.wrapped {
        Some(_) => Err(ApiError::new(
            Code::BadRequest,
            "'wrapped' belongs to POST /api/v1/keys/import, not to key creation",
        )),
        None => body.spec(),
    };
    let spec = audit_refusal(&state, &session, "key.generate", checked).await?;
    let info = blocking(&state.hsm, move |h| h.create_key(&session, &spec)).await?;
    Ok(HttpResponse::Created().json(info))
}

pub async fn import_key(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<KeyBody>,
) -> ApiResult {
    let mut body = body.into_inner();
    let session = super::auth::with_key_password(caller.0, body.key_password.take())?;
    let checked = body.spec().and_then(|spec| {
        let wrapped = body
            .wrapped
            .as_deref()
            .ok_or_else(|| ApiError::new(Code::BadRequest, "'wrapped' (base64) is required"))?;
        let wrapped = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| ApiError::new(Code::BadBase64, "'wrapped' is not valid base64"))?;
        Ok((spec, wrapped))
    });
    let (spec, wrapped) = audit_refusal(&state, &session, "key.import", checked).await?;
    let info = blocking(&state.hsm, move |h| h.import_key(&session, &spec, &wrapped)).await?;
    Ok(HttpResponse::Created().json(info))
}

/// Body of `PUT /api/v1/keys/{name}/key-auth`: the new password; the current one comes as
/// `key_password` or in the Kagi-Key-Auth header.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAuthChange {
    #[serde(default)]
    key_password: Option<String>,
    new_key_password: String,
}

/// `PUT /api/v1/keys/{name}/key-auth`: change a key's own password, given the current one.
pub async fn change_key_auth(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<KeyAuthChange>,
) -> ApiResult {
    let name = path.into_inner();
    let KeyAuthChange {
        key_password,
        new_key_password,
    } = body.into_inner();
    let session = super::auth::with_key_password(caller.0, key_password)?;
    let new = kagi_hsm_core::KeyAuth::new(new_key_password)?;
    let info = blocking(&state.hsm, move |h| {
        h.change_key_auth(&session, &name, &new)
    })
    .await?;
    Ok(HttpResponse::Ok().json(info))
}

/// `?name=` or `?id=` narrow the list to the one key of that name or id (an empty list when
/// there is none): a PKCS#11 search by CKA_LABEL or CKA_ID then reads one row, not the whole
/// partition. With them, `certificate=true` adds each key's current certificate.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFilter {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    id: Option<String>,
    /// With `name` or `id`: each key also carries `certificate`, the PEM of its current
    /// code-signing certificate (null when it has none), so a PKCS#11 search that may want
    /// the certificate object costs one call.
    #[serde(default)]
    certificate: bool,
    /// A page of at most `limit` keys in label order (default [`KEY_PAGE`], at most 10,000);
    /// a full page answers a `Link` header (rel="next") with the cursor of the next one.
    #[serde(default)]
    limit: Option<i64>,
    /// The cursor: keys whose label sorts after this one.
    #[serde(default)]
    after: Option<String>,
}

/// Keys per page of `GET /api/v1/keys` when the caller gives no `limit`.
pub const KEY_PAGE: i64 = 100;

pub async fn list_keys(
    caller: Caller,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> ApiResult {
    let Caller(session) = caller;
    // Read here rather than as an extractor, so a caller without a valid credential gets the
    // 401 (and counts as a failed login) whatever query string it sends.
    let KeyFilter {
        name,
        id,
        certificate,
        limit,
        after,
    } = web::Query::<KeyFilter>::from_query(req.query_string())
        .map_err(|e| ApiError::new(Code::BadQuery, format!("invalid query string: {e}")))?
        .into_inner();
    if certificate && name.is_none() && id.is_none() {
        return Err(ApiError::new(
            Code::BadQuery,
            "certificate=true reads one key's certificate: give name= or id= too",
        ));
    }
    if (limit.is_some() || after.is_some()) && (name.is_some() || id.is_some()) {
        return Err(ApiError::new(
            Code::BadQuery,
            "limit= and after= page the whole list: leave out name= and id=",
        ));
    }
    // The whole list comes a page at a time, as certificates do: a partition of 10,000 keys
    // answered in one response took tens of milliseconds and grows with every key.
    let limit = match (&name, &id) {
        (None, None) => Some(limit.unwrap_or(KEY_PAGE).clamp(1, 10_000)),
        _ => None,
    };
    let for_certificates = session.clone();
    let keys = blocking(&state.hsm, move |h| {
        let one = match (name, id) {
            (None, None) => return h.list_keys_after(&session, after.as_deref(), limit),
            (Some(name), None) => match h.key_info(&session, &name) {
                Ok(info) => Some(info),
                Err(kagi_hsm_core::HsmError::KeyNotFound(_)) => None,
                Err(e) => return Err(e),
            },
            (None, Some(id)) => h.key_info_by_id(&session, &id)?,
            // Both given: the key must have that name and that id.
            (Some(name), Some(id)) => h
                .key_info_by_id(&session, &id)?
                .filter(|info| info.label == name),
        };
        Ok(one.into_iter().collect::<Vec<_>>())
    })
    .await?;
    if !certificate {
        let mut resp = HttpResponse::Ok();
        if let (Some(limit), Some(last)) = (limit, keys.last()) {
            if keys.len() as i64 == limit {
                let next = format!(
                    "</api/v1/keys?limit={limit}&after={}>; rel=\"next\"",
                    kagi_web_ui::views::encode_query(&last.label)
                );
                resp.insert_header(("Link", next));
            }
        }
        return Ok(resp.json(keys));
    }
    let with_certificates = blocking_with_state(&state, move |st| {
        keys.into_iter()
            .map(|info| {
                let pem = st
                    .pki
                    .key_certificate(&st.hsm, &for_certificates, &info.label)?
                    .and_then(|kc| kagi_ca::x509::pem("CERTIFICATE", &kc.record.der).ok());
                let mut v = serde_json::to_value(&info).map_err(|e| {
                    ApiError::new(Code::InternalError, format!("key '{}': {e}", info.label))
                })?;
                v["certificate"] = pem.map_or(serde_json::Value::Null, serde_json::Value::from);
                Ok(v)
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(HttpResponse::Ok().json(with_certificates))
}

pub async fn get_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let info = blocking(&state.hsm, move |h| h.key_details(&session, &name)).await?;
    Ok(HttpResponse::Ok().json(info))
}

fn pem_response(spki_der: &[u8]) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(public_key_pem(spki_der))
}

/// `?version=N`: an earlier version of a rotated key (its public key checks the signatures
/// it made before the rotation).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionQuery {
    #[serde(default)]
    version: Option<i64>,
}

pub async fn public_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    req: actix_web::HttpRequest,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    // Read here rather than as an extractor, so a caller without a valid credential gets the
    // 401 whatever query string it sends.
    let VersionQuery { version } = web::Query::<VersionQuery>::from_query(req.query_string())
        .map_err(|e| ApiError::new(Code::BadQuery, format!("invalid query string: {e}")))?
        .into_inner();
    let info = blocking(&state.hsm, move |h| match version {
        Some(v) => h.key_version_info(&session, &name, v),
        None => h.key_info(&session, &name),
    })
    .await?;
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
        kagi_hsm_core::Gated::Done(wrapped) => HttpResponse::Ok().json(json!({
            "status": "done",
            "wrapped": base64::engine::general_purpose::STANDARD.encode(wrapped),
            "mechanism": kagi_hsm_core::WRAP_MECHANISM,
        })),
        // Under a quorum: the requester collects the wrapped key from the approved request.
        kagi_hsm_core::Gated::Pending(req) => pending(req),
    })
}

// ------------------------------------------------------------------ gated key changes

pub async fn destroy_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let label = name.clone();
    let g = blocking(&state.hsm, move |h| h.destroy_key(&session, &label)).await?;
    Ok(match g {
        Gated::Done(()) => HttpResponse::Ok().json(json!({ "status": "done", "destroyed": name })),
        pending => gated(pending),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    /// `null`: unlimited.
    usage_limit: Option<i64>,
}

pub async fn set_usage_limit(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<LimitBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let limit = body.into_inner().usage_limit;
    let g = blocking(&state.hsm, move |h| {
        h.set_usage_limit(&session, &name, limit)
    })
    .await?;
    Ok(gated(g))
}

/// A change of a key's state that answers the key: suspend, resume, deactivate.
async fn change_state(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    change: fn(
        &kagi_hsm_core::Hsm,
        &kagi_hsm_core::Session,
        &str,
    ) -> kagi_hsm_core::Result<kagi_hsm_core::KeyInfo>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let info = blocking(&state.hsm, move |h| change(h, &session, &name)).await?;
    Ok(HttpResponse::Ok().json(info))
}

/// `POST /api/v1/keys/{name}/suspend`: the key signs nothing until resumed.
pub async fn suspend_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    change_state(caller, state, name, kagi_hsm_core::Hsm::suspend_key).await
}

/// `POST /api/v1/keys/{name}/resume`: a suspended key signs again.
pub async fn resume_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    change_state(caller, state, name, kagi_hsm_core::Hsm::resume_key).await
}

/// `POST /api/v1/keys/{name}/deactivate`: the key's signing period ends now, for good; it
/// still verifies.
pub async fn deactivate_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    change_state(caller, state, name, kagi_hsm_core::Hsm::deactivate_key).await
}

/// `POST /api/v1/keys/{name}/rotate`: a new version under the same name; the old one is
/// deactivated in the same audited change. When the old version had a current code-signing
/// certificate, the new one gets its own from the same CA with the same subject (the old
/// certificate stays valid: its key is retired, not compromised). Answers `{"key": the new
/// version, "certificate": the re-issued certificate or null}`.
pub async fn rotate_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let answer = blocking_with_state(&state, move |st| {
        // Read before the rotation: afterwards the name means the new version.
        let before = st.hsm.key_info(&session, &name)?;
        let info = match st.hsm.rotate_key(&session, &name)? {
            Gated::Done(info) => info,
            // A per-version limit under a quorum: the approvers decide; once the rotation is
            // approved and done, 'kagi key certify' gives the new version its certificate.
            Gated::Pending(request) => return Ok(Err(request)),
        };
        // The rotation is done and durable; a certificate that cannot be re-issued now
        // (its CA revoked meanwhile, say) is said in the answer, and 'kagi key certify'
        // makes one later, rather than undoing the rotation.
        let issued = match st.pki.recertify_rotated(
            &st.hsm,
            &session,
            &name,
            &before.public_key_der,
        ) {
            Ok(issued) => issued.map(|i| {
                json!({
                    "serial": i.record.serial,
                    "ca": i.record.ca_name,
                    "subject": i.record.subject,
                    "not_after": i.record.not_after,
                })
            }),
            Err(e) => {
                log::warn!("key '{name}' rotated, its certificate not re-issued: {e}");
                Some(json!({
                    "error": format!("the key was rotated, but its code-signing certificate could not be re-issued ({e}): run 'kagi key certify {name}'"),
                }))
            }
        };
        Ok(Ok((info, issued)))
    })
    .await?;
    Ok(match answer {
        Ok((info, issued)) => {
            HttpResponse::Ok().json(json!({ "key": info, "certificate": issued }))
        }
        Err(request) => pending(request),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompromiseBody {
    /// Why the key is compromised: kept in the audit log.
    reason: String,
}

/// `POST /api/v1/keys/{name}/compromise`: the key signs and verifies nothing more (202 with an
/// approval request under a quorum).
pub async fn compromise_key(
    caller: Caller,
    state: web::Data<AppState>,
    name: web::Path<String>,
    body: web::Json<CompromiseBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = name.into_inner();
    let reason = body.into_inner().reason;
    let g = blocking_with_state(&state, move |st| {
        let g = st.hsm.compromise_key(&session, &name, &reason)?;
        if matches!(g, Gated::Done(_)) {
            // The compromise revoked the key's certificates: publish every live CA's CRL
            // anew now rather than at its next refresh (OCSP answers from the log at once).
            for ca in st.hsm.list_cas()?.iter().filter(|c| c.revoked_at.is_none()) {
                st.pki.regenerate_crl(&st.hsm, &ca.name)?;
            }
        }
        Ok(g)
    })
    .await?;
    Ok(gated(g))
}
