//! `kagi approval ...`: list, show, approve and reject M-of-N requests.

use anyhow::{Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::io::Write;

use super::output::{json_mode, print_json, say, time_text};
use crate::cli::ApprovalCommand;
use crate::client::Client;

fn print_approval(a: &Value) -> Result<()> {
    if json_mode() {
        return print_json(a);
    }
    let get = |k: &str| {
        a.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    say!("request:      {}", get("id"));
    say!("status:       {}", get("status"));
    say!(
        "action:       {}",
        a.get("action").map(|v| v.to_string()).unwrap_or_default()
    );
    say!("requested by: {}", get("requested_by"));
    say!(
        "approvals:    {} of {} ({})",
        a.get("approved_by")
            .and_then(Value::as_array)
            .map(|v| v.len())
            .unwrap_or(0),
        get("required"),
        get("approved_by")
    );
    say!("approvers:    {}", get("approvers"));
    say!(
        "expires at:   {}",
        time_text(a.get("expires_at").and_then(Value::as_i64))
    );
    say!("summary:\n{}", get("summary"));
    Ok(())
}

pub(super) fn approval(cmd: ApprovalCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        ApprovalCommand::List => {
            let list: Vec<Value> = client.get_json("/api/v1/approvals")?;
            if json_mode() {
                return print_json(&Value::Array(list));
            }
            say!(
                "{:<18}  {:<9}  {:<16}  {:<8}  REQUESTED BY",
                "ID",
                "STATUS",
                "ACTION",
                "APPROVED"
            );
            for a in &list {
                let n = a
                    .get("approved_by")
                    .and_then(Value::as_array)
                    .map(|v| v.len())
                    .unwrap_or(0);
                say!(
                    "{:<18}  {:<9}  {:<16}  {:<8}  {}",
                    a.get("id").and_then(Value::as_str).unwrap_or("?"),
                    a.get("status").and_then(Value::as_str).unwrap_or("?"),
                    a.pointer("/action/kind")
                        .and_then(Value::as_str)
                        .unwrap_or("?"),
                    format!(
                        "{n}/{}",
                        a.get("required").and_then(Value::as_i64).unwrap_or(0)
                    ),
                    a.get("requested_by").and_then(Value::as_str).unwrap_or("?"),
                );
            }
            Ok(())
        }
        ApprovalCommand::Show { id, out } => {
            let a: Value = client.get_json(&format!("/api/v1/approvals/{id}"))?;
            print_approval(&a)?;
            if let Some(path) = out {
                let wrapped = a.get("wrapped_key").and_then(Value::as_str).context(
                    "this request has no wrapped key for you: it is not an executed export you requested",
                )?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(wrapped)
                    .context("the server's wrapped key is not base64")?;
                std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                if json_mode() {
                    eprintln!("wrote the wrapped key to {}", path.display());
                } else {
                    say!("wrote the wrapped key to {}", path.display());
                }
            }
            Ok(())
        }
        ApprovalCommand::Approve { id } => {
            let a: Value =
                client.post_json(&format!("/api/v1/approvals/{id}/approve"), &json!({}))?;
            print_approval(&a)
        }
        ApprovalCommand::Reject { id } => {
            let a: Value =
                client.post_json(&format!("/api/v1/approvals/{id}/reject"), &json!({}))?;
            print_approval(&a)
        }
    }
}
