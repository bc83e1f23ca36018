//! Issue 3's acceptance through the real service: pipeline rules and their audited denials,
//! an exact line quota under concurrency and across a restart, a 2-of-3 quorum for destroying a
//! key, and a rejected policy document that changes nothing. The quota and quorum tests run on
//! SQLite and on PostgreSQL.

use crate::common;

use base64::Engine as _;
use common::{stderr, Database, Server};
use serde_json::Value;

fn token_of(out: String) -> String {
    out.trim().to_string()
}

fn write(server: &Server, name: &str, text: &str) {
    std::fs::write(server.path(name), text).unwrap();
}

/// Submit and activate as the admin; returns the new version.
fn activate(server: &Server, file: &str) -> i64 {
    let out = server.kagi_ok(&["policy", "submit", file]);
    let v: i64 = out.trim().rsplit(' ').next().unwrap().parse().unwrap();
    let done = server.kagi_ok(&["policy", "activate", &v.to_string()]);
    assert!(done.contains("is active"), "{done}");
    v
}

fn sign_as(server: &Server, token: &str, key: &str, format: &str) -> std::process::Output {
    server.kagi_as(
        token,
        &[
            "sign", "--key", key, "--format", format, "a.bin", "-o", "a.sig",
        ],
    )
}

fn audit(server: &Server) -> Vec<Value> {
    server.kagi_ok(&["audit", "export", "-o", "audit.jsonl"]);
    std::fs::read_to_string(server.path("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_pipeline_may_sign_only_with_its_key_and_format_sqlite() {
    pipeline_rules(&[]);
}

#[test]
fn a_pipeline_may_sign_only_with_its_key_and_format_postgres() {
    let db = Database::create();
    pipeline_rules(&["--database-url", &db.url()]);
}

fn pipeline_rules(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    write(&server, "a.bin", "artifact");
    for k in ["release", "nightly", "tools"] {
        server.kagi_ok(&["key", "create", "--name", k, "--alg", "ec-p256"]);
    }
    let ci = token_of(server.kagi_ok(&[
        "identity",
        "create",
        "--name",
        "ci-release",
        "--kind",
        "pipeline",
    ]));
    write(
        &server,
        "policy.toml",
        r#"description = "release signing"
rules = '''
@id("ci-release-cms")
permit (
  principal == kagi::Pipeline::"ci-release",
  action == kagi::Action::"sign",
  resource == kagi::Key::"release"
) when { context.format == "cms" };

@id("ci-tools-any-format")
permit (
  principal == kagi::Pipeline::"ci-release",
  action == kagi::Action::"sign",
  resource == kagi::Key::"tools"
);
'''
"#,
    );
    activate(&server, "policy.toml");

    // Denied: another key, and the right key in another format. 403 policy_denied.
    for (key, format) in [("nightly", "cms"), ("release", "raw")] {
        let out = sign_as(&server, &ci, key, format);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("policy_denied"),
            "{key}/{format}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("default-deny"), "{}", stderr(&out));
    }
    let http = server.http();
    let r = http.request(
        "POST",
        "/api/v1/sign",
        Some(&ci),
        Some(br#"{"key":"nightly","digest":"0000000000000000000000000000000000000000000000000000000000000000","format":"cms"}"#),
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "policy_denied");
    // Allowed by the policy: release in cms (once the key has its certificate), tools in raw.
    let out = sign_as(&server, &ci, "release", "cms");
    assert!(
        stderr(&out).contains("kagi key certify release"),
        "{}",
        stderr(&out)
    );
    server.kagi_ok(&["key", "certify", "release"]);
    let out = sign_as(&server, &ci, "release", "cms");
    assert!(out.status.success(), "{}", stderr(&out));
    let ok = sign_as(&server, &ci, "tools", "raw");
    assert!(ok.status.success(), "{}", stderr(&ok));

    let events = audit(&server);
    let denials: Vec<&Value> = events
        .iter()
        .filter(|e| e["action"] == "policy.decision" && e["outcome"] == "denied:policy_denied")
        .collect();
    assert!(denials.len() >= 3, "{denials:?}");
    let d: Value = serde_json::from_str(denials[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(d["identity"], "ci-release");
    assert_eq!(d["rule"], "default-deny");
    assert_eq!(d["resource"], "key:nightly");
    assert_eq!(d["decision"], "deny");
    let used = events
        .iter()
        .filter(|e| e["action"] == "key.use" && e["outcome"] == "ok")
        .map(|e| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap())
        .find(|d| d["label"] == "tools")
        .unwrap();
    assert_eq!(used["policy_rule"], "ci-tools-any-format");
    assert_eq!(used["decision"], "allow");
    assert_eq!(used["identity"], "ci-release");
    // The admin has no rule either: once a policy is active, default deny holds for everyone.
    let out = server.kagi(&["sign", "--key", "tools", "a.bin", "-o", "a.sig"]);
    assert!(stderr(&out).contains("policy_denied"));
    server.kagi_ok(&["audit", "verify"]);
}

fn quota_policy() -> &'static str {
    r#"rules = '''
@id("line-7-device")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"sign",
  resource == kagi::Key::"device-ca"
);
'''

[[quota]]
name = "line-7-devices"
identity = "line-7"
action = "sign"
resource = "device-ca"
total = 5
"#
}

fn line_quota_is_exact(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir, extra);
    write(&server, "a.bin", "csr");
    server.kagi_ok(&["key", "create", "--name", "device-ca", "--alg", "ec-p256"]);
    let line =
        token_of(server.kagi_ok(&["identity", "create", "--name", "line-7", "--kind", "line"]));
    write(&server, "quota.toml", quota_policy());
    activate(&server, "quota.toml");

    let http = server.http();
    let body = br#"{"key":"device-ca","digest":"1111111111111111111111111111111111111111111111111111111111111111"}"#;
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..32)
            .map(|_| {
                let (http, line) = (&http, &line);
                s.spawn(move || {
                    let r = http.request("POST", "/api/v1/sign", Some(line), Some(body));
                    let code = if r.status == 200 {
                        String::new()
                    } else {
                        r.error_code()
                    };
                    (r.status, code)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        statuses.iter().filter(|(s, _)| *s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, c)| *s == 429 && c == "quota_exhausted"),
        "{statuses:?}"
    );

    let dir = server.stop();
    let server = Server::start_in(dir, extra);
    let out = server.kagi_as(
        &line,
        &["sign", "--key", "device-ca", "a.bin", "-o", "a.sig"],
    );
    assert!(stderr(&out).contains("quota_exhausted"), "{}", stderr(&out));
    let show = server.kagi_ok(&["key", "show", "device-ca"]);
    assert!(show.contains("usage count:           5"), "{show}");
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn a_line_quota_is_exact_under_32_concurrent_requests_and_a_restart_sqlite() {
    line_quota_is_exact(&[]);
}

#[test]
fn a_line_quota_is_exact_under_32_concurrent_requests_and_a_restart_postgres() {
    let db = Database::create();
    line_quota_is_exact(&["--database-url", &db.url()]);
}

fn quorum_destroy(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir, extra);
    write(&server, "a.bin", "x");
    let mut tokens = Vec::new();
    for n in ["alice", "bob", "carol"] {
        tokens.push(token_of(
            server.kagi_ok(&["identity", "create", "--name", n, "--kind", "person"]),
        ));
    }
    let (alice, bob, carol) = (&tokens[0], &tokens[1], &tokens[2]);
    write(
        &server,
        "quorum.toml",
        r#"rules = '''
@id("officers-sign")
permit (principal is kagi::Person, action == kagi::Action::"sign", resource);
'''

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2
"#,
    );
    activate(&server, "quorum.toml");
    assert!(server
        .kagi_as(
            alice,
            &["key", "create", "--name", "old", "--alg", "ec-p256"]
        )
        .status
        .success());

    let out = server.kagi_as(alice, &["key", "destroy", "old"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("approval required"), "{said}");
    let id = said.split_whitespace().nth(3).unwrap().to_string();

    let own = server.kagi_as(alice, &["approval", "approve", &id]);
    assert!(stderr(&own).contains("self_approval"), "{}", stderr(&own));
    let first = server.kagi_as(bob, &["approval", "approve", &id]);
    assert!(String::from_utf8_lossy(&first.stdout).contains("status:       pending"));
    // After one approval the key still signs.
    let signed = server.kagi_as(alice, &["sign", "--key", "old", "a.bin", "-o", "a.sig"]);
    assert!(signed.status.success(), "{}", stderr(&signed));
    let second = server.kagi_as(carol, &["approval", "approve", &id]);
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("status:       executed"),
        "{second:?}"
    );
    let gone = server.kagi_as(alice, &["sign", "--key", "old", "a.bin", "-o", "a.sig"]);
    assert!(stderr(&gone).contains("key_not_found"), "{}", stderr(&gone));
    let events = audit(&server);
    for action in ["approval.request", "approval.approve", "key.destroy"] {
        assert!(
            events
                .iter()
                .any(|e| e["action"] == action && e["outcome"] == "ok"),
            "{action}"
        );
    }
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn destroying_a_key_needs_two_of_three_officers_sqlite() {
    quorum_destroy(&[]);
}

#[test]
fn destroying_a_key_needs_two_of_three_officers_postgres() {
    let db = Database::create();
    quorum_destroy(&["--database-url", &db.url()]);
}

#[test]
fn a_broken_policy_is_rejected_with_its_line_and_changes_nothing_sqlite() {
    broken_policy(&[]);
}

#[test]
fn a_broken_policy_is_rejected_with_its_line_and_changes_nothing_postgres() {
    let db = Database::create();
    broken_policy(&["--database-url", &db.url()]);
}

fn broken_policy(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    write(&server, "a.bin", "x");
    server.kagi_ok(&["key", "create", "--name", "k", "--alg", "ec-p256"]);
    write(
        &server,
        "good.toml",
        "rules = '''\n@id(\"admin-signs\")\npermit (principal == kagi::Person::\"admin\", action == kagi::Action::\"sign\", resource);\n'''\n",
    );
    let v = activate(&server, "good.toml");
    // Line 4 has a Cedar syntax error; line 6 of the other names an attribute the schema lacks.
    write(&server, "syntax.toml", "description = \"broken\"\nrules = '''\n@id(\"x\")\npermit (principal, action, resource) when { context.format == };\n'''\n");
    write(&server, "schema.toml", "description = \"broken\"\n\nrules = '''\n@id(\"y\")\npermit (principal, action, resource)\nwhen { context.colour == \"red\" };\n'''\n");
    for (file, line) in [("syntax.toml", "line 4"), ("schema.toml", "line 6")] {
        let offline = server.kagi(&["policy", "validate", file]);
        assert!(!offline.status.success());
        assert!(
            stderr(&offline).contains(line),
            "{file}: {}",
            stderr(&offline)
        );
        let out = server.kagi(&["policy", "submit", file]);
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("policy_invalid") && err.contains(line),
            "{file}: {err}"
        );
    }
    let list = server.kagi_ok(&["policy", "list"]);
    // The header, the good version, and the built-in bootstrap policy (version 0).
    assert_eq!(
        list.lines().count(),
        3,
        "only the good version is stored: {list}"
    );
    assert!(list.contains(&format!("{v}  ")) && list.contains("yes"));
    server.kagi_ok(&["sign", "--key", "k", "a.bin", "-o", "a.sig"]);
}

/// The README's complete example must stay a valid document.
#[test]
fn the_readme_policy_example_is_valid() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("A complete example")
        .expect("the README has the policy example");
    let block = &readme[start..];
    let open = block.find("<<'EOF'\n").unwrap() + "<<'EOF'\n".len();
    let close = block[open..].find("EOF\n").unwrap();
    let doc = kagi_policy::PolicyDocument::parse(&block[open..open + close])
        .unwrap_or_else(|e| panic!("README example: {e}"));
    assert_eq!(doc.quotas.len(), 1);
    assert_eq!(doc.quorum.unwrap().required, 2);

    let start = readme
        .find("A minimal first policy")
        .expect("the README has the first-policy example");
    let block = &readme[start..];
    let open = block.find("<<'EOF'\n").unwrap() + "<<'EOF'\n".len();
    let close = block[open..].find("EOF\n").unwrap();
    let doc = kagi_policy::Engine::from_text(&block[open..open + close])
        .unwrap_or_else(|e| panic!("README first policy: {e}"));
    let decide = |kind, name| {
        doc.decide(
            &kagi_policy::Principal { kind, name },
            kagi_policy::Action::Sign,
            &kagi_policy::Resource::Key("release"),
            &kagi_policy::Context {
                format: Some("raw"),
                source_ip: None,
                now: 0,
                certificate: None,
            },
        )
        .allowed
    };
    assert!(decide(kagi_policy::PrincipalKind::Pipeline, "ci-release"));
    assert!(decide(kagi_policy::PrincipalKind::Person, "admin"));
    assert!(!decide(kagi_policy::PrincipalKind::Pipeline, "ci-other"));
}

/// A factory line authenticates with a TLS client certificate instead of a token (curl as the
/// client, as a line's own tooling would).
#[test]
fn a_line_logs_in_with_its_client_certificate() {
    let server = Server::start();
    let run = |args: &[&str]| common::run_in(&server, args);
    common::client_certificates(&server, &["line", "stranger"]);
    server.kagi_ok(&[
        "identity",
        "create",
        "--name",
        "line-3",
        "--kind",
        "line",
        "--client-cert",
        "line.pem",
    ]);
    server.kagi_ok(&["key", "create", "--name", "dev-ca", "--alg", "ec-p256"]);
    let url = format!("{}/api/v1/keys/dev-ca", server.http_base());
    let curl = |cert: Option<&str>| {
        let mut args = vec![
            "curl",
            "-s",
            "--cacert",
            "kagi-data/tls-ca.pem",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ];
        let (c, k);
        if let Some(name) = cert {
            c = format!("{name}.pem");
            k = format!("{name}.key");
            args.extend(["--cert", &c, "--key", &k]);
        }
        args.push(&url);
        run(&args).1
    };
    assert_eq!(curl(Some("line")), "200");
    assert_eq!(curl(None), "401");
    assert_eq!(curl(Some("stranger")), "401");
    // The CLI presents it too (KAGI_CLIENT_CERT/KAGI_CLIENT_KEY; no token).
    let cli = |cert: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kagi"))
            .current_dir(server.root())
            .env("KAGI_URL", server.http_base())
            .env_remove("KAGI_TOKEN")
            .env("KAGI_CLIENT_CERT", format!("{cert}.pem"))
            .env("KAGI_CLIENT_KEY", format!("{cert}.key"))
            .args(["key", "show", "dev-ca"])
            .output()
            .unwrap()
    };
    let ok = cli("line");
    assert!(ok.status.success(), "{}", stderr(&ok));
    let refused = cli("stranger");
    assert!(
        stderr(&refused).contains("bad_credential"),
        "{}",
        stderr(&refused)
    );
    let events = audit(&server);
    assert!(events
        .iter()
        .any(|e| e["action"] == "auth.login_certificate" && e["outcome"] == "ok"));
    // The stranger's refusal is not a record of its own: it is counted in its source's
    // aggregate `auth.failed_logins` record when the window closes (see `auth.rs`).
    assert!(!events
        .iter()
        .any(|e| e["action"] == "auth.login_certificate" && e["outcome"] != "ok"));
}

/// Wrong secrets with an identity's id (which is no secret) lock nothing: the identity's own
/// token keeps working, and `kagi identity unlock` still clears a lock an older version left.
#[test]
fn wrong_secrets_never_lock_an_identity() {
    let server = Server::start();
    let token = token_of(server.kagi_ok(&[
        "identity",
        "create",
        "--name",
        "nightly-build",
        "--kind",
        "pipeline",
    ]));
    let id = token.split('_').nth(1).unwrap().to_string();
    let wrong = format!("kagi_{id}_{}", "x".repeat(43));
    for _ in 0..5 {
        let refused = stderr(&server.kagi_as(&wrong, &["key", "list"]));
        assert!(refused.contains("bad_credential"), "{refused}");
        assert!(
            !refused.contains("nightly-build"),
            "the refusal names nothing: {refused}"
        );
    }
    let ok = server.kagi_as(&token, &["key", "list"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    server.kagi_ok(&["identity", "unlock", &id]);
    let ok = server.kagi_as(&token, &["key", "list"]);
    assert!(ok.status.success(), "{}", stderr(&ok));
}

#[test]
fn a_caller_without_the_officer_role_is_refused_before_the_document_is_read() {
    let server = Server::start_in(tempfile::tempdir().unwrap(), &[]);
    let ci =
        token_of(server.kagi_ok(&["identity", "create", "--name", "ci-x", "--kind", "pipeline"]));
    let http = server.http();
    let broken: &[u8] = b"rules = 'not cedar";
    let r = http.request("POST", "/api/v1/policies", Some(&ci), Some(broken));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "forbidden");
    assert!(!r.body.contains("line"), "{}", r.body);
    // An officer sending the same text learns what is wrong with it.
    let r = http.request(
        "POST",
        "/api/v1/policies",
        Some(&server.token()),
        Some(broken),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), "policy_invalid");
}

#[test]
fn a_fresh_instance_denies_pipelines_and_lines_until_a_policy_allows_them_sqlite() {
    default_deny(&[]);
}

#[test]
fn a_fresh_instance_denies_pipelines_and_lines_until_a_policy_allows_them_postgres() {
    let db = Database::create();
    default_deny(&["--database-url", &db.url()]);
}

const ZEROS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Issue 11, item 6: with no policy active, a new pipeline or line gets 403 `policy_denied` for
/// every sign (stored or wrapped key, any format) and every issue (API and EST), each denial
/// audited under the bootstrap policy's version 0; persons sign by their roles; `kagi policy
/// show` prints the built-in bootstrap policy. Activating a policy that allows them lets them
/// work.
fn default_deny(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    server.kagi_ok(&["key", "create", "--name", "release", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "release"]);
    let ci =
        token_of(server.kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"]));
    let line =
        token_of(server.kagi_ok(&["identity", "create", "--name", "line-7", "--kind", "line"]));

    let show = server.kagi(&["policy", "show"]);
    assert!(show.status.success(), "{}", stderr(&show));
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("bootstrap: deny pipelines and lines; persons by role"),
        "{text}"
    );
    assert!(
        stderr(&show).contains("policy version 0 (built in, in force"),
        "{}",
        stderr(&show)
    );
    let list = server.kagi_ok(&["policy", "list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with("0 ") && l.contains("yes")),
        "{list}"
    );

    let http = server.http();
    let sign = |token: &str, body: String| {
        http.request("POST", "/api/v1/sign", Some(token), Some(body.as_bytes()))
    };
    let signs = [
        format!(r#"{{"key":"release","digest":"{ZEROS}"}}"#),
        format!(r#"{{"key":"release","digest":"{ZEROS}","format":"cms"}}"#),
        format!(r#"{{"key":"release","digest":"{ZEROS}","format":"sigstore"}}"#),
        format!(r#"{{"wrapped_key":"AAAA","alg":"ec-p256","digest":"{ZEROS}"}}"#),
    ];
    let issue = |token: &str, sn: &str| {
        http.post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            token,
            "application/pkcs10",
            &crate::ca::device_csr(sn),
        )
    };
    let enroll = |name: &str, token: &str| {
        let csr = base64::engine::general_purpose::STANDARD.encode(crate::ca::device_csr("SN-EST"));
        http.post_basic(
            "/.well-known/est/simpleenroll",
            name,
            token,
            "application/pkcs10",
            csr.as_bytes(),
        )
    };
    let denied = |r: common::Reply, what: &str| {
        assert_eq!(r.status, 403, "{what}: {}", r.body);
        assert_eq!(r.error_code(), "policy_denied", "{what}");
        assert!(r.body.contains("no policy is active"), "{what}: {}", r.body);
        assert!(
            r.body.contains("kagi policy activate"),
            "{what}: {}",
            r.body
        );
    };
    for (name, token) in [("ci", &ci), ("line-7", &line)] {
        for body in &signs {
            denied(sign(token, body.clone()), &format!("{name} {body}"));
        }
        denied(issue(token, "SN-1"), &format!("{name} issue"));
        denied(enroll(name, token), &format!("{name} EST"));
    }
    // The CLI says the same.
    write(&server, "a.bin", "artifact");
    let out = sign_as(&server, &ci, "release", "raw");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("policy_denied"), "{}", stderr(&out));

    // Every denial is audited, naming the bootstrap policy's version and rule.
    let events = audit(&server);
    let detail = |e: &Value| serde_json::from_str::<Value>(e["detail"].as_str().unwrap()).unwrap();
    let denials: Vec<Value> = events
        .iter()
        .filter(|e| e["action"] == "policy.decision" && e["outcome"] == "denied:policy_denied")
        .map(detail)
        .collect();
    for (identity, action, count) in [
        ("ci", "sign", 5),
        ("ci", "issue", 2),
        ("line-7", "sign", 4),
        ("line-7", "issue", 2),
    ] {
        let n = denials
            .iter()
            .filter(|d| d["identity"] == identity && d["action"] == action)
            .inspect(|d| {
                assert_eq!(d["policy_version"], 0, "{d}");
                assert_eq!(d["rule"], "default-deny", "{d}");
            })
            .count();
        assert_eq!(n, count, "{identity} {action}: {denials:?}");
    }
    // Nothing was signed or issued for them.
    assert!(!events.iter().any(|e| e["action"] == "key.use"
        && e["actor"]
            .as_str()
            .is_some_and(|a| a.ends_with(":ci") || a.ends_with(":line-7"))));

    // A person acts by their roles: the admin signs and issues.
    let admin = server.token();
    for body in &signs[..3] {
        let r = sign(&admin, body.clone());
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    }
    assert_eq!(issue(&admin, "SN-ADMIN").status, 201);
    let by_bootstrap = audit(&server)
        .iter()
        .filter(|e| e["action"] == "key.use")
        .map(detail)
        .filter(|d| d["policy_version"] == 0 && d["policy_rule"] == "bootstrap-persons-by-role")
        .count();
    assert!(
        by_bootstrap >= 4,
        "the admin's uses name the bootstrap policy"
    );

    // An officer's policy lets them work; the bootstrap policy is then shown as not in force.
    let v = server.allow(&[("pipeline", "ci"), ("line", "line-7")]);
    for body in &signs[..3] {
        let r = sign(&ci, body.clone());
        assert_eq!(r.status, 200, "{body}: {}", r.body);
    }
    assert_eq!(issue(&line, "SN-2").status, 201);
    assert_eq!(enroll("line-7", &line).status, 200);
    let show = server.kagi(&["policy", "show"]);
    assert!(
        stderr(&show).contains(&format!("policy version {v} (active)")),
        "{}",
        stderr(&show)
    );
    let show = server.kagi(&["policy", "show", "0"]);
    assert!(
        stderr(&show).contains("(built in, not in force"),
        "{}",
        stderr(&show)
    );
}

/// The bootstrap policy is part of the program: a row numbered 0 written into the database is
/// neither shown nor applied, and deleting the active version's row fails requests closed
/// instead of falling back to anything that allows more.
#[test]
fn a_database_writer_cannot_widen_the_bootstrap_policy() {
    use diesel::{Connection, RunQueryDsl, SqliteConnection};
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "release", "--alg", "ec-p256"]);
    let ci =
        token_of(server.kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"]));
    let db = server.data().join("kagi.db");
    let mut c = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut c)
        .unwrap();
    let everything = "rules = '''\n@id(\"all\")\npermit (principal, action, resource);\n'''\n";
    diesel::sql_query(
        "INSERT INTO policies (version, text, quorum, submitted_by, submitted_at, mac) \
         VALUES (0, ?, 'null', 'default:admin', 0, x'00')",
    )
    .bind::<diesel::sql_types::Text, _>(everything)
    .execute(&mut c)
    .unwrap();
    let http = server.http();
    let body = format!(r#"{{"key":"release","digest":"{ZEROS}"}}"#);
    let r = http.request("POST", "/api/v1/sign", Some(&ci), Some(body.as_bytes()));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "policy_denied");
    let r = http.request("GET", "/api/v1/policies/0", Some(&server.token()), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["text"], kagi_policy::BOOTSTRAP_TEXT);

    // Activate a policy allowing ci, then delete its row: requests fail, nothing is signed.
    server.allow(&[("pipeline", "ci")]);
    let r = http.request("POST", "/api/v1/sign", Some(&ci), Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    let dir = server.stop();
    diesel::sql_query("DELETE FROM policies WHERE version > 0")
        .execute(&mut c)
        .unwrap();
    drop(c);
    // The audit log still names the active version; without its document the service refuses
    // rather than falling back to the bootstrap policy or to roles alone.
    let server = Server::start_in(dir, &[]);
    let r = server
        .http()
        .request("POST", "/api/v1/sign", Some(&ci), Some(body.as_bytes()));
    assert_ne!(r.status, 200, "{}", r.body);
    let code = r.error_code();
    assert!(code.contains("integrity"), "{code}: {}", r.body);
}
