//! Operating kagi: readiness (`/readyz`) through seal, unseal and a database that goes away and
//! comes back; `/metrics` read with Prometheus's own parser (the `prometheus_client` Python
//! package, installed by scripts/install-test-tools.sh); and the source address and User-Agent
//! of the HTTP request in the audit records it causes. Storage-touching tests run on SQLite and
//! PostgreSQL.

use crate::common;

use common::{run_in, Database, Server, KAGI};
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

const USER_AGENT: &str = "kagi-ops-test/1.0 (release pipeline 7)";

/// The ops virtualenv of scripts/install-test-tools.sh.
fn ops_python() -> std::path::PathBuf {
    let home = std::env::var("HOME").unwrap();
    let python = std::path::Path::new(&home).join(".cache/kagi-test-tools/ops-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/install-test-tools.sh",
        python.display()
    );
    python
}

/// One sample of a scrape, as Prometheus's parser reads it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: serde_json::Map<String, Value>,
    value: f64,
}

/// Parse an exposition with `prometheus_client.parser.text_string_to_metric_families`; a
/// document it cannot parse fails the test.
fn parse_metrics(server: &Server, text: &str) -> Vec<Sample> {
    std::fs::write(server.path("metrics.txt"), text).unwrap();
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for family in text_string_to_metric_families(open(sys.argv[1]).read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out.append({'name': s.name, 'labels': s.labels, 'value': s.value})\n\
        print(json.dumps(out))\n";
    let out = Command::new(ops_python())
        .args(["-c", script, "metrics.txt"])
        .current_dir(server.root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    parsed
        .into_iter()
        .map(|s| Sample {
            name: s["name"].as_str().unwrap().to_string(),
            labels: s["labels"].as_object().unwrap().clone(),
            value: s["value"].as_f64().unwrap(),
        })
        .collect()
}

fn value_of(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k) == Some(&Value::from(*v)))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

/// GET `path` until `done` says yes (the state it waits for is reached by another process),
/// giving up after a minute.
fn wait_for(server: &Server, path: &str, done: impl Fn(u16, &Value) -> bool) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = server.http().request("GET", path, None, None);
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        if done(r.status, &v) {
            return (r.status, v);
        }
        assert!(
            Instant::now() < deadline,
            "{path} never reached the state waited for; last: {} {}",
            r.status,
            r.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn usage_count(server: &Server, key: &str) -> i64 {
    let show = server.kagi_ok(&["key", "show", key]);
    show.lines()
        .find_map(|l| l.trim().strip_prefix("usage count:"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no usage count in: {show}"))
}

fn audit_records(server: &Server, token: &str) -> Vec<Value> {
    let r = server
        .http()
        .request("GET", "/api/v1/audit?from=0&limit=10000", Some(token), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json().as_array().unwrap().clone()
}

fn detail(record: &Value) -> Value {
    serde_json::from_str(record["detail"].as_str().unwrap()).unwrap()
}

#[test]
fn readyz_is_503_while_sealed_and_200_once_unsealed() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(KAGI)
        .args(["init", "--shares", "1", "--threshold", "1", "--data"])
        .arg(dir.path().join("kagi-data"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let (share, admin) = (lines[0], lines[1]);
    let server = Server::start_in(dir, &[]);
    let http = server.http();

    // Liveness answers while sealed; readiness does not, and says why.
    assert_eq!(http.request("GET", "/healthz", None, None).status, 200);
    let ready = http.request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(ready.json()["reason"], "sealed");
    // /metrics still answers (a token cannot be checked while sealed: the public series).
    let metrics = http.request("GET", "/metrics", Some(admin), None);
    assert_eq!(metrics.status, 200, "{}", metrics.body);
    let samples = parse_metrics(&server, &metrics.body);
    assert_eq!(value_of(&samples, "kagi_sealed", &[]), Some(1.0));
    assert_eq!(value_of(&samples, "kagi_integrity_failure", &[]), Some(0.0));

    std::fs::write(server.path("share"), share).unwrap();
    let unsealed = Command::new(KAGI)
        .args(["unseal", "--share-file", "share"])
        .current_dir(server.root())
        .env("KAGI_URL", &server.url)
        .output()
        .unwrap();
    assert!(unsealed.status.success(), "{}", common::stderr(&unsealed));
    let ready = http.request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["ready"], true);

    // Break-glass recovery has no session either.
    let recover = http.request(
        "POST",
        "/api/v1/sys/recover",
        None,
        Some(format!(r#"{{"shares":["{share}"],"credential":"admin"}}"#).as_bytes()),
    );
    assert_eq!(recover.status, 200, "{}", recover.body);

    // The unseal and recovery records say where the shares came from: no session, but the
    // server knew.
    let records = audit_records(&server, admin);
    let recovered = records
        .iter()
        .find(|r| r["action"] == "credential.recover")
        .expect("a credential.recover record");
    assert_eq!(detail(recovered)["source"], "127.0.0.1");
    let unseal = records
        .iter()
        .find(|r| r["action"] == "hsm.unseal")
        .expect("an hsm.unseal record");
    let d = detail(unseal);
    assert_eq!(d["source"], "127.0.0.1", "{d}");
    assert!(
        d["user_agent"].as_str().is_some_and(|ua| !ua.is_empty()),
        "{d}"
    );
    let samples = parse_metrics(
        &server,
        &http.request("GET", "/metrics", Some(admin), None).body,
    );
    assert_eq!(value_of(&samples, "kagi_sealed", &[]), Some(0.0));
}

/// `/readyz` follows the PostgreSQL database: 503 `database_unreachable` while it refuses
/// connections (kagi's pooled sessions terminated), 200 once it takes them again.
#[test]
fn readyz_is_503_while_the_postgres_database_is_unreachable() {
    let db = Database::create();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &db.url()]);
    wait_for(&server, "/readyz", |s, _| s == 200);

    let mut admin = PgConnection::establish(&kagi_testkit::pg::admin_url()).unwrap();
    let name = db.name();
    diesel::sql_query(format!(
        "ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false"
    ))
    .execute(&mut admin)
    .unwrap();
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
    ))
    .execute(&mut admin)
    .unwrap();
    let (_, body) = wait_for(&server, "/readyz", |s, _| s == 503);
    assert_eq!(body["reason"], "database_unreachable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("database"),
        "{body}"
    );
    // Still alive: a load balancer takes it out of rotation, a supervisor leaves it running.
    assert_eq!(
        server.http().request("GET", "/healthz", None, None).status,
        200
    );

    diesel::sql_query(format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true"))
        .execute(&mut admin)
        .unwrap();
    let (_, body) = wait_for(&server, "/readyz", |s, _| s == 200);
    assert_eq!(body["ready"], true);
    // And it works again, with nothing lost.
    server.kagi_ok(&["key", "create", "--name", "after", "--alg", "ec-p256"]);
    server.kagi_ok(&["audit", "verify"]);
}

/// Ten signatures: the signature counter of the key, its uses gauge and `kagi key show` agree;
/// a stranger's scrape names no key; a wrong token is refused, not quietly served less.
fn metrics_agree_with_key_show(server: &Server) {
    // The bootstrap policy's person rule, and a quota on the admin's signatures with the key.
    server.activate_policy(&format!(
        "{}\n[[quota]]\nname = \"admin-metered\"\nidentity = \"admin\"\naction = \"sign\"\n\
         resource = \"metered\"\ntotal = 40\nper_day = 30\n",
        common::allow_policy(&[])
    ));
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "metered",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "50",
    ]);
    std::fs::write(server.path("a.bin"), b"ten signatures").unwrap();
    for _ in 0..10 {
        server.kagi_ok(&["sign", "--key", "metered", "a.bin", "-o", "a.sig"]);
    }
    let shown = usage_count(server, "metered");
    assert_eq!(shown, 10);

    let http = server.http();
    let token = server.token();
    // Refusals are counted by their code; a name the caller made up labels nothing.
    let unknown = http.request(
        "POST",
        "/api/v1/sign",
        Some(&token),
        Some(format!(r#"{{"key":"made-up-1","digest":"{}"}}"#, "ab".repeat(32)).as_bytes()),
    );
    assert_eq!(unknown.error_code(), "key_not_found");
    // Two certificates, and one request for a profile that does not exist.
    for sn in ["SN-OPS-1", "SN-OPS-2"] {
        let r = http.post_raw(
            "/api/v1/ca/devices/profiles/device/issue",
            &token,
            "application/pkcs10",
            &crate::ca::device_csr(sn),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let r = http.post_raw(
        "/api/v1/ca/devices/profiles/made-up-2/issue",
        &token,
        "application/pkcs10",
        &crate::ca::device_csr("SN-OPS-3"),
    );
    assert_eq!(r.error_code(), "unknown_profile");
    let r = http.request("GET", "/metrics", Some(&token), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let samples = parse_metrics(server, &r.body);
    let key = [("key", "metered"), ("partition", "default")];
    let ok = [("key", "metered"), ("result", "ok"), ("format", "raw")];
    assert_eq!(
        value_of(&samples, "kagi_signatures_total", &ok),
        Some(shown as f64),
        "{}",
        r.body
    );
    assert_eq!(
        value_of(
            &samples,
            "kagi_signatures_total",
            &[("key", "-"), ("result", "key_not_found")]
        ),
        Some(1.0)
    );
    let devices = [("ca", "devices"), ("profile", "device"), ("result", "ok")];
    assert_eq!(
        value_of(&samples, "kagi_issuances_total", &devices),
        Some(2.0)
    );
    let unnamed = [("ca", "-"), ("profile", "-"), ("result", "unknown_profile")];
    assert_eq!(
        value_of(&samples, "kagi_issuances_total", &unnamed),
        Some(1.0)
    );
    assert!(!r.body.contains("made-up"), "{}", r.body);
    let quota = |window: &'static str| {
        [
            ("quota", "admin-metered"),
            ("identity", "admin"),
            ("window", window),
        ]
    };
    assert_eq!(
        value_of(&samples, "kagi_quota_used", &quota("total")),
        Some(10.0)
    );
    assert_eq!(
        value_of(&samples, "kagi_quota_limit", &quota("total")),
        Some(40.0)
    );
    assert_eq!(
        value_of(&samples, "kagi_quota_limit", &quota("day")),
        Some(30.0)
    );
    assert_eq!(
        value_of(&samples, "kagi_key_uses", &key),
        Some(shown as f64)
    );
    assert_eq!(value_of(&samples, "kagi_key_usage_limit", &key), Some(50.0));
    assert_eq!(value_of(&samples, "kagi_sealed", &[]), Some(0.0));
    assert_eq!(value_of(&samples, "kagi_integrity_failure", &[]), Some(0.0));
    // Every signature is an audit record and a log entry, each committed in some batch.
    assert!(value_of(&samples, "kagi_audit_log_records", &[]).unwrap() >= 10.0);
    assert!(value_of(&samples, "kagi_transparency_log_entries", &[]).unwrap() >= 10.0);
    let batches = value_of(&samples, "kagi_commit_batch_operations_count", &[]).unwrap();
    let ops = value_of(&samples, "kagi_commit_batch_operations_sum", &[]).unwrap();
    assert!(
        batches >= 1.0 && ops >= 10.0,
        "{batches} batches, {ops} ops"
    );
    assert_eq!(
        value_of(&samples, "kagi_commit_batch_seconds_count", &[]),
        Some(batches)
    );

    // A scrape writes nothing to the audit log: two in a row see the same size (the token's
    // login is cached by the scrape above).
    let size = |body: &str| value_of(&parse_metrics(server, body), "kagi_audit_log_records", &[]);
    let first = size(&http.request("GET", "/metrics", Some(&token), None).body);
    let second = size(&http.request("GET", "/metrics", Some(&token), None).body);
    assert!(first.is_some());
    assert_eq!(first, second);

    // Without a credential: the state, and no name of a key, partition or identity.
    let public = http.request("GET", "/metrics", None, None);
    assert_eq!(public.status, 200);
    let samples = parse_metrics(server, &public.body);
    assert_eq!(value_of(&samples, "kagi_sealed", &[]), Some(0.0));
    assert!(
        samples.iter().all(|s| s.labels.keys().all(|k| k == "le")),
        "{}",
        public.body
    );
    assert!(!public.body.contains("metered"), "{}", public.body);
    // A wrong token is refused; so is a good one without the auditor role.
    let wrong = http.request("GET", "/metrics", Some("kagi_nope_nope"), None);
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    let created = http.request(
        "POST",
        "/api/v1/credentials",
        Some(&token),
        Some(br#"{"name":"not-an-auditor","roles":["user"]}"#),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let user = created.json()["token"].as_str().unwrap().to_string();
    let refused = http.request("GET", "/metrics", Some(&user), None);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.error_code(), "forbidden");
}

#[test]
fn metrics_count_signatures_like_key_show_on_sqlite() {
    let server = Server::start();
    metrics_agree_with_key_show(&server);
}

#[test]
fn metrics_count_signatures_like_key_show_on_postgres() {
    let db = Database::create();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &db.url()]);
    metrics_agree_with_key_show(&server);
}

/// A signature made over HTTP with a User-Agent of its own (curl, as a pipeline would) leaves
/// a key.use record naming the address and that User-Agent, and the log still verifies.
fn signature_record_names_its_client(server: &Server) {
    server.kagi_ok(&["key", "create", "--name", "traced", "--alg", "ec-p256"]);
    let token = server.token();
    let body = format!(r#"{{"key":"traced","digest":"{}"}}"#, "ab".repeat(32));
    let (ok, out) = run_in(
        server,
        &[
            "curl",
            "-sS",
            "--fail-with-body",
            "--cacert",
            "kagi-data/tls-ca.pem",
            "-A",
            USER_AGENT,
            "-H",
            &format!("Authorization: Bearer {token}"),
            "-H",
            "Content-Type: application/json",
            "-d",
            &body,
            &format!("{}/api/v1/sign", server.url),
        ],
    );
    assert!(ok, "curl: {out}");
    let records = audit_records(server, &token);
    let used = records
        .iter()
        .rev()
        .find(|r| r["action"] == "key.use" && r["outcome"] == "ok")
        .expect("a key.use record");
    let d = detail(used);
    assert_eq!(d["source"], "127.0.0.1", "{d}");
    assert_eq!(d["user_agent"], USER_AGENT, "{d}");
    // The detail is inside the MAC'd bytes: the log verifies with it.
    server.kagi_ok(&["audit", "verify"]);
}

#[test]
fn audit_records_carry_source_and_user_agent_on_sqlite() {
    let server = Server::start();
    signature_record_names_its_client(&server);
}

#[test]
fn audit_records_carry_source_and_user_agent_on_postgres() {
    let db = Database::create();
    let server = Server::start_in(tempfile::tempdir().unwrap(), &["--database-url", &db.url()]);
    signature_record_names_its_client(&server);
}
