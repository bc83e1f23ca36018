//! Instance lifecycle through the real binary: first run, restart, sealed start and unseal, and
//! the production `kagi init`.

use crate::common;

use common::{stderr, Server, KAGI};
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn development_instance_restarts_self_unsealed_then_sealed_without_shares() {
    let server = Server::start();
    let data = server.data();
    assert!(server.log().contains("DEVELOPMENT"), "{}", server.log());
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin.token")), 0o600);
    assert_eq!(mode(&data.join("unseal-shares/share-1")), 0o600);
    assert_eq!(mode(&data.join("tls/server.key")), 0o600);
    let ca = std::fs::read(data.join("tls-ca.pem")).unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "keep",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "2",
    ]);
    std::fs::write(server.path("f"), b"x").unwrap();
    server.kagi_ok(&["sign", "--key", "keep", "f", "-o", "f.sig"]);

    // Restart: the same CA, self-unsealed, the count survives.
    let dir = server.stop();
    let server = Server::start_in(dir, &[]);
    assert_eq!(std::fs::read(server.data().join("tls-ca.pem")).unwrap(), ca);
    assert!(
        server.log().contains("unsealed a DEVELOPMENT instance"),
        "{}",
        server.log()
    );
    let show = server.kagi_ok(&["key", "show", "keep"]);
    assert!(show.contains("usage count:           1"), "{show}");

    // Without the share files it starts sealed and waits for `kagi unseal`.
    let data = server.data();
    let dir = server.stop();
    std::fs::rename(data.join("unseal-shares"), dir.path().join("shares")).unwrap();
    let server = Server::start_in(dir, &[]);
    assert_eq!(
        server.http().request("GET", "/healthz", None, None).json()["sealed"],
        true
    );
    let out = server.kagi(&["key", "list"]);
    assert!(
        stderr(&out).starts_with("error: sealed: "),
        "{}",
        stderr(&out)
    );
    let out = server.kagi_ok(&["unseal", "--share-file", "shares/share-1"]);
    assert!(out.contains("unsealed"), "{out}");
    let show = server.kagi_ok(&["key", "show", "keep"]);
    assert!(show.contains("usage limit:           2"), "{show}");
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn production_init_prints_secrets_once_and_writes_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(KAGI)
        .args(["init", "--shares", "3", "--threshold", "2", "--data"])
        .arg(dir.path().join("kagi-data"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[..3].iter().all(|l| l.starts_with("kagi-share-v1:")),
        "{stdout}"
    );
    assert!(lines[3].starts_with("kagi_"), "{stdout}");
    let data = dir.path().join("kagi-data");
    assert!(!data.join("admin.token").exists());
    assert!(!data.join("unseal-shares").exists());
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap_or_default();
        for secret in &lines {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret was written to disk"
            );
        }
    }
    // A second init is refused.
    let again = Command::new(KAGI)
        .args(["init", "--shares", "1", "--threshold", "1", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already initialized"),
        "{}",
        stderr(&again)
    );

    // The service starts sealed; two of the three shares open it.
    let server = Server::start_in(dir, &[]);
    assert_eq!(
        server.http().request("GET", "/healthz", None, None).json()["sealed"],
        true
    );
    std::fs::write(server.path("s1"), lines[0]).unwrap();
    std::fs::write(server.path("s3"), lines[2]).unwrap();
    let first = server.kagi_ok(&["unseal", "--share-file", "s1"]);
    assert!(first.contains("1 of 2"), "{first}");
    server.kagi_ok(&["unseal", "--share-file", "s3"]);
    let out = Command::new(KAGI)
        .args(["key", "create", "--name", "prod", "--alg", "ec-p384"])
        .current_dir(server.root())
        .env("KAGI_URL", &server.url)
        .env("KAGI_TOKEN", lines[3])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
