//! The HTTPS service: routing, body limits and error handlers.

mod auth;
mod errors;
mod governance;
mod openapi;
mod policy_gate;
mod routes;

use actix_web::{web, App, HttpServer};
use hsm_core::Hsm;
use std::net::SocketAddr;

/// JSON bodies above this are refused with 413 before they are parsed: every request body of
/// this API is small (a digest, a name, a wrapped key).
pub const JSON_LIMIT: usize = 64 * 1024;

pub struct AppState {
    pub hsm: Hsm,
    policy: policy_gate::PolicyCache,
}

/// Runs the service until it is stopped (Ctrl-C or SIGTERM). `on_listening` is called once the
/// socket is bound, so what it announces is true.
pub fn run(
    hsm: Hsm,
    tls: rustls::ServerConfig,
    listen: &str,
    on_listening: impl FnOnce(&[SocketAddr]),
) -> std::io::Result<()> {
    let state = web::Data::new(AppState {
        hsm,
        policy: policy_gate::PolicyCache::default(),
    });
    let listen = listen.to_string();
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(configure)
                .default_service(web::to(errors::not_found))
        })
        .on_connect(auth::remember_client_certificate)
        .bind_rustls_0_23(listen.as_str(), tls)?;
        on_listening(&server.addrs());
        server.run().await
    })
}

fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(errors::method_not_allowed))
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
    .service(resource("/healthz").route(web::get().to(routes::healthz)))
    .service(resource("/ui").route(web::get().to(routes::ui)))
    .service(
        web::scope("/api/v1")
            .service(resource("/openapi.json").route(web::get().to(openapi::serve)))
            .service(resource("/sys/unseal").route(web::post().to(routes::unseal)))
            .service(
                resource("/keys")
                    .route(web::get().to(routes::list_keys))
                    .route(web::post().to(routes::create_key)),
            )
            // Fixed paths before `/keys/{name}`, which would otherwise capture them.
            .service(resource("/keys/import-key").route(web::get().to(routes::import_wrapping_key)))
            .service(resource("/keys/import").route(web::post().to(routes::import_key)))
            .service(
                resource("/keys/{name}")
                    .route(web::get().to(routes::get_key))
                    .route(web::delete().to(governance::destroy_key)),
            )
            .service(resource("/keys/{name}/public").route(web::get().to(routes::public_key)))
            .service(
                resource("/keys/{name}/export-wrapped")
                    .route(web::post().to(routes::export_wrapped)),
            )
            .service(resource("/sign").route(web::post().to(routes::sign)))
            .service(resource("/audit").route(web::get().to(routes::audit_records)))
            .service(resource("/audit/verify").route(web::post().to(routes::audit_verify)))
            .service(resource("/audit/checkpoint").route(web::get().to(routes::audit_checkpoint)))
            .service(
                resource("/credentials")
                    .route(web::get().to(routes::list_credentials))
                    .route(web::post().to(routes::create_credential)),
            )
            .service(
                resource("/partitions")
                    .route(web::get().to(routes::list_partitions))
                    .route(web::post().to(routes::create_partition)),
            )
            .service(
                resource("/keys/{name}/usage-limit")
                    .route(web::put().to(governance::set_usage_limit)),
            )
            .service(
                resource("/identities")
                    .route(web::get().to(routes::list_credentials))
                    .route(web::post().to(governance::create_identity)),
            )
            .service(
                resource("/identities/{id}/revoke")
                    .route(web::post().to(governance::revoke_identity)),
            )
            .service(
                resource("/identities/{id}/unlock")
                    .route(web::post().to(governance::unlock_identity)),
            )
            .service(
                resource("/policies")
                    .route(web::get().to(governance::list_policies))
                    .route(web::post().to(governance::submit_policy)),
            )
            .service(resource("/policies/{version}").route(web::get().to(governance::get_policy)))
            .service(
                resource("/policies/{version}/activate")
                    .route(web::post().to(governance::activate_policy)),
            )
            .service(resource("/approvals").route(web::get().to(governance::list_approvals)))
            .service(resource("/approvals/{id}").route(web::get().to(governance::get_approval)))
            .service(resource("/approvals/{id}/approve").route(web::post().to(governance::approve)))
            .service(resource("/approvals/{id}/reject").route(web::post().to(governance::reject))),
    );
}
