//! Logins as a stranger would attack them: wrong secrets with a known credential id, floods
//! of bad tokens, forged unseal shares, and the share holders' break-glass recovery.

use kagi_hsm_core::{Hsm, HsmConfig, RecoverAction, Role};
use kagi_testkit::store::{init, reopen, Backend, TestStore, BACKENDS};

fn id_of(token: &str) -> String {
    token.split('_').nth(1).unwrap().to_string()
}

fn count(hsm: &Hsm, admin: &kagi_hsm_core::Session, action: &str) -> usize {
    hsm.audit_records(admin, 0, 10_000)
        .unwrap()
        .iter()
        .filter(|e| e.action == action)
        .count()
}

/// Found 3: five wrong secrets with an id locked the credential, and the id is public.
#[test]
fn fifty_wrong_secrets_with_an_administrators_id_leave_it_able_to_log_in() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let admin_id = id_of(&i.token);
        for n in 0..50 {
            let e = i
                .hsm
                .login_from(&format!("kagi_{admin_id}_wrong{n}"), "192.0.2.7")
                .unwrap_err();
            assert_eq!(e.code(), "bad_credential");
            // The refusal names nothing.
            assert!(!e.to_string().contains("admin"), "{e}");
        }
        let row = i
            .hsm
            .list_credentials(&i.admin)
            .unwrap()
            .into_iter()
            .find(|c| c.id == admin_id)
            .unwrap();
        assert!(!row.locked && row.failed_logins == 0, "{row:?}");
        // A process with an empty login cache runs the whole check.
        let (fresh, _) = reopen(&store, &i.share, &i.token);
        assert!(fresh.login(&i.token).unwrap().has_role(Role::Administrator));
    }
}

/// Revoked, expired and locked are told only to a caller who proved the secret.
#[test]
fn a_wrong_secret_learns_nothing_about_the_credential() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (info, tok) = i
        .hsm
        .create_credential(&i.admin, "victim-name", &[Role::User])
        .unwrap();
    i.hsm.revoke_credential(&i.admin, &info.id).unwrap();
    let wrong = format!("kagi_{}_nope", info.id);
    let e = i.hsm.login(&wrong).unwrap_err();
    assert_eq!(e.code(), "bad_credential");
    assert!(!e.to_string().contains("victim-name"));
    assert_eq!(i.hsm.login(&tok).unwrap_err().code(), "credential_revoked");
}

/// Found 5: every bad token was an audit record.
#[test]
fn a_thousand_bad_tokens_make_one_audit_record_per_source() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let admin_id = id_of(&i.token);
        let before = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap().len();
        for n in 0..1000 {
            // Every tenth one runs Argon2id against the administrator's hash.
            let token = match n % 10 {
                0 => format!("kagi_{admin_id}_bad{n}"),
                1..=5 => format!("kagi_{:016x}_bad", n),
                _ => "garbage".to_string(),
            };
            let source = if n < 900 {
                "198.51.100.1"
            } else {
                "198.51.100.2"
            };
            assert!(i.hsm.login_from(&token, source).is_err());
        }
        let during = i.hsm.audit_records(&i.admin, 0, 10_000).unwrap().len();
        assert_eq!(during, before, "refusals wait for their window's record");
        assert_eq!(i.hsm.flush_failed_logins(true).unwrap(), 2);
        let records: Vec<_> = i
            .hsm
            .audit_records(&i.admin, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "auth.failed_logins")
            .collect();
        assert_eq!(records.len(), 2);
        let first: serde_json::Value = serde_json::from_str(&records[0].detail).unwrap();
        let second: serde_json::Value = serde_json::from_str(&records[1].detail).unwrap();
        let total = first["count"].as_u64().unwrap() + second["count"].as_u64().unwrap();
        assert_eq!(total, 1000);
        let by_source = |v: &serde_json::Value| v["source"].as_str().unwrap().to_string();
        let mut sources = [by_source(&first), by_source(&second)];
        sources.sort();
        assert_eq!(sources, ["198.51.100.1", "198.51.100.2"]);
        assert!(records[0].detail.contains(&admin_id) || records[1].detail.contains(&admin_id));
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}

/// A revocation (or lock) made by another process ends this process's cached session once
/// its re-check interval (one second) has passed.
#[test]
fn a_revocation_in_another_process_ends_a_cached_session() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (info, tok) = i
            .hsm
            .create_credential(&i.admin, "ci", &[Role::User])
            .unwrap();
        i.hsm.login(&tok).unwrap();
        assert!(i.hsm.cached_session(&tok).is_some());
        let (other, other_admin) = reopen(&store, &i.share, &i.token);
        other.revoke_credential(&other_admin, &info.id).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(i.hsm.cached_session(&tok).is_none());
        assert_eq!(i.hsm.login(&tok).unwrap_err().code(), "credential_revoked");
    }
}

/// Found 4: a well-formed fake share spoiled the pool, and the next real one failed.
#[test]
fn a_forged_share_is_refused_by_itself_and_two_real_shares_then_unseal() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let out = hsm.init(3, 2).unwrap();
        drop(hsm);
        let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        // Well formed, right threshold, a real index: an anonymous caller's guess.
        let forged = format!("kagi-share-v1:2:02{}", "ab".repeat(32));
        assert_eq!(hsm.unseal(&forged).unwrap_err().code(), "bad_share");
        // A real share with one bit flipped, after a real share is in.
        assert_eq!(hsm.unseal(&out.shares[0]).unwrap().have, 1);
        let mut flipped = out.shares[1].to_string();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(hsm.unseal(&flipped).unwrap_err().code(), "bad_share");
        // An index this instance never handed out.
        let beyond = format!("kagi-share-v1:2:09{}", "cd".repeat(32));
        assert_eq!(hsm.unseal(&beyond).unwrap_err().code(), "bad_share");
        let p = hsm.unseal(&out.shares[2]).unwrap();
        assert!(p.unsealed, "{p:?}");
        hsm.login(&out.admin_token).unwrap();
    }
}

/// An instance made before share commitments unseals as before, then stores them, so its
/// shares are checked from the next unseal on.
#[test]
fn an_instance_without_commitments_unseals_and_gains_them() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let out = Hsm::open(HsmConfig::new(store.config.clone()))
            .unwrap()
            .init(3, 2)
            .unwrap();
        store.exec("DELETE FROM meta WHERE name = 'share_commitments'");
        let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let forged = format!("kagi-share-v1:2:02{}", "ab".repeat(32));
        // Unchecked, as before: it joins the pool and spoils it.
        hsm.unseal(&forged).unwrap();
        assert_eq!(
            hsm.unseal(&out.shares[0]).unwrap_err().code(),
            "wrong_master_key"
        );
        hsm.unseal(&out.shares[0]).unwrap();
        assert!(hsm.unseal(&out.shares[1]).unwrap().unsealed);
        let admin = hsm.login(&out.admin_token).unwrap();
        let unseal = hsm
            .audit_records(&admin, 0, 10_000)
            .unwrap()
            .into_iter()
            .rfind(|e| e.action == "hsm.unseal")
            .unwrap();
        assert!(unseal.detail.contains("\"stored\""), "{}", unseal.detail);
        drop(hsm);
        let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        assert_eq!(hsm.unseal(&forged).unwrap_err().code(), "bad_share");
        hsm.unseal(&out.shares[2]).unwrap();
        assert!(hsm.unseal(&out.shares[0]).unwrap().unsealed);
    }
}

/// A database writer who changes a commitment is noticed at the next unseal: the shares that
/// unsealed determine every commitment, the changed one is rewritten, and the audit log says
/// which.
#[test]
fn a_changed_share_commitment_is_noticed_and_repaired_at_unseal() {
    let store = TestStore::new(Backend::Sqlite);
    let out = Hsm::open(HsmConfig::new(store.config.clone()))
        .unwrap()
        .init(3, 2)
        .unwrap();
    // Keep shares 1 and 2's commitments, replace share 3's with the attacker's.
    store.exec(
        "UPDATE meta SET value = substr(value, 1, 64) || zeroblob(32) WHERE name = 'share_commitments'",
    );
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    hsm.unseal(&out.shares[0]).unwrap();
    assert!(hsm.unseal(&out.shares[1]).unwrap().unsealed);
    let admin = hsm.login(&out.admin_token).unwrap();
    let unseal = hsm
        .audit_records(&admin, 0, 10_000)
        .unwrap()
        .into_iter()
        .rfind(|e| e.action == "hsm.unseal")
        .unwrap();
    assert!(
        unseal.detail.contains("repaired") && unseal.detail.contains("[3]"),
        "{}",
        unseal.detail
    );
    drop(hsm);
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    hsm.unseal(&out.shares[2]).unwrap();
    assert!(hsm.unseal(&out.shares[0]).unwrap().unsealed);
}

/// Break-glass: with every administrator shut out (a lock left by an older version, or a lost
/// token), a quorum of share holders unlocks or re-keys one; nothing less does.
#[test]
fn a_quorum_of_share_holders_recovers_an_administrator() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        let out = hsm.init(5, 3).unwrap();
        let admin = hsm.login(&out.admin_token).unwrap();
        let (_, user_token) = hsm.create_credential(&admin, "ci", &[Role::User]).unwrap();
        store.exec("UPDATE credentials SET locked = true WHERE name = 'admin'");
        let fresh = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
        for s in &out.shares[..3] {
            fresh.unseal(s).unwrap();
        }
        assert_eq!(
            fresh.login(&out.admin_token).unwrap_err().code(),
            "credential_locked"
        );
        let s: Vec<&str> = out.shares.iter().map(|s| s.as_str()).collect();
        // Too few shares, a forged one, another instance's, a non-administrator: refused.
        let e = fresh
            .recover_administrator(&s[..2], "admin", RecoverAction::Unlock)
            .unwrap_err();
        assert_eq!(e.code(), "bad_share");
        let forged = format!("kagi-share-v1:3:04{}", "ab".repeat(32));
        let e = fresh
            .recover_administrator(&[s[0], s[1], &forged], "admin", RecoverAction::Unlock)
            .unwrap_err();
        assert_eq!(e.code(), "bad_share");
        let other = TestStore::new(Backend::Sqlite);
        let o = Hsm::open(HsmConfig::new(other.config.clone()))
            .unwrap()
            .init(3, 3)
            .unwrap();
        let os: Vec<&str> = o.shares.iter().map(|s| s.as_str()).collect();
        let e = fresh
            .recover_administrator(&os, "admin", RecoverAction::Unlock)
            .unwrap_err();
        assert_eq!(e.code(), "bad_share");
        let e = fresh
            .recover_administrator(&s[2..], "ci", RecoverAction::NewToken)
            .unwrap_err();
        assert_eq!(e.code(), "not_found");
        assert!(fresh.login(&user_token).is_ok());

        let r = fresh
            .recover_administrator(&s[1..4], "admin", RecoverAction::Unlock)
            .unwrap();
        assert!(r.token.is_none() && !r.credential.locked);
        let admin = fresh.login(&out.admin_token).unwrap();

        let r = fresh
            .recover_administrator(&s[2..], "admin", RecoverAction::NewToken)
            .unwrap();
        let new_token = r.token.unwrap();
        assert_eq!(
            fresh.login(&out.admin_token).unwrap_err().code(),
            "bad_credential"
        );
        // The other process's cached login of the old token ends too.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(hsm.login(&out.admin_token).is_err());
        let again = fresh.login(&new_token).unwrap();
        assert!(again.has_role(Role::Administrator));
        assert_eq!(count(&fresh, &again, "credential.recover"), 2);
        let _ = admin;
        fresh.audit_verify(&again).unwrap();
    }
}

/// Issue 16: every concurrent first request with one token ran Argon2id (19 MiB each) at once,
/// and again each minute when the cached login aged out. One verification per token is in
/// flight; the others take its result. A wrong token is still refused for every caller.
#[test]
fn concurrent_first_logins_of_one_token_run_argon2id_once() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let (_, token) = i
            .hsm
            .create_credential(&i.admin, "ci", &[Role::User])
            .unwrap();
        let before = i.hsm.token_verifications();
        let barrier = std::sync::Barrier::new(32);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    barrier.wait();
                    assert!(i.hsm.login_from(&token, "192.0.2.9").is_ok());
                });
            }
        });
        assert_eq!(i.hsm.token_verifications() - before, 1, "{backend:?}");

        let wrong = format!("kagi_{}_not-the-secret", id_of(&token));
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    let e = i.hsm.login_from(&wrong, "192.0.2.9").unwrap_err();
                    assert_eq!(e.code(), "bad_credential");
                });
            }
        });
        // The right token still has its cached login.
        let before = i.hsm.token_verifications();
        assert!(i.hsm.login(&token).is_ok());
        assert_eq!(i.hsm.token_verifications(), before);
    }
}
