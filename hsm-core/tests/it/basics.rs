//! The HSM's everyday behaviour on both backends: keys, signing with every algorithm, roles,
//! logins, wrapping, and a clean audit log at the end.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;

fn req(digest: Vec<u8>) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest,
        padding: RsaPadding::Pkcs1v15,
    }
}

#[test]
fn sign_and_verify_every_algorithm() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        for alg in Algorithm::ALL {
            let label = format!("k-{}", alg.as_str());
            let mut spec = KeySpec::new(&label, alg);
            spec.usage_limit = Some(3);
            let info = i.hsm.create_key(&i.admin, &spec).unwrap();
            assert_eq!(info.usage_count, 0);
            let d = alg.default_digest().hash(b"hello");
            for n in 1..=3 {
                let signed = i
                    .hsm
                    .sign_op(
                        &i.admin,
                        kagi_hsm_core::SignOp::digest(&label, &req(d.clone())),
                    )
                    .unwrap();
                assert_eq!(signed.usage_count, n);
                assert!(
                    i.hsm
                        .verify(&i.admin, &label, &req(d.clone()), &signed.signature)
                        .unwrap(),
                    "{alg}"
                );
            }
            let err = i.hsm.sign(&i.admin, &label, &req(d.clone())).unwrap_err();
            assert_eq!(err.code(), "usage_limit_reached", "{alg} on {backend:?}");
            assert_eq!(i.hsm.key_info(&i.admin, &label).unwrap().usage_count, 3);
            if !alg.is_rsa() && alg != Algorithm::Ed25519 {
                // EC keys sign any SHA-2 digest; aws-lc-rs's verifier for that exact curve and
                // digest pairing checks the result independently.
                let l2 = format!("any-digest-{}", alg.as_str());
                i.hsm.create_key(&i.admin, &KeySpec::new(&l2, alg)).unwrap();
                for da in [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512] {
                    let r = SignRequest {
                        digest_alg: Some(da),
                        digest: da.hash(b"y"),
                        padding: RsaPadding::Pkcs1v15,
                    };
                    let sig = i.hsm.sign(&i.admin, &l2, &r).unwrap();
                    assert!(
                        i.hsm.verify(&i.admin, &l2, &r, &sig).unwrap(),
                        "{alg} {da:?}"
                    );
                    let other = SignRequest {
                        digest: da.hash(b"z"),
                        ..r.clone()
                    };
                    assert!(
                        !i.hsm.verify(&i.admin, &l2, &other, &sig).unwrap(),
                        "{alg} {da:?}"
                    );
                }
            }
            if alg.is_rsa() {
                // PSS too (with a fresh unlimited key).
                let l2 = format!("pss-{}", alg.as_str());
                i.hsm.create_key(&i.admin, &KeySpec::new(&l2, alg)).unwrap();
                let r = SignRequest {
                    digest_alg: Some(DigestAlg::Sha512),
                    digest: DigestAlg::Sha512.hash(b"x"),
                    padding: RsaPadding::Pss,
                };
                let sig = i.hsm.sign(&i.admin, &l2, &r).unwrap();
                assert!(i.hsm.verify(&i.admin, &l2, &r, &sig).unwrap());
            }
        }
        let report = i.hsm.audit_verify(&i.admin).unwrap();
        assert!(report.records > 20);
    }
}

#[test]
fn bad_input_changes_nothing() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    i.hsm
        .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let e = i.hsm.sign(&i.admin, "k", &req(vec![0; 31])).unwrap_err();
    assert_eq!(e.code(), "bad_digest");
    let e = i
        .hsm
        .sign(
            &i.admin,
            "k",
            &SignRequest {
                digest_alg: Some(DigestAlg::Sha384),
                digest: vec![0; 32],
                padding: RsaPadding::Pss,
            },
        )
        .unwrap_err();
    assert_eq!(e.code(), "bad_digest");
    assert_eq!(
        i.hsm
            .sign(&i.admin, "nope", &req(vec![0; 32]))
            .unwrap_err()
            .code(),
        "key_not_found"
    );
    assert_eq!(
        i.hsm
            .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
            .unwrap_err()
            .code(),
        "key_exists"
    );
    assert_eq!(
        i.hsm
            .create_key(&i.admin, &KeySpec::new("bad name!", Algorithm::EcP256))
            .unwrap_err()
            .code(),
        "bad_request"
    );
    for dots in [".", ".."] {
        assert_eq!(
            i.hsm
                .create_key(&i.admin, &KeySpec::new(dots, Algorithm::EcP256))
                .unwrap_err()
                .code(),
            "bad_request",
            "{dots}"
        );
    }
    assert_eq!(
        "rsa-1024".parse::<Algorithm>().unwrap_err().code(),
        "unknown_algorithm"
    );
    assert_eq!(i.hsm.key_info(&i.admin, "k").unwrap().usage_count, 0);
    assert_eq!(i.hsm.list_keys(&i.admin).unwrap().len(), 1);
    i.hsm.audit_verify(&i.admin).unwrap();
}

#[test]
fn roles_are_checked_on_every_call() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    i.hsm
        .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let (_, user_token) = i
        .hsm
        .create_credential(&i.admin, "ci", &[Role::User])
        .unwrap();
    let user = i.hsm.login(&user_token).unwrap();
    i.hsm.sign(&user, "k", &req(vec![1; 32])).unwrap();
    assert_eq!(
        i.hsm
            .create_key(&user, &KeySpec::new("x", Algorithm::EcP256))
            .unwrap_err()
            .code(),
        "forbidden"
    );
    assert_eq!(
        i.hsm.destroy_key(&user, "k").unwrap_err().code(),
        "forbidden"
    );
    assert_eq!(i.hsm.audit_verify(&user).unwrap_err().code(), "forbidden");

    assert_eq!(
        i.hsm.login("garbage").unwrap_err().code(),
        "unauthenticated"
    );
    i.hsm.audit_verify(&i.admin).unwrap();
}

#[test]
fn seal_unseal_with_quorum() {
    let store = TestStore::new(Backend::Sqlite);
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    let out = hsm.init(5, 3).unwrap();
    let token = out.admin_token.to_string();
    drop(hsm);
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert!(hsm.is_sealed());
    assert_eq!(hsm.login(&token).unwrap_err().code(), "sealed");
    assert!(!hsm.unseal(&out.shares[4]).unwrap().unsealed);
    assert_eq!(
        hsm.unseal(&out.shares[4]).unwrap().have,
        1,
        "a repeated share does not count twice"
    );
    assert!(!hsm.unseal(&out.shares[1]).unwrap().unsealed);
    assert!(hsm.unseal(&out.shares[2]).unwrap().unsealed);
    hsm.login(&token).unwrap();

    // Shares of another instance do not open this one.
    let other = TestStore::new(Backend::Sqlite);
    let o = Hsm::open(HsmConfig::new(other.config.clone()))
        .unwrap()
        .init(2, 2)
        .unwrap();
    let hsm = Hsm::open(HsmConfig::new(store.config.clone())).unwrap();
    assert_eq!(hsm.unseal(&o.shares[0]).unwrap_err().code(), "bad_share");
    assert_eq!(
        Hsm::open(HsmConfig::new(store.config.clone()))
            .unwrap()
            .init(1, 1)
            .unwrap_err()
            .code(),
        "already_initialized"
    );
}

#[test]
fn wrap_import_and_export() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        // Bring your own key: the client wraps a PKCS#8 key to the partition's import key.
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        let pkcs8 = kp.to_pkcs8v1().unwrap();
        let import_spki = i.hsm.import_public_key(&i.admin).unwrap();
        let wrapped = wrap_for_import(&import_spki, pkcs8.as_ref()).unwrap();
        let info = i
            .hsm
            .import_key(&i.admin, &KeySpec::new("byok", Algorithm::EcP256), &wrapped)
            .unwrap();
        assert!(!info.local && !info.never_extractable);
        let sig = i.hsm.sign(&i.admin, "byok", &req(vec![3; 32])).unwrap();
        assert!(i
            .hsm
            .verify(&i.admin, "byok", &req(vec![3; 32]), &sig)
            .unwrap());
        // Wrong algorithm claim, and garbage, are refused.
        assert!(i
            .hsm
            .import_key(
                &i.admin,
                &KeySpec::new("byok2", Algorithm::EcP384),
                &wrapped
            )
            .is_err());
        assert_eq!(
            i.hsm
                .import_key(
                    &i.admin,
                    &KeySpec::new("byok3", Algorithm::EcP256),
                    &[0u8; 500]
                )
                .unwrap_err()
                .code(),
            "unwrap_failed"
        );

        // Export: only exportable keys, only to trusted wrapping keys.
        i.hsm
            .create_key(&i.admin, &KeySpec::new("sealed-in", Algorithm::EcP256))
            .unwrap();
        let mut exp = KeySpec::new("exp", Algorithm::EcP256);
        exp.exportable_under_wrap = true;
        i.hsm.create_key(&i.admin, &exp).unwrap();
        let mut untrusted = KeySpec::new("w-untrusted", Algorithm::Rsa2048);
        untrusted.operations = vec![Operation::Wrap];
        i.hsm.create_key(&i.admin, &untrusted).unwrap();
        let mut trusted = KeySpec::new("w-trusted", Algorithm::Rsa2048);
        trusted.operations = vec![Operation::Wrap];
        trusted.trusted = true;
        i.hsm.create_key(&i.admin, &trusted).unwrap();
        assert_eq!(
            i.hsm
                .export_wrapped(&i.admin, "sealed-in", "w-trusted")
                .unwrap_err()
                .code(),
            "not_exportable"
        );
        assert_eq!(
            i.hsm
                .export_wrapped(&i.admin, "exp", "w-untrusted")
                .unwrap_err()
                .code(),
            "untrusted_wrapping_key"
        );
        let Gated::Done(blob) = i.hsm.export_wrapped(&i.admin, "exp", "w-trusted").unwrap() else {
            panic!("no quorum, so no approval")
        };
        assert!(blob.len() > 256);
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}

#[test]
fn secrets_never_appear_in_errors_or_the_audit_log() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let (info, token) = i
        .hsm
        .create_credential(&i.admin, "ci", &[Role::User])
        .unwrap();
    let secret = token.splitn(3, '_').nth(2).unwrap().to_string();
    let wrong = format!("kagi_{}_{}", info.id, "S3CRETMARKER".repeat(3));
    let e = i.hsm.login(&wrong).unwrap_err();
    assert!(!e.to_string().contains("S3CRETMARKER"));
    assert!(!format!("{e:?}").contains("S3CRETMARKER"));
    i.hsm.login(&token).unwrap();
    let dump = format!("{:?}", i.hsm.audit_records(&i.admin, 0, 1000).unwrap());
    assert!(!dump.contains("S3CRETMARKER") && !dump.contains(&secret) && !dump.contains(&i.token));
    assert!(!dump.contains(i.share.trim_start_matches("kagi-share-v1:1:")));
    // The stored credential is an Argon2id hash, not the secret.
    let db = std::fs::read(store.sqlite_path().unwrap()).unwrap();
    let wal =
        std::fs::read(store.sqlite_path().unwrap().with_extension("db-wal")).unwrap_or_default();
    let bytes = [db, wal].concat();
    assert!(memchr::memmem::find(&bytes, secret.as_bytes()).is_none());
    assert!(memchr::memmem::find(&bytes, b"$argon2id$").is_some());
}

#[test]
fn hostile_bytes_never_panic() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let import = i.hsm.import_public_key(&i.admin).unwrap();
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for n in 0..300usize {
        let len = (next() % 700) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert!(i
            .hsm
            .import_key(
                &i.admin,
                &KeySpec::new(&format!("h{n}"), Algorithm::EcP256),
                &bytes
            )
            .is_err());
        // Well-formed wrapping of garbage key material is refused too.
        let wrapped = wrap_for_import(&import, &bytes).unwrap_or_default();
        assert!(i
            .hsm
            .import_key(
                &i.admin,
                &KeySpec::new(&format!("g{n}"), Algorithm::Ed25519),
                &wrapped
            )
            .is_err());
        assert!(i.hsm.unseal(&text).is_ok() || i.hsm.unseal(&text).is_err());
        let _ = i.hsm.login(&text);
        let _ = StoreConfig::from_url(&text);
        let _ = text.parse::<Algorithm>();
    }
    assert!(i
        .hsm
        .list_keys(&i.admin)
        .unwrap()
        .iter()
        .all(|k| k.label == "kagi-import-key"));
    i.hsm.audit_verify(&i.admin).unwrap();
}

#[test]
fn partitions_keep_their_keys_and_credentials_apart() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm.create_partition(&i.admin, "factory").unwrap();
        assert_eq!(
            i.hsm
                .create_partition(&i.admin, "factory")
                .unwrap_err()
                .code(),
            "conflict"
        );
        assert_eq!(
            i.hsm.list_partitions(&i.admin).unwrap(),
            vec!["default", "factory"]
        );
        let (_, tok) = i
            .hsm
            .create_credential_in(
                &i.admin,
                "factory",
                "line-officer",
                &[Role::Officer, Role::User],
            )
            .unwrap();
        assert_eq!(
            i.hsm
                .create_credential_in(&i.admin, "system", "x", &[Role::User])
                .unwrap_err()
                .code(),
            "bad_request"
        );
        assert_eq!(
            i.hsm
                .create_credential_in(&i.admin, "nope", "x", &[Role::User])
                .unwrap_err()
                .code(),
            "not_found"
        );
        let f = i.hsm.login(&tok).unwrap();
        assert_eq!(f.partition(), "factory");
        i.hsm
            .create_key(&f, &KeySpec::new("same-name", Algorithm::EcP256))
            .unwrap();
        i.hsm
            .create_key(&i.admin, &KeySpec::new("same-name", Algorithm::EcP256))
            .unwrap();
        let a = i.hsm.key_info(&f, "same-name").unwrap();
        let b = i.hsm.key_info(&i.admin, "same-name").unwrap();
        assert_ne!(a.id, b.id);
        i.hsm
            .create_key(&i.admin, &KeySpec::new("default-only", Algorithm::EcP256))
            .unwrap();
        assert_eq!(
            i.hsm
                .sign(&f, "default-only", &req(vec![1; 32]))
                .unwrap_err()
                .code(),
            "key_not_found"
        );
        // Moving a key's row to another partition does not let that partition use it: the
        // partition is bound into the seal, and each partition has its own sealing key.
        store.exec("UPDATE keys SET partition_name = 'factory', label = 'moved' WHERE label = 'default-only'");
        let (hsm2, _) = reopen(&store, &i.share, &i.token);
        let f2 = hsm2.login(&tok).unwrap();
        assert_eq!(
            hsm2.sign(&f2, "moved", &req(vec![1; 32]))
                .unwrap_err()
                .code(),
            "key_integrity_failure"
        );
        hsm2.audit_verify(&hsm2.login(&i.token).unwrap()).unwrap();
    }
}

/// The lookup PKCS#11 searches by CKA_ID use: the caller's partition only, live keys only, and
/// the same usage count the list shows.
#[test]
fn a_key_is_found_by_id_in_its_own_partition_only_while_it_lives() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        i.hsm.create_partition(&i.admin, "factory").unwrap();
        let (_, tok) = i
            .hsm
            .create_credential_in(&i.admin, "factory", "line", &[Role::Officer, Role::User])
            .unwrap();
        let f = i.hsm.login(&tok).unwrap();
        let mine = i
            .hsm
            .create_key(&i.admin, &KeySpec::new("by-id", Algorithm::EcP256))
            .unwrap();
        let theirs = i
            .hsm
            .create_key(&f, &KeySpec::new("by-id", Algorithm::EcP256))
            .unwrap();
        i.hsm.sign(&i.admin, "by-id", &req(vec![1; 32])).unwrap();

        let found = i.hsm.key_info_by_id(&i.admin, &mine.id).unwrap().unwrap();
        assert_eq!((found.label.as_str(), found.usage_count), ("by-id", 1));
        let listed = i.hsm.list_keys(&i.admin).unwrap();
        let listed = listed.iter().find(|k| k.id == mine.id).unwrap();
        assert_eq!(listed.usage_count, found.usage_count);
        assert!(i
            .hsm
            .key_info_by_id(&i.admin, &theirs.id)
            .unwrap()
            .is_none());
        assert_eq!(
            i.hsm
                .key_info_by_id(&f, &theirs.id)
                .unwrap()
                .unwrap()
                .usage_count,
            0
        );
        assert!(i
            .hsm
            .key_info_by_id(&i.admin, "no-such-id")
            .unwrap()
            .is_none());

        i.hsm.destroy_key(&i.admin, "by-id").unwrap();
        assert!(i.hsm.key_info_by_id(&i.admin, &mine.id).unwrap().is_none());
        i.hsm.audit_verify(&i.admin).unwrap();
    }
}

#[test]
fn a_key_kept_wrapped_outside_signs_once_per_request_and_is_never_stored() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    )
    .unwrap();
    let pkcs8 = kp.to_pkcs8v1().unwrap();
    let import = i.hsm.import_public_key(&i.admin).unwrap();
    let wrapped = wrap_for_import(&import, pkcs8.as_ref()).unwrap();
    let keys_before = i.hsm.list_keys(&i.admin).unwrap().len();
    let d = DigestAlg::Sha256.hash(b"release");
    let signed = i
        .hsm
        .sign_op(
            &i.admin,
            kagi_hsm_core::SignOp::wrapped(Algorithm::EcP256, &wrapped, &req(d.clone())),
        )
        .unwrap();
    use aws_lc_rs::signature::KeyPair;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        kp.public_key().as_ref(),
    )
    .verify(b"release", &signed.signature)
    .unwrap();
    assert_eq!(i.hsm.list_keys(&i.admin).unwrap().len(), keys_before);
    assert_eq!(
        i.hsm
            .sign_op(
                &i.admin,
                kagi_hsm_core::SignOp::wrapped(
                    Algorithm::EcP256,
                    &wrapped[..wrapped.len() - 1],
                    &req(d.clone())
                )
            )
            .unwrap_err()
            .code(),
        "unwrap_failed"
    );
    assert!(i
        .hsm
        .sign_op(
            &i.admin,
            kagi_hsm_core::SignOp::wrapped(Algorithm::Rsa2048, &wrapped, &req(d))
        )
        .is_err());
    let events = i.hsm.audit_records(&i.admin, 0, 1000).unwrap();
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "key.use_wrapped" && e.outcome == "ok")
            .count(),
        1
    );
    i.hsm.audit_verify(&i.admin).unwrap();
}

/// The service's own session (CRLs, OCSP, timestamps) is no back door: it signs no caller's
/// digest with any key, creates no CA key, and the CA service key it may create signs no
/// caller's digest either.
#[test]
fn the_service_session_signs_only_what_the_ca_builds() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    i.hsm
        .create_key(&i.admin, &KeySpec::new("user-key", Algorithm::EcP256))
        .unwrap();
    let svc = i.hsm.service_session(i.admin.partition());
    assert!(svc.is_service());
    let e = i.hsm.sign(&svc, "user-key", &req(vec![0; 32])).unwrap_err();
    assert_eq!(e.code(), "forbidden");
    let e = i
        .hsm
        .create_ca_key(&svc, "rogue", Algorithm::EcP256)
        .unwrap_err();
    assert_eq!(e.code(), "forbidden");
    let info = i
        .hsm
        .create_ca_service_key(&svc, "devices", "ocsp", Algorithm::EcP256)
        .unwrap();
    assert!(info.operations.contains(&Operation::ServiceSign));
    assert!(!info.operations.contains(&Operation::Sign));
    let e = i
        .hsm
        .sign(&i.admin, "ca.devices.ocsp", &req(vec![0; 32]))
        .unwrap_err();
    assert_eq!(e.code(), "ca_key_reserved");
    assert_eq!(i.hsm.key_info(&i.admin, "user-key").unwrap().usage_count, 0);
    i.hsm.audit_verify(&i.admin).unwrap();
}
