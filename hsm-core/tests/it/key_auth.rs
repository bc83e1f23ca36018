//! Per-key authorization (issue 17): a key created with its own password signs only with it,
//! not for an administrator with every role; wrong passwords in a row refuse the key for a
//! growing delay that a restart, another process or a database writer does not shorten;
//! the password changes only with the old one. On both backends.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;
use std::time::Duration;

const RIGHT: &str = "correct horse battery";

fn req(n: u64) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest: digest_of(n),
        padding: RsaPadding::Pkcs1v15,
    }
}

fn with(s: &Session, password: &str) -> Session {
    s.clone().with_key_auth(KeyAuth::new(password).unwrap())
}

fn owned_key(i: &Instance, label: &str) -> KeyInfo {
    let spec = KeySpec {
        key_auth: true,
        ..KeySpec::new(label, Algorithm::EcP256)
    };
    i.hsm.create_key(&with(&i.admin, RIGHT), &spec).unwrap()
}

/// A second process on the same store, whose first lock after wrong passwords is `lock`.
fn process(store: &TestStore, share: &str, lock: Duration) -> Hsm {
    let mut cfg = HsmConfig::new(store.config.clone());
    cfg.key_auth_lock = lock;
    let hsm = Hsm::open(cfg).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    hsm
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> String {
    r.unwrap_err().code().to_string()
}

#[test]
fn the_owner_signs_with_the_password_and_nobody_signs_without_it() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        let info = owned_key(&i, "owned");
        assert!(info.key_auth);
        assert!(h.key_info(a, "owned").unwrap().key_auth);

        // Creating one without the password, or too short a password, is refused.
        let spec = KeySpec {
            key_auth: true,
            ..KeySpec::new("nopass", Algorithm::EcP256)
        };
        assert_eq!(code(h.create_key(a, &spec)), "bad_request");
        assert_eq!(code(h.create_key(&with(a, "short"), &spec)), "bad_request");
        let exportable = KeySpec {
            exportable_under_wrap: true,
            ..spec.clone()
        };
        assert_eq!(
            code(h.create_key(&with(a, RIGHT), &exportable)),
            "bad_request"
        );

        // The right password signs, and the signature verifies with the key's public key.
        let signed = h
            .sign_op(&with(a, RIGHT), SignOp::digest("owned", &req(1)))
            .unwrap();
        assert!(verify_digest(
            Algorithm::EcP256,
            &info.public_key_der,
            DigestAlg::Sha256,
            &digest_of(1),
            RsaPadding::Pkcs1v15,
            &signed.signature
        )
        .unwrap());
        assert!(h.verify(a, "owned", &req(1), &signed.signature).unwrap());

        // An administrator with every role: nothing without the password, nothing with a
        // wrong one.
        let (_, token) = h
            .create_credential(
                a,
                "everything",
                &[
                    Role::Administrator,
                    Role::Officer,
                    Role::User,
                    Role::Auditor,
                ],
            )
            .unwrap();
        let all = h.login(&token).unwrap();
        assert_eq!(code(h.sign(&all, "owned", &req(2))), "key_auth_required");
        assert_eq!(
            code(h.sign(&with(&all, "correct horse battery?"), "owned", &req(2))),
            "key_auth_wrong"
        );
        // A person without the user role cannot even try: no guess is counted for them.
        let (_, auditor) = h.create_credential(a, "auditor", &[Role::Auditor]).unwrap();
        let auditor = h.login(&auditor).unwrap();
        assert_eq!(
            code(h.sign(&with(&auditor, "guess guess"), "owned", &req(3))),
            "forbidden"
        );
        let failures = h
            .audit_records(a, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "key.auth_failed")
            .count();
        assert_eq!(failures, 1, "only the user's wrong password counted");
        // The right one still works, and starts the count again.
        h.sign(&with(&all, RIGHT), "owned", &req(4)).unwrap();
        let ok = h
            .audit_records(a, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "key.auth_ok")
            .count();
        assert_eq!(ok, 1);

        // A database writer who marks the key as an ordinary one gets a key that fails its
        // integrity check, not a key that signs without the password.
        store.exec("UPDATE keys SET key_auth = FALSE WHERE label = 'owned'");
        let (h2, s2) = reopen(&store, &i.share, &i.token);
        assert_eq!(
            code(h2.sign(&s2, "owned", &req(5))),
            "key_integrity_failure"
        );
        assert_eq!(
            code(h2.sign(&with(&s2, RIGHT), "owned", &req(5))),
            "key_integrity_failure"
        );
    }
}

#[test]
fn wrong_passwords_refuse_the_key_for_a_growing_delay_that_nothing_shortens() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        owned_key(&i, "owned");
        let h = process(&store, &i.share, Duration::from_secs(2));
        let s = h.login(&i.token).unwrap();
        let wrong = with(&s, "not the password");
        let right = with(&s, RIGHT);

        for n in 1..KEY_AUTH_ATTEMPTS {
            let e = h.sign(&wrong, "owned", &req(n.into())).unwrap_err();
            assert_eq!(e.code(), "key_auth_wrong", "{e}");
            assert!(
                e.to_string()
                    .contains(&format!("{} more wrong", KEY_AUTH_ATTEMPTS - n)),
                "{e}"
            );
        }
        let e = h.sign(&wrong, "owned", &req(9)).unwrap_err();
        assert_eq!(e.code(), "key_auth_locked", "{e}");
        // Locked: the right password waits too, in this process, in another one, and after
        // a restart (the count lives in the verified audit log).
        assert_eq!(code(h.sign(&right, "owned", &req(10))), "key_auth_locked");
        let other = process(&store, &i.share, Duration::from_secs(2));
        assert_eq!(
            code(other.sign(
                &with(&other.login(&i.token).unwrap(), RIGHT),
                "owned",
                &req(11)
            )),
            "key_auth_locked"
        );
        let (h3, s3) = reopen(&store, &i.share, &i.token);
        match h3.sign(&with(&s3, RIGHT), "owned", &req(12)).unwrap_err() {
            HsmError::KeyAuthLocked {
                retry_after_secs, ..
            } => assert!(retry_after_secs <= 2, "{retry_after_secs}"),
            e => panic!("{e}"),
        }

        // Once the delay is over the right password works.
        std::thread::sleep(Duration::from_millis(2_200));
        h.sign(&right, "owned", &req(13)).unwrap();

        // The next run of wrong passwords starts from zero; its lock is the first again...
        for _ in 1..KEY_AUTH_ATTEMPTS {
            assert_eq!(code(h.sign(&wrong, "owned", &req(14))), "key_auth_wrong");
        }
        match h.sign(&wrong, "owned", &req(15)).unwrap_err() {
            HsmError::KeyAuthLocked {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 2),
            e => panic!("{e}"),
        }
        // ...and a second lock in the same run lasts twice as long.
        std::thread::sleep(Duration::from_millis(2_200));
        for _ in 1..KEY_AUTH_ATTEMPTS {
            assert_eq!(code(h.sign(&wrong, "owned", &req(16))), "key_auth_wrong");
        }
        match h.sign(&wrong, "owned", &req(17)).unwrap_err() {
            HsmError::KeyAuthLocked {
                retry_after_secs, ..
            } => assert_eq!(retry_after_secs, 4),
            e => panic!("{e}"),
        }

        // A database writer who deletes the failure records to reset the count breaks the
        // log instead: kagi fails closed.
        store.exec("DELETE FROM audit_records WHERE action = 'key.auth_failed'");
        let r = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let refused = r
            .unseal(&i.share)
            .and_then(|_| r.login(&i.token))
            .and_then(|s| r.sign(&with(&s, RIGHT), "owned", &req(18)))
            .unwrap_err()
            .code()
            .to_string();
        assert!(refused.contains("integrity"), "{refused}");
    }
}

#[test]
fn the_password_changes_only_with_the_old_one() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (h, a) = (&i.hsm, &i.admin);
        owned_key(&i, "owned");
        let new = KeyAuth::new("a brand new passphrase").unwrap();

        assert_eq!(
            code(h.change_key_auth(a, "owned", &new)),
            "key_auth_required"
        );
        assert_eq!(
            code(h.change_key_auth(&with(a, "not the password"), "owned", &new)),
            "key_auth_wrong"
        );
        assert_eq!(
            code(h.change_key_auth(&with(a, RIGHT), "owned", &KeyAuth::new("short").unwrap())),
            "bad_request"
        );
        h.change_key_auth(&with(a, RIGHT), "owned", &new).unwrap();
        assert_eq!(
            code(h.sign(&with(a, RIGHT), "owned", &req(1))),
            "key_auth_wrong"
        );
        h.sign(&with(a, "a brand new passphrase"), "owned", &req(2))
            .unwrap();

        // A suspended key keeps its password layer through the state change.
        h.suspend_key(a, "owned").unwrap();
        h.resume_key(a, "owned").unwrap();
        h.sign(&with(a, "a brand new passphrase"), "owned", &req(3))
            .unwrap();

        // Its next version would need the owner's password: a rotation refuses it, and the key
        // still signs as before.
        assert_eq!(code(h.rotate_key(a, "owned")), "bad_request");
        h.sign(&with(a, "a brand new passphrase"), "owned", &req(4))
            .unwrap();

        // An ordinary key has no password to change.
        h.create_key(a, &KeySpec::new("plain", Algorithm::EcP256))
            .unwrap();
        assert_eq!(
            code(h.change_key_auth(&with(a, RIGHT), "plain", &new)),
            "bad_request"
        );
        let changes = h
            .audit_records(a, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "key.auth_change")
            .count();
        assert_eq!(changes, 1);
    }
}
