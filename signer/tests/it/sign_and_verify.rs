//! Acceptance item 2 through the real binary: a key with a usage limit of 3 signs three times,
//! the fourth use fails with `usage_limit_reached`, and OpenSSL verifies the signatures.

use crate::common;

use common::{run_ok, stderr, Server};
use std::process::Command;

fn limit_then_openssl_verify(alg: &str, digest: &str) {
    // One shared instance for all algorithms: each test has its own key and folder.
    let server = Server::shared();
    let key = format!("fw-{alg}");
    let artifact = server.path("app.bin");
    // Larger than one 64 KiB read, so the streaming hash crosses chunk boundaries.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&artifact, &data).unwrap();

    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        &key,
        "--alg",
        alg,
        "--usage-limit",
        "3",
    ]);
    let pem = server.kagi_ok(&["key", "public", &key]);
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
    std::fs::write(server.path("fw.pem"), &pem).unwrap();

    for i in 1..=3 {
        let out = server.kagi_ok(&[
            "sign", "--key", &key, "--format", "raw", "app.bin", "-o", "app.sig",
        ]);
        assert!(out.contains(&format!("uses {i}/3")), "{out}");
    }
    let fourth = server.kagi(&[
        "sign", "--key", &key, "--format", "raw", "app.bin", "-o", "app4.sig",
    ]);
    assert!(!fourth.status.success(), "a fourth signature was granted");
    assert!(
        stderr(&fourth).contains("usage_limit_reached"),
        "{}",
        stderr(&fourth)
    );
    assert!(!server.path("app4.sig").exists());

    let show = server.kagi_ok(&["key", "show", &key]);
    assert!(show.contains("usage count:           3"), "{show}");
    assert!(show.contains("usage limit:           3"), "{show}");

    let verified = if alg == "ed25519" {
        // Raw ed25519 signs the digest bytes themselves as the message.
        let digest_file = server.path("app.digest");
        run_ok(
            Command::new("openssl")
                .args(["dgst", &format!("-{digest}"), "-binary", "-out"])
                .arg(&digest_file)
                .arg(&artifact),
        );
        run_ok(
            Command::new("openssl")
                .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
                .arg(server.path("fw.pem"))
                .arg("-rawin")
                .arg("-in")
                .arg(&digest_file)
                .arg("-sigfile")
                .arg(server.path("app.sig")),
        )
    } else {
        run_ok(
            Command::new("openssl")
                .args(["dgst", &format!("-{digest}"), "-verify"])
                .arg(server.path("fw.pem"))
                .arg("-signature")
                .arg(server.path("app.sig"))
                .arg(&artifact),
        )
    };
    assert!(
        verified.contains("Verified OK") || verified.contains("Signature Verified Successfully"),
        "{verified}"
    );

    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK:"), "{audit}");
}

#[test]
fn ec_p256_limit_and_openssl_verify() {
    limit_then_openssl_verify("ec-p256", "sha256");
}

#[test]
fn ec_p384_limit_and_openssl_verify() {
    limit_then_openssl_verify("ec-p384", "sha256");
}

#[test]
fn rsa_2048_limit_and_openssl_verify() {
    limit_then_openssl_verify("rsa-2048", "sha256");
}

#[test]
fn rsa_3072_limit_and_openssl_verify() {
    limit_then_openssl_verify("rsa-3072", "sha256");
}

#[test]
fn ed25519_limit_and_openssl_verify_over_the_digest() {
    limit_then_openssl_verify("ed25519", "sha256");
}

#[test]
fn rsa_pss_and_explicit_digest_verify_with_openssl() {
    let server = Server::shared();
    std::fs::write(server.path("a.bin"), b"pss please").unwrap();
    server.kagi_ok(&["key", "create", "--name", "r", "--alg", "rsa-2048"]);
    std::fs::write(
        server.path("r.pem"),
        server.kagi_ok(&["key", "public", "r"]),
    )
    .unwrap();
    server.kagi_ok(&[
        "sign",
        "--key",
        "r",
        "--digest",
        "sha512",
        "--padding",
        "pss",
        "a.bin",
        "-o",
        "a.sig",
    ]);
    let out = run_ok(Command::new("openssl").current_dir(server.root()).args([
        "dgst",
        "-sha512",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:-1",
        "-verify",
        "r.pem",
        "-signature",
        "a.sig",
        "a.bin",
    ]));
    assert!(out.contains("Verified OK"), "{out}");
}
