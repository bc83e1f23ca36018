//! The OpenAPI document a running server serves: valid by an independent validator
//! (`openapi-spec-validator` from PyPI, installed by scripts/install-test-tools.sh), and true to
//! the server: every operation it documents is routed (the router's own "no such endpoint" and
//! 405 never answer it), and what each answers a caller without credentials, and the
//! administrator with an empty body, is one of the error codes, at the status, that the
//! document lists for it.
//!
//! The server registers its routes from the same table the document is made from
//! (signer/src/server/routes.rs), and a unit test there checks that the document holds exactly
//! the table's operations; this test checks the running server against the document.

use crate::common;

use common::{run_in, Server};
use serde_json::Value;

fn validator() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap();
    let bin = std::path::Path::new(&home)
        .join(".cache/kagi-test-tools/ops-venv/bin/openapi-spec-validator");
    assert!(
        bin.is_file(),
        "{} is missing: run scripts/install-test-tools.sh",
        bin.display()
    );
    bin
}

/// `METHOD base+path` with curl, an empty body for POST and PUT, and `token` if given: status
/// and body.
fn call(
    server: &Server,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let url = format!("{base}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec![
        "curl",
        "-sS",
        "--cacert",
        "kagi-data/tls-ca.pem",
        "-o",
        "answer.body",
        "-w",
        "%{http_code}",
        "-X",
        method,
    ];
    if method == "POST" || method == "PUT" {
        args.extend(["-H", "Content-Type: application/json", "--data-binary", ""]);
    }
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    args.push(&url);
    let (ok, status) = run_in(server, &args);
    assert!(ok, "curl {method} {url} failed");
    let body = std::fs::read_to_string(server.path("answer.body")).unwrap_or_default();
    (status.trim().parse().unwrap(), body)
}

/// A concrete path for a documented one: every parameter becomes "1".
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('1');
            }
            '}' => in_param = false,
            _ if in_param => {}
            _ => out.push(c),
        }
    }
    out
}

/// The operation answered `status`/`body`: it was routed, and an error is one it documents.
fn check_answer(base: &str, method: &str, path: &str, op: &Value, status: u16, body: &str) {
    let what = format!("{method} {base}{path} answered {status} {body}");
    assert_ne!(status, 405, "{what}: the router does not route it");
    let json: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if status == 404 {
        let message = json["error"]["message"].as_str().unwrap_or("");
        assert!(
            !message.starts_with("no such endpoint"),
            "{what}: the router does not route it"
        );
    }
    let responses = op["responses"].as_object().unwrap();
    assert!(
        responses.contains_key(&status.to_string()),
        "{what}: status not documented (documented: {:?})",
        responses.keys().collect::<Vec<_>>()
    );
    if let Some(code) = json["error"]["code"].as_str() {
        let listed = op["x-error-codes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["code"] == code)
            .unwrap_or_else(|| panic!("{what}: code {code} is not in its x-error-codes"));
        assert_eq!(listed["status"], status, "{what}");
        let allowed = &responses[&status.to_string()]["content"]["application/json"]["schema"]
            ["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"];
        assert!(
            allowed.as_array().unwrap().contains(&Value::from(code)),
            "{what}: {code} is not in the {status} response's codes"
        );
    }
}

#[test]
fn openapi_document_validates_and_every_operation_is_served() {
    let server = Server::start();
    let r = server
        .http()
        .request("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(r.status, 200);
    std::fs::write(server.path("openapi.json"), &r.body).unwrap();
    let out = std::process::Command::new(validator())
        .arg("openapi.json")
        .current_dir(server.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let doc = r.json();
    let token = server.token();
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    let mut plain = 0;
    for (path, item) in paths {
        for (verb, op) in item.as_object().unwrap() {
            operations += 1;
            let codes = op["x-error-codes"].as_array().unwrap();
            assert!(!codes.is_empty(), "{verb} {path} lists no error codes");
            let method = verb.to_uppercase();
            let concrete = concrete(path);
            let (status, body) = call(&server, &server.url, &method, &concrete, None);
            check_answer(&server.url, &method, &concrete, op, status, &body);
            // The administrator gets past authentication, to what the route itself refuses
            // (an empty body, an object named "1" that does not exist).
            let (status, body) = call(&server, &server.url, &method, &concrete, Some(&token));
            check_answer(&server.url, &method, &concrete, op, status, &body);
            if op["x-plain-http"] == true {
                plain += 1;
                let (status, body) = call(&server, &server.public_url, &method, &concrete, None);
                check_answer(&server.public_url, &method, &concrete, op, status, &body);
            }
        }
    }
    // The routes of the API surface are all there (a document that lost its table
    // would pass the loop above with nothing in it).
    for (verb, path) in [
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("post", "/api/v1/sign"),
        ("put", "/api/v1/keys/{name}/usage-limit"),
        ("post", "/api/v1/ca/{ca}/profiles/{profile}/issue"),
        ("get", "/ocsp/{req}"),
        ("post", "/.well-known/est/simpleenroll"),
    ] {
        assert!(
            doc["paths"][path][verb].is_object(),
            "{verb} {path} missing"
        );
    }
    assert!(operations >= 60, "only {operations} operations documented");
    assert!(
        plain >= 10,
        "only {plain} operations on the plain-HTTP listener"
    );
}
