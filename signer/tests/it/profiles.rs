//! Certificate profiles as data (issue 12), through the real service: an officer adds a
//! restricted profile with `kagi ca profile add` and over HTTP, and names outside its
//! allow-list are refused by name with nothing stored; Cedar rules see the CSR's subject and
//! SANs on every issue path; a `device-client` certificate completes mTLS against a real
//! `openssl s_server`; a quorum holds profile changes until approved; and a database writer who
//! widens the stored profile gains nothing (SQLite and PostgreSQL).

use crate::common;

use base64::Engine;
use common::{run_in, stderr, Database, Server};
use diesel::prelude::*;
use kagi_hsm_core::store::AnyConnection;
use serde_json::{json, Value};
use std::io::{Read, Write};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const LAB_ISSUE: &str = "/api/v1/ca/services/profiles/lab-tls/issue";
const DEVICE_ISSUE: &str = "/api/v1/ca/devices/profiles/device/issue";

const LAB_TLS: &str = r#"name = "lab-tls"
description = "lab servers: *.lab.example.com hosts only"
key_types = ["ec-p256", "ec-p384"]
key_usage = ["digitalSignature"]
ekus = ["serverAuth"]
default_validity_days = 30
max_validity_days = 90
san_required = true
san_dns = ['[a-z0-9-]+\.lab\.example\.com']
subject = [{ attr = "CN", pattern = '[a-z0-9.*-]{1,64}' }]
"#;

fn pem_csr(der: &[u8]) -> String {
    let b64 = B64.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

/// A TLS server CSR (DER) for DNS name `dns`, CN `dns`.
fn server_csr(dns: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec![dns.to_string()]).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, dns);
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().der().to_vec()
}

/// A device CSR (DER) with serialNumber `sn`.
fn device_csr(sn: &str) -> Vec<u8> {
    crate::ca::device_csr(sn)
}

fn count(server: &Server, ca: &str) -> i64 {
    let out = server.kagi_ok(&["ca", "certs", ca, "--limit", "1"]);
    out.split_whitespace().next().unwrap().parse().unwrap()
}

fn issue(server: &Server, path: &str, token: &str, csr: &[u8]) -> common::Reply {
    server
        .http()
        .post_raw(path, token, "application/pkcs10", csr)
}

/// 2a on one backend: the CLI adds `lab-tls`, HTTP adds another; the allow-list holds.
fn lab_tls_refuses_names_outside_its_allow_list(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    let admin = server.token();
    std::fs::write(server.path("lab.toml"), LAB_TLS).unwrap();
    let out = server.kagi_ok(&["ca", "profile", "add", "lab.toml"]);
    assert!(out.contains("added profile 'lab-tls'"), "{out}");

    let r = issue(&server, LAB_ISSUE, &admin, &server_csr("a.lab.example.com"));
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["certificate"]
        .as_str()
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    let before = count(&server, "services");
    for name in [
        "*.google.com",
        "lab.example.com.evil.net",
        "*.lab.example.com",
    ] {
        let r = issue(&server, LAB_ISSUE, &admin, &server_csr(name));
        assert_eq!(r.status, 400, "{name}: {}", r.body);
        assert_eq!(r.error_code(), "san_not_allowed", "{}", r.body);
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(&format!("DNS name '{name}'")), "{msg}");
        assert!(msg.contains("profile 'lab-tls'"), "{msg}");
        assert!(msg.contains(r"[a-z0-9-]+\.lab\.example\.com"), "{msg}");
    }
    // The same refusal through the CLI, which names the SAN too.
    std::fs::write(
        server.path("wild.csr"),
        pem_csr(&server_csr("*.google.com")),
    )
    .unwrap();
    let out = server.kagi(&["ca", "issue", "wild.csr", "--profile", "lab-tls"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("'*.google.com'"), "{}", stderr(&out));
    assert_eq!(
        count(&server, "services"),
        before,
        "a refusal stored a certificate"
    );

    // The built-in tls-server still signs any host name kagi serve could be given.
    let r = issue(
        &server,
        "/api/v1/ca/services/profiles/tls-server/issue",
        &admin,
        &server_csr("kagi.anything.example"),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // Listed, shown as TOML that reads back, and as JSON with who set it.
    let list = server.kagi_ok(&["ca", "profiles"]);
    assert!(
        list.contains("lab-tls") && list.contains("custom"),
        "{list}"
    );
    assert!(list.contains("device-client"), "{list}");
    assert_eq!(list, server.kagi_ok(&["ca", "profile", "list"]));
    let shown = server.kagi_ok(&["ca", "profile", "show", "lab-tls"]);
    assert!(shown.contains("# custom profile, set by"), "{shown}");
    let again = kagi_ca::Profile::parse_spec(&shown).unwrap();
    assert_eq!(again.name, "lab-tls");
    let j: Value = serde_json::from_str(
        &server.kagi_ok(&["ca", "profile", "show", "lab-tls", "--output", "json"]),
    )
    .unwrap();
    assert_eq!(j["builtin"], false);
    assert!(j["set_by"].as_str().unwrap().contains("admin"), "{j}");
    assert_eq!(j["san_dns"][0], r"[a-z0-9-]+\.lab\.example\.com");

    // Over HTTP: a JSON spec, replaced by a second POST; the audit record holds the spec.
    let http = server.http();
    let mut spec = serde_json::to_value(kagi_ca::Profile::parse_spec(LAB_TLS).unwrap()).unwrap();
    spec["name"] = json!("lab-tls-2");
    let body = json!({ "spec": spec }).to_string();
    let r = http.request(
        "POST",
        "/api/v1/profiles",
        Some(&admin),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["status"], "added");
    spec["san_dns"] = json!([r"b\.lab\.example\.com"]);
    let body = json!({ "spec": spec }).to_string();
    let r = http.request(
        "POST",
        "/api/v1/profiles",
        Some(&admin),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["status"], "replaced");
    let r = http.request("GET", "/api/v1/profiles/lab-tls-2", Some(&admin), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["san_dns"][0], r"b\.lab\.example\.com");
    let r = issue(
        &server,
        "/api/v1/ca/services/profiles/lab-tls-2/issue",
        &admin,
        &server_csr("a.lab.example.com"),
    );
    assert_eq!(r.error_code(), "san_not_allowed", "{}", r.body);
    let records = http.request("GET", "/api/v1/audit?limit=10000", Some(&admin), None);
    let recorded: Vec<Value> = records
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "ca.profile_set" && r["outcome"] == "ok")
        .map(|r| serde_json::from_str(r["detail"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(recorded.len(), 3, "{recorded:?}");
    assert_eq!(recorded[2]["spec"]["san_dns"][0], r"b\.lab\.example\.com");

    // Built-in names are not taken; a bad spec is refused with its reason; users may not add.
    spec["name"] = json!("tls-server");
    let body = json!({ "spec": spec }).to_string();
    let r = http.request(
        "POST",
        "/api/v1/profiles",
        Some(&admin),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    spec["name"] = json!("lab-tls-3");
    spec["san_dns"] = json!(["[a-z"]);
    let body = json!({ "spec": spec }).to_string();
    let r = http.request(
        "POST",
        "/api/v1/profiles",
        Some(&admin),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("invalid regex"), "{}", r.body);
    let ci = server
        .kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"])
        .trim()
        .to_string();
    let out = server.kagi_as(&ci, &["ca", "profile", "add", "lab.toml"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("officer"), "{}", stderr(&out));
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn an_officer_adds_a_restricted_profile_and_its_allow_list_holds_sqlite() {
    lab_tls_refuses_names_outside_its_allow_list(&[]);
}

#[test]
fn an_officer_adds_a_restricted_profile_and_its_allow_list_holds_postgres() {
    let db = Database::create();
    lab_tls_refuses_names_outside_its_allow_list(&["--database-url", &db.url()]);
}

/// 2b: a Cedar rule on the CSR's serialNumber, on the issue route, in a batch and over EST.
#[test]
fn a_policy_limits_a_line_to_its_serial_number_prefix() {
    let server = Server::start();
    let line = server
        .kagi_ok(&["identity", "create", "--name", "line-7", "--kind", "line"])
        .trim()
        .to_string();
    server.activate_policy(
        r#"rules = '''
@id("persons-by-role")
permit (principal is kagi::Person, action, resource);

@id("line-7-serials")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
) when { context.subject.serialNumber like "L7-*" && context.sans.dns.isEmpty() };
'''
"#,
    );
    let before = count(&server, "devices");
    let r = issue(&server, DEVICE_ISSUE, &line, &device_csr("L7-0001"));
    assert_eq!(r.status, 201, "{}", r.body);
    let r = issue(&server, DEVICE_ISSUE, &line, &device_csr("L8-0001"));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "policy_denied");
    assert!(
        r.body.contains("line-7-serials") || r.body.contains("default-deny"),
        "{}",
        r.body
    );
    assert_eq!(count(&server, "devices"), before + 1);

    // A batch: each CSR is judged with its own subject.
    let body =
        json!({ "csrs": [pem_csr(&device_csr("L7-0002")), pem_csr(&device_csr("L8-0002"))] })
            .to_string();
    let r = server.http().request(
        "POST",
        "/api/v1/ca/devices/profiles/device/issue-batch",
        Some(&line),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["issued"], 1, "{v}");
    assert_eq!(v["results"][0]["status"], "issued", "{v}");
    assert_eq!(v["results"][1]["error"]["code"], "policy_denied", "{v}");
    // A batch the policy denies whole is refused whole.
    let body = json!({ "csrs": [pem_csr(&device_csr("L8-0003"))] }).to_string();
    let r = server.http().request(
        "POST",
        "/api/v1/ca/devices/profiles/device/issue-batch",
        Some(&line),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // EST asks the same question.
    let est = |sn: &str| {
        server.http().post_basic(
            "/.well-known/est/simpleenroll",
            "line-7",
            &line,
            "application/pkcs10",
            B64.encode(device_csr(sn)).as_bytes(),
        )
    };
    assert_eq!(est("L7-0004").status, 200);
    let r = est("L8-0004");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.error_code(), "policy_denied");
    assert_eq!(count(&server, "devices"), before + 3);
    server.kagi_ok(&["audit", "verify"]);
}

/// 3: a device-client certificate lets a device finish mTLS with a real OpenSSL server that
/// trusts only the devices CA; a serverAuth-only certificate does not.
#[test]
fn a_device_client_certificate_completes_mtls_with_openssl() {
    let server = Server::start();
    let admin = server.token();
    common::openssl_req_p256(
        &server,
        "dev.key",
        &[
            "-new",
            "-subj",
            "/CN=sensor 9/serialNumber=DEV-0009",
            "-out",
            "dev.csr",
        ],
    );
    let r = issue(
        &server,
        "/api/v1/ca/devices/profiles/device-client/issue",
        &admin,
        &std::fs::read(server.path("dev.csr")).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    std::fs::write(server.path("dev.pem"), v["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(
        server.path("devices-chain.pem"),
        v["chain"].as_str().unwrap(),
    )
    .unwrap();
    let (_, text) = run_in(
        &server,
        &[
            "openssl",
            "x509",
            "-in",
            "dev.pem",
            "-noout",
            "-ext",
            "extendedKeyUsage,keyUsage",
        ],
    );
    assert!(text.contains("TLS Web Client Authentication"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");

    // The service's own TLS server certificate (serverAuth only) as a would-be client.
    common::openssl_req_p256(
        &server,
        "srvclient.key",
        &[
            "-new",
            "-subj",
            "/CN=not-a-client.example",
            "-addext",
            "subjectAltName=DNS:not-a-client.example",
            "-out",
            "srvclient.csr",
        ],
    );
    let r = issue(
        &server,
        "/api/v1/ca/devices/profiles/tls-server/issue",
        &admin,
        &std::fs::read(server.path("srvclient.csr")).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    std::fs::write(
        server.path("srvclient.pem"),
        r.json()["certificate"].as_str().unwrap(),
    )
    .unwrap();

    // The relying party: its own self-signed server certificate, trusting the devices chain.
    common::openssl_req_p256(
        &server,
        "rp.key",
        &[
            "-x509",
            "-out",
            "rp.pem",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ],
    );
    let port = common::free_port();
    let mut s_server = std::process::Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &port.to_string(),
            "-cert",
            "rp.pem",
            "-key",
            "rp.key",
            "-CAfile",
            "devices-chain.pem",
            "-Verify",
            "1",
            "-verify_return_error",
            "-www",
        ])
        .current_dir(server.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for it to listen (no deadline to assert on: a connect refused means "not yet").
    let mut tries = 0;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        tries += 1;
        assert!(tries < 600, "openssl s_server never listened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let client = |cert: &str, key: &str| -> (bool, String) {
        let mut c = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                "-CAfile",
                "rp.pem",
                "-verify_return_error",
                "-cert",
                cert,
                "-key",
                key,
                "-ign_eof",
            ])
            .current_dir(server.root())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        c.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let mut err = String::new();
        c.stderr.take().unwrap().read_to_string(&mut err).unwrap();
        let ok = c.wait().unwrap().success();
        (ok, format!("{out}\n{err}"))
    };
    let (ok, text) = client("dev.pem", "dev.key");
    assert!(ok, "{text}");
    // -www answers with the session as the server saw it, client certificate included.
    assert!(text.contains("HTTP/1.0 200 ok"), "{text}");
    assert!(text.contains("Client certificate"), "{text}");
    assert!(text.contains("DEV-0009"), "{text}");

    let (_, text) = client("srvclient.pem", "srvclient.key");
    assert!(!text.contains("Client certificate"), "{text}");
    let _ = s_server.kill();
    let _ = s_server.wait();
}

/// 4: under a quorum, adding a profile files a request (202, the CLI prints its id); nothing
/// changes until two approvers approve; then the requester's re-run adds exactly that spec.
#[test]
fn a_profile_change_waits_for_the_quorum() {
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
    let (alice, bob, carol) = (&tokens[0], &tokens[1], &tokens[2]);
    server.activate_policy(
        r#"rules = '''
@id("people")
permit (principal is kagi::Person, action, resource);
'''

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2
"#,
    );
    std::fs::write(server.path("lab.toml"), LAB_TLS).unwrap();

    // Over HTTP: 202 with the request.
    let spec = serde_json::to_value(kagi_ca::Profile::parse_spec(LAB_TLS).unwrap()).unwrap();
    let body = json!({ "spec": spec }).to_string();
    let r = server.http().request(
        "POST",
        "/api/v1/profiles",
        Some(alice),
        Some(body.as_bytes()),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["status"], "pending");

    // The CLI prints the request id and exits 3: pending approval.
    let out = server.kagi_as(alice, &["ca", "profile", "add", "lab.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("approval required"), "{text}");
    let id = text
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_string();
    assert!(!server.kagi_ok(&["ca", "profiles"]).contains("lab-tls"));
    // Not approved yet; and the requester cannot approve their own request.
    let out = server.kagi_as(
        alice,
        &["ca", "profile", "add", "lab.toml", "--approval", &id],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not approved"), "{}", stderr(&out));
    let out = server.kagi_as(alice, &["approval", "approve", &id]);
    assert!(!out.status.success());
    // One approval is not enough.
    assert!(server
        .kagi_as(bob, &["approval", "approve", &id])
        .status
        .success());
    let out = server.kagi_as(
        alice,
        &["ca", "profile", "add", "lab.toml", "--approval", &id],
    );
    assert!(!out.status.success());
    assert!(!server.kagi_ok(&["ca", "profiles"]).contains("lab-tls"));
    assert!(server
        .kagi_as(carol, &["approval", "approve", &id])
        .status
        .success());
    // The approval covers exactly this spec.
    std::fs::write(
        server.path("wider.toml"),
        LAB_TLS.replace("lab\\.example", "example"),
    )
    .unwrap();
    let out = server.kagi_as(
        alice,
        &["ca", "profile", "add", "wider.toml", "--approval", &id],
    );
    assert!(
        stderr(&out).contains("different change"),
        "{}",
        stderr(&out)
    );
    let out = server.kagi_as(
        alice,
        &["ca", "profile", "add", "lab.toml", "--approval", &id],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.kagi_ok(&["ca", "profiles"]).contains("lab-tls"));
    let out = server.kagi_as(
        alice,
        &["ca", "profile", "add", "lab.toml", "--approval", &id],
    );
    assert!(!out.status.success(), "an approval must not be used twice");
    server.kagi_ok(&["audit", "verify"]);
}

/// 5 on one backend: a database writer widens the stored profile to any DNS name. The running
/// service still refuses the name (or has failed closed), and a restarted one fails closed.
fn a_widened_profile_row_is_refused(extra: &[&str], url: impl Fn(&Server) -> String) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    let admin = server.token();
    std::fs::write(server.path("lab.toml"), LAB_TLS).unwrap();
    server.kagi_ok(&["ca", "profile", "add", "lab.toml"]);
    let r = issue(&server, LAB_ISSUE, &admin, &server_csr("a.lab.example.com"));
    assert_eq!(r.status, 201, "{}", r.body);

    let db = url(&server);
    let certificates = |db: &str| -> i64 {
        let mut c = AnyConnection::establish(db).unwrap();
        diesel::sql_query("SELECT COUNT(*) AS n FROM certificates")
            .get_result::<Count>(&mut c)
            .unwrap()
            .n
    };
    let before = certificates(&db);
    {
        let mut c = AnyConnection::establish(&db).unwrap();
        let n = diesel::sql_query(
            r"UPDATE audit_records SET detail = replace(detail, '[a-z0-9-]+\\.lab\\.example\\.com', '.*') WHERE action = 'ca.profile_set'",
        )
        .execute(&mut c)
        .unwrap();
        assert_eq!(n, 1, "the profile's record was not found to edit");
    }
    let r = issue(&server, LAB_ISSUE, &admin, &server_csr("www.google.com"));
    assert!(
        r.status == 400 && r.error_code() == "san_not_allowed"
            || r.status == 503 && r.error_code() == "integrity_failure",
        "{}: {}",
        r.status,
        r.body
    );
    assert_eq!(certificates(&db), before);

    let dir = server.stop();
    let server = Server::start_in(dir, extra);
    let r = issue(&server, LAB_ISSUE, &admin, &server_csr("www.google.com"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error_code(), "integrity_failure");
    assert_eq!(certificates(&db), before);
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[test]
fn a_database_writer_cannot_widen_a_profile_sqlite() {
    a_widened_profile_row_is_refused(&[], |s| {
        s.data().join("kagi.db").to_string_lossy().into_owned()
    });
}

#[test]
fn a_database_writer_cannot_widen_a_profile_postgres() {
    let db = Database::create();
    let url = db.url();
    a_widened_profile_row_is_refused(&["--database-url", &db.url()], move |_| url.clone());
}
