//! What witnessing costs (issue 15): P-256 signatures over HTTPS (`POST /api/v1/sign`, the real
//! `kagi serve`, real sockets) with no witnesses and with two `kagi witness serve` processes on
//! loopback (quorum 2), in the same run, rounds interleaved so a noisy neighbour hits both.
//! Each row: signatures per second, per-request p50/p99/max, and the rate as a ratio of the
//! hardware (aws-lc-rs P-256 signing on every core, measured first in this run). The issue's
//! goal compares the two configurations: with witnesses at least 0.9x the rate, and p99 at most
//! 2 ms above.
//!
//! Run: `cargo bench -p kagi-benches --bench witness_sign` (builds `target/release/kagi`);
//! KAGI_BENCH_SECS=N per row (default 5), KAGI_BENCH_ROUNDS=N (default 2).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use kagi_benches::rate;
use kagi_benches::serve::{agent, cli, kagi_binary, start, start_with, Server};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// HTTPS clients by default; KAGI_BENCH_CLIENTS=N for more (closed loop: with few clients
/// the rate follows the latency, with many it shows whether witnessing caps throughput).
const THREADS: usize = 16;

struct Witness {
    child: Child,
    flag: String,
    _dir: tempfile::TempDir,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kagi witness` of its own folder that witnesses the log with verifier key `log_key`.
fn witness(name: &str, log_key: &str) -> Witness {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("w");
    let out = Command::new(kagi_binary())
        .args(["witness", "init", "--data"])
        .arg(&data)
        .args(["--name", name])
        .output()
        .expect("kagi witness init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{name}+")))
        .expect("witness verifier key")
        .to_string();
    let mut child = Command::new(kagi_binary())
        .args(["witness", "serve", "--data"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0", "--log", log_key])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kagi witness serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(rest) = l.split("listening on ").nth(1) {
                    break rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                }
            }
            _ => panic!("kagi witness serve did not start"),
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Witness {
        child,
        flag: format!("{url}={vkey}"),
        _dir: dir,
    }
}

/// One configuration: its folder and server, a key, a client.
struct Instance {
    dir: tempfile::TempDir,
    server: Option<Server>,
    http: ureq::Agent,
    token: String,
}

impl Instance {
    fn url(&self) -> &str {
        self.server
            .as_ref()
            .map(|s| s.url.as_str())
            .unwrap_or_default()
    }
}

fn instance() -> Instance {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = start(dir.path());
    let http = agent(&dir.path().join("kagi-data/tls-ca.pem"));
    let token = std::fs::read_to_string(dir.path().join("kagi-data/admin.token"))
        .expect("admin token")
        .trim()
        .to_string();
    Instance {
        dir,
        server: Some(server),
        http,
        token,
    }
}

struct Row {
    rate: f64,
    p50: f64,
    p99: f64,
    max: f64,
    failures: u64,
}

/// `clients` clients sign for `dur`; every request's latency is kept.
fn load(i: &Instance, dur: Duration, clients: usize) -> Row {
    let url = format!("{}/api/v1/sign", i.url());
    let body = format!(r#"{{"key":"bench-p256","digest":"{}"}}"#, "ab".repeat(32));
    let auth = format!("Bearer {}", i.token);
    let l = kagi_benches::load(clients, dur, || {
        i.http
            .post(&url)
            .header("Authorization", &auth)
            .header("Content-Type", "application/json")
            .send(body.as_bytes())
            .map(|r| {
                let ok = r.status() == 200;
                ok && r.into_body().read_to_vec().is_ok()
            })
            .unwrap_or(false)
    });
    Row {
        rate: l.rate,
        p50: l.p50_ms,
        p99: l.p99_ms,
        max: l.max_ms,
        failures: l.failures,
    }
}

fn print(name: &str, r: &Row, hw: f64) {
    println!(
        "{name:<34} {:>8.0} /s  {:>6.3}x hw   p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms",
        r.rate,
        r.rate / hw,
        r.p50,
        r.p99,
        r.max
    );
    assert_eq!(r.failures, 0, "{name}: {} requests failed", r.failures);
}

fn main() {
    let secs: u64 = kagi_benches::env("KAGI_BENCH_SECS", 5);
    let rounds: usize = kagi_benches::env("KAGI_BENCH_ROUNDS", 2);
    let clients: usize = kagi_benches::env("KAGI_BENCH_CLIENTS", THREADS);
    let dur = Duration::from_secs(secs);
    let cores = kagi_benches::cores();

    // The hardware: P-256 signatures with aws-lc-rs on every core, nothing counted.
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
    let hw = rate(cores, dur, |_| {
        let _ = key.sign(&rng, b"bench");
    });
    println!(
        "kagi witnessing benchmark: {cores} cores, {clients} HTTPS clients, {secs} s per row, {rounds} rounds\n"
    );
    println!(
        "{:<34} {hw:>8.0} /s  (aws-lc-rs P-256 sign, {cores} threads)",
        "hardware"
    );

    // No witnesses.
    let plain = instance();
    cli(
        plain.dir.path(),
        plain.url(),
        &["key", "create", "--name", "bench-p256", "--alg", "ec-p256"],
    );

    // Two witnesses, quorum 2: the instance is made first (its log key names it to the
    // witnesses), then restarted with them, as an operator would.
    let mut witnessed = instance();
    cli(
        witnessed.dir.path(),
        witnessed.url(),
        &["key", "create", "--name", "bench-p256", "--alg", "ec-p256"],
    );
    let log_key = witnessed
        .http
        .get(format!("{}/log/key", witnessed.url()))
        .call()
        .expect("/log/key")
        .into_body()
        .read_to_string()
        .expect("log key")
        .trim()
        .to_string();
    drop(witnessed.server.take());
    let ws = [witness("bench-w1", &log_key), witness("bench-w2", &log_key)];
    let mut args: Vec<String> = Vec::new();
    for w in &ws {
        args.push("--witness".into());
        args.push(w.flag.clone());
    }
    args.extend(["--witness-quorum".to_string(), "2".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    witnessed.server = Some(start_with(witnessed.dir.path(), &args));

    // Warm both (TLS sessions, caches), then interleave.
    load(&plain, Duration::from_secs(1), clients);
    load(&witnessed, Duration::from_secs(1), clients);
    let (mut best_plain, mut best_witnessed): (Option<Row>, Option<Row>) = (None, None);
    for round in 1..=rounds {
        let a = load(&plain, dur, clients);
        print(&format!("round {round}: 0 witnesses"), &a, hw);
        let b = load(&witnessed, dur, clients);
        print(&format!("round {round}: 2 witnesses, quorum 2"), &b, hw);
        if best_plain.as_ref().is_none_or(|r| a.rate > r.rate) {
            best_plain = Some(a);
        }
        if best_witnessed.as_ref().is_none_or(|r| b.rate > r.rate) {
            best_witnessed = Some(b);
        }
    }
    if let (Some(a), Some(b)) = (best_plain, best_witnessed) {
        println!(
            "\nbest rounds: 2 witnesses / 0 witnesses = {:.3}x the rate (goal >= 0.9); p99 {:+.2} ms (goal <= +2 ms)",
            b.rate / a.rate,
            b.p99 - a.p99
        );
    }
    drop(plain);
    drop(ws);
}
