//! The log as C2SP tlog-tiles (https://c2sp.org/tlog-tiles), read from what is stored.
//!
//! Tile (level `L`, index `N`) holds, for `i` in `0..256`, the root of entries
//! `[(N*256 + i) * 256^L, (N*256 + i + 1) * 256^L)`: a perfect subtree of height `8L`, which
//! `tlog_nodes` stores once complete as the node at tree level `8L`, index `N*256 + i`. So a
//! tile is one range read of one level, and nothing is hashed to serve it. A partial tile of
//! width `W` is the first `W` of those nodes; it never changes either, since nodes are
//! written once.
//!
//! Tiles are served up to the size of the newest signed checkpoint (not the head, which could
//! run ahead of it inside a batch): a client can only verify tiles a checkpoint covers.

use diesel::prelude::*;

use crate::error::{HsmError, Result};
use crate::hsm::Hsm;
use crate::store::schema::{tlog_checkpoints, tlog_entries, tlog_nodes};
use crate::store::AnyConnection;

/// Hashes per full tile, and entries per full bundle.
pub const TILE_WIDTH: u64 = 256;
/// The highest tile level a log of 2^63 entries can have (8 levels of 8 tree levels each).
pub const MAX_TILE_LEVEL: u32 = 7;

/// What a tile request names: level, index, and the width if partial (1..=255).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRef {
    pub level: u32,
    pub index: u64,
    pub width: Option<u16>,
}

impl TileRef {
    fn width(&self) -> u64 {
        self.width.map_or(TILE_WIDTH, u64::from)
    }

    /// The first and one-past-last node indices (at tree level `8 * level`) the tile holds.
    /// `None` when they do not fit a u64 (no log has such a tile).
    fn node_range(&self) -> Option<(u64, u64)> {
        let first = self.index.checked_mul(TILE_WIDTH)?;
        Some((first, first.checked_add(self.width())?))
    }
}

fn beyond(t: &TileRef, size: u64) -> HsmError {
    let what = match t.width {
        Some(w) => format!("partial tile {}/{} of width {w}", t.level, t.index),
        None => format!("tile {}/{}", t.level, t.index),
    };
    HsmError::NotFound(format!(
        "{what} (the newest checkpoint covers {size} entries: fetch /log/checkpoint and ask only for the tiles its size needs)"
    ))
}

/// The size of the newest signed checkpoint (0 if none).
fn checkpoint_size(c: &mut AnyConnection) -> Result<u64> {
    let size: Option<i64> = tlog_checkpoints::table
        .select(diesel::dsl::max(tlog_checkpoints::size))
        .first(c)?;
    Ok(size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
}

/// Whether the tile exists in a tree of `size` entries: every node it holds is complete.
/// The tile's node range when it exists in a tree of `size` entries (every node it holds is
/// complete), else the `NotFound` to answer.
fn within(t: &TileRef, size: u64) -> Result<(u64, u64)> {
    match t.node_range() {
        Some((first, end)) if t.level <= MAX_TILE_LEVEL && end <= size >> (8 * t.level) => {
            Ok((first, end))
        }
        _ => Err(beyond(t, size)),
    }
}

/// The tile's bytes: its hashes concatenated (32 bytes each).
pub(crate) fn tile(c: &mut AnyConnection, t: &TileRef) -> Result<Vec<u8>> {
    let (first, end) = within(t, checkpoint_size(c)?)?;
    let rows: Vec<(i64, Vec<u8>)> = tlog_nodes::table
        .filter(tlog_nodes::level.eq(i64::from(8 * t.level)))
        .filter(tlog_nodes::idx.ge(first as i64))
        .filter(tlog_nodes::idx.lt(end as i64))
        .order(tlog_nodes::idx.asc())
        .select((tlog_nodes::idx, tlog_nodes::hash))
        .load(c)?;
    let mut out = Vec::with_capacity(rows.len() * 32);
    for (n, (idx, hash)) in rows.iter().enumerate() {
        if u64::try_from(*idx).ok() != Some(first + n as u64) || hash.len() != 32 {
            return Err(damaged(t));
        }
        out.extend_from_slice(hash);
    }
    if out.len() as u64 != (end - first) * 32 {
        return Err(damaged(t));
    }
    Ok(out)
}

fn damaged(t: &TileRef) -> HsmError {
    HsmError::Integrity(format!(
        "the stored nodes of tile {}/{} are missing or malformed although the log covers them: the database was changed outside kagi; run the log verification",
        t.level, t.index
    ))
}

/// The entry bodies of bundle `t` (level 0 only), in index order.
pub(crate) fn entries(c: &mut AnyConnection, t: &TileRef) -> Result<Vec<Vec<u8>>> {
    let size = checkpoint_size(c)?;
    if t.level != 0 {
        return Err(beyond(t, size));
    }
    let (first, end) = within(t, size)?;
    let rows: Vec<(i64, Vec<u8>)> = tlog_entries::table
        .filter(tlog_entries::idx.ge(first as i64))
        .filter(tlog_entries::idx.lt(end as i64))
        .order(tlog_entries::idx.asc())
        .select((tlog_entries::idx, tlog_entries::body))
        .load(c)?;
    if rows.len() as u64 != end - first
        || rows
            .iter()
            .enumerate()
            .any(|(n, (idx, _))| u64::try_from(*idx).ok() != Some(first + n as u64))
    {
        return Err(HsmError::Integrity(format!(
            "transparency log entries {first}..{} are not all stored although the log covers them: the database was changed outside kagi; restore it from a backup",
            end - 1
        )));
    }
    Ok(rows.into_iter().map(|(_, body)| body).collect())
}

/// An entry bundle's bytes: each entry as a big-endian uint16 length, then its bytes.
pub fn bundle(bodies: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bodies.iter().map(|b| b.len() + 2).sum());
    for b in bodies {
        let len = u16::try_from(b.len()).map_err(|_| {
            HsmError::BadInput(format!(
                "a log entry of {} bytes does not fit an entry bundle (at most 65,535 bytes each): read it with /log/entries/<index>",
                b.len()
            ))
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(b);
    }
    Ok(out)
}

impl Hsm {
    /// Tile `t` of the log (C2SP tlog-tiles), up to the newest checkpoint's size. A tile beyond
    /// it is `NotFound`.
    pub fn tlog_tile(&self, t: &TileRef) -> Result<Vec<u8>> {
        let mut c = self.inner.store.conn()?;
        tile(&mut c, t)
    }

    /// The entry bodies of bundle `t` (`level` 0), up to the newest checkpoint's size. The
    /// caller decides who may read them, and lays them out with [`bundle`].
    pub fn tlog_entry_bundle(&self, t: &TileRef) -> Result<Vec<Vec<u8>>> {
        let mut c = self.inner.store.conn()?;
        entries(&mut c, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreConfig};
    use crate::tlog::{append, checkpoint_body, sign_note, store_checkpoint};
    use aws_lc_rs::signature::Ed25519KeyPair;
    use diesel::Connection;
    use kagi_tlog::merkle::leaf_hash;
    use kagi_tlog::reference::ref_mth;

    fn t(level: u32, index: u64, width: Option<u16>) -> TileRef {
        TileRef {
            level,
            index,
            width,
        }
    }

    /// The spec's example: a tree of 70,000 entries is 273 full level-0 tiles, a partial
    /// level-0 tile of width 112, one full level-1 tile, a partial level-1 tile of width 17 and
    /// a partial level-2 tile of width 1. Each served hash is the RFC 6962 MTH of the entries it
    /// stands for (recomputed by the RFC's recursion), and nothing beyond the checkpoint's size
    /// is served, even when the log's head has grown past it.
    #[test]
    fn tiles_of_the_specs_70000_entry_example() {
        const N: u64 = 70_000;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig::sqlite_in(dir.path())).unwrap();
        let mut c = store.conn().unwrap();
        let key = Ed25519KeyPair::generate().unwrap();
        let bodies: Vec<Vec<u8>> = (0..N + 300)
            .map(|i| format!("entry {i}").into_bytes())
            .collect();
        let leaves: Vec<_> = bodies.iter().map(|b| leaf_hash(b)).collect();
        // Nothing is served before the first checkpoint.
        assert!(matches!(
            tile(&mut c, &t(0, 0, Some(1))),
            Err(HsmError::NotFound(_))
        ));
        c.transaction::<_, HsmError, _>(|c| {
            let mut root = [0u8; 32];
            let mut size = 0;
            for chunk in bodies[..N as usize].chunks(5000) {
                (_, size, root) = append(c, chunk, 1)?;
            }
            let note = sign_note(&checkpoint_body("t", size as u64, &root), "t", &key)?;
            store_checkpoint(c, size, 1, &note)?;
            // The head runs 300 entries past the checkpoint, as inside a batch.
            append(c, &bodies[N as usize..], 2)?;
            Ok(())
        })
        .unwrap();

        let mut hashes = |level: u32, index: u64, width: Option<u16>| -> Vec<[u8; 32]> {
            let b = tile(&mut c, &t(level, index, width)).unwrap();
            assert_eq!(b.len(), 32 * width.map_or(256, usize::from));
            b.chunks(32).map(|h| h.try_into().unwrap()).collect()
        };
        let span = |level: u32, index: u64, i: usize| {
            let per = 256usize.pow(level);
            let first = (index as usize * 256 + i) * per;
            ref_mth(&leaves[first..first + per])
        };
        for (level, index, width) in [
            (0, 0, None),
            (0, 137, None),
            (0, 272, None),
            (0, 273, Some(112)),
            (0, 273, Some(1)),
            (1, 0, None),
            (1, 1, Some(17)),
            (2, 0, Some(1)),
        ] {
            for (i, h) in hashes(level, index, width).iter().enumerate() {
                assert_eq!(*h, span(level, index, i), "tile {level}/{index} hash {i}");
            }
        }
        // Beyond the checkpoint (though the head has it), or beyond the tree: not found.
        for (level, index, width) in [
            (0, 273, None),
            (0, 273, Some(113)),
            (0, 274, Some(1)),
            (1, 1, None),
            (1, 1, Some(18)),
            (2, 0, None),
            (2, 0, Some(2)),
            (3, 0, Some(1)),
            (8, 0, Some(1)),
            (63, 0, Some(1)),
            (0, u64::MAX, None),
            (0, u64::MAX / 256, None),
            (0, u64::MAX / 256, Some(255)),
        ] {
            assert!(
                matches!(
                    tile(&mut c, &t(level, index, width)),
                    Err(HsmError::NotFound(_))
                ),
                "tile {level}/{index} {width:?}"
            );
        }

        // Entry bundles hold the bodies of the level-0 tiles' leaves.
        let b = entries(&mut c, &t(0, 273, Some(112))).unwrap();
        assert_eq!(b.len(), 112);
        assert_eq!(b[0], bodies[273 * 256]);
        let b = entries(&mut c, &t(0, 5, None)).unwrap();
        assert_eq!(b.len(), 256);
        assert!(b.iter().zip(&bodies[1280..]).all(|(x, y)| x == y));
        assert!(matches!(
            entries(&mut c, &t(0, 273, Some(113))),
            Err(HsmError::NotFound(_))
        ));
        assert!(matches!(
            entries(&mut c, &t(1, 0, None)),
            Err(HsmError::NotFound(_))
        ));
        let laid = bundle(&[b"ab".to_vec(), vec![], vec![7u8; 300]]).unwrap();
        assert_eq!(&laid[..6], &[0, 2, b'a', b'b', 0, 0]);
        assert_eq!(&laid[6..8], &[1, 44]);
        assert_eq!(laid.len(), 8 + 300);
        assert!(matches!(
            bundle(&[vec![0u8; 65_536]]),
            Err(HsmError::BadInput(_))
        ));

        // A deleted node is named, not served short.
        diesel::sql_query("DELETE FROM tlog_nodes WHERE level = 8 AND idx = 3")
            .execute(&mut c)
            .unwrap();
        assert!(matches!(
            tile(&mut c, &t(1, 0, None)),
            Err(HsmError::Integrity(_))
        ));
    }
}
