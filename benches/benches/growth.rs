//! Growth: what lookups and issuance cost at 1,000 stored certificates and at 1,000,000, and
//! key listing at 100 keys and at 10,000, on SQLite and PostgreSQL, in one run.
//!
//! The certificate rows beyond the first are written with one SQL statement (their DER is
//! filler: these lookups read rows, they do not parse them); issuance goes through the CA as
//! `kagi serve` runs it. Each lookup runs 200 times on one thread (p50/p99/max); issuance is
//! 64 threads for KAGI_BENCH_SECS (default 3), as a rate and as the ratio of the large table
//! to the small one (the goal: at least 0.9). KAGI_BENCH_CERTS=N changes the large size.
//!
//! Run: `cargo bench -p kagi-benches --bench growth`.

use diesel::{Connection, RunQueryDsl};
use kagi_benches::{percentile, rate};
use kagi_ca::hierarchy::{create_intermediate, create_root};
use kagi_ca::{Authority, CaSpec, IssueOptions, Profiles, PublicUrls};
use kagi_hsm_core::*;
use std::time::{Duration, Instant};

/// Distinct device keys: a few renewals each per run, as a fleet has, not hundreds.
const CSRS: usize = 4096;
const SAMPLES: usize = 200;

/// Certificate rows `from..to` of CA 'devices', 100 holders, issued over the last days.
fn fill_sql(sqlite: bool, from: i64, to: i64) -> String {
    let now = kagi_ca::x509::unix_now();
    if sqlite {
        format!(
            "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i < {to} - 1) \
             INSERT INTO certificates (serial, ca_name, profile, subject, issued_to, not_before, not_after, der, issued_at, spki_sha256) \
             SELECT printf('7e%030x', i), 'devices', 'device', 'CN=sensor,serialNumber=F-' || i, 'default:line-' || (i % 100), \
             {now} - 86400, {now} + 31536000, zeroblob(400), {now} - 86400 + i / 20, printf('%064x', i) FROM n"
        )
    } else {
        format!(
            "INSERT INTO certificates (serial, ca_name, profile, subject, issued_to, not_before, not_after, der, issued_at, spki_sha256) \
             SELECT '7e' || lpad(to_hex(i), 30, '0'), 'devices', 'device', 'CN=sensor,serialNumber=F-' || i, 'default:line-' || (i % 100), \
             {now} - 86400, {now} + 31536000, decode(repeat('00', 400), 'hex'), {now} - 86400 + i / 20, lpad(to_hex(i), 64, '0') \
             FROM generate_series({from}::bigint, {to}::bigint - 1) AS i"
        )
    }
}

/// What the issuing transaction keeps beside the rows: the CA's count.
fn count_sql(n: i64) -> String {
    format!(
        "INSERT INTO ca_certificate_counts (ca_name, issued) VALUES ('devices', {n}) \
         ON CONFLICT (ca_name) DO UPDATE SET issued = ca_certificate_counts.issued + excluded.issued"
    )
}

fn fill(store: &StoreConfig, from: i64, to: i64) {
    let t = Instant::now();
    match store {
        StoreConfig::Sqlite(path) => {
            let mut c =
                diesel::SqliteConnection::establish(&path.to_string_lossy()).expect("sqlite");
            diesel::sql_query("PRAGMA busy_timeout = 30000")
                .execute(&mut c)
                .expect("pragma");
            diesel::sql_query(fill_sql(true, from, to))
                .execute(&mut c)
                .expect("fill");
            diesel::sql_query(count_sql(to - from))
                .execute(&mut c)
                .expect("count");
            // One transaction of a million rows leaves a WAL of that size behind, which a
            // table grown over months never has: fold it into the database first.
            diesel::sql_query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&mut c)
                .expect("checkpoint");
        }
        StoreConfig::Postgres(url) => {
            let mut c = diesel::PgConnection::establish(url).expect("postgres");
            diesel::sql_query(fill_sql(false, from, to))
                .execute(&mut c)
                .expect("fill");
            diesel::sql_query(count_sql(to - from))
                .execute(&mut c)
                .expect("count");
            diesel::sql_query("ANALYZE certificates")
                .execute(&mut c)
                .expect("analyze");
        }
    }
    println!(
        "  (wrote {} certificate rows in {:.1} s)",
        to - from,
        t.elapsed().as_secs_f64()
    );
}

/// p50, p99, max in ms of `SAMPLES` calls of `op`.
fn timed(op: impl Fn()) -> (f64, f64, f64) {
    op();
    let mut ms: Vec<f64> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            op();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
    )
}

fn row(name: &str, (p50, p99, max): (f64, f64, f64)) {
    println!("  {name:<52} p50 {p50:>7.3} ms  p99 {p99:>7.3} ms  max {max:>8.3} ms");
}

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 3);
    let large: i64 = kagi_benches::env("KAGI_BENCH_CERTS", 1_000_000);
    let dur = Duration::from_secs(secs);
    let cores = kagi_benches::cores();
    println!("kagi growth benchmark: {cores} cores, {secs} s per issuance row, {SAMPLES} calls per lookup\n");
    let csrs = kagi_benches::device_csrs(CSRS);
    let profiles = Profiles::builtin().expect("profiles");
    let device = profiles.get("device").expect("device profile");
    let urls = PublicUrls::new("http://127.0.0.1:8080");
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, store) in kagi_benches::stores(dir.path()) {
        println!("-- {name}");
        let hsm = Hsm::open(HsmConfig::new(store.clone())).expect("open");
        let out = hsm.init(1, 1).expect("init");
        let s = hsm.login(&out.admin_token).expect("login");
        let spec = |n: &str| CaSpec {
            name: n.into(),
            subject: format!("CN=Bench {n}"),
            alg: Algorithm::EcP256,
            validity_days: 3650,
        };
        let _ = create_root(&hsm, &s, &spec("root"), None).expect("root");
        let _ = create_intermediate(&hsm, &s, &spec("devices"), "root", &urls, None)
            .expect("intermediate");
        let ca = Authority::load(&hsm, &s, "devices").expect("load");
        let issue = || {
            rate(64, dur, |i| {
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
            })
        };
        let lookups = |n: i64| {
            let mid = format!("7e{:030x}", n / 2);
            row(
                "re-enroll lookup (latest_certificate of a holder)",
                timed(|| {
                    let _ = hsm
                        .latest_certificate("devices", "device", "default:line-7", None)
                        .expect("latest");
                }),
            );
            row(
                "list 100, newest first (kagi ca certs)",
                timed(|| {
                    let _ = hsm
                        .list_certificates_before("devices", 100, None)
                        .expect("list");
                }),
            );
            row(
                "list 100 from a cursor in the middle",
                timed(|| {
                    let _ = hsm
                        .list_certificates_before("devices", 100, Some(&mid))
                        .expect("page");
                }),
            );
            row(
                "count of the CA's certificates (the list's total)",
                timed(|| {
                    let _ = hsm.count_certificates("devices").expect("count");
                }),
            );
            row(
                "certificate by serial (OCSP, revoke)",
                timed(|| {
                    let _ = hsm.certificate(&mid).expect("certificate");
                }),
            );
        };

        let small = 1_000;
        fill(&store, 0, small);
        println!("  at {small} certificates:");
        lookups(small);
        let small_rate = issue();
        println!("  {:<52} {small_rate:>8.0} /s", "issuance, 64 threads");
        fill(&store, small, large);
        println!("  at {large} certificates:");
        lookups(large);
        let large_rate = issue();
        println!(
            "  {:<52} {large_rate:>8.0} /s   {:.3}x the rate at {small}",
            "issuance, 64 threads",
            large_rate / small_rate
        );

        // Keys: listing at 100 and at 10,000.
        for (have, want) in [(0, 100), (100, 10_000)] {
            std::thread::scope(|sc| {
                for t in 0..16 {
                    let (hsm, s) = (&hsm, &s);
                    sc.spawn(move || {
                        for i in (have + t..want).step_by(16) {
                            hsm.create_key(
                                s,
                                &KeySpec::new(&format!("k{i:05}"), Algorithm::EcP256),
                            )
                            .expect("key");
                        }
                    });
                }
            });
            // As after the certificates' bulk fill: keys made in one burst have no planner
            // statistics yet, and PostgreSQL then sorts the whole table for a page of 100 (26 ms
            // at 10k keys) until autovacuum analyzes it, within a minute on a live server.
            if let StoreConfig::Postgres(url) = &store {
                let mut c = diesel::PgConnection::establish(url).expect("postgres");
                diesel::sql_query("ANALYZE keys")
                    .execute(&mut c)
                    .expect("analyze");
            }
            println!("  at {want} keys:");
            row(
                "GET /api/v1/keys without a cursor (its default first page of 100)",
                timed(|| {
                    let _ = hsm.list_keys_after(&s, None, Some(100)).expect("page");
                }),
            );
            row(
                "every key in one call (the console's key page; no route lists all at once)",
                timed(|| {
                    let _ = hsm.list_keys(&s).expect("list");
                }),
            );
            row(
                "100 keys from a cursor (?limit=100&after=)",
                timed(|| {
                    let _ = hsm
                        .list_keys_after(&s, Some("k00050"), Some(100))
                        .expect("page");
                }),
            );
            row(
                "one key by name",
                timed(|| {
                    let _ = hsm.key_info(&s, "k00042").expect("key");
                }),
            );
        }
        drop(ca);
        drop(hsm);
        println!();
    }
    kagi_benches::drop_bench_database();
}
