//! `kagi verify`: the checks are kagi-verify's (the same code as the `kagi-verify` binary),
//! run here with `kagi`'s own HTTP client for what a signature does not carry.

use anyhow::Result;
use serde_json::Value;

use crate::cli::VerifyArgs;
use crate::client::Client;

pub use kagi_verify::signature::sidecar;

/// `kagi`'s client as the verifier's view of the service; its errors stay `ClientError`s, so
/// `kagi` reports them as `error: <code>: <message>` as before.
impl kagi_verify::Service for Client {
    fn get_text(&self, path: &str) -> Result<String> {
        Ok(Client::get_text(self, path)?)
    }

    fn get_json(&self, path: &str) -> Result<Value> {
        Ok(Client::get_json(self, path)?)
    }

    fn post_json(&self, path: &str, body: &Value) -> Result<Value> {
        Ok(Client::post_json(self, path, body)?)
    }
}

/// The entry, a checkpoint that includes it, and the inclusion proof, as JSON.
pub fn fetch_log_proof(client: &Client, index: i64) -> Result<String> {
    kagi_verify::signature::fetch_log_proof(client, index)
}

pub fn run(args: &VerifyArgs) -> Result<()> {
    let client = Client::from_env_without_token()?;
    kagi_verify::signature::run(&client, args)
}
