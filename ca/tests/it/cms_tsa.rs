//! Detached CMS signatures and RFC 3161 timestamps, checked by the openssl CLI.
//!
//! Certificates and keys are made with openssl in a temporary folder; the signing callback uses
//! a software key (aws-lc) loaded from the PKCS#8 openssl wrote, so these tests need no HSM.

use kagi_testkit::openssl;

use openssl::{openssl, try_openssl};
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING, RSA_PKCS1_SHA256,
};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::SignedData;
use const_oid::db::{rfc3161, rfc5911};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use kagi_ca::cms_sign::{
    add_timestamp_token, detached_signed_data, signature_value, CmsSigner, SignFn,
};
use kagi_ca::tsa::{
    self, fail, granted_response, parse_request, rejection, ParsedRequest, PkiStatus,
    TimeStampResp, TstInfo, DEFAULT_POLICY,
};
use kagi_ca::CaError;
use kagi_hsm_core::{Algorithm, DigestAlg};

const CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[root_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[codesign_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tsa_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A key made by openssl: `{name}.key` (PEM) and its PKCS#8 DER.
fn gen_key(dir: &Path, name: &str, alg: Algorithm) -> Vec<u8> {
    let key = format!("{name}.key");
    match alg {
        Algorithm::EcP256 => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                &key,
            ],
        ),
        Algorithm::Rsa2048 => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                &key,
            ],
        ),
        other => panic!("no test key for {other}"),
    };
    let p8 = format!("{name}.p8");
    // `pkey -outform DER` would write the traditional (SEC1 / PKCS#1) form; aws-lc wants PKCS#8.
    openssl(
        dir,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", &key, "-outform", "DER", "-out", &p8,
        ],
    );
    std::fs::read(dir.join(p8)).unwrap()
}

/// The test PKI: an EC P-256 root, with `root.pem` and `ca.cnf` in `dir`.
fn make_root(dir: &Path) {
    std::fs::write(dir.join("ca.cnf"), CONFIG).unwrap();
    gen_key(dir, "root", Algorithm::EcP256);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root.key",
            "-subj",
            "/CN=Kagi Test Root",
            "-days",
            "30",
            "-config",
            "ca.cnf",
            "-extensions",
            "root_ext",
            "-out",
            "root.pem",
        ],
    );
}

/// A leaf issued by the root with extension section `ext`: `{name}.pem`, and returns (cert DER,
/// PKCS#8 key DER).
fn make_leaf(
    dir: &Path,
    name: &str,
    alg: Algorithm,
    ext: &str,
    serial: &str,
) -> (Vec<u8>, Vec<u8>) {
    let p8 = gen_key(dir, name, alg);
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let pem = format!("{name}.pem");
    let der = format!("{name}.der");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &key,
            "-subj",
            &format!("/CN=Kagi Test {name}"),
            "-config",
            "ca.cnf",
            "-out",
            &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-set_serial",
            serial,
            "-days",
            "30",
            "-extfile",
            "ca.cnf",
            "-extensions",
            ext,
            "-out",
            &pem,
        ],
    );
    openssl(dir, &["x509", "-in", &pem, "-outform", "DER", "-out", &der]);
    (std::fs::read(dir.join(der)).unwrap(), p8)
}

fn root_der(dir: &Path) -> Vec<u8> {
    openssl(
        dir,
        &[
            "x509", "-in", "root.pem", "-outform", "DER", "-out", "root.der",
        ],
    );
    std::fs::read(dir.join("root.der")).unwrap()
}

/// A software signing callback over the signed-attributes DER (the key hashes it, as
/// `HsmSigner::sign_tbs` does).
fn software_sign(alg: Algorithm, p8: Vec<u8>) -> Box<SignFn<'static>> {
    let rng = SystemRandom::new();
    match alg {
        Algorithm::EcP256 => {
            let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &p8).unwrap();
            Box::new(move |msg| Ok(key.sign(&rng, msg).unwrap().as_ref().to_vec()))
        }
        Algorithm::Rsa2048 => {
            let key = RsaKeyPair::from_pkcs8(&p8).unwrap();
            Box::new(move |msg| {
                let mut sig = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                Ok(sig)
            })
        }
        other => panic!("no test signer for {other}"),
    }
}

const APP: &[u8] = b"firmware image v1.2.3\n\x00\x01\x02 payload bytes\n";

fn now() -> i64 {
    kagi_ca::x509::unix_now()
}

/// Signs app.bin (written to `dir`) detached with a fresh code-signing leaf of type `alg`;
/// writes app.p7s and returns its DER.
fn sign_app(dir: &Path, alg: Algorithm, name: &str) -> Vec<u8> {
    std::fs::write(dir.join("app.bin"), APP).unwrap();
    let (cert, p8) = make_leaf(dir, name, alg, "codesign_ext", "0x1001");
    let (digest, signature_algorithm) = kagi_ca::hsm_key::signature_algorithm(alg).unwrap();
    let sign = software_sign(alg, p8);
    let chain = vec![root_der(dir)];
    let signer = CmsSigner {
        cert_der: &cert,
        chain: &chain,
        digest,
        signature_algorithm,
        sign: &*sign,
    };
    let p7s = detached_signed_data(&digest.hash(APP), now(), &signer).unwrap();
    std::fs::write(dir.join("app.p7s"), &p7s).unwrap();
    p7s
}

const CMS_VERIFY: &[&str] = &[
    "cms",
    "-verify",
    "-binary",
    "-inform",
    "DER",
    "-in",
    "app.p7s",
    "-content",
    "app.bin",
    "-CAfile",
    "root.pem",
    "-purpose",
    "any",
    "-out",
    "/dev/null",
];

fn cms_verify(dir: &Path, p7s: &str) -> (bool, String) {
    let args: Vec<&str> = CMS_VERIFY
        .iter()
        .map(|a| if *a == "app.p7s" { p7s } else { a })
        .collect();
    try_openssl(dir, &args)
}

fn detached_roundtrip(alg: Algorithm) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let p7s = sign_app(d, alg, "signer");

    let (ok, out) = cms_verify(d, "app.p7s");
    assert!(ok && out.contains("Verification successful"), "{out}");

    // One flipped byte of the file and the signature no longer holds.
    let mut changed = APP.to_vec();
    changed[3] ^= 0x01;
    std::fs::write(d.join("app.bin"), &changed).unwrap();
    let (ok, out) = cms_verify(d, "app.p7s");
    assert!(!ok && !out.contains("Verification successful"), "{out}");

    // Shape: version 1, id-data without content, one signer, leaf and root included, and the
    // signed attributes in DER order (openssl verifies them in the order they are written, so
    // it would not notice a wrong order; a strict verifier would).
    let sd: SignedData = ContentInfo::from_der(&p7s)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    assert_eq!(sd.version, CmsVersion::V1);
    assert_eq!(sd.encap_content_info.econtent_type, rfc5911::ID_DATA);
    assert!(sd.encap_content_info.econtent.is_none());
    assert_eq!(sd.certificates.as_ref().unwrap().0.len(), 2);
    let si = &sd.signer_infos.0.as_slice()[0];
    assert_eq!(si.version, CmsVersion::V1);
    let attrs: Vec<Vec<u8>> = si
        .signed_attrs
        .as_ref()
        .unwrap()
        .iter()
        .map(|a| a.to_der().unwrap())
        .collect();
    assert_eq!(attrs.len(), 3);
    let mut sorted = attrs.clone();
    sorted.sort();
    assert_eq!(attrs, sorted);
}

#[test]
fn detached_ec_p256_verifies_with_openssl() {
    detached_roundtrip(Algorithm::EcP256);
}

#[test]
fn detached_rsa_2048_verifies_with_openssl() {
    detached_roundtrip(Algorithm::Rsa2048);
}

#[test]
fn detached_refuses_bad_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let (cert, p8) = make_leaf(d, "signer", Algorithm::EcP256, "codesign_ext", "0x1002");
    let (_, other_p8) = make_leaf(d, "other", Algorithm::EcP256, "codesign_ext", "0x1003");
    let (digest, signature_algorithm) =
        kagi_ca::hsm_key::signature_algorithm(Algorithm::EcP256).unwrap();
    let sign = software_sign(Algorithm::EcP256, p8);
    let chain = vec![];
    let signer = CmsSigner {
        cert_der: &cert,
        chain: &chain,
        digest,
        signature_algorithm: signature_algorithm.clone(),
        sign: &*sign,
    };

    // A digest of the wrong length (hex, or another hash) is the client's mistake.
    let err = detached_signed_data(&[0u8; 20], now(), &signer).unwrap_err();
    assert_eq!(err.code(), "bad_request", "{err}");

    // A digest algorithm that is not the signature's hash would fail in OpenSSL.
    let mismatched = CmsSigner {
        digest: DigestAlg::Sha384,
        ..signer
    };
    let err = detached_signed_data(&[0u8; 48], now(), &mismatched).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");

    // A key that is not the certificate's: caught before anything is released.
    let wrong = software_sign(Algorithm::EcP256, other_p8);
    let wrong_key = CmsSigner {
        cert_der: &cert,
        chain: &chain,
        digest,
        signature_algorithm: signature_algorithm.clone(),
        sign: &*wrong,
    };
    let err = detached_signed_data(&digest.hash(APP), now(), &wrong_key).unwrap_err();
    assert!(err.to_string().contains("does not verify"), "{err}");

    // An RSA signature algorithm with an EC certificate: refused before the key is used.
    let calls = std::cell::Cell::new(0);
    let counting = |_: &[u8]| {
        calls.set(calls.get() + 1);
        Err(CaError::Internal("must not be called".into()))
    };
    let (_, rsa_alg) = kagi_ca::hsm_key::signature_algorithm(Algorithm::Rsa2048).unwrap();
    let wrong_family = CmsSigner {
        cert_der: &cert,
        chain: &chain,
        digest,
        signature_algorithm: rsa_alg,
        sign: &counting,
    };
    let err = detached_signed_data(&digest.hash(APP), now(), &wrong_family).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
    assert_eq!(calls.get(), 0);

    // PEM instead of DER.
    let pem = std::fs::read(d.join("signer.pem")).unwrap();
    let pem_signer = CmsSigner {
        cert_der: &pem,
        chain: &chain,
        digest,
        signature_algorithm,
        sign: &*sign,
    };
    let err = detached_signed_data(&digest.hash(APP), now(), &pem_signer).unwrap_err();
    assert!(err.to_string().contains("not a DER X.509"), "{err}");

    // signature_value of garbage.
    assert!(signature_value(b"not cms").is_err());
    assert!(signature_value(&[]).is_err());
}

// The RFC 3161 time-stamping authority: its own file, to keep each under ~800 lines.
mod timestamps;
