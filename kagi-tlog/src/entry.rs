//! The typed bodies kagi's log holds and signs, each with one encoding: RFC 8785 canonical
//! JSON ([`crate::canonical`]). Builders and verifiers both go through these types, so the
//! bytes a verifier rebuilds are the bytes the service hashed.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::canonical::canonical_json;
use crate::Error;

/// The `kind` of kagi's own signature entries.
pub const SIGNATURE_KIND: &str = "kagi.signature/v1";

/// kagi's log entry for one signature: which key (label, id, public-key hash) signed which
/// digest, for whom, when. The public key is named by its hash so the entry stays small and a
/// verifier holding the key (or certificate) can match it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// Unix seconds.
    pub time: i64,
    pub partition: String,
    /// The key's label; `(wrapped)` for a key the caller brought wrapped.
    pub key: String,
    /// The stored key's id; none for a wrapped key.
    pub key_id: Option<String>,
    /// The key's algorithm name (`ec-p256`, ...).
    pub algorithm: String,
    /// SHA-256 of the key's SubjectPublicKeyInfo (DER).
    pub public_key_sha256: [u8; 32],
    /// The digest's algorithm name (`sha256`, ...).
    pub digest_alg: String,
    pub digest: Vec<u8>,
    /// Who asked for the signature (the session's actor).
    pub identity: String,
    /// What the signature was for (`issue_certificate`, ...), when the caller said.
    pub purpose: Option<String>,
    /// The signature format (`raw`, `cms`, ...), when the caller said.
    pub format: Option<String>,
}

impl SignatureEntry {
    /// SHA-256 of a public key's SPKI (DER): the form [`SignatureEntry::public_key_sha256`]
    /// holds.
    pub fn public_key_hash(spki_der: &[u8]) -> [u8; 32] {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }

    /// The entry's canonical JSON bytes: what the log stores and hashes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut m = Map::new();
        m.insert("kind".into(), json!(SIGNATURE_KIND));
        m.insert("time".into(), json!(self.time));
        m.insert("partition".into(), json!(self.partition));
        m.insert("key".into(), json!(self.key));
        if let Some(id) = &self.key_id {
            m.insert("key_id".into(), json!(id));
        }
        m.insert("algorithm".into(), json!(self.algorithm));
        m.insert(
            "public_key_sha256".into(),
            json!(hex::encode(self.public_key_sha256)),
        );
        m.insert("digest_alg".into(), json!(self.digest_alg));
        m.insert("digest".into(), json!(hex::encode(&self.digest)));
        m.insert("identity".into(), json!(self.identity));
        if let Some(p) = &self.purpose {
            m.insert("purpose".into(), json!(p));
        }
        if let Some(f) = &self.format {
            m.insert("format".into(), json!(f));
        }
        canonical_json(&Value::Object(m)).into_bytes()
    }

    /// Read an entry back from a log body. Entries written before the canonical encoding
    /// (with `null` for an absent purpose or format) read the same.
    pub fn parse(body: &[u8]) -> Result<SignatureEntry, Error> {
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| Error::Malformed(format!("the log entry is not JSON: {e}")))?;
        if v["kind"] != SIGNATURE_KIND {
            return Err(Error::Malformed(format!(
                "the log entry is not a kagi signature entry (its kind is {}, not '{SIGNATURE_KIND}')",
                v["kind"]
            )));
        }
        let text = |name: &str| {
            v[name].as_str().map(str::to_string).ok_or_else(|| {
                Error::Malformed(format!("the signature entry has no '{name}' string"))
            })
        };
        let optional = |name: &str| v[name].as_str().map(str::to_string);
        let hex_field = |name: &str| {
            hex::decode(text(name)?)
                .map_err(|_| Error::Malformed(format!("the signature entry's '{name}' is not hex")))
        };
        let public_key_sha256 = hex_field("public_key_sha256")?.try_into().map_err(|_| {
            Error::Malformed("the signature entry's 'public_key_sha256' is not 32 bytes".into())
        })?;
        Ok(SignatureEntry {
            time: v["time"].as_i64().ok_or_else(|| {
                Error::Malformed("the signature entry has no integer 'time'".into())
            })?,
            partition: text("partition")?,
            key: text("key")?,
            key_id: optional("key_id"),
            algorithm: text("algorithm")?,
            public_key_sha256,
            digest_alg: text("digest_alg")?,
            digest: hex_field("digest")?,
            identity: text("identity")?,
            purpose: optional("purpose"),
            format: optional("format"),
        })
    }
}

/// The `kind` of the entry that anchors a batch's audit log state in the transparency log.
pub const AUDIT_CHECKPOINT_KIND: &str = "kagi.audit-checkpoint/v1";

/// One batch's audit log state, logged when kagi is witnessed: every batch appends one, so
/// every use (a certificate, a timestamp, a policy change, not only a signature) grows the
/// witnessed log, and a database restored to before that use has a log shorter than the
/// witnesses saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheckpointEntry {
    /// Unix seconds.
    pub time: i64,
    /// Records in the audit log after the batch.
    pub audit_size: i64,
    /// The audit log's RFC 9162 root at that size.
    pub audit_root: [u8; 32],
}

impl AuditCheckpointEntry {
    /// The entry's canonical JSON bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let v = json!({
            "kind": AUDIT_CHECKPOINT_KIND,
            "time": self.time,
            "audit_size": self.audit_size,
            "audit_root": hex::encode(self.audit_root),
        });
        canonical_json(&v).into_bytes()
    }

    /// Read an entry back from a log body.
    pub fn parse(body: &[u8]) -> Result<AuditCheckpointEntry, Error> {
        let bad = |why: &str| {
            Error::Malformed(format!(
                "the log entry is not a '{AUDIT_CHECKPOINT_KIND}' entry: {why}"
            ))
        };
        let v: Value = serde_json::from_slice(body).map_err(|_| bad("it is not JSON"))?;
        if v["kind"] != AUDIT_CHECKPOINT_KIND {
            return Err(bad("its kind differs"));
        }
        let audit_root = v["audit_root"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .and_then(|h| <[u8; 32]>::try_from(h).ok())
            .ok_or_else(|| bad("its 'audit_root' is not 32 bytes of hex"))?;
        Ok(AuditCheckpointEntry {
            time: v["time"]
                .as_i64()
                .ok_or_else(|| bad("it has no integer 'time'"))?,
            audit_size: v["audit_size"]
                .as_i64()
                .ok_or_else(|| bad("it has no integer 'audit_size'"))?,
            audit_root,
        })
    }
}

/// Sigstore's hashedrekord 0.0.1 body, as Rekor v1 logs it: the artifact's SHA-256, the
/// signature, and the signer's certificate (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedRekord {
    pub digest_sha256: Vec<u8>,
    pub signature: Vec<u8>,
    pub certificate_pem: String,
}

impl HashedRekord {
    /// The body's canonical JSON bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let v = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hex::encode(&self.digest_sha256)}},
                "signature": {
                    "content": B64.encode(&self.signature),
                    "publicKey": {"content": B64.encode(self.certificate_pem.as_bytes())},
                },
            },
        });
        canonical_json(&v).into_bytes()
    }

    /// Read a hashedrekord 0.0.1 body with a SHA-256 digest (the only kind kagi makes).
    pub fn parse(body: &[u8]) -> Result<HashedRekord, Error> {
        let bad = |why: &str| {
            Error::Malformed(format!(
                "the log entry is not a hashedrekord 0.0.1 body with a SHA-256 digest: {why}"
            ))
        };
        let v: Value = serde_json::from_slice(body).map_err(|_| bad("it is not JSON"))?;
        if v["kind"] != "hashedrekord" || v["apiVersion"] != "0.0.1" {
            return Err(bad("its kind or apiVersion differs"));
        }
        let spec = &v["spec"];
        if spec["data"]["hash"]["algorithm"] != "sha256" {
            return Err(bad("its hash algorithm is not sha256"));
        }
        let digest_sha256 = spec["data"]["hash"]["value"]
            .as_str()
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| bad("its hash value is not hex"))?;
        let signature = spec["signature"]["content"]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| bad("its signature is not base64"))?;
        let certificate_pem = spec["signature"]["publicKey"]["content"]
            .as_str()
            .and_then(|s| B64.decode(s).ok())
            .and_then(|p| String::from_utf8(p).ok())
            .ok_or_else(|| bad("its public key is not base64 of PEM text"))?;
        Ok(HashedRekord {
            digest_sha256,
            signature,
            certificate_pem,
        })
    }
}

/// What a Rekor v1 inclusion promise (signed entry timestamp) signs: the entry's body, its
/// integration time, the log's id and the entry's index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromiseBody<'a> {
    pub body: &'a [u8],
    /// Unix seconds.
    pub integrated_time: i64,
    /// SHA-256 of the log key's SPKI.
    pub log_id: &'a [u8],
    pub log_index: i64,
}

impl PromiseBody<'_> {
    /// The canonical JSON the log key signs.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let v = json!({
            "body": B64.encode(self.body),
            "integratedTime": self.integrated_time,
            "logID": hex::encode(self.log_id),
            "logIndex": self.log_index,
        });
        canonical_json(&v).into_bytes()
    }

    /// Whether `signature` is the log key's (raw Ed25519 `public_key`) over this body.
    pub fn verify(&self, public_key: &[u8], signature: &[u8]) -> bool {
        aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public_key)
            .verify(&self.canonical_bytes(), signature)
            .is_ok()
    }
}
