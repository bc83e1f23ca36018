use super::*;

/// Published RFC 6962/9162 vectors (Certificate Transparency / transparency-dev test data):
/// leaf inputs, every complete node, the root of every size, and known proofs.
#[test]
fn matches_published_rfc6962_vectors() {
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
    let nodes: Vec<Vec<&str>> = vec![
        vec![
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        vec![
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        vec![
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        vec!["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];
    let roots = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];
    // (0-based index, size, proof)
    let inclusion: Vec<(u64, u64, Vec<&str>)> = vec![
        (0, 1, vec![]),
        (
            0,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            vec![
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            vec!["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            vec![
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    let consistency: Vec<(u64, u64, Vec<&str>)> = vec![
        (1, 1, vec![]),
        (
            1,
            8,
            vec![
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            vec![
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            vec![
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];
    let hs = |v: &[&str]| v.iter().map(|h| unhex(h)).collect::<Vec<Hash>>();

    let leaves: Vec<Hash> = inputs.iter().map(|b| entry_hash(b)).collect();
    let mut mem = MemoryNodes::from_leaf_hashes(leaves.clone());
    let want_nodes: Vec<Vec<Hash>> = nodes.iter().map(|l| hs(l)).collect();
    assert_eq!(mem.levels(), &want_nodes[..]);
    for (n, r) in roots.iter().enumerate() {
        assert_eq!(root_at(&mut mem, n as u64).unwrap(), unhex(r), "root {n}");
    }
    for (i, n, p) in &inclusion {
        let got = inclusion_proof(&mut mem, *i, *n).unwrap();
        assert_eq!(got, hs(p), "inclusion {i} in {n}");
        assert!(verify_inclusion(
            &leaves[*i as usize],
            *i,
            *n,
            &got,
            &unhex(roots[*n as usize])
        ));
    }
    for (m, n, p) in &consistency {
        let got = consistency_proof(&mut mem, *m, *n).unwrap();
        assert_eq!(got, hs(p), "consistency {m} -> {n}");
        assert!(verify_consistency(
            *m,
            *n,
            &got,
            &unhex(roots[*m as usize]),
            &unhex(roots[*n as usize])
        ));
    }
}

/// Direct recursive definition from RFC 9162, to check the frontier against.
#[test]
fn frontier_matches_rfc9162_definition() {
    let mut f = Frontier::default();
    let mut leaves = Vec::new();
    for i in 0..70u32 {
        assert_eq!(f.root(), ref_mth(&leaves), "size {i}");
        let l = entry_hash(&i.to_be_bytes());
        leaves.push(l);
        f.push(l);
        let g = Frontier::from_bytes(f.size, &f.to_bytes()).unwrap();
        assert_eq!(g, f);
    }
    assert!(Frontier::from_bytes(3, &[0u8; 32]).is_none());
    assert!(Frontier::from_bytes(1, &[0u8; 31]).is_none());
}

#[test]
fn push_reporting_carries_like_push() {
    let mut a = Frontier::default();
    let mut b = Frontier::default();
    let mut seen = Vec::new();
    for i in 0..300u64 {
        let l = entry_hash(&i.to_be_bytes());
        a.push(l);
        b.push_reporting(l, &mut |lv, ix, _| seen.push((lv, ix)));
        assert_eq!(a, b);
    }
    // Every complete node, each exactly once.
    let mut want = Vec::new();
    for lv in 0..64u32 {
        for ix in 0..(300u64 >> lv) {
            want.push((lv, ix));
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, want);
}

/// A memory source that asks to be told what a computation needs first, as the database
/// source does: the planned pass must name exactly the nodes the real pass reads.
struct Prefetching {
    inner: MemoryNodes,
    told: Vec<(u32, u64)>,
    asked: Vec<(u32, u64)>,
}

impl NodeSource for Prefetching {
    type Error = Error;

    fn node(&mut self, level: u32, idx: u64) -> Result<Hash, Error> {
        self.asked.push((level, idx));
        self.inner.node(level, idx)
    }

    fn wants_prefetch(&self) -> bool {
        true
    }

    fn prefetch(&mut self, nodes: &[(u32, u64)]) -> Result<(), Error> {
        self.told = nodes.to_vec();
        Ok(())
    }
}

/// Every inclusion proof of every tree size 1..=64 and every consistency pair equal the RFC's
/// definitions and verify; tampered ones fail.
#[test]
fn every_proof_up_to_64() {
    let bodies: Vec<Vec<u8>> = (0..64u64)
        .map(|i| format!("entry {i:08}").into_bytes())
        .collect();
    let leaves: Vec<Hash> = bodies.iter().map(|b| entry_hash(b)).collect();
    let roots: Vec<Hash> = (0..=64).map(|n| ref_mth(&leaves[..n])).collect();
    let mut mem = MemoryNodes::from_leaf_hashes(leaves.clone());
    assert_eq!(mem.size(), 64);
    assert_eq!(
        MemoryNodes::from_levels(mem.levels().to_vec()).as_ref(),
        Some(&mem)
    );
    assert!(MemoryNodes::from_levels(vec![leaves[..3].to_vec()]).is_none());
    for n in 1..=64u64 {
        let root = &roots[n as usize];
        assert_eq!(root_at(&mut mem, n).unwrap(), *root, "root {n}");
        for i in 0..n {
            let p = inclusion_proof(&mut mem, i, n).unwrap();
            assert_eq!(
                p,
                ref_path(i as usize, &leaves[..n as usize]),
                "PATH({i}, {n})"
            );
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
        }
        for m in 1..=n {
            let p = consistency_proof(&mut mem, m, n).unwrap();
            assert_eq!(
                p,
                ref_subproof(m as usize, &leaves[..n as usize], true),
                "PROOF({m}, {n})"
            );
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
        }
    }
    // The planning pass tells a prefetching source exactly what the real pass reads.
    let mut pre = Prefetching {
        inner: mem.clone(),
        told: Vec::new(),
        asked: Vec::new(),
    };
    for (i, n) in [(0u64, 64u64), (37, 45), (62, 63)] {
        pre.asked.clear();
        assert_eq!(
            inclusion_proof(&mut pre, i, n).unwrap(),
            inclusion_proof(&mut mem, i, n).unwrap()
        );
        pre.asked.sort_unstable();
        pre.asked.dedup();
        assert_eq!(pre.told, pre.asked, "inclusion {i} in {n}");
    }
    // Size 0 and sizes beyond the tree.
    assert_eq!(
        consistency_proof(&mut mem, 0, 64).unwrap(),
        Vec::<Hash>::new()
    );
    assert!(verify_consistency(0, 64, &[], &empty_root(), &roots[64]));
    assert!(!verify_consistency(0, 64, &[], &roots[1], &roots[64]));
    assert!(matches!(
        inclusion_proof(&mut mem, 3, 65),
        Err(Error::NoSuchNode { .. })
    ));
    assert!(inclusion_proof(&mut mem, 64, 64).is_err());
    assert!(consistency_proof(&mut mem, 3, 65).is_err());
    assert!(consistency_proof(&mut mem, 9, 3).is_err());
    assert!(root_at(&mut mem, 65).is_err());
    assert_eq!(
        hex::encode(empty_root()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}
