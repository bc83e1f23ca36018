//! The stored side of the log: appends, the database's nodes, proofs read from it, checkpoints
//! and `verify_all`, on SQLite and PostgreSQL. The pure math and the signed-note format are
//! tested in kagi-tlog against the RFC and published vectors; these tests check that what the
//! store holds and serves agrees with both.

use super::*;
use crate::store::{Store, StoreConfig};
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use diesel::{Connection, PgConnection, RunQueryDsl};
use kagi_tlog::reference::{ref_mth, ref_path, ref_subproof};
use std::time::Instant;

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A fresh store on one backend; drops its PostgreSQL database when dropped.
struct TestDb {
    store: Store,
    label: &'static str,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TestDb {
    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::sqlite_in(dir.path())).unwrap();
        TestDb {
            store,
            label: "sqlite",
            pg: None,
            _dir: dir,
        }
    }

    fn postgres() -> TestDb {
        let admin = std::env::var("KAGI_TEST_PG_URL").unwrap_or_else(|_| PG_ADMIN_URL.into());
        let mut c = PgConnection::establish(&admin).unwrap_or_else(|e| {
            panic!("PostgreSQL at {admin} is required for the tlog tests ({e}); .ci/run starts it")
        });
        let mut b = [0u8; 6];
        aws_lc_rs::rand::fill(&mut b).unwrap();
        let name = format!("kagi_tlog_{}", hex::encode(b));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .unwrap();
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
        let store = Store::open(&StoreConfig::Postgres(format!("{base}/{name}"))).unwrap();
        TestDb {
            store,
            label: "postgres",
            pg: Some((admin, name)),
            _dir: tempfile::tempdir().unwrap(),
        }
    }

    fn both() -> Vec<TestDb> {
        vec![TestDb::sqlite(), TestDb::postgres()]
    }

    fn exec(&self, sql: &str) -> usize {
        let mut c = self.store.conn().unwrap();
        diesel::sql_query(sql).execute(&mut *c).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = &self.pg {
            if let Ok(mut c) = PgConnection::establish(admin) {
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut c);
            }
        }
    }
}

/// splitmix64: reproducible test randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn body_of(i: u64) -> Vec<u8> {
    let mut b = format!("kagi-sig-v1 entry {i:08} ").into_bytes();
    b.extend((0..64u64).map(|k| (i.wrapping_mul(31).wrapping_add(k * 7) & 0xff) as u8));
    b
}

fn append_tx(c: &mut AnyConnection, bodies: &[Vec<u8>], ts: i64) -> (i64, i64, Hash) {
    c.transaction::<_, HsmError, _>(|c| append(c, bodies, ts))
        .unwrap()
}

fn key() -> Ed25519KeyPair {
    Ed25519KeyPair::generate().unwrap()
}

fn public(k: &Ed25519KeyPair) -> [u8; 32] {
    KeyPair::public_key(k).as_ref().try_into().unwrap()
}

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out[(bit / 8) % 32] ^= 1 << (bit % 8);
    out
}

// ---- Merkle math -----------------------------------------------------------------------------

/// The leaf inputs of the published RFC 6962/9162 vectors (Certificate Transparency /
/// transparency-dev test data), appended one at a time, leave exactly the complete nodes the
/// vectors list (kagi-tlog's tests pin `MemoryNodes` to those published hashes).
#[test]
fn stored_nodes_match_published_rfc6962_vectors() {
    let inputs: Vec<Vec<u8>> = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap())
    .collect();
    let leaves: Vec<Hash> = inputs.iter().map(|b| entry_hash(b)).collect();
    let mem = MemoryNodes::from_leaf_hashes(leaves.clone());
    assert_eq!(
        hex::encode(ref_mth(&leaves)),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
    for db in TestDb::both() {
        let mut c = db.store.conn().unwrap();
        for (n, input) in inputs.iter().enumerate() {
            let (first, size, root) = append_tx(&mut c, std::slice::from_ref(input), 1);
            assert_eq!((first, size), (n as i64, n as i64 + 1));
            assert_eq!(
                root,
                ref_mth(&leaves[..n + 1]),
                "{}: root {}",
                db.label,
                n + 1
            );
        }
        let mut rows: Vec<(i64, i64, Vec<u8>)> = tlog_nodes::table
            .select((tlog_nodes::level, tlog_nodes::idx, tlog_nodes::hash))
            .order((tlog_nodes::level.asc(), tlog_nodes::idx.asc()))
            .load(&mut *c)
            .unwrap();
        let mut want = Vec::new();
        for (l, level) in mem.levels().iter().enumerate() {
            for (i, h) in level.iter().enumerate() {
                want.push((l as i64, i as i64, h.to_vec()));
            }
        }
        rows.sort();
        assert_eq!(rows, want, "{}", db.label);
        assert_eq!(load_memory_nodes(&mut c).unwrap(), mem, "{}", db.label);
    }
}

/// Every inclusion proof of every tree size 1..=64 and every consistency pair, from the
/// database, equal the RFC's definitions and verify; tampered ones fail.
#[test]
fn every_proof_up_to_64_on_both_backends() {
    let bodies: Vec<Vec<u8>> = (0..64).map(body_of).collect();
    let leaves: Vec<Hash> = bodies.iter().map(|b| entry_hash(b)).collect();
    let roots: Vec<Hash> = (0..=64).map(|n| ref_mth(&leaves[..n])).collect();
    for db in TestDb::both() {
        let t0 = Instant::now();
        let mut c = db.store.conn().unwrap();
        // Uneven batches, so appends start and end at every kind of boundary.
        let mut at = 0usize;
        for len in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9].iter() {
            let (first, size, root) = append_tx(&mut c, &bodies[at..at + len], 7);
            assert_eq!(first as usize, at);
            at += len;
            assert_eq!(size as usize, at);
            assert_eq!(root, roots[at], "{}: append root at {at}", db.label);
        }
        assert_eq!(at, 64);
        assert_eq!(head(&mut c).unwrap(), (64, roots[64]));
        let mut mem = load_memory_nodes(&mut c).unwrap();
        let mut src = DbNodes::new(&mut c).unwrap();
        assert_eq!(src.size(), 64);

        let mut checked = 0usize;
        for n in 1..=64u64 {
            let root = &roots[n as usize];
            assert_eq!(
                root_at(&mut src, n).unwrap(),
                *root,
                "{}: root {n}",
                db.label
            );
            assert_eq!(root_at(&mut mem, n).unwrap(), *root);
            for i in 0..n {
                let p = inclusion_proof(&mut src, i, n).unwrap();
                assert_eq!(
                    p,
                    ref_path(i as usize, &leaves[..n as usize]),
                    "PATH({i}, {n})"
                );
                assert_eq!(p, inclusion_proof(&mut mem, i, n).unwrap());
                let leaf = &leaves[i as usize];
                assert!(verify_inclusion(leaf, i, n, &p, root), "{i} in {n}");
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j] = flip(&bad[j], (i as usize * 37 + j * 11) % 256);
                    assert!(!verify_inclusion(leaf, i, n, &bad, root));
                }
                assert!(!verify_inclusion(leaf, i + 1, n, &p, root));
                assert!(!verify_inclusion(leaf, n, n, &p, root));
                if i > 0 {
                    assert!(!verify_inclusion(leaf, i - 1, n, &p, root));
                }
                assert!(!verify_inclusion(
                    &leaves[(i as usize + 1) % 64],
                    i,
                    n,
                    &p,
                    root
                ));
                if n < 64 {
                    assert!(!verify_inclusion(
                        leaf,
                        i,
                        n + 1,
                        &p,
                        &roots[n as usize + 1]
                    ));
                }
                if !p.is_empty() {
                    assert!(!verify_inclusion(leaf, i, n, &p[..p.len() - 1], root));
                    let mut longer = p.clone();
                    longer.push(*root);
                    assert!(!verify_inclusion(leaf, i, n, &longer, root));
                }
                checked += 1;
            }
            for m in 1..=n {
                let p = consistency_proof(&mut src, m, n).unwrap();
                let want = ref_subproof(m as usize, &leaves[..n as usize], true);
                assert_eq!(p, want, "PROOF({m}, {n})");
                assert_eq!(p, consistency_proof(&mut mem, m, n).unwrap());
                let (r1, r2) = (&roots[m as usize], root);
                assert!(verify_consistency(m, n, &p, r1, r2), "{m} -> {n}");
                for j in 0..p.len() {
                    let mut bad = p.clone();
                    bad[j] = flip(&bad[j], (m as usize * 13 + j * 29) % 256);
                    assert!(!verify_consistency(m, n, &bad, r1, r2));
                }
                if m < n {
                    assert!(!verify_consistency(m, n, &p, r2, r1), "swapped roots");
                    assert!(!verify_consistency(m, n, &p[..p.len() - 1], r1, r2));
                    assert!(!verify_consistency(m, n, &[], r1, r2));
                    let r1b = &roots[m as usize + 1];
                    assert!(!verify_consistency(m + 1, n, &p, r1b, r2), "{m}+1 -> {n}");
                    if m > 1 {
                        let r1a = &roots[m as usize - 1];
                        assert!(!verify_consistency(m - 1, n, &p, r1a, r2), "{m}-1 -> {n}");
                    }
                } else {
                    assert!(!verify_consistency(m, n, &[*r1], r1, r2));
                }
                assert!(!verify_consistency(n + 1, n, &p, r1, r2));
                checked += 1;
            }
        }
        // Size 0 and sizes beyond the log.
        assert_eq!(
            consistency_proof(&mut src, 0, 64).unwrap(),
            Vec::<Hash>::new()
        );
        assert!(verify_consistency(0, 64, &[], &empty_root(), &roots[64]));
        assert!(!verify_consistency(0, 64, &[], &roots[1], &roots[64]));
        assert!(inclusion_proof(&mut src, 3, 65).is_err());
        assert!(inclusion_proof(&mut src, 64, 64).is_err());
        assert!(consistency_proof(&mut src, 3, 65).is_err());
        assert!(consistency_proof(&mut src, 9, 3).is_err());
        assert!(root_at(&mut src, 65).is_err());
        eprintln!(
            "tlog[{}]: {checked} proofs of sizes 1..=64 from the database (and memory) checked in {:?}",
            db.label,
            t0.elapsed()
        );
    }
}

// ---- a large log -------------------------------------------------------------------------------

#[test]
fn hundred_thousand_entries_on_both_backends() {
    const N: u64 = 100_000;
    let k = key();
    let pk = public(&k);
    let origin = "kagi.test/tlog";
    for db in TestDb::both() {
        let mut c = db.store.conn().unwrap();
        let mut rng = Rng(0x5eed);
        let t0 = Instant::now();
        let mut sizes = Vec::new();
        let mut at = 0u64;
        while at < N {
            let len = (400 + rng.below(201)).min(N - at);
            let bodies: Vec<Vec<u8>> = (at..at + len).map(body_of).collect();
            let ts = 1_700_000_000_000 + at as i64;
            c.transaction::<_, HsmError, _>(|c| {
                let (first, size, root) = append(c, &bodies, ts)?;
                assert_eq!(first as u64, at);
                let note = sign_note(&checkpoint_body(origin, size as u64, &root), origin, &k)?;
                store_checkpoint(c, size, ts, &note)
            })
            .unwrap();
            at += len;
            sizes.push(at);
        }
        let t_append = t0.elapsed();
        let (size, root) = head(&mut c).unwrap();
        assert_eq!(size as u64, N);

        let t1 = Instant::now();
        let mut mem = load_memory_nodes(&mut c).unwrap();
        let t_load = t1.elapsed();
        assert_eq!(root_at(&mut mem, N).unwrap(), root);

        let t2 = Instant::now();
        for i in 0..N {
            let p = inclusion_proof(&mut mem, i, N).unwrap();
            assert!(
                verify_inclusion(&entry_hash(&body_of(i)), i, N, &p, &root),
                "{}: entry {i}",
                db.label
            );
        }
        let t_all = t2.elapsed();

        let t3 = Instant::now();
        let mut src = DbNodes::new(&mut c).unwrap();
        for _ in 0..100 {
            let i = rng.below(N);
            let p = inclusion_proof(&mut src, i, N).unwrap();
            assert_eq!(p, inclusion_proof(&mut mem, i, N).unwrap());
            assert!(verify_inclusion(&entry_hash(&body_of(i)), i, N, &p, &root));
        }
        let t_db = t3.elapsed();

        let t4 = Instant::now();
        let mut pairs = 0;
        while pairs < 50 {
            let a = sizes[rng.below(sizes.len() as u64) as usize];
            let b = sizes[rng.below(sizes.len() as u64) as usize];
            let (m, n) = (a.min(b), a.max(b));
            let note_of = |c: &mut AnyConnection, s: u64| -> Hash {
                let (stored, _, note) = checkpoint(c, Some(s as i64)).unwrap().unwrap();
                assert_eq!(stored as u64, s);
                let (o, size, r) = open_checkpoint(&note, origin, &pk).unwrap();
                assert_eq!((o.as_str(), size), (origin, s));
                r
            };
            let (r1, r2) = (note_of(&mut c, m), note_of(&mut c, n));
            let mut src = DbNodes::new(&mut c).unwrap();
            let p = consistency_proof(&mut src, m, n).unwrap();
            assert_eq!(p, consistency_proof(&mut mem, m, n).unwrap());
            assert!(verify_consistency(m, n, &p, &r1, &r2), "{m} -> {n}");
            if m < n {
                assert!(!verify_consistency(m, n, &p, &r2, &r1));
            }
            pairs += 1;
        }
        let t_cons = t4.elapsed();

        let t5 = Instant::now();
        let (entries, cps) = verify_all(&mut c, origin, &pk).unwrap();
        let t_verify = t5.elapsed();
        assert_eq!((entries as u64, cps as usize), (N, sizes.len()));
        eprintln!(
            "tlog[{}] {N} entries: append {} batches (one transaction + signed checkpoint each) {t_append:?}; \
             load all nodes into memory {t_load:?}; {N} inclusion proofs + verification (memory) {t_all:?}; \
             100 inclusion proofs from the database {t_db:?}; 50 consistency proofs between signed checkpoints \
             (database + memory) {t_cons:?}; verify_all {t_verify:?}",
            db.label,
            sizes.len()
        );
    }
}

// ---- storage API -------------------------------------------------------------------------------

#[test]
fn storage_entry_points() {
    let k = key();
    let pk = public(&k);
    let origin = "kagi.test/api";
    for db in TestDb::both() {
        let mut c = db.store.conn().unwrap();
        assert_eq!(head(&mut c).unwrap(), (0, empty_root()));
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(checkpoint(&mut c, None).unwrap().is_none());
        assert_eq!(append_tx(&mut c, &[], 5), (0, 0, empty_root()));
        let empty_note = sign_note(&checkpoint_body(origin, 0, &empty_root()), origin, &k).unwrap();
        store_checkpoint(&mut c, 0, 5, &empty_note).unwrap();
        assert!(matches!(entry(&mut c, 0), Err(HsmError::NotFound(_))));

        let bodies: Vec<Vec<u8>> = (0..10).map(body_of).collect();
        let (first, size, root) = append_tx(&mut c, &bodies[..6], 1000);
        assert_eq!((first, size), (0, 6));
        let note6 = sign_note(&checkpoint_body(origin, 6, &root), origin, &k).unwrap();
        store_checkpoint(&mut c, 6, 1000, &note6).unwrap();
        // The same checkpoint again is accepted and not duplicated.
        store_checkpoint(&mut c, 6, 2000, &note6).unwrap();
        let (first, size, root10) = append_tx(&mut c, &bodies[6..], 3000);
        assert_eq!((first, size), (6, 10));
        assert_eq!(append_tx(&mut c, &[], 3001), (10, 10, root10));

        // Wrong size, a root that is not the log's, a size beyond the log: refused.
        let e = store_checkpoint(&mut c, 7, 1, &note6).unwrap_err();
        assert!(e.to_string().contains("states size 6"), "{e}");
        let forged = sign_note(&checkpoint_body(origin, 10, &root), origin, &k).unwrap();
        let e = store_checkpoint(&mut c, 10, 1, &forged).unwrap_err();
        assert!(e.to_string().contains("not the log's root"), "{e}");
        let beyond = sign_note(&checkpoint_body(origin, 11, &root10), origin, &k).unwrap();
        assert!(store_checkpoint(&mut c, 11, 1, &beyond).is_err());
        // A checkpoint for an older size is checked against the nodes.
        let r3 = root_at(&mut DbNodes::new(&mut c).unwrap(), 3).unwrap();
        let note3 = sign_note(&checkpoint_body(origin, 3, &r3), origin, &k).unwrap();
        store_checkpoint(&mut c, 3, 4000, &note3).unwrap();
        let note10 = sign_note(&checkpoint_body(origin, 10, &root10), origin, &k).unwrap();
        store_checkpoint(&mut c, 10, 3000, &note10).unwrap();

        assert_eq!(
            checkpoint(&mut c, None).unwrap(),
            Some((10, 3000, note10.clone()))
        );
        assert_eq!(checkpoint(&mut c, Some(6)).unwrap(), Some((6, 1000, note6)));
        assert_eq!(checkpoint(&mut c, Some(5)).unwrap(), None);
        assert_eq!(entry(&mut c, 7).unwrap(), (3000, bodies[7].clone()));
        assert_eq!(entry(&mut c, 0).unwrap(), (1000, bodies[0].clone()));
        let e = entry(&mut c, 10).unwrap_err();
        assert!(matches!(e, HsmError::NotFound(_)), "{e}");
        assert!(e.to_string().contains("has 10 entries"), "{e}");
        assert_eq!(verify_all(&mut c, origin, &pk).unwrap(), (10, 4));

        // An entry row that vanished is an integrity failure, not "not found".
        db.exec("DELETE FROM tlog_entries WHERE idx = 4");
        assert!(matches!(entry(&mut c, 4), Err(HsmError::Integrity(_))));
    }
}

// ---- verify_all ---------------------------------------------------------------------------------

/// A 1000-entry log in 10 batches of 100, a signed checkpoint after each.
fn build_log(db: &TestDb, k: &Ed25519KeyPair, origin: &str) {
    let mut c = db.store.conn().unwrap();
    for b in 0..10u64 {
        let bodies: Vec<Vec<u8>> = (b * 100..(b + 1) * 100).map(body_of).collect();
        c.transaction::<_, HsmError, _>(|c| {
            let (_, size, root) = append(c, &bodies, b as i64)?;
            let note = sign_note(&checkpoint_body(origin, size as u64, &root), origin, k)?;
            store_checkpoint(c, size, b as i64, &note)
        })
        .unwrap();
    }
}

#[test]
fn verify_all_names_what_was_changed() {
    let k = key();
    let pk = public(&k);
    let origin = "kagi.test/verify";
    type Case = (&'static str, &'static [&'static str], &'static str);
    let cases: &[Case] = &[
        (
            "an edited body",
            &["UPDATE tlog_entries SET body = (SELECT body FROM tlog_entries WHERE idx = 778) WHERE idx = 777"],
            "entry 777 was changed",
        ),
        (
            "a deleted leaf node",
            &["DELETE FROM tlog_nodes WHERE level = 0 AND idx = 777"],
            "leaf hash of transparency log entry 777 is missing",
        ),
        (
            "a deleted inner node",
            &["DELETE FROM tlog_nodes WHERE level = 3 AND idx = 97"],
            "level 3 index 97 (entries 776..783) is missing",
        ),
        (
            "an edited body with its leaf hash recomputed",
            &[
                "UPDATE tlog_entries SET body = (SELECT body FROM tlog_entries WHERE idx = 778) WHERE idx = 777",
                "UPDATE tlog_nodes SET hash = (SELECT hash FROM tlog_nodes WHERE level = 0 AND idx = 778) WHERE level = 0 AND idx = 777",
            ],
            "entries 776..777 do not hash to the stored node at level 1 index 388",
        ),
        (
            "a deleted entry",
            &["DELETE FROM tlog_entries WHERE idx = 777"],
            "entry 777 is missing",
        ),
        (
            "deleted entries at the end",
            &["DELETE FROM tlog_entries WHERE idx >= 950"],
            "checkpoint at size 1000 covers transparency log entries 950..999",
        ),
        (
            "a checkpoint note moved to another size",
            &["UPDATE tlog_checkpoints SET note = (SELECT note FROM tlog_checkpoints WHERE size = 600) WHERE size = 500"],
            "checkpoint stored at size 500 is signed for size 600",
        ),
        (
            "a checkpoint signature edited",
            &["UPDATE tlog_checkpoints SET note = 'x' || note WHERE size = 300"],
            "checkpoint at size 300 does not verify",
        ),
        (
            "an extra node row",
            &["INSERT INTO tlog_nodes (level, idx, hash) SELECT 2, 250, hash FROM tlog_nodes WHERE level = 0 AND idx = 0"],
            "at level 2 from index 250",
        ),
        (
            "a rolled-back head",
            &["UPDATE tlog_head SET size = 999"],
            "head (size 999",
        ),
    ];
    for db in TestDb::both() {
        build_log(&db, &k, origin);
        let mut c = db.store.conn().unwrap();
        assert_eq!(verify_all(&mut c, origin, &pk).unwrap(), (1000, 10));
        // The wrong key, or the right key under another name: the first checkpoint fails.
        let other = public(&key());
        let e = verify_all(&mut c, origin, &other).unwrap_err().to_string();
        assert!(e.contains("checkpoint at size 100 does not verify"), "{e}");
        assert!(e.contains("another key"), "{e}");
        let e = verify_all(&mut c, "kagi.test/other", &pk)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no signature by 'kagi.test/other'"), "{e}");
    }
    for (what, sqls, want) in cases {
        for db in TestDb::both() {
            build_log(&db, &k, origin);
            for sql in sqls.iter() {
                assert!(db.exec(sql) >= 1, "{}: {what}: {sql}", db.label);
            }
            let mut c = db.store.conn().unwrap();
            let e = verify_all(&mut c, origin, &pk).unwrap_err();
            assert!(
                matches!(e, HsmError::Integrity(_)),
                "{}: {what}: {e}",
                db.label
            );
            assert!(
                e.to_string().contains(want),
                "{}: {what}: '{e}' does not say '{want}'",
                db.label
            );
        }
    }
}
