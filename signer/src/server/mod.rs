//! The HTTPS service: routing, body limits and error handlers.
//!
//! One module per resource (`keys`, `sign`, `audit`, `identities`, `policies`, `approvals`,
//! `ca_routes`, `est`, `public`, `log_routes`, `sigstore_routes`, `system`, `health`,
//! `metrics`) and the console (`console`, HTML for people); every API route is one entry of the table in `routes`, which registers it and
//! documents it (`openapi`). What handlers share is in `handler` (blocking calls, audited
//! refusals, times, raw bodies), the state they receive in `state`, the one error shape in
//! `errors` and its codes in `error_codes`.

mod approvals;
mod audit;
mod auth;
mod ca_routes;
mod console;
mod error_codes;
mod errors;
mod est;
mod handler;
mod health;
mod identities;
mod keys;
mod log_routes;
mod metrics;
mod openapi;
mod policies;
mod policy_gate;
mod public;
mod rate_limit;
mod rollback;
mod routes;
mod sign;
mod sigstore_routes;
mod state;
mod system;

use actix_web::{web, App, HttpServer};
use kagi_hsm_core::Hsm;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
    syslog_collector: Option<String>,
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
        metrics: metrics::Metrics::new(),
        syslog_collector,
    });
    state.hsm.observe_commits(state.metrics.commit_observer());
    spawn_crl_refresher(state.clone());
    spawn_failed_login_flusher(state.clone());
    let https = listen.https.clone();
    let public_http = listen.public_http.clone();
    actix_web::rt::System::new().block_on(async move {
        let st = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(st.clone())
                .configure(routes::configure)
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
                            .configure(routes::configure_plain)
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
