//! Key attributes, and their canonical encoding bound into the seal.
//!
//! Every attribute that grants or limits a permission is part of the associated data of the key's
//! AES-256-GCM seal. Editing one in the database makes the key fail to open instead of making it
//! more permissive. The usage *count* is deliberately not bound (it changes on every use); its
//! rollback is caught by comparing with the audit log, see `usage.rs`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::algorithm::Algorithm;
use crate::error::HsmError;

/// Operations a key may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Sign,
    Verify,
    /// Wrap other keys for export (only for trusted RSA keys) and unwrap them on import.
    Wrap,
    /// A CA key: signs only certificates and CRLs that the CA built itself, never a digest a
    /// caller sends. Sealed with the key like every attribute, so a database edit cannot turn
    /// a CA key into one that signs anything.
    Certify,
    /// A CA's service key (OCSP responder, TSA, CT signer): signs only the responses the
    /// service built itself.
    ServiceSign,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Sign => "sign",
            Operation::Verify => "verify",
            Operation::Wrap => "wrap",
            Operation::Certify => "certify",
            Operation::ServiceSign => "service-sign",
        }
    }

    /// Restricted operations sign only what kagi's own CA code built; keys get them only
    /// through the CA's key creation, never from a caller's key spec.
    pub fn is_restricted(self) -> bool {
        matches!(self, Operation::Certify | Operation::ServiceSign)
    }
}

/// Keys with a restricted operation are named under this namespace, and no other key may be,
/// so a name that looks like a CA key's always is one. The permission itself comes from the
/// sealed operations, never from the name.
pub const RESTRICTED_NAMESPACE: &str = "ca.";

impl FromStr for Operation {
    type Err = HsmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sign" => Ok(Operation::Sign),
            "verify" => Ok(Operation::Verify),
            "wrap" => Ok(Operation::Wrap),
            "certify" => Ok(Operation::Certify),
            "service-sign" => Ok(Operation::ServiceSign),
            other => Err(HsmError::BadInput(format!(
                "unknown operation '{}': use sign, verify or wrap",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// The stored part of a key's SP 800-57 state. Pre-activation and the end of the signing
/// period follow from the clock and the signing period instead (see [`Lifecycle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Active,
    /// Disabled by an officer for a while (`key.suspend`), until resumed (`key.resume`): it
    /// signs nothing meanwhile. Named after SP 800-57's suspended state.
    Suspended,
    /// Retired by an officer (`key.deactivate`): it only verifies, for good.
    Deactivated,
    /// Declared compromised (`key.compromise`): it neither signs nor verifies, for good; only
    /// destroying it is left.
    Compromised,
    Destroyed,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Suspended => "suspended",
            KeyState::Deactivated => "deactivated",
            KeyState::Compromised => "compromised",
            KeyState::Destroyed => "destroyed",
        }
    }

    /// The states an officer may move a key to from this one. Deactivated and compromised
    /// are one way: nothing leads back to active from them.
    pub fn allowed_next(self) -> &'static [KeyState] {
        match self {
            KeyState::Active => &[
                KeyState::Suspended,
                KeyState::Deactivated,
                KeyState::Compromised,
                KeyState::Destroyed,
            ],
            KeyState::Suspended => &[
                KeyState::Active,
                KeyState::Deactivated,
                KeyState::Compromised,
                KeyState::Destroyed,
            ],
            KeyState::Deactivated => &[KeyState::Compromised, KeyState::Destroyed],
            KeyState::Compromised => &[KeyState::Destroyed],
            KeyState::Destroyed => &[],
        }
    }

    /// How far along the one-way path a state is: a stored state and the audit log's are
    /// combined by taking the further one, so neither a restored row nor a missing record
    /// moves a key back.
    pub(crate) fn rank(self) -> u8 {
        match self {
            KeyState::Active => 0,
            KeyState::Suspended => 1,
            KeyState::Deactivated => 2,
            KeyState::Compromised => 3,
            KeyState::Destroyed => 4,
        }
    }
}

/// A key's SP 800-57 state as callers see it: the stored [`KeyState`] with the signing
/// period applied (an active key before its signing period is in pre-activation, one after it
/// is deactivated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    PreActivation,
    Active,
    Suspended,
    Deactivated,
    Compromised,
    Destroyed,
}

impl Lifecycle {
    pub fn of(state: KeyState, sign_from: Option<i64>, sign_until: Option<i64>, now: i64) -> Self {
        match state {
            KeyState::Active if sign_from.is_some_and(|t| now < t) => Lifecycle::PreActivation,
            KeyState::Active if sign_until.is_some_and(|t| now > t) => Lifecycle::Deactivated,
            KeyState::Active => Lifecycle::Active,
            KeyState::Suspended => Lifecycle::Suspended,
            KeyState::Deactivated => Lifecycle::Deactivated,
            KeyState::Compromised => Lifecycle::Compromised,
            KeyState::Destroyed => Lifecycle::Destroyed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::PreActivation => "pre-activation",
            Lifecycle::Active => "active",
            Lifecycle::Suspended => "suspended",
            Lifecycle::Deactivated => "deactivated",
            Lifecycle::Compromised => "compromised",
            Lifecycle::Destroyed => "destroyed",
        }
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyState {
    type Err = HsmError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(KeyState::Active),
            "suspended" => Ok(KeyState::Suspended),
            "deactivated" => Ok(KeyState::Deactivated),
            "compromised" => Ok(KeyState::Compromised),
            "destroyed" => Ok(KeyState::Destroyed),
            _ => Err(HsmError::Store(format!(
                "unknown key state '{s}' in the database"
            ))),
        }
    }
}

/// What a caller asks for when creating or importing a key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeySpec {
    pub label: String,
    pub algorithm: Algorithm,
    /// Defaults to `[sign, verify]`.
    #[serde(default)]
    pub operations: Vec<Operation>,
    /// `None`: unlimited.
    #[serde(default)]
    pub usage_limit: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub not_before: Option<i64>,
    #[serde(default)]
    pub not_after: Option<i64>,
    /// End of the verification (recipient usage) period, Unix seconds: no earlier than
    /// `not_after`. `None`: the key verifies as long as it exists.
    #[serde(default)]
    pub verify_until: Option<i64>,
    #[serde(default)]
    pub exportable_under_wrap: bool,
    /// A trusted key may wrap exportable keys (PKCS#11 CKA_TRUSTED). Only RSA keys with the
    /// `wrap` operation can be trusted.
    #[serde(default)]
    pub trusted: bool,
    /// Per-key authorization: the key's material is also wrapped under a key derived from
    /// its own password (Argon2id), which every use must present (see
    /// [`crate::Session::with_key_auth`]). The password comes with the creating session.
    #[serde(default)]
    pub key_auth: bool,
    /// The usage limit counts each version from 0 after `kagi key rotate`, instead of the
    /// default: counting the uses of the name across its versions, so that rotating is no way
    /// around the limit. Sealed: fixed at creation.
    #[serde(default)]
    pub limit_per_version: bool,
}

impl KeySpec {
    pub fn new(label: &str, algorithm: Algorithm) -> Self {
        KeySpec {
            label: label.to_string(),
            algorithm,
            operations: Vec::new(),
            usage_limit: None,
            not_before: None,
            not_after: None,
            verify_until: None,
            exportable_under_wrap: false,
            trusted: false,
            key_auth: false,
            limit_per_version: false,
        }
    }
}

/// Everything stored about a key except its sealed material and usage count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAttributes {
    pub id: String,
    pub partition: String,
    pub label: String,
    pub algorithm: Algorithm,
    pub operations: Vec<Operation>,
    pub usage_limit: Option<i64>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// End of the verification period (see [`KeySpec::verify_until`]).
    pub verify_until: Option<i64>,
    pub exportable_under_wrap: bool,
    pub trusted: bool,
    /// "never extractable": true unless the key was created exportable-under-wrap.
    pub never_extractable: bool,
    /// True when the key was generated inside kagi (PKCS#11 CKA_LOCAL).
    pub local: bool,
    pub state: KeyState,
    /// Bumped on every attribute change; the cache and the usage reservation check it.
    pub generation: i64,
    pub public_key: Vec<u8>,
    pub created_at: i64,
    /// Per-key authorization (see [`KeySpec::key_auth`]).
    pub key_auth: bool,
    /// 1 for a key as created; `kagi key rotate` makes version n + 1 under the same label,
    /// with its own id, and deactivates version n.
    pub version: i64,
    /// See [`KeySpec::limit_per_version`].
    pub limit_per_version: bool,
}

impl KeyAttributes {
    /// Canonical, unambiguous encoding used as AES-GCM associated data. Each field is
    /// length-prefixed so no two attribute sets encode alike.
    pub(crate) fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.public_key.len());
        let mut put = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        put(b"kagi-key-v1");
        put(self.id.as_bytes());
        put(self.partition.as_bytes());
        put(self.label.as_bytes());
        put(self.algorithm.as_str().as_bytes());
        put(operations_to_string(&self.operations).as_bytes());
        put(opt_i64(self.usage_limit).as_bytes());
        put(opt_i64(self.not_before).as_bytes());
        put(opt_i64(self.not_after).as_bytes());
        put(&[
            self.exportable_under_wrap as u8,
            self.trusted as u8,
            self.never_extractable as u8,
            self.local as u8,
        ]);
        put(self.state.as_str().as_bytes());
        put(&self.generation.to_be_bytes());
        put(&self.public_key);
        put(&self.created_at.to_be_bytes());
        // Added after keys existed: only a key that has one binds it, so every older key's
        // seal opens as before (the fields are length-prefixed, so no encoding collides).
        if let Some(v) = self.verify_until {
            put(b"verify-until");
            put(&v.to_be_bytes());
        }
        if self.key_auth {
            put(b"key-auth");
        }
        // Likewise for rotation: version 1 and the per-name limit (every key before rotation
        // existed) bind nothing, later versions and a per-version limit do. A database writer
        // who renumbers a row to make it the name's newest version breaks its seal.
        if self.version != 1 {
            put(b"version");
            put(&self.version.to_be_bytes());
        }
        if self.limit_per_version {
            put(b"limit-per-version");
        }
        out
    }

    /// Associated data of the password layer of a key with per-key authorization: only what
    /// never changes (the id and the public key), so a state change re-seals the outer layer
    /// without the password.
    pub(crate) fn key_auth_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.public_key.len());
        for b in [
            b"kagi-key-auth-v1".as_slice(),
            self.id.as_bytes(),
            &self.public_key,
        ] {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        }
        out
    }

    pub fn allows(&self, op: Operation) -> bool {
        self.operations.contains(&op)
    }
}

fn opt_i64(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

pub(crate) fn operations_to_string(ops: &[Operation]) -> String {
    let mut v: Vec<&str> = ops.iter().map(|o| o.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    v.join(",")
}

pub(crate) fn operations_from_string(s: &str) -> Result<Vec<Operation>, HsmError> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(Operation::from_str).collect()
}

/// What callers see about a key: never any private material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyInfo {
    pub id: String,
    pub label: String,
    pub partition: String,
    pub algorithm: Algorithm,
    pub operations: Vec<Operation>,
    pub usage_count: i64,
    pub usage_limit: Option<i64>,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// End of the verification period (Unix seconds), if any.
    #[serde(default)]
    pub verify_until: Option<i64>,
    pub exportable_under_wrap: bool,
    pub trusted: bool,
    pub never_extractable: bool,
    pub local: bool,
    pub state: KeyState,
    /// The SP 800-57 state: `state` with the signing period (`not_before`..`not_after`)
    /// applied.
    #[serde(default = "lifecycle_default")]
    pub lifecycle: Lifecycle,
    /// Usable right now: state active, inside its validity window and below its usage limit
    /// (Luna's "key not active" once the limit is reached).
    #[serde(default)]
    pub active: bool,
    /// SubjectPublicKeyInfo, DER.
    #[serde(with = "crate::b64")]
    pub public_key_der: Vec<u8>,
    pub created_at: i64,
    /// Every use needs the key's own password (per-key authorization).
    #[serde(default)]
    pub key_auth: bool,
    /// Which version of the name this is (1 until the key is first rotated).
    #[serde(default = "version_default")]
    pub version: i64,
    /// The usage limit counts per version (true) or per name across versions (false).
    #[serde(default)]
    pub limit_per_version: bool,
    /// The name's earlier versions, newest first: only in the answer about one key
    /// (`kagi key show`), empty in lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_versions: Vec<KeyVersion>,
}

/// One earlier version of a rotated key: enough to find the public key that verifies its
/// signatures (`kagi key public K --version N`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyVersion {
    pub id: String,
    pub version: i64,
    pub state: KeyState,
    /// Hex SHA-256 of the version's SubjectPublicKeyInfo (DER).
    pub public_key_sha256: String,
    pub created_at: i64,
}

fn version_default() -> i64 {
    1
}

fn lifecycle_default() -> Lifecycle {
    Lifecycle::Active
}
