//! The console's state that must outlive a process and be shared by several: sign-in sessions
//! and the password lock, on both backends. Two `Hsm`s on one store stand for two kagi
//! processes; a third opened later for a restart. Then the database writer tries: deleting
//! the lock, forging or moving a session row, flipping a suspended key back to active.

use kagi_hsm_core::{
    Algorithm, Hsm, HsmConfig, KeySpec, KeyState, Role, RsaPadding, SessionLimits, SignRequest,
};
use kagi_testkit::store::{digest_of, init, TestStore, BACKENDS};
use std::time::Duration;

const LIMITS: SessionLimits = SessionLimits {
    idle: Duration::from_secs(1800),
    absolute: Duration::from_secs(8 * 3600),
};

fn second_process(store: &TestStore, share: &str) -> Hsm {
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    hsm
}

fn req(n: u64) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest: digest_of(n),
        padding: RsaPadding::Pkcs1v15,
    }
}

#[test]
fn guesses_spread_over_processes_lock_and_a_deleted_row_or_a_restart_does_not_unlock() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let b = second_process(&store, &i.share);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "pia", &[Role::Auditor])
            .unwrap();
        let pia = i.hsm.login(&token).unwrap();
        i.hsm
            .set_own_password(&pia, "pia's long passphrase")
            .unwrap();
        let wrong = |h: &Hsm| {
            h.login_password_from("pia", "not the passphrase", None, "192.0.2.9")
                .unwrap_err()
                .code()
        };
        // Three wrong here, two there: the fifth locks, wherever it lands.
        for _ in 0..3 {
            assert_eq!(wrong(&i.hsm), "bad_credential");
        }
        assert_eq!(wrong(&b), "bad_credential");
        assert_eq!(wrong(&b), "password_locked", "{backend:?}");
        let right = |h: &Hsm| {
            h.login_password_from("pia", "pia's long passphrase", None, "192.0.2.9")
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(right(&i.hsm), Err("password_locked"));
        assert_eq!(right(&b), Err("password_locked"));

        // The database writer deletes the count and the lock: the audit log still locks.
        assert_eq!(store.exec("DELETE FROM console_password_failures"), 1);
        assert_eq!(right(&i.hsm), Err("password_locked"), "{backend:?}");
        assert_eq!(right(&b), Err("password_locked"), "{backend:?}");
        // A restarted process knows the lock too, from the row or the log.
        drop(b);
        let c = second_process(&store, &i.share);
        assert_eq!(right(&c), Err("password_locked"), "{backend:?}");
        // A lock set far ahead by a database writer lasts no longer than a lock.
        store.exec(&format!(
            "INSERT INTO console_password_failures (credential_id, wrong, locked_until) \
             VALUES ('{}', 0, 99999999999999)",
            pia.credential_id()
        ));
        match c.login_password_from("pia", "pia's long passphrase", None, "192.0.2.9") {
            Err(kagi_hsm_core::HsmError::PasswordLocked {
                retry_after_secs, ..
            }) => assert!(retry_after_secs <= 15 * 60, "{retry_after_secs}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
        // The person (with their token) sets a new password: the lock ends everywhere.
        i.hsm
            .set_own_password(&pia, "pia's new long passphrase")
            .unwrap();
        let s = c
            .login_password_from("pia", "pia's new long passphrase", None, "192.0.2.9")
            .unwrap();
        assert_eq!(s.name(), "pia");
    }
}

#[test]
fn sessions_are_shared_kept_across_a_restart_and_cannot_be_forged_in_the_database() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let b = second_process(&store, &i.share);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "oli", &[Role::Auditor])
            .unwrap();
        let oli = i.hsm.login(&token).unwrap();
        let started = i.hsm.start_console_session(&oli, LIMITS).unwrap();
        assert_eq!(started.cookie.len(), 64);
        assert_ne!(started.cookie, started.csrf);

        // The other process finds it, with the same CSRF token.
        let found = b.console_session(&started.cookie, LIMITS).unwrap().unwrap();
        assert_eq!(found.session.name(), "oli");
        assert_eq!(found.csrf, started.csrf);
        assert!(b
            .console_session(&"0".repeat(64), LIMITS)
            .unwrap()
            .is_none());
        assert!(b.console_session("not hex", LIMITS).unwrap().is_none());

        // The row holds the cookie's SHA-256, never the cookie.
        assert_eq!(
            store.exec(&format!(
                "UPDATE console_sessions SET seen_at = seen_at WHERE id_hash = '{}'",
                hex_sha256(&started.cookie)
            )),
            1
        );
        assert_eq!(
            store.exec(&format!(
                "UPDATE console_sessions SET seen_at = seen_at WHERE id_hash = '{}' OR mac LIKE '%{}%'",
                started.cookie, started.cookie
            )),
            0
        );

        // A restart signs nobody out.
        drop(b);
        let r = second_process(&store, &i.share);
        let again = r.console_session(&started.cookie, LIMITS).unwrap().unwrap();
        assert_eq!(again.session.credential_id(), oli.credential_id());

        // The database writer moves the auditor's row to the administrator: refused, and gone.
        let forged = r.start_console_session(&oli, LIMITS).unwrap();
        store.exec(&format!(
            "UPDATE console_sessions SET credential_id = '{}' WHERE id_hash = '{}'",
            i.admin.credential_id(),
            hex_sha256(&forged.cookie)
        ));
        assert!(r.console_session(&forged.cookie, LIMITS).unwrap().is_none());
        assert!(i
            .hsm
            .console_session(&forged.cookie, LIMITS)
            .unwrap()
            .is_none());
        // ...or writes a row for a cookie of their own, copying a real row's MAC.
        let mine = "ab".repeat(32);
        store.exec(&format!(
            "INSERT INTO console_sessions (id_hash, credential_id, mac, created_at, seen_at) \
             SELECT '{}', credential_id, mac, created_at, seen_at FROM console_sessions WHERE id_hash = '{}'",
            hex_sha256(&mine),
            hex_sha256(&started.cookie)
        ));
        assert!(r.console_session(&mine, LIMITS).unwrap().is_none());
        // The real session still stands; deleting its row signs it out and does nothing else.
        assert!(r
            .console_session(&started.cookie, LIMITS)
            .unwrap()
            .is_some());
        store.exec("DELETE FROM console_sessions");
        assert!(r
            .console_session(&started.cookie, LIMITS)
            .unwrap()
            .is_none());

        // Sign-out and expiry delete the row.
        let s2 = r.start_console_session(&oli, LIMITS).unwrap();
        r.end_console_session(&s2.cookie).unwrap();
        assert!(i.hsm.console_session(&s2.cookie, LIMITS).unwrap().is_none());
        let s3 = r.start_console_session(&oli, LIMITS).unwrap();
        let expired = SessionLimits {
            idle: Duration::ZERO,
            absolute: LIMITS.absolute,
        };
        assert!(r.console_session(&s3.cookie, expired).unwrap().is_none());
        assert!(r.console_session(&s3.cookie, LIMITS).unwrap().is_none());
        assert_eq!(
            store.exec(&format!(
                "DELETE FROM console_sessions WHERE id_hash = '{}'",
                hex_sha256(&s3.cookie)
            )),
            0
        );
        // A revoked identity's sessions end.
        let s4 = r.start_console_session(&oli, LIMITS).unwrap();
        i.hsm
            .revoke_credential(&i.admin, oli.credential_id())
            .unwrap();
        assert!(r.console_session(&s4.cookie, LIMITS).unwrap().is_none());
    }
}

fn hex_sha256(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        s.as_bytes(),
    ))
}

#[test]
fn a_suspended_key_signs_nothing_anywhere_and_the_database_cannot_resume_it() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let b = second_process(&store, &i.share);
        let b_admin = b.login(&i.token).unwrap();
        i.hsm
            .create_key(&i.admin, &KeySpec::new("fw", Algorithm::EcP256))
            .unwrap();
        i.hsm.sign(&i.admin, "fw", &req(1)).unwrap();
        // The other process has the key cached.
        b.sign(&b_admin, "fw", &req(2)).unwrap();
        store.exec("CREATE TABLE snap_fw AS SELECT * FROM keys WHERE label = 'fw'");

        // Only officers suspend.
        let (_, aud) = i
            .hsm
            .create_credential(&i.admin, "aud", &[Role::Auditor, Role::User])
            .unwrap();
        let aud = i.hsm.login(&aud).unwrap();
        assert_eq!(
            i.hsm.suspend_key(&aud, "fw").unwrap_err().code(),
            "forbidden"
        );

        let info = i.hsm.suspend_key(&i.admin, "fw").unwrap();
        assert_eq!(info.state, KeyState::Suspended);
        assert!(!info.active);
        assert_eq!(
            i.hsm.suspend_key(&i.admin, "fw").unwrap_err().code(),
            "conflict"
        );
        assert_eq!(
            i.hsm.sign(&i.admin, "fw", &req(3)).unwrap_err().code(),
            "key_suspended"
        );
        // The process with the key cached refuses too (the row's generation moved on).
        assert_eq!(
            b.sign(&b_admin, "fw", &req(4)).unwrap_err().code(),
            "key_suspended",
            "{backend:?}"
        );
        assert_eq!(b.list_keys(&b_admin).unwrap()[0].state, KeyState::Suspended);

        // The database writer flips the state column: the seal binds it, the key is refused.
        store.exec("UPDATE keys SET state = 'active' WHERE label = 'fw'");
        let e = i.hsm.sign(&i.admin, "fw", &req(5)).unwrap_err();
        assert!(
            ["key_integrity_failure", "key_suspended"].contains(&e.code()),
            "{e}"
        );
        // ...or restores the whole row from before the suspension: the audit log remembers.
        store.exec("DELETE FROM keys WHERE label = 'fw'");
        store.exec("INSERT INTO keys SELECT * FROM snap_fw");
        for h in [&i.hsm, &b] {
            let s = h.login(&i.token).unwrap();
            assert_eq!(
                h.sign(&s, "fw", &req(6)).unwrap_err().code(),
                "key_suspended",
                "{backend:?}"
            );
            assert_eq!(h.key_info(&s, "fw").unwrap().state, KeyState::Suspended);
        }
        let r = second_process(&store, &i.share);
        let rs = r.login(&i.token).unwrap();
        assert_eq!(
            r.sign(&rs, "fw", &req(7)).unwrap_err().code(),
            "key_suspended"
        );

        // An officer resumes it: it signs again, here and there.
        let info = r.resume_key(&rs, "fw").unwrap();
        assert_eq!(info.state, KeyState::Active);
        r.sign(&rs, "fw", &req(8)).unwrap();
        i.hsm.sign(&i.admin, "fw", &req(9)).unwrap();
        let log = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap();
        let count = |a: &str| log.iter().filter(|e| e.action == a).count();
        assert_eq!(count("key.suspend"), 1);
        assert_eq!(count("key.resume"), 1);
    }
}

#[test]
fn an_authenticator_is_replaced_or_removed_only_with_its_code_or_by_an_administrator() {
    use kagi_hsm_core::totp;
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "tom", &[Role::Auditor])
            .unwrap();
        let tom = i.hsm.login(&token).unwrap();
        i.hsm
            .set_own_password(&tom, "tom's long passphrase")
            .unwrap();
        let now = || {
            totp::step_at(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64,
            )
        };
        let code = |secret: &[u8], step: i64| format!("{:06}", totp::code(secret, step as u64));
        let first: Vec<u8> = (1..=20).collect();
        let second: Vec<u8> = (21..=40).collect();
        i.hsm
            .enrol_totp(&tom, &first, &code(&first, now()), None)
            .unwrap();

        // Replacing needs the enrolled authenticator's current code.
        let e = i
            .hsm
            .enrol_totp(&tom, &second, &code(&second, now()), None)
            .unwrap_err();
        assert_eq!(e.code(), "bad_request");
        assert!(e.to_string().contains("code it shows now"), "{e}");
        // A code of the new secret is not one of the old.
        let e = i
            .hsm
            .enrol_totp(
                &tom,
                &second,
                &code(&second, now()),
                Some(&code(&second, now() - 1)),
            )
            .unwrap_err();
        assert_eq!(e.code(), "bad_request");
        i.hsm
            .enrol_totp(
                &tom,
                &second,
                &code(&second, now()),
                Some(&code(&first, now() + 1)),
            )
            .unwrap();
        // The old authenticator no longer signs in; the new one does.
        let login = |c: &str| {
            i.hsm
                .login_password_from("tom", "tom's long passphrase", Some(c), "192.0.2.3")
                .map(|_| ())
                .map_err(|e| e.code())
        };
        assert_eq!(login(&code(&first, now() + 1)), Err("bad_credential"));
        assert_eq!(login(&code(&second, now() + 1)), Ok(()));

        // Removing one's own needs its code too.
        assert_eq!(
            i.hsm.remove_own_totp(&tom, "000000").unwrap_err().code(),
            "bad_request"
        );
        // An administrator may remove it for a person who lost the device; nobody else may.
        let (_, other) = i
            .hsm
            .create_credential(&i.admin, "ola", &[Role::Officer])
            .unwrap();
        let ola = i.hsm.login(&other).unwrap();
        assert_eq!(
            i.hsm.remove_totp_of(&ola, "tom").unwrap_err().code(),
            "forbidden"
        );
        i.hsm.remove_totp_of(&i.admin, "tom").unwrap();
        assert!(!i.hsm.totp_enrolled(&tom).unwrap());
        assert_eq!(
            i.hsm.remove_totp_of(&i.admin, "tom").unwrap_err().code(),
            "bad_request"
        );
        let s = i
            .hsm
            .login_password_from("tom", "tom's long passphrase", None, "192.0.2.3")
            .unwrap();
        assert_eq!(s.name(), "tom");
        // Enrolled again, the person removes it with a current code.
        i.hsm
            .enrol_totp(&tom, &first, &code(&first, now()), None)
            .unwrap();
        i.hsm
            .remove_own_totp(&tom, &code(&first, now() + 1))
            .unwrap();
        assert!(!i.hsm.totp_enrolled(&tom).unwrap());

        let log = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap();
        let removed: Vec<_> = log
            .iter()
            .filter(|e| e.action == "credential.totp_removed")
            .collect();
        assert_eq!(removed.len(), 2);
        assert!(
            removed[0].detail.contains("administrator"),
            "{}",
            removed[0].detail
        );
        assert!(removed[0].actor.ends_with(":admin"), "{}", removed[0].actor);
    }
}

/// A person with a second factor signs in while the HSM is failed closed (to read why), as a
/// person without one can; the code is still good only once.
#[test]
fn a_totp_person_signs_in_while_failed_closed_and_each_code_is_still_good_once() {
    use kagi_hsm_core::totp;
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "ada", &[Role::Auditor])
            .unwrap();
        let ada = i.hsm.login(&token).unwrap();
        i.hsm
            .set_own_password(&ada, "ada's long passphrase")
            .unwrap();
        let secret: Vec<u8> = (1..=20).collect();
        let now = totp::step_at(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
        );
        let code = |step: i64| format!("{:06}", totp::code(&secret, step as u64));
        i.hsm.enrol_totp(&ada, &secret, &code(now), None).unwrap();

        store.exec("UPDATE audit_records SET actor = 'someone else' WHERE seq = 1");
        let started = std::time::Instant::now();
        while i.hsm.integrity_failure().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "never failed closed"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let login = |c: &str| {
            i.hsm
                .login_password_from("ada", "ada's long passphrase", Some(c), "192.0.2.4")
                .map(|s| s.name().to_string())
                .map_err(|e| e.code())
        };
        assert_eq!(login(&code(now + 1)), Ok("ada".to_string()), "{backend:?}");
        assert_eq!(login(&code(now + 1)), Err("bad_credential"));
        // A console session can still be started, to read the audit page.
        let s = i.hsm.login(&token).unwrap();
        let started = i.hsm.start_console_session(&s, LIMITS).unwrap();
        assert!(i
            .hsm
            .console_session(&started.cookie, LIMITS)
            .unwrap()
            .is_some());
    }
}
