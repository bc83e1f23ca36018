//! What the CLI prints and how it exits, through the real binary and a real service:
//! `--output json` on the list and show commands, exit code 3 for a change that waits for a
//! quorum, and the messages that used to point the wrong way (a PostgreSQL URL, a wrong
//! KAGI_CA, a file that is not a CSR, a revoked signing certificate, `kagi log verify` without
//! the auditor role).

use crate::common;

use common::{free_port, stderr, Server, KAGI};
use serde_json::Value;
use std::process::{Command, Output};

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `kagi --output json ARGS` must succeed and print one JSON document.
fn json(server: &Server, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = server.kagi(&all);
    assert!(out.status.success(), "kagi {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("kagi {args:?} printed no JSON ({e}): {}", stdout(&out)))
}

#[test]
fn list_and_show_commands_print_the_services_json() {
    let server = Server::shared();
    let created = json(
        &server,
        &["key", "create", "--name", "out-json", "--alg", "ec-p256"],
    );
    assert_eq!(created["label"], "out-json", "{created}");

    let keys = json(&server, &["key", "list"]);
    let key = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == "out-json")
        .unwrap_or_else(|| panic!("no out-json in {keys}"));
    assert_eq!(key["algorithm"], "ec-p256");
    let shown = json(&server, &["key", "show", "out-json"]);
    assert_eq!(shown["label"], "out-json");
    assert_eq!(shown["usage_count"], 0);

    // KAGI_OUTPUT does the same as the flag; the text form stays the default.
    let out = Command::new(KAGI)
        .args(["key", "show", "out-json"])
        .current_dir(server.root())
        .env("KAGI_URL", &server.url)
        .env("KAGI_OUTPUT", "json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["label"], "out-json");
    assert!(server
        .kagi_ok(&["key", "show", "out-json"])
        .contains("name:                  out-json"));

    assert!(json(&server, &["identity", "list"]).is_array());
    assert!(json(&server, &["credential", "list"])
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["name"] == "admin"));
    assert!(json(&server, &["partition", "list"])
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p == "default"));
    assert!(json(&server, &["policy", "list"]).is_array());
    assert!(json(&server, &["policy", "show"])["text"].is_string());
    assert!(json(&server, &["approval", "list"]).is_array());
    let cas = json(&server, &["ca", "list"]);
    assert!(
        cas.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "code-signing"),
        "{cas}"
    );
    let ca = json(&server, &["ca", "show", "code-signing"]);
    assert!(ca["certificate"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(json(&server, &["ca", "certs", "code-signing"])["certificates"].is_array());
    let audit = json(&server, &["audit", "verify"]);
    assert!(audit["report"]["records"].as_i64().unwrap() > 0, "{audit}");
    let log = json(&server, &["log", "verify"]);
    assert_eq!(log["checkpoint"]["signature"], "ok", "{log}");
    assert_eq!(log["full_recomputation"]["result"], "ok", "{log}");
}

#[test]
fn a_destroy_held_for_a_quorum_exits_3_and_names_its_request() {
    let server = Server::start();
    let mut tokens = Vec::new();
    for n in ["alice", "bob", "carol"] {
        tokens.push(
            server
                .kagi_ok(&["identity", "create", "--name", n, "--kind", "person"])
                .trim()
                .to_string(),
        );
    }
    std::fs::write(
        server.path("quorum.toml"),
        "rules = '''\n@id(\"people\")\npermit (principal is kagi::Person, action, resource);\n'''\n\n\
         [quorum]\napprovers = [\"alice\", \"bob\", \"carol\"]\nrequired = 2\n",
    )
    .unwrap();
    let out = server.kagi_ok(&["policy", "submit", "quorum.toml"]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    server.kagi_ok(&["policy", "activate", &v]);
    let alice = &tokens[0];
    for name in ["held", "held-json"] {
        let out = server.kagi_as(
            alice,
            &["key", "create", "--name", name, "--alg", "ec-p256"],
        );
        assert!(out.status.success(), "{}", stderr(&out));
    }

    let out = server.kagi_as(alice, &["key", "destroy", "held"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = stdout(&out);
    let id = text
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap_or_else(|| panic!("no request id in: {text}"))
        .to_string();
    assert!(
        stderr(&out).contains(&format!("kagi approval approve {id}")),
        "{}",
        stderr(&out)
    );
    let approvals = json(&server, &["approval", "list"]);
    assert!(
        approvals
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id.as_str() && a["status"] == "pending"),
        "{approvals}"
    );
    let shown = json(&server, &["approval", "show", &id]);
    assert_eq!(shown["id"], id.as_str());

    // In JSON the answer is the service's, with the request and its id; the exit code is 3.
    let out = server.kagi_as(alice, &["--output", "json", "key", "destroy", "held-json"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "pending");
    assert!(v["approval"]["id"].as_str().is_some_and(|s| !s.is_empty()));
    // Nothing was destroyed.
    assert!(server.kagi_ok(&["key", "show", "held"]).contains("held"));

    // A usage error is still clap's 2, an error still 1.
    assert_eq!(server.kagi(&["key", "destroy"]).status.code(), Some(2));
    assert_eq!(
        server.kagi(&["key", "show", "no-such-key"]).status.code(),
        Some(1)
    );
}

fn init_with_database(url: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(KAGI)
        .args([
            "init",
            "--shares",
            "1",
            "--threshold",
            "1",
            "--database-url",
            url,
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn a_postgresql_that_cannot_be_reached_is_named_with_the_reason_and_no_password() {
    // Nothing listens on port 1.
    let out = init_with_database("postgres://nobody:s3cret-pw@127.0.0.1:1/x");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:1 as nobody"),
        "{err}"
    );
    assert!(
        err.contains("postgres://user[:password]@host[:port]/database"),
        "{err}"
    );
    assert!(err.contains("refused"), "libpq's reason is kept: {err}");
    assert!(
        !err.contains("s3cret-pw"),
        "the password was printed: {err}"
    );
    assert!(!err.contains("multiconnection"), "{err}");

    // A server that answers and refuses: a role it does not know.
    let admin = kagi_testkit::pg::admin_url();
    let host = admin
        .split_once('@')
        .map(|(_, h)| h.split('/').next().unwrap().to_string())
        .unwrap();
    let out = init_with_database(&format!("postgres://kagi_no_such_role@{host}/test"));
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot connect to PostgreSQL at {host} as kagi_no_such_role"
        )),
        "{err}"
    );
    assert!(err.contains("kagi_no_such_role\" does not exist"), "{err}");

    // A malformed URL, to `kagi serve` as well.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(KAGI)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-listen",
            "off",
            "--database-url",
            "postgres://nobody:pw@127.0.0.1:notaport/x",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot connect to PostgreSQL at 127.0.0.1:notaport as nobody"),
        "{err}"
    );
    assert!(!err.contains("multiconnection"), "{err}");
}

#[test]
fn tls_failures_say_which_one_and_what_to_do() {
    let server = Server::shared();
    // A CA that is valid PEM but not the one the service's certificate chains to.
    common::openssl_req_p256(
        &server,
        "other-ca.key",
        &[
            "-x509",
            "-out",
            "other-ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Another CA",
        ],
    );
    let run = |url: &str, ca: &str| {
        Command::new(KAGI)
            .args(["key", "list"])
            .current_dir(server.root())
            .env("KAGI_URL", url)
            .env("KAGI_CA", ca)
            .output()
            .unwrap()
    };
    let out = run(&server.url, "other-ca.pem");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("tls_unknown_ca"), "{err}");
    assert!(
        err.contains(&format!(
            "the TLS certificate of KAGI_URL={} is not signed by KAGI_CA=other-ca.pem",
            server.url
        )),
        "{err}"
    );
    assert!(err.contains("tls-ca.pem of that kagi serve"), "{err}");
    assert!(!err.contains("running"), "{err}");

    // Nothing listening.
    let out = run(
        &format!("https://127.0.0.1:{}", free_port()),
        "kagi-data/tls-ca.pem",
    );
    let err = stderr(&out);
    assert!(err.contains("connection_refused"), "{err}");
    assert!(err.contains("nothing is listening"), "{err}");

    // The right CA, a name the certificate does not carry: the IPv4-mapped IPv6 form of its
    // 127.0.0.1 reaches the same listener.
    let port = server.url.rsplit(':').next().unwrap();
    let out = run(
        &format!("https://[::ffff:127.0.0.1]:{port}"),
        "kagi-data/tls-ca.pem",
    );
    let err = stderr(&out);
    assert!(err.contains("tls_name_mismatch"), "{err}");
    assert!(err.contains("not valid for that host name"), "{err}");
}

#[test]
fn a_file_that_is_not_a_csr_is_refused_as_such() {
    let server = Server::shared();
    std::fs::write(
        server.path("README.md"),
        // Larger than any CSR, smaller than the route's body limit.
        "# A project\n\nNot a certificate request.\n".repeat(400),
    )
    .unwrap();
    let out = server.kagi(&["ca", "issue", "README.md", "--profile", "device"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("error: bad_csr: README.md is not a PEM or DER PKCS#10"),
        "{err}"
    );
    assert!(err.contains("openssl req -new"), "{err}");

    // The service, sent the same bytes directly, says what they are not, too.
    let body = std::fs::read(server.path("README.md")).unwrap();
    let reply = server.http().post_raw(
        "/api/v1/ca/devices/profiles/device/issue",
        &server.token(),
        "application/pkcs10",
        &body,
    );
    let code = reply.error_code();
    assert_ne!(code, "payload_too_large", "{}", reply.body);
    assert_eq!(code, "bad_csr", "{}", reply.body);
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("not a PEM or DER PKCS#10 certificate signing request"),
        "{message}"
    );
    assert!(message.contains("openssl req -new"), "{message}");
}

#[test]
fn cms_with_a_revoked_certificate_says_it_was_revoked_and_how_to_get_another() {
    let server = Server::shared();
    server.kagi_ok(&["key", "create", "--name", "rev-cms", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "rev-cms", "-o", "rev-cms.pem"]);
    let serial = common::run_in(
        &server,
        &["openssl", "x509", "-in", "rev-cms.pem", "-noout", "-serial"],
    )
    .1
    .trim()
    .trim_start_matches("serial=")
    .to_ascii_lowercase();
    server.kagi_ok(&["ca", "revoke", &serial, "--reason", "keyCompromise"]);
    std::fs::write(server.path("app.bin"), b"app").unwrap();
    let out = server.kagi(&[
        "sign", "--key", "rev-cms", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was revoked at"), "{err}");
    assert!(err.to_ascii_lowercase().contains(&serial), "{err}");
    assert!(err.contains("reason keyCompromise"), "{err}");
    assert!(
        err.contains("'kagi key certify rev-cms' issues a new one"),
        "{err}"
    );

    // And it does.
    server.kagi_ok(&["key", "certify", "rev-cms"]);
    server.kagi_ok(&[
        "sign", "--key", "rev-cms", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
}

#[test]
fn log_verify_without_the_auditor_role_passes_and_says_what_it_skipped() {
    let server = Server::shared();
    let token = server
        .kagi_ok(&[
            "credential",
            "create",
            "--name",
            "log-reader",
            "--roles",
            "user",
        ])
        .trim()
        .to_string();
    let out = server.kagi_as(&token, &["log", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("checkpoint signature OK"), "{text}");
    assert!(
        text.contains("full recomputation skipped: it needs the auditor role"),
        "{text}"
    );
    let out = server.kagi_as(&token, &["--output", "json", "log", "verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        v["full_recomputation"]["skipped"]
            .as_str()
            .unwrap()
            .contains("auditor"),
        "{v}"
    );
}
