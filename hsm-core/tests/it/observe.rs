//! What a front end reads and passes through for operators: the request's client in the audit
//! records of its session, the store ping, key usage, log sizes and the commit observer.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[test]
fn a_client_is_bounded_and_printable() {
    let long = "x".repeat(1000);
    let c = ClientInfo::new("203.0.113.9", Some(&format!("evil\x1b[2J\nline{long}")));
    let ua = c.user_agent().unwrap();
    assert_eq!(ua.chars().count(), ClientInfo::MAX_USER_AGENT);
    assert!(ua.starts_with("evil?[2J?line"), "{ua}");
    assert!(!ua.chars().any(char::is_control));
    assert_eq!(c.source(), "203.0.113.9");
    assert_eq!(ClientInfo::new("::1", Some("")).user_agent(), None);
    assert_eq!(
        ClientInfo::new(&"9".repeat(500), None).source().len(),
        ClientInfo::MAX_SOURCE
    );
}

#[derive(Default)]
struct Batches {
    batches: AtomicUsize,
    ops: AtomicUsize,
}

impl CommitObserver for Batches {
    fn batch_done(&self, ops: usize, _elapsed: Duration, committed: bool) {
        if committed {
            self.batches.fetch_add(1, Ordering::SeqCst);
            self.ops.fetch_add(ops, Ordering::SeqCst);
        }
    }
}

#[test]
fn a_sessions_records_name_its_client_and_the_log_still_verifies() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let seen = Arc::new(Batches::default());
        i.hsm.observe_commits(seen.clone());
        i.hsm.ping_store(Duration::from_secs(5)).unwrap();

        let session = i
            .admin
            .clone()
            .with_client(ClientInfo::new("198.51.100.7", Some("pipeline/2.1")));
        let mut spec = KeySpec::new("traced", Algorithm::EcP256);
        spec.usage_limit = Some(9);
        i.hsm.create_key(&session, &spec).unwrap();
        let d = Algorithm::EcP256.default_digest().hash(b"x");
        let req = SignRequest {
            digest_alg: None,
            digest: d,
            padding: RsaPadding::Pkcs1v15,
        };
        for _ in 0..3 {
            i.hsm.sign(&session, "traced", &req).unwrap();
        }
        // A session without a client adds nothing.
        i.hsm.sign(&i.admin, "traced", &req).unwrap();

        let records = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap();
        let with_client: Vec<&AuditEvent> = records
            .iter()
            .filter(|r| r.detail.contains("198.51.100.7"))
            .collect();
        // The key's creation and its three uses.
        assert_eq!(with_client.len(), 4, "{backend:?}");
        for r in &with_client {
            let d: serde_json::Value = serde_json::from_str(&r.detail).unwrap();
            assert_eq!(d["source"], "198.51.100.7");
            assert_eq!(d["user_agent"], "pipeline/2.1");
        }
        let uses = records.iter().filter(|r| r.action == "key.use").count();
        assert_eq!(uses, 4);
        i.hsm.audit_verify(&i.admin).unwrap();

        let usage = i.hsm.key_usage().unwrap();
        let traced = usage.iter().find(|k| k.label == "traced").unwrap();
        assert_eq!((traced.uses, traced.limit), (4, Some(9)));
        assert_eq!(traced.partition, "default");
        let sizes = i.hsm.log_sizes().unwrap();
        assert_eq!(sizes.audit, records.len() as i64);
        assert_eq!(sizes.transparency, 4);
        // Every operation since the observer was set went through some committed batch. The
        // committer tells the observer after it has answered the batch's callers, so the last
        // batch may reach it a moment after our last call returned: wait for it (a bound for
        // liveness, not a timing claim).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen.ops.load(Ordering::SeqCst) < 5 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen.batches.load(Ordering::SeqCst) >= 1);
        assert!(seen.ops.load(Ordering::SeqCst) >= 5);
    }
}
