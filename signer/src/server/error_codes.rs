//! The registry of every error code the HTTP API can answer, with its status and what it means.
//!
//! The service's own refusals name a [`Code`], so they cannot use a code that is not listed.
//! hsm-core, the CA and the policy crate report their codes as strings; `errors.rs` looks their
//! status up here, and a test checks that every one of their codes is listed with the status
//! its error class gives it, and that the OpenAPI document lists every code.

use actix_web::http::StatusCode;

/// Writes the registry once as a table and derives the enum and its lookups from it, so a code,
/// its status and its meaning cannot drift apart.
macro_rules! registry {
    ($($variant:ident = $code:literal, $status:ident, $meaning:literal;)*) => {
        /// One error code of the API.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, in the registry's order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as clients see it in `{"error": {"code": ...}}`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $code,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            /// One line for client authors: what went wrong.
            pub fn meaning(self) -> &'static str {
                match self {
                    $(Code::$variant => $meaning,)*
                }
            }
        }
    };
}

registry! {
    // The request itself.
    BadRequest = "bad_request", BAD_REQUEST, "the request is malformed or names something impossible";
    BadJson = "bad_json", BAD_REQUEST, "the JSON body could not be read or does not fit the route's schema";
    BadBody = "bad_body", BAD_REQUEST, "the raw request body could not be read";
    BadQuery = "bad_query", BAD_REQUEST, "the query string does not fit the route";
    BadPath = "bad_path", BAD_REQUEST, "a path parameter does not fit the route";
    BadBase64 = "bad_base64", BAD_REQUEST, "a field that must be base64 is not";
    BadTime = "bad_time", BAD_REQUEST, "a time field is not RFC 3339";
    BadDigest = "bad_digest", BAD_REQUEST, "the digest is not hex, or its length does not fit the digest algorithm";
    UnknownAlgorithm = "unknown_algorithm", BAD_REQUEST, "the key, digest or padding algorithm is not one kagi knows";
    UnsupportedFormat = "unsupported_format", BAD_REQUEST, "the signature format is not raw, cms or sigstore";
    ReservedName = "reserved_name", BAD_REQUEST, "the key name is reserved for a route";
    UnwrapFailed = "unwrap_failed", BAD_REQUEST, "the wrapped key does not unwrap with the partition's import key";
    BadShare = "bad_share", BAD_REQUEST, "the unseal share is malformed";
    PolicyInvalid = "policy_invalid", BAD_REQUEST, "the policy document was rejected (its line is in the message)";
    BadCsr = "bad_csr", BAD_REQUEST, "the CSR cannot be parsed or its signature does not verify";
    NotAllowedByProfile = "not_allowed_by_profile", BAD_REQUEST, "the CSR asks for something its profile does not allow";
    SanNotAllowed = "san_not_allowed", BAD_REQUEST, "a subjectAltName of the CSR is not on its profile's allow-list (the message names it and the list)";
    BadValidity = "bad_validity", BAD_REQUEST, "the validity is not a number of days or \"forever\"";
    BadReason = "bad_reason", BAD_REQUEST, "the revocation reason is not an RFC 5280 CRLReason kagi accepts";
    BadBatch = "bad_batch", BAD_REQUEST, "the batch holds no CSRs or too many";
    NotRenewable = "not_renewable", BAD_REQUEST, "EST re-enrollment for a subject this identity holds no certificate for";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE, "the request body is over the route's limit";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "the request body's content type is not one the route reads";
    // Who is asking.
    Unauthenticated = "unauthenticated", UNAUTHORIZED, "no credential, or a malformed one";
    BadCredential = "bad_credential", UNAUTHORIZED, "the credential was not accepted";
    CredentialLocked = "credential_locked", UNAUTHORIZED, "the credential is locked: an administrator (or, for an administrator, a quorum of share holders) unlocks it";
    KeyAuthLocked = "key_auth_locked", TOO_MANY_REQUESTS, "the key is refused for Retry-After seconds after repeated wrong key passwords (each lock doubles, never for good)";
    TooManyAttempts = "too_many_attempts", TOO_MANY_REQUESTS, "too many failed attempts from this address: wait for Retry-After seconds";
    CredentialRevoked = "credential_revoked", UNAUTHORIZED, "the credential was revoked";
    CredentialExpired = "credential_expired", UNAUTHORIZED, "the credential has expired";
    PasswordLocked = "password_locked", UNAUTHORIZED, "console sign-in with a password is locked for a while after repeated wrong passwords (the token still works)";
    TotpRequired = "totp_required", UNAUTHORIZED, "the password was right and this person also signs in with a one-time code (TOTP): send it too";
    CsrfRejected = "csrf_rejected", FORBIDDEN, "a console form came without the session's CSRF token, or with another one: reload the page and submit again";
    // What they may do.
    Forbidden = "forbidden", FORBIDDEN, "the caller's role does not allow the operation";
    PolicyDenied = "policy_denied", FORBIDDEN, "the active policy does not allow the request";
    CaKeyReserved = "ca_key_reserved", FORBIDDEN, "a CA key signs only through the CA routes";
    OperationNotAllowed = "operation_not_allowed", FORBIDDEN, "the key does not allow the operation";
    NotExportable = "not_exportable", FORBIDDEN, "the key was not created exportable under wrap";
    UntrustedWrappingKey = "untrusted_wrapping_key", FORBIDDEN, "the wrapping key is not a trusted wrapping key";
    SelfApproval = "self_approval", FORBIDDEN, "the requester cannot approve their own request";
    NotAnApprover = "not_an_approver", FORBIDDEN, "the caller is not an approver the policy names";
    KeyAuthRequired = "key_auth_required", FORBIDDEN, "the key has its own password (per-key authorization): send it with the request (Kagi-Key-Auth header or key_password field)";
    KeyAuthWrong = "key_auth_wrong", FORBIDDEN, "the key's own password is wrong; wrong passwords in a row refuse the key for a while";
    // What they name.
    NotFound = "not_found", NOT_FOUND, "no such object or endpoint";
    KeyNotFound = "key_not_found", NOT_FOUND, "no key of that name in the caller's partition";
    UnknownProfile = "unknown_profile", NOT_FOUND, "no certificate profile of that name";
    NoCertificate = "no_certificate", NOT_FOUND, "the key has no current code-signing certificate";
    NoCheckpoint = "no_checkpoint", NOT_FOUND, "no signed checkpoint (yet, or at that size)";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "the route does not take that method";
    // The state it meets.
    Conflict = "conflict", CONFLICT, "the request conflicts with the current state";
    SerialInUse = "serial_in_use", CONFLICT, "the device serial number has a live certificate for another key: revoke it first, or an officer issues with the audited override";
    KeyExists = "key_exists", CONFLICT, "a key of that name already exists in the partition";
    KeyNotActive = "key_not_active", CONFLICT, "the key is outside its signing period (pre-activation, or past it: it only verifies) or destroyed (a disabled key answers key_suspended)";
    KeySuspended = "key_suspended", CONFLICT, "the key is suspended (disabled by an officer): it signs nothing until an officer enables it again";
    KeyDeactivated = "key_deactivated", CONFLICT, "the key was deactivated by an officer: it only verifies, for good";
    KeyCompromised = "key_compromised", CONFLICT, "the key was marked compromised: it signs and verifies nothing, for good";
    KeyVerificationPeriodOver = "key_verification_period_over", CONFLICT, "the key is past its verification period: it verifies nothing more";
    KeyStateTransition = "key_state_transition", CONFLICT, "the key's lifecycle state does not allow this change (the message names the state and the allowed ones)";
    KeyFrozen = "key_frozen", CONFLICT, "a rollback of the database was detected since the key's usage limit was set: an officer reviews the key and sets its limit again (kagi key set-limit)";
    QuotaFrozen = "quota_frozen", CONFLICT, "a rollback of the database was detected since the active policy was activated: officers review the quotas and activate a policy version again";
    KeyChanged = "key_changed", CONFLICT, "the key changed while the request was in flight: retry";
    AlreadyInitialized = "already_initialized", CONFLICT, "the HSM is already initialized";
    WrongMasterKey = "wrong_master_key", CONFLICT, "the unseal shares belong to another instance or are damaged";
    UsageLimitReached = "usage_limit_reached", TOO_MANY_REQUESTS, "the key has used all its permitted uses";
    QuotaExhausted = "quota_exhausted", TOO_MANY_REQUESTS, "a policy quota is exhausted";
    NotInitialized = "not_initialized", SERVICE_UNAVAILABLE, "the HSM is not initialized";
    Sealed = "sealed", SERVICE_UNAVAILABLE, "the HSM is sealed: submit unseal shares";
    // kagi itself.
    KeyIntegrityFailure = "key_integrity_failure", SERVICE_UNAVAILABLE, "a key's stored attributes or sealed material were changed outside kagi";
    AuditIntegrityFailure = "audit_integrity_failure", SERVICE_UNAVAILABLE, "the audit log failed its integrity check";
    IntegrityFailure = "integrity_failure", SERVICE_UNAVAILABLE, "stored data failed an integrity check; when the audit log does not verify, kagi refuses every change (fails closed) until an operator recovers it";
    RollbackDetected = "rollback_detected", SERVICE_UNAVAILABLE, "a witness has seen more of the transparency log than this database holds (it was restored from a backup, forked or truncated): kagi releases nothing until officers run the recovery in the README (\"Witnessed log\")";
    WitnessUnavailable = "witness_unavailable", SERVICE_UNAVAILABLE, "fewer than the quorum of witnesses cosigned the log in time: the use was counted and its result withheld; retry once the witnesses answer (README, \"Witnessed log\")";
    PreIssuanceCheckFailed = "pre_issuance_check_failed", INTERNAL_SERVER_ERROR, "a certificate kagi built failed its pre-issuance check and was not signed";
    StorageError = "storage_error", INTERNAL_SERVER_ERROR, "the store failed";
    CryptoError = "crypto_error", INTERNAL_SERVER_ERROR, "the crypto engine failed";
    InternalError = "internal_error", INTERNAL_SERVER_ERROR, "something inside kagi failed";
}

impl Code {
    /// The registered code of this name (how codes that come as strings from hsm-core, the CA
    /// and the policy crate are found).
    pub fn named(code: &str) -> Option<Code> {
        Code::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}
