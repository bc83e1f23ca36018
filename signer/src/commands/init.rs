//! `kagi init` (a production instance's shares, encrypted to their custodians or printed once,
//! and its admin token), `kagi unseal`, and the share holders' break-glass `kagi admin recover`.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use zeroize::Zeroizing;

use super::custodians;
use super::output::{json_mode, print_json, say};
use crate::cli::{InitArgs, RecoverArgs, UnsealArgs};
use crate::client::Client;
use crate::config::DEFAULT_DATA_DIR;
use crate::instance::{self, DataDir};
use crate::secret_files::write_new_private_file;

pub(super) fn init(args: &InitArgs) -> Result<()> {
    // Everything a custodian needs is checked before the store is touched: once init has run,
    // a share that cannot be encrypted or written is a share lost.
    let custodians = custodians_for(args)?;
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let data = DataDir::new(&root);
    let hsm = instance::open(
        &data,
        args.database_url.as_deref(),
        kagi_hsm_core::FAILED_LOGIN_WINDOW,
        kagi_hsm_core::PASSWORD_LOCK,
        None,
    )
    .context("cannot open the HSM store")?;
    let out = hsm.init(args.shares, args.threshold)?;
    match custodians {
        Some(custodians) => write_encrypted_shares(&custodians, &out),
        None => print_plain_shares(&out),
    }
}

/// One custodian: the public key file named on the command line, its key, and the file its
/// share goes to.
struct Custodian {
    recipient_file: PathBuf,
    recipient: age::x25519::Recipient,
    share_file: PathBuf,
}

fn custodians_for(args: &InitArgs) -> Result<Option<Vec<Custodian>>> {
    if args.share_recipients.is_empty() {
        return Ok(None);
    }
    if args.share_recipients.len() != args.shares {
        bail!(
            "--share-recipients names {} file(s) but --shares is {}: give one custodian's public key file per share; nothing was initialized",
            args.share_recipients.len(),
            args.shares
        );
    }
    let mut custodians = Vec::with_capacity(args.shares);
    for (i, file) in args.share_recipients.iter().enumerate() {
        custodians.push(Custodian {
            recipient_file: file.clone(),
            recipient: custodians::read_recipient(file)?,
            share_file: args.share_dir.join(format!("share-{}.age", i + 1)),
        });
    }
    std::fs::create_dir_all(&args.share_dir)
        .with_context(|| format!("cannot create {}", args.share_dir.display()))?;
    if let Some(c) = custodians.iter().find(|c| c.share_file.exists()) {
        bail!(
            "{} already exists (the shares of an earlier init?): move it away or pick another --share-dir; nothing was initialized",
            c.share_file.display()
        );
    }
    Ok(Some(custodians))
}

fn write_encrypted_shares(custodians: &[Custodian], out: &kagi_hsm_core::InitOutput) -> Result<()> {
    // Encrypt every share before writing any, so a failure leaves no partial set behind.
    let mut sealed = Vec::with_capacity(custodians.len());
    for (c, share) in custodians.iter().zip(&out.shares) {
        sealed.push(custodians::encrypt_share(
            &c.recipient,
            &format!("{}\n", share.as_str()),
        )?);
    }
    let mut stdout = std::io::stdout().lock();
    for (c, text) in custodians.iter().zip(&sealed) {
        write_new_private_file(&c.share_file, text.as_bytes())
            .with_context(|| format!("cannot write {}", c.share_file.display()))?;
        writeln!(
            stdout,
            "{}  (for the holder of {})",
            c.share_file.display(),
            c.recipient_file.display()
        )?;
    }
    writeln!(stdout, "{}", out.admin_token.as_str())?;
    stdout.flush()?;
    eprintln!(
        "kagi is initialized. Above: the {} share files (each encrypted to one custodian; any {} of them unseal), then the admin token, shown only this once.\n\
         Hand each file to its custodian. Start the service with 'kagi serve' (it starts sealed); then {} custodians each run\n\
         'kagi unseal --share-file share-N.age --identity THEIR.key'.",
        custodians.len(),
        out.threshold,
        out.threshold
    );
    Ok(())
}

fn print_plain_shares(out: &kagi_hsm_core::InitOutput) -> Result<()> {
    eprintln!(
        "warning: without --share-recipients the unseal shares are printed in plaintext; \
         --share-recipients a.pub b.pub ... encrypts each to its custodian's age key instead"
    );
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
    let identities = custodians::read_identities(&args.identity)?;
    let share = match &args.share_file {
        Some(path) => custodians::read_share(path, &identities, &args.identity)?,
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
    let answer: serde_json::Value =
        client.post_json("/api/v1/sys/unseal", &json!({ "share": share.as_str() }))?;
    if json_mode() {
        return print_json(&answer);
    }
    let progress: UnsealProgress = serde_json::from_value(answer)
        .context("the server's answer is not the unseal progress this kagi expects")?;
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
    let identities = custodians::read_identities(&args.identity)?;
    let mut shares: Vec<Zeroizing<String>> = Vec::new();
    for path in &args.share_files {
        shares.push(custodians::read_share(path, &identities, &args.identity)?);
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
