//! Sigstore bundles through the real service: the policy rules on format "sigstore", usage
//! limits hold (and a refused signature gets no certificate), every bundle's entry is a
//! hashedrekord in the same transparency log `kagi log verify` recomputes, `kagi verify`
//! checks bundles on the client, and hostile requests are refused with their reasons. The
//! sigstore-python interop is in sigstore_acceptance.sh.

use crate::common;

use common::{stderr, Database, Server};
use serde_json::Value;

const DIGEST: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fn sigstore_certificates(server: &Server) -> usize {
    let out = server.kagi_ok(&["ca", "certs", "code-signing"]);
    out.lines().filter(|l| l.contains("sigstore")).count()
}

#[test]
fn sigstore_bundles_obey_policy_and_limits_sqlite() {
    bundles_obey_policy_and_limits(&[]);
}

#[test]
fn sigstore_bundles_obey_policy_and_limits_postgres() {
    let db = Database::create();
    bundles_obey_policy_and_limits(&["--database-url", &db.url()]);
}

fn bundles_obey_policy_and_limits(extra: &[&str]) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    std::fs::write(server.path("a.bin"), b"release 1").unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "release",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "2",
    ]);
    let ci = server
        .kagi_ok(&[
            "identity", "create", "--name", "ci-app", "--kind", "pipeline",
        ])
        .trim()
        .to_string();
    std::fs::write(
        server.path("policy.toml"),
        r#"rules = '''
@id("ci-app-sigstore")
permit (
  principal == kagi::Pipeline::"ci-app",
  action == kagi::Action::"sign",
  resource == kagi::Key::"release"
) when { context.format == "sigstore" };
'''
"#,
    )
    .unwrap();
    let out = server.kagi_ok(&["policy", "submit", "policy.toml"]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    server.kagi_ok(&["policy", "activate", &v]);
    let sign = |format: &str, out: &str| {
        server.kagi_as(
            &ci,
            &[
                "sign", "--key", "release", "--format", format, "a.bin", "-o", out,
            ],
        )
    };

    // The policy allows sigstore only.
    let denied = sign("raw", "a.sig");
    assert!(
        stderr(&denied).contains("policy_denied"),
        "{}",
        stderr(&denied)
    );
    let before = sigstore_certificates(&server);
    for i in 0..2 {
        let out = sign("sigstore", &format!("b{i}.json"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_eq!(sigstore_certificates(&server), before + 2);

    // The limit of 2 is reached: refused before any certificate is issued for it.
    let out = sign("sigstore", "b2.json");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("usage_limit_reached"),
        "{}",
        stderr(&out)
    );
    assert_eq!(sigstore_certificates(&server), before + 2);

    // The bundle's entry is a hashedrekord in kagi's one transparency log.
    let bundle: Value =
        serde_json::from_slice(&std::fs::read(server.path("b1.json")).unwrap()).unwrap();
    let e = &bundle["verificationMaterial"]["tlogEntries"][0];
    let index = e["logIndex"].as_str().unwrap();
    let entry = server.kagi_ok(&["log", "entry", index]);
    assert!(entry.contains("hashedrekord"), "{entry}");
    assert!(
        entry.contains(&hex::encode(
            kagi_hsm_core::DigestAlg::Sha256.hash(b"release 1")
        )),
        "{entry}"
    );
    let out = server.kagi_ok(&["log", "verify"]);
    assert!(out.contains("full recomputation OK"), "{out}");

    // kagi verify on the client: the identity and issuer the certificate names, pinned root.
    let base = identity_base(&bundle);
    let identity = format!("{base}/identities/default/ci-app");
    server.kagi_ok(&["ca", "show", "root", "-o", "root.pem"]);
    let verify = |file: &str, extra: &[&str]| {
        let mut args = vec!["verify", file, "-s", "b1.json", "--ca-file", "root.pem"];
        args.extend_from_slice(extra);
        server.kagi(&args)
    };
    let ok = verify(
        "a.bin",
        &["--cert-identity", &identity, "--cert-oidc-issuer", &base],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("Verified OK"), "{text}");
    // The intermediate's revocation is checked; the 10-minute leaf names no source, as Fulcio's.
    assert!(
        text.contains("revocation OK") && text.contains("short-lived"),
        "{text}"
    );
    let re = format!("{}/identities/default/ci-.*", regex_escape(&base));
    let ok = verify(
        "a.bin",
        &["--cert-identity-regexp", &re, "--cert-oidc-issuer", &base],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
    std::fs::write(server.path("b.bin"), b"release 2").unwrap();
    let bad = verify(
        "b.bin",
        &["--cert-identity", &identity, "--cert-oidc-issuer", &base],
    );
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("does NOT match"), "{}", stderr(&bad));

    // Without an expected identity or issuer, a valid bundle is refused: it would only say
    // that someone kagi certified signed the file. A regexp must match the whole identity.
    for extra in [
        &[][..],
        &["--cert-oidc-issuer", &base][..],
        &["--cert-identity", &identity][..],
    ] {
        let out = verify("a.bin", extra);
        assert!(!out.status.success(), "{extra:?}");
        let err = stderr(&out);
        assert!(
            err.contains("--cert-identity") || err.contains("--cert-oidc-issuer"),
            "{extra:?}: {err}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("Verified OK"));
    }
    let out = verify(
        "a.bin",
        &[
            "--cert-identity-regexp",
            "ci-app",
            "--cert-oidc-issuer",
            &base,
        ],
    );
    assert!(!out.status.success());
    let out = verify(
        "a.bin",
        &[
            "--cert-identity",
            &identity,
            "--cert-oidc-issuer",
            "http://elsewhere",
        ],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--cert-oidc-issuer"),
        "{}",
        stderr(&out)
    );

    // Every use is audited and the audit log still verifies.
    server.kagi_ok(&["audit", "verify"]);
}

/// `s` with the regular-expression metacharacters escaped.
fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let meta = "\\.+*?()|[]{}^$".contains(c);
            meta.then_some('\\').into_iter().chain(std::iter::once(c))
        })
        .collect()
}

/// The public URL the certificate's identity starts with (from its issuer extension's value,
/// which kagi sets to the same URL).
fn identity_base(bundle: &Value) -> String {
    use base64::Engine;
    use der::Decode;
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            bundle["verificationMaterial"]["certificate"]["rawBytes"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let cert = x509_cert::Certificate::from_der(&der).unwrap();
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id.to_string() == "1.3.6.1.4.1.57264.1.1")
        .unwrap();
    String::from_utf8(ext.extn_value.as_bytes().to_vec()).unwrap()
}

#[test]
fn hostile_sigstore_requests_are_refused_with_reasons() {
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "ec", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "create", "--name", "rsa", "--alg", "rsa-2048"]);
    server.kagi_ok(&["key", "create", "--name", "ed", "--alg", "ed25519"]);
    let http = server.http();
    let token = server.token();
    let before = server.kagi_ok(&["ca", "certs", "code-signing"]);
    let cases: Vec<(String, u16, &str)> = vec![
        (
            format!(r#"{{"key":"rsa","digest":"{DIGEST}","format":"sigstore"}}"#),
            400,
            "ECDSA",
        ),
        (
            format!(r#"{{"key":"ed","digest":"{DIGEST}","format":"sigstore"}}"#),
            400,
            "ECDSA",
        ),
        (
            format!(
                r#"{{"key":"ec","digest":"{DIGEST}{DIGEST}","digest_alg":"sha512","format":"sigstore"}}"#
            ),
            400,
            "SHA-256",
        ),
        (
            r#"{"key":"ec","digest":"abcd","format":"sigstore"}"#.to_string(),
            400,
            "digest",
        ),
        (
            r#"{"key":"ec","digest":"zz","format":"sigstore"}"#.to_string(),
            400,
            "hex",
        ),
        (
            format!(
                r#"{{"wrapped_key":"AAAA","alg":"ec-p256","digest":"{DIGEST}","format":"sigstore"}}"#
            ),
            400,
            "wrapped key",
        ),
        (
            format!(r#"{{"key":"nope","digest":"{DIGEST}","format":"sigstore"}}"#),
            404,
            "nope",
        ),
        (
            format!(r#"{{"key":"ec","digest":"{DIGEST}","format":"sigstore2"}}"#),
            400,
            "sigstore",
        ),
    ];
    for (body, status, says) in cases {
        let r = http.request("POST", "/api/v1/sign", Some(&token), Some(body.as_bytes()));
        assert_eq!(r.status, status, "{body}: {}", r.body);
        assert!(r.body.contains(says), "{body}: {}", r.body);
    }
    // Nothing was issued for any of them.
    assert_eq!(server.kagi_ok(&["ca", "certs", "code-signing"]), before);

    // The trust material is public.
    let r = http.request("GET", "/api/v1/sigstore/trusted_root.json", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    let root = r.json();
    assert_eq!(
        root["mediaType"],
        "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
    );
    assert_eq!(root["tlogs"][0]["publicKey"]["keyDetails"], "PKIX_ED25519");
    assert_eq!(
        root["ctlogs"][0]["publicKey"]["keyDetails"],
        "PKIX_ECDSA_P256_SHA_256"
    );
}
