//! `kagi serve`: open the store, bring the instance up, TLS, and the banner that says how to
//! reach it.

use anyhow::{Context, Result};
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::cli::ServeArgs;
use crate::config::ServeConfig;
use crate::instance::{self, DataDir, Startup};
use crate::tls::TlsFiles;
use crate::{secret_files, server, tls};
use kagi_ca::service::Pki;

pub(super) fn serve(args: &ServeArgs) -> Result<()> {
    let cfg = ServeConfig::resolve(args)?;
    if args.print_config {
        println!("{}", serde_json::to_string_pretty(&cfg.to_json())?);
        return Ok(());
    }
    // An operator's own certificate is checked before the data folder is made, so a wrong file
    // leaves nothing behind.
    let own_tls = match &cfg.own_tls {
        Some(own) => {
            let config = tls::own_server_config(own)?;
            let missing = tls::own_cert_missing_names(own, &cfg.hostnames);
            if !missing.is_empty() {
                log::warn!(
                    "{} does not name {}: clients using that name will refuse the connection",
                    own.cert.display(),
                    missing.join(", ")
                );
            }
            Some((config, own.cert.clone()))
        }
        None => None,
    };
    // So is the syslog collector's CA.
    let syslog = match &cfg.syslog {
        Some(target) => Some((target, crate::syslog::client_config(target)?)),
        None => None,
    };
    let data = DataDir::new(&cfg.data_dir);
    // The data folder holds TLS material and development secrets even when the store is
    // PostgreSQL.
    instance::ensure_root(&data)?;
    let witnesses = crate::witness_client::witness_set(
        &cfg.witnesses,
        cfg.witness_quorum,
        cfg.witness_timeout,
    )?;
    if witnesses.is_none() {
        eprintln!(
            "note: no witnesses are configured, so a restore of the database from an older backup (which gives spent key uses back) is not detected; configure witnesses with --witness URL=VKEY (README, \"Witnessed log\")"
        );
    } else {
        log::info!(
            "witnessed log: results are released once {} of {} witnesses cosign",
            cfg.witness_quorum,
            cfg.witnesses.len()
        );
    }
    let hsm = instance::open(
        &data,
        cfg.database_url.as_deref(),
        cfg.failed_login_window,
        cfg.console_lock,
        witnesses,
    )
    .context("cannot open the HSM store")?;
    let startup = instance::bring_up(&hsm, &data)?;
    if !secret_files::is_private_dir(&data.root).unwrap_or(false) {
        log::warn!(
            "{} can be read by other users: it holds secrets; run 'chmod 700 {}'",
            data.root.display(),
            data.root.display()
        );
    }
    if let Some((target, tls)) = syslog {
        crate::syslog::spawn(hsm.clone(), target.clone(), tls, &data.root)?;
        log::info!("forwarding the audit log to {} (RFC 5425)", target.url);
    }
    let pki = std::sync::Arc::new(
        Pki::new(&cfg.public_url)
            .context("built-in certificate profiles")?
            .with_tsa_policy(cfg.tsa_policy),
    );
    if !hsm.is_sealed() {
        ensure_dev_hierarchy(&hsm, &data, &pki)?;
        write_signing_root(&hsm, &pki, &cfg.signing_ca, &data);
    }
    let (tls_config, trust) = match own_tls {
        Some((config, cert)) => (config, Trust::Own(cert)),
        None => {
            let files = TlsFiles::in_data_dir(&data.root);
            let names = tls::server_names(&cfg.hostnames);
            let from_ca = !hsm.is_sealed() && own_ca_tls(&hsm, &pki, &files, &names)?;
            if !from_ca && tls::ensure_material(&files, &names)? {
                log::info!(
                    "made a new local TLS CA; clients must trust {}",
                    files.ca_cert.display()
                );
            }
            (tls::server_config(&files)?, Trust::Kagi(files.ca_cert))
        }
    };
    let banner_data = data.clone();
    let sealed = hsm.is_sealed();
    let listeners = server::Listeners {
        https: cfg.listen.clone(),
        public_http: cfg.public_listen.clone(),
        log_entries_public: cfg.log_entries_public,
    };
    let est = server::EstSettings {
        ca: cfg.est_ca.clone(),
        profile: cfg.est_profile.clone(),
    };
    let public_url = cfg.public_url.clone();
    let signing_ca = cfg.signing_ca.clone();
    let hostname = cfg.hostnames.first().cloned();
    let auth = server::AuthSettings {
        failed_logins_per_source: u32::try_from(cfg.max_failed_logins.max(1)).unwrap_or(u32::MAX),
    };
    let syslog_collector = cfg.syslog.as_ref().map(|s| s.url.clone());
    server::run(hsm, pki, est, auth, signing_ca, cfg.open_tsa, tls_config, &listeners, syslog_collector, move |addrs, public| {
        print_banner(&banner_data, &trust, &startup, sealed, addrs, hostname.as_deref());
        if let Some(a) = public.first() {
            eprintln!("  CRLs, CA certificates and OCSP (plain HTTP): http://{a} (certificates name {public_url})");
        }
    })
    .with_context(|| format!("cannot serve on {}", cfg.listen))
}

/// Which certificate clients must trust for the HTTPS listener.
enum Trust {
    /// kagi's own: the data folder's tls-ca.pem.
    Kagi(PathBuf),
    /// The operator's certificate chain (`--tls-cert`); which CA clients trust is theirs to say.
    Own(PathBuf),
}

/// Where `kagi verify` finds its trust anchor when it is not given `--ca-file`
/// (kagi_verify's default root file, relative to the folder `kagi serve` runs in).
const CA_ROOT_FILE: &str = "ca-root.pem";

/// Write the root of the CA that certifies signing keys to the data folder, from the instance's
/// own records, so `kagi verify` run beside the instance trusts that root and not the TLS CA.
/// A sealed instance (one made with `kagi init`) writes nothing: its verifiers are given the
/// root with `--ca-file`. A failure only warns: verifiers can always be given the root.
fn write_signing_root(hsm: &kagi_hsm_core::Hsm, pki: &Pki, signing_ca: &str, data: &DataDir) {
    let Ok(chain) = pki.chain(hsm, signing_ca) else {
        return;
    };
    let Some(pem) = chain
        .last()
        .and_then(|root| kagi_ca::x509::pem("CERTIFICATE", root).ok())
    else {
        return;
    };
    let path = data.root.join(CA_ROOT_FILE);
    if std::fs::read_to_string(&path).is_ok_and(|current| current == pem) {
        return;
    }
    if let Err(e) = std::fs::write(&path, pem) {
        log::warn!("cannot write {}: {e}", path.display());
    }
}

/// A development instance gets its own CA hierarchy on first start (root, devices,
/// code-signing, services), made with the admin token the data folder holds.
fn ensure_dev_hierarchy(hsm: &kagi_hsm_core::Hsm, data: &DataDir, pki: &Pki) -> Result<()> {
    let token_path = data.admin_token();
    if !token_path.is_file() {
        return Ok(());
    }
    let token = Zeroizing::new(
        std::fs::read_to_string(&token_path)
            .with_context(|| format!("cannot read {}", token_path.display()))?,
    );
    match hsm.login(token.trim()) {
        Ok(admin) => match kagi_ca::service::ensure_dev_hierarchy(hsm, &admin, &pki.urls) {
            Ok(true) => {
                log::info!(
                    "made the development CA hierarchy: root, devices, code-signing, services"
                )
            }
            Ok(false) => {}
            Err(e) => log::warn!("could not make the development CA hierarchy: {e}"),
        },
        Err(e) => log::warn!(
            "{} was not accepted ({e}); no development CAs made",
            token_path.display()
        ),
    }
    Ok(())
}

/// When the instance has the 'services' CA, its TLS certificate comes from there (profile
/// tls-server), naming `names`, with the root in tls-ca.pem. Returns whether TLS now comes from
/// kagi's CA.
fn own_ca_tls(
    hsm: &kagi_hsm_core::Hsm,
    pki: &Pki,
    files: &TlsFiles,
    names: &[String],
) -> Result<bool> {
    let services = match hsm.ca(kagi_ca::service::DEV_SERVICES) {
        Ok(c) => c,
        Err(_) => return Ok(false),
    };
    let chain = pki.chain(hsm, &services.name)?;
    let Some(root) = chain.last() else {
        return Ok(false);
    };
    let root_pem = kagi_ca::x509::pem("CERTIFICATE", root)?;
    if tls::issued_under(files, &root_pem, names) {
        return Ok(true);
    }
    let session = hsm.service_session(&services.partition);
    tls::issue_from_ca(files, &root_pem, names, |csr| {
        let issued = pki
            .issue(
                hsm,
                &session,
                &services.name,
                "tls-server",
                csr,
                &kagi_ca::IssueOptions::default(),
                &[],
                json!({"for": "kagi TLS server"}),
            )
            .map_err(|e| e.to_string())?;
        Ok((issued.der, chain.clone()))
    })?;
    log::info!(
        "issued a new TLS server certificate for {} from CA '{}'; clients trust {}",
        names.join(", "),
        services.name,
        files.ca_cert.display()
    );
    Ok(true)
}

fn print_banner(
    data: &DataDir,
    trust: &Trust,
    startup: &Startup,
    sealed: bool,
    addrs: &[SocketAddr],
    hostname: Option<&str>,
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
        .map(|a| client_url(*a, hostname))
        .unwrap_or_else(|| "https://127.0.0.1:8443".into());
    let token = absolute(&data.admin_token());
    eprintln!("kagi is listening on {url}");
    eprintln!("  console:      {url}/ui");
    let ca = match trust {
        Trust::Kagi(ca) => {
            let ca = absolute(ca);
            eprintln!("  TLS CA:       {}", ca.display());
            ca.display().to_string()
        }
        Trust::Own(cert) => {
            let cert = absolute(cert);
            eprintln!(
                "  TLS:          your certificate {} (clients must trust the CA that issued it; which file that is, is up to you)",
                cert.display()
            );
            format!("<PEM file of the CA that issued {}>", cert.display())
        }
    };
    if token.is_file() {
        eprintln!("  admin token:  {}", token.display());
    }
    if sealed {
        eprintln!("  the HSM is SEALED: submit shares with 'kagi unseal' until it opens");
    }
    if url == crate::client::DEFAULT_URL && matches!(trust, Trust::Kagi(_)) {
        eprintln!("client commands run from this folder need no settings; elsewhere set:");
    } else {
        eprintln!(
            "client commands need these settings (defaults fit only port 8443 in this folder):"
        );
    }
    eprintln!("  export KAGI_URL={url}");
    eprintln!("  export KAGI_CA={ca}");
    if token.is_file() {
        eprintln!("  export KAGI_TOKEN=\"$(cat {})\"", token.display());
    } else {
        eprintln!("  export KAGI_TOKEN=<your token>");
    }
}

/// What a client should type to reach `addr`: the first `--hostname` when there is one, else a
/// wildcard listen address is reached through loopback, which the server certificate names.
fn client_url(addr: SocketAddr, hostname: Option<&str>) -> String {
    if let Some(host) = hostname {
        return format!("https://{}:{}", crate::config::url_host(host), addr.port());
    }
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
