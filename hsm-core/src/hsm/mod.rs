//! [`Hsm`]: the one entry point. Sealed until the master key is reconstructed from shares;
//! then every operation checks the caller's role, goes through the group committer for anything
//! durable, and touches key material only inside this crate.

use argon2::password_hash::SaltString;
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
use crate::attributes::{
    operations_from_string, operations_to_string, KeyAttributes, KeyInfo, KeySpec, KeyState,
    KeyVersion, Lifecycle, Operation, RESTRICTED_NAMESPACE,
};
use crate::audit::{self, AuditEvent, AuditKeys, AuditReport, Checkpoint};
use crate::auth::{
    roles_from_string, roles_to_string, CredentialInfo, IdentityKind, Role, Session,
};
use crate::commit::{
    now_ms, ApplyFn, Committed, Committer, EventDraft, KeyReservation, QuotaReservation,
    Reservation, Staged,
};
use crate::crypto::{self, LoadedKey};
use crate::error::{HsmError, Result};
use crate::hsm::approvals::ApprovalAction;
use crate::integrity::Integrity;
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
/// A token used after this much of [`SESSION_TTL`] (plus its share of
/// [`SESSION_REFRESH_SPREAD`]) is re-verified in the background, so a token in steady use never
/// meets an expired entry.
const SESSION_REFRESH: Duration = Duration::from_secs(30);
/// Tokens that logged in together (a fleet starting up) would all re-run Argon2id in the same
/// instant and take every core from signing for that moment (a 104 ms worst request in
/// `benches/wrk_sign.sh` with 8 tokens, 49 ms in a run that ended before the refresh). Each
/// token waits an extra share of this, fixed by its hash, so their refreshes spread out.
const SESSION_REFRESH_SPREAD: Duration = Duration::from_secs(15);

/// When the cached login of the token with this hash is re-verified: between
/// [`SESSION_REFRESH`] and that plus [`SESSION_REFRESH_SPREAD`], before [`SESSION_TTL`].
fn refresh_due_after(hash: &[u8; 32]) -> Duration {
    let spread = u64::try_from(SESSION_REFRESH_SPREAD.as_millis())
        .unwrap_or(1)
        .max(1);
    SESSION_REFRESH
        + Duration::from_millis(u64::from(u16::from_be_bytes([hash[0], hash[1]])) * spread / 65_536)
}

/// Failed logins are audited in aggregate: one record per source and window, with a count.
pub const FAILED_LOGIN_WINDOW: Duration = Duration::from_secs(60);
/// How long a person's console password stays locked after [`PASSWORD_ATTEMPTS`] wrong ones.
pub const PASSWORD_LOCK: Duration = Duration::from_secs(15 * 60);
/// Wrong console passwords in a row that lock the password (never the identity's token).
pub const PASSWORD_ATTEMPTS: u32 = 5;
/// A cached session is re-checked against its credential row (revoked, locked, expired, secret
/// or certificate changed) when its last check is older than this, so a revocation or lock in
/// another process ends it within the same second the service's policy gate re-checks in.
const SESSION_RECHECK: Duration = Duration::from_secs(1);
/// The `meta` row holding the unseal shares' commitments (see `shares.rs`).
const SHARE_COMMITMENTS: &str = "share_commitments";

pub struct HsmConfig {
    pub store: StoreConfig,
    /// Refused logins are audited as one record per source per this window
    /// ([`FAILED_LOGIN_WINDOW`] by default).
    pub failed_login_window: Duration,
    /// How long [`PASSWORD_ATTEMPTS`] wrong console passwords lock a person's password
    /// ([`PASSWORD_LOCK`] by default).
    pub password_lock: Duration,
    /// The first refusal after [`KEY_AUTH_ATTEMPTS`] wrong key passwords in a row
    /// ([`KEY_AUTH_LOCK`] by default); each further one doubles.
    pub key_auth_lock: Duration,
    /// Witnesses whose quorum must cosign the transparency log before a key use's result is
    /// released (see `witnessing`); `None`: results are released at commit, and a restored
    /// database is not detected.
    pub witnesses: Option<crate::witnessing::WitnessSet>,
}

impl HsmConfig {
    pub fn new(store: StoreConfig) -> Self {
        HsmConfig {
            store,
            failed_login_window: FAILED_LOGIN_WINDOW,
            password_lock: PASSWORD_LOCK,
            key_auth_lock: KEY_AUTH_LOCK,
            witnesses: None,
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
    Pending(Box<crate::hsm::approvals::ApprovalInfo>),
}

impl<T> Gated<T> {
    /// What happened, or `None` while it waits for approvals.
    pub fn done(self) -> Option<T> {
        match self {
            Gated::Done(t) => Some(t),
            Gated::Pending(_) => None,
        }
    }
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
    /// The version of the stored key that signed (`None` for a key the caller brought
    /// wrapped, which has no versions).
    pub key_version: Option<i64>,
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
    /// The verified audit log: every floor, approval and revocation is read from it.
    pub(crate) integrity: Arc<Integrity>,
}

impl Unsealed {
    /// Verify the whole audit log once (a break fails the HSM closed; unsealing still
    /// succeeds, so the operator can see why), then keep following it.
    fn start_verifying(&self, store: &Store) -> Result<()> {
        let mut c = store.conn()?;
        match self.integrity.catch_up(&mut c, &self.audit) {
            Ok(()) | Err(HsmError::Integrity(_)) => {}
            Err(e) => return Err(e),
        }
        crate::integrity::watch(
            store.clone(),
            Arc::downgrade(&self.integrity),
            Arc::downgrade(&self.audit),
        );
        Ok(())
    }

    /// The verified floor of `subject` (a key id, `quota:NAME`, `policy`, `crl:CA`).
    pub(crate) fn audited_use_hi(&self, store: &Store, subject: &str) -> Result<i64> {
        let mut c = store.conn()?;
        self.integrity.use_hi(&mut c, &self.audit, subject)
    }

    /// The verified successful records of `action` on `subject`.
    pub(crate) fn audited(
        &self,
        store: &Store,
        action: &str,
        subject: &str,
    ) -> Result<Vec<AuditEvent>> {
        let mut c = store.conn()?;
        self.integrity.records(&mut c, &self.audit, action, subject)
    }

    /// Whether the verified log's last word on key `key_id` is a suspension: as far as this
    /// process has read the log (its own batches at once, other processes' within the
    /// watcher's tick), without reading the database, so the sign path can ask every time.
    pub(crate) fn suspended_now(&self, key_id: &str) -> bool {
        self.integrity.suspended_now(key_id)
    }

    /// Whether a key with a usage limit waits for an officer's new limit after a detected
    /// rollback (see `Integrity::frozen_by_rollback`), as far as this process has read the log.
    pub(crate) fn frozen_by_rollback(&self, key_id: &str) -> bool {
        self.integrity.frozen_by_rollback(key_id)
    }

    /// See `Integrity::unrecovered_rollback`.
    pub(crate) fn unrecovered_rollback(&self) -> Option<i64> {
        self.integrity.unrecovered_rollback()
    }

    /// See `Integrity::quotas_frozen_by_rollback`.
    pub(crate) fn quotas_frozen_by_rollback(&self) -> bool {
        self.integrity.quotas_frozen_by_rollback()
    }

    /// [`Unsealed::suspended_now`] after catching up with the whole log.
    pub(crate) fn suspended(&self, store: &Store, key_id: &str) -> Result<bool> {
        let mut c = store.conn()?;
        self.integrity.catch_up(&mut c, &self.audit)?;
        Ok(self.integrity.suspended_now(key_id))
    }

    /// [`Integrity::retired_now`] after catching up with the log.
    pub(crate) fn retired(&self, store: &Store, key_id: &str) -> Result<Option<KeyState>> {
        let mut c = store.conn()?;
        self.integrity.catch_up(&mut c, &self.audit)?;
        Ok(self.integrity.retired_now(key_id))
    }

    /// The verified successful records of `action` on subjects starting with `prefix`.
    pub(crate) fn audited_prefix(
        &self,
        store: &Store,
        action: &str,
        prefix: &str,
    ) -> Result<Vec<AuditEvent>> {
        let mut c = store.conn()?;
        self.integrity
            .records_with_prefix(&mut c, &self.audit, action, prefix)
    }
}

enum State {
    Sealed {
        threshold: Option<usize>,
        collected: Vec<Zeroizing<Vec<u8>>>,
    },
    Unsealed(Arc<Unsealed>),
}

/// A verified login, cached under SHA-256 of its token (or of its certificate).
struct CachedLogin {
    session: Session,
    /// When Argon2id (or the TLS handshake) last verified it.
    verified: Instant,
    /// When the credential row was last read for it.
    checked: Instant,
    /// [`CredentialRow::fingerprint`] at login: a new secret or certificate binding ends it.
    fingerprint: [u8; 32],
    /// A background re-verification of this token is running (`identity.rs`).
    refreshing: bool,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    state: RwLock<State>,
    keys: RwLock<HashMap<(String, String), Arc<CachedKey>>>,
    sessions: Mutex<HashMap<[u8; 32], CachedLogin>>,
    /// Token logins in flight, one per token, and the process's Argon2id slots.
    login_flights: login_flight::Flights,
    argon2_slots: login_flight::Argon2Slots,
    failed_logins: Mutex<FailedLogins>,
    failed_login_window: Duration,
    /// Wrong console passwords per credential id, and the locks they caused.
    password_lock: Duration,
    /// See [`HsmConfig::key_auth_lock`].
    key_auth_lock: Duration,
    /// Per quota: the highest total the audit log records (the counter's floor).
    quota_floors: Mutex<HashMap<String, Arc<AtomicI64>>>,
    /// The front end's observer of committed batches (metrics), if it set one.
    commit_observer: Arc<crate::commit::ObserverSlot>,
    /// The witnesses the committer's release stage asks, if any.
    pub(crate) witnesses: Option<crate::witnessing::WitnessSet>,
    /// CA records already read and MAC-checked, with the CA generation they were read at
    /// (`Integrity::ca_generation`): issuance reads its CA and chain on every request.
    pub(crate) ca_records: Mutex<HashMap<String, (u64, crate::records::ca::CaRecord)>>,
}

/// Handle to the HSM. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct Hsm {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) fn lock_err() -> HsmError {
    HsmError::Store("internal lock poisoned; restart kagi".into())
}

pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b)?;
    Ok(hex::encode(b))
}

pub(crate) fn validate_label(label: &str) -> Result<()> {
    // "." and ".." are refused because names become path segments (in URLs, and in files a
    // user exports by name), where they mean something else.
    let ok = !label.is_empty()
        && label.len() <= 128
        && label != "."
        && label != ".."
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HsmError::BadInput(
            "a name is 1 to 128 characters of letters, digits, '-', '_' and '.', and not '.' or '..'".into(),
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
    verify_until: Option<i64>,
    key_auth: bool,
    version: i64,
    limit_per_version: bool,
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
            verify_until: a.verify_until,
            key_auth: a.key_auth,
            version: a.version,
            limit_per_version: a.limit_per_version,
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
            verify_until: self.verify_until,
            exportable_under_wrap: self.exportable_under_wrap,
            trusted: self.trusted,
            never_extractable: self.never_extractable,
            local: self.local_origin,
            state: KeyState::from_str(&self.state).map_err(|_| bad())?,
            generation: self.generation,
            public_key: self.public_key.clone(),
            created_at: self.created_at,
            key_auth: self.key_auth,
            version: self.version,
            limit_per_version: self.limit_per_version,
        })
    }

    fn info(&self, usage_count: i64) -> Result<KeyInfo> {
        let a = self.attrs()?;
        let now = now_ms() / 1000;
        let active = a.state == KeyState::Active
            && a.usage_limit.is_none_or(|l| usage_count < l)
            && a.not_before.is_none_or(|t| now >= t)
            && a.not_after.is_none_or(|t| now <= t);
        let lifecycle = Lifecycle::of(a.state, a.not_before, a.not_after, now);
        Ok(KeyInfo {
            active,
            lifecycle,
            id: a.id,
            label: a.label,
            partition: a.partition,
            algorithm: a.algorithm,
            operations: a.operations,
            usage_count,
            usage_limit: a.usage_limit,
            not_before: a.not_before,
            not_after: a.not_after,
            verify_until: a.verify_until,
            exportable_under_wrap: a.exportable_under_wrap,
            trusted: a.trusted,
            never_extractable: a.never_extractable,
            local: a.local,
            state: a.state,
            public_key_der: a.public_key,
            created_at: a.created_at,
            key_auth: a.key_auth,
            version: a.version,
            limit_per_version: a.limit_per_version,
            earlier_versions: Vec::new(),
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

    /// What a cached login depends on besides the revoked, locked and expiry fields.
    fn fingerprint(&self) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
        ctx.update(self.secret_hash.as_bytes());
        ctx.update(b"\0");
        ctx.update(self.cert_sha256.as_deref().unwrap_or("").as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn session(&self) -> Result<Session> {
        Ok(Session::new(
            self.id.clone(),
            self.name.clone(),
            IdentityKind::from_str(&self.kind)?,
            self.partition_name.clone(),
            roles_from_string(&self.roles)?,
            self.expires_at,
        ))
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
    login_flight::argon2_hash(secret.as_bytes(), salt).ok_or(HsmError::Crypto("argon2"))
}

/// A fresh 256-bit secret for credential `id`: its token `kagi_<id>_<secret>` and the
/// secret's Argon2id hash.
fn new_secret_for(id: &str) -> Result<(Zeroizing<String>, String)> {
    let mut raw = Zeroizing::new([0u8; 32]);
    SystemRandom::new().fill(&mut raw[..])?;
    let secret = Zeroizing::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw[..]));
    let token = Zeroizing::new(format!("kagi_{id}_{}", secret.as_str()));
    Ok((token, hash_secret(&secret)?))
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
    let (token, secret_hash) = new_secret_for(&id)?;
    let row = CredentialRow {
        id,
        partition_name: partition.into(),
        name: name.into(),
        roles: roles_to_string(roles),
        secret_hash,
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

pub mod approvals;
mod console_sessions;
mod failed_logins;
mod identity;
mod key_auth;
pub use key_auth::{KEY_AUTH_ATTEMPTS, KEY_AUTH_LOCK, KEY_AUTH_LOCK_MAX};
mod login_flight;
mod passwords;
pub use console_sessions::{ConsoleSession, SessionLimits};
mod recovery;
mod rollback_recovery;
mod rotation;
pub use rollback_recovery::RollbackRecovery;

use failed_logins::FailedLogins;
pub use recovery::{RecoverAction, Recovered};
pub(crate) mod keyring;
mod lifecycle;
pub mod policy_store;
mod sign;

pub use sign::{SignKey, SignOp, SignPurpose, StagedRows, Staging};
mod audit_feed;
mod audit_log;
mod observe;
pub use audit_feed::AuditFeed;
mod transfer;

pub use observe::{KeyUsage, LogSizes, QuotaUsage};

/// Sessions are cached under SHA-256 of the token, so the cache never holds a token.
fn token_hash(token: &str) -> [u8; 32] {
    let d = digest(&SHA256, token.as_bytes());
    let mut h = [0u8; 32];
    h.copy_from_slice(d.as_ref());
    h
}

fn check_usable(a: &KeyAttributes, op: Operation) -> Result<()> {
    match a.state {
        KeyState::Suspended => return Err(HsmError::KeySuspended(a.label.clone())),
        KeyState::Deactivated => return Err(HsmError::KeyDeactivated(a.label.clone())),
        KeyState::Compromised => return Err(HsmError::KeyCompromised(a.label.clone())),
        _ => {}
    }
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
                reason: format!("pre-activation: its signing period starts at {nb} (Unix seconds)"),
            });
        }
    }
    if let Some(na) = a.not_after {
        if now > na {
            return Err(HsmError::KeyNotActive {
                label: a.label.clone(),
                reason: format!(
                    "deactivated: its signing period ended at {na} (Unix seconds), so it only verifies"
                ),
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

/// The key named in a signature's log entry.
pub(super) enum EntryKey<'a> {
    Stored(&'a KeyAttributes),
    /// A key the caller brought wrapped: named by its public key's hash alone.
    Wrapped {
        algorithm: Algorithm,
        public_key_sha256: [u8; 32],
    },
}

/// A signature's public log entry ([`kagi_tlog::SignatureEntry`], in its canonical JSON):
/// which key (by id, label and public-key hash) signed which digest, for whom, when.
pub(super) fn signature_entry(
    s: &Session,
    key: &EntryKey<'_>,
    digest_alg: DigestAlg,
    digest: &[u8],
    detail: &serde_json::Value,
) -> Vec<u8> {
    let said = |field: &str| {
        detail
            .get(field)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let (partition, label, key_id, algorithm, public_key_sha256, purpose, format) = match key {
        EntryKey::Stored(a) => (
            a.partition.clone(),
            a.label.clone(),
            Some(a.id.clone()),
            a.algorithm,
            kagi_tlog::SignatureEntry::public_key_hash(&a.public_key),
            said("purpose"),
            said("format"),
        ),
        EntryKey::Wrapped {
            algorithm,
            public_key_sha256,
        } => (
            s.partition().to_string(),
            "(wrapped)".to_string(),
            None,
            *algorithm,
            *public_key_sha256,
            None,
            None,
        ),
    };
    kagi_tlog::SignatureEntry {
        time: now_ms() / 1000,
        partition,
        key: label,
        key_id,
        algorithm: algorithm.as_str().into(),
        public_key_sha256,
        digest_alg: digest_alg.as_str().into(),
        digest: digest.to_vec(),
        identity: s.actor(),
        purpose,
        format,
    }
    .canonical_bytes()
}

/// The transparency log's signing key: Ed25519 (what C2SP signed notes use), derived from the
/// master key, so it exists wherever the master key does and is never stored.
fn tlog_key(master: &MasterKey) -> Result<aws_lc_rs::signature::Ed25519KeyPair> {
    let seed = master.derive(seal::TLOG_KEY_INFO)?;
    aws_lc_rs::signature::Ed25519KeyPair::from_seed_unchecked(&seed[..])
        .map_err(|_| HsmError::Crypto("transparency log key"))
}

/// The audit subject of an identity's records (its creation and revocation).
pub(crate) fn credential_subject(id: &str) -> String {
    format!("credential:{id}")
}

pub(crate) fn user_event(
    s: &Session,
    action: &str,
    key_id: Option<String>,
    mut detail: serde_json::Value,
) -> EventDraft {
    if let Some(client) = s.client() {
        client.add_to(&mut detail);
    }
    EventDraft {
        actor: s.actor(),
        action: action.into(),
        partition: Some(s.partition().to_string()),
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
