//! RFC 9162 Merkle tree hashing, and the compact frontier that makes appends O(log n).

use aws_lc_rs::digest::{Context, SHA256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

/// The Merkle leaf hash of an entry: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x00]);
    c.update(entry);
    to_hash(c.finish().as_ref())
}

/// The leaf hash of a log entry's body; the name verifiers read best.
pub fn entry_hash(body: &[u8]) -> Hash {
    leaf_hash(body)
}

/// An interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x01]);
    c.update(left);
    c.update(right);
    to_hash(c.finish().as_ref())
}

/// MTH of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    to_hash(aws_lc_rs::digest::digest(&SHA256, b"").as_ref())
}

fn to_hash(b: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&b[..32]);
    h
}

/// Roots of the perfect subtrees that make up a tree of `size` leaves, largest first: one per
/// set bit of `size`. Appending merges equal-sized neighbours, as a binary counter carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    pub size: u64,
    pub nodes: Vec<Hash>,
}

impl Frontier {
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, &mut |_, _, _| {});
    }

    /// Append one leaf and report the leaf and every perfect subtree it completes, lowest
    /// first, as (level, index, hash): what a store that keeps every complete node writes.
    pub fn push_reporting(&mut self, leaf: Hash, emit: &mut impl FnMut(u32, u64, &Hash)) {
        let mut idx = self.size;
        let mut level = 0u32;
        let mut node = leaf;
        emit(level, idx, &node);
        // Each trailing 1-bit of the old size is a subtree of the same height as `node`.
        while idx & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            level += 1;
            idx >>= 1;
            emit(level, idx, &node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// MTH of the whole tree (RFC 9162 §2.1.1). The empty tree hashes to SHA-256("").
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    /// The nodes, concatenated: how a store keeps the frontier in one column.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    /// The frontier of a tree of `size` leaves from [`Frontier::to_bytes`]; `None` when the
    /// bytes are not one hash per set bit of `size`.
    pub fn from_bytes(size: u64, b: &[u8]) -> Option<Frontier> {
        if !b.len().is_multiple_of(32) || (b.len() / 32) as u32 != size.count_ones() {
            return None;
        }
        Some(Frontier {
            size,
            nodes: b.chunks(32).map(to_hash).collect(),
        })
    }
}
