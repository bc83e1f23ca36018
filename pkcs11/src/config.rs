//! Where the service is and who the module is to it. With no file, the same environment as
//! the `kagi` CLI: KAGI_URL (default https://127.0.0.1:8443), KAGI_CA (default
//! ./kagi-data/tls-ca.pem), KAGI_TOKEN (default the contents of ./kagi-data/admin.token, when
//! that file exists), KAGI_CLIENT_CERT + KAGI_CLIENT_KEY; one slot. With KAGI_PKCS11_CONF, a
//! TOML or JSON file with the same settings and one entry per slot:
//!
//! ```toml
//! url = "https://kagi.example:8443"
//! ca = "/etc/kagi/tls-ca.pem"
//! token_file = "/etc/kagi/builder.token"    # or token = "...", or client_cert + client_key
//! [[slots]]
//! partition = "builds"                       # the token's label
//! token_file = "/etc/kagi/builds.token"     # optional: this slot's own credential
//! ```
#![forbid(unsafe_code)]

use cryptoki_sys::CKR_GENERAL_ERROR;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

pub const DEFAULT_URL: &str = "https://127.0.0.1:8443";
pub const DEFAULT_CA: &str = "kagi-data/tls-ca.pem";
pub const DEFAULT_TOKEN_FILE: &str = "kagi-data/admin.token";
/// The token label of the one slot a configuration without slots gets.
pub const DEFAULT_LABEL: &str = "kagi";

/// A bearer token (a partition credential).
pub type Token = Zeroizing<String>;

pub struct Config {
    pub url: String,
    pub ca_pem: Vec<u8>,
    pub ca_path: PathBuf,
    /// PEM certificate chain and PEM private key of a TLS client certificate.
    pub client_cert: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    pub slots: Vec<SlotConfig>,
}

pub struct SlotConfig {
    /// The token label: the partition's name, or "kagi" when the configuration names none.
    pub label: String,
    /// The credential the slot starts logged in with; without one, C_Login takes the token
    /// as the user PIN.
    pub token: Option<Token>,
    /// A client certificate authenticates on its own: the slot starts logged in.
    pub certificate_login: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    url: Option<String>,
    ca: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    #[serde(default)]
    slots: Vec<FileSlot>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSlot {
    partition: String,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

fn bad(message: String) -> Error {
    Error::new(CKR_GENERAL_ERROR, message)
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(format!("cannot read {what} {}: {e}", path.display())))
}

fn read_token(path: &Path) -> Result<Token> {
    let bytes = Zeroizing::new(read(path, "the token file")?);
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| bad(format!("{} is not a text token", path.display())))?;
    Ok(Zeroizing::new(text.trim().to_string()))
}

fn nonempty(token: Option<String>) -> Option<Token> {
    token
        .map(|t| Zeroizing::new(t.trim().to_string()))
        .filter(|t| !t.is_empty())
}

impl Config {
    /// The file KAGI_PKCS11_CONF names, or the `kagi` CLI's environment.
    pub fn load() -> Result<Config> {
        match std::env::var_os("KAGI_PKCS11_CONF") {
            Some(path) => Self::from_file(Path::new(&path)),
            None => Self::from_env(),
        }
    }

    fn from_env() -> Result<Config> {
        let url = std::env::var("KAGI_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
        let ca = std::env::var_os("KAGI_CA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
        let client_cert = match (
            std::env::var_os("KAGI_CLIENT_CERT"),
            std::env::var_os("KAGI_CLIENT_KEY"),
        ) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            _ => {
                return Err(bad(
                    "set both KAGI_CLIENT_CERT and KAGI_CLIENT_KEY (PEM files), or neither".into(),
                ))
            }
        };
        let env_token = nonempty(std::env::var("KAGI_TOKEN").ok());
        // As the CLI: a client certificate without an explicit KAGI_TOKEN authenticates on
        // its own, and the default token file only stands in when nothing else was given.
        let token = match (&env_token, &client_cert) {
            (Some(_), _) => env_token,
            (None, Some(_)) => None,
            (None, None) => {
                let default = Path::new(DEFAULT_TOKEN_FILE);
                if default.is_file() {
                    Some(read_token(default)?)
                } else {
                    None
                }
            }
        };
        let slot = SlotConfig {
            label: DEFAULT_LABEL.to_string(),
            certificate_login: client_cert.is_some() && token.is_none(),
            token,
        };
        Self::finish(url, &ca, client_cert, vec![slot])
    }

    fn from_file(path: &Path) -> Result<Config> {
        let text = String::from_utf8(read(path, "KAGI_PKCS11_CONF")?)
            .map_err(|_| bad(format!("{} is not UTF-8 text", path.display())))?;
        let json =
            path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
        let file: FileConfig = if json {
            serde_json::from_str(&text).map_err(|e| {
                bad(format!(
                    "{} is not valid JSON settings: {e}",
                    path.display()
                ))
            })?
        } else {
            toml::from_str(&text).map_err(|e| {
                bad(format!(
                    "{} is not valid TOML settings: {e}",
                    path.display()
                ))
            })?
        };
        let url = file.url.unwrap_or_else(|| DEFAULT_URL.to_string());
        let ca = file.ca.unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
        let client_cert = match (file.client_cert, file.client_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((c, k)),
            _ => {
                return Err(bad(format!(
                    "{}: set both client_cert and client_key, or neither",
                    path.display()
                )))
            }
        };
        let token = match (nonempty(file.token), file.token_file) {
            (Some(_), Some(_)) => {
                return Err(bad(format!(
                    "{}: set token or token_file, not both",
                    path.display()
                )))
            }
            (Some(t), None) => Some(t),
            (None, Some(f)) => Some(read_token(&f)?),
            (None, None) => None,
        };
        let cert_login = client_cert.is_some();
        let mut slots = Vec::new();
        for s in file.slots {
            let own = match (nonempty(s.token), s.token_file) {
                (Some(t), _) => Some(t),
                (None, Some(f)) => Some(read_token(&f)?),
                (None, None) => None,
            };
            let token = own.or_else(|| token.clone());
            slots.push(SlotConfig {
                label: s.partition,
                certificate_login: cert_login && token.is_none(),
                token,
            });
        }
        if slots.is_empty() {
            slots.push(SlotConfig {
                label: DEFAULT_LABEL.to_string(),
                certificate_login: cert_login && token.is_none(),
                token,
            });
        }
        Self::finish(url, &ca, client_cert, slots)
    }

    fn finish(
        url: String,
        ca: &Path,
        client_cert: Option<(PathBuf, PathBuf)>,
        slots: Vec<SlotConfig>,
    ) -> Result<Config> {
        let url = url.trim_end_matches('/').to_string();
        if !url.starts_with("https://") {
            return Err(bad(format!(
                "the kagi URL must start with https:// (got '{url}')"
            )));
        }
        let ca_pem = std::fs::read(ca).map_err(|e| {
            bad(format!(
                "cannot read the service's TLS CA certificate {}: {e}. Run from the folder where `kagi serve` runs (it writes kagi-data/tls-ca.pem), or set KAGI_CA",
                ca.display()
            ))
        })?;
        let client_cert = match client_cert {
            None => None,
            Some((c, k)) => Some((
                read(&c, "the client certificate")?,
                Zeroizing::new(read(&k, "the client key")?),
            )),
        };
        Ok(Config {
            url,
            ca_pem,
            ca_path: ca.to_path_buf(),
            client_cert,
            slots,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn a_toml_file_maps_slots_to_partitions_with_their_own_or_the_shared_token() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", "not parsed here");
        let own = write(dir.path(), "builds.token", " builds-secret\n");
        let conf = write(
            dir.path(),
            "kagi.toml",
            &format!(
                "url = \"https://kagi.example:9443/\"\nca = {ca:?}\ntoken = \"shared\"\n\
                 [[slots]]\npartition = \"builds\"\ntoken_file = {own:?}\n\
                 [[slots]]\npartition = \"releases\"\n"
            ),
        );
        let c = Config::from_file(&conf).unwrap();
        assert_eq!(c.url, "https://kagi.example:9443");
        let slots: Vec<(&str, Option<&str>)> = c
            .slots
            .iter()
            .map(|s| (s.label.as_str(), s.token.as_ref().map(|t| t.as_str())))
            .collect();
        assert_eq!(
            slots,
            vec![
                ("builds", Some("builds-secret")),
                ("releases", Some("shared"))
            ]
        );
    }

    #[test]
    fn a_json_file_without_slots_has_one_slot_that_needs_a_login() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", "x");
        let conf = write(dir.path(), "kagi.json", &format!("{{\"ca\": {ca:?}}}"));
        let c = Config::from_file(&conf).unwrap();
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.slots.len(), 1);
        assert_eq!(c.slots[0].label, DEFAULT_LABEL);
        assert!(c.slots[0].token.is_none() && !c.slots[0].certificate_login);
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let ca = write(dir.path(), "ca.pem", "x");
        let cases = [
            (format!("url = \"http://plain\"\nca = {ca:?}"), "https://"),
            (
                format!("ca = {ca:?}\ntoken = \"a\"\ntoken_file = \"b\""),
                "not both",
            ),
            (
                format!("ca = {ca:?}\nclient_cert = \"c.pem\""),
                "client_key",
            ),
            (format!("ca = {ca:?}\nslot = 3"), "unknown field"),
            ("ca = \"/nonexistent/ca.pem\"".to_string(), "KAGI_CA"),
        ];
        for (text, says) in cases {
            let conf = write(dir.path(), "bad.toml", &text);
            let Err(e) = Config::from_file(&conf) else {
                panic!("{text} was accepted");
            };
            assert!(e.message().contains(says), "{text}: {}", e.message());
        }
    }
}
