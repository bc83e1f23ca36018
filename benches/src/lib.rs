//! Shared helpers for kagi's benchmarks. Every benchmark prints its result next to the raw
//! primitive measured in the same run, as a ratio, because these machines are shared and noisy:
//! a ratio survives a slow day, an absolute number does not.
#![forbid(unsafe_code)]

pub mod serve;

use diesel::{Connection, RunQueryDsl};
use std::time::{Duration, Instant};

/// A setting from the environment (KAGI_BENCH_SECS and the like), or `default`.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The cores this machine offers: the hardware rows run on all of them.
pub fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Run `op` on `threads` threads for about `dur`; returns operations per second.
pub fn rate<F>(threads: usize, dur: Duration, op: F) -> f64
where
    F: Fn(u64) + Sync,
{
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let op = &op;
                s.spawn(move || {
                    let mut n = 0u64;
                    while start.elapsed() < dur {
                        op(((t as u64) << 40) | n);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// The value at fraction `p` (0.5 for p50) of an ascending, non-empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A closed-loop load's outcome: the rate, and each request's latency.
pub struct Load {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub failures: u64,
}

/// `threads` clients run `op` back to back for about `dur`; `op` says whether the request
/// succeeded. Every successful request's latency is kept.
pub fn load<F>(threads: usize, dur: Duration, op: F) -> Load
where
    F: Fn() -> bool + Sync,
{
    let start = Instant::now();
    let per_thread: Vec<(Vec<f64>, u64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let op = &op;
                s.spawn(move || {
                    let (mut ms, mut failures) = (Vec::new(), 0u64);
                    while start.elapsed() < dur {
                        let t = Instant::now();
                        if op() {
                            ms.push(t.elapsed().as_secs_f64() * 1000.0);
                        } else {
                            failures += 1;
                        }
                    }
                    (ms, failures)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let failures = per_thread.iter().map(|t| t.1).sum();
    let mut ms: Vec<f64> = per_thread.into_iter().flat_map(|t| t.0).collect();
    ms.sort_by(f64::total_cmp);
    Load {
        rate: ms.len() as f64 / elapsed,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
        failures,
    }
}

/// A process's resident set now and at its peak (VmRSS, VmHWM), in MB, from /proc.
pub fn rss_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// `n` device CSRs (DER), each with its own P-256 key and subject serialNumber `SN-nnnnnn`,
/// as the `device` profile wants them.
pub fn device_csrs(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, "sensor");
            dn.push(
                rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
                rcgen::DnValue::PrintableString(
                    format!("SN-{i:06}").try_into().expect("printable"),
                ),
            );
            p.distinguished_name = dn;
            p.serialize_request(&key).expect("csr").der().to_vec()
        })
        .collect()
}

pub fn report(name: &str, ops: f64, baseline_name: &str, baseline: f64) {
    println!(
        "{name:<58} {ops:>10.0} ops/s   {:>6.3}x {baseline_name}",
        ops / baseline
    );
}

/// The PostgreSQL database is scratch: drop it (FORCE ends the pool's sessions).
pub fn drop_bench_database() {
    let admin = std::env::var("KAGI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if let Ok(mut c) = diesel::PgConnection::establish(&admin) {
        let name = format!("kagi_bench_{}", std::process::id());
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c);
    }
}

pub fn stores(dir: &std::path::Path) -> Vec<(&'static str, kagi_hsm_core::StoreConfig)> {
    let mut v = vec![("SQLite", kagi_hsm_core::StoreConfig::sqlite_in(dir))];
    let admin = std::env::var("KAGI_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if let Ok(mut c) = diesel::PgConnection::establish(&admin) {
        let name = format!("kagi_bench_{}", std::process::id());
        if diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .is_ok()
        {
            if let Some((base, _)) = admin.rsplit_once('/') {
                v.push((
                    "PostgreSQL",
                    kagi_hsm_core::StoreConfig::Postgres(format!("{base}/{name}")),
                ));
            }
        }
    } else {
        println!("(PostgreSQL not reachable at {admin}: skipping its row)\n");
    }
    v
}
