//! `kagi init` (a production instance's shares and admin token), `kagi unseal`, and the share
//! holders' break-glass `kagi admin recover`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use zeroize::Zeroizing;

use super::output::say;
use crate::cli::{InitArgs, RecoverArgs, UnsealArgs};
use crate::client::Client;
use crate::config::DEFAULT_DATA_DIR;
use crate::instance::{self, DataDir};

pub(super) fn init(args: &InitArgs) -> Result<()> {
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let data = DataDir::new(&root);
    let hsm = instance::open(
        &data,
        args.database_url.as_deref(),
        kagi_hsm_core::FAILED_LOGIN_WINDOW,
    )
    .context("cannot open the HSM store")?;
    let out = hsm.init(args.shares, args.threshold)?;
    let mut stdout = std::io::stdout().lock();
    for share in &out.shares {
        writeln!(stdout, "{}", share.as_str())?;
    }
    writeln!(stdout, "{}", out.admin_token.as_str())?;
    stdout.flush()?;
    eprintln!(
        "kagi is initialized. Above: {} unseal shares (one per line; any {} of them unseal), then the admin token.\n\
         They are shown only this once and were written nowhere: hand each share to a different custodian now.\n\
         Start the service with 'kagi serve' (it starts sealed), then run 'kagi unseal' {} times.",
        out.shares.len(),
        out.threshold,
        out.threshold
    );
    Ok(())
}

#[derive(Deserialize)]
struct UnsealProgress {
    have: usize,
    need: usize,
    unsealed: bool,
}

pub(super) fn unseal(args: &UnsealArgs) -> Result<()> {
    let share = match &args.share_file {
        Some(path) => Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read share file {}", path.display()))?,
        ),
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("unseal share: ");
                std::io::stderr().flush()?;
            }
            let mut line = Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut line)?;
            line
        }
    };
    let share = Zeroizing::new(share.trim().to_string());
    if share.is_empty() {
        bail!("no share given: pass --share-file FILE or type the share line");
    }
    let client = Client::from_env_without_token()?;
    let progress: UnsealProgress =
        client.post_json("/api/v1/sys/unseal", &json!({ "share": share.as_str() }))?;
    if progress.unsealed {
        say!("unsealed");
    } else {
        say!(
            "share accepted: {} of {} — {} more needed",
            progress.have,
            progress.need,
            progress.need.saturating_sub(progress.have)
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct RecoveredCredential {
    id: String,
    name: String,
}

#[derive(Deserialize)]
struct RecoverAnswer {
    credential: RecoveredCredential,
    token: Option<String>,
}

pub(super) fn recover(args: &RecoverArgs) -> Result<()> {
    let mut shares: Vec<Zeroizing<String>> = Vec::new();
    for path in &args.share_files {
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read share file {}", path.display()))?,
        );
        shares.push(Zeroizing::new(text.trim().to_string()));
    }
    if args.share_files.is_empty() {
        let terminal = std::io::stdin().is_terminal();
        loop {
            if terminal {
                eprint!("unseal share {} (empty line to finish): ", shares.len() + 1);
                std::io::stderr().flush()?;
            }
            let mut line = Zeroizing::new(String::new());
            if std::io::stdin().read_line(&mut line)? == 0 || line.trim().is_empty() {
                break;
            }
            shares.push(Zeroizing::new(line.trim().to_string()));
        }
    }
    if shares.is_empty() {
        bail!("no shares given: pass --share-file FILE for each, or type one share per line");
    }
    let texts: Vec<&str> = shares.iter().map(|s| s.as_str()).collect();
    let client = Client::from_env_without_token()?;
    let mut answer: RecoverAnswer = client.post_json(
        "/api/v1/sys/recover",
        &json!({ "shares": texts, "credential": args.credential, "new_token": args.new_token }),
    )?;
    match answer.token.take().map(Zeroizing::new) {
        Some(token) => {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", token.as_str())?;
            stdout.flush()?;
            eprintln!(
                "administrator '{}' ({}) has a new token, printed above once; the old token no longer works",
                answer.credential.name, answer.credential.id
            );
        }
        None => say!(
            "administrator '{}' ({}) is unlocked",
            answer.credential.name,
            answer.credential.id
        ),
    }
    Ok(())
}
