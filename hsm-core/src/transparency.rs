//! The public transparency log as `Hsm` offers it: checkpoints, entries and proofs for anyone,
//! the full recomputation for auditors. Every signature kagi makes is appended by the commit
//! thread in the transaction that counts its use (see `commit.rs` and `tlog`).

use serde::Serialize;

use crate::auth::{Role, Session};
use crate::error::{HsmError, Result};
use crate::hsm::Hsm;
use crate::tlog;
use kagi_tlog::{Hash, PromiseBody};

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

/// What Rekor v1 calls an inclusion promise: see [`Hsm::tlog_inclusion_promise`].
#[derive(Debug, Clone)]
pub struct InclusionPromise {
    pub index: i64,
    /// Unix seconds.
    pub integrated_time: i64,
    pub body: Vec<u8>,
    /// Ed25519 by the log key over the canonical JSON.
    pub signature: Vec<u8>,
}

/// DER of SubjectPublicKeyInfo { id-Ed25519 (1.3.101.112), BIT STRING of 32 bytes } up to the
/// key itself (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Newest checkpoints looked at for one a quorum cosigned.
const WITNESSED_SCAN: i64 = 64;

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

    /// The log key as an X.509 SubjectPublicKeyInfo (DER): how Sigstore trust roots name it.
    pub fn tlog_public_key_spki(&self) -> Result<Vec<u8>> {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&self.tlog_public_key()?);
        Ok(spki)
    }

    /// The log's id in the RFC 6962 sense (Rekor's too): SHA-256 of its key's SPKI.
    pub fn tlog_log_id(&self) -> Result<[u8; 32]> {
        let d =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.tlog_public_key_spki()?);
        d.as_ref()
            .try_into()
            .map_err(|_| HsmError::Crypto("SHA-256 is not 32 bytes"))
    }

    /// A signed promise that entry `index` is in the log, as Rekor v1 makes it (a "signed entry
    /// timestamp"): the log key's signature over the RFC 8785 canonical JSON of the entry's
    /// body (base64), integration time (unix seconds), log id (hex) and index. The promise
    /// is made from what the log stored, so it states the entry's real time and index.
    pub fn tlog_inclusion_promise(&self, index: i64) -> Result<InclusionPromise> {
        let u = self.unsealed()?;
        let log_id = self.tlog_log_id()?;
        let (ts, body) = {
            let mut c = self.inner.store.conn()?;
            tlog::entry(&mut c, index)?
        };
        let integrated_time = ts / 1000;
        let signed = PromiseBody {
            body: &body,
            integrated_time,
            log_id: &log_id,
            log_index: index,
        }
        .canonical_bytes();
        let signature = u.audit.tlog.sign(&signed).as_ref().to_vec();
        Ok(InclusionPromise {
            index,
            integrated_time,
            body,
            signature,
        })
    }

    /// The checkpoint at `size` (or the newest) with a second signature line for Rekor v1
    /// clients, which find the log's signature by the first 4 bytes of its key id (SHA-256 of
    /// the SPKI) instead of the C2SP key hash. Same key, same text: C2SP verifiers still
    /// find their line and ignore the other.
    pub fn tlog_checkpoint_for_rekor(&self, size: Option<i64>) -> Result<Option<TlogCheckpoint>> {
        use base64::Engine;
        let Some(mut cp) = self.tlog_checkpoint(size)? else {
            return Ok(None);
        };
        let u = self.unsealed()?;
        let text = tlog::unverified_text(&cp.note)?;
        let mut blob = self.tlog_log_id()?[..4].to_vec();
        blob.extend_from_slice(u.audit.tlog.sign(text.as_bytes()).as_ref());
        cp.note.push_str(&format!(
            "\u{2014} {} {}\n",
            tlog::ORIGIN,
            base64::engine::general_purpose::STANDARD.encode(blob)
        ));
        Ok(Some(cp))
    }

    /// The verifier key string clients pin (C2SP signed-note format).
    pub fn tlog_verifier_key(&self) -> Result<String> {
        Ok(tlog::verifier_key(tlog::ORIGIN, &self.tlog_public_key()?))
    }

    /// The newest checkpoint, or the one at `size`, with the cosignatures stored with it.
    /// Under witnesses the newest is the newest a quorum cosigned (results are released only
    /// once one covers them, so a proof against it covers every released result); a log no
    /// quorum cosigned yet answers its newest checkpoint.
    pub fn tlog_checkpoint(&self, size: Option<i64>) -> Result<Option<TlogCheckpoint>> {
        let mut c = self.inner.store.conn()?;
        if let (None, Some(set)) = (size, &self.inner.witnesses) {
            let quorate = |note: &str| {
                set.witnesses
                    .iter()
                    .filter(|w| {
                        kagi_tlog::open_cosignature(note, w.name(), &w.public_key()).is_ok()
                    })
                    .count()
                    >= set.quorum
            };
            let recent = tlog::recent_checkpoints(&mut c, WITNESSED_SCAN)?;
            let newest = recent.first().cloned();
            let mut witnessed = recent.into_iter().find(|(_, _, note)| quorate(note));
            // This process's newest witnessed checkpoint, whose lines may not be stored yet.
            let in_memory = self
                .unsealed()
                .ok()
                .and_then(|u| u.committer.gate().and_then(|g| g.witnessed_note()));
            if let Some((size, note)) = in_memory {
                let size = size as i64;
                if witnessed.as_ref().is_none_or(|(s, _, _)| *s < size) {
                    if let Some((s, ts, _)) = tlog::checkpoint(&mut c, Some(size))? {
                        witnessed = Some((s, ts, note));
                    }
                }
            }
            if witnessed.is_none() {
                // Further back than the scan: the size this process saw a quorum cosign.
                if let Some(w) = self.witness_status().filter(|w| w.witnessed_size > 0) {
                    witnessed = tlog::checkpoint(&mut c, Some(w.witnessed_size))?
                        .filter(|(_, _, note)| quorate(note));
                }
            }
            return Ok(witnessed.or(newest).map(|(size, ts, note)| TlogCheckpoint {
                size,
                ts,
                note,
            }));
        }
        Ok(
            tlog::checkpoint(&mut c, size)?.map(|(size, ts, note)| TlogCheckpoint {
                size,
                ts,
                note,
            }),
        )
    }

    /// The witnesses' state, when kagi is witnessed and unsealed.
    pub fn witness_status(&self) -> Option<crate::witnessing::WitnessStatus> {
        let u = self.unsealed().ok()?;
        let mut status = u.committer.gate().map(|g| g.status())?;
        if status.rollback.is_none() {
            status.rollback = self.rollback_detected();
        }
        Some(status)
    }

    /// Why kagi stopped releasing results, if a witness showed the database went back or
    /// forked and officers have not recovered from it yet: what `/readyz`, `/metrics` and
    /// `kagi status` report.
    pub fn rollback_detected(&self) -> Option<String> {
        let u = self.unsealed().ok()?;
        if let Some(why) = u.committer.gate().and_then(|g| g.rollback()) {
            return Some(why);
        }
        let seq = u.unrecovered_rollback()?;
        Some(format!(
            "a witness showed that this database was restored, forked or truncated (audit record {seq}), and officers have not recovered from it yet: kagi releases nothing until they do. Once the witnesses' operators have reset kagi's log on them ('kagi witness forget') and kagi restarted, an officer runs 'kagi recover-rollback --reason TEXT', which the policy's quorum approves (README, \"Witnessed log\")"
        ))
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
