//! `kagi log ...`: the transparency log checked from the client side, by kagi-verify's code
//! (signatures, proofs and consistency verified with the log's key, not the service's word).

use anyhow::Result;

use crate::cli::LogCommand;
use crate::client::Client;

pub fn run(cmd: LogCommand) -> Result<()> {
    let client = Client::from_env()?;
    kagi_verify::log::run(&client, cmd, crate::commands::json_mode())
}
