//! Signatures per second through the HTTP API (`POST /api/v1/sign` over TLS, a real socket, the
//! real `kagi serve`), for ec-p256, ec-p384 and rsa-2048, formats raw and cms (and sigstore for
//! the ECDSA keys: a short-lived certificate with an SCT, the signature, and its log entry with
//! promise, proof and checkpoint, per request), each as a ratio of the hardware limit measured
//! in the same run (aws-lc-rs signing the same key type on every core, nothing counted), with
//! p50/p99/max latency, and the server's resident memory at the end.
//!
//! Run: `cargo bench -p kagi-benches --bench http_signing`. It builds and runs
//! `target/release/kagi` (`cargo build --release -p signer`); KAGI_BENCH_SECS=N per row.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair};
use kagi_benches::serve::{agent, cli, start};
use kagi_benches::{load, rate, rss_mb};
use kagi_hsm_core::*;
use std::time::Duration;

const THREADS: usize = 32;

/// aws-lc-rs signing `alg` on `cores` threads for `dur`: what the hardware does, counting
/// nothing.
fn hardware(alg: Algorithm, cores: usize, dur: Duration) -> f64 {
    let rng = SystemRandom::new();
    let msg = b"bench";
    match alg {
        Algorithm::EcP256 | Algorithm::EcP384 => {
            let a = if alg == Algorithm::EcP256 {
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING
            } else {
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING
            };
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(a, &rng).expect("key");
            let key = EcdsaKeyPair::from_pkcs8(a, pkcs8.as_ref()).expect("key");
            rate(cores, dur, |_| {
                let _ = key.sign(&rng, msg);
            })
        }
        _ => {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("rsa key");
            let len = key.public_modulus_len();
            rate(cores, dur, |_| {
                let mut out = vec![0u8; len];
                let _ = key.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut out);
            })
        }
    }
}

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 3);
    let dur = Duration::from_secs(secs);
    let cores = kagi_benches::cores();
    println!(
        "kagi HTTP signing benchmark: {cores} cores, {THREADS} client threads, {secs} s per row\n"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let http = agent(&dir.path().join("kagi-data/tls-ca.pem"));
    let token = std::fs::read_to_string(dir.path().join("kagi-data/admin.token"))
        .expect("admin token")
        .trim()
        .to_string();

    for (alg, digest_alg) in [
        (Algorithm::EcP256, DigestAlg::Sha256),
        (Algorithm::EcP384, DigestAlg::Sha384),
        (Algorithm::Rsa2048, DigestAlg::Sha256),
    ] {
        let name = format!("bench-{}", alg.as_str());
        let hw = hardware(alg, cores, dur);
        println!("-- {alg}");
        println!(
            "{:<44} {hw:>9.0} /s  (aws-lc-rs, {cores} threads, nothing counted)",
            "hardware"
        );
        cli(
            dir.path(),
            &server.url,
            &["key", "create", "--name", &name, "--alg", alg.as_str()],
        );
        cli(
            dir.path(),
            &server.url,
            &["key", "certify", &name, "-o", "/dev/null"],
        );
        // Sigstore bundles are ECDSA over SHA-256 only (what Sigstore clients verify).
        let formats: &[&str] = if alg == Algorithm::Rsa2048 {
            &["raw", "cms"]
        } else {
            &["raw", "cms", "sigstore"]
        };
        for &format in formats {
            let da = if format == "sigstore" {
                DigestAlg::Sha256
            } else {
                digest_alg
            };
            let body = format!(
                r#"{{"key":"{name}","digest":"{}","digest_alg":"{}","format":"{format}"}}"#,
                hex::encode(da.hash(b"bench")),
                da.as_str()
            );
            let url = format!("{}/api/v1/sign", server.url);
            let auth = format!("Bearer {token}");
            let r = load(THREADS, dur, || {
                http.post(&url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .send(body.as_bytes())
                    // Reading the body to the end returns the connection to the pool.
                    .map(|resp| {
                        let ok = resp.status() == 200;
                        ok && resp.into_body().read_to_vec().is_ok()
                    })
                    .unwrap_or(false)
            });
            println!(
                "{:<44} {:>9.0} /s  {:>6.3}x hw   p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
                format!("HTTPS POST /api/v1/sign, format {format}"),
                r.rate,
                r.rate / hw,
                r.p50_ms,
                r.p99_ms,
                r.max_ms
            );
            assert_eq!(r.failures, 0, "{} requests failed", r.failures);
        }
        println!();
    }
    if let Some((now, peak)) = rss_mb(server.pid()) {
        println!("kagi serve resident memory: {now:.0} MB now, {peak:.0} MB at its peak");
    }
    drop(server);
}
