//! What an anonymous client can make kagi do (issue 11, item 5): 1,000 OCSP requests for one
//! serial, with and without a nonce, and 1,000 time-stamp requests without a credential, add at
//! most a handful of audit records and transparency-log entries. OCSP answers are signed once
//! and reused until their reuse time runs out, yet a revocation shows at once; the TSA answers
//! identities over HTTPS, and anonymous callers only when the operator opened it.

use crate::common;

use base64::Engine;
use common::Server;
use kagi_testkit::openssl::openssl;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Audit records and transparency-log entries so far.
fn log_sizes(server: &Server) -> (i64, i64) {
    let http = server.http();
    let r = http.request(
        "GET",
        "/api/v1/audit/checkpoint",
        Some(&server.token()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = r.json()["tree_size"].as_i64().unwrap();
    let r = http.request("GET", "/log/checkpoint", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let tlog = r.body.lines().nth(1).unwrap().parse().unwrap();
    (audit, tlog)
}

/// GET over the plain-HTTP listener, the body as bytes.
fn get_bytes(server: &Server, path: &str) -> Vec<u8> {
    let http = common::Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    let resp = http.get(path).call().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.into_body().read_to_vec().unwrap()
}

fn ocsp_get_path(request_der: &[u8]) -> String {
    let b64 = B64
        .encode(request_der)
        .replace('+', "%2B")
        .replace('=', "%3D");
    format!("/ocsp/{b64}")
}

/// A device certificate from the devices CA, written as leaf.pem with devices.pem and root.pem
/// beside it; returns its serial.
fn issue_leaf(server: &Server) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString("SN-OCSP-1".try_into().unwrap()),
    );
    let csr = params.serialize_request(&key).unwrap().der().to_vec();
    let r = server.http().post_raw(
        "/api/v1/ca/devices/profiles/device/issue",
        &server.token(),
        "application/pkcs10",
        &csr,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    std::fs::write(server.path("leaf.pem"), v["certificate"].as_str().unwrap()).unwrap();
    for ca in ["devices", "root"] {
        std::fs::write(
            server.path(&format!("{ca}.der")),
            get_bytes(server, &format!("/ca/{ca}.crt")),
        )
        .unwrap();
        openssl(
            server.root(),
            &[
                "x509",
                "-inform",
                "DER",
                "-in",
                &format!("{ca}.der"),
                "-out",
                &format!("{ca}.pem"),
            ],
        );
    }
    v["serial"].as_str().unwrap().to_string()
}

/// What openssl makes of an OCSP answer for leaf.pem.
fn openssl_reads(server: &Server, response: &[u8]) -> String {
    std::fs::write(server.path("resp.der"), response).unwrap();
    openssl(
        server.root(),
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-issuer",
            "devices.pem",
            "-cert",
            "leaf.pem",
            "-CAfile",
            "root.pem",
            "-no_nonce",
        ],
    )
}

#[test]
fn a_thousand_anonymous_ocsp_and_tsa_requests_add_a_handful_of_records() {
    let server = Server::start();
    let serial = issue_leaf(&server);
    let dir = server.root();
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            "devices.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "plain.req",
        ],
    );
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            "devices.pem",
            "-cert",
            "leaf.pem",
            "-nonce",
            "-reqout",
            "nonce.req",
        ],
    );
    let plain = std::fs::read(server.path("plain.req")).unwrap();
    let with_nonce = std::fs::read(server.path("nonce.req")).unwrap();
    assert_ne!(plain, with_nonce);
    std::fs::write(server.path("app.bin"), b"timestamp me").unwrap();
    openssl(
        dir,
        &[
            "ts", "-query", "-data", "app.bin", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let tsq = std::fs::read(server.path("req.tsq")).unwrap();

    let before = log_sizes(&server);

    // 1,000 OCSP requests from 8 clients at once, half of them with a nonce.
    let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|t| {
                let (server, plain, with_nonce) = (&server, &plain, &with_nonce);
                s.spawn(move || {
                    (0..125)
                        .map(|i| {
                            let req = if (t + i) % 2 == 0 { plain } else { with_nonce };
                            get_bytes(server, &ocsp_get_path(req))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers.len(), 1000);
    // One signed answer, reused for every request: the nonce is not echoed (RFC 5019).
    assert!(answers.iter().all(|a| a == &answers[0]));
    let out = openssl_reads(&server, &answers[0]);
    assert!(out.contains("Response verify OK"), "{out}");
    assert!(out.contains("leaf.pem: good"), "{out}");

    // 1,000 anonymous time-stamp requests, over both listeners: refused, nothing signed.
    let https = server.http();
    let public = common::Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    for i in 0..1000 {
        let r = if i % 2 == 0 {
            https.request("POST", "/tsa", None, Some(&tsq))
        } else {
            public.request("POST", "/tsa", None, Some(&tsq))
        };
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.error_code(), "unauthenticated");
        assert!(r.body.contains("open_tsa"), "{}", r.body);
    }

    let after = log_sizes(&server);
    let (audit_growth, tlog_growth) = (after.0 - before.0, after.1 - before.1);
    eprintln!(
        "1,000 anonymous OCSP + 1,000 anonymous /tsa requests: audit log {} -> {} (+{audit_growth}), transparency log {} -> {} (+{tlog_growth})",
        before.0, after.0, before.1, after.1
    );
    // The first answer's signature (one record, one entry) and the OCSP responder's key and
    // certificate, made on first use.
    assert!(audit_growth <= 5, "audit log grew by {audit_growth}");
    assert!(tlog_growth <= 5, "transparency log grew by {tlog_growth}");

    // Serials this CA never issued cost no signature either: `unauthorized`, unsigned.
    let mut unknown = plain.clone();
    let at = unknown
        .windows(2)
        .position(|w| w == [0x02, 0x10] || w == [0x02, 0x11])
        .map(|p| p + 3)
        .expect("the serial INTEGER in the CertID");
    unknown[at] ^= 0x01;
    let answer = get_bytes(&server, &ocsp_get_path(&unknown));
    assert_eq!(answer, [0x30, 0x03, 0x0a, 0x01, 0x06]);
    assert_eq!(log_sizes(&server), after);

    // A revocation shows at once: the next answer is a new one, and says revoked.
    server.kagi_ok(&["ca", "revoke", &serial, "--reason", "keyCompromise"]);
    let revoked = get_bytes(&server, &ocsp_get_path(&with_nonce));
    assert_ne!(revoked, answers[0]);
    let out = openssl_reads(&server, &revoked);
    assert!(out.contains("leaf.pem: revoked"), "{out}");
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn the_tsa_answers_identities_over_https_and_anonymous_callers_only_when_open() {
    let server = Server::start();
    std::fs::write(server.path("app.bin"), b"timestamp me").unwrap();
    openssl(
        server.root(),
        &[
            "ts", "-query", "-data", "app.bin", "-sha256", "-cert", "-out", "req.tsq",
        ],
    );
    let tsq = std::fs::read(server.path("req.tsq")).unwrap();
    let token = server.token();
    let public = common::Http::new(&server.public_url, &server.data().join("tls-ca.pem"));

    // With a credential over HTTPS: a token, and the audit record names who asked.
    let (status, reply) =
        server
            .http()
            .post_bytes("/tsa", Some(&token), "application/timestamp-query", &tsq);
    assert_eq!(status, 200);
    assert_granted(&server, &reply);
    // The same credential over plain HTTP is refused, not used.
    let r = public.post_raw("/tsa", &token, "application/timestamp-query", &tsq);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("HTTPS"), "{}", r.body);
    let audit = server
        .http()
        .request("GET", "/api/v1/audit?limit=10000", Some(&token), None);
    let stamped: Vec<serde_json::Value> = audit
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| serde_json::from_str::<serde_json::Value>(r["detail"].as_str()?).ok())
        .filter(|d| d["purpose"] == "timestamp")
        .collect();
    assert_eq!(stamped.len(), 1, "{stamped:?}");
    assert!(
        stamped[0]["requested_by"]
            .as_str()
            .is_some_and(|a| a.ends_with("admin")),
        "{stamped:?}"
    );

    // The operator opens the TSA: anonymous requests over plain HTTP are answered.
    let dir = server.stop();
    let server = Server::start_in(dir, &["--open-tsa"]);
    let public = common::Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    let (status, reply) = public.post_bytes("/tsa", None, "application/timestamp-query", &tsq);
    assert_eq!(status, 200);
    assert_granted(&server, &reply);
    // The open TSA signs, audits and logs each answer, so a source gets a burst, then 429.
    // The bucket refills at one a second, so what a slow (shared, busy) machine may grant on
    // top of the burst grows with the time the 80 requests took: the bound counts that time
    // rather than assume the loop is fast.
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = (0..80)
        .map(|_| {
            public
                .post_bytes("/tsa", None, "application/timestamp-query", &tsq)
                .0
        })
        .collect();
    let granted = statuses.iter().filter(|s| **s == 200).count();
    let throttled = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(granted + throttled, 80, "{statuses:?}");
    assert!(throttled > 0, "an anonymous source was never throttled");
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        granted <= 60 + refilled,
        "{granted} anonymous time-stamps granted in a burst of 60 plus {refilled} s of refill"
    );
}

/// openssl reads `reply` as a granted time-stamp response.
fn assert_granted(server: &Server, reply: &[u8]) {
    std::fs::write(server.path("resp.tsr"), reply).unwrap();
    let out = openssl(server.root(), &["ts", "-reply", "-in", "resp.tsr", "-text"]);
    assert!(out.contains("Status: Granted"), "{out}");
}

/// The OCSP responder's first-use herd (issue 16): 32 clients asking at once, before the
/// responder has a certificate, make one responder certificate between them, and all get an
/// answer signed with it.
#[test]
fn thirty_two_first_ocsp_requests_mint_one_responder_certificate() {
    let server = Server::start();
    issue_leaf(&server);
    openssl(
        server.root(),
        &[
            "ocsp",
            "-issuer",
            "devices.pem",
            "-cert",
            "leaf.pem",
            "-no_nonce",
            "-reqout",
            "first.req",
        ],
    );
    let req = std::fs::read(server.path("first.req")).unwrap();
    assert_eq!(
        responders(&server),
        0,
        "the herd must meet no responder yet"
    );
    let barrier = std::sync::Barrier::new(32);
    let answers: Vec<Vec<u8>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..32)
            .map(|_| {
                let (server, req, barrier) = (&server, &req, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    get_bytes(server, &ocsp_get_path(req))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "one signed answer, reused"
    );
    assert_eq!(responders(&server), 1);
}

/// How many OCSP responder certificates the devices CA issued.
fn responders(server: &Server) -> usize {
    let listed: serde_json::Value = serde_json::from_str(
        &server
            .http()
            .request(
                "GET",
                "/api/v1/ca/devices/certificates?limit=1000",
                Some(&server.token()),
                None,
            )
            .body,
    )
    .unwrap();
    listed["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["profile"] == "ocsp-signing")
        .count()
}
