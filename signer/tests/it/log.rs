//! The transparency log through the real service: every signature gets an entry, the CLI checks
//! checkpoints, consistency and inclusion with the log's key, and an entry edited in the
//! database makes `kagi log verify` fail.

use crate::common;

use common::{stderr, Server};

#[test]
fn every_signature_is_logged_and_tampering_is_caught() {
    let server = Server::start();
    std::fs::write(server.path("a.bin"), b"release 1").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    server.kagi_ok(&["sign", "--key", "rel", "a.bin", "-o", "a.sig"]);
    server.kagi_ok(&["log", "checkpoint", "-o", "cp1.txt"]);
    for _ in 0..5 {
        server.kagi_ok(&["sign", "--key", "rel", "a.bin", "-o", "a.sig"]);
    }
    let out = server.kagi_ok(&["log", "verify", "cp1.txt"]);
    assert!(out.contains("consistent with cp1.txt"), "{out}");
    assert!(out.contains("full recomputation OK"), "{out}");

    // The newest entry is the last signature: its digest and key are in the public body.
    let digest = hsm_core::DigestAlg::Sha256.hash(b"release 1");
    let cp = server.kagi_ok(&["log", "checkpoint"]);
    let size: i64 = cp.lines().nth(1).unwrap().parse().unwrap();
    let entry = server.kagi_ok(&["log", "entry", &(size - 1).to_string()]);
    assert!(entry.contains(&hex::encode(&digest)), "{entry}");
    assert!(entry.contains("\"key\":\"rel\""), "{entry}");

    // A pinned wrong key is refused.
    let out = server.kagi(&[
        "log",
        "verify",
        "--key",
        "kagi-tlog+00000000+AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ]);
    assert!(!out.status.success());

    // Edit an entry in the database: verification names it.
    let dir = server.stop();
    {
        use diesel::{Connection, RunQueryDsl, SqliteConnection};
        let db = dir.path().join("kagi-data/kagi.db");
        let mut c = SqliteConnection::establish(&db.to_string_lossy()).unwrap();
        let n = diesel::sql_query(
            "UPDATE tlog_entries SET body = CAST(REPLACE(CAST(body AS TEXT), 'rel', 'xyz') AS BLOB) WHERE idx = (SELECT MAX(idx) FROM tlog_entries WHERE CAST(body AS TEXT) LIKE '%\"rel\"%')",
        )
        .execute(&mut c)
        .unwrap();
        assert_eq!(n, 1);
    }
    let server = Server::start_in(dir, &[]);
    let out = server.kagi(&["log", "verify"]);
    assert!(
        !out.status.success(),
        "an edited entry must fail verification"
    );
    assert!(stderr(&out).contains("entry"), "{}", stderr(&out));
}

#[test]
fn kagi_verify_checks_signature_chain_and_log_proof() {
    // Its key names are its own and it counts nothing others change: one shared instance.
    let server = Server::shared();
    std::fs::write(server.path("app.bin"), b"firmware 1.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p384"]);
    server.kagi_ok(&["key", "certify", "rel"]);
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    assert!(
        server.path("app.p7s.tlog.json").exists(),
        "kagi sign saves the log proof"
    );
    let out = server.kagi_ok(&["verify", "app.bin", "-s", "app.p7s", "--require-log"]);
    assert!(
        out.contains("chain to root") && out.contains("transparency log OK"),
        "{out}"
    );

    server.kagi_ok(&["key", "create", "--name", "raw", "--alg", "rsa-2048"]);
    server.kagi_ok(&["sign", "--key", "raw", "app.bin", "-o", "app.sig"]);
    server.kagi_ok(&["key", "public", "raw", "-o", "raw.pem"]);
    server.kagi_ok(&[
        "verify",
        "app.bin",
        "-s",
        "app.sig",
        "--public-key",
        "raw.pem",
        "--require-log",
    ]);

    // A changed file, another signature's log proof, a missing proof: all refused.
    std::fs::write(server.path("other.bin"), b"firmware 1.1").unwrap();
    let out = server.kagi(&["verify", "other.bin", "-s", "app.p7s"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does NOT match"), "{}", stderr(&out));
    std::fs::copy(
        server.path("app.p7s.tlog.json"),
        server.path("app.sig.tlog.json"),
    )
    .unwrap();
    let out = server.kagi(&[
        "verify",
        "app.bin",
        "-s",
        "app.sig",
        "--public-key",
        "raw.pem",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("another signature"),
        "{}",
        stderr(&out)
    );
    std::fs::remove_file(server.path("app.sig.tlog.json")).unwrap();
    let out = server.kagi(&[
        "verify",
        "app.bin",
        "-s",
        "app.sig",
        "--public-key",
        "raw.pem",
        "--require-log",
    ]);
    assert!(!out.status.success());
}
