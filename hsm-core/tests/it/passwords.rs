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
            .login_password_from("pat", "pat's long passphrase", None, "192.0.2.1")
            .unwrap();
        assert_eq!(s.name(), "pat");
        assert_eq!(s.credential_id(), pat.id);
        assert!(s.has_role(Role::Officer));
        hsm.recheck_session(&s).unwrap();

        // Unknown names and wrong passwords get the same refusal.
        let e = hsm
            .login_password_from("nobody", "pat's long passphrase", None, "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "bad_credential");
        for _ in 0..4 {
            let e = hsm
                .login_password_from("pat", "wrong passphrase!", None, "192.0.2.1")
                .unwrap_err();
            assert_eq!(e.code(), "bad_credential");
        }
        let e = hsm
            .login_password_from("pat", "wrong passphrase!", None, "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "password_locked", "{e}");
        let e = hsm
            .login_password_from("pat", "pat's long passphrase", None, "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "password_locked");
        // The token is not locked, in this process or another.
        assert!(i.hsm.login(&pat_token).is_ok());
        assert_eq!(actions(&i.hsm, &i.admin, "auth.password_locked"), 1);
        // The lock ends by itself.
        let mut back = None;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(100));
            match hsm.login_password_from("pat", "pat's long passphrase", None, "192.0.2.1") {
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
            .login_password_from("pat", "pat's long passphrase", None, "192.0.2.1")
            .unwrap_err();
        assert_eq!(e.code(), "bad_credential");
        assert_eq!(actions(&i.hsm, &i.admin, "credential.password_set"), 1);
        assert_eq!(actions(&i.hsm, &i.admin, "auth.login_password"), 2);
    }
}

#[test]
fn an_enrolled_authenticator_is_asked_for_and_each_code_is_good_once() {
    use kagi_hsm_core::totp;
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "tia", &[Role::Auditor])
            .unwrap();
        let tia = i.hsm.login(&token).unwrap();
        i.hsm
            .set_own_password(&tia, "tia's long passphrase")
            .unwrap();
        assert!(!i.hsm.totp_enrolled(&tia).unwrap());

        let secret: Vec<u8> = (1..=20).collect();
        let now = || {
            totp::step_at(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64,
            )
        };
        let code_at = |step: i64| format!("{:06}", totp::code(&secret, step as u64));
        // A code none of the accepted steps (now and one either side) shows.
        let wrong = (0..4u32)
            .map(|n| format!("{:06}", n))
            .find(|c| (now() - 1..=now() + 2).all(|s| *c != code_at(s)))
            .unwrap();
        let e = i.hsm.enrol_totp(&tia, &secret, &wrong, None).unwrap_err();
        assert_eq!(e.code(), "bad_request");
        assert!(i
            .hsm
            .enrol_totp(&tia, &secret[..10], &code_at(now()), None)
            .is_err());
        i.hsm
            .enrol_totp(&tia, &secret, &code_at(now()), None)
            .unwrap();
        assert!(i.hsm.totp_enrolled(&tia).unwrap());

        let login = |code: Option<&str>| {
            i.hsm
                .login_password_from("tia", "tia's long passphrase", code, "192.0.2.2")
        };
        assert_eq!(login(None).unwrap_err().code(), "totp_required");
        assert_eq!(login(Some("12345")).unwrap_err().code(), "bad_credential");
        // The code of the next step (clocks a little apart) is taken once; its reuse is not.
        let next = code_at(now() + 1);
        let s = login(Some(&next)).unwrap();
        assert_eq!(s.name(), "tia");
        assert_eq!(login(Some(&next)).unwrap_err().code(), "bad_credential");
        // A wrong password with the right code is still a wrong password.
        let e = i
            .hsm
            .login_password_from(
                "tia",
                "not the passphrase",
                Some(&code_at(now() + 1)),
                "192.0.2.2",
            )
            .unwrap_err();
        assert_eq!(e.code(), "bad_credential");
        // The token needs no code.
        assert!(i.hsm.login(&token).is_ok());
        assert_eq!(actions(&i.hsm, &i.admin, "credential.totp_enrolled"), 1);

        // The sealed secret is bound to its identity: moved to another, it does not open.
        let (_, other_token) = i
            .hsm
            .create_credential(&i.admin, "uma", &[Role::Auditor])
            .unwrap();
        let uma = i.hsm.login(&other_token).unwrap();
        i.hsm
            .set_own_password(&uma, "uma's long passphrase")
            .unwrap();
        store.exec(&format!(
            "INSERT INTO console_totp (credential_id, sealed_secret, enrolled_at, last_step) \
             SELECT '{}', sealed_secret, enrolled_at, 0 FROM console_totp WHERE credential_id = '{}'",
            uma.credential_id(),
            tia.credential_id()
        ));
        let e = i
            .hsm
            .login_password_from(
                "uma",
                "uma's long passphrase",
                Some(&code_at(now())),
                "192.0.2.2",
            )
            .unwrap_err();
        assert_eq!(e.code(), "integrity_failure", "{e}");
    }
}
