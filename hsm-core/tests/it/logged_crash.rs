//! Invariant 1 for signatures whose log entry names them (Sigstore's hashedrekord, through
//! `Hsm::sign_logged`): a signature is released only once its entry is durable with its counted
//! use. Signers run in child processes that are SIGKILLed mid-stream, on SQLite and
//! PostgreSQL; afterwards every released signature is in the transparency log, and logged
//! entries, counted uses and audited uses are the same number.

use kagi_testkit::store as common;

use common::{digest_of, init, TestStore, BACKENDS};
use kagi_hsm_core::{Algorithm, DigestAlg, KeySpec, RsaPadding, SignRequest};
use std::collections::BTreeSet;
use std::io::{BufRead, Write};

const KEY: &str = "release";

fn entry_for(sig: &[u8]) -> Vec<u8> {
    format!(r#"{{"kind":"test-logged","sig":"{}"}}"#, hex::encode(sig)).into_bytes()
}

/// Child process: sign from 8 threads until killed, appending each released signature (hex).
fn worker() {
    let (hsm, s) = common::worker_login();
    let file = std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(std::env::var("KAGI_OUT").unwrap())
            .unwrap(),
    );
    std::thread::scope(|scope| {
        for t in 0..8u64 {
            let (hsm, s, file) = (&hsm, &s, &file);
            scope.spawn(move || {
                for n in 0..5_000u64 {
                    let req = SignRequest {
                        digest_alg: Some(DigestAlg::Sha256),
                        digest: digest_of(t * 100_000 + n),
                        padding: RsaPadding::Pkcs1v15,
                    };
                    let mut entry = |sig: &[u8]| Ok(entry_for(sig));
                    let signed = hsm
                        .sign_op(
                            s,
                            kagi_hsm_core::SignOp {
                                quotas: &[],
                                audit: serde_json::json!({}),
                                staging: kagi_hsm_core::Staging::LogEntry(&mut entry),
                                ..kagi_hsm_core::SignOp::digest(KEY, &req)
                            },
                        )
                        .unwrap();
                    let mut f = file.lock().unwrap();
                    writeln!(f, "{}", hex::encode(&signed.signature)).unwrap();
                }
            });
        }
    });
}

#[test]
fn logged_worker_entry() {
    if std::env::var("KAGI_WORKER").is_ok() {
        worker();
    }
}

fn released(path: &std::path::Path) -> Vec<String> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        // A line cut short by SIGKILL is not a signature anyone received.
        .filter(|l| hex::decode(l).is_ok_and(|b| b.len() > 60))
        .collect()
}

#[test]
fn sigkill_during_logged_signing_keeps_released_signatures_logged_and_counted() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm
            .create_key(&i.admin, &KeySpec::new(KEY, Algorithm::EcP256))
            .unwrap();
        let all: BTreeSet<String> =
            common::sigkill_rounds(&store, &i, "logged_crash::logged_worker_entry", 5, released)
                .into_iter()
                .collect();
        let (hsm, s) = common::reopen(&store, &i.share, &i.token);
        let size = hsm.tlog_checkpoint(None).unwrap().unwrap().size;
        let mut logged = BTreeSet::new();
        for index in 0..size {
            let e = hsm.tlog_entry(index).unwrap();
            let v: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            if v["kind"] == "test-logged" {
                assert!(logged.insert(v["sig"].as_str().unwrap().to_string()));
            }
        }
        // Every signature a client received has its entry in the log.
        for sig in &all {
            assert!(
                logged.contains(sig),
                "{backend:?}: {sig} released but not logged"
            );
        }
        // Logged entries, counted uses and audited uses are one number.
        let mut audited = 0;
        let mut from = 0;
        loop {
            let page = hsm.audit_records(&s, from, 1000).unwrap();
            if page.is_empty() {
                break;
            }
            audited += page
                .iter()
                .filter(|e| e.action == "key.use" && e.outcome == "ok")
                .count();
            from = page.last().unwrap().seq + 1;
        }
        let key = hsm.key_info(&s, KEY).unwrap();
        eprintln!(
            "{backend:?}: {} released, {} logged, {} audited uses, usage count {}",
            all.len(),
            logged.len(),
            audited,
            key.usage_count
        );
        assert_eq!(logged.len() as i64, key.usage_count, "{backend:?}");
        assert_eq!(audited as i64, key.usage_count, "{backend:?}");
        assert!(logged.len() >= all.len());
        hsm.tlog_verify(&s).unwrap();
        hsm.audit_verify(&s).unwrap();
    }
}
