//! RFC 9162 Merkle tree hashing, kept as a compact frontier so appends are O(log n).

use aws_lc_rs::digest::{Context, SHA256};

pub(crate) type Hash = [u8; 32];

pub(crate) fn leaf_hash(entry: &[u8]) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x00]);
    c.update(entry);
    to_hash(c.finish().as_ref())
}

pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut c = Context::new(&SHA256);
    c.update(&[0x01]);
    c.update(left);
    c.update(right);
    to_hash(c.finish().as_ref())
}

fn to_hash(b: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    h.copy_from_slice(&b[..32]);
    h
}

/// Roots of the perfect subtrees that make up a tree of `size` leaves, largest first: one per
/// set bit of `size`. Appending merges equal-sized neighbours, as a binary counter carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Frontier {
    pub size: u64,
    pub nodes: Vec<Hash>,
}

impl Frontier {
    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut size = self.size;
        // Each trailing 1-bit of the old size is a subtree of the same height as `node`.
        while size & 1 == 1 {
            let Some(left) = self.nodes.pop() else { break };
            node = node_hash(&left, &node);
            size >>= 1;
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// MTH of the whole tree (RFC 9162 §2.1.1). The empty tree hashes to SHA-256("").
    pub(crate) fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        match it.next() {
            None => to_hash(aws_lc_rs::digest::digest(&SHA256, b"").as_ref()),
            Some(last) => it.fold(*last, |acc, left| node_hash(left, &acc)),
        }
    }

    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        self.nodes.concat()
    }

    pub(crate) fn from_bytes(size: u64, b: &[u8]) -> Option<Frontier> {
        if !b.len().is_multiple_of(32) || (b.len() / 32) as u32 != size.count_ones() {
            return None;
        }
        Some(Frontier {
            size,
            nodes: b.chunks(32).map(to_hash).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct recursive definition from RFC 9162, to check the frontier against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => to_hash(aws_lc_rs::digest::digest(&SHA256, b"").as_ref()),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn frontier_matches_rfc9162_definition() {
        let mut f = Frontier::default();
        let mut leaves = Vec::new();
        for i in 0..70u32 {
            assert_eq!(f.root(), mth(&leaves), "size {i}");
            let l = leaf_hash(&i.to_be_bytes());
            leaves.push(l);
            f.push(l);
            let g = Frontier::from_bytes(f.size, &f.to_bytes()).unwrap();
            assert_eq!(g, f);
        }
    }
}
