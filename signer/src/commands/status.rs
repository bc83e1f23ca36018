//! `kagi status`: the service's readiness (`/readyz`) for people, with its witnesses; and
//! `kagi recover-rollback`, the officers' way back once that readiness says a rollback.

use anyhow::{bail, Result};
use serde_json::Value;
use std::io::Write;

use super::output::{json_mode, pending_approval, print_json, say};
use crate::client::Client;

pub(super) fn status() -> Result<()> {
    let client = Client::from_env_without_token()?;
    let (code, v) = client.get_status_json("/readyz")?;
    if json_mode() {
        print_json(&v)?;
    } else {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        if code == 200 {
            say!("ready");
        } else {
            say!("not ready: {}", s(&v, "reason"));
            say!("  {}", s(&v, "message"));
        }
        match v.get("witnesses") {
            Some(w) => {
                let n = |k: &str| w.get(k).and_then(Value::as_i64).unwrap_or(0);
                say!(
                    "witnesses: quorum {} of {}; log size {}, witnessed to {}; {} result(s) held",
                    n("quorum"),
                    w.get("witnesses")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len),
                    n("log_size"),
                    n("witnessed_size"),
                    n("held")
                );
                if let Some(r) = w.get("rollback").and_then(Value::as_str) {
                    say!("  ROLLBACK DETECTED: {r}");
                }
                for x in w
                    .get("witnesses")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let size = x.get("cosigned_size").and_then(Value::as_i64).unwrap_or(0);
                    match x.get("last_error").and_then(Value::as_str) {
                        Some(e) => say!("  {}: cosigned to {size}; failing: {e}", s(x, "name")),
                        None => say!("  {}: cosigned to {size}", s(x, "name")),
                    }
                }
            }
            None if code == 200 => {
                say!("witnesses: none (a restored database is not detected)")
            }
            None => {}
        }
    }
    if code != 200 {
        bail!(
            "the service is not ready ({})",
            v.get("reason").and_then(Value::as_str).unwrap_or("?")
        );
    }
    Ok(())
}

pub(super) fn recover_rollback(reason: &str) -> Result<()> {
    let client = Client::from_env()?;
    let resp: Value = client.post_json(
        "/api/v1/rollback/recover",
        &serde_json::json!({ "reason": reason }),
    )?;
    if let Some(p) = pending_approval(&resp)? {
        return Err(p.into());
    }
    let seq = resp["result"]["rollback_seq"].as_i64().unwrap_or(0);
    say!("recovered from the rollback detected at audit record {seq}: kagi signs again. Keys with usage limits and the policy's quotas stay frozen until officers set them again ('kagi key set-limit', 'kagi policy activate')");
    Ok(())
}
