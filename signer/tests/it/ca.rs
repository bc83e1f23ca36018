//! The certificate authority through the real service: a line's issuance quota under 16
//! concurrent EST clients (SQLite and PostgreSQL), CA creation and revocation behind the
//! quorum, hostile CSRs that leave nothing stored, and tampering with a CA row.

use crate::common;

use base64::Engine;
use common::{stderr, Database, Server};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn write(server: &Server, name: &str, text: &str) {
    std::fs::write(server.path(name), text).unwrap();
}

fn activate(server: &Server, file: &str) {
    let out = server.kagi_ok(&["policy", "submit", file]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    let done = server.kagi_ok(&["policy", "activate", &v]);
    assert!(done.contains("is active"), "{done}");
}

/// A device CSR (DER) with its own P-256 key and serialNumber `sn`.
pub(crate) fn device_csr(sn: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sensor");
    dn.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(sn.try_into().unwrap()),
    );
    params.distinguished_name = dn;
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn certs_total(server: &Server, ca: &str) -> i64 {
    let out = server.kagi_ok(&["ca", "certs", ca, "--limit", "1"]);
    out.split_whitespace().next().unwrap().parse().unwrap()
}

fn quota_policy() -> &'static str {
    r#"rules = '''
@id("line-7-enrolls-devices")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
);
'''

[[quota]]
name = "line-7-devices"
identity = "line-7"
action = "issue"
resource = "device"
total = 100
"#
}

fn est_quota_is_exact(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    let line = server
        .kagi_ok(&["identity", "create", "--name", "line-7", "--kind", "line"])
        .trim()
        .to_string();
    write(&server, "quota.toml", quota_policy());
    activate(&server, "quota.toml");
    let before = certs_total(&server, "devices");

    // 16 clients, 8 enrollments each: 128 attempts against a quota of 100.
    let csrs: Vec<Vec<String>> = (0..16)
        .map(|c| {
            (0..8)
                .map(|i| B64.encode(device_csr(&format!("SN-{c}-{i}"))))
                .collect()
        })
        .collect();
    let http = server.http();
    let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = csrs
            .iter()
            .map(|mine| {
                let (http, line) = (&http, &line);
                s.spawn(move || {
                    mine.iter()
                        .map(|csr| {
                            let r = http.post_basic(
                                "/.well-known/est/simpleenroll",
                                "line-7",
                                line,
                                "application/pkcs10",
                                csr.as_bytes(),
                            );
                            let code = if r.status == 200 {
                                String::new()
                            } else {
                                r.error_code()
                            };
                            (r.status, code)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 100, "{statuses:?}");
    assert!(
        statuses
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, c)| *s == 429 && c == "quota_exhausted"),
        "{statuses:?}"
    );
    assert_eq!(certs_total(&server, "devices"), before + 100);

    // A wrong password: 401, and nothing issued.
    let r = http.post_basic(
        "/.well-known/est/simpleenroll",
        "line-7",
        "kagi_wrong_secret",
        "application/pkcs10",
        B64.encode(device_csr("SN-x")).as_bytes(),
    );
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(certs_total(&server, "devices"), before + 100);
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn est_line_quota_is_exact_under_16_concurrent_clients_sqlite() {
    est_quota_is_exact(&[]);
}

#[test]
fn est_line_quota_is_exact_under_16_concurrent_clients_postgres() {
    let db = Database::create();
    est_quota_is_exact(&["--database-url", &db.url()]);
}

#[test]
fn ca_creation_and_revocation_wait_for_the_quorum() {
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
    write(
        &server,
        "quorum.toml",
        r#"rules = '''
@id("people-issue")
permit (principal is kagi::Person, action, resource);
'''

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2
"#,
    );
    activate(&server, "quorum.toml");

    let create = [
        "ca",
        "create-root",
        "--name",
        "r2",
        "--subject",
        "CN=Second Root,O=Test",
    ];
    let out = server.kagi_as(alice, &create);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("approval required"), "{text}");
    let id = text
        .split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap()
        .to_string();
    // Nothing exists yet: no CA, no key.
    assert!(!server.kagi_ok(&["ca", "list"]).contains("r2"));
    // Using the request before it is approved is refused.
    let mut with_id = create.to_vec();
    with_id.extend(["--approval", &id]);
    let out = server.kagi_as(alice, &with_id);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not approved"), "{}", stderr(&out));

    assert!(server
        .kagi_as(bob, &["approval", "approve", &id])
        .status
        .success());
    assert!(server
        .kagi_as(carol, &["approval", "approve", &id])
        .status
        .success());
    // The approved request authorizes exactly this change, once, for its requester's command.
    let other = [
        "ca",
        "create-root",
        "--name",
        "r2",
        "--subject",
        "CN=Other,O=Test",
        "--approval",
        &id,
    ];
    let out = server.kagi_as(alice, &other);
    assert!(
        stderr(&out).contains("different change"),
        "{}",
        stderr(&out)
    );
    let out = server.kagi_as(alice, &with_id);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.kagi_ok(&["ca", "list"]).contains("r2"));
    let out = server.kagi_as(alice, &with_id);
    assert!(!out.status.success(), "an approval must not create twice");

    // Revoking a CA is gated the same way.
    let out = server.kagi_as(alice, &["ca", "revoke-ca", "r2", "--reason", "superseded"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("approval required"), "{text}");
    assert!(!server.kagi_ok(&["ca", "list"]).contains("revoked"));
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn hostile_csrs_are_refused_with_reasons_and_nothing_is_stored() {
    let server = Server::start();
    let http = server.http();
    let token = server.token();
    let before = certs_total(&server, "devices");
    let good = device_csr("SN-1");
    let mut bad_sig = good.clone();
    let n = bad_sig.len();
    bad_sig[n - 5] ^= 0x55;
    let mut huge = b"-----BEGIN CERTIFICATE REQUEST-----\n".to_vec();
    huge.extend(B64.encode(vec![0x30u8; 20_000]).as_bytes());
    huge.extend(b"\n-----END CERTIFICATE REQUEST-----\n");
    let more_usage = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(
            rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
            rcgen::DnValue::PrintableString("SN-2".try_into().unwrap()),
        );
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        p.serialize_request(&key).unwrap().der().to_vec()
    };
    let no_serial = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "no serial");
        p.serialize_request(&key).unwrap().der().to_vec()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad signature", bad_sig, "bad_csr"),
        ("garbage", b"\x30\x82\xff\xff garbage".to_vec(), "bad_csr"),
        ("empty", Vec::new(), "bad_csr"),
        ("oversize", huge, "bad_csr"),
        (
            "asks for a usage the profile lacks",
            more_usage,
            "not_allowed_by_profile",
        ),
        (
            "subject outside the profile",
            no_serial,
            "not_allowed_by_profile",
        ),
    ];
    for (what, body, code) in cases {
        let r = http.post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            &token,
            "application/pkcs10",
            &body,
        );
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert_eq!(r.error_code(), code, "{what}: {}", r.body);
    }
    let r = http.post_raw(
        "/api/v1/ca/devices/profiles/nope/issue",
        &token,
        "application/pkcs10",
        &good,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http.post_raw(
        "/api/v1/ca/nope/profiles/device/issue",
        &token,
        "application/pkcs10",
        &good,
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(certs_total(&server, "devices"), before);

    // The good one goes through, as DER, and comes back with its chain.
    let r = http.post_raw(
        "/api/v1/ca/devices/profiles/device/issue",
        &token,
        "application/pkcs10",
        &good,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert!(v["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert_eq!(certs_total(&server, "devices"), before + 1);
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn a_tampered_ca_row_is_refused() {
    let server = Server::start();
    let token = server.token();
    let http = server.http();
    let good = device_csr("SN-9");
    let dir = server.stop();
    let db = dir.path().join("kagi-data/kagi.db");
    {
        use diesel::{Connection, RunQueryDsl, SqliteConnection};
        let mut c = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
        // Point the device CA at the services CA's key: the row's MAC no longer matches.
        diesel::sql_query("UPDATE cas SET key_label = 'ca.services' WHERE name = 'devices'")
            .execute(&mut c)
            .unwrap();
    }
    let server = Server::start_in(dir, &[]);
    drop(http);
    let r = server.http().post_raw(
        "/api/v1/ca/devices/profiles/device/issue",
        &token,
        "application/pkcs10",
        &good,
    );
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.error_code(), "integrity_failure", "{}", r.body);
}

#[test]
fn est_enrolls_a_line_by_its_tls_client_certificate() {
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
    server.allow(&[("line", "line-3")]);
    std::fs::write(server.path("csr.b64"), B64.encode(device_csr("SN-TLS-1"))).unwrap();
    let url = format!("{}/.well-known/est/simpleenroll", server.http_base());
    let before = certs_total(&server, "devices");
    let curl = |cert: &str| {
        run(&[
            "curl",
            "-s",
            "-o",
            "out.b64",
            "-w",
            "%{http_code}",
            "--cacert",
            "kagi-data/tls-ca.pem",
            "--cert",
            &format!("{cert}.pem"),
            "--key",
            &format!("{cert}.key"),
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            "@csr.b64",
            &url,
        ])
    };
    let (ok, code) = curl("line");
    assert!(ok && code == "200", "{code}");
    let p7 = B64
        .decode(
            std::fs::read_to_string(server.path("out.b64"))
                .unwrap()
                .split_whitespace()
                .collect::<String>(),
        )
        .unwrap();
    std::fs::write(server.path("out.p7"), p7).unwrap();
    let (ok, certs) = run(&[
        "openssl",
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        "out.p7",
        "-print_certs",
    ]);
    assert!(ok && certs.contains("SN-TLS-1"), "{certs}");
    assert_eq!(certs_total(&server, "devices"), before + 1);
    let out = server.kagi_ok(&["ca", "certs", "devices", "--limit", "1"]);
    assert!(
        out.contains("line-3"),
        "issued to the certificate's identity: {out}"
    );

    // A certificate no identity pins gets 401 and nothing.
    let (_, code) = curl("stranger");
    assert_eq!(code, "401");
    assert_eq!(certs_total(&server, "devices"), before + 1);
}

#[test]
fn a_signing_key_gets_a_code_signing_certificate() {
    // Its key names are its own and it counts nothing others change: one shared instance.
    let server = Server::shared();
    server.kagi_ok(&["key", "create", "--name", "release", "--alg", "ec-p384"]);
    let out = server.kagi(&["key", "cert", "release"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no_certificate"), "{}", stderr(&out));
    server.kagi_ok(&[
        "key",
        "certify",
        "release",
        "--subject",
        "CN=Release Signing,O=Acme",
        "-o",
        "release.pem",
        "--chain",
    ]);
    server.kagi_ok(&["ca", "show", "root", "-o", "root.pem"]);
    server.kagi_ok(&["key", "cert", "release", "-o", "again.pem"]);
    let run = |args: &[&str]| {
        let o = std::process::Command::new(args[0])
            .args(&args[1..])
            .current_dir(server.root())
            .output()
            .unwrap();
        (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let (ok, text) = run(&[
        "openssl",
        "verify",
        "-CAfile",
        "root.pem",
        "-untrusted",
        "release.pem",
        "release.pem",
    ]);
    assert!(ok && text.contains("release.pem: OK"), "{text}");
    let (_, eku) = run(&[
        "openssl",
        "x509",
        "-in",
        "again.pem",
        "-noout",
        "-ext",
        "extendedKeyUsage",
    ]);
    assert!(eku.contains("Code Signing"), "{eku}");
    // The certificate is for the key in the HSM.
    server.kagi_ok(&["key", "public", "release", "-o", "release.pub"]);
    let (_, from_cert) = run(&["openssl", "x509", "-in", "again.pem", "-noout", "-pubkey"]);
    let key = std::fs::read_to_string(server.path("release.pub")).unwrap();
    assert_eq!(from_cert.trim(), key.trim());
    // CA keys and unknown keys are refused.
    assert!(!server.kagi(&["key", "certify", "ca.root"]).status.success());
    assert!(!server.kagi(&["key", "certify", "nope"]).status.success());
}

/// One `"*"` quota per action, so every signing path must be charged to it: raw, CMS,
/// Sigstore and a wrapped key for `sign`, certificate issuance for `issue`.
fn star_quota_policy() -> &'static str {
    r#"rules = '''
@id("ci-signs-with-anything")
permit (principal == kagi::Pipeline::"ci", action == kagi::Action::"sign", resource);

@id("line-issues-anything")
permit (principal == kagi::Line::"line-1", action == kagi::Action::"issue", resource);
'''

[[quota]]
name = "ci-all"
identity = "ci"
action = "sign"
resource = "*"
total = 4

[[quota]]
name = "line-all"
identity = "line-1"
action = "issue"
resource = "*"
total = 1
"#
}

fn every_path_is_charged_to_a_star_quota(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    server.kagi_ok(&["key", "create", "--name", "release", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "release"]);
    let key = server.path("outside.key");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    server.kagi_ok(&[
        "key",
        "wrap",
        "--pkcs8",
        "outside.key",
        "-o",
        "outside.wrapped",
    ]);
    let ci = server
        .kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"])
        .trim()
        .to_string();
    let line = server
        .kagi_ok(&["identity", "create", "--name", "line-1", "--kind", "line"])
        .trim()
        .to_string();
    write(&server, "star.toml", star_quota_policy());
    activate(&server, "star.toml");
    write(&server, "a.bin", "artifact");

    let raw: &[&str] = &["sign", "--key", "release", "a.bin", "-o", "raw.sig"];
    let wrapped: &[&str] = &[
        "sign",
        "--wrapped-key",
        "outside.wrapped",
        "--alg",
        "ec-p256",
        "a.bin",
        "-o",
        "wrapped.sig",
    ];
    let paths: [(&str, &[&str]); 4] = [
        ("raw", raw),
        (
            "cms",
            &[
                "sign", "--key", "release", "--format", "cms", "a.bin", "-o", "a.p7s",
            ],
        ),
        (
            "sigstore",
            &[
                "sign",
                "--key",
                "release",
                "--format",
                "sigstore",
                "a.bin",
                "-o",
                "a.sigstore.json",
            ],
        ),
        ("wrapped", wrapped),
    ];
    for (what, args) in paths {
        let out = server.kagi_as(&ci, args);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
    }
    // Four paths, four uses of a quota of four: the fifth use of either kind is refused.
    for (what, args) in [("raw", raw), ("wrapped", wrapped)] {
        let out = server.kagi_as(&ci, args);
        assert!(!out.status.success(), "{what} signed past the quota");
        assert!(
            stderr(&out).contains("quota_exhausted"),
            "{what}: {}",
            stderr(&out)
        );
    }

    let http = server.http();
    let issue = |sn: &str| {
        http.post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            &line,
            "application/pkcs10",
            &device_csr(sn),
        )
    };
    let first = issue("SN-STAR-1");
    assert_eq!(first.status, 201, "{}", first.body);
    let second = issue("SN-STAR-2");
    assert_eq!(second.status, 429, "{}", second.body);
    assert_eq!(second.error_code(), "quota_exhausted");
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn every_signing_path_is_charged_to_a_star_quota_sqlite() {
    every_path_is_charged_to_a_star_quota(&[]);
}

#[test]
fn every_signing_path_is_charged_to_a_star_quota_postgres() {
    let db = Database::create();
    every_path_is_charged_to_a_star_quota(&["--database-url", &db.url()]);
}
