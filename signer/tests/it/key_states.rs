//! SP 800-57 key states through the real binary (issue 17, acceptance 2 and 3): a suspended key
//! refuses to sign and signs again once resumed; a deactivated key, or one past its signing
//! period, signs nothing and its signatures still verify; a compromised key cannot be brought
//! back; forbidden transitions answer 409 key_state_transition over HTTP. The signing period
//! test runs on SQLite and PostgreSQL.

use crate::common;

use common::{run_ok, stderr, Database, Server};
use kagi_testkit::openssl::openssl;
use std::process::Command;

fn sign(server: &Server, key: &str, out: &str) -> std::process::Output {
    server.kagi(&["sign", "--key", key, "--format", "raw", "f.bin", "-o", out])
}

fn refused_with(server: &Server, key: &str, code: &str) {
    let out = sign(server, key, "refused.sig");
    assert!(!out.status.success(), "{key} signed");
    assert!(stderr(&out).contains(code), "{}", stderr(&out));
    assert!(!server.path("refused.sig").exists());
}

/// `openssl dgst -verify` with the key's published public key: the recipient's side.
fn openssl_verifies(server: &Server, key: &str, sig: &str) {
    let pem = server.kagi_ok(&["key", "public", key]);
    std::fs::write(server.path("pub.pem"), &pem).unwrap();
    let verified = run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(server.path("pub.pem"))
            .arg("-signature")
            .arg(server.path(sig))
            .arg(server.path("f.bin")),
    );
    assert!(verified.contains("Verified OK"), "{verified}");
}

fn state_of(server: &Server, key: &str) -> String {
    let show = server.kagi_ok(&["key", "show", key]);
    show.lines()
        .find_map(|l| l.strip_prefix("state:"))
        .unwrap_or_else(|| panic!("{show}"))
        .trim()
        .to_string()
}

#[test]
fn suspend_resume_deactivate_and_compromise_through_the_cli_and_http() {
    let server = Server::start();
    std::fs::write(server.path("f.bin"), b"release 1.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "fw", "--alg", "ec-p256"]);
    assert!(sign(&server, "fw", "a.sig").status.success());

    // Suspended: refuses, then signs again once resumed.
    server.kagi_ok(&["key", "disable", "fw"]);
    assert_eq!(state_of(&server, "fw"), "suspended");
    refused_with(&server, "fw", "key_suspended");
    server.kagi_ok(&["key", "enable", "fw"]);
    assert_eq!(state_of(&server, "fw"), "active");
    assert!(sign(&server, "fw", "b.sig").status.success());

    // Deactivated: signs nothing, and what it signed still verifies.
    let out = server.kagi_ok(&["key", "deactivate", "fw"]);
    assert!(out.contains("deactivated"), "{out}");
    assert_eq!(state_of(&server, "fw"), "deactivated");
    refused_with(&server, "fw", "key_deactivated");
    openssl_verifies(&server, "fw", "b.sig");
    let json = server
        .http()
        .request("GET", "/api/v1/keys/fw", Some(&server.token()), None)
        .json();
    assert_eq!(json["lifecycle"], "deactivated", "{json}");
    assert_eq!(json["state"], "deactivated", "{json}");
    assert_eq!(json["active"], false, "{json}");

    // No way back from deactivated: 409 key_state_transition naming the allowed states.
    let back = server.kagi(&["key", "enable", "fw"]);
    assert!(!back.status.success());
    assert!(
        stderr(&back).contains("key_state_transition")
            && stderr(&back).contains("compromised, destroyed"),
        "{}",
        stderr(&back)
    );
    let http = server.http();
    let token = server.token();
    for change in ["resume", "suspend", "deactivate"] {
        let r = http.request(
            "POST",
            &format!("/api/v1/keys/fw/{change}"),
            Some(&token),
            Some(b"{}"),
        );
        assert_eq!(r.status, 409, "{change}: {}", r.body);
        assert_eq!(r.error_code(), "key_state_transition", "{change}");
    }

    // Compromised: needs a reason, then nothing but destroy.
    let r = http.request(
        "POST",
        "/api/v1/keys/fw/compromise",
        Some(&token),
        Some(br#"{"reason": ""}"#),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    server.kagi_ok(&["key", "compromise", "fw", "--reason", "build host breached"]);
    assert_eq!(state_of(&server, "fw"), "compromised");
    refused_with(&server, "fw", "key_compromised");
    for change in ["resume", "suspend", "deactivate"] {
        let r = http.request(
            "POST",
            &format!("/api/v1/keys/fw/{change}"),
            Some(&token),
            Some(b"{}"),
        );
        assert_eq!(r.status, 409, "{change}: {}", r.body);
        assert_eq!(r.error_code(), "key_state_transition", "{change}");
        assert!(r.body.contains("only become destroyed"), "{}", r.body);
    }
    let again = server.kagi(&["key", "compromise", "fw", "--reason", "twice"]);
    assert!(
        stderr(&again).contains("key_state_transition"),
        "{}",
        stderr(&again)
    );
    server.kagi_ok(&["key", "destroy", "fw"]);

    // Every change is in the audit log, which verifies.
    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK:"), "{audit}");
    let log = http.request("GET", "/api/v1/audit?limit=1000", Some(&token), None);
    for action in [
        "key.suspend",
        "key.resume",
        "key.deactivate",
        "key.compromise",
        "key.destroy",
    ] {
        assert!(log.body.contains(action), "{action} missing: {}", log.body);
    }
    assert!(log.body.contains("build host breached"));
}

fn signing_period_ends(server: &Server) {
    std::fs::write(server.path("f.bin"), b"release 2.0").unwrap();
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let rfc3339 = run_ok(Command::new("date").args([
        "-u",
        "-d",
        &format!("@{until}"),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]));
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "short",
        "--alg",
        "ec-p256",
        "--not-after",
        rfc3339.trim(),
    ]);
    assert!(sign(server, "short", "early.sig").status.success());
    assert_eq!(state_of(server, "short"), "active");
    // Wait past the end of the signing period (no timing assertion: just past it).
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= until
    {
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    let out = sign(server, "short", "late.sig");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("key_not_active") && stderr(&out).contains("signing period ended"),
        "{}",
        stderr(&out)
    );
    assert_eq!(state_of(server, "short"), "deactivated");
    openssl_verifies(server, "short", "early.sig");
}

#[test]
fn past_its_signing_period_a_key_refuses_to_sign_and_still_verifies_sqlite() {
    signing_period_ends(&Server::start());
}

#[test]
fn past_its_signing_period_a_key_refuses_to_sign_and_still_verifies_postgres() {
    let db = Database::create();
    let url = db.url();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &url]);
    signing_period_ends(&server);
}

/// What openssl makes of kagi's OCSP answer for `cert` (asked over the real socket).
fn ocsp_status(server: &Server, cert: &str) -> String {
    let dir = server.root();
    openssl(
        dir,
        &[
            "ocsp",
            "-issuer",
            "issuer.pem",
            "-cert",
            cert,
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    let req = std::fs::read(server.path("req.der")).unwrap();
    let (status, resp) = server
        .http()
        .post_bytes("/ocsp", None, "application/ocsp-request", &req);
    assert_eq!(status, 200);
    std::fs::write(server.path("resp.der"), resp).unwrap();
    openssl(
        dir,
        &[
            "ocsp",
            "-respin",
            "resp.der",
            "-issuer",
            "issuer.pem",
            "-cert",
            cert,
            "-CAfile",
            "root.pem",
            "-no_nonce",
        ],
    )
}

#[test]
fn compromising_a_code_signing_key_revokes_its_three_certificates() {
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "cs", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "create", "--name", "bystander", "--alg", "ec-p256"]);
    let certs = ["c1.pem", "c2.pem", "c3.pem"];
    for c in certs {
        server.kagi_ok(&["key", "certify", "cs", "-o", c]);
    }
    server.kagi_ok(&["key", "certify", "bystander", "-o", "other.pem"]);
    server.kagi_ok(&["ca", "show", "code-signing", "-o", "issuer.pem"]);
    server.kagi_ok(&["ca", "show", "root", "-o", "root.pem"]);
    let serial_of = |c: &str| {
        openssl(server.root(), &["x509", "-in", c, "-noout", "-serial"])
            .trim()
            .trim_start_matches("serial=")
            .to_uppercase()
    };
    let serials: Vec<String> = certs.iter().map(|c| serial_of(c)).collect();
    assert_eq!(
        serials
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3,
        "three certificates: {serials:?}"
    );
    for c in certs {
        assert!(ocsp_status(&server, c).contains(": good"));
    }
    std::fs::write(server.path("app.bin"), b"firmware 4.0").unwrap();
    server.kagi_ok(&[
        "sign", "--key", "cs", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let out = server.kagi_ok(&["verify", "app.bin", "-s", "app.p7s"]);
    assert!(out.contains("revocation OK"), "{out}");

    server.kagi_ok(&[
        "key",
        "compromise",
        "cs",
        "--reason",
        "signing host breached",
    ]);

    // No new certificate vouches for it, and it signs nothing.
    let out = server.kagi(&["key", "certify", "cs", "-o", "c4.pem"]);
    assert!(stderr(&out).contains("key_compromised"), "{}", stderr(&out));
    let out = server.kagi(&[
        "sign", "--key", "cs", "--format", "cms", "app.bin", "-o", "late.p7s",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("keyCompromise"), "{}", stderr(&out));
    let out = server.kagi(&[
        "sign", "--key", "cs", "--format", "raw", "app.bin", "-o", "late.sig",
    ]);
    assert!(stderr(&out).contains("key_compromised"), "{}", stderr(&out));
    // kagi verify refuses the CMS signature made with it.
    let out = server.kagi(&["verify", "app.bin", "-s", "app.p7s"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("REVOKED") && err.contains("keyCompromise"),
        "{err}"
    );

    // OCSP: revoked, keyCompromise, for all three; the other key's certificate stays good.
    for c in certs {
        let text = ocsp_status(&server, c);
        assert!(
            text.contains(": revoked") && text.contains("Reason: keyCompromise"),
            "{c}: {text}"
        );
    }
    assert!(ocsp_status(&server, "other.pem").contains(": good"));
    // A database writer who puts the certificate rows back to "not revoked" changes nothing:
    // the revocations are read from the compromise's verified audit record.
    {
        use diesel::{Connection, RunQueryDsl};
        let db = server.data().join("kagi.db");
        let mut c = kagi_hsm_core::store::AnyConnection::establish(&db.to_string_lossy()).unwrap();
        diesel::sql_query("PRAGMA busy_timeout = 10000")
            .execute(&mut c)
            .unwrap();
        let n = diesel::sql_query(
            "UPDATE certificates SET revoked_at = NULL, revocation_reason = NULL",
        )
        .execute(&mut c)
        .unwrap();
        assert!(n >= 3);
    }
    for c in certs {
        let text = ocsp_status(&server, c);
        assert!(text.contains("Reason: keyCompromise"), "{c}: {text}");
    }
    // The refetched CRL lists them with that reason, and not the other one.
    let crl = server
        .http()
        .get("/crl/code-signing.crl")
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    std::fs::write(server.path("cs.crl"), crl).unwrap();
    let text = openssl(
        server.root(),
        &["crl", "-inform", "DER", "-in", "cs.crl", "-noout", "-text"],
    )
    .to_uppercase();
    for s in &serials {
        assert!(text.contains(s.as_str()), "{s} missing: {text}");
    }
    assert!(text.contains("KEY COMPROMISE"), "{text}");
    assert!(!text.contains(&serial_of("other.pem")), "{text}");
    // One audited change, which names the certificates.
    let log = server.http().request(
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&server.token()),
        None,
    );
    let records = log.json();
    let compromise: Vec<&serde_json::Value> = records
        .as_array()
        .or_else(|| records["records"].as_array())
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "key.compromise")
        .collect();
    assert_eq!(compromise.len(), 1, "{records}");
    let detail = compromise[0]["detail"].to_string().to_uppercase();
    for s in &serials {
        assert!(detail.contains(s.as_str()), "{detail}");
    }
}

/// Whoever holds a compromised key can still prove possession of it in a CSR. After the
/// compromise, no CA of kagi issues a certificate for that public key, whatever profile.
#[test]
fn a_csr_for_a_compromised_key_gets_no_certificate() {
    let server = Server::start();
    let dir = server.root();
    // A key kagi holds, imported from a PKCS#8 file the test keeps: the leaked copy.
    openssl(
        dir,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "leaked.pem",
        ],
    );
    server.kagi_ok(&[
        "key",
        "import",
        "--name",
        "leaked",
        "--alg",
        "ec-p256",
        "--pkcs8",
        "leaked.pem",
    ]);
    let csr = |out: &str| {
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-key",
                "leaked.pem",
                "-subj",
                "/CN=sensor/serialNumber=SN-LEAKED",
                "-outform",
                "DER",
                "-out",
                out,
            ],
        );
        std::fs::read(server.path(out)).unwrap()
    };
    let issue = |der: &[u8]| {
        server.http().post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            &server.token(),
            "application/pkcs10",
            der,
        )
    };
    let before = issue(&csr("before.csr"));
    assert_eq!(before.status, 201, "{}", before.body);
    server.kagi_ok(&[
        "key",
        "compromise",
        "leaked",
        "--reason",
        "the laptop holding its PKCS#8 was stolen",
    ]);
    let after = issue(&csr("after.csr"));
    assert_eq!(after.status, 409, "{}", after.body);
    assert_eq!(after.error_code(), "key_compromised", "{}", after.body);
    // Its limit is not a thing to change any more, and the answer says why.
    let out = server.kagi(&["key", "set-limit", "leaked", "--usage-limit", "5"]);
    assert!(stderr(&out).contains("key_compromised"), "{}", stderr(&out));
}
