//! RFC 9162 §2.1 written as the RFC writes it: recursive MTH, PATH and SUBPROOF over a slice
//! of leaf hashes. Slow and obviously right, so tests check the real proofs (in memory here,
//! stored in hsm-core's database) against it. Built for tests only (feature `reference`).

use crate::merkle::{empty_root, node_hash, Hash};

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

pub fn ref_mth(l: &[Hash]) -> Hash {
    match l.len() {
        0 => empty_root(),
        1 => l[0],
        n => node_hash(&ref_mth(&l[..k_of(n)]), &ref_mth(&l[k_of(n)..])),
    }
}

pub fn ref_path(m: usize, l: &[Hash]) -> Vec<Hash> {
    let n = l.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = ref_path(m, &l[..k]);
        p.push(ref_mth(&l[k..]));
        p
    } else {
        let mut p = ref_path(m - k, &l[k..]);
        p.push(ref_mth(&l[..k]));
        p
    }
}

pub fn ref_subproof(m: usize, l: &[Hash], b: bool) -> Vec<Hash> {
    let n = l.len();
    if m == n {
        return if b { vec![] } else { vec![ref_mth(l)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = ref_subproof(m, &l[..k], b);
        p.push(ref_mth(&l[k..]));
        p
    } else {
        let mut p = ref_subproof(m - k, &l[k..], false);
        p.push(ref_mth(&l[..k]));
        p
    }
}
