//! `kagi verify` is strict, tried the way an attacker would get past it: a signer revoked for
//! keyCompromise (even with a timestamp from before the revocation), a CRL set that leaves a CA
//! of the chain out, a timestamp token altered to backdate the signature, and a verifier with
//! no code-signing root of its own (it must not fall back to the TLS CA). `--offline` lets a
//! revoked signer pass and says that revocation was not checked. Sigstore bundles without an
//! expected identity are refused in sigstore.rs.

use crate::common;

use common::{stderr, Server};
use der::{Decode, DecodePem};

/// `kagi ARGS` from `dir` (not the server's folder), against `server`.
fn kagi_in(server: &Server, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(common::KAGI)
        .args(args)
        .current_dir(dir)
        .env("KAGI_URL", &server.url)
        .env("KAGI_CA", server.data().join("tls-ca.pem"))
        .env_remove("KAGI_TOKEN")
        .output()
        .unwrap()
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The serial (hex) of key `key`'s code-signing certificate.
fn cert_serial(server: &Server, key: &str) -> String {
    let file = format!("{key}-cert.pem");
    server.kagi_ok(&["key", "cert", key, "-o", &file]);
    let pem = std::fs::read(server.path(&file)).unwrap();
    let cert = x509_cert::Certificate::from_pem(&pem).unwrap();
    hex::encode(cert.tbs_certificate().serial_number().as_bytes())
}

/// GET `path` from the plain-HTTP public listener into the server's folder.
fn fetch_public(server: &Server, path: &str, file: &str) {
    let mut resp = ureq::get(format!("{}{path}", server.public_url))
        .call()
        .unwrap();
    let body = resp.body_mut().read_to_vec().unwrap();
    std::fs::write(server.path(file), body).unwrap();
}

#[test]
fn a_signer_revoked_for_key_compromise_is_refused_unless_offline() {
    let server = Server::start();
    std::fs::write(server.path("app.bin"), b"firmware 3.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "rel"]);
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    server.kagi_ok(&[
        "sign",
        "--key",
        "rel",
        "--format",
        "cms",
        "--timestamp",
        "app.bin",
        "-o",
        "ts.p7s",
    ]);

    // Before the revocation: the CA's OCSP responder says good for the signer and its CA.
    let out = server.kagi_ok(&["verify", "app.bin", "-s", "app.p7s"]);
    assert!(out.contains("revocation OK"), "{out}");
    assert!(out.contains("good (OCSP"), "{out}");
    let out = server.kagi_ok(&["verify", "app.bin", "-s", "ts.p7s"]);
    assert!(out.contains("timestamp OK"), "{out}");

    let serial = cert_serial(&server, "rel");
    server.kagi_ok(&["ca", "revoke", &serial, "--reason", "keyCompromise"]);

    // keyCompromise: refused, with or without a timestamp from before the revocation.
    for sig in ["app.p7s", "ts.p7s"] {
        let out = server.kagi(&["verify", "app.bin", "-s", sig]);
        assert!(!out.status.success(), "{sig}: {}", stdout(&out));
        let err = stderr(&out);
        assert!(
            err.contains("REVOKED") && err.contains("keyCompromise"),
            "{sig}: {err}"
        );
        assert!(!stdout(&out).contains("Verified OK"), "{sig}");
    }

    // --offline: accepted, and the report says revocation was not checked.
    let out = server.kagi(&["verify", "app.bin", "-s", "app.p7s", "--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("revocation was NOT checked"),
        "{}",
        stderr(&out)
    );
    let report = stdout(&out);
    assert!(
        report.contains("revocation NOT checked") && report.contains("Verified OK"),
        "{report}"
    );

    // Offline with CRL files: the signer's CA's CRL lists it; a set without the root's CRL
    // cannot vouch for the intermediate and is refused rather than half-checked.
    fetch_public(&server, "/crl/code-signing.crl", "code-signing.crl");
    fetch_public(&server, "/crl/root.crl", "root.crl");
    let out = server.kagi(&[
        "verify",
        "app.bin",
        "-s",
        "app.p7s",
        "--crl",
        "code-signing.crl",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("REVOKED") && err.contains("keyCompromise"),
        "{err}"
    );
    let out = server.kagi(&["verify", "app.bin", "-s", "ts.p7s", "--crl", "root.crl"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("none of the --crl files"),
        "{}",
        stderr(&out)
    );
    let out = server.kagi(&[
        "verify",
        "app.bin",
        "-s",
        "app.p7s",
        "--crl",
        "code-signing.crl",
        "--crl",
        "root.crl",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("keyCompromise"), "{}", stderr(&out));

    // superseded: a signature timestamped before the revocation stays valid; one without a
    // verified time does not (its signingTime is the signer's own word).
    server.kagi_ok(&["key", "create", "--name", "old", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "old"]);
    server.kagi_ok(&[
        "sign", "--key", "old", "--format", "cms", "app.bin", "-o", "old.p7s",
    ]);
    server.kagi_ok(&[
        "sign",
        "--key",
        "old",
        "--format",
        "cms",
        "--timestamp",
        "app.bin",
        "-o",
        "old-ts.p7s",
    ]);
    let serial = cert_serial(&server, "old");
    // Revocation times are whole seconds: let the clock pass the timestamp's second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    server.kagi_ok(&["ca", "revoke", &serial, "--reason", "superseded"]);
    let out = server.kagi(&["verify", "app.bin", "-s", "old-ts.p7s"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("revoked at"), "{}", stdout(&out));
    let out = server.kagi(&["verify", "app.bin", "-s", "old.p7s"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("superseded") && stderr(&out).contains("no verified time"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_tampered_timestamp_token_is_refused() {
    let server = Server::shared();
    std::fs::write(server.path("app.bin"), b"firmware 4.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "strict-ts", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "strict-ts"]);
    server.kagi_ok(&[
        "sign",
        "--key",
        "strict-ts",
        "--format",
        "cms",
        "--timestamp",
        "app.bin",
        "-o",
        "ts.p7s",
    ]);
    let out = server.kagi_ok(&["verify", "app.bin", "-s", "ts.p7s"]);
    assert!(out.contains("timestamp OK"), "{out}");

    // Backdate the token by a year. It sits in the unsigned attributes, so the signer's own
    // signature still verifies; only the TSA's signature over the TSTInfo can catch it.
    let der = backdate_token(&std::fs::read(server.path("ts.p7s")).unwrap());
    std::fs::write(server.path("backdated.p7s"), &der).unwrap();
    std::fs::copy(
        server.path("ts.p7s.tlog.json"),
        server.path("backdated.p7s.tlog.json"),
    )
    .unwrap();
    let out = server.kagi(&["verify", "app.bin", "-s", "backdated.p7s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("timestamp does NOT verify") && err.contains("altered"),
        "{err}"
    );

    // A token moved over from another signature is refused too.
    server.kagi_ok(&[
        "sign",
        "--key",
        "strict-ts",
        "--format",
        "cms",
        "--timestamp",
        "app.bin",
        "-o",
        "ts2.p7s",
    ]);
    let first = std::fs::read(server.path("ts.p7s")).unwrap();
    let second = std::fs::read(server.path("ts2.p7s")).unwrap();
    let swapped = swap_token(&first, &second);
    std::fs::write(server.path("swapped.p7s"), swapped).unwrap();
    let out = server.kagi(&["verify", "app.bin", "-s", "swapped.p7s", "--offline"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("timestamps another signature"),
        "{}",
        stderr(&out)
    );
}

/// The CMS signature `der` with its timestamp token's genTime moved a year back, everything
/// else (the TSA's signature included) unchanged.
fn backdate_token(der: &[u8]) -> Vec<u8> {
    use cms::content_info::ContentInfo;
    use cms::signed_data::SignedData;
    use der::asn1::{GeneralizedTime, OctetString, SetOfVec};
    use der::{Any, Encode};
    use kagi_ca::rfc3161::TstInfo;
    let mut outer: SignedData = ContentInfo::from_der(der)
        .unwrap()
        .content
        .decode_as()
        .unwrap();
    let mut infos = outer.signer_infos.0.into_vec();
    let attrs = infos[0].unsigned_attrs.take().unwrap().into_vec();
    let mut rebuilt = Vec::new();
    for mut attr in attrs {
        if attr.oid.to_string() == "1.2.840.113549.1.9.16.2.14" {
            let value = attr.values.iter().next().unwrap();
            let ci: ContentInfo = value.decode_as().unwrap();
            let mut token: SignedData = ci.content.decode_as().unwrap();
            let econtent = token.encap_content_info.econtent.as_ref().unwrap();
            let octets: OctetString = econtent.decode_as().unwrap();
            let mut tst = TstInfo::from_der(octets.as_bytes()).unwrap();
            let earlier =
                tst.gen_time.to_unix_duration() - std::time::Duration::from_secs(365 * 86_400);
            tst.gen_time = GeneralizedTime::from_unix_duration(earlier).unwrap();
            let octets = OctetString::new(tst.to_der().unwrap()).unwrap();
            token.encap_content_info.econtent = Some(Any::encode_from(&octets).unwrap());
            let ci = ContentInfo {
                content_type: ci.content_type,
                content: Any::encode_from(&token).unwrap(),
            };
            attr.values = SetOfVec::try_from(vec![Any::encode_from(&ci).unwrap()]).unwrap();
        }
        rebuilt.push(attr);
    }
    infos[0].unsigned_attrs = Some(SetOfVec::try_from(rebuilt).unwrap());
    outer.signer_infos = cms::signed_data::SignerInfos(infos.try_into().unwrap());
    ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: Any::encode_from(&outer).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// `first`'s signature with `second`'s timestamp token.
fn swap_token(first: &[u8], second: &[u8]) -> Vec<u8> {
    use cms::signed_data::SignedData;
    use der::Encode;
    let read = |der: &[u8]| -> SignedData {
        cms::content_info::ContentInfo::from_der(der)
            .unwrap()
            .content
            .decode_as()
            .unwrap()
    };
    let mut a = read(first);
    let b = read(second);
    let token = b
        .signer_infos
        .0
        .iter()
        .next()
        .unwrap()
        .unsigned_attrs
        .clone();
    let mut infos = a.signer_infos.0.into_vec();
    infos[0].unsigned_attrs = token;
    a.signer_infos = cms::signed_data::SignerInfos(infos.try_into().unwrap());
    cms::content_info::ContentInfo {
        content_type: const_oid::db::rfc5911::ID_SIGNED_DATA,
        content: der::Any::encode_from(&a).unwrap(),
    }
    .to_der()
    .unwrap()
}

#[test]
fn without_a_code_signing_root_kagi_verify_refuses_to_guess() {
    let server = Server::shared();
    std::fs::write(server.path("app.bin"), b"firmware 5.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "strict-root", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "strict-root"]);
    server.kagi_ok(&[
        "sign",
        "--key",
        "strict-root",
        "--format",
        "cms",
        "app.bin",
        "-o",
        "app.p7s",
    ]);
    // The instance's folder has the code-signing root beside the TLS CA.
    assert!(server.data().join("ca-root.pem").is_file());

    // A relying party's folder with the TLS CA but no code-signing root: kagi verify does not
    // fall back to the TLS CA, or to the root the signature itself carries.
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::create_dir(elsewhere.path().join("kagi-data")).unwrap();
    std::fs::copy(
        server.data().join("tls-ca.pem"),
        elsewhere.path().join("kagi-data/tls-ca.pem"),
    )
    .unwrap();
    for f in ["app.bin", "app.p7s"] {
        std::fs::copy(server.path(f), elsewhere.path().join(f)).unwrap();
    }
    let out = kagi_in(
        &server,
        elsewhere.path(),
        &["verify", "app.bin", "-s", "app.p7s"],
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("no trust root") && err.contains("--ca-file") && err.contains("kagi ca show"),
        "{err}"
    );

    // Given the root explicitly, the same signature verifies there.
    server.kagi_ok(&["ca", "show", "root", "-o", "root.pem"]);
    std::fs::copy(server.path("root.pem"), elsewhere.path().join("root.pem")).unwrap();
    let out = kagi_in(
        &server,
        elsewhere.path(),
        &[
            "verify",
            "app.bin",
            "-s",
            "app.p7s",
            "--ca-file",
            "root.pem",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn an_unknowable_revocation_status_refuses_and_a_forged_crl_is_not_taken() {
    // The certificates name an OCSP responder and CRLs where nothing listens (the instance's
    // own public listener is elsewhere): as if an attacker blocked them.
    let dead = format!("http://127.0.0.1:{}", common::free_port());
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--public-url", &dead]);
    std::fs::write(server.path("app.bin"), b"firmware 6.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "rel"]);
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let out = server.kagi(&["verify", "app.bin", "-s", "app.p7s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("cannot learn whether")
            && err.contains(&dead)
            && err.contains("--crl FILE")
            && err.contains("--offline"),
        "{err}"
    );
    assert!(!stdout(&out).contains("Verified OK"));

    // The CRLs, fetched another way: taken when their issuer signed them, not when a byte of
    // the signature was changed.
    fetch_public(&server, "/crl/code-signing.crl", "cs.crl");
    fetch_public(&server, "/crl/root.crl", "root.crl");
    let mut forged = std::fs::read(server.path("cs.crl")).unwrap();
    *forged.last_mut().unwrap() ^= 1;
    std::fs::write(server.path("forged.crl"), forged).unwrap();
    let with = |crl: &str| {
        server.kagi(&[
            "verify", "app.bin", "-s", "app.p7s", "--crl", crl, "--crl", "root.crl",
        ])
    };
    let out = with("forged.crl");
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(stderr(&out).contains("does not verify"), "{}", stderr(&out));
    let out = with("cs.crl");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("good (CRL cs.crl)"),
        "{}",
        stdout(&out)
    );
    let out = server.kagi(&["verify", "app.bin", "-s", "app.p7s", "--offline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("revocation NOT checked"),
        "{}",
        stdout(&out)
    );
}

/// Answers every HTTP request on `listener` with `body`, for the rest of the test process: an
/// attacker between the verifier and the CA's public listener.
fn answer_everything_with(listener: std::net::TcpListener, body: Vec<u8>) {
    use std::io::{Read, Write};
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let headers = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len = headers
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/ocsp-response\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
}

#[test]
fn a_genuine_ocsp_answer_about_another_certificate_is_not_taken() {
    // The certificates' OCSP and CRL URLs point at the attacker's listener.
    let attacker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", attacker.local_addr().unwrap());
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--public-url", &url]);
    std::fs::write(server.path("app.bin"), b"firmware 7.0").unwrap();
    for key in ["rel", "other"] {
        server.kagi_ok(&["key", "create", "--name", key, "--alg", "ec-p256"]);
        server.kagi_ok(&["key", "certify", key]);
    }
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let serial = cert_serial(&server, "rel");
    server.kagi_ok(&["ca", "revoke", &serial, "--reason", "keyCompromise"]);

    // A current, genuinely signed "good" from the CA's responder, about the other key's
    // certificate, replayed for every question.
    server.kagi_ok(&["key", "cert", "other", "-o", "other.pem"]);
    server.kagi_ok(&["ca", "show", "code-signing", "-o", "cs.pem"]);
    let req = std::process::Command::new("openssl")
        .args([
            "ocsp",
            "-issuer",
            "cs.pem",
            "-cert",
            "other.pem",
            "-no_nonce",
            "-reqout",
            "req.der",
        ])
        .current_dir(server.root())
        .output()
        .unwrap();
    assert!(
        req.status.success(),
        "{}",
        String::from_utf8_lossy(&req.stderr)
    );
    let mut resp = ureq::post(format!("{}/ocsp", server.public_url))
        .header("Content-Type", "application/ocsp-request")
        .send(&std::fs::read(server.path("req.der")).unwrap()[..])
        .unwrap();
    let good_for_other = resp.body_mut().read_to_vec().unwrap();
    answer_everything_with(attacker, good_for_other);

    let out = server.kagi(&["verify", "app.bin", "-s", "app.p7s"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("does not answer for this certificate") && err.contains("cannot learn"),
        "{err}"
    );
}
