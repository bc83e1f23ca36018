//! `kagi`: the kagi service (`kagi serve`) and its command-line client, in one binary.
#![forbid(unsafe_code)]
// The OpenAPI document is one `json!` literal, deeper than the default limit allows.
#![recursion_limit = "256"]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cli;
mod client;
mod commands;
mod config;
mod digest_file;
mod instance;
mod log_cli;
mod pem;
mod secret_files;
mod server;
mod sigstore;
mod syslog;
mod tls;
mod verify_cli;
mod witness;
mod witness_client;

use clap::Parser;
use std::process::ExitCode;

/// The exit codes, as `kagi --help` and the README list them: 0 done, 1 error, 2 usage (clap's),
/// 3 the change waits for an approval quorum.
const EXIT_PENDING_APPROVAL: u8 = 3;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The service logs what it does; client commands print only their result and errors.
    let default_level = match cli.command {
        cli::Command::Serve(_) | cli::Command::Witness(cli::WitnessCommand::Serve(_)) => "info",
        _ => "warn",
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level));
    // rustls warns once per handshake whose client sends an IP address as SNI, and then
    // carries on without SNI as RFC 6066 asks: nothing for an operator to act on, so that
    // module logs errors only, unless RUST_LOG names rustls itself (someone debugging TLS).
    if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("rustls")) {
        logger.filter_module("rustls::msgs::handshake", log::LevelFilter::Error);
    }
    logger.init();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        // The request was printed already; 3 tells a script it is neither done nor failed.
        Err(err) if err.downcast_ref::<commands::PendingApproval>().is_some() => {
            ExitCode::from(EXIT_PENDING_APPROVAL)
        }
        Err(err) => {
            report(&err);
            ExitCode::FAILURE
        }
    }
}

/// Prints `error: <code>: <message>` so scripts can match on the stable code.
fn report(err: &anyhow::Error) {
    if let Some(api) = err.downcast_ref::<client::ClientError>() {
        eprintln!("error: {}: {}", api.code(), api.message());
    } else {
        eprintln!("error: {err:#}");
    }
}

/// The reader of our output went away (`kagi audit export | head`): not an error of ours.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
