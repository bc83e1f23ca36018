//! Console passwords on both backends: a person sets their own, signs in with name and
//! password, and five wrong ones lock password sign-in (not the token) until the lock ends.

use kagi_hsm_core::{Hsm, HsmConfig, IdentityKind, IdentitySpec, Role};
use kagi_testkit::store::{init, TestStore, BACKENDS};
use std::time::Duration;

fn actions(hsm: &Hsm, admin: &kagi_hsm_core::Session, action: &str) -> usize {
    hsm.audit_records(admin, 0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

#[test]
fn a_person_sets_a_password_signs_in_and_five_wrong_ones_lock_it_for_a_while() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        // A process whose password lock is short, on the same store.
        let mut cfg = HsmConfig::new(store.config.clone());
        cfg.password_lock = Duration::from_secs(1);
        let hsm = Hsm::open(cfg).unwrap();
        assert!(hsm.unseal(&i.share).unwrap().unsealed);

        let (pat, pat_token) = i
            .hsm
            .create_credential(&i.admin, "pat", &[Role::Officer, Role::User])
            .unwrap();
        let pat_session = hsm.login(&pat_token).unwrap();
        let e = hsm.set_own_password(&pat_session, "short").unwrap_err();
        assert_eq!(e.code(), "bad_request");
        hsm.set_own_password(&pat_session, "pat's long passphrase")
            .unwrap();

        let s = hsm
            .login_password_from("pat", "pat's long passphrase", "192.0.2.1")
            .unwrap();
        assert_eq!(s.name(), "pat");
        assert_eq!(s.credential_id(), pat.id);
        assert!(s.has_role(Role::Officer));
        hsm.recheck_session(&s).unwrap();

        // Unknown names and wrong passwords get the same refusal.
        let e = hsm
            .login_password_from("nobody", "pat's long passphrase", "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "bad_credential");
        for _ in 0..4 {
            let e = hsm
                .login_password_from("pat", "wrong passphrase!", "192.0.2.1")
                .unwrap_err();
            assert_eq!(e.code(), "bad_credential");
        }
        let e = hsm
            .login_password_from("pat", "wrong passphrase!", "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "password_locked", "{e}");
        let e = hsm
            .login_password_from("pat", "pat's long passphrase", "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "password_locked");
        // The token is not locked, in this process or another.
        assert!(i.hsm.login(&pat_token).is_ok());
        assert_eq!(actions(&i.hsm, &i.admin, "auth.password_locked"), 1);
        // The lock ends by itself.
        let mut back = None;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            match hsm.login_password_from("pat", "pat's long passphrase", "192.0.2.1") {
                Ok(s) => {
                    back = Some(s);
                    break;
                }
                Err(e) => assert_eq!(e.code(), "password_locked"),
            }
        }
        assert!(back.is_some(), "the lock never ended");

        // Pipelines and lines have no console password.
        let spec = IdentitySpec {
            partition: None,
            name: "ci".into(),
            kind: IdentityKind::Pipeline,
            roles: vec![Role::User],
            expires_at: None,
            client_cert_sha256: None,
        };
        let ci_token = match i.hsm.create_identity(&i.admin, &spec, None).unwrap() {
            kagi_hsm_core::Gated::Done((_, t)) => t,
            kagi_hsm_core::Gated::Pending(_) => panic!("no quorum here"),
        };
        let ci = hsm.login(&ci_token).unwrap();
        let e = hsm
            .set_own_password(&ci, "a pipeline's passphrase")
            .unwrap_err();
        assert_eq!(e.code(), "bad_request");

        // A revoked person's sessions and password stop working.
        i.hsm.revoke_credential(&i.admin, &pat.id).unwrap();
        assert!(hsm.recheck_session(&s).is_err());
        let e = hsm
            .login_password_from("pat", "pat's long passphrase", "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "bad_credential");
        assert_eq!(actions(&i.hsm, &i.admin, "credential.password_set"), 1);
        assert_eq!(actions(&i.hsm, &i.admin, "auth.login_password"), 2);
    }
}
