//! [`Hsm`]: the one entry point. Sealed until the master key is reconstructed from shares;
//! then every operation checks the caller's role, goes through the group committer for anything
//! durable, and touches key material only inside this crate.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use aws_lc_rs::digest::{digest, SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::EcdsaKeyPair;
use base64::Engine;
use diesel::prelude::*;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

use crate::algorithm::{Algorithm, DigestAlg, RsaPadding};
use crate::approvals::ApprovalAction;
use crate::attributes::{
    operations_from_string, operations_to_string, KeyAttributes, KeyInfo, KeySpec, KeyState,
    Operation,
};
use crate::audit::{self, AuditEvent, AuditKeys, AuditReport, Checkpoint};
use crate::auth::{
    roles_from_string, roles_to_string, CredentialInfo, IdentityKind, Role, Session,
};
use crate::commit::{now_ms, ApplyFn, Committer, EventDraft, QuotaReservation, Reservation};
use crate::crypto::{self, LoadedKey};
use crate::error::{HsmError, Result};
use crate::seal::{self, MasterKey, Sealer};
use crate::shares;
use crate::store::schema::{
    audit_checkpoints, audit_records, credentials, keys, meta, partitions, quota_counters,
};
use crate::store::{AnyConnection, Store, StoreConfig};
use crate::wrap;

const SYSTEM_PARTITION: &str = "system";
const DEFAULT_PARTITION: &str = "default";
const AUDIT_KEY_LABEL: &str = "audit";
const IMPORT_KEY_LABEL: &str = "kagi-import-key";
/// A verified token is trusted this long before Argon2id runs again.
const SESSION_TTL: Duration = Duration::from_secs(60);

pub struct HsmConfig {
    pub store: StoreConfig,
    /// Failed logins after which a credential locks.
    pub max_failed_logins: i64,
}

impl HsmConfig {
    pub fn new(store: StoreConfig) -> Self {
        HsmConfig {
            store,
            max_failed_logins: 5,
        }
    }
}

/// Shares and the first administrator token, shown once at init.
pub struct InitOutput {
    pub shares: Vec<Zeroizing<String>>,
    pub threshold: usize,
    pub admin_token: Zeroizing<String>,
}

impl std::fmt::Debug for InitOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InitOutput {{ {} shares (redacted), threshold {}, admin token (redacted) }}",
            self.shares.len(),
            self.threshold
        )
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct UnsealProgress {
    pub have: usize,
    pub need: usize,
    pub unsealed: bool,
}

/// One use to charge against a policy quota; the limits come from the active policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaCharge {
    pub name: String,
    pub total: Option<i64>,
    pub per_hour: Option<i64>,
    pub per_day: Option<i64>,
}

/// The result of an operation that may need M-of-N approval first.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Gated<T> {
    /// It happened.
    Done(T),
    /// It waits for approvals; the request says how many and from whom.
    Pending(Box<crate::approvals::ApprovalInfo>),
}

/// The audit event of a durable change, apart from who made it.
pub(crate) struct EventParts {
    pub action: &'static str,
    pub key_id: Option<String>,
    pub detail: serde_json::Value,
    pub use_hi: Option<i64>,
}

/// A new identity: see [`Hsm::create_identity`].
#[derive(Debug, Clone)]
pub struct IdentitySpec {
    /// `None`: the caller's partition.
    pub partition: Option<String>,
    pub name: String,
    pub kind: IdentityKind,
    pub roles: Vec<Role>,
    /// Unix seconds.
    pub expires_at: Option<i64>,
    /// SHA-256 of a TLS client certificate (DER) that also authenticates this identity.
    pub client_cert_sha256: Option<[u8; 32]>,
}

/// Turns a fresh signature into the change that must commit with its use.
pub(crate) type RecordFn<'a> = dyn FnMut(&[u8]) -> Result<crate::commit::Staged> + 'a;

/// A precomputed digest to sign or verify.
#[derive(Debug, Clone)]
pub struct SignRequest {
    /// `None`: SHA-256.
    pub digest_alg: Option<DigestAlg>,
    pub digest: Vec<u8>,
    pub padding: RsaPadding,
}

/// A signature and the use it consumed.
#[derive(Debug, Clone)]
pub struct Signed {
    pub signature: Vec<u8>,
    pub algorithm: Algorithm,
    /// The key's usage count including this use.
    pub usage_count: i64,
    pub usage_limit: Option<i64>,
    pub digest_alg: DigestAlg,
    /// Sequence number of the audit record of this use.
    pub audit_seq: i64,
    /// Index of this signature's entry in the public transparency log.
    pub tlog_index: Option<i64>,
}

struct CachedKey {
    attrs: KeyAttributes,
    key: LoadedKey,
    high_water: Arc<AtomicI64>,
}

pub(crate) struct Unsealed {
    pub(crate) master: MasterKey,
    sealers: Mutex<HashMap<String, Arc<Sealer>>>,
    pub(crate) audit: Arc<AuditKeys>,
    pub(crate) committer: Committer,
}

enum State {
    Sealed {
        threshold: Option<usize>,
        collected: Vec<Zeroizing<Vec<u8>>>,
    },
    Unsealed(Arc<Unsealed>),
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    max_failed_logins: i64,
    state: RwLock<State>,
    keys: RwLock<HashMap<(String, String), Arc<CachedKey>>>,
    sessions: Mutex<HashMap<[u8; 32], (Session, Instant)>>,
    /// Per quota: the highest total the audit log records (the counter's floor).
    quota_floors: Mutex<HashMap<String, Arc<AtomicI64>>>,
}

/// Handle to the HSM. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Hsm {
    pub(crate) inner: Arc<Inner>,
}

fn lock_err() -> HsmError {
    HsmError::Store("internal lock poisoned; restart kagi".into())
}

pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b)?;
    Ok(hex::encode(b))
}

pub(crate) fn validate_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 128
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HsmError::BadInput(
            "a name is 1 to 128 characters of letters, digits, '-', '_' and '.'".into(),
        ))
    }
}

/// Row of `keys`, in schema order.
#[derive(Queryable, Insertable, Clone)]
#[diesel(table_name = keys)]
pub(crate) struct KeyRow {
    id: String,
    partition_name: String,
    label: String,
    algorithm: String,
    operations: String,
    usage_limit: Option<i64>,
    usage_count: i64,
    not_before: Option<i64>,
    not_after: Option<i64>,
    exportable_under_wrap: bool,
    trusted: bool,
    never_extractable: bool,
    local_origin: bool,
    state: String,
    generation: i64,
    public_key: Vec<u8>,
    sealed: Option<Vec<u8>>,
    created_at: i64,
}

impl KeyRow {
    fn from_attrs(a: &KeyAttributes, sealed: Vec<u8>) -> KeyRow {
        KeyRow {
            id: a.id.clone(),
            partition_name: a.partition.clone(),
            label: a.label.clone(),
            algorithm: a.algorithm.as_str().into(),
            operations: operations_to_string(&a.operations),
            usage_limit: a.usage_limit,
            usage_count: 0,
            not_before: a.not_before,
            not_after: a.not_after,
            exportable_under_wrap: a.exportable_under_wrap,
            trusted: a.trusted,
            never_extractable: a.never_extractable,
            local_origin: a.local,
            state: a.state.as_str().into(),
            generation: a.generation,
            public_key: a.public_key.clone(),
            sealed: Some(sealed),
            created_at: a.created_at,
        }
    }

    /// Attributes as stored. Unparseable values mean tampering: report an integrity failure.
    fn attrs(&self) -> Result<KeyAttributes> {
        let bad = || HsmError::KeyIntegrity {
            label: self.label.clone(),
        };
        Ok(KeyAttributes {
            id: self.id.clone(),
            partition: self.partition_name.clone(),
            label: self.label.clone(),
            algorithm: Algorithm::from_str(&self.algorithm).map_err(|_| bad())?,
            operations: operations_from_string(&self.operations).map_err(|_| bad())?,
            usage_limit: self.usage_limit,
            not_before: self.not_before,
            not_after: self.not_after,
            exportable_under_wrap: self.exportable_under_wrap,
            trusted: self.trusted,
            never_extractable: self.never_extractable,
            local: self.local_origin,
            state: KeyState::from_str(&self.state).map_err(|_| bad())?,
            generation: self.generation,
            public_key: self.public_key.clone(),
            created_at: self.created_at,
        })
    }

    fn info(&self, usage_count: i64) -> Result<KeyInfo> {
        let a = self.attrs()?;
        let now = now_ms() / 1000;
        let active = a.state == KeyState::Active
            && a.usage_limit.is_none_or(|l| usage_count < l)
            && a.not_before.is_none_or(|t| now >= t)
            && a.not_after.is_none_or(|t| now <= t);
        Ok(KeyInfo {
            active,
            id: a.id,
            label: a.label,
            partition: a.partition,
            algorithm: a.algorithm,
            operations: a.operations,
            usage_count,
            usage_limit: a.usage_limit,
            not_before: a.not_before,
            not_after: a.not_after,
            exportable_under_wrap: a.exportable_under_wrap,
            trusted: a.trusted,
            never_extractable: a.never_extractable,
            local: a.local,
            state: a.state,
            public_key_der: a.public_key,
            created_at: a.created_at,
        })
    }
}

#[derive(Queryable, Insertable)]
#[diesel(table_name = credentials)]
struct CredentialRow {
    id: String,
    partition_name: String,
    name: String,
    roles: String,
    secret_hash: String,
    failed_logins: i64,
    locked: bool,
    created_at: i64,
    kind: String,
    expires_at: Option<i64>,
    revoked: bool,
    cert_sha256: Option<String>,
}

impl CredentialRow {
    /// Why this credential may not log in at all, whatever it presents.
    fn refusal(&self) -> Option<HsmError> {
        if self.revoked {
            Some(HsmError::CredentialRevoked(self.name.clone()))
        } else if self.expires_at.is_some_and(|t| now_ms() / 1000 >= t) {
            Some(HsmError::CredentialExpired(self.name.clone()))
        } else if self.locked {
            Some(HsmError::CredentialLocked(self.name.clone()))
        } else {
            None
        }
    }

    fn session(&self) -> Result<Session> {
        Ok(Session {
            credential_id: self.id.clone(),
            name: self.name.clone(),
            kind: IdentityKind::from_str(&self.kind)?,
            partition: self.partition_name.clone(),
            roles: roles_from_string(&self.roles)?,
            expires_at: self.expires_at,
        })
    }

    fn info(&self) -> Result<CredentialInfo> {
        Ok(CredentialInfo {
            id: self.id.clone(),
            name: self.name.clone(),
            kind: IdentityKind::from_str(&self.kind)?,
            expires_at: self.expires_at,
            revoked: self.revoked,
            client_cert_sha256: self.cert_sha256.clone(),
            partition: self.partition_name.clone(),
            roles: roles_from_string(&self.roles)?,
            failed_logins: self.failed_logins,
            locked: self.locked,
            created_at: self.created_at,
        })
    }
}

fn meta_get(c: &mut AnyConnection, name: &str) -> Result<Option<Vec<u8>>> {
    Ok(meta::table
        .filter(meta::name.eq(name))
        .select(meta::value)
        .first(c)
        .optional()?)
}

fn meta_put(c: &mut AnyConnection, name: &str, value: &[u8]) -> Result<()> {
    diesel::insert_into(meta::table)
        .values((meta::name.eq(name), meta::value.eq(value)))
        .execute(c)?;
    Ok(())
}

/// Argon2id with the library defaults (19 MiB, t=2, p=1: OWASP's minimum).
fn hash_secret(secret: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    SystemRandom::new().fill(&mut salt)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| HsmError::Crypto("salt"))?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| HsmError::Crypto("argon2"))
}

/// New credential: returns (row, token). The token is `kagi_<id>_<secret>`.
fn new_credential(
    partition: &str,
    name: &str,
    kind: IdentityKind,
    roles: &[Role],
    expires_at: Option<i64>,
) -> Result<(CredentialRow, Zeroizing<String>)> {
    let id = random_hex(8)?;
    let mut raw = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(&mut raw[..])?;
    let secret = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..]));
    let token = Zeroizing::new(format!("kagi_{id}_{}", secret.as_str()));
    let row = CredentialRow {
        id,
        partition_name: partition.into(),
        name: name.into(),
        roles: roles_to_string(roles),
        secret_hash: hash_secret(&secret)?,
        failed_logins: 0,
        locked: false,
        created_at: now_ms() / 1000,
        kind: kind.as_str().into(),
        expires_at,
        revoked: false,
        cert_sha256: None,
    };
    Ok((row, token))
}

impl Hsm {
    /// Open the store (running migrations). The HSM starts sealed.
    pub fn open(cfg: HsmConfig) -> Result<Hsm> {
        let store = Store::open(&cfg.store)?;
        let threshold = {
            let mut c = store.conn()?;
            meta_get(&mut c, "threshold")?
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
        };
        Ok(Hsm {
            inner: Arc::new(Inner {
                store,
                max_failed_logins: cfg.max_failed_logins.max(1),
                state: RwLock::new(State::Sealed {
                    threshold,
                    collected: Vec::new(),
                }),
                keys: RwLock::new(HashMap::new()),
                sessions: Mutex::new(HashMap::new()),
                quota_floors: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn store_config(&self) -> &StoreConfig {
        &self.inner.store.config
    }

    pub fn is_initialized(&self) -> Result<bool> {
        let mut c = self.inner.store.conn()?;
        Ok(meta_get(&mut c, "initialized")?.is_some())
    }

    pub fn is_sealed(&self) -> bool {
        match self.inner.state.read() {
            Ok(s) => matches!(*s, State::Sealed { .. }),
            Err(_) => true,
        }
    }

    pub(crate) fn unsealed(&self) -> Result<Arc<Unsealed>> {
        let state = self.inner.state.read().map_err(|_| lock_err())?;
        match &*state {
            State::Unsealed(u) => Ok(u.clone()),
            State::Sealed {
                threshold: None, ..
            } => Err(HsmError::NotInitialized),
            State::Sealed {
                threshold: Some(t),
                collected,
            } => Err(HsmError::Sealed {
                need: t.saturating_sub(collected.len()),
            }),
        }
    }

    /// Create a new instance: master key, shares, the system and default partitions, the audit
    /// key and a first administrator. Leaves the HSM unsealed.
    pub fn init(&self, share_count: usize, threshold: usize) -> Result<InitOutput> {
        if self.is_initialized()? {
            return Err(HsmError::AlreadyInitialized);
        }
        let master = MasterKey::generate()?;
        let shares = shares::split(master.as_bytes(), threshold, share_count)?;
        let check = master
            .sealer(seal::CHECK_INFO)?
            .seal(seal::CHECK_PLAINTEXT, b"")?;

        // The audit key is an ordinary sealed key in the system partition.
        let now = now_ms() / 1000;
        let (audit_pkcs8, audit_spki) = crypto::generate(Algorithm::EcP256)?;
        let audit_attrs = KeyAttributes {
            id: random_hex(16)?,
            partition: SYSTEM_PARTITION.into(),
            label: AUDIT_KEY_LABEL.into(),
            algorithm: Algorithm::EcP256,
            operations: vec![Operation::Sign],
            usage_limit: None,
            not_before: None,
            not_after: None,
            exportable_under_wrap: false,
            trusted: false,
            never_extractable: true,
            local: true,
            state: KeyState::Active,
            generation: 0,
            public_key: audit_spki,
            created_at: now,
        };
        let audit_sealed = master
            .sealer(&seal::partition_info(SYSTEM_PARTITION))?
            .seal(&audit_pkcs8, &audit_attrs.associated_data())?;
        let audit_keys = Arc::new(AuditKeys {
            mac: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &master.derive(seal::AUDIT_MAC_INFO)?[..],
            ),
            signer: EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &audit_pkcs8,
            )
            .map_err(|_| HsmError::Crypto("audit key"))?,
            tlog: tlog_key(&master)?,
        });
        let (admin_row, admin_token) = new_credential(
            DEFAULT_PARTITION,
            "admin",
            IdentityKind::Person,
            &[
                Role::Administrator,
                Role::Officer,
                Role::User,
                Role::Auditor,
            ],
            None,
        )?;
        let admin_id = admin_row.id.clone();

        let committer = Committer::start(self.inner.store.clone(), audit_keys.clone())?;
        let audit_row = KeyRow::from_attrs(&audit_attrs, audit_sealed);
        let apply: ApplyFn = Box::new(move |c| {
            if meta_get(c, "initialized")?.is_some() {
                return Err(HsmError::AlreadyInitialized);
            }
            for p in [SYSTEM_PARTITION, DEFAULT_PARTITION] {
                diesel::insert_into(partitions::table)
                    .values((partitions::name.eq(p), partitions::created_at.eq(now)))
                    .execute(c)?;
            }
            diesel::insert_into(keys::table)
                .values(&audit_row)
                .execute(c)?;
            diesel::insert_into(credentials::table)
                .values(&admin_row)
                .execute(c)?;
            meta_put(c, "master_check", &check)?;
            meta_put(c, "threshold", threshold.to_string().as_bytes())?;
            meta_put(c, "audit_key_id", audit_row.id.as_bytes())?;
            meta_put(c, "initialized", b"1")?;
            Ok(())
        });
        committer.submit(
            None,
            Some(apply),
            EventDraft {
                actor: "hsm".into(),
                action: "hsm.init".into(),
                partition: None,
                key_id: None,
                detail: serde_json::json!({"shares": share_count, "threshold": threshold, "admin_credential": admin_id}),
                outcome: None,
                use_hi: None,
            },
        )?;
        let unsealed = Unsealed {
            master,
            sealers: Mutex::new(HashMap::new()),
            audit: audit_keys,
            committer,
        };
        *self.inner.state.write().map_err(|_| lock_err())? = State::Unsealed(Arc::new(unsealed));
        Ok(InitOutput {
            shares,
            threshold,
            admin_token,
        })
    }

    /// Add one share. When enough are in, rebuild the master key, check it, and unseal.
    pub fn unseal(&self, share_text: &str) -> Result<UnsealProgress> {
        let (share_threshold, share) = shares::parse(share_text)?;
        let mut state = self.inner.state.write().map_err(|_| lock_err())?;
        let (threshold, collected) = match &mut *state {
            State::Unsealed(_) => {
                return Ok(UnsealProgress {
                    have: 0,
                    need: 0,
                    unsealed: true,
                })
            }
            State::Sealed {
                threshold: None, ..
            } => return Err(HsmError::NotInitialized),
            State::Sealed {
                threshold: Some(t),
                collected,
            } => (*t, collected),
        };
        if share_threshold != threshold {
            return Err(HsmError::BadShare(format!(
                "this share is from a {share_threshold}-of-N split, but this instance needs {threshold}"
            )));
        }
        if !collected.iter().any(|s| s[0] == share[0]) {
            collected.push(share);
        }
        if collected.len() < threshold {
            return Ok(UnsealProgress {
                have: collected.len(),
                need: threshold,
                unsealed: false,
            });
        }
        let secret = shares::combine(threshold, collected);
        collected.clear();
        let master = MasterKey::from_bytes(&secret?)?;
        let unsealed = self.open_with_master(master)?;
        let committer = unsealed.committer.clone();
        *state = State::Unsealed(unsealed);
        drop(state);
        committer.submit(
            None,
            None,
            system_event("hsm.unseal", serde_json::json!({})),
        )?;
        Ok(UnsealProgress {
            have: threshold,
            need: threshold,
            unsealed: true,
        })
    }

    fn open_with_master(&self, master: MasterKey) -> Result<Arc<Unsealed>> {
        let mut c = self.inner.store.conn()?;
        let check = meta_get(&mut c, "master_check")?.ok_or(HsmError::NotInitialized)?;
        if master
            .sealer(seal::CHECK_INFO)?
            .open(&check, b"")
            .as_deref()
            .map(|v| &v[..])
            != Some(seal::CHECK_PLAINTEXT)
        {
            return Err(HsmError::WrongMasterKey);
        }
        let audit_id = meta_get(&mut c, "audit_key_id")?
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or(HsmError::NotInitialized)?;
        let row: KeyRow = keys::table.filter(keys::id.eq(&audit_id)).first(&mut c)?;
        let attrs = row.attrs()?;
        let sealer = master.sealer(&seal::partition_info(SYSTEM_PARTITION))?;
        let pkcs8 = sealer
            .open(
                row.sealed.as_deref().unwrap_or_default(),
                &attrs.associated_data(),
            )
            .ok_or(HsmError::KeyIntegrity {
                label: "system/audit".into(),
            })?;
        let audit_keys = Arc::new(AuditKeys {
            mac: aws_lc_rs::hmac::Key::new(
                aws_lc_rs::hmac::HMAC_SHA256,
                &master.derive(seal::AUDIT_MAC_INFO)?[..],
            ),
            signer: EcdsaKeyPair::from_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &pkcs8,
            )
            .map_err(|_| HsmError::KeyIntegrity {
                label: "system/audit".into(),
            })?,
            tlog: tlog_key(&master)?,
        });
        let committer = Committer::start(self.inner.store.clone(), audit_keys.clone())?;
        Ok(Arc::new(Unsealed {
            master,
            sealers: Mutex::new(HashMap::new()),
            audit: audit_keys,
            committer,
        }))
    }

    pub(crate) fn sealer(&self, u: &Unsealed, partition: &str) -> Result<Arc<Sealer>> {
        let mut map = u.sealers.lock().map_err(|_| lock_err())?;
        if let Some(s) = map.get(partition) {
            return Ok(s.clone());
        }
        let s = Arc::new(u.master.sealer(&seal::partition_info(partition))?);
        map.insert(partition.to_string(), s.clone());
        Ok(s)
    }

    // ---------------------------------------------------------------- login

    /// Check a bearer token. Failed attempts are counted and audited; the credential locks
    /// after `max_failed_logins`.
    pub fn login(&self, token: &str) -> Result<Session> {
        let u = self.unsealed()?;
        let token_hash = token_hash(token);
        if let Some(s) = self.cached_by_hash(&token_hash) {
            return Ok(s);
        }
        let mut parts = token.trim().splitn(3, '_');
        let (Some("kagi"), Some(id), Some(secret)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(HsmError::Unauthenticated);
        };
        if id.len() != 16 || !id.chars().all(|c| c.is_ascii_hexdigit()) || secret.len() > 256 {
            return Err(HsmError::Unauthenticated);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::id.eq(id))
            .first(&mut c)
            .optional()?;
        drop(c);
        let event = |outcome: Option<String>, detail: serde_json::Value| EventDraft {
            actor: format!("credential:{id}"),
            action: "auth.login".into(),
            partition: None,
            key_id: None,
            detail,
            outcome,
            use_hi: None,
        };
        let Some(row) = row else {
            u.committer.submit(
                None,
                None,
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"reason": "unknown credential"}),
                ),
            )?;
            return Err(HsmError::BadCredential);
        };
        // Revoked, expired and locked are refused whatever the secret.
        if let Some(e) = row.refusal() {
            u.committer.submit(
                None,
                None,
                event(
                    Some(format!("denied:{}", e.code())),
                    serde_json::json!({"name": row.name}),
                ),
            )?;
            return Err(e);
        }
        let ok = PasswordHash::new(&row.secret_hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false);
        let cred_id = row.id.clone();
        if !ok {
            let max = self.inner.max_failed_logins;
            let apply: ApplyFn = Box::new(move |c| {
                let failed: i64 = credentials::table
                    .filter(credentials::id.eq(&cred_id))
                    .select(credentials::failed_logins)
                    .first(c)?;
                diesel::update(credentials::table.filter(credentials::id.eq(&cred_id)))
                    .set((
                        credentials::failed_logins.eq(failed + 1),
                        credentials::locked.eq(failed + 1 >= max),
                    ))
                    .execute(c)?;
                Ok(())
            });
            u.committer.submit(
                None,
                Some(apply),
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"name": row.name}),
                ),
            )?;
            return Err(HsmError::BadCredential);
        }
        let session = row.session()?;
        let reset: Option<ApplyFn> = (row.failed_logins > 0).then(|| -> ApplyFn {
            Box::new(move |c| {
                diesel::update(credentials::table.filter(credentials::id.eq(&cred_id)))
                    .set(credentials::failed_logins.eq(0))
                    .execute(c)?;
                Ok(())
            })
        });
        u.committer.submit(
            None,
            reset,
            EventDraft {
                actor: session.actor(),
                action: "auth.login".into(),
                partition: Some(session.partition.clone()),
                key_id: None,
                detail: serde_json::json!({"credential": session.credential_id}),
                outcome: None,
                use_hi: None,
            },
        )?;
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        if sessions.len() > 10_000 {
            sessions.retain(|_, (_, at)| at.elapsed() < SESSION_TTL);
        }
        sessions.insert(token_hash, (session.clone(), Instant::now()));
        Ok(session)
    }

    /// A session for `token` if it logged in less than a minute ago: no Argon2id, no I/O, so
    /// front ends may call it on their event loop before falling back to [`Hsm::login`].
    pub fn cached_session(&self, token: &str) -> Option<Session> {
        if self.is_sealed() {
            return None;
        }
        self.cached_by_hash(&token_hash(token))
    }

    /// Cached sessions expire with SESSION_TTL; revocation in this process purges them at once
    /// (other processes see it within SESSION_TTL).
    fn cached_by_hash(&self, hash: &[u8; 32]) -> Option<Session> {
        let sessions = self.inner.sessions.lock().ok()?;
        let (s, at) = sessions.get(hash)?;
        // An expiry inside the cache window still ends the session on time.
        let expired = s.expires_at.is_some_and(|t| now_ms() / 1000 >= t);
        (at.elapsed() < SESSION_TTL && !expired).then(|| s.clone())
    }

    /// A credential in the caller's own partition.
    pub fn create_credential(
        &self,
        s: &Session,
        name: &str,
        roles: &[Role],
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        self.create_credential_in(s, &s.partition.clone(), name, roles)
    }

    /// A credential in any user partition. The administrator role is HSM-wide for partitions
    /// and credentials (like an HSM security officer); it grants no use of other partitions'
    /// keys without a credential there.
    pub fn create_credential_in(
        &self,
        s: &Session,
        partition: &str,
        name: &str,
        roles: &[Role],
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        self.create_identity(
            s,
            &IdentitySpec {
                partition: Some(partition.to_string()),
                name: name.to_string(),
                kind: IdentityKind::Person,
                roles: roles.to_vec(),
                expires_at: None,
                client_cert_sha256: None,
            },
        )
    }

    /// A new identity (person, pipeline or factory line) with a fresh token, shown once.
    /// Names are unique among live identities, because policies name identities.
    pub fn create_identity(
        &self,
        s: &Session,
        spec: &IdentitySpec,
    ) -> Result<(CredentialInfo, Zeroizing<String>)> {
        let partition = spec.partition.as_deref().unwrap_or(&s.partition);
        let (name, roles) = (spec.name.as_str(), spec.roles.as_slice());
        s.require(Role::Administrator, "create credentials")?;
        validate_label(name)?;
        if roles.is_empty() {
            return Err(HsmError::BadInput(
                "give the credential at least one role".into(),
            ));
        }
        if partition == SYSTEM_PARTITION {
            return Err(HsmError::BadInput(
                "the system partition holds kagi's own keys and takes no credentials".into(),
            ));
        }
        if spec.expires_at.is_some_and(|t| t <= now_ms() / 1000) {
            return Err(HsmError::BadInput("the expiry time is in the past".into()));
        }
        self.require_partition(partition)?;
        let u = self.unsealed()?;
        let (mut row, token) = new_credential(partition, name, spec.kind, roles, spec.expires_at)?;
        row.cert_sha256 = spec.client_cert_sha256.map(hex::encode);
        let info = row.info()?;
        let apply: ApplyFn = Box::new(move |c| {
            let taken: i64 = credentials::table
                .filter(credentials::name.eq(&row.name))
                .filter(credentials::revoked.eq(false))
                .count()
                .get_result(c)?;
            if taken > 0 {
                return Err(HsmError::Conflict(format!(
                    "an identity named '{}' already exists: revoke it first or pick another name",
                    row.name
                )));
            }
            if let Some(fp) = &row.cert_sha256 {
                let bound: i64 = credentials::table
                    .filter(credentials::cert_sha256.eq(fp))
                    .filter(credentials::revoked.eq(false))
                    .count()
                    .get_result(c)?;
                if bound > 0 {
                    return Err(HsmError::Conflict(
                        "that client certificate already authenticates another live identity"
                            .into(),
                    ));
                }
            }
            diesel::insert_into(credentials::table)
                .values(&row)
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(s, "credential.create", None, serde_json::json!({"credential": info.id, "name": info.name, "kind": info.kind.as_str(), "partition": info.partition, "roles": roles_to_string(&info.roles), "expires_at": info.expires_at})),
        )?;
        Ok((info, token))
    }

    fn require_partition(&self, name: &str) -> Result<()> {
        let mut c = self.inner.store.conn()?;
        let n: i64 = partitions::table
            .filter(partitions::name.eq(name))
            .count()
            .get_result(&mut c)?;
        if n == 1 {
            Ok(())
        } else {
            Err(HsmError::NotFound(format!(
                "partition '{}' ('kagi partition list' shows them)",
                name.chars().take(64).collect::<String>()
            )))
        }
    }

    /// A new partition: its own sealing key (derived from the master key and its name) and its
    /// own credentials.
    pub fn create_partition(&self, s: &Session, name: &str) -> Result<()> {
        s.require(Role::Administrator, "create partitions")?;
        validate_label(name)?;
        let u = self.unsealed()?;
        let owned = name.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            let n: i64 = partitions::table
                .filter(partitions::name.eq(&owned))
                .count()
                .get_result(c)?;
            if n > 0 {
                return Err(HsmError::Conflict(format!(
                    "partition '{owned}' already exists"
                )));
            }
            diesel::insert_into(partitions::table)
                .values((
                    partitions::name.eq(&owned),
                    partitions::created_at.eq(now_ms() / 1000),
                ))
                .execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "partition.create",
                None,
                serde_json::json!({"partition": name}),
            ),
        )?;
        Ok(())
    }

    pub fn list_partitions(&self, s: &Session) -> Result<Vec<String>> {
        s.require(Role::Administrator, "list partitions")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        Ok(partitions::table
            .filter(partitions::name.ne(SYSTEM_PARTITION))
            .select(partitions::name)
            .order(partitions::name.asc())
            .load(&mut c)?)
    }

    pub fn list_credentials(&self, s: &Session) -> Result<Vec<CredentialInfo>> {
        s.require(Role::Administrator, "list credentials")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<CredentialRow> = credentials::table
            .filter(credentials::partition_name.eq(&s.partition))
            .order(credentials::created_at.asc())
            .load(&mut c)?;
        rows.iter().map(|r| r.info()).collect()
    }

    /// Log in with a TLS client certificate (DER) bound to an identity. The handshake proved the
    /// caller holds its private key; the identity is found by the certificate's SHA-256.
    pub fn login_by_certificate(&self, cert_der: &[u8]) -> Result<Session> {
        let u = self.unsealed()?;
        let fp = {
            let d = digest(&SHA256, cert_der);
            hex::encode(d.as_ref())
        };
        let cache = token_hash(&format!("cert:{fp}"));
        if let Some(s) = self.cached_by_hash(&cache) {
            return Ok(s);
        }
        let mut c = self.inner.store.conn()?;
        let row: Option<CredentialRow> = credentials::table
            .filter(credentials::cert_sha256.eq(&fp))
            .filter(credentials::revoked.eq(false))
            .first(&mut c)
            .optional()?;
        drop(c);
        let event =
            |outcome: Option<String>, detail: serde_json::Value, actor: String| EventDraft {
                actor,
                action: "auth.login_certificate".into(),
                partition: None,
                key_id: None,
                detail,
                outcome,
                use_hi: None,
            };
        let Some(row) = row else {
            u.committer.submit(
                None,
                None,
                event(
                    Some("denied:bad_credential".into()),
                    serde_json::json!({"cert_sha256": fp}),
                    "tls-client".into(),
                ),
            )?;
            return Err(HsmError::BadCredential);
        };
        let actor = format!("{}:{}", row.partition_name, row.name);
        if let Some(e) = row.refusal() {
            u.committer.submit(
                None,
                None,
                event(
                    Some(format!("denied:{}", e.code())),
                    serde_json::json!({"cert_sha256": fp}),
                    actor,
                ),
            )?;
            return Err(e);
        }
        let session = row.session()?;
        u.committer.submit(
            None,
            None,
            event(
                None,
                serde_json::json!({"credential": row.id, "cert_sha256": fp}),
                actor,
            ),
        )?;
        let mut sessions = self.inner.sessions.lock().map_err(|_| lock_err())?;
        sessions.insert(cache, (session.clone(), Instant::now()));
        Ok(session)
    }

    /// Revoke a credential for good. This process forgets its cached sessions at once.
    pub fn revoke_credential(&self, s: &Session, id: &str) -> Result<()> {
        s.require(Role::Administrator, "revoke credentials")?;
        let u = self.unsealed()?;
        let id2 = id.to_string();
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                credentials::table
                    .filter(credentials::id.eq(&id2))
                    .filter(credentials::revoked.eq(false)),
            )
            .set(credentials::revoked.eq(true))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::NotFound(format!("live credential '{id2}'")))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.revoke",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.retain(|_, (sess, _)| sess.credential_id != id);
        }
        Ok(())
    }

    pub fn unlock_credential(&self, s: &Session, id: &str) -> Result<()> {
        s.require(Role::Administrator, "unlock credentials")?;
        let u = self.unsealed()?;
        let (id2, part) = (id.to_string(), s.partition.clone());
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                credentials::table
                    .filter(credentials::id.eq(&id2))
                    .filter(credentials::partition_name.eq(&part)),
            )
            .set((
                credentials::locked.eq(false),
                credentials::failed_logins.eq(0),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::NotFound(format!("credential '{id2}'")))
            }
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                "credential.unlock",
                None,
                serde_json::json!({"credential": id}),
            ),
        )?;
        Ok(())
    }

    // ---------------------------------------------------------------- keys

    pub fn create_key(&self, s: &Session, spec: &KeySpec) -> Result<KeyInfo> {
        s.require(Role::Officer, "create keys")?;
        let u = self.unsealed()?;
        let attrs = self.new_attrs(s, spec, true)?;
        self.generate_and_store(&u, s, attrs, "key.generate")
    }

    /// Attributes of a new CA key: the CA prefix is allowed here and only here.
    pub(crate) fn attrs_for_ca(&self, s: &Session, spec: &KeySpec) -> Result<KeyAttributes> {
        self.attrs_for(s, spec, true)
    }

    pub(crate) fn generate_and_store(
        &self,
        u: &Unsealed,
        s: &Session,
        attrs: KeyAttributes,
        action: &str,
    ) -> Result<KeyInfo> {
        let (pkcs8, spki) = crypto::generate(attrs.algorithm)?;
        let attrs = KeyAttributes {
            public_key: spki,
            ..attrs
        };
        self.store_new_key(u, s, attrs, &pkcs8, action)
    }

    /// Attributes for a caller's new key; the import key's name is kagi's own.
    fn new_attrs(&self, s: &Session, spec: &KeySpec, local: bool) -> Result<KeyAttributes> {
        if spec.label == IMPORT_KEY_LABEL {
            return Err(HsmError::KeyExists(spec.label.clone()));
        }
        if spec.label.starts_with(crate::ca_store::CA_KEY_PREFIX) {
            return Err(HsmError::BadInput(format!(
                "key names starting with '{}' are kept for CA keys: create a CA with 'kagi ca create-root' or pick another name",
                crate::ca_store::CA_KEY_PREFIX
            )));
        }
        self.attrs_for(s, spec, local)
    }

    fn attrs_for(&self, s: &Session, spec: &KeySpec, local: bool) -> Result<KeyAttributes> {
        validate_label(&spec.label)?;
        if let Some(l) = spec.usage_limit {
            if l < 0 {
                return Err(HsmError::BadInput(
                    "a usage limit cannot be negative".into(),
                ));
            }
        }
        if let (Some(a), Some(b)) = (spec.not_before, spec.not_after) {
            if a >= b {
                return Err(HsmError::BadInput(
                    "not-before must be earlier than not-after".into(),
                ));
            }
        }
        let mut operations = if spec.operations.is_empty() {
            vec![Operation::Sign, Operation::Verify]
        } else {
            spec.operations.clone()
        };
        operations.sort();
        operations.dedup();
        if operations.contains(&Operation::Wrap) && !spec.algorithm.is_rsa() {
            return Err(HsmError::BadInput(
                "only RSA keys can wrap other keys".into(),
            ));
        }
        if spec.trusted && !operations.contains(&Operation::Wrap) {
            return Err(HsmError::BadInput(
                "a trusted key must allow the wrap operation".into(),
            ));
        }
        Ok(KeyAttributes {
            id: random_hex(16)?,
            partition: s.partition.clone(),
            label: spec.label.clone(),
            algorithm: spec.algorithm,
            operations,
            usage_limit: spec.usage_limit,
            not_before: spec.not_before,
            not_after: spec.not_after,
            exportable_under_wrap: spec.exportable_under_wrap,
            trusted: spec.trusted,
            // An imported key was outside once, so it was never "never extractable".
            never_extractable: local && !spec.exportable_under_wrap,
            local,
            state: KeyState::Active,
            generation: 0,
            public_key: Vec::new(),
            created_at: now_ms() / 1000,
        })
    }

    fn store_new_key(
        &self,
        u: &Unsealed,
        s: &Session,
        attrs: KeyAttributes,
        pkcs8: &[u8],
        action: &str,
    ) -> Result<KeyInfo> {
        let sealed = self
            .sealer(u, &attrs.partition)?
            .seal(pkcs8, &attrs.associated_data())?;
        let row = KeyRow::from_attrs(&attrs, sealed);
        let info = row.info(0)?;
        let apply: ApplyFn = Box::new(move |c| {
            let exists: i64 = keys::table
                .filter(keys::partition_name.eq(&row.partition_name))
                .filter(keys::label.eq(&row.label))
                .filter(keys::state.ne("destroyed"))
                .count()
                .get_result(c)?;
            if exists > 0 {
                return Err(HsmError::KeyExists(row.label.clone()));
            }
            diesel::insert_into(keys::table).values(&row).execute(c)?;
            Ok(())
        });
        u.committer.submit(
            None,
            Some(apply),
            user_event(
                s,
                action,
                Some(info.id.clone()),
                serde_json::json!({
                    "label": info.label, "algorithm": info.algorithm.as_str(),
                    "usage_limit": info.usage_limit, "exportable_under_wrap": info.exportable_under_wrap,
                    "trusted": info.trusted, "operations": operations_to_string(&info.operations),
                }),
            ),
        )?;
        Ok(info)
    }

    pub(crate) fn live_row(&self, partition: &str, label: &str) -> Result<KeyRow> {
        let mut c = self.inner.store.conn()?;
        keys::table
            .filter(keys::partition_name.eq(partition))
            .filter(keys::label.eq(label))
            .filter(keys::state.ne("destroyed"))
            .first(&mut c)
            .optional()?
            .ok_or_else(|| HsmError::KeyNotFound(label.chars().take(128).collect()))
    }

    /// Highest usage count the audit log shows for a key: the floor for its counter.
    pub(crate) fn audited_uses(&self, key_id: &str) -> Result<i64> {
        let mut c = self.inner.store.conn()?;
        let hi: Option<i64> = audit_records::table
            .filter(audit_records::key_id.eq(key_id))
            .select(diesel::dsl::max(audit_records::use_hi))
            .first(&mut c)?;
        Ok(hi.unwrap_or(0))
    }

    fn was_destroyed(&self, key_id: &str) -> Result<bool> {
        let mut c = self.inner.store.conn()?;
        let n: i64 = audit_records::table
            .filter(audit_records::key_id.eq(key_id))
            .filter(audit_records::action.eq("key.destroy"))
            .filter(audit_records::outcome.eq("ok"))
            .count()
            .get_result(&mut c)?;
        Ok(n > 0)
    }

    /// Unseal a key into the cache, checking every bound attribute.
    fn load_key(&self, u: &Unsealed, partition: &str, label: &str) -> Result<Arc<CachedKey>> {
        let cache_key = (partition.to_string(), label.to_string());
        if let Some(k) = self
            .inner
            .keys
            .read()
            .map_err(|_| lock_err())?
            .get(&cache_key)
        {
            return Ok(k.clone());
        }
        let row = self.live_row(partition, label)?;
        let attrs = row.attrs()?;
        let integrity = || HsmError::KeyIntegrity {
            label: label.chars().take(128).collect(),
        };
        let sealed = row.sealed.as_deref().ok_or_else(integrity)?;
        let pkcs8 = self
            .sealer(u, partition)?
            .open(sealed, &attrs.associated_data())
            .ok_or_else(integrity)?;
        // A restored row of a destroyed key still has a valid seal; the audit log remembers.
        if self.was_destroyed(&attrs.id)? {
            return Err(integrity());
        }
        let key = crypto::load(attrs.algorithm, &pkcs8)?;
        if key.public_key_der()? != attrs.public_key {
            return Err(integrity());
        }
        let hw = self.audited_uses(&attrs.id)?;
        let cached = Arc::new(CachedKey {
            attrs,
            key,
            high_water: Arc::new(AtomicI64::new(hw)),
        });
        self.inner
            .keys
            .write()
            .map_err(|_| lock_err())?
            .insert(cache_key, cached.clone());
        Ok(cached)
    }

    /// The audited floor of a quota's total counter, read once per process.
    fn quota_floor(&self, name: &str) -> Result<Arc<AtomicI64>> {
        if let Some(f) = self
            .inner
            .quota_floors
            .lock()
            .map_err(|_| lock_err())?
            .get(name)
        {
            return Ok(f.clone());
        }
        let floor = Arc::new(AtomicI64::new(self.audited_uses(&format!("quota:{name}"))?));
        let mut map = self.inner.quota_floors.lock().map_err(|_| lock_err())?;
        Ok(map.entry(name.to_string()).or_insert(floor).clone())
    }

    /// Uses counted against a quota so far (total window), for display.
    pub fn quota_used(&self, name: &str) -> Result<i64> {
        let mut c = self.inner.store.conn()?;
        let stored: Option<i64> = quota_counters::table
            .filter(quota_counters::name.eq(name))
            .filter(quota_counters::window_id.eq("total"))
            .select(quota_counters::used)
            .first(&mut c)
            .optional()?;
        drop(c);
        Ok(stored
            .unwrap_or(0)
            .max(self.audited_uses(&format!("quota:{name}"))?))
    }

    pub(crate) fn evict(&self, partition: &str, label: &str) {
        if let Ok(mut m) = self.inner.keys.write() {
            m.remove(&(partition.to_string(), label.to_string()));
        }
    }

    pub fn list_keys(&self, s: &Session) -> Result<Vec<KeyInfo>> {
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        let rows: Vec<KeyRow> = keys::table
            .filter(keys::partition_name.eq(&s.partition))
            .filter(keys::state.ne("destroyed"))
            .order(keys::label.asc())
            .load(&mut c)?;
        drop(c);
        rows.iter()
            .map(|r| r.info(r.usage_count.max(self.audited_uses(&r.id)?)))
            .collect()
    }

    pub fn key_info(&self, s: &Session, label: &str) -> Result<KeyInfo> {
        self.unsealed()?;
        let row = self.live_row(&s.partition, label)?;
        row.info(row.usage_count.max(self.audited_uses(&row.id)?))
    }

    /// Destroy a key. With an M-of-N quorum in the active policy this only files an approval
    /// request; the key is destroyed when enough other officers approve.
    pub fn destroy_key(&self, s: &Session, label: &str) -> Result<Gated<()>> {
        s.require(Role::Officer, "destroy keys")?;
        // No unseal needed: a key that fails its integrity check must still be destroyable.
        let row = self.live_row(&s.partition, label)?;
        let action = ApprovalAction::DestroyKey {
            label: label.to_string(),
        };
        if let Some(pending) = self.gate(
            s,
            &action,
            &format!("destroy key '{label}' ({}, id {})", row.algorithm, row.id),
        )? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        self.run_action(s, &s.partition.clone(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(()))
    }

    /// The durable change of a destroy: state destroyed, sealed material erased.
    pub(crate) fn destroy_op(&self, partition: &str, label: &str) -> Result<(ApplyFn, EventParts)> {
        let row = self.live_row(partition, label)?;
        let id = row.id.clone();
        let key_id = row.id.clone();
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                keys::table
                    .filter(keys::id.eq(&id))
                    .filter(keys::state.ne("destroyed")),
            )
            .set((
                keys::state.eq("destroyed"),
                keys::sealed.eq(None::<Vec<u8>>),
                keys::generation.eq(keys::generation + 1),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::KeyNotFound(row.label.clone()))
            }
        });
        Ok((
            apply,
            EventParts {
                action: "key.destroy",
                key_id: Some(key_id),
                detail: serde_json::json!({"label": label}),
                use_hi: None,
            },
        ))
    }

    /// Change a key's usage limit (None: unlimited). Lowering takes effect at once; raising
    /// (or removing) a limit goes through M-of-N approval when the active policy has a quorum.
    pub fn set_usage_limit(
        &self,
        s: &Session,
        label: &str,
        limit: Option<i64>,
    ) -> Result<Gated<KeyInfo>> {
        s.require(Role::Officer, "change usage limits")?;
        if limit.is_some_and(|l| l < 0) {
            return Err(HsmError::BadInput(
                "a usage limit cannot be negative".into(),
            ));
        }
        let row = self.live_row(&s.partition, label)?;
        let raising = match (row.usage_limit, limit) {
            (Some(old), Some(new)) => new > old,
            (Some(_), None) => true,
            (None, _) => false,
        };
        let action = ApprovalAction::SetUsageLimit {
            label: label.to_string(),
            limit,
        };
        if raising {
            let text = format!(
                "raise the usage limit of key '{label}' from {} to {}",
                row.usage_limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into()),
                limit
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            );
            if let Some(pending) = self.gate(s, &action, &text)? {
                return Ok(Gated::Pending(Box::new(pending)));
            }
        }
        self.run_action(s, &s.partition.clone(), &action, serde_json::json!({}))?;
        Ok(Gated::Done(self.key_info(s, label)?))
    }

    /// Reseal a key under attributes with a new limit and the next generation.
    pub(crate) fn set_limit_op(
        &self,
        partition: &str,
        label: &str,
        limit: Option<i64>,
    ) -> Result<(ApplyFn, EventParts)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        let old_generation = attrs.generation;
        let new = KeyAttributes {
            usage_limit: limit,
            generation: old_generation + 1,
            ..attrs
        };
        let sealed = self
            .sealer(&u, partition)?
            .seal(&pkcs8, &new.associated_data())?;
        let id = row.id.clone();
        let old_limit = row.usage_limit;
        let apply: ApplyFn = Box::new(move |c| {
            let n = diesel::update(
                keys::table
                    .filter(keys::id.eq(&id))
                    .filter(keys::generation.eq(old_generation))
                    .filter(keys::state.eq("active")),
            )
            .set((
                keys::usage_limit.eq(limit),
                keys::generation.eq(old_generation + 1),
                keys::sealed.eq(Some(sealed)),
            ))
            .execute(c)?;
            if n == 1 {
                Ok(())
            } else {
                Err(HsmError::KeyChanged(row.label.clone()))
            }
        });
        Ok((
            apply,
            EventParts {
                action: "key.set_usage_limit",
                key_id: Some(row.id.clone()),
                detail: serde_json::json!({"label": label, "from": old_limit, "to": limit}),
                use_hi: None,
            },
        ))
    }

    /// Sign a digest: check, reserve one use durably (with its audit record), then sign.
    pub fn sign(&self, s: &Session, label: &str, req: &SignRequest) -> Result<Vec<u8>> {
        self.sign_detailed(s, label, req).map(|d| d.signature)
    }

    /// [`Hsm::sign`], also returning the use it consumed and its audit record.
    pub fn sign_detailed(&self, s: &Session, label: &str, req: &SignRequest) -> Result<Signed> {
        self.sign_charged(s, label, req, &[], serde_json::json!({}))
    }

    /// Sign, charging one use to each of `quotas` in the same durable transaction as the key's
    /// use: if any quota or the key's limit is exhausted, nothing is counted and nothing signed.
    /// `audit_detail` (an object: the policy rule that allowed it, the format) joins the use's
    /// audit record.
    pub fn sign_charged(
        &self,
        s: &Session,
        label: &str,
        req: &SignRequest,
        quotas: &[QuotaCharge],
        audit_detail: serde_json::Value,
    ) -> Result<Signed> {
        refuse_ca_key(label)?;
        self.sign_inner(s, label, req, quotas, audit_detail, None)
            .map(|(signed, _)| signed)
    }

    /// Sign first, then append the entry `entry` makes from the signature to the transparency
    /// log in the transaction that counts the use (instead of kagi's own entry, which cannot
    /// name the signature because it is written before signing). The signature is released only
    /// once its entry is durable, so a Sigstore bundle's log entry can carry it.
    pub fn sign_logged(
        &self,
        s: &Session,
        label: &str,
        req: &SignRequest,
        quotas: &[QuotaCharge],
        audit_detail: serde_json::Value,
        entry: &mut dyn FnMut(&[u8]) -> Result<Vec<u8>>,
    ) -> Result<Signed> {
        refuse_ca_key(label)?;
        let mut record = |sig: &[u8]| -> Result<crate::commit::Staged> {
            Ok(crate::commit::Staged::LogEntry(entry(sig)?))
        };
        self.sign_inner(s, label, req, quotas, audit_detail, Some(&mut record))
            .map(|(signed, _)| signed)
    }

    /// The one signing path. Without `record`, the use is counted durably and then the digest is
    /// signed ("count, then sign"). With it, the digest is signed first, `record` turns the
    /// signature into a change (a stored certificate, say), and that change commits in the same
    /// transaction as the use: the signature is released only if both are durable, and a crash
    /// or a refused reservation discards it unseen.
    pub(crate) fn sign_inner(
        &self,
        s: &Session,
        label: &str,
        req: &SignRequest,
        quotas: &[QuotaCharge],
        audit_detail: serde_json::Value,
        mut record: Option<&mut RecordFn<'_>>,
    ) -> Result<(Signed, i64)> {
        s.require(Role::User, "use keys")?;
        let u = self.unsealed()?;
        let mut retried = false;
        loop {
            let k = self.load_key(&u, &s.partition, label)?;
            let a = &k.attrs;
            let digest_alg = req
                .digest_alg
                .unwrap_or_else(|| a.algorithm.default_digest());
            check_usable(a, Operation::Sign)?;
            if req.digest.len() != digest_alg.output_len() {
                return Err(HsmError::DigestLength {
                    alg: digest_alg.as_str(),
                    got: req.digest.len(),
                    want: digest_alg.output_len(),
                });
            }
            let quota_reservations = quotas
                .iter()
                .map(|q| {
                    Ok(QuotaReservation {
                        name: q.name.clone(),
                        total: q.total,
                        per_hour: q.per_hour,
                        per_day: q.per_day,
                        high_water: self.quota_floor(&q.name)?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let reservation = Reservation {
                quotas: quota_reservations,
                key_id: a.id.clone(),
                label: a.label.clone(),
                generation: a.generation,
                limit: a.usage_limit,
                high_water: k.high_water.clone(),
            };
            let mut event = user_event(
                s,
                "key.use",
                Some(a.id.clone()),
                serde_json::json!({"label": a.label, "op": "sign", "digest_alg": digest_alg.as_str(), "digest": hex::encode(&req.digest)}),
            );
            if let (Some(d), Some(extra)) = (event.detail.as_object_mut(), audit_detail.as_object())
            {
                for (k, v) in extra {
                    d.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
            let (early, apply) = match record.as_mut() {
                None => (None, None),
                Some(rec) => {
                    let sig = k.key.sign_digest(digest_alg, &req.digest, req.padding)?;
                    let apply = rec(&sig)?;
                    (Some(sig), Some(apply))
                }
            };
            // A record that brings its own log entry (sign_logged) replaces kagi's.
            let tlog = match apply {
                Some(crate::commit::Staged::LogEntry(_)) => None,
                _ => Some(tlog_entry(s, a, digest_alg, &req.digest, &audit_detail)),
            };
            match u
                .committer
                .submit_staged(Some(reservation), apply, tlog, event)
            {
                Ok(done) => {
                    let signature = match early {
                        Some(sig) => sig,
                        None => k.key.sign_digest(digest_alg, &req.digest, req.padding)?,
                    };
                    return Ok((
                        Signed {
                            signature,
                            algorithm: a.algorithm,
                            usage_count: done.use_hi.unwrap_or(0),
                            usage_limit: a.usage_limit,
                            digest_alg,
                            audit_seq: done.seq,
                            tlog_index: done.tlog_index,
                        },
                        done.seq,
                    ));
                }
                Err(HsmError::KeyChanged(_)) | Err(HsmError::KeyNotFound(_)) if !retried => {
                    self.evict(&s.partition, label);
                    retried = true;
                }
                Err(HsmError::KeyChanged(l)) => {
                    return Err(HsmError::KeyNotActive {
                        label: l,
                        reason: "it changed during the request".into(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Verify with a key's public half. No use is counted.
    pub fn verify(&self, s: &Session, label: &str, req: &SignRequest, sig: &[u8]) -> Result<bool> {
        self.unsealed()?;
        let row = self.live_row(&s.partition, label)?;
        let a = row.attrs()?;
        if !a.allows(Operation::Verify) {
            return Err(HsmError::OperationNotAllowed {
                label: a.label,
                op: "verify",
            });
        }
        let digest_alg = req
            .digest_alg
            .unwrap_or_else(|| a.algorithm.default_digest());
        if req.digest.len() != digest_alg.output_len() {
            return Err(HsmError::DigestLength {
                alg: digest_alg.as_str(),
                got: req.digest.len(),
                want: digest_alg.output_len(),
            });
        }
        crypto::verify_digest(
            a.algorithm,
            &a.public_key,
            digest_alg,
            &req.digest,
            req.padding,
            sig,
        )
    }

    // ---------------------------------------------------------------- wrap

    /// The partition's RSA-3072 import key (created on first use), SPKI DER.
    pub fn import_public_key(&self, s: &Session) -> Result<Vec<u8>> {
        s.require(Role::Officer, "import keys")?;
        let u = self.unsealed()?;
        match self.live_row(&s.partition, IMPORT_KEY_LABEL) {
            Ok(row) => Ok(row.public_key),
            Err(HsmError::KeyNotFound(_)) => {
                let mut spec = KeySpec::new(IMPORT_KEY_LABEL, Algorithm::Rsa3072);
                spec.operations = vec![Operation::Wrap];
                let attrs = self.attrs_for(s, &spec, true)?;
                let (pkcs8, spki) = crypto::generate(Algorithm::Rsa3072)?;
                let attrs = KeyAttributes {
                    public_key: spki,
                    ..attrs
                };
                match self.store_new_key(&u, s, attrs, &pkcs8, "key.generate") {
                    Ok(info) => Ok(info.public_key_der),
                    // Another request created it first.
                    Err(HsmError::KeyExists(_)) => {
                        Ok(self.live_row(&s.partition, IMPORT_KEY_LABEL)?.public_key)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Open a key's sealed PKCS#8, for unwrap/export only. Never leaves this crate.
    fn open_pkcs8(
        &self,
        u: &Unsealed,
        row: &KeyRow,
    ) -> Result<(KeyAttributes, Zeroizing<Vec<u8>>)> {
        let attrs = row.attrs()?;
        let integrity = || HsmError::KeyIntegrity {
            label: row.label.clone(),
        };
        let pkcs8 = self
            .sealer(u, &attrs.partition)?
            .open(
                row.sealed.as_deref().ok_or_else(integrity)?,
                &attrs.associated_data(),
            )
            .ok_or_else(integrity)?;
        Ok((attrs, pkcs8))
    }

    /// Import a key wrapped (see [`crate::wrap_for_import`]) to the partition's import key.
    pub fn import_key(&self, s: &Session, spec: &KeySpec, wrapped: &[u8]) -> Result<KeyInfo> {
        s.require(Role::Officer, "import keys")?;
        let u = self.unsealed()?;
        let attrs = self.new_attrs(s, spec, false)?;
        let import_row = self.live_row(&s.partition, IMPORT_KEY_LABEL).map_err(|_| {
            HsmError::BadInput(
                "fetch the import key first (GET /api/v1/keys/import-key) and wrap the key to it"
                    .into(),
            )
        })?;
        let (_, import_pkcs8) = self.open_pkcs8(&u, &import_row)?;
        let pkcs8 = wrap::unwrap(&import_pkcs8, wrapped)?;
        let key = crypto::load(spec.algorithm, &pkcs8)?;
        let attrs = KeyAttributes {
            public_key: key.public_key_der()?,
            ..attrs
        };
        self.store_new_key(&u, s, attrs, &pkcs8, "key.import")
    }

    /// Sign with a key the caller keeps outside, wrapped to this partition's import key: it is
    /// unwrapped into memory for this one signature and dropped (zeroized) right after. Nothing
    /// is stored; the use is audited (with the key's public-key fingerprint) before signing.
    pub fn sign_with_wrapped_key(
        &self,
        s: &Session,
        algorithm: Algorithm,
        wrapped: &[u8],
        req: &SignRequest,
    ) -> Result<Signed> {
        s.require(Role::User, "use keys")?;
        let u = self.unsealed()?;
        let digest_alg = req.digest_alg.unwrap_or_else(|| algorithm.default_digest());
        if req.digest.len() != digest_alg.output_len() {
            return Err(HsmError::DigestLength {
                alg: digest_alg.as_str(),
                got: req.digest.len(),
                want: digest_alg.output_len(),
            });
        }
        let import_row = self.live_row(&s.partition, IMPORT_KEY_LABEL).map_err(|_| {
            HsmError::BadInput("this partition has no import key yet: fetch it first (GET /api/v1/keys/import-key) and wrap the key to it".into())
        })?;
        let (_, import_pkcs8) = self.open_pkcs8(&u, &import_row)?;
        let pkcs8 = wrap::unwrap(&import_pkcs8, wrapped)?;
        let key = crypto::load(algorithm, &pkcs8)?;
        drop(pkcs8);
        let spki = key.public_key_der()?;
        let fingerprint = hex::encode(digest(&SHA256, &spki).as_ref());
        let entry = serde_json::json!({
            "kind": "kagi.signature/v1", "time": now_ms() / 1000, "partition": s.partition,
            "key": "(wrapped)", "algorithm": algorithm.as_str(), "public_key_sha256": fingerprint,
            "digest_alg": digest_alg.as_str(), "digest": hex::encode(&req.digest), "identity": s.actor(),
        });
        let done = u.committer.submit_staged(
            None,
            None,
            Some(entry.to_string().into_bytes()),
            user_event(
                s,
                "key.use_wrapped",
                None,
                serde_json::json!({"algorithm": algorithm.as_str(), "public_key_sha256": fingerprint, "op": "sign", "digest_alg": digest_alg.as_str(), "digest": hex::encode(&req.digest)}),
            ),
        )?;
        let signature = key.sign_digest(digest_alg, &req.digest, req.padding)?;
        Ok(Signed {
            signature,
            algorithm,
            usage_count: 0,
            usage_limit: None,
            digest_alg,
            audit_seq: done.seq,
            tlog_index: done.tlog_index,
        })
    }

    /// Export a key wrapped to a trusted RSA wrapping key in the same partition.
    /// Export a key wrapped to a trusted RSA wrapping key in the same partition. Under a
    /// quorum this files an approval request; once approved, the requester collects the
    /// wrapped key from the request.
    pub fn export_wrapped(
        &self,
        s: &Session,
        label: &str,
        wrapping_label: &str,
    ) -> Result<Gated<Vec<u8>>> {
        s.require(Role::Officer, "export keys")?;
        // Refuse what can never be exported before asking anyone to approve it.
        self.export_checked(&s.partition, label, wrapping_label)?;
        let action = ApprovalAction::ExportWrapped {
            label: label.to_string(),
            wrapping_key: wrapping_label.to_string(),
        };
        let text = format!("export key '{label}' wrapped to the trusted key '{wrapping_label}'");
        if let Some(pending) = self.gate(s, &action, &text)? {
            return Ok(Gated::Pending(Box::new(pending)));
        }
        let out = self.run_action(s, &s.partition.clone(), &action, serde_json::json!({}))?;
        out.map(Gated::Done)
            .ok_or_else(|| HsmError::Store("internal: the export produced nothing".into()))
    }

    /// Check an export and wrap the key (in memory only); the op records it.
    pub(crate) fn export_op(
        &self,
        partition: &str,
        label: &str,
        wrapping_label: &str,
    ) -> Result<(ApplyFn, EventParts, Vec<u8>)> {
        let (attrs, pkcs8, wattrs) = self.export_checked(partition, label, wrapping_label)?;
        let wrapped = wrap::wrap_for_import(&wattrs.public_key, &pkcs8)?;
        let apply: ApplyFn = Box::new(|_| Ok(()));
        Ok((
            apply,
            EventParts {
                action: "key.export_wrapped",
                key_id: Some(attrs.id.clone()),
                detail: serde_json::json!({"label": attrs.label, "wrapping_key": wattrs.label, "mechanism": wrap::WRAP_MECHANISM}),
                use_hi: None,
            },
            wrapped,
        ))
    }

    /// The key (exportable, usable) and its wrapping key (trusted, wrap, active), or why not.
    fn export_checked(
        &self,
        partition: &str,
        label: &str,
        wrapping_label: &str,
    ) -> Result<(KeyAttributes, Zeroizing<Vec<u8>>, KeyAttributes)> {
        let u = self.unsealed()?;
        let row = self.live_row(partition, label)?;
        let wrow = self.live_row(partition, wrapping_label)?;
        let (attrs, pkcs8) = self.open_pkcs8(&u, &row)?;
        let wattrs = self.open_pkcs8(&u, &wrow)?.0;
        if !attrs.exportable_under_wrap {
            return Err(HsmError::NotExportable(attrs.label));
        }
        check_usable(&attrs, Operation::Sign).or_else(|e| match e {
            HsmError::OperationNotAllowed { .. } => Ok(()),
            e => Err(e),
        })?;
        if !wattrs.trusted || !wattrs.allows(Operation::Wrap) || wattrs.state != KeyState::Active {
            return Err(HsmError::UntrustedWrappingKey(wattrs.label));
        }
        Ok((attrs, pkcs8, wattrs))
    }

    // ---------------------------------------------------------------- audit

    pub fn audit_verify(&self, s: &Session) -> Result<AuditReport> {
        s.require(Role::Auditor, "verify the audit log")?;
        let u = self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        audit::verify(&mut c, &u.audit)
    }

    pub fn audit_records(&self, s: &Session, from_seq: i64, limit: i64) -> Result<Vec<AuditEvent>> {
        s.require(Role::Auditor, "read the audit log")?;
        self.unsealed()?;
        let mut c = self.inner.store.conn()?;
        Ok(audit_records::table
            .filter(audit_records::seq.ge(from_seq.max(0)))
            .order(audit_records::seq.asc())
            .limit(limit.clamp(1, 10_000))
            .load(&mut c)?)
    }

    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        let mut c = self.inner.store.conn()?;
        Ok(audit_checkpoints::table
            .order(audit_checkpoints::tree_size.desc())
            .first(&mut c)
            .optional()?)
    }

    /// SPKI DER of the audit key that signs checkpoints.
    pub fn audit_public_key(&self) -> Result<Vec<u8>> {
        Ok(self.unsealed()?.audit.public_key_der())
    }

    /// Record an event seen by a front end (a rejected request, say).
    pub fn record_event(
        &self,
        actor: &str,
        action: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        let u = self.unsealed()?;
        u.committer.submit(
            None,
            None,
            EventDraft {
                actor: actor.chars().take(256).collect(),
                action: action.chars().take(128).collect(),
                partition: None,
                key_id: None,
                detail,
                outcome: Some(outcome.chars().take(128).collect()),
                use_hi: None,
            },
        )?;
        Ok(())
    }
}

/// Sessions are cached under SHA-256 of the token, so the cache never holds a token.
fn token_hash(token: &str) -> [u8; 32] {
    let d = digest(&SHA256, token.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

fn check_usable(a: &KeyAttributes, op: Operation) -> Result<()> {
    if a.state != KeyState::Active {
        return Err(HsmError::KeyNotActive {
            label: a.label.clone(),
            reason: format!("it is {}", a.state),
        });
    }
    if !a.allows(op) {
        return Err(HsmError::OperationNotAllowed {
            label: a.label.clone(),
            op: op.as_str(),
        });
    }
    let now = now_ms() / 1000;
    if let Some(nb) = a.not_before {
        if now < nb {
            return Err(HsmError::KeyNotActive {
                label: a.label.clone(),
                reason: format!("its not-before time {nb} has not come"),
            });
        }
    }
    if let Some(na) = a.not_after {
        if now > na {
            return Err(HsmError::KeyNotActive {
                label: a.label.clone(),
                reason: format!("its not-after time {na} has passed"),
            });
        }
    }
    if let Some(limit) = a.usage_limit {
        if limit == 0 {
            return Err(HsmError::UsageLimitReached {
                label: a.label.clone(),
                limit,
            });
        }
    }
    Ok(())
}

/// CA keys sign only what the `ca` crate built (certificates, CRLs, OCSP, timestamps): never a
/// digest a key user sends.
fn refuse_ca_key(label: &str) -> Result<()> {
    if label.starts_with(crate::ca_store::CA_KEY_PREFIX) {
        return Err(HsmError::CaKeyReserved(label.to_string()));
    }
    Ok(())
}

/// A signature's public log entry: which key (by id, label and public-key hash) signed which
/// digest, for whom, when. Canonical JSON (sorted keys), so the leaf hash is reproducible.
fn tlog_entry(
    s: &Session,
    a: &KeyAttributes,
    digest_alg: DigestAlg,
    digest: &[u8],
    detail: &serde_json::Value,
) -> Vec<u8> {
    let spki = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &a.public_key);
    let body = serde_json::json!({
        "kind": "kagi.signature/v1",
        "time": now_ms() / 1000,
        "partition": a.partition,
        "key": a.label,
        "key_id": a.id,
        "algorithm": a.algorithm.as_str(),
        "public_key_sha256": hex::encode(spki.as_ref()),
        "digest_alg": digest_alg.as_str(),
        "digest": hex::encode(digest),
        "identity": s.actor(),
        "purpose": detail.get("purpose").cloned().unwrap_or(serde_json::Value::Null),
        "format": detail.get("format").cloned().unwrap_or(serde_json::Value::Null),
    });
    body.to_string().into_bytes()
}

/// The transparency log's signing key: Ed25519 (what C2SP signed notes use), derived from the
/// master key, so it exists wherever the master key does and is never stored.
fn tlog_key(master: &MasterKey) -> Result<aws_lc_rs::signature::Ed25519KeyPair> {
    let seed = master.derive(seal::TLOG_KEY_INFO)?;
    aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed[..])
        .map_err(|_| HsmError::Crypto("transparency log key"))
}

pub(crate) fn user_event(
    s: &Session,
    action: &str,
    key_id: Option<String>,
    detail: serde_json::Value,
) -> EventDraft {
    EventDraft {
        actor: s.actor(),
        action: action.into(),
        partition: Some(s.partition.clone()),
        key_id,
        detail,
        outcome: None,
        use_hi: None,
    }
}

fn system_event(action: &str, detail: serde_json::Value) -> EventDraft {
    EventDraft {
        actor: "hsm".into(),
        action: action.into(),
        partition: None,
        key_id: None,
        detail,
        outcome: None,
        use_hi: None,
    }
}
