//! The HTTPS service: routing, body limits and error handlers.
//!
//! One module per resource (`keys`, `sign`, `audit`, `identities`, `policies`, `approvals`,
//! `ca_routes`, `est`, `public`, `log_routes`, `sigstore_routes`, `system`); what their handlers
//! share is in `handler` (blocking calls, audited refusals, times, raw bodies), the state they
//! receive in `state`, the one error shape in `errors` and its codes in `error_codes`.

mod approvals;
mod audit;
mod auth;
mod ca_routes;
mod error_codes;
mod errors;
mod est;
mod handler;
mod health;
mod identities;
mod keys;
mod log_routes;
mod openapi;
mod policies;
mod policy_gate;
mod public;
mod rate_limit;
mod sign;
mod sigstore_routes;
mod state;
mod system;

use actix_web::{web, App, HttpServer};
use kagi_hsm_core::Hsm;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use handler::resource;
use kagi_ca::service::Pki;
use state::AppState;
pub use state::{AuthSettings, EstSettings};

/// JSON bodies above this are refused with 413 before they are parsed: every request body of
/// this API is small (a digest, a name, a wrapped key).
pub const JSON_LIMIT: usize = 64 * 1024;

/// How often CRLs are checked and regenerated when due (they are also made on revocation).
const CRL_CHECK_EVERY: Duration = Duration::from_secs(15 * 60);

/// How often closed failed-login windows are written to the audit log.
const FAILED_LOGIN_FLUSH_EVERY: Duration = Duration::from_secs(10);

/// Where the service listens.
pub struct Listeners {
    /// HTTPS: the API, EST, and the public CA routes.
    pub https: String,
    /// Plain HTTP for CRLs, CA certificates and OCSP only; `None` turns it off.
    pub public_http: Option<String>,
    /// Whether either listener serves log entry bodies without a credential.
    pub log_entries_public: bool,
}

/// Runs the service until it is stopped (Ctrl-C or SIGTERM). `on_listening` is called once the
/// sockets are bound, so what it announces is true.
#[allow(clippy::too_many_arguments)]
pub fn run(
    hsm: Hsm,
    pki: Arc<Pki>,
    est: EstSettings,
    auth: AuthSettings,
    signing_ca: String,
    open_tsa: bool,
    tls: rustls::ServerConfig,
    listen: &Listeners,
    on_listening: impl FnOnce(&[SocketAddr], &[SocketAddr]),
) -> std::io::Result<()> {
    let state = web::Data::new(AppState {
        hsm,
        policy: policy_gate::PolicyCache::default(),
        pki,
        est,
        signing_ca,
        login_limit: rate_limit::RateLimiter::new(rate_limit::Limits::logins(
            auth.failed_logins_per_source,
        )),
        share_limit: rate_limit::RateLimiter::new(rate_limit::Limits::shares()),
        log_entries_public: listen.log_entries_public,
        open_tsa,
        tsa_limit: rate_limit::RateLimiter::new(rate_limit::Limits::open_tsa()),
    });
    spawn_crl_refresher(state.clone());
    spawn_failed_login_flusher(state.clone());
    let https = listen.https.clone();
    let public_http = listen.public_http.clone();
    actix_web::rt::System::new().block_on(async move {
        let st = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(st.clone())
                .configure(configure)
                .default_service(web::to(errors::not_found))
        })
        .on_connect(auth::remember_client_certificate)
        .bind_rustls_0_23(https.as_str(), tls)?;
        let public = match &public_http {
            Some(addr) => {
                let st = state.clone();
                Some(
                    HttpServer::new(move || {
                        App::new()
                            .app_data(st.clone())
                            .configure(public::configure)
                            .configure(log_routes::configure_public)
                            .default_service(web::to(errors::not_found))
                    })
                    .workers(2)
                    .bind(addr.as_str())?,
                )
            }
            None => None,
        };
        let public_addrs = public.as_ref().map(|p| p.addrs()).unwrap_or_default();
        on_listening(&server.addrs(), &public_addrs);
        if let Some(p) = public {
            // It stops with the main server: both answer the same Ctrl-C/SIGTERM.
            actix_web::rt::spawn(async move {
                if let Err(e) = p.run().await {
                    log::error!("the public HTTP listener stopped: {e}");
                }
            });
        }
        server.run().await
    })
}

/// Keeps CRLs fresh in the background while the HSM is unsealed.
fn spawn_crl_refresher(state: web::Data<AppState>) {
    let spawned = std::thread::Builder::new()
        .name("kagi-crl".into())
        .spawn(move || loop {
            if !state.hsm.is_sealed() {
                state.pki.refresh_crls(&state.hsm);
            }
            std::thread::sleep(CRL_CHECK_EVERY);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the CRL refresher ({e}); CRLs are still made on demand");
    }
}

/// Writes the failed-login tallies whose window has closed, so an attack that stops is still
/// recorded within a window and this interval.
fn spawn_failed_login_flusher(state: web::Data<AppState>) {
    let spawned = std::thread::Builder::new()
        .name("kagi-auth-audit".into())
        .spawn(move || loop {
            std::thread::sleep(FAILED_LOGIN_FLUSH_EVERY.min(state.hsm.failed_login_window()));
            if !state.hsm.is_sealed() {
                if let Err(e) = state.hsm.flush_failed_logins(false) {
                    log::error!("could not write the failed-login audit records: {e}");
                }
            }
        });
    if let Err(e) = spawned {
        log::warn!(
            "cannot start the failed-login recorder ({e}); tallies are written on the next refused login"
        );
    }
}

fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(JSON_LIMIT)
            // Bearer-token API, so no cookie-borne CSRF to guard against; accepting bodies
            // without the header spares curl users a confusing 415.
            .content_type_required(false)
            .error_handler(errors::json_error),
    )
    .app_data(web::QueryConfig::default().error_handler(errors::query_error))
    .app_data(web::PathConfig::default().error_handler(errors::path_error))
    .configure(public::configure)
    .configure(log_routes::configure)
    .configure(est::configure)
    .service(resource("/healthz").route(web::get().to(system::healthz)))
    .service(resource("/readyz").route(web::get().to(health::readyz)))
    .service(resource("/metrics").route(web::get().to(health::metrics)))
    .service(resource("/ui").route(web::get().to(system::ui)))
    .service(
        web::scope("/api/v1")
            .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
            .service(resource("/sys/unseal").route(web::post().to(system::unseal)))
            .service(resource("/sys/recover").route(web::post().to(system::recover)))
            .service(
                resource("/keys")
                    .route(web::get().to(keys::list_keys))
                    .route(web::post().to(keys::create_key)),
            )
            // Fixed paths before `/keys/{name}`, which would otherwise capture them.
            .service(resource("/keys/import-key").route(web::get().to(keys::import_wrapping_key)))
            .service(resource("/keys/import").route(web::post().to(keys::import_key)))
            .service(
                resource("/keys/{name}")
                    .route(web::get().to(keys::get_key))
                    .route(web::delete().to(keys::destroy_key)),
            )
            .service(resource("/keys/{name}/public").route(web::get().to(keys::public_key)))
            .service(
                resource("/keys/{name}/certificate")
                    .route(web::get().to(ca_routes::certificates::key_certificate))
                    .route(web::post().to(ca_routes::certificates::certify_key)),
            )
            .service(
                resource("/keys/{name}/export-wrapped").route(web::post().to(keys::export_wrapped)),
            )
            .service(resource("/sign").route(web::post().to(sign::sign)))
            .service(
                resource("/sigstore/trusted_root.json")
                    .route(web::get().to(sigstore_routes::trusted_root)),
            )
            .service(
                resource("/sigstore/client_trust_config.json")
                    .route(web::get().to(sigstore_routes::client_trust_config)),
            )
            .service(resource("/audit").route(web::get().to(audit::audit_records)))
            .service(resource("/audit/verify").route(web::post().to(audit::audit_verify)))
            .service(resource("/log/verify").route(web::post().to(log_routes::verify)))
            .service(resource("/audit/checkpoint").route(web::get().to(audit::audit_checkpoint)))
            .service(
                resource("/credentials")
                    .route(web::get().to(identities::list_credentials))
                    .route(web::post().to(identities::create_credential)),
            )
            .service(
                resource("/partitions")
                    .route(web::get().to(identities::list_partitions))
                    .route(web::post().to(identities::create_partition)),
            )
            .service(
                resource("/keys/{name}/usage-limit").route(web::put().to(keys::set_usage_limit)),
            )
            .service(
                resource("/identities")
                    .route(web::get().to(identities::list_credentials))
                    .route(web::post().to(identities::create_identity)),
            )
            .service(
                resource("/identities/{id}/revoke")
                    .route(web::post().to(identities::revoke_identity)),
            )
            .service(
                resource("/identities/{id}/unlock")
                    .route(web::post().to(identities::unlock_identity)),
            )
            .service(
                resource("/policies")
                    .route(web::get().to(policies::list_policies))
                    .route(web::post().to(policies::submit_policy)),
            )
            // Before `/policies/{version}`, which would otherwise capture it.
            .service(resource("/policies/active").route(web::get().to(policies::get_active_policy)))
            .service(resource("/policies/{version}").route(web::get().to(policies::get_policy)))
            .service(
                resource("/policies/{version}/activate")
                    .route(web::post().to(policies::activate_policy)),
            )
            .service(
                resource("/ca")
                    .route(web::get().to(ca_routes::list_cas))
                    .route(web::post().to(ca_routes::create_ca)),
            )
            .service(resource("/ca/{ca}").route(web::get().to(ca_routes::get_ca)))
            .service(resource("/ca/{ca}/revoke").route(web::post().to(ca_routes::revoke_ca)))
            .service(
                resource("/ca/{ca}/certificates")
                    .route(web::get().to(ca_routes::certificates::list_certificates)),
            )
            .service(
                resource("/ca/{ca}/profiles/{profile}/issue")
                    .route(web::post().to(ca_routes::issuance::issue)),
            )
            .service(
                resource("/ca/{ca}/profiles/{profile}/issue-batch")
                    .app_data(
                        web::JsonConfig::default()
                            .limit(ca_routes::issuance::BATCH_BODY_LIMIT)
                            .content_type_required(false)
                            .error_handler(errors::json_error),
                    )
                    .route(web::post().to(ca_routes::issuance::issue_batch)),
            )
            .service(
                resource("/profiles")
                    .route(web::get().to(ca_routes::profiles::list_profiles))
                    .route(web::post().to(ca_routes::profiles::set_profile)),
            )
            .service(
                resource("/profiles/{name}").route(web::get().to(ca_routes::profiles::get_profile)),
            )
            .service(
                resource("/certificates/{serial}")
                    .route(web::get().to(ca_routes::certificates::get_certificate)),
            )
            .service(
                resource("/certificates/{serial}/revoke")
                    .route(web::post().to(ca_routes::certificates::revoke_certificate)),
            )
            .service(resource("/approvals").route(web::get().to(approvals::list_approvals)))
            .service(resource("/approvals/{id}").route(web::get().to(approvals::get_approval)))
            .service(resource("/approvals/{id}/approve").route(web::post().to(approvals::approve)))
            .service(resource("/approvals/{id}/reject").route(web::post().to(approvals::reject))),
    );
}
