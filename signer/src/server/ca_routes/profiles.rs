//! Certificate profiles: `GET /api/v1/profiles` (built-in and the caller's partition's own),
//! `GET /api/v1/profiles/{name}`, and `POST /api/v1/profiles`, which adds a profile or replaces
//! a custom one of the same name (officers; behind the quorum like a CA's creation).

use actix_web::{web, HttpResponse};
use kagi_ca::profile::ProfileSpec;
use kagi_ca::CaError;
use kagi_hsm_core::Gated;
use serde::Deserialize;
use serde_json::json;

use crate::server::auth::Caller;
use crate::server::handler::{audit_refusal, blocking_with_state, pending, ApiResult};
use crate::server::state::AppState;

pub async fn list_profiles(caller: Caller, state: web::Data<AppState>) -> ApiResult {
    let Caller(session) = caller;
    let list = blocking_with_state(&state, move |st| {
        Ok(st.pki.list_profiles(&st.hsm, session.partition())?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(list))
}

pub async fn get_profile(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> ApiResult {
    let Caller(session) = caller;
    let name = path.into_inner();
    let entry = blocking_with_state(&state, move |st| {
        st.pki
            .list_profiles(&st.hsm, session.partition())?
            .into_iter()
            .find(|p| p.spec.name == name)
            .ok_or_else(|| CaError::UnknownProfile(name.chars().take(64).collect()).into())
    })
    .await?;
    Ok(HttpResponse::Ok().json(entry))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetProfileBody {
    /// The profile, in the fields of `ca/profiles/builtin.toml`.
    spec: serde_json::Value,
    /// The id of an approved request, when the policy's quorum asked for one.
    #[serde(default)]
    approval: Option<String>,
}

/// `POST /api/v1/profiles`: 201 added, 200 replaced, 202 waiting for the quorum.
pub async fn set_profile(
    caller: Caller,
    state: web::Data<AppState>,
    body: web::Json<SetProfileBody>,
) -> ApiResult {
    let Caller(session) = caller;
    let body = body.into_inner();
    let spec = serde_json::from_value::<ProfileSpec>(body.spec)
        .map_err(|e| CaError::BadRequest(format!("the profile spec: {e}")));
    let spec = audit_refusal(&state, &session, "ca.profile_set", spec).await?;
    let sess = session.clone();
    let result = blocking_with_state(&state, move |st| {
        Ok(st
            .pki
            .set_profile(&st.hsm, &sess, spec, body.approval.as_deref())?)
    })
    .await;
    match audit_refusal(&state, &session, "ca.profile_set", result).await? {
        Gated::Pending(p) => Ok(pending(p)),
        Gated::Done(set) => {
            let status = if set.replaced { "replaced" } else { "added" };
            let body = json!({ "status": status, "profile": set.entry });
            Ok(if set.replaced {
                HttpResponse::Ok().json(body)
            } else {
                HttpResponse::Created().json(body)
            })
        }
    }
}
