//! The typed entries encode to the bytes kagi already logs and signs, and read back.

use crate::entry::SIGNATURE_KIND;
use crate::*;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

#[test]
fn hashedrekord_bytes_are_the_ones_rekor_entries_were_written_with() {
    let digest = [0xabu8; 32];
    let signature = vec![0x30, 0x45, 0x02, 0x20, 0xff];
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let r = HashedRekord {
        digest_sha256: digest.to_vec(),
        signature: signature.clone(),
        certificate_pem: pem.into(),
    };
    // The hand-written layout signer/src/sigstore.rs used before this type existed.
    let before = format!(
        r#"{{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{{"data":{{"hash":{{"algorithm":"sha256","value":"{}"}}}},"signature":{{"content":"{}","publicKey":{{"content":"{}"}}}}}}}}"#,
        hex::encode(digest),
        B64.encode(&signature),
        B64.encode(pem.as_bytes())
    );
    assert_eq!(String::from_utf8(r.canonical_bytes()).unwrap(), before);
    assert_eq!(HashedRekord::parse(&r.canonical_bytes()).unwrap(), r);
    let other = before.replace("sha256", "sha512");
    assert!(HashedRekord::parse(other.as_bytes()).is_err());
    assert!(HashedRekord::parse(b"{}").is_err());
}

#[test]
fn promise_body_is_the_canonical_json_rekor_signs() {
    let body = br#"{"a":1}"#;
    let log_id = [7u8; 32];
    let p = PromiseBody {
        body,
        integrated_time: 1_700_000_123,
        log_id: &log_id,
        log_index: 42,
    };
    let before = format!(
        r#"{{"body":"{}","integratedTime":1700000123,"logID":"{}","logIndex":42}}"#,
        B64.encode(body),
        hex::encode(log_id)
    );
    assert_eq!(String::from_utf8(p.canonical_bytes()).unwrap(), before);
    let k = super::key();
    let sig = k.sign(&p.canonical_bytes());
    let pk = super::public(&k);
    assert!(p.verify(&pk, sig.as_ref()));
    let later = PromiseBody {
        integrated_time: 1_700_000_124,
        ..p.clone()
    };
    assert!(!later.verify(&pk, sig.as_ref()));
}

#[test]
fn signature_entries_are_canonical_and_read_back() {
    let e = SignatureEntry {
        time: 1_700_000_000,
        partition: "default".into(),
        key: "rel".into(),
        key_id: Some("k-1".into()),
        algorithm: "ec-p256".into(),
        public_key_sha256: SignatureEntry::public_key_hash(b"spki"),
        digest_alg: "sha256".into(),
        digest: vec![1, 2, 3],
        identity: "ci \"main\"".into(),
        purpose: None,
        format: Some("raw".into()),
    };
    let bytes = e.canonical_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert_eq!(
        text,
        format!(
            r#"{{"algorithm":"ec-p256","digest":"010203","digest_alg":"sha256","format":"raw","identity":"ci \"main\"","key":"rel","key_id":"k-1","kind":"{SIGNATURE_KIND}","partition":"default","public_key_sha256":"{}","time":1700000000}}"#,
            hex::encode(SignatureEntry::public_key_hash(b"spki"))
        )
    );
    assert_eq!(SignatureEntry::parse(&bytes).unwrap(), e);

    // An entry written before the typed encoding (json! with nulls, any key order) reads the
    // same, and a wrapped key's entry has no key id.
    let old = serde_json::json!({
        "kind": SIGNATURE_KIND, "time": 5, "partition": "p", "key": "(wrapped)",
        "algorithm": "ed25519", "public_key_sha256": hex::encode([9u8; 32]),
        "digest_alg": "sha256", "digest": "ff", "identity": "me",
        "purpose": null, "format": null,
    });
    let parsed = SignatureEntry::parse(old.to_string().as_bytes()).unwrap();
    assert_eq!(
        (parsed.key_id, parsed.purpose, parsed.format),
        (None, None, None)
    );
    assert_eq!(parsed.public_key_sha256, [9u8; 32]);

    assert!(SignatureEntry::parse(b"not json").is_err());
    let hashedrekord = br#"{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}}"#;
    let err = SignatureEntry::parse(hashedrekord).unwrap_err().to_string();
    assert!(err.contains("not a kagi signature entry"), "{err}");
}

#[test]
fn audit_checkpoint_entries_have_one_encoding_and_read_back() {
    let e = AuditCheckpointEntry {
        time: 1_700_000_000,
        audit_size: 42,
        audit_root: [7u8; 32],
    };
    let bytes = e.canonical_bytes();
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        format!(
            r#"{{"audit_root":"{}","audit_size":42,"kind":"kagi.audit-checkpoint/v1","time":1700000000}}"#,
            hex::encode([7u8; 32])
        )
    );
    assert_eq!(AuditCheckpointEntry::parse(&bytes).unwrap(), e);
    // Neither of the other kinds reads as an anchor, nor an anchor as a signature entry.
    assert!(SignatureEntry::parse(&bytes).is_err());
    let short = String::from_utf8(bytes)
        .unwrap()
        .replace(&hex::encode([7u8; 32]), "0707");
    assert!(AuditCheckpointEntry::parse(short.as_bytes()).is_err());
    assert!(AuditCheckpointEntry::parse(b"{}").is_err());
}
