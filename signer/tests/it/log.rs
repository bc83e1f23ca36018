//! The transparency log through the real service: every signature gets an entry, the CLI checks
//! checkpoints, consistency and inclusion with the log's key, an entry edited in the database
//! makes `kagi log verify` fail, and entry bodies are private: an auditor reads every entry, an
//! identity its own, anyone else nothing (unless the instance makes entries public).

use crate::common;

use common::{stderr, Http, Server};

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
/// It is another package's binary: the test builds it (`cargo build -p kagi-verify`, a no-op
/// when it is up to date).
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

    // Against the service: the log's checkpoint needs no token; the full recomputation is an
    // auditor's, and so is reading an entry that is not the caller's own.
    let online = |args: &[&str], token: Option<&str>| {
        let mut cmd = std::process::Command::new(&verifier);
        cmd.args(args)
            .current_dir(server.root())
            .env("KAGI_URL", &server.url)
            .env_remove("KAGI_CA")
            .env_remove("KAGI_TOKEN");
        if let Some(t) = token {
            cmd.env("KAGI_TOKEN", t);
        }
        cmd.output().unwrap()
    };
    let out = online(&["log", "verify", "--key", &log_key], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("checkpoint signature OK"), "{text}");
    assert!(text.contains("full recomputation skipped"), "{text}");
    let out = online(&["log", "entry", "0", "--key", &log_key], None);
    assert!(
        !out.status.success(),
        "an entry was read without a credential"
    );
    assert!(stderr(&out).contains("unauthenticated"), "{}", stderr(&out));
    assert!(stderr(&out).contains("KAGI_TOKEN"), "{}", stderr(&out));
    let out = online(
        &["log", "entry", "0", "--key", &log_key],
        Some(&server.token()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        out.stdout,
        server
            .kagi(&["log", "entry", "0", "--key", &log_key])
            .stdout
    );
}

const DIGEST: &str = "4b2f5cd46ad0f01c9ee5c4d0c33cc6c8c9a8d9b87c1c0d1ad16a1ab2d2b0e2ab";

/// POST /api/v1/sign as `token`; the signature's log index.
fn sign_logged(http: &Http, token: &str, format: &str) -> i64 {
    let body = format!(r#"{{"key":"rel","digest":"{DIGEST}","format":"{format}"}}"#);
    let r = http.request("POST", "/api/v1/sign", Some(token), Some(body.as_bytes()));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["tlog_index"].as_i64().unwrap()
}

/// Issue 11, item 7: entry bodies need a credential on the HTTPS listener and are never served
/// on the plain-HTTP one (a token sent there in clear text is not even looked at); an auditor
/// reads every entry, an identity the entries that name it, kagi's own and Sigstore's alike.
/// Another identity's entry is answered exactly as an entry past the end of the log, so it
/// tells the caller nothing. Checkpoints and proofs stay public on both listeners.
#[test]
fn log_entries_are_private_an_auditor_reads_all_an_identity_its_own() {
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    let create = |name: &str| {
        server
            .kagi_ok(&["identity", "create", "--name", name, "--kind", "pipeline"])
            .trim()
            .to_string()
    };
    let (a, b) = (create("ci-a"), create("ci-b"));
    server.allow(&[("pipeline", "ci-a"), ("pipeline", "ci-b")]);
    let http = server.http();
    let public = Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    let admin = server.token();

    let a_raw = sign_logged(&http, &a, "raw");
    let a_bundle = sign_logged(&http, &a, "sigstore");
    let b_raw = sign_logged(&http, &b, "raw");
    let b_bundle = sign_logged(&http, &b, "sigstore");

    let entry = |h: &Http, index: i64, token: Option<&str>| {
        h.request("GET", &format!("/log/entries/{index}"), token, None)
    };
    for index in [a_raw, a_bundle, b_raw, b_bundle, 0] {
        for (h, token, listener) in [
            (&http, None, "HTTPS"),
            (&public, None, "plain HTTP"),
            (
                &public,
                Some(admin.as_str()),
                "plain HTTP with the auditor's token",
            ),
        ] {
            let r = entry(h, index, token);
            assert_eq!(r.status, 401, "entry {index} over {listener}: {}", r.body);
            assert_eq!(r.error_code(), "unauthenticated");
            assert!(!r.body.contains("ci-"), "{}", r.body);
        }
        // The development admin holds the auditor role: every entry.
        let r = entry(&http, index, Some(&admin));
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let body = |r: &common::Reply| r.json()["body"].as_str().unwrap().to_string();
    let r = entry(&http, a_raw, Some(&admin));
    assert!(
        body(&r).contains(r#""identity":"default:ci-a""#),
        "{}",
        r.body
    );

    // Each pipeline reads its own entries, the kagi entry and the Sigstore one.
    for (token, raw, bundle, name) in [(&a, a_raw, a_bundle, "ci-a"), (&b, b_raw, b_bundle, "ci-b")]
    {
        let r = entry(&http, raw, Some(token));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(body(&r).contains(&format!(r#""identity":"default:{name}""#)));
        let r = entry(&http, bundle, Some(token));
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(body(&r).contains("hashedrekord"), "{}", r.body);
    }

    // Another's entries, the service's own (entry 0: the development CAs) and an entry past the
    // end all answer the same 404, with the same message but for the number.
    let cp = http.request("GET", "/log/checkpoint", None, None);
    assert_eq!(cp.status, 200);
    let size: i64 = cp.body.lines().nth(1).unwrap().parse().unwrap();
    let past_end = entry(&http, size + 5, Some(&a));
    assert_eq!(past_end.status, 404, "{}", past_end.body);
    assert_eq!(past_end.error_code(), "not_found");
    let message = |r: &common::Reply, index: i64| {
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&index.to_string(), "N")
    };
    for index in [b_raw, b_bundle, 0] {
        let r = entry(&http, index, Some(&a));
        assert_eq!(r.status, 404, "ci-a read entry {index}: {}", r.body);
        assert_eq!(r.error_code(), "not_found");
        assert_eq!(message(&r, index), message(&past_end, size + 5));
        assert!(!r.body.contains("ci-b"), "{}", r.body);
    }
    for index in [a_raw, a_bundle] {
        let r = entry(&http, index, Some(&b));
        assert_eq!(r.status, 404, "ci-b read entry {index}: {}", r.body);
    }
    // A wrong token is refused as a wrong token, not as a missing one.
    let r = entry(&http, a_raw, Some("not-a-token"));
    assert_eq!(r.status, 401, "{}", r.body);

    // What verifiers and witnesses need stays public on both listeners.
    for h in [&http, &public] {
        for path in [
            "/log/checkpoint".to_string(),
            "/log/key".to_string(),
            format!("/log/proof/inclusion?index={b_raw}&size={size}"),
            format!("/log/proof/consistency?first=1&second={size}"),
        ] {
            let r = h.request("GET", &path, None, None);
            assert_eq!(r.status, 200, "{path}: {}", r.body);
        }
    }

    // `kagi sign` as a pipeline still saves its own entry's proof beside the signature, and
    // `kagi verify` checks it.
    std::fs::write(server.path("a.bin"), b"release 7").unwrap();
    let out = server.kagi_as(&a, &["sign", "--key", "rel", "a.bin", "-o", "a.sig"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(server.path("a.sig.tlog.json").exists(), "{}", stderr(&out));
    server.kagi_ok(&["key", "public", "rel", "-o", "rel.pem"]);
    let out = server.kagi_ok(&[
        "verify",
        "a.bin",
        "-s",
        "a.sig",
        "--public-key",
        "rel.pem",
        "--require-log",
    ]);
    assert!(out.contains("transparency log OK"), "{out}");
}

/// The switch for an open-source project's log: entries for anyone, on both listeners.
#[test]
fn log_entries_public_serves_entries_to_anyone() {
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--log-entries-public"]);
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    let index = sign_logged(&server.http(), &server.token(), "raw");
    let public = Http::new(&server.public_url, &server.data().join("tls-ca.pem"));
    for h in [&server.http(), &public] {
        let r = h.request("GET", &format!("/log/entries/{index}"), None, None);
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json()["body"].as_str().unwrap().to_string();
        assert!(body.contains(r#""identity":"default:admin""#), "{body}");
    }
}

/// `target/<profile>/kagi-verify`, beside the `kagi` binary under test; built if missing.
pub(crate) fn kagi_verify_binary() -> std::path::PathBuf {
    let kagi = std::path::Path::new(common::KAGI);
    let bin = kagi.with_file_name(format!("kagi-verify{}", std::env::consts::EXE_SUFFIX));
    // Always asked for (a no-op when it is fresh): one left beside `kagi` by an earlier build
    // may predate the code under test.
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
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}
