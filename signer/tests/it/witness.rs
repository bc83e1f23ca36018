//! `kagi witness`: the real binary as a witness process, spoken to over real sockets with the
//! C2SP tlog-witness protocol. The log is a test one (a Merkle tree in memory, checkpoints
//! signed by a test Ed25519 key); the witness, its database and the protocol are the real ones.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use kagi_tlog::merkle::leaf_hash;
use kagi_tlog::note::{open_cosignature, parse_cosignature_verifier_key};
use kagi_tlog::witness::{AddCheckpoint, WitnessAnswer, CONFLICT_CONTENT_TYPE};
use kagi_tlog::{
    checkpoint_body, consistency_proof, root_at, sign_note, verifier_key, Hash, MemoryNodes,
};

use super::common::KAGI;

const ORIGIN: &str = "test.example/witnessed-log";

/// A test log: its key and every complete node of `n` leaves.
struct TestLog {
    key: Ed25519KeyPair,
    /// The key's PKCS#8 bytes: a fork is the same key signing another tree.
    pkcs8: Vec<u8>,
    nodes: MemoryNodes,
    origin: &'static str,
}

impl TestLog {
    fn new(n: usize, salt: &str) -> TestLog {
        TestLog::with_key(&new_pkcs8(), n, salt, ORIGIN)
    }

    fn with_key(pkcs8: &[u8], n: usize, salt: &str, origin: &'static str) -> TestLog {
        let key = Ed25519KeyPair::from_pkcs8(pkcs8).unwrap();
        let leaves: Vec<Hash> = (0..n)
            .map(|i| leaf_hash(format!("{salt} entry {i}").as_bytes()))
            .collect();
        TestLog {
            key,
            pkcs8: pkcs8.to_vec(),
            nodes: MemoryNodes::from_leaf_hashes(leaves),
            origin,
        }
    }

    fn vkey(&self) -> String {
        verifier_key(
            self.origin,
            &KeyPair::public_key(&self.key).as_ref().try_into().unwrap(),
        )
    }

    fn root(&self, size: u64) -> Hash {
        root_at(&mut self.nodes.clone(), size).unwrap()
    }

    fn note(&self, size: u64) -> String {
        sign_note(
            &checkpoint_body(self.origin, size, &self.root(size)),
            self.origin,
            &self.key,
        )
        .unwrap()
    }

    fn request(&self, old: u64, size: u64) -> AddCheckpoint {
        AddCheckpoint {
            old_size: old,
            proof: consistency_proof(&mut self.nodes.clone(), old, size).unwrap(),
            checkpoint: self.note(size),
        }
    }
}

fn new_pkcs8() -> Vec<u8> {
    Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// One `kagi witness serve` process on an OS-chosen port; killed when dropped.
struct WitnessProcess {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl WitnessProcess {
    fn start(data: &Path, logs: &[String]) -> WitnessProcess {
        let n = std::fs::read_dir(data).unwrap().count();
        let (out, log) = (
            data.join(format!("out-{n}.txt")),
            data.join(format!("err-{n}.txt")),
        );
        let mut cmd = Command::new(KAGI);
        cmd.args(["witness", "serve", "--data"])
            .arg(data)
            .args(["--listen", "127.0.0.1:0"]);
        for l in logs {
            cmd.args(["--log", l]);
        }
        let mut child = cmd
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the one line it prints once its socket is open.
        loop {
            let text = std::fs::read_to_string(&out).unwrap();
            if let Some(line) = text.lines().find(|l| l.contains("listening on http://")) {
                let addr = line
                    .split("http://")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string();
                return WitnessProcess { child, addr, log };
            }
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "kagi witness serve exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn post(&self, body: &str) -> std::io::Result<(u16, String, String)> {
        post(&self.addr, "/add-checkpoint", body)
    }

    fn add(&self, req: &AddCheckpoint) -> WitnessAnswer {
        let (status, _, body) = self.post(&req.to_body()).unwrap();
        WitnessAnswer::from_response(status, &body)
    }

    /// The witness's saved size of `log`, read the protocol's way: an old size of 0 with a
    /// checkpoint it cannot take is answered 409 with its size.
    fn size_of(&self, log: &TestLog, largest: u64) -> u64 {
        let req = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: log.note(largest),
        };
        match self.add(&req) {
            WitnessAnswer::Conflict(n) => n,
            other => panic!(
                "the size probe was answered {other:?}; the witness logged:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            ),
        }
    }
}

impl Drop for WitnessProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, content type, body).
fn post(addr: &str, path: &str, body: &str) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete HTTP answer")
    })?;
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((status, ctype, body.to_string()))
}

/// `kagi witness init`: the data folder and the printed verifier key.
fn init(name: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("w");
    let out = Command::new(KAGI)
        .args(["witness", "init", "--data"])
        .arg(&data)
        .args(["--name", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (dir, vkey)
}

fn data(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("w")
}

/// Verify a 200's cosignature lines against the witness's verifier key and the note.
fn check_cosigned(answer: &WitnessAnswer, note: &str, witness_vkey: &str) {
    let WitnessAnswer::Cosigned(lines) = answer else {
        panic!("expected a cosignature, got {answer:?}");
    };
    let (name, pk) = parse_cosignature_verifier_key(witness_vkey).unwrap();
    open_cosignature(&format!("{note}{lines}"), &name, &pk).unwrap();
}

/// A small deterministic generator (xorshift): each thread its own sequence of sizes.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Acceptance 5 of issue 15: 32 concurrent requests with different old sizes never leave the
/// witness below a size it acknowledged. Every acknowledged step must link to the one before
/// (its old size is the previous acknowledged size): two acknowledgements from the same old
/// size would be the spec's race, a rollback.
#[test]
fn concurrent_add_checkpoints_never_roll_the_witness_back() {
    let (dir, wkey) = init("witness.test/concurrent");
    let log = Arc::new(TestLog::new(2500, "concurrent"));
    let w = Arc::new(WitnessProcess::start(&data(&dir), &[log.vkey()]));
    check_cosigned(&w.add(&log.request(0, 1)), &log.note(1), &wkey);

    const THREADS: u64 = 32;
    const ROUNDS: usize = 12;
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let acks: Arc<Mutex<Vec<(u64, u64)>>> = Arc::new(Mutex::new(vec![(0, 1)]));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (log, w, barrier, acks, wkey) = (
                log.clone(),
                w.clone(),
                barrier.clone(),
                acks.clone(),
                wkey.clone(),
            );
            std::thread::spawn(move || {
                let mut rng =
                    0x9E37_79B9_7F4A_7C15u64 ^ (t + 1).wrapping_mul(0x2545_F491_4F6C_DD1D);
                // Each thread starts from its own idea of the witness's size: mostly wrong.
                let mut known = t % 4;
                let mut statuses = Vec::new();
                barrier.wait();
                for _ in 0..ROUNDS {
                    let size = (known + 1 + next(&mut rng) % 6).min(2500);
                    let req = log.request(known, size);
                    let answer = w.add(&req);
                    statuses.push(answer.status());
                    match &answer {
                        WitnessAnswer::Cosigned(_) => {
                            check_cosigned(&answer, &req.checkpoint, &wkey);
                            acks.lock().unwrap().push((known, size));
                            known = size;
                        }
                        WitnessAnswer::Conflict(n) => {
                            assert_ne!(
                                *n, known,
                                "a 409 must name another size than the old one sent"
                            );
                            known = *n;
                        }
                        other => panic!("thread {t}: unexpected answer {other:?}"),
                    }
                }
                statuses
            })
        })
        .collect();
    let statuses: Vec<u16> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert_eq!(statuses.len(), (THREADS as usize) * ROUNDS);
    let mut acks = acks.lock().unwrap().clone();
    acks.sort();
    assert!(
        acks.len() > 5 && statuses.contains(&409),
        "the run should mix acknowledgements and conflicts: {} acks, statuses {statuses:?}",
        acks.len()
    );

    let final_size = w.size_of(&log, 2500);
    let largest = acks.iter().map(|a| a.1).max().unwrap();
    assert_eq!(
        final_size, largest,
        "the witness is not at the largest size it acknowledged"
    );
    // The acknowledgements form one chain 0 -> 1 -> ... -> final: each old size is the size
    // acknowledged just before, and none is acknowledged twice.
    let mut at = 0;
    for (old, new) in &acks {
        assert_eq!(*old, at, "acknowledgements {acks:?} do not form one chain");
        assert!(new > old);
        at = *new;
    }
    assert_eq!(at, final_size);

    // The data folder's own view agrees.
    let out = Command::new(KAGI)
        .args(["witness", "status", "--data"])
        .arg(data(&dir))
        .output()
        .unwrap();
    let status = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        status.trim(),
        format!(
            "{ORIGIN} {final_size} {}",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                log.root(final_size)
            )
        )
    );
}

/// A fork (the witness's size, another root) is refused with 409 and the witness's size as
/// text/x.tlog.size; a grown fork fails its proof (422); a smaller checkpoint gets 409; each
/// refusal leaves the witness where it was.
#[test]
fn forks_and_rollbacks_are_refused_with_the_spec_codes() {
    let (dir, wkey) = init("witness.test/forks");
    let log = TestLog::new(64, "genuine");
    let w = WitnessProcess::start(&data(&dir), &[log.vkey()]);
    check_cosigned(&w.add(&log.request(0, 10)), &log.note(10), &wkey);

    // The same key signs another tree: a fork.
    let fork = TestLog::with_key(&log.pkcs8, 64, "forked", ORIGIN);
    let (status, ctype, body) = w.post(&fork.request(10, 10).to_body()).unwrap();
    assert_eq!(
        (status, ctype.as_str(), body.as_str()),
        (409, CONFLICT_CONTENT_TYPE, "10\n")
    );
    let (status, _, body) = w.post(&fork.request(10, 20).to_body()).unwrap();
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("does not verify"), "{body}");
    // A wrong proof for the genuine log: 422.
    let mut req = log.request(10, 20);
    req.proof.reverse();
    assert_eq!(w.post(&req.to_body()).unwrap().0, 422);
    // A rolled-back log asks from a smaller size: 409 with the witness's size.
    assert_eq!(w.add(&log.request(5, 8)), WitnessAnswer::Conflict(10));
    assert_eq!(w.add(&log.request(0, 8)), WitnessAnswer::Conflict(10));
    // Old size above the checkpoint's: 400.
    let req = AddCheckpoint {
        old_size: 10,
        proof: vec![],
        checkpoint: log.note(8),
    };
    assert_eq!(w.post(&req.to_body()).unwrap().0, 400);
    assert_eq!(w.size_of(&log, 64), 10);
    // The genuine log goes on; the same checkpoint again is cosigned again.
    check_cosigned(&w.add(&log.request(10, 20)), &log.note(20), &wkey);
    check_cosigned(&w.add(&log.request(20, 20)), &log.note(20), &wkey);
    assert_eq!(w.size_of(&log, 64), 20);
}

/// A checkpoint under a key the witness does not know for the origin is refused with 403; an
/// origin it does not witness with 404; malformed bodies with 400; nothing changes.
#[test]
fn unknown_keys_origins_and_malformed_bodies_are_refused() {
    let (dir, _) = init("witness.test/strangers");
    let log = TestLog::new(16, "known");
    let w = WitnessProcess::start(&data(&dir), &[log.vkey()]);
    assert!(matches!(
        w.add(&log.request(0, 4)),
        WitnessAnswer::Cosigned(_)
    ));

    let stranger = TestLog::new(16, "known");
    let (status, _, body) = w.post(&stranger.request(4, 8).to_body()).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not signed by the log key"), "{body}");
    // The signature is checked before the witness takes its lock and the database's write
    // lock: with that lock held elsewhere, a stranger is still refused (a check under the lock
    // would wait for it, then fail with 500), so a flood of forged checkpoints never queues
    // the log's own requests behind a database transaction.
    {
        use diesel::connection::SimpleConnection;
        use diesel::Connection;
        let db = data(&dir).join("witness.db");
        let mut holder = diesel::SqliteConnection::establish(db.to_str().unwrap()).unwrap();
        holder
            .batch_execute("PRAGMA busy_timeout = 5000; BEGIN IMMEDIATE;")
            .unwrap();
        let (status, _, body) = w.post(&stranger.request(4, 8).to_body()).unwrap();
        assert_eq!(status, 403, "{body}");
        holder.batch_execute("ROLLBACK;").unwrap();
    }

    let elsewhere = TestLog::with_key(&new_pkcs8(), 16, "x", "other.example/log");
    let (status, _, body) = w.post(&elsewhere.request(0, 8).to_body()).unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(
        body.contains("does not witness the log 'other.example/log'"),
        "{body}"
    );

    for bad in [
        "".to_string(),
        "old 4\n".to_string(),
        format!("old 04\n\n{}", log.note(8)),
        format!("old 4\nnot-base64\n\n{}", log.note(8)),
        format!(
            "old 4\n{}\n{}",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64),
            log.note(8)
        ),
        "old 4\n\nno signed note here\n".to_string(),
    ] {
        let (status, _, body) = w.post(&bad).unwrap();
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    let (status, _, body) = post(&w.addr, "/elsewhere", "").unwrap();
    assert_eq!(status, 404, "{body}");
    assert_eq!(w.size_of(&log, 16), 4);
}

/// kill -9 while a client streams checkpoints: after a restart on the same data folder the
/// witness is at least at the largest size it acknowledged, and the chain goes on from there.
#[test]
fn kill_9_loses_no_acknowledged_checkpoint() {
    let (dir, wkey) = init("witness.test/crash");
    let log = Arc::new(TestLog::new(3000, "crash"));
    let w = WitnessProcess::start(&data(&dir), &[log.vkey()]);
    let addr = w.addr.clone();
    let acked = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let client = {
        let (log, acked, sent, wkey) = (log.clone(), acked.clone(), sent.clone(), wkey.clone());
        std::thread::spawn(move || {
            let mut size = 0;
            while size < 3000 {
                let req = log.request(size, size + 1);
                sent.store(size + 1, Ordering::SeqCst);
                let Ok((status, _, body)) = post(&addr, "/add-checkpoint", &req.to_body()) else {
                    return;
                };
                let answer = WitnessAnswer::from_response(status, &body);
                check_cosigned(&answer, &req.checkpoint, &wkey);
                size += 1;
                acked.store(size, Ordering::SeqCst);
            }
        })
    };
    while acked.load(Ordering::SeqCst) < 40 {
        std::thread::yield_now();
    }
    let mut w = w;
    w.child.kill().unwrap(); // SIGKILL
    w.child.wait().unwrap();
    client.join().unwrap();
    let acked = acked.load(Ordering::SeqCst);
    let sent = sent.load(Ordering::SeqCst);
    assert!(acked < 3000, "the client finished before the kill");

    let w2 = WitnessProcess::start(&data(&dir), &[log.vkey()]);
    let size = w2.size_of(&log, 3000);
    assert!(
        size >= acked && size <= sent,
        "after kill -9 the witness is at {size}; it had acknowledged {acked} and been sent {sent}"
    );
    check_cosigned(
        &w2.add(&log.request(size, size + 5)),
        &log.note(size + 5),
        &wkey,
    );
    drop(w);
}

/// What a user gets wrong: every mistake is named with what to do, and nothing is half made.
#[test]
fn witness_cli_mistakes_are_explained() {
    let run = |args: &[&str]| {
        let out = Command::new(KAGI).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (dir, vkey) = init("witness.test/cli");
    let d = data(&dir);
    let ds = d.to_str().unwrap();
    assert!(vkey.starts_with("witness.test/cli+"), "{vkey}");
    parse_cosignature_verifier_key(&vkey).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for f in ["witness-key.pem", "witness.db"] {
        let mode = std::fs::metadata(d.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is {mode:o}");
    }
    let (ok, out, _) = run(&["witness", "key", "--data", ds]);
    assert!(ok);
    assert_eq!(out.trim(), vkey);

    let (ok, _, err) = run(&["witness", "init", "--data", ds, "--name", "again"]);
    assert!(!ok);
    assert!(err.contains("already a witness data folder"), "{err}");
    let (ok, out, _) = run(&["witness", "key", "--data", ds]);
    assert!(ok && out.trim() == vkey, "a refused init changed the key");

    let other = dir.path().join("bad-name");
    let (ok, _, err) = run(&[
        "witness",
        "init",
        "--data",
        other.to_str().unwrap(),
        "--name",
        "has space",
    ]);
    assert!(!ok && err.contains("cannot name a witness"), "{err}");
    assert!(!other.exists(), "a refused init left a folder behind");

    let missing = dir.path().join("missing");
    let (ok, _, err) = run(&["witness", "key", "--data", missing.to_str().unwrap()]);
    assert!(!ok && err.contains("kagi witness init"), "{err}");
    let (ok, _, err) = run(&[
        "witness",
        "serve",
        "--data",
        missing.to_str().unwrap(),
        "--log",
        "x",
    ]);
    assert!(!ok && err.contains("not a folder"), "{err}");

    let (ok, _, err) = run(&["witness", "serve", "--data", ds, "--log", "not-a-key"]);
    assert!(
        !ok && err.contains("not an Ed25519 verifier key") && err.contains("/log/key"),
        "{err}"
    );
    let (ok, _, err) = run(&["witness", "serve", "--data", ds]);
    assert!(!ok && err.contains("no log to witness"), "{err}");
    let (ok, _, err) = run(&["witness", "serve", "--data", ds, "--log", &vkey]);
    assert!(
        !ok && err.contains("not an Ed25519 verifier key"),
        "a cosignature key is not a log key: {err}"
    );

    std::fs::write(d.join("witness-key.pem"), "garbage").unwrap();
    let (ok, _, err) = run(&["witness", "key", "--data", ds]);
    assert!(!ok && err.contains("not an Ed25519 private key"), "{err}");
}
