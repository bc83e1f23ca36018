//! Who may call the service: `kagi credential ...`, `kagi partition ...` and
//! `kagi identity ...`.

use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use zeroize::Zeroizing;

use super::output::{pending_approval, say, show, time_text};
use crate::cli::{CredentialCommand, IdentityCommand, PartitionCommand};
use crate::client::Client;

pub(super) fn credential(cmd: CredentialCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        CredentialCommand::Create {
            name,
            roles,
            partition,
        } => {
            let mut body = json!({ "name": name, "roles": roles });
            if let Some(p) = &partition {
                body["partition"] = json!(p);
            }
            let resp: Value = client.post_json("/api/v1/credentials", &body)?;
            let token = Zeroizing::new(
                resp.get("token")
                    .and_then(Value::as_str)
                    .context("the server's answer has no token")?
                    .to_string(),
            );
            say!("{}", token.as_str());
            eprintln!(
                "created credential '{name}' with roles {}. The token above is shown only once: store it now (e.g. as KAGI_TOKEN in your CI secrets).",
                roles.join(",")
            );
            Ok(())
        }
        CredentialCommand::List => show(
            client.get_json("/api/v1/credentials")?,
            |credentials: Vec<kagi_hsm_core::CredentialInfo>| {
                say!("{:<24}  {:<34}  {:<8}  ROLES", "NAME", "ID", "LOCKED");
                for c in &credentials {
                    let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
                    say!(
                        "{:<24}  {:<34}  {:<8}  {}",
                        c.name,
                        c.id,
                        c.locked,
                        roles.join(",")
                    );
                }
                Ok(())
            },
        ),
    }
}

// ------------------------------------------------------------------ partitions

pub(super) fn partition(cmd: PartitionCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        PartitionCommand::Create { name } => {
            let _: Value = client.post_json("/api/v1/partitions", &json!({ "name": name }))?;
            say!("created partition {name}");
            eprintln!("give it users with: kagi credential create --partition {name} --name NAME --roles officer,user");
            Ok(())
        }
        PartitionCommand::List => show(
            client.get_json("/api/v1/partitions")?,
            |names: Vec<String>| {
                for n in names {
                    say!("{n}");
                }
                Ok(())
            },
        ),
    }
}

pub(super) fn identity(cmd: IdentityCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        IdentityCommand::Create {
            name,
            kind,
            roles,
            expires,
            partition,
            client_cert,
            approval,
        } => {
            let mut body = json!({ "name": name, "kind": kind, "approval": approval });
            if !roles.is_empty() {
                body["roles"] = json!(roles);
            }
            if let Some(e) = &expires {
                body["expires_at"] = json!(e);
            }
            if let Some(p) = &partition {
                body["partition"] = json!(p);
            }
            if let Some(path) = &client_cert {
                body["client_cert_sha256"] = json!(certificate_sha256(path)?);
            }
            let resp: Value = client.post_json("/api/v1/identities", &body)?;
            if let Some(p) = pending_approval(&resp)? {
                eprintln!("once it is approved, run 'kagi identity create ... --approval {}' again with the same arguments", p.id);
                return Err(p.into());
            }
            let token = Zeroizing::new(
                resp.get("token")
                    .and_then(Value::as_str)
                    .context("the server's answer has no token")?
                    .to_string(),
            );
            say!("{}", token.as_str());
            eprintln!("created {kind} identity '{name}'. The token above is shown only once: store it now (e.g. as KAGI_TOKEN in the pipeline's secrets).");
            Ok(())
        }
        IdentityCommand::SetPassword => {
            let password = read_new_password()?;
            let resp: Value = client.post_json(
                "/api/v1/password",
                &json!({ "password": password.as_str() }),
            )?;
            let name = resp
                .get("password_set")
                .and_then(Value::as_str)
                .unwrap_or("you");
            say!("console password set for '{name}': sign in at /ui with this name");
            Ok(())
        }
        IdentityCommand::List => show(
            client.get_json("/api/v1/identities")?,
            |list: Vec<kagi_hsm_core::CredentialInfo>| identity_table(&list),
        ),
        IdentityCommand::Unlock { id } => {
            let _: Value =
                client.post_json(&format!("/api/v1/identities/{id}/unlock"), &json!({}))?;
            say!("unlocked identity {id}");
            Ok(())
        }
        IdentityCommand::Revoke { id, approval } => {
            let resp: Value = client.post_json(
                &format!("/api/v1/identities/{id}/revoke"),
                &json!({ "approval": approval }),
            )?;
            if let Some(p) = pending_approval(&resp)? {
                eprintln!(
                    "once it is approved, run 'kagi identity revoke {id} --approval {}'",
                    p.id
                );
                return Err(p.into());
            }
            say!("revoked identity {id}");
            Ok(())
        }
    }
}

fn identity_table(list: &[kagi_hsm_core::CredentialInfo]) -> Result<()> {
    say!(
        "{:<24}  {:<9}  {:<18}  {:<8}  {:<20}  ROLES",
        "NAME",
        "KIND",
        "ID",
        "STATE",
        "EXPIRES"
    );
    for c in list {
        let roles: Vec<&str> = c.roles.iter().map(|r| r.as_str()).collect();
        let state = if c.revoked {
            "revoked"
        } else if c.locked {
            "locked"
        } else {
            "active"
        };
        say!(
            "{:<24}  {:<9}  {:<18}  {:<8}  {:<20}  {}",
            c.name,
            c.kind.as_str(),
            c.id,
            state,
            time_text(c.expires_at),
            roles.join(",")
        );
    }
    Ok(())
}

/// SHA-256 (hex) of the first certificate in a PEM file, or of a DER file.
fn certificate_sha256(path: &Path) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let der = if bytes.starts_with(b"-----") {
        rustls::pki_types::CertificateDer::from_pem_slice(&bytes)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?
            .as_ref()
            .to_vec()
    } else {
        bytes
    };
    Ok(hex::encode(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref(),
    ))
}

/// The new console password: at a terminal, typed twice without echo; otherwise the first line
/// of standard input (a pipe or a file), as scripts give it.
fn read_new_password() -> Result<Zeroizing<String>> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = Zeroizing::new(
            rpassword::prompt_password("new console password: ")
                .context("cannot read the password from the terminal")?,
        );
        let again = Zeroizing::new(
            rpassword::prompt_password("the same again: ")
                .context("cannot read the password from the terminal")?,
        );
        if *first != *again {
            anyhow::bail!("the two passwords differ: nothing was changed; run the command again");
        }
        return Ok(first);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}
