//! Per-key authorization through the real binary and a real socket (issue 17, acceptance 1):
//! `kagi key create --key-auth`, `kagi sign --key-auth-file`, the Kagi-Key-Auth header and the
//! key_password field; wrong passwords answer 403 key_auth_wrong, then 429 key_auth_locked
//! with Retry-After; a stranger and a caller the policy refuses cannot count a guess; the
//! password changes with the old one. On SQLite and PostgreSQL.

use crate::common;

use common::{run_ok, stderr, Database, Server};
use std::process::Command;

const RIGHT: &str = "correct horse battery";

fn token_of(out: String) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("kagi_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string()
}

fn failures(server: &Server) -> usize {
    let log = server.http().request(
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&server.token()),
        None,
    );
    assert_eq!(log.status, 200, "{}", log.body);
    log.body.matches("\"key.auth_failed\"").count()
}

fn sign_body(digest: &str, password: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({ "key": "owned", "digest": digest });
    if let Some(p) = password {
        body["key_password"] = serde_json::json!(p);
    }
    body.to_string().into_bytes()
}

fn per_key_authorization(server: &Server) {
    std::fs::write(server.path("f.bin"), b"release 2.0").unwrap();
    std::fs::write(server.path("pw.txt"), format!("{RIGHT}\n")).unwrap();
    std::fs::write(server.path("wrong.txt"), "not the password\n").unwrap();
    std::fs::write(server.path("new.txt"), "a brand new passphrase\n").unwrap();
    let created = server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "owned",
        "--alg",
        "ec-p256",
        "--key-auth",
        "--key-auth-file",
        "pw.txt",
    ]);
    assert!(created.contains("own password:          yes"), "{created}");
    let http = server.http();
    let token = server.token();
    let info = http
        .request("GET", "/api/v1/keys/owned", Some(&token), None)
        .json();
    assert_eq!(info["key_auth"], true, "{info}");

    // With the password the key signs, and the signature verifies with its public key.
    server.kagi_ok(&[
        "sign",
        "--key",
        "owned",
        "--key-auth-file",
        "pw.txt",
        "f.bin",
        "-o",
        "a.sig",
    ]);
    let pem = server.kagi_ok(&["key", "public", "owned"]);
    std::fs::write(server.path("pub.pem"), &pem).unwrap();
    let verified = run_ok(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(server.path("pub.pem"))
            .arg("-signature")
            .arg(server.path("a.sig"))
            .arg(server.path("f.bin")),
    );
    assert!(verified.contains("Verified OK"), "{verified}");

    // Without it, or with a wrong one, the administrator (every role) gets nothing.
    let out = server.kagi(&["sign", "--key", "owned", "f.bin", "-o", "b.sig"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("key_auth_required"),
        "{}",
        stderr(&out)
    );
    let out = server.kagi(&[
        "sign",
        "--key",
        "owned",
        "--key-auth-file",
        "wrong.txt",
        "f.bin",
        "-o",
        "b.sig",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("key_auth_wrong"), "{}", stderr(&out));
    assert!(!server.path("b.sig").exists());
    assert_eq!(failures(server), 1);

    // The header works as the field does.
    let digest = "11".repeat(32);
    let (ok, _) = http.post_json_with(
        "/api/v1/sign",
        &token,
        &[("Kagi-Key-Auth", RIGHT)],
        &sign_body(&digest, None),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);

    // A stranger at the port cannot count a guess: 401 before any key is touched.
    let stranger = http.request(
        "POST",
        "/api/v1/sign",
        None,
        Some(&sign_body(&digest, Some("a stranger's guess"))),
    );
    assert_eq!(stranger.status, 401, "{}", stranger.body);
    // Nor can a pipeline the policy does not let use keys.
    let ci =
        token_of(server.kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"]));
    let refused = http.request(
        "POST",
        "/api/v1/sign",
        Some(&ci),
        Some(&sign_body(&digest, Some("a pipeline's guess"))),
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), "policy_denied");
    assert_eq!(
        failures(server),
        1,
        "neither the stranger nor the pipeline counted a guess"
    );

    // Five wrong ones in a row: 403 key_auth_wrong four times, then 429 with Retry-After,
    // and the right password waits too.
    for n in 1..=4 {
        let (r, _) = http.post_json_with(
            "/api/v1/sign",
            &token,
            &[("Kagi-Key-Auth", "wrong wrong wrong")],
            &sign_body(&digest, None),
        );
        assert_eq!(r.status, 403, "{n}: {}", r.body);
        assert_eq!(r.error_code(), "key_auth_wrong");
    }
    let (locked, retry) = http.post_json_with(
        "/api/v1/sign",
        &token,
        &[],
        &sign_body(&digest, Some("wrong wrong wrong")),
    );
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert_eq!(locked.error_code(), "key_auth_locked");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let (still, _) = http.post_json_with(
        "/api/v1/sign",
        &token,
        &[],
        &sign_body(&digest, Some(RIGHT)),
    );
    assert_eq!(still.error_code(), "key_auth_locked", "{}", still.body);
}

fn password_change(server: &Server) {
    // The password changes only with the old one.
    let out = server.kagi(&[
        "key",
        "set-auth",
        "changing",
        "--key-auth-file",
        "wrong.txt",
        "--new-key-auth-file",
        "new.txt",
    ]);
    assert!(stderr(&out).contains("key_auth_wrong"), "{}", stderr(&out));
    server.kagi_ok(&[
        "key",
        "set-auth",
        "changing",
        "--key-auth-file",
        "pw.txt",
        "--new-key-auth-file",
        "new.txt",
    ]);
    let old = server.kagi(&[
        "sign",
        "--key",
        "changing",
        "--key-auth-file",
        "pw.txt",
        "f.bin",
        "-o",
        "c.sig",
    ]);
    assert!(stderr(&old).contains("key_auth_wrong"), "{}", stderr(&old));
    server.kagi_ok(&[
        "sign",
        "--key",
        "changing",
        "--key-auth-file",
        "new.txt",
        "f.bin",
        "-o",
        "c.sig",
    ]);
    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK:"), "{audit}");
}

fn run(server: &Server) {
    per_key_authorization(server);
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "changing",
        "--alg",
        "ec-p256",
        "--key-auth",
        "--key-auth-file",
        "pw.txt",
    ]);
    password_change(server);
}

#[test]
fn a_key_with_its_own_password_through_the_cli_and_http_sqlite() {
    run(&Server::start());
}

#[test]
fn a_key_with_its_own_password_through_the_cli_and_http_postgres() {
    let db = Database::create();
    let url = db.url();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &url]);
    run(&server);
}
