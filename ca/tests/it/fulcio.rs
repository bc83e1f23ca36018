//! Fulcio-style certificates with an embedded SCT, made through hsm-core: openssl verifies the
//! chain, the SCT verifies over the precertificate rebuilt from the final certificate (what
//! Sigstore clients do), and hostile requests are refused before anything is signed.

use kagi_testkit::openssl;

use der::Decode;
use kagi_ca::fulcio::{
    issue_identity_certificate, IdentityRequest, DEFAULT_LIFETIME_SECS, PROFILE,
};
use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::hsm_key::HsmSigner;
use kagi_ca::sct::{embedded_scts, precert_signed_data_with, precert_tbs, CtSigner};
use kagi_ca::{Authority, CaError, CaSpec, PublicUrls};
use kagi_hsm_core::{
    Algorithm, DigestAlg, Gated, Hsm, HsmConfig, KeySpec, RsaPadding, StoreConfig,
};
use openssl::openssl;

fn done<T>(g: Gated<T>) -> T {
    match g {
        Gated::Done(t) => t,
        Gated::Pending(p) => panic!("unexpected approval request {}", p.id),
    }
}

#[test]
fn identity_certificates_carry_an_sct_over_their_precertificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::sqlite_in(dir))).unwrap();
    let out = hsm.init(1, 1).unwrap();
    let admin = hsm.login(&out.admin_token).unwrap();
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let spec = |name: &str| CaSpec {
        name: name.into(),
        subject: format!("CN=Test {name},O=kagi tests"),
        alg: Algorithm::EcP256,
        validity_days: 365,
    };
    let root = done(create_root(&hsm, &admin, &spec("root"), None).unwrap());
    let ica = done(
        create_intermediate(&hsm, &admin, &spec("code-signing"), "root", &urls, None).unwrap(),
    );
    hsm.create_ca_key(&admin, "code-signing.ct", Algorithm::EcP256)
        .unwrap();
    let ct = CtSigner::new(HsmSigner::new(&hsm, &admin, "ca.code-signing.ct").unwrap()).unwrap();
    let ca = Authority::load(&hsm, &admin, "code-signing").unwrap();
    let key = hsm
        .create_key(&admin, &KeySpec::new("release", Algorithm::EcP256))
        .unwrap();
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(&key.public_key_der).unwrap();
    let identity = "http://127.0.0.1:8080/identities/default/ci-app";
    let req = IdentityRequest {
        identity_uri: identity,
        issuer: "http://127.0.0.1:8080",
        spki: &spki,
        lifetime_secs: DEFAULT_LIFETIME_SECS,
    };
    let issued = issue_identity_certificate(&ca, &ct, &admin, &req, &[]).unwrap();
    assert_eq!(issued.record.profile, PROFILE);
    assert_eq!(issued.record.not_after - issued.record.not_before, 600);

    // openssl: the chain verifies (its 3.0 has no code-signing purpose), the SAN is the identity, and it sees the SCT.
    let pem = |name: &str, der: &[u8]| {
        std::fs::write(
            dir.join(name),
            kagi_ca::x509::pem("CERTIFICATE", der).unwrap(),
        )
        .unwrap()
    };
    pem("root.pem", &root.cert_der);
    pem("ica.pem", &ica.cert_der);
    pem("leaf.pem", &issued.der);
    let run = |args: &[&str]| openssl(dir, args);
    let v = run(&[
        "verify",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "ica.pem",
        "-purpose",
        "any",
        "leaf.pem",
    ]);
    assert!(v.contains("leaf.pem: OK"), "{v}");
    let text = run(&["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(text.contains(&format!("URI:{identity}")), "{text}");
    assert!(text.contains("CT Precertificate SCTs"), "{text}");
    assert!(text.contains("1.3.6.1.4.1.57264.1.8"), "{text}");

    // The SCT verifies with the CT key over the precertificate rebuilt from the certificate.
    let scts = embedded_scts(&issued.der).unwrap();
    assert_eq!(scts.len(), 1);
    let sct = &scts[0];
    assert_eq!(sct.log_id, ct.log_id);
    assert_eq!((sct.hash, sct.sig_alg), (4, 3));
    let precert = precert_tbs(&issued.der).unwrap();
    let data = precert_signed_data_with(
        ca.signer.spki_der(),
        &precert,
        sct.timestamp_ms,
        &sct.extensions,
    )
    .unwrap();
    let ct_spki = ct.signer.spki_der();
    let check = |data: &[u8]| {
        kagi_hsm_core::verify_digest(
            Algorithm::EcP256,
            ct_spki,
            DigestAlg::Sha256,
            &DigestAlg::Sha256.hash(data),
            RsaPadding::Pkcs1v15,
            &sct.signature,
        )
        .unwrap()
    };
    assert!(check(&data));
    // The precertificate differs from the final TBS exactly by the SCT extension.
    let cert = x509_cert::Certificate::from_der(&issued.der).unwrap();
    let tbs = der::Encode::to_der(cert.tbs_certificate()).unwrap();
    assert!(precert.len() < tbs.len());
    // Another timestamp, or the final TBS instead of the precertificate, does not verify.
    let wrong_time =
        precert_signed_data_with(ca.signer.spki_der(), &precert, sct.timestamp_ms + 1, &[])
            .unwrap();
    assert!(!check(&wrong_time));
    let wrong_tbs =
        precert_signed_data_with(ca.signer.spki_der(), &tbs, sct.timestamp_ms, &[]).unwrap();
    assert!(!check(&wrong_tbs));

    // Hostile requests are refused before anything is signed.
    let before = hsm.list_certificates("code-signing", 100).unwrap().len();
    for (uri, issuer, life) in [
        ("not a uri", "http://127.0.0.1:8080", 600),
        ("ci-app", "http://127.0.0.1:8080", 600),
        (identity, "", 600),
        (identity, "http://127.0.0.1:8080", 0),
        (identity, "http://127.0.0.1:8080", 86_401),
    ] {
        let r = issue_identity_certificate(
            &ca,
            &ct,
            &admin,
            &IdentityRequest {
                identity_uri: uri,
                issuer,
                spki: &spki,
                lifetime_secs: life,
            },
            &[],
        );
        assert!(
            matches!(r, Err(CaError::BadRequest(_))),
            "{uri} {issuer} {life}: {r:?}"
        );
    }
    let long = format!("http://x/{}", "a".repeat(2000));
    let r = issue_identity_certificate(
        &ca,
        &ct,
        &admin,
        &IdentityRequest {
            identity_uri: &long,
            issuer: "http://127.0.0.1:8080",
            spki: &spki,
            lifetime_secs: 600,
        },
        &[],
    );
    assert!(matches!(r, Err(CaError::BadRequest(_))));
    assert_eq!(
        hsm.list_certificates("code-signing", 100).unwrap().len(),
        before
    );
    // A CT signer must be P-256 (clients accept SHA-256 SCTs only).
    hsm.create_ca_key(&admin, "code-signing.ct384", Algorithm::EcP384)
        .unwrap();
    assert!(CtSigner::new(HsmSigner::new(&hsm, &admin, "ca.code-signing.ct384").unwrap()).is_err());
}

#[test]
fn hostile_sct_lists_and_certificates_never_panic() {
    // Truncations of a real-looking DER prefix and random bytes: errors, never panics.
    let mut seed = 0x1234_5678_u64;
    for n in 0..2000usize {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = n % 300;
        let mut bytes: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
        if n % 3 == 0 && !bytes.is_empty() {
            bytes[0] = 0x30;
        }
        let _ = precert_tbs(&bytes);
        let _ = embedded_scts(&bytes);
    }
    assert!(precert_tbs(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(precert_tbs(&[0x30, 0x82, 0xff]).is_err());
}
