//! One live certificate per device serial number (issue 11, item 9), through the real service:
//! a cloned device asking for a second identity with its own key is refused with 409
//! `serial_in_use`, also when 16 clients race for one serial on SQLite and PostgreSQL; the same
//! key renews through EST; an officer's revocation frees the serial; an officer's override is
//! audited and nobody else may use it.

use crate::common;

use base64::Engine;
use common::{Database, Server};
use serde_json::Value;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ISSUE: &str = "/api/v1/ca/devices/profiles/device/issue";
const ENROLL: &str = "/.well-known/est/simpleenroll";
const REENROLL: &str = "/.well-known/est/simplereenroll";

/// A device CSR (DER) for `key` with serialNumber `sn`.
fn csr_for(key: &rcgen::KeyPair, sn: &str) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "sensor");
    dn.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        rcgen::DnValue::PrintableString(sn.try_into().unwrap()),
    );
    params.distinguished_name = dn;
    params.serialize_request(key).unwrap().der().to_vec()
}

fn new_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn certs_total(server: &Server) -> i64 {
    let out = server.kagi_ok(&["ca", "certs", "devices", "--limit", "1"]);
    out.split_whitespace().next().unwrap().parse().unwrap()
}

/// A line that may enroll devices, and the admin that may issue them, under an active policy
/// (default deny holds for everyone else).
fn line_with_policy(server: &Server) -> String {
    let token = server
        .kagi_ok(&["identity", "create", "--name", "line-7", "--kind", "line"])
        .trim()
        .to_string();
    std::fs::write(
        server.path("devices.toml"),
        r#"rules = '''
@id("line-7-enrolls-devices")
permit (
  principal == kagi::Line::"line-7",
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
);
@id("people-issue-devices")
permit (
  principal is kagi::Person,
  action == kagi::Action::"issue",
  resource == kagi::Profile::"device"
);
'''
"#,
    )
    .unwrap();
    let out = server.kagi_ok(&["policy", "submit", "devices.toml"]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    assert!(server
        .kagi_ok(&["policy", "activate", &v])
        .contains("is active"));
    token
}

fn enroll(server: &Server, path: &str, line: &str, csr: &[u8]) -> common::Reply {
    server.http().post_basic(
        path,
        "line-7",
        line,
        "application/pkcs10",
        B64.encode(csr).as_bytes(),
    )
}

/// The audit log, each record's detail parsed.
fn audit_records(server: &Server) -> Vec<Value> {
    let r = server.http().request(
        "GET",
        "/api/v1/audit?limit=10000",
        Some(&server.token()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let mut records = r.json().as_array().unwrap().clone();
    for rec in &mut records {
        let detail: Value = serde_json::from_str(rec["detail"].as_str().unwrap()).unwrap();
        rec["detail"] = detail;
    }
    records
}

/// The acceptance: 16 clients, 16 keys, one serial number: exactly one certificate.
fn sixteen_clones_race(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    let line = line_with_policy(&server);
    let before = certs_total(&server);
    let csrs: Vec<Vec<u8>> = (0..16).map(|_| csr_for(&new_key(), "SN-CLONE-1")).collect();
    let replies: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = csrs
            .iter()
            .map(|csr| {
                let (server, line) = (&server, &line);
                s.spawn(move || {
                    let r = enroll(server, ENROLL, line, csr);
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
    let ok = replies.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!(ok, 1, "{replies:?}");
    assert!(
        replies
            .iter()
            .filter(|(s, _)| *s != 200)
            .all(|(s, c)| *s == 409 && c == "serial_in_use"),
        "{replies:?}"
    );
    assert_eq!(certs_total(&server), before + 1);
    // Every refusal is on the record, and none of them left a certificate behind.
    let refused = audit_records(&server)
        .iter()
        .filter(|r| {
            r["outcome"]
                .as_str()
                .is_some_and(|o| o.ends_with("serial_in_use"))
        })
        .count();
    assert!(refused >= 15, "{refused} refusals audited");
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn sixteen_clones_racing_for_one_serial_get_one_certificate_sqlite() {
    sixteen_clones_race(&[]);
}

#[test]
fn sixteen_clones_racing_for_one_serial_get_one_certificate_postgres() {
    let db = Database::create();
    sixteen_clones_race(&["--database-url", &db.url()]);
}

#[test]
fn a_serial_is_renewed_by_its_key_freed_by_revocation_and_overridden_only_by_an_officer() {
    let server = Server::start();
    let line = line_with_policy(&server);
    let http = server.http();
    let admin = server.token();
    let original = new_key();

    let r = enroll(&server, ENROLL, &line, &csr_for(&original, "SN-42"));
    assert_eq!(r.status, 200, "{}", r.body);
    let before = certs_total(&server);

    // A clone with its own key: refused, by EST and by the API, with a message that says what
    // to do; nothing is stored.
    let clone = csr_for(&new_key(), "SN-42");
    let r = enroll(&server, ENROLL, &line, &clone);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "serial_in_use");
    assert!(r.body.contains("revoke"), "{}", r.body);
    let r = enroll(&server, REENROLL, &line, &clone);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "serial_in_use");
    let r = http.post_raw(ISSUE, &admin, "application/pkcs10", &clone);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "serial_in_use");
    assert_eq!(certs_total(&server), before);

    // The device renews with its own key.
    let r = enroll(&server, REENROLL, &line, &csr_for(&original, "SN-42"));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(certs_total(&server), before + 1);

    // The override is an officer's: a line asking for it is refused, and nothing is issued.
    let pem_csr = |der: &[u8]| {
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
    };
    let body = serde_json::json!({"csr": pem_csr(&clone), "override_serial_in_use": true});
    let r = http.request(
        "POST",
        ISSUE,
        Some(&line),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(certs_total(&server), before + 1);
    // The officer's override issues, and the audit record says so and names what it replaced.
    let r = http.request(
        "POST",
        ISSUE,
        Some(&admin),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let replacement = r.json()["serial"].as_str().unwrap().to_string();
    let rec = audit_records(&server)
        .into_iter()
        .find(|r| {
            r["outcome"] == "ok"
                && r["detail"]["serial"].as_str() == Some(replacement.as_str())
                && r["detail"]["purpose"] == "issue_certificate"
        })
        .expect("the override's issuance is audited");
    assert_eq!(rec["detail"]["override_serial_in_use"], true, "{rec}");
    assert_eq!(rec["detail"]["device_serial"], "SN-42", "{rec}");
    assert!(rec["detail"]["replaces"].is_string(), "{rec}");

    // Now the replacement holds the serial: the original key is the one refused.
    let r = enroll(&server, REENROLL, &line, &csr_for(&original, "SN-42"));
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.error_code(), "serial_in_use");

    // An officer revokes the replacement: the serial is free for a new key.
    server.kagi_ok(&["ca", "revoke", &replacement, "--reason", "keyCompromise"]);
    let r = enroll(&server, ENROLL, &line, &csr_for(&new_key(), "SN-42"));
    assert_eq!(r.status, 200, "{}", r.body);

    // Other serial numbers were never in question.
    let r = enroll(&server, ENROLL, &line, &csr_for(&new_key(), "SN-43"));
    assert_eq!(r.status, 200, "{}", r.body);
    server.kagi_ok(&["audit", "verify"]);
}
