//! What the command families print with: `say!`, dates, files or stdout, the `--output json`
//! choice, and the answer "this waits for approvals" that several families share.

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use crate::cli::OutputFormat;

/// `println!` panics when stdout is closed (`kagi audit export | head`); this returns the error
/// instead, and `main` treats a broken pipe as a normal end.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}
pub(super) use say;

/// Chosen once per process from `--output` / KAGI_OUTPUT, before any command runs: every
/// printer asks it instead of each command family threading it through.
static FORMAT: OnceLock<OutputFormat> = OnceLock::new();

pub(super) fn set_format(format: OutputFormat) {
    let _ = FORMAT.set(format);
}

pub fn json_mode() -> bool {
    FORMAT.get() == Some(&OutputFormat::Json)
}

/// Prints a JSON document as the service gave it (pretty, one document per command).
pub fn print_json(value: &Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    out.write_all(b"\n")?;
    Ok(out.flush()?)
}

/// A list or show answer: with `--output json`, the service's JSON unchanged; else `text`
/// prints it for people from its typed form.
pub(super) fn show<T: DeserializeOwned>(
    answer: Value,
    text: impl FnOnce(T) -> Result<()>,
) -> Result<()> {
    if json_mode() {
        return print_json(&answer);
    }
    let typed = serde_json::from_value(answer)
        .context("the server's answer is not the JSON this kagi expects")?;
    text(typed)
}

/// The change was filed as an approval request instead of being made: `main` exits 3 on it,
/// so a script tells "waits for a quorum" from "done" and from "failed".
#[derive(Debug, thiserror::Error)]
#[error("approval request {id} is pending")]
pub struct PendingApproval {
    pub id: String,
}

/// If an answer says the change waits for approvals, print the request (its JSON with
/// `--output json`) and return it as the error that makes `kagi` exit 3.
pub(super) fn pending_approval(resp: &Value) -> Result<Option<PendingApproval>> {
    if resp.get("status").and_then(Value::as_str) != Some("pending") {
        return Ok(None);
    }
    let a = resp
        .get("approval")
        .context("the server's answer has no approval request")?;
    let id = a
        .get("id")
        .and_then(Value::as_str)
        .context("the server's approval request has no id")?;
    if json_mode() {
        print_json(resp)?;
    } else {
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
    }
    eprintln!("nothing changes until then; an approver runs: kagi approval approve {id}");
    Ok(Some(PendingApproval { id: id.to_string() }))
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
