//! Invariants 1 and 3 against someone with write access to the database: edited key attributes
//! make the key refuse to load, imported key material never appears in the database files, and
//! any change to the audit log is found and named.

use kagi_testkit::store as common;

use common::*;
use diesel::prelude::*;
use diesel::Connection;
use kagi_hsm_core::store::schema::{audit_records, keys};
use kagi_hsm_core::store::AnyConnection;
use kagi_hsm_core::*;

fn req(digest: Vec<u8>) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest,
        padding: RsaPadding::Pkcs1v15,
    }
}

fn conn(store: &TestStore) -> AnyConnection {
    AnyConnection::establish(&store.url()).unwrap()
}

#[test]
fn editing_any_key_attribute_makes_the_key_refuse_to_load() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let mut spec = KeySpec::new("k", Algorithm::EcP256);
        spec.usage_limit = Some(100);
        spec.not_after = Some(4_000_000_000);
        spec.not_before = Some(1_000_000_000);
        i.hsm.create_key(&i.admin, &spec).unwrap();
        i.hsm
            .create_key(&i.admin, &KeySpec::new("other", Algorithm::EcP256))
            .unwrap();
        let other_sealed: Vec<u8> = keys::table
            .filter(keys::label.eq("other"))
            .select(keys::sealed.assume_not_null())
            .first(&mut conn(&store))
            .unwrap();
        let flip = |mut v: Vec<u8>, at: usize| {
            let n = at % v.len();
            v[n] ^= 0x01;
            v
        };
        type Edit = Box<dyn Fn(&mut AnyConnection) -> usize>;
        let target = || keys::table.filter(keys::label.eq("k"));
        let orig: (Vec<u8>, Vec<u8>) = target()
            .select((keys::public_key, keys::sealed.assume_not_null()))
            .first(&mut conn(&store))
            .unwrap();
        let (pk, sealed) = orig.clone();
        let (pk2, sealed2, sealed3, other2) = (
            pk.clone(),
            sealed.clone(),
            sealed.clone(),
            other_sealed.clone(),
        );
        let edits: Vec<(&str, Edit, &str)> = vec![
            (
                "algorithm",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::algorithm.eq("ec-p384"))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "operations",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::operations.eq("sign,verify,wrap"))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "usage_limit raised",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::usage_limit.eq(Some(1_000_000i64)))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "usage_limit removed",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::usage_limit.eq(None::<i64>))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "not_before",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::not_before.eq(None::<i64>))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "not_after",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::not_after.eq(Some(4_000_000_001i64)))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "exportable_under_wrap",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::exportable_under_wrap.eq(true))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "trusted",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::trusted.eq(true))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "never_extractable",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::never_extractable.eq(false))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "local_origin",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::local_origin.eq(false))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "state",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::state.eq("disabled"))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "generation",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::generation.eq(7i64))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "created_at",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::created_at.eq(keys::created_at + 1))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "public_key byte",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::public_key.eq(flip(pk2.clone(), 40)))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "sealed nonce byte",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::sealed.eq(Some(flip(sealed2.clone(), 3))))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "sealed body byte",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::sealed.eq(Some(flip(sealed3.clone(), 60))))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "sealed blob of another key",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::sealed.eq(Some(other2.clone())))
                        .execute(c)
                        .unwrap()
                }),
                "k",
            ),
            (
                "label",
                Box::new(move |c| {
                    diesel::update(target())
                        .set(keys::label.eq("k2"))
                        .execute(c)
                        .unwrap()
                }),
                "k2",
            ),
        ];
        store.exec("CREATE TABLE snapk AS SELECT * FROM keys WHERE label = 'k'");
        for (what, edit, label) in edits {
            assert_eq!(edit(&mut conn(&store)), 1, "{what}");
            let (hsm, s) = reopen(&store, &i.share, &i.token);
            let err = hsm.sign(&s, label, &req(digest_of(1))).unwrap_err();
            assert_eq!(
                err.code(),
                "key_integrity_failure",
                "{backend:?}: editing {what} gave {err}"
            );
            assert!(err.to_string().contains("integrity check"), "{err}");
            // Put the row back: the key works again, so the refusal above was the edit's doing.
            store.exec("DELETE FROM keys WHERE id = (SELECT id FROM snapk)");
            store.exec("INSERT INTO keys SELECT * FROM snapk");
            let (hsm, s) = reopen(&store, &i.share, &i.token);
            hsm.sign(&s, "k", &req(digest_of(2))).unwrap();
        }

        // A process that already holds the key keeps using the sealed (authentic) limit.
        let mut lim = KeySpec::new("cached", Algorithm::EcP256);
        lim.usage_limit = Some(2);
        i.hsm.create_key(&i.admin, &lim).unwrap();
        i.hsm.sign(&i.admin, "cached", &req(digest_of(1))).unwrap();
        store.exec("UPDATE keys SET usage_limit = 1000 WHERE label = 'cached'");
        i.hsm.sign(&i.admin, "cached", &req(digest_of(2))).unwrap();
        assert_eq!(
            i.hsm
                .sign(&i.admin, "cached", &req(digest_of(3)))
                .unwrap_err()
                .code(),
            "usage_limit_reached"
        );
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}

/// Private key bytes an attacker must never find: the private scalar or seed, and the PKCS#8.
/// Returns (secrets, a public key that must be found: the positive control of the scan).
fn secrets_of_imported_keys(i: &Instance) -> (Vec<Vec<u8>>, Vec<u8>) {
    use aws_lc_rs::encoding::AsBigEndian;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
        ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    let import = i.hsm.import_public_key(&i.admin).unwrap();
    let mut secrets = Vec::new();
    for (label, alg) in [
        ("imp-p256", Algorithm::EcP256),
        ("imp-p384", Algorithm::EcP384),
    ] {
        let signing = if alg == Algorithm::EcP256 {
            &ECDSA_P256_SHA256_ASN1_SIGNING
        } else {
            &ECDSA_P384_SHA384_ASN1_SIGNING
        };
        let kp = EcdsaKeyPair::generate(signing).unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap().as_ref().to_vec();
        let scalar: Vec<u8> = kp.private_key().as_be_bytes().unwrap().as_ref().to_vec();
        let wrapped = wrap_for_import(&import, &pkcs8).unwrap();
        i.hsm
            .import_key(&i.admin, &KeySpec::new(label, alg), &wrapped)
            .unwrap();
        i.hsm
            .sign(&i.admin, label, &req(alg.default_digest().hash(b"x")))
            .unwrap();
        secrets.push(scalar);
        secrets.push(pkcs8);
    }
    let kp = Ed25519KeyPair::generate().unwrap();
    let pkcs8 = kp.to_pkcs8v1().unwrap().as_ref().to_vec();
    let seed: Vec<u8> = kp.seed().unwrap().as_be_bytes().unwrap().as_ref().to_vec();
    let wrapped = wrap_for_import(&import, &pkcs8).unwrap();
    i.hsm
        .import_key(
            &i.admin,
            &KeySpec::new("imp-ed", Algorithm::Ed25519),
            &wrapped,
        )
        .unwrap();
    i.hsm.sign(&i.admin, "imp-ed", &req(digest_of(1))).unwrap();
    secrets.push(seed);
    secrets.push(pkcs8);
    let public = i.hsm.key_info(&i.admin, "imp-ed").unwrap().public_key_der;
    (secrets, public)
}

fn assert_absent(files: &[std::path::PathBuf], secrets: &[Vec<u8>], public: &[u8]) -> usize {
    let mut scanned = 0;
    let mut control = false;
    for f in files {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        scanned += bytes.len();
        control |= memchr::memmem::find(&bytes, public).is_some();
        for s in secrets {
            assert!(
                memchr::memmem::find(&bytes, s).is_none(),
                "{} holds plaintext key bytes",
                f.display()
            );
        }
    }
    assert!(
        control,
        "the scan must find the imported key's public key, or it proves nothing"
    );
    scanned
}

#[test]
fn imported_key_plaintext_never_reaches_the_sqlite_files() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (secrets, public) = secrets_of_imported_keys(&i);
    let db = store.sqlite_path().unwrap();
    let wal = db.with_extension("db-wal");
    let shm = db.with_extension("db-shm");
    // Scan while the WAL still holds the fresh pages, then again after a checkpoint.
    assert!(
        std::fs::metadata(&wal)
            .map(|m| m.len() > 0)
            .unwrap_or(false),
        "the WAL should hold the import"
    );
    let n = assert_absent(&[db.clone(), wal.clone(), shm.clone()], &secrets, &public);
    assert!(n > 0);
    store.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    assert_absent(&[db, wal, shm], &secrets, &public);
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::Text)]
    setting: String,
}

#[test]
fn imported_key_plaintext_never_reaches_the_postgres_files() {
    let store = TestStore::new(Backend::Postgres);
    let started = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
    let i = init(&store);
    let (secrets, public) = secrets_of_imported_keys(&i);
    let mut c = diesel::PgConnection::establish(&store.url()).unwrap();
    diesel::sql_query("CHECKPOINT").execute(&mut c).unwrap();
    let datadir: Setting =
        diesel::sql_query("SELECT setting FROM pg_settings WHERE name = 'data_directory'")
            .get_result(&mut c)
            .unwrap();
    let oid: Setting = diesel::sql_query(format!(
        "SELECT oid::text AS setting FROM pg_database WHERE datname = '{}'",
        store.pg_db().unwrap()
    ))
    .get_result(&mut c)
    .unwrap();
    let root = std::path::PathBuf::from(datadir.setting);
    let mut files: Vec<_> = std::fs::read_dir(root.join("base").join(oid.setting))
        .expect("the PostgreSQL data directory must be readable (tests run as root)")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    // WAL segments written during this test.
    files.extend(
        std::fs::read_dir(root.join("pg_wal"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.metadata()
                    .and_then(|m| m.modified())
                    .map(|t| t >= started)
                    .unwrap_or(false)
            })
            .map(|e| e.path()),
    );
    let n = assert_absent(&files, &secrets, &public);
    assert!(n > 1_000_000, "scanned only {n} bytes");
}

#[test]
fn any_change_to_the_audit_log_is_found_and_named() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        for n in 0..6 {
            let label = format!("k{n}");
            i.hsm
                .create_key(&i.admin, &KeySpec::new(&label, Algorithm::EcP256))
                .unwrap();
            for d in 0..5 {
                i.hsm.sign(&i.admin, &label, &req(digest_of(d))).unwrap();
            }
        }
        let total = i.hsm.audit_verify(&i.admin).unwrap().records;
        assert!(total > 30);
        let all: Vec<AuditEvent> = audit_records::table
            .order(audit_records::seq.asc())
            .load(&mut conn(&store))
            .unwrap();
        let restore = |c: &mut AnyConnection| {
            diesel::delete(audit_records::table).execute(c).unwrap();
            for ev in &all {
                diesel::insert_into(audit_records::table)
                    .values(ev)
                    .execute(c)
                    .unwrap();
            }
        };
        let expect_fail = |what: &str, seq: i64| {
            match i.hsm.audit_verify(&i.admin) {
                Err(HsmError::AuditIntegrity { seq: got, reason }) => {
                    assert_eq!(got, seq, "{backend:?} {what}: {reason}");
                    assert!(reason.contains(&seq.to_string()), "{reason}");
                }
                other => {
                    panic!("{backend:?} {what}: expected a failure at record {seq}, got {other:?}")
                }
            }
            restore(&mut conn(&store));
            i.hsm.audit_verify(&i.admin).unwrap();
        };
        let by_seq = |seq: i64| audit_records::table.filter(audit_records::seq.eq(seq));
        for p in [0, total / 2, total - 1] {
            diesel::update(by_seq(p))
                .set(audit_records::detail.eq("{}"))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("changed detail", p);
            diesel::update(by_seq(p))
                .set(audit_records::outcome.eq("denied:x"))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("changed outcome", p);
            diesel::update(by_seq(p))
                .set(audit_records::actor.eq("someone-else"))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("changed actor", p);
            diesel::update(by_seq(p))
                .set(audit_records::ts.eq(audit_records::ts + 1))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("changed time", p);
            diesel::update(by_seq(p))
                .set(audit_records::use_hi.eq(Some(0i64)))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("changed use count", p);
            diesel::delete(by_seq(p))
                .execute(&mut conn(&store))
                .unwrap();
            expect_fail("deleted", p);
        }
        for p in [0, total / 2, total - 2] {
            // Reorder: swap two neighbours' contents, MACs included.
            let (a, b) = (all[p as usize].clone(), all[p as usize + 1].clone());
            let mut c = conn(&store);
            diesel::delete(audit_records::table.filter(audit_records::seq.eq_any([p, p + 1])))
                .execute(&mut c)
                .unwrap();
            diesel::insert_into(audit_records::table)
                .values(&AuditEvent {
                    seq: p,
                    ..b.clone()
                })
                .execute(&mut c)
                .unwrap();
            diesel::insert_into(audit_records::table)
                .values(&AuditEvent {
                    seq: p + 1,
                    ..a.clone()
                })
                .execute(&mut c)
                .unwrap();
            expect_fail("reordered", p);
        }
        // Insert: a forged record at the end, with a MAC copied from a real one.
        let forged = AuditEvent {
            seq: total,
            action: "key.destroy".into(),
            ..all[3].clone()
        };
        diesel::insert_into(audit_records::table)
            .values(&forged)
            .execute(&mut conn(&store))
            .unwrap();
        expect_fail("inserted at the end", total);
        // Insert in the middle: shift everything after it up by one.
        let mid = total / 2;
        let mut c = conn(&store);
        diesel::delete(audit_records::table.filter(audit_records::seq.ge(mid)))
            .execute(&mut c)
            .unwrap();
        diesel::insert_into(audit_records::table)
            .values(&AuditEvent {
                seq: mid,
                ..all[1].clone()
            })
            .execute(&mut c)
            .unwrap();
        for ev in &all[mid as usize..] {
            diesel::insert_into(audit_records::table)
                .values(&AuditEvent {
                    seq: ev.seq + 1,
                    ..ev.clone()
                })
                .execute(&mut c)
                .unwrap();
        }
        expect_fail("inserted in the middle", mid);
        // Untouched again: the log verifies, and a process started on it works (the running
        // one may have failed closed while the log was broken, and stays so until restarted).
        let (hsm, s) = reopen(&store, &i.share, &i.token);
        hsm.sign(&s, "k0", &req(digest_of(99))).unwrap();
        assert!(hsm.audit_verify(&s).unwrap().records > total);
    }
}

/// A live log grows while it is verified: a batch that commits between two of the verifier's
/// reads is more log to check, not a missing record.
#[test]
fn verifying_a_log_that_grows_meanwhile_finds_nothing_wrong() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm
            .create_key(&i.admin, &KeySpec::new("busy", Algorithm::EcP256))
            .unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for d in 0..300 {
                    i.hsm.sign(&i.admin, "busy", &req(digest_of(d))).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut rounds = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || rounds < 3 {
                let report = i.hsm.audit_verify(&i.admin);
                assert!(report.is_ok(), "{backend:?} round {rounds}: {report:?}");
                rounds += 1;
            }
        });
    }
}

/// A database writer who gives a CA key the `sign` operation does not get a key that signs any
/// digest: the operations are sealed with the key, so the edited key refuses to open at all.
#[test]
fn adding_sign_to_a_ca_key_in_the_database_makes_it_unusable() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let svc = i.hsm.service_session(i.admin.partition());
    i.hsm
        .create_ca_service_key(&svc, "devices", "ocsp", Algorithm::EcP256)
        .unwrap();
    let n = diesel::update(keys::table.filter(keys::label.eq("ca.devices.ocsp")))
        .set(keys::operations.eq("service-sign,sign,verify"))
        .execute(&mut conn(&store))
        .unwrap();
    assert_eq!(n, 1);
    let (hsm2, admin2) = reopen(&store, &i.share, &i.token);
    let e = hsm2
        .sign(&admin2, "ca.devices.ocsp", &req(digest_of(1)))
        .unwrap_err();
    assert_eq!(e.code(), "key_integrity_failure", "{e}");
}

/// A database writer's floor attacks: roll a key's counter (or a quota's) back and hide the
/// audit records that vouch for the uses, by nulling their `use_hi` or deleting them. The HSM
/// reads floors only from the verified log, so the edit fails it closed: not one extra use.
#[test]
fn rolling_back_a_counter_and_its_audit_records_gives_no_extra_use() {
    let attacks: [(&str, &str); 2] = [
        (
            "use_hi set to NULL",
            "UPDATE audit_records SET use_hi = NULL WHERE key_id = '{subject}'",
        ),
        (
            "records deleted",
            "DELETE FROM audit_records WHERE key_id = '{subject}'",
        ),
    ];
    for backend in BACKENDS {
        for (what, sql) in attacks {
            // The key's own limit.
            let store = TestStore::new(backend);
            let i = init(&store);
            let mut spec = KeySpec::new("three", Algorithm::EcP256);
            spec.usage_limit = Some(3);
            let key = i.hsm.create_key(&i.admin, &spec).unwrap();
            for n in 0..3 {
                i.hsm.sign(&i.admin, "three", &req(digest_of(n))).unwrap();
            }
            drop(i.hsm);
            store.exec("UPDATE keys SET usage_count = 0 WHERE label = 'three'");
            store.exec(&sql.replace("{subject}", &key.id));
            let (hsm, s) = reopen(&store, &i.share, &i.token);
            let extra = (10..15)
                .filter(|n| hsm.sign(&s, "three", &req(digest_of(*n))).is_ok())
                .count();
            assert_eq!(extra, 0, "{backend:?}, key floor, {what}");
            let err = hsm.sign(&s, "three", &req(digest_of(20))).unwrap_err();
            assert_eq!(
                err.code(),
                "integrity_failure",
                "{backend:?}, {what}: {err}"
            );
            let why = hsm
                .integrity_failure()
                .expect("the HSM says why it failed closed");
            assert!(why.contains("record"), "{why}");
            // Nothing more is appended to the broken log.
            let head: i64 = hsm.latest_checkpoint().unwrap().unwrap().tree_size;
            let _ = hsm.create_key(&s, &KeySpec::new("later", Algorithm::EcP256));
            assert_eq!(hsm.latest_checkpoint().unwrap().unwrap().tree_size, head);

            // A policy quota's total.
            let store = TestStore::new(backend);
            let i = init(&store);
            i.hsm
                .create_key(&i.admin, &KeySpec::new("fw", Algorithm::EcP256))
                .unwrap();
            let quota = [QuotaCharge {
                name: "line-7".into(),
                total: Some(5),
                per_hour: None,
                per_day: None,
            }];
            let charge = |hsm: &Hsm, s: &Session, n: u64| {
                hsm.sign_op(
                    s,
                    SignOp {
                        quotas: &quota,
                        audit: serde_json::json!({}),
                        ..SignOp::digest("fw", &req(digest_of(n)))
                    },
                )
            };
            for n in 0..5 {
                charge(&i.hsm, &i.admin, n).unwrap();
            }
            drop(i.hsm);
            store.exec("UPDATE quota_counters SET used = 0");
            store.exec(&sql.replace("{subject}", "quota:line-7"));
            let (hsm, s) = reopen(&store, &i.share, &i.token);
            let extra = (10..20).filter(|n| charge(&hsm, &s, *n).is_ok()).count();
            assert_eq!(extra, 0, "{backend:?}, quota floor, {what}");
            assert_eq!(
                charge(&hsm, &s, 30).unwrap_err().code(),
                "integrity_failure"
            );
        }
    }
}

/// A running HSM re-reads what it verified: an edit to an old record fails it closed too.
#[test]
fn editing_an_old_record_under_a_running_hsm_fails_it_closed() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm
            .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
            .unwrap();
        for n in 0..20 {
            i.hsm.sign(&i.admin, "k", &req(digest_of(n))).unwrap();
        }
        assert_eq!(i.hsm.integrity_failure(), None);
        store.exec("UPDATE audit_records SET actor = 'someone else' WHERE seq = 5");
        // The watcher finds it on its next sweep (every second); wait for that, bounded.
        let started = std::time::Instant::now();
        while i.hsm.integrity_failure().is_none() {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(60),
                "{backend:?}: the edit was not found"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let why = i.hsm.integrity_failure().unwrap();
        assert!(why.contains("record 5"), "{why}");
        assert_eq!(
            i.hsm
                .sign(&i.admin, "k", &req(digest_of(99)))
                .unwrap_err()
                .code(),
            "integrity_failure"
        );
    }
}
