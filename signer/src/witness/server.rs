//! The witness's HTTP server: `POST /add-checkpoint` (C2SP tlog-witness) on plain HTTP.

use std::sync::Arc;

use actix_web::{web, App, HttpResponse, HttpServer};
use anyhow::{Context, Result};
use kagi_tlog::witness::WitnessAnswer;

use super::{Witness, MAX_BODY};

/// The check-and-save runs on the connection's own worker thread, blocking it through the
/// commit's fsync. A witness answers one log's requests one at a time anyway (each names the
/// size the previous one saved, and the store's lock serializes them), so a hand-off to the
/// blocking pool bought no concurrency, only two more thread wake-ups per request.
async fn add_checkpoint(w: web::Data<Witness>, body: web::Bytes) -> HttpResponse {
    respond(&w.add_checkpoint(&body))
}

fn respond(a: &WitnessAnswer) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(a.status())
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .content_type(a.content_type())
        .insert_header(("Cache-Control", "no-store"))
        .body(a.body())
}

async fn not_found() -> HttpResponse {
    respond(&WitnessAnswer::Refused {
        status: 404,
        message: "a kagi witness answers POST /add-checkpoint (C2SP tlog-witness) only".into(),
    })
}

/// Serve `w` on `listen` until stopped (SIGINT/SIGTERM); `on_listening` gets the bound
/// addresses once the socket is open.
pub fn serve(
    w: Witness,
    listen: &str,
    on_listening: impl FnOnce(&[std::net::SocketAddr]),
) -> Result<()> {
    let data = web::Data::from(Arc::new(w));
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .route("/add-checkpoint", web::post().to(add_checkpoint))
                .default_service(web::to(not_found))
        })
        .bind(listen)
        .with_context(|| {
            format!("cannot listen on {listen}: pass --listen HOST:PORT with a free port on this machine")
        })?;
        on_listening(&server.addrs());
        server.run().await.context("the witness server stopped")
    })
}
