//! The CA end to end inside one process, checked by openssl: a root and an intermediate whose
//! keys are in hsm-core, a device certificate from an openssl CSR, revocation and the CRL.

use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::{Authority, CaSpec, IssueOptions, Profiles, PublicUrls};
use kagi_hsm_core::{Algorithm, Gated, Hsm, HsmConfig, Session, StoreConfig};
use kagi_testkit::openssl;

use openssl::try_openssl;
use std::path::Path;

fn setup(dir: &Path) -> (Hsm, Session) {
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::sqlite_in(dir))).unwrap();
    let out = hsm.init(1, 1).unwrap();
    let admin = hsm.login(&out.admin_token).unwrap();
    (hsm, admin)
}

fn done<T>(g: Gated<T>) -> T {
    match g {
        Gated::Done(t) => t,
        Gated::Pending(p) => panic!("unexpected approval request {}", p.id),
    }
}

fn write_pem(dir: &Path, name: &str, label: &str, der: &[u8]) {
    std::fs::write(dir.join(name), kagi_ca::x509::pem(label, der).unwrap()).unwrap();
}

#[test]
fn hierarchy_issue_revoke_crl_verified_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (hsm, admin) = setup(dir);
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    for (alg, root, ica) in [
        (Algorithm::EcP256, "root", "devices"),
        (Algorithm::EcP384, "root384", "devices384"),
        (Algorithm::Rsa2048, "rootrsa", "devicesrsa"),
    ] {
        let root_rec = done(
            create_root(
                &hsm,
                &admin,
                &CaSpec {
                    name: root.into(),
                    subject: format!("CN=Test {root},O=kagi tests"),
                    alg,
                    validity_days: 3650,
                },
                None,
            )
            .unwrap(),
        );
        let ica_rec = done(
            create_intermediate(
                &hsm,
                &admin,
                &CaSpec {
                    name: ica.into(),
                    subject: format!("CN=Test {ica},O=kagi tests"),
                    alg,
                    validity_days: 1825,
                },
                root,
                &urls,
                None,
            )
            .unwrap(),
        );
        write_pem(dir, "root.pem", "CERTIFICATE", &root_rec.cert_der);
        write_pem(dir, "ica.pem", "CERTIFICATE", &ica_rec.cert_der);

        let (ok, text) = try_openssl(
            dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "dev.key",
                "-subj",
                "/CN=sensor 1/serialNumber=SN-0001/O=Acme",
                "-out",
                "dev.csr",
            ],
        );
        assert!(ok, "{text}");
        let authority = Authority::load(&hsm, &admin, ica).unwrap();
        let profiles = Profiles::builtin().unwrap();
        let csr = std::fs::read(dir.join("dev.csr")).unwrap();
        let issued = kagi_ca::issue::issue(
            &authority,
            &admin,
            profiles.get("device").unwrap(),
            &csr,
            &IssueOptions::default(),
            &urls,
            &[],
            serde_json::json!({}),
        )
        .unwrap();
        write_pem(dir, "dev.pem", "CERTIFICATE", &issued.der);
        let (ok, text) = try_openssl(
            dir,
            &[
                "verify",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "ica.pem",
                "dev.pem",
            ],
        );
        assert!(ok && text.contains("dev.pem: OK"), "{alg}: {text}");
        let (_, text) = try_openssl(
            dir,
            &["x509", "-in", "dev.pem", "-noout", "-enddate", "-text"],
        );
        assert!(text.contains("notAfter=Dec 31 23:59:59 9999 GMT"), "{text}");
        assert!(
            text.contains("serialNumber=SN-0001") || text.contains("serialNumber = SN-0001"),
            "{text}"
        );

        // Stored, with the profile and the identity that asked.
        let stored = hsm.certificate(&issued.record.serial).unwrap().unwrap();
        assert_eq!(stored.profile, "device");
        assert_eq!(stored.issued_to, admin.actor());
        assert_eq!(stored.der, issued.der);

        // Revoke, regenerate the CRL, and let openssl check both.
        hsm.revoke_certificate(&admin, &issued.record.serial, 1)
            .unwrap();
        let svc = Authority::load(&hsm, &hsm.service_session(admin.partition()), ica).unwrap();
        let crl = kagi_ca::crl::generate(&svc, kagi_ca::x509::unix_now()).unwrap();
        write_pem(dir, "ica.crl", "X509 CRL", &crl.der);
        let (ok, text) = try_openssl(
            dir,
            &[
                "crl", "-in", "ica.crl", "-CAfile", "ica.pem", "-verify", "-noout", "-text",
            ],
        );
        assert!(ok && text.contains("verify OK"), "{text}");
        assert!(
            text.to_uppercase()
                .contains(&issued.record.serial.to_uppercase()),
            "the CRL must list the serial: {text}"
        );
        assert!(text.contains("Key Compromise"), "{text}");
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(dir.join("ica.crl")).unwrap(),
            std::fs::read_to_string(dir.join("root.pem")).unwrap()
        );
        std::fs::write(dir.join("crl_chain.pem"), chain).unwrap();
        let (ok, text) = try_openssl(
            dir,
            &[
                "verify",
                "-crl_check",
                "-CAfile",
                "crl_chain.pem",
                "-untrusted",
                "ica.pem",
                "dev.pem",
            ],
        );
        assert!(!ok && text.contains("revoked"), "{text}");
        // A second CRL has a higher number.
        let crl2 = kagi_ca::crl::generate(&svc, kagi_ca::x509::unix_now()).unwrap();
        assert_eq!(crl2.number, crl.number + 1);
    }
    hsm.audit_verify(&admin).unwrap();
}

#[test]
fn ca_keys_refuse_raw_signing_and_reserved_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (hsm, admin) = setup(tmp.path());
    done(
        create_root(
            &hsm,
            &admin,
            &CaSpec {
                name: "r".into(),
                subject: "CN=R".into(),
                alg: Algorithm::EcP256,
                validity_days: 10,
            },
            None,
        )
        .unwrap(),
    );
    let req = kagi_hsm_core::SignRequest {
        digest_alg: None,
        digest: vec![7; 32],
        padding: Default::default(),
    };
    let e = hsm.sign(&admin, "ca.r", &req).unwrap_err();
    assert_eq!(e.code(), "ca_key_reserved");
    let e = hsm
        .create_key(
            &admin,
            &kagi_hsm_core::KeySpec::new("ca.evil", Algorithm::EcP256),
        )
        .unwrap_err();
    assert_eq!(e.code(), "bad_request");
}

#[test]
fn a_revocation_edited_away_in_the_database_still_holds() {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (hsm, admin) = setup(dir);
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let spec = |n: &str| CaSpec {
        name: n.into(),
        subject: format!("CN={n}"),
        alg: Algorithm::EcP256,
        validity_days: 100,
    };
    done(create_root(&hsm, &admin, &spec("root"), None).unwrap());
    done(create_intermediate(&hsm, &admin, &spec("devices"), "root", &urls, None).unwrap());
    let (ok, text) = try_openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "d.key",
            "-subj",
            "/serialNumber=SN-7",
            "-out",
            "d.csr",
        ],
    );
    assert!(ok, "{text}");
    let ca = Authority::load(&hsm, &admin, "devices").unwrap();
    let profiles = Profiles::builtin().unwrap();
    let issued = kagi_ca::issue::issue(
        &ca,
        &admin,
        profiles.get("device").unwrap(),
        &std::fs::read(dir.join("d.csr")).unwrap(),
        &IssueOptions::default(),
        &urls,
        &[],
        serde_json::json!({}),
    )
    .unwrap();
    let serial = issued.record.serial.clone();
    hsm.revoke_certificate(&admin, &serial, 1).unwrap();

    // A database writer un-revokes the row.
    let mut c = SqliteConnection::establish(&dir.join("kagi.db").to_string_lossy()).unwrap();
    let n = diesel::sql_query(format!(
        "UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL WHERE serial = '{serial}'"
    ))
    .execute(&mut c)
    .unwrap();
    assert_eq!(n, 1);

    let cert = hsm.certificate(&serial).unwrap().unwrap();
    assert!(
        cert.revoked_at.is_some(),
        "the audit log keeps the revocation"
    );
    assert_eq!(cert.revocation_reason, Some(1));
    let listed = hsm.revoked_certificates("devices").unwrap();
    assert!(listed
        .iter()
        .any(|e| e.serial == serial && e.reason == Some(1)));
    // `kagi ca certs` reads the list: it says revoked too, like OCSP and the CRL.
    let certs = hsm.list_certificates("devices", 100).unwrap();
    let row = certs.iter().find(|r| r.serial == serial).unwrap();
    assert_eq!(row.revocation_reason, Some(1), "{row:?}");
    assert!(row.revoked_at.is_some());
    assert_eq!(
        hsm.revoke_certificate(&admin, &serial, 1)
            .unwrap_err()
            .code(),
        "conflict"
    );
}

#[test]
fn rcgen_builds_certificates_signed_through_hsm_core() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (hsm, admin) = setup(dir);
    for alg in [Algorithm::EcP256, Algorithm::EcP384, Algorithm::Rsa2048] {
        let name = format!("rc{}", alg.as_str().replace('-', ""));
        hsm.create_ca_key(&admin, &name, alg).unwrap();
        let signer = kagi_ca::hsm_key::HsmSigner::new(&hsm, &admin, &format!("ca.{name}")).unwrap();
        let before = hsm.key_info(&admin, signer.label()).unwrap().usage_count;
        let ca_key = kagi_ca::hsm_key::HsmRemoteKey::new(signer.clone())
            .unwrap()
            .into_key_pair()
            .unwrap();
        let mut root = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        root.distinguished_name
            .push(rcgen::DnType::CommonName, format!("rcgen root {alg}"));
        root.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        root.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let root_cert = root.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["device.example.com".to_string()]).unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &root_cert, &ca_key).unwrap();
        std::fs::write(
            dir.join("rc-root.pem"),
            kagi_ca::x509::pem("CERTIFICATE", root_cert.der()).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("rc-leaf.pem"),
            kagi_ca::x509::pem("CERTIFICATE", leaf_cert.der()).unwrap(),
        )
        .unwrap();
        let (ok, text) = try_openssl(dir, &["verify", "-CAfile", "rc-root.pem", "rc-leaf.pem"]);
        assert!(ok && text.contains("rc-leaf.pem: OK"), "{alg}: {text}");
        // Both signatures were counted uses of the HSM key.
        let after = hsm.key_info(&admin, signer.label()).unwrap().usage_count;
        assert_eq!(after - before, 2, "{alg}");
    }
}

/// The service keeps each CA's checked record between issuances; a revocation committed in
/// this process must still stop the very next one.
#[test]
fn a_revoked_ca_stops_issuing_at_once_though_its_record_was_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (hsm, admin) = setup(tmp.path());
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let spec = |n: &str| CaSpec {
        name: n.into(),
        subject: format!("CN=Test {n}"),
        alg: Algorithm::EcP256,
        validity_days: 365,
    };
    done(create_root(&hsm, &admin, &spec("root"), None).unwrap());
    done(create_intermediate(&hsm, &admin, &spec("devices"), "root", &urls, None).unwrap());
    let pki = kagi_ca::service::Pki::new("http://127.0.0.1:8080").unwrap();
    let csr = |sn: &str| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            rcgen::DnValue::PrintableString(sn.try_into().unwrap()),
        );
        p.serialize_request(&key).unwrap().der().to_vec()
    };
    let issue = |sn: &str| {
        pki.issue(
            &hsm,
            &admin,
            "devices",
            "device",
            &csr(sn),
            &IssueOptions::default(),
            &[],
            serde_json::json!({}),
        )
    };
    for i in 0..3 {
        issue(&format!("SN-{i}")).unwrap();
    }
    done(kagi_ca::hierarchy::revoke_ca(&hsm, &admin, "devices", 1, None).unwrap());
    let err = issue("SN-AFTER").unwrap_err().to_string();
    assert!(err.contains("revoked"), "{err}");
    // The root, whose record did not change, still answers from what was kept.
    assert!(hsm.ca("root").unwrap().revoked_at.is_none());
    assert!(hsm.ca("devices").unwrap().revoked_at.is_some());
}
