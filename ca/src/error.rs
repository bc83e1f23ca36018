//! Errors of the CA. Each says what was wrong and what to do; `code()` is stable for clients.

use kagi_hsm_core::{ErrorKind, HsmError};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum CaError {
    /// hsm-core refused or failed (a limit, a quota, a role, the store).
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// An hsm-core error that came back through a RustCrypto builder (which boxes it).
    #[error("{message}")]
    HsmVia {
        code: &'static str,
        kind: ErrorKind,
        message: String,
    },
    /// The CSR could not be parsed, or its signature does not verify.
    #[error("{0}")]
    BadCsr(String),
    /// The CSR asks for something its profile does not allow.
    #[error("{0}")]
    NotAllowed(String),
    /// A subjectAltName the profile's allow-list does not admit; the message names it.
    #[error("{0}")]
    SanNotAllowed(String),
    /// The request itself is malformed (a bad parameter).
    #[error("{0}")]
    BadRequest(String),
    #[error("profile '{0}' does not exist: the built-in profiles are device, device-client, code-signing, tls-server, timestamping and ocsp-signing; 'kagi ca profile list' shows the custom ones")]
    UnknownProfile(String),
    #[error("{0}")]
    Conflict(String),
    /// A pre-issuance check failed on a certificate kagi itself built: a bug, never signed.
    #[error("pre-issuance check failed, nothing was signed: {0}")]
    Lint(String),
    #[error("internal CA error: {0}")]
    Internal(String),
}

impl CaError {
    pub fn code(&self) -> &'static str {
        match self {
            CaError::Hsm(e) => e.code(),
            CaError::HsmVia { code, .. } => code,
            CaError::BadCsr(_) => "bad_csr",
            CaError::NotAllowed(_) => "not_allowed_by_profile",
            CaError::SanNotAllowed(_) => "san_not_allowed",
            CaError::BadRequest(_) => "bad_request",
            CaError::UnknownProfile(_) => "unknown_profile",
            CaError::Conflict(_) => "conflict",
            CaError::Lint(_) => "pre_issuance_check_failed",
            CaError::Internal(_) => "internal_error",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            CaError::Hsm(e) => e.kind(),
            CaError::HsmVia { kind, .. } => *kind,
            CaError::BadCsr(_)
            | CaError::NotAllowed(_)
            | CaError::SanNotAllowed(_)
            | CaError::BadRequest(_) => ErrorKind::BadInput,
            CaError::UnknownProfile(_) => ErrorKind::NotFound,
            CaError::Conflict(_) => ErrorKind::Conflict,
            CaError::Lint(_) | CaError::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A copy that keeps code, class and message (hsm-core errors are not `Clone`).
    pub(crate) fn clone_shallow(&self) -> CaError {
        CaError::HsmVia {
            code: self.code(),
            kind: self.kind(),
            message: self.to_string(),
        }
    }
}

impl From<der::Error> for CaError {
    fn from(e: der::Error) -> Self {
        CaError::Internal(format!("DER encoding: {e}"))
    }
}

impl From<spki::Error> for CaError {
    fn from(e: spki::Error) -> Self {
        CaError::Internal(format!("public key: {e}"))
    }
}

pub type Result<T, E = CaError> = std::result::Result<T, E>;
