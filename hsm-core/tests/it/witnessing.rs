//! The release gate against witnesses that run the C2SP tlog-witness check
//! (`kagi_tlog::witness::check_add_checkpoint`, the one `kagi witness serve` runs) in this
//! process, with their state in memory: what hsm-core decides from their answers. The HTTP
//! witnesses, `kagi serve` and `kagi sign` are tested with real processes in
//! `signer/tests/it/witnessed.rs`.

use kagi_testkit::store as common;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use common::*;
use kagi_hsm_core::witnessing::{AddCheckpoint, Witness, WitnessAnswer};
use kagi_hsm_core::*;
use kagi_tlog::witness::check_add_checkpoint;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A witness: its key, its latest checkpoint of the log, and whether it answers.
struct MemWitness {
    name: String,
    key: Ed25519KeyPair,
    log_key: [u8; 32],
    latest: Mutex<Option<(u64, kagi_tlog::Hash)>>,
    down: AtomicBool,
    /// Milliseconds each request takes before it is checked (a network and a disk).
    delay_ms: AtomicU64,
}

impl MemWitness {
    fn new(name: &str, log_key: [u8; 32]) -> Arc<MemWitness> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Arc::new(MemWitness {
            name: name.into(),
            key: Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap(),
            log_key,
            latest: Mutex::new(None),
            down: AtomicBool::new(false),
            delay_ms: AtomicU64::new(0),
        })
    }
}

impl Witness for MemWitness {
    fn name(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> [u8; 32] {
        self.key.public_key().as_ref().try_into().unwrap()
    }

    fn add_checkpoint(&self, req: &AddCheckpoint) -> Result<WitnessAnswer, String> {
        if self.down.load(Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        std::thread::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)));
        // Check and save under one lock, as the spec asks.
        let mut latest = self.latest.lock().unwrap();
        match check_add_checkpoint(req, kagi_tlog::ORIGIN, &self.log_key, *latest) {
            Ok(acc) => {
                *latest = Some((acc.size, acc.root));
                let line = kagi_tlog::cosign(&acc.text, &self.name, 1_700_000_000, &self.key)
                    .map_err(|e| e.to_string())?;
                Ok(WitnessAnswer::Cosigned(line))
            }
            Err(answer) => Ok(answer),
        }
    }
}

fn req(i: u64) -> SignRequest {
    SignRequest {
        digest_alg: None,
        digest: digest_of(i),
        padding: RsaPadding::Pkcs1v15,
    }
}

fn open_witnessed(
    config: StoreConfig,
    witnesses: &[&Arc<MemWitness>],
    quorum: usize,
    timeout: Duration,
    share: &str,
    token: &str,
) -> (Hsm, Session) {
    let mut cfg = HsmConfig::new(config);
    let list: Vec<Arc<dyn Witness>> = witnesses
        .iter()
        .map(|w| (*w).clone() as Arc<dyn Witness>)
        .collect();
    cfg.witnesses = Some(WitnessSet::new(list, quorum, timeout).unwrap());
    let hsm = Hsm::open(cfg).unwrap();
    assert!(hsm.unseal(share).unwrap().unsealed);
    let s = hsm.login(token).unwrap();
    (hsm, s)
}

fn cosigned_by(note: &str, w: &MemWitness) -> bool {
    kagi_tlog::open_cosignature(note, &w.name, &w.public_key()).is_ok()
}

/// An instance with key "k" limited to some uses, reopened with witnesses a.test and b.test
/// (quorum 2, 20 s timeout).
struct Witnessed {
    a: Arc<MemWitness>,
    b: Arc<MemWitness>,
    hsm: Hsm,
    s: Session,
    /// The instance's share and token, to reopen it (its own HSM handle is dropped).
    i: Reopen,
}

struct Reopen {
    share: String,
    token: String,
}

fn witnessed_key(store: &TestStore, limit: i64) -> Witnessed {
    let i = init(store);
    let mut spec = KeySpec::new("k", Algorithm::EcP256);
    spec.usage_limit = Some(limit);
    i.hsm.create_key(&i.admin, &spec).unwrap();
    let log_key = i.hsm.tlog_public_key().unwrap();
    drop(i.hsm);
    let a = MemWitness::new("a.test", log_key);
    let b = MemWitness::new("b.test", log_key);
    let (hsm, s) = open_witnessed(
        store.config.clone(),
        &[&a, &b],
        2,
        Duration::from_secs(20),
        &i.share,
        &i.token,
    );
    Witnessed {
        a,
        b,
        hsm,
        s,
        i: Reopen {
            share: i.share,
            token: i.token,
        },
    }
}

#[test]
fn results_wait_for_the_quorum_and_a_restored_database_releases_nothing() {
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let Witnessed { a, b, hsm, s, i } = witnessed_key(&store, 10);
        for n in 0..3 {
            let signed = hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap();
            // Released: the newest witnessed checkpoint covers its entry, with both
            // cosignatures.
            let cp = hsm.tlog_checkpoint(None).unwrap().unwrap();
            assert!(cp.size > signed.tlog_index.unwrap(), "{cp:?}");
            assert!(
                cosigned_by(&cp.note, &a) && cosigned_by(&cp.note, &b),
                "{}",
                cp.note
            );
            hsm.tlog_inclusion_proof(signed.tlog_index.unwrap(), cp.size)
                .unwrap();
        }
        // Every batch anchored the audit log: the log still verifies, and holds anchors.
        hsm.tlog_verify(&s).unwrap();
        let w = hsm.witness_status().unwrap();
        assert!(w.witnessed_size > 0 && w.rollback.is_none(), "{w:?}");
        if backend != Backend::Sqlite {
            continue;
        }
        // A consistent copy of the database after 3 uses, then 7 more.
        let copy = store.dir.path().join("copy.db");
        store.exec(&format!("VACUUM INTO '{}'", copy.display()));
        for n in 3..10 {
            hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap();
        }
        assert!(matches!(
            hsm.sign_op(&s, SignOp::digest("k", &req(10))),
            Err(HsmError::UsageLimitReached { .. })
        ));
        drop(hsm);
        // The copy put back: nothing is released.
        let (hsm, s) = open_witnessed(
            StoreConfig::Sqlite(copy),
            &[&a, &b],
            2,
            Duration::from_secs(20),
            &i.share,
            &i.token,
        );
        for n in 20..23 {
            let e = hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap_err();
            assert_eq!(e.code(), "rollback_detected", "{e}");
        }
        assert!(hsm.rollback_detected().unwrap().contains("restored"));
        // Changes are refused too, and the detection is in the audit log.
        let e = hsm
            .create_key(&s, &KeySpec::new("k2", Algorithm::EcP256))
            .unwrap_err();
        assert_eq!(e.code(), "rollback_detected", "{e}");
        let records = hsm.audit_records(&s, 0, 100_000).unwrap();
        assert!(
            records.iter().any(|r| r.action == "tlog.rollback_detected"),
            "no audit record of the rollback"
        );
    }
}

/// The restored database kept working without witnesses until its log was longer than the
/// witnesses' again: the witness refuses the consistency proof, which is a fork.
#[test]
fn a_fork_longer_than_the_witnessed_log_is_detected() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    i.hsm
        .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let log_key = i.hsm.tlog_public_key().unwrap();
    drop(i.hsm);
    let a = MemWitness::new("a.test", log_key);
    let (hsm, s) = open_witnessed(
        store.config.clone(),
        &[&a],
        1,
        Duration::from_secs(20),
        &i.share,
        &i.token,
    );
    let copy = store.dir.path().join("copy.db");
    store.exec(&format!("VACUUM INTO '{}'", copy.display()));
    for n in 0..5 {
        hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap();
    }
    drop(hsm);
    // The copy, served without witnesses for a while (nothing defends it then).
    let hsm = Hsm::open(HsmConfig::new(StoreConfig::Sqlite(copy.clone()))).unwrap();
    assert!(hsm.unseal(&i.share).unwrap().unsealed);
    let s = hsm.login(&i.token).unwrap();
    for n in 100..140 {
        hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap();
    }
    drop(hsm);
    let (hsm, s) = open_witnessed(
        StoreConfig::Sqlite(copy),
        &[&a],
        1,
        Duration::from_secs(20),
        &i.share,
        &i.token,
    );
    let e = hsm.sign_op(&s, SignOp::digest("k", &req(200))).unwrap_err();
    assert_eq!(e.code(), "rollback_detected", "{e}");
    assert!(
        hsm.rollback_detected()
            .unwrap()
            .contains("consistency proof"),
        "{:?}",
        hsm.rollback_detected()
    );
}

#[test]
fn an_unavailable_witness_withholds_results_and_each_use_counts_once() {
    let store = TestStore::new(Backend::Sqlite);
    let i = init(&store);
    i.hsm
        .create_key(&i.admin, &KeySpec::new("k", Algorithm::EcP256))
        .unwrap();
    let log_key = i.hsm.tlog_public_key().unwrap();
    drop(i.hsm);
    let a = MemWitness::new("a.test", log_key);
    let b = MemWitness::new("b.test", log_key);
    let c = MemWitness::new("c.test", log_key);
    let (hsm, s) = open_witnessed(
        store.config.clone(),
        &[&a, &b],
        2,
        Duration::from_secs(1),
        &i.share,
        &i.token,
    );
    hsm.sign_op(&s, SignOp::digest("k", &req(0))).unwrap();
    b.down.store(true, Ordering::SeqCst);
    for n in 1..3 {
        let e = hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap_err();
        assert_eq!(e.code(), "witness_unavailable", "{e}");
        assert!(e.to_string().contains("b.test"), "{e}");
    }
    b.down.store(false, Ordering::SeqCst);
    // The next quorum releases; the worker retries with back-off (at most 2 s), within the
    // caller's wait only once it answers again, so the caller retries as a client would.
    let mut released = None;
    for n in 3..60 {
        match hsm.sign_op(&s, SignOp::digest("k", &req(n))) {
            Ok(signed) => {
                released = Some(signed);
                break;
            }
            Err(e) => assert_eq!(e.code(), "witness_unavailable", "{e}"),
        }
    }
    let signed = released.expect("no release after the witness came back");
    // Every committed use counted once, withheld ones included.
    let key = hsm.key_info(&s, "k").unwrap();
    assert_eq!(key.usage_count, signed.usage_count);
    assert!(signed.usage_count >= 4, "{}", signed.usage_count);
    drop(hsm);
    // 2 of 3 with one down: signing goes on.
    c.down.store(true, Ordering::SeqCst);
    let (hsm, s) = open_witnessed(
        store.config.clone(),
        &[&a, &b, &c],
        2,
        Duration::from_secs(20),
        &i.share,
        &i.token,
    );
    for n in 100..103 {
        hsm.sign_op(&s, SignOp::digest("k", &req(n))).unwrap();
    }
}

/// Many callers at once, so witnessing rounds fall due while batches are being committed and
/// more uses are queued (the gate then waits for those batches): every result comes back only
/// once both witnesses hold a checkpoint covering it, and the key's limit holds exactly. The
/// witnesses take 20 ms a request, so a result released early would be seen before they
/// saved its checkpoint.
#[test]
fn concurrent_uses_are_released_under_the_quorum_and_counted_exactly() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 25;
    const LIMIT: i64 = 150;
    for backend in BACKENDS {
        let store = TestStore::new(backend);
        let Witnessed { a, b, hsm, s, .. } = witnessed_key(&store, LIMIT);
        a.delay_ms.store(20, Ordering::SeqCst);
        b.delay_ms.store(20, Ordering::SeqCst);
        let witnessed = |w: &MemWitness| w.latest.lock().unwrap().map_or(0, |(size, _)| size);
        let (released, refused) = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (hsm, s, a, b) = (&hsm, &s, &a, &b);
                    scope.spawn(move || {
                        let (mut released, mut refused) = (0i64, 0i64);
                        for n in 0..PER_THREAD {
                            match hsm.sign_op(s, SignOp::digest("k", &req(t * 1000 + n))) {
                                Ok(signed) => {
                                    let index = signed.tlog_index.unwrap() as u64;
                                    assert!(
                                        witnessed(a) > index && witnessed(b) > index,
                                        "entry {index} released before both witnesses held it ({} and {})",
                                        witnessed(a),
                                        witnessed(b)
                                    );
                                    released += 1;
                                }
                                Err(HsmError::UsageLimitReached { .. }) => refused += 1,
                                Err(e) => panic!("{e}"),
                            }
                        }
                        (released, refused)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(r, f), (r2, f2)| (r + r2, f + f2))
        });
        assert_eq!(released, LIMIT, "{backend:?}");
        assert_eq!(
            refused,
            (THREADS * PER_THREAD) as i64 - LIMIT,
            "{backend:?}"
        );
        assert_eq!(hsm.key_info(&s, "k").unwrap().usage_count, LIMIT);
        hsm.tlog_verify(&s).unwrap();
    }
}
