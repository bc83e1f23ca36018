//! Device-certificate issuance through the CA against the raw signing rate of the CA's key
//! type, in one run:
//!
//! - raw aws-lc-rs ECDSA sign of a digest (P-256, P-384): the ceiling;
//! - hsm-core signing with the CA key (counted, audited, checkpointed);
//! - full issuance: CSR parsed and its signature verified, judged against the `device`
//!   profile, pre-issuance lint, signed by the CA key in hsm-core and stored durably in the
//!   same transaction as the use; on SQLite and on PostgreSQL.
//!
//! Run: `cargo bench -p kagi-benches --bench issuance` (KAGI_BENCH_SECS=N for longer runs).

use kagi_benches::{rate, report};
use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::{Authority, CaSpec, IssueOptions, Profiles, PublicUrls};
use kagi_hsm_core::*;
use std::time::Duration;

const CSRS: usize = 256;

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 3);
    let dur = Duration::from_secs(secs);
    let threads = 64;
    let cores = kagi_benches::cores();
    println!(
        "kagi issuance benchmark: {cores} cores, {threads} client threads, {secs} s per row\n"
    );
    let csrs = kagi_benches::device_csrs(CSRS);
    let profiles = Profiles::builtin().expect("profiles");
    let device = profiles.get("device").expect("device profile");
    let urls = PublicUrls::new("http://127.0.0.1:8080");

    for (alg, sig_alg, digest_alg) in [
        (
            Algorithm::EcP256,
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &aws_lc_rs::digest::SHA256,
        ),
        (
            Algorithm::EcP384,
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &aws_lc_rs::digest::SHA384,
        ),
    ] {
        let kp = aws_lc_rs::signature::EcdsaKeyPair::generate(sig_alg).expect("keygen");
        let digest = aws_lc_rs::digest::digest(digest_alg, b"tbs");
        let raw = rate(cores, dur, |_| {
            let _ = kp.sign_digest(&digest);
        });
        println!("-- CA key {alg}");
        report(
            &format!("raw aws-lc-rs {alg} sign_digest, {cores} threads"),
            raw,
            "raw",
            raw,
        );
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, store) in kagi_benches::stores(dir.path()) {
            let hsm = Hsm::open(HsmConfig::new(store)).expect("open");
            let out = hsm.init(1, 1).expect("init");
            let s = hsm.login(&out.admin_token).expect("login");
            let spec = |n: &str| CaSpec {
                name: n.into(),
                subject: format!("CN=Bench {n}"),
                alg,
                validity_days: 3650,
            };
            let _ = create_root(&hsm, &s, &spec("root"), None).expect("root");
            let _ = create_intermediate(&hsm, &s, &spec("devices"), "root", &urls, None)
                .expect("intermediate");
            let ca = Authority::load(&hsm, &s, "devices").expect("load");
            let tbs = vec![7u8; 400];
            let signed = rate(threads, dur, |_| {
                let _ = ca.signer.sign_tbs(&tbs);
            });
            report(
                &format!("hsm-core CA key signature ({name}: counted, audited)"),
                signed,
                "raw",
                raw,
            );
            let prep = rate(cores, dur, |i| {
                let csr = &csrs[(i as usize) % CSRS];
                if let Ok(parsed) = kagi_ca::csr::parse(csr) {
                    if let Ok(plan) = kagi_ca::issue::plan(
                        &ca,
                        device,
                        &parsed,
                        &IssueOptions::default(),
                        &urls,
                        kagi_ca::x509::unix_now(),
                    ) {
                        if let Ok(tbs) = kagi_ca::x509::tbs_der(&plan, &ca.signer) {
                            let _ = kagi_ca::issue::check_tbs(&tbs, &ca, Some(device));
                        }
                    }
                }
            });
            report(
                &format!("CA work without the HSM: CSR check, plan, TBS, lint ({cores} thr)"),
                prep,
                "raw",
                raw,
            );
            let before = hsm.count_certificates("devices").expect("count");
            let start = std::time::Instant::now();
            let issued = rate(threads, dur, |i| {
                let csr = &csrs[(i as usize) % CSRS];
                let _ = kagi_ca::issue::issue(
                    &ca,
                    &s,
                    device,
                    csr,
                    &IssueOptions::default(),
                    &urls,
                    &[],
                    serde_json::json!({}),
                );
            });
            let elapsed = start.elapsed().as_secs_f64();
            let stored = hsm.count_certificates("devices").expect("count") - before;
            report(
                &format!("device certificates issued + stored ({name})"),
                issued,
                "raw",
                raw,
            );
            println!(
                "{:<58} {stored} certificates stored in {elapsed:.1} s ({:.0}/s from the store's count)",
                "",
                stored as f64 / elapsed
            );
            hsm.audit_verify(&s).expect("audit verify");
        }
        kagi_benches::drop_bench_database();
        println!();
    }
}
