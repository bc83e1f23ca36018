//! The kagi HTTP API over TLS, as this module uses it. One ureq agent per module: it pools
//! connections, and any number of threads use it at once.
#![forbid(unsafe_code)]

use base64::Engine;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::config::{Config, Token};
use crate::error::{Error, Result};

/// A key as `GET /api/v1/keys` lists it (the fields the module uses).
#[derive(Debug, Clone, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    #[serde(default)]
    pub partition: String,
    pub algorithm: String,
    #[serde(default)]
    pub operations: Vec<String>,
    /// The SP 800-57 state (`active`, `deactivated`, `compromised`, ...); absent from older
    /// servers.
    #[serde(default)]
    pub lifecycle: Option<String>,
    #[serde(default)]
    pub usage_count: i64,
    pub usage_limit: Option<i64>,
    #[serde(default)]
    pub exportable_under_wrap: bool,
    #[serde(default)]
    pub trusted: bool,
    #[serde(default = "yes")]
    pub never_extractable: bool,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub active: bool,
    /// Every use needs the key's own password (per-key authorization): CKA_ALWAYS_AUTHENTICATE.
    #[serde(default)]
    pub key_auth: bool,
    /// SubjectPublicKeyInfo, base64 of DER.
    pub public_key_der: String,
    /// The key's current code-signing certificate (PEM), when the search asked for it
    /// (`certificate=true`); None when it has none or was not asked.
    #[serde(default)]
    pub certificate: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Serialize)]
pub struct SignRequest<'a> {
    pub key: &'a str,
    /// The id the module found the key by: a key created later under the same name is not it.
    pub key_id: &'a str,
    pub digest: String,
    pub digest_alg: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<&'static str>,
    pub format: &'static str,
    /// The key's own password, from C_Login(CKU_CONTEXT_SPECIFIC) for this operation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_password: Option<&'a str>,
}

#[derive(Deserialize)]
struct SignResponse {
    signature: String,
}

#[derive(Serialize)]
struct CreateKey<'a> {
    name: &'a str,
    alg: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage_limit: Option<i64>,
}

#[derive(Deserialize)]
struct KeyCertificate {
    certificate: String,
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
}

fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// The DER of the first certificate in a PEM text.
pub fn first_certificate_der(pem: &str) -> Option<Vec<u8>> {
    pem_certificates(pem.as_bytes())
        .into_iter()
        .next()
        .map(|c| c.der().to_vec())
}

impl Client {
    pub fn new(config: &Config) -> Result<Client> {
        let roots = pem_certificates(&config.ca_pem);
        if roots.is_empty() {
            return Err(Error::device(format!(
                "{} holds no PEM certificate: point KAGI_CA at kagi-data/tls-ca.pem",
                config.ca_path.display()
            )));
        }
        let client_cert = match &config.client_cert {
            None => None,
            Some((cert, key)) => {
                let chain = pem_certificates(cert);
                if chain.is_empty() {
                    return Err(Error::device(
                        "the client certificate file holds no PEM certificate",
                    ));
                }
                let key = PrivateKey::from_pem(key).map_err(|e| {
                    Error::device(format!("the client key is not a PEM private key: {e}"))
                })?;
                Some(ClientCert::new_with_certs(&chain, key))
            }
        };
        let tls = TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .client_cert(client_cert)
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .build();
        // Enough idle connections that every thread of a busy signer keeps its own.
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .max_idle_connections(64)
            .max_idle_connections_per_host(64)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Ok(Client {
            agent,
            base: config.url.clone(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn transport(&self, e: ureq::Error) -> Error {
        let why = match &e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
                "nothing is listening at {}: is `kagi serve` running? set KAGI_URL if it listens elsewhere",
                self.base
            ),
            ureq::Error::Rustls(_) => format!(
                "TLS with {} failed ({e}): KAGI_CA must be the tls-ca.pem of the kagi you talk to",
                self.base
            ),
            _ => format!("request to {} failed: {e}", self.base),
        };
        Error::device(why)
    }

    fn answer<T: DeserializeOwned>(
        &self,
        resp: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
        login: bool,
    ) -> Result<T> {
        let mut resp = resp.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(256 * 1024 * 1024)
            .read_to_string()
            .map_err(|e| Error::device(format!("cannot read kagi's answer: {e}")))?;
        if !(200..300).contains(&status) {
            let parsed = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| {
                    let e = v.get("error")?;
                    Some((
                        e.get("code")?.as_str()?.to_string(),
                        e.get("message")?.as_str()?.to_string(),
                    ))
                });
            return Err(match parsed {
                Some((code, message)) => Error::from_service(&code, &message, login),
                None => Error::device(format!(
                    "kagi answered HTTP {status}: {}",
                    text.chars().take(200).collect::<String>()
                )),
            });
        }
        serde_json::from_str(&text)
            .map_err(|e| Error::device(format!("kagi's answer is not the expected JSON: {e}")))
    }

    fn get<T: DeserializeOwned>(
        &self,
        token: Option<&Token>,
        path: &str,
        login: bool,
    ) -> Result<T> {
        let mut req = self.agent.get(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {}", t.as_str()));
        }
        self.answer(req.call(), login)
    }

    fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        token: Option<&Token>,
        path: &str,
        body: &B,
    ) -> Result<T> {
        let mut req = self.agent.post(self.url(path));
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {}", t.as_str()));
        }
        self.answer(req.send_json(body), false)
    }

    /// Every key of the credential's partition, read a page at a time (the service pages the
    /// list) by following the cursor: the last label of each full page.
    pub fn list_keys(&self, token: Option<&Token>) -> Result<Vec<KeyInfo>> {
        const PAGE: usize = 500;
        let mut all = Vec::new();
        loop {
            let path = match all.last() {
                None => format!("/api/v1/keys?limit={PAGE}"),
                Some(KeyInfo { label, .. }) => {
                    format!("/api/v1/keys?limit={PAGE}&after={}", path_segment(label))
                }
            };
            let page: Vec<KeyInfo> = self.get(token, &path, false)?;
            let full = page.len() >= PAGE;
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    }

    /// Whether the service takes this credential as a user's: the cheapest call every user
    /// credential may make, one key of its partition's list.
    pub fn check_login(&self, token: &Token) -> Result<()> {
        self.get::<Vec<KeyInfo>>(Some(token), "/api/v1/keys?limit=1", true)
            .map(|_| ())
    }

    /// The key of this label and/or id, if the credential's partition has it: one row on the
    /// service however many keys the partition holds. `certificate`: with the key's current
    /// certificate, in the same answer.
    pub fn find_keys(
        &self,
        token: Option<&Token>,
        label: Option<&str>,
        id: Option<&str>,
        certificate: bool,
    ) -> Result<Vec<KeyInfo>> {
        let mut query = Vec::new();
        if certificate {
            query.push("certificate=true".to_string());
        }
        if let Some(l) = label {
            query.push(format!("name={}", path_segment(l)));
        }
        if let Some(i) = id {
            query.push(format!("id={}", path_segment(i)));
        }
        self.get(token, &format!("/api/v1/keys?{}", query.join("&")), false)
    }

    /// The key's current certificate (DER), if it has one.
    pub fn certificate(&self, token: Option<&Token>, label: &str) -> Result<Option<Vec<u8>>> {
        let path = format!("/api/v1/keys/{}/certificate", path_segment(label));
        match self.get::<KeyCertificate>(token, &path, false) {
            Ok(c) => Ok(first_certificate_der(&c.certificate)),
            // A service that cannot be reached fails the search; a key without a certificate,
            // or one this credential may not read, just shows no certificate object.
            Err(e) if e.code() == cryptoki_sys::CKR_DEVICE_ERROR => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// A raw signature of a digest; every call is counted, checked and audited by kagi.
    pub fn sign(&self, token: Option<&Token>, req: &SignRequest<'_>) -> Result<Vec<u8>> {
        let resp: SignResponse = self.post(token, "/api/v1/sign", req)?;
        base64::engine::general_purpose::STANDARD
            .decode(resp.signature)
            .map_err(|_| Error::device("kagi's signature is not base64"))
    }

    pub fn create_key(
        &self,
        token: Option<&Token>,
        name: &str,
        alg: &str,
        usage_limit: Option<i64>,
    ) -> Result<KeyInfo> {
        self.post(
            token,
            "/api/v1/keys",
            &CreateKey {
                name,
                alg,
                usage_limit,
            },
        )
    }
}

/// A key label as one URL path segment or query value: everything but unreserved characters
/// percent-encoded.
fn path_segment(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    for b in label.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
