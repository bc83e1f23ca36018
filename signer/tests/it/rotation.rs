//! `kagi key rotate` through the real binary and a real socket (issue 17, acceptance 5): new
//! signatures verify with the new public key and the old version's earlier ones with the old
//! public key (both checked by `openssl dgst -verify`), and a limit of 10 per name allows 10
//! signatures across both versions, not 20. Then a database writer zeroing counters and
//! reviving the old row between restarts, a pipeline trying to rotate, and the re-issued
//! code-signing certificate. SQLite and PostgreSQL.

use crate::common;

use common::{run_ok, stderr, Database, Server};
use diesel::prelude::*;
use kagi_hsm_core::store::AnyConnection;
use kagi_testkit::openssl::openssl;
use std::process::Command;

fn sign(server: &Server, key: &str, out: &str) -> std::process::Output {
    server.kagi(&["sign", "--key", key, "--format", "raw", "f.bin", "-o", out])
}

/// `openssl dgst -sha256 -verify PEM -signature SIG f.bin`: whether openssl says Verified OK.
fn openssl_verifies(server: &Server, pem: &str, sig: &str) -> bool {
    let out = Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(server.path(pem))
        .arg("-signature")
        .arg(server.path(sig))
        .arg(server.path("f.bin"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Verified OK") || text.contains("Verification failure"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success() && text.contains("Verified OK")
}

fn field(show: &str, name: &str) -> String {
    show.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in {show}"))
        .trim()
        .to_string()
}

fn exec(url: &str, sqls: &[&str]) {
    let mut c = AnyConnection::establish(url).unwrap();
    if !url.starts_with("postgres") {
        diesel::sql_query("PRAGMA busy_timeout = 10000")
            .execute(&mut c)
            .unwrap();
    }
    for sql in sqls {
        diesel::sql_query(*sql).execute(&mut c).unwrap();
    }
}

fn acceptance_5(extra: &[&str], url: impl Fn(&Server) -> String) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    std::fs::write(server.path("f.bin"), b"firmware 7.1").unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "fw",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "10",
    ]);
    let v1_show = server.kagi_ok(&["key", "show", "fw"]);
    assert_eq!(field(&v1_show, "version"), "1");
    let v1_id = field(&v1_show, "id");
    for n in 0..6 {
        let out = sign(&server, "fw", &format!("old{n}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    server.kagi_ok(&["key", "public", "fw", "-o", "v1.pem"]);

    let out = server.kagi_ok(&["key", "rotate", "fw"]);
    assert!(out.contains("version 2"), "{out}");
    let show = server.kagi_ok(&["key", "show", "fw"]);
    assert_eq!(field(&show, "version"), "2");
    assert_ne!(field(&show, "id"), v1_id);
    assert_eq!(field(&show, "usage count"), "6", "{show}");
    assert_eq!(field(&show, "usage limit"), "10");
    assert!(show.contains("earlier versions"), "{show}");
    let earlier = show
        .lines()
        .find(|l| l.contains(&v1_id))
        .unwrap_or_else(|| panic!("{show}"));
    assert!(earlier.trim_start().starts_with('1') && earlier.contains("deactivated"));
    server.kagi_ok(&["key", "public", "fw", "-o", "v2.pem"]);
    server.kagi_ok(&[
        "key",
        "public",
        "fw",
        "--version",
        "1",
        "-o",
        "v1-again.pem",
    ]);
    let pem = |p: &str| std::fs::read_to_string(server.path(p)).unwrap();
    assert_eq!(pem("v1.pem"), pem("v1-again.pem"));
    assert_ne!(pem("v1.pem"), pem("v2.pem"));
    let missing = server.kagi(&["key", "public", "fw", "--version", "3"]);
    assert!(
        stderr(&missing).contains("key_not_found"),
        "{}",
        stderr(&missing)
    );

    // The list shows the name once, at version 2.
    let listed = server.kagi_ok(&["key", "list"]);
    let rows: Vec<&str> = listed.lines().filter(|l| l.starts_with("fw ")).collect();
    assert_eq!(rows.len(), 1, "{listed}");
    assert_eq!(
        rows[0].split_whitespace().collect::<Vec<_>>()[..4],
        ["fw", "ec-p256", "active", "2"],
        "{listed}"
    );
    let http = server.http();
    let token = server.token();
    let list = http
        .request("GET", "/api/v1/keys", Some(&token), None)
        .json();
    let fws: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["label"] == "fw")
        .collect();
    assert_eq!(fws.len(), 1, "{list}");
    assert_eq!(fws[0]["version"], 2);

    // Three more through the CLI, one over HTTP, which names the version: 10 in all.
    for n in 0..3 {
        let out = sign(&server, "fw", &format!("new{n}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let digest = run_ok(Command::new("sha256sum").arg(server.path("f.bin")));
    let digest = digest.split_whitespace().next().unwrap();
    let r = http.request(
        "POST",
        "/api/v1/sign",
        Some(&token),
        Some(format!(r#"{{"key": "fw", "digest": "{digest}"}}"#).as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["key_version"], 2, "{}", r.body);
    assert_eq!(r.json()["usage_count"], 10, "{}", r.body);
    use base64::Engine;
    let sig = base64::engine::general_purpose::STANDARD
        .decode(r.json()["signature"].as_str().unwrap())
        .unwrap();
    std::fs::write(server.path("new3.sig"), sig).unwrap();

    // The 11th across both versions is refused.
    let out = sign(&server, "fw", "eleventh.sig");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("usage_limit_reached"),
        "{}",
        stderr(&out)
    );
    assert!(!server.path("eleventh.sig").exists());

    // openssl: old signatures with the old public key, new ones with the new one, not across.
    for n in 0..6 {
        let sig = format!("old{n}.sig");
        assert!(openssl_verifies(&server, "v1.pem", &sig), "{sig}");
        assert!(!openssl_verifies(&server, "v2.pem", &sig), "{sig}");
    }
    for n in 0..4 {
        let sig = format!("new{n}.sig");
        assert!(openssl_verifies(&server, "v2.pem", &sig), "{sig}");
        assert!(!openssl_verifies(&server, "v1.pem", &sig), "{sig}");
    }

    // A pipeline may not rotate; nor can a deactivated key be rotated.
    let ci = server
        .kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"])
        .trim()
        .to_string();
    let out = server.kagi_as(&ci, &["key", "rotate", "fw"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("forbidden"), "{}", stderr(&out));
    server.kagi_ok(&["key", "create", "--name", "retired", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "deactivate", "retired"]);
    let r = http.request(
        "POST",
        "/api/v1/keys/retired/rotate",
        Some(&token),
        Some(b"{}"),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "key_state_transition");

    // A second key spends its whole limit with version 1, then is rotated: version 2 starts
    // spent (the rotation's audit record vouches for 10 on the new id).
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "g",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "10",
    ]);
    for _ in 0..10 {
        assert!(sign(&server, "g", "g.sig").status.success());
    }
    server.kagi_ok(&["key", "rotate", "g"]);
    let out = sign(&server, "g", "g11.sig");
    assert!(
        stderr(&out).contains("usage_limit_reached"),
        "{}",
        stderr(&out)
    );

    // A database writer zeroes every counter and sets the old versions back to active, and
    // the service restarts: still no 11th signature with either name.
    let db = url(&server);
    let dir = server.stop();
    exec(
        &db,
        &[
            "UPDATE keys SET usage_count = 0 WHERE label IN ('fw', 'g')",
            "UPDATE keys SET state = 'active' WHERE label IN ('fw', 'g') AND version = 1",
        ],
    );
    let server = Server::start_in(dir, extra);
    for key in ["fw", "g"] {
        let out = sign(&server, key, "late.sig");
        assert!(!out.status.success(), "{key} signed past its limit");
        assert!(
            stderr(&out).contains("usage_limit_reached"),
            "{}",
            stderr(&out)
        );
        let show = server.kagi_ok(&["key", "show", key]);
        assert_eq!(field(&show, "usage count"), "10", "{show}");
    }
    // The writer then erases the floor the rotation vouched for: the log no longer verifies,
    // and the service fails closed instead of signing.
    let dir = server.stop();
    exec(
        &db,
        &["UPDATE audit_records SET use_hi = NULL WHERE action = 'key.rotate'"],
    );
    let server = Server::start_in(dir, extra);
    let out = sign(&server, "g", "late.sig");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("integrity_failure"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn rotation_acceptance_5_sqlite() {
    acceptance_5(&[], |s| {
        s.data().join("kagi.db").to_string_lossy().into_owned()
    });
}

#[test]
fn rotation_acceptance_5_postgres() {
    let db = Database::create();
    let url = db.url();
    acceptance_5(&["--database-url", &url], |_| url.clone());
}

/// A code-signing key's certificate is re-issued on rotation: same CA, same subject, the new
/// public key; the old certificate stays valid, and CMS signatures made before and after the
/// rotation both pass `kagi verify`. A CA key is not rotated.
#[test]
fn rotating_a_code_signing_key_reissues_its_certificate() {
    let server = Server::start();
    let dir = server.root();
    server.kagi_ok(&["key", "create", "--name", "cs", "--alg", "ec-p256"]);
    server.kagi_ok(&[
        "key",
        "certify",
        "cs",
        "--subject",
        "CN=release signing,O=Example",
        "-o",
        "c1.pem",
    ]);
    std::fs::write(server.path("app.bin"), b"app 3.0").unwrap();
    server.kagi_ok(&[
        "sign",
        "--key",
        "cs",
        "--format",
        "cms",
        "app.bin",
        "-o",
        "before.p7s",
    ]);

    let out = server.kagi_ok(&["key", "rotate", "cs"]);
    assert!(out.contains("re-issued"), "{out}");
    server.kagi_ok(&["key", "cert", "cs", "-o", "c2.pem"]);
    server.kagi_ok(&["key", "public", "cs", "-o", "v2.pem"]);
    let x509 = |c: &str, what: &str| openssl(dir, &["x509", "-in", c, "-noout", what]);
    assert_eq!(x509("c1.pem", "-subject"), x509("c2.pem", "-subject"));
    assert!(x509("c2.pem", "-subject").contains("release signing"));
    assert_eq!(x509("c1.pem", "-issuer"), x509("c2.pem", "-issuer"));
    assert_ne!(x509("c1.pem", "-serial"), x509("c2.pem", "-serial"));
    let v2 = std::fs::read_to_string(server.path("v2.pem")).unwrap();
    assert_eq!(x509("c2.pem", "-pubkey").trim(), v2.trim());
    assert_ne!(x509("c1.pem", "-pubkey").trim(), v2.trim());

    server.kagi_ok(&[
        "sign",
        "--key",
        "cs",
        "--format",
        "cms",
        "app.bin",
        "-o",
        "after.p7s",
    ]);
    for p7s in ["after.p7s", "before.p7s"] {
        let out = server.kagi_ok(&["verify", "app.bin", "-s", p7s]);
        assert!(out.contains("revocation OK"), "{p7s}: {out}");
    }
    // The old certificate is not revoked: its key was retired, not compromised.
    server.kagi_ok(&["ca", "show", "code-signing", "-o", "issuer.pem"]);
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
        dir,
        &["crl", "-inform", "DER", "-in", "cs.crl", "-noout", "-text"],
    )
    .to_uppercase();
    let serial = x509("c1.pem", "-serial");
    let serial = serial.trim().trim_start_matches("serial=").to_uppercase();
    assert!(!text.contains(&serial), "{text}");

    // A CA's key is renewed by its CA, never rotated.
    let keys = server
        .http()
        .request("GET", "/api/v1/keys", Some(&server.token()), None)
        .json();
    let ca_key = keys
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["label"].as_str())
        .find(|l| l.starts_with("ca."))
        .unwrap_or_else(|| panic!("no CA key listed: {keys}"));
    let out = server.kagi(&["key", "rotate", ca_key]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("bad_request") && stderr(&out).contains("CA key"),
        "{}",
        stderr(&out)
    );
    // Everything is in the audit log, which verifies.
    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK:"), "{audit}");
}
