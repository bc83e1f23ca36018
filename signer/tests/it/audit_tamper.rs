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
