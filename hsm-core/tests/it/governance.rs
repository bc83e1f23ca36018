//! Identities, policy versions, exact quotas and M-of-N approvals, on both backends.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;
use std::sync::Arc;

fn req(digest: Vec<u8>) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest,
        padding: RsaPadding::Pkcs1v15,
    }
}

fn identity(
    i: &Instance,
    name: &str,
    kind: IdentityKind,
    roles: &[Role],
    expires_at: Option<i64>,
) -> (CredentialInfo, String) {
    let (info, tok) = i
        .hsm
        .create_identity(
            &i.admin,
            &IdentitySpec {
                partition: None,
                name: name.into(),
                kind,
                roles: roles.to_vec(),
                expires_at,
                client_cert_sha256: None,
            },
            None,
        )
        .unwrap()
        .done()
        .expect("created at once: no quorum gates it");
    (info, tok.to_string())
}

/// alice, bob and carol: officers the 2-of-3 quorum names, logged in.
fn approvers(i: &Instance) -> Vec<(CredentialInfo, Session)> {
    ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let (info, t) = identity(
                i,
                n,
                IdentityKind::Person,
                &[Role::Officer, Role::User],
                None,
            );
            (info, i.hsm.login(&t).unwrap())
        })
        .collect()
}

fn quorum_2_of_3() -> QuorumRule {
    QuorumRule {
        approvers: vec!["alice".into(), "bob".into(), "carol".into()],
        required: 2,
        ttl_secs: 3600,
    }
}

#[test]
fn identities_expire_and_are_revoked() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (info, tok) = identity(
        &i,
        "ci-release",
        IdentityKind::Pipeline,
        &[Role::User],
        None,
    );
    let s = i.hsm.login(&tok).unwrap();
    assert_eq!(s.kind(), IdentityKind::Pipeline);
    assert_eq!(info.kind, IdentityKind::Pipeline);
    assert_eq!(
        i.hsm
            .create_identity(
                &i.admin,
                &IdentitySpec {
                    partition: None,
                    name: "ci-release".into(),
                    kind: IdentityKind::Line,
                    roles: vec![Role::User],
                    expires_at: None,
                    client_cert_sha256: None,
                },
                None
            )
            .unwrap_err()
            .code(),
        "conflict"
    );
    i.hsm.revoke_credential(&i.admin, &info.id).unwrap();
    assert_eq!(i.hsm.login(&tok).unwrap_err().code(), "credential_revoked");
    // The name is free again once revoked.
    identity(
        &i,
        "ci-release",
        IdentityKind::Pipeline,
        &[Role::User],
        None,
    );

    // Expiry has one-second resolution: leave a few seconds of margin on a loaded machine, then
    // wait until the expiry second has surely passed.
    let expires = now + 4;
    let (_, short) = identity(&i, "temp", IdentityKind::Line, &[Role::User], Some(expires));
    i.hsm.login(&short).unwrap();
    while (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64)
        <= expires
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The same process refuses it too, though it logged in moments ago (cached session).
    assert_eq!(
        i.hsm.login(&short).unwrap_err().code(),
        "credential_expired"
    );
    let (hsm2, _) = reopen(&store, &i.share, &i.token);
    assert_eq!(hsm2.login(&short).unwrap_err().code(), "credential_expired");
    assert_eq!(
        i.hsm
            .create_identity(
                &i.admin,
                &IdentitySpec {
                    partition: None,
                    name: "old".into(),
                    kind: IdentityKind::Line,
                    roles: vec![Role::User],
                    expires_at: Some(now - 1),
                    client_cert_sha256: None,
                },
                None
            )
            .unwrap_err()
            .code(),
        "bad_request"
    );
    // Refused logins are audited in aggregate, per source and window.
    i.hsm.flush_failed_logins(true).unwrap();
    let events = i.hsm.audit_records(&i.admin, 0, 1000).unwrap();
    assert!(events.iter().any(|e| e.action == "credential.revoke"));
    assert!(events
        .iter()
        .any(|e| e.action == "auth.failed_logins" && e.detail.contains("credential_revoked")));
}

#[test]
fn a_total_quota_is_exact_under_concurrency_and_across_restarts() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm
            .create_key(&i.admin, &KeySpec::new("fw", Algorithm::EcP256))
            .unwrap();
        let (_, tok) = identity(&i, "line-7", IdentityKind::Line, &[Role::User], None);
        let line = i.hsm.login(&tok).unwrap();
        let quota = [QuotaCharge {
            name: "line-7-devices".into(),
            total: Some(5),
            per_hour: None,
            per_day: None,
        }];
        let hsm = Arc::new(i.hsm.clone());
        let ok = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..32u64)
                .map(|n| {
                    let (hsm, line, quota) = (hsm.clone(), line.clone(), quota.clone());
                    sc.spawn(move || {
                        hsm.sign_op(
                            &line,
                            kagi_hsm_core::SignOp {
                                quotas: &quota,
                                audit: serde_json::json!({}),
                                ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(n)))
                            },
                        )
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let granted = ok.iter().filter(|r| r.is_ok()).count();
        assert_eq!(granted, 5, "{backend:?}");
        assert!(ok
            .iter()
            .filter_map(|r| r.as_ref().err())
            .all(|e| e.code() == "quota_exhausted"));
        // Refused uses were not counted against the key either.
        assert_eq!(i.hsm.key_info(&i.admin, "fw").unwrap().usage_count, 5);
        // Across a restart, and with the counter row put back to zero by someone.
        store.exec("UPDATE quota_counters SET used = 0");
        let (hsm2, _) = reopen(&store, &i.share, &i.token);
        let line2 = hsm2.login(&tok).unwrap();
        let e = hsm2
            .sign_op(
                &line2,
                kagi_hsm_core::SignOp {
                    quotas: &quota,
                    audit: serde_json::json!({}),
                    ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(99)))
                },
            )
            .unwrap_err();
        assert_eq!(e.code(), "quota_exhausted", "{backend:?}");
        assert_eq!(hsm2.quota_used("line-7-devices").unwrap(), 5);
        // A per-hour window counts too.
        let hourly = [QuotaCharge {
            name: "hourly".into(),
            total: None,
            per_hour: Some(2),
            per_day: Some(100),
        }];
        hsm2.sign_op(
            &line2,
            kagi_hsm_core::SignOp {
                quotas: &hourly,
                audit: serde_json::json!({}),
                ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(1)))
            },
        )
        .unwrap();
        hsm2.sign_op(
            &line2,
            kagi_hsm_core::SignOp {
                quotas: &hourly,
                audit: serde_json::json!({}),
                ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(2)))
            },
        )
        .unwrap();
        let e = hsm2
            .sign_op(
                &line2,
                kagi_hsm_core::SignOp {
                    quotas: &hourly,
                    audit: serde_json::json!({}),
                    ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(3)))
                },
            )
            .unwrap_err();
        assert!(e.to_string().contains("per hour"), "{e}");
        // Windows of past hours are pruned when a new one starts.
        store
            .exec("INSERT INTO quota_counters (name, window_id, used) VALUES ('hourly2', 'h1', 7)");
        let hourly2 = [QuotaCharge {
            name: "hourly2".into(),
            total: None,
            per_hour: Some(2),
            per_day: None,
        }];
        hsm2.sign_op(
            &line2,
            kagi_hsm_core::SignOp {
                quotas: &hourly2,
                audit: serde_json::json!({}),
                ..kagi_hsm_core::SignOp::digest("fw", &req(digest_of(4)))
            },
        )
        .unwrap();
        assert_eq!(
            store.exec("UPDATE quota_counters SET used = used WHERE name = 'hourly2'"),
            1,
            "only the current hour's row is left"
        );
        hsm2.audit_verify(&hsm2.login(&i.token).unwrap()).unwrap();
    }
}

#[test]
fn destroying_a_key_under_a_2_of_3_quorum() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let officers: Vec<Session> = approvers(&i).into_iter().map(|(_, s)| s).collect();
        let (alice, bob, carol) = (&officers[0], &officers[1], &officers[2]);
        // No policy yet: nothing is gated.
        i.hsm
            .create_key(alice, &KeySpec::new("scratch", Algorithm::EcP256))
            .unwrap();
        assert!(matches!(
            i.hsm.destroy_key(alice, "scratch").unwrap(),
            Gated::Done(())
        ));

        let p = i
            .hsm
            .submit_policy(alice, "rules = ''", Some(quorum_2_of_3()))
            .unwrap();
        assert!(matches!(
            i.hsm
                .activate_policy(alice, p.version, "first policy")
                .unwrap(),
            Gated::Done(_)
        ));
        assert_eq!(i.hsm.active_policy().unwrap().unwrap().version, p.version);

        i.hsm
            .create_key(alice, &KeySpec::new("release", Algorithm::EcP256))
            .unwrap();
        let Gated::Pending(request) = i.hsm.destroy_key(alice, "release").unwrap() else {
            panic!("not gated")
        };
        assert_eq!(request.required, 2);
        assert_eq!(
            i.hsm.approve(alice, &request.id).unwrap_err().code(),
            "self_approval"
        );
        assert_eq!(
            i.hsm.approve(&i.admin, &request.id).unwrap_err().code(),
            "not_an_approver"
        );
        let after_one = i.hsm.approve(bob, &request.id).unwrap();
        assert_eq!(after_one.status, "pending");
        assert_eq!(after_one.approved_by, vec!["bob"]);
        // Approving twice does not count twice.
        assert_eq!(
            i.hsm.approve(bob, &request.id).unwrap().approved_by,
            vec!["bob"]
        );
        i.hsm.sign(alice, "release", &req(digest_of(1))).unwrap();
        let done = i.hsm.approve(carol, &request.id).unwrap();
        assert_eq!(done.status, "executed");
        assert_eq!(
            i.hsm
                .sign(alice, "release", &req(digest_of(2)))
                .unwrap_err()
                .code(),
            "key_not_found"
        );
        assert_eq!(
            i.hsm.approve(carol, &request.id).unwrap_err().code(),
            "conflict"
        );

        // A forged approval row changes nothing: who approved comes from the audit log, and
        // what the request does is under its MAC.
        i.hsm
            .create_key(alice, &KeySpec::new("other", Algorithm::EcP256))
            .unwrap();
        let Gated::Pending(r2) = i.hsm.destroy_key(alice, "other").unwrap() else {
            panic!()
        };
        store.exec(&format!(
            "UPDATE approvals SET required = 1 WHERE id = '{}'",
            r2.id
        ));
        assert_eq!(
            i.hsm.approve(bob, &r2.id).unwrap_err().code(),
            "integrity_failure"
        );
        i.hsm.sign(alice, "other", &req(digest_of(3))).unwrap();

        // Raising a usage limit is gated; lowering is not.
        let mut lim = KeySpec::new("limited", Algorithm::EcP256);
        lim.usage_limit = Some(10);
        i.hsm.create_key(alice, &lim).unwrap();
        assert!(matches!(
            i.hsm.set_usage_limit(alice, "limited", Some(5)).unwrap(),
            Gated::Done(_)
        ));
        let Gated::Pending(r3) = i.hsm.set_usage_limit(alice, "limited", Some(50)).unwrap() else {
            panic!()
        };
        assert_eq!(
            i.hsm.key_info(alice, "limited").unwrap().usage_limit,
            Some(5)
        );
        i.hsm.approve(bob, &r3.id).unwrap();
        i.hsm.approve(carol, &r3.id).unwrap();
        assert_eq!(
            i.hsm.key_info(alice, "limited").unwrap().usage_limit,
            Some(50)
        );
        // The resealed key still loads in a fresh process.
        let (hsm2, _) = reopen(&store, &i.share, &i.token);
        hsm2.sign(
            &hsm2.login(&i.token).unwrap(),
            "limited",
            &req(digest_of(4)),
        )
        .unwrap();

        // Activating the next policy needs the quorum too; a rejected request stays undone.
        let p2 = i
            .hsm
            .submit_policy(alice, "rules = '' # v2", Some(quorum_2_of_3()))
            .unwrap();
        let Gated::Pending(r4) = i.hsm.activate_policy(alice, p2.version, "diff").unwrap() else {
            panic!()
        };
        assert_eq!(i.hsm.reject(bob, &r4.id).unwrap().status, "rejected");
        assert_eq!(i.hsm.approve(carol, &r4.id).unwrap_err().code(), "conflict");
        assert_eq!(i.hsm.active_policy_version().unwrap(), Some(p.version));
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}

#[test]
fn policy_documents_are_bound_to_their_mac_and_versions_only_move_forward() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let v1 = i
        .hsm
        .submit_policy(&i.admin, "rules = 'one'", None)
        .unwrap();
    let v2 = i
        .hsm
        .submit_policy(&i.admin, "rules = 'two'", None)
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert!(matches!(
        i.hsm.activate_policy(&i.admin, 2, "").unwrap(),
        Gated::Done(2)
    ));
    assert_eq!(
        i.hsm.activate_policy(&i.admin, 1, "").unwrap_err().code(),
        "conflict"
    );
    store.exec("UPDATE policies SET text = 'rules = ''evil''' WHERE version = 2");
    assert_eq!(
        i.hsm.active_policy().unwrap_err().code(),
        "integrity_failure"
    );
    store.exec("UPDATE policies SET text = 'rules = ''two''' WHERE version = 2");
    assert_eq!(
        i.hsm.active_policy().unwrap().unwrap().text,
        "rules = 'two'"
    );
    i.hsm.audit_verify(&i.admin).unwrap();
}

#[test]
fn approval_requests_expire() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (_, a) = identity(
        &i,
        "alice",
        IdentityKind::Person,
        &[Role::Officer, Role::User],
        None,
    );
    let (_, b) = identity(&i, "bob", IdentityKind::Person, &[Role::Officer], None);
    let (alice, bob) = (i.hsm.login(&a).unwrap(), i.hsm.login(&b).unwrap());
    let quorum = QuorumRule {
        approvers: vec!["alice".into(), "bob".into()],
        required: 1,
        ttl_secs: 1,
    };
    let p = i
        .hsm
        .submit_policy(&alice, "rules = ''", Some(quorum))
        .unwrap();
    i.hsm.activate_policy(&alice, p.version, "").unwrap();
    i.hsm
        .create_key(&alice, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let Gated::Pending(r) = i.hsm.destroy_key(&alice, "k").unwrap() else {
        panic!("not gated")
    };
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(i.hsm.approval(&bob, &r.id).unwrap().status, "expired");
    let e = i.hsm.approve(&bob, &r.id).unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("expired"), "{e}");
    i.hsm.sign(&alice, "k", &req(digest_of(1))).unwrap();
}

#[test]
fn a_wrapped_export_under_quorum_is_delivered_to_its_requester_once_approved() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let sessions: Vec<Session> = approvers(&i).into_iter().map(|(_, s)| s).collect();
    let (alice, bob, carol) = (&sessions[0], &sessions[1], &sessions[2]);
    let p = i
        .hsm
        .submit_policy(alice, "rules = ''", Some(quorum_2_of_3()))
        .unwrap();
    i.hsm.activate_policy(alice, p.version, "").unwrap();
    let mut exp = KeySpec::new("exp", Algorithm::EcP256);
    exp.exportable_under_wrap = true;
    i.hsm.create_key(alice, &exp).unwrap();
    let mut trusted = KeySpec::new("backup", Algorithm::Rsa2048);
    trusted.operations = vec![Operation::Wrap];
    trusted.trusted = true;
    i.hsm.create_key(alice, &trusted).unwrap();
    // What can never be exported is refused before anyone is asked.
    i.hsm
        .create_key(alice, &KeySpec::new("sealed-in", Algorithm::EcP256))
        .unwrap();
    assert_eq!(
        i.hsm
            .export_wrapped(alice, "sealed-in", "backup")
            .unwrap_err()
            .code(),
        "not_exportable"
    );

    let Gated::Pending(r) = i.hsm.export_wrapped(alice, "exp", "backup").unwrap() else {
        panic!("not gated")
    };
    i.hsm.approve(bob, &r.id).unwrap();
    assert!(i.hsm.approval(alice, &r.id).unwrap().wrapped_key.is_none());
    assert_eq!(i.hsm.approve(carol, &r.id).unwrap().status, "executed");
    let mine = i.hsm.approval(alice, &r.id).unwrap();
    assert!(mine.wrapped_key.as_ref().is_some_and(|w| w.len() > 300));
    // Only the requester sees it.
    assert!(i.hsm.approval(bob, &r.id).unwrap().wrapped_key.is_none());
    let events = i.hsm.audit_records(&i.admin, 0, 1000).unwrap();
    assert!(events
        .iter()
        .any(|e| e.action == "key.export_wrapped" && e.outcome == "ok"));
    i.hsm.audit_verify(&i.admin).unwrap();
}

#[test]
fn a_client_certificate_logs_in_as_its_identity() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let cert = b"a DER certificate stands here; only its SHA-256 matters to hsm-core".to_vec();
        let fp: [u8; 32] = DigestAlg::Sha256.hash(&cert).try_into().unwrap();
        let spec = IdentitySpec {
            partition: None,
            name: "line-9".into(),
            kind: IdentityKind::Line,
            roles: vec![Role::User],
            expires_at: None,
            client_cert_sha256: Some(fp),
        };
        let (info, _) = i
            .hsm
            .create_identity(&i.admin, &spec, None)
            .unwrap()
            .done()
            .unwrap();
        assert_eq!(
            info.client_cert_sha256.as_deref(),
            Some(hex::encode(fp).as_str())
        );
        let s = i.hsm.login_by_certificate(&cert).unwrap();
        assert_eq!((s.name(), s.kind()), ("line-9", IdentityKind::Line));
        assert_eq!(
            i.hsm
                .login_by_certificate(b"another certificate")
                .unwrap_err()
                .code(),
            "bad_credential"
        );
        let again = IdentitySpec {
            name: "line-10".into(),
            ..spec
        };
        assert_eq!(
            i.hsm
                .create_identity(&i.admin, &again, None)
                .unwrap_err()
                .code(),
            "conflict"
        );
        i.hsm.revoke_credential(&i.admin, &info.id).unwrap();
        let (hsm2, _) = reopen(&store, &i.share, &i.token);
        assert_eq!(
            hsm2.login_by_certificate(&cert).unwrap_err().code(),
            "bad_credential"
        );
    }
}

/// The attack that broke the quorum: one administrator revokes two approvers, re-creates
/// people under their names and approves with them. Approvers are bound by identity id when
/// the policy is activated, so the re-created names approve nothing; and under a quorum the
/// revocations and the new officers are themselves held as requests.
#[test]
fn one_administrator_cannot_satisfy_the_quorum_with_re_created_approvers() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let people = approvers(&i);
        let (alice, bob, carol) = (&people[0].1, &people[1].1, &people[2].1);
        let mut limited = KeySpec::new("limited", Algorithm::EcP256);
        limited.usage_limit = Some(3);
        i.hsm.create_key(alice, &limited).unwrap();
        let p = i
            .hsm
            .submit_policy(alice, "rules = ''", Some(quorum_2_of_3()))
            .unwrap();
        i.hsm.activate_policy(alice, p.version, "").unwrap();

        // The administrator asks to lift the limit: held for two approvers.
        let Gated::Pending(lift) = i.hsm.set_usage_limit(&i.admin, "limited", None).unwrap() else {
            panic!("lifting a limit under a quorum must wait for approvals")
        };

        // Revoking an approver, alone, is held as a request too.
        for victim in [&people[0].0, &people[1].0] {
            let held = i.hsm.revoke_identity(&i.admin, &victim.id, None).unwrap();
            assert!(
                matches!(held, Gated::Pending(_)),
                "revoking {} was not held",
                victim.name
            );
        }
        // So is a new officer.
        let spec = IdentitySpec {
            partition: None,
            name: "mallory".into(),
            kind: IdentityKind::Person,
            roles: vec![Role::Officer, Role::User],
            expires_at: None,
            client_cert_sha256: None,
        };
        assert!(matches!(
            i.hsm.create_identity(&i.admin, &spec, None).unwrap(),
            Gated::Pending(_)
        ));

        // Even when the quorum itself lets an approver go and a new person take the name,
        // the new 'carol' is someone else: no approver until a new policy version names her.
        let Gated::Pending(go) = i
            .hsm
            .revoke_identity(&i.admin, &people[2].0.id, None)
            .unwrap()
        else {
            panic!("revoking an approver must wait for approvals")
        };
        i.hsm.approve(alice, &go.id).unwrap();
        i.hsm.approve(bob, &go.id).unwrap();
        i.hsm
            .revoke_identity(&i.admin, &people[2].0.id, Some(&go.id))
            .unwrap()
            .done()
            .unwrap();
        assert_eq!(
            i.hsm.approve(carol, &lift.id).unwrap_err().code(),
            "credential_revoked"
        );
        // A new officer named carol, approved by the quorum as a new officer must be.
        let spec = IdentitySpec {
            partition: None,
            name: "carol".into(),
            kind: IdentityKind::Person,
            roles: vec![Role::Officer, Role::User],
            expires_at: None,
            client_cert_sha256: None,
        };
        let Gated::Pending(hire) = i.hsm.create_identity(&i.admin, &spec, None).unwrap() else {
            panic!("a new officer under a quorum must wait for approvals")
        };
        i.hsm.approve(alice, &hire.id).unwrap();
        i.hsm.approve(bob, &hire.id).unwrap();
        let (_, new_carol) = i
            .hsm
            .create_identity(&i.admin, &spec, Some(&hire.id))
            .unwrap()
            .done()
            .unwrap();
        let new_carol = i.hsm.login(&new_carol).unwrap();
        assert_eq!(
            i.hsm.approve(&new_carol, &lift.id).unwrap_err().code(),
            "not_an_approver"
        );
        // One real approval is not two.
        let after = i.hsm.approve(alice, &lift.id).unwrap();
        assert_eq!(after.status, "pending");
        assert_eq!(
            i.hsm.key_info(alice, "limited").unwrap().usage_limit,
            Some(3),
            "{backend:?}: the limit changed without a quorum"
        );
        // Every step is in the audit log.
        let events = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap();
        let requested = events
            .iter()
            .filter(|e| e.action == "approval.request")
            .count();
        assert!(
            requested >= 5,
            "{backend:?}: {requested} approval requests audited"
        );
        assert!(events
            .iter()
            .any(|e| e.action == "credential.revoke" && e.outcome == "ok"));
    }
}

/// An approver revoked after approving no longer counts: their approval is void.
#[test]
fn a_revoked_approvers_approval_is_void() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let people = approvers(&i);
    let (alice, bob, carol) = (&people[0].1, &people[1].1, &people[2].1);
    i.hsm
        .create_key(alice, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let p = i
        .hsm
        .submit_policy(alice, "rules = ''", Some(quorum_2_of_3()))
        .unwrap();
    i.hsm.activate_policy(alice, p.version, "").unwrap();
    let Gated::Pending(destroy) = i.hsm.destroy_key(alice, "k").unwrap() else {
        panic!("destroying under a quorum must wait")
    };
    i.hsm.approve(bob, &destroy.id).unwrap();
    // The quorum (alice and carol) lets bob go.
    let Gated::Pending(go) = i
        .hsm
        .revoke_identity(&i.admin, &people[1].0.id, None)
        .unwrap()
    else {
        panic!("revoking an approver must wait")
    };
    i.hsm.approve(alice, &go.id).unwrap();
    i.hsm.approve(carol, &go.id).unwrap();
    i.hsm
        .revoke_identity(&i.admin, &people[1].0.id, Some(&go.id))
        .unwrap();
    // carol's approval is the second one given, but bob's no longer counts.
    let after = i.hsm.approve(carol, &destroy.id).unwrap();
    assert_eq!(after.approved_by, vec!["carol"]);
    assert_eq!(after.status, "pending");
    i.hsm.sign(alice, "k", &req(digest_of(1))).unwrap();
}

/// A policy can't name an approver nobody is: activation binds names to live people.
#[test]
fn a_quorum_naming_nobody_is_refused_at_activation() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    identity(&i, "alice", IdentityKind::Person, &[Role::Officer], None);
    identity(&i, "bob", IdentityKind::Pipeline, &[Role::Officer], None);
    let p = i
        .hsm
        .submit_policy(&i.admin, "rules = ''", Some(quorum_2_of_3()))
        .unwrap();
    let e = i.hsm.activate_policy(&i.admin, p.version, "").unwrap_err();
    assert_eq!(e.code(), "conflict");
    assert!(e.to_string().contains("'bob'"), "{e}");
    assert!(i.hsm.active_policy().unwrap().is_none());
}
