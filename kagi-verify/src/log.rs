//! `kagi log ...`: the transparency log checked from the client side. Signatures, proofs and
//! the consistency of checkpoints are verified here, with the log's key, not taken from the
//! service's word.

use anyhow::{bail, Context, Result};
use base64::Engine;
use kagi_tlog as tlog;
use serde_json::Value;
use std::io::Write;

use crate::args::{LogCommand, WitnessArgs};
use crate::trust::check_witnesses;
use crate::{say, Service};

type Hash = [u8; 32];

/// The log's public key: pinned by the caller, or fetched (trust on first use, said so).
fn log_key(client: &dyn Service, pinned: Option<&str>) -> Result<[u8; 32]> {
    let vkey = match pinned {
        Some(k) => k.to_string(),
        None => {
            let k = client.get_text("/log/key")?.trim().to_string();
            eprintln!("log key fetched from the service (pin it with --key '{k}')");
            k
        }
    };
    let (name, key) = tlog::parse_verifier_key(&vkey).context("the log's verifier key")?;
    if name != tlog::ORIGIN {
        bail!(
            "the verifier key names '{name}', not this log ('{}')",
            tlog::ORIGIN
        );
    }
    Ok(key)
}

fn open(note: &str, key: &[u8; 32]) -> Result<(u64, Hash)> {
    let (origin, size, root) = tlog::open_checkpoint(note, tlog::ORIGIN, key)
        .context("the checkpoint's signature or format is not valid")?;
    if origin != tlog::ORIGIN {
        bail!(
            "the checkpoint is for log '{origin}', not '{}'",
            tlog::ORIGIN
        );
    }
    Ok((size, root))
}

fn hashes(v: &Value) -> Result<Vec<Hash>> {
    v.get("hashes")
        .and_then(Value::as_array)
        .context("the proof has no hashes")?
        .iter()
        .map(|h| {
            let b = base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap_or(""))
                .context("a proof hash is not base64")?;
            b.try_into()
                .map_err(|_| anyhow::anyhow!("a proof hash is not 32 bytes"))
        })
        .collect()
}

/// The service's recomputation of every entry (an auditor's call), or why it was skipped: the
/// checks above stand on their own, so a caller without the auditor role has not failed.
fn full_recomputation(client: &dyn Service) -> Result<Value> {
    if !client.has_credential() {
        // Only the kagi-verify binary gets here (kagi always sends a credential).
        return Ok(serde_json::json!({
            "skipped": "it is the service's, for an auditor (set KAGI_TOKEN)",
        }));
    }
    match client.post_json("/api/v1/log/verify", &serde_json::json!({})) {
        Ok(report) => Ok(serde_json::json!({
            "result": "ok",
            "entries": report.get("entries").and_then(Value::as_i64).unwrap_or(0),
            "checkpoints": report.get("checkpoints").and_then(Value::as_i64).unwrap_or(0),
        })),
        Err(e)
            if e.downcast_ref::<crate::client::ClientError>()
                .is_some_and(|c| c.code() == "forbidden") =>
        {
            Ok(serde_json::json!({
                "skipped": "it needs the auditor role, which this credential does not have (run it with an auditor's KAGI_TOKEN)",
            }))
        }
        Err(e) => Err(e),
    }
}

/// The witnesses' part of `log verify`'s report: who cosigned the newest checkpoint, out of
/// how many given and needed; `"not checked"` without `--witness`.
fn witness_report(note: &str, w: &WitnessArgs, say: bool) -> Result<Value> {
    let cosigned = check_witnesses(note, w, "the service's checkpoint", say)?;
    if w.witness.is_empty() {
        return Ok(Value::from("not checked (no --witness given)"));
    }
    Ok(serde_json::json!({
        "result": "ok",
        "cosigned": cosigned,
        "given": w.witness.len(),
        "quorum": w.witness_quorum.unwrap_or(w.witness.len()),
    }))
}

/// `kagi log CMD`, against `client`; `json`: print the checks' result as one JSON document
/// (`--output json`) instead of lines for people.
pub fn run(client: &dyn Service, cmd: LogCommand, json: bool) -> Result<()> {
    match cmd {
        LogCommand::Checkpoint {
            out,
            key,
            witnesses,
        } => {
            let key = log_key(client, key.as_deref())?;
            let note = client.get_text("/log/checkpoint")?;
            let (size, root) = open(&note, &key)?;
            // Saved or printed only once witnessed: a later `log verify FILE` trusts it.
            check_witnesses(
                &note,
                &witnesses,
                "the service's checkpoint",
                !json && out.is_some(),
            )?;
            match out {
                Some(p) => {
                    std::fs::write(&p, &note)
                        .with_context(|| format!("cannot write {}", p.display()))?;
                    say!(
                        "checkpoint of {size} entries (root {}) saved to {}",
                        hex::encode(root),
                        p.display()
                    );
                }
                None if json => {
                    let mut out = std::io::stdout().lock();
                    serde_json::to_writer_pretty(
                        &mut out,
                        &serde_json::json!({
                            "size": size, "root": hex::encode(root), "checkpoint": note,
                        }),
                    )?;
                    out.write_all(b"\n")?;
                }
                None => std::io::stdout().lock().write_all(note.as_bytes())?,
            }
        }
        LogCommand::Verify {
            since,
            key,
            witnesses,
        } => {
            let key = log_key(client, key.as_deref())?;
            let note = client.get_text("/log/checkpoint")?;
            let (size, root) = open(&note, &key)?;
            let mut report = serde_json::json!({
                "checkpoint": { "size": size, "root": hex::encode(root), "signature": "ok" },
            });
            if !json {
                say!(
                    "checkpoint signature OK: {size} entries, root {}",
                    hex::encode(root)
                );
            }
            report["witnesses"] = witness_report(&note, &witnesses, !json)?;
            if let Some(path) = since {
                let old = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let (old_size, old_root) = open(&old, &key).with_context(|| {
                    format!("{} is not a valid checkpoint of this log", path.display())
                })?;
                if old_size > size {
                    bail!(
                        "the log shrank: {} holds {old_size} entries, the service now shows {size}",
                        path.display()
                    );
                }
                let proof = client.get_json(&format!(
                    "/log/proof/consistency?first={old_size}&second={size}"
                ))?;
                if !tlog::verify_consistency(old_size, size, &hashes(&proof)?, &old_root, &root) {
                    bail!(
                        "the log is NOT consistent with {}: its first {old_size} entries changed",
                        path.display()
                    );
                }
                report["consistency"] = serde_json::json!({
                    "since": path.display().to_string(), "size": old_size, "result": "ok",
                });
                if !json {
                    say!(
                        "consistent with {} ({old_size} entries): the log only grew",
                        path.display()
                    );
                }
            }
            report["full_recomputation"] = full_recomputation(client)?;
            if json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(&mut out, &report)?;
                out.write_all(b"\n")?;
            } else if let Some(reason) = report["full_recomputation"]["skipped"].as_str() {
                say!("full recomputation skipped: {reason}");
            } else {
                say!(
                    "full recomputation OK: {} entries and {} checkpoints match their hashes and signatures",
                    report["full_recomputation"]["entries"].as_i64().unwrap_or(0),
                    report["full_recomputation"]["checkpoints"].as_i64().unwrap_or(0)
                );
            }
        }
        LogCommand::Entry {
            index,
            key,
            witnesses,
        } => {
            let key = log_key(client, key.as_deref())?;
            let note = client.get_text("/log/checkpoint")?;
            let (size, root) = open(&note, &key)?;
            check_witnesses(&note, &witnesses, "the service's checkpoint", false)?;
            let e = client.get_json(&format!("/log/entries/{index}"))?;
            let body = e
                .get("body")
                .and_then(Value::as_str)
                .context("the entry has no body")?;
            let leaf = tlog::entry_hash(body.as_bytes());
            let proof =
                client.get_json(&format!("/log/proof/inclusion?index={index}&size={size}"))?;
            if !tlog::verify_inclusion(&leaf, index as u64, size, &hashes(&proof)?, &root) {
                bail!("entry {index} is NOT included in the signed checkpoint of {size} entries");
            }
            if json {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer_pretty(
                    &mut out,
                    &serde_json::json!({
                        "index": index, "body": body, "included_in_size": size,
                    }),
                )?;
                out.write_all(b"\n")?;
            } else {
                say!("{body}");
            }
            eprintln!("entry {index} is included in the signed checkpoint of {size} entries");
        }
    }
    Ok(())
}
