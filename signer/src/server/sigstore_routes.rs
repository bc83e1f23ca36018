//! Sigstore trust material, public like a CA certificate: what Sigstore clients need to verify
//! kagi's bundles offline.

use actix_web::{web, HttpResponse};

use super::handler::{blocking_with_state, ApiResult};
use super::state::AppState;

/// `GET /api/v1/sigstore/trusted_root.json`: the Sigstore TrustedRoot (CA chain, log key, CT
/// key, TSA chain).
pub async fn trusted_root(state: web::Data<AppState>) -> ApiResult {
    let root = blocking_with_state(&state, |st| {
        Ok(crate::sigstore::Sigstore(&st.pki).trusted_root(&st.hsm, &st.signing_ca)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(root))
}

/// `GET /api/v1/sigstore/client_trust_config.json`: the trusted root wrapped with a signing
/// config, the file `sigstore --trust-config` reads.
pub async fn client_trust_config(state: web::Data<AppState>) -> ApiResult {
    let config = blocking_with_state(&state, |st| {
        Ok(crate::sigstore::Sigstore(&st.pki).client_trust_config(&st.hsm, &st.signing_ca)?)
    })
    .await?;
    Ok(HttpResponse::Ok().json(config))
}
