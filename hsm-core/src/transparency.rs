//! The public transparency log as `Hsm` offers it: checkpoints, entries and proofs for anyone,
//! the full recomputation for auditors. Every signature kagi makes is appended by the commit
//! thread in the transaction that counts its use (see `commit.rs` and `tlog`).

use serde::Serialize;

use crate::auth::{Role, Session};
use crate::error::{HsmError, Result};
use crate::hsm::Hsm;
use crate::merkle::Hash;
use crate::tlog;

/// A signed checkpoint of the log (C2SP signed note).
#[derive(Debug, Clone, Serialize)]
pub struct TlogCheckpoint {
    pub size: i64,
    /// Unix milliseconds.
    pub ts: i64,
    pub note: String,
}

/// One entry: its index, when it was appended (unix ms), its body (JSON) and leaf hash.
#[derive(Debug, Clone, Serialize)]
pub struct TlogEntry {
    pub index: i64,
    pub ts: i64,
    pub body: String,
    pub leaf_hash: String,
}

fn bad_range(what: String) -> HsmError {
    HsmError::BadInput(what)
}

impl Hsm {
    /// The log key's Ed25519 public key.
    pub fn tlog_public_key(&self) -> Result<[u8; 32]> {
        use aws_lc_rs::signature::KeyPair;
        let u = self.unsealed()?;
        u.audit
            .tlog
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| HsmError::Crypto("Ed25519 public key is not 32 bytes"))
    }

    /// The verifier key string clients pin (C2SP signed-note format).
    pub fn tlog_verifier_key(&self) -> Result<String> {
        Ok(tlog::verifier_key(tlog::ORIGIN, &self.tlog_public_key()?))
    }

    /// The newest checkpoint, or the one at `size`.
    pub fn tlog_checkpoint(&self, size: Option<i64>) -> Result<Option<TlogCheckpoint>> {
        let mut c = self.inner.store.conn()?;
        Ok(
            tlog::checkpoint(&mut c, size)?.map(|(size, ts, note)| TlogCheckpoint {
                size,
                ts,
                note,
            }),
        )
    }

    pub fn tlog_entry(&self, index: i64) -> Result<TlogEntry> {
        let mut c = self.inner.store.conn()?;
        let (ts, body) = tlog::entry(&mut c, index)?;
        Ok(TlogEntry {
            index,
            ts,
            leaf_hash: hex::encode(tlog::entry_hash(&body)),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// RFC 9162 inclusion proof of entry `index` in the tree of `tree_size` entries.
    pub fn tlog_inclusion_proof(&self, index: i64, tree_size: i64) -> Result<Vec<Hash>> {
        if index < 0 || tree_size <= index {
            return Err(bad_range(format!(
                "an inclusion proof needs 0 <= index < tree_size (got index {index}, tree_size {tree_size})"
            )));
        }
        let mut c = self.inner.store.conn()?;
        let mut nodes = tlog::DbNodes::new(&mut c)?;
        tlog::inclusion_proof(&mut nodes, index as u64, tree_size as u64)
    }

    /// RFC 9162 consistency proof between two tree sizes.
    pub fn tlog_consistency_proof(&self, first: i64, second: i64) -> Result<Vec<Hash>> {
        if first < 0 || second < first {
            return Err(bad_range(format!(
                "a consistency proof needs 0 <= first <= second (got {first}, {second})"
            )));
        }
        let mut c = self.inner.store.conn()?;
        let mut nodes = tlog::DbNodes::new(&mut c)?;
        tlog::consistency_proof(&mut nodes, first as u64, second as u64)
    }

    /// Recompute the whole log from its entries and check every stored node and checkpoint
    /// (auditors). Returns (entries, checkpoints); the error names the first bad entry.
    pub fn tlog_verify(&self, s: &Session) -> Result<(i64, i64)> {
        s.require(Role::Auditor, "verify the transparency log")?;
        let key = self.tlog_public_key()?;
        let mut c = self.inner.store.conn()?;
        tlog::verify_all(&mut c, tlog::ORIGIN, &key)
    }
}
