//! SP 800-57 key states (issue 17): every allowed transition, every forbidden one refused, the
//! signing period, the quorum on a compromise, and a database writer who edits or restores a
//! key's row trying to bring a deactivated or compromised key back. On both backends.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;

fn req(n: u64) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest: digest_of(n),
        padding: RsaPadding::Pkcs1v15,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn second_process(store: &TestStore, share: &str) -> Hsm {
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    hsm
}

fn lifecycle(i: &Instance, label: &str) -> Lifecycle {
    i.hsm.key_info(&i.admin, label).unwrap().lifecycle
}

fn sign_code(i: &Instance, label: &str, n: u64) -> String {
    i.hsm
        .sign(&i.admin, label, &req(n))
        .unwrap_err()
        .code()
        .to_string()
}

fn refused(r: Result<impl std::fmt::Debug>) -> HsmError {
    let e = r.unwrap_err();
    assert_eq!(e.code(), "key_state_transition", "{e}");
    e
}

fn compromise(i: &Instance, label: &str) -> Result<Gated<KeyInfo>> {
    i.hsm
        .compromise_key(&i.admin, label, "the laptop was stolen")
}

#[test]
fn every_allowed_transition_works_and_every_forbidden_one_is_refused() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        for l in ["k", "direct", "susp", "later"] {
            let mut spec = KeySpec::new(l, Algorithm::EcP256);
            if l == "later" {
                spec.not_before = Some(now() + 3600);
            }
            h.create_key(a, &spec).unwrap();
        }

        // active -> suspended -> active -> suspended -> deactivated -> compromised -> destroyed
        let sig = h.sign(a, "k", &req(1)).unwrap();
        assert_eq!(lifecycle(&i, "k"), Lifecycle::Active);
        assert_eq!(
            h.suspend_key(a, "k").unwrap().lifecycle,
            Lifecycle::Suspended
        );
        assert_eq!(sign_code(&i, "k", 2), "key_suspended");
        assert_eq!(h.resume_key(a, "k").unwrap().lifecycle, Lifecycle::Active);
        h.sign(a, "k", &req(3)).unwrap();
        h.suspend_key(a, "k").unwrap();
        let info = h.deactivate_key(a, "k").unwrap();
        assert_eq!(info.state, KeyState::Deactivated);
        assert_eq!(info.lifecycle, Lifecycle::Deactivated);
        assert!(!info.active);
        assert_eq!(sign_code(&i, "k", 4), "key_deactivated");
        // Deactivated: verify only.
        assert!(h.verify(a, "k", &req(1), &sig).unwrap());
        // deactivated -> active (resume), -> suspended, -> deactivated: refused.
        let e = refused(h.resume_key(a, "k"));
        assert!(
            e.to_string().contains("is deactivated")
                && e.to_string().contains("compromised, destroyed"),
            "{e}"
        );
        refused(h.suspend_key(a, "k"));
        refused(h.deactivate_key(a, "k"));
        let Gated::Done(info) = compromise(&i, "k").unwrap() else {
            panic!("no quorum: done at once")
        };
        assert_eq!(info.lifecycle, Lifecycle::Compromised);
        assert_eq!(sign_code(&i, "k", 5), "key_compromised");
        // A compromised key's signatures prove nothing: it does not verify either.
        assert_eq!(
            h.verify(a, "k", &req(1), &sig).unwrap_err().code(),
            "key_compromised"
        );
        // compromised -> anything but destroyed: refused.
        let e = refused(h.resume_key(a, "k"));
        assert!(e.to_string().contains("only become destroyed"), "{e}");
        refused(h.suspend_key(a, "k"));
        refused(h.deactivate_key(a, "k"));
        refused(compromise(&i, "k"));
        assert!(matches!(h.destroy_key(a, "k").unwrap(), Gated::Done(())));
        assert_eq!(
            h.key_info(a, "k").unwrap_err().code(),
            "key_not_found",
            "destroyed: the material is gone"
        );

        // active -> deactivated -> destroyed; active -> compromised; suspended -> compromised.
        h.deactivate_key(a, "direct").unwrap();
        assert!(matches!(
            h.destroy_key(a, "direct").unwrap(),
            Gated::Done(())
        ));
        h.create_key(a, &KeySpec::new("direct", Algorithm::EcP256))
            .unwrap();
        assert!(compromise(&i, "direct").unwrap().done().is_some());
        assert_eq!(lifecycle(&i, "direct"), Lifecycle::Compromised);
        h.suspend_key(a, "susp").unwrap();
        assert!(compromise(&i, "susp").unwrap().done().is_some());
        assert_eq!(lifecycle(&i, "susp"), Lifecycle::Compromised);

        // pre-activation (before its signing period) signs nothing, and may be deactivated.
        assert_eq!(lifecycle(&i, "later"), Lifecycle::PreActivation);
        assert_eq!(sign_code(&i, "later", 6), "key_not_active");
        assert_eq!(
            h.deactivate_key(a, "later").unwrap().lifecycle,
            Lifecycle::Deactivated
        );

        // Only officers change a state, and a compromise says why.
        h.create_key(a, &KeySpec::new("other", Algorithm::EcP256))
            .unwrap();
        let (_, aud) = h
            .create_credential(a, "aud", &[Role::Auditor, Role::User])
            .unwrap();
        let aud = h.login(&aud).unwrap();
        assert_eq!(
            h.deactivate_key(&aud, "other").unwrap_err().code(),
            "forbidden"
        );
        assert_eq!(
            h.compromise_key(&aud, "other", "why").unwrap_err().code(),
            "forbidden"
        );
        assert_eq!(
            h.compromise_key(a, "other", "  ").unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(lifecycle(&i, "other"), Lifecycle::Active);

        let log = h.audit_records(a, 0, 10_000).unwrap();
        let count = |x: &str| log.iter().filter(|e| e.action == x).count();
        assert_eq!(count("key.deactivate"), 3, "{backend:?}");
        assert_eq!(count("key.compromise"), 3, "{backend:?}");
        let c = log.iter().find(|e| e.action == "key.compromise").unwrap();
        let detail: serde_json::Value = serde_json::from_str(&c.detail).unwrap();
        assert_eq!(detail["reason"], "the laptop was stolen");
        assert_eq!(detail["from"], "deactivated");
        h.audit_verify(a).unwrap();
    }
}

#[test]
fn a_database_writer_cannot_revive_a_deactivated_or_compromised_key() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        for l in ["old", "leaked"] {
            h.create_key(a, &KeySpec::new(l, Algorithm::EcP256))
                .unwrap();
            h.sign(a, l, &req(1)).unwrap();
        }
        store.exec("CREATE TABLE snap_keys AS SELECT * FROM keys WHERE label IN ('old', 'leaked')");
        h.deactivate_key(a, "old").unwrap();
        assert!(compromise(&i, "leaked").unwrap().done().is_some());

        // The state column flipped back: the seal binds the state, the key is refused.
        store.exec("UPDATE keys SET state = 'active' WHERE label IN ('old', 'leaked')");
        for (l, code) in [("old", "key_deactivated"), ("leaked", "key_compromised")] {
            let e = sign_code(&i, l, 2);
            assert!(["key_integrity_failure", code].contains(&e.as_str()), "{e}");
        }
        // The whole rows restored from before (a valid seal, state active): the verified
        // audit log remembers, in this process, another one and a restarted one.
        store.exec("DELETE FROM keys WHERE label IN ('old', 'leaked')");
        store.exec("INSERT INTO keys SELECT * FROM snap_keys");
        let b = second_process(&store, &i.share);
        for hsm in [h, &b] {
            let s = hsm.login(&i.token).unwrap();
            for (l, code, st) in [
                ("old", "key_deactivated", Lifecycle::Deactivated),
                ("leaked", "key_compromised", Lifecycle::Compromised),
            ] {
                assert_eq!(
                    hsm.sign(&s, l, &req(3)).unwrap_err().code(),
                    code,
                    "{backend:?}"
                );
                assert_eq!(hsm.key_info(&s, l).unwrap().lifecycle, st);
                assert!(!hsm.key_info(&s, l).unwrap().active);
                // And no officer can move it back either.
                assert_eq!(
                    hsm.resume_key(&s, l).unwrap_err().code(),
                    "key_state_transition"
                );
            }
            assert_eq!(
                hsm.deactivate_key(&s, "leaked").unwrap_err().code(),
                "key_state_transition"
            );
        }
        // Deleting the audit records is caught too: the log no longer verifies.
        store
            .exec("DELETE FROM audit_records WHERE action IN ('key.deactivate', 'key.compromise')");
        let r = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let refused = r
            .unseal(&i.share)
            .and_then(|_| r.login(&i.token))
            .and_then(|s| r.sign(&s, "old", &req(4)))
            .unwrap_err()
            .code()
            .to_string();
        assert!(
            refused.contains("integrity") || refused == "key_deactivated",
            "{refused}"
        );
    }
}

#[test]
fn past_its_signing_period_a_key_refuses_to_sign_and_still_verifies() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (h, a) = (&i.hsm, &i.admin);
    let mut spec = KeySpec::new("short", Algorithm::EcP256);
    spec.not_after = Some(now() + 2);
    h.create_key(a, &spec).unwrap();
    let sig = h.sign(a, "short", &req(1)).unwrap();
    while now() <= spec.not_after.unwrap() {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let e = h.sign(a, "short", &req(2)).unwrap_err();
    assert_eq!(e.code(), "key_not_active");
    assert!(e.to_string().contains("signing period ended"), "{e}");
    assert_eq!(lifecycle(&i, "short"), Lifecycle::Deactivated);
    assert!(h.verify(a, "short", &req(1), &sig).unwrap());
    assert!(!h.verify(a, "short", &req(2), &sig).unwrap());
}

#[test]
fn a_compromise_waits_for_the_quorum() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (h, a) = (&i.hsm, &i.admin);
    let officers: Vec<Session> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let spec = IdentitySpec {
                partition: None,
                name: n.to_string(),
                kind: IdentityKind::Person,
                roles: vec![Role::Officer, Role::User],
                expires_at: None,
                client_cert_sha256: None,
            };
            let (_, t) = h.create_identity(a, &spec, None).unwrap().done().unwrap();
            h.login(&t).unwrap()
        })
        .collect();
    let quorum = QuorumRule {
        approvers: vec!["alice".into(), "bob".into(), "carol".into()],
        required: 2,
        ttl_secs: 3600,
    };
    let p = h
        .submit_policy(&officers[0], "rules = ''", Some(quorum))
        .unwrap();
    assert!(h
        .activate_policy(&officers[0], p.version, "first")
        .unwrap()
        .done()
        .is_some());
    h.create_key(&officers[0], &KeySpec::new("rel", Algorithm::EcP256))
        .unwrap();
    let Gated::Pending(request) = h
        .compromise_key(&officers[0], "rel", "signed a bad build")
        .unwrap()
    else {
        panic!("not gated")
    };
    // Until approved, nothing changed.
    assert_eq!(
        h.key_info(&officers[0], "rel").unwrap().lifecycle,
        Lifecycle::Active
    );
    h.sign(&officers[0], "rel", &req(1)).unwrap();
    h.approve(&officers[1], &request.id).unwrap();
    assert_eq!(
        h.key_info(&officers[0], "rel").unwrap().lifecycle,
        Lifecycle::Active,
        "one approval of two"
    );
    h.approve(&officers[2], &request.id).unwrap();
    assert_eq!(
        h.key_info(&officers[0], "rel").unwrap().lifecycle,
        Lifecycle::Compromised
    );
    assert_eq!(
        h.sign(&officers[0], "rel", &req(2)).unwrap_err().code(),
        "key_compromised"
    );
}

#[test]
fn past_its_verification_period_a_key_verifies_nothing() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (h, a) = (&i.hsm, &i.admin);
    // The verification period cannot end before the signing period, nor without one.
    let mut bad = KeySpec::new("bad", Algorithm::EcP256);
    bad.verify_until = Some(now() + 10);
    assert_eq!(h.create_key(a, &bad).unwrap_err().code(), "bad_request");
    bad.not_after = Some(now() + 20);
    assert_eq!(h.create_key(a, &bad).unwrap_err().code(), "bad_request");

    let mut spec = KeySpec::new("brief", Algorithm::EcP256);
    spec.not_after = Some(now() + 1);
    spec.verify_until = Some(now() + 2);
    let info = h.create_key(a, &spec).unwrap();
    assert_eq!(info.verify_until, spec.verify_until);
    let sig = h.sign(a, "brief", &req(1)).unwrap();
    assert!(h.verify(a, "brief", &req(1), &sig).unwrap());
    while now() <= spec.verify_until.unwrap() {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    assert_eq!(
        h.verify(a, "brief", &req(1), &sig).unwrap_err().code(),
        "key_verification_period_over"
    );
    // The period is sealed with the key: a database writer who clears it breaks the seal.
    store.exec("UPDATE keys SET verify_until = NULL WHERE label = 'brief'");
    assert_eq!(
        h.verify(a, "brief", &req(1), &sig).unwrap_err().code(),
        "key_integrity_failure"
    );
}
