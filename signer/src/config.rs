//! Settings of `kagi serve`. Each has a flag, an environment variable (`KAGI_…`) and a key in the
//! optional `--config` JSON file; a flag wins over the environment, the environment over the
//! file, and the file over the default. Everything is checked here, before anything is created,
//! so a setting that cannot work stops kagi with a message instead of a half-made instance.
//!
//! The environment is read here rather than by clap so that each value knows where it came from
//! (`--print-config` shows it, error messages name it) and so the precedence can be tested with
//! an injected environment instead of the process-global one.

use const_oid::ObjectIdentifier;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use thiserror::Error;

use crate::cli::ServeArgs;

pub const DEFAULT_DATA_DIR: &str = "kagi-data";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Refused logins one source address may make before back-off starts.
pub const DEFAULT_MAX_FAILED_LOGINS: i64 = 10;
pub const DEFAULT_PUBLIC_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_EST_CA: &str = "devices";
pub const DEFAULT_EST_PROFILE: &str = "device";
pub const DEFAULT_SIGNING_CA: &str = "code-signing";
/// Seconds a caller waits for the witnesses' quorum.
pub const DEFAULT_WITNESS_TIMEOUT_SECS: u64 = 10;

/// The config file's path when `--config` is not given.
pub const ENV_CONFIG: &str = "KAGI_CONFIG";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source} (expected JSON like {{\"data\": \"./kagi-data\", \"database_url\": \"postgres://...\", \"listen\": \"0.0.0.0:8443\", \"hostnames\": [\"kagi.example.com\"]}}; 'kagi serve --help' lists every key)")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// A value that does not parse or cannot work; `origin` says where it was set.
    #[error("{setting} from {origin} is not valid: {reason}")]
    Invalid {
        setting: &'static str,
        origin: String,
        reason: String,
    },
    #[error("--tls-cert and --tls-key go together: {given} is set (from {origin}) but {missing} is not. Give both (flags, KAGI_TLS_CERT and KAGI_TLS_KEY, or \"tls_cert\" and \"tls_key\" in the config file), or neither to have kagi make its own TLS certificate")]
    TlsHalf {
        given: &'static str,
        missing: &'static str,
        origin: String,
    },
    #[error("the public URL {url} names a wildcard address, which no relying party can reach (certificates point to it for CRLs and OCSP). Tell kagi the name clients use with --hostname NAME (KAGI_HOSTNAME, \"hostnames\"), or set --public-url URL (KAGI_PUBLIC_URL, \"public_url\")")]
    WildcardPublicUrl { url: String },
    #[error("kagi would listen on {addr} (every interface) but does not know the name clients reach it by: its TLS certificate would name only loopback and certificates would point to {public_url}. Give that name with --hostname NAME (KAGI_HOSTNAME, \"hostnames\"), or set --public-url URL (KAGI_PUBLIC_URL, \"public_url\")")]
    WildcardListen { addr: String, public_url: String },
}

/// The config file mirrors the flags; unknown fields are rejected so a typo is not silently
/// ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    hostnames: Option<Vec<String>>,
    /// Plain-HTTP listener for CRLs, CA certificates and OCSP; "off" disables it.
    public_listen: Option<String>,
    /// Base URL of that listener as relying parties reach it (goes into certificates).
    public_url: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    /// CA that certifies signing keys.
    signing_ca: Option<String>,
    tsa_policy_oid: Option<String>,
    /// CA and profile EST enrollments use.
    est_ca: Option<String>,
    est_profile: Option<String>,
    /// Refused logins one source address may make before back-off starts (default 10). No
    /// credential is ever locked by failed logins.
    max_failed_logins: Option<i64>,
    /// Seconds over which refused logins are audited as one record per source (default 60).
    failed_login_window_secs: Option<u64>,
    /// Seconds 5 wrong console passwords lock a person's password (default 900).
    console_lock_secs: Option<u64>,
    /// Serve log entry bodies without a credential (default false: entries are private).
    log_entries_public: Option<bool>,
    /// Answer anonymous `/tsa` requests (default false: the TSA needs a credential).
    open_tsa: Option<bool>,
    /// Witnesses as "URL=VKEY".
    witnesses: Option<Vec<String>>,
    witness_quorum: Option<usize>,
    /// Seconds.
    witness_timeout: Option<u64>,
    /// Syslog collector for audit forwarding, tls://HOST:PORT.
    syslog: Option<String>,
    syslog_ca: Option<PathBuf>,
    syslog_cert: Option<PathBuf>,
    syslog_key: Option<PathBuf>,
    syslog_hostname: Option<String>,
}

/// A witness kagi asks for cosignatures: where it listens and its cosignature key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessConfig {
    /// Base URL; requests go to `<url>/add-checkpoint`.
    pub url: String,
    /// The cosignature verifier key as given.
    pub vkey: String,
    pub name: String,
    pub public_key: [u8; 32],
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::File(path) => write!(f, "config file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A certificate chain and key the operator brings; kagi then makes no TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub listen: String,
    /// Names clients use, DNS names or IP addresses (brackets removed), as given.
    pub hostnames: Vec<String>,
    pub max_failed_logins: i64,
    pub failed_login_window: std::time::Duration,
    pub console_lock: std::time::Duration,
    pub public_listen: Option<String>,
    pub public_url: String,
    pub own_tls: Option<OwnTls>,
    pub est_ca: String,
    pub est_profile: String,
    pub signing_ca: String,
    pub tsa_policy: ObjectIdentifier,
    /// Whether `GET /log/entries/N` answers without a credential.
    pub log_entries_public: bool,
    pub open_tsa: bool,
    /// Witnesses whose quorum cosigns the log before results are released (none: off).
    pub witnesses: Vec<WitnessConfig>,
    pub witness_quorum: usize,
    pub witness_timeout: std::time::Duration,
    /// Where audit records are forwarded (none: nowhere).
    pub syslog: Option<crate::syslog::SyslogTarget>,
    config_file: Option<(PathBuf, Source)>,
    sources: BTreeMap<&'static str, Source>,
}

/// Reads values of one setting from the three layers, first one set wins, and remembers where
/// each came from.
struct Layers<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    file_path: Option<PathBuf>,
    sources: BTreeMap<&'static str, Source>,
}

impl Layers<'_> {
    /// An empty environment variable counts as unset (container tools set empty ones freely).
    fn env(&self, var: &str) -> Option<String> {
        (self.env)(var).filter(|v| !v.is_empty())
    }

    fn file_source(&self) -> Source {
        self.file_path.clone().map_or(Source::Default, Source::File)
    }

    #[allow(clippy::too_many_arguments)]
    fn pick<T>(
        &mut self,
        key: &'static str,
        flag_name: &'static str,
        env_name: &'static str,
        flag: Option<T>,
        file: Option<T>,
        parse_env: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        let (value, source) = if let Some(v) = flag {
            (Some(v), Source::Flag(flag_name))
        } else if let Some(text) = self.env(env_name) {
            let v = parse_env(&text).map_err(|reason| ConfigError::Invalid {
                setting: key,
                origin: Source::Env(env_name).to_string(),
                reason,
            })?;
            (Some(v), Source::Env(env_name))
        } else if let Some(v) = file {
            (Some(v), self.file_source())
        } else {
            (None, Source::Default)
        };
        self.sources.insert(key, source);
        Ok(value)
    }

    fn origin(&self, key: &str) -> String {
        self.sources
            .get(key)
            .map_or_else(|| Source::Default.to_string(), ToString::to_string)
    }

    fn invalid(&self, setting: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            setting,
            origin: self.origin(setting),
            reason: reason.into(),
        }
    }
}

fn text(s: &str) -> Result<String, String> {
    Ok(s.to_string())
}

fn number<T: std::str::FromStr>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    s.trim()
        .parse()
        .map_err(|e| format!("'{s}' is not a whole number ({e})"))
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("'{s}' is not true or false")),
    }
}

impl ServeConfig {
    /// The settings from `args`, the process environment and the config file.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        Self::resolve_with(args, &|var| std::env::var(var).ok())
    }

    /// The settings from `args`, the environment `env` gives, and the config file.
    pub fn resolve_with(
        args: &ServeArgs,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let config_file = match &args.config {
            Some(path) => Some((path.clone(), Source::Flag("--config"))),
            None => env(ENV_CONFIG)
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), Source::Env(ENV_CONFIG))),
        };
        let file = match &config_file {
            Some((path, _)) => load_file(path)?,
            None => FileConfig::default(),
        };
        let mut l = Layers {
            env,
            file_path: config_file.as_ref().map(|(p, _)| p.clone()),
            sources: BTreeMap::new(),
        };
        let flag_bool = |set: bool| set.then_some(true);

        let data_dir = l
            .pick(
                "data",
                "--data",
                "KAGI_DATA",
                args.data.clone(),
                file.data,
                |s| Ok(PathBuf::from(s)),
            )?
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database_url = l.pick(
            "database_url",
            "--database-url",
            "KAGI_DATABASE_URL",
            args.database_url.clone(),
            file.database_url,
            text,
        )?;
        let listen = l
            .pick(
                "listen",
                "--listen",
                "KAGI_LISTEN",
                args.listen.clone(),
                file.listen,
                text,
            )?
            .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
        let hostnames = l
            .pick(
                "hostnames",
                "--hostname",
                "KAGI_HOSTNAME",
                (!args.hostnames.is_empty()).then(|| args.hostnames.clone()),
                file.hostnames,
                |s| {
                    Ok(s.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect())
                },
            )?
            .unwrap_or_default();
        let public_listen = l
            .pick(
                "public_listen",
                "--public-listen",
                "KAGI_PUBLIC_LISTEN",
                args.public_listen.clone(),
                file.public_listen,
                text,
            )?
            .unwrap_or_else(|| DEFAULT_PUBLIC_LISTEN.to_string());
        let public_url = l.pick(
            "public_url",
            "--public-url",
            "KAGI_PUBLIC_URL",
            args.public_url.clone(),
            file.public_url,
            text,
        )?;
        let tls_cert = l.pick(
            "tls_cert",
            "--tls-cert",
            "KAGI_TLS_CERT",
            args.tls_cert.clone(),
            file.tls_cert,
            |s| Ok(PathBuf::from(s)),
        )?;
        let tls_key = l.pick(
            "tls_key",
            "--tls-key",
            "KAGI_TLS_KEY",
            args.tls_key.clone(),
            file.tls_key,
            |s| Ok(PathBuf::from(s)),
        )?;
        let signing_ca = l
            .pick(
                "signing_ca",
                "--signing-ca",
                "KAGI_SIGNING_CA",
                args.signing_ca.clone(),
                file.signing_ca,
                text,
            )?
            .unwrap_or_else(|| DEFAULT_SIGNING_CA.into());
        let tsa_policy = l.pick(
            "tsa_policy_oid",
            "--tsa-policy-oid",
            "KAGI_TSA_POLICY_OID",
            args.tsa_policy_oid.clone(),
            file.tsa_policy_oid,
            text,
        )?;
        let est_ca = l
            .pick(
                "est_ca",
                "--est-ca",
                "KAGI_EST_CA",
                args.est_ca.clone(),
                file.est_ca,
                text,
            )?
            .unwrap_or_else(|| DEFAULT_EST_CA.into());
        let est_profile = l
            .pick(
                "est_profile",
                "--est-profile",
                "KAGI_EST_PROFILE",
                args.est_profile.clone(),
                file.est_profile,
                text,
            )?
            .unwrap_or_else(|| DEFAULT_EST_PROFILE.into());
        let max_failed_logins = l
            .pick(
                "max_failed_logins",
                "--max-failed-logins",
                "KAGI_MAX_FAILED_LOGINS",
                args.max_failed_logins,
                file.max_failed_logins,
                number,
            )?
            .unwrap_or(DEFAULT_MAX_FAILED_LOGINS);
        let failed_login_window = l
            .pick(
                "failed_login_window_secs",
                "--failed-login-window-secs",
                "KAGI_FAILED_LOGIN_WINDOW_SECS",
                args.failed_login_window_secs,
                file.failed_login_window_secs,
                number,
            )?
            .map(std::time::Duration::from_secs)
            .unwrap_or(kagi_hsm_core::FAILED_LOGIN_WINDOW);
        let console_lock = l
            .pick(
                "console_lock_secs",
                "--console-lock-secs",
                "KAGI_CONSOLE_LOCK_SECS",
                args.console_lock_secs,
                file.console_lock_secs,
                number,
            )?
            .map(std::time::Duration::from_secs)
            .unwrap_or(kagi_hsm_core::PASSWORD_LOCK);
        let log_entries_public = l
            .pick(
                "log_entries_public",
                "--log-entries-public",
                "KAGI_LOG_ENTRIES_PUBLIC",
                flag_bool(args.log_entries_public),
                file.log_entries_public,
                boolean,
            )?
            .unwrap_or(false);
        let open_tsa = l
            .pick(
                "open_tsa",
                "--open-tsa",
                "KAGI_OPEN_TSA",
                flag_bool(args.open_tsa),
                file.open_tsa,
                boolean,
            )?
            .unwrap_or(false);
        let witnesses = l
            .pick(
                "witnesses",
                "--witness",
                "KAGI_WITNESSES",
                (!args.witnesses.is_empty()).then(|| args.witnesses.clone()),
                file.witnesses,
                |s| {
                    Ok(s.split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|w| !w.is_empty())
                        .map(str::to_string)
                        .collect())
                },
            )?
            .unwrap_or_default();
        let witness_quorum = l.pick(
            "witness_quorum",
            "--witness-quorum",
            "KAGI_WITNESS_QUORUM",
            args.witness_quorum,
            file.witness_quorum,
            number,
        )?;
        let witness_timeout = l
            .pick(
                "witness_timeout",
                "--witness-timeout",
                "KAGI_WITNESS_TIMEOUT",
                args.witness_timeout,
                file.witness_timeout,
                number,
            )?
            .unwrap_or(DEFAULT_WITNESS_TIMEOUT_SECS);
        let syslog = l.pick(
            "syslog",
            "--syslog",
            "KAGI_SYSLOG",
            args.syslog.clone(),
            file.syslog,
            text,
        )?;
        let syslog_ca = l.pick(
            "syslog_ca",
            "--syslog-ca",
            "KAGI_SYSLOG_CA",
            args.syslog_ca.clone(),
            file.syslog_ca,
            |s| Ok(PathBuf::from(s)),
        )?;
        let syslog_cert = l.pick(
            "syslog_cert",
            "--syslog-cert",
            "KAGI_SYSLOG_CERT",
            args.syslog_cert.clone(),
            file.syslog_cert,
            |s| Ok(PathBuf::from(s)),
        )?;
        let syslog_key = l.pick(
            "syslog_key",
            "--syslog-key",
            "KAGI_SYSLOG_KEY",
            args.syslog_key.clone(),
            file.syslog_key,
            |s| Ok(PathBuf::from(s)),
        )?;
        let syslog_hostname = l.pick(
            "syslog_hostname",
            "--syslog-hostname",
            "KAGI_SYSLOG_HOSTNAME",
            args.syslog_hostname.clone(),
            file.syslog_hostname,
            text,
        )?;

        // Checks, in the order a reader would fix them.
        let witnesses = witnesses
            .iter()
            .map(|w| parse_witness(w))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| l.invalid("witnesses", reason))?;
        let mut names = std::collections::BTreeSet::new();
        for w in &witnesses {
            if !names.insert(w.name.as_str()) {
                return Err(l.invalid(
                    "witnesses",
                    format!("witness '{}' is given twice: give each witness once (each counts once toward the quorum)", w.name),
                ));
            }
        }
        let n = witnesses.len();
        let witness_quorum = match witness_quorum {
            None => n,
            Some(k) if n == 0 => {
                return Err(l.invalid(
                    "witness_quorum",
                    format!("{k}, but no witness is configured: add witnesses with --witness URL=VKEY, or drop the quorum"),
                ))
            }
            Some(k) if k == 0 || k > n => {
                return Err(l.invalid(
                    "witness_quorum",
                    format!("{k} with {n} witness(es): the quorum must be from 1 to {n}"),
                ))
            }
            Some(k) => k,
        };
        if witness_timeout == 0 {
            return Err(l.invalid(
                "witness_timeout",
                "0: a caller must wait at least one second for the witnesses",
            ));
        }
        let hostnames = hostnames
            .iter()
            .map(|h| normalize_hostname(h))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| l.invalid("hostnames", reason))?;
        let syslog_client = match (syslog_cert, syslog_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(OwnTls { cert, key }),
            (Some(_), None) => {
                return Err(l.invalid(
                    "syslog_cert",
                    "--syslog-cert and --syslog-key go together: give the client certificate's key with --syslog-key FILE (KAGI_SYSLOG_KEY, \"syslog_key\")",
                ))
            }
            (None, Some(_)) => {
                return Err(l.invalid(
                    "syslog_key",
                    "--syslog-key and --syslog-cert go together: give the client certificate with --syslog-cert FILE (KAGI_SYSLOG_CERT, \"syslog_cert\")",
                ))
            }
        };
        if syslog_client.is_some() && syslog.is_none() {
            return Err(l.invalid(
                "syslog_cert",
                "it is set but no collector is: give the collector with --syslog tls://HOST:PORT, or drop the client certificate",
            ));
        }
        let syslog = match (syslog, syslog_ca) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(l.invalid(
                    "syslog_ca",
                    "it is set but no collector is: give the collector with --syslog tls://HOST:PORT, or drop the CA",
                ))
            }
            (Some(_), None) => {
                return Err(l.invalid(
                    "syslog",
                    "no CA for the collector's certificate: give its PEM file with --syslog-ca FILE (KAGI_SYSLOG_CA, \"syslog_ca\")",
                ))
            }
            (Some(url), Some(ca)) => {
                let (host, port) =
                    crate::syslog::parse_url(url.trim()).map_err(|r| l.invalid("syslog", r))?;
                let hostname = match syslog_hostname {
                    Some(h) => {
                        let h = h.trim().to_string();
                        if h.is_empty() || h.len() > 255 || !h.chars().all(|c| c.is_ascii_graphic()) {
                            return Err(l.invalid(
                                "syslog_hostname",
                                format!("'{h}' is not a syslog HOSTNAME: 1 to 255 printable ASCII characters, no spaces"),
                            ));
                        }
                        h
                    }
                    None => hostnames
                        .first()
                        .cloned()
                        .or_else(crate::syslog::system_hostname)
                        .unwrap_or_else(|| "-".into()),
                };
                Some(crate::syslog::SyslogTarget {
                    url: url.trim().to_string(),
                    host,
                    port,
                    ca,
                    client: syslog_client,
                    hostname,
                })
            }
        };
        let own_tls = match (tls_cert, tls_key) {
            (Some(cert), Some(key)) => Some(OwnTls { cert, key }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::TlsHalf {
                    given: "--tls-cert",
                    missing: "--tls-key",
                    origin: l.origin("tls_cert"),
                })
            }
            (None, Some(_)) => {
                return Err(ConfigError::TlsHalf {
                    given: "--tls-key",
                    missing: "--tls-cert",
                    origin: l.origin("tls_key"),
                })
            }
        };
        let tsa_policy = match tsa_policy {
            Some(text) => ObjectIdentifier::new(text.trim()).map_err(|e| {
                l.invalid(
                    "tsa_policy_oid",
                    format!("'{text}' is not an object identifier like 1.3.6.1.4.1.32473.1 ({e})"),
                )
            })?,
            None => kagi_ca::service::TSA_POLICY,
        };
        if max_failed_logins < 1 {
            return Err(l.invalid(
                "max_failed_logins",
                format!("{max_failed_logins}: at least 1 refused login must be allowed"),
            ));
        }
        if failed_login_window.is_zero() {
            return Err(l.invalid(
                "failed_login_window_secs",
                "0: the window must be at least one second",
            ));
        }
        if console_lock.is_zero() {
            return Err(l.invalid(
                "console_lock_secs",
                "0: a lock must last at least one second",
            ));
        }
        let listen_host = host_of_address(&listen).map_err(|r| l.invalid("listen", r))?;
        let public_listen = match public_listen.as_str() {
            "off" | "" => None,
            _ => Some(public_listen),
        };
        let public_listen_host = public_listen
            .as_deref()
            .map(host_of_address)
            .transpose()
            .map_err(|r| l.invalid("public_listen", r))?;
        let explicit_public_url = public_url.is_some();
        let public_url = match public_url {
            Some(url) => {
                let host = host_of_url(&url).map_err(|r| l.invalid("public_url", r))?;
                if is_wildcard(host) {
                    return Err(ConfigError::WildcardPublicUrl { url });
                }
                url
            }
            None => default_public_url(&hostnames, &listen, public_listen.as_deref()),
        };
        // A defaulted URL is made from the listen addresses, so it can name a wildcard.
        if host_of_url(&public_url).is_ok_and(is_wildcard) {
            return Err(ConfigError::WildcardPublicUrl { url: public_url });
        }
        if hostnames.is_empty() && !explicit_public_url {
            let wildcard = [(listen_host, &listen)]
                .into_iter()
                .chain(public_listen_host.zip(public_listen.as_ref()))
                .find(|(host, _)| is_wildcard(host));
            if let Some((_, addr)) = wildcard {
                return Err(ConfigError::WildcardListen {
                    addr: addr.clone(),
                    public_url,
                });
            }
        }
        Ok(ServeConfig {
            data_dir,
            database_url,
            listen,
            hostnames,
            max_failed_logins,
            failed_login_window,
            console_lock,
            public_listen,
            public_url,
            own_tls,
            est_ca,
            est_profile,
            signing_ca,
            tsa_policy,
            log_entries_public,
            open_tsa,
            witnesses,
            witness_quorum,
            witness_timeout: std::time::Duration::from_secs(witness_timeout),
            syslog,
            config_file,
            sources: l.sources,
        })
    }

    /// Where the named setting's value came from.
    pub fn source(&self, key: &str) -> Source {
        self.sources.get(key).cloned().unwrap_or(Source::Default)
    }

    /// The effective settings as `--print-config` shows them: `settings` uses the config file's
    /// keys (so it can serve as a config file, once a masked password is put back), `sources`
    /// says where each came from. A database password is never shown.
    pub fn to_json(&self) -> Value {
        let path = |p: &Path| Value::String(p.display().to_string());
        let settings = json!({
            "data": path(&self.data_dir),
            "database_url": self.database_url.as_deref().map(mask_database_url),
            "listen": self.listen,
            "hostnames": self.hostnames,
            "public_listen": self.public_listen.as_deref().unwrap_or("off"),
            "public_url": self.public_url,
            "tls_cert": self.own_tls.as_ref().map(|t| path(&t.cert)),
            "tls_key": self.own_tls.as_ref().map(|t| path(&t.key)),
            "signing_ca": self.signing_ca,
            "tsa_policy_oid": self.tsa_policy.to_string(),
            "est_ca": self.est_ca,
            "est_profile": self.est_profile,
            "max_failed_logins": self.max_failed_logins,
            "failed_login_window_secs": self.failed_login_window.as_secs(),
            "console_lock_secs": self.console_lock.as_secs(),
            "log_entries_public": self.log_entries_public,
            "open_tsa": self.open_tsa,
            "witnesses": self.witnesses.iter().map(|w| format!("{}={}", w.url, w.vkey)).collect::<Vec<_>>(),
            "witness_quorum": self.witness_quorum,
            "witness_timeout": self.witness_timeout.as_secs(),
            "syslog": self.syslog.as_ref().map(|s| s.url.clone()),
            "syslog_ca": self.syslog.as_ref().map(|s| path(&s.ca)),
            "syslog_cert": self.syslog.as_ref().and_then(|s| s.client.as_ref()).map(|c| path(&c.cert)),
            "syslog_key": self.syslog.as_ref().and_then(|s| s.client.as_ref()).map(|c| path(&c.key)),
            "syslog_hostname": self.syslog.as_ref().map(|s| s.hostname.clone()),
        });
        let sources: serde_json::Map<String, Value> = settings
            .as_object()
            .into_iter()
            .flat_map(|o| o.keys())
            .map(|k| (k.clone(), Value::String(self.source(k).to_string())))
            .collect();
        json!({
            "config_file": self.config_file.as_ref().map(|(p, s)| json!({
                "path": path(p),
                "from": s.to_string(),
            })),
            "settings": settings,
            "sources": sources,
        })
    }
}

/// A witness given as `URL=VKEY`.
fn parse_witness(text: &str) -> Result<WitnessConfig, String> {
    let Some((url, vkey)) = text.split_once('=') else {
        return Err(format!(
            "'{text}' is not URL=VKEY: give the witness's URL, '=', and its cosignature verifier key ('kagi witness key' prints it)"
        ));
    };
    let url = url.trim().trim_end_matches('/').to_string();
    // Cosignatures are checked against the witness's key, so the transport adds nothing kagi
    // relies on; witnesses serve plain HTTP (C2SP tlog-witness), as `kagi witness serve` does.
    if !url.starts_with("http://") || host_of_url(&url).is_err() {
        return Err(format!(
            "'{url}' is not an http:// URL of a witness (kagi reaches witnesses over plain HTTP and checks their cosignatures by key)"
        ));
    }
    let (name, public_key) =
        kagi_tlog::note::parse_cosignature_verifier_key(vkey.trim()).map_err(|e| {
            format!("{e} (the witness's cosignature key, which 'kagi witness key' prints)")
        })?;
    Ok(WitnessConfig {
        url,
        vkey: vkey.trim().to_string(),
        name,
        public_key,
    })
}

/// http://FIRST_HOSTNAME:PUBLIC_PORT, else http://PUBLIC_LISTEN; with the plain-HTTP listener
/// off, the same routes on HTTPS.
fn default_public_url(hostnames: &[String], listen: &str, public_listen: Option<&str>) -> String {
    let (scheme, addr) = match public_listen {
        Some(addr) => ("http", addr),
        None => ("https", listen),
    };
    match (hostnames.first(), port_of_address(addr)) {
        (Some(host), Some(port)) => format!("{scheme}://{}:{port}", url_host(host)),
        _ => format!("{scheme}://{addr}"),
    }
}

/// A host as it goes in a URL: IPv6 literals in brackets.
pub fn url_host(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    }
}

fn is_wildcard(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// The host of "HOST:PORT" or "[V6]:PORT".
fn host_of_address(addr: &str) -> Result<&str, String> {
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
            Ok(host.trim_start_matches('[').trim_end_matches(']'))
        }
        _ => Err(format!(
            "'{addr}' is not an address like 127.0.0.1:8443, 0.0.0.0:8443 or [::]:8443"
        )),
    }
}

fn port_of_address(addr: &str) -> Option<u16> {
    addr.rsplit_once(':').and_then(|(_, p)| p.parse().ok())
}

/// The host of an http(s) URL, without brackets.
fn host_of_url(url: &str) -> Result<&str, String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("'{url}' does not start with http:// or https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']').map(|(h, _)| h).unwrap_or(v6)
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(format!("'{url}' names no host"));
    }
    Ok(host)
}

/// A hostname as it goes in a certificate: a DNS name, or an IP address without brackets. No
/// wildcards, ports or schemes: this is the one name a client types.
fn normalize_hostname(name: &str) -> Result<String, String> {
    let bare = name.trim();
    let unbracketed = bare
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(bare);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        if ip.is_unspecified() {
            return Err(format!(
                "'{name}' is a wildcard address, which no client can connect to: give the name or address clients use"
            ));
        }
        return Ok(ip.to_string());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if bare.len() <= 253 && bare.split('.').all(label_ok) {
        return Ok(bare.to_ascii_lowercase());
    }
    Err(format!(
        "'{name}' is not a host name (like kagi.example.com) or an IP address; give it without scheme, port or wildcard"
    ))
}

/// A database URL with its password replaced by `***` (in the user part and in a `password=`
/// query parameter), for printing.
pub fn mask_database_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
                    let masked = if userinfo.contains(':') {
                        format!("{user}:***")
                    } else {
                        user.to_string()
                    };
                    format!("{scheme}://{masked}@{host}{path}")
                }
                None => base.to_string(),
            }
        }
        None => base.to_string(),
    };
    match query {
        Some(q) => {
            let q: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_string(),
                })
                .collect();
            format!("{base}?{}", q.join("&"))
        }
        None => base,
    }
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn resolve(args: &ServeArgs, env: &[(&str, &str)]) -> Result<ServeConfig, ConfigError> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ServeConfig::resolve_with(args, &|k| env.get(k).cloned())
    }

    fn file(dir: &tempfile::TempDir, json: &str) -> PathBuf {
        let path = dir.path().join("kagi.json");
        std::fs::write(&path, json).unwrap();
        path
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            r#"{"listen": "127.0.0.1:3", "signing_ca": "file-ca", "est_ca": "file-est",
                "max_failed_logins": 7, "open_tsa": true}"#,
        );
        let args = ServeArgs {
            listen: Some("127.0.0.1:1".into()),
            config: Some(path.clone()),
            ..ServeArgs::default()
        };
        let env = [
            ("KAGI_LISTEN", "127.0.0.1:2"),
            ("KAGI_SIGNING_CA", "env-ca"),
            // Env can switch off what the file switches on.
            ("KAGI_OPEN_TSA", "false"),
        ];
        let cfg = resolve(&args, &env).unwrap();
        // flag over env and file
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert_eq!(cfg.source("listen"), Source::Flag("--listen"));
        // env over file
        assert_eq!(cfg.signing_ca, "env-ca");
        assert_eq!(cfg.source("signing_ca"), Source::Env("KAGI_SIGNING_CA"));
        assert!(!cfg.open_tsa);
        assert_eq!(cfg.source("open_tsa"), Source::Env("KAGI_OPEN_TSA"));
        // file over default
        assert_eq!(cfg.est_ca, "file-est");
        assert_eq!(cfg.max_failed_logins, 7);
        assert_eq!(cfg.source("est_ca"), Source::File(path));
        // default
        assert_eq!(cfg.est_profile, DEFAULT_EST_PROFILE);
        assert_eq!(cfg.source("est_profile"), Source::Default);
        assert_eq!(cfg.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(cfg.tsa_policy, kagi_ca::service::TSA_POLICY);

        // The same env without the flag: env over file.
        let args = ServeArgs {
            config: cfg.config_file.clone().map(|(p, _)| p),
            ..ServeArgs::default()
        };
        assert_eq!(resolve(&args, &env).unwrap().listen, "127.0.0.1:2");
        // Without env either: the file.
        assert_eq!(resolve(&args, &[]).unwrap().listen, "127.0.0.1:3");
        // Nothing: the default.
        let cfg = resolve(&ServeArgs::default(), &[]).unwrap();
        assert_eq!(cfg.listen, DEFAULT_LISTEN);
        assert_eq!(cfg.public_url, format!("http://{DEFAULT_PUBLIC_LISTEN}"));
    }

    fn witness_key(name: &str, seed: u8) -> String {
        kagi_tlog::note::cosignature_verifier_key(name, &[seed; 32])
    }

    #[test]
    fn witnesses_come_from_flags_env_or_file_and_are_checked() {
        let (a, b) = (witness_key("w1.example", 1), witness_key("w2.example", 2));
        // Flags, quorum defaulting to every witness.
        let args = ServeArgs {
            witnesses: vec![
                format!("http://127.0.0.1:1={a}"),
                format!("http://127.0.0.1:2/={b}"),
            ],
            ..ServeArgs::default()
        };
        let cfg = resolve(&args, &[]).unwrap();
        assert_eq!(cfg.witnesses.len(), 2);
        assert_eq!(cfg.witnesses[1].url, "http://127.0.0.1:2");
        assert_eq!(cfg.witnesses[0].name, "w1.example");
        assert_eq!(cfg.witnesses[0].public_key, [1; 32]);
        assert_eq!(cfg.witness_quorum, 2);
        assert_eq!(cfg.witness_timeout.as_secs(), DEFAULT_WITNESS_TIMEOUT_SECS);
        assert_eq!(cfg.to_json()["settings"]["witness_quorum"], 2);
        // The environment, comma or space separated, with a quorum and a timeout.
        let env_list = format!("http://a:1={a}, http://b:2={b}");
        let cfg = resolve(
            &ServeArgs::default(),
            &[
                ("KAGI_WITNESSES", env_list.as_str()),
                ("KAGI_WITNESS_QUORUM", "1"),
                ("KAGI_WITNESS_TIMEOUT", "3"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.witnesses.len(), 2);
        assert_eq!(cfg.witness_quorum, 1);
        assert_eq!(cfg.witness_timeout.as_secs(), 3);
        assert_eq!(cfg.source("witnesses"), Source::Env("KAGI_WITNESSES"));
        // The file.
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            &format!(r#"{{"witnesses": ["http://a:1={a}"], "witness_quorum": 1}}"#),
        );
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert_eq!(resolve(&args, &[]).unwrap().witnesses.len(), 1);
        // No witnesses: off.
        assert!(resolve(&ServeArgs::default(), &[])
            .unwrap()
            .witnesses
            .is_empty());
        // What is wrong, and what to do.
        for (list, quorum, want) in [
            (vec![format!("http://a:1={a}")], Some(2), "from 1 to 1"),
            (vec![format!("http://a:1={a}")], Some(0), "from 1 to 1"),
            (vec![], Some(1), "no witness is configured"),
            (vec!["http://a:1".to_string()], None, "URL=VKEY"),
            (vec![format!("ftp://a={a}")], None, "http://"),
            (
                vec!["http://a:1=w+00000000+AQ==".to_string()],
                None,
                "kagi witness key",
            ),
            (
                vec![format!("http://a:1={a}"), format!("http://b:1={a}")],
                None,
                "given twice",
            ),
        ] {
            let args = ServeArgs {
                witnesses: list,
                witness_quorum: quorum,
                ..ServeArgs::default()
            };
            let err = resolve(&args, &[]).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn syslog_forwarding_needs_a_collector_and_its_ca() {
        // Off unless configured.
        assert!(resolve(&ServeArgs::default(), &[])
            .unwrap()
            .syslog
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = file(
            &dir,
            r#"{"syslog": "tls://logs.example:6515", "syslog_ca": "/etc/logs-ca.pem", "hostnames": ["kagi.example.com"]}"#,
        );
        let cfg = resolve(
            &ServeArgs {
                config: Some(path),
                ..Default::default()
            },
            &[("KAGI_SYSLOG_HOSTNAME", "hsm-1")],
        )
        .unwrap();
        let s = cfg.syslog.clone().unwrap();
        assert_eq!((s.host.as_str(), s.port), ("logs.example", 6515));
        assert_eq!(s.hostname, "hsm-1");
        assert_eq!(
            cfg.source("syslog_hostname"),
            Source::Env("KAGI_SYSLOG_HOSTNAME")
        );
        assert_eq!(
            cfg.to_json()["settings"]["syslog"],
            "tls://logs.example:6515"
        );
        // The HOSTNAME defaults to the first --hostname.
        let cfg = resolve(
            &ServeArgs {
                syslog: Some("tls://127.0.0.1:7000".into()),
                syslog_ca: Some("ca.pem".into()),
                hostnames: vec!["kagi.example.com".into()],
                ..Default::default()
            },
            &[],
        )
        .unwrap();
        assert_eq!(cfg.syslog.unwrap().hostname, "kagi.example.com");
        for (args, env, says) in [
            (
                ServeArgs {
                    syslog: Some("tls://127.0.0.1:7000".into()),
                    ..Default::default()
                },
                vec![],
                "--syslog-ca FILE",
            ),
            (
                ServeArgs::default(),
                vec![("KAGI_SYSLOG_CA", "ca.pem")],
                "no collector",
            ),
            (
                ServeArgs {
                    syslog: Some("tls://127.0.0.1:7000".into()),
                    syslog_ca: Some("ca.pem".into()),
                    syslog_cert: Some("client.pem".into()),
                    ..Default::default()
                },
                vec![],
                "--syslog-key FILE",
            ),
            (
                ServeArgs {
                    syslog: Some("udp://127.0.0.1:514".into()),
                    syslog_ca: Some("ca.pem".into()),
                    ..Default::default()
                },
                vec![],
                "TLS only",
            ),
        ] {
            let err = resolve(&args, &env).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn the_config_file_can_come_from_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = file(&dir, r#"{"hostnames": ["kagi.example.com", "10.0.0.5"]}"#);
        let cfg = resolve(
            &ServeArgs::default(),
            &[("KAGI_CONFIG", path.to_str().unwrap())],
        )
        .unwrap();
        assert_eq!(cfg.hostnames, ["kagi.example.com", "10.0.0.5"]);
        assert_eq!(cfg.public_url, "http://kagi.example.com:8080");
    }

    #[test]
    fn hostnames_come_comma_separated_from_the_environment() {
        let cfg = resolve(
            &ServeArgs::default(),
            &[("KAGI_HOSTNAME", "a.example, [2001:db8::1]")],
        )
        .unwrap();
        assert_eq!(cfg.hostnames, ["a.example", "2001:db8::1"]);
        // IPv6 goes into URLs in brackets.
        let cfg = resolve(
            &ServeArgs::default(),
            &[
                ("KAGI_HOSTNAME", "2001:db8::1"),
                ("KAGI_PUBLIC_LISTEN", "[::]:80"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.public_url, "http://[2001:db8::1]:80");
        for bad in [
            "kagi.example.com:8443",
            "https://kagi",
            "*.example.com",
            "0.0.0.0",
            "[::]",
        ] {
            let args = ServeArgs {
                hostnames: vec![bad.into()],
                ..ServeArgs::default()
            };
            let err = resolve(&args, &[]).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("--hostname"), "{err}");
        }
    }

    #[test]
    fn a_wildcard_is_never_the_public_url() {
        for (args, env) in [
            (
                ServeArgs {
                    listen: Some("0.0.0.0:8443".into()),
                    ..ServeArgs::default()
                },
                vec![],
            ),
            (
                ServeArgs::default(),
                vec![("KAGI_PUBLIC_LISTEN", "0.0.0.0:80")],
            ),
            (ServeArgs::default(), vec![("KAGI_LISTEN", "[::]:443")]),
            (
                ServeArgs {
                    public_url: Some("http://[::]:8080".into()),
                    hostnames: vec!["kagi.example.com".into()],
                    ..ServeArgs::default()
                },
                vec![],
            ),
        ] {
            let err = resolve(&args, &env).unwrap_err().to_string();
            assert!(
                err.contains("--hostname") && err.contains("--public-url"),
                "{err}"
            );
        }
        // A hostname or an explicit URL says where clients go.
        let args = ServeArgs {
            listen: Some("0.0.0.0:8443".into()),
            public_listen: Some("0.0.0.0:8080".into()),
            hostnames: vec!["kagi.example.com".into()],
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(&args, &[]).unwrap().public_url,
            "http://kagi.example.com:8080"
        );
        let args = ServeArgs {
            listen: Some("0.0.0.0:8443".into()),
            public_url: Some("http://crl.example.com".into()),
            ..ServeArgs::default()
        };
        assert_eq!(
            resolve(&args, &[]).unwrap().public_url,
            "http://crl.example.com"
        );
    }

    #[test]
    fn without_a_public_listener_certificates_point_to_https() {
        let args = ServeArgs {
            public_listen: Some("off".into()),
            hostnames: vec!["kagi.example.com".into()],
            ..ServeArgs::default()
        };
        let cfg = resolve(&args, &[]).unwrap();
        assert_eq!(cfg.public_listen, None);
        assert_eq!(cfg.public_url, "https://kagi.example.com:8443");
    }

    #[test]
    fn bad_values_name_their_origin() {
        let err = resolve(&ServeArgs::default(), &[("KAGI_MAX_FAILED_LOGINS", "many")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("KAGI_MAX_FAILED_LOGINS") && err.contains("many"),
            "{err}"
        );
        let err = resolve(
            &ServeArgs::default(),
            &[("KAGI_TSA_POLICY_OID", "not-an-oid")],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KAGI_TSA_POLICY_OID"), "{err}");
        let cfg = resolve(
            &ServeArgs::default(),
            &[("KAGI_TSA_POLICY_OID", "1.2.3.4.5")],
        )
        .unwrap();
        assert_eq!(cfg.tsa_policy.to_string(), "1.2.3.4.5");
        let err = resolve(&ServeArgs::default(), &[("KAGI_TLS_CERT", "/x.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--tls-key") && err.contains("KAGI_TLS_CERT"),
            "{err}"
        );
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_database_url("postgres://kagi:s3cret@db:5432/kagi"),
            "postgres://kagi:***@db:5432/kagi"
        );
        assert_eq!(
            mask_database_url("postgres://kagi@db/kagi?sslmode=require&password=s3cret"),
            "postgres://kagi@db/kagi?sslmode=require&password=***"
        );
        assert_eq!(
            mask_database_url("postgres://db/kagi"),
            "postgres://db/kagi"
        );
        let args = ServeArgs {
            database_url: Some("postgres://u:p%40ss@db/k".into()),
            ..ServeArgs::default()
        };
        let shown = resolve(&args, &[]).unwrap().to_json().to_string();
        assert!(
            !shown.contains("p%40ss") && shown.contains("u:***@db"),
            "{shown}"
        );
    }

    #[test]
    fn log_entries_are_private_unless_the_flag_or_the_file_says_public() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs::default();
        assert!(
            !ServeConfig::resolve_with(&args, &no_env)
                .unwrap()
                .log_entries_public
        );
        let args = ServeArgs {
            log_entries_public: true,
            ..ServeArgs::default()
        };
        assert!(
            ServeConfig::resolve_with(&args, &no_env)
                .unwrap()
                .log_entries_public
        );
        let args = ServeArgs {
            config: Some(file(&dir, r#"{"log_entries_public": true}"#)),
            ..ServeArgs::default()
        };
        assert!(
            ServeConfig::resolve_with(&args, &no_env)
                .unwrap()
                .log_entries_public
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs {
            config: Some(file(&dir, r#"{"lisen": "0.0.0.0:9443"}"#)),
            ..ServeArgs::default()
        };
        assert!(matches!(
            ServeConfig::resolve_with(&args, &no_env),
            Err(ConfigError::Parse { .. })
        ));
    }
}
