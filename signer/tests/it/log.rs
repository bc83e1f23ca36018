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
    let digest = kagi_hsm_core::DigestAlg::Sha256.hash(b"release 1");
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

/// The `kagi-verify` binary runs the same checks as `kagi verify` and prints the same report,
/// with no service at all once the root and the log key are pinned (KAGI_CA points nowhere).
/// It is another package's binary: the test builds it (`cargo build -p kagi-verify`) when it
/// is not already beside `kagi`.
#[test]
fn kagi_verify_binary_agrees_with_kagi_verify() {
    let verifier = kagi_verify_binary();
    let server = Server::start();
    std::fs::write(server.path("app.bin"), b"firmware 2.0").unwrap();
    std::fs::write(server.path("other.bin"), b"firmware 2.1").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    server.kagi_ok(&["key", "certify", "rel"]);
    server.kagi_ok(&["key", "public", "rel", "-o", "rel.pem"]);
    server.kagi_ok(&["sign", "--key", "rel", "app.bin", "-o", "app.sig"]);
    server.kagi_ok(&[
        "sign", "--key", "rel", "--format", "cms", "app.bin", "-o", "app.p7s",
    ]);
    let fetched = server.kagi(&["verify", "app.bin", "-s", "app.p7s"]);
    let log_key = stderr(&fetched)
        .split("--log-key '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no log key in: {}", stderr(&fetched)));

    let offline = |args: &[&str]| {
        std::process::Command::new(&verifier)
            .arg("verify")
            .args(args)
            .current_dir(server.root())
            .env("KAGI_URL", &server.url)
            .env("KAGI_CA", "/nonexistent/tls-ca.pem")
            .env_remove("KAGI_TOKEN")
            .output()
            .unwrap()
    };
    let raw = ["--public-key", "rel.pem"];
    for (file, sig, extra, ok) in [
        ("app.bin", "app.p7s", &[][..], true),
        ("app.bin", "app.sig", &raw[..], true),
        ("other.bin", "app.p7s", &[][..], false),
        ("other.bin", "app.sig", &raw[..], false),
    ] {
        let mut args = vec![file, "-s", sig, "--require-log", "--log-key", &log_key];
        args.extend_from_slice(extra);
        let theirs = offline(&args);
        let mut kagi_args = vec!["verify"];
        kagi_args.extend_from_slice(&args);
        let ours = server.kagi(&kagi_args);
        assert_eq!(
            theirs.status.success(),
            ok,
            "kagi-verify {args:?}: {}",
            stderr(&theirs)
        );
        assert_eq!(
            ours.status.success(),
            ok,
            "kagi {args:?}: {}",
            stderr(&ours)
        );
        assert_eq!(theirs.stdout, ours.stdout, "{args:?}");
        assert_eq!(stderr(&theirs), stderr(&ours), "{args:?}");
        if ok {
            let out = String::from_utf8_lossy(&theirs.stdout);
            assert!(out.contains("transparency log OK"), "{out}");
        }
    }

    // Against the service: the log's checkpoint, an entry's inclusion. The full recomputation
    // is an auditor's and kagi-verify carries no token.
    let online = |args: &[&str]| {
        std::process::Command::new(&verifier)
            .args(args)
            .current_dir(server.root())
            .env("KAGI_URL", &server.url)
            .env_remove("KAGI_CA")
            .env_remove("KAGI_TOKEN")
            .output()
            .unwrap()
    };
    let out = online(&["log", "verify", "--key", &log_key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checkpoint signature OK"), "{text}");
    assert!(text.contains("full recomputation skipped"), "{text}");
    let out = online(&["log", "entry", "0", "--key", &log_key]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        out.stdout,
        server
            .kagi(&["log", "entry", "0", "--key", &log_key])
            .stdout
    );
}

/// `target/<profile>/kagi-verify`, beside the `kagi` binary under test; built if missing.
fn kagi_verify_binary() -> std::path::PathBuf {
    let kagi = std::path::Path::new(common::KAGI);
    let bin = kagi.with_file_name(format!("kagi-verify{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let release = kagi
            .parent()
            .and_then(|d| d.file_name())
            .is_some_and(|d| d == "release");
        let mut build = std::process::Command::new(env!("CARGO"));
        build.args(["build", "-p", "kagi-verify", "--bin", "kagi-verify"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().unwrap();
        assert!(status.success(), "cargo build -p kagi-verify failed");
    }
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
