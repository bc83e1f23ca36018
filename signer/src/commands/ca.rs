//! `kagi ca ...`: the certificate authority from the command line, through the service's API.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::output::{json_mode, pending_approval, print_json, say, time_text};
use crate::cli::{CaCommand, CaCreateArgs, ProfileCommand};
use crate::client::Client;

/// CSRs per request of `issue-batch`: small enough for a smooth progress bar, large enough
/// for the service's group commit to pay off.
const BATCH_CHUNK: usize = 100;
/// A file larger than this cannot be a CSR the service accepts (8 KiB of DER, as PEM): it is
/// refused here instead of making its whole chunk too large to send.
const MAX_CSR_FILE: u64 = 64 * 1024;

/// The CA a profile issues from when `--ca` is not given (the development hierarchy's names).
fn default_ca(profile: &str) -> &'static str {
    match profile {
        "device" => "devices",
        "code-signing" | "timestamping" => "code-signing",
        _ => "services",
    }
}

fn days_json(days: &Option<String>) -> Option<Value> {
    days.as_ref().map(|d| match d.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(d),
    })
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

pub(super) fn run(cmd: CaCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        CaCommand::List => {
            let list: Vec<Value> = client.get_json("/api/v1/ca")?;
            if json_mode() {
                return print_json(&Value::Array(list));
            }
            say!("{:<16}  {:<12}  {:<8}  SUBJECT", "NAME", "PARENT", "STATE");
            for c in &list {
                let state = if c.get("revoked_at").is_some_and(|v| !v.is_null()) {
                    "revoked"
                } else {
                    "active"
                };
                say!(
                    "{:<16}  {:<12}  {:<8}  {}",
                    s(c, "name"),
                    c.get("parent").and_then(Value::as_str).unwrap_or("(root)"),
                    state,
                    s(c, "subject")
                );
            }
        }
        CaCommand::Show { name, out } => {
            let c: Value = client.get_json(&format!("/api/v1/ca/{name}"))?;
            match out {
                Some(path) => {
                    write_file(&path, s(&c, "certificate").as_bytes())?;
                    say!("wrote the certificate of CA '{name}' to {}", path.display());
                }
                None if json_mode() => print_json(&c)?,
                None => {
                    for k in ["name", "parent", "subject", "key", "crl_url", "ocsp_url"] {
                        say!("{k:<8} {}", c.get(k).map(plain).unwrap_or_default());
                    }
                    say!("{}", s(&c, "certificate").trim_end());
                }
            }
        }
        CaCommand::CreateRoot(args) => create(&client, &args, None)?,
        CaCommand::CreateIntermediate { ca, parent } => create(&client, &ca, Some(&parent))?,
        CaCommand::RevokeCa {
            name,
            reason,
            approval,
        } => {
            let resp: Value = client.post_json(
                &format!("/api/v1/ca/{name}/revoke"),
                &json!({"reason": reason, "approval": approval}),
            )?;
            pending(&resp, "revoke-ca")?;
            say!("revoked CA '{name}' (reason {reason})");
        }
        CaCommand::Profiles | CaCommand::Profile(ProfileCommand::List) => {
            let list: Vec<Value> = client.get_json("/api/v1/profiles")?;
            if json_mode() {
                return print_json(&Value::Array(list));
            }
            for p in &list {
                let source = if p.get("builtin").and_then(Value::as_bool) == Some(false) {
                    "custom"
                } else {
                    "built-in"
                };
                say!(
                    "{:<14}  {:<8}  {}",
                    s(p, "name"),
                    source,
                    s(p, "description")
                );
            }
        }
        CaCommand::Profile(ProfileCommand::Show { name }) => {
            let p: Value = client.get_json(&format!("/api/v1/profiles/{name}"))?;
            if json_mode() {
                print_json(&p)?;
            } else {
                let mut spec = p.clone();
                let mut header = Vec::new();
                if let Some(obj) = spec.as_object_mut() {
                    let builtin = obj.remove("builtin").and_then(|v| v.as_bool());
                    let set_by = obj.remove("set_by");
                    let set_at = obj.remove("set_at").and_then(|v| v.as_i64());
                    let seq = obj.remove("audit_seq");
                    match builtin {
                        Some(false) => header.push(format!(
                            "# custom profile, set by {} at {} (audit record {})",
                            set_by.as_ref().map(plain).unwrap_or_default(),
                            time_text(set_at),
                            seq.as_ref().map(plain).unwrap_or_default()
                        )),
                        _ => header.push("# built-in profile".to_string()),
                    }
                }
                let spec: kagi_ca::profile::ProfileSpec = serde_json::from_value(spec)
                    .context("the server's profile does not read as a profile spec")?;
                for h in header {
                    say!("{h}");
                }
                say!("{}", spec.to_toml()?.trim_end());
            }
        }
        CaCommand::Profile(ProfileCommand::Add { file, approval }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let spec = kagi_ca::Profile::parse_spec(&text)
                .with_context(|| format!("{} is not a profile spec", file.display()))?;
            kagi_ca::Profile::compile(spec.clone())
                .with_context(|| format!("{} is not a valid profile", file.display()))?;
            let name = spec.name.clone();
            let resp: Value = client.post_json(
                "/api/v1/profiles",
                &json!({ "spec": spec, "approval": approval }),
            )?;
            if let Some(p) = pending_approval(&resp)? {
                eprintln!(
                    "once it is approved, run 'kagi ca profile add {} --approval {}' again",
                    file.display(),
                    p.id
                );
                return Err(p.into());
            }
            say!("{} profile '{name}'", s(&resp, "status"));
        }
        CaCommand::Issue {
            csr,
            profile,
            ca,
            days,
            out,
            chain,
            override_serial_in_use,
        } => {
            let bytes =
                std::fs::read(&csr).with_context(|| format!("cannot read {}", csr.display()))?;
            check_csr(&csr, &bytes)?;
            let ca = ca.unwrap_or_else(|| default_ca(&profile).to_string());
            let mut path = format!("/api/v1/ca/{ca}/profiles/{profile}/issue");
            let mut query = Vec::new();
            if let Some(d) = &days {
                query.push(format!("validity_days={d}"));
            }
            if override_serial_in_use {
                query.push("override_serial_in_use=true".to_string());
            }
            if !query.is_empty() {
                path.push('?');
                path.push_str(&query.join("&"));
            }
            let resp: Value = client.post_bytes(&path, "application/pkcs10", &bytes)?;
            let mut pem = s(&resp, "certificate").to_string();
            if chain {
                pem.push_str(s(&resp, "chain"));
            }
            match out {
                Some(p) => {
                    write_file(&p, pem.as_bytes())?;
                    eprintln!(
                        "issued serial {} ({}) to {}",
                        s(&resp, "serial"),
                        s(&resp, "subject"),
                        p.display()
                    );
                }
                None => {
                    std::io::stdout().lock().write_all(pem.as_bytes())?;
                }
            }
        }
        CaCommand::IssueBatch {
            dir,
            profile,
            ca,
            days,
            out,
        } => issue_batch(&client, &dir, &profile, ca, days, out)?,
        CaCommand::Revoke { serial, reason } => {
            let resp: Value = client.post_json(
                &format!(
                    "/api/v1/certificates/{}/revoke",
                    serial.to_ascii_lowercase()
                ),
                &json!({ "reason": reason }),
            )?;
            say!(
                "revoked {} of CA '{}' (reason {reason}); CRL number {} published",
                s(&resp, "serial"),
                s(&resp, "ca_name"),
                resp.get("crl_number").map(plain).unwrap_or_default()
            );
        }
        CaCommand::Certs { ca, limit, before } => {
            let mut path = format!("/api/v1/ca/{ca}/certificates?limit={limit}");
            if let Some(b) = &before {
                let b = b.trim();
                if b.is_empty() || !b.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    bail!(
                        "--before takes a certificate serial in hex, as 'kagi ca certs' prints it after \"next page: --before\""
                    );
                }
                path.push_str(&format!("&before={}", b.replace(':', "")));
            }
            let resp: Value = client.get_json(&path)?;
            if json_mode() {
                return print_json(&resp);
            }
            say!(
                "{} certificate(s) issued by '{ca}'; newest first:",
                resp.get("total").map(plain).unwrap_or_default()
            );
            for c in resp
                .get("certificates")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let revoked = c.get("revoked_at").is_some_and(|v| !v.is_null());
                say!(
                    "{}  {:<12}  {:<8}  {}  ({})",
                    s(c, "serial"),
                    s(c, "profile"),
                    if revoked { "revoked" } else { "valid" },
                    s(c, "subject"),
                    s(c, "issued_to")
                );
            }
            if let Some(next) = resp.get("next").and_then(Value::as_str) {
                say!("next page: kagi ca certs {ca} --limit {limit} --before {next}");
            }
        }
        CaCommand::Crl { ca, out } => {
            let der = client.get_bytes(&format!("/crl/{ca}.crl"))?;
            write_file(&out, &der)?;
            say!(
                "wrote the CRL of '{ca}' ({} bytes) to {}",
                der.len(),
                out.display()
            );
        }
    }
    Ok(())
}

/// How to make a CSR, for the message that refuses a file that is not one.
const MAKE_A_CSR: &str = "make one with, e.g.: openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key -subj '/CN=device-0001' -out device.csr";

/// Refuses, before anything is sent, a file that is not a PKCS#10 CSR (a README, a
/// certificate, a key): the service would refuse it too, but could only say what it is not.
fn check_csr(path: &Path, bytes: &[u8]) -> Result<()> {
    use der::Decode;
    let is_csr = match std::str::from_utf8(bytes) {
        Ok(text) if text.trim_start().starts_with("-----BEGIN") => {
            let label = text.trim_start().lines().next().unwrap_or("");
            label.contains("CERTIFICATE REQUEST")
        }
        _ => x509_cert::request::CertReq::from_der(bytes).is_ok(),
    };
    if !is_csr {
        return Err(crate::client::ClientError::new(
            "bad_csr",
            format!(
                "{} is not a PEM or DER PKCS#10 certificate signing request (CSR); {MAKE_A_CSR}",
                path.display()
            ),
        )
        .into());
    }
    Ok(())
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A pending answer ends the command (exit 3); anything else goes on.
fn pending(resp: &Value, command: &str) -> Result<()> {
    if let Some(p) = pending_approval(resp)? {
        eprintln!(
            "once it is approved, run 'kagi ca {command} ... --approval {}' again with the same arguments",
            p.id
        );
        return Err(p.into());
    }
    Ok(())
}

fn create(client: &Client, args: &CaCreateArgs, parent: Option<&str>) -> Result<()> {
    let resp: Value = client.post_json(
        "/api/v1/ca",
        &json!({
            "name": args.name, "subject": args.subject, "alg": args.alg,
            "validity_days": args.days, "parent": parent, "approval": args.approval,
        }),
    )?;
    let command = if parent.is_some() {
        "create-intermediate"
    } else {
        "create-root"
    };
    pending(&resp, command)?;
    say!(
        "created CA '{}' ({}), key {} in the HSM",
        s(&resp, "name"),
        s(&resp, "subject"),
        s(&resp, "key")
    );
    say!("{}", s(&resp, "certificate").trim_end());
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// The CSR files of a folder, in name order.
fn csr_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| matches!(e, "csr" | "pem" | "der" | "req"))
        })
        .collect();
    files.sort();
    Ok(files)
}

struct Progress {
    total: usize,
    tty: bool,
}

impl Progress {
    fn show(&self, done: usize, failed: usize) {
        const WIDTH: usize = 40;
        let filled = (done * WIDTH)
            .checked_div(self.total)
            .unwrap_or(WIDTH)
            .min(WIDTH);
        let bar = format!("[{}{}]", "#".repeat(filled), "-".repeat(WIDTH - filled));
        let line = format!(
            "{bar} {done}/{} issued or refused, {failed} refused",
            self.total
        );
        if self.tty {
            eprint!("\r{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn issue_batch(
    client: &Client,
    dir: &Path,
    profile: &str,
    ca: Option<String>,
    days: Option<String>,
    out: Option<PathBuf>,
) -> Result<()> {
    let files = csr_files(dir)?;
    if files.is_empty() {
        bail!(
            "{} holds no CSR files (*.csr, *.pem, *.der, *.req)",
            dir.display()
        );
    }
    let out = out.unwrap_or_else(|| dir.to_path_buf());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let ca = ca.unwrap_or_else(|| default_ca(profile).to_string());
    let path = format!("/api/v1/ca/{ca}/profiles/{profile}/issue-batch");
    let progress = Progress {
        total: files.len(),
        tty: std::io::stderr().is_terminal(),
    };
    let (mut issued, mut refused) = (0usize, Vec::new());
    // Certificates are named after their CSR's stem (x.csr -> x.crt); where two CSRs share a
    // stem (x.csr, x.der) each keeps its whole name (x.csr.crt) so neither overwrites the other.
    let stem = |f: &Path| {
        f.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("cert")
            .to_string()
    };
    let out_name = |f: &Path| {
        let st = stem(f);
        if files.iter().filter(|g| stem(g) == st).count() > 1 {
            format!(
                "{}.crt",
                f.file_name().and_then(|n| n.to_str()).unwrap_or("cert")
            )
        } else {
            format!("{st}.crt")
        }
    };
    let mut sendable = Vec::with_capacity(files.len());
    for f in &files {
        let size = std::fs::metadata(f)
            .with_context(|| format!("cannot read {}", f.display()))?
            .len();
        if size > MAX_CSR_FILE {
            refused.push((
                f.clone(),
                "bad_csr".to_string(),
                format!("the file is {size} bytes; a CSR kagi accepts is at most {MAX_CSR_FILE}"),
            ));
        } else {
            sendable.push(f.clone());
        }
    }
    progress.show(refused.len(), refused.len());
    for chunk in sendable.chunks(BATCH_CHUNK) {
        let mut csrs = Vec::with_capacity(chunk.len());
        for f in chunk {
            let bytes = std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?;
            csrs.push(csr_text(&bytes));
        }
        let resp: Value = client.post_json(
            &path,
            &json!({"csrs": csrs, "validity_days": days_json(&days)}),
        )?;
        for (i, r) in resp
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let Some(file) = chunk.get(i) else { break };
            if s(r, "status") == "issued" {
                write_file(&out.join(out_name(file)), s(r, "certificate").as_bytes())?;
                issued += 1;
            } else {
                refused.push((
                    file.clone(),
                    r.pointer("/error/code").map(plain).unwrap_or_default(),
                    r.pointer("/error/message").map(plain).unwrap_or_default(),
                ));
            }
        }
        progress.show(issued + refused.len(), refused.len());
    }
    if progress.tty {
        eprintln!();
    }
    say!(
        "{issued} issued, {} refused (certificates in {})",
        refused.len(),
        out.display()
    );
    for (file, code, message) in &refused {
        say!("refused {}: {code}: {message}", file.display());
    }
    if !refused.is_empty() {
        bail!(
            "{} of {} CSRs were refused (listed above)",
            refused.len(),
            files.len()
        );
    }
    Ok(())
}

/// PEM stays text; anything else goes as base64 (the batch API takes both).
fn csr_text(bytes: &[u8]) -> String {
    use base64::Engine;
    match std::str::from_utf8(bytes) {
        Ok(t) if t.trim_start().starts_with("-----BEGIN") => t.to_string(),
        _ => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}
