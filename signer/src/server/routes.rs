//! Every route of the service in one table: what registers it with actix and what the OpenAPI
//! document says about it come from the same entry, so a route cannot be served without being
//! documented, with the error codes it can answer.
//!
//! Adding a route is one entry in [`ROUTES`]: method, path (an actix pattern), handler, summary,
//! and the error codes it adds to those every route of its kind answers (see
//! [`Endpoint::error_codes`]). Entries for one path are served by one actix resource, in the
//! order their paths first appear, so fixed paths go before the patterns that would capture
//! them (`/keys/import` before `/keys/{name}`).

use actix_web::http::Method;
use actix_web::{web, Route};
use std::collections::BTreeSet;

use super::error_codes::Code;
use super::{
    approvals, audit, ca_routes, console, errors, est, health, identities, keys, log_routes,
    metrics, openapi, policies, public, rollback, sign, sigstore_routes, system,
};
use super::{handler::resource, JSON_LIMIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Get,
    Post,
    Put,
    Delete,
}

impl Verb {
    fn method(self) -> Method {
        match self {
            Verb::Get => Method::GET,
            Verb::Post => Method::POST,
            Verb::Put => Method::PUT,
            Verb::Delete => Method::DELETE,
        }
    }

    /// The OpenAPI operation key.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Post => "post",
            Verb::Put => "put",
            Verb::Delete => "delete",
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone.
    Public,
    /// A bearer token (or a TLS client certificate bound to an identity).
    Credential,
    /// Anyone, and more with a credential (`/metrics`, the open TSA, log entries).
    OptionalCredential,
}

/// What the request body is.
#[derive(Clone, Copy)]
pub enum Body {
    None,
    /// JSON with this schema (from `openapi.rs`).
    Json(fn() -> serde_json::Value),
    /// A body of its own type (a CSR, an OCSP request, a policy document).
    Raw(&'static str),
}

/// A query parameter: name and JSON schema type.
pub type Param = (&'static str, &'static str);

pub struct Endpoint {
    pub verb: Verb,
    /// The actix pattern (`/keys/{name}`, `/ocsp/{req:.*}`).
    pub path: &'static str,
    handler: fn(Route) -> Route,
    pub summary: &'static str,
    pub access: Access,
    /// The success status.
    pub ok: u16,
    pub body: Body,
    pub query: &'static [Param],
    /// Codes this route answers beyond those of its kind ([`Endpoint::error_codes`]).
    pub codes: &'static [Code],
    /// The plain-HTTP listener serves this route too, with this handler.
    plain: Option<fn(Route) -> Route>,
    /// A JSON body limit other than [`JSON_LIMIT`].
    json_limit: Option<usize>,
}

/// An entry with no body, no query, success 200, for credential holders; the builders below
/// say what differs (`doc` gives the summary every entry needs).
const fn ep(verb: Verb, path: &'static str, handler: fn(Route) -> Route) -> Endpoint {
    Endpoint {
        verb,
        path,
        handler,
        summary: "",
        access: Access::Credential,
        ok: 200,
        body: Body::None,
        query: &[],
        codes: &[],
        plain: None,
        json_limit: None,
    }
}

const fn get(path: &'static str, handler: fn(Route) -> Route) -> Endpoint {
    ep(Verb::Get, path, handler)
}

const fn post(path: &'static str, handler: fn(Route) -> Route) -> Endpoint {
    ep(Verb::Post, path, handler)
}

impl Endpoint {
    /// The one-line summary the document shows.
    const fn doc(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }
    const fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }
    const fn optional_credential(mut self) -> Self {
        self.access = Access::OptionalCredential;
        self
    }
    const fn created(mut self) -> Self {
        self.ok = 201;
        self
    }
    const fn json(mut self, schema: fn() -> serde_json::Value) -> Self {
        self.body = Body::Json(schema);
        self
    }
    const fn raw(mut self, media_type: &'static str) -> Self {
        self.body = Body::Raw(media_type);
        self
    }
    const fn query(mut self, params: &'static [Param]) -> Self {
        self.query = params;
        self
    }
    const fn codes(mut self, codes: &'static [Code]) -> Self {
        self.codes = codes;
        self
    }
    /// Served on the plain-HTTP listener too, by the same handler.
    const fn plain(mut self) -> Self {
        self.plain = Some(self.handler);
        self
    }
    const fn plain_with(mut self, handler: fn(Route) -> Route) -> Self {
        self.plain = Some(handler);
        self
    }
    const fn json_limit(mut self, limit: usize) -> Self {
        self.json_limit = Some(limit);
        self
    }

    /// Whether the plain-HTTP listener serves this route too.
    pub fn on_plain_http(&self) -> bool {
        self.plain.is_some()
    }

    /// The path as OpenAPI writes it: `{req:.*}` becomes `{req}`.
    pub fn openapi_path(&self) -> String {
        let mut out = String::with_capacity(self.path.len());
        let mut in_param = false;
        let mut skipping = false;
        for c in self.path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push(c);
                }
                '}' if in_param => {
                    in_param = false;
                    skipping = false;
                    out.push(c);
                }
                ':' if in_param => skipping = true,
                _ if skipping => {}
                _ => out.push(c),
            }
        }
        out
    }

    /// The names of the path's parameters.
    pub fn path_params(&self) -> Vec<String> {
        self.openapi_path()
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name.to_string()))
            .collect()
    }

    /// Every code this route can answer: those of its kind (any route can fail inside kagi;
    /// a credential can be refused; a JSON body, a query or a path parameter can be
    /// malformed), then its own.
    pub fn error_codes(&self) -> Vec<Code> {
        let mut codes: Vec<Code> = vec![Code::InternalError];
        if self.access != Access::Public {
            codes.extend_from_slice(CREDENTIAL);
        }
        match self.body {
            Body::Json(_) => codes.extend_from_slice(&[Code::BadJson, Code::PayloadTooLarge]),
            Body::Raw(_) => codes.extend_from_slice(&[Code::BadBody, Code::PayloadTooLarge]),
            Body::None => {}
        }
        if !self.query.is_empty() {
            codes.push(Code::BadQuery);
        }
        if self.path.contains('{') {
            codes.push(Code::BadPath);
        }
        codes.extend_from_slice(self.codes);
        let mut seen = BTreeSet::new();
        codes.retain(|c| seen.insert(c.as_str()));
        codes
    }
}

/// What a credential can be refused with (and the store behind the login failing).
const CREDENTIAL: &[Code] = &[
    Code::Unauthenticated,
    Code::BadCredential,
    Code::CredentialLocked,
    Code::CredentialRevoked,
    Code::CredentialExpired,
    Code::TooManyAttempts,
    Code::Sealed,
    Code::StorageError,
];

/// A read of stored state.
const READ: &[Code] = &[
    Code::Forbidden,
    Code::StorageError,
    Code::AuditIntegrityFailure,
];

/// Using a key: the policy, the key's own rules, its limit, quotas, and the key's integrity.
const KEY_USE: &[Code] = &[
    Code::BadRequest,
    Code::KeyAuthRequired,
    Code::KeyAuthWrong,
    Code::KeyAuthLocked,
    Code::BadDigest,
    Code::UnknownAlgorithm,
    Code::UnsupportedFormat,
    Code::BadBase64,
    Code::UnwrapFailed,
    Code::Forbidden,
    Code::PolicyDenied,
    Code::CaKeyReserved,
    Code::OperationNotAllowed,
    Code::KeyNotFound,
    Code::NoCertificate,
    Code::KeyNotActive,
    Code::KeySuspended,
    Code::KeyDeactivated,
    Code::KeyCompromised,
    Code::KeyFrozen,
    Code::KeyChanged,
    Code::UsageLimitReached,
    Code::QuotaExhausted,
    Code::QuotaFrozen,
    Code::KeyIntegrityFailure,
    Code::IntegrityFailure,
    Code::AuditIntegrityFailure,
    Code::RollbackDetected,
    Code::WitnessUnavailable,
    Code::StorageError,
    Code::CryptoError,
];

/// Issuing a certificate from a CSR.
const ISSUE: &[Code] = &[
    Code::BadCsr,
    Code::BadValidity,
    Code::NotAllowedByProfile,
    Code::SanNotAllowed,
    Code::Forbidden,
    Code::PolicyDenied,
    Code::NotFound,
    Code::UnknownProfile,
    Code::SerialInUse,
    Code::KeyNotActive,
    Code::QuotaExhausted,
    Code::QuotaFrozen,
    Code::KeyIntegrityFailure,
    Code::IntegrityFailure,
    Code::AuditIntegrityFailure,
    Code::PreIssuanceCheckFailed,
    Code::KeyCompromised,
    Code::RollbackDetected,
    Code::WitnessUnavailable,
    Code::StorageError,
    Code::CryptoError,
];

/// Answering for a CA (its certificate, CRL or OCSP) without a caller.
const CA_PUBLIC: &[Code] = &[
    Code::NotFound,
    Code::Sealed,
    Code::KeyIntegrityFailure,
    Code::StorageError,
    Code::CryptoError,
];

/// Every route of the HTTPS listener (and, where marked, of the plain-HTTP one).
pub const ROUTES: &[Endpoint] = &[
    // Operations.
    get("/healthz", |r| r.to(system::healthz))
        .doc("Liveness: 200 while the process answers, sealed or not, with the seal state")
        .public(),
    get("/readyz", |r| r.to(health::readyz))
        .doc("Readiness: 200, or 503 {ready, reason, message} while sealed, failed closed (integrity_failure) or the database does not answer (database_unreachable)")
        .public(),
    get("/metrics", |r| r.to(metrics::metrics))
        .doc("Prometheus/OpenMetrics text. Without a credential: seal and integrity state, log sizes, commit batch histograms; with an auditor's bearer token also the series that name keys, CAs, profiles, quotas and identities")
        .optional_credential()
        .codes(&[Code::Forbidden]),
    get("/ui", |r| r.to(console::index))
        .doc("Web console for people (HTML): the sign-in page, or the overview with a console session; its other pages are under /ui")
        .public(),
    // Public CA and time-stamping routes (also on the plain-HTTP listener).
    get("/crl/{file}", |r| r.to(public::crl))
        .doc("A CA's current CRL, /crl/{ca}.crl (DER)")
        .public()
        .plain()
        .codes(CA_PUBLIC),
    get("/ca/{file}", |r| r.to(public::ca_cert))
        .doc("A CA's certificate, /ca/{ca}.crt (DER)")
        .public()
        .plain()
        .codes(CA_PUBLIC),
    post("/ocsp", |r| r.to(public::ocsp_post))
        .doc("OCSP (RFC 6960): application/ocsp-request in, application/ocsp-response out")
        .public()
        .plain()
        .raw("application/ocsp-request")
        .codes(CA_PUBLIC),
    post("/tsa", |r| r.to(public::tsa))
        .doc("RFC 3161 time-stamping: application/timestamp-query in, application/timestamp-reply out; a credential, or anonymous when the operator runs the open TSA (open_tsa), within a per-address rate limit")
        .optional_credential()
        .plain()
        .raw("application/timestamp-query")
        .codes(&[
            Code::Forbidden, Code::PolicyDenied, Code::BadRequest, Code::UsageLimitReached,
            Code::KeyNotActive, Code::IntegrityFailure, Code::StorageError, Code::CryptoError,
        ]),
    get("/ocsp/{req:.*}", |r| r.to(public::ocsp_get))
        .doc("OCSP (RFC 6960) GET: the base64 request in the path")
        .public()
        .plain()
        .codes(CA_PUBLIC),
    // The transparency log.
    get("/log/checkpoint", |r| r.to(log_routes::checkpoint))
        .doc("The newest signed checkpoint (C2SP signed note), or ?size=N")
        .public()
        .plain()
        .query(&[("size", "integer")])
        .codes(&[Code::NoCheckpoint, Code::StorageError]),
    get("/log/key", |r| r.to(log_routes::key))
        .doc("The log's verifier key (C2SP)")
        .public()
        .plain()
        .codes(&[Code::Sealed]),
    get("/log/proof/inclusion", |r| r.to(log_routes::inclusion))
        .doc("RFC 9162 inclusion proof: ?index=&size=")
        .public()
        .plain()
        .query(&[("index", "integer"), ("size", "integer")])
        .codes(&[Code::BadRequest, Code::NotFound, Code::StorageError]),
    get("/log/proof/consistency", |r| r.to(log_routes::consistency))
        .doc("RFC 9162 consistency proof: ?first=&second=")
        .public()
        .plain()
        .query(&[("first", "integer"), ("second", "integer")])
        .codes(&[Code::BadRequest, Code::NotFound, Code::StorageError]),
    get("/log/entries/{index}", |r| r.to(log_routes::entry))
        .doc("One log entry: index, time, body, leaf hash. An auditor reads any entry, another identity its own (404 otherwise); no credential when the instance makes entries public (log_entries_public; the plain-HTTP listener serves them only then)")
        .optional_credential()
        .plain_with(|r| r.to(log_routes::public_entry))
        .codes(&[Code::NotFound, Code::StorageError]),
    // The log as C2SP tlog-tiles (entry bundles before the tile pattern that would capture them).
    get("/log/tile/entries/{path:.*}", |r| r.to(log_routes::entry_bundle))
        .doc("C2SP tlog-tiles entry bundle <N>[.p/<W>] (big-endian uint16 length-prefixed entry bodies), under the rule of /log/entries: an auditor any bundle, another identity a bundle whose every entry names it (404 otherwise); no credential when entries are public (log_entries_public; the plain-HTTP listener serves them only then)")
        .optional_credential()
        .plain_with(|r| r.to(log_routes::public_entry_bundle))
        .codes(&[Code::NotFound, Code::BadRequest, Code::IntegrityFailure, Code::StorageError]),
    get("/log/tile/{path:.*}", |r| r.to(log_routes::tile))
        .doc("C2SP tlog-tiles Merkle tile <L>/<N>[.p/<W>] (N as x001/234): 256 hashes (8,192 bytes), or W for a partial tile, up to the newest checkpoint's size; full tiles are immutable")
        .public()
        .plain()
        .codes(&[Code::NotFound, Code::IntegrityFailure, Code::StorageError]),
    // EST (RFC 7030).
    get("/.well-known/est/cacerts", |r| r.to(est::cacerts))
        .doc("EST CA certificates (base64 PKCS#7 certs-only)")
        .public()
        .codes(CA_PUBLIC),
    post("/.well-known/est/simpleenroll", |r| r.to(est::simpleenroll))
        .doc("EST enrollment: base64 PKCS#10 in, base64 PKCS#7 out; HTTP Basic (identity name, token) or a TLS client certificate")
        .raw("application/pkcs10")
        .codes(ISSUE),
    post("/.well-known/est/simplereenroll", |r| r.to(est::simplereenroll))
        .doc("EST re-enrollment of a subject this identity holds a certificate for")
        .raw("application/pkcs10")
        .codes(&[
            Code::NotRenewable, Code::BadCsr, Code::BadValidity, Code::NotAllowedByProfile,
            Code::Forbidden, Code::PolicyDenied, Code::NotFound, Code::UnknownProfile,
            Code::SerialInUse, Code::QuotaExhausted, Code::QuotaFrozen, Code::KeyCompromised,
            Code::IntegrityFailure,
            Code::PreIssuanceCheckFailed, Code::StorageError, Code::CryptoError,
        ]),
    // The API.
    get("/api/v1/openapi.json", |r| r.to(openapi::serve))
        .doc("This document")
        .public(),
    post("/api/v1/sys/unseal", |r| r.to(system::unseal))
        .doc("Submit one unseal share; refused shares are rate-limited per address")
        .public()
        .json(openapi::unseal_body)
        .codes(&[
            Code::BadShare, Code::WrongMasterKey, Code::NotInitialized, Code::TooManyAttempts,
            Code::IntegrityFailure, Code::StorageError, Code::CryptoError,
        ]),
    post("/api/v1/sys/recover", |r| r.to(system::recover))
        .doc("Break-glass: a quorum of unseal shares unlocks an administrator credential or gives it a new token (returned once); refused shares are rate-limited per address")
        .public()
        .json(openapi::recover_body)
        .codes(&[
            Code::BadShare, Code::WrongMasterKey, Code::BadRequest, Code::NotFound,
            Code::Forbidden, Code::NotInitialized, Code::Sealed, Code::TooManyAttempts,
            Code::IntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/keys", |r| r.to(keys::list_keys))
        .doc("List keys of the caller's partition in label order; ?limit=N&after=LABEL pages it (a full page answers Link: <...>; rel=\"next\"); ?name= or ?id= gives the one key of that name or id (an empty list when none), read without listing the partition; with either, certificate=true adds each key's current code-signing certificate (PEM, null when none)")
        .query(&[("name", "string"), ("id", "string"), ("certificate", "boolean"), ("limit", "integer"), ("after", "string")])
        .codes(READ),
    post("/api/v1/keys", |r| r.to(keys::create_key))
        .doc("Generate a key")
        .created()
        .json(openapi::key_attrs)
        .codes(&[
            Code::ReservedName, Code::UnknownAlgorithm, Code::BadTime, Code::BadRequest,
            Code::KeyExists, Code::Forbidden, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError, Code::CryptoError,
        ]),
    get("/api/v1/keys/import-key", |r| r.to(keys::import_wrapping_key))
        .doc("The partition's import wrapping public key (PEM)")
        .codes(&[
            Code::Forbidden, Code::KeyIntegrityFailure, Code::IntegrityFailure, Code::StorageError,
            Code::CryptoError,
        ]),
    post("/api/v1/keys/import", |r| r.to(keys::import_key))
        .doc("Import a key wrapped with RSA-OAEP-SHA256 + AES-KWP to the import key")
        .created()
        .json(openapi::import_body)
        .codes(&[
            Code::ReservedName, Code::UnknownAlgorithm, Code::BadTime, Code::BadBase64,
            Code::BadRequest, Code::UnwrapFailed, Code::KeyExists, Code::Forbidden,
            Code::KeyIntegrityFailure, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError, Code::CryptoError,
        ]),
    get("/api/v1/keys/{name}", |r| r.to(keys::get_key))
        .doc("Key attributes, usage count and limit")
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::KeyIntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    ep(Verb::Delete, "/api/v1/keys/{name}", |r| r.to(keys::destroy_key))
        .doc("Destroy a key (202 with an approval request under a quorum)")
        .codes(&[
            Code::KeyNotFound, Code::CaKeyReserved, Code::Forbidden, Code::Conflict,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/keys/{name}/public", |r| r.to(keys::public_key))
        .doc("Public key (PEM, application/x-pem-file); ?version=N: that version of a rotated key")
        .query(&[("version", "integer")])
        .codes(&[
            Code::KeyNotFound, Code::BadQuery, Code::Forbidden, Code::KeyIntegrityFailure,
            Code::StorageError,
        ]),
    get("/api/v1/keys/{name}/certificate", |r| r.to(ca_routes::certificates::key_certificate))
        .doc("A signing key's code-signing certificate and chain")
        .codes(&[
            Code::KeyNotFound, Code::NoCertificate, Code::Forbidden, Code::NotFound,
            Code::StorageError,
        ]),
    post("/api/v1/keys/{name}/certificate", |r| r.to(ca_routes::certificates::certify_key))
        .doc("Certify a signing key (officer): {\"subject\"?, \"validity_days\"?}")
        .created()
        .json(openapi::certify_body)
        .codes(&[
            Code::KeyNotFound, Code::KeyNotActive, Code::KeyDeactivated, Code::KeyCompromised,
            Code::BadValidity, Code::BadRequest, Code::NotAllowedByProfile, Code::Forbidden, Code::NotFound, Code::KeyIntegrityFailure,
            Code::IntegrityFailure, Code::PreIssuanceCheckFailed, Code::StorageError,
            Code::CryptoError,
        ]),
    post("/api/v1/keys/{name}/export-wrapped", |r| r.to(keys::export_wrapped))
        .doc("Export an exportable-under-wrap key wrapped to a trusted wrapping key")
        .json(openapi::export_body)
        .codes(&[
            Code::KeyNotFound, Code::NotExportable, Code::UntrustedWrappingKey, Code::Forbidden,
            Code::KeyIntegrityFailure, Code::IntegrityFailure, Code::StorageError,
            Code::CryptoError,
        ]),
    post("/api/v1/sign", |r| r.to(sign::sign))
        .doc("Sign a precomputed digest: raw, CMS or Sigstore")
        .json(openapi::sign_body)
        .codes(KEY_USE),
    get("/api/v1/sigstore/trusted_root.json", |r| r.to(sigstore_routes::trusted_root))
        .doc("The Sigstore trusted root: CA chain, log key, CT key, TSA chain")
        .public()
        .codes(CA_PUBLIC),
    get("/api/v1/sigstore/client_trust_config.json", |r| r.to(sigstore_routes::client_trust_config))
        .doc("The trusted root with a signing config, for sigstore --trust-config")
        .public()
        .codes(CA_PUBLIC),
    get("/api/v1/audit", |r| r.to(audit::audit_records))
        .doc("Audit records from seq `from`, at most `limit` (max 10000); auditors")
        .query(&[("from", "integer"), ("limit", "integer")])
        .codes(&[Code::BadRequest, Code::Forbidden, Code::StorageError]),
    post("/api/v1/audit/verify", |r| r.to(audit::audit_verify))
        .doc("Recompute the audit Merkle tree and check every record and checkpoint (auditor)")
        .codes(&[Code::Forbidden, Code::AuditIntegrityFailure, Code::StorageError]),
    post("/api/v1/log/verify", |r| r.to(log_routes::verify))
        .doc("Recompute the whole transparency log (auditor)")
        .codes(&[Code::Forbidden, Code::IntegrityFailure, Code::StorageError]),
    get("/api/v1/audit/checkpoint", |r| r.to(audit::audit_checkpoint))
        .doc("Latest signed audit checkpoint")
        .codes(&[Code::Forbidden, Code::NoCheckpoint, Code::StorageError]),
    get("/api/v1/credentials", |r| r.to(identities::list_credentials))
        .doc("List credentials")
        .codes(READ),
    post("/api/v1/credentials", |r| r.to(identities::create_credential))
        .doc("Create a credential; the token is returned once")
        .created()
        .json(openapi::credential_body)
        .codes(&[
            Code::BadRequest, Code::NotFound, Code::Conflict, Code::Forbidden,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/partitions", |r| r.to(identities::list_partitions))
        .doc("List partitions")
        .codes(READ),
    post("/api/v1/partitions", |r| r.to(identities::create_partition))
        .doc("Create a partition")
        .created()
        .json(openapi::partition_body)
        .codes(&[
            Code::BadRequest, Code::Conflict, Code::Forbidden, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError, Code::CryptoError,
        ]),
    ep(Verb::Put, "/api/v1/keys/{name}/usage-limit", |r| r.to(keys::set_usage_limit))
        .doc("Change a key's usage limit (202 pending when raising under a quorum)")
        .json(openapi::usage_limit_body)
        .codes(&[
            Code::BadRequest, Code::KeyNotFound, Code::CaKeyReserved, Code::Forbidden,
            Code::KeyDeactivated, Code::KeyCompromised,
            Code::Conflict, Code::KeyIntegrityFailure, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    post("/api/v1/keys/{name}/suspend", |r| r.to(keys::suspend_key))
        .doc("Disable (suspend) a key: it signs nothing (409 key_suspended) until resumed; officers, audited as key.suspend")
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::Conflict, Code::BadRequest,
            Code::KeyChanged, Code::KeyStateTransition, Code::KeyIntegrityFailure, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    post("/api/v1/keys/{name}/resume", |r| r.to(keys::resume_key))
        .doc("Enable a suspended key again; officers, audited as key.resume (409 key_state_transition for a deactivated or compromised key)")
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::Conflict, Code::BadRequest,
            Code::KeyChanged, Code::KeyStateTransition, Code::KeyIntegrityFailure,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    ep(Verb::Put, "/api/v1/keys/{name}/key-auth", |r| r.to(keys::change_key_auth))
        .doc("Change the own password of a key with per-key authorization, given the current one (key_password or the Kagi-Key-Auth header; a wrong one counts toward the key's back-off); whoever may use the key, audited as key.auth_change")
        .json(openapi::key_auth_change_body)
        .codes(&[
            Code::BadRequest, Code::KeyNotFound, Code::Forbidden, Code::KeyAuthRequired,
            Code::KeyAuthWrong, Code::KeyAuthLocked, Code::Conflict, Code::KeyChanged,
            Code::KeyIntegrityFailure, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError, Code::CryptoError,
        ]),
    post("/api/v1/keys/{name}/deactivate", |r| r.to(keys::deactivate_key))
        .doc("Deactivate a key for good: it signs nothing more (409 key_deactivated) and still verifies; officers, audited as key.deactivate")
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::BadRequest, Code::KeyChanged,
            Code::KeyStateTransition, Code::KeyIntegrityFailure, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    post("/api/v1/keys/{name}/rotate", |r| r.to(keys::rotate_key))
        .doc("Rotate a key: a new version under the same name signs from now on, the old version is deactivated (verify only) in the same change, and a current code-signing certificate is re-issued for the new version (same CA and subject); answers {\"key\", \"certificate\"}; officers, audited as key.rotate (409 key_state_transition unless the key is active, 400 for CA and imported keys); a key whose limit counts per version is rotated behind the policy's quorum (202 with the approval request), as raising a limit is")
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::BadRequest, Code::KeyChanged,
            Code::KeyStateTransition, Code::Conflict, Code::KeyIntegrityFailure,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
            Code::CryptoError,
        ]),
    post("/api/v1/keys/{name}/compromise", |r| r.to(keys::compromise_key))
        .doc("Mark a key compromised for good: it signs and verifies nothing more (409 key_compromised), and every certificate of the key is revoked (keyCompromise) in the same audited change, with the CRLs published anew; officers, behind the policy's quorum (202 with the approval request), audited as key.compromise with the reason")
        .json(openapi::recover_rollback_body)
        .codes(&[
            Code::KeyNotFound, Code::Forbidden, Code::BadRequest, Code::KeyChanged,
            Code::KeyStateTransition, Code::Conflict, Code::KeyIntegrityFailure,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::RollbackDetected,
            Code::StorageError, Code::CryptoError,
        ]),
    post("/api/v1/rollback/recover", |r| r.to(rollback::recover))
        .doc("End a detected rollback once the witnesses were reset: officers, behind the policy's quorum (202 with the approval request); audited as tlog.rollback_recovered")
        .json(openapi::recover_rollback_body)
        .codes(&[
            Code::Forbidden, Code::Conflict, Code::BadRequest, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/identities", |r| r.to(identities::list_credentials))
        .doc("List identities")
        .codes(READ),
    post("/api/v1/identities", |r| r.to(identities::create_identity))
        .doc("Create an identity (person, pipeline or line); the token is returned once")
        .created()
        .json(openapi::identity_body)
        .codes(&[
            Code::BadRequest, Code::BadTime, Code::NotFound, Code::Conflict, Code::Forbidden,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    post("/api/v1/identities/{id}/revoke", |r| r.to(identities::revoke_identity))
        .doc("Revoke an identity's token")
        .codes(&[
            Code::NotFound, Code::Conflict, Code::Forbidden, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    post("/api/v1/password", |r| r.to(identities::set_password))
        .doc("Set the caller's own console password (persons only; 12 to 256 bytes)")
        .json(openapi::password_body)
        .codes(&[
            Code::BadRequest, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError,
        ]),
    post("/api/v1/identities/{id}/unlock", |r| r.to(identities::unlock_identity))
        .doc("Unlock a locked identity")
        .codes(&[
            Code::NotFound, Code::Forbidden, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError,
        ]),
    get("/api/v1/policies", |r| r.to(policies::list_policies))
        .doc("List policy versions")
        .codes(READ),
    post("/api/v1/policies", |r| r.to(policies::submit_policy))
        .doc("Submit a policy document (TOML, raw body); rejected with its line when invalid")
        .created()
        .raw("application/toml")
        .codes(&[
            Code::PolicyInvalid, Code::Forbidden, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/policies/active", |r| r.to(policies::get_active_policy))
        .doc("The policy in force: the active version, or the built-in bootstrap policy (version 0)")
        .codes(&[Code::Forbidden, Code::IntegrityFailure, Code::StorageError]),
    get("/api/v1/policies/{version}", |r| r.to(policies::get_policy))
        .doc("One policy version (0: the built-in bootstrap policy)")
        .codes(&[Code::NotFound, Code::Forbidden, Code::IntegrityFailure, Code::StorageError]),
    post("/api/v1/policies/{version}/activate", |r| r.to(policies::activate_policy))
        .doc("Activate a version (202 with an approval request under a quorum)")
        .codes(&[
            Code::NotFound, Code::PolicyInvalid, Code::Forbidden, Code::Conflict,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/ca", |r| r.to(ca_routes::list_cas))
        .doc("List the CAs")
        .codes(READ),
    post("/api/v1/ca", |r| r.to(ca_routes::create_ca))
        .doc("Create a root (no parent) or intermediate CA; 202 with an approval request under a quorum, then again with \"approval\"")
        .created()
        .json(openapi::ca_body)
        .codes(&[
            Code::BadRequest, Code::BadValidity, Code::UnknownAlgorithm, Code::NotFound,
            Code::Conflict, Code::KeyExists, Code::Forbidden, Code::IntegrityFailure,
            Code::AuditIntegrityFailure, Code::PreIssuanceCheckFailed, Code::StorageError,
            Code::CryptoError,
        ]),
    get("/api/v1/ca/{ca}", |r| r.to(ca_routes::get_ca))
        .doc("One CA with its certificate and chain (PEM)")
        .codes(&[Code::NotFound, Code::Forbidden, Code::StorageError]),
    post("/api/v1/ca/{ca}/revoke", |r| r.to(ca_routes::revoke_ca))
        .doc("Revoke a CA (quorum-gated)")
        .json(openapi::revoke_body)
        .codes(&[
            Code::BadReason, Code::Forbidden, Code::NotFound, Code::Conflict,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
            Code::CryptoError,
        ]),
    get("/api/v1/ca/{ca}/certificates", |r| r.to(ca_routes::certificates::list_certificates))
        .doc("Certificates a CA issued, newest first: ?limit= (default 100), and ?before= the previous page's \"next\" (the serial of its last certificate) for the page after it")
        .query(&[("limit", "integer"), ("before", "string")])
        .codes(&[Code::NotFound, Code::Forbidden, Code::BadRequest, Code::StorageError]),
    post("/api/v1/ca/{ca}/profiles/{profile}/issue", |r| r.to(ca_routes::issuance::issue))
        .doc("Issue one certificate: the body is a CSR (PEM or DER) or {\"csr\", \"validity_days\", \"override_serial_in_use\"} (the override: officers only, audited); a device serial number with a live certificate for another key is 409 serial_in_use; Accept: application/pkix-cert for DER")
        .created()
        .raw("application/pkcs10")
        .query(&[("validity_days", "string"), ("override_serial_in_use", "boolean")])
        .codes(ISSUE),
    post("/api/v1/ca/{ca}/profiles/{profile}/issue-batch", |r| r.to(ca_routes::issuance::issue_batch))
        .doc("Issue many: one result per CSR, in order; one bad CSR fails only itself")
        .json(openapi::batch_body)
        .json_limit(ca_routes::issuance::BATCH_BODY_LIMIT)
        .codes(&[
            Code::BadBatch, Code::BadValidity, Code::Forbidden, Code::PolicyDenied, Code::NotFound,
            Code::SanNotAllowed,
            Code::UnknownProfile, Code::IntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/profiles", |r| r.to(ca_routes::profiles::list_profiles))
        .doc("Certificate profiles: the built-in ones and your partition's own (with who set them, when, and the audit record)")
        .codes(&[Code::Forbidden, Code::StorageError, Code::AuditIntegrityFailure, Code::IntegrityFailure]),
    post("/api/v1/profiles", |r| r.to(ca_routes::profiles::set_profile))
        .doc("Add a profile, or replace your partition's custom profile of that name (officers; built-in names are refused); 201 added, 200 replaced, 202 with an approval request under a quorum, then again with \"approval\"")
        .created()
        .json(openapi::profile_body)
        .codes(&[
            Code::BadRequest, Code::BadJson, Code::Forbidden, Code::Conflict,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
    get("/api/v1/profiles/{name}", |r| r.to(ca_routes::profiles::get_profile))
        .doc("One profile's spec")
        .codes(&[Code::UnknownProfile, Code::Forbidden, Code::IntegrityFailure, Code::StorageError]),
    get("/api/v1/certificates/{serial}", |r| r.to(ca_routes::certificates::get_certificate))
        .doc("One issued certificate")
        .codes(&[Code::NotFound, Code::BadRequest, Code::Forbidden, Code::StorageError]),
    post("/api/v1/certificates/{serial}/revoke", |r| r.to(ca_routes::certificates::revoke_certificate))
        .doc("Revoke a certificate; its CA's CRL is regenerated before the answer")
        .json(openapi::revoke_body)
        .codes(&[
            Code::BadReason, Code::BadRequest, Code::NotFound, Code::Conflict, Code::Forbidden,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
            Code::CryptoError,
        ]),
    get("/api/v1/approvals", |r| r.to(approvals::list_approvals))
        .doc("List approval requests")
        .codes(READ),
    get("/api/v1/approvals/{id}", |r| r.to(approvals::get_approval))
        .doc("One approval request")
        .codes(&[Code::NotFound, Code::Forbidden, Code::StorageError]),
    post("/api/v1/approvals/{id}/approve", |r| r.to(approvals::approve))
        .doc("Approve (a named officer other than the requester)")
        .codes(&[
            Code::SelfApproval, Code::NotAnApprover, Code::Forbidden, Code::Conflict,
            Code::NotFound, Code::IntegrityFailure, Code::AuditIntegrityFailure,
            Code::StorageError,
        ]),
    post("/api/v1/approvals/{id}/reject", |r| r.to(approvals::reject))
        .doc("Reject, or withdraw your own request")
        .codes(&[
            Code::NotAnApprover, Code::Forbidden, Code::Conflict, Code::NotFound,
            Code::IntegrityFailure, Code::AuditIntegrityFailure, Code::StorageError,
        ]),
];

/// Register `routes` (those the plain-HTTP listener serves when `plain`): one resource per
/// path, in the order the paths first appear.
fn register(cfg: &mut web::ServiceConfig, plain: bool) {
    let mut paths: Vec<&'static str> = Vec::new();
    for e in ROUTES {
        if !paths.contains(&e.path) {
            paths.push(e.path);
        }
    }
    for path in paths {
        let mut res = resource(path);
        let mut any = false;
        for e in ROUTES.iter().filter(|e| e.path == path) {
            let handler = if plain { e.plain } else { Some(e.handler) };
            let Some(handler) = handler else { continue };
            if let Some(limit) = e.json_limit {
                res = res.app_data(json_config(limit));
            }
            res = res.route(handler(web::method(e.verb.method())));
            any = true;
        }
        if any {
            cfg.service(res);
        }
    }
}

fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        // Bearer-token API, so no cookie-borne CSRF to guard against; accepting bodies
        // without the header spares curl users a confusing 415.
        .content_type_required(false)
        .error_handler(errors::json_error)
}

/// The HTTPS listener: every route.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.app_data(json_config(JSON_LIMIT))
        .app_data(web::QueryConfig::default().error_handler(errors::query_error))
        .app_data(web::PathConfig::default().error_handler(errors::path_error));
    register(cfg, false);
    console::configure(cfg);
}

/// The plain-HTTP listener: CRLs, CA certificates, OCSP, the TSA and the log.
pub fn configure_plain(cfg: &mut web::ServiceConfig) {
    cfg.app_data(web::QueryConfig::default().error_handler(errors::query_error))
        .app_data(web::PathConfig::default().error_handler(errors::path_error));
    register(cfg, true);
}
