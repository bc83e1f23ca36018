//! Unseal shares encrypted to their custodians, through the real binary: `kagi init
//! --share-recipients` prints no share, the service starts sealed, two custodians unseal with
//! their own age identity files, and a wrong identity file is refused before anything is sent.
//! On SQLite and on PostgreSQL.

use crate::common;

use age::secrecy::ExposeSecret;
use common::{stderr, Database, Server, KAGI};
use std::path::Path;
use std::process::Command;

/// Three custodians' age keys as NAME.pub and NAME.key in `dir`, as age-keygen writes them.
fn custodians(dir: &Path) {
    for name in ["a", "b", "c"] {
        let id = age::x25519::Identity::generate();
        std::fs::write(
            dir.join(format!("{name}.key")),
            format!(
                "# created: for a test\n# public key: {}\n{}\n",
                id.to_public(),
                id.to_string().expose_secret()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{name}.pub")),
            format!("{}\n", id.to_public()),
        )
        .unwrap();
    }
}

fn sealed(server: &Server) -> bool {
    server.http().request("GET", "/healthz", None, None).json()["sealed"]
        .as_bool()
        .unwrap()
}

fn custodians_unseal(database: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    custodians(dir.path());
    let init = |extra: &[&str]| {
        let mut cmd = Command::new(KAGI);
        cmd.args(["init", "--shares", "3", "--threshold", "2"])
            .args(database)
            .args(extra)
            .current_dir(dir.path())
            .env("RUST_LOG", "warn");
        if database.is_empty() {
            cmd.args(["--data", "kagi-data"]);
        }
        cmd.output().unwrap()
    };

    // One recipient file too few: refused before anything is initialized.
    let out = init(&["--share-recipients", "a.pub", "b.pub"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--share-recipients names 2 file(s) but --shares is 3"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("kagi-shares").exists());

    let out = init(&["--share-recipients", "a.pub", "b.pub", "c.pub"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        !printed.contains("kagi-share-v1"),
        "a share was printed: {printed}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let token = stdout.lines().last().unwrap().to_string();
    assert!(token.starts_with("kagi_"), "{stdout}");
    for n in 1..=3 {
        let file = dir.path().join(format!("kagi-shares/share-{n}.age"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(!text.contains("kagi-share-v1"));
        assert!(
            stdout.contains(&format!("kagi-shares/share-{n}.age")),
            "{stdout}"
        );
    }

    let mut serve = vec![];
    serve.extend_from_slice(database);
    let server = Server::start_in(dir, &serve);
    assert!(sealed(&server), "the service must start sealed");

    // Custodian b's file opened with a's identity: a clear error, nothing sent.
    let out = server.kagi(&[
        "unseal",
        "--share-file",
        "kagi-shares/share-2.age",
        "--identity",
        "a.key",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(
            "kagi-shares/share-2.age is not encrypted to the identity in a.key: use the custodian's own identity file"
        ),
        "{}",
        stderr(&out)
    );
    // An encrypted share without an identity is not sent either.
    let out = server.kagi(&["unseal", "--share-file", "kagi-shares/share-2.age"]);
    assert!(stderr(&out).contains("--identity"), "{}", stderr(&out));
    assert!(sealed(&server));

    let first = server.kagi_ok(&[
        "unseal",
        "--share-file",
        "kagi-shares/share-1.age",
        "--identity",
        "a.key",
    ]);
    // "1 of 2": neither refused attempt above submitted anything.
    assert!(first.contains("1 of 2"), "{first}");
    assert!(sealed(&server));
    let second = server.kagi_ok(&[
        "unseal",
        "--share-file",
        "kagi-shares/share-3.age",
        "--identity",
        "c.key",
    ]);
    assert!(second.contains("unsealed"), "{second}");
    assert!(!sealed(&server));
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    let out = Command::new(KAGI)
        .args(["key", "create", "--name", "prod", "--alg", "ec-p256"])
        .current_dir(server.root())
        .env("KAGI_URL", &server.url)
        .env("KAGI_TOKEN", &token)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // The share holders' break-glass reads the same files.
    let out = server.kagi(&[
        "admin",
        "recover",
        "--credential",
        "admin",
        "--share-file",
        "kagi-shares/share-1.age",
        "--share-file",
        "kagi-shares/share-2.age",
        "--identity",
        "a.key",
        "--identity",
        "b.key",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is unlocked"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = server.kagi(&[
        "admin",
        "recover",
        "--credential",
        "admin",
        "--share-file",
        "kagi-shares/share-1.age",
        "--share-file",
        "kagi-shares/share-2.age",
        "--identity",
        "c.key",
    ]);
    assert!(
        stderr(&out).contains("is not encrypted to the identity in c.key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn custodians_unseal_with_their_own_identity_files_sqlite() {
    custodians_unseal(&[]);
}

#[test]
fn custodians_unseal_with_their_own_identity_files_postgres() {
    let db = Database::create();
    custodians_unseal(&["--database-url", &db.url()]);
}

#[test]
fn init_without_recipients_still_prints_the_shares_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(KAGI)
        .args([
            "init",
            "--shares",
            "2",
            "--threshold",
            "2",
            "--data",
            "kagi-data",
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("kagi-share-v1:"))
            .count(),
        2,
        "{stdout}"
    );
    assert!(
        stderr(&out).contains("warning: without --share-recipients"),
        "{}",
        stderr(&out)
    );
}
