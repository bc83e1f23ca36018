//! What the command families print with: `say!`, dates, files or stdout, and the answer
//! "this waits for approvals" that several families share.

use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// `println!` panics when stdout is closed (`kagi audit export | head`); this returns the error
/// instead, and `main` treats a broken pipe as a normal end.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}
pub(super) use say;

/// If an answer says the change waits for approvals, say so and return true.
pub(super) fn print_if_pending(resp: &Value) -> Result<bool> {
    if resp.get("status").and_then(Value::as_str) != Some("pending") {
        return Ok(false);
    }
    let a = resp
        .get("approval")
        .context("the server's answer has no approval request")?;
    let id = a.get("id").and_then(Value::as_str).unwrap_or("?");
    let required = a.get("required").and_then(Value::as_i64).unwrap_or(0);
    let approvers: Vec<&str> = a
        .get("approvers")
        .and_then(Value::as_array)
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    say!(
        "approval required: request {id} needs {required} approval(s) from {}",
        approvers.join(", ")
    );
    eprintln!("nothing changes until then; an approver runs: kagi approval approve {id}");
    Ok(true)
}

pub(super) fn time_text(unix: Option<i64>) -> String {
    match unix {
        None => "-".into(),
        Some(t) => time::OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|d| {
                d.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| t.to_string()),
    }
}

pub(super) fn write_or_print(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
    match out {
        Some(path) => {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(bytes)?;
            Ok(stdout.flush()?)
        }
    }
}
