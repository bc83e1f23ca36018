//! Tests of the pure log code: proofs against the RFC's own recursion and published vectors,
//! signed notes against published notes, and the canonical encoding. hsm-core's tests check
//! the stored side (the database's nodes, `verify_all`) against the same definitions.

mod canonical;
mod entries;
mod notes;
mod proofs;
mod witness;

use crate::reference::{ref_mth, ref_path, ref_subproof};
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
