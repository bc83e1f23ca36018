//! RFC 3161 timestamps: tokens and rejections checked by `openssl ts`, a token attached to a
//! CMS signature, and requests hostile or beyond what the TSA answers.

use super::*;

/// The TSA's certificate, key and signer inputs.
struct Tsa {
    cert: Vec<u8>,
    chain: Vec<Vec<u8>>,
    sign: Box<SignFn<'static>>,
}

impl Tsa {
    fn new(dir: &Path) -> Tsa {
        let (cert, p8) = make_leaf(dir, "tsa", Algorithm::EcP256, "tsa_ext", "0x2001");
        Tsa {
            cert,
            chain: vec![root_der(dir)],
            sign: software_sign(Algorithm::EcP256, p8),
        }
    }

    fn signer(&self) -> CmsSigner<'_> {
        let (digest, signature_algorithm) =
            kagi_ca::hsm_key::signature_algorithm(Algorithm::EcP256).unwrap();
        CmsSigner {
            cert_der: &self.cert,
            chain: &self.chain,
            digest,
            signature_algorithm,
            sign: &*self.sign,
        }
    }

    fn respond(&self, req: &ParsedRequest) -> Vec<u8> {
        let serial = [
            0x9a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        granted_response(req, &serial, now(), DEFAULT_POLICY, &self.signer()).unwrap()
    }
}

const TS_VERIFY: &[&str] = &[
    "ts",
    "-verify",
    "-data",
    "app.bin",
    "-in",
    "resp.tsr",
    "-CAfile",
    "root.pem",
    "-untrusted",
    "tsa.pem",
];

/// The value after `label` on the line of `text` that has it.
fn field<'t>(text: &'t str, label: &str) -> &'t str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .unwrap_or_else(|| panic!("no '{label}' in:\n{text}"))
        .trim()
}

#[test]
fn timestamp_with_nonce_and_certs_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let tsa = Tsa::new(d);
    std::fs::write(d.join("app.bin"), APP).unwrap();

    openssl(
        d,
        &[
            "ts", "-query", "-data", "app.bin", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("req.tsq")).unwrap()).unwrap();
    assert_eq!(req.hash_alg, DigestAlg::Sha256);
    assert_eq!(req.hashed_message, DigestAlg::Sha256.hash(APP));
    assert!(req.cert_req);
    assert!(req.nonce.is_some());
    assert_eq!(req.req_policy, None);
    std::fs::write(d.join("resp.tsr"), tsa.respond(&req)).unwrap();

    let out = openssl(d, TS_VERIFY);
    assert!(out.contains("Verification: OK"), "{out}");
    // Against the query too: openssl then also checks the nonce and the certificate request.
    let out = openssl(
        d,
        &[
            "ts",
            "-verify",
            "-queryfile",
            "req.tsq",
            "-in",
            "resp.tsr",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "tsa.pem",
        ],
    );
    assert!(out.contains("Verification: OK"), "{out}");

    let query = openssl(d, &["ts", "-query", "-in", "req.tsq", "-text"]);
    let reply = openssl(d, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert!(reply.contains("Status: Granted."), "{reply}");
    assert_eq!(field(&reply, "Nonce:"), field(&query, "Nonce:"), "{reply}");
    assert_eq!(
        field(&reply, "Policy OID:"),
        "1.3.6.1.4.1.32473.1",
        "{reply}"
    );
    assert_eq!(
        field(&reply, "Accuracy:"),
        "0x01 seconds, unspecified millis, unspecified micros"
    );
    assert_eq!(field(&reply, "Ordering:"), "no");
    assert_eq!(
        field(&reply, "Serial number:"),
        "0x9A112233445566778899AABBCCDDEEFF"
    );

    // The token carries the certificates the request asked for, and a version 3 SignedData.
    let resp = TimeStampResp::from_der(&std::fs::read(d.join("resp.tsr")).unwrap()).unwrap();
    assert_eq!(resp.status.status, PkiStatus::Granted);
    let token = resp.time_stamp_token.unwrap();
    let sd: SignedData = token.content.decode_as().unwrap();
    assert_eq!(sd.version, CmsVersion::V3);
    assert_eq!(sd.encap_content_info.econtent_type, rfc3161::ID_CT_TST_INFO);
    assert_eq!(sd.certificates.unwrap().0.len(), 2);

    // A changed file no longer matches the token.
    std::fs::write(d.join("app.bin"), b"another firmware").unwrap();
    let (ok, out) = try_openssl(d, TS_VERIFY);
    assert!(!ok && !out.contains("Verification: OK"), "{out}");
}

#[test]
fn timestamp_without_nonce_or_certs_verifies_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let tsa = Tsa::new(d);
    std::fs::write(d.join("app.bin"), APP).unwrap();

    openssl(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "app.bin",
            "-sha256",
            "-no_nonce",
            "-out",
            "req.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("req.tsq")).unwrap()).unwrap();
    assert!(req.nonce.is_none());
    assert!(!req.cert_req);
    std::fs::write(d.join("resp.tsr"), tsa.respond(&req)).unwrap();

    // No certificates in the token: -untrusted supplies the TSA certificate.
    let out = openssl(d, TS_VERIFY);
    assert!(out.contains("Verification: OK"), "{out}");
    let reply = openssl(d, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert_eq!(field(&reply, "Nonce:"), "unspecified", "{reply}");
    let resp = TimeStampResp::from_der(&std::fs::read(d.join("resp.tsr")).unwrap()).unwrap();
    let sd: SignedData = resp.time_stamp_token.unwrap().content.decode_as().unwrap();
    assert!(sd.certificates.is_none());

    // A requested policy is echoed.
    openssl(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "app.bin",
            "-sha384",
            "-tspolicy",
            "1.2.3.4.5",
            "-out",
            "req2.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("req2.tsq")).unwrap()).unwrap();
    assert_eq!(req.hash_alg, DigestAlg::Sha384);
    assert_eq!(
        req.req_policy,
        Some(ObjectIdentifier::new_unwrap("1.2.3.4.5"))
    );
    std::fs::write(d.join("resp.tsr"), tsa.respond(&req)).unwrap();
    let out = openssl(d, TS_VERIFY);
    assert!(out.contains("Verification: OK"), "{out}");
    let reply = openssl(d, &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert_eq!(field(&reply, "Policy OID:"), "1.2.3.4.5", "{reply}");
}

#[test]
fn tsa_refuses_a_certificate_without_timestamping() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let (cert, p8) = make_leaf(d, "notatsa", Algorithm::EcP256, "codesign_ext", "0x2002");
    let sign = software_sign(Algorithm::EcP256, p8);
    let (digest, signature_algorithm) =
        kagi_ca::hsm_key::signature_algorithm(Algorithm::EcP256).unwrap();
    let signer = CmsSigner {
        cert_der: &cert,
        chain: &[],
        digest,
        signature_algorithm,
        sign: &*sign,
    };
    std::fs::write(d.join("app.bin"), APP).unwrap();
    openssl(
        d,
        &[
            "ts", "-query", "-data", "app.bin", "-sha256", "-out", "req.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("req.tsq")).unwrap()).unwrap();
    let err = granted_response(&req, &[1], now(), DEFAULT_POLICY, &signer).unwrap_err();
    assert!(err.to_string().contains("id-kp-timeStamping"), "{err}");
}

#[test]
fn rejection_reads_back_in_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (bit, words) in [
        (
            fail::BAD_ALG,
            "unrecognized or unsupported algorithm identifier",
        ),
        (fail::BAD_REQUEST, "transaction not permitted or supported"),
        (
            fail::BAD_DATA_FORMAT,
            "the data submitted has the wrong format",
        ),
        (fail::SYSTEM_FAILURE, "system failure"),
    ] {
        let der = rejection(bit, "kagi says no");
        let resp = TimeStampResp::from_der(&der).unwrap();
        assert_eq!(resp.status.status, PkiStatus::Rejection);
        assert!(resp.time_stamp_token.is_none());
        let bits = resp.status.fail_info.unwrap();
        assert_eq!(bits.bit_len(), usize::from(bit) + 1);
        assert_eq!(bits.bits().filter(|b| *b).count(), 1);
        assert!(bits.bits().last().unwrap());

        std::fs::write(d.join("rej.tsr"), &der).unwrap();
        let text = openssl(d, &["ts", "-reply", "-in", "rej.tsr", "-text"]);
        assert!(text.contains("Status: Rejected."), "{text}");
        assert!(text.contains("kagi says no"), "{text}");
        assert!(text.to_lowercase().contains(words), "bit {bit}: {text}");
    }
    // No text: the statusString is left out.
    let resp = TimeStampResp::from_der(&rejection(fail::BAD_REQUEST, "")).unwrap();
    assert!(resp.status.status_string.is_none());
    // Long text is cut.
    let resp = TimeStampResp::from_der(&rejection(fail::BAD_REQUEST, &"x".repeat(10_000))).unwrap();
    assert_eq!(
        resp.status.status_string.unwrap()[0].len(),
        tsa::MAX_STATUS_TEXT
    );
}

#[test]
fn signature_timestamp_attaches_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let tsa = Tsa::new(d);
    let p7s = sign_app(d, Algorithm::EcP256, "signer");

    // The TSA timestamps the signature value (RFC 3161 Appendix A).
    let sig = signature_value(&p7s).unwrap();
    std::fs::write(d.join("sig.bin"), &sig).unwrap();
    openssl(
        d,
        &[
            "ts", "-query", "-data", "sig.bin", "-sha256", "-cert", "-out", "sig.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("sig.tsq")).unwrap()).unwrap();
    let resp = TimeStampResp::from_der(&tsa.respond(&req)).unwrap();
    let token = resp.time_stamp_token.unwrap().to_der().unwrap();
    std::fs::write(d.join("token.der"), &token).unwrap();
    let out = openssl(
        d,
        &[
            "ts",
            "-verify",
            "-data",
            "sig.bin",
            "-in",
            "token.der",
            "-token_in",
            "-CAfile",
            "root.pem",
            "-untrusted",
            "tsa.pem",
        ],
    );
    assert!(out.contains("Verification: OK"), "{out}");

    let with_ts = add_timestamp_token(&p7s, &token).unwrap();
    std::fs::write(d.join("with_ts.p7s"), &with_ts).unwrap();
    let (ok, out) = cms_verify(d, "with_ts.p7s");
    assert!(ok && out.contains("Verification successful"), "{out}");
    let printed = openssl(
        d,
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            "with_ts.p7s",
        ],
    );
    assert!(
        printed.contains("1.2.840.113549.1.9.16.2.14")
            || printed.contains("id-smime-aa-timeStampToken"),
        "{printed}"
    );
    // The signature itself is untouched.
    assert_eq!(signature_value(&with_ts).unwrap(), sig);

    // The token inside is the one the TSA made, byte for byte.
    let sd: SignedData = ContentInfo::from_der(&with_ts)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    let unsigned = sd.signer_infos.0.as_slice()[0]
        .unsigned_attrs
        .clone()
        .unwrap();
    let attr = unsigned.iter().next().unwrap();
    assert_eq!(attr.oid, rfc3161::ID_AA_TIME_STAMP_TOKEN);
    assert_eq!(attr.values.iter().next().unwrap().to_der().unwrap(), token);

    // A second token is refused, and so is a token over something else.
    assert_eq!(
        add_timestamp_token(&with_ts, &token).unwrap_err().code(),
        "conflict"
    );
    std::fs::write(d.join("other.bin"), b"not the signature").unwrap();
    openssl(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "other.bin",
            "-sha256",
            "-out",
            "other.tsq",
        ],
    );
    let req = parse_request(&std::fs::read(d.join("other.tsq")).unwrap()).unwrap();
    let other = TimeStampResp::from_der(&tsa.respond(&req))
        .unwrap()
        .time_stamp_token
        .unwrap()
        .to_der()
        .unwrap();
    let err = add_timestamp_token(&p7s, &other).unwrap_err();
    assert!(
        err.to_string()
            .contains("does not timestamp this signature"),
        "{err}"
    );
    // The TimeStampResp is not the token.
    assert!(add_timestamp_token(&p7s, &tsa.respond(&req)).is_err());

    // A token from another TSA (openssl's, with millisecond genTime and accuracy) attaches too.
    std::fs::write(d.join("tsa.cnf"), OPENSSL_TSA).unwrap();
    std::fs::write(d.join("tsaserial"), "01\n").unwrap();
    openssl(
        d,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "sig.tsq",
            "-inkey",
            "tsa.key",
            "-signer",
            "tsa.pem",
            "-token_out",
            "-out",
            "ossl_token.der",
        ],
    );
    let ossl_token = std::fs::read(d.join("ossl_token.der")).unwrap();
    let printed = openssl(
        d,
        &[
            "ts",
            "-reply",
            "-in",
            "ossl_token.der",
            "-token_in",
            "-text",
        ],
    );
    assert!(field(&printed, "Time stamp:").contains('.'), "{printed}");
    let with_ossl = add_timestamp_token(&p7s, &ossl_token).unwrap();
    std::fs::write(d.join("with_ossl.p7s"), &with_ossl).unwrap();
    let (ok, out) = cms_verify(d, "with_ossl.p7s");
    assert!(ok && out.contains("Verification successful"), "{out}");
}

/// openssl's own TSA, writing genTime with milliseconds.
const OPENSSL_TSA: &str = "\
[tsa]
default_tsa = tsa_config1
[tsa_config1]
serial = ./tsaserial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.2.3.4.1
digests = sha256
accuracy = secs:1, millisecs:500
clock_precision_digits = 3
ordering = no
tsa_name = no
ess_cert_id_chain = no
ess_cert_id_alg = sha256
";

/// A valid request made by openssl, for the hostile-input tests.
fn sample_request(dir: &Path) -> Vec<u8> {
    std::fs::write(dir.join("app.bin"), APP).unwrap();
    openssl(
        dir,
        &[
            "ts", "-query", "-data", "app.bin", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    std::fs::read(dir.join("req.tsq")).unwrap()
}

#[test]
fn parse_request_survives_hostile_input() {
    let dir = tempfile::tempdir().unwrap();
    let valid = sample_request(dir.path());
    let parsed = parse_request(&valid).unwrap();

    assert!(matches!(parse_request(&[]), Err(tsa::TsaError::Empty)));
    assert!(parse_request(b"GET / HTTP/1.1\r\n\r\n").is_err());
    assert!(parse_request(&[0x30]).is_err());
    assert!(parse_request(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(parse_request(&[0x30, 0x80, 0x00, 0x00]).is_err());

    // Every proper prefix is truncated.
    for len in 0..valid.len() {
        assert!(parse_request(&valid[..len]).is_err(), "prefix of {len}");
    }
    // Trailing data.
    let mut trailing = valid.clone();
    trailing.push(0);
    assert!(parse_request(&trailing).is_err());

    // Huge: refused on size before parsing.
    let mut huge = valid.clone();
    huge.resize(tsa::MAX_REQUEST_LEN + 1, 0);
    let err = parse_request(&huge).unwrap_err();
    assert!(matches!(err, tsa::TsaError::TooLarge { .. }), "{err}");
    assert_eq!(err.fail_bit(), fail::BAD_DATA_FORMAT);
    assert!(parse_request(&vec![0x30; 10 << 20]).is_err());

    // Every single-bit flip: an error, or (a flip inside the hash or nonce) a request that is
    // still well-formed and can be answered.
    let mut accepted = 0;
    for i in 0..valid.len() * 8 {
        let mut flipped = valid.clone();
        flipped[i / 8] ^= 0x80 >> (i % 8);
        if let Ok(req) = parse_request(&flipped) {
            accepted += 1;
            assert_eq!(req.hashed_message.len(), req.hash_alg.output_len());
            assert!(req != parsed);
        }
    }
    // Only flips in the hash value, nonce value and certReq value leave a valid request.
    assert!(accepted > 0 && accepted <= (32 + 8 + 1) * 8, "{accepted}");
}

/// Builds a TimeStampReq DER with the given parts.
fn request_der(
    version: u32,
    hash_oid: &str,
    hash: &[u8],
    nonce: Option<&[u8]>,
    critical_ext: bool,
) -> Vec<u8> {
    let req = tsa::TimeStampReq {
        version,
        message_imprint: tsa::MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifierOwned {
                oid: ObjectIdentifier::new_unwrap(hash_oid),
                parameters: None,
            },
            hashed_message: OctetString::new(hash).unwrap(),
        },
        req_policy: None,
        nonce: nonce.map(|n| der::asn1::Int::new(n).unwrap()),
        cert_req: false,
        extensions: critical_ext.then(|| {
            vec![x509_cert::ext::Extension {
                extn_id: ObjectIdentifier::new_unwrap("1.2.3.4"),
                critical: true,
                extn_value: OctetString::new(vec![0x05, 0x00]).unwrap(),
            }]
        }),
    };
    req.to_der().unwrap()
}

#[test]
fn parse_request_refuses_what_it_cannot_answer() {
    const SHA256: &str = "2.16.840.1.101.3.4.2.1";
    let ok = request_der(1, SHA256, &[7; 32], Some(&[1, 2, 3]), false);
    let req = parse_request(&ok).unwrap();
    assert_eq!(req.nonce.as_deref(), Some(&[1u8, 2, 3][..]));

    let cases: Vec<(Vec<u8>, u8)> = vec![
        (
            request_der(2, SHA256, &[7; 32], None, false),
            fail::BAD_REQUEST,
        ),
        (
            request_der(1, "1.3.14.3.2.26", &[7; 20], None, false),
            fail::BAD_ALG,
        ),
        (
            request_der(1, SHA256, &[7; 20], None, false),
            fail::BAD_DATA_FORMAT,
        ),
        (
            request_der(1, SHA256, &[7; 32], Some(&[1; 65]), false),
            fail::BAD_REQUEST,
        ),
        (
            request_der(1, SHA256, &[7; 32], None, true),
            fail::UNACCEPTED_EXTENSION,
        ),
    ];
    for (der, bit) in cases {
        let err = parse_request(&der).unwrap_err();
        assert_eq!(err.fail_bit(), bit, "{err}");
        // Each answer is a well-formed rejection.
        let resp = TimeStampResp::from_der(&rejection(err.fail_bit(), &err.to_string())).unwrap();
        assert_eq!(resp.status.status, PkiStatus::Rejection);
    }
}

#[test]
fn granted_response_checks_its_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    let tsa = Tsa::new(d);
    let req = parse_request(&sample_request(d)).unwrap();
    let signer = tsa.signer();

    assert!(granted_response(&req, &[0, 0], now(), DEFAULT_POLICY, &signer).is_err());
    assert!(granted_response(&req, &[], now(), DEFAULT_POLICY, &signer).is_err());
    assert!(granted_response(&req, &[1; 21], now(), DEFAULT_POLICY, &signer).is_err());
    assert!(granted_response(&req, &[1], -1, DEFAULT_POLICY, &signer).is_err());
    let mut tampered = req.clone();
    tampered.hashed_message[0] ^= 1;
    assert!(granted_response(&tampered, &[1], now(), DEFAULT_POLICY, &signer).is_err());
    let mut bad_nonce = req.clone();
    bad_nonce.nonce = Some(vec![0x00, 0x01]);
    assert!(granted_response(&bad_nonce, &[1], now(), DEFAULT_POLICY, &signer).is_err());

    // Leading zero bytes of the serial are dropped; a high bit gets its sign byte.
    let resp = granted_response(
        &req,
        &[0, 0, 0x80, 1],
        1_700_000_000,
        DEFAULT_POLICY,
        &signer,
    )
    .unwrap();
    let token = TimeStampResp::from_der(&resp)
        .unwrap()
        .time_stamp_token
        .unwrap();
    let sd: SignedData = token.content.decode_as().unwrap();
    let econtent = sd.encap_content_info.econtent.unwrap();
    let tst = TstInfo::from_der(econtent.decode_as::<OctetString>().unwrap().as_bytes()).unwrap();
    assert_eq!(tst.serial_number.as_bytes(), &[0x00, 0x80, 0x01]);
    assert_eq!(tst.gen_time.to_unix_duration().as_secs(), 1_700_000_000);
    assert_eq!(tst.nonce.unwrap().as_bytes(), req.nonce.as_deref().unwrap());
    assert_eq!(
        tst.message_imprint.to_der().unwrap(),
        req.message_imprint_der
    );
    assert!(!tst.ordering);
    assert_eq!(tst.version, 1);
}
