//! Signatures per second through the HTTP API (`POST /api/v1/sign` over TLS, a real socket, the
//! real `kagi serve`), for ec-p256, ec-p384 and rsa-2048, formats raw and cms (and sigstore for
//! the ECDSA keys: a short-lived certificate with an SCT, the signature, and its log entry with
//! promise, proof and checkpoint, per request), beside the raw
//! hsm-core signing rate of the same key type measured in the same run (in-process: counted,
//! audited, no HTTP).
//!
//! Run: `cargo bench -p kagi-benches --bench http_signing`. It builds and runs
//! `target/release/kagi` (`cargo build --release -p signer`); KAGI_BENCH_SECS=N per row.

use kagi_benches::serve::{agent, cli, start};
use kagi_benches::{rate, report};
use kagi_hsm_core::*;
use std::time::Duration;

const THREADS: usize = 32;

fn main() {
    let secs: u64 = std::env::var("KAGI_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let dur = Duration::from_secs(secs);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
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

    // The raw hsm-core rate: a separate in-process instance on SQLite, same key types.
    let raw_dir = tempfile::tempdir().expect("tempdir");
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::sqlite_in(raw_dir.path()))).expect("open");
    let out = hsm.init(1, 1).expect("init");
    let s = hsm.login(&out.admin_token).expect("login");

    for (alg, digest_alg) in [
        (Algorithm::EcP256, DigestAlg::Sha256),
        (Algorithm::EcP384, DigestAlg::Sha384),
        (Algorithm::Rsa2048, DigestAlg::Sha256),
    ] {
        let name = format!("bench-{}", alg.as_str());
        hsm.create_key(&s, &KeySpec::new(&name, alg)).expect("key");
        let digest = digest_alg.hash(b"bench");
        let req = SignRequest {
            digest_alg: Some(digest_alg),
            digest: digest.clone(),
            padding: RsaPadding::Pkcs1v15,
        };
        let raw = rate(THREADS, dur, |_| {
            let _ = hsm.sign(&s, &name, &req);
        });
        println!("-- {alg}");
        report(
            "hsm-core sign in-process (counted, audited)",
            raw,
            "hsm-core",
            raw,
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
            let (d, da) = if format == "sigstore" {
                (DigestAlg::Sha256.hash(b"bench"), DigestAlg::Sha256)
            } else {
                (digest.clone(), digest_alg)
            };
            let body = format!(
                r#"{{"key":"{name}","digest":"{}","digest_alg":"{}","format":"{format}"}}"#,
                hex::encode(&d),
                da.as_str()
            );
            let url = format!("{}/api/v1/sign", server.url);
            let failures = std::sync::atomic::AtomicU64::new(0);
            let r = rate(THREADS, dur, |_| {
                let ok = http
                    .post(&url)
                    .header("Authorization", &format!("Bearer {token}"))
                    .header("Content-Type", "application/json")
                    .send(body.as_bytes())
                    // Reading the body to the end returns the connection to the pool.
                    .map(|resp| {
                        let ok = resp.status() == 200;
                        ok && resp.into_body().read_to_vec().is_ok()
                    })
                    .unwrap_or(false);
                if !ok {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            });
            report(
                &format!("HTTPS POST /api/v1/sign, format {format}"),
                r,
                "hsm-core",
                raw,
            );
            let f = failures.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(f, 0, "{f} requests failed");
        }
        println!();
    }
    drop(server);
}
