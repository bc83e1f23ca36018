//! Partitions through the CLI, and signing with a key the caller keeps outside the HSM, wrapped.

use crate::common;

use common::{run_ok, Server};
use std::process::Command;

#[test]
fn a_partition_keeps_its_keys_from_other_partitions() {
    let server = Server::start();
    server.kagi_ok(&["partition", "create", "factory"]);
    let list = server.kagi_ok(&["partition", "list"]);
    assert_eq!(list.lines().collect::<Vec<_>>(), vec!["default", "factory"]);
    let token = server.kagi_ok(&[
        "credential",
        "create",
        "--partition",
        "factory",
        "--name",
        "line-1",
        "--roles",
        "officer,user",
    ]);
    let token = token.trim();
    assert!(token.starts_with("kagi_"), "{token}");
    server.kagi_ok(&["key", "create", "--name", "admin-key", "--alg", "ec-p256"]);
    // The factory credential sees none of the default partition's keys.
    let out = server.kagi_as(token, &["key", "show", "admin-key"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("key_not_found"),
        "{out:?}"
    );
    // It can make and use its own keys, and an administrator-only command is refused.
    assert!(server
        .kagi_as(
            token,
            &["key", "create", "--name", "line-key", "--alg", "ec-p256"]
        )
        .status
        .success());
    let denied = server.kagi_as(token, &["partition", "list"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("forbidden"),
        "{denied:?}"
    );
    let dup = server.kagi(&["partition", "create", "factory"]);
    assert!(String::from_utf8_lossy(&dup.stderr).contains("conflict"));
}

#[test]
fn a_wrapped_key_kept_outside_signs_and_openssl_verifies() {
    let server = Server::start();
    let key = server.path("release.key");
    let pub_pem = server.path("release.pub");
    run_ok(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key),
    );
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&pub_pem),
    );
    server.kagi_ok(&[
        "key",
        "wrap",
        "--pkcs8",
        "release.key",
        "-o",
        "release.wrapped",
    ]);
    std::fs::write(server.path("app.bin"), b"firmware image").unwrap();
    server.kagi_ok(&[
        "sign",
        "--wrapped-key",
        "release.wrapped",
        "--alg",
        "ec-p256",
        "app.bin",
        "-o",
        "app.sig",
    ]);
    let verified = run_ok(Command::new("openssl").current_dir(server.root()).args([
        "dgst",
        "-sha256",
        "-verify",
        "release.pub",
        "-signature",
        "app.sig",
        "app.bin",
    ]));
    assert!(verified.contains("Verified OK"), "{verified}");
    // Nothing was stored: only the partition's import key (and the development CA keys, which
    // existed before) are listed.
    let list = server.kagi_ok(&["key", "list"]);
    assert!(
        list.contains("kagi-import-key")
            && list
                .lines()
                .skip(1)
                .all(|l| l.starts_with("kagi-import-key") || l.starts_with("ca.")),
        "{list}"
    );
    let audit = server.kagi_ok(&["audit", "verify"]);
    assert!(audit.starts_with("audit log OK"), "{audit}");
    // A damaged wrapped key is refused with a clear code.
    let mut bad = std::fs::read(server.path("release.wrapped")).unwrap();
    bad.truncate(bad.len() - 3);
    std::fs::write(server.path("bad.wrapped"), bad).unwrap();
    let out = server.kagi(&[
        "sign",
        "--wrapped-key",
        "bad.wrapped",
        "--alg",
        "ec-p256",
        "app.bin",
        "-o",
        "x.sig",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unwrap_failed"));
}
