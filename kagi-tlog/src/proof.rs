//! RFC 9162 proofs computed from complete-subtree hashes, and their verification.
//!
//! A tree of `n` entries is addressed by its perfect subtrees: the node at (level `L`, index
//! `i`) covers entries `[i * 2^L, (i + 1) * 2^L)` and exists once all of them do. Every subtree
//! the RFC's recursion visits is aligned that way, so a perfect one is a single node and an
//! incomplete one (only ever on the right edge) is the fold of the perfect nodes inside it.

use crate::merkle::{empty_root, node_hash, Hash};
use crate::Error;

/// A read-only source of complete-subtree hashes. Its error type carries whatever the source
/// can fail with (a database's integrity and storage errors, say) and this crate's own.
pub trait NodeSource {
    type Error: From<Error>;

    /// The hash of the complete subtree at (`level`, `idx`). Asking for a node that is not
    /// complete in the source's tree is an error.
    fn node(&mut self, level: u32, idx: u64) -> Result<Hash, Self::Error>;

    /// Whether [`NodeSource::prefetch`] is worth a planning pass (true for sources with a
    /// round trip per lookup).
    fn wants_prefetch(&self) -> bool {
        false
    }

    /// Told every node a computation is about to ask for, before it asks: a database-backed
    /// source fetches them in one or a few queries.
    fn prefetch(&mut self, _nodes: &[(u32, u64)]) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// RFC 9162 §2.1.3.1 PATH(index, D[tree_size]): sibling hashes from the leaf up.
pub fn inclusion_proof<S: NodeSource + ?Sized>(
    src: &mut S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash>, S::Error> {
    if index >= tree_size {
        return Err(Error::Malformed(format!(
            "entry {index} is not in a tree of {tree_size} entries: ask for an index below the tree size"
        ))
        .into());
    }
    planned(src, |s| {
        let mut out = Vec::new();
        path(s, index, 0, tree_size, &mut out)?;
        Ok(out)
    })
}

/// RFC 9162 §2.1.4.1 PROOF(first, D[second]) = SUBPROOF(first, D[second], true). Equal sizes
/// and `first == 0` (the empty tree is a prefix of every tree) give an empty proof.
pub fn consistency_proof<S: NodeSource + ?Sized>(
    src: &mut S,
    first: u64,
    second: u64,
) -> Result<Vec<Hash>, S::Error> {
    if first > second {
        return Err(Error::Malformed(format!(
            "a consistency proof goes from a smaller tree to a larger one, but {first} > {second}: swap the sizes"
        ))
        .into());
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
pub fn root_at<S: NodeSource + ?Sized>(src: &mut S, tree_size: u64) -> Result<Hash, S::Error> {
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
    levels: Vec<Vec<Hash>>,
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

    /// Nodes read from a store, level by level. `None` unless every level holds exactly the
    /// `size >> level` complete nodes of a tree of `levels[0].len()` leaves; the hashes
    /// themselves are not checked (compare with [`MemoryNodes::from_leaf_hashes`] for that).
    pub fn from_levels(levels: Vec<Vec<Hash>>) -> Option<MemoryNodes> {
        let size = levels.first().map_or(0, |l| l.len() as u64);
        let want = (0..u64::BITS).take_while(|l| (size >> l) > 0).count();
        let shaped = levels.len() == want
            && levels
                .iter()
                .enumerate()
                .all(|(l, nodes)| nodes.len() as u64 == size >> l);
        shaped.then_some(MemoryNodes { levels })
    }

    /// Number of entries (leaves).
    pub fn size(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    /// The leaf hash of entry `index`, if present.
    pub fn leaf(&self, index: u64) -> Option<&Hash> {
        self.levels.first()?.get(usize::try_from(index).ok()?)
    }

    /// Every complete node, `levels()[L][i]` being the node at (L, i).
    pub fn levels(&self) -> &[Vec<Hash>] {
        &self.levels
    }
}

impl NodeSource for MemoryNodes {
    type Error = Error;

    fn node(&mut self, level: u32, idx: u64) -> Result<Hash, Error> {
        let found = self
            .levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(idx).ok()?));
        found.copied().ok_or(Error::NoSuchNode {
            level,
            idx,
            size: self.size(),
        })
    }
}

/// One run of a proof computation: against the source, or (planning) recording the nodes it
/// would ask for and answering zeros.
struct Pass<'a, S: ?Sized> {
    src: &'a mut S,
    record: Option<Vec<(u32, u64)>>,
}

impl<S: NodeSource + ?Sized> Pass<'_, S> {
    fn node(&mut self, level: u32, idx: u64) -> Result<Hash, S::Error> {
        match &mut self.record {
            Some(asked) => {
                asked.push((level, idx));
                Ok([0u8; 32])
            }
            None => self.src.node(level, idx),
        }
    }
}

/// Run `f` once recording the nodes it needs (control flow never depends on hash values), let
/// the source fetch them together, then run it for real.
fn planned<S: NodeSource + ?Sized, T>(
    src: &mut S,
    f: impl Fn(&mut Pass<'_, S>) -> Result<T, S::Error>,
) -> Result<T, S::Error> {
    if src.wants_prefetch() {
        let mut rec = Pass {
            src: &mut *src,
            record: Some(Vec::new()),
        };
        f(&mut rec)?;
        let mut wanted = rec.record.take().unwrap_or_default();
        wanted.sort_unstable();
        wanted.dedup();
        src.prefetch(&wanted)?;
    }
    f(&mut Pass { src, record: None })
}

/// Largest power of two strictly below `n` (`n >= 2`): where RFC 9162 splits a tree.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[lo:hi]) for a range the RFC recursion visits (`lo` aligned, `hi > lo`): the perfect
/// subtrees of the set bits of `hi - lo`, largest first, folded from the right.
fn range_hash<S: NodeSource + ?Sized>(
    src: &mut Pass<'_, S>,
    lo: u64,
    hi: u64,
) -> Result<Hash, S::Error> {
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
        .ok_or_else(|| Error::Malformed("an empty range has no subtree hash".into()))?;
    while let Some(left) = parts.pop() {
        acc = node_hash(&left, &acc);
    }
    Ok(acc)
}

/// PATH(m, D[lo:hi]).
fn path<S: NodeSource + ?Sized>(
    src: &mut Pass<'_, S>,
    m: u64,
    lo: u64,
    hi: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
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
fn subproof<S: NodeSource + ?Sized>(
    src: &mut Pass<'_, S>,
    m: u64,
    lo: u64,
    hi: u64,
    whole: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
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
