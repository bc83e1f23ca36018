//! `kagi backup -o FILE` while the service signs: the copy is consistent (restored into a fresh
//! data folder with the same unseal shares, kagi starts on it and its audit log verifies),
//! owner-only, never overwrites, and PostgreSQL is sent to pg_dump.

use crate::common;

use common::{stderr, Server, KAGI};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn backup(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(KAGI)
        .arg("backup")
        .args(args)
        .current_dir(dir)
        .env_remove("KAGI_DATA")
        .env_remove("KAGI_DATABASE_URL")
        .env_remove("KAGI_CONFIG")
        .output()
        .unwrap()
}

/// The usage count `kagi key show` prints.
fn usage_count(server: &Server, key: &str) -> u64 {
    let show = server.kagi_ok(&["key", "show", key]);
    show.lines()
        .find_map(|l| l.strip_prefix("usage count:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no usage count in: {show}"))
}

#[test]
fn a_backup_taken_while_signing_restores_and_verifies() {
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "bk", "--alg", "ec-p256"]);
    std::fs::write(server.path("a.bin"), b"release").unwrap();
    server.kagi_ok(&["sign", "--key", "bk", "a.bin", "-o", "first.sig"]);

    // Two signers keep the committer busy while backups are taken.
    let signed = 1 + 2 * 8;
    std::thread::scope(|s| {
        let signers: Vec<_> = (0..2)
            .map(|t| {
                let server = &server;
                s.spawn(move || {
                    for i in 0..8 {
                        server.kagi_ok(&[
                            "sign",
                            "--key",
                            "bk",
                            "a.bin",
                            "-o",
                            &format!("s{t}-{i}.sig"),
                        ]);
                    }
                })
            })
            .collect();
        for n in 0..3 {
            let name = format!("snap{n}.db");
            let out = backup(server.root(), &["-o", &name, "--data", "kagi-data"]);
            assert!(out.status.success(), "{}", stderr(&out));
            let said = String::from_utf8_lossy(&out.stdout);
            assert!(said.contains("passes SQLite's integrity check"), "{said}");
        }
        for t in signers {
            t.join().unwrap();
        }
    });
    assert_eq!(usage_count(&server, "bk"), signed);
    for n in 0..3 {
        let f = server.path(&format!("snap{n}.db"));
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // No partial files left beside them.
    let leftovers: Vec<String> = std::fs::read_dir(server.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Never overwrites.
    let out = backup(server.root(), &["-o", "snap0.db", "--data", "kagi-data"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));

    // Restore the last snapshot into a fresh folder with the same unseal shares.
    let shares = server.data().join("unseal-shares");
    let token = server.data().join("admin.token");
    let fresh = tempfile::tempdir().unwrap();
    let data = fresh.path().join("kagi-data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(server.path("snap2.db"), data.join("kagi.db")).unwrap();
    std::fs::create_dir(data.join("unseal-shares")).unwrap();
    for e in std::fs::read_dir(&shares).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), data.join("unseal-shares").join(e.file_name())).unwrap();
    }
    std::fs::copy(&token, data.join("admin.token")).unwrap();
    drop(server);

    let restored = Server::start_in(fresh, &[]);
    assert!(
        restored.log().contains("unsealed a DEVELOPMENT instance"),
        "{}",
        restored.log()
    );
    let verified = restored.kagi_ok(&["audit", "verify"]);
    assert!(verified.starts_with("audit log OK"), "{verified}");
    restored.kagi_ok(&["log", "verify"]);
    // The snapshot holds some of the signatures, none half-made: at least the first one.
    let count = usage_count(&restored, "bk");
    assert!((1..=signed).contains(&count), "{count}");
    // And it signs again (no witnesses here: the rollback is not detected).
    std::fs::write(restored.path("a.bin"), b"release").unwrap();
    restored.kagi_ok(&["sign", "--key", "bk", "a.bin", "-o", "again.sig"]);
    assert_eq!(usage_count(&restored, "bk"), count + 1);
}

#[test]
fn backup_refuses_what_it_cannot_copy() {
    let dir = tempfile::tempdir().unwrap();
    // No database in the named folder: an error, and no database is created there.
    let out = backup(dir.path(), &["-o", "x.db", "--data", "nothing-here"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("there is no SQLite database at"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("nothing-here").exists());
    assert!(!dir.path().join("x.db").exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    // PostgreSQL: pg_dump, and the password is not echoed.
    let out = backup(
        dir.path(),
        &[
            "-o",
            "x.db",
            "--database-url",
            "postgres://kagi:s3cret@127.0.0.1:5432/kagi",
        ],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("pg_dump"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    assert!(!dir.path().join("x.db").exists());

    // A file that is not a database.
    std::fs::create_dir(dir.path().join("junk")).unwrap();
    std::fs::write(
        dir.path().join("junk/kagi.db"),
        b"not sqlite at all, just text",
    )
    .unwrap();
    let out = backup(dir.path(), &["-o", "y.db", "--data", "junk"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).is_empty());
    assert!(!dir.path().join("y.db").exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

/// A backup killed mid-copy leaves a partial file of sealed keys beside its target; the next
/// backup to that name removes it (its process is gone) and leaves a running one's alone.
#[test]
fn a_partial_copy_left_by_a_killed_backup_is_removed_by_the_next() {
    let dir = Server::start().stop();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let stale = dir.path().join(format!(".b.db.partial-{dead}-0000abcd"));
    let running = dir
        .path()
        .join(format!(".b.db.partial-{}-0000abcd", std::process::id()));
    std::fs::write(&stale, b"half a database").unwrap();
    std::fs::write(&running, b"another backup's copy in progress").unwrap();
    let out = backup(dir.path(), &["-o", "b.db", "--data", "kagi-data"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("interrupted backup"),
        "{}",
        stderr(&out)
    );
    assert!(!stale.exists());
    assert!(running.exists());
    assert!(dir.path().join("b.db").exists());
}
