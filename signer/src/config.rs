//! Settings of `kagi serve`: flags, then the optional `--config` JSON file, then defaults.

use serde::Deserialize;
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

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source} (expected JSON like {{\"data\": \"./kagi-data\", \"database_url\": \"postgres://...\", \"listen\": \"127.0.0.1:8443\", \"max_failed_logins\": 5}})")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The config file mirrors the flags; unknown fields are rejected so a typo is not silently
/// ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data: Option<PathBuf>,
    database_url: Option<String>,
    listen: Option<String>,
    /// Refused logins one source address may make before back-off starts (default 10). No
    /// credential is ever locked by failed logins.
    max_failed_logins: Option<i64>,
    /// Seconds over which refused logins are audited as one record per source (default 60).
    failed_login_window_secs: Option<u64>,
    /// Plain-HTTP listener for CRLs, CA certificates and OCSP; "off" disables it.
    public_listen: Option<String>,
    /// Base URL of that listener as relying parties reach it (goes into certificates).
    public_url: Option<String>,
    /// CA and profile EST enrollments use.
    est_ca: Option<String>,
    est_profile: Option<String>,
    /// CA that certifies signing keys.
    signing_ca: Option<String>,
    /// Serve log entry bodies without a credential (default false: entries are private).
    log_entries_public: Option<bool>,
    /// Answer anonymous `/tsa` requests (default false: the TSA needs a credential).
    open_tsa: Option<bool>,
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub listen: String,
    pub max_failed_logins: i64,
    pub failed_login_window: std::time::Duration,
    pub public_listen: Option<String>,
    pub public_url: String,
    pub est_ca: String,
    pub est_profile: String,
    pub signing_ca: String,
    /// Whether `GET /log/entries/N` answers without a credential.
    pub log_entries_public: bool,
    pub open_tsa: bool,
}

impl ServeConfig {
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let public_listen = args
            .public_listen
            .clone()
            .or(file.public_listen.clone())
            .unwrap_or_else(|| DEFAULT_PUBLIC_LISTEN.to_string());
        Ok(ServeConfig {
            data_dir: args
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            database_url: args.database_url.clone().or(file.database_url),
            listen: args
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_string()),
            max_failed_logins: file.max_failed_logins.unwrap_or(DEFAULT_MAX_FAILED_LOGINS),
            failed_login_window: file
                .failed_login_window_secs
                .map(std::time::Duration::from_secs)
                .unwrap_or(kagi_hsm_core::FAILED_LOGIN_WINDOW),
            public_listen: match public_listen.as_str() {
                "off" | "" => None,
                _ => Some(public_listen.clone()),
            },
            public_url: args
                .public_url
                .clone()
                .or(file.public_url)
                .unwrap_or_else(|| format!("http://{public_listen}")),
            est_ca: file.est_ca.unwrap_or_else(|| DEFAULT_EST_CA.into()),
            est_profile: file
                .est_profile
                .unwrap_or_else(|| DEFAULT_EST_PROFILE.into()),
            signing_ca: file.signing_ca.unwrap_or_else(|| DEFAULT_SIGNING_CA.into()),
            log_entries_public: args.log_entries_public || file.log_entries_public.unwrap_or(false),
            open_tsa: args.open_tsa || file.open_tsa.unwrap_or(false),
        })
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

    #[test]
    fn flags_win_over_file_and_file_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kagi.json");
        std::fs::write(&path, r#"{"data": "/srv/kagi", "listen": "0.0.0.0:9443"}"#).unwrap();
        let args = ServeArgs {
            listen: Some("127.0.0.1:1".into()),
            config: Some(path),
            ..ServeArgs::default()
        };
        let cfg = ServeConfig::resolve(&args).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/kagi"));
        assert_eq!(cfg.listen, "127.0.0.1:1");
        assert!(cfg.database_url.is_none());
    }

    #[test]
    fn log_entries_are_private_unless_the_flag_or_the_file_says_public() {
        let dir = tempfile::tempdir().unwrap();
        let args = ServeArgs::default();
        assert!(!ServeConfig::resolve(&args).unwrap().log_entries_public);
        let args = ServeArgs {
            log_entries_public: true,
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(&args).unwrap().log_entries_public);
        let path = dir.path().join("kagi.json");
        std::fs::write(&path, r#"{"log_entries_public": true}"#).unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(ServeConfig::resolve(&args).unwrap().log_entries_public);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kagi.json");
        std::fs::write(&path, r#"{"lisen": "0.0.0.0:9443"}"#).unwrap();
        let args = ServeArgs {
            config: Some(path),
            ..ServeArgs::default()
        };
        assert!(matches!(
            ServeConfig::resolve(&args),
            Err(ConfigError::Parse { .. })
        ));
    }
}
