//! What each `kagi` command does. This is the binary's edge, so errors are `anyhow`; errors that
//! came from the service keep their stable code (see `main::report`).

use anyhow::{bail, Context, Result};
use base64::Engine;
use hsm_core::{DigestAlg, KeyInfo};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

use crate::cli::{
    ApprovalCommand, AuditCommand, Cli, Command, CredentialCommand, IdentityCommand, InitArgs,
    KeyAttrArgs, KeyCommand, KeyCreateArgs, KeyImportArgs, PartitionCommand, PolicyCommand,
    ServeArgs, SignArgs, UnsealArgs,
};
use crate::client::Client;
use crate::config::{ServeConfig, DEFAULT_DATA_DIR};
use crate::instance::{self, DataDir, Startup};
use crate::pki::Pki;
use crate::tls::TlsFiles;
use crate::{digest_file, pem, secret_files, server, tls};

/// `println!` panics when stdout is closed (`kagi audit export | head`); this returns the error
/// instead, and `main` treats a broken pipe as a normal end.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Init(args) => init(&args),
        Command::Unseal(args) => unseal(&args),
        Command::Key(cmd) => key(cmd),
        Command::Sign(args) => sign(&args),
        Command::Audit(cmd) => audit(cmd),
        Command::Credential(cmd) => credential(cmd),
        Command::Partition(cmd) => partition(cmd),
        Command::Identity(cmd) => identity(cmd),
        Command::Policy(cmd) => policy_cmd(cmd),
        Command::Approval(cmd) => approval(cmd),
        Command::Ca(cmd) => crate::ca_cli::run(cmd),
        Command::Log(cmd) => crate::log_cli::run(cmd),
        Command::Verify(args) => crate::verify_cli::run(&args),
    }
}

// ------------------------------------------------------------------ serve, init, unseal

fn serve(args: &ServeArgs) -> Result<()> {
    let cfg = ServeConfig::resolve(args)?;
    let data = DataDir::new(&cfg.data_dir);
    // The data folder holds TLS material and development secrets even when the store is
    // PostgreSQL.
    instance::ensure_root(&data)?;
    let hsm = instance::open(&data, cfg.database_url.as_deref(), cfg.max_failed_logins)
        .context("cannot open the HSM store")?;
    let startup = instance::bring_up(&hsm, &data)?;
    if !secret_files::is_private_dir(&data.root).unwrap_or(false) {
        log::warn!(
            "{} can be read by other users: it holds secrets; run 'chmod 700 {}'",
            data.root.display(),
            data.root.display()
        );
    }
    let pki =
        std::sync::Arc::new(Pki::new(&cfg.public_url).context("built-in certificate profiles")?);
    let tls_files = TlsFiles::in_data_dir(&data.root);
    let tls_from_ca = !hsm.is_sealed() && own_ca_tls(&hsm, &data, &pki, &tls_files)?;
    if !tls_from_ca && tls::ensure_material(&tls_files)? {
        log::info!(
            "made a new local TLS CA; clients must trust {}",
            tls_files.ca_cert.display()
        );
    }
    let tls_config = tls::server_config(&tls_files)?;
    let banner_data = data.clone();
    let sealed = hsm.is_sealed();
    let listeners = server::Listeners {
        https: cfg.listen.clone(),
        public_http: cfg.public_listen.clone(),
    };
    let est = server::est::EstSettings {
        ca: cfg.est_ca.clone(),
        profile: cfg.est_profile.clone(),
    };
    let public_url = cfg.public_url.clone();
    let signing_ca = cfg.signing_ca.clone();
    server::run(hsm, pki, est, signing_ca, tls_config, &listeners, move |addrs, public| {
        print_banner(&banner_data, &tls_files, &startup, sealed, addrs);
        if let Some(a) = public.first() {
            eprintln!("  CRLs, CA certificates and OCSP (plain HTTP): http://{a} (certificates name {public_url})");
        }
    })
    .with_context(|| format!("cannot serve on {}", cfg.listen))
}

/// A development instance gets its own CA hierarchy on first start, and from then on its TLS
/// certificate comes from that CA ('services' intermediate), with the root in tls-ca.pem.
/// Returns whether TLS now comes from kagi's CA.
fn own_ca_tls(hsm: &hsm_core::Hsm, data: &DataDir, pki: &Pki, files: &TlsFiles) -> Result<bool> {
    let token_path = data.admin_token();
    if token_path.is_file() {
        let token = Zeroizing::new(
            std::fs::read_to_string(&token_path)
                .with_context(|| format!("cannot read {}", token_path.display()))?,
        );
        match hsm.login(token.trim()) {
            Ok(admin) => match crate::pki::ensure_dev_hierarchy(hsm, &admin, &pki.urls) {
                Ok(true) => log::info!(
                    "made the development CA hierarchy: root, devices, code-signing, services"
                ),
                Ok(false) => {}
                Err(e) => log::warn!("could not make the development CA hierarchy: {e}"),
            },
            Err(e) => log::warn!(
                "{} was not accepted ({e}); no development CAs made",
                token_path.display()
            ),
        }
    }
    let services = match hsm.ca(crate::pki::DEV_SERVICES) {
        Ok(c) => c,
        Err(_) => return Ok(false),
    };
    let chain = pki.chain(hsm, &services.name)?;
    let Some(root) = chain.last() else {
        return Ok(false);
    };
    let root_pem = ca::x509::pem("CERTIFICATE", root)?;
    if tls::issued_under(files, &root_pem) {
        return Ok(true);
    }
    let session = ca::service_session(&services.partition);
    tls::issue_from_ca(files, &root_pem, |csr| {
        let issued = pki
            .issue(
                hsm,
                &session,
                &services.name,
                "tls-server",
                csr,
                &ca::IssueOptions::default(),
                &[],
                json!({"for": "kagi TLS server"}),
            )
            .map_err(|e| e.to_string())?;
        Ok((issued.der, chain.clone()))
    })?;
    log::info!(
        "issued a new TLS server certificate from CA '{}'; clients trust {}",
        services.name,
        files.ca_cert.display()
    );
    Ok(true)
}

fn print_banner(
    data: &DataDir,
    tls: &TlsFiles,
    startup: &Startup,
    sealed: bool,
    addrs: &[SocketAddr],
) {
    let shares = absolute(&data.shares_dir());
    match startup {
        Startup::CreatedDevelopment | Startup::SelfUnsealed { .. } => {
            let what = match startup {
                Startup::SelfUnsealed { shares_used } => {
                    format!("unsealed a DEVELOPMENT instance from {shares_used} share file(s)")
                }
                _ => "created a DEVELOPMENT instance".to_string(),
            };
            eprintln!(
                "\n************************************************************************\n\
                 * kagi {what}.\n\
                 * It UNSEALS ITSELF from the share(s) stored on disk in\n\
                 *   {}\n\
                 * Anyone who can read that folder and the database holds every key.\n\
                 * Do not use this instance for real keys: for production run\n\
                 * 'kagi init --shares N --threshold M' on an empty store and 'kagi unseal'.\n\
                 ************************************************************************\n",
                shares.display()
            );
        }
        Startup::Sealed => {}
    }
    let url = addrs
        .first()
        .map(|a| client_url(*a))
        .unwrap_or_else(|| "https://127.0.0.1:8443".into());
    let token = absolute(&data.admin_token());
    let ca = absolute(&tls.ca_cert);
    eprintln!("kagi is listening on {url}");
    eprintln!("  console:      {url}/ui");
    eprintln!("  TLS CA:       {}", ca.display());
    if token.is_file() {
        eprintln!("  admin token:  {}", token.display());
    }
    if sealed {
        eprintln!("  the HSM is SEALED: submit shares with 'kagi unseal' until it opens");
    }
    if url == crate::client::DEFAULT_URL {
        eprintln!("client commands run from this folder need no settings; elsewhere set:");
    } else {
        eprintln!(
            "client commands need these settings (defaults fit only port 8443 in this folder):"
        );
    }
    eprintln!("  export KAGI_URL={url}");
    eprintln!("  export KAGI_CA={}", ca.display());
    if token.is_file() {
        eprintln!("  export KAGI_TOKEN=\"$(cat {})\"", token.display());
    } else {
        eprintln!("  export KAGI_TOKEN=<your token>");
    }
}

/// What a local client should type to reach `addr`: a wildcard listen address is reached
/// through loopback, which the server certificate names.
fn client_url(addr: SocketAddr) -> String {
    let ip = addr.ip();
    match ip {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            format!("https://127.0.0.1:{}", addr.port())
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => format!("https://[::1]:{}", addr.port()),
        std::net::IpAddr::V6(_) => format!("https://[{ip}]:{}", addr.port()),
        std::net::IpAddr::V4(_) => format!("https://{ip}:{}", addr.port()),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn init(args: &InitArgs) -> Result<()> {
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let data = DataDir::new(&root);
    let hsm = instance::open(
        &data,
        args.database_url.as_deref(),
        crate::config::DEFAULT_MAX_FAILED_LOGINS,
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

fn unseal(args: &UnsealArgs) -> Result<()> {
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

// ------------------------------------------------------------------ keys

fn key(cmd: KeyCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        KeyCommand::Create(args) => key_create(&client, &args),
        KeyCommand::List => key_list(&client),
        KeyCommand::Show { name } => {
            let info: KeyInfo = client.get_json(&key_path(&name))?;
            print_key(&info)
        }
        KeyCommand::Destroy { name } => {
            let resp = client.delete(&key_path(&name))?;
            if !print_if_pending(&resp)? {
                say!("destroyed key {name}");
            }
            Ok(())
        }
        KeyCommand::SetLimit { name, usage_limit } => {
            let resp: Value = client.put_json(
                &format!("{}/usage-limit", key_path(&name)),
                &json!({ "usage_limit": usage_limit }),
            )?;
            if !print_if_pending(&resp)? {
                let shown = usage_limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into());
                say!("usage limit of {name} is now {shown}");
            }
            Ok(())
        }
        KeyCommand::Public { name, out } => {
            let pem = client.get_text(&format!("{}/public", key_path(&name)))?;
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
            if print_if_pending(&resp)? {
                eprintln!(
                    "once approved, collect it with: kagi approval show ID -o {}",
                    out.display()
                );
                return Ok(());
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
    if let Some(ops) = &attrs.operations {
        body["operations"] = json!(ops);
    }
    body
}

fn key_create(client: &Client, args: &KeyCreateArgs) -> Result<()> {
    let info: KeyInfo = client.post_json(
        "/api/v1/keys",
        &key_body(&args.name, &args.alg, &args.attrs),
    )?;
    say!("created key {} ({})", info.label, info.algorithm);
    print_key(&info)
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
    Ok(hsm_core::wrap_for_import(spki.as_ref(), &pkcs8)?)
}

fn key_import(client: &Client, args: &KeyImportArgs) -> Result<()> {
    let wrapped = wrap_to_import_key(client, &args.pkcs8)?;
    let mut body = key_body(&args.name, &args.alg, &args.attrs);
    body["wrapped"] = json!(base64::engine::general_purpose::STANDARD.encode(wrapped));
    let info: KeyInfo = client.post_json("/api/v1/keys/import", &body)?;
    say!("imported key {} ({})", info.label, info.algorithm);
    print_key(&info)
}

fn uses(info: &KeyInfo) -> String {
    match info.usage_limit {
        Some(limit) => format!("{}/{}", info.usage_count, limit),
        None => format!("{}/∞", info.usage_count),
    }
}

fn key_list(client: &Client) -> Result<()> {
    let keys: Vec<KeyInfo> = client.get_json("/api/v1/keys")?;
    let width = keys
        .iter()
        .map(|k| k.label.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    say!("{:<width$}  {:<9}  {:<9}  USES", "NAME", "ALG", "STATE");
    for k in &keys {
        say!(
            "{:<width$}  {:<9}  {:<9}  {}",
            k.label,
            k.algorithm.as_str(),
            if k.active {
                k.state.as_str()
            } else if k.state == hsm_core::KeyState::Active {
                "inactive"
            } else {
                k.state.as_str()
            },
            uses(k)
        );
    }
    Ok(())
}

fn time_text(unix: Option<i64>) -> String {
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

fn print_key(k: &KeyInfo) -> Result<()> {
    let ops: Vec<&str> = k.operations.iter().map(|o| o.as_str()).collect();
    say!("name:                  {}", k.label);
    say!("id:                    {}", k.id);
    say!("partition:             {}", k.partition);
    say!("algorithm:             {}", k.algorithm);
    say!("state:                 {}", k.state);
    say!(
        "usable now:            {}",
        if k.active {
            "yes"
        } else {
            "no (disabled, outside its validity window, or usage limit reached)"
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
    say!("not before:            {}", time_text(k.not_before));
    say!("not after:             {}", time_text(k.not_after));
    say!("exportable under wrap: {}", k.exportable_under_wrap);
    say!("trusted:               {}", k.trusted);
    say!("never extractable:     {}", k.never_extractable);
    say!("generated in kagi:     {}", k.local);
    say!("created:               {}", time_text(Some(k.created_at)));
    Ok(())
}

fn write_or_print(out: Option<&Path>, bytes: &[u8]) -> Result<()> {
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

// ------------------------------------------------------------------ sign

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

fn sign(args: &SignArgs) -> Result<()> {
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

// ------------------------------------------------------------------ audit

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

fn audit(cmd: AuditCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        AuditCommand::Verify => {
            let report: AuditReport = client.post_json("/api/v1/audit/verify", &json!({}))?;
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

// ------------------------------------------------------------------ credentials

fn credential(cmd: CredentialCommand) -> Result<()> {
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
        CredentialCommand::List => {
            let credentials: Vec<hsm_core::CredentialInfo> =
                client.get_json("/api/v1/credentials")?;
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
        }
    }
}

// ------------------------------------------------------------------ partitions

fn partition(cmd: PartitionCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        PartitionCommand::Create { name } => {
            let _: Value = client.post_json("/api/v1/partitions", &json!({ "name": name }))?;
            say!("created partition {name}");
            eprintln!("give it users with: kagi credential create --partition {name} --name NAME --roles officer,user");
            Ok(())
        }
        PartitionCommand::List => {
            let names: Vec<String> = client.get_json("/api/v1/partitions")?;
            for n in names {
                say!("{n}");
            }
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ approvals shown

/// If an answer says the change waits for approvals, say so and return true.
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

pub(crate) fn print_if_pending(resp: &Value) -> Result<bool> {
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

fn print_approval(a: &Value) -> Result<()> {
    let get = |k: &str| {
        a.get(k)
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .unwrap_or_default()
    };
    say!("request:      {}", get("id"));
    say!("status:       {}", get("status"));
    say!(
        "action:       {}",
        a.get("action").map(|v| v.to_string()).unwrap_or_default()
    );
    say!("requested by: {}", get("requested_by"));
    say!(
        "approvals:    {} of {} ({})",
        a.get("approved_by")
            .and_then(Value::as_array)
            .map(|v| v.len())
            .unwrap_or(0),
        get("required"),
        get("approved_by")
    );
    say!("approvers:    {}", get("approvers"));
    say!(
        "expires at:   {}",
        time_text(a.get("expires_at").and_then(Value::as_i64))
    );
    say!("summary:\n{}", get("summary"));
    Ok(())
}

fn approval(cmd: ApprovalCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        ApprovalCommand::List => {
            let list: Vec<Value> = client.get_json("/api/v1/approvals")?;
            say!(
                "{:<18}  {:<9}  {:<16}  {:<8}  REQUESTED BY",
                "ID",
                "STATUS",
                "ACTION",
                "APPROVED"
            );
            for a in &list {
                let n = a
                    .get("approved_by")
                    .and_then(Value::as_array)
                    .map(|v| v.len())
                    .unwrap_or(0);
                say!(
                    "{:<18}  {:<9}  {:<16}  {:<8}  {}",
                    a.get("id").and_then(Value::as_str).unwrap_or("?"),
                    a.get("status").and_then(Value::as_str).unwrap_or("?"),
                    a.pointer("/action/kind")
                        .and_then(Value::as_str)
                        .unwrap_or("?"),
                    format!(
                        "{n}/{}",
                        a.get("required").and_then(Value::as_i64).unwrap_or(0)
                    ),
                    a.get("requested_by").and_then(Value::as_str).unwrap_or("?"),
                );
            }
            Ok(())
        }
        ApprovalCommand::Show { id, out } => {
            let a: Value = client.get_json(&format!("/api/v1/approvals/{id}"))?;
            print_approval(&a)?;
            if let Some(path) = out {
                let wrapped = a.get("wrapped_key").and_then(Value::as_str).context(
                    "this request has no wrapped key for you: it is not an executed export you requested",
                )?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(wrapped)
                    .context("the server's wrapped key is not base64")?;
                std::fs::write(&path, bytes)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                say!("wrote the wrapped key to {}", path.display());
            }
            Ok(())
        }
        ApprovalCommand::Approve { id } => {
            let a: Value =
                client.post_json(&format!("/api/v1/approvals/{id}/approve"), &json!({}))?;
            print_approval(&a)
        }
        ApprovalCommand::Reject { id } => {
            let a: Value =
                client.post_json(&format!("/api/v1/approvals/{id}/reject"), &json!({}))?;
            print_approval(&a)
        }
    }
}

// ------------------------------------------------------------------ identities

fn identity(cmd: IdentityCommand) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        IdentityCommand::Create {
            name,
            kind,
            roles,
            expires,
            partition,
            client_cert,
        } => {
            let mut body = json!({ "name": name, "kind": kind });
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
        IdentityCommand::List => {
            let list: Vec<hsm_core::CredentialInfo> = client.get_json("/api/v1/identities")?;
            say!(
                "{:<24}  {:<9}  {:<18}  {:<8}  {:<20}  ROLES",
                "NAME",
                "KIND",
                "ID",
                "STATE",
                "EXPIRES"
            );
            for c in &list {
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
        IdentityCommand::Unlock { id } => {
            let _: Value =
                client.post_json(&format!("/api/v1/identities/{id}/unlock"), &json!({}))?;
            say!("unlocked identity {id}");
            Ok(())
        }
        IdentityCommand::Revoke { id } => {
            let _: Value =
                client.post_json(&format!("/api/v1/identities/{id}/revoke"), &json!({}))?;
            say!("revoked identity {id}");
            Ok(())
        }
    }
}

// ------------------------------------------------------------------ policies

fn read_policy(file: &Path) -> Result<String> {
    std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))
}

fn policy_cmd(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Validate { file } => {
            let text = read_policy(&file)?;
            match policy::PolicyDocument::parse(&text) {
                Ok(doc) => {
                    say!(
                        "{}: valid ({} quota(s), quorum: {})",
                        file.display(),
                        doc.quotas.len(),
                        doc.quorum
                            .as_ref()
                            .map(|q| format!("{} of {}", q.required, q.approvers.len()))
                            .unwrap_or_else(|| "none".into())
                    );
                    Ok(())
                }
                Err(e) => Err(crate::client::ClientError::new(
                    "policy_invalid",
                    format!("{}: {e}", file.display()),
                )
                .into()),
            }
        }
        PolicyCommand::Submit { file } => {
            let text = read_policy(&file)?;
            let client = Client::from_env()?;
            let resp: Value = client.post_text("/api/v1/policies", "application/toml", &text)?;
            let v = resp.get("version").and_then(Value::as_i64).unwrap_or(0);
            say!("submitted policy version {v}");
            eprintln!("it takes effect when activated: kagi policy activate {v}");
            Ok(())
        }
        PolicyCommand::List => {
            let client = Client::from_env()?;
            let list: Vec<Value> = client.get_json("/api/v1/policies")?;
            say!(
                "{:<8}  {:<7}  {:<20}  SUBMITTED BY",
                "VERSION",
                "ACTIVE",
                "SUBMITTED AT"
            );
            for p in &list {
                say!(
                    "{:<8}  {:<7}  {:<20}  {}",
                    p.get("version").and_then(Value::as_i64).unwrap_or(0),
                    if p.get("active").and_then(Value::as_bool).unwrap_or(false) {
                        "yes"
                    } else {
                        ""
                    },
                    time_text(p.get("submitted_at").and_then(Value::as_i64)),
                    p.get("submitted_by").and_then(Value::as_str).unwrap_or("?"),
                );
            }
            Ok(())
        }
        PolicyCommand::Show { version } => {
            let client = Client::from_env()?;
            let p: Value = client.get_json(&format!("/api/v1/policies/{version}"))?;
            say!("{}", p.get("text").and_then(Value::as_str).unwrap_or(""));
            Ok(())
        }
        PolicyCommand::Activate { version } => {
            let client = Client::from_env()?;
            let resp: Value =
                client.post_json(&format!("/api/v1/policies/{version}/activate"), &json!({}))?;
            if !print_if_pending(&resp)? {
                say!("policy version {version} is active");
            }
            Ok(())
        }
    }
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
