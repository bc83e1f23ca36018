//! Errors a caller of hsm-core can see.
//!
//! Every variant has a stable machine code (`code()`), a class the service maps to an HTTP status
//! (`kind()`), and a message that says what was wrong and what to do. No message ever carries key
//! material, a token, a PIN or a share.

use thiserror::Error;

/// Broad class of an error, used by front ends to pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed or names something impossible.
    BadInput,
    /// No valid credential was presented.
    Unauthenticated,
    /// The credential is valid but its role does not allow the operation.
    Forbidden,
    /// The named object does not exist.
    NotFound,
    /// The request conflicts with the current state (duplicate name, wrong state).
    Conflict,
    /// A usage limit or quota is exhausted.
    LimitReached,
    /// The HSM is sealed or not initialized.
    Unavailable,
    /// Stored data failed an integrity check: someone changed the database outside kagi.
    Integrity,
    /// Something inside kagi or its storage failed.
    Internal,
}

#[derive(Debug, Error)]
pub enum HsmError {
    #[error("invalid request: {0}")]
    BadInput(String),
    #[error("unknown algorithm '{0}': use one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096, ed25519")]
    UnknownAlgorithm(String),
    #[error("the digest is {got} bytes but {alg} needs {want}: hash the data with {alg} and send the raw digest")]
    DigestLength {
        alg: &'static str,
        got: usize,
        want: usize,
    },
    #[error("missing or malformed credential: send 'Authorization: Bearer <token>'")]
    Unauthenticated,
    #[error("the credential was not accepted: check the token (repeated failures from one address are slowed down)")]
    BadCredential,
    #[error(
        "credential '{0}' is locked: an administrator must unlock it ('kagi identity unlock ID'), or, for an administrator, a quorum of unseal-share holders ('kagi admin recover')"
    )]
    CredentialLocked(String),
    #[error("credential '{0}' was revoked: ask an administrator for a new one")]
    CredentialRevoked(String),
    #[error("credential '{0}' has expired: ask an administrator for a new one")]
    CredentialExpired(String),
    #[error("quota '{quota}' is exhausted ({window}): no more uses are allowed by policy")]
    QuotaExhausted { quota: String, window: String },
    #[error("role {have} may not {action}: this needs the {need} role")]
    Forbidden {
        have: String,
        action: &'static str,
        need: &'static str,
    },
    #[error("key '{0}' does not exist in this partition: 'kagi key list' shows the keys")]
    KeyNotFound(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("key '{0}' is a CA key: it signs only certificates, CRLs and OCSP responses, through the CA routes")]
    CaKeyReserved(String),
    #[error("{0}")]
    Conflict(String),
    /// A device serial number that already has a live certificate, for a different key.
    #[error("{0}")]
    SerialInUse(String),
    #[error("a key named '{0}' already exists in this partition: pick another name or destroy the old key")]
    KeyExists(String),
    #[error(
        "key '{label}' has used all {limit} of its permitted uses: the key is no longer active"
    )]
    UsageLimitReached { label: String, limit: i64 },
    #[error("key '{label}' is not active ({reason})")]
    KeyNotActive { label: String, reason: String },
    #[error("key '{0}' is suspended (disabled by an officer): it signs nothing until an officer enables it again ('kagi key enable {0}')")]
    KeySuspended(String),
    #[error("key '{0}' is deactivated: its signing period is over, so it only verifies. Create a new key to sign")]
    KeyDeactivated(String),
    #[error("key '{0}' is compromised: it signs and verifies nothing; only destroying it is left ('kagi key destroy {0}')")]
    KeyCompromised(String),
    #[error("key '{label}' is past its verification period (it ended at {until}, Unix seconds): it verifies nothing more")]
    VerificationPeriodOver { label: String, until: i64 },
    #[error(
        "key '{label}' is {from} and cannot become {to}: from {from} it can only become {allowed}"
    )]
    KeyStateTransition {
        label: String,
        from: &'static str,
        to: &'static str,
        allowed: String,
    },
    #[error("key '{0}' has a usage limit and kagi detected a rollback of its database since the limit was set: the uses spent after the restored point are unknown, so it signs nothing until an officer reviews it and sets its limit again ('kagi key set-limit {0} --usage-limit N'; README, Backups)")]
    KeyFrozen(String),
    #[error("quota '{0}' is frozen: kagi detected a rollback of its database since the active policy was activated, so the quota's uses spent after the restored point are unknown. Officers review the quotas (lower the totals by what the lines made meanwhile) and activate a policy version again ('kagi policy submit FILE', 'kagi policy activate N'; README, \"Witnessed log\")")]
    QuotaFrozen(String),
    #[error("key '{0}' was changed by another request while this one was in flight: retry")]
    KeyChanged(String),
    #[error("key '{label}' does not allow the operation '{op}'")]
    OperationNotAllowed { label: String, op: &'static str },
    #[error("key '{0}' was not created exportable-under-wrap, so it can never leave the HSM")]
    NotExportable(String),
    #[error("key '{0}' is not a trusted wrapping key: only a key created with --trusted and the wrap operation may wrap other keys")]
    UntrustedWrappingKey(String),
    #[error("key '{label}' failed its integrity check: its stored attributes or sealed material do not match the seal (the database was changed outside kagi). The key is refused; restore it from a backup or destroy it")]
    KeyIntegrity { label: String },
    #[error("the wrapped key could not be unwrapped: check that it was wrapped with this partition's import key (RSA-OAEP-SHA256 + AES-KWP) and that --alg matches the key")]
    UnwrapFailed,
    #[error("the HSM is not initialized: run 'kagi init --shares N --threshold M' (or start 'kagi serve' with no data for a development instance)")]
    NotInitialized,
    #[error("the HSM is already initialized")]
    AlreadyInitialized,
    #[error("the HSM is sealed: submit {need} more unseal share(s) with 'kagi unseal'")]
    Sealed { need: usize },
    #[error("invalid unseal share: {0}")]
    BadShare(String),
    #[error("the shares combine to the wrong master key: they belong to another instance, or one of them is damaged")]
    WrongMasterKey,
    #[error("{0}")]
    Integrity(String),
    #[error("you filed approval request {0} yourself: another named officer must approve it")]
    SelfApproval(String),
    #[error("'{name}' is not one of the officers the policy names as approvers for request {id}")]
    NotAnApprover { name: String, id: String },
    #[error("audit log integrity failure at record {seq}: {reason}")]
    AuditIntegrity { seq: i64, reason: String },
    #[error("too many wrong passwords for '{name}': console sign-in with a password is locked for {retry_after_secs} more second(s) (the identity's token still works)")]
    PasswordLocked { name: String, retry_after_secs: u64 },
    #[error("key '{0}' has its own password (per-key authorization): send it with the request ('kagi sign --key-auth-file FILE', the Kagi-Key-Auth header or the key_password field; in PKCS#11, C_Login with CKU_CONTEXT_SPECIFIC before C_Sign)")]
    KeyAuthRequired(String),
    #[error("the password for key '{label}' is wrong: {left} more wrong password(s) in a row and the key is refused for a while. A lost key password cannot be recovered")]
    KeyAuthWrong { label: String, left: u32 },
    #[error("key '{label}' is refused for {retry_after_secs} more second(s) after repeated wrong passwords: wait, then send the right one (each further lock lasts twice as long, never for good)")]
    KeyAuthLocked {
        label: String,
        retry_after_secs: u64,
    },
    #[error("'{0}' signs in with a one-time code too: enter the 6 digits your authenticator app shows for kagi")]
    TotpRequired(String),
    /// A witness has seen more of the transparency log than this database holds, or refused a
    /// consistency proof computed from it: the database was restored, forked or truncated.
    #[error("{0}")]
    RollbackDetected(String),
    /// Fewer than the quorum of witnesses cosigned the checkpoint covering this use in time;
    /// the use is counted and its result is not released.
    #[error("{0}")]
    WitnessUnavailable(String),
    #[error("storage error: {0}")]
    Store(String),
    #[error("crypto engine error: {0}")]
    Crypto(&'static str),
}

impl HsmError {
    /// Stable code for clients and the `{"error": {"code": ...}}` body.
    pub fn code(&self) -> &'static str {
        match self {
            HsmError::BadInput(_) => "bad_request",
            HsmError::UnknownAlgorithm(_) => "unknown_algorithm",
            HsmError::DigestLength { .. } => "bad_digest",
            HsmError::Unauthenticated => "unauthenticated",
            HsmError::BadCredential => "bad_credential",
            HsmError::CredentialLocked(_) => "credential_locked",
            HsmError::CredentialRevoked(_) => "credential_revoked",
            HsmError::CredentialExpired(_) => "credential_expired",
            HsmError::PasswordLocked { .. } => "password_locked",
            HsmError::TotpRequired(_) => "totp_required",
            HsmError::KeyAuthRequired(_) => "key_auth_required",
            HsmError::KeyAuthWrong { .. } => "key_auth_wrong",
            HsmError::KeyAuthLocked { .. } => "key_auth_locked",
            HsmError::QuotaExhausted { .. } => "quota_exhausted",
            HsmError::Forbidden { .. } => "forbidden",
            HsmError::KeyNotFound(_) => "key_not_found",
            HsmError::NotFound(_) => "not_found",
            HsmError::CaKeyReserved(_) => "ca_key_reserved",
            HsmError::Conflict(_) => "conflict",
            HsmError::SerialInUse(_) => "serial_in_use",
            HsmError::KeyExists(_) => "key_exists",
            HsmError::UsageLimitReached { .. } => "usage_limit_reached",
            HsmError::KeyNotActive { .. } => "key_not_active",
            HsmError::KeySuspended(_) => "key_suspended",
            HsmError::KeyDeactivated(_) => "key_deactivated",
            HsmError::KeyCompromised(_) => "key_compromised",
            HsmError::KeyStateTransition { .. } => "key_state_transition",
            HsmError::VerificationPeriodOver { .. } => "key_verification_period_over",
            HsmError::KeyFrozen(_) => "key_frozen",
            HsmError::QuotaFrozen(_) => "quota_frozen",
            HsmError::KeyChanged(_) => "key_changed",
            HsmError::OperationNotAllowed { .. } => "operation_not_allowed",
            HsmError::NotExportable(_) => "not_exportable",
            HsmError::UntrustedWrappingKey(_) => "untrusted_wrapping_key",
            HsmError::KeyIntegrity { .. } => "key_integrity_failure",
            HsmError::UnwrapFailed => "unwrap_failed",
            HsmError::NotInitialized => "not_initialized",
            HsmError::AlreadyInitialized => "already_initialized",
            HsmError::Sealed { .. } => "sealed",
            HsmError::BadShare(_) => "bad_share",
            HsmError::WrongMasterKey => "wrong_master_key",
            HsmError::AuditIntegrity { .. } => "audit_integrity_failure",
            HsmError::Integrity(_) => "integrity_failure",
            HsmError::SelfApproval(_) => "self_approval",
            HsmError::NotAnApprover { .. } => "not_an_approver",
            HsmError::RollbackDetected(_) => "rollback_detected",
            HsmError::WitnessUnavailable(_) => "witness_unavailable",
            HsmError::Store(_) => "storage_error",
            HsmError::Crypto(_) => "crypto_error",
        }
    }

    /// How many seconds until retrying can succeed, for the errors that know (a lock).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            HsmError::KeyAuthLocked {
                retry_after_secs, ..
            }
            | HsmError::PasswordLocked {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            HsmError::BadInput(_)
            | HsmError::UnknownAlgorithm(_)
            | HsmError::DigestLength { .. }
            | HsmError::BadShare(_)
            | HsmError::UnwrapFailed => ErrorKind::BadInput,
            HsmError::Unauthenticated
            | HsmError::BadCredential
            | HsmError::CredentialLocked(_)
            | HsmError::CredentialRevoked(_)
            | HsmError::CredentialExpired(_)
            | HsmError::PasswordLocked { .. }
            | HsmError::TotpRequired(_) => ErrorKind::Unauthenticated,
            HsmError::Forbidden { .. }
            | HsmError::CaKeyReserved(_)
            | HsmError::SelfApproval(_)
            | HsmError::NotAnApprover { .. }
            | HsmError::OperationNotAllowed { .. }
            | HsmError::NotExportable(_)
            | HsmError::UntrustedWrappingKey(_)
            | HsmError::KeyAuthRequired(_)
            | HsmError::KeyAuthWrong { .. } => ErrorKind::Forbidden,
            HsmError::KeyNotFound(_) | HsmError::NotFound(_) => ErrorKind::NotFound,
            HsmError::KeyExists(_)
            | HsmError::KeyNotActive { .. }
            | HsmError::KeySuspended(_)
            | HsmError::KeyDeactivated(_)
            | HsmError::KeyCompromised(_)
            | HsmError::KeyStateTransition { .. }
            | HsmError::VerificationPeriodOver { .. }
            | HsmError::KeyFrozen(_)
            | HsmError::QuotaFrozen(_)
            | HsmError::KeyChanged(_)
            | HsmError::Conflict(_)
            | HsmError::SerialInUse(_)
            | HsmError::AlreadyInitialized
            | HsmError::WrongMasterKey => ErrorKind::Conflict,
            HsmError::UsageLimitReached { .. }
            | HsmError::QuotaExhausted { .. }
            | HsmError::KeyAuthLocked { .. } => ErrorKind::LimitReached,
            HsmError::NotInitialized
            | HsmError::Sealed { .. }
            | HsmError::WitnessUnavailable(_) => ErrorKind::Unavailable,
            HsmError::KeyIntegrity { .. }
            | HsmError::AuditIntegrity { .. }
            | HsmError::Integrity(_)
            | HsmError::RollbackDetected(_) => ErrorKind::Integrity,
            HsmError::Store(_) | HsmError::Crypto(_) => ErrorKind::Internal,
        }
    }
}

impl From<diesel::result::Error> for HsmError {
    fn from(e: diesel::result::Error) -> Self {
        HsmError::Store(e.to_string())
    }
}

impl From<aws_lc_rs::error::Unspecified> for HsmError {
    fn from(_: aws_lc_rs::error::Unspecified) -> Self {
        HsmError::Crypto("operation failed")
    }
}

pub type Result<T, E = HsmError> = std::result::Result<T, E>;
