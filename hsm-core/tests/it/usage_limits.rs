//! Invariant 2: a key with limit N is used at most N times, under concurrency across processes,
//! across SIGKILL, and when an old copy of its row is put back.

use kagi_testkit::store as common;

use common::*;
use kagi_hsm_core::*;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn req(digest: Vec<u8>) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest,
        padding: RsaPadding::Pkcs1v15,
    }
}

/// Worker body (runs in a child process): sign with `KAGI_KEY` from `KAGI_THREADS` threads until
/// the limit is reached, appending "digest signature" lines to `KAGI_OUT` as results arrive.
fn worker() {
    let (hsm, session) = common::worker_login();
    let key = std::env::var("KAGI_KEY").unwrap();
    let threads: usize = std::env::var("KAGI_THREADS").unwrap().parse().unwrap();
    let out = std::env::var("KAGI_OUT").unwrap();
    if let Ok(go) = std::env::var("KAGI_START_FILE") {
        // Say we are ready (unsealed, logged in), then wait for the start signal, so both
        // processes really race for the same uses.
        std::fs::write(format!("{out}.ready"), b"").unwrap();
        while !std::path::Path::new(&go).exists() {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let file = Arc::new(std::sync::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out)
            .unwrap(),
    ));
    let counter = Arc::new(AtomicU64::new(0));
    let pid = std::process::id() as u64;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (hsm, session, key, file, counter) = (
                hsm.clone(),
                session.clone(),
                key.clone(),
                file.clone(),
                counter.clone(),
            );
            std::thread::spawn(move || loop {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let d = digest_of((pid << 32) | n);
                match hsm.sign(&session, &key, &req(d.clone())) {
                    Ok(sig) => {
                        let mut f = file.lock().unwrap();
                        writeln!(f, "{} {}", hex::encode(&d), hex::encode(&sig)).unwrap();
                    }
                    Err(e) if e.code() == "usage_limit_reached" => return,
                    Err(e) => panic!("unexpected error: {e}"),
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // Every thread's last attempt was refused; attempts = counter value.
    std::fs::write(
        format!("{out}.tries"),
        counter.load(Ordering::SeqCst).to_string(),
    )
    .unwrap();
}

#[test]
fn worker_entry() {
    if std::env::var("KAGI_WORKER").is_ok() {
        worker();
    }
}

fn read_sigs(path: &std::path::Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        // A line cut short by SIGKILL is not a signature anyone received.
        .filter_map(|l| {
            let (a, b) = l.split_once(' ')?;
            Some((hex::decode(a).ok()?, hex::decode(b).ok()?))
        })
        .collect()
}

fn worker_env(
    store: &TestStore,
    i: &Instance,
    key: &str,
    threads: usize,
    out: &std::path::Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("KAGI_WORKER", "1".into()),
        ("KAGI_STORE_URL", store.url()),
        ("KAGI_SHARE", i.share.clone()),
        ("KAGI_TOKEN", i.token.clone()),
        ("KAGI_KEY", key.into()),
        ("KAGI_THREADS", threads.to_string()),
        ("KAGI_OUT", out.to_string_lossy().into_owned()),
    ]
}

/// Count the valid, distinct signatures among `sigs`.
fn count_valid(i: &Instance, key: &str, sigs: &[(Vec<u8>, Vec<u8>)]) -> usize {
    let mut seen = std::collections::HashSet::new();
    sigs.iter()
        .filter(|(d, s)| {
            seen.insert(d.clone()) && i.hsm.verify(&i.admin, key, &req(d.clone()), s).unwrap()
        })
        .count()
}

#[test]
fn sixty_four_threads_in_two_processes_get_exactly_the_limit() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let mut spec = KeySpec::new("hammer", Algorithm::EcP256);
        spec.usage_limit = Some(1000);
        i.hsm.create_key(&i.admin, &spec).unwrap();
        let go = store.dir.path().join("go");
        let outs: Vec<_> = (0..2)
            .map(|n| store.dir.path().join(format!("out{n}")))
            .collect();
        let mut children: Vec<_> = outs
            .iter()
            .map(|o| {
                let mut env = worker_env(&store, &i, "hammer", 32, o);
                env.push(("KAGI_START_FILE", go.to_string_lossy().into_owned()));
                spawn_worker("usage_limits::worker_entry", &env)
            })
            .collect();
        let t0 = std::time::Instant::now();
        while !outs
            .iter()
            .all(|o| std::path::Path::new(&format!("{}.ready", o.display())).exists())
        {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "workers never got ready"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(&go, b"go").unwrap();
        for c in children.iter_mut() {
            assert!(
                c.wait().unwrap().success(),
                "a worker failed on {backend:?}"
            );
        }
        let all: Vec<_> = outs.iter().flat_map(|o| read_sigs(o)).collect();
        let per: Vec<usize> = outs.iter().map(|o| read_sigs(o).len()).collect();
        assert_eq!(
            count_valid(&i, "hammer", &all),
            1000,
            "{backend:?}: per process {per:?}"
        );
        assert_eq!(all.len(), 1000, "{backend:?}");
        let tries: Vec<u64> = outs
            .iter()
            .map(|o| {
                std::fs::read_to_string(format!("{}.tries", o.display()))
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect();
        // Both processes raced for the uses. On PostgreSQL both also win some; on SQLite one
        // process can hold the write lock for the whole run while the other's busy handler
        // sleeps (SQLite is the single-process default; replicas use PostgreSQL).
        assert!(
            tries.iter().all(|&n| n >= 32),
            "{backend:?}: attempts per process {tries:?}"
        );
        if backend == Backend::Postgres {
            assert!(
                per.iter().all(|&n| n > 0),
                "both processes must have signed: {per:?}"
            );
        }
        assert_eq!(
            i.hsm.key_info(&i.admin, "hammer").unwrap().usage_count,
            1000
        );
        let uses = i
            .hsm
            .audit_records(&i.admin, 0, 10_000)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == "key.use" && e.outcome == "ok")
            .count();
        assert_eq!(uses, 1000, "every use has exactly one audit record");
        i.hsm.audit_verify(&i.admin).unwrap();
        eprintln!("{backend:?}: 1000 signatures split {per:?} between the two processes ({tries:?} attempts)");
    }
}

#[test]
fn sigkill_while_signing_never_grants_an_extra_use() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let limit = 2000;
        let mut spec = KeySpec::new("victim", Algorithm::EcP256);
        spec.usage_limit = Some(limit);
        i.hsm.create_key(&i.admin, &spec).unwrap();
        let mut outs = Vec::new();
        for round in 0..8u64 {
            let out = store.dir.path().join(format!("kill{round}"));
            let mut child = spawn_worker(
                "usage_limits::worker_entry",
                &worker_env(&store, &i, "victim", 8, &out),
            );
            // Wait until signatures flow, then kill at a different moment each round.
            let t0 = std::time::Instant::now();
            while read_sigs(&out).is_empty() && t0.elapsed() < Duration::from_secs(30) {
                std::thread::sleep(Duration::from_millis(1));
            }
            std::thread::sleep(Duration::from_millis(3 + 11 * round));
            unsafe_free_kill(&mut child);
            eprintln!(
                "{backend:?}: round {round} killed after {} signatures",
                read_sigs(&out).len()
            );
            outs.push(out);
        }
        // A last worker finishes the key off.
        let out = store.dir.path().join("final");
        let mut child = spawn_worker(
            "usage_limits::worker_entry",
            &worker_env(&store, &i, "victim", 8, &out),
        );
        assert!(child.wait().unwrap().success());
        outs.push(out);
        let all: Vec<_> = outs.iter().flat_map(|o| read_sigs(o)).collect();
        let valid = count_valid(&i, "victim", &all);
        assert!(
            valid as i64 <= limit,
            "{backend:?}: {valid} valid signatures for a limit of {limit}"
        );
        let info = i.hsm.key_info(&i.admin, "victim").unwrap();
        assert_eq!(info.usage_count, limit);
        assert_eq!(
            i.hsm
                .sign(&i.admin, "victim", &req(digest_of(1)))
                .unwrap_err()
                .code(),
            "usage_limit_reached"
        );
        i.hsm.audit_verify(&i.admin).unwrap();
        eprintln!(
            "{backend:?}: {valid} signatures delivered, {} uses wasted by SIGKILL",
            limit - valid as i64
        );
    }
}

/// SIGKILL through std (Child::kill sends SIGKILL on Unix).
fn unsafe_free_kill(child: &mut std::process::Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn restoring_an_old_key_row_does_not_restore_uses() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let i = init(&store);
        let mut spec = KeySpec::new("k", Algorithm::EcP256);
        spec.usage_limit = Some(10);
        i.hsm.create_key(&i.admin, &spec).unwrap();
        for n in 0..3 {
            i.hsm.sign(&i.admin, "k", &req(digest_of(n))).unwrap();
        }
        store.exec("CREATE TABLE snap AS SELECT * FROM keys WHERE label = 'k'");
        for n in 3..7 {
            i.hsm.sign(&i.admin, "k", &req(digest_of(n))).unwrap();
        }
        let restore = || {
            store.exec("DELETE FROM keys WHERE label = 'k'");
            store.exec("INSERT INTO keys SELECT * FROM snap");
        };
        // While the process runs: it knows 7 uses are spent.
        restore();
        let mut ok = 0;
        for n in 100..120 {
            if i.hsm.sign(&i.admin, "k", &req(digest_of(n))).is_ok() {
                ok += 1;
            }
        }
        assert_eq!(ok, 3, "{backend:?}: only the 3 unspent uses remain");
        // After a restart: the audit log knows all 10 are spent.
        restore();
        let (hsm2, s2) = reopen(&store, &i.share, &i.token);
        assert_eq!(hsm2.key_info(&s2, "k").unwrap().usage_count, 10);
        assert_eq!(
            hsm2.sign(&s2, "k", &req(digest_of(200)))
                .unwrap_err()
                .code(),
            "usage_limit_reached"
        );
        let events = hsm2.audit_records(&s2, 0, 1000).unwrap();
        assert!(events
            .iter()
            .any(|e| e.action == "key.counter_rollback_detected"));
        hsm2.audit_verify(&s2).unwrap();

        // A restored row of a destroyed key does not bring the key back.
        i.hsm
            .create_key(&i.admin, &KeySpec::new("gone", Algorithm::EcP256))
            .unwrap();
        store.exec("CREATE TABLE snap2 AS SELECT * FROM keys WHERE label = 'gone'");
        i.hsm.destroy_key(&i.admin, "gone").unwrap();
        store.exec("DELETE FROM keys WHERE label = 'gone'");
        store.exec("INSERT INTO keys SELECT * FROM snap2");
        let (hsm3, s3) = reopen(&store, &i.share, &i.token);
        assert_eq!(
            hsm3.sign(&s3, "gone", &req(digest_of(1)))
                .unwrap_err()
                .code(),
            "key_integrity_failure"
        );
    }
}
