//! The module's one error type: a CK_RV (what the caller gets back, stable) and a message
//! (what was wrong and what to do, printed on stderr for failures that are not the caller's
//! own argument mistakes).
#![forbid(unsafe_code)]

use cryptoki_sys::*;

/// Luna's "key not active" (CKR_VENDOR_DEFINED + 0x136): the key is past its usage limit,
/// outside its validity window, or disabled. Clients written for Luna recognise it.
pub const CKR_KEY_NOT_ACTIVE: CK_RV = CKR_VENDOR_DEFINED + 0x136;

#[derive(Debug, thiserror::Error)]
#[error("{message} (CK_RV 0x{rv:08x})")]
pub struct Error {
    rv: CK_RV,
    message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn new(rv: CK_RV, message: impl Into<String>) -> Error {
        Error {
            rv,
            message: message.into(),
        }
    }

    /// An error the caller's arguments caused and the CK_RV alone explains.
    pub fn rv(rv: CK_RV) -> Error {
        Error {
            rv,
            message: String::new(),
        }
    }

    pub fn code(&self) -> CK_RV {
        self.rv
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// A refusal by the kagi service, by its stable error code. `login` says the call was a
    /// C_Login, where a bad credential is a wrong PIN rather than a lost login.
    pub fn from_service(code: &str, message: &str, login: bool) -> Error {
        let rv = match code {
            "usage_limit_reached" | "key_not_active" => CKR_KEY_NOT_ACTIVE,
            "unauthenticated" | "bad_credential" if login => CKR_PIN_INCORRECT,
            "credential_expired" if login => CKR_PIN_EXPIRED,
            "credential_locked" | "credential_revoked" | "too_many_attempts" if login => {
                CKR_PIN_LOCKED
            }
            "unauthenticated" | "bad_credential" | "credential_expired" | "credential_locked"
            | "credential_revoked" => CKR_USER_NOT_LOGGED_IN,
            "operation_not_allowed" | "ca_key_reserved" => CKR_KEY_FUNCTION_NOT_PERMITTED,
            "policy_denied" | "quota_exhausted" | "forbidden" | "too_many_attempts" => {
                CKR_FUNCTION_REJECTED
            }
            // The key's own password (C_Login with CKU_CONTEXT_SPECIFIC) is missing or wrong.
            "key_auth_required" => CKR_USER_NOT_LOGGED_IN,
            "key_auth_wrong" => CKR_PIN_INCORRECT,
            "key_auth_locked" => CKR_PIN_LOCKED,
            "key_not_found" => CKR_KEY_HANDLE_INVALID,
            "key_exists" | "reserved_name" => CKR_ATTRIBUTE_VALUE_INVALID,
            "bad_digest" => CKR_DATA_LEN_RANGE,
            "sealed" | "not_initialized" => CKR_DEVICE_ERROR,
            _ => CKR_FUNCTION_FAILED,
        };
        Error::new(rv, format!("kagi refused: {code}: {message}"))
    }

    /// The service could not be reached or answered something unreadable.
    pub fn device(message: impl Into<String>) -> Error {
        Error::new(CKR_DEVICE_ERROR, message)
    }
}
