//! The HTTP client behind the CLI commands: finds the service, its CA and a token from the
//! environment, and turns every failure into a stable code and a message that says what to do.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;
use zeroize::Zeroizing;

pub const DEFAULT_URL: &str = "https://127.0.0.1:8443";
pub const DEFAULT_CA: &str = "kagi-data/tls-ca.pem";
pub const DEFAULT_TOKEN_FILE: &str = "kagi-data/admin.token";

/// An error the CLI reports as `error: <code>: <message>`: the verifier's, so `kagi verify`
/// and the other commands report alike.
pub use kagi_verify::client::ClientError;
use kagi_verify::client::{agent, api_error, body_text, pem_certificates, transport_error};

pub struct Client {
    agent: ureq::Agent,
    base: String,
    /// KAGI_CA, named when the service's certificate does not chain to it.
    ca_path: PathBuf,
    token: Option<Zeroizing<String>>,
}

impl Client {
    /// A client for commands that need a credential: KAGI_TOKEN (or ./kagi-data/admin.token),
    /// or a TLS client certificate bound to an identity (KAGI_CLIENT_CERT + KAGI_CLIENT_KEY).
    pub fn from_env() -> Result<Self, ClientError> {
        let mut client = Self::from_env_without_token()?;
        // A client certificate without an explicit KAGI_TOKEN authenticates on its own: the
        // default token file must not silently take over.
        let cert_only = std::env::var_os("KAGI_CLIENT_CERT").is_some()
            && std::env::var_os("KAGI_TOKEN").is_none();
        client.token = if cert_only {
            None
        } else {
            Some(token_from_env()?)
        };
        Ok(client)
    }

    /// A client for the routes that take no token (unseal).
    pub fn from_env_without_token() -> Result<Self, ClientError> {
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
                    "cannot read the service's TLS CA certificate {}: {e}. Run this from the folder where `kagi serve` runs (it writes kagi-data/tls-ca.pem), or set KAGI_CA",
                    ca_path.display()
                ),
            )
        })?;
        let roots = pem_certificates(&ca_pem);
        if roots.is_empty() {
            return Err(ClientError::new(
                "bad_ca",
                format!(
                    "{} holds no PEM certificate: point KAGI_CA at kagi-data/tls-ca.pem",
                    ca_path.display()
                ),
            ));
        }
        let agent = agent(roots, client_cert_from_env()?);
        Ok(Client {
            agent,
            base,
            ca_path,
            token: None,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn auth(&self) -> Option<String> {
        self.token
            .as_ref()
            .map(|t| format!("Bearer {}", t.as_str()))
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let mut req = self.agent.get(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    /// GET a route that answers JSON with its status either way (`/readyz`): (status, body).
    pub fn get_status_json(&self, path: &str) -> Result<(u16, Value), ClientError> {
        let resp = self
            .agent
            .get(&self.url(path))
            .call()
            .map_err(|e| self.transport(e))?;
        let (status, text) = body_text(resp)?;
        let v = serde_json::from_str(&text).map_err(|_| api_error(status, &text))?;
        Ok((status, v))
    }

    pub fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let mut req = self.agent.get(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.transport(e))?;
        read_text(resp)
    }

    pub fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let mut req = self.agent.post(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.send_json(body).map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    pub fn put_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let mut req = self.agent.put(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.send_json(body).map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    /// POST a text document (a policy) as the raw body.
    pub fn post_text<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<T, ClientError> {
        let mut req = self
            .agent
            .post(&self.url(path))
            .header("Content-Type", content_type);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.send(body).map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    /// POST raw bytes (a CSR), reading a JSON answer.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> Result<T, ClientError> {
        let mut req = self
            .agent
            .post(&self.url(path))
            .header("Content-Type", content_type);
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.send(body).map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    /// GET a binary document (a CRL).
    pub fn get_bytes(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        let resp = self
            .agent
            .get(&self.url(path))
            .call()
            .map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let (status, text) = body_text(resp)?;
            return Err(api_error(status, &text));
        }
        resp.into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| ClientError::new("bad_response", format!("cannot read the answer: {e}")))
    }

    pub fn delete(&self, path: &str) -> Result<Value, ClientError> {
        let mut req = self.agent.delete(&self.url(path));
        if let Some(a) = self.auth() {
            req = req.header("Authorization", a);
        }
        let resp = req.call().map_err(|e| self.transport(e))?;
        read_json(resp)
    }

    fn transport(&self, err: ureq::Error) -> ClientError {
        transport_error(&self.base, &self.ca_path, err)
    }
}

/// KAGI_CLIENT_CERT (PEM certificate) and KAGI_CLIENT_KEY (PEM private key), both or neither.
fn client_cert_from_env() -> Result<Option<ureq::tls::ClientCert>, ClientError> {
    let (cert, key) = match (
        std::env::var_os("KAGI_CLIENT_CERT"),
        std::env::var_os("KAGI_CLIENT_KEY"),
    ) {
        (None, None) => return Ok(None),
        (Some(c), Some(k)) => (PathBuf::from(c), PathBuf::from(k)),
        _ => {
            return Err(ClientError::new(
                "bad_client_certificate",
                "set both KAGI_CLIENT_CERT and KAGI_CLIENT_KEY (PEM files), or neither",
            ))
        }
    };
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|e| {
            ClientError::new(
                "bad_client_certificate",
                format!("cannot read {}: {e}", p.display()),
            )
        })
    };
    let cert_pem = read(&cert)?;
    let key_pem = Zeroizing::new(read(&key)?);
    let chain = pem_certificates(&cert_pem);
    if chain.is_empty() {
        return Err(ClientError::new(
            "bad_client_certificate",
            format!("{} holds no PEM certificate", cert.display()),
        ));
    }
    let key = ureq::tls::PrivateKey::from_pem(&key_pem).map_err(|e| {
        ClientError::new(
            "bad_client_certificate",
            format!("{} is not a PEM private key: {e}", key.display()),
        )
    })?;
    Ok(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
}

fn token_from_env() -> Result<Zeroizing<String>, ClientError> {
    if let Ok(token) = std::env::var("KAGI_TOKEN") {
        let token = Zeroizing::new(token);
        if !token.trim().is_empty() {
            return Ok(Zeroizing::new(token.trim().to_string()));
        }
    }
    let text = std::fs::read_to_string(DEFAULT_TOKEN_FILE).map_err(|e| {
        ClientError::new(
            "missing_token",
            format!(
                "no token: set KAGI_TOKEN, or run this from the folder where `kagi serve` wrote {DEFAULT_TOKEN_FILE} ({e})"
            ),
        )
    })?;
    let text = Zeroizing::new(text);
    Ok(Zeroizing::new(text.trim().to_string()))
}

fn read_json<T: DeserializeOwned>(
    resp: ureq::http::Response<ureq::Body>,
) -> Result<T, ClientError> {
    let (status, text) = body_text(resp)?;
    if !(200..300).contains(&status) {
        return Err(api_error(status, &text));
    }
    serde_json::from_str(&text).map_err(|e| {
        ClientError::new(
            "bad_response",
            format!("the server's answer is not the expected JSON: {e}"),
        )
    })
}

fn read_text(resp: ureq::http::Response<ureq::Body>) -> Result<String, ClientError> {
    let (status, text) = body_text(resp)?;
    if !(200..300).contains(&status) {
        return Err(api_error(status, &text));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_error_body_is_parsed_and_anything_else_is_summarized() {
        let e = api_error(
            429,
            r#"{"error":{"code":"usage_limit_reached","message":"used up"}}"#,
        );
        assert_eq!(e.code(), "usage_limit_reached");
        assert_eq!(e.message(), "used up");
        let e = api_error(502, "<html>bad gateway</html>");
        assert_eq!(e.code(), "http_error");
        assert!(e.message().contains("502"));
    }
}
