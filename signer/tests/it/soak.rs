//! Issue 16, acceptance 3: a bounded soak over real sockets. 64 clients on 8 tokens sign with
//! 4 keys for longer than the login cache's lifetime (60 s), so every token's cached login
//! ages out (or is refreshed) while its clients keep signing. Nothing here is timed: it
//! asserts that no request failed and that every use was counted once, in the keys' counters,
//! in the audit log and in the transparency log. Timing lives in `benches/`.

use crate::common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 64;
const TOKENS: usize = 8;
const KEYS: usize = 4;
/// Past the login cache's 60 s lifetime, with room for the background refreshes at 30-45 s.
const RUN: Duration = Duration::from_secs(70);
/// Each client's pause between requests: a steady load, not a benchmark, so the suite's other
/// tests keep their share of the machine.
const PAUSE: Duration = Duration::from_millis(100);

fn token_of(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("kagi_"))
        .unwrap_or_else(|| panic!("no token in {out}"))
        .to_string()
}

#[test]
fn sixty_four_clients_sign_across_a_login_cache_expiry_without_error_or_lost_use() {
    let server = Server::start();
    let names: Vec<String> = (0..TOKENS).map(|n| format!("soak-{n}")).collect();
    let tokens: Vec<String> = names
        .iter()
        .map(|n| {
            token_of(&server.kagi_ok(&["identity", "create", "--name", n, "--kind", "pipeline"]))
        })
        .collect();
    let allowed: Vec<(&str, &str)> = names.iter().map(|n| ("pipeline", n.as_str())).collect();
    server.allow(&allowed);
    for k in 0..KEYS {
        server.kagi_ok(&[
            "key",
            "create",
            "--name",
            &format!("soak-key-{k}"),
            "--alg",
            "ec-p256",
        ]);
    }
    let (_, tlog_before) = log_sizes(&server);

    let failed = AtomicBool::new(false);
    let started = Instant::now();
    // Per client: (key index, signatures granted, failures seen).
    let results: Vec<(usize, u64, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let (server, tokens, failed) = (&server, &tokens, &failed);
                s.spawn(move || {
                    let http = server.http();
                    let key = c % KEYS;
                    let token = &tokens[c % TOKENS];
                    let (mut ok, mut errors) = (0u64, Vec::new());
                    let mut n = 0u64;
                    while started.elapsed() < RUN && !failed.load(Ordering::Relaxed) {
                        n += 1;
                        let digest = format!("{:016x}{:016x}{:032x}", c, n, 0);
                        let body = format!(r#"{{"key":"soak-key-{key}","digest":"{digest}"}}"#);
                        let r = http.request(
                            "POST",
                            "/api/v1/sign",
                            Some(token),
                            Some(body.as_bytes()),
                        );
                        if r.status == 200 {
                            ok += 1;
                        } else {
                            errors.push(format!("client {c}: {} {}", r.status, r.body));
                            failed.store(true, Ordering::Relaxed);
                        }
                        std::thread::sleep(PAUSE);
                    }
                    (key, ok, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let errors: Vec<&String> = results.iter().flat_map(|r| r.2.iter()).collect();
    assert!(
        errors.is_empty(),
        "requests failed during the soak: {errors:?}"
    );
    assert!(started.elapsed() >= RUN, "the soak stopped early");

    // Every granted signature was counted exactly once on its key...
    let keys = server
        .http()
        .request("GET", "/api/v1/keys", Some(&server.token()), None)
        .json();
    let mut total = 0;
    for k in 0..KEYS {
        let granted: u64 = results.iter().filter(|r| r.0 == k).map(|r| r.1).sum();
        assert!(granted > 0, "key {k} was never used");
        let name = format!("soak-key-{k}");
        let row = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name.as_str() || v["label"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not listed: {keys}"));
        assert_eq!(row["usage_count"].as_u64(), Some(granted), "{name}: {row}");
        total += granted;
    }
    // ...appended once to the transparency log...
    let (_, tlog_after) = log_sizes(&server);
    assert_eq!(tlog_after - tlog_before, total as i64);
    // ...and audited once, in a log that verifies.
    let (mut signs, mut from) = (0u64, 0i64);
    loop {
        let page = server
            .http()
            .request(
                "GET",
                &format!("/api/v1/audit?from={from}&limit=10000"),
                Some(&server.token()),
                None,
            )
            .json();
        let page = page.as_array().unwrap();
        let Some(last) = page.last() else { break };
        from = last["seq"].as_i64().unwrap() + 1;
        signs += page
            .iter()
            .filter(|e| {
                e["action"] == "key.use"
                    && e["outcome"] == "ok"
                    && e["detail"]
                        .as_str()
                        .is_some_and(|d| d.contains("\"soak-key-"))
            })
            .count() as u64;
    }
    assert_eq!(signs, total);
    let verified = server.kagi_ok(&["audit", "verify"]);
    assert!(verified.starts_with("audit log OK:"), "{verified}");
}

/// (audit log size, transparency log size).
fn log_sizes(server: &Server) -> (i64, i64) {
    let http = server.http();
    let r = http.request(
        "GET",
        "/api/v1/audit/checkpoint",
        Some(&server.token()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let audit = r.json()["tree_size"].as_i64().unwrap();
    let r = http.request("GET", "/log/checkpoint", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    (audit, r.body.lines().nth(1).unwrap().parse().unwrap())
}
