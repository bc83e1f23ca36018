//! Shared helpers for kagi's benchmarks. Every benchmark prints its result next to the raw
//! primitive measured in the same run, as a ratio, because these machines are shared and noisy:
//! a ratio survives a slow day, an absolute number does not.
#![forbid(unsafe_code)]

pub mod serve;

use diesel::{Connection, RunQueryDsl};
use std::time::{Duration, Instant};

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
