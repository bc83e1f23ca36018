//! `kagi key ...`: create, import, list, show, limit, certify and export keys.

use anyhow::{Context, Result};
use base64::Engine;
use kagi_hsm_core::KeyInfo;
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

use super::output::{pending_approval, say, show, time_text, write_or_print};
use crate::cli::{KeyAttrArgs, KeyCommand, KeyCreateArgs, KeyImportArgs};
use crate::client::Client;
use crate::pem;

pub(super) fn key(cmd: KeyCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        KeyCommand::Create(args) => key_create(&client, &args),
        KeyCommand::List => key_list(&client),
        KeyCommand::Show { name } => show(client.get_json(&key_path(&name))?, |info: KeyInfo| {
            print_key(&info)?;
            print_versions(&info)
        }),
        KeyCommand::Rotate { name } => {
            let resp: Value =
                client.post_json(&format!("{}/rotate", key_path(&name)), &json!({}))?;
            if let Some(p) = pending_approval(&resp)? {
                return Err(p.into());
            }
            show(resp, |resp: Value| {
                let info: KeyInfo = serde_json::from_value(resp["key"].clone())
                    .context("the server's answer has no key")?;
                say!(
                    "rotated key {name}: version {} (id {}) signs from now on; version {} only verifies",
                    info.version,
                    info.id,
                    info.version - 1
                );
                if let Some(serial) = resp["certificate"]["serial"].as_str() {
                    say!("re-issued its code-signing certificate: serial {serial}");
                }
                print_key(&info)
            })
        }
        KeyCommand::Destroy { name } => {
            let resp = client.delete(&key_path(&name))?;
            if let Some(p) = pending_approval(&resp)? {
                return Err(p.into());
            }
            say!("destroyed key {name}");
            Ok(())
        }
        KeyCommand::Disable { name } => {
            let info: KeyInfo =
                client.post_json(&format!("{}/suspend", key_path(&name)), &json!({}))?;
            say!(
                "disabled key {name}: it is {} and signs nothing until 'kagi key enable {name}'",
                info.state
            );
            Ok(())
        }
        KeyCommand::Enable { name } => {
            let info: KeyInfo =
                client.post_json(&format!("{}/resume", key_path(&name)), &json!({}))?;
            say!("enabled key {name}: it is {}", info.state);
            Ok(())
        }
        KeyCommand::Deactivate { name } => {
            let info: KeyInfo =
                client.post_json(&format!("{}/deactivate", key_path(&name)), &json!({}))?;
            say!(
                "deactivated key {name}: it is {} and only verifies from now on",
                info.lifecycle
            );
            Ok(())
        }
        KeyCommand::Compromise { name, reason } => {
            let resp: Value = client.post_json(
                &format!("{}/compromise", key_path(&name)),
                &json!({ "reason": reason }),
            )?;
            if let Some(p) = pending_approval(&resp)? {
                return Err(p.into());
            }
            say!("marked key {name} compromised: it signs and verifies nothing more");
            Ok(())
        }
        KeyCommand::SetAuth {
            name,
            key_auth_file,
            new_key_auth_file,
        } => {
            let old = read_key_password(key_auth_file.as_deref(), "current key password", false)?;
            let new = read_key_password(new_key_auth_file.as_deref(), "new key password", true)?;
            let _: KeyInfo = client.put_json(
                &format!("{}/key-auth", key_path(&name)),
                &json!({ "key_password": old.as_str(), "new_key_password": new.as_str() }),
            )?;
            say!("changed the password of key {name}");
            Ok(())
        }
        KeyCommand::SetLimit { name, usage_limit } => {
            let resp: Value = client.put_json(
                &format!("{}/usage-limit", key_path(&name)),
                &json!({ "usage_limit": usage_limit }),
            )?;
            if let Some(p) = pending_approval(&resp)? {
                return Err(p.into());
            }
            let shown = usage_limit
                .map(|l| l.to_string())
                .unwrap_or_else(|| "unlimited".into());
            say!("usage limit of {name} is now {shown}");
            Ok(())
        }
        KeyCommand::Public { name, version, out } => {
            let path = match version {
                Some(v) => format!("{}/public?version={v}", key_path(&name)),
                None => format!("{}/public", key_path(&name)),
            };
            let pem = client.get_text(&path)?;
            write_or_print(out.as_deref(), pem.as_bytes())
        }
        KeyCommand::Import(args) => key_import(&client, &args),
        KeyCommand::Certify {
            name,
            subject,
            days,
            out,
            chain,
        } => {
            let resp: Value = client.post_json(
                &format!("{}/certificate", key_path(&name)),
                &json!({ "subject": subject, "validity_days": days }),
            )?;
            write_certificate(&resp, chain, out.as_deref())
        }
        KeyCommand::Cert { name, out, chain } => {
            let resp: Value = client.get_json(&format!("{}/certificate", key_path(&name)))?;
            write_certificate(&resp, chain, out.as_deref())
        }
        KeyCommand::Wrap { pkcs8, out } => {
            let wrapped = wrap_to_import_key(&client, &pkcs8)?;
            std::fs::write(&out, wrapped)
                .with_context(|| format!("cannot write {}", out.display()))?;
            eprintln!(
                "wrapped {} to this partition's import key: {} (only this partition's HSM can unwrap it)",
                pkcs8.display(),
                out.display()
            );
            Ok(())
        }
        KeyCommand::ExportWrapped {
            name,
            wrapping_key,
            out,
        } => {
            let resp: Value = client.post_json(
                &format!("{}/export-wrapped", key_path(&name)),
                &json!({ "wrapping_key": wrapping_key }),
            )?;
            if let Some(p) = pending_approval(&resp)? {
                eprintln!(
                    "once approved, collect it with: kagi approval show {} -o {}",
                    p.id,
                    out.display()
                );
                return Err(p.into());
            }
            let wrapped = resp
                .get("wrapped")
                .and_then(Value::as_str)
                .context("the server's answer has no 'wrapped' field")?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(wrapped)
                .context("the server's wrapped key is not base64")?;
            std::fs::write(&out, bytes)
                .with_context(|| format!("cannot write {}", out.display()))?;
            say!(
                "wrote {} ({name} wrapped under {wrapping_key})",
                out.display()
            );
            Ok(())
        }
    }
}

/// Key names are restricted by hsm-core to URL-safe characters, but a typo with '/' or '?'
/// must not turn into another route.
fn key_path(name: &str) -> String {
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/api/v1/keys/{encoded}")
}

fn key_body(name: &str, alg: &str, attrs: &KeyAttrArgs) -> Value {
    let mut body = json!({
        "name": name,
        "alg": alg,
        "exportable_under_wrap": attrs.exportable_under_wrap,
        "trusted": attrs.trusted,
    });
    if let Some(l) = attrs.usage_limit {
        body["usage_limit"] = json!(l);
    }
    if let Some(t) = &attrs.not_before {
        body["not_before"] = json!(t);
    }
    if let Some(t) = &attrs.not_after {
        body["not_after"] = json!(t);
    }
    if let Some(t) = &attrs.verify_until {
        body["verify_until"] = json!(t);
    }
    if let Some(ops) = &attrs.operations {
        body["operations"] = json!(ops);
    }
    if let Some(per) = &attrs.limit_per {
        body["limit_per"] = json!(per);
    }
    body
}

/// [`key_body`] with the key's own password, for a key created with --key-auth.
fn key_body_with_auth(name: &str, alg: &str, attrs: &KeyAttrArgs) -> Result<Value> {
    let mut body = key_body(name, alg, attrs);
    if attrs.key_auth {
        let password = read_key_password(attrs.key_auth_file.as_deref(), "new key password", true)?;
        body["key_auth"] = json!(true);
        body["key_password"] = json!(password.as_str());
    }
    Ok(body)
}

/// A key's own password: the first line of `file`, else typed at the terminal without echo
/// (twice when `confirm`), else the first line of standard input.
pub(super) fn read_key_password(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<String>> {
    use std::io::{BufRead, IsTerminal};
    let first_line = |text: &str| Zeroizing::new(text.lines().next().unwrap_or("").to_string());
    if let Some(path) = file {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
                format!("cannot read the key password from {}", path.display())
            })?);
        return Ok(first_line(&text));
    }
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password(format!("{prompt}: "))
                .context("cannot read the key password from the terminal")?,
        );
        if confirm {
            let again = Zeroizing::new(
                rpassword::prompt_password("the same again: ")
                    .context("cannot read the key password from the terminal")?,
            );
            if *first != *again {
                anyhow::bail!(
                    "the two passwords differ: nothing was changed; run the command again"
                );
            }
        }
        return Ok(first);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the key password from standard input")?;
    Ok(first_line(&line))
}

fn key_create(client: &Client, args: &KeyCreateArgs) -> Result<()> {
    let answer: Value = client.post_json(
        "/api/v1/keys",
        &key_body_with_auth(&args.name, &args.alg, &args.attrs)?,
    )?;
    show(answer, |info: KeyInfo| {
        say!("created key {} ({})", info.label, info.algorithm);
        print_key(&info)
    })
}

/// Read a PKCS#8 file and wrap it, here on the client, to the partition's import key.
fn wrap_to_import_key(client: &Client, path: &Path) -> Result<Vec<u8>> {
    let file = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let pkcs8 = pem::pkcs8_der(&file)?;
    let import_pem = client.get_text("/api/v1/keys/import-key")?;
    let spki = {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(import_pem.as_bytes())
            .context("the server's import key is not a PEM public key")?
    };
    Ok(kagi_hsm_core::wrap_for_import(spki.as_ref(), &pkcs8)?)
}

fn key_import(client: &Client, args: &KeyImportArgs) -> Result<()> {
    let wrapped = wrap_to_import_key(client, &args.pkcs8)?;
    let mut body = key_body_with_auth(&args.name, &args.alg, &args.attrs)?;
    body["wrapped"] = json!(base64::engine::general_purpose::STANDARD.encode(wrapped));
    let answer: Value = client.post_json("/api/v1/keys/import", &body)?;
    show(answer, |info: KeyInfo| {
        say!("imported key {} ({})", info.label, info.algorithm);
        print_key(&info)
    })
}

fn uses(info: &KeyInfo) -> String {
    match info.usage_limit {
        Some(limit) => format!("{}/{}", info.usage_count, limit),
        None => format!("{}/∞", info.usage_count),
    }
}

/// Keys asked for per request by `kagi key list`, which reads every page.
const LIST_PAGE: usize = 1000;

fn key_list(client: &Client) -> Result<()> {
    // The route answers a page at a time: follow the cursor (the last name) to the end.
    let mut all: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            None => format!("/api/v1/keys?limit={LIST_PAGE}"),
            Some(a) => format!(
                "/api/v1/keys?limit={LIST_PAGE}&after={}",
                kagi_web_ui::views::encode_query(a)
            ),
        };
        let page: Vec<Value> = client.get_json(&path)?;
        let full = page.len() >= LIST_PAGE;
        after = page
            .last()
            .and_then(|k| k.get("label"))
            .and_then(Value::as_str)
            .map(str::to_string);
        all.extend(page);
        if !full || after.is_none() {
            break;
        }
    }
    show(Value::Array(all), |keys: Vec<KeyInfo>| key_table(&keys))
}

fn key_table(keys: &[KeyInfo]) -> Result<()> {
    let width = keys
        .iter()
        .map(|k| k.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    say!(
        "{:<width$}  {:<9}  {:<14}  {:<7}  USES",
        "NAME",
        "ALG",
        "STATE",
        "VERSION"
    );
    for k in keys {
        say!(
            "{:<width$}  {:<9}  {:<14}  {:<7}  {}",
            k.label,
            k.algorithm.as_str(),
            if k.active {
                k.lifecycle.as_str()
            } else if k.lifecycle == kagi_hsm_core::Lifecycle::Active {
                "inactive"
            } else {
                k.lifecycle.as_str()
            },
            k.version,
            uses(k)
        );
    }
    Ok(())
}

fn print_key(k: &KeyInfo) -> Result<()> {
    let ops: Vec<&str> = k.operations.iter().map(|o| o.as_str()).collect();
    say!("name:                  {}", k.label);
    say!("version:               {}", k.version);
    say!("id:                    {}", k.id);
    say!("partition:             {}", k.partition);
    say!("algorithm:             {}", k.algorithm);
    say!("state:                 {}", k.lifecycle);
    say!(
        "usable now:            {}",
        if k.active {
            "yes"
        } else {
            "no (not active, outside its signing period, or usage limit reached)"
        }
    );
    say!("usage count:           {}", k.usage_count);
    say!(
        "usage limit:           {}",
        k.usage_limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "unlimited".into())
    );
    say!("operations:            {}", ops.join(","));
    say!("signing from:          {}", time_text(k.not_before));
    say!("signing until:         {}", time_text(k.not_after));
    say!("verifying until:       {}", time_text(k.verify_until));
    say!("exportable under wrap: {}", k.exportable_under_wrap);
    say!("trusted:               {}", k.trusted);
    say!("never extractable:     {}", k.never_extractable);
    say!("generated in kagi:     {}", k.local);
    say!(
        "own password:          {}",
        if k.key_auth {
            "yes: every use needs the key's password; no escrow copy (a lost password is a lost key)"
        } else {
            "no"
        }
    );
    say!("created:               {}", time_text(Some(k.created_at)));
    say!(
        "usage limit counts:    {}",
        if k.limit_per_version {
            "per version"
        } else {
            "per name (all versions)"
        }
    );
    Ok(())
}

/// The earlier versions of a rotated key: what a verifier of its older signatures needs.
fn print_versions(k: &KeyInfo) -> Result<()> {
    if k.earlier_versions.is_empty() {
        return Ok(());
    }
    say!(
        "earlier versions ('kagi key public {} --version N' prints one's public key):",
        k.label
    );
    say!("  VERSION  STATE        ID                                PUBLIC KEY SHA-256");
    for v in &k.earlier_versions {
        say!(
            "  {:<7}  {:<11}  {}  {}",
            v.version,
            v.state.as_str(),
            v.id,
            v.public_key_sha256
        );
    }
    Ok(())
}

/// The certificate (and with `chain`, the CAs above it) of an issuance answer, as PEM.
fn write_certificate(resp: &Value, chain: bool, out: Option<&Path>) -> Result<()> {
    let mut pem = resp
        .get("certificate")
        .and_then(Value::as_str)
        .context("the server's answer has no certificate")?
        .to_string();
    if chain {
        pem.push_str(resp.get("chain").and_then(Value::as_str).unwrap_or(""));
    }
    write_or_print(out, pem.as_bytes())
}
