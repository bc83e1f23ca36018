//! `kagi-verify`: kagi's verifier for relying parties, with no server and no store. It runs the
//! code behind `kagi verify` and `kagi log`, and prints the same reports.
#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::{Parser, Subcommand};
use kagi_verify::client::{Client, ClientError};
use kagi_verify::{LogCommand, Service, VerifyArgs};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "kagi-verify",
    version,
    about = "Verify kagi signatures, Sigstore bundles and transparency-log proofs, offline from the service's word",
    after_help = "Reads KAGI_URL (default https://127.0.0.1:8443) and KAGI_CA (default ./kagi-data/tls-ca.pem) \
to fetch what a signature does not carry; KAGI_TOKEN for 'log entry' (entries are private: an auditor's \
token, or that of the identity the entry names) and 'log verify's full recomputation."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a raw, CMS or Sigstore signature: signature, chain to kagi's root, and the
    /// transparency-log proof 'kagi sign' saved beside it (SIG.tlog.json).
    Verify(Box<VerifyArgs>),
    /// Check the transparency log: checkpoints, consistency, inclusion.
    #[command(subcommand)]
    Log(LogCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A signature with its log proof, a pinned --log-key and --ca-file needs no service: the
    // client's setup error only matters once something has to be fetched.
    let service: Box<dyn Service> = match Client::from_env() {
        Ok(client) => Box::new(client),
        Err(e) => Box::new(Unreachable(e)),
    };
    let result = match cli.command {
        Command::Verify(args) => kagi_verify::signature::run(service.as_ref(), &args),
        Command::Log(cmd) => kagi_verify::log::run(service.as_ref(), cmd, false),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            // The same report as kagi's: `error: <code>: <message>` for the service's answers.
            match err.downcast_ref::<ClientError>() {
                Some(api) => eprintln!("error: {}: {}", api.code(), api.message()),
                None => eprintln!("error: {err:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// No service configured (no KAGI_CA, a bad KAGI_URL): fine until a check needs to fetch
/// something, which then fails with the setup error.
struct Unreachable(ClientError);

impl Service for Unreachable {
    fn get_text(&self, _path: &str) -> anyhow::Result<String> {
        Err(self.error())
    }

    fn get_json(&self, _path: &str) -> anyhow::Result<serde_json::Value> {
        Err(self.error())
    }

    fn post_json(
        &self,
        _path: &str,
        _body: &serde_json::Value,
    ) -> anyhow::Result<serde_json::Value> {
        Err(self.error())
    }

    fn has_credential(&self) -> bool {
        false
    }
}

impl Unreachable {
    fn error(&self) -> anyhow::Error {
        ClientError::new(self.0.code(), self.0.message()).into()
    }
}

/// The reader of our output went away (`kagi-verify log entry 3 | head`): not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
