//! Signing throughput through hsm-core against the raw primitives, in one run:
//!
//! - raw ECDSA P-256 sign of a digest with aws-lc-rs (the ceiling: no counting, no audit);
//! - raw SQLite, one counted use per durable transaction (WAL, synchronous=FULL): the rate a
//!   design without group commit is capped at;
//! - hsm-core `sign` on SQLite and on PostgreSQL: checked, counted durably, audited with a
//!   signed checkpoint, then signed.
//!
//! Run: `cargo bench -p kagi-benches --bench signing` (KAGI_BENCH_SECS=N for longer runs).

use diesel::connection::SimpleConnection;
use diesel::{Connection, RunQueryDsl, SqliteConnection};
use kagi_benches::{rate, report};
use kagi_hsm_core::*;
use std::time::Duration;

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 3);
    let dur = Duration::from_secs(secs);
    let threads = 64;
    let cores = kagi_benches::cores();
    println!("kagi signing benchmark: {cores} cores, {threads} client threads, {secs} s per row\n");

    // Raw primitive.
    let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
    )
    .expect("keygen");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"bench");
    let raw1 = rate(1, dur, |_| {
        let _ = kp.sign_digest(&digest);
    });
    let raw = rate(cores, dur, |_| {
        let _ = kp.sign_digest(&digest);
    });
    report(
        "raw aws-lc-rs ECDSA P-256 sign_digest, 1 thread",
        raw1,
        "raw",
        raw,
    );
    report(
        &format!("raw aws-lc-rs ECDSA P-256 sign_digest, {cores} threads"),
        raw,
        "raw",
        raw,
    );

    // Raw SQLite: one use per transaction.
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("raw.db");
    let mut c = SqliteConnection::establish(&db.to_string_lossy()).expect("sqlite");
    c.batch_execute(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
         CREATE TABLE k (id INTEGER PRIMARY KEY, used BIGINT NOT NULL, lim BIGINT NOT NULL); \
         INSERT INTO k VALUES (1, 0, 9223372036854775807);",
    )
    .expect("schema");
    let c = std::sync::Mutex::new(c);
    let raw_tx = rate(1, dur, |_| {
        if let Ok(mut c) = c.lock() {
            let _ = c.transaction::<_, diesel::result::Error, _>(|c| {
                diesel::sql_query("UPDATE k SET used = used + 1 WHERE id = 1 AND used < lim")
                    .execute(c)?;
                Ok(())
            });
        }
    });
    report(
        "raw SQLite, 1 counted use per durable transaction",
        raw_tx,
        "raw",
        raw,
    );

    for (name, store) in kagi_benches::stores(dir.path()) {
        let hsm = Hsm::open(HsmConfig::new(store)).expect("open");
        let out = hsm.init(1, 1).expect("init");
        let s = hsm.login(&out.admin_token).expect("login");
        hsm.create_key(&s, &KeySpec::new("bench", Algorithm::EcP256))
            .expect("key");
        let d = digest.as_ref().to_vec();
        let req = SignRequest {
            digest_alg: None,
            digest: d,
            padding: RsaPadding::Pkcs1v15,
        };
        let r = rate(threads, dur, |_| {
            let _ = hsm.sign(&s, "bench", &req);
        });
        report(
            &format!("hsm-core sign ({name}: counted, audited, checkpointed)"),
            r,
            "raw",
            raw,
        );
        println!(
            "{:<58} {:>10} {:>14.1}x raw SQLite 1-use-per-transaction",
            "",
            "",
            r / raw_tx
        );
        let verified = hsm.audit_verify(&s).expect("audit verify");
        println!(
            "{:<58} audit log verified: {} records\n",
            "", verified.records
        );
    }
    kagi_benches::drop_bench_database();
}
