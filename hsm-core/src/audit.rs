//! The audit log: append-only records in a Merkle tree (RFC 9162 hashing), each record
//! MAC'd under a key derived from the master key, and a checkpoint (tree size + root) signed by
//! the audit key after every committed batch.
//!
//! Why both a MAC and a tree: the per-record MAC lets `verify` name exactly which record was
//! changed, inserted or moved; the signed tree root lets anyone holding only the audit public key
//! check the log offline and lets later consistency proofs show that it only grew.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{HsmError, Result};
use crate::store::schema::{audit_checkpoints, audit_head, audit_records};
use crate::store::AnyConnection;
use kagi_tlog::merkle::{leaf_hash, Frontier};

/// One audit record as stored and as shown to auditors.
#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Insertable, PartialEq, Eq)]
#[diesel(table_name = audit_records)]
// NULL, not DEFAULT, for a missing value: SQLite takes many rows in one INSERT only then.
#[diesel(treat_none_as_default_value = false)]
pub struct AuditEvent {
    pub seq: i64,
    /// Unix milliseconds.
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub partition_name: Option<String>,
    pub key_id: Option<String>,
    /// For key uses: the key's usage count after this use.
    pub use_hi: Option<i64>,
    /// `ok`, or `denied:<code>` / `failed:<code>`.
    pub outcome: String,
    /// JSON object with action-specific detail. Never secrets.
    pub detail: String,
    #[serde(with = "crate::b64")]
    pub mac: Vec<u8>,
}

impl AuditEvent {
    /// Canonical bytes of everything but the MAC: the Merkle leaf and the MAC input.
    pub(crate) fn entry_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.detail.len());
        let mut put = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        put(b"kagi-audit-v1");
        put(&self.seq.to_be_bytes());
        put(&self.ts.to_be_bytes());
        put(self.actor.as_bytes());
        put(self.action.as_bytes());
        put(self.partition_name.as_deref().unwrap_or("\u{0}").as_bytes());
        put(self.key_id.as_deref().unwrap_or("\u{0}").as_bytes());
        put(&self.use_hi.unwrap_or(-1).to_be_bytes());
        put(self.outcome.as_bytes());
        put(self.detail.as_bytes());
        out
    }
}

/// A signed statement "the log had `tree_size` records with this root".
#[derive(Debug, Clone, Serialize, Deserialize, Queryable, Insertable)]
#[diesel(table_name = audit_checkpoints)]
pub struct Checkpoint {
    pub tree_size: i64,
    #[serde(with = "crate::b64")]
    pub root: Vec<u8>,
    /// ECDSA P-256 / SHA-256, DER, over [`Checkpoint::signed_text`].
    #[serde(with = "crate::b64")]
    pub signature: Vec<u8>,
    pub ts: i64,
}

impl Checkpoint {
    /// The exact bytes the audit key signs (a C2SP signed-note style body).
    pub fn signed_text(tree_size: i64, root: &[u8], ts: i64) -> String {
        format!(
            "kagi audit log\n{tree_size}\n{}\n{ts}\n",
            base64::engine::general_purpose::STANDARD.encode(root)
        )
    }
}

/// The result of a successful verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditReport {
    pub records: i64,
    pub checkpoints_verified: i64,
    pub root: String,
    /// SPKI DER (base64) of the key that signed the checkpoints.
    pub audit_public_key: String,
}

/// Keys the log needs, derived or unsealed at unseal time.
pub(crate) struct AuditKeys {
    pub mac: hmac::Key,
    pub signer: EcdsaKeyPair,
    /// Signs the transparency log's checkpoints (see `tlog`).
    pub tlog: aws_lc_rs::signature::Ed25519KeyPair,
}

impl AuditKeys {
    pub(crate) fn mac_of(&self, ev: &AuditEvent) -> Vec<u8> {
        hmac::sign(&self.mac, &ev.entry_bytes()).as_ref().to_vec()
    }

    pub(crate) fn sign_checkpoint(&self, size: i64, root: &[u8], ts: i64) -> Result<Checkpoint> {
        let text = Checkpoint::signed_text(size, root, ts);
        let sig = self
            .signer
            .sign(&aws_lc_rs::rand::SystemRandom::new(), text.as_bytes())?;
        Ok(Checkpoint {
            tree_size: size,
            root: root.to_vec(),
            signature: sig.as_ref().to_vec(),
            ts,
        })
    }

    pub(crate) fn public_key_der(&self) -> Vec<u8> {
        self.signer.public_key().as_ref().to_vec()
    }
}

/// Read the stored frontier. Writers call this after locking the head row.
pub(crate) fn load_head(conn: &mut AnyConnection) -> Result<Frontier> {
    let (size, bytes): (i64, Vec<u8>) = audit_head::table
        .filter(audit_head::id.eq(1))
        .select((audit_head::tree_size, audit_head::frontier))
        .first(conn)?;
    Frontier::from_bytes(size as u64, &bytes).ok_or(HsmError::AuditIntegrity {
        seq: size,
        reason: "the stored audit head is malformed".into(),
    })
}

/// Recompute everything: every record's MAC, the sequence, every checkpoint's root and
/// signature. Returns the first problem found, naming the record.
///
/// The log may grow while this runs (a live server keeps committing batches, each writing its
/// records, its checkpoint and the head in one transaction). So it verifies up to the size the
/// head says, then reads the head again and goes on until a round ends with the head unchanged.
/// Only then is anything stored beyond the head an integrity failure, never a batch that
/// committed between two reads.
pub(crate) fn verify(conn: &mut AnyConnection, keys: &AuditKeys) -> Result<AuditReport> {
    let public_der = keys.public_key_der();
    let verifier = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &public_der);
    let mut verified = 0i64;
    let mut frontier = Frontier::default();
    let mut expected: i64 = 0;
    let mut target = load_head(conn)?.size as i64;
    loop {
        let checkpoints: Vec<Checkpoint> = audit_checkpoints::table
            .filter(audit_checkpoints::tree_size.gt(expected))
            .filter(audit_checkpoints::tree_size.le(target))
            .order(audit_checkpoints::tree_size.asc())
            .load(conn)?;
        let mut cps = checkpoints.iter().peekable();
        verify_records(
            conn,
            keys,
            &mut frontier,
            &mut expected,
            target,
            &mut |_, frontier, size| {
                while let Some(cp) = cps.peek() {
                    if cp.tree_size > size {
                        break;
                    }
                    check_checkpoint(cp, frontier, size, &verifier)?;
                    verified += 1;
                    cps.next();
                }
                Ok(())
            },
        )?;
        if expected < target {
            return Err(HsmError::AuditIntegrity {
                seq: expected,
                reason: format!(
                    "records from {expected} on are missing: the audit head says {target} records"
                ),
            });
        }
        let record_beyond: Option<i64> = audit_records::table
            .filter(audit_records::seq.ge(target))
            .select(audit_records::seq)
            .first(conn)
            .optional()?;
        let checkpoint_beyond: Option<i64> = audit_checkpoints::table
            .filter(audit_checkpoints::tree_size.gt(target))
            .select(audit_checkpoints::tree_size)
            .first(conn)
            .optional()?;
        let head = load_head(conn)?.size as i64;
        if head > target {
            // Batches committed meanwhile: verify them too.
            target = head;
            continue;
        }
        if head < target {
            return Err(HsmError::AuditIntegrity {
                seq: head,
                reason: format!(
                    "the audit head went back from {target} to {head} records while the log was read"
                ),
            });
        }
        if let Some(seq) = record_beyond {
            return Err(HsmError::AuditIntegrity {
                seq,
                reason: format!(
                    "the audit head says {target} records but record {seq} is stored beyond it"
                ),
            });
        }
        if let Some(size) = checkpoint_beyond {
            return Err(HsmError::AuditIntegrity {
                seq: target,
                reason: format!(
                    "records from {target} on are missing: a signed checkpoint covers {size} records"
                ),
            });
        }
        break;
    }
    Ok(AuditReport {
        records: expected,
        checkpoints_verified: verified,
        root: hex::encode(frontier.root()),
        audit_public_key: base64::engine::general_purpose::STANDARD.encode(&public_der),
    })
}

/// Check records `expected..target` in order (MACs and sequence), extending `frontier`, and
/// call `at_record` after each with the record and the size it makes, so the checkpoints at
/// that size are checked against the frontier (and a caller may keep the record). Stops early,
/// with `expected < target`, when the records run out.
pub(crate) fn verify_records(
    conn: &mut AnyConnection,
    keys: &AuditKeys,
    frontier: &mut Frontier,
    expected: &mut i64,
    target: i64,
    at_record: &mut dyn FnMut(AuditEvent, &Frontier, i64) -> Result<()>,
) -> Result<()> {
    const PAGE: i64 = 5000;
    while *expected < target {
        let page: Vec<AuditEvent> = audit_records::table
            .filter(audit_records::seq.ge(*expected))
            .filter(audit_records::seq.lt(target))
            .order(audit_records::seq.asc())
            .limit(PAGE)
            .load(conn)?;
        if page.is_empty() {
            return Ok(());
        }
        for ev in page {
            if ev.seq != *expected {
                return Err(HsmError::AuditIntegrity {
                    seq: *expected,
                    reason: format!(
                        "record {} is missing (the next stored record is {})",
                        *expected, ev.seq
                    ),
                });
            }
            let want = keys.mac_of(&ev);
            if aws_lc_rs::constant_time::verify_slices_are_equal(&want, &ev.mac).is_err() {
                return Err(HsmError::AuditIntegrity {
                    seq: ev.seq,
                    reason: format!(
                        "record {} was changed, inserted or moved: its MAC does not match its content",
                        ev.seq
                    ),
                });
            }
            frontier.push(leaf_hash(&ev.entry_bytes()));
            *expected += 1;
            at_record(ev, frontier, *expected)?;
        }
    }
    Ok(())
}

pub(crate) fn check_checkpoint(
    cp: &Checkpoint,
    frontier: &Frontier,
    size: i64,
    verifier: &UnparsedPublicKey<&Vec<u8>>,
) -> Result<()> {
    let text = Checkpoint::signed_text(cp.tree_size, &cp.root, cp.ts);
    if verifier.verify(text.as_bytes(), &cp.signature).is_err() {
        return Err(HsmError::AuditIntegrity {
            seq: cp.tree_size - 1,
            reason: format!(
                "the checkpoint at size {} has a bad signature",
                cp.tree_size
            ),
        });
    }
    if cp.tree_size != size || cp.root != frontier.root() {
        return Err(HsmError::AuditIntegrity {
            seq: cp.tree_size - 1,
            reason: format!(
                "records up to {} do not hash to the root signed in the checkpoint at size {}",
                cp.tree_size - 1,
                cp.tree_size
            ),
        });
    }
    Ok(())
}
