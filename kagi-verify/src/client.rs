//! The `kagi-verify` binary's HTTPS client: the few reads a verifier makes, over TLS to the
//! service's CA. (`kagi` passes its own full client instead.) Settings come from the same
//! environment as `kagi`'s: KAGI_URL, KAGI_CA and KAGI_TOKEN (log entries are private: an
//! auditor's token, or that of the identity an entry names; and the auditor's full recomputation).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use ureq::tls::{Certificate, ClientCert, RootCerts, TlsConfig, TlsProvider};
use zeroize::Zeroizing;

use crate::Service;

pub const DEFAULT_URL: &str = "https://127.0.0.1:8443";
pub const DEFAULT_CA: &str = "kagi-data/tls-ca.pem";

/// An error reported as `error: <code>: <message>`, with the codes `kagi` uses.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ClientError {
    code: String,
    message: String,
}

impl ClientError {
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        ClientError {
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    ca_path: PathBuf,
    token: Option<Zeroizing<String>>,
}

impl Client {
    /// KAGI_URL (default https://127.0.0.1:8443) and KAGI_CA (default
    /// ./kagi-data/tls-ca.pem); KAGI_TOKEN if set, for log entries and the auditor's full
    /// recomputation.
    pub fn from_env() -> Result<Client, ClientError> {
        let base = std::env::var("KAGI_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("https://") {
            return Err(ClientError::new(
                "bad_url",
                format!("KAGI_URL must start with https:// (got '{base}')"),
            ));
        }
        let ca_path = std::env::var_os("KAGI_CA")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CA));
        let ca_pem = std::fs::read(&ca_path).map_err(|e| {
            ClientError::new(
                "missing_ca",
                format!(
                    "cannot read the service's TLS CA certificate {}: {e}. Set KAGI_CA to the tls-ca.pem of the kagi you verify against",
                    ca_path.display()
                ),
            )
        })?;
        let roots = pem_certificates(&ca_pem);
        if roots.is_empty() {
            return Err(ClientError::new(
                "bad_ca",
                format!(
                    "{} holds no PEM certificate: point KAGI_CA at kagi's tls-ca.pem",
                    ca_path.display()
                ),
            ));
        }
        let agent = agent(roots, None);
        let token = std::env::var("KAGI_TOKEN")
            .ok()
            .map(|t| Zeroizing::new(t.trim().to_string()))
            .filter(|t| !t.is_empty());
        Ok(Client {
            agent,
            base,
            ca_path,
            token,
        })
    }

    fn call(
        &self,
        req: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> Result<String, ClientError> {
        let req = match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {}", t.as_str())),
            None => req,
        };
        self.read(req.call())
    }

    fn read(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, ClientError> {
        let (status, text) = body_text(resp.map_err(|e| self.transport(e))?)?;
        if !(200..300).contains(&status) {
            return Err(api_error(status, &text));
        }
        Ok(text)
    }

    fn transport(&self, err: ureq::Error) -> ClientError {
        transport_error(&self.base, &self.ca_path, err)
    }
}

/// The TLS failure inside a transport error: rustls reports a refused certificate through the
/// stream's `io::Error`, whose `source()` skips the error it wraps, so it is looked for there
/// by hand as well as along the chain.
fn rustls_error(err: &ureq::Error) -> Option<&rustls::Error> {
    if let ureq::Error::Rustls(e) = err {
        return Some(e);
    }
    if let ureq::Error::Io(io) = err {
        if let Some(e) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
            return Some(e);
        }
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        source = e.source();
    }
    None
}

/// Why a request to `base` did not get an answer, and what to do about it: nothing listening,
/// a certificate KAGI_CA (`ca_path`) did not sign, a certificate for another name, or else.
pub fn transport_error(base: &str, ca_path: &Path, err: ureq::Error) -> ClientError {
    use rustls::CertificateError as C;
    if let Some(tls) = rustls_error(&err) {
        return match tls {
            rustls::Error::InvalidCertificate(
                C::UnknownIssuer | C::BadSignature,
            ) => ClientError::new(
                "tls_unknown_ca",
                format!(
                    "the TLS certificate of KAGI_URL={base} is not signed by KAGI_CA={}: point KAGI_CA at the tls-ca.pem of that kagi serve (in its data folder, default kagi-data/tls-ca.pem), or KAGI_URL at the kagi whose CA this is",
                    ca_path.display()
                ),
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => ClientError::new(
                "tls_name_mismatch",
                format!(
                    "the TLS certificate of KAGI_URL={base} is not valid for that host name ({tls}): use the name kagi serve's certificate carries (its --listen address, 127.0.0.1 or localhost by default) in KAGI_URL"
                ),
            ),
            other => ClientError::new(
                "tls_error",
                format!(
                    "TLS with {base} failed: {other}. KAGI_CA ({}) must be the tls-ca.pem written by the kagi serve you are talking to",
                    ca_path.display()
                ),
            ),
        };
    }
    match err {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            ClientError::new(
                "connection_refused",
                format!(
                    "nothing is listening at {base}: is `kagi serve` running there? set KAGI_URL if it listens elsewhere"
                ),
            )
        }
        ureq::Error::Tls(what) if what.contains("dns name") => ClientError::new(
            "bad_url",
            format!(
                "the host in KAGI_URL={base} is neither an IP address nor a DNS name a TLS certificate can carry: use the name or address kagi serve's certificate names (127.0.0.1 or localhost by default)"
            ),
        ),
        ureq::Error::HostNotFound => ClientError::new(
            "host_not_found",
            format!("cannot resolve the host in KAGI_URL={base}"),
        ),
        ureq::Error::Timeout(t) => ClientError::new(
            "timeout",
            format!("{base} did not answer in time ({t})"),
        ),
        other => ClientError::new(
            "connection_failed",
            format!("request to {base} failed: {other}"),
        ),
    }
}

/// The certificates in a PEM file (other items are skipped).
pub fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect()
}

/// An HTTPS agent that trusts `roots` only (aws-lc-rs under rustls), optionally presenting a
/// client certificate, and that hands error statuses back so their JSON error body is read.
pub fn agent(roots: Vec<Certificate<'static>>, client_cert: Option<ClientCert>) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .client_cert(client_cert)
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .new_agent()
}

/// A response's status and text (at most 64 MiB).
pub fn body_text(mut resp: ureq::http::Response<ureq::Body>) -> Result<(u16, String), ClientError> {
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| ClientError::new("bad_response", format!("cannot read the response: {e}")))?;
    Ok((status, text))
}

/// The API's `{"error": {...}}` body, or a summary when a proxy or something else answered.
pub fn api_error(status: u16, text: &str) -> ClientError {
    let parsed = serde_json::from_str::<Value>(text).ok().and_then(|v| {
        let e = v.get("error")?;
        Some((
            e.get("code")?.as_str()?.to_string(),
            e.get("message")?.as_str()?.to_string(),
        ))
    });
    match parsed {
        Some((code, message)) => ClientError { code, message },
        None => ClientError::new(
            "http_error",
            format!(
                "the server answered HTTP {status}: {}",
                text.chars().take(200).collect::<String>()
            ),
        ),
    }
}

fn json(text: &str) -> Result<Value, ClientError> {
    serde_json::from_str(text).map_err(|e| {
        ClientError::new(
            "bad_response",
            format!("the server's answer is not the expected JSON: {e}"),
        )
    })
}

impl Service for Client {
    fn get_text(&self, path: &str) -> anyhow::Result<String> {
        Ok(self.call(self.agent.get(format!("{}{path}", self.base)))?)
    }

    fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        Ok(json(&self.get_text(path)?)?)
    }

    fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let mut req = self.agent.post(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {}", t.as_str()));
        }
        Ok(json(&self.read(req.send_json(body))?)?)
    }

    fn has_credential(&self) -> bool {
        self.token.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_tell_refusal_unknown_ca_and_wrong_name_apart() {
        let ca = Path::new("/srv/kagi/tls-ca.pem");
        let unknown = transport_error(
            "https://k:8443",
            ca,
            ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            )),
        );
        assert_eq!(unknown.code(), "tls_unknown_ca");
        assert!(unknown.message().contains("KAGI_CA=/srv/kagi/tls-ca.pem"));
        let name = transport_error(
            "https://k:8443",
            ca,
            ureq::Error::Rustls(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName,
            )),
        );
        assert_eq!(name.code(), "tls_name_mismatch");
        let refused = transport_error(
            "https://k:8443",
            ca,
            ureq::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        );
        assert_eq!(refused.code(), "connection_refused");
    }
}
