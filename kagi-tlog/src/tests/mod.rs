//! Tests of the pure log code: proofs against the RFC's own recursion and published vectors,
//! signed notes against published notes, and the canonical encoding. hsm-core's tests check
//! the stored side (the database's nodes, `verify_all`) against the same definitions.

mod canonical;
mod entries;
mod notes;
mod proofs;

use crate::merkle::node_hash;
use crate::*;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

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

fn unhex(s: &str) -> Hash {
    hex::decode(s).unwrap().try_into().unwrap()
}

// ---- RFC 9162 written as the RFC writes it, over a slice of leaf hashes --------------------

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn ref_mth(l: &[Hash]) -> Hash {
    match l.len() {
        0 => empty_root(),
        1 => l[0],
        n => node_hash(&ref_mth(&l[..k_of(n)]), &ref_mth(&l[k_of(n)..])),
    }
}

fn ref_path(m: usize, l: &[Hash]) -> Vec<Hash> {
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

fn ref_subproof(m: usize, l: &[Hash], b: bool) -> Vec<Hash> {
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
