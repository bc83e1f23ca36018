//! The one error shape of the HTTP API: `{"error": {"code": "...", "message": "..."}}`, with a
//! status that fits the error class. Every failure path, including the ones actix handles before
//! a handler runs (bad JSON, oversize bodies, unknown routes), ends up here.

use actix_web::error::{JsonPayloadError, PathError, QueryPayloadError};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use hsm_core::{ErrorKind, HsmError};
use serde_json::json;
use std::fmt;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }

    pub fn code(&self) -> &'static str {
        self.code
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
        HttpResponse::build(self.status).json(json!({
            "error": { "code": self.code, "message": self.message }
        }))
    }
}

pub fn status_for(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::BadInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::LimitReached => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Integrity | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<HsmError> for ApiError {
    fn from(e: HsmError) -> Self {
        let status = status_for(e.kind());
        if status.is_server_error() {
            log::error!("{}: {e}", e.code());
        }
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<ca::CaError> for ApiError {
    fn from(e: ca::CaError) -> Self {
        if let ca::CaError::Hsm(h) = e {
            return h.into();
        }
        let status = status_for(e.kind());
        if status.is_server_error() {
            log::error!("{}: {e}", e.code());
        }
        ApiError::new(status, e.code(), e.to_string())
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
impl From<hsm_core::algorithm::AlgorithmError> for ApiError {
    fn from(e: hsm_core::algorithm::AlgorithmError) -> Self {
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
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is {length} bytes; the limit is {limit} bytes"),
        ),
        JsonPayloadError::Overflow { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        ),
        JsonPayloadError::Deserialize(e) => {
            ApiError::bad_request("bad_json", format!("the request body is not valid: {e}"))
        }
        JsonPayloadError::ContentType => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with 'Content-Type: application/json'",
        ),
        other => ApiError::bad_request(
            "bad_json",
            format!("the request body could not be read: {other}"),
        ),
    };
    api.into()
}

/// Read a raw request body (a CSR, an OCSP request) up to `limit` bytes; larger bodies get the
/// one JSON error shape with 413, as JSON bodies do.
pub async fn read_body(
    payload: actix_web::web::Payload,
    limit: usize,
) -> Result<actix_web::web::Bytes, ApiError> {
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(e)) => Err(ApiError::bad_request(
            "bad_body",
            format!("the request body could not be read: {e}"),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the request body is larger than the limit of {limit} bytes"),
        )),
    }
}

/// Installed as `QueryConfig::error_handler`.
pub fn query_error(err: QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("bad_query", format!("invalid query string: {err}")).into()
}

/// Installed as `PathConfig::error_handler`.
pub fn path_error(err: PathError, _req: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("bad_path", format!("invalid path: {err}")).into()
}

/// The default service: any route not listed.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
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
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
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
}
