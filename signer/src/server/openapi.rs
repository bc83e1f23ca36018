//! The OpenAPI 3.1 description served at `/api/v1/openapi.json`. Written by hand and kept short:
//! it lists every route, its auth and its error shape, so a client author knows where to look.

use actix_web::HttpResponse;
use serde_json::{json, Value};

use super::error_codes::Code;

fn op(summary: &str, auth: bool, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "responses": {
            ok: { "description": "success" },
            "default": {
                "description": "error",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            }
        }
    });
    if !auth {
        o["security"] = json!([]);
    }
    o
}

fn with_body(mut o: Value, schema: Value) -> Value {
    o["requestBody"] = json!({
        "required": true,
        "content": { "application/json": { "schema": schema } }
    });
    o
}

pub fn document() -> Value {
    let key_attrs = json!({
        "type": "object",
        "required": ["name", "alg"],
        "additionalProperties": false,
        "properties": {
            "name": { "type": "string" },
            "alg": { "enum": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519"] },
            "usage_limit": { "type": "integer", "minimum": 0 },
            "not_before": { "type": "string", "format": "date-time", "description": "RFC 3339" },
            "not_after": { "type": "string", "format": "date-time", "description": "RFC 3339" },
            "operations": { "type": "array", "items": { "enum": ["sign", "verify", "wrap"] } },
            "exportable_under_wrap": { "type": "boolean" },
            "trusted": { "type": "boolean" }
        }
    });
    // Every code of the registry, each with its status and meaning.
    let error_code = json!({
        "type": "string",
        "oneOf": Code::ALL.iter().map(|c| json!({
            "const": c.as_str(),
            "description": format!("{}: {}", c.status().as_u16(), c.meaning()),
        })).collect::<Vec<_>>(),
    });
    let mut import_body = key_attrs.clone();
    import_body["required"] = json!(["name", "alg", "wrapped"]);
    import_body["properties"]["wrapped"] = json!({ "type": "string", "contentEncoding": "base64" });

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kagi",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Keys and signing on kagi's HSM core. Every error is {\"error\": {\"code\", \"message\"}}; JSON bodies are limited to 64 KiB (413 above)."
        },
        "security": [ { "bearer": [] } ],
        "paths": {
            "/healthz": { "get": op("Liveness and seal state", false, "200") },
            "/readyz": { "get": op("Readiness: 503 while sealed or failed closed (integrity_failure), with the reason", false, "200") },
            "/metrics": { "get": op("Prometheus gauges: kagi_sealed, kagi_integrity_failure", false, "200") },
            "/ui": { "get": op("Web console", false, "200") },
            "/api/v1/openapi.json": { "get": op("This document", false, "200") },
            "/api/v1/sys/unseal": { "post": with_body(op("Submit one unseal share", false, "200"),
                json!({ "type": "object", "required": ["share"], "properties": { "share": { "type": "string" } } })) },
            "/api/v1/keys": {
                "get": op("List keys of the caller's partition", true, "200"),
                "post": with_body(op("Generate a key", true, "201"), key_attrs)
            },
            "/api/v1/keys/import-key": { "get": op("The partition's import wrapping public key (PEM)", true, "200") },
            "/api/v1/keys/import": { "post": with_body(op("Import a key wrapped with RSA-OAEP-SHA256 + AES-KWP to the import key", true, "201"), import_body) },
            "/api/v1/keys/{name}": {
                "get": op("Key attributes, usage count and limit", true, "200"),
                "delete": op("Destroy a key", true, "200")
            },
            "/api/v1/keys/{name}/public": { "get": op("Public key (PEM, application/x-pem-file)", true, "200") },
            "/api/v1/keys/{name}/export-wrapped": { "post": with_body(op("Export an exportable-under-wrap key wrapped to a trusted wrapping key", true, "200"),
                json!({ "type": "object", "required": ["wrapping_key"], "properties": { "wrapping_key": { "type": "string" } } })) },
            "/api/v1/sign": { "post": with_body(op("Sign a precomputed digest", true, "200"), json!({
                "type": "object",
                "required": ["digest"],
                "additionalProperties": false,
                "properties": {
                    "key": { "type": "string", "description": "a key in the HSM (or wrapped_key and alg)" },
                    "wrapped_key": { "type": "string", "description": "base64, wrapped to the partition's import key" },
                    "alg": { "type": "string" },
                    "digest": { "type": "string", "description": "hex" },
                    "digest_alg": { "enum": ["sha256", "sha384", "sha512"], "description": "default: sha256 for every key type" },
                    "padding": { "enum": ["pkcs1", "pss"] },
                    "format": { "enum": ["raw", "cms", "sigstore"], "description": "sigstore: the answer also has bundle, identity and issuer" },
                    "timestamp": { "type": "boolean", "description": "cms and sigstore: add an RFC 3161 timestamp" }
                }
            })) },
            "/api/v1/audit": { "get": {
                "summary": "Audit records from seq `from`, at most `limit` (max 10000)",
                "parameters": [
                    { "name": "from", "in": "query", "schema": { "type": "integer" } },
                    { "name": "limit", "in": "query", "schema": { "type": "integer" } }
                ],
                "responses": { "200": { "description": "success" } }
            } },
            "/api/v1/audit/verify": { "post": op("Recompute the audit Merkle tree and check checkpoints", true, "200") },
            "/api/v1/audit/checkpoint": { "get": op("Latest signed checkpoint", true, "200") },
            "/api/v1/credentials": {
                "get": op("List credentials", true, "200"),
                "post": with_body(op("Create a credential; the token is returned once", true, "201"),
                    json!({ "type": "object", "required": ["name", "roles"], "properties": {
                        "name": { "type": "string" },
                        "roles": { "type": "array", "items": { "enum": ["administrator", "officer", "user", "auditor"] } },
                        "partition": { "type": "string" }
                    } }))
            },
            "/api/v1/partitions": {
                "get": op("List partitions", true, "200"),
                "post": with_body(op("Create a partition", true, "201"),
                    json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } }))
            },
            "/api/v1/identities": {
                "get": op("List identities", true, "200"),
                "post": with_body(op("Create an identity (person, pipeline or line); the token is returned once", true, "201"),
                    json!({ "type": "object", "required": ["name", "kind"], "properties": {
                        "name": { "type": "string" },
                        "kind": { "enum": ["person", "pipeline", "line"] },
                        "roles": { "type": "array", "items": { "enum": ["administrator", "officer", "user", "auditor"] } },
                        "expires_at": { "type": "string", "format": "date-time" },
                        "partition": { "type": "string" }
                    } }))
            },
            "/api/v1/identities/{id}/revoke": { "post": op("Revoke an identity's token", true, "200") },
            "/api/v1/identities/{id}/unlock": { "post": op("Unlock a locked identity", true, "200") },
            "/api/v1/policies": {
                "get": op("List policy versions", true, "200"),
                "post": {
                    "summary": "Submit a policy document (TOML, raw body); rejected with its line when invalid",
                    "requestBody": { "required": true, "content": { "application/toml": { "schema": { "type": "string" } } } },
                    "responses": op("", true, "201")["responses"].clone()
                }
            },
            "/api/v1/policies/{version}": { "get": op("One policy version (0: the built-in bootstrap policy)", true, "200") },
            "/api/v1/policies/{version}/activate": { "post": op("Activate a version (202 with an approval request under a quorum)", true, "200") },
            "/api/v1/approvals": { "get": op("List approval requests", true, "200") },
            "/api/v1/approvals/{id}": { "get": op("One approval request", true, "200") },
            "/api/v1/approvals/{id}/approve": { "post": op("Approve (a named officer other than the requester)", true, "200") },
            "/api/v1/approvals/{id}/reject": { "post": op("Reject, or withdraw your own request", true, "200") },
            "/api/v1/keys/{name}/usage-limit": { "put": with_body(op("Change a key's usage limit (202 pending when raising under a quorum)", true, "200"),
                json!({ "type": "object", "required": ["usage_limit"], "properties": { "usage_limit": { "type": ["integer", "null"] } } })) }
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": { "error": {
                        "type": "object",
                        "required": ["code", "message"],
                        "properties": { "code": error_code, "message": { "type": "string" } }
                    } }
                }
            }
        }
    })
}

/// The CA's routes (kept apart: one `json!` for everything exceeds the macro recursion limit).
fn ca_paths() -> serde_json::Value {
    let ca_body = json!({ "type": "object", "required": ["name", "subject"], "properties": {
        "name": { "type": "string" }, "subject": { "type": "string", "description": "RFC 4514" },
        "alg": { "type": "string", "enum": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"] },
        "validity_days": { "type": "integer" }, "parent": { "type": "string" }, "approval": { "type": "string" } } });
    let revoke_body = json!({ "type": "object", "properties": { "reason": { "type": ["string", "integer"] }, "approval": { "type": "string" } } });
    let batch_body = json!({ "type": "object", "required": ["csrs"], "properties": {
        "csrs": { "type": "array", "items": { "type": "string" }, "maxItems": 10000 },
        "validity_days": { "type": ["integer", "string"] } } });
    json!({
        "/api/v1/ca": {
            "get": op("List the CAs", true, "200"),
            "post": with_body(op("Create a root (no parent) or intermediate CA; 202 with an approval request under a quorum, then again with \"approval\"", true, "201"), ca_body)
        },
        "/api/v1/ca/{ca}": { "get": op("One CA with its certificate and chain (PEM)", true, "200") },
        "/api/v1/ca/{ca}/revoke": { "post": with_body(op("Revoke a CA (quorum-gated)", true, "200"), revoke_body.clone()) },
        "/api/v1/ca/{ca}/certificates": { "get": op("Certificates a CA issued, newest first (?limit=)", true, "200") },
        "/api/v1/ca/{ca}/profiles/{profile}/issue": { "post": op("Issue one certificate: the body is a CSR (PEM or DER) or {\"csr\", \"validity_days\", \"override_serial_in_use\"} (the override: officers only, audited); a device serial number with a live certificate for another key is 409 serial_in_use; Accept: application/pkix-cert for DER", true, "201") },
        "/api/v1/ca/{ca}/profiles/{profile}/issue-batch": { "post": with_body(op("Issue many: one result per CSR, in order", true, "200"), batch_body) },
        "/api/v1/profiles": { "get": op("Certificate profiles", true, "200") },
        "/api/v1/certificates/{serial}": { "get": op("One issued certificate", true, "200") },
        "/api/v1/certificates/{serial}/revoke": { "post": with_body(op("Revoke a certificate; its CA's CRL is regenerated before the answer", true, "200"), revoke_body) },
        "/crl/{ca}.crl": { "get": op("The CA's current CRL (DER; also on the plain-HTTP listener)", false, "200") },
        "/ca/{ca}.crt": { "get": op("The CA's certificate (DER)", false, "200") },
        "/ocsp": { "post": op("OCSP (RFC 6960), application/ocsp-request; GET /ocsp/{base64} too", false, "200") },
        "/.well-known/est/cacerts": { "get": op("EST CA certificates (base64 PKCS#7 certs-only)", false, "200") },
        "/.well-known/est/simpleenroll": { "post": op("EST enrollment: base64 PKCS#10 in, base64 PKCS#7 out; HTTP Basic (identity name, token) or TLS client certificate", false, "200") },
        "/.well-known/est/simplereenroll": { "post": op("EST re-enrollment of a subject this identity holds", false, "200") },
        "/tsa": { "post": op("RFC 3161 time-stamping: application/timestamp-query in, application/timestamp-reply out; a credential over HTTPS, or anonymous when the operator runs the open TSA (open_tsa)", true, "200") },
        "/api/v1/sigstore/trusted_root.json": { "get": op("The Sigstore trusted root: CA chain, log key, CT key, TSA chain", false, "200") },
        "/api/v1/sigstore/client_trust_config.json": { "get": op("The trusted root with a signing config, for sigstore --trust-config", false, "200") }
    })
}

/// Policy routes beyond the ones in [`document`] (one `json!` holds only so many).
fn policy_paths() -> serde_json::Value {
    json!({
        "/api/v1/policies/active": { "get": op("The policy in force: the active version, or the built-in bootstrap policy (version 0)", true, "200") }
    })
}

/// Signing keys' certificates and the transparency log.
fn log_paths() -> serde_json::Value {
    json!({
        "/api/v1/keys/{name}/certificate": {
            "get": op("A signing key's code-signing certificate and chain", true, "200"),
            "post": op("Certify a signing key (officer): {\"subject\"?, \"validity_days\"?}", true, "201")
        },
        "/log/checkpoint": { "get": op("The newest signed checkpoint (C2SP signed note), or ?size=N", false, "200") },
        "/log/key": { "get": op("The log's verifier key (C2SP)", false, "200") },
        "/log/entries/{index}": { "get": op("One log entry: index, time, body, leaf hash. An auditor reads any entry, another identity its own (404 otherwise); no credential unless the instance makes entries public (log_entries_public)", true, "200") },
        "/log/proof/inclusion": { "get": op("RFC 9162 inclusion proof: ?index=&size=", false, "200") },
        "/log/proof/consistency": { "get": op("RFC 9162 consistency proof: ?first=&second=", false, "200") },
        "/api/v1/log/verify": { "post": op("Recompute the whole log (auditor)", true, "200") }
    })
}

/// Break-glass recovery by the unseal-share holders.
fn recovery_paths() -> serde_json::Value {
    let body = json!({ "type": "object", "required": ["shares", "credential"], "additionalProperties": false, "properties": {
        "shares": { "type": "array", "items": { "type": "string" } },
        "credential": { "type": "string", "description": "the administrator credential's name" },
        "new_token": { "type": "boolean", "description": "replace its secret; default: only unlock" } } });
    json!({
        "/api/v1/sys/recover": { "post": with_body(op("Break-glass: a quorum of unseal shares unlocks an administrator credential or gives it a new token (returned once); refused shares are rate-limited per address", false, "200"), body) }
    })
}

pub async fn serve() -> HttpResponse {
    let mut doc = document();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for more in [ca_paths(), policy_paths(), log_paths(), recovery_paths()] {
            if let serde_json::Value::Object(m) = more {
                paths.extend(m);
            }
        }
    }
    HttpResponse::Ok().json(doc)
}
