//! Who may call: `/api/v1/credentials`, `/api/v1/partitions` and `/api/v1/identities`.

use actix_web::{web, HttpResponse};
use kagi_hsm_core::{Gated, IdentityKind, IdentitySpec, Role};
use serde::Deserialize;
use serde_json::json;
use std::str::FromStr;

use super::auth::Caller;
use super::error_codes::Code;
use super::errors::ApiError;
use super::handler::{audit_refusal, blocking, parse_time, pending, ApiResult};
use super::state::AppState;

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
    let roles = body
        .roles
        .iter()
        .map(|r| Role::from_str(r))
        .collect::<Result<Vec<_>, _>>();
    let roles = audit_refusal(&state, &session, "credential.create", roles).await?;
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

// ------------------------------------------------------------------ identities

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityBody {
    name: String,
    kind: String,
    #[serde(default)]
    roles: Option<Vec<String>>,
    /// RFC 3339.
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    partition: Option<String>,
    /// SHA-256 (hex) of a TLS client certificate that authenticates this identity too.
    #[serde(default)]
    client_cert_sha256: Option<String>,
    /// Under a quorum, the approved request that allows giving the administrator or officer
    /// role.
    #[serde(default)]
    approval: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// Under a quorum, the approved request that allows revoking an approver or an
    /// administrator.
    #[serde(default)]
    approval: Option<String>,
}

pub async fn create_identity(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<IdentityBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let kind = IdentityKind::from_str(&body.kind)?;
    // Machines sign; people run the HSM. Either can be given other roles explicitly.
    let roles = match &body.roles {
        Some(r) => r
            .iter()
            .map(|r| Role::from_str(r))
            .collect::<Result<Vec<_>, _>>()?,
        None => match kind {
            IdentityKind::Pipeline | IdentityKind::Line => vec![Role::User],
            IdentityKind::Person => vec![Role::Officer, Role::User],
        },
    };
    let expires_at = body
        .expires_at
        .as_deref()
        .map(|t| parse_time("expires_at", t))
        .transpose()?;
    let client_cert_sha256 = body
        .client_cert_sha256
        .as_deref()
        .map(|h| {
            hex::decode(h.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    ApiError::new(
                        Code::BadRequest,
                        "'client_cert_sha256' must be the 64 hex digits of the certificate's SHA-256",
                    )
                })
        })
        .transpose()?;
    let spec = IdentitySpec {
        client_cert_sha256,
        partition: body.partition,
        name: body.name,
        kind,
        roles,
        expires_at,
    };
    let approval = body.approval;
    let created = blocking(&state.hsm, move |h| {
        h.create_identity(&session, &spec, approval.as_deref())
    })
    .await?;
    match created {
        Gated::Done((info, token)) => Ok(HttpResponse::Created()
            .insert_header(("Cache-Control", "no-store"))
            .json(json!({ "identity": info, "token": token.as_str() }))),
        Gated::Pending(req) => Ok(pending(req)),
    }
}

pub async fn revoke_identity(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: Option<web::Json<RevokeBody>>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let approval = body.map(|b| b.into_inner()).unwrap_or_default().approval;
    let revoked = id.clone();
    let done = blocking(&state.hsm, move |h| {
        h.revoke_identity(&session, &revoked, approval.as_deref())
    })
    .await?;
    match done {
        Gated::Done(()) => Ok(HttpResponse::Ok().json(json!({ "revoked": id }))),
        Gated::Pending(req) => Ok(pending(req)),
    }
}

pub async fn unlock_identity(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let id = id.into_inner();
    let unlocked = id.clone();
    blocking(&state.hsm, move |h| {
        h.unlock_credential(&session, &unlocked)
    })
    .await?;
    Ok(HttpResponse::Ok().json(json!({ "unlocked": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    password: String,
}

/// A person sets their own console password with their token: no one else learns it.
pub async fn set_password(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<PasswordBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let password = zeroize::Zeroizing::new(body.into_inner().password);
    let name = session.name().to_string();
    blocking(&state.hsm, move |h| h.set_own_password(&session, &password)).await?;
    Ok(HttpResponse::Ok().json(json!({ "password_set": name })))
}
