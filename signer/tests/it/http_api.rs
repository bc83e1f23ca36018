//! The HTTP API's contract through the real server: one error shape everywhere, the right
//! statuses, and the CLI's `error: <code>: ...` on failure.

use crate::common;
// These tests share one instance (common::Server::shared): their key and credential names
// differ, and what they count (one key's uses, the audit sequence) no other test disturbs.

use common::{stderr, Server};

#[test]
fn errors_have_one_shape_and_fitting_status() {
    let server = Server::shared();
    let http = server.http();
    let token = server.token();
    let t = Some(token.as_str());

    let health = http.request("GET", "/healthz", None, None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["sealed"], false);

    // Bad JSON, an unknown field, and a wrong type: all 400 with the error shape.
    for body in [
        &b"{not json"[..],
        br#"{"key":"k","digest":"00","bogus":1}"#,
        br#"{"key":5,"digest":"00"}"#,
    ] {
        let r = http.request("POST", "/api/v1/sign", t, Some(body));
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.error_code(), "bad_json");
    }

    // Oversize body: 413, before it is parsed.
    let big = format!(r#"{{"key":"{}","digest":"00"}}"#, "a".repeat(70 * 1024));
    let r = http.request("POST", "/api/v1/sign", t, Some(big.as_bytes()));
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.error_code(), "payload_too_large");

    // No token, and a wrong token: 401.
    let r = http.request("GET", "/api/v1/keys", None, None);
    assert_eq!(r.status, 401);
    assert_eq!(r.error_code(), "unauthenticated");
    let r = http.request(
        "POST",
        "/api/v1/sign",
        None,
        Some(br#"{"key":"k","digest":"00"}"#),
    );
    assert_eq!(r.status, 401);
    let r = http.request("GET", "/api/v1/keys", Some("kagi_0000_not-a-token"), None);
    assert_eq!(r.status, 401, "{}", r.body);
    r.error_code();

    // Unknown key and unknown route: 404.
    let r = http.request("GET", "/api/v1/keys/nope", t, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "key_not_found");
    let r = http.request(
        "POST",
        "/api/v1/sign",
        t,
        Some(br#"{"key":"nope","digest":"00"}"#),
    );
    assert_eq!(r.status, 404);
    let r = http.request("GET", "/api/v1/no-such-thing", t, None);
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "not_found");

    // Inputs the service checks itself.
    let r = http.request(
        "POST",
        "/api/v1/keys",
        t,
        Some(br#"{"name":"k","alg":"dsa-1024"}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unknown_algorithm");
    let r = http.request(
        "POST",
        "/api/v1/keys",
        t,
        Some(br#"{"name":"k","alg":"ec-p256","not_after":"soon"}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_time");
    let r = http.request(
        "POST",
        "/api/v1/keys",
        t,
        Some(br#"{"name":"k","alg":"ec-p256","usage_limit":1,"not_after":"2099-01-01T00:00:00Z"}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["usage_limit"], 1);
    let r = http.request(
        "POST",
        "/api/v1/sign",
        t,
        Some(br#"{"key":"k","digest":"zz"}"#),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "bad_digest");
    let digest = "ab".repeat(32);
    let body = format!(r#"{{"key":"k","digest":"{digest}","format":"pgp"}}"#);
    let r = http.request("POST", "/api/v1/sign", t, Some(body.as_bytes()));
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "unsupported_format");
    // cms needs the key's certificate first.
    let body = format!(r#"{{"key":"k","digest":"{digest}","format":"cms"}}"#);
    let r = http.request("POST", "/api/v1/sign", t, Some(body.as_bytes()));
    assert_eq!(r.status, 409);
    assert_eq!(r.error_code(), "conflict");
    let body = format!(r#"{{"key":"k","digest":"{digest}","format":"raw"}}"#);
    let r = http.request("POST", "/api/v1/sign", t, Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["usage_count"], 1);
    assert_eq!(v["usage_limit"], 1);
    assert_eq!(v["digest_alg"], "sha256");
    let r = http.request("POST", "/api/v1/sign", t, Some(body.as_bytes()));
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.error_code(), "usage_limit_reached");

    // The CLI reports failures as `error: <code>: <message>` and exits non-zero.
    let out = server.kagi(&["key", "show", "nope"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("error: key_not_found: "),
        "{}",
        stderr(&out)
    );

    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK:"), "{audit}");
}

#[test]
fn discovery_routes_and_audit_export() {
    let server = Server::shared();
    let http = server.http();
    let token = server.token();
    let t = Some(token.as_str());

    let r = http.request("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/sign"]["post"].is_object());
    for path in [
        "/api/v1/ca",
        "/log/checkpoint",
        "/tsa",
        "/api/v1/sigstore/trusted_root.json",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }

    let r = http.request("GET", "/ui", None, None);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains("<html") && r.body.contains("/api/v1"),
        "{}",
        r.body
    );

    let r = http.request("GET", "/api/v1/keys/import-key", t, None);
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("-----BEGIN PUBLIC KEY-----"));

    let r = http.request(
        "POST",
        "/api/v1/credentials",
        t,
        Some(br#"{"name":"ci","roles":["user"]}"#),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let ci_token = r.json()["token"].as_str().unwrap().to_string();
    // A user may not create keys.
    let r = http.request(
        "POST",
        "/api/v1/keys",
        Some(&ci_token),
        Some(br#"{"name":"x","alg":"ec-p256"}"#),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "forbidden");
    let list = server.kagi_ok(&["credential", "list"]);
    assert!(list.contains("ci") && list.contains("admin"), "{list}");

    server.kagi_ok(&["key", "create", "--name", "doomed", "--alg", "ec-p256"]);
    let listed = server.kagi_ok(&["key", "list"]);
    assert!(
        listed.contains("doomed") && listed.contains("0/∞"),
        "{listed}"
    );
    server.kagi_ok(&["key", "destroy", "doomed"]);
    let out = server.kagi(&["key", "show", "doomed"]);
    assert!(!out.status.success());

    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    let lines = std::fs::read_to_string(server.path("audit.jsonl")).unwrap();
    let seqs: Vec<i64> = lines
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert!(seqs.len() >= 4, "{lines}");
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let r = http.request("GET", "/api/v1/audit/checkpoint", t, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["tree_size"].as_i64().unwrap() >= seqs.len() as i64);
}

#[test]
fn import_sign_and_wrapped_export_through_the_cli() {
    let server = Server::shared();
    let key = server.path("imp.pem");
    common::run_ok(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key),
    );
    server.kagi_ok(&[
        "key",
        "import",
        "--name",
        "imp",
        "--alg",
        "ec-p256",
        "--pkcs8",
        "imp.pem",
        "--exportable-under-wrap",
    ]);
    std::fs::write(server.path("a.bin"), b"imported").unwrap();
    server.kagi_ok(&["sign", "--key", "imp", "a.bin", "-o", "a.sig"]);
    // The signature verifies under the public key derived from the original private key.
    common::run_ok(
        std::process::Command::new("openssl")
            .current_dir(server.root())
            .args(["pkey", "-in", "imp.pem", "-pubout", "-out", "imp.pub"]),
    );
    let out = common::run_ok(
        std::process::Command::new("openssl")
            .current_dir(server.root())
            .args([
                "dgst",
                "-sha256",
                "-verify",
                "imp.pub",
                "-signature",
                "a.sig",
                "a.bin",
            ]),
    );
    assert!(out.contains("Verified OK"), "{out}");

    // Export only under a trusted wrapping key.
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "untrusted",
        "--alg",
        "rsa-3072",
        "--operations",
        "wrap",
    ]);
    let out = server.kagi(&[
        "key",
        "export-wrapped",
        "imp",
        "--wrapping-key",
        "untrusted",
        "-o",
        "w.bin",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("untrusted_wrapping_key"),
        "{}",
        stderr(&out)
    );
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "wrapper",
        "--alg",
        "rsa-3072",
        "--trusted",
        "--operations",
        "wrap",
    ]);
    server.kagi_ok(&[
        "key",
        "export-wrapped",
        "imp",
        "--wrapping-key",
        "wrapper",
        "-o",
        "w.bin",
    ]);
    let wrapped = std::fs::read(server.path("w.bin")).unwrap();
    assert!(
        wrapped.len() > 384,
        "RSA-3072 OAEP block plus the wrapped key"
    );
}
