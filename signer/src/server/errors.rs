//! The one error shape of the HTTP API: `{"error": {"code": "...", "message": "..."}}`, with a
//! status that fits the error class. Every failure path, including the ones actix handles before
//! a handler runs (bad JSON, oversize bodies, unknown routes), ends up here.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use kagi_hsm_core::{ErrorKind, HsmError};
use serde_json::json;
use std::fmt;

use super::error_codes::Code;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds for a `Retry-After` header (429 from a rate limit).
    retry_after: Option<u64>,
}

impl ApiError {
    /// A refusal of the service's own; the registry gives its status.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            status: code.status(),
            code: code.as_str(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// Tell the client when to retry (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::InternalError, message)
    }

    /// An error whose code comes as a string from hsm-core, the CA or the policy crate. The
    /// registry gives its status; the error's class stands in only for a code the registry does
    /// not list yet, which `every_code_is_registered_and_documented` refuses.
    fn registered(code: &'static str, kind: ErrorKind, message: String) -> Self {
        let status = Code::named(code)
            .map(Code::status)
            .unwrap_or_else(|| status_for(kind));
        if status.is_server_error() {
            log::error!("{code}: {message}");
        }
        ApiError {
            status,
            code,
            message,
            retry_after: None,
        }
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What the caller is told (the console shows it on the page).
    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn is_bad_input(&self) -> bool {
        self.status == StatusCode::BAD_REQUEST
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut r = HttpResponse::build(self.status);
        if let Some(s) = self.retry_after {
            r.insert_header((actix_web::http::header::RETRY_AFTER, s.to_string()));
        }
        r.json(json!({
            "error": { "code": self.code, "message": self.message }
        }))
    }
}

fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::LimitReached => StatusCode::TOO_MANY_REQUESTS,
        // Stored data the service relies on does not verify: it refuses (fails closed) until
        // an operator recovers, which is unavailability, not a bug in kagi.
        ErrorKind::Unavailable | ErrorKind::Integrity => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<HsmError> for ApiError {
    fn from(e: HsmError) -> Self {
        let retry_after = e.retry_after();
        let api = ApiError::registered(e.code(), e.kind(), e.to_string());
        match retry_after {
            Some(secs) => api.with_retry_after(secs),
            None => api,
        }
    }
}

impl From<kagi_ca::CaError> for ApiError {
    fn from(e: kagi_ca::CaError) -> Self {
        if let kagi_ca::CaError::Hsm(h) = e {
            return h.into();
        }
        ApiError::registered(e.code(), e.kind(), e.to_string())
    }
}

impl ApiError {
    /// The error as one item of a batch answer.
    pub fn to_json(&self) -> serde_json::Value {
        json!({ "code": self.code, "message": self.message })
    }
}

/// An algorithm, digest or padding name the API was sent that kagi does not know (kagi-crypto
/// parses them): the same code and message as hsm-core gives.
impl From<kagi_hsm_core::algorithm::AlgorithmError> for ApiError {
    fn from(e: kagi_hsm_core::algorithm::AlgorithmError) -> Self {
        HsmError::from(e).into()
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        ApiError::internal("the HSM worker pool is unavailable: the service is shutting down")
    }
}

/// Installed as `JsonConfig::error_handler`.
pub fn json_error(err: JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { length, limit } => ApiError::new(
            Code::PayloadTooLarge,
            format!("the request body is {length} bytes; the limit is {limit} bytes"),
        ),
        JsonPayloadError::Overflow { limit } => ApiError::new(
            Code::PayloadTooLarge,
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::new(Code::BadJson, format!("the request body is not valid: {e}"))
        }
        JsonPayloadError::ContentType => ApiError::new(
            Code::UnsupportedMediaType,
            "send the request body as JSON with 'Content-Type: application/json'",
        ),
        other => ApiError::new(
            Code::BadJson,
            format!("the request body could not be read: {other}"),
        ),
    };
    api.into()
}

/// Installed as `QueryConfig::error_handler`.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(Code::BadQuery, format!("invalid query string: {err}")).into()
}

/// Installed as `PathConfig::error_handler`.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::new(Code::BadPath, format!("invalid path: {err}")).into()
}

/// The default service: any route not listed.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!(
            "no such endpoint: {} {} (see /api/v1/openapi.json)",
            req.method(),
            req.path()
        ),
    ))
}

/// A listed route called with a method it does not take.
pub async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} is not allowed on {} (see /api/v1/openapi.json)",
            req.method(),
            req.path()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_reached_is_429_and_keeps_the_code() {
        let e: ApiError = HsmError::UsageLimitReached {
            label: "fw".into(),
            limit: 3,
        }
        .into();
        assert_eq!(e.status_code(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(e.code(), "usage_limit_reached");
    }

    /// One error of each hsm-core variant. The match has no wildcard, so a new variant does not
    /// compile until it is listed here, and then the test below asks the registry for its code.
    fn every_hsm_error() -> Vec<HsmError> {
        let s = String::new;
        let all = vec![
            HsmError::BadInput(s()),
            HsmError::UnknownAlgorithm(s()),
            HsmError::DigestLength {
                alg: "",
                got: 0,
                want: 0,
            },
            HsmError::Unauthenticated,
            HsmError::BadCredential,
            HsmError::CredentialLocked(s()),
            HsmError::CredentialRevoked(s()),
            HsmError::CredentialExpired(s()),
            HsmError::PasswordLocked {
                name: s(),
                retry_after_secs: 1,
            },
            HsmError::TotpRequired(s()),
            HsmError::KeyAuthRequired(s()),
            HsmError::KeyAuthWrong {
                label: s(),
                left: 1,
            },
            HsmError::KeyAuthLocked {
                label: s(),
                retry_after_secs: 1,
            },
            HsmError::QuotaExhausted {
                quota: s(),
                window: s(),
            },
            HsmError::Forbidden {
                have: s(),
                action: "",
                need: "",
            },
            HsmError::KeyNotFound(s()),
            HsmError::NotFound(s()),
            HsmError::CaKeyReserved(s()),
            HsmError::Conflict(s()),
            HsmError::SerialInUse(s()),
            HsmError::KeyExists(s()),
            HsmError::UsageLimitReached {
                label: s(),
                limit: 0,
            },
            HsmError::KeyNotActive {
                label: s(),
                reason: s(),
            },
            HsmError::KeySuspended(s()),
            HsmError::KeyDeactivated(s()),
            HsmError::KeyCompromised(s()),
            HsmError::VerificationPeriodOver {
                label: s(),
                until: 0,
            },
            HsmError::KeyStateTransition {
                label: s(),
                from: "",
                to: "",
                allowed: s(),
            },
            HsmError::KeyFrozen(s()),
            HsmError::QuotaFrozen(s()),
            HsmError::KeyChanged(s()),
            HsmError::OperationNotAllowed { label: s(), op: "" },
            HsmError::NotExportable(s()),
            HsmError::UntrustedWrappingKey(s()),
            HsmError::KeyIntegrity { label: s() },
            HsmError::UnwrapFailed,
            HsmError::NotInitialized,
            HsmError::AlreadyInitialized,
            HsmError::Sealed { need: 0 },
            HsmError::BadShare(s()),
            HsmError::WrongMasterKey,
            HsmError::Integrity(s()),
            HsmError::SelfApproval(s()),
            HsmError::NotAnApprover { name: s(), id: s() },
            HsmError::AuditIntegrity {
                seq: 0,
                reason: s(),
            },
            HsmError::RollbackDetected(s()),
            HsmError::WitnessUnavailable(s()),
            HsmError::Store(s()),
            HsmError::Crypto(""),
        ];
        for e in &all {
            match e {
                HsmError::BadInput(_)
                | HsmError::UnknownAlgorithm(_)
                | HsmError::DigestLength { .. }
                | HsmError::Unauthenticated
                | HsmError::BadCredential
                | HsmError::CredentialLocked(_)
                | HsmError::CredentialRevoked(_)
                | HsmError::CredentialExpired(_)
                | HsmError::PasswordLocked { .. }
                | HsmError::TotpRequired(_)
                | HsmError::KeyAuthRequired(_)
                | HsmError::KeyAuthWrong { .. }
                | HsmError::KeyAuthLocked { .. }
                | HsmError::QuotaExhausted { .. }
                | HsmError::Forbidden { .. }
                | HsmError::KeyNotFound(_)
                | HsmError::NotFound(_)
                | HsmError::CaKeyReserved(_)
                | HsmError::Conflict(_)
                | HsmError::SerialInUse(_)
                | HsmError::KeyExists(_)
                | HsmError::UsageLimitReached { .. }
                | HsmError::KeyNotActive { .. }
                | HsmError::KeyChanged(_)
                | HsmError::KeySuspended(_)
                | HsmError::KeyDeactivated(_)
                | HsmError::KeyCompromised(_)
                | HsmError::KeyStateTransition { .. }
                | HsmError::VerificationPeriodOver { .. }
                | HsmError::KeyFrozen(_)
                | HsmError::QuotaFrozen(_)
                | HsmError::OperationNotAllowed { .. }
                | HsmError::NotExportable(_)
                | HsmError::UntrustedWrappingKey(_)
                | HsmError::KeyIntegrity { .. }
                | HsmError::UnwrapFailed
                | HsmError::NotInitialized
                | HsmError::AlreadyInitialized
                | HsmError::Sealed { .. }
                | HsmError::BadShare(_)
                | HsmError::WrongMasterKey
                | HsmError::Integrity(_)
                | HsmError::SelfApproval(_)
                | HsmError::NotAnApprover { .. }
                | HsmError::AuditIntegrity { .. }
                | HsmError::RollbackDetected(_)
                | HsmError::WitnessUnavailable(_)
                | HsmError::Store(_)
                | HsmError::Crypto(_) => {}
            }
        }
        all
    }

    /// One error of each CA variant that has a code of its own (the others carry hsm-core's).
    fn every_ca_error() -> Vec<kagi_ca::CaError> {
        use kagi_ca::CaError;
        let all = vec![
            CaError::BadCsr(String::new()),
            CaError::NotAllowed(String::new()),
            CaError::BadRequest(String::new()),
            CaError::UnknownProfile(String::new()),
            CaError::Conflict(String::new()),
            CaError::SanNotAllowed(String::new()),
            CaError::Lint(String::new()),
            CaError::Internal(String::new()),
        ];
        for e in &all {
            match e {
                CaError::Hsm(_) | CaError::HsmVia { .. } => unreachable!("carries hsm-core's code"),
                CaError::BadCsr(_)
                | CaError::NotAllowed(_)
                | CaError::SanNotAllowed(_)
                | CaError::BadRequest(_)
                | CaError::UnknownProfile(_)
                | CaError::Conflict(_)
                | CaError::Lint(_)
                | CaError::Internal(_) => {}
            }
        }
        all
    }

    #[test]
    fn every_code_is_registered_and_documented() {
        let mut seen = std::collections::BTreeSet::new();
        for c in Code::ALL {
            assert!(
                seen.insert(c.as_str()),
                "{} is registered twice",
                c.as_str()
            );
        }
        // Codes that come as strings keep the status their error class gave them before the
        // registry existed.
        let from_libraries = every_hsm_error()
            .into_iter()
            .map(|e| (e.code(), status_for(e.kind()), ApiError::from(e)))
            .chain(
                every_ca_error()
                    .into_iter()
                    .map(|e| (e.code(), status_for(e.kind()), ApiError::from(e))),
            );
        for (code, class_status, api) in from_libraries {
            let registered = Code::named(code)
                .unwrap_or_else(|| panic!("{code} is answered but not in the registry"));
            assert_eq!(registered.status(), class_status, "{code}");
            assert_eq!(api.status_code(), class_status, "{code}");
            assert_eq!(api.code(), code);
        }
        let policy_code = kagi_policy::PolicyError {
            line: 1,
            column: None,
            reason: String::new(),
        }
        .code();
        assert_eq!(Code::named(policy_code), Some(Code::PolicyInvalid));
        assert_eq!(Code::PolicyInvalid.status(), StatusCode::BAD_REQUEST);

        let doc = crate::server::openapi::document();
        let documented: std::collections::BTreeSet<&str> = doc
            .pointer("/components/schemas/Error/properties/error/properties/code/oneOf")
            .and_then(serde_json::Value::as_array)
            .expect("the Error schema lists its codes")
            .iter()
            .filter_map(|c| c.get("const").and_then(serde_json::Value::as_str))
            .collect();
        assert_eq!(
            documented, seen,
            "the OpenAPI document and the registry differ"
        );
    }
}
