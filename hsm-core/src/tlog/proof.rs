//! RFC 9162 proofs computed from complete-subtree hashes, and their verification.
//!
//! A tree of `n` entries is addressed by its perfect subtrees: the node at (level `L`, index
//! `i`) covers entries `[i * 2^L, (i + 1) * 2^L)` and exists once all of them do. Every subtree
//! the RFC's recursion visits is aligned that way, so a perfect one is a single node and an
//! incomplete one (only ever on the right edge) is the fold of the perfect nodes inside it.

use crate::error::{HsmError, Result};
use crate::merkle::{node_hash, Frontier, Hash};

/// A read-only source of complete-subtree hashes.
pub trait NodeSource {
    /// The hash of the complete subtree at (`level`, `idx`). Asking for a node that is not
    /// complete in the source's tree is an error.
    fn node(&mut self, level: u32, idx: u64) -> Result<Hash>;

    /// Whether [`NodeSource::prefetch`] is worth a planning pass (true for sources with a
    /// round trip per lookup).
    fn wants_prefetch(&self) -> bool {
        false
    }

    /// Told every node a computation is about to ask for, before it asks: a database-backed
    /// source fetches them in one or a few queries.
    fn prefetch(&mut self, _nodes: &[(u32, u64)]) -> Result<()> {
        Ok(())
    }
}

/// MTH of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Frontier::default().root()
}

/// The Merkle leaf hash of an entry body: SHA-256(0x00 || body).
pub fn entry_hash(body: &[u8]) -> Hash {
    crate::merkle::leaf_hash(body)
}

/// RFC 9162 §2.1.3.1 PATH(index, D[tree_size]): sibling hashes from the leaf up.
pub fn inclusion_proof(src: &mut dyn NodeSource, index: u64, tree_size: u64) -> Result<Vec<Hash>> {
    if index >= tree_size {
        return Err(HsmError::BadInput(format!(
            "entry {index} is not in a tree of {tree_size} entries: ask for an index below the tree size"
        )));
    }
    planned(src, |s| {
        let mut out = Vec::new();
        path(s, index, 0, tree_size, &mut out)?;
        Ok(out)
    })
}

/// RFC 9162 §2.1.4.1 PROOF(first, D[second]) = SUBPROOF(first, D[second], true). Equal sizes
/// and `first == 0` (the empty tree is a prefix of every tree) give an empty proof.
pub fn consistency_proof(src: &mut dyn NodeSource, first: u64, second: u64) -> Result<Vec<Hash>> {
    if first > second {
        return Err(HsmError::BadInput(format!(
            "a consistency proof goes from a smaller tree to a larger one, but {first} > {second}: swap the sizes"
        )));
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    planned(src, |s| {
        let mut out = Vec::new();
        subproof(s, first, 0, second, true, &mut out)?;
        Ok(out)
    })
}

/// MTH(D[tree_size]) (RFC 9162 §2.1.1), from the complete nodes of that size.
pub fn root_at(src: &mut dyn NodeSource, tree_size: u64) -> Result<Hash> {
    if tree_size == 0 {
        return Ok(empty_root());
    }
    planned(src, |s| range_hash(s, 0, tree_size))
}

/// RFC 9162 §2.1.3.2, step by step.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut fn_, mut sn) = (index, tree_size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    sn == 0 && r == *root
}

/// RFC 9162 §2.1.4.2, step by step, for `0 < first < second`. Outside that range: equal sizes
/// are consistent with an empty proof when the roots are equal, and size 0 with an empty proof
/// when `first_root` is the empty tree's root.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> bool {
    if first > second {
        return false;
    }
    if first == 0 {
        return proof.is_empty() && *first_root == empty_root();
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    // 1. An empty path fails.
    if proof.is_empty() {
        return false;
    }
    // 2. If first is an exact power of 2, first_hash is prepended to the path.
    let prepended = first.is_power_of_two().then_some(first_root);
    let mut path = prepended.into_iter().chain(proof.iter());
    // 3.–4.
    let (mut fn_, mut sn) = (first - 1, second - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // 5.
    let Some(start) = path.next() else {
        return false;
    };
    let (mut fr, mut sr) = (*start, *start);
    // 6.
    for c in path {
        if sn == 0 {
            return false;
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fn_ & 1 == 0 && fn_ != 0 {
                fn_ >>= 1;
                sn >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // 7.
    fr == *first_root && sr == *second_root && sn == 0
}

/// Every complete node of a tree, in memory: `levels[L][i]` is the node at (L, i).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryNodes {
    pub(crate) levels: Vec<Vec<Hash>>,
}

impl MemoryNodes {
    /// Build every complete node from the leaf hashes.
    pub fn from_leaf_hashes(leaves: Vec<Hash>) -> MemoryNodes {
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() >= 2) {
            let up: Vec<Hash> = below
                .chunks_exact(2)
                .map(|p| node_hash(&p[0], &p[1]))
                .collect();
            levels.push(up);
        }
        MemoryNodes { levels }
    }

    /// Number of entries (leaves).
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hash of entry `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?)
    }
}

impl NodeSource for MemoryNodes {
    fn node(&mut self, level: u32, idx: u64) -> Result<Hash> {
        let found = self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(idx).ok()?));
        found
            .copied()
            .ok_or_else(|| beyond(level, idx, self.size()))
    }
}

/// A node source that remembers what was asked and answers zeros: the planning pass.
#[derive(Default)]
struct Recorder(Vec<(u32, u64)>);

impl NodeSource for Recorder {
    fn node(&mut self, level: u32, idx: u64) -> Result<Hash> {
        self.0.push((level, idx));
        Ok([0u8; 32])
    }
}

/// Run `f` once against a recorder to learn the nodes it needs (control flow never depends on
/// hash values), let the source fetch them together, then run it for real.
fn planned<T>(src: &mut dyn NodeSource, f: impl Fn(&mut dyn NodeSource) -> Result<T>) -> Result<T> {
    if src.wants_prefetch() {
        let mut rec = Recorder::default();
        f(&mut rec)?;
        rec.0.sort_unstable();
        rec.0.dedup();
        src.prefetch(&rec.0)?;
    }
    f(src)
}

pub(crate) fn beyond(level: u32, idx: u64, size: u64) -> HsmError {
    HsmError::BadInput(format!(
        "there is no complete subtree at level {level} index {idx} in a log of {size} entries: ask for a tree size of at most {size}"
    ))
}

/// Largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for a range the RFC recursion visits (`lo` aligned, `hi > lo`): the perfect
/// subtrees of the set bits of `hi - lo`, largest first, folded from the right.
fn range_hash(src: &mut dyn NodeSource, lo: u64, hi: u64) -> Result<Hash> {
    let n = hi - lo;
    let mut parts: Vec<Hash> = Vec::with_capacity(n.count_ones() as usize);
    let mut start = lo;
    for level in (0..u64::BITS).rev() {
        if (n >> level) & 1 == 1 {
            parts.push(src.node(level, start >> level)?);
            start += 1u64 << level;
        }
    }
    let mut acc = parts
        .pop()
        .ok_or_else(|| HsmError::BadInput("an empty range has no subtree hash".into()))?;
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// PATH(m, D[lo:hi]).
fn path(src: &mut dyn NodeSource, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Result<()> {
    let n = hi - lo;
    if n <= 1 {
        return Ok(());
    }
    let k = split_point(n);
    if m < k {
        path(src, m, lo, lo + k, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        path(src, m - k, lo + k, hi, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// SUBPROOF(m, D[lo:hi], whole) for `1 <= m <= hi - lo`.
fn subproof(
    src: &mut dyn NodeSource,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<()> {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push(range_hash(src, lo, hi)?);
        }
        return Ok(());
    }
    let k = split_point(n);
    if m <= k {
        subproof(src, m, lo, lo + k, whole, out)?;
        out.push(range_hash(src, lo + k, hi)?);
    } else {
        subproof(src, m - k, lo + k, hi, false, out)?;
        out.push(range_hash(src, lo, lo + k)?);
    }
    Ok(())
}

/// Append one leaf to a frontier and report the leaf and every perfect subtree it completes,
/// lowest first, as (level, index, hash). The same carries as [`Frontier::push`].
pub(crate) fn push_leaf(f: &mut Frontier, leaf: Hash, emit: &mut impl FnMut(u32, u64, &Hash)) {
    let mut idx = f.size;
    let mut level = 0u32;
    let mut node = leaf;
    emit(level, idx, &node);
    while idx & 1 == 1 {
        let Some(left) = f.nodes.pop() else { break };
        node = node_hash(&left, &node);
        level += 1;
        idx >>= 1;
        emit(level, idx, &node);
    }
    f.nodes.push(node);
    f.size += 1;
}
