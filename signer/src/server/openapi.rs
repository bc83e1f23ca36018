//! The OpenAPI 3.1 description served at `/api/v1/openapi.json`, generated from the route table
//! (`routes.rs`): every route the service registers is here, with its access, its body, and for
//! each error status the codes (from the registry in `error_codes.rs`) it can answer with.
//!
//! Each operation lists its codes twice: `x-error-codes` (code → status, for tools) and, per
//! status, a response whose schema narrows the error shape's `code` to those codes.

use actix_web::HttpResponse;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

use super::error_codes::Code;
use super::routes::{Access, Body, Endpoint, ROUTES};

/// The error shape as a schema reference.
fn error_ref() -> Value {
    json!({ "$ref": "#/components/schemas/Error" })
}

/// One operation of the document.
fn operation(e: &Endpoint) -> Value {
    let mut responses = Map::new();
    responses.insert(
        e.ok.to_string(),
        json!({ "description": success_text(e.ok) }),
    );
    let codes = e.error_codes();
    let mut by_status: BTreeMap<u16, Vec<Code>> = BTreeMap::new();
    for c in &codes {
        by_status.entry(c.status().as_u16()).or_default().push(*c);
    }
    for (status, codes) in &by_status {
        let names: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
        let described: Vec<String> = codes
            .iter()
            .map(|c| format!("{}: {}", c.as_str(), c.meaning()))
            .collect();
        responses.insert(
            status.to_string(),
            json!({
                "description": described.join("; "),
                "content": { "application/json": { "schema": {
                    "allOf": [
                        error_ref(),
                        { "properties": { "error": { "properties": { "code": { "enum": names } } } } }
                    ]
                } } }
            }),
        );
    }
    let mut op = json!({
        "summary": e.summary,
        "operationId": operation_id(e),
        "responses": responses,
        "x-error-codes": codes.iter().map(|c| json!({ "code": c.as_str(), "status": c.status().as_u16() })).collect::<Vec<_>>(),
    });
    if e.on_plain_http() {
        op["x-plain-http"] = json!(true);
    }
    match e.access {
        Access::Public => op["security"] = json!([]),
        // An empty requirement makes the credential optional.
        Access::OptionalCredential => op["security"] = json!([{ "bearer": [] }, {}]),
        Access::Credential => {}
    }
    let mut parameters: Vec<Value> = e
        .path_params()
        .into_iter()
        .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    parameters.extend(
        e.query
            .iter()
            .map(|(name, ty)| json!({ "name": name, "in": "query", "required": false, "schema": { "type": ty } })),
    );
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    match e.body {
        Body::None => {}
        Body::Json(schema) => {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema() } }
            });
        }
        Body::Raw(media_type) => {
            op["requestBody"] = json!({
                "required": true,
                "content": { media_type: { "schema": { "type": "string" } } }
            });
        }
    }
    op
}

fn success_text(status: u16) -> &'static str {
    match status {
        201 => "created",
        _ => "success (202: accepted, waiting for approvals, where the summary says so)",
    }
}

/// A stable, unique id: the method and the path's words.
fn operation_id(e: &Endpoint) -> String {
    let words: Vec<String> = e
        .openapi_path()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    format!("{}_{}", e.verb.as_str(), words.join("_"))
}

pub fn document() -> Value {
    let mut paths = Map::new();
    for e in ROUTES {
        let item = paths
            .entry(e.openapi_path())
            .or_insert_with(|| Value::Object(Map::new()));
        item[e.verb.as_str()] = operation(e);
    }
    // Every code of the registry, each with its status and meaning.
    let error_code = json!({
        "type": "string",
        "oneOf": Code::ALL.iter().map(|c| json!({
            "const": c.as_str(),
            "description": format!("{}: {}", c.status().as_u16(), c.meaning()),
        })).collect::<Vec<_>>(),
    });
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "kagi",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Keys, signing and a CA on kagi's HSM core. Every error is {\"error\": {\"code\", \"message\"}}; each operation lists the codes it can answer (x-error-codes, and per status). JSON bodies are limited to 64 KiB (413 above)."
        },
        "security": [ { "bearer": [] } ],
        "paths": paths,
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

pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

// Request bodies, named by the route table.

pub(super) fn key_attrs() -> Value {
    json!({
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
            "verify_until": { "type": "string", "format": "date-time", "description": "RFC 3339: end of the verification period, no earlier than not_after" },
            "exportable_under_wrap": { "type": "boolean" },
            "trusted": { "type": "boolean" },
            "key_auth": { "type": "boolean", "description": "per-key authorization: every use needs the key's own password" },
            "key_password": { "type": "string", "description": "with key_auth: the key's password (or the Kagi-Key-Auth header)" },
            "limit_per": { "enum": ["name", "version"], "description": "what the usage limit counts once the key is rotated (default name)" }
        }
    })
}

pub(super) fn key_auth_change_body() -> Value {
    json!({ "type": "object", "required": ["new_key_password"], "additionalProperties": false, "properties": {
        "key_password": { "type": "string", "description": "the current password (or the Kagi-Key-Auth header)" },
        "new_key_password": { "type": "string" } } })
}

pub(super) fn import_body() -> Value {
    let mut body = key_attrs();
    body["required"] = json!(["name", "alg", "wrapped"]);
    body["properties"]["wrapped"] = json!({ "type": "string", "contentEncoding": "base64" });
    body
}

pub(super) fn password_body() -> Value {
    json!({ "type": "object", "required": ["password"], "additionalProperties": false, "properties": {
        "password": { "type": "string", "minLength": 12, "description": "the new console password" } } })
}

pub(super) fn unseal_body() -> Value {
    json!({ "type": "object", "required": ["share"], "properties": { "share": { "type": "string" } } })
}

pub(super) fn recover_body() -> Value {
    json!({ "type": "object", "required": ["shares", "credential"], "additionalProperties": false, "properties": {
        "shares": { "type": "array", "items": { "type": "string" } },
        "credential": { "type": "string", "description": "the administrator credential's name" },
        "new_token": { "type": "boolean", "description": "replace its secret; default: only unlock" } } })
}

pub(super) fn export_body() -> Value {
    json!({ "type": "object", "required": ["wrapping_key"], "properties": { "wrapping_key": { "type": "string" } } })
}

pub(super) fn certify_body() -> Value {
    json!({ "type": "object", "properties": {
        "subject": { "type": "string", "description": "RFC 4514" },
        "validity_days": { "type": ["integer", "string"] } } })
}

pub(super) fn sign_body() -> Value {
    json!({
        "type": "object",
        "required": ["digest"],
        "additionalProperties": false,
        "properties": {
            "key": { "type": "string", "description": "a key in the HSM (or wrapped_key and alg)" },
            "key_id": { "type": "string", "description": "with key: the key's id as the caller found it; a key of that name with another id answers 404 key_not_found" },
            "wrapped_key": { "type": "string", "description": "base64, wrapped to the partition's import key" },
            "alg": { "type": "string" },
            "digest": { "type": "string", "description": "hex" },
            "digest_alg": { "enum": ["sha256", "sha384", "sha512"], "description": "default: sha256 for every key type" },
            "padding": { "enum": ["pkcs1", "pss"] },
            "format": { "enum": ["raw", "cms", "sigstore"], "description": "sigstore: the answer also has bundle, identity and issuer" },
            "timestamp": { "type": "boolean", "description": "cms and sigstore: add an RFC 3161 timestamp" },
            "key_password": { "type": "string", "description": "the password of a key with per-key authorization (or the Kagi-Key-Auth header)" }
        }
    })
}

pub(super) fn credential_body() -> Value {
    json!({ "type": "object", "required": ["name", "roles"], "properties": {
        "name": { "type": "string" },
        "roles": { "type": "array", "items": { "enum": ["administrator", "officer", "user", "auditor"] } },
        "partition": { "type": "string" }
    } })
}

pub(super) fn partition_body() -> Value {
    json!({ "type": "object", "required": ["name"], "properties": { "name": { "type": "string" } } })
}

pub(super) fn usage_limit_body() -> Value {
    json!({ "type": "object", "required": ["usage_limit"], "properties": { "usage_limit": { "type": ["integer", "null"] } } })
}

pub(super) fn recover_rollback_body() -> Value {
    json!({ "type": "object", "required": ["reason"], "properties": { "reason": { "type": "string" } } })
}

pub(super) fn identity_body() -> Value {
    json!({ "type": "object", "required": ["name", "kind"], "properties": {
        "name": { "type": "string" },
        "kind": { "enum": ["person", "pipeline", "line"] },
        "roles": { "type": "array", "items": { "enum": ["administrator", "officer", "user", "auditor"] } },
        "expires_at": { "type": "string", "format": "date-time" },
        "partition": { "type": "string" }
    } })
}

pub(super) fn ca_body() -> Value {
    json!({ "type": "object", "required": ["name", "subject"], "properties": {
        "name": { "type": "string" }, "subject": { "type": "string", "description": "RFC 4514" },
        "alg": { "type": "string", "enum": ["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"] },
        "validity_days": { "type": "integer" }, "parent": { "type": "string" }, "approval": { "type": "string" } } })
}

pub(super) fn revoke_body() -> Value {
    json!({ "type": "object", "properties": { "reason": { "type": ["string", "integer"] }, "approval": { "type": "string" } } })
}

pub(super) fn profile_body() -> Value {
    json!({ "type": "object", "required": ["spec"], "properties": {
        "spec": { "type": "object", "description": "a profile spec: the fields of one [[profile]] table of ca/profiles/builtin.toml (name, description, key_types, key_usage, ekus, validity, subject rules, SAN allow-lists)" },
        "approval": { "type": "string", "description": "the approved request's id, under a quorum" } } })
}

pub(super) fn batch_body() -> Value {
    json!({ "type": "object", "required": ["csrs"], "properties": {
        "csrs": { "type": "array", "items": { "type": "string" }, "maxItems": 10000 },
        "validity_days": { "type": ["integer", "string"] } } })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document has exactly the table's operations, each with every code it declares and
    /// nothing else, so the running server's routes (registered from the same table) and the
    /// document cannot differ.
    #[test]
    fn every_route_is_documented_with_its_codes() {
        let doc = document();
        let mut documented = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (verb, op) in item.as_object().expect("path item") {
                documented += 1;
                let e = ROUTES
                    .iter()
                    .find(|e| e.openapi_path() == *path && e.verb.as_str() == verb)
                    .unwrap_or_else(|| panic!("{verb} {path} is documented but not in ROUTES"));
                let listed: Vec<&str> = op["x-error-codes"]
                    .as_array()
                    .expect("x-error-codes")
                    .iter()
                    .map(|c| c["code"].as_str().expect("code"))
                    .collect();
                let expected: Vec<&str> = e.error_codes().iter().map(|c| c.as_str()).collect();
                assert_eq!(listed, expected, "{verb} {path}");
                for c in e.error_codes() {
                    let status = c.status().as_u16().to_string();
                    let allowed = &op["responses"][&status]["content"]["application/json"]
                        ["schema"]["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"];
                    assert!(
                        allowed
                            .as_array()
                            .is_some_and(|a| a.contains(&json!(c.as_str()))),
                        "{verb} {path}: {} not under {status}",
                        c.as_str()
                    );
                }
            }
        }
        assert_eq!(documented, ROUTES.len(), "one operation per route");
    }
}
