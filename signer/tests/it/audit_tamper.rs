//! `kagi audit verify`, as an auditor runs it, against a database someone edited behind kagi's
//! back: it fails, names the record, and passes again once the record is put back.

use crate::common;

use common::Server;
use diesel::prelude::*;
use kagi_hsm_core::store::schema::audit_records;
use kagi_hsm_core::store::AnyConnection;
use kagi_hsm_core::AuditEvent;

#[test]
fn audit_verify_names_the_changed_deleted_or_reordered_record() {
    let server = Server::start();
    for n in 0..3 {
        let name = format!("k{n}");
        server.kagi_ok(&["key", "create", "--name", &name, "--alg", "ec-p256"]);
    }
    std::fs::write(server.path("a.bin"), b"x").unwrap();
    for _ in 0..3 {
        server.kagi_ok(&["sign", "--key", "k1", "a.bin", "-o", "a.sig"]);
    }
    assert!(server
        .kagi_ok(&["audit", "verify"])
        .starts_with("audit log OK"));

    let db = server.data().join("kagi.db");
    let mut c = AnyConnection::establish(&db.to_string_lossy()).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut c)
        .unwrap();
    let all: Vec<AuditEvent> = audit_records::table
        .order(audit_records::seq.asc())
        .load(&mut c)
        .unwrap();
    let restore = |c: &mut AnyConnection| {
        diesel::delete(audit_records::table).execute(c).unwrap();
        for ev in &all {
            diesel::insert_into(audit_records::table)
                .values(ev)
                .execute(c)
                .unwrap();
        }
    };
    let fails_naming = |seq: i64| {
        let out = server.kagi(&["audit", "verify"]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "verify passed on a tampered log");
        assert!(err.contains("audit_integrity_failure"), "{err}");
        assert!(err.contains(&format!("record {seq}")), "{err}");
    };
    let mid = (all.len() / 2) as i64;

    diesel::update(audit_records::table.filter(audit_records::seq.eq(mid)))
        .set(audit_records::outcome.eq("ok-ish"))
        .execute(&mut c)
        .unwrap();
    fails_naming(mid);
    restore(&mut c);
    assert!(server
        .kagi_ok(&["audit", "verify"])
        .starts_with("audit log OK"));

    diesel::delete(audit_records::table.filter(audit_records::seq.eq(mid)))
        .execute(&mut c)
        .unwrap();
    fails_naming(mid);
    restore(&mut c);

    // Reorder: swap the contents of two neighbours.
    let (a, b) = (all[mid as usize].clone(), all[mid as usize + 1].clone());
    diesel::delete(audit_records::table.filter(audit_records::seq.eq_any([mid, mid + 1])))
        .execute(&mut c)
        .unwrap();
    diesel::insert_into(audit_records::table)
        .values(&AuditEvent { seq: mid, ..b })
        .execute(&mut c)
        .unwrap();
    diesel::insert_into(audit_records::table)
        .values(&AuditEvent { seq: mid + 1, ..a })
        .execute(&mut c)
        .unwrap();
    fails_naming(mid);
    restore(&mut c);
    assert!(server
        .kagi_ok(&["audit", "verify"])
        .starts_with("audit log OK"));
}

const FLOOR_POLICY: &str = r#"rules = '''
@id("ci-signs-fw")
permit (principal == kagi::Pipeline::"ci", action == kagi::Action::"sign", resource == kagi::Key::"fw");

@id("admin-signs-three")
permit (principal == kagi::Person::"admin", action == kagi::Action::"sign", resource == kagi::Key::"three");
'''

[[quota]]
name = "ci-fw"
identity = "ci"
action = "sign"
resource = "fw"
total = 2
"#;

/// The database writer's floor attacks through the real service, on one backend: a key's
/// counter and a quota's counter set back, with the audit records that vouch for the uses
/// nulled. The restarted service signs nothing more, answers 503 `integrity_failure`, and
/// `/readyz` says why.
fn floor_attacks_fail_the_service_closed(extra: &[&str], url: impl Fn(&Server) -> String) {
    let server = Server::start_in(tempfile::tempdir().unwrap(), extra);
    server.kagi_ok(&[
        "key",
        "create",
        "--name",
        "three",
        "--alg",
        "ec-p256",
        "--usage-limit",
        "3",
    ]);
    server.kagi_ok(&["key", "create", "--name", "fw", "--alg", "ec-p256"]);
    let ci = server
        .kagi_ok(&["identity", "create", "--name", "ci", "--kind", "pipeline"])
        .trim()
        .to_string();
    std::fs::write(server.path("a.bin"), b"artifact").unwrap();
    for _ in 0..3 {
        server.kagi_ok(&["sign", "--key", "three", "a.bin", "-o", "a.sig"]);
    }
    // The policy lets the pipeline sign with a quota, and the administrator with 'three'.
    std::fs::write(server.path("floor.toml"), FLOOR_POLICY).unwrap();
    let out = server.kagi_ok(&["policy", "submit", "floor.toml"]);
    let v = out.trim().rsplit(' ').next().unwrap().to_string();
    server.kagi_ok(&["policy", "activate", &v]);
    for _ in 0..2 {
        let out = server.kagi_as(&ci, &["sign", "--key", "fw", "a.bin", "-o", "b.sig"]);
        assert!(out.status.success(), "{}", common::stderr(&out));
    }
    assert_eq!(
        server.http().request("GET", "/readyz", None, None).status,
        200
    );
    let db = url(&server);
    let dir = server.stop();

    let mut c = AnyConnection::establish(&db).unwrap();
    for sql in [
        "UPDATE keys SET usage_count = 0 WHERE label = 'three'",
        "UPDATE audit_records SET use_hi = NULL WHERE key_id = (SELECT id FROM keys WHERE label = 'three')",
        "UPDATE quota_counters SET used = 0",
        "UPDATE audit_records SET use_hi = NULL WHERE key_id = 'quota:ci-fw'",
    ] {
        diesel::sql_query(sql).execute(&mut c).unwrap();
    }
    drop(c);

    let server = Server::start_in(dir, extra);
    let mut extra_uses = 0;
    for _ in 0..3 {
        let admin = server.kagi(&["sign", "--key", "three", "a.bin", "-o", "c.sig"]);
        let line = server.kagi_as(&ci, &["sign", "--key", "fw", "a.bin", "-o", "d.sig"]);
        for out in [admin, line] {
            if out.status.success() {
                extra_uses += 1;
            } else {
                assert!(
                    common::stderr(&out).contains("integrity_failure"),
                    "{}",
                    common::stderr(&out)
                );
            }
        }
    }
    assert_eq!(extra_uses, 0, "signatures past a rolled-back floor");
    let ready = server.http().request("GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        ready.json()["reason"],
        "integrity_failure",
        "{}",
        ready.body
    );
    assert!(
        ready.json()["message"].as_str().unwrap().contains("record"),
        "{}",
        ready.body
    );
    let metrics = server.http().request("GET", "/metrics", None, None);
    assert!(
        metrics.body.contains("kagi_integrity_failure 1"),
        "{}",
        metrics.body
    );
    assert!(
        server.log().contains("INTEGRITY FAILURE"),
        "no loud log line"
    );
}

#[test]
fn floor_attacks_fail_the_service_closed_sqlite() {
    floor_attacks_fail_the_service_closed(&[], |s| {
        s.data().join("kagi.db").to_string_lossy().into_owned()
    });
}

#[test]
fn floor_attacks_fail_the_service_closed_postgres() {
    let db = common::Database::create();
    floor_attacks_fail_the_service_closed(&["--database-url", &db.url()], |_| db.url());
}

/// One record in the middle of a running service's log is edited: the service finds it
/// within its sweep (bounded wait), then appends nothing more, whatever it is asked.
#[test]
fn an_edit_to_an_old_record_fails_a_running_service_closed() {
    let server = Server::start();
    server.kagi_ok(&["key", "create", "--name", "k", "--alg", "ec-p256"]);
    std::fs::write(server.path("a.bin"), b"x").unwrap();
    for _ in 0..5 {
        server.kagi_ok(&["sign", "--key", "k", "a.bin", "-o", "a.sig"]);
    }
    let db = server.data().join("kagi.db");
    let mut c = AnyConnection::establish(&db.to_string_lossy()).unwrap();
    diesel::sql_query("PRAGMA busy_timeout = 10000")
        .execute(&mut c)
        .unwrap();
    let head = || -> i64 {
        audit_records::table
            .count()
            .get_result(&mut AnyConnection::establish(&db.to_string_lossy()).unwrap())
            .unwrap()
    };
    let mid = head() / 2;
    diesel::update(audit_records::table.filter(audit_records::seq.eq(mid)))
        .set(audit_records::actor.eq("default:nobody"))
        .execute(&mut c)
        .unwrap();
    let at_edit = head();
    let http = server.http();
    let started = std::time::Instant::now();
    loop {
        let r = http.request("GET", "/readyz", None, None);
        if r.status == 503 {
            assert!(r.body.contains(&format!("record {mid}")), "{}", r.body);
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the edit to record {mid} was not found"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Nothing was appended meanwhile but what the service did on its own (at most a batch).
    let after = head();
    assert!(after <= at_edit + 1, "{at_edit} -> {after}");
    let out = server.kagi(&["sign", "--key", "k", "a.bin", "-o", "b.sig"]);
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("integrity_failure"),
        "{}",
        common::stderr(&out)
    );
    let out = server.kagi(&["key", "create", "--name", "k2", "--alg", "ec-p256"]);
    assert!(!out.status.success());
    assert_eq!(head(), after, "the service appended to a broken log");
}
