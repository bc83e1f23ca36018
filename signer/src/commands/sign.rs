//! `kagi sign`: hash a file here, have the service sign the digest, save what comes back.

use anyhow::{bail, Context, Result};
use base64::Engine;
use kagi_hsm_core::DigestAlg;
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::Write;
use std::str::FromStr;

use super::output::say;
use crate::cli::SignArgs;
use crate::client::Client;
use crate::digest_file;

#[derive(Deserialize)]
struct SignResponse {
    signature: String,
    algorithm: Option<String>,
    usage_count: Option<i64>,
    usage_limit: Option<i64>,
    #[serde(default)]
    tlog_index: Option<i64>,
    #[serde(default)]
    bundle: Option<Value>,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
}

pub(super) fn sign(args: &SignArgs) -> Result<()> {
    // The format goes to the server as asked: the policy rules on it before anything else.
    let client = Client::from_env()?;
    // SHA-256 unless asked otherwise, for every key type; the digest algorithm is sent
    // along, so client and server always agree on what was hashed.
    let digest_alg = match &args.digest {
        Some(d) => DigestAlg::from_str(d)
            .map_err(|e| crate::client::ClientError::new(e.code(), e.to_string()))?,
        None => DigestAlg::Sha256,
    };
    let digest = digest_file::digest_file(&args.file, digest_alg)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut body = json!({
        "digest": hex::encode(&digest),
        "digest_alg": digest_alg.as_str(),
        "format": args.format,
    });
    match (&args.key, &args.wrapped_key) {
        (Some(key), _) => body["key"] = json!(key),
        (None, Some(path)) => {
            let wrapped =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            body["wrapped_key"] = json!(base64::engine::general_purpose::STANDARD.encode(wrapped));
            body["alg"] = json!(args.alg);
        }
        (None, None) => bail!("name the key: --key LABEL, or --wrapped-key FILE --alg ALG"),
    }
    if let Some(p) = &args.padding {
        body["padding"] = json!(p);
    }
    if args.timestamp {
        body["timestamp"] = json!(true);
    }
    if let Some(path) = &args.key_auth_file {
        let password = super::keys::read_key_password(Some(path), "key password", false)?;
        body["key_password"] = json!(password.as_str());
    }
    let resp: SignResponse = client.post_json("/api/v1/sign", &body)?;
    if let Some(bundle) = &resp.bundle {
        // The bundle carries its own log proof; no sidecar.
        let mut text = serde_json::to_string_pretty(bundle)?;
        text.push('\n');
        std::fs::write(&args.out, text)
            .with_context(|| format!("cannot write {}", args.out.display()))?;
        say!(
            "signed {} with {} ({}): Sigstore bundle {} (log entry {})\nverify with: sigstore verify identity --bundle {} --cert-identity {} --cert-oidc-issuer {} {}",
            args.file.display(),
            args.key.as_deref().unwrap_or("?"),
            resp.algorithm.as_deref().unwrap_or("?"),
            args.out.display(),
            resp.tlog_index.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
            args.out.display(),
            resp.identity.as_deref().unwrap_or("?"),
            resp.issuer.as_deref().unwrap_or("?"),
            args.file.display(),
        );
        return Ok(());
    }
    let signature = base64::engine::general_purpose::STANDARD
        .decode(&resp.signature)
        .context("the server's signature is not base64")?;
    std::fs::write(&args.out, &signature)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(index) = resp.tlog_index {
        // The log proof travels beside the signature, so `kagi verify` can check it offline.
        match crate::verify_cli::fetch_log_proof(&client, index) {
            Ok(proof) => {
                let path = crate::verify_cli::sidecar(&args.out);
                std::fs::write(&path, proof)
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            Err(e) => {
                eprintln!("warning: no transparency-log proof saved for entry {index}: {e:#}")
            }
        }
    }
    let uses = match (resp.usage_count, resp.usage_limit) {
        (Some(c), Some(l)) => format!("{c}/{l}"),
        (Some(c), None) => format!("{c}/∞"),
        _ => "?".into(),
    };
    say!(
        "signed {} with {} ({}, {}): {} (uses {uses})",
        args.file.display(),
        args.key.as_deref().unwrap_or("the wrapped key"),
        resp.algorithm.as_deref().unwrap_or("?"),
        digest_alg.as_str(),
        args.out.display()
    );
    Ok(())
}
