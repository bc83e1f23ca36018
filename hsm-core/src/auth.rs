//! Roles, credentials and sessions.
//!
//! A credential is a bearer token `kagi_<id>_<secret>`. Only an Argon2id hash of the secret is
//! stored. The id part lets the HSM find the credential without trying every hash.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

use crate::error::HsmError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages partitions and credentials.
    Administrator,
    /// Creates and destroys keys and sets their policy.
    Officer,
    /// Uses keys.
    User,
    /// Reads and verifies the audit log.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Officer => "officer",
            Role::User => "user",
            Role::Auditor => "auditor",
        }
    }
}

impl FromStr for Role {
    type Err = HsmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "administrator" | "admin" => Ok(Role::Administrator),
            "officer" => Ok(Role::Officer),
            "user" => Ok(Role::User),
            "auditor" => Ok(Role::Auditor),
            other => Err(HsmError::BadInput(format!(
                "unknown role '{}': use administrator, officer, user or auditor",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// What kind of caller an identity is; policies name identities by kind and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// A member of the security team (console or CLI).
    Person,
    /// A CI pipeline.
    Pipeline,
    /// A factory line.
    Line,
}

impl IdentityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Person => "person",
            IdentityKind::Pipeline => "pipeline",
            IdentityKind::Line => "line",
        }
    }
}

impl FromStr for IdentityKind {
    type Err = HsmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "person" => Ok(IdentityKind::Person),
            "pipeline" => Ok(IdentityKind::Pipeline),
            "line" => Ok(IdentityKind::Line),
            other => Err(HsmError::BadInput(format!(
                "unknown identity kind '{}': use person, pipeline or line",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// An authenticated caller. Only hsm-core makes one: [`crate::Hsm::login`] (a token),
/// [`crate::Hsm::login_by_certificate`] (a TLS client certificate) or
/// [`crate::Hsm::service_session`] (the service acting for itself, which may use only CA and
/// service keys). Its fields are private, so no other crate can build one or add a role to it:
///
/// ```compile_fail
/// let s = kagi_hsm_core::Session {
///     credential_id: "x".into(),
///     name: "admin".into(),
///     kind: kagi_hsm_core::IdentityKind::Person,
///     partition: "default".into(),
///     roles: vec![kagi_hsm_core::Role::Administrator],
///     expires_at: None,
///     service: false,
/// };
/// ```
///
/// ```compile_fail
/// fn escalate(mut s: kagi_hsm_core::Session) {
///     s.roles.push(kagi_hsm_core::Role::Administrator);
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Session {
    credential_id: String,
    name: String,
    kind: IdentityKind,
    partition: String,
    roles: Vec<Role>,
    /// Unix seconds after which the credential is refused, cached sessions included.
    expires_at: Option<i64>,
    /// The service acting for itself (CRLs, OCSP, timestamps): may use only CA and service keys.
    service: bool,
    /// Where the request that carries this session came from; written into every audit record
    /// the session causes.
    client: Option<ClientInfo>,
    /// The password of a key with per-key authorization, for this one request: see
    /// [`Session::with_key_auth`].
    key_auth: Option<KeyAuth>,
}

/// A key's own authorization data (its password): what unlocks a key created with per-key
/// authorization, on top of the caller's login. Held zeroized-on-drop, never printed.
#[derive(Clone)]
pub struct KeyAuth(std::sync::Arc<zeroize::Zeroizing<String>>);

impl KeyAuth {
    /// Longest key password accepted, in bytes: refused before any hashing.
    pub const MAX_BYTES: usize = 256;
    /// Shortest key password accepted when one is set.
    pub const MIN_CHARS: usize = 8;

    pub fn new(password: impl Into<String>) -> Result<KeyAuth, HsmError> {
        let password = zeroize::Zeroizing::new(password.into());
        if password.is_empty() {
            return Err(HsmError::BadInput("the key password is empty".into()));
        }
        if password.len() > Self::MAX_BYTES {
            return Err(HsmError::BadInput(format!(
                "a key password is at most {} bytes",
                Self::MAX_BYTES
            )));
        }
        Ok(KeyAuth(std::sync::Arc::new(password)))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Debug for KeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyAuth(redacted)")
    }
}

/// Where a request came from, as the front end saw it: the peer address and the client's
/// User-Agent. It grants nothing; it only says in the audit log who was at the other end.
/// Both are cut to a bounded length and stripped of control characters, since a client
/// chooses its User-Agent freely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    source: String,
    user_agent: Option<String>,
}

impl ClientInfo {
    /// Longest source kept (an IPv6 address with a port and zone fits).
    pub const MAX_SOURCE: usize = 64;
    /// Longest User-Agent kept, in characters.
    pub const MAX_USER_AGENT: usize = 256;

    pub fn new(source: &str, user_agent: Option<&str>) -> ClientInfo {
        ClientInfo {
            source: sanitize(source, Self::MAX_SOURCE),
            user_agent: user_agent
                .map(|u| sanitize(u, Self::MAX_USER_AGENT))
                .filter(|u| !u.is_empty()),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn user_agent(&self) -> Option<&str> {
        self.user_agent.as_deref()
    }

    /// Adds `source` and `user_agent` to an audit record's detail (an object), keeping any
    /// the record already has: a login's own `source` says the same.
    pub fn add_to(&self, detail: &mut serde_json::Value) {
        if let Some(d) = detail.as_object_mut() {
            d.entry("source")
                .or_insert_with(|| serde_json::Value::String(self.source.clone()));
            if let Some(ua) = &self.user_agent {
                d.entry("user_agent")
                    .or_insert_with(|| serde_json::Value::String(ua.clone()));
            }
        }
    }
}

/// Printable characters only, at most `max` of them: what a client sends must not forge lines
/// or terminal escapes in whatever displays the log.
fn sanitize(text: &str, max: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(max)
        .collect()
}

impl Session {
    pub(crate) fn new(
        credential_id: String,
        name: String,
        kind: IdentityKind,
        partition: String,
        roles: Vec<Role>,
        expires_at: Option<i64>,
    ) -> Session {
        Session {
            credential_id,
            name,
            kind,
            partition,
            roles,
            expires_at,
            service: false,
            client: None,
            key_auth: None,
        }
    }

    /// The service's own session in `partition`: see [`crate::Hsm::service_session`].
    pub(crate) fn service(name: &str, partition: &str) -> Session {
        Session {
            credential_id: format!("service:{name}"),
            name: name.to_string(),
            kind: IdentityKind::Pipeline,
            partition: partition.to_string(),
            roles: vec![Role::User],
            expires_at: None,
            service: true,
            client: None,
            key_auth: None,
        }
    }

    /// This session, carrying where its request came from: the audit records it causes say so.
    pub fn with_client(mut self, client: ClientInfo) -> Session {
        self.client = Some(client);
        self
    }

    /// This session, carrying the password of a key with per-key authorization
    /// (`kagi key create --key-auth`): the key is unlocked with it for this session's
    /// operations only. A front end attaches it per request and never caches it.
    pub fn with_key_auth(mut self, auth: KeyAuth) -> Session {
        self.key_auth = Some(auth);
        self
    }

    /// The key password this session carries, if any.
    pub fn key_auth(&self) -> Option<&KeyAuth> {
        self.key_auth.as_ref()
    }

    /// Where this session's request came from, when the front end said.
    pub fn client(&self) -> Option<&ClientInfo> {
        self.client.as_ref()
    }

    pub fn credential_id(&self) -> &str {
        &self.credential_id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> IdentityKind {
        self.kind
    }

    pub fn partition(&self) -> &str {
        &self.partition
    }

    pub fn roles(&self) -> &[Role] {
        &self.roles
    }

    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.expires_at
    }

    /// True for the service's own session ([`crate::Hsm::service_session`]).
    pub fn is_service(&self) -> bool {
        self.service
    }

    pub fn actor(&self) -> String {
        format!("{}:{}", self.partition, self.name)
    }

    /// `Ok` when the session holds `role`; otherwise the refusal hsm-core itself gives, so a
    /// caller can check a role before doing work (parsing a document, say) and answer alike.
    pub fn require(&self, role: Role, action: &'static str) -> Result<(), HsmError> {
        if self.roles.contains(&role) {
            Ok(())
        } else {
            Err(HsmError::Forbidden {
                have: roles_to_string(&self.roles),
                action,
                need: role.as_str(),
            })
        }
    }
}

pub(crate) fn roles_to_string(roles: &[Role]) -> String {
    let mut v: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(",")
}

pub(crate) fn roles_from_string(s: &str) -> Result<Vec<Role>, HsmError> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(Role::from_str)
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialInfo {
    pub id: String,
    pub name: String,
    pub kind: IdentityKind,
    /// Unix seconds; after it the token is refused.
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// SHA-256 (hex) of the TLS client certificate bound to this identity, if any.
    #[serde(default)]
    pub client_cert_sha256: Option<String>,
    pub partition: String,
    pub roles: Vec<Role>,
    pub failed_logins: i64,
    pub locked: bool,
    pub created_at: i64,
}
