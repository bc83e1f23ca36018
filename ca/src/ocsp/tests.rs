use super::response::generalized_time;
use super::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use const_oid::db::{rfc5912, rfc6960};
use der::asn1::{BitString, Int, Null, ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use spki::AlgorithmIdentifierOwned;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};
use x509_cert::ext::pkix::CrlReason;
use x509_cert::ext::{Extension, Extensions};
use x509_cert::Certificate;

const LEAF_SERIAL: [u8; 6] = [0x00, 0xC0, 0xFF, 0xEE, 0x12, 0x34];

/// Runs `openssl` with a whitespace-separated command line (no argument
/// here needs embedded spaces) and returns success plus stdout+stderr.
fn run_openssl(dir: &Path, cmd: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args(cmd.split_whitespace())
        .current_dir(dir)
        .output()
        .expect("the openssl CLI must be installed to run these tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn openssl(dir: &Path, cmd: &str) -> String {
    let (ok, text) = run_openssl(dir, cmd);
    assert!(ok, "openssl {cmd} failed:\n{text}");
    text
}

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";

/// CA, a second unrelated CA, a delegated OCSP responder and a leaf, all
/// EC P-256, made by the openssl CLI so nothing here vouches for itself.
struct Pki {
    dir: tempfile::TempDir,
    ca: Vec<u8>,
    other_ca: Vec<u8>,
    responder: Vec<u8>,
    responder_pkcs8: Vec<u8>,
}

fn make_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &format!(
            "req -x509 -new {EC_KEY} -keyout {name}.key -out {name}.pem \
             -subj /CN=Kagi-{name}-CA -days 2 \
             -addext basicConstraints=critical,CA:TRUE \
             -addext keyUsage=critical,keyCertSign,cRLSign"
        ),
    );
}

fn issue(dir: &Path, name: &str, serial: &str, ext: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    openssl(
        dir,
        &format!("req -new {EC_KEY} -keyout {name}.key -out {name}.csr -subj /CN=kagi-{name}"),
    );
    openssl(
        dir,
        &format!(
            "x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial {serial} \
             -days 2 -out {name}.pem -extfile {name}.ext"
        ),
    );
}

fn der_of(dir: &Path, name: &str) -> Vec<u8> {
    openssl(
        dir,
        &format!("x509 -in {name}.pem -outform DER -out {name}.der"),
    );
    std::fs::read(dir.join(format!("{name}.der"))).unwrap()
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_ca(d, "ca");
    make_ca(d, "other");
    issue(
        d,
        "responder",
        "2",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=OCSPSigning\n",
    );
    issue(
        d,
        "leaf",
        "0x00C0FFEE1234",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    );
    openssl(
        d,
        "pkcs8 -topk8 -nocrypt -in responder.key -outform DER -out responder.p8",
    );
    Pki {
        ca: der_of(d, "ca"),
        other_ca: der_of(d, "other"),
        responder: der_of(d, "responder"),
        responder_pkcs8: std::fs::read(d.join("responder.p8")).unwrap(),
        dir,
    }
}

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    i64::try_from(secs).unwrap()
}

fn ecdsa_sign(
    pkcs8: &[u8],
    tbs: &[u8],
) -> Result<(AlgorithmIdentifierOwned, Vec<u8>), aws_lc_rs::error::Unspecified> {
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8)
        .map_err(|_| aws_lc_rs::error::Unspecified)?;
    let sig = key.sign(&SystemRandom::new(), tbs)?;
    let alg = AlgorithmIdentifierOwned {
        oid: rfc5912::ECDSA_WITH_SHA_256,
        parameters: None,
    };
    Ok((alg, sig.as_ref().to_vec()))
}

fn basic_of(response_der: &[u8]) -> BasicOcspResponse {
    let response = OcspResponse::from_der(response_der).unwrap();
    assert_eq!(response.response_status, OcspResponseStatus::Successful);
    let bytes = response.response_bytes.unwrap();
    assert_eq!(bytes.response_type, rfc6960::ID_PKIX_OCSP_BASIC);
    BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap()
}

/// Checks our own response with aws-lc-rs, independently of openssl.
fn verify_signature(response_der: &[u8], responder_der: &[u8]) {
    let basic = basic_of(response_der);
    let responder = Certificate::from_der(responder_der).unwrap();
    let spki = responder.tbs_certificate().subject_public_key_info();
    let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, spki.subject_public_key.raw_bytes());
    let tbs = basic.tbs_response_data.to_der().unwrap();
    key.verify(&tbs, basic.signature.raw_bytes())
        .expect("response signature must verify under the responder key");
    assert_eq!(
        basic.tbs_response_data.responder_id,
        ResponderId::ByKey(
            OctetString::new(HashAlg::Sha1.digest(spki.subject_public_key.raw_bytes())).unwrap()
        )
    );
    assert_eq!(basic.certs.unwrap()[0].to_der().unwrap(), responder_der);
}

/// Have openssl make a request, answer it, and have openssl judge the
/// answer. `digest` is "" or an openssl digest flag such as "-sha256".
/// Returns openssl's verdict output.
fn interop(pki: &Pki, digest: &str, nonce: bool, status: Status) -> String {
    let d = pki.dir.path();
    let no_nonce = if nonce { "" } else { "-no_nonce" };
    openssl(
        d,
        &format!("ocsp {digest} -issuer ca.pem -cert leaf.pem -reqout req.der {no_nonce}"),
    );

    let parsed = parse_request(&std::fs::read(d.join("req.der")).unwrap()).unwrap();
    assert_eq!(parsed.certs.len(), 1);
    assert_eq!(parsed.nonce.is_some(), nonce);
    if let Some(n) = &parsed.nonce {
        // OpenSSL wraps its 16 random bytes in an OCTET STRING.
        assert_eq!(&n[..2], &[0x04, 0x10]);
        assert_eq!(n.len(), 18);
    }
    let cert = &parsed.certs[0];
    let want_alg = if digest == "-sha256" {
        HashAlg::Sha256
    } else {
        HashAlg::Sha1
    };
    assert_eq!(cert.hash_alg, want_alg);
    assert_eq!(cert.serial, LEAF_SERIAL);
    assert!(names_issuer(cert, &pki.ca).unwrap());
    assert!(!names_issuer(cert, &pki.other_ca).unwrap());
    assert!(!names_issuer(cert, &pki.responder).unwrap());

    let now = now();
    let statuses = [SingleStatus {
        cert_id: cert.cert_id.clone(),
        status,
        this_update_unix: now - 60,
        next_update_unix: Some(now + 3600),
    }];
    let response = build_response(
        &statuses,
        &pki.responder,
        parsed.nonce.as_deref(),
        now,
        |tbs| ecdsa_sign(&pki.responder_pkcs8, tbs),
    )
    .unwrap();
    verify_signature(&response, &pki.responder);
    std::fs::write(d.join("resp.der"), &response).unwrap();

    // Two verdicts, because `openssl ocsp` only checks the nonce against
    // a request given with -reqin when no -cert builds a fresh request
    // (with a fresh nonce) instead. So: first the real request, checking
    // nonce, signature and chain; then -cert for the per-certificate
    // summary line, with -no_nonce so its throwaway request has none.
    let with_request = openssl(
        d,
        "ocsp -reqin req.der -respin resp.der -CAfile ca.pem -resp_text",
    );
    let summary = openssl(
        d,
        &format!(
            "ocsp {digest} -respin resp.der -issuer ca.pem -cert leaf.pem \
             -CAfile ca.pem -no_nonce"
        ),
    );
    format!("{with_request}\n{summary}")
}

fn assert_clean(out: &str) {
    assert_eq!(out.matches("Response verify OK").count(), 2, "{out}");
    assert!(!out.contains("WARNING"), "{out}");
    assert!(!out.contains("Nonce Verify error"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");
}

#[test]
fn openssl_good_with_nonce() {
    let pki = pki();
    let out = interop(&pki, "", true, Status::Good);
    assert!(out.contains("leaf.pem: good"), "{out}");
    assert!(out.contains("Cert Status: good"), "{out}");
    assert!(out.contains("OCSP Nonce"), "{out}");
    assert_clean(&out);
}

#[test]
fn openssl_good_without_nonce() {
    let pki = pki();
    let out = interop(&pki, "", false, Status::Good);
    assert!(out.contains("leaf.pem: good"), "{out}");
    assert_clean(&out);
}

#[test]
fn openssl_sha256_cert_id() {
    let pki = pki();
    let out = interop(&pki, "-sha256", true, Status::Good);
    assert!(out.contains("leaf.pem: good"), "{out}");
    assert_clean(&out);
}

#[test]
fn openssl_revoked_with_reason() {
    let pki = pki();
    let status = Status::Revoked {
        at_unix: now() - 3600,
        reason: Some(1),
    };
    let out = interop(&pki, "", true, status);
    assert!(out.contains("leaf.pem: revoked"), "{out}");
    // The -cert summary line (tab-indented), then the -resp_text dump.
    assert!(out.contains("\tReason: keyCompromise"), "{out}");
    assert!(
        out.contains("Revocation Reason: keyCompromise (0x1)"),
        "{out}"
    );
    assert!(out.contains("Revocation Time:"), "{out}");
    assert_clean(&out);
}

#[test]
fn openssl_revoked_without_reason_and_unknown() {
    let pki = pki();
    let status = Status::Revoked {
        at_unix: now() - 3600,
        reason: None,
    };
    let out = interop(&pki, "", false, status);
    assert!(out.contains("leaf.pem: revoked"), "{out}");
    assert!(!out.contains("Reason:"), "{out}");
    assert_clean(&out);

    let out = interop(&pki, "", false, Status::Unknown);
    assert!(out.contains("leaf.pem: unknown"), "{out}");
    assert_clean(&out);
}

const VERIFY_WITH_REQUEST: &str = "ocsp -reqin req.der -respin resp.der -CAfile ca.pem";

/// Proves the nonce check in `interop` has teeth: a response carrying a
/// different nonce is refused by openssl.
#[test]
fn openssl_notices_wrong_nonce() {
    let pki = pki();
    let d = pki.dir.path();
    openssl(d, "ocsp -issuer ca.pem -cert leaf.pem -reqout req.der");
    let parsed = parse_request(&std::fs::read(d.join("req.der")).unwrap()).unwrap();
    let mut wrong = parsed.nonce.clone().unwrap();
    *wrong.last_mut().unwrap() ^= 1;
    let now = now();
    let statuses = [SingleStatus {
        cert_id: parsed.certs[0].cert_id.clone(),
        status: Status::Good,
        this_update_unix: now,
        next_update_unix: None,
    }];
    let response = build_response(&statuses, &pki.responder, Some(&wrong), now, |tbs| {
        ecdsa_sign(&pki.responder_pkcs8, tbs)
    })
    .unwrap();
    std::fs::write(d.join("resp.der"), response).unwrap();
    let (_, out) = run_openssl(d, VERIFY_WITH_REQUEST);
    assert!(out.contains("Nonce Verify error"), "{out}");

    // And one that drops the nonce draws a warning.
    let response = build_response(&statuses, &pki.responder, None, now, |tbs| {
        ecdsa_sign(&pki.responder_pkcs8, tbs)
    })
    .unwrap();
    std::fs::write(d.join("resp.der"), response).unwrap();
    let (_, out) = run_openssl(d, VERIFY_WITH_REQUEST);
    assert!(out.contains("WARNING: no nonce in response"), "{out}");
}

#[test]
fn sign_error_is_propagated() {
    let pki = pki();
    let cert_id = sample_cert_id(HashAlg::Sha1, 20);
    let statuses = [SingleStatus {
        cert_id,
        status: Status::Good,
        this_update_unix: 1_700_000_000,
        next_update_unix: None,
    }];
    let err = build_response(&statuses, &pki.responder, None, 1_700_000_000, |_| {
        Err::<(AlgorithmIdentifierOwned, Vec<u8>), _>("hsm offline")
    })
    .unwrap_err();
    assert!(matches!(err, BuildError::Sign("hsm offline")));
    assert_eq!(
        err.to_string(),
        "signing the OCSP response failed: hsm offline"
    );
}

#[test]
fn build_rejects_bad_arguments() {
    let pki = pki();
    let sign = |_: &[u8]| -> Result<(AlgorithmIdentifierOwned, Vec<u8>), ()> {
        panic!("must not sign invalid input")
    };
    let base = SingleStatus {
        cert_id: sample_cert_id(HashAlg::Sha1, 20),
        status: Status::Good,
        this_update_unix: 1_700_000_000,
        next_update_unix: None,
    };
    let cases: Vec<(Vec<SingleStatus>, &[u8], i64)> = vec![
        (vec![], &pki.responder, 1_700_000_000),
        (vec![base.clone()], b"not a certificate", 1_700_000_000),
        (vec![base.clone()], &pki.responder, -1),
        (
            vec![SingleStatus {
                next_update_unix: Some(1_600_000_000),
                ..base.clone()
            }],
            &pki.responder,
            1_700_000_000,
        ),
        (
            vec![SingleStatus {
                status: Status::Revoked {
                    at_unix: 1_600_000_000,
                    reason: Some(7),
                },
                ..base.clone()
            }],
            &pki.responder,
            1_700_000_000,
        ),
        (
            vec![SingleStatus {
                this_update_unix: 300_000_000_000,
                ..base.clone()
            }],
            &pki.responder,
            1_700_000_000,
        ),
    ];
    for (statuses, responder, produced) in cases {
        let err = build_response(&statuses, responder, None, produced, sign).unwrap_err();
        assert!(matches!(err, BuildError::Response(_)), "{err:?}");
    }
}

/// Tag of the first element inside a DER SEQUENCE.
fn first_inner_tag(der: &[u8]) -> u8 {
    let len_octets = if der[1] < 0x80 {
        0
    } else {
        usize::from(der[1] & 0x7f)
    };
    der[2 + len_octets]
}

fn sample_cert_id(alg: HashAlg, hash_len: usize) -> CertId {
    CertId {
        hash_algorithm: AlgorithmIdentifierOwned {
            oid: alg.oid(),
            parameters: Some(der::Any::null()),
        },
        issuer_name_hash: OctetString::new(vec![0x11; hash_len]).unwrap(),
        issuer_key_hash: OctetString::new(vec![0x22; hash_len]).unwrap(),
        serial_number: Int::new(&[0x01, 0x02]).unwrap(),
    }
}

fn request_der(cert_ids: Vec<CertId>, extensions: Option<Extensions>) -> Vec<u8> {
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: cert_ids
                .into_iter()
                .map(|req_cert| Request {
                    req_cert,
                    single_request_extensions: None,
                })
                .collect(),
            request_extensions: extensions,
        },
        optional_signature: None,
    }
    .to_der()
    .unwrap()
}

fn extension(oid: ObjectIdentifier, critical: bool, value: &[u8]) -> Extension {
    Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value).unwrap(),
    }
}

#[test]
fn request_round_trip() {
    let ids = vec![
        sample_cert_id(HashAlg::Sha1, 20),
        sample_cert_id(HashAlg::Sha256, 32),
    ];
    let nonce = [0x04, 0x02, 0xAB, 0xCD];
    let der = request_der(
        ids.clone(),
        Some(vec![extension(rfc6960::ID_PKIX_OCSP_NONCE, false, &nonce)]),
    );
    let parsed = parse_request(&der).unwrap();
    assert_eq!(parsed.nonce.as_deref(), Some(&nonce[..]));
    assert_eq!(parsed.certs.len(), 2);
    assert_eq!(parsed.certs[0].hash_alg, HashAlg::Sha1);
    assert_eq!(parsed.certs[1].hash_alg, HashAlg::Sha256);
    assert_eq!(parsed.certs[1].issuer_key_hash, vec![0x22; 32]);
    assert_eq!(parsed.certs[0].serial, vec![0x01, 0x02]);
    assert_eq!(parsed.certs[0].cert_id, ids[0]);
    assert_eq!(OcspRequest::from_der(&der).unwrap().to_der().unwrap(), der);
    // version DEFAULT v1 must be omitted in DER: tbsRequest starts with
    // the requestList SEQUENCE, not a [0] tag.
    let tbs = OcspRequest::from_der(&der)
        .unwrap()
        .tbs_request
        .to_der()
        .unwrap();
    assert_eq!(first_inner_tag(&tbs), 0x30);

    // Absent hash parameters are as acceptable as NULL.
    let mut id = sample_cert_id(HashAlg::Sha256, 32);
    id.hash_algorithm.parameters = None;
    assert_eq!(
        parse_request(&request_der(vec![id], None)).unwrap().nonce,
        None
    );
}

#[test]
fn signed_request_is_accepted() {
    let mut req =
        OcspRequest::from_der(&request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None)).unwrap();
    req.optional_signature = Some(Signature {
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: rfc5912::ECDSA_WITH_SHA_256,
            parameters: None,
        },
        signature: BitString::from_bytes(&[1, 2, 3]).unwrap(),
        certs: None,
    });
    let der = req.to_der().unwrap();
    assert_eq!(parse_request(&der).unwrap().certs.len(), 1);
}

#[test]
fn response_types_round_trip_and_encode_as_rfc() {
    let t = generalized_time(1_700_000_000, "t").unwrap();
    assert_eq!(t.to_der().unwrap()[2..], *b"20231114221320Z");

    assert_eq!(CertStatus::Good(Null).to_der().unwrap(), [0x80, 0x00]);
    assert_eq!(CertStatus::Unknown(Null).to_der().unwrap(), [0x82, 0x00]);
    let revoked = CertStatus::Revoked(RevokedInfo {
        revocation_time: t,
        revocation_reason: Some(CrlReason::KeyCompromise),
    });
    let der = revoked.to_der().unwrap();
    // [1] IMPLICIT SEQUENCE { GeneralizedTime, [0] EXPLICIT ENUMERATED 1 }
    assert_eq!(der[0], 0xA1);
    assert_eq!(der[2], 0x18);
    assert_eq!(der[der.len() - 5..], [0xA0, 0x03, 0x0A, 0x01, 0x01]);
    assert_eq!(CertStatus::from_der(&der).unwrap(), revoked);

    let by_key = ResponderId::ByKey(OctetString::new(vec![7; 20]).unwrap());
    let der = by_key.to_der().unwrap();
    assert_eq!(der[..4], [0xA2, 22, 0x04, 20]);
    assert_eq!(ResponderId::from_der(&der).unwrap(), by_key);

    let data = ResponseData {
        version: Version::V1,
        responder_id: by_key,
        produced_at: t,
        responses: vec![SingleResponse {
            cert_id: sample_cert_id(HashAlg::Sha1, 20),
            cert_status: revoked,
            this_update: t,
            next_update: Some(t),
            single_extensions: None,
        }],
        response_extensions: None,
    };
    let der = data.to_der().unwrap();
    assert_eq!(first_inner_tag(&der), 0xA2, "version v1 must be omitted");
    assert_eq!(ResponseData::from_der(&der).unwrap(), data);
}

#[test]
fn error_responses() {
    for status in [
        OcspResponseStatus::MalformedRequest,
        OcspResponseStatus::InternalError,
        OcspResponseStatus::TryLater,
        OcspResponseStatus::SigRequired,
        OcspResponseStatus::Unauthorized,
    ] {
        let der = error_response(status);
        let expected = OcspResponse {
            response_status: status,
            response_bytes: None,
        };
        assert_eq!(der, expected.to_der().unwrap());
        assert_eq!(OcspResponse::from_der(&der).unwrap(), expected);
    }
    let der = error_response(OcspResponseStatus::Successful);
    assert_eq!(
        OcspResponse::from_der(&der).unwrap().response_status,
        OcspResponseStatus::InternalError
    );
}

#[test]
fn openssl_reads_error_response() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("resp.der"),
        error_response(OcspResponseStatus::TryLater),
    )
    .unwrap();
    let (_, out) = run_openssl(dir.path(), "ocsp -respin resp.der -resp_text");
    assert!(out.contains("Responder Error: trylater (3)"), "{out}");
}

#[test]
fn hostile_requests_are_errors() {
    let valid = request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None);
    assert!(parse_request(&valid).is_ok());

    assert!(matches!(parse_request(&[]), Err(OcspError::Empty)));
    for len in 1..valid.len() {
        assert!(parse_request(&valid[..len]).is_err(), "truncated to {len}");
    }
    let mut trailing = valid.clone();
    trailing.push(0);
    assert!(matches!(
        parse_request(&trailing),
        Err(OcspError::Malformed(_))
    ));

    let huge = vec![0x30; MAX_REQUEST_LEN + 1];
    assert!(matches!(
        parse_request(&huge),
        Err(OcspError::TooLarge { .. })
    ));
    // A length header promising far more than is present.
    assert!(parse_request(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x30]).is_err());
    // Deeply nested SEQUENCEs must not blow the stack.
    let mut nested = Vec::new();
    for _ in 0..10_000 {
        nested.extend([0x30, 0x80]);
    }
    assert!(parse_request(&nested).is_err());

    let mut state = 0x1234_5678_u32;
    for _ in 0..2_000 {
        let len = (state % 300) as usize;
        let garbage: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let _ = parse_request(&garbage);
    }
    // Bit flips over a valid request: any outcome but a panic is fine.
    for i in 0..valid.len() {
        for bit in 0..8 {
            let mut flipped = valid.clone();
            flipped[i] ^= 1 << bit;
            let _ = parse_request(&flipped);
        }
    }

    let ids = vec![sample_cert_id(HashAlg::Sha1, 20); MAX_CERTS_PER_REQUEST + 1];
    assert!(matches!(
        parse_request(&request_der(ids, None)),
        Err(OcspError::TooManyCerts { count: 65, .. })
    ));
    let ids = vec![sample_cert_id(HashAlg::Sha1, 20); MAX_CERTS_PER_REQUEST];
    assert_eq!(
        parse_request(&request_der(ids, None)).unwrap().certs.len(),
        MAX_CERTS_PER_REQUEST
    );
    assert!(matches!(
        parse_request(&request_der(vec![], None)),
        Err(OcspError::NoCerts)
    ));

    let mut md5 = sample_cert_id(HashAlg::Sha1, 16);
    md5.hash_algorithm.oid = ObjectIdentifier::new_unwrap("1.2.840.113549.2.5");
    assert!(matches!(
        parse_request(&request_der(vec![md5], None)),
        Err(OcspError::UnsupportedHash { index: 0, .. })
    ));
    let mut params = sample_cert_id(HashAlg::Sha1, 20);
    params.hash_algorithm.parameters = Some(der::Any::encode_from(&7u8).unwrap());
    assert!(matches!(
        parse_request(&request_der(vec![params], None)),
        Err(OcspError::HashParameters { .. })
    ));
    let short = sample_cert_id(HashAlg::Sha256, 20);
    assert!(matches!(
        parse_request(&request_der(vec![short], None)),
        Err(OcspError::HashLength {
            want: 32,
            got: 20,
            ..
        })
    ));

    let one = || vec![sample_cert_id(HashAlg::Sha1, 20)];
    let nonce = |v: &[u8]| extension(rfc6960::ID_PKIX_OCSP_NONCE, false, v);
    assert!(matches!(
        parse_request(&request_der(one(), Some(vec![nonce(&[1]), nonce(&[2])]))),
        Err(OcspError::DuplicateNonce)
    ));
    assert!(matches!(
        parse_request(&request_der(one(), Some(vec![nonce(&[])]))),
        Err(OcspError::NonceLength { len: 0, .. })
    ));
    assert!(matches!(
        parse_request(&request_der(
            one(),
            Some(vec![nonce(&[0; MAX_NONCE_LEN + 1])])
        )),
        Err(OcspError::NonceLength { .. })
    ));
    let odd = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.1");
    assert!(matches!(
        parse_request(&request_der(one(), Some(vec![extension(odd, true, &[5])]))),
        Err(OcspError::UnsupportedCriticalExtension { .. })
    ));
    let ok = parse_request(&request_der(one(), Some(vec![extension(odd, false, &[5])])));
    assert_eq!(ok.unwrap().nonce, None);
}

#[test]
fn names_issuer_rejects_garbage_ca() {
    let req = parse_request(&request_der(vec![sample_cert_id(HashAlg::Sha1, 20)], None)).unwrap();
    assert!(matches!(
        names_issuer(&req.certs[0], b"junk"),
        Err(OcspError::IssuerCert(_))
    ));
}
