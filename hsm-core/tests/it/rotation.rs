//! Key rotation (issue 17, acceptance 5): a new version under the same name signs, the old one
//! is deactivated and its signatures still verify with its own public key, and a usage limit of
//! 10 per name allows 10 signatures across both versions, not 20. Then the attackers: a
//! database writer zeroing counters or reviving the old row, an officer rotating what must not
//! be rotated, a user without the officer role. On both backends.

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

fn verifies(spki: &[u8], n: u64, sig: &[u8]) -> bool {
    verify_digest(
        Algorithm::EcP256,
        spki,
        DigestAlg::Sha256,
        &digest_of(n),
        RsaPadding::Pkcs1v15,
        sig,
    )
    .unwrap_or(false)
}

fn limited(label: &str, limit: i64) -> KeySpec {
    let mut spec = KeySpec::new(label, Algorithm::EcP256);
    spec.usage_limit = Some(limit);
    spec
}

fn second_process(store: &TestStore, share: &str, token: &str) -> (Hsm, Session) {
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    let s = hsm.login(token).unwrap();
    (hsm, s)
}

/// A rotation that needs no quorum: done at once.
fn rotate(h: &Hsm, s: &Session, label: &str) -> Result<KeyInfo> {
    h.rotate_key(s, label)
        .map(|g| g.done().expect("no quorum: the rotation is done at once"))
}

fn audit_of(h: &Hsm, s: &Session, action: &str) -> Vec<AuditEvent> {
    h.audit_records(s, 0, 10_000)
        .unwrap()
        .into_iter()
        .filter(|e| e.action == action && e.outcome == "ok")
        .collect()
}

#[test]
fn a_rotated_key_signs_with_its_new_version_and_ten_per_name_means_ten() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        let v1 = h.create_key(a, &limited("fw", 10)).unwrap();
        assert_eq!(v1.version, 1);
        let mut old_sigs = Vec::new();
        for n in 0..6 {
            let signed = h.sign_op(a, SignOp::digest("fw", &req(n))).unwrap();
            assert_eq!(signed.key_version, Some(1));
            old_sigs.push((n, signed.signature));
        }

        let v2 = rotate(h, a, "fw").unwrap();
        assert_eq!(v2.version, 2, "{backend:?}");
        assert_ne!(v2.id, v1.id);
        assert_ne!(v2.public_key_der, v1.public_key_der);
        assert_eq!(v2.usage_count, 6, "the name's count carries over");
        assert_eq!(v2.usage_limit, Some(10));
        assert!(v2.active && !v2.limit_per_version);

        // The name is the new version; the old one is deactivated and still verifies.
        let now = h.key_info(a, "fw").unwrap();
        assert_eq!((now.id.as_str(), now.version), (v2.id.as_str(), 2));
        let old = h.key_version_info(a, "fw", 1).unwrap();
        assert_eq!(old.id, v1.id);
        assert_eq!(old.state, KeyState::Deactivated);
        assert_eq!(old.lifecycle, Lifecycle::Deactivated);
        assert_eq!(old.public_key_der, v1.public_key_der);
        for (n, sig) in &old_sigs {
            assert!(verifies(&old.public_key_der, *n, sig));
            assert!(!verifies(&v2.public_key_der, *n, sig));
        }

        // Four more with version 2, then the limit of the name is reached: 10, not 20.
        for n in 6..10 {
            let signed = h.sign_op(a, SignOp::digest("fw", &req(n))).unwrap();
            assert_eq!(signed.key_version, Some(2));
            assert_eq!(signed.usage_count, n as i64 + 1);
            assert!(verifies(&v2.public_key_der, n, &signed.signature));
            assert!(!verifies(&v1.public_key_der, n, &signed.signature));
        }
        let e = h.sign(a, "fw", &req(10)).unwrap_err();
        assert_eq!(e.code(), "usage_limit_reached", "{backend:?}: {e}");

        // Lists show the name once, at its current version; the details list the earlier one.
        let listed: Vec<KeyInfo> = h
            .list_keys(a)
            .unwrap()
            .into_iter()
            .filter(|k| k.label == "fw")
            .collect();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].version, 2);
        let details = h.key_details(a, "fw").unwrap();
        assert_eq!(details.earlier_versions.len(), 1);
        assert_eq!(details.earlier_versions[0].id, v1.id);
        assert_eq!(details.earlier_versions[0].version, 1);
        assert_eq!(details.earlier_versions[0].state, KeyState::Deactivated);
        let usage: Vec<KeyUsage> = h
            .key_usage()
            .unwrap()
            .into_iter()
            .filter(|k| k.label == "fw")
            .collect();
        assert_eq!(usage.len(), 1, "one metrics series per name");
        assert_eq!(usage[0].uses, 10);

        // The log names it: one key.rotate record (old id, new id, version, the carried
        // count as the new id's floor), and every use names its version.
        let rot = audit_of(h, a, "key.rotate");
        assert_eq!(rot.len(), 1);
        assert_eq!(rot[0].key_id.as_deref(), Some(v2.id.as_str()));
        assert_eq!(rot[0].use_hi, Some(6));
        let d: serde_json::Value = serde_json::from_str(&rot[0].detail).unwrap();
        assert_eq!(d["old_id"], v1.id.as_str());
        assert_eq!(d["new_id"], v2.id.as_str());
        assert_eq!(d["version"], 2);
        let uses = audit_of(h, a, "key.use");
        assert_eq!(uses.len(), 10);
        for u in &uses {
            let d: serde_json::Value = serde_json::from_str(&u.detail).unwrap();
            let want = if u.key_id.as_deref() == Some(v1.id.as_str()) {
                1
            } else {
                2
            };
            assert_eq!(d["version"], want);
        }
        h.audit_verify(a).unwrap();

        // A restarted process sees the same: the name at version 2, 10 of 10 spent.
        let (b, s) = second_process(&store, &i.share, &i.token);
        assert_eq!(b.key_info(&s, "fw").unwrap().usage_count, 10);
        assert_eq!(
            b.sign(&s, "fw", &req(11)).unwrap_err().code(),
            "usage_limit_reached"
        );
    }
}

#[test]
fn a_per_version_limit_starts_each_version_at_zero() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        let mut spec = limited("batch", 3);
        spec.limit_per_version = true;
        assert!(h.create_key(a, &spec).unwrap().limit_per_version);
        for n in 0..3 {
            h.sign(a, "batch", &req(n)).unwrap();
        }
        assert_eq!(
            h.sign(a, "batch", &req(3)).unwrap_err().code(),
            "usage_limit_reached"
        );
        let v2 = rotate(h, a, "batch").unwrap();
        assert_eq!((v2.version, v2.usage_count), (2, 0), "{backend:?}");
        assert!(v2.limit_per_version);
        for n in 10..13 {
            h.sign(a, "batch", &req(n)).unwrap();
        }
        assert_eq!(
            h.sign(a, "batch", &req(13)).unwrap_err().code(),
            "usage_limit_reached"
        );
        // The choice is sealed: a database writer cannot turn a per-name key into per-version.
        h.create_key(a, &limited("strict", 2)).unwrap();
        store.exec("UPDATE keys SET limit_per_version = TRUE WHERE label = 'strict'");
        assert_eq!(
            h.sign(a, "strict", &req(1)).unwrap_err().code(),
            "key_integrity_failure"
        );
    }
}

#[test]
fn a_database_writer_cannot_reset_the_name_s_count_or_revive_the_old_version() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        h.create_key(a, &limited("fw", 10)).unwrap();
        for n in 0..5 {
            h.sign(a, "fw", &req(n)).unwrap();
        }
        store.exec("CREATE TABLE snap_keys AS SELECT * FROM keys WHERE label = 'fw'");
        rotate(h, a, "fw").unwrap();

        // Every counter zeroed before the new version has signed once: the key.rotate record
        // vouches for 5 on the new id, in a restarted process as well.
        store.exec("UPDATE keys SET usage_count = 0 WHERE label = 'fw'");
        let (b, s) = second_process(&store, &i.share, &i.token);
        assert_eq!(b.key_info(&s, "fw").unwrap().usage_count, 5);
        for n in 5..10 {
            b.sign(&s, "fw", &req(n)).unwrap();
        }
        assert_eq!(
            b.sign(&s, "fw", &req(10)).unwrap_err().code(),
            "usage_limit_reached",
            "{backend:?}"
        );
        drop(b);

        // The old row's state set back to active: the name still means version 2, and the old
        // row, made the name's newest by renumbering it, fails its seal.
        store.exec("UPDATE keys SET state = 'active' WHERE label = 'fw' AND version = 1");
        assert_eq!(h.key_info(a, "fw").unwrap().version, 2);
        store.exec("UPDATE keys SET version = 3 WHERE label = 'fw' AND version = 1");
        let e = h.sign(a, "fw", &req(20)).unwrap_err().code().to_string();
        assert!(
            ["key_integrity_failure", "key_deactivated"].contains(&e.as_str()),
            "{e}"
        );
        // The new version deleted and the old row restored whole from before the rotation (a
        // valid seal, active, count 5): the verified log's key.rotate retired it for good.
        store.exec("DELETE FROM keys WHERE label = 'fw'");
        store.exec("INSERT INTO keys SELECT * FROM snap_keys");
        let (b, s) = second_process(&store, &i.share, &i.token);
        for (hsm, sess) in [(h, a), (&b, &s)] {
            assert_eq!(
                hsm.sign(sess, "fw", &req(21)).unwrap_err().code(),
                "key_deactivated",
                "{backend:?}"
            );
            assert_eq!(
                hsm.key_info(sess, "fw").unwrap().state,
                KeyState::Deactivated
            );
            // Nor can an officer rotate from it again, or resume it.
            assert_eq!(
                rotate(hsm, sess, "fw").unwrap_err().code(),
                "key_state_transition"
            );
        }
        // Deleting the rotation's audit record breaks the log: the HSM fails closed.
        store.exec("DELETE FROM audit_records WHERE action = 'key.rotate'");
        let r = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let refused = r
            .unseal(&i.share)
            .and_then(|_| r.login(&i.token))
            .and_then(|s| r.sign(&s, "fw", &req(22)))
            .unwrap_err()
            .code()
            .to_string();
        assert!(refused.contains("integrity"), "{refused}");
    }
}

#[test]
fn rotation_is_an_officer_s_act_on_an_active_stored_key() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        for l in ["k", "susp", "deact", "leaked"] {
            h.create_key(a, &KeySpec::new(l, Algorithm::EcP256))
                .unwrap();
        }
        // A user (who may sign) cannot rotate.
        let (_, tok) = h.create_credential(a, "ci", &[Role::User]).unwrap();
        let user = h.login(&tok).unwrap();
        h.sign(&user, "k", &req(1)).unwrap();
        assert_eq!(rotate(h, &user, "k").unwrap_err().code(), "forbidden");
        assert_eq!(h.key_info(a, "k").unwrap().version, 1);

        // Suspended, deactivated, compromised: refused, nothing changed.
        h.suspend_key(a, "susp").unwrap();
        h.deactivate_key(a, "deact").unwrap();
        assert!(h
            .compromise_key(a, "leaked", "stolen laptop")
            .unwrap()
            .done()
            .is_some());
        for l in ["susp", "deact", "leaked"] {
            let e = rotate(h, a, l).unwrap_err();
            assert_eq!(e.code(), "key_state_transition", "{l}: {e}");
            assert_eq!(h.key_info(a, l).unwrap().version, 1);
        }
        // A key brought wrapped (imported): kagi cannot make its next version.
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        let import_spki = h.import_public_key(a).unwrap();
        let wrapped = wrap_for_import(&import_spki, kp.to_pkcs8v1().unwrap().as_ref()).unwrap();
        h.import_key(a, &KeySpec::new("byok", Algorithm::EcP256), &wrapped)
            .unwrap();
        let e = rotate(h, a, "byok").unwrap_err();
        assert!(
            e.code() == "bad_request" && e.to_string().contains("imported"),
            "{e}"
        );
        assert_eq!(
            rotate(h, a, "kagi-import-key").unwrap_err().code(),
            "bad_request"
        );
        assert_eq!(rotate(h, a, "nope").unwrap_err().code(), "key_not_found");
        // A CA's key is renewed by its CA, never rotated.
        h.create_ca_key(a, "test-root", Algorithm::EcP256).unwrap();
        let e = rotate(h, a, "ca.test-root").unwrap_err();
        assert!(
            e.code() == "bad_request" && e.to_string().contains("CA key"),
            "{e}"
        );
        // None of the refusals left a second row behind.
        assert!(audit_of(h, a, "key.rotate").is_empty(), "{backend:?}");

        // Rotating twice: version 3, both earlier versions deactivated; destroying the name
        // destroys every version, and the name can be used again.
        rotate(h, a, "k").unwrap();
        let v3 = rotate(h, a, "k").unwrap();
        assert_eq!(v3.version, 3);
        let d = h.key_details(a, "k").unwrap();
        assert_eq!(
            d.earlier_versions
                .iter()
                .map(|v| (v.version, v.state))
                .collect::<Vec<_>>(),
            vec![(2, KeyState::Deactivated), (1, KeyState::Deactivated)]
        );
        store.exec("CREATE TABLE snap_k AS SELECT * FROM keys WHERE label = 'k' AND version = 1");
        assert!(h.destroy_key(a, "k").unwrap().done().is_some());
        assert_eq!(h.key_info(a, "k").unwrap_err().code(), "key_not_found");
        // Version 1's row restored from a backup: the destroy record names it too.
        store.exec("DELETE FROM keys WHERE label = 'k' AND version = 1");
        store.exec("INSERT INTO keys SELECT * FROM snap_k");
        assert_eq!(
            h.sign(a, "k", &req(5)).unwrap_err().code(),
            "key_integrity_failure"
        );
        store.exec("DELETE FROM keys WHERE label = 'k' AND state <> 'destroyed'");
        assert_eq!(
            h.create_key(a, &KeySpec::new("k", Algorithm::EcP256))
                .unwrap()
                .version,
            1
        );
    }
}

/// Signers racing rotations: a limit of 10 per name still means 10 signatures in all, whatever
/// version each one used, and every rotation either happens whole or not at all.
#[test]
fn rotations_racing_signatures_never_exceed_the_name_s_limit() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        h.create_key(a, &limited("hot", 10)).unwrap();
        let signed = std::sync::atomic::AtomicI64::new(0);
        let rotated = std::sync::atomic::AtomicI64::new(0);
        std::thread::scope(|scope| {
            for t in 0..4u64 {
                let (signed, h, a) = (&signed, h.clone(), a.clone());
                scope.spawn(move || {
                    for n in 0..200u64 {
                        match h.sign(&a, "hot", &req(t * 1000 + n)) {
                            Ok(_) => {
                                signed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Err(e) if e.code() == "usage_limit_reached" => return,
                            // A use that met a rotation is refused whole, never counted.
                            Err(e) => assert!(
                                [
                                    "key_not_active",
                                    "key_deactivated",
                                    "key_not_found",
                                    "storage_error"
                                ]
                                .contains(&e.code()),
                                "{e}"
                            ),
                        }
                    }
                });
            }
            let (rotated, h, a) = (&rotated, h.clone(), a.clone());
            scope.spawn(move || {
                for _ in 0..200 {
                    if rotated.load(std::sync::atomic::Ordering::SeqCst) == 3 {
                        return;
                    }
                    match rotate(&h, &a, "hot") {
                        Ok(_) => {
                            rotated.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        Err(e) => {
                            assert!(["key_changed", "storage_error"].contains(&e.code()), "{e}")
                        }
                    }
                }
            });
        });
        let rotations = rotated.load(std::sync::atomic::Ordering::SeqCst);
        assert!(rotations >= 1, "{backend:?}: no rotation got through");
        assert_eq!(
            signed.load(std::sync::atomic::Ordering::SeqCst),
            10,
            "{backend:?}"
        );
        let info = h.key_details(a, "hot").unwrap();
        assert_eq!(info.version, 1 + rotations);
        assert_eq!(info.usage_count, 10);
        assert_eq!(info.earlier_versions.len() as i64, rotations);
        assert!(info
            .earlier_versions
            .iter()
            .all(|v| v.state == KeyState::Deactivated));
        assert_eq!(
            h.sign(a, "hot", &req(99_999)).unwrap_err().code(),
            "usage_limit_reached"
        );
        // Every use in the log: 10 signatures, each under the version that made it.
        assert_eq!(audit_of(h, a, "key.use").len(), 10);
        assert_eq!(audit_of(h, a, "key.rotate").len() as i64, rotations);
    }
}

/// A lone officer cannot buy fresh uses by rotating: with a quorum in the active policy, a key
/// whose limit counts per version is rotated only once the quorum approves (as raising its
/// limit would be); a per-name key, which carries its count, is rotated at once.
#[test]
fn a_per_version_rotation_waits_for_the_quorum() {
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
    let o = &officers[0];
    let mut spec = limited("batch", 2);
    spec.limit_per_version = true;
    h.create_key(o, &spec).unwrap();
    h.create_key(o, &limited("named", 2)).unwrap();
    for n in 0..2 {
        h.sign(o, "batch", &req(n)).unwrap();
        h.sign(o, "named", &req(n)).unwrap();
    }
    // Per name: at once, and still spent.
    assert_eq!(rotate(h, o, "named").unwrap().usage_count, 2);
    assert_eq!(
        h.sign(o, "named", &req(3)).unwrap_err().code(),
        "usage_limit_reached"
    );
    // Per version: a request, and nothing changes until two approvers say yes.
    let Gated::Pending(request) = h.rotate_key(o, "batch").unwrap() else {
        panic!("a per-version rotation under a quorum was not gated")
    };
    assert_eq!(h.key_info(o, "batch").unwrap().version, 1);
    assert_eq!(
        h.sign(o, "batch", &req(3)).unwrap_err().code(),
        "usage_limit_reached"
    );
    h.approve(&officers[1], &request.id).unwrap();
    assert_eq!(h.key_info(o, "batch").unwrap().version, 1, "one of two");
    h.approve(&officers[2], &request.id).unwrap();
    let v2 = h.key_info(o, "batch").unwrap();
    assert_eq!((v2.version, v2.usage_count), (2, 0));
    h.sign(o, "batch", &req(4)).unwrap();
    assert_eq!(audit_of(h, a, "key.rotate").len(), 2);
}

/// A key whose signing period ended is rotated into a new cryptoperiod of the same length,
/// starting now; the retired version's verification period moves with it for the new one.
#[test]
fn rotating_at_the_end_of_a_cryptoperiod_starts_the_next_one() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        let mut spec = KeySpec::new("period", Algorithm::EcP256);
        spec.not_after = Some(now() + 2);
        spec.verify_until = Some(now() + 600);
        let v1 = h.create_key(a, &spec).unwrap();
        h.sign(a, "period", &req(1)).unwrap();
        while now() <= v1.not_after.unwrap() {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        assert_eq!(
            h.sign(a, "period", &req(2)).unwrap_err().code(),
            "key_not_active"
        );
        let v2 = rotate(h, a, "period").unwrap();
        assert_eq!(v2.lifecycle, Lifecycle::Active, "{backend:?}");
        assert_eq!(
            v2.not_after.unwrap() - v2.created_at,
            v1.not_after.unwrap() - v1.created_at
        );
        assert_eq!(
            v2.verify_until.unwrap() - v2.created_at,
            v1.verify_until.unwrap() - v1.created_at
        );
        h.sign(a, "period", &req(3)).unwrap();
        assert_eq!(
            h.key_version_info(a, "period", 1).unwrap().state,
            KeyState::Deactivated
        );
    }
}
