//! `kagi audit verify` and `kagi audit export`.

use anyhow::{Context, Result};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;

use super::output::{json_mode, print_json, say};
use crate::cli::AuditCommand;
use crate::client::Client;

#[derive(Deserialize)]
struct AuditReport {
    records: i64,
    checkpoints_verified: i64,
    audit_public_key: String,
}

#[derive(Deserialize)]
struct Checkpoint {
    tree_size: i64,
}

pub(super) fn audit(cmd: AuditCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        AuditCommand::Verify => {
            let answer: Value = client.post_json("/api/v1/audit/verify", &json!({}))?;
            if json_mode() {
                // The report and the newest signed checkpoint (null before the first one).
                let checkpoint = match client.get_json::<Value>("/api/v1/audit/checkpoint") {
                    Ok(c) => c,
                    Err(e) if e.code() == "no_checkpoint" => Value::Null,
                    Err(e) => return Err(e.into()),
                };
                return print_json(&json!({ "report": answer, "checkpoint": checkpoint }));
            }
            let report: AuditReport = serde_json::from_value(answer)
                .context("the server's audit report is not the JSON this kagi expects")?;
            let key = base64::engine::general_purpose::STANDARD
                .decode(&report.audit_public_key)
                .map(|spki| {
                    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &spki);
                    format!("audit key sha256:{}", hex::encode(&d.as_ref()[..16]))
                })
                .unwrap_or_else(|_| "the audit key".into());
            let checkpoint = match client.get_json::<Checkpoint>("/api/v1/audit/checkpoint") {
                Ok(c) => format!("checkpoint at size {} signed by {key}", c.tree_size),
                Err(e) if e.code() == "no_checkpoint" => "no signed checkpoint yet".into(),
                Err(e) => return Err(e.into()),
            };
            say!(
                "audit log OK: {} records, {checkpoint} ({} checkpoints verified)",
                report.records,
                report.checkpoints_verified
            );
            Ok(())
        }
        AuditCommand::Export { out } => {
            let mut sink: Box<dyn Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            let mut from = 0i64;
            let mut count = 0u64;
            loop {
                let page: Vec<Value> =
                    client.get_json(&format!("/api/v1/audit?from={from}&limit=1000"))?;
                let Some(last) = page.last() else {
                    break;
                };
                let last_seq = last
                    .get("seq")
                    .and_then(Value::as_i64)
                    .context("an audit record has no 'seq'")?;
                for record in &page {
                    serde_json::to_writer(&mut sink, record)?;
                    sink.write_all(b"\n")?;
                    count += 1;
                }
                from = last_seq + 1;
            }
            sink.flush()?;
            if let Some(path) = out {
                eprintln!("wrote {count} audit records to {}", path.display());
            }
            Ok(())
        }
    }
}
