//! The public transparency log of signatures: an append-only RFC 9162 Merkle tree over entry
//! bodies, separate from the audit log, with C2SP signed-note checkpoints.
//!
//! Storage (migration 5): `tlog_entries` (index, unix ms, body), `tlog_nodes` (the hash of
//! every complete perfect subtree, written once when an append completes it), `tlog_head` (size
//! and frontier after the last append; appenders write it first, which serializes them) and
//! `tlog_checkpoints` (one signed note per tree size).
//!
//! Because every complete subtree is stored, a proof at any past or present tree size reads
//! O(log n) rows ([`DbNodes`] fetches them in one query) and nothing is ever recomputed from
//! the leaves except by [`verify_all`], which trusts no stored hash.
//!
//! An entry's timestamp is local metadata, not hashed: anything a proof must cover belongs in
//! the body.
//!
//! Everything pure (hashing, proofs, signed notes, entry formats) is `kagi-tlog`'s; this module
//! is the storage, and re-exports the pure items so `kagi_hsm_core::tlog::*` paths keep working.

#[cfg(test)]
mod tests;
pub mod tiles;

use std::collections::{HashMap, VecDeque};

use diesel::prelude::*;
use kagi_tlog::merkle::leaf_hash;
use kagi_tlog::{Frontier, Hash};

use crate::error::{HsmError, Result};
use crate::store::schema::{tlog_checkpoints, tlog_entries, tlog_head, tlog_nodes};
use crate::store::AnyConnection;

pub use kagi_tlog::{
    checkpoint_body, consistency_proof, empty_root, entry_hash, inclusion_proof, open_checkpoint,
    open_note, parse_checkpoint_body, parse_verifier_key, root_at, sign_note, unverified_text,
    verifier_key, verify_consistency, verify_inclusion, MemoryNodes, NodeSource, ORIGIN,
};

impl From<kagi_tlog::Error> for HsmError {
    fn from(e: kagi_tlog::Error) -> Self {
        match e {
            kagi_tlog::Error::Signing(_) => {
                HsmError::Crypto("signing a transparency log checkpoint failed")
            }
            // Malformed input, a signature that does not verify, a proof beyond the log: the
            // caller's request, and the message says what to change.
            other => HsmError::BadInput(other.to_string()),
        }
    }
}

/// Rows per multi-row INSERT on PostgreSQL: 3 columns each, far below the bind limit.
const INSERT_CHUNK: usize = 200;
/// SQLite's default limit is 32,766 bound parameters; 3 per row keeps far below it.
const SQLITE_CHUNK: usize = 500;
/// Entries read per query when verifying.
const VERIFY_PAGE: i64 = 2000;
/// Node conditions per SELECT when fetching a proof's nodes.
const FETCH_CHUNK: usize = 64;

#[derive(Insertable)]
#[diesel(table_name = tlog_entries)]
struct EntryRow<'a> {
    idx: i64,
    ts: i64,
    body: &'a [u8],
}

#[derive(Insertable)]
#[diesel(table_name = tlog_nodes)]
struct NodeRow {
    level: i64,
    idx: i64,
    hash: Vec<u8>,
}

/// Append entries in the caller's transaction: their rows, every subtree node the append
/// completes, and the head. Returns (index of the first appended entry, new size, new root).
pub(crate) fn append(
    c: &mut AnyConnection,
    bodies: &[Vec<u8>],
    ts_ms: i64,
) -> Result<(i64, i64, Hash)> {
    // Write the head row first: SQLite takes its write lock, PostgreSQL a row lock, so appends
    // from several processes serialize instead of reading the same frontier.
    let locked = diesel::update(tlog_head::table.filter(tlog_head::id.eq(1)))
        .set(tlog_head::size.eq(tlog_head::size))
        .execute(c)?;
    if locked != 1 {
        return Err(missing_head());
    }
    let mut frontier = load_frontier(c)?;
    let first = to_i64(frontier.size)?;
    let mut entries = Vec::with_capacity(bodies.len());
    let mut nodes = Vec::with_capacity(bodies.len() * 2);
    for body in bodies {
        entries.push(EntryRow {
            idx: to_i64(frontier.size)?,
            ts: ts_ms,
            body,
        });
        frontier.push_reporting(leaf_hash(body), &mut |level, idx, h| {
            nodes.push(NodeRow {
                level: i64::from(level),
                idx: idx as i64,
                hash: h.to_vec(),
            })
        });
    }
    if entries.is_empty() {
        return Ok((first, first, frontier.root()));
    }
    match c {
        AnyConnection::Postgresql(pg) => {
            for chunk in entries.chunks(INSERT_CHUNK) {
                diesel::insert_into(tlog_entries::table)
                    .values(chunk)
                    .execute(pg)?;
            }
            for chunk in nodes.chunks(INSERT_CHUNK) {
                diesel::insert_into(tlog_nodes::table)
                    .values(chunk)
                    .execute(pg)?;
            }
        }
        // Multi-row statements here too: the commit thread is the bottleneck of signing, and
        // one statement per row cost it about half its throughput.
        AnyConnection::Sqlite(sq) => {
            for chunk in entries.chunks(SQLITE_CHUNK) {
                diesel::insert_into(tlog_entries::table)
                    .values(chunk)
                    .execute(sq)?;
            }
            for chunk in nodes.chunks(SQLITE_CHUNK) {
                diesel::insert_into(tlog_nodes::table)
                    .values(chunk)
                    .execute(sq)?;
            }
        }
    }
    let size = to_i64(frontier.size)?;
    diesel::update(tlog_head::table.filter(tlog_head::id.eq(1)))
        .set((
            tlog_head::size.eq(size),
            tlog_head::frontier.eq(frontier.to_bytes()),
        ))
        .execute(c)?;
    Ok((first, size, frontier.root()))
}

/// Size and root of the log now. The empty log has size 0 and root SHA-256("").
pub(crate) fn head(c: &mut AnyConnection) -> Result<(i64, Hash)> {
    let f = load_frontier(c)?;
    Ok((to_i64(f.size)?, f.root()))
}

/// Store a signed checkpoint note for `size`, in the caller's transaction. The note's body
/// must state `size` and the log's root at that size (its signature is not checked here).
/// A second note for a size already stored is accepted, and not written, when it states the
/// same checkpoint; a different root for a stored size is refused.
pub(crate) fn store_checkpoint(
    c: &mut AnyConnection,
    size: i64,
    ts_ms: i64,
    note: &str,
) -> Result<()> {
    let (_, stated, root) = parse_checkpoint_body(unverified_text(note)?)?;
    if i64::try_from(stated).ok() != Some(size) {
        return Err(HsmError::BadInput(format!(
            "the checkpoint note states size {stated} but is stored as size {size}: sign checkpoint_body(origin, {size}, root)"
        )));
    }
    let (now, now_root) = head(c)?;
    let want = if size == now {
        now_root
    } else if (0..now).contains(&size) {
        root_at(&mut DbNodes::new(c)?, size as u64)?
    } else {
        return Err(HsmError::BadInput(format!(
            "a checkpoint at size {size} is outside the log, which has {now} entries"
        )));
    };
    if root != want {
        return Err(HsmError::BadInput(format!(
            "the checkpoint note for size {size} states a root that is not the log's root at that size: sign the root that append() or head() returned"
        )));
    }
    let existing: Option<String> = tlog_checkpoints::table
        .filter(tlog_checkpoints::size.eq(size))
        .select(tlog_checkpoints::note)
        .first(c)
        .optional()?;
    match existing {
        // Same size, same root (checked above for the new note, by verify_all for the old):
        // the first note stands.
        Some(_) => Ok(()),
        None => {
            diesel::insert_into(tlog_checkpoints::table)
                .values((
                    tlog_checkpoints::size.eq(size),
                    tlog_checkpoints::ts.eq(ts_ms),
                    tlog_checkpoints::note.eq(note),
                ))
                .execute(c)?;
            Ok(())
        }
    }
}

/// The stored checkpoint at `size`, or the newest one: (size, unix ms, note).
pub(crate) fn checkpoint(
    c: &mut AnyConnection,
    size: Option<i64>,
) -> Result<Option<(i64, i64, String)>> {
    let q = tlog_checkpoints::table
        .select((
            tlog_checkpoints::size,
            tlog_checkpoints::ts,
            tlog_checkpoints::note,
        ))
        .into_boxed();
    let q = match size {
        Some(s) => q.filter(tlog_checkpoints::size.eq(s)),
        None => q.order(tlog_checkpoints::size.desc()).limit(1),
    };
    Ok(q.first(c).optional()?)
}

/// The newest `n` stored checkpoints, newest first: (size, unix ms, note).
pub(crate) fn recent_checkpoints(c: &mut AnyConnection, n: i64) -> Result<Vec<(i64, i64, String)>> {
    Ok(tlog_checkpoints::table
        .select((
            tlog_checkpoints::size,
            tlog_checkpoints::ts,
            tlog_checkpoints::note,
        ))
        .order(tlog_checkpoints::size.desc())
        .limit(n)
        .load(c)?)
}

/// Entry `index`: (unix ms, body).
pub(crate) fn entry(c: &mut AnyConnection, index: i64) -> Result<(i64, Vec<u8>)> {
    let row: Option<(i64, Vec<u8>)> = tlog_entries::table
        .filter(tlog_entries::idx.eq(index))
        .select((tlog_entries::ts, tlog_entries::body))
        .first(c)
        .optional()?;
    match row {
        Some(r) => Ok(r),
        None => {
            let (size, _) = head(c)?;
            if (0..size).contains(&index) {
                Err(HsmError::Integrity(format!(
                    "transparency log entry {index} is missing from tlog_entries although the log has {size} entries: the database was changed outside kagi; restore it from a backup"
                )))
            } else {
                Err(HsmError::NotFound(format!(
                    "transparency log entry {index} (the log has {size} entries, numbered from 0)"
                )))
            }
        }
    }
}

/// Subtree hashes read from `tlog_nodes`, at most the size the head had when this was made.
/// Proof functions prefetch what they need in one query per 64 nodes.
pub(crate) struct DbNodes<'a> {
    conn: &'a mut AnyConnection,
    size: u64,
    cache: HashMap<(u32, u64), Hash>,
}

impl<'a> DbNodes<'a> {
    pub(crate) fn new(conn: &'a mut AnyConnection) -> Result<DbNodes<'a>> {
        let size = load_frontier(conn)?.size;
        Ok(DbNodes {
            conn,
            size,
            cache: HashMap::new(),
        })
    }

    /// Number of entries this source serves.
    #[cfg(test)]
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    fn check_complete(&self, level: u32, idx: u64) -> Result<()> {
        let end = idx
            .checked_add(1)
            .and_then(|e| e.checked_mul(1u64.checked_shl(level)?));
        match end {
            Some(e) if e <= self.size => Ok(()),
            _ => Err(kagi_tlog::Error::NoSuchNode {
                level,
                idx,
                size: self.size,
            }
            .into()),
        }
    }

    fn fetch(&mut self, wanted: &[(u32, u64)]) -> Result<()> {
        let mut missing = Vec::with_capacity(wanted.len());
        for &(level, idx) in wanted {
            self.check_complete(level, idx)?;
            if !self.cache.contains_key(&(level, idx)) {
                missing.push((level, idx));
            }
        }
        for chunk in missing.chunks(FETCH_CHUNK) {
            let mut q = tlog_nodes::table
                .select((tlog_nodes::level, tlog_nodes::idx, tlog_nodes::hash))
                .into_boxed();
            for (n, &(level, idx)) in chunk.iter().enumerate() {
                let one = tlog_nodes::level
                    .eq(i64::from(level))
                    .and(tlog_nodes::idx.eq(idx as i64));
                q = if n == 0 {
                    q.filter(one)
                } else {
                    q.or_filter(one)
                };
            }
            let rows: Vec<(i64, i64, Vec<u8>)> = q.load(self.conn)?;
            for (level, idx, hash) in rows {
                let (Ok(l), Ok(i)) = (u32::try_from(level), u64::try_from(idx)) else {
                    continue;
                };
                self.cache.insert((l, i), stored_hash(l, i, &hash)?);
            }
            for &(level, idx) in chunk {
                if !self.cache.contains_key(&(level, idx)) {
                    return Err(missing_node(level, idx, self.size));
                }
            }
        }
        Ok(())
    }
}

impl NodeSource for DbNodes<'_> {
    type Error = HsmError;

    fn node(&mut self, level: u32, idx: u64) -> Result<Hash> {
        if let Some(h) = self.cache.get(&(level, idx)) {
            return Ok(*h);
        }
        self.fetch(&[(level, idx)])?;
        self.cache
            .get(&(level, idx))
            .copied()
            .ok_or_else(|| missing_node(level, idx, self.size))
    }

    fn wants_prefetch(&self) -> bool {
        true
    }

    fn prefetch(&mut self, nodes: &[(u32, u64)]) -> Result<()> {
        self.fetch(nodes)
    }
}

/// Every stored node of the log, read from `tlog_nodes` (for bulk proof work). Fails if a
/// level has a gap, a missing node or a node beyond the head.
#[cfg(test)]
pub(crate) fn load_memory_nodes(c: &mut AnyConnection) -> Result<MemoryNodes> {
    let size = load_frontier(c)?.size;
    let mut levels: Vec<Vec<Hash>> = Vec::new();
    let mut level = 0u32;
    while level < u64::BITS && (size >> level) > 0 {
        let want = size >> level;
        let mut hashes: Vec<Hash> = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        loop {
            let rows: Vec<(i64, Vec<u8>)> = tlog_nodes::table
                .filter(tlog_nodes::level.eq(i64::from(level)))
                .filter(tlog_nodes::idx.ge(hashes.len() as i64))
                .order(tlog_nodes::idx.asc())
                .select((tlog_nodes::idx, tlog_nodes::hash))
                .limit(10_000)
                .load(c)?;
            let got = rows.len();
            for (idx, hash) in rows {
                let expected = hashes.len() as u64;
                if u64::try_from(idx).ok() != Some(expected) {
                    return Err(missing_node(level, expected, size));
                }
                if expected >= want {
                    return Err(HsmError::Integrity(format!(
                            "tlog_nodes holds a node at level {level} index {idx}, beyond the {size} entries the head records: the database was changed outside kagi; run the log verification"
                        )));
                }
                hashes.push(stored_hash(level, expected, &hash)?);
            }
            if got < 10_000 {
                break;
            }
        }
        if (hashes.len() as u64) < want {
            return Err(missing_node(level, hashes.len() as u64, size));
        }
        levels.push(hashes);
        level += 1;
    }
    MemoryNodes::from_levels(levels).ok_or_else(|| {
            HsmError::Integrity(format!(
                "tlog_nodes does not hold the complete subtrees of a log of {size} entries: the database was changed outside kagi; run the log verification"
            ))
        })
}

/// Full check, as an auditor runs it. Recomputes every leaf hash from `tlog_entries`, every
/// subtree node and the head from those leaves, and compares them with what is stored; checks
/// every checkpoint's signature (by `key_name` / `public_key`) and that its root is the root
/// recomputed at its size. Returns (entries, checkpoints verified); the error names the first
/// bad entry (or node, by the entries it covers) or checkpoint size.
pub(crate) fn verify_all(
    c: &mut AnyConnection,
    key_name: &str,
    public_key: &[u8],
) -> Result<(i64, i64)> {
    let head = load_frontier(c)?;
    let mut cps = CheckpointCursor::default();
    let mut checked = 0i64;
    let mut f = Frontier::default();
    while let Some((size, note)) = cps.next_if_at_most(c, 0)? {
        check_checkpoint(size, &note, &f.root(), key_name, public_key)?;
        checked += 1;
    }
    loop {
        let page: Vec<(i64, Vec<u8>)> = tlog_entries::table
            .filter(tlog_entries::idx.ge(to_i64(f.size)?))
            .order(tlog_entries::idx.asc())
            .select((tlog_entries::idx, tlog_entries::body))
            .limit(VERIFY_PAGE)
            .load(c)?;
        let n = page.len();
        let mut computed: Vec<(u32, u64, Hash)> = Vec::with_capacity(n * 2);
        let mut roots: Vec<(i64, String, Hash)> = Vec::new();
        for (idx, body) in page {
            if u64::try_from(idx).ok() != Some(f.size) {
                return Err(HsmError::Integrity(format!(
                    "transparency log entry {} is missing (the next stored entry is {idx}): entries were deleted outside kagi; restore them from a backup",
                    f.size
                )));
            }
            f.push_reporting(leaf_hash(&body), &mut |l, i, h| computed.push((l, i, *h)));
            let now = to_i64(f.size)?;
            while let Some((size, note)) = cps.next_if_at_most(c, now)? {
                roots.push((size, note, f.root()));
            }
        }
        compare_nodes(c, &computed, f.size)?;
        for (size, note, root) in &roots {
            check_checkpoint(*size, note, root, key_name, public_key)?;
            checked += 1;
        }
        if (n as i64) < VERIFY_PAGE {
            break;
        }
    }
    if let Some((size, _)) = cps.next_if_at_most(c, i64::MAX)? {
        return Err(HsmError::Integrity(format!(
            "the checkpoint at size {size} covers transparency log entries {}..{} that are not stored: entries were deleted outside kagi; restore them from a backup",
            f.size,
            size - 1
        )));
    }
    if head.size != f.size {
        return Err(HsmError::Integrity(format!(
            "the transparency log head says {} entries but {} are stored: tlog_head or tlog_entries was changed outside kagi",
            head.size, f.size
        )));
    }
    if head.nodes != f.nodes {
        return Err(HsmError::Integrity(format!(
            "the transparency log head's frontier is not the one recomputed from its {} entries: tlog_head was changed outside kagi; restore it from a backup",
            f.size
        )));
    }
    let stored: i64 = tlog_nodes::table.count().get_result(c)?;
    let expected: u64 = (0..u64::BITS).map(|l| f.size >> l).sum();
    if u64::try_from(stored).ok() != Some(expected) {
        return Err(extra_nodes(c, f.size, stored, expected));
    }
    Ok((to_i64(f.size)?, checked))
}

/// Compare recomputed nodes, in the order they were completed, with the stored rows.
fn compare_nodes(c: &mut AnyConnection, computed: &[(u32, u64, Hash)], size: u64) -> Result<()> {
    let mut ranges: Vec<(u32, u64, u64)> = Vec::new();
    for &(l, i, _) in computed {
        match ranges.iter_mut().find(|r| r.0 == l) {
            Some(r) => {
                r.1 = r.1.min(i);
                r.2 = r.2.max(i);
            }
            None => ranges.push((l, i, i)),
        }
    }
    let mut stored: HashMap<(u32, u64), Vec<u8>> = HashMap::with_capacity(computed.len());
    for chunk in ranges.chunks(FETCH_CHUNK) {
        let mut q = tlog_nodes::table
            .select((tlog_nodes::level, tlog_nodes::idx, tlog_nodes::hash))
            .into_boxed();
        for (n, &(level, lo, hi)) in chunk.iter().enumerate() {
            let one = tlog_nodes::level
                .eq(i64::from(level))
                .and(tlog_nodes::idx.between(lo as i64, hi as i64));
            q = if n == 0 {
                q.filter(one)
            } else {
                q.or_filter(one)
            };
        }
        let rows: Vec<(i64, i64, Vec<u8>)> = q.load(c)?;
        for (level, idx, hash) in rows {
            if let (Ok(l), Ok(i)) = (u32::try_from(level), u64::try_from(idx)) {
                stored.insert((l, i), hash);
            }
        }
    }
    for &(level, idx, ref hash) in computed {
        match stored.get(&(level, idx)) {
            None => return Err(missing_node(level, idx, size)),
            Some(h) if h[..] == hash[..] => {}
            Some(_) if level == 0 => {
                return Err(HsmError::Integrity(format!(
                    "transparency log entry {idx} was changed after it was logged: its body no longer hashes to the leaf hash stored when it was appended. Restore tlog_entries from a backup; the signed checkpoints show which content is genuine"
                )))
            }
            Some(_) => {
                let (lo, hi) = covered(level, idx);
                return Err(HsmError::Integrity(format!(
                    "transparency log entries {lo}..{hi} do not hash to the stored node at level {level} index {idx}: an entry or the node was changed outside kagi. Restore the database from a backup; the signed checkpoints show which content is genuine"
                )));
            }
        }
    }
    Ok(())
}

/// Name the level holding rows that should not exist.
fn extra_nodes(c: &mut AnyConnection, size: u64, stored: i64, expected: u64) -> HsmError {
    let mut detail = String::new();
    for level in 0..u64::BITS {
        let beyond = (size >> level) as i64;
        let n: i64 = tlog_nodes::table
            .filter(tlog_nodes::level.eq(i64::from(level)))
            .filter(tlog_nodes::idx.ge(beyond).or(tlog_nodes::idx.lt(0)))
            .count()
            .get_result(c)
            .unwrap_or(0);
        if n > 0 {
            detail = format!(" ({n} at level {level} from index {beyond} on)");
            break;
        }
    }
    HsmError::Integrity(format!(
        "tlog_nodes holds {stored} rows but a log of {size} entries has {expected} complete subtrees{detail}: rows were added outside kagi; run the log verification on a backup"
    ))
}

fn check_checkpoint(
    size: i64,
    note: &str,
    root: &Hash,
    key_name: &str,
    public_key: &[u8],
) -> Result<()> {
    let (_, stated, signed_root) = open_checkpoint(note, key_name, public_key).map_err(|why| {
        HsmError::Integrity(format!(
            "the transparency log checkpoint at size {size} does not verify: {why}"
        ))
    })?;
    if i64::try_from(stated).ok() != Some(size) {
        return Err(HsmError::Integrity(format!(
            "the transparency log checkpoint stored at size {size} is signed for size {stated}: tlog_checkpoints was changed outside kagi"
        )));
    }
    if signed_root != *root {
        return Err(HsmError::Integrity(format!(
            "the transparency log checkpoint at size {size} signs a root that entries 0..{} do not hash to: entries were changed, removed or reordered outside kagi. Restore them from a backup",
            size - 1
        )));
    }
    Ok(())
}

/// Checkpoints in size order, read a page at a time.
#[derive(Default)]
struct CheckpointCursor {
    buf: VecDeque<(i64, String)>,
    after: Option<i64>,
    done: bool,
}

impl CheckpointCursor {
    /// The next checkpoint if its size is at most `limit`.
    fn next_if_at_most(
        &mut self,
        c: &mut AnyConnection,
        limit: i64,
    ) -> Result<Option<(i64, String)>> {
        if self.buf.is_empty() && !self.done {
            let q = tlog_checkpoints::table
                .select((tlog_checkpoints::size, tlog_checkpoints::note))
                .order(tlog_checkpoints::size.asc())
                .limit(1000)
                .into_boxed();
            let q = match self.after {
                Some(a) => q.filter(tlog_checkpoints::size.gt(a)),
                None => q,
            };
            let rows: Vec<(i64, String)> = q.load(c)?;
            self.done = rows.len() < 1000;
            self.after = rows.last().map(|r| r.0).or(self.after);
            self.buf.extend(rows);
        }
        match self.buf.front() {
            Some((size, _)) if *size <= limit => Ok(self.buf.pop_front()),
            _ => Ok(None),
        }
    }
}

fn load_frontier(c: &mut AnyConnection) -> Result<Frontier> {
    let row: Option<(i64, Vec<u8>)> = tlog_head::table
        .filter(tlog_head::id.eq(1))
        .select((tlog_head::size, tlog_head::frontier))
        .first(c)
        .optional()?;
    let (size, bytes) = row.ok_or_else(missing_head)?;
    u64::try_from(size)
        .ok()
        .and_then(|s| Frontier::from_bytes(s, &bytes))
        .ok_or_else(|| {
            HsmError::Integrity(format!(
                "the transparency log head (size {size}, {} frontier bytes) is malformed: tlog_head was changed outside kagi; restore it from a backup",
                bytes.len()
            ))
        })
}

fn missing_head() -> HsmError {
    HsmError::Integrity(
        "the transparency log head row (tlog_head id 1) is missing: the database was changed outside kagi; restore it from a backup".into(),
    )
}

/// Entries covered by the node at (level, idx), inclusive.
fn covered(level: u32, idx: u64) -> (u64, u64) {
    let lo = idx << level;
    (lo, lo + (1u64 << level) - 1)
}

fn missing_node(level: u32, idx: u64, size: u64) -> HsmError {
    let what = if level == 0 {
        format!("the leaf hash of transparency log entry {idx}")
    } else {
        let (lo, hi) = covered(level, idx);
        format!("the node at level {level} index {idx} (entries {lo}..{hi})")
    };
    HsmError::Integrity(format!(
        "{what} is missing from tlog_nodes although the log has {size} entries: the database was changed outside kagi; restore it from a backup"
    ))
}

fn stored_hash(level: u32, idx: u64, bytes: &[u8]) -> Result<Hash> {
    Hash::try_from(bytes).map_err(|_| {
        HsmError::Integrity(format!(
            "the stored node at level {level} index {idx} is {} bytes, not 32: tlog_nodes was changed outside kagi; restore it from a backup",
            bytes.len()
        ))
    })
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| HsmError::Store(format!("log size {n} does not fit the store")))
}
