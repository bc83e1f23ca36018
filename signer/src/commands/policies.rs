//! `kagi policy ...`: validate locally, submit, list, show and activate policy documents.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;

use super::output::{json_mode, pending_approval, print_json, say, time_text};
use crate::cli::PolicyCommand;
use crate::client::Client;

fn read_policy(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

pub(super) fn policy_cmd(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { file } => {
            let text = read_policy(&file)?;
            match kagi_policy::PolicyDocument::parse(&text) {
                Ok(doc) => {
                    say!(
                        "{}: valid ({} quota(s), quorum: {})",
                        file.display(),
                        doc.quotas.len(),
                        doc.quorum
                            .as_ref()
                            .map(|q| format!("{} of {}", q.required, q.approvers.len()))
                            .unwrap_or_else(|| "none".into())
                    );
                    Ok(())
                }
                Err(e) => Err(crate::client::ClientError::new(
                    "policy_invalid",
                    format!("{}: {e}", file.display()),
                )
                .into()),
            }
        }
        PolicyCommand::Submit { file } => {
            let text = read_policy(&file)?;
            let client = Client::from_env()?;
            let resp: Value = client.post_text("/api/v1/policies", "application/toml", &text)?;
            let v = resp.get("version").and_then(Value::as_i64).unwrap_or(0);
            say!("submitted policy version {v}");
            eprintln!("it takes effect when activated: kagi policy activate {v}");
            Ok(())
        }
        PolicyCommand::List => {
            let client = Client::from_env()?;
            let list: Vec<Value> = client.get_json("/api/v1/policies")?;
            if json_mode() {
                return print_json(&Value::Array(list));
            }
            say!(
                "{:<8}  {:<7}  {:<20}  SUBMITTED BY",
                "VERSION",
                "ACTIVE",
                "SUBMITTED AT"
            );
            for p in &list {
                say!(
                    "{:<8}  {:<7}  {:<20}  {}",
                    p.get("version").and_then(Value::as_i64).unwrap_or(0),
                    if p.get("active").and_then(Value::as_bool).unwrap_or(false) {
                        "yes"
                    } else {
                        ""
                    },
                    time_text(p.get("submitted_at").and_then(Value::as_i64)),
                    p.get("submitted_by").and_then(Value::as_str).unwrap_or("?"),
                );
            }
            Ok(())
        }
        PolicyCommand::Show { version } => {
            let client = Client::from_env()?;
            let path = match version {
                Some(v) => format!("/api/v1/policies/{v}"),
                None => "/api/v1/policies/active".to_string(),
            };
            let p: Value = client.get_json(&path)?;
            if json_mode() {
                return print_json(&p);
            }
            eprintln!(
                "policy version {}{}",
                p.get("version").and_then(Value::as_i64).unwrap_or(0),
                match (
                    p.get("active").and_then(Value::as_bool).unwrap_or(false),
                    p.get("built_in").and_then(Value::as_bool).unwrap_or(false),
                ) {
                    (true, true) => " (built in, in force: no policy is active)",
                    (false, true) => " (built in, not in force: another version is active)",
                    (true, false) => " (active)",
                    (false, false) => "",
                }
            );
            say!("{}", p.get("text").and_then(Value::as_str).unwrap_or(""));
            Ok(())
        }
        PolicyCommand::Activate { version } => {
            let client = Client::from_env()?;
            let resp: Value =
                client.post_json(&format!("/api/v1/policies/{version}/activate"), &json!({}))?;
            if let Some(p) = pending_approval(&resp)? {
                return Err(p.into());
            }
            say!("policy version {version} is active");
            Ok(())
        }
    }
}
