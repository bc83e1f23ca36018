//! What verifying the audit log costs, against the primitives it is made of, in one run:
//!
//! - the ceiling: HMAC-SHA256 of a record's bytes plus its RFC 9162 leaf hash, with aws-lc-rs on
//!   all cores (the per-record work, without reading it from the store);
//! - unsealing an instance with N records: the whole log is verified (MAC, sequence, every
//!   signed checkpoint, the stored head) before it serves; reported as p50/p99/max over runs;
//! - `audit verify` on the same log, which does the same checks.
//!
//! Run: `cargo bench -p kagi-benches --bench audit_verify` (KAGI_BENCH_RECORDS=N, default
//! 100000; KAGI_BENCH_RUNS=R, default 5).

use kagi_benches::{percentile, rate, report};
use kagi_hsm_core::*;
use std::time::{Duration, Instant};

fn main() {
    let records: usize = kagi_benches::env("KAGI_BENCH_RECORDS", 100_000);
    let runs: usize = kagi_benches::env("KAGI_BENCH_RUNS", 5);
    let cores = kagi_benches::cores();
    println!(
        "kagi audit verification benchmark: {cores} cores, about {records} records, {runs} runs\n"
    );

    // The per-record work on a 200-byte record, all cores.
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &[7u8; 32]);
    let record = [0x5au8; 200];
    let per_record = |_| {
        let _ = aws_lc_rs::hmac::sign(&key, &record);
        let mut leaf = Vec::with_capacity(201);
        leaf.push(0u8);
        leaf.extend_from_slice(&record);
        let _ = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &leaf);
    };
    let ceiling = rate(cores, Duration::from_secs(2), per_record);
    report(
        &format!("raw HMAC + leaf hash per record, {cores} threads"),
        ceiling,
        "raw",
        ceiling,
    );

    let dir = tempfile::tempdir().expect("tempdir");
    for (name, store) in kagi_benches::stores(dir.path()) {
        let hsm = Hsm::open(HsmConfig::new(store.clone())).expect("open");
        let out = hsm.init(1, 1).expect("init");
        let admin = hsm.login(&out.admin_token).expect("login");
        hsm.create_key(&admin, &KeySpec::new("k", Algorithm::EcP256))
            .expect("key");
        // Fill the log: one record per signature, from many threads so batches are large.
        let filled = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..32u64 {
                let (hsm, admin, filled) = (&hsm, &admin, &filled);
                s.spawn(move || {
                    let mut n = 0u64;
                    while filled.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < records {
                        let d = aws_lc_rs::digest::digest(
                            &aws_lc_rs::digest::SHA256,
                            &((t << 40) | n).to_be_bytes(),
                        );
                        let _ = hsm.sign(
                            admin,
                            "k",
                            &SignRequest {
                                digest_alg: None,
                                digest: d.as_ref().to_vec(),
                                padding: RsaPadding::Pkcs1v15,
                            },
                        );
                        n += 1;
                    }
                });
            }
        });
        let total = hsm.audit_verify(&admin).expect("verify").records;
        let share = out.shares[0].to_string();
        drop(hsm);

        let mut unseal = Vec::with_capacity(runs);
        let mut verify = Vec::with_capacity(runs);
        for _ in 0..runs {
            let hsm = Hsm::open(HsmConfig::new(store.clone())).expect("open");
            let t = Instant::now();
            hsm.unseal(&share).expect("unseal");
            unseal.push(t.elapsed().as_secs_f64());
            assert!(hsm.integrity_failure().is_none());
            let admin = hsm.login(&out.admin_token).expect("login");
            let t = Instant::now();
            hsm.audit_verify(&admin).expect("verify");
            verify.push(t.elapsed().as_secs_f64());
        }
        for (what, mut v) in [
            ("unseal (verifies the whole log)", unseal),
            ("audit verify", verify),
        ] {
            v.sort_by(f64::total_cmp);
            let p50 = percentile(&v, 0.5);
            println!(
                "{name:<10} {what:<34} {total} records: p50 {:.3} s, p99 {:.3} s, max {:.3} s",
                p50,
                percentile(&v, 0.99),
                v[v.len() - 1],
            );
            report(
                &format!("{name} {what}, records/s at p50"),
                total as f64 / p50,
                "raw",
                ceiling,
            );
        }
    }
    kagi_benches::drop_bench_database();
}
