//! kagi as a witnessed log (issue 15, acceptance 1-4), with real processes: `kagi witness
//! serve` witnesses in their own folders, `kagi serve` configured with them, `kagi sign` as a
//! user runs it, SQLite and PostgreSQL, and a database put back from a copy.

use crate::common;

use common::{free_port, run_ok, stderr, Server};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `kagi witness serve` process with its own data folder.
struct WitnessProc {
    dir: tempfile::TempDir,
    port: u16,
    /// Its cosignature verifier key.
    vkey: String,
    /// The log key it witnesses.
    log_key: String,
    child: Option<Child>,
}

impl WitnessProc {
    fn new(name: &str, log_key: &str) -> WitnessProc {
        let dir = tempfile::tempdir().unwrap();
        let out = run_ok(
            Command::new(common::KAGI)
                .args(["witness", "init", "--data"])
                .arg(dir.path().join("w"))
                .args(["--name", name]),
        );
        let vkey = out
            .split_whitespace()
            .find(|w| w.starts_with(&format!("{name}+")))
            .unwrap_or_else(|| panic!("no verifier key in: {out}"))
            .to_string();
        let mut w = WitnessProc {
            dir,
            port: free_port(),
            vkey,
            log_key: log_key.to_string(),
            child: None,
        };
        w.start();
        w
    }

    fn start(&mut self) {
        let child = Command::new(common::KAGI)
            .args(["witness", "serve", "--data"])
            .arg(self.dir.path().join("w"))
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--log", &self.log_key])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "the witness never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or an operator would stop it.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `--witness` value kagi takes.
    fn flag(&self) -> String {
        format!("http://127.0.0.1:{}={}", self.port, self.vkey)
    }

    fn key(&self) -> (String, [u8; 32]) {
        kagi_tlog::note::parse_cosignature_verifier_key(&self.vkey).unwrap()
    }
}

impl Drop for WitnessProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh development instance (made without witnesses, as an operator first starts one), its
/// log's verifier key, and its folder, stopped.
fn fresh_instance(store: &[&str]) -> (tempfile::TempDir, String) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), store);
    let resp = server.http().get("/log/key").call().unwrap();
    let key = resp
        .into_body()
        .read_to_string()
        .unwrap()
        .trim()
        .to_string();
    assert!(key.starts_with("kagi-tlog+"), "{key}");
    (server.stop(), key)
}

fn witnessed(
    dir: tempfile::TempDir,
    store: &[&str],
    witnesses: &[&WitnessProc],
    extra: &[&str],
) -> Server {
    let mut args: Vec<String> = store.iter().map(|s| s.to_string()).collect();
    for w in witnesses {
        args.push("--witness".into());
        args.push(w.flag());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Server::start_in(dir, &args)
}

/// The administrator signs with any key; pipeline 'ci' signs with 'lib' under a quota of
/// `total`; officers alice, bob and carol approve changes two at a time.
fn quota_policy(total: u32) -> String {
    format!(
        r#"rules = '''
@id("admin-signs")
permit (principal == kagi::Person::"admin", action == kagi::Action::"sign", resource);

@id("ci-signs-lib")
permit (principal == kagi::Pipeline::"ci", action == kagi::Action::"sign", resource == kagi::Key::"lib");
'''

[[quota]]
name = "ci-lib"
identity = "ci"
action = "sign"
resource = "lib"
total = {total}

[quorum]
approvers = ["alice", "bob", "carol"]
required = 2
"#
    )
}

fn sign(server: &Server, key: &str, out: &str) -> std::process::Output {
    server.kagi(&[
        "sign", "--key", key, "--format", "raw", "app.bin", "-o", out,
    ])
}

/// Whether `sig` (a file in the server's folder) verifies for app.bin under the PEM key.
fn openssl_verifies(root: &Path, pem: &str, sig: &str) -> bool {
    Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-verify",
            pem,
            "-signature",
            sig,
            "app.bin",
        ])
        .current_dir(root)
        .output()
        .unwrap()
        .status
        .success()
}

/// The proof file's checkpoint carries a valid cosignature by each witness.
fn assert_cosigned(proof_file: &Path, witnesses: &[&WitnessProc]) {
    let proof: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(proof_file).unwrap()).unwrap();
    let note = proof["checkpoint"].as_str().unwrap();
    for w in witnesses {
        let (name, key) = w.key();
        kagi_tlog::open_cosignature(note, &name, &key)
            .unwrap_or_else(|e| panic!("no cosignature by {name}: {e}\n{note}"));
    }
}

#[test]
fn two_witnesses_cosign_every_released_signature() {
    let (dir, log_key) = fresh_instance(&[]);
    let a = WitnessProc::new("witness-a.test", &log_key);
    let b = WitnessProc::new("witness-b.test", &log_key);
    let server = witnessed(dir, &[], &[&a, &b], &["--witness-quorum", "2"]);
    std::fs::write(server.path("app.bin"), b"release 1.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "rel", "--alg", "ec-p256"]);
    for i in 0..3 {
        let out = sign(&server, "rel", &format!("app{i}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_cosigned(&server.path(&format!("app{i}.sig.tlog.json")), &[&a, &b]);
    }
    // The checkpoint anyone reads carries both cosignatures too.
    let note = server
        .http()
        .get("/log/checkpoint")
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    for w in [&a, &b] {
        let (name, key) = w.key();
        kagi_tlog::open_cosignature(&note, &name, &key).unwrap();
    }
    // The log, anchors included, still verifies from its entries.
    server.kagi_ok(&["log", "verify"]);
    let status = server.kagi_ok(&["status"]);
    assert!(status.contains("quorum 2 of 2"), "{status}");
}

/// Acceptance 2 and 3: a key with a usage limit of 10 signs 3 times, the stopped instance's
/// database is copied (`take_copy`, given the folder), 7 more, then the copy is put back
/// (`restore` returns the store arguments of the restored instance). The restored instance
/// releases nothing, and exactly 10 signatures verify under the key across the test.
fn rollback_is_detected(
    store: &[&str],
    take_copy: &dyn Fn(&Path),
    restore: &dyn Fn(&Path) -> Vec<String>,
) {
    let (dir, log_key) = fresh_instance(store);
    let a = WitnessProc::new("witness-a.test", &log_key);
    let b = WitnessProc::new("witness-b.test", &log_key);
    let server = witnessed(dir, store, &[&a, &b], &[]);
    std::fs::write(server.path("app.bin"), b"firmware 2.0").unwrap();
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "fw",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "10",
    ]);
    std::fs::write(
        server.path("fw.pem"),
        server.kagi_ok(&["key", "public", "fw"]),
    )
    .unwrap();
    // A pipeline with a quota of 5 signatures with 'lib', and officers with a quorum of two.
    server.kagi_ok(&["key", "create", "--name", "lib", "--alg", "ec-p256"]);
    std::fs::write(
        server.path("lib.pem"),
        server.kagi_ok(&["key", "public", "lib"]),
    )
    .unwrap();
    let ci = server
        .kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"])
        .trim()
        .to_string();
    let officers: Vec<String> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            server
                .kagi_ok(&["identity", "create", "--name", n, "--kind", "person"])
                .trim()
                .to_string()
        })
        .collect();
    std::fs::write(server.path("quota.toml"), quota_policy(5)).unwrap();
    let v = server.kagi_ok(&["policy", "submit", "quota.toml"]);
    let v = v.trim().rsplit(' ').next().unwrap().to_string();
    server.kagi_ok(&["policy", "activate", &v]);
    let mut lib_made: Vec<String> = Vec::new();
    let mut ci_sign = |server: &Server, name: String| {
        let out = server.kagi_as(
            &ci,
            &[
                "sign", "--key", "lib", "--format", "raw", "app.bin", "-o", &name,
            ],
        );
        lib_made.push(name);
        out
    };
    for i in 0..2 {
        let out = ci_sign(&server, format!("ci{i}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let mut made: Vec<String> = Vec::new();
    let mut sign_ok = |server: &Server, name: String| {
        let out = sign(server, "fw", &name);
        assert!(out.status.success(), "{}", stderr(&out));
        made.push(name);
    };
    for i in 0..3 {
        sign_ok(&server, format!("s{i}.sig"));
    }
    // Stopped, so the copy is consistent (a backup as an operator takes one).
    let dir = server.stop();
    take_copy(dir.path());
    let server = witnessed(dir, store, &[&a, &b], &[]);
    for i in 3..10 {
        sign_ok(&server, format!("s{i}.sig"));
    }
    for i in 2..4 {
        let out = ci_sign(&server, format!("ci{i}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let over = sign(&server, "fw", "over.sig");
    assert!(
        stderr(&over).contains("usage_limit_reached"),
        "{}",
        stderr(&over)
    );
    let dir = server.stop();
    let args = restore(dir.path());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = witnessed(dir, &args, &[&a, &b], &[]);
    for i in 0..3 {
        let name = format!("after{i}.sig");
        let out = sign(&server, "fw", &name);
        assert!(!out.status.success(), "the restored instance signed");
        assert!(
            stderr(&out).contains("rollback_detected"),
            "{}\n{}",
            stderr(&out),
            server.log()
        );
        assert!(!server.path(&name).exists());
        made.push(name);
    }
    let out = ci_sign(&server, "ci-restored.sig".into());
    assert!(
        stderr(&out).contains("rollback_detected"),
        "{}",
        stderr(&out)
    );
    // Loud: /readyz, /metrics, kagi status and the service's log say so.
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.json()["reason"],
        "rollback_detected",
        "{}",
        ready.body
    );
    let status = server.kagi(&["status"]);
    assert!(!status.status.success());
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("ROLLBACK DETECTED"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    let metrics = server.http().request("GET", "/metrics", None, None);
    assert!(
        metrics.body.contains("kagi_rollback_detected 1"),
        "{}",
        metrics.body
    );
    assert!(
        server.log().contains("rollback detected"),
        "{}",
        server.log()
    );
    // Exactly 10 signatures exist and verify under the key.
    let verified = made
        .iter()
        .filter(|s| server.path(s).exists() && openssl_verifies(server.root(), "fw.pem", s))
        .count();
    assert_eq!(verified, 10);

    // The documented recovery. An officer cannot end it while the witnesses still show the
    // rollback.
    let early = server.kagi(&[
        "recover-rollback",
        "--reason",
        "restored from last night's backup",
    ]);
    assert!(
        stderr(&early).contains("witnesses still show"),
        "{}",
        stderr(&early)
    );
    // The witness operators forget kagi's log, and kagi restarts (reached by officers only).
    let dir = server.stop();
    for w in [&a, &b] {
        let out = run_ok(
            Command::new(common::KAGI)
                .args(["witness", "forget", "--data"])
                .arg(w.dir.path().join("w"))
                .args(["--origin", "kagi-tlog"]),
        );
        assert!(out.contains("forgot kagi-tlog at size"), "{out}");
    }
    let server = witnessed(dir, &args, &[&a, &b], &[]);
    // Restarting with reset witnesses is what an attacker who restored the database would do
    // too: kagi still signs nothing, and says what is missing.
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("recover-rollback"), "{}", ready.body);
    server.kagi_ok(&["key", "create", "--name", "fw2", "--alg", "ec-p256"]);
    let waiting = sign(&server, "fw2", "fw2-early.sig");
    assert!(
        stderr(&waiting).contains("rollback_detected"),
        "{}",
        stderr(&waiting)
    );
    assert!(!server.path("fw2-early.sig").exists());
    // One officer alone cannot end it: the policy's quorum (2 of alice, bob, carol) approves.
    let asked = server.kagi(&[
        "recover-rollback",
        "--reason",
        "restored from last night's backup",
    ]);
    assert_eq!(asked.status.code(), Some(3), "{}", stderr(&asked));
    let said = String::from_utf8_lossy(&asked.stdout).into_owned();
    assert!(said.contains("approval required"), "{said}");
    let id = said.split_whitespace().nth(3).unwrap().to_string();
    server.kagi_as(&officers[0], &["approval", "approve", &id]);
    let still = sign(&server, "fw2", "fw2-early.sig");
    assert!(
        stderr(&still).contains("rollback_detected"),
        "{}",
        stderr(&still)
    );
    let done = server.kagi_as(&officers[1], &["approval", "approve", &id]);
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("status:       executed"),
        "{done:?}"
    );
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    let fresh = sign(&server, "fw2", "fw2.sig");
    assert!(fresh.status.success(), "{}", stderr(&fresh));
    // The key with a usage limit stays frozen until an officer sets its limit again.
    let frozen = sign(&server, "fw", "before-review.sig");
    assert!(
        stderr(&frozen).contains("key_frozen"),
        "{}",
        stderr(&frozen)
    );
    assert!(!server.path("before-review.sig").exists());
    server.kagi_ok(&["key", "set-limit", "fw", "--usage-limit", "3"]);
    let frozen = sign(&server, "fw", "after-recovery.sig");
    assert!(
        stderr(&frozen).contains("usage_limit_reached"),
        "{}",
        stderr(&frozen)
    );
    // So does the pipeline's quota, until officers activate a reviewed policy: the restored
    // counter says 2 of 5, the lines know they made 4, so the new total is 2 + 1.
    let out = ci_sign(&server, "ci-frozen.sig".into());
    assert!(stderr(&out).contains("quota_frozen"), "{}", stderr(&out));
    std::fs::write(server.path("quota2.toml"), quota_policy(3)).unwrap();
    let v = server.kagi_ok(&["policy", "submit", "quota2.toml"]);
    let v = v.trim().rsplit(' ').next().unwrap().to_string();
    let asked = server.kagi(&["policy", "activate", &v]);
    assert_eq!(asked.status.code(), Some(3), "{}", stderr(&asked));
    let said = String::from_utf8_lossy(&asked.stdout).into_owned();
    let id = said.split_whitespace().nth(3).unwrap().to_string();
    server.kagi_as(&officers[1], &["approval", "approve", &id]);
    server.kagi_as(&officers[2], &["approval", "approve", &id]);
    let out = ci_sign(&server, "ci-last.sig".into());
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ci_sign(&server, "ci-over.sig".into());
    assert!(stderr(&out).contains("quota_exhausted"), "{}", stderr(&out));
    // The contracts held: 10 signatures under 'fw' and 5 by the pipeline, never more.
    let verified = made
        .iter()
        .filter(|s| server.path(s).exists() && openssl_verifies(server.root(), "fw.pem", s))
        .count();
    assert_eq!(verified, 10);
    let verified = lib_made
        .iter()
        .filter(|s| server.path(s).exists() && openssl_verifies(server.root(), "lib.pem", s))
        .count();
    assert_eq!(verified, 5);
    let events = server.kagi_ok(&["audit", "verify"]);
    assert!(!events.is_empty());
    // Forgetting a log the witness never saw says so and changes nothing.
    let out = Command::new(common::KAGI)
        .args(["witness", "forget", "--data"])
        .arg(a.dir.path().join("w"))
        .args(["--origin", "no-such-log"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("saved nothing for origin 'no-such-log'"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_restored_sqlite_database_is_detected_and_releases_nothing() {
    rollback_is_detected(
        &[],
        &|root| {
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(root.join("kagi-data"))
                    .arg(root.join("backup")),
            );
        },
        &|root| {
            std::fs::remove_dir_all(root.join("kagi-data")).unwrap();
            run_ok(
                Command::new("cp")
                    .arg("-a")
                    .arg(root.join("backup"))
                    .arg(root.join("kagi-data")),
            );
            vec![]
        },
    );
}

#[test]
fn a_restored_postgres_database_is_detected_and_releases_nothing() {
    let db = common::Database::create();
    let snap = DropDb(format!("{}_snap", db.name()));
    let store = ["--database-url".to_string(), db.url()];
    let store: Vec<&str> = store.iter().map(String::as_str).collect();
    rollback_is_detected(
        &store,
        &|_| {
            // A template copy needs no session on the source: the killed kagi's may linger
            // until the server notices.
            let mut tries = 0;
            loop {
                pg_exec(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
                    db.name()
                ));
                match pg_try(&format!(
                    "CREATE DATABASE {} TEMPLATE {}",
                    snap.0,
                    db.name()
                )) {
                    Ok(()) => break,
                    Err(_) if tries < 40 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(250));
                    }
                    Err(e) => panic!("copying the database: {e}"),
                }
            }
        },
        &|_| vec!["--database-url".into(), kagi_testkit::pg::url_of(&snap.0)],
    );
}

/// A database the test made itself, dropped at the end.
struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        if let Ok(mut c) =
            <diesel::PgConnection as diesel::Connection>::establish(&kagi_testkit::pg::admin_url())
        {
            let _ = diesel::RunQueryDsl::execute(
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0)),
                &mut c,
            );
        }
    }
}

fn pg_try(sql: &str) -> Result<(), String> {
    let mut c =
        <diesel::PgConnection as diesel::Connection>::establish(&kagi_testkit::pg::admin_url())
            .map_err(|e| e.to_string())?;
    diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut c)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn pg_exec(sql: &str) {
    let mut c =
        <diesel::PgConnection as diesel::Connection>::establish(&kagi_testkit::pg::admin_url())
            .unwrap();
    diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut c)
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[test]
fn quorum_waits_for_a_killed_witness_and_counts_each_use_once() {
    let (dir, log_key) = fresh_instance(&[]);
    let a = WitnessProc::new("witness-a.test", &log_key);
    let mut b = WitnessProc::new("witness-b.test", &log_key);
    let server = witnessed(dir, &[], &[&a, &b], &["--witness-timeout", "2"]);
    std::fs::write(server.path("app.bin"), b"tool 3.1").unwrap();
    server.kagi_ok(&["key", "create", "--name", "k", "--alg", "ec-p256"]);
    assert!(sign(&server, "k", "ok0.sig").status.success());
    b.kill();
    for i in 0..2 {
        let name = format!("down{i}.sig");
        let out = sign(&server, "k", &name);
        assert!(!out.status.success(), "released without the quorum");
        assert!(
            stderr(&out).contains("witness_unavailable"),
            "{}",
            stderr(&out)
        );
        assert!(!server.path(&name).exists());
    }
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.json()["reason"],
        "witness_unavailable",
        "{}",
        ready.body
    );
    b.start();
    // The witness's worker retries with back-off; /readyz says when it answers again.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.http().request("GET", "/readyz", None, None).status != 200 {
        assert!(
            Instant::now() < deadline,
            "the witness never answered again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 1..3 {
        let out = sign(&server, "k", &format!("ok{i}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_cosigned(&server.path(&format!("ok{i}.sig.tlog.json")), &[&a, &b]);
    }
    // Five uses were committed (two withheld): counted once each, and the log has five
    // signature entries for the key.
    let show = server.kagi_ok(&["key", "show", "k"]);
    assert!(show.contains("usage count:           5"), "{show}");
    assert_eq!(signature_entries(&server, "k"), 5);
}

/// Signature entries in the log naming key `label` (read as the administrator, an auditor).
fn signature_entries(server: &Server, label: &str) -> usize {
    let token = server.token();
    let mut n = 0;
    for i in 0.. {
        let r = server
            .http()
            .request("GET", &format!("/log/entries/{i}"), Some(&token), None);
        if r.status == 404 {
            break;
        }
        assert_eq!(r.status, 200, "{}", r.body);
        let body = r.json()["body"].as_str().unwrap().to_string();
        if let Ok(e) = kagi_tlog::SignatureEntry::parse(body.as_bytes()) {
            n += usize::from(e.key == label);
        } else {
            kagi_tlog::AuditCheckpointEntry::parse(body.as_bytes())
                .unwrap_or_else(|e| panic!("entry {i} is neither kind: {e}: {body}"));
        }
    }
    n
}

#[test]
fn two_of_three_goes_on_with_one_witness_killed() {
    let (dir, log_key) = fresh_instance(&[]);
    let a = WitnessProc::new("witness-a.test", &log_key);
    let b = WitnessProc::new("witness-b.test", &log_key);
    let mut c = WitnessProc::new("witness-c.test", &log_key);
    let server = witnessed(
        dir,
        &[],
        &[&a, &b, &c],
        &["--witness-quorum", "2", "--witness-timeout", "5"],
    );
    std::fs::write(server.path("app.bin"), b"tool 4.0").unwrap();
    server.kagi_ok(&["key", "create", "--name", "k", "--alg", "ec-p256"]);
    c.kill();
    for i in 0..3 {
        let out = sign(&server, "k", &format!("s{i}.sig"));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_cosigned(&server.path(&format!("s{i}.sig.tlog.json")), &[&a, &b]);
    }
    let show = server.kagi_ok(&["key", "show", "k"]);
    assert!(show.contains("usage count:           3"), "{show}");
}

/// Two `kagi serve` processes on one PostgreSQL database, both witnessed by the same two
/// witnesses: each one's witnesses follow the other's checkpoints, every released signature's
/// proof carries both cosignatures whichever process made it, and `kagi verify` with the
/// quorum accepts all of them.
#[test]
fn two_processes_on_one_postgres_share_the_witnessed_log() {
    let db = common::Database::create();
    let url = db.url();
    let store = ["--database-url", url.as_str()];
    let (dir_a, log_key) = fresh_instance(&store);
    let w1 = WitnessProc::new("witness-1.test", &log_key);
    let w2 = WitnessProc::new("witness-2.test", &log_key);
    let dir_b = tempfile::tempdir().unwrap();
    let copied = Command::new("cp")
        .arg("-a")
        .arg(dir_a.path().join("kagi-data"))
        .arg(dir_b.path().join("kagi-data"))
        .output()
        .unwrap();
    assert!(copied.status.success(), "{}", stderr(&copied));
    let a = witnessed(dir_a, &store, &[&w1, &w2], &[]);
    let b = witnessed(dir_b, &store, &[&w1, &w2], &[]);
    a.kagi_ok(&["key", "create", "--name", "shared", "--alg", "ec-p256"]);
    let pem = a.kagi_ok(&["key", "public", "shared"]);
    for s in [&a, &b] {
        std::fs::write(s.path("app.bin"), b"built twice").unwrap();
        std::fs::write(s.path("shared.pem"), &pem).unwrap();
    }
    for i in 0..4 {
        for (s, name) in [(&a, "a"), (&b, "b")] {
            let sig = format!("{name}{i}.sig");
            let out = sign(s, "shared", &sig);
            assert!(out.status.success(), "{name}{i}: {}", stderr(&out));
            assert_cosigned(&s.path(&format!("{sig}.tlog.json")), &[&w1, &w2]);
            let (v1, v2) = (w1.flag(), w2.flag());
            let (v1, v2) = (v1.split_once('=').unwrap().1, v2.split_once('=').unwrap().1);
            let verified = s.kagi(&[
                "verify",
                "app.bin",
                "--format",
                "raw",
                "--public-key",
                "shared.pem",
                "--require-log",
                "-s",
                &sig,
                "--witness",
                v1,
                "--witness",
                v2,
                "--witness-quorum",
                "2",
            ]);
            assert!(
                verified.status.success(),
                "{name}{i}: {}",
                stderr(&verified)
            );
        }
    }
    // Neither process saw a rollback in the other's checkpoints.
    for s in [&a, &b] {
        let ready = s.http().request("GET", "/readyz", None, None);
        assert_eq!(ready.status, 200, "{}", ready.body);
    }
}
